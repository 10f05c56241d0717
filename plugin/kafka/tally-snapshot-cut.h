/* tally-snapshot-cut.h — a consistent cut: the counts of some stores and the offsets they
 * reflect.
 *
 * A cut is what a snapshot publishes. Whoever owns the stores takes it (the source actor
 * for `tally run`, the module for a plugin host) by sending GetCounts to every shard after
 * its last AddWords: messages from one sender are handled in order, so the counts are
 * exactly those of the records before the offsets. The snapshot coordinator asks for cuts
 * and hands them to the publisher.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-counts.h"

G_BEGIN_DECLS

/**
 * TallySnapshotCut:
 * @counts: the counts summed over the stores (input partitions) cut
 * @offsets: per input topic-partition, the offset of the next record not reflected in
 *   @counts (Kafka commit semantics); %RD_KAFKA_OFFSET_INVALID when nothing of it was
 *   consumed and no offset was committed
 * @partitions: the input topic-partitions owned when the cut was taken
 * @taken_ms: milliseconds between the barrier and the last shard's answer
 * @windowed: whether @counts are those of a time range (a window selector) rather than the
 *   all-time counts
 * @window_start_ms: when @windowed, the range's start (ms since the Unix epoch)
 * @window_end_ms: when @windowed, its end (exclusive)
 *
 * A consistent cut. Plain struct; owned by whoever finished the ask, which may steal
 * fields (set them to %NULL) before tally_snapshot_cut_free().
 */
typedef struct
{
  TallyCounts *counts;
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_topic_partition_list_t *partitions;
  gint64 taken_ms;
  gboolean windowed;
  gint64 window_start_ms;
  gint64 window_end_ms;
} TallySnapshotCut;

/**
 * tally_snapshot_cut_free:
 * @cut: (transfer full) (nullable): a cut; its fields may have been stolen (set to %NULL)
 *
 * Frees @cut and whatever fields it still holds. Any thread.
 */
void tally_snapshot_cut_free (TallySnapshotCut *cut);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotCut, tally_snapshot_cut_free)

G_END_DECLS
