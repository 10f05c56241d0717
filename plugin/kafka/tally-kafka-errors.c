/* tally-kafka-errors.c — librdkafka errors that no retry fixes, turned into one clear
 * fatal error.
 *
 * librdkafka treats a wrong password, an untrusted broker certificate or a missing ACL
 * like a broker that is down: it logs, backs off and tries again, for ever. To an
 * operator that is a hang. Every place where Tally's clients see an error code (the
 * error callback of every client, the source's consumer errors, the changelog's delivery
 * reports and transactions, the publisher's delivery reports) passes it to
 * tally_kafka_errors_check(), which recognises the configuration errors, says which
 * topic, group or setting is at fault and what to grant or fix, and calls the fatal
 * function set by the service once: `tally run` then exits with status 78 (EX_CONFIG).
 *
 * The text never holds a secret: it is made of the client's role, the resource name,
 * librdkafka's error name and its reason string, which names mechanisms and users, never
 * passwords.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-kafka-errors.h"

#include <string.h>

static TallyKafkaFatalFunc fatal_func;
static gpointer fatal_data;
static gint reported; /* atomic: the fatal function was called */

gboolean
tally_kafka_error_is_config (rd_kafka_resp_err_t err)
{
  switch (err)
    {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      return TRUE;
    default:
      return FALSE;
    }
}

gboolean
tally_kafka_error_is_unreachable (rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
         || err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__TIMED_OUT;
}

/* What the operator should look at, for each configuration error. */
static const char *
advice (rd_kafka_resp_err_t err)
{
  switch (err)
    {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
      return "authentication failed: check [kafka] sasl.username, sasl.password (or "
             "sasl.password.file) and sasl.mechanisms";
    case RD_KAFKA_RESP_ERR__SSL:
      return "TLS failed: check [kafka] ssl.ca.location (the CA that signed the broker's "
             "certificate) and that bootstrap.servers names a host the certificate is for";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
      return "not authorized for the topic: grant the principal the topic ACLs Tally needs "
             "(deploy/README.md)";
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
      return "not authorized for the consumer group: grant the principal Read on the group "
             "([input] group_id) and Describe on groups prefixed tally- (deploy/README.md)";
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return "not authorized for the transactional id: grant the principal Write and Describe "
             "on TransactionalId prefix tally- (exactly-once checkpoints)";
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      return "not authorized for the cluster: grant the principal IdempotentWrite on the "
             "cluster";
    default:
      return "configuration error";
    }
}

void
tally_kafka_errors_set_fatal_func (TallyKafkaFatalFunc func, gpointer user_data)
{
  fatal_func = func;
  fatal_data = user_data;
  g_atomic_int_set (&reported, 0);
}

gboolean
tally_kafka_errors_check (rd_kafka_resp_err_t err, const char *client, const char *resource,
                          const char *detail)
{
  g_autofree char *message = NULL;

  if (!tally_kafka_error_is_config (err))
    return FALSE;
  message = g_strdup_printf (
      "%s%s%s: %s (%s%s%s)", client != NULL ? client : "Kafka client", resource != NULL ? ": " : "",
      resource != NULL ? resource : "", advice (err), rd_kafka_err2name (err),
      detail != NULL && detail[0] != '\0' ? ": " : "", detail != NULL ? detail : "");
  tally_kafka_errors_fatal (message);
  return TRUE;
}

void
tally_kafka_errors_fatal (const char *message)
{
  g_return_if_fail (message != NULL);

  if (fatal_func != NULL && g_atomic_int_compare_and_exchange (&reported, 0, 1))
    fatal_func (message, fatal_data);
  else
    g_warning ("%s", message);
}

gboolean
tally_kafka_errors_check_txn (const rd_kafka_error_t *txn_error, const char *client,
                              const char *resource)
{
  static const rd_kafka_resp_err_t causes[] = {
    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
  };
  rd_kafka_resp_err_t code = rd_kafka_error_code (txn_error);
  const char *text = rd_kafka_error_string (txn_error);

  if (!tally_kafka_error_is_config (code) && text != NULL)
    for (gsize i = 0; i < G_N_ELEMENTS (causes); i++)
      if (strstr (text, rd_kafka_err2str (causes[i])) != NULL)
        {
          code = causes[i];
          break;
        }
  return tally_kafka_errors_check (code, client, resource, text);
}

void
tally_kafka_error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  const char *client
      = rk != NULL && rd_kafka_type (rk) == RD_KAFKA_CONSUMER ? "Kafka consumer" : "Kafka producer";

  if (err == RD_KAFKA_RESP_ERR__FATAL && rk != NULL)
    {
      char fatal[512];
      rd_kafka_resp_err_t orig = rd_kafka_fatal_error (rk, fatal, sizeof fatal);

      if (tally_kafka_errors_check (orig, client, NULL, fatal))
        return;
    }
  if (tally_kafka_errors_check (err, client, NULL, reason))
    return;
  g_message ("%s: %s: %s", rk != NULL ? rd_kafka_name (rk) : "librdkafka", rd_kafka_err2name (err),
             reason);
}
