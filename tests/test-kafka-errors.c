/* test-kafka-errors.c — which librdkafka errors end a Tally process as a configuration
 * error, and the exact line that names what to fix.
 *
 * tally_kafka_errors_check() calls the fatal function once per process, so each message
 * is checked in a subprocess of its own that prints what the fatal function got.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-kafka-errors.h"
#include "tally-kafka-log.h"

#include <stdio.h>

static void
test_is_config (void)
{
  static const rd_kafka_resp_err_t config[] = {
    RD_KAFKA_RESP_ERR__AUTHENTICATION,
    RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED,
    RD_KAFKA_RESP_ERR__SSL,
    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
  };
  /* Errors librdkafka retries, or that a later metadata answer fixes. */
  static const rd_kafka_resp_err_t other[] = {
    RD_KAFKA_RESP_ERR_NO_ERROR,
    RD_KAFKA_RESP_ERR__TRANSPORT,
    RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
    RD_KAFKA_RESP_ERR__TIMED_OUT,
    RD_KAFKA_RESP_ERR__PARTITION_EOF,
    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
    RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
    RD_KAFKA_RESP_ERR__FATAL,
    RD_KAFKA_RESP_ERR__STATE,
  };

  for (gsize i = 0; i < G_N_ELEMENTS (config); i++)
    {
      g_assert_true (tally_kafka_error_is_config (config[i]));
      g_assert_false (tally_kafka_error_is_unreachable (config[i]));
    }
  /* No broker: exactly these four. */
  g_assert_true (tally_kafka_error_is_unreachable (RD_KAFKA_RESP_ERR__TRANSPORT));
  g_assert_true (tally_kafka_error_is_unreachable (RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN));
  g_assert_true (tally_kafka_error_is_unreachable (RD_KAFKA_RESP_ERR__RESOLVE));
  g_assert_true (tally_kafka_error_is_unreachable (RD_KAFKA_RESP_ERR__TIMED_OUT));
  for (gsize i = 0; i < G_N_ELEMENTS (other); i++)
    {
      g_assert_false (tally_kafka_error_is_config (other[i]));
      g_assert_cmpint (tally_kafka_error_is_unreachable (other[i]), ==,
                       other[i] == RD_KAFKA_RESP_ERR__TRANSPORT
                           || other[i] == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
                           || other[i] == RD_KAFKA_RESP_ERR__TIMED_OUT);
      /* Not a configuration error: no message, no fatal function. */
      g_assert_false (tally_kafka_errors_check (other[i], "snapshot consumer", "t", "x"));
    }
}

static void
print_fatal (const char *message, gpointer user_data)
{
  g_assert_cmpstr (user_data, ==, "data");
  printf ("%s\n", message);
}

static void
test_group_message (void)
{
  if (g_test_subprocess ())
    {
      tally_kafka_errors_set_fatal_func (print_fatal, "data");
      g_assert_true (
          tally_kafka_errors_check (RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
                                    "snapshot consumer", "tally-snapshot-0badcafe",
                                    "FindCoordinator response error: Group authorization failed."));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout (
      "snapshot consumer: tally-snapshot-0badcafe: not authorized for the consumer group: "
      "grant the principal Read on the group ([input] group_id) and Describe on groups "
      "prefixed tally- (deploy/README.md) (GROUP_AUTHORIZATION_FAILED: FindCoordinator "
      "response error: Group authorization failed.)\n");
}

static void
test_authentication_message (void)
{
  if (g_test_subprocess ())
    {
      tally_kafka_errors_set_fatal_func (print_fatal, "data");
      /* No client, no resource, no detail: the message still says what to check. */
      g_assert_true (tally_kafka_errors_check (RD_KAFKA_RESP_ERR__AUTHENTICATION, NULL, NULL, ""));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("Kafka client: authentication failed: check [kafka] sasl.username, "
                             "sasl.password (or sasl.password.file) and sasl.mechanisms "
                             "(_AUTHENTICATION)\n");
}

static void
test_txn_cause (void)
{
  if (g_test_subprocess ())
    {
      /* A step after an abortable error: __STATE, the first error only in the text. */
      rd_kafka_error_t *error
          = rd_kafka_error_new (RD_KAFKA_RESP_ERR__STATE, "Unable to send offsets: %s",
                                rd_kafka_err2str (RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));

      tally_kafka_errors_set_fatal_func (print_fatal, "data");
      g_assert_true (tally_kafka_errors_check_txn (error, "changelog producer", "cl"));
      rd_kafka_error_destroy (error);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout (
      "changelog producer: cl: not authorized for the topic: grant the principal the topic ACLs "
      "Tally needs (deploy/README.md) (TOPIC_AUTHORIZATION_FAILED: Unable to send offsets: "
      "Broker: Topic authorization failed)\n");
}

/* librdkafka's retried warnings that log callbacks write as info; other warnings stay. */
static void
test_log_retried (void)
{
  /* As librdkafka 2.0.2 words it (rdkafka_idempotence.c, GETPID, LOG_WARNING). */
  const char *getpid = "Failed to acquire idempotence PID from broker "
                       "127.0.0.1:19092/1: Broker: Coordinator load in progress: retrying";

  g_assert_true (tally_kafka_log_is_retried (4, getpid));
  g_assert_false (tally_kafka_log_is_retried (3, getpid));
  g_assert_false (tally_kafka_log_is_retried (
      4, "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"));
  g_assert_false (tally_kafka_log_is_retried (4, NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/kafka-errors/is-config", test_is_config);
  g_test_add_func ("/kafka-errors/group-message", test_group_message);
  g_test_add_func ("/kafka-errors/authentication-message", test_authentication_message);
  g_test_add_func ("/kafka-errors/txn-cause", test_txn_cause);
  g_test_add_func ("/kafka-errors/log-retried", test_log_retried);
  return g_test_run ();
}
