/* tally-notify.c — sd_notify(3) for `tally run` under systemd; nothing elsewhere.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-notify.h"

#include "tally-build-config.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void
notify (const char *state)
{
#ifdef HAVE_LIBSYSTEMD
  int r = sd_notify (0, state);

  if (r < 0)
    g_warning ("sd_notify (%s): %s", state, g_strerror (-r));
  else if (r > 0)
    g_debug ("sd_notify: %s", state);
#else
  (void)state;
#endif
}

void
tally_notify_ready (void)
{
  notify ("READY=1\nSTATUS=counting: partitions assigned, restored and consumed");
}

void
tally_notify_stopping (void)
{
  notify ("STOPPING=1\nSTATUS=shutting down");
}

void
tally_notify_status (const char *status)
{
  g_autofree char *line = g_strdup_printf ("STATUS=%s", status);

  notify (line);
}
