/* fuzz-snapshot-part.c — libFuzzer target: the snapshot part decoder and the assembler,
 * tally_snapshot_part_decode() and #TallySnapshotAssembler.
 *
 * An input is one or more record values separated by the byte 0xFF (never part of UTF-8
 * JSON). Each is decoded; decoded parts go into one assembler, as `tally snapshot` does,
 * which is then asked for everything it offers (taken snapshots, the merged result, what
 * is missing). A merged snapshot must encode again into parts that decode.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-format.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_encodes (const TallySnapshot *snapshot)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) parts = NULL;

  if (snapshot->counts == NULL)
    return;
  parts = tally_snapshot_encode (snapshot, 4096, &error);
  if (parts == NULL)
    return; /* a word too long for 4096 bytes: refused, as documented */
  for (guint i = 0; i < parts->len; i++)
    {
      gsize len;
      const char *value = g_bytes_get_data (g_ptr_array_index (parts, i), &len);
      g_autoptr (GError) decode_error = NULL;
      g_autoptr (TallySnapshotPart) part = tally_snapshot_part_decode (value, len, &decode_error);

      if (part == NULL)
        {
          fprintf (stderr, "an encoded part does not decode: %s\n%.*s\n", decode_error->message,
                   (int)len, value);
          abort ();
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
  const uint8_t *start = data, *end = data + size;

  while (start <= end)
    {
      const uint8_t *stop = memchr (start, 0xff, (size_t)(end - start));
      g_autoptr (GError) error = NULL;
      TallySnapshotPart *part;

      if (stop == NULL)
        stop = end;
      part = tally_snapshot_part_decode (start, (gsize)(stop - start), &error);
      if (part == NULL && error == NULL)
        abort ();
      if (part != NULL)
        {
          g_autoptr (GError) add_error = NULL;

          tally_snapshot_part_get_snapshot_id (part);
          tally_snapshot_part_get_request_id (part);
          tally_snapshot_part_get_n_entries (part);
          tally_snapshot_assembler_add_part (assembler, part, &add_error);
        }
      start = stop + 1;
    }

  for (;;)
    {
      g_autoptr (TallySnapshot) taken = tally_snapshot_assembler_take_snapshot (assembler);

      if (taken == NULL)
        break;
      g_free (tally_snapshot_to_json (taken, FALSE));
      check_encodes (taken);
    }
  tally_snapshot_assembler_is_complete (assembler);
  tally_snapshot_assembler_get_n_incomplete (assembler);
  {
    g_autoptr (TallySnapshot) merged = tally_snapshot_assembler_dup_merged (assembler);
    rd_kafka_topic_partition_list_t *missing = tally_snapshot_assembler_dup_missing (assembler);

    rd_kafka_topic_partition_list_destroy (missing);
    if (merged != NULL)
      {
        g_free (tally_snapshot_to_json (merged, TRUE));
        check_encodes (merged);
      }
  }
  return 0;
}
