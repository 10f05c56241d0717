/* tally-counts.h — immutable snapshots of word counts, and the builder that makes them.
 *
 * A TallyCounts is what GetCounts answers and what a snapshot publishes: a refcounted,
 * immutable array of { word, length, count } entries sorted by count (most frequent
 * first), ties broken by the word's bytes (memcmp order, a shorter word first when one is
 * a prefix of the other). Once built it never changes, so it may be shared between
 * threads and actors without locks, like a sealed JsonNode.
 *
 * A TallyCountsBuilder collects (word, count) pairs and sums duplicates; it is how the
 * aggregator handle merges the replies of several shards, and how a snapshot reader merges
 * the parts sent by several Tally instances. Filters (top N, prefix, minimum count) are
 * applied when a snapshot is built, after duplicates are summed.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * TallyWordCount:
 * @word: the word, NUL-terminated, valid UTF-8, never empty; owned by the #TallyCounts
 * @len: length of @word in bytes, not counting the terminating NUL
 * @count: how many times the word was counted, at least 1
 *
 * One entry of a #TallyCounts.
 */
typedef struct
{
  const char *word;
  guint32 len;
  guint64 count;
} TallyWordCount;

/**
 * TallyCountsOptions:
 * @top: keep only the @top most frequent words (after the other filters, in the sort
 *   order of #TallyCounts); 0 keeps all
 * @prefix: (nullable): keep only words whose bytes start with these bytes (a plain byte
 *   prefix, no case folding or normalization); %NULL or "" keeps all
 * @min_count: keep only words counted at least this many times; 0 or 1 keeps all
 * @words: (nullable) (array zero-terminated=1): keep only these words (NUL-terminated
 *   byte strings; one named twice counts once); %NULL keeps all. Applied where a snapshot
 *   is cut from the shards' tables (GetCounts, tally_aggregator_handle_get_counts_async())
 *   and nowhere else: tally_counts_options_match(), tally_counts_filter() and the merges
 *   ignore it, so that a long list is never searched once per entry
 *
 * Filters applied when a snapshot is built. They mirror the options a snapshot request
 * record may carry (`top`, `prefix`, `min_count`, `words`). A zero-initialized struct, or
 * a %NULL pointer wherever options are accepted, means "everything". The caller owns the
 * struct, @prefix and @words; functions that keep options past their return copy them
 * (tally_counts_options_copy()).
 */
typedef struct
{
  guint64 top;
  const char *prefix;
  guint64 min_count;
  const char *const *words;
} TallyCountsOptions;

/**
 * tally_counts_options_copy:
 * @src: (nullable): filters to copy, %NULL for none
 * @dest: (out caller-allocates): where the copy goes
 *
 * Makes @dest a deep copy of @src (a zeroed struct for %NULL): @dest owns copies of
 * @prefix and @words, freed by tally_counts_options_clear(). Any thread.
 */
void tally_counts_options_copy (const TallyCountsOptions *src, TallyCountsOptions *dest);

/**
 * tally_counts_options_clear:
 * @options: filters filled by tally_counts_options_copy()
 *
 * Frees the copies @options owns and zeroes it. Any thread.
 */
void tally_counts_options_clear (TallyCountsOptions *options);

typedef struct _TallyCounts TallyCounts;
typedef struct _TallyCountsBuilder TallyCountsBuilder;

/**
 * tally_counts_options_match:
 * @options: (nullable): filters, %NULL for none
 * @word: a word
 * @len: its length in bytes
 * @count: its count
 *
 * Says whether an entry passes the @prefix and @min_count filters of @options (@top is
 * applied to whole snapshots, not to single entries). Any thread.
 *
 * Returns: %TRUE if the entry is kept
 */
gboolean tally_counts_options_match (const TallyCountsOptions *options, const char *word, gsize len,
                                     guint64 count);

/**
 * tally_counts_options_is_empty:
 * @options: (nullable): filters, %NULL for none
 *
 * Says whether @options keeps every word: no @top, no (or an empty) @prefix, a @min_count
 * of at most 1, no @words. Any thread.
 *
 * Returns: %TRUE if @options filters nothing
 */
gboolean tally_counts_options_is_empty (const TallyCountsOptions *options);

/**
 * tally_counts_new_empty:
 *
 * Returns: (transfer full): a snapshot with no words
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_new_empty (void);

/**
 * tally_counts_ref:
 * @counts: a snapshot
 *
 * Takes a reference (atomic). Any thread.
 *
 * Returns: (transfer full): @counts
 */
TallyCounts *tally_counts_ref (TallyCounts *counts);

/**
 * tally_counts_unref:
 * @counts: (transfer full): a snapshot
 *
 * Drops a reference; the last one frees the entries and their words. Any thread.
 */
void tally_counts_unref (TallyCounts *counts);

/**
 * tally_counts_get_n_words:
 * @counts: a snapshot
 *
 * Returns: the number of distinct words (entries) in @counts
 */
gsize tally_counts_get_n_words (TallyCounts *counts);

/**
 * tally_counts_get_total:
 * @counts: a snapshot
 *
 * Returns: the sum of the counts of its entries (words counted, duplicates included),
 *   saturated at %G_MAXINT64 (the largest integer a JSON number holds in json-glib, and the
 *   largest count a #TallyWordTable keeps), so a snapshot never publishes a negative total
 */
guint64 tally_counts_get_total (TallyCounts *counts);

/**
 * tally_counts_get_n_words_unfiltered:
 * @counts: a snapshot
 *
 * The distinct words of the counts @counts was selected from, before the @top, @prefix and
 * @min_count of #TallyCountsOptions: a GetCounts with a top N answers the N words and, here,
 * how many words the stores it summed held, so that a snapshot of the top N can still say
 * how many distinct words the instance counted. The sum of the parts' for a merge of
 * disjoint parts (shards); tally_counts_filter() keeps its input's. Equal to
 * tally_counts_get_n_words() when nothing was filtered. Any thread.
 *
 * Returns: the number of distinct words before filtering
 */
gsize tally_counts_get_n_words_unfiltered (TallyCounts *counts);

/**
 * tally_counts_get_total_unfiltered:
 * @counts: a snapshot
 *
 * As tally_counts_get_n_words_unfiltered(), for the total: the sum of the counts before
 * filtering, saturated at %G_MAXINT64 as tally_counts_get_total() is. Any thread.
 *
 * Returns: the total before filtering
 */
guint64 tally_counts_get_total_unfiltered (TallyCounts *counts);

/**
 * tally_counts_get_entries:
 * @counts: a snapshot
 * @n_entries: (out) (optional): the number of entries
 *
 * Returns the entries, most frequent first, ties by word bytes ascending. They stay valid
 * while a reference to @counts is held. Any thread.
 *
 * Returns: (transfer none) (array length=n_entries): the entries
 */
const TallyWordCount *tally_counts_get_entries (TallyCounts *counts, gsize *n_entries);

/**
 * tally_counts_lookup:
 * @counts: a snapshot
 * @word: a word (need not be NUL-terminated)
 * @len: its length in bytes
 *
 * Finds the count of @word. The first lookup builds an index of the entries (O(n) time,
 * 4 bytes per entry, kept with the snapshot; threads racing on the first lookup may each
 * build one, and one is kept); later lookups are O(1) on average. Any thread, lock-free.
 *
 * Returns: the count of @word, 0 if it is absent
 */
guint64 tally_counts_lookup (TallyCounts *counts, const char *word, gsize len);

/**
 * tally_counts_filter:
 * @counts: a snapshot
 * @options: (nullable): filters
 *
 * Makes the snapshot of the entries of @counts that pass @options. Costs O(n) plus copying
 * the kept words; returns a new reference to @counts itself when nothing is filtered out.
 *
 * Returns: (transfer full): the filtered snapshot
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_filter (TallyCounts *counts, const TallyCountsOptions *options);

/**
 * tally_counts_builder_new:
 *
 * Starts an empty builder. A builder belongs to one thread at a time.
 *
 * Returns: (transfer full): a builder; free it with tally_counts_builder_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCountsBuilder *tally_counts_builder_new (void);

/**
 * tally_counts_builder_free:
 * @builder: (transfer full) (nullable): a builder
 */
void tally_counts_builder_free (TallyCountsBuilder *builder);

/**
 * tally_counts_builder_add:
 * @builder: a builder
 * @word: a word: valid UTF-8, no NUL byte, not empty (need not be NUL-terminated)
 * @len: its length in bytes, at least 1
 * @count: how many times to count it; adding the same word again sums the counts
 *
 * Adds @count to the count of @word: duplicates are summed, which is how snapshots from
 * several shards, instances or parts are merged. A word that is not valid UTF-8, contains
 * NUL or is empty is a programmer error (g_return_if_fail). A count of 0 is ignored.
 */
void tally_counts_builder_add (TallyCountsBuilder *builder, const char *word, gsize len,
                               guint64 count);

/**
 * tally_counts_builder_set_max:
 * @builder: a builder
 * @word: a word: valid UTF-8, no NUL byte, not empty (need not be NUL-terminated)
 * @len: its length in bytes, at least 1
 * @count: a count of @word
 *
 * Makes the count of @word @count if that is more than it has: for state whose counts only
 * grow, read back record by record (a changelog, where a word's last record is its
 * largest count), built in one table entry per word. Same errors as
 * tally_counts_builder_add().
 */
void tally_counts_builder_set_max (TallyCountsBuilder *builder, const char *word, gsize len,
                                   guint64 count);

/**
 * tally_counts_builder_add_counts:
 * @builder: a builder
 * @counts: a snapshot whose every entry is added to @builder
 *
 * Same as tally_counts_builder_add() for each entry of @counts.
 */
void tally_counts_builder_add_counts (TallyCountsBuilder *builder, TallyCounts *counts);

/**
 * tally_counts_builder_get_n_words:
 * @builder: a builder
 *
 * Returns: the number of distinct words added so far
 */
gsize tally_counts_builder_get_n_words (TallyCountsBuilder *builder);

/**
 * tally_counts_builder_end:
 * @builder: a builder
 *
 * Builds the snapshot of everything added (copying the words into it and sorting:
 * O(n log n) time, 24 bytes per entry plus each word and its NUL) and empties @builder, which
 * may then be reused.
 *
 * Returns: (transfer full): the snapshot
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_builder_end (TallyCountsBuilder *builder);

/**
 * tally_counts_builder_end_filtered:
 * @builder: a builder
 * @options: (nullable): filters applied after duplicates are summed
 *
 * Same as tally_counts_builder_end(), keeping only the entries that pass @options.
 *
 * Returns: (transfer full): the snapshot
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_builder_end_filtered (TallyCountsBuilder *builder,
                                                const TallyCountsOptions *options);

/**
 * TallyCountsSequence:
 *
 * Builds a #TallyCounts from entries that already come in snapshot order, each word once:
 * the parts of one instance's snapshot read in part order (tally_snapshot_encode() writes
 * them so). No hashing and no sort, unlike #TallyCountsBuilder: an append checks the order
 * against the entry before it and refuses an entry out of order. The words are not copied:
 * the caller hands over the blocks of bytes they point into. One thread at a time.
 */
typedef struct _TallyCountsSequence TallyCountsSequence;

/**
 * tally_counts_sequence_new:
 * @expected: how many entries will probably be appended (space reserved for up to 64 M of
 *   them; 0 if unknown)
 *
 * Returns: (transfer full): an empty sequence
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCountsSequence *tally_counts_sequence_new (gsize expected);

/**
 * tally_counts_sequence_append:
 * @sequence: a sequence
 * @word: (array length=len): a word, valid UTF-8 (not checked here), NUL-terminated at
 *   @len, inside a block given (before or after) to tally_counts_sequence_keep_block()
 * @len: its length in bytes, 1 .. %G_MAXINT32
 * @count: its count, at least 1
 *
 * Appends an entry if it comes strictly after the last one in snapshot order (count
 * descending, then word bytes ascending). A word listed twice with the same count is out
 * of order; one listed twice with different counts is not detected here (the snapshot
 * format lists each word once per snapshot).
 *
 * Returns: %TRUE if appended; %FALSE if out of order (nothing appended; the sequence is
 *   unchanged and may still be ended or freed)
 */
gboolean tally_counts_sequence_append (TallyCountsSequence *sequence, const char *word, gsize len,
                                       guint64 count);

/**
 * tally_counts_sequence_get_length:
 * @sequence: a sequence
 *
 * Returns: the number of entries appended
 */
gsize tally_counts_sequence_get_length (TallyCountsSequence *sequence);

/**
 * tally_counts_sequence_truncate:
 * @sequence: a sequence
 * @length: at most tally_counts_sequence_get_length()
 *
 * Drops the entries after the first @length (O(@length): the total is summed again), so
 * that a reader can take back a part of which a later entry was out of order.
 */
void tally_counts_sequence_truncate (TallyCountsSequence *sequence, gsize length);

/**
 * tally_counts_sequence_keep_block:
 * @sequence: a sequence
 * @block: (transfer full): bytes appended words point into, freed with g_free() when the
 *   sequence, or the snapshot it ends in, is freed
 */
void tally_counts_sequence_keep_block (TallyCountsSequence *sequence, char *block);

/**
 * tally_counts_sequence_add_to_builder:
 * @sequence: a sequence
 * @builder: a builder
 *
 * Adds every entry appended so far to @builder (its words copied there), for a reader that
 * finds its entries out of order and falls back to summing and sorting.
 */
void tally_counts_sequence_add_to_builder (TallyCountsSequence *sequence,
                                           TallyCountsBuilder *builder);

/**
 * tally_counts_sequence_end:
 * @sequence: (transfer full): a sequence
 *
 * Returns: (transfer full): a snapshot of the entries appended, in that order, owning the
 *   blocks kept; @sequence is freed
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_sequence_end (TallyCountsSequence *sequence);

/**
 * tally_counts_sequence_free:
 * @sequence: (transfer full) (nullable): a sequence, and the blocks it kept
 */
void tally_counts_sequence_free (TallyCountsSequence *sequence);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyCounts, tally_counts_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyCountsSequence, tally_counts_sequence_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyCountsBuilder, tally_counts_builder_free)

G_END_DECLS
