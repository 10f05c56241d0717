/* tally-word-hash.h — the word hash and the shard choice, shared by every word's path.
 *
 * A word is hashed once on its way to the counts: the sender (a batcher, `tally count`'s
 * workers) hashes it, picks its shard from the high 32 bits of the hash, and sends the hash
 * with the word; the shard's table indexes with the low bits. The aggregator (which keeps
 * only its own words of a restored store), the handle, the batcher and the table all take
 * these two functions from here, so none of them depends on another for them. Both are
 * static inline: they run once per word on the hottest paths.
 *
 * The hash is keyed by a seed drawn once per process (tally-word-hash.c, before main()), so
 * whoever writes records cannot choose words that all collide in a table or all land on
 * one shard. Nothing Tally writes depends on the seed: counts are printed and published in
 * word order. TALLY_HASH_SEED=N (decimal or 0x hex) fixes it, for reproducible runs.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

/* After wyhash final 4 by Wang Yi (public domain), with a per-process seed, read
 * little-endian. */
#define TALLY_WY_SECRET0 G_GUINT64_CONSTANT (0xa0761d6478bd642f)
#define TALLY_WY_SECRET1 G_GUINT64_CONSTANT (0xe7037ed1a0b428db)
#define TALLY_WY_SECRET2 G_GUINT64_CONSTANT (0x8ebc6af09c88c6e3)
#define TALLY_WY_SECRET3 G_GUINT64_CONSTANT (0x589965cc75374cc3)

static inline void
tally_wy_mum (guint64 *a, guint64 *b)
{
  unsigned __int128 r = (unsigned __int128)*a * *b;
  *a = (guint64)r;
  *b = (guint64)(r >> 64);
}

/**
 * tally_word_hash_seed:
 *
 * The seed of tally_word_hash(): 64 random bits from getrandom(2) (or the value of the
 * environment variable TALLY_HASH_SEED), set once when libtally is loaded, before main().
 * Change it only with tally_word_hash_set_seed().
 */
extern guint64 tally_word_hash_seed;

/**
 * tally_word_hash_key:
 *
 * What tally_word_hash() reads: the seed after wyhash's first mixing step
 * (seed ^ mix (seed ^ secret0, secret1)), computed once with the seed so that no hash
 * pays that multiplication (with a fixed seed the compiler folded it).
 */
extern guint64 tally_word_hash_key;

/**
 * tally_word_hash_set_seed:
 * @seed: the new seed; 0 gives the hash of earlier Tally versions (wyhash's seed 0)
 *
 * Replaces the seed of tally_word_hash(). For tests and benchmarks: every hash computed
 * before the call is stale afterwards, so call it only while no table, batcher or
 * aggregator holds hashes, and while no other thread hashes.
 */
void tally_word_hash_set_seed (guint64 seed);

static inline guint64
tally_wy_mix (guint64 a, guint64 b)
{
  tally_wy_mum (&a, &b);
  return a ^ b;
}

static inline guint64
tally_wy_r8 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static inline guint64
tally_wy_r4 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static inline guint64
tally_wy_r3 (const guint8 *p, gsize k)
{
  return (((guint64)p[0]) << 16) | (((guint64)p[k >> 1]) << 8) | p[k - 1];
}

/**
 * tally_word_hash:
 * @word: (array length=len): bytes (need not be NUL-terminated)
 * @len: their number
 *
 * A 64-bit hash of the bytes (a wyhash-style multiply-mix keyed by tally_word_hash_seed):
 * the same for the same bytes within a process, different from one process to the next
 * (unless TALLY_HASH_SEED fixes the seed). Shards use its high 32 bits
 * (tally_word_shard()), tables its low bits. Any thread.
 *
 * Returns: the hash
 */
static inline G_ALWAYS_INLINE guint64
tally_word_hash (const char *word, gsize len)
{
  const guint8 *p = (const guint8 *)word;
  guint64 seed = tally_word_hash_key;
  guint64 a, b;

  if (G_LIKELY (len <= 16))
    {
      if (G_LIKELY (len >= 4))
        {
          a = (tally_wy_r4 (p) << 32) | tally_wy_r4 (p + ((len >> 3) << 2));
          b = (tally_wy_r4 (p + len - 4) << 32) | tally_wy_r4 (p + len - 4 - ((len >> 3) << 2));
        }
      else if (G_LIKELY (len > 0))
        {
          a = tally_wy_r3 (p, len);
          b = 0;
        }
      else
        a = b = 0;
    }
  else
    {
      gsize i = len;
      if (G_UNLIKELY (i > 48))
        {
          guint64 see1 = seed, see2 = seed;
          do
            {
              seed = tally_wy_mix (tally_wy_r8 (p) ^ TALLY_WY_SECRET1, tally_wy_r8 (p + 8) ^ seed);
              see1 = tally_wy_mix (tally_wy_r8 (p + 16) ^ TALLY_WY_SECRET2,
                                   tally_wy_r8 (p + 24) ^ see1);
              see2 = tally_wy_mix (tally_wy_r8 (p + 32) ^ TALLY_WY_SECRET3,
                                   tally_wy_r8 (p + 40) ^ see2);
              p += 48;
              i -= 48;
            }
          while (G_LIKELY (i > 48));
          seed ^= see1 ^ see2;
        }
      while (G_UNLIKELY (i > 16))
        {
          seed = tally_wy_mix (tally_wy_r8 (p) ^ TALLY_WY_SECRET1, tally_wy_r8 (p + 8) ^ seed);
          i -= 16;
          p += 16;
        }
      a = tally_wy_r8 (p + i - 16);
      b = tally_wy_r8 (p + i - 8);
    }
  a ^= TALLY_WY_SECRET1;
  b ^= seed;
  tally_wy_mum (&a, &b);
  return tally_wy_mix (a ^ TALLY_WY_SECRET0 ^ len, b ^ TALLY_WY_SECRET1);
}

/**
 * tally_word_shard:
 * @hash: a value of tally_word_hash()
 * @n_shards: number of shards, at least 1
 *
 * The shard that counts a word of hash @hash: its high 32 bits scaled to @n_shards by
 * multiply-shift (Lemire's fast range reduction), which leaves the low bits, that a
 * shard's table indexes with, independent of the shard. Fixed for a given number of
 * shards within a process. Any thread.
 *
 * Returns: a shard index below @n_shards
 */
static inline guint
tally_word_shard (guint64 hash, guint n_shards)
{
  return (guint)(((hash >> 32) * (guint64)n_shards) >> 32);
}

G_END_DECLS
