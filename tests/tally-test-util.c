/* tally-test-util.c: helpers the unit suites share (see tally-test-util.h). */
#include "tally-test-util.h"

#include <crypt.h>
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

/* ---------------------------------------------------------------------------------------
 * Metrics access: certificates and bcrypt hashes
 * ------------------------------------------------------------------------------------- */

gboolean
tally_test_make_certificate (const char *dir, char **cert_path, char **key_path)
{
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autofree char *cert = g_build_filename (dir, "cert.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (openssl == NULL)
    {
      g_test_skip ("openssl is not installed (scripts/setup installs it)");
      return FALSE;
    }
  g_spawn_sync (NULL,
                (char *[]){ openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                            "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", key, "-out", cert, NULL },
                NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("openssl req failed: %s", err);
  *cert_path = g_steal_pointer (&cert);
  *key_path = g_steal_pointer (&key);
  return TRUE;
}

char *
tally_test_bcrypt (const char *password)
{
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  g_autofree struct crypt_data *data = g_new0 (struct crypt_data, 1);
  const char *hash;

  g_assert_nonnull (crypt_gensalt_rn ("$2b$", 4, NULL, 0, salt, sizeof salt));
  hash = crypt_r (password, salt, data);
  g_assert_nonnull (hash);
  g_assert_true (g_str_has_prefix (hash, "$2b$04$"));
  return g_strdup (hash);
}
