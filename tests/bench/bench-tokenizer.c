/* bench-tokenizer.c — how fast the tokenizer alone is, against `LC_ALL=C wc -w`.
 *
 *   bench-tokenizer [--runs N] [--chunk BYTES] PATH...
 *
 * Reads every PATH (a file, or a directory whose regular files are read in name order)
 * into memory, one buffer; cuts it into chunks of about --chunk bytes (default 65536) that
 * end at a line end, as `tally count` feeds a file; and tokenizes the whole buffer in each
 * mode (whitespace, unicode, unicode with NFKC, record), with a callback that only counts
 * words and their bytes. In the same run it times `LC_ALL=C wc -w` on a temporary file
 * holding the same bytes (process start and reading from the page cache included: what a
 * user running wc pays). Each figure is the median of --runs runs (default 5), after one
 * warm-up; the runs of all columns are interleaved.
 *
 * Prints a table: seconds, MB/s (10^6 bytes per second), million words per second, and
 * the time as a ratio of wc -w's; then unicode MB/s as a ratio of whitespace MB/s (the
 * issue's target: at least 0.5). Inputs: `scripts/fetch-corpus kjv10` (the KJV repeated
 * 10 times) and `scripts/fetch-corpus sotu` (the State of the Union addresses).
 *
 * This is a measurement, not a test: it exits 0 whatever the figures.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-tokenizer.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct
{
  guint64 words;
  guint64 word_bytes;
} Sink;

static void
sink_word (const char *word, gsize len, gpointer user_data)
{
  Sink *sink = user_data;

  sink->words++;
  sink->word_bytes += len + (guchar)word[0];
}

static int
compare_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return (x > y) - (x < y);
}

static double
median (double *values, guint n)
{
  qsort (values, n, sizeof *values, compare_double);
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  /* g_ptr_array_sort passes pointers to the elements. */
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

static gboolean
append_path (GByteArray *buffer, const char *path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) dir = g_dir_open (path, 0, error);
      g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;

      if (dir == NULL)
        return FALSE;
      while ((name = g_dir_read_name (dir)) != NULL)
        if (name[0] != '.')
          g_ptr_array_add (names, g_build_filename (path, name, NULL));
      g_ptr_array_sort (names, compare_names);
      for (guint i = 0; i < names->len; i++)
        if (!append_path (buffer, names->pdata[i], error))
          return FALSE;
      return TRUE;
    }
  else
    {
      g_autofree char *contents = NULL;
      gsize len;

      if (!g_file_get_contents (path, &contents, &len, error))
        return FALSE;
      g_byte_array_append (buffer, (const guint8 *)contents, (guint)len);
      /* Files end at a line end, so no word spans two files. */
      if (len > 0 && contents[len - 1] != '\n')
        g_byte_array_append (buffer, (const guint8 *)"\n", 1);
      return TRUE;
    }
}

static double
time_tokenizer (const TallyTokenizerOptions *options, const char *data, gsize len, gsize chunk,
                Sink *sink)
{
  g_autoptr (TallyTokenizer) tok = tally_tokenizer_new (options);
  gint64 start = g_get_monotonic_time ();
  gsize pos = 0;

  memset (sink, 0, sizeof *sink);
  while (pos < len)
    {
      gsize end = MIN (pos + chunk, len);
      const char *nl;

      /* Extend the chunk to the next line end. */
      nl = end < len ? memchr (data + end, '\n', len - end) : NULL;
      end = nl != NULL ? (gsize)(nl - data) + 1 : (end < len ? len : end);
      tally_tokenizer_feed (tok, data + pos, end - pos, sink_word, sink);
      pos = end;
    }
  return (g_get_monotonic_time () - start) / 1e6;
}

static double
time_wc (const char *path, guint64 *words)
{
  const char *argv[] = { "wc", "-w", path, NULL };
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) envp = g_environ_setenv (g_get_environ (), "LC_ALL", "C", TRUE);
  gint64 start = g_get_monotonic_time ();
  double seconds;
  int status;

  if (!g_spawn_sync (NULL, (char **)argv, envp, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL,
                     &status, &error)
      || !g_spawn_check_wait_status (status, &error))
    {
      g_printerr ("bench-tokenizer: wc -w: %s\n", error->message);
      exit (1);
    }
  seconds = (g_get_monotonic_time () - start) / 1e6;
  *words = g_ascii_strtoull (out, NULL, 10);
  return seconds;
}

int
main (int argc, char **argv)
{
  gint runs = 5;
  gint chunk = 65536;
  g_auto (GStrv) paths = NULL;
  GOptionEntry entries[] = {
    { "runs", 0, 0, G_OPTION_ARG_INT, &runs, "Runs per figure (median)", "N" },
    { "chunk", 0, 0, G_OPTION_ARG_INT, &chunk, "Bytes per chunk fed", "BYTES" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &paths, NULL, "PATH..." },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("PATH... — tokenizer MB/s vs wc -w");
  g_autoptr (GError) error = NULL;
  g_autoptr (GByteArray) buffer = g_byte_array_new ();
  g_autofree char *tmp_path = NULL;
  static const struct
  {
    const char *name;
    TallyTokenizerMode mode;
    gboolean nfkc;
  } modes[] = {
    { "whitespace", TALLY_TOKENIZER_WHITESPACE, FALSE },
    { "unicode", TALLY_TOKENIZER_UNICODE, FALSE },
    { "unicode+nfkc", TALLY_TOKENIZER_UNICODE, TRUE },
    { "record", TALLY_TOKENIZER_RECORD, FALSE },
  };
  double mbps[G_N_ELEMENTS (modes)];
  TallyTokenizerOptions options[G_N_ELEMENTS (modes)];
  Sink sinks[G_N_ELEMENTS (modes)];
  double *samples;
  double wc_seconds;
  guint64 wc_words = 0;
  double mb;
  int fd;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-tokenizer: %s\n", error->message);
      return 2;
    }
  if (paths == NULL || runs < 1 || chunk < 1)
    {
      g_printerr ("usage: bench-tokenizer [--runs N] [--chunk BYTES] PATH...\n"
                  "  e.g. bench-tokenizer \"$(scripts/fetch-corpus kjv10)\"\n");
      return 2;
    }
  for (guint i = 0; paths[i] != NULL; i++)
    if (!append_path (buffer, paths[i], &error))
      {
        g_printerr ("bench-tokenizer: %s\n", error->message);
        return 1;
      }

  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      tally_tokenizer_options_init (&options[m]);
      options[m].mode = modes[m].mode;
      options[m].nfkc = modes[m].nfkc;
    }

  /* The same bytes for wc. */
  fd = g_file_open_tmp ("bench-tokenizer-XXXXXX", &tmp_path, &error);
  if (fd < 0 || !g_file_set_contents (tmp_path, (const char *)buffer->data, buffer->len, &error))
    {
      g_printerr ("bench-tokenizer: %s\n", error->message);
      return 1;
    }
  close (fd);

  mb = buffer->len / 1e6;
  /* One warm-up of each (page cache, the Unicode tables), then the runs interleaved
   * (wc, then every mode, again and again) so that other load on the machine affects all
   * columns alike. */
  samples = g_new (double, (G_N_ELEMENTS (modes) + 1) * runs);
  time_wc (tmp_path, &wc_words);
  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    time_tokenizer (&options[m], (const char *)buffer->data, buffer->len, (gsize)chunk, &sinks[m]);
  for (gint r = 0; r < runs; r++)
    {
      samples[r] = time_wc (tmp_path, &wc_words);
      for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
        samples[(m + 1) * runs + r] = time_tokenizer (&options[m], (const char *)buffer->data,
                                                      buffer->len, (gsize)chunk, &sinks[m]);
    }
  wc_seconds = median (samples, (guint)runs);

  g_print ("input: %.1f MB in %u paths; %d runs per figure (median); chunks of ~%d bytes\n\n", mb,
           g_strv_length (paths), runs, chunk);
  g_print ("%-16s %10s %9s %10s %12s %8s\n", "tokenizer", "seconds", "MB/s", "Mwords/s", "words",
           "vs wc -w");
  g_print ("%-16s %10.3f %9.1f %10.1f %12" G_GUINT64_FORMAT " %7.2fx\n", "LC_ALL=C wc -w",
           wc_seconds, mb / wc_seconds, wc_words / 1e6 / wc_seconds, wc_words, 1.0);
  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      double s = median (samples + (m + 1) * runs, (guint)runs);

      mbps[m] = mb / s;
      g_print ("%-16s %10.3f %9.1f %10.1f %12" G_GUINT64_FORMAT " %7.2fx\n", modes[m].name, s,
               mbps[m], sinks[m].words / 1e6 / s, sinks[m].words, s / wc_seconds);
    }
  g_print ("\nunicode MB/s / whitespace MB/s = %.2f (target >= 0.50)\n", mbps[1] / mbps[0]);
  g_print ("unicode+nfkc MB/s / unicode MB/s = %.2f\n", mbps[2] / mbps[1]);

  g_unlink (tmp_path);
  g_free (samples);
  return 0;
}
