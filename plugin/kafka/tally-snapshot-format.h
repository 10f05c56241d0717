/* tally-snapshot-format.h — the snapshot protocol on Kafka, in one include.
 *
 * Snapshot requests and snapshot records are JSON (json-glib), one type per header:
 *
 * - tally-snapshot-request.h: #TallySnapshotRequest, a request record parsed or written;
 * - tally-snapshot.h: #TallySnapshot, one instance's snapshot, split into parts by
 *   tally_snapshot_encode(); the record header names and %TALLY_SNAPSHOT_FORMAT_ERROR;
 * - tally-snapshot-part.h: #TallySnapshotPart, one record of a snapshot, decoded;
 * - tally-snapshot-assembler.h: #TallySnapshotAssembler, parts back into snapshots, and
 *   the snapshots of several instances merged.
 *
 * Include the one a file needs; this header is for code that uses them all.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-snapshot-assembler.h"
#include "tally-snapshot-part.h"
#include "tally-snapshot-request.h"
#include "tally-snapshot.h"
