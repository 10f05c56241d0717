/* test-counts.c — sorting snapshots (tally_counts_new_from_entries(), through the
 * builder) and merging the sorted snapshots of shards (tally_counts_merge_disjoint()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-counts-private.h"
#include "tally-test-util.h"

#include <string.h>

/* "word=count " for every entry, in order. */
static char *
entries_text (TallyCounts *counts)
{
  GString *text = g_string_new (NULL);
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpuint (strlen (e[i].word), ==, e[i].len);
      g_string_append_printf (text, "%s=%" G_GUINT64_FORMAT " ", e[i].word, e[i].count);
    }
  return g_string_free (text, FALSE);
}

/* Snapshot order checked pair by pair against its definition, on words that share long
 * prefixes (so that the sort's 8-byte keys tie and the words decide) and counts of every
 * width (so that every byte of the count keys is distributed): words of up to 12 bytes
 * from 3 letters, then of up to 30 bytes from 2 letters, whose runs of equal first 8, 16
 * and 24 bytes are long (the tie-break's quicksort, not only its insertion sort) and end
 * inside a chunk, at its end and past it. */
static void
check_sort_order (guint letters, gsize max_len)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GRand) rand = g_rand_new_with_seed (20261130);
  const guint64 widths[]
      = { 1, 3, 255, 256, 65536, G_MAXUINT32 + (guint64)7, G_MAXUINT32 * (guint64)1000 };
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const TallyWordCount *e;
  guint64 total = 0;
  gsize n;

  for (guint i = 0; i < 20000; i++)
    {
      char word[32] = { 0 };
      gsize len = (gsize)g_rand_int_range (rand, 1, (gint32)max_len + 1);
      guint64 count = g_rand_int_range (rand, 0, 4) == 0
                          ? widths[g_rand_int_range (rand, 0, G_N_ELEMENTS (widths))]
                          : (guint64)g_rand_int_range (rand, 1, 4);

      /* A few letters only: many words share their first 8 bytes. */
      for (gsize k = 0; k < len; k++)
        word[k] = (char)('a' + g_rand_int_range (rand, 0, (gint32)letters));
      /* Each word once, with one count: the totals stay far from saturation. */
      if (g_hash_table_add (seen, g_strndup (word, len)))
        tally_counts_builder_add (builder, word, len, count);
    }
  counts = tally_counts_builder_end (builder);
  e = tally_counts_get_entries (counts, &n);
  g_assert_cmpuint (n, ==, g_hash_table_size (seen));
  g_assert_cmpuint (n, >, 5000);
  for (gsize i = 0; i < n; i++)
    {
      total += e[i].count;
      if (i == 0)
        continue;
      if (e[i - 1].count == e[i].count)
        {
          int c = memcmp (e[i - 1].word, e[i].word, MIN (e[i - 1].len, e[i].len));

          g_assert_true (c < 0 || (c == 0 && e[i - 1].len < e[i].len));
        }
      else
        g_assert_cmpuint (e[i - 1].count, >, e[i].count);
    }
  g_assert_cmpuint (tally_counts_get_total (counts), ==, total);
}

static void
test_sort_order (void)
{
  check_sort_order (3, 12);
  check_sort_order (2, 30);
}

/* Three shards' replies merge into snapshot order (count descending, then word bytes),
 * and the result stays valid after the parts are released: its words live in the parts,
 * which it keeps. */
static void
test_merge_outlives_parts (void)
{
  const char *w0[] = { "b", "zz", "apple", "applesauce" };
  const guint64 c0[] = { 2, 9, 3, 3 };
  const char *w1[] = { "a", "ab", "applesauces", "c" };
  const guint64 c1[] = { 2, 9, 3, 1 };
  const char *w2[] = { "é", "applesauc" };
  const guint64 c2[] = { 2, 3 };
  TallyCounts *parts[3];
  g_autoptr (TallyCounts) merged = NULL;
  g_autofree char *text = NULL;

  parts[0] = tally_test_counts_new (w0, c0, G_N_ELEMENTS (w0));
  parts[1] = tally_test_counts_new (w1, c1, G_N_ELEMENTS (w1));
  parts[2] = tally_test_counts_new (w2, c2, G_N_ELEMENTS (w2));
  merged = tally_counts_merge_disjoint (parts, 3, NULL);
  for (guint k = 0; k < 3; k++)
    tally_counts_unref (parts[k]);

  text = entries_text (merged);
  g_assert_cmpstr (text, ==,
                   "ab=9 zz=9 apple=3 applesauc=3 applesauce=3 applesauces=3 a=2 b=2 é=2 c=1 ");
  g_assert_cmpuint (tally_counts_get_n_words (merged), ==, 10);
  g_assert_cmpuint (tally_counts_get_total (merged), ==, 37);
  g_assert_cmpuint (tally_counts_lookup (merged, "applesauc", 9), ==, 3);
  g_assert_cmpuint (tally_counts_lookup (merged, "applesau", 8), ==, 0);
}

/* Options apply while merging: prefix, min_count, and top N counted after the filters. */
static void
test_merge_filters (void)
{
  const char *w0[] = { "cat", "car", "dog", "cab" };
  const guint64 c0[] = { 5, 1, 7, 2 };
  const char *w1[] = { "cart", "cow", "ca" };
  const guint64 c1[] = { 4, 9, 2 };
  TallyCounts *parts[2];
  TallyCountsOptions prefix = { 0, "ca", 2 };
  TallyCountsOptions top = { 2, "ca", 0 };
  TallyCountsOptions everything = { 0, NULL, 0 };
  g_autoptr (TallyCounts) a = NULL;
  g_autoptr (TallyCounts) b = NULL;
  g_autoptr (TallyCounts) c = NULL;
  g_autofree char *ta = NULL;
  g_autofree char *tb = NULL;
  g_autofree char *tc = NULL;

  parts[0] = tally_test_counts_new (w0, c0, G_N_ELEMENTS (w0));
  parts[1] = tally_test_counts_new (w1, c1, G_N_ELEMENTS (w1));
  a = tally_counts_merge_disjoint (parts, 2, &prefix);
  b = tally_counts_merge_disjoint (parts, 2, &top);
  c = tally_counts_merge_disjoint (parts, 2, &everything);
  tally_counts_unref (parts[0]);
  tally_counts_unref (parts[1]);

  ta = entries_text (a);
  tb = entries_text (b);
  tc = entries_text (c);
  g_assert_cmpstr (ta, ==, "cat=5 cart=4 ca=2 cab=2 ");
  g_assert_cmpuint (tally_counts_get_total (a), ==, 13);
  g_assert_cmpstr (tb, ==, "cat=5 cart=4 ");
  g_assert_cmpuint (tally_counts_get_total (b), ==, 9);
  g_assert_cmpstr (tc, ==, "cow=9 dog=7 cat=5 cart=4 ca=2 cab=2 car=1 ");
  g_assert_cmpuint (tally_counts_get_total (c), ==, 30);
}

/* A merge of merges (and of empty parts) keeps every level's words alive. */
static void
test_merge_of_merges (void)
{
  const char *w0[] = { "x" };
  const guint64 c0[] = { 1 };
  const char *w1[] = { "y" };
  const guint64 c1[] = { 3 };
  TallyCounts *inner[3];
  TallyCounts *outer[2];
  g_autoptr (TallyCounts) merged = NULL;
  g_autofree char *text = NULL;

  inner[0] = tally_test_counts_new (w0, c0, 1);
  inner[1] = tally_counts_new_empty ();
  inner[2] = tally_test_counts_new (w1, c1, 1);
  outer[0] = tally_counts_merge_disjoint (inner, 2, NULL);
  outer[1] = tally_counts_merge_disjoint (inner + 1, 2, NULL);
  for (guint k = 0; k < 3; k++)
    tally_counts_unref (inner[k]);
  merged = tally_counts_merge_disjoint (outer, 2, NULL);
  tally_counts_unref (outer[0]);
  tally_counts_unref (outer[1]);

  text = entries_text (merged);
  g_assert_cmpstr (text, ==, "y=3 x=1 ");
  g_assert_cmpuint (tally_counts_get_total (merged), ==, 4);
}

/* The total saturates at G_MAXINT64 as when a snapshot is built from entries. */
static void
test_merge_total_saturates (void)
{
  const char *w0[] = { "big" };
  const guint64 c0[] = { G_MAXINT64 - 5 };
  const char *w1[] = { "more" };
  const guint64 c1[] = { 10 };
  TallyCounts *parts[2];
  g_autoptr (TallyCounts) merged = NULL;

  parts[0] = tally_test_counts_new (w0, c0, 1);
  parts[1] = tally_test_counts_new (w1, c1, 1);
  merged = tally_counts_merge_disjoint (parts, 2, NULL);
  tally_counts_unref (parts[0]);
  tally_counts_unref (parts[1]);
  g_assert_cmpuint (tally_counts_get_total (merged), ==, (guint64)G_MAXINT64);
  g_assert_cmpuint (tally_counts_get_n_words (merged), ==, 2);
}

/* tally_counts_builder_set_max(): a word keeps its largest count whatever the order, and
 * many words set in a row (a changelog read back) each take one entry. */
static void
test_builder_set_max (void)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) counts = NULL;
  g_autofree char *text = NULL;

  tally_counts_builder_set_max (builder, "alpha", 5, 3);
  tally_counts_builder_set_max (builder, "alpha", 5, 7);
  tally_counts_builder_set_max (builder, "alpha", 5, 5);
  tally_counts_builder_set_max (builder, "beta", 4, 1);
  for (guint i = 0; i < 100000; i++)
    {
      char word[16];
      int len = g_snprintf (word, sizeof word, "w%u", i);

      tally_counts_builder_set_max (builder, word, (gsize)len, 2);
    }
  counts = tally_counts_builder_end (builder);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 100002);
  g_assert_cmpuint (tally_counts_lookup (counts, "alpha", 5), ==, 7);
  g_assert_cmpuint (tally_counts_lookup (counts, "beta", 4), ==, 1);
  g_assert_cmpuint (tally_counts_lookup (counts, "w99999", 6), ==, 2);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 7 + 1 + 2 * 100000);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/counts/sort-order", test_sort_order);
  g_test_add_func ("/counts/merge-outlives-parts", test_merge_outlives_parts);
  g_test_add_func ("/counts/merge-filters", test_merge_filters);
  g_test_add_func ("/counts/merge-of-merges", test_merge_of_merges);
  g_test_add_func ("/counts/merge-total-saturates", test_merge_total_saturates);
  g_test_add_func ("/counts/builder-set-max", test_builder_set_max);
  return g_test_run ();
}
