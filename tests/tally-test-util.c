/* tally-test-util.c: helpers the unit suites share (see tally-test-util.h). */
#include "tally-test-util.h"

#include <string.h>

void
tally_test_gate_init (TallyTestGate *gate)
{
  pthread_mutex_init (&gate->lock, NULL);
  pthread_cond_init (&gate->cond, NULL);
  gate->entered = FALSE;
  gate->open = FALSE;
}

void
tally_test_gate_clear (TallyTestGate *gate)
{
  pthread_cond_destroy (&gate->cond);
  pthread_mutex_destroy (&gate->lock);
}

void
tally_test_gate_enter (TallyTestGate *gate)
{
  pthread_mutex_lock (&gate->lock);
  gate->entered = TRUE;
  pthread_cond_broadcast (&gate->cond);
  while (!gate->open)
    pthread_cond_wait (&gate->cond, &gate->lock);
  pthread_mutex_unlock (&gate->lock);
}

void
tally_test_gate_wait_entered (TallyTestGate *gate)
{
  pthread_mutex_lock (&gate->lock);
  while (!gate->entered)
    pthread_cond_wait (&gate->cond, &gate->lock);
  pthread_mutex_unlock (&gate->lock);
}

void
tally_test_gate_open (TallyTestGate *gate)
{
  pthread_mutex_lock (&gate->lock);
  gate->open = TRUE;
  pthread_cond_broadcast (&gate->cond);
  pthread_mutex_unlock (&gate->lock);
}

TallyCounts *
tally_test_counts_new (const char *const *words, const guint64 *counts, gsize n)
{
  g_autoptr (TallyCountsBuilder) builder = tally_counts_builder_new ();

  for (gsize i = 0; i < n; i++)
    tally_counts_builder_add (builder, words[i], strlen (words[i]), counts[i]);
  return tally_counts_builder_end (builder);
}

void
tally_test_assert_counts_equal (TallyCounts *a, TallyCounts *b)
{
  gsize na, nb;
  const TallyWordCount *ea = tally_counts_get_entries (a, &na);
  const TallyWordCount *eb = tally_counts_get_entries (b, &nb);

  g_assert_cmpuint (na, ==, nb);
  for (gsize i = 0; i < na; i++)
    {
      g_assert_cmpuint (ea[i].len, ==, eb[i].len);
      g_assert_cmpmem (ea[i].word, ea[i].len, eb[i].word, eb[i].len);
      g_assert_cmpuint (ea[i].count, ==, eb[i].count);
    }
}

void
tally_test_assert_entries (TallyCounts *counts, const char *expected)
{
  g_autoptr (GString) s = g_string_new (NULL);
  gsize n;
  const TallyWordCount *e = tally_counts_get_entries (counts, &n);

  for (gsize i = 0; i < n; i++)
    g_string_append_printf (s, "%s=%" G_GUINT64_FORMAT " ", e[i].word, e[i].count);
  g_assert_cmpstr (s->str, ==, expected);
}

rd_kafka_conf_t *
tally_test_broker_conf (TallyBroker *broker)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();

  g_assert_cmpint (rd_kafka_conf_set (conf, "bootstrap.servers",
                                      tally_broker_get_bootstrap_servers (broker), NULL, 0),
                   ==, RD_KAFKA_CONF_OK);
  return conf;
}

void
tally_test_run_clear (TallyTestRun *run)
{
  g_free (run->out);
  g_free (run->err);
}
