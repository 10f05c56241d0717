/* replay.c — runs a fuzz target's LLVMFuzzerTestOneInput() over files, without libFuzzer.
 *
 * `replay-<target> DIR_OR_FILE...` feeds every file (directories are read one level deep)
 * to the target once; a broken property aborts. tests/meson.build runs it over the seed
 * corpus and the regressions (tests/fuzz/regressions/<target>/: every input a fuzzer
 * found, kept once fixed) in every build, gcc or clang, so a fixed crash stays fixed.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include <glib.h>

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
replay_file (const char *path, guint *n)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &data, &len, &error))
    {
      fprintf (stderr, "replay: %s\n", error->message);
      exit (1);
    }
  printf ("# %s (%zu bytes)\n", path, (size_t)len);
  fflush (stdout);
  LLVMFuzzerTestOneInput ((const uint8_t *)data, len);
  (*n)++;
}

int
main (int argc, char **argv)
{
  guint n = 0;

  for (int i = 1; i < argc; i++)
    {
      if (g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          g_autoptr (GDir) dir = g_dir_open (argv[i], 0, NULL);
          const char *name;

          while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
            {
              g_autofree char *path = g_build_filename (argv[i], name, NULL);
              replay_file (path, &n);
            }
        }
      else
        replay_file (argv[i], &n);
    }
  printf ("replayed %u inputs\n", n);
  return n > 0 ? 0 : 1;
}
