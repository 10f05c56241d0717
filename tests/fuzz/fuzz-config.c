/* fuzz-config.c — libFuzzer target: the key-file loader, tally_config_load_from_data().
 *
 * Any bytes are a candidate tally.conf. The loader must return a configuration or a
 * #TallyConfigError whose message is one line of valid UTF-8; a configuration, printed
 * with tally_config_to_string() (no redaction), must load back and print the same text.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) again_error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autoptr (TallyConfig) again = NULL;
  g_autofree char *text = NULL;
  g_autofree char *text_again = NULL;

  config = tally_config_load_from_data ((const char *)data, (gssize)size, "fuzz.conf", &error);
  if (config == NULL)
    {
      if (error == NULL || error->domain != TALLY_CONFIG_ERROR
          || !g_utf8_validate (error->message, -1, NULL) || strchr (error->message, '\n') != NULL)
        {
          fprintf (stderr, "bad error: %s\n", error != NULL ? error->message : "(none)");
          abort ();
        }
      return 0;
    }
  text = tally_config_to_string (config, FALSE);
  again = tally_config_load_from_data (text, -1, "fuzz.conf", &again_error);
  if (again == NULL)
    {
      fprintf (stderr, "printed configuration does not load back: %s\n%s", again_error->message,
               text);
      abort ();
    }
  text_again = tally_config_to_string (again, FALSE);
  if (strcmp (text, text_again) != 0)
    {
      fprintf (stderr, "printed configuration changes on reload:\n%s\n--- became ---\n%s", text,
               text_again);
      abort ();
    }
  return 0;
}
