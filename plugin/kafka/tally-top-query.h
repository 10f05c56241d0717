/* tally-top-query.h — an exact top N (and min_count) over several Tally instances, without
 * shipping every word: the client side of the three-round threshold algorithm (TPUT).
 *
 * Each instance counts a disjoint set of input partitions, so a word's total is the sum of
 * its counts at the instances. A per-instance top N is exact when one instance owns every
 * partition, and can miss a word that is everyone's 11th otherwise. TPUT (Cao and Wang,
 * "Efficient top-K query calculation in distributed networks", PODC 2004) bounds what
 * each round must ship:
 *
 * 1. every instance sends its top N; the N-th largest partial sum tau is a lower bound of
 *    the N-th largest total, so the answer's words total at least B = max(tau, min_count);
 * 2. a word totalling B or more has at least B/m at one of the m instances: every instance
 *    sends its words counted at least T = ceil(B/m) (the request's `min_count`); their
 *    union is the candidate set (pruned by an upper bound: counts reported, T-1 for each
 *    instance that did not report the word);
 * 3. every instance sends the exact counts of the candidates (the request's `words`); the
 *    sums, filtered by min_count and cut to N in #TallyCounts order (count descending,
 *    then word bytes), are the answer, ties included.
 *
 * Round 1 answered by one instance covering every partition is the answer itself. The
 * query holds no Kafka: the caller sends each request, merges the replies of one round
 * that cover every partition, and hands them back (tally-cmd-snapshot.c).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-counts.h"
#include "tally-snapshot-request.h"

G_BEGIN_DECLS

/* Candidate sets whose words take more bytes than this are not sent as a `words` request
 * (it must fit one request record, message.max.bytes): round 3 then asks for every word
 * with the prefix instead, still exact. */
#define TALLY_TOP_QUERY_MAX_WORDS_BYTES (256 * 1024)

typedef struct _TallyTopQuery TallyTopQuery;

/**
 * tally_top_query_new:
 * @top: the number of words wanted, 0 for all that pass @min_count
 * @min_count: the least total a word must have, 0 or 1 for any
 * @prefix: (nullable): only words starting with these bytes; copied
 *
 * Starts a query. At least one of @top and @min_count must be set (a query for every word
 * is a plain snapshot). Plain struct for one thread.
 *
 * Returns: (transfer full): the query; free with tally_top_query_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyTopQuery *tally_top_query_new (guint64 top, guint64 min_count, const char *prefix);

/**
 * tally_top_query_next_request:
 * @self: a query that is not done
 *
 * The request of the current round, with a fresh request id (the same id for every call
 * within a round, so a request sent again is recognised).
 *
 * Returns: (transfer full): the request; free with tally_snapshot_request_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallySnapshotRequest *tally_top_query_next_request (TallyTopQuery *self);

/**
 * tally_top_query_add_replies:
 * @self: a query that is not done
 * @replies: (array length=n_replies): the counts of every instance's reply to the current
 *   round's request, which together cover every input partition, each partition once
 * @n_replies: how many, at least 1
 *
 * Takes one round's replies (the counts are read, not kept) and moves to the next round,
 * or to the answer.
 *
 * Returns: %TRUE when the answer is known (tally_top_query_get_result())
 */
gboolean tally_top_query_add_replies (TallyTopQuery *self, TallyCounts *const *replies,
                                      guint n_replies);

/**
 * tally_top_query_get_result:
 * @self: a query that is done
 *
 * Returns: (transfer none): the answer, in #TallyCounts order
 */
TallyCounts *tally_top_query_get_result (TallyTopQuery *self);

/**
 * tally_top_query_get_rounds:
 * @self: a query
 *
 * Returns: the rounds whose replies were added (1 when one instance answered alone, 3
 *   for a full TPUT)
 */
guint tally_top_query_get_rounds (TallyTopQuery *self);

/**
 * tally_top_query_get_threshold:
 * @self: a query
 *
 * Returns: T, the per-instance count asked for in round 2 (0 before round 2)
 */
guint64 tally_top_query_get_threshold (TallyTopQuery *self);

/**
 * tally_top_query_get_n_candidates:
 * @self: a query
 *
 * Returns: the candidate words asked for in round 3 (0 before round 3)
 */
gsize tally_top_query_get_n_candidates (TallyTopQuery *self);

/**
 * tally_top_query_free:
 * @self: (transfer full) (nullable): a query
 */
void tally_top_query_free (TallyTopQuery *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyTopQuery, tally_top_query_free)

G_END_DECLS
