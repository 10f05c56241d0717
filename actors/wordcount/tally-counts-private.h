/* tally-counts-private.h — building TallyCounts from borrowed entries, inside actors/.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-counts.h"
#include "tally-word-table.h"

G_BEGIN_DECLS

/*
 * tally_counts_new_from_entries:
 * @entries: (inout) (array length=n_entries): entries whose words are borrowed (need not
 *   be NUL-terminated); filtered and sorted in place
 * @n_entries: their number
 * @options: (nullable): filters
 *
 * Keeps the entries that pass @options, sorts them in snapshot order, applies the top-N
 * cut and copies the kept words into a new snapshot. O(n log n).
 *
 * Returns: (transfer full): the snapshot
 */
TallyCounts *tally_counts_new_from_entries (TallyWordCount *entries, gsize n_entries,
                                            const TallyCountsOptions *options);

/*
 * tally_counts_merge_disjoint:
 * @parts: (array length=n_parts): snapshots no two of which hold the same word (the
 *   replies of different shards)
 * @n_parts: their number
 * @options: (nullable): filters, applied while merging
 *
 * Merges sorted snapshots without re-sorting: O(total x n_parts) comparisons, stopping
 * after the top N kept entries. No word is copied: the result's entries point into the
 * parts' word bytes and the result holds a reference to every part until it is freed.
 *
 * Returns: (transfer full): the merged snapshot
 */
TallyCounts *tally_counts_merge_disjoint (TallyCounts *const *parts, guint n_parts,
                                          const TallyCountsOptions *options);

/*
 * tally_counts_collect_table:
 * @table: a table
 * @entries: a GArray of TallyWordCount to append the table's words to (borrowed: valid
 *   while @table is unchanged)
 * @options: (nullable): only @prefix and @min_count are applied here
 */
void tally_counts_collect_table (TallyWordTable *table, GArray *entries,
                                 const TallyCountsOptions *options);

/*
 * tally_counts_sum_tables:
 * @tables: (array length=n_tables): distinct tables, not changed during the call
 * @n_tables: their number
 * @options: (nullable): only @prefix and @min_count are applied here (@min_count to the
 *   sums)
 * @entries: a GArray of TallyWordCount to append to: one entry per distinct word whose
 *   sum over @tables is positive, its bytes borrowed from one of the tables (valid while
 *   the tables are unchanged, not NUL-terminated), in no meaningful order
 *
 * Sums tables filled with tally_word_hash() (the hash bits their slots keep are used,
 * no word is hashed again), partitioned by hash so that the summing stays in the CPU's
 * cache. Holds 32 bytes per word of the tables besides @entries while it runs.
 * O(words in the tables).
 *
 * Returns: the number of entries appended
 */
gsize tally_counts_sum_tables (TallyWordTable *const *tables, guint n_tables,
                               const TallyCountsOptions *options, GArray *entries);

/*
 * TallyCountsFigures:
 * @n_tables: how many tables the figures are of
 * @stamps: (array length=2*n_tables): each table's tally_word_table_get_id(), then its
 *   tally_word_table_get_changes() when the figures were taken
 * @n_words: the distinct words of positive count over those tables
 * @total: the sum of their counts (saturating at G_MAXINT64)
 *
 * What a snapshot of some tables says it was selected from, kept by their owner (an
 * aggregator shard) with the tables' stamps: while no table has changed, the next
 * filtered snapshot of the same tables need not sum every word to state them
 * (tally_counts_new_from_tables()). Zero-initialise; free with
 * tally_counts_figures_clear(). Not shared between threads.
 */
typedef struct
{
  guint n_tables;
  guint64 *stamps;
  gsize n_words;
  guint64 total;
} TallyCountsFigures;

/*
 * tally_counts_figures_set:
 * @figures: figures to replace
 * @tables: (array length=n_tables): the tables they are of, as they are now
 * @n_tables: their number
 * @n_words: the distinct words of positive count over @tables
 * @total: the sum of their counts
 *
 * Records @n_words and @total as the figures of @tables with their current stamps (for a
 * caller that summed every word another way, e.g. a full snapshot).
 */
void tally_counts_figures_set (TallyCountsFigures *figures, TallyWordTable *const *tables,
                               guint n_tables, gsize n_words, guint64 total);

/*
 * tally_counts_figures_clear:
 * @figures: figures
 *
 * Frees what @figures holds and empties them (they match no tables).
 */
void tally_counts_figures_clear (TallyCountsFigures *figures);

/*
 * tally_counts_new_from_tables:
 * @tables: (array length=n_tables): distinct tables filled with tally_word_hash(), not
 *   changed during the call
 * @n_tables: their number
 * @options: (nullable): filters, all of them applied (top, prefix, min_count, words)
 * @figures: (nullable) (inout): the figures of the last call over the same tables, or
 *   empty ones; updated whenever they do not match @tables as they are
 *
 * The snapshot of the sums of @tables with @options applied, as
 * tally_counts_new_from_entries() would build it from tally_counts_sum_tables()'s entries
 * (the same words, order and unfiltered figures).
 *
 * When the filters bound what can pass, only those words are summed: named words are
 * looked up in each table; with a @min_count or a top N (without a prefix) of threshold
 * t over k tables, the words counted at least ceil (t / k) times in one table, read from
 * the tables' slots, are the only candidates (t for a top N is the largest N-th count of
 * any one table; tally_word_table_get_nth_count()). The distinct words and total then
 * come from @figures when they are those of @tables as they are now (their stamps
 * match), else from probing each table's words in the tables before it
 * (tally_word_table_count_absent()), and @figures take them. A top 100 or a TPUT
 * threshold round over millions of words then costs a sequential read of the slots and
 * a probe per word (none with current figures) where summing every word takes a hundred
 * milliseconds or more. Where t / k is 1 or less (most words counted once), or more
 * than one word in 16 is named, every word is summed as below.
 *
 * Otherwise each partition's sums are filtered as they come, never holding the sums of
 * every word, and a top N of at most 1,024 is selected in a heap whose ties are decided
 * by the words' first 8 bytes, already at hand. @words (which
 * tally_counts_new_from_entries() ignores) is looked up by those 8 bytes too, behind an
 * 8 KiB bit filter, so naming a few thousand words costs about nothing per word summed.
 * Holds 32 bytes per word of the tables while it runs (the staging of
 * tally_counts_sum_tables()), plus the entries kept. O(words in the tables). @figures,
 * when given, then take the figures of this pass.
 *
 * Any thread; @figures belong to the caller's thread.
 *
 * Returns: (transfer full): the snapshot; its words are copies
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_new_from_tables (TallyWordTable *const *tables, guint n_tables,
                                           const TallyCountsOptions *options,
                                           TallyCountsFigures *figures);

G_END_DECLS
