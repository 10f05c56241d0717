/* tally-window-clock.h — event time for windows: buckets, lateness, idleness, closing.
 *
 * Time is the record's timestamp (CreateTime or LogAppendTime, as the topic has it), in
 * milliseconds since the Unix epoch. Per partition the clock keeps its *stream time*: the
 * largest timestamp seen (Kafka Streams' term). A window [start, start + size) is closed
 * for a partition once its stream time reaches start + size + grace; a record for a closed
 * window (or one whose final counts were handed out) is *late* and is not counted in any
 * window. The instance's *watermark* is the
 * smallest stream time of its partitions; a window closes on the instance, and its final
 * counts are handed out once, when the watermark reaches its end + grace.
 *
 * Quiet partitions: a partition without records for [windows] idle_ms of wall-clock time
 * is *idle* and leaves the watermark (as Flink's idleness): it holds no window open past
 * the idle time. When every partition is idle, event time is taken to follow the wall
 * clock from the newest record, so windows still close with no input at all.
 *
 * Plain data with no locks, owned by one thread (the source actor). Every function takes
 * the wall-clock time as an argument, so tests drive time explicitly.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * TALLY_WINDOW_MAX_TIMESTAMP_MS:
 *
 * The latest timestamp windows take: the last millisecond of the year 9999 (as
 * java.time's ISO range ends), far below the sums of window arithmetic that overflow a
 * gint64. A record stamped later counts as a record without a timestamp
 * (tally_window_clock_observe()); a window selector beyond it is
 * %TALLY_WINDOW_ERROR_INVALID.
 */
#define TALLY_WINDOW_MAX_TIMESTAMP_MS G_GINT64_CONSTANT (253402300799999)

/**
 * TALLY_WINDOW_ERROR:
 *
 * Error domain of windows: errors from #TallyWindowError.
 */
#define TALLY_WINDOW_ERROR (tally_window_error_quark ())

/**
 * TallyWindowError:
 * @TALLY_WINDOW_ERROR_INVALID: a window selector does not parse, or names a start time
 *   that is not a multiple of the window size
 * @TALLY_WINDOW_ERROR_EXPIRED: a window selector names a time range whose buckets are no
 *   longer retained ([windows] retain)
 * @TALLY_WINDOW_ERROR_DISABLED: windows are not enabled ([windows] enabled)
 *
 * Errors of window selection.
 */
typedef enum
{
  TALLY_WINDOW_ERROR_INVALID,
  TALLY_WINDOW_ERROR_EXPIRED,
  TALLY_WINDOW_ERROR_DISABLED,
} TallyWindowError;

GQuark tally_window_error_quark (void);

/**
 * TallyWindowSpec:
 * @size_ms: the tumbling window size in ms, a multiple of @bucket_ms
 * @bucket_ms: the bucket width in ms, at least 1
 * @grace_ms: how late (in event time) a record may be and still count in its window
 * @idle_ms: wall-clock ms without records after which a partition is idle
 * @retain: closed windows kept queryable besides the open one
 *
 * What [windows] configures. Plain struct.
 */
typedef struct
{
  gint64 size_ms;
  gint64 bucket_ms;
  gint64 grace_ms;
  gint64 idle_ms;
  guint retain;
} TallyWindowSpec;

/**
 * TallyWindowSelectorKind:
 * @TALLY_WINDOW_SELECT_CURRENT: the window the newest stream time falls in (still open)
 * @TALLY_WINDOW_SELECT_LAST: the newest closed window
 * @TALLY_WINDOW_SELECT_START: the window starting at @start_ms
 * @TALLY_WINDOW_SELECT_LAST_DURATION: the newest buckets covering @duration_ms, the open
 *   bucket included ("the last 15 minutes")
 */
typedef enum
{
  TALLY_WINDOW_SELECT_CURRENT,
  TALLY_WINDOW_SELECT_LAST,
  TALLY_WINDOW_SELECT_START,
  TALLY_WINDOW_SELECT_LAST_DURATION,
} TallyWindowSelectorKind;

/**
 * TallyWindowSelector:
 * @kind: which window
 * @start_ms: for %TALLY_WINDOW_SELECT_START, the window start (ms since the Unix epoch)
 * @duration_ms: for %TALLY_WINDOW_SELECT_LAST_DURATION, the length in ms
 *
 * Which counts over time a snapshot request asks for. Plain struct.
 */
typedef struct
{
  TallyWindowSelectorKind kind;
  gint64 start_ms;
  gint64 duration_ms;
} TallyWindowSelector;

/**
 * tally_window_parse_duration:
 * @text: a duration: a whole number followed by `ms`, `s`, `m`, `h` or `d` (no unit means
 *   milliseconds), e.g. `15m`
 * @out_ms: (out): the duration in milliseconds
 * @error: %TALLY_WINDOW_ERROR_INVALID when @text is not such a duration, or is 0
 *
 * Returns: whether @text parsed
 */
gboolean tally_window_parse_duration (const char *text, gint64 *out_ms, GError **error);

/**
 * tally_window_selector_parse:
 * @text: `current`, `last`, a start time in ms, or `last:DURATION` (e.g. `last:15m`), the
 *   command-line form of the JSON selector
 * @selector: (out caller-allocates): the selector
 * @error: %TALLY_WINDOW_ERROR_INVALID when @text is none of those
 *
 * Returns: whether @text parsed
 */
gboolean tally_window_selector_parse (const char *text, TallyWindowSelector *selector,
                                      GError **error);

typedef struct _TallyWindowClock TallyWindowClock;

/**
 * tally_window_clock_new:
 * @spec: the windows; copied
 *
 * Returns: (transfer full): a clock with no partition; free with tally_window_clock_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyWindowClock *tally_window_clock_new (const TallyWindowSpec *spec);

/**
 * tally_window_clock_free:
 * @clock: (transfer full) (nullable): a clock
 */
void tally_window_clock_free (TallyWindowClock *clock);

/**
 * tally_window_clock_get_spec:
 * @clock: a clock
 *
 * Returns: (transfer none): its windows
 */
const TallyWindowSpec *tally_window_clock_get_spec (TallyWindowClock *clock);

/**
 * tally_window_clock_observe:
 * @clock: a clock
 * @partition: the record's partition (a store)
 * @timestamp_ms: the record's timestamp (ms since the Unix epoch); negative when the record
 *   has none, which then counts at the partition's stream time (or at @now_ms for a first
 *   record); one after %TALLY_WINDOW_MAX_TIMESTAMP_MS counts as none
 * @now_ms: the wall-clock time (ms since the Unix epoch)
 * @bucket_start: (out): the start of the record's bucket (ms), for an on-time record
 *
 * Observes one record: advances the partition's stream time and says whether the record
 * counts in a window. A record whose window is closed for its partition (see the file
 * head) is late: it is counted in the late statistic and @bucket_start is not set.
 *
 * Returns: %TRUE for an on-time record, %FALSE for a late one
 */
gboolean tally_window_clock_observe (TallyWindowClock *clock, guint32 partition,
                                     gint64 timestamp_ms, gint64 now_ms, gint64 *bucket_start);

/**
 * tally_window_clock_remove_partition:
 * @clock: a clock
 * @partition: a partition no longer owned (revoked)
 *
 * Forgets @partition, which then no longer holds any window open.
 */
void tally_window_clock_remove_partition (TallyWindowClock *clock, guint32 partition);

/**
 * tally_window_clock_get_stream_time:
 * @clock: a clock
 * @partition: a partition
 * @now_ms: the wall-clock time (ms)
 *
 * Returns: the partition's stream time (ms): its largest timestamp; %G_MININT64 for a
 *   partition with no record yet
 */
gint64 tally_window_clock_get_stream_time (TallyWindowClock *clock, guint32 partition,
                                           gint64 now_ms);

/**
 * tally_window_clock_is_idle:
 * @clock: a clock
 * @partition: a partition
 * @now_ms: the wall-clock time (ms)
 *
 * Returns: whether @partition had no record for [windows] idle_ms (see the file head)
 */
gboolean tally_window_clock_is_idle (TallyWindowClock *clock, guint32 partition, gint64 now_ms);

/**
 * tally_window_clock_get_watermark:
 * @clock: a clock
 * @now_ms: the wall-clock time (ms)
 *
 * Returns: the smallest stream time over the partitions tracked that are not idle (see the
 *   file head): every window ending at or before this minus grace is closed on the
 *   instance; %G_MININT64 with no partition
 */
gint64 tally_window_clock_get_watermark (TallyWindowClock *clock, gint64 now_ms);

/**
 * tally_window_clock_next_closed:
 * @clock: a clock
 * @now_ms: the wall-clock time (ms)
 * @window_start: (out): the start (ms) of a window that closed on the instance
 *
 * Hands out each window that closed since the clock was made, once, oldest first; only
 * windows that hold records are handed out (from the first record's window on). Call it
 * until it returns %FALSE.
 *
 * Returns: whether @window_start was set
 */
gboolean tally_window_clock_next_closed (TallyWindowClock *clock, gint64 now_ms,
                                         gint64 *window_start);

/**
 * tally_window_clock_next_closed_full:
 * @clock: a clock
 * @now_ms: the wall-clock time (ms)
 * @window_start: (out): the start (ms) of a window that closed on the instance
 * @partitions: (nullable) (element-type guint32): appended the partitions whose final
 *   counts of that window were not handed out before (all tracked ones, except those
 *   restored with tally_window_clock_restore_partition() past it)
 *
 * As tally_window_clock_next_closed(), saying which partitions the window's final counts
 * cover, so that after a restart no partition's counts are published twice.
 *
 * Returns: whether @window_start was set
 */
gboolean tally_window_clock_next_closed_full (TallyWindowClock *clock, gint64 now_ms,
                                              gint64 *window_start, GArray *partitions);

/**
 * tally_window_clock_restore_partition:
 * @clock: a clock
 * @partition: a partition just restored from the changelog
 * @stream_time_ms: its checkpointed stream time, or %G_MININT64
 * @published_upto_ms: the end of the last window whose final counts were published with
 *   it, or %G_MININT64
 * @now_ms: the wall-clock time (ms)
 *
 * Puts a partition's checkpointed clock back, so lateness and publication go on as if
 * the process had not stopped.
 */
void tally_window_clock_restore_partition (TallyWindowClock *clock, guint32 partition,
                                           gint64 stream_time_ms, gint64 published_upto_ms,
                                           gint64 now_ms);

/**
 * tally_window_clock_restore_bucket:
 * @clock: a clock
 * @bucket_start_ms: a restored bucket's start (ms)
 *
 * Notes that the window holding this bucket has records, so its close is handed out.
 */
void tally_window_clock_restore_bucket (TallyWindowClock *clock, gint64 bucket_start_ms);

/**
 * tally_window_clock_get_published_upto:
 * @clock: a clock
 * @partition: a partition
 *
 * Returns: the end (ms) of the last window handed out with @partition, %G_MININT64 if none
 */
gint64 tally_window_clock_get_published_upto (TallyWindowClock *clock, guint32 partition);

/**
 * tally_window_clock_get_expiry:
 * @clock: a clock
 * @now_ms: the wall-clock time (ms)
 *
 * Returns: buckets starting before this time (ms) are beyond retention and may be dropped
 *   (those of the @retain newest closed windows and later are kept); %G_MININT64 when
 *   nothing has expired
 */
gint64 tally_window_clock_get_expiry (TallyWindowClock *clock, gint64 now_ms);

/**
 * tally_window_clock_resolve:
 * @clock: a clock
 * @selector: a window selector
 * @now_ms: the wall-clock time (ms)
 * @from_ms: (out): the first time (ms) the selected window covers
 * @to_ms: (out): the end (ms, exclusive); equal to @from_ms when no record was seen yet
 * @error: %TALLY_WINDOW_ERROR_INVALID for a start that is not a multiple of the window
 *   size or a duration that is not a multiple of the bucket width;
 *   %TALLY_WINDOW_ERROR_EXPIRED for a window whose buckets have expired
 *
 * Turns a selector into the range of buckets to sum, using the newest stream time of the
 * partitions tracked.
 *
 * Returns: whether the range was set
 */
gboolean tally_window_clock_resolve (TallyWindowClock *clock, const TallyWindowSelector *selector,
                                     gint64 now_ms, gint64 *from_ms, gint64 *to_ms, GError **error);

/**
 * tally_window_clock_get_late_records:
 * @clock: a clock
 *
 * Returns: the number of late records observed (statistic `tally_window_late_records`)
 */
guint64 tally_window_clock_get_late_records (TallyWindowClock *clock);

G_END_DECLS
