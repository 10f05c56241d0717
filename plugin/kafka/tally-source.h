/* tally-source.h — the source actor: input topics in, AddWords batches out.
 *
 * The source is a TallyActor that owns one librdkafka high-level consumer in the input
 * consumer group. It runs on its own arbiter; the consumer's queue wakes that arbiter's
 * GLib main loop through a pipe (rd_kafka_queue_io_event_enable()) watched by a GSource,
 * so no thread blocks in a poll. Each record value is tokenized and its words are added to
 * the aggregator shards through one #TallyWordBatcher per input partition (the partition
 * is the aggregators' store), flushed once per wake-up: one AddWords batch per shard and
 * store per poll. When a shard's mailbox is full the source pauses its partitions and
 * resumes them once the batches went through.
 *
 * With checkpointing enabled it owns a #TallyCheckpoint: every [checkpoint] interval_ms it
 * writes the changed counts of each owned store with the offsets they cover, and only
 * after the broker acknowledged them stores those offsets for the consumer group's
 * auto-commit (enable.auto.offset.store=false). A revoked partition is checkpointed,
 * committed synchronously and dropped; an assigned one is restored from the changelog
 * before anything of it is consumed. See plugin/tally-checkpoint.h for the record format.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>
#include <librdkafka/rdkafka.h>

#include "tally-actor.h"
#include "tally-aggregator-handle.h"
#include "tally-metrics.h"
#include "tally-config.h"
#include "tally-counts.h"
#include "tally-snapshot-coordinator.h"
#include "tally-window-clock.h"
#include "tally-tokenizer.h"

G_BEGIN_DECLS

/**
 * TALLY_SOURCE_ERROR:
 *
 * Error domain of the source actor. Errors in this domain are from #TallySourceError.
 */
#define TALLY_SOURCE_ERROR (tally_source_error_quark ())

/**
 * TallySourceError:
 * @TALLY_SOURCE_ERROR_CONFIG: librdkafka refused a consumer property or could not create
 *   the consumer or the changelog clients; the message carries librdkafka's text.
 * @TALLY_SOURCE_ERROR_SUBSCRIBE: the subscription to the input topics failed.
 * @TALLY_SOURCE_ERROR_STOPPED: the source no longer consumes (it was told to stop).
 *
 * Errors of the source actor.
 */
typedef enum
{
  TALLY_SOURCE_ERROR_CONFIG,
  TALLY_SOURCE_ERROR_SUBSCRIBE,
  TALLY_SOURCE_ERROR_STOPPED,
} TallySourceError;

GQuark tally_source_error_quark (void);

#define TALLY_TYPE_SOURCE (tally_source_get_type ())
G_DECLARE_FINAL_TYPE (TallySource, tally_source, TALLY, SOURCE, TallyActor)

/**
 * tally_source_new:
 * @config: the configuration: [input] topics, group_id, auto_offset_reset,
 *   max_batch_records; [checkpoint] enabled, changelog_topic, interval_ms; [tokenizer]
 *   options; read now, not kept
 * @guarantee: the checkpoints' guarantee: %TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE makes
 *   each checkpoint one Kafka transaction with the input offsets (a transactional.id
 *   unique to this process; enable.auto.commit=false), which needs a broker with
 *   transactions; usually [checkpoint] guarantee, but `tally run` passes at_least_once for
 *   the embedded broker
 * @conf: (transfer full): client properties (bootstrap.servers and every [kafka]
 *   property, as from tally_config_apply_kafka()); consumed whatever happens
 * @handle: the aggregator shards; a reference is taken
 * @error: return location for %TALLY_SOURCE_ERROR_CONFIG (also when the broker cannot do
 *   the transactions of exactly once; the message says what to set)
 *
 * Configures and creates the consumer (group.id from [input] group_id,
 * enable.auto.offset.store=false, enable.auto.commit=true so that only offsets stored
 * after a checkpoint are committed, partition.assignment.strategy=range unless [kafka]
 * sets one: range keeps partition p of every input topic on the same instance, which is
 * what one store per partition number needs) and, with checkpointing enabled, the
 * changelog clients. Subscribing happens when the actor starts (tally_actor_start()).
 * Any thread.
 *
 * Returns: (transfer full) (nullable): the actor, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyActor *tally_source_new (const TallyConfig *config, TallyConfigGuarantee guarantee,
                              rd_kafka_conf_t *conf, TallyAggregatorHandle *handle, GError **error);

/**
 * tally_source_configure_consumer:
 * @config: the configuration: [input] topics, group_id, auto_offset_reset, and which
 *   [kafka] properties it sets; read now, not kept
 * @conf: the consumer's properties, with [kafka] already applied
 *   (tally_config_apply_kafka()); changed in place
 * @error: return location for %TALLY_SOURCE_ERROR_CONFIG (librdkafka refused a value)
 *
 * Sets the consumer properties Tally chooses, as tally_source_new() does: group.id,
 * auto.offset.reset, enable.auto.offset.store=false, enable.auto.commit=true (tally_source_new()
 * then sets false for exactly-once checkpoints, whose offsets go with each transaction); unless
 * [kafka] sets them, partition.assignment.strategy=range, queued.min.messages=1000000 and,
 * when an input topic is a `^regex`, topic.metadata.refresh.interval.ms=10000
 * (librdkafka's default of 300000 ms let a topic created to match the pattern wait up to
 * 5 minutes: a pattern subscription is matched against each periodic metadata refresh).
 * Any thread.
 *
 * Returns: %TRUE when every property was accepted
 */
gboolean tally_source_configure_consumer (const TallyConfig *config, rd_kafka_conf_t *conf,
                                          GError **error);

/**
 * tally_source_snapshot_async:
 * @source: the source's address
 * @options: (nullable): the filters of the request the cut answers (copied): the shards
 *   then answer only the words kept (a top N costs a sum over the stores and a selection,
 *   not a sort and copy of every word); %NULL cuts every word
 * @cancellable: (nullable): abandons the wait for the reply
 * @callback: called on the caller's thread-default main context with the cut
 * @user_data: data for @callback
 *
 * The snapshot barrier. On the source's own context: sends every pending AddWords batch
 * (waiting for room), then asks every shard for the counts of the owned stores, after the
 * last AddWords (same sender, so the shards see them first), and records the offsets
 * those counts reflect. Any thread with a thread-default main context.
 */
void tally_source_snapshot_async (TallyAddress *source, const TallyCountsOptions *options,
                                  GCancellable *cancellable, GAsyncReadyCallback callback,
                                  gpointer user_data);

/**
 * tally_source_snapshot_finish:
 * @source: the source's address
 * @result: the result given to the callback
 * @error: return location for an error of tally_address_ask_finish() or of the shards
 *
 * Returns: (transfer full) (nullable): the cut
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotCut *tally_source_snapshot_finish (TallyAddress *source, GAsyncResult *result,
                                                GError **error);

/**
 * tally_source_window_snapshot_async:
 * @source: the source's address
 * @selector: which counts over time ([windows]); copied
 * @cancellable: (nullable): abandons the wait for the reply
 * @callback: called on the caller's thread-default main context with the cut
 * @user_data: data for @callback
 *
 * As tally_source_snapshot_async(), over the time range @selector resolves to on the
 * source's window clock (tally-window-clock.h): the cut's @windowed is set with the range.
 * Any thread with a thread-default main context.
 */
void tally_source_window_snapshot_async (TallyAddress *source, const TallyWindowSelector *selector,
                                         GCancellable *cancellable, GAsyncReadyCallback callback,
                                         gpointer user_data);

/**
 * tally_source_window_snapshot_finish:
 * @source: the source's address
 * @result: the result given to the callback
 * @error: %TALLY_WINDOW_ERROR_DISABLED when [windows] is off, another %TALLY_WINDOW_ERROR
 *   for a selector that cannot be answered (tally_window_clock_resolve()), or an error of
 *   tally_address_ask_finish() or of the shards
 *
 * Returns: (transfer full) (nullable): the cut
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotCut *tally_source_window_snapshot_finish (TallyAddress *source, GAsyncResult *result,
                                                       GError **error);

/**
 * TallySourceWindowClosedFunc:
 * @cut: (transfer full): the final counts of a window that closed on this instance (its
 *   @windowed range is the window), over the stores owned when it closed
 * @user_data: the data given to tally_source_set_window_closed_func()
 *
 * Called on the source's thread once per window that closed (tally-window-clock.h), in
 * window order.
 */
typedef void (*TallySourceWindowClosedFunc) (TallySnapshotCut *cut, gpointer user_data);

/**
 * tally_source_set_window_closed_func:
 * @self: a source with [windows] enabled, not yet started
 * @func: (nullable): called with each closed window's final counts; %NULL takes none
 * @user_data: data for @func
 * @destroy: (nullable): frees @user_data when replaced or when the source is finalized
 *
 * Asks for the final counts of every window when it closes ([windows] publish: `tally run`
 * publishes them through the snapshot coordinator). Before tally_actor_start().
 */
void tally_source_set_window_closed_func (TallySource *self, TallySourceWindowClosedFunc func,
                                          gpointer user_data, GDestroyNotify destroy);

/**
 * tally_source_cutter:
 *
 * The source as the owner of the stores for a #TallySnapshotCoordinator: give it this and
 * the source's #TallyAddress as cutter data. A cut is tally_source_snapshot_async(); the
 * final one too (after tally_source_stop_consuming_async()). Any thread.
 *
 * Returns: (transfer none): a static cutter
 */
const TallySnapshotCutter *tally_source_cutter (void);

/**
 * tally_source_stop_consuming_async:
 * @source: the source's address
 * @cancellable: (nullable): abandons the wait
 * @callback: called on the caller's thread-default main context once the source polls no
 *   more and every pending AddWords batch is in a shard's mailbox
 * @user_data: data for @callback
 *
 * First step of a shutdown: no more records are read (the partitions are paused, the fd
 * watch removed). Snapshots still work. Stop the actor (tally_address_stop()) afterwards:
 * its `stopping` hook checkpoints every owned store, commits synchronously, closes the
 * consumer (which revokes and drops its partitions) and destroys it. Finish with
 * tally_address_ask_finish() (the reply is %NULL).
 */
void tally_source_stop_consuming_async (TallyAddress *source, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_source_get_records:
 * @self: a source
 *
 * Returns: the number of records consumed (error events excluded). Any thread (atomic).
 */
guint64 tally_source_get_records (TallySource *self);

/**
 * tally_source_set_metrics:
 * @self: a source not started yet
 * @metrics: (nullable): the registry its figures go to; a reference is taken
 *
 * Before tally_actor_start() only, from the thread that created @self.
 */
void tally_source_set_metrics (TallySource *self, TallyMetrics *metrics);

/**
 * tally_source_get_late_records:
 * @self: a source
 *
 * Returns: the records that came after their window closed ([windows] grace_ms), counted
 *   in the all-time totals only or dropped ([windows] late). Any thread (atomic).
 */
guint64 tally_source_get_late_records (TallySource *self);

G_END_DECLS
