/* test-tokenizer-scalar.c — runs test-tokenizer.c against the tokenizer built without its
 * 16-byte SSE2 steps, i.e. the portable character-at-a-time code that other CPUs (arm64)
 * run. This file compiles the tokenizer into the test program; its definitions take
 * precedence over the copy in libtally.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#define TALLY_TOKENIZER_NO_BLOCKS 1
#include "../actors/wordcount/tally-tokenizer.c"
