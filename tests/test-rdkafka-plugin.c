/* test-rdkafka-plugin.c — the librdkafka plugin loaded the way any host loads it.
 *
 * Every test here is a librdkafka host: it sets `plugin.library.paths` to the built module
 * ($TALLY_RDKAFKA_PLUGIN, set by tests/meson.build), creates ordinary clients against the
 * embedded broker (TallyBroker) and reads the snapshots back from the output topic the
 * way any Kafka client would. The expected counts are computed here by splitting the
 * produced text (lowercase ASCII words separated by single spaces), not by Tally.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-snapshot-format.h"

#include <glib/gstdio.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

typedef struct
{
  TallyBroker *broker;
  char *input;
  char *output;
  char *requests;
  char *tmpdir;
} Fixture;

static const char *plugin_path;
static int serial;

/* Log lines of the plugin ("tally plugin (...)"), kept for the drop tests. */
static GMutex log_lock;
static GPtrArray *log_lines;

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0 && fields[i].length < 0
        && g_str_has_prefix (fields[i].value, "tally plugin"))
      {
        g_mutex_lock (&log_lock);
        g_ptr_array_add (log_lines, g_strdup (fields[i].value));
        g_mutex_unlock (&log_lock);
      }
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return g_log_writer_default (level, fields, n_fields, user_data);
  if (g_test_verbose ())
    return g_log_writer_standard_streams (level, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  int n = serial++;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  f->input = g_strdup_printf ("plugin-input-%d", n);
  f->output = g_strdup_printf ("plugin-output-%d", n);
  f->requests = g_strdup_printf ("plugin-requests-%d", n);
  g_assert_true (tally_broker_create_topic (f->broker, f->input, 2, &error));
  g_assert_true (tally_broker_create_topic (f->broker, f->output, 1, &error));
  g_assert_true (tally_broker_create_topic (f->broker, f->requests, 1, &error));
  g_assert_no_error (error);
  f->tmpdir = g_dir_make_tmp ("test-rdkafka-plugin-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_autoptr (GDir) dir = g_dir_open (f->tmpdir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (f->tmpdir, name, NULL);
      g_unlink (path);
    }
  g_rmdir (f->tmpdir);
  g_free (f->tmpdir);
  tally_broker_free (f->broker);
  g_free (f->input);
  g_free (f->output);
  g_free (f->requests);
}

static void
set_ok (rd_kafka_conf_t *conf, const char *name, const char *value)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    g_error ("%s=%s: %s", name, value, errstr);
}

static rd_kafka_conf_t *
client_conf (Fixture *f)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();

  set_ok (conf, "bootstrap.servers", tally_broker_get_bootstrap_servers (f->broker));
  return conf;
}

/* A consumer configuration with the plugin and this fixture's topics. */
static rd_kafka_conf_t *
plugin_conf (Fixture *f)
{
  rd_kafka_conf_t *conf = client_conf (f);

  set_ok (conf, "group.id", "plugin-test");
  set_ok (conf, "plugin.library.paths", plugin_path);
  set_ok (conf, "tally.output.topic", f->output);
  set_ok (conf, "tally.requests.topic", f->requests);
  set_ok (conf, "tally.shards", "2");
  return conf;
}

static char *
write_file (Fixture *f, const char *name, const char *text)
{
  char *path = g_build_filename (f->tmpdir, name, NULL);

  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

/* Produces @values[i] to @topic, partition @partitions[i] (or i % 2 when NULL). */
static void
produce (Fixture *f, const char *topic, char **values, guint n)
{
  char errstr[512];
  rd_kafka_t *producer = rd_kafka_new (RD_KAFKA_PRODUCER, client_conf (f), errstr, sizeof errstr);

  g_assert_nonnull (producer);
  for (guint i = 0; i < n; i++)
    g_assert_cmpint (rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (topic),
                                        RD_KAFKA_V_PARTITION ((gint32)(i % 2)),
                                        RD_KAFKA_V_VALUE (values[i], strlen (values[i])),
                                        RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);
}

static void
send_request (Fixture *f, const char *request_id)
{
  char errstr[512];
  rd_kafka_t *producer = rd_kafka_new (RD_KAFKA_PRODUCER, client_conf (f), errstr, sizeof errstr);

  g_assert_nonnull (producer);
  g_assert_cmpint (rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (f->requests),
                                      RD_KAFKA_V_KEY (request_id, strlen (request_id)),
                                      RD_KAFKA_V_END),
                   ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);
}

/* A consumer with the plugin, assigned both input partitions from the start. */
static rd_kafka_t *
start_consumer (rd_kafka_conf_t *conf, Fixture *f)
{
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (2);

  g_assert_nonnull (rk);
  rd_kafka_poll_set_consumer (rk);
  rd_kafka_topic_partition_list_add (list, f->input, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_topic_partition_list_add (list, f->input, 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
  g_assert_cmpint (rd_kafka_assign (rk, list), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy (list);
  return rk;
}

/* Polls until @n records were consumed. */
static void
consume (rd_kafka_t *rk, guint n)
{
  guint got = 0;
  gint64 deadline = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;

  while (got < n)
    {
      rd_kafka_message_t *m = rd_kafka_consumer_poll (rk, 100);

      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (m == NULL)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        got++;
      rd_kafka_message_destroy (m);
    }
  g_assert_cmpuint (got, ==, n);
}

static void
close_and_destroy (rd_kafka_t *rk)
{
  rd_kafka_consumer_close (rk);
  rd_kafka_destroy (rk);
}

/* Reads the output topic from the start until a complete snapshot answering @request_id
 * (or, when NULL, the first complete snapshot after skipping @skip of them) came. */
static TallySnapshot *
read_snapshot (Fixture *f, const char *request_id, guint skip)
{
  char errstr[512];
  rd_kafka_conf_t *conf = client_conf (f);
  rd_kafka_t *rk;
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (1);
  g_autoptr (TallySnapshotAssembler) assembler = NULL;
  gint64 deadline = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;
  TallySnapshot *snapshot = NULL;

  set_ok (conf, "group.id", "plugin-test-reader");
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  g_assert_nonnull (rk);
  rd_kafka_poll_set_consumer (rk);
  rd_kafka_topic_partition_list_add (list, f->output, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  g_assert_cmpint (rd_kafka_assign (rk, list), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy (list);

  while (snapshot == NULL)
    {
      rd_kafka_message_t *m = rd_kafka_consumer_poll (rk, 100);
      g_autoptr (GError) error = NULL;
      TallySnapshotPart *part;

      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (m == NULL)
        continue;
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          rd_kafka_message_destroy (m);
          continue;
        }
      part = tally_snapshot_part_decode (m->payload, m->len, &error);
      g_assert_no_error (error);
      rd_kafka_message_destroy (m);
      if (request_id != NULL && strcmp (tally_snapshot_part_get_request_id (part), request_id) != 0)
        {
          tally_snapshot_part_free (part);
          continue;
        }
      if (assembler == NULL)
        assembler = tally_snapshot_assembler_new (tally_snapshot_part_get_request_id (part), NULL);
      if (tally_snapshot_assembler_add_part (assembler, part, &error))
        {
          snapshot = tally_snapshot_assembler_take_snapshot (assembler);
          if (skip > 0)
            {
              skip--;
              g_clear_pointer (&snapshot, tally_snapshot_free);
              g_clear_pointer (&assembler, tally_snapshot_assembler_free);
            }
        }
      g_assert_no_error (error);
    }
  close_and_destroy (rk);
  return snapshot;
}

/* Counts the words of @values the way the test text is written: single spaces. */
static GHashTable *
expected_counts (char **values, guint n)
{
  GHashTable *counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; i < n; i++)
    {
      g_auto (GStrv) words = g_strsplit (values[i], " ", -1);

      for (char **w = words; *w != NULL; w++)
        if (**w != '\0')
          {
            gpointer old = g_hash_table_lookup (counts, *w);

            g_hash_table_replace (counts, g_strdup (*w),
                                  GSIZE_TO_POINTER (GPOINTER_TO_SIZE (old) + 1));
          }
    }
  return counts;
}

static void
assert_counts (TallySnapshot *snapshot, GHashTable *expected)
{
  gsize n_entries = 0;
  const TallyWordCount *entries;
  GHashTableIter iter;
  gpointer key, value;

  g_assert_null (snapshot->error);
  entries = tally_counts_get_entries (snapshot->counts, &n_entries);
  g_assert_cmpuint (n_entries, ==, g_hash_table_size (expected));
  for (gsize i = 0; i < n_entries; i++)
    g_assert_cmpuint (entries[i].count, ==,
                      GPOINTER_TO_SIZE (g_hash_table_lookup (expected, entries[i].word)));
  g_hash_table_iter_init (&iter, expected);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_assert_cmpuint (tally_counts_lookup (snapshot->counts, key, strlen (key)), ==,
                      GPOINTER_TO_SIZE (value));
}

static gint64
snapshot_offset (TallySnapshot *snapshot, const char *topic, gint32 partition)
{
  rd_kafka_topic_partition_t *tp;

  if (snapshot->offsets == NULL)
    return -1;
  tp = rd_kafka_topic_partition_list_find (snapshot->offsets, topic, partition);
  return tp != NULL ? tp->offset : -1;
}

static char **
make_values (guint n)
{
  static const char *const words[] = { "alpha", "beta", "gamma", "delta", "epsilon" };
  char **values = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    values[i] = g_strdup_printf ("%s %s record%u %s", words[i % 5], words[(i * 3) % 5], i % 7,
                                 words[(i + 1) % 5]);
  return values;
}

/* ---------------------------------------------------------------------------------------
 * Counting and snapshots
 * ------------------------------------------------------------------------------------- */

static void
test_counts_on_request (Fixture *f, gconstpointer data)
{
  g_auto (GStrv) values = make_values (200);
  g_autoptr (GHashTable) expected = expected_counts (values, 200);
  g_autoptr (TallySnapshot) snapshot = NULL;
  rd_kafka_t *rk;

  produce (f, f->input, values, 200);
  rk = start_consumer (plugin_conf (f), f);
  consume (rk, 200);

  send_request (f, "req-counts");
  snapshot = read_snapshot (f, "req-counts", 0);
  assert_counts (snapshot, expected);
  g_assert_cmpuint (snapshot->total_words, ==, 800);
  g_assert_cmpint (snapshot_offset (snapshot, f->input, 0), ==, 100);
  g_assert_cmpint (snapshot_offset (snapshot, f->input, 1), ==, 100);
  close_and_destroy (rk);
}

static gboolean
has_partition (const rd_kafka_topic_partition_list_t *list, const char *topic, gint32 partition)
{
  return list != NULL && rd_kafka_topic_partition_list_find (list, topic, partition) != NULL;
}

/* An input topic of four partitions; the host is assigned 0, 1 and 2, and partition 2
 * never receives a record (nor does 3, which is not assigned). The answer covers every
 * assigned partition, the empty one with no offset and none of its words (there are
 * none), so that `tally snapshot` (which waits for every input partition) completes. */
static void
test_empty_assigned_partition (Fixture *f, gconstpointer data)
{
  g_auto (GStrv) values = make_values (200);
  g_autoptr (GHashTable) expected = expected_counts (values, 200);
  g_autoptr (TallySnapshot) snapshot = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *topic = g_strdup_printf ("%s-four", f->input);
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (3);
  char errstr[512];
  rd_kafka_t *rk;

  g_assert_true (tally_broker_create_topic (f->broker, topic, 4, &error));
  g_assert_no_error (error);
  produce (f, topic, values, 200); /* partitions 0 and 1 only */
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, plugin_conf (f), errstr, sizeof errstr);
  g_assert_nonnull (rk);
  rd_kafka_poll_set_consumer (rk);
  for (gint32 p = 0; p < 3; p++)
    rd_kafka_topic_partition_list_add (list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  g_assert_cmpint (rd_kafka_assign (rk, list), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy (list);
  consume (rk, 200);

  send_request (f, "req-empty");
  snapshot = read_snapshot (f, "req-empty", 0);
  assert_counts (snapshot, expected);
  g_assert_cmpuint (snapshot->total_words, ==, 800);
  g_assert_nonnull (snapshot->partitions);
  g_assert_cmpint (snapshot->partitions->cnt, ==, 3);
  for (gint32 p = 0; p < 3; p++)
    g_assert_true (has_partition (snapshot->partitions, topic, p));
  g_assert_false (has_partition (snapshot->partitions, topic, 3));
  g_assert_cmpint (snapshot->offsets->cnt, ==, 2);
  g_assert_cmpint (snapshot_offset (snapshot, topic, 0), ==, 100);
  g_assert_cmpint (snapshot_offset (snapshot, topic, 1), ==, 100);
  g_assert_false (has_partition (snapshot->offsets, topic, 2));
  g_assert_false (has_partition (snapshot->offsets, topic, 3));
  close_and_destroy (rk);
}

static void
test_final_snapshot (Fixture *f, gconstpointer data)
{
  g_auto (GStrv) values = make_values (50);
  g_autoptr (GHashTable) expected = expected_counts (values, 50);
  g_autoptr (TallySnapshot) snapshot = NULL;
  rd_kafka_t *rk;

  produce (f, f->input, values, 50);
  rk = start_consumer (plugin_conf (f), f);
  consume (rk, 50);
  close_and_destroy (rk);

  /* Nobody asked: the only snapshot is the final one, published by on_destroy. */
  snapshot = read_snapshot (f, NULL, 0);
  assert_counts (snapshot, expected);
  g_assert_cmpint (snapshot_offset (snapshot, f->input, 0), ==, 25);
  g_assert_cmpint (snapshot_offset (snapshot, f->input, 1), ==, 25);
}

/* [snapshot] interval_ms publishes snapshots with nobody asking; one taken after the
 * last record was consumed has every count. */
static void
test_interval (Fixture *f, gconstpointer data)
{
  g_autofree char *text
      = g_strdup_printf ("[output]\ntopic=%s\n[requests]\ntopic=%s\n[snapshot]\ninterval_ms=100\n",
                         f->output, f->requests);
  g_autofree char *path = write_file (f, "interval.conf", text);
  g_auto (GStrv) values = make_values (30);
  g_autoptr (GHashTable) expected = expected_counts (values, 30);
  rd_kafka_conf_t *conf = client_conf (f);
  rd_kafka_t *rk;

  set_ok (conf, "group.id", "plugin-test");
  set_ok (conf, "plugin.library.paths", plugin_path);
  set_ok (conf, "tally.config", path);
  produce (f, f->input, values, 30);
  rk = start_consumer (conf, f);
  consume (rk, 30);
  for (guint skip = 0;; skip++)
    {
      g_autoptr (TallySnapshot) snapshot = read_snapshot (f, NULL, skip);

      if (snapshot_offset (snapshot, f->input, 0) == 15
          && snapshot_offset (snapshot, f->input, 1) == 15)
        {
          assert_counts (snapshot, expected);
          break;
        }
    }
  close_and_destroy (rk);
}

/* The key-file gives the request topic and the tokenizer; a tally.* property overrides
 * the file's [output] topic, whichever was set first. */
static void
test_key_file (Fixture *f, gconstpointer data)
{
  g_autofree char *text = g_strdup_printf (
      "[output]\ntopic=wrong-topic\n[requests]\ntopic=%s\n[tokenizer]\nmode=record\n", f->requests);
  g_autofree char *path = write_file (f, "tally.conf", text);
  char *values[] = { "Same Line", "same line", "Same Line", NULL };
  g_autoptr (TallySnapshot) snapshot = NULL;
  rd_kafka_conf_t *conf = client_conf (f);
  rd_kafka_t *rk;

  set_ok (conf, "group.id", "plugin-test");
  set_ok (conf, "plugin.library.paths", plugin_path);
  set_ok (conf, "tally.output.topic", f->output);
  set_ok (conf, "tally.config", path);
  set_ok (conf, "tally.shards", "1");
  produce (f, f->input, values, 3);
  rk = start_consumer (conf, f);
  consume (rk, 3);
  close_and_destroy (rk);

  snapshot = read_snapshot (f, NULL, 0);
  g_assert_null (snapshot->error);
  g_assert_cmpuint (tally_counts_get_n_words (snapshot->counts), ==, 2);
  g_assert_cmpuint (tally_counts_lookup (snapshot->counts, "Same Line", 9), ==, 2);
  g_assert_cmpuint (tally_counts_lookup (snapshot->counts, "same line", 9), ==, 1);
}

/* A copy of the configuration keeps the plugin and its settings. */
static void
test_conf_dup (Fixture *f, gconstpointer data)
{
  g_auto (GStrv) values = make_values (20);
  g_autoptr (GHashTable) expected = expected_counts (values, 20);
  g_autoptr (TallySnapshot) snapshot = NULL;
  rd_kafka_conf_t *conf = plugin_conf (f);
  rd_kafka_conf_t *copy = rd_kafka_conf_dup (conf);
  rd_kafka_conf_t *unplugged;
  const char *filter[] = { "plugin.library.paths" };
  char errstr[512];
  rd_kafka_t *rk;

  rd_kafka_conf_destroy (conf);
  /* The copy still knows the plugin's properties. */
  g_assert_cmpint (rd_kafka_conf_set (copy, "tally.full", "drop", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_OK);
  /* A copy filtered of plugin.library.paths has no plugin: tally.* is unknown there. */
  unplugged = rd_kafka_conf_dup_filter (copy, G_N_ELEMENTS (filter), filter);
  g_assert_cmpint (rd_kafka_conf_set (unplugged, "tally.full", "drop", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_UNKNOWN);
  rd_kafka_conf_destroy (unplugged);

  produce (f, f->input, values, 20);
  rk = start_consumer (copy, f);
  consume (rk, 20);
  close_and_destroy (rk);
  snapshot = read_snapshot (f, NULL, 0);
  assert_counts (snapshot, expected);
}

/* ---------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------- */

static void
test_load_twice (Fixture *f, gconstpointer data)
{
  g_autofree char *same_twice = g_strdup_printf ("%s;%s", plugin_path, plugin_path);
  g_autofree char *stem = g_strndup (plugin_path, strlen (plugin_path) - strlen (".so"));
  g_autofree char *two_spellings = g_strdup_printf ("%s;%s", plugin_path, stem);
  char errstr[512];
  rd_kafka_conf_t *conf;

  g_assert_true (g_str_has_suffix (plugin_path, ".so"));

  /* The same path twice: librdkafka itself loads it once. */
  conf = rd_kafka_conf_new ();
  g_assert_cmpint (
      rd_kafka_conf_set (conf, "plugin.library.paths", same_twice, errstr, sizeof errstr), ==,
      RD_KAFKA_CONF_OK);
  rd_kafka_conf_destroy (conf);

  /* Two spellings of the same module (librdkafka appends ".so" to the stem). */
  conf = rd_kafka_conf_new ();
  g_assert_cmpint (
      rd_kafka_conf_set (conf, "plugin.library.paths", two_spellings, errstr, sizeof errstr), ==,
      RD_KAFKA_CONF_INVALID);
  g_assert_true (g_str_has_prefix (errstr, "plugin.library.paths: the Tally plugin is already "
                                           "loaded into this configuration"));
  g_assert_nonnull (strstr (errstr, stem));
  rd_kafka_conf_destroy (conf);

  /* The property set a second time: refused, and the first load stays usable. */
  conf = rd_kafka_conf_new ();
  set_ok (conf, "plugin.library.paths", plugin_path);
  g_assert_cmpint (rd_kafka_conf_set (conf, "plugin.library.paths", stem, errstr, sizeof errstr),
                   ==, RD_KAFKA_CONF_INVALID);
  g_assert_true (g_str_has_prefix (errstr, "plugin.library.paths: the Tally plugin is already "));
  g_assert_cmpint (rd_kafka_conf_set (conf, "tally.shards", "1", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_OK);
  rd_kafka_conf_destroy (conf);
}

/* In a producer the plugin has nothing to count: the producer works as without it. */
static void
test_producer (Fixture *f, gconstpointer data)
{
  rd_kafka_conf_t *conf = client_conf (f);
  char errstr[512];
  rd_kafka_t *rk;

  set_ok (conf, "plugin.library.paths", plugin_path);
  set_ok (conf, "tally.output.topic", f->output);
  rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  g_assert_nonnull (rk);
  g_assert_cmpint (rd_kafka_producev (rk, RD_KAFKA_V_TOPIC (f->input), RD_KAFKA_V_VALUE ("a b", 3),
                                      RD_KAFKA_V_END),
                   ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (rk, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (rk);
}

/* ---------------------------------------------------------------------------------------
 * Configuration errors: each names its property
 * ------------------------------------------------------------------------------------- */

static void
assert_invalid (rd_kafka_conf_t *conf, const char *name, const char *value, const char *prefix)
{
  char errstr[512] = "";

  g_assert_cmpint (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_INVALID);
  if (!g_str_has_prefix (errstr, prefix))
    g_error ("%s=%s: \"%s\" does not start with \"%s\"", name, value, errstr, prefix);
}

static void
test_bad_properties (Fixture *f, gconstpointer data)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[512];

  /* Before the plugin is loaded librdkafka does not know tally.* at all. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "tally.shards", "1", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_UNKNOWN);
  set_ok (conf, "plugin.library.paths", plugin_path);

  assert_invalid (conf, "tally.bogus", "1",
                  "tally.bogus: unknown property of the Tally plugin (known: tally.config, "
                  "tally.output.topic, tally.requests.topic, tally.tokenizer, tally.shards, "
                  "tally.full, tally.full.wait.ms, tally.metrics.listen)");
  assert_invalid (conf, "tally.full", "sometimes",
                  "tally.full: expected \"drop\" or \"wait\", not \"sometimes\"");
  assert_invalid (conf, "tally.full.wait.ms", "60001",
                  "tally.full.wait.ms: expected milliseconds from 0 to 60000, not \"60001\"");
  assert_invalid (conf, "tally.full.wait.ms", "-1", "tally.full.wait.ms: expected milliseconds");
  /* config/'s messages name the property once, with no line number (no key-file line). */
  assert_invalid (conf, "tally.shards", "257",
                  "tally.shards: [aggregator] shards: 257 is out of range: must be from 0 to 256");
  assert_invalid (conf, "tally.tokenizer", "klingon",
                  "tally.tokenizer: [tokenizer] mode: “klingon” is not one of:");
  assert_invalid (conf, "tally.output.topic", "no spaces allowed",
                  "tally.output.topic: [output] topic: “no spaces allowed” is not a legal topic "
                  "name");
  /* Other unknown names are still librdkafka's. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "no.such.property", "1", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_UNKNOWN);
  /* Good values after bad ones are taken. */
  set_ok (conf, "tally.full", "wait");
  set_ok (conf, "tally.full.wait.ms", "0");
  set_ok (conf, "tally.shards", "0");
  set_ok (conf, "tally.tokenizer", "whitespace");
  rd_kafka_conf_destroy (conf);
}

static void
test_bad_key_file (Fixture *f, gconstpointer data)
{
  g_autofree char *missing = g_build_filename (f->tmpdir, "missing.conf", NULL);
  g_autofree char *bad_key = write_file (f, "bad-key.conf", "[aggregator]\nshardz=2\n");
  g_autofree char *recursive
      = write_file (f, "recursive.conf", "[kafka]\nplugin.library.paths=libtally-rdkafka\n");
  g_autofree char *prefix = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[512] = "";

  set_ok (conf, "plugin.library.paths", plugin_path);

  prefix = g_strdup_printf ("tally.config: Failed to open file “%s”", missing);
  assert_invalid (conf, "tally.config", missing, prefix);
  g_free (prefix);
  prefix = g_strdup_printf ("tally.config: %s:2: [aggregator] shardz: ", bad_key);
  assert_invalid (conf, "tally.config", bad_key, prefix);
  g_free (prefix);
  prefix = g_strdup_printf ("tally.config: %s: [kafka] plugin.library.paths must not be set",
                            recursive);
  assert_invalid (conf, "tally.config", recursive, prefix);

  /* The client still comes up, with the defaults. */
  g_assert_cmpint (rd_kafka_conf_set (conf, "tally.config", "", errstr, sizeof errstr), ==,
                   RD_KAFKA_CONF_OK);
  rd_kafka_conf_destroy (conf);
}

/* ---------------------------------------------------------------------------------------
 * Full mailboxes
 * ------------------------------------------------------------------------------------- */

/* Parses the final report line: "... N record(s) dropped so far ..." or "..., 0 records
 * dropped". */
static guint64
logged_drops (void)
{
  guint64 dropped = G_MAXUINT64;

  g_mutex_lock (&log_lock);
  for (guint i = 0; i < log_lines->len; i++)
    {
      const char *line = g_ptr_array_index (log_lines, i);
      const char *p = strstr (line, " record(s) dropped so far");

      if (p != NULL)
        {
          const char *start = p;

          while (start > line && g_ascii_isdigit (start[-1]))
            start--;
          dropped = g_ascii_strtoull (start, NULL, 10);
        }
      else if (strstr (line, ", 0 records dropped") != NULL)
        dropped = 0;
    }
  g_ptr_array_set_size (log_lines, 0);
  g_mutex_unlock (&log_lock);
  return dropped;
}

/* One shard whose mailbox holds one message, fed 400 records of 500 words each: record i
 * is the word "rI" 500 times, so each record's count is all or nothing. */
static guint64
run_full (Fixture *f, const char *policy, const char *wait_ms, guint64 *n_counted)
{
  g_autofree char *text
      = g_strdup_printf ("[output]\ntopic=%s\n[requests]\ntopic=%s\n[aggregator]\nshards=1\n"
                         "mailbox_capacity=1\n",
                         f->output, f->requests);
  g_autofree char *path = write_file (f, "full.conf", text);
  g_autoptr (TallySnapshot) snapshot = NULL;
  rd_kafka_conf_t *conf = client_conf (f);
  const guint n = 400;
  char **values = g_new0 (char *, n + 1);
  g_autoptr (GString) value = g_string_new (NULL);
  rd_kafka_t *rk;
  guint64 dropped;

  for (guint i = 0; i < n; i++)
    {
      g_string_truncate (value, 0);
      for (guint j = 0; j < 500; j++)
        g_string_append_printf (value, "r%u ", i);
      values[i] = g_strdup (value->str);
    }
  set_ok (conf, "group.id", "plugin-test");
  set_ok (conf, "plugin.library.paths", plugin_path);
  set_ok (conf, "tally.config", path);
  set_ok (conf, "tally.full", policy);
  set_ok (conf, "tally.full.wait.ms", wait_ms);
  produce (f, f->input, values, n);
  logged_drops ();
  rk = start_consumer (conf, f);
  consume (rk, n);
  close_and_destroy (rk);
  dropped = logged_drops ();

  snapshot = read_snapshot (f, NULL, 0);
  g_assert_null (snapshot->error);
  *n_counted = tally_counts_get_n_words (snapshot->counts);
  for (guint i = 0; i < n; i++)
    {
      char word[16];
      guint64 count;

      g_snprintf (word, sizeof word, "r%u", i);
      count = tally_counts_lookup (snapshot->counts, word, strlen (word));
      if (count != 0 && count != 500)
        g_error ("record %u counted in part: %" G_GUINT64_FORMAT " of 500 words", i, count);
    }
  /* Every record is either counted whole or reported dropped. */
  g_assert_cmpuint (*n_counted + dropped, ==, n);
  g_strfreev (values);
  return dropped;
}

static void
test_full_wait (Fixture *f, gconstpointer data)
{
  guint64 counted = 0;

  /* Waiting long enough loses nothing. */
  g_assert_cmpuint (run_full (f, "wait", "60000", &counted), ==, 0);
  g_assert_cmpuint (counted, ==, 400);
}

static void
test_full_drop (Fixture *f, gconstpointer data)
{
  guint64 counted = 0;
  guint64 dropped = run_full (f, "drop", "0", &counted);

  /* Whether a record finds the mailbox full depends on the shard's speed; what is exact
   * is the sum, checked in run_full(). */
  g_test_message ("drop: %" G_GUINT64_FORMAT " counted, %" G_GUINT64_FORMAT " dropped", counted,
                  dropped);
}

/* ---------------------------------------------------------------------------------------
 * Many clients in one process
 * ------------------------------------------------------------------------------------- */

static guint
count_dir (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static void
test_cycles (Fixture *f, gconstpointer data)
{
  char *values[] = { "one two", "two three", NULL };
  guint threads = 0, fds = 0;

  produce (f, f->input, values, 2);
  for (guint i = 0; i < 100; i++)
    {
      rd_kafka_t *rk = start_consumer (plugin_conf (f), f);

      consume (rk, 2);
      close_and_destroy (rk);
      /* After the first cycle (GLib's own threads started), nothing accumulates. */
      if (i == 0)
        {
          threads = count_dir ("/proc/self/task");
          fds = count_dir ("/proc/self/fd");
        }
    }
  g_assert_cmpuint (count_dir ("/proc/self/task"), ==, threads);
  g_assert_cmpuint (count_dir ("/proc/self/fd"), ==, fds);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The drop tests make the plugin warn on purpose. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  log_lines = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (log_writer, NULL, NULL);

  plugin_path = g_getenv ("TALLY_RDKAFKA_PLUGIN");
  if (plugin_path == NULL)
    {
      g_printerr ("TALLY_RDKAFKA_PLUGIN is not set (meson test sets it)\n");
      return 1;
    }

#define ADD(path, func)                                                                            \
  g_test_add ("/plugin/" path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("counts-on-request", test_counts_on_request);
  ADD ("empty-assigned-partition", test_empty_assigned_partition);
  ADD ("final-snapshot", test_final_snapshot);
  ADD ("interval", test_interval);
  ADD ("key-file", test_key_file);
  ADD ("conf-dup", test_conf_dup);
  ADD ("load-twice", test_load_twice);
  ADD ("producer", test_producer);
  ADD ("bad-properties", test_bad_properties);
  ADD ("bad-key-file", test_bad_key_file);
  ADD ("full-wait", test_full_wait);
  ADD ("full-drop", test_full_drop);
  ADD ("cycles", test_cycles);
#undef ADD
  return g_test_run ();
}
