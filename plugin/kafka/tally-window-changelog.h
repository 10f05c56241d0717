/* tally-window-changelog.h — counts over time in the changelog: records, tombstones, restore.
 *
 * Windowed state ([windows], tally-window-clock.h) lives in the same compacted changelog
 * partition as its store's all-time counts, in *extension* records whose key starts with a
 * NUL byte and a control byte, which no word and no offset marker does:
 *
 *   \0 \x01 <bucket start ms> \0 <word>   ->  its count in that bucket, ASCII decimal; a
 *                                            tombstone once the bucket expired
 *   \0 \x02                               ->  the partition's stream time (ms)
 *   \0 \x03                               ->  end (ms) of the last window whose final
 *                                            counts were published with the partition
 *
 * The source writes them in each checkpoint before the offset markers (in its transaction
 * when exactly once), so a restore that reaches a marker has the windows it covers; an
 * expired bucket is deleted by one tombstone per word. A #TallyWindowRestore collects them
 * during tally_checkpoint_restore() and loads them into the shards and the clock.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-aggregator-handle.h"
#include "tally-aggregator.h"
#include "tally-checkpoint.h"
#include "tally-snapshot-cut.h"
#include "tally-window-clock.h"

G_BEGIN_DECLS

/**
 * tally_window_changelog_write:
 * @checkpoint: the changelog, in a checkpoint
 * @store: the store / changelog partition
 * @changes: (element-type TallyBucketChanges): bucket changes, oldest write first (a
 *   failed checkpoint's, then the new ones: the last record of a key wins on restore)
 * @stream_time_ms: the partition's stream time, or %G_MININT64 to write none
 * @published_upto_ms: its published-window end, or %G_MININT64 to write none
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Queues the extension records of @store (see the file head). Checkpoint's thread.
 *
 * Returns: %TRUE if every record was queued
 */
gboolean tally_window_changelog_write (TallyCheckpoint *checkpoint, guint32 store,
                                       GPtrArray *changes, gint64 stream_time_ms,
                                       gint64 published_upto_ms, GError **error);

/**
 * tally_window_changelog_write_final:
 * @checkpoint: a transactional checkpoint, between begin and commit
 * @topic: the output topic
 * @max_record_bytes: the largest part ([output] max_record_bytes)
 * @instance_id: the instance id the snapshot names
 * @cut: a closed window's final counts (@cut->windowed set)
 * @error: %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE or %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Queues @cut as the snapshot answering request `window-<start ms>` in the checkpoint's
 * transaction (tally_checkpoint_write_snapshot()). Checkpoint's thread.
 *
 * Returns: %TRUE if every part was queued
 */
gboolean tally_window_changelog_write_final (TallyCheckpoint *checkpoint, const char *topic,
                                             gsize max_record_bytes, const char *instance_id,
                                             const TallySnapshotCut *cut, GError **error);

typedef struct _TallyWindowRestore TallyWindowRestore;

/**
 * tally_window_restore_new:
 *
 * Returns: (transfer full): an empty collector for one changelog partition's restore
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWindowRestore *tally_window_restore_new (void);

/**
 * tally_window_restore_free:
 * @restore: (transfer full) (nullable): a collector
 */
void tally_window_restore_free (TallyWindowRestore *restore);

/**
 * tally_window_restore_add:
 * @restore: a collector
 * @key: (array length=key_len): an extension record's key
 * @key_len: its length
 * @value: (nullable) (array length=value_len): its value, %NULL for a tombstone
 * @value_len: its length
 *
 * Takes one record, in changelog order (the last of a key wins; a tombstone deletes).
 * Records that do not parse are logged and skipped.
 */
void tally_window_restore_add (TallyWindowRestore *restore, const void *key, gsize key_len,
                               const void *value, gsize value_len);

/**
 * tally_window_restore_apply:
 * @restore: a collector that saw a whole changelog partition
 * @store: its store
 * @handle: the shards, told RestoreBucket for every bucket found
 * @clock: the window clock, given the partition's stream time, published-window end and
 *   windows with records
 * @error: %TALLY_ACTOR_ERROR if a shard cannot be told
 *
 * Returns: whether every shard was told
 */
gboolean tally_window_restore_apply (TallyWindowRestore *restore, guint32 store,
                                     TallyAggregatorHandle *handle, TallyWindowClock *clock,
                                     GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyWindowRestore, tally_window_restore_free)

G_END_DECLS
