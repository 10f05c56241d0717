/* tally-word-hash.c — the per-process seed of tally_word_hash().
 *
 * A fixed seed lets whoever writes records choose words that all collide in a shard's
 * table (each lookup then walks one long probe sequence) or all go to one shard. The seed
 * is drawn once, when libtally is loaded and before main() runs, so the inline hash reads
 * a plain global with no check per word and no thread can see it change. Nothing Tally
 * prints or publishes depends on it (counts are sorted by word or by count then word).
 * TALLY_HASH_SEED=N (decimal, or hexadecimal with 0x) fixes it, to reproduce a run.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-word-hash.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

guint64 tally_word_hash_seed;
guint64 tally_word_hash_key;

void
tally_word_hash_set_seed (guint64 seed)
{
  tally_word_hash_seed = seed;
  tally_word_hash_key = seed ^ tally_wy_mix (seed ^ TALLY_WY_SECRET0, TALLY_WY_SECRET1);
}

/* 64 bits from the kernel's random pool; from GLib's generator (itself seeded from
 * /dev/urandom) if getrandom(2) fails, as on kernels before 3.17. */
static guint64
random_seed (void)
{
  guint64 seed = 0;
  gssize n;

  do
    n = getrandom (&seed, sizeof seed, GRND_NONBLOCK);
  while (n < 0 && errno == EINTR);
  if (n != (gssize)sizeof seed)
    seed = ((guint64)g_random_int () << 32) | g_random_int ();
  return seed;
}

__attribute__ ((constructor)) static void
word_hash_seed_init (void)
{
  const char *fixed = getenv ("TALLY_HASH_SEED");
  guint64 seed;

  if (fixed != NULL && fixed[0] == '0' && (fixed[1] == 'x' || fixed[1] == 'X')
      && g_ascii_string_to_unsigned (fixed + 2, 16, 0, G_MAXUINT64, &seed, NULL))
    tally_word_hash_set_seed (seed);
  else if (fixed != NULL && g_ascii_string_to_unsigned (fixed, 10, 0, G_MAXUINT64, &seed, NULL))
    tally_word_hash_set_seed (seed);
  else
    tally_word_hash_set_seed (random_seed ());
}
