/* tally-main.c — the `tally` program: finds the subcommand and runs it.
 *
 * Every subcommand parses its own options with GOptionContext; this file only dispatches
 * and prints the overview for `tally`, `tally --help` and `tally help`; `tally help COMMAND`
 * runs `tally COMMAND --help`.
 *
 * Short options mean one thing in every command (long options are always there):
 *   -b --bootstrap-server  -c --config  -f --format  -j --jobs  -J --json  -m --min-count
 *   -n --top  -p --prefix  -q --quiet  -s --shards  -t --topics (as kcat's -t)
 *   -X NAME=VALUE (a librdkafka property, as kcat's -X)
 * Options with no short form: --timeout, --tokenizer, --port, --partitions.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

/* Subcommand entry points, one per plugin/tally-cmd-<name>.c. */

static const TallyCommand commands[] = {
  { "words", "count words typed one per line, as the article's CLI does", tally_cmd_words },
  { "count", "count the words of files or stdin, without Kafka", tally_cmd_count },
  { "check-config", "check a configuration file strictly (exit 0, or 78)", tally_cmd_check_config },
  { "print-config", "print the effective configuration, secrets redacted", tally_cmd_print_config },
  { "broker", "run the embedded Kafka broker (librdkafka's mock cluster)", tally_cmd_broker },
  { "snapshot", "request a snapshot and print the merged counts", tally_cmd_snapshot },
  { "run", "consume topics, count words, publish snapshots (the service)", tally_cmd_run },
  { NULL, NULL, NULL },
};

static void
print_overview (FILE *out)
{
  fprintf (out, "Usage: tally COMMAND [OPTION...]\n"
                "\n"
                "Tally counts words streamed through Apache Kafka.\n"
                "\n"
                "Commands:\n");
  for (const TallyCommand *c = commands; c->name != NULL; c++)
    fprintf (out, "  %-14s %s\n", c->name, c->summary);
  fprintf (out, "\n"
                "Run 'tally help COMMAND' or 'tally COMMAND --help' for the options of one "
                "command.\n"
                "Version " TALLY_VERSION ".\n");
}

int
main (int argc, char **argv)
{
  /* Messages may be translated, but word handling never depends on the locale. */
  setlocale (LC_ALL, "");

  /* tally help COMMAND: that command's --help. */
  if (argc == 3 && strcmp (argv[1], "help") == 0)
    {
      for (const TallyCommand *c = commands; c->name != NULL; c++)
        if (strcmp (argv[2], c->name) == 0)
          {
            g_autofree char *prgname = g_strdup_printf ("tally %s", c->name);
            char *help_argv[] = { prgname, (char *)"--help", NULL };

            g_set_prgname (prgname);
            return c->run (2, help_argv);
          }
      fprintf (stderr,
               "tally: unknown command '%s'\nRun 'tally --help' for the list of commands.\n",
               argv[2]);
      return TALLY_EXIT_USAGE;
    }
  if (argc > 3 && strcmp (argv[1], "help") == 0)
    {
      fprintf (stderr, "tally: help takes one COMMAND\n");
      return TALLY_EXIT_USAGE;
    }
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0)
    {
      print_overview (argc < 2 ? stderr : stdout);
      return argc < 2 ? TALLY_EXIT_USAGE : TALLY_EXIT_OK;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("tally " TALLY_VERSION "\n");
      return TALLY_EXIT_OK;
    }

  for (const TallyCommand *c = commands; c->name != NULL; c++)
    if (strcmp (argv[1], c->name) == 0)
      {
        g_autofree char *prgname = g_strdup_printf ("tally %s", c->name);
        g_set_prgname (prgname);
        argv[1] = prgname;
        return c->run (argc - 1, argv + 1);
      }

  fprintf (stderr, "tally: unknown command '%s'\nRun 'tally --help' for the list of commands.\n",
           argv[1]);
  return TALLY_EXIT_USAGE;
}
