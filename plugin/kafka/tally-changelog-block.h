/* tally-changelog-block.h — many word counts in one changelog record.
 *
 * A record per word made a restore of five million words read five million records, and
 * librdkafka's cost per record (not the bytes: about 20 per word) was the whole restore
 * time. A block packs the counts of a checkpoint, or a slice of a whole store, into one
 * record of up to TALLY_CHANGELOG_BLOCK_BYTES, so a restore reads a few hundred records.
 *
 * Key: a NUL byte, TALLY_CHANGELOG_BLOCK_KEY (0x10), 8 bytes chosen at random by each
 * writer, then an 8-byte big-endian sequence number: every block has its own key, and
 * compaction never replaces one block by another. A block stops being needed only when a
 * base written after it (every word of the store) was acknowledged; its writer then
 * tombstones it (tally-checkpoint.c says when).
 *
 * Value: byte 0 = TALLY_CHANGELOG_BLOCK_VERSION (1); byte 1 = 'D' (a delta: the words
 * that changed in one checkpoint) or 'B' (a chunk of a base); a base chunk then has the
 * base's id (8 bytes, big-endian: the sequence number of its first chunk), the chunk's
 * index and the number of chunks (4 bytes each, big-endian). Then, to the end, entries:
 * the word's length in bytes (LEB128), the word (UTF-8, no NUL, never empty), its count
 * (LEB128, at least 1). Counts only grow, so a restore keeps the largest count of a word
 * over every block and record it reads, in any order.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-counts.h"

G_BEGIN_DECLS

/**
 * TALLY_CHANGELOG_BLOCK_KEY:
 *
 * The byte after the NUL that starts a block's key.
 */
#define TALLY_CHANGELOG_BLOCK_KEY '\x10'

/**
 * TALLY_CHANGELOG_OWNER_KEY:
 *
 * The byte after the NUL of an owner record's key (2 bytes, NUL and this): its value is
 * the consumer group (`[input] group_id`) whose counts the partition holds, written
 * before the offset markers of a partition's first checkpoint in each process. Windows'
 * records use the bytes 0x01 to 0x03 (tally-window-changelog.c).
 */
#define TALLY_CHANGELOG_OWNER_KEY '\x04'

/**
 * TALLY_CHANGELOG_BLOCK_KEY_LEN:
 *
 * The length of a block's key in bytes: NUL, the kind byte, 8 bytes of writer, 8 of
 * sequence.
 */
#define TALLY_CHANGELOG_BLOCK_KEY_LEN 18

/**
 * TALLY_CHANGELOG_BLOCK_VERSION:
 *
 * The first byte of a block's value.
 */
#define TALLY_CHANGELOG_BLOCK_VERSION 1

/**
 * TALLY_CHANGELOG_BLOCK_BYTES:
 *
 * The most bytes a block's value holds (256 KiB), well under the broker's default
 * max.message.bytes (1 MiB) and librdkafka's message.max.bytes.
 */
#define TALLY_CHANGELOG_BLOCK_BYTES (256 * 1024)

/**
 * TallyChangelogBlockInfo:
 * @base: %TRUE for a chunk of a base, %FALSE for a delta
 * @base_id: a base chunk's base id (the sequence number of its first chunk); 0 for a delta
 * @chunk: a base chunk's index, from 0
 * @n_chunks: the number of chunks of its base
 * @n_words: the entries of the block
 *
 * What the header of a block's value says, and how many words it held.
 */
typedef struct
{
  gboolean base;
  guint64 base_id;
  guint32 chunk;
  guint32 n_chunks;
  gsize n_words;
} TallyChangelogBlockInfo;

/**
 * tally_changelog_block_key:
 * @writer: the writer's 8 random bytes
 * @sequence: the block's sequence number for this writer
 * @key: (out caller-allocates) (array fixed-size=18): where the key is written
 *
 * Writes a block's key, TALLY_CHANGELOG_BLOCK_KEY_LEN bytes.
 */
void tally_changelog_block_key (guint64 writer, guint64 sequence,
                                guint8 key[TALLY_CHANGELOG_BLOCK_KEY_LEN]);

/**
 * tally_changelog_block_is_key:
 * @key: (array length=key_len) (nullable): a changelog record's key
 * @key_len: its length in bytes
 *
 * Returns: whether @key is a block's key (NUL, 0x10, and 16 more bytes)
 */
gboolean tally_changelog_block_is_key (const void *key, gsize key_len);

/**
 * tally_changelog_block_key_sequence:
 * @key: (array fixed-size=18): a block's key (tally_changelog_block_is_key())
 *
 * Returns: the sequence number in @key
 */
guint64 tally_changelog_block_key_sequence (const void *key);

/**
 * tally_changelog_block_encode:
 * @entries: (array length=n_entries): the words and counts to write
 * @n_entries: how many
 * @base_id: 0 for deltas; otherwise the values are the chunks of base @base_id, and their
 *   headers carry their index and number
 * @max_bytes: the most bytes of one value (TALLY_CHANGELOG_BLOCK_BYTES outside tests); a
 *   single entry longer than that still gets a value of its own
 *
 * Packs @entries, in their order, into as few values as @max_bytes allows. No entries give
 * no delta, and one base chunk with no words (a store whose every word was counted 0
 * times cannot exist, but an empty base still replaces what came before it).
 *
 * Returns: (transfer full) (element-type GBytes): the values, in order
 */
GPtrArray *tally_changelog_block_encode (const TallyWordCount *entries, gsize n_entries,
                                         guint64 base_id, gsize max_bytes);

/**
 * tally_changelog_block_decode:
 * @value: (array length=len): a block's value
 * @len: its length in bytes
 * @into: every word of the block is set there to the larger of its count and the one
 *   already there (tally_counts_builder_set_max())
 * @info: (out): the block's header and number of words
 *
 * Reads a block. A value with another version or kind, a truncated entry, an empty word,
 * a word with NUL or bytes that are not UTF-8, or a count of 0 or above %G_MAXINT64 makes
 * it stop there: the words before it were taken.
 *
 * Returns: %TRUE if the whole value was read
 */
gboolean tally_changelog_block_decode (const void *value, gsize len, TallyCountsBuilder *into,
                                       TallyChangelogBlockInfo *info);

/**
 * tally_changelog_block_read_info:
 * @value: (array length=len): a block's value
 * @len: its length in bytes
 * @info: (out): the block's header; @info->n_words is 0
 *
 * Reads a block's header only.
 *
 * Returns: %TRUE if @value starts with a header of this version
 */
gboolean tally_changelog_block_read_info (const void *value, gsize len,
                                          TallyChangelogBlockInfo *info);

G_END_DECLS
