/* tally-recent-ids.h — a bounded set of recent ids, the oldest forgotten first (an LRU).
 *
 * The snapshot coordinator keeps the request ids it answered here, so a request sent
 * again (a client that did not see its answer yet asks with the same id) is not cut,
 * encoded and published again: one answer per request id and instance. Bounded, because
 * request ids never stop coming; a forgotten id is answered again, which costs a
 * publication but is never wrong.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TallyRecentIds TallyRecentIds;

/**
 * tally_recent_ids_new:
 * @capacity: the most ids kept, at least 1
 *
 * Plain struct for one thread at a time.
 *
 * Returns: (transfer full): an empty set; free with tally_recent_ids_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyRecentIds *tally_recent_ids_new (guint capacity);

/**
 * tally_recent_ids_add:
 * @self: a set
 * @id: an id; copied
 *
 * Adds @id as the most recent; when the set is full, the least recently added or seen id
 * is forgotten.
 *
 * Returns: %TRUE if @id was new, %FALSE if it was kept already (it becomes the most
 *   recent)
 */
gboolean tally_recent_ids_add (TallyRecentIds *self, const char *id);

/**
 * tally_recent_ids_remove:
 * @self: a set
 * @id: an id
 *
 * Forgets @id (an answer that failed, so that asking again is answered).
 */
void tally_recent_ids_remove (TallyRecentIds *self, const char *id);

/**
 * tally_recent_ids_get_size:
 * @self: a set
 *
 * Returns: the ids kept, at most the capacity
 */
guint tally_recent_ids_get_size (TallyRecentIds *self);

/**
 * tally_recent_ids_free:
 * @self: (transfer full) (nullable): a set
 */
void tally_recent_ids_free (TallyRecentIds *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyRecentIds, tally_recent_ids_free)

G_END_DECLS
