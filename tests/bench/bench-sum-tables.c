/* bench-sum-tables.c — what summing a shard's stores costs for GetCounts.
 *
 * GetCounts over several stores (one word table per input partition) sums the tables.
 * This times that sum over TABLES tables of WORDS distinct words each, with the words of
 * the tables disjoint (TABLES x WORDS distinct words) and shared (every table holds the
 * same WORDS words), two ways:
 *   - lookup: each word of each table hashed again and looked up in every other table
 *     (the GetCounts of before tally_counts_sum_tables(), kept here as the baseline);
 *   - partitioned: tally_counts_sum_tables() (stored hash bits, partitions that fit in
 *     the cache).
 * Both fill the same array of borrowed entries; the copy and sort of the reply
 * (tally_counts_new_from_entries()) come after either and are not timed. Median of RUNS.
 *
 *   build/tests/bench/bench-sum-tables [--words 1000000] [--tables 4] [--runs 3]
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-counts-private.h"
#include "tally-word-hash.h"
#include "tally-word-table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
  TallyWordTable **tables;
  guint n_tables;
  guint index;
  GArray *entries;
} LookupData;

static void
lookup_one (const char *word, gsize len, guint64 count, gpointer user_data)
{
  LookupData *data = user_data;
  guint64 hash, total = count;
  TallyWordCount e;

  if (count == 0)
    return;
  hash = tally_word_hash (word, len);
  for (guint i = 0; i < data->index; i++)
    if (tally_word_table_lookup (data->tables[i], word, len, hash) > 0)
      return;
  for (guint i = data->index + 1; i < data->n_tables; i++)
    total += tally_word_table_lookup (data->tables[i], word, len, hash);
  e.word = word;
  e.len = (guint32)len;
  e.count = total;
  g_array_append_val (data->entries, e);
}

static gsize
sum_by_lookup (TallyWordTable **tables, guint n_tables, GArray *entries)
{
  LookupData data = { tables, n_tables, 0, entries };

  for (data.index = 0; data.index < n_tables; data.index++)
    tally_word_table_foreach (tables[data.index], lookup_one, &data);
  return entries->len;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void
run (const char *layout, TallyWordTable **tables, guint n_tables, guint runs)
{
  g_autofree double *times[2] = { g_new (double, runs), g_new (double, runs) };
  gsize n[2] = { 0, 0 };

  for (guint r = 0; r < runs; r++)
    for (guint way = 0; way < 2; way++)
      {
        gsize size = 0;
        g_autoptr (GArray) entries = NULL;
        gint64 t0;

        for (guint t = 0; t < n_tables; t++)
          size += tally_word_table_get_size (tables[t]);
        entries = g_array_sized_new (FALSE, FALSE, sizeof (TallyWordCount), (guint)size);
        t0 = g_get_monotonic_time ();
        n[way] = way == 0 ? sum_by_lookup (tables, n_tables, entries)
                          : tally_counts_sum_tables (tables, n_tables, NULL, entries);
        times[way][r] = (g_get_monotonic_time () - t0) / 1e6;
      }
  if (n[0] != n[1])
    g_error ("the two sums differ: %zu and %zu entries", n[0], n[1]);
  qsort (times[0], runs, sizeof (double), compare_doubles);
  qsort (times[1], runs, sizeof (double), compare_doubles);
  printf ("%-9s %10zu distinct  lookup %7.3f s  partitioned %7.3f s  (%.1fx)\n", layout, n[0],
          times[0][runs / 2], times[1][runs / 2], times[0][runs / 2] / times[1][runs / 2]);
}

static void
fill (TallyWordTable **tables, guint n_tables, guint words, gboolean shared)
{
  char word[64];

  for (guint t = 0; t < n_tables; t++)
    {
      tables[t] = tally_word_table_new ();
      for (guint i = 0; i < words; i++)
        {
          int len = shared ? g_snprintf (word, sizeof word, "word-%09u", i)
                           : g_snprintf (word, sizeof word, "word-%u-%09u", t, i);
          tally_word_table_add (tables[t], word, (gsize)len, tally_word_hash (word, (gsize)len),
                                1 + i % 7);
        }
    }
}

int
main (int argc, char **argv)
{
  gint64 words = 1000000, n_tables = 4, runs = 3;
  GOptionEntry options[] = {
    { "words", 0, 0, G_OPTION_ARG_INT64, &words, "distinct words per table", "N" },
    { "tables", 0, 0, G_OPTION_ARG_INT64, &n_tables, "tables (stores)", "N" },
    { "runs", 0, 0, G_OPTION_ARG_INT64, &runs, "runs, the median is printed", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- time summing word tables");
  g_autoptr (GError) error = NULL;

  g_option_context_add_main_entries (context, options, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || words < 1 || n_tables < 1
      || n_tables > 64 || runs < 1)
    {
      fprintf (stderr, "%s\n", error != NULL ? error->message : "bad option");
      return 64;
    }
  for (int shared = 0; shared < 2; shared++)
    {
      g_autofree TallyWordTable **tables = g_new (TallyWordTable *, n_tables);

      fill (tables, (guint)n_tables, (guint)words, shared);
      run (shared ? "shared" : "disjoint", tables, (guint)n_tables, (guint)runs);
      for (gint64 t = 0; t < n_tables; t++)
        tally_word_table_free (tables[t]);
    }
  return 0;
}
