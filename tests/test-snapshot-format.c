/* test-snapshot-format.c — snapshot requests and parts: JSON round trips, splitting under
 * the record limit, reassembly in any order, duplicates, merging instances.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-format.h"
#include "tally-test-util.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* librdkafka defines no cleanup functions; this file is the only user here. */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (rd_kafka_topic_partition_list_t,
                               rd_kafka_topic_partition_list_destroy)

/* A snapshot of @counts with fixed ids, owning input partitions @first..@last of "in". */
static TallySnapshot *
make_snapshot (const char *snapshot_id, const char *instance_id, TallyCounts *counts, int first,
               int last)
{
  TallySnapshot *snapshot = tally_snapshot_new ();

  snapshot->snapshot_id = g_strdup (snapshot_id);
  snapshot->request_id = g_strdup ("req-1");
  snapshot->instance_id = g_strdup (instance_id);
  snapshot->created_at_ms = 1790000000123;
  snapshot->taken_ms = 7;
  snapshot->total_words = tally_counts_get_total (counts);
  snapshot->distinct_words = tally_counts_get_n_words (counts);
  snapshot->offsets = rd_kafka_topic_partition_list_new (4);
  snapshot->partitions = rd_kafka_topic_partition_list_new (4);
  for (int p = first; p <= last; p++)
    {
      rd_kafka_topic_partition_list_add (snapshot->offsets, "in", p)->offset = 100 + p;
      rd_kafka_topic_partition_list_add (snapshot->partitions, "in", p);
    }
  snapshot->counts = tally_counts_ref (counts);
  return snapshot;
}

static void
assert_lists_equal (const rd_kafka_topic_partition_list_t *a,
                    const rd_kafka_topic_partition_list_t *b)
{
  g_assert_cmpint (a->cnt, ==, b->cnt);
  for (int i = 0; i < a->cnt; i++)
    {
      g_assert_cmpstr (a->elems[i].topic, ==, b->elems[i].topic);
      g_assert_cmpint (a->elems[i].partition, ==, b->elems[i].partition);
      g_assert_cmpint (a->elems[i].offset, ==, b->elems[i].offset);
    }
}

static TallySnapshotPart *
decode_bytes (GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const void *data = g_bytes_get_data (bytes, &len);
  TallySnapshotPart *part = tally_snapshot_part_decode (data, len, &error);

  g_assert_no_error (error);
  g_assert_nonnull (part);
  return part;
}

static void
test_round_trip (void)
{
  static const char *const words[] = { "kafka", "streams", "apache", "\"quoted\\\"", "é\t€" };
  static const guint64 values[] = { 3, 2, 1, 1, G_GUINT64_CONSTANT (9007199254740993) };
  g_autoptr (TallyCounts) counts = tally_test_counts_new (words, values, G_N_ELEMENTS (words));
  g_autoptr (TallySnapshot) snapshot = make_snapshot ("snap-1", "inst-a", counts, 0, 2);
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new ("req-1", NULL);
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  TallySnapshotPart *part;

  snapshot->top = 10;
  snapshot->prefix = g_strdup ("k");
  snapshot->min_count = 1;
  parts = tally_snapshot_encode (snapshot, 1000000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, ==, 1);

  part = decode_bytes (g_ptr_array_index (parts, 0));
  g_assert_cmpstr (tally_snapshot_part_get_snapshot_id (part), ==, "snap-1");
  g_assert_cmpstr (tally_snapshot_part_get_request_id (part), ==, "req-1");
  g_assert_cmpstr (tally_snapshot_part_get_instance_id (part), ==, "inst-a");
  g_assert_cmpuint (tally_snapshot_part_get_part (part), ==, 0);
  g_assert_cmpuint (tally_snapshot_part_get_parts (part), ==, 1);
  g_assert_cmpuint (tally_snapshot_part_get_n_entries (part), ==, 5);
  g_assert_null (tally_snapshot_part_get_error (part));

  g_assert_true (tally_snapshot_assembler_add_part (assembler, part, &error));
  g_assert_no_error (error);
  g_assert_true (tally_snapshot_assembler_is_complete (assembler));
  back = tally_snapshot_assembler_take_snapshot (assembler);
  g_assert_nonnull (back);
  g_assert_null (tally_snapshot_assembler_take_snapshot (assembler));

  g_assert_cmpstr (back->snapshot_id, ==, "snap-1");
  g_assert_cmpstr (back->request_id, ==, "req-1");
  g_assert_cmpstr (back->instance_id, ==, "inst-a");
  g_assert_cmpint (back->created_at_ms, ==, 1790000000123);
  g_assert_cmpint (back->taken_ms, ==, 7);
  g_assert_cmpuint (back->total_words, ==, 9007199254741000);
  g_assert_cmpuint (back->distinct_words, ==, 5);
  g_assert_cmpuint (back->top, ==, 10);
  g_assert_cmpstr (back->prefix, ==, "k");
  g_assert_cmpuint (back->min_count, ==, 1);
  g_assert_null (back->error);
  assert_lists_equal (back->offsets, snapshot->offsets);
  g_assert_cmpint (back->partitions->cnt, ==, 3);
  g_assert_cmpint (back->partitions->elems[2].partition, ==, 2);
  g_assert_cmpint (back->partitions->elems[2].offset, ==, RD_KAFKA_OFFSET_INVALID);
  tally_test_assert_counts_equal (back->counts, counts);

  /* The whole-snapshot JSON of `tally snapshot --json`: no part numbers, every entry. */
  {
    g_autofree char *json = tally_snapshot_to_json (back, FALSE);
    g_autoptr (JsonNode) root = json_from_string (json, &error);
    JsonObject *object;
    JsonArray *pairs;

    g_assert_no_error (error);
    object = json_node_get_object (root);
    g_assert_false (json_object_has_member (object, "part"));
    g_assert_false (json_object_has_member (object, "parts"));
    g_assert_cmpstr (json_object_get_string_member (object, "snapshot_id"), ==, "snap-1");
    g_assert_cmpint (json_object_get_int_member (object, "entries"), ==, 5);
    pairs = json_object_get_array_member (object, "counts");
    g_assert_cmpuint (json_array_get_length (pairs), ==, 5);
    g_assert_cmpstr (json_array_get_string_element (json_array_get_array_element (pairs, 0), 0), ==,
                     "é\t€");
  }
}

/* "w000000" .. with count 1 + i % 1000: 200,000 distinct words. */
static TallyCounts *
many_words (guint n, guint prefix)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  for (guint i = 0; i < n; i++)
    {
      char word[32];
      int len = g_snprintf (word, sizeof word, "w%u_%06u", prefix, i);

      tally_counts_builder_add (builder, word, (gsize)len, 1 + i % 1000);
    }
  return tally_counts_builder_end (builder);
}

static void
test_split_200k (void)
{
  g_autoptr (TallyCounts) counts = many_words (200000, 0);
  g_autoptr (TallySnapshot) snapshot = make_snapshot ("snap-big", "inst-a", counts, 0, 3);
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  const gsize limit = 16384;
  gsize total_entries = 0;

  parts = tally_snapshot_encode (snapshot, limit, &error);
  g_assert_no_error (error);
  /* The parts hold at least every entry's `["word",count],` bytes. */
  {
    gsize n, payload = 0;
    const TallyWordCount *e = tally_counts_get_entries (counts, &n);

    for (gsize i = 0; i < n; i++)
      payload += 6 + e[i].len + (gsize)g_snprintf (NULL, 0, "%" G_GUINT64_FORMAT, e[i].count);
    g_assert_cmpuint (payload, >, 3000000);
    g_assert_cmpuint ((gsize)parts->len * limit, >=, payload);
    g_assert_cmpuint (parts->len, <, payload / (limit - 2048) + 1);
  }

  /* Add the parts last to first: nothing completes before part 0 comes. */
  for (guint i = parts->len; i-- > 0;)
    {
      GBytes *bytes = g_ptr_array_index (parts, i);
      TallySnapshotPart *part;
      gboolean done;

      g_assert_cmpuint (g_bytes_get_size (bytes), <=, limit);
      part = decode_bytes (bytes);
      g_assert_cmpuint (tally_snapshot_part_get_part (part), ==, i);
      g_assert_cmpuint (tally_snapshot_part_get_parts (part), ==, parts->len);
      total_entries += tally_snapshot_part_get_n_entries (part);
      done = tally_snapshot_assembler_add_part (assembler, part, &error);
      g_assert_no_error (error);
      g_assert_cmpint (done, ==, i == 0);
      g_assert_cmpint (tally_snapshot_assembler_is_complete (assembler), ==, i == 0);
    }
  g_assert_cmpuint (total_entries, ==, 200000);
  /* A #TallySnapshotEncoder writes the same parts one at a time, in any order and again,
   * and knows their total size before writing any, within the width of the part numbers
   * (measured as the widest, 10 digits each). */
  {
    g_autoptr (TallySnapshotEncoder) encoder = tally_snapshot_encoder_new (snapshot, limit, &error);
    gsize bytes = 0;

    g_assert_no_error (error);
    g_assert_cmpuint (tally_snapshot_encoder_get_n_parts (encoder), ==, parts->len);
    for (guint round = 0; round < 2; round++)
      for (guint i = parts->len; i-- > 0;)
        {
          g_autoptr (GBytes) again = tally_snapshot_encoder_encode_part (encoder, i, &error);

          g_assert_no_error (error);
          g_assert_true (g_bytes_equal (again, g_ptr_array_index (parts, i)));
          if (round == 0)
            bytes += g_bytes_get_size (again);
        }
    g_assert_cmpuint (tally_snapshot_encoder_get_bytes (encoder), >=, bytes);
    g_assert_cmpuint (tally_snapshot_encoder_get_bytes (encoder), <=, bytes + parts->len * 20);
  }
  back = tally_snapshot_assembler_dup_merged (assembler);
  g_assert_cmpuint (tally_counts_get_n_words (back->counts), ==, 200000);
  g_assert_cmpuint (tally_counts_get_total (back->counts), ==, tally_counts_get_total (counts));
  tally_test_assert_counts_equal (back->counts, counts);
  g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 0);
}

/* The `counts` array of an encoded part is byte for byte what json-glib's generator writes
 * for the same pairs, whatever bytes the words hold (printable ASCII is appended without
 * the generator, everything else goes through it) and however large the counts. */
static void
test_counts_as_json_glib_writes_them (void)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (TallySnapshot) snapshot = NULL;
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonArray) pairs = json_array_new ();
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *expected = NULL;
  const guint64 big[] = { 1, 9, 10, 99, 100, 4294967296u, 1234567890123456789u };
  const char *const plain[] = { "word", "a b", "~{}[]:,", "0", "x-y_z.", "'single'" };
  const gunichar wide[] = { 0x80,   0xa0,   0xe9,   0x7ff,   0x800,   0x2028,
                            0x2029, 0xfeff, 0xfffd, 0x10000, 0x1f600, 0x10ffff };
  const TallyWordCount *entries;
  gsize n, len;
  const char *data;

  /* Every ASCII character but NUL inside a word, some wider UTF-8 ones (words are valid
   * UTF-8), and words of printable ASCII with counts of every width. */
  for (gunichar c = 1; c < 0x80; c++)
    {
      char word[3] = { 'a', (char)c, 'z' };

      tally_counts_builder_add (builder, word, sizeof word, 1 + c);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (wide); i++)
    {
      char word[8] = "a";
      gsize len = 1 + (gsize)g_unichar_to_utf8 (wide[i], word + 1);

      word[len++] = 'z';
      tally_counts_builder_add (builder, word, len, 2 + i);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (plain); i++)
    for (gsize j = 0; j < G_N_ELEMENTS (big); j++)
      {
        g_autofree char *word = g_strdup_printf ("%s%" G_GSIZE_FORMAT, plain[i], j);

        tally_counts_builder_add (builder, word, strlen (word), big[j]);
      }
  counts = tally_counts_builder_end (builder);
  snapshot = make_snapshot ("snap-bytes", "inst-a", counts, 0, 0);
  parts = tally_snapshot_encode (snapshot, 1000000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, ==, 1);

  entries = tally_counts_get_entries (counts, &n);
  g_assert_cmpuint (n, ==, 127 + G_N_ELEMENTS (wide) + G_N_ELEMENTS (plain) * G_N_ELEMENTS (big));
  for (gsize i = 0; i < n; i++)
    {
      JsonArray *pair = json_array_sized_new (2);

      json_array_add_string_element (pair, entries[i].word);
      json_array_add_int_element (pair, (gint64)entries[i].count);
      json_array_add_array_element (pairs, pair);
    }
  root = json_node_init_array (json_node_alloc (), pairs);
  json_generator_set_root (generator, root);
  expected = json_generator_to_data (generator, &len);
  expected = g_realloc (expected, len + 2);
  strcpy (expected + len, "}");

  data = g_bytes_get_data (g_ptr_array_index (parts, 0), &n);
  g_assert_cmpuint (n, >, len + 1 + 9);
  g_assert_cmpmem (data + n - (len + 1) - 9, 9, "\"counts\":", 9);
  g_assert_cmpmem (data + n - (len + 1), len + 1, expected, len + 1);
}

static void
test_split_fills_parts (void)
{
  g_autoptr (TallyCounts) counts = many_words (5000, 1);
  g_autoptr (TallySnapshot) snapshot = make_snapshot ("snap-fill", "inst-a", counts, 0, 0);
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  const gsize limit = 4096;

  parts = tally_snapshot_encode (snapshot, limit, &error);
  g_assert_no_error (error);
  /* Greedy packing: every part but the last is within one entry (< 40 bytes) of full. */
  for (guint i = 0; i + 1 < parts->len; i++)
    {
      gsize size = g_bytes_get_size (g_ptr_array_index (parts, i));

      g_assert_cmpuint (size, <=, limit);
      g_assert_cmpuint (size, >, limit - 40);
    }
}

static void
test_word_too_large (void)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autofree char *giant = g_strnfill (3000, 'x');
  g_autoptr (TallyCounts) counts = NULL;
  g_autoptr (TallySnapshot) snapshot = NULL;
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;

  tally_counts_builder_add (builder, "small", 5, 2);
  tally_counts_builder_add (builder, giant, 3000, 1);
  counts = tally_counts_builder_end (builder);
  snapshot = make_snapshot ("snap-giant", "inst-a", counts, 0, 0);

  /* Decision: an error (the publisher then sends an error snapshot), never a record the
   * broker would refuse and never a silently missing word. */
  parts = tally_snapshot_encode (snapshot, 2048, &error);
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE);
  g_assert_null (parts);
  g_clear_error (&error);

  /* A limit smaller than a part without entries is the same error. */
  parts = tally_snapshot_encode (snapshot, 100, &error);
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_TOO_LARGE);
  g_clear_error (&error);

  /* With room for it, the word is published like any other. */
  parts = tally_snapshot_encode (snapshot, 3600, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, ==, 1);
  {
    g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
    g_autoptr (TallySnapshot) back = NULL;

    g_assert_true (tally_snapshot_assembler_add_part (
        assembler, decode_bytes (g_ptr_array_index (parts, 0)), &error));
    back = tally_snapshot_assembler_dup_merged (assembler);
    tally_test_assert_counts_equal (back->counts, counts);
  }
}

static void
test_duplicates_and_foreign (void)
{
  g_autoptr (TallyCounts) counts = many_words (300, 2);
  g_autoptr (TallySnapshot) snapshot = make_snapshot ("snap-dup", "inst-a", counts, 0, 0);
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new ("req-1", NULL);
  g_autoptr (TallySnapshot) back = NULL;
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySnapshot) other = make_snapshot ("snap-other", "inst-b", counts, 1, 1);
  g_autoptr (GPtrArray) other_parts = NULL;

  parts = tally_snapshot_encode (snapshot, 1024, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, >=, 3);

  /* Another request's reply is ignored. */
  g_free (other->request_id);
  other->request_id = g_strdup ("req-2");
  other_parts = tally_snapshot_encode (other, 1000000, &error);
  g_assert_no_error (error);
  g_assert_false (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (other_parts, 0)), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 0);

  /* Part 1 twice, then the rest: the duplicate changes nothing. */
  g_assert_false (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (parts, 1)), &error));
  g_assert_false (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (parts, 1)), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 1);
  for (guint i = 0; i < parts->len; i++)
    if (i != 1)
      {
        gboolean done = tally_snapshot_assembler_add_part (
            assembler, decode_bytes (g_ptr_array_index (parts, i)), &error);

        g_assert_no_error (error);
        g_assert_cmpint (done, ==, i + 1 == parts->len);
      }
  /* Every part again, after completion: still ignored, no double counting. */
  for (guint i = 0; i < parts->len; i++)
    {
      g_assert_false (tally_snapshot_assembler_add_part (
          assembler, decode_bytes (g_ptr_array_index (parts, i)), &error));
      g_assert_no_error (error);
    }
  back = tally_snapshot_assembler_dup_merged (assembler);
  tally_test_assert_counts_equal (back->counts, counts);
  g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 0);
}

static void
test_merge_instances (void)
{
  static const char *const words_a[] = { "kafka", "streams", "apache" };
  static const guint64 values_a[] = { 2, 1, 1 };
  static const char *const words_b[] = { "kafka", "streams", "topic" };
  static const guint64 values_b[] = { 1, 1, 5 };
  g_autoptr (TallyCounts) counts_a = tally_test_counts_new (words_a, values_a, 3);
  g_autoptr (TallyCounts) counts_b = tally_test_counts_new (words_b, values_b, 3);
  g_autoptr (TallySnapshot) a = make_snapshot ("snap-a", "inst-a", counts_a, 0, 1);
  g_autoptr (TallySnapshot) b = make_snapshot ("snap-b", "inst-b", counts_b, 2, 3);
  g_autoptr (TallySnapshot) c = make_snapshot ("snap-c", "inst-c", counts_b, 3, 3);
  g_autoptr (rd_kafka_topic_partition_list_t) expected = rd_kafka_topic_partition_list_new (4);
  g_autoptr (TallySnapshotAssembler) assembler = NULL;
  g_autoptr (TallySnapshot) merged = NULL;
  g_autoptr (GPtrArray) pa = NULL, pb = NULL, pc = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (rd_kafka_topic_partition_list_t) missing = NULL;
  const TallyWordCount *e;
  gsize n;

  for (int p = 0; p < 4; p++)
    rd_kafka_topic_partition_list_add (expected, "in", p);
  assembler = tally_snapshot_assembler_new ("req-1", expected);

  pa = tally_snapshot_encode (a, 1000000, &error);
  pb = tally_snapshot_encode (b, 1000000, &error);
  pc = tally_snapshot_encode (c, 1000000, &error);
  g_assert_no_error (error);

  g_assert_true (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pa, 0)), &error));
  g_assert_no_error (error);
  g_assert_false (tally_snapshot_assembler_is_complete (assembler));
  missing = tally_snapshot_assembler_dup_missing (assembler);
  g_assert_cmpint (missing->cnt, ==, 2);
  g_assert_cmpint (missing->elems[0].partition, ==, 2);
  g_assert_cmpint (missing->elems[1].partition, ==, 3);

  g_assert_true (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pb, 0)), &error));
  g_assert_no_error (error);
  g_assert_true (tally_snapshot_assembler_is_complete (assembler));

  /* A third instance claiming partition 3 (a rebalance between cuts) is refused. */
  g_assert_false (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pc, 0)), &error));
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_OVERLAP);

  merged = tally_snapshot_assembler_dup_merged (assembler);
  g_assert_cmpstr (merged->snapshot_id, ==, "merged");
  g_assert_cmpstr (merged->request_id, ==, "req-1");
  g_assert_cmpuint (merged->total_words, ==, 11);
  g_assert_cmpuint (merged->distinct_words, ==, 4);
  g_assert_cmpint (merged->partitions->cnt, ==, 4);
  g_assert_cmpint (merged->offsets->cnt, ==, 4);
  g_assert_cmpint (merged->offsets->elems[3].offset, ==, 103);
  e = tally_counts_get_entries (merged->counts, &n);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpstr (e[0].word, ==, "topic");
  g_assert_cmpuint (e[0].count, ==, 5);
  g_assert_cmpstr (e[1].word, ==, "kafka");
  g_assert_cmpuint (e[1].count, ==, 3);
  g_assert_cmpstr (e[2].word, ==, "streams");
  g_assert_cmpuint (e[2].count, ==, 2);
  g_assert_cmpstr (e[3].word, ==, "apache");
  g_assert_cmpuint (e[3].count, ==, 1);
}

/* With expected partitions, a reply that counts a topic they do not name (an instance with
 * other input topics reading the same request topic) is refused with FOREIGN, once, and its
 * other parts are ignored: it is not merged and does not count toward completion. A reply
 * that names no partition (an instance not assigned any yet) is merged, covering nothing:
 * the client counts it as an answer (and asks again with a new request id). */
static void
test_foreign_replies (void)
{
  static const char *const words[] = { "kafka", "streams" };
  static const guint64 values[] = { 2, 1 };
  static const char *const words_x[] = { "kiwi", "kafka", "apple", "banana", "cherry" };
  static const guint64 values_x[] = { 60, 3, 2, 2, 1 };
  g_autoptr (TallyCounts) counts = tally_test_counts_new (words, values, 2);
  g_autoptr (TallyCounts) counts_x = tally_test_counts_new (words_x, values_x, 5);
  g_autoptr (TallySnapshot) a = make_snapshot ("snap-a", "inst-a", counts, 0, 1);
  g_autoptr (TallySnapshot) x = make_snapshot ("snap-x", "inst-x", counts_x, 0, 1);
  g_autoptr (TallyCounts) none = tally_counts_new_empty ();
  g_autoptr (TallySnapshot) idle = make_snapshot ("snap-idle", "inst-idle", none, 0, -1);
  g_autoptr (rd_kafka_topic_partition_list_t) expected = rd_kafka_topic_partition_list_new (2);
  g_autoptr (TallySnapshotAssembler) assembler = NULL;
  g_autoptr (TallySnapshot) merged = NULL;
  g_autoptr (GPtrArray) pa = NULL, px = NULL, pidle = NULL;
  g_autoptr (GError) error = NULL;

  rd_kafka_topic_partition_list_add (expected, "in", 0);
  rd_kafka_topic_partition_list_add (expected, "in", 1);
  /* inst-x counts partition 1 of "in" and partition 0 of "articles". */
  rd_kafka_topic_partition_list_destroy (x->partitions);
  x->partitions = rd_kafka_topic_partition_list_new (2);
  rd_kafka_topic_partition_list_add (x->partitions, "in", 1);
  rd_kafka_topic_partition_list_add (x->partitions, "articles", 0);
  assembler = tally_snapshot_assembler_new ("req-1", expected);
  pa = tally_snapshot_encode (a, 1000000, &error);
  g_assert_no_error (error);
  px = tally_snapshot_encode (x, 460, &error); /* several parts */
  g_assert_no_error (error);
  g_assert_cmpuint (px->len, >, 1);
  pidle = tally_snapshot_encode (idle, 1000000, &error);
  g_assert_no_error (error);

  g_assert_false (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (px, 0)), &error));
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN);
  g_assert_cmpstr (error->message, ==,
                   "ignored the replies of instance inst-x: it counts topic articles, which "
                   "[input] topics does not name (another tally run or plugin with other input "
                   "topics reads the same request topic: give each its own [requests] topic "
                   "and [output] topic; or this command reads another key-file than that "
                   "instance: name it with -c)");
  g_clear_error (&error);
  for (guint i = 1; i < px->len; i++)
    {
      g_assert_false (tally_snapshot_assembler_add_part (
          assembler, decode_bytes (g_ptr_array_index (px, i)), &error));
      g_assert_no_error (error);
    }
  g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 0);
  g_assert_null (tally_snapshot_assembler_take_snapshot (assembler));
  g_assert_true (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pidle, 0)), &error));
  g_assert_no_error (error);
  g_assert_false (tally_snapshot_assembler_is_complete (assembler));

  g_assert_true (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pa, 0)), &error));
  g_assert_no_error (error);
  g_assert_true (tally_snapshot_assembler_is_complete (assembler));
  merged = tally_snapshot_assembler_dup_merged (assembler);
  tally_test_assert_counts_equal (merged->counts, counts);
  g_assert_cmpuint (merged->total_words, ==, 3);
  g_assert_cmpuint (merged->distinct_words, ==, 2);

  /* No input partition exists yet (an empty list): a reply that names partitions counts
   * another topic and is left out (it was taken as the answer, another topic's counts
   * printed); the first that names none completes. */
  {
    g_autoptr (rd_kafka_topic_partition_list_t) nothing = rd_kafka_topic_partition_list_new (0);
    g_autoptr (TallySnapshotAssembler) empty = tally_snapshot_assembler_new ("req-1", nothing);
    g_autoptr (TallySnapshot) first = NULL;

    g_assert_false (tally_snapshot_assembler_is_complete (empty));
    g_assert_false (tally_snapshot_assembler_add_part (
        empty, decode_bytes (g_ptr_array_index (pa, 0)), &error));
    g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN);
    g_clear_error (&error);
    g_assert_false (tally_snapshot_assembler_is_complete (empty));
    g_assert_null (tally_snapshot_assembler_take_snapshot (empty));
    g_assert_true (tally_snapshot_assembler_add_part (
        empty, decode_bytes (g_ptr_array_index (pidle, 0)), &error));
    g_assert_no_error (error);
    g_assert_true (tally_snapshot_assembler_is_complete (empty));
    first = tally_snapshot_assembler_take_snapshot (empty);
    g_assert_nonnull (first);
    g_assert_cmpstr (first->instance_id, ==, "inst-idle");
  }
}

static void
test_error_snapshot (void)
{
  g_autoptr (TallySnapshot) snapshot = tally_snapshot_new ();
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  TallySnapshotPart *part;

  snapshot->snapshot_id = g_strdup ("snap-err");
  snapshot->request_id = g_strdup ("bad-1");
  snapshot->instance_id = g_strdup ("inst-a");
  snapshot->error = g_strdup ("request value: member \"top\" must be an integer");
  parts = tally_snapshot_encode (snapshot, 1024, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, ==, 1);
  part = decode_bytes (g_ptr_array_index (parts, 0));
  g_assert_cmpstr (tally_snapshot_part_get_error (part), ==, snapshot->error);
  g_assert_false (tally_snapshot_assembler_add_part (assembler, part, &error));
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_REMOTE);
  g_assert_cmpstr (error->message, ==,
                   "instance inst-a answered request bad-1 with an error: request value: member "
                   "\"top\" must be an integer");
  g_assert_false (tally_snapshot_assembler_is_complete (assembler));
}

static void
test_bad_parts (void)
{
  static const char *const bad[] = {
    "",
    "not json",
    "[1,2]",
    "{\"snapshot_id\":\"s\"}",
    "{\"snapshot_id\":\"s\",\"request_id\":\"r\",\"instance_id\":\"i\",\"created_at_ms\":0,"
    "\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,\"top\":0,\"min_count\":0,"
    "\"offsets\":[],\"partitions\":[],\"part\":2,\"parts\":2,\"counts\":[]}",
    "{\"snapshot_id\":\"s\",\"request_id\":\"r\",\"instance_id\":\"i\",\"created_at_ms\":0,"
    "\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,\"top\":0,\"min_count\":0,"
    "\"offsets\":[],\"partitions\":[],\"part\":0,\"parts\":1,\"counts\":[[\"a\",0]]}",
    "{\"snapshot_id\":\"s\",\"request_id\":\"r\",\"instance_id\":\"i\",\"created_at_ms\":0,"
    "\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,\"top\":0,\"min_count\":0,"
    "\"offsets\":[{\"topic\":\"t\",\"partition\":0}],\"partitions\":[],\"part\":0,\"parts\":1,"
    "\"counts\":[]}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (TallySnapshotPart) part
          = tally_snapshot_part_decode (bad[i], strlen (bad[i]), &error);

      g_assert_null (part);
      g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
    }
}

/* A snapshot of counts over time carries its range in every part; others do not. */
static void
test_window_members (void)
{
  static const char *const words[] = { "kafka" };
  static const guint64 values[] = { 3 };
  g_autoptr (TallyCounts) counts = tally_test_counts_new (words, values, 1);
  g_autoptr (TallySnapshot) snapshot = make_snapshot ("snap-w", "inst-a", counts, 0, 0);
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GPtrArray) plain = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *plain_text = NULL;

  plain = tally_snapshot_encode (snapshot, 1000000, &error);
  g_assert_no_error (error);
  plain_text = g_strndup (g_bytes_get_data (g_ptr_array_index (plain, 0), NULL),
                          g_bytes_get_size (g_ptr_array_index (plain, 0)));
  g_assert_null (strstr (plain_text, "window_"));

  snapshot->windowed = TRUE;
  snapshot->window_start_ms = 1700000040000;
  snapshot->window_end_ms = 1700000100000;
  parts = tally_snapshot_encode (snapshot, 1000000, &error);
  g_assert_no_error (error);
  text = g_strndup (g_bytes_get_data (g_ptr_array_index (parts, 0), NULL),
                    g_bytes_get_size (g_ptr_array_index (parts, 0)));
  g_assert_nonnull (
      strstr (text, "\"window_start_ms\":1700000040000,\"window_end_ms\":1700000100000"));

  /* Read back: the range comes through the assembler; a plain part has none. */
  {
    g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new ("req-1", NULL);
    g_autoptr (TallySnapshot) merged = NULL;
    g_autoptr (TallySnapshot) other = make_snapshot ("snap-x", "inst-b", counts, 1, 1);
    g_autoptr (GPtrArray) other_parts = NULL;

    g_assert_true (tally_snapshot_assembler_add_part (
        assembler, decode_bytes (g_ptr_array_index (parts, 0)), &error));
    g_assert_no_error (error);
    merged = tally_snapshot_assembler_dup_merged (assembler);
    g_assert_true (merged->windowed);
    g_assert_cmpint (merged->window_start_ms, ==, 1700000040000);
    g_assert_cmpint (merged->window_end_ms, ==, 1700000100000);
    g_clear_pointer (&merged, tally_snapshot_free);

    /* A second instance that resolved `current` one window later: the merged range
     * covers both; the counts are summed. */
    other->windowed = TRUE;
    other->window_start_ms = 1700000100000;
    other->window_end_ms = 1700000160000;
    other_parts = tally_snapshot_encode (other, 1000000, &error);
    g_assert_no_error (error);
    g_assert_true (tally_snapshot_assembler_add_part (
        assembler, decode_bytes (g_ptr_array_index (other_parts, 0)), &error));
    g_assert_no_error (error);
    merged = tally_snapshot_assembler_dup_merged (assembler);
    g_assert_true (merged->windowed);
    g_assert_cmpint (merged->window_start_ms, ==, 1700000040000);
    g_assert_cmpint (merged->window_end_ms, ==, 1700000160000);
    g_assert_cmpuint (tally_counts_get_total (merged->counts), ==, 6);
  }
  {
    g_autoptr (TallySnapshotPart) part = decode_bytes (g_ptr_array_index (plain, 0));
    g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new ("req-1", NULL);
    g_autoptr (TallySnapshot) back = NULL;

    g_assert_true (tally_snapshot_assembler_add_part (assembler, g_steal_pointer (&part), &error));
    back = tally_snapshot_assembler_dup_merged (assembler);
    g_assert_false (back->windowed);
  }
  /* One member without the other, or an end before the start: refused. */
  {
    static const char *const bad[] = {
      "\"window_start_ms\":5,",
      "\"window_end_ms\":5,",
      "\"window_start_ms\":6,\"window_end_ms\":5,",
    };

    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        g_autofree char *json = g_strdup_printf (
            "{\"snapshot_id\":\"s\",\"request_id\":\"r\",\"instance_id\":\"i\",%s"
            "\"created_at_ms\":1,\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,"
            "\"top\":0,\"min_count\":0,"
            "\"part\":0,\"parts\":1,\"entries\":0,\"offsets\":[],\"partitions\":[],"
            "\"counts\":[]}",
            bad[i]);
        g_autoptr (TallySnapshotPart) part
            = tally_snapshot_part_decode (json, strlen (json), &error);

        g_assert_null (part);
        g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
        if (strstr (error->message, "window_start_ms and window_end_ms go together") == NULL)
          g_error ("%s: %s", bad[i], error->message);
        g_clear_error (&error);
      }
  }
}

/* The window selector of a request: each JSON form, written back as it was read. */
static void
test_request_windows (void)
{
  static const struct
  {
    const char *value;
    TallyWindowSelectorKind kind;
    gint64 start_ms, duration_ms;
  } good[] = {
    { "{\"window\":\"current\"}", TALLY_WINDOW_SELECT_CURRENT, 0, 0 },
    { "{\"window\":\"last\"}", TALLY_WINDOW_SELECT_LAST, 0, 0 },
    { "{\"window\":1700000040000}", TALLY_WINDOW_SELECT_START, 1700000040000, 0 },
    { "{\"top\":10,\"window\":{\"last\":\"15m\"}}", TALLY_WINDOW_SELECT_LAST_DURATION, 0, 900000 },
    { "{\"window\":{\"last\":\"90s\"}}", TALLY_WINDOW_SELECT_LAST_DURATION, 0, 90000 },
  };
  static const char *const bad[] = {
    "{\"window\":\"now\"}",
    "{\"window\":-1}",
    "{\"window\":{\"last\":15}}",
    "{\"window\":{\"last\":\"15x\"}}",
    "{\"window\":{\"first\":\"15m\"}}",
    "{\"window\":null}",
    "{\"window\":{\"last\":\"15m\",\"x\":1}}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr (TallySnapshotRequest) request
          = tally_snapshot_request_parse ("w", 1, good[i].value, strlen (good[i].value), -1);
      g_autoptr (TallySnapshotRequest) copy = NULL;
      g_autoptr (GBytes) json = NULL;

      g_assert_no_error (request->error);
      g_assert_true (request->has_window);
      g_assert_cmpint (request->window.kind, ==, good[i].kind);
      g_assert_cmpint (request->window.start_ms, ==, good[i].start_ms);
      g_assert_cmpint (request->window.duration_ms, ==, good[i].duration_ms);
      json = tally_snapshot_request_to_json (request);
      g_assert_cmpmem (g_bytes_get_data (json, NULL), g_bytes_get_size (json), good[i].value,
                       strlen (good[i].value));
      copy = tally_snapshot_request_copy (request);
      g_assert_true (copy->has_window);
      g_assert_cmpint (copy->window.duration_ms, ==, good[i].duration_ms);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (TallySnapshotRequest) request
          = tally_snapshot_request_parse ("w", 1, bad[i], strlen (bad[i]), -1);

      g_test_message ("%s", bad[i]);
      g_assert_error (request->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                      TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
      g_assert_false (request->has_window);
    }
}

static void
test_requests (void)
{
  g_autoptr (TallySnapshotRequest) empty = tally_snapshot_request_parse ("r1", 2, NULL, 0, 42);
  g_autoptr (TallySnapshotRequest) full = NULL;
  g_autoptr (TallySnapshotRequest) copy = NULL;
  g_autoptr (TallySnapshotRequest) again = NULL;
  g_autoptr (TallySnapshotRequest) fresh = tally_snapshot_request_new (NULL);
  g_autoptr (GBytes) json = NULL;
  const char *value = "{\"top\":10,\"prefix\":\"ka\",\"min_count\":2}";
  TallyCountsOptions options;
  static const char *const bad[] = {
    "{\"top\":-1}",
    "{\"top\":\"10\"}",
    "{\"top\":1.5}",
    "{\"prefix\":3}",
    "{\"min_count\":null}",
    "{\"tpo\":3}",
    "[]",
    "{",
    "\xff",
  };

  g_assert_cmpstr (empty->request_id, ==, "r1");
  g_assert_cmpuint (empty->top, ==, 0);
  g_assert_null (empty->prefix);
  g_assert_cmpint (empty->requested_at_ms, ==, 42);
  g_assert_no_error (empty->error);
  json = tally_snapshot_request_to_json (empty);
  g_assert_cmpuint (g_bytes_get_size (json), ==, 0);
  g_clear_pointer (&json, g_bytes_unref);

  full = tally_snapshot_request_parse ("r2", 2, value, strlen (value), -1);
  g_assert_no_error (full->error);
  g_assert_cmpuint (full->top, ==, 10);
  g_assert_cmpstr (full->prefix, ==, "ka");
  g_assert_cmpuint (full->min_count, ==, 2);
  tally_snapshot_request_get_options (full, &options);
  g_assert_cmpuint (options.top, ==, 10);
  g_assert_cmpstr (options.prefix, ==, "ka");
  g_assert_cmpuint (options.min_count, ==, 2);

  json = tally_snapshot_request_to_json (full);
  g_assert_cmpmem (g_bytes_get_data (json, NULL), g_bytes_get_size (json), value, strlen (value));
  copy = tally_snapshot_request_copy (full);
  g_assert_cmpstr (copy->request_id, ==, "r2");
  g_assert_cmpstr (copy->prefix, ==, "ka");
  again = tally_snapshot_request_parse ("r3", 2, g_bytes_get_data (json, NULL),
                                        g_bytes_get_size (json), -1);
  g_assert_no_error (again->error);
  g_assert_cmpuint (again->top, ==, 10);

  g_assert_nonnull (fresh->request_id);
  g_assert_true (g_uuid_string_is_valid (fresh->request_id));

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (TallySnapshotRequest) request
          = tally_snapshot_request_parse ("rb", 2, bad[i], strlen (bad[i]), -1);

      g_assert_error (request->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                      TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
      g_assert_cmpstr (request->request_id, ==, "rb");
      g_assert_cmpuint (request->top, ==, 0);
    }

  {
    g_autoptr (TallySnapshotRequest) bad_key
        = tally_snapshot_request_parse ("\xfe", 1, NULL, 0, -1);
    g_autoptr (TallySnapshotRequest) no_key = tally_snapshot_request_parse (NULL, 0, NULL, 0, -1);

    g_assert_error (bad_key->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                    TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
    g_assert_true (g_uuid_string_is_valid (bad_key->request_id));
    g_assert_no_error (no_key->error);
    g_assert_true (g_uuid_string_is_valid (no_key->request_id));
  }
}

/* json-glib cuts a string at an escaped NUL (\u0000) and turns an integer beyond gint64
 * into -1: {"prefix":"al\u0000zzz"} asked for "al", {"prefix":"\u0000a"} for every word,
 * and a 23-digit top was reported as "must not be negative (-1)" (issue 13, items 6 and
 * 7). Such requests are refused with an error that says what is wrong. */
static void
test_request_nul_and_range (void)
{
  static const struct
  {
    const char *value;
    const char *message;
  } cases[] = {
    { "{\"prefix\":\"al\\u0000zzz\"}",
      "request value: member \"prefix\" holds a NUL character (\\u0000); words never do" },
    { "{\"prefix\":\"\\u0000a\"}",
      "request value: member \"prefix\" holds a NUL character (\\u0000); words never do" },
    { "{\"top\":10000000000000000000000}",
      "request value: member \"top\" is too large: 10000000000000000000000 (at most "
      "9223372036854775807)" },
    { "{\"min_count\":9223372036854775808}",
      "request value: member \"min_count\" is too large: 9223372036854775808 (at most "
      "9223372036854775807)" },
    { "{\"top\":-99999999999999999999}",
      "request value: member \"top\" must not be negative (-99999999999999999999)" },
  };
  /* Near misses that stay valid: an escaped backslash before u0000, the bound itself. */
  const char *slash = "{\"prefix\":\"a\\\\u0000\"}";
  const char *max = "{\"top\":9223372036854775807,\"min_count\":0}";
  g_autoptr (TallySnapshotRequest) ok_slash = NULL;
  g_autoptr (TallySnapshotRequest) ok_max = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (TallySnapshotRequest) request
          = tally_snapshot_request_parse ("r", 1, cases[i].value, strlen (cases[i].value), -1);

      g_assert_error (request->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                      TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
      g_assert_cmpstr (request->error->message, ==, cases[i].message);
      g_assert_null (request->prefix);
      g_assert_cmpuint (request->top, ==, 0);
    }

  ok_slash = tally_snapshot_request_parse ("r", 1, slash, strlen (slash), -1);
  g_assert_no_error (ok_slash->error);
  g_assert_cmpstr (ok_slash->prefix, ==, "a\\u0000");
  ok_max = tally_snapshot_request_parse ("r", 1, max, strlen (max), -1);
  g_assert_no_error (ok_max->error);
  g_assert_cmpuint (ok_max->top, ==, G_MAXINT64);
}

/* json-glib's parser recurses once per nesting level without a limit: 100000 `[` in a
 * request or a part overflowed the stack (SIGSEGV in tally run and tally snapshot). */
static void
test_deep_nesting (void)
{
  g_autoptr (GString) deep = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySnapshotPart) part = NULL;

  for (guint i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  for (guint i = 0; i < 100000; i++)
    g_string_append_c (deep, ']');

  {
    g_autoptr (TallySnapshotRequest) request
        = tally_snapshot_request_parse ("r", 1, deep->str, deep->len, -1);

    g_assert_error (request->error, TALLY_SNAPSHOT_FORMAT_ERROR,
                    TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
    g_assert_cmpstr (request->error->message, ==,
                     "request value: arrays and objects nested deeper than 8");
    g_assert_cmpstr (request->request_id, ==, "r");
  }

  part = tally_snapshot_part_decode (deep->str, deep->len, &error);
  g_assert_null (part);
  g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==, "snapshot part: arrays and objects nested deeper than 8");
  g_clear_error (&error);

  /* Depth 8 reaches json-glib; 9 does not. */
  {
    const char *eight = "[[[[[[[[]]]]]]]]";
    const char *nine = "{\"top\":[[[[[[[[]]]]]]]]}";
    g_autoptr (TallySnapshotRequest) at_limit
        = tally_snapshot_request_parse ("r", 1, eight, strlen (eight), -1);
    g_autoptr (TallySnapshotRequest) over
        = tally_snapshot_request_parse ("r", 1, nine, strlen (nine), -1);

    g_assert_cmpstr (at_limit->error->message, ==, "request value: not a JSON object");
    g_assert_cmpstr (over->error->message, ==,
                     "request value: arrays and objects nested deeper than 8");
  }

  /* Brackets inside strings, after an escaped quote or backslash, do not count. */
  {
    const char *value = "{\"prefix\":\"\\\"[[[[[[[[[{{{{\\\\\"}";
    g_autoptr (TallySnapshotRequest) request
        = tally_snapshot_request_parse ("r", 1, value, strlen (value), -1);

    g_assert_no_error (request->error);
    g_assert_cmpstr (request->prefix, ==, "\"[[[[[[[[[{{{{\\");
  }
}

/* config/tally-config.c accepts [tokenizer] max_word_bytes when 2 * max_word_bytes + 1024
 * fits in [output] max_record_bytes: a word of only `"` (escaped to two bytes each) with the
 * widest header numbers, 36-byte ids, an 82-byte instance id and 4 input partitions fits. */
static void
test_longest_word_fits (void)
{
  g_autoptr (TallySnapshot) snapshot = tally_snapshot_new ();
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (GPtrArray) parts = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *word = g_strnfill (1000, '"');
  gsize len = 0;

  snapshot->snapshot_id = g_strdup ("0123456789abcdef0123456789abcdef0123");
  snapshot->request_id = g_strdup ("0123456789abcdef0123456789abcdef0123");
  snapshot->instance_id = g_strdup (
      "a-host-name-of-sixty-four-bytes-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-4194304-0123abcd");
  snapshot->created_at_ms = G_MAXINT64;
  snapshot->taken_ms = G_MAXINT64;
  snapshot->total_words = G_MAXINT64;
  snapshot->distinct_words = G_MAXINT64;
  snapshot->top = G_MAXINT64;
  snapshot->min_count = G_MAXINT64;
  snapshot->offsets = rd_kafka_topic_partition_list_new (4);
  snapshot->partitions = rd_kafka_topic_partition_list_new (4);
  for (int p = 0; p < 4; p++)
    {
      rd_kafka_topic_partition_list_add (snapshot->offsets, "tally-input", p)->offset = G_MAXINT64;
      rd_kafka_topic_partition_list_add (snapshot->partitions, "tally-input", p);
    }
  tally_counts_builder_add (builder, word, 1000, G_MAXINT64);
  snapshot->counts = tally_counts_builder_end (builder);

  parts = tally_snapshot_encode (snapshot, 2 * 1000 + 1024, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parts->len, ==, 1);
  g_bytes_get_data (g_ptr_array_index (parts, 0), &len);
  g_assert_cmpuint (len, ==, 2928);
}

/* Counts and totals stop at G_MAXINT64, the largest integer a JSON number holds in
 * json-glib: a restored count of G_MAXINT64 plus more words published a negative
 * "total_words", which every reader then refused. */
static void
test_total_saturates (void)
{
  static const char *const words_b[] = { "streams" };
  static const guint64 values_b[] = { 1 };
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();
  g_autoptr (TallyCounts) counts_a = NULL;
  g_autoptr (TallyCounts) counts_b = tally_test_counts_new (words_b, values_b, 1);
  g_autoptr (TallySnapshot) a = NULL;
  g_autoptr (TallySnapshot) b = NULL;
  g_autoptr (rd_kafka_topic_partition_list_t) expected = rd_kafka_topic_partition_list_new (4);
  g_autoptr (TallySnapshotAssembler) assembler = NULL;
  g_autoptr (TallySnapshot) merged = NULL;
  g_autoptr (GPtrArray) pa = NULL, pb = NULL;
  g_autoptr (GError) error = NULL;
  TallySnapshotPart *part;

  /* A count restored near the limit, then 40000 more occurrences. */
  tally_counts_builder_add (builder, "kafka", 5, G_MAXINT64 - 5);
  tally_counts_builder_add (builder, "kafka", 5, 40000);
  tally_counts_builder_add (builder, "streams", 7, 40000);
  counts_a = tally_counts_builder_end (builder);
  g_assert_cmpuint (tally_counts_lookup (counts_a, "kafka", 5), ==, G_MAXINT64);
  g_assert_cmpuint (tally_counts_get_total (counts_a), ==, G_MAXINT64);

  a = make_snapshot ("snap-a", "inst-a", counts_a, 0, 1);
  b = make_snapshot ("snap-b", "inst-b", counts_b, 2, 3);
  g_assert_cmpuint (a->total_words, ==, G_MAXINT64);
  pa = tally_snapshot_encode (a, 1000000, &error);
  g_assert_no_error (error);
  pb = tally_snapshot_encode (b, 1000000, &error);
  g_assert_no_error (error);
  part = decode_bytes (g_ptr_array_index (pa, 0));
  g_assert_cmpuint (tally_snapshot_part_get_n_entries (part), ==, 2);

  /* Merging instances sums their totals, saturating too. */
  for (int p = 0; p < 4; p++)
    rd_kafka_topic_partition_list_add (expected, "in", p);
  assembler = tally_snapshot_assembler_new ("req-1", expected);
  g_assert_true (tally_snapshot_assembler_add_part (assembler, part, &error));
  g_assert_no_error (error);
  g_assert_true (tally_snapshot_assembler_add_part (
      assembler, decode_bytes (g_ptr_array_index (pb, 0)), &error));
  g_assert_no_error (error);
  merged = tally_snapshot_assembler_dup_merged (assembler);
  g_assert_cmpuint (merged->total_words, ==, G_MAXINT64);
  g_assert_cmpuint (tally_counts_lookup (merged->counts, "streams", 7), ==, 40001);
}

/* `tally snapshot --json` streams its text (tally_snapshot_write_json()): byte for byte what
 * json-glib writes for the whole tree, compact and pretty, with words json-glib escapes
 * (quote, backslash, control bytes, DEL) and words it copies (UTF-8), and with no entries. */
static void
test_json_streamed (void)
{
  static const char *const words[] = { "the", "q\"\x01", "back\\slash", "é\t€", "del\x7f", "zz" };
  static const guint64 counts[] = { 9000000000, 7, 7, 3, 2, 1 };
  g_autoptr (TallySnapshot) snapshot = tally_snapshot_new ();

  snapshot->snapshot_id = g_strdup ("snap-j");
  snapshot->request_id = g_strdup ("req-j");
  snapshot->instance_id = g_strdup ("inst-j");
  snapshot->created_at_ms = 1790000000000;
  snapshot->partitions = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (snapshot->partitions, "in", 0);
  snapshot->offsets = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (snapshot->offsets, "in", 0)->offset = 12;
  for (guint with_entries = 0; with_entries < 2; with_entries++)
    {
      g_clear_pointer (&snapshot->counts, tally_counts_unref);
      snapshot->counts
          = tally_test_counts_new (words, counts, with_entries ? G_N_ELEMENTS (words) : 0);
      snapshot->total_words = tally_counts_get_total (snapshot->counts);
      snapshot->distinct_words = tally_counts_get_n_words (snapshot->counts);
      for (guint pretty = 0; pretty < 2; pretty++)
        {
          /* The tree json-glib would write, built whole. */
          g_autoptr (JsonGenerator) generator = json_generator_new ();
          g_autoptr (JsonNode) root = NULL;
          g_autofree char *tree = NULL;
          g_autofree char *text = tally_snapshot_to_json (snapshot, pretty);
          g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();
          g_autoptr (GError) error = NULL;
          gsize n;
          const TallyWordCount *e = tally_counts_get_entries (snapshot->counts, &n);
          JsonArray *array = json_array_new ();
          g_autoptr (JsonNode) parsed = json_from_string (text, &error);
          JsonObject *object;

          g_assert_no_error (error);
          object = json_node_dup_object (parsed);
          for (gsize i = 0; i < n; i++)
            {
              JsonArray *pair = json_array_new ();

              json_array_add_string_element (pair, e[i].word);
              json_array_add_int_element (pair, (gint64)e[i].count);
              json_array_add_array_element (array, pair);
            }
          json_object_set_array_member (object, "counts", array);
          root = json_node_init_object (json_node_alloc (), object);
          json_object_unref (object);
          json_generator_set_root (generator, root);
          json_generator_set_pretty (generator, pretty);
          tree = json_generator_to_data (generator, NULL);
          g_assert_cmpstr (text, ==, tree);

          g_assert_true (tally_snapshot_write_json (snapshot, pretty, out, &error));
          g_assert_no_error (error);
          g_assert_true (g_output_stream_close (out, NULL, &error));
          g_assert_cmpmem (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (out)),
                           g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (out)),
                           tree, strlen (tree));
        }
    }
}

/* Parts read without json-glib (the `counts` of a part as Tally writes it) give what
 * json-glib gives: whitespace between tokens, the escapes \" \\ \/ \n \t, and, through
 * json-glib itself, \u escapes, "counts" twice (json-glib keeps the last), a count written
 * as a double (refused), a count with a leading zero (json-glib reads 07 as 7). */
static void
test_part_counts_read_directly (void)
{
  static const struct
  {
    const char *counts;   /* the text after "counts": */
    const char *expected; /* tally_test_assert_entries(), or NULL: refused */
  } cases[] = {
    { "[[\"b\",2],[\"a\",2],[\"c\",1]]", "a=2 b=2 c=1 " },
    { " [ [ \"b\" , 2 ] ,\n\t[\"a\",\r3] ] ", "a=3 b=2 " },
    { "[[\"q\\\"x\",4],[\"s\\/l\\\\\",3],[\"n\\nt\\t\",2]]", "q\"x=4 s/l\\=3 n\nt\t=2 " },
    { "[[\"\\u00e9t\\u00e9\",5],[\"x\",1]]", "été=5 x=1 " },
    { "[[\"x\",1]],\"counts\":[[\"y\",2]]", "y=2 " },
    { "[]", "" },
    { "[[\"x\",9223372036854775807]]", "x=9223372036854775807 " },
    { "[[\"x\",1.0]]", NULL },
    { "[[\"x\",07]]", "x=7 " },
    { "[[\"\",1]]", NULL },
    { "[[\"x\",0]]", NULL },
    { "[[\"x\",9223372036854775808]]", NULL },
    { "[[\"x\",1]", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strdup_printf (
          "{\"snapshot_id\":\"s-%u\",\"request_id\":\"r\",\"instance_id\":\"i\","
          "\"created_at_ms\":1,\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,"
          "\"entries\":0,\"top\":0,\"prefix\":null,\"min_count\":0,\"offsets\":[],"
          "\"partitions\":[],\"part\":0,\"parts\":1,\"counts\":%s}",
          i, cases[i].counts);
      g_autoptr (GError) error = NULL;
      TallySnapshotPart *part = tally_snapshot_part_decode (text, strlen (text), &error);

      if (cases[i].expected == NULL)
        {
          if (part != NULL)
            g_error ("case %u (%s) was read", i, cases[i].counts);
          g_assert_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_INVALID);
          continue;
        }
      g_assert_no_error (error);
      {
        g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
        g_autoptr (TallySnapshot) back = NULL;

        g_assert_true (tally_snapshot_assembler_add_part (assembler, part, &error));
        g_assert_no_error (error);
        back = tally_snapshot_assembler_take_snapshot (assembler);
        tally_test_assert_entries (back->counts, cases[i].expected);
      }
    }
}

/* The parts of one snapshot become its counts in part order without a sort when their
 * entries continue one another in snapshot order, whatever order the parts come in; when
 * they do not (a publisher other than Tally's), the counts are summed and sorted instead.
 * Either way the result is exact. */
static void
test_parts_in_sequence (void)
{
  static const struct
  {
    const char *parts[3]; /* the `counts` of parts 0, 1, 2 (NULL: fewer parts) */
    const char *arrival;  /* the order they are added in */
    const char *expected; /* tally_test_assert_entries() */
    guint64 total;
  } cases[] = {
    { { "[[\"a\",5],[\"b\",3]]", "[[\"c\",3],[\"d\",1]]" }, "01", "a=5 b=3 c=3 d=1 ", 12 },
    { { "[[\"a\",5],[\"b\",3]]", "[[\"c\",3],[\"d\",1]]" }, "10", "a=5 b=3 c=3 d=1 ", 12 },
    /* part 1 ranks before part 0 */
    { { "[[\"c\",2]]", "[[\"a\",9]]" }, "01", "a=9 c=2 ", 11 },
    /* one word at the end of part 0 and the start of part 1: summed */
    { { "[[\"a\",5],[\"b\",3]]", "[[\"b\",3],[\"c\",1]]" }, "01", "b=6 a=5 c=1 ", 12 },
    /* part 2 waits for the others, then part 1 is found out of order */
    { { "[[\"a\",5]]", "[[\"z\",7]]", "[[\"b\",1]]" }, "201", "z=7 a=5 b=1 ", 13 },
    /* out of order inside part 1, after part 0 was taken in order */
    { { "[[\"a\",5]]", "[[\"c\",2],[\"b\",2]]" }, "01", "a=5 b=2 c=2 ", 9 },
    /* part 1 read by json-glib (a \u escape), in order */
    { { "[[\"a\",5]]", "[[\"\\u00e9\",4]]", "[[\"b\",1]]" }, "120", "a=5 é=4 b=1 ", 10 },
    /* part 1 read by json-glib, out of order */
    { { "[[\"a\",5]]", "[[\"\\u00e9\",6]]" }, "01", "é=6 a=5 ", 11 },
    /* an empty part between two */
    { { "[[\"a\",5]]", "[]", "[[\"b\",5]]" }, "021", "a=5 b=5 ", 10 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
      g_autoptr (TallySnapshot) back = NULL;
      guint parts = cases[i].parts[2] != NULL ? 3 : 2;

      for (const char *c = cases[i].arrival; *c != '\0'; c++)
        {
          guint p = (guint)(*c - '0');
          g_autofree char *text = g_strdup_printf (
              "{\"snapshot_id\":\"s-%u\",\"request_id\":\"r\",\"instance_id\":\"i\","
              "\"created_at_ms\":1,\"taken_ms\":0,\"total_words\":0,\"distinct_words\":0,"
              "\"entries\":4,\"top\":0,\"prefix\":null,\"min_count\":0,\"offsets\":[],"
              "\"partitions\":[],\"part\":%u,\"parts\":%u,\"counts\":%s}",
              i, p, parts, cases[i].parts[p]);
          g_autoptr (GError) error = NULL;
          TallySnapshotPart *part = tally_snapshot_part_decode (text, strlen (text), &error);
          gboolean done;

          g_assert_no_error (error);
          done = tally_snapshot_assembler_add_part (assembler, part, &error);
          g_assert_no_error (error);
          g_assert_cmpint (done, ==, c[1] == '\0');
        }
      back = tally_snapshot_assembler_take_snapshot (assembler);
      tally_test_assert_entries (back->counts, cases[i].expected);
      g_assert_cmpuint (tally_counts_get_total (back->counts), ==, cases[i].total);
    }
}

/* A part's "parts" is the sender's claim: an assembler keeps what arrives, never an
 * array as long as the claim (fuzz-snapshot-part: "parts": 299999999 allocated 2.4 GB;
 * G_MAXUINT parts: a 32 GiB array, and GLib aborted). */
static void
test_claimed_parts (void)
{
  g_autoptr (TallySnapshotAssembler) assembler = tally_snapshot_assembler_new (NULL, NULL);
  g_autoptr (GError) error = NULL;

  for (guint round = 0; round < 2; round++)
    {
      const char *json
          = "{\"snapshot_id\":\"s\",\"request_id\":\"r\",\"instance_id\":\"i\","
            "\"created_at_ms\":1,\"taken_ms\":0,\"total_words\":1,\"distinct_words\":1,"
            "\"top\":0,\"min_count\":0,\"offsets\":[],\"partitions\":[],"
            "\"part\":4294967294,\"parts\":4294967295,\"entries\":1,"
            "\"counts\":[[\"a\",1]]}";
      TallySnapshotPart *part = tally_snapshot_part_decode (json, strlen (json), &error);

      g_assert_no_error (error);
      g_assert_cmpuint (tally_snapshot_part_get_parts (part), ==, G_MAXUINT);
      /* The first: kept, waiting for the others; the second: a duplicate, refused. */
      g_assert_false (tally_snapshot_assembler_add_part (assembler, part, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (tally_snapshot_assembler_get_n_incomplete (assembler), ==, 1);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/snapshot-format/round-trip", test_round_trip);
  g_test_add_func ("/snapshot-format/split-200k", test_split_200k);
  g_test_add_func ("/snapshot-format/parts-in-sequence", test_parts_in_sequence);
  g_test_add_func ("/snapshot-format/json-streamed", test_json_streamed);
  g_test_add_func ("/snapshot-format/part-counts-read-directly", test_part_counts_read_directly);
  g_test_add_func ("/snapshot-format/split-fills-parts", test_split_fills_parts);
  g_test_add_func ("/snapshot-format/counts-as-json-glib-writes-them",
                   test_counts_as_json_glib_writes_them);
  g_test_add_func ("/snapshot-format/word-too-large", test_word_too_large);
  g_test_add_func ("/snapshot-format/duplicates-and-foreign", test_duplicates_and_foreign);
  g_test_add_func ("/snapshot-format/merge-instances", test_merge_instances);
  g_test_add_func ("/snapshot-format/foreign-replies", test_foreign_replies);
  g_test_add_func ("/snapshot-format/error-snapshot", test_error_snapshot);
  g_test_add_func ("/snapshot-format/bad-parts", test_bad_parts);
  g_test_add_func ("/snapshot-format/requests", test_requests);
  g_test_add_func ("/snapshot-format/request-nul-and-range", test_request_nul_and_range);
  g_test_add_func ("/snapshot-format/request-windows", test_request_windows);
  g_test_add_func ("/snapshot-format/window-members", test_window_members);
  g_test_add_func ("/snapshot-format/deep-nesting", test_deep_nesting);
  g_test_add_func ("/snapshot-format/longest-word-fits", test_longest_word_fits);
  g_test_add_func ("/snapshot-format/total-saturates", test_total_saturates);
  g_test_add_func ("/snapshot-format/claimed-parts", test_claimed_parts);
  return g_test_run ();
}
