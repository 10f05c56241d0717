/* tally-aggregator-handle.c — N aggregator shards behind the article's three verbs.
 *
 * What it is for: callers (the `tally words` CLI, the Kafka source and publisher) count
 * words and take snapshots without knowing how many shards there are or sending message
 * structs themselves.
 *
 * How it works: each shard is a TallyAggregator on its own arbiter; a word goes to the
 * shard tally_word_shard() picks from its hash (tally-word-hash.h). Operations on all
 * shards fan out, one ask per shard, and complete once every shard answered (fan_out());
 * the synchronous forms run that same fan-out on a private context (run_sync()), so the
 * shards work in parallel even for a blocking caller.
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
tally_aggregator_handle_shard_for (TallyAggregatorHandle *handle, const char *word, gsize len)
{
  g_return_val_if_fail (handle != NULL, 0);
  return tally_word_shard (tally_word_hash (word, len), handle->n_shards);
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
  TallyCountsOptions options; /* owned: tally_counts_options_copy() */
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
  tally_counts_options_clear (&f->options);
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

/* Operations on all shards (GetCounts, DropStore, RestoreStore, TakeChanges): one
 * ask_async per shard, all sent before this returns, then one GTask completes when every
 * shard answered. The sorted replies of GetCounts and TakeChanges are merged (shards own
 * disjoint words, so nothing needs summing or re-sorting) and cut to the top N again. */
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
  tally_counts_options_copy (options, &f->options);
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

/* Runs an async operation to completion on a private GMainContext pushed as the
 * thread-default one, so the shards answer in parallel while the caller blocks. */
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
 * Windows: counts over a time range, expiry
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  OpData op;
  gint64 from_ms;
  gint64 to_ms;
} WindowOp;

static TallyMessage *
make_get_window_counts (guint shard, gpointer data)
{
  WindowOp *w = data;
  return tally_aggregator_get_window_counts_new (w->op.stores, w->op.n_stores, w->from_ms, w->to_ms,
                                                 w->op.options);
}

static TallyMessage *
make_expire_buckets (guint shard, gpointer data)
{
  return tally_aggregator_expire_buckets_new (((WindowOp *)data)->from_ms);
}

void
tally_aggregator_handle_get_window_counts_async (TallyAggregatorHandle *handle,
                                                 const guint32 *stores, guint n_stores,
                                                 gint64 from_ms, gint64 to_ms,
                                                 const TallyCountsOptions *options,
                                                 GCancellable *cancellable,
                                                 GAsyncReadyCallback callback, gpointer user_data)
{
  WindowOp w = { { handle, stores, n_stores, options, 0, NULL }, from_ms, to_ms };

  g_return_if_fail (handle != NULL);

  fan_out (handle, make_get_window_counts, &w, TRUE, options,
           tally_aggregator_handle_get_window_counts_async, cancellable, callback, user_data);
}

static void
start_get_window_counts (gpointer data, GAsyncReadyCallback callback, gpointer user_data)
{
  WindowOp *w = data;
  tally_aggregator_handle_get_window_counts_async (w->op.handle, w->op.stores, w->op.n_stores,
                                                   w->from_ms, w->to_ms, w->op.options, NULL,
                                                   callback, user_data);
}

TallyCounts *
tally_aggregator_handle_get_window_counts (TallyAggregatorHandle *handle, const guint32 *stores,
                                           guint n_stores, gint64 from_ms, gint64 to_ms,
                                           const TallyCountsOptions *options, GError **error)
{
  WindowOp w = { { handle, stores, n_stores, options, 0, NULL }, from_ms, to_ms };
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (handle != NULL, NULL);

  if (!check_not_on_shard (handle, error))
    return NULL;
  result = run_sync (start_get_window_counts, &w);
  return tally_aggregator_handle_get_counts_finish (handle, result, error);
}

void
tally_aggregator_handle_expire_buckets (TallyAggregatorHandle *handle, gint64 before_ms)
{
  WindowOp w = { { handle, NULL, 0, NULL, 0, NULL }, before_ms, 0 };

  g_return_if_fail (handle != NULL);

  for (guint i = 0; i < handle->n_shards; i++)
    {
      TallyMessage *m = make_expire_buckets (i, &w);
      if (!tally_address_try_tell (handle->shards[i], m, NULL))
        tally_message_free (m);
    }
}

GPtrArray *
tally_aggregator_handle_take_window_changes (TallyAggregatorHandle *handle, guint32 store,
                                             gint64 expire_before_ms, GError **error)
{
  g_autoptr (GPtrArray) all
      = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_bucket_changes_free);

  g_return_val_if_fail (handle != NULL, NULL);

  if (!check_not_on_shard (handle, error))
    return NULL;
  /* One ask per shard in turn: a checkpoint's cost, not a snapshot's. */
  for (guint i = 0; i < handle->n_shards; i++)
    {
      GPtrArray *reply = tally_address_ask_sync (
          handle->shards[i], tally_aggregator_take_window_changes_new (store, expire_before_ms), 0,
          error);

      if (reply == NULL)
        return NULL;
      for (guint k = 0; k < reply->len; k++)
        g_ptr_array_add (all, g_steal_pointer (&reply->pdata[k]));
      g_ptr_array_set_free_func (reply, NULL);
      g_ptr_array_unref (reply);
    }
  return g_steal_pointer (&all);
}

gboolean
tally_aggregator_handle_restore_bucket (TallyAggregatorHandle *handle, guint32 store,
                                        gint64 start_ms, TallyCounts *counts, GError **error)
{
  g_return_val_if_fail (handle != NULL && counts != NULL, FALSE);

  if (!check_not_on_shard (handle, error))
    return FALSE;
  for (guint i = 0; i < handle->n_shards; i++)
    if (!tally_address_tell (handle->shards[i],
                             tally_aggregator_restore_bucket_new (store, start_ms, counts), error))
      return FALSE;
  return TRUE;
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
