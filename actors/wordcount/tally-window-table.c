/* tally-window-table.c — buckets of word tables kept sorted by start time.
 *
 * What it is for: a store's windowed counts (see tally-window-table.h). Why it is built so:
 * a store holds tens of buckets (60 one-minute buckets for an hour), so a sorted array
 * with a binary search finds one cheaply, and the last bucket used is kept at hand because
 * the words of one record, and usually of one poll, all go to the same bucket. Expiry
 * drops whole buckets from the old end: no per-word bookkeeping.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-window-table.h"

#include "tally-counts-private.h"

#include <string.h>

typedef struct
{
  gint64 start_ms;
  TallyWordTable *table;
} Bucket;

struct _TallyWindowTable
{
  GArray *buckets; /* Bucket, sorted by start_ms */
  gint64 last_start;
  TallyWordTable *last_table; /* the bucket of last_start, or NULL */
};

TallyWindowTable *
tally_window_table_new (void)
{
  TallyWindowTable *table = g_new0 (TallyWindowTable, 1);

  table->buckets = g_array_new (FALSE, FALSE, sizeof (Bucket));
  return table;
}

void
tally_window_table_free (TallyWindowTable *table)
{
  if (table == NULL)
    return;
  for (guint i = 0; i < table->buckets->len; i++)
    tally_word_table_free (g_array_index (table->buckets, Bucket, i).table);
  g_array_unref (table->buckets);
  g_free (table);
}

/* The index of the first bucket starting at or after @start_ms. */
static guint
lower_bound (TallyWindowTable *table, gint64 start_ms)
{
  guint lo = 0, hi = table->buckets->len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      if (g_array_index (table->buckets, Bucket, mid).start_ms < start_ms)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

TallyWordTable *
tally_window_table_get_bucket (TallyWindowTable *table, gint64 start_ms, gboolean create)
{
  guint i;

  g_return_val_if_fail (table != NULL, NULL);

  if (G_LIKELY (table->last_table != NULL && table->last_start == start_ms))
    return table->last_table;
  i = lower_bound (table, start_ms);
  if (i == table->buckets->len || g_array_index (table->buckets, Bucket, i).start_ms != start_ms)
    {
      Bucket b = { start_ms, NULL };
      if (!create)
        return NULL;
      b.table = tally_word_table_new ();
      g_array_insert_val (table->buckets, i, b);
    }
  table->last_start = start_ms;
  table->last_table = g_array_index (table->buckets, Bucket, i).table;
  return table->last_table;
}

guint
tally_window_table_expire (TallyWindowTable *table, gint64 before_ms)
{
  return tally_window_table_expire_full (table, before_ms, NULL, NULL);
}

guint
tally_window_table_expire_full (TallyWindowTable *table, gint64 before_ms,
                                TallyWindowBucketFunc func, gpointer user_data)
{
  guint n;

  g_return_val_if_fail (table != NULL, 0);

  n = lower_bound (table, before_ms);
  for (guint i = 0; i < n; i++)
    {
      Bucket *b = &g_array_index (table->buckets, Bucket, i);
      if (b->table == table->last_table)
        table->last_table = NULL;
      if (func != NULL)
        func (b->start_ms, b->table, user_data);
      tally_word_table_free (b->table);
    }
  if (n > 0)
    g_array_remove_range (table->buckets, 0, n);
  return n;
}

void
tally_window_table_foreach_bucket (TallyWindowTable *table, TallyWindowBucketFunc func,
                                   gpointer user_data)
{
  g_return_if_fail (table != NULL && func != NULL);

  for (guint i = 0; i < table->buckets->len; i++)
    {
      Bucket *b = &g_array_index (table->buckets, Bucket, i);
      func (b->start_ms, b->table, user_data);
    }
}

void
tally_window_table_replace_bucket (TallyWindowTable *table, gint64 start_ms, TallyWordTable *bucket)
{
  guint i;

  g_return_if_fail (table != NULL && bucket != NULL);

  i = lower_bound (table, start_ms);
  if (i < table->buckets->len && g_array_index (table->buckets, Bucket, i).start_ms == start_ms)
    {
      Bucket *b = &g_array_index (table->buckets, Bucket, i);
      if (b->table == table->last_table)
        table->last_table = NULL;
      tally_word_table_free (b->table);
      b->table = bucket;
    }
  else
    {
      Bucket b = { start_ms, bucket };
      g_array_insert_val (table->buckets, i, b);
    }
}

static void
add_one (const char *word, gsize len, guint64 count, gpointer user_data)
{
  if (count > 0)
    tally_word_table_add (user_data, word, len, tally_word_hash (word, len), count);
}

guint
tally_window_table_sum (TallyWindowTable *table, gint64 from_ms, gint64 to_ms, TallyWordTable *into)
{
  guint n = 0;

  g_return_val_if_fail (table != NULL && into != NULL, 0);

  for (guint i = lower_bound (table, from_ms); i < table->buckets->len; i++)
    {
      Bucket *b = &g_array_index (table->buckets, Bucket, i);
      if (b->start_ms >= to_ms)
        break;
      tally_word_table_foreach (b->table, add_one, into);
      n++;
    }
  return n;
}

guint
tally_window_table_collect (TallyWindowTable *const *tables, guint n_tables, gint64 from_ms,
                            gint64 to_ms, const char *prefix, GArray *entries)
{
  g_autoptr (GPtrArray) buckets = g_ptr_array_new ();
  TallyCountsOptions options = { 0, prefix, 0 };

  g_return_val_if_fail (tables != NULL || n_tables == 0, 0);
  g_return_val_if_fail (entries != NULL, 0);

  for (guint t = 0; t < n_tables; t++)
    for (guint i = lower_bound (tables[t], from_ms); i < tables[t]->buckets->len; i++)
      {
        Bucket *b = &g_array_index (tables[t]->buckets, Bucket, i);
        if (b->start_ms >= to_ms)
          break;
        g_ptr_array_add (buckets, b->table);
      }
  tally_counts_sum_tables ((TallyWordTable *const *)buckets->pdata, buckets->len, &options,
                           entries);
  return buckets->len;
}

guint
tally_window_table_get_n_buckets (TallyWindowTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->buckets->len;
}

gint64
tally_window_table_get_oldest (TallyWindowTable *table)
{
  g_return_val_if_fail (table != NULL, G_MAXINT64);
  return table->buckets->len > 0 ? g_array_index (table->buckets, Bucket, 0).start_ms : G_MAXINT64;
}

gsize
tally_window_table_get_memory (TallyWindowTable *table)
{
  gsize bytes;

  g_return_val_if_fail (table != NULL, 0);

  bytes = sizeof (*table) + table->buckets->len * sizeof (Bucket);
  for (guint i = 0; i < table->buckets->len; i++)
    bytes += tally_word_table_get_memory (g_array_index (table->buckets, Bucket, i).table);
  return bytes;
}
