/* tally-metrics-server.h — /metrics, /healthz and /readyz over HTTP (libsoup-3).
 *
 * What it is for: Prometheus scrapes /metrics; an orchestrator (Docker's HEALTHCHECK,
 * Kubernetes probes, a load balancer) asks /healthz whether the process works and /readyz
 * whether it is counting. docs/operations.md describes every answer.
 *
 * How it works: a SoupServer on a thread of its own (`tally-metrics`, its own
 * GMainContext and GMainLoop), so a slow scrape never delays the actors and a stuck
 * actor never stops the server from saying so. A /metrics or /healthz request is a probe:
 * it asks every aggregator shard for its GetStats (O(stores), not O(words)) and pings the
 * main loop, pauses the HTTP message, and answers when every ask came back or the health
 * bound (TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS) passed, whichever is first. /readyz reads
 * the registry's readiness without asking anyone.
 *
 * Access, as Prometheus exporters do it (exporter-toolkit's web configuration): a bare
 * port binds loopback only; with a certificate and key the server speaks HTTPS only; with
 * basic_auth_users every path needs HTTP basic authentication checked against bcrypt
 * hashes (crypt_r() of libxcrypt), never a stored password.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-aggregator-handle.h"
#include "tally-metrics.h"

G_BEGIN_DECLS

/**
 * TALLY_METRICS_SERVER_ERROR:
 *
 * Error domain of the metrics server: #TallyMetricsServerError.
 */
#define TALLY_METRICS_SERVER_ERROR (tally_metrics_server_error_quark ())

/**
 * TallyMetricsServerError:
 * @TALLY_METRICS_SERVER_ERROR_ADDRESS: the listen address does not parse ([metrics] listen)
 * @TALLY_METRICS_SERVER_ERROR_LISTEN: the address could not be bound
 * @TALLY_METRICS_SERVER_ERROR_ACCESS: the TLS certificate or key does not load, or a
 *   basic_auth_users item is not `USER:BCRYPT_HASH`
 */
typedef enum
{
  TALLY_METRICS_SERVER_ERROR_ADDRESS,
  TALLY_METRICS_SERVER_ERROR_LISTEN,
  TALLY_METRICS_SERVER_ERROR_ACCESS,
} TallyMetricsServerError;

GQuark tally_metrics_server_error_quark (void);

/** TALLY_METRICS_SERVER_IO_TIMEOUT_S: seconds a connection may send or take nothing (a
 * request never finished, a reader that stalls) before the server closes it (GSocket's
 * timeout). Every response says `Connection: close`: one request per connection. */
#define TALLY_METRICS_SERVER_IO_TIMEOUT_S 10

/** TALLY_METRICS_SERVER_MAX_BODY: no path takes a request body; a request that declares a
 * larger one (or a chunked one) has its connection closed unanswered, before libsoup would
 * read it into memory. A method other than GET and HEAD is answered 405. */
#define TALLY_METRICS_SERVER_MAX_BODY (64 * 1024)

/** TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS: how long the main loop and each shard may take
 * to answer a probe before /healthz fails, in milliseconds. */
#define TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS 5000

typedef struct _TallyMetricsServer TallyMetricsServer;

/**
 * TallyMetricsServerAccess:
 * @tls_cert_file: (nullable): a PEM certificate (chain); with @tls_key_file the server
 *   serves HTTPS only ([metrics] tls_cert_file; exporter-toolkit's cert_file)
 * @tls_key_file: (nullable): its PEM private key ([metrics] tls_key_file; key_file)
 * @basic_auth_users: (nullable) (array zero-terminated=1): `USER:BCRYPT_HASH` items; set,
 *   every request needs HTTP basic authentication as one of them, else 401 with
 *   `WWW-Authenticate: Basic realm=tally` ([metrics] basic_auth_users)
 *
 * Who may reach the server and how; all %NULL (or a %NULL pointer to it): plain HTTP, no
 * authentication. Read during tally_metrics_server_new() only.
 */
typedef struct
{
  const char *tls_cert_file;
  const char *tls_key_file;
  const char *const *basic_auth_users;
} TallyMetricsServerAccess;

/**
 * tally_metrics_server_parse_listen:
 * @listen: `HOST:PORT`, `[IPV6]:PORT` or a bare `PORT` (then 127.0.0.1); HOST is an IP
 *   address or `localhost`
 * @error: return location for %TALLY_METRICS_SERVER_ERROR_ADDRESS
 *
 * Returns: (transfer full) (nullable): the socket address to bind. Any thread.
 */
GSocketAddress *tally_metrics_server_parse_listen (const char *listen, GError **error);

/**
 * tally_metrics_server_new:
 * @listen: the listen address, as tally_metrics_server_parse_listen() takes it
 * @access: (nullable): TLS and basic authentication; %NULL: neither
 * @metrics: the registry served; a reference is taken
 * @handle: (nullable): the aggregator shards probed; a reference is taken
 * @main_context: (nullable): the context whose loop /healthz pings (%NULL: the global
 *   default context, the main loop of `tally run`)
 * @error: return location for a #TallyMetricsServerError
 *
 * Starts the `tally-metrics` thread and binds @listen there; returns once it listens.
 * With the environment variable `TALLY_TEST_HOOKS=1`, `/debug/stall?shard=N&ms=M` also
 * makes shard N sleep M milliseconds (tally_aggregator_stall_new()), for tests of /healthz.
 *
 * Returns: (transfer full) (nullable): the server; stop it with tally_metrics_server_free()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyMetricsServer *tally_metrics_server_new (const char *listen,
                                              const TallyMetricsServerAccess *access,
                                              TallyMetrics *metrics, TallyAggregatorHandle *handle,
                                              GMainContext *main_context, GError **error);

/**
 * tally_metrics_server_get_port:
 * @server: a server
 *
 * Returns: the TCP port it listens on (useful with port 0). Any thread.
 */
guint16 tally_metrics_server_get_port (TallyMetricsServer *server);

/**
 * tally_metrics_server_free:
 * @server: (transfer full) (nullable): a server
 *
 * Stops listening, quits and joins the thread. Not from the server's own thread.
 */
void tally_metrics_server_free (TallyMetricsServer *server);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyMetricsServer, tally_metrics_server_free)

G_END_DECLS
