/* bench-word-table.c — memory and speed of the counting table against GHashTable, and
 * words per second into N aggregator shards through the handle.
 *
 * Usage: bench-word-table [--words N] [--stream M] [--text FILE] [--sender-only]
 *
 * 1. Memory per distinct word: N (default 1,000,000) distinct words are inserted into a
 *    TallyWordTable and, in the same run, into a GHashTable with g_strdup'd keys and
 *    pointer-sized counts (g_str_hash/g_str_equal). Bytes are malloc's in-use bytes
 *    (mallinfo2 ().uordblks, glibc) before and after, minus the words' own bytes (without
 *    NUL), divided by N. The goal is at most 45 bytes per word for our table.
 * 2. Insert and count speed of both tables on one thread (M words, default 10,000,000,
 *    drawn from the N distinct words with a skewed, Zipf-like distribution).
 * 3. Words per second into N = 1 and 2 aggregator shards through the handle: one (then two)
 *    sender threads feed M words through a TallyWordBatcher (flush every 4096 words, blocking,
 *    mailbox capacity 64 batches) and the clock stops when a get_counts that follows
 *    every batch returns; and the article's add_word (one ask per word) for a smaller
 *    number of words.
 * 4. The time of a get_counts (an owned, sorted copy) over N distinct words, 1 and 2 shards.
 * 5. The sending thread's cost per word (its CPU time, CLOCK_THREAD_CPUTIME_ID) and the
 *    whole process's (the shards' work included), 2 shards, flushing every 65536 words as
 *    `tally run`'s source does: the TallyWordBatcher against a peer that builds per-shard
 *    AddWords batches by hand. Words come from --text FILE (split on anything but letters,
 *    digits and bytes >= 0x80, lowercased ASCII) or else from the skewed stream.
 *    --sender-only runs this part alone.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-aggregator-handle.h"
#include "tally-word-batcher.h"
#include "tally-word-hash.h"
#include "tally-word-table.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct
{
  char *bytes;      /* all words, each NUL-terminated */
  gsize *offsets;   /* word i starts at bytes + offsets[i] */
  guint32 *lengths; /* without NUL */
  gsize n;
  gsize word_bytes; /* sum of lengths */
} Vocabulary;

static guint64
splitmix (guint64 *state)
{
  guint64 z = (*state += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Distinct lowercase words: a random stem of 1 to 7 letters a-p, then the word's number in
 * decimal written with the letters q-z (so no two words are the same). */
static void
make_vocabulary (Vocabulary *v, gsize n)
{
  guint64 state = 42;
  GString *all = g_string_sized_new (n * 12);

  v->n = n;
  v->offsets = g_new (gsize, n);
  v->lengths = g_new (guint32, n);
  v->word_bytes = 0;
  for (gsize i = 0; i < n; i++)
    {
      guint64 r = splitmix (&state);
      guint stem = 1 + (guint)(r % 7);
      gsize start = all->len;
      gsize x = i;
      r /= 7;
      for (guint k = 0; k < stem; k++, r /= 16)
        g_string_append_c (all, (char)('a' + r % 16));
      do
        {
          g_string_append_c (all, (char)('q' + x % 10));
          x /= 10;
        }
      while (x > 0);
      v->offsets[i] = start;
      v->lengths[i] = (guint32)(all->len - start);
      v->word_bytes += v->lengths[i];
      g_string_append_c (all, '\0');
    }
  v->bytes = g_string_free (all, FALSE);
}

static gsize
heap_in_use (void)
{
  struct mallinfo2 mi = mallinfo2 ();
  return mi.uordblks + mi.hblkhd;
}

/* A skewed stream of word numbers: u^3 scaled, so low numbers are far more frequent. */
static guint32 *
make_stream (gsize n_vocab, gsize m)
{
  guint32 *s = g_new (guint32, m);
  guint64 state = 7;
  for (gsize i = 0; i < m; i++)
    {
      double u = (double)(splitmix (&state) >> 11) / 9007199254740992.0;
      s[i] = (guint32)(u * u * u * (double)n_vocab);
    }
  return s;
}

typedef struct
{
  const Vocabulary *v;
  const guint32 *stream;
  gsize from, to;
  TallyAggregatorHandle *handle;
  GError *error;
} Feed;

static gpointer
feed_thread (gpointer data)
{
  Feed *f = data;
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (f->handle, 0);

  for (gsize i = f->from; i < f->to; i++)
    {
      guint32 w = f->stream[i];
      tally_word_batcher_add (batcher, f->v->bytes + f->v->offsets[w], f->v->lengths[w]);
      if ((i & 4095) == 4095 && !tally_word_batcher_flush (batcher, TRUE, &f->error))
        return NULL;
    }
  tally_word_batcher_flush (batcher, TRUE, &f->error);
  return NULL;
}

/* Seconds to count @m words of @stream into @n_shards shards from @n_senders threads, up to
 * the get_counts that follows the last batch of every sender; -1 on failure. */
static double
feed_shards (const Vocabulary *v, const guint32 *stream, gsize m, guint n_shards, guint n_senders)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (n_shards, 64);
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GError) error = NULL;
  Feed feeds[2];
  GThread *threads[2];
  gint64 t0 = g_get_monotonic_time ();
  double seconds;

  for (guint k = 0; k < n_senders; k++)
    {
      feeds[k] = (Feed){ v, stream, m * k / n_senders, m * (k + 1) / n_senders, handle, NULL };
      threads[k] = g_thread_new ("sender", feed_thread, &feeds[k]);
    }
  for (guint k = 0; k < n_senders; k++)
    {
      g_thread_join (threads[k]);
      if (feeds[k].error != NULL)
        {
          fprintf (stderr, "bench-word-table: %s\n", feeds[k].error->message);
          g_error_free (feeds[k].error);
          return -1;
        }
    }
  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  seconds = (double)(g_get_monotonic_time () - t0) / 1e6;
  if (counts == NULL || tally_counts_get_total (counts) != (guint64)m)
    {
      fprintf (stderr, "bench-word-table: %u shards, %u senders: wrong total\n", n_shards,
               n_senders);
      return -1;
    }
  return seconds;
}

/* Words of a text file: runs of ASCII letters and digits and of bytes >= 0x80 (kept as
 * they are, so valid UTF-8 stays valid), ASCII lowercased. */
static void
text_words (const char *path, GPtrArray *starts, GArray *lengths, char **contents)
{
  gsize size;
  g_autoptr (GError) error = NULL;
  char *t;

  if (!g_file_get_contents (path, contents, &size, &error))
    g_error ("bench-word-table: %s", error->message);
  t = *contents;
  for (gsize i = 0; i < size;)
    {
      gsize j = i;
      while (j < size && (g_ascii_isalnum (t[j]) || (guchar)t[j] >= 0x80))
        {
          t[j] = g_ascii_tolower (t[j]);
          j++;
        }
      if (j > i)
        {
          guint32 len = (guint32)(j - i);
          g_ptr_array_add (starts, t + i);
          g_array_append_val (lengths, len);
        }
      i = j + 1;
    }
}

static double
thread_cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
process_cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define SENDER_FLUSH_WORDS 65536

/* Feeds @n words into 2 shards from this thread: @mode 0 builds AddWords batches by hand,
 * 1 uses a batcher; gives the thread's and the process's CPU seconds up to the get_counts
 * after the last batch, and checks the total. */
static gboolean
sender_cost (const char *const *words, const guint32 *lengths, gsize n, guint mode,
             double *thread_s, double *process_s)
{
  g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 64);
  g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GError) error = NULL;
  TallyMessage *pending[2] = { NULL, NULL };
  double t0 = thread_cpu_s (), p0 = process_cpu_s ();
  gsize since_flush = 0;
  gboolean combine = mode > 0;

  for (gsize i = 0; i < n; i++)
    {
      if (combine)
        tally_word_batcher_add (batcher, words[i], lengths[i]);
      else
        {
          guint64 hash = tally_word_hash (words[i], lengths[i]);
          guint shard = tally_word_shard (hash, 2);
          if (pending[shard] == NULL)
            pending[shard] = tally_aggregator_add_words_new (0);
          tally_aggregator_add_words_append (pending[shard], words[i], lengths[i], hash);
        }
      if (++since_flush == SENDER_FLUSH_WORDS || i + 1 == n)
        {
          since_flush = 0;
          if (combine && !tally_word_batcher_flush (batcher, TRUE, &error))
            return FALSE;
          for (guint k = 0; !combine && k < 2; k++)
            if (pending[k] != NULL
                && !tally_address_tell (tally_aggregator_handle_get_shard_address (handle, k),
                                        g_steal_pointer (&pending[k]), &error))
              return FALSE;
        }
    }
  *thread_s = thread_cpu_s () - t0;
  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  *process_s = process_cpu_s () - p0;
  return counts != NULL && tally_counts_get_total (counts) == n;
}

int
main (int argc, char **argv)
{
  gint64 n_words = 1000000;
  gint64 n_stream = 10000000;
  g_autofree char *text_path = NULL;
  gboolean sender_only = FALSE;
  GOptionEntry entries[] = {
    { "words", 0, 0, G_OPTION_ARG_INT64, &n_words, "Distinct words (default 1000000)", "N" },
    { "stream", 0, 0, G_OPTION_ARG_INT64, &n_stream, "Words streamed (default 10000000)", "M" },
    { "text", 0, 0, G_OPTION_ARG_FILENAME, &text_path, "Words for part 5 from FILE", "FILE" },
    { "sender-only", 0, 0, G_OPTION_ARG_NONE, &sender_only, "Run part 5 alone", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  Vocabulary v;
  g_autofree guint32 *stream = NULL;
  gsize before, ours_bytes, ghash_bytes;
  gint64 t0;
  double ours_insert_s, ghash_insert_s, ours_stream_s, ghash_stream_s;
  double shard_s[3][3] = { { 0 } };
  double add_word_s;
  double snapshot_s[3] = { 0 };
  const guint n_asks = 200000;
  guint64 check_ours = 0, check_ghash = 0;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || n_words < 1 || n_stream < 1)
    {
      fprintf (stderr, "bench-word-table: %s\n", error ? error->message : "bad arguments");
      return 2;
    }

  make_vocabulary (&v, (gsize)n_words);
  stream = make_stream (v.n, (gsize)n_stream);

  /* 5. The sending thread's cost per word: the batcher against batches built by hand. */
  {
    g_autoptr (GPtrArray) starts = g_ptr_array_new ();
    g_autoptr (GArray) lengths = g_array_new (FALSE, FALSE, sizeof (guint32));
    g_autofree char *contents = NULL;
    double sender[2][3], process[2][3]; /* [mode][round] */
    double best_sender[2], best_process[2];

    if (text_path != NULL)
      text_words (text_path, starts, lengths, &contents);
    else
      for (gsize i = 0; i < (gsize)n_stream; i++)
        {
          g_ptr_array_add (starts, v.bytes + v.offsets[stream[i]]);
          g_array_append_val (lengths, v.lengths[stream[i]]);
        }
    /* Interleaved rounds; the best of 3 of each. */
    for (guint round = 0; round < 3; round++)
      for (guint mode = 0; mode < 2; mode++)
        if (!sender_cost ((const char *const *)starts->pdata, (const guint32 *)lengths->data,
                          starts->len, mode, &sender[mode][round], &process[mode][round]))
          {
            fprintf (stderr, "bench-word-table: part 5 failed or counted wrong\n");
            return 1;
          }
    for (guint mode = 0; mode < 2; mode++)
      {
        best_sender[mode] = MIN (MIN (sender[mode][0], sender[mode][1]), sender[mode][2]);
        best_process[mode] = MIN (MIN (process[mode][0], process[mode][1]), process[mode][2]);
      }
    printf ("Sending %u words (%s) into 2 shards, flush every %d words, best of 3\n", starts->len,
            text_path != NULL ? text_path : "skewed stream", SENDER_FLUSH_WORDS);
    printf ("%-32s %9s %9s %9s\n", "CPU ns per word", "batcher", "peer", "b./peer");
    printf ("%-32s %9.1f %9.1f %9.2f\n", "sending thread", best_sender[1] * 1e9 / starts->len,
            best_sender[0] * 1e9 / starts->len, best_sender[1] / best_sender[0]);
    printf ("%-32s %9.1f %9.1f %9.2f\n", "whole process (shards included)",
            best_process[1] * 1e9 / starts->len, best_process[0] * 1e9 / starts->len,
            best_process[1] / best_process[0]);
    if (sender_only)
      {
        g_free (v.bytes);
        g_free (v.offsets);
        g_free (v.lengths);
        return 0;
      }
    printf ("\n");
  }

  /* 1. Memory per distinct word, and insert speed. */
  {
    TallyWordTable *table;
    before = heap_in_use ();
    t0 = g_get_monotonic_time ();
    table = tally_word_table_new ();
    for (gsize i = 0; i < v.n; i++)
      {
        const char *w = v.bytes + v.offsets[i];
        tally_word_table_add (table, w, v.lengths[i], tally_word_hash (w, v.lengths[i]), 1);
      }
    ours_insert_s = (double)(g_get_monotonic_time () - t0) / 1e6;
    ours_bytes = heap_in_use () - before;
    g_assert (tally_word_table_get_size (table) == v.n);

    t0 = g_get_monotonic_time ();
    for (gsize i = 0; i < (gsize)n_stream; i++)
      {
        const char *w = v.bytes + v.offsets[stream[i]];
        guint32 len = v.lengths[stream[i]];
        tally_word_table_add (table, w, len, tally_word_hash (w, len), 1);
      }
    ours_stream_s = (double)(g_get_monotonic_time () - t0) / 1e6;
    check_ours = tally_word_table_get_total (table);
    tally_word_table_free (table);
  }
  {
    GHashTable *table;
    before = heap_in_use ();
    t0 = g_get_monotonic_time ();
    /* Keys are freed below, not by the table: inserting an existing key then keeps it. */
    table = g_hash_table_new (g_str_hash, g_str_equal);
    for (gsize i = 0; i < v.n; i++)
      g_hash_table_insert (table, g_strdup (v.bytes + v.offsets[i]), GUINT_TO_POINTER (1));
    ghash_insert_s = (double)(g_get_monotonic_time () - t0) / 1e6;
    ghash_bytes = heap_in_use () - before;

    t0 = g_get_monotonic_time ();
    for (gsize i = 0; i < (gsize)n_stream; i++)
      {
        const char *w = v.bytes + v.offsets[stream[i]];
        gpointer key, value;
        if (g_hash_table_lookup_extended (table, w, &key, &value))
          g_hash_table_insert (table, key, GSIZE_TO_POINTER (GPOINTER_TO_SIZE (value) + 1));
        else
          g_hash_table_insert (table, g_strdup (w), GSIZE_TO_POINTER (1));
      }
    ghash_stream_s = (double)(g_get_monotonic_time () - t0) / 1e6;
    {
      GHashTableIter iter;
      gpointer value;
      g_hash_table_iter_init (&iter, table);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        check_ghash += GPOINTER_TO_SIZE (value);
      g_hash_table_iter_init (&iter, table);
      while (g_hash_table_iter_next (&iter, &value, NULL))
        g_free (value);
    }
    g_hash_table_unref (table);
  }
  if (check_ours != check_ghash)
    {
      fprintf (stderr,
               "bench-word-table: totals differ: %" G_GUINT64_FORMAT " != %" G_GUINT64_FORMAT "\n",
               check_ours, check_ghash);
      return 1;
    }

  /* 3. Through the handle: N = 1, 2 shards, fed by 1 or 2 sender threads. */
  for (guint n_senders = 1; n_senders <= 2; n_senders++)
    for (guint n_shards = 1; n_shards <= 2; n_shards++)
      {
        shard_s[n_senders][n_shards]
            = feed_shards (&v, stream, (gsize)n_stream, n_shards, n_senders);
        if (shard_s[n_senders][n_shards] < 0)
          return 1;
      }
  {
    g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (2, 64);
    t0 = g_get_monotonic_time ();
    for (guint i = 0; i < n_asks; i++)
      if (tally_aggregator_handle_add_word (handle, v.bytes + v.offsets[stream[i % n_stream]],
                                            &error)
          == 0)
        {
          fprintf (stderr, "bench-word-table: %s\n", error->message);
          return 1;
        }
    add_word_s = (double)(g_get_monotonic_time () - t0) / 1e6;
  }
  /* 4. The cost of a snapshot: get_counts over every distinct word, 1 and 2 shards. */
  for (guint n_shards = 1; n_shards <= 2; n_shards++)
    {
      g_autoptr (TallyAggregatorHandle) handle = tally_aggregator_handle_new (n_shards, 64);
      g_autoptr (TallyWordBatcher) batcher = tally_word_batcher_new (handle, 0);
      g_autoptr (TallyCounts) counts = NULL;

      for (gsize i = 0; i < v.n; i++)
        tally_word_batcher_add (batcher, v.bytes + v.offsets[i], v.lengths[i]);
      tally_word_batcher_flush (batcher, TRUE, NULL);
      g_clear_pointer (&counts, tally_counts_unref);
      counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
      if (counts == NULL || tally_counts_get_n_words (counts) != v.n)
        {
          fprintf (stderr, "bench-word-table: snapshot of %u shards is wrong\n", n_shards);
          return 1;
        }
      g_clear_pointer (&counts, tally_counts_unref);
      t0 = g_get_monotonic_time ();
      counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
      snapshot_s[n_shards] = (double)(g_get_monotonic_time () - t0) / 1e6;
    }

  printf ("Counting table: %" G_GSIZE_FORMAT " distinct words, %.2f bytes each on average\n", v.n,
          (double)v.word_bytes / (double)v.n);
  printf ("\n%-34s %14s %14s %8s\n", "memory (malloc in-use bytes)", "TallyWordTable", "GHashTable",
          "ratio");
  printf ("%-34s %14" G_GSIZE_FORMAT " %14" G_GSIZE_FORMAT " %8.2f\n", "total bytes", ours_bytes,
          ghash_bytes, (double)ours_bytes / (double)ghash_bytes);
  printf ("%-34s %14.1f %14.1f %8.2f\n", "bytes/word beyond the word's bytes",
          (double)(ours_bytes - v.word_bytes) / (double)v.n,
          (double)(ghash_bytes - v.word_bytes) / (double)v.n,
          (double)(ours_bytes - v.word_bytes) / (double)(ghash_bytes - v.word_bytes));
  printf ("\n%-34s %14s %14s %8s\n", "speed, one thread (M words/s)", "TallyWordTable",
          "GHashTable", "ratio");
  printf ("%-34s %14.2f %14.2f %8.2f\n", "insert distinct words", (double)v.n / ours_insert_s / 1e6,
          (double)v.n / ghash_insert_s / 1e6, ghash_insert_s / ours_insert_s);
  printf ("%-34s %14.2f %14.2f %8.2f\n", "count a skewed stream",
          (double)n_stream / ours_stream_s / 1e6, (double)n_stream / ghash_stream_s / 1e6,
          ghash_stream_s / ours_stream_s);
  printf ("\n%-34s %14s %14s\n", "through the handle", "M words/s", "vs 1 shard");
  for (guint n_senders = 1; n_senders <= 2; n_senders++)
    for (guint n_shards = 1; n_shards <= 2; n_shards++)
      {
        g_autofree char *label
            = g_strdup_printf ("batcher, %u shard%s, %u sender%s", n_shards,
                               n_shards > 1 ? "s" : "", n_senders, n_senders > 1 ? "s" : "");
        printf ("%-34s %14.2f %14.2f\n", label,
                (double)n_stream / shard_s[n_senders][n_shards] / 1e6,
                shard_s[1][1] / shard_s[n_senders][n_shards]);
      }
  printf ("%-34s %14.3f %14.4f\n", "add_word (ask per word), 2 shards",
          (double)n_asks / add_word_s / 1e6,
          shard_s[1][1] / ((double)n_stream * add_word_s / n_asks));
  printf ("%-34s %14.2f %14.2f\n", "peer: TallyWordTable, no actors",
          (double)n_stream / ours_stream_s / 1e6, shard_s[1][1] / ours_stream_s);

  printf ("\n%-34s %14s\n", "get_counts of every distinct word", "seconds");
  for (guint n_shards = 1; n_shards <= 2; n_shards++)
    {
      g_autofree char *label = g_strdup_printf ("%" G_GSIZE_FORMAT " words, %u shard%s", v.n,
                                                n_shards, n_shards > 1 ? "s" : "");
      printf ("%-34s %14.3f\n", label, snapshot_s[n_shards]);
    }

  g_free (v.bytes);
  g_free (v.offsets);
  g_free (v.lengths);
  return 0;
}
