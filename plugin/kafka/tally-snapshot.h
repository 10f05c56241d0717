/* tally-snapshot.h — one instance's snapshot of its counts, and its records on Kafka.
 *
 * A *snapshot* is one instance's consistent cut of its counts, answering one
 * #TallySnapshotRequest. On the output topic it is one or more records (*parts*), each a
 * JSON object made with json-glib and small enough for the configured record size limit
 * ([output] max_record_bytes); tally_snapshot_encode() shows a part and how splitting
 * works. Every part repeats the snapshot's ids, so any one tells a reader which snapshot,
 * request and input partitions it belongs to; an *error snapshot* answers a bad request.
 *
 * Readers decode parts with #TallySnapshotPart and put them back together, across the
 * instances of a consumer group, with #TallySnapshotAssembler. This header also holds what
 * they all share: the record header names and the format's error domain.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-counts.h"

G_BEGIN_DECLS

/** TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID: record header naming the snapshot id. */
#define TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID "tally.snapshot.id"
/** TALLY_SNAPSHOT_HEADER_REQUEST_ID: record header naming the request id. */
#define TALLY_SNAPSHOT_HEADER_REQUEST_ID "tally.request.id"
/** TALLY_SNAPSHOT_HEADER_PART: record header, the part number as decimal text. */
#define TALLY_SNAPSHOT_HEADER_PART "tally.part"
/** TALLY_SNAPSHOT_HEADER_PARTS: record header, the number of parts as decimal text. */
#define TALLY_SNAPSHOT_HEADER_PARTS "tally.parts"

/**
 * TALLY_SNAPSHOT_FORMAT_ERROR:
 *
 * Error domain of the snapshot format. Errors in this domain are from
 * #TallySnapshotFormatError.
 */
#define TALLY_SNAPSHOT_FORMAT_ERROR (tally_snapshot_format_error_quark ())

/**
 * TallySnapshotFormatError:
 * @TALLY_SNAPSHOT_FORMAT_ERROR_INVALID: a request value or part is not the JSON object
 *   described in tally_snapshot_request_parse() or tally_snapshot_encode() (bad JSON, a
 *   member of the wrong type, a negative number, invalid UTF-8, `part` not below `parts`,
 *   nested deeper than 8 arrays/objects); the message says which member.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE: one entry (a very long word) does not fit in a
 *   record of the limit even alone, or the limit is smaller than a part without entries.
 *   The snapshot is not split; the publisher answers with an error snapshot instead. Also
 *   the publisher's error for a whole snapshot larger than what the output topic keeps per
 *   partition (tally_publisher_start_supervised()'s max_snapshot_bytes).
 * @TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH: a part disagrees with earlier parts of the same
 *   snapshot (another `parts`, request id or instance id).
 * @TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP: a snapshot claims an input partition already
 *   covered by another instance's snapshot of the same request (a rebalance happened
 *   between the two cuts); it is not merged, since that would count the partition twice.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE: an instance answered with an error snapshot; the
 *   message carries its `error` text.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN: a snapshot answers the request but counts a topic
 *   the reader's input does not name: another instance (or plugin) with other input topics
 *   reads the same request topic. It is not merged, since its counts would mix topics.
 *
 * Errors of the snapshot format: of requests (#TallySnapshotRequest), parts
 * (#TallySnapshotPart) and their reassembly (#TallySnapshotAssembler) alike.
 */
typedef enum
{
  TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
  TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
  TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
  TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP,
  TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE,
  TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN,
} TallySnapshotFormatError;

/**
 * tally_snapshot_format_error_quark:
 *
 * Returns: the quark of %TALLY_SNAPSHOT_FORMAT_ERROR
 */
GQuark tally_snapshot_format_error_quark (void);

/**
 * TallySnapshot:
 * @snapshot_id: unique id of this snapshot (a random UUID); the key of its records
 * @request_id: the request it answers
 * @instance_id: the Tally instance that took it
 * @created_at_ms: when the cut was taken, ms since the Unix epoch
 * @taken_ms: how long taking the cut took, in ms (from the request to the last shard's
 *   reply)
 * @total_words: words counted (duplicates included) over all words of the instance,
 *   before the request's filters
 * @distinct_words: distinct words of the instance, before the request's filters
 * @top: the request's `top` filter that selected @counts (0: none)
 * @prefix: (nullable): the request's `prefix` filter
 * @min_count: the request's `min_count` filter (0: none)
 * @offsets: (nullable): per input topic-partition, the offset the counts reflect: the
 *   offset of the next record not yet counted, as a Kafka commit names it (so a
 *   partition read up to offset 41 says 42). Partitions never read are absent.
 * @partitions: (nullable): the input partitions this instance owns (their `offset` is
 *   %RD_KAFKA_OFFSET_INVALID); the counts are the sum over exactly these partitions
 * @counts: (nullable): the entries, after the request's filters; %NULL for an error
 *   snapshot
 * @error: (nullable): set for an error snapshot: why the request was not answered
 * @windowed: whether @counts are those of a time range (the request had a `window`);
 *   written as the JSON members `window_start_ms` and `window_end_ms`
 * @window_start_ms: when @windowed, the range's start (ms since the Unix epoch)
 * @window_end_ms: when @windowed, its end (exclusive)
 *
 * One instance's snapshot, as published (before splitting) or as reassembled. A plain
 * struct; every member is owned by it. Any thread, one at a time.
 */
typedef struct
{
  char *snapshot_id;
  char *request_id;
  char *instance_id;
  gint64 created_at_ms;
  gint64 taken_ms;
  guint64 total_words;
  guint64 distinct_words;
  guint64 top;
  char *prefix;
  guint64 min_count;
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_topic_partition_list_t *partitions;
  TallyCounts *counts;
  char *error;
  gboolean windowed;
  gint64 window_start_ms;
  gint64 window_end_ms;
} TallySnapshot;

/**
 * tally_snapshot_new:
 *
 * Returns: (transfer full): a zeroed snapshot (no ids, no lists, no counts)
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshot *tally_snapshot_new (void);

/**
 * tally_snapshot_free:
 * @snapshot: (transfer full) (nullable): a snapshot
 */
void tally_snapshot_free (TallySnapshot *snapshot);

/**
 * tally_snapshot_encode:
 * @snapshot: the snapshot; @snapshot->counts may be %NULL only for an error snapshot
 * @max_record_bytes: the largest record value in bytes ([output] max_record_bytes)
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE
 *
 * Splits @snapshot into parts, each a compact JSON object (json-glib) of at most
 * @max_record_bytes bytes, filled greedily with entries in order; a snapshot with no
 * entries is one part. A part, the record value on the output topic:
 *
 * |[<!-- language="JSON" -->
 * { "snapshot_id": "5d0c…", "request_id": "r-1", "instance_id": "host-4242-…",
 *   "created_at_ms": 1790000000000, "taken_ms": 3,
 *   "total_words": 1800000, "distinct_words": 30000, "entries": 2,
 *   "top": 0, "prefix": null, "min_count": 0,
 *   "offsets": [ { "topic": "tally-input", "partition": 0, "offset": 1234 } ],
 *   "partitions": [ { "topic": "tally-input", "partition": 0 } ],
 *   "part": 0, "parts": 1,
 *   "counts": [ [ "the", 120000 ], [ "of", 80000 ] ] }
 * ]|
 *
 * `part` counts from 0 to `parts - 1`; `counts` holds this part's slice of the entries in
 * #TallyCounts order (count descending, then word bytes), so concatenating the parts in
 * order gives the whole snapshot. Every other member is repeated in every part, so any one
 * part tells a reader which snapshot, request and partitions it belongs to. An error
 * snapshot is a single part with an `"error"` member and no counts. Numbers are JSON
 * integers that json-glib reads and writes as gint64: counts and `total_words` stop at
 * %G_MAXINT64 (saturated, never wrapped negative). The publisher adds the record headers
 * (%TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID and the others) and the snapshot id as key. A word whose
 * entry cannot fit in any part is an error rather than a record Kafka would refuse (words are
 * capped far lower by [tokenizer] max_word_bytes). Any thread.
 *
 * Returns: (transfer full) (element-type GBytes): the record values of parts 0..n-1, or
 *   %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
GPtrArray *tally_snapshot_encode (const TallySnapshot *snapshot, gsize max_record_bytes,
                                  GError **error);

/**
 * TallySnapshotEncoder:
 *
 * The parts of one snapshot, made one at a time: tally_snapshot_encoder_new() decides
 * where each part starts (the split of tally_snapshot_encode()), and
 * tally_snapshot_encoder_encode_part() writes any part when it is needed, so a publisher
 * holds only the parts in flight, never the whole encoded snapshot. Any thread, one at a
 * time.
 */
typedef struct _TallySnapshotEncoder TallySnapshotEncoder;

/**
 * tally_snapshot_encoder_new:
 * @snapshot: as for tally_snapshot_encode(); copied (its counts shared, a reference)
 * @max_record_bytes: as for tally_snapshot_encode()
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE
 *
 * Splits @snapshot into parts as tally_snapshot_encode() does, without writing them: one
 * pass over the entries that measures each.
 *
 * Returns: (transfer full) (nullable): the encoder, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotEncoder *tally_snapshot_encoder_new (const TallySnapshot *snapshot,
                                                  gsize max_record_bytes, GError **error);

/**
 * tally_snapshot_encoder_get_n_parts:
 * @encoder: an encoder
 *
 * Returns: the number of parts, at least 1
 */
guint tally_snapshot_encoder_get_n_parts (TallySnapshotEncoder *encoder);

/**
 * tally_snapshot_encoder_get_bytes:
 * @encoder: an encoder
 *
 * Returns: the bytes of all parts' values together, at most: each part's header is
 *   measured with 10-digit part numbers, and a word json-glib escapes with its widest
 *   escapes
 */
gsize tally_snapshot_encoder_get_bytes (TallySnapshotEncoder *encoder);

/**
 * tally_snapshot_encoder_encode_part:
 * @encoder: an encoder
 * @part: a part number below tally_snapshot_encoder_get_n_parts()
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE
 *
 * Writes part @part, the same bytes as element @part of tally_snapshot_encode(). Parts may
 * be written in any order, and again.
 *
 * Returns: (transfer full) (nullable): the record value, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
GBytes *tally_snapshot_encoder_encode_part (TallySnapshotEncoder *encoder, guint part,
                                            GError **error);

/**
 * tally_snapshot_encoder_free:
 * @encoder: (transfer full) (nullable): an encoder
 */
void tally_snapshot_encoder_free (TallySnapshotEncoder *encoder);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotEncoder, tally_snapshot_encoder_free)

/**
 * tally_snapshot_to_json:
 * @snapshot: a whole snapshot (for example a merged one)
 * @pretty: indent the output for people
 *
 * The snapshot as one JSON object with the members of a part except `part` and `parts`
 * (json-glib), for `tally snapshot --json`. Not size-limited. Any thread.
 *
 * Returns: (transfer full): UTF-8 JSON text, NUL-terminated
 */
G_GNUC_WARN_UNUSED_RESULT
char *tally_snapshot_to_json (const TallySnapshot *snapshot, gboolean pretty);

/**
 * tally_snapshot_write_json:
 * @snapshot: a whole snapshot (for example a merged one)
 * @pretty: indent the output for people
 * @out: where the JSON goes
 * @error: return location for @out's #GIOError
 *
 * Writes the text of tally_snapshot_to_json() to @out, byte for byte the same, in pieces of
 * about 256 KiB as it is made: the whole text is never held, so printing a snapshot of
 * millions of words takes little memory beyond the snapshot. Blocks on @out. Any thread.
 *
 * Returns: %TRUE if everything was written
 */
gboolean tally_snapshot_write_json (const TallySnapshot *snapshot, gboolean pretty,
                                    GOutputStream *out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshot, tally_snapshot_free)

G_END_DECLS
