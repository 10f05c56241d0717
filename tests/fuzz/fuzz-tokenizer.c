/* fuzz-tokenizer.c — libFuzzer target: the tokenizer in every mode, with its properties.
 *
 * The first two bytes of an input choose the options (mode, nfkc, long_words,
 * max_word_bytes) and where to cut the text; the rest is the text, fed as one chunk and
 * then as two chunks cut just after a line feed (docs/tokenizer.md: a chunk ends just after
 * a separator). Every word must be non-empty, valid UTF-8, at most max_word_bytes long and
 * free of separators (control characters in every mode, whitespace in the unicode and
 * whitespace modes, leading or trailing spaces in record mode); both feeds must give the
 * same words in the same order. A broken property aborts, which libFuzzer reports.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct
{
  const TallyTokenizerOptions *options;
  GString *words; /* each word followed by a NUL byte */
} Collect;

static void
fail (const char *what, const char *word, gsize len)
{
  fprintf (stderr, "tokenizer property broken: %s (word of %zu bytes)\n", what, (size_t)len);
  if (word != NULL)
    for (gsize i = 0; i < len; i++)
      fprintf (stderr, "%02x%s", (guint)(guchar)word[i], i + 1 < len ? " " : "\n");
  abort ();
}

static void
check_word (const char *word, gsize len, gpointer user_data)
{
  Collect *c = user_data;
  TallyTokenizerMode mode = c->options->mode;

  if (len == 0)
    fail ("empty word", word, len);
  if (len > c->options->max_word_bytes)
    fail ("word longer than max_word_bytes", word, len);
  if (!g_utf8_validate_len (word, len, NULL))
    fail ("word is not valid UTF-8", word, len);
  for (const char *p = word; p < word + len; p = g_utf8_next_char (p))
    {
      gunichar ch = g_utf8_get_char (p);

      if (ch == 0 || g_unichar_iscntrl (ch))
        fail ("control character inside a word", word, len);
      if (mode != TALLY_TOKENIZER_RECORD && ch < 0x80 && g_ascii_isspace ((char)ch))
        fail ("ASCII whitespace inside a word", word, len);
      if (mode == TALLY_TOKENIZER_UNICODE && g_unichar_isspace (ch))
        fail ("whitespace inside a unicode-mode word", word, len);
    }
  if (mode == TALLY_TOKENIZER_RECORD && (word[0] == ' ' || word[len - 1] == ' '))
    fail ("record-mode word not trimmed", word, len);
  g_string_append_len (c->words, word, (gssize)len);
  g_string_append_c (c->words, '\0');
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const guint max_bytes[] = { 4, 5, 7, 16, 256, 1024 };
  TallyTokenizerOptions options;
  g_autoptr (TallyTokenizer) whole = NULL;
  g_autoptr (TallyTokenizer) split = NULL;
  g_autoptr (GString) once = g_string_new (NULL);
  g_autoptr (GString) twice = g_string_new (NULL);
  Collect c1 = { &options, once }, c2 = { &options, twice };
  const char *text;
  gsize len, cut = 0, n_lf = 0, which;

  if (size < 2)
    return 0;
  tally_tokenizer_options_init (&options);
  options.mode = (TallyTokenizerMode)(data[0] % 3);
  options.nfkc = (data[0] >> 2) & 1;
  options.long_words
      = (data[0] >> 3) & 1 ? TALLY_TOKENIZER_LONG_DROP : TALLY_TOKENIZER_LONG_TRUNCATE;
  options.max_word_bytes = max_bytes[(data[0] >> 4) % G_N_ELEMENTS (max_bytes)];
  text = (const char *)data + 2;
  len = size - 2;

  whole = tally_tokenizer_new (&options);
  split = tally_tokenizer_new (&options);
  tally_tokenizer_feed (whole, text, len, check_word, &c1);

  /* Cut just after the (data[1] mod (n+1))-th line feed; 0 cuts before everything. */
  for (gsize i = 0; i < len; i++)
    n_lf += text[i] == '\n';
  which = data[1] % (n_lf + 1);
  for (gsize i = 0; i < len && which > 0; i++)
    if (text[i] == '\n' && --which == 0)
      cut = i + 1;
  tally_tokenizer_feed (split, text, cut, check_word, &c2);
  tally_tokenizer_feed (split, text + cut, len - cut, check_word, &c2);

  if (once->len != twice->len || memcmp (once->str, twice->str, once->len) != 0)
    {
      fprintf (stderr, "tokenizer property broken: cutting after byte %zu changes the words\n",
               (size_t)cut);
      abort ();
    }
  return 0;
}
