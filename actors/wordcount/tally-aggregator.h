/* tally-aggregator.h — the article's WordCountAggregator: an actor that owns word counts.
 *
 * A TallyAggregator is one shard: it owns one TallyWordTable per *store* (a store is the
 * state of one input partition; store 0 for the CLI) and changes them only in its message
 * handlers, on its arbiter's thread, so the tables need no locks. Its messages count words
 * (AddWord, AddWords), answer snapshots (GetCounts), and move a partition's state in and
 * out (DropStore, RestoreStore, TakeChanges); each constructor below says what its
 * message does and replies.
 *
 * Most code uses TallyAggregatorHandle (tally-aggregator-handle.h), which shards words
 * over several aggregators and never shows these messages.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-actor.h"
#include "tally-counts.h"

G_BEGIN_DECLS

/**
 * TALLY_AGGREGATOR_ERROR:
 *
 * Error domain of the aggregator and its handle. Errors in this domain are from
 * #TallyAggregatorError.
 */
#define TALLY_AGGREGATOR_ERROR (tally_aggregator_error_quark ())

/**
 * TallyAggregatorError:
 * @TALLY_AGGREGATOR_ERROR_INVALID_WORD: a word given to tally_aggregator_handle_add_word()
 *   is empty or not valid UTF-8 (Unicode 15, section 3.9, as g_utf8_validate() checks).
 *
 * Errors of the aggregator. Failures to deliver messages are %TALLY_ACTOR_ERROR errors.
 */
typedef enum
{
  TALLY_AGGREGATOR_ERROR_INVALID_WORD,
} TallyAggregatorError;

GQuark tally_aggregator_error_quark (void);

#define TALLY_TYPE_AGGREGATOR (tally_aggregator_get_type ())
G_DECLARE_FINAL_TYPE (TallyAggregator, tally_aggregator, TALLY, AGGREGATOR, TallyActor)

/**
 * tally_aggregator_new:
 * @shard: this shard's index, below @n_shards
 * @n_shards: the number of shards words are spread over, at least 1
 *
 * Makes an aggregator (start it with tally_actor_start()). @shard and @n_shards only
 * decide which words of a RestoreStore it keeps.
 *
 * Returns: (transfer full): the new, unstarted actor
 */
G_GNUC_WARN_UNUSED_RESULT
TallyAggregator *tally_aggregator_new (guint shard, guint n_shards);

/* ---------------------------------------------------------------------------------------
 * Messages. Each constructor returns a message owned by the caller until it is sent.
 * ------------------------------------------------------------------------------------- */

/**
 * tally_aggregator_add_word_new:
 * @store: the store to count into
 * @word: the word (valid UTF-8, not empty; need not be NUL-terminated)
 * @len: its length in bytes
 *
 * An AddWord message (ask): counts one word in @store. Its reply is a `guint64 *` holding
 * the new count, freed with g_free().
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_add_word_new (guint32 store, const char *word, gsize len);

/**
 * tally_aggregator_add_words_new:
 * @store: the store to count into
 *
 * An empty AddWords message (tell); fill it with tally_aggregator_add_words_append().
 * Telling it counts every word it holds, in order, in @store; the words are hashed by the
 * sender, so the shard never hashes them again. No reply.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_add_words_new (guint32 store);

/**
 * tally_aggregator_add_words_append:
 * @message: an AddWords message not yet sent
 * @word: the word's bytes
 * @len: its length in bytes, below 2^31
 * @hash: tally_word_hash (@word, @len)
 *
 * Appends one word (len + 12 bytes in the message).
 */
void tally_aggregator_add_words_append (TallyMessage *message, const char *word, gsize len,
                                        guint64 hash);

/**
 * tally_aggregator_add_words_append_count:
 * @message: an AddWords message not yet sent
 * @word: the word's bytes
 * @len: its length in bytes, below 2^31
 * @hash: tally_word_hash (@word, @len)
 * @count: how many times to count it (0 appends nothing)
 *
 * Appends one word counted @count times (len + 20 bytes in the message): what a sender
 * that combines repeated words before telling them sends (a combiner, as in MapReduce).
 * Any thread that owns @message.
 */
void tally_aggregator_add_words_append_count (TallyMessage *message, const char *word, gsize len,
                                              guint64 hash, guint64 count);

/**
 * tally_aggregator_add_words_append_bucket:
 * @message: an AddWords message not yet sent
 * @bucket_start_ms: a time bucket's start (ms since the Unix epoch), or a negative value
 *   for none
 *
 * Appends a bucket marker (12 bytes): the words appended after it count in that time
 * bucket of the store (tally-window-table.h) as well as in its all-time table; after a
 * negative start, in the all-time table only. A batch with no marker counts in the all-time
 * table only, at no cost for windows. The thread that owns @message.
 */
void tally_aggregator_add_words_append_bucket (TallyMessage *message, gint64 bucket_start_ms);

/**
 * tally_aggregator_add_words_get_n_words:
 * @message: an AddWords message
 *
 * Returns: the number of words it holds, counting a word appended with a count that many
 *   times (saturating at %G_MAXSIZE)
 */
gsize tally_aggregator_add_words_get_n_words (TallyMessage *message);

/**
 * tally_aggregator_get_counts_new:
 * @stores: (array length=n_stores) (nullable): the stores to sum over, copied; %NULL for all
 * @n_stores: the number of entries of @stores
 * @options: (nullable): filters, copied
 *
 * A GetCounts message (ask). Its reply is a #TallyCounts (free with tally_counts_unref())
 * of the counts summed over @stores, filtered by @options: an owned copy (an
 * O(distinct words) copy plus an O(n log n) sort, done while the shard's other messages
 * wait).
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_get_counts_new (const guint32 *stores, guint n_stores,
                                               const TallyCountsOptions *options);

/**
 * tally_aggregator_get_window_counts_new:
 * @stores: (array length=n_stores) (nullable): the stores to sum over, copied; %NULL for all
 * @n_stores: the number of entries of @stores
 * @from_ms: the first time covered (ms since the Unix epoch, inclusive)
 * @to_ms: the end of the range (ms, exclusive)
 * @options: (nullable): filters, copied
 *
 * A GetWindowCounts message (ask): as GetCounts, over the time buckets of @stores that
 * start in [@from_ms, @to_ms) instead of the all-time tables. The buckets are summed into a
 * scratch table (O(words in them)) while the shard's other messages wait. Its reply is a
 * #TallyCounts (free with tally_counts_unref()).
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_get_window_counts_new (const guint32 *stores, guint n_stores,
                                                      gint64 from_ms, gint64 to_ms,
                                                      const TallyCountsOptions *options);

/**
 * tally_aggregator_expire_buckets_new:
 * @before_ms: buckets starting before this (ms since the Unix epoch) are dropped
 *
 * An ExpireBuckets message (tell or ask): drops the expired time buckets of every store. No
 * reply value.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_expire_buckets_new (gint64 before_ms);

/**
 * TallyBucketChanges:
 * @start_ms: the bucket's start (ms since the Unix epoch)
 * @expired: whether the bucket was dropped (its words are to be deleted: tombstones)
 * @counts: the words of the bucket changed since the last TakeWindowChanges with their
 *   counts in it, or, for an expired bucket, every word it held
 *
 * One bucket's part of a TakeWindowChanges reply (a checkpoint of windowed counts). Free
 * with tally_bucket_changes_free().
 */
typedef struct
{
  gint64 start_ms;
  gboolean expired;
  TallyCounts *counts;
} TallyBucketChanges;

/**
 * tally_bucket_changes_free:
 * @changes: (transfer full) (nullable): changes
 */
void tally_bucket_changes_free (TallyBucketChanges *changes);

/**
 * tally_aggregator_take_window_changes_new:
 * @store: the store
 * @expire_before_ms: buckets starting before this (ms) are dropped and reported expired;
 *   %G_MININT64 drops none
 *
 * A TakeWindowChanges message (ask): drops the expired buckets of @store and takes the
 * changes of the others (the changed marks are cleared). Its reply is a #GPtrArray of
 * #TallyBucketChanges (free with g_ptr_array_unref()), expired buckets first, then by
 * start; buckets without changes are left out.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_take_window_changes_new (guint32 store, gint64 expire_before_ms);

/**
 * tally_aggregator_restore_bucket_new:
 * @store: the store
 * @start_ms: the bucket's start (ms)
 * @counts: the bucket's counts; a reference is taken
 *
 * A RestoreBucket message (ask or tell): replaces the bucket of @store starting at
 * @start_ms with the words of @counts this shard owns, not marked changed. No reply value.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_restore_bucket_new (guint32 store, gint64 start_ms,
                                                   TallyCounts *counts);

/**
 * tally_aggregator_drop_store_new:
 * @store: the store to forget
 *
 * A DropStore message (ask or tell): forgets @store, its time buckets too. No reply value.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_drop_store_new (guint32 store);

/**
 * tally_aggregator_restore_store_new:
 * @store: the store to replace
 * @counts: the restored counts; a reference is taken
 *
 * A RestoreStore message (ask or tell): replaces @store with the words of @counts that
 * this shard owns (by tally_word_shard()), not marked changed. No reply value.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_restore_store_new (guint32 store, TallyCounts *counts);

/**
 * tally_aggregator_take_changes_new:
 * @store: the store
 *
 * A TakeChanges message (ask). Its reply is a #TallyCounts (free with tally_counts_unref())
 * of the current counts of the words of @store changed since the last TakeChanges; the
 * changed set is cleared.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_take_changes_new (guint32 store);

/**
 * TallyAggregatorStoreStats:
 * @store: the store (input partition number)
 * @words: distinct words of the store held by this shard
 * @total: the sum of their counts
 *
 * One shard's figures for one store, the reply of GetStats.
 */
typedef struct
{
  guint32 store;
  guint64 words;
  guint64 total;
} TallyAggregatorStoreStats;

/**
 * tally_aggregator_get_stats_new:
 *
 * A GetStats message: costs O(stores), not O(words), so health checks and metrics may
 * send it at any time. Its reply is a #GArray of #TallyAggregatorStoreStats, one per
 * store the shard holds (free with g_array_unref()).
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_get_stats_new (void);

/**
 * tally_aggregator_stall_new:
 * @ms: how long the shard's thread sleeps, in milliseconds
 *
 * A Stall message, for tests only: the shard handles nothing else for @ms, as a stuck
 * shard would (the health check must then fail). No reply value.
 *
 * Returns: (transfer full): the message
 */
TallyMessage *tally_aggregator_stall_new (guint ms);

G_END_DECLS
