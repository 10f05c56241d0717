/* tally-snapshot-request.c — snapshot requests: parsed from a request record, written
 * back as one, and copied.
 *
 * Parsing never fails: a request whose key or value is bad comes back with its error set
 * and no filters, so the instance answers it with an error snapshot rather than leaving
 * the requester to time out. Unknown members are errors too, so a typo is noticed. The
 * JSON readers are shared with the part decoder (tally-snapshot-private.h).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-request.h"
#include "tally-snapshot-private.h"

#include <string.h>

TallySnapshotRequest *
tally_snapshot_request_new (const char *request_id)
{
  TallySnapshotRequest *request = g_new0 (TallySnapshotRequest, 1);

  request->request_id = request_id != NULL ? g_strdup (request_id) : g_uuid_string_random ();
  request->requested_at_ms = g_get_real_time () / 1000;
  return request;
}

/* The JSON member `window`: "current" | "last" | start ms | {"last": "15m"}. */
static gboolean
parse_window (TallySnapshotRequest *request, JsonNode *node, GError **error)
{
  g_autoptr (GError) local = NULL;
  TallyWindowSelector *w = &request->window;

  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      const char *text = json_node_get_string (node);

      if (strcmp (text, "current") != 0 && strcmp (text, "last") != 0)
        goto bad;
      tally_window_selector_parse (text, w, NULL);
    }
  else if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64
           && json_node_get_int (node) >= 0)
    {
      w->kind = TALLY_WINDOW_SELECT_START;
      w->start_ms = json_node_get_int (node);
    }
  else if (JSON_NODE_HOLDS_OBJECT (node) && json_object_get_size (json_node_get_object (node)) == 1
           && json_object_has_member (json_node_get_object (node), "last"))
    {
      JsonNode *last = json_object_get_member (json_node_get_object (node), "last");

      w->kind = TALLY_WINDOW_SELECT_LAST_DURATION;
      if (!JSON_NODE_HOLDS_VALUE (last) || json_node_get_value_type (last) != G_TYPE_STRING)
        goto bad;
      if (!tally_window_parse_duration (json_node_get_string (last), &w->duration_ms, &local))
        {
          g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                       "request value: member \"window\": %s", local->message);
          return FALSE;
        }
    }
  else
    goto bad;
  request->has_window = TRUE;
  return TRUE;

bad:
  g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
               "request value: member \"window\" must be \"current\", \"last\", a start time "
               "in ms or {\"last\": \"15m\"}");
  return FALSE;
}

/* The shortest exact form of a duration: 15m, 90s, 1500ms. */
static char *
format_duration (gint64 ms)
{
  static const struct
  {
    gint64 ms;
    const char *unit;
  } units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };

  for (gsize i = 0; i < G_N_ELEMENTS (units); i++)
    if (ms % units[i].ms == 0)
      return g_strdup_printf ("%" G_GINT64_FORMAT "%s", ms / units[i].ms, units[i].unit);
  return g_strdup_printf ("%" G_GINT64_FORMAT "ms", ms);
}

/* The optional member `words`: an array of non-empty strings. */
static gboolean
parse_words (TallySnapshotRequest *request, JsonObject *object, GError **error)
{
  JsonNode *node = json_object_get_member (object, "words");
  JsonArray *array;
  guint n;

  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                   "request value: member \"words\" must be an array of strings");
      return FALSE;
    }
  array = json_node_get_array (node);
  n = json_array_get_length (array);
  request->words = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      const char *word
          = JSON_NODE_HOLDS_VALUE (element) && json_node_get_value_type (element) == G_TYPE_STRING
                ? json_node_get_string (element)
                : NULL;

      if (word == NULL || *word == '\0')
        {
          g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                       "request value: \"words\"[%u] must be a non-empty string", i);
          return FALSE;
        }
      request->words[i] = g_strdup (word);
    }
  return TRUE;
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

  root = tally_snapshot_json_parse_object (value, value_len, "request value", error);
  if (root == NULL)
    return FALSE;
  object = json_node_get_object (root);

  json_object_iter_init (&iter, object);
  while (json_object_iter_next (&iter, &name, &node))
    if (strcmp (name, "window") == 0)
      {
        if (!parse_window (request, node, error))
          return FALSE;
      }
    else if (strcmp (name, "top") != 0 && strcmp (name, "prefix") != 0
             && strcmp (name, "min_count") != 0 && strcmp (name, "words") != 0)
      {
        g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID,
                     "request value: unknown member \"%s\" (known: top, prefix, min_count, "
                     "window, words)",
                     name);
        return FALSE;
      }
  if (!parse_words (request, object, error))
    return FALSE;

  if (!tally_snapshot_json_get_uint_member (object, "request value", "top", FALSE, &request->top,
                                            error)
      || !tally_snapshot_json_get_uint_member (object, "request value", "min_count", FALSE,
                                               &request->min_count, error)
      || !tally_snapshot_json_get_string_member (object, "request value", "prefix", TRUE, &prefix,
                                                 error))
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
      request->has_window = FALSE;
      g_clear_pointer (&request->prefix, g_free);
      g_clear_pointer (&request->words, g_strfreev);
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
  if (request->has_window)
    switch (request->window.kind)
      {
      case TALLY_WINDOW_SELECT_CURRENT:
        json_object_set_string_member (object, "window", "current");
        break;
      case TALLY_WINDOW_SELECT_LAST:
        json_object_set_string_member (object, "window", "last");
        break;
      case TALLY_WINDOW_SELECT_START:
        json_object_set_int_member (object, "window", request->window.start_ms);
        break;
      case TALLY_WINDOW_SELECT_LAST_DURATION:
      default:
        {
          JsonObject *last = json_object_new ();
          g_autofree char *duration = format_duration (request->window.duration_ms);

          json_object_set_string_member (last, "last", duration);
          json_object_set_object_member (object, "window", last);
        }
        break;
      }
  if (request->words != NULL)
    {
      JsonArray *words = json_array_sized_new (g_strv_length (request->words));

      for (char **w = request->words; *w != NULL; w++)
        json_array_add_string_element (words, *w);
      json_object_set_array_member (object, "words", words);
    }

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
  options->words = (const char *const *)request->words;
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
  copy->words = g_strdupv (request->words);
  copy->requested_at_ms = request->requested_at_ms;
  copy->error = request->error != NULL ? g_error_copy (request->error) : NULL;
  copy->has_window = request->has_window;
  copy->window = request->window;
  copy->window_start_ms = request->window_start_ms;
  copy->window_end_ms = request->window_end_ms;
  return copy;
}

void
tally_snapshot_request_free (TallySnapshotRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->request_id);
  g_free (request->prefix);
  g_strfreev (request->words);
  g_clear_error (&request->error);
  g_free (request);
}
