/* tally-cmd-run.c — `tally run [--config PATH] [-X NAME=VALUE]... [--bootstrap-server
 * HOST:PORT]`: the Tally service.
 *
 * Loads the configuration (exit status 78 with the message when it is bad), applies the -X
 * librdkafka properties and then --bootstrap-server to its [kafka] properties as if the
 * file set them (bootstrap.servers means the embedded broker is not started), has
 * librdkafka check the client configurations (exit 78, as check-config), and hands it to
 * tally_run_service() (plugin/kafka/tally-run.c), which runs until SIGINT or SIGTERM.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

#include "tally-config.h"
#include "tally-run.h"

#include <librdkafka/rdkafka.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <string.h>

/* The malloc mmap and trim thresholds `tally run` fixes (bytes), see
 * fix_malloc_thresholds(). */
#define MALLOC_THRESHOLD_BYTES (4 * 1024 * 1024)

/* Fixes glibc malloc's mmap and trim thresholds at MALLOC_THRESHOLD_BYTES (4 MiB) for the
 * life of the service, unless the environment sets either (MALLOC_MMAP_THRESHOLD_,
 * MALLOC_TRIM_THRESHOLD_, or glibc.malloc.mmap_threshold / trim_threshold in
 * GLIBC_TUNABLES): the user's choice wins. Main thread, before any thread or large
 * allocation.
 *
 * Why: left dynamic, each free of an mmapped block raises the mmap threshold to its size
 * (up to 32 MiB) and the trim threshold to twice that. The word tables' slot arrays
 * (8 MiB each at 1 M words) and the checkpoints' copies are such blocks; afterwards the
 * copies come from the shards' and producers' thread arenas, and what they free joins
 * the top of those arenas, which only a free past the trim threshold shrinks.
 * malloc_trim() releases free chunks inside each arena but never the top of a thread
 * arena, so `tally run` kept 50-70 MB of free heap resident after counting 1 M distinct
 * words (RSS 113-130 MB instead of 54 MB: tests/bench/memory.sh, tests/bench/README.md).
 * With fixed thresholds, blocks of 4 MiB and more are mapped and unmapped on their own,
 * and an arena keeps at most 4 MiB of free top. Why not glibc's default of 128 KiB: the
 * consumer's fetch buffers and the changelog's blocks (up to about 1 MiB, allocated and
 * freed all the time) were then mapped and unmapped each time, page faults included:
 * 15% more CPU time for tally run (tests/bench/e2e.sh --quick, tests/bench/README.md). */
static void
fix_malloc_thresholds (void)
{
#ifdef __GLIBC__
  const char *tunables = g_getenv ("GLIBC_TUNABLES");

  if (g_getenv ("MALLOC_MMAP_THRESHOLD_") != NULL || g_getenv ("MALLOC_TRIM_THRESHOLD_") != NULL
      || (tunables != NULL
          && (strstr (tunables, "glibc.malloc.mmap_threshold") != NULL
              || strstr (tunables, "glibc.malloc.trim_threshold") != NULL)))
    return;
  (void)mallopt (M_MMAP_THRESHOLD, MALLOC_THRESHOLD_BYTES);
  (void)mallopt (M_TRIM_THRESHOLD, MALLOC_THRESHOLD_BYTES);
#endif
}

/* Sets [kafka] bootstrap.servers of @config to @servers, already accepted by librdkafka:
 * replaces the value of every bootstrap.servers or metadata.broker.list property (its
 * alias) in place, or appends bootstrap.servers when the configuration has neither, the
 * way TALLY_KAFKA_BOOTSTRAP_SERVERS does; then config->kafka.has_bootstrap is TRUE. */
static void
override_bootstrap (TallyConfig *config, const char *servers)
{
  gboolean replaced = FALSE;

  for (guint i = 0; i < config->kafka.properties->len; i++)
    {
      TallyConfigKafkaProperty *p = g_ptr_array_index (config->kafka.properties, i);

      if (strcmp (p->name, "bootstrap.servers") != 0
          && strcmp (p->name, "metadata.broker.list") != 0)
        continue;
      g_free (p->value);
      p->value = g_strdup (servers);
      g_free (p->origin);
      p->origin = g_strdup ("--bootstrap-server");
      replaced = TRUE;
    }
  if (!replaced)
    {
      TallyConfigKafkaProperty *p = g_new0 (TallyConfigKafkaProperty, 1);

      p->name = g_strdup ("bootstrap.servers");
      p->value = g_strdup (servers);
      p->origin = g_strdup ("--bootstrap-server");
      g_ptr_array_add (config->kafka.properties, p);
    }
  config->kafka.has_bootstrap = TRUE;
}

/**
 * tally_cmd_run:
 * @argc: number of arguments, the first being "tally run"
 * @argv: (array length=argc): the arguments
 *
 * `tally run [--config PATH] [--bootstrap-server HOST:PORT]`: consumes the [input] topics,
 * counts their words and publishes snapshots to the [output] topic until SIGINT or SIGTERM.
 * --bootstrap-server overrides [kafka] bootstrap.servers (librdkafka property
 * `bootstrap.servers`, a comma-separated HOST:PORT list). Without either it starts the
 * embedded broker and prints `bootstrap.servers=HOST:PORT` on standard output. Main thread.
 *
 * Returns: %TALLY_EXIT_OK after a clean shutdown; %TALLY_EXIT_CONFIG for a bad
 *   configuration; %TALLY_EXIT_USAGE for a bad option (an empty --bootstrap-server, or
 *   one librdkafka rejects); %TALLY_EXIT_FAILURE when the
 *   service could not start or stop.
 */
int
tally_cmd_run (int argc, char **argv)
{
  g_autofree char *opt_config = NULL;
  g_autofree char *opt_bootstrap = NULL;
  g_auto (GStrv) opt_kafka = NULL;
  const GOptionEntry option_entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config,
      "Read the configuration from PATH (default: see docs/configuration.md)", "PATH" },
    { "bootstrap-server", 'b', 0, G_OPTION_ARG_STRING, &opt_bootstrap,
      "Kafka bootstrap servers (overrides [kafka] bootstrap.servers; no embedded broker)",
      "HOST:PORT" },
    { "property", 'X', 0, G_OPTION_ARG_STRING_ARRAY, &opt_kafka,
      "Set a librdkafka property, as in [kafka] (wins over the file and TALLY_KAFKA_*; "
      "repeatable)",
      "NAME=VALUE" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;

  g_option_context_set_summary (context,
                                "Consume the input topics, count their words and publish "
                                "snapshots\nuntil SIGINT, SIGTERM or SIGHUP. Without "
                                "--bootstrap-server or bootstrap.servers, start\nthe embedded "
                                "broker and print its address.");
  g_option_context_set_description (
      context, "Signals:\n"
               "  SIGINT, SIGTERM, SIGHUP\n"
               "                   stop consuming, checkpoint, publish a final snapshot and exit\n"
               "                   within [shutdown] timeout_ms (a second signal is ignored);\n"
               "                   SIGHUP does not reload the configuration\n"
               "  SIGUSR1          publish a snapshot now\n"
               "\n"
               "Precedence of librdkafka properties, lowest first: [kafka] in the file,\n"
               "TALLY_KAFKA_* variables, -X NAME=VALUE (in order), --bootstrap-server.\n"
               "A secret on the command line (-X sasl.password=...) is visible to other\n"
               "users of the machine: tally warns; keep secrets in the file.\n"
               "\n"
               "Exit status:\n"
               "  0   stopped by a signal after a clean shutdown\n"
               "  1   a failure at run time (the broker unreachable at the start, a topic\n"
               "      that cannot be created, a shutdown past [shutdown] timeout_ms, ...);\n"
               "      the message says which\n"
               "  2   bad command-line usage (a -X property librdkafka refuses, ...)\n"
               "  78  a bad configuration (file, group and key named)\n"
               "\n"
               "Guides: docs/running.md (running it, snapshots, state, shutdown) and\n"
               "docs/configuration.md (every key, where the file is looked up).");
  g_option_context_add_main_entries (context, option_entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    return tally_cmd_usage_error ("%s", error->message);
  if (argc > 1)
    return tally_cmd_usage_error ("unexpected argument '%s'", argv[1]);
  fix_malloc_thresholds ();

  if (opt_bootstrap != NULL)
    {
      rd_kafka_conf_t *scratch = rd_kafka_conf_new ();
      char errstr[512];
      gboolean accepted;

      if (opt_bootstrap[0] == '\0')
        {
          rd_kafka_conf_destroy (scratch);
          g_printerr ("%s: --bootstrap-server must not be empty\n", g_get_prgname ());
          return TALLY_EXIT_USAGE;
        }
      accepted
          = rd_kafka_conf_set (scratch, "bootstrap.servers", opt_bootstrap, errstr, sizeof errstr)
            == RD_KAFKA_CONF_OK;
      rd_kafka_conf_destroy (scratch);
      if (!accepted)
        {
          g_printerr ("%s: --bootstrap-server: %s\n", g_get_prgname (), errstr);
          return TALLY_EXIT_USAGE;
        }
    }

  config = tally_cmd_load_config (opt_config);
  if (config == NULL)
    return TALLY_EXIT_CONFIG;
  if (!tally_cmd_apply_kafka_options (config, opt_kafka))
    return TALLY_EXIT_USAGE;
  if (opt_bootstrap != NULL)
    override_bootstrap (config, opt_bootstrap);
  /* What librdkafka refuses only when a client is made, refused before anything starts,
   * with the file, group and key named (as check-config does). */
  if (!tally_cmd_check_clients (config))
    return TALLY_EXIT_CONFIG;

  if (!tally_run_service (config, &error))
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return g_error_matches (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_CONFIG) ? TALLY_EXIT_CONFIG
                                                                              : TALLY_EXIT_FAILURE;
    }
  return TALLY_EXIT_OK;
}
