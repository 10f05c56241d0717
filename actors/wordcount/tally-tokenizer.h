/* tally-tokenizer.h — splits record values into the words Tally counts.
 *
 * A TallyTokenizer turns one chunk of bytes (a Kafka record value, or a block of a file
 * cut just after a separator) into words and hands each word to a callback. The rules of the three
 * modes (unicode, whitespace, record) are written down in docs/tokenizer.md; in short:
 *
 * - every emitted word is non-empty, valid UTF-8, at most max_word_bytes bytes long and
 *   contains no NUL, no control character (C0, DEL, C1) and no invalid UTF-8;
 * - invalid UTF-8 bytes separate words and are counted in the statistics;
 * - case folding (unicode mode) is Unicode full case folding (CaseFolding.txt, status C and
 *   F), the same in every process locale.
 *
 * A tokenizer owns scratch buffers and statistics, so it belongs to one thread at a time:
 * create one per thread that tokenizes.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * TALLY_TOKENIZER_ERROR:
 *
 * Error domain of the tokenizer. Errors in this domain are from #TallyTokenizerError.
 */
#define TALLY_TOKENIZER_ERROR (tally_tokenizer_error_quark ())

/**
 * TallyTokenizerError:
 * @TALLY_TOKENIZER_ERROR_INVALID_MODE: a mode name is not one of "unicode", "whitespace",
 *   "record".
 * @TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS: a long-word policy name is not one of
 *   "truncate", "drop".
 * @TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES: max_word_bytes is outside
 *   [%TALLY_TOKENIZER_MIN_WORD_BYTES, %TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT].
 *
 * Errors of the tokenizer's option parsing and validation. Tokenizing itself never fails.
 */
typedef enum
{
  TALLY_TOKENIZER_ERROR_INVALID_MODE,
  TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS,
  TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES,
} TallyTokenizerError;

GQuark tally_tokenizer_error_quark (void);

/**
 * TallyTokenizerMode:
 * @TALLY_TOKENIZER_UNICODE: words are maximal runs of Unicode letters, marks and digits,
 *   with apostrophes and hyphens kept between letters; case folded. The default.
 * @TALLY_TOKENIZER_WHITESPACE: words are maximal runs of bytes that are not ASCII
 *   whitespace or control characters; ASCII letters lowercased; punctuation kept (the
 *   "countwords" benchmark definition).
 * @TALLY_TOKENIZER_RECORD: each line of the record (text between control characters),
 *   trimmed of spaces, is one word, case kept.
 *
 * How text is split into words; see docs/tokenizer.md for the exact rules.
 */
typedef enum
{
  TALLY_TOKENIZER_UNICODE,
  TALLY_TOKENIZER_WHITESPACE,
  TALLY_TOKENIZER_RECORD,
} TallyTokenizerMode;

/**
 * TallyTokenizerLongWords:
 * @TALLY_TOKENIZER_LONG_TRUNCATE: a word longer than max_word_bytes is cut to the longest
 *   prefix of at most max_word_bytes bytes that ends on a character boundary. The default.
 * @TALLY_TOKENIZER_LONG_DROP: a word longer than max_word_bytes is not emitted.
 *
 * What happens to a word longer than the maximum. Either way it is counted in
 * #TallyTokenizerStats.
 */
typedef enum
{
  TALLY_TOKENIZER_LONG_TRUNCATE,
  TALLY_TOKENIZER_LONG_DROP,
} TallyTokenizerLongWords;

/** TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES: default longest word, in bytes of UTF-8. */
#define TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES 256
/** TALLY_TOKENIZER_MIN_WORD_BYTES: smallest accepted max_word_bytes (one 4-byte character). */
#define TALLY_TOKENIZER_MIN_WORD_BYTES 4
/** TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT: largest accepted max_word_bytes (1 MiB). */
#define TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT (1024 * 1024)

/**
 * TallyTokenizerOptions:
 * @mode: how to split words.
 * @nfkc: apply Unicode NFKC normalisation (UAX #15) to the text before splitting, in
 *   every mode. Default %FALSE.
 * @max_word_bytes: the longest word emitted, in bytes of UTF-8 (after case folding).
 *   Default %TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES.
 * @long_words: what to do with longer words. Default %TALLY_TOKENIZER_LONG_TRUNCATE.
 *
 * Options of a tokenizer: a plain struct, copied by tally_tokenizer_new(). Initialize it
 * with tally_tokenizer_options_init() and then change fields.
 */
typedef struct
{
  TallyTokenizerMode mode;
  gboolean nfkc;
  guint max_word_bytes;
  TallyTokenizerLongWords long_words;
} TallyTokenizerOptions;

/**
 * TallyTokenizerStats:
 * @bytes: bytes fed.
 * @words: words emitted to the callback.
 * @invalid_bytes: bytes that were not part of valid UTF-8 (each separated words and was
 *   otherwise ignored).
 * @truncated: words longer than max_word_bytes that were emitted truncated.
 * @dropped: words longer than max_word_bytes that were not emitted.
 *
 * Running totals of one tokenizer since it was created or last reset.
 */
typedef struct
{
  guint64 bytes;
  guint64 words;
  guint64 invalid_bytes;
  guint64 truncated;
  guint64 dropped;
} TallyTokenizerStats;

typedef struct _TallyTokenizer TallyTokenizer;

/**
 * TallyWordFunc:
 * @word: the word's bytes: valid UTF-8, NOT NUL-terminated, valid only during the call
 *   (it may point into the fed text or into the tokenizer's scratch buffer)
 * @len: its length in bytes, 1 to max_word_bytes
 * @user_data: the data given to tally_tokenizer_feed()
 *
 * Receives each word, in the order the words appear in the text. Called on the thread
 * that called tally_tokenizer_feed(); it must not feed the same tokenizer.
 */
typedef void (*TallyWordFunc) (const char *word, gsize len, gpointer user_data);

/**
 * tally_tokenizer_options_init:
 * @options: (out caller-allocates): options to fill
 *
 * Sets the defaults: unicode mode, no NFKC, 256-byte words, truncate longer words.
 * Any thread.
 */
void tally_tokenizer_options_init (TallyTokenizerOptions *options);

/**
 * tally_tokenizer_options_validate:
 * @options: options to check
 * @error: return location for a #GError, or %NULL
 *
 * Checks that the fields hold known values and that max_word_bytes is within
 * [%TALLY_TOKENIZER_MIN_WORD_BYTES, %TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT].
 *
 * Returns: %TRUE when valid; otherwise %FALSE with @error set to
 *   %TALLY_TOKENIZER_ERROR_INVALID_MODE, %TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS or
 *   %TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES. Any thread.
 */
gboolean tally_tokenizer_options_validate (const TallyTokenizerOptions *options, GError **error);

/**
 * tally_tokenizer_mode_from_string:
 * @name: "unicode", "whitespace" or "record" (exact, lowercase)
 * @mode: (out): the mode named
 * @error: return location for a #GError, or %NULL
 *
 * Parses a mode name, as written in the `[tokenizer]` group of tally.conf and in
 * `--tokenizer`.
 *
 * Returns: %TRUE on success; %FALSE with %TALLY_TOKENIZER_ERROR_INVALID_MODE (whose message
 *   lists the valid names) otherwise. Any thread.
 */
gboolean tally_tokenizer_mode_from_string (const char *name, TallyTokenizerMode *mode,
                                           GError **error);

/**
 * tally_tokenizer_mode_to_string:
 * @mode: a mode
 *
 * Returns: (transfer none): the mode's name, as accepted by
 *   tally_tokenizer_mode_from_string(), or "invalid". Any thread.
 */
const char *tally_tokenizer_mode_to_string (TallyTokenizerMode mode);

/**
 * tally_tokenizer_long_words_from_string:
 * @name: "truncate" or "drop"
 * @long_words: (out): the policy named
 * @error: return location for a #GError, or %NULL
 *
 * Returns: %TRUE on success; %FALSE with %TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS
 *   otherwise. Any thread.
 */
gboolean tally_tokenizer_long_words_from_string (const char *name,
                                                 TallyTokenizerLongWords *long_words,
                                                 GError **error);

/**
 * tally_tokenizer_long_words_to_string:
 * @long_words: a policy
 *
 * Returns: (transfer none): "truncate", "drop" or "invalid". Any thread.
 */
const char *tally_tokenizer_long_words_to_string (TallyTokenizerLongWords long_words);

/**
 * tally_tokenizer_new:
 * @options: (nullable): options, copied; %NULL for the defaults. They must be valid (see
 *   tally_tokenizer_options_validate()); invalid options are a programmer error.
 *
 * Creates a tokenizer. Any thread; the tokenizer is then used from one thread at a time.
 *
 * Returns: (transfer full): a new tokenizer; free with tally_tokenizer_free().
 */
G_GNUC_WARN_UNUSED_RESULT
TallyTokenizer *tally_tokenizer_new (const TallyTokenizerOptions *options);

/**
 * tally_tokenizer_free:
 * @tokenizer: (transfer full) (nullable): a tokenizer
 *
 * Frees the tokenizer and its scratch buffers.
 */
void tally_tokenizer_free (TallyTokenizer *tokenizer);

/**
 * tally_tokenizer_get_options:
 * @tokenizer: a tokenizer
 *
 * Returns: (transfer none): the tokenizer's options, valid as long as it lives.
 */
const TallyTokenizerOptions *tally_tokenizer_get_options (const TallyTokenizer *tokenizer);

/**
 * tally_tokenizer_feed:
 * @tokenizer: a tokenizer
 * @text: (array length=len) (nullable): bytes of one complete chunk: any bytes at all,
 *   including NUL and invalid UTF-8; %NULL only when @len is 0
 * @len: length of @text in bytes
 * @func: (scope call): called once per word, in text order
 * @user_data: passed to @func
 *
 * Tokenizes one complete chunk (a record value, or a block of a file that ends just after
 * a separator, such as a line feed): no word spans two calls, so the end of @text ends the last
 * word. Never fails. Allocates nothing per word (NFKC, when enabled, allocates per chunk). Call
 * from the tokenizer's thread only.
 *
 * Returns: the number of words passed to @func.
 */
gsize tally_tokenizer_feed (TallyTokenizer *tokenizer, const char *text, gsize len,
                            TallyWordFunc func, gpointer user_data);

/**
 * tally_tokenizer_get_stats:
 * @tokenizer: a tokenizer
 * @stats: (out caller-allocates): filled with the running totals
 *
 * Copies the statistics since creation or the last tally_tokenizer_reset_stats().
 * Tokenizer's thread only.
 */
void tally_tokenizer_get_stats (const TallyTokenizer *tokenizer, TallyTokenizerStats *stats);

/**
 * tally_tokenizer_reset_stats:
 * @tokenizer: a tokenizer
 *
 * Sets every statistic back to zero. Tokenizer's thread only.
 */
void tally_tokenizer_reset_stats (TallyTokenizer *tokenizer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyTokenizer, tally_tokenizer_free)

G_END_DECLS
