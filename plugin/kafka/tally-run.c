/* tally-run.c — the Tally service: broker, shards, source, publisher and snapshots wired.
 *
 * Threads and contexts:
 *
 *   main thread    the global default main context: signals (g_unix_signal_add()) and the
 *                  shutdown steps below
 *   tally-source   the source actor (consumer, tokenizer, checkpoints)
 *   tally-publish  the publisher actor and the snapshot coordinator (request reader,
 *                  interval timer): a snapshot goes coordinator -> source (barrier) ->
 *                  coordinator -> publisher, see tally-snapshot-coordinator.h
 *   tally-agg-<i>  one aggregator shard each (tally-aggregator-handle.h)
 *   librdkafka's   the embedded broker, when there is one, and every client's I/O
 *
 * Shutdown on SIGINT/SIGTERM/SIGHUP (SIGHUP as daemons without a reload do: a `tally run &`
 * whose terminal closes still publishes its final snapshot): the timer and SIGUSR1 stop;
 * the source stops consuming; the coordinator answers the requests produced until then
 * (the request topic read to its end), publishes the final snapshot and then quits the
 * main loop; the source is stopped (checkpoint, commit, close), then the publisher (flush), the
 * shards and the broker. A watchdog thread ends the process with status 1 if that overruns
 * [shutdown] timeout_ms; a second signal meanwhile is logged and ignored.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-run.h"

#include "tally-aggregator-handle.h"
#include "tally-broker.h"
#include "tally-checkpoint.h"
#include "tally-publisher.h"
#include "tally-snapshot-coordinator.h"
#include "tally-kafka-errors.h"
#include "tally-kafka-log.h"
#include "tally-metrics-server.h"
#include "tally-notify.h"
#include "tally-source.h"
#include "tally-topics.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

/* clang-format off */ G_DEFINE_QUARK (tally-run-error-quark, tally_run_error) /* clang-format on */

/* The session timeout used with the embedded broker unless [kafka] sets one: a member
 * that died (kill -9) leaves the group after this long, so a restart gets its partitions
 * back quickly. */
#define EMBEDDED_SESSION_TIMEOUT_MS "6000"

/* The longest the start may wait for the broker to create Tally's topics and elect a
 * leader for each partition (docs/running.md). */
#define TOPICS_TIMEOUT_MS 30000

/* The publisher is restarted at most this many times within the period (OTP's intensity
 * and period), then given up. */
#define PUBLISHER_MAX_RESTARTS 5
#define PUBLISHER_RESTART_PERIOD_MS 60000

/* Kafka's default max.message.bytes of a topic (1 MiB + 12 bytes of framing). */
#define KAFKA_DEFAULT_MAX_MESSAGE_BYTES 1048588

typedef struct
{
  const TallyConfig *config;
  GMainLoop *loop;

  TallyBroker *broker;
  TallyAggregatorHandle *handle;
  TallyArbiter *source_arbiter;
  TallyArbiter *publisher_arbiter;
  TallyAddress *source;
  TallyAddress *publisher;
  TallySupervisor *supervisor;         /* the publisher's */
  TallySnapshotCoordinator *snapshots; /* on the publisher's arbiter */
  TallyMetrics *metrics;               /* tally-metrics.h; served when [metrics] listen */
  TallyMetricsServer *metrics_server;

  guint signal_ids[4];
  gboolean starting;     /* waiting for the broker in ensure_topics(), on the start thread */
  gboolean mock_cluster; /* the broker is librdkafka's mock cluster (`tally broker`) */
  char *bootstrap;       /* bootstrap.servers, for messages */
  gboolean shutting_down;

  /* Watchdog: ends the process if the shutdown overruns. */
  GMutex watchdog_lock;
  GCond watchdog_cond;
  gboolean watchdog_done;
  gint64 watchdog_deadline;
  GThread *watchdog;
} TallyRun;

/* The publisher failed more than PUBLISHER_MAX_RESTARTS times within the period: it stays
 * closed, so no snapshot can be published; counting and checkpoints go on. */
static void
on_escalated (TallySupervisor *supervisor, gpointer user_data)
{
  g_critical ("the snapshot publisher failed %u times and is not restarted again: no snapshot "
              "will be published until Tally is restarted",
              tally_supervisor_get_restarts (supervisor));
}

/* SIGUSR1: a snapshot with a generated request id. */
static gboolean
on_snapshot_signal (gpointer user_data)
{
  TallyRun *run = user_data;

  if (run->snapshots == NULL)
    g_message ("not started yet: no snapshot");
  else
    tally_snapshot_coordinator_trigger (run->snapshots);
  return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------------------------------
 * Shutdown
 * ------------------------------------------------------------------------------------- */

static gpointer
watchdog_thread (gpointer data)
{
  TallyRun *run = data;

  g_mutex_lock (&run->watchdog_lock);
  while (!run->watchdog_done)
    if (!g_cond_wait_until (&run->watchdog_cond, &run->watchdog_lock, run->watchdog_deadline))
      {
        static const char msg[] = "tally run: shutdown did not finish in time, exiting\n";
        ssize_t ignored G_GNUC_UNUSED;

        if (run->watchdog_done)
          break;
        /* The log functions may be what hangs; write directly. */
        ignored = write (STDERR_FILENO, msg, sizeof msg - 1);
        _exit (1);
      }
  g_mutex_unlock (&run->watchdog_lock);
  return NULL;
}

/* The coordinator's context (the publisher's arbiter): the final snapshot is out. */
static void
on_snapshots_closed (gpointer user_data)
{
  TallyRun *run = user_data;

  g_main_loop_quit (run->loop);
}

static void
on_stopped_consuming (GObject *object, GAsyncResult *result, gpointer user_data)
{
  TallyRun *run = user_data;
  g_autoptr (GError) error = NULL;

  tally_address_ask_finish (run->source, result, &error);
  if (error != NULL)
    g_warning ("stopping the source: %s", error->message);
  tally_snapshot_coordinator_close (run->snapshots, on_snapshots_closed, run);
}

static gboolean
on_stop_signal (gpointer user_data)
{
  TallyRun *run = user_data;

  if (run->starting)
    {
      /* Nothing is consumed or owed to anyone yet, and the start thread may be blocked in
       * librdkafka for up to TOPICS_TIMEOUT_MS: leave at once. */
      g_message ("stopped while waiting for the broker at %s; nothing was consumed",
                 run->bootstrap);
      _exit (0);
    }
  if (run->shutting_down)
    {
      g_message ("already shutting down");
      return G_SOURCE_CONTINUE;
    }
  run->shutting_down = TRUE;
  g_message ("shutting down");
  tally_notify_stopping ();

  run->watchdog_deadline = g_get_monotonic_time ()
                           + (gint64)run->config->shutdown.timeout_ms * G_TIME_SPAN_MILLISECOND;
  run->watchdog = g_thread_new ("tally-watchdog", watchdog_thread, run);

  tally_snapshot_coordinator_stop_triggers (run->snapshots);
  tally_source_stop_consuming_async (run->source, NULL, on_stopped_consuming, run);
  return G_SOURCE_CONTINUE;
}

/* A client met an error no retry fixes (wrong credentials, untrusted certificate, missing
 * ACL): exit at once with EX_CONFIG. No graceful shutdown: its checkpoint and final
 * snapshot would need the same broker access; what was counted but not checkpointed is
 * counted again by the next run, as after kill -9. Any thread. */
static void
on_kafka_config_error (const char *message, gpointer user_data)
{
  g_printerr ("%s: %s\n", g_get_prgname (), message);
  fflush (stderr);
  _exit (EX_CONFIG);
}

/* ---------------------------------------------------------------------------------------
 * Start
 * ------------------------------------------------------------------------------------- */

/* ensure_topics() on a thread of its own, so that the main loop keeps handling signals
 * while the broker does not answer. */
typedef struct
{
  TallyRun *run;
  const rd_kafka_conf_t *base;
  GError *error;
  gboolean ok;
  gint done; /* atomic */
} StartJob;

static gboolean ensure_topics (TallyRun *run, const rd_kafka_conf_t *base, GError **error);

static gpointer
start_thread (gpointer data)
{
  StartJob *job = data;

  job->ok = ensure_topics (job->run, job->base, &job->error);
  g_atomic_int_set (&job->done, 1);
  g_main_context_wakeup (NULL);
  return NULL;
}

/* Runs ensure_topics() while this thread's main context handles SIGINT and SIGTERM (which
 * end the process, see on_stop_signal()) and SIGUSR1. */
static gboolean
ensure_topics_interruptibly (TallyRun *run, const rd_kafka_conf_t *base, GError **error)
{
  StartJob job = { run, base, NULL, FALSE, 0 };
  GThread *thread;

  run->starting = TRUE;
  thread = g_thread_new ("tally-start", start_thread, &job);
  while (!g_atomic_int_get (&job.done))
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  run->starting = FALSE;
  if (!job.ok)
    g_propagate_prefixed_error (error, job.error, "broker at %s: ", run->bootstrap);
  return job.ok;
}

static gboolean
is_pattern (const char *topic)
{
  return topic[0] == '^';
}

static gboolean
start_broker (TallyRun *run, GError **error)
{
  const TallyConfig *config = run->config;
  g_autoptr (GError) local_error = NULL;

  run->broker = tally_broker_new (config->broker.port, config->broker.brokers, &local_error);
  if (run->broker == NULL)
    {
      g_set_error (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_FAILED,
                   "cannot start the embedded broker: %s", local_error->message);
      return FALSE;
    }
  for (char **t = config->input.topics; *t != NULL; t++)
    if (!is_pattern (*t)
        && !tally_broker_create_topic (run->broker, *t, config->broker.partitions, &local_error))
      goto failed;
  if ((config->checkpoint.enabled
       && !tally_broker_create_topic (run->broker, config->checkpoint.changelog_topic,
                                      config->broker.partitions, &local_error))
      || !tally_broker_create_topic (run->broker, config->output.topic, 1, &local_error)
      || !tally_broker_create_topic (run->broker, config->requests.topic, 1, &local_error))
    goto failed;

  printf ("bootstrap.servers=%s\n", tally_broker_get_bootstrap_servers (run->broker));
  fflush (stdout);
  g_message ("embedded broker at %s (librdkafka mock cluster: no compaction, no "
             "exactly-once transactions, data lost when tally stops)",
             tally_broker_get_bootstrap_servers (run->broker));
  return TRUE;

failed:
  g_set_error (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_FAILED, "embedded broker: %s",
               local_error->message);
  return FALSE;
}

/* A topic Tally may not describe, or may not create when it is missing, is a
 * configuration problem (ACLs), exit status 78; anything else a failure at run time. */
static int
topics_error_code (const GError *error)
{
  return g_error_matches (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_NOT_AUTHORIZED)
                 || g_error_matches (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CREATE)
             ? TALLY_RUN_ERROR_CONFIG
             : TALLY_RUN_ERROR_FAILED;
}

/* The topics Tally owns exist, each partition with a leader, before any client uses
 * them: request and output topics with 1 partition; the changelog compacted, with as many
 * partitions as the input topics have (when they exist; else the source creates it when
 * it is assigned partitions). Input topics are only described, never created. */
static gboolean
ensure_topics (TallyRun *run, const rd_kafka_conf_t *base, GError **error)
{
  static const char *const changelog_configs[] = { TALLY_CHECKPOINT_TOPIC_CONFIGS };
  const TallyConfig *config = run->config;
  g_autoptr (GError) local_error = NULL;
  g_autofree char *max_bytes = NULL;
  const char *output_configs[5] = { NULL };
  guint n_output_configs = 0;
  g_autofree char *retention = NULL;
  TallyTopicSpec specs[3];
  guint n_specs = 0;
  rd_kafka_t *rk;
  char value[32];
  size_t size = sizeof value;
  gint64 deadline = g_get_monotonic_time () + TOPICS_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  int n_input = 0;
  gboolean ok;

  rk = tally_topics_client_new (base, &local_error);
  if (rk == NULL)
    {
      g_set_error (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_CONFIG, "%s", local_error->message);
      return FALSE;
    }

  for (char **t = config->input.topics; *t != NULL; t++)
    {
      int n;

      if (is_pattern (*t))
        {
          g_message ("input %s: a pattern; Tally counts the topics it matches as they appear", *t);
          continue;
        }
      n = tally_topics_get_partition_count (
          rk, *t, (int)MAX ((deadline - g_get_monotonic_time ()) / 1000, 1), &local_error);
      if (n < 0)
        {
          g_set_error (error, TALLY_RUN_ERROR, topics_error_code (local_error), "input: %s",
                       local_error->message);
          rd_kafka_destroy (rk);
          return FALSE;
        }
      if (n == 0)
        g_message ("input topic %s does not exist yet; Tally never creates input topics and "
                   "waits for it",
                   *t);
      n_input = MAX (n_input, n);
    }

  specs[n_specs++] = (TallyTopicSpec){
    .name = config->requests.topic, .role = "request topic", .partitions = 1, .min_partitions = 1
  };
  specs[n_specs] = (TallyTopicSpec){
    .name = config->output.topic, .role = "output topic", .partitions = 1, .min_partitions = 1
  };
  /* Records as large as the publisher may send (message.max.bytes) must fit the topic. */
  if (rd_kafka_conf_get (base, "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK
      && g_ascii_strtoull (value, NULL, 10) > KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
    {
      max_bytes = g_strdup (value);
      output_configs[n_output_configs++] = "max.message.bytes";
      output_configs[n_output_configs++] = max_bytes;
    }
  /* Snapshots are answers read within seconds, not an archive ([output] retention_ms). */
  if (config->output.retention_ms > 0)
    {
      retention = g_strdup_printf ("%u", config->output.retention_ms);
      output_configs[n_output_configs++] = "retention.ms";
      output_configs[n_output_configs++] = retention;
    }
  if (n_output_configs > 0)
    specs[n_specs].configs = output_configs;
  n_specs++;
  if (config->checkpoint.enabled && n_input > 0)
    specs[n_specs++] = (TallyTopicSpec){ .name = config->checkpoint.changelog_topic,
                                         .role = "changelog topic",
                                         .partitions = n_input,
                                         .min_partitions = n_input,
                                         .configs = changelog_configs,
                                         .grow = TRUE };

  ok = tally_topics_ensure (
      rk, specs, n_specs, (int)MAX ((deadline - g_get_monotonic_time ()) / 1000, 1), &local_error);
  if (ok)
    {
      /* librdkafka's mock cluster names itself "mockCluster..." (rdkafka_mock.c): the
       * embedded broker of another process (`tally broker`), with the same limits. The
       * topics are known by now, so is the cluster id; a broker that never says is real. */
      char *id = rd_kafka_clusterid (rk, 1000);

      run->mock_cluster = id != NULL && g_str_has_prefix (id, "mockCluster");
      if (id != NULL)
        rd_kafka_mem_free (rk, id);
    }
  rd_kafka_destroy (rk);
  if (!ok)
    g_set_error (error, TALLY_RUN_ERROR, topics_error_code (local_error), "%s",
                 local_error->message);
  return ok;
}

static rd_kafka_conf_t *
make_base_conf (TallyRun *run, GError **error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[512];
  g_autoptr (GError) local_error = NULL;

  /* Every client made from this conf logs through GLib (copies keep the callback), and
   * its authentication, TLS and authorization errors end the run (tally-kafka-errors.h). */
  tally_kafka_conf_set_log (conf);
  rd_kafka_conf_set_error_cb (conf, tally_kafka_error_cb);
  if (run->broker != NULL
      && rd_kafka_conf_set (conf, "bootstrap.servers",
                            tally_broker_get_bootstrap_servers (run->broker), errstr, sizeof errstr)
             != RD_KAFKA_CONF_OK)
    {
      g_set_error (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_FAILED, "bootstrap.servers: %s", errstr);
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  if (!tally_config_apply_kafka (run->config, conf, &local_error))
    {
      g_set_error (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_CONFIG, "%s", local_error->message);
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  return conf;
}

/* The source's thread: a window closed ([windows] publish); its final counts are published
 * once, as the snapshot answering request `window-<start ms>`. The coordinator is made
 * just after the source starts, before the first window timer can fire. */
static void
on_window_closed (TallySnapshotCut *cut, gpointer user_data)
{
  TallyRun *run = user_data;
  TallySnapshotCoordinator *snapshots = g_atomic_pointer_get (&run->snapshots);
  g_autofree char *id = g_strdup_printf ("window-%" G_GINT64_FORMAT, cut->window_start_ms);
  TallySnapshotRequest *request;

  if (snapshots == NULL)
    {
      tally_snapshot_cut_free (cut);
      return;
    }
  request = tally_snapshot_request_new (id);
  request->has_window = TRUE;
  request->window.kind = TALLY_WINDOW_SELECT_START;
  request->window.start_ms = cut->window_start_ms;
  tally_snapshot_coordinator_publish_cut (snapshots, request, cut);
}

static void
run_clear (TallyRun *run)
{
  /* The request reader goes on the publisher's arbiter, which still runs. */
  if (run->snapshots != NULL)
    tally_snapshot_coordinator_stop_triggers (run->snapshots);
  g_clear_pointer (&run->metrics_server, tally_metrics_server_free);
  if (run->source != NULL)
    {
      tally_address_stop (run->source);
      if (!tally_address_wait_stopped (run->source, run->config->shutdown.timeout_ms))
        g_warning ("the source did not stop in time");
    }
  if (run->publisher != NULL)
    {
      tally_address_stop (run->publisher);
      if (!tally_address_wait_stopped (run->publisher, run->config->shutdown.timeout_ms))
        g_warning ("the publisher did not stop in time");
    }
  if (run->source_arbiter != NULL)
    tally_arbiter_stop (run->source_arbiter);
  if (run->publisher_arbiter != NULL)
    tally_arbiter_stop (run->publisher_arbiter);
  g_clear_pointer (&run->source, tally_address_unref);
  g_clear_pointer (&run->publisher, tally_address_unref);
  g_clear_pointer (&run->source_arbiter, tally_arbiter_unref);
  g_clear_pointer (&run->publisher_arbiter, tally_arbiter_unref);
  g_clear_object (&run->supervisor);
  g_clear_pointer (&run->snapshots, tally_snapshot_coordinator_unref);
  if (run->handle != NULL)
    tally_aggregator_handle_stop (run->handle);
  g_clear_pointer (&run->handle, tally_aggregator_handle_unref);
  g_clear_pointer (&run->broker, tally_broker_free);
  g_clear_pointer (&run->metrics, tally_metrics_unref);
  for (guint i = 0; i < G_N_ELEMENTS (run->signal_ids); i++)
    if (run->signal_ids[i] != 0)
      g_source_remove (run->signal_ids[i]);
  g_clear_pointer (&run->loop, g_main_loop_unref);
}

/* [log] level: drop messages less severe than the configured level; send the rest to the
 * journal when stderr is connected to it, else to stderr, every level (GLib's standard
 * streams writer would put debug and info on stdout, which carries the bootstrap line). */
static GLogLevelFlags log_threshold = G_LOG_LEVEL_MESSAGE;

static GLogWriterOutput
log_writer (GLogLevelFlags log_level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  GLogLevelFlags level = log_level & G_LOG_LEVEL_MASK;

  if (level > log_threshold && (log_level & G_LOG_FLAG_FATAL) == 0)
    return G_LOG_WRITER_HANDLED;
  if (g_log_writer_is_journald (fileno (stderr))
      && g_log_writer_journald (log_level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
    return G_LOG_WRITER_HANDLED;
  {
    g_autofree char *line = g_log_writer_format_fields (log_level, fields, n_fields, FALSE);

    fprintf (stderr, "%s\n", line);
    fflush (stderr);
  }
  return G_LOG_WRITER_HANDLED;
}

gboolean
tally_run_service (const TallyConfig *config, GError **error)
{
  TallyRun run = { 0 };
  gint64 start_ms = g_get_real_time () / 1000;
  rd_kafka_conf_t *base = NULL;
  rd_kafka_conf_t *conf;
  TallyActor *actor;
  TallyConfigGuarantee guarantee;
  char buf[64];
  size_t size = sizeof buf;
  gboolean ok = FALSE;

  run.config = config;
  run.loop = g_main_loop_new (NULL, FALSE);
  log_threshold = config->log.level;
  g_log_set_writer_func (log_writer, NULL, NULL);
  /* GLib drops info and debug messages before any writer sees them unless asked not to. */
  if (log_threshold >= G_LOG_LEVEL_INFO)
    g_log_set_debug_enabled (TRUE);
  g_mutex_init (&run.watchdog_lock);
  g_cond_init (&run.watchdog_cond);

  tally_kafka_errors_set_fatal_func (on_kafka_config_error, &run);

  /* Signals first, so that a SIGTERM during the start is not fatal. */
  run.signal_ids[0] = g_unix_signal_add (SIGINT, on_stop_signal, &run);
  run.signal_ids[1] = g_unix_signal_add (SIGTERM, on_stop_signal, &run);
  run.signal_ids[2] = g_unix_signal_add (SIGHUP, on_stop_signal, &run);
  run.signal_ids[3] = g_unix_signal_add (SIGUSR1, on_snapshot_signal, &run);

  if (!config->kafka.has_bootstrap && !start_broker (&run, error))
    goto out;
  base = make_base_conf (&run, error);
  if (base == NULL)
    goto out;

  /* Tally's own topics, before the publisher and the request reader use them. */
  {
    char servers[1024];
    size_t servers_size = sizeof servers;

    run.bootstrap = g_strdup (rd_kafka_conf_get (base, "bootstrap.servers", servers, &servers_size)
                                      == RD_KAFKA_CONF_OK
                                  ? servers
                                  : "?");
  }
  if (!ensure_topics_interruptibly (&run, base, error))
    goto out;

  run.handle = tally_aggregator_handle_new (config->aggregator.shards,
                                            config->aggregator.mailbox_capacity);
  run.metrics = tally_metrics_new ();
  tally_metrics_set_ready_func (run.metrics, (TallyMetricsReadyFunc)tally_notify_ready, NULL);

  /* The publisher. */
  run.publisher_arbiter = tally_arbiter_new ("tally-publish");
  /* Without the consumer-only properties of [kafka] (session.timeout.ms, ...), which a
   * producer would warn about at every start. */
  conf = tally_topics_producer_conf (base, error);
  /* Supervised: a producer that hit a fatal error is replaced (tally-publisher.h). */
  run.supervisor = tally_supervisor_new (NULL, PUBLISHER_MAX_RESTARTS, PUBLISHER_RESTART_PERIOD_MS);
  g_signal_connect (run.supervisor, "escalated", G_CALLBACK (on_escalated), NULL);
  run.publisher = conf != NULL ? tally_publisher_start_supervised (
                      run.supervisor, conf, config->output.topic, config->output.max_record_bytes,
                      run.broker != NULL ? TALLY_BROKER_PARTITION_BYTES : 0,
                      MIN (config->shutdown.timeout_ms, 10000), run.publisher_arbiter, 64, error)
                               : NULL;
  if (run.publisher == NULL)
    {
      if (error != NULL
          && g_error_matches (*error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_CONFIG))
        {
          (*error)->domain = TALLY_RUN_ERROR;
          (*error)->code = TALLY_RUN_ERROR_CONFIG;
        }
      goto out;
    }

  /* The source. With the embedded broker a shorter session timeout lets a restarted
   * instance take over a dead member's partitions in seconds. */
  conf = rd_kafka_conf_dup (base);
  if (run.broker != NULL && tally_config_kafka_get (config, "session.timeout.ms") == NULL
      && rd_kafka_conf_get (conf, "session.timeout.ms", buf, &size) == RD_KAFKA_CONF_OK)
    rd_kafka_conf_set (conf, "session.timeout.ms", EMBEDDED_SESSION_TIMEOUT_MS, NULL, 0);
  run.source_arbiter = tally_arbiter_new ("tally-source");
  guarantee = config->checkpoint.guarantee;
  if ((run.broker != NULL || run.mock_cluster) && config->checkpoint.enabled
      && guarantee == TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE)
    {
      /* Its mock cluster takes transactions but shows aborted records to read_committed
       * readers (it keeps no aborted-transaction index): no exactly once there. */
      if (run.broker != NULL)
        g_message ("embedded broker: checkpoints run at_least_once; exactly_once needs a real "
                   "Kafka broker (bootstrap.servers)");
      else
        g_message ("broker at %s is librdkafka's mock cluster (tally broker): checkpoints run "
                   "at_least_once; exactly_once needs a real Kafka broker",
                   run.bootstrap);
      guarantee = TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE;
    }
  actor = tally_source_new (config, guarantee, conf, run.handle, error);
  if (actor == NULL)
    {
      /* librdkafka refused a combination of [kafka] properties: a configuration error. */
      if (error != NULL && g_error_matches (*error, TALLY_SOURCE_ERROR, TALLY_SOURCE_ERROR_CONFIG))
        {
          (*error)->domain = TALLY_RUN_ERROR;
          (*error)->code = TALLY_RUN_ERROR_CONFIG;
        }
      goto out;
    }
  tally_source_set_metrics (TALLY_SOURCE (actor), run.metrics);
  if (config->windows.enabled && config->windows.publish)
    tally_source_set_window_closed_func (TALLY_SOURCE (actor), on_window_closed, &run, NULL);
  run.source = tally_actor_start (actor, run.source_arbiter, 16);

  /* Snapshots: triggers, cuts of the source's stores, publishing; on the publisher's
   * arbiter. */
  g_atomic_pointer_set (&run.snapshots,
                        tally_snapshot_coordinator_new (
                            "", tally_arbiter_get_context (run.publisher_arbiter), run.publisher,
                            config->output.topic, tally_source_cutter (),
                            tally_address_ref (run.source), (GDestroyNotify)tally_address_unref,
                            config->snapshot.interval_ms));
  tally_snapshot_coordinator_set_metrics (run.snapshots, run.metrics);
  if (!tally_snapshot_coordinator_read_requests (run.snapshots, rd_kafka_conf_dup (base),
                                                 config->requests.topic, start_ms, 10000, error))
    goto out;
  if (config->metrics.listen != NULL)
    {
      g_autoptr (GError) local_error = NULL;
      const TallyMetricsServerAccess access = {
        config->metrics.tls_cert_file,
        config->metrics.tls_key_file,
        (const char *const *)config->metrics.basic_auth_users,
      };

      run.metrics_server = tally_metrics_server_new (config->metrics.listen, &access, run.metrics,
                                                     run.handle, NULL, &local_error);
      if (run.metrics_server == NULL)
        {
          g_set_error (error, TALLY_RUN_ERROR,
                       g_error_matches (local_error, TALLY_METRICS_SERVER_ERROR,
                                        TALLY_METRICS_SERVER_ERROR_ADDRESS)
                               || g_error_matches (local_error, TALLY_METRICS_SERVER_ERROR,
                                                   TALLY_METRICS_SERVER_ERROR_ACCESS)
                           ? TALLY_RUN_ERROR_CONFIG
                           : TALLY_RUN_ERROR_FAILED,
                       "[metrics] listen: %s", local_error->message);
          goto out;
        }
    }

  {
    g_autofree char *inputs = g_strjoinv (", ", config->input.topics);

    g_message ("running: input %s; output %s, requests %s, %u shard(s); configuration %s", inputs,
               config->output.topic, config->requests.topic, config->aggregator.shards,
               config->source_path != NULL ? config->source_path : "built-in defaults");
  }
  g_main_loop_run (run.loop);
  ok = TRUE;

out:
  run_clear (&run);
  if (base != NULL)
    rd_kafka_conf_destroy (base);
  if (run.watchdog != NULL)
    {
      g_mutex_lock (&run.watchdog_lock);
      run.watchdog_done = TRUE;
      g_cond_signal (&run.watchdog_cond);
      g_mutex_unlock (&run.watchdog_lock);
      g_thread_join (run.watchdog);
    }
  g_mutex_clear (&run.watchdog_lock);
  g_cond_clear (&run.watchdog_cond);
  g_free (run.bootstrap);
  if (ok)
    g_message ("stopped cleanly");
  return ok;
}
