/* tally-rdkafka-plugin.c — the librdkafka plugin: Tally's word counting inside any consumer.
 *
 * librdkafka loads this module when a configuration sets `plugin.library.paths` and calls
 * conf_init(), which registers configuration interceptors named "tally": on_conf_set
 * validates the `tally.*` properties and reads the key-file (config/), on_conf_dup and
 * on_conf_destroy copy and free them, on_new attaches a Plugin to each consumer.
 *
 * A Plugin owns aggregator shards, a tokenizer and one batcher per partition used on the
 * host's threads inside on_consume (under `lock`; the host never waits for Tally: a full
 * mailbox drops the record or waits `tally.full.wait.ms`, and drops are counted), and an
 * arbiter thread with the publisher and the snapshot coordinator, the same one `tally run`
 * uses. Its only part of a snapshot is the cut (plugin_cut_async()). on_destroy publishes
 * the final snapshot and stops everything.
 *
 * Linked with -z nodelete: librdkafka dlclose()s plugins while GLib types and threads of
 * theirs are still alive.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-rdkafka-plugin.h"

#include "tally-aggregator-handle.h"
#include "tally-config.h"
#include "tally-metrics-server.h"
#include "tally-publisher.h"
#include "tally-snapshot-coordinator.h"
#include "tally-source.h"
#include "tally-tokenizer.h"

#include <string.h>

/* clang-format off */ G_DEFINE_QUARK (tally-rdkafka-plugin-error-quark, tally_rdkafka_plugin_error) /* clang-format on */

/* The interceptors' name (librdkafka refuses a second one of the same name). */
#define IC_NAME "tally"
/* Words pending in the batchers before the host's thread flushes them. */
#define FLUSH_WORDS 4096
/* The arbiter's tick: flushes what the host left pending, retries blocked batches. */
#define TICK_MS 100
/* Dropped records are logged at most this often while they grow. */
#define DROP_REPORT_MS 10000
/* A snapshot waiting for room in a full mailbox tries again after this long. */
#define RETRY_CUT_MS 2
/* The publisher is restarted at most this many times within the period, then given up. */
#define PUBLISHER_MAX_RESTARTS 5
#define PUBLISHER_RESTART_PERIOD_MS 60000
/* How long creating the request reader may wait for the topic's metadata. */
#define READER_TIMEOUT_MS 10000
#define DEFAULT_FULL_WAIT_MS 100
#define MAX_FULL_WAIT_MS 60000

typedef enum
{
  FULL_DROP,
  FULL_WAIT,
} FullPolicy;

/* ---------------------------------------------------------------------------------------
 * Per configuration: the `tally.*` properties
 * ------------------------------------------------------------------------------------- */

/* The key-file overrides: property -> [group] key, validated by config/. */
static const struct
{
  const char *property;
  const char *group;
  const char *key;
} overrides[] = {
  { TALLY_RDKAFKA_PLUGIN_PROP_OUTPUT_TOPIC, "output", "topic" },
  { TALLY_RDKAFKA_PLUGIN_PROP_REQUESTS_TOPIC, "requests", "topic" },
  { TALLY_RDKAFKA_PLUGIN_PROP_TOKENIZER, "tokenizer", "mode" },
  { TALLY_RDKAFKA_PLUGIN_PROP_SHARDS, "aggregator", "shards" },
  { TALLY_RDKAFKA_PLUGIN_PROP_METRICS_LISTEN, "metrics", "listen" },
};

#define KNOWN_PROPERTIES                                                                           \
  TALLY_RDKAFKA_PLUGIN_PROP_CONFIG                                                                 \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_OUTPUT_TOPIC ", " TALLY_RDKAFKA_PLUGIN_PROP_REQUESTS_TOPIC        \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_TOKENIZER ", " TALLY_RDKAFKA_PLUGIN_PROP_SHARDS                   \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_FULL ", " TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS                  \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_METRICS_LISTEN

typedef struct
{
  char *config_path; /* tally.config, NULL when unset */
  char *config_text; /* the key-file's text as read when tally.config was set */
  char *override_values[G_N_ELEMENTS (overrides)];
  FullPolicy full;
  guint full_wait_ms;
} PluginConf;

/* Set by on_conf_dup() for the conf it just equipped: librdkafka's copy then loads the
 * plugin into it again, which conf_init() must accept rather than call a double load. */
static _Thread_local rd_kafka_conf_t *conf_being_copied;

static PluginConf *
plugin_conf_new (void)
{
  PluginConf *pc = g_new0 (PluginConf, 1);

  pc->full = FULL_DROP;
  pc->full_wait_ms = DEFAULT_FULL_WAIT_MS;
  return pc;
}

static void
plugin_conf_free (PluginConf *pc)
{
  if (pc == NULL)
    return;
  g_free (pc->config_path);
  g_free (pc->config_text);
  for (guint i = 0; i < G_N_ELEMENTS (overrides); i++)
    g_free (pc->override_values[i]);
  g_free (pc);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (PluginConf, plugin_conf_free)

static gboolean
filtered (const char *name, size_t filter_cnt, const char **filter)
{
  for (size_t i = 0; i < filter_cnt; i++)
    if (g_str_has_prefix (name, filter[i]))
      return TRUE;
  return FALSE;
}

/* A copy of @pc without the properties a rd_kafka_conf_dup_filter() filter names. */
static PluginConf *
plugin_conf_copy (const PluginConf *pc, size_t filter_cnt, const char **filter)
{
  PluginConf *copy = plugin_conf_new ();

  if (!filtered (TALLY_RDKAFKA_PLUGIN_PROP_CONFIG, filter_cnt, filter))
    {
      copy->config_path = g_strdup (pc->config_path);
      copy->config_text = g_strdup (pc->config_text);
    }
  for (guint i = 0; i < G_N_ELEMENTS (overrides); i++)
    if (!filtered (overrides[i].property, filter_cnt, filter))
      copy->override_values[i] = g_strdup (pc->override_values[i]);
  if (!filtered (TALLY_RDKAFKA_PLUGIN_PROP_FULL, filter_cnt, filter))
    copy->full = pc->full;
  if (!filtered (TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS, filter_cnt, filter))
    copy->full_wait_ms = pc->full_wait_ms;
  return copy;
}

/* Builds the effective TallyConfig: the key-file text (or nothing), with the overrides set
 * in their groups, validated by config/ exactly as `tally run` validates its file; an error
 * names the file's line or the property. */
static TallyConfig *
plugin_conf_load (const PluginConf *pc, GError **error)
{
  TallyConfigOverride set[G_N_ELEMENTS (overrides)];
  guint n = 0;

  /* An error about an override names the property itself (its origin). */
  for (guint i = 0; i < G_N_ELEMENTS (overrides); i++)
    if (pc->override_values[i] != NULL)
      set[n++] = (TallyConfigOverride){ overrides[i].group, overrides[i].key,
                                        pc->override_values[i], overrides[i].property };
  return tally_config_load_from_data_with_overrides (
      pc->config_text != NULL ? pc->config_text : "", -1,
      pc->config_path != NULL ? pc->config_path : "<tally.* properties>", set, n, error);
}

/* tally.config: read and validate the file now, so the error is the property's. */
static gboolean
set_config_path (PluginConf *pc, const char *value, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (TallyConfig) config = NULL;

  if (value == NULL)
    {
      g_clear_pointer (&pc->config_path, g_free);
      g_clear_pointer (&pc->config_text, g_free);
      return TRUE;
    }
  if (!g_file_get_contents (value, &text, NULL, &local_error))
    {
      g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_KEY_FILE, "%s",
                   local_error->message);
      return FALSE;
    }
  config = tally_config_load_from_data (text, -1, value, &local_error);
  if (config == NULL)
    {
      g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_KEY_FILE, "%s",
                   local_error->message);
      return FALSE;
    }
  /* Setting it would load plugins into the plugin's own clients: recursion. */
  if (tally_config_kafka_get (config, "plugin.library.paths") != NULL)
    {
      g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_KEY_FILE,
                   "%s: [kafka] plugin.library.paths must not be set: the plugin's own "
                   "clients never load plugins",
                   value);
      return FALSE;
    }
  g_free (pc->config_path);
  pc->config_path = g_strdup (value);
  g_free (pc->config_text);
  pc->config_text = g_steal_pointer (&text);
  return TRUE;
}

/* An override is checked on its own, on top of an empty key-file, by config/'s
 * validation. */
static gboolean
set_override (PluginConf *pc, guint index, const char *value, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  TallyConfigOverride set;

  if (value == NULL)
    {
      g_clear_pointer (&pc->override_values[index], g_free);
      return TRUE;
    }
  set = (TallyConfigOverride){ overrides[index].group, overrides[index].key, value,
                               overrides[index].property };
  config = tally_config_load_from_data_with_overrides ("", 0, overrides[index].property, &set, 1,
                                                       &local_error);
  if (config == NULL)
    {
      g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_INVALID_VALUE,
                   "%s", local_error->message);
      return FALSE;
    }
  g_free (pc->override_values[index]);
  pc->override_values[index] = g_strdup (value);
  return TRUE;
}

static gboolean
plugin_conf_set (PluginConf *pc, const char *name, const char *value, GError **error)
{
  if (strcmp (name, TALLY_RDKAFKA_PLUGIN_PROP_CONFIG) == 0)
    return set_config_path (pc, value, error);

  for (guint i = 0; i < G_N_ELEMENTS (overrides); i++)
    if (strcmp (name, overrides[i].property) == 0)
      return set_override (pc, i, value, error);

  if (strcmp (name, TALLY_RDKAFKA_PLUGIN_PROP_FULL) == 0)
    {
      if (value == NULL || strcmp (value, "drop") == 0)
        pc->full = FULL_DROP;
      else if (strcmp (value, "wait") == 0)
        pc->full = FULL_WAIT;
      else
        {
          g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_INVALID_VALUE,
                       "expected \"drop\" or \"wait\", not \"%s\"", value);
          return FALSE;
        }
      return TRUE;
    }

  if (strcmp (name, TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS) == 0)
    {
      guint64 ms = DEFAULT_FULL_WAIT_MS;

      if (value != NULL && !g_ascii_string_to_unsigned (value, 10, 0, MAX_FULL_WAIT_MS, &ms, NULL))
        {
          g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_INVALID_VALUE,
                       "expected milliseconds from 0 to %u, not \"%s\"", MAX_FULL_WAIT_MS, value);
          return FALSE;
        }
      pc->full_wait_ms = (guint)ms;
      return TRUE;
    }

  g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_UNKNOWN_PROPERTY,
               "unknown property of the Tally plugin (known: " KNOWN_PROPERTIES ")");
  return FALSE;
}

/* ---------------------------------------------------------------------------------------
 * Per consumer: the Plugin
 * ------------------------------------------------------------------------------------- */

/* The next offset to consume of one topic-partition; also the hash table's key. */
typedef struct
{
  char *topic;
  gint32 partition;
  gint64 next_offset;
  TallyMetricsPartition *metrics; /* NULL without tally.metrics.listen */
} Position;

typedef struct
{
  gint ref_count;   /* atomic */
  char *name;       /* the host client's client.id, for logs */
  rd_kafka_t *host; /* the host consumer; valid until on_destroy() returns */
  TallyConfig *config;
  FullPolicy full;
  guint full_wait_ms;

  TallyAggregatorHandle *handle;
  TallyArbiter *arbiter;
  TallyAddress *publisher;
  TallySupervisor *supervisor;         /* the publisher's */
  TallySnapshotCoordinator *snapshots; /* on the arbiter; NULL after on_destroy() */
  rd_kafka_conf_t *reader_conf;        /* consumed on the arbiter when the reader starts */
  gint64 created_ms;
  GSource *tick;

  /* Arbiter thread only. */
  gint64 last_drop_report_us;

  /* Under lock: the host's threads (on_consume) and the arbiter. */
  GMutex lock;
  TallyTokenizer *tokenizer;
  GHashTable *batchers;  /* partition -> TallyWordBatcher */
  GHashTable *positions; /* Position -> itself */
  TallyMetrics *metrics; /* with tally.metrics.listen only; served by metrics_server */
  TallyMetricsServer *metrics_server;
  gsize unflushed_words;
  gboolean blocked; /* a flush was refused: a mailbox is full */
  gboolean closing; /* on_destroy began: records are no longer counted */
  guint64 records;
  guint64 words;
  guint64 dropped_records;
  guint64 dropped_reported;
} Plugin;

static guint
position_hash (gconstpointer p)
{
  const Position *pos = p;

  return g_str_hash (pos->topic) * 31u + (guint)pos->partition;
}

static gboolean
position_equal (gconstpointer a, gconstpointer b)
{
  const Position *x = a, *y = b;

  return x->partition == y->partition && strcmp (x->topic, y->topic) == 0;
}

static void
position_free (gpointer p)
{
  Position *pos = p;

  g_free (pos->topic);
  g_free (pos);
}

static Plugin *
plugin_ref (Plugin *plugin)
{
  g_atomic_int_inc (&plugin->ref_count);
  return plugin;
}

static void
plugin_unref (Plugin *plugin)
{
  if (!g_atomic_int_dec_and_test (&plugin->ref_count))
    return;
  /* Everything with a thread was stopped by on_destroy(). */
  g_clear_pointer (&plugin->tick, g_source_unref);
  g_clear_pointer (&plugin->handle, tally_aggregator_handle_unref);
  g_clear_pointer (&plugin->publisher, tally_address_unref);
  g_clear_object (&plugin->supervisor);
  g_clear_pointer (&plugin->arbiter, tally_arbiter_unref);
  g_clear_pointer (&plugin->reader_conf, rd_kafka_conf_destroy);
  g_clear_pointer (&plugin->batchers, g_hash_table_unref);
  g_clear_pointer (&plugin->positions, g_hash_table_unref);
  g_clear_pointer (&plugin->metrics, tally_metrics_unref);
  g_clear_pointer (&plugin->tokenizer, tally_tokenizer_free);
  g_clear_pointer (&plugin->config, tally_config_free);
  g_mutex_clear (&plugin->lock);
  g_free (plugin->name);
  g_free (plugin);
}

/* Flushes every batcher without blocking. Lock held. Sets `blocked` when a mailbox is
 * full (the batch stays pending). */
static gboolean
flush_locked (Plugin *plugin, GError **error)
{
  GHashTableIter iter;
  gpointer value;
  gboolean ok = TRUE;

  g_hash_table_iter_init (&iter, plugin->batchers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      g_autoptr (GError) local_error = NULL;

      if (!tally_word_batcher_flush (value, FALSE, &local_error))
        {
          if (ok)
            g_propagate_error (error, g_steal_pointer (&local_error));
          ok = FALSE;
        }
    }
  plugin->blocked = !ok;
  if (ok)
    plugin->unflushed_words = 0;
  return ok;
}

/* The record must wait for room: retry the flush as `tally.full` says. Lock held. */
static gboolean
make_room_locked (Plugin *plugin)
{
  gint64 deadline;

  if (flush_locked (plugin, NULL))
    return TRUE;
  if (plugin->full == FULL_DROP || plugin->full_wait_ms == 0)
    return FALSE;
  deadline = g_get_monotonic_time () + (gint64)plugin->full_wait_ms * G_TIME_SPAN_MILLISECOND;
  for (;;)
    {
      gint64 left = deadline - g_get_monotonic_time ();

      if (left <= 0)
        return FALSE;
      /* Let the arbiter (a snapshot, the tick) in while this thread waits. */
      g_mutex_unlock (&plugin->lock);
      g_usleep (MIN (left, 1000));
      g_mutex_lock (&plugin->lock);
      if (plugin->closing)
        return FALSE;
      if (!plugin->blocked || flush_locked (plugin, NULL))
        return TRUE;
    }
}

static void
on_word (const char *word, gsize len, gpointer user_data)
{
  tally_word_batcher_add (user_data, word, len);
}

static Position *
note_position_locked (Plugin *plugin, const char *topic, gint32 partition, gint64 offset)
{
  Position key = { (char *)topic, partition, 0 };
  Position *pos = g_hash_table_lookup (plugin->positions, &key);

  if (pos == NULL)
    {
      pos = g_new0 (Position, 1);
      pos->topic = g_strdup (topic);
      pos->partition = partition;
      if (plugin->metrics != NULL)
        pos->metrics = tally_metrics_partition (plugin->metrics, topic, partition);
      g_hash_table_add (plugin->positions, pos);
    }
  pos->next_offset = offset + 1;
  return pos;
}

/* on_consume: the host's thread, inside its poll. Never blocks on the shards. */
static rd_kafka_resp_err_t
on_consume (rd_kafka_t *rk, rd_kafka_message_t *m, void *ic_opaque)
{
  Plugin *plugin = ic_opaque;
  const char *topic;
  TallyWordBatcher *batcher;
  Position *pos;
  gsize n = 0;

  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR || m->rkt == NULL || m->partition < 0)
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  topic = rd_kafka_topic_name (m->rkt);

  g_mutex_lock (&plugin->lock);
  if (plugin->closing)
    goto out;
  if (plugin->blocked && !make_room_locked (plugin))
    {
      plugin->dropped_records++;
      goto out;
    }
  batcher = g_hash_table_lookup (plugin->batchers, GINT_TO_POINTER (m->partition));
  if (batcher == NULL)
    {
      batcher = tally_word_batcher_new (plugin->handle, (guint32)m->partition);
      g_hash_table_insert (plugin->batchers, GINT_TO_POINTER (m->partition), batcher);
    }
  /* A null or empty value has no words; any bytes are safe to feed. */
  if (m->payload != NULL && m->len > 0)
    {
      n = tally_tokenizer_feed (plugin->tokenizer, m->payload, m->len, on_word, batcher);
      plugin->unflushed_words += n;
      plugin->words += n;
    }
  pos = note_position_locked (plugin, topic, m->partition, m->offset);
  if (pos->metrics != NULL)
    {
      tally_metrics_partition_add_record (pos->metrics, m->len, n);
      tally_metrics_partition_set_position (pos->metrics, TRUE, pos->next_offset, -1);
    }
  plugin->records++;
  if (plugin->unflushed_words >= FLUSH_WORDS)
    flush_locked (plugin, NULL);
out:
  g_mutex_unlock (&plugin->lock);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ---------------------------------------------------------------------------------------
 * The cut, on the arbiter: this module's part of the snapshot coordinator
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  Plugin *plugin;                            /* ref */
  rd_kafka_topic_partition_list_t *assigned; /* the host's assignment; NULL: none known */
  rd_kafka_topic_partition_list_t *offsets;
  gint64 cut_us;
  TallyCountsOptions options; /* the request's filters (all zero: none), owned */
} CutData;

static void
cut_data_free (gpointer data)
{
  CutData *cut = data;

  if (cut->assigned != NULL)
    rd_kafka_topic_partition_list_destroy (cut->assigned);
  if (cut->offsets != NULL)
    rd_kafka_topic_partition_list_destroy (cut->offsets);
  tally_counts_options_clear (&cut->options);
  plugin_unref (cut->plugin);
  g_free (cut);
}

static void
log_drops (Plugin *plugin, gboolean final)
{
  guint64 dropped, records, words;

  g_mutex_lock (&plugin->lock);
  dropped = plugin->dropped_records;
  records = plugin->records;
  words = plugin->words;
  if (!final && dropped == plugin->dropped_reported)
    {
      g_mutex_unlock (&plugin->lock);
      return;
    }
  plugin->dropped_reported = dropped;
  g_mutex_unlock (&plugin->lock);

  if (dropped > 0)
    g_warning ("tally plugin (%s): %" G_GUINT64_FORMAT " record(s) dropped so far because "
               "the aggregators' mailboxes were full (tally.full); %" G_GUINT64_FORMAT
               " record(s), %" G_GUINT64_FORMAT " word(s) counted",
               plugin->name, dropped, records, words);
  else if (final)
    g_message ("tally plugin (%s): %" G_GUINT64_FORMAT " record(s), %" G_GUINT64_FORMAT
               " word(s) counted, 0 records dropped",
               plugin->name, records, words);
}

static rd_kafka_topic_partition_list_t *
positions_to_list_locked (Plugin *plugin)
{
  rd_kafka_topic_partition_list_t *list
      = rd_kafka_topic_partition_list_new ((int)g_hash_table_size (plugin->positions));
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, plugin->positions);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      Position *pos = key;

      rd_kafka_topic_partition_list_add (list, pos->topic, pos->partition)->offset
          = pos->next_offset;
    }
  return list;
}

/* The partitions assigned to the host consumer now; NULL when it has none or no group
 * (rd_kafka_assignment() needs one). Arbiter thread, outside the lock: librdkafka answers
 * from the host client's own main thread (an op on its consumer group queue), never from
 * a thread of the host program, so this waits for no poll of the host. */
static rd_kafka_topic_partition_list_t *
host_assignment (Plugin *plugin)
{
  rd_kafka_topic_partition_list_t *assigned = NULL;
  rd_kafka_resp_err_t err = rd_kafka_assignment (plugin->host, &assigned);

  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_debug ("tally plugin (%s): no assignment to cover: %s", plugin->name,
               rd_kafka_err2str (err));
      return NULL;
    }
  if (assigned != NULL && assigned->cnt == 0)
    g_clear_pointer (&assigned, rd_kafka_topic_partition_list_destroy);
  return assigned;
}

/* Adds to @offsets, without an offset (RD_KAFKA_OFFSET_INVALID: the publisher leaves it out
 * of "offsets" and lists it in "partitions"), each partition of @assigned it lacks: the
 * plugin has counted no record of those. */
static void
cover_assigned (rd_kafka_topic_partition_list_t *offsets,
                const rd_kafka_topic_partition_list_t *assigned)
{
  for (int i = 0; assigned != NULL && i < assigned->cnt; i++)
    {
      const rd_kafka_topic_partition_t *tp = &assigned->elems[i];

      if (rd_kafka_topic_partition_list_find (offsets, tp->topic, tp->partition) == NULL)
        rd_kafka_topic_partition_list_add (offsets, tp->topic, tp->partition)->offset
            = RD_KAFKA_OFFSET_INVALID;
    }
}

static rd_kafka_topic_partition_list_t *
partitions_of (const rd_kafka_topic_partition_list_t *offsets)
{
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new (offsets->cnt);

  for (int i = 0; i < offsets->cnt; i++)
    rd_kafka_topic_partition_list_add (list, offsets->elems[i].topic, offsets->elems[i].partition);
  return list;
}

static void
on_counts (GObject *object, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  CutData *data = g_task_get_task_data (task);
  GError *error = NULL;
  TallyCounts *counts;
  TallySnapshotCut *cut;

  counts = tally_aggregator_handle_get_counts_finish (data->plugin->handle, result, &error);
  if (counts == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  cut = g_new0 (TallySnapshotCut, 1);
  cut->counts = counts;
  cut->offsets = g_steal_pointer (&data->offsets);
  cut->partitions = partitions_of (cut->offsets);
  cut->taken_ms = (g_get_monotonic_time () - data->cut_us) / 1000;
  g_task_return_pointer (task, cut, (GDestroyNotify)tally_snapshot_cut_free);
}

static gboolean try_cut (gpointer user_data);

static gboolean
retry_cut (gpointer user_data)
{
  try_cut (user_data);
  return G_SOURCE_REMOVE;
}

/* The barrier: flush, note the positions and ask the shards, all under the lock, so the
 * counts are exactly those of the records up to the positions (mailboxes are FIFO).
 * Takes the reference to @user_data (a GTask). */
static gboolean
try_cut (gpointer user_data)
{
  GTask *task = user_data;
  CutData *data = g_task_get_task_data (task);
  Plugin *plugin = data->plugin;
  GError *error = NULL;

  g_mutex_lock (&plugin->lock);
  if (!flush_locked (plugin, &error))
    {
      g_mutex_unlock (&plugin->lock);
      if (g_error_matches (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL))
        {
          GSource *source = g_timeout_source_new (RETRY_CUT_MS);

          g_error_free (error);
          g_source_set_callback (source, retry_cut, task, NULL);
          g_source_attach (source, tally_arbiter_get_context (plugin->arbiter));
          g_source_unref (source);
        }
      else
        {
          g_task_return_error (task, error);
          g_object_unref (task);
        }
      return G_SOURCE_REMOVE;
    }
  data->offsets = positions_to_list_locked (plugin);
  cover_assigned (data->offsets, data->assigned);
  data->cut_us = g_get_monotonic_time ();
  tally_aggregator_handle_get_counts_async (plugin->handle, &data->options, NULL, on_counts, task);
  g_mutex_unlock (&plugin->lock);
  return G_SOURCE_REMOVE;
}

static void
plugin_cut_async (gpointer cutter_data, gboolean final, const TallyCountsOptions *options,
                  GAsyncReadyCallback callback, gpointer user_data)
{
  Plugin *plugin = cutter_data;
  GTask *task = g_task_new (NULL, NULL, callback, user_data);
  CutData *data = g_new0 (CutData, 1);

  data->plugin = plugin_ref (plugin);
  tally_counts_options_copy (options, &data->options);
  /* The final snapshot comes after the host closed its consumer: nothing is assigned, and
   * librdkafka is shutting the client down, so it is not asked. */
  if (!final)
    data->assigned = host_assignment (plugin);
  g_task_set_task_data (task, data, cut_data_free);
  try_cut (task);
}

static TallySnapshotCut *
plugin_cut_finish (gpointer cutter_data, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const TallySnapshotCutter plugin_cutter = { plugin_cut_async, plugin_cut_finish };

static gboolean
on_tick (gpointer user_data)
{
  Plugin *plugin = user_data;
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&plugin->lock);
  if (plugin->unflushed_words > 0 || plugin->blocked)
    flush_locked (plugin, NULL);
  /* The plugin sees no assignment: ready once it counts records of some partition. */
  if (plugin->metrics != NULL)
    {
      TallyTokenizerStats stats;

      tally_tokenizer_get_stats (plugin->tokenizer, &stats);
      tally_metrics_set_total (plugin->metrics, TALLY_METRICS_INVALID_BYTES, stats.invalid_bytes);
      tally_metrics_set_total (plugin->metrics, TALLY_METRICS_TRUNCATED_WORDS, stats.truncated);
      tally_metrics_set_total (plugin->metrics, TALLY_METRICS_DROPPED_WORDS, stats.dropped);
      tally_metrics_set_state (plugin->metrics, g_hash_table_size (plugin->positions), FALSE, 0,
                               !plugin->closing);
    }
  g_mutex_unlock (&plugin->lock);
  if (now - plugin->last_drop_report_us >= DROP_REPORT_MS * G_TIME_SPAN_MILLISECOND)
    {
      plugin->last_drop_report_us = now;
      log_drops (plugin, FALSE);
    }
  return G_SOURCE_CONTINUE;
}

/* The arbiter's part of the start: the request reader may wait for metadata. */
static gboolean
start_on_arbiter (gpointer user_data)
{
  Plugin *plugin = user_data;
  g_autoptr (GError) error = NULL;

  if (!tally_snapshot_coordinator_read_requests (
          plugin->snapshots, g_steal_pointer (&plugin->reader_conf), plugin->config->requests.topic,
          plugin->created_ms, READER_TIMEOUT_MS, &error))
    g_warning ("tally plugin (%s): snapshot requests on %s will not be answered: %s (the "
               "plugin creates no topic: create it, then this client again; docs/plugin.md)",
               plugin->name, plugin->config->requests.topic, error->message);
  return G_SOURCE_REMOVE;
}

/* ---------------------------------------------------------------------------------------
 * Attaching to a client
 * ------------------------------------------------------------------------------------- */

/* Host properties the plugin's own clients share: where the cluster is and how to reach
 * it securely. Everything else of the host (group, callbacks, tuning) stays the host's. */
static const char *const shared_prefixes[] = {
  "metadata.broker.list",
  "bootstrap.servers",
  "security.protocol",
  "ssl.",
  "ssl_",
  "sasl.",
  "enable.ssl.",
  "broker.address.family",
  "client.dns.lookup",
  "socket.",
  "api.version.",
  "broker.version.fallback",
};

static gboolean
is_shared (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (shared_prefixes); i++)
    if (g_str_has_prefix (name, shared_prefixes[i]))
      return TRUE;
  return FALSE;
}

/* The base configuration of the plugin's clients: the host's connection properties that
 * differ from librdkafka's defaults, then the key-file's [kafka] group. No plugins. */
static rd_kafka_conf_t *
make_client_conf (const rd_kafka_conf_t *host_conf, const TallyConfig *config, GError **error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_conf_t *defaults = rd_kafka_conf_new ();
  g_autoptr (GHashTable) default_values = g_hash_table_new (g_str_hash, g_str_equal);
  const char **host, **def;
  size_t n_host, n_def;
  g_autoptr (GError) local_error = NULL;

  def = rd_kafka_conf_dump (defaults, &n_def);
  for (size_t i = 0; i + 1 < n_def; i += 2)
    g_hash_table_insert (default_values, (gpointer)def[i], (gpointer)def[i + 1]);
  host = rd_kafka_conf_dump ((rd_kafka_conf_t *)host_conf, &n_host);
  for (size_t i = 0; i + 1 < n_host; i += 2)
    {
      const char *value = g_hash_table_lookup (default_values, host[i]);

      if (!is_shared (host[i]) || host[i + 1] == NULL || g_strcmp0 (value, host[i + 1]) == 0)
        continue;
      /* Values librdkafka cannot take back as text (pointers) are skipped. */
      rd_kafka_conf_set (conf, host[i], host[i + 1], NULL, 0);
    }
  rd_kafka_conf_dump_free (host, n_host);
  rd_kafka_conf_dump_free (def, n_def);
  rd_kafka_conf_destroy (defaults);

  if (!tally_config_apply_kafka (config, conf, &local_error))
    {
      g_set_error (error, TALLY_RDKAFKA_PLUGIN_ERROR, TALLY_RDKAFKA_PLUGIN_ERROR_CLIENT, "%s",
                   local_error->message);
      rd_kafka_conf_destroy (conf);
      return NULL;
    }
  return conf;
}

static rd_kafka_resp_err_t
on_destroy (rd_kafka_t *rk, void *ic_opaque)
{
  Plugin *plugin = ic_opaque;
  gint64 start_us = g_get_monotonic_time ();
  TallySnapshotCoordinator *snapshots;

  /* After start_on_arbiter(), which was queued on the arbiter before. */
  tally_snapshot_coordinator_stop_triggers (plugin->snapshots);
  snapshots = g_steal_pointer (&plugin->snapshots);
  g_source_destroy (plugin->tick);
  g_clear_pointer (&plugin->metrics_server, tally_metrics_server_free);
  g_mutex_lock (&plugin->lock);
  plugin->closing = TRUE;
  g_mutex_unlock (&plugin->lock);
  g_debug ("tally plugin (%s): snapshot timer stopped in %" G_GINT64_FORMAT " ms", plugin->name,
           (g_get_monotonic_time () - start_us) / 1000);

  /* Requests produced until now are answered, then the final snapshot: every record
   * consumed is in it. */
  tally_snapshot_coordinator_close (snapshots, NULL, NULL);
  tally_snapshot_coordinator_wait_closed (snapshots, plugin->config->shutdown.timeout_ms);
  /* Snapshots abandoned by the wait keep the coordinator, and through it the plugin. */
  tally_snapshot_coordinator_unref (snapshots);
  log_drops (plugin, TRUE);

  tally_address_stop (plugin->publisher);
  if (!tally_address_wait_stopped (plugin->publisher, plugin->config->shutdown.timeout_ms))
    g_warning ("tally plugin (%s): the publisher did not stop in time", plugin->name);
  tally_arbiter_stop (plugin->arbiter);
  tally_aggregator_handle_stop (plugin->handle);
  plugin_unref (plugin);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static Plugin *
plugin_new (const PluginConf *pc, rd_kafka_t *host, const rd_kafka_conf_t *host_conf,
            GError **error)
{
  g_autoptr (TallyConfig) config = NULL;
  TallyTokenizerOptions tokenizer_options;
  rd_kafka_conf_t *client_conf;
  TallyArbiter *arbiter;
  TallySupervisor *supervisor;
  TallyAddress *publisher;
  Plugin *plugin;
  g_autofree char *prefix = NULL;
  char name[256];
  size_t size = sizeof name;

  config = plugin_conf_load (pc, error);
  if (config == NULL)
    return NULL;
  client_conf = make_client_conf (host_conf, config, error);
  if (client_conf == NULL)
    return NULL;
  /* Supervised: a producer that hit a fatal error is replaced (tally-publisher.h). */
  arbiter = tally_arbiter_new ("tally-plugin");
  supervisor = tally_supervisor_new (NULL, PUBLISHER_MAX_RESTARTS, PUBLISHER_RESTART_PERIOD_MS);
  publisher = tally_publisher_start_supervised (
      supervisor, rd_kafka_conf_dup (client_conf), config->output.topic,
      config->output.max_record_bytes, 0, MIN (config->shutdown.timeout_ms, 10000), arbiter, 64,
      error);
  if (publisher == NULL)
    {
      tally_arbiter_stop (arbiter);
      tally_arbiter_unref (arbiter);
      g_object_unref (supervisor);
      rd_kafka_conf_destroy (client_conf);
      return NULL;
    }

  plugin = g_new0 (Plugin, 1);
  plugin->ref_count = 1;
  if (rd_kafka_conf_get (host_conf, "client.id", name, &size) != RD_KAFKA_CONF_OK)
    g_strlcpy (name, "rdkafka", sizeof name);
  plugin->name = g_strdup (name);
  plugin->host = host;
  plugin->full = pc->full;
  plugin->full_wait_ms = pc->full_wait_ms;
  plugin->created_ms = g_get_real_time () / 1000;
  g_mutex_init (&plugin->lock);
  tally_config_tokenizer_options (config, &tokenizer_options);
  plugin->tokenizer = tally_tokenizer_new (&tokenizer_options);
  plugin->batchers = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                            (GDestroyNotify)tally_word_batcher_free);
  plugin->positions = g_hash_table_new_full (position_hash, position_equal, position_free, NULL);
  plugin->handle = tally_aggregator_handle_new (config->aggregator.shards,
                                                config->aggregator.mailbox_capacity);
  plugin->arbiter = arbiter;
  plugin->supervisor = supervisor;
  plugin->publisher = publisher;
  plugin->reader_conf = client_conf;
  plugin->config = g_steal_pointer (&config);
  plugin->last_drop_report_us = g_get_monotonic_time ();
  prefix = g_strdup_printf ("tally plugin (%s): ", plugin->name);
  plugin->snapshots = tally_snapshot_coordinator_new (
      prefix, tally_arbiter_get_context (plugin->arbiter), plugin->publisher,
      plugin->config->output.topic, &plugin_cutter, plugin_ref (plugin),
      (GDestroyNotify)plugin_unref, plugin->config->snapshot.interval_ms);
  if (plugin->config->metrics.listen != NULL)
    {
      g_autoptr (GError) local_error = NULL;
      /* TLS and basic authentication come from tally.config's [metrics] group only. */
      const TallyMetricsServerAccess access = {
        plugin->config->metrics.tls_cert_file,
        plugin->config->metrics.tls_key_file,
        (const char *const *)plugin->config->metrics.basic_auth_users,
      };

      /* /healthz pings the plugin's arbiter (the host's own loop is not Tally's). */
      plugin->metrics = tally_metrics_new ();
      tally_snapshot_coordinator_set_metrics (plugin->snapshots, plugin->metrics);
      plugin->metrics_server = tally_metrics_server_new (
          plugin->config->metrics.listen, &access, plugin->metrics, plugin->handle,
          tally_arbiter_get_context (plugin->arbiter), &local_error);
      if (plugin->metrics_server == NULL)
        g_warning ("%sno metrics: %s", prefix, local_error->message);
    }
  plugin->tick = g_timeout_source_new (TICK_MS);
  g_source_set_callback (plugin->tick, on_tick, plugin, NULL);
  g_source_attach (plugin->tick, tally_arbiter_get_context (plugin->arbiter));
  g_main_context_invoke_full (tally_arbiter_get_context (plugin->arbiter), G_PRIORITY_DEFAULT,
                              start_on_arbiter, plugin_ref (plugin), (GDestroyNotify)plugin_unref);
  return plugin;
}

static rd_kafka_resp_err_t
on_new (rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *ic_opaque, char *errstr,
        size_t errstr_size)
{
  PluginConf *pc = ic_opaque;
  g_autoptr (GError) error = NULL;
  Plugin *plugin;

  if (rd_kafka_type (rk) != RD_KAFKA_CONSUMER)
    {
      g_message ("tally plugin: loaded into a producer, which consumes nothing: inactive");
      return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
  plugin = plugin_new (pc, rk, conf, &error);
  if (plugin == NULL)
    {
      /* librdkafka logs this ("interceptor tally failed on_new") and goes on. */
      g_warning ("tally plugin: inactive for this consumer: %s", error->message);
      g_snprintf (errstr, errstr_size, "Tally plugin inactive: %s", error->message);
      return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
  rd_kafka_interceptor_add_on_consume (rk, IC_NAME, on_consume, plugin);
  rd_kafka_interceptor_add_on_destroy (rk, IC_NAME, on_destroy, plugin);
  g_message ("tally plugin (%s): counting words of consumed records into %u shard(s); "
             "snapshots to %s on requests from %s",
             plugin->name, plugin->config->aggregator.shards, plugin->config->output.topic,
             plugin->config->requests.topic);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ---------------------------------------------------------------------------------------
 * Configuration interceptors and the entry point
 * ------------------------------------------------------------------------------------- */

static rd_kafka_conf_res_t
on_conf_set (rd_kafka_conf_t *conf, const char *name, const char *val, char *errstr,
             size_t errstr_size, void *ic_opaque)
{
  g_autoptr (GError) error = NULL;

  if (!g_str_has_prefix (name, "tally."))
    return RD_KAFKA_CONF_UNKNOWN;
  if (!plugin_conf_set (ic_opaque, name, val, &error))
    {
      /* Errors from config/ about an override already start with the property's name. */
      gsize len = strlen (name);
      gboolean named = strncmp (error->message, name, len) == 0 && error->message[len] == ':';

      g_snprintf (errstr, errstr_size, "%s%s%s", named ? "" : name, named ? "" : ": ",
                  error->message);
      return RD_KAFKA_CONF_INVALID;
    }
  return RD_KAFKA_CONF_OK;
}

static rd_kafka_resp_err_t on_conf_dup (rd_kafka_conf_t *new_conf, const rd_kafka_conf_t *old_conf,
                                        size_t filter_cnt, const char **filter, void *ic_opaque);
static rd_kafka_resp_err_t on_conf_destroy (void *ic_opaque);

/* Registers the interceptors on @conf with @pc (taken). */
static rd_kafka_resp_err_t
add_conf_interceptors (rd_kafka_conf_t *conf, PluginConf *pc)
{
  rd_kafka_resp_err_t err;

  err = rd_kafka_conf_interceptor_add_on_conf_set (conf, IC_NAME, on_conf_set, pc);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      plugin_conf_free (pc);
      return err;
    }
  /* From here on_conf_destroy owns pc. */
  rd_kafka_conf_interceptor_add_on_conf_destroy (conf, IC_NAME, on_conf_destroy, pc);
  rd_kafka_conf_interceptor_add_on_conf_dup (conf, IC_NAME, on_conf_dup, pc);
  rd_kafka_conf_interceptor_add_on_new (conf, IC_NAME, on_new, pc);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t
on_conf_dup (rd_kafka_conf_t *new_conf, const rd_kafka_conf_t *old_conf, size_t filter_cnt,
             const char **filter, void *ic_opaque)
{
  /* A copy without plugins was asked for (rd_kafka_conf_dup_filter()). */
  if (filtered ("plugin.library.paths", filter_cnt, filter))
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  if (add_conf_interceptors (new_conf, plugin_conf_copy (ic_opaque, filter_cnt, filter))
      == RD_KAFKA_RESP_ERR_NO_ERROR)
    conf_being_copied = new_conf;
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t
on_conf_destroy (void *ic_opaque)
{
  plugin_conf_free (ic_opaque);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

rd_kafka_resp_err_t
conf_init (rd_kafka_conf_t *conf, void **plug_opaquep, char *errstr, size_t errstr_size)
{
  rd_kafka_resp_err_t err;

  *plug_opaquep = NULL;
  err = add_conf_interceptors (conf, plugin_conf_new ());
  if (err == RD_KAFKA_RESP_ERR__CONFLICT && conf == conf_being_copied)
    {
      /* rd_kafka_conf_dup() reloading the plugin into the copy on_conf_dup() equipped. */
      conf_being_copied = NULL;
      return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
  if (err == RD_KAFKA_RESP_ERR__CONFLICT)
    g_snprintf (errstr, errstr_size,
                "plugin.library.paths: the Tally plugin is already loaded into this "
                "configuration (one path to it is enough)");
  else if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_snprintf (errstr, errstr_size, "plugin.library.paths: cannot register the Tally plugin: %s",
                rd_kafka_err2str (err));
  return err;
}
