/* tally-cmd-common.c — what the subcommands of the `tally` program share.
 *
 * Every subcommand that needs the configuration loads it the same way: tally_config_load()
 * (the lookup order, strict validation, environment overrides), and on failure one line
 * `<prgname>: <message>` on standard error and exit status 78 (EX_CONFIG). That block
 * lives here once as tally_cmd_load_config(). The `-X name=value` options of `tally run` and
 * `tally snapshot` (librdkafka properties, as kcat has them) are applied by
 * tally_cmd_apply_kafka_options(), and the client configurations checked by
 * tally_cmd_check_clients().
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

#include <gio/gio.h>
#include <string.h>

TallyConfig *
tally_cmd_load_config (const char *path)
{
  g_autoptr (GError) error = NULL;
  TallyConfig *config = tally_config_load (path, &error);

  if (config == NULL)
    g_printerr ("%s: %s\n", g_get_prgname (), error->message);
  return config;
}

gboolean
tally_cmd_apply_kafka_options (TallyConfig *config, char **options)
{
  for (guint i = 0; options != NULL && options[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *name = NULL;
      g_autofree char *origin = NULL;
      const char *eq = strchr (options[i], '=');

      if (eq == NULL || eq == options[i])
        {
          g_printerr ("%s: -X wants a librdkafka property as name=value, not '%s'\n",
                      g_get_prgname (), options[i]);
          return FALSE;
        }
      name = g_strndup (options[i], eq - options[i]);
      if (tally_config_key_is_secret (name))
        g_printerr ("%s: warning: -X %s puts a secret on the command line, where other users "
                    "can read it (ps, /proc/PID/cmdline); set it in the configuration file or "
                    "in the environment (TALLY_KAFKA_*) instead\n",
                    g_get_prgname (), name);
      origin = g_strdup_printf ("-X %s", name);
      if (!tally_config_set_kafka (config, name, eq + 1, origin, &error))
        {
          g_printerr ("%s: %s\n", g_get_prgname (), error->message);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
tally_cmd_check_clients (const TallyConfig *config)
{
  g_autoptr (GError) error = NULL;

  if (tally_config_check_clients (config, &error))
    return TRUE;
  g_printerr ("%s: %s\n", g_get_prgname (), error->message);
  return FALSE;
}

void
tally_cmd_start_glib_worker (void)
{
  g_type_ensure (G_TYPE_TASK);
}

int
tally_cmd_usage_error (const char *format, ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("%s: %s\nRun '%s --help' for the options.\n", g_get_prgname (), message,
              g_get_prgname ());
  return TALLY_EXIT_USAGE;
}
