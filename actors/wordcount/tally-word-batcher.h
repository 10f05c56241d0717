/* tally-word-batcher.h — words into AddWords batches, one message per shard per flush.
 *
 * A sender that counts many words (the Kafka source, the librdkafka plugin, `tally count`'s
 * workers) does not tell the shards one message per word: a TallyWordBatcher hashes each
 * word once (tally-word-hash.h), appends it with its hash to the AddWords batch under
 * construction for the shard that owns it, and tells every shard its batch on flush. A
 * sender that already combined repeated words (a combiner, as in MapReduce) adds each
 * distinct word once with its count. Flushing keeps the sending thread's order, so a
 * GetCounts asked after a flush sees its words (see tally-aggregator-handle.h).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-actor.h"

G_BEGIN_DECLS

/* The shards a batcher feeds: declared in tally-aggregator-handle.h. */
typedef struct _TallyAggregatorHandle TallyAggregatorHandle;
typedef struct _TallyWordBatcher TallyWordBatcher;

/**
 * tally_word_batcher_new:
 * @handle: the shards to count into; a reference is taken
 * @store: the store the words count into (an input partition; 0 for `tally words` and
 *   `tally count`)
 *
 * A batcher collects words into one pending AddWords batch per shard and tells them on
 * flush: one message per shard per flush, not one per word. A batcher belongs to one
 * thread at a time; its sends keep that thread's order. Any thread.
 *
 * Returns: (transfer full): the batcher; free it with tally_word_batcher_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWordBatcher *tally_word_batcher_new (TallyAggregatorHandle *handle, guint32 store);

/**
 * tally_word_batcher_free:
 * @batcher: (transfer full) (nullable): a batcher; words still pending are not sent
 *
 * Frees the batcher and its pending batches and drops its reference to the handle. The
 * thread that owns the batcher, not during a flush_async.
 */
void tally_word_batcher_free (TallyWordBatcher *batcher);

/**
 * tally_word_batcher_add:
 * @batcher: a batcher
 * @word: (array length=len): a word: valid UTF-8, no NUL byte, not empty (need not be
 *   NUL-terminated)
 * @len: its length in bytes, at least 1 and below 2^31
 *
 * Hashes @word (tally_word_hash()) and appends it to its shard's pending batch (len + 12
 * bytes). The next successful flush sends it.
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
 * TALLY_WORD_BATCHER_NO_BUCKET:
 *
 * The bucket of words that count in the all-time totals only (late records, when [windows]
 * late = all-time).
 */
#define TALLY_WORD_BATCHER_NO_BUCKET G_MININT64

/**
 * tally_word_batcher_set_bucket:
 * @batcher: a batcher
 * @bucket_start_ms: the start (ms since the Unix epoch) of the time bucket the words added
 *   next count in, besides the all-time totals (see tally-window-table.h); or
 *   %TALLY_WORD_BATCHER_NO_BUCKET for the all-time totals only
 *
 * Turns windows on for this batcher: from now on, each batch says which bucket its words
 * go to (a 12-byte marker per change of bucket per shard batch). A batcher never told a
 * bucket costs nothing for windows. The thread that owns the batcher.
 */
void tally_word_batcher_set_bucket (TallyWordBatcher *batcher, gint64 bucket_start_ms);

/**
 * tally_word_batcher_add_count:
 * @batcher: a batcher
 * @word: (array length=len): a word, as tally_word_batcher_add() requires
 * @len: its length in bytes, at least 1 and below 2^31
 * @count: how many times to count it; 0 adds nothing
 *
 * Appends @word counted @count times to its shard's pending batch, in one record (len + 20
 * bytes, or len + 12 when @count is 1): for a sender that combined repeated words before
 * (`tally count`'s workers). The shard adds @count to the word's count, exactly as if the
 * word had been added @count times. The pending word count grows by @count (saturating).
 * Same preconditions and thread as tally_word_batcher_add().
 */
void tally_word_batcher_add_count (TallyWordBatcher *batcher, const char *word, gsize len,
                                   guint64 count);

/**
 * tally_word_batcher_flush:
 * @batcher: a batcher
 * @may_block: %TRUE to wait for room in full mailboxes (tally_address_tell()); %FALSE to
 *   fail at once instead (tally_address_try_tell())
 * @error: return location for %TALLY_ACTOR_ERROR_FULL (only when @may_block is %FALSE) or
 *   %TALLY_ACTOR_ERROR_CLOSED
 *
 * Tells every shard with pending words its batch, in shard order. With @may_block %FALSE,
 * a shard whose mailbox is full keeps its batch (later adds and the next flush add to it)
 * and the flush returns %FALSE with %TALLY_ACTOR_ERROR_FULL after trying every shard: the
 * caller (the Kafka source) pauses its partitions and flushes again later; batches that
 * were sent stay sent. With @may_block %FALSE a closed shard's batch is kept too; with
 * @may_block %TRUE the batch told to a closed shard is dropped, since a stopped shard
 * counts nothing. The thread that owns the batcher, not during a flush_async.
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
 * Sends every pending batch with tally_address_tell_async(): waits for room without
 * blocking the thread. Until @callback runs, words may be added but flushing again is a
 * programmer error. Finish with tally_word_batcher_flush_finish(). The thread that owns
 * the batcher.
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
 * tally_word_batcher_get_pending_words:
 * @batcher: a batcher
 *
 * Returns: the number of words added and not yet enqueued, over all shards: words, a word
 *   added n times (or once with count n) counting n (not distinct words)
 */
gsize tally_word_batcher_get_pending_words (TallyWordBatcher *batcher);

/**
 * tally_word_batcher_get_store:
 * @batcher: a batcher
 *
 * Returns: the store its words count into
 */
guint32 tally_word_batcher_get_store (TallyWordBatcher *batcher);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyWordBatcher, tally_word_batcher_free)

G_END_DECLS
