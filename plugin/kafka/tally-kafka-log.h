/* tally-kafka-log.h — librdkafka's log lines on GLib's log.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

G_BEGIN_DECLS

/**
 * tally_kafka_log_cb:
 * @rk: the client that logs
 * @level: a syslog level, 0 (emergency) to 7 (debug), as librdkafka gives it
 * @facility: librdkafka's facility, such as "FAIL" or "COMMITFAIL"
 * @message: the line
 *
 * A librdkafka log callback (`rd_kafka_conf_set_log_cb()`) that writes to GLib's
 * structured log under the "Tally" domain, so `[log] level` and the journal see every
 * client's lines once, named by client (`rd_kafka_name()`): levels 0 to 4 become
 * warnings (but those tally_kafka_log_is_retried() names, which are info), 5 and 6 info
 * messages, 7 debug messages. Errors never become criticals,
 * which tests make fatal. Called on librdkafka's threads (or wherever the log queue is
 * served); it touches no state, so any thread is fine.
 */
void tally_kafka_log_cb (const rd_kafka_t *rk, int level, const char *facility,
                         const char *message);

/**
 * tally_kafka_log_is_retried:
 * @level: a syslog level, as librdkafka gives it to a log callback
 * @message: the line
 *
 * Whether librdkafka logs @message at LOG_WARNING (4) for a state it retries until it
 * passes, which is no fault: a transaction coordinator still loading its state, as on a
 * fresh broker ("Coordinator load in progress", seen with GETPID of the idempotent and
 * transactional producers). Log callbacks write such lines as info. Any thread.
 *
 * Returns: %TRUE for such a line
 */
gboolean tally_kafka_log_is_retried (int level, const char *message);

/**
 * tally_kafka_conf_set_log:
 * @conf: a client configuration, not yet given to rd_kafka_new()
 *
 * Installs tally_kafka_log_cb() on @conf. Copies made later with rd_kafka_conf_dup()
 * keep it.
 */
void tally_kafka_conf_set_log (rd_kafka_conf_t *conf);

G_END_DECLS
