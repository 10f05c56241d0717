/* test-topics.c — creating the topics Tally owns, against the embedded broker (librdkafka's
 * mock cluster) in the test process: existing topics are kept as they are, a topic with too
 * few partitions is an error that names it, and partitions without a leader are waited for.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-topics.h"
#include "tally-test-util.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

static const char *const compact[] = { "cleanup.policy", "compact", NULL };

/* librdkafka 2.0.2's mock cluster has no CreateTopics and creates any topic a Metadata
 * request names, so creating, refusing and racing are checked against a real broker
 * (tests/e2e/test-run.sh real-fresh-topics); here: topics that exist. */

typedef struct
{
  TallyBroker *broker;
  rd_kafka_t *rk;
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  conf = tally_test_broker_conf (f->broker);
  /* A consumer property, which the admin client's configuration drops. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "group.id", "tally", NULL, 0), ==, RD_KAFKA_CONF_OK);
  f->rk = tally_topics_client_new (conf, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->rk);
  rd_kafka_conf_destroy (conf);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  rd_kafka_destroy (f->rk);
  tally_broker_free (f->broker);
}

static int
count (Fixture *f, const char *topic)
{
  g_autoptr (GError) error = NULL;
  int n = tally_topics_get_partition_count (f->rk, topic, 10000, &error);

  g_assert_no_error (error);
  return n;
}

/* Asserts that tally_topics_ensure() succeeds (the error, if any, is shown). */
static void
ensure_ok (Fixture *f, const TallyTopicSpec *specs, guint n_specs)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = tally_topics_ensure (f->rk, specs, n_specs, 10000, &error);

  g_assert_no_error (error);
  g_assert_true (ok);
}

/* An existing topic is used as it is when it has at least min_partitions. */
static void
test_existing_kept (Fixture *f, gconstpointer data)
{
  const TallyTopicSpec spec
      = { .name = "snapshots", .role = "output topic", .partitions = 1, .min_partitions = 1 };
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_broker_create_topic (f->broker, "snapshots", 3, &error));
  ensure_ok (f, &spec, 1);
  g_assert_cmpint (count (f, "snapshots"), ==, 3);
}

static void
test_too_few_partitions (Fixture *f, gconstpointer data)
{
  const TallyTopicSpec spec = { .name = "changelog",
                                .role = "changelog topic",
                                .partitions = 4,
                                .min_partitions = 4,
                                .configs = compact };
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_broker_create_topic (f->broker, "changelog", 2, &error));
  g_assert_false (tally_topics_ensure (f->rk, &spec, 1, 10000, &error));
  g_assert_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_PARTITIONS);
  g_assert_cmpstr (error->message, ==,
                   "changelog topic changelog has 2 partition(s), Tally needs at least 4: add "
                   "partitions (kafka-topics.sh --alter --topic changelog --partitions 4) or use "
                   "another topic");
}

/* A partition without a leader is waited for, until the deadline. */
static void
test_no_leader (Fixture *f, gconstpointer data)
{
  const TallyTopicSpec spec
      = { .name = "requests", .role = "request topic", .partitions = 1, .min_partitions = 1 };
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_broker_create_topic (f->broker, "requests", 1, &error));
  rd_kafka_mock_partition_set_leader (tally_broker_get_mock_cluster (f->broker), "requests", 0, -1);
  g_assert_false (tally_topics_ensure (f->rk, &spec, 1, 1000, &error));
  g_assert_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_TIMEOUT);
  g_assert_true (g_str_has_prefix (error->message, "request topic requests: 1 of 1 partition(s) "
                                                   "without a leader that serves them after "
                                                   "1000 ms"));
  g_clear_error (&error);

  /* With its leader back, the same call succeeds. */
  rd_kafka_mock_partition_set_leader (tally_broker_get_mock_cluster (f->broker), "requests", 0, 1);
  ensure_ok (f, &spec, 1);
}

/* No broker at the address: the error says so and what to check, at the deadline. */
static void
test_no_broker (void)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  g_autoptr (GError) error = NULL;
  rd_kafka_t *rk;
  gint64 started;

  /* Port 1 (tcpmux) has no listener here: every connection is refused. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers", "127.0.0.1:1", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpint (rd_kafka_conf_set (conf, "log_level", "0", NULL, 0), ==, RD_KAFKA_CONF_OK);
  rk = tally_topics_client_new (conf, &error);
  g_assert_no_error (error);
  rd_kafka_conf_destroy (conf);
  started = g_get_monotonic_time ();
  g_assert_cmpint (tally_topics_get_partition_count (rk, "input", 1500, &error), ==, -1);
  g_assert_cmpint (g_get_monotonic_time () - started, >=, 1500 * G_TIME_SPAN_MILLISECOND);
  g_assert_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_DESCRIBE);
  g_assert_true (g_str_has_prefix (error->message, "topic input: no broker answered in "));
  g_assert_true (g_str_has_suffix (error->message,
                                   "check that a broker listens at the address "
                                   "bootstrap.servers gives ([kafka] or --bootstrap-server) and "
                                   "that this host can reach it"));
  rd_kafka_destroy (rk);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/topics/no-broker", test_no_broker);
  g_test_add ("/topics/existing-kept", Fixture, NULL, fixture_set_up, test_existing_kept,
              fixture_tear_down);
  g_test_add ("/topics/too-few-partitions", Fixture, NULL, fixture_set_up, test_too_few_partitions,
              fixture_tear_down);
  g_test_add ("/topics/no-leader", Fixture, NULL, fixture_set_up, test_no_leader,
              fixture_tear_down);
  return g_test_run ();
}
