/* tally-cmd-snapshot.c — `tally snapshot`: request a snapshot and print the merged counts.
 *
 * A client of the snapshot protocol (tally-snapshot-format.h), usable against any Tally
 * deployment:
 *
 * 1. learn the input partitions from metadata (every partition of every input topic, names
 *    or `^regex`): a complete answer must cover them all;
 * 2. take the end offsets (high watermarks) of every output topic partition BEFORE sending,
 *    and assign the consumer there, so no reply can be missed and none older is read;
 * 3. produce one request record: key = a fresh request id, value = the request JSON (the
 *    producer learned the request topic's metadata before, so the record leaves at once);
 * 4. read the output topic, reassembling parts of every instance's reply, until the merged
 *    replies to one request cover every input partition, or the timeout passes (exit 1,
 *    naming the partitions still missing, or the output topic's retention when replies
 *    lack parts). A request no reply covers in time is sent again after 1 s, then 2, 4 and
 *    every 8 s: with the same id while nothing came (an instance answers an id once, so
 *    asking again costs nothing where it was read), not at all while parts of a reply are
 *    arriving, and with a fresh id once complete replies came that do not cover everything
 *    (an instance answered before it had all its partitions);
 * 5. print `word count` lines in TallyCounts order (count descending, then word bytes), or
 *    the merged snapshot as JSON.
 *
 * Windows: `--window current|last|START_MS|last:DURATION` sends the request's `window`
 * member; each instance resolves it on its own stream time (docs/running.md), so for an
 * exact range over several instances name a window by its start.
 *
 * Filters: `--top` and `--min-count` are a TallyTopQuery (tally-top-query.h): the
 * instances' top N, answered alone by an instance that owns every partition, else the
 * three rounds of TPUT; exact either way, without shipping every word. `--prefix` is
 * exact per instance and goes with every request. Since not every word is shipped, the
 * JSON's `distinct_words` of a --top or --min-count answer from several instances is the
 * sum of theirs (a word at two instances counts twice); `total_words` stays exact.
 *
 * Life cycle of the two clients, all in tally_cmd_snapshot(): configure, create (consumer,
 * then producer), assign, produce and flush (again for each request sent again), poll,
 * close the consumer, destroy both. From creation to close, a thread of its own serves
 * their main queues (ErrorWatch): a wrong password, an untrusted broker certificate or a
 * missing ACL ends the command at once with exit status 78 (tally-kafka-errors.h), not at
 * --timeout.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-commands.h"
#include "tally-config.h"
#include "tally-kafka-errors.h"
#include "tally-snapshot-format.h"
#include "tally-top-query.h"

#include <errno.h>
#include <unistd.h>
#include <gio/gio.h>
#include <gio/gunixoutputstream.h>
#include <stdio.h>
#include <string.h>

/* A configuration error of a client (tally-kafka-errors.h): any thread. */
static void
on_kafka_config_error (const char *message, gpointer user_data)
{
  g_printerr ("%s: %s\n", g_get_prgname (), message);
  fflush (stderr);
  _exit (TALLY_EXIT_CONFIG);
}

/* Error lines of both clients, each text printed once: the consumer and the producer
 * report the same refused connection, and librdkafka repeats it on every retry ("(after
 * 0ms in state CONNECT, 1 identical error(s) suppressed)"), which adds nothing. Called on
 * librdkafka's threads. */
static void
log_cb (const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
  static GMutex lock;
  static GHashTable *printed; /* normalized texts, owned; lives until exit */
  const char *after = strstr (message, " (after ");
  char *text;
  gboolean is_new;

  if (level > 3)
    return;
  text = g_strdup_printf ("%s: %.*s", facility,
                          (int)(after != NULL ? (gsize)(after - message) : strlen (message)),
                          message);
  g_mutex_lock (&lock);
  if (printed == NULL)
    printed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  is_new = g_hash_table_add (printed, text);
  g_mutex_unlock (&lock);
  if (is_new)
    g_printerr ("%s: librdkafka: %s: %s\n", g_get_prgname (), facility, message);
}

/* The role of each client in messages: its configuration's opaque. */
#define CONSUMER_ROLE "snapshot consumer"
#define PRODUCER_ROLE "request producer"

/* Error callback of both clients (@opaque: the client's role). A configuration error
 * (wrong password, untrusted certificate, missing ACL) ends the command through
 * on_kafka_config_error(); librdkafka retries the others (a broker not up yet), and its
 * log line, printed by log_cb(), already said what happened. */
static void
error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  if (err == RD_KAFKA_RESP_ERR__FATAL)
    {
      char fatal[512];
      rd_kafka_resp_err_t orig = rd_kafka_fatal_error (rk, fatal, sizeof fatal);

      if (tally_kafka_errors_check (orig, opaque, NULL, fatal))
        return;
    }
  tally_kafka_errors_check (err, opaque, NULL, reason);
}

/* librdkafka reports a failed authentication or TLS handshake through the error callback,
 * which runs only where the client's main queue is served (rd_kafka_poll()). The main
 * thread spends its time blocked in metadata, watermark, flush and consumer_poll calls,
 * none of which serves that queue of a consumer, and only flush that of a producer: left
 * alone, a wrong password waited out the whole --timeout. This thread serves both
 * clients' main queues from their creation until just before they are closed. */
typedef struct
{
  rd_kafka_t *consumer;
  rd_kafka_t *producer;
  gint stop; /* atomic */
  GThread *thread;
} ErrorWatch;

static gpointer
error_watch_run (gpointer data)
{
  ErrorWatch *watch = data;

  while (!g_atomic_int_get (&watch->stop))
    {
      rd_kafka_poll (watch->consumer, 50);
      rd_kafka_poll (watch->producer, 50);
    }
  return NULL;
}

static void
error_watch_stop (ErrorWatch *watch)
{
  if (watch->thread == NULL)
    return;
  g_atomic_int_set (&watch->stop, 1);
  g_thread_join (g_steal_pointer (&watch->thread));
}

/* Delivery report of the request producer (served by ErrorWatch or rd_kafka_flush()): a
 * request refused by the request topic's ACLs ends the command; any other failure is
 * said, and the request is sent again by ask_until_covered(). */
static void
delivery_cb (rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR)
    return;
  if (!tally_kafka_errors_check (message->err, opaque, rd_kafka_topic_name (message->rkt),
                                 rd_kafka_message_errstr (message)))
    g_printerr ("%s: the request to %s was not delivered: %s\n", g_get_prgname (),
                rd_kafka_topic_name (message->rkt), rd_kafka_message_errstr (message));
}

/* What to add to a message about the output or request topic when @err says it does not
 * exist: `tally run` creates both at start (tally_topics_ensure()), so the usual cause is
 * that it has not run on this cluster yet, or reads another configuration. */
static const char *
missing_topic_hint (rd_kafka_resp_err_t err)
{
  if (err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    return "";
  return "; the topic does not exist: `tally run` creates it when it starts, so start it "
         "first, and check that both read the same configuration ([output] and [requests] "
         "topic)";
}

/* Whether @list holds a partition of @topic. */
static gboolean
has_topic (const rd_kafka_topic_partition_list_t *list, const char *topic)
{
  for (int i = 0; i < list->cnt; i++)
    if (strcmp (list->elems[i].topic, topic) == 0)
      return TRUE;
  return FALSE;
}

/* A broker lists only the topics the principal may describe: a named input topic missing
 * from the metadata of all topics may not exist yet, or be hidden. Asked for alone, it is
 * refused by name (TOPIC_AUTHORIZATION_FAILED), which ends the command: without it, no
 * reply could be checked for covering that topic's partitions. Asked only where the
 * client authenticates (security.protocol other than PLAINTEXT; ACLs are about a
 * principal): librdkafka's mock cluster, the embedded broker, speaks only PLAINTEXT and
 * creates every topic a metadata request names, whatever allow.auto.create.topics says. */
static void
check_hidden_topic (rd_kafka_t *rk, const char *topic, guint timeout_ms)
{
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_topic_t *rkt;
  rd_kafka_resp_err_t err;
  char protocol[32] = "";
  size_t size = sizeof protocol;

  if (rd_kafka_conf_get (rd_kafka_conf (rk), "security.protocol", protocol, &size)
          != RD_KAFKA_CONF_OK
      || g_ascii_strcasecmp (protocol, "plaintext") == 0)
    return;
  rkt = rd_kafka_topic_new (rk, topic, NULL);
  err = rd_kafka_metadata (rk, 0, rkt, &metadata, (int)timeout_ms);
  rd_kafka_topic_destroy (rkt);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1)
    err = metadata->topics[0].err;
  if (metadata != NULL)
    rd_kafka_metadata_destroy (metadata);
  tally_kafka_errors_check (err, CONSUMER_ROLE, topic, rd_kafka_err2str (err));
}

/* Every partition of the topics named by @patterns (names, or `^regex`), from metadata. */
static rd_kafka_topic_partition_list_t *
input_partitions (rd_kafka_t *rk, char **patterns, guint timeout_ms, GError **error)
{
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_topic_partition_list_t *list;
  rd_kafka_resp_err_t err;

  err = rd_kafka_metadata (rk, 1, NULL, &metadata, (int)timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      char servers[512] = "";
      size_t size = sizeof servers;

      /* The address the user gave, so that a typo in it can be seen. */
      if (rd_kafka_conf_get (rd_kafka_conf (rk), "bootstrap.servers", servers, &size)
          != RD_KAFKA_CONF_OK)
        servers[0] = '\0';
      tally_kafka_errors_check (err, CONSUMER_ROLE, NULL, rd_kafka_err2str (err));
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "cannot read cluster metadata from %s: %s: check that a broker listens "
                   "there (--bootstrap-server or [kafka] bootstrap.servers)",
                   servers[0] != '\0' ? servers : "(no bootstrap.servers)", rd_kafka_err2str (err));
      return NULL;
    }
  list = rd_kafka_topic_partition_list_new (16);
  for (int t = 0; t < metadata->topic_cnt; t++)
    {
      const struct rd_kafka_metadata_topic *topic = &metadata->topics[t];
      gboolean wanted = FALSE;

      for (char **p = patterns; *p != NULL && !wanted; p++)
        wanted = **p == '^' ? g_regex_match_simple (*p, topic->topic, 0, 0)
                            : strcmp (*p, topic->topic) == 0;
      if (wanted)
        tally_kafka_errors_check (topic->err, CONSUMER_ROLE, topic->topic,
                                  rd_kafka_err2str (topic->err));
      if (!wanted || topic->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        continue;
      for (int p = 0; p < topic->partition_cnt; p++)
        rd_kafka_topic_partition_list_add (list, topic->topic, topic->partitions[p].id);
    }
  rd_kafka_metadata_destroy (metadata);
  for (char **p = patterns; *p != NULL; p++)
    if (**p != '^' && !has_topic (list, *p))
      check_hidden_topic (rk, *p, timeout_ms);
  rd_kafka_topic_partition_list_sort (list, NULL, NULL);
  return list;
}

/* Assigns every partition of @topic at its current high watermark. */
static gboolean
assign_at_end (rd_kafka_t *rk, const char *topic, guint timeout_ms, GError **error)
{
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new (rk, topic, NULL);
  rd_kafka_topic_partition_list_t *list = NULL;
  rd_kafka_resp_err_t err;

  err = rd_kafka_metadata (rk, 0, rkt, &metadata, (int)timeout_ms);
  rd_kafka_topic_destroy (rkt);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1)
    err = metadata->topics[0].err;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      list = rd_kafka_topic_partition_list_new (metadata->topics[0].partition_cnt);
      for (int p = 0; p < metadata->topics[0].partition_cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR;
           p++)
        {
          int32_t id = metadata->topics[0].partitions[p].id;
          int64_t low, high;

          err = rd_kafka_query_watermark_offsets (rk, topic, id, &low, &high, (int)timeout_ms);
          rd_kafka_topic_partition_list_add (list, topic, id)->offset = high;
        }
    }
  if (metadata != NULL)
    rd_kafka_metadata_destroy (metadata);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    err = rd_kafka_assign (rk, list);
  if (list != NULL)
    rd_kafka_topic_partition_list_destroy (list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      tally_kafka_errors_check (err, CONSUMER_ROLE, topic, rd_kafka_err2str (err));
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "cannot read the end offsets of output topic %s: %s%s", topic,
                   rd_kafka_err2str (err), missing_topic_hint (err));
      return FALSE;
    }
  return TRUE;
}

static char *
describe_partitions (const rd_kafka_topic_partition_list_t *list)
{
  GString *text = g_string_new (NULL);

  for (int i = 0; i < list->cnt; i++)
    g_string_append_printf (text, "%s%s [%" G_GINT32_FORMAT "]", i > 0 ? ", " : "",
                            list->elems[i].topic, list->elems[i].partition);
  return g_string_free (text, FALSE);
}

/* Sets @name to @value unless @conf holds a value other than librdkafka's default there
 * (one the [kafka] section or -X chose on purpose). */
static void
set_if_default (rd_kafka_conf_t *conf, const char *name, const char *value)
{
  rd_kafka_conf_t *defaults = rd_kafka_conf_new ();
  char current[64], default_value[64];
  size_t size = sizeof current, default_size = sizeof default_value;

  if (rd_kafka_conf_get (conf, name, current, &size) == RD_KAFKA_CONF_OK
      && rd_kafka_conf_get (defaults, name, default_value, &default_size) == RD_KAFKA_CONF_OK
      && strcmp (current, default_value) == 0)
    rd_kafka_conf_set (conf, name, value, NULL, 0);
  rd_kafka_conf_destroy (defaults);
}

/* Learns the leader of every partition of @topic in @producer, so that the first record
 * produced there goes out at once. Without it, librdkafka asks for the topic's metadata
 * when the record is produced, which is dropped while no broker connection is up yet (a
 * client just created), and asked again only by its 1 s topic scan: that was the second
 * every `tally snapshot` waited before its request left. */
static gboolean
warm_producer (rd_kafka_t *producer, const char *topic, guint timeout_ms, GError **error)
{
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new (producer, topic, NULL);
  rd_kafka_resp_err_t err;

  err = rd_kafka_metadata (producer, 0, rkt, &metadata, (int)timeout_ms);
  rd_kafka_topic_destroy (rkt);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1)
    err = metadata->topics[0].err;
  if (metadata != NULL)
    rd_kafka_metadata_destroy (metadata);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      tally_kafka_errors_check (err, PRODUCER_ROLE, topic, rd_kafka_err2str (err));
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "cannot read the metadata of request topic %s: %s%s", topic,
                   rd_kafka_err2str (err), missing_topic_hint (err));
      return FALSE;
    }
  return TRUE;
}

/* The first wait for a covering answer before a request is sent again, and the longest. */
#define FIRST_ASK_AGAIN_MS 1000
#define MAX_ASK_AGAIN_MS 8000

/* One request sent, and the replies to it. */
typedef struct
{
  TallySnapshotRequest *request;
  TallySnapshotAssembler *assembler;
  guint n_snapshots; /* complete replies merged */
} Ask;

static void
ask_free (Ask *ask)
{
  tally_snapshot_request_free (ask->request);
  tally_snapshot_assembler_free (ask->assembler);
  g_free (ask);
}

static gboolean
send_request (rd_kafka_t *producer, const char *topic, const TallySnapshotRequest *request,
              guint timeout_ms, GError **error)
{
  g_autoptr (GBytes) value = tally_snapshot_request_to_json (request);
  rd_kafka_resp_err_t err;
  gsize len;
  const void *data = g_bytes_get_data (value, &len);

  err = rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (topic),
                           RD_KAFKA_V_KEY (request->request_id, strlen (request->request_id)),
                           RD_KAFKA_V_VALUE ((void *)data, len),
                           RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    err = rd_kafka_flush (producer, (int)timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      tally_kafka_errors_check (err, PRODUCER_ROLE, topic, rd_kafka_err2str (err));
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot send the request to %s: %s", topic,
                   rd_kafka_err2str (err));
      return FALSE;
    }
  return TRUE;
}

/* Milliseconds until @deadline (monotonic, µs), at least 1. */
static guint
time_left (gint64 deadline)
{
  gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;

  return (guint)CLAMP (left_ms, 1, G_MAXINT);
}

/* Whether @message names @request_id as its key or in its tally.request.id header: a reply
 * to our request, which must not be dropped silently when it cannot be decoded. */
static gboolean
is_reply_to (const rd_kafka_message_t *message, const char *request_id)
{
  gsize len = strlen (request_id);
  rd_kafka_headers_t *headers = NULL;
  const void *value = NULL;
  size_t size = 0;

  if (message->key != NULL && message->key_len == len
      && memcmp (message->key, request_id, len) == 0)
    return TRUE;
  return rd_kafka_message_headers (message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR
         && rd_kafka_header_get_last (headers, TALLY_SNAPSHOT_HEADER_REQUEST_ID, &value, &size)
                == RD_KAFKA_RESP_ERR_NO_ERROR
         && value != NULL && size == len && memcmp (value, request_id, len) == 0;
}

static void
print_counts (TallyCounts *counts)
{
  gsize n;
  const TallyWordCount *entries = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    printf ("%s %" G_GUINT64_FORMAT "\n", entries[i].word, entries[i].count);
}

/* An empty answer for a window prints no line: say on standard error which range it was,
 * so that "nothing" is not mistaken for a failure (such as `--window last` before any
 * window closed: the range before the first record). */
static void
note_empty_window (const TallySnapshot *merged, gboolean filtered, gboolean last)
{
  g_autoptr (GDateTime) from = NULL;
  g_autoptr (GDateTime) to = NULL;
  g_autofree char *from_text = NULL;
  g_autofree char *to_text = NULL;

  if (merged->window_start_ms == merged->window_end_ms)
    {
      g_printerr ("%s: no counts over time yet: no record has been counted in a window\n",
                  g_get_prgname ());
      return;
    }
  from = g_date_time_new_from_unix_utc (merged->window_start_ms / 1000);
  to = g_date_time_new_from_unix_utc (merged->window_end_ms / 1000);
  if (from != NULL)
    from_text = g_date_time_format_iso8601 (from);
  if (to != NULL)
    to_text = g_date_time_format_iso8601 (to);
  g_printerr ("%s: no word counted in the window from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
              " ms (%s to %s)%s%s\n",
              g_get_prgname (), merged->window_start_ms, merged->window_end_ms,
              from_text != NULL ? from_text : "?", to_text != NULL ? to_text : "?",
              filtered ? " that --prefix and --min-count keep" : "",
              last ? "; `last` is the newest closed window, and a window closes once stream "
                     "time passes its end plus [windows] grace_ms: --window current shows the "
                     "open one"
                   : "");
}

/* The command's clients and what a complete answer must cover. */
typedef struct
{
  TallyConfig *config;
  rd_kafka_t *consumer;
  rd_kafka_t *producer;
  const char *group; /* the consumer's group.id, in errors */
  const rd_kafka_topic_partition_list_t *expected;
  gint64 deadline; /* monotonic, µs */
  gint timeout_ms;
  GHashTable *foreign; /* FOREIGN warnings printed (each names its instance): once each */
} Client;

/* Sends @request and reads replies until the replies to it cover every input partition.
 * While none does, it is sent again after 1, 2, 4 and every 8 s: with the same request id
 * while no instance replied (the record may not have been read: an instance answers an id
 * once, so this costs nothing where it was), with a fresh id once replies came that do
 * not cover everything (an instance answered before it had all its partitions, or the
 * group rebalanced: only a new request gets new answers). Returns: (transfer full)
 * (nullable): the ask whose replies cover everything, or %NULL (error printed, *status
 * set). */
static Ask *
ask_until_covered (Client *c, const TallySnapshotRequest *request, int *status)
{
  g_autoptr (GPtrArray) asks = g_ptr_array_new_with_free_func ((GDestroyNotify)ask_free);
  TallyConfig *config = c->config;
  gint64 deadline = c->deadline, ask_again_at = 0, first_ask_us = 0;
  guint ask_again_ms = FIRST_ASK_AGAIN_MS, sent = 0;
  gint timeout_ms = c->timeout_ms;
  Ask *answered = NULL;
  GError *error = NULL;

  while (answered == NULL)
    {
      gint64 now = g_get_monotonic_time ();
      gint64 left_ms = (deadline - now) / 1000;
      rd_kafka_message_t *message;
      g_autoptr (TallySnapshotPart) part = NULL;
      g_autoptr (GError) part_error = NULL;
      Ask *ask = NULL;

      if (left_ms <= 0 && asks->len == 0)
        {
          g_printerr ("%s: timed out after %d ms before a request could be sent to %s\n",
                      g_get_prgname (), timeout_ms, config->requests.topic);
          *status = TALLY_EXIT_FAILURE;
          return NULL;
        }
      if (left_ms <= 0)
        {
          /* Report the request with the most replies (the first on a tie). */
          Ask *best = g_ptr_array_index (asks, 0);
          rd_kafka_topic_partition_list_t *missing;
          g_autofree char *names = NULL;

          for (guint i = 1; i < asks->len; i++)
            if (((Ask *)g_ptr_array_index (asks, i))->n_snapshots > best->n_snapshots)
              best = g_ptr_array_index (asks, i);
          missing = tally_snapshot_assembler_dup_missing (best->assembler);
          names = describe_partitions (missing);
          if (tally_snapshot_assembler_get_n_incomplete (best->assembler) > 0)
            /* Parts came and others never will: the topic dropped them, or they are late. */
            g_printerr ("%s: timed out after %d ms waiting for request %s on %s: %u "
                        "complete replies, %u with parts missing; input partitions not "
                        "covered: %s; the output topic may not keep a snapshot this large "
                        "(its retention.bytes, or the embedded broker's about 5 MiB per "
                        "partition): ask for less (--top, --min-count, --prefix), raise the "
                        "topic's retention, or use a real broker\n",
                        g_get_prgname (), timeout_ms, best->request->request_id,
                        config->output.topic, best->n_snapshots,
                        tally_snapshot_assembler_get_n_incomplete (best->assembler),
                        missing->cnt > 0 ? names : "none, as no input topic has a partition yet");
          else
            g_printerr ("%s: timed out after %d ms waiting for request %s on %s (%u request(s) "
                        "sent): %u complete replies, %u incomplete; input partitions not "
                        "covered: %s; is a tally run instance (or a client with the plugin) "
                        "consuming them, with requests on %s?\n",
                        g_get_prgname (), timeout_ms, best->request->request_id,
                        config->output.topic, sent, best->n_snapshots,
                        tally_snapshot_assembler_get_n_incomplete (best->assembler),
                        missing->cnt > 0 ? names : "none, as no input topic has a partition yet",
                        config->requests.topic);
          rd_kafka_topic_partition_list_destroy (missing);
          *status = TALLY_EXIT_FAILURE;
          return NULL;
        }
      if (now >= ask_again_at)
        {
          Ask *last = asks->len > 0 ? g_ptr_array_index (asks, asks->len - 1) : NULL;

          if (last != NULL && tally_snapshot_assembler_get_n_incomplete (last->assembler) > 0)
            {
              /* Parts of a reply are arriving (a large snapshot): wait for them rather than
               * make an instance build another. */
              ask_again_at = now + (gint64)ask_again_ms * 1000;
              ask_again_ms = MIN (ask_again_ms * 2, MAX_ASK_AGAIN_MS);
              continue;
            }
          if (last != NULL && last->n_snapshots == 0)
            ask = last; /* nothing came: the same request again */
          else
            {
              ask = g_new0 (Ask, 1);
              ask->request = tally_snapshot_request_copy (request);
              if (last != NULL)
                {
                  g_free (ask->request->request_id);
                  ask->request->request_id = g_uuid_string_random ();
                }
              /* With no input partition yet, only a reply that names none is ours. */
              ask->assembler = tally_snapshot_assembler_new (ask->request->request_id, c->expected);
              g_ptr_array_add (asks, ask);
            }
          sent++;
          /* A note for whoever watches; scripts get the outcome, not the steps. */
          if (sent > 1 && isatty (STDERR_FILENO))
            g_printerr ("%s: no complete answer after %u ms; asking again (request %s)\n",
                        g_get_prgname (), (guint)((now - first_ask_us) / 1000),
                        ask->request->request_id);
          if (!send_request (c->producer, config->requests.topic, ask->request,
                             time_left (deadline), &error))
            {
              g_printerr ("%s: %s\n", g_get_prgname (), error->message);
              g_error_free (error);
              *status = TALLY_EXIT_FAILURE;
              return NULL;
            }
          if (sent == 1)
            first_ask_us = now;
          ask_again_at = g_get_monotonic_time () + (gint64)ask_again_ms * 1000;
          ask_again_ms = MIN (ask_again_ms * 2, MAX_ASK_AGAIN_MS);
          continue;
        }
      message = rd_kafka_consumer_poll (
          c->consumer, (int)MAX (MIN (MIN (left_ms, 200), (ask_again_at - now) / 1000), 1));
      if (message == NULL)
        continue;
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          /* Errors of the consumer come as messages: a fetch refused by the output
           * topic's ACLs, the lookup of the group's coordinator refused. */
          const char *resource = message->rkt != NULL ? rd_kafka_topic_name (message->rkt) : NULL;

          if (message->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
            resource = c->group;
          tally_kafka_errors_check (message->err, CONSUMER_ROLE, resource,
                                    rd_kafka_message_errstr (message));
          if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            g_printerr ("%s: %s\n", g_get_prgname (), rd_kafka_message_errstr (message));
          rd_kafka_message_destroy (message);
          continue;
        }
      part = tally_snapshot_part_decode (message->payload, message->len, &part_error);
      for (guint i = 0; i < asks->len; i++)
        if (is_reply_to (message, ((Ask *)g_ptr_array_index (asks, i))->request->request_id))
          ask = g_ptr_array_index (asks, i);
      if (part == NULL && ask != NULL)
        g_printerr ("%s: warning: a reply to request %s (%s [%" G_GINT32_FORMAT
                    "] offset %" G_GINT64_FORMAT ") cannot be decoded: %s\n",
                    g_get_prgname (), ask->request->request_id, rd_kafka_topic_name (message->rkt),
                    message->partition, (gint64)message->offset, part_error->message);
      rd_kafka_message_destroy (message);
      if (part == NULL || ask == NULL)
        continue; /* not a reply to us; a warning above if it was one that cannot be read */
      if (tally_snapshot_assembler_add_part (ask->assembler, g_steal_pointer (&part), &part_error))
        ask->n_snapshots++;
      else if (g_error_matches (part_error, TALLY_SNAPSHOT_FORMAT_ERROR,
                                TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE))
        {
          g_printerr ("%s: %s\n", g_get_prgname (), part_error->message);
          *status = TALLY_EXIT_FAILURE;
          return NULL;
        }
      else if (g_error_matches (part_error, TALLY_SNAPSHOT_FORMAT_ERROR,
                                TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN))
        {
          /* Once per instance (the message names it), not once per request and round. */
          if (g_hash_table_add (c->foreign, g_strdup (part_error->message)))
            g_printerr ("%s: warning: %s\n", g_get_prgname (), part_error->message);
        }
      else if (part_error != NULL)
        g_printerr ("%s: warning: %s\n", g_get_prgname (), part_error->message);
      if (tally_snapshot_assembler_is_complete (ask->assembler))
        answered = ask;
    }

  {
    guint index;

    g_ptr_array_find (asks, answered, &index);
    return g_ptr_array_steal_index (asks, index);
  }
}

int
tally_cmd_snapshot (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  g_autofree char *bootstrap = NULL;
  g_auto (GStrv) kafka_options = NULL;
  g_autofree char *prefix = NULL;
  g_autofree char *window = NULL;
  TallyWindowSelector selector = { 0 };
  gint64 top = 0, min_count = 0;
  gint timeout_ms = G_MININT; /* not given: [snapshot] timeout_ms */
  gboolean json = FALSE;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Read the configuration from PATH",
      "PATH" },
    { "bootstrap-server", 'b', 0, G_OPTION_ARG_STRING, &bootstrap,
      "Kafka bootstrap servers (overrides [kafka] bootstrap.servers)", "HOST:PORT" },
    { "property", 'X', 0, G_OPTION_ARG_STRING_ARRAY, &kafka_options,
      "Set a librdkafka property, as in [kafka] (wins over the file and TALLY_KAFKA_*; "
      "repeatable)",
      "NAME=VALUE" },
    { "top", 'n', 0, G_OPTION_ARG_INT64, &top,
      "Print only the N most frequent words; 0 (the default) prints all words", "N" },
    /* FILENAME: the bytes as given, so that invalid UTF-8 is reported here, naming the option
     * (a STRING conversion error would not say which option). */
    { "prefix", 'p', 0, G_OPTION_ARG_FILENAME, &prefix, "Only words starting with P (bytes)", "P" },
    { "min-count", 'm', 0, G_OPTION_ARG_INT64, &min_count, "Only words counted at least N times",
      "N" },
    { "window", 'w', 0, G_OPTION_ARG_STRING, &window,
      "Counts over time ([windows]): current, last, a window start in ms, or last:DURATION "
      "(e.g. last:15m)",
      "W" },
    { "json", 'J', 0, G_OPTION_ARG_NONE, &json, "Print the merged snapshot as JSON", NULL },
    { "timeout", 0, 0, G_OPTION_ARG_INT, &timeout_ms,
      "Wait at most MS milliseconds for every reply (default [snapshot] timeout_ms, 10000 "
      "unless configured)",
      "MS" },
    { NULL },
  };
  g_autoptr (GOptionContext) options
      = g_option_context_new ("- request a snapshot and print the merged counts");
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (TallySnapshot) merged = NULL;
  Client client = { 0 };
  ErrorWatch watch = { 0 };
  g_autofree char *group = NULL;
  rd_kafka_topic_partition_list_t *expected = NULL;
  rd_kafka_conf_t *conf, *producer_conf;
  rd_kafka_t *consumer, *producer = NULL;
  char errstr[512];
  gint64 deadline;
  int status = TALLY_EXIT_OK;

  /* Standard output is the counts: every log line (G_MESSAGES_DEBUG=all shows the rounds
   * of a top N) goes to standard error. */
  g_log_writer_default_set_use_stderr (TRUE);
  g_option_context_add_main_entries (options, entries, NULL);
  g_option_context_set_summary (
      options, "Sends a snapshot request to the request topic and waits until the replies of "
               "every Tally\ninstance cover every input partition, then prints `word count` "
               "lines, most frequent first.");
  g_option_context_set_description (
      options, "Exit status:\n"
               "  0   the counts were printed (also when none matched: an empty window is\n"
               "      said on standard error)\n"
               "  1   no complete answer within --timeout, a topic that does not exist, an\n"
               "      error reply (a window not retained, ...); the message says which\n"
               "  2   bad command-line usage\n"
               "  78  a bad configuration, or credentials or ACLs the cluster refuses\n"
               "      (file, group and key, or the topic or group denied, named)\n"
               "\n"
               "Guide: docs/running.md (snapshots, top N across instances, windows).");
  if (!g_option_context_parse (options, &argc, &argv, &error))
    return tally_cmd_usage_error ("%s", error->message);
  if (argc > 1)
    return tally_cmd_usage_error ("unexpected argument '%s'", argv[1]);
  if (top < 0 || min_count < 0)
    return tally_cmd_usage_error ("--%s must be at least 0, not %" G_GINT64_FORMAT,
                                  top < 0 ? "top" : "min-count", top < 0 ? top : min_count);
  if (timeout_ms != G_MININT && timeout_ms < 1)
    return tally_cmd_usage_error ("--timeout must be at least 1 (ms), not %d", timeout_ms);
  if (prefix != NULL && !g_utf8_validate (prefix, -1, NULL))
    return tally_cmd_usage_error ("--prefix must be valid UTF-8 text");
  if (window != NULL && !tally_window_selector_parse (window, &selector, &error))
    return tally_cmd_usage_error ("--window: %s", error->message);

  config = tally_cmd_load_config (config_path);
  if (config == NULL)
    return TALLY_EXIT_CONFIG;
  if (!tally_cmd_apply_kafka_options (config, kafka_options))
    return TALLY_EXIT_USAGE;
  if (!tally_cmd_check_clients (config))
    return TALLY_EXIT_CONFIG;
  if (timeout_ms == G_MININT)
    timeout_ms = (gint)config->snapshot.timeout_ms;
  /* --timeout bounds the whole command, metadata and positions included. */
  deadline = g_get_monotonic_time () + (gint64)timeout_ms * 1000;
  if (bootstrap == NULL && !config->kafka.has_bootstrap)
    {
      g_printerr ("%s: no Kafka cluster: pass --bootstrap-server HOST:PORT (tally run and "
                  "tally broker print the embedded broker's address) or set [kafka] "
                  "bootstrap.servers\n",
                  g_get_prgname ());
      return TALLY_EXIT_USAGE;
    }

  /* Configure: the [kafka] properties, then ours. */
  conf = rd_kafka_conf_new ();
  if (!tally_config_apply_kafka (config, conf, &error))
    {
      rd_kafka_conf_destroy (conf);
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_CONFIG;
    }
  if (bootstrap != NULL
      && rd_kafka_conf_set (conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr)
             != RD_KAFKA_CONF_OK)
    {
      rd_kafka_conf_destroy (conf);
      g_printerr ("%s: --bootstrap-server: %s\n", g_get_prgname (), errstr);
      return TALLY_EXIT_USAGE;
    }
  rd_kafka_conf_set_log_cb (conf, log_cb);
  /* Bad credentials, an untrusted broker certificate or a missing ACL are not retried until
   * the timeout: the first one ends the command with exit status 78, naming what to check. */
  tally_kafka_errors_set_fatal_func (on_kafka_config_error, NULL);
  rd_kafka_conf_set_error_cb (conf, error_cb);
  producer_conf = rd_kafka_conf_dup (conf);
  rd_kafka_conf_set_opaque (conf, (gpointer)CONSUMER_ROLE);
  rd_kafka_conf_set_opaque (producer_conf, (gpointer)PRODUCER_ROLE);
  rd_kafka_conf_set_dr_msg_cb (producer_conf, delivery_cb);
  /* A request is one small record: nothing to batch it with. */
  set_if_default (producer_conf, "linger.ms", "0");
  /* The request topic is `tally run`'s to create (with its partitions and configuration):
   * a producer's metadata request would otherwise have a broker with
   * auto.create.topics.enable create it with the broker's defaults. */
  set_if_default (producer_conf, "allow.auto.create.topics", "false");
  /* The reply is awaited by a person: fetch often rather than wait out the broker's long
   * poll where it does not end early (librdkafka's mock cluster). */
  set_if_default (conf, "fetch.wait.max.ms", "10");
  set_if_default (conf, "fetch.error.backoff.ms", "10");
  /* A consumer needs a group.id, but it only assigns; nothing is joined or committed. Its
   * coordinator is looked up all the same: Describe on groups prefixed tally-. */
  group = g_strdup_printf ("tally-snapshot-%08x", g_random_int ());
  rd_kafka_conf_set (conf, "group.id", group, NULL, 0);
  rd_kafka_conf_set (conf, "enable.auto.commit", "false", NULL, 0);

  /* Create the consumer (takes conf on success). */
  consumer = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (consumer == NULL)
    {
      rd_kafka_conf_destroy (conf);
      rd_kafka_conf_destroy (producer_conf);
      g_printerr ("%s: cannot create a consumer: %s\n", g_get_prgname (), errstr);
      return TALLY_EXIT_FAILURE;
    }

  /* Create the producer (takes producer_conf on success). */
  producer = rd_kafka_new (RD_KAFKA_PRODUCER, producer_conf, errstr, sizeof errstr);
  if (producer == NULL)
    {
      rd_kafka_conf_destroy (producer_conf);
      g_printerr ("%s: cannot create a producer: %s\n", g_get_prgname (), errstr);
      status = TALLY_EXIT_FAILURE;
      goto out;
    }

  /* From here until the clients close, a thread serves their errors (ErrorWatch). */
  watch.consumer = consumer;
  watch.producer = producer;
  watch.thread = g_thread_new ("tally-snapshot-errors", error_watch_run, &watch);

  /* Learn what must be covered, take positions, then ask. */
  expected = input_partitions (consumer, config->input.topics, time_left (deadline), &error);
  if (expected == NULL
      || !warm_producer (producer, config->requests.topic, time_left (deadline), &error)
      || !assign_at_end (consumer, config->output.topic, time_left (deadline), &error))
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      status = TALLY_EXIT_FAILURE;
      goto out;
    }
  if (expected->cnt == 0)
    g_printerr ("%s: warning: no partition of the input topics exists yet; taking the first "
                "complete reply that names no partition\n",
                g_get_prgname ());

  /* Use: one round (a plain snapshot), or the rounds of an exact top N (tally-top-query.h). */
  client.config = config;
  client.consumer = consumer;
  client.producer = producer;
  client.group = group;
  client.expected = expected;
  client.foreign = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  client.deadline = deadline;
  client.timeout_ms = timeout_ms;
  if (top == 0 && min_count == 0)
    {
      g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new (NULL);
      Ask *answered;

      request->prefix = prefix != NULL && *prefix != '\0' ? g_strdup (prefix) : NULL;
      request->has_window = window != NULL;
      request->window = selector;
      answered = ask_until_covered (&client, request, &status);
      if (answered == NULL)
        goto out;
      merged = tally_snapshot_assembler_dup_merged (answered->assembler);
      ask_free (answered);
    }
  else
    {
      g_autoptr (TallyTopQuery) query
          = tally_top_query_new ((guint64)top, (guint64)min_count, prefix);
      gboolean done = FALSE;

      while (!done)
        {
          g_autoptr (TallySnapshotRequest) request = tally_top_query_next_request (query);
          g_autoptr (GPtrArray) replies
              = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_counts_unref);
          TallySnapshot *snapshot;
          Ask *answered;

          request->has_window = window != NULL;
          request->window = selector;
          answered = ask_until_covered (&client, request, &status);
          if (answered == NULL)
            goto out;
          while ((snapshot = tally_snapshot_assembler_take_snapshot (answered->assembler)) != NULL)
            {
              if (snapshot->error == NULL && snapshot->counts != NULL)
                g_ptr_array_add (replies, tally_counts_ref (snapshot->counts));
              tally_snapshot_free (snapshot);
            }
          g_clear_pointer (&merged, tally_snapshot_free);
          merged = tally_snapshot_assembler_dup_merged (answered->assembler);
          ask_free (answered);
          if (replies->len == 0)
            {
              g_printerr ("%s: no reply with counts to request %s\n", g_get_prgname (),
                          request->request_id);
              status = TALLY_EXIT_FAILURE;
              goto out;
            }
          done = tally_top_query_add_replies (query, (TallyCounts *const *)replies->pdata,
                                              replies->len);
        }
      g_debug ("top %" G_GINT64_FORMAT ", min_count %" G_GINT64_FORMAT ": %u round(s), "
               "threshold %" G_GUINT64_FORMAT ", %" G_GSIZE_FORMAT " candidate(s)",
               top, min_count, tally_top_query_get_rounds (query),
               tally_top_query_get_threshold (query), tally_top_query_get_n_candidates (query));
      tally_counts_unref (merged->counts);
      merged->counts = tally_counts_ref (tally_top_query_get_result (query));
    }
  {
    TallyCountsOptions filters = { (guint64)top, prefix, (guint64)min_count };
    TallyCounts *filtered = tally_counts_filter (merged->counts, &filters);

    tally_counts_unref (merged->counts);
    merged->counts = filtered;
    merged->top = (guint64)top;
    merged->min_count = (guint64)min_count;
  }
  if (json)
    {
      /* Streamed: the text of millions of words is never held whole. */
      g_autoptr (GOutputStream) out = g_unix_output_stream_new (STDOUT_FILENO, FALSE);
      g_autoptr (GError) write_error = NULL;

      fflush (stdout);
      if (!tally_snapshot_write_json (merged, TRUE, out, &write_error)
          || !g_output_stream_write_all (out, "\n", 1, NULL, NULL, &write_error))
        {
          g_printerr ("%s: could not write the counts: %s\n", g_get_prgname (),
                      write_error->message);
          status = TALLY_EXIT_FAILURE;
        }
    }
  else
    {
      print_counts (merged->counts);
      if (merged->windowed && tally_counts_get_n_words (merged->counts) == 0)
        note_empty_window (merged, (prefix != NULL && *prefix != '\0') || min_count > 0,
                           selector.kind == TALLY_WINDOW_SELECT_LAST);
      else if (tally_counts_get_n_words (merged->counts) == 0 && prefix != NULL
               && config->tokenizer.mode != TALLY_CONFIG_TOKENIZER_RECORD)
        {
          /* Words are counted folded: a prefix with capitals matches none. */
          g_autofree char *folded = config->tokenizer.mode == TALLY_CONFIG_TOKENIZER_UNICODE
                                        ? g_utf8_casefold (prefix, -1)
                                        : g_ascii_strdown (prefix, -1);

          if (strcmp (folded, prefix) != 0)
            g_printerr ("%s: no word starts with '%s': words are counted case-folded "
                        "([tokenizer] mode); try --prefix '%s'\n",
                        g_get_prgname (), prefix, folded);
        }
    }
  if (fflush (stdout) != 0 || ferror (stdout))
    {
      g_printerr ("%s: could not write the counts: %s\n", g_get_prgname (), g_strerror (errno));
      status = TALLY_EXIT_FAILURE;
    }

out:
  /* Close, destroy. */
  error_watch_stop (&watch);
  rd_kafka_consumer_close (consumer);
  rd_kafka_destroy (consumer);
  if (producer != NULL)
    rd_kafka_destroy (producer);
  if (expected != NULL)
    rd_kafka_topic_partition_list_destroy (expected);
  g_clear_pointer (&client.foreign, g_hash_table_unref);
  return status;
}
