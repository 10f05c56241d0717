/* fuzz-request.c — libFuzzer target: the snapshot request parser,
 * tally_snapshot_request_parse().
 *
 * The first byte of an input is the length of the record key (mod the input size); the
 * key follows, then the value. Every request is returned (never %NULL) with a request id
 * of valid UTF-8; a good request survives tally_snapshot_request_to_json() and a second
 * parse with the same filters.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-format.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (TallySnapshotRequest) request = NULL;
  g_autoptr (TallySnapshotRequest) again = NULL;
  g_autoptr (GBytes) json = NULL;
  gsize key_len;
  const uint8_t *key, *value;
  gsize value_len, json_len;
  const char *json_data;

  if (size < 1)
    return 0;
  key_len = data[0] % size;
  key = data + 1;
  value = key + key_len;
  value_len = size - 1 - key_len;

  request = tally_snapshot_request_parse (key_len > 0 ? key : NULL, key_len,
                                          value_len > 0 ? value : NULL, value_len, 1000);
  if (request == NULL || request->request_id == NULL || request->request_id[0] == '\0'
      || !g_utf8_validate (request->request_id, -1, NULL))
    abort ();
  if (request->error != NULL)
    return 0;

  json = tally_snapshot_request_to_json (request);
  json_data = g_bytes_get_data (json, &json_len);
  again = tally_snapshot_request_parse (request->request_id, strlen (request->request_id),
                                        json_data, json_len, 1000);
  if (again->error != NULL || again->top != request->top || again->min_count != request->min_count
      || g_strcmp0 (again->prefix, request->prefix) != 0
      || strcmp (again->request_id, request->request_id) != 0)
    {
      fprintf (stderr, "request does not survive to_json and parse: %.*s -> %s\n", (int)json_len,
               json_data, again->error ? again->error->message : "(changed)");
      abort ();
    }
  return 0;
}
