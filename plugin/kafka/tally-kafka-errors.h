/* tally-kafka-errors.h — librdkafka errors that no retry fixes: bad credentials, TLS
 * trust, missing ACLs.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

G_BEGIN_DECLS

/**
 * TallyKafkaFatalFunc:
 * @message: what is wrong, naming the topic, group or credential and the librdkafka
 *   error; never a secret
 * @user_data: as given to tally_kafka_errors_set_fatal_func()
 *
 * Called once per process, on whichever thread saw the error first (a librdkafka
 * callback, the source's or the publisher's arbiter). It should end the process: the
 * client that saw the error would otherwise retry forever.
 */
typedef void (*TallyKafkaFatalFunc) (const char *message, gpointer user_data);

/**
 * tally_kafka_error_is_config:
 * @err: a librdkafka error code
 *
 * Returns: %TRUE for the errors that are a configuration problem on the client's or the
 *   cluster's side and that librdkafka would otherwise retry without end:
 *   `RD_KAFKA_RESP_ERR__AUTHENTICATION` and `SASL_AUTHENTICATION_FAILED` (credentials),
 *   `RD_KAFKA_RESP_ERR__SSL` (TLS handshake: trust, hostname), and the
 *   `TOPIC_`, `GROUP_`, `TRANSACTIONAL_ID_` and `CLUSTER_AUTHORIZATION_FAILED` answers
 *   of a broker with an authorizer (missing ACLs).
 */
gboolean tally_kafka_error_is_config (rd_kafka_resp_err_t err);

/**
 * tally_kafka_error_is_unreachable:
 * @err: a librdkafka error code
 *
 * Whether @err says only that no broker could be reached: a connection refused, a name
 * that does not resolve, or a broker that did not answer in time (librdkafka's local
 * codes _TRANSPORT, _ALL_BROKERS_DOWN, _RESOLVE, _TIMED_OUT). The same call may succeed
 * once the broker is back. Any thread.
 *
 * Returns: %TRUE for those codes
 */
gboolean tally_kafka_error_is_unreachable (rd_kafka_resp_err_t err);

/**
 * tally_kafka_errors_set_fatal_func:
 * @func: (nullable): called for the first configuration error; %NULL to only log them
 * @user_data: passed to @func
 *
 * Sets what tally_kafka_errors_check() does with the first configuration error of the
 * process, or the first since this call (each call starts afresh). `tally run` exits with
 * status 78 (EX_CONFIG); the librdkafka module leaves the host program alone and only
 * logs. Call it before any client is created.
 */
void tally_kafka_errors_set_fatal_func (TallyKafkaFatalFunc func, gpointer user_data);

/**
 * tally_kafka_errors_fatal:
 * @message: what is wrong and what to change, one line
 *
 * Reports a configuration error that Tally found itself (not one of librdkafka's codes) as
 * tally_kafka_errors_check() reports one: through the fatal function once (`tally run`
 * prints @message and exits 78), or as a warning when none is set or one was already
 * reported. Any thread.
 */
void tally_kafka_errors_fatal (const char *message);

/**
 * tally_kafka_errors_check:
 * @err: the error a client reported
 * @client: (nullable): which client, for the message ("input consumer", "changelog
 *   producer", ...); %NULL for "Kafka client"
 * @resource: (nullable): the topic, group or transactional id the request was about, when
 *   known
 * @detail: (nullable): librdkafka's text for it (error callback reason, message errstr)
 *
 * When @err is a configuration error (tally_kafka_error_is_config()), logs it as a
 * warning naming @client, @resource and the ACL or setting to check, and hands the same
 * text to the fatal function (once per process). Any thread.
 *
 * Returns: %TRUE when @err was a configuration error.
 */
gboolean tally_kafka_errors_check (rd_kafka_resp_err_t err, const char *client,
                                   const char *resource, const char *detail);

/**
 * tally_kafka_errors_check_txn:
 * @txn_error: an error of librdkafka's transactional API
 * @client: (nullable): as for tally_kafka_errors_check()
 * @resource: (nullable): as for tally_kafka_errors_check()
 *
 * tally_kafka_errors_check() for a transaction step. A step after an abortable error
 * (such as sending the offsets after AddPartitionsToTxn was refused) fails with
 * `RD_KAFKA_RESP_ERR__STATE` and the first error only in its text; librdkafka 2.0.2 has
 * no getter for that first error, so its code is recognised by its text
 * (rd_kafka_err2str()) in the error string.
 *
 * Returns: %TRUE when @txn_error was, or was caused by, a configuration error.
 */
gboolean tally_kafka_errors_check_txn (const rd_kafka_error_t *txn_error, const char *client,
                                       const char *resource);

/**
 * tally_kafka_error_cb:
 * @rk: the client
 * @err: the error code
 * @reason: librdkafka's text
 * @opaque: unused
 *
 * A librdkafka error callback (`rd_kafka_conf_set_error_cb()`) that passes every error to
 * tally_kafka_errors_check() and logs the others as librdkafka's default would (a
 * message; librdkafka retries them). The service installs it on the configuration every
 * client is copied from.
 */
void tally_kafka_error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque);

G_END_DECLS
