/* bench-windows.c — what counts over time cost: throughput, memory, "last 15m" latency.
 *
 * 1. Throughput: the text of FILE (default the KJV x10 of scripts/fetch-corpus), one line
 *    per record, through the tokenizer and a TallyWordBatcher into 2 aggregator shards, as
 *    the source feeds them minus Kafka: all-time counting only, against windows on with
 *    1-minute buckets (the records' timestamps spread over one hour: 60 buckets, all
 *    retained). Runs alternate, ratio of medians; CPU of the process and of the shards'
 *    threads alone (the only ones whose work windows change).
 * 2. Memory: bytes per distinct word per bucket (tally_window_table_get_memory()) with
 *    60 buckets of 100,000 distinct words each, and the words' own bytes.
 * 3. Latency: a {"last": "15m"} top-10 over 1,000,000 distinct words (in 15 one-minute
 *    buckets, a quarter of the words in two buckets) out of 60 buckets, through the handle
 *    (GetWindowCounts to every shard, merged): with the top-10 cut at the shards, and
 *    without (what a window cut taken for the snapshot coordinator asks today); p50/p99.
 *
 *   build/tests/bench/bench-windows [--file PATH] [--runs 5] [--queries 50]
 *                                   [--only throughput|memory|latency]
 *
 * --only runs one part (a profiler then sees that part alone).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-tokenizer.h"
#include "tally-window-table.h"
#include "tally-word-batcher.h"
#include "tally-word-hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN_MS ((gint64)60000)
#define BASE ((gint64)1700000040000)

static void
on_word (const char *word, gsize len, gpointer user_data)
{
  tally_word_batcher_add (user_data, word, len);
}

/* CPU time of the whole process (every thread), ms. */
static double
process_cpu_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time (ms) of the process's threads named tally-agg-* (the shards), from
 * /proc/self/task/<tid>/schedstat; 0 where /proc is not there. */
static double
shards_cpu_ms (void)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;
  double ms = 0;

  while (dir != NULL && (tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *comm_path = g_strdup_printf ("/proc/self/task/%s/comm", tid);
      g_autofree char *stat_path = g_strdup_printf ("/proc/self/task/%s/schedstat", tid);
      g_autofree char *comm = NULL;
      g_autofree char *stat = NULL;

      if (g_file_get_contents (comm_path, &comm, NULL, NULL) && g_str_has_prefix (comm, "tally-agg")
          && g_file_get_contents (stat_path, &stat, NULL, NULL))
        ms += g_ascii_strtod (stat, NULL) / 1e6;
    }
  return ms;
}

static int
compare_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double
percentile (double *v, guint n, double p)
{
  qsort (v, n, sizeof (double), compare_double);
  return v[MIN ((guint)(p * (n - 1) + 0.5), n - 1)];
}

/* One pass over the text; returns seconds; sets @cpu to the process's CPU seconds and
 * @shards_cpu to its shards' (their threads live for the pass). */
static double
count_text (const char *text, gsize len, gboolean windows, guint64 *words, double *cpu,
            double *shards_cpu)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 1024);
  TallyWordBatcher *batcher = tally_word_batcher_new (handle, 0);
  TallyTokenizerOptions options;
  g_autoptr (TallyTokenizer) tok = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  const char *p = text, *end = text + len;
  guint64 n_lines = 0, line = 0;
  gint64 t0;

  for (const char *q = text; q < end; q++)
    n_lines += *q == '\n';
  tally_tokenizer_options_init (&options);
  tok = tally_tokenizer_new (&options);
  t0 = g_get_monotonic_time ();
  *cpu = process_cpu_ms ();
  *words = 0;
  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      gsize n = nl != NULL ? (gsize)(nl - p) : (gsize)(end - p);

      if (windows)
        {
          /* Record time spread over one hour: 60 one-minute buckets. */
          gint64 ts = BASE + (gint64)(line * 3600000 / MAX (n_lines, 1));
          tally_word_batcher_set_bucket (batcher, ts - ts % MIN_MS);
        }
      *words += tally_tokenizer_feed (tok, p, n, on_word, batcher);
      if (tally_word_batcher_get_pending_words (batcher) >= 65536)
        g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
      p += n + 1;
      line++;
    }
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  /* A GetCounts after the last AddWords: every word is counted when it returns. */
  counts = tally_aggregator_handle_get_counts (handle, &(TallyCountsOptions){ .top = 1 }, &error);
  g_assert_no_error (error);
  tally_word_batcher_free (batcher);
  *shards_cpu = shards_cpu_ms () / 1e3;
  *cpu = (process_cpu_ms () - *cpu) / 1e3;
  return (g_get_monotonic_time () - t0) / 1e6;
}

static void
bench_throughput (const char *path, guint runs)
{
  g_autofree char *text = NULL;
  gsize len;
  g_autoptr (GError) error = NULL;
  g_autofree double *all = g_new (double, runs);
  g_autofree double *win = g_new (double, runs);
  g_autofree double *all_cpu = g_new (double, runs);
  g_autofree double *win_cpu = g_new (double, runs);
  g_autofree double *all_shards = g_new (double, runs);
  g_autofree double *win_shards = g_new (double, runs);
  guint64 words = 0;
  double a, w, ac, wc, as, ws;

  if (!g_file_get_contents (path, &text, &len, &error))
    {
      g_printerr ("bench-windows: %s (scripts/fetch-corpus kjv10)\n", error->message);
      exit (1);
    }
  for (guint r = 0; r < runs; r++)
    {
      all[r] = count_text (text, len, FALSE, &words, &all_cpu[r], &all_shards[r]);
      win[r] = count_text (text, len, TRUE, &words, &win_cpu[r], &win_shards[r]);
    }
  a = percentile (all, runs, 0.5);
  w = percentile (win, runs, 0.5);
  ac = percentile (all_cpu, runs, 0.5);
  wc = percentile (win_cpu, runs, 0.5);
  as = percentile (all_shards, runs, 0.5);
  ws = percentile (win_shards, runs, 0.5);
  printf ("throughput (%s, %" G_GUINT64_FORMAT " words, 2 shards, median of %u)\n", path, words,
          runs);
  printf ("  all-time only          %8.3f s  %6.2f M words/s  CPU %.3f s (shards %.3f s)\n", a,
          words / a / 1e6, ac, as);
  printf ("  + 1-min buckets (60)   %8.3f s  %6.2f M words/s  CPU %.3f s (shards %.3f s)\n", w,
          words / w / 1e6, wc, ws);
  printf ("  ratio windowed/all-time %.2f wall, %.2f CPU (goal >= 0.8)\n", a / w, ac / wc);
}

static char *
word_of (guint i)
{
  return g_strdup_printf ("w%07u", i);
}

static void
bench_memory (void)
{
  g_autoptr (TallyWindowTable) windows = tally_window_table_new ();
  const guint n_buckets = 60, distinct = 100000;
  gsize memory, key_bytes = 0;

  for (guint b = 0; b < n_buckets; b++)
    {
      TallyWordTable *t = tally_window_table_get_bucket (windows, BASE + b * MIN_MS, TRUE);
      for (guint i = 0; i < distinct; i++)
        {
          g_autofree char *w = word_of (i * 7 + b); /* overlapping vocabularies */
          gsize len = strlen (w);
          if (b == 0)
            key_bytes += len;
          tally_word_table_add (t, w, len, tally_word_hash (w, len), 1);
        }
    }
  memory = tally_window_table_get_memory (windows);
  printf ("memory: %u buckets x %u distinct words (8-byte words)\n", n_buckets, distinct);
  printf ("  %.1f bytes per distinct word per bucket (words' own bytes: %.1f; %.1f MiB "
          "total)\n",
          (double)memory / ((double)n_buckets * distinct), (double)key_bytes / distinct,
          memory / 1048576.0);
}

static void
bench_latency (guint queries)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  TallyWordBatcher *batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (GError) error = NULL;
  const guint distinct = 1000000;
  g_autofree double *top = g_new (double, queries);
  g_autofree double *full = g_new (double, queries);
  g_autofree double *cpu = g_new (double, queries);
  gint64 newest = BASE + 59 * MIN_MS, from = newest - 14 * MIN_MS, to = newest + MIN_MS;
  TallyCountsOptions top10 = { .top = 10 };
  gsize n_words = 0;

  /* 45 older buckets of 20,000 words each, then the 15 newest holding 1 M distinct words. */
  for (guint b = 0; b < 45; b++)
    {
      tally_word_batcher_set_bucket (batcher, BASE + b * MIN_MS);
      for (guint i = 0; i < 20000; i++)
        {
          g_autofree char *w = word_of (i + b * 1000);
          tally_word_batcher_add (batcher, w, strlen (w));
        }
      g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
    }
  for (guint i = 0; i < distinct; i++)
    {
      g_autofree char *w = word_of (i);
      guint b = i % 15;

      tally_word_batcher_set_bucket (batcher, from + b * MIN_MS);
      tally_word_batcher_add_count (batcher, w, strlen (w), 1 + i % 97);
      if (i % 4 == 0)
        {
          tally_word_batcher_set_bucket (batcher, from + ((b + 1) % 15) * MIN_MS);
          tally_word_batcher_add (batcher, w, strlen (w));
        }
      if (tally_word_batcher_get_pending_words (batcher) >= 1000000)
        g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
    }
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  {
    g_autoptr (TallyCounts) check
        = tally_aggregator_handle_get_window_counts (handle, NULL, 0, from, to, NULL, &error);
    n_words = tally_counts_get_n_words (check);
  }
  for (guint q = 0; q < queries; q++)
    {
      gint64 t0 = g_get_monotonic_time ();
      double c0 = process_cpu_ms ();
      g_autoptr (TallyCounts) c
          = tally_aggregator_handle_get_window_counts (handle, NULL, 0, from, to, &top10, &error);
      gint64 t1 = g_get_monotonic_time ();
      g_autoptr (TallyCounts) all = NULL;

      g_assert_cmpuint (tally_counts_get_n_words (c), ==, 10);
      top[q] = (t1 - t0) / 1000.0;
      cpu[q] = process_cpu_ms () - c0;
      all = tally_aggregator_handle_get_window_counts (handle, NULL, 0, from, to, NULL, &error);
      full[q] = (g_get_monotonic_time () - t1) / 1000.0;
    }
  printf ("latency: {\"last\": \"15m\"} over %" G_GSIZE_FORMAT " distinct words (15 of 60 "
          "buckets, 2 shards), %u queries\n",
          n_words, queries);
  printf ("  top 10 at the shards   p50 %7.1f ms  p99 %7.1f ms (goal p99 <= 100 ms)\n",
          percentile (top, queries, 0.5), percentile (top, queries, 0.99));
  printf ("  top 10: CPU of the process per query p50 %6.1f ms (both shards together)\n",
          percentile (cpu, queries, 0.5));
  printf ("  every word (window cut) p50 %7.1f ms  p99 %7.1f ms\n", percentile (full, queries, 0.5),
          percentile (full, queries, 0.99));
  tally_word_batcher_free (batcher);
}

int
main (int argc, char **argv)
{
  g_autofree char *file = NULL;
  g_autofree char *only = NULL;
  gint runs = 5, queries = 50;
  g_autofree char *default_file
      = g_build_filename (g_get_user_cache_dir (), "tally", "corpus", "kjv10.txt", NULL);
  const GOptionEntry entries[] = {
    { "file", 'f', 0, G_OPTION_ARG_FILENAME, &file, "Text to count (one record per line)", "PATH" },
    { "runs", 'r', 0, G_OPTION_ARG_INT, &runs, "Throughput runs of each kind", "N" },
    { "queries", 'q', 0, G_OPTION_ARG_INT, &queries, "Latency queries", "N" },
    { "only", 'o', 0, G_OPTION_ARG_STRING, &only, "Run one part only",
      "throughput|memory|latency" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- cost of counts over time");
  g_autoptr (GError) error = NULL;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || runs < 1 || queries < 1
      || (only != NULL && g_strcmp0 (only, "throughput") != 0 && g_strcmp0 (only, "memory") != 0
          && g_strcmp0 (only, "latency") != 0))
    {
      g_printerr ("bench-windows: %s\n",
                  error != NULL ? error->message : "bad --runs, --queries or --only");
      return 2;
    }
  if (only == NULL || g_str_equal (only, "throughput"))
    bench_throughput (file != NULL ? file : default_file, (guint)runs);
  if (only == NULL || g_str_equal (only, "memory"))
    bench_memory ();
  if (only == NULL || g_str_equal (only, "latency"))
    bench_latency ((guint)queries);
  return 0;
}
