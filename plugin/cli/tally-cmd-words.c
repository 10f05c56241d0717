/* tally-cmd-words.c — `tally words`: the article's command line, one word per line.
 *
 * It prompts "Enter a word:" on standard output (one line, flushed), reads one line of
 * standard input, counts the line as one word with tally_aggregator_handle_add_word() and
 * prints the word's new count as "WORD: N". It stops at a line that is exactly `quit` or
 * at the end of input (a last line without a line break counts), then asks every shard
 * for its counts (tally_aggregator_handle_get_counts()) and prints, after a line
 * "Final counts:", one "WORD COUNT" line per word, most frequent first, ties in byte order
 * of the word. A word may contain spaces; its count is the last field of the line.
 *
 * Lines end at LF, CR or CRLF. Surrounding ASCII whitespace (space, tab, vertical tab, form
 * feed) is trimmed, so the words "  hello\t" and "hello" are the same; a line that is empty
 * after trimming is skipped. A line that is not valid UTF-8 (or holds a NUL byte) is
 * reported on standard error and skipped. Nothing here depends on the locale.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-commands.h"

#include "tally-aggregator-handle.h"
#include "tally-counts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#define WORDS_MAX_SHARDS 256

typedef enum
{
  LINE_OK,
  LINE_EOF,
  LINE_ERROR,
} LineStatus;

typedef struct
{
  FILE *in;
  gboolean skip_lf; /* the previous line ended with CR: a LF right after it is part of it */
  int error;        /* errno of the failed read after LINE_ERROR */
} LineReader;

/* Reads one line into @line (without its terminator). LINE_EOF only when nothing was read. */
static LineStatus
read_line (LineReader *reader, GString *line)
{
  int c;

  g_string_truncate (line, 0);
  for (;;)
    {
      c = getc (reader->in);
      if (c == '\n' && reader->skip_lf)
        {
          reader->skip_lf = FALSE;
          continue;
        }
      reader->skip_lf = FALSE;
      if (c == EOF)
        {
          if (ferror (reader->in))
            {
              reader->error = errno;
              return LINE_ERROR;
            }
          return line->len > 0 ? LINE_OK : LINE_EOF;
        }
      if (c == '\n')
        return LINE_OK;
      if (c == '\r')
        {
          reader->skip_lf = TRUE;
          return LINE_OK;
        }
      g_string_append_c (line, (char)c);
    }
}

/* Trims ASCII whitespace at both ends in place; returns the start, sets *len. */
static const char *
trim (const GString *line, gsize *len)
{
  const char *start = line->str;
  const char *end = line->str + line->len;

  while (start < end && g_ascii_isspace (*start))
    start++;
  while (end > start && g_ascii_isspace (end[-1]))
    end--;
  *len = (gsize)(end - start);
  return start;
}

static void
print_counts (TallyCounts *counts)
{
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    {
      fwrite (e[i].word, 1, e[i].len, stdout);
      printf (" %" G_GUINT64_FORMAT "\n", e[i].count);
    }
}

/**
 * tally_cmd_words:
 * @argc: number of arguments, the first being "tally words"
 * @argv: the arguments: `[--shards N] [--quiet]`
 *
 * Runs `tally words` on standard input and output, on the calling (main) thread, with
 * --shards aggregator shards (default 2, at most 256) each on its own arbiter thread.
 *
 * Returns: 0 on success, 1 if reading input, writing output or an aggregator failed, 2 on a
 *   usage error
 */
int
tally_cmd_words (int argc, char **argv)
{
  gint shards = 2;
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    { "shards", 's', 0, G_OPTION_ARG_INT, &shards,
      "Number of aggregator shards, each on its own thread (default 2)", "N" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet,
      "Print only the final counts: no prompts, no running counts", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyAggregatorHandle) handle = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GString) line = g_string_new (NULL);
  LineReader reader = { stdin, FALSE, 0 };
  guint64 line_number = 0;
  gboolean read_failed = FALSE;

  g_option_context_set_summary (
      context, "Counts words typed one per line, as the actor-model article's CLI does.\n"
               "A line 'quit', or the end of input, ends it and prints the final counts,\n"
               "one 'WORD COUNT' line each, most frequent first.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_USAGE;
    }
  if (argc > 1)
    {
      fprintf (stderr, "%s: unexpected argument '%s'\n", g_get_prgname (), argv[1]);
      return TALLY_EXIT_USAGE;
    }
  if (shards < 1 || shards > WORDS_MAX_SHARDS)
    {
      fprintf (stderr, "%s: --shards must be between 1 and %d, not %d\n", g_get_prgname (),
               WORDS_MAX_SHARDS, shards);
      return TALLY_EXIT_USAGE;
    }

  /* A closed standard input is reported before the shards start: their threads' wakeup
   * descriptors would otherwise take descriptor 0 and be read as input. */
  if (fcntl (0, F_GETFD) < 0)
    {
      fprintf (stderr, "%s: reading standard input failed: %s\n", g_get_prgname (),
               g_strerror (errno));
      return TALLY_EXIT_FAILURE;
    }
  handle = tally_aggregator_handle_new ((guint)shards, 0);

  for (;;)
    {
      LineStatus status;
      const char *word;
      gsize len;
      guint64 count;

      if (!quiet)
        {
          fputs ("Enter a word:\n", stdout);
          fflush (stdout);
        }
      status = read_line (&reader, line);
      if (status == LINE_ERROR)
        {
          fprintf (stderr, "%s: reading standard input failed: %s\n", g_get_prgname (),
                   g_strerror (reader.error));
          read_failed = TRUE;
          break;
        }
      if (status == LINE_EOF)
        break;
      line_number++;
      word = trim (line, &len);
      if (len == 0)
        continue;
      if (len == 4 && memcmp (word, "quit", 4) == 0)
        break;
      if (memchr (word, '\0', len) != NULL || !g_utf8_validate (word, (gssize)len, NULL))
        {
          fprintf (stderr, "%s: line %" G_GUINT64_FORMAT " is not valid UTF-8 text; skipped\n",
                   g_get_prgname (), line_number);
          continue;
        }
      /* add_word takes a NUL-terminated word: cut the trimmed line in place. */
      ((char *)word)[len] = '\0';
      count = tally_aggregator_handle_add_word (handle, word, &error);
      if (count == 0)
        {
          fprintf (stderr, "%s: %s\n", g_get_prgname (), error->message);
          return TALLY_EXIT_FAILURE;
        }
      if (!quiet)
        {
          fwrite (word, 1, len, stdout);
          printf (": %" G_GUINT64_FORMAT "\n", count);
        }
    }

  counts = tally_aggregator_handle_get_counts (handle, NULL, &error);
  if (counts == NULL)
    {
      fprintf (stderr, "%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_FAILURE;
    }
  if (!quiet)
    fputs ("Final counts:\n", stdout);
  print_counts (counts);
  if (fflush (stdout) != 0 || ferror (stdout))
    {
      fprintf (stderr, "%s: could not write the counts: %s\n", g_get_prgname (),
               g_strerror (errno));
      return TALLY_EXIT_FAILURE;
    }
  return read_failed ? TALLY_EXIT_FAILURE : TALLY_EXIT_OK;
}
