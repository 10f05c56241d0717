/* tally-window-clock.c — stream time per partition, late records, closing and expiry.
 *
 * What it is for: the decisions about time that windows need (see tally-window-clock.h),
 * kept apart from the counting so they can be tested with explicit clocks and so the
 * aggregator shards never see a timestamp, only bucket starts. Why it is built so: the
 * source actor owns the partitions and their records, so it owns their clock; a window's
 * final counts must be published once per instance, so the clock hands out each closed
 * window exactly once, and remembers which windows hold records so quiet hours do not
 * produce a stream of empty results.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-window-clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-window-error-quark, tally_window_error) /* clang-format on */

typedef struct
{
  gint64 max_ts;         /* the largest timestamp seen */
  gint64 arrival_ms;     /* wall-clock time of its last record */
  gint64 published_upto; /* end of the last window handed out with this partition */
} Partition;

struct _TallyWindowClock
{
  TallyWindowSpec spec;
  GHashTable *partitions; /* GUINT_TO_POINTER (partition) -> Partition */
  GArray *open;           /* gint64 starts of windows with records not handed out, sorted */
  guint64 late;
};

/* Floor of @t to a multiple of @width, also for negative times. */
static inline gint64
floor_to (gint64 t, gint64 width)
{
  gint64 q = t / width;
  if (t % width != 0 && t < 0)
    q--;
  return q * width;
}

gboolean
tally_window_parse_duration (const char *text, gint64 *out_ms, GError **error)
{
  char *end = NULL;
  guint64 n;
  gint64 unit = 1;

  g_return_val_if_fail (text != NULL && out_ms != NULL, FALSE);

  if (!g_ascii_isdigit (*text))
    goto bad;
  errno = 0;
  n = g_ascii_strtoull (text, &end, 10);
  if (errno != 0)
    goto bad;
  if (strcmp (end, "") == 0 || strcmp (end, "ms") == 0)
    unit = 1;
  else if (strcmp (end, "s") == 0)
    unit = 1000;
  else if (strcmp (end, "m") == 0)
    unit = 60 * 1000;
  else if (strcmp (end, "h") == 0)
    unit = 3600 * 1000;
  else if (strcmp (end, "d") == 0)
    unit = 24 * 3600 * 1000;
  else
    goto bad;
  if (n == 0)
    goto bad;
  if (n > (guint64)(G_MAXINT64 / 4) / (guint64)unit)
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                   "\"%s\" is too long a duration (at most %" G_GINT64_FORMAT "%s)", text,
                   (G_MAXINT64 / 4) / unit, end[0] != '\0' ? end : "ms");
      return FALSE;
    }
  *out_ms = (gint64)n * unit;
  return TRUE;

bad:
  g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
               "\"%s\" is not a duration (a positive whole number with ms, s, m, h or d)", text);
  return FALSE;
}

gboolean
tally_window_selector_parse (const char *text, TallyWindowSelector *selector, GError **error)
{
  g_return_val_if_fail (text != NULL && selector != NULL, FALSE);

  memset (selector, 0, sizeof (*selector));
  if (strcmp (text, "current") == 0)
    selector->kind = TALLY_WINDOW_SELECT_CURRENT;
  else if (strcmp (text, "last") == 0)
    selector->kind = TALLY_WINDOW_SELECT_LAST;
  else if (g_str_has_prefix (text, "last:"))
    {
      selector->kind = TALLY_WINDOW_SELECT_LAST_DURATION;
      if (!tally_window_parse_duration (text + 5, &selector->duration_ms, error))
        return FALSE;
    }
  else
    {
      guint64 start;
      if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &start, NULL))
        {
          g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                       "window \"%s\": expected current, last, last:DURATION (e.g. last:15m) "
                       "or a start time in ms since the Unix epoch",
                       text);
          return FALSE;
        }
      selector->kind = TALLY_WINDOW_SELECT_START;
      selector->start_ms = (gint64)start;
    }
  return TRUE;
}

TallyWindowClock *
tally_window_clock_new (const TallyWindowSpec *spec)
{
  TallyWindowClock *clock;

  g_return_val_if_fail (spec != NULL, NULL);
  g_return_val_if_fail (spec->bucket_ms >= 1 && spec->size_ms >= spec->bucket_ms
                            && spec->size_ms % spec->bucket_ms == 0,
                        NULL);

  clock = g_new0 (TallyWindowClock, 1);
  clock->spec = *spec;
  clock->partitions = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  clock->open = g_array_new (FALSE, FALSE, sizeof (gint64));
  return clock;
}

void
tally_window_clock_free (TallyWindowClock *clock)
{
  if (clock == NULL)
    return;
  g_hash_table_unref (clock->partitions);
  g_array_unref (clock->open);
  g_free (clock);
}

const TallyWindowSpec *
tally_window_clock_get_spec (TallyWindowClock *clock)
{
  g_return_val_if_fail (clock != NULL, NULL);
  return &clock->spec;
}

static Partition *
get_partition (TallyWindowClock *clock, guint32 partition, gint64 now_ms)
{
  Partition *p = g_hash_table_lookup (clock->partitions, GUINT_TO_POINTER (partition));

  if (p == NULL)
    {
      p = g_new (Partition, 1);
      p->max_ts = G_MININT64;
      p->arrival_ms = now_ms;
      p->published_upto = G_MININT64;
      g_hash_table_insert (clock->partitions, GUINT_TO_POINTER (partition), p);
    }
  return p;
}

static gboolean
is_idle (TallyWindowClock *clock, const Partition *p, gint64 now_ms)
{
  return now_ms - p->arrival_ms >= clock->spec.idle_ms;
}

/* Remembers that the window starting at @start holds records. */
static void
note_open (TallyWindowClock *clock, gint64 start)
{
  guint i = clock->open->len;

  if (i > 0 && g_array_index (clock->open, gint64, i - 1) == start)
    return; /* the usual case: the newest window again */
  while (i > 0 && g_array_index (clock->open, gint64, i - 1) > start)
    i--;
  if (i > 0 && g_array_index (clock->open, gint64, i - 1) == start)
    return;
  g_array_insert_val (clock->open, i, start);
}

gboolean
tally_window_clock_observe (TallyWindowClock *clock, guint32 partition, gint64 timestamp_ms,
                            gint64 now_ms, gint64 *bucket_start)
{
  Partition *p;
  gint64 now_stream, window;

  g_return_val_if_fail (clock != NULL && bucket_start != NULL, FALSE);

  p = get_partition (clock, partition, now_ms);
  now_stream = p->max_ts;
  if (timestamp_ms < 0 || timestamp_ms > TALLY_WINDOW_MAX_TIMESTAMP_MS)
    timestamp_ms = now_stream != G_MININT64 ? now_stream : now_ms;

  p->max_ts = MAX (now_stream, timestamp_ms);
  p->arrival_ms = now_ms;

  window = floor_to (timestamp_ms, clock->spec.size_ms);
  if ((now_stream != G_MININT64
       && window + clock->spec.size_ms + clock->spec.grace_ms <= now_stream)
      || window + clock->spec.size_ms <= p->published_upto)
    {
      clock->late++;
      return FALSE;
    }
  note_open (clock, window);
  *bucket_start = floor_to (timestamp_ms, clock->spec.bucket_ms);
  return TRUE;
}

void
tally_window_clock_remove_partition (TallyWindowClock *clock, guint32 partition)
{
  g_return_if_fail (clock != NULL);
  g_hash_table_remove (clock->partitions, GUINT_TO_POINTER (partition));
}

gint64
tally_window_clock_get_stream_time (TallyWindowClock *clock, guint32 partition, gint64 now_ms)
{
  Partition *p;

  g_return_val_if_fail (clock != NULL, G_MININT64);

  p = g_hash_table_lookup (clock->partitions, GUINT_TO_POINTER (partition));
  return p != NULL ? p->max_ts : G_MININT64;
}

gboolean
tally_window_clock_is_idle (TallyWindowClock *clock, guint32 partition, gint64 now_ms)
{
  Partition *p;

  g_return_val_if_fail (clock != NULL, FALSE);

  p = g_hash_table_lookup (clock->partitions, GUINT_TO_POINTER (partition));
  return p != NULL && is_idle (clock, p, now_ms);
}

/* The smallest (@newest FALSE) or largest stream time over the partitions that are not
 * idle. When every partition is idle, event time is taken to follow the wall clock: the
 * largest of (stream time + wall time since its last record). G_MININT64 with none. */
static gint64
extreme_stream_time (TallyWindowClock *clock, gint64 now_ms, gboolean newest)
{
  GHashTableIter iter;
  gpointer value;
  gint64 t = newest ? G_MININT64 : G_MAXINT64, all_idle = G_MININT64;
  gboolean any_active = FALSE;

  if (g_hash_table_size (clock->partitions) == 0)
    return G_MININT64;
  g_hash_table_iter_init (&iter, clock->partitions);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      const Partition *p = value;

      if (is_idle (clock, p, now_ms))
        all_idle = MAX (all_idle, p->max_ts + (now_ms - p->arrival_ms));
      else
        {
          any_active = TRUE;
          t = newest ? MAX (t, p->max_ts) : MIN (t, p->max_ts);
        }
    }
  return any_active ? t : all_idle;
}

gint64
tally_window_clock_get_watermark (TallyWindowClock *clock, gint64 now_ms)
{
  g_return_val_if_fail (clock != NULL, G_MININT64);
  return extreme_stream_time (clock, now_ms, FALSE);
}

gboolean
tally_window_clock_next_closed (TallyWindowClock *clock, gint64 now_ms, gint64 *window_start)
{
  return tally_window_clock_next_closed_full (clock, now_ms, window_start, NULL);
}

gboolean
tally_window_clock_next_closed_full (TallyWindowClock *clock, gint64 now_ms, gint64 *window_start,
                                     GArray *partitions)
{
  gint64 watermark, start, end;
  GHashTableIter iter;
  gpointer key, value;

  g_return_val_if_fail (clock != NULL && window_start != NULL, FALSE);

  if (clock->open->len == 0)
    return FALSE;
  watermark = tally_window_clock_get_watermark (clock, now_ms);
  start = g_array_index (clock->open, gint64, 0);
  end = start + clock->spec.size_ms;
  if (watermark == G_MININT64 || end + clock->spec.grace_ms > watermark)
    return FALSE;
  g_array_remove_index (clock->open, 0);
  /* Every partition tracked now has this window behind it: later records for it are late,
   * and the partitions it had not covered yet are the ones its final counts cover. */
  g_hash_table_iter_init (&iter, clock->partitions);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Partition *p = value;

      if (p->published_upto < end)
        {
          guint32 id = GPOINTER_TO_UINT (key);
          if (partitions != NULL)
            g_array_append_val (partitions, id);
          p->published_upto = end;
        }
    }
  *window_start = start;
  return TRUE;
}

void
tally_window_clock_restore_partition (TallyWindowClock *clock, guint32 partition,
                                      gint64 stream_time_ms, gint64 published_upto_ms,
                                      gint64 now_ms)
{
  Partition *p;

  g_return_if_fail (clock != NULL);

  /* A partition that never had a record holds nothing open, as before the restart. */
  if (stream_time_ms == G_MININT64)
    return;
  p = get_partition (clock, partition, now_ms);
  p->max_ts = MAX (p->max_ts, stream_time_ms);
  p->published_upto = MAX (p->published_upto, published_upto_ms);
}

void
tally_window_clock_restore_bucket (TallyWindowClock *clock, gint64 bucket_start_ms)
{
  g_return_if_fail (clock != NULL);
  note_open (clock, floor_to (bucket_start_ms, clock->spec.size_ms));
}

gint64
tally_window_clock_get_published_upto (TallyWindowClock *clock, guint32 partition)
{
  Partition *p;

  g_return_val_if_fail (clock != NULL, G_MININT64);

  p = g_hash_table_lookup (clock->partitions, GUINT_TO_POINTER (partition));
  return p != NULL ? p->published_upto : G_MININT64;
}

/* Buckets before this are beyond retention, by the newest stream time. */
static gint64
retained_from (TallyWindowClock *clock, gint64 newest)
{
  return floor_to (newest, clock->spec.size_ms) - (gint64)clock->spec.retain * clock->spec.size_ms;
}

gint64
tally_window_clock_get_expiry (TallyWindowClock *clock, gint64 now_ms)
{
  gint64 newest, expiry;

  g_return_val_if_fail (clock != NULL, G_MININT64);

  newest = extreme_stream_time (clock, now_ms, TRUE);
  if (newest == G_MININT64)
    return G_MININT64;
  expiry = retained_from (clock, newest);
  /* A window not yet handed out keeps its buckets until its final counts are taken. */
  if (clock->open->len > 0)
    expiry = MIN (expiry, g_array_index (clock->open, gint64, 0));
  return expiry;
}

gboolean
tally_window_clock_resolve (TallyWindowClock *clock, const TallyWindowSelector *selector,
                            gint64 now_ms, gint64 *from_ms, gint64 *to_ms, GError **error)
{
  const TallyWindowSpec *s;
  gint64 newest, from, to;

  g_return_val_if_fail (clock != NULL && selector != NULL, FALSE);
  g_return_val_if_fail (from_ms != NULL && to_ms != NULL, FALSE);

  s = &clock->spec;
  if (selector->kind == TALLY_WINDOW_SELECT_START
      && (selector->start_ms < 0 || selector->start_ms > TALLY_WINDOW_MAX_TIMESTAMP_MS))
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                   "window start %" G_GINT64_FORMAT " is out of range: 0 to %" G_GINT64_FORMAT
                   " ms (the end of the year 9999)",
                   selector->start_ms, TALLY_WINDOW_MAX_TIMESTAMP_MS);
      return FALSE;
    }
  if (selector->kind == TALLY_WINDOW_SELECT_START && selector->start_ms % s->size_ms != 0)
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                   "window start %" G_GINT64_FORMAT " is not a multiple of the window size "
                   "(%" G_GINT64_FORMAT " ms)",
                   selector->start_ms, s->size_ms);
      return FALSE;
    }
  if (selector->kind == TALLY_WINDOW_SELECT_LAST_DURATION
      && selector->duration_ms > TALLY_WINDOW_MAX_TIMESTAMP_MS)
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                   "window last %" G_GINT64_FORMAT " ms is longer than any time windows hold "
                   "(%" G_GINT64_FORMAT " ms, to the end of the year 9999)",
                   selector->duration_ms, TALLY_WINDOW_MAX_TIMESTAMP_MS);
      return FALSE;
    }
  if (selector->kind == TALLY_WINDOW_SELECT_LAST_DURATION
      && (selector->duration_ms <= 0 || selector->duration_ms % s->bucket_ms != 0))
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_INVALID,
                   "window last %" G_GINT64_FORMAT " ms is not a positive multiple of the "
                   "bucket width (%" G_GINT64_FORMAT " ms)",
                   selector->duration_ms, s->bucket_ms);
      return FALSE;
    }

  newest = extreme_stream_time (clock, now_ms, TRUE);
  if (newest == G_MININT64)
    {
      /* No record yet: an empty range. */
      *from_ms = *to_ms = selector->kind == TALLY_WINDOW_SELECT_START ? selector->start_ms : 0;
      return TRUE;
    }

  switch (selector->kind)
    {
    case TALLY_WINDOW_SELECT_CURRENT:
      from = floor_to (newest, s->size_ms);
      to = from + s->size_ms;
      break;
    case TALLY_WINDOW_SELECT_LAST:
      {
        gint64 watermark = tally_window_clock_get_watermark (clock, now_ms);
        to = floor_to (watermark - s->grace_ms, s->size_ms);
        from = to - s->size_ms;
      }
      break;
    case TALLY_WINDOW_SELECT_START:
      from = selector->start_ms;
      to = from + s->size_ms;
      break;
    case TALLY_WINDOW_SELECT_LAST_DURATION:
    default:
      to = floor_to (newest, s->bucket_ms) + s->bucket_ms;
      from = to - selector->duration_ms;
      break;
    }
  if (from < retained_from (clock, newest))
    {
      g_set_error (error, TALLY_WINDOW_ERROR, TALLY_WINDOW_ERROR_EXPIRED,
                   "window from %" G_GINT64_FORMAT " ms is older than the buckets retained "
                   "([windows] retain = %u window%s of %" G_GINT64_FORMAT " ms before the "
                   "open one): ask for a later window, or raise [windows] retain",
                   from, s->retain, s->retain == 1 ? "" : "s", s->size_ms);
      return FALSE;
    }
  *from_ms = from;
  *to_ms = to;
  return TRUE;
}

guint64
tally_window_clock_get_late_records (TallyWindowClock *clock)
{
  g_return_val_if_fail (clock != NULL, 0);
  return clock->late;
}
