/* tally-cmd-broker.c — `tally broker`: the embedded broker on its own, in the foreground.
 *
 * Runs librdkafka's mock cluster (see tally-broker.c) in this process so that `tally run`
 * can be stopped and restarted against a broker that keeps its data, and so that kcat,
 * Python clients and `tally snapshot` have something to talk to. It creates Tally's
 * topics (from the configuration, or --topics) with [broker] partitions each, prints
 * `bootstrap.servers=127.0.0.1:PORT` as the first line on stdout, then waits for SIGINT or
 * SIGTERM (g_unix_signal_add(), never a raw signal handler) and exits 0. Its data lives in
 * memory only.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-commands.h"
#include "tally-config.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>

static gboolean
on_signal (gpointer user_data)
{
  GMainLoop *loop = user_data;

  g_main_loop_quit (loop);
  return G_SOURCE_CONTINUE;
}

/* Tally's own topics from @config: input topics that are names (not `^regex`), the output,
 * request and changelog topics. */
static GPtrArray *
default_topics (const TallyConfig *config)
{
  GPtrArray *topics = g_ptr_array_new_with_free_func (g_free);

  for (char **t = config->input.topics; t != NULL && *t != NULL; t++)
    if (**t != '^')
      g_ptr_array_add (topics, g_strdup (*t));
  g_ptr_array_add (topics, g_strdup (config->output.topic));
  g_ptr_array_add (topics, g_strdup (config->requests.topic));
  if (config->checkpoint.enabled)
    g_ptr_array_add (topics, g_strdup (config->checkpoint.changelog_topic));
  return topics;
}

int
tally_cmd_broker (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  g_autofree char *topics_arg = NULL;
  /* G_MININT: not given on the command line, so the configuration decides. */
  gint port = G_MININT, partitions = G_MININT;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
      "Read topic names and [broker] settings from PATH", "PATH" },
    { "port", 0, 0, G_OPTION_ARG_INT, &port,
      "Listen for bootstrap connections on 127.0.0.1:N (0: any free port; default [broker] "
      "port)",
      "N" },
    { "partitions", 0, 0, G_OPTION_ARG_INT, &partitions,
      "Partitions of each topic created (default [broker] partitions)", "N" },
    { "topics", 't', 0, G_OPTION_ARG_STRING, &topics_arg,
      "Comma-separated topics to create (default: Tally's input, output, request and "
      "changelog topics)",
      "A,B" },
    { NULL },
  };
  g_autoptr (GOptionContext) options = g_option_context_new ("- run the embedded Kafka broker");
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (TallyBroker) broker = NULL;
  g_autoptr (GPtrArray) topics = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  guint sigint, sigterm;

  g_option_context_add_main_entries (options, entries, NULL);
  g_option_context_set_summary (options,
                                "Runs librdkafka's mock cluster on 127.0.0.1 in the foreground "
                                "until SIGINT or SIGTERM.\nThe first line on stdout is "
                                "bootstrap.servers=127.0.0.1:PORT. Data is kept in memory only.");
  g_option_context_set_description (
      options, "Limits of librdkafka 2.0.2's mock cluster: no real transactions or "
               "read_committed, no compaction,\nabout 5 MiB retained per partition, topics "
               "auto-created with 4 partitions, slow rebalances\nunless session.timeout.ms is "
               "lowered, and a group whose members list different assignors\nfirst crashes "
               "it. Good for demos and fast tests; use real Kafka for durability.\n");
  if (!g_option_context_parse (options, &argc, &argv, &error))
    return tally_cmd_usage_error ("%s", error->message);
  if (argc > 1)
    return tally_cmd_usage_error ("unexpected argument '%s'", argv[1]);
  if (port != G_MININT && (port < 0 || port > 65535))
    return tally_cmd_usage_error ("--port must be from 0 to 65535, not %d", port);
  /* The range of [broker] partitions. */
  if (partitions != G_MININT && (partitions < 1 || partitions > 1000))
    return tally_cmd_usage_error ("--partitions must be from 1 to 1000, not %d", partitions);
  if (topics_arg != NULL)
    {
      g_auto (GStrv) names = g_strsplit (topics_arg, ",", -1);

      topics = g_ptr_array_new_with_free_func (g_free);
      for (char **t = names; *t != NULL; t++)
        {
          g_strstrip (*t);
          if (!tally_config_check_topic_name (*t, &error))
            return tally_cmd_usage_error ("--topics: %s", error->message);
          g_ptr_array_add (topics, g_strdup (*t));
        }
      if (topics->len == 0)
        return tally_cmd_usage_error ("--topics: name at least one topic");
    }

  config = tally_cmd_load_config (config_path);
  if (config == NULL)
    return TALLY_EXIT_CONFIG;
  if (port == G_MININT)
    port = (gint)config->broker.port;
  if (partitions == G_MININT)
    partitions = (gint)config->broker.partitions;
  if (topics == NULL)
    topics = default_topics (config);

  broker = tally_broker_new ((guint)port, config->broker.brokers, &error);
  if (broker == NULL)
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_FAILURE;
    }
  for (guint i = 0; i < topics->len; i++)
    if (!tally_broker_create_topic (broker, g_ptr_array_index (topics, i), (guint)partitions,
                                    &error))
      {
        g_printerr ("%s: %s\n", g_get_prgname (), error->message);
        return TALLY_EXIT_FAILURE;
      }

  /* Signals are caught before anyone learns the address and could signal us. */
  loop = g_main_loop_new (NULL, FALSE);
  sigint = g_unix_signal_add (SIGINT, on_signal, loop);
  sigterm = g_unix_signal_add (SIGTERM, on_signal, loop);
  printf ("bootstrap.servers=%s\n", tally_broker_get_bootstrap_servers (broker));
  fflush (stdout);
  for (guint i = 0; i < topics->len; i++)
    g_printerr ("%s: topic %s: %d partitions\n", g_get_prgname (),
                (const char *)g_ptr_array_index (topics, i), partitions);
  g_printerr ("%s: running until SIGINT or SIGTERM\n", g_get_prgname ());

  g_main_loop_run (loop);
  g_source_remove (sigint);
  g_source_remove (sigterm);

  g_printerr ("%s: stopping\n", g_get_prgname ());
  return TALLY_EXIT_OK;
}
