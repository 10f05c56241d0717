/* test-tokenizer.c — pins every rule of docs/tokenizer.md with exact word lists.
 *
 * Each test feeds chunks to a TallyTokenizer and compares the words it emits, in order,
 * with the expected list. The Turkish-locale test reruns itself in a subprocess under
 * LC_ALL=tr_TR.UTF-8; the reference test compares with tests/reference/wordcount.py, an
 * independent Python implementation of the same rules, on tests/data/tricky.txt.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-tokenizer.h"

#include <glib/gstdio.h>
#include <locale.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  GPtrArray *words;
  guint max;
} Collected;

static void
collect_word (const char *word, gsize len, gpointer user_data)
{
  Collected *c = user_data;

  /* The contract of TallyWordFunc, checked on every word of every test. */
  g_assert_cmpuint (len, >, 0);
  g_assert_cmpuint (len, <=, c->max);
  g_assert_true (g_utf8_validate_len (word, len, NULL));
  for (gsize i = 0; i < len; i++)
    {
      guchar b = (guchar)word[i];

      g_assert_true (b >= 0x20 && b != 0x7f);
      /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
      if (b == 0xc2 && i + 1 < len)
        g_assert_cmpuint ((guchar)word[i + 1], >=, 0xa0);
    }
  g_ptr_array_add (c->words, g_strndup (word, len));
}

/* Tokenizes @text (@len bytes, or -1 for a NUL-terminated string) and returns the words
 * joined with "|", for an exact comparison with g_assert_cmpstr. */
static char *
words_of_len (TallyTokenizer *tok, const char *text, gssize len)
{
  Collected c = { g_ptr_array_new_with_free_func (g_free),
                  tally_tokenizer_get_options (tok)->max_word_bytes };
  gsize n;
  char *joined;

  if (len < 0)
    len = (gssize)strlen (text);
  n = tally_tokenizer_feed (tok, text, (gsize)len, collect_word, &c);
  g_assert_cmpuint (n, ==, c.words->len);
  g_ptr_array_add (c.words, NULL);
  joined = g_strjoinv ("|", (char **)c.words->pdata);
  g_ptr_array_unref (c.words);
  return joined;
}

static TallyTokenizer *
new_tokenizer (TallyTokenizerMode mode, gboolean nfkc, guint max, TallyTokenizerLongWords lw)
{
  TallyTokenizerOptions o;

  tally_tokenizer_options_init (&o);
  o.mode = mode;
  o.nfkc = nfkc;
  o.max_word_bytes = max;
  o.long_words = lw;
  return tally_tokenizer_new (&o);
}

#define DEFAULT_MAX TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES

static void
check_words (TallyTokenizerMode mode, gboolean nfkc, const char *text, const char *expected)
{
  g_autoptr (TallyTokenizer) tok
      = new_tokenizer (mode, nfkc, DEFAULT_MAX, TALLY_TOKENIZER_LONG_TRUNCATE);
  g_autofree char *got = words_of_len (tok, text, -1);

  g_assert_cmpstr (got, ==, expected);
}

#define UNI(text, expected) check_words (TALLY_TOKENIZER_UNICODE, FALSE, text, expected)
#define WS(text, expected) check_words (TALLY_TOKENIZER_WHITESPACE, FALSE, text, expected)
#define REC(text, expected) check_words (TALLY_TOKENIZER_RECORD, FALSE, text, expected)

/* ---------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------- */

static void
test_options (void)
{
  TallyTokenizerOptions o;
  TallyTokenizerMode mode = TALLY_TOKENIZER_UNICODE;
  TallyTokenizerLongWords lw = TALLY_TOKENIZER_LONG_TRUNCATE;
  g_autoptr (GError) error = NULL;

  tally_tokenizer_options_init (&o);
  g_assert_cmpint (o.mode, ==, TALLY_TOKENIZER_UNICODE);
  g_assert_false (o.nfkc);
  g_assert_cmpuint (o.max_word_bytes, ==, 256);
  g_assert_cmpint (o.long_words, ==, TALLY_TOKENIZER_LONG_TRUNCATE);
  g_assert_true (tally_tokenizer_options_validate (&o, &error));
  g_assert_no_error (error);

  g_assert_true (tally_tokenizer_mode_from_string ("whitespace", &mode, &error));
  g_assert_cmpint (mode, ==, TALLY_TOKENIZER_WHITESPACE);
  g_assert_true (tally_tokenizer_mode_from_string ("record", &mode, &error));
  g_assert_cmpint (mode, ==, TALLY_TOKENIZER_RECORD);
  g_assert_true (tally_tokenizer_mode_from_string ("unicode", &mode, &error));
  g_assert_cmpint (mode, ==, TALLY_TOKENIZER_UNICODE);
  g_assert_false (tally_tokenizer_mode_from_string ("Unicode", &mode, &error));
  g_assert_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MODE);
  g_assert_cmpstr (error->message, ==,
                   "Unknown tokenizer mode “Unicode” (expected unicode, whitespace or record)");
  g_clear_error (&error);
  g_assert_cmpstr (tally_tokenizer_mode_to_string (TALLY_TOKENIZER_RECORD), ==, "record");
  g_assert_cmpstr (tally_tokenizer_mode_to_string ((TallyTokenizerMode)7), ==, "invalid");

  g_assert_true (tally_tokenizer_long_words_from_string ("drop", &lw, &error));
  g_assert_cmpint (lw, ==, TALLY_TOKENIZER_LONG_DROP);
  g_assert_false (tally_tokenizer_long_words_from_string ("cut", &lw, &error));
  g_assert_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_LONG_WORDS);
  g_clear_error (&error);
  g_assert_cmpstr (tally_tokenizer_long_words_to_string (TALLY_TOKENIZER_LONG_TRUNCATE), ==,
                   "truncate");

  o.max_word_bytes = 3;
  g_assert_false (tally_tokenizer_options_validate (&o, &error));
  g_assert_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES);
  g_assert_cmpstr (error->message, ==, "Maximum word length 3 bytes is outside 4 to 1048576 bytes");
  g_clear_error (&error);
  o.max_word_bytes = 1024 * 1024 + 1;
  g_assert_false (tally_tokenizer_options_validate (&o, &error));
  g_assert_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MAX_WORD_BYTES);
  g_clear_error (&error);
  o.max_word_bytes = 4;
  g_assert_true (tally_tokenizer_options_validate (&o, NULL));
  o.mode = (TallyTokenizerMode)3;
  g_assert_false (tally_tokenizer_options_validate (&o, &error));
  g_assert_error (error, TALLY_TOKENIZER_ERROR, TALLY_TOKENIZER_ERROR_INVALID_MODE);
}

/* ---------------------------------------------------------------------------------------
 * unicode mode
 * ------------------------------------------------------------------------------------- */

static void
test_unicode_basic (void)
{
  UNI ("Hello, World! hello", "hello|world|hello");
  UNI ("foo_bar foo.bar foo/bar foo@example.com", "foo|bar|foo|bar|foo|bar|foo|example|com");
  UNI ("(quoted) \"double\" [x] {y} <z> #tag $5 100% a+b=c", "quoted|double|x|y|z|tag|5|100|a|b|c");
  /* Letters of other scripts; CJK has no spaces, so a run of ideographs is one word. */
  UNI ("Привет, мир! 日本語のテキスト 한국어 ελληνικά",
       "привет|мир|日本語のテキスト|한국어|ελληνικά");
  /* Symbols and emoji are separators. */
  UNI ("I ❤ NY 🍕pizza ©2024", "i|ny|pizza|2024");
}

static void
test_unicode_digits (void)
{
  /* Nd, Nl and No are word characters; digits mix with letters in one run. */
  UNI ("abc123 3.14 1,000 ½ x² Ⅻ ①", "abc123|3|14|1|000|½|x²|ⅻ|①");
  UNI ("٣٤٥ १२३", "٣٤٥|१२३");
}

static void
test_unicode_joiners (void)
{
  /* An apostrophe or hyphen stays only between a letter (or mark) and a letter. */
  UNI ("don't rock-n-roll o'clock mother-in-law", "don't|rock-n-roll|o'clock|mother-in-law");
  UNI ("'tis end- -start 'quoted' ends'", "tis|end|start|quoted|ends");
  UNI ("9-5 covid-19 1st-class 2's x-1 a--b a''b a-'b a'-b",
       "9|5|covid|19|1st-class|2|s|x|1|a|b|a|b|a|b|a|b");
  UNI ("- ' -- '' -'-", "");
  /* The last character of the input ends the word: no look past the end. */
  UNI ("rock-", "rock");
  UNI ("rock'", "rock");
  /* A mark before the joiner counts as part of the letter it combines with. */
  UNI ("cafe\xcc\x81-bar", "cafe\xcc\x81-bar");
  /* The letter after the joiner may be any script's letter. */
  UNI ("l'été o'Привет", "l'été|o'привет");
}

static void
test_unicode_apostrophes (void)
{
  /* U+2019 RIGHT SINGLE QUOTATION MARK is an apostrophe and is written as U+0027; U+2010
   * HYPHEN is a hyphen and is written as U+002D: the same word however it was typed. */
  UNI ("don't don’t DON’T", "don't|don't|don't");
  UNI ("x‐ray x-ray", "x-ray|x-ray");
  /* Quotes around a word are not joiners. */
  UNI ("‘quoted’ ’tis", "quoted|tis");
  /* U+2018, U+02BC (a letter: Lm), U+FF07 (fullwidth, a separator without NFKC). */
  UNI ("don‘t donʼt don＇t", "don|t|donʼt|don|t");
  /* U+2011 NON-BREAKING HYPHEN and U+2013 EN DASH separate. */
  UNI ("x‑ray x–ray", "x|ray|x|ray");
}

static void
test_unicode_casefold (void)
{
  /* Full case folding (CaseFolding.txt C + F). */
  UNI ("Straße STRASSE straße ẞ", "strasse|strasse|strasse|ss");
  UNI ("ΣΊΣΥΦΟΣ σίσυφος", "σίσυφοσ|σίσυφοσ");
  UNI ("ǅemal ǄEMAL", "ǆemal|ǆemal");
  UNI ("ﬁne ΐ", "fine|\xce\xb9\xcc\x88\xcc\x81");
  /* Cherokee folds to its capital letters, both spellings to the same word. */
  UNI ("ᏣᎳᎩ ꮳꮃꭹ", "ᏣᎳᎩ|ᏣᎳᎩ");
  /* Supplementary plane: Deseret. */
  UNI ("𐐀𐐁 𐐨𐐩", "𐐨𐐩|𐐨𐐩");
  /* Dotted capital I folds to i + U+0307, whatever the locale; dotless i stays. */
  UNI ("İstanbul ISTANBUL ılık", "i\xcc\x87stanbul|istanbul|ılık");
  /* U+0345 COMBINING GREEK YPOGEGRAMMENI (a mark) folds to iota, alone or precomposed. */
  UNI ("α\xcd\x85 ᾳ", "αι|αι");
}

static void
test_unicode_marks (void)
{
  /* Combining marks are word characters, even at the start of a run. */
  UNI ("cafe\xcc\x81 \xcc\x81x", "cafe\xcc\x81|\xcc\x81x");
  /* Without NFKC, precomposed and decomposed spellings stay different words. */
  UNI ("café cafe\xcc\x81", "café|cafe\xcc\x81");
  /* Devanagari vowel signs (Mc) keep the word together. */
  UNI ("हिन्दी", "हिन्दी");
}

static void
tally_words (const char *word, gsize len, gpointer user_data)
{
  GHashTable *counts = user_data;
  char *key = g_strndup (word, len);
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, key));

  g_hash_table_replace (counts, key, GUINT_TO_POINTER (n + 1));
}

static void
test_kafka_streams (void)
{
  /* Kafka Streams' WordCountDemo expectations (its test input lines, default mode). */
  static const char *const lines[] = {
    "Apache   Kafka Streams   Example",
    "Using  \t\t Kafka   Streams\tTest Utils",
    "Reading and Writing Kafka Topic",
  };
  static const struct
  {
    const char *word;
    guint count;
  } expected[] = {
    { "kafka", 3 }, { "streams", 2 }, { "apache", 1 }, { "example", 1 },
    { "using", 1 }, { "test", 1 },    { "utils", 1 },  { "reading", 1 },
    { "and", 1 },   { "writing", 1 }, { "topic", 1 },
  };
  g_autoptr (TallyTokenizer) tok = tally_tokenizer_new (NULL);
  g_autoptr (GHashTable) counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    tally_tokenizer_feed (tok, lines[i], strlen (lines[i]), tally_words, counts);
  g_assert_cmpuint (g_hash_table_size (counts), ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpuint (GPOINTER_TO_UINT (g_hash_table_lookup (counts, expected[i].word)), ==,
                      expected[i].count);
}

/* ---------------------------------------------------------------------------------------
 * whitespace mode
 * ------------------------------------------------------------------------------------- */

static void
test_whitespace_basic (void)
{
  WS ("Hello,  World!\tHELLO\nfoo-bar don't", "hello,|world!|hello|foo-bar|don't");
  /* Only ASCII letters are lowercased; other bytes are kept as they are. */
  WS ("ÄÖÜ Straße ΣΊΣΥΦΟΣ İ", "ÄÖÜ|straße|ΣΊΣΥΦΟΣ|İ");
  WS ("\"quoted\" (x) --- ... 3.14", "\"quoted\"|(x)|---|...|3.14");
  WS ("Kafka   Streams\tTest", "kafka|streams|test");
}

/* ASCII lowercasing gives the same bytes for every word length around 16 (one 16-byte
 * step, or byte by byte near the end of the text), whatever follows the word: the bytes
 * just outside A-Z ('@', '[', '`', '{') and non-ASCII bytes stay as they are. Also with a
 * maximum word length that truncates. */
static void
test_whitespace_fold_lengths (void)
{
  static const char pattern[] = "A@Z[a`z{M\xc3\x89N0Kq~Ba";
  const guint maxes[] = { DEFAULT_MAX, 6 };

  for (guint m = 0; m < G_N_ELEMENTS (maxes); m++)
    {
      g_autoptr (TallyTokenizer) tok
          = new_tokenizer (TALLY_TOKENIZER_WHITESPACE, FALSE, maxes[m], 0);

      for (gsize len = 1; len <= 20; len++)
        for (gsize tail = 0; tail <= 20; tail++)
          {
            g_autoptr (GString) text = g_string_new (NULL);
            g_autofree char *word = NULL;
            g_autofree char *expected = NULL;
            g_autofree char *got = NULL;
            gsize keep;

            for (gsize i = 0; i < len; i++)
              g_string_append_c (text, pattern[i % (sizeof pattern - 1)]);
            /* Cut only at a character boundary: a lone byte of É would be invalid. */
            if (((guchar)text->str[len - 1]) == 0xc3)
              continue;
            word = g_strndup (text->str, len);
            keep = MIN (len, maxes[m]);
            while (keep > 0 && ((guchar)word[keep] & 0xc0) == 0x80 && keep < len)
              keep--;
            expected = g_ascii_strdown (word, (gssize)keep);
            if (tail > 0)
              {
                g_string_append_c (text, ' ');
                for (gsize i = 1; i < tail; i++)
                  g_string_append_c (text, 'Q');
                if (tail > 1)
                  {
                    g_autofree char *q = g_strnfill (tail - 1, 'q');
                    g_autofree char *q_kept = g_strndup (q, MIN (tail - 1, maxes[m]));
                    g_autofree char *joined = g_strconcat (expected, "|", q_kept, NULL);

                    g_free (expected);
                    expected = g_steal_pointer (&joined);
                  }
              }
            got = words_of_len (tok, text->str, (gssize)text->len);
            g_assert_cmpstr (got, ==, expected);
          }
    }
}

static void
test_whitespace_separators (void)
{
  g_autoptr (GString) text = g_string_new ("a");
  g_autoptr (GString) expected = g_string_new ("a");
  g_autoptr (TallyTokenizer) tok
      = new_tokenizer (TALLY_TOKENIZER_WHITESPACE, FALSE, DEFAULT_MAX, 0);
  g_autofree char *got = NULL;

  /* Every byte 0x00..0x20 and 0x7F separates, one at a time; so do C1 controls. */
  for (guint b = 0; b <= 0x20; b++)
    {
      g_string_append_c (text, (char)b);
      g_string_append_printf (text, "w%02x", b);
      g_string_append_printf (expected, "|w%02x", b);
    }
  g_string_append (text, "\x7fz\xc2\x85y\xc2\x9fx");
  g_string_append (expected, "|z|y|x");
  got = words_of_len (tok, text->str, (gssize)text->len);
  g_assert_cmpstr (got, ==, expected->str);

  /* Unicode spaces are not separators here: NBSP, EM SPACE, IDEOGRAPHIC SPACE, LINE
   * SEPARATOR stay inside words. */
  WS ("a\xc2\xa0"
      "b c\xe2\x80\x83"
      "d e\xe3\x80\x80"
      "f g\xe2\x80\xa8h",
      "a\xc2\xa0"
      "b|c\xe2\x80\x83"
      "d|e\xe3\x80\x80"
      "f|g\xe2\x80\xa8h");
}

/* ---------------------------------------------------------------------------------------
 * record mode
 * ------------------------------------------------------------------------------------- */

static void
test_record_basic (void)
{
  REC ("  Hello   World  ", "Hello   World");
  REC ("Apache   Kafka Streams   Example", "Apache   Kafka Streams   Example");
  /* Control characters (line ends, tabs) separate; case is kept. */
  REC ("first line\nSecond Line\r\n\n  third\tfourth \r", "first line|Second Line|third|fourth");
  REC ("quit", "quit");
  /* Only U+0020 is trimmed; other spaces are text. */
  REC ("\xc2\xa0x\xc2\xa0", "\xc2\xa0x\xc2\xa0");
  REC (" \t \n   ", "");
}

/* ---------------------------------------------------------------------------------------
 * Every mode
 * ------------------------------------------------------------------------------------- */

static void
check_all_modes (const char *text, gssize len, const char *uni, const char *ws, const char *rec,
                 guint64 invalid)
{
  const char *expected[] = { uni, ws, rec };

  for (guint m = 0; m < 3; m++)
    {
      g_autoptr (TallyTokenizer) tok = new_tokenizer ((TallyTokenizerMode)m, FALSE, DEFAULT_MAX, 0);
      g_autofree char *got = words_of_len (tok, text, len);
      TallyTokenizerStats st;

      g_assert_cmpstr (got, ==, expected[m]);
      tally_tokenizer_get_stats (tok, &st);
      g_assert_cmpuint (st.invalid_bytes, ==, invalid);
      g_assert_cmpuint (st.bytes, ==, len < 0 ? strlen (text) : (gsize)len);
    }
}

static void
test_nul_bytes (void)
{
  static const char text[] = "Hello\0World \0\0 a\0";

  check_all_modes (text, sizeof text - 1, "hello|world|a", "hello|world|a", "Hello|World|a", 0);
  check_all_modes ("\0", 1, "", "", "", 0);
}

static void
test_invalid_utf8 (void)
{
  /* Each invalid byte separates words and is counted; it never reaches a word. */
  /* 0xFF and 0xFE never occur in UTF-8. */
  check_all_modes ("ab\xff"
                   "cd\xfe",
                   -1, "ab|cd", "ab|cd", "ab|cd", 2);
  /* A lone continuation byte. */
  check_all_modes ("ab\x80"
                   "cd",
                   -1, "ab|cd", "ab|cd", "ab|cd", 1);
  /* Truncated sequences: 2 of 3 bytes of "€", 3 of 4 bytes of "😀", then a letter. */
  check_all_modes ("ab\xe2\x82"
                   "cd\xf0\x9f\x98"
                   "ef",
                   -1, "ab|cd|ef", "ab|cd|ef", "ab|cd|ef", 5);
  /* A truncated sequence at the very end. */
  check_all_modes ("ab\xe2\x82", -1, "ab", "ab", "ab", 2);
  /* Overlong forms: C0 80 (NUL), E0 80 AF ('/'), F0 82 82 AC ('€'). */
  check_all_modes ("a\xc0\x80"
                   "b\xe0\x80\xaf"
                   "c\xf0\x82\x82\xac"
                   "d",
                   -1, "a|b|c|d", "a|b|c|d", "a|b|c|d", 9);
  /* UTF-16 surrogates encoded in UTF-8 (CESU-8): ED A0 80 and ED BF BF. */
  check_all_modes ("a\xed\xa0\x80"
                   "b\xed\xbf\xbf"
                   "c",
                   -1, "a|b|c", "a|b|c", "a|b|c", 6);
  /* Beyond U+10FFFF: F4 90 80 80, F5 80 80 80. */
  check_all_modes ("a\xf4\x90\x80\x80"
                   "b\xf5\x80\x80\x80"
                   "c",
                   -1, "a|b|c", "a|b|c", "a|b|c", 8);
  /* Latin-1 text is not UTF-8: "café" with E9. */
  check_all_modes ("caf\xe9 ok", -1, "caf|ok", "caf|ok", "caf|ok", 1);
  /* The largest valid code points next to invalid ones still count. */
  check_all_modes ("\xf4\x8f\xbf\xbf\xff", -1, "", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", 1);
}

static void
test_empty_input (void)
{
  for (guint m = 0; m < 3; m++)
    {
      g_autoptr (TallyTokenizer) tok = new_tokenizer ((TallyTokenizerMode)m, FALSE, DEFAULT_MAX, 0);
      Collected c = { g_ptr_array_new_with_free_func (g_free), DEFAULT_MAX };
      TallyTokenizerStats st;

      g_assert_cmpuint (tally_tokenizer_feed (tok, NULL, 0, collect_word, &c), ==, 0);
      g_assert_cmpuint (tally_tokenizer_feed (tok, "", 0, collect_word, &c), ==, 0);
      g_assert_cmpuint (tally_tokenizer_feed (tok, " \t\r\n\f\v ", 7, collect_word, &c), ==, 0);
      g_assert_cmpuint (c.words->len, ==, 0);
      tally_tokenizer_get_stats (tok, &st);
      g_assert_cmpuint (st.bytes, ==, 7);
      g_assert_cmpuint (st.words, ==, 0);
      g_ptr_array_unref (c.words);
    }
  UNI ("... --- !!! ''' ", "");
}

static void
test_long_words (void)
{
  g_autofree char *a300 = g_strnfill (300, 'a');
  g_autofree char *a256 = g_strnfill (256, 'a');
  g_autoptr (GString) text = g_string_new (NULL);
  TallyTokenizerStats st;

  g_string_printf (text, "x %s y %s z", a300, a256);
  /* unicode and whitespace modes (record mode, which sees one line here, is below). */
  for (guint m = 0; m < 2; m++)
    {
      g_autoptr (TallyTokenizer) t = new_tokenizer ((TallyTokenizerMode)m, FALSE, DEFAULT_MAX,
                                                    TALLY_TOKENIZER_LONG_TRUNCATE);
      g_autoptr (TallyTokenizer) d
          = new_tokenizer ((TallyTokenizerMode)m, FALSE, DEFAULT_MAX, TALLY_TOKENIZER_LONG_DROP);
      g_autofree char *tw = NULL, *dw = NULL, *te = NULL, *de = NULL;

      tw = words_of_len (t, text->str, -1);
      dw = words_of_len (d, text->str, -1);
      te = g_strdup_printf ("x|%s|y|%s|z", a256, a256);
      de = g_strdup_printf ("x|y|%s|z", a256);
      g_assert_cmpstr (tw, ==, te);
      g_assert_cmpstr (dw, ==, de);
      tally_tokenizer_get_stats (t, &st);
      g_assert_cmpuint (st.truncated, ==, 1);
      g_assert_cmpuint (st.dropped, ==, 0);
      g_assert_cmpuint (st.words, ==, 5);
      tally_tokenizer_get_stats (d, &st);
      g_assert_cmpuint (st.truncated, ==, 0);
      g_assert_cmpuint (st.dropped, ==, 1);
      g_assert_cmpuint (st.words, ==, 4);
    }

  /* Truncation ends on a character boundary: "éééé" is 8 bytes; max 5 keeps 2 é. */
  {
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_UNICODE, FALSE, 5, 0);
    g_autoptr (TallyTokenizer) w = new_tokenizer (TALLY_TOKENIZER_WHITESPACE, FALSE, 5, 0);
    g_autofree char *a = words_of_len (t, "éééé ÉÉÉÉ 😀😀 abcde abcdef", -1);
    g_autofree char *b = words_of_len (w, "éééé ÉÉÉÉ 😀😀 ABCDEFG", -1);

    g_assert_cmpstr (a, ==, "éé|éé|abcde|abcde");
    g_assert_cmpstr (b, ==, "éé|ÉÉ|😀|abcde");
    tally_tokenizer_get_stats (t, &st);
    g_assert_cmpuint (st.truncated, ==, 3);
  }
  /* The limit applies to the folded word: "ßßßß" is 8 bytes, folds to 8 bytes "ssssssss". */
  {
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_UNICODE, FALSE, 6, 0);
    g_autoptr (TallyTokenizer) d
        = new_tokenizer (TALLY_TOKENIZER_UNICODE, FALSE, 6, TALLY_TOKENIZER_LONG_DROP);
    g_autofree char *a = words_of_len (t, "ßßß ẞẞẞẞ", -1);
    g_autofree char *b = words_of_len (d, "ßß ẞẞẞẞ", -1);

    /* "ßßß" is 6 bytes but folds to 6 bytes; "ẞẞẞẞ" is 12 bytes, folds to 8. */
    g_assert_cmpstr (a, ==, "ssssss|ssssss");
    g_assert_cmpstr (b, ==, "ssss");
  }
  /* Truncation may leave a joiner at the end. */
  {
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_UNICODE, FALSE, 5, 0);
    g_autofree char *a = words_of_len (t, "rock-n-roll", -1);

    g_assert_cmpstr (a, ==, "rock-");
  }
  /* Record mode: truncated lines lose the spaces the cut leaves at their end. */
  {
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_RECORD, FALSE, 8, 0);
    g_autoptr (TallyTokenizer) d
        = new_tokenizer (TALLY_TOKENIZER_RECORD, FALSE, 8, TALLY_TOKENIZER_LONG_DROP);
    g_autofree char *a = words_of_len (t, "abc     defgh\n12345678\n123456789", -1);
    g_autofree char *b = words_of_len (d, "abc     defgh\n12345678\n123456789", -1);

    g_assert_cmpstr (a, ==, "abc|12345678|12345678");
    g_assert_cmpstr (b, ==, "12345678");
  }
  /* A huge token costs no memory beyond the scratch buffer (checked under ASan/valgrind). */
  {
    gsize n = 8 * 1024 * 1024;
    g_autofree char *huge = g_malloc (n);
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_UNICODE, FALSE, 16, 0);
    g_autofree char *a = NULL;

    for (gsize i = 0; i < n; i++)
      huge[i] = (i & 1) ? 'A' : 'b';
    a = words_of_len (t, huge, (gssize)n);
    g_assert_cmpstr (a, ==, "babababababababa");
  }
}

/* ---------------------------------------------------------------------------------------
 * NFKC
 * ------------------------------------------------------------------------------------- */

static void
test_nfkc (void)
{
  /* Compatibility forms become their plain letters before splitting and folding. */
  check_words (TALLY_TOKENIZER_UNICODE, TRUE, "ﬁne ＡＢＣ ｶﾀｶﾅ x² ① ½",
               "fine|abc|カタカナ|x2|1|1|2");
  check_words (TALLY_TOKENIZER_UNICODE, FALSE, "ＡＢＣ x²", "ａｂｃ|x²");
  /* Composition: decomposed é becomes precomposed. */
  check_words (TALLY_TOKENIZER_UNICODE, TRUE, "cafe\xcc\x81 café", "café|café");
  /* FULLWIDTH APOSTROPHE becomes U+0027, and then joins. */
  check_words (TALLY_TOKENIZER_UNICODE, TRUE, "don＇t", "don't");
  /* In whitespace mode, NFKC turns IDEOGRAPHIC SPACE into U+0020, a separator, and
   * fullwidth capitals into ASCII capitals, which are then lowercased. */
  check_words (TALLY_TOKENIZER_WHITESPACE, TRUE, "ＡＢＣ\xe3\x80\x80ｄｅｆ", "abc|def");
  check_words (TALLY_TOKENIZER_WHITESPACE, FALSE, "ＡＢＣ\xe3\x80\x80ｄｅｆ",
               "ＡＢＣ\xe3\x80\x80ｄｅｆ");
  check_words (TALLY_TOKENIZER_RECORD, TRUE, "\xe3\x80\x80Ｈｉ\xe3\x80\x80", "Hi");
  /* A combining mark composes with the ASCII character before it: < + U+0338 is ≮. */
  check_words (TALLY_TOKENIZER_WHITESPACE, TRUE,
               "a<\xcc\xb8"
               "b =\xcc\xb8",
               "a≮b|≠");
  /* Invalid bytes are still counted and separate words. */
  {
    g_autoptr (TallyTokenizer) t = new_tokenizer (TALLY_TOKENIZER_UNICODE, TRUE, DEFAULT_MAX, 0);
    g_autofree char *a = words_of_len (t,
                                       "ﬁ\xff"
                                       "ﬂ\0x",
                                       9);
    TallyTokenizerStats st;

    g_assert_cmpstr (a, ==, "fi|fl|x");
    tally_tokenizer_get_stats (t, &st);
    g_assert_cmpuint (st.invalid_bytes, ==, 1);
    g_assert_cmpuint (st.bytes, ==, 9);
  }
}

/* ---------------------------------------------------------------------------------------
 * Locale independence
 * ------------------------------------------------------------------------------------- */

static const char turkish_text[] = "İSTANBUL Istanbul ılık IŞIK Diyarbakır";
static const char turkish_expected[] = "i\xcc\x87stanbul|istanbul|ılık|işik|diyarbakır";

static gboolean
locale_available (const char *name)
{
  g_autofree char *saved = g_strdup (setlocale (LC_ALL, NULL));
  gboolean have = setlocale (LC_ALL, name) != NULL;

  setlocale (LC_ALL, saved);
  return have;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    {
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);

          remove_tree (child);
        }
      g_dir_close (dir);
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

static void
test_turkish_locale (void)
{
  g_autofree char *locpath = NULL;

  if (g_test_subprocess ())
    {
      g_autofree char *down = NULL;

      /* Started with LC_ALL=tr_TR.UTF-8, as a user's shell would. */
      g_assert_cmpstr (setlocale (LC_ALL, ""), ==, "tr_TR.UTF-8");
      /* The locale is in effect: GLib's locale-sensitive lowercasing is Turkish here. */
      down = g_utf8_strdown ("I", -1);
      g_assert_cmpstr (down, ==, "ı");
      /* The tokenizer (whose tables are built in this process, under this locale) is not. */
      UNI (turkish_text, turkish_expected);
      return;
    }

  UNI (turkish_text, turkish_expected);
  if (!locale_available ("tr_TR.UTF-8"))
    {
      /* Compile the locale into a temporary directory (localedef needs no root for that)
       * and point glibc at it with LOCPATH. */
      g_autoptr (GError) error = NULL;
      const char *argv[] = { "localedef", "-i", "tr_TR", "-f", "UTF-8", NULL, NULL };
      g_autofree char *target = NULL;
      int status = -1;

      locpath = g_dir_make_tmp ("tally-locale-XXXXXX", &error);
      g_assert_no_error (error);
      target = g_build_filename (locpath, "tr_TR.UTF-8", NULL);
      argv[5] = target;
      if (g_spawn_sync (NULL, (char **)argv, NULL,
                        G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL
                            | G_SPAWN_STDERR_TO_DEV_NULL,
                        NULL, NULL, NULL, NULL, &status, NULL)
          && g_spawn_check_wait_status (status, NULL))
        g_setenv ("LOCPATH", locpath, TRUE);
      if (!locale_available ("tr_TR.UTF-8"))
        {
          remove_tree (locpath);
          g_test_skip ("locale tr_TR.UTF-8 is not installed and localedef could not build it "
                       "(Debian package locales)");
          return;
        }
    }
  g_setenv ("LC_ALL", "tr_TR.UTF-8", TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv ("LC_ALL");
  if (locpath != NULL)
    {
      g_unsetenv ("LOCPATH");
      remove_tree (locpath);
    }
  g_test_trap_assert_passed ();
}

/* ---------------------------------------------------------------------------------------
 * Random input
 * ------------------------------------------------------------------------------------- */

/* A unicode-mode word (not truncated) tokenizes to itself: case folding is idempotent and
 * a folded word keeps its boundaries. */
static void
recheck_word (const char *word, gsize len, gpointer user_data)
{
  TallyTokenizer *again = user_data;
  Collected c = { g_ptr_array_new_with_free_func (g_free), 1024 };

  collect_word (word, len, &c);
  g_ptr_array_set_size (c.words, 0);
  tally_tokenizer_feed (again, word, len, collect_word, &c);
  g_assert_cmpuint (c.words->len, ==, 1);
  g_assert_cmpmem (c.words->pdata[0], strlen (c.words->pdata[0]), word, len);
  g_ptr_array_unref (c.words);
}

static void
test_random (void)
{
  /* Fragments that stress the rules, mixed with random bytes. */
  static const char *const fragments[] = {
    "a", "Z", "'",  "-", " ", "\n",       "\t",           "0",        "é",    "É",    "ß",
    "ẞ", "’", "‐",  "İ", "ı", "\xcc\x81", "\xc2\x85",     "\xc2\xa0", "ﬁ",    "Ꭰ",    "ꭰ",
    "𐐀", "😀", "日", "Σ", "ς", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "\xff", "\x80",
  };
  guint iterations = g_test_thorough () ? 200000 : 20000;

  for (guint m = 0; m < 3; m++)
    for (guint nfkc = 0; nfkc < 2; nfkc++)
      {
        g_autoptr (TallyTokenizer) tok = new_tokenizer ((TallyTokenizerMode)m, nfkc, 8, 0);
        g_autoptr (TallyTokenizer) long_tok = new_tokenizer ((TallyTokenizerMode)m, FALSE, 1024, 0);
        g_autoptr (TallyTokenizer) again = new_tokenizer ((TallyTokenizerMode)m, FALSE, 1024, 0);
        g_autoptr (GString) s = g_string_new (NULL);

        for (guint i = 0; i < iterations / 6; i++)
          {
            guint n = (guint)g_test_rand_int_range (0, 24);

            g_string_truncate (s, 0);
            for (guint j = 0; j < n; j++)
              {
                if (g_test_rand_bit ())
                  g_string_append_c (s, (char)g_test_rand_int_range (0, 256));
                else
                  g_string_append (s,
                                   fragments[g_test_rand_int_range (0, G_N_ELEMENTS (fragments))]);
              }
            {
              Collected c = { g_ptr_array_new_with_free_func (g_free), 8 };

              tally_tokenizer_feed (tok, s->str, s->len, collect_word, &c);
              g_ptr_array_unref (c.words);
            }
            if (m == TALLY_TOKENIZER_UNICODE && !nfkc)
              tally_tokenizer_feed (long_tok, s->str, s->len, recheck_word, again);
          }
      }
}

/* ---------------------------------------------------------------------------------------
 * Position independence
 * ------------------------------------------------------------------------------------- */

/* The tokenizer handles 16 ASCII bytes at a time where it can and one character at a time
 * elsewhere; shifting the text by 0..47 bytes moves every word, joiner, capital and line
 * end across those block boundaries, and must not change a single word. */
static void
test_block_boundaries (void)
{
  static const char *const samples[] = {
    "Rock-n-Roll DON'T stop o'clock 9-5 x- -y a--b Kafka\tStreams\r\nLine two  ",
    "l’été x‐ray café-bar CAFÉ naïve ÀB-cd Straße 日本-語 don’t",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'-'-abc",
    "a'b'c'd'e'f'g'h'i'j'k'l'm'n'o'p'q'r's't'u'v'w'x'y'z A-B-C-D-E-F-G-H-I-J-K",
    "  \x01\x7f\xc2\x85\xff\xe2\x82 mixed\x01"
    "BYTES and\xc2\xa0nbsp    trailing   \n",
  };

  for (guint m = 0; m < 3; m++)
    for (guint i = 0; i < G_N_ELEMENTS (samples); i++)
      {
        g_autoptr (TallyTokenizer) tok
            = new_tokenizer ((TallyTokenizerMode)m, FALSE, DEFAULT_MAX, 0);
        g_autofree char *expected = words_of_len (tok, samples[i], -1);

        for (guint shift = 1; shift < 48; shift++)
          {
            g_autofree char *spaces = g_strnfill (shift, ' ');
            g_autofree char *nuls = g_malloc0 (shift);
            g_autofree char *shifted = g_strconcat (spaces, samples[i], NULL);
            g_autofree char *got = words_of_len (tok, shifted, -1);
            g_autoptr (GString) after_nuls = g_string_new_len (nuls, shift);
            g_autofree char *got_nuls = NULL;

            g_assert_cmpstr (got, ==, expected);
            g_string_append (after_nuls, samples[i]);
            got_nuls = words_of_len (tok, after_nuls->str, (gssize)after_nuls->len);
            g_assert_cmpstr (got_nuls, ==, expected);
          }
      }
}

/* ---------------------------------------------------------------------------------------
 * Agreement with the independent Python reference
 * ------------------------------------------------------------------------------------- */

static gint
compare_counts (gconstpointer a, gconstpointer b, gpointer user_data)
{
  GHashTable *counts = user_data;
  const char *wa = a, *wb = b;
  guint ca = GPOINTER_TO_UINT (g_hash_table_lookup (counts, wa));
  guint cb = GPOINTER_TO_UINT (g_hash_table_lookup (counts, wb));

  if (ca != cb)
    return ca > cb ? -1 : 1;
  return strcmp (wa, wb);
}

static void
test_reference (gconstpointer data)
{
  const char *args = data;
  const char *python = g_getenv ("PYTHON3");
  g_autofree char *found = g_find_program_in_path ("python3");
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "reference", "wordcount.py", NULL);
  g_autofree char *sample = g_test_build_filename (G_TEST_DIST, "data", "tricky.txt", NULL);
  g_autofree char *contents = NULL, *out = NULL, *err = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) argv = NULL;
  g_autoptr (GHashTable) counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GList *keys = NULL;
  g_autoptr (GPtrArray) spawn_argv = g_ptr_array_new ();
  g_autoptr (GString) mine = g_string_new (NULL);
  TallyTokenizerOptions o;
  g_autoptr (TallyTokenizer) tok = NULL;
  gsize len;
  int status;

  if (python == NULL)
    python = found;
  if (python == NULL)
    {
      g_test_skip ("python3 is not installed");
      return;
    }

  /* Parse the same arguments the Python script gets. */
  g_assert_true (g_shell_parse_argv (args, NULL, &argv, NULL));
  tally_tokenizer_options_init (&o);
  for (guint i = 0; argv[i] != NULL; i++)
    {
      if (strcmp (argv[i], "--mode") == 0)
        g_assert_true (tally_tokenizer_mode_from_string (argv[++i], &o.mode, NULL));
      else if (strcmp (argv[i], "--nfkc") == 0)
        o.nfkc = TRUE;
      else if (strcmp (argv[i], "--max-word-bytes") == 0)
        o.max_word_bytes = (guint)g_ascii_strtoull (argv[++i], NULL, 10);
      else if (strcmp (argv[i], "--long-words") == 0)
        g_assert_true (tally_tokenizer_long_words_from_string (argv[++i], &o.long_words, NULL));
      else
        g_assert_not_reached ();
    }
  tok = tally_tokenizer_new (&o);

  g_assert_true (g_file_get_contents (sample, &contents, &len, &error));
  g_assert_no_error (error);
  /* One chunk per line, as `tally count` and Kafka records give them. */
  for (gsize start = 0, i = 0; i <= len; i++)
    if (i == len || contents[i] == '\n')
      {
        tally_tokenizer_feed (tok, contents + start, i - start, tally_words, counts);
        start = i + 1;
      }
  keys = g_list_sort_with_data (g_hash_table_get_keys (counts), compare_counts, counts);
  for (GList *l = keys; l != NULL; l = l->next)
    g_string_append_printf (mine, "%s %u\n", (const char *)l->data,
                            GPOINTER_TO_UINT (g_hash_table_lookup (counts, l->data)));
  /* Enough distinct words that the comparison means something. */
  g_assert_cmpuint (g_list_length (keys), >=, 40);
  g_list_free (keys);

  g_ptr_array_add (spawn_argv, (gpointer)python);
  g_ptr_array_add (spawn_argv, script);
  for (guint i = 0; argv[i] != NULL; i++)
    g_ptr_array_add (spawn_argv, argv[i]);
  g_ptr_array_add (spawn_argv, (gpointer) "--chunk-lines");
  g_ptr_array_add (spawn_argv, sample);
  g_ptr_array_add (spawn_argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **)spawn_argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &error));
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("%s failed: %s\n%s", script, error->message, err);
  g_assert_cmpstr (mine->str, ==, out);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/tokenizer/options", test_options);
  g_test_add_func ("/tokenizer/unicode/basic", test_unicode_basic);
  g_test_add_func ("/tokenizer/unicode/digits", test_unicode_digits);
  g_test_add_func ("/tokenizer/unicode/joiners", test_unicode_joiners);
  g_test_add_func ("/tokenizer/unicode/apostrophes", test_unicode_apostrophes);
  g_test_add_func ("/tokenizer/unicode/casefold", test_unicode_casefold);
  g_test_add_func ("/tokenizer/unicode/marks", test_unicode_marks);
  g_test_add_func ("/tokenizer/unicode/kafka-streams", test_kafka_streams);
  g_test_add_func ("/tokenizer/whitespace/basic", test_whitespace_basic);
  g_test_add_func ("/tokenizer/whitespace/separators", test_whitespace_separators);
  g_test_add_func ("/tokenizer/whitespace/fold-lengths", test_whitespace_fold_lengths);
  g_test_add_func ("/tokenizer/record/basic", test_record_basic);
  g_test_add_func ("/tokenizer/nul-bytes", test_nul_bytes);
  g_test_add_func ("/tokenizer/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/tokenizer/empty-input", test_empty_input);
  g_test_add_func ("/tokenizer/long-words", test_long_words);
  g_test_add_func ("/tokenizer/nfkc", test_nfkc);
  g_test_add_func ("/tokenizer/turkish-locale", test_turkish_locale);
  g_test_add_func ("/tokenizer/random", test_random);
  g_test_add_func ("/tokenizer/block-boundaries", test_block_boundaries);
  g_test_add_data_func ("/tokenizer/reference/unicode", "--mode unicode", test_reference);
  g_test_add_data_func ("/tokenizer/reference/unicode-nfkc", "--mode unicode --nfkc",
                        test_reference);
  g_test_add_data_func ("/tokenizer/reference/unicode-short", "--mode unicode --max-word-bytes 7",
                        test_reference);
  g_test_add_data_func ("/tokenizer/reference/unicode-drop",
                        "--mode unicode --max-word-bytes 7 --long-words drop", test_reference);
  g_test_add_data_func ("/tokenizer/reference/whitespace", "--mode whitespace", test_reference);
  g_test_add_data_func ("/tokenizer/reference/whitespace-short",
                        "--mode whitespace --max-word-bytes 6", test_reference);
  g_test_add_data_func ("/tokenizer/reference/record", "--mode record", test_reference);
  g_test_add_data_func ("/tokenizer/reference/record-short", "--mode record --max-word-bytes 9",
                        test_reference);

  return g_test_run ();
}
