/* tally-topics.c — creating the topics Tally owns, and waiting until they can be used.
 *
 * How: describe each topic with a Metadata request for that topic alone (the client has
 * allow.auto.create.topics=false, so describing never creates on a real broker; the mock
 * cluster of librdkafka 2.0.2 creates any topic a Metadata request names and has no
 * CreateTopics, so there nothing is ever missing); send one CreateTopics
 * request (KIP-4, rd_kafka_CreateTopics()) for the ones that are missing; then poll
 * Metadata until every partition of every topic names a leader, and ask each leader for
 * the partition's offsets (ListOffsets) until it answers. A freshly created topic exists
 * on the controller before its partitions have leaders, and a broker is named leader in
 * the metadata a moment before it serves the partition; a client that uses the topic in
 * between gets LEADER_NOT_AVAILABLE or NOT_LEADER_OR_FOLLOWER ("Not leader for
 * partition"). Everything runs under one deadline given by the caller.
 *
 * Two instances starting together both see the topic missing and both ask to create it:
 * the broker creates it once and answers the other TOPIC_ALREADY_EXISTS, which is
 * success here. A cluster where Tally's principal may not create topics answers
 * TOPIC_AUTHORIZATION_FAILED or CLUSTER_AUTHORIZATION_FAILED (or POLICY_VIOLATION under a
 * create-topic policy): topics created beforehand by an administrator are used as they
 * are, and a missing one is an error that prints the kafka-topics.sh command to create it.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-topics.h"

#include "tally-kafka-errors.h"

/* clang-format off */ G_DEFINE_QUARK (tally-topics-error-quark, tally_topics_error) /* clang-format on */

/* Between two Metadata requests while waiting for a topic or its leaders. */
#define POLL_INTERVAL_MS 100

/* Consumer properties the caller's configuration may carry (the service shares one
 * configuration between all its clients); a producer would warn about each. Prefixes, as
 * rd_kafka_conf_dup_filter() matches them. */
static const char *consumer_only[] = {
  "session.timeout.ms",
  "heartbeat.interval.ms",
  "max.poll.interval.ms",
  "fetch.",
  "enable.partition.eof",
  "partition.assignment.strategy",
  "group.",
  "enable.auto.",
  "auto.commit.",
  "queued.",
  "check.crcs",
  "isolation.level",
  "auto.offset.reset",
  "offset.store.",
  "consume.callback.max.messages",
};

rd_kafka_conf_t *
tally_topics_producer_conf (const rd_kafka_conf_t *conf, GError **error)
{
  rd_kafka_conf_t *copy;
  char errstr[512];

  g_return_val_if_fail (conf != NULL, NULL);

  copy = rd_kafka_conf_dup_filter (conf, G_N_ELEMENTS (consumer_only), consumer_only);
  if (rd_kafka_conf_set (copy, "allow.auto.create.topics", "false", errstr, sizeof errstr)
      != RD_KAFKA_CONF_OK)
    {
      g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CONFIG,
                   "allow.auto.create.topics=false: %s", errstr);
      rd_kafka_conf_destroy (copy);
      return NULL;
    }
  return copy;
}

rd_kafka_t *
tally_topics_client_new (const rd_kafka_conf_t *conf, GError **error)
{
  rd_kafka_conf_t *copy = tally_topics_producer_conf (conf, error);
  rd_kafka_t *rk;
  char errstr[512];

  if (copy == NULL)
    return NULL;
  /* rd_kafka_new() takes ownership of the conf only on success. */
  rk = rd_kafka_new (RD_KAFKA_PRODUCER, copy, errstr, sizeof errstr);
  if (rk == NULL)
    {
      rd_kafka_conf_destroy (copy);
      g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CONFIG,
                   "cannot create the admin client: %s", errstr);
    }
  return rk;
}

static int
remaining_ms (gint64 deadline)
{
  gint64 left = (deadline - g_get_monotonic_time ()) / G_TIME_SPAN_MILLISECOND;

  return (int)CLAMP (left, 1, G_MAXINT);
}

/* What one Metadata request says about a topic. */
typedef struct
{
  rd_kafka_resp_err_t err; /* request error, else the topic's own */
  int partitions;
  int leaderless;                    /* partitions without a leader (or with an error) */
  rd_kafka_resp_err_t partition_err; /* the first partition error, if any */
} TopicState;

static void
describe_once (rd_kafka_t *rk, const char *topic, int timeout_ms, TopicState *state)
{
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new (rk, topic, NULL);

  *state = (TopicState){ 0 };
  state->err = rd_kafka_metadata (rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy (rkt);
  if (state->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return;
  if (md->topic_cnt != 1)
    state->err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
  else
    {
      const struct rd_kafka_metadata_topic *t = &md->topics[0];

      state->err = t->err;
      state->partitions = t->partition_cnt;
      for (int i = 0; i < t->partition_cnt; i++)
        if (t->partitions[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[i].leader < 0)
          {
            if (state->leaderless++ == 0)
              state->partition_err = t->partitions[i].err;
          }
    }
  rd_kafka_metadata_destroy (md);
}

static gboolean
is_unknown (rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

/* The topic exists (perhaps still without leaders), is missing, or the broker said no. */
static gboolean
is_answer (rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
         || is_unknown (err) || err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
}

/* Describes @topic, retrying transport errors until @deadline. Returns FALSE with @error
 * set unless the broker answered; @state then says what it answered. */
static gboolean
describe (rd_kafka_t *rk, const char *topic, const char *role, gint64 deadline, TopicState *state,
          GError **error)
{
  gint64 started = g_get_monotonic_time ();

  for (;;)
    {
      /* At most a second per request, and the error callback served between them: it
       * reports a failed authentication or TLS handshake (tally-kafka-errors.h) where the
       * metadata request only sees no broker. */
      describe_once (rk, topic, MIN (remaining_ms (deadline), 1000), state);
      rd_kafka_poll (rk, 0);
      if (state->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        {
          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_NOT_AUTHORIZED,
                       "%s %s: not authorized to describe it (%s): grant Tally's principal "
                       "Describe, Read and Write on the topic",
                       role, topic, rd_kafka_err2name (state->err));
          return FALSE;
        }
      if (is_answer (state->err))
        return TRUE;
      if (g_get_monotonic_time () >= deadline && tally_kafka_error_is_unreachable (state->err))
        {
          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_DESCRIBE,
                       "%s %s: no broker answered in %.0f s (%s): check that a broker "
                       "listens at the address bootstrap.servers gives ([kafka] or "
                       "--bootstrap-server) and that this host can reach it",
                       role, topic, (g_get_monotonic_time () - started) / 1e6,
                       rd_kafka_err2str (state->err));
          return FALSE;
        }
      if (g_get_monotonic_time () >= deadline)
        {
          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_DESCRIBE,
                       "%s %s: the broker did not describe it in time: %s", role, topic,
                       rd_kafka_err2str (state->err));
          return FALSE;
        }
      g_debug ("%s %s: metadata: %s; retrying", role, topic, rd_kafka_err2str (state->err));
      g_usleep (POLL_INTERVAL_MS * 1000);
    }
}

int
tally_topics_get_partition_count (rd_kafka_t *rk, const char *topic, int timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  TopicState state;

  g_return_val_if_fail (rk != NULL, -1);
  g_return_val_if_fail (topic != NULL, -1);

  if (!describe (rk, topic, "topic", deadline, &state, error))
    return -1;
  return is_unknown (state.err) ? 0 : state.partitions;
}

/* "kafka-topics.sh --bootstrap-server B --create --topic T --partitions N --config k=v" */
static char *
create_command (rd_kafka_t *rk, const TallyTopicSpec *spec)
{
  GString *command = g_string_new ("kafka-topics.sh --bootstrap-server ");
  char servers[1024];
  size_t size = sizeof servers;

  if (rd_kafka_conf_get (rd_kafka_conf (rk), "bootstrap.servers", servers, &size)
          == RD_KAFKA_CONF_OK
      && servers[0] != '\0')
    g_string_append (command, servers);
  else
    g_string_append (command, "BROKER:PORT");
  g_string_append_printf (command, " --create --topic %s --partitions %d", spec->name,
                          spec->partitions);
  for (const char *const *c = spec->configs; c != NULL && c[0] != NULL && c[1] != NULL; c += 2)
    g_string_append_printf (command, " --config %s=%s", c[0], c[1]);
  return g_string_free (command, FALSE);
}

static char *
describe_configs (const TallyTopicSpec *spec)
{
  GString *text = g_string_new (NULL);

  for (const char *const *c = spec->configs; c != NULL && c[0] != NULL && c[1] != NULL; c += 2)
    g_string_append_printf (text, ", %s=%s", c[0], c[1]);
  return g_string_free (text, FALSE);
}

static gboolean
is_forbidden (rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
         || err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED
         || err == RD_KAFKA_RESP_ERR_POLICY_VIOLATION;
}

/* After the broker refused to create spec's topic: success if it exists after all. */
static gboolean
refused (rd_kafka_t *rk, const TallyTopicSpec *spec, rd_kafka_resp_err_t err, const char *why,
         gint64 deadline, GError **error)
{
  g_autofree char *command = create_command (rk, spec);
  TopicState state;

  if (is_forbidden (err) && describe (rk, spec->name, spec->role, deadline, &state, NULL)
      && !is_unknown (state.err))
    {
      g_message ("%s %s: not created by Tally (%s) but it exists: using it", spec->role, spec->name,
                 rd_kafka_err2name (err));
      return TRUE;
    }
  if (is_forbidden (err))
    g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CREATE,
                 "%s %s does not exist and the broker does not let Tally create it (%s: %s): "
                 "create it yourself with `%s`, or grant Tally's principal Create on it",
                 spec->role, spec->name, rd_kafka_err2name (err), why, command);
  else
    g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CREATE,
                 "cannot create %s %s (%s: %s); to create it yourself: `%s`", spec->role,
                 spec->name, rd_kafka_err2name (err), why, command);
  return FALSE;
}

/* One CreateTopics request for the specs of @missing (indices into @specs). */
static gboolean
create_topics (rd_kafka_t *rk, const TallyTopicSpec *specs, GArray *missing, gint64 deadline,
               GError **error)
{
  g_autofree rd_kafka_NewTopic_t **new_topics = g_new0 (rd_kafka_NewTopic_t *, missing->len);
  rd_kafka_AdminOptions_t *options;
  rd_kafka_queue_t *queue;
  rd_kafka_event_t *event;
  char errstr[512];
  gboolean ok = TRUE;
  int timeout_ms = remaining_ms (deadline);

  for (guint i = 0; i < missing->len && ok; i++)
    {
      const TallyTopicSpec *spec = &specs[g_array_index (missing, guint, i)];

      /* Replication factor -1: the broker's default.replication.factor (KIP-464). */
      new_topics[i]
          = rd_kafka_NewTopic_new (spec->name, spec->partitions, -1, errstr, sizeof errstr);
      if (new_topics[i] == NULL)
        {
          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_CREATE,
                       "cannot create %s %s: %s", spec->role, spec->name, errstr);
          ok = FALSE;
          break;
        }
      for (const char *const *c = spec->configs; c != NULL && c[0] != NULL && c[1] != NULL; c += 2)
        rd_kafka_NewTopic_set_config (new_topics[i], c[0], c[1]);
    }
  if (!ok)
    {
      for (guint i = 0; i < missing->len; i++)
        if (new_topics[i] != NULL)
          rd_kafka_NewTopic_destroy (new_topics[i]);
      return FALSE;
    }

  options = rd_kafka_AdminOptions_new (rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  /* The broker waits this long for the controller to create the topics. */
  rd_kafka_AdminOptions_set_operation_timeout (options, timeout_ms, NULL, 0);
  rd_kafka_AdminOptions_set_request_timeout (options, timeout_ms, NULL, 0);
  queue = rd_kafka_queue_new (rk);
  rd_kafka_CreateTopics (rk, new_topics, missing->len, options, queue);
  event = rd_kafka_queue_poll (queue, timeout_ms + 1000);

  if (event == NULL)
    {
      g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_TIMEOUT,
                   "creating %s %s%s: no answer from the broker within %d ms",
                   specs[g_array_index (missing, guint, 0)].role,
                   specs[g_array_index (missing, guint, 0)].name,
                   missing->len > 1 ? " and others" : "", timeout_ms);
      ok = FALSE;
    }
  else if (rd_kafka_event_error (event) != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      /* The whole request failed: every topic of it gets the same answer. */
      rd_kafka_resp_err_t err = rd_kafka_event_error (event);

      for (guint i = 0; i < missing->len && ok; i++)
        ok = refused (rk, &specs[g_array_index (missing, guint, i)], err,
                      rd_kafka_event_error_string (event), deadline, error);
    }
  else
    {
      const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result (event);
      size_t n = 0;
      const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics (result, &n);

      for (guint i = 0; i < missing->len && ok; i++)
        {
          const TallyTopicSpec *spec = &specs[g_array_index (missing, guint, i)];
          const rd_kafka_topic_result_t *r = NULL;
          rd_kafka_resp_err_t err;

          for (size_t j = 0; j < n && r == NULL; j++)
            if (g_strcmp0 (rd_kafka_topic_result_name (results[j]), spec->name) == 0)
              r = results[j];
          err = r != NULL ? rd_kafka_topic_result_error (r) : RD_KAFKA_RESP_ERR__FAIL;
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            {
              g_autofree char *configs = describe_configs (spec);

              g_message ("created %s %s: %d partition(s), replication factor: the broker's "
                         "default%s",
                         spec->role, spec->name, spec->partitions, configs);
            }
          else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            g_info ("%s %s: created by someone else meanwhile", spec->role, spec->name);
          else
            ok = refused (rk, spec, err,
                          r != NULL && rd_kafka_topic_result_error_string (r) != NULL
                              ? rd_kafka_topic_result_error_string (r)
                              : rd_kafka_err2str (err),
                          deadline, error);
        }
    }

  if (event != NULL)
    rd_kafka_event_destroy (event);
  rd_kafka_queue_destroy (queue);
  rd_kafka_AdminOptions_destroy (options);
  for (guint i = 0; i < missing->len; i++)
    rd_kafka_NewTopic_destroy (new_topics[i]);
  return ok;
}

/* Counts the partitions of @topic whose leader does not answer a ListOffsets request
 * (rd_kafka_query_watermark_offsets()) yet. Metadata names a leader as soon as the
 * controller elected it, but that broker may still answer NOT_LEADER_OR_FOLLOWER for a
 * moment, until it has applied the change itself; fetches, produce requests and
 * offsets_for_times() would fail the same way. */
static int
count_not_serving (rd_kafka_t *rk, const char *topic, int n_partitions, gint64 deadline,
                   rd_kafka_resp_err_t *first_err)
{
  int not_serving = 0;

  for (int p = 0; p < n_partitions; p++)
    {
      int64_t low = 0, high = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets (
          rk, topic, p, &low, &high, MIN (remaining_ms (deadline), 5000));

      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && not_serving++ == 0)
        *first_err = err;
    }
  return not_serving;
}

/* Polls until spec's topic has at least @min partitions, each with a leader that serves
 * it. Fewer partitions is an error at once for a topic that existed (@created FALSE); for
 * one just created it means the metadata is not complete yet. */
static gboolean
wait_for_leaders (rd_kafka_t *rk, const TallyTopicSpec *spec, int min, gboolean created,
                  gint64 deadline, int timeout_ms, GError **error)
{
  TopicState state;
  gboolean led;

  for (;;)
    {
      describe_once (rk, spec->name, remaining_ms (deadline), &state);
      led = state.err == RD_KAFKA_RESP_ERR_NO_ERROR && state.partitions > 0
            && state.leaderless == 0;

      if (led && state.partitions < min && (!created || g_get_monotonic_time () >= deadline))
        {
          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_PARTITIONS,
                       "%s %s has %d partition(s), Tally needs at least %d: add partitions "
                       "(kafka-topics.sh --alter --topic %s --partitions %d) or use another "
                       "topic",
                       spec->role, spec->name, state.partitions, min, spec->name, min);
          return FALSE;
        }
      if (led && state.partitions >= min)
        {
          state.leaderless = count_not_serving (rk, spec->name, state.partitions, deadline,
                                                &state.partition_err);
          if (state.leaderless == 0)
            return TRUE;
        }
      if (g_get_monotonic_time () >= deadline)
        {
          rd_kafka_resp_err_t err = state.err != RD_KAFKA_RESP_ERR_NO_ERROR ? state.err
                                    : state.partition_err != RD_KAFKA_RESP_ERR_NO_ERROR
                                        ? state.partition_err
                                        : RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;

          g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_TIMEOUT,
                       "%s %s: %d of %d partition(s) without a leader that serves them after "
                       "%d ms (%s); is the cluster healthy?",
                       spec->role, spec->name,
                       state.partitions > 0 ? state.leaderless : spec->partitions,
                       state.partitions > 0 ? state.partitions : spec->partitions, timeout_ms,
                       rd_kafka_err2str (err));
          return FALSE;
        }
      g_debug ("%s %s: waiting for leaders (%s; %d of %d partition(s) not served yet: %s)",
               spec->role, spec->name, rd_kafka_err2str (state.err), state.leaderless,
               state.partitions, rd_kafka_err2str (state.partition_err));
      g_usleep (POLL_INTERVAL_MS * 1000);
    }
}

/* Gives @spec's existing topic @total partitions in all (CreatePartitions, KIP-195). */
static gboolean
grow_topic (rd_kafka_t *rk, const TallyTopicSpec *spec, int from, int total, gint64 deadline,
            GError **error)
{
  char errstr[512];
  int timeout_ms = remaining_ms (deadline);
  rd_kafka_NewPartitions_t *np
      = rd_kafka_NewPartitions_new (spec->name, (size_t)total, errstr, sizeof errstr);
  rd_kafka_AdminOptions_t *options;
  rd_kafka_queue_t *queue;
  rd_kafka_event_t *event;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  const char *why = "no answer from the broker";

  if (np == NULL)
    {
      g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_PARTITIONS, "%s %s: %s",
                   spec->role, spec->name, errstr);
      return FALSE;
    }
  options = rd_kafka_AdminOptions_new (rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
  rd_kafka_AdminOptions_set_operation_timeout (options, timeout_ms, NULL, 0);
  rd_kafka_AdminOptions_set_request_timeout (options, timeout_ms, NULL, 0);
  queue = rd_kafka_queue_new (rk);
  rd_kafka_CreatePartitions (rk, &np, 1, options, queue);
  event = rd_kafka_queue_poll (queue, timeout_ms + 1000);
  if (event != NULL)
    {
      err = rd_kafka_event_error (event);
      why = rd_kafka_event_error_string (event);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          size_t n = 0;
          const rd_kafka_topic_result_t **results = rd_kafka_CreatePartitions_result_topics (
              rd_kafka_event_CreatePartitions_result (event), &n);

          if (n > 0)
            {
              err = rd_kafka_topic_result_error (results[0]);
              why = rd_kafka_topic_result_error_string (results[0]);
            }
        }
    }
  /* INVALID_PARTITIONS: another instance grew it first (to this count or more). */
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS)
    g_message ("%s %s: grown from %d to %d partitions for the input's new partitions", spec->role,
               spec->name, from, total);
  else
    g_set_error (error, TALLY_TOPICS_ERROR, TALLY_TOPICS_ERROR_PARTITIONS,
                 "%s %s has %d partition(s), Tally needs %d and cannot add them (%s: %s): add "
                 "them by hand (kafka-topics.sh --alter --topic %s --partitions %d)",
                 spec->role, spec->name, from, total, rd_kafka_err2name (err),
                 why != NULL ? why : rd_kafka_err2str (err), spec->name, total);
  if (event != NULL)
    rd_kafka_event_destroy (event);
  rd_kafka_queue_destroy (queue);
  rd_kafka_AdminOptions_destroy (options);
  rd_kafka_NewPartitions_destroy (np);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS;
}

gboolean
tally_topics_ensure (rd_kafka_t *rk, const TallyTopicSpec *specs, guint n_specs, int timeout_ms,
                     GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  g_autoptr (GArray) missing = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr (GArray) grown = g_array_new (FALSE, FALSE, sizeof (guint));

  g_return_val_if_fail (rk != NULL, FALSE);
  g_return_val_if_fail (n_specs == 0 || specs != NULL, FALSE);

  /* 1. Which exist. */
  for (guint i = 0; i < n_specs; i++)
    {
      TopicState state;

      g_return_val_if_fail (specs[i].name != NULL && specs[i].partitions > 0, FALSE);
      if (!describe (rk, specs[i].name, specs[i].role, deadline, &state, error))
        return FALSE;
      if (is_unknown (state.err))
        g_array_append_val (missing, i);
      else if (specs[i].grow && state.partitions > 0 && state.partitions < specs[i].min_partitions)
        {
          if (!grow_topic (rk, &specs[i], state.partitions, specs[i].min_partitions, deadline,
                           error))
            return FALSE;
          g_array_append_val (grown, i);
        }
      else
        g_info ("%s %s exists: %d partition(s)", specs[i].role, specs[i].name, state.partitions);
    }

  /* 2. Create the others. */
  if (missing->len > 0 && !create_topics (rk, specs, missing, deadline, error))
    return FALSE;

  /* 3. Wait until each partition has a leader. A topic created here must show all its
   * partitions; one that existed must have at least min_partitions. */
  for (guint i = 0; i < n_specs; i++)
    {
      gboolean created = FALSE;

      for (guint j = 0; j < missing->len; j++)
        created |= g_array_index (missing, guint, j) == i;
      /* A grown topic's new partitions may take a moment to show in the metadata. */
      for (guint j = 0; j < grown->len; j++)
        created |= g_array_index (grown, guint, j) == i;
      if (!wait_for_leaders (rk, &specs[i],
                             created ? MAX (specs[i].partitions, specs[i].min_partitions)
                                     : specs[i].min_partitions,
                             created, deadline, timeout_ms, error))
        return FALSE;
    }
  return TRUE;
}
