/* tally-word-batcher.c — words into one AddWords batch per shard, told on flush.
 *
 * The sending thread's cost per word is one tally_word_hash() and one sequential copy into
 * the batch of the word's shard (tally_aggregator_add_words_append(); a word added with a
 * count above 1 takes a record that carries the count). A flush tells each shard its
 * batch; a batch that a full mailbox refused (try_tell) stays pending for that shard, and
 * later adds and the next flush add to it and try again, which is how the Kafka source
 * turns a full shard into paused partitions instead of unbounded memory.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-word-batcher.h"

#include "tally-aggregator-handle.h"
#include "tally-word-hash.h"

struct _TallyWordBatcher
{
  TallyAggregatorHandle *handle;
  guint n_shards;
  guint32 store;
  TallyMessage **pending; /* one AddWords per shard under construction, or NULL */
  gsize n_pending;        /* words (not distinct words) in pending */
  gboolean flushing;      /* a flush_async is in flight */
  /* Windows (tally_word_batcher_set_bucket()); unused, and free, while windowed is FALSE. */
  gboolean windowed;
  gint64 bucket;        /* the bucket the next words go to */
  gint64 *shard_bucket; /* per shard: the bucket its pending batch's words go to now */
};

/* No bucket marker in a shard's batch yet. */
#define NO_MARKER G_MAXINT64

TallyWordBatcher *
tally_word_batcher_new (TallyAggregatorHandle *handle, guint32 store)
{
  TallyWordBatcher *batcher;

  g_return_val_if_fail (handle != NULL, NULL);

  batcher = g_new0 (TallyWordBatcher, 1);
  batcher->handle = tally_aggregator_handle_ref (handle);
  batcher->store = store;
  batcher->n_shards = tally_aggregator_handle_get_n_shards (handle);
  batcher->pending = g_new0 (TallyMessage *, batcher->n_shards);
  batcher->shard_bucket = g_new (gint64, batcher->n_shards);
  for (guint i = 0; i < batcher->n_shards; i++)
    batcher->shard_bucket[i] = NO_MARKER;
  return batcher;
}

void
tally_word_batcher_free (TallyWordBatcher *batcher)
{
  if (batcher == NULL)
    return;
  for (guint i = 0; i < batcher->n_shards; i++)
    g_clear_pointer (&batcher->pending[i], tally_message_free);
  g_free (batcher->pending);
  g_free (batcher->shard_bucket);
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

/* Appends @word, added @count times, to its shard's batch under construction. */
static inline void
append_word (TallyWordBatcher *batcher, const char *word, gsize len, guint64 hash, guint64 count)
{
  guint shard = tally_word_shard (hash, batcher->n_shards);

  if (batcher->pending[shard] == NULL)
    {
      batcher->pending[shard] = tally_aggregator_add_words_new (batcher->store);
      batcher->shard_bucket[shard] = NO_MARKER;
    }
  /* Windows: a marker before the first word of each bucket run in this batch. */
  if (G_UNLIKELY (batcher->windowed) && batcher->shard_bucket[shard] != batcher->bucket)
    {
      tally_aggregator_add_words_append_bucket (batcher->pending[shard], batcher->bucket);
      batcher->shard_bucket[shard] = batcher->bucket;
    }
  if (count == 1)
    tally_aggregator_add_words_append (batcher->pending[shard], word, len, hash);
  else
    tally_aggregator_add_words_append_count (batcher->pending[shard], word, len, hash, count);
}

/* The preconditions of a word added (programmer errors, see tally_word_batcher_add()). */
static inline gboolean
word_ok (TallyWordBatcher *batcher, const char *word, gsize len)
{
  g_return_val_if_fail (batcher != NULL, FALSE);
  g_return_val_if_fail (word != NULL, FALSE);
  g_return_val_if_fail (len > 0 && len < ((gsize)1 << 31), FALSE);
#ifdef G_ENABLE_DEBUG
  g_return_val_if_fail (word_is_valid (word, len), FALSE);
#endif
  return TRUE;
}

void
tally_word_batcher_add (TallyWordBatcher *batcher, const char *word, gsize len)
{
  if (!word_ok (batcher, word, len))
    return;
  batcher->n_pending++;
  append_word (batcher, word, len, tally_word_hash (word, len), 1);
}

void
tally_word_batcher_add_count (TallyWordBatcher *batcher, const char *word, gsize len, guint64 count)
{
  if (!word_ok (batcher, word, len) || count == 0)
    return;
  batcher->n_pending
      = count > G_MAXSIZE - batcher->n_pending ? G_MAXSIZE : batcher->n_pending + (gsize)count;
  append_word (batcher, word, len, tally_word_hash (word, len), count);
}

void
tally_word_batcher_set_bucket (TallyWordBatcher *batcher, gint64 bucket_start_ms)
{
  g_return_if_fail (batcher != NULL);
  g_return_if_fail (bucket_start_ms != NO_MARKER);

  batcher->windowed = TRUE;
  batcher->bucket = bucket_start_ms;
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

  for (guint i = 0; i < batcher->n_shards; i++)
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
          batcher->n_pending -= MIN (n, batcher->n_pending);
          if (!tally_address_tell (tally_aggregator_handle_get_shard_address (batcher->handle, i),
                                   m, &local))
            keep_error (&kept, local);
        }
      else if (tally_address_try_tell (
                   tally_aggregator_handle_get_shard_address (batcher->handle, i), m, &local))
        {
          batcher->pending[i] = NULL;
          batcher->n_pending -= MIN (n, batcher->n_pending);
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

  if (!tally_address_tell_finish (
          tally_aggregator_handle_get_shard_address (d->batcher->handle, tell->shard), result,
          &error))
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

  for (guint i = 0; i < batcher->n_shards; i++)
    {
      TallyMessage *m = batcher->pending[i];
      FlushTell *tell;

      if (m == NULL)
        continue;
      batcher->pending[i] = NULL;
      batcher->n_pending -= MIN (tally_aggregator_add_words_get_n_words (m), batcher->n_pending);
      tell = g_new (FlushTell, 1);
      tell->task = g_object_ref (task);
      tell->shard = i;
      d->pending++;
      tally_address_tell_async (tally_aggregator_handle_get_shard_address (batcher->handle, i), m,
                                cancellable, flush_tell_done, tell);
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
