/* test-config.c — pins the configuration loader (config/tally-config.c) and the
 * `tally check-config` / `tally print-config` commands.
 *
 * The corpus in tests/config/ holds one key-file per case: good-*.conf must load;
 * bad-*.conf end with `# expect-error CODE` and `# expect-message TEXT` (the whole message,
 * FILE standing for the path) or `# expect-prefix TEXT` (where the rest of the message is
 * GLib's or the C library's). Other tests cover the example config/tally.conf, environment
 * overrides, redaction, the lookup order, applying [kafka] to librdkafka, and the exit
 * statuses of the built `tally` program ($TALLY_EXE).
 *
 * The process runs in a temporary working directory with XDG_CONFIG_HOME pointing into it
 * and no TALLY_<GROUP>_* variables, so nothing outside the test can change what is found.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-config.h"
#include "tally-test-util.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static char *tmp_root; /* the temporary working area */
static char *start_cwd;

static const char *
source_root (void)
{
  static char *root;

  if (root == NULL)
    {
      const char *env = g_getenv ("TALLY_SOURCE_ROOT");
      if (env != NULL && env[0] != '\0')
        root = g_strdup (env);
      else
        root = g_build_filename (g_getenv ("G_TEST_SRCDIR"), "..", NULL);
    }
  return root;
}

static char *
corpus_path (const char *name)
{
  return g_build_filename (source_root (), "tests", "config", name, NULL);
}

/* Removes every TALLY_* variable except those the test harness sets for us. */
static void
clear_tally_environment (void)
{
  g_auto (GStrv) env = g_get_environ ();

  for (guint i = 0; env[i] != NULL; i++)
    {
      g_autofree char *name = g_strndup (env[i], strcspn (env[i], "="));
      if (g_str_has_prefix (name, "TALLY_") && strcmp (name, "TALLY_EXE") != 0
          && strcmp (name, "TALLY_SOURCE_ROOT") != 0)
        g_unsetenv (name);
    }
}

static char *
read_text (const char *path)
{
  g_autoptr (GError) error = NULL;
  char *data = NULL;

  g_file_get_contents (path, &data, NULL, &error);
  g_assert_no_error (error);
  return data;
}

static void
write_text (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

/* tally_config_to_string() without its leading comment block (source, overrides). */
static char *
body_of (const TallyConfig *config, gboolean redact)
{
  g_autofree char *text = tally_config_to_string (config, redact);
  const char *body = strstr (text, "\n\n[");

  g_assert_nonnull (body);
  return g_strdup (body);
}

/* The text from "\n[input]" on: every typed group, without [kafka]. */
static char *
typed_part (const TallyConfig *config)
{
  g_autofree char *body = body_of (config, FALSE);
  const char *typed = strstr (body, "\n[input]");

  g_assert_nonnull (typed);
  return g_strdup (typed);
}

/* ---------------------------------------------------------------------------------------
 * Defaults
 * ------------------------------------------------------------------------------------- */

static void
test_defaults (void)
{
  g_autoptr (TallyConfig) c = tally_config_new_default ();
  const char *const topics[] = { "tally-input", NULL };

  g_assert_null (c->source_path);
  g_assert_cmpuint (g_strv_length (c->env_overrides), ==, 0);
  g_assert_cmpuint (c->kafka.properties->len, ==, 0);
  g_assert_false (c->kafka.has_bootstrap);
  g_assert_true (g_strv_equal ((const char *const *)c->input.topics, topics));
  g_assert_cmpstr (c->input.group_id, ==, "tally");
  g_assert_cmpint (c->input.auto_offset_reset, ==, TALLY_CONFIG_OFFSET_RESET_EARLIEST);
  g_assert_cmpuint (c->input.max_batch_records, ==, 1000);
  g_assert_cmpstr (c->output.topic, ==, "tally-snapshots");
  g_assert_cmpuint (c->output.max_record_bytes, ==, 900000);
  g_assert_cmpint (c->output.format, ==, TALLY_CONFIG_FORMAT_JSON);
  g_assert_cmpstr (c->requests.topic, ==, "tally-requests");
  g_assert_cmpuint (c->snapshot.interval_ms, ==, 0);
  g_assert_cmpuint (c->snapshot.timeout_ms, ==, 10000);
  g_assert_true (c->checkpoint.enabled);
  g_assert_cmpstr (c->checkpoint.changelog_topic, ==, "tally-changelog");
  g_assert_cmpuint (c->checkpoint.interval_ms, ==, 1000);
  g_assert_cmpint (c->checkpoint.guarantee, ==, TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE);
  g_assert_cmpuint (c->aggregator.shards, ==, CLAMP (g_get_num_processors (), 1, 256));
  g_assert_cmpuint (c->aggregator.mailbox_capacity, ==, 1024);
  g_assert_cmpint (c->tokenizer.mode, ==, TALLY_CONFIG_TOKENIZER_UNICODE);
  g_assert_false (c->tokenizer.nfkc);
  g_assert_cmpuint (c->tokenizer.max_word_bytes, ==, 256);
  g_assert_cmpint (c->tokenizer.long_words, ==, TALLY_CONFIG_LONG_WORDS_TRUNCATE);
  g_assert_cmpuint (c->broker.port, ==, 0);
  g_assert_cmpuint (c->broker.brokers, ==, 1);
  g_assert_cmpuint (c->broker.partitions, ==, 4);
  g_assert_cmpuint (c->shutdown.timeout_ms, ==, 10000);
  g_assert_cmpint (c->log.level, ==, G_LOG_LEVEL_MESSAGE);
}

static void
test_empty_data_is_defaults (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) defaults = tally_config_new_default ();
  g_autoptr (TallyConfig) c = tally_config_load_from_data ("", -1, "empty", &error);
  g_autofree char *a = NULL, *b = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (c->source_path, ==, "empty");
  a = body_of (defaults, FALSE);
  b = body_of (c, FALSE);
  g_assert_cmpstr (a, ==, b);
}

/* ---------------------------------------------------------------------------------------
 * The corpus
 * ------------------------------------------------------------------------------------- */

static const struct
{
  const char *name;
  TallyConfigError code;
} error_names[] = {
  { "NOT_FOUND", TALLY_CONFIG_ERROR_NOT_FOUND },
  { "READ", TALLY_CONFIG_ERROR_READ },
  { "ENCODING", TALLY_CONFIG_ERROR_ENCODING },
  { "PARSE", TALLY_CONFIG_ERROR_PARSE },
  { "DUPLICATE", TALLY_CONFIG_ERROR_DUPLICATE },
  { "UNKNOWN_GROUP", TALLY_CONFIG_ERROR_UNKNOWN_GROUP },
  { "UNKNOWN_KEY", TALLY_CONFIG_ERROR_UNKNOWN_KEY },
  { "INVALID_VALUE", TALLY_CONFIG_ERROR_INVALID_VALUE },
  { "KAFKA", TALLY_CONFIG_ERROR_KAFKA },
};

typedef struct
{
  int code; /* -1: none given */
  char *message;
  gboolean prefix_only;
} Expectation;

/* Reads the trailing `# expect-...` lines of a corpus file (the rest may be any bytes). */
static void
read_expectation (const char *path, Expectation *e)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;
  const char *p;

  /* memmem(), not strstr(): corpus files may hold NUL bytes. */
  e->code = -1;
  e->message = NULL;
  e->prefix_only = FALSE;
  g_file_get_contents (path, &data, &len, &error);
  g_assert_no_error (error);

  p = memmem (data, len, "# expect-error ", strlen ("# expect-error "));
  if (p == NULL)
    return;
  p += strlen ("# expect-error ");
  for (gsize i = 0; i < G_N_ELEMENTS (error_names); i++)
    {
      gsize n = strlen (error_names[i].name);
      if (strncmp (p, error_names[i].name, n) == 0 && p[n] == '\n')
        e->code = error_names[i].code;
    }
  g_assert_cmpint (e->code, !=, -1);

  p = memmem (data, len, "# expect-message ", strlen ("# expect-message "));
  if (p == NULL)
    {
      p = memmem (data, len, "# expect-prefix ", strlen ("# expect-prefix "));
      g_assert_nonnull (p);
      e->prefix_only = TRUE;
    }
  p = strchr (p + 2, ' ') + 1;
  {
    g_autofree char *line = g_strndup (p, strcspn (p, "\n"));
    g_auto (GStrv) parts = g_strsplit (line, "FILE", -1);
    e->message = g_strjoinv (path, parts);
  }
}

static void
test_corpus_file (gconstpointer data)
{
  g_autofree char *path = corpus_path (data);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  Expectation e;

  read_expectation (path, &e);
  config = tally_config_load (path, &error);
  /* bad-kafka-client-*: the loader accepts each property; librdkafka refuses the
   * combination when it makes a client, which tally_config_check_clients() does. */
  if (g_str_has_prefix (data, "bad-kafka-client-"))
    {
      g_assert_no_error (error);
      g_assert_false (tally_config_check_clients (config, &error));
      g_clear_pointer (&config, tally_config_free);
    }
  else if (config != NULL)
    g_assert_true (tally_config_check_clients (config, NULL));
  if (g_str_has_prefix (data, "good-"))
    {
      g_assert_cmpint (e.code, ==, -1);
      g_assert_no_error (error);
      g_assert_cmpstr (config->source_path, ==, path);
    }
  else
    {
      g_assert_cmpint (e.code, !=, -1);
      g_assert_null (config);
      g_assert_error (error, TALLY_CONFIG_ERROR, e.code);
      if (e.prefix_only)
        {
          g_assert_true (g_str_has_prefix (error->message, e.message));
          g_assert_cmpuint (strlen (error->message), >, strlen (e.message));
        }
      else
        g_assert_cmpstr (error->message, ==, e.message);
    }
  g_free (e.message);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

static GPtrArray *
corpus_names (void)
{
  g_autofree char *dir_path = g_build_filename (source_root (), "tests", "config", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, &error);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  g_assert_no_error (error);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (g_str_has_suffix (name, ".conf"))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  return names;
}

/* The corpus has a case for every error a file can cause, and good cases too. */
static void
test_corpus_covers_every_error (void)
{
  g_autoptr (GPtrArray) names = corpus_names ();
  guint seen[G_N_ELEMENTS (error_names)] = { 0 };
  guint good = 0;

  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = corpus_path (g_ptr_array_index (names, i));
      Expectation e;
      read_expectation (path, &e);
      if (e.code == -1)
        good++;
      else
        seen[e.code]++;
      g_free (e.message);
    }
  g_assert_cmpuint (good, >=, 5);
  for (gsize i = 0; i < G_N_ELEMENTS (error_names); i++)
    if (error_names[i].code != TALLY_CONFIG_ERROR_NOT_FOUND
        && error_names[i].code != TALLY_CONFIG_ERROR_READ)
      {
        g_test_message ("%s: %u cases", error_names[i].name, seen[i]);
        g_assert_cmpuint (seen[i], >, 0);
      }
  g_assert_cmpuint (seen[TALLY_CONFIG_ERROR_INVALID_VALUE], >=, 15);
}

static TallyConfig *
load_corpus (const char *name)
{
  g_autofree char *path = corpus_path (name);
  g_autoptr (GError) error = NULL;
  TallyConfig *config = tally_config_load (path, &error);

  g_assert_no_error (error);
  return config;
}

static const TallyConfigKafkaProperty *
kafka_at (const TallyConfig *c, guint i)
{
  g_assert_cmpuint (i, <, c->kafka.properties->len);
  return g_ptr_array_index (c->kafka.properties, i);
}

/* Overrides on top of a key-file's text (the plugin's tally.* properties): an error about
 * a file key keeps the file's line; one about an override names its origin, no line. */
static void
test_overrides (void)
{
  const char *data = "# comment\n\n[requests]\n# another\ntopic = foo\n";
  TallyConfigOverride shards = { "aggregator", "shards", "3", "tally.shards" };
  TallyConfigOverride output = { "output", "topic", "foo", "tally.output.topic" };
  TallyConfigOverride bad = { "aggregator", "shards", "abc", "tally.shards" };
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;

  c = tally_config_load_from_data_with_overrides (data, -1, "p.conf", &shards, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (c->aggregator.shards, ==, 3);
  g_assert_cmpstr (c->requests.topic, ==, "foo");
  g_assert_cmpstr (c->source_path, ==, "p.conf");
  g_clear_pointer (&c, tally_config_free);

  c = tally_config_load_from_data_with_overrides (data, -1, "p.conf", &output, 1, &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_assert_true (g_str_has_prefix (error->message,
                                   "p.conf:5: [requests] topic: “foo” is also the [output] "
                                   "topic"));
  g_clear_error (&error);

  c = tally_config_load_from_data_with_overrides (data, -1, "p.conf", &bad, 1, &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_assert_cmpstr (error->message, ==,
                   "tally.shards: [aggregator] shards: “abc” is not a whole number from 0 to "
                   "256 (shards)");
}

/* [kafka] sasl.password.file: the password comes from a private file, is redacted like
 * any secret, and a file others may read is refused without quoting its content. */
static void
test_secret_file (void)
{
  g_autofree char *dir = g_dir_make_tmp ("tally-test-secret.XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "password", NULL);
  g_autofree char *data = g_strdup_printf ("[kafka]\nsasl.username=tally\n"
                                           "sasl.password.file=%s\n",
                                           path);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;
  g_autofree char *printed = NULL;

  g_assert_true (g_file_set_contents (path, "file-secret-42\n", -1, NULL));
  g_assert_cmpint (g_chmod (path, 0644), ==, 0);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "(mode 0644)"));
  g_assert_null (strstr (error->message, "file-secret-42"));
  g_clear_error (&error);

  g_assert_cmpint (g_chmod (path, 0600), ==, 0);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (tally_config_kafka_get (c, "sasl.password"), ==, "file-secret-42");
  g_assert_null (tally_config_kafka_get (c, "sasl.password.file"));
  printed = tally_config_to_string (c, TRUE);
  g_assert_nonnull (strstr (printed, "\nsasl.password=<redacted>\n"));
  g_assert_null (strstr (printed, "file-secret-42"));
  g_clear_pointer (&c, tally_config_free);

  /* Two lines are not a password. */
  g_assert_true (g_file_set_contents (path, "a\nb\n", -1, NULL));
  g_assert_cmpint (g_chmod (path, 0600), ==, 0);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_clear_error (&error);

  g_unlink (path);
  g_rmdir (dir);
}

/* The bcrypt hash of "scrape-pass" in good-full.conf. */
#define GOOD_FULL_HASH "$2b$04$WLGg6ZnAkjRdkR25AGswLengjFKCmhjH82WYRa13LE.5.n9bVJase"

static void
test_good_full (void)
{
  g_autoptr (TallyConfig) c = load_corpus ("good-full.conf");
  g_autofree char *path = corpus_path ("good-full.conf");
  g_autofree char *origin = g_strdup_printf ("%s:6", path);
  const char *const topics[] = { "news", "^logs-[0-9]{1,3}$", "tweets", NULL };
  const char *const names[] = { "bootstrap.servers", "client.id",     "compression.type",
                                "message.max.bytes", "sasl.username", "sasl.password" };
  const char *const users[] = { "prometheus:" GOOD_FULL_HASH, "grafana:" GOOD_FULL_HASH, NULL };

  g_assert_cmpuint (c->kafka.properties->len, ==, G_N_ELEMENTS (names));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_cmpstr (kafka_at (c, i)->name, ==, names[i]);
  g_assert_cmpstr (kafka_at (c, 0)->value, ==, "broker-1:9092,broker-2:9092");
  g_assert_cmpstr (kafka_at (c, 2)->value, ==, "zstd");
  g_assert_cmpstr (kafka_at (c, 2)->origin, ==, origin);
  g_assert_cmpstr (tally_config_kafka_get (c, "sasl.password"), ==, "hunter2-secret");
  g_assert_null (tally_config_kafka_get (c, "security.protocol"));
  g_assert_true (c->kafka.has_bootstrap);

  g_assert_true (g_strv_equal ((const char *const *)c->input.topics, topics));
  g_assert_cmpstr (c->input.group_id, ==, "word counters");
  g_assert_cmpint (c->input.auto_offset_reset, ==, TALLY_CONFIG_OFFSET_RESET_LATEST);
  g_assert_cmpuint (c->input.max_batch_records, ==, 250);
  g_assert_cmpstr (c->output.topic, ==, "snapshots");
  g_assert_cmpuint (c->output.max_record_bytes, ==, 1500000);
  g_assert_cmpint (c->output.format, ==, TALLY_CONFIG_FORMAT_JSON);
  g_assert_cmpstr (c->requests.topic, ==, "requests");
  g_assert_cmpuint (c->snapshot.interval_ms, ==, 60000);
  g_assert_cmpuint (c->snapshot.timeout_ms, ==, 2500);
  g_assert_false (c->checkpoint.enabled);
  g_assert_cmpstr (c->checkpoint.changelog_topic, ==, "counts-changelog");
  g_assert_cmpuint (c->checkpoint.interval_ms, ==, 500);
  g_assert_cmpuint (c->aggregator.shards, ==, 3);
  g_assert_cmpuint (c->aggregator.mailbox_capacity, ==, 64);
  g_assert_cmpint (c->tokenizer.mode, ==, TALLY_CONFIG_TOKENIZER_WHITESPACE);
  g_assert_true (c->tokenizer.nfkc);
  g_assert_cmpuint (c->tokenizer.max_word_bytes, ==, 64);
  g_assert_cmpint (c->tokenizer.long_words, ==, TALLY_CONFIG_LONG_WORDS_DROP);
  g_assert_cmpuint (c->broker.port, ==, 39092);
  g_assert_cmpuint (c->broker.brokers, ==, 3);
  g_assert_cmpuint (c->broker.partitions, ==, 8);
  g_assert_cmpuint (c->shutdown.timeout_ms, ==, 5000);
  g_assert_cmpint (c->log.level, ==, G_LOG_LEVEL_DEBUG);
  g_assert_cmpstr (c->metrics.listen, ==, "0.0.0.0:9464");
  g_assert_null (c->metrics.tls_cert_file);
  g_assert_null (c->metrics.tls_key_file);
  g_assert_true (g_strv_equal ((const char *const *)c->metrics.basic_auth_users, users));
}

/* [metrics] listen: the loader checks what the metrics server would bind, so check-config
 * rejects what `tally run` would (a breaking pass found `*:9464` passing check-config). */
static void
test_metrics_listen (void)
{
  static const struct
  {
    const char *listen, *message; /* NULL: valid */
  } cases[] = {
    { "9464", NULL },
    { "localhost:9464", NULL },
    { "[::1]:9464", NULL },
    { "*:9464",
      "t.conf:2: [metrics] listen: “*:9464”: the host must be an IP address or localhost" },
    { "1.2.3.4.5:80",
      "t.conf:2: [metrics] listen: “1.2.3.4.5:80”: the host must be an IP address or localhost" },
    { "localhost", "t.conf:2: [metrics] listen: “localhost” is not HOST:PORT" },
    { "70000", "t.conf:2: [metrics] listen: “70000”: port above 65535" },
    { "::1:9464", "t.conf:2: [metrics] listen: “::1:9464”: an IPv6 address goes in brackets, "
                  "before the port: [::1]:9464" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *data = g_strdup_printf ("[metrics]\nlisten=%s\n", cases[i].listen);
      g_autoptr (GError) error = NULL;
      g_autoptr (TallyConfig) c = tally_config_load_from_data (data, -1, "t.conf", &error);

      if (cases[i].message == NULL)
        {
          g_assert_no_error (error);
          g_assert_cmpstr (c->metrics.listen, ==, cases[i].listen);
        }
      else
        {
          g_assert_null (c);
          g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
          g_assert_cmpstr (error->message, ==, cases[i].message);
        }
    }
}

/* [metrics] tls_cert_file and tls_key_file: a pair GIO loads, both or neither; errors
 * name the key at fault. */
static void
test_metrics_tls (void)
{
  g_autofree char *dir = g_dir_make_tmp ("tally-config-tls-XXXXXX", NULL);
  g_autofree char *cert = NULL, *key = NULL;
  g_autofree char *text_file = g_build_filename (dir, "not-pem.txt", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;
  g_autofree char *data = NULL;

  if (!tally_test_make_certificate (dir, &cert, &key))
    return;
  g_assert_true (g_file_set_contents (text_file, "not a certificate\n", -1, NULL));

  data = g_strdup_printf ("[metrics]\nlisten=9464\ntls_cert_file=%s\ntls_key_file=%s\n", cert, key);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (c->metrics.tls_cert_file, ==, cert);
  g_assert_cmpstr (c->metrics.tls_key_file, ==, key);
  g_clear_pointer (&c, tally_config_free);
  g_clear_pointer (&data, g_free);

  /* Both or neither. */
  data = g_strdup_printf ("[metrics]\nlisten=9464\ntls_cert_file=%s\n", cert);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_assert_cmpstr (error->message, ==,
                   "t.conf:3: [metrics] tls_cert_file: set tls_cert_file and tls_key_file "
                   "together, or neither");
  g_clear_error (&error);
  g_clear_pointer (&data, g_free);

  /* A file that is no certificate; then a key that is no key. */
  data = g_strdup_printf ("[metrics]\ntls_cert_file=%s\ntls_key_file=%s\n", text_file, key);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, "t.conf:2: [metrics] tls_cert_file: "));
  g_assert_nonnull (strstr (error->message, ": not a PEM certificate: "));
  g_clear_error (&error);
  g_clear_pointer (&data, g_free);

  data = g_strdup_printf ("[metrics]\ntls_cert_file=%s\ntls_key_file=%s\n", cert, text_file);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, "t.conf:3: [metrics] tls_key_file: "));
  g_assert_nonnull (strstr (error->message, ": not a PEM private key: "));
  g_clear_error (&error);

  /* A directory is not a file. */
  g_clear_pointer (&data, g_free);
  data = g_strdup_printf ("[metrics]\ntls_cert_file=%s\ntls_key_file=%s\n", dir, key);
  c = tally_config_load_from_data (data, -1, "t.conf", &error);
  g_assert_null (c);
  g_clear_pointer (&data, g_free);
  data = g_strdup_printf ("t.conf:2: [metrics] tls_cert_file: %s: not a regular file", dir);
  g_assert_cmpstr (error->message, ==, data);
  g_clear_error (&error);

  g_unlink (cert);
  g_unlink (key);
  g_unlink (text_file);
  g_rmdir (dir);
}

static void
test_good_small_cases (void)
{
  g_autoptr (TallyConfig) crlf = load_corpus ("good-crlf.conf");
  g_autoptr (TallyConfig) spaces = load_corpus ("good-spaces.conf");
  g_autoptr (TallyConfig) groups = load_corpus ("good-empty-groups.conf");
  const char *const crlf_topics[] = { "crlf-topic", NULL };
  const char *const spaced_topics[] = { "a", "b", NULL };

  g_assert_true (g_strv_equal ((const char *const *)crlf->input.topics, crlf_topics));
  g_assert_cmpstr (crlf->input.group_id, ==, "crlf");
  g_assert_cmpint (crlf->log.level, ==, G_LOG_LEVEL_WARNING);

  g_assert_true (g_strv_equal ((const char *const *)spaces->input.topics, spaced_topics));
  g_assert_cmpstr (spaces->input.group_id, ==, "spaced");
  /* shards=0 means one per processor. */
  g_assert_cmpuint (spaces->aggregator.shards, ==, CLAMP (g_get_num_processors (), 1, 256));

  g_assert_cmpuint (groups->kafka.properties->len, ==, 0);
  g_assert_cmpstr (groups->input.group_id, ==, "tally");
}

/* ---------------------------------------------------------------------------------------
 * [tokenizer] → TallyTokenizerOptions (the one translation the source, the plugin and
 * `tally count` share)
 * ------------------------------------------------------------------------------------- */

static void
tokenizer_options_of (const char *text, TallyTokenizerOptions *options)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = tally_config_load_from_data (text, -1, "tokenizer", &error);

  g_assert_no_error (error);
  memset (options, 0xa5, sizeof *options);
  tally_config_tokenizer_options (c, options);
  g_assert_true (tally_tokenizer_options_validate (options, NULL));
}

/* Each [tokenizer] key maps to its own field exactly, and no other field moves. */
static void
test_tokenizer_options (void)
{
  TallyTokenizerOptions o, init;
  static const struct
  {
    const char *text;
    TallyTokenizerMode mode;
    gboolean nfkc;
    guint max_word_bytes;
    TallyTokenizerLongWords long_words;
  } cases[] = {
    { "", TALLY_TOKENIZER_UNICODE, FALSE, 256, TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmode=unicode\n", TALLY_TOKENIZER_UNICODE, FALSE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmode=whitespace\n", TALLY_TOKENIZER_WHITESPACE, FALSE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmode=record\n", TALLY_TOKENIZER_RECORD, FALSE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nnfkc=true\n", TALLY_TOKENIZER_UNICODE, TRUE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nnfkc=false\n", TALLY_TOKENIZER_UNICODE, FALSE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmax_word_bytes=4\n", TALLY_TOKENIZER_UNICODE, FALSE, 4,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmax_word_bytes=77\n", TALLY_TOKENIZER_UNICODE, FALSE, 77,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nmax_word_bytes=1048576\n[output]\nmax_record_bytes=4000000\n"
      "[kafka]\nmessage.max.bytes=10000000\n",
      TALLY_TOKENIZER_UNICODE, FALSE, 1048576, TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nlong_words=truncate\n", TALLY_TOKENIZER_UNICODE, FALSE, 256,
      TALLY_TOKENIZER_LONG_TRUNCATE },
    { "[tokenizer]\nlong_words=drop\n", TALLY_TOKENIZER_UNICODE, FALSE, 256,
      TALLY_TOKENIZER_LONG_DROP },
    { "[tokenizer]\nmode=record\nnfkc=true\nmax_word_bytes=9\nlong_words=drop\n",
      TALLY_TOKENIZER_RECORD, TRUE, 9, TALLY_TOKENIZER_LONG_DROP },
  };

  /* The defaults of both sides agree. */
  tally_tokenizer_options_init (&init);
  tokenizer_options_of ("", &o);
  g_assert_cmpint (o.mode, ==, init.mode);
  g_assert_cmpint (o.nfkc, ==, init.nfkc);
  g_assert_cmpuint (o.max_word_bytes, ==, init.max_word_bytes);
  g_assert_cmpint (o.long_words, ==, init.long_words);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_test_message ("case %u: %s", i, cases[i].text);
      tokenizer_options_of (cases[i].text, &o);
      g_assert_cmpint (o.mode, ==, cases[i].mode);
      g_assert_cmpint (o.nfkc, ==, cases[i].nfkc);
      g_assert_cmpuint (o.max_word_bytes, ==, cases[i].max_word_bytes);
      g_assert_cmpint (o.long_words, ==, cases[i].long_words);
    }
}

/* A TallyConfig changed by hand past the loader's ranges still gives options that
 * tally_tokenizer_new() accepts: max_word_bytes clamped to the tokenizer's limits, an
 * unknown mode read as unicode. */
static void
test_tokenizer_options_clamped (void)
{
  g_autoptr (TallyConfig) c = tally_config_new_default ();
  TallyTokenizerOptions o;

  c->tokenizer.max_word_bytes = 0;
  tally_config_tokenizer_options (c, &o);
  g_assert_cmpuint (o.max_word_bytes, ==, TALLY_TOKENIZER_MIN_WORD_BYTES);
  c->tokenizer.max_word_bytes = 3;
  tally_config_tokenizer_options (c, &o);
  g_assert_cmpuint (o.max_word_bytes, ==, TALLY_TOKENIZER_MIN_WORD_BYTES);
  c->tokenizer.max_word_bytes = TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT + 1;
  tally_config_tokenizer_options (c, &o);
  g_assert_cmpuint (o.max_word_bytes, ==, TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT);
  c->tokenizer.mode = (TallyConfigTokenizerMode)99;
  tally_config_tokenizer_options (c, &o);
  g_assert_cmpint (o.mode, ==, TALLY_TOKENIZER_UNICODE);
  g_assert_true (tally_tokenizer_options_validate (&o, NULL));
}

/* ---------------------------------------------------------------------------------------
 * The example config/tally.conf
 * ------------------------------------------------------------------------------------- */

static char *
example_path (void)
{
  return g_build_filename (source_root (), "config", "tally.conf", NULL);
}

/* The example loads, and with every `#key=value` line uncommented it still loads and its
 * values are exactly the defaults: the documented defaults are the real ones. */
static void
test_example (void)
{
  g_autofree char *path = example_path ();
  g_autofree char *text = read_text (path);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) defaults = tally_config_new_default ();
  g_autoptr (TallyConfig) plain = tally_config_load (path, &error);
  g_autoptr (TallyConfig) uncommented = NULL;
  g_autoptr (GRegex) setting = g_regex_new ("^#([a-z][a-z0-9._]*=)", G_REGEX_MULTILINE, 0, NULL);
  g_autofree char *active = g_regex_replace (setting, text, -1, 0, "\\1", 0, NULL);
  g_autofree char *expected = typed_part (defaults);
  g_autofree char *got_plain = NULL;
  g_autofree char *got_uncommented = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (plain->kafka.properties->len, ==, 0);
  got_plain = typed_part (plain);
  g_assert_cmpstr (got_plain, ==, expected);

  g_assert_cmpstr (active, !=, text);
  uncommented = tally_config_load_from_data (active, -1, "tally.conf (uncommented)", &error);
  g_assert_no_error (error);
  got_uncommented = typed_part (uncommented);
  g_assert_cmpstr (got_uncommented, ==, expected);
  g_assert_true (uncommented->kafka.has_bootstrap);
  g_assert_cmpuint (uncommented->kafka.properties->len, ==, 9);
}

/* Every key of the schema is shown in the example (as `#key=` or in prose) and described
 * in docs/configuration.md. */
static void
test_example_and_docs_cover_every_key (void)
{
  g_autoptr (TallyConfig) defaults = tally_config_new_default ();
  g_autofree char *body = body_of (defaults, FALSE);
  g_autofree char *example_file = example_path ();
  g_autofree char *example = read_text (example_file);
  g_autofree char *docs_file = g_build_filename (source_root (), "docs", "configuration.md", NULL);
  g_autofree char *docs = read_text (docs_file);
  g_auto (GStrv) lines = g_strsplit (body, "\n", -1);
  g_autofree char *group = NULL;
  guint keys = 0;

  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *l = lines[i];
      g_autofree char *key = NULL;
      g_autofree char *as_setting = NULL, *as_prose = NULL, *as_doc = NULL, *group_doc = NULL;

      if (l[0] == '[')
        {
          g_free (group);
          group = g_strndup (l + 1, strlen (l) - 2);
          group_doc = g_strdup_printf ("## [%s]", group);
          g_assert_nonnull (strstr (docs, group_doc));
          continue;
        }
      if (group == NULL || strcmp (group, "kafka") == 0 || strchr (l, '=') == NULL)
        continue;
      key = g_strndup (l + (l[0] == '#'), strcspn (l + (l[0] == '#'), "="));
      as_setting = g_strdup_printf ("\n#%s=", key);
      as_prose = g_strdup_printf ("\"%s = ", key);
      as_doc = g_strdup_printf ("| `%s` |", key);
      g_test_message ("[%s] %s", group, key);
      g_assert_true (strstr (example, as_setting) != NULL || strstr (example, as_prose) != NULL);
      g_assert_nonnull (strstr (docs, as_doc));
      keys++;
    }
  g_assert_cmpuint (keys, ==, 38);
}

/* ---------------------------------------------------------------------------------------
 * Environment overrides
 * ------------------------------------------------------------------------------------- */

static void
test_env_overrides (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;
  const char *const topics[] = { "a", "^b.*", NULL };
  const char *const applied[] = { "TALLY_AGGREGATOR_SHARDS", "TALLY_INPUT_TOPICS",
                                  "TALLY_KAFKA_BOOTSTRAP_SERVERS", "TALLY_KAFKA_LOG__LEVEL", NULL };

  g_setenv ("TALLY_INPUT_TOPICS", "a;^b.*", TRUE);
  g_setenv ("TALLY_AGGREGATOR_SHARDS", "5", TRUE);
  g_setenv ("TALLY_KAFKA_BOOTSTRAP_SERVERS", "env-host:9092", TRUE);
  g_setenv ("TALLY_KAFKA_LOG__LEVEL", "3", TRUE);
  c = tally_config_load_from_data ("[kafka]\nclient.id=from-file\nbootstrap.servers=file:9092\n"
                                   "\n[aggregator]\nshards=2\n",
                                   -1, "f.conf", &error);
  clear_tally_environment ();
  g_assert_no_error (error);

  g_assert_true (g_strv_equal ((const char *const *)c->input.topics, topics));
  g_assert_cmpuint (c->aggregator.shards, ==, 5);
  g_assert_true (g_strv_equal ((const char *const *)c->env_overrides, applied));
  /* File order kept; the override replaces the value in place; new properties last. */
  g_assert_cmpuint (c->kafka.properties->len, ==, 3);
  g_assert_cmpstr (kafka_at (c, 0)->name, ==, "client.id");
  g_assert_cmpstr (kafka_at (c, 0)->origin, ==, "f.conf:2");
  g_assert_cmpstr (kafka_at (c, 1)->name, ==, "bootstrap.servers");
  g_assert_cmpstr (kafka_at (c, 1)->value, ==, "env-host:9092");
  g_assert_cmpstr (kafka_at (c, 1)->origin, ==, "TALLY_KAFKA_BOOTSTRAP_SERVERS (environment)");
  g_assert_cmpstr (kafka_at (c, 2)->name, ==, "log_level");
  g_assert_cmpstr (kafka_at (c, 2)->value, ==, "3");
}

static void
check_env_error (const char *var, const char *value, int code, const char *message)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;

  g_setenv (var, value, TRUE);
  c = tally_config_load_from_data ("", -1, "f.conf", &error);
  clear_tally_environment ();
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, code);
  g_assert_cmpstr (error->message, ==, message);
}

static void
test_env_errors (void)
{
  check_env_error ("TALLY_AGGREGATOR_SHARDS", "many", TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "TALLY_AGGREGATOR_SHARDS (environment): [aggregator] shards: “many” is not a "
                   "whole number from 0 to 256 (shards)");
  check_env_error ("TALLY_INPUT_TOPIC", "a", TALLY_CONFIG_ERROR_UNKNOWN_KEY,
                   "TALLY_INPUT_TOPIC (environment): [input] topic: unknown key; did you mean "
                   "TALLY_INPUT_TOPICS?");
  /* The keys compared, not the variables, whose shared prefix once made
   * TALLY_CHECKPOINT_ENABLED the nearest. */
  check_env_error ("TALLY_CHECKPOINT_TOPIC", "x", TALLY_CONFIG_ERROR_UNKNOWN_KEY,
                   "TALLY_CHECKPOINT_TOPIC (environment): [checkpoint] topic: unknown key; did "
                   "you mean TALLY_CHECKPOINT_CHANGELOG_TOPIC?");
  check_env_error ("TALLY_OUTPUT_TOPICS", "x", TALLY_CONFIG_ERROR_UNKNOWN_KEY,
                   "TALLY_OUTPUT_TOPICS (environment): [output] topics: unknown key; did you "
                   "mean TALLY_OUTPUT_TOPIC?");
  check_env_error ("TALLY_INPUT_TOPICS", "a,b", TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "TALLY_INPUT_TOPICS (environment): [input] topics: “a,b”: topic names cannot "
                   "contain ','; items of a key-file list are separated by ';': write topics=a;b");
  check_env_error ("TALLY_KAFKA_BOOTSTRAP_SERVER", "h:9092", TALLY_CONFIG_ERROR_KAFKA,
                   "TALLY_KAFKA_BOOTSTRAP_SERVER (environment): [kafka] bootstrap.server: "
                   "librdkafka: No such configuration property: \"bootstrap.server\"; did you "
                   "mean bootstrap.servers?");
  check_env_error ("TALLY_KAFKA_HEAP", "512m", TALLY_CONFIG_ERROR_KAFKA,
                   "TALLY_KAFKA_HEAP (environment): [kafka] heap: librdkafka: No such "
                   "configuration property: \"heap\" (every TALLY_KAFKA_* variable is read as a "
                   "librdkafka property; unset this one)");
  check_env_error ("TALLY_LOG_LEVEL", "", TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "TALLY_LOG_LEVEL (environment): [log] level: empty value; remove the line to "
                   "use the default (message)");
  check_env_error ("TALLY_KAFKA_", "x", TALLY_CONFIG_ERROR_UNKNOWN_KEY,
                   "TALLY_KAFKA_ (environment): [kafka]: the variable does not name a key");
  check_env_error ("TALLY_TOKENIZER_NFKC", "\xff", TALLY_CONFIG_ERROR_ENCODING,
                   "TALLY_TOKENIZER_NFKC (environment): [tokenizer] nfkc: the value is not valid "
                   "UTF-8");
}

/* Variables that are not TALLY_<GROUP>_ of a known group are not overrides. */
static void
test_env_other_variables_ignored (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = NULL;

  g_setenv ("TALLY_SOMETHING_ELSE", "1", TRUE);
  g_setenv ("TALLY_INPUTX", "1", TRUE);
  c = tally_config_load_from_data ("", -1, "f.conf", &error);
  clear_tally_environment ();
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (c->env_overrides), ==, 0);
}

/* ---------------------------------------------------------------------------------------
 * Secrets, printing
 * ------------------------------------------------------------------------------------- */

static void
test_secret_keys (void)
{
  const char *const secret[] = { "basic_auth_users",
                                 "sasl.password",
                                 "SASL.PASSWORD",
                                 "sasl.username",
                                 "ssl.key.password",
                                 "ssl.key.pem",
                                 "ssl.keystore.password",
                                 "sasl.oauthbearer.client.secret",
                                 "sasl.oauthbearer.config",
                                 "ssl_key",
                                 NULL };
  const char *const public[] = {
    "bootstrap.servers", "client.id", "ssl.ca.location", "sasl.mechanisms", "security.protocol",
    "group_id",          NULL
  };

  for (guint i = 0; secret[i] != NULL; i++)
    g_assert_true (tally_config_key_is_secret (secret[i]));
  for (guint i = 0; public[i] != NULL; i++)
    g_assert_false (tally_config_key_is_secret (public[i]));
}

static void
test_redaction (void)
{
  g_autoptr (TallyConfig) c = load_corpus ("good-full.conf");
  g_autofree char *redacted = tally_config_to_string (c, TRUE);
  g_autofree char *plain = tally_config_to_string (c, FALSE);

  g_assert_null (strstr (redacted, "hunter2-secret"));
  g_assert_null (strstr (redacted, "alice"));
  g_assert_null (strstr (redacted, GOOD_FULL_HASH));
  g_assert_nonnull (strstr (redacted, "\nbasic_auth_users=<redacted>\n"));
  g_assert_nonnull (strstr (plain, "\nbasic_auth_users=prometheus:" GOOD_FULL_HASH ";grafana:"));
  g_assert_nonnull (strstr (redacted, "\nsasl.username=<redacted>\nsasl.password=<redacted>\n"));
  g_assert_nonnull (strstr (redacted, "\nclient.id=tally-test\n"));
  g_assert_nonnull (strstr (plain, "\nsasl.password=hunter2-secret\n"));
}

/* Without redaction the printed text loads back into the same configuration. */
static void
test_round_trip (void)
{
  const char *const names[] = { "good-full.conf", "good-empty.conf", "good-spaces.conf" };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr (TallyConfig) c = load_corpus (names[i]);
      g_autofree char *text = tally_config_to_string (c, FALSE);
      g_autoptr (GError) error = NULL;
      g_autoptr (TallyConfig) again = tally_config_load_from_data (text, -1, "printed", &error);
      g_autofree char *a = NULL, *b = NULL;

      g_assert_no_error (error);
      a = body_of (c, FALSE);
      b = body_of (again, FALSE);
      g_assert_cmpstr (a, ==, b);
    }
}

static void
test_to_string_shape (void)
{
  g_autoptr (TallyConfig) c = load_corpus ("good-full.conf");
  g_autofree char *path = corpus_path ("good-full.conf");
  g_autofree char *text = tally_config_to_string (c, TRUE);
  g_autofree char *head = g_strdup_printf ("# Effective Tally configuration (every default filled "
                                           "in).\n# Source: %s\n# Secret values are shown as "
                                           "<redacted>.\n\n[kafka]\n",
                                           path);

  g_assert_true (g_str_has_prefix (text, head));
  g_assert_nonnull (strstr (text, "\n[input]\ntopics=news;^logs-[0-9]{1,3}$;tweets;\n"
                                  "group_id=word counters\nauto_offset_reset=latest\n"
                                  "max_batch_records=250\n\n[output]\n"));
  g_assert_true (g_str_has_suffix (text, "\n[log]\nlevel=debug\n\n[metrics]\nlisten=0.0.0.0:9464\n"
                                         "#tls_cert_file=\n#tls_key_file=\n"
                                         "basic_auth_users=<redacted>\n"));
}

/* ---------------------------------------------------------------------------------------
 * Applying [kafka] to librdkafka
 * ------------------------------------------------------------------------------------- */

static void
test_apply_kafka (void)
{
  g_autoptr (TallyConfig) c = load_corpus ("good-full.conf");
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char value[256];
  size_t size = sizeof value;

  g_assert_true (tally_config_apply_kafka (c, conf, &error));
  g_assert_no_error (error);
  g_assert_cmpint (rd_kafka_conf_get (conf, "client.id", value, &size), ==, RD_KAFKA_CONF_OK);
  g_assert_cmpstr (value, ==, "tally-test");
  size = sizeof value;
  g_assert_cmpint (rd_kafka_conf_get (conf, "message.max.bytes", value, &size), ==,
                   RD_KAFKA_CONF_OK);
  g_assert_cmpstr (value, ==, "2000000");
  rd_kafka_conf_destroy (conf);
}

/* plugin.library.paths is only checked when applied (setting it loads the plugin); the
 * failure then names origin, group and property. */
static void
test_apply_kafka_error (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c
      = tally_config_load_from_data ("[kafka]\nclient.id=x\nplugin.library.paths=/nonexistent/"
                                     "libnothing\n",
                                     -1, "p.conf", &error);
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();

  g_assert_no_error (error);
  g_assert_false (tally_config_apply_kafka (c, conf, &error));
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_KAFKA);
  g_assert_true (
      g_str_has_prefix (error->message, "p.conf:3: [kafka] plugin.library.paths: librdkafka: "));
  rd_kafka_conf_destroy (conf);
}

/* ---------------------------------------------------------------------------------------
 * Lookup order
 * ------------------------------------------------------------------------------------- */

static char *
group_id_of_load (const char *explicit_path, char **source)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) c = tally_config_load (explicit_path, &error);

  g_assert_no_error (error);
  *source = g_strdup (c->source_path);
  return g_strdup (c->input.group_id);
}

static void
write_group_conf (const char *path, const char *group_id)
{
  g_autofree char *text = g_strdup_printf ("[input]\ngroup_id=%s\n", group_id);
  g_autofree char *dir = g_path_get_dirname (path);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  write_text (path, text);
}

static void
test_lookup_order (void)
{
  g_autofree char *work = g_build_filename (tmp_root, "lookup", NULL);
  g_autofree char *cwd = g_build_filename (work, "cwd", NULL);
  g_autofree char *xdg = g_build_filename (work, "xdg", NULL);
  g_autofree char *xdg_conf = g_build_filename (xdg, "tally", "tally.conf", NULL);
  g_autofree char *env_conf = g_build_filename (work, "env.conf", NULL);
  g_autofree char *explicit_conf = g_build_filename (work, "explicit.conf", NULL);
  g_autofree char *missing = g_build_filename (work, "missing.conf", NULL);
  g_autofree char *cwd_conf = g_build_filename (cwd, "tally.conf", NULL);
  g_autofree char *source = NULL;
  g_autofree char *got = NULL;
  g_autofree char *message = NULL;
  g_auto (GStrv) paths = NULL;
  g_autoptr (GError) error = NULL;
  TallyConfig *c;

  write_group_conf (cwd_conf, "from-cwd");
  write_group_conf (xdg_conf, "from-xdg");
  write_group_conf (env_conf, "from-env");
  write_group_conf (explicit_conf, "from-explicit");
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_setenv ("XDG_CONFIG_HOME", xdg, TRUE);

  paths = tally_config_search_paths (NULL);
  g_assert_cmpuint (g_strv_length (paths), >=, 3);
  g_assert_cmpstr (paths[0], ==, "./tally.conf");
  g_assert_cmpstr (paths[1], ==, xdg_conf);
  g_assert_cmpstr (paths[2], ==, "/etc/tally/tally.conf");

  /* 3. ./tally.conf before 4. and 5. */
  got = group_id_of_load (NULL, &source);
  g_assert_cmpstr (got, ==, "from-cwd");
  g_assert_cmpstr (source, ==, "./tally.conf");
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&source, g_free);

  /* 2. $TALLY_CONFIG before 3.; an empty $TALLY_CONFIG counts as unset. */
  g_setenv ("TALLY_CONFIG", env_conf, TRUE);
  got = group_id_of_load (NULL, &source);
  g_assert_cmpstr (got, ==, "from-env");
  g_assert_cmpstr (source, ==, env_conf);
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&source, g_free);

  /* 1. --config before 2. */
  got = group_id_of_load (explicit_conf, &source);
  g_assert_cmpstr (got, ==, "from-explicit");
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&source, g_free);

  g_setenv ("TALLY_CONFIG", "", TRUE);
  got = group_id_of_load (NULL, &source);
  g_assert_cmpstr (got, ==, "from-cwd");
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&source, g_free);

  /* A named file that does not exist is an error, never a fallback. */
  g_setenv ("TALLY_CONFIG", missing, TRUE);
  c = tally_config_load (NULL, &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_NOT_FOUND);
  message = g_strdup_printf ("%s: no such file (named by $TALLY_CONFIG)", missing);
  g_assert_cmpstr (error->message, ==, message);
  g_clear_error (&error);
  g_clear_pointer (&message, g_free);
  g_unsetenv ("TALLY_CONFIG");

  c = tally_config_load (missing, &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_NOT_FOUND);
  message = g_strdup_printf ("%s: no such file (named by the command line)", missing);
  g_assert_cmpstr (error->message, ==, message);
  g_clear_error (&error);

  /* 4. $XDG_CONFIG_HOME/tally/tally.conf when there is no ./tally.conf. */
  g_assert_cmpint (g_unlink (cwd_conf), ==, 0);
  got = group_id_of_load (NULL, &source);
  g_assert_cmpstr (got, ==, "from-xdg");
  g_assert_cmpstr (source, ==, xdg_conf);
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&source, g_free);

  /* A ./tally.conf that exists but cannot be read is an error, not skipped. */
  g_assert_cmpint (g_mkdir (cwd_conf, 0700), ==, 0);
  c = tally_config_load (NULL, &error);
  g_assert_null (c);
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_READ);
  g_assert_true (g_str_has_prefix (error->message, "./tally.conf: cannot read it: "));
  g_clear_error (&error);
  g_assert_cmpint (g_rmdir (cwd_conf), ==, 0);

  /* Nothing found: defaults, source_path NULL (only if this machine has no system file). */
  g_assert_cmpint (g_unlink (xdg_conf), ==, 0);
  if (!g_file_test (paths[2], G_FILE_TEST_EXISTS)
      && (paths[3] == NULL || !g_file_test (paths[3], G_FILE_TEST_EXISTS)))
    {
      c = tally_config_load (NULL, &error);
      g_assert_no_error (error);
      g_assert_null (c->source_path);
      g_assert_cmpstr (c->input.group_id, ==, "tally");
      tally_config_free (c);
    }
  else
    g_test_message ("a system tally.conf exists: not checking the no-file case");

  g_assert_cmpint (g_chdir (tmp_root), ==, 0);
  g_setenv ("XDG_CONFIG_HOME", tmp_root, TRUE);
}

/* A relative $XDG_CONFIG_HOME is ignored, as the XDG Base Directory spec says. */
static void
test_lookup_relative_xdg (void)
{
  g_auto (GStrv) paths = NULL;
  g_autofree char *home
      = g_build_filename (g_get_home_dir (), ".config", "tally", "tally.conf", NULL);

  g_setenv ("XDG_CONFIG_HOME", "relative/dir", TRUE);
  paths = tally_config_search_paths (NULL);
  g_setenv ("XDG_CONFIG_HOME", tmp_root, TRUE);
  g_assert_cmpstr (paths[1], ==, home);
}

/* ---------------------------------------------------------------------------------------
 * The `tally` program
 * ------------------------------------------------------------------------------------- */

/* Runs $TALLY_EXE with @args in the temporary directory; @env: NULL or "VAR=value" pairs;
 * standard output to @stdout_path, or to a pipe (returned in out) when %NULL. */
static TallyTestRun
run_tally_to (const char *const *args, const char *const *env, const char *stdout_path)
{
  const char *exe = g_getenv ("TALLY_EXE");
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  TallyTestRun r = { 0 };

  g_assert_nonnull (exe);
  launcher = g_subprocess_launcher_new (
      (stdout_path == NULL ? G_SUBPROCESS_FLAGS_STDOUT_PIPE : G_SUBPROCESS_FLAGS_NONE)
      | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  if (stdout_path != NULL)
    g_subprocess_launcher_set_stdout_file_path (launcher, stdout_path);
  g_subprocess_launcher_set_cwd (launcher, tmp_root);
  g_subprocess_launcher_unsetenv (launcher, "TALLY_CONFIG");
  g_subprocess_launcher_setenv (launcher, "XDG_CONFIG_HOME", tmp_root, TRUE);
  g_subprocess_launcher_setenv (launcher, "LC_ALL", "C.UTF-8", TRUE);
  for (guint i = 0; env != NULL && env[i] != NULL; i++)
    {
      g_autofree char *name = g_strndup (env[i], strcspn (env[i], "="));
      g_subprocess_launcher_setenv (launcher, name, strchr (env[i], '=') + 1, TRUE);
    }
  g_ptr_array_add (argv, (gpointer)exe);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer)args[i]);
  g_ptr_array_add (argv, NULL);

  proc = g_subprocess_launcher_spawnv (launcher, (const char *const *)argv->pdata, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (proc, NULL, NULL, &r.out, &r.err, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  r.status = g_subprocess_get_exit_status (proc);
  return r;
}

static TallyTestRun
run_tally (const char *const *args, const char *const *env)
{
  return run_tally_to (args, env, NULL);
}

static void
test_cli_check_config (void)
{
  g_autofree char *good = corpus_path ("good-full.conf");
  g_autofree char *bad = corpus_path ("bad-unknown-key.conf");
  g_autofree char *example = example_path ();
  g_autofree char *ok_line = g_strdup_printf ("%s: ok\n", good);
  g_autofree char *example_ok = g_strdup_printf ("%s: ok\n", example);
  g_autofree char *bad_line
      = g_strdup_printf ("tally check-config: %s:2: [input] topic: unknown key; did you mean "
                         "topics?\n",
                         bad);
  g_autofree char *missing_line
      = g_strdup_printf ("tally check-config: %s/none.conf: no such file (named by the command "
                         "line)\n",
                         tmp_root);
  g_autofree char *missing = g_strdup_printf ("%s/none.conf", tmp_root);
  g_autofree char *env_good = g_strdup_printf ("TALLY_CONFIG=%s", good);
  g_autofree char *sasl = corpus_path ("bad-kafka-client-sasl-mechanism.conf");
  g_autofree char *sasl_line
      = g_strdup_printf ("tally check-config: %s:3: [kafka] sasl.mechanisms: librdkafka refuses "
                         "the consumer "
                         "configuration: Unsupported SASL mechanism: NOPE\n",
                         sasl);
  TallyTestRun r;

  r = run_tally ((const char *[]){ "check-config", good, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_cmpstr (r.out, ==, ok_line);
  g_assert_cmpstr (r.err, ==, "");
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "check-config", "--config", good, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_cmpstr (r.out, ==, ok_line);
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "check-config", NULL }, (const char *[]){ env_good, NULL });
  g_assert_cmpint (r.status, ==, 0);
  g_assert_cmpstr (r.out, ==, ok_line);
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "check-config", example, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_cmpstr (r.out, ==, example_ok);
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "check-config", bad, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 78);
  g_assert_cmpstr (r.out, ==, "");
  g_assert_cmpstr (r.err, ==, bad_line);
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "check-config", missing, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 78);
  g_assert_cmpstr (r.err, ==, missing_line);
  tally_test_run_clear (&r);

  /* A bad environment override is a configuration error too. */
  r = run_tally ((const char *[]){ "check-config", good, NULL },
                 (const char *[]){ "TALLY_LOG_LEVEL=loud", NULL });
  g_assert_cmpint (r.status, ==, 78);
  g_assert_cmpstr (r.err, ==,
                   "tally check-config: TALLY_LOG_LEVEL (environment): [log] level: “loud” is "
                   "not one of: error, "
                   "critical, warning, message, info, debug\n");
  tally_test_run_clear (&r);

  /* What librdkafka refuses only when it makes a client fails check-config as it fails
   * `tally run` (issue 13, item 11: check-config printed ok). */
  r = run_tally ((const char *[]){ "check-config", sasl, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 78);
  g_assert_cmpstr (r.out, ==, "");
  g_assert_cmpstr (r.err, ==, sasl_line);
  tally_test_run_clear (&r);

  /* Usage errors: two files, an unknown option. */
  r = run_tally ((const char *[]){ "check-config", good, bad, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 2);
  tally_test_run_clear (&r);
  r = run_tally ((const char *[]){ "check-config", "--config", good, bad, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 2);
  tally_test_run_clear (&r);
  r = run_tally ((const char *[]){ "check-config", "--frobnicate", NULL }, NULL);
  g_assert_cmpint (r.status, ==, 2);
  tally_test_run_clear (&r);
}

static void
test_cli_print_config (void)
{
  g_autofree char *good = corpus_path ("good-full.conf");
  g_autofree char *bad = corpus_path ("bad-comma-list.conf");
  g_autofree char *env_bad = g_strdup_printf ("TALLY_CONFIG=%s", bad);
  g_autoptr (TallyConfig) expected_config = load_corpus ("good-full.conf");
  g_autofree char *expected = tally_config_to_string (expected_config, TRUE);
  TallyTestRun r;

  r = run_tally ((const char *[]){ "print-config", "--config", good, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_cmpstr (r.out, ==, expected);
  g_assert_null (strstr (r.out, "hunter2-secret"));
  g_assert_nonnull (strstr (r.out, "\nsasl.password=<redacted>\n"));
  tally_test_run_clear (&r);

  r = run_tally (
      (const char *[]){ "print-config", "--config", good, NULL },
      (const char *[]){ "TALLY_LOG_LEVEL=info", "TALLY_KAFKA_SASL_PASSWORD=from-env", NULL });
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (
      strstr (r.out, "# Environment overrides: TALLY_KAFKA_SASL_PASSWORD, TALLY_LOG_LEVEL\n"));
  g_assert_true (g_str_has_suffix (r.out, "\n[log]\nlevel=info\n\n[metrics]\nlisten=0.0.0.0:9464\n"
                                          "#tls_cert_file=\n#tls_key_file=\n"
                                          "basic_auth_users=<redacted>\n"));
  g_assert_null (strstr (r.out, "from-env"));
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "print-config", NULL }, (const char *[]){ env_bad, NULL });
  g_assert_cmpint (r.status, ==, 78);
  g_assert_cmpstr (r.out, ==, "");
  {
    g_autofree char *start = g_strdup_printf ("tally print-config: %s:2: [input] topics: ", bad);
    g_assert_true (g_str_has_prefix (r.err, start));
  }
  tally_test_run_clear (&r);

  r = run_tally ((const char *[]){ "print-config", good, NULL }, NULL);
  g_assert_cmpint (r.status, ==, 2);
  tally_test_run_clear (&r);
}

/* The topic-name check the loader applies, public for `tally broker --topics`. */
static void
test_check_topic_name (void)
{
  static const struct
  {
    const char *topic, *message;
  } bad[] = {
    { "", "a topic name cannot be empty" },
    { "bad topic",
      "“bad topic” is not a legal topic name: Kafka topic names use only ASCII letters, digits, "
      "'.', '_' and '-'" },
    { " t", "“ t”: a topic name cannot start or end with whitespace" },
    { "..", "“..” is not a legal topic name" },
  };
  g_autofree char *long_name = g_strnfill (250, 'a');
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_config_check_topic_name ("tally-input.v2_x", &error));
  g_assert_no_error (error);
  g_assert_true (tally_config_check_topic_name (long_name + 1, &error));
  g_assert_false (tally_config_check_topic_name (long_name, &error));
  g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
  g_assert_cmpstr (error->message, ==, "a topic name is at most 249 characters; this one has 250");
  g_clear_error (&error);
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (tally_config_check_topic_name (bad[i].topic, &error));
      g_assert_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE);
      g_assert_cmpstr (error->message, ==, bad[i].message);
      g_clear_error (&error);
    }
}

/* A failed write of the output is an error (exit 1), not a silent success. */
static void
test_cli_write_error (void)
{
  g_autofree char *good = corpus_path ("good-full.conf");
  TallyTestRun r;

  r = run_tally_to ((const char *[]){ "print-config", "--config", good, NULL }, NULL, "/dev/full");
  g_assert_cmpint (r.status, ==, 1);
  g_assert_cmpstr (r.err, ==,
                   "tally print-config: could not write the configuration: No space left on "
                   "device\n");
  tally_test_run_clear (&r);

  r = run_tally_to ((const char *[]){ "check-config", good, NULL }, NULL, "/dev/full");
  g_assert_cmpint (r.status, ==, 1);
  g_assert_cmpstr (r.err, ==,
                   "tally check-config: could not write the result: No space left on device\n");
  tally_test_run_clear (&r);
}

static void
test_cli_help (void)
{
  const char *const commands[] = { "check-config", "print-config" };

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      TallyTestRun r = run_tally ((const char *[]){ commands[i], "--help", NULL }, NULL);
      g_assert_cmpint (r.status, ==, 0);
      g_assert_nonnull (strstr (r.out, "--config"));
      g_assert_nonnull (strstr (r.out, "$TALLY_CONFIG"));
      g_assert_nonnull (strstr (r.out, "/etc/tally/tally.conf"));
      g_assert_nonnull (strstr (r.out, "TALLY_<GROUP>_<KEY>"));
      g_assert_nonnull (strstr (r.out, "78 (EX_CONFIG)"));
      tally_test_run_clear (&r);
    }
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);

  clear_tally_environment ();
  g_unsetenv ("TALLY_CONFIG");
  tmp_root = g_dir_make_tmp ("tally-test-config-XXXXXX", &error);
  g_assert_no_error (error);
  start_cwd = g_get_current_dir ();
  g_assert_cmpint (g_chdir (tmp_root), ==, 0);
  g_setenv ("XDG_CONFIG_HOME", tmp_root, TRUE);

  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/empty-data-is-defaults", test_empty_data_is_defaults);
  g_test_add_func ("/config/overrides", test_overrides);
  names = corpus_names ();
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *test_path = g_strdup_printf ("/config/corpus/%s", name);
      g_test_add_data_func (test_path, name, test_corpus_file);
    }
  g_test_add_func ("/config/corpus-covers-every-error", test_corpus_covers_every_error);
  g_test_add_func ("/config/good-full", test_good_full);
  g_test_add_func ("/config/good-small-cases", test_good_small_cases);
  g_test_add_func ("/config/metrics-listen", test_metrics_listen);
  g_test_add_func ("/config/metrics-tls", test_metrics_tls);
  g_test_add_func ("/config/example", test_example);
  g_test_add_func ("/config/example-and-docs-cover-every-key",
                   test_example_and_docs_cover_every_key);
  g_test_add_func ("/config/env/overrides", test_env_overrides);
  g_test_add_func ("/config/env/errors", test_env_errors);
  g_test_add_func ("/config/env/other-variables-ignored", test_env_other_variables_ignored);
  g_test_add_func ("/config/secret-keys", test_secret_keys);
  g_test_add_func ("/config/redaction", test_redaction);
  g_test_add_func ("/config/round-trip", test_round_trip);
  g_test_add_func ("/config/to-string-shape", test_to_string_shape);
  g_test_add_func ("/config/apply-kafka", test_apply_kafka);
  g_test_add_func ("/config/apply-kafka-error", test_apply_kafka_error);
  g_test_add_func ("/config/lookup/order", test_lookup_order);
  g_test_add_func ("/config/lookup/relative-xdg", test_lookup_relative_xdg);
  g_test_add_func ("/config/cli/check-config", test_cli_check_config);
  g_test_add_func ("/config/cli/print-config", test_cli_print_config);
  g_test_add_func ("/config/cli/help", test_cli_help);
  g_test_add_func ("/config/secret-file", test_secret_file);
  g_test_add_func ("/config/cli/write-error", test_cli_write_error);
  g_test_add_func ("/config/check-topic-name", test_check_topic_name);
  g_test_add_func ("/config/tokenizer-options", test_tokenizer_options);
  g_test_add_func ("/config/tokenizer-options-clamped", test_tokenizer_options_clamped);

  status = g_test_run ();

  g_assert_cmpint (g_chdir (start_cwd), ==, 0);
  {
    /* Remove what the tests left in the temporary directory. */
    g_autofree char *quoted = g_shell_quote (tmp_root);
    g_autofree char *rm = g_strdup_printf ("rm -rf %s", quoted);
    g_spawn_command_line_sync (rm, NULL, NULL, NULL, NULL);
  }
  g_free (tmp_root);
  g_free (start_cwd);
  return status;
}
