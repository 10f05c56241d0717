/* tally-cmd-config.c — `tally check-config [PATH]` and `tally print-config`.
 *
 * Both load the configuration exactly as `tally run` does (tally_config_load(): the
 * lookup order, strict validation, environment overrides). check-config then has
 * librdkafka build the consumer and producer configurations run builds
 * (tally_config_check_clients(): combinations of [kafka] properties that only client
 * creation refuses) and says "PATH: ok", or prints the error and exits 78 (EX_CONFIG); print-config
 * prints the effective configuration as a key-file, every default filled in and secrets redacted.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"
#include "tally-config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

G_STATIC_ASSERT (TALLY_CONFIG_EXIT_STATUS == TALLY_EXIT_CONFIG);

/* A printf format: %s is where an installation's own SYSCONFDIR is named. */
static const char lookup_description[]
    = "The configuration file is the first of:\n"
      "  1. the path given with --config (or as PATH for check-config);\n"
      "  2. $TALLY_CONFIG;\n"
      "  3. ./tally.conf;\n"
      "  4. $XDG_CONFIG_HOME/tally/tally.conf (~/.config/tally/tally.conf);\n"
      "  5. /etc/tally/tally.conf%s.\n"
      "A file named by 1 or 2 must exist; 3-5 are used when they exist; with none, the\n"
      "defaults apply. Then environment variables TALLY_<GROUP>_<KEY> override single keys,\n"
      "for example TALLY_INPUT_TOPICS or TALLY_KAFKA_BOOTSTRAP_SERVERS (see\n"
      "docs/configuration.md).\n"
      "\n"
      "Exit status: 0 when the configuration is valid, 2 on a usage error, 78 (EX_CONFIG)\n"
      "when it is not; the message names the file and line (or variable), group and key.";

/* Flushes standard output: %TALLY_EXIT_OK, or %TALLY_EXIT_FAILURE after saying that
 * @what could not be written and why (a full disk, a closed pipe). */
static int
flush_stdout (const char *what)
{
  if (fflush (stdout) == 0 && !ferror (stdout))
    return TALLY_EXIT_OK;
  fprintf (stderr, "%s: could not write %s: %s\n", g_get_prgname (), what, g_strerror (errno));
  return TALLY_EXIT_FAILURE;
}

/* Parses the options shared by both commands; returns -1 to go on, else an exit status. */
static int
parse_options (int *argc, char ***argv, const char *parameter, const char *summary,
               char **config_path)
{
  g_autoptr (GOptionContext) context = g_option_context_new (parameter);
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, config_path,
      "Read the configuration from PATH instead of looking for tally.conf", "PATH" },
    { NULL },
  };
  g_autofree char *sysconf = g_build_filename (TALLY_SYSCONFDIR, "tally", "tally.conf", NULL);
  g_autofree char *also = strcmp (sysconf, "/etc/tally/tally.conf") != 0
                              ? g_strdup_printf (", then %s", sysconf)
                              : g_strdup ("");
  g_autofree char *description = g_strdup_printf (lookup_description, also);

  g_option_context_set_summary (context, summary);
  g_option_context_set_description (context, description);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, &error))
    {
      fprintf (stderr, "%s: %s\nRun '%s --help' for usage.\n", g_get_prgname (), error->message,
               g_get_prgname ());
      return TALLY_EXIT_USAGE;
    }
  return -1;
}

/**
 * tally_cmd_check_config:
 * @argc: number of arguments in @argv.
 * @argv: `tally check-config` and its arguments: `[--config PATH] [PATH]`.
 *
 * Validates the configuration (the file, the environment overrides, and the client
 * configurations librdkafka builds from it, as `tally run` does) and prints `PATH: ok` on stdout
 * (or, with no file found, that the defaults are ok). On an invalid configuration prints the error
 * on stderr. Main thread.
 *
 * Returns: %TALLY_EXIT_OK, %TALLY_EXIT_USAGE, %TALLY_EXIT_CONFIG, or %TALLY_EXIT_FAILURE when
 *   standard output cannot be written.
 */
int
tally_cmd_check_config (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (GError) error = NULL;
  const char *path;
  int status = parse_options (&argc, &argv, "[PATH]",
                              "Check a Tally configuration file strictly and exit 0 if it is "
                              "valid, 78 if not.",
                              &config_path);

  if (status >= 0)
    return status;
  if (argc > 2 || (argc == 2 && config_path != NULL))
    {
      fprintf (stderr, "%s: give one configuration file, as PATH or with --config\n",
               g_get_prgname ());
      return TALLY_EXIT_USAGE;
    }
  path = argc == 2 ? argv[1] : config_path;

  config = tally_config_load (path, &error);
  if (config == NULL || !tally_config_check_clients (config, &error))
    {
      fprintf (stderr, "%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_CONFIG;
    }
  if (config->source_path != NULL)
    printf ("%s: ok\n", config->source_path);
  else
    printf ("no configuration file found (see --help for where it is looked up); "
            "defaults%s: ok\n",
            config->env_overrides[0] != NULL ? " with environment overrides" : "");
  return flush_stdout ("the result");
}

/**
 * tally_cmd_print_config:
 * @argc: number of arguments in @argv.
 * @argv: `tally print-config` and its arguments: `[--config PATH]`.
 *
 * Prints the effective configuration (tally_config_to_string() with secrets redacted) on
 * stdout. Main thread.
 *
 * Returns: %TALLY_EXIT_OK, %TALLY_EXIT_USAGE, %TALLY_EXIT_CONFIG, or %TALLY_EXIT_FAILURE when
 *   standard output cannot be written.
 */
int
tally_cmd_print_config (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  int status = parse_options (&argc, &argv, NULL,
                              "Print the effective Tally configuration: the file, every "
                              "default and the environment overrides, as a key-file, with "
                              "secret values redacted.",
                              &config_path);

  if (status >= 0)
    return status;
  if (argc > 1)
    {
      fprintf (stderr, "%s: unexpected argument '%s'; use --config PATH\n", g_get_prgname (),
               argv[1]);
      return TALLY_EXIT_USAGE;
    }

  config = tally_config_load (config_path, &error);
  if (config == NULL)
    {
      fprintf (stderr, "%s: %s\n", g_get_prgname (), error->message);
      return TALLY_EXIT_CONFIG;
    }
  text = tally_config_to_string (config, TRUE);
  fputs (text, stdout);
  return flush_stdout ("the configuration");
}
