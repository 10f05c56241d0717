/* tally-request-reader.h — reads snapshot requests from the request topic.
 *
 * Every Tally instance must see every request, so the request topic is read outside any
 * consumer group: the reader assigns itself all partitions of the topic (as they are when
 * it starts) with rd_kafka_assign(), starting at the end or at the first record not older
 * than a start time (rd_kafka_offsets_for_times(), KIP-79), and never commits. Records are
 * served on a GLib main context through an fd watch on the consumer queue
 * (rd_kafka_queue_io_event_enable()); each one becomes a #TallySnapshotRequest
 * (tally_snapshot_request_parse()) handed to a callback on that context.
 *
 * Bad request values are logged (with the request id, topic, partition and offset) and
 * still handed to the callback with their `error` set, so the instance can answer with an
 * error snapshot: the requester learns at once what was wrong instead of timing out.
 *
 * Life cycle of the consumer in this file: configure (the caller's rd_kafka_conf_t, no
 * group.id of ours), create and assign (tally_request_reader_new()), use (the fd watch),
 * close and destroy (tally_request_reader_free()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-snapshot-request.h"

G_BEGIN_DECLS

/**
 * TALLY_REQUEST_READER_ERROR:
 *
 * Error domain of the request reader. Errors in this domain are from
 * #TallyRequestReaderError.
 */
#define TALLY_REQUEST_READER_ERROR (tally_request_reader_error_quark ())

/**
 * TallyRequestReaderError:
 * @TALLY_REQUEST_READER_ERROR_CONFIG: librdkafka refused the configuration or could not
 *   create the consumer; the message carries librdkafka's text.
 * @TALLY_REQUEST_READER_ERROR_METADATA: the topic's partitions could not be learned in
 *   time (broker unreachable, or the topic does not exist and is not auto-created).
 * @TALLY_REQUEST_READER_ERROR_ASSIGN: rd_kafka_offsets_for_times() or rd_kafka_assign()
 *   failed.
 *
 * Errors of the request reader.
 */
typedef enum
{
  TALLY_REQUEST_READER_ERROR_CONFIG,
  TALLY_REQUEST_READER_ERROR_METADATA,
  TALLY_REQUEST_READER_ERROR_ASSIGN,
} TallyRequestReaderError;

/**
 * tally_request_reader_error_quark:
 *
 * Returns: the quark of %TALLY_REQUEST_READER_ERROR
 */
GQuark tally_request_reader_error_quark (void);

/**
 * TallyRequestFunc:
 * @request: (transfer none): the request; copy it with tally_snapshot_request_copy() to
 *   keep it. @request->error is set for a bad request.
 * @user_data: the data given to tally_request_reader_new()
 *
 * Called once per request record, on the reader's context, in record order per partition.
 */
typedef void (*TallyRequestFunc) (const TallySnapshotRequest *request, gpointer user_data);

typedef struct _TallyRequestReader TallyRequestReader;

/**
 * tally_request_reader_new:
 * @conf: (transfer full): consumer configuration (bootstrap.servers and any [kafka]
 *   property); consumed whatever happens. A `group.id` is set only because librdkafka
 *   requires one for a consumer; it is never joined or committed to
 *   (`enable.auto.commit=false`, rd_kafka_assign() instead of subscribe).
 * @topic: the request topic ([requests] topic)
 * @start_time_ms: read requests whose record timestamp is at least this (ms since the Unix
 *   epoch), for example the process start time so a request sent while Tally was starting
 *   is answered; -1 starts at the end of each partition
 * @context: (nullable): the context the fd watch and @func run on; %NULL for the global
 *   default context
 * @func: called for each request
 * @user_data: data for @func
 * @destroy: (nullable): frees @user_data when the reader is freed
 * @timeout_ms: how long the start may wait for metadata and offsets, in ms
 * @error: return location for a #TallyRequestReaderError
 *
 * Creates the consumer, learns the topic's partitions (rd_kafka_metadata()), assigns them
 * all and attaches the fd watch to @context. Blocks the calling thread for at most about
 * @timeout_ms. Partitions added to the topic later are not read (a known limit).
 *
 * Returns: (transfer full) (nullable): the reader, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyRequestReader *tally_request_reader_new (rd_kafka_conf_t *conf, const char *topic,
                                              gint64 start_time_ms, GMainContext *context,
                                              TallyRequestFunc func, gpointer user_data,
                                              GDestroyNotify destroy, guint timeout_ms,
                                              GError **error);

/**
 * tally_request_reader_get_n_partitions:
 * @self: a reader
 *
 * Returns: how many partitions of the request topic it reads
 */
guint tally_request_reader_get_n_partitions (TallyRequestReader *self);

/**
 * tally_request_reader_drain:
 * @self: a reader
 * @timeout_ms: the longest wait, in ms
 *
 * Reads every request record produced so far: learns the end offset of each partition of
 * the request topic (rd_kafka_query_watermark_offsets()) and polls the consumer until each
 * partition is read up to it (record offsets and end-of-partition events,
 * `enable.partition.eof`), calling the reader's #TallyRequestFunc for each request, on
 * this thread. Used at shutdown, before the final snapshot, so a request produced after
 * SIGTERM is still answered. Logs a warning when @timeout_ms passes first. Blocks for at
 * most about twice @timeout_ms (the watermark query, then the reads). Call from the thread
 * that runs the reader's context.
 *
 * Returns: how many request records it handed over
 */
guint tally_request_reader_drain (TallyRequestReader *self, guint timeout_ms);

/**
 * tally_request_reader_free:
 * @self: (transfer full) (nullable): a reader
 *
 * Removes the fd watch, closes the consumer (rd_kafka_consumer_close()) and destroys it.
 * Call from the thread that runs the reader's context, or when that context is not
 * running; never from inside @func.
 */
void tally_request_reader_free (TallyRequestReader *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyRequestReader, tally_request_reader_free)

G_END_DECLS
