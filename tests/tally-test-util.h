/* tally-test-util.h: helpers the unit suites share, compiled into each suite that needs
 * them (tests/meson.build); nothing here is part of Tally.
 *
 * - TallyTestGate: holds an actor's handler until the test opens it (actor and supervisor
 *   suites), so that a mailbox can be filled or a stop raced against a running handler.
 * - Counts: build a TallyCounts from literal words, and compare counts exactly.
 * - Kafka: a client configuration for an embedded broker (tally broker's mock cluster).
 * - TallyTestRun: the exit status and output of a `tally` program the suite started.
 */
#pragma once

#include "tally-broker.h"
#include "tally-counts.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>

G_BEGIN_DECLS

/* A handler that calls tally_test_gate_enter() marks the gate entered and blocks until
 * tally_test_gate_open(); plain pthreads, as the runtime itself, so that ThreadSanitizer
 * sees every edge. */
typedef struct
{
  pthread_mutex_t lock;
  pthread_cond_t cond;
  gboolean entered;
  gboolean open;
} TallyTestGate;

void tally_test_gate_init (TallyTestGate *gate);
void tally_test_gate_clear (TallyTestGate *gate);
void tally_test_gate_enter (TallyTestGate *gate);
void tally_test_gate_wait_entered (TallyTestGate *gate);
void tally_test_gate_open (TallyTestGate *gate);

/* The counts of @n NUL-terminated @words with their @counts, through a
 * TallyCountsBuilder. (transfer full) */
TallyCounts *tally_test_counts_new (const char *const *words, const guint64 *counts, gsize n);

/* Asserts that @a and @b hold the same entries (word bytes and count) in the same order. */
void tally_test_assert_counts_equal (TallyCounts *a, TallyCounts *b);

/* Asserts that the entries of @counts, in order, read "word=count " each, as @expected. */
void tally_test_assert_entries (TallyCounts *counts, const char *expected);

/* A new librdkafka configuration with bootstrap.servers set to @broker's address.
 * (transfer full) */
rd_kafka_conf_t *tally_test_broker_conf (TallyBroker *broker);

/* What a `tally` program run by a suite did: its exit status, standard output and
 * standard error (each %NULL when not captured). */
typedef struct
{
  int status;
  char *out;
  char *err;
} TallyTestRun;

void tally_test_run_clear (TallyTestRun *run);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyTestRun, tally_test_run_clear)

G_END_DECLS
