/* tally-request-reader.c — snapshot requests from the request topic, on a GLib context.
 *
 * What it is for: every Tally instance answers every snapshot request, so requests are
 * read outside the input consumer group. The reader is a librdkafka consumer that assigns
 * itself every partition of the request topic (rd_kafka_assign(), no subscription, no
 * rebalance, no commit) at explicit start offsets: the high watermarks when it starts
 * (rd_kafka_query_watermark_offsets()), so any request produced after
 * tally_request_reader_new() returns is seen, or the offsets of a start time
 * (rd_kafka_offsets_for_times(), KIP-79).
 *
 * How it works: the consumer queue signals a pipe when it becomes non-empty
 * (rd_kafka_queue_io_event_enable()); a GLib fd source on the read end, attached to the
 * caller's context, drains the pipe and then the queue with rd_kafka_consumer_poll(rk, 0),
 * which never blocks. Each record becomes a TallySnapshotRequest for the callback. A bad
 * request value is logged and handed on with its error set, so it is answered with an
 * error snapshot (see tally-snapshot-request.h for the decision).
 *
 * Life cycle, as in librdkafka's examples/consumer.c: configure (caller's conf + ours),
 * create (rd_kafka_new), learn partitions and assign, use (the fd source), close
 * (rd_kafka_consumer_close) and destroy (rd_kafka_destroy).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-request-reader.h"
#include "tally-kafka-log.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */ G_DEFINE_QUARK (tally-request-reader-error-quark, tally_request_reader_error) /* clang-format on */

struct _TallyRequestReader
{
  rd_kafka_t *rk;
  rd_kafka_queue_t *queue; /* the consumer queue, with the io event */
  char *topic;
  guint n_partitions;
  int pipe_fds[2]; /* [0] read end (watched), [1] written by librdkafka */
  GSource *watch;
  gint64 *next_offsets; /* per partition: the next offset to read (from the assignment) */
  TallyRequestFunc func;
  gpointer user_data;
  GDestroyNotify destroy;
};

static void
handle_message (TallyRequestReader *self, rd_kafka_message_t *message)
{
  g_autoptr (TallySnapshotRequest) request = NULL;
  const char *topic = message->rkt != NULL ? rd_kafka_topic_name (message->rkt) : self->topic;
  rd_kafka_timestamp_type_t ts_type;
  gint64 timestamp;

  /* At the end of a partition (enable.partition.eof) the offset is the end offset. */
  if ((message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF
       || message->err == RD_KAFKA_RESP_ERR_NO_ERROR)
      && message->partition >= 0 && (guint)message->partition < self->n_partitions)
    self->next_offsets[message->partition]
        = MAX (self->next_offsets[message->partition],
               (gint64)message->offset + (message->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : 0));
  if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
    return;
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_warning ("request reader: %s [%" G_GINT32_FORMAT "]: %s", topic, message->partition,
                 rd_kafka_message_errstr (message));
      return;
    }

  timestamp = rd_kafka_message_timestamp (message, &ts_type);
  request = tally_snapshot_request_parse (message->key, message->key_len, message->payload,
                                          message->len, timestamp);
  if (request->error != NULL)
    g_warning ("request reader: bad request %s at %s [%" G_GINT32_FORMAT
               "] offset %" G_GINT64_FORMAT ": %s; answering with an error snapshot",
               request->request_id, topic, message->partition, (gint64)message->offset,
               request->error->message);
  else
    g_debug ("request reader: request %s at %s [%" G_GINT32_FORMAT "] offset %" G_GINT64_FORMAT,
             request->request_id, topic, message->partition, (gint64)message->offset);
  self->func (request, self->user_data);
}

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  TallyRequestReader *self = user_data;
  char buf[64];
  rd_kafka_message_t *message;

  /* Drain the pipe first: librdkafka writes again only when the queue goes from empty to
   * non-empty, which can happen as soon as we have emptied it below. */
  while (read (fd, buf, sizeof buf) > 0)
    ;
  while ((message = rd_kafka_consumer_poll (self->rk, 0)) != NULL)
    {
      handle_message (self, message);
      rd_kafka_message_destroy (message);
    }
  return G_SOURCE_CONTINUE;
}

/* Waits for the topic's partition count; a topic being created has none for a moment. */
static gboolean
learn_partitions (TallyRequestReader *self, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * 1000;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new (self->rk, self->topic, NULL);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

  for (;;)
    {
      const struct rd_kafka_metadata *metadata = NULL;
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;

      err = rd_kafka_metadata (self->rk, 0, rkt, &metadata, (int)MAX (left_ms, 1));
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          err = metadata->topic_cnt == 1 ? metadata->topics[0].err
                                         : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            self->n_partitions = (guint)metadata->topics[0].partition_cnt;
          rd_kafka_metadata_destroy (metadata);
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR && self->n_partitions > 0)
            break;
        }
      if (g_get_monotonic_time () >= deadline)
        {
          rd_kafka_topic_destroy (rkt);
          g_set_error (error, TALLY_REQUEST_READER_ERROR, TALLY_REQUEST_READER_ERROR_METADATA,
                       "request topic %s: no partitions within %u ms: %s", self->topic, timeout_ms,
                       rd_kafka_err2str (err));
          return FALSE;
        }
      g_usleep (100 * 1000);
    }
  rd_kafka_topic_destroy (rkt);
  return TRUE;
}

static gboolean
assign_partitions (TallyRequestReader *self, gint64 start_time_ms, guint timeout_ms, GError **error)
{
  rd_kafka_topic_partition_list_t *list
      = rd_kafka_topic_partition_list_new ((int)self->n_partitions);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

  for (guint p = 0; p < self->n_partitions; p++)
    {
      rd_kafka_topic_partition_t *tp
          = rd_kafka_topic_partition_list_add (list, self->topic, (int32_t)p);

      if (start_time_ms >= 0)
        tp->offset = start_time_ms; /* replaced by rd_kafka_offsets_for_times() below */
      else
        {
          int64_t low, high;

          err = rd_kafka_query_watermark_offsets (self->rk, self->topic, (int32_t)p, &low, &high,
                                                  (int)timeout_ms);
          if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
          tp->offset = high;
        }
    }
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && start_time_ms >= 0)
    err = rd_kafka_offsets_for_times (self->rk, list, (int)timeout_ms);
  /* A partition with no record that new gets offset -1: start at its end, as an explicit
   * offset, so that tally_request_reader_drain() knows where reading starts. */
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; i++)
    if (list->elems[i].offset < 0)
      {
        int64_t low, high;

        err = rd_kafka_query_watermark_offsets (self->rk, self->topic, list->elems[i].partition,
                                                &low, &high, (int)timeout_ms);
        list->elems[i].offset = high;
      }
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; i++)
    if (list->elems[i].partition >= 0 && (guint)list->elems[i].partition < self->n_partitions)
      self->next_offsets[list->elems[i].partition] = list->elems[i].offset;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    err = rd_kafka_assign (self->rk, list);
  rd_kafka_topic_partition_list_destroy (list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_set_error (error, TALLY_REQUEST_READER_ERROR, TALLY_REQUEST_READER_ERROR_ASSIGN,
                   "request topic %s: cannot assign its %u partitions: %s", self->topic,
                   self->n_partitions, rd_kafka_err2str (err));
      return FALSE;
    }
  return TRUE;
}

/* How long a fetch of the request topic may wait at the broker for a record, in ms. A real
 * broker answers a fetch as soon as a record arrives (long poll), so this only sets how
 * often an idle reader asks; librdkafka's mock cluster holds every fetch for the whole
 * wait, so there it is added to the latency of every request: librdkafka's 500 ms default
 * made a snapshot seen up to half a second late. */
#define REQUEST_FETCH_WAIT_MS "50"

/* Sets @name to @value unless @conf holds a value other than librdkafka's default there
 * (one the [kafka] section chose on purpose). */
static gboolean
set_if_default (rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                gsize errstr_size)
{
  rd_kafka_conf_t *defaults = rd_kafka_conf_new ();
  char current[64], default_value[64];
  size_t size = sizeof current, default_size = sizeof default_value;
  gboolean is_default
      = rd_kafka_conf_get (conf, name, current, &size) == RD_KAFKA_CONF_OK
        && rd_kafka_conf_get (defaults, name, default_value, &default_size) == RD_KAFKA_CONF_OK
        && strcmp (current, default_value) == 0;

  rd_kafka_conf_destroy (defaults);
  return !is_default
         || rd_kafka_conf_set (conf, name, value, errstr, errstr_size) == RD_KAFKA_CONF_OK;
}

TallyRequestReader *
tally_request_reader_new (rd_kafka_conf_t *conf, const char *topic, gint64 start_time_ms,
                          GMainContext *context, TallyRequestFunc func, gpointer user_data,
                          GDestroyNotify destroy, guint timeout_ms, GError **error)
{
  g_autoptr (TallyRequestReader) self = NULL;
  g_autofree char *group = NULL;
  char errstr[512];
  g_autoptr (GError) local_error = NULL;

  g_return_val_if_fail (conf != NULL, NULL);
  g_return_val_if_fail (topic != NULL && func != NULL, NULL);

  self = g_new0 (TallyRequestReader, 1);
  self->pipe_fds[0] = self->pipe_fds[1] = -1;
  self->topic = g_strdup (topic);

  /* Configure. librdkafka's consumer API needs a group.id, but assign() never joins it. */
  group = g_strdup_printf ("tally-request-reader-%08x", g_random_int ());
  if (rd_kafka_conf_set (conf, "group.id", group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK
      || rd_kafka_conf_set (conf, "enable.auto.commit", "false", errstr, sizeof errstr)
             != RD_KAFKA_CONF_OK
      || rd_kafka_conf_set (conf, "enable.auto.offset.store", "false", errstr, sizeof errstr)
             != RD_KAFKA_CONF_OK
      /* An end-of-partition event tells tally_request_reader_drain() it read everything. */
      || rd_kafka_conf_set (conf, "enable.partition.eof", "true", errstr, sizeof errstr)
             != RD_KAFKA_CONF_OK

      || !set_if_default (conf, "fetch.wait.max.ms", REQUEST_FETCH_WAIT_MS, errstr, sizeof errstr))
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_REQUEST_READER_ERROR, TALLY_REQUEST_READER_ERROR_CONFIG,
                   "request reader configuration: %s", errstr);
      return NULL;
    }
  tally_kafka_conf_set_log (conf);

  /* Create. rd_kafka_new() takes ownership of conf only on success. */
  self->rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (self->rk == NULL)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_REQUEST_READER_ERROR, TALLY_REQUEST_READER_ERROR_CONFIG,
                   "cannot create the request reader: %s", errstr);
      return NULL;
    }
  /* Everything (errors too) is served from the consumer queue. */
  rd_kafka_poll_set_consumer (self->rk);
  self->queue = rd_kafka_queue_get_consumer (self->rk);

  if (!learn_partitions (self, timeout_ms, error))
    return NULL;
  self->next_offsets = g_new (gint64, self->n_partitions);
  for (guint p = 0; p < self->n_partitions; p++)
    self->next_offsets[p] = -1;
  if (!assign_partitions (self, start_time_ms, timeout_ms, error))
    return NULL;

  /* Wire the queue into the GLib context. */
  if (!g_unix_open_pipe (self->pipe_fds, FD_CLOEXEC, &local_error)
      || !g_unix_set_fd_nonblocking (self->pipe_fds[0], TRUE, &local_error)
      || !g_unix_set_fd_nonblocking (self->pipe_fds[1], TRUE, &local_error))
    {
      g_set_error (error, TALLY_REQUEST_READER_ERROR, TALLY_REQUEST_READER_ERROR_CONFIG,
                   "request reader: cannot make its wake-up pipe: %s", local_error->message);
      return NULL;
    }
  self->func = func;
  self->user_data = user_data;
  self->destroy = destroy;
  rd_kafka_queue_io_event_enable (self->queue, self->pipe_fds[1], "1", 1);
  self->watch = g_unix_fd_source_new (self->pipe_fds[0], G_IO_IN);
  g_source_set_callback (self->watch, G_SOURCE_FUNC (on_readable), self, NULL);
  g_source_set_static_name (self->watch, "tally request reader");
  g_source_attach (self->watch, context);
  /* The queue may already hold something: have the first dispatch look. */
  if (write (self->pipe_fds[1], "1", 1) < 0 && errno != EAGAIN)
    g_warning ("request reader: cannot write its wake-up pipe: %s", g_strerror (errno));
  return g_steal_pointer (&self);
}

/* Whether every partition was read up to @high (next offsets known and at least it). */
static gboolean
reached (TallyRequestReader *self, const gint64 *high)
{
  for (guint p = 0; p < self->n_partitions; p++)
    if (self->next_offsets[p] < high[p])
      return FALSE;
  return TRUE;
}

guint
tally_request_reader_drain (TallyRequestReader *self, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  g_autofree gint64 *high = g_new0 (gint64, self->n_partitions);
  guint n = 0;

  g_return_val_if_fail (self != NULL, 0);

  for (guint p = 0; p < self->n_partitions; p++)
    {
      int64_t low, hi;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets (
          self->rk, self->topic, (int32_t)p, &low, &hi, (int)MAX (timeout_ms, 1));

      if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          g_warning ("request reader: %s [%u]: cannot learn its end offset: %s; requests not "
                     "read yet are not answered",
                     self->topic, p, rd_kafka_err2str (err));
          return 0;
        }
      high[p] = hi;
    }
  while (!reached (self, high))
    {
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
      rd_kafka_message_t *message;

      if (left_ms <= 0)
        {
          g_warning ("request reader: %s not read to its end within %u ms; requests not read "
                     "yet are not answered",
                     self->topic, timeout_ms);
          break;
        }
      message = rd_kafka_consumer_poll (self->rk, (int)MIN (left_ms, 100));
      if (message == NULL)
        continue;
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        n++;
      handle_message (self, message);
      rd_kafka_message_destroy (message);
    }
  return n;
}

guint
tally_request_reader_get_n_partitions (TallyRequestReader *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->n_partitions;
}

void
tally_request_reader_free (TallyRequestReader *self)
{
  if (self == NULL)
    return;
  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_source_unref (self->watch);
    }
  if (self->queue != NULL)
    {
      rd_kafka_queue_io_event_enable (self->queue, -1, NULL, 0);
      rd_kafka_queue_destroy (self->queue);
    }
  if (self->rk != NULL)
    {
      /* Close: leaves the assignment (nothing to commit, no group joined). Destroy. */
      rd_kafka_consumer_close (self->rk);
      rd_kafka_destroy (self->rk);
    }
  for (int i = 0; i < 2; i++)
    if (self->pipe_fds[i] >= 0)
      close (self->pipe_fds[i]);
  if (self->destroy != NULL)
    self->destroy (self->user_data);
  g_free (self->next_offsets);
  g_free (self->topic);
  g_free (self);
}
