/* test-top-query.c — the exact top N across instances (tally-top-query.h).
 *
 * Instances are simulated without Kafka: each holds a TallyCounts of its share of every
 * word's count and answers a request as the publisher does (the `words` selection, then
 * tally_counts_filter() with top, prefix and min_count). The query's answer must equal
 * the top N of the merged full counts, byte for byte in #TallyCounts order (count
 * descending, then word bytes), on skewed and uniform inputs with many ties, over 1, 2
 * and 3 instances; and it must ship fewer entries than a full snapshot where the input is
 * skewed.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-top-query.h"
#include "tally-test-util.h"

#include <string.h>

/* The reply of an instance holding @counts to @request, as the publisher builds it. */
static TallyCounts *
answer (TallyCounts *counts, const TallySnapshotRequest *request)
{
  TallyCountsOptions options;
  g_autoptr (TallyCounts) chosen = NULL;

  tally_snapshot_request_get_options (request, &options);
  if (request->words != NULL)
    {
      g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

      for (char **w = request->words; *w != NULL; w++)
        {
          guint64 count = tally_counts_lookup (counts, *w, strlen (*w));

          if (count > 0)
            tally_counts_builder_add (builder, *w, strlen (*w), count);
        }
      chosen = tally_counts_builder_end (builder);
    }
  else
    chosen = tally_counts_ref (counts);
  return tally_counts_filter (chosen, &options);
}

static char *
text_of (TallyCounts *counts)
{
  GString *text = g_string_new (NULL);
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    g_string_append_printf (text, "%s %" G_GUINT64_FORMAT "\n", e[i].word, e[i].count);
  return g_string_free (text, FALSE);
}

/* Runs a query over @n instances; returns the answer's text, counts the entries shipped. */
static char *
run_query (TallyCounts **instances, guint n, guint64 top, guint64 min_count, const char *prefix,
           gsize *shipped, guint *rounds)
{
  g_autoptr (TallyTopQuery) query = tally_top_query_new (top, min_count, prefix);
  gboolean done = FALSE;

  *shipped = 0;
  while (!done)
    {
      g_autoptr (TallySnapshotRequest) request = tally_top_query_next_request (query);
      g_autoptr (TallySnapshotRequest) again = tally_top_query_next_request (query);
      TallyCounts *replies[8];

      /* One request id per round, whatever how often it is asked. */
      g_assert_cmpstr (request->request_id, ==, again->request_id);
      for (guint i = 0; i < n; i++)
        {
          replies[i] = answer (instances[i], request);
          *shipped += tally_counts_get_n_words (replies[i]);
        }
      done = tally_top_query_add_replies (query, replies, n);
      for (guint i = 0; i < n; i++)
        tally_counts_unref (replies[i]);
      g_assert_cmpuint (tally_top_query_get_rounds (query), <=, 4);
    }
  *rounds = tally_top_query_get_rounds (query);
  return text_of (tally_top_query_get_result (query));
}

typedef enum
{
  SKEWED,  /* Zipf-like: word i counted about 100000/(i+1) times */
  UNIFORM, /* every word counted 1..4 times: ties everywhere */
  SPLIT,   /* every word counted at every instance below its top N: the classic miss */
} Shape;

/* @n_words words, each one's count split between @n instances at random. */
static void
make_instances (Shape shape, guint n_words, guint n, GRand *rand, TallyCounts **instances,
                TallyCounts **merged)
{
  TallyCountsBuilder *builders[8];
  TallyCountsBuilder *all = tally_counts_builder_new ();

  for (guint i = 0; i < n; i++)
    builders[i] = tally_counts_builder_new ();
  for (guint w = 0; w < n_words; w++)
    {
      g_autofree char *word = g_strdup_printf ("%c%u", "abc"[w % 3], w);
      guint64 count;

      switch (shape)
        {
        case SKEWED:
          count = 100000 / (w + 1) + 1;
          break;
        case UNIFORM:
          count = (guint64)g_rand_int_range (rand, 1, 5);
          break;
        case SPLIT:
        default:
          /* Words 0..9 are counted 5 times at every instance; words 10.. 8 times at one. */
          count = w < 10 ? 5 * n : 8;
          break;
        }
      tally_counts_builder_add (all, word, strlen (word), count);
      for (guint i = 0; i < n && count > 0; i++)
        {
          guint64 share;

          if (shape == SPLIT)
            share = w < 10 ? 5 : (i == w % n ? 8 : 0);
          else
            share = i == n - 1 ? count : (guint64)g_rand_int_range (rand, 0, (gint32)count + 1);
          if (share > 0)
            tally_counts_builder_add (builders[i], word, strlen (word), share);
          count -= MIN (share, count);
        }
    }
  for (guint i = 0; i < n; i++)
    {
      instances[i] = tally_counts_builder_end (builders[i]);
      tally_counts_builder_free (builders[i]);
    }
  *merged = tally_counts_builder_end (all);
  tally_counts_builder_free (all);
}

static void
check_shape (Shape shape)
{
  const guint64 tops[] = { 1, 3, 10, 100, 0 };
  const guint64 mins[] = { 0, 3, 50 };
  const char *prefixes[] = { NULL, "b" };
  g_autoptr (GRand) rand = g_rand_new_with_seed (14);

  for (guint n = 1; n <= 3; n++)
    {
      TallyCounts *instances[3];
      g_autoptr (TallyCounts) merged = NULL;

      make_instances (shape, 5000, n, rand, instances, &merged);
      for (guint t = 0; t < G_N_ELEMENTS (tops); t++)
        for (guint m = 0; m < G_N_ELEMENTS (mins); m++)
          for (guint p = 0; p < G_N_ELEMENTS (prefixes); p++)
            {
              TallyCountsOptions options = { tops[t], prefixes[p], mins[m] };
              g_autoptr (TallyCounts) expected_counts = NULL;
              g_autofree char *expected = NULL;
              g_autofree char *got = NULL;
              gsize shipped;
              guint rounds;

              if (tops[t] == 0 && mins[m] == 0)
                continue; /* a full snapshot: no query */
              expected_counts = tally_counts_filter (merged, &options);
              expected = text_of (expected_counts);
              got = run_query (instances, n, tops[t], mins[m], prefixes[p], &shipped, &rounds);
              if (g_strcmp0 (expected, got) != 0)
                g_error ("shape %d, %u instance(s), top %" G_GUINT64_FORMAT
                         ", min_count %" G_GUINT64_FORMAT ", prefix %s: answers differ",
                         shape, n, tops[t], mins[m], prefixes[p]);
              /* One instance owning every partition answers alone, in one round. */
              if (n == 1)
                g_assert_cmpuint (rounds, ==, 1);
              else
                g_assert_cmpuint (rounds, >=, 2);
              /* A small top N of a skewed input ships a small part of the words. */
              if (shape == SKEWED && tops[t] > 0 && tops[t] <= 10 && mins[m] == 0 && n > 1)
                g_assert_cmpuint (shipped, <, tally_counts_get_n_words (merged) / 10);
            }
      for (guint i = 0; i < n; i++)
        tally_counts_unref (instances[i]);
    }
}

static void
test_skewed (void)
{
  check_shape (SKEWED);
}

static void
test_uniform (void)
{
  check_shape (UNIFORM);
}

static void
test_split (void)
{
  check_shape (SPLIT);
}

/* A word everyone has just below their own top N wins in total: the case a per-instance
 * top N gets wrong. Two instances; "x" is second at each, first in total. */
static void
test_per_instance_miss (void)
{
  const char *words_a[] = { "a", "x", "c" };
  const guint64 counts_a[] = { 10, 9, 1 };
  const char *words_b[] = { "b", "x", "d" };
  const guint64 counts_b[] = { 10, 9, 1 };
  TallyCounts *instances[2] = { tally_test_counts_new (words_a, counts_a, 3),
                                tally_test_counts_new (words_b, counts_b, 3) };
  g_autofree char *got = NULL;
  gsize shipped;
  guint rounds;

  got = run_query (instances, 2, 1, 0, NULL, &shipped, &rounds);
  g_assert_cmpstr (got, ==, "x 18\n");
  g_assert_cmpuint (rounds, ==, 3);
  g_free (got);
  got = run_query (instances, 2, 3, 0, NULL, &shipped, &rounds);
  g_assert_cmpstr (got, ==, "x 18\na 10\nb 10\n");
  tally_counts_unref (instances[0]);
  tally_counts_unref (instances[1]);
}

/* The request of each round, as JSON: top, then min_count = T, then words. */
static void
test_requests (void)
{
  const char *words_a[] = { "a", "x", "c" };
  const guint64 counts_a[] = { 10, 9, 1 };
  const char *words_b[] = { "b", "x", "d" };
  const guint64 counts_b[] = { 10, 9, 1 };
  g_autoptr (TallyCounts) a = tally_test_counts_new (words_a, counts_a, 3);
  g_autoptr (TallyCounts) b = tally_test_counts_new (words_b, counts_b, 3);
  g_autoptr (TallyTopQuery) query = tally_top_query_new (1, 0, NULL);
  const char *expected[]
      = { "{\"top\":1}", "{\"min_count\":5}", "{\"words\":[\"x\",\"a\",\"b\"]}" };

  for (guint round = 0; round < 3; round++)
    {
      g_autoptr (TallySnapshotRequest) request = tally_top_query_next_request (query);
      g_autoptr (GBytes) json = tally_snapshot_request_to_json (request);
      g_autoptr (TallySnapshotRequest) parsed = NULL;
      TallyCounts *replies[2];
      gsize len;
      const char *data = g_bytes_get_data (json, &len);

      g_assert_cmpmem (data, len, expected[round], strlen (expected[round]));
      parsed = tally_snapshot_request_parse ("r", 1, data, len, -1);
      g_assert_no_error (parsed->error);
      replies[0] = answer (a, parsed);
      replies[1] = answer (b, parsed);
      g_assert_cmpint (tally_top_query_add_replies (query, replies, 2), ==, round == 2);
      tally_counts_unref (replies[0]);
      tally_counts_unref (replies[1]);
    }
  g_assert_cmpuint (tally_top_query_get_threshold (query), ==, 5);
  g_assert_cmpuint (tally_top_query_get_n_candidates (query), ==, 3);
}

/* Bad `words` members are errors that name the member. */
static void
test_bad_words (void)
{
  const char *bad[]
      = { "{\"words\":\"x\"}", "{\"words\":[1]}", "{\"words\":[\"\"]}", "{\"words\":[null]}" };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (TallySnapshotRequest) request
          = tally_snapshot_request_parse ("r", 1, bad[i], strlen (bad[i]), -1);

      g_assert_error (request->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                      TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
      g_assert_nonnull (strstr (request->error->message, "words"));
      g_assert_null (request->words);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/top-query/per-instance-miss", test_per_instance_miss);
  g_test_add_func ("/top-query/requests", test_requests);
  g_test_add_func ("/top-query/bad-words", test_bad_words);
  g_test_add_func ("/top-query/skewed", test_skewed);
  g_test_add_func ("/top-query/uniform", test_uniform);
  g_test_add_func ("/top-query/split", test_split);
  return g_test_run ();
}
