/* tally-aggregator.c — the aggregator actor: one shard of the word counts.
 *
 * What it is for: the article's WordCountAggregator. Its counts are changed only by its
 * message handlers, which the actor runtime runs one at a time on the shard's arbiter
 * thread, so no lock guards them.
 *
 * Why it is built as it is: the shard's thread does nothing for a word but count it.
 * Words arrive in batches (AddWords) already hashed by the sender, the table of the last
 * store used is kept at hand, and table slots are prefetched ahead of the word being
 * counted (handle_add_words()). Snapshots are owned, immutable TallyCounts, so they can be
 * sent to another thread; their copy and sort are paid while the shard's other messages
 * wait (handle_get_counts()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator.h"

#include "tally-counts-private.h"
#include "tally-window-table.h"
#include "tally-word-hash.h"
#include "tally-word-table.h"

#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-aggregator-error-quark, tally_aggregator_error) /* clang-format on */

/* A word of the current run of a windowed batch: its key in the store's all-time table
 * (tally_word_table_add_keyed(), never 0), its hash bits and its count in the run. */
typedef struct
{
  guint32 key;
  guint32 hash_lo;
  guint64 count;
} RunSlot;

struct _TallyAggregator
{
  TallyActor parent_instance;

  guint shard;
  guint n_shards;
  GHashTable *stores; /* GUINT_TO_POINTER (store) -> TallyWordTable */
  /* A batch of words almost always goes to the same store as the one before. */
  guint32 last_store;
  TallyWordTable *last_table; /* the table of last_store, or NULL */
  GHashTable *windows;        /* GUINT_TO_POINTER (store) -> TallyWindowTable, when used */
  /* Windows: a run of words of one bucket counted per key first (see RunSlot). */
  RunSlot *run; /* run_mask + 1 slots, key 0 = empty */
  gsize run_mask;
  guint32 *run_used; /* the slots in use, run_n of them */
  gsize run_n;
  /* What the last snapshot that summed every word of some stores found: a filtered
   * GetCounts of the same stores, unchanged since, sums only its candidates. */
  TallyCountsFigures figures;
};

G_DEFINE_FINAL_TYPE (TallyAggregator, tally_aggregator, TALLY_TYPE_ACTOR)

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyMessage parent;
  guint32 store;
  guint32 len;
  char word[];
} AddWordMessage;

/* AddWords carries its words packed in one buffer as { 64-bit hash, 32-bit length, bytes }
 * records (or, for a word counted several times already by the sender, { hash, length
 * with bit 31 set, 64-bit count, bytes }), hashed once by the sender (tally_word_hash()),
 * so the shard never hashes a word it is told. */
typedef struct
{
  TallyMessage parent;
  guint32 store;
  gsize n_words;
  guint8 *data; /* { guint64 hash; guint32 len; [guint64 count;] bytes } records, unaligned;
                 * bit 31 of len (RECORD_COUNTED) says a count follows, else the count is 1 */
  gsize len;
  gsize alloc;
} AddWordsMessage;

typedef struct
{
  TallyMessage parent;
  guint32 *stores; /* NULL for all */
  guint n_stores;
  TallyCountsOptions options; /* owned: tally_counts_options_copy() */
} GetCountsMessage;

typedef struct
{
  TallyMessage parent;
  guint32 store;
} StoreMessage;

typedef struct
{
  GetCountsMessage base;
  gint64 from_ms;
  gint64 to_ms;
} GetWindowCountsMessage;

typedef struct
{
  TallyMessage parent;
  gint64 before_ms;
} ExpireBucketsMessage;

typedef struct
{
  TallyMessage parent;
  guint32 store;
  gint64 expire_before_ms;
} TakeWindowChangesMessage;

typedef struct
{
  TallyMessage parent;
  guint32 store;
  gint64 start_ms;
  TallyCounts *counts;
} RestoreBucketMessage;

static void
restore_bucket_free (gpointer p)
{
  RestoreBucketMessage *m = p;
  g_clear_pointer (&m->counts, tally_counts_unref);
  g_free (m);
}

void
tally_bucket_changes_free (TallyBucketChanges *changes)
{
  if (changes == NULL)
    return;
  g_clear_pointer (&changes->counts, tally_counts_unref);
  g_free (changes);
}

typedef struct
{
  TallyMessage parent;
  guint32 store;
  TallyCounts *counts;
} RestoreStoreMessage;

static void
add_words_free (gpointer p)
{
  AddWordsMessage *m = p;
  g_free (m->data);
  g_free (m);
}

static void
get_counts_free (gpointer p)
{
  GetCountsMessage *m = p;
  g_free (m->stores);
  tally_counts_options_clear (&m->options);
  g_free (m);
}

static void
restore_store_free (gpointer p)
{
  RestoreStoreMessage *m = p;
  g_clear_pointer (&m->counts, tally_counts_unref);
  g_free (m);
}

static const TallyMessageType add_word_type = { "AddWord", g_free, g_free };
static const TallyMessageType add_words_type = { "AddWords", add_words_free, NULL };
static const TallyMessageType get_counts_type
    = { "GetCounts", get_counts_free, (GDestroyNotify)tally_counts_unref };
static const TallyMessageType get_window_counts_type
    = { "GetWindowCounts", get_counts_free, (GDestroyNotify)tally_counts_unref };
static const TallyMessageType expire_buckets_type = { "ExpireBuckets", g_free, NULL };
static const TallyMessageType take_window_changes_type
    = { "TakeWindowChanges", g_free, (GDestroyNotify)g_ptr_array_unref };
static const TallyMessageType restore_bucket_type = { "RestoreBucket", restore_bucket_free, NULL };
static const TallyMessageType drop_store_type = { "DropStore", g_free, NULL };
static const TallyMessageType restore_store_type = { "RestoreStore", restore_store_free, NULL };
static const TallyMessageType get_stats_type
    = { "GetStats", g_free, (GDestroyNotify)g_array_unref };
static const TallyMessageType stall_type = { "Stall", g_free, NULL };
static const TallyMessageType take_changes_type
    = { "TakeChanges", g_free, (GDestroyNotify)tally_counts_unref };

TallyMessage *
tally_aggregator_add_word_new (guint32 store, const char *word, gsize len)
{
  AddWordMessage *m;

  g_return_val_if_fail (word != NULL, NULL);
  g_return_val_if_fail (len < ((gsize)1 << 31), NULL);

  m = g_malloc (sizeof (AddWordMessage) + len + 1);
  tally_message_init (&m->parent, &add_word_type);
  m->store = store;
  m->len = (guint32)len;
  memcpy (m->word, word, len);
  m->word[len] = '\0';
  return &m->parent;
}

TallyMessage *
tally_aggregator_add_words_new (guint32 store)
{
  AddWordsMessage *m = g_new0 (AddWordsMessage, 1);
  tally_message_init (&m->parent, &add_words_type);
  m->store = store;
  return &m->parent;
}

/* Bit 31 of a record's length field: an 8-byte count follows the length. */
#define RECORD_COUNTED (((guint32)1) << 31)
/* Bit 30: a bucket marker, { gint64 bucket start; guint32 RECORD_BUCKET }, no word: the
 * words after it count in that time bucket too (a negative start: in none). */
#define RECORD_BUCKET (((guint32)1) << 30)

/* Room for @need more bytes. */
static inline guint8 *
add_words_reserve (AddWordsMessage *m, gsize need)
{
  if (G_UNLIKELY (m->len + need > m->alloc))
    {
      m->alloc = MAX (MAX (m->alloc * 2, m->len + need), 4096);
      m->data = g_realloc (m->data, m->alloc);
    }
  return m->data + m->len;
}

void
tally_aggregator_add_words_append (TallyMessage *message, const char *word, gsize len, guint64 hash)
{
  AddWordsMessage *m = (AddWordsMessage *)message;
  gsize need = 12 + len;
  guint32 len32 = (guint32)len;
  guint8 *dst;

  g_return_if_fail (message != NULL && message->type == &add_words_type);
  g_return_if_fail (len < ((gsize)1 << 31));

  dst = add_words_reserve (m, need);
  memcpy (dst, &hash, 8);
  memcpy (dst + 8, &len32, 4);
  memcpy (dst + 12, word, len);
  m->len += need;
  m->n_words++;
}

void
tally_aggregator_add_words_append_count (TallyMessage *message, const char *word, gsize len,
                                         guint64 hash, guint64 count)
{
  AddWordsMessage *m = (AddWordsMessage *)message;
  gsize need = 20 + len;
  guint32 len32 = (guint32)len | RECORD_COUNTED;
  guint8 *dst;

  g_return_if_fail (message != NULL && message->type == &add_words_type);
  g_return_if_fail (len < ((gsize)1 << 31));

  if (count == 0)
    return;
  dst = add_words_reserve (m, need);
  memcpy (dst, &hash, 8);
  memcpy (dst + 8, &len32, 4);
  memcpy (dst + 12, &count, 8);
  memcpy (dst + 20, word, len);
  m->len += need;
  m->n_words = count > G_MAXSIZE - m->n_words ? G_MAXSIZE : m->n_words + (gsize)count;
}

void
tally_aggregator_add_words_append_bucket (TallyMessage *message, gint64 bucket_start_ms)
{
  AddWordsMessage *m = (AddWordsMessage *)message;
  guint32 marker = RECORD_BUCKET;
  guint8 *dst;

  g_return_if_fail (message != NULL && message->type == &add_words_type);

  dst = add_words_reserve (m, 12);
  memcpy (dst, &bucket_start_ms, 8);
  memcpy (dst + 8, &marker, 4);
  m->len += 12;
}

gsize
tally_aggregator_add_words_get_n_words (TallyMessage *message)
{
  g_return_val_if_fail (message != NULL && message->type == &add_words_type, 0);
  return ((AddWordsMessage *)message)->n_words;
}

TallyMessage *
tally_aggregator_get_counts_new (const guint32 *stores, guint n_stores,
                                 const TallyCountsOptions *options)
{
  GetCountsMessage *m = g_new0 (GetCountsMessage, 1);

  tally_message_init (&m->parent, &get_counts_type);
  if (stores != NULL)
    {
      m->stores = g_new (guint32, MAX (n_stores, 1));
      if (n_stores > 0)
        memcpy (m->stores, stores, sizeof (guint32) * n_stores);
      m->n_stores = n_stores;
    }
  tally_counts_options_copy (options, &m->options);
  return &m->parent;
}

TallyMessage *
tally_aggregator_get_window_counts_new (const guint32 *stores, guint n_stores, gint64 from_ms,
                                        gint64 to_ms, const TallyCountsOptions *options)
{
  GetWindowCountsMessage *m = g_new0 (GetWindowCountsMessage, 1);
  TallyMessage *plain = tally_aggregator_get_counts_new (stores, n_stores, options);

  /* The same fields as GetCounts, plus the range. */
  memcpy (&m->base, plain, sizeof (GetCountsMessage));
  g_free (plain);
  tally_message_init (&m->base.parent, &get_window_counts_type);
  m->from_ms = from_ms;
  m->to_ms = to_ms;
  return &m->base.parent;
}

TallyMessage *
tally_aggregator_take_window_changes_new (guint32 store, gint64 expire_before_ms)
{
  TakeWindowChangesMessage *m = g_new0 (TakeWindowChangesMessage, 1);
  tally_message_init (&m->parent, &take_window_changes_type);
  m->store = store;
  m->expire_before_ms = expire_before_ms;
  return &m->parent;
}

TallyMessage *
tally_aggregator_restore_bucket_new (guint32 store, gint64 start_ms, TallyCounts *counts)
{
  RestoreBucketMessage *m;

  g_return_val_if_fail (counts != NULL, NULL);

  m = g_new0 (RestoreBucketMessage, 1);
  tally_message_init (&m->parent, &restore_bucket_type);
  m->store = store;
  m->start_ms = start_ms;
  m->counts = tally_counts_ref (counts);
  return &m->parent;
}

TallyMessage *
tally_aggregator_expire_buckets_new (gint64 before_ms)
{
  ExpireBucketsMessage *m = g_new0 (ExpireBucketsMessage, 1);
  tally_message_init (&m->parent, &expire_buckets_type);
  m->before_ms = before_ms;
  return &m->parent;
}

static TallyMessage *
store_message_new (const TallyMessageType *type, guint32 store)
{
  StoreMessage *m = g_new0 (StoreMessage, 1);
  tally_message_init (&m->parent, type);
  m->store = store;
  return &m->parent;
}

TallyMessage *
tally_aggregator_drop_store_new (guint32 store)
{
  return store_message_new (&drop_store_type, store);
}

TallyMessage *
tally_aggregator_take_changes_new (guint32 store)
{
  return store_message_new (&take_changes_type, store);
}

TallyMessage *
tally_aggregator_restore_store_new (guint32 store, TallyCounts *counts)
{
  RestoreStoreMessage *m;

  g_return_val_if_fail (counts != NULL, NULL);

  m = g_new0 (RestoreStoreMessage, 1);
  tally_message_init (&m->parent, &restore_store_type);
  m->store = store;
  m->counts = tally_counts_ref (counts);
  return &m->parent;
}

/* ---------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------- */

static TallyWordTable *
get_table (TallyAggregator *self, guint32 store, gboolean create)
{
  TallyWordTable *table;

  if (self->last_table != NULL && self->last_store == store)
    return self->last_table;
  table = g_hash_table_lookup (self->stores, GUINT_TO_POINTER (store));
  if (table == NULL && create)
    {
      table = tally_word_table_new ();
      g_hash_table_insert (self->stores, GUINT_TO_POINTER (store), table);
    }
  if (table != NULL)
    {
      self->last_store = store;
      self->last_table = table;
    }
  return table;
}

static void
forget_table (TallyAggregator *self, guint32 store)
{
  if (self->last_store == store)
    self->last_table = NULL;
  g_hash_table_remove (self->stores, GUINT_TO_POINTER (store));
}

static TallyWindowTable *
get_windows (TallyAggregator *self, guint32 store)
{
  TallyWindowTable *windows = g_hash_table_lookup (self->windows, GUINT_TO_POINTER (store));

  if (windows == NULL)
    {
      windows = tally_window_table_new ();
      g_hash_table_insert (self->windows, GUINT_TO_POINTER (store), windows);
    }
  return windows;
}

/* ---------------------------------------------------------------------------------------
 * Handlers
 * ------------------------------------------------------------------------------------- */

static gboolean
handle_add_word (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  AddWordMessage *m = (AddWordMessage *)message;
  TallyWordTable *table = get_table (self, m->store, TRUE);
  guint64 *count = g_new (guint64, 1);

  *count = tally_word_table_add (table, m->word, m->len, tally_word_hash (m->word, m->len), 1);
  tally_message_reply (message, count);
  return TRUE;
}

#define PREFETCH_AHEAD 8

/* Prefetches the slot of the record at @p; returns the next record. */
static inline const guint8 *
prefetch_record (TallyWordTable *table, const guint8 *p)
{
  guint64 hash;
  guint32 len;
  memcpy (&hash, p, 8);
  memcpy (&len, p + 8, 4);
  tally_word_table_prefetch (table, hash);
  if (G_UNLIKELY (len & RECORD_BUCKET))
    return p + 12;
  if (G_UNLIKELY (len & RECORD_COUNTED))
    return p + 20 + (len & ~RECORD_COUNTED);
  return p + 12 + len;
}

/* The bucket a marker names: its table (created), or NULL for a negative start. */
static inline TallyWordTable *
marker_bucket (TallyWindowTable *windows, const guint8 *p)
{
  gint64 start;

  memcpy (&start, p, 8);
  return start >= 0 ? tally_window_table_get_bucket (windows, start, TRUE) : NULL;
}

/* Prefetches the all-time slot and the run slot (see run_add()) of the record at @p (a
 * marker has none); returns the next record. */
static inline const guint8 *
prefetch_windowed (TallyAggregator *self, TallyWordTable *table, const guint8 *p)
{
  guint64 hash;
  guint32 len;

  memcpy (&hash, p, 8);
  memcpy (&len, p + 8, 4);
  if (G_UNLIKELY (len & RECORD_BUCKET))
    return p + 12;
  tally_word_table_prefetch (table, hash);
  if (self->run != NULL)
    __builtin_prefetch (&self->run[(guint32)hash & self->run_mask]);
  if (G_UNLIKELY (len & RECORD_COUNTED))
    return p + 20 + (len & ~RECORD_COUNTED);
  return p + 12 + len;
}

/* Counts @count more of the word of @key (hash bits @hash_lo) in the current run. The run
 * table is kept at most half full; it grows, never shrinks. */
static inline void
run_add (TallyAggregator *self, guint32 key, guint32 hash_lo, guint64 count)
{
  gsize i;

  if (G_UNLIKELY ((self->run_n + 1) * 2 > self->run_mask + 1))
    {
      gsize n = MAX ((self->run_mask + 1) * 2, 1024);
      RunSlot *old = self->run;
      gsize old_n = self->run_mask + 1;

      self->run = g_new0 (RunSlot, n);
      self->run_mask = n - 1;
      self->run_used = g_renew (guint32, self->run_used, n / 2);
      self->run_n = 0;
      for (gsize k = 0; old != NULL && k < old_n; k++)
        if (old[k].key != 0)
          {
            for (i = old[k].hash_lo & self->run_mask; self->run[i].key != 0;
                 i = (i + 1) & self->run_mask)
              ;
            self->run[i] = old[k];
            self->run_used[self->run_n++] = (guint32)i;
          }
      g_free (old);
    }
  for (i = hash_lo & self->run_mask;; i = (i + 1) & self->run_mask)
    {
      RunSlot *r = &self->run[i];

      if (r->key == key)
        {
          r->count += count;
          return;
        }
      if (r->key == 0)
        {
          r->key = key;
          r->hash_lo = hash_lo;
          r->count = count;
          self->run_used[self->run_n++] = (guint32)i;
          return;
        }
    }
}

/* Adds the run's words to @bucket, each once with its count in the run, and empties the
 * run. @table is the all-time table whose keys the run holds. */
static void
run_flush (TallyAggregator *self, TallyWordTable *table, TallyWordTable *bucket)
{
  for (gsize k = 0; k < self->run_n; k++)
    {
      RunSlot *r = &self->run[self->run_used[k]];
      gsize len;
      const char *word;

      if (k + PREFETCH_AHEAD < self->run_n)
        tally_word_table_prefetch (bucket, self->run[self->run_used[k + PREFETCH_AHEAD]].hash_lo);
      word = tally_word_table_get_key (table, r->key, &len);

      tally_word_table_add (bucket, word, len, r->hash_lo, r->count);
      r->key = 0;
    }
  self->run_n = 0;
}

/* The rest of a batch once it held a bucket marker (windows on): every word counts in the
 * all-time table and in the bucket of the last marker, the all-time slots prefetched
 * PREFETCH_AHEAD records ahead as handle_add_words() does. A run of words of one bucket
 * (up to the next marker or the end of the batch) is first counted per word in a small
 * table keyed by the word's all-time key, which stays in the cache, and each distinct
 * word is then added to its bucket once: text repeats its words, so a bucket sees a
 * fraction of the lookups (and none of its key compares) it would get word by word.
 * Batches without markers never get here, so windows off costs the loop below nothing
 * but a bit test it already made. */
static void
add_words_windowed (TallyAggregator *self, guint32 store, TallyWordTable *table, const guint8 *p,
                    const guint8 *end)
{
  TallyWindowTable *windows = get_windows (self, store);
  TallyWordTable *bucket = NULL;
  const guint8 *ahead = p;

  for (guint i = 0; i < PREFETCH_AHEAD && ahead < end; i++)
    ahead = prefetch_windowed (self, table, ahead);
  while (p < end)
    {
      guint64 hash, count = 1;
      guint32 len, key;
      const char *word;

      if (ahead < end)
        ahead = prefetch_windowed (self, table, ahead);
      memcpy (&hash, p, 8);
      memcpy (&len, p + 8, 4);
      if (len & RECORD_BUCKET)
        {
          TallyWordTable *next = marker_bucket (windows, p);

          if (next != bucket && bucket != NULL)
            run_flush (self, table, bucket);
          bucket = next;
          p += 12;
          continue;
        }
      if (len & RECORD_COUNTED)
        {
          len &= ~RECORD_COUNTED;
          memcpy (&count, p + 12, 8);
          word = (const char *)p + 20;
          p += 20 + len;
        }
      else
        {
          word = (const char *)p + 12;
          p += 12 + len;
        }
      key = tally_word_table_add_keyed (table, word, len, hash, count);
      if (bucket != NULL)
        run_add (self, key, (guint32)hash, count);
    }
  if (bucket != NULL)
    run_flush (self, table, bucket);
}

/* Counts every record of the batch, prefetching the table slot of the word
 * PREFETCH_AHEAD records ahead while it counts the current one. */
static gboolean
handle_add_words (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  AddWordsMessage *m = (AddWordsMessage *)message;
  TallyWordTable *table;
  const guint8 *p, *ahead, *end;

  if (m->n_words == 0)
    return TRUE;
  table = get_table (self, m->store, TRUE);
  p = ahead = m->data;
  end = m->data + m->len;
  /* A second cursor runs PREFETCH_AHEAD words ahead and prefetches their slots. */
  for (guint i = 0; i < PREFETCH_AHEAD && ahead < end; i++)
    ahead = prefetch_record (table, ahead);
  while (p < end)
    {
      guint64 hash;
      guint32 len;
      if (ahead < end)
        ahead = prefetch_record (table, ahead);
      memcpy (&hash, p, 8);
      memcpy (&len, p + 8, 4);
      if (G_UNLIKELY (len & (RECORD_COUNTED | RECORD_BUCKET)))
        {
          guint64 count;

          if (len & RECORD_BUCKET)
            {
              add_words_windowed (self, m->store, table, p, end);
              return TRUE;
            }
          len &= ~RECORD_COUNTED;
          memcpy (&count, p + 12, 8);
          tally_word_table_add (table, (const char *)p + 20, len, hash, count);
          p += 20 + len;
        }
      else
        {
          tally_word_table_add (table, (const char *)p + 12, len, hash, 1);
          p += 12 + len;
        }
    }
  return TRUE;
}

/* Copies the words it answers with into a new TallyCounts, which is immutable and can be
 * sent to another thread; that copy and its sort are the price of a snapshot (O(n log n)
 * in the distinct words of the shard, while the shard's other messages wait).
 * TakeChanges pays the same for the changed words. */
static gboolean
handle_get_counts (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  GetCountsMessage *m = (GetCountsMessage *)message;
  g_autoptr (GPtrArray) tables = g_ptr_array_new ();
  g_autoptr (GArray) entries = NULL;
  TallyCounts *counts;
  gsize size = 0;

  if (m->stores == NULL)
    {
      GHashTableIter iter;
      gpointer value;
      g_hash_table_iter_init (&iter, self->stores);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        g_ptr_array_add (tables, value);
    }
  else
    for (guint i = 0; i < m->n_stores; i++)
      {
        TallyWordTable *t = g_hash_table_lookup (self->stores, GUINT_TO_POINTER (m->stores[i]));
        /* A store named twice is summed once. */
        if (t != NULL && !g_ptr_array_find (tables, t, NULL))
          g_ptr_array_add (tables, t);
      }

  if (tables->len == 0)
    {
      tally_message_reply (message, tally_counts_new_empty ());
      return TRUE;
    }
  if (!tally_counts_options_is_empty (&m->options))
    {
      /* Filtered as the sums come: a top N never holds every word's sum nor sorts them. */
      tally_message_reply (message,
                           tally_counts_new_from_tables ((TallyWordTable *const *)tables->pdata,
                                                         tables->len, &m->options, &self->figures));
      return TRUE;
    }
  for (guint i = 0; i < tables->len; i++)
    size += tally_word_table_get_size (g_ptr_array_index (tables, i));
  entries = g_array_sized_new (FALSE, FALSE, sizeof (TallyWordCount), (guint)size);
  /* Every word, the filters applied after: the reply also says how many distinct words
   * and what total it was selected from (tally_counts_get_n_words_unfiltered()). */
  if (tables->len == 1)
    tally_counts_collect_table (g_ptr_array_index (tables, 0), entries, NULL);
  else
    /* Summed without building their sum in a new table or copying a word: the entries
     * point into the stores' tables until the reply is built. */
    tally_counts_sum_tables ((TallyWordTable *const *)tables->pdata, tables->len, NULL, entries);
  counts = tally_counts_new_from_entries ((TallyWordCount *)(void *)entries->data, entries->len,
                                          &m->options);
  tally_counts_figures_set (&self->figures, (TallyWordTable *const *)tables->pdata, tables->len,
                            tally_counts_get_n_words_unfiltered (counts),
                            tally_counts_get_total_unfiltered (counts));
  tally_message_reply (message, counts);
  return TRUE;
}

/* Sums the buckets of the range over the stores asked for without copying a word
 * (tally_window_table_collect()), then answers as GetCounts does: O(words in those
 * buckets) to sum, plus the top-N selection and copy of tally_counts_new_from_entries(). */
static gboolean
handle_get_window_counts (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  GetWindowCountsMessage *m = (GetWindowCountsMessage *)message;
  g_autoptr (GPtrArray) tables = g_ptr_array_new ();
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));

  if (m->base.stores == NULL)
    {
      GHashTableIter iter;
      gpointer value;
      g_hash_table_iter_init (&iter, self->windows);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        g_ptr_array_add (tables, value);
    }
  else
    for (guint i = 0; i < m->base.n_stores; i++)
      {
        TallyWindowTable *w
            = g_hash_table_lookup (self->windows, GUINT_TO_POINTER (m->base.stores[i]));
        /* A store named twice is summed once. */
        if (w != NULL && !g_ptr_array_find (tables, w, NULL))
          g_ptr_array_add (tables, w);
      }
  tally_window_table_collect ((TallyWindowTable *const *)tables->pdata, tables->len, m->from_ms,
                              m->to_ms, m->base.options.prefix, entries);
  tally_message_reply (message,
                       tally_counts_new_from_entries ((TallyWordCount *)(void *)entries->data,
                                                      entries->len, &m->base.options));
  return TRUE;
}

static gboolean
handle_expire_buckets (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  gint64 before = ((ExpireBucketsMessage *)message)->before_ms;
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->windows);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    tally_window_table_expire (value, before);
  return TRUE;
}

static void
collect_change_entry (const char *word, gsize len, guint64 count, gpointer user_data)
{
  GArray *entries = user_data;
  TallyWordCount e = { word, (guint32)len, count };
  g_array_append_val (entries, e);
}

/* A bucket's words (all, or the changed ones) as an owned TallyCounts. */
static TallyBucketChanges *
bucket_changes_new (gint64 start_ms, TallyWordTable *bucket, gboolean expired)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  TallyBucketChanges *c;

  if (expired)
    tally_word_table_foreach (bucket, collect_change_entry, entries);
  else if (tally_word_table_get_n_changed (bucket) > 0)
    tally_word_table_take_changes (bucket, collect_change_entry, entries);
  if (entries->len == 0)
    return NULL;
  c = g_new0 (TallyBucketChanges, 1);
  c->start_ms = start_ms;
  c->expired = expired;
  c->counts
      = tally_counts_new_from_entries ((TallyWordCount *)(void *)entries->data, entries->len, NULL);
  return c;
}

static void
take_expired_bucket (gint64 start_ms, TallyWordTable *bucket, gpointer user_data)
{
  TallyBucketChanges *c = bucket_changes_new (start_ms, bucket, TRUE);
  if (c != NULL)
    g_ptr_array_add (user_data, c);
}

static void
take_bucket_changes (gint64 start_ms, TallyWordTable *bucket, gpointer user_data)
{
  TallyBucketChanges *c = bucket_changes_new (start_ms, bucket, FALSE);
  if (c != NULL)
    g_ptr_array_add (user_data, c);
}

static gboolean
handle_take_window_changes (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  TakeWindowChangesMessage *m = (TakeWindowChangesMessage *)message;
  GPtrArray *reply = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_bucket_changes_free);
  TallyWindowTable *windows = g_hash_table_lookup (self->windows, GUINT_TO_POINTER (m->store));

  if (windows != NULL)
    {
      tally_window_table_expire_full (windows, m->expire_before_ms, take_expired_bucket, reply);
      tally_window_table_foreach_bucket (windows, take_bucket_changes, reply);
    }
  tally_message_reply (message, reply);
  return TRUE;
}

static gboolean
handle_restore_bucket (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  RestoreBucketMessage *m = (RestoreBucketMessage *)message;
  TallyWordTable *bucket = tally_word_table_new ();
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (m->counts, &n);

  for (gsize i = 0; i < n; i++)
    {
      guint64 hash = tally_word_hash (e[i].word, e[i].len);
      if (tally_word_shard (hash, self->n_shards) == self->shard)
        tally_word_table_set (bucket, e[i].word, e[i].len, hash, e[i].count);
    }
  tally_window_table_replace_bucket (get_windows (self, m->store), m->start_ms, bucket);
  return TRUE;
}

static gboolean
handle_drop_store (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  forget_table (self, ((StoreMessage *)message)->store);
  g_hash_table_remove (self->windows, GUINT_TO_POINTER (((StoreMessage *)message)->store));
  return TRUE;
}

static gboolean
handle_restore_store (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  RestoreStoreMessage *m = (RestoreStoreMessage *)message;
  TallyWordTable *table = tally_word_table_new ();
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (m->counts, &n);

  for (gsize i = 0; i < n; i++)
    {
      guint64 hash = tally_word_hash (e[i].word, e[i].len);
      if (tally_word_shard (hash, self->n_shards) == self->shard)
        tally_word_table_set (table, e[i].word, e[i].len, hash, e[i].count);
    }
  forget_table (self, m->store);
  g_hash_table_insert (self->stores, GUINT_TO_POINTER (m->store), table);
  return TRUE;
}

static void
collect_change (const char *word, gsize len, guint64 count, gpointer user_data)
{
  GArray *entries = user_data;
  TallyWordCount e = { word, (guint32)len, count };
  g_array_append_val (entries, e);
}

static gboolean
handle_take_changes (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  TallyWordTable *table = get_table (self, ((StoreMessage *)message)->store, FALSE);
  g_autoptr (GArray) entries = NULL;

  if (table == NULL)
    {
      tally_message_reply (message, tally_counts_new_empty ());
      return TRUE;
    }
  entries = g_array_sized_new (FALSE, FALSE, sizeof (TallyWordCount),
                               (guint)tally_word_table_get_n_changed (table));
  tally_word_table_take_changes (table, collect_change, entries);
  tally_message_reply (message, tally_counts_new_from_entries (
                                    (TallyWordCount *)(void *)entries->data, entries->len, NULL));
  return TRUE;
}

/* GetStats: a few integers per store, O(stores); the health check's ask and the metrics'
 * distinct words, so it must stay cheap whatever the number of words. */
static gboolean
handle_get_stats (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyAggregator *self = TALLY_AGGREGATOR (actor);
  GArray *stats = g_array_sized_new (FALSE, FALSE, sizeof (TallyAggregatorStoreStats),
                                     g_hash_table_size (self->stores));
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      TallyAggregatorStoreStats s = { GPOINTER_TO_UINT (key), tally_word_table_get_size (value),
                                      tally_word_table_get_total (value) };
      g_array_append_val (stats, s);
    }
  tally_message_reply (message, stats);
  return TRUE;
}

typedef struct
{
  TallyMessage parent;
  guint ms;
} StallMessage;

static gboolean
handle_stall (TallyActor *actor, TallyMessage *message, GError **error)
{
  g_usleep ((gulong)((StallMessage *)message)->ms * 1000);
  return TRUE;
}

TallyMessage *
tally_aggregator_get_stats_new (void)
{
  TallyMessage *m = g_new0 (TallyMessage, 1);

  tally_message_init (m, &get_stats_type);
  return m;
}

TallyMessage *
tally_aggregator_stall_new (guint ms)
{
  StallMessage *m = g_new0 (StallMessage, 1);

  tally_message_init (&m->parent, &stall_type);
  m->ms = ms;
  return &m->parent;
}

/* ---------------------------------------------------------------------------------------
 * Class
 * ------------------------------------------------------------------------------------- */

static void
tally_aggregator_finalize (GObject *object)
{
  TallyAggregator *self = TALLY_AGGREGATOR (object);
  g_clear_pointer (&self->stores, g_hash_table_unref);
  g_clear_pointer (&self->windows, g_hash_table_unref);
  g_clear_pointer (&self->run, g_free);
  g_clear_pointer (&self->run_used, g_free);
  tally_counts_figures_clear (&self->figures);
  G_OBJECT_CLASS (tally_aggregator_parent_class)->finalize (object);
}

static void
tally_aggregator_class_init (TallyAggregatorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  TallyActorClass *actor_class = TALLY_ACTOR_CLASS (klass);

  object_class->finalize = tally_aggregator_finalize;

  tally_actor_class_add_handler (actor_class, &add_word_type, handle_add_word);
  tally_actor_class_add_handler (actor_class, &add_words_type, handle_add_words);
  tally_actor_class_add_handler (actor_class, &get_counts_type, handle_get_counts);
  tally_actor_class_add_handler (actor_class, &drop_store_type, handle_drop_store);
  tally_actor_class_add_handler (actor_class, &get_window_counts_type, handle_get_window_counts);
  tally_actor_class_add_handler (actor_class, &expire_buckets_type, handle_expire_buckets);
  tally_actor_class_add_handler (actor_class, &take_window_changes_type,
                                 handle_take_window_changes);
  tally_actor_class_add_handler (actor_class, &restore_bucket_type, handle_restore_bucket);
  tally_actor_class_add_handler (actor_class, &restore_store_type, handle_restore_store);
  tally_actor_class_add_handler (actor_class, &take_changes_type, handle_take_changes);
  tally_actor_class_add_handler (actor_class, &get_stats_type, handle_get_stats);
  tally_actor_class_add_handler (actor_class, &stall_type, handle_stall);
}

static void
tally_aggregator_init (TallyAggregator *self)
{
  self->stores = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                        (GDestroyNotify)tally_word_table_free);
  self->windows = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                         (GDestroyNotify)tally_window_table_free);
  self->n_shards = 1;
}

TallyAggregator *
tally_aggregator_new (guint shard, guint n_shards)
{
  TallyAggregator *self;

  g_return_val_if_fail (n_shards >= 1, NULL);
  g_return_val_if_fail (shard < n_shards, NULL);

  self = g_object_new (TALLY_TYPE_AGGREGATOR, NULL);
  self->shard = shard;
  self->n_shards = n_shards;
  return self;
}
