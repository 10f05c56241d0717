/* tally-word-table.c — the counting table behind every aggregator shard.
 *
 * What it is for: mapping each distinct word to a 64-bit count with as few bytes per word
 * as possible, because an aggregator holds every distinct word of its input, and with as
 * few cache misses per counted word as possible, because every word goes through it.
 *
 * Why it is built as it is: keys are interned once in an arena whose chunks never move,
 * so a slot names its key with a 32-bit offset instead of a pointer; slots are 16 bytes
 * and carry hash bits, so probing and growing rarely touch the keys. Counts only grow,
 * so there is no removal of single words, only remove_all. The arena is described above
 * intern_key(), the slots above Slot, probing above find_slot() and growth above grow().
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-word-table.h"

#include "tally-huge-pages.h"

#include <string.h>

#define CHUNK_BITS 20
#define CHUNK_SIZE ((gsize)1 << CHUNK_BITS)
#define MAX_CHUNKS ((gsize)1 << (32 - CHUNK_BITS))
#define CHANGED_BIT (G_GUINT64_CONSTANT (1) << 63)
#define COUNT_MASK (~CHANGED_BIT)
#define INITIAL_SLOT_BITS 4
#define INITIAL_SLOTS (1 << INITIAL_SLOT_BITS)

/* A slot: { count (bit 63 = changed since the last take_changes), key offset, low 32 bits
 * of the key's hash }. Offset 0 is never a key, so it marks an empty slot. The slot array
 * is a power of two; a word's home slot is home_slot() of its hash and collisions probe
 * linearly.
 *
 * Cost at n distinct words: 16 bytes x (n / 0.4 .. n / 0.8) slots + (1 + len) bytes per
 * key + under 1 MiB of unused chunk tail. */
typedef struct
{
  guint64 count; /* bit 63: changed */
  guint32 offset;
  guint32 hash_lo;
} Slot;

G_STATIC_ASSERT (sizeof (Slot) == 16);

struct _TallyWordTable
{
  Slot *slots;
  gsize mask;   /* number of slots - 1 */
  guint32 mult; /* this table's odd multiplier, see home_slot() */
  guint shift;  /* 32 - log2 (number of slots) */
  gsize size;
  gsize n_changed;
  guint64 total;
  guint64 max_count; /* at least every count, see tally_word_table_get_max_count() */
  guint64 id;        /* unique in the process, see tally_word_table_get_id() */
  guint64 changes;   /* changes of a count or of the words so far */

  /* The arena. */
  guint8 **chunks;
  gsize n_chunks;
  gsize chunks_alloc;
  gsize chunk_used; /* bytes used in the last ordinary chunk */
  gsize arena_bytes;
  gint last_chunk; /* index of the chunk that takes new short keys, -1 if none */
};

/* ---------------------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------------------- */

static inline gsize
varint_size (gsize len)
{
  gsize n = 1;
  while (len >= 0x80)
    {
      len >>= 7;
      n++;
    }
  return n;
}

static inline const guint8 *
key_at (TallyWordTable *table, guint32 offset, gsize *len)
{
  const guint8 *p = table->chunks[offset >> CHUNK_BITS] + (offset & (CHUNK_SIZE - 1));
  gsize l = 0;
  guint shift = 0;
  for (;;)
    {
      guint8 byte = *p++;
      l |= (gsize)(byte & 0x7f) << shift;
      if (byte < 0x80)
        break;
      shift += 7;
    }
  *len = l;
  return p;
}

static guint8 *
new_chunk (TallyWordTable *table, gsize size)
{
  guint8 *chunk;

  if (table->n_chunks == MAX_CHUNKS)
    g_error ("TallyWordTable: the key arena is full (%" G_GSIZE_FORMAT " chunks)", MAX_CHUNKS);
  if (table->n_chunks == table->chunks_alloc)
    {
      table->chunks_alloc = MAX (8, table->chunks_alloc * 2);
      table->chunks = g_renew (guint8 *, table->chunks, table->chunks_alloc);
    }
  chunk = g_malloc (size);
  table->chunks[table->n_chunks++] = chunk;
  table->arena_bytes += size;
  return chunk;
}

/* Copies a key into the arena and returns its offset (never 0).
 *
 * The arena is a list of 1 MiB chunks; each key is stored once as a LEB128 length followed
 * by its bytes (no NUL, no padding). Chunks are never moved or reallocated, and a key is
 * named by a 32-bit offset, (chunk index << 20) | position. A key too long for a chunk
 * gets a chunk of its own. */
static guint32
intern_key (TallyWordTable *table, const char *word, gsize len)
{
  gsize need = varint_size (len) + len;
  guint8 *dst;
  guint32 offset;
  gsize l = len;

  if (G_UNLIKELY (need > CHUNK_SIZE - 1))
    {
      /* A chunk of its own, at position 0 of a fresh chunk index (never index 0, whose
       * position 0 is the empty marker, because chunk 0 is always an ordinary chunk). */
      if (table->last_chunk < 0)
        {
          new_chunk (table, CHUNK_SIZE);
          table->last_chunk = 0;
          table->chunk_used = 1;
        }
      dst = new_chunk (table, need);
      offset = (guint32)((table->n_chunks - 1) << CHUNK_BITS);
    }
  else
    {
      if (table->last_chunk < 0 || table->chunk_used + need > CHUNK_SIZE)
        {
          new_chunk (table, CHUNK_SIZE);
          table->last_chunk = (gint)table->n_chunks - 1;
          /* Position 0 of chunk 0 stays unused: offset 0 means "empty slot". */
          table->chunk_used = table->last_chunk == 0 ? 1 : 0;
        }
      offset = (guint32)(((gsize)table->last_chunk << CHUNK_BITS) | table->chunk_used);
      dst = table->chunks[table->last_chunk] + table->chunk_used;
      table->chunk_used += need;
    }

  while (l >= 0x80)
    {
      *dst++ = (guint8)(l | 0x80);
      l >>= 7;
    }
  *dst++ = (guint8)l;
  memcpy (dst, word, len);
  return offset;
}

/* ---------------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------------- */

/* The home slot of a word whose hash has the low 32 bits @hash_lo: the top log2 (slots)
 * bits of hash_lo x the table's own odd multiplier (multiplicative hashing).
 *
 * Why each table has its own: words often leave one table in slot order (a worker's
 * combining table flushed to the shards, a snapshot, a restore) and enter another. Were
 * the home the same bits of the hash in both (as with hash & mask), they would arrive
 * sorted by home, and linear probing then walks ever longer runs: on 4 M mostly distinct
 * words, 3,000 slots per insert at 2^19 slots and 9 s for what takes under 2 s. With
 * unrelated multipliers the order one table gives is random to the other. */
static inline G_ALWAYS_INLINE gsize
home_slot (const TallyWordTable *table, guint32 hash_lo)
{
  return (guint32)(hash_lo * table->mult) >> table->shift;
}

/* A new odd multiplier for each table: splitmix64 of a process-wide counter. Which table
 * gets which changes only the order of slots, never a result. */
static guint32
next_multiplier (void)
{
  static gint counter;
  guint64 z
      = (guint64)(guint)g_atomic_int_add (&counter, 1) + G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);

  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  z ^= z >> 31;
  return (guint32)(z >> 32) | 1u;
}

/* The last id handed out by tally_word_table_new(). */
static gsize next_table_id;

TallyWordTable *
tally_word_table_new (void)
{
  TallyWordTable *table = g_new0 (TallyWordTable, 1);
  table->slots = g_new0 (Slot, INITIAL_SLOTS);
  table->mask = INITIAL_SLOTS - 1;
  table->mult = next_multiplier ();
  table->shift = 32 - INITIAL_SLOT_BITS;
  table->last_chunk = -1;
  table->id = (guint64)g_atomic_pointer_add (&next_table_id, 1) + 1;
  return table;
}

static void
free_arena (TallyWordTable *table)
{
  for (gsize i = 0; i < table->n_chunks; i++)
    g_free (table->chunks[i]);
  g_free (table->chunks);
  table->chunks = NULL;
  table->n_chunks = table->chunks_alloc = 0;
  table->chunk_used = 0;
  table->arena_bytes = 0;
  table->last_chunk = -1;
}

void
tally_word_table_free (TallyWordTable *table)
{
  if (table == NULL)
    return;
  free_arena (table);
  g_free (table->slots);
  g_free (table);
}

void
tally_word_table_clear (TallyWordTable *table)
{
  g_return_if_fail (table != NULL);

  memset (table->slots, 0, (table->mask + 1) * sizeof (Slot));
  /* Keep chunk 0 when it is an ordinary chunk (it always is, see intern_key()). */
  if (table->n_chunks > 0)
    {
      for (gsize i = 1; i < table->n_chunks; i++)
        g_free (table->chunks[i]);
      table->n_chunks = 1;
      table->last_chunk = 0;
      table->chunk_used = 1;
      table->arena_bytes = CHUNK_SIZE;
    }
  table->size = 0;
  table->n_changed = 0;
  table->total = 0;
  table->max_count = 0;
  table->changes++;
}

void
tally_word_table_remove_all (TallyWordTable *table)
{
  g_return_if_fail (table != NULL);
  free_arena (table);
  g_free (table->slots);
  table->slots = g_new0 (Slot, INITIAL_SLOTS);
  table->mask = INITIAL_SLOTS - 1;
  table->shift = 32 - INITIAL_SLOT_BITS;
  table->size = 0;
  table->n_changed = 0;
  table->total = 0;
  table->max_count = 0;
  table->changes++;
}

/* Slot arrays from this size on are asked for in huge pages (below). */
#define HUGE_SLOTS_BYTES ((gsize)4 * 1024 * 1024)

/* A slot array of @n slots, not zeroed. From HUGE_SLOTS_BYTES on, Linux is asked to back
 * it with transparent huge pages where it does so only on request (the "madvise" setting,
 * tally_huge_pages_advise()): a shard's table of a few hundred thousand words is 8 MB of
 * slots probed at random, and in 4 KiB pages each growth took 2,000 page faults and each
 * probe likely a TLB miss (`tally count --shards 2` on the multilingual corpus: 24,600
 * page faults before, 20,600 after, 2.5% less wall time, tests/bench/README.md). Advice
 * only: where it is refused the array works the same. */
static Slot *
slots_new (gsize n)
{
  Slot *slots = g_new (Slot, n);

  if (n * sizeof (Slot) >= HUGE_SLOTS_BYTES)
    tally_huge_pages_advise (slots, n * sizeof (Slot));
  return slots;
}

/* Doubles the slot array (at 80% load, see insert()) and re-places every slot from its
 * stored hash bits, never touching the keys. */
static void
grow (TallyWordTable *table)
{
  gsize old_n = table->mask + 1;
  gsize new_n = old_n * 2;
  gsize new_mask = new_n - 1;
  Slot *old = table->slots;
  Slot *slots;

  if (new_n > ((gsize)1 << 32))
    g_error ("TallyWordTable: more than 2^32 slots");
  /* Written before it is read: calloc'd pages that are read first map the shared zero
   * page, and the first write to each then takes a copy-on-write fault whose TLB flush
   * interrupts every CPU running a thread of the process (half of the kernel time of
   * tally count on 477 k distinct words). */
  slots = slots_new (new_n);
  memset (slots, 0, new_n * sizeof (Slot));
  table->shift--;
  for (gsize i = 0; i < old_n; i++)
    {
      gsize j;
      if (old[i].offset == 0)
        continue;
      j = home_slot (table, old[i].hash_lo);
      while (slots[j].offset != 0)
        j = (j + 1) & new_mask;
      slots[j] = old[i];
    }
  g_free (old);
  table->slots = slots;
  table->mask = new_mask;
}

/* Whether the @len bytes at @a and @b are equal. Keys are mostly short: up to 16 bytes
 * they are compared inline with two (overlapping) loads of 8, 4 or 1 bytes from each end,
 * never reading outside either word, instead of a call to memcmp(). */
static inline G_ALWAYS_INLINE gboolean
key_equal (const guint8 *a, const guint8 *b, gsize len)
{
  if (G_LIKELY (len >= 8 && len <= 16))
    {
      guint64 a0, a1, b0, b1;

      memcpy (&a0, a, 8);
      memcpy (&b0, b, 8);
      memcpy (&a1, a + len - 8, 8);
      memcpy (&b1, b + len - 8, 8);
      return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
  if (G_LIKELY (len >= 4 && len < 8))
    {
      guint32 a0, a1, b0, b1;

      memcpy (&a0, a, 4);
      memcpy (&b0, b, 4);
      memcpy (&a1, a + len - 4, 4);
      memcpy (&b1, b + len - 4, 4);
      return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
  if (len < 4)
    return len == 0 || (a[0] == b[0] && a[len >> 1] == b[len >> 1] && a[len - 1] == b[len - 1]);
  return memcmp (a, b, len) == 0;
}

/* Whether the key at @offset is @word. A key shorter than 128 bytes (nearly all) has a
 * one-byte length, read without the LEB128 loop. */
static inline G_ALWAYS_INLINE gboolean
key_is (TallyWordTable *table, guint32 offset, const char *word, gsize len)
{
  const guint8 *p = table->chunks[offset >> CHUNK_BITS] + (offset & (CHUNK_SIZE - 1));
  gsize klen;

  if (G_LIKELY (p[0] < 0x80))
    return p[0] == len && key_equal (p + 1, (const guint8 *)word, len);
  p = key_at (table, offset, &klen);
  return klen == len && key_equal (p, (const guint8 *)word, len);
}

/* Finds the slot of a word, or the empty slot where it would go. The stored hash bits
 * are compared first: an empty slot (offset 0) has hash bits 0 too, so the offset is
 * only looked at when they match, or to stop, and a key's bytes are read only on a
 * (nearly certain) match. */
static inline G_ALWAYS_INLINE Slot *
find_slot (TallyWordTable *table, const char *word, gsize len, guint64 hash)
{
  guint32 hash_lo = (guint32)hash;
  Slot *slots = table->slots;
  gsize mask = table->mask;
  gsize i = home_slot (table, hash_lo);

  for (;;)
    {
      Slot *s = &slots[i];
      if (s->hash_lo == hash_lo)
        {
          if (G_UNLIKELY (s->offset == 0) || G_LIKELY (key_is (table, s->offset, word, len)))
            return s;
        }
      else if (s->offset == 0)
        return s;
      i = (i + 1) & mask;
    }
}

/* Puts a new word in the empty slot @s that find_slot() gave for it. Out of line: a
 * counted text mostly repeats words, and the hot path keeps its registers. */
static G_GNUC_NO_INLINE Slot *
insert (TallyWordTable *table, Slot *s, const char *word, gsize len, guint64 hash)
{
  /* Grow before filling past 80%: (size + 1) > 0.8 x slots. */
  if ((table->size + 1) * 5 > (table->mask + 1) * 4)
    {
      grow (table);
      s = find_slot (table, word, len, hash);
    }
  s->offset = intern_key (table, word, len);
  s->hash_lo = (guint32)hash;
  s->count = 0;
  table->size++;
  return s;
}

static inline G_ALWAYS_INLINE Slot *
find_or_insert (TallyWordTable *table, const char *word, gsize len, guint64 hash)
{
  Slot *s = find_slot (table, word, len, hash);

  if (G_UNLIKELY (s->offset == 0))
    s = insert (table, s, word, len, hash);
  return s;
}

void
tally_word_table_prefetch (TallyWordTable *table, guint64 hash)
{
  __builtin_prefetch (&table->slots[home_slot (table, (guint32)hash)]);
}

void
tally_word_table_prefetch_key (TallyWordTable *table, guint64 hash)
{
  const Slot *s = &table->slots[home_slot (table, (guint32)hash)];

  if (s->hash_lo == (guint32)hash && s->offset != 0)
    __builtin_prefetch (table->chunks[s->offset >> CHUNK_BITS] + (s->offset & (CHUNK_SIZE - 1)));
}

static inline G_ALWAYS_INLINE guint64
add (TallyWordTable *table, const char *word, gsize len, guint64 hash, guint64 delta)
{
  Slot *s = find_or_insert (table, word, len, hash);
  guint64 count;

  count = s->count & COUNT_MASK;
  if (G_UNLIKELY (delta > COUNT_MASK - count))
    delta = COUNT_MASK - count;
  count += delta;
  table->total += delta;
  table->changes++;
  if (G_UNLIKELY (count > table->max_count))
    table->max_count = count;
  if (!(s->count & CHANGED_BIT))
    table->n_changed++;
  s->count = count | CHANGED_BIT;
  return count;
}

guint64
tally_word_table_add (TallyWordTable *table, const char *word, gsize len, guint64 hash,
                      guint64 delta)
{
  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (len < ((gsize)1 << 31), 0);

  return add (table, word, len, hash, delta);
}

guint32
tally_word_table_add_keyed (TallyWordTable *table, const char *word, gsize len, guint64 hash,
                            guint64 delta)
{
  Slot *s;
  guint64 count;

  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (len < ((gsize)1 << 31), 0);

  s = find_or_insert (table, word, len, hash);
  count = s->count & COUNT_MASK;
  if (G_UNLIKELY (delta > COUNT_MASK - count))
    delta = COUNT_MASK - count;
  table->total += delta;
  table->changes++;
  if (G_UNLIKELY (count + delta > table->max_count))
    table->max_count = count + delta;
  if (!(s->count & CHANGED_BIT))
    table->n_changed++;
  s->count = (count + delta) | CHANGED_BIT;
  return s->offset;
}

const char *
tally_word_table_get_key (TallyWordTable *table, guint32 key, gsize *len)
{
  g_return_val_if_fail (table != NULL && key != 0 && len != NULL, NULL);
  return (const char *)key_at (table, key, len);
}

guint64
tally_word_table_count (TallyWordTable *table, const char *word, gsize len, guint64 delta)
{
  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (len < ((gsize)1 << 31), 0);

  return add (table, word, len, tally_word_hash (word, len), delta);
}

/* Words whose hashes are taken, and home slots prefetched, before they are counted. */
#define COUNT_WORDS_AHEAD 8

gsize
tally_word_table_count_words (TallyWordTable *table, const TallyWordRef *words, gsize n_words,
                              gsize max_size)
{
  guint64 hashes[COUNT_WORDS_AHEAD];
  gsize ahead;

  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (words != NULL || n_words == 0, 0);

  ahead = MIN (n_words, COUNT_WORDS_AHEAD);
  for (gsize i = 0; i < ahead; i++)
    {
      hashes[i] = tally_word_hash (words[i].word, words[i].len);
      __builtin_prefetch (&table->slots[home_slot (table, (guint32)hashes[i])]);
    }
  for (gsize i = 0; i < n_words; i++)
    {
      guint64 hash = hashes[i % COUNT_WORDS_AHEAD];

      if (i + COUNT_WORDS_AHEAD < n_words)
        {
          const TallyWordRef *next = &words[i + COUNT_WORDS_AHEAD];
          guint64 h = tally_word_hash (next->word, next->len);

          hashes[i % COUNT_WORDS_AHEAD] = h;
          __builtin_prefetch (&table->slots[home_slot (table, (guint32)h)]);
        }
      add (table, words[i].word, words[i].len, hash, 1);
      if (G_UNLIKELY (table->size >= max_size))
        return i + 1;
    }
  return n_words;
}

void
tally_word_table_set (TallyWordTable *table, const char *word, gsize len, guint64 hash,
                      guint64 count)
{
  Slot *s;

  g_return_if_fail (table != NULL);
  g_return_if_fail (len < ((gsize)1 << 31));

  count = MIN (count, COUNT_MASK);
  s = find_or_insert (table, word, len, hash);
  table->total -= s->count & COUNT_MASK;
  table->total += count;
  table->changes++;
  table->max_count = MAX (table->max_count, count);
  s->count = (s->count & CHANGED_BIT) | count;
}

guint64
tally_word_table_lookup (TallyWordTable *table, const char *word, gsize len, guint64 hash)
{
  Slot *s;

  g_return_val_if_fail (table != NULL, 0);
  s = find_slot (table, word, len, hash);
  return s->offset != 0 ? s->count & COUNT_MASK : 0;
}

gsize
tally_word_table_get_size (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->size;
}

guint64
tally_word_table_get_total (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->total;
}

guint64
tally_word_table_get_max_count (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->max_count;
}

guint64
tally_word_table_get_id (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->id;
}

guint64
tally_word_table_get_changes (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->changes;
}

gsize
tally_word_table_get_n_changed (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return table->n_changed;
}

gsize
tally_word_table_get_memory (TallyWordTable *table)
{
  g_return_val_if_fail (table != NULL, 0);
  return sizeof (TallyWordTable) + (table->mask + 1) * sizeof (Slot) + table->arena_bytes
         + table->chunks_alloc * sizeof (guint8 *);
}

/* How many slots ahead foreach and take_changes prefetch the key of a slot: slots are read
 * in order, their keys lie anywhere in the arena, and the misses should overlap (on 477 k
 * distinct words, each key read was a miss that stalled the loop). */
#define FOREACH_PREFETCH 24

static inline G_ALWAYS_INLINE void
prefetch_key_of (TallyWordTable *table, const Slot *s)
{
  guint32 offset = s->offset;

  if (offset != 0)
    __builtin_prefetch (table->chunks[offset >> CHUNK_BITS] + (offset & (CHUNK_SIZE - 1)));
}

/* The walk behind tally_word_table_foreach() and tally_word_table_foreach_hashed(): calls
 * @func, or @hashed_func with the hash bits the slot keeps, for each word in slot order.
 * Keys lie in the arena in the order they came, not in slot order: the key of the slot
 * FOREACH_PREFETCH ahead is prefetched, so that several misses are under way at once. */
static inline void
foreach_slot (TallyWordTable *table, TallyWordTableFunc func, TallyWordTableHashedFunc hashed_func,
              gpointer user_data)
{
  for (gsize i = 0; i <= table->mask; i++)
    {
      Slot *s = &table->slots[i];
      gsize len;
      const guint8 *k;

      if (G_LIKELY (i + FOREACH_PREFETCH <= table->mask))
        prefetch_key_of (table, &table->slots[i + FOREACH_PREFETCH]);
      if (s->offset == 0)
        continue;
      k = key_at (table, s->offset, &len);
      if (hashed_func != NULL)
        hashed_func ((const char *)k, len, s->count & COUNT_MASK, s->hash_lo, user_data);
      else
        func ((const char *)k, len, s->count & COUNT_MASK, user_data);
    }
}

void
tally_word_table_foreach (TallyWordTable *table, TallyWordTableFunc func, gpointer user_data)
{
  g_return_if_fail (table != NULL);
  g_return_if_fail (func != NULL);

  foreach_slot (table, func, NULL, user_data);
}

void
tally_word_table_foreach_hashed (TallyWordTable *table, TallyWordTableHashedFunc func,
                                 gpointer user_data)
{
  g_return_if_fail (table != NULL);
  g_return_if_fail (func != NULL);

  foreach_slot (table, NULL, func, user_data);
}

gsize
tally_word_table_count_by_hash (TallyWordTable *table, guint bits, gsize *counts)
{
  gsize n = 0;

  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (bits <= 31, 0);
  g_return_val_if_fail (counts != NULL, 0);

  /* The slots alone, in order: no key is read. */
  for (gsize i = 0; i <= table->mask; i++)
    {
      const Slot *s = &table->slots[i];

      if (s->offset == 0 || (s->count & COUNT_MASK) == 0)
        continue;
      counts[bits > 0 ? s->hash_lo >> (32 - bits) : 0]++;
      n++;
    }
  return n;
}

/* A min-heap of counts: the root is the smallest kept. */
static void
count_heap_offer (guint64 *heap, gsize *n_heap, gsize n, guint64 count)
{
  gsize i;

  if (*n_heap < n)
    {
      /* Sift up. */
      for (i = (*n_heap)++; i > 0 && heap[(i - 1) / 2] > count; i = (i - 1) / 2)
        heap[i] = heap[(i - 1) / 2];
      heap[i] = count;
      return;
    }
  if (count <= heap[0])
    return;
  /* Replace the root and sift down. */
  for (i = 0;;)
    {
      gsize c = 2 * i + 1;

      if (c >= n)
        break;
      if (c + 1 < n && heap[c + 1] < heap[c])
        c++;
      if (heap[c] >= count)
        break;
      heap[i] = heap[c];
      i = c;
    }
  heap[i] = count;
}

guint64
tally_word_table_get_nth_count (TallyWordTable *table, gsize n)
{
  g_autofree guint64 *heap = NULL;
  gsize n_heap = 0;

  g_return_val_if_fail (table != NULL, 0);

  if (n == 0 || n > table->size)
    return 0;
  heap = g_new (guint64, n);
  /* The slots alone, in order: no key is read. */
  for (gsize i = 0; i <= table->mask; i++)
    {
      const Slot *s = &table->slots[i];

      if (s->offset != 0)
        count_heap_offer (heap, &n_heap, n, s->count & COUNT_MASK);
    }
  return n_heap == n ? heap[0] : 0;
}

gsize
tally_word_table_foreach_at_least (TallyWordTable *table, guint64 min_count,
                                   TallyWordTableHashedFunc func, gpointer user_data)
{
  gsize n = 0;

  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (func != NULL, 0);

  /* The slots in order; a key is read only for a count that passes. */
  for (gsize i = 0; i <= table->mask; i++)
    {
      const Slot *s = &table->slots[i];
      guint64 count = s->count & COUNT_MASK;
      gsize len;
      const guint8 *k;

      if (s->offset == 0 || count < min_count)
        continue;
      k = key_at (table, s->offset, &len);
      func ((const char *)k, len, count, s->hash_lo, user_data);
      n++;
    }
  return n;
}

/* How many slots ahead tally_word_table_count_absent() prefetches the other tables' home
 * slots: its probes land anywhere in their slot arrays. */
#define ABSENT_PREFETCH 16

/* Whether @others count (count > 0) the word of slot @s of @table. */
static inline gboolean
counted_elsewhere (TallyWordTable *table, const Slot *s, TallyWordTable *const *others,
                   guint n_others)
{
  const guint8 *word = NULL;
  gsize len = 0;

  for (guint t = 0; t < n_others; t++)
    {
      TallyWordTable *o = others[t];

      for (gsize i = home_slot (o, s->hash_lo);; i = (i + 1) & o->mask)
        {
          const Slot *x = &o->slots[i];

          if (x->offset == 0)
            break;
          if (x->hash_lo != s->hash_lo)
            continue;
          if (word == NULL)
            word = key_at (table, s->offset, &len);
          if (key_is (o, x->offset, (const char *)word, len))
            {
              if ((x->count & COUNT_MASK) > 0)
                return TRUE;
              break;
            }
        }
    }
  return FALSE;
}

gsize
tally_word_table_count_absent (TallyWordTable *table, TallyWordTable *const *others, guint n_others)
{
  gsize n = 0;

  g_return_val_if_fail (table != NULL, 0);
  g_return_val_if_fail (others != NULL || n_others == 0, 0);

  for (gsize i = 0; i <= table->mask; i++)
    {
      const Slot *s = &table->slots[i];

      if (G_LIKELY (i + ABSENT_PREFETCH <= table->mask))
        {
          const Slot *ahead = &table->slots[i + ABSENT_PREFETCH];

          if (ahead->offset != 0)
            for (guint t = 0; t < n_others; t++)
              __builtin_prefetch (&others[t]->slots[home_slot (others[t], ahead->hash_lo)]);
        }
      if (s->offset == 0 || (s->count & COUNT_MASK) == 0)
        continue;
      if (!counted_elsewhere (table, s, others, n_others))
        n++;
    }
  return n;
}

void
tally_word_table_take_changes (TallyWordTable *table, TallyWordTableFunc func, gpointer user_data)
{
  g_return_if_fail (table != NULL);
  g_return_if_fail (func != NULL);

  for (gsize i = 0; i <= table->mask && table->n_changed > 0; i++)
    {
      Slot *s = &table->slots[i];
      gsize len;
      const guint8 *k;

      if (G_LIKELY (i + FOREACH_PREFETCH <= table->mask)
          && (table->slots[i + FOREACH_PREFETCH].count & CHANGED_BIT))
        prefetch_key_of (table, &table->slots[i + FOREACH_PREFETCH]);
      if (s->offset == 0 || !(s->count & CHANGED_BIT))
        continue;
      s->count &= COUNT_MASK;
      table->n_changed--;
      k = key_at (table, s->offset, &len);
      func ((const char *)k, len, s->count, user_data);
    }
}
