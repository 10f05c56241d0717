/* test-word-table.c — the counting table (tally-word-table) and snapshots (tally-counts).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-counts.h"
#include "tally-word-table.h"
#include "tally-test-util.h"

#include <stdlib.h>
#include <string.h>

static guint64
add (TallyWordTable *t, const char *w, guint64 delta)
{
  return tally_word_table_add (t, w, strlen (w), tally_word_hash (w, strlen (w)), delta);
}

static guint64
lookup (TallyWordTable *t, const char *w)
{
  return tally_word_table_lookup (t, w, strlen (w), tally_word_hash (w, strlen (w)));
}

/* With seed 0 the hash is wyhash final 4's (values pinned: lengths 0, 1-3, 4-16, 17-48 and
 * over 48 take different paths). The seed is restored afterwards: tests that follow must
 * see the process's own seed. */
static void
test_hash_seed_zero (void)
{
  static const struct
  {
    const char *word;
    guint64 hash;
  } pinned[] = {
    { "", G_GUINT64_CONSTANT (0x0409638ee2bde459) },
    { "a", G_GUINT64_CONSTANT (0x28d2053309d28531) },
    { "abc", G_GUINT64_CONSTANT (0x02a4f1d7cb516c72) },
    { "message digest", G_GUINT64_CONSTANT (0x41d032e1df79b67e) },
    { "abcdefghijklmnopqrstuvwxyz", G_GUINT64_CONSTANT (0x774fa8c21ed6acd2) },
    { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
      G_GUINT64_CONSTANT (0x0369bcbe3f0f0c0d) },
    { "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
      G_GUINT64_CONSTANT (0x48662e17cabfab37) },
  };
  guint64 saved = tally_word_hash_seed;

  tally_word_hash_set_seed (0);
  for (guint i = 0; i < G_N_ELEMENTS (pinned); i++)
    g_assert_cmphex (tally_word_hash (pinned[i].word, strlen (pinned[i].word)), ==, pinned[i].hash);
  tally_word_hash_set_seed (saved);
}

/* Issue 13 item 9: the hash is keyed. The same seed gives the same values; another seed
 * gives other values for every word and another assignment of words to shards, on every
 * path (lengths 0 to 200); so a set of words chosen to collide under one seed does not
 * collide under the next. */
static void
test_hash_seeded (void)
{
  guint64 saved = tally_word_hash_seed;
  char buf[200];
  guint moved = 0;

  for (guint i = 0; i < 200; i++)
    buf[i] = (char)('a' + (i * 7) % 26);
  for (guint i = 0; i < 200; i++)
    {
      guint64 h1, h1_again, h2;

      tally_word_hash_set_seed (G_GUINT64_CONSTANT (0x0123456789abcdef));
      h1 = tally_word_hash (buf, i);
      h1_again = tally_word_hash (buf, i);
      tally_word_hash_set_seed (G_GUINT64_CONSTANT (0x0123456789abcdee));
      h2 = tally_word_hash (buf, i);
      g_assert_cmphex (h1, ==, h1_again);
      g_assert_cmphex (h1, !=, h2);
      if (tally_word_shard (h1, 16) != tally_word_shard (h2, 16))
        moved++;
    }
  /* 15 in 16 words change shard when the two hashes are independent; far more than half. */
  g_assert_cmpuint (moved, >, 150);

  /* Words that share their low 10 bits under one seed (a table of 1024 slots) spread over
   * the slots under another. */
  {
    g_autoptr (GPtrArray) colliding = g_ptr_array_new_with_free_func (g_free);
    g_autoptr (GHashTable) slots = g_hash_table_new (NULL, NULL);

    tally_word_hash_set_seed (1);
    for (guint i = 0; colliding->len < 64; i++)
      {
        char *w = g_strdup_printf ("w%u", i);

        if ((tally_word_hash (w, strlen (w)) & 1023) == 0)
          g_ptr_array_add (colliding, w);
        else
          g_free (w);
      }
    tally_word_hash_set_seed (2);
    for (guint i = 0; i < colliding->len; i++)
      {
        const char *w = colliding->pdata[i];

        g_hash_table_add (slots, GUINT_TO_POINTER (tally_word_hash (w, strlen (w)) & 1023));
      }
    g_assert_cmpuint (g_hash_table_size (slots), >, 50);
  }
  tally_word_hash_set_seed (saved);
}

/* The seed is drawn per process, unless TALLY_HASH_SEED fixes it: two runs of this test's
 * own binary print their seeds. */
static void
test_hash_seed_per_process (void)
{
  if (g_test_subprocess ())
    {
      g_print ("seed=%" G_GUINT64_FORMAT "\n", tally_word_hash_seed);
      return;
    }
  {
    const char *argv0 = g_test_get_filename (G_TEST_BUILT, "test-word-table", NULL);
    char *argv[] = { (char *)argv0,       "-q", "-p", "/word-table/hash/seed-per-process",
                     "--GTestSubprocess", NULL };
    g_auto (GStrv) env = g_get_environ ();
    g_auto (GStrv) fixed_env = NULL;
    char *out[4] = { NULL };
    guint64 seeds[4];

    env = g_environ_unsetenv (env, "TALLY_HASH_SEED");
    fixed_env = g_environ_setenv (g_strdupv (env), "TALLY_HASH_SEED", "0x1f", TRUE);
    for (guint i = 0; i < 4; i++)
      {
        gint status = 0;
        g_autoptr (GError) error = NULL;
        const char *line;

        g_assert_true (g_spawn_sync (NULL, argv, i < 2 ? env : fixed_env, G_SPAWN_DEFAULT, NULL,
                                     NULL, &out[i], NULL, &status, &error));
        g_assert_no_error (error);
        g_assert_true (g_spawn_check_wait_status (status, NULL));
        line = strstr (out[i], "seed=");
        g_assert_nonnull (line);
        seeds[i] = g_ascii_strtoull (line + 5, NULL, 10);
        g_free (out[i]);
      }
    g_assert_cmphex (seeds[0], !=, seeds[1]);
    g_assert_cmphex (seeds[2], ==, 0x1f);
    g_assert_cmphex (seeds[3], ==, 0x1f);
  }
}

static void
test_hash_distinct (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autofree guint64 *hashes = g_new (guint64, 2000);
  char buf[200];

  /* Every prefix of a 200-byte string, and 1800 short words: no collisions expected. */
  for (guint i = 0; i < 200; i++)
    buf[i] = (char)('a' + (i * 7) % 26);
  for (guint i = 0; i < 200; i++)
    hashes[i] = tally_word_hash (buf, i);
  for (guint i = 200; i < 2000; i++)
    {
      g_autofree char *w = g_strdup_printf ("w%u", i);
      hashes[i] = tally_word_hash (w, strlen (w));
    }
  for (guint i = 0; i < 2000; i++)
    {
      g_assert_false (g_hash_table_contains (seen, &hashes[i]));
      g_hash_table_add (seen, &hashes[i]);
    }
}

static void
test_table_basic (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();

  g_assert_cmpuint (tally_word_table_get_size (t), ==, 0);
  g_assert_cmpuint (lookup (t, "hello"), ==, 0);
  g_assert_cmpuint (add (t, "hello", 1), ==, 1);
  g_assert_cmpuint (add (t, "hello", 1), ==, 2);
  g_assert_cmpuint (add (t, "world", 5), ==, 5);
  g_assert_cmpuint (add (t, "hell", 1), ==, 1);
  g_assert_cmpuint (lookup (t, "hello"), ==, 2);
  g_assert_cmpuint (lookup (t, "hell"), ==, 1);
  g_assert_cmpuint (lookup (t, "hello!"), ==, 0);
  g_assert_cmpuint (tally_word_table_get_size (t), ==, 3);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, 8);

  tally_word_table_remove_all (t);
  g_assert_cmpuint (tally_word_table_get_size (t), ==, 0);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, 0);
  g_assert_cmpuint (lookup (t, "hello"), ==, 0);
  g_assert_cmpuint (add (t, "hello", 3), ==, 3);
}

/* 300,000 distinct words through 15 doublings; every count exact afterwards. */
static void
test_table_growth (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  const guint n = 300000;
  guint64 total = 0;
  char w[32];

  for (guint round = 0; round < 3; round++)
    for (guint i = 0; i < n; i++)
      {
        guint len = (guint)g_snprintf (w, sizeof w, "word-%u", i);
        guint64 delta = (i % 7 == 0 || round == 0) ? 1 : 0;
        if (delta == 0)
          continue;
        tally_word_table_add (t, w, len, tally_word_hash (w, len), delta);
        total++;
      }
  g_assert_cmpuint (tally_word_table_get_size (t), ==, n);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, total);
  for (guint i = 0; i < n; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "word-%u", i);
      g_assert_cmpuint (tally_word_table_lookup (t, w, len, tally_word_hash (w, len)), ==,
                        i % 7 == 0 ? 3 : 1);
    }
  /* 300,000 / 0.8 needs 2^19 slots of 16 bytes (8 MiB), and 300,000 keys of 10 to 12
   * bytes with their 1-byte lengths fill 4 arena chunks of 1 MiB. */
  g_assert_cmpuint (tally_word_table_get_memory (t), >=, (gsize)12 * 1048576);
  g_assert_cmpuint (tally_word_table_get_memory (t), <, (gsize)12 * 1048576 + 4096);
}

/* The goal: at most 45 bytes per distinct word beyond the word's own bytes at a
 * million distinct words (tests/bench/bench-word-table.c also measures malloc's view). */
static void
test_table_memory_goal (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  const gsize n = 1000000;
  gsize word_bytes = 0;
  gsize per_word;
  char w[32];

  for (gsize i = 0; i < n; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "w%" G_GSIZE_FORMAT, i * 2654435761u % 1000003);
      word_bytes += len;
      tally_word_table_add (t, w, len, tally_word_hash (w, len), 1);
    }
  g_assert_cmpuint (tally_word_table_get_size (t), ==, n);
  per_word = (tally_word_table_get_memory (t) - word_bytes) / n;
  g_test_message ("%" G_GSIZE_FORMAT " bytes per distinct word beyond its own bytes", per_word);
  g_assert_cmpuint (per_word, <=, 45);
}

typedef struct
{
  GHashTable *seen; /* word (a NUL in it written as "\\0") -> count */
  guint n_calls;
  guint64 total;
} Collect;

static void
collect (const char *word, gsize len, guint64 count, gpointer user_data)
{
  Collect *c = user_data;
  c->n_calls++;
  c->total += count;
  /* Keyed so that "a\0b" and "a" stay apart, whatever order the table's hash gives them. */
  {
    GString *key = g_string_new (NULL);

    for (gsize i = 0; i < len; i++)
      if (word[i] == '\0')
        g_string_append (key, "\\0");
      else
        g_string_append_c (key, word[i]);
    g_hash_table_insert (c->seen, g_string_free (key, FALSE), g_memdup2 (&count, sizeof count));
  }
}

static guint64
seen_count (Collect *c, const char *word)
{
  guint64 *v = g_hash_table_lookup (c->seen, word);
  return v != NULL ? *v : 0;
}

/* Non-ASCII bytes, a NUL inside a key, 2-byte length prefixes and a key longer than a
 * whole arena chunk. */
static void
test_table_bytes (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  g_autofree char *big = g_malloc (3 * 1024 * 1024);
  g_autofree char *mid = g_malloc (300);
  const char hi[] = "\x80\x81\xfe\xff";
  const char nul[] = "a\0b";
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  Collect c = { seen, 0, 0 };

  for (gsize i = 0; i < 3 * 1024 * 1024; i++)
    big[i] = (char)(0x80 + i % 0x80);
  memset (mid, 'm', 300);

  g_assert_cmpuint (tally_word_table_add (t, hi, 4, tally_word_hash (hi, 4), 1), ==, 1);
  g_assert_cmpuint (tally_word_table_add (t, nul, 3, tally_word_hash (nul, 3), 2), ==, 2);
  g_assert_cmpuint (tally_word_table_add (t, "a", 1, tally_word_hash ("a", 1), 4), ==, 4);
  g_assert_cmpuint (tally_word_table_add (t, mid, 300, tally_word_hash (mid, 300), 1), ==, 1);
  g_assert_cmpuint (
      tally_word_table_add (t, big, 3 * 1024 * 1024, tally_word_hash (big, 3 * 1024 * 1024), 1), ==,
      1);
  /* Short keys after the long one go on in an ordinary chunk. */
  for (guint i = 0; i < 1000; i++)
    {
      g_autofree char *w = g_strdup_printf ("after-%u", i);
      add (t, w, 1);
    }
  g_assert_cmpuint (
      tally_word_table_add (t, big, 3 * 1024 * 1024, tally_word_hash (big, 3 * 1024 * 1024), 1), ==,
      2);
  g_assert_cmpuint (tally_word_table_add (t, mid, 300, tally_word_hash (mid, 300), 1), ==, 2);
  g_assert_cmpuint (tally_word_table_lookup (t, hi, 4, tally_word_hash (hi, 4)), ==, 1);
  g_assert_cmpuint (tally_word_table_lookup (t, nul, 3, tally_word_hash (nul, 3)), ==, 2);
  g_assert_cmpuint (tally_word_table_lookup (t, mid, 299, tally_word_hash (mid, 299)), ==, 0);
  g_assert_cmpuint (lookup (t, "after-999"), ==, 1);
  g_assert_cmpuint (tally_word_table_get_size (t), ==, 1005);

  tally_word_table_foreach (t, collect, &c);
  g_assert_cmpuint (c.n_calls, ==, 1005);
  g_assert_cmpuint (c.total, ==, 1 + 2 + 4 + 2 + 2 + 1000);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, 1 + 2 + 4 + 2 + 2 + 1000);
  g_assert_cmpuint (seen_count (&c, "\x80\x81\xfe\xff"), ==, 1);
  g_assert_cmpuint (seen_count (&c, "a"), ==, 4);
  g_assert_cmpuint (seen_count (&c, "a\\0b"), ==, 2);
}

static void
test_table_changes (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  Collect c = { seen, 0, 0 };

  add (t, "a", 1);
  add (t, "b", 2);
  add (t, "a", 1);
  tally_word_table_set (t, "r", 1, tally_word_hash ("r", 1), 10);
  g_assert_cmpuint (tally_word_table_get_n_changed (t), ==, 2);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, 14);

  tally_word_table_take_changes (t, collect, &c);
  g_assert_cmpuint (g_hash_table_size (seen), ==, 2);
  g_assert_cmpuint (seen_count (&c, "a"), ==, 2);
  g_assert_cmpuint (seen_count (&c, "b"), ==, 2);
  g_assert_cmpuint (tally_word_table_get_n_changed (t), ==, 0);

  /* Nothing changed: nothing taken. */
  g_hash_table_remove_all (seen);
  tally_word_table_take_changes (t, collect, &c);
  g_assert_cmpuint (g_hash_table_size (seen), ==, 0);

  /* A restored word counted again is changed, with its whole count. */
  add (t, "r", 1);
  add (t, "c", 1);
  tally_word_table_take_changes (t, collect, &c);
  g_assert_cmpuint (g_hash_table_size (seen), ==, 2);
  g_assert_cmpuint (seen_count (&c, "r"), ==, 11);
  g_assert_cmpuint (seen_count (&c, "c"), ==, 1);
}

/* Keys that share a hash are told apart by their bytes: for every length up to 40 and
 * every byte position, a key that differs from another of its length only there, all
 * with one made-up hash, so every lookup walks the same probe chain and compares bytes. */
static void
test_table_same_hash (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  const guint64 hash = G_GUINT64_CONSTANT (0x1234567800000007);
  gsize expected = 0;

  for (gsize len = 1; len <= 40; len++)
    {
      g_autofree char *base = g_strnfill (len, 'a');

      tally_word_table_add (table, base, len, hash, 1);
      expected++;
      for (gsize pos = 0; pos < len; pos++)
        {
          g_autofree char *other = g_strdup (base);

          other[pos] = 'b';
          g_assert_cmpuint (tally_word_table_add (table, other, len, hash, 2), ==, 2);
          expected++;
        }
    }
  g_assert_cmpuint (tally_word_table_get_size (table), ==, expected);
  for (gsize len = 1; len <= 40; len++)
    {
      g_autofree char *base = g_strnfill (len, 'a');

      g_assert_cmpuint (tally_word_table_lookup (table, base, len, hash), ==, 1);
      base[len - 1] = 'c';
      g_assert_cmpuint (tally_word_table_lookup (table, base, len, hash), ==, 0);
      base[len - 1] = 'b';
      g_assert_cmpuint (tally_word_table_lookup (table, base, len, hash), ==, 2);
    }
  /* The empty key, and a hash whose low 32 bits are 0 (as an empty slot's are). */
  g_assert_cmpuint (tally_word_table_add (table, "", 0, hash, 5), ==, 5);
  g_assert_cmpuint (tally_word_table_add (table, "z", 1, 0, 3), ==, 3);
  g_assert_cmpuint (tally_word_table_add (table, "z", 1, 0, 1), ==, 4);
  g_assert_cmpuint (tally_word_table_lookup (table, "", 0, hash), ==, 5);
  g_assert_cmpuint (tally_word_table_get_size (table), ==, expected + 2);
}

/* tally_word_table_count() is tally_word_table_add() with tally_word_hash(): the two
 * forms count into the same entries. */
static void
test_table_count (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  const char *words[] = { "a", "of", "the", "lord", "israel", "commandments", "everlasting-ness" };

  for (guint i = 0; i < G_N_ELEMENTS (words); i++)
    {
      gsize len = strlen (words[i]);

      g_assert_cmpuint (tally_word_table_count (table, words[i], len, i + 1), ==, i + 1);
      g_assert_cmpuint (
          tally_word_table_add (table, words[i], len, tally_word_hash (words[i], len), 10), ==,
          i + 11);
      g_assert_cmpuint (tally_word_table_count (table, words[i], len, 1), ==, i + 12);
    }
  g_assert_cmpuint (tally_word_table_get_size (table), ==, G_N_ELEMENTS (words));
  g_assert_cmpuint (tally_word_table_lookup (table, "lord", 4, tally_word_hash ("lord", 4)), ==,
                    15);
}

/* tally_word_table_count_words() counts a batch as tally_word_table_count() does word by
 * word, and stops right after the word that fills the table to max_size: repeats do not
 * fill it, and the rest is counted by the next call. */
static void
test_table_count_words (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  g_autoptr (TallyWordTable) one_by_one = tally_word_table_new ();
  const char *text[] = { "the",    "lord", "the",  "of", "the",
                         "israel", "lord", "of",   "a",  "commandments-and-statutes",
                         "a",      "the",  "zion", "of" };
  TallyWordRef refs[G_N_ELEMENTS (text)];
  gsize done;

  for (guint i = 0; i < G_N_ELEMENTS (text); i++)
    {
      refs[i].word = text[i];
      refs[i].len = strlen (text[i]);
      tally_word_table_count (one_by_one, text[i], refs[i].len, 1);
    }
  /* "the lord the of": the 4th word makes 3 distinct words. */
  done = tally_word_table_count_words (table, refs, G_N_ELEMENTS (refs), 3);
  g_assert_cmpuint (done, ==, 4);
  g_assert_cmpuint (tally_word_table_get_size (table), ==, 3);
  g_assert_cmpuint (tally_word_table_get_total (table), ==, 4);
  /* Already full: one word per call. */
  g_assert_cmpuint (tally_word_table_count_words (table, refs + done, 2, 3), ==, 1);
  done++;
  done += tally_word_table_count_words (table, refs + done, G_N_ELEMENTS (refs) - done, 100);
  g_assert_cmpuint (done, ==, G_N_ELEMENTS (refs));
  g_assert_cmpuint (tally_word_table_count_words (table, NULL, 0, 1), ==, 0);

  g_assert_cmpuint (tally_word_table_get_size (table), ==, 7);
  g_assert_cmpuint (tally_word_table_get_total (table), ==, G_N_ELEMENTS (text));
  for (guint i = 0; i < G_N_ELEMENTS (text); i++)
    {
      guint64 hash = tally_word_hash (refs[i].word, refs[i].len);

      g_assert_cmpuint (tally_word_table_lookup (table, refs[i].word, refs[i].len, hash), ==,
                        tally_word_table_lookup (one_by_one, refs[i].word, refs[i].len, hash));
    }
  g_assert_cmpuint (tally_word_table_lookup (table, "the", 3, tally_word_hash ("the", 3)), ==, 4);
  g_assert_cmpuint (tally_word_table_lookup (table, "of", 2, tally_word_hash ("of", 2)), ==, 3);
}

static void
copy_one (const char *word, gsize len, guint64 count, gpointer user_data)
{
  tally_word_table_add (user_data, word, len, tally_word_hash (word, len), count);
}

/* tally_word_table_clear() empties the table but keeps its slot array: words counted
 * before are gone, words counted after count from 0, many times over, and the memory does
 * not grow from one fill to the next. Then words copied from one table into another in
 * the first's slot order (the order a flush gives) land in the second as they should. */
static void
test_table_clear (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  g_autoptr (TallyWordTable) copy = tally_word_table_new ();
  gsize memory = 0;

  for (guint round = 0; round < 3; round++)
    {
      for (guint i = 0; i < 50000; i++)
        {
          char word[32];
          int len = g_snprintf (word, sizeof word, "w%u-%u", round, i);

          g_assert_cmpuint (tally_word_table_count (table, word, (gsize)len, 2), ==, 2);
        }
      g_assert_cmpuint (tally_word_table_get_size (table), ==, 50000);
      g_assert_cmpuint (tally_word_table_get_total (table), ==, 100000);
      if (round > 0)
        g_assert_cmpuint (tally_word_table_get_memory (table), ==, memory);
      memory = tally_word_table_get_memory (table);
      if (round < 2)
        {
          tally_word_table_clear (table);
          g_assert_cmpuint (tally_word_table_get_size (table), ==, 0);
          g_assert_cmpuint (tally_word_table_get_total (table), ==, 0);
          g_assert_cmpuint (lookup (table, "w0-7"), ==, 0);
        }
    }
  g_assert_cmpuint (lookup (table, "w2-49999"), ==, 2);
  g_assert_cmpuint (lookup (table, "w1-5"), ==, 0);

  tally_word_table_foreach (table, copy_one, copy);
  g_assert_cmpuint (tally_word_table_get_size (copy), ==, 50000);
  g_assert_cmpuint (lookup (copy, "w2-123"), ==, 2);
}

static void
test_table_saturates (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  const guint64 max = G_MAXUINT64 >> 1;

  g_assert_cmpuint (add (t, "x", max - 1), ==, max - 1);
  g_assert_cmpuint (add (t, "x", 5), ==, max);
  g_assert_cmpuint (lookup (t, "x"), ==, max);
}

/* ----- TallyCounts ---------------------------------------------------------------- */

/* tally_test_assert_entries, and every entry's word is NUL-terminated at its length. */
static void
assert_entries (TallyCounts *counts, const char *expected)
{
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    g_assert_cmpuint (strlen (e[i].word), ==, e[i].len);
  tally_test_assert_entries (counts, expected);
}

/* Count descending, then bytes ascending as memcmp orders them, a prefix first. */
static void
test_counts_order (void)
{
  const char *words[] = { "b", "ab", "a\xc3\xa9", "a", "zz", "A", "é", "a" };
  const guint64 counts[] = { 2, 2, 2, 1, 5, 2, 2, 1 };
  g_autoptr (TallyCounts) c = tally_test_counts_new (words, counts, G_N_ELEMENTS (words));

  assert_entries (c, "zz=5 A=2 a=2 ab=2 aé=2 b=2 é=2 ");
  g_assert_cmpuint (tally_counts_get_n_words (c), ==, 7);
  g_assert_cmpuint (tally_counts_get_total (c), ==, 17);
}

static void
test_counts_builder_merges (void)
{
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  const char *w1[] = { "kafka", "streams", "test" };
  const guint64 c1[] = { 2, 1, 1 };
  const char *w2[] = { "kafka", "streams", "utils" };
  const guint64 c2[] = { 1, 1, 1 };
  g_autoptr (TallyCounts) part1 = tally_test_counts_new (w1, c1, 3);
  g_autoptr (TallyCounts) part2 = tally_test_counts_new (w2, c2, 3);
  g_autoptr (TallyCounts) merged = NULL;
  g_autoptr (TallyCounts) again = NULL;

  tally_counts_builder_add_counts (b, part1);
  tally_counts_builder_add_counts (b, part2);
  tally_counts_builder_add (b, "utils", 5, 0);
  tally_counts_builder_add (b, "apache", 6, 1);
  g_assert_cmpuint (tally_counts_builder_get_n_words (b), ==, 5);
  merged = tally_counts_builder_end (b);
  assert_entries (merged, "kafka=3 streams=2 apache=1 test=1 utils=1 ");
  g_assert_cmpuint (tally_counts_get_total (merged), ==, 8);

  /* The builder is empty and reusable after end. */
  g_assert_cmpuint (tally_counts_builder_get_n_words (b), ==, 0);
  tally_counts_builder_add (b, "x", 1, 1);
  again = tally_counts_builder_end (b);
  assert_entries (again, "x=1 ");
}

static void
test_counts_lookup (void)
{
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  g_autoptr (TallyCounts) c = NULL;
  g_autoptr (TallyCounts) empty = tally_counts_new_empty ();
  char w[32];

  for (guint i = 0; i < 5000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "w%u", i);
      tally_counts_builder_add (b, w, len, i + 1);
    }
  c = tally_counts_builder_end (b);
  g_assert_cmpuint (tally_counts_get_n_words (c), ==, 5000);
  g_assert_cmpuint (tally_counts_get_total (c), ==, (guint64)5000 * 5001 / 2);
  for (guint i = 0; i < 5000; i++)
    {
      guint len = (guint)g_snprintf (w, sizeof w, "w%u", i);
      g_assert_cmpuint (tally_counts_lookup (c, w, len), ==, i + 1);
    }
  g_assert_cmpuint (tally_counts_lookup (c, "w5000", 5), ==, 0);
  g_assert_cmpuint (tally_counts_lookup (c, "w1", 1), ==, 0);
  g_assert_cmpuint (tally_counts_lookup (empty, "w1", 2), ==, 0);
  g_assert_cmpuint (tally_counts_get_n_words (empty), ==, 0);
  g_assert_cmpuint (tally_counts_get_total (empty), ==, 0);
  g_assert_cmpstr (tally_counts_get_entries (c, NULL)[0].word, ==, "w4999");
}

static void
test_counts_filters (void)
{
  const char *words[] = { "kafka", "kafkaesque", "stream", "streams", "ka", "k" };
  const guint64 counts[] = { 5, 1, 3, 4, 2, 2 };
  g_autoptr (TallyCounts) c = tally_test_counts_new (words, counts, G_N_ELEMENTS (words));
  TallyCountsOptions top2 = { .top = 2 };
  TallyCountsOptions pre = { .prefix = "ka" };
  TallyCountsOptions min3 = { .min_count = 3 };
  TallyCountsOptions all = { .top = 3, .prefix = "k", .min_count = 2 };
  TallyCountsOptions none = { .top = 0, .prefix = "", .min_count = 1 };
  g_autoptr (TallyCounts) f1 = tally_counts_filter (c, &top2);
  g_autoptr (TallyCounts) f2 = tally_counts_filter (c, &pre);
  g_autoptr (TallyCounts) f3 = tally_counts_filter (c, &min3);
  g_autoptr (TallyCounts) f4 = tally_counts_filter (c, &all);
  g_autoptr (TallyCounts) f5 = tally_counts_filter (c, &none);
  g_autoptr (TallyCounts) f6 = tally_counts_filter (c, NULL);
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  g_autoptr (TallyCounts) f7 = NULL;

  assert_entries (c, "kafka=5 streams=4 stream=3 k=2 ka=2 kafkaesque=1 ");
  assert_entries (f1, "kafka=5 streams=4 ");
  g_assert_cmpuint (tally_counts_get_total (f1), ==, 9);
  assert_entries (f2, "kafka=5 ka=2 kafkaesque=1 ");
  assert_entries (f3, "kafka=5 streams=4 stream=3 ");
  assert_entries (f4, "kafka=5 k=2 ka=2 ");
  g_assert_true (f5 == c);
  g_assert_true (f6 == c);

  /* Filters apply after duplicates are summed: 1 + 1 + 1 passes min_count 3. */
  tally_counts_builder_add (b, "kafka", 5, 1);
  tally_counts_builder_add (b, "kafka", 5, 1);
  tally_counts_builder_add (b, "kafka", 5, 1);
  tally_counts_builder_add (b, "zeta", 4, 2);
  f7 = tally_counts_builder_end_filtered (b, &min3);
  assert_entries (f7, "kafka=3 ");
}

/* A small top N is selected with a heap: same entries, same order as a full sort. */
static void
test_counts_top_selection (void)
{
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  g_autoptr (TallyCounts) full = NULL;
  const guint64 tops[] = { 1, 2, 3, 10, 100, 4999, 5000 };
  const TallyWordCount *all;
  char w[32];

  /* 20,000 words with only 101 distinct counts: ties everywhere. */
  for (guint pass = 0; pass < 2; pass++)
    {
      for (guint i = 0; i < 20000; i++)
        {
          guint len = (guint)g_snprintf (w, sizeof w, "t%u", i);
          tally_counts_builder_add (b, w, len, (guint64)(i * 7919u) % 101 + 1);
        }
      if (pass == 0)
        full = tally_counts_builder_end (b);
    }
  all = tally_counts_get_entries (full, NULL);
  for (guint t = 0; t < G_N_ELEMENTS (tops); t++)
    {
      TallyCountsOptions options = { .top = tops[t] };
      g_autoptr (TallyCounts) top = NULL;
      gsize n;
      const TallyWordCount *e;

      if (t > 0)
        for (guint i = 0; i < 20000; i++)
          {
            guint len = (guint)g_snprintf (w, sizeof w, "t%u", i);
            tally_counts_builder_add (b, w, len, (guint64)(i * 7919u) % 101 + 1);
          }
      top = tally_counts_builder_end_filtered (b, &options);
      e = tally_counts_get_entries (top, &n);
      g_assert_cmpuint (n, ==, tops[t]);
      for (gsize i = 0; i < n; i++)
        {
          g_assert_cmpstr (e[i].word, ==, all[i].word);
          g_assert_cmpuint (e[i].count, ==, all[i].count);
        }
    }
}

/* Snapshot order against a reference: count descending, then memcmp() of the word bytes,
 * a prefix first. The words share long prefixes and use bytes above 0x7f, where a sort on
 * the first bytes alone, or on signed chars, would go wrong. */
static int
reference_order (const void *a, const void *b)
{
  const TallyWordCount *x = a, *y = b;
  int c;

  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  c = memcmp (x->word, y->word, MIN (x->len, y->len));
  if (c != 0)
    return c;
  return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

static void
test_counts_order_long_prefixes (void)
{
  g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
  g_autoptr (TallyCounts) c = NULL;
  g_autofree TallyWordCount *expected = NULL;
  const char *stems[]
      = { "", "abcdefg", "abcdefgh", "abcdefghij", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" };
  const char *tails[] = { "", "a", "b", "\xc3\xa9", "z", "aa", "\xe2\x82\xac" };
  const TallyWordCount *e;
  gsize n, k = 0;

  for (guint s = 0; s < G_N_ELEMENTS (stems); s++)
    for (guint t = 0; t < G_N_ELEMENTS (tails); t++)
      for (guint u = 0; u < G_N_ELEMENTS (tails); u++)
        {
          g_autofree char *w = g_strconcat (stems[s], tails[t], tails[u], NULL);
          if (w[0] != '\0')
            tally_counts_builder_add (b, w, strlen (w), (s * 7 + t * 3 + u) % 3 + 1);
        }
  c = tally_counts_builder_end (b);
  e = tally_counts_get_entries (c, &n);
  g_assert_cmpuint (n, ==, 204);
  expected = g_memdup2 (e, n * sizeof *e);
  qsort (expected, n, sizeof *expected, reference_order);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpstr (e[i].word, ==, expected[i].word);
      g_assert_cmpuint (e[i].count, ==, expected[i].count);
      k += e[i].count;
    }
  g_assert_cmpuint (tally_counts_get_total (c), ==, k);
}

static void
test_counts_builder_rejects_invalid (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (TallyCountsBuilder) b = tally_counts_builder_new ();
      tally_counts_builder_add (b, "\xff\xfe", 2, 1);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*g_utf8_validate*");
}

/* Keys (tally_word_table_add_keyed()): one per word, never 0, stable while the table grows,
 * turned back into the word's bytes; counts, totals and changes as tally_word_table_add(),
 * also for a word longer than 127 bytes and for a word added with the hash bits only. */
static void
test_table_keyed (void)
{
  g_autoptr (TallyWordTable) t = tally_word_table_new ();
  g_autofree guint32 *keys = g_new (guint32, 3000);
  g_autofree char *long_word = g_strnfill (300, 'x');
  guint32 key;
  gsize len;
  const char *bytes;

  for (guint i = 0; i < 3000; i++)
    {
      g_autofree char *w = g_strdup_printf ("k%u", i);

      keys[i]
          = tally_word_table_add_keyed (t, w, strlen (w), tally_word_hash (w, strlen (w)), i + 1);
      g_assert_cmpuint (keys[i], !=, 0);
    }
  for (guint i = 0; i < 3000; i++)
    {
      g_autofree char *w = g_strdup_printf ("k%u", i);

      bytes = tally_word_table_get_key (t, keys[i], &len);
      g_assert_cmpmem (bytes, len, w, strlen (w));
      /* The same word gives the same key, after the table grew. */
      g_assert_cmpuint (
          tally_word_table_add_keyed (t, w, strlen (w), tally_word_hash (w, strlen (w)), 1), ==,
          keys[i]);
      g_assert_cmpuint (lookup (t, w), ==, i + 2);
    }
  key = tally_word_table_add_keyed (t, long_word, 300, (guint32)tally_word_hash (long_word, 300),
                                    5);
  bytes = tally_word_table_get_key (t, key, &len);
  g_assert_cmpmem (bytes, len, long_word, 300);
  g_assert_cmpuint (lookup (t, long_word), ==, 5);
  g_assert_cmpuint (tally_word_table_get_size (t), ==, 3001);
  g_assert_cmpuint (tally_word_table_get_total (t), ==, 3000 * 3001 / 2 + 3000 + 5);
  g_assert_cmpuint (tally_word_table_get_n_changed (t), ==, 3001);
}

/* tally_word_table_count_by_hash(): words with a positive count per group of the top
 * bits of their stored hash, the same groups foreach_hashed() gives. */
static void
count_group (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  if (count > 0)
    ((gsize *)user_data)[hash_lo >> (32 - 3)]++;
}

static void
test_count_by_hash (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  gsize by_slots[8] = { 0 }, by_words[8] = { 0 }, all[1] = { 0 };

  for (guint i = 0; i < 1000; i++)
    {
      g_autofree char *w = g_strdup_printf ("w%u", i);
      tally_word_table_add (table, w, strlen (w), tally_word_hash (w, strlen (w)), 1 + i % 3);
    }
  tally_word_table_set (table, "zero", 4, tally_word_hash ("zero", 4), 0);
  g_assert_cmpuint (tally_word_table_count_by_hash (table, 3, by_slots), ==, 1000);
  tally_word_table_foreach_hashed (table, count_group, by_words);
  for (guint g = 0; g < 8; g++)
    g_assert_cmpuint (by_slots[g], ==, by_words[g]);
  g_assert_cmpuint (tally_word_table_count_by_hash (table, 0, all), ==, 1000);
  g_assert_cmpuint (all[0], ==, 1000);
}

static void
count_changes_noop (const char *word, gsize len, guint64 count, gpointer user_data)
{
}

/* Visited by test_nth_count_and_at_least(): each word's count, by word. */
static void
note_at_least (const char *word, gsize len, guint64 count, guint32 hash_lo, gpointer user_data)
{
  g_autofree char *w = g_strndup (word, len);

  g_assert_cmpuint (hash_lo, ==, (guint32)tally_word_hash (word, len));
  g_assert_false (g_hash_table_contains (user_data, w));
  g_hash_table_insert (user_data, g_steal_pointer (&w), GUINT_TO_POINTER ((guint)count));
}

/* tally_word_table_get_nth_count(), tally_word_table_foreach_at_least() and
 * tally_word_table_count_absent() against the counts put in: word i counted i % 50 + 1 times (20
 * words of each count, 1 to 50), one word stored with count 0. The stamps: an id per table, changes
 * by every count. */
/* tally_word_table_get_max_count(): the largest count ever held, through every way a count
 * changes, and 0 again after clear and remove_all. */
static void
test_max_count (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  TallyWordRef refs[] = { { "a", 1 }, { "b", 1 }, { "a", 1 } };

  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 0);
  tally_word_table_count (table, "one", 3, 1);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 1);
  tally_word_table_count (table, "five", 4, 5);
  tally_word_table_count (table, "one", 3, 1);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 5);
  tally_word_table_add (table, "one", 3, tally_word_hash ("one", 3), 4);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 6);
  tally_word_table_add_keyed (table, "five", 4, tally_word_hash ("five", 4), 2);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 7);
  g_assert_cmpuint (tally_word_table_count_words (table, refs, 3, G_MAXSIZE), ==, 3);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 7);
  tally_word_table_set (table, "set", 3, tally_word_hash ("set", 3), 9);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 9);
  /* Lowered: still a bound. */
  tally_word_table_set (table, "set", 3, tally_word_hash ("set", 3), 2);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 9);
  /* Saturated. */
  tally_word_table_count (table, "big", 3, G_MAXUINT64);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, G_MAXUINT64 >> 1);
  g_assert_cmpuint (tally_word_table_lookup (table, "big", 3, tally_word_hash ("big", 3)), ==,
                    G_MAXUINT64 >> 1);
  tally_word_table_clear (table);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 0);
  tally_word_table_count (table, "a", 1, 3);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 3);
  tally_word_table_remove_all (table);
  g_assert_cmpuint (tally_word_table_get_max_count (table), ==, 0);
}

static void
test_nth_count_and_at_least (void)
{
  g_autoptr (TallyWordTable) table = tally_word_table_new ();
  g_autoptr (TallyWordTable) other = tally_word_table_new ();
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint64 changes;

  g_assert_cmpuint (tally_word_table_get_nth_count (table, 1), ==, 0);
  for (guint i = 0; i < 1000; i++)
    {
      g_autofree char *w = g_strdup_printf ("word-%u", i);
      tally_word_table_add (table, w, strlen (w), tally_word_hash (w, strlen (w)), i % 50 + 1);
    }
  tally_word_table_set (table, "zero", 4, tally_word_hash ("zero", 4), 0);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 0), ==, 0);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 1), ==, 50);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 20), ==, 50);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 21), ==, 49);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 1000), ==, 1);
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 1001), ==, 0); /* the word of 0 */
  g_assert_cmpuint (tally_word_table_get_nth_count (table, 1002), ==, 0); /* fewer words */

  g_assert_cmpuint (tally_word_table_foreach_at_least (table, 48, note_at_least, seen), ==, 60);
  g_assert_cmpuint (g_hash_table_size (seen), ==, 60);
  for (guint i = 47; i < 1000; i += 50)
    for (guint k = 0; k < 3; k++)
      {
        g_autofree char *w = g_strdup_printf ("word-%u", i + k);
        g_assert_cmpuint (GPOINTER_TO_UINT (g_hash_table_lookup (seen, w)), ==, 48 + k);
      }
  g_hash_table_remove_all (seen);
  g_assert_cmpuint (tally_word_table_foreach_at_least (table, 51, note_at_least, seen), ==, 0);
  g_assert_cmpuint (tally_word_table_foreach_at_least (table, 0, note_at_least, seen), ==, 1001);
  g_assert_cmpuint (GPOINTER_TO_UINT (g_hash_table_lookup (seen, "zero")), ==, 0);

  /* Absent from @other: 1000 words; then "word-0".."word-99" counted there, "word-100" and
   * "zero" there with 0, "other-only" there only. */
  {
    TallyWordTable *others[] = { other };
    TallyWordTable *both[] = { table, other };

    g_assert_cmpuint (tally_word_table_count_absent (table, others, 1), ==, 1000);
    g_assert_cmpuint (tally_word_table_count_absent (table, NULL, 0), ==, 1000);
    for (guint i = 0; i < 100; i++)
      {
        g_autofree char *w = g_strdup_printf ("word-%u", i);
        tally_word_table_add (other, w, strlen (w), tally_word_hash (w, strlen (w)), 1);
      }
    tally_word_table_set (other, "word-100", 8, tally_word_hash ("word-100", 8), 0);
    tally_word_table_set (other, "zero", 4, tally_word_hash ("zero", 4), 0);
    tally_word_table_count (other, "other-only", 10, 2);
    g_assert_cmpuint (tally_word_table_count_absent (table, others, 1), ==, 900);
    g_assert_cmpuint (tally_word_table_count_absent (other, both, 1), ==, 1);
    g_assert_cmpuint (tally_word_table_count_absent (other, both, 0), ==, 101);
  }

  g_assert_cmpuint (tally_word_table_get_id (table), !=, 0);
  g_assert_cmpuint (tally_word_table_get_id (table), !=, tally_word_table_get_id (other));
  changes = tally_word_table_get_changes (table);
  g_assert_cmpuint (changes, >=, 1001);
  tally_word_table_take_changes (table, count_changes_noop, NULL);
  g_assert_cmpuint (tally_word_table_get_changes (table), ==, changes);
  tally_word_table_count (table, "word-1", 6, 1);
  g_assert_cmpuint (tally_word_table_get_changes (table), >, changes);
  changes = tally_word_table_get_changes (table);
  tally_word_table_set (table, "word-1", 6, tally_word_hash ("word-1", 6), 2);
  g_assert_cmpuint (tally_word_table_get_changes (table), >, changes);
  changes = tally_word_table_get_changes (table);
  tally_word_table_add_keyed (table, "word-2", 6, tally_word_hash ("word-2", 6), 1);
  g_assert_cmpuint (tally_word_table_get_changes (table), >, changes);
  changes = tally_word_table_get_changes (table);
  tally_word_table_clear (table);
  g_assert_cmpuint (tally_word_table_get_changes (table), >, changes);
  changes = tally_word_table_get_changes (table);
  tally_word_table_remove_all (table);
  g_assert_cmpuint (tally_word_table_get_changes (table), >, changes);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/word-table/hash/seed-zero", test_hash_seed_zero);
  g_test_add_func ("/word-table/hash/seeded", test_hash_seeded);
  g_test_add_func ("/word-table/hash/seed-per-process", test_hash_seed_per_process);
  g_test_add_func ("/word-table/hash/distinct", test_hash_distinct);
  g_test_add_func ("/word-table/basic", test_table_basic);
  g_test_add_func ("/word-table/growth", test_table_growth);
  g_test_add_func ("/word-table/memory-goal", test_table_memory_goal);
  g_test_add_func ("/word-table/bytes", test_table_bytes);
  g_test_add_func ("/word-table/changes", test_table_changes);
  g_test_add_func ("/word-table/saturates", test_table_saturates);
  g_test_add_func ("/word-table/same-hash", test_table_same_hash);
  g_test_add_func ("/word-table/count", test_table_count);
  g_test_add_func ("/word-table/count-words", test_table_count_words);
  g_test_add_func ("/word-table/clear", test_table_clear);
  g_test_add_func ("/word-table/keyed", test_table_keyed);
  g_test_add_func ("/counts/order", test_counts_order);
  g_test_add_func ("/counts/builder-merges", test_counts_builder_merges);
  g_test_add_func ("/counts/lookup", test_counts_lookup);
  g_test_add_func ("/counts/filters", test_counts_filters);
  g_test_add_func ("/counts/top-selection", test_counts_top_selection);
  g_test_add_func ("/counts/order-long-prefixes", test_counts_order_long_prefixes);
  g_test_add_func ("/counts/builder-rejects-invalid", test_counts_builder_rejects_invalid);
  g_test_add_func ("/word-table/count-by-hash", test_count_by_hash);
  g_test_add_func ("/word-table/nth-count-and-at-least", test_nth_count_and_at_least);
  g_test_add_func ("/word-table/max-count", test_max_count);

  return g_test_run ();
}
