/* tally-metrics.c — the metrics registry and its Prometheus text exposition.
 *
 * Writers and readers share plain guint64/gint64 fields through GCC's __atomic builtins
 * with relaxed order: each figure is independent, so a scrape may see one counter a
 * record ahead of another, which Prometheus tolerates (as every client library's
 * lock-free counters do). The exposition is built in one GString per scrape; its cost is
 * O(partitions + brokers + shards + stores) and never depends on the number of words.
 *
 * Statistics (librdkafka's STATISTICS.md) are parsed with json-glib on the thread that
 * serves the consumer's callbacks (the source's), every statistics.interval.ms.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-metrics.h"

#include "tally-build-config.h"

#include <json-glib/json-glib.h>
#include <string.h>

#define LOAD(p) __atomic_load_n ((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n ((p), (v), __ATOMIC_RELAXED)
#define ADD(p, v) __atomic_fetch_add ((p), (v), __ATOMIC_RELAXED)

/* Upper bounds of the finite buckets, in microseconds (5 ms .. 60 s). */
static const gint64 bucket_us[TALLY_METRICS_N_BUCKETS] = {
  5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 60000000,
};

struct _TallyMetricsPartition
{
  char *topic;
  gint32 partition;
  guint64 records;
  guint64 bytes;
  guint64 words;
  gint assigned;
  gint64 position;   /* the source's; -1 unknown */
  gint64 committed;  /* the source's (checkpointed and committed); -1 unknown */
  gint64 hi_offset;  /* statistics; -1 unknown */
  gint64 end_offset; /* statistics: ls_offset, else hi_offset; -1 unknown */
};

typedef struct
{
  guint64 buckets[TALLY_METRICS_N_BUCKETS + 1]; /* not cumulative; the last is +Inf */
  guint64 sum_us;
} Histogram;

typedef struct
{
  char *name; /* "host:port/id" */
  gint32 node_id;
  gboolean up;
  gint64 rtt_avg_us;
  guint64 tx_errors;
  guint64 rx_errors;
  guint64 request_timeouts;
} Broker;

struct _TallyMetrics
{
  gint ref_count; /* atomic */
  guint64 counters[TALLY_METRICS_N_COUNTERS];
  Histogram histograms[TALLY_METRICS_N_HISTOGRAMS];

  /* Readiness, written by the source. */
  guint assigned;
  gint restoring;
  guint broken;
  gint consuming;
  gint was_ready;
  TallyMetricsReadyFunc ready_func;
  gpointer ready_data;

  GMutex lock;           /* guards the two lists, not the figures in them */
  GPtrArray *partitions; /* of TallyMetricsPartition, never shrinks */
  GHashTable *by_key;    /* "topic\n<partition>" -> TallyMetricsPartition */
  GArray *brokers;       /* of Broker, replaced by every statistics document */
};

static void
broker_clear (gpointer p)
{
  g_free (((Broker *)p)->name);
}

static void
partition_free (gpointer p)
{
  TallyMetricsPartition *e = p;

  g_free (e->topic);
  g_free (e);
}

TallyMetrics *
tally_metrics_new (void)
{
  TallyMetrics *self = g_new0 (TallyMetrics, 1);

  self->ref_count = 1;
  g_mutex_init (&self->lock);
  self->partitions = g_ptr_array_new_with_free_func (partition_free);
  self->by_key = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->brokers = g_array_new (FALSE, TRUE, sizeof (Broker));
  g_array_set_clear_func (self->brokers, broker_clear);
  return self;
}

TallyMetrics *
tally_metrics_ref (TallyMetrics *metrics)
{
  g_atomic_int_inc (&metrics->ref_count);
  return metrics;
}

void
tally_metrics_unref (TallyMetrics *metrics)
{
  if (metrics == NULL || !g_atomic_int_dec_and_test (&metrics->ref_count))
    return;
  g_hash_table_unref (metrics->by_key);
  g_ptr_array_unref (metrics->partitions);
  g_array_unref (metrics->brokers);
  g_mutex_clear (&metrics->lock);
  g_free (metrics);
}

void
tally_metrics_add (TallyMetrics *metrics, TallyMetricsCounter counter, guint64 delta)
{
  ADD (&metrics->counters[counter], delta);
}

void
tally_metrics_set_total (TallyMetrics *metrics, TallyMetricsCounter counter, guint64 total)
{
  STORE (&metrics->counters[counter], total);
}

guint64
tally_metrics_get (TallyMetrics *metrics, TallyMetricsCounter counter)
{
  return LOAD (&metrics->counters[counter]);
}

void
tally_metrics_observe (TallyMetrics *metrics, TallyMetricsHistogram histogram, gint64 duration_us)
{
  Histogram *h = &metrics->histograms[histogram];
  guint i = 0;

  duration_us = MAX (duration_us, 0);
  while (i < TALLY_METRICS_N_BUCKETS && duration_us > bucket_us[i])
    i++;
  ADD (&h->buckets[i], 1);
  ADD (&h->sum_us, (guint64)duration_us);
}

static TallyMetricsPartition *
find_partition_locked (TallyMetrics *metrics, const char *topic, gint32 partition, gboolean create)
{
  g_autofree char *key = g_strdup_printf ("%s\n%" G_GINT32_FORMAT, topic, partition);
  TallyMetricsPartition *e = g_hash_table_lookup (metrics->by_key, key);

  if (e == NULL && create)
    {
      e = g_new0 (TallyMetricsPartition, 1);
      e->topic = g_strdup (topic);
      e->partition = partition;
      e->position = e->committed = e->hi_offset = e->end_offset = -1;
      g_ptr_array_add (metrics->partitions, e);
      g_hash_table_insert (metrics->by_key, g_steal_pointer (&key), e);
    }
  return e;
}

TallyMetricsPartition *
tally_metrics_partition (TallyMetrics *metrics, const char *topic, gint32 partition)
{
  TallyMetricsPartition *e;

  g_mutex_lock (&metrics->lock);
  e = find_partition_locked (metrics, topic, partition, TRUE);
  g_mutex_unlock (&metrics->lock);
  return e;
}

void
tally_metrics_partition_add_record (TallyMetricsPartition *partition, gsize bytes, gsize words)
{
  ADD (&partition->records, 1);
  ADD (&partition->bytes, (guint64)bytes);
  ADD (&partition->words, (guint64)words);
}

void
tally_metrics_partition_set_position (TallyMetricsPartition *partition, gboolean assigned,
                                      gint64 position, gint64 committed)
{
  STORE (&partition->assigned, assigned ? 1 : 0);
  STORE (&partition->position, position);
  STORE (&partition->committed, committed);
}

/* ---------------------------------------------------------------------------------------
 * librdkafka statistics
 * ------------------------------------------------------------------------------------- */

static gint64
member_int (JsonObject *object, const char *name, gint64 fallback)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || JSON_NODE_TYPE (node) != JSON_NODE_VALUE)
    return fallback;
  return json_node_get_int (node);
}

gboolean
tally_metrics_update_statistics (TallyMetrics *metrics, const char *json, gsize len, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonObject *root, *topics, *brokers;
  g_autoptr (GArray) new_brokers = NULL;

  if (!json_parser_load_from_data (parser, json, (gssize)len, error))
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error_literal (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                           "the statistics are not a JSON object");
      return FALSE;
    }
  root = json_node_get_object (json_parser_get_root (parser));

  topics = json_object_has_member (root, "topics") ? json_object_get_object_member (root, "topics")
                                                   : NULL;
  if (topics != NULL)
    {
      g_autoptr (GList) topic_names = json_object_get_members (topics);

      for (GList *t = topic_names; t != NULL; t = t->next)
        {
          JsonObject *topic = json_object_get_object_member (topics, t->data);
          JsonObject *partitions;
          g_autoptr (GList) numbers = NULL;

          if (topic == NULL || !json_object_has_member (topic, "partitions"))
            continue;
          partitions = json_object_get_object_member (topic, "partitions");
          numbers = partitions != NULL ? json_object_get_members (partitions) : NULL;
          for (GList *p = numbers; p != NULL; p = p->next)
            {
              JsonObject *stats = json_object_get_object_member (partitions, p->data);
              gint64 number = g_ascii_strtoll (p->data, NULL, 10);
              gint64 hi, ls;
              TallyMetricsPartition *e;

              /* -1 is librdkafka's internal UA partition; only fetched ones have a lag. */
              if (stats == NULL || number < 0 || number > G_MAXINT32
                  || strcmp (json_object_get_string_member_with_default (stats, "fetch_state", ""),
                             "none")
                         == 0)
                continue;
              g_mutex_lock (&metrics->lock);
              e = find_partition_locked (metrics, t->data, (gint32)number, FALSE);
              g_mutex_unlock (&metrics->lock);
              if (e == NULL)
                continue;
              /* Not consumer_lag: it is measured from the offset this consumer committed
               * itself, and exactly-once checkpoints commit through the changelog
               * producer's transaction, which the consumer's statistics never see. */
              hi = member_int (stats, "hi_offset", -1);
              ls = member_int (stats, "ls_offset", -1);
              STORE (&e->hi_offset, hi);
              STORE (&e->end_offset, ls >= 0 ? ls : hi);
            }
        }
    }

  brokers = json_object_has_member (root, "brokers")
                ? json_object_get_object_member (root, "brokers")
                : NULL;
  new_brokers = g_array_new (FALSE, TRUE, sizeof (Broker));
  g_array_set_clear_func (new_brokers, broker_clear);
  if (brokers != NULL)
    {
      g_autoptr (GList) names = json_object_get_members (brokers);

      for (GList *b = names; b != NULL; b = b->next)
        {
          JsonObject *stats = json_object_get_object_member (brokers, b->data);
          JsonObject *rtt;
          Broker broker = { 0 };

          /* Bootstrap entries (nodeid -1), the internal :0/internal broker and the
           * logical GroupCoordinator (a second name for a real broker) are not brokers of
           * the cluster. */
          if (stats == NULL || member_int (stats, "nodeid", -1) < 0
              || g_strcmp0 (json_object_get_string_member_with_default (stats, "source", ""),
                            "logical")
                     == 0
              || g_strcmp0 (json_object_get_string_member_with_default (stats, "source", ""),
                            "internal")
                     == 0)
            continue;
          broker.name = g_strdup (b->data);
          broker.node_id = (gint32)member_int (stats, "nodeid", -1);
          broker.up
              = strcmp (json_object_get_string_member_with_default (stats, "state", ""), "UP") == 0;
          rtt = json_object_has_member (stats, "rtt") ? json_object_get_object_member (stats, "rtt")
                                                      : NULL;
          broker.rtt_avg_us = rtt != NULL ? member_int (rtt, "avg", 0) : 0;
          broker.tx_errors = (guint64)MAX (member_int (stats, "txerrs", 0), 0);
          broker.rx_errors = (guint64)MAX (member_int (stats, "rxerrs", 0), 0);
          broker.request_timeouts = (guint64)MAX (member_int (stats, "req_timeouts", 0), 0);
          g_array_append_val (new_brokers, broker);
        }
    }
  g_mutex_lock (&metrics->lock);
  g_array_unref (metrics->brokers);
  metrics->brokers = g_steal_pointer (&new_brokers);
  g_mutex_unlock (&metrics->lock);
  ADD (&metrics->counters[TALLY_METRICS_STATISTICS], 1);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * Readiness
 * ------------------------------------------------------------------------------------- */

void
tally_metrics_set_state (TallyMetrics *metrics, guint assigned, gboolean restoring, guint broken,
                         gboolean consuming)
{
  STORE (&metrics->assigned, assigned);
  STORE (&metrics->restoring, restoring ? 1 : 0);
  STORE (&metrics->broken, broken);
  STORE (&metrics->consuming, consuming ? 1 : 0);
  if (tally_metrics_is_ready (metrics, NULL)
      && g_atomic_int_compare_and_exchange (&metrics->was_ready, 0, 1)
      && metrics->ready_func != NULL)
    metrics->ready_func (metrics->ready_data);
}

gboolean
tally_metrics_is_ready (TallyMetrics *metrics, char **reason)
{
  guint assigned = LOAD (&metrics->assigned);
  guint broken = LOAD (&metrics->broken);
  char *why;
  gboolean ready = FALSE;

  if (!LOAD (&metrics->consuming))
    why = g_strdup ("not consuming (starting or stopping)");
  else if (LOAD (&metrics->restoring))
    why = g_strdup ("restoring stores from the changelog");
  else if (assigned == 0)
    why = g_strdup ("no partitions assigned");
  else if (broken > 0)
    why = g_strdup_printf ("%u store(s) could not be restored; their partitions are paused",
                           broken);
  else
    {
      why = g_strdup_printf ("ready: %u partition(s) assigned, restored and consumed", assigned);
      ready = TRUE;
    }
  if (reason != NULL)
    *reason = why;
  else
    g_free (why);
  return ready;
}

void
tally_metrics_set_ready_func (TallyMetrics *metrics, TallyMetricsReadyFunc func, gpointer user_data)
{
  metrics->ready_func = func;
  metrics->ready_data = user_data;
}

/* ---------------------------------------------------------------------------------------
 * Exposition
 * ------------------------------------------------------------------------------------- */

/* A label value, escaped as the text format says: backslash, double quote, newline. */
static void
append_label_value (GString *out, const char *value)
{
  for (const char *p = value; *p != '\0'; p++)
    switch (*p)
      {
      case '\\':
        g_string_append (out, "\\\\");
        break;
      case '"':
        g_string_append (out, "\\\"");
        break;
      case '\n':
        g_string_append (out, "\\n");
        break;
      default:
        g_string_append_c (out, *p);
      }
}

static void
family (GString *out, const char *name, const char *type, const char *help)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Microseconds as seconds with six decimals ("0.002500"). */
static void
append_seconds (GString *out, guint64 us)
{
  g_string_append_printf (out, "%" G_GUINT64_FORMAT ".%06u", us / 1000000, (guint)(us % 1000000));
}

static gint
compare_partitions (gconstpointer a, gconstpointer b)
{
  const TallyMetricsPartition *x = *(TallyMetricsPartition *const *)a;
  const TallyMetricsPartition *y = *(TallyMetricsPartition *const *)b;
  int c = strcmp (x->topic, y->topic);

  return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static void
partition_labels (GString *out, const char *name, const TallyMetricsPartition *e)
{
  g_string_append_printf (out, "%s{topic=\"", name);
  append_label_value (out, e->topic);
  g_string_append_printf (out, "\",partition=\"%" G_GINT32_FORMAT "\"} ", e->partition);
}

typedef enum
{
  F_RECORDS,
  F_BYTES,
  F_WORDS,
  F_ASSIGNED,
  F_POSITION,
  F_COMMITTED,
  F_LAG,
  F_HI,
} PartitionField;

static void
partition_family (GString *out, GPtrArray *partitions, const char *name, const char *type,
                  const char *help, PartitionField field)
{
  family (out, name, type, help);
  for (guint i = 0; i < partitions->len; i++)
    {
      TallyMetricsPartition *e = g_ptr_array_index (partitions, i);
      gint64 v = 0;

      switch (field)
        {
        case F_RECORDS:
          v = (gint64)LOAD (&e->records);
          break;
        case F_BYTES:
          v = (gint64)LOAD (&e->bytes);
          break;
        case F_WORDS:
          v = (gint64)LOAD (&e->words);
          break;
        case F_ASSIGNED:
          v = LOAD (&e->assigned);
          break;
        case F_POSITION:
          v = LOAD (&e->position);
          break;
        case F_LAG:
          {
            gint64 end = LOAD (&e->end_offset), committed = LOAD (&e->committed);

            /* Statistics a few seconds old may trail the commit: never below 0. */
            v = LOAD (&e->assigned) && end >= 0 && committed >= 0 ? MAX (end - committed, 0) : -1;
          }
          break;
        case F_HI:
          v = LOAD (&e->hi_offset);
          break;
        case F_COMMITTED:
          v = LOAD (&e->committed);
          break;
        }
      /* Unknown offsets and lags are left out rather than shown as -1. */
      if (v < 0 && field >= F_POSITION)
        continue;
      partition_labels (out, name, e);
      g_string_append_printf (out, "%" G_GINT64_FORMAT "\n", v);
    }
}

static void
counter (GString *out, TallyMetrics *metrics, const char *name, const char *help,
         TallyMetricsCounter c)
{
  family (out, name, "counter", help);
  g_string_append_printf (out, "%s %" G_GUINT64_FORMAT "\n", name, LOAD (&metrics->counters[c]));
}

static void
histogram (GString *out, TallyMetrics *metrics, const char *name, const char *help,
           TallyMetricsHistogram which)
{
  Histogram *h = &metrics->histograms[which];
  guint64 cumulative = 0;

  family (out, name, "histogram", help);
  for (guint i = 0; i <= TALLY_METRICS_N_BUCKETS; i++)
    {
      cumulative += LOAD (&h->buckets[i]);
      g_string_append_printf (out, "%s_bucket{le=\"", name);
      if (i < TALLY_METRICS_N_BUCKETS)
        {
          /* Bounds as Prometheus clients print them: "0.005", "1", "2.5". */
          char buf[G_ASCII_DTOSTR_BUF_SIZE];

          g_string_append (out, g_ascii_formatd (buf, sizeof buf, "%g", bucket_us[i] / 1e6));
        }
      else
        g_string_append (out, "+Inf");
      g_string_append_printf (out, "\"} %" G_GUINT64_FORMAT "\n", cumulative);
    }
  g_string_append_printf (out, "%s_sum ", name);
  append_seconds (out, LOAD (&h->sum_us));
  g_string_append_printf (out, "\n%s_count %" G_GUINT64_FORMAT "\n", name, cumulative);
}

static gint
compare_stores (gconstpointer a, gconstpointer b)
{
  guint32 x = ((const TallyMetricsStore *)a)->store, y = ((const TallyMetricsStore *)b)->store;

  return (x > y) - (x < y);
}

void
tally_metrics_write (TallyMetrics *metrics, const TallyMetricsShard *shards, guint n_shards,
                     const TallyMetricsStore *stores, guint n_stores, GString *out)
{
  g_autoptr (GPtrArray) partitions = NULL;
  g_autoptr (GArray) brokers = NULL;
  g_autofree TallyMetricsStore *sorted = NULL;

  g_mutex_lock (&metrics->lock);
  /* Not g_ptr_array_copy(): it would copy the free function too. */
  partitions = g_ptr_array_sized_new (metrics->partitions->len);
  for (guint i = 0; i < metrics->partitions->len; i++)
    g_ptr_array_add (partitions, g_ptr_array_index (metrics->partitions, i));
  brokers = g_array_ref (metrics->brokers); /* replaced, never changed in place */
  g_mutex_unlock (&metrics->lock);
  g_ptr_array_sort (partitions, compare_partitions);

  family (out, "tally_build_info", "gauge", "Tally's version; always 1.");
  g_string_append (out, "tally_build_info{version=\"" TALLY_VERSION "\"} 1\n");
  family (out, "tally_ready", "gauge",
          "1 when partitions are assigned, restored and being consumed (/readyz).");
  g_string_append_printf (out, "tally_ready %d\n", tally_metrics_is_ready (metrics, NULL) ? 1 : 0);

  partition_family (out, partitions, "tally_records_consumed_total", "counter",
                    "Records consumed, per input topic-partition.", F_RECORDS);
  partition_family (out, partitions, "tally_bytes_consumed_total", "counter",
                    "Bytes of record values consumed, per input topic-partition.", F_BYTES);
  partition_family (out, partitions, "tally_words_consumed_total", "counter",
                    "Words counted, per input topic-partition.", F_WORDS);
  partition_family (out, partitions, "tally_partition_assigned", "gauge",
                    "1 while this member owns the input topic-partition.", F_ASSIGNED);
  partition_family (out, partitions, "tally_partition_position_offset", "gauge",
                    "Offset of the next record to count, per owned input topic-partition.",
                    F_POSITION);
  partition_family (out, partitions, "tally_partition_committed_offset", "gauge",
                    "Offset committed for the group with the counts' checkpoint, per owned input "
                    "topic-partition.",
                    F_COMMITTED);
  partition_family (out, partitions, "tally_consumer_lag_records", "gauge",
                    "Records not yet checkpointed: the log end offset of librdkafka's statistics "
                    "(last stable offset) minus the committed offset, per owned input "
                    "topic-partition.",
                    F_LAG);
  partition_family (out, partitions, "tally_partition_high_watermark_offset", "gauge",
                    "High watermark of the input topic-partition, from librdkafka's statistics.",
                    F_HI);

  counter (out, metrics, "tally_invalid_bytes_total", "Input bytes that were not UTF-8 (skipped).",
           TALLY_METRICS_INVALID_BYTES);
  counter (out, metrics, "tally_truncated_words_total",
           "Words longer than max_word_bytes, counted truncated.", TALLY_METRICS_TRUNCATED_WORDS);
  counter (out, metrics, "tally_dropped_words_total",
           "Words longer than max_word_bytes, not counted.", TALLY_METRICS_DROPPED_WORDS);
  counter (out, metrics, "tally_kafka_errors_total",
           "Error events librdkafka reported to the consumer.", TALLY_METRICS_KAFKA_ERRORS);
  counter (out, metrics, "tally_kafka_statistics_total",
           "librdkafka statistics documents parsed (statistics.interval.ms).",
           TALLY_METRICS_STATISTICS);

  family (out, "tally_broker_up", "gauge", "1 when librdkafka's connection to the broker is UP.");
  for (guint i = 0; i < brokers->len; i++)
    {
      Broker *b = &g_array_index (brokers, Broker, i);

      g_string_append (out, "tally_broker_up{broker=\"");
      append_label_value (out, b->name);
      g_string_append_printf (out, "\",node_id=\"%" G_GINT32_FORMAT "\"} %d\n", b->node_id,
                              b->up ? 1 : 0);
    }
  family (out, "tally_broker_rtt_seconds", "gauge",
          "Average round-trip time of the consumer's requests to the broker.");
  for (guint i = 0; i < brokers->len; i++)
    {
      Broker *b = &g_array_index (brokers, Broker, i);

      g_string_append (out, "tally_broker_rtt_seconds{broker=\"");
      append_label_value (out, b->name);
      g_string_append_printf (out, "\",node_id=\"%" G_GINT32_FORMAT "\"} ", b->node_id);
      append_seconds (out, (guint64)MAX (b->rtt_avg_us, 0));
      g_string_append_c (out, '\n');
    }
  family (out, "tally_broker_errors_total", "counter",
          "Transmit, receive and timed-out request errors of the consumer's connection.");
  for (guint i = 0; i < brokers->len; i++)
    {
      Broker *b = &g_array_index (brokers, Broker, i);
      const char *kinds[] = { "rx", "timeout", "tx" };
      guint64 values[] = { b->rx_errors, b->request_timeouts, b->tx_errors };

      for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
        {
          g_string_append (out, "tally_broker_errors_total{broker=\"");
          append_label_value (out, b->name);
          g_string_append_printf (
              out, "\",node_id=\"%" G_GINT32_FORMAT "\",kind=\"%s\"} %" G_GUINT64_FORMAT "\n",
              b->node_id, kinds[k], values[k]);
        }
    }

  family (out, "tally_mailbox_depth_messages", "gauge", "Messages waiting in a shard's mailbox.");
  for (guint i = 0; i < n_shards; i++)
    g_string_append_printf (out, "tally_mailbox_depth_messages{shard=\"%u\"} %u\n", i,
                            shards[i].depth);
  family (out, "tally_mailbox_capacity_messages", "gauge", "Capacity of a shard's mailbox.");
  for (guint i = 0; i < n_shards; i++)
    g_string_append_printf (out, "tally_mailbox_capacity_messages{shard=\"%u\"} %u\n", i,
                            shards[i].capacity);
  family (out, "tally_shard_up", "gauge",
          "1 when the shard answered this scrape's ask within the health bound.");
  for (guint i = 0; i < n_shards; i++)
    g_string_append_printf (out, "tally_shard_up{shard=\"%u\"} %d\n", i,
                            shards[i].answered ? 1 : 0);
  counter (out, metrics, "tally_mailbox_full_total",
           "Times a shard mailbox was full and the source stopped polling.",
           TALLY_METRICS_MAILBOX_FULL);
  counter (out, metrics, "tally_partitions_paused_total",
           "Times the input partitions were paused because the shards fell behind.",
           TALLY_METRICS_PAUSES);
  family (out, "tally_backpressure_seconds_total", "counter",
          "Time the source spent stopped by full shard mailboxes.");
  g_string_append (out, "tally_backpressure_seconds_total ");
  append_seconds (out, LOAD (&metrics->counters[TALLY_METRICS_BACKPRESSURE_US]));
  g_string_append_c (out, '\n');

  family (out, "tally_store_distinct_words", "gauge",
          "Distinct words in a store (one per input partition number), over all shards.");
  if (n_stores > 0)
    {
      sorted = g_memdup2 (stores, n_stores * sizeof *stores);
      qsort (sorted, n_stores, sizeof *sorted,
             (int (*) (const void *, const void *))compare_stores);
    }
  for (guint i = 0; i < n_stores; i++)
    g_string_append_printf (out, "tally_store_distinct_words{store=\"%u\"} %" G_GUINT64_FORMAT "\n",
                            sorted[i].store, sorted[i].words);

  histogram (out, metrics, "tally_checkpoint_duration_seconds",
             "Duration of a checkpoint: flush, changelog write and acknowledgement or commit.",
             TALLY_METRICS_CHECKPOINT_SECONDS);
  counter (out, metrics, "tally_checkpoint_failures_total", "Checkpoints that did not complete.",
           TALLY_METRICS_CHECKPOINT_FAILURES);
  counter (out, metrics, "tally_transactions_committed_total",
           "Exactly-once checkpoint transactions committed.", TALLY_METRICS_TRANSACTIONS_COMMITTED);
  counter (out, metrics, "tally_transactions_aborted_total",
           "Exactly-once checkpoint transactions aborted.", TALLY_METRICS_TRANSACTIONS_ABORTED);

  counter (out, metrics, "tally_snapshot_requests_total",
           "Snapshots asked for: request records, SIGUSR1, the interval timer, shutdown.",
           TALLY_METRICS_SNAPSHOT_REQUESTS);
  counter (out, metrics, "tally_snapshot_failures_total", "Snapshots not published.",
           TALLY_METRICS_SNAPSHOT_FAILURES);
  histogram (out, metrics, "tally_snapshot_duration_seconds",
             "Duration of a snapshot from trigger to the last part's delivery report.",
             TALLY_METRICS_SNAPSHOT_SECONDS);
  counter (out, metrics, "tally_snapshot_bytes_total", "Bytes of snapshot record values published.",
           TALLY_METRICS_SNAPSHOT_BYTES);
  counter (out, metrics, "tally_snapshot_parts_total", "Snapshot records (parts) published.",
           TALLY_METRICS_SNAPSHOT_PARTS);

  family (out, "tally_rebalances_total", "counter",
          "Rebalance events of the consumer group member, by kind.");
  g_string_append_printf (out,
                          "tally_rebalances_total{kind=\"assign\"} %" G_GUINT64_FORMAT "\n"
                          "tally_rebalances_total{kind=\"error\"} %" G_GUINT64_FORMAT "\n"
                          "tally_rebalances_total{kind=\"revoke\"} %" G_GUINT64_FORMAT "\n",
                          LOAD (&metrics->counters[TALLY_METRICS_REBALANCE_ASSIGNS]),
                          LOAD (&metrics->counters[TALLY_METRICS_REBALANCE_ERRORS]),
                          LOAD (&metrics->counters[TALLY_METRICS_REBALANCE_REVOKES]));
  histogram (out, metrics, "tally_restore_duration_seconds",
             "Duration of restoring the stores of one assignment from the changelog.",
             TALLY_METRICS_RESTORE_SECONDS);
}
