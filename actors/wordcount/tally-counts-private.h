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
 * tally_counts_new_from_tables:
 * @tables: (array length=n_tables): distinct tables filled with tally_word_hash(), not
 *   changed during the call
 * @n_tables: their number
 * @options: (nullable): filters, all of them applied (top, prefix, min_count, words)
 *
 * The snapshot of the sums of @tables with @options applied, as
 * tally_counts_new_from_entries() would build it from tally_counts_sum_tables()'s entries
 * (the same words, order and unfiltered figures), without ever holding the sums of every
 * word: each partition's sums are filtered as they come, and a top N of at most 1,024 is
 * selected in a heap whose ties are decided by the words' first 8 bytes, already at hand.
 * @words (which tally_counts_new_from_entries() ignores) is looked up by those 8 bytes too,
 * behind an 8 KiB bit filter, so naming a few thousand words costs about nothing per word
 * summed.
 * Holds 32 bytes per word of the tables while it runs (the staging of
 * tally_counts_sum_tables()), plus the entries kept. O(words in the tables). Any thread.
 *
 * Returns: (transfer full): the snapshot; its words are copies
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCounts *tally_counts_new_from_tables (TallyWordTable *const *tables, guint n_tables,
                                           const TallyCountsOptions *options);

G_END_DECLS
