/* tally-word-table.h — the counting table: distinct words to 64-bit counts, compactly.
 *
 * Open addressing with linear probing over 16-byte slots { count, key offset, 32 hash
 * bits }, keyed by a 64-bit hash of the word's bytes (tally_word_hash() of
 * tally-word-hash.h, taken by the caller); the words are interned once, length-prefixed, in a
 * chunked arena whose bytes never move. The table doubles when it is 80% full.
 * tests/bench/bench-word-table.c measures its bytes per word against a GHashTable's
 * (figures in tests/bench/README.md).
 *
 * A table also remembers which words changed since the last tally_word_table_take_changes()
 * (one bit per slot), for checkpoints of partition-owned state.
 *
 * A table is plain data with no locks: one thread (one actor) at a time.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-word-hash.h"

G_BEGIN_DECLS

typedef struct _TallyWordTable TallyWordTable;

/**
 * tally_word_table_new:
 *
 * Returns: (transfer full): an empty table; free it with tally_word_table_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWordTable *tally_word_table_new (void);

/**
 * tally_word_table_free:
 * @table: (transfer full) (nullable): a table
 */
void tally_word_table_free (TallyWordTable *table);

/**
 * tally_word_table_add:
 * @table: a table
 * @word: the word's bytes (need not be NUL-terminated; any bytes)
 * @len: its length in bytes, below 2^31
 * @hash: tally_word_hash (@word, @len)
 * @delta: how much to add to its count
 *
 * Adds @delta to the count of @word (inserting it with count @delta if absent) and marks
 * it changed. Amortized O(1). Counts saturate at 2^63 - 1. Aborts if the arena's 4 GiB of
 * key bytes are exhausted (g_error).
 *
 * Returns: the word's new count
 */
guint64 tally_word_table_add (TallyWordTable *table, const char *word, gsize len, guint64 hash,
                              guint64 delta);

/**
 * tally_word_table_add_keyed:
 * @table: a table
 * @word: the word's bytes (need not be NUL-terminated; any bytes)
 * @len: its length in bytes, below 2^31
 * @hash: tally_word_hash (@word, @len)
 * @delta: how much to add to its count
 *
 * As tally_word_table_add(), returning instead the word's *key*: a 32-bit name of its
 * bytes interned in @table, never 0, the same for the same word, that
 * tally_word_table_get_key() turns back into the bytes. A key stays valid until @table is
 * cleared (tally_word_table_clear(), tally_word_table_remove_all()) or freed. The windowed
 * counting of a shard uses it to count a run of words per key before it adds each
 * distinct word to its time bucket once.
 *
 * Returns: the word's key
 */
guint32 tally_word_table_add_keyed (TallyWordTable *table, const char *word, gsize len,
                                    guint64 hash, guint64 delta);

/**
 * tally_word_table_get_key:
 * @table: the table that gave @key
 * @key: a key from tally_word_table_add_keyed() on @table, still valid
 * @len: (out): the word's length in bytes
 *
 * Returns: (transfer none): the word's bytes (not NUL-terminated), owned by @table
 */
const char *tally_word_table_get_key (TallyWordTable *table, guint32 key, gsize *len);

/**
 * tally_word_table_count:
 * @table: a table
 * @word: the word's bytes (need not be NUL-terminated; any bytes)
 * @len: its length in bytes, below 2^31
 * @delta: how much to add to its count
 *
 * Does tally_word_table_add (@table, @word, @len, tally_word_hash (@word, @len), @delta)
 * in one call, with the hash computed inline: for a caller that does not need the hash
 * itself (a combiner counting words as they come). Same thread rules as the table.
 *
 * Returns: the word's new count
 */
guint64 tally_word_table_count (TallyWordTable *table, const char *word, gsize len, guint64 delta);

/**
 * TallyWordRef:
 * @word: the word's bytes (need not be NUL-terminated; any bytes)
 * @len: its length in bytes, below 2^31
 *
 * A word to count, borrowed: tally_word_table_count_words() reads it and copies what it
 * keeps.
 */
typedef struct
{
  const char *word;
  gsize len;
} TallyWordRef;

/**
 * tally_word_table_count_words:
 * @table: a table
 * @words: (array length=n_words): the words to count, each adding 1 to its count
 * @n_words: how many
 * @max_size: stop once the table holds this many distinct words
 *
 * Counts @words in order, as tally_word_table_count (@table, word, len, 1) for each would,
 * until the table holds @max_size distinct words (checked after each word, so at least one
 * word is counted when @n_words > 0). One call per batch of words, with the
 * hash and the lookup inlined and each word's home slot prefetched 8 words ahead: a
 * combiner counting words as a tokenizer hands them over (tally count's workers) spends
 * less per word than with a call per word. Same thread rules as the table.
 *
 * Returns: how many words of @words were counted: @n_words, or fewer when the table
 *   reached @max_size distinct words (the caller empties it and counts the rest)
 */
gsize tally_word_table_count_words (TallyWordTable *table, const TallyWordRef *words, gsize n_words,
                                    gsize max_size);

/**
 * tally_word_table_prefetch:
 * @table: a table
 * @hash: the hash of a word about to be added or looked up
 *
 * Hints the CPU to load the word's home slot into cache. Adding a batch of pre-hashed
 * words runs about 1.5 times faster on a table much larger than the cache when each word's
 * slot is prefetched 8 words ahead. Changes nothing.
 */
void tally_word_table_prefetch (TallyWordTable *table, guint64 hash);

/**
 * tally_word_table_prefetch_key:
 * @table: a table
 * @hash: the hash of a word about to be added or looked up
 *
 * Reads the word's home slot and, when it holds a key with the word's hash bits, hints the
 * CPU to load that key's bytes: the second cache miss of a lookup. Meant for a pipeline
 * that calls tally_word_table_prefetch() for a word some words ahead of this call, and
 * this some words ahead of tally_word_table_add(). Changes nothing.
 */
void tally_word_table_prefetch_key (TallyWordTable *table, guint64 hash);

/**
 * tally_word_table_set:
 * @table: a table
 * @word: the word's bytes
 * @len: its length in bytes
 * @hash: tally_word_hash (@word, @len)
 * @count: its new count; 0 removes nothing but stores 0
 *
 * Sets the count of @word without marking it changed (for restoring state).
 */
void tally_word_table_set (TallyWordTable *table, const char *word, gsize len, guint64 hash,
                           guint64 count);

/**
 * tally_word_table_lookup:
 * @table: a table
 * @word: the word's bytes
 * @len: its length in bytes
 * @hash: tally_word_hash (@word, @len), or only its low 32 bits, as
 *   tally_word_table_foreach_hashed() gives them (the table keeps and compares no more)
 *
 * Returns: the count of @word, 0 if absent
 */
guint64 tally_word_table_lookup (TallyWordTable *table, const char *word, gsize len, guint64 hash);

/**
 * tally_word_table_get_size:
 * @table: a table
 *
 * Returns: the number of distinct words
 */
gsize tally_word_table_get_size (TallyWordTable *table);

/**
 * tally_word_table_get_total:
 * @table: a table
 *
 * Returns: the sum of all counts
 */
guint64 tally_word_table_get_total (TallyWordTable *table);

/**
 * tally_word_table_get_max_count:
 * @table: a table
 *
 * An upper bound of the counts, kept as counts are added without reading the slots: the
 * largest count the table has held since it was created or last cleared
 * (tally_word_table_clear(), tally_word_table_remove_all()). A count lowered by
 * tally_word_table_set() leaves it as it was. Any thread that may read @table.
 *
 * Returns: at least the largest count in @table, 0 for an empty table
 */
guint64 tally_word_table_get_max_count (TallyWordTable *table);

/**
 * tally_word_table_get_n_changed:
 * @table: a table
 *
 * Returns: the number of words changed since the last take_changes
 */
gsize tally_word_table_get_n_changed (TallyWordTable *table);

/**
 * tally_word_table_get_memory:
 * @table: a table
 *
 * Returns: the bytes the table has allocated (slots and arena chunks, as requested from
 *   malloc, without malloc's own overhead)
 */
gsize tally_word_table_get_memory (TallyWordTable *table);

/**
 * TallyWordTableFunc:
 * @word: the word's bytes, not NUL-terminated, valid until the table is changed or freed
 * @len: its length in bytes
 * @count: its count
 * @user_data: user data
 *
 * Called for each word by tally_word_table_foreach() and tally_word_table_take_changes().
 * It must not change the table.
 */
typedef void (*TallyWordTableFunc) (const char *word, gsize len, guint64 count, gpointer user_data);

/**
 * tally_word_table_foreach:
 * @table: a table, not changed during the call
 * @func: called once per word, in slot order (no meaningful order)
 * @user_data: data for @func
 */
void tally_word_table_foreach (TallyWordTable *table, TallyWordTableFunc func, gpointer user_data);

/**
 * TallyWordTableHashedFunc:
 * @word: the word's bytes, not NUL-terminated, valid until the table is changed or freed
 * @len: its length in bytes
 * @count: its count
 * @hash_lo: the low 32 bits of the hash the word was added with (tally_word_hash() for
 *   every table Tally fills)
 * @user_data: user data
 *
 * Called for each word by tally_word_table_foreach_hashed(). It must not change the table.
 */
typedef void (*TallyWordTableHashedFunc) (const char *word, gsize len, guint64 count,
                                          guint32 hash_lo, gpointer user_data);

/**
 * tally_word_table_foreach_hashed:
 * @table: a table, not changed during the call
 * @func: called once per word, in slot order (no meaningful order)
 * @user_data: data for @func
 *
 * As tally_word_table_foreach(), also giving the hash bits each slot keeps, so that a
 * caller summing tables does not hash every word again (tally_counts_sum_tables()).
 */
void tally_word_table_foreach_hashed (TallyWordTable *table, TallyWordTableHashedFunc func,
                                      gpointer user_data);

/**
 * tally_word_table_count_by_hash:
 * @table: a table
 * @bits: how many top bits of the stored hash bits (as tally_word_table_foreach_hashed()
 *   gives them) pick a group, 0 to 31: 2^@bits groups
 * @counts: (array): 2^@bits counters, one per group, added to
 *
 * Counts the words whose count is positive in each group, reading the slots only (no
 * word): how a caller summing tables sizes its partitions before it stages the words
 * (tally_counts_sum_tables()). O(slots), sequential.
 *
 * Returns: the number of words counted
 */
gsize tally_word_table_count_by_hash (TallyWordTable *table, guint bits, gsize *counts);

/**
 * tally_word_table_get_nth_count:
 * @table: a table
 * @n: which largest count, from 1
 *
 * The @n-th largest count of @table (counts that tie are each counted): what a caller
 * selecting a top @n across tables takes as a lower bound of its answer's counts
 * (tally_counts_new_from_tables()). Reads the slots only, in order, with a heap of @n
 * counts: O(slots x log @n) time, 8 x @n bytes. Any thread, while the table is not changed.
 *
 * Returns: that count; 0 if @table holds fewer than @n words
 */
guint64 tally_word_table_get_nth_count (TallyWordTable *table, gsize n);

/**
 * tally_word_table_foreach_at_least:
 * @table: a table, not changed during the call
 * @min_count: the smallest count visited
 * @func: called once per word counted at least @min_count times, in slot order
 * @user_data: data for @func
 *
 * As tally_word_table_foreach_hashed(), for the words of count @min_count or more only:
 * the slots are read in order and a word's bytes only when its count passes, so that
 * picking a few words by count out of millions costs a sequential read of 16 bytes per
 * slot. Any thread, while the table is not changed.
 *
 * Returns: the number of words visited
 */
gsize tally_word_table_foreach_at_least (TallyWordTable *table, guint64 min_count,
                                         TallyWordTableHashedFunc func, gpointer user_data);

/**
 * tally_word_table_count_absent:
 * @table: a table, not changed during the call
 * @others: (array length=n_others): other tables filled with the same hash function, not
 *   changed during the call
 * @n_others: their number
 *
 * Counts the words of positive count in @table that no table of @others counts (absent,
 * or there with count 0): summed over tables 0..k-1, each against the tables before it,
 * that is the number of distinct words of their union, without summing them
 * (tally_counts_new_from_tables()). Reads @table's slots in order and probes each of
 * @others by the stored hash bits (their home slots prefetched ahead), reading words only
 * where those bits match: O(slots + words x @n_others) probes. Any thread.
 *
 * Returns: the number of such words
 */
gsize tally_word_table_count_absent (TallyWordTable *table, TallyWordTable *const *others,
                                     guint n_others);

/**
 * tally_word_table_get_id:
 * @table: a table
 *
 * A number that names @table for the process's lifetime: never 0, never given to another
 * table, even after @table is freed (a 64-bit counter). With
 * tally_word_table_get_changes(), it tells a caller that figures it keeps about a table
 * are still those of its contents (tally_counts_new_from_tables()).
 *
 * Returns: the table's id
 */
guint64 tally_word_table_get_id (TallyWordTable *table);

/**
 * tally_word_table_get_changes:
 * @table: a table
 *
 * How many times @table has changed: each count added or set and each clear or
 * remove_all adds at least 1 (tally_word_table_take_changes(), which changes no count,
 * adds nothing). Equal values at two moments mean the same words and counts.
 *
 * Returns: the number of changes so far
 */
guint64 tally_word_table_get_changes (TallyWordTable *table);

/**
 * tally_word_table_take_changes:
 * @table: a table
 * @func: called once per word changed since the last call, with its current count
 * @user_data: data for @func
 *
 * Visits the changed words and clears their changed marks. O(slots) time.
 */
void tally_word_table_take_changes (TallyWordTable *table, TallyWordTableFunc func,
                                    gpointer user_data);

/**
 * tally_word_table_remove_all:
 * @table: a table
 *
 * Forgets every word and releases the memory (the table is as new).
 */
void tally_word_table_remove_all (TallyWordTable *table);

/**
 * tally_word_table_clear:
 * @table: a table
 *
 * Forgets every word but keeps the slot array at its size and the first 1 MiB of the key
 * arena, for a table that is filled and emptied again and again (a combiner): no
 * freeing, no page faults, no regrowing from 16 slots. The memory it keeps is what
 * tally_word_table_get_memory() reported before.
 */
void tally_word_table_clear (TallyWordTable *table);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyWordTable, tally_word_table_free)

G_END_DECLS
