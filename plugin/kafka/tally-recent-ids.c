/* tally-recent-ids.c — a bounded LRU set of strings: a hash table from id to its link in
 * a queue ordered from the oldest to the most recent; adding to a full set drops the
 * queue's head. Every operation is O(1).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-recent-ids.h"

struct _TallyRecentIds
{
  guint capacity;
  GQueue order;      /* char *, oldest first; owns the strings */
  GHashTable *links; /* id (borrowed from the queue) -> its GList link */
};

TallyRecentIds *
tally_recent_ids_new (guint capacity)
{
  TallyRecentIds *self = g_new0 (TallyRecentIds, 1);

  g_return_val_if_fail (capacity > 0, NULL);
  self->capacity = capacity;
  g_queue_init (&self->order);
  self->links = g_hash_table_new (g_str_hash, g_str_equal);
  return self;
}

gboolean
tally_recent_ids_add (TallyRecentIds *self, const char *id)
{
  GList *link = g_hash_table_lookup (self->links, id);

  if (link != NULL)
    {
      g_queue_unlink (&self->order, link);
      g_queue_push_tail_link (&self->order, link);
      return FALSE;
    }
  if (self->order.length >= self->capacity)
    {
      char *oldest = g_queue_pop_head (&self->order);

      g_hash_table_remove (self->links, oldest);
      g_free (oldest);
    }
  g_queue_push_tail (&self->order, g_strdup (id));
  g_hash_table_insert (self->links, self->order.tail->data, self->order.tail);
  return TRUE;
}

void
tally_recent_ids_remove (TallyRecentIds *self, const char *id)
{
  GList *link = g_hash_table_lookup (self->links, id);

  if (link == NULL)
    return;
  g_hash_table_remove (self->links, id);
  g_queue_unlink (&self->order, link);
  g_free (link->data);
  g_list_free_1 (link);
}

guint
tally_recent_ids_get_size (TallyRecentIds *self)
{
  return self->order.length;
}

void
tally_recent_ids_free (TallyRecentIds *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->links);
  g_queue_clear_full (&self->order, g_free);
  g_free (self);
}
