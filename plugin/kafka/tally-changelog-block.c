/* tally-changelog-block.c — the block codec of tally-changelog-block.h.
 *
 * Encoding walks the entries once, starting a new value when the next entry would pass
 * max_bytes; a base's chunk count is patched into each chunk's header at the end.
 * Decoding reads LEB128 lengths and counts and validates each word before it is set.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-changelog-block.h"

#include <string.h>

#define DELTA_HEADER 2
#define BASE_HEADER (2 + 8 + 4 + 4)
#define KIND_DELTA 'D'
#define KIND_BASE 'B'

static void
put_be (guint8 *out, guint64 value, guint n)
{
  for (guint i = 0; i < n; i++)
    out[i] = (guint8)(value >> (8 * (n - 1 - i)));
}

static guint64
get_be (const guint8 *in, guint n)
{
  guint64 value = 0;

  for (guint i = 0; i < n; i++)
    value = (value << 8) | in[i];
  return value;
}

void
tally_changelog_block_key (guint64 writer, guint64 sequence,
                           guint8 key[TALLY_CHANGELOG_BLOCK_KEY_LEN])
{
  key[0] = '\0';
  key[1] = TALLY_CHANGELOG_BLOCK_KEY;
  put_be (key + 2, writer, 8);
  put_be (key + 10, sequence, 8);
}

gboolean
tally_changelog_block_is_key (const void *key, gsize key_len)
{
  return key != NULL && key_len == TALLY_CHANGELOG_BLOCK_KEY_LEN && ((const char *)key)[0] == '\0'
         && ((const char *)key)[1] == TALLY_CHANGELOG_BLOCK_KEY;
}

guint64
tally_changelog_block_key_sequence (const void *key)
{
  return get_be ((const guint8 *)key + 10, 8);
}

static gsize
varint_len (guint64 value)
{
  gsize n = 1;

  while (value >= 0x80)
    {
      value >>= 7;
      n++;
    }
  return n;
}

static void
append_varint (GByteArray *out, guint64 value)
{
  guint8 buf[10];
  guint n = 0;

  while (value >= 0x80)
    {
      buf[n++] = (guint8)(value | 0x80);
      value >>= 7;
    }
  buf[n++] = (guint8)value;
  g_byte_array_append (out, buf, n);
}

static GByteArray *
start_value (guint64 base_id, guint32 chunk, gsize reserve)
{
  GByteArray *out = g_byte_array_sized_new ((guint)reserve);
  guint8 header[BASE_HEADER];

  header[0] = TALLY_CHANGELOG_BLOCK_VERSION;
  header[1] = base_id != 0 ? KIND_BASE : KIND_DELTA;
  if (base_id == 0)
    {
      g_byte_array_append (out, header, DELTA_HEADER);
      return out;
    }
  put_be (header + 2, base_id, 8);
  put_be (header + 10, chunk, 4);
  put_be (header + 14, 0, 4); /* the number of chunks: patched at the end */
  g_byte_array_append (out, header, BASE_HEADER);
  return out;
}

GPtrArray *
tally_changelog_block_encode (const TallyWordCount *entries, gsize n_entries, guint64 base_id,
                              gsize max_bytes)
{
  g_autoptr (GPtrArray) arrays = g_ptr_array_new ();
  GPtrArray *values = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  gsize header = base_id != 0 ? BASE_HEADER : DELTA_HEADER;
  GByteArray *out = NULL;

  g_return_val_if_fail (n_entries == 0 || entries != NULL, values);

  for (gsize i = 0; i < n_entries; i++)
    {
      gsize need = varint_len (entries[i].len) + entries[i].len + varint_len (entries[i].count);

      if (out != NULL && out->len > header && out->len + need > max_bytes)
        out = NULL;
      if (out == NULL)
        {
          out = start_value (base_id, arrays->len, MIN (max_bytes, 64 * 1024));
          g_ptr_array_add (arrays, out);
        }
      append_varint (out, entries[i].len);
      g_byte_array_append (out, (const guint8 *)entries[i].word, entries[i].len);
      append_varint (out, entries[i].count);
    }
  if (arrays->len == 0 && base_id != 0)
    g_ptr_array_add (arrays, start_value (base_id, 0, BASE_HEADER));
  for (guint i = 0; i < arrays->len; i++)
    {
      GByteArray *a = g_ptr_array_index (arrays, i);

      if (base_id != 0)
        put_be (a->data + 14, arrays->len, 4);
      g_ptr_array_add (values, g_byte_array_free_to_bytes (a));
    }
  return values;
}

static gboolean
read_varint (const guint8 **p, const guint8 *end, guint64 *value)
{
  guint64 v = 0;

  for (guint shift = 0; shift < 64 && *p < end; shift += 7)
    {
      guint8 b = *(*p)++;

      v |= (guint64)(b & 0x7f) << shift;
      if ((b & 0x80) == 0)
        {
          *value = v;
          return TRUE;
        }
    }
  return FALSE;
}

/* Reads the header into @info; returns its length, or 0. */
static gsize
read_header (const guint8 *p, gsize len, TallyChangelogBlockInfo *info)
{
  memset (info, 0, sizeof *info);
  if (p == NULL || len < DELTA_HEADER || p[0] != TALLY_CHANGELOG_BLOCK_VERSION)
    return 0;
  if (p[1] == KIND_DELTA)
    return DELTA_HEADER;
  if (p[1] != KIND_BASE || len < BASE_HEADER)
    return 0;
  info->base = TRUE;
  info->base_id = get_be (p + 2, 8);
  info->chunk = (guint32)get_be (p + 10, 4);
  info->n_chunks = (guint32)get_be (p + 14, 4);
  if (info->base_id == 0 || info->chunk >= info->n_chunks)
    return 0;
  return BASE_HEADER;
}

gboolean
tally_changelog_block_read_info (const void *value, gsize len, TallyChangelogBlockInfo *info)
{
  return read_header (value, len, info) > 0;
}

gboolean
tally_changelog_block_decode (const void *value, gsize len, TallyCountsBuilder *into,
                              TallyChangelogBlockInfo *info)
{
  const guint8 *p = value;
  const guint8 *end = p + len;
  gsize header = read_header (p, len, info);

  if (header == 0)
    return FALSE;
  p += header;

  while (p < end)
    {
      guint64 word_len, count;
      const char *word;

      if (!read_varint (&p, end, &word_len) || word_len == 0 || word_len > (guint64)(end - p))
        return FALSE;
      word = (const char *)p;
      p += word_len;
      if (!read_varint (&p, end, &count) || count == 0 || count > G_MAXINT64
          || memchr (word, '\0', word_len) != NULL
          || !g_utf8_validate (word, (gssize)word_len, NULL))
        return FALSE;
      tally_counts_builder_set_max (into, word, word_len, count);
      info->n_words++;
    }
  return TRUE;
}
