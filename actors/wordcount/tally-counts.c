/* tally-counts.c — immutable, shareable snapshots of word counts, and their builder.
 *
 * What it is for: GetCounts replies, checkpoint changes and published snapshots are all
 * TallyCounts, passed between actors on different threads. Once built a snapshot never
 * changes, so only its reference count is shared state (atomic).
 *
 * Why it is built as it is: a snapshot is taken while a shard's other messages wait, and
 * most snapshots are only iterated once, in order. So a snapshot is stored in the order it
 * is read (struct _TallyCounts), sorted with a radix sort rather than comparisons
 * (sort_entries()), merged from shard replies without copying a word
 * (tally_counts_merge_disjoint()), and given a lookup index only when first asked
 * (tally_counts_lookup()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-counts-private.h"

#include "tally-huge-pages.h"
#include "tally-word-hash.h"

#include <stdlib.h>
#include <string.h>

/* Lookup index: entry number + 1 per slot, 0 = empty; open addressing, linear probing. */
typedef struct
{
  gsize mask;
  guint32 slots[];
} LookupIndex;

/* A snapshot: one array of TallyWordCount entries in snapshot order (count descending,
 * then word bytes ascending, a prefix before its extensions) and one block of
 * NUL-terminated word bytes the entries point into. A merged snapshot has no block of its
 * own: its entries point into the parts' word bytes and it holds a reference to each part.
 * The lookup index (open addressing over entry numbers, keyed by tally_word_hash()) is
 * built on the first lookup and published atomically, since most snapshots are only
 * iterated. */
struct _TallyCounts
{
  gint ref_count; /* atomic, with g_atomic_int_* inlined here so TSan sees it */
  gsize n;
  guint64 total;
  TallyWordCount *entries;
  char *bytes;
  LookupIndex *index;  /* built by the first lookup */
  TallyCounts **parts; /* a merge's parts, whose bytes the entries point into */
  guint n_parts;
  GPtrArray *blocks;        /* a sequence's blocks of word bytes (g_free), or NULL */
  gsize unfiltered_n;       /* the distinct words it was selected from */
  guint64 unfiltered_total; /* and their total (saturated) */
};

struct _TallyCountsSequence
{
  GArray *entries;   /* TallyWordCount, in snapshot order */
  GPtrArray *blocks; /* the bytes they point into */
  guint64 total;
};

/* The builder sums duplicate words in a TallyWordTable. */
struct _TallyCountsBuilder
{
  TallyWordTable *table;
};

gboolean
tally_counts_options_is_empty (const TallyCountsOptions *options)
{
  return options == NULL
         || (options->top == 0 && (options->prefix == NULL || options->prefix[0] == '\0')
             && options->min_count <= 1 && options->words == NULL);
}

void
tally_counts_options_copy (const TallyCountsOptions *src, TallyCountsOptions *dest)
{
  g_return_if_fail (dest != NULL);

  memset (dest, 0, sizeof *dest);
  if (src == NULL)
    return;
  *dest = *src;
  dest->prefix = g_strdup (src->prefix);
  dest->words = (const char *const *)g_strdupv ((char **)src->words);
}

void
tally_counts_options_clear (TallyCountsOptions *options)
{
  g_return_if_fail (options != NULL);

  g_free ((char *)options->prefix);
  g_strfreev ((char **)options->words);
  memset (options, 0, sizeof *options);
}

gboolean
tally_counts_options_match (const TallyCountsOptions *options, const char *word, gsize len,
                            guint64 count)
{
  if (options == NULL)
    return TRUE;
  if (count < options->min_count)
    return FALSE;
  if (options->prefix != NULL && options->prefix[0] != '\0')
    {
      gsize plen = strlen (options->prefix);
      if (len < plen || memcmp (word, options->prefix, plen) != 0)
        return FALSE;
    }
  return TRUE;
}

static int
compare_entries (const void *a, const void *b)
{
  const TallyWordCount *x = a;
  const TallyWordCount *y = b;
  int c;

  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  c = memcmp (x->word, y->word, MIN (x->len, y->len));
  if (c != 0)
    return c;
  return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

/* Sorting in snapshot order: a least-significant-digit radix sort on 16-byte keys, then
 * a sort of the runs the keys cannot order. Each entry gets a key of its count
 * (complemented, so that larger counts come first) and its first 8 word bytes as a
 * big-endian number (zero-padded, so a shorter word that is a prefix sorts first, as
 * memcmp would order it). The 16 byte positions of the key are distributed in turn, least
 * significant first, each a stable counting pass over the keys; a position where every key
 * holds the same byte (the high bytes of small counts, the trailing zeros of short words)
 * is skipped, so words of up to 7 bytes with counts below 256 take 8 passes. All the
 * histograms come from one reading of the keys. Entries whose keys are equal (same count,
 * same first 8 bytes) end up adjacent and are then ordered by sort_run(). A merge sort on
 * the same keys spent most of its time on a mispredicted branch per element and level. */
typedef struct
{
  guint64 count; /* G_MAXUINT64 - count; in sort_run(), the length class of a chunk */
  guint64 prefix;
  guint32 index; /* of the entry, for the tie-break and the final permutation */
} SortKey;

G_STATIC_ASSERT (sizeof (SortKey) == sizeof (TallyWordCount));

/* The up to 8 bytes of @word from @from on, as a big-endian number, zero-padded. */
static inline guint64
word_chunk (const char *word, gsize len, gsize from)
{
  guint64 chunk = 0;
  gsize n = len > from ? MIN (len - from, 8) : 0;

  if (n == 8)
    {
      memcpy (&chunk, word + from, 8);
      return GUINT64_FROM_BE (chunk);
    }
  for (gsize i = 0; i < n; i++)
    chunk |= (guint64)(guchar)word[from + i] << (56 - 8 * i);
  return chunk;
}

static guint64
word_prefix (const char *word, gsize len)
{
  return word_chunk (word, len, 0);
}

typedef struct
{
  TallyWordCount e;
  guint64 key; /* word_prefix() of e's word */
} Candidate;

/* Whether @a comes before @b in snapshot order: count descending, then word bytes. */
static inline gboolean
candidate_before (const Candidate *a, const Candidate *b)
{
  gsize n;
  int c;

  if (a->e.count != b->e.count)
    return a->e.count > b->e.count;
  if (a->key != b->key)
    return a->key < b->key;
  /* The first min(len, 8) bytes are equal, and so, zero-padded, are the others. */
  n = MIN (a->e.len, b->e.len);
  if (n > 8 && (c = memcmp (a->e.word + 8, b->e.word + 8, n - 8)) != 0)
    return c < 0;
  return a->e.len < b->e.len;
}

static void
candidate_sift_down (Candidate *heap, gsize k, gsize i)
{
  for (;;)
    {
      gsize worst = i, l = 2 * i + 1, r = 2 * i + 2;
      Candidate tmp;

      if (l < k && candidate_before (&heap[worst], &heap[l]))
        worst = l;
      if (r < k && candidate_before (&heap[worst], &heap[r]))
        worst = r;
      if (worst == i)
        return;
      tmp = heap[i];
      heap[i] = heap[worst];
      heap[worst] = tmp;
      i = worst;
    }
}

static void
candidate_sift_up (Candidate *heap, gsize i)
{
  while (i > 0)
    {
      gsize parent = (i - 1) / 2;
      Candidate tmp;

      if (!candidate_before (&heap[parent], &heap[i]))
        return;
      tmp = heap[i];
      heap[i] = heap[parent];
      heap[parent] = tmp;
      i = parent;
    }
}

/* Offers @e (its word's first 8 bytes @key, as word_prefix() gives them) to a heap of at
 * most @top candidates whose root is the worst kept. */
static inline void
candidate_offer (Candidate *heap, gsize *n_heap, gsize top, const TallyWordCount *e, guint64 key)
{
  Candidate c = { *e, key };

  if (*n_heap < top)
    {
      heap[*n_heap] = c;
      candidate_sift_up (heap, (*n_heap)++);
    }
  else if (candidate_before (&c, &heap[0]))
    {
      heap[0] = c;
      candidate_sift_down (heap, *n_heap, 0);
    }
}

/* Moves the @k first entries in snapshot order of entries[0..n) to entries[0..k), in no
 * particular order. An entry that loses to the heap's root on its count alone is never
 * read further; the others are compared by their first 8 bytes before their words. */
static void
select_top (TallyWordCount *entries, gsize n, gsize k)
{
  g_autofree Candidate *heap = g_new (Candidate, MAX (k, 1));
  gsize n_heap = 0;

  for (gsize i = 0; i < n; i++)
    {
      if (n_heap == k && entries[i].count < heap[0].e.count)
        continue;
      candidate_offer (heap, &n_heap, k, &entries[i],
                       word_prefix (entries[i].word, entries[i].len));
    }
  for (gsize i = 0; i < n_heap; i++)
    entries[i] = heap[i].e;
}

/* Byte @digit of a key: 0 to 7 the prefix's, least significant first, 8 to 15 the count's. */
static inline guint
key_byte (const SortKey *key, guint digit)
{
  return digit < 8 ? (guint)(key->prefix >> (8 * digit)) & 0xff
                   : (guint)(key->count >> (8 * (digit - 8))) & 0xff;
}

/* How many entries ahead the loops that read words in entry order prefetch them: the words
 * lie wherever their tables put them, and the misses should overlap, not stall in turn. */
#define PREFETCH_AHEAD 16

/* Order of two keys of one run in sort_run(): chunk, then length class. */
static inline gboolean
run_key_before (const SortKey *a, const SortKey *b)
{
  return a->prefix != b->prefix ? a->prefix < b->prefix : a->count < b->count;
}

/* Sorts keys[0..n) by run_key_before(): quicksort with the median of three, insertion sort
 * below 16 keys, recursion into the smaller side only. */
static void
sort_run_keys (SortKey *keys, gsize n)
{
  while (n > 16)
    {
      SortKey pivot, t;
      SortKey *a = &keys[0], *b = &keys[n / 2], *c = &keys[n - 1];
      gsize i = 0, j = n - 1;

      /* The median of three as the pivot. */
      if (run_key_before (b, a))
        {
          t = *a, *a = *b, *b = t;
        }
      if (run_key_before (c, b))
        {
          t = *b, *b = *c, *c = t;
          if (run_key_before (b, a))
            {
              t = *a, *a = *b, *b = t;
            }
        }
      pivot = *b;
      /* Hoare partition: [0, j] <= pivot <= [j + 1, n). */
      for (;;)
        {
          while (run_key_before (&keys[i], &pivot))
            i++;
          while (run_key_before (&pivot, &keys[j]))
            j--;
          if (i >= j)
            break;
          t = keys[i], keys[i] = keys[j], keys[j] = t;
          i++;
          j--;
        }
      if (j + 1 < n - j - 1)
        {
          sort_run_keys (keys, j + 1);
          keys += j + 1;
          n -= j + 1;
        }
      else
        {
          sort_run_keys (keys + j + 1, n - j - 1);
          n = j + 1;
        }
    }
  for (gsize i = 1; i < n; i++)
    {
      SortKey k = keys[i];
      gsize j = i;

      while (j > 0 && run_key_before (&k, &keys[j - 1]))
        {
          keys[j] = keys[j - 1];
          j--;
        }
      keys[j] = k;
    }
}

/* Orders keys[0..n), whose entries have the same count and the same bytes before @from
 * (as zero-padded chunks; each is at least @from bytes long when @from > 0), in snapshot
 * order, without calling memcmp() on the words: each key gets the next 8 bytes of its word
 * (word_chunk()) and a length class, min (bytes left, 9): a word that ends inside the
 * chunk, or at its end, sorts before a longer word with the same chunk (the order memcmp
 * and then the length give, NUL bytes included), and only words with 9 or more bytes left
 * go on to the next chunk. Each word is read once per 8 bytes of common prefix, in key
 * order, prefetched. */
static void
sort_run (SortKey *keys, gsize n, const TallyWordCount *entries, gsize from)
{
  for (;;)
    {
      for (gsize i = 0; i < n; i++)
        {
          const TallyWordCount *e = &entries[keys[i].index];

          if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch (entries[keys[i + PREFETCH_AHEAD].index].word + from);
          keys[i].prefix = word_chunk (e->word, e->len, from);
          keys[i].count = MIN (e->len - from, 9);
        }
      sort_run_keys (keys, n);
      /* Runs of keys still equal: the same next 8 bytes, and more after them. */
      for (gsize lo = 0; lo < n;)
        {
          gsize hi = lo + 1;

          while (hi < n && keys[hi].prefix == keys[lo].prefix && keys[hi].count == keys[lo].count)
            hi++;
          if (hi - lo > 1 && keys[lo].count == 9)
            {
              /* Recurse into all but the last such run, which the loop takes on. */
              if (hi < n)
                sort_run (keys + lo, hi - lo, entries, from + 8);
              else
                {
                  keys += lo;
                  n = hi - lo;
                  from += 8;
                  goto next_chunk;
                }
            }
          lo = hi;
        }
      return;
    next_chunk:;
    }
}

/* Two buffers of n keys, each the size of n entries, so the extra memory is that of
 * two copies of the entries, plus 16 histograms of 256 counters. */
static void
sort_entries (TallyWordCount *entries, gsize n)
{
  g_autofree SortKey *a = NULL;
  g_autofree SortKey *b = NULL;
  g_autofree gsize *histograms = NULL;
  SortKey *src, *dst;
  TallyWordCount *out;

  if (n < 2)
    return;
  g_return_if_fail (n <= G_MAXUINT32);
  a = g_new (SortKey, n);
  b = g_new (SortKey, n);
  histograms = g_new0 (gsize, 16 * 256);
  for (gsize i = 0; i < n; i++)
    {
      if (i + PREFETCH_AHEAD < n)
        __builtin_prefetch (entries[i + PREFETCH_AHEAD].word);
      a[i].count = G_MAXUINT64 - entries[i].count;
      a[i].prefix = word_prefix (entries[i].word, entries[i].len);
      a[i].index = (guint32)i;
      for (guint d = 0; d < 8; d++)
        {
          histograms[d * 256 + ((a[i].prefix >> (8 * d)) & 0xff)]++;
          histograms[(8 + d) * 256 + ((a[i].count >> (8 * d)) & 0xff)]++;
        }
    }
  src = a;
  dst = b;
  for (guint d = 0; d < 16; d++)
    {
      gsize *h = histograms + d * 256;
      gsize offset = 0;

      /* Every key holds the same byte here: the pass would move nothing. */
      if (h[key_byte (&src[0], d)] == n)
        continue;
      for (guint v = 0; v < 256; v++)
        {
          gsize c = h[v];

          h[v] = offset;
          offset += c;
        }
      for (gsize i = 0; i < n; i++)
        dst[h[key_byte (&src[i], d)]++] = src[i];
      {
        SortKey *t = src;
        src = dst;
        dst = t;
      }
    }
  /* Runs of equal keys: words with the same count and the same first 8 bytes. sort_run()
   * overwrites the keys of a run, so the end of the run is found first. */
  for (gsize lo = 0; lo < n;)
    {
      gsize hi = lo + 1;

      while (hi < n && src[hi].count == src[lo].count && src[hi].prefix == src[lo].prefix)
        hi++;
      if (hi - lo > 1)
        sort_run (src + lo, hi - lo, entries, 0);
      lo = hi;
    }
  /* The free buffer takes the entries in order, then they go back. */
  out = (TallyWordCount *)(void *)dst;
  for (gsize i = 0; i < n; i++)
    {
      if (i + PREFETCH_AHEAD < n)
        __builtin_prefetch (&entries[src[i + PREFETCH_AHEAD].index]);
      out[i] = entries[src[i].index];
    }
  memcpy (entries, out, n * sizeof (TallyWordCount));
}

/* Adds @count to a snapshot's total, saturating at G_MAXINT64 the largest integer a JSON
 * number holds in json-glib. */
static guint64
add_to_total (guint64 total, guint64 count)
{
  return count >= (guint64)G_MAXINT64 - total ? (guint64)G_MAXINT64 : total + count;
}

/* Copies @n entries, already in snapshot order, into a new snapshot. */
static TallyCounts *
counts_from_sorted (const TallyWordCount *entries, gsize n)
{
  TallyCounts *counts = g_new0 (TallyCounts, 1);
  gsize n_bytes = 0;
  char *dst;

  counts->ref_count = 1;
  for (gsize i = 0; i < n; i++)
    n_bytes += entries[i].len + 1;
  counts->n = n;
  counts->entries = g_new (TallyWordCount, MAX (n, 1));
  counts->bytes = g_malloc (MAX (n_bytes, 1));
  dst = counts->bytes;
  for (gsize i = 0; i < n; i++)
    {
      if (i + PREFETCH_AHEAD < n)
        __builtin_prefetch (entries[i + PREFETCH_AHEAD].word);
      memcpy (dst, entries[i].word, entries[i].len);
      dst[entries[i].len] = '\0';
      counts->entries[i].word = dst;
      counts->entries[i].len = entries[i].len;
      counts->entries[i].count = entries[i].count;
      counts->total = add_to_total (counts->total, entries[i].count);
      dst += entries[i].len + 1;
    }
  counts->unfiltered_n = counts->n;
  counts->unfiltered_total = counts->total;
  return counts;
}

/* Filters (prefix, min_count), sorts (sort_entries(): at most 16 passes of O(n); a top N
 * of fewer than n / 4 entries is first selected with a heap, O(n log N)), cuts to the top
 * N and copies the kept words. */
TallyCounts *
tally_counts_new_from_entries (TallyWordCount *entries, gsize n_entries,
                               const TallyCountsOptions *options)
{
  gsize n = 0;
  guint64 unfiltered_total = 0;
  TallyCounts *counts;

  for (gsize i = 0; i < n_entries; i++)
    {
      unfiltered_total = add_to_total (unfiltered_total, entries[i].count);
      if (tally_counts_options_match (options, entries[i].word, entries[i].len, entries[i].count))
        entries[n++] = entries[i];
    }
  if (options != NULL && options->top > 0 && options->top < n / 4)
    {
      /* Few of many: select the top N with a heap (O(n log N)), then sort only them. */
      select_top (entries, n, (gsize)options->top);
      n = (gsize)options->top;
    }
  sort_entries (entries, n);
  if (options != NULL && options->top > 0 && options->top < n)
    n = (gsize)options->top;
  counts = counts_from_sorted (entries, n);
  counts->unfiltered_n = n_entries;
  counts->unfiltered_total = unfiltered_total;
  return counts;
}

/* A part's next entry during a merge, with its word's first 8 bytes as a number. */
typedef struct
{
  const TallyWordCount *entry; /* NULL when the part is used up */
  const TallyWordCount *end;
  guint64 prefix;
} MergeHead;

static void
merge_head_set (MergeHead *head, const TallyWordCount *entry)
{
  head->entry = entry < head->end ? entry : NULL;
  if (head->entry != NULL)
    head->prefix = word_prefix (entry->word, entry->len);
}

/* Snapshot order of two heads: count, then the 8-byte prefix, then the whole words. */
static inline gboolean
merge_head_before (const MergeHead *a, const MergeHead *b)
{
  if (a->entry->count != b->entry->count)
    return a->entry->count > b->entry->count;
  if (a->prefix != b->prefix)
    return a->prefix < b->prefix;
  return compare_entries (a->entry, b->entry) < 0;
}

/* Sorted parts with disjoint words (the replies of shards) are merged in O(n x parts)
 * instead of sorted again, into entries that point into the parts' word bytes. */
TallyCounts *
tally_counts_merge_disjoint (TallyCounts *const *parts, guint n_parts,
                             const TallyCountsOptions *options)
{
  g_autofree MergeHead *heads = g_new0 (MergeHead, MAX (n_parts, 1));
  gboolean filter = !tally_counts_options_is_empty (options);
  TallyCounts *merged;
  gsize total = 0, n = 0;
  guint64 limit;

  for (guint k = 0; k < n_parts; k++)
    {
      total += parts[k]->n;
      heads[k].end = parts[k]->entries + parts[k]->n;
      merge_head_set (&heads[k], parts[k]->entries);
    }
  limit = options != NULL && options->top > 0 ? MIN (options->top, (guint64)total) : total;

  /* The merged snapshot's entries point into the parts' word bytes, which it keeps alive
   * with a reference to each part: no word is copied again. */
  merged = g_new0 (TallyCounts, 1);
  merged->ref_count = 1;
  merged->entries = g_new (TallyWordCount, MAX (limit, 1));
  merged->n_parts = n_parts;
  merged->parts = g_new (TallyCounts *, MAX (n_parts, 1));
  for (guint k = 0; k < n_parts; k++)
    merged->parts[k] = tally_counts_ref (parts[k]);

  /* A k-way merge by linear scan of the heads: shards are few. The count and the
   * 8-byte prefix of each head, read once, decide almost every step. */
  while (n < limit)
    {
      MergeHead *best = NULL;
      const TallyWordCount *e;

      for (guint k = 0; k < n_parts; k++)
        if (heads[k].entry != NULL && (best == NULL || merge_head_before (&heads[k], best)))
          best = &heads[k];
      if (best == NULL)
        break;
      e = best->entry;
      merge_head_set (best, e + 1);
      if (filter && !tally_counts_options_match (options, e->word, e->len, e->count))
        continue;
      merged->entries[n++] = *e;
      merged->total = add_to_total (merged->total, e->count);
    }
  merged->n = n;
  for (guint k = 0; k < n_parts; k++)
    {
      merged->unfiltered_n += parts[k]->unfiltered_n;
      merged->unfiltered_total
          = add_to_total (merged->unfiltered_total, parts[k]->unfiltered_total);
    }
  return merged;
}

typedef struct
{
  GArray *entries;
  const TallyCountsOptions *options;
} CollectData;

static void
collect_one (const char *word, gsize len, guint64 count, gpointer user_data)
{
  CollectData *data = user_data;
  TallyWordCount e = { word, (guint32)len, count };

  if (count > 0 && tally_counts_options_match (data->options, word, len, count))
    g_array_append_val (data->entries, e);
}

void
tally_counts_collect_table (TallyWordTable *table, GArray *entries,
                            const TallyCountsOptions *options)
{
  CollectData data = { entries, options };
  tally_word_table_foreach (table, collect_one, &data);
}

/* tally_counts_sum_tables() sums in two steps, so that its random accesses stay in the
 * cache:
 *   1. every word of the tables is staged with the hash bits its slot keeps (no word is
 *      hashed again) and its first 8 bytes, then put in place, into 2^k partitions by the
 *      top bits of the hash, each partition small enough (about PARTITION_WORDS words) for
 *      its scratch index and its entries to stay in the CPU's cache. The words of each
 *      partition are counted first (from the slots alone, without a prefix), so that
 *      each word is staged straight into place: one staged array of 32 bytes per word,
 *      never a scattered copy of it beside (an in-place permutation cost twice the CPU,
 *      tests/bench/README.md);
 *   2. each partition is summed into a scratch index of { entry number + 1 (0 = empty),
 *      hash bits }, reused from partition to partition. A probe reads an entry only on a
 *      match of the hash bits, and compares words by length and first 8 bytes (kept
 *      beside the entries), which decides every word of up to 8 bytes; only longer words
 *      read the rest of their bytes.
 * Summing 1 M distinct words of 15 buckets into one index of 2^21 slots missed the cache
 * on nearly every probe, and on every word read to confirm a match; looking each word of
 * each table up in every other table (the earlier GetCounts) missed it once per table. */
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
  gsize *fill; /* per partition: where its next word goes (or, counting, its words) */
  guint bits;  /* 2^bits partitions, by the top bits of the hash */
  gsize n;
  const char *prefix;
  gsize prefix_len;
} StageData;

#define PARTITION_WORDS 4096
#define SUM_PREFETCH 8

static inline guint64
word_head (const char *word, gsize len)
{
  guint64 head = 0;

  memcpy (&head, word, MIN (len, 8));
  return head;
}

static inline gboolean
stage_wanted (const StageData *d, const char *word, gsize len, guint64 count)
{
  return count > 0 && len >= d->prefix_len
         && (d->prefix_len == 0 || memcmp (word, d->prefix, d->prefix_len) == 0);
}

static inline gsize
partition_of (guint32 hash_lo, guint bits)
{
  return bits > 0 ? hash_lo >> (32 - bits) : 0;
}

/* Counting with a prefix: the words of each partition, in @fill[partition]. */
static void
count_one (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  StageData *d = user_data;

  if (stage_wanted (d, word, len, count))
    {
      d->fill[partition_of (hash_lo, d->bits)]++;
      d->n++;
    }
}

/* Stages a word straight into the room of its partition. */
static void
stage_one (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  StageData *d = user_data;
  Staged *s;

  if (!stage_wanted (d, word, len, count))
    return;
  s = &d->staged[d->fill[partition_of (hash_lo, d->bits)]++];
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

      if (k + SUM_PREFETCH < n)
        __builtin_prefetch (&index[s[k + SUM_PREFETCH].hash_lo & mask]);
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

/* What sum_tables_run() does with each partition's sums: @sums[0..n) (with @heads, their
 * words' first 8 bytes as word_head() gives them) may be kept in place, compacted to the
 * front; returns how many were kept there. */
typedef gsize (*PartitionSink) (TallyWordCount *sums, const guint64 *heads, gsize n,
                                gpointer user_data);

/* The two steps of tally_counts_sum_tables() (see above). With @entries, the sums of each
 * partition are written into room reserved at its end, and what @sink keeps stays there;
 * without, they go through a scratch array of one partition's size, which @sink must
 * empty. Returns the number of entries kept in @entries. */
static gsize
sum_tables_run (TallyWordTable *const *tables, guint n_tables, const char *prefix, GArray *entries,
                PartitionSink sink, gpointer sink_data)
{
  StageData d = { NULL, NULL, 0, 0, prefix, prefix != NULL ? strlen (prefix) : 0 };
  gsize upper = 0, n_parts = 1, biggest = 0, slots = 16, first = 0, n_kept;
  g_autofree gsize *start = NULL;
  g_autofree IndexSlot *index = NULL;
  g_autofree guint64 *heads = NULL;
  g_autofree TallyWordCount *scratch = NULL;
  TallyWordCount *out, *base;

  /* At most as many distinct words as the tables' sizes together. */
  for (guint t = 0; t < n_tables; t++)
    upper += tally_word_table_get_size (tables[t]);
  if (upper == 0)
    return 0;

  /* 1. Count the words of each partition (the partitions are chosen from @upper, before
   * the prefix and the counts of 0 have been seen), then stage every word straight into
   * its partition's room: one staged array, never a scattered copy of it. Without a
   * prefix the counting reads the tables' slots only. */
  while (n_parts * PARTITION_WORDS < upper && d.bits < 16)
    {
      n_parts *= 2;
      d.bits++;
    }
  start = g_new0 (gsize, n_parts + 1);
  d.fill = start + 1;
  for (guint t = 0; t < n_tables; t++)
    if (d.prefix_len == 0)
      d.n += tally_word_table_count_by_hash (tables[t], d.bits, d.fill);
    else
      tally_word_table_foreach_hashed (tables[t], count_one, &d);
  if (d.n == 0)
    return 0;
  for (gsize p = 0; p < n_parts; p++)
    {
      biggest = MAX (biggest, start[p + 1]);
      start[p + 1] += start[p];
    }
  d.fill = g_memdup2 (start, n_parts * sizeof (gsize));
  /* Written once in scattered order, read once: in 4 KiB pages, the page faults of 160 MB
   * of staged words (5 M) took a fifth of a top N's pass. */
  d.staged = g_new (Staged, d.n);
  tally_huge_pages_advise (d.staged, d.n * sizeof (Staged));
  for (guint t = 0; t < n_tables; t++)
    tally_word_table_foreach_hashed (tables[t], stage_one, &d);
  g_free (d.fill);

  /* 2. Sum each partition with an index at a load of at most 2/3 (tables share words, so
   * it is lower in practice), straight into the room reserved in @entries (or the
   * scratch array). */
  while (slots < biggest + biggest / 2)
    slots *= 2;
  index = g_new (IndexSlot, slots);
  heads = g_new (guint64, MAX (biggest, 1));
  if (entries != NULL)
    {
      first = entries->len;
      g_array_set_size (entries, first + d.n);
      base = &g_array_index (entries, TallyWordCount, first);
    }
  else
    base = scratch = g_new (TallyWordCount, MAX (biggest, 1));
  out = base;
  for (gsize p = 0; p < n_parts; p++)
    {
      gsize size = start[p + 1] - start[p], mask = 15, n_sums;

      while (mask + 1 < size + size / 2)
        mask = mask * 2 + 1;
      n_sums = sum_partition (d.staged + start[p], size, index, mask, out, heads);
      out += sink (out, heads, n_sums, sink_data);
    }
  g_free (d.staged);
  n_kept = (gsize)(out - base);
  if (entries != NULL)
    g_array_set_size (entries, (guint)(first + n_kept));
  return n_kept;
}

/* tally_counts_sum_tables()'s sink: keeps the sums of at least @min_count. */
static gsize
keep_min_count (TallyWordCount *sums, const guint64 *heads, gsize n, gpointer user_data)
{
  guint64 min_count = *(const guint64 *)user_data;
  gsize kept = 0;

  if (min_count <= 1)
    return n;
  for (gsize k = 0; k < n; k++)
    if (sums[k].count >= min_count)
      sums[kept++] = sums[k];
  return kept;
}

gsize
tally_counts_sum_tables (TallyWordTable *const *tables, guint n_tables,
                         const TallyCountsOptions *options, GArray *entries)
{
  guint64 min_count = options != NULL ? options->min_count : 0;

  g_return_val_if_fail (tables != NULL || n_tables == 0, 0);
  g_return_val_if_fail (entries != NULL, 0);

  return sum_tables_run (tables, n_tables, options != NULL ? options->prefix : NULL, entries,
                         keep_min_count, &min_count);
}

/* A word of @words, found by its first 8 bytes as word_head() gives them. */
typedef struct
{
  guint64 head;
  gsize len;
  const char *word;
} Named;

/* Bits of the filter that rules out most words not named at once: 2^NAMED_FILTER_BITS bits,
 * 8 KiB, in the L1 cache however many words are summed. */
#define NAMED_FILTER_BITS 16

/* tally_counts_new_from_tables() selects as the partitions' sums come, never holding the
 * sums of every word: the entries that pass the filters, or with a top N only the best N
 * so far, in a heap whose root is the worst of them. Each candidate carries its word's
 * first 8 bytes as a big-endian number (from the heads the summing kept), so a candidate
 * that ties the root's count is decided by that number without reading its word, unless
 * both words share their first 8 bytes: a top 100 of millions of words counted once each
 * compares millions of ties. */
typedef struct
{
  const TallyCountsOptions *options;
  Named *named; /* @words sorted by head, then length; NULL: no such filter */
  gsize n_named;
  guint64 *named_filter; /* bit named_bit (head) set for each named word */
  gsize top;             /* 0: keep every entry that passes, in @kept */
  Candidate *heap;       /* @top of them; the root is the worst kept */
  gsize n_heap;
  GArray *kept;  /* of TallyWordCount, without a top N */
  gsize n_words; /* every word summed, before the filters */
  guint64 total;
} TopSelect;

static inline guint
named_bit (guint64 head)
{
  return (guint)((head * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)) >> (64 - NAMED_FILTER_BITS));
}

static int
compare_named (const void *a, const void *b)
{
  const Named *x = a, *y = b;

  if (x->head != y->head)
    return x->head < y->head ? -1 : 1;
  return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

static void
named_init (TopSelect *s, const char *const *words)
{
  gsize n = g_strv_length ((char **)words);

  s->named = g_new (Named, MAX (n, 1));
  s->named_filter = g_new0 (guint64, ((gsize)1 << NAMED_FILTER_BITS) / 64);
  for (gsize i = 0; i < n; i++)
    {
      Named *w = &s->named[i];

      w->word = words[i];
      w->len = strlen (words[i]);
      w->head = word_head (w->word, w->len);
      s->named_filter[named_bit (w->head) / 64] |= G_GUINT64_CONSTANT (1)
                                                   << (named_bit (w->head) % 64);
    }
  qsort (s->named, n, sizeof (Named), compare_named);
  s->n_named = n;
}

/* Whether the word of @e (its first 8 bytes @head) is one of the named words. */
static gboolean
named_has (const TopSelect *s, const TallyWordCount *e, guint64 head)
{
  guint bit = named_bit (head);
  gsize lo = 0, hi = s->n_named;

  if (!(s->named_filter[bit / 64] & (G_GUINT64_CONSTANT (1) << (bit % 64))))
    return FALSE;
  while (lo < hi)
    {
      gsize mid = lo + (hi - lo) / 2;

      if (s->named[mid].head < head || (s->named[mid].head == head && s->named[mid].len < e->len))
        lo = mid + 1;
      else
        hi = mid;
    }
  for (; lo < s->n_named && s->named[lo].head == head && s->named[lo].len == e->len; lo++)
    if (e->len <= 8 || memcmp (s->named[lo].word + 8, e->word + 8, e->len - 8) == 0)
      return TRUE;
  return FALSE;
}

static gsize
select_sink (TallyWordCount *sums, const guint64 *heads, gsize n, gpointer user_data)
{
  TopSelect *s = user_data;
  const TallyCountsOptions *o = s->options;
  gboolean prefixed = o->prefix != NULL && o->prefix[0] != '\0';

  s->n_words += n;
  for (gsize k = 0; k < n; k++)
    {
      s->total = add_to_total (s->total, sums[k].count);
      if (sums[k].count < o->min_count
          || (prefixed && !tally_counts_options_match (o, sums[k].word, sums[k].len, sums[k].count))
          || (s->named != NULL && !named_has (s, &sums[k], heads[k])))
        continue;
      if (s->top == 0)
        {
          g_array_append_val (s->kept, sums[k]);
          continue;
        }
      /* Most candidates lose to the root on the count alone. */
      if (s->n_heap == s->top && sums[k].count < s->heap[0].e.count)
        continue;
      candidate_offer (s->heap, &s->n_heap, s->top, &sums[k], GUINT64_FROM_BE (heads[k]));
    }
  return 0;
}

void
tally_counts_figures_clear (TallyCountsFigures *figures)
{
  g_return_if_fail (figures != NULL);
  g_clear_pointer (&figures->stamps, g_free);
  figures->n_tables = 0;
  figures->n_words = 0;
  figures->total = 0;
}

void
tally_counts_figures_set (TallyCountsFigures *figures, TallyWordTable *const *tables,
                          guint n_tables, gsize n_words, guint64 total)
{
  g_return_if_fail (figures != NULL);
  g_return_if_fail (tables != NULL || n_tables == 0);

  g_free (figures->stamps);
  figures->stamps = g_new (guint64, 2 * (gsize)MAX (n_tables, 1));
  for (guint t = 0; t < n_tables; t++)
    {
      figures->stamps[2 * t] = tally_word_table_get_id (tables[t]);
      figures->stamps[2 * t + 1] = tally_word_table_get_changes (tables[t]);
    }
  figures->n_tables = n_tables;
  figures->n_words = n_words;
  figures->total = total;
}

/* Whether @figures are those of @tables as they are now, in any order. */
static gboolean
figures_match (const TallyCountsFigures *figures, TallyWordTable *const *tables, guint n_tables)
{
  if (figures == NULL || figures->stamps == NULL || figures->n_tables != n_tables)
    return FALSE;
  for (guint t = 0; t < n_tables; t++)
    {
      guint64 id = tally_word_table_get_id (tables[t]);
      guint k = 0;

      while (k < n_tables && figures->stamps[2 * k] != id)
        k++;
      if (k == n_tables || figures->stamps[2 * k + 1] != tally_word_table_get_changes (tables[t]))
        return FALSE;
    }
  return TRUE;
}

/* The candidates of select_pruned(), with what it needs to sum them. */
typedef struct
{
  TallyWordTable *const *tables;
  guint n_tables;
  guint self;    /* the table being walked */
  guint64 floor; /* the count in one table that makes a word a candidate */
  GArray *sums;  /* of TallyWordCount, borrowed words */
  GArray *heads; /* of guint64, their word_head() */
} Pruned;

/* A word of tables[self] counted at least @floor times there: its sum over every table,
 * unless an earlier table also counts it @floor times or more (it was summed there). */
static void
pruned_one (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  Pruned *p = user_data;
  guint64 sum = count, head;
  TallyWordCount e;

  for (guint t = 0; t < p->n_tables; t++)
    {
      guint64 c;

      if (t == p->self)
        continue;
      c = tally_word_table_lookup (p->tables[t], word, len, hash_lo);
      if (t < p->self && c >= p->floor)
        return;
      sum = add_to_total (sum, c);
    }
  e.word = word;
  e.len = len;
  e.count = sum;
  head = word_head (word, len);
  g_array_append_val (p->sums, e);
  g_array_append_val (p->heads, head);
}

/* select_pruned() looks named words up when they are at most this share of the words
 * (1 / PRUNED_NAMED_SHARE); more are found by summing every word. */
#define PRUNED_NAMED_SHARE 16

/* Whether the filters of @s bound what can pass so that select_pruned() need not sum
 * every word of @tables: few enough named words, or a threshold t (@min_count, raised for
 * a top N without a prefix to the largest N-th count of any one table: that table's N
 * best words have sums at least that high, so the N-th best sum is too) with ceil (t / k)
 * of 2 or more over k tables. Sets @p's floor, ceil (t / k). */
static gboolean
prune_plan (const TopSelect *s, TallyWordTable *const *tables, guint n_tables, Pruned *p)
{
  const TallyCountsOptions *o = s->options;
  guint64 t = o->min_count;

  if (s->named != NULL)
    {
      gsize upper = 0;

      /* Many names (a TPUT round 3 after a round 2 that shipped every word): a lookup per
       * name in each table costs a cache miss each, more than one pass over the words. */
      for (guint k = 0; k < n_tables; k++)
        upper += tally_word_table_get_size (tables[k]);
      return s->n_named <= upper / PRUNED_NAMED_SHARE;
    }
  if (o->top > 0 && (o->prefix == NULL || o->prefix[0] == '\0'))
    {
      guint64 bound = t;

      /* Every N-th count is at most its table's largest count: where no table counts a
       * word more than k times, ceil (t / k) is 1 whatever the N-th counts are, and
       * finding them (a pass over each table's slots) is skipped. */
      for (guint k = 0; k < n_tables; k++)
        bound = MAX (bound, tally_word_table_get_max_count (tables[k]));
      if (bound <= n_tables)
        return FALSE;
      for (guint k = 0; k < n_tables; k++)
        t = MAX (t, tally_word_table_get_nth_count (tables[k], (gsize)MIN (o->top, G_MAXSIZE)));
    }
  p->floor = t / n_tables + (t % n_tables != 0);
  return p->floor > 1;
}

/* Offers @s only the words that can pass its filters, as prune_plan() found them bounded.
 * A word whose sum over k tables reaches t has t / k or more in one of them, so the words
 * counted at least ceil (t / k) times in one table (read from the slots,
 * tally_word_table_foreach_at_least()) are the only ones to sum. Named words are looked
 * up in each table. */
static void
select_pruned (TopSelect *s, TallyWordTable *const *tables, guint n_tables, Pruned *p)
{
  p->tables = tables;
  p->n_tables = n_tables;
  p->sums = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  p->heads = g_array_new (FALSE, FALSE, sizeof (guint64));
  if (s->named != NULL)
    for (gsize i = 0; i < s->n_named; i++)
      {
        const Named *w = &s->named[i];
        guint64 hash = tally_word_hash (w->word, w->len), sum = 0;
        TallyWordCount e = { w->word, w->len, 0 };
        gsize j = i;

        /* Named twice: summed once (names with the same first 8 bytes and length are
         * next to each other, in any order). */
        while (j > 0 && compare_named (w, &s->named[j - 1]) == 0
               && memcmp (w->word, s->named[j - 1].word, w->len) != 0)
          j--;
        if (j > 0 && compare_named (w, &s->named[j - 1]) == 0)
          continue;
        for (guint k = 0; k < n_tables; k++)
          sum = add_to_total (sum, tally_word_table_lookup (tables[k], w->word, w->len, hash));
        if (sum == 0)
          continue;
        e.count = sum;
        g_array_append_val (p->sums, e);
        g_array_append_val (p->heads, w->head);
      }
  else
    for (p->self = 0; p->self < n_tables; p->self++)
      tally_word_table_foreach_at_least (tables[p->self], p->floor, pruned_one, p);
  select_sink ((TallyWordCount *)(void *)p->sums->data, (const guint64 *)(void *)p->heads->data,
               p->sums->len, s);
  g_array_unref (p->sums);
  g_array_unref (p->heads);
}

/* The figures of @tables without summing them: each table's words that no table before
 * it counts (tally_word_table_count_absent()), and the tables' totals. */
static void
figures_probe (TallyWordTable *const *tables, guint n_tables, gsize *n_words, guint64 *total)
{
  *n_words = 0;
  *total = 0;
  for (guint t = 0; t < n_tables; t++)
    {
      *n_words += tally_word_table_count_absent (tables[t], tables, t);
      *total = add_to_total (*total, tally_word_table_get_total (tables[t]));
    }
}

TallyCounts *
tally_counts_new_from_tables (TallyWordTable *const *tables, guint n_tables,
                              const TallyCountsOptions *options, TallyCountsFigures *figures)
{
  static const TallyCountsOptions none = { 0 };
  TopSelect s = { options != NULL ? options : &none, 0 };
  Pruned p = { 0 };
  g_autofree TallyWordCount *chosen = NULL;
  gsize n;
  TallyCounts *counts;

  g_return_val_if_fail (tables != NULL || n_tables == 0, NULL);

  /* A heap is for few of many: a larger top N keeps every entry, then cuts. */
  s.top = s.options->top <= 1024 ? (gsize)s.options->top : 0;
  if (s.top > 0)
    s.heap = g_new (Candidate, s.top);
  else
    s.kept = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  if (s.options->words != NULL)
    named_init (&s, s.options->words);
  if (n_tables > 0 && prune_plan (&s, tables, n_tables, &p))
    {
      gsize n_words;
      guint64 total;

      /* The figures of every word: kept from the last pass while no table changed, or
       * probed. */
      if (figures_match (figures, tables, n_tables))
        {
          n_words = figures->n_words;
          total = figures->total;
        }
      else
        {
          figures_probe (tables, n_tables, &n_words, &total);
          if (figures != NULL)
            tally_counts_figures_set (figures, tables, n_tables, n_words, total);
        }
      select_pruned (&s, tables, n_tables, &p);
      s.n_words = n_words;
      s.total = total;
    }
  else
    {
      /* Every word is summed, the prefix applied after: the snapshot also says how many
       * distinct words and what total it was selected from. */
      sum_tables_run (tables, n_tables, NULL, NULL, select_sink, &s);
      if (figures != NULL)
        tally_counts_figures_set (figures, tables, n_tables, s.n_words, s.total);
    }
  if (s.kept != NULL)
    {
      n = s.kept->len;
      chosen = (TallyWordCount *)(void *)g_array_free (s.kept, FALSE);
    }
  else
    {
      n = s.n_heap;
      chosen = g_new (TallyWordCount, MAX (n, 1));
      for (gsize i = 0; i < n; i++)
        chosen[i] = s.heap[i].e;
      g_free (s.heap);
    }
  g_free (s.named);
  g_free (s.named_filter);
  sort_entries (chosen, n);
  if (s.options->top > 0 && s.options->top < n)
    n = (gsize)s.options->top;
  counts = counts_from_sorted (chosen, n);
  counts->unfiltered_n = s.n_words;
  counts->unfiltered_total = s.total;
  return counts;
}

TallyCounts *
tally_counts_new_empty (void)
{
  return tally_counts_new_from_entries (NULL, 0, NULL);
}

TallyCounts *
tally_counts_ref (TallyCounts *counts)
{
  g_return_val_if_fail (counts != NULL, NULL);
  g_atomic_int_inc (&counts->ref_count);
  return counts;
}

void
tally_counts_unref (TallyCounts *counts)
{
  g_return_if_fail (counts != NULL);
  if (!g_atomic_int_dec_and_test (&counts->ref_count))
    return;
  g_free (counts->entries);
  g_free (counts->bytes);
  g_free (counts->index);
  for (guint k = 0; k < counts->n_parts; k++)
    tally_counts_unref (counts->parts[k]);
  g_free (counts->parts);
  if (counts->blocks != NULL)
    g_ptr_array_unref (counts->blocks);
  g_free (counts);
}

gsize
tally_counts_get_n_words (TallyCounts *counts)
{
  g_return_val_if_fail (counts != NULL, 0);
  return counts->n;
}

guint64
tally_counts_get_total (TallyCounts *counts)
{
  g_return_val_if_fail (counts != NULL, 0);
  return counts->total;
}

gsize
tally_counts_get_n_words_unfiltered (TallyCounts *counts)
{
  g_return_val_if_fail (counts != NULL, 0);
  return counts->unfiltered_n;
}

guint64
tally_counts_get_total_unfiltered (TallyCounts *counts)
{
  g_return_val_if_fail (counts != NULL, 0);
  return counts->unfiltered_total;
}

const TallyWordCount *
tally_counts_get_entries (TallyCounts *counts, gsize *n_entries)
{
  g_return_val_if_fail (counts != NULL, NULL);
  if (n_entries != NULL)
    *n_entries = counts->n;
  return counts->entries;
}

static LookupIndex *
build_index (TallyCounts *counts)
{
  gsize n_slots = 2;
  LookupIndex *index;

  while (n_slots < counts->n * 2)
    n_slots *= 2;
  index = g_malloc0 (sizeof (LookupIndex) + n_slots * sizeof (guint32));
  index->mask = n_slots - 1;
  for (gsize i = 0; i < counts->n; i++)
    {
      gsize j = tally_word_hash (counts->entries[i].word, counts->entries[i].len) & index->mask;
      while (index->slots[j] != 0)
        j = (j + 1) & index->mask;
      index->slots[j] = (guint32)(i + 1);
    }
  return index;
}

guint64
tally_counts_lookup (TallyCounts *counts, const char *word, gsize len)
{
  LookupIndex *index;
  gsize j;

  g_return_val_if_fail (counts != NULL, 0);
  g_return_val_if_fail (word != NULL || len == 0, 0);

  if (counts->n == 0)
    return 0;
  /* The index is published by one atomic compare-and-exchange and read by atomic loads,
   * which order its contents before the reads below. Threads that race on the first lookup
   * each build one; the first published wins and the others are freed. (Atomics inline in
   * this file rather than g_once, whose store happens inside GLib, out of ThreadSanitizer's
   * sight.) */
  index = g_atomic_pointer_get (&counts->index);
  if (index == NULL)
    {
      LookupIndex *fresh = build_index (counts);
      if (g_atomic_pointer_compare_and_exchange (&counts->index, NULL, fresh))
        index = fresh;
      else
        {
          g_free (fresh);
          index = g_atomic_pointer_get (&counts->index);
        }
    }

  j = tally_word_hash (word, len) & index->mask;
  for (;;)
    {
      guint32 e = index->slots[j];
      const TallyWordCount *entry;
      if (e == 0)
        return 0;
      entry = &counts->entries[e - 1];
      if (entry->len == len && memcmp (entry->word, word, len) == 0)
        return entry->count;
      j = (j + 1) & index->mask;
    }
}

TallyCounts *
tally_counts_filter (TallyCounts *counts, const TallyCountsOptions *options)
{
  g_autofree TallyWordCount *copy = NULL;
  TallyCounts *filtered;

  g_return_val_if_fail (counts != NULL, NULL);

  if (tally_counts_options_is_empty (options)
      || ((options->prefix == NULL || options->prefix[0] == '\0')
          && (counts->n == 0 || counts->entries[counts->n - 1].count >= options->min_count)
          && (options->top == 0 || options->top >= counts->n)))
    return tally_counts_ref (counts);

  copy = g_memdup2 (counts->entries, sizeof (TallyWordCount) * counts->n);
  filtered = tally_counts_new_from_entries (copy, counts->n, options);
  filtered->unfiltered_n = counts->unfiltered_n;
  filtered->unfiltered_total = counts->unfiltered_total;
  return filtered;
}

TallyCountsSequence *
tally_counts_sequence_new (gsize expected)
{
  TallyCountsSequence *sequence = g_new0 (TallyCountsSequence, 1);

  /* Reserved, not touched: pages count in RSS only once entries land in them. */
  sequence->entries = g_array_sized_new (FALSE, FALSE, sizeof (TallyWordCount),
                                         (guint)MIN (expected, (gsize)64 * 1024 * 1024));
  sequence->blocks = g_ptr_array_new_with_free_func (g_free);
  return sequence;
}

gboolean
tally_counts_sequence_append (TallyCountsSequence *sequence, const char *word, gsize len,
                              guint64 count)
{
  TallyWordCount e = { word, (guint32)len, count };

  g_return_val_if_fail (sequence != NULL && word != NULL, FALSE);
  g_return_val_if_fail (len > 0 && len <= G_MAXINT32 && count > 0, FALSE);

  if (sequence->entries->len > 0
      && compare_entries (
             &g_array_index (sequence->entries, TallyWordCount, sequence->entries->len - 1), &e)
             >= 0)
    return FALSE;
  g_array_append_val (sequence->entries, e);
  sequence->total = add_to_total (sequence->total, count);
  return TRUE;
}

gsize
tally_counts_sequence_get_length (TallyCountsSequence *sequence)
{
  g_return_val_if_fail (sequence != NULL, 0);
  return sequence->entries->len;
}

void
tally_counts_sequence_truncate (TallyCountsSequence *sequence, gsize length)
{
  g_return_if_fail (sequence != NULL && length <= sequence->entries->len);
  g_array_set_size (sequence->entries, (guint)length);
  sequence->total = 0;
  for (gsize i = 0; i < length; i++)
    sequence->total = add_to_total (sequence->total,
                                    g_array_index (sequence->entries, TallyWordCount, i).count);
}

void
tally_counts_sequence_keep_block (TallyCountsSequence *sequence, char *block)
{
  g_return_if_fail (sequence != NULL);
  g_ptr_array_add (sequence->blocks, block);
}

void
tally_counts_sequence_add_to_builder (TallyCountsSequence *sequence, TallyCountsBuilder *builder)
{
  g_return_if_fail (sequence != NULL && builder != NULL);
  for (guint i = 0; i < sequence->entries->len; i++)
    {
      const TallyWordCount *e = &g_array_index (sequence->entries, TallyWordCount, i);
      tally_word_table_add (builder->table, e->word, e->len, tally_word_hash (e->word, e->len),
                            e->count);
    }
}

TallyCounts *
tally_counts_sequence_end (TallyCountsSequence *sequence)
{
  TallyCounts *counts;

  g_return_val_if_fail (sequence != NULL, NULL);
  counts = g_new0 (TallyCounts, 1);
  counts->ref_count = 1;
  counts->n = sequence->entries->len;
  counts->total = sequence->total;
  counts->unfiltered_n = counts->n;
  counts->unfiltered_total = counts->total;
  /* Give back the reserve the entries did not use. */
  counts->entries = g_realloc_n (g_array_steal (sequence->entries, NULL), MAX (counts->n, 1),
                                 sizeof (TallyWordCount));
  counts->blocks = g_steal_pointer (&sequence->blocks);
  tally_counts_sequence_free (sequence);
  return counts;
}

void
tally_counts_sequence_free (TallyCountsSequence *sequence)
{
  if (sequence == NULL)
    return;
  g_array_unref (sequence->entries);
  if (sequence->blocks != NULL)
    g_ptr_array_unref (sequence->blocks);
  g_free (sequence);
}

TallyCountsBuilder *
tally_counts_builder_new (void)
{
  TallyCountsBuilder *builder = g_new0 (TallyCountsBuilder, 1);
  builder->table = tally_word_table_new ();
  return builder;
}

void
tally_counts_builder_free (TallyCountsBuilder *builder)
{
  if (builder == NULL)
    return;
  tally_word_table_free (builder->table);
  g_free (builder);
}

void
tally_counts_builder_add (TallyCountsBuilder *builder, const char *word, gsize len, guint64 count)
{
  g_return_if_fail (builder != NULL);
  g_return_if_fail (word != NULL);
  g_return_if_fail (len > 0 && len <= G_MAXINT32);
  g_return_if_fail (g_utf8_validate (word, (gssize)len, NULL));

  if (count == 0)
    return;
  tally_word_table_add (builder->table, word, len, tally_word_hash (word, len), count);
}

void
tally_counts_builder_set_max (TallyCountsBuilder *builder, const char *word, gsize len,
                              guint64 count)
{
  guint64 hash;

  g_return_if_fail (builder != NULL);
  g_return_if_fail (word != NULL);
  g_return_if_fail (len > 0 && len <= G_MAXINT32);
  g_return_if_fail (g_utf8_validate (word, (gssize)len, NULL));

  hash = tally_word_hash (word, len);
  if (count > tally_word_table_lookup (builder->table, word, len, hash))
    tally_word_table_set (builder->table, word, len, hash, count);
}

void
tally_counts_builder_add_counts (TallyCountsBuilder *builder, TallyCounts *counts)
{
  g_return_if_fail (builder != NULL);
  g_return_if_fail (counts != NULL);

  /* Entries of a snapshot were validated when it was built. */
  for (gsize i = 0; i < counts->n; i++)
    {
      const TallyWordCount *e = &counts->entries[i];
      tally_word_table_add (builder->table, e->word, e->len, tally_word_hash (e->word, e->len),
                            e->count);
    }
}

gsize
tally_counts_builder_get_n_words (TallyCountsBuilder *builder)
{
  g_return_val_if_fail (builder != NULL, 0);
  return tally_word_table_get_size (builder->table);
}

TallyCounts *
tally_counts_builder_end_filtered (TallyCountsBuilder *builder, const TallyCountsOptions *options)
{
  g_autoptr (GArray) entries = NULL;
  TallyCounts *counts;

  g_return_val_if_fail (builder != NULL, NULL);

  entries = g_array_sized_new (FALSE, FALSE, sizeof (TallyWordCount),
                               (guint)tally_word_table_get_size (builder->table));
  tally_counts_collect_table (builder->table, entries, options);
  counts = tally_counts_new_from_entries ((TallyWordCount *)(void *)entries->data, entries->len,
                                          options);
  tally_word_table_remove_all (builder->table);
  return counts;
}

TallyCounts *
tally_counts_builder_end (TallyCountsBuilder *builder)
{
  return tally_counts_builder_end_filtered (builder, NULL);
}
