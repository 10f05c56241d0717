/* tally-tokenizer.c — splits record values into words; the hot loop of Tally.
 *
 * The rules are in docs/tokenizer.md; this file makes them fast. Every byte Tally counts
 * passes through here, so the design spends nothing per byte that it can avoid:
 *
 * - one pass over the bytes per mode, 16 ASCII bytes at a time where SSE2 allows, one
 *   character at a time elsewhere, with the word in progress carried across steps;
 * - a word already in its final form is handed to the callback as a pointer into the
 *   caller's text, with no copy; only words that need folding go through a scratch buffer
 *   whose size is bounded by max_word_bytes;
 * - the Unicode data (classes, case folding) is turned into tables once per process.
 *
 * How each step works is described beside its function below.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-tokenizer.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* clang-format off */ G_DEFINE_QUARK (tally-tokenizer-error-quark, tally_tokenizer_error) /* clang-format on */

struct _TallyTokenizer
{
  TallyTokenizerOptions options;
  TallyTokenizerStats stats;
  /* Folded or lowercased word; max_word_bytes + 8 bytes. Folding stops once more than
   * max_word_bytes are written, so the buffer never grows beyond max_word_bytes plus one
   * folded character and a huge token costs no memory. */
  guchar *scratch;
  /* NFKC output of the current chunk. */
  GString *normalized;
};

/* ---------------------------------------------------------------------------------------
 * Character tables
 * ------------------------------------------------------------------------------------- */

/* Unicode class of a code point in unicode mode: two low bits say what kind of character
 * it is; flags say whether case folding changes it and whether it is a joiner. */
enum
{
  KIND_SEPARATOR = 0,
  KIND_LETTER = 1, /* L*: Lu Ll Lt Lm Lo */
  KIND_MARK = 2,   /* M*: Mn Mc Me */
  KIND_DIGIT = 3,  /* Nd Nl No */
  KIND_MASK = 3,
  FLAG_FOLDS = 4,  /* full case folding maps it to something else */
  FLAG_JOINER = 8, /* U+2019 or U+2010 (a separator unless between two letters) */
};

/* ASCII classes of unicode mode. */
enum
{
  U_SEP = 0,
  U_APOS,
  U_HYPHEN,
  U_LOWER,
  U_DIGIT,
  U_UPPER,
  U_HIGH,
};

/* ASCII classes of whitespace mode. */
enum
{
  WS_SEP = 0,
  WS_WORD,
  WS_UPPER,
  WS_HIGH,
};

/* ASCII classes of record mode. */
enum
{
  R_SEP = 0,
  R_TEXT,
  R_SPACE, /* trimmed at the ends, kept inside */
  R_HIGH,
};

typedef struct
{
  gunichar cp;
  guint8 len;
  char utf8[7];
} FoldEntry;

/* Classes of the ASCII bytes (and WS_HIGH, U_HIGH, R_HIGH for the rest) in each mode, with GNU C
 * range designators. A character-at-a-time step looks an ASCII byte up here; other bytes go
 * through decode_utf8() and, in unicode mode, char_class(). */
static const guint8 uni_ascii[256] = {
  ['a' ... 'z'] = U_LOWER, ['A' ... 'Z'] = U_UPPER, ['0' ... '9'] = U_DIGIT,
  ['\''] = U_APOS,         ['-'] = U_HYPHEN,        [0x80 ... 0xff] = U_HIGH,
};

static const guint8 ws_ascii[256] = {
  [0x21 ... 0x40] = WS_WORD,
  ['A' ... 'Z'] = WS_UPPER,
  [0x5b ... 0x7e] = WS_WORD,
  [0x80 ... 0xff] = WS_HIGH,
};

static const guint8 rec_ascii[256] = {
  [' '] = R_SPACE,
  [0x21 ... 0x7e] = R_TEXT,
  [0x80 ... 0xff] = R_HIGH,
};

static guint8 bmp_class[0x10000];
static FoldEntry *folds;
static gsize n_folds;
/* For each code point of the BMP that folds: 1 + its index in folds; 0 for the rest. */
static guint16 bmp_fold[0x10000];

/* The final form of each two-byte character (U+0080..U+07FF: Latin with diacritics, Greek,
 * Cyrillic, Armenian, Hebrew, Arabic) inside a word: its full case folding when bmp_class
 * says FLAG_FOLDS, its own two bytes otherwise. utf8 comes first so that fold_word() can
 * copy all 8 bytes at once (the byte after the fold is overwritten or not emitted). The
 * class of these characters is bmp_class[c] (a 2 KiB prefix of it); see feed_unicode(). */
typedef struct
{
  guchar utf8[7];
  guint8 len;
} TwoByteFold;

static TwoByteFold two_byte_fold[0x800];

/* The code point of the two-byte sequence @b0 @b1 (lead byte 0xc2..0xdf, continuation
 * byte), an index into bmp_class and two_byte_fold. */
#define TWO_BYTE_CP(b0, b1) ((((guint)(b0)&0x1fu) << 6) | ((guint)(b1)&0x3fu))
/* TRUE when @b is the lead byte of a two-byte sequence (0xc2..0xdf). */
#define TWO_BYTE_LEAD(b) ((guint)(guchar)((b)-0xc2) <= 0xdf - 0xc2)

static guint8
kind_from_type (GUnicodeType type)
{
  switch (type)
    {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
      return KIND_LETTER;
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
      return KIND_MARK;
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return KIND_DIGIT;
    default:
      return KIND_SEPARATOR;
    }
}

static gboolean
type_may_fold (GUnicodeType type)
{
  /* Everything CaseFolding.txt maps among word characters is Lu, Ll, Lt, Nl or Mn (U+0345);
   * the other letter and mark types are checked too, to be safe. Lo, Nd and No never fold. */
  return type != G_UNICODE_OTHER_LETTER && type != G_UNICODE_DECIMAL_NUMBER
         && type != G_UNICODE_OTHER_NUMBER;
}

/* Builds, once per process, the tables of unicode mode from GLib's Unicode data:
 *
 * - bmp_class: the class of every code point of the Basic Multilingual Plane (64 Ki
 *   entries); char_class() asks g_unichar_type() above it. Its first 2 KiB are the classes
 *   that the two-byte fast path of feed_unicode() reads.
 * - folds: every code point whose full case folding (CaseFolding.txt, status C and F) is
 *   not itself, with its folded UTF-8, sorted by code point. It is built with
 *   g_utf8_casefold(), which does not look at the locale. GLib 2.74 folds Cherokee
 *   capitals U+13A0..U+13F5 to small letters, the opposite of CaseFolding.txt (which folds
 *   small to capital); leaving that range out of the table corrects it, so folding stays
 *   idempotent. bmp_fold indexes it for the BMP.
 * - two_byte_fold: the final form of U+0080..U+07FF, from bmp_class and folds. */
static void
unicode_tables_init (void)
{
  GArray *entries = g_array_new (FALSE, FALSE, sizeof (FoldEntry));

  for (gunichar c = 0; c < 0x110000; c++)
    {
      GUnicodeType type;
      guint8 kind;
      gboolean changed = FALSE;

      if (c >= 0xd800 && c < 0xe000)
        continue;
      type = g_unichar_type (c);
      kind = kind_from_type (type);
      if (kind != KIND_SEPARATOR && c >= 0x80 && type_may_fold (type)
          && !(c >= 0x13a0 && c <= 0x13f5))
        {
          char buf[8];
          int n = g_unichar_to_utf8 (c, buf);
          g_autofree char *folded = g_utf8_casefold (buf, n);
          gsize flen = strlen (folded);

          if (flen != (gsize)n || memcmp (folded, buf, n) != 0)
            {
              FoldEntry e = { 0 };

              g_assert (flen <= sizeof e.utf8);
              e.cp = c;
              e.len = (guint8)flen;
              memcpy (e.utf8, folded, flen);
              g_array_append_val (entries, e);
              changed = TRUE;
            }
        }
      if (c < 0x10000)
        bmp_class[c] = kind | (changed ? FLAG_FOLDS : 0);
    }
  bmp_class[0x2019] |= FLAG_JOINER;
  bmp_class[0x2010] |= FLAG_JOINER;

  n_folds = entries->len;
  folds = (FoldEntry *)(gpointer)g_array_free (entries, FALSE);
  g_assert (n_folds < G_MAXUINT16);
  for (gsize i = 0; i < n_folds; i++)
    if (folds[i].cp < 0x10000)
      bmp_fold[folds[i].cp] = (guint16)(i + 1);

  /* two_byte_fold from the same data: by construction what fold_word()'s general path
   * writes for each of these characters. */
  for (gunichar c = 0x80; c < 0x800; c++)
    {
      TwoByteFold *t = &two_byte_fold[c];

      if ((bmp_class[c] & FLAG_FOLDS) && bmp_fold[c] != 0)
        {
          const FoldEntry *e = &folds[bmp_fold[c] - 1];

          g_assert (e->len <= sizeof t->utf8);
          memcpy (t->utf8, e->utf8, e->len);
          t->len = e->len;
        }
      else
        t->len = (guint8)g_unichar_to_utf8 (c, (char *)t->utf8);
    }
}

static void
unicode_tables_ensure (void)
{
  static gsize done = 0;

  if (g_once_init_enter (&done))
    {
      unicode_tables_init ();
      g_once_init_leave (&done, 1);
    }
}

static const FoldEntry *
fold_lookup (gunichar c)
{
  gsize lo = 0, hi = n_folds;

  while (lo < hi)
    {
      gsize mid = lo + (hi - lo) / 2;

      if (folds[mid].cp == c)
        return &folds[mid];
      if (folds[mid].cp < c)
        lo = mid + 1;
      else
        hi = mid;
    }
  return NULL;
}

static inline guint8
char_class (gunichar c)
{
  guint8 kind;

  if (G_LIKELY (c < 0x10000))
    return bmp_class[c];
  kind = kind_from_type (g_unichar_type (c));
  if (kind != KIND_SEPARATOR && fold_lookup (c) != NULL)
    kind |= FLAG_FOLDS;
  return kind;
}

/* Decodes one non-ASCII character of strict UTF-8 (RFC 3629: shortest form, no surrogates,
 * at most U+10FFFF). Returns its length in bytes, or 0 when the byte at @p is invalid.
 *
 * Invalid UTF-8 is decided byte by byte: a byte that does not start a complete, shortest
 * form, non-surrogate sequence of at most U+10FFFF is invalid; the callers count it and
 * let it separate words. This classifies exactly the bytes that Python's
 * "surrogateescape" decoder escapes, which the reference implementation relies on. */
static inline G_ALWAYS_INLINE guint
decode_utf8 (const guchar *p, const guchar *end, gunichar *out)
{
  guchar b0 = p[0], b1, b2, b3;
  gsize avail = (gsize)(end - p);

  if (b0 < 0xc2)
    return 0;
  if (b0 < 0xe0)
    {
      if (avail < 2 || (p[1] & 0xc0) != 0x80)
        return 0;
      *out = ((gunichar)(b0 & 0x1f) << 6) | (p[1] & 0x3f);
      return 2;
    }
  if (b0 < 0xf0)
    {
      if (avail < 3)
        return 0;
      b1 = p[1];
      b2 = p[2];
      if ((b1 & 0xc0) != 0x80 || (b2 & 0xc0) != 0x80)
        return 0;
      if ((b0 == 0xe0 && b1 < 0xa0) || (b0 == 0xed && b1 >= 0xa0))
        return 0;
      *out = ((gunichar)(b0 & 0x0f) << 12) | ((gunichar)(b1 & 0x3f) << 6) | (b2 & 0x3f);
      return 3;
    }
  if (b0 < 0xf5)
    {
      if (avail < 4)
        return 0;
      b1 = p[1];
      b2 = p[2];
      b3 = p[3];
      if ((b1 & 0xc0) != 0x80 || (b2 & 0xc0) != 0x80 || (b3 & 0xc0) != 0x80)
        return 0;
      if ((b0 == 0xf0 && b1 < 0x90) || (b0 == 0xf4 && b1 >= 0x90))
        return 0;
      *out = ((gunichar)(b0 & 0x07) << 18) | ((gunichar)(b1 & 0x3f) << 12)
             | ((gunichar)(b2 & 0x3f) << 6) | (b3 & 0x3f);
      return 4;
    }
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------- */

void
tally_tokenizer_options_init (TallyTokenizerOptions *options)
{
  g_return_if_fail (options != NULL);

  options->mode = TALLY_TOKENIZER_UNICODE;
  options->nfkc = FALSE;
  options->max_word_bytes = TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES;
  options->long_words = TALLY_TOKENIZER_LONG_TRUNCATE;
}

gboolean
tally_tokenizer_options_validate (const TallyTokenizerOptions *options, GError **error)
{
  g_return_val_if_fail (options != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if ((guint)options->mode > TALLY_TOKENIZER_RECORD)
    {
      g_set_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MODE,
                   "Invalid tokenizer mode %d", (int)options->mode);
      return FALSE;
    }
  if ((guint)options->long_words > TALLY_TOKENIZER_LONG_DROP)
    {
      g_set_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS,
                   "Invalid long-word policy %d", (int)options->long_words);
      return FALSE;
    }
  if (options->max_word_bytes < TALLY_TOKENIZER_MIN_WORD_BYTES
      || options->max_word_bytes > TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT)
    {
      g_set_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES,
                   "Maximum word length %u bytes is outside %u to %u bytes",
                   options->max_word_bytes, (guint)TALLY_TOKENIZER_MIN_WORD_BYTES,
                   (guint)TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT);
      return FALSE;
    }
  return TRUE;
}

static const char *const mode_names[] = { "unicode", "whitespace", "record" };
static const char *const long_word_names[] = { "truncate", "drop" };

gboolean
tally_tokenizer_mode_from_string (const char *name, TallyTokenizerMode *mode, GError **error)
{
  g_return_val_if_fail (mode != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (mode_names); i++)
    if (name != NULL && strcmp (name, mode_names[i]) == 0)
      {
        *mode = (TallyTokenizerMode)i;
        return TRUE;
      }
  g_set_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MODE,
               "Unknown tokenizer mode “%s” (expected unicode, whitespace or record)",
               name != NULL ? name : "");
  return FALSE;
}

const char *
tally_tokenizer_mode_to_string (TallyTokenizerMode mode)
{
  if ((guint)mode < G_N_ELEMENTS (mode_names))
    return mode_names[mode];
  return "invalid";
}

gboolean
tally_tokenizer_long_words_from_string (const char *name, TallyTokenizerLongWords *long_words,
                                        GError **error)
{
  g_return_val_if_fail (long_words != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (long_word_names); i++)
    if (name != NULL && strcmp (name, long_word_names[i]) == 0)
      {
        *long_words = (TallyTokenizerLongWords)i;
        return TRUE;
      }
  g_set_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS,
               "Unknown long-word policy “%s” (expected truncate or drop)",
               name != NULL ? name : "");
  return FALSE;
}

const char *
tally_tokenizer_long_words_to_string (TallyTokenizerLongWords long_words)
{
  if ((guint)long_words < G_N_ELEMENTS (long_word_names))
    return long_word_names[long_words];
  return "invalid";
}

/* ---------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------- */

TallyTokenizer *
tally_tokenizer_new (const TallyTokenizerOptions *options)
{
  TallyTokenizer *self;
  g_autoptr (GError) error = NULL;

  self = g_new0 (TallyTokenizer, 1);
  if (options != NULL)
    self->options = *options;
  else
    tally_tokenizer_options_init (&self->options);
  if (!tally_tokenizer_options_validate (&self->options, &error))
    {
      g_critical ("tally_tokenizer_new: %s; using the defaults", error->message);
      tally_tokenizer_options_init (&self->options);
    }
  /* + 16: room for whitespace mode's 16-byte stores (emit_whitespace()). */
  self->scratch = g_malloc (self->options.max_word_bytes + 16);
  /* The Unicode tables are built once per process, by the first unicode-mode tokenizer. */
  if (self->options.mode == TALLY_TOKENIZER_UNICODE)
    unicode_tables_ensure ();
  return self;
}

void
tally_tokenizer_free (TallyTokenizer *tokenizer)
{
  if (tokenizer == NULL)
    return;
  g_free (tokenizer->scratch);
  if (tokenizer->normalized != NULL)
    g_string_free (tokenizer->normalized, TRUE);
  g_free (tokenizer);
}

const TallyTokenizerOptions *
tally_tokenizer_get_options (const TallyTokenizer *tokenizer)
{
  g_return_val_if_fail (tokenizer != NULL, NULL);
  return &tokenizer->options;
}

void
tally_tokenizer_get_stats (const TallyTokenizer *tokenizer, TallyTokenizerStats *stats)
{
  g_return_if_fail (tokenizer != NULL);
  g_return_if_fail (stats != NULL);
  *stats = tokenizer->stats;
}

void
tally_tokenizer_reset_stats (TallyTokenizer *tokenizer)
{
  g_return_if_fail (tokenizer != NULL);
  memset (&tokenizer->stats, 0, sizeof tokenizer->stats);
}

/* ---------------------------------------------------------------------------------------
 * Emitting
 * ------------------------------------------------------------------------------------- */

/* Hands @word (@len bytes of valid UTF-8, @len > 0) to @func, applying the long-word
 * policy. When @len > max_word_bytes, @word must hold at least max_word_bytes + 1 bytes
 * (that is all that is looked at). @trim_spaces: after truncation, drop trailing spaces
 * (record mode). Returns 1 when a word was emitted. */
static inline gsize
emit (TallyTokenizer *self, const guchar *word, gsize len, gboolean trim_spaces, TallyWordFunc func,
      gpointer user_data)
{
  gsize max = self->options.max_word_bytes;

  if (G_UNLIKELY (len > max))
    {
      gsize cut = max;

      if (self->options.long_words == TALLY_TOKENIZER_LONG_DROP)
        {
          self->stats.dropped++;
          return 0;
        }
      while (cut > 0 && (word[cut] & 0xc0) == 0x80)
        cut--;
      if (trim_spaces)
        while (cut > 0 && word[cut - 1] == ' ')
          cut--;
      if (cut == 0)
        {
          self->stats.dropped++;
          return 0;
        }
      self->stats.truncated++;
      len = cut;
    }
  self->stats.words++;
  func ((const char *)word, len, user_data);
  return 1;
}

/* ---------------------------------------------------------------------------------------
 * Blocks of 16 ASCII bytes
 *
 * Each mode scans its chunk as a sequence of steps. Where SSE2 is available (every x86-64)
 * and the next 16 bytes are all ASCII, one step classifies them at once into bit masks
 * (bit i for byte i) and walks the word boundaries with count-trailing-zeros; otherwise a
 * step handles the next 16 bytes (or the rest of the chunk) one character at a time. Both
 * carry the same state from step to step (the start of the word in progress, and what the
 * mode needs to know about it), so a word may begin in one kind of step and end in the
 * other.
 * ------------------------------------------------------------------------------------- */

#if defined(__SSE2__) && defined(__GNUC__) && !defined(TALLY_TOKENIZER_NO_BLOCKS)
#define TALLY_TOKENIZER_BLOCKS 1
#define BLOCK 16

static inline guint
ascii_block (const guchar *p, __m128i *v)
{
  *v = _mm_loadu_si128 ((const __m128i *)(const void *)p);
  return (guint)_mm_movemask_epi8 (*v);
}

/* Bit i set when byte i of @v lies in [@lo, @hi] (all bytes known to be ASCII). */
static inline guint
range_mask (__m128i v, char lo, char hi)
{
  return (guint)_mm_movemask_epi8 (_mm_and_si128 (_mm_cmpgt_epi8 (v, _mm_set1_epi8 (lo - 1)),
                                                  _mm_cmplt_epi8 (v, _mm_set1_epi8 (hi + 1))));
}

static inline guint
byte_mask (__m128i v, char b)
{
  return (guint)_mm_movemask_epi8 (_mm_cmpeq_epi8 (v, _mm_set1_epi8 (b)));
}

#define BITS_FROM(i) ((0xffffu << (i)) & 0xffffu)
#define BITS_BELOW(i) ((1u << (i)) - 1u)
#endif

/* The end of a character-at-a-time step starting at @p. */
static inline const guchar *
step_end (const guchar *p, const guchar *end)
{
#ifdef TALLY_TOKENIZER_BLOCKS
  if (end - p > BLOCK)
    return p + BLOCK;
#endif
  return end;
}

/* ---------------------------------------------------------------------------------------
 * unicode mode
 * ------------------------------------------------------------------------------------- */

static inline gboolean
letter_at (const guchar *p, const guchar *end)
{
  gunichar c;
  guint n;

  if (p >= end)
    return FALSE;
  if (*p < 0x80)
    return uni_ascii[*p] == U_LOWER || uni_ascii[*p] == U_UPPER;
  n = decode_utf8 (p, end, &c);
  return n != 0 && (char_class (c) & KIND_MASK) == KIND_LETTER;
}

/* Folds the word [p, end), known to be valid UTF-8 made of word characters and kept
 * joiners, into the scratch buffer; stops once more than max_word_bytes are written.
 * Returns the bytes written. @limit is the end of the chunk: where 16 bytes from p are
 * readable, the ASCII letters before the next non-ASCII byte (or the word's end) are
 * lowercased 16 at a time; the scratch buffer's 16 spare bytes take the overshoot. A
 * character that folds is found in bmp_fold (one load) or, above the BMP, by binary
 * search. */
static gsize
fold_word (TallyTokenizer *self, const guchar *p, const guchar *end, const guchar *limit)
{
  guchar *out = self->scratch;
  gsize max = self->options.max_word_bytes;
  gsize o = 0;

  while (p < end && o <= max)
    {
      gunichar c;
      guint n;
      guint8 cls;

      if (*p < 0x80)
        {
#ifdef TALLY_TOKENIZER_BLOCKS
          if (limit - p >= BLOCK)
            {
              __m128i v = _mm_loadu_si128 ((const __m128i *)(const void *)p);
              __m128i is_upper = _mm_and_si128 (_mm_cmpgt_epi8 (v, _mm_set1_epi8 ('A' - 1)),
                                                _mm_cmplt_epi8 (v, _mm_set1_epi8 ('Z' + 1)));
              guint ascii = ~(guint)_mm_movemask_epi8 (v) & 0xffffu;
              gsize left = (gsize)(end - p);
              /* Bytes before the first non-ASCII one (at most 16), and not past the word. */
              guint run = ascii == 0xffffu ? BLOCK : (guint)__builtin_ctz (~ascii);

              if (run > left)
                run = (guint)left;
              /* Capitals get bit 5 (0x20): 'A'..'Z' -> 'a'..'z'. Non-ASCII bytes are
               * negative as signed bytes, so never "capitals". */
              v = _mm_or_si128 (v, _mm_and_si128 (is_upper, _mm_set1_epi8 (0x20)));
              _mm_storeu_si128 ((__m128i *)(void *)(out + o), v);
              p += run;
              o += run;
              continue;
            }
#endif
          {
            guchar b = *p++;

            out[o++] = (b >= 'A' && b <= 'Z') ? (guchar)(b + ('a' - 'A')) : b;
            continue;
          }
        }
      if (TWO_BYTE_LEAD (*p))
        {
          /* Valid (the word is), so p[1] is its continuation byte; the scratch buffer's
           * spare bytes take the 8-byte copy. */
          const TwoByteFold *t = &two_byte_fold[TWO_BYTE_CP (p[0], p[1])];

          memcpy (out + o, t, sizeof *t);
          o += t->len;
          p += 2;
          continue;
        }
      n = decode_utf8 (p, end, &c);
      g_assert (n != 0);
      cls = char_class (c);
      if (cls & FLAG_JOINER)
        out[o++] = c == 0x2019 ? '\'' : '-';
      else if (cls & FLAG_FOLDS)
        {
          const FoldEntry *e
              = c < 0x10000 ? (bmp_fold[c] != 0 ? &folds[bmp_fold[c] - 1] : NULL) : fold_lookup (c);

          if (G_LIKELY (e != NULL))
            {
              memcpy (out + o, e->utf8, e->len);
              o += e->len;
            }
        }
      else
        {
          memcpy (out + o, p, n);
          o += n;
        }
      p += n;
    }
  return o;
}

static inline gsize
emit_unicode (TallyTokenizer *self, const guchar *word, const guchar *end, const guchar *limit,
              gboolean pure, TallyWordFunc func, gpointer user_data)
{
  if (pure)
    return emit (self, word, (gsize)(end - word), FALSE, func, user_data);
  return emit (self, self->scratch, fold_word (self, word, end, limit), FALSE, func, user_data);
}

/* Tokenizes [p, end) in unicode mode. While a word is delimited it notes whether the word's
 * bytes are already its final form ("pure": no ASCII capital, no character that case
 * folding changes, no U+2019/U+2010 joiner to normalise). A pure word is handed to @func
 * as a pointer into the caller's text, with no copy; any other word is folded into the
 * scratch buffer first (emit_unicode(), fold_word()). */
static gsize
feed_unicode (TallyTokenizer *self, const guchar *p, const guchar *end, TallyWordFunc func,
              gpointer user_data)
{
  gsize words = 0;
  const guchar *word = NULL; /* start of the word in progress */
  gboolean pure = TRUE;      /* its bytes are its final form */
  gboolean prev_lm = FALSE;  /* the last character was a letter or a mark */

  while (p < end)
    {
      const guchar *stop;

#ifdef TALLY_TOKENIZER_BLOCKS
      __m128i v;

      if (end - p >= BLOCK && ascii_block (p, &v) == 0)
        {
          guint lower = range_mask (v, 'a', 'z');
          guint upper = range_mask (v, 'A', 'Z');
          guint letter = lower | upper;
          guint alnum = letter | range_mask (v, '0', '9');
          guint joiner = byte_mask (v, '\'') | byte_mask (v, '-');
          guint kept, sep, i = 0;

          /* A joiner is kept between a letter (or mark) and a letter. */
          if (joiner != 0)
            {
              guint before = (letter << 1) | (prev_lm ? 1u : 0u);
              guint after = letter >> 1;

              if ((joiner & 0x8000u) && letter_at (p + BLOCK, end))
                after |= 0x8000u;
              kept = joiner & before & after;
            }
          else
            kept = 0;
          sep = ~(alnum | kept) & 0xffffu;

          while (i < BLOCK)
            {
              guint s;

              if (word == NULL)
                {
                  guint w = ~sep & BITS_FROM (i);

                  if (w == 0)
                    break;
                  i = (guint)__builtin_ctz (w);
                  word = p + i;
                  pure = TRUE;
                }
              s = sep & BITS_FROM (i);
              if (s == 0)
                {
                  if (upper & BITS_FROM (i))
                    pure = FALSE;
                  break;
                }
              else
                {
                  guint e = (guint)__builtin_ctz (s);

                  if (upper & BITS_FROM (i) & BITS_BELOW (e))
                    pure = FALSE;
                  words += emit_unicode (self, word, p + e, end, pure, func, user_data);
                  word = NULL;
                  i = e + 1;
                }
            }
          prev_lm = (letter & 0x8000u) != 0;
          p += BLOCK;
          continue;
        }
#endif

      for (stop = step_end (p, end); p < stop;)
        {
          gboolean in_word, lm = FALSE, folds = FALSE;
          guint n = 1;

          if (*p < 0x80)
            {
              guint8 k = uni_ascii[*p];

              switch (k)
                {
                case U_LOWER:
                  in_word = lm = TRUE;
                  break;
                case U_UPPER:
                  in_word = lm = folds = TRUE;
                  break;
                case U_DIGIT:
                  in_word = TRUE;
                  break;
                case U_APOS:
                case U_HYPHEN:
                  in_word = prev_lm && letter_at (p + 1, end);
                  break;
                default:
                  in_word = FALSE;
                  break;
                }
            }
          else if (TWO_BYTE_LEAD (*p) && end - p >= 2 && (p[1] & 0xc0) == 0x80
                   && (bmp_class[TWO_BYTE_CP (p[0], p[1])] & KIND_MASK) != KIND_SEPARATOR)
            {
              /* A run of two-byte word characters (Greek, Cyrillic, accented Latin...)
               * in one tight loop: the same decisions as the general path below (bmp_class
               * holds their classes; none of them is a joiner), without its branches. It
               * may run past stop; the next step starts where it ends. */
              guint8 cls = bmp_class[TWO_BYTE_CP (p[0], p[1])];
              guint8 any = 0;

              if (word == NULL)
                {
                  word = p;
                  pure = TRUE;
                }
              do
                {
                  any |= cls;
                  prev_lm = (cls & KIND_MASK) != KIND_DIGIT;
                  p += 2;
                  if (end - p < 2 || !TWO_BYTE_LEAD (*p) || (p[1] & 0xc0) != 0x80)
                    break;
                  cls = bmp_class[TWO_BYTE_CP (p[0], p[1])];
                }
              while ((cls & KIND_MASK) != KIND_SEPARATOR);
              if (any & FLAG_FOLDS)
                pure = FALSE;
              continue;
            }
          else
            {
              gunichar c;

              n = decode_utf8 (p, end, &c);
              if (n == 0)
                {
                  self->stats.invalid_bytes++;
                  n = 1;
                  in_word = FALSE;
                }
              else
                {
                  guint8 cls = char_class (c);
                  guint8 kind = cls & KIND_MASK;

                  if (kind == KIND_SEPARATOR)
                    in_word = folds = (cls & FLAG_JOINER) && prev_lm && letter_at (p + n, end);
                  else
                    {
                      in_word = TRUE;
                      folds = (cls & FLAG_FOLDS) != 0;
                      lm = kind != KIND_DIGIT;
                    }
                }
            }

          if (in_word)
            {
              if (word == NULL)
                {
                  word = p;
                  pure = TRUE;
                }
              if (folds)
                pure = FALSE;
            }
          else if (word != NULL)
            {
              words += emit_unicode (self, word, p, end, pure, func, user_data);
              word = NULL;
            }
          prev_lm = lm;
          p += n;
        }
    }
  if (word != NULL)
    words += emit_unicode (self, word, end, end, pure, func, user_data);
  return words;
}

/* ---------------------------------------------------------------------------------------
 * whitespace mode
 * ------------------------------------------------------------------------------------- */

/* Emits the word from @word to @end, ASCII-lowercased into the scratch buffer if @upper.
 * @limit is the end of the chunk: a word of at most 16 bytes with 16 readable bytes before
 * @limit is lowercased with one 16-byte load, compare and store (the bytes after the word
 * land unused in the scratch buffer, which has room for them). */
static inline gsize
emit_whitespace (TallyTokenizer *self, const guchar *word, const guchar *end, const guchar *limit,
                 gboolean upper, TallyWordFunc func, gpointer user_data)
{
  gsize len = (gsize)(end - word);

#ifdef TALLY_TOKENIZER_BLOCKS
  if (upper && len <= BLOCK && limit - word >= BLOCK)
    {
      __m128i v = _mm_loadu_si128 ((const __m128i *)(const void *)word);
      __m128i caps = _mm_and_si128 (_mm_cmpgt_epi8 (v, _mm_set1_epi8 ('A' - 1)),
                                    _mm_cmplt_epi8 (v, _mm_set1_epi8 ('Z' + 1)));

      _mm_storeu_si128 ((__m128i *)(void *)self->scratch,
                        _mm_add_epi8 (v, _mm_and_si128 (caps, _mm_set1_epi8 ('a' - 'A'))));
      return emit (self, self->scratch, len, FALSE, func, user_data);
    }
#endif
  if (upper)
    {
      len = MIN (len, (gsize)self->options.max_word_bytes + 1);
      for (gsize i = 0; i < len; i++)
        {
          guchar b = word[i];

          self->scratch[i] = (b >= 'A' && b <= 'Z') ? (guchar)(b + ('a' - 'A')) : b;
        }
      word = self->scratch;
    }
  return emit (self, word, len, FALSE, func, user_data);
}

static gsize
feed_whitespace (TallyTokenizer *self, const guchar *p, const guchar *end, TallyWordFunc func,
                 gpointer user_data)
{
  gsize words = 0;
  const guchar *word = NULL; /* start of the word in progress */
  gboolean upper = FALSE;    /* it has an ASCII capital */

  while (p < end)
    {
      const guchar *stop;

#ifdef TALLY_TOKENIZER_BLOCKS
      __m128i v;

      if (end - p >= BLOCK && ascii_block (p, &v) == 0)
        {
          guint sep = range_mask (v, 0x00, 0x20) | byte_mask (v, 0x7f);
          guint caps = range_mask (v, 'A', 'Z');
          guint i = 0;

          while (i < BLOCK)
            {
              guint s;

              if (word == NULL)
                {
                  guint w = ~sep & BITS_FROM (i);

                  if (w == 0)
                    break;
                  i = (guint)__builtin_ctz (w);
                  word = p + i;
                  upper = FALSE;
                }
              s = sep & BITS_FROM (i);
              if (s == 0)
                {
                  if (caps & BITS_FROM (i))
                    upper = TRUE;
                  break;
                }
              else
                {
                  guint e = (guint)__builtin_ctz (s);

                  if (caps & BITS_FROM (i) & BITS_BELOW (e))
                    upper = TRUE;
                  words += emit_whitespace (self, word, p + e, end, upper, func, user_data);
                  word = NULL;
                  i = e + 1;
                }
            }
          p += BLOCK;
          continue;
        }
#endif

      for (stop = step_end (p, end); p < stop;)
        {
          gboolean in_word;
          guint n = 1;

          if (*p < 0x80)
            {
              guint8 k = ws_ascii[*p];

              in_word = k != WS_SEP;
              if (k == WS_UPPER && word != NULL)
                upper = TRUE;
            }
          else
            {
              gunichar c;

              n = decode_utf8 (p, end, &c);
              if (n == 0)
                {
                  self->stats.invalid_bytes++;
                  n = 1;
                  in_word = FALSE;
                }
              else
                in_word = c >= 0xa0; /* not a C1 control */
            }

          if (in_word)
            {
              if (word == NULL)
                {
                  word = p;
                  upper = *p < 0x80 && ws_ascii[*p] == WS_UPPER;
                }
            }
          else if (word != NULL)
            {
              words += emit_whitespace (self, word, p, end, upper, func, user_data);
              word = NULL;
            }
          p += n;
        }
    }
  if (word != NULL)
    words += emit_whitespace (self, word, end, end, upper, func, user_data);
  return words;
}

/* ---------------------------------------------------------------------------------------
 * record mode
 * ------------------------------------------------------------------------------------- */

static gsize
feed_record (TallyTokenizer *self, const guchar *p, const guchar *end, TallyWordFunc func,
             gpointer user_data)
{
  gsize words = 0;
  const guchar *word = NULL; /* first non-space of the line in progress */
  const guchar *last = NULL; /* just after its last non-space */

  while (p < end)
    {
      const guchar *stop;

#ifdef TALLY_TOKENIZER_BLOCKS
      __m128i v;

      if (end - p >= BLOCK && ascii_block (p, &v) == 0)
        {
          guint sep = range_mask (v, 0x00, 0x1f) | byte_mask (v, 0x7f);
          guint text = ~(sep | byte_mask (v, ' ')) & 0xffffu;
          guint i = 0;

          while (i < BLOCK)
            {
              guint s, t;

              if (word == NULL)
                {
                  guint w = text & BITS_FROM (i);

                  if (w == 0)
                    break;
                  i = (guint)__builtin_ctz (w);
                  word = p + i;
                }
              s = sep & BITS_FROM (i);
              t = text & BITS_FROM (i) & (s != 0 ? BITS_BELOW (__builtin_ctz (s)) : 0xffffu);
              if (t != 0)
                last = p + (31 - __builtin_clz (t)) + 1;
              if (s == 0)
                break;
              words += emit (self, word, (gsize)(last - word), TRUE, func, user_data);
              word = NULL;
              i = (guint)__builtin_ctz (s) + 1;
            }
          p += BLOCK;
          continue;
        }
#endif

      for (stop = step_end (p, end); p < stop;)
        {
          guint n = 1;
          guint8 k;

          if (*p < 0x80)
            k = rec_ascii[*p];
          else
            {
              gunichar c;

              n = decode_utf8 (p, end, &c);
              if (n == 0)
                {
                  self->stats.invalid_bytes++;
                  n = 1;
                  k = R_SEP;
                }
              else
                k = c >= 0xa0 ? R_TEXT : R_SEP;
            }

          if (k == R_TEXT)
            {
              if (word == NULL)
                word = p;
              last = p + n;
            }
          else if (k == R_SEP && word != NULL)
            {
              words += emit (self, word, (gsize)(last - word), TRUE, func, user_data);
              word = NULL;
            }
          p += n;
        }
    }
  if (word != NULL)
    words += emit (self, word, (gsize)(last - word), TRUE, func, user_data);
  return words;
}

/* ---------------------------------------------------------------------------------------
 * Feeding
 * ------------------------------------------------------------------------------------- */

static void
append_nfkc (GString *out, const guchar *p, const guchar *end)
{
  g_autofree char *nf = g_utf8_normalize ((const char *)p, end - p, G_NORMALIZE_NFKC);

  if (nf != NULL)
    g_string_append (out, nf);
}

/* Writes the NFKC form of [p, end) to self->normalized, invalid bytes (counted) as NUL.
 * When NFKC is asked for, this is a pre-pass over the whole chunk, into a buffer reused
 * from chunk to chunk; the mode's scan then runs over its output, where NUL separates
 * words in every mode.
 *
 * ASCII text is already in NFKC, and an ASCII character never composes with what precedes
 * it (no canonical composition has an ASCII second character), nor does canonical
 * reordering move anything across it (it is a starter). So the text is split before every
 * ASCII character: only each stretch of non-ASCII characters, with the one ASCII character
 * before it (which a following combining mark may compose with, as e + U+0301), goes
 * through g_utf8_normalize(); ASCII is copied. */
static void
normalize_chunk (TallyTokenizer *self, const guchar *p, const guchar *end)
{
  GString *out;

  if (self->normalized == NULL || self->normalized->allocated_len > 16 * 1024 * 1024)
    {
      if (self->normalized != NULL)
        g_string_free (self->normalized, TRUE);
      self->normalized = g_string_sized_new ((gsize)(end - p) + 16);
    }
  out = self->normalized;
  g_string_truncate (out, 0);

  while (p < end)
    {
      const guchar *copied = p; /* text before this is written */

      while (p < end && *p != 0)
        {
          const guchar *first, *q = p;
          gunichar c;
          guint n;

          if (*p < 0x80)
            {
              p++;
              continue;
            }
          while (q < end && *q >= 0x80 && (n = decode_utf8 (q, end, &c)) != 0)
            q += n;
          if (q == p)
            break; /* an invalid byte */
          first = p > copied ? p - 1 : p;
          g_string_append_len (out, (const char *)copied, first - copied);
          append_nfkc (out, first, q);
          copied = p = q;
        }
      g_string_append_len (out, (const char *)copied, p - copied);
      if (p < end)
        {
          if (*p != 0)
            self->stats.invalid_bytes++;
          g_string_append_c (out, '\0');
          p++;
        }
    }
}

gsize
tally_tokenizer_feed (TallyTokenizer *tokenizer, const char *text, gsize len, TallyWordFunc func,
                      gpointer user_data)
{
  const guchar *p, *end;

  g_return_val_if_fail (tokenizer != NULL, 0);
  g_return_val_if_fail (text != NULL || len == 0, 0);
  g_return_val_if_fail (func != NULL, 0);

  if (len == 0)
    return 0;
  tokenizer->stats.bytes += len;
  p = (const guchar *)text;
  end = p + len;
  if (tokenizer->options.nfkc)
    {
      normalize_chunk (tokenizer, p, end);
      p = (const guchar *)tokenizer->normalized->str;
      end = p + tokenizer->normalized->len;
    }

  switch (tokenizer->options.mode)
    {
    case TALLY_TOKENIZER_WHITESPACE:
      return feed_whitespace (tokenizer, p, end, func, user_data);
    case TALLY_TOKENIZER_RECORD:
      return feed_record (tokenizer, p, end, func, user_data);
    case TALLY_TOKENIZER_UNICODE:
    default:
      return feed_unicode (tokenizer, p, end, func, user_data);
    }
}
