/* tally-checkpoint.c — the compacted changelog that carries counts across restarts.
 *
 * Why a changelog keyed by word, partitioned like the input:
 *
 * - Counts live in memory in the aggregator shards; Kafka is the only durable store Tally
 *   has. A compacted topic keyed by word keeps one record per word per partition however
 *   long Tally runs, so a restore reads at most (distinct words of the store) records.
 * - A checkpoint writes only the words that changed since the last one (TakeChanges), in
 *   one batch, so its cost follows the input rate, not the size of the state.
 * - Partition p of the changelog holds store p, the counts that came from input partition
 *   p. When p moves to another instance of the consumer group, that instance reads
 *   changelog partition p and owns exactly those counts; nothing has to be split or merged.
 * - Each checkpoint ends with an offset marker per input topic in the same partition,
 *   written after the words. The marker says up to which input offset the counts go.
 *   The consumer group's offsets are stored only after the broker acknowledged the whole
 *   checkpoint, so committed <= marker always; a restore starts consuming at the marker,
 *   which is exact even when Tally died between the checkpoint and the commit.
 * - At least once: a crash in the middle of writing a checkpoint may leave newer word
 *   counts than the last marker covers; a restore leaves them out (it takes only what a
 *   marker covers, tally-changelog-restore.c) and their input is read again. Replacing
 *   the idempotent producer with a transactional one (KIP-98), and sending the offsets
 *   with the transaction (send_offsets_to_transaction), makes this exactly once with the
 *   same record format; restores would then read with isolation.level=read_committed.
 *
 * Life cycle of the two clients: the producer is created in tally_checkpoint_new() and
 * flushed and destroyed in tally_checkpoint_free(); the restore consumer (no consumer
 * group, manual assignment, no commits) is created on the first restore and destroyed
 * with the checkpoint. Every call blocks its caller, the source actor's thread, which owns
 * the checkpoint.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-checkpoint.h"

#include "tally-changelog-block.h"
#include "tally-kafka-errors.h"
#include "tally-topics.h"
#include "tally-snapshot.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-checkpoint-error-quark, tally_checkpoint_error) /* clang-format on */

#define MARKER_HEADER "tally.kind"
/* How long a restore keeps asking for a changelog topic the broker says is unknown. */
#define UNKNOWN_TOPIC_GRACE_MS 2000
#define MARKER_HEADER_VALUE "offset"
/* transaction.timeout.ms of the transactional producer unless [kafka] sets it. */
#define TRANSACTION_TIMEOUT_MS "10000"
/* The longest wait for aborting a transaction. */
#define ABORT_TIMEOUT_MS 10000
/* A partition gets a new base when its deltas since the last base hold at least this many
 * bytes and at least as many as that base: a restore then reads at most about twice the
 * store, and the bases written while a store grows add up to about twice its size. */
#define MIN_BASE_BYTES (1024 * 1024)
/* ... or when this many deltas were written since the last base (a restore reads each). */
#define MAX_DELTAS 4096
/* The restore consumer's max.partition.fetch.bytes: several blocks per fetch. */
#define RESTORE_PARTITION_FETCH_BYTES "8388608"

struct _TallyCheckpoint
{
  char *topic;
  rd_kafka_conf_t *producer_conf; /* kept to replace a producer that failed fatally */
  rd_kafka_conf_t *consumer_conf; /* kept for the lazily created restore consumer */
  rd_kafka_t *producer;
  rd_kafka_t *restorer;
  char *transactional_id; /* NULL: at least once */
  char *owner;            /* the consumer group of the owner records; NULL: none */
  int init_timeout_ms;
  int timeout_ms;              /* aborts, and the transactions of a replaced producer */
  gboolean transactions_ready; /* init_transactions() done for this producer */
  gboolean in_transaction;
  TallyCheckpointExtensionFunc extension; /* restore: records keyed \0 + a control byte */
  gpointer extension_data;

  /* Blocks (tally-changelog-block.h): */
  GHashTable *logs; /* changelog partition -> Log */
  guint64 writer;   /* random: the middle of this writer's block keys */
  guint64 sequence; /* the next block's sequence number */
  gsize block_bytes;
  guint64 min_base_bytes;

  /* Delivery reports since the last flush; only touched on the checkpoint's thread
   * (delivery callbacks run inside rd_kafka_poll/rd_kafka_flush there). */
  guint64 pending;
  guint64 failed;
  rd_kafka_resp_err_t first_error;
};

/* The blocks of one changelog partition as this writer knows them (tally-changelog-block.h).
 * Every block has its own key; a base (every word of the store) makes the blocks before it
 * useless once the broker acknowledged it, and they are tombstoned with the next write to
 * the partition, never in the same transaction or flush as the base (an at-least-once
 * flush can fail half way). What a write queues is "pending" until the flush or commit
 * says it is durable (log_settle()). */
typedef struct
{
  GBytes *key;
  gsize bytes;
  gboolean base;
} LiveBlock;

typedef struct
{
  GPtrArray *live;                 /* LiveBlock, oldest first */
  GPtrArray *obsolete;             /* GBytes: keys of blocks an acknowledged base made useless */
  guint64 base_bytes;              /* bytes of the last acknowledged base */
  guint64 delta_bytes;             /* bytes of the live blocks after it */
  gboolean first_format;           /* word records of the first format not yet replaced */
  TallyCounts *first_format_words; /* a base replaced them: their keys to tombstone */
  /* Queued, not yet durable: */
  guint pending_cut;      /* G_MAXUINT, or the live blocks before a base queued */
  guint pending_base_end; /* live blocks up to the end of that base */
  gboolean pending_first_format;
  guint pending_obsolete; /* obsolete keys tombstoned */
  gboolean pending_first_format_tombstones;
  gboolean owner_written; /* this process's owner record is durable */
  gboolean pending_owner; /* it is queued */
} Log;

static void
live_block_free (LiveBlock *block)
{
  g_bytes_unref (block->key);
  g_free (block);
}

static Log *
log_new (void)
{
  Log *log = g_new0 (Log, 1);

  log->live = g_ptr_array_new_with_free_func ((GDestroyNotify)live_block_free);
  log->obsolete = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  log->pending_cut = G_MAXUINT;
  return log;
}

static void
log_free (Log *log)
{
  g_ptr_array_unref (log->live);
  g_ptr_array_unref (log->obsolete);
  g_clear_pointer (&log->first_format_words, tally_counts_unref);
  g_free (log);
}

static Log *
get_log (TallyCheckpoint *self, gint32 partition)
{
  Log *log = g_hash_table_lookup (self->logs, GINT_TO_POINTER (partition));

  if (log == NULL)
    {
      log = log_new ();
      g_hash_table_insert (self->logs, GINT_TO_POINTER (partition), log);
    }
  return log;
}

/* What was queued since the last settle is durable (@durable) or lost. */
static void
log_settle (Log *log, gboolean durable)
{
  if (durable && log->pending_obsolete > 0)
    g_ptr_array_remove_range (log->obsolete, 0, log->pending_obsolete);
  if (durable && log->pending_first_format_tombstones)
    g_clear_pointer (&log->first_format_words, tally_counts_unref);
  if (durable && log->pending_cut != G_MAXUINT)
    {
      log->base_bytes = 0;
      log->delta_bytes = 0;
      for (guint i = 0; i < log->live->len; i++)
        {
          LiveBlock *block = g_ptr_array_index (log->live, i);

          if (i < log->pending_cut)
            g_ptr_array_add (log->obsolete, g_bytes_ref (block->key));
          else if (i < log->pending_base_end)
            log->base_bytes += block->bytes;
          else
            log->delta_bytes += block->bytes;
        }
      g_ptr_array_remove_range (log->live, 0, log->pending_cut);
      if (log->pending_first_format)
        log->first_format = FALSE;
    }
  else if (!durable && log->pending_first_format)
    /* A lost base: the first format's records stay until another base replaces them. */
    g_clear_pointer (&log->first_format_words, tally_counts_unref);
  log->pending_cut = G_MAXUINT;
  log->pending_base_end = 0;
  log->pending_first_format = FALSE;
  log->pending_obsolete = 0;
  log->pending_first_format_tombstones = FALSE;
  if (durable && log->pending_owner)
    log->owner_written = TRUE;
  log->pending_owner = FALSE;
}

static void
settle_logs (TallyCheckpoint *self, gboolean durable)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->logs);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    log_settle (value, durable);
}

static void
on_delivery (rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
  TallyCheckpoint *self = opaque;

  if (self->pending > 0)
    self->pending--;
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      tally_kafka_errors_check (message->err, "changelog producer", self->topic,
                                rd_kafka_err2str (message->err));
      if (self->failed == 0)
        self->first_error = message->err;
      self->failed++;
      g_warning ("changelog %s [%" G_GINT32_FORMAT "]: delivery failed: %s", self->topic,
                 message->partition, rd_kafka_err2str (message->err));
    }
}

static gboolean
conf_set (rd_kafka_conf_t *conf, const char *name, const char *value, GError **error)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_CONFIG, "%s=%s: %s", name,
                   value, errstr);
      return FALSE;
    }
  return TRUE;
}

static void replace_producer (TallyCheckpoint *self, const char *why);

/* Initialises the transactions of self->producer, once per producer: InitProducerId
 * fences any earlier producer of this transactional.id and aborts its open transaction
 * (KIP-98). A broker that does not answer in time leaves them to the next call, which
 * resumes the same request (librdkafka: "retry call to resume"); a producer that failed
 * fatally is replaced first. Errors: TALLY_CHECKPOINT_ERROR_TIMEOUT for a broker not
 * reachable yet, TALLY_CHECKPOINT_ERROR_TRANSACTIONS for one that refuses them. */
static gboolean
init_transactions (TallyCheckpoint *self, int timeout_ms, GError **error)
{
  rd_kafka_error_t *txn_error;
  rd_kafka_resp_err_t code;

  if (self->transactional_id == NULL || self->transactions_ready)
    return TRUE;
  txn_error = rd_kafka_init_transactions (self->producer, timeout_ms);
  if (txn_error == NULL)
    {
      self->transactions_ready = TRUE;
      return TRUE;
    }
  tally_kafka_errors_check_txn (txn_error, "changelog producer", self->transactional_id);
  code = rd_kafka_error_code (txn_error);
  /* No broker, or no transaction coordinator yet (it may be restarting). */
  if ((tally_kafka_error_is_unreachable (code)
       || code == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE
       || code == RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
      && !rd_kafka_error_is_fatal (txn_error))
    g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_TIMEOUT,
                 "changelog %s: the producer's transactions are not initialised: the broker "
                 "did not complete InitProducerId within %d ms (%s: %s); is it reachable?",
                 self->topic, timeout_ms, rd_kafka_err2name (code),
                 rd_kafka_error_string (txn_error));
  else
    g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_TRANSACTIONS,
                 "the broker cannot run the transactions of [checkpoint] "
                 "guarantee=exactly_once (%s: %s); use a broker with transactions (Apache "
                 "Kafka 2.5 or newer) or set [checkpoint] guarantee=at_least_once",
                 rd_kafka_err2name (code), rd_kafka_error_string (txn_error));
  /* Unusable: the next attempt starts with a new producer. */
  if (rd_kafka_error_is_fatal (txn_error))
    replace_producer (self, rd_kafka_error_string (txn_error));
  rd_kafka_error_destroy (txn_error);
  return FALSE;
}

/* Creates self->producer from producer_conf (transfer full, consumed); its transactions,
 * when transactional, are initialised by init_transactions(). */
static gboolean
create_producer (TallyCheckpoint *self, rd_kafka_conf_t *conf, GError **error)
{
  char errstr[512];

  /* Create it; rd_kafka_new() takes ownership of the conf only on success. */
  self->producer = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  self->transactions_ready = FALSE;
  if (self->producer == NULL)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_CONFIG,
                   "cannot create the changelog producer: %s", errstr);
      return FALSE;
    }
  return TRUE;
}

TallyCheckpoint *
tally_checkpoint_new (const rd_kafka_conf_t *conf, const char *topic, const char *transactional_id,
                      int timeout_ms, GError **error)
{
  g_autoptr (TallyCheckpoint) self = NULL;
  g_autoptr (GError) local_error = NULL;
  rd_kafka_conf_t *producer_conf;

  g_return_val_if_fail (conf != NULL, NULL);
  g_return_val_if_fail (topic != NULL && *topic != '\0', NULL);

  self = g_new0 (TallyCheckpoint, 1);
  self->topic = g_strdup (topic);
  self->transactional_id = g_strdup (transactional_id);
  self->init_timeout_ms = timeout_ms;
  self->timeout_ms = ABORT_TIMEOUT_MS;
  self->logs = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify)log_free);
  self->writer = ((guint64)g_random_int () << 32) | g_random_int ();
  self->sequence = 1;
  self->block_bytes = TALLY_CHANGELOG_BLOCK_BYTES;
  self->min_base_bytes = MIN_BASE_BYTES;

  /* Configure the producer: idempotent so that the records of one partition keep their
   * order through retries (markers must follow the words they cover). */
  /* Without consumer properties, and never letting a metadata request create the
   * changelog with the broker's defaults (cleanup.policy=delete):
   * tally_checkpoint_ensure_topic() creates it compacted. */
  producer_conf = tally_topics_producer_conf (conf, &local_error);
  if (producer_conf == NULL)
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_CONFIG, "%s",
                   local_error->message);
      return NULL;
    }
  if (!conf_set (producer_conf, "enable.idempotence", "true", error)
      || !conf_set (producer_conf, "linger.ms", "5", error))
    {
      rd_kafka_conf_destroy (producer_conf);
      return NULL;
    }
  rd_kafka_conf_set_dr_msg_cb (producer_conf, on_delivery);
  rd_kafka_conf_set_opaque (producer_conf, self);

  if (transactional_id != NULL)
    {
      char value[32];
      size_t size = sizeof value;

      if (!conf_set (producer_conf, "transactional.id", transactional_id, error))
        {
          rd_kafka_conf_destroy (producer_conf);
          return NULL;
        }
      /* A member that dies inside a transaction blocks read_committed readers of its
       * partitions until the broker aborts it: 10 s instead of librdkafka's 60 s, unless
       * [kafka] chose a value. */
      if (rd_kafka_conf_get (producer_conf, "transaction.timeout.ms", value, &size)
              == RD_KAFKA_CONF_OK
          && strcmp (value, "60000") == 0
          && !conf_set (producer_conf, "transaction.timeout.ms", TRANSACTION_TIMEOUT_MS, error))
        {
          rd_kafka_conf_destroy (producer_conf);
          return NULL;
        }
    }

  self->producer_conf = rd_kafka_conf_dup (producer_conf);
  if (!create_producer (self, producer_conf, error))
    return NULL;

  /* The restore consumer reads by assignment, outside any consumer group. */
  self->consumer_conf = rd_kafka_conf_dup (conf);
  if (!conf_set (self->consumer_conf, "enable.auto.commit", "false", error)
      /* Records of aborted transactions (a fenced member's) are never read back. */
      || !conf_set (self->consumer_conf, "isolation.level", "read_committed", error)
      || !conf_set (self->consumer_conf, "enable.partition.eof", "true", error)
      || !conf_set (self->consumer_conf, "auto.offset.reset", "earliest", error)
      /* A restore reads to the end and stops: do not let the broker hold a fetch. */
      || !conf_set (self->consumer_conf, "fetch.wait.max.ms", "10", error)
      || !conf_set (self->consumer_conf, "max.partition.fetch.bytes", RESTORE_PARTITION_FETCH_BYTES,
                    error))
    return NULL;
  /* librdkafka needs a group.id for rd_kafka_assign(); this consumer never subscribes
   * (so it joins no group) and never commits, so the name is only a label. */
  {
    g_autofree char *group = g_strdup_printf ("%s.restore", topic);

    if (!conf_set (self->consumer_conf, "group.id", group, error))
      return NULL;
  }

  return g_steal_pointer (&self);
}

void
tally_checkpoint_free (TallyCheckpoint *self)
{
  if (self == NULL)
    return;
  if (self->producer != NULL && self->in_transaction)
    tally_checkpoint_abort (self);
  if (self->producer != NULL)
    {
      rd_kafka_resp_err_t err = rd_kafka_flush (self->producer, 10000);

      if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        g_warning ("changelog %s: %d records not acknowledged at exit: %s", self->topic,
                   rd_kafka_outq_len (self->producer), rd_kafka_err2str (err));
      rd_kafka_destroy (self->producer);
    }
  if (self->restorer != NULL)
    {
      rd_kafka_consumer_close (self->restorer);
      rd_kafka_destroy (self->restorer);
    }
  if (self->consumer_conf != NULL)
    rd_kafka_conf_destroy (self->consumer_conf);
  if (self->producer_conf != NULL)
    rd_kafka_conf_destroy (self->producer_conf);
  g_clear_pointer (&self->logs, g_hash_table_unref);
  g_free (self->topic);
  g_free (self->transactional_id);
  g_free (self->owner);
  g_free (self);
}

const char *
tally_checkpoint_get_topic (TallyCheckpoint *self)
{
  return self->topic;
}

gboolean
tally_checkpoint_ensure_topic (TallyCheckpoint *self, int n_partitions, int timeout_ms,
                               GError **error)
{
  static const char *const configs[] = { TALLY_CHECKPOINT_TOPIC_CONFIGS };
  const TallyTopicSpec spec = {
    .name = self->topic,
    .role = "changelog topic",
    .partitions = n_partitions,
    .min_partitions = n_partitions,
    .configs = configs,
    .grow = TRUE,
  };
  g_autoptr (GError) local_error = NULL;

  if (!tally_topics_ensure (self->producer, &spec, 1, timeout_ms, &local_error))
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR,
                   g_error_matches (local_error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_TIMEOUT)
                       ? TALLY_CHECKPOINT_ERROR_TIMEOUT
                       : TALLY_CHECKPOINT_ERROR_TOPIC,
                   "%s", local_error->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
produce (TallyCheckpoint *self, gint32 partition, const void *key, gsize key_len, const void *value,
         gsize value_len, gboolean marker, GError **error)
{
  for (;;)
    {
      rd_kafka_resp_err_t err;

      if (marker)
        err = rd_kafka_producev (self->producer, RD_KAFKA_V_TOPIC (self->topic),
                                 RD_KAFKA_V_PARTITION (partition), RD_KAFKA_V_KEY (key, key_len),
                                 RD_KAFKA_V_VALUE ((void *)value, value_len),
                                 RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_HEADER (MARKER_HEADER, MARKER_HEADER_VALUE,
                                                    (ssize_t)strlen (MARKER_HEADER_VALUE)),
                                 RD_KAFKA_V_END);
      else
        err = rd_kafka_producev (self->producer, RD_KAFKA_V_TOPIC (self->topic),
                                 RD_KAFKA_V_PARTITION (partition), RD_KAFKA_V_KEY (key, key_len),
                                 RD_KAFKA_V_VALUE ((void *)value, value_len),
                                 RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          self->pending++;
          return TRUE;
        }
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        {
          g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_PRODUCE,
                       "cannot produce to changelog %s [%" G_GINT32_FORMAT "]: %s", self->topic,
                       partition, rd_kafka_err2str (err));
          replace_producer (self, rd_kafka_err2str (err));
          return FALSE;
        }
      /* The producer's queue is full: serve delivery reports until there is room. */
      rd_kafka_poll (self->producer, 100);
    }
}

/* Queues the tombstones an acknowledged base made due in @partition. */
static gboolean
write_tombstones (TallyCheckpoint *self, gint32 partition, Log *log, GError **error)
{
  for (guint i = log->pending_obsolete; i < log->obsolete->len; i++)
    {
      gsize len;
      const void *key = g_bytes_get_data (g_ptr_array_index (log->obsolete, i), &len);

      if (!produce (self, partition, key, len, NULL, 0, FALSE, error))
        return FALSE;
    }
  log->pending_obsolete = log->obsolete->len;
  if (log->first_format_words != NULL && !log->pending_first_format_tombstones
      && log->pending_cut == G_MAXUINT)
    {
      gsize n;
      const TallyWordCount *e = tally_counts_get_entries (log->first_format_words, &n);

      for (gsize i = 0; i < n; i++)
        if (!produce (self, partition, e[i].word, e[i].len, NULL, 0, FALSE, error))
          return FALSE;
      log->pending_first_format_tombstones = TRUE;
    }
  return TRUE;
}

/* Queues @entries as blocks of @partition: deltas, or the chunks of a new base. */
static gboolean
write_blocks (TallyCheckpoint *self, gint32 partition, Log *log, const TallyWordCount *entries,
              gsize n, gboolean base, GError **error)
{
  g_autoptr (GPtrArray) values
      = tally_changelog_block_encode (entries, n, base ? self->sequence : 0, self->block_bytes);

  for (guint i = 0; i < values->len; i++)
    {
      guint8 key[TALLY_CHANGELOG_BLOCK_KEY_LEN];
      gsize len;
      const void *data = g_bytes_get_data (g_ptr_array_index (values, i), &len);
      LiveBlock *block;

      tally_changelog_block_key (self->writer, self->sequence++, key);
      if (!produce (self, partition, key, sizeof key, data, len, FALSE, error))
        return FALSE;
      block = g_new0 (LiveBlock, 1);
      block->key = g_bytes_new (key, sizeof key);
      block->bytes = len;
      block->base = base;
      g_ptr_array_add (log->live, block);
      if (!base)
        log->delta_bytes += len;
    }
  return TRUE;
}

static gboolean
write_markers (TallyCheckpoint *self, gint32 partition, GHashTable *offsets, GError **error)
{
  GHashTableIter iter;
  gpointer key, value;
  Log *log = get_log (self, partition);

  /* Whose counts these are, once per partition and process (compaction keeps the last). */
  if (self->owner != NULL && !log->owner_written && !log->pending_owner)
    {
      const char owner_key[2] = { '\0', TALLY_CHANGELOG_OWNER_KEY };

      if (!produce (self, partition, owner_key, sizeof owner_key, self->owner, strlen (self->owner),
                    FALSE, error))
        return FALSE;
      log->pending_owner = TRUE;
    }

  if (offsets != NULL)
    g_hash_table_iter_init (&iter, offsets);
  while (offsets != NULL && g_hash_table_iter_next (&iter, &key, &value))
    {
      const char *input_topic = key;
      gsize topic_len = strlen (input_topic);
      g_autofree char *marker_key = g_malloc (topic_len + 1);
      char digits[24];

      marker_key[0] = '\0';
      memcpy (marker_key + 1, input_topic, topic_len);
      g_snprintf (digits, sizeof digits, "%" G_GINT64_FORMAT, *(gint64 *)value);
      if (!produce (self, partition, marker_key, topic_len + 1, digits, strlen (digits), TRUE,
                    error))
        return FALSE;
    }
  return TRUE;
}

gboolean
tally_checkpoint_write (TallyCheckpoint *self, gint32 partition, TallyCounts *changes,
                        GHashTable *offsets, GError **error)
{
  Log *log = get_log (self, partition);

  if (!write_tombstones (self, partition, log, error))
    return FALSE;
  if (changes != NULL && tally_counts_get_n_words (changes) > 0)
    {
      gsize n = 0;
      const TallyWordCount *entries = tally_counts_get_entries (changes, &n);

      if (!write_blocks (self, partition, log, entries, n, FALSE, error))
        return FALSE;
    }
  if (!write_markers (self, partition, offsets, error))
    return FALSE;
  rd_kafka_poll (self->producer, 0);
  return TRUE;
}

gboolean
tally_checkpoint_wants_base (TallyCheckpoint *self, gint32 partition)
{
  Log *log = get_log (self, partition);
  guint n_deltas = 0;

  for (guint i = 0; i < log->live->len; i++)
    if (!((LiveBlock *)g_ptr_array_index (log->live, i))->base)
      n_deltas++;
  return log->pending_cut == G_MAXUINT
         && (log->first_format
             || (log->delta_bytes >= self->min_base_bytes && log->delta_bytes >= log->base_bytes)
             || n_deltas >= MAX_DELTAS);
}

gboolean
tally_checkpoint_write_base (TallyCheckpoint *self, gint32 partition, TallyCounts *all,
                             GHashTable *offsets, GError **error)
{
  Log *log = get_log (self, partition);
  gsize n = 0;
  const TallyWordCount *entries;

  g_return_val_if_fail (all != NULL, FALSE);
  g_return_val_if_fail (log->pending_cut == G_MAXUINT, FALSE);

  if (!write_tombstones (self, partition, log, error))
    return FALSE;
  entries = tally_counts_get_entries (all, &n);
  log->pending_cut = log->live->len;
  if (!write_blocks (self, partition, log, entries, n, TRUE, error))
    return FALSE;
  log->pending_base_end = log->live->len;
  if (log->first_format)
    {
      /* Once this base is acknowledged, the word records of the first format go too. */
      log->pending_first_format = TRUE;
      g_clear_pointer (&log->first_format_words, tally_counts_unref);
      log->first_format_words = tally_counts_ref (all);
    }
  if (!write_markers (self, partition, offsets, error))
    return FALSE;
  rd_kafka_poll (self->producer, 0);
  return TRUE;
}

void
tally_checkpoint_set_block_sizes (TallyCheckpoint *self, gsize block_bytes, guint64 min_base_bytes)
{
  g_return_if_fail (self != NULL && block_bytes > 0);
  self->block_bytes = block_bytes;
  self->min_base_bytes = min_base_bytes;
}

gboolean
tally_checkpoint_write_record (TallyCheckpoint *self, gint32 partition, const void *key,
                               gsize key_len, const char *value, GError **error)
{
  g_return_val_if_fail (self != NULL && key != NULL && key_len >= 2, FALSE);
  g_return_val_if_fail (((const char *)key)[0] == '\0' && ((const guchar *)key)[1] < 0x20, FALSE);
  g_return_val_if_fail (((const char *)key)[1] != TALLY_CHANGELOG_BLOCK_KEY, FALSE);
  g_return_val_if_fail (((const char *)key)[1] != TALLY_CHANGELOG_OWNER_KEY, FALSE);

  return produce (self, partition, key, key_len, value, value != NULL ? strlen (value) : 0, FALSE,
                  error);
}

gboolean
tally_checkpoint_write_snapshot (TallyCheckpoint *self, const char *topic,
                                 const TallySnapshot *snapshot, gsize max_record_bytes,
                                 GError **error)
{
  g_autoptr (GPtrArray) values = NULL;

  g_return_val_if_fail (self != NULL && topic != NULL && snapshot != NULL, FALSE);

  values = tally_snapshot_encode (snapshot, max_record_bytes, error);
  if (values == NULL)
    return FALSE;
  for (guint i = 0; i < values->len; i++)
    {
      gsize len;
      const void *data = g_bytes_get_data (g_ptr_array_index (values, i), &len);
      g_autofree char *part_text = g_strdup_printf ("%u", i);
      g_autofree char *parts_text = g_strdup_printf ("%u", values->len);

      for (;;)
        {
          rd_kafka_headers_t *headers = rd_kafka_headers_new (4);
          rd_kafka_resp_err_t err;

          rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID, -1,
                               snapshot->snapshot_id, -1);
          rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_REQUEST_ID, -1, snapshot->request_id,
                               -1);
          rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_PART, -1, part_text, -1);
          rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_PARTS, -1, parts_text, -1);
          err = rd_kafka_producev (
              self->producer, RD_KAFKA_V_TOPIC (topic),
              RD_KAFKA_V_KEY (snapshot->snapshot_id, strlen (snapshot->snapshot_id)),
              RD_KAFKA_V_VALUE ((void *)data, len), RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY),
              RD_KAFKA_V_HEADERS (headers), RD_KAFKA_V_END);
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            {
              self->pending++;
              break;
            }
          rd_kafka_headers_destroy (headers);
          if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            {
              g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_PRODUCE,
                           "cannot produce snapshot %s to %s: %s", snapshot->snapshot_id, topic,
                           rd_kafka_err2str (err));
              replace_producer (self, rd_kafka_err2str (err));
              return FALSE;
            }
          rd_kafka_poll (self->producer, 100);
        }
    }
  return TRUE;
}

void
tally_checkpoint_set_timeout (TallyCheckpoint *self, int timeout_ms)
{
  g_return_if_fail (self != NULL && timeout_ms > 0);
  self->timeout_ms = timeout_ms;
}

void
tally_checkpoint_set_owner (TallyCheckpoint *self, const char *group)
{
  g_return_if_fail (self != NULL);
  g_free (self->owner);
  self->owner = g_strdup (group);
}

void
tally_checkpoint_set_extension_func (TallyCheckpoint *self, TallyCheckpointExtensionFunc func,
                                     gpointer user_data)
{
  g_return_if_fail (self != NULL);
  self->extension = func;
  self->extension_data = user_data;
}

/* After a failure the producer may refuse the changelog until its next metadata refresh
 * (a permanent topic error is cached for topic.metadata.refresh.interval.ms), or may have
 * failed fatally (KIP-98: a sequence gap an idempotent producer cannot repair). Either
 * way, replace it: what it had not delivered counts as failed, and the caller writes
 * those changes again with the next checkpoint. */
static void
replace_producer (TallyCheckpoint *self, const char *why)
{
  g_autoptr (GError) error = NULL;

  g_warning ("changelog %s: replacing the producer (%s)", self->topic, why);
  rd_kafka_purge (self->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll (self->producer, 0);
  rd_kafka_destroy (self->producer);
  self->producer = NULL;
  self->in_transaction = FALSE;
  self->pending = 0;
  settle_logs (self, FALSE);
  /* `failed` stays: tally_checkpoint_flush() reports the records lost with the old one. */
  /* A new producer of the same transactional.id fences the old one's epoch and aborts
   * what it left open, once its transactions are initialised: by the next
   * tally_checkpoint_begin(), not here, where a broker that is down (the usual reason to
   * be here) would hold the caller for the whole wait and then fail. rd_kafka_new() needs
   * no broker; it fails only on a configuration that worked before. */
  if (!create_producer (self, rd_kafka_conf_dup (self->producer_conf), &error))
    g_error ("changelog %s: cannot create a new producer: %s", self->topic, error->message);
}

gboolean
tally_checkpoint_flush (TallyCheckpoint *self, int timeout_ms, GError **error)
{
  rd_kafka_resp_err_t err = rd_kafka_flush (self->producer, timeout_ms);
  gboolean ok = TRUE;

  {
    char errstr[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error (self->producer, errstr, sizeof errstr);

    if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR)
      replace_producer (self, errstr);
    else if (self->failed > 0)
      replace_producer (self, "delivery failed");
  }

  if (self->failed > 0)
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_PRODUCE,
                   "%" G_GUINT64_FORMAT " changelog records to %s were not delivered: %s",
                   self->failed, self->topic, rd_kafka_err2str (self->first_error));
      ok = FALSE;
    }
  else if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_TIMEOUT,
                   "%d changelog records to %s not acknowledged within %d ms",
                   rd_kafka_outq_len (self->producer), self->topic, timeout_ms);
      return FALSE; /* keep counting the outstanding ones */
    }
  settle_logs (self, ok);
  self->failed = 0;
  self->pending = 0;
  self->first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  return ok;
}

gboolean
tally_checkpoint_is_transactional (TallyCheckpoint *self)
{
  return self->transactional_id != NULL;
}

gboolean
tally_checkpoint_begin (TallyCheckpoint *self, GError **error)
{
  rd_kafka_error_t *txn_error;

  g_return_val_if_fail (self->transactional_id != NULL, FALSE);
  g_return_val_if_fail (!self->in_transaction, FALSE);
  /* A replaced producer's transactions, or those a broker that was down did not get to
   * initialise: nothing is written until they are. */
  if (!init_transactions (self, self->timeout_ms, error))
    return FALSE;
  txn_error = rd_kafka_begin_transaction (self->producer);
  if (txn_error != NULL)
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_PRODUCE,
                   "changelog %s: cannot begin a transaction: %s", self->topic,
                   rd_kafka_error_string (txn_error));
      if (rd_kafka_error_is_fatal (txn_error))
        replace_producer (self, rd_kafka_error_string (txn_error));
      rd_kafka_error_destroy (txn_error);
      return FALSE;
    }
  self->in_transaction = TRUE;
  self->failed = 0;
  self->pending = 0;
  return TRUE;
}

void
tally_checkpoint_abort (TallyCheckpoint *self)
{
  rd_kafka_error_t *txn_error;

  if (!self->in_transaction)
    return;
  self->in_transaction = FALSE;
  txn_error = rd_kafka_abort_transaction (self->producer, self->timeout_ms);
  if (txn_error != NULL)
    {
      /* A new producer aborts it for us (InitProducerId bumps the epoch). */
      g_autofree char *why
          = g_strdup_printf ("abort failed: %s", rd_kafka_error_string (txn_error));

      rd_kafka_error_destroy (txn_error);
      replace_producer (self, why);
    }
  settle_logs (self, FALSE);
  self->failed = 0;
  self->pending = 0;
}

/* Whether @code says that this instance may no longer write: a member of an old group
 * generation (KIP-447) or a producer whose transactional.id was taken over. */
static gboolean
is_fencing (rd_kafka_resp_err_t code)
{
  switch (code)
    {
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
      return TRUE;
    default:
      return FALSE;
    }
}

/* A step of the commit failed: abort (or replace a fatally failed producer) and say why. */
static gboolean
transaction_failed (TallyCheckpoint *self, rd_kafka_error_t *txn_error, const char *step,
                    GError **error)
{
  rd_kafka_resp_err_t code = rd_kafka_error_code (txn_error);
  int kind = is_fencing (code)                      ? TALLY_CHECKPOINT_ERROR_FENCED
             : code == RD_KAFKA_RESP_ERR__TIMED_OUT ? TALLY_CHECKPOINT_ERROR_TIMEOUT
                                                    : TALLY_CHECKPOINT_ERROR_PRODUCE;

  tally_kafka_errors_check_txn (txn_error, "changelog producer", self->topic);
  g_set_error (error, TALLY_CHECKPOINT_ERROR, kind,
               "changelog %s: %s failed, transaction aborted: %s: %s", self->topic, step,
               rd_kafka_err2name (code), rd_kafka_error_string (txn_error));
  if (rd_kafka_error_is_fatal (txn_error))
    replace_producer (self, rd_kafka_error_string (txn_error));
  else
    tally_checkpoint_abort (self);
  rd_kafka_error_destroy (txn_error);
  return FALSE;
}

gboolean
tally_checkpoint_commit (TallyCheckpoint *self, const rd_kafka_topic_partition_list_t *offsets,
                         const rd_kafka_consumer_group_metadata_t *group_metadata, int timeout_ms,
                         GError **error)
{
  rd_kafka_error_t *txn_error;

  g_return_val_if_fail (self->in_transaction, FALSE);
  if (offsets != NULL && offsets->cnt > 0)
    {
      txn_error = rd_kafka_send_offsets_to_transaction (self->producer, offsets, group_metadata,
                                                        timeout_ms);
      if (txn_error != NULL)
        return transaction_failed (self, txn_error, "sending the input offsets", error);
    }
  txn_error = rd_kafka_commit_transaction (self->producer, timeout_ms);
  if (txn_error != NULL)
    return transaction_failed (self, txn_error, "committing", error);
  settle_logs (self, TRUE);
  self->in_transaction = FALSE;
  self->failed = 0;
  self->pending = 0;
  self->first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  return TRUE;
}

static gboolean
ensure_restorer (TallyCheckpoint *self, GError **error)
{
  char errstr[512];
  rd_kafka_conf_t *conf;

  if (self->restorer != NULL)
    return TRUE;
  conf = rd_kafka_conf_dup (self->consumer_conf);
  self->restorer = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (self->restorer == NULL)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_CONFIG,
                   "cannot create the changelog restore consumer: %s", errstr);
      return FALSE;
    }
  return TRUE;
}

/* The watermarks of changelog partition @partition. Right after the topic was created its
 * partitions may have no leader yet (and a broker may be restarting): retry until the
 * deadline. A topic still unknown after UNKNOWN_TOPIC_GRACE_MS does not exist: there is
 * nothing to restore (low = high = 0). */
static gboolean
query_watermarks (TallyCheckpoint *self, gint32 partition, gint64 started_us, gint64 deadline,
                  gint64 *low, gint64 *high, GError **error)
{
  rd_kafka_resp_err_t err;

  for (;;)
    {
      gint64 now = g_get_monotonic_time ();
      gboolean unknown;

      err = rd_kafka_query_watermark_offsets (self->restorer, self->topic, partition, low, high,
                                              (int)MAX ((deadline - now) / 1000, 1));
      unknown = err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return TRUE;
      if (unknown && now - started_us >= UNKNOWN_TOPIC_GRACE_MS * G_TIME_SPAN_MILLISECOND)
        {
          *high = *low = 0;
          return TRUE;
        }
      if (now >= deadline)
        break;
      g_debug ("changelog %s [%" G_GINT32_FORMAT "]: watermarks: %s; retrying", self->topic,
               partition, rd_kafka_err2str (err));
      g_usleep (100 * 1000);
    }
  g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_RESTORE,
               "cannot read the watermarks of changelog %s [%" G_GINT32_FORMAT "]: %s", self->topic,
               partition, rd_kafka_err2str (err));
  return FALSE;
}

typedef struct
{
  GBytes *key;
  const TallyChangelogBlockRef *ref;
} RestoredBlock;

static int
compare_offsets (gconstpointer a, gconstpointer b)
{
  gint64 x = ((const RestoredBlock *)a)->ref->offset, y = ((const RestoredBlock *)b)->ref->offset;

  return x < y ? -1 : x > y;
}

/* The Log of a partition just restored: its blocks in log order; those before the last
 * complete base are obsolete (that base was committed before anything after it). */
static Log *
log_from_restore (const TallyRestoredStore *store)
{
  Log *log = log_new ();
  g_autoptr (GArray) blocks = g_array_new (FALSE, FALSE, sizeof (RestoredBlock));
  g_autoptr (GHashTable) chunks = g_hash_table_new (g_int64_hash, g_int64_equal); /* id -> n */
  GHashTableIter iter;
  gpointer key, value;
  gint64 base_start = -1;
  guint64 base_id = 0;

  log->first_format = store->first_format;
  if (store->blocks == NULL)
    return log;
  g_hash_table_iter_init (&iter, store->blocks);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      RestoredBlock b = { key, value };

      g_array_append_val (blocks, b);
      if (b.ref->info.base)
        {
          guint n = GPOINTER_TO_UINT (g_hash_table_lookup (chunks, &b.ref->info.base_id));

          g_hash_table_insert (chunks, (gpointer)&b.ref->info.base_id, GUINT_TO_POINTER (n + 1));
        }
    }
  g_array_sort (blocks, compare_offsets);
  /* The last base with every chunk read: where it starts. */
  for (guint i = 0; i < blocks->len; i++)
    {
      const TallyChangelogBlockRef *ref = g_array_index (blocks, RestoredBlock, i).ref;

      if (ref->info.base && ref->info.base_id != base_id
          && GPOINTER_TO_UINT (g_hash_table_lookup (chunks, &ref->info.base_id))
                 == ref->info.n_chunks)
        {
          base_id = ref->info.base_id;
          base_start = ref->offset;
        }
    }
  for (guint i = 0; i < blocks->len; i++)
    {
      RestoredBlock *b = &g_array_index (blocks, RestoredBlock, i);
      LiveBlock *block;

      if (b->ref->offset < base_start)
        {
          g_ptr_array_add (log->obsolete, g_bytes_ref (b->key));
          continue;
        }
      block = g_new0 (LiveBlock, 1);
      block->key = g_bytes_ref (b->key);
      block->bytes = b->ref->bytes;
      block->base = b->ref->info.base && b->ref->info.base_id == base_id;
      g_ptr_array_add (log->live, block);
      if (block->base)
        log->base_bytes += block->bytes;
      else
        log->delta_bytes += block->bytes;
    }
  return log;
}

gboolean
tally_checkpoint_restore_many (TallyCheckpoint *self, TallyRestoredStore *stores, guint n_stores,
                               int timeout_ms, GError **error)
{
  gint64 started_us = g_get_monotonic_time ();
  gint64 deadline = started_us + (gint64)timeout_ms * 1000;
  g_autoptr (GError) local_error = NULL;
  guint64 records = 0;

  if (!ensure_restorer (self, error))
    return FALSE;
  for (guint i = 0; i < n_stores; i++)
    if (!query_watermarks (self, stores[i].partition, started_us, deadline, &stores[i].low,
                           &stores[i].high, error))
      return FALSE;
  if (!tally_changelog_restore_read (self->restorer, self->topic, stores, n_stores, deadline,
                                     self->extension, self->extension_data, &local_error))
    {
      g_set_error (error, TALLY_CHECKPOINT_ERROR,
                   g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)
                       ? TALLY_CHECKPOINT_ERROR_TIMEOUT
                       : TALLY_CHECKPOINT_ERROR_RESTORE,
                   "%s (within %d ms)", local_error->message, timeout_ms);
      return FALSE;
    }
  for (guint i = 0; self->owner != NULL && i < n_stores; i++)
    for (guint k = 0; stores[i].owners != NULL && k < stores[i].owners->len; k++)
      {
        const char *owner = g_ptr_array_index (stores[i].owners, k);
        gboolean mine = FALSE;
        g_autofree char *message = NULL;

        if (strcmp (owner, self->owner) == 0)
          continue;
        for (guint m = 0; m < stores[i].owners->len; m++)
          mine = mine || strcmp (g_ptr_array_index (stores[i].owners, m), self->owner) == 0;
        /* Another deployment's counts: taking them would add them to ours, and our
         * checkpoints would then add ours to theirs. */
        if (mine)
          message = g_strdup_printf (
              "changelog topic %s [%" G_GINT32_FORMAT "] holds the counts of consumer "
              "groups '%s' (this instance's) and '%s': two deployments wrote to it, and its "
              "counts mix theirs. Give each deployment its own [checkpoint] changelog_topic; "
              "this one's counts come back exact only from a new changelog topic with its "
              "input read again from the beginning",
              self->topic, stores[i].partition, self->owner, owner);
        else
          message = g_strdup_printf (
              "changelog topic %s [%" G_GINT32_FORMAT "] holds the counts of consumer group "
              "'%s', and this instance is in group '%s': two deployments cannot share a "
              "changelog topic (their counts would mix). Give this one its own: set "
              "[checkpoint] changelog_topic (for example %s-changelog)",
              self->topic, stores[i].partition, owner, self->owner, self->owner);
        g_set_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_FOREIGN, "%s", message);
        for (guint j = 0; j < n_stores; j++)
          tally_restored_store_clear (&stores[j]);
        tally_kafka_errors_fatal (message);
        return FALSE;
      }
  for (guint i = 0; i < n_stores; i++)
    {
      records += stores[i].records;
      g_hash_table_replace (self->logs, GINT_TO_POINTER (stores[i].partition),
                            log_from_restore (&stores[i]));
    }
  g_debug ("changelog %s: restored %u partition(s), %" G_GUINT64_FORMAT " records in %.1f ms",
           self->topic, n_stores, records, (double)(g_get_monotonic_time () - started_us) / 1000);
  return TRUE;
}

gboolean
tally_checkpoint_restore (TallyCheckpoint *self, gint32 partition, int timeout_ms,
                          TallyCounts **counts, GHashTable **offsets, GError **error)
{
  TallyRestoredStore store = { .partition = partition };

  if (!tally_checkpoint_restore_many (self, &store, 1, timeout_ms, error))
    return FALSE;
  *counts = g_steal_pointer (&store.counts);
  *offsets = g_steal_pointer (&store.offsets);
  /* The blocks read are in the partition's log now (log_from_restore()). */
  tally_restored_store_clear (&store);
  return TRUE;
}
