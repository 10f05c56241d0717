/* tally-cmd-common.c — what the subcommands of the `tally` program share.
 *
 * Every subcommand that needs the configuration loads it the same way: tally_config_load()
 * (the lookup order, strict validation, environment overrides), and on failure one line
 * `<prgname>: <message>` on standard error and exit status 78 (EX_CONFIG). That block
 * lives here once as tally_cmd_load_config().
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-build-config.h"
#include "tally-commands.h"

TallyConfig *
tally_cmd_load_config (const char *path)
{
  g_autoptr (GError) error = NULL;
  TallyConfig *config = tally_config_load (path, &error);

  if (config == NULL)
    g_printerr ("%s: %s\n", g_get_prgname (), error->message);
  return config;
}
