/* tally-cmd-count.c — `tally count [FILE...]`: counts the words of files or standard input
 * with the same tokenizer and aggregator shards as the Kafka service, without Kafka.
 *
 * The main thread opens every input first (one that cannot be opened is named on stderr
 * and skipped; as with wc, the rest is counted and the exit status is 1), then reads each
 * with read(2) into a small pool of buffers and cuts it into *slices* of up to 2 MiB that
 * end just after a separator byte, since tally_tokenizer_feed() needs chunks in which no
 * word spans two calls ("Slicing" below). Slices go through a FIFO queue to J worker
 * threads (`--jobs`, by default as many as shards), each with its own tokenizer and
 * combining table; a worker sends each distinct word with its count through its
 * TallyWordBatcher to the aggregator shards ("Combining" below). Once every worker has
 * flushed and stopped, one GetCounts per shard yields the counts, printed as text, JSON or
 * CSV. Memory stays bounded: 2 J + 2 buffers, one table of at most COUNT_COMBINE_MAX_WORDS words
 * per worker, and at most 4 J batches in each shard's mailbox, so a fast reader waits for
 * slow shards instead of buffering.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

#include "tally-aggregator-handle.h"
#include "tally-config.h"
#include "tally-counts.h"
#include "tally-tokenizer.h"
#include "tally-word-batcher.h"
#include "tally-word-table.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Bytes per stream buffer, the most a slice holds. Larger than any allowed max_word_bytes
 * (the tokenizer's limit is 1 MiB; a window must be able to hold a whole longest word and more). */
#define COUNT_BUFFER_BYTES (2 * 1024 * 1024)
G_STATIC_ASSERT (COUNT_BUFFER_BYTES > TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT);

/* The progress line is shown for inputs larger than this (or of unknown size). */
#define COUNT_PROGRESS_MIN_BYTES (64 * 1024 * 1024)
/* ...and updated at most this often, in microseconds. */
#define COUNT_PROGRESS_INTERVAL_US (250 * 1000)

typedef enum
{
  COUNT_FORMAT_TEXT,
  COUNT_FORMAT_JSON,
  COUNT_FORMAT_CSV,
} CountFormat;

/* One input named on the command line. */
typedef struct
{
  char *name; /* the path as given, or "standard input" for "-" */
  int fd;
  gboolean size_known; /* a non-empty regular file: @size bytes are left to read */
  guint64 size;
} CountInput;

/* A piece of input that ends at a word boundary. */
typedef struct _CountSlice CountSlice;
struct _CountSlice
{
  const char *data;
  gsize len;
  char *buffer; /* the pool buffer @data points into, given back when done */
  CountSlice *next;
};

typedef struct _CountJob CountJob;

/* Words in flight between the tokenizer and the combining table, see count_on_word(). */
#define COUNT_PIPELINE 16
/* The pipeline copies words that do not point into the slice (folded words, which live
 * in the tokenizer's scratch buffer) into COUNT_PIPELINE buffers of max_word_bytes; with
 * a larger max_word_bytes, words are counted as they come instead. */
#define COUNT_PIPELINE_MAX_WORD_BYTES 4096

typedef struct
{
  const char *word;
  gsize len;
  guint64 hash;
} CountPending;

/* One tokenizing thread. */
typedef struct
{
  CountJob *job;
  GThread *thread;
  TallyTokenizer *tokenizer; /* made on the main thread, then used by this worker only */
  TallyWordTable *combined;  /* words counted here, not yet told to the shards */
  /* The pipeline: words [pushed - n_pending, pushed) wait in pending[i % COUNT_PIPELINE]. */
  CountPending pending[COUNT_PIPELINE];
  guint64 pushed;
  guint n_pending;
  char *copies; /* COUNT_PIPELINE x max_word_bytes, NULL without the pipeline */
  gsize copy_bytes;
  const char *slice_start, *slice_end; /* the slice being tokenized */
  TallyWordBatcher *batcher;           /* the combined words' way to the shards (store 0) */
  TallyTokenizerStats stats;
  GError *error; /* a failed flush: the shards stopped */
} CountWorker;

struct _CountJob
{
  TallyTokenizerOptions tokenizer_options;
  TallyAggregatorHandle *handle;

  /* The hand-off between the reader and the workers. A pthread mutex and conditions
   * rather than GAsyncQueue: ThreadSanitizer understands pthread locking but not GLib's
   * futex-based GMutex, and would report every slice handed over as a race. */
  pthread_mutex_t lock;
  pthread_cond_t slice_ready;  /* a slice was queued, or the input ended */
  pthread_cond_t buffer_ready; /* a stream buffer was given back */
  CountSlice *head, *tail;     /* slices to tokenize, oldest first */
  gboolean input_done;         /* no more slices will be queued */
  GPtrArray *free_buffers;     /* stream buffers not in use */
  guint n_buffers;             /* stream buffers allocated so far */
  guint max_buffers;

  CountWorker *workers;
  guint n_workers;

  gsize bytes_done;     /* atomic: bytes tokenized (or skipped) so far */
  gint workers_failed;  /* atomic: set once a worker could not deliver words */
  gint workers_running; /* atomic: workers that have not finished yet */
  gboolean read_failed; /* an input could not be read to its end (reader thread only) */

  /* Progress line on stderr. */
  gboolean progress;
  gboolean size_known; /* no stream among the inputs */
  guint64 bytes_total; /* bytes of the inputs, as fstat() gave them at the start */
  gint64 start_us;
  gint64 last_progress_us;
};

/* ---------------------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------------------- */

/* Combining. A worker counts the words of its slices in a table of its own (a combiner, as
 * in MapReduce), and when that table holds COUNT_COMBINE_MAX_WORDS words or more, and when the
 * input ends, adds each distinct word once with its count to its batcher
 * (tally_word_batcher_add_count()), which tells the shards one AddWords batch each. Text
 * repeats its words: the KJV x10 has 8.2 M words but 28 k distinct ones, so the shards
 * count a few hundred thousand records instead of every word, and only distinct words are
 * copied into a batch. Each shard's counts stay exact:
 * a word's count reaches its shard as one or more partial sums. The shards own the counts;
 * a worker's table is only ever read and emptied by its own thread. It takes about a third
 * of the CPU time off the KJV x10 (tests/bench/README.md); a text with few repeats gains
 * nothing and pays for counting twice; COUNT_COMBINE_MAX_WORDS bounds the extra memory per
 * worker: the table then has 2^18 slots (4 MiB) and about 2 MiB of keys, and flushing
 * clears it in place (tally_word_table_clear()): freeing and regrowing it at every flush
 * cost page faults and TLB shootdowns across the threads (the kernel's
 * smp_call_function_many_cond, 5-7% of the workers' time on 477 k distinct words). */
#define COUNT_COMBINE_MAX_WORDS 200000

/* Counts the words of the slice as the tokenizer hands them over, through a pipeline of
 * COUNT_PIPELINE words: a word's hash is taken and its home slot prefetched when it
 * arrives, its key (through the slot, by then in cache) prefetched COUNT_PIPELINE / 2
 * words later, and it is counted COUNT_PIPELINE words later. With many distinct words the
 * table is larger than the caches and these two loads were two thirds of the worker's
 * time in the table (tally count --shards 2 on scripts/fetch-corpus multilingual); in
 * flight together they overlap. Words that point into the slice stay valid until the
 * slice is done; others (folded into the tokenizer's scratch buffer) are copied. */
static void
count_on_word (const char *word, gsize len, gpointer user_data)
{
  CountWorker *worker = user_data;
  TallyWordTable *table = worker->combined;
  CountPending *p;
  guint i;

  if (worker->copies == NULL)
    {
      tally_word_table_count (table, word, len, 1);
      return;
    }
  i = (guint)(worker->pushed % COUNT_PIPELINE);
  p = &worker->pending[i];
  if (worker->n_pending == COUNT_PIPELINE)
    tally_word_table_add (table, p->word, p->len, p->hash, 1);
  else
    worker->n_pending++;
  if (G_UNLIKELY (word < worker->slice_start || word + len > worker->slice_end))
    {
      char *copy = worker->copies + (gsize)i * worker->copy_bytes;

      memcpy (copy, word, len);
      word = copy;
    }
  p->word = word;
  p->len = len;
  p->hash = tally_word_hash (word, len);
  tally_word_table_prefetch (table, p->hash);
  worker->pushed++;
  if (worker->n_pending > COUNT_PIPELINE / 2)
    tally_word_table_prefetch_key (
        table, worker->pending[(worker->pushed - COUNT_PIPELINE / 2 - 1) % COUNT_PIPELINE].hash);
}

/* Counts the words still in the pipeline, oldest first. */
static void
count_drain (CountWorker *worker)
{
  for (guint64 k = worker->pushed - worker->n_pending; k < worker->pushed; k++)
    {
      CountPending *p = &worker->pending[k % COUNT_PIPELINE];

      tally_word_table_add (worker->combined, p->word, p->len, p->hash, 1);
    }
  worker->n_pending = 0;
}

static void
count_on_combined (const char *word, gsize len, guint64 count, gpointer user_data)
{
  tally_word_batcher_add_count (user_data, word, len, count);
}

/* Tells every shard the words of the worker's table (then emptied) with their counts,
 * through the worker's batcher, in shard order, waiting for room in full mailboxes
 * (backpressure). Fails with %TALLY_ACTOR_ERROR_CLOSED if a shard stopped. */
static gboolean
count_worker_flush (CountWorker *worker, GError **error)
{
  tally_word_table_foreach (worker->combined, count_on_combined, worker->batcher);
  tally_word_table_clear (worker->combined);
  return tally_word_batcher_flush (worker->batcher, TRUE, error);
}

/* Reader side: queues a slice for the workers. */
static void
count_queue_slice (CountJob *job, CountSlice *slice)
{
  slice->next = NULL;
  pthread_mutex_lock (&job->lock);
  if (job->tail != NULL)
    job->tail->next = slice;
  else
    job->head = slice;
  job->tail = slice;
  pthread_cond_signal (&job->slice_ready);
  pthread_mutex_unlock (&job->lock);
}

/* Reader side: no more slices. */
static void
count_queue_end (CountJob *job)
{
  pthread_mutex_lock (&job->lock);
  job->input_done = TRUE;
  pthread_cond_broadcast (&job->slice_ready);
  pthread_mutex_unlock (&job->lock);
}

/* Worker side: the oldest queued slice, waiting for one; %NULL at the end of the input. */
static CountSlice *
count_next_slice (CountJob *job)
{
  CountSlice *slice;

  pthread_mutex_lock (&job->lock);
  while (job->head == NULL && !job->input_done)
    pthread_cond_wait (&job->slice_ready, &job->lock);
  slice = job->head;
  if (slice != NULL)
    {
      job->head = slice->next;
      if (job->head == NULL)
        job->tail = NULL;
    }
  pthread_mutex_unlock (&job->lock);
  return slice;
}

static void
count_give_buffer (CountJob *job, char *buffer)
{
  pthread_mutex_lock (&job->lock);
  g_ptr_array_add (job->free_buffers, buffer);
  pthread_cond_signal (&job->buffer_ready);
  pthread_mutex_unlock (&job->lock);
}

/* Done with @slice: gives its stream buffer back. */
static void
count_slice_release (CountJob *job, CountSlice *slice)
{
  count_give_buffer (job, slice->buffer);
  g_free (slice);
}

static gpointer
count_worker_run (gpointer data)
{
  CountWorker *worker = data;
  CountJob *job = worker->job;
  CountSlice *slice;

  while ((slice = count_next_slice (job)) != NULL)
    {
      /* After a failure, keep taking slices so the reader never waits for a buffer. */
      if (worker->error == NULL)
        {
          worker->slice_start = slice->data;
          worker->slice_end = slice->data + slice->len;
          tally_tokenizer_feed (worker->tokenizer, slice->data, slice->len, count_on_word, worker);
          count_drain (worker);
          if (tally_word_table_get_size (worker->combined) >= COUNT_COMBINE_MAX_WORDS
              && !count_worker_flush (worker, &worker->error))
            g_atomic_int_set (&job->workers_failed, 1);
        }
      g_atomic_pointer_add (&job->bytes_done, slice->len);
      count_slice_release (job, slice);
    }
  if (worker->error == NULL && !count_worker_flush (worker, &worker->error))
    g_atomic_int_set (&job->workers_failed, 1);

  tally_tokenizer_get_stats (worker->tokenizer, &worker->stats);
  g_atomic_int_add (&job->workers_running, -1);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Progress
 * ------------------------------------------------------------------------------------- */

static void
count_progress_update (CountJob *job, gboolean final)
{
  gint64 now = g_get_monotonic_time ();
  double done_mb, seconds;

  if (!job->progress)
    return;
  if (!final && now - job->last_progress_us < COUNT_PROGRESS_INTERVAL_US)
    return;
  job->last_progress_us = now;

  if (final)
    {
      /* Erase the line: the counts follow on stdout. */
      fputs ("\r\033[K", stderr);
      fflush (stderr);
      return;
    }

  done_mb = (double)g_atomic_pointer_get (&job->bytes_done) / 1e6;
  seconds = (double)(now - job->start_us) / 1e6;
  if (job->size_known && job->bytes_total > 0)
    fprintf (stderr, "\r\033[Ktally count: %.1f / %.1f MB (%.0f%%), %.1f MB/s", done_mb,
             (double)job->bytes_total / 1e6, 100.0 * done_mb * 1e6 / (double)job->bytes_total,
             seconds > 0 ? done_mb / seconds : 0.0);
  else
    fprintf (stderr, "\r\033[Ktally count: %.1f MB, %.1f MB/s", done_mb,
             seconds > 0 ? done_mb / seconds : 0.0);
  fflush (stderr);
}

/* ---------------------------------------------------------------------------------------
 * Slicing
 * ------------------------------------------------------------------------------------- */

/* Where a slice may end. A control byte (line feed and the rest of C0, and DEL) separates
 * words in every mode, and so does a space in the unicode and whitespace modes (see
 * docs/tokenizer.md). A slice ends after the last line feed of its window, else after the
 * last such separator. A window of 1 MiB with no separator at all holds part of one
 * over-long word (longer than any allowed max_word_bytes) in the whitespace and record
 * modes: the window is fed whole, so the tokenizer truncates or drops that word as
 * configured, and the rest of the run up to the next separator is skipped. In unicode mode,
 * where such a run can hold several words, the window is cut after its last ASCII
 * punctuation byte other than ' and - (never part of a word); a window of ASCII letters
 * and digits only is one over-long word, fed whole and its rest (up to the next byte that
 * is not an ASCII letter or digit) skipped; any other window (a MiB of text with no ASCII
 * separator at all) is cut at a UTF-8 character boundary, and only there, or where a
 * skipped ASCII run goes on with a hyphen or a non-ASCII letter, can an over-long word
 * give more than one word. */

/* Whether a slice may end just after byte @c. */
static inline gboolean
count_is_cut_byte (guchar c, TallyTokenizerMode mode)
{
  if (c < 0x20 || c == 0x7f)
    return TRUE;
  return c == ' ' && mode != TALLY_TOKENIZER_RECORD;
}

/* The length of the longest prefix of @data (of @len bytes) that ends just after a
 * separator, or 0 when @data holds none. */
static gsize
count_find_cut (const char *data, gsize len, TallyTokenizerMode mode)
{
  const char *nl = memrchr (data, '\n', len);

  if (nl != NULL)
    return (gsize)(nl - data) + 1;
  for (gsize i = len; i > 0; i--)
    if (count_is_cut_byte ((guchar)data[i - 1], mode))
      return i;
  return 0;
}

/* Whether byte @c continues an over-long word that is being skipped: any byte but a
 * separator in the whitespace and record modes; in unicode mode only an ASCII letter or
 * digit (the only bytes known to be part of a word without looking at their neighbours). */
static inline gboolean
count_is_long_word_byte (guchar c, TallyTokenizerMode mode)
{
  if (mode == TALLY_TOKENIZER_UNICODE)
    return g_ascii_isalnum (c);
  return !count_is_cut_byte (c, mode);
}

/* For a window of @len bytes with no separator. When the window is part of one over-long
 * word (always in the whitespace and record modes; in unicode mode when it holds only
 * ASCII letters and digits), returns @len and sets *@skip: the rest of the word, up to the
 * next byte that is not count_is_long_word_byte(), is skipped. Otherwise (unicode mode)
 * returns the longest prefix that ends after ASCII punctuation other than an apostrophe
 * or a hyphen (never part of a word there), else the longest that ends on a UTF-8
 * character boundary (@len if there is none). */
static gsize
count_cut_long_run (const char *data, gsize len, TallyTokenizerMode mode, gboolean *skip)
{
  gsize end;
  gboolean all_alnum = TRUE;

  *skip = mode != TALLY_TOKENIZER_UNICODE;
  if (*skip)
    return len;
  for (end = len; end > 0; end--)
    {
      guchar c = (guchar)data[end - 1];

      if (c < 0x80 && !g_ascii_isalnum (c) && c != '\'' && c != '-')
        return end;
      all_alnum = all_alnum && g_ascii_isalnum (c);
    }
  if (all_alnum)
    {
      *skip = TRUE;
      return len;
    }
  for (end = len - 1; end > 0; end--)
    if (((guchar)data[end] & 0xc0) != 0x80)
      return end;
  return len;
}

/* The number of leading bytes of @data (of @len bytes) that continue an over-long word. */
static gsize
count_skip_run (const char *data, gsize len, TallyTokenizerMode mode)
{
  gsize i = 0;

  while (i < len && count_is_long_word_byte ((guchar)data[i], mode))
    i++;
  return i;
}

static void
count_push_slice (CountJob *job, const char *data, gsize len, char *buffer)
{
  CountSlice *slice = g_new (CountSlice, 1);

  slice->data = data;
  slice->len = len;
  slice->buffer = buffer;
  count_queue_slice (job, slice);
  count_progress_update (job, FALSE);
}

/* A free stream buffer: a given-back one, a new one while fewer than max_buffers exist,
 * or else the next one a worker gives back (updating the progress line meanwhile). */
static char *
count_take_buffer (CountJob *job)
{
  char *buffer = NULL;

  pthread_mutex_lock (&job->lock);
  while (job->free_buffers->len == 0 && job->n_buffers >= job->max_buffers)
    {
      struct timespec deadline;

      clock_gettime (CLOCK_MONOTONIC, &deadline);
      deadline.tv_nsec += COUNT_PROGRESS_INTERVAL_US * 1000L;
      deadline.tv_sec += deadline.tv_nsec / 1000000000L;
      deadline.tv_nsec %= 1000000000L;
      if (pthread_cond_timedwait (&job->buffer_ready, &job->lock, &deadline) == ETIMEDOUT)
        {
          pthread_mutex_unlock (&job->lock);
          count_progress_update (job, FALSE);
          pthread_mutex_lock (&job->lock);
        }
    }
  if (job->free_buffers->len > 0)
    buffer = g_ptr_array_steal_index_fast (job->free_buffers, job->free_buffers->len - 1);
  else
    job->n_buffers++;
  pthread_mutex_unlock (&job->lock);

  return buffer != NULL ? buffer : g_malloc (COUNT_BUFFER_BYTES);
}

/* Reads an input to its end (the end it has when read(2) reaches it), pushing slices: the
 * bytes after a buffer's last separator are carried over into the next buffer. Inputs are
 * read, never mapped: a mapped file that shrinks while it is read (another program
 * truncating it) kills the process with SIGBUS, while read(2) just reaches the file's new
 * end, so such a file is counted up to where it ends, as cat would print it; reading costs
 * no measurable speed (tests/bench/README.md). Returns %FALSE with @error set on a read
 * error. */
static gboolean
count_produce_stream (CountJob *job, CountInput *input, GError **error)
{
  TallyTokenizerMode mode = job->tokenizer_options.mode;
  char *buffer = count_take_buffer (job);
  gsize filled = 0;
  gboolean skipping = FALSE;
  gboolean eof = FALSE;

  while (!eof)
    {
      gsize cut;
      gboolean skip = FALSE;

      while (filled < COUNT_BUFFER_BYTES)
        {
          gssize n = read (input->fd, buffer + filled, COUNT_BUFFER_BYTES - filled);

          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            {
              int saved_errno = errno;

              g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "%s: %s",
                           input->name, g_strerror (saved_errno));
              count_give_buffer (job, buffer);
              return FALSE;
            }
          if (n == 0)
            {
              eof = TRUE;
              break;
            }
          if (skipping)
            {
              /* Drop the rest of an over-long word (see count_cut_long_run()). */
              gsize skipped = count_skip_run (buffer + filled, (gsize)n, mode);

              g_atomic_pointer_add (&job->bytes_done, skipped);
              skipping = skipped == (gsize)n;
              memmove (buffer + filled, buffer + filled + skipped, (gsize)n - skipped);
              n -= (gssize)skipped;
            }
          filled += (gsize)n;
        }

      if (filled == 0)
        break;
      if (eof)
        cut = filled;
      else
        {
          cut = count_find_cut (buffer, filled, mode);
          if (cut == 0)
            cut = count_cut_long_run (buffer, filled, mode, &skip);
        }

      {
        char *next = count_take_buffer (job);
        gsize rest = filled - cut;

        /* The bytes after the cut start the next buffer, unless they are the start of
         * the rest of an over-long word, which is skipped. */
        if (skip)
          {
            gsize skipped = count_skip_run (buffer + cut, rest, mode);

            g_atomic_pointer_add (&job->bytes_done, skipped);
            skipping = skipped == rest;
            memcpy (next, buffer + cut + skipped, rest - skipped);
            filled = rest - skipped;
          }
        else
          {
            memcpy (next, buffer + cut, rest);
            filled = rest;
          }
        count_push_slice (job, buffer, cut, buffer);
        buffer = next;
      }
    }

  count_give_buffer (job, buffer);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * Inputs
 * ------------------------------------------------------------------------------------- */

static void
count_input_clear (CountInput *input)
{
  if (input->fd > STDIN_FILENO)
    close (input->fd);
  input->fd = -1;
  g_clear_pointer (&input->name, g_free);
}

/* Opens @path ("-" for standard input) and notes the bytes left to read when it is a
 * non-empty regular file. */
static gboolean
count_input_open (CountInput *input, const char *path, GError **error)
{
  struct stat st;

  input->size_known = FALSE;
  input->size = 0;
  if (strcmp (path, "-") == 0)
    {
      input->name = g_strdup ("standard input");
      input->fd = STDIN_FILENO;
    }
  else
    {
      input->name = g_strdup (path);
      input->fd = open (path, O_RDONLY | O_CLOEXEC);
      if (input->fd < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "%s: %s", path,
                       g_strerror (saved_errno));
          return FALSE;
        }
    }

  if (fstat (input->fd, &st) < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "%s: %s",
                   input->name, g_strerror (saved_errno));
      return FALSE;
    }
  if (S_ISDIR (st.st_mode))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_ISDIR, "%s: %s", input->name,
                   g_strerror (EISDIR));
      return FALSE;
    }
  /* Files of size 0 may still have content (/proc): their size is unknown. Every input is
   * read from its current offset, as cat does: a shell may have read part of standard
   * input already, and a second "-" then reads nothing more. */
  if (S_ISREG (st.st_mode) && st.st_size > 0)
    {
      off_t offset = lseek (input->fd, 0, SEEK_CUR);

      input->size_known = TRUE;
      input->size = offset >= 0 && offset < st.st_size ? (guint64)(st.st_size - offset) : 0;
      posix_fadvise (input->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------------------- */

/* `word count` lines, formatted into a buffer of 64 KiB written with fwrite(): a
 * fprintf() per line was a tenth of the time after counting, which runs on one thread, for
 * 477 k distinct words. */
static void
count_write_text (FILE *out, const TallyWordCount *entries, gsize n)
{
  enum
  {
    BUFFER = 64 * 1024,
    NUMBER = 21, /* " " and up to 20 digits */
  };
  g_autofree char *buffer = g_malloc (BUFFER);
  gsize used = 0;

  for (gsize i = 0; i < n; i++)
    {
      char digits[NUMBER];
      guint64 v = entries[i].count;
      gsize d = NUMBER;

      do
        {
          digits[--d] = (char)('0' + v % 10);
          v /= 10;
        }
      while (v != 0);
      digits[--d] = ' ';
      if (used + entries[i].len + (NUMBER - d) + 1 > BUFFER)
        {
          fwrite (buffer, 1, used, out);
          used = 0;
        }
      if (entries[i].len + (NUMBER - d) + 1 > BUFFER)
        {
          /* A word longer than the buffer (max_word_bytes can be 1 MiB). */
          fwrite (entries[i].word, 1, entries[i].len, out);
          fwrite (digits + d, 1, NUMBER - d, out);
          fputc ('\n', out);
          continue;
        }
      memcpy (buffer + used, entries[i].word, entries[i].len);
      used += entries[i].len;
      memcpy (buffer + used, digits + d, NUMBER - d);
      used += NUMBER - d;
      buffer[used++] = '\n';
    }
  fwrite (buffer, 1, used, out);
}

/* RFC 4180: a field holding a comma, a double quote, CR or LF is enclosed in double
 * quotes, and each double quote inside it is doubled. */
static void
count_write_csv_field (FILE *out, const char *s, gsize len)
{
  if (strcspn (s, ",\"\r\n") >= len)
    {
      fwrite (s, 1, len, out);
      return;
    }
  putc ('"', out);
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '"')
        putc ('"', out);
      putc (s[i], out);
    }
  putc ('"', out);
}

static void
count_write_csv (FILE *out, const TallyWordCount *entries, gsize n)
{
  fputs ("word,count\n", out);
  for (gsize i = 0; i < n; i++)
    {
      count_write_csv_field (out, entries[i].word, entries[i].len);
      fprintf (out, ",%" G_GUINT64_FORMAT "\n", entries[i].count);
    }
}

/* { "total": words counted, "distinct": distinct words,
 *   "words": [ { "word": "the", "count": 3 }, ... ] }  (the top N when --top is given) */
static void
count_write_json (FILE *out, TallyCounts *all, const TallyWordCount *entries, gsize n)
{
  g_autoptr (JsonBuilder) builder = json_builder_new_immutable ();
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;
  gsize text_len = 0;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "total");
  json_builder_add_int_value (builder, (gint64)tally_counts_get_total (all));
  json_builder_set_member_name (builder, "distinct");
  json_builder_add_int_value (builder, (gint64)tally_counts_get_n_words (all));
  json_builder_set_member_name (builder, "words");
  json_builder_begin_array (builder);
  for (gsize i = 0; i < n; i++)
    {
      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "word");
      json_builder_add_string_value (builder, entries[i].word);
      json_builder_set_member_name (builder, "count");
      json_builder_add_int_value (builder, (gint64)entries[i].count);
      json_builder_end_object (builder);
    }
  json_builder_end_array (builder);
  json_builder_end_object (builder);

  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, &text_len);
  fwrite (text, 1, text_len, out);
  putc ('\n', out);
}

/* ---------------------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------------------- */

static int
count_usage_error (GOptionContext *context, const char *message)
{
  g_printerr ("%s: %s\nRun '%s --help' for the options.\n", g_get_prgname (), message,
              g_get_prgname ());
  return TALLY_EXIT_USAGE;
}

/* Counts every input into @job's shards, skipping those that could not be opened (fd -1).
 * An input that fails part way is named on stderr, counted up to where it failed, and
 * sets job->read_failed; the next one is read all the same. Returns %FALSE with @error
 * set when the shards stopped. */
static gboolean
count_run (CountJob *job, CountInput *inputs, guint n_inputs, GError **error)
{
  pthread_condattr_t cond_attr;

  pthread_mutex_init (&job->lock, NULL);
  pthread_condattr_init (&cond_attr);
  pthread_condattr_setclock (&cond_attr, CLOCK_MONOTONIC);
  pthread_cond_init (&job->slice_ready, &cond_attr);
  pthread_cond_init (&job->buffer_ready, &cond_attr);
  pthread_condattr_destroy (&cond_attr);
  job->free_buffers = g_ptr_array_new_with_free_func (g_free);
  job->max_buffers = 2 * job->n_workers + 2;
  job->workers = g_new0 (CountWorker, job->n_workers);
  job->workers_running = (gint)job->n_workers;
  job->start_us = g_get_monotonic_time ();
  job->last_progress_us = job->start_us;

  for (guint i = 0; i < job->n_workers; i++)
    {
      g_autofree char *name = g_strdup_printf ("tally-count-%u", i);
      CountWorker *worker = &job->workers[i];

      /* Made here, before the thread starts, so that the tokenizer's one-time table set-up
       * happens on this thread. */
      worker->job = job;
      worker->tokenizer = tally_tokenizer_new (&job->tokenizer_options);
      worker->batcher = tally_word_batcher_new (job->handle, 0);
      worker->combined = tally_word_table_new ();
      if (job->tokenizer_options.max_word_bytes <= COUNT_PIPELINE_MAX_WORD_BYTES)
        {
          worker->copy_bytes = job->tokenizer_options.max_word_bytes;
          worker->copies = g_malloc (COUNT_PIPELINE * worker->copy_bytes);
        }
      worker->thread = g_thread_new (name, count_worker_run, worker);
    }

  for (guint i = 0; i < n_inputs; i++)
    {
      g_autoptr (GError) read_error = NULL;

      if (inputs[i].fd < 0)
        continue;
      if (!count_produce_stream (job, &inputs[i], &read_error))
        {
          if (job->progress)
            fputs ("\r\033[K", stderr);
          g_printerr ("%s: %s\n", g_get_prgname (), read_error->message);
          job->read_failed = TRUE;
        }
      if (g_atomic_int_get (&job->workers_failed))
        break;
    }

  count_queue_end (job);
  /* Wait for the workers, updating the progress line meanwhile. */
  if (job->progress)
    while (g_atomic_int_get (&job->workers_running) > 0)
      {
        g_usleep (COUNT_PROGRESS_INTERVAL_US / 5);
        count_progress_update (job, FALSE);
      }
  for (guint i = 0; i < job->n_workers; i++)
    {
      CountWorker *worker = &job->workers[i];

      g_thread_join (worker->thread);
      g_clear_pointer (&worker->tokenizer, tally_tokenizer_free);
      g_clear_pointer (&worker->batcher, tally_word_batcher_free);
      g_clear_pointer (&worker->combined, tally_word_table_free);
      g_clear_pointer (&worker->copies, g_free);
    }
  count_progress_update (job, TRUE);

  g_clear_pointer (&job->free_buffers, g_ptr_array_unref);
  pthread_cond_destroy (&job->buffer_ready);
  pthread_cond_destroy (&job->slice_ready);
  pthread_mutex_destroy (&job->lock);

  for (guint i = 0; i < job->n_workers; i++)
    if (job->workers[i].error != NULL)
      {
        g_propagate_error (error, g_steal_pointer (&job->workers[i].error));
        return FALSE;
      }
  return TRUE;
}

/* Says on stderr what the tokenizers skipped or shortened, if anything: the counts are
 * right by the rules of docs/tokenizer.md, but the user may want to know. */
static void
count_report_stats (CountJob *job)
{
  TallyTokenizerStats sum = { 0 };

  for (guint i = 0; i < job->n_workers; i++)
    {
      sum.invalid_bytes += job->workers[i].stats.invalid_bytes;
      sum.truncated += job->workers[i].stats.truncated;
      sum.dropped += job->workers[i].stats.dropped;
    }
  if (sum.invalid_bytes > 0)
    g_printerr ("%s: note: invalid UTF-8 bytes skipped (as word separators): %" G_GUINT64_FORMAT
                "\n",
                g_get_prgname (), sum.invalid_bytes);
  if (sum.truncated > 0)
    g_printerr ("%s: note: words longer than %u bytes truncated: %" G_GUINT64_FORMAT "\n",
                g_get_prgname (), job->tokenizer_options.max_word_bytes, sum.truncated);
  if (sum.dropped > 0)
    g_printerr ("%s: note: words longer than %u bytes dropped: %" G_GUINT64_FORMAT "\n",
                g_get_prgname (), job->tokenizer_options.max_word_bytes, sum.dropped);
}

static void
count_job_clear (CountJob *job)
{
  if (job->workers != NULL)
    for (guint i = 0; i < job->n_workers; i++)
      g_clear_error (&job->workers[i].error);
  g_clear_pointer (&job->workers, g_free);
  g_clear_pointer (&job->handle, tally_aggregator_handle_unref);
}

/**
 * tally_cmd_count:
 * @argc: number of arguments in @argv
 * @argv: (array length=argc): the arguments after the subcommand name; argv[0] is
 *   "tally count"
 *
 * `tally count [--config PATH] [--top N] [--format text|json|csv]
 * [--tokenizer unicode|whitespace|record] [--shards N] [--jobs N] [FILE...]`: counts the
 * words of the files (or of standard input for "-" or no FILE) with the tokenizer and the
 * aggregator shards, and prints `word count` lines on stdout, most frequent first, ties in
 * byte order of the word. The tokenizer and the shards come from tally.conf ([tokenizer],
 * [aggregator]; found as tally_config_load() says), overridden by the options. Main thread
 * only; starts and joins its own threads.
 *
 * Returns: %TALLY_EXIT_OK; %TALLY_EXIT_FAILURE when an input cannot be opened or read
 *   (each such input is named on stderr, and the counts of the rest are still printed, as
 *   wc does) or output cannot be written; %TALLY_EXIT_USAGE for a bad
 *   option; %TALLY_EXIT_CONFIG for a bad configuration.
 */
int
tally_cmd_count (int argc, char **argv)
{
  g_autofree char *opt_config = NULL;
  g_autofree char *opt_format = NULL;
  g_autofree char *opt_tokenizer = NULL;
  g_auto (GStrv) opt_files = NULL;
  gint64 opt_top = 0;
  gint opt_shards = -1;
  gint opt_jobs = -1;
  const GOptionEntry option_entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config,
      "Read the configuration from PATH instead of looking for tally.conf", "PATH" },
    { "top", 'n', 0, G_OPTION_ARG_INT64, &opt_top,
      "Print only the N most frequent words; 0 (the default) prints all words", "N" },
    { "format", 'f', 0, G_OPTION_ARG_STRING, &opt_format,
      "Output format: text (\"word count\" lines, the default), json or csv", "FORMAT" },
    { "tokenizer", 0, 0, G_OPTION_ARG_STRING, &opt_tokenizer,
      "How text is split into words: unicode, whitespace or record (default: [tokenizer] "
      "mode)",
      "MODE" },
    { "shards", 's', 0, G_OPTION_ARG_INT, &opt_shards,
      "Aggregator shards, 1 to 256, each on its own thread; 0 for one per processor "
      "(default: [aggregator] shards)",
      "N" },
    { "jobs", 'j', 0, G_OPTION_ARG_INT, &opt_jobs,
      "Tokenizing threads, 1 to 256 (default: as many as shards)", "N" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_files, NULL, "[FILE...]" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (TallyCounts) all = NULL;
  g_autoptr (TallyCounts) shown = NULL;
  CountFormat format = COUNT_FORMAT_TEXT;
  const char *stdin_only[] = { "-", NULL };
  const char *const *paths;
  CountInput *inputs;
  guint n_inputs;
  guint n_shards;
  guint mailbox_capacity;
  CountJob job = { 0 };
  const TallyWordCount *entries;
  gsize n_entries;
  int status = TALLY_EXIT_OK;

  g_option_context_set_summary (
      context, "Counts the words of the FILEs (standard input for \"-\" or no FILE) and prints\n"
               "\"word count\" lines, most frequent first, ties in byte order of the word.");
  g_option_context_set_description (
      context,
      "Output: text prints \"word count\" lines; csv prints a \"word,count\" header, then\n"
      "one row per word, quoted as RFC 4180 says; json prints one object,\n"
      "{\"total\": words counted, \"distinct\": distinct words,\n"
      " \"words\": [{\"word\": \"the\", \"count\": 3}, ...]} (the --top words only).\n"
      "\n"
      "An input that cannot be opened or read is named on stderr and skipped (a file that\n"
      "fails part way is counted up to there; one that shrinks while it is read is counted\n"
      "up to its new end): the counts of the rest are printed, and the exit status is 1.\n"
      "\n"
      "Exit status: 0 on success, 1 when an input cannot be opened or read or the counts\n"
      "cannot be written, 2 for a bad option, 78 for a bad configuration.");
  g_option_context_add_main_entries (context, option_entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    return count_usage_error (context, error->message);

  if (opt_top < 0)
    return count_usage_error (context, "--top must be 0 (all words) or more");
  if (opt_format == NULL || strcmp (opt_format, "text") == 0)
    format = COUNT_FORMAT_TEXT;
  else if (strcmp (opt_format, "json") == 0)
    format = COUNT_FORMAT_JSON;
  else if (strcmp (opt_format, "csv") == 0)
    format = COUNT_FORMAT_CSV;
  else
    {
      g_autofree char *message
          = g_strdup_printf ("unknown format '%s' (use text, json or csv)", opt_format);
      return count_usage_error (context, message);
    }
  if (opt_shards != -1 && (opt_shards < 0 || opt_shards > 256))
    return count_usage_error (context, "--shards must be between 0 and 256");
  if (opt_jobs != -1 && (opt_jobs < 1 || opt_jobs > 256))
    return count_usage_error (context, "--jobs must be between 1 and 256");

  config = tally_cmd_load_config (opt_config);
  if (config == NULL)
    return TALLY_EXIT_CONFIG;

  tally_config_tokenizer_options (config, &job.tokenizer_options);
  if (opt_tokenizer != NULL
      && !tally_tokenizer_mode_from_string (opt_tokenizer, &job.tokenizer_options.mode, &error))
    return count_usage_error (context, error->message);

  n_shards = config->aggregator.shards;
  if (opt_shards == 0)
    n_shards = g_get_num_processors ();
  else if (opt_shards > 0)
    n_shards = (guint)opt_shards;
  job.n_workers = opt_jobs > 0 ? (guint)opt_jobs : n_shards;
  mailbox_capacity = MIN (config->aggregator.mailbox_capacity, 4 * job.n_workers);

  /* Open everything first: a missing file is reported before anything is counted, then
   * skipped. */
  paths = opt_files != NULL && opt_files[0] != NULL ? (const char *const *)opt_files : stdin_only;
  n_inputs = g_strv_length ((char **)paths);
  inputs = g_new0 (CountInput, n_inputs);
  for (guint i = 0; i < n_inputs; i++)
    inputs[i].fd = -1;
  job.size_known = TRUE;
  for (guint i = 0; i < n_inputs; i++)
    {
      if (!count_input_open (&inputs[i], paths[i], &error))
        {
          g_printerr ("%s: %s\n", g_get_prgname (), error->message);
          g_clear_error (&error);
          count_input_clear (&inputs[i]);
          status = TALLY_EXIT_FAILURE;
          continue;
        }
      if (inputs[i].size_known)
        job.bytes_total += inputs[i].size;
      else
        job.size_known = FALSE;
    }
  job.progress
      = isatty (STDERR_FILENO) && (!job.size_known || job.bytes_total > COUNT_PROGRESS_MIN_BYTES);

#ifdef __GLIBC__
  /* AddWords batches of a few MB are allocated by the workers and freed by the shards on
   * other threads. With glibc's defaults each one is mapped and unmapped, or trimmed from
   * the heap, and faulted in again: with 2 shards that was 28,000 page faults and a fifth
   * of the CPU time on the KJV x10. Keep them in the heap and keep the heap. */
  mallopt (M_MMAP_THRESHOLD, 64 * 1024 * 1024);
  mallopt (M_TRIM_THRESHOLD, 256 * 1024 * 1024);
#endif
  job.handle = tally_aggregator_handle_new (n_shards, mailbox_capacity);
  if (!count_run (&job, inputs, n_inputs, &error))
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      status = TALLY_EXIT_FAILURE;
      goto out;
    }

  if (job.read_failed)
    status = TALLY_EXIT_FAILURE;
  count_report_stats (&job);
  all = tally_aggregator_handle_get_counts (job.handle, NULL, &error);
  if (all == NULL)
    {
      g_printerr ("%s: could not get the counts: %s\n", g_get_prgname (), error->message);
      status = TALLY_EXIT_FAILURE;
      goto out;
    }
  {
    TallyCountsOptions filter = { .top = (guint64)opt_top };

    shown = tally_counts_filter (all, &filter);
  }
  entries = tally_counts_get_entries (shown, &n_entries);

  switch (format)
    {
    case COUNT_FORMAT_TEXT:
      count_write_text (stdout, entries, n_entries);
      break;
    case COUNT_FORMAT_JSON:
      count_write_json (stdout, all, entries, n_entries);
      break;
    case COUNT_FORMAT_CSV:
      count_write_csv (stdout, entries, n_entries);
      break;
    default:
      g_assert_not_reached ();
    }
  if (fflush (stdout) != 0 || ferror (stdout))
    {
      g_printerr ("%s: could not write the counts: %s\n", g_get_prgname (), g_strerror (errno));
      status = TALLY_EXIT_FAILURE;
    }

out:
  count_job_clear (&job);
  for (guint i = 0; i < n_inputs; i++)
    count_input_clear (&inputs[i]);
  g_free (inputs);
  return status;
}
