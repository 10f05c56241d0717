/* test-aggregator.c — the aggregator actor, its handle, sharding, stores and the batcher.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-test-util.h"

#include <string.h>

static guint64
count_of (TallyCounts *counts, const char *word)
{
  return tally_counts_lookup (counts, word, strlen (word));
}

static void
test_add_word_returns_count (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) counts = NULL;

  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "hello", &error), ==, 1);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "hello", &error), ==, 2);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "world", &error), ==, 1);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "héllo wörld", &error), ==, 1);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "日本", &error), ==, 1);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "hello", &error), ==, 3);
  g_assert_no_error (error);

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_no_error (error);
  tally_test_assert_entries (counts, "hello=3 héllo wörld=1 world=1 日本=1 ");
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 6);
}

/* Long words (past an arena chunk of 1 MiB) and non-ASCII bytes through the shards. */
static void
test_long_and_non_ascii_words (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GString) big = g_string_new (NULL);
  const char *accents = "\xc3\xa9\xc3\xbf\xe2\x82\xac\xf0\x9f\x98\x80"; /* é ÿ € 😀 */

  /* 1.5 MiB of "ÿ€" (bytes 0xc3 0xbf 0xe2 0x82 0xac). */
  while (big->len < 1536 * 1024)
    g_string_append (big, "\xc3\xbf\xe2\x82\xac");
  tally_word_batcher_add (batcher, big->str, big->len);
  tally_word_batcher_add (batcher, accents, strlen (accents));
  tally_word_batcher_add (batcher, big->str, big->len - 5);
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, big->str, &error), ==, 2);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, accents, &error), ==, 2);
  g_assert_no_error (error);

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 3);
  g_assert_cmpuint (tally_counts_lookup (counts, big->str, big->len), ==, 2);
  g_assert_cmpuint (tally_counts_lookup (counts, big->str, big->len - 5), ==, 1);
  g_assert_cmpuint (count_of (counts, accents), ==, 2);
  /* Ties by bytes: 0xc3 0xa9 (é) sorts before 0xc3 0xbf (ÿ). */
  g_assert_cmpstr (tally_counts_get_entries (counts, NULL)[0].word, ==, accents);
  g_assert_cmpuint (tally_counts_get_entries (counts, NULL)[1].len, ==, big->len);
  g_assert_cmpuint (tally_counts_get_entries (counts, NULL)[2].len, ==, big->len - 5);
}

static void
test_add_word_invalid (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (1, 0);
  g_autoptr (GError) error = NULL;

  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "", &error), ==, 0);
  g_assert_error (error, TALLY_AGGREGATOR_ERROR, TALLY_AGGREGATOR_ERROR_INVALID_WORD);
  g_clear_error (&error);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "ab\xff", &error), ==, 0);
  g_assert_error (error, TALLY_AGGREGATOR_ERROR, TALLY_AGGREGATOR_ERROR_INVALID_WORD);
}

#ifdef G_ENABLE_DEBUG
/* The batcher takes only valid UTF-8 without NUL: anything else is a programmer error,
 * checked in debug builds only (the tokenizer's words are valid by construction). */
static void
test_batcher_rejects_invalid (gconstpointer data)
{
  const char *bad = data;

  if (g_test_subprocess ())
    {
      g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (1, 0);
      g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
      tally_word_batcher_add (batcher, "fine", 4);
      tally_word_batcher_add (batcher, "caf\xc3\xa9", 5);
      g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 2);
      /* Both bad words are 4 bytes long. */
      tally_word_batcher_add (batcher, bad, 4);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*word_is_valid*");
}
#endif

static void
test_closed_after_stop (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (TallyCounts) counts = NULL;

  tally_aggregator_handle_stop (handle);
  tally_aggregator_handle_stop (handle);
  g_assert_cmpuint (tally_aggregator_handle_add_word (handle, "late", &error), ==, 0);
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_null (counts);
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);

  /* try_tell keeps the batch of a closed shard. */
  tally_word_batcher_add (batcher, "late", 4);
  g_assert_false (tally_word_batcher_flush (batcher, FALSE, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 1);
}

static void
test_shard_for (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  guint per_shard[2] = { 0, 0 };
  char w[32];

  g_assert_cmpuint (tally_aggregator_handle_get_n_shards (handle), ==, 2);
  g_assert_nonnull (tally_aggregator_handle_get_shard_address (handle, 1));
  for (guint i = 0; i < 10000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "word%u", i);
      guint s = tally_aggregator_handle_shard_for (handle, w, len);
      g_assert_cmpuint (s, <, 2);
      g_assert_cmpuint (s, ==, tally_aggregator_handle_shard_for (handle, w, len));
      g_assert_cmpuint (s, ==, tally_word_shard (tally_word_hash (w, len), 2));
      per_shard[s]++;
    }
  /* A fixed hash: balanced within 5% on these words. */
  g_assert_cmpuint (per_shard[0], >, 4500);
  g_assert_cmpuint (per_shard[1], >, 4500);
  for (guint n = 1; n <= 7; n++)
    g_assert_cmpuint (tally_word_shard (G_MAXUINT64, n), ==, n - 1);
  g_assert_cmpuint (tally_word_shard (0, 7), ==, 0);
  /* The high 32 bits decide, scaled: 2^31 of 2^32 is the middle of 4 shards. */
  g_assert_cmpuint (tally_word_shard (G_GUINT64_CONSTANT (0x80000000) << 32, 4), ==, 2);
  g_assert_cmpuint (tally_word_shard (G_GUINT64_CONSTANT (0x7fffffff) << 32 | 0xffffffffu, 4), ==,
                    1);
}

/* ----- many senders at once ------------------------------------------------------- */

#define N_SENDERS 8
#define N_WORDS 2000
#define N_REPEATS 5

typedef struct
{
  TallyAggregatorHandle *handle;
  guint index;
} Sender;

static gpointer
sender_thread (gpointer data)
{
  Sender *s = data;
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (s->handle, 0);
  char w[32];

  for (guint r = 0; r < N_REPEATS; r++)
    for (guint i = 0; i < N_WORDS; i++)
      {
        guint len = (guint)g_snprintf (w, sizeof w, "w%u-é", (i * 7 + s->index) % N_WORDS);
        GError *error = NULL;
        tally_word_batcher_add (batcher, w, len);
        /* Sender i also counts its own word; flush at different rhythms. */
        if (i % 100 == 0)
          {
            len = (guint)g_snprintf (w, sizeof w, "sender-%u", s->index);
            tally_word_batcher_add (batcher, w, len);
          }
        if (tally_word_batcher_get_pending_words (batcher) >= 16 + s->index * 13)
          {
            g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
            g_assert_no_error (error);
          }
      }
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, NULL));
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);
  return NULL;
}

static void
run_many_senders (guint n_shards, guint capacity)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (n_shards, capacity);
  Sender senders[N_SENDERS];
  GThread *threads[N_SENDERS];
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  char w[32];

  for (guint i = 0; i < N_SENDERS; i++)
    {
      senders[i] = (Sender){ handle, i };
      threads[i] = g_thread_new ("sender", sender_thread, &senders[i]);
    }
  for (guint i = 0; i < N_SENDERS; i++)
    g_thread_join (threads[i]);

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, N_WORDS + N_SENDERS);
  g_assert_cmpuint (tally_counts_get_total (counts), ==,
                    (guint64)N_SENDERS * N_REPEATS * (N_WORDS + N_WORDS / 100));
  for (guint i = 0; i < N_WORDS; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "w%u-é", i);
      g_assert_cmpuint (tally_counts_lookup (counts, w, len), ==, N_SENDERS * N_REPEATS);
    }
  for (guint i = 0; i < N_SENDERS; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "sender-%u", i);
      g_assert_cmpuint (tally_counts_lookup (counts, w, len), ==, N_REPEATS * N_WORDS / 100);
    }
}

static void
test_many_senders_one_aggregator (void)
{
  run_many_senders (1, 4);
}

static void
test_many_senders_unbounded (void)
{
  run_many_senders (1, 0);
}

static void
test_many_senders_three_shards (void)
{
  run_many_senders (3, 2);
}

/* ----- consistent cut ------------------------------------------------------------- */

/* Every get_counts sees exactly the words this thread told before it, in every shard:
 * messages from one sender to one shard are handled in order. */
static void
test_consistent_cut (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (4, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  guint64 told = 0;
  char w[32];

  for (guint round = 1; round <= 60; round++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (TallyCounts) counts = NULL;

      /* 500 distinct words per round, spread over all 4 shards. */
      for (guint i = 0; i < 500; i++)
        {
          guint len = (guint)g_snprintf (w, sizeof w, "r%u-%u", round, i);
          tally_word_batcher_add (batcher, w, len);
          told++;
        }
      tally_word_batcher_add (batcher, "every", 5);
      told++;
      g_assert_true (tally_word_batcher_flush (batcher, FALSE, &error));
      g_assert_no_error (error);

      counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (tally_counts_get_total (counts), ==, told);
      g_assert_cmpuint (tally_counts_get_n_words (counts), ==, round * 500 + 1);
      g_assert_cmpuint (count_of (counts, "every"), ==, round);
      g_assert_cmpstr (tally_counts_get_entries (counts, NULL)[0].word, ==, "every");
    }
}

static void
add_n (TallyWordBatcher *batcher, const char *word, guint n)
{
  for (guint i = 0; i < n; i++)
    tally_word_batcher_add (batcher, word, strlen (word));
}

typedef struct
{
  GMainLoop *loop;
  TallyAggregatorHandle *handle;
  TallyWordBatcher *batcher;
  TallyCounts *counts;
  gboolean ok;
  GError *error;
} AsyncData;

static void
got_counts (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncData *d = user_data;
  d->counts = tally_aggregator_handle_get_counts_finish (d->handle, result, &d->error);
  g_main_loop_quit (d->loop);
}

static void
store_op_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncData *d = user_data;
  d->ok = tally_aggregator_handle_store_op_finish (d->handle, result, &d->error);
  g_main_loop_quit (d->loop);
}

static void
flushed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncData *d = user_data;
  d->ok = tally_word_batcher_flush_finish (d->batcher, result, &d->error);
  g_main_loop_quit (d->loop);
}

/* The async forms, from a main loop: the cut is taken when the call is made. */
static void
test_async_forms (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 7);
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GMainLoop) loop = g_main_loop_new (context, FALSE);
  AsyncData d = { loop, handle, batcher, NULL, FALSE, NULL };
  TallyCountsOptions top1 = { .top = 1 };
  char w[32];

  g_main_context_push_thread_default (context);

  for (guint i = 0; i < 1000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "a%u", i % 10);
      tally_word_batcher_add (batcher, w, len);
    }
  tally_word_batcher_add (batcher, "top", 3);
  for (guint i = 0; i < 200; i++)
    tally_word_batcher_add (batcher, "top", 3);
  tally_word_batcher_flush_async (batcher, NULL, flushed, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  g_assert_true (d.ok);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);

  tally_aggregator_handle_get_counts_async (handle, NULL, NULL, got_counts, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  g_assert_cmpuint (tally_counts_get_total (d.counts), ==, 1201);
  g_assert_cmpuint (count_of (d.counts, "a3"), ==, 100);
  g_assert_cmpuint (count_of (d.counts, "top"), ==, 201);
  g_clear_pointer (&d.counts, tally_counts_unref);

  /* A non-blocking flush followed at once by get_counts_async: the cut includes the batch. */
  add_n (batcher, "cut", 50);
  g_assert_true (tally_word_batcher_flush (batcher, FALSE, NULL));
  tally_aggregator_handle_get_counts_async (handle, NULL, NULL, got_counts, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  g_assert_cmpuint (tally_counts_get_total (d.counts), ==, 1251);
  g_assert_cmpuint (count_of (d.counts, "cut"), ==, 50);
  g_clear_pointer (&d.counts, tally_counts_unref);

  tally_aggregator_handle_get_counts_async (handle, &top1, NULL, got_counts, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  tally_test_assert_entries (d.counts, "top=201 ");
  g_clear_pointer (&d.counts, tally_counts_unref);

  tally_aggregator_handle_take_changes_async (handle, 7, NULL, got_counts, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  g_assert_cmpuint (tally_counts_get_n_words (d.counts), ==, 12);
  g_assert_cmpuint (tally_counts_get_total (d.counts), ==, 1251);
  g_clear_pointer (&d.counts, tally_counts_unref);

  tally_aggregator_handle_drop_store_async (handle, 7, NULL, store_op_done, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  g_assert_true (d.ok);

  {
    const guint32 stores[] = { 7 };
    tally_aggregator_handle_get_store_counts_async (handle, stores, 1, NULL, NULL, got_counts, &d);
    g_main_loop_run (loop);
    g_assert_no_error (d.error);
    g_assert_cmpuint (tally_counts_get_n_words (d.counts), ==, 0);
    g_clear_pointer (&d.counts, tally_counts_unref);
  }

  {
    const char *words[] = { "restored", "again" };
    g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
    g_autoptr (TallyCounts) restored = NULL;
    tally_counts_builder_add (b, words[0], strlen (words[0]), 40);
    tally_counts_builder_add (b, words[1], strlen (words[1]), 2);
    restored = tally_counts_builder_end (b);
    d.ok = FALSE;
    tally_aggregator_handle_restore_store_async (handle, 7, restored, NULL, store_op_done, &d);
    g_main_loop_run (loop);
    g_assert_no_error (d.error);
    g_assert_true (d.ok);
  }
  tally_aggregator_handle_get_counts_async (handle, NULL, NULL, got_counts, &d);
  g_main_loop_run (loop);
  g_assert_no_error (d.error);
  tally_test_assert_entries (d.counts, "restored=40 again=2 ");
  g_clear_pointer (&d.counts, tally_counts_unref);

  g_main_context_pop_thread_default (context);
}

/* The merge of shard replies equals filtering one snapshot built locally. */
static void
test_merge_matches_builder (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (4, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  g_autoptr (TallyCounts) local = NULL;
  const TallyCountsOptions cases[] = {
    { 0, NULL, 0 },  { 50, NULL, 0 }, { 0, "w1", 0 },
    { 0, NULL, 10 }, { 7, "w2", 5 },  { 5000, NULL, 0 },
  };
  char w[32];

  for (guint i = 0; i < 1000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "w%u", i);
      guint n = i % 17 + 1;
      for (guint k = 0; k < n; k++)
        tally_word_batcher_add (batcher, w, len);
      tally_counts_builder_add (b, w, len, n);
    }
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, NULL));
  local = tally_counts_builder_end (b);

  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (TallyCounts) merged
          = tally_aggregator_handle_get_counts (handle, &cases[c], &error);
      g_autoptr (TallyCounts) expected = tally_counts_filter (local, &cases[c]);
      gsize n_merged, n_expected;
      const TallyWordCount *m = tally_counts_get_entries (merged, &n_merged);
      const TallyWordCount *e = tally_counts_get_entries (expected, &n_expected);

      g_assert_no_error (error);
      g_assert_cmpuint (n_merged, ==, n_expected);
      g_assert_cmpuint (n_merged, >, 0);
      for (gsize i = 0; i < n_merged; i++)
        {
          g_assert_cmpstr (m[i].word, ==, e[i].word);
          g_assert_cmpuint (m[i].count, ==, e[i].count);
        }
      g_assert_cmpuint (tally_counts_get_total (merged), ==, tally_counts_get_total (expected));
      /* Whatever the filters, the reply says what it was chosen from: every word. */
      g_assert_cmpuint (tally_counts_get_n_words_unfiltered (merged), ==, 1000);
      g_assert_cmpuint (tally_counts_get_total_unfiltered (merged), ==,
                        tally_counts_get_total (local));
      g_assert_cmpuint (tally_counts_get_n_words_unfiltered (expected), ==, 1000);
      g_assert_cmpuint (tally_counts_get_total_unfiltered (expected), ==,
                        tally_counts_get_total (local));
    }
}

/* A snapshot is shared by threads without locks; its first lookups race to build the
 * index, which must come out right for all of them. */
static gpointer
lookup_thread (gpointer data)
{
  TallyCounts *counts = data;
  char w[32];

  for (guint i = 0; i < 3000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "s%u", i);
      g_assert_cmpuint (tally_counts_lookup (counts, w, len), ==, i % 13 + 1);
    }
  g_assert_cmpuint (tally_counts_lookup (counts, "absent", 6), ==, 0);
  tally_counts_unref (counts);
  return NULL;
}

static void
test_counts_shared_between_threads (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (TallyCounts) counts = NULL;
  GThread *threads[4];
  char w[32];

  for (guint i = 0; i < 3000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "s%u", i);
      for (guint k = 0; k <= i % 13; k++)
        tally_word_batcher_add (batcher, w, len);
    }
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, NULL));
  counts = tally_aggregator_handle_get_counts (handle, NULL, NULL);
  g_assert_nonnull (counts);
  for (guint t = 0; t < G_N_ELEMENTS (threads); t++)
    threads[t] = g_thread_new ("lookup", lookup_thread, tally_counts_ref (counts));
  /* The last reference may be dropped by any of the threads. */
  g_clear_pointer (&counts, tally_counts_unref);
  for (guint t = 0; t < G_N_ELEMENTS (threads); t++)
    g_thread_join (threads[t]);
}

/* ----- stores (state owned by input partitions) ----------------------------------- */

static void
test_stores (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (3, 0);
  g_autoptr (TallyWordBatcher) p1 = tally_word_batcher_new (handle, 1);
  g_autoptr (TallyWordBatcher) p2 = tally_word_batcher_new (handle, 2);
  g_autoptr (TallyWordBatcher) p3 = tally_word_batcher_new (handle, 3);
  g_autoptr (GError) error = NULL;
  const guint32 only1[] = { 1 };
  const guint32 only2[] = { 2 };
  const guint32 twice1[] = { 1, 1 };
  const guint32 one_and_9[] = { 1, 9 };
  TallyCountsOptions min3 = { .min_count = 3 };
  TallyCounts *c;

  g_assert_cmpuint (tally_word_batcher_get_store (p2), ==, 2);
  add_n (p1, "a", 3);
  add_n (p1, "b", 1);
  add_n (p2, "a", 2);
  add_n (p2, "c", 5);
  g_assert_true (tally_word_batcher_flush (p1, TRUE, &error));
  g_assert_true (tally_word_batcher_flush (p2, TRUE, &error));
  g_assert_no_error (error);

  c = tally_aggregator_handle_get_counts (handle, NULL, &error);
  tally_test_assert_entries (c, "a=5 c=5 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_counts (handle, &min3, &error);
  tally_test_assert_entries (c, "a=5 c=5 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_store_counts (handle, only1, 1, NULL, &error);
  tally_test_assert_entries (c, "a=3 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_store_counts (handle, only2, 1, NULL, &error);
  tally_test_assert_entries (c, "c=5 a=2 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_store_counts (handle, twice1, 2, NULL, &error);
  tally_test_assert_entries (c, "a=3 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_store_counts (handle, one_and_9, 2, &min3, &error);
  tally_test_assert_entries (c, "a=3 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_get_store_counts (handle, only1, 0, NULL, &error);
  tally_test_assert_entries (c, "");
  tally_counts_unref (c);
  g_assert_no_error (error);

  /* take_changes: the current counts of words changed since the last take. */
  c = tally_aggregator_handle_take_changes (handle, 1, &error);
  tally_test_assert_entries (c, "a=3 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_take_changes (handle, 1, &error);
  tally_test_assert_entries (c, "");
  tally_counts_unref (c);
  add_n (p1, "a", 1);
  add_n (p2, "b", 1);
  tally_word_batcher_flush (p1, TRUE, &error);
  tally_word_batcher_flush (p2, TRUE, &error);
  c = tally_aggregator_handle_take_changes (handle, 1, &error);
  tally_test_assert_entries (c, "a=4 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_take_changes (handle, 2, &error);
  tally_test_assert_entries (c, "c=5 a=2 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_take_changes (handle, 42, &error);
  tally_test_assert_entries (c, "");
  tally_counts_unref (c);
  g_assert_no_error (error);

  /* drop_store: revoke forgets the partition's share, nothing else. */
  g_assert_true (tally_aggregator_handle_drop_store (handle, 1, &error));
  c = tally_aggregator_handle_get_counts (handle, NULL, &error);
  tally_test_assert_entries (c, "c=5 a=2 b=1 ");
  tally_counts_unref (c);
  c = tally_aggregator_handle_take_changes (handle, 1, &error);
  tally_test_assert_entries (c, "");
  tally_counts_unref (c);
  /* Words told before the drop by this thread are dropped; later ones start afresh. */
  add_n (p1, "gone", 4);
  tally_word_batcher_flush (p1, TRUE, &error);
  g_assert_true (tally_aggregator_handle_drop_store (handle, 1, &error));
  add_n (p1, "fresh", 1);
  tally_word_batcher_flush (p1, TRUE, &error);
  c = tally_aggregator_handle_get_store_counts (handle, only1, 1, NULL, &error);
  tally_test_assert_entries (c, "fresh=1 ");
  tally_counts_unref (c);
  g_assert_no_error (error);

  /* restore_store: assign loads the counts read back from the changelog, replacing
   * whatever the store held, each shard keeping its own words; not marked changed. */
  {
    g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
    g_autoptr (TallyCounts) restored = NULL;
    char w[32];
    for (guint i = 0; i < 1000; i++)
      {
        guint len = (guint)g_snprintf (w, sizeof w, "r%u", i);
        tally_counts_builder_add (b, w, len, i + 1);
      }
    restored = tally_counts_builder_end (b);
    add_n (p3, "before-restore", 2);
    tally_word_batcher_flush (p3, TRUE, &error);
    g_assert_true (tally_aggregator_handle_restore_store (handle, 3, restored, &error));
    g_assert_no_error (error);

    c = tally_aggregator_handle_get_store_counts (handle, (const guint32[]){ 3 }, 1, NULL, &error);
    g_assert_cmpuint (tally_counts_get_n_words (c), ==, 1000);
    g_assert_cmpuint (tally_counts_get_total (c), ==, 1000 * 1001 / 2);
    g_assert_cmpuint (count_of (c, "before-restore"), ==, 0);
    for (guint i = 0; i < 1000; i++)
      {
        guint len = (guint)g_snprintf (w, sizeof w, "r%u", i);
        g_assert_cmpuint (tally_counts_lookup (c, w, len), ==, i + 1);
      }
    tally_counts_unref (c);
    c = tally_aggregator_handle_take_changes (handle, 3, &error);
    tally_test_assert_entries (c, "");
    tally_counts_unref (c);
    add_n (p3, "r9", 1);
    add_n (p3, "new", 1);
    tally_word_batcher_flush (p3, TRUE, &error);
    c = tally_aggregator_handle_take_changes (handle, 3, &error);
    tally_test_assert_entries (c, "r9=11 new=1 ");
    tally_counts_unref (c);
  }
  c = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_cmpuint (tally_counts_get_total (c), ==, 1000 * 1001 / 2 + 2 + 8 + 1);
  g_assert_cmpuint (count_of (c, "a"), ==, 2);
  g_assert_cmpuint (count_of (c, "r9"), ==, 11);
  tally_counts_unref (c);
  g_assert_no_error (error);
}

/* ----- backpressure --------------------------------------------------------------- */

/* A full mailbox fails a non-blocking flush with FULL and keeps the unsent batch; words
 * added afterwards join it, and a later flush sends them all: nothing is lost. The shard
 * is kept busy with big batches told straight to its address (one being counted, one
 * waiting in its mailbox of one message), so the batcher's flush right after finds the
 * mailbox full. */
static void
test_batcher_full (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (1, 1);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  TallyAddress *shard = tally_aggregator_handle_get_shard_address (handle, 0);
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GError) error = NULL;
  guint64 x_words = 0, y_words = 0;
  guint n_full = 0;
  char w[32];

  for (guint attempt = 0; attempt < 100 && n_full == 0; attempt++)
    {
      gsize pending_before;

      for (guint k = 0; k < 2; k++)
        {
          TallyMessage *m = tally_aggregator_add_words_new (0);
          for (guint i = 0; i < 100000; i++)
            {
              guint len = (guint)g_snprintf (w, sizeof w, "y%u", i);
              tally_aggregator_add_words_append (m, w, len, tally_word_hash (w, len));
            }
          y_words += 100000;
          g_assert_true (tally_address_tell (shard, m, &error));
          g_assert_no_error (error);
        }
      for (guint i = 0; i < 20000; i++)
        {
          guint len = (guint)g_snprintf (w, sizeof w, "x%u", i % 5000);
          tally_word_batcher_add (batcher, w, len);
        }
      x_words += 20000;
      pending_before = tally_word_batcher_get_pending_words (batcher);
      if (tally_word_batcher_flush (batcher, FALSE, &error))
        {
          g_assert_cmpuint (pending_before, ==, 20000);
          g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);
          continue;
        }
      g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL);
      g_clear_error (&error);
      n_full++;
      /* Pending counts words, not the 5000 distinct words of the kept batch. */
      g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 20000);

      /* Added after the refusal: counted in the table, sent with the kept batch. */
      tally_word_batcher_add (batcher, "late", 4);
      tally_word_batcher_add (batcher, "x7", 2);
      tally_word_batcher_add (batcher, "late", 4);
      x_words++;
      g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 20003);
    }
  g_assert_cmpuint (n_full, ==, 1);

  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, x_words + 2 + y_words);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 5000 + 1 + 100000);
  g_assert_cmpuint (count_of (counts, "x0"), ==, (x_words - 1) / 5000);
  g_assert_cmpuint (count_of (counts, "x7"), ==, (x_words - 1) / 5000 + 1);
  g_assert_cmpuint (count_of (counts, "late"), ==, 2);
  g_assert_cmpuint (count_of (counts, "y99999"), ==, y_words / 100000);
}

/* Over flushes of very different numbers of distinct words, with words over 16 bytes and
 * one over a 1 MiB key chunk in between, every word's count comes out as if each word had
 * been sent, and pending counts words. */
/* Adds @word to @batcher and one to its count in @expected. */
static void
add_expected (TallyWordBatcher *batcher, GHashTable *expected, const char *word, gsize len)
{
  tally_word_batcher_add (batcher, word, len);
  g_hash_table_insert (
      expected, g_strdup (word),
      GSIZE_TO_POINTER (GPOINTER_TO_SIZE (g_hash_table_lookup (expected, word)) + 1));
}

static void
test_batcher_counts (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (3, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 4);
  g_autoptr (GHashTable) expected = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) big = g_string_new (NULL);
  static const guint distinct[] = { 3, 70000, 10, 1, 5000, 2, 70000, 7 };
  GHashTableIter iter;
  gpointer key, value;
  guint64 total = 0;
  char w[32];

  while (big->len < 1100 * 1024)
    g_string_append (big, "long");

  for (guint r = 0; r < G_N_ELEMENTS (distinct); r++)
    {
      guint64 added = 0;

      for (guint i = 0; i < 2 * distinct[r] + 5; i++)
        {
          guint n = (i * 7919u) % distinct[r];

          add_expected (batcher, expected, w, (gsize)g_snprintf (w, sizeof w, "w%u", n));
          added++;
          if (i % 3 == 1)
            {
              add_expected (batcher, expected, w, (gsize)g_snprintf (w, sizeof w, "middle-%u", n));
              added++;
            }
          if (i % 5 == 0)
            {
              add_expected (batcher, expected, w,
                            (gsize)g_snprintf (w, sizeof w, "longer-than-16-bytes-%u", n));
              added++;
            }
        }
      if (r == 2)
        {
          tally_word_batcher_add (batcher, big->str, big->len);
          tally_word_batcher_add (batcher, big->str, big->len);
          added += 2;
        }
      g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, added);
      total += added;
      g_assert_true (tally_word_batcher_flush (batcher, r % 2 == 0, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);
    }

  counts = tally_aggregator_handle_get_store_counts (handle, (guint32[]){ 4 }, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, total);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, g_hash_table_size (expected) + 1);
  g_assert_cmpuint (tally_counts_lookup (counts, big->str, big->len), ==, 2);
  g_hash_table_iter_init (&iter, expected);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_assert_cmpuint (count_of (counts, key), ==, GPOINTER_TO_SIZE (value));
  /* "w0" is added when d divides i, for i below 2 d + 5: 4 + 3 + 3 + 7 + 3 + 5 + 3 + 3. */
  g_assert_cmpuint (count_of (counts, "w0"), ==, 31);
}

/* tally_word_batcher_add_count(): a word with a count is counted that many times, exactly
 * as that many adds, in its own shard; count 1 and plain adds mix with it; count 0 adds
 * nothing; pending grows by the count; a count above 2^32 survives the batch. */
static void
test_batcher_add_count (void)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (3, 0);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 9);
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (TallyCounts) other = NULL;
  g_autoptr (GError) error = NULL;
  const guint64 huge = G_GUINT64_CONSTANT (5000000000);
  const char *accents = "caf\xc3\xa9";
  char long_word[40];
  char w[32];

  memset (long_word, 'q', sizeof long_word);
  tally_word_batcher_add_count (batcher, "the", 3, 41);
  tally_word_batcher_add (batcher, "the", 3);
  tally_word_batcher_add_count (batcher, "ox", 2, 1);
  tally_word_batcher_add_count (batcher, "unused", 6, 0);
  tally_word_batcher_add_count (batcher, accents, strlen (accents), 3);
  tally_word_batcher_add_count (batcher, long_word, sizeof long_word, 7);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 41 + 1 + 1 + 3 + 7);
  for (guint i = 0; i < 300; i++)
    tally_word_batcher_add_count (batcher, w, (gsize)g_snprintf (w, sizeof w, "n%u", i), i + 1);
  g_assert_true (tally_word_batcher_flush (batcher, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, 0);

  /* Again after the flush, into the same words: the shards add up. */
  tally_word_batcher_add_count (batcher, "ox", 2, huge);
  g_assert_cmpuint (tally_word_batcher_get_pending_words (batcher), ==, huge);
  g_assert_true (tally_word_batcher_flush (batcher, FALSE, &error));
  g_assert_no_error (error);

  counts = tally_aggregator_handle_get_store_counts (handle, (guint32[]){ 9 }, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (count_of (counts, "the"), ==, 42);
  g_assert_cmpuint (count_of (counts, "ox"), ==, huge + 1);
  g_assert_cmpuint (count_of (counts, accents), ==, 3);
  g_assert_cmpuint (tally_counts_lookup (counts, long_word, sizeof long_word), ==, 7);
  g_assert_cmpuint (count_of (counts, "unused"), ==, 0);
  g_assert_cmpuint (count_of (counts, "n0"), ==, 1);
  g_assert_cmpuint (count_of (counts, "n299"), ==, 300);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 4 + 300);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 42 + huge + 1 + 3 + 7 + 300 * 301 / 2);
  /* Nothing leaked into another store. */
  other = tally_aggregator_handle_get_store_counts (handle, (guint32[]){ 0 }, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_total (other), ==, 0);
}

/* AddWord and AddWords sent straight to a shard's address. */
static void
test_messages_direct (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("agg-test");
  g_autoptr (TallyAddress) address
      = tally_actor_start (TALLY_ACTOR (tally_aggregator_new (0, 1)), arbiter, 0);
  g_autoptr (GError) error = NULL;
  g_autofree guint64 *count = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  TallyMessage *batch = tally_aggregator_add_words_new (5);

  tally_aggregator_add_words_append (batch, "long", 4, tally_word_hash ("long", 4));
  tally_aggregator_add_words_append (batch, "long", 4, tally_word_hash ("long", 4));
  g_assert_cmpuint (tally_aggregator_add_words_get_n_words (batch), ==, 2);
  g_assert_true (tally_address_tell (address, batch, &error));
  count = tally_address_ask_sync (address, tally_aggregator_add_word_new (5, "long", 4), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 3);
  counts = tally_address_ask_sync (address, tally_aggregator_get_counts_new (NULL, 0, NULL), 0,
                                   &error);
  g_assert_no_error (error);
  tally_test_assert_entries (counts, "long=3 ");

  tally_address_stop (address);
  g_assert_true (tally_address_wait_stopped (address, 0));
  tally_arbiter_stop (arbiter);
}

/* Counted records (a sender's combined counts) mixed with plain ones, in one AddWords. */
static void
test_messages_counted (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("agg-test");
  g_autoptr (TallyAddress) address
      = tally_actor_start (TALLY_ACTOR (tally_aggregator_new (0, 1)), arbiter, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  TallyMessage *batch = tally_aggregator_add_words_new (0);
  g_autofree char *big = g_strnfill (300, 'w');

  tally_aggregator_add_words_append_count (batch, "the", 3, tally_word_hash ("the", 3), 41);
  tally_aggregator_add_words_append (batch, "the", 3, tally_word_hash ("the", 3));
  tally_aggregator_add_words_append_count (batch, "unused", 6, tally_word_hash ("unused", 6), 0);
  tally_aggregator_add_words_append_count (batch, big, 300, tally_word_hash (big, 300), 7);
  tally_aggregator_add_words_append (batch, "ox", 2, tally_word_hash ("ox", 2));
  tally_aggregator_add_words_append_count (batch, "ox", 2, tally_word_hash ("ox", 2), 2);
  g_assert_cmpuint (tally_aggregator_add_words_get_n_words (batch), ==, 41 + 1 + 7 + 1 + 2);
  g_assert_true (tally_address_tell (address, batch, &error));
  g_assert_no_error (error);
  counts = tally_address_ask_sync (address, tally_aggregator_get_counts_new (NULL, 0, NULL), 0,
                                   &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_counts_get_n_words (counts), ==, 3);
  g_assert_cmpuint (tally_counts_get_total (counts), ==, 52);
  g_assert_cmpuint (count_of (counts, "the"), ==, 42);
  g_assert_cmpuint (count_of (counts, big), ==, 7);
  g_assert_cmpuint (count_of (counts, "ox"), ==, 3);
  g_assert_cmpuint (count_of (counts, "unused"), ==, 0);

  tally_address_stop (address);
  g_assert_true (tally_address_wait_stopped (address, 0));
  tally_arbiter_stop (arbiter);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/aggregator/add-word-returns-count", test_add_word_returns_count);
  g_test_add_func ("/aggregator/add-word-invalid", test_add_word_invalid);
  g_test_add_func ("/aggregator/long-and-non-ascii-words", test_long_and_non_ascii_words);
#ifdef G_ENABLE_DEBUG
  g_test_add_data_func ("/aggregator/batcher-rejects-invalid/nul", "ab\0c",
                        test_batcher_rejects_invalid);
  g_test_add_data_func ("/aggregator/batcher-rejects-invalid/truncated", "caf\xc3",
                        test_batcher_rejects_invalid);
#endif
  g_test_add_func ("/aggregator/closed-after-stop", test_closed_after_stop);
  g_test_add_func ("/aggregator/shard-for", test_shard_for);
  g_test_add_func ("/aggregator/many-senders-one-aggregator", test_many_senders_one_aggregator);
  g_test_add_func ("/aggregator/many-senders-unbounded", test_many_senders_unbounded);
  g_test_add_func ("/aggregator/many-senders-three-shards", test_many_senders_three_shards);
  g_test_add_func ("/aggregator/consistent-cut", test_consistent_cut);
  g_test_add_func ("/aggregator/async-forms", test_async_forms);
  g_test_add_func ("/aggregator/merge-matches-builder", test_merge_matches_builder);
  g_test_add_func ("/aggregator/counts-shared-between-threads", test_counts_shared_between_threads);
  g_test_add_func ("/aggregator/stores", test_stores);
  g_test_add_func ("/aggregator/batcher-full", test_batcher_full);
  g_test_add_func ("/aggregator/batcher-counts", test_batcher_counts);
  g_test_add_func ("/aggregator/batcher-add-count", test_batcher_add_count);
  g_test_add_func ("/aggregator/messages-direct", test_messages_direct);
  g_test_add_func ("/aggregator/messages-counted", test_messages_counted);

  return g_test_run ();
}
