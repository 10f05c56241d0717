/* tally-window-changelog.c — the windows' changelog records (tally-window-changelog.h).
 *
 * What it is for: keeping the source actor's checkpoint code about when to write, and this
 * file about what is written and read back. Why it is built so: a word's bucket key embeds
 * the bucket start, so compaction keeps one record per (bucket, word) and a tombstone per
 * word deletes a bucket, with no second topic to create, partition and keep in the same
 * transaction; a restore groups the records by bucket and loads each bucket once.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-window-changelog.h"

#include <string.h>

#define KEY_BUCKET '\x01'
#define KEY_STREAM_TIME '\x02'
#define KEY_PUBLISHED '\x03'

static gboolean
write_bucket (TallyCheckpoint *checkpoint, guint32 store, const TallyBucketChanges *c,
              GError **error)
{
  g_autoptr (GString) key = g_string_new (NULL);
  gsize n, head;
  const TallyWordCount *e = tally_counts_get_entries (c->counts, &n);

  g_string_append_c (key, '\0');
  g_string_append_c (key, KEY_BUCKET);
  g_string_append_printf (key, "%" G_GINT64_FORMAT, c->start_ms);
  g_string_append_c (key, '\0');
  head = key->len;
  for (gsize i = 0; i < n; i++)
    {
      char digits[24];

      g_string_truncate (key, head);
      g_string_append_len (key, e[i].word, e[i].len);
      g_snprintf (digits, sizeof digits, "%" G_GUINT64_FORMAT, e[i].count);
      if (!tally_checkpoint_write_record (checkpoint, (gint32)store, key->str, key->len,
                                          c->expired ? NULL : digits, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
write_marker (TallyCheckpoint *checkpoint, guint32 store, char kind, gint64 value, GError **error)
{
  const char key[2] = { '\0', kind };
  char digits[24];

  if (value == G_MININT64)
    return TRUE;
  g_snprintf (digits, sizeof digits, "%" G_GINT64_FORMAT, value);
  return tally_checkpoint_write_record (checkpoint, (gint32)store, key, 2, digits, error);
}

gboolean
tally_window_changelog_write (TallyCheckpoint *checkpoint, guint32 store, GPtrArray *changes,
                              gint64 stream_time_ms, gint64 published_upto_ms, GError **error)
{
  g_return_val_if_fail (checkpoint != NULL && changes != NULL, FALSE);

  for (guint i = 0; i < changes->len; i++)
    if (!write_bucket (checkpoint, store, g_ptr_array_index (changes, i), error))
      return FALSE;
  return write_marker (checkpoint, store, KEY_STREAM_TIME, stream_time_ms, error)
         && write_marker (checkpoint, store, KEY_PUBLISHED, published_upto_ms, error);
}

gboolean
tally_window_changelog_write_final (TallyCheckpoint *checkpoint, const char *topic,
                                    gsize max_record_bytes, const char *instance_id,
                                    const TallySnapshotCut *cut, GError **error)
{
  g_autoptr (TallySnapshot) snapshot = tally_snapshot_new ();

  g_return_val_if_fail (checkpoint != NULL && topic != NULL && cut != NULL, FALSE);
  g_return_val_if_fail (cut->windowed && cut->counts != NULL, FALSE);

  snapshot->snapshot_id = g_uuid_string_random ();
  snapshot->request_id = g_strdup_printf ("window-%" G_GINT64_FORMAT, cut->window_start_ms);
  snapshot->instance_id = g_strdup (instance_id);
  snapshot->created_at_ms = g_get_real_time () / 1000;
  snapshot->taken_ms = cut->taken_ms;
  snapshot->total_words = tally_counts_get_total (cut->counts);
  snapshot->distinct_words = tally_counts_get_n_words (cut->counts);
  /* Only partitions with a known position, as the publisher writes them. */
  snapshot->offsets
      = rd_kafka_topic_partition_list_new (cut->offsets != NULL ? cut->offsets->cnt : 0);
  for (int k = 0; cut->offsets != NULL && k < cut->offsets->cnt; k++)
    if (cut->offsets->elems[k].offset >= 0)
      rd_kafka_topic_partition_list_add (snapshot->offsets, cut->offsets->elems[k].topic,
                                         cut->offsets->elems[k].partition)
          ->offset
          = cut->offsets->elems[k].offset;
  snapshot->partitions = cut->partitions != NULL
                             ? rd_kafka_topic_partition_list_copy (cut->partitions)
                             : rd_kafka_topic_partition_list_new (0);
  for (int k = 0; k < snapshot->partitions->cnt; k++)
    snapshot->partitions->elems[k].offset = RD_KAFKA_OFFSET_INVALID;
  snapshot->counts = tally_counts_ref (cut->counts);
  snapshot->windowed = TRUE;
  snapshot->window_start_ms = cut->window_start_ms;
  snapshot->window_end_ms = cut->window_end_ms;
  return tally_checkpoint_write_snapshot (checkpoint, topic, snapshot, max_record_bytes, error);
}

struct _TallyWindowRestore
{
  GHashTable *records; /* "start\0word" (GBytes) -> guint64 *count */
  gint64 stream_time;
  gint64 published_upto;
};

TallyWindowRestore *
tally_window_restore_new (void)
{
  TallyWindowRestore *r = g_new0 (TallyWindowRestore, 1);

  r->records
      = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, g_free);
  r->stream_time = G_MININT64;
  r->published_upto = G_MININT64;
  return r;
}

void
tally_window_restore_free (TallyWindowRestore *restore)
{
  if (restore == NULL)
    return;
  g_hash_table_unref (restore->records);
  g_free (restore);
}

void
tally_window_restore_add (TallyWindowRestore *r, const void *key, gsize key_len, const void *value,
                          gsize value_len)
{
  const char *k = key;
  g_autofree char *text = value != NULL ? g_strndup (value, value_len) : NULL;
  gint64 number = 0;

  g_return_if_fail (r != NULL && key != NULL);

  if (key_len < 2)
    return;
  if (text != NULL && !g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &number, NULL))
    {
      g_warning ("changelog: a window record whose value is not a number, skipped");
      return;
    }
  if (k[1] == KEY_STREAM_TIME && text != NULL)
    r->stream_time = number;
  else if (k[1] == KEY_PUBLISHED && text != NULL)
    r->published_upto = number;
  else if (k[1] == KEY_BUCKET && key_len > 3)
    {
      GBytes *rest = g_bytes_new (k + 2, key_len - 2);

      if (text == NULL)
        {
          g_hash_table_remove (r->records, rest);
          g_bytes_unref (rest);
        }
      else
        g_hash_table_replace (r->records, rest, g_memdup2 (&number, sizeof number));
    }
}

gboolean
tally_window_restore_apply (TallyWindowRestore *r, guint32 store, TallyAggregatorHandle *handle,
                            TallyWindowClock *clock, GError **error)
{
  g_autoptr (GHashTable) buckets = g_hash_table_new_full (
      g_int64_hash, g_int64_equal, g_free, (GDestroyNotify)tally_counts_builder_free);
  GHashTableIter iter;
  gpointer key, value;
  guint64 n_words = 0;

  g_return_val_if_fail (r != NULL && handle != NULL && clock != NULL, FALSE);

  g_hash_table_iter_init (&iter, r->records);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      gsize len;
      const char *rest = g_bytes_get_data (key, &len);
      const char *nul = memchr (rest, '\0', len);
      g_autofree char *digits = NULL;
      gint64 start;
      TallyCountsBuilder *builder;

      if (nul == NULL || nul + 1 == rest + len)
        continue;
      digits = g_strndup (rest, nul - rest);
      if (!g_ascii_string_to_signed (digits, 10, 0, G_MAXINT64, &start, NULL))
        continue;
      builder = g_hash_table_lookup (buckets, &start);
      if (builder == NULL)
        {
          builder = tally_counts_builder_new ();
          g_hash_table_insert (buckets, g_memdup2 (&start, sizeof start), builder);
        }
      tally_counts_builder_add (builder, nul + 1, (rest + len) - (nul + 1), *(gint64 *)value);
      n_words++;
    }
  g_hash_table_iter_init (&iter, buckets);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      g_autoptr (TallyCounts) counts = tally_counts_builder_end (value);

      if (!tally_aggregator_handle_restore_bucket (handle, store, *(gint64 *)key, counts, error))
        return FALSE;
      tally_window_clock_restore_bucket (clock, *(gint64 *)key);
    }
  tally_window_clock_restore_partition (clock, store, r->stream_time, r->published_upto,
                                        g_get_real_time () / 1000);
  if (g_hash_table_size (buckets) > 0 || r->stream_time != G_MININT64)
    g_message ("source: restored the windows of store %u: %u bucket(s), %" G_GUINT64_FORMAT
               " word entries, stream time %" G_GINT64_FORMAT,
               store, g_hash_table_size (buckets), n_words, r->stream_time);
  return TRUE;
}
