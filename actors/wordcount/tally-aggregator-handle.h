/* tally-aggregator-handle.h — the article's AggregatorHandle: N aggregator shards behind
 * three verbs (new, add_word, get_counts), plus what the Kafka source needs.
 *
 * tally_aggregator_handle_new() starts N TallyAggregator actors, each on its own arbiter
 * (thread). A word always goes to the same shard: tally_aggregator_handle_shard_for()
 * picks it from a fixed 64-bit hash of the word's bytes (tally_word_hash()), whose value
 * the shard's table reuses, so a word is hashed once on its way to a shard.
 *
 * Consistent cut. Messages from one sender thread to one actor are handled in the order
 * sent (see tally-actor.h). get_counts asks every shard, so the snapshot it returns
 * reflects every word that the calling thread told (add_word, or a batcher flush that
 * succeeded) before the call, in every shard. Words told by other threads are included if
 * their messages reached the shard first; for a cut across several senders, have each
 * sender send its words then its own barrier.
 *
 * State owned by input partitions (see the issue on Kafka state): each shard keeps one
 * counting table per *store*, a 32-bit id chosen by the caller (the Kafka source uses the
 * input partition; `tally words` and `tally count` use store 0). Words are added to one
 * store; drop_store forgets a store (partition revoked), restore_store loads a store from
 * restored counts before consuming (partition assigned), take_changes returns the current
 * counts of the words of a store changed since the last take_changes (what a checkpoint
 * writes to the changelog), and get_counts sums over all stores or a chosen set.
 *
 * Every synchronous function blocks the calling thread until every shard answered, so it
 * must not be called from a shard's own thread (it fails with
 * %TALLY_ACTOR_ERROR_WOULD_DEADLOCK); code running in a main loop uses the _async forms,
 * whose callbacks run on the caller's thread-default main context, as GTask's do.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-actor.h"
#include "tally-aggregator.h"
#include "tally-counts.h"
#include "tally-word-table.h"

G_BEGIN_DECLS

typedef struct _TallyAggregatorHandle TallyAggregatorHandle;
typedef struct _TallyWordBatcher TallyWordBatcher;

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
 * Says which shard counts @word: the high 32 bits of tally_word_hash() scaled to the
 * number of shards (the low bits index the shard's table). Fixed for a given number of
 * shards; any thread.
 *
 * Returns: a shard index below tally_aggregator_handle_get_n_shards()
 */
guint tally_aggregator_handle_shard_for (TallyAggregatorHandle *handle, const char *word,
                                         gsize len);

/**
 * tally_aggregator_handle_shard_for_hash:
 * @hash: a value of tally_word_hash()
 * @n_shards: number of shards, at least 1
 *
 * The shard a word of hash @hash goes to, for code that already hashed it.
 *
 * Returns: a shard index below @n_shards
 */
guint tally_aggregator_handle_shard_for_hash (guint64 hash, guint n_shards);

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
 * the replies. A consistent cut for the calling thread (see the top of this file).
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

/* ---------------------------------------------------------------------------------------
 * Batching words for throughput
 * ------------------------------------------------------------------------------------- */

/**
 * tally_word_batcher_new:
 * @handle: the shards to count into; a reference is taken
 * @store: the store the words count into (an input partition; 0 for `tally words`)
 *
 * A batcher collects words into one pending AddWords batch per shard and tells them on
 * flush: one message per shard per flush, not one per word. With
 * tally_word_batcher_set_combining() it also combines repeated words before they reach
 * the shards. A batcher belongs to one thread at a time; its sends keep that thread's
 * order.
 *
 * Returns: (transfer full): the batcher
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWordBatcher *tally_word_batcher_new (TallyAggregatorHandle *handle, guint32 store);

/**
 * tally_word_batcher_free:
 * @batcher: (transfer full) (nullable): a batcher; words still pending are not sent
 */
void tally_word_batcher_free (TallyWordBatcher *batcher);

/**
 * tally_word_batcher_add:
 * @batcher: a batcher
 * @word: a word: valid UTF-8, no NUL byte, not empty (need not be NUL-terminated)
 * @len: its length in bytes, at least 1 and below 2^31
 *
 * Hashes @word and appends it to its shard's pending batch (len + 12 bytes). When
 * combining, a word of up to 16 bytes is instead counted in the batcher's cache if it is
 * there (found by its bytes, without hashing); if not, it is hashed and takes the cache
 * slot with the lower count, whose word and count go to its shard's batch (len + 12
 * bytes, or len + 20 with a count above 1). The next successful flush sends it.
 *
 * Precondition, not checked on this hot path: @word is valid UTF-8 with no NUL byte, as
 * a #TallyTokenizer's words always are; a word from elsewhere must be checked by the
 * caller first (g_utf8_validate_len(), as tally_aggregator_handle_add_word() does).
 * Builds with G_ENABLE_DEBUG defined check it with g_return_if_fail. An empty or
 * over-long word is a programmer error (g_return_if_fail). The thread that owns the
 * batcher.
 */
void tally_word_batcher_add (TallyWordBatcher *batcher, const char *word, gsize len);

/**
 * tally_word_batcher_flush:
 * @batcher: a batcher
 * @may_block: %TRUE to wait for room in full mailboxes (tally_address_tell()); %FALSE to
 *   fail at once instead (tally_address_try_tell())
 * @error: return location for %TALLY_ACTOR_ERROR_FULL (only when @may_block is %FALSE) or
 *   %TALLY_ACTOR_ERROR_CLOSED
 *
 * When combining, moves the words counted in the cache into their shards' batches (each
 * once, with its count; into a batch an earlier flush could not send if there is one).
 * Then tells every shard with pending words its batch, in shard order. With @may_block %FALSE, a
 * shard whose mailbox is full keeps its batch (later adds and the next flush add to it) and the
 * flush returns %FALSE with %TALLY_ACTOR_ERROR_FULL after trying every shard: the caller
 * (the Kafka source) pauses its partitions and flushes again later; batches that were
 * sent stay sent. With @may_block %FALSE a closed shard's batch is kept too; with
 * @may_block %TRUE the batch told to a closed shard is dropped, since a stopped shard
 * counts nothing.
 *
 * Returns: %TRUE if nothing is pending any more
 */
gboolean tally_word_batcher_flush (TallyWordBatcher *batcher, gboolean may_block, GError **error);

/**
 * tally_word_batcher_flush_async:
 * @batcher: a batcher
 * @cancellable: (nullable): cancels the wait for room
 * @callback: called on the caller's thread-default main context once every pending batch
 *   is enqueued (or a shard stopped)
 * @user_data: data for @callback
 *
 * When combining, moves the words counted in the cache into the batches as
 * tally_word_batcher_flush() does. Then sends every pending batch with tally_address_tell_async():
 * waits for room without blocking the thread. Until @callback runs, words may be added but flushing
 * again is a programmer error. Finish with tally_word_batcher_flush_finish().
 */
void tally_word_batcher_flush_async (TallyWordBatcher *batcher, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);

/**
 * tally_word_batcher_flush_finish:
 * @batcher: a batcher
 * @result: the result given to the callback
 * @error: return location for %TALLY_ACTOR_ERROR_CLOSED or %G_IO_ERROR_CANCELLED
 *
 * Returns: %TRUE if every batch was enqueued
 */
gboolean tally_word_batcher_flush_finish (TallyWordBatcher *batcher, GAsyncResult *result,
                                          GError **error);

/**
 * tally_word_batcher_set_combining:
 * @batcher: a batcher
 * @combining: %TRUE to combine repeated words
 *
 * Turns combining on or off (it is off when a batcher is created). While on, the words
 * added are counted in a cache of 512 words (16 KiB, allocated when turned on); a
 * frequent word goes to its shard once per flush with its count (or when a word with a
 * higher count takes its slot), so the shards count fewer, larger records, at about the
 * same cost per word to the calling thread as without (tests/bench/bench-word-table.c
 * --sender-only compares them). Counts come out the same either way. Turning it off moves
 * the cached words into the batches. The thread that owns the batcher.
 */
void tally_word_batcher_set_combining (TallyWordBatcher *batcher, gboolean combining);

/**
 * tally_word_batcher_get_pending_words:
 * @batcher: a batcher
 *
 * Returns: the number of words added and not yet enqueued, over all shards: words, a word
 *   added n times counting n (not distinct words)
 */
gsize tally_word_batcher_get_pending_words (TallyWordBatcher *batcher);

/**
 * tally_word_batcher_get_store:
 * @batcher: a batcher
 *
 * Returns: the store its words count into
 */
guint32 tally_word_batcher_get_store (TallyWordBatcher *batcher);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAggregatorHandle, tally_aggregator_handle_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyWordBatcher, tally_word_batcher_free)

G_END_DECLS
