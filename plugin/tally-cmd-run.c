/* tally-cmd-run.c — `tally run [--config PATH]`: the Tally service.
 *
 * Loads the configuration (exit status 78 with the message when it is bad) and hands it
 * to tally_run_service() (plugin/tally-run.c), which runs until SIGINT or SIGTERM.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

#include "tally-config.h"
#include "tally-run.h"

#include <stdio.h>

/**
 * tally_cmd_run:
 * @argc: number of arguments, the first being "tally run"
 * @argv: (array length=argc): the arguments
 *
 * `tally run [--config PATH]`: consumes the [input] topics, counts their words and
 * publishes snapshots to the [output] topic until SIGINT or SIGTERM. Without [kafka]
 * bootstrap.servers it starts the embedded broker and prints `bootstrap.servers=HOST:PORT`
 * on standard output. Main thread.
 *
 * Returns: %TALLY_EXIT_OK after a clean shutdown; %TALLY_EXIT_CONFIG for a bad
 *   configuration; %TALLY_EXIT_USAGE for a bad option; %TALLY_EXIT_FAILURE when the
 *   service could not start or stop.
 */
int
tally_cmd_run (int argc, char **argv)
{
  g_autofree char *opt_config = NULL;
  const GOptionEntry option_entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config,
      "Read the configuration from PATH (default: see docs/configuration.md)", "PATH" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = NULL;

  g_option_context_set_summary (context,
                                "Consume the input topics, count their words and publish "
                                "snapshots\nuntil SIGINT or SIGTERM. Without bootstrap.servers, "
                                "start the embedded broker\nand print its address.");
  g_option_context_set_description (
      context, "Signals:\n"
               "  SIGINT, SIGTERM  stop consuming, checkpoint, publish a final snapshot and exit\n"
               "                   within [shutdown] timeout_ms (a second signal is ignored)\n"
               "  SIGUSR1          publish a snapshot now\n"
               "\n"
               "Exit status:\n"
               "  0   stopped by a signal after a clean shutdown\n"
               "  1   a failure at run time (the broker unreachable at the start, a topic\n"
               "      that cannot be created, a shutdown past [shutdown] timeout_ms, ...);\n"
               "      the message says which\n"
               "  2   bad command-line usage\n"
               "  78  a bad configuration (file, group and key named)\n"
               "\n"
               "Guides: docs/running.md (running it, snapshots, state, shutdown) and\n"
               "docs/configuration.md (every key, where the file is looked up).");
  g_option_context_add_main_entries (context, option_entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_USAGE;
    }
  if (argc > 1)
    {
      g_printerr ("%s: unexpected argument '%s'\n", g_get_prgname (), argv[1]);
      return TALLY_EXIT_USAGE;
    }

  config = tally_config_load (opt_config, &error);
  if (config == NULL)
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_CONFIG;
    }

  if (!tally_run_service (config, &error))
    {
      g_printerr ("%s: %s\n", g_get_prgname (), error->message);
      return g_error_matches (error, TALLY_RUN_ERROR, TALLY_RUN_ERROR_CONFIG) ? TALLY_EXIT_CONFIG
                                                                              : TALLY_EXIT_FAILURE;
    }
  return TALLY_EXIT_OK;
}
