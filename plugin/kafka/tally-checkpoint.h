/* tally-checkpoint.h — the changelog topic that makes counts survive a restart.
 *
 * Counts belong to input partitions, as Kafka Streams ties state to tasks: the words that
 * came from input partition p are counted in the aggregators' store p and checkpointed to
 * partition p of a compacted changelog topic. A TallyCheckpoint is the changelog's I/O:
 * it writes the words of a store that changed since the last checkpoint together with the
 * input offsets they cover, waits for the broker to acknowledge them, and reads a
 * partition back when a store must be restored. When to checkpoint, and which offsets to
 * store for the consumer group afterwards, is the source actor's decision
 * (plugin/tally-source.c).
 *
 * Record format of changelog partition p (documented for any Kafka client to read):
 *
 * - blocks (tally-changelog-block.h): key = NUL, 0x10 and 16 bytes unique to the block;
 *   value = a binary list of (word, total count in store p). A delta holds the words that
 *   changed in one checkpoint; a base, in chunks, every word of the store. A partition
 *   gets a new base when its deltas since the last one hold as many bytes as that base
 *   (and at least 1 MiB), or number 4096; once the broker acknowledged the base, the
 *   blocks before it are tombstoned with the next checkpoint, and compaction
 *   (cleanup.policy=compact) removes them. A restore reads about one to two times the
 *   store's bytes, in records of up to 256 KiB, instead of one record per word.
 * - word records of the first format (written by Tally before blocks): key = the word's
 *   bytes (UTF-8, never empty, never containing NUL); value = its total count as ASCII
 *   decimal digits ("42"). Still read; the first checkpoint after a restore that found
 *   them writes a base, and the next one tombstones every word key of that base.
 *   Counts only grow, so a restore keeps the largest count of a word over all records.
 * - an offset marker: key = one NUL byte followed by the input topic's name (a word never
 *   contains NUL, so the two kinds of keys cannot collide); value = ASCII decimal offset of
 *   the next record of input partition (topic, p) not yet reflected in the counts (the
 *   offset a consumer would commit); header `tally.kind` = `offset`. Markers are written
 *   after the blocks of the same checkpoint, in the same partition, so log order says
 *   which counts a marker covers.
 * - extension records (the windows', tally-window-changelog.h): key = NUL and a byte below
 *   0x10.
 *
 * A restore takes only what markers cover: word records after the last marker (a
 * checkpoint cut short, a transaction read in part) are left out. It keeps each word's
 * largest count and each topic's largest marker: both only grow, so a late write of an
 * older state (a member that lost its partitions) changes nothing.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-changelog-restore.h"
#include "tally-counts.h"
#include "tally-snapshot.h"

G_BEGIN_DECLS

/**
 * TALLY_CHECKPOINT_ERROR:
 *
 * Error domain of the changelog. Errors in this domain are from #TallyCheckpointError.
 */
#define TALLY_CHECKPOINT_ERROR (tally_checkpoint_error_quark ())

/**
 * TallyCheckpointError:
 * @TALLY_CHECKPOINT_ERROR_CONFIG: librdkafka refused a property or could not create a
 *   client (the message is librdkafka's).
 * @TALLY_CHECKPOINT_ERROR_TOPIC: the changelog topic could not be described or created,
 *   or has fewer partitions than the input.
 * @TALLY_CHECKPOINT_ERROR_PRODUCE: a changelog record could not be produced or its
 *   delivery failed; nothing after it may be considered checkpointed.
 * @TALLY_CHECKPOINT_ERROR_TIMEOUT: the broker did not acknowledge (or answer
 *   InitProducerId), or a restore did not reach the high watermark, in the time allowed.
 * @TALLY_CHECKPOINT_ERROR_RESTORE: a changelog partition could not be read back.
 * @TALLY_CHECKPOINT_ERROR_TRANSACTIONS: the broker cannot do transactions
 *   (InitProducerId failed); the message says what to set instead.
 * @TALLY_CHECKPOINT_ERROR_FENCED: the transaction was aborted because this instance may no
 *   longer write: its consumer group generation is old (KIP-447: ILLEGAL_GENERATION,
 *   UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) or another producer took over its
 *   transactional.id. Nothing of it is visible to read_committed readers.
 * @TALLY_CHECKPOINT_ERROR_FOREIGN: a restored partition holds another consumer group's
 *   counts (its owner records, tally_checkpoint_set_owner()); nothing of it was taken.
 *
 * Errors of the changelog.
 */
typedef enum
{
  TALLY_CHECKPOINT_ERROR_CONFIG,
  TALLY_CHECKPOINT_ERROR_TOPIC,
  TALLY_CHECKPOINT_ERROR_PRODUCE,
  TALLY_CHECKPOINT_ERROR_TIMEOUT,
  TALLY_CHECKPOINT_ERROR_RESTORE,
  TALLY_CHECKPOINT_ERROR_TRANSACTIONS,
  TALLY_CHECKPOINT_ERROR_FENCED,
  TALLY_CHECKPOINT_ERROR_FOREIGN,
} TallyCheckpointError;

GQuark tally_checkpoint_error_quark (void);

typedef struct _TallyCheckpoint TallyCheckpoint;

/**
 * tally_checkpoint_new:
 * @conf: (transfer none): client properties (bootstrap.servers, security, any `[kafka]`
 *   property); duplicated twice, for the changelog producer and the restore consumer
 * @topic: (not nullable): the changelog topic's name
 * @transactional_id: (nullable): the producer's `transactional.id` for exactly-once
 *   checkpoints (unique to this instance while it lives); %NULL for at-least-once
 * @timeout_ms: with @transactional_id, the longest wait for InitProducerId, in ms
 * @error: return location for %TALLY_CHECKPOINT_ERROR_CONFIG,
 *   %TALLY_CHECKPOINT_ERROR_TRANSACTIONS (the broker refused them) or
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT (no answer within @timeout_ms)
 *
 * Creates the changelog's idempotent producer (enable.idempotence=true, so records of one
 * partition keep their order through retries) and, lazily, a consumer outside any consumer
 * group for restores, which reads with isolation.level=read_committed. With
 * @transactional_id the producer is transactional (KIP-98) and initialised here
 * (rd_kafka_init_transactions(), which blocks); then every write must sit between
 * tally_checkpoint_begin() and tally_checkpoint_commit(). Any thread; the checkpoint is
 * then used from one thread at a time (the source actor's).
 *
 * Returns: (transfer full) (nullable): the checkpoint, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyCheckpoint *tally_checkpoint_new (const rd_kafka_conf_t *conf, const char *topic,
                                       const char *transactional_id, int timeout_ms,
                                       GError **error);

/**
 * tally_checkpoint_is_transactional:
 * @checkpoint: a checkpoint
 *
 * Returns: %TRUE when checkpoints are Kafka transactions (exactly once)
 */
gboolean tally_checkpoint_is_transactional (TallyCheckpoint *checkpoint);

/**
 * tally_checkpoint_begin:
 * @checkpoint: a transactional checkpoint
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE,
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT or %TALLY_CHECKPOINT_ERROR_TRANSACTIONS
 *
 * Begins a transaction (rd_kafka_begin_transaction()). A producer that replaced a failed
 * one (after an abort that timed out, a fatal error) has its transactions initialised
 * first (rd_kafka_init_transactions(), blocking up to tally_checkpoint_set_timeout()'s
 * timeout): while the broker cannot be reached this fails with
 * %TALLY_CHECKPOINT_ERROR_TIMEOUT, nothing is written, and the next call tries again, so
 * a broker outage of any length costs checkpoints, never the process. Checkpoint's thread.
 *
 * Returns: %TRUE when the transaction is open
 */
gboolean tally_checkpoint_begin (TallyCheckpoint *checkpoint, GError **error);

/**
 * tally_checkpoint_commit:
 * @checkpoint: a transactional checkpoint with an open transaction
 * @offsets: (transfer none): the input offsets the transaction's counts cover (the next
 *   offset of each input topic-partition, Kafka commit semantics)
 * @group_metadata: (transfer none): the input consumer's group metadata
 *   (rd_kafka_consumer_group_metadata()), which lets the group coordinator refuse a
 *   member of an old generation (KIP-447)
 * @timeout_ms: the longest wait, in milliseconds
 * @error: return location for %TALLY_CHECKPOINT_ERROR_FENCED,
 *   %TALLY_CHECKPOINT_ERROR_PRODUCE or %TALLY_CHECKPOINT_ERROR_TIMEOUT
 *
 * Adds @offsets to the transaction (rd_kafka_send_offsets_to_transaction()) and commits it:
 * the changelog records written since tally_checkpoint_begin() and the consumer group's
 * offsets become visible together, or not at all. On failure the transaction is aborted
 * (a producer that failed fatally is replaced) and nothing of it is visible to
 * read_committed readers; write the same changes again in a later transaction.
 * Checkpoint's thread; blocks.
 *
 * Returns: %TRUE when committed
 */
gboolean tally_checkpoint_commit (TallyCheckpoint *checkpoint,
                                  const rd_kafka_topic_partition_list_t *offsets,
                                  const rd_kafka_consumer_group_metadata_t *group_metadata,
                                  int timeout_ms, GError **error);

/**
 * tally_checkpoint_abort:
 * @checkpoint: a transactional checkpoint
 *
 * Aborts the open transaction, if any (after a failed tally_checkpoint_write()).
 * Checkpoint's thread; blocks for at most 10 s.
 */
void tally_checkpoint_abort (TallyCheckpoint *checkpoint);

/**
 * tally_checkpoint_free:
 * @checkpoint: (transfer full) (nullable): a checkpoint
 *
 * Flushes the producer for at most 10 seconds (10000 ms) and destroys both clients.
 */
void tally_checkpoint_free (TallyCheckpoint *checkpoint);

/**
 * tally_checkpoint_get_topic:
 * @checkpoint: a checkpoint
 *
 * Returns: (transfer none): the changelog topic's name
 */
const char *tally_checkpoint_get_topic (TallyCheckpoint *checkpoint);

/**
 * TALLY_CHECKPOINT_TOPIC_CONFIGS:
 *
 * The topic configs a changelog topic is created with, as name, value pairs ending in
 * %NULL, for an array initializer: cleanup.policy=compact (the broker keeps the latest
 * record of each key), and segment.bytes=67108864 (64 MiB) instead of the broker's 1 GiB,
 * because the broker never compacts the active segment: a restore reads the whole of it,
 * superseded blocks included, so its size bounds what compaction leaves for a restore.
 * A topic that exists already keeps its own configs.
 */
#define TALLY_CHECKPOINT_TOPIC_CONFIGS                                                             \
  "cleanup.policy", "compact", "segment.bytes", "67108864", NULL

/**
 * tally_checkpoint_ensure_topic:
 * @checkpoint: a checkpoint
 * @n_partitions: the number of partitions the input has (the changelog needs as many)
 * @timeout_ms: the longest wait for the broker, in milliseconds
 * @error: return location for %TALLY_CHECKPOINT_ERROR_TOPIC or
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT
 *
 * Creates the changelog topic with the Admin API (KIP-4 CreateTopics) when it is missing:
 * @n_partitions partitions, the configs of %TALLY_CHECKPOINT_TOPIC_CONFIGS, replication
 * factor the broker's default; then waits until every partition has a leader
 * (tally_topics_ensure(), which also says what happens when the broker forbids creation). A topic
 * that exists already with fewer than @n_partitions partitions is grown to @n_partitions
 * (CreatePartitions, KIP-195): partition p keeps store p's records, new partitions are appended for
 * input partitions that appeared (a topic matched by a regex, or given more partitions).
 * Checkpoint's thread; blocks for at most about @timeout_ms.
 *
 * Returns: %TRUE when the topic exists with enough partitions, each with a leader
 */
gboolean tally_checkpoint_ensure_topic (TallyCheckpoint *checkpoint, int n_partitions,
                                        int timeout_ms, GError **error);

/**
 * tally_checkpoint_write:
 * @checkpoint: a checkpoint
 * @partition: the store, which is the input partition and the changelog partition
 * @changes: (nullable): total counts of the words of store @partition that changed since
 *   its last checkpoint; %NULL or empty when none did
 * @offsets: (nullable) (element-type utf8 gint64): input topic name -> next offset of
 *   input partition (topic, @partition) that @changes reflect; %NULL writes no marker
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Queues the tombstones of blocks a base made useless, then @changes as delta blocks and
 * one offset marker per entry of @offsets to changelog partition @partition (the format
 * is in this header's top comment). Nothing is acknowledged yet: call
 * tally_checkpoint_flush() or tally_checkpoint_commit(). Waits (serving delivery reports)
 * while the producer's queue is full. Checkpoint's thread.
 *
 * Returns: %TRUE if every record was queued
 */
gboolean tally_checkpoint_write (TallyCheckpoint *checkpoint, gint32 partition,
                                 TallyCounts *changes, GHashTable *offsets, GError **error);

/**
 * tally_checkpoint_wants_base:
 * @checkpoint: a checkpoint
 * @partition: the store / changelog partition
 *
 * Whether this checkpoint of store @partition should be a base
 * (tally_checkpoint_write_base()) rather than deltas: its deltas since the last base hold
 * at least as many bytes as that base (and 1 MiB), or number 4096, or the partition still
 * has word records of the first format. Checkpoint's thread.
 *
 * Returns: %TRUE to write a base
 */
gboolean tally_checkpoint_wants_base (TallyCheckpoint *checkpoint, gint32 partition);

/**
 * tally_checkpoint_write_base:
 * @checkpoint: a checkpoint
 * @partition: the store / changelog partition
 * @all: (transfer none): every word of store @partition with its total count, at least
 *   the counts the offsets of @offsets reflect (held until its tombstones are written
 *   when the partition has word records of the first format)
 * @offsets: (nullable) (element-type utf8 gint64): as for tally_checkpoint_write()
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Like tally_checkpoint_write(), with a new base of @all instead of deltas. Once it is
 * acknowledged (flush or commit), the partition's earlier blocks are tombstoned with its
 * next write. Checkpoint's thread.
 *
 * Returns: %TRUE if every record was queued
 */
gboolean tally_checkpoint_write_base (TallyCheckpoint *checkpoint, gint32 partition,
                                      TallyCounts *all, GHashTable *offsets, GError **error);

/**
 * tally_checkpoint_set_block_sizes:
 * @checkpoint: a checkpoint
 * @block_bytes: the most bytes of a block's value (TALLY_CHANGELOG_BLOCK_BYTES by default)
 * @min_base_bytes: the fewest bytes of deltas that call for a base (1 MiB by default)
 *
 * Changes the block sizes, for tests that want many blocks and bases from few words.
 */
void tally_checkpoint_set_block_sizes (TallyCheckpoint *checkpoint, gsize block_bytes,
                                       guint64 min_base_bytes);

/**
 * tally_checkpoint_write_record:
 * @checkpoint: a checkpoint
 * @partition: the store / changelog partition
 * @key: (array length=key_len): an *extension* key: a NUL byte, then a byte below 0x20
 *   (never a word, never an offset marker, whose second byte starts a topic name); the
 *   windows' records are described in docs/running.md
 * @key_len: its length, at least 2
 * @value: (nullable): the value, NUL-terminated text; %NULL writes a tombstone
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Queues one more record of the current checkpoint (in its transaction when exactly
 * once), as tally_checkpoint_write() does. Checkpoint's thread.
 *
 * Returns: %TRUE if queued
 */
gboolean tally_checkpoint_write_record (TallyCheckpoint *checkpoint, gint32 partition,
                                        const void *key, gsize key_len, const char *value,
                                        GError **error);

/**
 * tally_checkpoint_write_snapshot:
 * @checkpoint: a transactional checkpoint, between tally_checkpoint_begin() and commit
 * @topic: the output topic
 * @snapshot: the snapshot (tally-snapshot.h)
 * @max_record_bytes: the largest part ([output] max_record_bytes)
 * @error: %TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE or %TALLY_CHECKPOINT_ERROR_PRODUCE
 *
 * Queues the parts of @snapshot to @topic in the checkpoint's transaction, with the record
 * key and headers the publisher gives them: the snapshot becomes visible to read_committed
 * readers if and only if the checkpoint commits (KIP-98 transactions span topics). This
 * is how a closed window's final counts are published exactly once ([windows] publish).
 * Checkpoint's thread.
 *
 * Returns: %TRUE if every part was queued
 */
gboolean tally_checkpoint_write_snapshot (TallyCheckpoint *checkpoint, const char *topic,
                                          const TallySnapshot *snapshot, gsize max_record_bytes,
                                          GError **error);

/**
 * tally_checkpoint_set_timeout:
 * @checkpoint: a checkpoint
 * @timeout_ms: milliseconds, more than 0 (10000 until set)
 *
 * The longest wait of tally_checkpoint_abort() (rd_kafka_abort_transaction()) and of the
 * initialisation of a replaced producer's transactions in tally_checkpoint_begin(): with
 * the timeouts the caller gives commit and flush, it bounds how long a checkpoint holds
 * the caller's thread while the broker does not answer. Checkpoint's thread.
 */
void tally_checkpoint_set_timeout (TallyCheckpoint *checkpoint, int timeout_ms);

/**
 * tally_checkpoint_set_owner:
 * @checkpoint: a checkpoint, before its first write or restore
 * @group: (nullable): the consumer group whose counts it keeps (`[input] group_id`);
 *   %NULL writes and checks no owner
 *
 * Names whose counts the changelog holds. Each changelog partition then gets an owner
 * record (key NUL + %TALLY_CHANGELOG_OWNER_KEY, value @group) before the offset markers
 * of its first checkpoint in this process, and a restore that finds another group's
 * owner record takes nothing: tally_checkpoint_restore_many() fails with
 * %TALLY_CHECKPOINT_ERROR_FOREIGN and reports the error as fatal
 * (tally_kafka_errors_fatal(): `tally run` exits 78), because the topic is shared by two
 * deployments whose counts would otherwise mix. A partition written before owner records
 * existed has none and is taken as before. Checkpoint's thread.
 */
void tally_checkpoint_set_owner (TallyCheckpoint *checkpoint, const char *group);

/**
 * TallyCheckpointExtensionFunc:
 * @partition: the changelog partition being restored
 * @key: (array length=key_len): the record's key (a NUL byte, then a byte below 0x20)
 * @key_len: its length
 * @value: (nullable) (array length=value_len): its value; %NULL for a tombstone
 * @value_len: its length
 * @user_data: the data given to tally_checkpoint_set_extension_func()
 *
 * Sees each extension record during tally_checkpoint_restore(), in changelog order.
 */
typedef void (*TallyCheckpointExtensionFunc) (gint32 partition, const void *key, gsize key_len,
                                              const void *value, gsize value_len,
                                              gpointer user_data);

/**
 * tally_checkpoint_set_extension_func:
 * @checkpoint: a checkpoint
 * @func: (nullable): called with each extension record read by a restore; %NULL skips them
 * @user_data: data for @func
 *
 * Extension records (see tally_checkpoint_write_record()) are skipped by a restore unless
 * a function takes them. Checkpoint's thread.
 */
void tally_checkpoint_set_extension_func (TallyCheckpoint *checkpoint,
                                          TallyCheckpointExtensionFunc func, gpointer user_data);

/**
 * tally_checkpoint_flush:
 * @checkpoint: a checkpoint
 * @timeout_ms: the longest wait for acknowledgements, in milliseconds
 * @error: return location for %TALLY_CHECKPOINT_ERROR_PRODUCE or
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT
 *
 * Waits until every record written since the last flush has been acknowledged by the
 * broker (acks=all, as enable.idempotence implies). Only after it returns %TRUE may the
 * input offsets of the markers be stored for the consumer group. Checkpoint's thread.
 *
 * Returns: %TRUE if all were delivered
 */
gboolean tally_checkpoint_flush (TallyCheckpoint *checkpoint, int timeout_ms, GError **error);

/**
 * tally_checkpoint_restore:
 * @checkpoint: a checkpoint
 * @partition: the store / changelog partition to read
 * @timeout_ms: the longest time to read it, in milliseconds
 * @counts: (out) (transfer full): the store's counts: the largest value of every word key
 *   that an offset marker covers
 * @offsets: (out) (transfer full) (element-type utf8 gint64): the largest offset marker of
 *   every input topic found, possibly empty
 * @error: return location for %TALLY_CHECKPOINT_ERROR_RESTORE or
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT
 *
 * Reads changelog partition @partition from its beginning to its end when the call starts
 * (the high watermark, or with read_committed the last stable offset), never past it. A
 * missing topic or an empty partition restores nothing (empty counts, no offsets). Records
 * that are not in the format above are logged and skipped.
 * Checkpoint's thread; blocks.
 *
 * Returns: %TRUE on success
 */
gboolean tally_checkpoint_restore (TallyCheckpoint *checkpoint, gint32 partition, int timeout_ms,
                                   TallyCounts **counts, GHashTable **offsets, GError **error);

/**
 * tally_checkpoint_restore_many:
 * @checkpoint: a checkpoint
 * @stores: (array length=n_stores): the stores to read: set each @partition; the
 *   watermarks and outputs are filled in (free them with tally_restored_store_clear())
 * @n_stores: how many
 * @timeout_ms: the longest time to read them all, in milliseconds
 * @error: return location for %TALLY_CHECKPOINT_ERROR_RESTORE or
 *   %TALLY_CHECKPOINT_ERROR_TIMEOUT
 *
 * Restores several stores at once: the changelog partitions are read concurrently by the
 * one restore consumer (tally-changelog-restore.h), each from its beginning to the high
 * watermark it has when the call starts, as tally_checkpoint_restore() does for one.
 * Checkpoint's thread; blocks.
 *
 * Returns: %TRUE when every store was read
 */
gboolean tally_checkpoint_restore_many (TallyCheckpoint *checkpoint, TallyRestoredStore *stores,
                                        guint n_stores, int timeout_ms, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyCheckpoint, tally_checkpoint_free)

G_END_DECLS
