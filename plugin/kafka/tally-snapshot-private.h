/* tally-snapshot-private.h — what the snapshot request, snapshot, part and assembler
 * files share and no one else may use.
 *
 * The JSON readers (tally-snapshot.c) check a member's type and range and name it in a
 * %TALLY_SNAPSHOT_FORMAT_ERROR_INVALID message, for the request parser and the part
 * decoder alike. The part's layout is here because the assembler reads its slice of
 * entries directly. None of these is exported from libtally (libtally.map).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <json-glib/json-glib.h>

#include "tally-snapshot-assembler.h"
#include "tally-snapshot-part.h"
#include "tally-snapshot-request.h"
#include "tally-snapshot.h"

G_BEGIN_DECLS

/* One pair of a part read without json-glib: the word at fast_words->str + word, @len
 * bytes, NUL-terminated. */
typedef struct
{
  gsize word; /* offset in fast_words */
  guint32 len;
  guint64 count;
} FastEntry;

/* Decoded part (tally-snapshot-part.c). */
struct _TallySnapshotPart
{
  TallySnapshot *header; /* every member but counts */
  guint part;
  guint parts;
  guint64 entries;   /* entries of the whole snapshot */
  JsonNode *root;    /* keeps `counts` alive */
  JsonArray *counts; /* this part's [word, count] pairs, validated */
  /* Read without json-glib (tally-snapshot-part.c, read_counts()): the pairs when the part
   * was written as Tally writes it; `counts` is then empty. */
  GArray *fast;        /* FastEntry */
  GString *fast_words; /* the words of `fast`, each NUL-terminated */
};

/* Whether @node is a JSON integer (json-glib's gint64) or a JSON string. */
gboolean tally_snapshot_json_node_is_int (JsonNode *node);
gboolean tally_snapshot_json_node_is_string (JsonNode *node);

/* Reads the integer member @name (>= 0) of @object into @out; @what names the value in
 * the error. A missing member is an error when @required, else leaves @out as it is. */
gboolean tally_snapshot_json_get_uint_member (JsonObject *object, const char *what,
                                              const char *name, gboolean required, guint64 *out,
                                              GError **error);

/* Reads the string member @name; with @nullable, a JSON null or a missing member gives
 * %NULL. @out points into @object. */
gboolean tally_snapshot_json_get_string_member (JsonObject *object, const char *what,
                                                const char *name, gboolean nullable,
                                                const char **out, GError **error);

/* Parses @len bytes of UTF-8 JSON whose root must be an object, refusing nesting deeper
 * than 8 before json-glib sees it. Returns: (transfer full) (nullable): the root node. */
JsonNode *tally_snapshot_json_parse_object (const void *data, gsize len, const char *what,
                                            GError **error);

/* Deep copies of @snapshot; the _header one leaves counts NULL, the other shares them (a
 * reference). Returns: (transfer full). */
TallySnapshot *tally_snapshot_copy_header (const TallySnapshot *snapshot);
TallySnapshot *tally_snapshot_copy (const TallySnapshot *snapshot);

/* Adds @part's entries to @builder (tally-snapshot-part.c). */
void tally_snapshot_part_add_to_builder (const TallySnapshotPart *part,
                                         TallyCountsBuilder *builder);

G_END_DECLS
