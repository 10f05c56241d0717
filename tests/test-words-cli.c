/* test-words-cli.c — `tally words` fed from a pipe, with exact expected output.
 *
 * Runs the program named by $TALLY_EXE (set by tests/meson.build), input from a file.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-test-util.h"

#include <glib.h>
#include <glib/gstdio.h>

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The child's standard input comes from this file (opened in the child, after fork), or
 * is closed when %NULL; its standard output goes to @output_path instead of the pipe when
 * set (the child setup function runs after GLib has set up the pipes). */
static const char *input_path;
static const char *output_path;

static void
redirect_stdin (gpointer user_data)
{
  int fd;

  if (input_path == NULL)
    close (0);
  else if ((fd = open (input_path, O_RDONLY)) < 0 || dup2 (fd, 0) < 0)
    _exit (127);
  else
    close (fd);
  if (output_path != NULL
      && ((fd = open (output_path, O_WRONLY)) < 0 || dup2 (fd, 1) < 0 || close (fd) < 0))
    _exit (127);
}

/* Runs `tally words ARGS...` with @input (of @len bytes) on its standard input, or with
 * standard input closed when @input is %NULL. g_spawn_sync
 * rather than GSubprocess: it waits on the calling thread, so no GLib worker thread is
 * involved and the suite stays clean under ThreadSanitizer. */
static void
run_words (TallyTestRun *run, const char *input, gsize len, const char *const *args)
{
  const char *exe = g_getenv ("TALLY_EXE");
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  int wait_status = 0;
  int fd;

  g_assert_nonnull (exe);
  if (input != NULL)
    {
      fd = g_file_open_tmp ("tally-words-XXXXXX", &path, &error);
      g_assert_no_error (error);
      g_assert_true (g_file_set_contents (path, input, (gssize)len, &error));
      g_assert_no_error (error);
      close (fd);
    }

  g_ptr_array_add (argv, (gpointer)exe);
  g_ptr_array_add (argv, (gpointer) "words");
  for (; args != NULL && *args != NULL; args++)
    g_ptr_array_add (argv, (gpointer)*args);
  g_ptr_array_add (argv, NULL);

  input_path = path;
  g_assert_true (g_spawn_sync (NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, redirect_stdin,
                               NULL, &run->out, &run->err, &wait_status, &error));
  g_assert_no_error (error);
  input_path = NULL;
  if (path != NULL)
    g_unlink (path);
  g_assert_true (WIFEXITED (wait_status));
  run->status = WEXITSTATUS (wait_status);
  /* A sanitizer report of the child is worth seeing whatever assertion fails first. */
  if (strstr (run->err, "Sanitizer") != NULL)
    g_printerr ("%s", run->err);
}

#define RUN(run, literal, ...)                                                                     \
  run_words (run, literal, sizeof (literal) - 1, (const char *const[]){ __VA_ARGS__, NULL })

static void
test_crlf (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "hello\r\nworld\r\nhello\r\nquit\r\n", NULL);
  g_assert_cmpstr (run.out, ==,
                   "Enter a word:\n"
                   "hello: 1\n"
                   "Enter a word:\n"
                   "world: 1\n"
                   "Enter a word:\n"
                   "hello: 2\n"
                   "Enter a word:\n"
                   "Final counts:\n"
                   "hello 2\n"
                   "world 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

static void
test_quit_without_newline (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "b\na\nb\nquit", NULL);
  g_assert_cmpstr (run.out, ==,
                   "Enter a word:\n"
                   "b: 1\n"
                   "Enter a word:\n"
                   "a: 1\n"
                   "Enter a word:\n"
                   "b: 2\n"
                   "Enter a word:\n"
                   "Final counts:\n"
                   "b 2\n"
                   "a 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

/* No quit at all: the end of input ends it, and a last line without a line break counts. */
static void
test_no_quit (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "x\ny\nx", NULL);
  g_assert_cmpstr (run.out, ==,
                   "Enter a word:\n"
                   "x: 1\n"
                   "Enter a word:\n"
                   "y: 1\n"
                   "Enter a word:\n"
                   "x: 2\n"
                   "Enter a word:\n"
                   "Final counts:\n"
                   "x 2\n"
                   "y 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

static void
test_empty_input (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "", NULL);
  g_assert_cmpstr (run.out, ==, "Enter a word:\nFinal counts:\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

/* Blank lines and whitespace-only lines are skipped; surrounding whitespace is trimmed;
 * inner spaces stay; a lone CR ends a line too; words after quit are not counted. */
static void
test_blank_lines_and_trimming (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "\n\n  \t \r\n  kafka \t\nkafka\rnew york\n\n kafka\nquit\nnever\n", "--quiet");
  g_assert_cmpstr (run.out, ==, "kafka 3\nnew york 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

/* `quit` must be the whole (trimmed) line; case matters. */
static void
test_quit_exact (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "quitter\nQuit\n  quit  \nlater\n", "-q", "--shards", "1");
  g_assert_cmpstr (run.out, ==, "Quit 1\nquitter 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

/* Most frequent first, ties in byte order; UTF-8 words pass through unchanged. */
static void
test_order_and_utf8 (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "zebra\nétoile\napple\nzebra\nApple\n日本\nétoile\n", "--quiet", "--shards", "3");
  g_assert_cmpstr (run.out, ==, "zebra 2\nétoile 2\nApple 1\napple 1\n日本 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

/* --shards 0: one shard per processor, as `tally count --shards 0`; the same counts. */
static void
test_shards_per_processor (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "zebra\nétoile\napple\nzebra\nApple\n日本\nétoile\n", "--quiet", "--shards", "0");
  g_assert_cmpstr (run.out, ==, "zebra 2\nétoile 2\nApple 1\napple 1\n日本 1\n");
  g_assert_cmpstr (run.err, ==, "");
  g_assert_cmpint (run.status, ==, 0);
}

static void
test_invalid_utf8 (void)
{
  g_auto (TallyTestRun) run = { 0 };

  RUN (&run, "ok\n\xff\xfe\nbad\0nul\nok\n", "--quiet");
  g_assert_cmpstr (run.out, ==, "ok 2\n");
  g_assert_cmpstr (run.err, ==,
                   "tally words: line 2 is not valid UTF-8 text; skipped\n"
                   "tally words: line 3 is not valid UTF-8 text; skipped\n");
  g_assert_cmpint (run.status, ==, 0);
}

static void
test_usage_errors (void)
{
  g_auto (TallyTestRun) zero = { 0 };
  g_auto (TallyTestRun) extra = { 0 };
  g_auto (TallyTestRun) unknown = { 0 };

  RUN (&zero, "", "--shards", "257");
  g_assert_cmpint (zero.status, ==, 2);
  g_assert_cmpstr (zero.err, ==,
                   "tally words: --shards must be between 0 and 256, not 257\n"
                   "Run 'tally words --help' for the options.\n");
  g_assert_cmpstr (zero.out, ==, "");
  RUN (&extra, "", "file.txt");
  g_assert_cmpint (extra.status, ==, 2);
  RUN (&unknown, "", "--no-such-option");
  g_assert_cmpint (unknown.status, ==, 2);
}

/* A failed write of the counts is an error (exit 1), not a silent success. */
static void
test_write_error (void)
{
  g_auto (TallyTestRun) quiet = { 0 };
  g_auto (TallyTestRun) prompts = { 0 };

  output_path = "/dev/full";
  RUN (&quiet, "a\n", "--quiet");
  RUN (&prompts, "a\nquit\n", NULL);
  output_path = NULL;
  g_assert_cmpstr (quiet.out, ==, "");
  g_assert_cmpstr (quiet.err, ==,
                   "tally words: could not write the counts: No space left on device\n");
  g_assert_cmpint (quiet.status, ==, 1);
  g_assert_cmpstr (prompts.err, ==,
                   "tally words: could not write the counts: No space left on device\n");
  g_assert_cmpint (prompts.status, ==, 1);
}

/* A closed standard input is an error that says why (it was "reading standard input failed"
 * alone, after the shards' wakeup descriptors had taken descriptor 0). */
static void
test_stdin_closed (void)
{
  g_auto (TallyTestRun) run = { 0 };

  run_words (&run, NULL, 0, (const char *const[]){ "--quiet", NULL });
  g_assert_cmpstr (run.out, ==, "");
  g_assert_cmpstr (run.err, ==,
                   "tally words: reading standard input failed: Bad file descriptor\n");
  g_assert_cmpint (run.status, ==, 1);
}

/* The child of the signal tests starts with SIGINT and SIGTERM at their defaults and
 * unblocked, whatever the test runner left them as. */
static void
default_signals (gpointer user_data)
{
  sigset_t set;

  signal (SIGINT, SIG_DFL);
  signal (SIGTERM, SIG_DFL);
  sigemptyset (&set);
  sigprocmask (SIG_SETMASK, &set, NULL);
}

/* Reads @fd until @out ends with @wanted (or the end of output). */
static void
read_until (int fd, GString *out, const char *wanted)
{
  char buf[256];
  ssize_t n;

  while ((wanted == NULL || !g_str_has_suffix (out->str, wanted))
         && (n = read (fd, buf, sizeof buf)) > 0)
    g_string_append_len (out, buf, n);
}

/* SIGINT or SIGTERM while waiting for a word ends it as `quit` does: the final counts and
 * exit status 0 (issue 13, item 3; it used to die by the signal and print nothing more).
 * Standard input stays open, so only the signal can end it. */
static void
test_signal (gconstpointer data)
{
  int signo = GPOINTER_TO_INT (data);
  const char *exe = g_getenv ("TALLY_EXE");
  const char *argv[] = { exe, "words", "--shards", "2", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GString) err = g_string_new (NULL);
  GPid pid;
  int in_fd, out_fd, err_fd, wait_status;
  static const char input[] = "a\nb\na\n";

  g_assert_nonnull (exe);
  g_assert_true (g_spawn_async_with_pipes (NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                           default_signals, NULL, &pid, &in_fd, &out_fd, &err_fd,
                                           &error));
  g_assert_no_error (error);
  g_assert_cmpint (write (in_fd, input, sizeof input - 1), ==, (gssize)sizeof input - 1);
  read_until (out_fd, out, "a: 2\nEnter a word:\n");
  g_assert_cmpint (kill (pid, signo), ==, 0);
  read_until (out_fd, out, NULL);
  read_until (err_fd, err, NULL);
  g_assert_cmpint (waitpid (pid, &wait_status, 0), ==, pid);
  close (in_fd);
  close (out_fd);
  close (err_fd);
  g_spawn_close_pid (pid);

  g_assert_cmpstr (out->str, ==,
                   "Enter a word:\n"
                   "a: 1\n"
                   "Enter a word:\n"
                   "b: 1\n"
                   "Enter a word:\n"
                   "a: 2\n"
                   "Enter a word:\n"
                   "Final counts:\n"
                   "a 2\n"
                   "b 1\n");
  g_assert_cmpstr (err->str, ==, "");
  g_assert_false (WIFSIGNALED (wait_status));
  g_assert_true (WIFEXITED (wait_status));
  g_assert_cmpint (WEXITSTATUS (wait_status), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/words-cli/crlf", test_crlf);
  g_test_add_func ("/words-cli/quit-without-newline", test_quit_without_newline);
  g_test_add_func ("/words-cli/no-quit", test_no_quit);
  g_test_add_func ("/words-cli/empty-input", test_empty_input);
  g_test_add_func ("/words-cli/blank-lines-and-trimming", test_blank_lines_and_trimming);
  g_test_add_func ("/words-cli/quit-exact", test_quit_exact);
  g_test_add_func ("/words-cli/order-and-utf8", test_order_and_utf8);
  g_test_add_func ("/words-cli/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/words-cli/shards-per-processor", test_shards_per_processor);
  g_test_add_func ("/words-cli/usage-errors", test_usage_errors);
  g_test_add_func ("/words-cli/write-error", test_write_error);
  g_test_add_func ("/words-cli/stdin-closed", test_stdin_closed);
  g_test_add_data_func ("/words-cli/sigint", GINT_TO_POINTER (SIGINT), test_signal);
  g_test_add_data_func ("/words-cli/sigterm", GINT_TO_POINTER (SIGTERM), test_signal);

  return g_test_run ();
}
