/* tally-snapshot.c — a snapshot, and its encoding into records of a size limit.
 *
 * Encoding splits a snapshot into parts greedily: it first measures a part with no entries
 * (with the widest possible `part`/`parts` numbers), then adds entries while an upper
 * bound of their serialized size fits under the limit. The bound follows the JSON grammar
 * as json-glib writes it (`"` and `\` take two bytes, control characters and DEL up to
 * six, every other byte one), so a part never exceeds the limit; each generated part is
 * still checked. Entries keep #TallyCounts order, so the concatenation of the parts in
 * order is the snapshot.
 *
 * The format's error domain and the JSON readers shared by the request parser and the part
 * decoder (tally-snapshot-private.h) live here too, beside the format they read.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot.h"
#include "tally-snapshot-private.h"

#include <stdarg.h>
#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-snapshot-format-error-quark, tally_snapshot_format_error) /* clang-format on */

/* ---------------------------------------------------------------------------------------
 * Reading JSON (shared with tally-snapshot-request.c and tally-snapshot-part.c)
 * ------------------------------------------------------------------------------------- */

gboolean
tally_snapshot_json_node_is_int (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_INT64;
}

gboolean
tally_snapshot_json_node_is_string (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_STRING;
}

/* Reads an integer member >= 0. A missing member leaves *out as it is when !required. */
gboolean
tally_snapshot_json_get_uint_member (JsonObject *object, const char *what, const char *name,
                                     gboolean required, guint64 *out, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);
  gint64 value;

  if (node == NULL && !required)
    return TRUE;
  if (!tally_snapshot_json_node_is_int (node))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: member \"%s\" must be an integer", what, name);
      return FALSE;
    }
  value = json_node_get_int (node);
  if (value < 0)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: member \"%s\" must not be negative (%" G_GINT64_FORMAT ")", what, name,
                   value);
      return FALSE;
    }
  *out = (guint64)value;
  return TRUE;
}

/* Reads a string member; with nullable, a JSON null or a missing member gives NULL. */
gboolean
tally_snapshot_json_get_string_member (JsonObject *object, const char *what, const char *name,
                                       gboolean nullable, const char **out, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (nullable && (node == NULL || JSON_NODE_HOLDS_NULL (node)))
    {
      *out = NULL;
      return TRUE;
    }
  if (!tally_snapshot_json_node_is_string (node))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: member \"%s\" must be a string", what, name);
      return FALSE;
    }
  *out = json_node_get_string (node);
  return TRUE;
}

/* The deepest nesting of arrays and objects accepted in a request value or a snapshot
 * part. A part needs 3 (the part object, its `counts` or `offsets` array, a pair or a
 * partition object), a request 1. json-glib's parser recurses once per level with no limit
 * of its own, so 100000 `[` overflowed the stack: deeper input is refused by a byte scan
 * (strings and their escapes skipped) before json-glib sees it. */
#define MAX_JSON_DEPTH 8

/* Reads 4 hex digits at @p into *@value. */
static gboolean
hex4 (const char *p, guint *value)
{
  *value = 0;
  for (int i = 0; i < 4; i++)
    {
      if (!g_ascii_isxdigit (p[i]))
        return FALSE;
      *value = *value * 16 + (guint)g_ascii_xdigit_value (p[i]);
    }
  return TRUE;
}

/* Length of the JSON escape at @p (RFC 8259, section 7: a backslash then one of " \\ / b f n r t,
 * or uXXXX; a UTF-16 surrogate only as a high-low pair), or 0 when it is not one. */
static gsize
json_escape_length (const char *p, gsize len)
{
  guint high, low;

  if (len >= 2 && strchr ("\"\\/bfnrt", p[1]) != NULL && p[1] != '\0')
    return 2;
  if (len < 6 || p[1] != 'u' || !hex4 (p + 2, &high))
    return 0;
  if (high >= 0xDC00 && high <= 0xDFFF)
    return 0;
  if (high < 0xD800 || high > 0xDBFF)
    return 6;
  if (len < 12 || p[6] != '\\' || p[7] != 'u' || !hex4 (p + 8, &low) || low < 0xDC00
      || low > 0xDFFF)
    return 0;
  return 12;
}

/* Sets @error (TALLY_SNAPSHOT_FORMAT_ERROR_INVALID) from @format; returns FALSE. */
static gboolean json_scan_fail (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
json_scan_fail (GError **error, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_propagate_error (error, g_error_new_valist (TALLY_SNAPSHOT_FORMAT_ERROR,
                                                TALLY_SNAPSHOT_FORMAT_ERROR_INVALID, format, args));
  va_end (args);
  return FALSE;
}

/* Index of the first non-space byte at or after @i (@len when there is none). */
static gsize
json_skip_space (const char *data, gsize len, gsize i)
{
  while (i < len && g_ascii_isspace (data[i]))
    i++;
  return i;
}

/* Checks the string whose opening quote is at data[*@i] and moves *@i to its closing
 * quote (to @len when it has none: json-glib reports that). @key, @key_len: the last member
 * name before it, NULL when none. */
static gboolean
json_scan_string (const char *data, gsize len, gsize *i, const char *key, gsize key_len,
                  const char *what, GError **error)
{
  gsize j;

  for (j = *i + 1; j < len && data[j] != '"'; j++)
    if (data[j] == '\\')
      {
        /* json-glib 1.6 also reads escapes JSON does not have (\615 as octal, a lone
         * surrogate), giving strings that are not UTF-8: refuse them (found by
         * tests/fuzz/fuzz-request). */
        gsize n = json_escape_length (data + j, len - j);

        if (n == 0)
          return json_scan_fail (error, "%s: not JSON: invalid escape in a string", what);
        if (n == 6 && memcmp (data + j + 2, "0000", 4) == 0)
          {
            gsize end = j, after;

            /* Is this string itself a member name (its end followed by ':')? */
            while (end < len && data[end] != '"')
              end += data[end] == '\\' ? 2 : 1;
            after = json_skip_space (data, len, end + 1);
            if (key == NULL || (after < len && data[after] == ':'))
              return json_scan_fail (
                  error, "%s: member name holds a NUL character (\\u0000); words never do", what);
            return json_scan_fail (
                error, "%s: member \"%.*s\" holds a NUL character (\\u0000); words never do", what,
                (int)key_len, key);
          }
        j += n - 1;
      }
  *i = j;
  return TRUE;
}

/* Checks the number that starts at data[*@i] and moves *@i to its last byte: an integer
 * must fit a gint64. @key, @key_len as for json_scan_string(). */
static gboolean
json_scan_number (const char *data, gsize len, gsize *i, const char *key, gsize key_len,
                  const char *what, GError **error)
{
  static const char max_digits[] = "9223372036854775807";
  const gsize max_len = sizeof max_digits - 1;
  gsize begin = *i, j = *i, digits;
  gboolean negative = data[j] == '-';

  if (negative)
    j++;
  digits = j;
  while (j < len && g_ascii_isdigit (data[j]))
    j++;
  digits = j - digits;
  if (j < len && (data[j] == '.' || data[j] == 'e' || data[j] == 'E'))
    {
      /* A fraction or an exponent: not an integer, json-glib says so where one is
       * expected. */
      while (j < len && (g_ascii_isdigit (data[j]) || strchr (".eE+-", data[j]) != NULL)
             && data[j] != '\0')
        j++;
    }
  else if (digits > max_len
           || (digits == max_len
               && memcmp (data + j - digits, negative ? "9223372036854775808" : max_digits, digits)
                      > 0))
    {
      if (key == NULL)
        key = "", key_len = 0;
      if (negative)
        return json_scan_fail (error, "%s: member \"%.*s\" must not be negative (%.*s)", what,
                               (int)key_len, key, (int)(j - begin), data + begin);
      return json_scan_fail (error, "%s: member \"%.*s\" is too large: %.*s (at most %s)", what,
                             (int)key_len, key, (int)(j - begin), data + begin, max_digits);
    }
  *i = j - 1;
  return TRUE;
}

/* One scan of JSON text before json-glib parses it. It refuses what json-glib 1.6 gets
 * wrong (each found by tests/fuzz/fuzz-request, or in issue 13):
 * - nesting deeper than MAX_JSON_DEPTH: json-glib recurses without a limit;
 * - a second top-level value (`5{"a":1}`, `{} {}`): json-glib parses it and leaks it;
 * - escapes JSON does not have, and bytes outside strings JSON does not have
 *   (`/"/"\uddu\u`): json-glib accepts some and leaks a buffer on others;
 * - an escaped NUL (\u0000) in a string: json-glib keeps strings as C strings, so
 *   {"prefix":"al\u0000zzz"} became "al". Words never hold NUL, nor do ids or topics;
 * - an integer beyond gint64: json-glib's scanner saturates it and a 23-digit `top` read
 *   as -1. Every integer member of a request or a part is unsigned, so one below
 *   G_MININT64 is reported as negative.
 * Errors name the member: the last string followed by ':' before the value. Strings are
 * skipped as a whole, so their bytes are never taken for structure. */
static gboolean
check_json (const char *data, gsize len, const char *what, GError **error)
{
  guint depth = 0;
  gboolean started = FALSE; /* something seen outside every array and object */
  gboolean ended = FALSE;   /* the outermost array or object closed */
  const char *key = NULL;   /* the last member name */
  gsize key_len = 0;

  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];

      if (depth == 0 && !g_ascii_isspace (c) && (ended || (started && (c == '[' || c == '{'))))
        return json_scan_fail (error, "%s: not JSON: more than one value", what);
      if (c == '"')
        {
          gsize begin = i + 1, after;

          if (!json_scan_string (data, len, &i, key, key_len, what, error))
            return FALSE;
          started |= depth == 0;
          after = json_skip_space (data, len, i + 1);
          if (after < len && data[after] == ':')
            key = data + begin, key_len = i - begin;
        }
      else if (c == '[' || c == '{')
        {
          started = TRUE;
          if (++depth > MAX_JSON_DEPTH)
            return json_scan_fail (error, "%s: arrays and objects nested deeper than %d", what,
                                   MAX_JSON_DEPTH);
        }
      else if ((c == ']' || c == '}') && depth > 0)
        ended = --depth == 0;
      else if (c == '-' || g_ascii_isdigit (c))
        {
          started |= depth == 0;
          if (!json_scan_number (data, len, &i, key, key_len, what, error))
            return FALSE;
        }
      else if (c == '\0' || strchr (" \t\n\r:,]}+.eEtrufalsn", c) == NULL)
        return json_scan_fail (error, "%s: not JSON: unexpected character outside a string", what);
      else if (depth == 0 && !g_ascii_isspace (c))
        started = TRUE;
    }
  return TRUE;
}

JsonNode *
tally_snapshot_json_parse_object (const void *data, gsize len, const char *what, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local_error = NULL;
  JsonNode *root;

  if (!g_utf8_validate_len (data, len, NULL))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: not valid UTF-8", what);
      return NULL;
    }
  if (!check_json (data, len, what, error))
    return NULL;
  if (!json_parser_load_from_data (parser, data, (gssize)len, &local_error))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: not JSON: %s", what, local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: not a JSON object", what);
      return NULL;
    }
  return json_node_ref (root);
}

/* ---------------------------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------------------------- */

TallySnapshot *
tally_snapshot_new (void)
{
  return g_new0 (TallySnapshot, 1);
}

void
tally_snapshot_free (TallySnapshot *snapshot)
{
  if (snapshot == NULL)
    return;
  g_free (snapshot->snapshot_id);
  g_free (snapshot->request_id);
  g_free (snapshot->instance_id);
  g_free (snapshot->prefix);
  g_clear_pointer (&snapshot->offsets, rd_kafka_topic_partition_list_destroy);
  g_clear_pointer (&snapshot->partitions, rd_kafka_topic_partition_list_destroy);
  g_clear_pointer (&snapshot->counts, tally_counts_unref);
  g_free (snapshot->error);
  g_free (snapshot);
}

/* Copies the members other than the counts. */
TallySnapshot *
tally_snapshot_copy_header (const TallySnapshot *snapshot)
{
  TallySnapshot *copy = tally_snapshot_new ();

  copy->snapshot_id = g_strdup (snapshot->snapshot_id);
  copy->request_id = g_strdup (snapshot->request_id);
  copy->instance_id = g_strdup (snapshot->instance_id);
  copy->created_at_ms = snapshot->created_at_ms;
  copy->taken_ms = snapshot->taken_ms;
  copy->total_words = snapshot->total_words;
  copy->distinct_words = snapshot->distinct_words;
  copy->top = snapshot->top;
  copy->prefix = g_strdup (snapshot->prefix);
  copy->min_count = snapshot->min_count;
  if (snapshot->offsets != NULL)
    copy->offsets = rd_kafka_topic_partition_list_copy (snapshot->offsets);
  if (snapshot->partitions != NULL)
    copy->partitions = rd_kafka_topic_partition_list_copy (snapshot->partitions);
  copy->error = g_strdup (snapshot->error);
  copy->windowed = snapshot->windowed;
  copy->window_start_ms = snapshot->window_start_ms;
  copy->window_end_ms = snapshot->window_end_ms;
  return copy;
}

TallySnapshot *
tally_snapshot_copy (const TallySnapshot *snapshot)
{
  TallySnapshot *copy = tally_snapshot_copy_header (snapshot);

  if (snapshot->counts != NULL)
    copy->counts = tally_counts_ref (snapshot->counts);
  return copy;
}

static JsonArray *
partition_list_to_json (const rd_kafka_topic_partition_list_t *list, gboolean with_offsets)
{
  JsonArray *array = json_array_new ();

  for (int i = 0; list != NULL && i < list->cnt; i++)
    {
      JsonObject *object = json_object_new ();

      json_object_set_string_member (object, "topic", list->elems[i].topic);
      json_object_set_int_member (object, "partition", list->elems[i].partition);
      if (with_offsets)
        json_object_set_int_member (object, "offset", list->elems[i].offset);
      json_array_add_object_element (array, object);
    }
  return array;
}

/* Builds one part's object; `counts` is left for the caller to add. */
static JsonObject *
build_part_header (const TallySnapshot *snapshot, gsize n_entries, guint part, guint parts)
{
  JsonObject *object = json_object_new ();

  json_object_set_string_member (object, "snapshot_id", snapshot->snapshot_id);
  json_object_set_string_member (object, "request_id", snapshot->request_id);
  json_object_set_string_member (object, "instance_id", snapshot->instance_id);
  json_object_set_int_member (object, "created_at_ms", snapshot->created_at_ms);
  json_object_set_int_member (object, "taken_ms", snapshot->taken_ms);
  json_object_set_int_member (object, "total_words", (gint64)snapshot->total_words);
  json_object_set_int_member (object, "distinct_words", (gint64)snapshot->distinct_words);
  json_object_set_int_member (object, "entries", (gint64)n_entries);
  json_object_set_int_member (object, "top", (gint64)snapshot->top);
  if (snapshot->prefix != NULL)
    json_object_set_string_member (object, "prefix", snapshot->prefix);
  else
    json_object_set_null_member (object, "prefix");
  json_object_set_int_member (object, "min_count", (gint64)snapshot->min_count);
  if (snapshot->windowed)
    {
      json_object_set_int_member (object, "window_start_ms", snapshot->window_start_ms);
      json_object_set_int_member (object, "window_end_ms", snapshot->window_end_ms);
    }
  json_object_set_array_member (object, "offsets",
                                partition_list_to_json (snapshot->offsets, TRUE));
  json_object_set_array_member (object, "partitions",
                                partition_list_to_json (snapshot->partitions, FALSE));
  json_object_set_int_member (object, "part", part);
  json_object_set_int_member (object, "parts", parts);
  if (snapshot->error != NULL)
    json_object_set_string_member (object, "error", snapshot->error);
  return object;
}

static char *
object_to_data (JsonObject *object, gsize *len)
{
  g_autoptr (JsonNode) root = json_node_init_object (json_node_alloc (), object);
  g_autoptr (JsonGenerator) generator = json_generator_new ();

  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, len);
}

static gsize
decimal_digits (guint64 value)
{
  gsize n = 1;

  while (value >= 10)
    {
      value /= 10;
      n++;
    }
  return n;
}

/* Bytes of `["word",count]` in a compact array: an upper bound of what json-glib writes
 * (`"` and `\` take two bytes, control characters and DEL up to six, every other byte
 * one). Sets @verbatim when json-glib writes the word unchanged between its quotes (no `"`,
 * `\`, byte below 0x20 or DEL: json-glib copies the bytes of UTF-8 characters as they
 * are; a NUL, which json_node_set_string() would cut, is below 0x20) and the count is a
 * JSON integer json-glib writes as it is. One pass over the word decides both. */
static gsize
entry_bound (const TallyWordCount *entry, gboolean *verbatim)
{
  gsize n = 2 + entry->len;
  gboolean escaped = FALSE;

  for (gsize i = 0; i < entry->len; i++)
    {
      guchar c = (guchar)entry->word[i];

      if (G_UNLIKELY (c == '"' || c == '\\'))
        {
          n += 1;
          escaped = TRUE;
        }
      else if (G_UNLIKELY (c < 0x20 || c == 0x7f))
        {
          n += 5;
          escaped = TRUE;
        }
    }
  *verbatim = !escaped && entry->count <= G_MAXINT64;
  return 3 + n + decimal_digits (entry->count);
}

/* Streaming the entries. A part is `{...header...,"counts":[` + entries + `]}`. Both halves
 * of the frame come from json-glib: the header is generated with an empty `counts` array as
 * its last member (json-glib keeps members in insertion order), and the output is cut just
 * inside that array. An entry `["word",count]` whose word json-glib may escape is generated
 * by json-glib too, from one reused two-element array whose string and integer nodes are
 * overwritten entry by entry and appended with json_generator_to_gstring(), so no tree of
 * 100,000 nodes is built, and freed, per part. An entry whose word json-glib copies as it
 * is (no `"`, `\`, control character or DEL; see entry_bound()) is appended directly:
 * the same bytes, `[`, `"`, the word, `"`, `,`, the count in decimal, `]`, without the
 * generator's per-call cost (about 130 ns an entry, most of a 100,000-word snapshot's
 * encoding time). test-snapshot-format checks both paths against json-glib's own output. */
#define PART_TAIL "]}"

typedef struct
{
  JsonArray *pair;
  JsonNode *word;  /* borrowed from pair */
  JsonNode *count; /* borrowed from pair */
  JsonGenerator *generator;
} EntryWriter;

static void
entry_writer_init (EntryWriter *writer)
{
  JsonNode *root;

  writer->pair = json_array_sized_new (2);
  json_array_add_string_element (writer->pair, "");
  json_array_add_int_element (writer->pair, 0);
  writer->word = json_array_get_element (writer->pair, 0);
  writer->count = json_array_get_element (writer->pair, 1);
  /* The generator keeps a copy of the root node that shares the array, so the element
   * nodes set below are the ones it writes. */
  root = json_node_init_array (json_node_alloc (), writer->pair);
  writer->generator = json_generator_new ();
  json_generator_set_root (writer->generator, root);
  json_node_unref (root);
}

static void
entry_writer_clear (EntryWriter *writer)
{
  g_clear_object (&writer->generator);
  g_clear_pointer (&writer->pair, json_array_unref);
}

/* Appends one entry; @verbatim from entry_bound(). */
static void
entry_writer_append (EntryWriter *writer, const TallyWordCount *entry, gboolean verbatim,
                     GString *out)
{
  if (verbatim)
    {
      char digits[24];
      gsize n = sizeof digits;
      guint64 count = entry->count;
      gsize at = out->len;

      do
        {
          digits[--n] = (char)('0' + count % 10);
          count /= 10;
        }
      while (count > 0);
      /* One size change, then plain stores: `["` word `",` digits `]`. */
      g_string_set_size (out, at + 2 + entry->len + 2 + (sizeof digits - n) + 1);
      out->str[at++] = '[';
      out->str[at++] = '"';
      memcpy (out->str + at, entry->word, entry->len);
      at += entry->len;
      out->str[at++] = '"';
      out->str[at++] = ',';
      memcpy (out->str + at, digits + n, sizeof digits - n);
      at += sizeof digits - n;
      out->str[at] = ']';
      return;
    }
  json_node_set_string (writer->word, entry->word);
  json_node_set_int (writer->count, (gint64)entry->count);
  json_generator_to_gstring (writer->generator, out);
}

/* Generates part @part's header with json-glib and returns it cut just inside its empty
 * `counts` array, ready for the entries and then PART_TAIL; %NULL if json-glib did not
 * end it as expected. */
static GString *
part_begin (const TallySnapshot *snapshot, gsize n_entries, guint part, guint parts, gsize reserve)
{
  JsonObject *object = build_part_header (snapshot, n_entries, part, parts);
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  GString *data = g_string_sized_new (reserve);

  json_object_set_array_member (object, "counts", json_array_new ());
  root = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  json_generator_set_root (generator, root);
  json_generator_to_gstring (generator, data);
  if (!g_str_has_suffix (data->str, "[" PART_TAIL))
    {
      g_string_free (data, TRUE);
      return NULL;
    }
  g_string_truncate (data, data->len - strlen (PART_TAIL));
  return data;
}

struct _TallySnapshotEncoder
{
  TallySnapshot *snapshot; /* a copy sharing the counts */
  const TallyWordCount *entries;
  gsize n_entries;
  gsize base; /* bytes of a part without entries */
  gsize max_record_bytes;
  GArray *starts;   /* gsize: the first entry of each part */
  guint8 *verbatim; /* per entry, from entry_bound() */
  gsize bytes;      /* all parts, at most */
};

TallySnapshotEncoder *
tally_snapshot_encoder_new (const TallySnapshot *snapshot, gsize max_record_bytes, GError **error)
{
  g_autoptr (TallySnapshotEncoder) self = NULL;
  gsize used, in_part = 0, zero = 0;
  const TallyWordCount *entries;

  g_return_val_if_fail (snapshot != NULL, NULL);
  g_return_val_if_fail (snapshot->snapshot_id != NULL && snapshot->request_id != NULL
                            && snapshot->instance_id != NULL,
                        NULL);
  g_return_val_if_fail (snapshot->counts != NULL || snapshot->error != NULL, NULL);

  self = g_new0 (TallySnapshotEncoder, 1);
  self->snapshot = tally_snapshot_copy (snapshot);
  self->max_record_bytes = max_record_bytes;
  self->starts = g_array_new (FALSE, FALSE, sizeof (gsize));
  if (snapshot->counts != NULL)
    self->entries = tally_counts_get_entries (snapshot->counts, &self->n_entries);
  entries = self->entries;

  /* The size of a part without entries, with the widest part numbers. */
  {
    JsonObject *object = build_part_header (snapshot, self->n_entries, G_MAXUINT, G_MAXUINT);
    g_autofree char *data = NULL;

    json_object_set_array_member (object, "counts", json_array_new ());
    data = object_to_data (object, &self->base);
    json_object_unref (object);
  }
  if (self->base > max_record_bytes)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                   "a snapshot part without words takes %" G_GSIZE_FORMAT
                   " bytes, more than the record limit of %" G_GSIZE_FORMAT " bytes",
                   self->base, max_record_bytes);
      return NULL;
    }

  /* Greedy split: starts[p] is the index of part p's first entry. */
  self->verbatim = g_new (guint8, MAX (self->n_entries, 1));
  g_array_append_val (self->starts, zero);
  used = self->base;
  for (gsize i = 0; i < self->n_entries; i++)
    {
      gboolean plain;
      gsize cost = entry_bound (&entries[i], &plain);

      self->verbatim[i] = (guint8)plain;
      if (used + cost + (in_part > 0 ? 1 : 0) > max_record_bytes)
        {
          if (in_part == 0 || self->base + cost > max_record_bytes)
            {
              g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR,
                           TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                           "the word of %" G_GUINT32_FORMAT " bytes at rank %" G_GSIZE_FORMAT
                           " does not fit in a record of %" G_GSIZE_FORMAT " bytes",
                           entries[i].len, i + 1, max_record_bytes);
              return NULL;
            }
          g_array_append_val (self->starts, i);
          self->bytes += used;
          used = self->base;
          in_part = 0;
        }
      used += cost + (in_part > 0 ? 1 : 0);
      in_part++;
    }
  self->bytes += used;
  return g_steal_pointer (&self);
}

void
tally_snapshot_encoder_free (TallySnapshotEncoder *self)
{
  if (self == NULL)
    return;
  tally_snapshot_free (self->snapshot);
  if (self->starts != NULL)
    g_array_unref (self->starts);
  g_free (self->verbatim);
  g_free (self);
}

guint
tally_snapshot_encoder_get_n_parts (TallySnapshotEncoder *self)
{
  return self->starts->len;
}

gsize
tally_snapshot_encoder_get_bytes (TallySnapshotEncoder *self)
{
  return self->bytes;
}

GBytes *
tally_snapshot_encoder_encode_part (TallySnapshotEncoder *self, guint p, GError **error)
{
  gsize first, end, len;
  GString *data;
  EntryWriter writer;

  g_return_val_if_fail (self != NULL && p < self->starts->len, NULL);

  first = g_array_index (self->starts, gsize, p);
  end = p + 1 < self->starts->len ? g_array_index (self->starts, gsize, p + 1) : self->n_entries;
  data = part_begin (self->snapshot, self->n_entries, p, self->starts->len,
                     (end - first) * 16 + self->base);
  if (data == NULL)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                   "part %u: json-glib did not end the empty counts array as expected", p);
      return NULL;
    }
  entry_writer_init (&writer);
  for (gsize i = first; i < end; i++)
    {
      if (i > first)
        g_string_append_c (data, ',');
      entry_writer_append (&writer, &self->entries[i], self->verbatim[i], data);
    }
  entry_writer_clear (&writer);
  g_string_append (data, PART_TAIL);
  len = data->len;
  /* The bound above makes this impossible; a record over the limit would be refused by
   * the broker much later, so fail here where the cause is clear. */
  if (len > self->max_record_bytes)
    {
      g_string_free (data, TRUE);
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                   "part %u takes %" G_GSIZE_FORMAT " bytes, over the limit of %" G_GSIZE_FORMAT, p,
                   len, self->max_record_bytes);
      return NULL;
    }
  return g_string_free_to_bytes (data);
}

GPtrArray *
tally_snapshot_encode (const TallySnapshot *snapshot, gsize max_record_bytes, GError **error)
{
  g_autoptr (TallySnapshotEncoder) encoder
      = tally_snapshot_encoder_new (snapshot, max_record_bytes, error);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);

  if (encoder == NULL)
    return NULL;
  for (guint p = 0; p < tally_snapshot_encoder_get_n_parts (encoder); p++)
    {
      GBytes *part = tally_snapshot_encoder_encode_part (encoder, p, error);

      if (part == NULL)
        return NULL;
      g_ptr_array_add (parts, part);
    }
  return g_steal_pointer (&parts);
}

/* The JSON of the whole snapshot, streamed: json-glib writes the members with an empty
 * `counts` array, which is cut open, and the entries are appended as json-glib would
 * write them (pretty: each pair on its own lines, indented by 4 and 6 spaces), through
 * @buffer; @flush empties @buffer whenever it holds FLUSH_BYTES or more (NULL: keep all). */
#define FLUSH_BYTES (256 * 1024)

typedef gboolean (*FlushFunc) (GString *buffer, gpointer data, GError **error);

static gboolean
write_json (const TallySnapshot *snapshot, gboolean pretty, GString *buffer, FlushFunc flush,
            gpointer data, GError **error)
{
  gsize n_entries = 0;
  const TallyWordCount *entries = NULL;
  JsonObject *object;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  const char *tail = pretty ? "]\n}" : "]}";
  EntryWriter writer;
  g_autoptr (GString) pair = g_string_new (NULL);

  if (snapshot->counts != NULL)
    entries = tally_counts_get_entries (snapshot->counts, &n_entries);
  object = build_part_header (snapshot, n_entries, 0, 1);
  json_object_remove_member (object, "part");
  json_object_remove_member (object, "parts");
  json_object_set_array_member (object, "counts", json_array_new ());
  root = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, pretty);
  json_generator_to_gstring (generator, buffer);
  if (n_entries == 0)
    return flush == NULL || flush (buffer, data, error);
  /* json-glib ends with the empty array: `[]}`, or `[]` newline `}` when pretty. */
  g_assert (g_str_has_suffix (buffer->str, tail));
  g_string_truncate (buffer, buffer->len - strlen (tail));

  entry_writer_init (&writer);
  for (gsize i = 0; i < n_entries; i++)
    {
      gboolean verbatim;

      if (i > 0)
        g_string_append_c (buffer, ',');
      entry_bound (&entries[i], &verbatim);
      if (!pretty)
        entry_writer_append (&writer, &entries[i], verbatim, buffer);
      else
        {
          /* `["word",count]` compact, then laid out as json-glib's pretty printer does. */
          const char *comma;

          g_string_truncate (pair, 0);
          entry_writer_append (&writer, &entries[i], verbatim, pair);
          comma = strrchr (pair->str, ',');
          g_string_append (buffer, "\n    [\n      ");
          g_string_append_len (buffer, pair->str + 1, comma - (pair->str + 1));
          g_string_append (buffer, ",\n      ");
          g_string_append_len (buffer, comma + 1, pair->len - 2 - (gsize)(comma - pair->str));
          g_string_append (buffer, "\n    ]");
        }
      if (flush != NULL && buffer->len >= FLUSH_BYTES && !flush (buffer, data, error))
        {
          entry_writer_clear (&writer);
          return FALSE;
        }
    }
  entry_writer_clear (&writer);
  g_string_append (buffer, pretty ? "\n  ]\n}" : "]}");
  return flush == NULL || flush (buffer, data, error);
}

static gboolean
flush_to_stream (GString *buffer, gpointer data, GError **error)
{
  gboolean ok = g_output_stream_write_all (data, buffer->str, buffer->len, NULL, NULL, error);

  g_string_truncate (buffer, 0);
  return ok;
}

gboolean
tally_snapshot_write_json (const TallySnapshot *snapshot, gboolean pretty, GOutputStream *out,
                           GError **error)
{
  g_autoptr (GString) buffer = g_string_sized_new (FLUSH_BYTES + 4096);

  g_return_val_if_fail (snapshot != NULL, FALSE);
  g_return_val_if_fail (G_IS_OUTPUT_STREAM (out), FALSE);
  return write_json (snapshot, pretty, buffer, flush_to_stream, out, error);
}

char *
tally_snapshot_to_json (const TallySnapshot *snapshot, gboolean pretty)
{
  GString *buffer = g_string_new (NULL);

  g_return_val_if_fail (snapshot != NULL, NULL);
  write_json (snapshot, pretty, buffer, NULL, NULL, NULL);
  return g_string_free (buffer, FALSE);
}
