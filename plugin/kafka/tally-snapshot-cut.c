/* tally-snapshot-cut.c — a consistent cut (tally-snapshot-cut.h).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-cut.h"

void
tally_snapshot_cut_free (TallySnapshotCut *cut)
{
  if (cut == NULL)
    return;
  g_clear_pointer (&cut->counts, tally_counts_unref);
  g_clear_pointer (&cut->offsets, rd_kafka_topic_partition_list_destroy);
  g_clear_pointer (&cut->partitions, rd_kafka_topic_partition_list_destroy);
  g_free (cut);
}
