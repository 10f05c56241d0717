/* tally-publisher.c — the publisher actor: snapshots out to the output topic.
 *
 * What it is for: turning one instance's consistent cut of its counts into records on the
 * output topic that any Kafka client can read and reassemble, and saying when they are
 * safely written.
 *
 * How it works: the actor owns a librdkafka producer. A Publish message (built by
 * tally_publisher_publish_async()) is split into parts by a #TallySnapshotEncoder; parts are
 * encoded as they are produced, at most PARTS_IN_FLIGHT_BYTES of them at a time, each freed
 * at its delivery report, so a snapshot of millions of words is never held encoded whole
 * next to its counts. Each part is produced with the snapshot id as key (so every part of a
 * snapshot goes to the same partition, in order) and the headers tally.snapshot.id,
 * tally.request.id, tally.part and tally.parts. The Publish message is deferred
 * (tally_message_defer()) and answered when every part has a final delivery report. Delivery
 * reports come from the producer's main queue: librdkafka writes a byte to a pipe when that queue
 * becomes non-empty (rd_kafka_queue_io_event_enable()) and a GLib fd source on the actor's context
 * serves it with rd_kafka_poll(rk, 0), so the reports (rd_kafka_conf_set_dr_msg_cb()) run
 * on the actor's thread and touch its state without locks. A part whose report carries an
 * error (after librdkafka's own retries) is produced again after a short back-off, up to
 * TALLY_PUBLISHER_MAX_RETRIES times, then counted as failed and logged.
 *
 * Life cycle of the producer: configure (caller's conf + delivery report, error and log
 * callbacks, idempotence, linger.ms 0 unless the caller chose a value), create (rd_kafka_new in
 * tally_publisher_new()), use (Publish, served on the arbiter's loop), flush (when the actor is
 * stopping, bounded), purge what is left and destroy (when it has stopped).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-publisher.h"

#include "tally-kafka-errors.h"
#include "tally-kafka-log.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* After a snapshot of at least this many bytes is delivered, the memory its encoding and
 * librdkafka's copies took is handed back to the system with glibc's malloc_trim():
 * otherwise the freed heap stays in the process (RSS) until a later allocation reuses it. */
#define TRIM_AFTER_BYTES (1024 * 1024)
/* Parts of one snapshot encoded and handed to librdkafka but not yet delivered: more are
 * encoded as these are acknowledged. */
#define PARTS_IN_FLIGHT_BYTES (32 * 1024 * 1024)

/* clang-format off */ G_DEFINE_QUARK (tally-publisher-error-quark, tally_publisher_error) /* clang-format on */

typedef struct _Job Job;

/* One part of a snapshot being published. */
typedef struct
{
  Job *job;
  guint index;
  guint attempts; /* produce calls so far */
  guint retry_timer;
  gboolean done;
  GBytes *value; /* encoded while in flight; librdkafka points into it until the report */
} Part;

/* One snapshot being published; owns the deferred Publish message. */
struct _Job
{
  TallyPublisher *self;
  TallyMessage *message;
  char *snapshot_id;
  char *request_id;
  TallySnapshotEncoder *encoder;
  Part *parts;
  guint n_parts;
  guint next;      /* the first part not produced yet */
  gsize in_flight; /* bytes of the parts encoded and not settled */
  gsize bytes;     /* bytes of every part encoded (once each) */
  gboolean filling;
  guint delivered;
  guint failed;
  guint retries;
  rd_kafka_resp_err_t last_err;
  GError *encode_error; /* TOO_LARGE: an error snapshot went out instead */
  gint64 started_us;    /* monotonic, when the Publish message was handled */
};

struct _TallyPublisher
{
  TallyActor parent_instance;

  rd_kafka_t *rk;
  rd_kafka_queue_t *main_queue; /* delivery reports, errors, logs */
  int pipe_fds[2];
  GSource *watch;
  char *topic;
  gsize max_record_bytes;
  gsize message_max_bytes;  /* librdkafka's message.max.bytes for this producer */
  gsize max_snapshot_bytes; /* what the output topic keeps per partition; 0: no limit */
  char *instance_id;
  guint flush_timeout_ms;
  gboolean stopping; /* flushing: retries are produced at once, not after a back-off */
  gboolean closing;  /* purging and destroying: no more retries */
  GHashTable *jobs;  /* Job*, the set of snapshots in flight */
};

G_DEFINE_FINAL_TYPE (TallyPublisher, tally_publisher, TALLY_TYPE_ACTOR)

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyMessage parent;
  TallySnapshotRequest *request;
  TallyCounts *counts;
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_topic_partition_list_t *partitions;
  gint64 taken_ms;
} PublishMessage;

/* The reply: a report, or the error that publish_finish() reports. */
typedef struct
{
  TallyPublishReport *report;
  GError *error;
} PublishReply;

static void
publish_message_free (gpointer data)
{
  PublishMessage *m = data;

  tally_snapshot_request_free (m->request);
  g_clear_pointer (&m->counts, tally_counts_unref);
  g_clear_pointer (&m->offsets, rd_kafka_topic_partition_list_destroy);
  g_clear_pointer (&m->partitions, rd_kafka_topic_partition_list_destroy);
  g_free (m);
}

static void
publish_reply_free (gpointer data)
{
  PublishReply *reply = data;

  tally_publish_report_free (reply->report);
  g_clear_error (&reply->error);
  g_free (reply);
}

static const TallyMessageType publish_type = {
  "Publish",
  publish_message_free,
  publish_reply_free,
};

void
tally_publish_report_free (TallyPublishReport *report)
{
  if (report == NULL)
    return;
  g_free (report->snapshot_id);
  g_free (report);
}

/* ---------------------------------------------------------------------------------------
 * Jobs: producing parts and counting their delivery reports
 * ------------------------------------------------------------------------------------- */

static void produce_part (Part *part);

static void
job_free (Job *job)
{
  for (guint i = 0; i < job->n_parts; i++)
    if (job->parts[i].retry_timer != 0)
      tally_actor_cancel_timer (TALLY_ACTOR (job->self), job->parts[i].retry_timer);
  if (job->message != NULL)
    tally_message_free (job->message);
  g_free (job->snapshot_id);
  g_free (job->request_id);
  for (guint i = 0; i < job->n_parts; i++)
    g_clear_pointer (&job->parts[i].value, g_bytes_unref);
  tally_snapshot_encoder_free (job->encoder);
  g_free (job->parts);
  g_clear_error (&job->encode_error);
  g_free (job);
}

static void
job_finish (Job *job)
{
  PublishReply *reply = g_new0 (PublishReply, 1);

  if (job->failed > 0)
    reply->error = g_error_new (TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_DELIVERY,
                                "%u of %u parts of snapshot %s (request %s) were not delivered "
                                "to %s: %s",
                                job->failed, job->n_parts, job->snapshot_id, job->request_id,
                                job->self->topic, rd_kafka_err2str (job->last_err));
  else if (job->encode_error != NULL)
    reply->error = g_error_copy (job->encode_error);
  else
    {
      reply->report = g_new0 (TallyPublishReport, 1);
      reply->report->snapshot_id = g_strdup (job->snapshot_id);
      reply->report->parts = job->n_parts;
      reply->report->delivered = job->delivered;
      reply->report->retries = job->retries;
      reply->report->bytes = job->bytes;
    }
  if (reply->error != NULL)
    g_warning ("publisher: %s", reply->error->message);
  else
    g_debug ("publisher: snapshot %s (request %s): %u parts delivered, %u retries, %.1f ms "
             "after the Publish message was handled",
             job->snapshot_id, job->request_id, job->delivered, job->retries,
             (double)(g_get_monotonic_time () - job->started_us) / 1000);

  tally_message_reply (job->message, reply);
  {
    gsize bytes = job->bytes;

    g_hash_table_remove (job->self->jobs, job); /* frees the job and the message */
#ifdef __GLIBC__
    if (bytes >= TRIM_AFTER_BYTES)
      malloc_trim (0);
#endif
  }
}

/* Produces parts while fewer than PARTS_IN_FLIGHT_BYTES are in flight. A job finishes (and
 * is freed) only once every part was produced, so only inside the last produce_part(): do
 * not touch it after that one. */
static void
job_fill (Job *job)
{
  if (job->filling)
    return; /* a part settled inside produce_part(): the loop below goes on */
  if (job->self->closing)
    return; /* purged: tally_publisher_stopped() answers for the parts never produced */
  job->filling = TRUE;
  while (job->next < job->n_parts && (job->in_flight < PARTS_IN_FLIGHT_BYTES || job->next == 0))
    {
      Part *part = &job->parts[job->next++];
      gboolean last = job->next == job->n_parts;

      produce_part (part);
      if (last)
        return;
    }
  job->filling = FALSE;
}

static void
part_settled (Part *part, gboolean delivered)
{
  Job *job = part->job;

  part->done = TRUE;
  if (part->value != NULL)
    {
      job->in_flight -= g_bytes_get_size (part->value);
      g_clear_pointer (&part->value, g_bytes_unref);
    }
  if (delivered)
    job->delivered++;
  else
    job->failed++;
  if (job->delivered + job->failed == job->n_parts)
    job_finish (job);
  else
    job_fill (job);
}

static gboolean
retry_part (gpointer data)
{
  Part *part = data;

  part->retry_timer = 0;
  produce_part (part);
  return G_SOURCE_REMOVE;
}

/* A produce call or a delivery report failed: retry after a back-off (at once while the
 * stop's flush runs, since timers are gone by then), or give up. */
static void
part_failed (Part *part, rd_kafka_resp_err_t err)
{
  Job *job = part->job;
  TallyPublisher *self = job->self;

  job->last_err = err;
  if (!self->closing && part->attempts <= TALLY_PUBLISHER_MAX_RETRIES)
    {
      g_message ("publisher: snapshot %s part %u/%u: %s; producing it again (retry %u of %u)",
                 job->snapshot_id, part->index, job->n_parts, rd_kafka_err2str (err),
                 part->attempts, TALLY_PUBLISHER_MAX_RETRIES);
      job->retries++;
      if (self->stopping)
        produce_part (part);
      else
        part->retry_timer = tally_actor_run_later (TALLY_ACTOR (self), 100 * part->attempts,
                                                   retry_part, part, NULL);
      return;
    }
  g_warning ("publisher: snapshot %s part %u/%u to %s not delivered: %s", job->snapshot_id,
             part->index, job->n_parts, self->topic, rd_kafka_err2str (err));
  part_settled (part, FALSE);
}

static void
produce_part (Part *part)
{
  Job *job = part->job;
  TallyPublisher *self = job->self;
  GBytes *value;
  g_autofree char *part_text = g_strdup_printf ("%u", part->index);
  g_autofree char *parts_text = g_strdup_printf ("%u", job->n_parts);
  rd_kafka_headers_t *headers;
  gsize len;
  const void *data;
  rd_kafka_resp_err_t err;

  if (part->value == NULL)
    {
      g_autoptr (GError) error = NULL;

      part->value = tally_snapshot_encoder_encode_part (job->encoder, part->index, &error);
      if (part->value == NULL)
        {
          /* The split measured every entry: this cannot happen. */
          g_warning ("publisher: snapshot %s part %u/%u: %s", job->snapshot_id, part->index,
                     job->n_parts, error->message);
          job->last_err = RD_KAFKA_RESP_ERR__INVALID_ARG;
          part_settled (part, FALSE);
          return;
        }
      job->in_flight += g_bytes_get_size (part->value);
      if (part->attempts == 0)
        job->bytes += g_bytes_get_size (part->value);
    }
  value = part->value;
  data = g_bytes_get_data (value, &len);
  headers = rd_kafka_headers_new (4);

  rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID, -1, job->snapshot_id, -1);
  rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_REQUEST_ID, -1, job->request_id, -1);
  rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_PART, -1, part_text, -1);
  rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_PARTS, -1, parts_text, -1);

  part->attempts++;
  /* No RD_KAFKA_MSG_F_COPY: the value stays in part->value until the delivery report.
   * The key is always copied by librdkafka; the headers are taken over on success. */
  err = rd_kafka_producev (self->rk, RD_KAFKA_V_TOPIC (self->topic),
                           RD_KAFKA_V_KEY (job->snapshot_id, strlen (job->snapshot_id)),
                           RD_KAFKA_V_VALUE ((void *)data, len), RD_KAFKA_V_MSGFLAGS (0),
                           RD_KAFKA_V_HEADERS (headers), RD_KAFKA_V_OPAQUE (part), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      rd_kafka_headers_destroy (headers);
      part_failed (part, err);
    }
}

/* Runs inside rd_kafka_poll()/rd_kafka_flush(), on the actor's thread. */
static void
dr_msg_cb (rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
  Part *part = message->_private;

  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    tally_kafka_errors_check (message->err, "snapshot publisher",
                              message->rkt != NULL ? rd_kafka_topic_name (message->rkt) : NULL,
                              rd_kafka_err2str (message->err));
  if (part == NULL || part->done)
    return;
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    part_failed (part, message->err);
  else
    part_settled (part, TRUE);
}

static void
error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  char fatal[512];

  if (err == RD_KAFKA_RESP_ERR__FATAL)
    {
      rd_kafka_resp_err_t orig = rd_kafka_fatal_error (rk, fatal, sizeof fatal);

      if (tally_kafka_errors_check (orig, "snapshot publisher", NULL, fatal))
        return;
      g_warning ("publisher: fatal producer error: %s: %s (the next snapshot restarts it)",
                 rd_kafka_err2name (orig), fatal);
    }
  else if (!tally_kafka_errors_check (err, "snapshot publisher", NULL, reason))
    g_message ("publisher: producer error: %s: %s", rd_kafka_err2name (err), reason);
}

static void
log_cb (const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
  if (tally_kafka_log_is_retried (level, message))
    g_info ("publisher: %s: %s", facility, message);
  else if (level <= 4)
    g_warning ("publisher: %s: %s", facility, message);
  else
    g_debug ("publisher: %s: %s", facility, message);
}

/* ---------------------------------------------------------------------------------------
 * The Publish handler
 * ------------------------------------------------------------------------------------- */

/* The entries of @counts for @words (a request's `words`), each once: the exact counts of a
 * candidate set. Words not counted here are left out (their count is 0). */
static TallyCounts *
select_words (TallyCounts *counts, char **words)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (char **w = words; *w != NULL; w++)
    {
      gsize len = strlen (*w);
      guint64 count = tally_counts_lookup (counts, *w, len);

      if (count > 0 && g_hash_table_add (seen, *w))
        tally_counts_builder_add (builder, *w, len, count);
    }
  return tally_counts_builder_end (builder);
}

static TallySnapshot *
build_snapshot (TallyPublisher *self, PublishMessage *m)
{
  TallySnapshot *snapshot = tally_snapshot_new ();
  TallyCountsOptions options;

  snapshot->snapshot_id = g_uuid_string_random ();
  snapshot->request_id = g_strdup (m->request->request_id);
  snapshot->instance_id = g_strdup (self->instance_id);
  snapshot->created_at_ms = g_get_real_time () / 1000;
  snapshot->taken_ms = m->taken_ms;
  /* Only partitions with a known position: one never read has none to state. */
  snapshot->offsets = rd_kafka_topic_partition_list_new (m->offsets != NULL ? m->offsets->cnt : 0);
  for (int i = 0; m->offsets != NULL && i < m->offsets->cnt; i++)
    if (m->offsets->elems[i].offset >= 0)
      rd_kafka_topic_partition_list_add (snapshot->offsets, m->offsets->elems[i].topic,
                                         m->offsets->elems[i].partition)
          ->offset
          = m->offsets->elems[i].offset;
  snapshot->partitions = g_steal_pointer (&m->partitions);
  if (snapshot->partitions != NULL)
    for (int i = 0; i < snapshot->partitions->cnt; i++)
      snapshot->partitions->elems[i].offset = RD_KAFKA_OFFSET_INVALID;

  if (m->request->error != NULL)
    {
      snapshot->error = g_strdup (m->request->error->message);
      return snapshot;
    }
  if (m->counts == NULL)
    m->counts = tally_counts_new_empty ();
  /* Of every word cut, also when the cut holds only those a top N keeps. */
  snapshot->total_words = tally_counts_get_total_unfiltered (m->counts);
  snapshot->distinct_words = tally_counts_get_n_words_unfiltered (m->counts);
  snapshot->top = m->request->top;
  snapshot->prefix = g_strdup (m->request->prefix);
  snapshot->min_count = m->request->min_count;
  snapshot->windowed = m->request->has_window;
  snapshot->window_start_ms = m->request->window_start_ms;
  snapshot->window_end_ms = m->request->window_end_ms;
  tally_snapshot_request_get_options (m->request, &options);
  if (m->request->words != NULL)
    {
      g_autoptr (TallyCounts) chosen = select_words (m->counts, m->request->words);

      snapshot->counts = tally_counts_filter (chosen, &options);
    }
  else
    snapshot->counts = tally_counts_filter (m->counts, &options);
  return snapshot;
}

/* The framing librdkafka counts against message.max.bytes besides key, value and headers:
 * the record batch header (61 bytes) and one record's varints, rounded up. */
#define RECORD_OVERHEAD_BYTES 128

/* The largest part value for @snapshot: the configured limit, or less when key, headers
 * and framing would push the record over message.max.bytes, which librdkafka (and the
 * broker) would refuse with MSG_SIZE_TOO_LARGE. */
static gsize
value_limit (TallyPublisher *self, const TallySnapshot *snapshot)
{
  gsize overhead = RECORD_OVERHEAD_BYTES + strlen (snapshot->snapshot_id) /* the key */
                   + strlen (TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID) + strlen (snapshot->snapshot_id)
                   + strlen (TALLY_SNAPSHOT_HEADER_REQUEST_ID) + strlen (snapshot->request_id)
                   + strlen (TALLY_SNAPSHOT_HEADER_PART) + strlen (TALLY_SNAPSHOT_HEADER_PARTS)
                   + 2 * 10 /* part numbers */ + 4 * 10 /* header varints */;

  if (self->message_max_bytes <= overhead)
    return 0;
  return MIN (self->max_record_bytes, self->message_max_bytes - overhead);
}

static gboolean
handle_publish (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyPublisher *self = TALLY_PUBLISHER (actor);
  PublishMessage *m = (PublishMessage *)message;
  gint64 started_us = g_get_monotonic_time ();
  g_autoptr (TallySnapshot) snapshot = build_snapshot (self, m);
  g_autoptr (TallySnapshotEncoder) encoder = NULL;
  g_autoptr (GError) encode_error = NULL;
  gsize limit = value_limit (self, snapshot);
  Job *job;
  char reason[512];

  if (self->rk == NULL)
    {
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_FATAL,
                   "the snapshot producer could not be created");
      return FALSE;
    }
  if (rd_kafka_fatal_error (self->rk, reason, sizeof reason) != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      /* Fails the actor: a supervisor puts a new producer behind the address. */
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_FATAL,
                   "the snapshot producer cannot produce after a fatal error: %s", reason);
      return FALSE;
    }
  encoder = tally_snapshot_encoder_new (snapshot, limit, &encode_error);
  if (encoder != NULL && self->max_snapshot_bytes > 0 && snapshot->error == NULL)
    {
      gsize bytes = tally_snapshot_encoder_get_bytes (encoder);

      if (bytes > self->max_snapshot_bytes)
        {
          g_set_error (
              &encode_error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
              "the snapshot (%" G_GSIZE_FORMAT " distinct words, %" G_GSIZE_FORMAT
              " bytes in %u parts) is larger than what output topic %s keeps per "
              "partition (%" G_GSIZE_FORMAT " bytes: the embedded broker, librdkafka's "
              "mock cluster, drops older records beyond that), so it could never be "
              "read back whole; ask for less (top, min_count, prefix) or use a real "
              "Kafka broker",
              (gsize)tally_counts_get_n_words (snapshot->counts), bytes,
              tally_snapshot_encoder_get_n_parts (encoder), self->topic, self->max_snapshot_bytes);
          g_clear_pointer (&encoder, tally_snapshot_encoder_free);
        }
    }
  if (encoder == NULL && snapshot->error == NULL)
    {
      /* Tell the readers why there is no snapshot rather than let them time out. */
      g_clear_pointer (&snapshot->counts, tally_counts_unref);
      snapshot->error = g_strdup (encode_error->message);
      encoder = tally_snapshot_encoder_new (snapshot, limit, NULL);
    }
  if (encoder == NULL)
    {
      PublishReply *reply = g_new0 (PublishReply, 1);

      reply->error = g_steal_pointer (&encode_error);
      g_warning ("publisher: snapshot for request %s not published: %s", snapshot->request_id,
                 reply->error->message);
      tally_message_reply (message, reply);
      return TRUE;
    }

  g_debug ("publisher: snapshot %s (request %s): %u parts, at most %" G_GSIZE_FORMAT
           " bytes, built and split in %.1f ms (the counts took %" G_GINT64_FORMAT " ms)",
           snapshot->snapshot_id, snapshot->request_id,
           tally_snapshot_encoder_get_n_parts (encoder), tally_snapshot_encoder_get_bytes (encoder),
           (double)(g_get_monotonic_time () - started_us) / 1000, m->taken_ms);
  job = g_new0 (Job, 1);
  job->started_us = started_us;
  job->self = self;
  job->snapshot_id = g_strdup (snapshot->snapshot_id);
  job->request_id = g_strdup (snapshot->request_id);
  job->encoder = g_steal_pointer (&encoder);
  job->n_parts = tally_snapshot_encoder_get_n_parts (job->encoder);
  job->parts = g_new0 (Part, job->n_parts);
  job->encode_error = g_steal_pointer (&encode_error);
  job->message = tally_message_defer (message);
  g_hash_table_add (self->jobs, job);

  for (guint i = 0; i < job->n_parts; i++)
    {
      job->parts[i].job = job;
      job->parts[i].index = i;
    }
  /* The job may finish (and be freed) inside the last produce_part() call when it fails
   * for good while stopping: do not touch it afterwards. */
  job_fill (job);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * The actor's life cycle
 * ------------------------------------------------------------------------------------- */

static gboolean
on_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  TallyPublisher *self = user_data;
  char buf[64];

  while (read (fd, buf, sizeof buf) > 0)
    ;
  while (rd_kafka_poll (self->rk, 0) > 0)
    ;
  return G_SOURCE_CONTINUE;
}

static void
tally_publisher_started (TallyActor *actor)
{
  TallyPublisher *self = TALLY_PUBLISHER (actor);

  if (self->rk == NULL)
    return;
  self->watch = g_unix_fd_source_new (self->pipe_fds[0], G_IO_IN);
  g_source_set_callback (self->watch, G_SOURCE_FUNC (on_readable), self, NULL);
  g_source_set_static_name (self->watch, "tally publisher");
  g_source_attach (self->watch, tally_actor_get_context (actor));
  rd_kafka_queue_io_event_enable (self->main_queue, self->pipe_fds[1], "1", 1);
  /* Serve whatever arrived before the watch existed. */
  if (write (self->pipe_fds[1], "1", 1) < 0 && errno != EAGAIN)
    g_warning ("publisher: cannot write its wake-up pipe: %s", g_strerror (errno));
}

static Part *
find_retry_pending (TallyPublisher *self)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, self->jobs);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      Job *job = key;

      for (guint i = 0; i < job->n_parts; i++)
        if (job->parts[i].retry_timer != 0)
          return &job->parts[i];
    }
  return NULL;
}

static void
tally_publisher_stopping (TallyActor *actor)
{
  TallyPublisher *self = TALLY_PUBLISHER (actor);
  rd_kafka_resp_err_t err;
  Part *part;

  self->stopping = TRUE;
  /* Parts waiting for a retry go out now (one at a time: producing may finish and free a
   * job), then flush, serving delivery reports. */
  while ((part = find_retry_pending (self)) != NULL)
    {
      tally_actor_cancel_timer (actor, part->retry_timer);
      part->retry_timer = 0;
      produce_part (part);
    }
  err = rd_kafka_flush (self->rk, (int)self->flush_timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_warning ("publisher: %d records still unsent after %u ms: %s", rd_kafka_outq_len (self->rk),
               self->flush_timeout_ms, rd_kafka_err2str (err));
}

static void
destroy_producer (TallyPublisher *self)
{
  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_clear_pointer (&self->watch, g_source_unref);
    }
  if (self->main_queue != NULL)
    {
      rd_kafka_queue_io_event_enable (self->main_queue, -1, NULL, 0);
      g_clear_pointer (&self->main_queue, rd_kafka_queue_destroy);
    }
  self->closing = TRUE;
  if (self->rk != NULL)
    {
      /* Whatever the flush left is purged; its reports fail the remaining parts. */
      rd_kafka_purge (self->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      while (rd_kafka_poll (self->rk, 0) > 0)
        ;
      g_clear_pointer (&self->rk, rd_kafka_destroy);
    }
  for (int i = 0; i < 2; i++)
    if (self->pipe_fds[i] >= 0)
      {
        close (self->pipe_fds[i]);
        self->pipe_fds[i] = -1;
      }
}

static void
tally_publisher_stopped (TallyActor *actor)
{
  TallyPublisher *self = TALLY_PUBLISHER (actor);

  self->stopping = TRUE;
  destroy_producer (self);
  /* A job can only remain if a report never came; answer it rather than leave an ask. */
  while (g_hash_table_size (self->jobs) > 0)
    {
      GHashTableIter iter;
      gpointer key;
      Job *job;

      g_hash_table_iter_init (&iter, self->jobs);
      g_hash_table_iter_next (&iter, &key, NULL);
      job = key;
      for (guint i = 0; i < job->n_parts; i++)
        job->parts[i].retry_timer = 0; /* removed with the actor's timers */
      job->failed = job->n_parts - job->delivered;
      job->last_err = RD_KAFKA_RESP_ERR__DESTROY;
      job_finish (job);
    }
}

static void
tally_publisher_finalize (GObject *object)
{
  TallyPublisher *self = TALLY_PUBLISHER (object);

  destroy_producer (self);
  g_hash_table_unref (self->jobs);
  g_free (self->topic);
  g_free (self->instance_id);
  G_OBJECT_CLASS (tally_publisher_parent_class)->finalize (object);
}

static void
tally_publisher_class_init (TallyPublisherClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  TallyActorClass *actor_class = TALLY_ACTOR_CLASS (klass);

  object_class->finalize = tally_publisher_finalize;
  actor_class->started = tally_publisher_started;
  actor_class->stopping = tally_publisher_stopping;
  actor_class->stopped = tally_publisher_stopped;
  tally_actor_class_add_handler (actor_class, &publish_type, handle_publish);
}

static void
tally_publisher_init (TallyPublisher *self)
{
  self->pipe_fds[0] = self->pipe_fds[1] = -1;
  self->flush_timeout_ms = 5000;
  self->jobs
      = g_hash_table_new_full (g_direct_hash, g_direct_equal, (GDestroyNotify)job_free, NULL);
}

/* linger.ms (alias queue.buffering.max.ms) is how long librdkafka holds a record to batch
 * it with later ones; its default of 5 ms delays every snapshot, whose parts are produced
 * at once and are large (a part of up to batch.size bytes waits the full linger). So it is
 * 0 unless @conf holds another value than librdkafka's default, which the [kafka] section
 * set on purpose. Consumes @conf on error. */
static gboolean
set_default_linger (rd_kafka_conf_t *conf, GError **error)
{
  rd_kafka_conf_t *defaults = rd_kafka_conf_new ();
  char value[32], default_value[32], errstr[512];
  size_t size = sizeof value, default_size = sizeof default_value;
  gboolean is_default = rd_kafka_conf_get (conf, "linger.ms", value, &size) == RD_KAFKA_CONF_OK
                        && rd_kafka_conf_get (defaults, "linger.ms", default_value, &default_size)
                               == RD_KAFKA_CONF_OK
                        && strcmp (value, default_value) == 0;

  rd_kafka_conf_destroy (defaults);
  if (!is_default)
    return TRUE;
  if (rd_kafka_conf_set (conf, "linger.ms", "0", errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_CONFIG,
                   "publisher configuration: linger.ms=0: %s", errstr);
      return FALSE;
    }
  return TRUE;
}

TallyActor *
tally_publisher_new (rd_kafka_conf_t *conf, const char *output_topic, gsize max_record_bytes,
                     GError **error)
{
  g_autoptr (TallyPublisher) self = NULL;
  g_autoptr (GError) local_error = NULL;
  char errstr[512];

  g_return_val_if_fail (conf != NULL, NULL);
  g_return_val_if_fail (output_topic != NULL, NULL);

  self = g_object_new (TALLY_TYPE_PUBLISHER, NULL);
  self->topic = g_strdup (output_topic);
  self->max_record_bytes = max_record_bytes;
  self->instance_id
      = g_strdup_printf ("%s-%d-%08x", g_get_host_name (), (int)getpid (), g_random_int ());

  /* Configure: idempotence keeps librdkafka's retries from duplicating or reordering
   * parts (KIP-98); reports come to dr_msg_cb for every record. */
  if (rd_kafka_conf_set (conf, "enable.idempotence", "true", errstr, sizeof errstr)
      != RD_KAFKA_CONF_OK)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_CONFIG,
                   "publisher configuration: %s", errstr);
      return NULL;
    }
  if (!set_default_linger (conf, error))
    return NULL;
  {
    char value[32];
    size_t size = sizeof value;

    if (rd_kafka_conf_get (conf, "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK)
      self->message_max_bytes = (gsize)g_ascii_strtoull (value, NULL, 10);
    else
      self->message_max_bytes = 1000000;
  }
  rd_kafka_conf_set_dr_msg_cb (conf, dr_msg_cb);
  rd_kafka_conf_set_error_cb (conf, error_cb);
  rd_kafka_conf_set_log_cb (conf, log_cb);

  /* Create: rd_kafka_new() takes ownership of conf only on success. */
  self->rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (self->rk == NULL)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_CONFIG,
                   "cannot create the snapshot producer: %s", errstr);
      return NULL;
    }
  self->main_queue = rd_kafka_queue_get_main (self->rk);
  if (!g_unix_open_pipe (self->pipe_fds, FD_CLOEXEC, &local_error)
      || !g_unix_set_fd_nonblocking (self->pipe_fds[0], TRUE, &local_error)
      || !g_unix_set_fd_nonblocking (self->pipe_fds[1], TRUE, &local_error))
    {
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_CONFIG,
                   "publisher: cannot make its wake-up pipe: %s", local_error->message);
      return NULL;
    }
  return TALLY_ACTOR (g_steal_pointer (&self));
}

/* What each instance of a supervised publisher is made from. */
typedef struct
{
  rd_kafka_conf_t *conf;
  char *topic;
  gsize max_record_bytes;
  gsize max_snapshot_bytes;
  guint flush_timeout_ms;
  TallyActor *first; /* made by tally_publisher_start_supervised(), taken by the factory */
} PublisherRecipe;

static void
publisher_recipe_free (gpointer data)
{
  PublisherRecipe *recipe = data;

  rd_kafka_conf_destroy (recipe->conf);
  g_clear_object (&recipe->first);
  g_free (recipe->topic);
  g_free (recipe);
}

/* The supervisor's factory: the first instance, then a new producer for each restart
 * (on the publisher's arbiter). */
static TallyActor *
publisher_factory (gpointer data)
{
  PublisherRecipe *recipe = data;
  g_autoptr (GError) error = NULL;
  TallyActor *actor;

  if (recipe->first != NULL)
    return g_steal_pointer (&recipe->first);
  actor = tally_publisher_new (rd_kafka_conf_dup (recipe->conf), recipe->topic,
                               recipe->max_record_bytes, &error);
  if (actor == NULL)
    {
      /* It answers every Publish with an error, and the supervisor gives up in time. */
      g_warning ("publisher: cannot restart the snapshot producer: %s", error->message);
      actor = g_object_new (TALLY_TYPE_PUBLISHER, NULL);
      TALLY_PUBLISHER (actor)->topic = g_strdup (recipe->topic);
      TALLY_PUBLISHER (actor)->instance_id = g_strdup ("none");
    }
  else
    g_message ("publisher: restarted with a new producer, instance %s",
               TALLY_PUBLISHER (actor)->instance_id);
  tally_publisher_set_flush_timeout (TALLY_PUBLISHER (actor), recipe->flush_timeout_ms);
  TALLY_PUBLISHER (actor)->max_snapshot_bytes = recipe->max_snapshot_bytes;
  return actor;
}

TallyAddress *
tally_publisher_start_supervised (TallySupervisor *supervisor, rd_kafka_conf_t *conf,
                                  const char *output_topic, gsize max_record_bytes,
                                  gsize max_snapshot_bytes, guint flush_timeout_ms,
                                  TallyArbiter *arbiter, guint mailbox_capacity, GError **error)
{
  PublisherRecipe *recipe;
  TallyActor *first;

  g_return_val_if_fail (TALLY_IS_SUPERVISOR (supervisor), NULL);
  first = tally_publisher_new (rd_kafka_conf_dup (conf), output_topic, max_record_bytes, error);
  if (first == NULL)
    {
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  tally_publisher_set_flush_timeout (TALLY_PUBLISHER (first), flush_timeout_ms);
  TALLY_PUBLISHER (first)->max_snapshot_bytes = max_snapshot_bytes;
  recipe = g_new0 (PublisherRecipe, 1);
  recipe->conf = conf;
  recipe->topic = g_strdup (output_topic);
  recipe->max_record_bytes = max_record_bytes;
  recipe->flush_timeout_ms = flush_timeout_ms;
  recipe->max_snapshot_bytes = max_snapshot_bytes;
  recipe->first = first;
  return tally_supervisor_start_child (supervisor, publisher_factory, recipe, publisher_recipe_free,
                                       arbiter, mailbox_capacity);
}

const char *
tally_publisher_get_instance_id (TallyPublisher *self)
{
  g_return_val_if_fail (TALLY_IS_PUBLISHER (self), NULL);
  return self->instance_id;
}

void
tally_publisher_set_flush_timeout (TallyPublisher *self, guint timeout_ms)
{
  g_return_if_fail (TALLY_IS_PUBLISHER (self));
  self->flush_timeout_ms = timeout_ms;
}

/* ---------------------------------------------------------------------------------------
 * Sending Publish
 * ------------------------------------------------------------------------------------- */

static TallyMessage *
publish_message_new (const TallySnapshotRequest *request, TallyCounts *counts,
                     rd_kafka_topic_partition_list_t *offsets,
                     rd_kafka_topic_partition_list_t *partitions, gint64 taken_ms)
{
  PublishMessage *m = g_new0 (PublishMessage, 1);

  tally_message_init (&m->parent, &publish_type);
  m->request = tally_snapshot_request_copy (request);
  m->counts = counts;
  m->offsets = offsets;
  m->partitions = partitions;
  m->taken_ms = taken_ms;
  return &m->parent;
}

static TallyPublishReport *
unpack_reply (PublishReply *reply, GError **error)
{
  TallyPublishReport *report;

  if (reply == NULL)
    {
      g_set_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_DELIVERY,
                   "the publisher gave no report");
      return NULL;
    }
  if (reply->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&reply->error));
      publish_reply_free (reply);
      return NULL;
    }
  report = g_steal_pointer (&reply->report);
  publish_reply_free (reply);
  return report;
}

void
tally_publisher_publish_async (TallyAddress *publisher, const TallySnapshotRequest *request,
                               TallyCounts *counts, rd_kafka_topic_partition_list_t *offsets,
                               rd_kafka_topic_partition_list_t *partitions, gint64 taken_ms,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data)
{
  g_return_if_fail (publisher != NULL && request != NULL);

  tally_address_ask_async (publisher,
                           publish_message_new (request, counts, offsets, partitions, taken_ms),
                           cancellable, callback, user_data);
}

TallyPublishReport *
tally_publisher_publish_finish (TallyAddress *publisher, GAsyncResult *result, GError **error)
{
  GError *local_error = NULL;
  PublishReply *reply = tally_address_ask_finish (publisher, result, &local_error);

  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return NULL;
    }
  return unpack_reply (reply, error);
}

TallyPublishReport *
tally_publisher_publish_sync (TallyAddress *publisher, const TallySnapshotRequest *request,
                              TallyCounts *counts, rd_kafka_topic_partition_list_t *offsets,
                              rd_kafka_topic_partition_list_t *partitions, gint64 taken_ms,
                              guint timeout_ms, GError **error)
{
  GError *local_error = NULL;
  PublishReply *reply;

  g_return_val_if_fail (publisher != NULL && request != NULL, NULL);

  reply = tally_address_ask_sync (
      publisher, publish_message_new (request, counts, offsets, partitions, taken_ms), timeout_ms,
      &local_error);
  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return NULL;
    }
  return unpack_reply (reply, error);
}
