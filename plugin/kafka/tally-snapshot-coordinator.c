/* tally-snapshot-coordinator.c — triggers, cut, publishing and the final snapshot.
 *
 * Everything but the constructor, the waits and the cross-thread entry points runs on the
 * coordinator's context (the publisher's arbiter). A snapshot is a Job: created by a
 * trigger, it asks the cutter for a cut, gives the cut to the publisher, logs the report
 * and ends. `in_flight` counts jobs under `lock`, so tally_snapshot_coordinator_wait_closed()
 * can wait from another thread (the plugin's on_destroy); the last job after close()
 * calls the closed callback (`tally run` quits its main loop there).
 *
 * A request that does not parse, or a cut that fails, is still answered: an error
 * snapshot, so a requester need not wait for its timeout. For the same reason requests
 * are answered through the shutdown: stop_triggers() stops only the timer and explicit
 * triggers; close() reads the request topic to its end (tally_request_reader_drain()),
 * answers what it found, and only then closes the reader and takes the final snapshot.
 * A request id is answered once:
 * the ids of requests answered or in flight are kept in a bounded LRU (`answered`), and a
 * request record with one of them (a client asking again while it waits) is not cut or
 * published again; a publication that fails forgets its id, so asking again is answered.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-coordinator.h"

#include "tally-metrics.h"
#include "tally-publisher.h"
#include "tally-recent-ids.h"
#include "tally-request-reader.h"

/* The longest close() reads the request topic for requests produced before the final
 * snapshot (each of the end-offset query and the reads). */
#define REQUEST_DRAIN_TIMEOUT_MS 2000
/* Request ids remembered as answered; a client asks again within seconds. */
#define ANSWERED_IDS_KEPT 1024

struct _TallySnapshotCoordinator
{
  gint ref_count; /* atomic */
  char *log_prefix;
  GMainContext *context;
  TallyAddress *publisher;
  char *output_topic;
  const TallySnapshotCutter *cutter;
  gpointer cutter_data;
  GDestroyNotify cutter_data_free;

  /* The coordinator's context only. */
  TallyRequestReader *requests; /* set under lock */
  GSource *interval;
  gboolean triggers_stopped; /* set under lock; read on the context */
  guint n_late_requests;     /* requests read since the triggers stopped */
  TallyRecentIds *answered;  /* request record ids answered or in flight */
  TallySnapshotClosedFunc closed;
  gpointer closed_data;
  TallyMetrics *metrics; /* nullable, set before the first trigger */

  /* Under lock: the context and waiting threads. */
  GMutex lock;
  GCond cond;
  guint in_flight;
  gboolean closing; /* the final snapshot was started */
};

typedef struct
{
  TallySnapshotCoordinator *self; /* ref */
  TallySnapshotRequest *request;
  gboolean final;
  gboolean retried; /* once, after the publisher was restarted */
  gint64 started_us;
} Job;

static void start_job (Job *job);

TallySnapshotCoordinator *
tally_snapshot_coordinator_ref (TallySnapshotCoordinator *self)
{
  g_atomic_int_inc (&self->ref_count);
  return self;
}

void
tally_snapshot_coordinator_unref (TallySnapshotCoordinator *self)
{
  if (self == NULL || !g_atomic_int_dec_and_test (&self->ref_count))
    return;
  /* close() frees the reader on the context; without close() (a start that failed) the
   * last reference goes when the context no longer runs. */
  g_clear_pointer (&self->requests, tally_request_reader_free);
  if (self->interval != NULL)
    {
      g_source_destroy (self->interval);
      g_source_unref (self->interval);
    }
  if (self->cutter_data_free != NULL)
    self->cutter_data_free (self->cutter_data);
  g_clear_pointer (&self->metrics, tally_metrics_unref);
  tally_address_unref (self->publisher);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  g_free (self->log_prefix);
  g_free (self->output_topic);
  tally_recent_ids_free (self->answered);
  g_free (self);
}

/* Runs @func on the coordinator's context and waits for it; directly when this thread
 * already runs that context. */
typedef struct
{
  TallySnapshotCoordinator *self;
  void (*func) (TallySnapshotCoordinator *self);
  gboolean done; /* under self->lock */
} SyncCall;

static gboolean
sync_call_dispatch (gpointer user_data)
{
  SyncCall *call = user_data;

  call->func (call->self);
  g_mutex_lock (&call->self->lock);
  call->done = TRUE;
  g_cond_broadcast (&call->self->cond);
  g_mutex_unlock (&call->self->lock);
  return G_SOURCE_REMOVE;
}

static void
run_on_context (TallySnapshotCoordinator *self, void (*func) (TallySnapshotCoordinator *self))
{
  SyncCall call = { self, func, FALSE };

  if (g_main_context_is_owner (self->context))
    {
      func (self);
      return;
    }
  g_main_context_invoke (self->context, sync_call_dispatch, &call);
  g_mutex_lock (&self->lock);
  while (!call.done)
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);
}

/* ---------------------------------------------------------------------------------------
 * One snapshot: cut, publish, report
 * ------------------------------------------------------------------------------------- */

static void
job_done (Job *job)
{
  TallySnapshotCoordinator *self = job->self;
  TallySnapshotClosedFunc closed = NULL;
  gpointer closed_data = NULL;

  /* The closed callback runs before the last job is uncounted, so that a thread in
   * tally_snapshot_coordinator_wait_closed() sees its effects. */
  g_mutex_lock (&self->lock);
  if (self->in_flight == 1 && self->closing && self->closed != NULL)
    {
      closed = self->closed;
      closed_data = self->closed_data;
      self->closed = NULL;
    }
  g_mutex_unlock (&self->lock);
  if (closed != NULL)
    closed (closed_data);

  g_mutex_lock (&self->lock);
  self->in_flight--;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);

  tally_snapshot_request_free (job->request);
  g_free (job);
  tally_snapshot_coordinator_unref (self);
}

static void
on_published (GObject *object, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  TallySnapshotCoordinator *self = job->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyPublishReport) report = NULL;

  report = tally_publisher_publish_finish (self->publisher, result, &error);
  if (report == NULL && !job->retried
      && g_error_matches (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_FATAL))
    {
      /* The supervisor restarts the publisher with a new producer: ask once more. */
      g_message ("%ssnapshot for request %s: %s; taking it again", self->log_prefix,
                 job->request->request_id, error->message);
      job->retried = TRUE;
      start_job (job);
      return;
    }
  if (self->metrics != NULL && report == NULL)
    tally_metrics_add (self->metrics, TALLY_METRICS_SNAPSHOT_FAILURES, 1);
  else if (self->metrics != NULL)
    {
      tally_metrics_observe (self->metrics, TALLY_METRICS_SNAPSHOT_SECONDS,
                             g_get_monotonic_time () - job->started_us);
      tally_metrics_add (self->metrics, TALLY_METRICS_SNAPSHOT_PARTS, report->parts);
      tally_metrics_add (self->metrics, TALLY_METRICS_SNAPSHOT_BYTES, report->bytes);
    }
  if (report == NULL)
    {
      g_warning ("%ssnapshot for request %s not published: %s", self->log_prefix,
                 job->request->request_id, error->message);
      tally_recent_ids_remove (self->answered, job->request->request_id);
    }
  else
    g_message ("%s%ssnapshot %s for request %s published in %u part(s) to %s", self->log_prefix,
               job->final ? "final " : "", report->snapshot_id, job->request->request_id,
               report->parts, self->output_topic);
  job_done (job);
}

/* Answers the request with an error snapshot (no counts). */
static void
publish_error (Job *job, const GError *error)
{
  if (job->request->error == NULL)
    job->request->error = g_error_copy (error);
  tally_publisher_publish_async (job->self->publisher, job->request, NULL, NULL, NULL, 0, NULL,
                                 on_published, job);
}

/* Hands a cut's counts to the publisher; the cut's fields are stolen. */
static void
publish_cut (Job *job, TallySnapshotCut *cut)
{
  if (cut->windowed)
    {
      job->request->window_start_ms = cut->window_start_ms;
      job->request->window_end_ms = cut->window_end_ms;
    }
  tally_publisher_publish_async (job->self->publisher, job->request, g_steal_pointer (&cut->counts),
                                 g_steal_pointer (&cut->offsets),
                                 g_steal_pointer (&cut->partitions), cut->taken_ms, NULL,
                                 on_published, job);
}

static void
on_cut (GObject *object, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  TallySnapshotCoordinator *self = job->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySnapshotCut) cut = NULL;

  cut = self->cutter->cut_finish (self->cutter_data, result, &error);
  if (cut == NULL)
    {
      g_warning ("%ssnapshot for request %s failed: %s", self->log_prefix, job->request->request_id,
                 error->message);
      publish_error (job, error);
      return;
    }
  g_debug ("%scut for request %s taken in %" G_GINT64_FORMAT " ms", self->log_prefix,
           job->request->request_id, cut->taken_ms);
  publish_cut (job, cut);
}

/* Coordinator's context. Takes @request. */
static void
take_snapshot (TallySnapshotCoordinator *self, TallySnapshotRequest *request, gboolean final)
{
  Job *job = g_new0 (Job, 1);

  job->self = tally_snapshot_coordinator_ref (self);
  job->request = request;
  job->final = final;
  job->started_us = g_get_monotonic_time ();
  if (self->metrics != NULL)
    tally_metrics_add (self->metrics, TALLY_METRICS_SNAPSHOT_REQUESTS, 1);
  g_mutex_lock (&self->lock);
  self->in_flight++;
  /* In the same section as the final job's count, for tally_snapshot_coordinator_wait_closed(). */
  if (final)
    self->closing = TRUE;
  g_mutex_unlock (&self->lock);

  if (request->error != NULL)
    g_warning ("%sbad snapshot request %s: %s", self->log_prefix, request->request_id,
               request->error->message);
  else
    g_info ("%ssnapshot requested: %s", self->log_prefix, request->request_id);
  start_job (job);
}

/* Cuts and publishes, or answers a bad request with an error snapshot. */
static void
start_job (Job *job)
{
  TallySnapshotCoordinator *self = job->self;

  if (job->request->error != NULL)
    publish_error (job, job->request->error);
  else if (job->request->has_window && self->cutter->cut_window_async == NULL)
    {
      g_autoptr (GError) error
          = g_error_new_literal (TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_DISABLED,
                                 "this instance keeps no counts over time");
      publish_error (job, error);
    }
  else if (job->request->has_window)
    self->cutter->cut_window_async (self->cutter_data, &job->request->window, on_cut, job);
  else
    {
      TallyCountsOptions options;

      /* A top N, prefix, minimum count or list of words (the last round of a top N across
       * instances) is applied by the shards: only the words kept come back. */
      tally_snapshot_request_get_options (job->request, &options);
      self->cutter->cut_async (self->cutter_data, job->final,
                               !tally_counts_options_is_empty (&options) ? &options : NULL, on_cut,
                               job);
    }
}

/* ---------------------------------------------------------------------------------------
 * Triggers
 * ------------------------------------------------------------------------------------- */

static void
on_request (const TallySnapshotRequest *request, gpointer user_data)
{
  TallySnapshotCoordinator *self = user_data;

  if (self->triggers_stopped)
    {
      /* Read by the reader's own dispatch between stop_triggers() and close(), or by the
       * drain in close(): either way answered before the final snapshot. */
      self->n_late_requests++;
      g_message ("%srequest %s while shutting down: answered before the final snapshot",
                 self->log_prefix, request->request_id);
    }
  if (!tally_recent_ids_add (self->answered, request->request_id))
    {
      g_message ("%srequest %s asked again: already answered, not published again",
                 self->log_prefix, request->request_id);
      return;
    }
  take_snapshot (self, tally_snapshot_request_copy (request), FALSE);
}

static gboolean
on_trigger (gpointer user_data)
{
  TallySnapshotCoordinator *self = user_data;

  if (self->triggers_stopped)
    g_message ("%sshutting down: no snapshot for this trigger", self->log_prefix);
  else
    take_snapshot (self, tally_snapshot_request_new (NULL), FALSE);
  return G_SOURCE_CONTINUE;
}

void
tally_snapshot_coordinator_set_metrics (TallySnapshotCoordinator *self, TallyMetrics *metrics)
{
  g_clear_pointer (&self->metrics, tally_metrics_unref);
  self->metrics = metrics != NULL ? tally_metrics_ref (metrics) : NULL;
}

TallySnapshotCoordinator *
tally_snapshot_coordinator_new (const char *log_prefix, GMainContext *context,
                                TallyAddress *publisher, const char *output_topic,
                                const TallySnapshotCutter *cutter, gpointer cutter_data,
                                GDestroyNotify cutter_data_free, guint interval_ms)
{
  TallySnapshotCoordinator *self;

  g_return_val_if_fail (publisher != NULL, NULL);
  g_return_val_if_fail (cutter != NULL, NULL);

  self = g_new0 (TallySnapshotCoordinator, 1);
  self->ref_count = 1;
  self->log_prefix = g_strdup (log_prefix != NULL ? log_prefix : "");
  self->context = g_main_context_ref (context != NULL ? context : g_main_context_default ());
  self->publisher = tally_address_ref (publisher);
  self->output_topic = g_strdup (output_topic);
  self->cutter = cutter;
  self->cutter_data = cutter_data;
  self->cutter_data_free = cutter_data_free;
  self->answered = tally_recent_ids_new (ANSWERED_IDS_KEPT);
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  if (interval_ms > 0)
    {
      self->interval = g_timeout_source_new (interval_ms);
      g_source_set_callback (self->interval, on_trigger, self, NULL);
      g_source_set_static_name (self->interval, "tally snapshot interval");
      g_source_attach (self->interval, self->context);
    }
  return self;
}

gboolean
tally_snapshot_coordinator_read_requests (TallySnapshotCoordinator *self, rd_kafka_conf_t *conf,
                                          const char *topic, gint64 start_time_ms, guint timeout_ms,
                                          GError **error)
{
  TallyRequestReader *reader;

  g_return_val_if_fail (self->requests == NULL, FALSE);
  g_mutex_lock (&self->lock);
  if (self->triggers_stopped)
    {
      /* Shut down before the reader could start: nothing to answer. */
      g_mutex_unlock (&self->lock);
      rd_kafka_conf_destroy (conf);
      return TRUE;
    }
  g_mutex_unlock (&self->lock);
  reader = tally_request_reader_new (conf, topic, start_time_ms, self->context, on_request, self,
                                     NULL, timeout_ms, error);
  if (reader == NULL)
    return FALSE;
  /* The reader's watch may already dispatch on the context; it only reads `self`. */
  g_mutex_lock (&self->lock);
  self->requests = reader;
  g_mutex_unlock (&self->lock);
  return TRUE;
}

static gboolean
trigger_dispatch (gpointer user_data)
{
  on_trigger (user_data);
  return G_SOURCE_REMOVE;
}

void
tally_snapshot_coordinator_trigger (TallySnapshotCoordinator *self)
{
  g_main_context_invoke_full (self->context, G_PRIORITY_DEFAULT, trigger_dispatch,
                              tally_snapshot_coordinator_ref (self),
                              (GDestroyNotify)tally_snapshot_coordinator_unref);
}

typedef struct
{
  TallySnapshotCoordinator *self;
  TallySnapshotRequest *request;
  TallySnapshotCut *cut;
} CutToPublish;

static gboolean
publish_cut_dispatch (gpointer user_data)
{
  CutToPublish *c = user_data;
  Job *job = g_new0 (Job, 1);

  job->self = tally_snapshot_coordinator_ref (c->self);
  job->request = g_steal_pointer (&c->request);
  g_mutex_lock (&c->self->lock);
  c->self->in_flight++;
  g_mutex_unlock (&c->self->lock);
  g_info ("%spublishing %s", c->self->log_prefix, job->request->request_id);
  /* A window's final counts are taken once: a publisher restart does not take them again. */
  job->retried = TRUE;
  publish_cut (job, c->cut);
  return G_SOURCE_REMOVE;
}

static void
cut_to_publish_free (gpointer p)
{
  CutToPublish *c = p;
  tally_snapshot_cut_free (c->cut);
  tally_snapshot_request_free (c->request);
  tally_snapshot_coordinator_unref (c->self);
  g_free (c);
}

void
tally_snapshot_coordinator_publish_cut (TallySnapshotCoordinator *self,
                                        TallySnapshotRequest *request, TallySnapshotCut *cut)
{
  CutToPublish *c;

  g_return_if_fail (self != NULL && request != NULL && cut != NULL);

  c = g_new0 (CutToPublish, 1);
  c->self = tally_snapshot_coordinator_ref (self);
  c->request = request;
  c->cut = cut;
  g_main_context_invoke_full (self->context, G_PRIORITY_DEFAULT, publish_cut_dispatch, c,
                              cut_to_publish_free);
}

/* The timer and explicit triggers; the request reader goes on until close(). */
static void
stop_triggers (TallySnapshotCoordinator *self)
{
  g_mutex_lock (&self->lock);
  self->triggers_stopped = TRUE;
  g_mutex_unlock (&self->lock);
  if (self->interval != NULL)
    {
      g_source_destroy (self->interval);
      g_clear_pointer (&self->interval, g_source_unref);
    }
}

void
tally_snapshot_coordinator_stop_triggers (TallySnapshotCoordinator *self)
{
  run_on_context (self, stop_triggers);
}

typedef struct
{
  TallySnapshotCoordinator *self; /* ref */
  TallySnapshotClosedFunc closed;
  gpointer user_data;
} CloseCall;

static gboolean
close_dispatch (gpointer data)
{
  CloseCall *call = data;
  TallySnapshotCoordinator *self = call->self;
  gboolean closing;

  g_mutex_lock (&self->lock);
  closing = self->closing;
  g_mutex_unlock (&self->lock);
  if (!closing)
    {
      TallyRequestReader *reader;

      stop_triggers (self);
      g_mutex_lock (&self->lock);
      reader = g_steal_pointer (&self->requests);
      g_mutex_unlock (&self->lock);
      if (reader != NULL)
        {
          /* Requests produced until now are answered (before the final snapshot, which
           * waits for them); later ones are not read by this instance. */
          tally_request_reader_drain (reader, REQUEST_DRAIN_TIMEOUT_MS);
          tally_request_reader_free (reader);
          g_message ("%srequest reader closed: %u request(s) read at shutdown answered; "
                     "requests produced from now on are not read by this instance",
                     self->log_prefix, self->n_late_requests);
        }
      self->closed = call->closed;
      self->closed_data = call->user_data;
      g_message ("%spublishing the final snapshot", self->log_prefix);
      take_snapshot (self, tally_snapshot_request_new (NULL), TRUE);
    }
  return G_SOURCE_REMOVE;
}

static void
close_call_free (gpointer data)
{
  CloseCall *call = data;

  tally_snapshot_coordinator_unref (call->self);
  g_free (call);
}

void
tally_snapshot_coordinator_close (TallySnapshotCoordinator *self, TallySnapshotClosedFunc closed,
                                  gpointer user_data)
{
  CloseCall *call = g_new0 (CloseCall, 1);

  call->self = tally_snapshot_coordinator_ref (self);
  call->closed = closed;
  call->user_data = user_data;
  g_main_context_invoke_full (self->context, G_PRIORITY_DEFAULT, close_dispatch, call,
                              close_call_free);
}

gboolean
tally_snapshot_coordinator_wait_closed (TallySnapshotCoordinator *self, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  gboolean ok;

  g_return_val_if_fail (!g_main_context_is_owner (self->context), FALSE);
  g_mutex_lock (&self->lock);
  /* The final job is counted once close_dispatch() ran; until then in_flight may be 0. */
  while (!self->closing || self->in_flight > 0)
    if (!g_cond_wait_until (&self->cond, &self->lock, deadline))
      break;
  ok = self->closing && self->in_flight == 0;
  if (!ok)
    g_warning ("%s%u snapshot(s) still in flight after %u ms, abandoned", self->log_prefix,
               self->in_flight, timeout_ms);
  g_mutex_unlock (&self->lock);
  return ok;
}
