/* tally-aggregator-handle.c — N aggregator shards behind the article's three verbs.
 *
 * What it is for: callers (the `tally words` CLI, the Kafka source and publisher) count
 * words and take snapshots without knowing how many shards there are or sending message
 * structs themselves.
 *
 * How it works: each shard is a TallyAggregator on its own arbiter. A word's shard is
 * picked from the high 32 bits of its 64-bit hash by multiply-shift (Lemire's fast range
 * reduction), leaving the low bits, which the shard's table indexes with, independent of
 * the shard. Operations on all shards (GetCounts, DropStore, RestoreStore, TakeChanges)
 * fan out: one ask_async per shard, all sent before the call returns, then one GTask
 * completes when every shard answered; the sorted replies of GetCounts and TakeChanges are
 * merged (shards own disjoint words, so nothing needs summing or re-sorting) and cut to the
 * top N again. The synchronous forms run that same fan-out on a private
 * GMainContext pushed as the thread-default one, iterated until the GTask completes, so
 * shards work in parallel even for a blocking caller.
 *
 * The word batcher appends each word, with its hash, to its shard's AddWords batch under
 * construction, and tells the batches on flush: the sending thread's cost per word is
 * one hash and one sequential copy. It can also combine (tally_word_batcher_set_combining(),
 * as in MapReduce, and as `tally count`'s workers do): a small two-way set-associative cache
 * of 512 words (16 KiB, one L1 line per lookup) counts the words it is given, and a word
 * that does not fit evicts the one with the lower count into its shard's batch, with its
 * count (tally_aggregator_add_words_append_count()); a flush empties the cache into the
 * batches. A cached word is found by a key of two loads from its ends (words of up to
 * 16 bytes; longer ones go to the batch at once), so a repeated word costs no
 * tally_word_hash(): a word is hashed when it comes into the cache (the hash is kept in
 * its slot) or goes to the batch uncached. Combining is off by default: on `tally run`
 * over State of the Union text (4 partitions, 2 shards) it took about 40% of the work off
 * the shards but none off the source thread, which is the one that limits throughput:
 * the cache's lookup, with its data-dependent branches, cost the sender as much as the
 * hash and the copy it saves. A batch that a full mailbox refused stays pending for that
 * shard; later adds and the next flush add to it and try again.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"

#include "tally-counts-private.h"

#include <string.h>

struct _TallyAggregatorHandle
{
  gint ref_count; /* atomic, with g_atomic_int_* inlined here so TSan sees it */
  guint n_shards;
  TallyArbiter **arbiters;
  TallyAddress **shards;
  gint stopped; /* atomic */
};

/* A batcher's combining cache: COMBINE_SETS sets of two 32-byte slots, one cache line
 * each, 16 KiB in all (half an L1 data cache), so looking a word up costs one line that is
 * nearly always cached. A slot holds a word of 1 to COMBINE_INLINE bytes as a key of two
 * 64-bit values that determine it and its length (see make_key()), its hash, and how many
 * times it was added since it came in. */
#define COMBINE_INLINE 16
#define COMBINE_SETS 256
#define COMBINE_SET_BITS 8

typedef struct
{
  guint64 k0, k1; /* make_key() of the word */
  guint32 len;    /* 0: an empty slot */
  guint32 count;  /* times added since it came in */
  guint64 hash;   /* tally_word_hash() of the word, taken when it came in */
} CombineSlot;

G_STATIC_ASSERT (sizeof (CombineSlot) == 32);
G_STATIC_ASSERT (COMBINE_SETS == 1 << COMBINE_SET_BITS);

struct _TallyWordBatcher
{
  TallyAggregatorHandle *handle;
  guint32 store;
  CombineSlot *cache;     /* COMBINE_SETS x 2 slots, 64-byte aligned; NULL: not combining */
  TallyMessage **pending; /* one AddWords per shard under construction, or NULL */
  gsize n_pending;        /* words (not distinct words) in the cache and in pending */
  gboolean flushing;      /* a flush_async is in flight */
};

/* ---------------------------------------------------------------------------------------
 * Life cycle and sharding
 * ------------------------------------------------------------------------------------- */

TallyAggregatorHandle *
tally_aggregator_handle_new (guint n_shards, guint mailbox_capacity)
{
  TallyAggregatorHandle *handle;

  g_return_val_if_fail (n_shards >= 1, NULL);

  handle = g_new0 (TallyAggregatorHandle, 1);
  handle->ref_count = 1;
  handle->n_shards = n_shards;
  handle->arbiters = g_new0 (TallyArbiter *, n_shards);
  handle->shards = g_new0 (TallyAddress *, n_shards);
  for (guint i = 0; i < n_shards; i++)
    {
      g_autofree char *name = g_strdup_printf ("tally-agg-%u", i);
      handle->arbiters[i] = tally_arbiter_new (name);
      handle->shards[i] = tally_actor_start (TALLY_ACTOR (tally_aggregator_new (i, n_shards)),
                                             handle->arbiters[i], mailbox_capacity);
    }
  return handle;
}

TallyAggregatorHandle *
tally_aggregator_handle_ref (TallyAggregatorHandle *handle)
{
  g_return_val_if_fail (handle != NULL, NULL);
  g_atomic_int_inc (&handle->ref_count);
  return handle;
}

void
tally_aggregator_handle_stop (TallyAggregatorHandle *handle)
{
  g_return_if_fail (handle != NULL);

  if (!g_atomic_int_compare_and_exchange (&handle->stopped, 0, 1))
    return;
  for (guint i = 0; i < handle->n_shards; i++)
    tally_address_stop (handle->shards[i]);
  for (guint i = 0; i < handle->n_shards; i++)
    tally_arbiter_stop (handle->arbiters[i]);
}

void
tally_aggregator_handle_unref (TallyAggregatorHandle *handle)
{
  g_return_if_fail (handle != NULL);

  if (!g_atomic_int_dec_and_test (&handle->ref_count))
    return;
  tally_aggregator_handle_stop (handle);
  for (guint i = 0; i < handle->n_shards; i++)
    {
      tally_address_unref (handle->shards[i]);
      tally_arbiter_unref (handle->arbiters[i]);
    }
  g_free (handle->shards);
  g_free (handle->arbiters);
  g_free (handle);
}

guint
tally_aggregator_handle_get_n_shards (TallyAggregatorHandle *handle)
{
  g_return_val_if_fail (handle != NULL, 0);
  return handle->n_shards;
}

guint
tally_aggregator_handle_shard_for_hash (guint64 hash, guint n_shards)
{
  return (guint)(((hash >> 32) * (guint64)n_shards) >> 32);
}

guint
tally_aggregator_handle_shard_for (TallyAggregatorHandle *handle, const char *word, gsize len)
{
  g_return_val_if_fail (handle != NULL, 0);
  return tally_aggregator_handle_shard_for_hash (tally_word_hash (word, len), handle->n_shards);
}

TallyAddress *
tally_aggregator_handle_get_shard_address (TallyAggregatorHandle *handle, guint index)
{
  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (index < handle->n_shards, NULL);
  return handle->shards[index];
}

/* Fails with WOULD_DEADLOCK when called from a shard's own thread. */
static gboolean
check_not_on_shard (TallyAggregatorHandle *handle, GError **error)
{
  for (guint i = 0; i < handle->n_shards; i++)
    if (g_main_context_is_owner (tally_arbiter_get_context (handle->arbiters[i])))
      {
        g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_WOULD_DEADLOCK,
                     "a blocking aggregator call was made from shard %u's own thread", i);
        return FALSE;
      }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * add_word
 * ------------------------------------------------------------------------------------- */

guint64
tally_aggregator_handle_add_word (TallyAggregatorHandle *handle, const char *word, GError **error)
{
  gsize len;
  guint shard;
  g_autofree guint64 *count = NULL;

  g_return_val_if_fail (handle != NULL, 0);
  g_return_val_if_fail (word != NULL, 0);
  g_return_val_if_fail (error == NULL || *error == NULL, 0);

  len = strlen (word);
  if (len == 0 || len >= ((gsize)1 << 31) || !g_utf8_validate (word, (gssize)len, NULL))
    {
      g_set_error (error, TALLY_AGGREGATOR_ERROR, TALLY_AGGREGATOR_ERROR_INVALID_WORD,
                   len == 0 ? "an empty word cannot be counted"
                            : "a word must be valid UTF-8 to be counted");
      return 0;
    }
  shard = tally_aggregator_handle_shard_for (handle, word, len);
  count = tally_address_ask_sync (handle->shards[shard],
                                  tally_aggregator_add_word_new (0, word, len), 0, error);
  return count != NULL ? *count : 0;
}

/* ---------------------------------------------------------------------------------------
 * Fan-out: one ask per shard, one result
 * ------------------------------------------------------------------------------------- */

typedef TallyMessage *(*MakeMessageFunc) (guint shard, gpointer data);

typedef struct
{
  TallyAggregatorHandle *handle;
  gboolean merge_counts; /* replies are TallyCounts to merge, else no value */
  guint pending;
  TallyCounts **replies;
  GError *error;
  TallyCountsOptions options;
  char *prefix;
} FanOut;

typedef struct
{
  GTask *task;
  guint shard;
} ShardAsk;

static void
fan_out_free (gpointer p)
{
  FanOut *f = p;
  for (guint i = 0; i < f->handle->n_shards; i++)
    g_clear_pointer (&f->replies[i], tally_counts_unref);
  g_free (f->replies);
  g_clear_error (&f->error);
  g_free (f->prefix);
  tally_aggregator_handle_unref (f->handle);
  g_free (f);
}

static void
shard_ask_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ShardAsk *ask = user_data;
  g_autoptr (GTask) task = ask->task;
  FanOut *f = g_task_get_task_data (task);
  GError *error = NULL;
  gpointer reply;

  reply = tally_address_ask_finish (f->handle->shards[ask->shard], result, &error);
  if (error != NULL)
    {
      if (f->error == NULL)
        f->error = error;
      else
        g_error_free (error);
    }
  else if (f->merge_counts)
    f->replies[ask->shard] = reply;
  g_free (ask);

  if (--f->pending > 0)
    return;
  if (f->error != NULL)
    g_task_return_error (task, g_steal_pointer (&f->error));
  else if (f->merge_counts)
    g_task_return_pointer (
        task, tally_counts_merge_disjoint (f->replies, f->handle->n_shards, &f->options),
        (GDestroyNotify)tally_counts_unref);
  else
    g_task_return_boolean (task, TRUE);
}

static void
fan_out (TallyAggregatorHandle *handle, MakeMessageFunc make, gpointer make_data,
         gboolean merge_counts, const TallyCountsOptions *options, gpointer source_tag,
         GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  FanOut *f = g_new0 (FanOut, 1);

  g_task_set_source_tag (task, source_tag);
  f->handle = tally_aggregator_handle_ref (handle);
  f->merge_counts = merge_counts;
  f->pending = handle->n_shards;
  f->replies = g_new0 (TallyCounts *, handle->n_shards);
  if (options != NULL)
    {
      f->options = *options;
      f->prefix = g_strdup (options->prefix);
      f->options.prefix = f->prefix;
    }
  g_task_set_task_data (task, f, fan_out_free);

  for (guint i = 0; i < handle->n_shards; i++)
    {
      ShardAsk *ask = g_new (ShardAsk, 1);
      ask->task = g_object_ref (task);
      ask->shard = i;
      tally_address_ask_async (handle->shards[i], make (i, make_data), cancellable, shard_ask_done,
                               ask);
    }
  g_object_unref (task);
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **out = user_data;
  *out = g_object_ref (result);
}

/* Runs an async operation to completion on a private context. */
typedef void (*StartFunc) (gpointer data, GAsyncReadyCallback callback, gpointer user_data);

static GAsyncResult *
run_sync (StartFunc start, gpointer data)
{
  GMainContext *context = g_main_context_new ();
  GAsyncResult *result = NULL;

  g_main_context_push_thread_default (context);
  start (data, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return result;
}

/* ---------------------------------------------------------------------------------------
 * get_counts
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyAggregatorHandle *handle;
  const guint32 *stores;
  guint n_stores;
  const TallyCountsOptions *options;
  guint32 store;
  TallyCounts *counts;
} OpData;

static TallyMessage *
make_get_counts (guint shard, gpointer data)
{
  OpData *op = data;
  return tally_aggregator_get_counts_new (op->stores, op->n_stores, op->options);
}

void
tally_aggregator_handle_get_store_counts_async (TallyAggregatorHandle *handle,
                                                const guint32 *stores, guint n_stores,
                                                const TallyCountsOptions *options,
                                                GCancellable *cancellable,
                                                GAsyncReadyCallback callback, gpointer user_data)
{
  OpData op = { handle, stores, n_stores, options, 0, NULL };

  g_return_if_fail (handle != NULL);

  fan_out (handle, make_get_counts, &op, TRUE, options,
           tally_aggregator_handle_get_store_counts_async, cancellable, callback, user_data);
}

void
tally_aggregator_handle_get_counts_async (TallyAggregatorHandle *handle,
                                          const TallyCountsOptions *options,
                                          GCancellable *cancellable, GAsyncReadyCallback callback,
                                          gpointer user_data)
{
  tally_aggregator_handle_get_store_counts_async (handle, NULL, 0, options, cancellable, callback,
                                                  user_data);
}

TallyCounts *
tally_aggregator_handle_get_counts_finish (TallyAggregatorHandle *handle, GAsyncResult *result,
                                           GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
start_get_counts (gpointer data, GAsyncReadyCallback callback, gpointer user_data)
{
  OpData *op = data;
  tally_aggregator_handle_get_store_counts_async (op->handle, op->stores, op->n_stores, op->options,
                                                  NULL, callback, user_data);
}

TallyCounts *
tally_aggregator_handle_get_store_counts (TallyAggregatorHandle *handle, const guint32 *stores,
                                          guint n_stores, const TallyCountsOptions *options,
                                          GError **error)
{
  OpData op = { handle, stores, n_stores, options, 0, NULL };
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (handle != NULL, NULL);

  if (!check_not_on_shard (handle, error))
    return NULL;
  result = run_sync (start_get_counts, &op);
  return tally_aggregator_handle_get_counts_finish (handle, result, error);
}

TallyCounts *
tally_aggregator_handle_get_counts (TallyAggregatorHandle *handle,
                                    const TallyCountsOptions *options, GError **error)
{
  return tally_aggregator_handle_get_store_counts (handle, NULL, 0, options, error);
}

/* ---------------------------------------------------------------------------------------
 * Stores: drop, restore, take changes
 * ------------------------------------------------------------------------------------- */

static TallyMessage *
make_drop_store (guint shard, gpointer data)
{
  return tally_aggregator_drop_store_new (((OpData *)data)->store);
}

static TallyMessage *
make_restore_store (guint shard, gpointer data)
{
  OpData *op = data;
  return tally_aggregator_restore_store_new (op->store, op->counts);
}

static TallyMessage *
make_take_changes (guint shard, gpointer data)
{
  return tally_aggregator_take_changes_new (((OpData *)data)->store);
}

void
tally_aggregator_handle_drop_store_async (TallyAggregatorHandle *handle, guint32 store,
                                          GCancellable *cancellable, GAsyncReadyCallback callback,
                                          gpointer user_data)
{
  OpData op = { handle, NULL, 0, NULL, store, NULL };

  g_return_if_fail (handle != NULL);
  fan_out (handle, make_drop_store, &op, FALSE, NULL, tally_aggregator_handle_drop_store_async,
           cancellable, callback, user_data);
}

void
tally_aggregator_handle_restore_store_async (TallyAggregatorHandle *handle, guint32 store,
                                             TallyCounts *counts, GCancellable *cancellable,
                                             GAsyncReadyCallback callback, gpointer user_data)
{
  OpData op = { handle, NULL, 0, NULL, store, counts };

  g_return_if_fail (handle != NULL);
  g_return_if_fail (counts != NULL);
  fan_out (handle, make_restore_store, &op, FALSE, NULL,
           tally_aggregator_handle_restore_store_async, cancellable, callback, user_data);
}

gboolean
tally_aggregator_handle_store_op_finish (TallyAggregatorHandle *handle, GAsyncResult *result,
                                         GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
tally_aggregator_handle_take_changes_async (TallyAggregatorHandle *handle, guint32 store,
                                            GCancellable *cancellable, GAsyncReadyCallback callback,
                                            gpointer user_data)
{
  OpData op = { handle, NULL, 0, NULL, store, NULL };

  g_return_if_fail (handle != NULL);
  fan_out (handle, make_take_changes, &op, TRUE, NULL, tally_aggregator_handle_take_changes_async,
           cancellable, callback, user_data);
}

static void
start_drop_store (gpointer data, GAsyncReadyCallback callback, gpointer user_data)
{
  OpData *op = data;
  tally_aggregator_handle_drop_store_async (op->handle, op->store, NULL, callback, user_data);
}

static void
start_restore_store (gpointer data, GAsyncReadyCallback callback, gpointer user_data)
{
  OpData *op = data;
  tally_aggregator_handle_restore_store_async (op->handle, op->store, op->counts, NULL, callback,
                                               user_data);
}

static void
start_take_changes (gpointer data, GAsyncReadyCallback callback, gpointer user_data)
{
  OpData *op = data;
  tally_aggregator_handle_take_changes_async (op->handle, op->store, NULL, callback, user_data);
}

gboolean
tally_aggregator_handle_drop_store (TallyAggregatorHandle *handle, guint32 store, GError **error)
{
  OpData op = { handle, NULL, 0, NULL, store, NULL };
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (handle != NULL, FALSE);
  if (!check_not_on_shard (handle, error))
    return FALSE;
  result = run_sync (start_drop_store, &op);
  return tally_aggregator_handle_store_op_finish (handle, result, error);
}

gboolean
tally_aggregator_handle_restore_store (TallyAggregatorHandle *handle, guint32 store,
                                       TallyCounts *counts, GError **error)
{
  OpData op = { handle, NULL, 0, NULL, store, counts };
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (handle != NULL, FALSE);
  g_return_val_if_fail (counts != NULL, FALSE);
  if (!check_not_on_shard (handle, error))
    return FALSE;
  result = run_sync (start_restore_store, &op);
  return tally_aggregator_handle_store_op_finish (handle, result, error);
}

TallyCounts *
tally_aggregator_handle_take_changes (TallyAggregatorHandle *handle, guint32 store, GError **error)
{
  OpData op = { handle, NULL, 0, NULL, store, NULL };
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (handle != NULL, NULL);
  if (!check_not_on_shard (handle, error))
    return NULL;
  result = run_sync (start_take_changes, &op);
  return tally_aggregator_handle_get_counts_finish (handle, result, error);
}

/* ---------------------------------------------------------------------------------------
 * Word batcher
 * ------------------------------------------------------------------------------------- */

TallyWordBatcher *
tally_word_batcher_new (TallyAggregatorHandle *handle, guint32 store)
{
  TallyWordBatcher *batcher;

  g_return_val_if_fail (handle != NULL, NULL);

  batcher = g_new0 (TallyWordBatcher, 1);
  batcher->handle = tally_aggregator_handle_ref (handle);
  batcher->store = store;
  batcher->pending = g_new0 (TallyMessage *, handle->n_shards);
  return batcher;
}

void
tally_word_batcher_free (TallyWordBatcher *batcher)
{
  if (batcher == NULL)
    return;
  for (guint i = 0; i < batcher->handle->n_shards; i++)
    g_clear_pointer (&batcher->pending[i], tally_message_free);
  g_free (batcher->pending);
  if (batcher->cache != NULL)
    g_aligned_free (batcher->cache);
  tally_aggregator_handle_unref (batcher->handle);
  g_free (batcher);
}

#ifdef G_ENABLE_DEBUG
/* Valid UTF-8 without NUL: ASCII words (most of them) are checked inline, byte by byte;
 * g_utf8_validate_len() is called only for the others. */
static inline gboolean
word_is_valid (const char *word, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if ((guchar)word[i] - 1u >= 0x7fu)
      return g_utf8_validate_len (word, len, NULL);
  return TRUE;
}
#endif

/* The key of a word of 1 to 16 bytes: two loads that together cover every byte, from each
 * end (8 bytes each from 8 bytes on, 4 each from 4 bytes on), or its three bytes below 4.
 * With the length, the key determines the word (key_word() rebuilds it), so comparing
 * two words is comparing two keys, in registers; nothing outside the word is read. */
static inline G_ALWAYS_INLINE void
make_key (const char *word, gsize len, guint64 *k0, guint64 *k1)
{
  if (G_LIKELY (len >= 8))
    {
      memcpy (k0, word, 8);
      memcpy (k1, word + len - 8, 8);
    }
  else if (G_LIKELY (len >= 4))
    {
      guint32 a, b;

      memcpy (&a, word, 4);
      memcpy (&b, word + len - 4, 4);
      *k0 = a;
      *k1 = b;
    }
  else
    {
      *k0 = (guint64)(guint8)word[0] | (guint64)(guint8)word[len >> 1] << 8
            | (guint64)(guint8)word[len - 1] << 16;
      *k1 = 0;
    }
}

/* Writes the word of a slot's key into @out (16 bytes). */
static void
key_word (const CombineSlot *s, guint8 *out)
{
  gsize len = s->len;

  if (len >= 8)
    {
      memcpy (out, &s->k0, 8);
      memcpy (out + len - 8, &s->k1, 8);
    }
  else if (len >= 4)
    {
      guint32 a = (guint32)s->k0, b = (guint32)s->k1;

      memcpy (out, &a, 4);
      memcpy (out + len - 4, &b, 4);
    }
  else
    {
      out[0] = (guint8)s->k0;
      out[len >> 1] = (guint8)(s->k0 >> 8);
      out[len - 1] = (guint8)(s->k0 >> 16);
    }
}

/* The set of a key: a multiply-shift of its two halves and length (a cache index, cheaper
 * than the word's tally_word_hash(), which only a word coming into the cache needs). */
static inline G_ALWAYS_INLINE guint
key_set (guint64 k0, guint64 k1, gsize len)
{
  guint64 h = (k0 ^ (k1 * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)) ^ len)
              * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  return (guint)(h >> (64 - COMBINE_SET_BITS));
}

/* Appends @word, added @count times, to its shard's batch under construction. */
static void
append_word (TallyWordBatcher *batcher, const char *word, gsize len, guint64 hash, guint64 count)
{
  guint shard = tally_aggregator_handle_shard_for_hash (hash, batcher->handle->n_shards);

  if (batcher->pending[shard] == NULL)
    batcher->pending[shard] = tally_aggregator_add_words_new (batcher->store);
  if (count == 1)
    tally_aggregator_add_words_append (batcher->pending[shard], word, len, hash);
  else
    tally_aggregator_add_words_append_count (batcher->pending[shard], word, len, hash, count);
}

/* Moves a slot's word and count into its shard's batch and empties the slot. */
static void
evict (TallyWordBatcher *batcher, CombineSlot *s)
{
  if (s->len != 0)
    {
      guint8 word[COMBINE_INLINE];

      key_word (s, word);
      append_word (batcher, (const char *)word, s->len, s->hash, s->count);
    }
  memset (s, 0, sizeof *s);
}

/* A word not in its set takes the slot with the lower count, whose word goes to the batch.
 * Out of line: the hot path is a word already cached. */
static G_GNUC_NO_INLINE void
miss (TallyWordBatcher *batcher, CombineSlot *set, const char *word, gsize len, guint64 k0,
      guint64 k1)
{
  CombineSlot *s = set[0].count <= set[1].count ? &set[0] : &set[1];

  evict (batcher, s);
  s->hash = tally_word_hash (word, len);
  s->k0 = k0;
  s->k1 = k1;
  s->len = (guint32)len;
  s->count = 1;
}

void
tally_word_batcher_add (TallyWordBatcher *batcher, const char *word, gsize len)
{
  guint64 k0, k1;
  CombineSlot *set;

  g_return_if_fail (batcher != NULL);
  g_return_if_fail (word != NULL);
  g_return_if_fail (len > 0 && len < ((gsize)1 << 31));
#ifdef G_ENABLE_DEBUG
  g_return_if_fail (word_is_valid (word, len));
#endif

  batcher->n_pending++;
  if (batcher->cache == NULL || G_UNLIKELY (len > COMBINE_INLINE))
    {
      append_word (batcher, word, len, tally_word_hash (word, len), 1);
      return;
    }
  make_key (word, len, &k0, &k1);
  set = &batcher->cache[key_set (k0, k1, len) * 2];
  for (guint way = 0; way < 2; way++)
    {
      CombineSlot *s = &set[way];

      if (((s->k0 ^ k0) | (s->k1 ^ k1) | (s->len ^ (guint64)len)) == 0)
        {
          if (G_UNLIKELY (s->count == G_MAXUINT32))
            {
              /* Added 2^32 - 1 times: that much goes to the batch. */
              append_word (batcher, word, len, s->hash, s->count);
              s->count = 0;
            }
          s->count++;
          return;
        }
    }
  miss (batcher, set, word, len, k0, k1);
}

/* Moves every cached word into the shards' batches (appending to a batch an earlier flush
 * could not send) and empties the cache: 512 slots, 16 KiB, per flush. */
static void
drain_combined (TallyWordBatcher *batcher)
{
  if (batcher->cache == NULL)
    return;
  for (guint i = 0; i < COMBINE_SETS * 2; i++)
    if (batcher->cache[i].len != 0)
      evict (batcher, &batcher->cache[i]);
}

void
tally_word_batcher_set_combining (TallyWordBatcher *batcher, gboolean combining)
{
  g_return_if_fail (batcher != NULL);

  if (combining && batcher->cache == NULL)
    batcher->cache = g_aligned_alloc0 (COMBINE_SETS * 2, sizeof (CombineSlot), 64);
  else if (!combining && batcher->cache != NULL)
    {
      drain_combined (batcher);
      g_aligned_free (g_steal_pointer (&batcher->cache));
    }
}

gsize
tally_word_batcher_get_pending_words (TallyWordBatcher *batcher)
{
  g_return_val_if_fail (batcher != NULL, 0);
  return batcher->n_pending;
}

guint32
tally_word_batcher_get_store (TallyWordBatcher *batcher)
{
  g_return_val_if_fail (batcher != NULL, 0);
  return batcher->store;
}

/* Keeps the more serious of two errors: CLOSED over FULL. */
static void
keep_error (GError **kept, GError *error)
{
  if (*kept == NULL)
    *kept = error;
  else if (g_error_matches (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED)
           && !g_error_matches (*kept, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED))
    {
      g_error_free (*kept);
      *kept = error;
    }
  else
    g_error_free (error);
}

gboolean
tally_word_batcher_flush (TallyWordBatcher *batcher, gboolean may_block, GError **error)
{
  GError *kept = NULL;

  g_return_val_if_fail (batcher != NULL, FALSE);
  g_return_val_if_fail (!batcher->flushing, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  drain_combined (batcher);
  for (guint i = 0; i < batcher->handle->n_shards; i++)
    {
      TallyMessage *m = batcher->pending[i];
      gsize n;
      GError *local = NULL;

      if (m == NULL)
        continue;
      n = tally_aggregator_add_words_get_n_words (m);
      if (may_block)
        {
          batcher->pending[i] = NULL;
          batcher->n_pending -= n;
          if (!tally_address_tell (batcher->handle->shards[i], m, &local))
            keep_error (&kept, local);
        }
      else if (tally_address_try_tell (batcher->handle->shards[i], m, &local))
        {
          batcher->pending[i] = NULL;
          batcher->n_pending -= n;
        }
      else
        keep_error (&kept, local);
    }
  if (kept != NULL)
    {
      g_propagate_error (error, kept);
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  TallyWordBatcher *batcher;
  guint pending;
  GError *error;
} FlushData;

typedef struct
{
  GTask *task;
  guint shard;
} FlushTell;

static void
flush_data_free (gpointer p)
{
  FlushData *d = p;
  g_clear_error (&d->error);
  g_free (d);
}

static void
flush_tell_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  FlushTell *tell = user_data;
  g_autoptr (GTask) task = tell->task;
  FlushData *d = g_task_get_task_data (task);
  GError *error = NULL;

  if (!tally_address_tell_finish (d->batcher->handle->shards[tell->shard], result, &error))
    keep_error (&d->error, error);
  g_free (tell);
  if (--d->pending > 0)
    return;
  d->batcher->flushing = FALSE;
  if (d->error != NULL)
    g_task_return_error (task, g_steal_pointer (&d->error));
  else
    g_task_return_boolean (task, TRUE);
}

void
tally_word_batcher_flush_async (TallyWordBatcher *batcher, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  FlushData *d;

  g_return_if_fail (batcher != NULL);
  g_return_if_fail (!batcher->flushing);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, tally_word_batcher_flush_async);
  d = g_new0 (FlushData, 1);
  d->batcher = batcher;
  d->pending = 1; /* held until every tell is started */
  g_task_set_task_data (task, d, flush_data_free);
  batcher->flushing = TRUE;

  drain_combined (batcher);
  for (guint i = 0; i < batcher->handle->n_shards; i++)
    {
      TallyMessage *m = batcher->pending[i];
      FlushTell *tell;

      if (m == NULL)
        continue;
      batcher->pending[i] = NULL;
      batcher->n_pending -= tally_aggregator_add_words_get_n_words (m);
      tell = g_new (FlushTell, 1);
      tell->task = g_object_ref (task);
      tell->shard = i;
      d->pending++;
      tally_address_tell_async (batcher->handle->shards[i], m, cancellable, flush_tell_done, tell);
    }

  if (--d->pending == 0)
    {
      batcher->flushing = FALSE;
      if (d->error != NULL)
        g_task_return_error (task, g_steal_pointer (&d->error));
      else
        g_task_return_boolean (task, TRUE);
    }
}

gboolean
tally_word_batcher_flush_finish (TallyWordBatcher *batcher, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
