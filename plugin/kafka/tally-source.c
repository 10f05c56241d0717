/* tally-source.c — the source actor: a Kafka consumer on a GLib main loop.
 *
 * Life cycle of the consumer, in the order this file does it:
 *
 *   configure   tally_source_new(): the caller's properties plus Tally's own (group.id,
 *               manual offset store, range assignor, the rebalance callback)
 *   create      tally_source_new(): rd_kafka_new(RD_KAFKA_CONSUMER) takes the conf
 *   subscribe   started(): rd_kafka_subscribe() to [input] topics (names or ^regex), the
 *               consumer queue's io events written to a pipe watched on the actor's context
 *   poll        on_readable() / poll_batch(): at most [input] max_batch_records records per
 *               wake-up with rd_kafka_consumer_poll(rk, 0), which also serves rebalances
 *   close       stopping(): checkpoint, commit, rd_kafka_consumer_close() (revokes, so the
 *               rebalance callback checkpoints and drops the stores once more)
 *   destroy     stopping(): rd_kafka_destroy()
 *
 * Words go out through one TallyWordBatcher per owned store (= input partition number),
 * flushed without blocking after a wake-up that emptied the consumer queue or left
 * COALESCE_WORDS words pending. A full shard mailbox stops the polling and
 * a 5 ms timer retries the flush; still full after 100 ms, every assigned partition is
 * paused (rd_kafka_pause_partitions()) until the flush goes through, then resumed. Memory
 * is bounded either way: by the batches kept (at most one poll's worth of words)
 * plus librdkafka's own fetch queue limits (queued.max.messages.kbytes).
 *
 * Records: a value of any bytes is fed to the tokenizer whole (NUL and invalid UTF-8
 * separate words; a null or empty value has none). A message carrying an error (err != 0,
 * including partition EOF) is logged and counted as an error event, never as text.
 *
 * Offsets: an Owned entry per owned topic-partition holds its position, the offset after
 * the last record whose words were handed to a batcher. A checkpoint flushes the
 * batchers (blocking), takes each store's changes, writes them with those positions as
 * markers, waits for the acknowledgement and only then calls rd_kafka_offsets_store(), so
 * the auto-commit never commits an offset whose counts are not in the changelog. Without
 * checkpointing, offsets are stored once the batches are in the shards' mailboxes.
 *
 * Rebalances (eager by default; incremental assign/unassign when a cooperative assignor is
 * configured): an assigned partition's store is read back from the changelog and loaded
 * into the shards, and the partition starts at its checkpoint marker, all before
 * rd_kafka_assign() returns control to the poll loop. A revoked partition's store is
 * checkpointed, the offsets committed synchronously, and the store dropped.
 *
 * Windows ([windows] enabled; tally-window-clock.h): each record's timestamp goes through
 * the window clock, which picks the bucket its words count in (a marker in the batch) or
 * calls it late; a timer takes the final counts of each window that closed, and the
 * checkpoint writes buckets, tombstones of expired ones and the clock to the changelog
 * (the "Windows in the changelog" section below), with exactly once the final counts too.
 *
 * Snapshot barrier (handle_snapshot()): flush the batchers, then ask every shard for the
 * counts of the owned stores; the shards handle the asks after this thread's AddWords, so
 * the counts reflect exactly the positions recorded at that moment.
 *
 * Everything here runs on the source's arbiter thread: handlers, timers, the fd watch and
 * librdkafka's rebalance callback (served inside rd_kafka_consumer_poll()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-source.h"

#include "tally-checkpoint.h"
#include "tally-kafka-errors.h"
#include "tally-metrics.h"
#include "tally-tokenizer.h"
#include "tally-window-changelog.h"
#include "tally-window-clock.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* clang-format off */ G_DEFINE_QUARK (tally-source-error-quark, tally_source_error) /* clang-format on */

/* How long a blocked flush waits before trying again, and how long blocking
 * operations on the changelog and the group coordinator may take. */
#define RETRY_FLUSH_MS 5
/* A flush still refused after this long pauses the partitions: librdkafka then stops
 * fetching and drops what it prefetched. Shorter stalls only stop the polling, which
 * keeps the prefetched records (bounded by queued.max.messages.kbytes) and avoids a
 * fetch round trip per stall. */
#define PAUSE_AFTER_MS 100
#define CHECKPOINT_TIMEOUT_MS 10000
/* A checkpoint blocks the source (it does not poll its consumer) for at most two waits of
 * its timeout: committing (or sending the offsets), then aborting; or initialising the
 * transactions of a replaced producer. Each wait is therefore at most this share of
 * max.poll.interval.ms, so that a broker that does not answer costs checkpoints, not the
 * group membership: 10 s each for the default 300 s, 2.5 s for 10 s. */
#define CHECKPOINT_POLL_SHARE 4
#define RESTORE_TIMEOUT_MS 60000
#define COMMIT_TIMEOUT_MS 10000
/* How long the start may wait for the broker to initialise the changelog producer's
 * transactions (InitProducerId). */
#define INIT_TRANSACTIONS_TIMEOUT_MS 30000
/* librdkafka counts a member as failed, and leaves the group, when the application has
 * not called rd_kafka_consumer_poll() for max.poll.interval.ms (KIP-62). The io event
 * wakes this thread only when records or events arrive, so an idle source polls on this
 * timer too (or at half of max.poll.interval.ms when that is shorter). */
#define KEEPALIVE_POLL_MS 1000
/* The queued.min.messages Tally sets when [kafka] does not: librdkafka 2.0.2 stops
 * fetching once the consumer queue holds queued.min.messages records and looks again
 * only when its broker thread next wakes up, up to 1 s later (2.2 made that wait
 * configurable as fetch.queue.backoff.ms). Its default, 100000, is a tenth of a second
 * of Tally's work: the source then waited for records most of the time (1,095,728
 * records of 68 bytes took 6.3 s against 1.3 s with this value). The cost is memory:
 * about 280 bytes per queued record beyond its value, up to queued.max.messages.kbytes
 * of values (the bound librdkafka keeps either way). */
#define QUEUED_MIN_MESSAGES "1000000"

/* topic.metadata.refresh.interval.ms with a ^regex among the input topics, unless [kafka]
 * sets it: librdkafka matches a pattern subscription against the topics of each periodic
 * metadata refresh, so with its default (300000) a topic created to match was consumed
 * only up to 5 minutes later. 10 s costs one metadata request every 10 s. */
#define PATTERN_METADATA_REFRESH_MS "10000"
/* While more records are waiting, a wake-up's words stay in the batchers until this many
 * are pending, so that shards get fewer, larger AddWords messages and are woken less
 * often (every tell to an idle shard is a write() and, on a busy machine, a context
 * switch). An empty consumer queue, a snapshot barrier or a checkpoint flushes them at
 * once, so this adds no delay when the input is idle. */
#define COALESCE_WORDS 65536
/* After checkpoints of at least this many changed words, or snapshots, the memory of
 * their copies (the changes, librdkafka's queued records, the shards' collected entries
 * and sort buffers) goes back to the system with glibc's malloc_trim() at the next
 * checkpoint tick without changes, instead of staying in the process's RSS as free heap
 * of several malloc arenas. malloc_trim() never shrinks the top of a thread's arena: that
 * takes a trim threshold that freeing large blocks does not raise, which `tally run` fixes
 * at its start (fix_malloc_thresholds() in plugin/cli/tally-cmd-run.c); a program that
 * loads Tally as a plugin keeps its own malloc settings. */
#define TRIM_AFTER_WORDS 65536
/* The statistics.interval.ms Tally sets when [metrics] listen is set and [kafka] does
 * not set it: consumer lag and broker figures at most this old. */
#define STATISTICS_INTERVAL_MS "5000"

/* One owned store: an input partition number, whatever the topic. */
typedef struct
{
  guint32 id;
  TallyWordBatcher *batcher;
  TallyCounts *unwritten; /* changes taken but not acknowledged by the changelog */
  gboolean dirty;         /* positions moved since the last checkpoint */
  gboolean broken;        /* could not be restored: its partitions stay paused */
  /* Windows: bucket changes taken but not acknowledged (TallyBucketChanges, in order),
   * and the clock values last written. */
  GPtrArray *window_unwritten;
} Store;

/* One owned input topic-partition. */
typedef struct
{
  char *topic;
  gint32 partition;
  gint64 position; /* next offset not yet in a batcher; RD_KAFKA_OFFSET_INVALID if unknown */
  gint64 stored;   /* last offset stored for the commit */
  TallyMetricsPartition *metrics; /* NULL without a registry */
} Owned;

struct _TallySource
{
  TallyActor parent_instance;

  TallyAggregatorHandle *handle;
  TallyTokenizer *tokenizer;
  TallyCheckpoint *checkpoint; /* NULL when checkpointing is off */
  char **topics;
  guint max_batch_records;
  guint checkpoint_interval_ms;
  int changelog_partitions; /* known to exist, each with a leader */

  rd_kafka_t *consumer;
  rd_kafka_queue_t *queue; /* the consumer queue; io events go to wake_fds[1] */
  int wake_fds[2];
  GSource *watch;
  guint poll_timer;
  guint retry_timer;
  guint checkpoint_timer;
  guint keepalive_timer;
  guint keepalive_ms;
  int checkpoint_timeout_ms; /* CHECKPOINT_TIMEOUT_MS, or less (CHECKPOINT_POLL_SHARE) */

  GHashTable *stores; /* store id -> Store */
  GPtrArray *owned;   /* of Owned */
  gboolean blocked;   /* a batcher is full: polling stops */
  gboolean paused;    /* ...for long enough that the partitions are paused */
  gint64 blocked_since_us;
  gboolean stopped_consuming;
  gboolean closed;
  gboolean trim_due; /* big checkpoints or snapshots since the last malloc_trim() */

  /* Windows ([windows] enabled); NULL clock when off, and then no cost per record. */
  TallyWindowClock *clock;
  gboolean late_drop; /* [windows] late = drop */
  guint window_timer;
  TallySourceWindowClosedFunc window_closed; /* [windows] publish */
  gpointer window_closed_data;
  GDestroyNotify window_closed_destroy;
  gint64 expiry_written;       /* the newest expiry the window timer saw */
  GHashTable *window_restores; /* during a restore: partition -> TallyWindowRestore */
  /* [windows] publish with exactly once: final counts go out in the checkpoint's
   * transaction, with the published-window markers. */
  gboolean publish_in_checkpoint;
  char *output_topic;
  gsize max_record_bytes;
  char *instance_id;
  GPtrArray *pending_finals; /* TallySnapshotCut, taken, not yet committed */

  /* Statistics. */
  TallyMetrics *metrics; /* nullable; tally-source-metrics below */
  gsize records;         /* atomic (g_atomic_pointer_*), read from any thread */
  gsize late_records;    /* atomic: records after their window closed */
  guint64 error_events;
  guint64 words;
};

G_DEFINE_FINAL_TYPE (TallySource, tally_source, TALLY_TYPE_ACTOR)

static void poll_batch (TallySource *self);
static void mark_dirty (TallySource *self, GPtrArray *stores);
static gboolean checkpoint_stores (TallySource *self, GArray *store_ids, gboolean commit);
static void publish_metrics (TallySource *self);

/* ---------------------------------------------------------------------------------------
 * Stores and positions
 * ------------------------------------------------------------------------------------- */

static void
store_free (gpointer data)
{
  Store *store = data;

  g_clear_pointer (&store->window_unwritten, g_ptr_array_unref);
  tally_word_batcher_free (store->batcher);
  g_clear_pointer (&store->unwritten, tally_counts_unref);
  g_free (store);
}

static void
owned_free (gpointer data)
{
  Owned *owned = data;

  g_free (owned->topic);
  g_free (owned);
}

static Owned *
find_owned (TallySource *self, const char *topic, gint32 partition)
{
  for (guint i = 0; i < self->owned->len; i++)
    {
      Owned *o = g_ptr_array_index (self->owned, i);

      if (o->partition == partition && strcmp (o->topic, topic) == 0)
        return o;
    }
  return NULL;
}

static gboolean
is_broken (TallySource *self, gint32 partition)
{
  Store *store = g_hash_table_lookup (self->stores, GUINT_TO_POINTER ((guint)partition));

  return store != NULL && store->broken;
}

/* The owned topic-partitions, with their positions or without; with @usable_only, not
 * those whose store could not be restored. */
static rd_kafka_topic_partition_list_t *
owned_list (TallySource *self, gboolean with_positions, gboolean usable_only)
{
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new ((int)self->owned->len);

  for (guint i = 0; i < self->owned->len; i++)
    {
      Owned *o = g_ptr_array_index (self->owned, i);
      rd_kafka_topic_partition_t *tp;

      if (usable_only && is_broken (self, o->partition))
        continue;
      tp = rd_kafka_topic_partition_list_add (list, o->topic, o->partition);
      tp->offset = with_positions ? o->position : RD_KAFKA_OFFSET_INVALID;
    }
  return list;
}

/* Sends every pending batch; returns FALSE with TALLY_ACTOR_ERROR_FULL when a mailbox is
 * full and @may_block is FALSE. */
static gboolean
flush_batchers (TallySource *self, gboolean may_block, GError **error)
{
  GHashTableIter iter;
  gpointer value;
  gboolean ok = TRUE;

  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Store *store = value;
      g_autoptr (GError) local_error = NULL;

      if (tally_word_batcher_get_pending_words (store->batcher) == 0)
        continue;
      if (!tally_word_batcher_flush (store->batcher, may_block, &local_error))
        {
          if (ok)
            g_propagate_error (error, g_steal_pointer (&local_error));
          ok = FALSE;
        }
    }
  return ok;
}

static gsize
pending_words (TallySource *self)
{
  GHashTableIter iter;
  gpointer value;
  gsize n = 0;

  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    n += tally_word_batcher_get_pending_words (((Store *)value)->batcher);
  return n;
}

/* Without a changelog, offsets are stored as soon as the words are in the mailboxes. */
static void
store_offsets_unchecked (TallySource *self)
{
  g_autoptr (GPtrArray) changed = g_ptr_array_new ();
  rd_kafka_topic_partition_list_t *list;
  rd_kafka_resp_err_t err;

  for (guint i = 0; i < self->owned->len; i++)
    {
      Owned *o = g_ptr_array_index (self->owned, i);

      if (o->position >= 0 && o->position != o->stored)
        g_ptr_array_add (changed, o);
    }
  if (changed->len == 0)
    return;
  list = rd_kafka_topic_partition_list_new ((int)changed->len);
  for (guint i = 0; i < changed->len; i++)
    {
      Owned *o = g_ptr_array_index (changed, i);

      rd_kafka_topic_partition_list_add (list, o->topic, o->partition)->offset = o->position;
      o->stored = o->position;
    }
  err = rd_kafka_offsets_store (self->consumer, list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_warning ("cannot store offsets: %s", rd_kafka_err2str (err));
  rd_kafka_topic_partition_list_destroy (list);
}

/* ---------------------------------------------------------------------------------------
 * Backpressure
 * ------------------------------------------------------------------------------------- */

static void
set_paused (TallySource *self, gboolean paused)
{
  rd_kafka_topic_partition_list_t *list;

  if (self->owned->len == 0 || self->consumer == NULL)
    return;
  list = owned_list (self, FALSE, !paused);
  if (paused)
    rd_kafka_pause_partitions (self->consumer, list);
  else
    rd_kafka_resume_partitions (self->consumer, list);
  rd_kafka_topic_partition_list_destroy (list);
}

static gboolean
on_poll_later (gpointer user_data)
{
  TallySource *self = user_data;

  self->poll_timer = 0;
  poll_batch (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_poll (TallySource *self)
{
  if (self->poll_timer == 0 && !self->stopped_consuming)
    self->poll_timer = tally_actor_run_later (TALLY_ACTOR (self), 0, on_poll_later, self, NULL);
}

static void
unblock (TallySource *self)
{
  if (!self->blocked)
    return;
  self->blocked = FALSE;
  if (self->metrics != NULL)
    tally_metrics_add (self->metrics, TALLY_METRICS_BACKPRESSURE_US,
                       (guint64)(g_get_monotonic_time () - self->blocked_since_us));
  if (self->retry_timer != 0)
    {
      tally_actor_cancel_timer (TALLY_ACTOR (self), self->retry_timer);
      self->retry_timer = 0;
    }
  if (self->paused && !self->stopped_consuming)
    {
      set_paused (self, FALSE);
      g_debug ("source: shard mailboxes have room again, partitions resumed");
    }
  self->paused = FALSE;
  schedule_poll (self);
}

static gboolean
on_retry_flush (gpointer user_data)
{
  TallySource *self = user_data;
  g_autoptr (GError) error = NULL;

  if (flush_batchers (self, FALSE, &error))
    {
      self->retry_timer = 0;
      if (self->checkpoint == NULL)
        store_offsets_unchecked (self);
      unblock (self);
      return G_SOURCE_REMOVE;
    }
  if (!g_error_matches (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL))
    g_warning ("source: cannot send words to the aggregators: %s", error->message);
  if (!self->paused
      && g_get_monotonic_time () - self->blocked_since_us
             >= PAUSE_AFTER_MS * G_TIME_SPAN_MILLISECOND)
    {
      self->paused = TRUE;
      set_paused (self, TRUE);
      if (self->metrics != NULL)
        tally_metrics_add (self->metrics, TALLY_METRICS_PAUSES, 1);
      g_debug ("source: shard mailboxes full for %d ms, partitions paused", PAUSE_AFTER_MS);
    }
  return G_SOURCE_CONTINUE;
}

static void
block (TallySource *self)
{
  if (self->blocked)
    return;
  self->blocked = TRUE;
  self->blocked_since_us = g_get_monotonic_time ();
  if (self->metrics != NULL)
    tally_metrics_add (self->metrics, TALLY_METRICS_MAILBOX_FULL, 1);
  self->retry_timer
      = tally_actor_run_interval (TALLY_ACTOR (self), RETRY_FLUSH_MS, on_retry_flush, self, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------- */

static void
on_word (const char *word, gsize len, gpointer user_data)
{
  tally_word_batcher_add (user_data, word, len);
}

static void
handle_record (TallySource *self, rd_kafka_message_t *m)
{
  const char *topic = m->rkt != NULL ? rd_kafka_topic_name (m->rkt) : "?";
  Owned *owned;
  Store *store;
  gsize n_words = 0;

  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      /* An event, not a record: never counted as text. */
      self->error_events++;
      if (self->metrics != NULL && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        tally_metrics_add (self->metrics, TALLY_METRICS_KAFKA_ERRORS, 1);
      if (tally_kafka_errors_check (m->err, "input consumer", m->rkt != NULL ? topic : NULL,
                                    rd_kafka_message_errstr (m)))
        return; /* a missing ACL or bad credentials: fatal in `tally run` */
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        g_debug ("source: %s [%" G_GINT32_FORMAT "] reached the end at offset %" G_GINT64_FORMAT,
                 topic, m->partition, m->offset);
      else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
               || m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
        /* A subscribed topic not created yet (or deleted): the consumer keeps its
         * subscription and picks the topic up when it appears; not a fault of Tally's. */
        g_message ("source: input topic %s is not available (%s); consuming it once it exists",
                   topic, rd_kafka_message_errstr (m));
      else
        g_warning ("source: consumer error%s%s: %s", m->rkt != NULL ? " on " : "",
                   m->rkt != NULL ? topic : "", rd_kafka_message_errstr (m));
      return;
    }

  owned = find_owned (self, topic, m->partition);
  store = g_hash_table_lookup (self->stores, GUINT_TO_POINTER ((guint)m->partition));
  if (store != NULL && store->broken)
    return; /* paused; a record fetched before the pause is read again by the next owner */
  if (owned == NULL || store == NULL)
    {
      g_warning ("source: record from %s [%" G_GINT32_FORMAT "] which is not assigned, ignored",
                 topic, m->partition);
      return;
    }

  /* Windows: the record's timestamp picks the bucket its words count in, besides the
   * all-time totals; a record for a closed window counts in the all-time totals only, or
   * not at all (late = drop). */
  if (self->clock != NULL)
    {
      gint64 bucket;

      if (tally_window_clock_observe (self->clock, (guint32)m->partition,
                                      rd_kafka_message_timestamp (m, NULL),
                                      g_get_real_time () / 1000, &bucket))
        tally_word_batcher_set_bucket (store->batcher, bucket);
      else
        {
          g_atomic_pointer_add (&self->late_records, 1);
          tally_word_batcher_set_bucket (store->batcher, TALLY_WORD_BATCHER_NO_BUCKET);
          if (self->late_drop)
            goto counted;
        }
    }

  /* A null value (tombstone) or an empty one has no words; any bytes at all are safe to
   * feed (NUL and invalid UTF-8 separate words). */
  if (m->payload != NULL && m->len > 0)
    n_words = tally_tokenizer_feed (self->tokenizer, m->payload, m->len, on_word, store->batcher);
  self->words += n_words;
counted:
  if (owned->metrics != NULL)
    tally_metrics_partition_add_record (owned->metrics, m->len, n_words);
  owned->position = m->offset + 1;
  store->dirty = TRUE;
  g_atomic_pointer_add (&self->records, 1);
}

static void
poll_batch (TallySource *self)
{
  guint n = 0;
  g_autoptr (GError) error = NULL;

  if (self->consumer == NULL || self->blocked || self->stopped_consuming)
    return;

  while (n < self->max_batch_records)
    {
      rd_kafka_message_t *m = rd_kafka_consumer_poll (self->consumer, 0);

      if (m == NULL)
        break;
      handle_record (self, m);
      rd_kafka_message_destroy (m);
      n++;
      if (self->stopped_consuming)
        break;
    }
  if (n > 0)
    publish_metrics (self);

  if (n == self->max_batch_records && !self->stopped_consuming
      && pending_words (self) < COALESCE_WORDS)
    {
      schedule_poll (self);
      return;
    }

  if (!flush_batchers (self, FALSE, &error))
    {
      if (g_error_matches (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL))
        block (self);
      else
        g_warning ("source: cannot send words to the aggregators: %s", error->message);
      return;
    }
  if (self->checkpoint == NULL)
    store_offsets_unchecked (self);

  /* The io event only fires when the queue goes from empty to non-empty: if this batch
   * stopped at its limit, come back for the rest. */
  if (n == self->max_batch_records)
    schedule_poll (self);
}

static gboolean
on_readable (int fd, GIOCondition condition, gpointer user_data)
{
  TallySource *self = user_data;
  char buf[64];

  while (read (fd, buf, sizeof buf) > 0)
    ;
  poll_batch (self);
  return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------------------- */

/* Keeps @changes (transfer full) in store->unwritten until the changelog acknowledged
 * them, merged with what an earlier failed checkpoint left there: the newer count of each
 * word wins (counts are totals, so a sum would be wrong). */
static void
store_keep_changes (Store *store, TallyCounts *changes)
{
  g_autoptr (TallyCountsBuilder) builder = NULL;
  gsize n_old = 0, n_new = 0;
  const TallyWordCount *old_entries, *new_entries;

  if (changes == NULL)
    return;
  if (store->unwritten == NULL)
    {
      store->unwritten = changes;
      return;
    }
  builder = tally_counts_builder_new ();
  old_entries = tally_counts_get_entries (store->unwritten, &n_old);
  new_entries = tally_counts_get_entries (changes, &n_new);
  for (gsize k = 0; k < n_new; k++)
    tally_counts_builder_add (builder, new_entries[k].word, new_entries[k].len,
                              new_entries[k].count);
  for (gsize k = 0; k < n_old; k++)
    if (tally_counts_lookup (changes, old_entries[k].word, old_entries[k].len) == 0)
      tally_counts_builder_add (builder, old_entries[k].word, old_entries[k].len,
                                old_entries[k].count);
  g_clear_pointer (&store->unwritten, tally_counts_unref);
  tally_counts_unref (changes);
  store->unwritten = tally_counts_builder_end (builder);
}

/* The stores of @stores (every store when NULL) must be checkpointed again. */
static void
mark_dirty (TallySource *self, GPtrArray *stores)
{
  GHashTableIter iter;
  gpointer value;

  if (stores != NULL)
    {
      for (guint i = 0; i < stores->len; i++)
        ((Store *)g_ptr_array_index (stores, i))->dirty = TRUE;
      return;
    }
  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    ((Store *)value)->dirty = TRUE;
}

/* Exactly once: commits the open transaction with the input offsets of the @written
 * stores and the consumer's group metadata, so that the group coordinator refuses a
 * member of an old generation (KIP-447) and the changelog records and the offsets become
 * visible together or not at all. */
static gboolean
commit_transaction (TallySource *self, GPtrArray *written)
{
  g_autoptr (GError) error = NULL;
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (0);
  rd_kafka_consumer_group_metadata_t *group_metadata;
  gboolean ok;

  for (guint i = 0; i < written->len; i++)
    {
      Store *store = g_ptr_array_index (written, i);

      for (guint j = 0; j < self->owned->len; j++)
        {
          Owned *o = g_ptr_array_index (self->owned, j);

          if ((guint32)o->partition == store->id && o->position >= 0)
            rd_kafka_topic_partition_list_add (list, o->topic, o->partition)->offset = o->position;
        }
    }
  group_metadata = rd_kafka_consumer_group_metadata (self->consumer);
  ok = tally_checkpoint_commit (self->checkpoint, list, group_metadata, self->checkpoint_timeout_ms,
                                &error);
  rd_kafka_consumer_group_metadata_destroy (group_metadata);
  if (self->metrics != NULL)
    tally_metrics_add (
        self->metrics,
        ok ? TALLY_METRICS_TRANSACTIONS_COMMITTED : TALLY_METRICS_TRANSACTIONS_ABORTED, 1);
  if (!ok)
    {
      if (g_error_matches (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_FENCED))
        g_warning ("source: fenced, checkpoint aborted: %s; this instance's partitions are "
                   "restored from the changelog when it is assigned them again",
                   error->message);
      else
        g_warning ("source: checkpoint aborted, tried again at the next one: %s", error->message);
      mark_dirty (self, written);
    }
  else
    for (guint i = 0; i < written->len; i++)
      {
        Store *store = g_ptr_array_index (written, i);

        g_clear_pointer (&store->unwritten, tally_counts_unref);
        if (store->window_unwritten != NULL)
          g_ptr_array_set_size (store->window_unwritten, 0);
        for (int k = 0; k < list->cnt; k++)
          if ((guint32)list->elems[k].partition == store->id)
            {
              Owned *o = find_owned (self, list->elems[k].topic, list->elems[k].partition);

              if (o != NULL)
                o->stored = list->elems[k].offset;
            }
      }
  rd_kafka_topic_partition_list_destroy (list);
  return ok;
}

/* Windows in the changelog (tally-window-changelog.h): takes the store's bucket changes
 * (dropping expired buckets) and writes them after those of failed checkpoints, then the
 * clock, before the offset markers. */
static gboolean
checkpoint_windows (TallySource *self, Store *store, GError **error)
{
  gint64 now = g_get_real_time () / 1000;
  gint64 expiry = tally_window_clock_get_expiry (self->clock, now);
  g_autoptr (GPtrArray) changes = NULL;

  changes = tally_aggregator_handle_take_window_changes (self->handle, store->id, expiry, error);
  if (changes == NULL)
    return FALSE;
  if (store->window_unwritten == NULL)
    store->window_unwritten
        = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_bucket_changes_free);
  for (guint i = 0; i < changes->len; i++)
    g_ptr_array_add (store->window_unwritten, g_steal_pointer (&changes->pdata[i]));
  g_ptr_array_set_free_func (changes, NULL);
  return tally_window_changelog_write (
      self->checkpoint, store->id, store->window_unwritten,
      tally_window_clock_get_stream_time (self->clock, store->id, now),
      tally_window_clock_get_published_upto (self->clock, store->id), error);
}

/* A restore's extension records (tally_checkpoint_set_extension_func()). */
static void
on_window_record (gint32 partition, const void *key, gsize key_len, const void *value,
                  gsize value_len, gpointer user_data)
{
  TallySource *self = user_data;
  TallyWindowRestore *restore;

  if (self->window_restores == NULL)
    return;
  restore = g_hash_table_lookup (self->window_restores, GINT_TO_POINTER (partition));
  if (restore == NULL)
    {
      restore = tally_window_restore_new ();
      g_hash_table_insert (self->window_restores, GINT_TO_POINTER (partition), restore);
    }
  tally_window_restore_add (restore, key, key_len, value, value_len);
}

/* The pending final counts, queued in the open transaction. */
static gboolean
write_pending_finals (TallySource *self, GError **error)
{
  for (guint i = 0; self->pending_finals != NULL && i < self->pending_finals->len; i++)
    if (!tally_window_changelog_write_final (self->checkpoint, self->output_topic,
                                             self->max_record_bytes, self->instance_id,
                                             g_ptr_array_index (self->pending_finals, i), error))
      return FALSE;
  return TRUE;
}

/* Checkpoints @store_ids (all owned stores when NULL); when @commit, commits the stored
 * offsets synchronously afterwards. Returns FALSE if any store could not be checkpointed
 * (its changes are kept for the next attempt and its offsets are not stored). */
static gboolean
checkpoint_stores_untimed (TallySource *self, GArray *store_ids, gboolean commit)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) ids = NULL;
  g_autoptr (GPtrArray) written = g_ptr_array_new ();
  gboolean ok = TRUE;
  gboolean transactional = FALSE;
  gboolean begun = FALSE;
  gsize n_changed = 0;
  gint64 started_us = g_get_monotonic_time ();

  if (self->consumer == NULL)
    return TRUE;
  /* The words of every record up to the positions must be in the shards first. */
  if (!flush_batchers (self, TRUE, &error))
    {
      g_warning ("source: checkpoint skipped, words could not be sent: %s", error->message);
      return FALSE;
    }
  unblock (self);

  /* A member whose assignment was lost (its session expired, a long pause) no longer owns
   * its partitions: another member may be counting them already. It never writes. */
  if (rd_kafka_assignment_lost (self->consumer))
    {
      g_message ("source: assignment lost: no checkpoint; the partitions' new owner restores "
                 "them from the changelog");
      return FALSE;
    }

  if (self->checkpoint == NULL)
    {
      store_offsets_unchecked (self);
      goto commit;
    }
  transactional = tally_checkpoint_is_transactional (self->checkpoint);

  if (store_ids == NULL)
    {
      GHashTableIter iter;
      gpointer key;

      ids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_hash_table_iter_init (&iter, self->stores);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        {
          guint32 id = GPOINTER_TO_UINT (key);

          g_array_append_val (ids, id);
        }
      store_ids = ids;
    }

  for (guint i = 0; i < store_ids->len; i++)
    {
      guint32 id = g_array_index (store_ids, guint32, i);
      Store *store = g_hash_table_lookup (self->stores, GUINT_TO_POINTER (id));
      g_autoptr (TallyCounts) changes = NULL;
      g_autoptr (GHashTable) offsets = NULL;
      gboolean ok_store = TRUE;

      if (store == NULL || store->broken || (!store->dirty && store->unwritten == NULL))
        continue;
      changes = tally_aggregator_handle_take_changes (self->handle, id, &error);
      if (changes == NULL)
        {
          g_warning ("source: cannot take the changes of store %u: %s", id, error->message);
          g_clear_error (&error);
          ok = FALSE;
          continue;
        }
      n_changed += tally_counts_get_n_words (changes);
      offsets = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
      for (guint j = 0; j < self->owned->len; j++)
        {
          Owned *o = g_ptr_array_index (self->owned, j);

          if ((guint32)o->partition == id && o->position >= 0)
            g_hash_table_insert (offsets, o->topic, g_memdup2 (&o->position, sizeof (gint64)));
        }
      /* Exactly once: every store of this checkpoint in one transaction, begun when the
       * first one has something to write. */
      if (transactional && !begun)
        {
          if (!tally_checkpoint_begin (self->checkpoint, &error))
            {
              g_warning ("source: checkpoint not written: %s", error->message);
              store_keep_changes (store, g_steal_pointer (&changes));
              mark_dirty (self, NULL);
              return FALSE;
            }
          begun = TRUE;
        }
      if (tally_checkpoint_wants_base (self->checkpoint, (gint32)id))
        {
          /* A base: every word of the store, which holds the changes (and any unwritten
           * ones) too. Asked after TakeChanges, so no word is older than the changes. */
          g_autoptr (TallyCounts) all
              = tally_aggregator_handle_get_store_counts (self->handle, &id, 1, NULL, &error);

          ok_store
              = all != NULL
                /* Windows before the offset markers: a restore that reaches a marker
                 * has them. */
                && (self->clock == NULL || checkpoint_windows (self, store, &error))
                && tally_checkpoint_write_base (self->checkpoint, (gint32)id, all, offsets, &error);
        }
      else
        /* Changes of a failed checkpoint go first: the newer counts then win on restore. */
        ok_store
            = (store->unwritten == NULL
               || tally_checkpoint_write (self->checkpoint, (gint32)id, store->unwritten, NULL,
                                          &error))
              && (self->clock == NULL || checkpoint_windows (self, store, &error))
              && tally_checkpoint_write (self->checkpoint, (gint32)id, changes, offsets, &error);
      if (!ok_store)
        {
          g_warning ("source: checkpoint of store %u failed: %s", id, error->message);
          g_clear_error (&error);
          ok = FALSE;
          ok_store = FALSE;
        }
      /* Until acknowledged, the changes stay in store->unwritten for the next attempt. */
      store_keep_changes (store, g_steal_pointer (&changes));
      if (transactional && !ok_store)
        {
          /* Nothing of a transaction with a missing store may commit. */
          tally_checkpoint_abort (self->checkpoint);
          if (self->metrics != NULL)
            tally_metrics_add (self->metrics, TALLY_METRICS_TRANSACTIONS_ABORTED, 1);
          mark_dirty (self, NULL);
          return FALSE;
        }
      /* A store whose records were not all queued has no complete checkpoint: its offsets
       * must not be stored, even if what was queued gets acknowledged. */
      if (ok_store)
        {
          store->dirty = FALSE;
          g_ptr_array_add (written, store);
        }
    }

  if (transactional && begun)
    {
      /* Final counts of closed windows, in the same transaction as the markers that say
       * they were published. */
      if (!write_pending_finals (self, &error))
        {
          g_warning ("source: final window counts not written: %s", error->message);
          tally_checkpoint_abort (self->checkpoint);
          mark_dirty (self, NULL);
          return FALSE;
        }
      if (!commit_transaction (self, written))
        return FALSE;
      if (self->pending_finals != NULL && self->pending_finals->len > 0)
        {
          g_message ("source: final counts of %u window(s) published with the checkpoint",
                     self->pending_finals->len);
          g_ptr_array_set_size (self->pending_finals, 0);
        }
    }
  else if (written->len > 0)
    {
      rd_kafka_topic_partition_list_t *list;
      rd_kafka_resp_err_t err;

      if (!tally_checkpoint_flush (self->checkpoint, self->checkpoint_timeout_ms, &error))
        {
          g_warning ("source: checkpoint not acknowledged, offsets not stored: %s", error->message);
          for (guint i = 0; i < written->len; i++)
            ((Store *)g_ptr_array_index (written, i))->dirty = TRUE;
          return FALSE;
        }
      /* Acknowledged: now, and only now, the offsets may be committed. */
      list = rd_kafka_topic_partition_list_new (0);
      for (guint i = 0; i < written->len; i++)
        {
          Store *store = g_ptr_array_index (written, i);

          g_clear_pointer (&store->unwritten, tally_counts_unref);
          if (store->window_unwritten != NULL)
            g_ptr_array_set_size (store->window_unwritten, 0);
          for (guint j = 0; j < self->owned->len; j++)
            {
              Owned *o = g_ptr_array_index (self->owned, j);

              if ((guint32)o->partition == store->id && o->position >= 0
                  && o->position != o->stored)
                {
                  rd_kafka_topic_partition_list_add (list, o->topic, o->partition)->offset
                      = o->position;
                  o->stored = o->position;
                }
            }
        }
      if (list->cnt > 0)
        {
          err = rd_kafka_offsets_store (self->consumer, list);
          if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            g_warning ("source: cannot store offsets: %s", rd_kafka_err2str (err));
        }
      rd_kafka_topic_partition_list_destroy (list);
    }
#ifdef __GLIBC__
  /* Trimmed at the first checkpoint tick with no changes after big checkpoints or
   * snapshots, when the shards and the producers have freed their copies; never while
   * the input keeps coming. */
  if (n_changed >= TRIM_AFTER_WORDS)
    self->trim_due = TRUE;
  else if (n_changed == 0 && written->len == 0 && self->trim_due)
    {
      malloc_trim (0);
      self->trim_due = FALSE;
    }
#endif
  if (written->len > 0)
    g_debug ("source: checkpoint of %u store(s), %" G_GSIZE_FORMAT " changed word(s) %s in "
             "%.1f ms",
             written->len, n_changed, transactional ? "committed" : "acknowledged",
             (double)(g_get_monotonic_time () - started_us) / 1000);

commit:
  /* Exactly once: the offsets were committed with the transaction. */
  if (commit && !transactional)
    {
      rd_kafka_resp_err_t err = rd_kafka_commit (self->consumer, NULL, 0);

      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        g_warning ("source: commit failed: %s", rd_kafka_err2str (err));
    }
  return ok;
}

/* checkpoint_stores_untimed(), timed for tally_checkpoint_duration_seconds. */
static gboolean
checkpoint_stores (TallySource *self, GArray *store_ids, gboolean commit)
{
  gint64 started_us = g_get_monotonic_time ();
  gboolean ok = checkpoint_stores_untimed (self, store_ids, commit);

  if (self->metrics != NULL && self->checkpoint != NULL)
    {
      if (ok)
        tally_metrics_observe (self->metrics, TALLY_METRICS_CHECKPOINT_SECONDS,
                               g_get_monotonic_time () - started_us);
      else
        tally_metrics_add (self->metrics, TALLY_METRICS_CHECKPOINT_FAILURES, 1);
    }
  publish_metrics (self); /* the committed offsets moved */
  return ok;
}

static gboolean
on_checkpoint_timer (gpointer user_data)
{
  TallySource *self = user_data;

  if (!self->stopped_consuming)
    checkpoint_stores (self, NULL, FALSE);
  return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------------------------------
 * Rebalances
 * ------------------------------------------------------------------------------------- */

static int
input_partition_count (TallySource *self, rd_kafka_topic_partition_list_t *partitions)
{
  int count = 0;

  for (int i = 0; i < partitions->cnt; i++)
    {
      const struct rd_kafka_metadata *md = NULL;
      rd_kafka_topic_t *rkt = rd_kafka_topic_new (self->consumer, partitions->elems[i].topic, NULL);

      if (rd_kafka_metadata (self->consumer, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          if (md->topic_cnt == 1)
            count = MAX (count, md->topics[0].partition_cnt);
          rd_kafka_metadata_destroy (md);
        }
      rd_kafka_topic_destroy (rkt);
      count = MAX (count, partitions->elems[i].partition + 1);
    }
  return count;
}

static void
on_assign (TallySource *self, rd_kafka_topic_partition_list_t *partitions)
{
  g_autoptr (GHashTable) restored
      = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify)g_hash_table_unref);
  g_autoptr (GError) error = NULL;
  rd_kafka_topic_partition_list_t *committed = NULL;
  gint64 started_us = g_get_monotonic_time ();

  if (self->metrics != NULL)
    tally_metrics_set_state (self->metrics, self->owned->len, TRUE, 0, FALSE);

  /* Changelog partition p holds store p: it needs a partition for every assigned input
   * partition, also one of a topic that appeared (regex) or grew while Tally runs. */
  if (self->checkpoint != NULL && partitions->cnt > 0)
    {
      int needed = 0;

      for (int i = 0; i < partitions->cnt; i++)
        needed = MAX (needed, partitions->elems[i].partition + 1);
      if (needed > self->changelog_partitions)
        {
          needed = MAX (needed, input_partition_count (self, partitions));
          if (tally_checkpoint_ensure_topic (self->checkpoint, needed, CHECKPOINT_TIMEOUT_MS,
                                             &error))
            self->changelog_partitions = needed;
          else
            {
              g_critical ("source: %s; input partitions %d and above stay paused", error->message,
                          self->changelog_partitions);
              g_clear_error (&error);
            }
        }
    }

  /* Restore every newly owned store before anything of it is consumed: all of them at
   * once (tally_checkpoint_restore_many() reads their changelog partitions concurrently);
   * when that fails, one by one, so that one bad partition does not keep the others paused. */
  {
    g_autoptr (GArray) wanted = g_array_new (FALSE, TRUE, sizeof (TallyRestoredStore));
    g_autoptr (GHashTable) window_restores = NULL;
    gint64 started_us = g_get_monotonic_time ();
    gboolean together;

    for (int i = 0; i < partitions->cnt; i++)
      {
        guint32 id = (guint32)partitions->elems[i].partition;
        Store *store;

        if (g_hash_table_contains (self->stores, GUINT_TO_POINTER (id)))
          continue;
        store = g_new0 (Store, 1);
        store->id = id;
        store->batcher = tally_word_batcher_new (self->handle, id);
        g_hash_table_insert (self->stores, GUINT_TO_POINTER (id), store);

        if (self->checkpoint != NULL && (gint)id >= self->changelog_partitions)
          {
            /* No changelog partition to checkpoint it to: never consumed, never looping on
             * failed writes. */
            store->broken = TRUE;
            continue;
          }
        if (self->checkpoint != NULL)
          {
            TallyRestoredStore wanted_store = { .partition = (gint32)id };

            g_array_append_val (wanted, wanted_store);
          }
      }
    /* Windows: each partition's extension records are collected while it is read. */
    if (self->clock != NULL)
      window_restores
          = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify)tally_window_restore_free);
    self->window_restores = window_restores;
    together
        = wanted->len > 0
          && tally_checkpoint_restore_many (self->checkpoint, (TallyRestoredStore *)wanted->data,
                                            wanted->len, RESTORE_TIMEOUT_MS, &error);
    if (wanted->len > 1 && !together)
      {
        g_warning ("source: restoring %u stores together failed: %s; one by one", wanted->len,
                   error->message);
        g_clear_error (&error);
        if (window_restores != NULL)
          g_hash_table_remove_all (window_restores);
      }
    for (guint i = 0; i < wanted->len; i++)
      {
        TallyRestoredStore *r = &g_array_index (wanted, TallyRestoredStore, i);
        guint32 id = (guint32)r->partition;
        Store *store = g_hash_table_lookup (self->stores, GUINT_TO_POINTER (id));

        if (!together && window_restores != NULL)
          g_hash_table_remove (window_restores, GUINT_TO_POINTER (id));
        if (!together
            && (wanted->len == 1 /* its error is in error already */
                || !tally_checkpoint_restore_many (self->checkpoint, r, 1, RESTORE_TIMEOUT_MS,
                                                   &error)))
          {
            /* Consuming with an empty store would lose the counts before the committed
             * offset: the partition stays paused instead, until it moves elsewhere or
             * Tally restarts, and snapshots do not claim it. */
            g_critical ("source: cannot restore store %u: %s; its partitions stay paused", id,
                        error->message);
            g_clear_error (&error);
            store->broken = TRUE;
            continue;
          }
        if (window_restores != NULL)
          {
            g_autoptr (TallyWindowRestore) none = NULL;
            TallyWindowRestore *w = g_hash_table_lookup (window_restores, GUINT_TO_POINTER (id));

            if (w == NULL)
              w = none = tally_window_restore_new ();
            if (!tally_window_restore_apply (w, id, self->handle, self->clock, &error))
              {
                g_critical ("source: cannot restore the windows of store %u: %s; its partitions "
                            "stay paused",
                            id, error->message);
                g_clear_error (&error);
                store->broken = TRUE;
                tally_restored_store_clear (r);
                continue;
              }
          }
        if (!tally_aggregator_handle_restore_store (self->handle, id, r->counts, &error))
          {
            g_critical ("source: cannot load store %u: %s; its partitions stay paused", id,
                        error->message);
            g_clear_error (&error);
            store->broken = TRUE;
            tally_restored_store_clear (r);
            continue;
          }
        g_message ("source: restored store %u: %" G_GSIZE_FORMAT " words, %" G_GUINT64_FORMAT
                   " counted",
                   id, tally_counts_get_n_words (r->counts), tally_counts_get_total (r->counts));
        /* Checkpointed at once, records or not: its changelog partition gets this group's
         * owner record now, so that another deployment pointed at the same changelog topic
         * is refused there too, not only where this one has counted something. */
        store->dirty = TRUE;
        g_hash_table_insert (restored, GUINT_TO_POINTER (id), g_steal_pointer (&r->offsets));
        tally_restored_store_clear (r);
      }
    self->window_restores = NULL;
    if (wanted->len > 0)
      g_message ("source: %u store(s) restored in %" G_GINT64_FORMAT " ms", wanted->len,
                 (g_get_monotonic_time () - started_us) / 1000);
  }

  /* Start each partition at its checkpoint marker when there is one: the counts include
   * everything before it, whatever the group committed. */
  for (int i = 0; i < partitions->cnt; i++)
    {
      rd_kafka_topic_partition_t *tp = &partitions->elems[i];
      GHashTable *markers = g_hash_table_lookup (restored, GUINT_TO_POINTER ((guint)tp->partition));
      gint64 *marker = markers != NULL ? g_hash_table_lookup (markers, tp->topic) : NULL;
      Owned *o;

      if (find_owned (self, tp->topic, tp->partition) != NULL)
        continue;
      o = g_new0 (Owned, 1);
      o->topic = g_strdup (tp->topic);
      o->partition = tp->partition;
      o->position = RD_KAFKA_OFFSET_INVALID;
      o->stored = RD_KAFKA_OFFSET_INVALID;
      if (self->metrics != NULL)
        o->metrics = tally_metrics_partition (self->metrics, tp->topic, tp->partition);
      if (marker != NULL)
        {
          tp->offset = *marker;
          o->position = *marker;
          g_message ("source: %s [%" G_GINT32_FORMAT
                     "] starts at checkpointed offset %" G_GINT64_FORMAT,
                     tp->topic, tp->partition, *marker);
        }
      g_ptr_array_add (self->owned, o);
    }

  /* Positions of the others come from the group's committed offsets, so a snapshot
   * taken before their first record still says where they stand. */
  committed = rd_kafka_topic_partition_list_copy (partitions);
  if (rd_kafka_committed (self->consumer, committed, COMMIT_TIMEOUT_MS)
      == RD_KAFKA_RESP_ERR_NO_ERROR)
    for (int i = 0; i < committed->cnt; i++)
      {
        Owned *o = find_owned (self, committed->elems[i].topic, committed->elems[i].partition);

        if (o != NULL && o->position < 0 && committed->elems[i].offset >= 0)
          o->position = o->stored = committed->elems[i].offset;
      }
  rd_kafka_topic_partition_list_destroy (committed);
  if (self->metrics != NULL)
    tally_metrics_observe (self->metrics, TALLY_METRICS_RESTORE_SECONDS,
                           g_get_monotonic_time () - started_us);
}

static void
on_revoke (TallySource *self, rd_kafka_topic_partition_list_t *partitions, gboolean all)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < partitions->cnt; i++)
    {
      guint32 id = (guint32)partitions->elems[i].partition;
      gboolean seen = FALSE;

      for (guint j = 0; j < ids->len; j++)
        seen = seen || g_array_index (ids, guint32, j) == id;
      if (!seen && g_hash_table_contains (self->stores, GUINT_TO_POINTER (id)))
        g_array_append_val (ids, id);
    }

  /* Checkpoint what is revoked, commit synchronously, then let the counts go with the
   * partitions. A lost assignment is not checkpointed (checkpoint_stores() refuses): its
   * partitions may have a new owner already, which restores them from the changelog. */
  if (rd_kafka_assignment_lost (self->consumer))
    g_message ("source: %u store(s) dropped without a checkpoint: the assignment was lost",
               ids->len);
  else
    checkpoint_stores (self, ids, TRUE);
  for (guint j = 0; j < ids->len; j++)
    {
      guint32 id = g_array_index (ids, guint32, j);

      if (!tally_aggregator_handle_drop_store (self->handle, id, &error))
        {
          g_warning ("source: cannot drop store %u: %s", id, error->message);
          g_clear_error (&error);
        }
      if (self->clock != NULL)
        tally_window_clock_remove_partition (self->clock, id);
      /* Final counts not committed go with the partitions: their new owner restores the
       * published markers and publishes them. */
      if (self->pending_finals != NULL)
        g_ptr_array_set_size (self->pending_finals, 0);
      g_hash_table_remove (self->stores, GUINT_TO_POINTER (id));
    }
  for (int i = 0; i < partitions->cnt; i++)
    {
      Owned *o = find_owned (self, partitions->elems[i].topic, partitions->elems[i].partition);

      if (o != NULL)
        {
          if (o->metrics != NULL)
            tally_metrics_partition_set_position (o->metrics, FALSE, -1, -1);
          g_ptr_array_remove (self->owned, o);
        }
    }
  if (all)
    {
      for (guint i = 0; i < self->owned->len; i++)
        {
          Owned *o = g_ptr_array_index (self->owned, i);

          if (o->metrics != NULL)
            tally_metrics_partition_set_position (o->metrics, FALSE, -1, -1);
        }
      g_ptr_array_set_size (self->owned, 0);
    }
}

static void
on_rebalance (rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *partitions,
              void *opaque)
{
  TallySource *self = opaque;
  gboolean cooperative = g_strcmp0 (rd_kafka_rebalance_protocol (rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *error = NULL;
  rd_kafka_resp_err_t assign_err = RD_KAFKA_RESP_ERR_NO_ERROR;

  switch (err)
    {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
      g_message ("source: assigned %d partitions", partitions->cnt);
      if (self->metrics != NULL)
        tally_metrics_add (self->metrics, TALLY_METRICS_REBALANCE_ASSIGNS, 1);
      on_assign (self, partitions);
      if (cooperative)
        error = rd_kafka_incremental_assign (rk, partitions);
      else
        assign_err = rd_kafka_assign (rk, partitions);
      /* A partition assigned while the batchers are full starts paused too, and so does
       * one whose store could not be restored. */
      if (self->paused || self->stopped_consuming)
        rd_kafka_pause_partitions (rk, partitions);
      else
        {
          rd_kafka_topic_partition_list_t *broken = rd_kafka_topic_partition_list_new (0);

          for (int i = 0; i < partitions->cnt; i++)
            if (is_broken (self, partitions->elems[i].partition))
              rd_kafka_topic_partition_list_add (broken, partitions->elems[i].topic,
                                                 partitions->elems[i].partition);
          if (broken->cnt > 0)
            rd_kafka_pause_partitions (rk, broken);
          rd_kafka_topic_partition_list_destroy (broken);
        }
      break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
      g_message ("source: revoked %d partitions", partitions->cnt);
      if (self->metrics != NULL)
        tally_metrics_add (self->metrics, TALLY_METRICS_REBALANCE_REVOKES, 1);
      on_revoke (self, partitions, !cooperative);
      if (cooperative)
        error = rd_kafka_incremental_unassign (rk, partitions);
      else
        assign_err = rd_kafka_assign (rk, NULL);
      break;

    default:
      g_warning ("source: rebalance failed: %s", rd_kafka_err2str (err));
      if (self->metrics != NULL)
        tally_metrics_add (self->metrics, TALLY_METRICS_REBALANCE_ERRORS, 1);
      on_revoke (self, partitions, TRUE);
      if (cooperative)
        error = rd_kafka_incremental_unassign (rk, partitions);
      else
        assign_err = rd_kafka_assign (rk, NULL);
      break;
    }
  if (error != NULL)
    {
      g_warning ("source: incremental (un)assign failed: %s", rd_kafka_error_string (error));
      rd_kafka_error_destroy (error);
    }
  else if (assign_err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_warning ("source: assign failed: %s", rd_kafka_err2str (assign_err));
  publish_metrics (self);
}

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyMessage parent;
} SimpleMessage;

static void
simple_message_free (gpointer p)
{
  g_free (p);
}

/* A snapshot barrier, with the filters of the request it answers (all zero: none). */
typedef struct
{
  TallyMessage parent;
  TallyCountsOptions options; /* owned: tally_counts_options_copy() */
} SnapshotMessage;

static void
snapshot_message_free (gpointer p)
{
  SnapshotMessage *m = p;

  tally_counts_options_clear (&m->options);
  g_free (m);
}

static const TallyMessageType snapshot_type
    = { "SourceSnapshot", snapshot_message_free, (GDestroyNotify)tally_snapshot_cut_free };
static const TallyMessageType stop_consuming_type
    = { "SourceStopConsuming", simple_message_free, NULL };

typedef struct
{
  TallyMessage *message; /* deferred */
  TallyAggregatorHandle *handle;
  TallySnapshotCut *cut;
  gint64 started_us;
} PendingCut;

static void
on_cut_counts (GObject *object, GAsyncResult *result, gpointer user_data)
{
  PendingCut *pending = user_data;
  GError *error = NULL;

  pending->cut->counts
      = tally_aggregator_handle_get_counts_finish (pending->handle, result, &error);
  if (pending->cut->counts == NULL && error == NULL)
    pending->cut->counts = tally_counts_new_empty ();
  pending->cut->taken_ms = (g_get_monotonic_time () - pending->started_us) / 1000;
  if (error != NULL)
    {
      tally_snapshot_cut_free (pending->cut);
      g_warning ("source: snapshot failed: %s", error->message);
      g_error_free (error);
      tally_message_reply (pending->message, NULL);
    }
  else
    tally_message_reply (pending->message, pending->cut);
  tally_message_free (pending->message);
  tally_aggregator_handle_unref (pending->handle);
  g_free (pending);
}

static gboolean
handle_snapshot (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallySource *self = TALLY_SOURCE (actor);
  SnapshotMessage *m = (SnapshotMessage *)message;
  PendingCut *pending;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  GHashTableIter iter;
  gpointer key, value;

  /* The barrier comes after the last AddWords of this sender. */
  if (!flush_batchers (self, TRUE, error))
    return FALSE;
  unblock (self);
  self->trim_due = TRUE;

  pending = g_new0 (PendingCut, 1);
  pending->started_us = g_get_monotonic_time ();
  pending->cut = g_new0 (TallySnapshotCut, 1);
  pending->cut->offsets = owned_list (self, TRUE, TRUE);
  pending->cut->partitions = owned_list (self, FALSE, TRUE);

  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      guint32 id = GPOINTER_TO_UINT (key);

      if (!((Store *)value)->broken)
        g_array_append_val (ids, id);
    }
  if (ids->len == 0)
    {
      pending->cut->counts = tally_counts_new_empty ();
      tally_message_reply (message, pending->cut);
      g_free (pending);
      return TRUE;
    }
  pending->message = tally_message_defer (message);
  pending->handle = tally_aggregator_handle_ref (self->handle);
  tally_aggregator_handle_get_store_counts_async (self->handle, (const guint32 *)ids->data,
                                                  ids->len, &m->options, NULL, on_cut_counts,
                                                  pending);
  return TRUE;
}

/* A window cut: the reply carries the cut or the error of a selector that cannot be
 * answered (windows off, expired, misaligned), which becomes an error snapshot. */
typedef struct
{
  TallyMessage parent;
  TallyWindowSelector selector;
} WindowSnapshotMessage;

typedef struct
{
  TallySnapshotCut *cut;
  GError *error;
} WindowCutReply;

static void
window_cut_reply_free (gpointer p)
{
  WindowCutReply *r = p;
  tally_snapshot_cut_free (r->cut);
  g_clear_error (&r->error);
  g_free (r);
}

static const TallyMessageType window_snapshot_type
    = { "SourceWindowSnapshot", simple_message_free, window_cut_reply_free };

static void
on_window_cut_counts (GObject *object, GAsyncResult *result, gpointer user_data)
{
  PendingCut *pending = user_data;
  WindowCutReply *reply = g_new0 (WindowCutReply, 1);

  pending->cut->counts
      = tally_aggregator_handle_get_counts_finish (pending->handle, result, &reply->error);
  pending->cut->taken_ms = (g_get_monotonic_time () - pending->started_us) / 1000;
  if (reply->error == NULL)
    reply->cut = pending->cut;
  else
    tally_snapshot_cut_free (pending->cut);
  tally_message_reply (pending->message, reply);
  tally_message_free (pending->message);
  tally_aggregator_handle_unref (pending->handle);
  g_free (pending);
}

/* As handle_snapshot(), over the time range the selector resolves to. */
static gboolean
handle_window_snapshot (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallySource *self = TALLY_SOURCE (actor);
  WindowSnapshotMessage *m = (WindowSnapshotMessage *)message;
  static const guint32 no_store = 0;
  WindowCutReply *reply = g_new0 (WindowCutReply, 1);
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  PendingCut *pending;
  GHashTableIter iter;
  gpointer key, value;
  gint64 from = 0, to = 0;

  if (self->clock == NULL)
    {
      g_set_error_literal (&reply->error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_DISABLED,
                           "windows are not enabled on this instance ([windows] enabled)");
      tally_message_reply (message, reply);
      return TRUE;
    }
  if (!tally_window_clock_resolve (self->clock, &m->selector, g_get_real_time () / 1000, &from, &to,
                                   &reply->error))
    {
      tally_message_reply (message, reply);
      return TRUE;
    }
  g_free (reply);
  if (!flush_batchers (self, TRUE, error))
    return FALSE;
  unblock (self);
  self->trim_due = TRUE;

  pending = g_new0 (PendingCut, 1);
  pending->started_us = g_get_monotonic_time ();
  pending->cut = g_new0 (TallySnapshotCut, 1);
  pending->cut->offsets = owned_list (self, TRUE, TRUE);
  pending->cut->partitions = owned_list (self, FALSE, TRUE);
  pending->cut->windowed = TRUE;
  pending->cut->window_start_ms = from;
  pending->cut->window_end_ms = to;
  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      guint32 id = GPOINTER_TO_UINT (key);

      if (!((Store *)value)->broken)
        g_array_append_val (ids, id);
    }
  pending->message = tally_message_defer (message);
  pending->handle = tally_aggregator_handle_ref (self->handle);
  /* No store owned: an empty list of stores, not NULL (which means all). */
  tally_aggregator_handle_get_window_counts_async (
      self->handle, ids->len > 0 ? (const guint32 *)ids->data : &no_store, ids->len, from, to, NULL,
      NULL, on_window_cut_counts, pending);
  return TRUE;
}

static gboolean
handle_stop_consuming (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallySource *self = TALLY_SOURCE (actor);

  if (!self->stopped_consuming)
    {
      self->stopped_consuming = TRUE;
      set_paused (self, TRUE);
      if (self->watch != NULL)
        {
          g_source_destroy (self->watch);
          g_clear_pointer (&self->watch, g_source_unref);
        }
      g_message ("source: stopped consuming after %" G_GUINT64_FORMAT " records",
                 (guint64)g_atomic_pointer_get (&self->records));
      publish_metrics (self);
    }
  if (!flush_batchers (self, TRUE, error))
    return FALSE;
  unblock (self);
  return TRUE;
}

void
tally_source_snapshot_async (TallyAddress *source, const TallyCountsOptions *options,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  SnapshotMessage *m = g_new0 (SnapshotMessage, 1);

  tally_message_init (&m->parent, &snapshot_type);
  tally_counts_options_copy (options, &m->options);
  tally_address_ask_async (source, &m->parent, cancellable, callback, user_data);
}

void
tally_source_window_snapshot_async (TallyAddress *source, const TallyWindowSelector *selector,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  WindowSnapshotMessage *m = g_new0 (WindowSnapshotMessage, 1);

  g_return_if_fail (selector != NULL);

  tally_message_init (&m->parent, &window_snapshot_type);
  m->selector = *selector;
  tally_address_ask_async (source, &m->parent, cancellable, callback, user_data);
}

TallySnapshotCut *
tally_source_window_snapshot_finish (TallyAddress *source, GAsyncResult *result, GError **error)
{
  GError *local_error = NULL;
  WindowCutReply *reply = tally_address_ask_finish (source, result, &local_error);
  TallySnapshotCut *cut;

  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return NULL;
    }
  if (reply == NULL)
    {
      g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_STOPPED,
                   "the aggregators did not answer the snapshot barrier");
      return NULL;
    }
  if (reply->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&reply->error));
      window_cut_reply_free (reply);
      return NULL;
    }
  cut = g_steal_pointer (&reply->cut);
  window_cut_reply_free (reply);
  return cut;
}

/* The coordinator finishes both kinds of cut with cutter_cut_finish(): a window cut is
 * handed to it as a GTask tagged with this function. */
static void
on_cutter_window_cut (GObject *object, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;
  TallySnapshotCut *cut
      = tally_source_window_snapshot_finish (g_task_get_task_data (task), result, &error);

  if (cut == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, cut, (GDestroyNotify)tally_snapshot_cut_free);
}

static void
cutter_cut_window_async (gpointer source, const TallyWindowSelector *selector,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, NULL, callback, user_data);

  g_task_set_source_tag (task, cutter_cut_window_async);
  g_task_set_task_data (task, source, NULL);
  tally_source_window_snapshot_async (source, selector, NULL, on_cutter_window_cut, task);
}

static void
cutter_cut_async (gpointer source, gboolean final, const TallyCountsOptions *options,
                  GAsyncReadyCallback callback, gpointer user_data)
{
  tally_source_snapshot_async (source, options, NULL, callback, user_data);
}

static TallySnapshotCut *
cutter_cut_finish (gpointer source, GAsyncResult *result, GError **error)
{
  if (g_task_is_valid (result, NULL)
      && g_task_get_source_tag (G_TASK (result)) == cutter_cut_window_async)
    return g_task_propagate_pointer (G_TASK (result), error);
  return tally_source_snapshot_finish (source, result, error);
}

const TallySnapshotCutter *
tally_source_cutter (void)
{
  static const TallySnapshotCutter cutter
      = { cutter_cut_async, cutter_cut_finish, cutter_cut_window_async };

  return &cutter;
}

TallySnapshotCut *
tally_source_snapshot_finish (TallyAddress *source, GAsyncResult *result, GError **error)
{
  GError *local_error = NULL;
  TallySnapshotCut *cut = tally_address_ask_finish (source, result, &local_error);

  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return NULL;
    }
  if (cut == NULL)
    g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_STOPPED,
                 "the aggregators did not answer the snapshot barrier");
  return cut;
}

void
tally_source_stop_consuming_async (TallyAddress *source, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data)
{
  SimpleMessage *m = g_new0 (SimpleMessage, 1);

  tally_message_init (&m->parent, &stop_consuming_type);
  tally_address_ask_async (source, &m->parent, cancellable, callback, user_data);
}

guint64
tally_source_get_late_records (TallySource *self)
{
  g_return_val_if_fail (TALLY_IS_SOURCE (self), 0);
  return (guint64)g_atomic_pointer_get (&self->late_records);
}

guint64
tally_source_get_records (TallySource *self)
{
  return (guint64)g_atomic_pointer_get (&self->records);
}

/* ---------------------------------------------------------------------------------------
 * Metrics (tally-metrics.h): the per-record counters are updated in handle_record(); the
 * rest once per poll batch, rebalance or statistics document, on this thread.
 * ------------------------------------------------------------------------------------- */

static void
publish_metrics (TallySource *self)
{
  TallyTokenizerStats stats;
  GHashTableIter iter;
  gpointer value;
  guint broken = 0;

  if (self->metrics == NULL)
    return;
  tally_tokenizer_get_stats (self->tokenizer, &stats);
  tally_metrics_set_total (self->metrics, TALLY_METRICS_INVALID_BYTES, stats.invalid_bytes);
  tally_metrics_set_total (self->metrics, TALLY_METRICS_TRUNCATED_WORDS, stats.truncated);
  tally_metrics_set_total (self->metrics, TALLY_METRICS_DROPPED_WORDS, stats.dropped);
  for (guint i = 0; i < self->owned->len; i++)
    {
      Owned *o = g_ptr_array_index (self->owned, i);

      if (o->metrics != NULL)
        tally_metrics_partition_set_position (o->metrics, TRUE, o->position, o->stored);
    }
  g_hash_table_iter_init (&iter, self->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    broken += ((Store *)value)->broken ? 1 : 0;
  tally_metrics_set_state (self->metrics, self->owned->len, FALSE, broken,
                           self->watch != NULL && !self->stopped_consuming);
}

/* librdkafka's stats_cb (statistics.interval.ms), served by rd_kafka_consumer_poll() on
 * this thread. Returns 0: librdkafka frees @json. */
static int
on_statistics (rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
  TallySource *self = opaque;
  g_autoptr (GError) error = NULL;

  if (self->metrics != NULL
      && !tally_metrics_update_statistics (self->metrics, json, json_len, &error))
    g_warning ("source: librdkafka statistics not understood: %s", error->message);
  return 0;
}

void
tally_source_set_metrics (TallySource *self, TallyMetrics *metrics)
{
  g_return_if_fail (TALLY_IS_SOURCE (self));
  g_clear_pointer (&self->metrics, tally_metrics_unref);
  self->metrics = metrics != NULL ? tally_metrics_ref (metrics) : NULL;
}

/* ---------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------- */

/* The keep-alive poll of an idle source (KEEPALIVE_POLL_MS). A blocked source does not
 * poll: its records wait in the batchers, and a member stuck for max.poll.interval.ms
 * rightly leaves the group so that another can take its partitions. */
static gboolean
on_keepalive (gpointer user_data)
{
  TallySource *self = user_data;

  if (self->poll_timer == 0)
    poll_batch (self);
  return G_SOURCE_CONTINUE;
}

/* A window closed on this instance: its final counts over the owned stores it had not
 * been published with, taken now, after the words handed to the batchers and before any
 * expiry of its buckets. Blocking, as a checkpoint is: O(the window's words). */
static void
take_closed_window (TallySource *self, gint64 start, gint64 end, GArray *partitions)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  TallySnapshotCut *cut;
  gint64 started_us = g_get_monotonic_time ();

  if (!flush_batchers (self, TRUE, &error))
    {
      g_warning ("source: final counts of window [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                 ") not taken: %s",
                 start, end, error->message);
      return;
    }
  unblock (self);
  /* After a restart, some partitions may have been published with it already. */
  for (guint i = 0; i < partitions->len; i++)
    {
      guint32 id = g_array_index (partitions, guint32, i);
      Store *store = g_hash_table_lookup (self->stores, GUINT_TO_POINTER (id));

      if (store != NULL && !store->broken)
        g_array_append_val (ids, id);
    }
  if (ids->len == 0)
    return;
  cut = g_new0 (TallySnapshotCut, 1);
  cut->counts = tally_aggregator_handle_get_window_counts (self->handle, (const guint32 *)ids->data,
                                                           ids->len, start, end, NULL, &error);
  if (cut->counts == NULL)
    {
      g_warning ("source: final counts of window [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                 ") not taken: %s",
                 start, end, error->message);
      tally_snapshot_cut_free (cut);
      return;
    }
  cut->offsets = owned_list (self, TRUE, TRUE);
  cut->partitions = owned_list (self, FALSE, TRUE);
  cut->windowed = TRUE;
  cut->window_start_ms = start;
  cut->window_end_ms = end;
  cut->taken_ms = (g_get_monotonic_time () - started_us) / 1000;
  if (self->publish_in_checkpoint)
    {
      /* Published by the next checkpoint, in its transaction. */
      g_ptr_array_add (self->pending_finals, cut);
      mark_dirty (self, NULL);
    }
  else
    self->window_closed (cut, self->window_closed_data);
}

/* Windows: once a second (or every bucket, if shorter), take the final counts of each
 * window that closed on this instance (when they are published) and drop the buckets
 * beyond retention. */
static gboolean
on_window_timer (gpointer user_data)
{
  TallySource *self = user_data;
  gint64 now = g_get_real_time () / 1000;
  gint64 size = tally_window_clock_get_spec (self->clock)->size_ms;
  gint64 expiry, start;
  gboolean closed = FALSE;
  g_autoptr (GArray) partitions = g_array_new (FALSE, FALSE, sizeof (guint32));

  while (tally_window_clock_next_closed_full (self->clock, now, &start, partitions))
    {
      closed = TRUE;
      g_info ("source: window [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") closed", start,
              start + size);
      if ((self->window_closed != NULL || self->publish_in_checkpoint) && !self->stopped_consuming)
        take_closed_window (self, start, start + size, partitions);
      g_array_set_size (partitions, 0);
    }
  expiry = tally_window_clock_get_expiry (self->clock, now);
  if (self->checkpoint != NULL)
    {
      /* The next checkpoint drops the expired buckets and writes their tombstones; the
       * stores must be checkpointed even without new records. */
      if (expiry > self->expiry_written || closed)
        mark_dirty (self, NULL);
      self->expiry_written = MAX (self->expiry_written, expiry);
    }
  else if (expiry != G_MININT64)
    tally_aggregator_handle_expire_buckets (self->handle, expiry);
  return G_SOURCE_CONTINUE;
}

void
tally_source_set_window_closed_func (TallySource *self, TallySourceWindowClosedFunc func,
                                     gpointer user_data, GDestroyNotify destroy)
{
  g_return_if_fail (TALLY_IS_SOURCE (self));

  if (self->window_closed_destroy != NULL)
    self->window_closed_destroy (self->window_closed_data);
  self->window_closed = func;
  self->window_closed_data = user_data;
  self->window_closed_destroy = destroy;
}

static void
tally_source_started (TallyActor *actor)
{
  TallySource *self = TALLY_SOURCE (actor);
  rd_kafka_topic_partition_list_t *subscription;
  rd_kafka_resp_err_t err;

  /* Subscribe: names and ^regex patterns alike (librdkafka matches the patterns against
   * the cluster's topics on every metadata refresh). */
  subscription = rd_kafka_topic_partition_list_new (g_strv_length (self->topics));
  for (char **t = self->topics; *t != NULL; t++)
    rd_kafka_topic_partition_list_add (subscription, *t, RD_KAFKA_PARTITION_UA);
  err = rd_kafka_subscribe (self->consumer, subscription);
  rd_kafka_topic_partition_list_destroy (subscription);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_critical ("source: cannot subscribe to the input topics: %s", rd_kafka_err2str (err));
      return;
    }

  /* Wake this context whenever the consumer queue gets something. */
  self->queue = rd_kafka_queue_get_consumer (self->consumer);
  rd_kafka_queue_io_event_enable (self->queue, self->wake_fds[1], "1", 1);
  self->watch = g_unix_fd_source_new (self->wake_fds[0], G_IO_IN);
  g_source_set_callback (self->watch, G_SOURCE_FUNC (on_readable), self, NULL);
  g_source_set_static_name (self->watch, "tally-source-consumer");
  g_source_attach (self->watch, tally_actor_get_context (actor));

  if (self->checkpoint_interval_ms > 0)
    self->checkpoint_timer = tally_actor_run_interval (actor, self->checkpoint_interval_ms,
                                                       on_checkpoint_timer, self, NULL);
  self->keepalive_timer
      = tally_actor_run_interval (actor, self->keepalive_ms, on_keepalive, self, NULL);
  if (self->clock != NULL)
    self->window_timer = tally_actor_run_interval (
        actor, (guint)MIN (tally_window_clock_get_spec (self->clock)->bucket_ms, 1000),
        on_window_timer, self, NULL);
  {
    g_autofree char *topics = g_strjoinv (", ", self->topics);

    g_message ("source: consuming %s as consumer group member", topics);
  }
  publish_metrics (self);
  schedule_poll (self);
}

static void
tally_source_stopping (TallyActor *actor)
{
  TallySource *self = TALLY_SOURCE (actor);
  TallyTokenizerStats stats;
  rd_kafka_resp_err_t err;

  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_clear_pointer (&self->watch, g_source_unref);
    }
  self->stopped_consuming = TRUE;
  if (self->consumer == NULL || self->closed)
    return;

  /* Checkpoint and commit everything, then close: leaving the group revokes the
   * partitions, and the rebalance callback drops the stores. */
  checkpoint_stores (self, NULL, TRUE);
  if (self->queue != NULL)
    rd_kafka_queue_io_event_enable (self->queue, -1, NULL, 0);
  err = rd_kafka_consumer_close (self->consumer);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_warning ("source: closing the consumer: %s", rd_kafka_err2str (err));
  self->closed = TRUE;
  g_clear_pointer (&self->queue, rd_kafka_queue_destroy);
  g_clear_pointer (&self->consumer, rd_kafka_destroy);
  tally_tokenizer_get_stats (self->tokenizer, &stats);
  g_message ("source: closed; %" G_GUINT64_FORMAT " records, %" G_GUINT64_FORMAT
             " words, %" G_GUINT64_FORMAT " error events, %" G_GUINT64_FORMAT
             " invalid UTF-8 bytes skipped, %" G_GUINT64_FORMAT
             " words truncated and %" G_GUINT64_FORMAT
             " dropped (longer than [tokenizer] max_word_bytes)",
             (guint64)g_atomic_pointer_get (&self->records), self->words, self->error_events,
             stats.invalid_bytes, stats.truncated, stats.dropped);
  if (self->clock != NULL)
    g_message ("source: %" G_GUINT64_FORMAT " record(s) came after their window closed (%s)",
               (guint64)g_atomic_pointer_get (&self->late_records),
               self->late_drop ? "dropped" : "counted in the all-time totals only");
}

static void
tally_source_finalize (GObject *object)
{
  TallySource *self = TALLY_SOURCE (object);

  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_source_unref (self->watch);
    }
  g_clear_pointer (&self->queue, rd_kafka_queue_destroy);
  if (self->consumer != NULL)
    {
      if (!self->closed)
        rd_kafka_consumer_close (self->consumer);
      rd_kafka_destroy (self->consumer);
    }
  g_clear_pointer (&self->stores, g_hash_table_unref);
  g_clear_pointer (&self->owned, g_ptr_array_unref);
  g_clear_pointer (&self->checkpoint, tally_checkpoint_free);
  g_clear_pointer (&self->tokenizer, tally_tokenizer_free);
  g_clear_pointer (&self->clock, tally_window_clock_free);
  g_clear_pointer (&self->pending_finals, g_ptr_array_unref);
  g_free (self->output_topic);
  g_free (self->instance_id);
  if (self->window_closed_destroy != NULL)
    self->window_closed_destroy (self->window_closed_data);
  g_clear_pointer (&self->handle, tally_aggregator_handle_unref);
  g_clear_pointer (&self->metrics, tally_metrics_unref);
  g_strfreev (self->topics);
  for (int i = 0; i < 2; i++)
    if (self->wake_fds[i] >= 0)
      close (self->wake_fds[i]);
  G_OBJECT_CLASS (tally_source_parent_class)->finalize (object);
}

static void
tally_source_class_init (TallySourceClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  TallyActorClass *actor_class = TALLY_ACTOR_CLASS (klass);

  object_class->finalize = tally_source_finalize;
  actor_class->started = tally_source_started;
  actor_class->stopping = tally_source_stopping;
  tally_actor_class_add_handler (actor_class, &snapshot_type, handle_snapshot);
  tally_actor_class_add_handler (actor_class, &window_snapshot_type, handle_window_snapshot);
  tally_actor_class_add_handler (actor_class, &stop_consuming_type, handle_stop_consuming);
}

static void
tally_source_init (TallySource *self)
{
  self->wake_fds[0] = self->wake_fds[1] = -1;
  self->stores = g_hash_table_new_full (NULL, NULL, NULL, store_free);
  self->owned = g_ptr_array_new_with_free_func (owned_free);
}

static gboolean
set_property (rd_kafka_conf_t *conf, const char *name, const char *value, GError **error)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    {
      g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_CONFIG, "%s=%s: %s", name, value,
                   errstr);
      return FALSE;
    }
  return TRUE;
}

/* An integer property's value (or its default); 0 if it cannot be read. */
static gint64
conf_int (const rd_kafka_conf_t *conf, const char *name)
{
  char buf[64];
  size_t size = sizeof buf;

  if (rd_kafka_conf_get (conf, name, buf, &size) != RD_KAFKA_CONF_OK)
    return 0;
  return g_ascii_strtoll (buf, NULL, 10);
}

gboolean
tally_source_configure_consumer (const TallyConfig *config, rd_kafka_conf_t *conf, GError **error)
{
  gboolean pattern = FALSE;

  g_return_val_if_fail (config != NULL && conf != NULL, FALSE);

  for (char **t = config->input.topics; t != NULL && *t != NULL; t++)
    pattern = pattern || (*t)[0] == '^';
  return set_property (conf, "group.id", config->input.group_id, error)
         && set_property (conf, "auto.offset.reset",
                          config->input.auto_offset_reset == TALLY_CONFIG_OFFSET_RESET_LATEST
                              ? "latest"
                              : "earliest",
                          error)
         && set_property (conf, "enable.auto.offset.store", "false", error)
         && set_property (conf, "enable.auto.commit", "true", error)
         && (tally_config_kafka_get (config, "partition.assignment.strategy") != NULL
             || set_property (conf, "partition.assignment.strategy", "range", error))
         && (tally_config_kafka_get (config, "queued.min.messages") != NULL
             || set_property (conf, "queued.min.messages", QUEUED_MIN_MESSAGES, error))
         && (!pattern
             || tally_config_kafka_get (config, "topic.metadata.refresh.interval.ms") != NULL
             || set_property (conf, "topic.metadata.refresh.interval.ms",
                              PATTERN_METADATA_REFRESH_MS, error));
}

TallyActor *
tally_source_new (const TallyConfig *config, TallyConfigGuarantee guarantee, rd_kafka_conf_t *conf,
                  TallyAggregatorHandle *handle, GError **error)
{
  g_autoptr (TallySource) self = NULL;
  TallyTokenizerOptions tokenizer_options;
  char errstr[512];
  GError *local_error = NULL;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (conf != NULL, NULL);
  g_return_val_if_fail (handle != NULL, NULL);

  self = g_object_new (TALLY_TYPE_SOURCE, NULL);
  self->handle = tally_aggregator_handle_ref (handle);
  self->topics = g_strdupv (config->input.topics);
  self->max_batch_records = MAX (config->input.max_batch_records, 1);
  self->checkpoint_interval_ms = config->checkpoint.enabled ? config->checkpoint.interval_ms : 0;

  tally_config_tokenizer_options (config, &tokenizer_options);
  self->tokenizer = tally_tokenizer_new (&tokenizer_options);
  if (config->windows.enabled)
    {
      TallyWindowSpec spec = {
        .size_ms = config->windows.size_ms,
        .bucket_ms = config->windows.bucket_ms,
        .grace_ms = config->windows.grace_ms,
        .idle_ms = config->windows.idle_ms,
        .retain = config->windows.retain,
      };
      self->clock = tally_window_clock_new (&spec);
      self->late_drop = config->windows.late == TALLY_CONFIG_LATE_DROP;
    }

  if (!g_unix_open_pipe (self->wake_fds, FD_CLOEXEC, &local_error)
      || !g_unix_set_fd_nonblocking (self->wake_fds[0], TRUE, &local_error)
      || !g_unix_set_fd_nonblocking (self->wake_fds[1], TRUE, &local_error))
    {
      g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_CONFIG,
                   "cannot make the wake-up pipe: %s", local_error->message);
      g_error_free (local_error);
      rd_kafka_conf_destroy (conf);
      return NULL;
    }

  /* The changelog clients share the caller's properties, before the consumer's own. */
  if (config->checkpoint.enabled)
    {
      g_autofree char *transactional_id = NULL;

      /* Unique to this process: fencing of a stale member comes from the consumer group
       * generation sent with the offsets (KIP-447), as Kafka Streams' exactly_once_v2. */
      if (guarantee == TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE)
        transactional_id = g_strdup_printf ("tally-%s-%s-%d-%08x", config->input.group_id,
                                            g_get_host_name (), (int)getpid (), g_random_int ());
      self->checkpoint
          = tally_checkpoint_new (conf, config->checkpoint.changelog_topic, transactional_id,
                                  INIT_TRANSACTIONS_TIMEOUT_MS, &local_error);
      if (self->checkpoint == NULL)
        {
          g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_CONFIG, "%s",
                       local_error->message);
          g_error_free (local_error);
          rd_kafka_conf_destroy (conf);
          return NULL;
        }
    }

  /* The changelog holds this group's counts: another deployment's are refused. */
  if (self->checkpoint != NULL)
    tally_checkpoint_set_owner (self->checkpoint, config->input.group_id);
  if (self->checkpoint != NULL && self->clock != NULL)
    tally_checkpoint_set_extension_func (self->checkpoint, on_window_record, self);
  if (self->checkpoint != NULL && self->clock != NULL && config->windows.publish
      && tally_checkpoint_is_transactional (self->checkpoint))
    {
      self->publish_in_checkpoint = TRUE;
      self->output_topic = g_strdup (config->output.topic);
      self->max_record_bytes = config->output.max_record_bytes;
      self->instance_id
          = g_strdup_printf ("%s-%d-%08x", g_get_host_name (), (int)getpid (), g_random_int ());
      self->pending_finals
          = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_snapshot_cut_free);
    }

  /* Configure the consumer. */
  /* At least once: the auto-commit commits what checkpoints stored. Exactly once: the
   * offsets go with each transaction, and nothing else commits. */
  if (!tally_source_configure_consumer (config, conf, error)
      || (self->checkpoint != NULL && tally_checkpoint_is_transactional (self->checkpoint)
          && !set_property (conf, "enable.auto.commit", "false", error)))
    {
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  if (config->metrics.listen != NULL
      && tally_config_kafka_get (config, "statistics.interval.ms") == NULL
      && !set_property (conf, "statistics.interval.ms", STATISTICS_INTERVAL_MS, error))
    {
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  rd_kafka_conf_set_stats_cb (conf, on_statistics);
  rd_kafka_conf_set_rebalance_cb (conf, on_rebalance);
  rd_kafka_conf_set_opaque (conf, self);
  self->keepalive_ms
      = MIN (KEEPALIVE_POLL_MS, MAX (conf_int (conf, "max.poll.interval.ms") / 2, 1));
  self->checkpoint_timeout_ms
      = (int)MIN (CHECKPOINT_TIMEOUT_MS,
                  MAX (conf_int (conf, "max.poll.interval.ms") / CHECKPOINT_POLL_SHARE, 1));
  if (self->checkpoint != NULL)
    tally_checkpoint_set_timeout (self->checkpoint, self->checkpoint_timeout_ms);

  /* Create it: on success rd_kafka_new() owns conf. */
  self->consumer = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (self->consumer == NULL)
    {
      g_set_error (error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_CONFIG,
                   "cannot create the consumer: %s", errstr);
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  /* Every event (errors, logs, rebalances) goes through the consumer queue. */
  rd_kafka_poll_set_consumer (self->consumer);

  return TALLY_ACTOR (g_steal_pointer (&self));
}
