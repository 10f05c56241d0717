/* tally-snapshot-part.c — decoding one record of a snapshot.
 *
 * Decoding validates every member a reader uses (types, ranges, `part` below `parts`,
 * every `counts` entry a ["word", count >= 1] pair) and keeps the part's parsed `counts`
 * array rather than building counts per part: the assembler adds the arrays of a complete
 * snapshot to one #TallyCountsBuilder (tally_snapshot_part_add_to_builder()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-part.h"
#include "tally-snapshot-private.h"

#include <string.h>

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
      if (!tally_snapshot_json_get_string_member (item, "snapshot part", "topic", FALSE, &topic,
                                                  NULL)
          || !tally_snapshot_json_get_uint_member (item, "snapshot part", "partition", TRUE,
                                                   &partition, NULL)
          || partition > G_MAXINT32)
        goto bad;
      offset = json_object_get_member (item, "offset");
      if (with_offsets && !tally_snapshot_json_node_is_int (offset))
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

/* The `counts` member without json-glib. Building a JSON tree of a part's 100,000 pairs and
 * walking it took most of `tally snapshot`'s time on a large snapshot (4.5 s to parse and
 * 4.8 s to walk 5,000,000 pairs). A part as Tally writes it is read directly instead:
 * find_counts() locates the value of the top-level member "counts" by a scan that follows
 * strings and nesting, read_counts() reads `[["word",count],...]` from it, and the rest of
 * the object, with that value replaced by `[]`, goes to json-glib as before. Anything else
 * (a \u escape, a number json-glib would read as a double, "counts" twice, ...) makes the
 * fast path give up, and the whole part is read by json-glib: the fast path never accepts
 * what json-glib would refuse, nor reads a value json-glib would read differently. */

static const char *
skip_ws (const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* Past the string starting at @p (a quote); sets @escaped if it holds a backslash. */
static const char *
skip_string (const char *p, const char *end, gboolean *escaped)
{
  for (p++; p < end; p++)
    {
      if (*p == '\\')
        {
          *escaped = TRUE;
          p++;
        }
      else if (*p == '"')
        return p + 1;
    }
  return NULL;
}

/* Past the JSON value starting at @p, or NULL. */
static const char *
skip_value (const char *p, const char *end)
{
  gboolean escaped = FALSE;
  int depth = 0;

  if (p >= end)
    return NULL;
  if (*p == '"')
    return skip_string (p, end, &escaped);
  if (*p != '[' && *p != '{')
    {
      while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n'
             && *p != '\r')
        p++;
      return p;
    }
  while (p < end)
    {
      if (*p == '"')
        {
          p = skip_string (p, end, &escaped);
          if (p == NULL)
            return NULL;
          continue;
        }
      if (*p == '[' || *p == '{')
        depth++;
      else if (*p == ']' || *p == '}')
        {
          if (--depth == 0)
            return p + 1;
        }
      p++;
    }
  return NULL;
}

/* Where the value of the top-level member "counts" is: [*start, *stop). */
static gboolean
find_counts (const char *text, gsize len, gsize *start, gsize *stop)
{
  const char *p = text, *end = text + len;
  gboolean found = FALSE;

  p = skip_ws (p, end);
  if (p >= end || *p != '{')
    return FALSE;
  p = skip_ws (p + 1, end);
  if (p < end && *p == '}')
    return FALSE;
  for (;;)
    {
      const char *key = p, *key_end, *value;
      gboolean escaped = FALSE;

      if (p >= end || *p != '"' || (p = skip_string (p, end, &escaped)) == NULL)
        return FALSE;
      key_end = p;
      value = skip_ws (p, end);
      if (value >= end || *value != ':')
        return FALSE;
      value = skip_ws (value + 1, end);
      p = skip_value (value, end);
      if (p == NULL)
        return FALSE;
      if (!escaped && key_end - key == 8 && memcmp (key, "\"counts\"", 8) == 0)
        {
          if (found)
            return FALSE; /* twice: json-glib decides which one counts */
          found = TRUE;
          *start = (gsize)(value - text);
          *stop = (gsize)(p - text);
        }
      p = skip_ws (p, end);
      if (p < end && *p == ',')
        {
          p = skip_ws (p + 1, end);
          continue;
        }
      if (p < end && *p == '}' && skip_ws (p + 1, end) == end)
        return found;
      return FALSE;
    }
}

/* Reads `[["word",count],...]` (JSON whitespace anywhere between tokens) into @entries and
 * @words. Words with only the escapes \" \\ \/ \b \f \n \r \t; counts of plain digits,
 * 1 to G_MAXINT64. Anything else: FALSE. */
static gboolean
read_counts (const char *p, const char *end, GArray *entries, GString *words)
{
  p = skip_ws (p, end);
  if (p >= end || *p != '[')
    return FALSE;
  p = skip_ws (p + 1, end);
  if (p < end && *p == ']')
    return skip_ws (p + 1, end) == end;
  for (;;)
    {
      FastEntry e = { words->len, 0, 0 };
      guint digits = 0;

      if (p >= end || *p != '[')
        return FALSE;
      p = skip_ws (p + 1, end);
      if (p >= end || *p != '"')
        return FALSE;
      for (p++; p < end && *p != '"'; p++)
        {
          char c = *p;

          if ((guchar)c < 0x20)
            return FALSE;
          if (c == '\\')
            {
              if (++p >= end)
                return FALSE;
              switch (*p)
                {
                case '"':
                  c = '"';
                  break;
                case '\\':
                  c = '\\';
                  break;
                case '/':
                  c = '/';
                  break;
                case 'b':
                  c = '\b';
                  break;
                case 'f':
                  c = '\f';
                  break;
                case 'n':
                  c = '\n';
                  break;
                case 'r':
                  c = '\r';
                  break;
                case 't':
                  c = '\t';
                  break;
                default:
                  return FALSE; /* \u: json-glib's */
                }
            }
          g_string_append_c (words, c);
        }
      if (p >= end)
        return FALSE;
      e.len = (guint32)(words->len - e.word);
      if (e.len == 0)
        return FALSE;
      g_string_append_c (words, '\0');
      p = skip_ws (p + 1, end);
      if (p >= end || *p != ',')
        return FALSE;
      p = skip_ws (p + 1, end);
      if (p >= end || *p < '1' || *p > '9')
        return FALSE;
      for (; p < end && *p >= '0' && *p <= '9'; p++)
        {
          if (++digits > 19 || e.count > (guint64)(G_MAXINT64 - (*p - '0')) / 10)
            return FALSE;
          e.count = e.count * 10 + (guint64)(*p - '0');
        }
      p = skip_ws (p, end);
      if (p >= end || *p != ']')
        return FALSE;
      g_array_append_val (entries, e);
      p = skip_ws (p + 1, end);
      if (p < end && *p == ',')
        {
          p = skip_ws (p + 1, end);
          continue;
        }
      return p < end && *p == ']' && skip_ws (p + 1, end) == end;
    }
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
  guint64 window_start = G_MAXUINT64, window_end = G_MAXUINT64;
  guint n;
  g_autoptr (GArray) fast_entries = NULL;
  g_autoptr (GString) fast_text = NULL;

  if (value == NULL || len == 0)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "snapshot part: empty value");
      return NULL;
    }
  {
    gsize start = 0, stop = 0;
    g_autoptr (GArray) fast = g_array_new (FALSE, FALSE, sizeof (FastEntry));
    g_autoptr (GString) fast_words = g_string_new (NULL);

    if (find_counts (value, len, &start, &stop)
        && g_utf8_validate_len ((const char *)value + start, stop - start, NULL)
        && read_counts ((const char *)value + start, (const char *)value + stop, fast, fast_words))
      {
        g_autoptr (GString) rest = g_string_new_len (value, (gssize)start);

        g_string_append (rest, "[]");
        g_string_append_len (rest, (const char *)value + stop, (gssize)(len - stop));
        root = tally_snapshot_json_parse_object (rest->str, rest->len, what, error);
        if (root == NULL)
          return NULL;
        fast_entries = g_steal_pointer (&fast);
        fast_text = g_steal_pointer (&fast_words);
      }
  }
  if (root == NULL)
    root = tally_snapshot_json_parse_object (value, len, what, error);
  if (root == NULL)
    return NULL;
  object = json_node_get_object (root);

  if (!tally_snapshot_json_get_string_member (object, what, "snapshot_id", FALSE, &s_snapshot,
                                              error)
      || !tally_snapshot_json_get_string_member (object, what, "request_id", FALSE, &s_request,
                                                 error)
      || !tally_snapshot_json_get_string_member (object, what, "instance_id", FALSE, &s_instance,
                                                 error)
      || !tally_snapshot_json_get_string_member (object, what, "prefix", TRUE, &s_prefix, error)
      || !tally_snapshot_json_get_string_member (object, what, "error", TRUE, &s_error, error)
      || !tally_snapshot_json_get_uint_member (object, what, "created_at_ms", TRUE, &created, error)
      || !tally_snapshot_json_get_uint_member (object, what, "taken_ms", TRUE, &taken, error)
      || !tally_snapshot_json_get_uint_member (object, what, "total_words", TRUE,
                                               &header->total_words, error)
      || !tally_snapshot_json_get_uint_member (object, what, "distinct_words", TRUE,
                                               &header->distinct_words, error)
      || !tally_snapshot_json_get_uint_member (object, what, "top", TRUE, &header->top, error)
      || !tally_snapshot_json_get_uint_member (object, what, "min_count", TRUE, &header->min_count,
                                               error)
      || !tally_snapshot_json_get_uint_member (object, what, "part", TRUE, &part_no, error)
      || !tally_snapshot_json_get_uint_member (object, what, "parts", TRUE, &parts, error)
      || !tally_snapshot_json_get_uint_member (object, what, "window_start_ms", FALSE,
                                               &window_start, error)
      || !tally_snapshot_json_get_uint_member (object, what, "window_end_ms", FALSE, &window_end,
                                               error)
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
          || !tally_snapshot_json_node_is_string (word = json_array_get_element (array, 0))
          || *json_node_get_string (word) == '\0'
          || !tally_snapshot_json_node_is_int (count = json_array_get_element (array, 1))
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
  /* Counts over time: both members or neither (tally_snapshot_to_json() writes both). */
  if ((window_start == G_MAXUINT64) != (window_end == G_MAXUINT64) || window_start > window_end)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "%s: window_start_ms and window_end_ms go together, start first", what);
      return NULL;
    }
  header->windowed = window_start != G_MAXUINT64;
  if (header->windowed)
    {
      header->window_start_ms = (gint64)window_start;
      header->window_end_ms = (gint64)window_end;
    }

  part = g_new0 (TallySnapshotPart, 1);
  part->header = g_steal_pointer (&header);
  part->part = (guint)part_no;
  part->parts = (guint)parts;
  if (!tally_snapshot_json_get_uint_member (object, what, "entries", FALSE, &part->entries, error))
    return NULL;
  part->counts = json_array_ref (json_node_get_array (counts));
  part->root = g_steal_pointer (&root);
  part->fast = g_steal_pointer (&fast_entries);
  part->fast_words = g_steal_pointer (&fast_text);
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
  return json_array_get_length (part->counts) + (part->fast != NULL ? part->fast->len : 0);
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
  if (part->fast != NULL)
    g_array_unref (part->fast);
  if (part->fast_words != NULL)
    g_string_free (part->fast_words, TRUE);
  g_free (part);
}

void
tally_snapshot_part_add_to_builder (const TallySnapshotPart *part, TallyCountsBuilder *builder)
{
  guint n = part->counts != NULL ? json_array_get_length (part->counts) : 0;

  for (guint i = 0; i < n; i++)
    {
      JsonArray *pair = json_array_get_array_element (part->counts, i);
      const char *word = json_array_get_string_element (pair, 0);

      tally_counts_builder_add (builder, word, strlen (word),
                                (guint64)json_array_get_int_element (pair, 1));
    }
  for (guint i = 0; part->fast != NULL && i < part->fast->len; i++)
    {
      const FastEntry *e = &g_array_index (part->fast, FastEntry, i);

      tally_counts_builder_add (builder, part->fast_words->str + e->word, e->len, e->count);
    }
}
