/* tally-kafka-log.c — librdkafka's log lines on GLib's log.
 *
 * librdkafka prints its log lines on stderr ("%3|...|FAIL|rdkafka#producer-2|...") unless
 * a client has a log callback. Every client Tally creates gets this one, so the lines go
 * where Tally's own go, filtered by `[log] level`, instead of around it.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-kafka-log.h"

#include <string.h>

void
tally_kafka_log_cb (const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
  const char *name = rk != NULL ? rd_kafka_name (rk) : "librdkafka";

  if (tally_kafka_log_is_retried (level, message))
    g_info ("%s: %s: %s", name, facility, message);
  else if (level <= 4)
    g_warning ("%s: %s: %s", name, facility, message);
  else if (level <= 6)
    g_info ("%s: %s: %s", name, facility, message);
  else
    g_debug ("%s: %s: %s", name, facility, message);
}

gboolean
tally_kafka_log_is_retried (int level, const char *message)
{
  /* A fresh broker's __transaction_state still loading: librdkafka retries until ready. */
  return level == 4 && message != NULL && strstr (message, "Coordinator load in progress") != NULL;
}

void
tally_kafka_conf_set_log (rd_kafka_conf_t *conf)
{
  g_return_if_fail (conf != NULL);

  rd_kafka_conf_set_log_cb (conf, tally_kafka_log_cb);
}
