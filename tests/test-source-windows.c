/* test-source-windows.c — counts over time through the source actor and the embedded
 * broker: records produced with explicit timestamps, window cuts compared with a
 * reference computed here from the same records.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-broker.h"
#include "tally-config.h"
#include "tally-source.h"
#include "tally-test-util.h"

#include <string.h>

/* A window start: 1700000040000 is a multiple of 60 s. */
#define BASE ((gint64)1700000040000)
#define SIZE_MS 60000
#define BUCKET_MS 10000
#define GRACE_MS 10000

typedef struct
{
  TallyBroker *broker;
  char *input;
  char *changelog; /* NULL: no checkpoints */
  guint retain;    /* [windows] retain */
  TallyAggregatorHandle *handle;
  TallyArbiter *arbiter;
  TallySource *actor;
  TallyAddress *source;
} Fixture;

static int topic_serial;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->broker = tally_broker_new (0, 1, &error);
  g_assert_no_error (error);
  f->input = g_strdup_printf ("windows-input-%d", topic_serial++);
  g_assert_true (tally_broker_create_topic (f->broker, f->input, 2, &error));
  f->retain = 1000;
}

static void
start_source_full (Fixture *f, gboolean windows, guint grace_ms, guint idle_ms,
                   TallySourceWindowClosedFunc closed, gpointer closed_data)
{
  g_autoptr (TallyConfig) config = tally_config_new_default ();
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf = tally_test_broker_conf (f->broker);

  rd_kafka_conf_set (conf, "session.timeout.ms", "6000", NULL, 0);
  g_strfreev (config->input.topics);
  config->input.topics = g_strsplit (f->input, ";", -1);
  config->checkpoint.enabled = f->changelog != NULL;
  if (f->changelog != NULL)
    {
      g_free (config->checkpoint.changelog_topic);
      config->checkpoint.changelog_topic = g_strdup (f->changelog);
      config->checkpoint.interval_ms = 100;
    }
  config->windows.enabled = windows;
  config->windows.size_ms = SIZE_MS;
  config->windows.bucket_ms = BUCKET_MS;
  config->windows.grace_ms = grace_ms;
  config->windows.idle_ms = idle_ms;
  config->windows.retain = f->retain;

  f->handle = tally_aggregator_handle_new (2, 0);
  f->arbiter = tally_arbiter_new ("test-source-windows");
  f->actor = (TallySource *)tally_source_new (config, TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE, conf,
                                              f->handle, &error);
  g_assert_no_error (error);
  g_object_ref (f->actor);
  if (closed != NULL)
    tally_source_set_window_closed_func (f->actor, closed, closed_data, NULL);
  f->source = tally_actor_start (TALLY_ACTOR (f->actor), f->arbiter, 16);
}

static void
start_source (Fixture *f, gboolean windows)
{
  start_source_full (f, windows, GRACE_MS, 3600000, NULL, NULL);
}

static void
stop_source (Fixture *f)
{
  if (f->source != NULL)
    {
      tally_address_stop (f->source);
      g_assert_true (tally_address_wait_stopped (f->source, 30000));
      tally_arbiter_stop (f->arbiter);
      g_clear_pointer (&f->source, tally_address_unref);
      g_clear_pointer (&f->arbiter, tally_arbiter_unref);
      g_clear_object (&f->actor);
      tally_aggregator_handle_stop (f->handle);
      g_clear_pointer (&f->handle, tally_aggregator_handle_unref);
    }
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  stop_source (f);
  tally_broker_free (f->broker);
  g_free (f->input);
  g_free (f->changelog);
}

typedef struct
{
  gint32 partition;
  gint64 timestamp;
  const char *value;
} Record;

static void
produce (Fixture *f, const Record *records, guint n)
{
  char errstr[256];
  rd_kafka_t *producer
      = rd_kafka_new (RD_KAFKA_PRODUCER, tally_test_broker_conf (f->broker), errstr, sizeof errstr);

  g_assert_nonnull (producer);
  for (guint i = 0; i < n; i++)
    g_assert_cmpint (
        rd_kafka_producev (producer, RD_KAFKA_V_TOPIC (f->input),
                           RD_KAFKA_V_PARTITION (records[i].partition),
                           RD_KAFKA_V_TIMESTAMP (records[i].timestamp),
                           RD_KAFKA_V_VALUE ((void *)records[i].value, strlen (records[i].value)),
                           RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  g_assert_cmpint (rd_kafka_flush (producer, 10000), ==, RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy (producer);
}

typedef struct
{
  Fixture *f;
  TallySnapshotCut *cut;
  GError *error;
  gboolean done;
} CutWait;

static void
on_cut (GObject *object, GAsyncResult *result, gpointer user_data)
{
  CutWait *w = user_data;
  w->cut = tally_source_snapshot_finish (w->f->source, result, &w->error);
  w->done = TRUE;
}

static void
on_window_cut (GObject *object, GAsyncResult *result, gpointer user_data)
{
  CutWait *w = user_data;
  w->cut = tally_source_window_snapshot_finish (w->f->source, result, &w->error);
  w->done = TRUE;
}

/* A window cut, or NULL with @error set. */
static TallySnapshotCut *
take_window_cut (Fixture *f, const TallyWindowSelector *selector, GError **error)
{
  CutWait w = { f, NULL, NULL, FALSE };

  tally_source_window_snapshot_async (f->source, selector, NULL, on_window_cut, &w);
  while (!w.done)
    g_main_context_iteration (NULL, TRUE);
  if (w.error != NULL)
    g_propagate_error (error, w.error);
  return w.cut;
}

/* Waits until the all-time cut reflects @n records. */
static void
wait_records (Fixture *f, gint64 n)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;

  for (;;)
    {
      CutWait w = { f, NULL, NULL, FALSE };
      gint64 seen = 0;

      tally_source_snapshot_async (f->source, NULL, NULL, on_cut, &w);
      while (!w.done)
        g_main_context_iteration (NULL, TRUE);
      g_assert_no_error (w.error);
      for (int i = 0; i < w.cut->offsets->cnt; i++)
        seen += MAX (w.cut->offsets->elems[i].offset, 0);
      tally_snapshot_cut_free (w.cut);
      if (seen >= n)
        {
          g_assert_cmpint (seen, ==, n);
          return;
        }
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50 * 1000);
    }
}

/* The records of the test: two partitions, a few windows, one record late within grace
 * and two beyond it. Each value is one word: the word says which window it belongs to. */
static const Record records[] = {
  { 0, BASE + 1000, "w0 a" },
  { 0, BASE + 25000, "w0 b" },
  { 1, BASE + 5000, "w0 a" },
  { 0, BASE + 61000, "w1 a" },
  /* partition 0 is at 61 s: a record at 59 s is late, but within the 10 s grace */
  { 0, BASE + 59000, "w0 late" },
  { 1, BASE + 65000, "w1 c" },
  { 0, BASE + 130000, "w2 a" },
  /* partition 0 is at 130 s: [60 s, 120 s) closed at 130 s; 119 s is beyond grace */
  { 0, BASE + 119000, "w1 toolate" },
  /* partition 1 is at 65 s only: its record at 50 s still counts in [0, 60 s) */
  { 1, BASE + 50000, "w0 p1" },
  { 1, BASE + 200000, "w3 d" },
  { 1, BASE + 70000, "w1 toolate" },
};

/* The reference: per partition, stream time = the largest timestamp so far; a record
 * whose window ends at or before stream time - grace is late. */
static GHashTable *
reference_window (gint64 start, guint *n_late)
{
  GHashTable *words = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gint64 stream[2] = { G_MININT64, G_MININT64 };

  *n_late = 0;
  for (guint i = 0; i < G_N_ELEMENTS (records); i++)
    {
      const Record *r = &records[i];
      gint64 window = r->timestamp - r->timestamp % SIZE_MS;
      g_auto (GStrv) split = NULL;

      if (stream[r->partition] != G_MININT64 && window + SIZE_MS + GRACE_MS <= stream[r->partition])
        {
          (*n_late)++;
          continue;
        }
      stream[r->partition] = MAX (stream[r->partition], r->timestamp);
      if (window != start)
        continue;
      split = g_strsplit (r->value, " ", -1);
      for (guint k = 0; split[k] != NULL; k++)
        g_hash_table_insert (
            words, g_strdup (split[k]),
            GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (words, split[k])) + 1));
    }
  return words;
}

static void
assert_counts_equal_reference (TallyCounts *counts, GHashTable *reference)
{
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  g_assert_cmpuint (n, ==, g_hash_table_size (reference));
  for (gsize i = 0; i < n; i++)
    {
      g_test_message ("%s=%" G_GUINT64_FORMAT, e[i].word, e[i].count);
      g_assert_cmpuint (e[i].count, ==,
                        GPOINTER_TO_UINT (g_hash_table_lookup (reference, e[i].word)));
    }
}

static void
test_windows_reference (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint n_late = 0;

  start_source (f, TRUE);
  /* Partition by partition in order: the source reads each partition in offset order. */
  produce (f, records, G_N_ELEMENTS (records));
  wait_records (f, G_N_ELEMENTS (records));

  for (gint64 w = 0; w < 4; w++)
    {
      TallyWindowSelector sel = { TALLY_WINDOW_SELECT_START, BASE + w * SIZE_MS, 0 };
      g_autoptr (GHashTable) reference = reference_window (BASE + w * SIZE_MS, &n_late);
      g_autoptr (TallySnapshotCut) cut = take_window_cut (f, &sel, &error);

      g_assert_no_error (error);
      g_assert_true (cut->windowed);
      g_assert_cmpint (cut->window_start_ms, ==, BASE + w * SIZE_MS);
      g_assert_cmpint (cut->window_end_ms, ==, BASE + (w + 1) * SIZE_MS);
      assert_counts_equal_reference (cut->counts, reference);
    }
  g_assert_cmpuint (n_late, ==, 2);
  g_assert_cmpuint (tally_source_get_late_records (f->actor), ==, n_late);

  /* "current": the window of the newest stream time, 200 s: [180 s, 240 s). */
  {
    TallyWindowSelector sel = { TALLY_WINDOW_SELECT_CURRENT, 0, 0 };
    g_autoptr (TallySnapshotCut) cut = take_window_cut (f, &sel, &error);

    g_assert_no_error (error);
    g_assert_cmpint (cut->window_start_ms, ==, BASE + 3 * SIZE_MS);
    tally_test_assert_entries (cut->counts, "d=1 w3=1 ");
  }
  /* The last 80 s, in 10 s buckets: [130 s, 210 s) holds "w2 a" and "w3 d". */
  {
    TallyWindowSelector sel = { TALLY_WINDOW_SELECT_LAST_DURATION, 0, 80000 };
    g_autoptr (TallySnapshotCut) cut = take_window_cut (f, &sel, &error);

    g_assert_no_error (error);
    g_assert_cmpint (cut->window_start_ms, ==, BASE + 130000);
    g_assert_cmpint (cut->window_end_ms, ==, BASE + 210000);
    tally_test_assert_entries (cut->counts, "a=1 d=1 w2=1 w3=1 ");
  }
  /* A misaligned start is an error the requester sees. */
  {
    TallyWindowSelector sel = { TALLY_WINDOW_SELECT_START, BASE + 1, 0 };
    g_autoptr (TallySnapshotCut) cut = take_window_cut (f, &sel, &error);

    g_assert_null (cut);
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_clear_error (&error);
  }
}

/* Windows off: a window request is answered with an error, and nothing is late. */
static void
test_windows_disabled (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  TallyWindowSelector sel = { TALLY_WINDOW_SELECT_CURRENT, 0, 0 };
  g_autoptr (TallySnapshotCut) cut = NULL;

  start_source (f, FALSE);
  produce (f, records, 3);
  wait_records (f, 3);
  cut = take_window_cut (f, &sel, &error);
  g_assert_null (cut);
  g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_DISABLED);
  g_assert_cmpuint (tally_source_get_late_records (f->actor), ==, 0);
}

/* Closed windows, as the source hands them out: on its thread, so under a lock. */
typedef struct
{
  GMutex lock;
  GPtrArray *cuts; /* TallySnapshotCut */
} Closed;

static void
on_closed (TallySnapshotCut *cut, gpointer user_data)
{
  Closed *c = user_data;

  g_mutex_lock (&c->lock);
  g_ptr_array_add (c->cuts, cut);
  g_mutex_unlock (&c->lock);
}

static guint
n_closed (Closed *c)
{
  guint n;

  g_mutex_lock (&c->lock);
  n = c->cuts->len;
  g_mutex_unlock (&c->lock);
  return n;
}

static void
wait_closed (Closed *c, guint n)
{
  gint64 deadline = g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND;

  while (n_closed (c) < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20 * 1000);
    }
}

/* A closed window's final counts are handed out once; a quiet partition stops holding a
 * window open after the idle time (300 ms here), without new records of its own. */
static void
test_windows_closed_once (Fixture *f, gconstpointer data)
{
  static const Record first[] = {
    { 0, BASE + 1000, "a" },
    { 1, BASE + 5000, "c" },
    { 0, BASE + 61000, "b" },
  };
  static const Record more[] = {
    { 0, BASE + 125000, "d" },
  };
  Closed c = { 0 };
  TallySnapshotCut *cut;
  gint64 produced_us;

  g_mutex_init (&c.lock);
  c.cuts = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_snapshot_cut_free);
  start_source_full (f, TRUE, 0, 300, on_closed, &c);
  produce (f, first, G_N_ELEMENTS (first));
  wait_records (f, G_N_ELEMENTS (first));
  produced_us = g_get_monotonic_time ();

  /* Partition 1 (at 5 s) holds [0, 60 s) open until it is idle; then it closes. */
  wait_closed (&c, 1);
  g_test_message ("closed %" G_GINT64_FORMAT " ms after the records were counted",
                  (g_get_monotonic_time () - produced_us) / 1000);
  cut = g_ptr_array_index (c.cuts, 0);
  g_assert_cmpint (cut->window_start_ms, ==, BASE);
  g_assert_cmpint (cut->window_end_ms, ==, BASE + SIZE_MS);
  tally_test_assert_entries (cut->counts, "a=1 c=1 ");

  /* Partition 0 moves on to 125 s: [60 s, 120 s) closes, with partition 1 idle. */
  produce (f, more, G_N_ELEMENTS (more));
  wait_closed (&c, 2);
  cut = g_ptr_array_index (c.cuts, 1);
  g_assert_cmpint (cut->window_start_ms, ==, BASE + SIZE_MS);
  tally_test_assert_entries (cut->counts, "b=1 ");

  /* Once each: nothing more in the next two window timer ticks. */
  g_usleep (2200 * 1000);
  g_assert_cmpuint (n_closed (&c), ==, 2);

  stop_source (f); /* before c goes */
  g_ptr_array_unref (c.cuts);
  g_mutex_clear (&c.lock);
}

/* Windows survive a restart through the changelog: the same counts per window, the same
 * stream time (a record late before the restart is late after it), and a window whose
 * final counts were handed out before is not handed out again. */
static void
test_windows_restore (Fixture *f, gconstpointer data)
{
  static const Record more[] = {
    /* partition 0 was at 130 s: [0, 60 s) closed for it, also after the restart */
    { 0, BASE + 30000, "w0 latecomer" },
    { 0, BASE + 131000, "w2 e" },
  };
  g_autoptr (GError) error = NULL;
  guint n_late;

  f->changelog = g_strdup_printf ("windows-changelog-%d", topic_serial++);
  start_source (f, TRUE);
  produce (f, records, G_N_ELEMENTS (records));
  wait_records (f, G_N_ELEMENTS (records));
  stop_source (f); /* checkpoints, commits */

  start_source (f, TRUE);
  produce (f, more, G_N_ELEMENTS (more));
  wait_records (f, G_N_ELEMENTS (records) + G_N_ELEMENTS (more));
  for (gint64 w = 0; w < 4; w++)
    {
      TallyWindowSelector sel = { TALLY_WINDOW_SELECT_START, BASE + w * SIZE_MS, 0 };
      g_autoptr (GHashTable) reference = reference_window (BASE + w * SIZE_MS, &n_late);
      g_autoptr (TallySnapshotCut) cut = take_window_cut (f, &sel, &error);

      g_assert_no_error (error);
      if (w == 2)
        {
          g_hash_table_insert (reference, g_strdup ("e"), GUINT_TO_POINTER (1));
          g_hash_table_insert (reference, g_strdup ("w2"), GUINT_TO_POINTER (2));
        }
      assert_counts_equal_reference (cut->counts, reference);
    }
  /* The latecomer was late by the restored stream time. */
  g_assert_cmpuint (tally_source_get_late_records (f->actor), ==, 1);
}

/* An expired bucket leaves the changelog: its words are tombstoned by the checkpoint that
 * drops it, so a restore does not bring it back. */
static void
test_windows_tombstones (Fixture *f, gconstpointer data)
{
  static const Record old_and_new[] = {
    { 0, BASE + 1000, "old" },
    { 0, BASE + 200000, "new" },
  };
  g_autoptr (GError) error = NULL;
  gint64 deadline;

  f->changelog = g_strdup_printf ("windows-changelog-%d", topic_serial++);
  f->retain = 0;
  start_source (f, TRUE);
  produce (f, old_and_new, G_N_ELEMENTS (old_and_new));
  wait_records (f, G_N_ELEMENTS (old_and_new));
  /* The window timer (1 s) closes [0, 60 s) and the next checkpoint drops its bucket. */
  deadline = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  for (;;)
    {
      g_autoptr (TallyCounts) all = tally_aggregator_handle_get_window_counts (
          f->handle, NULL, 0, G_MININT64 + 1, G_MAXINT64, NULL, &error);

      g_assert_no_error (error);
      if (tally_counts_lookup (all, "old", 3) == 0)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (100 * 1000);
    }
  stop_source (f);

  start_source (f, TRUE);
  wait_records (f, G_N_ELEMENTS (old_and_new));
  {
    g_autoptr (TallyCounts) all = tally_aggregator_handle_get_window_counts (
        f->handle, NULL, 0, G_MININT64 + 1, G_MAXINT64, NULL, &error);

    tally_test_assert_entries (all, "new=1 ");
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/source-windows/reference", Fixture, NULL, fixture_set_up, test_windows_reference,
              fixture_tear_down);
  g_test_add ("/source-windows/closed-once", Fixture, NULL, fixture_set_up,
              test_windows_closed_once, fixture_tear_down);
  g_test_add ("/source-windows/restore", Fixture, NULL, fixture_set_up, test_windows_restore,
              fixture_tear_down);
  g_test_add ("/source-windows/tombstones", Fixture, NULL, fixture_set_up, test_windows_tombstones,
              fixture_tear_down);
  g_test_add ("/source-windows/disabled", Fixture, NULL, fixture_set_up, test_windows_disabled,
              fixture_tear_down);
  return g_test_run ();
}
