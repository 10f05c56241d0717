/* tally-snapshot-assembler.c — parts into snapshots, snapshots of one request merged.
 *
 * A snapshot's parts, read in part order, list its entries in snapshot order
 * (tally_snapshot_encode()), so each part's entries are appended to its snapshot's
 * #TallyCountsSequence as the part arrives, its word bytes handed over, and the part freed:
 * a snapshot of millions of words is held once, and becomes #TallyCounts without hashing a
 * word or sorting (a full snapshot of 5 M words spent most of the client's CPU time in a
 * hash table and a sort before). A part that arrives before the parts preceding it waits
 * for them. Entries out of order (a publisher other than Tally's) make that snapshot fall
 * back to a #TallyCountsBuilder, which sums duplicates and sorts. Merging
 * several instances' snapshots of one request sums counts word by word, which is exact
 * because their input partitions are disjoint: a snapshot overlapping an already merged
 * one is refused rather than counted twice. Snapshot ids once complete are remembered, so
 * a part produced again later is ignored.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-snapshot-assembler.h"
#include "tally-snapshot-private.h"

#include <string.h>

/* A part number as a hash table key: + 1, since NULL is no key. */
#define PART_KEY(part) GUINT_TO_POINTER ((guint)(part) + 1)

typedef struct
{
  guint parts;
  guint received;
  GHashTable *seen;              /* part numbers added (+ 1, as pointers) */
  TallySnapshot *header;         /* the first part's members but counts */
  guint next;                    /* the next part the sequence takes */
  GHashTable *waiting;           /* part number (+ 1) -> part come before part next */
  TallyCountsSequence *sequence; /* parts 0 .. next - 1 in order, or NULL */
  TallyCountsBuilder *builder;   /* once the parts were found out of order, or NULL */
} Pending;

static void
pending_free (gpointer data)
{
  Pending *pending = data;

  g_hash_table_unref (pending->waiting);
  g_hash_table_unref (pending->seen);
  tally_snapshot_free (pending->header);
  tally_counts_sequence_free (pending->sequence);
  tally_counts_builder_free (pending->builder);
  g_free (pending);
}

/* Appends @part's entries to @sequence and hands over its word bytes. Returns FALSE, with
 * @sequence as it was and @part untouched, when they do not continue its order. */
static gboolean
append_part (TallyCountsSequence *sequence, TallySnapshotPart *part)
{
  gsize before = tally_counts_sequence_get_length (sequence);

  if (part->fast != NULL)
    {
      char *words = part->fast_words->str;

      for (guint i = 0; i < part->fast->len; i++)
        {
          const FastEntry *e = &g_array_index (part->fast, FastEntry, i);
          if (!tally_counts_sequence_append (sequence, words + e->word, e->len, e->count))
            {
              tally_counts_sequence_truncate (sequence, before);
              return FALSE;
            }
        }
      tally_counts_sequence_keep_block (sequence,
                                        g_string_free (g_steal_pointer (&part->fast_words), FALSE));
      g_clear_pointer (&part->fast, g_array_unref);
    }
  if (part->counts != NULL && json_array_get_length (part->counts) > 0)
    {
      guint n = json_array_get_length (part->counts);
      GString *block = g_string_new (NULL);
      g_autofree gsize *offsets = g_new (gsize, n);
      g_autofree guint64 *counts = g_new (guint64, n);

      for (guint i = 0; i < n; i++)
        {
          JsonArray *pair = json_array_get_array_element (part->counts, i);
          const char *word = json_array_get_string_element (pair, 0);

          offsets[i] = block->len;
          counts[i] = (guint64)json_array_get_int_element (pair, 1);
          g_string_append_len (block, word, (gssize)strlen (word) + 1);
        }
      /* The block no longer grows: the words' addresses are final. */
      for (guint i = 0; i < n; i++)
        if (!tally_counts_sequence_append (sequence, block->str + offsets[i],
                                           strlen (block->str + offsets[i]), counts[i]))
          {
            tally_counts_sequence_truncate (sequence, before);
            g_string_free (block, TRUE);
            return FALSE;
          }
      tally_counts_sequence_keep_block (sequence, g_string_free (block, FALSE));
    }
  return TRUE;
}

/* Takes @part into @pending: appended in order while the parts come in order, else summed
 * in the builder. */
static void
pending_take_part (Pending *pending, TallySnapshotPart *part)
{
  if (pending->builder != NULL)
    {
      tally_snapshot_part_add_to_builder (part, pending->builder);
      tally_snapshot_part_free (part);
      return;
    }
  if (part->part != pending->next)
    {
      g_hash_table_insert (pending->waiting, PART_KEY (part->part), part);
      return;
    }
  while (part != NULL)
    {
      if (!append_part (pending->sequence, part))
        {
          /* Out of order: the parts before, this one and those waiting go to a builder. */
          pending->builder = tally_counts_builder_new ();
          tally_counts_sequence_add_to_builder (pending->sequence, pending->builder);
          g_clear_pointer (&pending->sequence, tally_counts_sequence_free);
          tally_snapshot_part_add_to_builder (part, pending->builder);
          tally_snapshot_part_free (part);
          {
            GHashTableIter iter;
            gpointer waiting;

            g_hash_table_iter_init (&iter, pending->waiting);
            while (g_hash_table_iter_next (&iter, NULL, &waiting))
              tally_snapshot_part_add_to_builder (waiting, pending->builder);
            g_hash_table_remove_all (pending->waiting);
          }
          return;
        }
      tally_snapshot_part_free (part);
      pending->next++;
      part = NULL;
      if (pending->next < pending->parts)
        g_hash_table_steal_extended (pending->waiting, PART_KEY (pending->next), NULL,
                                     (gpointer *)&part);
    }
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
  TallySnapshot *snapshot = g_steal_pointer (&pending->header);

  if (snapshot->error != NULL)
    return snapshot;
  if (pending->builder != NULL)
    snapshot->counts = tally_counts_builder_end (pending->builder);
  else
    snapshot->counts = tally_counts_sequence_end (g_steal_pointer (&pending->sequence));
  return snapshot;
}

static gboolean
check_same_snapshot (const Pending *a, const TallySnapshotPart *b, GError **error)
{
  if (a->parts != b->parts || g_strcmp0 (a->header->request_id, b->header->request_id) != 0
      || g_strcmp0 (a->header->instance_id, b->header->instance_id) != 0)
    {
      g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_MISMATCH,
                   "snapshot %s: part %u (of %u, request %s, instance %s) disagrees with the "
                   "parts before it (of %u, request %s, instance %s)",
                   a->header->snapshot_id, b->part, b->parts, b->header->request_id,
                   b->header->instance_id, a->parts, a->header->request_id, a->header->instance_id);
      return FALSE;
    }
  return TRUE;
}

/* Whether a snapshot with @header names only partitions of the expected topics (or none:
 * an instance not yet assigned any answers too, and the client counts that answer); if
 * not, error FOREIGN: its counts would mix another topic's words in. */
static gboolean
is_ours (TallySnapshotAssembler *self, const TallySnapshot *header, GError **error)
{
  const rd_kafka_topic_partition_list_t *p = header->partitions;

  for (int i = 0; p != NULL && i < p->cnt; i++)
    {
      gboolean known = FALSE;

      for (int j = 0; j < self->expected->cnt && !known; j++)
        known = strcmp (self->expected->elems[j].topic, p->elems[i].topic) == 0;
      if (!known)
        {
          g_set_error (error, TALLY_SNAPSHOT_FORMAT_ERROR, TALLY_SNAPSHOT_FORMAT_ERROR_FOREIGN,
                       "ignored the replies of instance %s: it counts topic %s, which [input] "
                       "topics does not name (another tally run or plugin with other input "
                       "topics reads the same request topic: give each its own [requests] "
                       "topic and [output] topic; or this command reads another key-file than "
                       "that instance: name it with -c)",
                       header->instance_id, p->elems[i].topic);
          return FALSE;
        }
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
  if (pending == NULL && self->expected != NULL && !is_ours (self, part->header, error))
    {
      g_hash_table_add (self->finished, g_strdup (id)); /* its other parts too */
      return FALSE;
    }
  if (pending == NULL)
    {
      pending = g_new0 (Pending, 1);
      pending->parts = part->parts;
      /* Sized by the parts that arrive, not by the count a record claims (a corrupt
       * "parts": 299999999 asked for gigabytes up front). */
      pending->seen = g_hash_table_new (g_direct_hash, g_direct_equal);
      pending->header = tally_snapshot_copy_header (part->header);
      pending->waiting = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                                (GDestroyNotify)tally_snapshot_part_free);
      pending->sequence = tally_counts_sequence_new ((gsize)MIN (part->entries, G_MAXSIZE));
      g_hash_table_insert (self->pending, g_strdup (id), pending);
    }
  else if (!check_same_snapshot (pending, part, error))
    return FALSE;
  if (!g_hash_table_add (pending->seen, PART_KEY (part->part)))
    return FALSE; /* a duplicate, e.g. a part produced again after a lost report */
  pending_take_part (pending, g_steal_pointer (&owned));
  if (++pending->received < pending->parts)
    return FALSE;

  snapshot = assemble (pending);
  g_hash_table_add (self->finished, g_strdup (snapshot->snapshot_id));
  g_hash_table_remove (self->pending, snapshot->snapshot_id);

  if (snapshot->error != NULL)
    {
      g_queue_push_tail (&self->untaken, tally_snapshot_copy (snapshot));
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
  g_queue_push_tail (&self->untaken, tally_snapshot_copy (snapshot));
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
  /* No partition to cover (none exists yet): the first snapshot of none. */
  if (self->expected == NULL || self->expected->cnt == 0)
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
    return tally_snapshot_copy (first);

  merged = tally_snapshot_new ();
  merged->snapshot_id = g_strdup ("merged");
  merged->instance_id = g_strdup ("merged");
  merged->request_id = g_strdup (first->request_id);
  merged->created_at_ms = first->created_at_ms;
  merged->top = first->top;
  merged->prefix = g_strdup (first->prefix);
  merged->min_count = first->min_count;
  merged->windowed = first->windowed;
  merged->window_start_ms = first->window_start_ms;
  merged->window_end_ms = first->window_end_ms;
  builder = tally_counts_builder_new ();
  for (guint i = 0; i < self->merged->len; i++)
    {
      TallySnapshot *s = g_ptr_array_index (self->merged, i);

      merged->created_at_ms = MIN (merged->created_at_ms, s->created_at_ms);
      merged->taken_ms = MAX (merged->taken_ms, s->taken_ms);
      if (s->windowed && s->window_end_ms > s->window_start_ms)
        {
          /* Instances that resolved `current` or `last` on different stream times: the
           * range that covers them all (an empty range, no record yet, adds nothing). */
          if (merged->window_end_ms == merged->window_start_ms)
            {
              merged->window_start_ms = s->window_start_ms;
              merged->window_end_ms = s->window_end_ms;
            }
          merged->window_start_ms = MIN (merged->window_start_ms, s->window_start_ms);
          merged->window_end_ms = MAX (merged->window_end_ms, s->window_end_ms);
        }
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
