/* tally-broker.h — the embedded broker: librdkafka's mock cluster, in-process.
 *
 * With no bootstrap.servers configured, Tally runs against librdkafka's built-in mock
 * cluster (rd_kafka_mock_cluster_new()), which speaks the Kafka protocol on 127.0.0.1 so
 * kcat, Python clients and `tally snapshot` can use it too. See tally-broker.c for its
 * limits in librdkafka 2.0.2.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

G_BEGIN_DECLS

/**
 * TALLY_BROKER_ERROR:
 *
 * Error domain of the embedded broker. Errors in this domain are from #TallyBrokerError.
 */
#define TALLY_BROKER_ERROR (tally_broker_error_quark ())

/**
 * TALLY_BROKER_PARTITION_BYTES:
 *
 * About what the embedded broker keeps per partition, in bytes: librdkafka 2.0.2's mock
 * cluster drops a partition's oldest records beyond 5 MiB of log (it has no retention
 * settings to raise it). A snapshot larger than this on the output topic's one partition
 * could never be read back whole; the publisher says so instead (tally-publisher.h).
 */
#define TALLY_BROKER_PARTITION_BYTES (5 * 1024 * 1024)

/**
 * TallyBrokerError:
 * @TALLY_BROKER_ERROR_FAILED: the mock cluster could not be created (librdkafka's text is
 *   in the message).
 * @TALLY_BROKER_ERROR_PORT: the requested port on 127.0.0.1 could not be listened on
 *   (already in use, or privileged).
 * @TALLY_BROKER_ERROR_TOPIC: a topic could not be created (rd_kafka_mock_topic_create()).
 *
 * Errors of the embedded broker.
 */
typedef enum
{
  TALLY_BROKER_ERROR_FAILED,
  TALLY_BROKER_ERROR_PORT,
  TALLY_BROKER_ERROR_TOPIC,
} TallyBrokerError;

/**
 * tally_broker_error_quark:
 *
 * Returns: the quark of %TALLY_BROKER_ERROR
 */
GQuark tally_broker_error_quark (void);

typedef struct _TallyBroker TallyBroker;

/**
 * tally_broker_new:
 * @port: TCP port on 127.0.0.1 for the bootstrap address; 0 for the mock cluster's own
 *   ephemeral port ([broker] port)
 * @n_brokers: number of mock brokers, at least 1 ([broker] brokers)
 * @error: return location for a #TallyBrokerError
 *
 * Starts a mock cluster on a dedicated rd_kafka_t handle (librdkafka runs it on its own
 * threads, which are created with every signal blocked, so that a signal to the process
 * never interrupts the cluster's poll(); no main loop is needed). With a nonzero @port a small TCP
 * relay on 127.0.0.1:@port forwards bootstrap connections to the first mock broker (librdkafka
 * 2.0.2 always binds its mock brokers to ephemeral ports); clients then talk to the
 * brokers at the addresses the metadata advertises, also on 127.0.0.1. The relay runs on
 * its own thread. Any thread.
 *
 * Returns: (transfer full) (nullable): the broker, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
TallyBroker *tally_broker_new (guint port, guint n_brokers, GError **error);

/**
 * tally_broker_create_topic:
 * @self: a broker
 * @topic: a topic name
 * @partitions: its partition count, at least 1 ([broker] partitions)
 * @error: return location for %TALLY_BROKER_ERROR_TOPIC
 *
 * Creates @topic with @partitions partitions and replication factor 1. Creating a topic
 * that exists is not an error (its partition count stays). Topics not created here are
 * auto-created by the mock cluster with 4 partitions on first use. Any thread.
 *
 * Returns: %TRUE on success
 */
gboolean tally_broker_create_topic (TallyBroker *self, const char *topic, guint partitions,
                                    GError **error);

/**
 * tally_broker_get_bootstrap_servers:
 * @self: a broker
 *
 * Returns: (transfer none): the `bootstrap.servers` value clients use, such as
 *   `127.0.0.1:9092`
 */
const char *tally_broker_get_bootstrap_servers (TallyBroker *self);

/**
 * tally_broker_get_mock_cluster:
 * @self: a broker
 *
 * For tests that inject errors (rd_kafka_mock_push_request_errors()).
 *
 * Returns: (transfer none): the mock cluster
 */
rd_kafka_mock_cluster_t *tally_broker_get_mock_cluster (TallyBroker *self);

/**
 * tally_broker_free:
 * @self: (transfer full) (nullable): a broker
 *
 * Stops the relay, destroys the mock cluster (its data is lost) and its handle. Clients
 * still connected see their connections closed.
 */
void tally_broker_free (TallyBroker *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyBroker, tally_broker_free)

G_END_DECLS
