/* tally-aggregator-handle.h — the article's AggregatorHandle: N aggregator shards behind
 * three verbs (new, add_word, get_counts), plus what the Kafka source needs.
 *
 * tally_aggregator_handle_new() starts N TallyAggregator actors, each on its own arbiter
 * (thread), so counting runs on several cores while each table has one owner and no lock.
 * A word always goes to the same shard, picked from a fixed hash of its bytes that the
 * shard's table reuses (tally-word-hash.h). Words in bulk go through a #TallyWordBatcher.
 *
 * Counts belong to *stores*, 32-bit ids chosen by the caller (the Kafka source uses the
 * input partition; `tally words` and `tally count` use store 0), so one partition's counts
 * can be dropped, restored and checkpointed on their own. Synchronous functions block until
 * every shard answered and fail with %TALLY_ACTOR_ERROR_WOULD_DEADLOCK on a shard's own
 * thread; main-loop code uses the _async forms, whose callbacks run on the caller's
 * thread-default main context, as GTask's do.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-actor.h"
#include "tally-aggregator.h"
#include "tally-counts.h"
#include "tally-word-hash.h"
#include "tally-word-table.h"
/* Not needed here: included so that code that uses the handle with a batcher (the Kafka
 * source, the librdkafka plugin) gets both. tally-word-batcher.h does not include this
 * header, so there is no cycle. */
#include "tally-word-batcher.h"

G_BEGIN_DECLS

typedef struct _TallyAggregatorHandle TallyAggregatorHandle;

/**
 * tally_aggregator_handle_new:
 * @n_shards: number of aggregator shards, at least 1; each runs on its own arbiter thread
 *   (named "tally-agg-<i>")
 * @mailbox_capacity: capacity of each shard's mailbox in messages; 0 means unbounded
 *
 * Starts the shards: the article's `AggregatorHandle::new()`. Any thread.
 *
 * Returns: (transfer full): the handle; the last unref stops the shards
 */
G_GNUC_WARN_UNUSED_RESULT
TallyAggregatorHandle *tally_aggregator_handle_new (guint n_shards, guint mailbox_capacity);

/**
 * tally_aggregator_handle_ref:
 * @handle: a handle
 *
 * Returns: (transfer full): @handle
 */
TallyAggregatorHandle *tally_aggregator_handle_ref (TallyAggregatorHandle *handle);

/**
 * tally_aggregator_handle_unref:
 * @handle: (transfer full): a handle
 *
 * Drops a reference; the last one calls tally_aggregator_handle_stop(), so it must not be
 * dropped on a shard's own thread.
 */
void tally_aggregator_handle_unref (TallyAggregatorHandle *handle);

/**
 * tally_aggregator_handle_stop:
 * @handle: a handle
 *
 * Stops every shard (each handles everything sent to it before) and joins their arbiter
 * threads; later sends fail with %TALLY_ACTOR_ERROR_CLOSED. Idempotent. Must not be
 * called from a shard's own thread.
 */
void tally_aggregator_handle_stop (TallyAggregatorHandle *handle);

/**
 * tally_aggregator_handle_get_n_shards:
 * @handle: a handle
 *
 * Returns: the number of shards
 */
guint tally_aggregator_handle_get_n_shards (TallyAggregatorHandle *handle);

/**
 * tally_aggregator_handle_shard_for:
 * @handle: a handle
 * @word: a word (need not be NUL-terminated)
 * @len: its length in bytes
 *
 * Says which shard counts @word: tally_word_shard() of its tally_word_hash()
 * (tally-word-hash.h). Fixed for a given number of shards; any thread.
 *
 * Returns: a shard index below tally_aggregator_handle_get_n_shards()
 */
guint tally_aggregator_handle_shard_for (TallyAggregatorHandle *handle, const char *word,
                                         gsize len);

/**
 * tally_aggregator_handle_get_shard_address:
 * @handle: a handle
 * @index: a shard index below the number of shards
 *
 * The address of one shard, for sending it TallyAggregator messages directly (see
 * tally-aggregator.h) or watching its mailbox length.
 *
 * Returns: (transfer none): the shard's address
 */
TallyAddress *tally_aggregator_handle_get_shard_address (TallyAggregatorHandle *handle,
                                                         guint index);

/**
 * tally_aggregator_handle_add_word:
 * @handle: a handle
 * @word: a NUL-terminated word: valid UTF-8, not empty
 * @error: return location for %TALLY_AGGREGATOR_ERROR_INVALID_WORD (not UTF-8, or empty),
 *   or an error of tally_address_ask_sync() (%TALLY_ACTOR_ERROR_CLOSED, ...)
 *
 * Counts @word once in store 0 of its shard and waits for the answer: the article's
 * `add_word()`, an AddWord ask. One round trip per word; for throughput use a
 * #TallyWordBatcher. Blocks; not from a shard's thread.
 *
 * Returns: the word's new count in store 0 (at least 1), or 0 with @error set
 */
guint64 tally_aggregator_handle_add_word (TallyAggregatorHandle *handle, const char *word,
                                          GError **error);

/**
 * tally_aggregator_handle_get_counts:
 * @handle: a handle
 * @options: (nullable): filters (top, prefix, min_count), applied after summing over stores
 * @error: return location for an error of tally_address_ask_sync()
 *
 * The article's `get_counts()`: asks every shard for GetCounts over all stores and merges
 * the replies.
 *
 * Consistent cut: messages from one sender thread to one actor are handled in the order
 * sent (see tally-actor.h), and every shard is asked, so the snapshot reflects every word
 * that the calling thread told (add_word, or a batcher flush that succeeded) before the
 * call, in every shard. Words told by other threads are included if their messages reached
 * the shard first; for a cut across several senders, have each sender send its words then
 * its own barrier.
 *
 * Cost: the snapshot is an owned copy, not a view. Each shard copies its counts into a
 * #TallyCounts (24 bytes per entry plus each word and its NUL; O(n log n) to sort) while
 * its other messages wait (tests/bench/bench-word-table.c times it); the merge of the shard
 * replies copies and sorts once more on the calling thread. Blocks; not from a shard's
 * thread.
 *
 * Returns: (transfer full): the counts summed over all stores of all shards, or %NULL
 */
TallyCounts *tally_aggregator_handle_get_counts (TallyAggregatorHandle *handle,
                                                 const TallyCountsOptions *options, GError **error);

/**
 * tally_aggregator_handle_get_counts_async:
 * @handle: a handle
 * @options: (nullable): filters, copied
 * @cancellable: (nullable): abandons the wait
 * @callback: called on the caller's thread-default main context when all shards answered
 * @user_data: data for @callback
 *
 * The asynchronous form of tally_aggregator_handle_get_counts(): the asks to all shards
 * are sent before this returns (into a full mailbox they wait for room in order, and a
 * later try_tell from this thread cannot overtake them), so the cut is taken at the call.
 */
void tally_aggregator_handle_get_counts_async (TallyAggregatorHandle *handle,
                                               const TallyCountsOptions *options,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_aggregator_handle_get_counts_finish:
 * @handle: a handle
 * @result: the result given to the callback
 * @error: return location for an error of tally_address_ask_finish()
 *
 * Returns: (transfer full): the merged counts, or %NULL
 */
TallyCounts *tally_aggregator_handle_get_counts_finish (TallyAggregatorHandle *handle,
                                                        GAsyncResult *result, GError **error);

/**
 * tally_aggregator_handle_get_store_counts:
 * @handle: a handle
 * @stores: (array length=n_stores) (nullable): the stores to sum over; %NULL for all
 * @n_stores: the number of entries of @stores
 * @options: (nullable): filters, applied after summing over the stores
 * @error: return location for an error of tally_address_ask_sync()
 *
 * Like tally_aggregator_handle_get_counts(), summing only over @stores (for a snapshot of
 * the input partitions an instance owns). Unknown stores count as empty. Blocks.
 *
 * Returns: (transfer full): the counts, or %NULL
 */
TallyCounts *tally_aggregator_handle_get_store_counts (TallyAggregatorHandle *handle,
                                                       const guint32 *stores, guint n_stores,
                                                       const TallyCountsOptions *options,
                                                       GError **error);

/**
 * tally_aggregator_handle_get_store_counts_async:
 * @handle: a handle
 * @stores: (array length=n_stores) (nullable): the stores, copied; %NULL for all
 * @n_stores: the number of entries of @stores
 * @options: (nullable): filters, copied
 * @cancellable: (nullable): abandons the wait
 * @callback: called on the caller's thread-default main context
 * @user_data: data for @callback
 *
 * The asynchronous form of tally_aggregator_handle_get_store_counts(); finish it with
 * tally_aggregator_handle_get_counts_finish().
 */
void tally_aggregator_handle_get_store_counts_async (TallyAggregatorHandle *handle,
                                                     const guint32 *stores, guint n_stores,
                                                     const TallyCountsOptions *options,
                                                     GCancellable *cancellable,
                                                     GAsyncReadyCallback callback,
                                                     gpointer user_data);

/**
 * tally_aggregator_handle_drop_store:
 * @handle: a handle
 * @store: a store id (an input partition)
 * @error: return location for an error of tally_address_ask_sync()
 *
 * Forgets every count of @store in every shard, and its pending changes (a partition was
 * revoked: take_changes first if its last changes must be checkpointed). Words told into
 * @store by this thread before the call are dropped too; later ones start it afresh.
 * Blocks until all shards have dropped it.
 *
 * Returns: %TRUE on success
 */
gboolean tally_aggregator_handle_drop_store (TallyAggregatorHandle *handle, guint32 store,
                                             GError **error);

/**
 * tally_aggregator_handle_drop_store_async:
 * @handle: a handle
 * @store: a store id
 * @cancellable: (nullable): abandons the wait
 * @callback: called on the caller's thread-default main context
 * @user_data: data for @callback
 *
 * The asynchronous form of tally_aggregator_handle_drop_store(); the messages are sent
 * before this returns. Finish with tally_aggregator_handle_store_op_finish().
 */
void tally_aggregator_handle_drop_store_async (TallyAggregatorHandle *handle, guint32 store,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_aggregator_handle_restore_store:
 * @handle: a handle
 * @store: a store id (an input partition)
 * @counts: the counts restored from the changelog; each shard keeps the words it owns
 * @error: return location for an error of tally_address_ask_sync()
 *
 * Replaces the counts of @store with @counts (a partition was assigned and its changelog
 * read back). Restored words are not marked changed: take_changes will not return them
 * until they are counted again. Blocks until all shards have loaded their share.
 *
 * Returns: %TRUE on success
 */
gboolean tally_aggregator_handle_restore_store (TallyAggregatorHandle *handle, guint32 store,
                                                TallyCounts *counts, GError **error);

/**
 * tally_aggregator_handle_restore_store_async:
 * @handle: a handle
 * @store: a store id
 * @counts: the restored counts; a reference is taken
 * @cancellable: (nullable): abandons the wait
 * @callback: called on the caller's thread-default main context
 * @user_data: data for @callback
 *
 * The asynchronous form of tally_aggregator_handle_restore_store(). Finish with
 * tally_aggregator_handle_store_op_finish().
 */
void tally_aggregator_handle_restore_store_async (TallyAggregatorHandle *handle, guint32 store,
                                                  TallyCounts *counts, GCancellable *cancellable,
                                                  GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_aggregator_handle_store_op_finish:
 * @handle: a handle
 * @result: the result given to the callback of drop_store_async or restore_store_async
 * @error: return location for an error of tally_address_ask_finish()
 *
 * Returns: %TRUE if every shard did it
 */
gboolean tally_aggregator_handle_store_op_finish (TallyAggregatorHandle *handle,
                                                  GAsyncResult *result, GError **error);

/**
 * tally_aggregator_handle_take_changes:
 * @handle: a handle
 * @store: a store id (an input partition)
 * @error: return location for an error of tally_address_ask_sync()
 *
 * Returns the current counts, in @store, of the words of @store counted since the last
 * take_changes (or since the store was created, restored or dropped), and clears that set
 * in every shard: what a checkpoint writes to the changelog. It reflects every word this
 * thread told into @store before the call. If the checkpoint fails, the caller must
 * keep the returned counts and write them again (they are not marked changed again).
 * Blocks.
 *
 * Returns: (transfer full): the changed words with their current counts, or %NULL
 */
TallyCounts *tally_aggregator_handle_take_changes (TallyAggregatorHandle *handle, guint32 store,
                                                   GError **error);

/**
 * tally_aggregator_handle_take_changes_async:
 * @handle: a handle
 * @store: a store id
 * @cancellable: (nullable): abandons the wait (the changes are then lost to the caller:
 *   do not cancel a checkpoint)
 * @callback: called on the caller's thread-default main context
 * @user_data: data for @callback
 *
 * The asynchronous form of tally_aggregator_handle_take_changes(); finish it with
 * tally_aggregator_handle_get_counts_finish().
 */
void tally_aggregator_handle_take_changes_async (TallyAggregatorHandle *handle, guint32 store,
                                                 GCancellable *cancellable,
                                                 GAsyncReadyCallback callback, gpointer user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAggregatorHandle, tally_aggregator_handle_unref)

/**
 * tally_aggregator_handle_get_window_counts_async:
 * @handle: a handle
 * @stores: (array length=n_stores) (nullable): the stores to sum over; %NULL for all
 * @n_stores: the number of entries of @stores
 * @from_ms: the first time covered (ms since the Unix epoch, inclusive)
 * @to_ms: the end of the range (ms, exclusive)
 * @options: (nullable): filters (top, prefix, min_count), copied
 * @cancellable: (nullable): a cancellable
 * @callback: called on the caller's thread-default context with the merged counts
 * @user_data: data for @callback
 *
 * As tally_aggregator_handle_get_store_counts_async(), over the time buckets starting in
 * [@from_ms, @to_ms) (tally-window-table.h) instead of the all-time counts: every shard sums
 * its buckets of @stores and the sorted replies are merged. Ordered after the caller's
 * earlier AddWords, like GetCounts. Finish with tally_aggregator_handle_get_counts_finish().
 * Any thread but a shard's.
 */
void tally_aggregator_handle_get_window_counts_async (
    TallyAggregatorHandle *handle, const guint32 *stores, guint n_stores, gint64 from_ms,
    gint64 to_ms, const TallyCountsOptions *options, GCancellable *cancellable,
    GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_aggregator_handle_get_window_counts:
 * @handle: a handle
 * @stores: (array length=n_stores) (nullable): the stores to sum over; %NULL for all
 * @n_stores: the number of entries of @stores
 * @from_ms: the first time covered (ms, inclusive)
 * @to_ms: the end of the range (ms, exclusive)
 * @options: (nullable): filters
 * @error: %TALLY_ACTOR_ERROR if a shard cannot be asked
 *
 * The blocking form of tally_aggregator_handle_get_window_counts_async(). Not on a shard's
 * thread.
 *
 * Returns: (transfer full) (nullable): the counts, %NULL on error
 */
TallyCounts *tally_aggregator_handle_get_window_counts (TallyAggregatorHandle *handle,
                                                        const guint32 *stores, guint n_stores,
                                                        gint64 from_ms, gint64 to_ms,
                                                        const TallyCountsOptions *options,
                                                        GError **error);

/**
 * tally_aggregator_handle_expire_buckets:
 * @handle: a handle
 * @before_ms: time buckets starting before this (ms since the Unix epoch) are dropped
 *
 * Tells every shard to drop its expired time buckets (all stores). Does not wait; a shard
 * whose mailbox is full or closed skips this round (the next expiry catches up). Any thread.
 */
void tally_aggregator_handle_expire_buckets (TallyAggregatorHandle *handle, gint64 before_ms);

/**
 * tally_aggregator_handle_take_window_changes:
 * @handle: a handle
 * @store: the store
 * @expire_before_ms: buckets starting before this (ms) are dropped; %G_MININT64 for none
 * @error: %TALLY_ACTOR_ERROR if a shard cannot be asked
 *
 * For a checkpoint of windowed counts: every shard drops the expired buckets of @store and
 * reports them, and takes the changes of the others (TakeWindowChanges), one shard after
 * the other. Ordered after the caller's earlier AddWords. Not on a shard's thread.
 *
 * Returns: (transfer full) (element-type TallyBucketChanges) (nullable): the changes of
 *   every shard (shards own disjoint words, so a bucket may appear once per shard)
 */
GPtrArray *tally_aggregator_handle_take_window_changes (TallyAggregatorHandle *handle,
                                                        guint32 store, gint64 expire_before_ms,
                                                        GError **error);

/**
 * tally_aggregator_handle_restore_bucket:
 * @handle: a handle
 * @store: the store
 * @start_ms: the bucket's start (ms)
 * @counts: the bucket's counts, as read back from the changelog
 * @error: %TALLY_ACTOR_ERROR if a shard cannot be told
 *
 * Tells every shard to load its words of @counts as the bucket (RestoreBucket). Ordered
 * before the caller's later AddWords. Not on a shard's thread.
 *
 * Returns: whether every shard was told
 */
gboolean tally_aggregator_handle_restore_bucket (TallyAggregatorHandle *handle, guint32 store,
                                                 gint64 start_ms, TallyCounts *counts,
                                                 GError **error);

G_END_DECLS
