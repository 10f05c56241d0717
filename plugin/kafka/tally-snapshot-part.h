/* tally-snapshot-part.h — one record of a snapshot, decoded.
 *
 * A snapshot larger than the record size limit is published as several records, its
 * parts (tally_snapshot_encode()). A #TallySnapshotPart is one of them as a reader sees
 * it: which snapshot, request and instance it belongs to, its number among the parts, and
 * its slice of the entries, validated but kept as parsed JSON until the snapshot is whole.
 *
 * Parts come from any Kafka client's read of the output topic: `tally snapshot`, the
 * tests, a request reader. Put them back together with #TallySnapshotAssembler.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-snapshot.h"

G_BEGIN_DECLS

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
 * Parses one part (the JSON object described in tally_snapshot_encode()), checking every
 * member a reader uses. A value nested deeper than 8 arrays/objects is refused before
 * json-glib parses it (its parser recurses once per level; a part needs depth 3). Any
 * thread.
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

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySnapshotPart, tally_snapshot_part_free)

G_END_DECLS
