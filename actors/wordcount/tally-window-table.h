/* tally-window-table.h — one store's counts by time: small tumbling buckets of word tables.
 *
 * Windowed counts are kept in *buckets*: tumbling, non-overlapping time ranges of a fixed
 * width ([windows] bucket, e.g. 1 minute), each a #TallyWordTable of the words of the
 * records whose timestamp falls in it. A window (a tumbling window of [windows] size, or
 * "the last 15 minutes") is a run of whole buckets and is answered by summing them, so
 * memory grows with buckets kept, never with the number of windows or slides asked for
 * (Flink keeps one copy of an element per sliding window it belongs to; this keeps one).
 *
 * A bucket is named by its start time in milliseconds since the Unix epoch, a multiple of
 * the bucket width. Which bucket a record goes to, when a window closes and which buckets
 * have expired is decided by #TallyWindowClock (tally-window-clock.h); this table only
 * stores.
 *
 * Plain data with no locks: one thread (one aggregator shard) at a time.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-counts.h"
#include "tally-word-table.h"

G_BEGIN_DECLS

typedef struct _TallyWindowTable TallyWindowTable;

/**
 * tally_window_table_new:
 *
 * Returns: (transfer full): an empty table; free it with tally_window_table_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWindowTable *tally_window_table_new (void);

/**
 * tally_window_table_free:
 * @table: (transfer full) (nullable): a table
 */
void tally_window_table_free (TallyWindowTable *table);

/**
 * tally_window_table_get_bucket:
 * @table: a table
 * @start_ms: the bucket's start (ms since the Unix epoch), a multiple of the bucket width
 * @create: whether to create the bucket when it does not exist
 *
 * The bucket starting at @start_ms. The bucket looked up last is kept at hand, so a run of
 * words of the same bucket costs one comparison each. O(log buckets) otherwise.
 *
 * Returns: (transfer none) (nullable): the bucket's word table, owned by @table and valid
 *   until the bucket expires or @table is freed; %NULL if absent and not @create
 */
TallyWordTable *tally_window_table_get_bucket (TallyWindowTable *table, gint64 start_ms,
                                               gboolean create);

/**
 * tally_window_table_expire:
 * @table: a table
 * @before_ms: buckets starting before this time (ms since the Unix epoch) are dropped
 *
 * Drops the expired buckets and frees their memory.
 *
 * Returns: the number of buckets dropped
 */
guint tally_window_table_expire (TallyWindowTable *table, gint64 before_ms);

/**
 * tally_window_table_sum:
 * @table: a table
 * @from_ms: the first time covered (ms since the Unix epoch, inclusive)
 * @to_ms: the end of the range (exclusive)
 * @into: the table to add the counts to
 *
 * Adds the counts of every bucket whose start lies in [@from_ms, @to_ms) to @into (words
 * are hashed again with tally_word_hash()). O(words of those buckets).
 *
 * Returns: the number of buckets summed
 */
guint tally_window_table_sum (TallyWindowTable *table, gint64 from_ms, gint64 to_ms,
                              TallyWordTable *into);

/**
 * tally_window_table_collect:
 * @tables: (array length=n_tables): window tables (the stores asked for), each once
 * @n_tables: their number
 * @from_ms: the first time covered (ms since the Unix epoch, inclusive)
 * @to_ms: the end of the range (exclusive)
 * @prefix: (nullable): keep only words starting with these bytes (NUL-terminated)
 * @entries: a GArray of #TallyWordCount to append one entry per distinct word to, with its
 *   count summed over the buckets starting in [@from_ms, @to_ms) of every table
 *
 * Sums without copying a word: the entries' words point into the buckets' tables and are
 * valid until one of @tables is changed. The buckets are summed by
 * tally_counts_sum_tables() (partitioned by hash, each partition in a small scratch index
 * that never grows): this is what answers "the last 15 minutes"
 * (tests/bench/bench-windows.c has the figures). Same thread rules as the tables.
 *
 * Returns: the number of buckets summed
 */
guint tally_window_table_collect (TallyWindowTable *const *tables, guint n_tables, gint64 from_ms,
                                  gint64 to_ms, const char *prefix, GArray *entries);

/**
 * TallyWindowBucketFunc:
 * @start_ms: a bucket's start (ms)
 * @bucket: its table
 * @user_data: user data
 *
 * Called by tally_window_table_expire_full() and tally_window_table_foreach_bucket().
 */
typedef void (*TallyWindowBucketFunc) (gint64 start_ms, TallyWordTable *bucket, gpointer user_data);

/**
 * tally_window_table_expire_full:
 * @table: a table
 * @before_ms: buckets starting before this are dropped
 * @func: called with each bucket before it is freed
 * @user_data: data for @func
 *
 * As tally_window_table_expire(), showing each dropped bucket first (a checkpoint writes
 * tombstones for its words).
 *
 * Returns: the number of buckets dropped
 */
guint tally_window_table_expire_full (TallyWindowTable *table, gint64 before_ms,
                                      TallyWindowBucketFunc func, gpointer user_data);

/**
 * tally_window_table_foreach_bucket:
 * @table: a table
 * @func: called with each bucket, oldest first; it must not add or drop buckets
 * @user_data: data for @func
 */
void tally_window_table_foreach_bucket (TallyWindowTable *table, TallyWindowBucketFunc func,
                                        gpointer user_data);

/**
 * tally_window_table_replace_bucket:
 * @table: a table
 * @start_ms: the bucket's start (ms)
 * @bucket: (transfer full): the new table of that bucket
 *
 * Puts @bucket in place of the bucket starting at @start_ms (a restore).
 */
void tally_window_table_replace_bucket (TallyWindowTable *table, gint64 start_ms,
                                        TallyWordTable *bucket);

/**
 * tally_window_table_get_n_buckets:
 * @table: a table
 *
 * Returns: the number of buckets held
 */
guint tally_window_table_get_n_buckets (TallyWindowTable *table);

/**
 * tally_window_table_get_oldest:
 * @table: a table
 *
 * Returns: the start (ms) of the oldest bucket held, or %G_MAXINT64 when there is none
 */
gint64 tally_window_table_get_oldest (TallyWindowTable *table);

/**
 * tally_window_table_get_memory:
 * @table: a table
 *
 * Returns: the bytes its buckets have allocated (as tally_word_table_get_memory() counts)
 */
gsize tally_window_table_get_memory (TallyWindowTable *table);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyWindowTable, tally_window_table_free)

G_END_DECLS
