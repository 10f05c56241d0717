/* tally-snapshot-request.h — a request for a snapshot, as read from the request topic.
 *
 * A *snapshot request* is a record on the request topic: its key is the request id (any
 * UTF-8 text), its value is empty or a small JSON object `{"top":N,"prefix":"..",
 * "min_count":N}` (every member optional). A #TallySnapshotRequest is its parsed form; the
 * same struct stands for a snapshot triggered by SIGUSR1, the interval timer or shutdown,
 * with a generated request id.
 *
 * A bad request value is not dropped: it is parsed into a request that carries its error,
 * so the instance answers it with an error snapshot (tally-snapshot.h) instead of leaving
 * the requester to time out. `tally snapshot` writes requests with
 * tally_snapshot_request_to_json().
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-counts.h"
#include "tally-snapshot.h"
#include "tally-window-clock.h"

G_BEGIN_DECLS

/**
 * TallySnapshotRequest:
 * @request_id: the request id (the request record's key); never %NULL, generated for
 *   SIGUSR1, timer and shutdown snapshots
 * @top: keep only the @top most frequent words; 0 keeps all (JSON member `top`)
 * @prefix: (nullable): keep only words starting with these bytes (JSON member `prefix`)
 * @min_count: keep only words counted at least this often; 0 keeps all (`min_count`)
 * @words: (nullable) (array zero-terminated=1): keep only these words (JSON member
 *   `words`, an array of strings): the exact counts of a candidate set, the last round of
 *   an exact top N across instances (tally-top-query.h); %NULL keeps all
 * @requested_at_ms: when the request was made: the request record's timestamp, or the
 *   wall-clock time (ms since the Unix epoch) for one made in-process
 * @error: (nullable): set for a request whose value was bad; it is answered with an
 *   error snapshot carrying this message (see tally_snapshot_request_parse())
 * @has_window: whether the request asks for counts over time (JSON member `window`)
 *   instead of the all-time counts
 * @window: which window, when @has_window (tally-window-clock.h)
 * @window_start_ms: the start (ms since the Unix epoch) of the range the window resolved
 *   to, filled in when the cut was taken; 0 before
 * @window_end_ms: its end (exclusive); 0 before
 *
 * One snapshot request. A plain struct owned by whoever holds it; the strings and @error
 * are owned by the struct. Copy with tally_snapshot_request_copy() to keep it past a
 * callback. Pass its filters to tally_counts_filter() with
 * tally_snapshot_request_get_options().
 */
typedef struct
{
  char *request_id;
  guint64 top;
  char *prefix;
  guint64 min_count;
  char **words;
  gint64 requested_at_ms;
  GError *error;
  gboolean has_window;
  TallyWindowSelector window;
  gint64 window_start_ms;
  gint64 window_end_ms;
} TallySnapshotRequest;

/**
 * tally_snapshot_request_new:
 * @request_id: (nullable): the request id; %NULL generates a fresh one (a random UUID,
 *   g_uuid_string_random())
 *
 * Makes a request for everything (no filters), requested now. Any thread.
 *
 * Returns: (transfer full): the request; free with tally_snapshot_request_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotRequest *tally_snapshot_request_new (const char *request_id);

/**
 * tally_snapshot_request_parse:
 * @key: (nullable) (array length=key_len): the request record's key, the request id
 * @key_len: its length in bytes
 * @value: (nullable) (array length=value_len): the record's value
 * @value_len: its length in bytes
 * @timestamp_ms: the record's timestamp (ms since the Unix epoch), or -1 for now
 *
 * Parses a request record. A missing or empty key gets a generated request id; a key that
 * is not valid UTF-8 is replaced by a generated id too (and the request is marked bad).
 * An empty or null value asks for everything; a value that is not a JSON object with only
 * the optional members `top` (integer >= 0), `prefix` (string), `min_count`
 * (integer >= 0), `window` (`"current"`, `"last"`, a window start in ms since the Unix
 * epoch, or `{"last": "15m"}` with a duration of tally_window_parse_duration()) and `words`
 * (array of non-empty strings) makes a *bad* request: one whose @error is set
 * (%TALLY_SNAPSHOT_FORMAT_ERROR_INVALID, naming the member) and that is still returned, so
 * the instance can answer it with an error snapshot instead of leaving the requester to
 * time out. Unknown members are errors too, so a typo is noticed. Any thread.
 *
 * Returns: (transfer full): the request, never %NULL
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotRequest *tally_snapshot_request_parse (const void *key, gsize key_len,
                                                    const void *value, gsize value_len,
                                                    gint64 timestamp_ms);

/**
 * tally_snapshot_request_to_json:
 * @request: a request
 *
 * The record value that asks for @request: a JSON object with the members whose values
 * are not the defaults, or an empty value when there are none. The request id goes in the
 * record's key, not here. Any thread.
 *
 * Returns: (transfer full): the value bytes (UTF-8 JSON, not NUL-terminated; may be empty)
 */
G_GNUC_WARN_UNUSED_RESULT
GBytes *tally_snapshot_request_to_json (const TallySnapshotRequest *request);

/**
 * tally_snapshot_request_get_options:
 * @request: a request
 * @options: (out caller-allocates): filters to fill; @options->prefix and @options->words
 *   point into @request
 *
 * Fills the #TallyCountsOptions that apply @request's filters (`words` included, which
 * only a cut from the shards applies; see #TallyCountsOptions).
 */
void tally_snapshot_request_get_options (const TallySnapshotRequest *request,
                                         TallyCountsOptions *options);

/**
 * tally_snapshot_request_copy:
 * @request: a request
 *
 * Returns: (transfer full): a deep copy
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotRequest *tally_snapshot_request_copy (const TallySnapshotRequest *request);

/**
 * tally_snapshot_request_free:
 * @request: (transfer full) (nullable): a request
 */
void tally_snapshot_request_free (TallySnapshotRequest *request);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotRequest, tally_snapshot_request_free)

G_END_DECLS
