/* tally-snapshot-assembler.h — snapshots put back together from their parts, and merged.
 *
 * A #TallySnapshotAssembler collects parts (#TallySnapshotPart) by snapshot id, in any
 * order, ignoring duplicates (a producer may write a part again after a lost delivery
 * report), into whole snapshots. It then merges the snapshots of several instances that
 * answered one request, until every input partition of the consumer group is covered.
 *
 * Merging sums counts word by word, which is exact only because the instances' input
 * partitions are disjoint; a snapshot that claims a partition already covered (a
 * rebalance between two cuts) is refused rather than counted twice.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-snapshot-part.h"
#include "tally-snapshot.h"

G_BEGIN_DECLS

/**
 * TallySnapshotAssembler:
 *
 * Collects parts into snapshots and merges snapshots of one request. Opaque; one thread at
 * a time.
 */
typedef struct _TallySnapshotAssembler TallySnapshotAssembler;

/**
 * tally_snapshot_assembler_new:
 * @request_id: (nullable): accept only parts answering this request; %NULL accepts all
 *   (and merges whatever comes, which makes sense only for one request at a time)
 * @expected: (nullable) (transfer none): the input partitions the merged result must
 *   cover (offsets ignored); %NULL means merging is complete after the first snapshot.
 *   With a list, only snapshots of partitions of its topics are merged (see
 *   tally_snapshot_assembler_add_part()); an empty list (no input partition exists yet)
 *   merges only snapshots that name no partition, and is complete after the first
 *
 * Returns: (transfer full): an assembler
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotAssembler *
tally_snapshot_assembler_new (const char *request_id,
                              const rd_kafka_topic_partition_list_t *expected);

/**
 * tally_snapshot_assembler_add_part:
 * @self: an assembler
 * @part: (transfer full): a decoded part
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
 *   %TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP, %TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE or
 *   %TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN
 *
 * Adds a part. Parts of another request are ignored (returns %FALSE, no error); a part
 * already seen (same snapshot id and number) is ignored. With expected partitions, the
 * first part of a snapshot that names a partition of a topic not among the expected ones
 * (an instance counting other topics that reads the same request topic) is refused with
 * error FOREIGN, and the rest of its parts are ignored. When the last missing part of a
 * snapshot arrives the snapshot is complete: it is merged into the result unless it
 * overlaps partitions already covered (error OVERLAP; the snapshot is dropped) or is an
 * error snapshot (error REMOTE). Errors are about that one part or snapshot: the assembler
 * stays usable.
 *
 * Returns: %TRUE when this part completed a snapshot that was merged
 */
gboolean tally_snapshot_assembler_add_part (TallySnapshotAssembler *self, TallySnapshotPart *part,
                                            GError **error);

/**
 * tally_snapshot_assembler_take_snapshot:
 * @self: an assembler
 *
 * Takes the oldest snapshot completed and not yet taken: merged ones and error snapshots
 * (not merged), not those refused for overlapping. Useful to a reader that wants the
 * snapshots themselves, not just the merged result.
 *
 * Returns: (transfer full) (nullable): a complete snapshot, or %NULL when none is waiting
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshot *tally_snapshot_assembler_take_snapshot (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_is_complete:
 * @self: an assembler
 *
 * Returns: whether the merged snapshots cover every expected partition (or, with no
 *   expected partitions, whether at least one snapshot was merged)
 */
gboolean tally_snapshot_assembler_is_complete (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_dup_missing:
 * @self: an assembler
 *
 * Returns: (transfer full): the expected partitions not covered yet (possibly empty);
 *   free with rd_kafka_topic_partition_list_destroy()
 */
G_GNUC_WARN_UNUSED_RESULT
rd_kafka_topic_partition_list_t *
tally_snapshot_assembler_dup_missing (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_get_n_incomplete:
 * @self: an assembler
 *
 * Returns: how many snapshots have some but not all of their parts
 */
guint tally_snapshot_assembler_get_n_incomplete (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_dup_merged:
 * @self: an assembler
 *
 * The merge of every snapshot merged so far: counts summed word by word (then the
 * request's `top`, `prefix` and `min_count` filters of the first snapshot applied again),
 * offsets and partitions concatenated, total_words summed (saturated at %G_MAXINT64),
 * taken_ms the largest, distinct_words the number of merged entries when no instance
 * filtered, else the sum (an upper bound). Instance and snapshot ids are those of the first
 * snapshot when only one was merged, else "merged". For counts over time, the window range
 * is the smallest one that covers every snapshot's non-empty range (instances resolve
 * `current` and `last` on their own stream time; a window named by its start is the same
 * range everywhere).
 *
 * Returns: (transfer full) (nullable): the merged snapshot, %NULL before any was merged
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshot *tally_snapshot_assembler_dup_merged (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_free:
 * @self: (transfer full) (nullable): an assembler
 */
void tally_snapshot_assembler_free (TallySnapshotAssembler *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotAssembler, tally_snapshot_assembler_free)

G_END_DECLS
