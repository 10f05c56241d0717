/* tally-notify.h — tells systemd how the service is doing (sd_notify(3)).
 *
 * What it is for: deploy/tally.service is Type=notify, so systemd considers Tally started
 * only once it sent READY=1, which `tally run` does when its first assignment is restored
 * and consumed (tally_metrics_set_state()); STOPPING=1 at the start of a shutdown; STATUS=
 * lines for `systemctl status`. Outside systemd (no $NOTIFY_SOCKET), and when Tally is
 * built without libsystemd, every call does nothing.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * tally_notify_ready:
 *
 * Sends READY=1 and a STATUS= line. Any thread.
 */
void tally_notify_ready (void);

/**
 * tally_notify_stopping:
 *
 * Sends STOPPING=1. Any thread.
 */
void tally_notify_stopping (void);

/**
 * tally_notify_status:
 * @status: a one-line status for `systemctl status`
 *
 * Sends STATUS=@status. Any thread.
 */
void tally_notify_status (const char *status);

G_END_DECLS
