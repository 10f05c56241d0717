/* test-windows.c — counts over time: buckets, the window clock, windowed aggregation.
 *
 * Pins tally-window-table (buckets summed and expired), tally-window-clock (record time to
 * bucket, late records within and beyond grace, idle partitions, each closed window handed
 * out once, selectors resolved) and the aggregator's windowed counts, which must equal a
 * reference computed from the same timestamped records.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-aggregator.h"
#include "tally-test-util.h"
#include "tally-window-clock.h"
#include "tally-window-table.h"
#include "tally-word-batcher.h"

#include <string.h>

#define MIN_MS ((gint64)60 * 1000)

static void
add (TallyWordTable *t, const char *word, guint64 n)
{
  tally_word_table_add (t, word, strlen (word), tally_word_hash (word, strlen (word)), n);
}

static guint64
lookup (TallyWordTable *t, const char *word)
{
  return tally_word_table_lookup (t, word, strlen (word), tally_word_hash (word, strlen (word)));
}

static void
test_table_sum_expire (void)
{
  g_autoptr (TallyWindowTable) w = tally_window_table_new ();
  g_autoptr (TallyWordTable) sum = tally_word_table_new ();

  add (tally_window_table_get_bucket (w, 2 * MIN_MS, TRUE), "b", 2);
  add (tally_window_table_get_bucket (w, 0, TRUE), "a", 1);
  add (tally_window_table_get_bucket (w, MIN_MS, TRUE), "a", 5);
  add (tally_window_table_get_bucket (w, 2 * MIN_MS, TRUE), "a", 7);
  g_assert_cmpuint (tally_window_table_get_n_buckets (w), ==, 3);
  g_assert_cmpint (tally_window_table_get_oldest (w), ==, 0);
  g_assert_null (tally_window_table_get_bucket (w, 3 * MIN_MS, FALSE));

  /* [1m, 3m): the buckets at 1m and 2m. */
  g_assert_cmpuint (tally_window_table_sum (w, MIN_MS, 3 * MIN_MS, sum), ==, 2);
  g_assert_cmpuint (lookup (sum, "a"), ==, 12);
  g_assert_cmpuint (lookup (sum, "b"), ==, 2);
  g_assert_cmpuint (tally_word_table_get_size (sum), ==, 2);

  g_assert_cmpuint (tally_window_table_expire (w, 2 * MIN_MS), ==, 2);
  g_assert_cmpuint (tally_window_table_get_n_buckets (w), ==, 1);
  g_assert_cmpint (tally_window_table_get_oldest (w), ==, 2 * MIN_MS);
  g_assert_null (tally_window_table_get_bucket (w, 0, FALSE));
  g_assert_cmpuint (tally_window_table_expire (w, 0), ==, 0);
  g_assert_cmpuint (tally_window_table_get_memory (w), >, 0);
}

/* tally_window_table_collect() over several stores' buckets: enough words that the sum is
 * split into partitions (over 4,096 staged words), words of up to 8 bytes and longer
 * words that share their first 8 bytes (decided by the rest of their bytes), counts that
 * are zero, and a prefix; every sum equals a reference kept in a GHashTable, each word
 * once. */
static void
check_collect (TallyWindowTable *const *tables, guint n_tables, gint64 from, gint64 to,
               const char *prefix, GHashTable *reference)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint want = 0;
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, reference);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (prefix == NULL || g_str_has_prefix (key, prefix))
      want++;
  /* One entry already there stays first and untouched. */
  g_array_append_val (entries, ((TallyWordCount){ "before", 6, 1 }));
  tally_window_table_collect (tables, n_tables, from, to, prefix, entries);
  g_assert_cmpuint (entries->len, ==, want + 1);
  g_assert_cmpstr (g_array_index (entries, TallyWordCount, 0).word, ==, "before");
  for (guint i = 1; i < entries->len; i++)
    {
      TallyWordCount *e = &g_array_index (entries, TallyWordCount, i);
      g_autofree char *word = g_strndup (e->word, e->len);
      guint64 *count = g_hash_table_lookup (reference, word);

      g_assert_nonnull (count);
      g_assert_cmpuint (e->count, ==, *count);
      g_assert_true (g_hash_table_add (seen, g_steal_pointer (&word)));
    }
}

static void
test_table_collect (void)
{
  TallyWindowTable *tables[3];
  g_autoptr (GHashTable) reference
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GRand) rand = g_rand_new_with_seed (1616);
  g_autoptr (GArray) none = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));

  for (guint t = 0; t < 3; t++)
    {
      tables[t] = tally_window_table_new ();
      for (gint64 b = 0; b < 5; b++)
        {
          TallyWordTable *bucket = tally_window_table_get_bucket (tables[t], b * MIN_MS, TRUE);

          for (guint i = 0; i < 3000; i++)
            {
              guint r = g_rand_int_range (rand, 0, 30000);
              g_autofree char *w = r % 3 == 0   ? g_strdup_printf ("w%07u", r)
                                   : r % 3 == 1 ? g_strdup_printf ("longprefix-%u", r)
                                                : g_strdup_printf ("s%u", r % 100);
              guint64 n = g_rand_int_range (rand, 0, 4); /* 0: a word with count 0 */
              guint64 *count;

              tally_word_table_add (bucket, w, strlen (w), tally_word_hash (w, strlen (w)), n);
              /* Summed: buckets 1 and 2 ([1m, 3m)) of every table. */
              if (b < 1 || b > 2 || n == 0)
                continue;
              count = g_hash_table_lookup (reference, w);
              if (count == NULL)
                {
                  count = g_new0 (guint64, 1);
                  g_hash_table_insert (reference, g_strdup (w), count);
                }
              *count += n;
            }
        }
    }
  /* Two words of 16 bytes with the same first 8 bytes and the same low 32 hash bits (the
   * index's): only their last 8 bytes tell them apart. Found by a birthday search (with
   * 400,000 words a collision is all but certain: 1 - e^-18). */
  {
    g_autoptr (GHashTable) by_hash = g_hash_table_new_full (NULL, NULL, NULL, g_free);
    char *pair[2] = { NULL, NULL };

    for (guint i = 0; i < 400000 && pair[0] == NULL; i++)
      {
        char *w = g_strdup_printf ("longprefix%06u", i);
        gpointer lo = GUINT_TO_POINTER ((guint32)tally_word_hash (w, 16));
        char *other = g_hash_table_lookup (by_hash, lo);

        if (other != NULL)
          {
            pair[0] = g_strdup (other);
            pair[1] = w;
          }
        else
          g_hash_table_insert (by_hash, lo, w);
      }
    g_assert_nonnull (pair[0]);
    for (guint k = 0; k < 2; k++)
      {
        guint64 *count = g_hash_table_lookup (reference, pair[k]);

        add (tally_window_table_get_bucket (tables[k], (1 + k) * MIN_MS, TRUE), pair[k], 5 + k);
        if (count == NULL)
          {
            count = g_new0 (guint64, 1);
            g_hash_table_insert (reference, g_strdup (pair[k]), count);
          }
        *count += 5 + k;
      }
    g_free (pair[0]);
    g_free (pair[1]);
  }
  /* A word counted 0 in one bucket and more in another is in the sum once. */
  g_assert_cmpuint (g_hash_table_size (reference), >, 4096);
  check_collect (tables, 3, MIN_MS, 3 * MIN_MS, NULL, reference);
  check_collect (tables, 3, MIN_MS, 3 * MIN_MS, "longp", reference);
  check_collect (tables, 3, MIN_MS, 3 * MIN_MS, "w00", reference);
  /* No bucket in range: nothing appended. */
  g_assert_cmpuint (tally_window_table_collect (tables, 3, 10 * MIN_MS, 11 * MIN_MS, NULL, none),
                    ==, 0);
  g_assert_cmpuint (none->len, ==, 0);
  for (guint t = 0; t < 3; t++)
    tally_window_table_free (tables[t]);
}

static const TallyWindowSpec spec_5m = {
  .size_ms = 5 * MIN_MS,
  .bucket_ms = MIN_MS,
  .grace_ms = MIN_MS,
  .idle_ms = 30 * 1000,
  .retain = 2,
};

static void
test_clock_buckets_and_grace (void)
{
  g_autoptr (GError) error = NULL;
  TallyWindowClock *clock = tally_window_clock_new (&spec_5m);
  gint64 bucket = -1, start;
  gint64 now = 1000000;

  /* 7m30s goes to the bucket at 7m, window [5m, 10m). */
  g_assert_true (tally_window_clock_observe (clock, 0, 7 * MIN_MS + 30000, now, &bucket));
  g_assert_cmpint (bucket, ==, 7 * MIN_MS);
  /* Stream time 10m30s: window [5m, 10m) is still open (grace until 11m). */
  g_assert_true (tally_window_clock_observe (clock, 0, 10 * MIN_MS + 30000, now, &bucket));
  g_assert_cmpint (bucket, ==, 10 * MIN_MS);
  /* Late within grace: a record at 9m lands in its bucket. */
  g_assert_true (tally_window_clock_observe (clock, 0, 9 * MIN_MS, now, &bucket));
  g_assert_cmpint (bucket, ==, 9 * MIN_MS);
  g_assert_cmpuint (tally_window_clock_get_late_records (clock), ==, 0);
  g_assert_false (tally_window_clock_next_closed (clock, now, &start));

  /* Stream time 11m: [5m, 10m) closes; a record at 9m59.999s is now beyond grace. */
  g_assert_true (tally_window_clock_observe (clock, 0, 11 * MIN_MS, now, &bucket));
  bucket = -1;
  g_assert_false (tally_window_clock_observe (clock, 0, 10 * MIN_MS - 1, now, &bucket));
  g_assert_cmpint (bucket, ==, -1);
  g_assert_cmpuint (tally_window_clock_get_late_records (clock), ==, 1);

  /* Handed out once. */
  g_assert_true (tally_window_clock_next_closed (clock, now, &start));
  g_assert_cmpint (start, ==, 5 * MIN_MS);
  g_assert_false (tally_window_clock_next_closed (clock, now, &start));

  /* Selectors: current [10m, 15m), last [5m, 10m), last 3m = buckets 9m..11m. */
  {
    TallyWindowSelector sel = { TALLY_WINDOW_SELECT_CURRENT, 0, 0 };
    gint64 from, to;

    g_assert_true (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_cmpint (from, ==, 10 * MIN_MS);
    g_assert_cmpint (to, ==, 15 * MIN_MS);
    sel.kind = TALLY_WINDOW_SELECT_LAST;
    g_assert_true (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_cmpint (from, ==, 5 * MIN_MS);
    g_assert_cmpint (to, ==, 10 * MIN_MS);
    sel.kind = TALLY_WINDOW_SELECT_LAST_DURATION;
    sel.duration_ms = 3 * MIN_MS;
    g_assert_true (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_cmpint (from, ==, 9 * MIN_MS);
    g_assert_cmpint (to, ==, 12 * MIN_MS);
    sel.duration_ms = 90 * 1000;
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_clear_error (&error);
    sel.kind = TALLY_WINDOW_SELECT_START;
    sel.start_ms = 5 * MIN_MS;
    g_assert_true (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_cmpint (from, ==, 5 * MIN_MS);
    g_assert_cmpint (to, ==, 10 * MIN_MS);
    sel.start_ms = 6 * MIN_MS;
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_clear_error (&error);
    /* retain = 2: windows from 0 on are kept while 10m is open; -5m is not. */
    sel.start_ms = 0;
    g_assert_true (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    sel.kind = TALLY_WINDOW_SELECT_LAST_DURATION;
    sel.duration_ms = 13 * MIN_MS;
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_EXPIRED);
    /* It says what to do about it, with the count in the right number. */
    g_assert_cmpstr (error->message, ==,
                     "window from -60000 ms is older than the buckets retained ([windows] "
                     "retain = 2 windows of 300000 ms before the open one): ask for a later "
                     "window, or raise [windows] retain");
    g_clear_error (&error);
    /* Out of range (a breaking pass: a start near 2^63 made its end overflow). */
    sel.kind = TALLY_WINDOW_SELECT_START;
    sel.start_ms = G_GINT64_CONSTANT (9223372036854600000);
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_assert_cmpstr (error->message, ==,
                     "window start 9223372036854600000 is out of range: 0 to 253402300799999 "
                     "ms (the end of the year 9999)");
    g_clear_error (&error);
    /* Out of range before it is a multiple of the size or not. */
    sel.start_ms = G_MAXINT64;
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_true (
        g_str_has_prefix (error->message, "window start 9223372036854775807 is out of range"));
    g_clear_error (&error);
    sel.start_ms = -5 * MIN_MS;
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_clear_error (&error);
    sel.kind = TALLY_WINDOW_SELECT_LAST_DURATION;
    sel.duration_ms = G_GINT64_CONSTANT (9223372036854600000);
    g_assert_false (tally_window_clock_resolve (clock, &sel, now, &from, &to, &error));
    g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
    g_assert_cmpstr (error->message, ==,
                     "window last 9223372036854600000 ms is longer than any time windows hold "
                     "(253402300799999 ms, to the end of the year 9999)");
    g_clear_error (&error);
  }
  /* A record stamped after the year 9999 counts at the stream time, as one without a
   * timestamp; it does not move the stream time (before, its window's end overflowed and
   * it was late). */
  bucket = -1;
  g_assert_true (
      tally_window_clock_observe (clock, 0, G_GINT64_CONSTANT (9223372036854775000), now, &bucket));
  g_assert_cmpint (bucket, ==, 11 * MIN_MS);
  g_assert_cmpint (tally_window_clock_get_stream_time (clock, 0, now), ==, 11 * MIN_MS);
  g_assert_cmpuint (tally_window_clock_get_late_records (clock), ==, 1);
  /* Expiry: retain 2 windows before the open one [10m, 15m): buckets before 0 go. */
  g_assert_cmpint (tally_window_clock_get_expiry (clock, now), ==, 0);
  tally_window_clock_free (clock);
}

/* A quiet partition holds a window open at most the idle time; with every partition quiet,
 * windows still close as wall-clock time passes. */
static void
test_clock_idle_partition (void)
{
  TallyWindowClock *clock = tally_window_clock_new (&spec_5m);
  gint64 bucket, start;
  gint64 now = 1000000;

  /* Partition 1 gets one record at 1m, then nothing; partition 0 moves on to 20m. */
  g_assert_true (tally_window_clock_observe (clock, 1, MIN_MS, now, &bucket));
  g_assert_true (tally_window_clock_observe (clock, 0, 2 * MIN_MS, now, &bucket));
  g_assert_true (tally_window_clock_observe (clock, 0, 20 * MIN_MS, now + 1000, &bucket));
  /* Partition 1 is not idle yet: the watermark is its 1m, [0, 5m) stays open. */
  g_assert_cmpint (tally_window_clock_get_watermark (clock, now + 1000), ==, MIN_MS);
  g_assert_false (tally_window_clock_next_closed (clock, now + 1000, &start));
  g_assert_false (tally_window_clock_is_idle (clock, 1, now + 29999));
  g_assert_false (tally_window_clock_next_closed (clock, now + 29999, &start));
  /* After 30 s of wall-clock silence it is idle and leaves the watermark: [0, 5m) closes,
   * handed out once. [20m, 25m) stays open: partition 0 is at 20m. */
  g_assert_true (tally_window_clock_is_idle (clock, 1, now + 30000));
  g_assert_cmpint (tally_window_clock_get_stream_time (clock, 1, now + 30000), ==, MIN_MS);
  g_assert_cmpint (tally_window_clock_get_watermark (clock, now + 30000), ==, 20 * MIN_MS);
  g_assert_true (tally_window_clock_next_closed (clock, now + 30000, &start));
  g_assert_cmpint (start, ==, 0);
  g_assert_false (tally_window_clock_next_closed (clock, now + 30000, &start));
  /* A record of partition 1 for the closed window is late now, for its partition too. */
  g_assert_false (tally_window_clock_observe (clock, 1, 2 * MIN_MS, now + 31000, &bucket));
  g_assert_cmpuint (tally_window_clock_get_late_records (clock), ==, 1);
  g_assert_false (tally_window_clock_is_idle (clock, 1, now + 31000));

  /* Everything quiet: event time follows the wall clock from the newest record (20m at
   * now + 1 s), so [20m, 25m) closes once 6 minutes passed. */
  g_assert_false (tally_window_clock_next_closed (clock, now + 1000 + 6 * MIN_MS - 1, &start));
  g_assert_true (tally_window_clock_next_closed (clock, now + 1000 + 6 * MIN_MS, &start));
  g_assert_cmpint (start, ==, 20 * MIN_MS);

  /* A partition that is revoked holds nothing open. */
  tally_window_clock_remove_partition (clock, 0);
  g_assert_cmpint (tally_window_clock_get_watermark (clock, now + 31000), ==, 2 * MIN_MS);
  tally_window_clock_free (clock);
}

static void
test_selector_parse (void)
{
  g_autoptr (GError) error = NULL;
  TallyWindowSelector sel;
  gint64 ms;

  g_assert_true (tally_window_selector_parse ("current", &sel, &error));
  g_assert_cmpint (sel.kind, ==, TALLY_WINDOW_SELECT_CURRENT);
  g_assert_true (tally_window_selector_parse ("last", &sel, &error));
  g_assert_cmpint (sel.kind, ==, TALLY_WINDOW_SELECT_LAST);
  g_assert_true (tally_window_selector_parse ("last:15m", &sel, &error));
  g_assert_cmpint (sel.kind, ==, TALLY_WINDOW_SELECT_LAST_DURATION);
  g_assert_cmpint (sel.duration_ms, ==, 15 * MIN_MS);
  g_assert_true (tally_window_selector_parse ("1700000100000", &sel, &error));
  g_assert_cmpint (sel.kind, ==, TALLY_WINDOW_SELECT_START);
  g_assert_cmpint (sel.start_ms, ==, 1700000100000);
  g_assert_false (tally_window_selector_parse ("yesterday", &sel, &error));
  g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
  g_clear_error (&error);
  /* No unit means milliseconds. */
  g_assert_true (tally_window_selector_parse ("last:15", &sel, &error));
  g_assert_cmpint (sel.duration_ms, ==, 15);

  g_assert_true (tally_window_parse_duration ("250ms", &ms, NULL));
  g_assert_cmpint (ms, ==, 250);
  g_assert_true (tally_window_parse_duration ("2h", &ms, NULL));
  g_assert_cmpint (ms, ==, 2 * 3600 * 1000);
  g_assert_true (tally_window_parse_duration ("1d", &ms, NULL));
  g_assert_cmpint (ms, ==, 24 * 3600 * 1000);
  g_assert_false (tally_window_parse_duration ("0s", &ms, NULL));
  g_assert_false (tally_window_parse_duration ("5 m", &ms, NULL));
  g_assert_false (tally_window_parse_duration ("-5m", &ms, NULL));
  g_assert_false (tally_window_parse_duration ("5w", &ms, &error));
  g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
  g_clear_error (&error);
  /* A whole number, only too large: said so, with the largest of its unit. */
  g_assert_true (tally_window_parse_duration ("26687997791d", &ms, NULL));
  g_assert_false (tally_window_parse_duration ("26687997792d", &ms, &error));
  g_assert_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==,
                   "\"26687997792d\" is too long a duration (at most 26687997791d)");
  g_clear_error (&error);
  g_assert_false (tally_window_parse_duration ("9999999999999999999", &ms, &error));
  g_assert_cmpstr (
      error->message, ==,
      "\"9999999999999999999\" is too long a duration (at most 2305843009213693951ms)");
}

/* Timestamped records through the clock and a batcher into 3 shards: the counts of every
 * window, and of "the last N minutes", equal a reference computed from the same records;
 * late records count in the all-time totals only. */
static void
test_aggregator_reference (void)
{
  static const char *const vocabulary[]
      = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa" };
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (3, 0);
  TallyWindowClock *clock = tally_window_clock_new (&spec_5m);
  TallyWordBatcher *batchers[2];
  /* window start -> (word -> count) */
  g_autoptr (GHashTable) reference = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                                            (GDestroyNotify)g_hash_table_unref);
  g_autoptr (GHashTable) all_time = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GRand) rand = g_rand_new_with_seed (16);
  g_autoptr (GError) error = NULL;
  guint64 late = 0;
  gint64 t = 0, now = 5000;

  for (guint p = 0; p < 2; p++)
    batchers[p] = tally_word_batcher_new (handle, p);

  for (guint i = 0; i < 4000; i++)
    {
      guint32 p = g_rand_int_range (rand, 0, 2);
      /* Time moves forward by up to 2 s; one record in 10 is up to 3 minutes late. */
      gint64 ts;
      gint64 bucket;
      guint n_words = g_rand_int_range (rand, 1, 5);

      t += g_rand_int_range (rand, 0, 2000);
      ts = t;
      if (g_rand_int_range (rand, 0, 10) == 0)
        {
          gint64 delay = g_rand_int_range (rand, 0, 180000); /* MAX evaluates twice */
          ts = MAX (0, t - delay);
        }
      if (tally_window_clock_observe (clock, p, ts, now, &bucket))
        {
          gint64 window = ts / spec_5m.size_ms * spec_5m.size_ms;
          GHashTable *words = g_hash_table_lookup (reference, &window);

          g_assert_cmpint (bucket, ==, ts / MIN_MS * MIN_MS);
          if (words == NULL)
            {
              words = g_hash_table_new (g_str_hash, g_str_equal);
              g_hash_table_insert (reference, g_memdup2 (&window, sizeof window), words);
            }
          tally_word_batcher_set_bucket (batchers[p], bucket);
          for (guint k = 0; k < n_words; k++)
            {
              const char *w = vocabulary[g_rand_int_range (rand, 0, G_N_ELEMENTS (vocabulary))];
              tally_word_batcher_add (batchers[p], w, strlen (w));
              g_hash_table_insert (
                  words, (gpointer)w,
                  GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (words, w)) + 1));
              g_hash_table_insert (
                  all_time, (gpointer)w,
                  GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (all_time, w)) + 1));
            }
        }
      else
        {
          /* late = all-time: counted in the all-time totals only */
          const char *w = vocabulary[0];
          late++;
          tally_word_batcher_set_bucket (batchers[p], TALLY_WORD_BATCHER_NO_BUCKET);
          tally_word_batcher_add (batchers[p], w, strlen (w));
          g_hash_table_insert (
              all_time, (gpointer)w,
              GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (all_time, w)) + 1));
        }
      if (i % 97 == 0)
        for (guint q = 0; q < 2; q++)
          g_assert_true (tally_word_batcher_flush (batchers[q], TRUE, &error));
    }
  for (guint q = 0; q < 2; q++)
    g_assert_true (tally_word_batcher_flush (batchers[q], TRUE, &error));
  g_assert_cmpuint (late, >, 0);
  g_assert_cmpuint (tally_window_clock_get_late_records (clock), ==, late);

  /* Every window equals its reference. */
  {
    GHashTableIter iter;
    gpointer key, value;
    guint n_windows = 0;

    g_hash_table_iter_init (&iter, reference);
    while (g_hash_table_iter_next (&iter, &key, &value))
      {
        gint64 start = *(gint64 *)key;
        g_autoptr (TallyCounts) counts = tally_aggregator_handle_get_window_counts (
            handle, NULL, 0, start, start + spec_5m.size_ms, NULL, &error);
        gsize n;
        const TallyWordCount *e = tally_counts_get_entries (counts, &n);

        g_assert_no_error (error);
        g_assert_cmpuint (n, ==, g_hash_table_size (value));
        for (gsize i = 0; i < n; i++)
          g_assert_cmpuint (e[i].count, ==,
                            GPOINTER_TO_UINT (g_hash_table_lookup (value, e[i].word)));
        n_windows++;
      }
    g_assert_cmpuint (n_windows, >=, 5);
  }

  /* The all-time counts include the late records. */
  {
    g_autoptr (TallyCounts) counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
    gsize n;
    const TallyWordCount *e = tally_counts_get_entries (counts, &n);

    g_assert_cmpuint (n, ==, g_hash_table_size (all_time));
    for (gsize i = 0; i < n; i++)
      g_assert_cmpuint (e[i].count, ==,
                        GPOINTER_TO_UINT (g_hash_table_lookup (all_time, e[i].word)));
  }

  /* Top 3 of one store over the newest 10 minutes equals the same cut of the reference
   * sum; stores filter as for all-time counts. */
  {
    TallyCountsOptions top3 = { .top = 3 };
    guint32 store1 = 1;
    g_autoptr (TallyCounts) both
        = tally_aggregator_handle_get_window_counts (handle, NULL, 0, 0, G_MAXINT64, &top3, &error);
    g_autoptr (TallyCounts) one = tally_aggregator_handle_get_window_counts (
        handle, &store1, 1, 0, G_MAXINT64, NULL, &error);
    g_autoptr (TallyCounts) none = tally_aggregator_handle_get_window_counts (
        handle, NULL, 0, -10 * MIN_MS, 0, NULL, &error);
    gsize n;
    guint64 windowed_total = 0, one_total = 0;
    const TallyWordCount *e = tally_counts_get_entries (both, &n);

    g_assert_cmpuint (n, ==, 3);
    g_assert_cmpuint (e[0].count, >=, e[1].count);
    e = tally_counts_get_entries (one, &n);
    for (gsize i = 0; i < n; i++)
      one_total += e[i].count;
    g_assert_cmpuint (one_total, >, 0);
    g_assert_cmpuint (tally_counts_get_n_words (none), ==, 0);
    (void)windowed_total;
  }

  /* Expiry drops the buckets before the given time. */
  tally_aggregator_handle_expire_buckets (handle, G_MAXINT64);
  {
    g_autoptr (TallyCounts) counts
        = tally_aggregator_handle_get_window_counts (handle, NULL, 0, 0, G_MAXINT64, NULL, &error);
    g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 0);
  }
  for (guint p = 0; p < 2; p++)
    tally_word_batcher_free (batchers[p]);
  tally_window_clock_free (clock);
}

/* Checks @counts against @reference (word -> count), both complete. */
static void
assert_counts_equal (TallyCounts *counts, GHashTable *reference)
{
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  g_assert_cmpuint (n, ==, g_hash_table_size (reference));
  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *word = g_strndup (e[i].word, e[i].len);

      g_assert_cmpuint (e[i].count, ==, GPOINTER_TO_SIZE (g_hash_table_lookup (reference, word)));
    }
}

static void
reference_add (GHashTable *reference, const char *word, gsize count)
{
  g_hash_table_insert (
      reference, g_strdup (word),
      GSIZE_TO_POINTER (GPOINTER_TO_SIZE (g_hash_table_lookup (reference, word)) + count));
}

/* A shard counts a run of words of one bucket per word first and adds each distinct word to
 * the bucket once (add_words_windowed()): long runs of thousands of distinct words (its run
 * table grows), runs cut by other buckets and by records in no bucket, words counted
 * several times by the sender, two stores, and batches flushed mid-run; every bucket, and
 * the all-time counts, equal a reference. */
static void
test_aggregator_runs (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (1, 0);
  TallyWordBatcher *batchers[2];
  GHashTable *reference[2][2]; /* [store][bucket 0 or 1] */
  g_autoptr (GHashTable) all_time = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) all = NULL;

  for (guint p = 0; p < 2; p++)
    {
      batchers[p] = tally_word_batcher_new (handle, p);
      for (guint b = 0; b < 2; b++)
        reference[p][b] = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    }
  for (guint i = 0; i < 40000; i++)
    {
      guint p = (i / 7000) % 2;
      guint phase = (i / 3000) % 5; /* 0-1: bucket 0, 2-3: bucket 1, 4: no bucket */
      g_autofree char *w = g_strdup_printf ("r%05u", (i * 7919) % 6000);
      gsize count = i % 11 == 0 ? 3 : 1;

      tally_word_batcher_set_bucket (batchers[p], phase == 4 ? TALLY_WORD_BATCHER_NO_BUCKET
                                                             : (phase / 2) * MIN_MS);
      if (count == 1)
        tally_word_batcher_add (batchers[p], w, strlen (w));
      else
        tally_word_batcher_add_count (batchers[p], w, strlen (w), count);
      if (phase != 4)
        reference_add (reference[p][phase / 2], w, count);
      reference_add (all_time, w, count);
      if (i == 25000)
        g_assert_true (tally_word_batcher_flush (batchers[p], TRUE, &error));
    }
  for (guint p = 0; p < 2; p++)
    g_assert_true (tally_word_batcher_flush (batchers[p], TRUE, &error));

  for (guint p = 0; p < 2; p++)
    for (guint b = 0; b < 2; b++)
      {
        g_autoptr (TallyCounts) c = tally_aggregator_handle_get_window_counts (
            handle, &p, 1, b * MIN_MS, (b + 1) * MIN_MS, NULL, &error);

        g_assert_no_error (error);
        assert_counts_equal (c, reference[p][b]);
      }
  all = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_no_error (error);
  assert_counts_equal (all, all_time);
  for (guint p = 0; p < 2; p++)
    {
      tally_word_batcher_free (batchers[p]);
      for (guint b = 0; b < 2; b++)
        g_hash_table_unref (reference[p][b]);
    }
}

/* A batcher never told a bucket sends no marker: windows off leaves no buckets. */
static void
test_windows_off (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  TallyWordBatcher *batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) all = NULL;
  g_autoptr (TallyCounts) windowed = NULL;

  tally_word_batcher_add (batcher, "one", 3);
  tally_word_batcher_add (batcher, "two", 3);
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  all = tally_aggregator_handle_get_counts (handle, NULL, &error);
  tally_test_assert_entries (all, "one=1 two=1 ");
  windowed = tally_aggregator_handle_get_window_counts (handle, NULL, 0, G_MININT64 + 1, G_MAXINT64,
                                                        NULL, &error);
  g_assert_cmpuint (tally_counts_get_n_words (windowed), ==, 0);
  tally_word_batcher_free (batcher);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/windows/table/sum-expire", test_table_sum_expire);
  g_test_add_func ("/windows/table/collect", test_table_collect);
  g_test_add_func ("/windows/clock/buckets-and-grace", test_clock_buckets_and_grace);
  g_test_add_func ("/windows/clock/idle-partition", test_clock_idle_partition);
  g_test_add_func ("/windows/selector/parse", test_selector_parse);
  g_test_add_func ("/windows/aggregator/reference", test_aggregator_reference);
  g_test_add_func ("/windows/aggregator/runs", test_aggregator_runs);
  g_test_add_func ("/windows/aggregator/off", test_windows_off);
  return g_test_run ();
}
