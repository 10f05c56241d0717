/* tally-broker.c — the embedded broker: librdkafka's mock cluster, in-process.
 *
 * What it is for: running Tally (and demos, and fast tests) with no Kafka installed. The
 * mock cluster is part of librdkafka: rd_kafka_mock_cluster_new() starts N mock brokers
 * on librdkafka's own threads, each listening on 127.0.0.1 on an ephemeral port (checked
 * with librdkafka 2.0.2: `rd_kafka_mock_cluster_bootstraps()` gives `127.0.0.1:PORT`,
 * listen backlog 5). They speak enough of the Kafka protocol for producers, consumers,
 * consumer groups and the metadata/offset APIs, so kcat, confluent-kafka (Python) and
 * `tally snapshot` work against them.
 *
 * How it works: a dedicated rd_kafka_t handle (a producer that never produces) owns the
 * cluster; the cluster lives exactly as long as this object. Because librdkafka 2.0.2 has
 * no way to choose the mock brokers' ports, a fixed port is provided by a relay: a
 * GSocketService on 127.0.0.1:PORT, on its own thread and GMainContext, that splices each
 * connection to the first mock broker (g_io_stream_splice_async()). Clients bootstrap
 * through the relay, then connect to the brokers at the addresses the metadata
 * advertises, which are also on 127.0.0.1.
 *
 * Limits of the mock cluster in librdkafka 2.0.2 (also in README.md, Brokers): no real
 * transactions and no read_committed isolation; no log compaction; size retention of
 * about 5 MiB per partition (older records are dropped); topics not created here are
 * auto-created with 4 partitions; consumer group rebalances are slow unless
 * session.timeout.ms is lowered; a group whose members list different assignors first
 * crashes it; all data is in memory and lost when the process exits. Good for demos and
 * fast tests; durability, transactions and rebalances are proven against real Kafka.
 *
 * Life cycle: configure (a bare producer configuration, logs routed to GLib), create the
 * handle and the cluster (tally_broker_new()), use (create topics, hand out the bootstrap
 * address), destroy the cluster then the handle (tally_broker_free()).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-broker.h"
#include "tally-kafka-log.h"

#include <gio/gio.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-broker-error-quark, tally_broker_error) /* clang-format on */

typedef struct
{
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  GSocketService *service;
  GCancellable *cancellable;
  GSocketConnectable *target; /* the first mock broker */
  guint n_active;             /* connections being spliced; relay thread only */
} Relay;

struct _TallyBroker
{
  rd_kafka_t *rk; /* owns the mock cluster */
  rd_kafka_mock_cluster_t *mcluster;
  char *bootstrap; /* what clients use */
  Relay *relay;    /* NULL without a fixed port */
};

/* ---------------------------------------------------------------------------------------
 * The relay (runs on its own thread)
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  Relay *relay;
  GIOStream *client;
} Splice;

static void
splice_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Splice *splice = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_io_stream_splice_finish (result, &error)
      && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("embedded broker relay: connection ended: %s", error->message);
  splice->relay->n_active--;
  g_object_unref (splice->client);
  g_free (splice);
}

static void
relay_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Splice *splice = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) upstream
      = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);

  if (upstream == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning ("embedded broker relay: cannot reach the mock broker: %s", error->message);
      g_io_stream_close (splice->client, NULL, NULL);
      splice->relay->n_active--;
      g_object_unref (splice->client);
      g_free (splice);
      return;
    }
  g_io_stream_splice_async (splice->client, G_IO_STREAM (upstream),
                            G_IO_STREAM_SPLICE_CLOSE_STREAM1 | G_IO_STREAM_SPLICE_CLOSE_STREAM2,
                            G_PRIORITY_DEFAULT, splice->relay->cancellable, splice_done, splice);
}

static gboolean
relay_incoming (GSocketService *service, GSocketConnection *connection, GObject *source_object,
                gpointer user_data)
{
  Relay *relay = user_data;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  Splice *splice = g_new0 (Splice, 1);

  splice->relay = relay;
  splice->client = G_IO_STREAM (g_object_ref (connection));
  relay->n_active++;
  g_socket_client_connect_async (client, relay->target, relay->cancellable, relay_connected,
                                 splice);
  return TRUE;
}

static gpointer
relay_thread (gpointer data)
{
  Relay *relay = data;

  g_main_context_push_thread_default (relay->context);
  g_socket_service_start (relay->service);
  g_main_loop_run (relay->loop);

  /* Shutting down: no new connections; end the ones in flight. */
  g_socket_service_stop (relay->service);
  g_socket_listener_close (G_SOCKET_LISTENER (relay->service));
  g_cancellable_cancel (relay->cancellable);
  while (relay->n_active > 0)
    g_main_context_iteration (relay->context, TRUE);
  g_clear_object (&relay->service);
  g_main_context_pop_thread_default (relay->context);
  return NULL;
}

static void
relay_free (Relay *relay)
{
  if (relay == NULL)
    return;
  if (relay->thread != NULL)
    {
      g_main_loop_quit (relay->loop);
      g_thread_join (relay->thread);
    }
  g_clear_object (&relay->service);
  g_clear_object (&relay->cancellable);
  g_clear_object (&relay->target);
  g_main_loop_unref (relay->loop);
  g_main_context_unref (relay->context);
  g_free (relay);
}

static Relay *
relay_new (guint port, const char *target, GError **error)
{
  Relay *relay = g_new0 (Relay, 1);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, (guint16)port);
  g_autoptr (GError) local_error = NULL;

  relay->context = g_main_context_new ();
  relay->loop = g_main_loop_new (relay->context, FALSE);
  relay->cancellable = g_cancellable_new ();
  relay->target = g_network_address_parse (target, 9092, &local_error);
  if (relay->target == NULL)
    {
      g_set_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_FAILED,
                   "cannot parse the mock broker address %s: %s", target, local_error->message);
      relay_free (relay);
      return NULL;
    }

  /* The service is made inactive, on the relay's context; the thread starts it. */
  g_main_context_push_thread_default (relay->context);
  relay->service = g_socket_service_new ();
  g_socket_service_stop (relay->service);
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (relay->service), address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL,
                                      &local_error))
    {
      g_main_context_pop_thread_default (relay->context);
      g_set_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_PORT,
                   "cannot listen on 127.0.0.1:%u: %s", port, local_error->message);
      relay_free (relay);
      return NULL;
    }
  g_signal_connect (relay->service, "incoming", G_CALLBACK (relay_incoming), relay);
  g_main_context_pop_thread_default (relay->context);

  relay->thread = g_thread_new ("tally-relay", relay_thread, relay);
  return relay;
}

/* ---------------------------------------------------------------------------------------
 * The broker
 * ------------------------------------------------------------------------------------- */

/* rd_kafka_mock_cluster_new() starts the cluster's thread with the caller's signal mask
 * (librdkafka 2.0.2 blocks signals only for the threads rd_kafka_new() creates). A signal
 * delivered to that thread interrupts its poll(), which the mock cluster treats as fatal
 * ("Mock cluster failed to poll N fds: -1: Interrupted system call"): every client then
 * gets "Connection refused". So the thread is created with every signal blocked, as
 * rd_kafka_new() does for its own; the caller's mask is restored, so g_unix_signal_add()
 * still gets SIGINT, SIGTERM, SIGHUP and SIGUSR1 on the threads that do not block them. */
static rd_kafka_mock_cluster_t *
mock_cluster_new_signals_blocked (rd_kafka_t *rk, guint n_brokers)
{
  rd_kafka_mock_cluster_t *mcluster;
  sigset_t all, saved;

  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &saved);
  mcluster = rd_kafka_mock_cluster_new (rk, (int)n_brokers);
  pthread_sigmask (SIG_SETMASK, &saved, NULL);
  return mcluster;
}

TallyBroker *
tally_broker_new (guint port, guint n_brokers, GError **error)
{
  g_autoptr (TallyBroker) self = g_new0 (TallyBroker, 1);
  rd_kafka_conf_t *conf;
  char errstr[512];
  const char *bootstraps;

  g_return_val_if_fail (port <= 65535, NULL);
  g_return_val_if_fail (n_brokers >= 1, NULL);

  /* Configure: a bare producer; the mock cluster needs a handle, not a connection. */
  conf = rd_kafka_conf_new ();
  tally_kafka_conf_set_log (conf);

  /* Create: the handle takes ownership of conf only on success. */
  self->rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (self->rk == NULL)
    {
      rd_kafka_conf_destroy (conf);
      g_set_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_FAILED,
                   "cannot create the embedded broker's handle: %s", errstr);
      return NULL;
    }
  self->mcluster = mock_cluster_new_signals_blocked (self->rk, n_brokers);
  if (self->mcluster == NULL)
    {
      g_set_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_FAILED,
                   "cannot start librdkafka's mock cluster (see the debug log)");
      return NULL;
    }
  bootstraps = rd_kafka_mock_cluster_bootstraps (self->mcluster);

  if (port == 0)
    self->bootstrap = g_strdup (bootstraps);
  else
    {
      /* The first broker of the comma-separated list is the relay's target. */
      g_auto (GStrv) brokers = g_strsplit (bootstraps, ",", 2);

      self->relay = relay_new (port, brokers[0], error);
      if (self->relay == NULL)
        return NULL;
      self->bootstrap = g_strdup_printf ("127.0.0.1:%u", port);
    }
  g_debug ("embedded broker: %u mock broker(s) at %s, bootstrap %s", n_brokers, bootstraps,
           self->bootstrap);
  return g_steal_pointer (&self);
}

gboolean
tally_broker_create_topic (TallyBroker *self, const char *topic, guint partitions, GError **error)
{
  rd_kafka_resp_err_t err;

  g_return_val_if_fail (self != NULL && topic != NULL, FALSE);
  g_return_val_if_fail (partitions >= 1 && partitions <= G_MAXINT32, FALSE);

  err = rd_kafka_mock_topic_create (self->mcluster, topic, (int)partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
    {
      g_set_error (error, TALLY_BROKER_ERROR, TALLY_BROKER_ERROR_TOPIC,
                   "cannot create topic %s with %u partitions: %s", topic, partitions,
                   rd_kafka_err2str (err));
      return FALSE;
    }
  return TRUE;
}

const char *
tally_broker_get_bootstrap_servers (TallyBroker *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->bootstrap;
}

rd_kafka_mock_cluster_t *
tally_broker_get_mock_cluster (TallyBroker *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->mcluster;
}

void
tally_broker_free (TallyBroker *self)
{
  if (self == NULL)
    return;
  /* Close the relay first so no new connection reaches a dying cluster. */
  relay_free (self->relay);
  /* Destroy: the cluster must go before the handle that owns it. */
  if (self->mcluster != NULL)
    rd_kafka_mock_cluster_destroy (self->mcluster);
  if (self->rk != NULL)
    rd_kafka_destroy (self->rk);
  g_free (self->bootstrap);
  g_free (self);
}
