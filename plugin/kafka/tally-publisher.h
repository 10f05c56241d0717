/* tally-publisher.h — the publisher actor: snapshots out to the output topic.
 *
 * The publisher is a TallyActor that owns one librdkafka producer. It lives on an arbiter
 * (its own thread, or the main context); the producer's delivery reports are served on
 * that arbiter's GLib main loop, through an fd watch on librdkafka's main queue
 * (rd_kafka_queue_io_event_enable()), so no thread polls.
 *
 * It handles one message, Publish, sent with tally_publisher_publish_async(): encode the
 * snapshot into parts (tally_snapshot_encode()), produce each part to the output topic
 * with its headers, wait for every delivery report, retry failed parts a bounded number
 * of times, then answer with a #TallyPublishReport. When it stops it flushes the producer
 * (bounded by the flush timeout) before destroying it.
 *
 * Life cycle of the producer in this file: configure (the caller's rd_kafka_conf_t plus
 * Tally's own properties), create (tally_publisher_new()), use (Publish messages), flush
 * and destroy (when the actor stops).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>
#include <librdkafka/rdkafka.h>

#include "tally-actor.h"
#include "tally-supervisor.h"
#include "tally-counts.h"
#include "tally-snapshot-request.h"
#include "tally-snapshot.h"

G_BEGIN_DECLS

/**
 * TALLY_PUBLISHER_ERROR:
 *
 * Error domain of the publisher. Errors in this domain are from #TallyPublisherError.
 */
#define TALLY_PUBLISHER_ERROR (tally_publisher_error_quark ())

/**
 * TallyPublisherError:
 * @TALLY_PUBLISHER_ERROR_CONFIG: librdkafka refused the producer configuration or could not
 *   create the producer (rd_kafka_new()); the message carries librdkafka's text.
 * @TALLY_PUBLISHER_ERROR_DELIVERY: some parts were not delivered after every retry; the
 *   message names how many and librdkafka's last error for them.
 * @TALLY_PUBLISHER_ERROR_FATAL: the producer hit a fatal error (rd_kafka_fatal_error(),
 *   for example an out-of-order sequence of the idempotent producer, KIP-98) and cannot
 *   produce again; a supervised publisher is restarted with a new producer.
 *
 * Errors of the publisher. Encoding errors are reported as #TallySnapshotFormatError.
 */
typedef enum
{
  TALLY_PUBLISHER_ERROR_CONFIG,
  TALLY_PUBLISHER_ERROR_DELIVERY,
  TALLY_PUBLISHER_ERROR_FATAL,
} TallyPublisherError;

/**
 * tally_publisher_error_quark:
 *
 * Returns: the quark of %TALLY_PUBLISHER_ERROR
 */
GQuark tally_publisher_error_quark (void);

/**
 * TALLY_PUBLISHER_MAX_RETRIES:
 *
 * How many times a part whose delivery report carries an error is produced again (on top
 * of librdkafka's own retries, property `retries`), before the part counts as failed.
 */
#define TALLY_PUBLISHER_MAX_RETRIES 3

#define TALLY_TYPE_PUBLISHER (tally_publisher_get_type ())
G_DECLARE_FINAL_TYPE (TallyPublisher, tally_publisher, TALLY, PUBLISHER, TallyActor)

/**
 * tally_publisher_new:
 * @conf: (transfer full): producer configuration (bootstrap.servers and any [kafka]
 *   property, e.g. from tally_config_apply_kafka()); consumed whatever happens
 * @output_topic: the snapshot topic ([output] topic)
 * @max_record_bytes: the largest record value in bytes ([output] max_record_bytes); parts
 *   are cut smaller when needed so that value, key, headers and framing stay within
 *   librdkafka's `message.max.bytes` from @conf
 * @error: return location for %TALLY_PUBLISHER_ERROR_CONFIG
 *
 * Creates the producer (rd_kafka_new() with RD_KAFKA_PRODUCER) and the actor that owns
 * it. Tally sets `enable.idempotence=true` on @conf (so librdkafka's own retries never
 * duplicate or reorder parts, KIP-98) and `linger.ms=0` unless @conf holds a value other than
 * librdkafka's default of 5 ms (a snapshot's parts are produced together and are large, so
 * waiting to batch them only delays the snapshot), and installs its delivery report, error and log
 * callbacks (logs go to GLib's log). Start it with tally_actor_start(); until then nothing is
 * produced. The instance id is generated here (host name, process id and a random suffix). Any
 * thread.
 *
 * It is a separate producer instance from any the host application has, which keeps it
 * usable from the librdkafka plugin entry point.
 *
 * Returns: (transfer full) (nullable): the actor, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyActor *tally_publisher_new (rd_kafka_conf_t *conf, const char *output_topic,
                                 gsize max_record_bytes, GError **error);

/**
 * tally_publisher_start_supervised:
 * @supervisor: the supervisor that restarts the publisher when it fails
 * @conf: (transfer full): producer configuration, as for tally_publisher_new(); kept, and
 *   copied for each new instance
 * @output_topic: the snapshot topic ([output] topic)
 * @max_record_bytes: as for tally_publisher_new()
 * @max_snapshot_bytes: the most bytes (all parts of one snapshot) the output topic keeps
 *   per partition, 0 for no limit: a larger snapshot could never be read back whole, so it
 *   is answered with an error snapshot that names the limit instead (the embedded
 *   broker, librdkafka's mock cluster, keeps about 5 MiB per partition:
 *   %TALLY_BROKER_PARTITION_BYTES)
 * @flush_timeout_ms: as for tally_publisher_set_flush_timeout()
 * @arbiter: where the publisher runs
 * @mailbox_capacity: its mailbox capacity in messages
 * @error: return location for %TALLY_PUBLISHER_ERROR_CONFIG
 *
 * Creates the publisher and starts it as a child of @supervisor. A publisher whose
 * producer hit a fatal error answers the next Publish with %TALLY_PUBLISHER_ERROR_FATAL
 * and fails, and the supervisor puts a new instance with a new producer (and a new
 * instance id) behind the same address: snapshots need no state, so nothing is lost but
 * that one answer. Any thread.
 *
 * Returns: (transfer full) (nullable): the publisher's address, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyAddress *tally_publisher_start_supervised (TallySupervisor *supervisor, rd_kafka_conf_t *conf,
                                                const char *output_topic, gsize max_record_bytes,
                                                gsize max_snapshot_bytes, guint flush_timeout_ms,
                                                TallyArbiter *arbiter, guint mailbox_capacity,
                                                GError **error);

/**
 * tally_publisher_get_instance_id:
 * @self: a publisher
 *
 * Returns: (transfer none): the instance id written into every snapshot. Any thread.
 */
const char *tally_publisher_get_instance_id (TallyPublisher *self);

/**
 * tally_publisher_set_flush_timeout:
 * @self: a publisher, before it is started
 * @timeout_ms: how long stopping may wait for outstanding records, in ms (default 5000)
 */
void tally_publisher_set_flush_timeout (TallyPublisher *self, guint timeout_ms);

/**
 * TallyPublishReport:
 * @snapshot_id: the id of the snapshot published
 * @parts: how many parts (records) it was split into
 * @delivered: how many were acknowledged by the broker
 * @retries: how many times parts were produced again after a failed delivery report
 * @bytes: the size of the parts' values together, in bytes
 *
 * What tally_publisher_publish_finish() returns when every part was delivered.
 */
typedef struct
{
  char *snapshot_id;
  guint parts;
  guint delivered;
  guint retries;
  guint64 bytes;
} TallyPublishReport;

/**
 * tally_publish_report_free:
 * @report: (transfer full) (nullable): a report
 */
void tally_publish_report_free (TallyPublishReport *report);

/**
 * tally_publisher_publish_async:
 * @publisher: the publisher's address
 * @request: (transfer none): the request being answered; copied. Its filters (`top`,
 *   `prefix`, `min_count`) are applied to @counts here; when @request->error is set an
 *   error snapshot is published and @counts may be %NULL
 * @counts: (transfer full) (nullable): every count of the cut, unfiltered
 * @offsets: (transfer full) (nullable): per input topic-partition, the offset of the next
 *   record not reflected in @counts (Kafka commit semantics); entries with a negative
 *   (logical) offset, such as %RD_KAFKA_OFFSET_INVALID for a partition never read, are
 *   left out of the snapshot
 * @partitions: (transfer full) (nullable): the input partitions this instance owns
 * @taken_ms: how long taking the cut took, in ms
 * @cancellable: (nullable): abandons the wait for the reply (publishing goes on)
 * @callback: called on the caller's thread-default main context when every part was
 *   delivered or failed
 * @user_data: data for @callback
 *
 * Asks the publisher to publish one snapshot, built from the arguments (it fills in the
 * snapshot id, instance id, creation time, totals and filters). Waits for room in the
 * publisher's mailbox without blocking the thread, as tally_address_ask_async() does.
 * Call from a thread with a running thread-default main context (for example an actor's
 * handler); finish with tally_publisher_publish_finish().
 */
void tally_publisher_publish_async (TallyAddress *publisher, const TallySnapshotRequest *request,
                                    TallyCounts *counts, rd_kafka_topic_partition_list_t *offsets,
                                    rd_kafka_topic_partition_list_t *partitions, gint64 taken_ms,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data);

/**
 * tally_publisher_publish_finish:
 * @publisher: the publisher's address
 * @result: the result given to the callback
 * @error: return location for %TALLY_PUBLISHER_ERROR_DELIVERY, %TALLY_PUBLISHER_ERROR_FATAL,
 *   %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE (then an error snapshot was published
 *   instead), %TALLY_ACTOR_ERROR_CLOSED or %G_IO_ERROR_CANCELLED
 *
 * Returns: (transfer full) (nullable): the report, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyPublishReport *tally_publisher_publish_finish (TallyAddress *publisher, GAsyncResult *result,
                                                    GError **error);

/**
 * tally_publisher_publish_sync:
 * @publisher: the publisher's address
 * @request: (transfer none): as for tally_publisher_publish_async()
 * @counts: (transfer full) (nullable): as for tally_publisher_publish_async()
 * @offsets: (transfer full) (nullable): as for tally_publisher_publish_async()
 * @partitions: (transfer full) (nullable): as for tally_publisher_publish_async()
 * @taken_ms: as for tally_publisher_publish_async()
 * @timeout_ms: the longest wait in ms; 0 waits forever
 * @error: as for tally_publisher_publish_finish(), plus %TALLY_ACTOR_ERROR_TIMEOUT and
 *   %TALLY_ACTOR_ERROR_WOULD_DEADLOCK
 *
 * The blocking form, for code outside the publisher's arbiter that has no main loop of
 * its own to wait on (a shutdown path, a test). Uses tally_address_ask_sync().
 *
 * Returns: (transfer full) (nullable): the report, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyPublishReport *
tally_publisher_publish_sync (TallyAddress *publisher, const TallySnapshotRequest *request,
                              TallyCounts *counts, rd_kafka_topic_partition_list_t *offsets,
                              rd_kafka_topic_partition_list_t *partitions, gint64 taken_ms,
                              guint timeout_ms, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyPublishReport, tally_publish_report_free)

G_END_DECLS
