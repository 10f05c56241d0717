/* test-publisher.c — the publisher actor and the request reader against the embedded broker,
 * inside the test process: snapshots published, read back with a plain librdkafka
 * consumer and reassembled exactly; delivery failures injected with
 * rd_kafka_mock_push_request_errors(); good and bad requests read from the request topic.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-publisher.h"
#include "tally-request-reader.h"
#include "tally-snapshot-assembler.h"
#include "tally-test-util.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

/* The Kafka protocol's ApiKey of Produce requests (the Kafka protocol guide). */
#define KAFKA_API_PRODUCE 0

/* The longest any single wait for the broker may take before the test fails. */
#define WAIT_MS 30000

G_DEFINE_AUTOPTR_CLEANUP_FUNC (rd_kafka_topic_partition_list_t,
                               rd_kafka_topic_partition_list_destroy)

/* ---------------------------------------------------------------------------------------
 * Warnings are part of what is tested: collect Tally's, instead of aborting on them as the
 * default writer does under g_test_init().
 * ------------------------------------------------------------------------------------- */

static GMutex warnings_lock;
static GPtrArray *warnings;

static GLogWriterOutput
test_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if (level & G_LOG_LEVEL_WARNING)
    {
      const char *message = NULL;

      for (gsize i = 0; i < n_fields; i++)
        if (strcmp (fields[i].key, "MESSAGE") == 0)
          message = fields[i].value;
      g_mutex_lock (&warnings_lock);
      g_ptr_array_add (warnings, g_strdup (message));
      g_mutex_unlock (&warnings_lock);
      g_printerr ("# warning: %s\n", message);
      return G_LOG_WRITER_HANDLED;
    }
  return g_log_writer_default (level, fields, n_fields, user_data);
}

/* Counts the warnings that contain @needle, and forgets them all. */
static guint
take_warnings (const char *needle)
{
  guint n = 0;

  g_mutex_lock (&warnings_lock);
  for (guint i = 0; i < warnings->len; i++)
    if (strstr (g_ptr_array_index (warnings, i), needle) != NULL)
      n++;
  g_ptr_array_set_size (warnings, 0);
  g_mutex_unlock (&warnings_lock);
  return n;
}

/* ---------------------------------------------------------------------------------------
 * Fixture: a broker, a publisher on its own arbiter
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyBroker *broker;
  TallyArbiter *arbiter;
  TallyAddress *publisher;
  char *instance_id;
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gsize max_record_bytes = GPOINTER_TO_SIZE (data);
  TallyActor *actor;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  g_assert_true (tally_broker_create_topic (f->broker, "snapshots", 3, &error));
  g_assert_true (tally_broker_create_topic (f->broker, "requests", 2, &error));
  g_assert_no_error (error);

  actor = tally_publisher_new (tally_test_broker_conf (f->broker), "snapshots", max_record_bytes,
                               &error);
  g_assert_no_error (error);
  f->instance_id = g_strdup (tally_publisher_get_instance_id (TALLY_PUBLISHER (actor)));
  f->arbiter = tally_arbiter_new ("test-publisher");
  f->publisher = tally_actor_start (actor, f->arbiter, 8);
  take_warnings ("");
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  tally_address_stop (f->publisher);
  g_assert_true (tally_address_wait_stopped (f->publisher, WAIT_MS));
  tally_address_unref (f->publisher);
  tally_arbiter_stop (f->arbiter);
  tally_arbiter_unref (f->arbiter);
  tally_broker_free (f->broker);
  g_free (f->instance_id);
}

/* "word0000" .. with counts 1 + i % 97. */
static TallyCounts *
make_counts (guint n)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  for (guint i = 0; i < n; i++)
    {
      char word[32];
      int len = g_snprintf (word, sizeof word, "word%04u", i);

      tally_counts_builder_add (builder, word, (gsize)len, 1 + i % 97);
    }
  return tally_counts_builder_end (builder);
}

static rd_kafka_topic_partition_list_t *
input_partitions (int n, gboolean with_offsets)
{
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (n);

  for (int p = 0; p < n; p++)
    rd_kafka_topic_partition_list_add (list, "input", p)->offset
        = with_offsets ? 1000 + p : RD_KAFKA_OFFSET_INVALID;
  return list;
}

static const char *
header (rd_kafka_message_t *message, const char *name, char *buf, gsize size)
{
  rd_kafka_headers_t *headers = NULL;
  const void *value;
  size_t len;

  g_assert_cmpint (rd_kafka_message_headers (message, &headers), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_header_get_last (headers, name, &value, &len), ==,
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpuint (len, <, size);
  memcpy (buf, value, len);
  buf[len] = '\0';
  return buf;
}

/* Reads the snapshot topic from the beginning with a plain consumer (no group) until
 * @assembler has a complete snapshot of @snapshot_id, checking every record's key and
 * headers against its value. */
static TallySnapshot *
read_back (Fixture *f, const char *snapshot_id, const char *request_id, guint parts)
{
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (request_id, NULL);
  g_autoptr (rd_kafka_topic_partition_list_t) assignment = rd_kafka_topic_partition_list_new (3);
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  TallySnapshot *snapshot = NULL;
  guint records = 0;
  rd_kafka_t *consumer;
  char errstr[256];

  /* Configure, create, assign. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "group.id", "test-reader", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_OK);
  consumer = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  g_assert_nonnull (consumer);
  for (int p = 0; p < 3; p++)
    rd_kafka_topic_partition_list_add (assignment, "snapshots", p)->offset
        = RD_KAFKA_OFFSET_BEGINNING;
  g_assert_cmpint (rd_kafka_assign (consumer, assignment), ==, RD_KAFKA_RESP_ERR_NO_ERROR);

  /* Use. */
  while (snapshot == NULL)
    {
      rd_kafka_message_t *message = rd_kafka_consumer_poll (consumer, 100);
      g_autoptr (GError) error = NULL;
      TallySnapshotPart *part;
      char buf[512];

      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (message == NULL)
        continue;
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          g_printerr ("# consumer: %s\n", rd_kafka_message_errstr (message));
          rd_kafka_message_destroy (message);
          continue;
        }
      part = tally_snapshot_part_decode (message->payload, message->len, &error);
      g_assert_no_error (error);
      if (strcmp (tally_snapshot_part_get_snapshot_id (part), snapshot_id) == 0)
        {
          records++;
          g_assert_cmpmem (message->key, message->key_len, snapshot_id, strlen (snapshot_id));
          g_assert_cmpstr (header (message, "tally.snapshot.id", buf, sizeof buf), ==, snapshot_id);
          g_assert_cmpstr (header (message, "tally.request.id", buf, sizeof buf), ==, request_id);
          g_assert_cmpuint (
              g_ascii_strtoull (header (message, "tally.part", buf, sizeof buf), NULL, 10), ==,
              tally_snapshot_part_get_part (part));
          g_assert_cmpuint (
              g_ascii_strtoull (header (message, "tally.parts", buf, sizeof buf), NULL, 10), ==,
              parts);
        }
      /* An error snapshot is reported as such, and can be taken like the others. */
      if (!tally_snapshot_assembler_add_part (assembler, part, &error) && error != NULL)
        g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE);
      snapshot = tally_snapshot_assembler_take_snapshot (assembler);
      if (snapshot != NULL && strcmp (snapshot->snapshot_id, snapshot_id) != 0)
        g_clear_pointer (&snapshot, tally_snapshot_free);
      rd_kafka_message_destroy (message);
    }
  g_assert_cmpuint (records, ==, parts);

  /* Close, destroy. */
  rd_kafka_consumer_close (consumer);
  rd_kafka_destroy (consumer);
  return snapshot;
}

/* ---------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------- */

static void
test_publish_read_back (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyCounts) counts = make_counts (3000);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-A");
  rd_kafka_topic_partition_list_t *offsets;
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;

  /* Partition 2 was never read: its offset is left out, its ownership is not. */
  offsets = input_partitions (3, TRUE);
  offsets->elems[2].offset = RD_KAFKA_OFFSET_INVALID;
  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), offsets,
                                         input_partitions (3, FALSE), 12, WAIT_MS, &error);
  g_assert_no_error (error);
  /* 3000 entries of about 16 bytes do not fit in fewer than 12 records of 4 KiB. */
  g_assert_cmpuint (report->parts, >=, 12);
  g_assert_cmpuint (report->delivered, ==, report->parts);
  g_assert_cmpuint (report->retries, ==, 0);
  g_assert_true (g_uuid_string_is_valid (report->snapshot_id));

  back = read_back (f, report->snapshot_id, "req-A", report->parts);
  g_assert_cmpstr (back->request_id, ==, "req-A");
  g_assert_cmpstr (back->instance_id, ==, f->instance_id);
  g_assert_cmpint (back->taken_ms, ==, 12);
  g_assert_cmpuint (back->total_words, ==, tally_counts_get_total (counts));
  g_assert_cmpuint (back->distinct_words, ==, 3000);
  g_assert_null (back->error);
  g_assert_cmpint (back->offsets->cnt, ==, 2);
  g_assert_cmpstr (back->offsets->elems[1].topic, ==, "input");
  g_assert_cmpint (back->offsets->elems[1].partition, ==, 1);
  g_assert_cmpint (back->offsets->elems[1].offset, ==, 1001);
  g_assert_cmpint (back->partitions->cnt, ==, 3);
  g_assert_cmpint (back->partitions->elems[2].partition, ==, 2);
  tally_test_assert_counts_equal (back->counts, counts);
  g_assert_cmpuint (take_warnings (""), ==, 0);
}

static void
test_publish_full_records (Fixture *f, gconstpointer data)
{
  /* With [output] max_record_bytes at librdkafka's message.max.bytes (both 1000000 by
   * default), parts are cut small enough that value, key and headers together still fit. */
  g_autoptr (TallyCounts) counts = make_counts (120000);
  g_autofree char *long_id = g_strnfill (300, 'r');
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new (long_id);
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;

  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), NULL,
                                         NULL, 0, WAIT_MS, &error);
  g_assert_no_error (error);
  /* 120,000 entries of about 17 bytes: 2 MB of JSON in 3 records. */
  g_assert_cmpuint (report->parts, ==, 3);
  g_assert_cmpuint (report->retries, ==, 0);
  back = read_back (f, report->snapshot_id, long_id, report->parts);
  tally_test_assert_counts_equal (back->counts, counts);
}

static void
test_publish_filtered (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyCounts) counts = make_counts (3000);
  g_autoptr (TallySnapshotRequest) request = NULL;
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;
  const char *value = "{\"top\":5,\"prefix\":\"word1\",\"min_count\":90}";
  const TallyWordCount *e;
  gsize n;

  request = tally_snapshot_request_parse ("req-F", 5, value, strlen (value), -1);
  g_assert_no_error (request->error);
  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), NULL,
                                         NULL, 1, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);
  back = read_back (f, report->snapshot_id, "req-F", 1);
  /* Totals describe all the counts; entries only what passed the filters. */
  g_assert_cmpuint (back->distinct_words, ==, 3000);
  g_assert_cmpuint (back->top, ==, 5);
  g_assert_cmpstr (back->prefix, ==, "word1");
  g_assert_cmpuint (back->min_count, ==, 90);
  /* Count 97 is word0096, word0193, ...; of those starting with "word1": word1066 (1066 %
   * 97 = 96), word1163, word1260, ... the five smallest by bytes win the tie. */
  e = tally_counts_get_entries (back->counts, &n);
  g_assert_cmpuint (n, ==, 5);
  g_assert_cmpstr (e[0].word, ==, "word1066");
  g_assert_cmpuint (e[0].count, ==, 97);
  g_assert_cmpstr (e[1].word, ==, "word1163");
  g_assert_cmpstr (e[4].word, ==, "word1454");
  g_assert_cmpuint (e[4].count, ==, 97);
}

static void
test_publish_error_snapshot (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySnapshotRequest) request = NULL;
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySnapshotAssembler) assembler = NULL;

  request = tally_snapshot_request_parse ("req-bad", 7, "{\"top\":-3}", 10, -1);
  g_assert_nonnull (request->error);
  report = tally_publisher_publish_sync (f->publisher, request, NULL, NULL,
                                         input_partitions (2, FALSE), 0, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);
  back = read_back (f, report->snapshot_id, "req-bad", 1);
  g_assert_cmpstr (back->error, ==, "request value: member \"top\" must not be negative (-3)");
  g_assert_null (back->counts);
}

static void
test_delivery_retried (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyCounts) counts = make_counts (10);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-R");
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;

  /* The next two Produce requests fail with a non-retriable error: librdkafka gives up on
   * the record at once, and the publisher produces it again, twice. */
  rd_kafka_mock_push_request_errors (tally_broker_get_mock_cluster (f->broker), KAFKA_API_PRODUCE,
                                     2, RD_KAFKA_RESP_ERR_INVALID_RECORD,
                                     RD_KAFKA_RESP_ERR_INVALID_RECORD);
  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), NULL,
                                         NULL, 0, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);
  g_assert_cmpuint (report->delivered, ==, 1);
  g_assert_cmpuint (report->retries, ==, 2);
  back = read_back (f, report->snapshot_id, "req-R", 1);
  tally_test_assert_counts_equal (back->counts, counts);
}

static void
test_delivery_failed (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyCounts) counts = make_counts (10);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-X");
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (GError) error = NULL;
  rd_kafka_resp_err_t errors[TALLY_PUBLISHER_MAX_RETRIES + 1];

  /* One more failure than there are retries: the part is given up and logged. */
  for (guint i = 0; i < G_N_ELEMENTS (errors); i++)
    errors[i] = RD_KAFKA_RESP_ERR_INVALID_RECORD;
  rd_kafka_mock_push_request_errors_array (tally_broker_get_mock_cluster (f->broker),
                                           KAFKA_API_PRODUCE, G_N_ELEMENTS (errors), errors);
  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), NULL,
                                         NULL, 0, WAIT_MS, &error);
  g_assert_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_DELIVERY);
  g_assert_null (report);
  g_assert_true (g_str_has_prefix (error->message, "1 of 1 parts of snapshot "));
  g_assert_true (g_str_has_suffix (error->message,
                                   " (request req-X) were not delivered to "
                                   "snapshots: Broker: Broker failed to validate record"));
  g_assert_cmpuint (take_warnings ("not delivered"), ==, 2); /* the part, then the snapshot */

  /* The publisher is still usable. */
  g_clear_error (&error);
  report = tally_publisher_publish_sync (f->publisher, request, tally_counts_ref (counts), NULL,
                                         NULL, 0, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->retries, ==, 0);
}

/* A supervised publisher whose producer hits a fatal error (the broker answers with an
 * out-of-order sequence, which the idempotent producer cannot recover from, KIP-98) fails
 * that Publish with TALLY_PUBLISHER_ERROR_FATAL and is replaced behind the same address:
 * the next Publish goes through a new producer with a new instance id. */
static void
test_supervised_restart (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyBroker) broker = NULL;
  g_autoptr (TallySupervisor) supervisor = tally_supervisor_new (NULL, 3, 60000);
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("test-publisher");
  g_autoptr (TallyCounts) counts = make_counts (10);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-F");
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallyAddress) publisher = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  g_autofree char *first_id = NULL;

  broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  g_assert_true (tally_broker_create_topic (broker, "snapshots", 1, &error));
  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      tally_broker_get_bootstrap_servers (broker), NULL, 0),
                   ==, RD_KAFKA_CONF_OK);
  publisher = tally_publisher_start_supervised (supervisor, conf, "snapshots", 1000000, 0, 5000,
                                                arbiter, 8, &error);
  g_assert_no_error (error);
  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_no_error (error);
  first_id = g_strdup (report->snapshot_id);
  g_clear_pointer (&report, tally_publish_report_free);

  rd_kafka_mock_push_request_errors (tally_broker_get_mock_cluster (broker), KAFKA_API_PRODUCE, 1,
                                     RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_null (report);
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 0);

  /* The producer is fatally broken now: this Publish fails the actor, and it restarts. */
  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_error (error, TALLY_PUBLISHER_ERROR, TALLY_PUBLISHER_ERROR_FATAL);
  g_assert_null (report);
  g_clear_error (&error);
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 1);

  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);
  g_assert_cmpuint (report->delivered, ==, 1);
  g_assert_false (tally_supervisor_is_escalated (supervisor));
  take_warnings ("");

  tally_address_stop (publisher);
  g_assert_true (tally_address_wait_stopped (publisher, WAIT_MS));
  tally_arbiter_stop (arbiter);
}

/* A snapshot larger than what the output topic keeps per partition (max_snapshot_bytes,
 * the embedded broker's 5 MiB in `tally run`) is not published: the reply is an error
 * snapshot naming that limit, the publisher's log says so, and a smaller answer (a top N)
 * still goes out. */
static void
test_output_topic_limit (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyBroker) broker = NULL;
  g_autoptr (TallySupervisor) supervisor = tally_supervisor_new (NULL, 3, 60000);
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("test-publisher");
  g_autoptr (TallyCounts) counts = make_counts (2000);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-L");
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallyAddress) publisher = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();

  broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  g_assert_true (tally_broker_create_topic (broker, "snapshots", 1, &error));
  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      tally_broker_get_bootstrap_servers (broker), NULL, 0),
                   ==, RD_KAFKA_CONF_OK);
  publisher = tally_publisher_start_supervised (supervisor, conf, "snapshots", 4000, 10000, 5000,
                                                arbiter, 8, &error);
  g_assert_no_error (error);
  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_null (report);
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE);
  g_assert_nonnull (strstr (error->message, "2000 distinct words"));
  g_assert_nonnull (strstr (error->message,
                            "larger than what output topic snapshots keeps per partition "
                            "(10000 bytes: the embedded broker"));
  g_assert_cmpuint (take_warnings ("publisher: the snapshot (2000 distinct words"), ==, 1);
  g_clear_error (&error);

  request->top = 10;
  report = tally_publisher_publish_sync (publisher, request, tally_counts_ref (counts), NULL, NULL,
                                         0, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);

  tally_address_stop (publisher);
  g_assert_true (tally_address_wait_stopped (publisher, WAIT_MS));
  tally_arbiter_stop (arbiter);
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

static void
test_publish_async (Fixture *f, gconstpointer data)
{
  /* From a thread with its own main loop, as an actor (the source) calls it. */
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-async");
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  g_main_context_push_thread_default (context);
  tally_publisher_publish_async (f->publisher, request, make_counts (5), NULL, NULL, 3, NULL,
                                 store_result, &result);
  while (result == NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (context, TRUE);
    }
  g_main_context_pop_thread_default (context);

  report = tally_publisher_publish_finish (f->publisher, result, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->parts, ==, 1);
  g_assert_cmpuint (report->delivered, ==, 1);
  back = read_back (f, report->snapshot_id, "req-async", 1);
  g_assert_cmpuint (tally_counts_get_n_words (back->counts), ==, 5);
  g_assert_cmpuint (back->total_words, ==, 1 + 2 + 3 + 4 + 5);
}

static void
test_stop_while_retrying (Fixture *f, gconstpointer data)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyCounts) counts = make_counts (20);
  g_autoptr (TallySnapshotRequest) request = tally_snapshot_request_new ("req-stop");
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (TallyPublishReport) report = NULL;
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  /* The first delivery fails, and the actor is asked to stop right after the Publish:
   * whether the failure arrives before or during the stop's flush, the part is produced
   * again once and delivered before the producer is destroyed. */
  rd_kafka_mock_push_request_errors (tally_broker_get_mock_cluster (f->broker), KAFKA_API_PRODUCE,
                                     1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  g_main_context_push_thread_default (context);
  tally_publisher_publish_async (f->publisher, request, tally_counts_ref (counts), NULL, NULL, 0,
                                 NULL, store_result, &result);
  tally_address_stop (f->publisher);
  while (result == NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (context, TRUE);
    }
  g_main_context_pop_thread_default (context);

  report = tally_publisher_publish_finish (f->publisher, result, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (report->delivered, ==, 1);
  g_assert_cmpuint (report->retries, ==, 1);
  g_assert_true (tally_address_wait_stopped (f->publisher, WAIT_MS));
  back = read_back (f, report->snapshot_id, "req-stop", 1);
  tally_test_assert_counts_equal (back->counts, counts);
}

/* ---------------------------------------------------------------------------------------
 * The request reader
 * ------------------------------------------------------------------------------------- */

static void
on_request (const TallySnapshotRequest *request, gpointer user_data)
{
  g_ptr_array_add (user_data, tally_snapshot_request_copy (request));
}

static void
produce_request (rd_kafka_t *producer, const char *key, const char *value)
{
  rd_kafka_resp_err_t err;

  err = rd_kafka_producev (producer, RD_KAFKA_V_TOPIC ("requests"), RD_KAFKA_V_PARTITION (0),
                           RD_KAFKA_V_KEY (key, (key != NULL ? strlen (key) : 0)),
                           RD_KAFKA_V_VALUE ((void *)value, (value != NULL ? strlen (value) : 0)),
                           RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  g_assert_cmpint (err, ==, RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void
test_request_reader (Fixture *f, gconstpointer data)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GPtrArray) seen
      = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_snapshot_request_free);
  g_autoptr (TallyRequestReader) reader = NULL;
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  char errstr[256];
  rd_kafka_t *producer
      = rd_kafka_new (RD_KAFKA_PRODUCER, tally_test_broker_conf (f->broker), errstr, sizeof errstr);
  TallySnapshotRequest *r;

  g_assert_nonnull (producer);
  /* Sent before the reader starts: not for it. */
  produce_request (producer, "old", NULL);
  g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);

  reader = tally_request_reader_new (tally_test_broker_conf (f->broker), "requests", -1, context,
                                     on_request, g_ptr_array_ref (seen),
                                     (GDestroyNotify)g_ptr_array_unref, WAIT_MS, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_request_reader_get_n_partitions (reader), ==, 2);

  produce_request (producer, "good-1", "{\"top\":5,\"prefix\":\"ka\"}");
  produce_request (producer, "bad-1", "{nope");
  produce_request (producer, "empty-1", NULL);
  produce_request (producer, "bad-2", "{\"top\":1,\"colour\":\"red\"}");
  g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);

  while (seen->len < 4)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (context, TRUE);
    }

  r = g_ptr_array_index (seen, 0);
  g_assert_cmpstr (r->request_id, ==, "good-1");
  g_assert_no_error (r->error);
  g_assert_cmpuint (r->top, ==, 5);
  g_assert_cmpstr (r->prefix, ==, "ka");
  g_assert_cmpuint (r->min_count, ==, 0);
  g_assert_cmpint (r->requested_at_ms, >, 0);

  r = g_ptr_array_index (seen, 1);
  g_assert_cmpstr (r->request_id, ==, "bad-1");
  g_assert_error (r->error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
  g_assert_true (g_str_has_prefix (r->error->message, "request value: not JSON: "));

  r = g_ptr_array_index (seen, 2);
  g_assert_cmpstr (r->request_id, ==, "empty-1");
  g_assert_no_error (r->error);
  g_assert_cmpuint (r->top, ==, 0);
  g_assert_null (r->prefix);

  r = g_ptr_array_index (seen, 3);
  g_assert_cmpstr (r->request_id, ==, "bad-2");
  g_assert_error (r->error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
  g_assert_cmpstr (
      r->error->message, ==,
      "request value: unknown member \"colour\" (known: top, prefix, min_count, window, words)");

  /* Both bad ones were logged with their ids. */
  g_assert_cmpuint (take_warnings ("request reader: bad request bad-"), ==, 2);
  g_assert_cmpuint (seen->len, ==, 4);

  g_clear_pointer (&reader, tally_request_reader_free);
  rd_kafka_destroy (producer);
}

/* ---------------------------------------------------------------------------------------
 * The embedded broker's fixed port
 * ------------------------------------------------------------------------------------- */

static guint
free_port (void)
{
  g_autoptr (GSocket) socket
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;

  g_assert_true (g_socket_bind (socket, any, TRUE, NULL));
  bound = g_socket_get_local_address (socket, NULL);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
test_broker_fixed_port (void)
{
  guint port = free_port ();
  g_autofree char *expected = g_strdup_printf ("127.0.0.1:%u", port);
  g_autoptr (TallyBroker) broker = NULL;
  g_autoptr (TallyBroker) second = NULL;
  g_autoptr (GError) error = NULL;
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[256];
  rd_kafka_t *producer;
  rd_kafka_resp_err_t err;

  broker = tally_broker_new (port, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (tally_broker_get_bootstrap_servers (broker), ==, expected);
  g_assert_true (tally_broker_create_topic (broker, "fixed", 2, &error));
  /* Creating it again is not an error. */
  g_assert_true (tally_broker_create_topic (broker, "fixed", 2, &error));
  g_assert_no_error (error);

  /* A client bootstraps through the relay, then produces to the advertised broker. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers", expected, NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  producer = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  g_assert_nonnull (producer);
  err = rd_kafka_metadata (producer, 1, NULL, &metadata, WAIT_MS);
  g_assert_cmpint (err, ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (metadata->broker_cnt, ==, 1);
  g_assert_cmpstr (metadata->brokers[0].host, ==, "127.0.0.1");
  for (int t = 0; t < metadata->topic_cnt; t++)
    if (strcmp (metadata->topics[t].topic, "fixed") == 0)
      g_assert_cmpint (metadata->topics[t].partition_cnt, ==, 2);
  rd_kafka_metadata_destroy (metadata);
  err = rd_kafka_producev (producer, RD_KAFKA_V_TOPIC ("fixed"), RD_KAFKA_V_PARTITION (1),
                           RD_KAFKA_V_VALUE ("hello", 5), RD_KAFKA_V_END);
  g_assert_cmpint (err, ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);

  /* The port is taken now. */
  second = tally_broker_new (port, 1, &error);
  g_assert_null (second);
  g_assert_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_PORT);
}

/* ---------------------------------------------------------------------------------------
 * The commands: `tally broker` and `tally snapshot` as separate processes
 * ------------------------------------------------------------------------------------- */

static void
store_subprocess_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

/* Two in-process "instances" answer every request: A owns input partitions 0 and 1, B owns
 * 2 and 3 (B only when @with_b), each with its own publisher. */
typedef struct
{
  Fixture *f;
  TallyAddress *second;
  gboolean with_b;
  gboolean bad_reply; /* also produce an undecodable reply naming the request */
  char *request_id;   /* of the request answered */
  guint answered;
} Instances;

/* Produces a reply to @request_id that is not a snapshot part to partition 0 of
 * `snapshots`: key and tally.request.id header name the request. */
static void
produce_bad_reply (Fixture *f, const char *request_id)
{
  static const char value[] = "{\"snapshot_id\":1}";
  char errstr[256];
  rd_kafka_t *producer
      = rd_kafka_new (RD_KAFKA_PRODUCER, tally_test_broker_conf (f->broker), errstr, sizeof errstr);
  rd_kafka_headers_t *headers = rd_kafka_headers_new (1);

  g_assert_nonnull (producer);
  rd_kafka_header_add (headers, TALLY_SNAPSHOT_HEADER_REQUEST_ID, -1, request_id, -1);
  g_assert_cmpint (
      rd_kafka_producev (
          producer, RD_KAFKA_V_TOPIC ("snapshots"), RD_KAFKA_V_PARTITION (0),
          RD_KAFKA_V_KEY ("not-the-request", 15), RD_KAFKA_V_VALUE ((void *)value, strlen (value)),
          RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS (headers), RD_KAFKA_V_END),
      ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, WAIT_MS), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);
}

static rd_kafka_topic_partition_list_t *
owned (int first, int last)
{
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (2);

  for (int p = first; p <= last; p++)
    rd_kafka_topic_partition_list_add (list, "input", p)->offset = 10 + p;
  return list;
}

static void
answer_request (const TallySnapshotRequest *request, gpointer user_data)
{
  static const char *const words_a[] = { "kafka", "streams", "apache" };
  static const guint64 values_a[] = { 2, 1, 1 };
  static const char *const words_b[] = { "kafka", "streams", "topic" };
  static const guint64 values_b[] = { 1, 1, 5 };
  Instances *instances = user_data;

  g_assert_no_error (request->error);
  /* --top and --min-count come in the rounds of a TallyTopQuery; the publisher applies
   * each request's filters, as in `tally run`. */
  /* The first request's id: `tally snapshot` may ask again. */
  if (instances->request_id == NULL)
    instances->request_id = g_strdup (request->request_id);
  if (instances->bad_reply)
    produce_bad_reply (instances->f, request->request_id);
  tally_publisher_publish_async (instances->f->publisher, request,
                                 tally_test_counts_new (words_a, values_a, 3), owned (0, 1),
                                 owned (0, 1), 1, NULL, NULL, NULL);
  if (instances->with_b)
    tally_publisher_publish_async (instances->second, request,
                                   tally_test_counts_new (words_b, values_b, 3), owned (2, 3),
                                   owned (2, 3), 1, NULL, NULL, NULL);
  instances->answered++;
}

/* Runs `tally snapshot` against the instances; its standard output goes to @stdout_path,
 * or to a pipe read into @out when %NULL. */
static void
run_snapshot_command (Fixture *f, gboolean with_b, gboolean bad_reply, const char *stdout_path,
                      const char *const *extra_args, int *status, char **out, char **err,
                      char **request_id, guint *n_requests)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("test-second");
  g_autofree char *dir = g_dir_make_tmp ("tally-test-XXXXXX", &error);
  g_autofree char *config = g_build_filename (dir, "tally.conf", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (TallyRequestReader) reader = NULL;
  Instances instances = { f, NULL, with_b, bad_reply, NULL, 0 };
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  TallyActor *actor;

  g_assert_no_error (error);
  g_assert_true (tally_broker_create_topic (f->broker, "input", 4, &error));
  g_assert_true (g_file_set_contents (config,
                                      "[input]\ntopics=input\n"
                                      "[output]\ntopic=snapshots\n"
                                      "[requests]\ntopic=requests\n",
                                      -1, &error));
  actor = tally_publisher_new (tally_test_broker_conf (f->broker), "snapshots", 1000000, &error);
  g_assert_no_error (error);
  instances.second = tally_actor_start (actor, arbiter, 8);

  g_main_context_push_thread_default (context);
  reader = tally_request_reader_new (tally_test_broker_conf (f->broker), "requests", -1, context,
                                     answer_request, &instances, NULL, WAIT_MS, &error);
  g_assert_no_error (error);

  g_ptr_array_add (argv, (char *)g_getenv ("TALLY_EXE"));
  g_ptr_array_add (argv, "snapshot");
  g_ptr_array_add (argv, "--config");
  g_ptr_array_add (argv, config);
  g_ptr_array_add (argv, "--bootstrap-server");
  g_ptr_array_add (argv, (char *)tally_broker_get_bootstrap_servers (f->broker));
  for (const char *const *a = extra_args; *a != NULL; a++)
    g_ptr_array_add (argv, (char *)*a);
  g_ptr_array_add (argv, NULL);
  {
    g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (
        (stdout_path == NULL ? G_SUBPROCESS_FLAGS_STDOUT_PIPE : G_SUBPROCESS_FLAGS_NONE)
        | G_SUBPROCESS_FLAGS_STDERR_PIPE);

    if (stdout_path != NULL)
      g_subprocess_launcher_set_stdout_file_path (launcher, stdout_path);
    process = g_subprocess_launcher_spawnv (launcher, (const char *const *)argv->pdata, &error);
    g_assert_no_error (error);
  }
  g_subprocess_communicate_utf8_async (process, NULL, NULL, store_subprocess_result, &result);
  while (result == NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (context, TRUE);
    }
  g_assert_true (g_subprocess_communicate_utf8_finish (process, result, out, err, &error));
  g_assert_no_error (error);
  *status = g_subprocess_get_exit_status (process);
  /* One request when the first answers come within a second (the usual case); more when
   * they do not, since `tally snapshot` then asks again. */
  g_assert_cmpuint (instances.answered, >=, 1);
  *n_requests = instances.answered;
  if (request_id != NULL)
    *request_id = g_steal_pointer (&instances.request_id);
  g_free (instances.request_id);

  g_clear_pointer (&reader, tally_request_reader_free);
  g_main_context_pop_thread_default (context);
  tally_address_stop (instances.second);
  g_assert_true (tally_address_wait_stopped (instances.second, WAIT_MS));
  tally_address_unref (instances.second);
  tally_arbiter_stop (arbiter);
  g_remove (config);
  g_rmdir (dir);
}

static void
test_snapshot_command (Fixture *f, gconstpointer data)
{
  static const char *const top3[] = { "--top", "3", NULL };
  static const char *const json[] = { "--json", "--min-count", "3", NULL };
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) error = NULL;
  JsonObject *object;
  guint n_requests;
  int status;

  if (g_getenv ("TALLY_EXE") == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      return;
    }

  /* Both instances answer each round of the top query: exact, in TallyCounts order. */
  run_snapshot_command (f, TRUE, FALSE, NULL, top3, &status, &out, &err, NULL, &n_requests);
  g_assert_cmpstr (err, ==, "");
  g_assert_cmpint (status, ==, 0);
  g_assert_cmpstr (out, ==, "topic 5\nkafka 3\nstreams 2\n");
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  run_snapshot_command (f, TRUE, FALSE, NULL, json, &status, &out, &err, NULL, &n_requests);
  g_assert_cmpint (status, ==, 0);
  root = json_from_string (out, &error);
  g_assert_no_error (error);
  object = json_node_get_object (root);
  g_assert_cmpint (json_object_get_int_member (object, "total_words"), ==, 11);
  /* Not every word was shipped: the sum of the instances' distinct words (kafka and
   * streams are at both), as the assembler documents for filtered replies. */
  g_assert_cmpint (json_object_get_int_member (object, "distinct_words"), ==, 6);
  g_assert_cmpint (json_object_get_int_member (object, "min_count"), ==, 3);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (object, "partitions")), ==,
                    4);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (object, "counts")), ==, 2);
}

static void
test_snapshot_command_timeout (Fixture *f, gconstpointer data)
{
  static const char *const args[] = { "--timeout", "5000", NULL };
  g_autofree char *out = NULL, *err = NULL;
  guint n_requests;
  int status;

  if (g_getenv ("TALLY_EXE") == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      return;
    }
  /* Only instance A answers: partitions 2 and 3 stay uncovered. */
  run_snapshot_command (f, FALSE, FALSE, NULL, args, &status, &out, &err, NULL, &n_requests);
  g_assert_cmpint (status, ==, 1);
  g_assert_cmpstr (out, ==, "");
  /* Asked again after 1 s and 2 more: at least twice, answered each time by A alone. */
  g_assert_cmpuint (n_requests, >=, 2);
  g_assert_nonnull (strstr (err, "timed out after 5000 ms"));
  g_assert_nonnull (strstr (err, " request(s) sent): 1 complete replies, 0 incomplete; input "
                                 "partitions not covered: input [2], input [3]; is a tally run "
                                 "instance"));
}

/* A reply naming our request that cannot be decoded is reported, not dropped silently. */
static void
test_snapshot_command_bad_reply (Fixture *f, gconstpointer data)
{
  /* Long enough for the good reply on a loaded machine (3000 ms missed it under load 8). */
  static const char *const args[] = { "--timeout", "8000", NULL };
  g_autofree char *out = NULL, *err = NULL, *request_id = NULL, *expected = NULL;
  guint n_requests;
  int status;

  if (g_getenv ("TALLY_EXE") == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      return;
    }
  run_snapshot_command (f, FALSE, TRUE, NULL, args, &status, &out, &err, &request_id, &n_requests);
  g_assert_cmpint (status, ==, 1);
  g_assert_cmpstr (out, ==, "");
  expected
      = g_strdup_printf ("tally snapshot: warning: a reply to request %s (snapshots [0] offset 0) "
                         "cannot be decoded: snapshot part: member \"snapshot_id\" must be "
                         "a string\n",
                         request_id);
  /* The first request's bad reply is reported first (at offset 0). */
  g_assert_true (g_str_has_prefix (err, expected));
  g_assert_nonnull (strstr (err, " request(s) sent): 1 complete replies, 0 incomplete; input "
                                 "partitions not covered: input [2], input [3]; is a tally run "
                                 "instance"));
}

/* A failed write of the counts is an error (exit 1), not a silent success. */
static void
test_snapshot_command_write_error (Fixture *f, gconstpointer data)
{
  static const char *const args[] = { NULL };
  g_autofree char *out = NULL, *err = NULL;
  guint n_requests;
  int status;

  if (g_getenv ("TALLY_EXE") == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      return;
    }
  run_snapshot_command (f, TRUE, FALSE, "/dev/full", args, &status, &out, &err, NULL, &n_requests);
  g_assert_cmpstr (err, ==,
                   "tally snapshot: could not write the counts: No space left on device\n");
  g_assert_cmpint (status, ==, 1);
}

/* Usage errors of `tally broker` and `tally snapshot`: exit 2, a message naming the option
 * (each of these was accepted, or reported without the option's name). */
static void
test_command_usage_errors (void)
{
  static const struct
  {
    const char *argv[5];
    const char *err;
  } cases[] = {
    { { "broker", "--port", "-1" },
      "tally broker: --port must be from 0 to 65535, not -1\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "broker", "--port", "65536" },
      "tally broker: --port must be from 0 to 65535, not 65536\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "broker", "--partitions", "100000" },
      "tally broker: --partitions must be from 1 to 1000, not 100000\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "broker", "--topics", "bad topic" },
      "tally broker: --topics: “bad topic” is not a legal topic name: Kafka topic names use "
      "only ASCII letters, digits, '.', '_' and '-'\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "broker", "--topics", "" },
      "tally broker: --topics: name at least one topic\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "broker", "--topics", "a,,b" },
      "tally broker: --topics: a topic name cannot be empty\n"
      "Run \'tally broker --help\' for the options.\n" },
    { { "snapshot", "--timeout=-1" },
      "tally snapshot: --timeout must be at least 1 (ms), not -1\n"
      "Run 'tally snapshot --help' for the options.\n" },
    { { "snapshot", "extra" },
      "tally snapshot: unexpected argument 'extra'\n"
      "Run 'tally snapshot --help' for the options.\n" },
    { { "snapshot", "--top", "-3" },
      "tally snapshot: --top must be at least 0, not -3\n"
      "Run 'tally snapshot --help' for the options.\n" },
    { { "snapshot", "--prefix", "h\xff" },
      "tally snapshot: --prefix must be valid UTF-8 text\n"
      "Run 'tally snapshot --help' for the options.\n" },
  };
  const char *exe = g_getenv ("TALLY_EXE");

  if (exe == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *argv[G_N_ELEMENTS (cases[i].argv) + 1] = { exe };
      g_autofree char *out = NULL, *err = NULL;
      g_autoptr (GError) error = NULL;
      int wait_status = 0;

      for (gsize a = 0; a < G_N_ELEMENTS (cases[i].argv) && cases[i].argv[a] != NULL; a++)
        argv[a + 1] = cases[i].argv[a];
      g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                   &err, &wait_status, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (err, ==, cases[i].err);
      g_assert_cmpstr (out, ==, "");
      g_assert_true (WIFEXITED (wait_status));
      g_assert_cmpint (WEXITSTATUS (wait_status), ==, 2);
    }
}

static void
test_broker_command (void)
{
  const char *exe = g_getenv ("TALLY_EXE");
  g_autoptr (GSubprocess) process = NULL;
  g_autoptr (GDataInputStream) lines = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *first = NULL;
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[256];
  rd_kafka_t *client;
  guint found = 0;

  if (exe == NULL)
    {
      g_test_skip ("TALLY_EXE is not set (run under meson test)");
      rd_kafka_conf_destroy (conf);
      return;
    }
  process = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                              &error, exe, "broker", "--port", "0", "--partitions", "3", "--topics",
                              "alpha,beta", NULL);
  g_assert_no_error (error);
  lines = g_data_input_stream_new (g_subprocess_get_stdout_pipe (process));
  first = g_data_input_stream_read_line_utf8 (lines, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (first);
  g_assert_true (g_str_has_prefix (first, "bootstrap.servers=127.0.0.1:"));

  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      first + strlen ("bootstrap.servers="), errstr, sizeof errstr),
                   ==, RD_KAFKA_CONF_OK);
  client = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  g_assert_nonnull (client);
  g_assert_cmpint (rd_kafka_metadata (client, 1, NULL, &metadata, WAIT_MS), ==,
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int t = 0; t < metadata->topic_cnt; t++)
    if (strcmp (metadata->topics[t].topic, "alpha") == 0
        || strcmp (metadata->topics[t].topic, "beta") == 0)
      {
        g_assert_cmpint (metadata->topics[t].partition_cnt, ==, 3);
        found++;
      }
  g_assert_cmpuint (found, ==, 2);
  rd_kafka_metadata_destroy (metadata);
  rd_kafka_destroy (client);

  /* SIGTERM: a clean exit with status 0. */
  g_subprocess_send_signal (process, SIGTERM);
  g_assert_true (g_subprocess_wait (process, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (process));
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 0);
}

int
main (int argc, char **argv)
{
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (test_writer, NULL, NULL);
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func, limit)                                                                     \
  g_test_add (path, Fixture, GSIZE_TO_POINTER (limit), fixture_set_up, func, fixture_tear_down)
  ADD ("/publisher/publish-read-back", test_publish_read_back, 4096);
  ADD ("/publisher/publish-filtered", test_publish_filtered, 1000000);
  ADD ("/publisher/publish-full-records", test_publish_full_records, 1000000);
  ADD ("/publisher/error-snapshot", test_publish_error_snapshot, 1000000);
  ADD ("/publisher/delivery-retried", test_delivery_retried, 1000000);
  ADD ("/publisher/delivery-failed", test_delivery_failed, 1000000);
  ADD ("/publisher/publish-async", test_publish_async, 1000000);
  ADD ("/publisher/stop-while-retrying", test_stop_while_retrying, 1000000);
  ADD ("/request-reader/good-and-bad", test_request_reader, 1000000);
  ADD ("/command/snapshot", test_snapshot_command, 1000000);
  ADD ("/command/snapshot-timeout", test_snapshot_command_timeout, 1000000);
  ADD ("/command/snapshot-bad-reply", test_snapshot_command_bad_reply, 1000000);
  ADD ("/command/snapshot-write-error", test_snapshot_command_write_error, 1000000);
#undef ADD
  g_test_add_func ("/publisher/supervised-restart", test_supervised_restart);
  g_test_add_func ("/publisher/output-topic-limit", test_output_topic_limit);
  g_test_add_func ("/broker/fixed-port", test_broker_fixed_port);
  g_test_add_func ("/command/broker", test_broker_command);
  g_test_add_func ("/command/usage-errors", test_command_usage_errors);
  return g_test_run ();
}
