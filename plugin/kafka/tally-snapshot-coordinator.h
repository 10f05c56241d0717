/* tally-snapshot-coordinator.h — the one snapshot flow of `tally run` and the plugin.
 *
 * The coordinator owns everything about snapshots but the counting: the triggers (request
 * records through a #TallyRequestReader, the [snapshot] interval timer, an explicit
 * trigger such as SIGUSR1, and the final snapshot at shutdown), the cut, publishing
 * through the publisher actor, and the log of what was published. It lives on one
 * GMainContext, the publisher's arbiter's, so a cut goes straight from whoever owns the
 * stores to the thread that publishes it: coordinator -> cutter (barrier, GetCounts) ->
 * coordinator -> publisher, with no relay through another thread.
 *
 * The owner of the stores supplies one thing, a #TallySnapshotCutter: "cut the counts of
 * the stores I own". `tally run` passes the source actor's barrier, the librdkafka module
 * its own barrier under its lock.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-metrics.h"

#include <gio/gio.h>
#include <librdkafka/rdkafka.h>

#include "tally-actor.h"
#include "tally-snapshot-cut.h"
#include "tally-snapshot-format.h"
#include "tally-window-clock.h"

G_BEGIN_DECLS

/**
 * TallySnapshotCutter:
 * @cut_async: starts a cut; called on the coordinator's context, which is that thread's
 *   thread-default context. @final is %TRUE for the final snapshot at shutdown, after the
 *   input stopped. @options (nullable, valid during the call) are the request's filters
 *   when it has any and names no words: the cut may then hold only the words they keep,
 *   its counts' tally_counts_get_n_words_unfiltered() and
 *   tally_counts_get_total_unfiltered() saying what they were chosen from. @callback must
 *   be called on the same context.
 * @cut_finish: finishes it (and a window cut): (transfer full) the cut, or %NULL with an
 *   error set
 * @cut_window_async: (nullable): starts a cut of the counts over time that @selector names
 *   (a request with a `window` member), as @cut_async does; %NULL when the owner of the
 *   stores keeps no windows, and such requests are answered with an error snapshot
 *
 * What the owner of the stores provides. Both functions get the @cutter_data given to
 * tally_snapshot_coordinator_new().
 */
typedef struct
{
  void (*cut_async) (gpointer cutter_data, gboolean final, const TallyCountsOptions *options,
                     GAsyncReadyCallback callback, gpointer user_data);
  TallySnapshotCut *(*cut_finish) (gpointer cutter_data, GAsyncResult *result, GError **error);
  void (*cut_window_async) (gpointer cutter_data, const TallyWindowSelector *selector,
                            GAsyncReadyCallback callback, gpointer user_data);
} TallySnapshotCutter;

/**
 * TallySnapshotClosedFunc:
 * @user_data: the data given to tally_snapshot_coordinator_close()
 *
 * Called once, on the coordinator's context, when the final snapshot and every snapshot
 * before it were published or failed.
 */
typedef void (*TallySnapshotClosedFunc) (gpointer user_data);

typedef struct _TallySnapshotCoordinator TallySnapshotCoordinator;

/**
 * tally_snapshot_coordinator_new:
 * @log_prefix: put before every log line, e.g. "tally plugin (rdkafka): " or ""; copied
 * @context: (nullable): the context the coordinator runs on (the publisher's arbiter's);
 *   %NULL for the global default context; a reference is taken
 * @publisher: the publisher actor's address (tally-publisher.h); a reference is taken
 * @output_topic: the output topic, for log lines; copied
 * @cutter: (transfer none): the owner of the stores' functions; must outlive the coordinator
 * @cutter_data: given to @cutter's functions
 * @cutter_data_free: (nullable): frees @cutter_data when the last reference to the
 *   coordinator goes (snapshots in flight hold one)
 * @interval_ms: a snapshot every this many ms ([snapshot] interval_ms); 0 for none. The
 *   timer starts here.
 *
 * Creates the coordinator. Triggers are ignored after tally_snapshot_coordinator_close().
 * Any thread.
 *
 * Returns: (transfer full): the coordinator; free with tally_snapshot_coordinator_unref()
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotCoordinator *
tally_snapshot_coordinator_new (const char *log_prefix, GMainContext *context,
                                TallyAddress *publisher, const char *output_topic,
                                const TallySnapshotCutter *cutter, gpointer cutter_data,
                                GDestroyNotify cutter_data_free, guint interval_ms);

/**
 * tally_snapshot_coordinator_set_metrics:
 * @self: a coordinator, before its first trigger
 * @metrics: (nullable): where snapshot requests, failures, durations, parts and bytes are
 *   counted; a reference is taken
 *
 * From the thread that created @self, before tally_snapshot_coordinator_read_requests().
 */
void tally_snapshot_coordinator_set_metrics (TallySnapshotCoordinator *self, TallyMetrics *metrics);

/**
 * tally_snapshot_coordinator_ref:
 * @self: a coordinator
 *
 * Returns: (transfer full): @self. Any thread.
 */
TallySnapshotCoordinator *tally_snapshot_coordinator_ref (TallySnapshotCoordinator *self);

/**
 * tally_snapshot_coordinator_unref:
 * @self: (transfer full): a coordinator
 *
 * Drops a reference. Snapshots in flight hold their own. tally_snapshot_coordinator_close()
 * frees the request reader on the coordinator's context; without it, the last reference
 * must go on that context's thread or once that context no longer runs (the reader is
 * freed then). Any thread otherwise.
 */
void tally_snapshot_coordinator_unref (TallySnapshotCoordinator *self);

/**
 * tally_snapshot_coordinator_read_requests:
 * @self: a coordinator
 * @conf: (transfer full): consumer configuration of the request reader (bootstrap.servers
 *   and the [kafka] properties); consumed whatever happens
 * @topic: the request topic ([requests] topic)
 * @start_time_ms: answer requests with a record timestamp at least this, in ms since the
 *   Unix epoch (the process's or the host client's start)
 * @timeout_ms: how long to wait for the topic's metadata, in ms
 * @error: return location for a #TallyRequestReaderError
 *
 * Starts answering request records: one snapshot per record, its filters applied by the
 * publisher; a request that does not parse is answered with an error snapshot. The
 * reader's fd watch runs on the coordinator's context. May block up to @timeout_ms. Any
 * thread; call at most once.
 *
 * Returns: %TRUE when the reader runs
 */
gboolean tally_snapshot_coordinator_read_requests (TallySnapshotCoordinator *self,
                                                   rd_kafka_conf_t *conf, const char *topic,
                                                   gint64 start_time_ms, guint timeout_ms,
                                                   GError **error);

/**
 * tally_snapshot_coordinator_trigger:
 * @self: a coordinator
 *
 * Takes and publishes a snapshot with a generated request id (SIGUSR1, or a host's call).
 * Ignored once the triggers are stopped. Any thread; returns at once.
 */
void tally_snapshot_coordinator_trigger (TallySnapshotCoordinator *self);

/**
 * tally_snapshot_coordinator_publish_cut:
 * @self: a coordinator
 * @request: (transfer full): what the snapshot answers (its id, filters and window)
 * @cut: (transfer full): a cut taken already by the owner of the stores
 *
 * Publishes a cut taken outside a trigger: the final counts of a window that closed
 * ([windows] publish), taken by the source when the window closed. Not taken again if the
 * publisher fails. Counts as in flight for tally_snapshot_coordinator_wait_closed() once
 * it reaches the coordinator's context. Any thread; returns at once.
 */
void tally_snapshot_coordinator_publish_cut (TallySnapshotCoordinator *self,
                                             TallySnapshotRequest *request, TallySnapshotCut *cut);

/**
 * tally_snapshot_coordinator_stop_triggers:
 * @self: a coordinator
 *
 * Stops the interval timer and explicit triggers (tally_snapshot_coordinator_trigger()):
 * the first step of a shutdown, before the input stops. The request reader keeps answering
 * requests until tally_snapshot_coordinator_close(), so a request produced during the
 * shutdown is answered rather than left to time out. Snapshots in flight go on. Any
 * thread; runs on the coordinator's context and returns when done there.
 */
void tally_snapshot_coordinator_stop_triggers (TallySnapshotCoordinator *self);

/**
 * tally_snapshot_coordinator_close:
 * @self: a coordinator
 * @closed: (nullable) (scope async): called on the coordinator's context once the final
 *   snapshot and every earlier one were published or failed
 * @user_data: data for @closed
 *
 * Stops the triggers; reads the request topic to its end (tally_request_reader_drain(), at
 * most about 2 s each for the end offsets and the reads), answers every request found and
 * closes the request reader; then takes and publishes the final snapshot (cut with @final
 * %TRUE); @closed comes after those answers too. Requests produced later are not read. Call once,
 * after the input stopped, so the final snapshot holds every record consumed. Any thread; returns
 * at once. A second call is ignored.
 */
void tally_snapshot_coordinator_close (TallySnapshotCoordinator *self,
                                       TallySnapshotClosedFunc closed, gpointer user_data);

/**
 * tally_snapshot_coordinator_wait_closed:
 * @self: a coordinator, after tally_snapshot_coordinator_close()
 * @timeout_ms: the longest wait, in ms
 *
 * Blocks until the final snapshot and every earlier one were published or failed, or
 * @timeout_ms passed; logs a warning for snapshots abandoned. Any thread but the
 * coordinator's context's.
 *
 * Returns: %TRUE when nothing is left in flight
 */
gboolean tally_snapshot_coordinator_wait_closed (TallySnapshotCoordinator *self, guint timeout_ms);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotCoordinator, tally_snapshot_coordinator_unref)

G_END_DECLS
