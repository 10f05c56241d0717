/* tally-run.h — the Tally service: every actor of `tally run` wired together.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

#include "tally-config.h"

G_BEGIN_DECLS

/**
 * TALLY_RUN_ERROR:
 *
 * Error domain of the service. Errors in this domain are from #TallyRunError.
 */
#define TALLY_RUN_ERROR (tally_run_error_quark ())

/**
 * TallyRunError:
 * @TALLY_RUN_ERROR_CONFIG: the configuration cannot work (librdkafka refused a property,
 *   see the message); the process should exit with status 78.
 * @TALLY_RUN_ERROR_FAILED: a part of the service could not start (the embedded broker,
 *   a Kafka client, a topic).
 * @TALLY_RUN_ERROR_SHUTDOWN: the shutdown did not finish within [shutdown] timeout_ms.
 *
 * Errors of the service.
 */
typedef enum
{
  TALLY_RUN_ERROR_CONFIG,
  TALLY_RUN_ERROR_FAILED,
  TALLY_RUN_ERROR_SHUTDOWN,
} TallyRunError;

GQuark tally_run_error_quark (void);

/**
 * tally_run_service:
 * @config: the loaded configuration
 * @error: return location for a #TallyRunError
 *
 * Runs the service until SIGINT or SIGTERM: starts the embedded broker when [kafka] has no
 * bootstrap.servers (and prints `bootstrap.servers=HOST:PORT` on standard output), the
 * aggregator shards (one arbiter each), the source actor (its own arbiter), the
 * publisher actor (its own arbiter) and the request reader (main context). Snapshots are
 * published for every request record, on SIGUSR1, every [snapshot] interval_ms and once
 * at shutdown. Messages below [log] level are not logged (this installs the process's
 * GLib log writer). A SIGINT/SIGTERM (handled with g_unix_signal_add(), on the main loop) stops
 * consuming, drains the mailboxes, publishes the final snapshot, checkpoints, commits,
 * closes the consumer and flushes the producers, all within [shutdown] timeout_ms; a
 * second signal meanwhile is logged and ignored. Main thread; runs the global default
 * main context.
 *
 * Returns: %TRUE after a clean shutdown
 */
gboolean tally_run_service (const TallyConfig *config, GError **error);

G_END_DECLS
