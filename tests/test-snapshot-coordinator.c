/* test-snapshot-coordinator.c — the one snapshot flow: triggers, cut, publishing, close.
 *
 * A fake cutter (it records each call and answers with fixed counts, or fails when told)
 * stands for the source or the module; the publisher is the real actor on the embedded
 * broker, and the coordinator runs on the publisher's arbiter as in `tally run`. What was
 * published is read from the log lines the coordinator writes for each report.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-publisher.h"
#include "tally-snapshot-coordinator.h"

#include <string.h>

/* The longest any single wait may take before the test fails. */
#define WAIT_MS 30000

/* Log lines of the coordinator, collected instead of printed. */
static GMutex log_lock;
static GPtrArray *log_lines;

static GLogWriterOutput
test_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0)
      {
        g_mutex_lock (&log_lock);
        g_ptr_array_add (log_lines, g_strdup (fields[i].value));
        g_mutex_unlock (&log_lock);
        g_printerr ("# %s\n", (const char *)fields[i].value);
      }
  return G_LOG_WRITER_HANDLED;
}

/* How many log lines contain @needle. */
static guint
count_lines (const char *needle)
{
  guint n = 0;

  g_mutex_lock (&log_lock);
  for (guint i = 0; i < log_lines->len; i++)
    if (strstr (g_ptr_array_index (log_lines, i), needle) != NULL)
      n++;
  g_mutex_unlock (&log_lock);
  return n;
}

/* Waits until @n log lines contain @needle. */
static void
wait_lines (const char *needle, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * G_TIME_SPAN_MILLISECOND;

  while (count_lines (needle) < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (2000);
    }
}

/* ---------------------------------------------------------------------------------------
 * The fake cutter: runs on the coordinator's context, as the contract says.
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  gint cuts;       /* atomic */
  gint final_cuts; /* atomic */
  gint fail;       /* atomic: the next cuts fail */
  GMainContext *context;
  gboolean wrong_context; /* a cut ran elsewhere */
  GString *options; /* the options of each cut: "top=N,prefix=P,min=M[,words=A|B];" or "none;" */
} FakeCutter;

static void
fake_cut_async (gpointer data, gboolean final, const TallyCountsOptions *options,
                GAsyncReadyCallback callback, gpointer user_data)
{
  FakeCutter *cutter = data;
  g_autoptr (GTask) task = g_task_new (NULL, NULL, callback, user_data);
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  TallySnapshotCut *cut;

  if (!g_main_context_is_owner (cutter->context))
    cutter->wrong_context = TRUE;
  if (options == NULL)
    g_string_append (cutter->options, "none;");
  else
    {
      g_string_append_printf (
          cutter->options, "top=%" G_GUINT64_FORMAT ",prefix=%s,min=%" G_GUINT64_FORMAT,
          options->top, options->prefix != NULL ? options->prefix : "", options->min_count);
      if (options->words != NULL)
        {
          g_autofree char *words = g_strjoinv ("|", (char **)options->words);
          g_string_append_printf (cutter->options, ",words=%s", words);
        }
      g_string_append_c (cutter->options, ';');
    }
  g_atomic_int_inc (&cutter->cuts);
  if (final)
    g_atomic_int_inc (&cutter->final_cuts);
  if (g_atomic_int_get (&cutter->fail))
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "the shards are gone");
      return;
    }
  tally_counts_builder_add (builder, "alpha", 5, 3);
  tally_counts_builder_add (builder, "beta", 4, final ? 2 : 1);
  cut = g_new0 (TallySnapshotCut, 1);
  cut->counts = tally_counts_builder_end (builder);
  cut->offsets = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (cut->offsets, "input", 0)->offset = 42;
  cut->partitions = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (cut->partitions, "input", 0);
  g_task_return_pointer (task, cut, (GDestroyNotify)tally_snapshot_cut_free);
}

static TallySnapshotCut *
fake_cut_finish (gpointer data, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const TallySnapshotCutter fake_cutter = { fake_cut_async, fake_cut_finish };

typedef struct
{
  TallyBroker *broker;
  TallyArbiter *arbiter;
  TallyAddress *publisher;
  FakeCutter cutter;
  TallySnapshotCoordinator *coordinator;
  gint closed; /* atomic: how often the closed callback ran */
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  TallyActor *actor;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  g_assert_true (tally_broker_create_topic (f->broker, "snapshots", 1, &error));
  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      tally_broker_get_bootstrap_servers (f->broker), NULL, 0),
                   ==, RD_KAFKA_CONF_OK);
  actor = tally_publisher_new (conf, "snapshots", 1000000, &error);
  g_assert_no_error (error);
  f->arbiter = tally_arbiter_new ("test-publish");
  f->publisher = tally_actor_start (actor, f->arbiter, 8);
  f->cutter.context = tally_arbiter_get_context (f->arbiter);
  f->cutter.options = g_string_new (NULL);
  f->coordinator
      = tally_snapshot_coordinator_new ("test: ", f->cutter.context, f->publisher, "snapshots",
                                        &fake_cutter, &f->cutter, NULL, GPOINTER_TO_UINT (data));
  g_mutex_lock (&log_lock);
  g_ptr_array_set_size (log_lines, 0);
  g_mutex_unlock (&log_lock);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  tally_snapshot_coordinator_stop_triggers (f->coordinator);
  tally_address_stop (f->publisher);
  g_assert_true (tally_address_wait_stopped (f->publisher, WAIT_MS));
  tally_arbiter_stop (f->arbiter);
  g_assert_false (f->cutter.wrong_context);
  g_string_free (f->cutter.options, TRUE);
  tally_snapshot_coordinator_unref (f->coordinator);
  tally_address_unref (f->publisher);
  tally_arbiter_unref (f->arbiter);
  tally_broker_free (f->broker);
}

static void
on_closed (gpointer user_data)
{
  Fixture *f = user_data;

  g_atomic_int_inc (&f->closed);
}

/* A trigger from another thread: one cut, one snapshot published, logged once. */
static void
test_trigger (Fixture *f, gconstpointer data)
{
  tally_snapshot_coordinator_trigger (f->coordinator);
  wait_lines ("published in 1 part(s) to snapshots", 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.final_cuts), ==, 0);
  g_assert_cmpuint (count_lines ("test: snapshot requested: "), ==, 1);
  g_assert_cmpuint (count_lines (" published in "), ==, 1);
  g_assert_cmpuint (count_lines ("final snapshot"), ==, 0);
}

/* A cut taken elsewhere (a closed window's final counts) is published as given, without
 * a cut by the cutter, and logged under its request id. */
static void
test_publish_cut (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  TallySnapshotRequest *request = tally_snapshot_request_new ("window-1700000040000");
  TallySnapshotCut *cut = g_new0 (TallySnapshotCut, 1);

  tally_counts_builder_add (builder, "gamma", 5, 7);
  cut->counts = tally_counts_builder_end (builder);
  cut->offsets = rd_kafka_topic_partition_list_new (1);
  cut->partitions = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (cut->partitions, "input", 0);
  cut->windowed = TRUE;
  cut->window_start_ms = 1700000040000;
  cut->window_end_ms = 1700000100000;
  request->has_window = TRUE;
  request->window.kind = TALLY_WINDOW_SELECT_START;
  request->window.start_ms = 1700000040000;
  tally_snapshot_coordinator_publish_cut (f->coordinator, request, cut);
  wait_lines ("for request window-1700000040000 published in 1 part(s) to snapshots", 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 0);
}

/* A failed cut still answers: an error snapshot is published, and the failure logged. */
static void
test_cut_fails (Fixture *f, gconstpointer data)
{
  g_atomic_int_set (&f->cutter.fail, 1);
  tally_snapshot_coordinator_trigger (f->coordinator);
  wait_lines ("published in 1 part(s) to snapshots", 1);
  g_assert_cmpuint (count_lines ("failed: the shards are gone"), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 1);
}

/* Close: the triggers stop, the final snapshot is cut with final=TRUE and published once,
 * the closed callback runs once; triggers afterwards take no cut. */
static void
test_close (Fixture *f, gconstpointer data)
{
  tally_snapshot_coordinator_trigger (f->coordinator);
  tally_snapshot_coordinator_close (f->coordinator, on_closed, f);
  tally_snapshot_coordinator_close (f->coordinator, on_closed, f); /* ignored */
  g_assert_true (tally_snapshot_coordinator_wait_closed (f->coordinator, WAIT_MS));
  g_assert_cmpint (g_atomic_int_get (&f->closed), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 2);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.final_cuts), ==, 1);
  g_assert_cmpuint (count_lines ("test: publishing the final snapshot"), ==, 1);
  g_assert_cmpuint (count_lines ("test: final snapshot "), ==, 1);
  g_assert_cmpuint (count_lines ("published in 1 part(s) to snapshots"), ==, 2);

  tally_snapshot_coordinator_trigger (f->coordinator);
  wait_lines ("no snapshot for this trigger", 1);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 2);
  g_assert_cmpint (g_atomic_int_get (&f->closed), ==, 1);
}

/* The [snapshot] interval timer (fixture data: 50 ms) takes snapshots on its own, and
 * stops with the triggers. */
static void
test_interval (Fixture *f, gconstpointer data)
{
  gint cuts;

  wait_lines ("published in 1 part(s) to snapshots", 3);
  tally_snapshot_coordinator_stop_triggers (f->coordinator);
  cuts = g_atomic_int_get (&f->cutter.cuts);
  g_assert_cmpint (cuts, >=, 3);
  g_usleep (200 * 1000);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, cuts);
}

/* Creates the request topic, has the coordinator read it, and returns a producer to it. */
static rd_kafka_t *
start_requests (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_t *producer;
  char errstr[256];

  g_assert_true (tally_broker_create_topic (f->broker, "requests", 1, &error));
  rd_kafka_conf_set (conf, "bootstrap.servers", tally_broker_get_bootstrap_servers (f->broker),
                     NULL, 0);
  g_assert_true (tally_snapshot_coordinator_read_requests (f->coordinator, rd_kafka_conf_dup (conf),
                                                           "requests", 0, WAIT_MS, &error));
  g_assert_no_error (error);
  producer = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  g_assert_nonnull (producer);
  return producer;
}

/* One answer per request id: a request record sent three times with one id (a client
 * asking again) and once with another is cut and published twice, and the output topic
 * holds two records (one part each); the repeats are logged, not answered. */
static void
test_request_once (Fixture *f, gconstpointer data)
{
  rd_kafka_t *producer;
  const char *keys[] = { "ask-1", "ask-1", "ask-2", "ask-1" };
  int64_t low = -1, high = -1;

  producer = start_requests (f);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_assert_cmpint (rd_kafka_producev (producer, RD_KAFKA_V_TOPIC ("requests"),
                                          RD_KAFKA_V_KEY (keys[i], strlen (keys[i])),
                                          RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_END),
                       ==, RD_KAFKA_RESP_ERR_NO_ERROR);
      g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
      if (i == 0)
        wait_lines ("for request ask-1 published", 1); /* the repeats come after the answer */
    }
  wait_lines ("asked again: already answered", 2);
  wait_lines ("for request ask-2 published", 1);
  g_usleep (200 * 1000); /* nothing more comes */
  g_assert_cmpuint (count_lines ("for request ask-1 published"), ==, 1);
  g_assert_cmpuint (count_lines ("request ask-1 asked again: already answered"), ==, 2);
  g_assert_cmpint (g_atomic_int_get (&f->cutter.cuts), ==, 2);
  g_assert_cmpint (
      rd_kafka_query_watermark_offsets (producer, "snapshots", 0, &low, &high, WAIT_MS), ==,
      RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (high - low, ==, 2);
  rd_kafka_destroy (producer);
}

/* The filters of a request go to the cutter with the cut (so that the shards answer only
 * the words kept), the words a request names included; a request with no filter cuts
 * every word. */
static void
test_request_options (Fixture *f, gconstpointer data)
{
  rd_kafka_t *producer;
  const char *values[] = { "{\"top\":10}", "{}", "{\"prefix\":\"al\",\"min_count\":2}",
                           "{\"top\":10,\"words\":[\"alpha\",\"beta\"]}" };

  producer = start_requests (f);
  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    {
      g_autofree char *key = g_strdup_printf ("opt-%u", i);
      g_autofree char *line = g_strdup_printf ("for request %s published", key);

      g_assert_cmpint (rd_kafka_producev (producer, RD_KAFKA_V_TOPIC ("requests"),
                                          RD_KAFKA_V_KEY (key, strlen (key)),
                                          RD_KAFKA_V_VALUE ((void *)values[i], strlen (values[i])),
                                          RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_END),
                       ==, RD_KAFKA_RESP_ERR_NO_ERROR);
      g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
      wait_lines (line, 1); /* one at a time: the cuts come in this order */
    }
  g_assert_cmpstr (
      f->cutter.options->str, ==,
      "top=10,prefix=,min=0;none;top=0,prefix=al,min=2;top=10,prefix=,min=0,words=alpha|beta;");
  rd_kafka_destroy (producer);
}

int
main (int argc, char **argv)
{
  log_lines = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (test_writer, NULL, NULL);
  g_test_init (&argc, &argv, NULL);
  g_log_set_debug_enabled (TRUE);

  g_test_add ("/snapshot-coordinator/trigger", Fixture, GUINT_TO_POINTER (0), fixture_set_up,
              test_trigger, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/publish-cut", Fixture, GUINT_TO_POINTER (0), fixture_set_up,
              test_publish_cut, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/cut-fails", Fixture, GUINT_TO_POINTER (0), fixture_set_up,
              test_cut_fails, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/request-options", Fixture, GUINT_TO_POINTER (0),
              fixture_set_up, test_request_options, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/request-once", Fixture, GUINT_TO_POINTER (0), fixture_set_up,
              test_request_once, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/close", Fixture, GUINT_TO_POINTER (0), fixture_set_up,
              test_close, fixture_tear_down);
  g_test_add ("/snapshot-coordinator/interval", Fixture, GUINT_TO_POINTER (50), fixture_set_up,
              test_interval, fixture_tear_down);
  return g_test_run ();
}
