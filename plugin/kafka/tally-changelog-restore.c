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
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-changelog-restore.h"

#include <gio/gio.h>
#include <string.h>

/* Messages taken from the consumer queue per call. */
#define BATCH 4096

typedef struct
{
  TallyRestoredStore *store;
  TallyCountsBuilder *words; /* one entry per word, its largest count */
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
  for (p = r->held_extensions->data, end = p + r->held_extensions->len; p < end;)
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
 * them. */
static void
take_record (Reading *r, const char *topic, const rd_kafka_message_t *m)
{
  guint64 number;

  r->store->records++;
  if (m->key_len > 1 && ((const char *)m->key)[0] == '\0' && ((const guchar *)m->key)[1] < 0x20)
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
      hold (r->held_words, m->key, (guint32)m->key_len, (gint64)number, NULL, 0);
      r->n_held++;
    }
  else
    g_warning ("changelog %s [%" G_GINT32_FORMAT "] offset %" G_GINT64_FORMAT
               ": not a Tally changelog record, skipped",
               topic, m->partition, m->offset);
}

static Reading *
find_reading (Reading *readings, guint n, gint32 partition)
{
  for (guint i = 0; i < n; i++)
    if (readings[i].store->partition == partition)
      return &readings[i];
  return NULL;
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

  for (guint i = 0; i < n_stores; i++)
    {
      readings[i].store = &stores[i];
      readings[i].words = tally_counts_builder_new ();
      readings[i].extension = extension;
      readings[i].extension_data = extension_data;
      readings[i].held_words = g_byte_array_new ();
      readings[i].held_extensions = g_byte_array_new ();
      stores[i].offsets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      stores[i].records = 0;
      readings[i].done = stores[i].high <= stores[i].low;
      if (!readings[i].done)
        {
          rd_kafka_topic_partition_list_add (assignment, topic, stores[i].partition)->offset
              = RD_KAFKA_OFFSET_BEGINNING;
          left++;
        }
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
              /* Past the end: a transaction committed after the end was read. */
              if (m->offset < r->store->high)
                take_record (r, topic, m);
              else
                g_debug ("changelog %s [%" G_GINT32_FORMAT "]: read to its end %" G_GINT64_FORMAT
                         "; offset %" G_GINT64_FORMAT ", committed since, not taken",
                         topic, m->partition, r->store->high, m->offset);
              if (m->offset + 1 >= r->store->high)
                {
                  r->done = TRUE;
                  left--;
                }
            }
          rd_kafka_message_destroy (m);
        }
      if (!ok)
        break;
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
      if (ok)
        stores[i].counts = tally_counts_builder_end (readings[i].words);
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
}
