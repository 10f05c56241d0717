/* tally-top-query.c — the rounds of an exact top N across instances (TPUT), as data.
 *
 * A query is a small state machine the client drives: next_request() says what to ask,
 * add_replies() takes one round's replies (one per instance, disjoint partitions, every
 * partition covered) and decides the next round. Why each bound holds is in the header;
 * here are the shortcuts: a round answered by one instance is exact for every word it
 * reports, so round 1 with one reply is the answer, and so is round 2 with one reply; a
 * threshold of 1 means "every word", so round 2 is skipped for round 3 over everything.
 * Round 2 answered by more instances than round 1 (a member joined) is asked again with
 * the threshold divided by the larger number, since the bound B/m needs the m of the
 * round that reports.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-top-query.h"

#include <string.h>

typedef enum
{
  ROUND_TOP = 1,       /* every instance's top N */
  ROUND_THRESHOLD = 2, /* every word counted at least T at an instance */
  ROUND_EXACT = 3,     /* the exact counts of the candidates (or of everything) */
  ROUND_DONE = 4,
} Round;

struct _TallyTopQuery
{
  guint64 top;
  guint64 min_count;
  char *prefix;
  Round round;
  guint rounds;     /* rounds whose replies were added */
  char *request_id; /* the current round's; NULL until asked */
  guint instances;  /* m: replies in round 1, or more in round 2 */
  guint64 bound;    /* B: every word of the answer totals at least this */
  guint64 threshold;
  char **candidates; /* round 3's words; NULL asks for everything */
  gsize n_candidates;
  TallyCounts *result;
};

TallyTopQuery *
tally_top_query_new (guint64 top, guint64 min_count, const char *prefix)
{
  TallyTopQuery *self = g_new0 (TallyTopQuery, 1);

  g_return_val_if_fail (top > 0 || min_count > 0, NULL);
  self->top = top;
  self->min_count = min_count;
  self->prefix = prefix != NULL && *prefix != '\0' ? g_strdup (prefix) : NULL;
  self->round = ROUND_TOP;
  return self;
}

void
tally_top_query_free (TallyTopQuery *self)
{
  if (self == NULL)
    return;
  g_free (self->prefix);
  g_free (self->request_id);
  g_strfreev (self->candidates);
  g_clear_pointer (&self->result, tally_counts_unref);
  g_free (self);
}

TallySnapshotRequest *
tally_top_query_next_request (TallyTopQuery *self)
{
  TallySnapshotRequest *request;

  g_return_val_if_fail (self->round != ROUND_DONE, NULL);
  if (self->request_id == NULL)
    self->request_id = g_uuid_string_random ();
  request = tally_snapshot_request_new (self->request_id);
  request->prefix = g_strdup (self->prefix);
  switch (self->round)
    {
    case ROUND_TOP:
      request->top = self->top;
      request->min_count = self->min_count;
      break;
    case ROUND_THRESHOLD:
      request->min_count = self->threshold;
      break;
    case ROUND_EXACT:
      request->words = g_strdupv (self->candidates);
      break;
    case ROUND_DONE:
      g_assert_not_reached ();
    }
  return request;
}

/* The answer from exact counts: @counts filtered by the query. */
static void
finish (TallyTopQuery *self, TallyCounts *counts)
{
  TallyCountsOptions options = { self->top, self->prefix, self->min_count };

  self->result = tally_counts_filter (counts, &options);
  self->round = ROUND_DONE;
}

/* Next round; a new request id so its replies are told apart from the last round's. */
static void
next_round (TallyTopQuery *self, Round round)
{
  self->round = round;
  g_clear_pointer (&self->request_id, g_free);
}

/* Round 2's threshold for the bound and the number of instances; 1 asks for everything. */
static void
set_threshold (TallyTopQuery *self)
{
  self->threshold = MAX ((self->bound + self->instances - 1) / self->instances, 1);
  if (self->threshold <= 1)
    {
      g_clear_pointer (&self->candidates, g_strfreev);
      next_round (self, ROUND_EXACT); /* every word anyway: ask for the exact counts now */
    }
  else
    next_round (self, ROUND_THRESHOLD);
}

static TallyCounts *
sum_replies (TallyCounts *const *replies, guint n_replies)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  for (guint i = 0; i < n_replies; i++)
    tally_counts_builder_add_counts (builder, replies[i]);
  return tally_counts_builder_end (builder);
}

static void
add_top_replies (TallyTopQuery *self, TallyCounts *const *replies, guint n_replies)
{
  g_autoptr (TallyCounts) sums = sum_replies (replies, n_replies);
  gsize n;
  const TallyWordCount *entries = tally_counts_get_entries (sums, &n);
  guint64 tau = self->top > 0 && n >= self->top ? entries[self->top - 1].count : 0;

  self->instances = n_replies;
  self->bound = MAX (tau, self->min_count);
  set_threshold (self);
}

static void
add_threshold_replies (TallyTopQuery *self, TallyCounts *const *replies, guint n_replies)
{
  g_autoptr (GHashTable) reported = NULL; /* word -> instances that reported it */
  g_autoptr (TallyCounts) sums = NULL;
  g_autoptr (GPtrArray) kept = NULL;
  gsize n, bytes = 0;
  const TallyWordCount *entries;

  if (n_replies > self->instances)
    {
      /* More instances than the threshold was made for: B/m shrank; ask again. */
      self->instances = n_replies;
      set_threshold (self);
      return;
    }
  reported = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < n_replies; i++)
    {
      const TallyWordCount *e = tally_counts_get_entries (replies[i], &n);

      for (gsize j = 0; j < n; j++)
        {
          gpointer seen = g_hash_table_lookup (reported, e[j].word);

          g_hash_table_insert (reported, (gpointer)e[j].word,
                               GUINT_TO_POINTER (GPOINTER_TO_UINT (seen) + 1));
        }
    }
  /* Prune: an upper bound of a word's total is what was reported plus T-1 for every
   * instance that did not report it (each counted it less than T). */
  sums = sum_replies (replies, n_replies);
  entries = tally_counts_get_entries (sums, &n);
  kept = g_ptr_array_new ();
  for (gsize j = 0; j < n; j++)
    {
      guint silent = n_replies - GPOINTER_TO_UINT (g_hash_table_lookup (reported, entries[j].word));
      guint64 upper = entries[j].count + (guint64)silent * (self->threshold - 1);

      if (upper >= self->bound)
        {
          g_ptr_array_add (kept, g_strndup (entries[j].word, entries[j].len));
          bytes += entries[j].len + 3; /* quotes and a comma in JSON */
        }
    }
  self->n_candidates = kept->len;
  g_ptr_array_add (kept, NULL);
  g_strfreev (self->candidates);
  self->candidates = (char **)g_ptr_array_free (g_steal_pointer (&kept), FALSE);
  if (bytes > TALLY_TOP_QUERY_MAX_WORDS_BYTES)
    g_clear_pointer (&self->candidates, g_strfreev); /* too many to name: everything */
  if (self->n_candidates == 0)
    {
      g_autoptr (TallyCounts) none = tally_counts_new_empty ();

      finish (self, none);
      return;
    }
  next_round (self, ROUND_EXACT);
}

gboolean
tally_top_query_add_replies (TallyTopQuery *self, TallyCounts *const *replies, guint n_replies)
{
  g_return_val_if_fail (self->round != ROUND_DONE, TRUE);
  g_return_val_if_fail (n_replies > 0, FALSE);

  self->rounds++;
  if (n_replies == 1 && self->round != ROUND_EXACT)
    {
      /* One instance owns every partition: what it reports is exact, and it reported every
       * word that can be in the answer (its top N with the filters in round 1; every word
       * counted at least T <= B in round 2). */
      finish (self, replies[0]);
      return TRUE;
    }
  switch (self->round)
    {
    case ROUND_TOP:
      add_top_replies (self, replies, n_replies);
      break;
    case ROUND_THRESHOLD:
      add_threshold_replies (self, replies, n_replies);
      break;
    case ROUND_EXACT:
      {
        g_autoptr (TallyCounts) sums = sum_replies (replies, n_replies);

        finish (self, sums);
      }
      break;
    case ROUND_DONE:
      g_assert_not_reached ();
    }
  return self->round == ROUND_DONE;
}

TallyCounts *
tally_top_query_get_result (TallyTopQuery *self)
{
  g_return_val_if_fail (self->round == ROUND_DONE, NULL);
  return self->result;
}

guint
tally_top_query_get_rounds (TallyTopQuery *self)
{
  return self->rounds;
}

guint64
tally_top_query_get_threshold (TallyTopQuery *self)
{
  return self->threshold;
}

gsize
tally_top_query_get_n_candidates (TallyTopQuery *self)
{
  return self->n_candidates;
}
