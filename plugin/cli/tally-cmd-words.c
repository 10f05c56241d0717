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
 * SIGINT and SIGTERM end it like `quit` does: the final counts are printed and the exit
 * status is 0. Both signals are blocked before the shard threads start (threads inherit the
 * mask, so no shard is ever interrupted) and read from a signalfd that the line reader
 * polls together with standard input, so a signal that arrives while a word is being
 * counted is seen before the next read, never lost.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-commands.h"

#include "tally-aggregator-handle.h"
#include "tally-counts.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define WORDS_MAX_SHARDS 256

typedef enum
{
  LINE_OK,
  LINE_EOF,
  LINE_ERROR,
  LINE_SIGNAL,
} LineStatus;

typedef struct
{
  int fd;           /* standard input */
  int signal_fd;    /* signalfd for SIGINT and SIGTERM, or -1 */
  int signal;       /* the signal that ended reading after LINE_SIGNAL */
  gboolean skip_lf; /* the previous line ended with CR: a LF right after it is part of it */
  int error;        /* errno of the failed read after LINE_ERROR */
  gboolean eof;
  char buf[4096];
  gsize start, end; /* unread bytes of buf */
} LineReader;

/* Next byte of input, EOF at its end, or -2 after an error or a signal (status set). */
static int
next_byte (LineReader *reader, LineStatus *status)
{
  while (reader->start == reader->end && !reader->eof)
    {
      struct pollfd fds[2] = { { reader->fd, POLLIN, 0 }, { reader->signal_fd, POLLIN, 0 } };
      ssize_t n;

      if (poll (fds, reader->signal_fd >= 0 ? 2 : 1, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          reader->error = errno;
          *status = LINE_ERROR;
          return -2;
        }
      if (reader->signal_fd >= 0 && (fds[1].revents & POLLIN))
        {
          struct signalfd_siginfo info;

          if (read (reader->signal_fd, &info, sizeof info) == (ssize_t)sizeof info)
            {
              reader->signal = (int)info.ssi_signo;
              *status = LINE_SIGNAL;
              return -2;
            }
        }
      if (fds[0].revents == 0)
        continue;
      n = read (reader->fd, reader->buf, sizeof reader->buf);
      if (n < 0)
        {
          if (errno == EINTR || errno == EAGAIN)
            continue;
          reader->error = errno;
          *status = LINE_ERROR;
          return -2;
        }
      reader->start = 0;
      reader->end = (gsize)n;
      reader->eof = n == 0;
    }
  if (reader->start == reader->end)
    return EOF;
  return (guchar)reader->buf[reader->start++];
}

/* Reads one line into @line (without its terminator). LINE_EOF only when nothing was read;
 * LINE_SIGNAL when SIGINT or SIGTERM came before the line was complete (the partial line is
 * dropped, as a terminal drops what was typed). */
static LineStatus
read_line (LineReader *reader, GString *line)
{
  LineStatus status = LINE_OK;
  int c;

  g_string_truncate (line, 0);
  for (;;)
    {
      c = next_byte (reader, &status);
      if (c == -2)
        return status;
      if (c == '\n' && reader->skip_lf)
        {
          reader->skip_lf = FALSE;
          continue;
        }
      reader->skip_lf = FALSE;
      if (c == EOF)
        return line->len > 0 ? LINE_OK : LINE_EOF;
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
      "Number of aggregator shards, each on its own thread, 1 to 256; 0 for one per "
      "processor (default 2)",
      "N" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet,
      "Print only the final counts: no prompts, no running counts", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyAggregatorHandle) handle = NULL;
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (GString) line = g_string_new (NULL);
  LineReader reader = { .fd = 0, .signal_fd = -1 };
  sigset_t stop_signals;
  guint64 line_number = 0;
  gboolean read_failed = FALSE;

  g_option_context_set_summary (
      context, "Counts words typed one per line, as the actor-model article's CLI does.\n"
               "A line 'quit', the end of input, SIGINT or SIGTERM ends it and prints the\n"
               "final counts, one 'WORD COUNT' line each, most frequent first (exit 0).");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    return tally_cmd_usage_error ("%s", error->message);
  if (argc > 1)
    return tally_cmd_usage_error ("unexpected argument '%s'", argv[1]);
  if (shards < 0 || shards > WORDS_MAX_SHARDS)
    return tally_cmd_usage_error ("--shards must be between 0 and %d, not %d", WORDS_MAX_SHARDS,
                                  shards);
  /* 0: one per processor, as `tally count --shards 0`. */
  if (shards == 0)
    shards = (gint)MIN (g_get_num_processors (), WORDS_MAX_SHARDS);

  /* A closed standard input is reported before the shards start: their threads' wakeup
   * descriptors would otherwise take descriptor 0 and be read as input. */
  if (fcntl (0, F_GETFD) < 0)
    {
      fprintf (stderr, "%s: reading standard input failed: %s\n", g_get_prgname (),
               g_strerror (errno));
      return TALLY_EXIT_FAILURE;
    }
  /* SIGINT and SIGTERM: blocked here, before the shard threads inherit the mask, and read
   * from a signalfd by read_line(). */
  sigemptyset (&stop_signals);
  sigaddset (&stop_signals, SIGINT);
  sigaddset (&stop_signals, SIGTERM);
  if (pthread_sigmask (SIG_BLOCK, &stop_signals, NULL) != 0
      || (reader.signal_fd = signalfd (-1, &stop_signals, SFD_CLOEXEC)) < 0)
    {
      fprintf (stderr, "%s: cannot watch SIGINT and SIGTERM: %s\n", g_get_prgname (),
               g_strerror (errno));
      return TALLY_EXIT_FAILURE;
    }
  tally_cmd_start_glib_worker ();
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
      if (status == LINE_EOF || status == LINE_SIGNAL)
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

  close (reader.signal_fd);
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
