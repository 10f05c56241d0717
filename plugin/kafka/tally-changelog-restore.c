/* tally-changelog-restore.c — one restore consumer reading several changelog partitions.
 *
 * The consumer is assigned every partition at RD_KAFKA_OFFSET_BEGINNING; messages of all
 * of them arrive interleaved from rd_kafka_consumer_poll() and go to their store by
 * partition. A partition is done at its end (`high`): a message at high - 1 or later, or
 * the end-of-partition event at or past it. Nothing at or past the end is taken: with
 * read_committed the message at high - 1 may be a transaction marker, which is never
 * delivered, and what comes after it is a transaction committed after the end was read,
 * whose first record is the store's most frequent word (checkpoints write words in count
 * order). Taking it gave that word the count of a later checkpoint while the store
 * restarted from the earlier offset marker, so the records between the two were counted
 * twice for that word (issue 12).
 *
 * Only what an offset marker covers is taken: word records (and windows' extension
 * records) are held until the next marker of their partition and dropped if none comes.
 * A checkpoint writes its words before its markers, so records after the last marker are
 * a transaction the read saw only in part (the end fell inside it because another
 * producer's transaction was open there) or, at least once, a checkpoint a crash cut
 * short; counting them would put the counts ahead of the offset the store restarts from.
 * Each store is built directly in a #TallyCountsBuilder (the domain's counting table:
 * arena keys, no allocation per word) with tally_counts_builder_set_max(), and
 * become a #TallyCounts once read. Messages are taken in batches
 * (rd_kafka_consume_batch_queue()) to spend the time on the records, not the calls.
 *
 * Words come in blocks (tally-changelog-block.h) or, in the first format, a record each.
 * A block is held as its message until a marker covers it, then decoded. Decoding and
 * sorting are the CPU of a restore, so with several stores each store's records go to one
 * of up to as many worker threads as there are cores; the extension records a worker
 * takes are handed to the extension function on the calling thread once all are read.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-changelog-restore.h"

#include "tally-changelog-block.h"

#include <gio/gio.h>
#include <string.h>

/* Messages taken from the consumer queue per call. */
#define BATCH 4096

typedef struct
{
  TallyRestoredStore *store;
  guint worker;                 /* which worker takes its records */
  TallyCountsBuilder *words;    /* one entry per word, its largest count */
  TallyCounts *counts;          /* once read, by its worker: what @words held */
  gint64 last_word_record;      /* offset of the last word record of the first format, or -1 */
  gint64 last_word_tombstone;   /* offset of the last tombstone of a word key, or -1 */
  GPtrArray *held_blocks;       /* rd_kafka_message_t: blocks since the last marker */
  GByteArray *taken_extensions; /* extension records a marker covered, packed as held */
  gboolean done;
  TallyChangelogExtensionFunc extension;
  gpointer extension_data;
  /* Records read since the last offset marker, taken when the next one comes: packed
   * { guint32 key length; guint64 count; key bytes } for words, { guint32 key length;
   * gint64 value length (-1: tombstone); key bytes; value bytes } for extension records. */
  GByteArray *held_words;
  GByteArray *held_extensions;
  guint64 n_held;
} Reading;

static void
hold (GByteArray *held, const void *key, guint32 key_len, gint64 number, const void *bytes,
      gsize n_bytes)
{
  g_byte_array_append (held, (const guint8 *)&key_len, sizeof key_len);
  g_byte_array_append (held, (const guint8 *)&number, sizeof number);
  g_byte_array_append (held, key, key_len);
  if (n_bytes > 0)
    g_byte_array_append (held, bytes, (guint)n_bytes);
}

/* An offset marker came: what it covers is part of the store. */
static void
take_held (Reading *r)
{
  const guint8 *p, *end;

  for (p = r->held_words->data, end = p + r->held_words->len; p < end;)
    {
      guint32 key_len;
      guint64 count;

      memcpy (&key_len, p, sizeof key_len);
      memcpy (&count, p + sizeof key_len, sizeof count);
      p += sizeof key_len + sizeof count;
      /* Counts only grow: the largest value of a word is the newest. */
      tally_counts_builder_set_max (r->words, (const char *)p, key_len, count);
      p += key_len;
    }
  for (guint i = 0; i < r->held_blocks->len; i++)
    {
      const rd_kafka_message_t *m = g_ptr_array_index (r->held_blocks, i);
      TallyChangelogBlockInfo info;

      if (!tally_changelog_block_decode (m->payload, m->len, r->words, &info))
        g_warning ("changelog [%" G_GINT32_FORMAT "] offset %" G_GINT64_FORMAT
                   ": a damaged block, read up to the damage",
                   m->partition, m->offset);
    }
  g_ptr_array_set_size (r->held_blocks, 0);
  /* Given to the extension function on the calling thread (run_extensions()). */
  g_byte_array_append (r->taken_extensions, r->held_extensions->data, r->held_extensions->len);
  g_byte_array_set_size (r->held_words, 0);
  g_byte_array_set_size (r->held_extensions, 0);
  r->n_held = 0;
}

static gboolean
parse_decimal (const void *bytes, gsize len, guint64 *out)
{
  char buf[24];

  if (bytes == NULL || len == 0 || len >= sizeof buf)
    return FALSE;
  memcpy (buf, bytes, len);
  buf[len] = '\0';
  return g_ascii_string_to_unsigned (buf, 10, 0, G_MAXINT64, out, NULL);
}

/* Takes one changelog record into @r: a marker at once, the others when a marker covers
 * them. Returns %TRUE when it keeps @m (a block, until a marker covers it). */
static gboolean
take_record (Reading *r, const char *topic, rd_kafka_message_t *m)
{
  guint64 number;

  r->store->records++;
  if (tally_changelog_block_is_key (m->key, m->key_len))
    {
      g_autoptr (GBytes) key = g_bytes_new (m->key, m->key_len);
      TallyChangelogBlockRef *ref;

      if (m->payload == NULL)
        {
          /* Tombstoned by its writer: a newer base holds its words. */
          g_hash_table_remove (r->store->blocks, key);
          return FALSE;
        }
      /* Known as written, whether a marker covers it or not: a later base tombstones it. */
      ref = g_new0 (TallyChangelogBlockRef, 1);
      ref->offset = m->offset;
      ref->bytes = m->len;
      tally_changelog_block_read_info (m->payload, m->len, &ref->info);
      g_hash_table_replace (r->store->blocks, g_steal_pointer (&key), ref);
      g_ptr_array_add (r->held_blocks, m);
      r->n_held++;
      return TRUE;
    }
  if (m->key_len == 2 && ((const char *)m->key)[0] == '\0'
      && ((const char *)m->key)[1] == TALLY_CHANGELOG_OWNER_KEY)
    {
      /* Whose counts these are: taken whether a marker covers it or not. */
      g_autofree char *owner
          = m->payload != NULL ? g_strndup (m->payload, MIN (m->len, 1024)) : NULL;
      guint i;

      if (owner == NULL)
        return FALSE;
      if (r->store->owners == NULL)
        r->store->owners = g_ptr_array_new_with_free_func (g_free);
      for (i = 0; i < r->store->owners->len; i++)
        if (strcmp (g_ptr_array_index (r->store->owners, i), owner) == 0)
          break;
      if (i == r->store->owners->len)
        g_ptr_array_add (r->store->owners, g_steal_pointer (&owner));
    }
  else if (m->key_len > 1 && ((const char *)m->key)[0] == '\0'
           && ((const guchar *)m->key)[1] < 0x20)
    {
      /* An extension record (windows): not a topic's marker, not a word. */
      if (r->extension != NULL)
        {
          hold (r->held_extensions, m->key, (guint32)m->key_len,
                m->payload != NULL ? (gint64)m->len : -1, m->payload,
                m->payload != NULL ? m->len : 0);
          r->n_held++;
        }
    }
  else if (m->key_len > 1 && ((const char *)m->key)[0] == '\0'
           && parse_decimal (m->payload, m->len, &number))
    {
      g_autofree char *input_topic = g_strndup ((const char *)m->key + 1, m->key_len - 1);
      gint64 *offset = g_hash_table_lookup (r->store->offsets, input_topic);

      take_held (r);
      /* Offsets only grow too: a late commit of an older checkpoint (an instance that lost
       * its partitions) cannot take the store back to its offset. */
      if (offset == NULL)
        {
          offset = g_new (gint64, 1);
          *offset = (gint64)number;
          g_hash_table_insert (r->store->offsets, g_steal_pointer (&input_topic), offset);
        }
      else
        *offset = MAX (*offset, (gint64)number);
    }
  else if (m->key_len > 0 && m->key_len <= G_MAXINT32 && memchr (m->key, '\0', m->key_len) == NULL
           && g_utf8_validate (m->key, (gssize)m->key_len, NULL)
           && parse_decimal (m->payload, m->len, &number))
    {
      /* A word record of the first format. */
      hold (r->held_words, m->key, (guint32)m->key_len, (gint64)number, NULL, 0);
      r->n_held++;
      r->store->word_records++;
      r->last_word_record = m->offset;
    }
  else if (m->payload == NULL && m->key_len > 0 && ((const char *)m->key)[0] != '\0')
    /* A word record of the first format, tombstoned once a base held the word: those
     * tombstones come after every word record of the first format. */
    r->last_word_tombstone = m->offset;
  else
    g_warning ("changelog %s [%" G_GINT32_FORMAT "] offset %" G_GINT64_FORMAT
               ": not a Tally changelog record, skipped",
               topic, m->partition, m->offset);
  return FALSE;
}

/* Gives the extension records the markers covered to the extension function, in
 * changelog order; on the calling thread. */
static void
run_extensions (Reading *r)
{
  const guint8 *p, *end;

  for (p = r->taken_extensions->data, end = p + r->taken_extensions->len; p < end;)
    {
      guint32 key_len;
      gint64 value_len;
      const guint8 *key;

      memcpy (&key_len, p, sizeof key_len);
      memcpy (&value_len, p + sizeof key_len, sizeof value_len);
      key = p + sizeof key_len + sizeof value_len;
      p = key + key_len + MAX (value_len, 0);
      if (r->extension != NULL)
        r->extension (r->store->partition, key, key_len, value_len >= 0 ? key + key_len : NULL,
                      (gsize)MAX (value_len, 0), r->extension_data);
    }
  g_byte_array_set_size (r->taken_extensions, 0);
}

static Reading *
find_reading (Reading *readings, guint n, gint32 partition)
{
  for (guint i = 0; i < n; i++)
    if (readings[i].store->partition == partition)
      return &readings[i];
  return NULL;
}

/* A worker takes the records of its stores (Reading.worker) on its own thread, each
 * store's builder touched by that thread only; the reading thread hands it batches of
 * messages (GPtrArray, or QUIT). */
typedef struct Worker
{
  GThread *thread;
  GAsyncQueue *queue;
  Reading *readings;
  guint n_readings;
  const char *topic;
  guint index;
} Worker;

static gpointer QUIT = &QUIT;

static gpointer
worker_run (gpointer data)
{
  Worker *w = data;

  for (;;)
    {
      GPtrArray *messages = g_async_queue_pop (w->queue);

      if (messages == QUIT)
        {
          /* Each worker sorts its own stores' counts. */
          for (guint i = 0; i < w->n_readings; i++)
            if (w->readings[i].worker == w->index)
              w->readings[i].counts = tally_counts_builder_end (w->readings[i].words);
          return NULL;
        }
      for (guint i = 0; i < messages->len; i++)
        {
          rd_kafka_message_t *m = g_ptr_array_index (messages, i);

          if (!take_record (find_reading (w->readings, w->n_readings, m->partition), w->topic, m))
            rd_kafka_message_destroy (m);
        }
      g_ptr_array_unref (messages);
    }
}

gboolean
tally_changelog_restore_read (rd_kafka_t *consumer, const char *topic, TallyRestoredStore *stores,
                              guint n_stores, gint64 deadline_us,
                              TallyChangelogExtensionFunc extension, gpointer extension_data,
                              GError **error)
{
  g_autofree Reading *readings = g_new0 (Reading, n_stores);
  rd_kafka_topic_partition_list_t *assignment = rd_kafka_topic_partition_list_new (n_stores);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  g_autofree rd_kafka_message_t **batch = g_new (rd_kafka_message_t *, BATCH);
  rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer (consumer);
  guint left = 0;
  gboolean ok = TRUE;
  /* One worker per store up to the number of cores; one store is read inline. */
  guint n_workers = n_stores > 1 ? MIN (n_stores, MAX (g_get_num_processors (), 2)) : 0;
  g_autofree Worker *workers = g_new0 (Worker, n_workers);
  g_autofree GPtrArray **handing = g_new0 (GPtrArray *, n_workers);

  for (guint i = 0; i < n_stores; i++)
    {
      readings[i].store = &stores[i];
      readings[i].worker = n_workers > 0 ? i % n_workers : 0;
      readings[i].words = tally_counts_builder_new ();
      readings[i].last_word_record = readings[i].last_word_tombstone = -1;
      readings[i].held_blocks
          = g_ptr_array_new_with_free_func ((GDestroyNotify)rd_kafka_message_destroy);
      readings[i].taken_extensions = g_byte_array_new ();
      readings[i].extension = extension;
      readings[i].extension_data = extension_data;
      readings[i].held_words = g_byte_array_new ();
      readings[i].held_extensions = g_byte_array_new ();
      stores[i].offsets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      stores[i].blocks = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                                (GDestroyNotify)g_bytes_unref, g_free);
      stores[i].records = 0;
      stores[i].word_records = 0;
      readings[i].done = stores[i].high <= stores[i].low;
      if (!readings[i].done)
        {
          rd_kafka_topic_partition_list_add (assignment, topic, stores[i].partition)->offset
              = RD_KAFKA_OFFSET_BEGINNING;
          left++;
        }
    }
  for (guint w = 0; w < n_workers; w++)
    {
      workers[w].queue = g_async_queue_new ();
      workers[w].readings = readings;
      workers[w].n_readings = n_stores;
      workers[w].topic = topic;
      workers[w].index = w;
      workers[w].thread = g_thread_new ("tally-restore", worker_run, &workers[w]);
    }
  if (left > 0)
    err = rd_kafka_assign (consumer, assignment);
  rd_kafka_topic_partition_list_destroy (assignment);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot assign changelog %s: %s", topic,
                   rd_kafka_err2str (err));
      ok = FALSE;
      left = 0;
    }

  while (left > 0)
    {
      gint64 remaining_ms = (deadline_us - g_get_monotonic_time ()) / 1000;
      gssize n;

      if (remaining_ms <= 0)
        {
          GString *which = g_string_new (NULL);

          for (guint i = 0; i < n_stores; i++)
            if (!readings[i].done)
              g_string_append_printf (
                  which, "%s[%" G_GINT32_FORMAT "] before offset %" G_GINT64_FORMAT,
                  which->len > 0 ? ", " : "", stores[i].partition, stores[i].high);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       "restoring changelog %s: %s not read in time", topic, which->str);
          g_string_free (which, TRUE);
          ok = FALSE;
          break;
        }
      n = rd_kafka_consume_batch_queue (queue, (int)MIN (remaining_ms, 200), batch, BATCH);
      for (gssize k = 0; k < n; k++)
        {
          rd_kafka_message_t *m = batch[k];
          Reading *r = find_reading (readings, n_stores, m->partition);

          if (ok && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            {
              if (r != NULL && !r->done && m->offset >= r->store->high)
                {
                  r->done = TRUE;
                  left--;
                }
            }
          else if (ok && m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                           "reading changelog %s [%" G_GINT32_FORMAT "]: %s", topic, m->partition,
                           rd_kafka_message_errstr (m));
              ok = FALSE;
            }
          else if (ok && r != NULL && !r->done)
            {
              gboolean take = m->offset < r->store->high;

              /* Past the end: a transaction committed after the end was read. */
              if (!take)
                g_debug ("changelog %s [%" G_GINT32_FORMAT "]: read to its end %" G_GINT64_FORMAT
                         "; offset %" G_GINT64_FORMAT ", committed since, not taken",
                         topic, m->partition, r->store->high, m->offset);
              if (m->offset + 1 >= r->store->high)
                {
                  r->done = TRUE;
                  left--;
                }
              if (take && n_workers > 0)
                {
                  if (handing[r->worker] == NULL)
                    handing[r->worker] = g_ptr_array_new ();
                  g_ptr_array_add (handing[r->worker], m);
                  continue; /* the worker keeps or destroys it */
                }
              if (take && take_record (r, topic, m))
                continue; /* kept until a marker covers it */
            }
          rd_kafka_message_destroy (m);
        }
      for (guint w = 0; w < n_workers; w++)
        if (handing[w] != NULL)
          g_async_queue_push (workers[w].queue, g_steal_pointer (&handing[w]));
      if (!ok)
        break;
    }
  for (guint w = 0; w < n_workers; w++)
    {
      g_async_queue_push (workers[w].queue, QUIT);
      g_thread_join (workers[w].thread);
      g_async_queue_unref (workers[w].queue);
    }
  rd_kafka_assign (consumer, NULL);
  rd_kafka_queue_destroy (queue);

  for (guint i = 0; i < n_stores; i++)
    {
      if (ok && readings[i].n_held > 0)
        g_message ("changelog %s [%" G_GINT32_FORMAT "]: %" G_GUINT64_FORMAT
                   " record(s) after the last offset marker left out (a transaction read in "
                   "part, or a checkpoint cut short); its input is read again from the marker",
                   topic, stores[i].partition, readings[i].n_held);
      g_byte_array_unref (readings[i].held_words);
      g_byte_array_unref (readings[i].held_extensions);
      g_ptr_array_unref (readings[i].held_blocks);
      if (ok)
        {
          run_extensions (&readings[i]);
          stores[i].counts = readings[i].counts != NULL
                                 ? g_steal_pointer (&readings[i].counts)
                                 : tally_counts_builder_end (readings[i].words);
        }
      g_byte_array_unref (readings[i].taken_extensions);
      g_clear_pointer (&readings[i].counts, tally_counts_unref);
      stores[i].first_format = readings[i].last_word_record > readings[i].last_word_tombstone;
      tally_counts_builder_free (readings[i].words);
      if (!ok)
        tally_restored_store_clear (&stores[i]);
    }
  return ok;
}

void
tally_restored_store_clear (TallyRestoredStore *store)
{
  g_clear_pointer (&store->counts, tally_counts_unref);
  g_clear_pointer (&store->offsets, g_hash_table_unref);
  g_clear_pointer (&store->blocks, g_hash_table_unref);
  g_clear_pointer (&store->owners, g_ptr_array_unref);
}
