/* tally-cmd-count.c — `tally count [FILE...]`: counts the words of files or standard input
 * with the same tokenizer and aggregator shards as the Kafka service, without Kafka.
 *
 * The main thread opens each input just before its turn (the next while reading the
 * current) and closes it once read, so any number of files can be counted with two
 * descriptors (one that cannot be opened is named on stderr and skipped; as with wc, the
 * rest is counted and the exit status is 1). It reads each with read(2) into a small pool
 * of 2 MiB buffers and cuts it into *slices* that end where the tokenizer fed the whole
 * input would end a word, since tally_tokenizer_feed() needs chunks in which no word spans
 * two calls; the rest of an over-long word is skipped ("Slicing" below). Slices go through
 * a FIFO queue to J worker threads (`--jobs`, by default as many as shards), each with its
 * own tokenizer and combining table; a worker sends each distinct word with its count
 * through its TallyWordBatcher to the aggregator shards ("Combining" below). Once every
 * worker has flushed and stopped, one GetCounts per shard yields the counts, printed as
 * text, JSON or CSV. Memory stays bounded: 2 J + 2 buffers, one table of at most
 * COUNT_COMBINE_MAX_WORDS words per worker, and at most 4 J batches in each shard's
 * mailbox, so a fast reader waits for slow shards instead of buffering.
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
/* For tests only: TALLY_COUNT_WINDOW_BYTES=N (16 or more) reads N-byte windows instead, so
 * that tests can put window edges anywhere in a small input (issue 13). */
#define COUNT_WINDOW_ENV "TALLY_COUNT_WINDOW_BYTES"

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
  char *buffer;      /* the buffer @data points into, given back when done */
  gsize buffer_size; /* its size: job->window for a pool buffer, else more (one that grew) */
  CountSlice *next;
};

typedef struct _CountJob CountJob;

/* Words gathered from the tokenizer before they are counted together, see count_on_word(). */
#define COUNT_BATCH 256
/* Bytes for copies of the gathered words that do not point into the slice (folded words,
 * which live in the tokenizer's scratch buffer until the next word). */
#define COUNT_BATCH_BYTES (16 * 1024)

/* One tokenizing thread. */
typedef struct
{
  CountJob *job;
  GThread *thread;
  TallyTokenizer *tokenizer;       /* made on the main thread, then used by this worker only */
  TallyWordTable *combined;        /* words counted here, not yet told to the shards */
  TallyWordRef batch[COUNT_BATCH]; /* words gathered, not counted yet */
  guint n_batch;
  char *copies; /* COUNT_BATCH_BYTES: the gathered words that are not in the slice */
  gsize copies_used;
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
  gsize window;                /* bytes of a pool buffer: COUNT_BUFFER_BYTES, but in tests */
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
 * in MapReduce), and when that table holds COUNT_COMBINE_MAX_WORDS words, and when the
 * input ends, adds each distinct word once with its count to its batcher
 * (tally_word_batcher_add_count()), which tells the shards one AddWords batch each. Text
 * repeats its words: the KJV x10 has 8.2 M words but 28 k distinct ones, so the shards
 * count a few hundred thousand records instead of every word, and only distinct words are
 * copied into a batch. Each shard's counts stay exact:
 * a word's count reaches its shard as one or more partial sums. The shards own the counts;
 * a worker's table is only ever read and emptied by its own thread. It takes about a third
 * of the CPU time off the KJV x10 (tests/bench/README.md); a text with few repeats gains
 * nothing and pays for counting twice.
 *
 * The table is flushed as soon as it holds COUNT_COMBINE_MAX_WORDS words, in the middle of
 * a slice if need be, so it never grows past 2^15 slots (512 KiB) and a few hundred KiB of
 * keys: it stays in the core's L2 cache, where a word costs about 40% less than in a table
 * of 2^18 slots (the old bound, 200,000 words, checked after each slice). Frequent words
 * stay in it between flushes; rare ones reach the shards more often than with a larger
 * table (on the multilingual corpus, 2 workers told 0.80 M words instead of 0.57 M), and the
 * sum is less CPU time for every corpus measured (tests/bench/README.md). Flushing
 * clears the table in place (tally_word_table_clear()): freeing and regrowing it at every
 * flush cost page faults and TLB shootdowns across the threads (the kernel's
 * smp_call_function_many_cond, 5-7% of the workers' time on 477 k distinct words). */
#define COUNT_COMBINE_MAX_WORDS ((1 << 15) * 4 / 5)

static gboolean count_worker_flush (CountWorker *worker, GError **error);

/* Counts @n words in the worker's table, flushing the table whenever it is full. */
static void
count_refs (CountWorker *worker, const TallyWordRef *refs, gsize n)
{
  gsize done = 0;

  while (done < n)
    {
      done += tally_word_table_count_words (worker->combined, refs + done, n - done,
                                            COUNT_COMBINE_MAX_WORDS);
      if (tally_word_table_get_size (worker->combined) >= COUNT_COMBINE_MAX_WORDS
          && worker->error == NULL && !count_worker_flush (worker, &worker->error))
        g_atomic_int_set (&worker->job->workers_failed, 1);
    }
}

/* Counts the gathered words. */
static void
count_batch_run (CountWorker *worker)
{
  count_refs (worker, worker->batch, worker->n_batch);
  worker->n_batch = 0;
  worker->copies_used = 0;
}

/* Gathers the words of the slice as the tokenizer hands them over and counts them
 * COUNT_BATCH at a time with tally_word_table_count_words(), which hashes and looks them
 * up inline, each home slot prefetched a few words ahead: one call into the table per
 * batch instead of three per word (a pipeline of prefetches, the way before the table
 * fitted in L2, gained nothing once it did). Words that point into the slice stay valid
 * until the slice is done; others (folded into the tokenizer's scratch buffer) are
 * copied, or counted at once when longer than the room for copies. */
static void
count_on_word (const char *word, gsize len, gpointer user_data)
{
  CountWorker *worker = user_data;

  if (G_UNLIKELY (word < worker->slice_start || word + len > worker->slice_end))
    {
      if (len > COUNT_BATCH_BYTES - worker->copies_used)
        {
          count_batch_run (worker);
          if (len > COUNT_BATCH_BYTES)
            {
              TallyWordRef ref = { word, len };

              count_refs (worker, &ref, 1);
              return;
            }
        }
      memcpy (worker->copies + worker->copies_used, word, len);
      word = worker->copies + worker->copies_used;
      worker->copies_used += len;
    }
  worker->batch[worker->n_batch].word = word;
  worker->batch[worker->n_batch].len = len;
  if (++worker->n_batch == COUNT_BATCH)
    count_batch_run (worker);
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

/* Gives back a buffer of @size bytes: to the pool when it is a pool buffer, else (one that
 * grew, see "Slicing") to malloc. */
static void
count_give_buffer (CountJob *job, char *buffer, gsize size)
{
  if (size != job->window)
    {
      g_free (buffer);
      return;
    }
  pthread_mutex_lock (&job->lock);
  g_ptr_array_add (job->free_buffers, buffer);
  pthread_cond_signal (&job->buffer_ready);
  pthread_mutex_unlock (&job->lock);
}

/* Done with @slice: gives its stream buffer back. */
static void
count_slice_release (CountJob *job, CountSlice *slice)
{
  count_give_buffer (job, slice->buffer, slice->buffer_size);
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
          count_batch_run (worker);
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

/* Where a slice may end. The tokenizer ends a word at the end of each chunk it is fed
 * (docs/tokenizer.md, rule 7), so a slice may only end at a position where the tokenizer
 * fed the whole input is known to have a word boundary, and where, with NFKC, the
 * normalisation of the text after the cut does not depend on what comes before it: then
 * the words of the slices are exactly the words of the whole input (issue 13).
 *
 * - Fast path, for text with lines: after the last line feed of the window, else after its
 *   last other control byte (C0, DEL) or, but in record mode, space. These separate words
 *   in every mode and nothing composes with them.
 * - Otherwise count_scan() decodes the window as the tokenizer does (strict UTF-8, an
 *   invalid byte is a separator) and classes each character by the mode's rules: C1
 *   controls and invalid bytes separate in every mode; in unicode mode Unicode spaces
 *   (Z*), punctuation and symbols do, and the joiners ' - U+2019 U+2010 do unless between
 *   a letter or mark and a letter. With NFKC, only ASCII, controls, invalid bytes and
 *   Unicode spaces (which become U+0020 or stay as they are) have a known class, and a cut
 *   must have on its left a character nothing composes with or on its right one that
 *   starts a new normalisation (ASCII, a C1 control, a space, an invalid byte).
 * - A window with no such position is part of one word when its mode has no NFKC: the
 *   window (at least 4 max_word_bytes + 8 bytes, so the tokenizer truncates or drops the
 *   word as it would the whole one; case folding shrinks text at most 3 to 1) is fed
 *   whole, and the rest of the word is skipped up to the next boundary, in any number of
 *   reads: memory stays bounded however long the word. Otherwise the window grows (doubling)
 *   until it holds a boundary, up to COUNT_WINDOW_MAX_BYTES; only beyond that (with NFKC,
 *   64 MiB of text without any character of known class between words) is a window cut at
 *   a guess: the last position where NFKC starts afresh.
 * - In record mode a line's leading spaces are trimmed by the tokenizer, so a window with
 *   no boundary that starts with spaces drops them first (a line of spaces of any length).
 */

/* Bytes a window may grow to when it holds no position where a slice may end. */
#define COUNT_WINDOW_MAX_BYTES (64 * 1024 * 1024)

/* What a character (or an invalid byte) is to the mode's word rules. */
typedef enum
{
  UNIT_SEP,     /* separates words, whatever is around it */
  UNIT_LETTER,  /* unicode mode: L* */
  UNIT_MARK,    /* unicode mode: M* */
  UNIT_DIGIT,   /* unicode mode: N* */
  UNIT_JOINER,  /* unicode mode: ' - U+2019 U+2010 */
  UNIT_WORD,    /* whitespace and record modes: part of a word */
  UNIT_UNKNOWN, /* NFKC may turn it into anything */
  UNIT_NONE,    /* before the start of a chunk: nothing */
  UNIT_MORE,    /* after the end of the window: not read yet */
} CountUnitClass;

typedef struct
{
  guint8 cls;
  guint8 len;
  gboolean inert_after;  /* NFKC: nothing after it composes with it or moves across it */
  gboolean inert_before; /* NFKC: the normalisation of what starts here starts afresh */
} CountUnit;

/* Like the tokenizer's decode_utf8() (strict UTF-8, RFC 3629): the length of the character
 * at @p, 0 for an invalid byte, or -1 when the window ends inside a sequence that more
 * bytes might complete (@eof: they will not). */
static int
count_decode (const guchar *p, const guchar *end, gboolean eof, gunichar *out)
{
  guchar b0 = p[0];
  gsize avail = (gsize)(end - p);
  int need;
  gunichar c;

  if (b0 < 0xc2 || b0 >= 0xf5)
    return 0;
  need = b0 < 0xe0 ? 2 : b0 < 0xf0 ? 3 : 4;
  for (int i = 1; i < need; i++)
    {
      if ((gsize)i >= avail)
        return eof ? 0 : -1;
      if ((p[i] & 0xc0) != 0x80)
        return 0;
    }
  if ((b0 == 0xe0 && p[1] < 0xa0) || (b0 == 0xed && p[1] >= 0xa0) || (b0 == 0xf0 && p[1] < 0x90)
      || (b0 == 0xf4 && p[1] >= 0x90))
    return 0;
  if (need == 2)
    c = ((gunichar)(b0 & 0x1f) << 6) | (p[1] & 0x3f);
  else if (need == 3)
    c = ((gunichar)(b0 & 0x0f) << 12) | ((gunichar)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
  else
    c = ((gunichar)(b0 & 0x07) << 18) | ((gunichar)(p[1] & 0x3f) << 12)
        | ((gunichar)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
  *out = c;
  return need;
}

/* Classes the character at @p; %FALSE when the window ends inside it. */
static gboolean
count_unit_at (TallyTokenizerMode mode, gboolean nfkc, const guchar *p, const guchar *end,
               CountUnit *u)
{
  guchar b = p[0];
  gunichar c = 0;
  int n;
  GUnicodeType type;
  gboolean space;

  u->len = 1;
  u->inert_after = u->inert_before = TRUE;
  if (b < 0x80)
    {
      if (b < 0x20 || b == 0x7f)
        u->cls = UNIT_SEP;
      else if (b == ' ')
        u->cls = mode == TALLY_TOKENIZER_RECORD ? UNIT_WORD : UNIT_SEP;
      else
        {
          /* The ASCII characters that start a canonical composition: letters, < = >. */
          u->inert_after = !g_ascii_isalpha (b) && b != '<' && b != '=' && b != '>';
          if (mode != TALLY_TOKENIZER_UNICODE)
            u->cls = UNIT_WORD;
          else if (g_ascii_isalpha (b))
            u->cls = UNIT_LETTER;
          else if (g_ascii_isdigit (b))
            u->cls = UNIT_DIGIT;
          else if (b == '\'' || b == '-')
            u->cls = UNIT_JOINER;
          else
            u->cls = UNIT_SEP;
        }
      return TRUE;
    }
  n = count_decode (p, end, FALSE, &c);
  if (n < 0)
    return FALSE;
  u->len = (guint8)MAX (n, 1);
  if (n == 0 || c < 0xa0)
    {
      u->cls = UNIT_SEP; /* an invalid byte, or a C1 control */
      return TRUE;
    }
  type = g_unichar_type (c);
  space = type == G_UNICODE_SPACE_SEPARATOR || type == G_UNICODE_LINE_SEPARATOR
          || type == G_UNICODE_PARAGRAPH_SEPARATOR;
  /* Unicode spaces are starters that compose with nothing; NFKC turns each into U+0020 but
   * U+1680, U+2028 and U+2029, which stay as they are. */
  u->inert_after = u->inert_before = space;
  switch (mode)
    {
    case TALLY_TOKENIZER_UNICODE:
      if (space)
        u->cls = UNIT_SEP;
      else if (nfkc)
        u->cls = UNIT_UNKNOWN;
      else if (c == 0x2019 || c == 0x2010)
        u->cls = UNIT_JOINER;
      else
        switch (type)
          {
          case G_UNICODE_UPPERCASE_LETTER:
          case G_UNICODE_LOWERCASE_LETTER:
          case G_UNICODE_TITLECASE_LETTER:
          case G_UNICODE_MODIFIER_LETTER:
          case G_UNICODE_OTHER_LETTER:
            u->cls = UNIT_LETTER;
            break;
          case G_UNICODE_NON_SPACING_MARK:
          case G_UNICODE_SPACING_MARK:
          case G_UNICODE_ENCLOSING_MARK:
            u->cls = UNIT_MARK;
            break;
          case G_UNICODE_DECIMAL_NUMBER:
          case G_UNICODE_LETTER_NUMBER:
          case G_UNICODE_OTHER_NUMBER:
            u->cls = UNIT_DIGIT;
            break;
          default:
            u->cls = UNIT_SEP;
            break;
          }
      break;
    case TALLY_TOKENIZER_WHITESPACE:
      if (nfkc && type == G_UNICODE_SPACE_SEPARATOR && c != 0x1680)
        u->cls = UNIT_SEP;
      else
        u->cls = !nfkc || space ? UNIT_WORD : UNIT_UNKNOWN;
      break;
    case TALLY_TOKENIZER_RECORD:
    default:
      u->cls = UNIT_WORD; /* NFKC neither makes nor removes a control character */
      break;
    }
  return TRUE;
}

/* Whether a unit of class @x, between classes @prev and @next, separates words: 1 yes,
 * 0 no, -1 not known. A joiner separates unless a letter or mark precedes it and a letter
 * follows. */
static int
count_unit_separates (guint8 x, guint8 prev, guint8 next)
{
  int prev_lm, next_l;

  switch (x)
    {
    case UNIT_SEP:
      return 1;
    case UNIT_LETTER:
    case UNIT_MARK:
    case UNIT_DIGIT:
    case UNIT_WORD:
      return 0;
    case UNIT_JOINER:
      prev_lm = prev == UNIT_LETTER || prev == UNIT_MARK    ? 1
                : prev == UNIT_UNKNOWN || prev == UNIT_MORE ? -1
                                                            : 0;
      next_l = next == UNIT_LETTER ? 1 : next == UNIT_UNKNOWN || next == UNIT_MORE ? -1 : 0;
      if (prev_lm == 0 || next_l == 0)
        return 1;
      return prev_lm == 1 && next_l == 1 ? 0 : -1;
    default:
      return -1;
    }
}

typedef struct
{
  gsize last_cut;  /* the last position in (0, len) where a slice may end, or 0 */
  gsize first_cut; /* the first such position at or after @from, or 0 */
  gsize guess;     /* the last position in (0, len) where NFKC starts afresh, or 0 */
  gsize end;       /* the end of the last whole character */
  gsize tail;      /* the start of the last but one whole character (or of the last) */
} CountScan;

/* Scans the window @data of @len bytes, not the end of its input, which starts at a
 * position where a slice may end (or, when skipping, @from bytes into a word). */
static void
count_scan (TallyTokenizerMode mode, gboolean nfkc, const char *data, gsize len, gsize from,
            CountScan *scan)
{
  const guchar *p = (const guchar *)data, *end = p + len;
  /* The last four units: [0] before [1], the left of the position looked at; [2] its
   * right; [3] after it. */
  CountUnit u[4] = { { .cls = UNIT_NONE }, { .cls = UNIT_NONE }, { .cls = UNIT_NONE } };
  gsize start[4] = { 0 };
  guint n_units = 0;
  gsize i = 0;
  gboolean more = TRUE;

  memset (scan, 0, sizeof *scan);
  while (more)
    {
      CountUnit next = { .cls = UNIT_MORE };

      if (i < len && count_unit_at (mode, nfkc, p + i, end, &next))
        {
          scan->tail = n_units > 0 ? start[3] : i;
          scan->end = i + next.len;
        }
      else
        {
          next.cls = UNIT_MORE;
          more = FALSE;
        }
      memmove (&u[0], &u[1], 3 * sizeof u[0]);
      memmove (&start[0], &start[1], 3 * sizeof start[0]);
      u[3] = next;
      start[3] = i;
      if (more)
        {
          i += next.len;
          n_units++;
        }
      /* The position between u[1] and u[2], once both are whole characters. */
      if (n_units >= 2 + (more ? 1 : 0) && u[2].cls != UNIT_MORE)
        {
          gsize pos = start[2];
          int sa = count_unit_separates (u[1].cls, u[0].cls, u[2].cls);
          int sb = count_unit_separates (u[2].cls, u[1].cls, u[3].cls);
          gboolean fresh = !nfkc || u[1].inert_after || u[2].inert_before;

          if (fresh && pos > 0)
            scan->guess = pos;
          if (fresh && pos > 0 && (sa == 1 || sb == 1))
            {
              scan->last_cut = pos;
              if (scan->first_cut == 0 && pos >= from)
                scan->first_cut = pos;
            }
        }
    }
}

/* Whether a slice may end just after byte @c (the fast path). */
static inline gboolean
count_is_cut_byte (guchar c, TallyTokenizerMode mode)
{
  if (c < 0x20 || c == 0x7f)
    return TRUE;
  return c == ' ' && mode != TALLY_TOKENIZER_RECORD;
}

/* The length of the longest prefix of @data (of @len bytes) that ends just after a line
 * feed, else after a count_is_cut_byte(), or 0 when @data holds none. */
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

static void
count_push_slice (CountJob *job, const char *data, gsize len, char *buffer, gsize size)
{
  CountSlice *slice = g_new (CountSlice, 1);

  slice->data = data;
  slice->len = len;
  slice->buffer = buffer;
  slice->buffer_size = size;
  count_queue_slice (job, slice);
  count_progress_update (job, FALSE);
}

/* A free stream buffer of job->window bytes: a given-back one, a new one while fewer than
 * max_buffers exist, or else the next one a worker gives back (updating the progress line
 * meanwhile). */
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

  return buffer != NULL ? buffer : g_malloc (job->window);
}

/* Reads an input to its end (the end it has when read(2) reaches it), pushing slices that
 * end where "Where a slice may end" above says: the bytes after a window's cut start the
 * next window. Inputs are read, never mapped: a mapped file that shrinks while it is read
 * (another program truncating it) kills the process with SIGBUS, while read(2) just
 * reaches the file's new end, so such a file is counted up to where it ends, as cat would
 * print it; reading costs no measurable speed (tests/bench/README.md). Returns %FALSE with
 * @error set on a read error. */
static gboolean
count_produce_stream (CountJob *job, CountInput *input, GError **error)
{
  TallyTokenizerMode mode = job->tokenizer_options.mode;
  gboolean nfkc = job->tokenizer_options.nfkc;
  gsize one_word_min = 4 * (gsize)job->tokenizer_options.max_word_bytes + 8;
  gsize size = job->window;
  char *buffer = count_take_buffer (job);
  gsize filled = 0;
  gboolean skipping = FALSE; /* the window starts inside an over-long word being skipped */
  gsize skip_from = 0;       /* when skipping: bytes of that word already counted, as context */
  gboolean eof = FALSE;

  for (;;)
    {
      CountScan scan;
      gsize cut, keep;
      gboolean skip = FALSE;

      while (filled < size && !eof)
        {
          gssize n = read (input->fd, buffer + filled, size - filled);

          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            {
              int saved_errno = errno;

              g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "%s: %s",
                           input->name, g_strerror (saved_errno));
              count_give_buffer (job, buffer, size);
              return FALSE;
            }
          if (n == 0)
            eof = TRUE;
          filled += (gsize)n;
        }

      if (skipping)
        {
          /* Drop the rest of an over-long word, up to the first boundary. */
          count_scan (mode, nfkc, buffer, filled, skip_from, &scan);
          if (scan.first_cut != 0 || eof)
            {
              /* The word ends here (at the end of the input, before a partial character:
               * invalid bytes, fed for the statistics). */
              keep = scan.first_cut != 0 ? scan.first_cut : scan.end;
              g_atomic_pointer_add (&job->bytes_done, keep - skip_from);
              skipping = FALSE;
              skip_from = 0;
            }
          else
            {
              /* Keep the last two whole characters as context, and any partial one. */
              keep = scan.tail;
              g_atomic_pointer_add (&job->bytes_done, scan.end - skip_from);
              skip_from = scan.end - keep;
            }
          memmove (buffer, buffer + keep, filled - keep);
          filled -= keep;
          continue;
        }

      if (filled == 0)
        break;
      if (eof)
        cut = filled;
      else if ((cut = count_find_cut (buffer, filled, mode)) == 0)
        {
          count_scan (mode, nfkc, buffer, filled, 0, &scan);
          cut = scan.last_cut;
          if (cut == 0 && mode == TALLY_TOKENIZER_RECORD && buffer[0] == ' ')
            {
              /* A line's leading spaces are trimmed: drop them, read on. */
              gsize spaces = 0;

              while (spaces < filled && buffer[spaces] == ' ')
                spaces++;
              g_atomic_pointer_add (&job->bytes_done, spaces);
              memmove (buffer, buffer + spaces, filled - spaces);
              filled -= spaces;
              continue;
            }
          if (cut == 0 && !nfkc && scan.end >= one_word_min)
            {
              /* One over-long word: fed as far as it goes, the rest skipped. */
              cut = scan.end;
              skip = TRUE;
            }
          else if (cut == 0 && size < MAX (COUNT_WINDOW_MAX_BYTES, job->window))
            {
              gsize bigger = MIN (2 * size, MAX (COUNT_WINDOW_MAX_BYTES, job->window));
              char *grown = g_malloc (bigger);

              memcpy (grown, buffer, filled);
              count_give_buffer (job, buffer, size);
              buffer = grown;
              size = bigger;
              continue;
            }
          else if (cut == 0)
            cut = scan.guess != 0 ? scan.guess : scan.end != 0 ? scan.end : filled;
        }

      {
        gsize from = skip ? scan.tail : cut;
        gsize rest = filled - from;
        gsize next_size = rest < job->window ? job->window : size;
        char *next = next_size == job->window ? count_take_buffer (job) : g_malloc (next_size);

        memcpy (next, buffer + from, rest);
        count_push_slice (job, buffer, cut, buffer, size);
        buffer = next;
        size = next_size;
        filled = rest;
        if (skip)
          {
            skipping = TRUE;
            skip_from = cut - from;
          }
      }
    }

  count_give_buffer (job, buffer, size);
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

/* Counts every input of @paths into @job's shards, opening each just before its turn
 * comes and closing it once read, so that at most two descriptors of inputs are open
 * whatever the number of inputs (issue 13). An input that cannot be opened, or fails part way, is
 * named on stderr (counted up to where it failed) and sets job->read_failed; the next one is read
 * all the same. Returns %FALSE with @error set when the shards stopped. */
static gboolean
count_run (CountJob *job, const char *const *paths, guint n_inputs, GError **error)
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
  job->window = COUNT_BUFFER_BYTES;
  {
    const char *window = g_getenv (COUNT_WINDOW_ENV);
    guint64 bytes;

    if (window != NULL && g_ascii_string_to_unsigned (window, 10, 16, G_MAXSIZE / 4, &bytes, NULL))
      job->window = (gsize)bytes;
  }
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
      worker->copies = g_malloc (COUNT_BATCH_BYTES);
      worker->thread = g_thread_new (name, count_worker_run, worker);
    }

  /* Input i + 1 is opened before input i is read (two descriptors at most), so that the
   * next file is open while a slow stream is read; an error opening it is reported when
   * its turn comes, in the order of the command line. */
  {
    CountInput slot[2] = { { .fd = -1 }, { .fd = -1 } };
    GError *open_error[2] = { NULL, NULL };

    if (n_inputs > 0 && !count_input_open (&slot[0], paths[0], &open_error[0]))
      count_input_clear (&slot[0]);
    for (guint i = 0; i < n_inputs; i++)
      {
        CountInput *input = &slot[i % 2];
        guint next = (i + 1) % 2;
        g_autoptr (GError) read_error = g_steal_pointer (&open_error[i % 2]);

        if (i + 1 < n_inputs && !count_input_open (&slot[next], paths[i + 1], &open_error[next]))
          count_input_clear (&slot[next]);
        if (read_error == NULL)
          count_produce_stream (job, input, &read_error);
        if (read_error != NULL)
          {
            if (job->progress)
              fputs ("\r\033[K", stderr);
            g_printerr ("%s: %s\n", g_get_prgname (), read_error->message);
            job->read_failed = TRUE;
          }
        count_input_clear (input);
        if (g_atomic_int_get (&job->workers_failed))
          break;
      }
    for (guint k = 0; k < 2; k++)
      {
        count_input_clear (&slot[k]);
        g_clear_error (&open_error[k]);
      }
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
    return tally_cmd_usage_error ("%s", error->message);

  if (opt_top < 0)
    return tally_cmd_usage_error ("--top must be 0 (all words) or more");
  if (opt_format == NULL || strcmp (opt_format, "text") == 0)
    format = COUNT_FORMAT_TEXT;
  else if (strcmp (opt_format, "json") == 0)
    format = COUNT_FORMAT_JSON;
  else if (strcmp (opt_format, "csv") == 0)
    format = COUNT_FORMAT_CSV;
  else
    {
      return tally_cmd_usage_error ("unknown format '%s' (use text, json or csv)", opt_format);
    }
  if (opt_shards != -1 && (opt_shards < 0 || opt_shards > 256))
    return tally_cmd_usage_error ("--shards must be between 0 and 256");
  if (opt_jobs != -1 && (opt_jobs < 1 || opt_jobs > 256))
    return tally_cmd_usage_error ("--jobs must be between 1 and 256");

  config = tally_cmd_load_config (opt_config);
  if (config == NULL)
    return TALLY_EXIT_CONFIG;

  tally_config_tokenizer_options (config, &job.tokenizer_options);
  if (opt_tokenizer != NULL
      && !tally_tokenizer_mode_from_string (opt_tokenizer, &job.tokenizer_options.mode, &error))
    return tally_cmd_usage_error ("%s", error->message);

  n_shards = config->aggregator.shards;
  if (opt_shards == 0)
    n_shards = g_get_num_processors ();
  else if (opt_shards > 0)
    n_shards = (guint)opt_shards;
  job.n_workers = opt_jobs > 0 ? (guint)opt_jobs : n_shards;
  mailbox_capacity = MIN (config->aggregator.mailbox_capacity, 4 * job.n_workers);

  /* Inputs are opened one at a time as they are read (count_run()); here only their sizes
   * are looked up, for the progress line. */
  paths = opt_files != NULL && opt_files[0] != NULL ? (const char *const *)opt_files : stdin_only;
  n_inputs = g_strv_length ((char **)paths);
  job.size_known = TRUE;
  for (guint i = 0; i < n_inputs && job.size_known; i++)
    {
      struct stat st;
      int rc = strcmp (paths[i], "-") == 0 ? fstat (STDIN_FILENO, &st) : stat (paths[i], &st);

      if (rc == 0 && S_ISREG (st.st_mode) && st.st_size > 0)
        job.bytes_total += (guint64)st.st_size;
      else if (rc == 0 && !S_ISDIR (st.st_mode))
        job.size_known = FALSE; /* a stream, or a file of unknown size (/proc) */
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
  tally_cmd_start_glib_worker ();
  job.handle = tally_aggregator_handle_new (n_shards, mailbox_capacity);
  if (!count_run (&job, paths, n_inputs, &error))
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
  return status;
}
