/* tally-cmd-count.c — `tally count [FILE...]`: counts words of files or stdin without Kafka.
 *
 * Work in progress: the full command follows.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-commands.h"

#include <stdio.h>

int
tally_cmd_count (int argc, char **argv)
{
  fprintf (stderr, "tally count: not implemented yet\n");
  return TALLY_EXIT_FAILURE;
}
