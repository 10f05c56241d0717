/* test-recent-ids.c — the bounded LRU set of request ids (tally-recent-ids.h).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-recent-ids.h"

static void
test_lru (void)
{
  g_autoptr (TallyRecentIds) ids = tally_recent_ids_new (3);

  g_assert_true (tally_recent_ids_add (ids, "a"));
  g_assert_true (tally_recent_ids_add (ids, "b"));
  g_assert_true (tally_recent_ids_add (ids, "c"));
  g_assert_false (tally_recent_ids_add (ids, "a")); /* kept; now the most recent */
  g_assert_true (tally_recent_ids_add (ids, "d"));  /* full: "b", the oldest, goes */
  g_assert_cmpuint (tally_recent_ids_get_size (ids), ==, 3);
  g_assert_false (tally_recent_ids_add (ids, "a"));
  g_assert_false (tally_recent_ids_add (ids, "c"));
  g_assert_false (tally_recent_ids_add (ids, "d"));
  g_assert_true (tally_recent_ids_add (ids, "b")); /* forgotten: new again, "a" goes */
  g_assert_true (tally_recent_ids_add (ids, "a"));
  tally_recent_ids_remove (ids, "a");
  tally_recent_ids_remove (ids, "zz"); /* unknown: nothing */
  g_assert_cmpuint (tally_recent_ids_get_size (ids), ==, 2);
  g_assert_true (tally_recent_ids_add (ids, "a"));
}

/* Many ids through a small set: never more than the capacity, the last ones kept. */
static void
test_bounded (void)
{
  g_autoptr (TallyRecentIds) ids = tally_recent_ids_new (100);

  for (guint i = 0; i < 10000; i++)
    {
      g_autofree char *id = g_strdup_printf ("id-%u", i);

      g_assert_true (tally_recent_ids_add (ids, id));
    }
  g_assert_cmpuint (tally_recent_ids_get_size (ids), ==, 100);
  g_assert_false (tally_recent_ids_add (ids, "id-9900"));
  g_assert_true (tally_recent_ids_add (ids, "id-9899"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/recent-ids/lru", test_lru);
  g_test_add_func ("/recent-ids/bounded", test_bounded);
  return g_test_run ();
}
