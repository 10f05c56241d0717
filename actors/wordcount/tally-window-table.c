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

/* tally_window_table_collect() sums in two steps, so that its random accesses stay in
 * the cache:
 *   1. every word of the buckets is staged with the hash bits its slot keeps (no word is
 *      hashed again) and its first 8 bytes, then scattered into 2^k partitions by the top
 *      bits of the hash, each partition small enough (about PARTITION_WORDS words) for
 *      its scratch index and its entries to stay in the CPU's cache;
 *   2. each partition is summed into a scratch index of { entry number + 1 (0 = empty),
 *      hash bits }, reused from partition to partition. A probe reads an entry only on a
 *      match of the hash bits, and compares words by length and first 8 bytes (kept
 *      beside the entries), which decides every word of up to 8 bytes; only longer words
 *      read the rest of their bytes.
 * Summing 1 M distinct words of 15 buckets into one index of 2^21 slots missed the cache
 * on nearly every probe, and on every word read to confirm a match. */
typedef struct
{
  const char *word;
  guint64 head; /* the first 8 bytes of the word, zero-padded */
  guint64 count;
  guint32 len;
  guint32 hash_lo;
} Staged;

G_STATIC_ASSERT (sizeof (Staged) == 32);

typedef struct
{
  guint32 n;
  guint32 hash_lo;
} IndexSlot;

typedef struct
{
  Staged *staged;
  gsize n;
  const char *prefix;
  gsize prefix_len;
} StageData;

#define PARTITION_WORDS 4096
#define COLLECT_PREFETCH 8

static inline guint64
word_head (const char *word, gsize len)
{
  guint64 head = 0;

  memcpy (&head, word, MIN (len, 8));
  return head;
}

static void
stage_one (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  StageData *d = user_data;
  Staged *s;

  if (count == 0 || len < d->prefix_len
      || (d->prefix_len > 0 && memcmp (word, d->prefix, d->prefix_len) != 0))
    return;
  s = &d->staged[d->n++];
  s->word = word;
  s->head = word_head (word, len);
  s->count = count;
  s->len = (guint32)len;
  s->hash_lo = hash_lo;
}

/* Sums the @n staged words of one partition into @out (room for @n), which gets one entry
 * per distinct word; @heads has room for @n too. Returns the number of entries. */
static gsize
sum_partition (const Staged *s, gsize n, IndexSlot *index, gsize mask, TallyWordCount *out,
               guint64 *heads)
{
  gsize n_out = 0;

  memset (index, 0, (mask + 1) * sizeof (IndexSlot));
  for (gsize k = 0; k < n; k++)
    {
      guint32 lo = s[k].hash_lo;
      gsize i;

      if (k + COLLECT_PREFETCH < n)
        __builtin_prefetch (&index[s[k + COLLECT_PREFETCH].hash_lo & mask]);
      for (i = lo & mask;; i = (i + 1) & mask)
        {
          TallyWordCount *e;

          if (index[i].n == 0)
            {
              out[n_out].word = s[k].word;
              out[n_out].len = s[k].len;
              out[n_out].count = s[k].count;
              heads[n_out] = s[k].head;
              index[i].n = (guint32)++n_out;
              index[i].hash_lo = lo;
              break;
            }
          if (index[i].hash_lo != lo || heads[index[i].n - 1] != s[k].head)
            continue;
          e = &out[index[i].n - 1];
          if (e->len == s[k].len
              && (s[k].len <= 8 || memcmp (e->word + 8, s[k].word + 8, s[k].len - 8) == 0))
            {
              e->count += s[k].count;
              break;
            }
        }
    }
  return n_out;
}

guint
tally_window_table_collect (TallyWindowTable *const *tables, guint n_tables, gint64 from_ms,
                            gint64 to_ms, const char *prefix, GArray *entries)
{
  StageData d = { NULL, 0, prefix, prefix != NULL ? strlen (prefix) : 0 };
  gsize upper = 0, n_parts = 1, biggest = 0, slots = 16, first;
  guint bits = 0, n = 0;
  g_autofree Staged *parted = NULL;
  g_autofree gsize *start = NULL;
  g_autofree gsize *fill = NULL;
  g_autofree IndexSlot *index = NULL;
  g_autofree guint64 *heads = NULL;
  TallyWordCount *out;

  g_return_val_if_fail (tables != NULL || n_tables == 0, 0);
  g_return_val_if_fail (entries != NULL, 0);

  /* At most as many distinct words as the buckets' sizes together. */
  for (guint t = 0; t < n_tables; t++)
    for (guint i = lower_bound (tables[t], from_ms); i < tables[t]->buckets->len; i++)
      {
        Bucket *b = &g_array_index (tables[t]->buckets, Bucket, i);
        if (b->start_ms >= to_ms)
          break;
        upper += tally_word_table_get_size (b->table);
      }
  if (upper == 0)
    return 0;

  /* 1. Stage, then scatter by the top bits of the hash. */
  d.staged = g_new (Staged, upper);
  for (guint t = 0; t < n_tables; t++)
    for (guint i = lower_bound (tables[t], from_ms); i < tables[t]->buckets->len; i++)
      {
        Bucket *b = &g_array_index (tables[t]->buckets, Bucket, i);
        if (b->start_ms >= to_ms)
          break;
        tally_word_table_foreach_hashed (b->table, stage_one, &d);
        n++;
      }
  while (n_parts * PARTITION_WORDS < d.n && bits < 16)
    {
      n_parts *= 2;
      bits++;
    }
  start = g_new0 (gsize, n_parts + 1);
  fill = g_new (gsize, n_parts);
  for (gsize k = 0; k < d.n; k++)
    start[bits > 0 ? (d.staged[k].hash_lo >> (32 - bits)) + 1 : 1]++;
  for (gsize p = 0; p < n_parts; p++)
    {
      biggest = MAX (biggest, start[p + 1]);
      start[p + 1] += start[p];
      fill[p] = start[p];
    }
  if (bits > 0)
    {
      parted = g_new (Staged, d.n);
      for (gsize k = 0; k < d.n; k++)
        parted[fill[d.staged[k].hash_lo >> (32 - bits)]++] = d.staged[k];
      g_free (d.staged);
    }
  else
    parted = d.staged;
  d.staged = NULL;

  /* 2. Sum each partition with an index at a load of at most 2/3 (buckets share words, so
   * it is lower in practice), straight into the room reserved in @entries. */
  while (slots < biggest + biggest / 2)
    slots *= 2;
  index = g_new (IndexSlot, slots);
  heads = g_new (guint64, MAX (biggest, 1));
  first = entries->len;
  g_array_set_size (entries, first + d.n);
  out = &g_array_index (entries, TallyWordCount, first);
  for (gsize p = 0; p < n_parts; p++)
    {
      gsize size = start[p + 1] - start[p], mask = 15;

      while (mask + 1 < size + size / 2)
        mask = mask * 2 + 1;
      out += sum_partition (parted + start[p], size, index, mask, out, heads);
    }
  g_array_set_size (entries, (guint)(out - (TallyWordCount *)(void *)entries->data));
  return n;
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
