/* tally-snapshot-format.c — snapshot requests and snapshot records as JSON (json-glib).
 *
 * Encoding splits a snapshot into parts greedily: it first measures a part with no entries
 * (with the widest possible `part`/`parts` numbers), then adds entries while an upper
 * bound of their serialized size fits under the limit. The bound follows the JSON grammar
 * as json-glib writes it (`"` and `\` take two bytes, control characters and DEL up to
 * six, every other byte one), so a part never exceeds the limit; each generated part is
 * still checked. Entries keep #TallyCounts order, so the concatenation of the parts in
 * order is the snapshot.
 *
 * Decoding validates every member it uses and keeps the part's parsed `counts` array;
 * the assembler adds the arrays of a complete snapshot to a #TallyCountsBuilder. Merging
 * several instances' snapshots of one request sums counts word by word, which is exact
 * because their input partitions are disjoint: a snapshot overlapping an already merged
 * one is refused rather than counted twice.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-format.h"

#include <json-glib/json-glib.h>
#include <string.h>

G_DEFINE_QUARK (tally - snapshot - format - error - quark, tally_snapshot_format_error)

/* ---------------------------------------------------------------------------------------
 * Small JSON helpers
 * ------------------------------------------------------------------------------------- */

static gboolean
node_is_int (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_INT64;
}

static gboolean
node_is_string (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_STRING;
}

/* Reads an integer member >= 0. A missing member leaves *out as it is when !required. */
static gboolean
get_uint_member (JsonObject *object, const char *what, const char *name, gboolean required,
                 guint64 *out, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);
  gint64 value;

  if (node == NULL && !required)
    return TRUE;
  if (!node_is_int (node))
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
static gboolean
get_string_member (JsonObject *object, const char *what, const char *name, gboolean nullable,
                   const char **out, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (nullable && (node == NULL || JSON_NODE_HOLDS_NULL (node)))
    {
      *out = NULL;
      return TRUE;
    }
  if (!node_is_string (node))
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

static gboolean
check_json_depth (const char *data, gsize len, const char *what, GError **error)
{
  gboolean in_string = FALSE;
  guint depth = 0;
  gboolean started = FALSE; /* something seen outside every array and object */
  gboolean ended = FALSE;   /* the outermost array or object closed */

  for (gsize i = 0; i < len; i++)
    if (!in_string && depth == 0 && !g_ascii_isspace (data[i])
        && (ended || (started && (data[i] == '[' || data[i] == '{'))))
      {
        /* json-glib 1.6 parses a second top-level value and leaks it (found by
         * tests/fuzz/fuzz-request with LeakSanitizer: `5{"a":1}`, `{} {}`). */
        g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                     "%s: not JSON: more than one value", what);
        return FALSE;
      }
    else if (in_string)
      {
        if (data[i] == '\\')
          {
            /* json-glib 1.6 also reads escapes JSON does not have (\615 as octal, a lone
             * surrogate), giving strings that are not UTF-8: refuse them (found by
             * tests/fuzz/fuzz-request). */
            gsize n = json_escape_length (data + i, len - i);
            if (n == 0)
              {
                g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR,
                             TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                             "%s: not JSON: invalid escape in a string", what);
                return FALSE;
              }
            i += n - 1;
          }
        else if (data[i] == '"')
          in_string = FALSE;
      }
    else if (data[i] == '"')
      {
        in_string = TRUE;
        started |= depth == 0;
      }
    else if (data[i] == '[' || data[i] == '{')
      {
        started = TRUE;
        if (++depth > MAX_JSON_DEPTH)
          {
            g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                         "%s: arrays and objects nested deeper than %d", what, MAX_JSON_DEPTH);
            return FALSE;
          }
      }
    else if ((data[i] == ']' || data[i] == '}') && depth > 0)
      ended = --depth == 0;
    else if (data[i] == '\0' || strchr (" \t\n\r:,]}-+.0123456789eEtrufalsn", data[i]) == NULL)
      {
        /* Outside strings JSON has only these bytes; json-glib 1.6 leaks a string buffer on
         * some others (`/"/"\uddu\u`, found by tests/fuzz/fuzz-request). */
        g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                     "%s: not JSON: unexpected character outside a string", what);
        return FALSE;
      }
    else if (depth == 0 && !g_ascii_isspace (data[i]))
      started = TRUE;
  return TRUE;
}

static JsonNode *
parse_object (const void *data, gsize len, const char *what, GError **error)
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
  if (!check_json_depth (data, len, what, error))
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
 * Requests
 * ------------------------------------------------------------------------------------- */

TallySnapshotRequest *
tally_snapshot_request_new (const char *request_id)
{
  TallySnapshotRequest *request = g_new0 (TallySnapshotRequest, 1);

  request->request_id = request_id != NULL ? g_strdup (request_id) : g_uuid_string_random ();
  request->requested_at_ms = g_get_real_time () / 1000;
  return request;
}

static gboolean
parse_request_value (TallySnapshotRequest *request, const void *value, gsize value_len,
                     GError **error)
{
  g_autoptr (JsonNode) root = NULL;
  JsonObject *object;
  JsonObjectIter iter;
  const char *name;
  JsonNode *node;
  const char *prefix = NULL;

  root = parse_object (value, value_len, "request value", error);
  if (root == NULL)
    return FALSE;
  object = json_node_get_object (root);

  json_object_iter_init (&iter, object);
  while (json_object_iter_next (&iter, &name, &node))
    if (strcmp (name, "top") != 0 && strcmp (name, "prefix") != 0
        && strcmp (name, "min_count") != 0)
      {
        g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                     "request value: unknown member \"%s\" (known: top, prefix, min_count)", name);
        return FALSE;
      }

  if (!get_uint_member (object, "request value", "top", FALSE, &request->top, error)
      || !get_uint_member (object, "request value", "min_count", FALSE, &request->min_count, error)
      || !get_string_member (object, "request value", "prefix", TRUE, &prefix, error))
    return FALSE;
  request->prefix = prefix != NULL && *prefix != '\0' ? g_strdup (prefix) : NULL;
  return TRUE;
}

TallySnapshotRequest *
tally_snapshot_request_parse (const void *key, gsize key_len, const void *value, gsize value_len,
                              gint64 timestamp_ms)
{
  TallySnapshotRequest *request = g_new0 (TallySnapshotRequest, 1);
  g_autoptr (GError) error = NULL;

  request->requested_at_ms = timestamp_ms >= 0 ? timestamp_ms : g_get_real_time () / 1000;

  if (key != NULL && key_len > 0 && g_utf8_validate_len (key, key_len, NULL)
      && memchr (key, '\0', key_len) == NULL)
    request->request_id = g_strndup (key, key_len);
  else
    {
      request->request_id = g_uuid_string_random ();
      if (key != NULL && key_len > 0)
        g_set_error (&error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                     "request key: not valid UTF-8 text (%" G_GSIZE_FORMAT " bytes)", key_len);
    }

  if (error == NULL && value != NULL && value_len > 0)
    parse_request_value (request, value, value_len, &error);

  if (error != NULL)
    {
      /* A bad request asks for nothing in particular: only its error matters. */
      request->top = 0;
      request->min_count = 0;
      g_clear_pointer (&request->prefix, g_free);
      request->error = g_steal_pointer (&error);
    }
  return request;
}

GBytes *
tally_snapshot_request_to_json (const TallySnapshotRequest *request)
{
  g_autoptr (JsonNode) root = NULL;
  JsonObject *object;
  gsize len = 0;
  char *data;

  g_return_val_if_fail (request != NULL, NULL);

  object = json_object_new ();
  if (request->top > 0)
    json_object_set_int_member (object, "top", (gint64)request->top);
  if (request->prefix != NULL && *request->prefix != '\0')
    json_object_set_string_member (object, "prefix", request->prefix);
  if (request->min_count > 0)
    json_object_set_int_member (object, "min_count", (gint64)request->min_count);

  if (json_object_get_size (object) == 0)
    {
      json_object_unref (object);
      return g_bytes_new (NULL, 0);
    }
  root = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  data = json_to_string (root, FALSE);
  len = strlen (data);
  return g_bytes_new_take (data, len);
}

void
tally_snapshot_request_get_options (const TallySnapshotRequest *request,
                                    TallyCountsOptions *options)
{
  g_return_if_fail (request != NULL && options != NULL);
  options->top = request->top;
  options->prefix = request->prefix;
  options->min_count = request->min_count;
}

TallySnapshotRequest *
tally_snapshot_request_copy (const TallySnapshotRequest *request)
{
  TallySnapshotRequest *copy;

  g_return_val_if_fail (request != NULL, NULL);
  copy = g_new0 (TallySnapshotRequest, 1);
  copy->request_id = g_strdup (request->request_id);
  copy->top = request->top;
  copy->prefix = g_strdup (request->prefix);
  copy->min_count = request->min_count;
  copy->requested_at_ms = request->requested_at_ms;
  copy->error = request->error != NULL ? g_error_copy (request->error) : NULL;
  return copy;
}

void
tally_snapshot_request_free (TallySnapshotRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->request_id);
  g_free (request->prefix);
  g_clear_error (&request->error);
  g_free (request);
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
static TallySnapshot *
snapshot_copy_header (const TallySnapshot *snapshot)
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
  return copy;
}

static TallySnapshot *
snapshot_copy (const TallySnapshot *snapshot)
{
  TallySnapshot *copy = snapshot_copy_header (snapshot);

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

GPtrArray *
tally_snapshot_encode (const TallySnapshot *snapshot, gsize max_record_bytes, GError **error)
{
  const TallyWordCount *entries = NULL;
  gsize n_entries = 0;
  g_autoptr (GArray) starts = g_array_new (FALSE, FALSE, sizeof (gsize));
  g_autofree guint8 *verbatim = NULL; /* per entry, from entry_bound() */
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  gsize base, used, in_part = 0, zero = 0;

  g_return_val_if_fail (snapshot != NULL, NULL);
  g_return_val_if_fail (snapshot->snapshot_id != NULL && snapshot->request_id != NULL
                            && snapshot->instance_id != NULL,
                        NULL);
  g_return_val_if_fail (snapshot->counts != NULL || snapshot->error != NULL, NULL);

  if (snapshot->counts != NULL)
    entries = tally_counts_get_entries (snapshot->counts, &n_entries);

  /* The size of a part without entries, with the widest part numbers. */
  {
    JsonObject *object = build_part_header (snapshot, n_entries, G_MAXUINT, G_MAXUINT);
    g_autofree char *data = NULL;

    json_object_set_array_member (object, "counts", json_array_new ());
    data = object_to_data (object, &base);
    json_object_unref (object);
  }
  if (base > max_record_bytes)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                   "a snapshot part without words takes %" G_GSIZE_FORMAT
                   " bytes, more than the record limit of %" G_GSIZE_FORMAT " bytes",
                   base, max_record_bytes);
      return NULL;
    }

  /* Greedy split: starts[p] is the index of part p's first entry. */
  verbatim = g_new (guint8, MAX (n_entries, 1));
  g_array_append_val (starts, zero);
  used = base;
  for (gsize i = 0; i < n_entries; i++)
    {
      gboolean plain;
      gsize cost = entry_bound (&entries[i], &plain);

      verbatim[i] = (guint8)plain;
      if (used + cost + (in_part > 0 ? 1 : 0) > max_record_bytes)
        {
          if (in_part == 0 || base + cost > max_record_bytes)
            {
              g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR,
                           TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                           "the word of %" G_GUINT32_FORMAT " bytes at rank %" G_GSIZE_FORMAT
                           " does not fit in a record of %" G_GSIZE_FORMAT " bytes",
                           entries[i].len, i + 1, max_record_bytes);
              return NULL;
            }
          g_array_append_val (starts, i);
          used = base;
          in_part = 0;
        }
      used += cost + (in_part > 0 ? 1 : 0);
      in_part++;
    }

  {
    EntryWriter writer;

    entry_writer_init (&writer);
    for (guint p = 0; p < starts->len; p++)
      {
        gsize first = g_array_index (starts, gsize, p);
        gsize end = p + 1 < starts->len ? g_array_index (starts, gsize, p + 1) : n_entries;
        GString *data = part_begin (snapshot, n_entries, p, starts->len, (end - first) * 16 + base);
        gsize len;

        if (data == NULL)
          {
            entry_writer_clear (&writer);
            g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                         "part %u: json-glib did not end the empty counts array as expected", p);
            return NULL;
          }
        for (gsize i = first; i < end; i++)
          {
            if (i > first)
              g_string_append_c (data, ',');
            entry_writer_append (&writer, &entries[i], verbatim[i], data);
          }
        g_string_append (data, PART_TAIL);
        len = data->len;
        /* The bound above makes this impossible; a record over the limit would be refused
         * by the broker much later, so fail here where the cause is clear. */
        if (len > max_record_bytes)
          {
            g_string_free (data, TRUE);
            entry_writer_clear (&writer);
            g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE,
                         "part %u takes %" G_GSIZE_FORMAT
                         " bytes, over the limit of %" G_GSIZE_FORMAT,
                         p, len, max_record_bytes);
            return NULL;
          }
        g_ptr_array_add (parts, g_string_free_to_bytes (data));
      }
    entry_writer_clear (&writer);
  }
  return g_steal_pointer (&parts);
}

char *
tally_snapshot_to_json (const TallySnapshot *snapshot, gboolean pretty)
{
  gsize n_entries = 0;
  const TallyWordCount *entries = NULL;
  JsonObject *object;
  JsonArray *counts;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (JsonGenerator) generator = json_generator_new ();

  g_return_val_if_fail (snapshot != NULL, NULL);

  if (snapshot->counts != NULL)
    entries = tally_counts_get_entries (snapshot->counts, &n_entries);
  object = build_part_header (snapshot, n_entries, 0, 1);
  json_object_remove_member (object, "part");
  json_object_remove_member (object, "parts");
  counts = json_array_sized_new ((guint)n_entries);
  for (gsize i = 0; i < n_entries; i++)
    {
      JsonArray *pair = json_array_sized_new (2);

      json_array_add_string_element (pair, entries[i].word);
      json_array_add_int_element (pair, (gint64)entries[i].count);
      json_array_add_array_element (counts, pair);
    }
  json_object_set_array_member (object, "counts", counts);
  root = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, pretty);
  return json_generator_to_data (generator, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Parts
 * ------------------------------------------------------------------------------------- */

struct _TallySnapshotPart
{
  TallySnapshot *header; /* every member but counts */
  guint part;
  guint parts;
  guint64 entries;   /* entries of the whole snapshot */
  JsonNode *root;    /* keeps `counts` alive */
  JsonArray *counts; /* this part's [word, count] pairs, validated */
};

static gboolean
partition_list_from_json (JsonObject *object, const char *name, gboolean with_offsets,
                          rd_kafka_topic_partition_list_t **out, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);
  JsonArray *array;
  rd_kafka_topic_partition_list_t *list;
  guint n;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "snapshot part: member \"%s\" must be an array", name);
      return FALSE;
    }
  array = json_node_get_array (node);
  n = json_array_get_length (array);
  list = rd_kafka_topic_partition_list_new ((int)n);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      JsonObject *item;
      JsonNode *offset;
      const char *topic;
      guint64 partition = 0;

      if (!JSON_NODE_HOLDS_OBJECT (element))
        goto bad;
      item = json_node_get_object (element);
      if (!get_string_member (item, "snapshot part", "topic", FALSE, &topic, NULL)
          || !get_uint_member (item, "snapshot part", "partition", TRUE, &partition, NULL)
          || partition > G_MAXINT32)
        goto bad;
      offset = json_object_get_member (item, "offset");
      if (with_offsets && !node_is_int (offset))
        goto bad;
      rd_kafka_topic_partition_list_add (list, topic, (int32_t)partition)->offset
          = with_offsets ? json_node_get_int (offset) : RD_KAFKA_OFFSET_INVALID;
    }
  *out = list;
  return TRUE;

bad:
  rd_kafka_topic_partition_list_destroy (list);
  g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
               "snapshot part: member \"%s\" must hold {\"topic\",\"partition\"%s} objects", name,
               with_offsets ? ",\"offset\"" : "");
  return FALSE;
}

TallySnapshotPart *
tally_snapshot_part_decode (const void *value, gsize len, GError **error)
{
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (TallySnapshotPart) part = NULL;
  g_autoptr (TallySnapshot) header = tally_snapshot_new ();
  const char *what = "snapshot part";
  JsonObject *object;
  JsonNode *counts;
  const char *s_snapshot, *s_request, *s_instance, *s_prefix, *s_error;
  guint64 part_no = 0, parts = 0, created = 0, taken = 0;
  guint n;

  if (value == NULL || len == 0)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "snapshot part: empty value");
      return NULL;
    }
  root = parse_object (value, len, what, error);
  if (root == NULL)
    return NULL;
  object = json_node_get_object (root);

  if (!get_string_member (object, what, "snapshot_id", FALSE, &s_snapshot, error)
      || !get_string_member (object, what, "request_id", FALSE, &s_request, error)
      || !get_string_member (object, what, "instance_id", FALSE, &s_instance, error)
      || !get_string_member (object, what, "prefix", TRUE, &s_prefix, error)
      || !get_string_member (object, what, "error", TRUE, &s_error, error)
      || !get_uint_member (object, what, "created_at_ms", TRUE, &created, error)
      || !get_uint_member (object, what, "taken_ms", TRUE, &taken, error)
      || !get_uint_member (object, what, "total_words", TRUE, &header->total_words, error)
      || !get_uint_member (object, what, "distinct_words", TRUE, &header->distinct_words, error)
      || !get_uint_member (object, what, "top", TRUE, &header->top, error)
      || !get_uint_member (object, what, "min_count", TRUE, &header->min_count, error)
      || !get_uint_member (object, what, "part", TRUE, &part_no, error)
      || !get_uint_member (object, what, "parts", TRUE, &parts, error)
      || !partition_list_from_json (object, "offsets", TRUE, &header->offsets, error)
      || !partition_list_from_json (object, "partitions", FALSE, &header->partitions, error))
    return NULL;

  if (*s_snapshot == '\0' || parts == 0 || parts > G_MAXUINT || part_no >= parts)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: bad snapshot_id, part or parts (part %" G_GUINT64_FORMAT
                   " of %" G_GUINT64_FORMAT ")",
                   what, part_no, parts);
      return NULL;
    }

  counts = json_object_get_member (object, "counts");
  if (counts == NULL || !JSON_NODE_HOLDS_ARRAY (counts))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: member \"counts\" must be an array", what);
      return NULL;
    }
  n = json_array_get_length (json_node_get_array (counts));
  for (guint i = 0; i < n; i++)
    {
      JsonNode *pair = json_array_get_element (json_node_get_array (counts), i);
      JsonArray *array;
      JsonNode *word, *count;

      if (!JSON_NODE_HOLDS_ARRAY (pair)
          || json_array_get_length (array = json_node_get_array (pair)) != 2
          || !node_is_string (word = json_array_get_element (array, 0))
          || *json_node_get_string (word) == '\0'
          || !node_is_int (count = json_array_get_element (array, 1))
          || json_node_get_int (count) < 1)
        {
          g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                       "%s: counts[%u] must be a [\"word\", count >= 1] pair", what, i);
          return NULL;
        }
    }

  header->snapshot_id = g_strdup (s_snapshot);
  header->request_id = g_strdup (s_request);
  header->instance_id = g_strdup (s_instance);
  header->prefix = g_strdup (s_prefix);
  header->error = g_strdup (s_error);
  header->created_at_ms = (gint64)created;
  header->taken_ms = (gint64)taken;

  part = g_new0 (TallySnapshotPart, 1);
  part->header = g_steal_pointer (&header);
  part->part = (guint)part_no;
  part->parts = (guint)parts;
  if (!get_uint_member (object, what, "entries", FALSE, &part->entries, error))
    return NULL;
  part->counts = json_array_ref (json_node_get_array (counts));
  part->root = g_steal_pointer (&root);
  return g_steal_pointer (&part);
}

const char *
tally_snapshot_part_get_snapshot_id (const TallySnapshotPart *part)
{
  return part->header->snapshot_id;
}

const char *
tally_snapshot_part_get_request_id (const TallySnapshotPart *part)
{
  return part->header->request_id;
}

const char *
tally_snapshot_part_get_instance_id (const TallySnapshotPart *part)
{
  return part->header->instance_id;
}

guint
tally_snapshot_part_get_part (const TallySnapshotPart *part)
{
  return part->part;
}

guint
tally_snapshot_part_get_parts (const TallySnapshotPart *part)
{
  return part->parts;
}

gsize
tally_snapshot_part_get_n_entries (const TallySnapshotPart *part)
{
  return json_array_get_length (part->counts);
}

const char *
tally_snapshot_part_get_error (const TallySnapshotPart *part)
{
  return part->header->error;
}

void
tally_snapshot_part_free (TallySnapshotPart *part)
{
  if (part == NULL)
    return;
  tally_snapshot_free (part->header);
  g_clear_pointer (&part->counts, json_array_unref);
  g_clear_pointer (&part->root, json_node_unref);
  g_free (part);
}

static void
part_add_to_builder (const TallySnapshotPart *part, TallyCountsBuilder *builder)
{
  guint n = json_array_get_length (part->counts);

  for (guint i = 0; i < n; i++)
    {
      JsonArray *pair = json_array_get_array_element (part->counts, i);
      const char *word = json_array_get_string_element (pair, 0);

      tally_counts_builder_add (builder, word, strlen (word),
                                (guint64)json_array_get_int_element (pair, 1));
    }
}

/* ---------------------------------------------------------------------------------------
 * Assembler
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  guint parts;
  guint received;
  TallySnapshotPart **slots; /* parts[i] or NULL */
} Pending;

static void
pending_free (gpointer data)
{
  Pending *pending = data;

  for (guint i = 0; i < pending->parts; i++)
    tally_snapshot_part_free (pending->slots[i]);
  g_free (pending->slots);
  g_free (pending);
}

struct _TallySnapshotAssembler
{
  char *request_id;                          /* nullable */
  rd_kafka_topic_partition_list_t *expected; /* nullable */
  GHashTable *pending;                       /* snapshot id -> Pending */
  GHashTable *finished;                      /* snapshot ids done (merged or refused) */
  GPtrArray *merged;                         /* TallySnapshot, in completion order */
  GQueue untaken;                            /* TallySnapshot copies not yet taken */
  rd_kafka_topic_partition_list_t *covered;
};

TallySnapshotAssembler *
tally_snapshot_assembler_new (const char *request_id,
                              const rd_kafka_topic_partition_list_t *expected)
{
  TallySnapshotAssembler *self = g_new0 (TallySnapshotAssembler, 1);

  self->request_id = g_strdup (request_id);
  if (expected != NULL)
    self->expected = rd_kafka_topic_partition_list_copy (expected);
  self->pending = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, pending_free);
  self->finished = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->merged = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_snapshot_free);
  self->covered = rd_kafka_topic_partition_list_new (8);
  return self;
}

void
tally_snapshot_assembler_free (TallySnapshotAssembler *self)
{
  if (self == NULL)
    return;
  g_free (self->request_id);
  g_clear_pointer (&self->expected, rd_kafka_topic_partition_list_destroy);
  g_hash_table_unref (self->pending);
  g_hash_table_unref (self->finished);
  g_ptr_array_unref (self->merged);
  g_queue_clear_full (&self->untaken, (GDestroyNotify)tally_snapshot_free);
  rd_kafka_topic_partition_list_destroy (self->covered);
  g_free (self);
}

/* Builds the snapshot of a complete set of parts. */
static TallySnapshot *
assemble (Pending *pending)
{
  TallySnapshot *snapshot = snapshot_copy_header (pending->slots[0]->header);
  g_autoptr (TallyCountsBuilder) builder = NULL;

  if (snapshot->error != NULL)
    return snapshot;
  builder = tally_counts_builder_new ();
  for (guint i = 0; i < pending->parts; i++)
    part_add_to_builder (pending->slots[i], builder);
  snapshot->counts = tally_counts_builder_end (builder);
  return snapshot;
}

static gboolean
check_same_snapshot (const TallySnapshotPart *a, const TallySnapshotPart *b, GError **error)
{
  if (a->parts != b->parts || g_strcmp0 (a->header->request_id, b->header->request_id) != 0
      || g_strcmp0 (a->header->instance_id, b->header->instance_id) != 0)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
                   "snapshot %s: part %u (of %u, request %s, instance %s) disagrees with part %u "
                   "(of %u, request %s, instance %s)",
                   a->header->snapshot_id, b->part, b->parts, b->header->request_id,
                   b->header->instance_id, a->part, a->parts, a->header->request_id,
                   a->header->instance_id);
      return FALSE;
    }
  return TRUE;
}

gboolean
tally_snapshot_assembler_add_part (TallySnapshotAssembler *self, TallySnapshotPart *part,
                                   GError **error)
{
  g_autoptr (TallySnapshotPart) owned = part;
  g_autoptr (TallySnapshot) snapshot = NULL;
  const char *id;
  Pending *pending;

  g_return_val_if_fail (self != NULL && part != NULL, FALSE);

  id = part->header->snapshot_id;
  if (self->request_id != NULL && g_strcmp0 (self->request_id, part->header->request_id) != 0)
    return FALSE;
  if (g_hash_table_contains (self->finished, id))
    return FALSE;

  pending = g_hash_table_lookup (self->pending, id);
  if (pending == NULL)
    {
      pending = g_new0 (Pending, 1);
      pending->parts = part->parts;
      pending->slots = g_new0 (TallySnapshotPart *, part->parts);
      g_hash_table_insert (self->pending, g_strdup (id), pending);
    }
  else
    {
      for (guint i = 0; i < pending->parts; i++)
        if (pending->slots[i] != NULL)
          {
            if (!check_same_snapshot (pending->slots[i], part, error))
              return FALSE;
            break;
          }
    }
  if (pending->slots[part->part] != NULL)
    return FALSE; /* a duplicate, e.g. a part produced again after a lost report */
  pending->slots[part->part] = g_steal_pointer (&owned);
  if (++pending->received < pending->parts)
    return FALSE;

  snapshot = assemble (pending);
  g_hash_table_add (self->finished, g_strdup (snapshot->snapshot_id));
  g_hash_table_remove (self->pending, snapshot->snapshot_id);

  if (snapshot->error != NULL)
    {
      g_queue_push_tail (&self->untaken, snapshot_copy (snapshot));
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE,
                   "instance %s answered request %s with an error: %s", snapshot->instance_id,
                   snapshot->request_id, snapshot->error);
      return FALSE;
    }
  for (int i = 0; snapshot->partitions != NULL && i < snapshot->partitions->cnt; i++)
    {
      const rd_kafka_topic_partition_t *tp = &snapshot->partitions->elems[i];

      if (rd_kafka_topic_partition_list_find (self->covered, tp->topic, tp->partition) != NULL)
        {
          g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP,
                       "snapshot %s of instance %s claims %s [%" G_GINT32_FORMAT
                       "], already covered by another snapshot of request %s; not merged",
                       snapshot->snapshot_id, snapshot->instance_id, tp->topic, tp->partition,
                       snapshot->request_id);
          return FALSE;
        }
    }
  for (int i = 0; snapshot->partitions != NULL && i < snapshot->partitions->cnt; i++)
    rd_kafka_topic_partition_list_add (self->covered, snapshot->partitions->elems[i].topic,
                                       snapshot->partitions->elems[i].partition);
  g_queue_push_tail (&self->untaken, snapshot_copy (snapshot));
  g_ptr_array_add (self->merged, g_steal_pointer (&snapshot));
  return TRUE;
}

TallySnapshot *
tally_snapshot_assembler_take_snapshot (TallySnapshotAssembler *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return g_queue_pop_head (&self->untaken);
}

rd_kafka_topic_partition_list_t *
tally_snapshot_assembler_dup_missing (TallySnapshotAssembler *self)
{
  rd_kafka_topic_partition_list_t *missing = rd_kafka_topic_partition_list_new (4);

  for (int i = 0; self->expected != NULL && i < self->expected->cnt; i++)
    {
      const rd_kafka_topic_partition_t *tp = &self->expected->elems[i];

      if (rd_kafka_topic_partition_list_find (self->covered, tp->topic, tp->partition) == NULL)
        rd_kafka_topic_partition_list_add (missing, tp->topic, tp->partition);
    }
  return missing;
}

gboolean
tally_snapshot_assembler_is_complete (TallySnapshotAssembler *self)
{
  rd_kafka_topic_partition_list_t *missing;
  gboolean complete;

  g_return_val_if_fail (self != NULL, FALSE);
  if (self->expected == NULL)
    return self->merged->len > 0;
  missing = tally_snapshot_assembler_dup_missing (self);
  complete = missing->cnt == 0;
  rd_kafka_topic_partition_list_destroy (missing);
  return complete;
}

guint
tally_snapshot_assembler_get_n_incomplete (TallySnapshotAssembler *self)
{
  return g_hash_table_size (self->pending);
}

static void
append_list (rd_kafka_topic_partition_list_t **into, const rd_kafka_topic_partition_list_t *list)
{
  if (list == NULL)
    return;
  if (*into == NULL)
    *into = rd_kafka_topic_partition_list_new (list->cnt);
  for (int i = 0; i < list->cnt; i++)
    rd_kafka_topic_partition_list_add (*into, list->elems[i].topic, list->elems[i].partition)
        ->offset
        = list->elems[i].offset;
}

TallySnapshot *
tally_snapshot_assembler_dup_merged (TallySnapshotAssembler *self)
{
  g_autoptr (TallyCountsBuilder) builder = NULL;
  TallySnapshot *first, *merged;
  TallyCountsOptions options = { 0 };
  gboolean any_filtered = FALSE;
  guint64 distinct_sum = 0;

  g_return_val_if_fail (self != NULL, NULL);
  if (self->merged->len == 0)
    return NULL;

  first = g_ptr_array_index (self->merged, 0);
  if (self->merged->len == 1)
    return snapshot_copy (first);

  merged = tally_snapshot_new ();
  merged->snapshot_id = g_strdup ("merged");
  merged->instance_id = g_strdup ("merged");
  merged->request_id = g_strdup (first->request_id);
  merged->created_at_ms = first->created_at_ms;
  merged->top = first->top;
  merged->prefix = g_strdup (first->prefix);
  merged->min_count = first->min_count;
  builder = tally_counts_builder_new ();
  for (guint i = 0; i < self->merged->len; i++)
    {
      TallySnapshot *s = g_ptr_array_index (self->merged, i);

      merged->created_at_ms = MIN (merged->created_at_ms, s->created_at_ms);
      merged->taken_ms = MAX (merged->taken_ms, s->taken_ms);
      /* Saturates at G_MAXINT64 like tally_counts_get_total(): JSON numbers are gint64. */
      merged->total_words = MIN (merged->total_words + MIN (s->total_words, (guint64)G_MAXINT64),
                                 (guint64)G_MAXINT64);
      distinct_sum += s->distinct_words;
      if (tally_counts_get_n_words (s->counts) != s->distinct_words)
        any_filtered = TRUE;
      append_list (&merged->offsets, s->offsets);
      append_list (&merged->partitions, s->partitions);
      tally_counts_builder_add_counts (builder, s->counts);
    }
  if (!any_filtered)
    merged->distinct_words = tally_counts_builder_get_n_words (builder);
  else
    merged->distinct_words = distinct_sum;
  options.top = merged->top;
  options.prefix = merged->prefix;
  options.min_count = merged->min_count;
  merged->counts = tally_counts_builder_end_filtered (builder, &options);
  return merged;
}
