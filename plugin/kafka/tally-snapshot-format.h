/* tally-snapshot-format.h — snapshot requests and snapshot records on Kafka, as JSON.
 *
 * A *snapshot request* is a record on the request topic: its key is the request id (any
 * UTF-8 text), its value is empty or a small JSON object `{"top":N,"prefix":"..",
 * "min_count":N}` (every member optional). A #TallySnapshotRequest is its parsed form; the
 * same struct stands for a snapshot triggered by SIGUSR1, the interval timer or shutdown,
 * with a generated request id.
 *
 * A *snapshot* is one instance's consistent cut of its counts. On the output topic it is
 * one or more records (*parts*), each a JSON object made with json-glib, small enough for
 * the configured record size limit ([output] max_record_bytes), carrying:
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
 * part tells a reader which snapshot, request and partitions it belongs to. An *error
 * snapshot* (a bad request) is a single part with an `"error"` member and no counts.
 * Records also carry the headers %TALLY_SNAPSHOT_HEADER_SNAPSHOT_ID,
 * %TALLY_SNAPSHOT_HEADER_REQUEST_ID, %TALLY_SNAPSHOT_HEADER_PART and
 * %TALLY_SNAPSHOT_HEADER_PARTS (decimal text), and the snapshot id as key.
 *
 * Numbers are JSON integers that json-glib reads and writes as gint64: counts and
 * `total_words` stop at %G_MAXINT64 (saturated, never wrapped negative). A request value or
 * a part nested deeper than 8 arrays/objects is refused as invalid before json-glib parses
 * it (its parser recurses once per level; a request needs depth 1, a part 3).
 *
 * A #TallySnapshotAssembler collects parts (by snapshot id, in any order, duplicates
 * ignored) into whole snapshots, and merges the snapshots of several instances for one
 * request until every input partition is covered.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

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
 * @TALLY_SNAPSHOT_FORMAT_ERROR_INVALID: a request or part value is not the JSON object
 *   described above (bad JSON, a member of the wrong type, a negative number, invalid
 *   UTF-8, `part` not below `parts`); the message says which member.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE: one entry (a very long word) does not fit in a
 *   record of the limit even alone, or the limit is smaller than a part without entries.
 *   The snapshot is not split; the publisher answers with an error snapshot instead.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH: a part disagrees with earlier parts of the same
 *   snapshot (another `parts`, request id or instance id).
 * @TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP: a snapshot claims an input partition already
 *   covered by another instance's snapshot of the same request (a rebalance happened
 *   between the two cuts); it is not merged, since that would count the partition twice.
 * @TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE: an instance answered with an error snapshot; the
 *   message carries its `error` text.
 *
 * Errors of the snapshot format.
 */
typedef enum
{
  TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
  TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
  TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
  TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP,
  TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE,
} TallySnapshotFormatError;

/**
 * tally_snapshot_format_error_quark:
 *
 * Returns: the quark of %TALLY_SNAPSHOT_FORMAT_ERROR
 */
GQuark tally_snapshot_format_error_quark (void);

/* ---------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------- */

/**
 * TallySnapshotRequest:
 * @request_id: the request id (the request record's key); never %NULL, generated for
 *   SIGUSR1, timer and shutdown snapshots
 * @top: keep only the @top most frequent words; 0 keeps all (JSON member `top`)
 * @prefix: (nullable): keep only words starting with these bytes (JSON member `prefix`)
 * @min_count: keep only words counted at least this often; 0 keeps all (`min_count`)
 * @requested_at_ms: when the request was made: the request record's timestamp, or the
 *   wall-clock time (ms since the Unix epoch) for one made in-process
 * @error: (nullable): set for a request whose value was bad; it is answered with an
 *   error snapshot carrying this message (see tally_snapshot_request_parse())
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
  gint64 requested_at_ms;
  GError *error;
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
 * the optional members `top` (integer >= 0), `prefix` (string) and `min_count`
 * (integer >= 0) makes a *bad* request: one whose @error is set
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
 * @options: (out caller-allocates): filters to fill; @options->prefix points into @request
 *
 * Fills the #TallyCountsOptions that apply @request's filters.
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

/* ---------------------------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------------------------- */

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
 * entries is one part. A word whose entry cannot fit in any part is an error rather than
 * a record Kafka would refuse (words are capped far lower by [tokenizer] max_word_bytes).
 * Any thread.
 *
 * Returns: (transfer full) (element-type GBytes): the record values of parts 0..n-1, or
 *   %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
GPtrArray *tally_snapshot_encode (const TallySnapshot *snapshot, gsize max_record_bytes,
                                  GError **error);

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
 * TallySnapshotPart:
 *
 * One decoded part: the snapshot members it repeats, its number, and its slice of the
 * entries. Opaque; read it with the getters.
 */
typedef struct _TallySnapshotPart TallySnapshotPart;

/**
 * tally_snapshot_part_decode:
 * @value: (array length=len): a record value from the output topic
 * @len: its length in bytes
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_INVALID
 *
 * Parses one part. Any thread.
 *
 * Returns: (transfer full) (nullable): the part, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotPart *tally_snapshot_part_decode (const void *value, gsize len, GError **error);

/**
 * tally_snapshot_part_get_snapshot_id:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: (transfer none): the id of the snapshot this part belongs to
 */
const char *tally_snapshot_part_get_snapshot_id (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_request_id:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: (transfer none): the id of the request its snapshot answers
 */
const char *tally_snapshot_part_get_request_id (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_instance_id:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: (transfer none): the id of the instance that published it
 */
const char *tally_snapshot_part_get_instance_id (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_part:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: the part number, 0 .. parts - 1
 */
guint tally_snapshot_part_get_part (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_parts:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: the number of parts of its snapshot, at least 1
 */
guint tally_snapshot_part_get_parts (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_n_entries:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: the number of entries (words) in this part
 */
gsize tally_snapshot_part_get_n_entries (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_get_error:
 * @part: a decoded part
 *
 * Any thread.
 *
 * Returns: (transfer none) (nullable): an error snapshot's `error` text, %NULL otherwise
 */
const char *tally_snapshot_part_get_error (const TallySnapshotPart *part);

/**
 * tally_snapshot_part_free:
 * @part: (transfer full) (nullable): a part
 */
void tally_snapshot_part_free (TallySnapshotPart *part);

/* ---------------------------------------------------------------------------------------
 * Reassembly and merging
 * ------------------------------------------------------------------------------------- */

/**
 * TallySnapshotAssembler:
 *
 * Collects parts into snapshots and merges snapshots of one request. Opaque; one thread at
 * a time.
 */
typedef struct _TallySnapshotAssembler TallySnapshotAssembler;

/**
 * tally_snapshot_assembler_new:
 * @request_id: (nullable): accept only parts answering this request; %NULL accepts all
 *   (and merges whatever comes, which makes sense only for one request at a time)
 * @expected: (nullable) (transfer none): the input partitions the merged result must
 *   cover (offsets ignored); %NULL means merging is complete after the first snapshot
 *
 * Returns: (transfer full): an assembler
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotAssembler *
tally_snapshot_assembler_new (const char *request_id,
                              const rd_kafka_topic_partition_list_t *expected);

/**
 * tally_snapshot_assembler_add_part:
 * @self: an assembler
 * @part: (transfer full): a decoded part
 * @error: return location for %TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
 *   %TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP or %TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE
 *
 * Adds a part. Parts of another request are ignored (returns %FALSE, no error); a part
 * already seen (same snapshot id and number) is ignored. When the last missing part of a
 * snapshot arrives the snapshot is complete: it is merged into the result unless it
 * overlaps partitions already covered (error OVERLAP; the snapshot is dropped) or is an
 * error snapshot (error REMOTE). Errors are about that one part or snapshot: the assembler
 * stays usable.
 *
 * Returns: %TRUE when this part completed a snapshot that was merged
 */
gboolean tally_snapshot_assembler_add_part (TallySnapshotAssembler *self, TallySnapshotPart *part,
                                            GError **error);

/**
 * tally_snapshot_assembler_take_snapshot:
 * @self: an assembler
 *
 * Takes the oldest snapshot completed and not yet taken: merged ones and error snapshots
 * (not merged), not those refused for overlapping. Useful to a reader that wants the
 * snapshots themselves, not just the merged result.
 *
 * Returns: (transfer full) (nullable): a complete snapshot, or %NULL when none is waiting
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshot *tally_snapshot_assembler_take_snapshot (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_is_complete:
 * @self: an assembler
 *
 * Returns: whether the merged snapshots cover every expected partition (or, with no
 *   expected partitions, whether at least one snapshot was merged)
 */
gboolean tally_snapshot_assembler_is_complete (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_dup_missing:
 * @self: an assembler
 *
 * Returns: (transfer full): the expected partitions not covered yet (possibly empty);
 *   free with rd_kafka_topic_partition_list_destroy()
 */
G_GNUC_WARN_UNUSED_RESULT
rd_kafka_topic_partition_list_t *
tally_snapshot_assembler_dup_missing (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_get_n_incomplete:
 * @self: an assembler
 *
 * Returns: how many snapshots have some but not all of their parts
 */
guint tally_snapshot_assembler_get_n_incomplete (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_dup_merged:
 * @self: an assembler
 *
 * The merge of every snapshot merged so far: counts summed word by word (then the
 * request's `top`, `prefix` and `min_count` filters of the first snapshot applied again),
 * offsets and partitions concatenated, total_words summed (saturated at %G_MAXINT64),
 * taken_ms the largest, distinct_words the number of merged entries when no instance
 * filtered, else the sum (an upper bound). Instance and snapshot ids are those of the first
 * snapshot when only one was merged, else "merged".
 *
 * Returns: (transfer full) (nullable): the merged snapshot, %NULL before any was merged
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshot *tally_snapshot_assembler_dup_merged (TallySnapshotAssembler *self);

/**
 * tally_snapshot_assembler_free:
 * @self: (transfer full) (nullable): an assembler
 */
void tally_snapshot_assembler_free (TallySnapshotAssembler *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotRequest, tally_snapshot_request_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshot, tally_snapshot_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotPart, tally_snapshot_part_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotAssembler, tally_snapshot_assembler_free)

G_END_DECLS
