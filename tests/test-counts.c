/* test-counts.c — sorting snapshots (tally_counts_new_from_entries(), through the
 * builder), merging the sorted snapshots of shards (tally_counts_merge_disjoint()) and
 * summing several word tables (tally_counts_sum_tables()).
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
  /* Each merge says what it was chosen from: the parts' 7 words and total 30. */
  g_assert_cmpuint (tally_counts_get_n_words_unfiltered (a), ==, 7);
  g_assert_cmpuint (tally_counts_get_total_unfiltered (a), ==, 30);
  g_assert_cmpuint (tally_counts_get_n_words_unfiltered (b), ==, 7);
  g_assert_cmpuint (tally_counts_get_total_unfiltered (b), ==, 30);
  g_assert_cmpuint (tally_counts_get_n_words_unfiltered (c), ==, 7);
  g_assert_cmpuint (tally_counts_get_total_unfiltered (c), ==, 30);
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

/* tally_counts_sum_tables() over several word tables, against a naive reference (a
 * GHashTable summed word by word): words in several tables and words in one only, enough
 * of them to be split into partitions (over 4,096 staged words), words of up to 8 bytes,
 * long words that share their first 8 bytes and all carry the same hash (so the same
 * stored hash bits: only the rest of their bytes tells them apart), counts of 0 (a word
 * whose sum is 0 is left out), a prefix and a minimum count. Each word's sum is exact and
 * each word comes once. */
#define SUM_N_TABLES 4
#define SUM_COLLIDING_HASH G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)

/* Whether sum_test_hash() gives every "collide-" word the same hash: tables filled so
 * break tally_counts_new_from_tables()'s precondition for named words, which it looks up
 * by tally_word_hash() when it need not sum every word. */
static gboolean sum_test_colliding = TRUE;

static guint64
sum_test_hash (const char *word, gsize len)
{
  return sum_test_colliding && g_str_has_prefix (word, "collide-") ? SUM_COLLIDING_HASH
                                                                   : tally_word_hash (word, len);
}

static void
check_sum_tables (TallyWordTable *const *tables, guint n_tables, const TallyCountsOptions *options,
                  GHashTable *reference)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint want = 0;
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, reference);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (*(guint64 *)value > 0
        && tally_counts_options_match (options, key, strlen (key), *(guint64 *)value))
      want++;
  /* One entry already there stays first and untouched. */
  g_array_append_val (entries, ((TallyWordCount){ "before", 6, 1 }));
  g_assert_cmpuint (tally_counts_sum_tables (tables, n_tables, options, entries), ==, want);
  g_assert_cmpuint (entries->len, ==, want + 1);
  g_assert_cmpstr (g_array_index (entries, TallyWordCount, 0).word, ==, "before");
  g_assert_cmpuint (g_array_index (entries, TallyWordCount, 0).count, ==, 1);
  for (guint i = 1; i < entries->len; i++)
    {
      TallyWordCount *e = &g_array_index (entries, TallyWordCount, i);
      g_autofree char *word = g_strndup (e->word, e->len);
      guint64 *count = g_hash_table_lookup (reference, word);

      g_assert_nonnull (count);
      g_assert_cmpuint (e->count, ==, *count);
      g_assert_true (tally_counts_options_match (options, word, e->len, e->count));
      g_assert_true (g_hash_table_add (seen, g_steal_pointer (&word)));
    }
}

static void
sum_test_add (TallyWordTable *table, GHashTable *reference, const char *word, guint64 n)
{
  gsize len = strlen (word);
  guint64 *count = g_hash_table_lookup (reference, word);

  if (count == NULL)
    {
      count = g_new0 (guint64, 1);
      g_hash_table_insert (reference, g_strdup (word), count);
    }
  if (n == 0)
    {
      /* A word stored with count 0 (as a restore may leave it), unless already counted. */
      if (tally_word_table_lookup (table, word, len, sum_test_hash (word, len)) == 0)
        tally_word_table_set (table, word, len, sum_test_hash (word, len), 0);
      return;
    }
  tally_word_table_add (table, word, len, sum_test_hash (word, len), n);
  *count += n;
}

/* @got, an answer of tally_counts_new_from_tables() with @options, equals the snapshot
 * built the long way, @all (every word summed, sorted, then walked in order): the same
 * words in the same order with the same counts, and the same unfiltered figures. */
static void
check_answer (TallyCounts *all, TallyCounts *got, const TallyCountsOptions *options)
{
  g_autoptr (GHashTable) named = g_hash_table_new (g_str_hash, g_str_equal);
  const TallyWordCount *a, *g;
  gsize n_all, n_got, k = 0;
  guint64 total = 0;

  for (const char *const *w = options != NULL ? options->words : NULL; w != NULL && *w != NULL; w++)
    g_hash_table_add (named, (gpointer)*w);
  a = tally_counts_get_entries (all, &n_all);
  g = tally_counts_get_entries (got, &n_got);
  for (gsize i = 0; i < n_all; i++)
    {
      if (options != NULL && options->top > 0 && k == options->top)
        break;
      if (!tally_counts_options_match (options, a[i].word, a[i].len, a[i].count)
          || (options != NULL && options->words != NULL
              && !g_hash_table_contains (named, a[i].word)))
        continue;
      g_assert_cmpuint (k, <, n_got);
      g_assert_cmpuint (g[k].len, ==, a[i].len);
      g_assert_cmpmem (g[k].word, g[k].len + 1, a[i].word, a[i].len + 1);
      g_assert_cmpuint (g[k].count, ==, a[i].count);
      total += a[i].count;
      k++;
    }
  g_assert_cmpuint (n_got, ==, k);
  /* Selected from every word. */
  g_assert_cmpuint (tally_counts_get_n_words_unfiltered (got), ==, n_all);
  g_assert_cmpuint (tally_counts_get_total_unfiltered (got), ==, tally_counts_get_total (all));
  g_assert_cmpuint (tally_counts_get_total (got), ==, total);
}

/* Every word of @tables summed and sorted by the builder (no heap, no pruning). */
static TallyCounts *
sum_the_long_way (TallyWordTable *const *tables, guint n_tables)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  tally_counts_sum_tables (tables, n_tables, NULL, entries);
  for (guint i = 0; i < entries->len; i++)
    {
      const TallyWordCount *e = &g_array_index (entries, TallyWordCount, i);
      tally_counts_builder_add (builder, e->word, e->len, e->count);
    }
  return tally_counts_builder_end (builder);
}

/* tally_counts_new_from_tables() with @options equals the snapshot built the long way:
 * without figures and, unless @rounds is 1, with empty figures (every word summed, the
 * figures taken), and again with those figures (only the candidates summed, where the
 * filters allow). */
static void
check_new_from_tables_rounds (TallyWordTable *const *tables, guint n_tables,
                              const TallyCountsOptions *options, guint rounds)
{
  g_autoptr (TallyCounts) all = sum_the_long_way (tables, n_tables);
  TallyCountsFigures figures = { 0 };

  for (guint round = 0; round < rounds; round++)
    {
      g_autoptr (TallyCounts) got
          = tally_counts_new_from_tables (tables, n_tables, options, round > 0 ? &figures : NULL);

      check_answer (all, got, options);
      if (round > 0 && n_tables > 0)
        {
          g_assert_cmpuint (figures.n_tables, ==, n_tables);
          g_assert_cmpuint (figures.n_words, ==, tally_counts_get_n_words (all));
          g_assert_cmpuint (figures.total, ==, tally_counts_get_total (all));
        }
    }
  tally_counts_figures_clear (&figures);
}

static void
check_new_from_tables (TallyWordTable *const *tables, guint n_tables,
                       const TallyCountsOptions *options)
{
  check_new_from_tables_rounds (tables, n_tables, options, 3);
}

/* The tables of test_sum_tables(): words in several tables, in one only, of up to 8
 * bytes, and "collide-" words that share their first 8 bytes (and, by sum_test_hash(),
 * their hash), counts of 0 to 3; @reference gets the sums. */
static void
fill_sum_tables (TallyWordTable **tables, GHashTable *reference, GRand *rand)
{
  for (guint t = 0; t < SUM_N_TABLES; t++)
    {
      tables[t] = tally_word_table_new ();
      for (guint i = 0; i < 6000; i++)
        {
          guint r = g_rand_int_range (rand, 0, 40000);
          guint64 n = g_rand_int_range (rand, 0, 4); /* 0: a word stored with count 0 */
          g_autofree char *w = NULL;

          switch (r % 5)
            {
            case 0: /* in several tables */
              w = g_strdup_printf ("w%07u", r);
              break;
            case 1: /* in this table only */
              w = g_strdup_printf ("only-%u-%u", t, r);
              break;
            case 2: /* up to 8 bytes */
              w = g_strdup_printf ("s%u", r % 1000);
              break;
            default: /* same first 8 bytes and same hash, told apart by the rest */
              w = g_strdup_printf ("collide-%u", r % 300);
              break;
            }
          sum_test_add (tables[t], reference, w, n);
        }
      /* In every table, always 0: never answered. */
      sum_test_add (tables[t], reference, "zero-everywhere", 0);
      /* 0 here, counted in the last table only. */
      sum_test_add (tables[t], reference, "zero-then-counted", t == SUM_N_TABLES - 1 ? 9 : 0);
    }
}

static void
test_sum_tables (void)
{
  TallyWordTable *tables[SUM_N_TABLES];
  g_autoptr (GHashTable) reference
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GRand) rand = g_rand_new_with_seed (1414);
  g_autoptr (GArray) none = g_array_new (FALSE, FALSE, sizeof (TallyWordCount));
  TallyCountsOptions prefix_w = { 0, "w00", 0 };
  TallyCountsOptions prefix_collide = { 0, "collide-", 0 };
  TallyCountsOptions min_count = { 0, NULL, 5 };
  TallyCountsOptions both = { 0, "collide-", 3 };
  TallyCountsOptions nothing = { 0, "no such prefix", 0 };

  fill_sum_tables (tables, reference, rand);
  g_assert_cmpuint (*(guint64 *)g_hash_table_lookup (reference, "zero-everywhere"), ==, 0);
  g_assert_cmpuint (*(guint64 *)g_hash_table_lookup (reference, "zero-then-counted"), ==, 9);

  check_sum_tables (tables, SUM_N_TABLES, NULL, reference);
  check_sum_tables (tables, SUM_N_TABLES, &prefix_w, reference);
  check_sum_tables (tables, SUM_N_TABLES, &prefix_collide, reference);
  check_sum_tables (tables, SUM_N_TABLES, &min_count, reference);
  check_sum_tables (tables, SUM_N_TABLES, &both, reference);
  check_sum_tables (tables, SUM_N_TABLES, &nothing, reference);

  /* Filtered as the sums come (a top N in a heap decided on the first 8 bytes, then the
   * rest): the same snapshot as summing every word first. Counts of 1 to 3 make ties by
   * the thousand, among words of up to 8 bytes and words that share their first 8. */
  {
    const TallyCountsOptions cases[] = {
      { 1, NULL, 0 },          { 10, NULL, 0 },    { 100, NULL, 0 },     { 1024, NULL, 0 },
      { 1025, NULL, 0 },       { 50000, NULL, 0 }, { 7, "collide-", 0 }, { 100, "s", 2 },
      { 0, NULL, 3 },          { 0, "w00", 0 },    { 5, NULL, 3 },       { 3, "none", 0 },
      { 2000, "collide-", 1 },
    };

    /* Named words: counted ones of up to 8 bytes and longer, words that share their
     * first 8 bytes and hash (one named, its neighbours not), one named twice, words
     * never counted, a prefix of a counted word, and the empty string. */
    const char *const named[] = { "s12",       "s17",        "w0000005",        "collide-3",
                                  "collide-3", "collide-33", "never-seen",      "collide-",
                                  "colli",     "",           "zero-everywhere", "zero-then-counted",
                                  NULL };
    const char *const nothing_named[] = { "never-seen", NULL };
    const TallyCountsOptions named_cases[] = {
      { 0, NULL, 0, named },
      { 2, NULL, 0, named },
      { 0, "collide-", 2, named },
      { 0, NULL, 0, nothing_named },
    };

    for (gsize c = 0; c < G_N_ELEMENTS (cases); c++)
      {
        check_new_from_tables (tables, SUM_N_TABLES, &cases[c]);
        check_new_from_tables (tables, 1, &cases[c]);
      }
    /* Named words are looked up by tally_word_hash() when few: in tables filled with it
     * (the same words and counts, the "collide-" words' hashes no longer equal). */
    {
      TallyWordTable *hashed[SUM_N_TABLES];
      g_autoptr (GHashTable) hashed_reference
          = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      g_autoptr (GRand) same = g_rand_new_with_seed (1414);

      sum_test_colliding = FALSE;
      fill_sum_tables (hashed, hashed_reference, same);
      sum_test_colliding = TRUE;
      for (gsize c = 0; c < G_N_ELEMENTS (named_cases); c++)
        {
          check_new_from_tables (hashed, SUM_N_TABLES, &named_cases[c]);
          check_new_from_tables (hashed, 1, &named_cases[c]);
        }
      {
        g_autoptr (TallyCounts) got
            = tally_counts_new_from_tables (hashed, SUM_N_TABLES, &named_cases[0], NULL);
        gsize n;

        tally_counts_get_entries (got, &n);
        g_assert_cmpuint (n, >=, 4);
        g_assert_cmpuint (tally_counts_lookup (got, "zero-then-counted", 17), ==, 9);
        g_assert_cmpuint (tally_counts_lookup (got, "zero-everywhere", 15), ==, 0);
        g_assert_cmpuint (tally_counts_lookup (got, "never-seen", 10), ==, 0);
        g_assert_cmpuint (tally_counts_lookup (got, "w0000006", 8), ==, 0);
      }
      for (guint t = 0; t < SUM_N_TABLES; t++)
        tally_word_table_free (hashed[t]);
    }
    check_new_from_tables (tables, SUM_N_TABLES, NULL);
    check_new_from_tables (NULL, 0, &cases[2]);
  }

  /* No table, or tables with no positive count: nothing appended. */
  g_assert_cmpuint (tally_counts_sum_tables (NULL, 0, NULL, none), ==, 0);
  g_assert_cmpuint (none->len, ==, 0);
  for (guint t = 0; t < SUM_N_TABLES; t++)
    tally_word_table_remove_all (tables[t]);
  tally_word_table_set (tables[0], "zero", 4, tally_word_hash ("zero", 4), 0);
  tally_word_table_set (tables[1], "zero", 4, tally_word_hash ("zero", 4), 0);
  g_assert_cmpuint (tally_counts_sum_tables (tables, SUM_N_TABLES, NULL, none), ==, 0);
  g_assert_cmpuint (none->len, ==, 0);
  for (guint t = 0; t < SUM_N_TABLES; t++)
    tally_word_table_free (tables[t]);
}

/* A sequence takes entries only in snapshot order (count descending, then word bytes, a
 * prefix first), refuses the rest without changing, can be taken back to a length, and
 * ends in a snapshot that owns the blocks its words are in. */
/* Skewed counts, where a filtered snapshot with figures at hand sums only its candidates:
 * words counted mostly in one table, words spread evenly so that no one table counts them
 * as often as the threshold over the number of tables would, ties at every cut, a long
 * tail of words counted once, and words that share their first 8 bytes. Each answer
 * equals the long way's; figures taken are trusted while no table changes (a white-box
 * check: figures set by hand come back), and not after. */
static void
test_new_from_tables_pruned (void)
{
  TallyWordTable *tables[SUM_N_TABLES], *reversed[SUM_N_TABLES];
  g_autoptr (GHashTable) reference
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GRand) rand = g_rand_new_with_seed (2004);
  const char *const named[]
      = { "hot-0",      "hot-7",  "hot-7",           "even-3",           "t000017",
          "never-seen", "lone-1", "share-8-bytes-2", "share-8-bytes-22", "",
          NULL };
  const TallyCountsOptions cases[] = {
    { 1, NULL, 0 },     { 10, NULL, 0 },       { 100, NULL, 0 },      { 150, NULL, 0 },
    { 300, NULL, 0 },   { 1024, NULL, 0 },     { 1025, NULL, 0 },     { 5000, NULL, 0 },
    { 0, NULL, 2 },     { 0, NULL, 10 },       { 0, NULL, 24 },       { 0, NULL, 25 },
    { 0, NULL, 100 },   { 50, NULL, 30 },      { 20, "even-", 0 },    { 0, "hot-", 40 },
    { 3, "share-", 0 }, { 0, NULL, 0, named }, { 2, NULL, 9, named },
  };
  TallyCountsFigures figures = { 0 };
  TallyCountsOptions top10 = { 10, NULL, 0 };
  TallyCountsOptions even20 = { 20, "even-", 0 };
  g_autoptr (TallyCounts) all = NULL;
  char word[32];

  for (guint t = 0; t < SUM_N_TABLES; t++)
    tables[t] = tally_word_table_new ();
  for (guint i = 0; i < 300; i++)
    {
      /* 5000 / (i + 1) in all, a quarter in each table, the rest in one. */
      guint64 c = 5000 / (i + 1);

      g_snprintf (word, sizeof word, "hot-%u", i);
      for (guint t = 0; t < SUM_N_TABLES; t++)
        sum_test_add (tables[t], reference, word, c / 4 + (t == i % 4 ? c % 4 : 0));
    }
  for (guint i = 0; i < 200; i++)
    {
      /* 6 in each table: 24 in all, no table with more than 6. */
      g_snprintf (word, sizeof word, "even-%u", i);
      for (guint t = 0; t < SUM_N_TABLES; t++)
        sum_test_add (tables[t], reference, word, 6);
    }
  for (guint i = 0; i < 100; i++)
    {
      g_snprintf (word, sizeof word, "lone-%u", i);
      sum_test_add (tables[i % 4], reference, word, 30);
      g_snprintf (word, sizeof word, "share-8-bytes-%u", i);
      sum_test_add (tables[(i + 1) % 4], reference, word, 12 + i % 3);
    }
  for (guint i = 0; i < 20000; i++)
    {
      g_snprintf (word, sizeof word, "t%06u", g_rand_int_range (rand, 0, 15000));
      sum_test_add (tables[g_rand_int_range (rand, 0, SUM_N_TABLES)], reference, word, 1);
    }

  for (gsize c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      check_new_from_tables (tables, SUM_N_TABLES, &cases[c]);
      check_new_from_tables (tables, 2, &cases[c]);
      check_new_from_tables (tables, 1, &cases[c]);
    }
  /* Thousands of names, more than one word in 16: found by summing every word. */
  {
    g_autoptr (GPtrArray) many = g_ptr_array_new_with_free_func (g_free);
    TallyCountsOptions many_named = { 0, NULL, 0 };

    for (guint i = 0; i < 4000; i++)
      g_ptr_array_add (many, g_strdup_printf ("t%06u", i * 3));
    g_ptr_array_add (many, NULL);
    many_named.words = (const char *const *)many->pdata;
    check_new_from_tables (tables, SUM_N_TABLES, &many_named);
    many_named.top = 7;
    check_new_from_tables (tables, 1, &many_named);
  }

  /* Figures that match the tables (in any order) are used: set by hand, they come back in
   * a top 10. A top 20 of one prefix cannot be pruned (its N-th count bounds nothing):
   * every word is summed and the figures are true again. */
  all = sum_the_long_way (tables, SUM_N_TABLES);
  for (guint t = 0; t < SUM_N_TABLES; t++)
    reversed[t] = tables[SUM_N_TABLES - 1 - t];
  tally_counts_figures_set (&figures, tables, SUM_N_TABLES, 1234567, 7654321);
  {
    g_autoptr (TallyCounts) got
        = tally_counts_new_from_tables (reversed, SUM_N_TABLES, &top10, &figures);

    g_assert_cmpuint (tally_counts_get_n_words (got), ==, 10);
    g_assert_cmpstr (tally_counts_get_entries (got, NULL)[0].word, ==, "hot-0");
    g_assert_cmpuint (tally_counts_get_n_words_unfiltered (got), ==, 1234567);
    g_assert_cmpuint (tally_counts_get_total_unfiltered (got), ==, 7654321);
  }
  {
    g_autoptr (TallyCounts) got
        = tally_counts_new_from_tables (tables, SUM_N_TABLES, &even20, &figures);

    check_answer (all, got, &even20);
    g_assert_cmpuint (figures.n_words, ==, tally_counts_get_n_words (all));
  }
  /* Stale: one table changed since (a count added), or fewer tables. */
  tally_counts_figures_set (&figures, tables, SUM_N_TABLES, 1234567, 7654321);
  tally_word_table_count (tables[2], "hot-0", 5, 1);
  g_clear_pointer (&all, tally_counts_unref);
  all = sum_the_long_way (tables, SUM_N_TABLES);
  {
    g_autoptr (TallyCounts) got
        = tally_counts_new_from_tables (tables, SUM_N_TABLES, &top10, &figures);

    check_answer (all, got, &top10);
    g_assert_cmpuint (tally_counts_get_entries (got, NULL)[0].count, ==, 5001);
  }
  tally_counts_figures_set (&figures, tables, SUM_N_TABLES, 1234567, 7654321);
  g_clear_pointer (&all, tally_counts_unref);
  all = sum_the_long_way (tables, SUM_N_TABLES - 1);
  {
    g_autoptr (TallyCounts) got
        = tally_counts_new_from_tables (tables, SUM_N_TABLES - 1, &top10, &figures);

    check_answer (all, got, &top10);
  }
  tally_counts_figures_clear (&figures);
  g_assert_null (figures.stamps);
  for (guint t = 0; t < SUM_N_TABLES; t++)
    tally_word_table_free (tables[t]);
}

static void
test_sequence (void)
{
  g_autoptr (TallyCountsSequence) sequence = tally_counts_sequence_new (3);
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) summed = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  /* "b\0ab\0abc\0a\0z\0" */
  char *block = g_memdup2 ("b\0ab\0abc\0a\0z", 13);

  tally_counts_sequence_keep_block (sequence, block);
  g_assert_true (tally_counts_sequence_append (sequence, block + 0, 1, 9));  /* b=9 */
  g_assert_true (tally_counts_sequence_append (sequence, block + 2, 2, 5));  /* ab=5 */
  g_assert_false (tally_counts_sequence_append (sequence, block + 2, 2, 5)); /* ab=5 again */
  g_assert_false (
      tally_counts_sequence_append (sequence, block + 9, 1, 5)); /* a (a prefix of ab) after ab */
  g_assert_false (tally_counts_sequence_append (sequence, block + 11, 1, 6)); /* count up */
  g_assert_true (tally_counts_sequence_append (sequence, block + 5, 3, 5));   /* abc=5 */
  g_assert_true (tally_counts_sequence_append (sequence, block + 11, 1, 1));  /* z=1 */
  g_assert_cmpuint (tally_counts_sequence_get_length (sequence), ==, 4);

  tally_counts_sequence_add_to_builder (sequence, builder);
  tally_counts_builder_add (builder, "z", 1, 2);
  summed = tally_counts_builder_end (builder);
  tally_test_assert_entries (summed, "b=9 ab=5 abc=5 z=3 ");

  tally_counts_sequence_truncate (sequence, 2);
  g_assert_cmpuint (tally_counts_sequence_get_length (sequence), ==, 2);
  g_assert_true (tally_counts_sequence_append (sequence, block + 9, 1, 2)); /* a=2 */
  counts = tally_counts_sequence_end (g_steal_pointer (&sequence));
  tally_test_assert_entries (counts, "b=9 ab=5 a=2 ");
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 16);
  g_assert_cmpuint (tally_counts_lookup (counts, "ab", 2), ==, 5);
  g_assert_cmpuint (tally_counts_lookup (counts, "abc", 3), ==, 0);

  /* Nothing appended: an empty snapshot. */
  {
    g_autoptr (TallyCounts) empty = tally_counts_sequence_end (tally_counts_sequence_new (0));
    g_assert_cmpuint (tally_counts_get_n_words (empty), ==, 0);
    g_assert_cmpuint (tally_counts_get_total (empty), ==, 0);
  }
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
  g_test_add_func ("/counts/sum-tables", test_sum_tables);
  g_test_add_func ("/counts/new-from-tables-pruned", test_new_from_tables_pruned);
  g_test_add_func ("/counts/sequence", test_sequence);
  return g_test_run ();
}
