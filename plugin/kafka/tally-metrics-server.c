/* tally-metrics-server.c — /metrics, /healthz and /readyz over HTTP (libsoup-3).
 *
 * A Probe is one /metrics or /healthz request in flight: the paused SoupServerMessage,
 * one GetStats ask per shard, one ping through the main context, and a timeout of
 * TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS. Everything of a probe runs on the server's
 * context (the ask replies come to the thread-default context of the asker; the main
 * loop's ping comes back with g_main_context_invoke()), so it needs no lock; it is
 * reference-counted (atomically: a ping the main context never ran is dropped on the
 * thread that frees that context) because answers may come after the response went out.
 *
 * Access follows exporter-toolkit's web configuration: GIO loads the certificate and key
 * (glib-networking does the TLS), and a SoupAuthDomainBasic covering every path checks each
 * request's password with crypt_r() against the user's bcrypt hash; an unknown user costs
 * the same bcrypt round as a known one, so timing does not tell which users exist.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-metrics-server.h"

#include "tally-build-config.h"
#include "tally-config.h"

#include <crypt.h>
#include <libsoup/soup.h>
#include <pthread.h>
#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-metrics-server-error-quark, tally_metrics_server_error) /* clang-format on */

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct _TallyMetricsServer
{
  TallyMetrics *metrics;
  TallyAggregatorHandle *handle;
  GMainContext *main_context; /* pinged by /healthz */
  gboolean test_hooks;
  GTlsCertificate *tls_certificate; /* NULL: plain HTTP */
  GHashTable *users;                /* user -> bcrypt hash; NULL: no authentication */
  char *decoy_hash;                 /* a configured hash, checked for unknown users */

  GThread *thread;
  GMainContext *context;
  GMainLoop *loop;
  SoupServer *server;        /* the server's context only */
  GCancellable *cancellable; /* the shard asks; cancelled when the server stops */
  guint16 port;

  /* Start-up handshake with tally_metrics_server_new(). */
  /* pthread's, not GLib's: ThreadSanitizer does not see GLib 2.74's futex-based locks
   * (as actors/runtime/tally-arbiter.c). */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  gboolean started;
  GSocketAddress *address;
  GError *error;
};

typedef enum
{
  PROBE_METRICS,
  PROBE_HEALTH,
} ProbeKind;

typedef struct
{
  gint ref_count; /* atomic */
  TallyMetricsServer *server;
  SoupServerMessage *message; /* NULL once answered */
  ProbeKind kind;
  gint64 started_us;
  guint pending;
  gboolean main_answered;
  gboolean *shard_answered;
  GHashTable *store_words; /* store -> words (summed over shards) */
  GSource *timeout;
} Probe;

static Probe *
probe_ref (Probe *probe)
{
  g_atomic_int_inc (&probe->ref_count);
  return probe;
}

static void
probe_unref (gpointer data)
{
  Probe *probe = data;

  if (!g_atomic_int_dec_and_test (&probe->ref_count))
    return;
  /* Unanswered only when the server went away first. */
  g_clear_object (&probe->message);
  g_free (probe->shard_answered);
  g_hash_table_unref (probe->store_words);
  g_free (probe);
}

static void
respond (SoupServerMessage *message, guint status, const char *content_type, char *body, gsize len)
{
  soup_server_message_set_status (message, status, NULL);
  soup_server_message_set_response (message, content_type, SOUP_MEMORY_TAKE, body, len);
}

/* Answers the probe's request with what it has now. */
static void
probe_finish (Probe *probe)
{
  TallyMetricsServer *self = probe->server;
  guint n_shards = self->handle != NULL ? tally_aggregator_handle_get_n_shards (self->handle) : 0;
  SoupServerMessage *message = probe->message;

  if (message == NULL)
    return;
  probe->message = NULL;
  if (probe->timeout != NULL)
    {
      g_source_destroy (probe->timeout);
      g_clear_pointer (&probe->timeout, g_source_unref);
    }

  if (probe->kind == PROBE_METRICS)
    {
      g_autofree TallyMetricsShard *shards = g_new0 (TallyMetricsShard, MAX (n_shards, 1));
      g_autoptr (GArray) stores = g_array_new (FALSE, FALSE, sizeof (TallyMetricsStore));
      GString *out = g_string_sized_new (16384);
      GHashTableIter iter;
      gpointer key, value;
      gsize len;

      for (guint i = 0; i < n_shards; i++)
        {
          TallyAddress *address = tally_aggregator_handle_get_shard_address (self->handle, i);

          shards[i].depth = tally_address_get_length (address);
          shards[i].capacity = tally_address_get_capacity (address);
          shards[i].answered = probe->shard_answered[i];
        }
      g_hash_table_iter_init (&iter, probe->store_words);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          TallyMetricsStore s = { GPOINTER_TO_UINT (key), *(guint64 *)value };

          g_array_append_val (stores, s);
        }
      tally_metrics_write (self->metrics, shards, n_shards,
                           (TallyMetricsStore *)(void *)stores->data, stores->len, out);
      len = out->len;
      respond (message, SOUP_STATUS_OK, CONTENT_TYPE_METRICS, g_string_free (out, FALSE), len);
    }
  else
    {
      GString *out = g_string_new (NULL);
      gboolean ok = probe->main_answered;
      gsize len;

      if (!probe->main_answered)
        g_string_append_printf (out, "the main loop did not answer within %d ms\n",
                                TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS);
      for (guint i = 0; i < n_shards; i++)
        if (!probe->shard_answered[i])
          {
            ok = FALSE;
            g_string_append_printf (out, "shard %u did not answer within %d ms\n", i,
                                    TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS);
          }
      if (ok)
        g_string_append_printf (
            out, "ok: the main loop and %u shard(s) answered in %" G_GINT64_FORMAT " ms\n",
            n_shards, (g_get_monotonic_time () - probe->started_us) / 1000);
      len = out->len;
      respond (message, ok ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE,
               "text/plain; charset=utf-8", g_string_free (out, FALSE), len);
    }
  soup_server_message_unpause (message);
  g_object_unref (message);
}

static void
probe_answered (Probe *probe)
{
  if (--probe->pending == 0)
    probe_finish (probe);
  probe_unref (probe);
}

static gboolean
on_probe_timeout (gpointer user_data)
{
  Probe *probe = user_data;

  probe_finish (probe);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  Probe *probe;
  guint shard;
} ShardAsk;

static void
on_shard_stats (GObject *object, GAsyncResult *result, gpointer user_data)
{
  ShardAsk *ask = user_data;
  Probe *probe = ask->probe;
  TallyAddress *address
      = tally_aggregator_handle_get_shard_address (probe->server->handle, ask->shard);
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) stats = tally_address_ask_finish (address, result, &error);

  /* A late answer does not make a failed probe healthy: only answers in time count. */
  if (stats != NULL && probe->message != NULL)
    {
      probe->shard_answered[ask->shard] = TRUE;
      for (guint i = 0; i < stats->len; i++)
        {
          TallyAggregatorStoreStats *s = &g_array_index (stats, TallyAggregatorStoreStats, i);
          guint64 *words = g_hash_table_lookup (probe->store_words, GUINT_TO_POINTER (s->store));

          if (words == NULL)
            {
              words = g_new0 (guint64, 1);
              g_hash_table_insert (probe->store_words, GUINT_TO_POINTER (s->store), words);
            }
          *words += s->words;
        }
    }
  g_free (ask);
  probe_answered (probe);
}

static gboolean
on_main_pong (gpointer user_data)
{
  Probe *probe = user_data;

  if (probe->message != NULL)
    probe->main_answered = TRUE;
  probe_answered (probe);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  Probe *probe; /* NULL once handed back */
} Ping;

/* On the main context: hands the probe (and its reference) back to the server's context. */
static gboolean
on_main_ping (gpointer user_data)
{
  Ping *ping = user_data;
  Probe *probe = g_steal_pointer (&ping->probe);

  g_main_context_invoke (probe->server->context, on_main_pong, probe);
  return G_SOURCE_REMOVE;
}

/* A ping the main context dropped without running it (its loop is gone). */
static void
ping_free (gpointer data)
{
  Ping *ping = data;

  if (ping->probe != NULL)
    probe_unref (ping->probe);
  g_free (ping);
}

static void
probe_start (TallyMetricsServer *self, SoupServerMessage *message, ProbeKind kind)
{
  guint n_shards = self->handle != NULL ? tally_aggregator_handle_get_n_shards (self->handle) : 0;
  Probe *probe = g_new0 (Probe, 1);

  probe->ref_count = 1;
  probe->server = self;
  probe->message = g_object_ref (message);
  probe->kind = kind;
  probe->started_us = g_get_monotonic_time ();
  probe->shard_answered = g_new0 (gboolean, MAX (n_shards, 1));
  probe->store_words = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  probe->pending = 1; /* released below, once every ask is out */
  soup_server_message_pause (message);

  probe->timeout = g_timeout_source_new (TALLY_METRICS_SERVER_HEALTH_TIMEOUT_MS);
  g_source_set_callback (probe->timeout, on_probe_timeout, probe_ref (probe), probe_unref);
  g_source_attach (probe->timeout, self->context);

  for (guint i = 0; i < n_shards; i++)
    {
      ShardAsk *ask = g_new0 (ShardAsk, 1);

      ask->probe = probe_ref (probe);
      ask->shard = i;
      probe->pending++;
      tally_address_ask_async (tally_aggregator_handle_get_shard_address (self->handle, i),
                               tally_aggregator_get_stats_new (), self->cancellable, on_shard_stats,
                               ask);
    }
  if (kind == PROBE_HEALTH)
    {
      Ping *ping = g_new0 (Ping, 1);

      ping->probe = probe_ref (probe);
      probe->pending++;
      g_main_context_invoke_full (self->main_context, G_PRIORITY_DEFAULT, on_main_ping, ping,
                                  ping_free);
    }
  else
    probe->main_answered = TRUE;
  probe_answered (probe);
}

/* ---------------------------------------------------------------------------------------
 * Handlers
 * ------------------------------------------------------------------------------------- */

static void
on_metrics (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
            gpointer user_data)
{
  probe_start (user_data, message, PROBE_METRICS);
}

static void
on_healthz (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
            gpointer user_data)
{
  probe_start (user_data, message, PROBE_HEALTH);
}

static void
on_readyz (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
           gpointer user_data)
{
  TallyMetricsServer *self = user_data;
  char *reason = NULL;
  gboolean ready = tally_metrics_is_ready (self->metrics, &reason);
  char *body = g_strconcat (reason, "\n", NULL);

  g_free (reason);
  respond (message, ready ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE,
           "text/plain; charset=utf-8", body, strlen (body));
}

static void
on_stall (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
          gpointer user_data)
{
  TallyMetricsServer *self = user_data;
  const char *shard_text = query != NULL ? g_hash_table_lookup (query, "shard") : NULL;
  const char *ms_text = query != NULL ? g_hash_table_lookup (query, "ms") : NULL;
  guint64 shard = shard_text != NULL ? g_ascii_strtoull (shard_text, NULL, 10) : 0;
  guint64 ms = ms_text != NULL ? g_ascii_strtoull (ms_text, NULL, 10) : 10000;
  g_autoptr (GError) error = NULL;
  char *body;

  if (self->handle == NULL || shard >= tally_aggregator_handle_get_n_shards (self->handle)
      || ms > 600000)
    {
      body = g_strdup ("no such shard, or ms above 600000\n");
      respond (message, SOUP_STATUS_BAD_REQUEST, "text/plain; charset=utf-8", body, strlen (body));
      return;
    }
  if (!tally_address_tell (tally_aggregator_handle_get_shard_address (self->handle, (guint)shard),
                           tally_aggregator_stall_new ((guint)ms), &error))
    body = g_strdup_printf ("%s\n", error->message);
  else
    body = g_strdup_printf ("shard %u stalls for %u ms\n", (guint)shard, (guint)ms);
  g_message ("metrics: test hook: %s", body);
  respond (message, error == NULL ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE,
           "text/plain; charset=utf-8", body, strlen (body));
}

static void
on_not_found (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
              gpointer user_data)
{
  char *body = g_strdup ("not found: try /metrics, /healthz or /readyz\n");

  respond (message, SOUP_STATUS_NOT_FOUND, "text/plain; charset=utf-8", body, strlen (body));
}

/* Early handler of every path, run once the headers are read. libsoup reads a request's
 * body even after a status is set here, so a declared body over
 * TALLY_METRICS_SERVER_MAX_BODY (or a chunked one) closes the connection unanswered: a
 * POST of hundreds of MB costs nothing. A method other than GET and HEAD is answered 405. */
static void
on_headers (SoupServer *server, SoupServerMessage *message, const char *path, GHashTable *query,
            gpointer user_data)
{
  const char *method = soup_server_message_get_method (message);
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (message);
  char *body;

  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CHUNKED
      || soup_message_headers_get_content_length (headers) > TALLY_METRICS_SERVER_MAX_BODY)
    {
      /* libsoup would read the whole body before answering: drop the connection instead. */
      g_autoptr (GIOStream) stream = soup_server_message_steal_connection (message);

      if (stream != NULL)
        g_io_stream_close (stream, NULL, NULL);
      return;
    }
  if (method == SOUP_METHOD_GET || method == SOUP_METHOD_HEAD)
    return;
  body = g_strdup_printf ("method %s not allowed: use GET (or HEAD)\n", method);
  soup_message_headers_replace (soup_server_message_get_response_headers (message), "Allow",
                                "GET, HEAD");
  respond (message, SOUP_STATUS_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", body,
           strlen (body));
}

/* ---------------------------------------------------------------------------------------
 * Basic authentication
 * ------------------------------------------------------------------------------------- */

/* Compares two NUL-terminated strings in time that depends on their lengths only. */
static gboolean
equal_constant_time (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  guchar diff = la != lb;

  for (gsize i = 0; i < MIN (la, lb); i++)
    diff |= (guchar)a[i] ^ (guchar)b[i];
  return diff == 0;
}

/* On the server's thread, once per request (libsoup keeps no session): one bcrypt round,
 * about 50 ms at cost 10. */
static gboolean
on_basic_auth (SoupAuthDomain *domain, SoupServerMessage *message, const char *username,
               const char *password, gpointer user_data)
{
  TallyMetricsServer *self = user_data;
  const char *hash = g_hash_table_lookup (self->users, username);
  g_autofree struct crypt_data *data = g_new0 (struct crypt_data, 1);
  const char *computed = crypt_r (password, hash != NULL ? hash : self->decoy_hash, data);
  gboolean ok = hash != NULL && computed != NULL && computed[0] != '*'
                && equal_constant_time (computed, hash);

  memset (data, 0, sizeof *data); /* the password does not linger on the heap */
  return ok;
}

/* ---------------------------------------------------------------------------------------
 * Thread and life cycle
 * ------------------------------------------------------------------------------------- */

/* "request-started": every response says Connection: close, so that libsoup closes the
 * connection once it is written. libsoup 3.2 (Debian bookworm's 3.2.2) never notices a
 * client closing a kept-alive connection (fixed in 3.3.0 by commit d20c6601): each
 * scrape or curl left a socket in CLOSE-WAIT until `tally run` ran out of descriptors.
 * Prometheus opens a new connection per scrape anyway once told to close. */
static void
on_request_started (SoupServer *server, SoupServerMessage *message, gpointer user_data)
{
  GSocket *socket = soup_server_message_get_socket (message);

  if (socket != NULL)
    g_socket_set_timeout (socket, TALLY_METRICS_SERVER_IO_TIMEOUT_S);
  soup_message_headers_replace (soup_server_message_get_response_headers (message), "Connection",
                                "close");
}

/* Serves @path (NULL: any other path) with @handler, after on_headers(): libsoup runs the
 * early handler of the path that matches best, not NULL's, so each path has it. */
static void
add_path (TallyMetricsServer *self, const char *path, SoupServerCallback handler)
{
  soup_server_add_early_handler (self->server, path, on_headers, NULL, NULL);
  soup_server_add_handler (self->server, path, handler, self, NULL);
}

static gpointer
server_thread (gpointer data)
{
  TallyMetricsServer *self = data;
  GError *error = NULL;
  GSList *listeners;

  g_main_context_push_thread_default (self->context);
  self->server = soup_server_new ("server-header", "tally/" TALLY_VERSION " ", "tls-certificate",
                                  self->tls_certificate, NULL);
  if (self->users != NULL)
    {
      SoupAuthDomain *domain = soup_auth_domain_basic_new ("realm", "tally", "auth-callback",
                                                           on_basic_auth, "auth-data", self, NULL);

      soup_auth_domain_add_path (domain, "/");
      soup_server_add_auth_domain (self->server, domain);
      g_object_unref (domain);
    }
  g_signal_connect (self->server, "request-started", G_CALLBACK (on_request_started), NULL);
  add_path (self, NULL, on_not_found);
  add_path (self, "/metrics", on_metrics);
  add_path (self, "/healthz", on_healthz);
  add_path (self, "/readyz", on_readyz);
  if (self->test_hooks)
    add_path (self, "/debug/stall", on_stall);

  if (soup_server_listen (self->server, self->address,
                          self->tls_certificate != NULL ? SOUP_SERVER_LISTEN_HTTPS : 0, &error))
    {
      /* Not soup_server_get_uris(): libsoup 3.2 leaks an address in it. */
      listeners = soup_server_get_listeners (self->server);
      if (listeners != NULL)
        {
          g_autoptr (GSocketAddress) local = g_socket_get_local_address (listeners->data, NULL);

          if (G_IS_INET_SOCKET_ADDRESS (local))
            self->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));
        }
      g_slist_free (listeners);
    }
  pthread_mutex_lock (&self->lock);
  self->error = error;
  self->started = TRUE;
  pthread_cond_signal (&self->cond);
  pthread_mutex_unlock (&self->lock);

  if (error == NULL)
    g_main_loop_run (self->loop);
  /* Asks a stuck shard has not answered end now, and with them their probes. */
  g_cancellable_cancel (self->cancellable);
  while (g_main_context_iteration (self->context, FALSE))
    ;
  soup_server_disconnect (self->server);
  g_clear_object (&self->server);
  /* Replies of asks still in flight, timeouts: let them run out. */
  while (g_main_context_iteration (self->context, FALSE))
    ;
  g_main_context_pop_thread_default (self->context);
  return NULL;
}

GSocketAddress *
tally_metrics_server_parse_listen (const char *listen, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  GSocketAddress *address = tally_config_parse_listen (listen, &local_error);

  if (address == NULL)
    g_set_error_literal (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ADDRESS,
                         local_error->message);
  return address;
}

/* The certificate and the users of @access, or FALSE with a
 * %TALLY_METRICS_SERVER_ERROR_ACCESS error. */
static gboolean
load_access (TallyMetricsServer *self, const TallyMetricsServerAccess *access, GError **error)
{
  g_autoptr (GError) local_error = NULL;

  if (access == NULL)
    return TRUE;
  if ((access->tls_cert_file == NULL) != (access->tls_key_file == NULL))
    {
      g_set_error_literal (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS,
                           "a TLS certificate needs its key, and a key its certificate");
      return FALSE;
    }
  if (access->tls_cert_file != NULL)
    {
      self->tls_certificate = g_tls_certificate_new_from_files (access->tls_cert_file,
                                                                access->tls_key_file, &local_error);
      if (self->tls_certificate == NULL)
        {
          g_set_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS,
                       "TLS certificate %s, key %s: %s", access->tls_cert_file,
                       access->tls_key_file, local_error->message);
          return FALSE;
        }
    }
  if (access->basic_auth_users != NULL && access->basic_auth_users[0] != NULL)
    {
      self->users = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      for (guint i = 0; access->basic_auth_users[i] != NULL; i++)
        {
          const char *item = access->basic_auth_users[i];
          const char *colon = strchr (item, ':');

          /* Hashes are secrets: the message names the item only. */
          if (colon == NULL || colon == item || !g_str_has_prefix (colon + 1, "$2"))
            {
              g_set_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_ACCESS,
                           "basic_auth_users item %u is not USER:BCRYPT_HASH", i + 1);
              return FALSE;
            }
          g_hash_table_replace (self->users, g_strndup (item, colon - item), g_strdup (colon + 1));
          if (self->decoy_hash == NULL)
            self->decoy_hash = g_strdup (colon + 1);
        }
    }
  return TRUE;
}

TallyMetricsServer *
tally_metrics_server_new (const char *listen, const TallyMetricsServerAccess *access,
                          TallyMetrics *metrics, TallyAggregatorHandle *handle,
                          GMainContext *main_context, GError **error)
{
  TallyMetricsServer *self;
  GSocketAddress *address;
  GError *local_error;

  g_return_val_if_fail (metrics != NULL, NULL);

  address = tally_metrics_server_parse_listen (listen, error);
  if (address == NULL)
    return NULL;
  self = g_new0 (TallyMetricsServer, 1);
  if (!load_access (self, access, error))
    {
      g_object_unref (address);
      g_clear_object (&self->tls_certificate);
      g_clear_pointer (&self->users, g_hash_table_unref);
      g_free (self->decoy_hash);
      g_free (self);
      return NULL;
    }
  self->metrics = tally_metrics_ref (metrics);
  self->handle = handle != NULL ? tally_aggregator_handle_ref (handle) : NULL;
  self->main_context
      = g_main_context_ref (main_context != NULL ? main_context : g_main_context_default ());
  self->test_hooks = g_strcmp0 (g_getenv ("TALLY_TEST_HOOKS"), "1") == 0;
  self->address = address;
  self->context = g_main_context_new ();
  self->cancellable = g_cancellable_new ();
  self->loop = g_main_loop_new (self->context, FALSE);
  pthread_mutex_init (&self->lock, NULL);
  pthread_cond_init (&self->cond, NULL);
  self->thread = g_thread_new ("tally-metrics", server_thread, self);

  pthread_mutex_lock (&self->lock);
  while (!self->started)
    pthread_cond_wait (&self->cond, &self->lock);
  local_error = g_steal_pointer (&self->error);
  pthread_mutex_unlock (&self->lock);
  if (local_error != NULL)
    {
      g_set_error (error, TALLY_METRICS_SERVER_ERROR, TALLY_METRICS_SERVER_ERROR_LISTEN,
                   "cannot listen on %s: %s", listen, local_error->message);
      g_error_free (local_error);
      tally_metrics_server_free (self);
      return NULL;
    }
  g_message ("metrics: serving /metrics, /healthz and /readyz on %s (port %u) over %s%s%s", listen,
             self->port, self->tls_certificate != NULL ? "HTTPS" : "HTTP",
             self->users != NULL ? " with basic authentication" : "",
             self->test_hooks ? "; test hooks on" : "");
  return self;
}

guint16
tally_metrics_server_get_port (TallyMetricsServer *server)
{
  return server->port;
}

static gboolean
quit_loop (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

void
tally_metrics_server_free (TallyMetricsServer *server)
{
  GSource *quit;

  if (server == NULL)
    return;
  /* Through the server's own context: a g_main_loop_quit() made before its thread reached
   * g_main_loop_run() would be lost, and the join would wait for ever (seen under load). */
  quit = g_idle_source_new ();
  g_source_set_callback (quit, quit_loop, server->loop, NULL);
  g_source_attach (quit, server->context);
  g_source_unref (quit);
  g_thread_join (server->thread);
  g_main_loop_unref (server->loop);
  g_main_context_unref (server->context);
  g_main_context_unref (server->main_context);
  g_clear_object (&server->address);
  g_clear_object (&server->cancellable);
  g_clear_object (&server->tls_certificate);
  g_clear_pointer (&server->users, g_hash_table_unref);
  g_free (server->decoy_hash);
  g_clear_pointer (&server->handle, tally_aggregator_handle_unref);
  tally_metrics_unref (server->metrics);
  pthread_mutex_destroy (&server->lock);
  pthread_cond_destroy (&server->cond);
  g_free (server);
}
