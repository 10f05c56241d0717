/* test-metrics.c — the metrics registry, its exposition text, and the metrics server.
 *
 * The exposition is checked as exact text, family by family (Prometheus text format
 * 0.0.4: HELP and TYPE lines, label escaping, cumulative buckets, seconds with six
 * decimals); librdkafka statistics are fed from a document shaped as its STATISTICS.md
 * says; the server is asked over real HTTP (libsoup's client) on 127.0.0.1, including a
 * stalled shard that must make /healthz fail.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-metrics-server.h"
#include "tally-metrics.h"
#include "tally-test-util.h"

#include <glib/gstdio.h>
#include <libsoup/soup.h>
#include <string.h>

static void
assert_contains (const char *text, const char *block)
{
  if (strstr (text, block) == NULL)
    g_error ("expected block not found:\n%s\n--- in ---\n%s", block, text);
}

static char *
render (TallyMetrics *metrics, const TallyMetricsShard *shards, guint n_shards,
        const TallyMetricsStore *stores, guint n_stores)
{
  GString *out = g_string_new (NULL);

  tally_metrics_write (metrics, shards, n_shards, stores, n_stores, out);
  return g_string_free (out, FALSE);
}

static void
test_partitions (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  TallyMetricsPartition *b1 = tally_metrics_partition (metrics, "b", 1);
  TallyMetricsPartition *a10 = tally_metrics_partition (metrics, "a\"x\\y\nz", 10);
  TallyMetricsPartition *a2 = tally_metrics_partition (metrics, "a\"x\\y\nz", 2);
  g_autofree char *text = NULL;

  /* The same entry every time. */
  g_assert_true (tally_metrics_partition (metrics, "b", 1) == b1);
  tally_metrics_partition_add_record (b1, 10, 3);
  tally_metrics_partition_add_record (b1, 5, 0);
  tally_metrics_partition_add_record (a10, 7, 2);
  tally_metrics_partition_set_position (b1, TRUE, 42, 40);
  tally_metrics_partition_set_position (a2, FALSE, -1, -1);
  text = render (metrics, NULL, 0, NULL, 0);

  /* Sorted by topic, then partition number (2 before 10); labels escaped. */
  assert_contains (text,
                   "# HELP tally_records_consumed_total Records consumed, per input "
                   "topic-partition.\n"
                   "# TYPE tally_records_consumed_total counter\n"
                   "tally_records_consumed_total{topic=\"a\\\"x\\\\y\\nz\",partition=\"2\"} 0\n"
                   "tally_records_consumed_total{topic=\"a\\\"x\\\\y\\nz\",partition=\"10\"} 1\n"
                   "tally_records_consumed_total{topic=\"b\",partition=\"1\"} 2\n"
                   "# HELP tally_bytes_consumed_total");
  assert_contains (text, "tally_bytes_consumed_total{topic=\"b\",partition=\"1\"} 15\n");
  assert_contains (text, "tally_words_consumed_total{topic=\"b\",partition=\"1\"} 3\n");
  assert_contains (text, "# TYPE tally_partition_assigned gauge\n"
                         "tally_partition_assigned{topic=\"a\\\"x\\\\y\\nz\",partition=\"2\"} 0\n"
                         "tally_partition_assigned{topic=\"a\\\"x\\\\y\\nz\",partition=\"10\"} 0\n"
                         "tally_partition_assigned{topic=\"b\",partition=\"1\"} 1\n");
  /* Unknown positions and lags are left out, not -1. */
  assert_contains (text, "# TYPE tally_partition_position_offset gauge\n"
                         "tally_partition_position_offset{topic=\"b\",partition=\"1\"} 42\n"
                         "# HELP tally_partition_committed_offset");
  assert_contains (text, "# TYPE tally_partition_committed_offset gauge\n"
                         "tally_partition_committed_offset{topic=\"b\",partition=\"1\"} 40\n"
                         "# HELP tally_consumer_lag_records");
  /* No statistics yet: no lag. */
  assert_contains (text, "# TYPE tally_consumer_lag_records gauge\n"
                         "# HELP tally_partition_high_watermark_offset");
}

static void
test_counters_and_histograms (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autofree char *text = NULL;
  TallyMetricsShard shards[2] = { { 3, 1024, TRUE }, { 0, 1024, FALSE } };
  TallyMetricsStore stores[2] = { { 7, 100 }, { 0, 5 } };

  tally_metrics_add (metrics, TALLY_METRICS_SNAPSHOT_REQUESTS, 2);
  tally_metrics_add (metrics, TALLY_METRICS_SNAPSHOT_REQUESTS, 1);
  tally_metrics_set_total (metrics, TALLY_METRICS_INVALID_BYTES, 9);
  tally_metrics_add (metrics, TALLY_METRICS_BACKPRESSURE_US, 1500000);
  tally_metrics_add (metrics, TALLY_METRICS_REBALANCE_ASSIGNS, 4);
  g_assert_cmpuint (tally_metrics_get (metrics, TALLY_METRICS_SNAPSHOT_REQUESTS), ==, 3);
  /* 5 ms is in the 0.005 bucket (le is inclusive), 5001 µs in 0.01, 2 minutes in +Inf. */
  tally_metrics_observe (metrics, TALLY_METRICS_CHECKPOINT_SECONDS, 5000);
  tally_metrics_observe (metrics, TALLY_METRICS_CHECKPOINT_SECONDS, 5001);
  tally_metrics_observe (metrics, TALLY_METRICS_CHECKPOINT_SECONDS, 120000000);
  text = render (metrics, shards, 2, stores, 2);

  assert_contains (text, "# HELP tally_snapshot_requests_total Snapshots asked for: request "
                         "records, SIGUSR1, the interval timer, shutdown.\n"
                         "# TYPE tally_snapshot_requests_total counter\n"
                         "tally_snapshot_requests_total 3\n");
  assert_contains (text, "\ntally_invalid_bytes_total 9\n");
  assert_contains (text, "# TYPE tally_backpressure_seconds_total counter\n"
                         "tally_backpressure_seconds_total 1.500000\n");
  assert_contains (text, "# TYPE tally_checkpoint_duration_seconds histogram\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.005\"} 1\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.01\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.025\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.05\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.1\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.25\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"0.5\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"1\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"2.5\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"5\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"10\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"60\"} 2\n"
                         "tally_checkpoint_duration_seconds_bucket{le=\"+Inf\"} 3\n"
                         "tally_checkpoint_duration_seconds_sum 120.010001\n"
                         "tally_checkpoint_duration_seconds_count 3\n");
  assert_contains (text, "tally_snapshot_duration_seconds_bucket{le=\"+Inf\"} 0\n"
                         "tally_snapshot_duration_seconds_sum 0.000000\n"
                         "tally_snapshot_duration_seconds_count 0\n");
  assert_contains (text, "tally_mailbox_depth_messages{shard=\"0\"} 3\n"
                         "tally_mailbox_depth_messages{shard=\"1\"} 0\n");
  assert_contains (text, "tally_shard_up{shard=\"0\"} 1\ntally_shard_up{shard=\"1\"} 0\n");
  /* Stores sorted by number. */
  assert_contains (text, "tally_store_distinct_words{store=\"0\"} 5\n"
                         "tally_store_distinct_words{store=\"7\"} 100\n");
  assert_contains (text, "tally_rebalances_total{kind=\"assign\"} 4\n"
                         "tally_rebalances_total{kind=\"error\"} 0\n"
                         "tally_rebalances_total{kind=\"revoke\"} 0\n");
  /* Every line is a comment or "name[{labels}] value", and ends the text with a newline. */
  g_assert_true (g_str_has_suffix (text, "\n"));
  {
    g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
    g_autoptr (GRegex) sample = g_regex_new (
        "^[a-z_]+(\\{([a-z_]+=\"([^\"\\\\]|\\\\.)*\",?)+\\})? [0-9]+(\\.[0-9]{6})?$", 0, 0, NULL);
    guint n_types = 0;

    for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++)
      if (g_str_has_prefix (lines[i], "# TYPE "))
        n_types++;
      else if (!g_str_has_prefix (lines[i], "# HELP "))
        g_assert_true (g_regex_match (sample, lines[i], 0, NULL));
    g_assert_cmpuint (n_types, ==, 36);
  }
}

/* Shaped as librdkafka 2.0.2 writes it (STATISTICS.md): an internal UA partition -1, a
 * bootstrap broker entry with nodeid -1, a partition not fetched (fetch_state none). */
static const char statistics[]
    = "{\"name\":\"rdkafka#consumer-1\",\"type\":\"consumer\",\"ts\":1,"
      "\"brokers\":{"
      "\"127.0.0.1:39092/bootstrap\":{\"name\":\"127.0.0.1:39092/bootstrap\",\"nodeid\":-1,"
      "\"state\":\"INIT\"},"
      "\"GroupCoordinator\":{\"name\":\"GroupCoordinator\",\"nodeid\":1,\"source\":\"logical\","
      "\"state\":\"UP\"},"
      "\"127.0.0.1:39092/1\":{\"name\":\"127.0.0.1:39092/1\",\"nodeid\":1,\"state\":\"UP\","
      "\"txerrs\":2,\"rxerrs\":1,\"req_timeouts\":0,\"rtt\":{\"min\":10,\"max\":900,\"avg\":1250}}}"
      ","
      "\"topics\":{\"words\":{\"topic\":\"words\",\"partitions\":{"
      "\"0\":{\"partition\":0,\"fetch_state\":\"active\",\"hi_offset\":100,\"ls_offset\":95,"
      "\"committed_offset\":-1001,\"consumer_lag\":-1},"
      "\"1\":{\"partition\":1,\"fetch_state\":\"active\",\"hi_offset\":5,\"ls_offset\":5},"
      "\"2\":{\"partition\":2,\"fetch_state\":\"none\",\"hi_offset\":5,\"ls_offset\":5},"
      "\"-1\":{\"partition\":-1,\"fetch_state\":\"none\",\"consumer_lag\":-1}}}}}";

static void
test_statistics (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;

  TallyMetricsPartition *p0 = tally_metrics_partition (metrics, "words", 0);
  TallyMetricsPartition *p1 = tally_metrics_partition (metrics, "words", 1);
  TallyMetricsPartition *p2 = tally_metrics_partition (metrics, "words", 2);

  tally_metrics_partition_set_position (p0, TRUE, 70, 60);
  /* Committed beyond the statistics' end offset (they are older): lag 0, not negative. */
  tally_metrics_partition_set_position (p1, TRUE, 9, 9);
  /* Revoked: no lag of ours. */
  tally_metrics_partition_set_position (p2, FALSE, -1, -1);
  g_assert_true (
      tally_metrics_update_statistics (metrics, statistics, strlen (statistics), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_metrics_get (metrics, TALLY_METRICS_STATISTICS), ==, 1);
  text = render (metrics, NULL, 0, NULL, 0);
  /* Lag: the last stable offset (95) minus the committed offset (60). */
  assert_contains (text, "# TYPE tally_consumer_lag_records gauge\n"
                         "tally_consumer_lag_records{topic=\"words\",partition=\"0\"} 35\n"
                         "tally_consumer_lag_records{topic=\"words\",partition=\"1\"} 0\n"
                         "# HELP");
  assert_contains (text, "# TYPE tally_partition_high_watermark_offset gauge\n"
                         "tally_partition_high_watermark_offset{topic=\"words\",partition=\"0\"} "
                         "100\n"
                         "tally_partition_high_watermark_offset{topic=\"words\",partition=\"1\"} "
                         "5\n# HELP");
  assert_contains (text, "# TYPE tally_broker_up gauge\n"
                         "tally_broker_up{broker=\"127.0.0.1:39092/1\",node_id=\"1\"} 1\n"
                         "# HELP tally_broker_rtt_seconds");
  assert_contains (text, "tally_broker_rtt_seconds{broker=\"127.0.0.1:39092/1\",node_id=\"1\"} "
                         "0.001250\n");
  assert_contains (
      text,
      "tally_broker_errors_total{broker=\"127.0.0.1:39092/1\",node_id=\"1\",kind=\"rx\"} 1\n"
      "tally_broker_errors_total{broker=\"127.0.0.1:39092/1\",node_id=\"1\",kind=\"timeout\"} 0\n"
      "tally_broker_errors_total{broker=\"127.0.0.1:39092/1\",node_id=\"1\",kind=\"tx\"} 2\n");

  /* Not JSON, or not an object: an error, and nothing changes. */
  g_assert_false (tally_metrics_update_statistics (metrics, "[1]", 3, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_false (tally_metrics_update_statistics (metrics, "{\"brokers\":", 11, &error));
  g_assert_nonnull (error);
  g_assert_cmpuint (tally_metrics_get (metrics, TALLY_METRICS_STATISTICS), ==, 1);
}

static void
on_ready (gpointer user_data)
{
  (*(guint *)user_data)++;
}

static void
test_readiness (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autofree char *reason = NULL;
  guint calls = 0;

  tally_metrics_set_ready_func (metrics, on_ready, &calls);
  g_assert_false (tally_metrics_is_ready (metrics, &reason));
  g_assert_cmpstr (reason, ==, "not consuming (starting or stopping)");
  g_clear_pointer (&reason, g_free);
  tally_metrics_set_state (metrics, 0, FALSE, 0, TRUE);
  g_assert_false (tally_metrics_is_ready (metrics, &reason));
  g_assert_cmpstr (reason, ==, "no partitions assigned");
  g_clear_pointer (&reason, g_free);
  tally_metrics_set_state (metrics, 2, TRUE, 0, TRUE);
  g_assert_false (tally_metrics_is_ready (metrics, &reason));
  g_assert_cmpstr (reason, ==, "restoring stores from the changelog");
  g_clear_pointer (&reason, g_free);
  tally_metrics_set_state (metrics, 2, FALSE, 1, TRUE);
  g_assert_false (tally_metrics_is_ready (metrics, NULL));
  g_assert_cmpuint (calls, ==, 0);
  tally_metrics_set_state (metrics, 2, FALSE, 0, TRUE);
  g_assert_true (tally_metrics_is_ready (metrics, &reason));
  g_assert_cmpstr (reason, ==, "ready: 2 partition(s) assigned, restored and consumed");
  /* The ready function runs once, not at every ready state. */
  tally_metrics_set_state (metrics, 3, FALSE, 0, TRUE);
  g_assert_cmpuint (calls, ==, 1);
}

static void
test_parse_listen (void)
{
  static const struct
  {
    const char *listen;
    const char *address; /* NULL: an error */
  } cases[] = {
    { "9464", "127.0.0.1:9464" },
    { "127.0.0.1:0", "127.0.0.1" }, /* GLib leaves port 0 out */
    { "0.0.0.0:9464", "0.0.0.0:9464" },
    { "localhost:80", "127.0.0.1:80" },
    { "[::1]:9464", "[::1]:9464" },
    { "", NULL },
    { "70000", NULL },
    { "127.0.0.1", NULL },
    { "example.org:9464", NULL },
    /* Nothing but an explicit address leaves loopback: no empty or wildcard host. */
    { ":9464", NULL },
    { "*:9464", NULL },
    { "[::]:9464", "[::]:9464" },
    { "1.2.3.4:notaport", NULL },
    /* An IPv6 address without brackets swallowed its port (a walkthrough: "::1:9464" bound
     * a random port on ::0.1.148.100). */
    { "::1:9464", NULL },
    { "::", NULL },
    { "fe80::1:80", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GSocketAddress) address
          = tally_metrics_server_parse_listen (cases[i].listen, &error);

      g_test_message ("%s", cases[i].listen);
      if (cases[i].address == NULL)
        {
          g_assert_null (address);
          g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ADDRESS);
        }
      else
        {
          g_autofree char *text = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (address));

          g_assert_no_error (error);
          g_assert_cmpstr (text, ==, cases[i].address);
        }
    }
}

/* GET http://127.0.0.1:port/path; returns the body, sets *status. */
static char *
get (SoupSession *session, guint16 port, const char *path, guint *status)
{
  g_autofree char *uri = g_strdup_printf ("http://127.0.0.1:%u%s", port, path);
  g_autoptr (SoupMessage) message = soup_message_new ("GET", uri);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = soup_session_send_and_read (session, message, NULL, &error);

  g_assert_no_error (error);
  *status = soup_message_get_status (message);
  return g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
}

/* Sends @request on a new connection to 127.0.0.1:@port and reads until the server closes
 * it (at most @limit_s seconds, else the test fails); returns what was read and sets
 * *@seconds to the time the close took. */
static char *
exchange (guint16 port, const char *request, guint limit_s, double *seconds)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) connection = NULL;
  g_autoptr (GError) error = NULL;
  GString *response = g_string_new (NULL);
  GSocket *socket;
  gint64 started;
  char buffer[4096];
  gssize n;

  connection = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  socket = g_socket_connection_get_socket (connection);
  g_socket_set_timeout (socket, limit_s);
  started = g_get_monotonic_time ();
  g_assert_cmpint (g_socket_send (socket, request, strlen (request), NULL, &error), ==,
                   (gssize)strlen (request));
  g_assert_no_error (error);
  while ((n = g_socket_receive (socket, buffer, sizeof buffer, NULL, &error)) > 0)
    g_string_append_len (response, buffer, n);
  /* A timeout here: the server kept the connection open. */
  g_assert_no_error (error);
  *seconds = (double)(g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  return g_string_free (response, FALSE);
}

/* What the server does with connections (a breaking pass found each): it closes every
 * connection after its response (libsoup 3.2 left those a client closed in CLOSE-WAIT,
 * until `tally run` ran out of descriptors), closes one whose request never ends, answers
 * 405 to a POST, and drops one that declares a large body without reading it. */
static void
test_server_connections (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  TallyAggregatorHandle *handle = tally_aggregator_handle_new (1, 64);
  g_autoptr (GError) error = NULL;
  g_autoptr (GMainContext) main_context = g_main_context_new ();
  g_autoptr (GMainLoop) main_loop = g_main_loop_new (main_context, FALSE);
  TallyMetricsServer *server;
  GThread *main_thread;
  guint16 port;
  double seconds;
  char *response;
  g_autofree char *big
      = g_strdup_printf ("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                         TALLY_METRICS_SERVER_MAX_BODY + 1);

  main_thread
      = g_thread_new ("test-main", (GThreadFunc)(void (*) (void))g_main_loop_run, main_loop);
  server = tally_metrics_server_new ("127.0.0.1:0", NULL, metrics, handle, main_context, &error);
  g_assert_no_error (error);
  port = tally_metrics_server_get_port (server);

  /* Read to the end: the server closed the connection after its answer, at once. */
  response = exchange (port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5, &seconds);
  g_assert_true (g_str_has_prefix (response, "HTTP/1.1 200 OK\r\n"));
  assert_contains (response, "\r\nConnection: close\r\n");
  assert_contains (response, "\r\n\r\nok: the main loop and 1 shard(s) answered in ");
  g_free (response);

  response = exchange (port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 5,
                       &seconds);
  g_assert_true (g_str_has_prefix (response, "HTTP/1.1 405 Method Not Allowed\r\n"));
  assert_contains (response, "\r\nAllow: GET, HEAD\r\n");
  assert_contains (response, "\r\n\r\nmethod POST not allowed: use GET (or HEAD)\n");
  g_free (response);

  /* Declared, never sent: closed unanswered, without waiting for the body. */
  response = exchange (port, big, 5, &seconds);
  g_assert_cmpstr (response, ==, "");
  g_free (response);

  /* Headers never finished: closed after the I/O timeout. */
  response = exchange (port, "GET /metrics HTTP/1.1\r\nHost: x\r\n",
                       TALLY_METRICS_SERVER_IO_TIMEOUT_S + 10, &seconds);
  g_assert_cmpstr (response, ==, "");
  g_assert_cmpfloat (seconds, >=, TALLY_METRICS_SERVER_IO_TIMEOUT_S - 1);
  g_free (response);

  /* Still serving. */
  response = exchange (port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 5, &seconds);
  g_assert_true (g_str_has_prefix (response, "HTTP/1.1 503 Service Unavailable\r\n"));
  g_free (response);

  tally_metrics_server_free (server);
  g_main_loop_quit (main_loop);
  g_thread_join (main_thread);
  tally_aggregator_handle_stop (handle);
  tally_aggregator_handle_unref (handle);
}

static void
test_server (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  TallyAggregatorHandle *handle = tally_aggregator_handle_new (2, 64);
  g_autoptr (GError) error = NULL;
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  g_autoptr (GMainContext) main_context = g_main_context_new ();
  TallyMetricsServer *server;
  GThread *main_thread;
  g_autoptr (GMainLoop) main_loop = g_main_loop_new (main_context, FALSE);
  guint status;
  g_autofree char *body = NULL;

  /* A stand-in for `tally run`'s main loop, which /healthz pings. */
  main_thread
      = g_thread_new ("test-main", (GThreadFunc)(void (*) (void))g_main_loop_run, main_loop);
  tally_aggregator_handle_add_word (handle, "alpha", NULL);
  tally_aggregator_handle_add_word (handle, "beta", NULL);
  tally_aggregator_handle_add_word (handle, "alpha", NULL);

  server = tally_metrics_server_new ("127.0.0.1:0", NULL, metrics, handle, main_context, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_metrics_server_get_port (server), >, 0);

  body = get (session, tally_metrics_server_get_port (server), "/metrics", &status);
  g_assert_cmpuint (status, ==, 200);
  assert_contains (body, "\ntally_store_distinct_words{store=\"0\"} 2\n");
  assert_contains (body, "\ntally_shard_up{shard=\"0\"} 1\ntally_shard_up{shard=\"1\"} 1\n");
  assert_contains (body, "\ntally_mailbox_capacity_messages{shard=\"0\"} 64\n");
  g_clear_pointer (&body, g_free);

  body = get (session, tally_metrics_server_get_port (server), "/healthz", &status);
  g_assert_cmpuint (status, ==, 200);
  g_assert_true (g_str_has_prefix (body, "ok: the main loop and 2 shard(s) answered in "));
  g_clear_pointer (&body, g_free);

  body = get (session, tally_metrics_server_get_port (server), "/readyz", &status);
  g_assert_cmpuint (status, ==, 503);
  g_assert_cmpstr (body, ==, "not consuming (starting or stopping)\n");
  g_clear_pointer (&body, g_free);
  tally_metrics_set_state (metrics, 1, FALSE, 0, TRUE);
  body = get (session, tally_metrics_server_get_port (server), "/readyz", &status);
  g_assert_cmpuint (status, ==, 200);
  g_clear_pointer (&body, g_free);

  body = get (session, tally_metrics_server_get_port (server), "/nope", &status);
  g_assert_cmpuint (status, ==, 404);
  g_clear_pointer (&body, g_free);
  /* The stall hook exists only with TALLY_TEST_HOOKS=1. */
  body = get (session, tally_metrics_server_get_port (server), "/debug/stall?shard=1&ms=10",
              &status);
  g_assert_cmpuint (status, ==, 404);
  g_clear_pointer (&body, g_free);

  /* A stuck shard: /healthz fails within the bound and names it; /metrics still answers. */
  g_assert_true (tally_address_tell (
      tally_aggregator_handle_get_shard_address (handle, 1),
      tally_aggregator_stall_new (TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS + 3000), NULL));
  {
    gint64 started = g_get_monotonic_time ();

    body = get (session, tally_metrics_server_get_port (server), "/healthz", &status);
    g_assert_cmpuint (status, ==, 503);
    g_assert_cmpstr (body, ==, "shard 1 did not answer within 5000 ms\n");
    g_assert_cmpint (g_get_monotonic_time () - started, <,
                     (TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS + 2000) * G_TIME_SPAN_MILLISECOND);
    g_clear_pointer (&body, g_free);
  }

  /* The client's keep-alive connection closes first, so that the server's side of it is
   * released while the server still runs. */
  soup_session_abort (session);
  g_usleep (200000);
  tally_metrics_server_free (server);
  g_main_loop_quit (main_loop);
  g_thread_join (main_thread);
  tally_aggregator_handle_stop (handle);
  tally_aggregator_handle_unref (handle);
}

/* A stuck main loop makes /healthz fail, on a server of its own (with the stalled shard of
 * test_server() on the same server, LeakSanitizer reports a socket libsoup accepted). */
static void
test_server_main_loop (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  TallyAggregatorHandle *handle = tally_aggregator_handle_new (2, 64);
  g_autoptr (GError) error = NULL;
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  g_autoptr (GMainContext) main_context = g_main_context_new ();
  g_autoptr (GMainLoop) main_loop = g_main_loop_new (main_context, FALSE);
  GThread *main_thread;
  TallyMetricsServer *server;
  guint status;
  g_autofree char *body = NULL;

  main_thread
      = g_thread_new ("test-main", (GThreadFunc)(void (*) (void))g_main_loop_run, main_loop);
  server = tally_metrics_server_new ("127.0.0.1:0", NULL, metrics, handle, main_context, &error);
  g_assert_no_error (error);
  body = get (session, tally_metrics_server_get_port (server), "/healthz", &status);
  g_assert_cmpuint (status, ==, 200);
  g_clear_pointer (&body, g_free);

  /* A stuck main loop. */
  g_main_loop_quit (main_loop);
  g_thread_join (main_thread);
  body = get (session, tally_metrics_server_get_port (server), "/healthz", &status);
  g_assert_cmpuint (status, ==, 503);
  assert_contains (body, "the main loop did not answer within 5000 ms\n");
  g_clear_pointer (&body, g_free);
  /* The ping the stuck loop owes is answered late; the server drops it. */
  while (g_main_context_iteration (main_context, FALSE))
    ;

  soup_session_abort (session);
  g_usleep (200000);
  tally_metrics_server_free (server);
  tally_aggregator_handle_stop (handle);
  tally_aggregator_handle_unref (handle);
}

static gboolean
on_accept_certificate (SoupMessage *message, GTlsCertificate *certificate,
                       GTlsCertificateFlags errors, gpointer user_data)
{
  GTlsCertificate *expected = user_data;

  /* Self-signed, so not trusted; it must be the one the server was given. */
  return g_tls_certificate_is_same (certificate, expected);
}

/* GET @uri with basic credentials @user:@password (none when @user is NULL), trusting
 * @certificate only; returns the body (NULL on a transport error, then in @error). */
static char *
get_secure (SoupSession *session, const char *uri, GTlsCertificate *certificate, const char *user,
            const char *password, guint *status, char **authenticate, GError **error)
{
  g_autoptr (SoupMessage) message = soup_message_new ("GET", uri);
  g_autoptr (GBytes) body = NULL;

  if (user != NULL)
    {
      g_autofree char *pair = g_strdup_printf ("%s:%s", user, password);
      g_autofree char *encoded = g_base64_encode ((const guchar *)pair, strlen (pair));
      g_autofree char *header = g_strdup_printf ("Basic %s", encoded);

      soup_message_headers_replace (soup_message_get_request_headers (message), "Authorization",
                                    header);
    }
  if (certificate != NULL)
    g_signal_connect (message, "accept-certificate", G_CALLBACK (on_accept_certificate),
                      certificate);
  body = soup_session_send_and_read (session, message, NULL, error);
  if (body == NULL)
    return NULL;
  *status = soup_message_get_status (message);
  if (authenticate != NULL)
    *authenticate = g_strdup (soup_message_headers_get_one (
        soup_message_get_response_headers (message), "WWW-Authenticate"));
  return g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
}

/* HTTPS with basic authentication, as exporter-toolkit's web configuration: no or wrong
 * credentials 401, right ones 200 with the exposition; plain HTTP to the port fails. */
static void
test_server_tls_basic_auth (void)
{
  g_autofree char *dir = g_dir_make_tmp ("tally-metrics-tls-XXXXXX", NULL);
  g_autofree char *cert = NULL, *key = NULL;
  g_autofree char *hash = NULL, *item = NULL, *other_hash = NULL, *other = NULL;
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsCertificate) certificate = NULL;
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  TallyMetricsServer *server;
  g_autofree char *https = NULL, *http = NULL, *body = NULL, *authenticate = NULL;
  guint status = 0;

  if (!tally_test_make_certificate (dir, &cert, &key))
    return;
  certificate = g_tls_certificate_new_from_files (cert, key, &error);
  g_assert_no_error (error);
  hash = tally_test_bcrypt ("s3cret pass");
  item = g_strdup_printf ("prometheus:%s", hash);
  other_hash = tally_test_bcrypt ("another");
  other = g_strdup_printf ("grafana:%s", other_hash);
  {
    const char *const users[] = { item, other, NULL };
    const TallyMetricsServerAccess access = { cert, key, users };

    server = tally_metrics_server_new ("127.0.0.1:0", &access, metrics, NULL, NULL, &error);
  }
  g_assert_no_error (error);
  https = g_strdup_printf ("https://127.0.0.1:%u/metrics", tally_metrics_server_get_port (server));
  http = g_strdup_printf ("http://127.0.0.1:%u/metrics", tally_metrics_server_get_port (server));

  /* No credentials, a wrong password, an unknown user: 401 and the challenge. */
  body = get_secure (session, https, certificate, NULL, NULL, &status, &authenticate, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 401);
  /* libsoup writes the realm as a token, unquoted (RFC 7235 allows either). */
  g_assert_cmpstr (authenticate, ==, "Basic realm=tally");
  g_clear_pointer (&body, g_free);
  g_clear_pointer (&authenticate, g_free);
  body = get_secure (session, https, certificate, "prometheus", "wrong", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 401);
  g_clear_pointer (&body, g_free);
  body = get_secure (session, https, certificate, "nobody", "s3cret pass", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 401);
  g_clear_pointer (&body, g_free);
  /* A user's password is not another user's. */
  body = get_secure (session, https, certificate, "grafana", "s3cret pass", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 401);
  g_clear_pointer (&body, g_free);

  /* The right password: the exposition. */
  body = get_secure (session, https, certificate, "prometheus", "s3cret pass", &status, NULL,
                     &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 200);
  assert_contains (body, "# TYPE tally_build_info gauge\n");
  g_clear_pointer (&body, g_free);
  body = get_secure (session, https, certificate, "grafana", "another", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 200);
  g_clear_pointer (&body, g_free);

  /* Plain HTTP to the HTTPS port: no answer at all, with or without credentials. */
  body = get_secure (session, http, NULL, "prometheus", "s3cret pass", &status, NULL, &error);
  g_assert_null (body);
  g_assert_nonnull (error);
  g_test_message ("plain HTTP: %s", error->message);
  g_clear_error (&error);

  soup_session_abort (session);
  g_usleep (200000);
  tally_metrics_server_free (server);
  g_unlink (cert);
  g_unlink (key);
  g_rmdir (dir);
}

/* Basic authentication without TLS, and errors of the access settings. */
static void
test_server_access_errors (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  g_autofree char *hash = tally_test_bcrypt ("pw");
  g_autofree char *item = g_strdup_printf ("u:%s", hash);
  const char *const users[] = { item, NULL };
  const char *const bad_users[] = { hash, NULL };
  const TallyMetricsServerAccess auth_only = { NULL, NULL, users };
  const TallyMetricsServerAccess cert_only = { "/nonexistent.pem", NULL, NULL };
  const TallyMetricsServerAccess missing = { "/nonexistent.pem", "/nonexistent.key", NULL };
  const TallyMetricsServerAccess bad = { NULL, NULL, bad_users };
  TallyMetricsServer *server;
  g_autofree char *uri = NULL, *body = NULL;
  guint status = 0;

  server = tally_metrics_server_new ("127.0.0.1:0", &auth_only, metrics, NULL, NULL, &error);
  g_assert_no_error (error);
  uri = g_strdup_printf ("http://127.0.0.1:%u/readyz", tally_metrics_server_get_port (server));
  body = get_secure (session, uri, NULL, NULL, NULL, &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 401);
  g_clear_pointer (&body, g_free);
  body = get_secure (session, uri, NULL, "u", "pw", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 503); /* through: /readyz answers (not consuming) */
  g_assert_cmpstr (body, ==, "not consuming (starting or stopping)\n");
  g_clear_pointer (&body, g_free);
  soup_session_abort (session);
  g_usleep (200000);
  tally_metrics_server_free (server);

  g_assert_null (tally_metrics_server_new ("127.0.0.1:0", &cert_only, metrics, NULL, NULL, &error));
  g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS);
  g_clear_error (&error);
  g_assert_null (tally_metrics_server_new ("127.0.0.1:0", &missing, metrics, NULL, NULL, &error));
  g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS);
  g_clear_error (&error);
  g_assert_null (tally_metrics_server_new ("127.0.0.1:0", &bad, metrics, NULL, NULL, &error));
  g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS);
  g_assert_cmpstr (error->message, ==, "basic_auth_users item 1 is not USER:BCRYPT_HASH");
}

static void
test_listen_errors (void)
{
  g_autoptr (TallyMetrics) metrics = tally_metrics_new ();
  g_autoptr (GError) error = NULL;
  TallyMetricsServer *first
      = tally_metrics_server_new ("127.0.0.1:0", NULL, metrics, NULL, NULL, &error);
  g_autofree char *taken = NULL;

  g_assert_no_error (error);
  taken = g_strdup_printf ("127.0.0.1:%u", tally_metrics_server_get_port (first));
  g_assert_null (tally_metrics_server_new (taken, NULL, metrics, NULL, NULL, &error));
  g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_LISTEN);
  g_clear_error (&error);
  g_assert_null (tally_metrics_server_new ("nonsense", NULL, metrics, NULL, NULL, &error));
  g_assert_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ADDRESS);
  tally_metrics_server_free (first);
}

int
main (int argc, char **argv)
{
  /* No libproxy or dconf lookups in the HTTP client: it talks to 127.0.0.1 only. */
  g_setenv ("GIO_USE_PROXY_RESOLVER", "dummy", TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/metrics/partitions", test_partitions);
  g_test_add_func ("/metrics/counters-histograms", test_counters_and_histograms);
  g_test_add_func ("/metrics/statistics", test_statistics);
  g_test_add_func ("/metrics/readiness", test_readiness);
  g_test_add_func ("/metrics/parse-listen", test_parse_listen);
  g_test_add_func ("/metrics/server", test_server);
  g_test_add_func ("/metrics/server-main-loop", test_server_main_loop);
  g_test_add_func ("/metrics/server-connections", test_server_connections);
  g_test_add_func ("/metrics/listen-errors", test_listen_errors);
  g_test_add_func ("/metrics/server-tls-basic-auth", test_server_tls_basic_auth);
  g_test_add_func ("/metrics/server-access-errors", test_server_access_errors);
  return g_test_run ();
}
