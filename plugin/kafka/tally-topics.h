/* tally-topics.h — the topics Tally owns exist, with the partitions and configs it needs.
 *
 * Tally owns three topics and creates them itself with the Admin API (KIP-4
 * CreateTopics): the request topic (1 partition), the output topic (1 partition) and the
 * compacted changelog (as many partitions as the input). Input topics are never Tally's:
 * they are described, never created. Creating is idempotent (a topic that exists, or that
 * another instance creates at the same moment, is success), and a broker that forbids
 * creation (ACLs, a create-topic policy) is fine when the topic exists already. Every
 * partition of every topic must have a leader before it is used: a topic the controller
 * has just created has none for a moment, and a client that produces, fetches or reads
 * watermarks then gets "Not leader".
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <librdkafka/rdkafka.h>

G_BEGIN_DECLS

/**
 * TALLY_TOPICS_ERROR:
 *
 * Error domain of topic creation. Errors in this domain are from #TallyTopicsError.
 */
#define TALLY_TOPICS_ERROR (tally_topics_error_quark ())

/**
 * TallyTopicsError:
 * @TALLY_TOPICS_ERROR_CONFIG: librdkafka refused a property or could not create the
 *   client (the message is librdkafka's).
 * @TALLY_TOPICS_ERROR_DESCRIBE: the broker did not describe a topic (metadata request
 *   failed until the deadline).
 * @TALLY_TOPICS_ERROR_CREATE: a topic is missing and the broker refused to create it
 *   (authorization, policy, bad config); the message says how to create it by hand.
 * @TALLY_TOPICS_ERROR_PARTITIONS: a topic exists with fewer partitions than needed.
 * @TALLY_TOPICS_ERROR_TIMEOUT: the broker did not answer the CreateTopics request, or a
 *   partition had no leader, within the time allowed.
 * @TALLY_TOPICS_ERROR_NOT_AUTHORIZED: the principal may not Describe a topic
 *   (TOPIC_AUTHORIZATION_FAILED: an ACL is missing).
 *
 * Errors of topic creation. Every message names the topic.
 */
typedef enum
{
  TALLY_TOPICS_ERROR_CONFIG,
  TALLY_TOPICS_ERROR_DESCRIBE,
  TALLY_TOPICS_ERROR_CREATE,
  TALLY_TOPICS_ERROR_PARTITIONS,
  TALLY_TOPICS_ERROR_TIMEOUT,
  TALLY_TOPICS_ERROR_NOT_AUTHORIZED,
} TallyTopicsError;

/**
 * tally_topics_error_quark:
 *
 * Returns: the quark of %TALLY_TOPICS_ERROR
 */
GQuark tally_topics_error_quark (void);

/**
 * TallyTopicSpec:
 * @name: the topic's name
 * @role: what the topic is for, used in messages ("request topic", "changelog topic")
 * @partitions: partitions to create it with, >= 1
 * @min_partitions: an existing topic with fewer partitions is an error; 1 accepts any
 * @configs: (nullable) (array zero-terminated=1): topic configs to create it with, as
 *   name, value pairs ("cleanup.policy", "compact", NULL); never applied to a topic that
 *   exists already
 * @grow: an existing topic with fewer than @min_partitions partitions is given more
 *   (CreatePartitions, KIP-195) instead of being an error: new partitions are appended,
 *   so partition p keeps its records (the changelog, whose partition p is input partition
 *   p's store)
 *
 * A topic Tally owns. Plain data; the strings are borrowed for the call.
 */
typedef struct
{
  const char *name;
  const char *role;
  int partitions;
  int min_partitions;
  const char *const *configs;
  gboolean grow;
} TallyTopicSpec;

/**
 * tally_topics_producer_conf:
 * @conf: (transfer none): client properties (bootstrap.servers, security, any `[kafka]`
 *   property, consumer properties included)
 * @error: return location for %TALLY_TOPICS_ERROR_CONFIG
 *
 * A copy of @conf for a producer or an admin client: without the consumer properties a
 * producer would warn about (`group.*`, `session.timeout.ms`, `fetch.*`, ...), and with
 * `allow.auto.create.topics=false`, so that no metadata request of this client makes the
 * broker create a topic with its defaults (cleanup.policy=delete, num.partitions). Any
 * thread.
 *
 * Returns: (transfer full) (nullable): the configuration, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
rd_kafka_conf_t *tally_topics_producer_conf (const rd_kafka_conf_t *conf, GError **error);

/**
 * tally_topics_client_new:
 * @conf: (transfer none): client properties, as for tally_topics_producer_conf()
 * @error: return location for %TALLY_TOPICS_ERROR_CONFIG
 *
 * Creates a producer that is only used for metadata and Admin API requests, for callers
 * that have no client of their own at hand. Destroy it with rd_kafka_destroy(). Any
 * thread.
 *
 * Returns: (transfer full) (nullable): the client, or %NULL with @error set
 */
G_GNUC_WARN_UNUSED_RESULT
rd_kafka_t *tally_topics_client_new (const rd_kafka_conf_t *conf, GError **error);

/**
 * tally_topics_get_partition_count:
 * @rk: (transfer none): any client
 * @topic: a topic name (not a `^regex`)
 * @timeout_ms: the longest wait for the broker, in milliseconds
 * @error: return location for %TALLY_TOPICS_ERROR_DESCRIBE
 *
 * Asks the broker for the topic's metadata (one Metadata request, retried on transport
 * errors until @timeout_ms). Blocks; any thread.
 *
 * Returns: the topic's partition count; 0 when the topic does not exist; -1 with @error
 *   set when the broker did not say
 */
int tally_topics_get_partition_count (rd_kafka_t *rk, const char *topic, int timeout_ms,
                                      GError **error);

/**
 * tally_topics_ensure:
 * @rk: (transfer none): the client to send Metadata and CreateTopics requests with (any
 *   type; a producer made from tally_topics_producer_conf() needs no group)
 * @specs: (array length=n_specs): the topics
 * @n_specs: how many
 * @timeout_ms: the longest the whole call may take, in milliseconds
 * @error: return location for any #TallyTopicsError
 *
 * Makes every topic of @specs exist and usable:
 *
 * 1. describes each; a topic that exists is kept as it is (its configs are not changed)
 *    and must have at least @min_partitions partitions, or is given that many when its
 *    spec says @grow (CreatePartitions);
 * 2. creates the missing ones in one CreateTopics request (KIP-4) with @partitions
 *    partitions, replication factor -1 (the broker's `default.replication.factor`,
 *    KIP-464) and @configs. TOPIC_ALREADY_EXISTS is success (another instance was
 *    first). TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED and
 *    POLICY_VIOLATION are success when the topic exists after all, and otherwise an error
 *    that says how to create the topic by hand;
 * 3. polls metadata every 100 ms until every partition of every topic has a leader, and
 *    that leader answers a ListOffsets request for it (rd_kafka_query_watermark_offsets()):
 *    a broker named leader in the metadata may answer NOT_LEADER_OR_FOLLOWER for a moment.
 *
 * Blocks for at most about @timeout_ms; any thread.
 *
 * Returns: %TRUE when every topic exists, has enough partitions and a leader for each
 */
gboolean tally_topics_ensure (rd_kafka_t *rk, const TallyTopicSpec *specs, guint n_specs,
                              int timeout_ms, GError **error);

G_END_DECLS
