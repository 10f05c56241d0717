/* tally-commands.h — the subcommands of the `tally` program.
 *
 * Each subcommand lives in plugin/tally-cmd-<name>.c and exposes one entry point that
 * takes the arguments after the subcommand name (argv[0] is "tally <name>") and returns
 * the process exit status: 0 on success, 1 on a runtime failure, 2 on a usage error,
 * 78 (EX_CONFIG) on a configuration error.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-config.h"

G_BEGIN_DECLS

/* Exit statuses shared by every subcommand (see sysexits.h). */
#define TALLY_EXIT_OK 0
#define TALLY_EXIT_FAILURE 1
#define TALLY_EXIT_USAGE 2
#define TALLY_EXIT_CONFIG 78

/**
 * tally_cmd_usage_error:
 * @format: printf() format of what is wrong with the command line, without a newline
 * @...: its arguments
 *
 * Prints `<prgname>: <message>` and `Run '<prgname> --help' for the options.` on standard
 * error, as every subcommand does for a command line it refuses. Main thread.
 *
 * Returns: %TALLY_EXIT_USAGE, for the caller to return
 */
int tally_cmd_usage_error (const char *format, ...) G_GNUC_PRINTF (1, 2);

/**
 * tally_cmd_load_config:
 * @path: (nullable): the file named by --config (or check-config's PATH), or %NULL to look
 *   it up as tally_config_load() says ($TALLY_CONFIG, then the standard places)
 *
 * Loads the configuration exactly as tally_config_load() does, with the TALLY_<GROUP>_<KEY>
 * environment overrides applied. On failure it prints `<prgname>: <message>` (the message
 * names the file and line or the variable, the group and the key) on standard error and
 * returns %NULL; the caller then returns %TALLY_EXIT_CONFIG. No GError reaches the caller.
 * Main thread (it reads the process environment and writes standard error).
 *
 * Returns: (transfer full) (nullable): the effective configuration, free with
 *   tally_config_free() (or g_autoptr (TallyConfig)), or %NULL after printing the error.
 */
TallyConfig *tally_cmd_load_config (const char *path);

/**
 * tally_cmd_apply_kafka_options:
 * @config: the loaded configuration, changed in place
 * @options: (nullable) (array zero-terminated=1): the arguments of the `-X` options, each
 *   `name=value` (a librdkafka property, as kcat's `-X`), in command-line order
 *
 * Sets each property with tally_config_set_kafka(): the same checks as a [kafka] key of the
 * file, and the option wins over the file and the TALLY_KAFKA_* environment (a later `-X`
 * of the same name wins over an earlier one). For a name that looks like a secret
 * (tally_config_key_is_secret(): *password*, *secret*, ssl.key*, ...) it warns on standard
 * error that the command line is visible to other users. On a bad option it prints
 * `<prgname>: <message>` (naming `-X NAME`, the group and the key) and returns %FALSE; the
 * caller then returns %TALLY_EXIT_USAGE. Main thread.
 *
 * Returns: %TRUE when every option was applied
 */
gboolean tally_cmd_apply_kafka_options (TallyConfig *config, char **options);

/**
 * tally_cmd_check_clients:
 * @config: the effective configuration
 *
 * Runs tally_config_check_clients() (librdkafka builds the consumer and producer
 * configurations `tally run` uses, without connecting) and on failure prints
 * `<prgname>: <message>` on standard error; the caller then returns %TALLY_EXIT_CONFIG.
 * Main thread.
 *
 * Returns: %TRUE when librdkafka accepts the configurations
 */
gboolean tally_cmd_check_clients (const TallyConfig *config);

/**
 * tally_cmd_start_glib_worker:
 *
 * Starts GLib's worker thread ("gmain") now rather than at the command's first GTask
 * (GLib starts it with GTask's class), which for `tally count` is its final GetCounts,
 * right before exit. Under AddressSanitizer a thread still starting at exit holds two
 * blocks of glibc's pthread_getattr_np() (152 and 32 bytes) that LeakSanitizer, with
 * fast_unwind_on_malloc=0, reports as leaked; started first, the thread has the whole
 * command to get past that. GLib offers no way to wait for it or to join it. Call it
 * after g_log_writer_default_set_use_stderr(), which refuses once any thread exists.
 * Main thread.
 */
void tally_cmd_start_glib_worker (void);

typedef int (*TallyCommandFunc) (int argc, char **argv);

typedef struct
{
  const char *name;
  const char *summary;
  TallyCommandFunc run;
} TallyCommand;

/* tally words [--shards N]: the article's one-word-per-line CLI (tally-cmd-words.c). */
int tally_cmd_words (int argc, char **argv);

/* tally count [FILE...]: counts words of files or stdin without Kafka (tally-cmd-count.c). */
int tally_cmd_count (int argc, char **argv);

/* tally check-config [PATH]: validates the configuration, exit 0 or 78 (tally-cmd-config.c). */
int tally_cmd_check_config (int argc, char **argv);
/* tally print-config: prints the effective configuration, secrets redacted (tally-cmd-config.c). */
int tally_cmd_print_config (int argc, char **argv);

/* tally broker [--port N] [--partitions N] [--topics A,B]: the embedded broker in the
 * foreground (tally-cmd-broker.c). */
int tally_cmd_broker (int argc, char **argv);

/* tally snapshot [--top N] [--json] ...: requests a snapshot and prints the merged counts
 * (tally-cmd-snapshot.c). */
int tally_cmd_snapshot (int argc, char **argv);

/* tally run [--config PATH]: the service, until SIGINT/SIGTERM (tally-cmd-run.c). */
int tally_cmd_run (int argc, char **argv);

G_END_DECLS
