/* test-changelog-real.c — changelog restores on the real broker, where checkpoints are
 * Kafka transactions: the end of a changelog partition is then a transaction marker,
 * which a read_committed consumer never delivers, and records of another transaction may
 * be committed while a restore reads. A restore must come back with the state of whole
 * transactions, as their offset markers say, and nothing newer.
 *
 * Needs TALLY_TEST_KAFKA_BOOTSTRAP (a broker with transactions, deploy/kafka-local);
 * skipped without it, failed without it when TALLY_TEST_REQUIRE_KAFKA=1.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-changelog-restore.h"
#include "tally-checkpoint.h"
#include "tally-test-util.h"

#include <string.h>

typedef struct
{
  char *topic;
  char *transactional_id;
  TallyCheckpoint *checkpoint;
  rd_kafka_t *committed_reader;   /* isolation.level=read_committed */
  rd_kafka_t *uncommitted_reader; /* isolation.level=read_uncommitted */
} Fixture;

static int serial;

static rd_kafka_conf_t *
broker_conf (void)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();

  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      g_getenv ("TALLY_TEST_KAFKA_BOOTSTRAP"), NULL, 0),
                   ==, RD_KAFKA_CONF_OK);
  return conf;
}

/* A consumer outside any group, as the changelog's restore consumer is configured. */
static rd_kafka_t *
reader_new (const char *isolation)
{
  rd_kafka_conf_t *conf = broker_conf ();
  char errstr[256];
  rd_kafka_t *rk;

  g_assert_cmpint (rd_kafka_conf_set (conf, "group.id", "test-changelog-real", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpint (rd_kafka_conf_set (conf, "enable.auto.commit", "false", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpint (rd_kafka_conf_set (conf, "isolation.level", isolation, NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpint (rd_kafka_conf_set (conf, "enable.partition.eof", "true", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpint (rd_kafka_conf_set (conf, "fetch.wait.max.ms", "10", NULL, 0), ==,
                   RD_KAFKA_CONF_OK);
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  g_assert_nonnull (rk);
  return rk;
}

static TallyCheckpoint *
transactional_checkpoint (Fixture *f, const char *suffix)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = g_strdup_printf ("%s%s", f->transactional_id, suffix);
  rd_kafka_conf_t *conf = broker_conf ();
  TallyCheckpoint *checkpoint = tally_checkpoint_new (conf, f->topic, id, 30000, &error);

  rd_kafka_conf_destroy (conf);
  g_assert_no_error (error);
  return checkpoint;
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  if (g_getenv ("TALLY_TEST_KAFKA_BOOTSTRAP") == NULL)
    {
      if (g_strcmp0 (g_getenv ("TALLY_TEST_REQUIRE_KAFKA"), "1") == 0)
        g_error ("TALLY_TEST_REQUIRE_KAFKA=1 but TALLY_TEST_KAFKA_BOOTSTRAP is not set");
      g_test_skip ("TALLY_TEST_KAFKA_BOOTSTRAP is not set (a real broker is needed)");
      return;
    }
  f->topic = g_strdup_printf ("changelog-real-%d-%" G_GINT64_FORMAT "-%d", (int)getpid (),
                              g_get_real_time (), serial);
  f->transactional_id = g_strdup_printf ("changelog-real-%d-%d", (int)getpid (), serial++);
  f->checkpoint = transactional_checkpoint (f, "");
  g_assert_true (tally_checkpoint_ensure_topic (f->checkpoint, 1, 30000, &error));
  g_assert_no_error (error);
  f->committed_reader = reader_new ("read_committed");
  f->uncommitted_reader = reader_new ("read_uncommitted");
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->checkpoint, tally_checkpoint_free);
  if (f->committed_reader != NULL)
    {
      rd_kafka_consumer_close (f->committed_reader);
      rd_kafka_destroy (f->committed_reader);
    }
  if (f->uncommitted_reader != NULL)
    {
      rd_kafka_consumer_close (f->uncommitted_reader);
      rd_kafka_destroy (f->uncommitted_reader);
    }
  g_free (f->topic);
  g_free (f->transactional_id);
}

/* The end of partition 0 for @reader: the high watermark when read_uncommitted, the last
 * stable offset when read_committed (ListOffsets honours the isolation level). */
static gint64
end_offset (Fixture *f, rd_kafka_t *reader)
{
  gint64 low = 0, high = 0;

  g_assert_cmpint (rd_kafka_query_watermark_offsets (reader, f->topic, 0, &low, &high, 10000), ==,
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  return high;
}

/* Waits until the last stable offset of partition 0 is @offset: every transaction before
 * it has its marker, and none that starts there or later is complete. */
static void
wait_last_stable (Fixture *f, gint64 offset)
{
  gint64 deadline = g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND;

  while (end_offset (f, f->committed_reader) != offset)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20 * 1000);
    }
}

/* Writes @words (a "word=count word=count" list, most frequent first, as a checkpoint
 * writes them) and, when @marker >= 0, the offset marker of input topic "in" to
 * partition 0 of @checkpoint's open transaction. */
static void
write_store (TallyCheckpoint *checkpoint, const char *words, gint64 marker)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) items = g_strsplit (words, " ", -1);
  guint n = g_strv_length (items);
  g_autofree const char **keys = g_new0 (const char *, n + 1);
  g_autofree guint64 *counts = g_new0 (guint64, n);
  g_autoptr (TallyCounts) changes = NULL;
  g_autoptr (GHashTable) offsets = NULL;

  for (guint i = 0; i < n; i++)
    {
      char *eq = strchr (items[i], '=');

      g_assert_nonnull (eq);
      *eq = '\0';
      keys[i] = items[i];
      counts[i] = g_ascii_strtoull (eq + 1, NULL, 10);
    }
  changes = tally_test_counts_new ((const char *const *)keys, counts, n);
  if (marker >= 0)
    {
      offsets = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
      g_hash_table_insert (offsets, (gpointer) "in", g_memdup2 (&marker, sizeof marker));
    }
  g_assert_true (tally_checkpoint_write (checkpoint, 0, changes, offsets, &error));
  g_assert_no_error (error);
}

/* One checkpoint as `tally run` writes it: one transaction with the words and the marker. */
static void
commit_store (TallyCheckpoint *checkpoint, const char *words, gint64 marker)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_checkpoint_begin (checkpoint, &error));
  g_assert_no_error (error);
  write_store (checkpoint, words, marker);
  g_assert_true (tally_checkpoint_commit (checkpoint, NULL, NULL, 30000, &error));
  g_assert_no_error (error);
}

/* Restores partition 0 up to @high with a restore consumer reading read_committed. */
static void
restore (Fixture *f, gint64 high, TallyRestoredStore *store)
{
  g_autoptr (GError) error = NULL;

  memset (store, 0, sizeof *store);
  store->partition = 0;
  store->low = 0;
  store->high = high;
  g_assert_true (tally_changelog_restore_read (f->committed_reader, f->topic, store, 1,
                                               g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND,
                                               NULL, NULL, &error));
  g_assert_no_error (error);
}

static void
assert_restored (TallyRestoredStore *store, const char *entries, gint64 marker)
{
  gint64 *offset = g_hash_table_lookup (store->offsets, "in");

  tally_test_assert_entries (store->counts, entries);
  g_assert_nonnull (offset);
  g_assert_cmpint (*offset, ==, marker);
}

/* The partition ends with a commit marker (never delivered to a read_committed consumer),
 * and the owner commits one more checkpoint before the restore reads: the restore stops
 * at the end it was given and takes nothing of the newer transaction, whose first record
 * (the most frequent word) it used to take. */
static void
test_end_after_commit_marker (Fixture *f, gconstpointer data)
{
  TallyRestoredStore store;
  gint64 end;

  if (g_test_failed () || f->checkpoint == NULL)
    return;
  /* The words' block at offset 0, the offset marker at 1, the commit marker at 2. */
  commit_store (f->checkpoint, "marker=10 w1=6 w2=4", 10);
  wait_last_stable (f, 3);
  end = end_offset (f, f->committed_reader);
  g_assert_cmpint (end, ==, 3);
  /* Offsets 3-4, its commit marker at 5: committed and visible before the restore reads. */
  commit_store (f->checkpoint, "marker=20 w1=11 w3=9", 20);
  wait_last_stable (f, 6);

  restore (f, end, &store);
  assert_restored (&store, "marker=10 w1=6 w2=4 ", 10);
  g_assert_cmpuint (store.records, ==, 2);
  tally_restored_store_clear (&store);
}

/* Another producer's transaction opened while the owner's was being written: the last
 * stable offset, where a restore ends, then falls inside the owner's committed
 * transaction. Its records before that offset are not a checkpoint (its offset marker is
 * after it): the restore leaves them out and comes back with the previous checkpoint. */
static void
test_end_inside_transaction (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyCheckpoint) other = NULL;
  TallyRestoredStore store;
  gint64 other_start;

  if (g_test_failed () || f->checkpoint == NULL)
    return;
  other = transactional_checkpoint (f, "-other");
  commit_store (f->checkpoint, "marker=10 w1=6 w2=4", 10);
  wait_last_stable (f, 3);

  /* The owner's transaction: its first block acknowledged (offset 3)... */
  g_assert_true (tally_checkpoint_begin (f->checkpoint, &error));
  g_assert_no_error (error);
  write_store (f->checkpoint, "marker=20 w1=11", -1);
  g_assert_true (tally_checkpoint_flush (f->checkpoint, 30000, &error));
  g_assert_no_error (error);
  /* ...then another transaction starts (offset 4) and stays open... */
  other_start = end_offset (f, f->uncommitted_reader);
  g_assert_cmpint (other_start, ==, 4);
  g_assert_true (tally_checkpoint_begin (other, &error));
  g_assert_no_error (error);
  write_store (other, "stale=1", -1);
  g_assert_true (tally_checkpoint_flush (other, 30000, &error));
  g_assert_no_error (error);
  /* ...while the owner's ends (w3's block and its marker, offsets 5-6) and commits. */
  write_store (f->checkpoint, "w3=9", 20);
  g_assert_true (tally_checkpoint_commit (f->checkpoint, NULL, NULL, 30000, &error));
  g_assert_no_error (error);
  wait_last_stable (f, other_start);

  restore (f, other_start, &store);
  assert_restored (&store, "marker=10 w1=6 w2=4 ", 10);
  tally_restored_store_clear (&store);
  tally_checkpoint_abort (other);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/changelog-real/end-after-commit-marker", Fixture, NULL, fixture_set_up,
              test_end_after_commit_marker, fixture_tear_down);
  g_test_add ("/changelog-real/end-inside-transaction", Fixture, NULL, fixture_set_up,
              test_end_inside_transaction, fixture_tear_down);
  return g_test_run ();
}
