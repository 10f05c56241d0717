/* test-tokenizer-tables.c — checks the two-byte fast path of unicode mode (U+0080..U+07FF)
 * against the general classification, for every code point it covers.
 *
 * feed_unicode() and fold_word() take characters of two UTF-8 bytes through a tight loop
 * over bmp_class and two_byte_fold. This program compiles the tokenizer in (as
 * test-tokenizer-scalar.c does) so that it can read those static tables, and checks, for
 * each code point from U+0080 to U+07FF:
 *
 * - its class in bmp_class equals what char_class()'s general route computes (GLib's
 *   general category through kind_from_type(), the fold table by binary search), and equals
 *   a classification written here from g_unichar_type() alone;
 * - its entry in two_byte_fold is g_utf8_casefold() of the character for a word character
 *   whose folding differs, the character itself otherwise;
 * - the words that tally_tokenizer_feed() emits from texts built around it (the character
 *   twice, between ASCII letters and digits, in a run longer than a 16-byte step, before
 *   a joiner) are the ones these rules give.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "../actors/wordcount/tally-tokenizer.c"

/* Word-character classification from GLib alone (docs/tokenizer.md rule 1: letters,
 * marks and numbers). */
static gboolean
is_word_char (gunichar c)
{
  switch (g_unichar_type (c))
    {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return TRUE;
    default:
      return FALSE;
    }
}

static gboolean
is_number (gunichar c)
{
  GUnicodeType type = g_unichar_type (c);

  return type == G_UNICODE_DECIMAL_NUMBER || type == G_UNICODE_LETTER_NUMBER
         || type == G_UNICODE_OTHER_NUMBER;
}

static void
collect (const char *word, gsize len, gpointer user_data)
{
  GString *out = user_data;

  g_string_append_len (out, word, (gssize)len);
  g_string_append_c (out, '|');
}

static char *
words_of (TallyTokenizer *tok, const GString *text)
{
  GString *out = g_string_new (NULL);

  tally_tokenizer_feed (tok, text->str, text->len, collect, out);
  return g_string_free (out, FALSE);
}

static void
test_two_byte_tables (void)
{
  TallyTokenizerOptions options;
  TallyTokenizer *tok;
  guint words = 0, folding = 0;

  tally_tokenizer_options_init (&options);
  tok = tally_tokenizer_new (&options);

  for (gunichar c = 0x80; c < 0x800; c++)
    {
      char utf8[8] = { 0 };
      int n = g_unichar_to_utf8 (c, utf8);
      guint8 general = kind_from_type (g_unichar_type (c));
      guint8 cls = bmp_class[TWO_BYTE_CP ((guchar)utf8[0], (guchar)utf8[1])];
      const TwoByteFold *t = &two_byte_fold[c];
      g_autofree char *casefolded = g_utf8_casefold (utf8, n);
      g_autofree char *expected_fold = NULL;
      g_autoptr (GString) text = g_string_new (NULL);
      g_autofree char *got = NULL;
      g_autofree char *want = NULL;

      g_assert_cmpint (n, ==, 2);
      g_assert_cmpuint (TWO_BYTE_CP ((guchar)utf8[0], (guchar)utf8[1]), ==, c);
      g_assert_true (TWO_BYTE_LEAD ((guchar)utf8[0]));

      /* The class: the general route, and GLib alone. */
      if (general != KIND_SEPARATOR && fold_lookup (c) != NULL)
        general |= FLAG_FOLDS;
      g_assert_cmpuint (cls, ==, general);
      g_assert_cmpint ((cls & KIND_MASK) != KIND_SEPARATOR, ==, is_word_char (c));
      g_assert_cmpuint (cls & FLAG_JOINER, ==, 0);

      /* The fold. */
      if (is_word_char (c) && strcmp (casefolded, utf8) != 0)
        {
          expected_fold = g_strdup (casefolded);
          g_assert_true (cls & FLAG_FOLDS);
          folding++;
        }
      else
        {
          expected_fold = g_strndup (utf8, (gsize)n);
          g_assert_false (cls & FLAG_FOLDS);
        }
      g_assert_cmpuint (t->len, ==, strlen (expected_fold));
      g_assert_cmpmem (t->utf8, t->len, expected_fold, strlen (expected_fold));

      /* What the tokenizer emits around it. */
      g_string_append_len (text, utf8, n);
      g_string_append_len (text, utf8, n);
      g_string_append (text, " Ab");
      g_string_append_len (text, utf8, n);
      g_string_append (text, "9");
      g_string_append_len (text, utf8, n);
      g_string_append (text, "\n");
      for (int i = 0; i < 20; i++)
        g_string_append_len (text, utf8, n);
      g_string_append (text, "x.");
      g_string_append_len (text, utf8, n);
      /* A joiner is kept after a letter or mark (before a letter), not after a number. */
      g_string_append (text, " ");
      g_string_append_len (text, utf8, n);
      g_string_append (text, "'s ");
      g_string_append_len (text, utf8, n);
      g_string_append (text, "-x");
      got = words_of (tok, text);
      if (is_word_char (c))
        {
          GString *w = g_string_new (NULL);

          g_string_append_printf (w, "%s%s|ab%s9%s|", expected_fold, expected_fold, expected_fold,
                                  expected_fold);
          for (int i = 0; i < 20; i++)
            g_string_append (w, expected_fold);
          g_string_append_printf (w, "x|%s|", expected_fold);
          if (is_number (c))
            g_string_append_printf (w, "%s|s|%s|x|", expected_fold, expected_fold);
          else
            g_string_append_printf (w, "%s's|%s-x|", expected_fold, expected_fold);
          want = g_string_free (w, FALSE);
          words++;
        }
      else
        want = g_strdup ("ab|9|x|s|x|");
      if (g_strcmp0 (got, want) != 0)
        g_test_message ("U+%04X", c);
      g_assert_cmpstr (got, ==, want);
    }
  /* Sanity of the range itself: most of it is letters, and Greek, Cyrillic and Latin
   * capitals fold. */
  g_assert_cmpuint (words, >, 1500);
  g_assert_cmpuint (folding, >, 400);
  tally_tokenizer_free (tok);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tokenizer/tables/two-byte", test_two_byte_tables);
  return g_test_run ();
}
