/* test-source.c — the source actor and the changelog against the embedded broker, in the
 * test process: records in with librdkafka's producer, counts out through the snapshot
 * barrier, state carried across a restart by the changelog.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-broker.h"
#include "tally-checkpoint.h"
#include "tally-config.h"
#include "tally-kafka-errors.h"
#include "tally-source.h"
#include "tally-test-util.h"

#include <string.h>

typedef struct
{
  TallyBroker *broker;
  char *input;
  char *changelog;
  TallyAggregatorHandle *handle;
  TallyArbiter *arbiter;
  TallyAddress *source;
} Fixture;

static int topic_serial;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  f->input = g_strdup_printf ("source-input-%d", topic_serial);
  f->changelog = g_strdup_printf ("source-changelog-%d", topic_serial++);
  g_assert_true (tally_broker_create_topic (f->broker, f->input, 2, &error));
  g_assert_no_error (error);
}

/* Starts a source with its own shards and the consumer properties @conf (consumed);
 * @capacity bounds each shard's mailbox. */
static void
start_source_conf (Fixture *f, guint capacity, gboolean checkpoint, rd_kafka_conf_t *conf)
{
  g_autoptr (TallyConfig) config = tally_config_new_default ();
  g_autoptr (GError) error = NULL;
  TallyActor *actor;

  rd_kafka_conf_set (conf, "session.timeout.ms", "6000", NULL, 0);
  g_strfreev (config->input.topics);
  config->input.topics = g_strsplit (f->input, ";", -1);
  g_free (config->checkpoint.changelog_topic);
  config->checkpoint.changelog_topic = g_strdup (f->changelog);
  config->checkpoint.enabled = checkpoint;
  config->checkpoint.interval_ms = 100;
  config->input.max_batch_records = 7;

  f->handle = tally_aggregator_handle_new (2, capacity);
  f->arbiter = tally_arbiter_new ("test-source");
  actor = tally_source_new (config, TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE, conf, f->handle, &error);
  g_assert_no_error (error);
  f->source = tally_actor_start (actor, f->arbiter, 16);
}

static void
start_source (Fixture *f, guint capacity, gboolean checkpoint)
{
  start_source_conf (f, capacity, checkpoint, tally_test_broker_conf (f->broker));
}

static void
stop_source (Fixture *f)
{
  tally_address_stop (f->source);
  g_assert_true (tally_address_wait_stopped (f->source, 30000));
  tally_arbiter_stop (f->arbiter);
  g_clear_pointer (&f->source, tally_address_unref);
  g_clear_pointer (&f->arbiter, tally_arbiter_unref);
  tally_aggregator_handle_stop (f->handle);
  g_clear_pointer (&f->handle, tally_aggregator_handle_unref);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  if (f->source != NULL)
    stop_source (f);
  tally_broker_free (f->broker);
  g_free (f->input);
  g_free (f->changelog);
}

/* Produces @n values (NULL = tombstone) to partition @partition (-1: by key "k<i>"). */
static void
produce (Fixture *f, const char *const *values, const gsize *lens, guint n, gint32 partition)
{
  char errstr[256];
  rd_kafka_t *producer
      = rd_kafka_new (RD_KAFKA_PRODUCER, tally_test_broker_conf (f->broker), errstr, sizeof errstr);

  g_assert_nonnull (producer);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("k%u", i);
      gsize len = values[i] == NULL ? 0 : lens != NULL ? lens[i] : strlen (values[i]);
      rd_kafka_resp_err_t err;

      err = rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (f->input),
                               RD_KAFKA_V_PARTITION (partition), RD_KAFKA_V_KEY (key, strlen (key)),
                               RD_KAFKA_V_VALUE ((void *)values[i], len),
                               RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      g_assert_cmpint (err, ==, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  g_assert_cmpint (rd_kafka_flush (producer, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);
}

typedef struct
{
  Fixture *f;
  TallySnapshotCut *cut;
  gboolean done;
} CutWait;

static void
on_cut (GObject *object, GAsyncResult *result, gpointer user_data)
{
  CutWait *w = user_data;
  g_autoptr (GError) error = NULL;

  w->cut = tally_source_snapshot_finish (w->f->source, result, &error);
  g_assert_no_error (error);
  w->done = TRUE;
}

static TallySnapshotCut *
take_cut (Fixture *f)
{
  CutWait w = { f, NULL, FALSE };

  tally_source_snapshot_async (f->source, NULL, NULL, on_cut, &w);
  while (!w.done)
    g_main_context_iteration (NULL, TRUE);
  return w.cut;
}

static gint64
cut_records (TallySnapshotCut *cut)
{
  gint64 n = 0;

  for (int i = 0; i < cut->offsets->cnt; i++)
    if (cut->offsets->elems[i].offset > 0)
      n += cut->offsets->elems[i].offset;
  return n;
}

/* Takes cuts until they reflect @records records (the sum of the offsets: every
 * partition starts at 0), and returns that cut. */
static TallySnapshotCut *
cut_after (Fixture *f, gint64 records)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;

  for (;;)
    {
      TallySnapshotCut *cut = take_cut (f);

      if (cut_records (cut) >= records)
        {
          g_assert_cmpint (cut_records (cut), ==, records);
          return cut;
        }
      tally_snapshot_cut_free (cut);
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50 * 1000);
    }
}

static const char *const streams_lines[] = {
  "Apache   Kafka Streams   Example",
  "Using  \t\t Kafka   Streams\tTest Utils",
  "Reading and Writing Kafka Topic",
};

static void
assert_streams_counts (TallyCounts *counts, guint64 times)
{
  static const char *const ones[]
      = { "apache", "example", "using", "test", "utils", "reading", "and", "writing", "topic" };

  g_assert_cmpuint (tally_counts_lookup (counts, "kafka", 5), ==, 3 * times);
  g_assert_cmpuint (tally_counts_lookup (counts, "streams", 7), ==, 2 * times);
  for (guint i = 0; i < G_N_ELEMENTS (ones); i++)
    g_assert_cmpuint (tally_counts_lookup (counts, ones[i], strlen (ones[i])), ==, times);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 11);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 14 * times);
}

static void
test_streams_example (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySnapshotCut) cut = NULL;

  start_source (f, 64, FALSE);
  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  cut = cut_after (f, 3);
  assert_streams_counts (cut->counts, 1);
  g_assert_cmpint (cut->partitions->cnt, ==, 2);
}

/* An idle source stays in its group: librdkafka makes a member that has not polled for
 * max.poll.interval.ms leave it (a warning, fatal in this test, and a rebalance), so the
 * source must poll while no record arrives. Idle for twice that interval, then the
 * counts of records produced afterwards are exact. */
static void
test_idle_member (Fixture *f, gconstpointer data)
{
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  g_autoptr (TallySnapshotCut) first = NULL;
  g_autoptr (TallySnapshotCut) second = NULL;

  g_assert_cmpint (rd_kafka_conf_set (conf, "max.poll.interval.ms", "6000", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  start_source_conf (f, 64, TRUE, conf);
  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  first = cut_after (f, 3);
  assert_streams_counts (first->counts, 1);
  g_usleep (12 * G_USEC_PER_SEC);
  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  second = cut_after (f, 6);
  assert_streams_counts (second->counts, 2);
}

/* Tombstones, empty values, NUL bytes and invalid UTF-8: no crash, no empty word. */
static void
test_bad_values (Fixture *f, gconstpointer data)
{
  static const char *const values[] = { NULL,
                                        "",
                                        "nul\0byte",
                                        "\xff\xfe"
                                        "ab\xc3(\xe2\x82",
                                        "\0",
                                        "ok" };
  static const gsize lens[] = { 0, 0, 8, 8, 1, 2 };
  g_autoptr (TallySnapshotCut) cut = NULL;

  start_source (f, 64, FALSE);
  produce (f, values, lens, G_N_ELEMENTS (values), 0);
  cut = cut_after (f, G_N_ELEMENTS (values));
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "nul", 3), ==, 1);
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "byte", 4), ==, 1);
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "ab", 2), ==, 1);
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "ok", 2), ==, 1);
  g_assert_cmpuint (tally_counts_get_total (cut->counts), ==, 4);
}

/* A mailbox of one message and batches of 7 records: the source must pause and resume
 * its partitions many times and still count every word exactly once. */
static void
test_backpressure (Fixture *f, gconstpointer data)
{
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (TallySnapshotCut) cut = NULL;
  const guint n = 3000;

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (values, g_strdup_printf ("w%u common w%u", i % 100, (i + 1) % 100));
  start_source (f, 1, FALSE);
  produce (f, (const char *const *)values->pdata, NULL, n, -1);
  cut = cut_after (f, n);
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "common", 6), ==, n);
  g_assert_cmpuint (tally_counts_lookup (cut->counts, "w7", 2), ==, 2 * n / 100);
  g_assert_cmpuint (tally_counts_get_total (cut->counts), ==, 3 * n);
  g_assert_cmpuint (tally_counts_get_n_words (cut->counts), ==, 101);
}

/* Counts survive a stop and a start of another source in the same group: the second
 * restores them from the changelog and starts at the checkpointed offsets, so nothing is
 * counted twice or lost. */
static void
test_restore (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySnapshotCut) cut = NULL;
  g_autoptr (TallySnapshotCut) cut2 = NULL;

  start_source (f, 64, TRUE);
  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  cut = cut_after (f, 3);
  assert_streams_counts (cut->counts, 1);
  stop_source (f);

  start_source (f, 64, TRUE);
  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  cut2 = cut_after (f, 6);
  assert_streams_counts (cut2->counts, 2);
}

/* The first checkpoints fail (the broker refuses the changelog's Produce requests for
 * good): the changes are kept and written again, no offset is stored before they are,
 * and a restart still restores exactly what was counted. */
static void
test_checkpoint_failure (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySnapshotCut) cut = NULL;
  g_autoptr (TallySnapshotCut) cut2 = NULL;
  rd_kafka_mock_cluster_t *mock = tally_broker_get_mock_cluster (f->broker);

  /* The failures provoked here are logged as warnings, which g_test_init() made fatal. */
  GLogLevelFlags fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);

  produce (f, (const char *const *)streams_lines, NULL, 3, -1);
  /* Nothing else produces from now on: these hit the changelog producer (ApiKey 0 is
   * Produce). */
  rd_kafka_mock_push_request_errors (mock, 0, 3, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                     RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                     RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  start_source (f, 64, TRUE);
  cut = cut_after (f, 3);
  assert_streams_counts (cut->counts, 1);
  g_usleep (G_USEC_PER_SEC); /* several checkpoint intervals: failures, then success */
  stop_source (f);

  start_source (f, 64, TRUE);
  cut2 = cut_after (f, 3);
  assert_streams_counts (cut2->counts, 1);
  g_log_set_always_fatal (fatal);
}

/* The changelog's record format, read back by tally_checkpoint_restore(): the last count
 * of a word wins, the last marker of a topic wins. */
static void
test_changelog_format (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) checkpoint = NULL;
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) first = NULL;
  g_autoptr (TallyCounts) second = NULL;
  g_autoptr (TallyCounts) restored = NULL;
  g_autoptr (GHashTable) offsets = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_autoptr (GHashTable) markers = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  gint64 offset = 17;

  checkpoint = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (checkpoint, 2, 10000, &error));
  g_assert_no_error (error);

  tally_counts_builder_add (builder, "alpha", 5, 3);
  tally_counts_builder_add (builder, "beta", 4, 1);
  first = tally_counts_builder_end (builder);
  g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&offset, sizeof offset));
  g_assert_true (tally_checkpoint_write (checkpoint, 1, first, offsets, &error));
  tally_counts_builder_add (builder, "alpha", 5, 7);
  second = tally_counts_builder_end (builder);
  offset = 42;
  g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&offset, sizeof offset));
  g_assert_true (tally_checkpoint_write (checkpoint, 1, second, offsets, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);

  g_assert_true (tally_checkpoint_restore (checkpoint, 1, 10000, &restored, &markers, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_n_words (restored), ==, 2);
  g_assert_cmpuint (tally_counts_lookup (restored, "alpha", 5), ==, 7);
  g_assert_cmpuint (tally_counts_lookup (restored, "beta", 4), ==, 1);
  g_assert_cmpuint (g_hash_table_size (markers), ==, 1);
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (markers, "in"), ==, 42);

  /* Partition 0 is empty: nothing restored. */
  g_clear_pointer (&restored, tally_counts_unref);
  g_clear_pointer (&markers, g_hash_table_unref);
  g_assert_true (tally_checkpoint_restore (checkpoint, 0, 10000, &restored, &markers, &error));
  g_assert_cmpuint (tally_counts_get_n_words (restored), ==, 0);
  g_assert_cmpuint (g_hash_table_size (markers), ==, 0);
}

/* The consumer's properties for an input configuration, [kafka] applied first as tally
 * run does; returns the value of @name. */
static char *
consumer_property (const char *conf_text, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_load_from_data (conf_text, -1, "test.conf", &error);
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char value[64];
  size_t size = sizeof value;

  g_assert_no_error (error);
  g_assert_true (tally_config_apply_kafka (config, conf, &error));
  g_assert_no_error (error);
  g_assert_true (tally_source_configure_consumer (config, conf, &error));
  g_assert_no_error (error);
  g_assert_cmpint (rd_kafka_conf_get (conf, name, value, &size), ==, RD_KAFKA_CONF_OK);
  rd_kafka_conf_destroy (conf);
  return g_strdup (value);
}

/* A topic that starts to match a ^regex subscription was consumed only after librdkafka's
 * periodic metadata refresh, every 300000 ms by default (issue 13 item 13): with a pattern
 * among the input topics the source refreshes every 10000 ms unless [kafka] says
 * otherwise; names alone keep librdkafka's default. */
static void
test_pattern_metadata_refresh (void)
{
  static const char *const name = "topic.metadata.refresh.interval.ms";
  g_autofree char *pattern = consumer_property ("[input]\ntopics=tally-in;^tally-in-.*\n", name);
  g_autofree char *names = consumer_property ("[input]\ntopics=tally-in;tally-other\n", name);
  g_autofree char *chosen = consumer_property (
      "[input]\ntopics=^tally-in-.*\n[kafka]\ntopic.metadata.refresh.interval.ms=60000\n", name);
  g_autofree char *strategy
      = consumer_property ("[input]\ntopics=^tally-in-.*\n", "partition.assignment.strategy");

  g_assert_cmpstr (pattern, ==, "10000");
  g_assert_cmpstr (names, ==, "300000");
  g_assert_cmpstr (chosen, ==, "60000");
  g_assert_cmpstr (strategy, ==, "range");
}

/* Several stores restored at once (tally_checkpoint_restore_many(), one consumer assigned
 * every changelog partition): each store gets exactly its own words and markers, a word
 * written twice keeps its larger (later) count, and an empty partition restores nothing. */
static void
test_restore_many (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) checkpoint = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  TallyRestoredStore stores[4]
      = { { .partition = 3 }, { .partition = 0 }, { .partition = 2 }, { .partition = 1 } };

  checkpoint = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (checkpoint, 4, 10000, &error));
  g_assert_no_error (error);
  /* Store p: 1000 * (p + 1) words "p<p>-<i>" counted i + 1, then "p<p>-0" again at 5. */
  for (gint32 p = 0; p < 3; p++)
    for (guint round = 0; round < 2; round++)
      {
        g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
        g_autoptr (TallyCounts) counts = NULL;
        g_autoptr (GHashTable) offsets
            = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
        gint64 offset = 100 * p + round;

        if (round == 0)
          for (guint i = 0; i < 1000 * (guint)(p + 1); i++)
            {
              g_autofree char *word = g_strdup_printf ("p%d-%u", p, i);

              tally_counts_builder_add (builder, word, strlen (word), i + 1);
            }
        else
          {
            g_autofree char *word = g_strdup_printf ("p%d-0", p);

            tally_counts_builder_add (builder, word, strlen (word), 5);
          }
        counts = tally_counts_builder_end (builder);
        g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&offset, sizeof offset));
        g_assert_true (tally_checkpoint_write (checkpoint, p, counts, offsets, &error));
        g_assert_no_error (error);
      }
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);

  g_assert_true (tally_checkpoint_restore_many (checkpoint, stores, 4, 20000, &error));
  g_assert_no_error (error);
  for (guint k = 0; k < 4; k++)
    {
      gint32 p = stores[k].partition;
      g_autofree char *first = g_strdup_printf ("p%d-0", p);
      g_autofree char *last = g_strdup_printf ("p%d-%u", p, 1000 * (guint)(p + 1) - 1);

      if (p == 3)
        {
          g_assert_cmpuint (tally_counts_get_n_words (stores[k].counts), ==, 0);
          g_assert_cmpuint (g_hash_table_size (stores[k].offsets), ==, 0);
          tally_restored_store_clear (&stores[k]);
          continue;
        }
      g_assert_cmpuint (tally_counts_get_n_words (stores[k].counts), ==, 1000 * (guint)(p + 1));
      g_assert_cmpuint (tally_counts_lookup (stores[k].counts, first, strlen (first)), ==, 5);
      g_assert_cmpuint (tally_counts_lookup (stores[k].counts, last, strlen (last)), ==,
                        1000 * (guint)(p + 1));
      g_assert_cmpuint (tally_counts_lookup (stores[k].counts, "p9-0", 4), ==, 0);
      /* A delta block and a marker per checkpoint. */
      g_assert_cmpuint (stores[k].records, ==, 4);
      g_assert_cmpint (*(gint64 *)g_hash_table_lookup (stores[k].offsets, "in"), ==, 100 * p + 1);
      tally_restored_store_clear (&stores[k]);
    }
}

/* Writes @words ("word=count ...") to store 0, with offset marker @marker of topic "in"
 * when it is not negative, as one at-least-once checkpoint. */
static void
write_section (TallyCheckpoint *checkpoint, const char *words, gint64 marker)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) items = g_strsplit (words, " ", -1);
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GHashTable) offsets = NULL;

  for (guint i = 0; items[i] != NULL; i++)
    {
      char *eq = strchr (items[i], '=');

      *eq = '\0';
      tally_counts_builder_add (builder, items[i], strlen (items[i]),
                                g_ascii_strtoull (eq + 1, NULL, 10));
    }
  counts = tally_counts_builder_end (builder);
  if (marker >= 0)
    {
      offsets = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
      g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&marker, sizeof marker));
    }
  g_assert_true (tally_checkpoint_write (checkpoint, 0, counts, offsets, &error));
  g_assert_no_error (error);
}

/* A restore takes what the offset markers cover and the largest marker: a checkpoint
 * written late with an older state (an instance that lost its partitions) changes
 * nothing, and word records after the last marker (a checkpoint cut short) are left out,
 * since the input is read again from the marker. The real broker's cases (a transaction
 * read in part, the end after a commit marker) are in test-changelog-real.c. */
static void
test_restore_covered (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) checkpoint = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GHashTable) offsets = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);

  checkpoint = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (checkpoint, 1, 10000, &error));
  g_assert_no_error (error);
  write_section (checkpoint, "a=3 b=1", 4);
  write_section (checkpoint, "a=5", 6);
  write_section (checkpoint, "a=4", 5);      /* late, older */
  write_section (checkpoint, "a=9 d=2", -1); /* cut short */
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);

  g_assert_true (tally_checkpoint_restore (checkpoint, 0, 20000, &counts, &offsets, &error));
  g_assert_no_error (error);
  tally_test_assert_entries (counts, "a=5 b=1 ");
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (offsets, "in"), ==, 6);
}

/* Store @p's counts "b<i>" = i + 1 + @extra, i < @n, and the marker "in" = @offset. */
static TallyCounts *
block_counts (guint n, guint64 extra)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *word = g_strdup_printf ("b%u", i);

      tally_counts_builder_add (builder, word, strlen (word), i + 1 + extra);
    }
  return tally_counts_builder_end (builder);
}

static GHashTable *
marker (gint64 offset)
{
  GHashTable *offsets = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);

  g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&offset, sizeof offset));
  return offsets;
}

/* A fatal function for tally_kafka_errors_fatal(): keeps the message in *@user_data. */
static void
note_fatal (const char *message, gpointer user_data)
{
  char **out = user_data;

  g_free (*out);
  *out = g_strdup (message);
}

/* Owner records (tally_checkpoint_set_owner()): a changelog written by group-a restores
 * for group-a, and for group-b takes nothing and fails (TALLY_CHECKPOINT_ERROR_FOREIGN,
 * reported as fatal); a partition written without an owner (before owner records) restores
 * for anyone; the owner record is written once per partition and process. */
static void
test_checkpoint_owner (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) a = NULL;
  g_autoptr (TallyCheckpoint) b = NULL;
  g_autoptr (TallyCheckpoint) legacy = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GHashTable) offsets = NULL;
  TallyRestoredStore store = { .partition = 0 };
  g_autofree char *fatal = NULL;
  g_autofree char *expected = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);

  legacy = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (legacy, 2, 10000, &error));
  g_assert_no_error (error);
  /* Partition 1: no owner record. */
  {
    g_autoptr (TallyCounts) words = block_counts (2, 0);
    g_autoptr (GHashTable) m = marker (3);

    g_assert_true (tally_checkpoint_write (legacy, 1, words, m, &error));
    g_assert_no_error (error);
    g_assert_true (tally_checkpoint_flush (legacy, 10000, &error));
    g_assert_no_error (error);
  }

  /* Partition 0: group-a, in two checkpoints (one owner record). */
  a = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  g_assert_no_error (error);
  tally_checkpoint_set_owner (a, "group-a");
  write_section (a, "x=2 y=1", 4);
  g_assert_true (tally_checkpoint_flush (a, 10000, &error));
  g_assert_no_error (error);
  write_section (a, "x=3", 5);
  g_assert_true (tally_checkpoint_flush (a, 10000, &error));
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_restore_many (a, &store, 1, 20000, &error));
  g_assert_no_error (error);
  g_assert_nonnull (store.owners);
  g_assert_cmpuint (store.owners->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (store.owners, 0), ==, "group-a");
  tally_test_assert_entries (store.counts, "x=3 y=1 ");
  /* Marker, owner and word records: 2 checkpoints of a block and a marker, 1 owner. */
  g_assert_cmpuint (store.records, ==, 5);
  tally_restored_store_clear (&store);

  /* group-b: refused, nothing taken. */
  b = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  g_assert_no_error (error);
  tally_checkpoint_set_owner (b, "group-b");
  store = (TallyRestoredStore){ .partition = 0 };
  tally_kafka_errors_set_fatal_func (note_fatal, &fatal);
  g_assert_false (tally_checkpoint_restore_many (b, &store, 1, 20000, &error));
  tally_kafka_errors_set_fatal_func (NULL, NULL);
  g_assert_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_FOREIGN);
  expected = g_strdup_printf (
      "changelog topic %s [0] holds the counts of consumer group 'group-a', and this "
      "instance is in group 'group-b': two deployments cannot share a changelog topic (their "
      "counts would mix). Give this one its own: set [checkpoint] changelog_topic (for "
      "example group-b-changelog)",
      f->changelog);
  g_assert_cmpstr (fatal, ==, expected);
  g_assert_cmpstr (error->message, ==, expected);
  g_assert_null (store.counts);
  g_clear_error (&error);
  tally_restored_store_clear (&store);

  /* ...but the partition without owner records restores for group-b. */
  g_assert_true (tally_checkpoint_restore (b, 1, 20000, &counts, &offsets, &error));
  g_assert_no_error (error);
  tally_test_assert_entries (counts, "b1=2 b0=1 ");
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (offsets, "in"), ==, 3);

  /* group-b writes into partition 0 anyway (it never restored it): group-a's own restore
   * now finds both groups and says so. */
  write_section (b, "z=1", 7);
  g_assert_true (tally_checkpoint_flush (b, 10000, &error));
  g_assert_no_error (error);
  store = (TallyRestoredStore){ .partition = 0 };
  tally_kafka_errors_set_fatal_func (note_fatal, &fatal);
  g_assert_false (tally_checkpoint_restore_many (a, &store, 1, 20000, &error));
  tally_kafka_errors_set_fatal_func (NULL, NULL);
  g_assert_error (error, TALLY_CHECKPOINT_ERROR, TALLY_CHECKPOINT_ERROR_FOREIGN);
  g_free (expected);
  expected = g_strdup_printf (
      "changelog topic %s [0] holds the counts of consumer groups 'group-a' (this "
      "instance's) and 'group-b': two deployments wrote to it, and its counts mix theirs. "
      "Give each deployment its own [checkpoint] changelog_topic; this one's counts come back "
      "exact only from a new changelog topic with its input read again from the beginning",
      f->changelog);
  g_assert_cmpstr (error->message, ==, expected);
  g_assert_null (store.counts);
  rd_kafka_conf_destroy (conf);
}

/* Blocks, bases and their tombstones (tally-changelog-block.h): with blocks of at most 64
 * bytes and a base due after 90 bytes of deltas, one checkpoint of deltas calls for a
 * base (2 chunks of 64 bytes hold its 18-byte headers, 10 entries of 4 bytes and 10 of 5); once it
 * is acknowledged the next write tombstones the deltas and the restore reads the base and the later
 * delta only. Counts come back exact throughout. */
static void
test_changelog_blocks (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) checkpoint = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  g_autoptr (TallyCounts) first = block_counts (20, 0);
  g_autoptr (TallyCounts) second = block_counts (10, 100);
  g_autoptr (TallyCounts) all = NULL;
  g_autoptr (TallyCounts) third = block_counts (2, 1000);
  g_autoptr (GHashTable) m1 = marker (1);
  g_autoptr (GHashTable) m2 = marker (2);
  g_autoptr (GHashTable) m3 = marker (3);
  g_autoptr (GHashTable) m4 = marker (4);
  TallyRestoredStore store = { .partition = 0 };

  checkpoint = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (checkpoint, 1, 10000, &error));
  g_assert_no_error (error);
  tally_checkpoint_set_block_sizes (checkpoint, 64, 90);

  /* 20 entries of 4 ("b0" 1 .. "b9" 10) or 5 bytes (length, "b10".."b19", count), 2 of
   * header per block: two blocks of 62 and 32 bytes, 94 >= 90. */
  g_assert_false (tally_checkpoint_wants_base (checkpoint, 0));
  g_assert_true (tally_checkpoint_write (checkpoint, 0, first, m1, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_wants_base (checkpoint, 0));
  /* The store now: b0..b9 at i + 101 (second), b10..b19 at i + 1 (first). */
  all = block_counts (20, 0);
  {
    g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
    gsize n;
    const TallyWordCount *e = tally_counts_get_entries (all, &n);

    for (gsize i = 0; i < n; i++)
      tally_counts_builder_set_max (builder, e[i].word, e[i].len, e[i].count);
    e = tally_counts_get_entries (second, &n);
    for (gsize i = 0; i < n; i++)
      tally_counts_builder_set_max (builder, e[i].word, e[i].len, e[i].count);
    g_clear_pointer (&all, tally_counts_unref);
    all = tally_counts_builder_end (builder);
  }
  g_assert_true (tally_checkpoint_write_base (checkpoint, 0, all, m2, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);
  g_assert_false (tally_checkpoint_wants_base (checkpoint, 0));
  /* The next write tombstones the deltas before the base. */
  g_assert_true (tally_checkpoint_write (checkpoint, 0, third, m3, &error));
  g_assert_true (tally_checkpoint_write (checkpoint, 0, NULL, m4, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);

  g_assert_true (tally_checkpoint_restore_many (checkpoint, &store, 1, 10000, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_n_words (store.counts), ==, 20);
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *word = g_strdup_printf ("b%u", i);
      guint64 expected = i < 2 ? i + 1001 : i < 10 ? i + 101 : i + 1;

      g_assert_cmpuint (tally_counts_lookup (store.counts, word, strlen (word)), ==, expected);
    }
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (store.offsets, "in"), ==, 4);
  g_assert_cmpuint (store.word_records, ==, 0);
  g_assert_false (store.first_format);
  /* Left: the base's chunks and the last delta; the first deltas were tombstoned. */
  {
    GHashTableIter iter;
    gpointer value;
    guint bases = 0, deltas = 0;

    g_hash_table_iter_init (&iter, store.blocks);
    while (g_hash_table_iter_next (&iter, NULL, &value))
      {
        const TallyChangelogBlockRef *ref = value;

        if (ref->info.base)
          {
            bases++;
            g_assert_cmpuint (ref->info.n_chunks, ==, 2);
          }
        else
          deltas++;
      }
    g_assert_cmpuint (bases, ==, 2);
    g_assert_cmpuint (deltas, ==, 1);
  }
  g_assert_false (tally_checkpoint_wants_base (checkpoint, 0));
  tally_restored_store_clear (&store);
}

/* A changelog of the first format (a record per word, decimal counts) is still read; the
 * first checkpoint after its restore is a base, and the one after it tombstones every word
 * key, after which a restore finds the blocks only. */
static void
test_changelog_first_format (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) checkpoint = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);
  char errstr[256];
  rd_kafka_t *producer;
  static const char *const words[] = { "alpha", "beta", "alpha", "\0in" };
  static const char *const values[] = { "3", "1", "7", "42" };
  static const gsize key_lens[] = { 5, 4, 5, 3 };
  TallyRestoredStore store = { .partition = 0 };
  g_autoptr (GHashTable) m = marker (43);

  producer
      = rd_kafka_new (RD_KAFKA_PRODUCER, tally_test_broker_conf (f->broker), errstr, sizeof errstr);
  g_assert_nonnull (producer);
  checkpoint = tally_checkpoint_new (conf, f->changelog, NULL, 0, &error);
  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  g_assert_true (tally_checkpoint_ensure_topic (checkpoint, 1, 10000, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (words); i++)
    g_assert_cmpint (rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (f->changelog),
                                        RD_KAFKA_V_PARTITION (0),
                                        RD_KAFKA_V_KEY ((void *)words[i], key_lens[i]),
                                        RD_KAFKA_V_VALUE ((void *)values[i], strlen (values[i])),
                                        RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);

  g_assert_true (tally_checkpoint_restore_many (checkpoint, &store, 1, 10000, &error));
  g_assert_no_error (error);
  tally_test_assert_entries (store.counts, "alpha=7 beta=1 ");
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (store.offsets, "in"), ==, 42);
  g_assert_cmpuint (store.word_records, ==, 3);
  g_assert_true (store.first_format);
  g_assert_true (tally_checkpoint_wants_base (checkpoint, 0));
  g_assert_true (tally_checkpoint_write_base (checkpoint, 0, store.counts, m, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);
  g_assert_false (tally_checkpoint_wants_base (checkpoint, 0));
  tally_restored_store_clear (&store);
  /* The next write tombstones "alpha" and "beta". */
  g_assert_true (tally_checkpoint_write (checkpoint, 0, NULL, NULL, &error));
  g_assert_true (tally_checkpoint_flush (checkpoint, 10000, &error));
  g_assert_no_error (error);

  g_assert_true (tally_checkpoint_restore_many (checkpoint, &store, 1, 10000, &error));
  g_assert_no_error (error);
  tally_test_assert_entries (store.counts, "alpha=7 beta=1 ");
  g_assert_cmpint (*(gint64 *)g_hash_table_lookup (store.offsets, "in"), ==, 43);
  /* Read, not compacted (the embedded broker does not compact), but followed by
   * tombstones: nothing left to move. 4 records, a base block, a marker, 2 tombstones. */
  g_assert_cmpuint (store.word_records, ==, 3);
  g_assert_cmpuint (store.records, ==, 8);
  g_assert_false (store.first_format);
  g_assert_cmpuint (g_hash_table_size (store.blocks), ==, 1);
  g_assert_false (tally_checkpoint_wants_base (checkpoint, 0));
  tally_restored_store_clear (&store);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/source/streams-example", Fixture, NULL, fixture_set_up, test_streams_example,
              fixture_tear_down);
  g_test_add ("/source/idle-member", Fixture, NULL, fixture_set_up, test_idle_member,
              fixture_tear_down);
  g_test_add ("/source/bad-values", Fixture, NULL, fixture_set_up, test_bad_values,
              fixture_tear_down);
  g_test_add ("/source/backpressure", Fixture, NULL, fixture_set_up, test_backpressure,
              fixture_tear_down);
  g_test_add ("/source/restore", Fixture, NULL, fixture_set_up, test_restore, fixture_tear_down);
  g_test_add ("/checkpoint/failure", Fixture, NULL, fixture_set_up, test_checkpoint_failure,
              fixture_tear_down);
  g_test_add ("/checkpoint/blocks", Fixture, NULL, fixture_set_up, test_changelog_blocks,
              fixture_tear_down);
  g_test_add ("/checkpoint/first-format", Fixture, NULL, fixture_set_up,
              test_changelog_first_format, fixture_tear_down);
  g_test_add ("/checkpoint/format", Fixture, NULL, fixture_set_up, test_changelog_format,
              fixture_tear_down);
  g_test_add_func ("/source/pattern-metadata-refresh", test_pattern_metadata_refresh);
  g_test_add ("/checkpoint/restore-many", Fixture, NULL, fixture_set_up, test_restore_many,
              fixture_tear_down);
  g_test_add ("/checkpoint/owner", Fixture, NULL, fixture_set_up, test_checkpoint_owner,
              fixture_tear_down);
  g_test_add ("/checkpoint/restore-covered", Fixture, NULL, fixture_set_up, test_restore_covered,
              fixture_tear_down);
  return g_test_run ();
}
