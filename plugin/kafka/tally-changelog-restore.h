/* tally-changelog-restore.h — several changelog partitions read back at once.
 *
 * A restore after a rebalance or a kill -9 must get every newly assigned store back before
 * its input is consumed, and the group waits for it (max.poll.interval.ms). Reading the
 * changelog partitions one after another made the wait the sum of the reads; here one
 * restore consumer is assigned all of them, so the broker serves them in the same fetches
 * and the wait is the time to read the bytes. Each store is built directly: a word's
 * records carry its count, counts only grow, so the last value read is also the largest
 * and one table entry per word is kept (the largest), never one per record. Only what an
 * offset marker covers is taken, and nothing at or past the end (tally-changelog-restore.c
 * says why).
 *
 * The record format is tally-checkpoint.h's: blocks of words (tally-changelog-block.h),
 * word records of the first format (key = word, value = decimal count), and markers (key =
 * NUL + input topic, value = decimal offset). The caller owns the consumer and
 * its configuration (isolation.level=read_committed, enable.partition.eof=true).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-changelog-block.h"
#include "tally-counts.h"

G_BEGIN_DECLS

/**
 * TallyChangelogExtensionFunc:
 * @partition: the changelog partition being restored
 * @key: (array length=key_len): the record's key (a NUL byte, then a byte below 0x20)
 * @key_len: its length
 * @value: (nullable) (array length=value_len): its value; %NULL for a tombstone
 * @value_len: its length
 * @user_data: the data given with the function
 *
 * Sees each extension record (the windows' records, tally-window-changelog.h) during a
 * restore, in changelog order per partition; such records are neither words nor offset
 * markers.
 */
typedef void (*TallyChangelogExtensionFunc) (gint32 partition, const void *key, gsize key_len,
                                             const void *value, gsize value_len,
                                             gpointer user_data);

/**
 * TallyRestoredStore:
 * @partition: the changelog partition (= store id) to read; set by the caller
 * @low: its low watermark (first offset); set by the caller
 * @high: its end when the restore started, as the consumer's isolation level sees it (the
 *   last stable offset with read_committed): the restore reads up to here and takes
 *   nothing at or past it; set by the caller. @high <= @low restores nothing
 * @counts: (transfer full): out: the store's counts, the largest value of every word key
 *   that an offset marker covers (word records after the last marker are left out)
 * @offsets: (transfer full) (element-type utf8 gint64): out: the largest offset marker of
 *   every input topic found, possibly empty
 * @records: out: records read, those left out included
 * @blocks: (transfer full) (element-type GBytes TallyChangelogBlockRef): out: the blocks
 *   (tally-changelog-block.h) read before the end and not tombstoned, by key, whether a
 *   marker covered them or not (they are in the log either way)
 * @word_records: out: word records of the first format read (key = word, value = decimal)
 * @first_format: out: whether word records of the first format were read that no
 *   tombstone of a word key came after (the changelog was not moved to blocks yet)
 * @owners: (transfer full) (element-type utf8) (nullable): out: the consumer groups named
 *   by the partition's owner records (%TALLY_CHANGELOG_OWNER_KEY), each once, in the
 *   order read; %NULL when it has none (written before owner records existed)
 *
 * One changelog partition to restore, and what was read from it. Plain struct; free the
 * outputs with tally_restored_store_clear().
 */
typedef struct
{
  gint32 partition;
  gint64 low;
  gint64 high;
  TallyCounts *counts;
  GHashTable *offsets;
  guint64 records;
  GHashTable *blocks;
  guint64 word_records;
  gboolean first_format;
  GPtrArray *owners;
} TallyRestoredStore;

/**
 * TallyChangelogBlockRef:
 * @offset: the block's offset in its partition
 * @bytes: the length of its value
 * @info: its header (@info.n_words is 0: the words are not counted here)
 *
 * Where a block of a restored changelog partition is, and what it is.
 */
typedef struct
{
  gint64 offset;
  gsize bytes;
  TallyChangelogBlockInfo info;
} TallyChangelogBlockRef;

/**
 * tally_changelog_restore_read:
 * @consumer: a consumer with no assignment (enable.partition.eof=true); it is assigned
 *   @stores' partitions and unassigned again before this returns
 * @topic: the changelog topic
 * @stores: (array length=n_stores): the partitions and the watermarks to read up to
 * @n_stores: how many
 * @deadline_us: give up at this monotonic time (g_get_monotonic_time(), µs)
 * @extension: (nullable) (scope call): sees the extension records (a NUL byte, then a byte
 *   below 0x20), which are neither words nor offset markers, in order, each once an offset
 *   marker covers it
 * @extension_data: data for @extension
 * @error: return location for a #GIOError: %G_IO_ERROR_TIMED_OUT, or %G_IO_ERROR_FAILED
 *   with librdkafka's text
 *
 * Reads every partition of @stores from its beginning to its @high, concurrently with one
 * assignment, and fills each store's outputs. Records not in the changelog format are
 * logged and skipped. Blocks; the thread that owns @consumer.
 *
 * Returns: %TRUE when every partition was read to its @high
 */
gboolean tally_changelog_restore_read (rd_kafka_t *consumer, const char *topic,
                                       TallyRestoredStore *stores, guint n_stores,
                                       gint64 deadline_us, TallyChangelogExtensionFunc extension,
                                       gpointer extension_data, GError **error);

/**
 * tally_restored_store_clear:
 * @store: a store whose outputs to free (the struct itself is the caller's)
 */
void tally_restored_store_clear (TallyRestoredStore *store);

G_END_DECLS
