/* tally-test-util.h: helpers the unit suites share, compiled into each suite that needs
 * them (tests/meson.build); nothing here is part of Tally.
 *
 * - TallyTestGate: holds an actor's handler until the test opens it (actor and supervisor
 *   suites), so that a mailbox can be filled or a stop raced against a running handler.
 * - Counts: build a TallyCounts from literal words, and compare counts exactly.
 * - Kafka: a client configuration for an embedded broker (tally broker's mock cluster).
 * - TallyTestRun: the exit status and output of a `tally` program the suite started.
 * - Metrics access: a self-signed certificate made with openssl, a bcrypt hash.
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

/* Writes a self-signed certificate for CN=localhost and IP 127.0.0.1 (an EC P-256 key,
 * valid one day) to DIR/cert.pem and its key to DIR/key.pem with `openssl req`; sets the
 * paths (transfer full). FALSE, and the test skipped, when openssl is not installed. */
gboolean tally_test_make_certificate (const char *dir, char **cert_path, char **key_path);

/* A `$2b$` bcrypt hash of @password at cost 4 (fast), from libcrypt's crypt_gensalt_rn()
 * and crypt_r(), as `htpasswd -nbBC 4` would make. (transfer full) */
char *tally_test_bcrypt (const char *password);

G_END_DECLS
