/* tally-rdkafka-plugin.c — the librdkafka plugin: Tally's word counting inside any consumer.
 *
 * librdkafka loads this module when a configuration sets `plugin.library.paths` and calls
 * conf_init(), which registers four configuration interceptors named "tally":
 *
 *   on_conf_set      handles the `tally.*` properties (tally-rdkafka-plugin.h lists them):
 *                    values are validated at once, the key-file is read and validated by
 *                    config/ (tally_config_load_from_data()) and its text kept
 *   on_conf_dup      gives the copy its own PluginConf (librdkafka then loads the plugin
 *                    into the copy again, which conf_init() recognises, and re-applies the
 *                    `tally.*` values)
 *   on_conf_destroy  frees the PluginConf
 *   on_new           attaches a Plugin to each consumer; producers are left alone
 *
 * A Plugin (one per consumer instance) owns:
 *
 *   aggregator shards   tally_aggregator_handle_new(), one arbiter thread each
 *   tokenizer, batchers used on the host's threads inside on_consume, under `lock`: one
 *                       TallyWordBatcher per partition (the aggregators' store), flushed
 *                       without blocking once FLUSH_WORDS words are pending and by a tick
 *   "tally-plugin"      an arbiter thread with the publisher actor (its own producer) and
 *                       the request reader (its own consumer, outside any group); the tick,
 *                       the [snapshot] interval timer and the snapshot jobs run there
 *
 * The host's thread never waits for Tally: when a shard's mailbox is full the batch stays
 * pending and the plugin is "blocked"; the next record first retries the flush and, if the
 * mailboxes are still full, is dropped whole (`tally.full=drop`) or after retrying for up
 * to `tally.full.wait.ms` (`tally.full=wait`). Dropped records are counted and logged.
 *
 * A snapshot (request record, interval, or final) runs on the arbiter: under `lock` it
 * flushes every batcher without blocking (retrying every RETRY_CUT_MS while a mailbox is
 * full), copies the consumed positions and sends GetCounts to every shard before letting
 * go of the lock, so the counts are exactly those of the records up to those positions
 * (mailboxes are FIFO); then it hands counts and offsets to the publisher. A snapshot
 * covers every partition it has a position for and, besides, every partition assigned to
 * the host consumer when the snapshot was triggered (rd_kafka_assignment(), asked on the
 * arbiter before the cut): one the plugin has no position for has counted no word, and
 * its offset is unknown, so it is listed among the snapshot's partitions without an offset,
 * as `tally run` lists an assigned partition it has never read. `tally snapshot` then
 * completes while an assigned input partition is empty.
 *
 * on_destroy (librdkafka's main thread, after the consumer was closed) stops the request
 * reader and the timers, publishes the final snapshot, waits for every snapshot in flight
 * (bounded by [shutdown] timeout_ms), stops the publisher (which flushes its producer), the
 * arbiter and the shards.
 *
 * The module is linked with -z nodelete: librdkafka dlclose()s plugins when their
 * configuration goes, but GLib types, the GLib worker thread and interceptors still
 * registered on other configurations need the code to stay mapped.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-rdkafka-plugin.h"

#include "tally-aggregator-handle.h"
#include "tally-config.h"
#include "tally-publisher.h"
#include "tally-request-reader.h"
#include "tally-source.h"
#include "tally-tokenizer.h"

#include <string.h>

G_DEFINE_QUARK (tally - rdkafka - plugin - error - quark, tally_rdkafka_plugin_error)

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
};

#define KNOWN_PROPERTIES                                                                           \
  TALLY_RDKAFKA_PLUGIN_PROP_CONFIG                                                                 \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_OUTPUT_TOPIC ", " TALLY_RDKAFKA_PLUGIN_PROP_REQUESTS_TOPIC        \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_TOKENIZER ", " TALLY_RDKAFKA_PLUGIN_PROP_SHARDS                   \
  ", " TALLY_RDKAFKA_PLUGIN_PROP_FULL ", " TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS

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
 * in their groups, validated by config/ exactly as `tally run` validates its file. */
static TallyConfig *
plugin_conf_load (const PluginConf *pc, GError **error)
{
  g_autoptr (GKeyFile) key_file = g_key_file_new ();
  g_autofree char *data = NULL;
  gsize len = 0;

  if (pc->config_text != NULL
      && !g_key_file_load_from_data (key_file, pc->config_text, -1, G_KEY_FILE_NONE, error))
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (overrides); i++)
    if (pc->override_values[i] != NULL)
      g_key_file_set_string (key_file, overrides[i].group, overrides[i].key,
                             pc->override_values[i]);
  data = g_key_file_to_data (key_file, &len, NULL);
  return tally_config_load_from_data (
      data, len, pc->config_path != NULL ? pc->config_path : "<tally.* properties>", error);
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

/* An override is checked on its own, as a one-key key-file, by config/'s validation. */
static gboolean
set_override (PluginConf *pc, guint index, const char *value, GError **error)
{
  g_autoptr (GKeyFile) key_file = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (TallyConfig) config = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;

  if (value == NULL)
    {
      g_clear_pointer (&pc->override_values[index], g_free);
      return TRUE;
    }
  key_file = g_key_file_new ();
  g_key_file_set_string (key_file, overrides[index].group, overrides[index].key, value);
  data = g_key_file_to_data (key_file, &len, NULL);
  config = tally_config_load_from_data (data, len, overrides[index].property, &local_error);
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
  TallyAddress *publisher;      /* NULL when it could not be created */
  rd_kafka_conf_t *reader_conf; /* consumed on the arbiter when the reader starts */
  gint64 created_ms;

  /* Arbiter thread only. */
  TallyRequestReader *requests;
  GSource *tick;
  GSource *interval;
  gint64 last_drop_report_us;
  gboolean inputs_stopped;

  /* Under lock: the host's threads (on_consume) and the arbiter. */
  GMutex lock;
  GCond cond; /* signalled when in_flight drops */
  TallyTokenizer *tokenizer;
  GHashTable *batchers;  /* partition -> TallyWordBatcher */
  GHashTable *positions; /* Position -> itself */
  gsize unflushed_words;
  gboolean blocked; /* a flush was refused: a mailbox is full */
  gboolean closing; /* on_destroy began: records are no longer counted */
  guint in_flight;  /* snapshots between trigger and publisher's report */
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
  g_clear_pointer (&plugin->handle, tally_aggregator_handle_unref);
  g_clear_pointer (&plugin->publisher, tally_address_unref);
  g_clear_pointer (&plugin->arbiter, tally_arbiter_unref);
  g_clear_pointer (&plugin->reader_conf, rd_kafka_conf_destroy);
  g_clear_pointer (&plugin->batchers, g_hash_table_unref);
  g_clear_pointer (&plugin->positions, g_hash_table_unref);
  g_clear_pointer (&plugin->tokenizer, tally_tokenizer_free);
  g_clear_pointer (&plugin->config, tally_config_free);
  g_mutex_clear (&plugin->lock);
  g_cond_clear (&plugin->cond);
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

static void
note_position_locked (Plugin *plugin, const char *topic, gint32 partition, gint64 offset)
{
  Position key = { (char *)topic, partition, 0 };
  Position *pos = g_hash_table_lookup (plugin->positions, &key);

  if (pos == NULL)
    {
      pos = g_new0 (Position, 1);
      pos->topic = g_strdup (topic);
      pos->partition = partition;
      g_hash_table_add (plugin->positions, pos);
    }
  pos->next_offset = offset + 1;
}

/* on_consume: the host's thread, inside its poll. Never blocks on the shards. */
static rd_kafka_resp_err_t
on_consume (rd_kafka_t *rk, rd_kafka_message_t *m, void *ic_opaque)
{
  Plugin *plugin = ic_opaque;
  const char *topic;
  TallyWordBatcher *batcher;

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
      gsize n = tally_tokenizer_feed (plugin->tokenizer, m->payload, m->len, on_word, batcher);

      plugin->unflushed_words += n;
      plugin->words += n;
    }
  note_position_locked (plugin, topic, m->partition, m->offset);
  plugin->records++;
  if (plugin->unflushed_words >= FLUSH_WORDS)
    flush_locked (plugin, NULL);
out:
  g_mutex_unlock (&plugin->lock);
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ---------------------------------------------------------------------------------------
 * Snapshots, on the arbiter
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  Plugin *plugin; /* ref */
  TallySnapshotRequest *request;
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_topic_partition_list_t *assigned; /* the host's assignment; NULL: none known */
  gint64 cut_us;
  gboolean final;
} Job;

static void
job_free (Job *job)
{
  tally_snapshot_request_free (job->request);
  if (job->offsets != NULL)
    rd_kafka_topic_partition_list_destroy (job->offsets);
  if (job->assigned != NULL)
    rd_kafka_topic_partition_list_destroy (job->assigned);
  plugin_unref (job->plugin);
  g_free (job);
}

static void
job_done (Job *job)
{
  Plugin *plugin = job->plugin;

  g_mutex_lock (&plugin->lock);
  plugin->in_flight--;
  g_cond_broadcast (&plugin->cond);
  g_mutex_unlock (&plugin->lock);
  job_free (job);
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

static void
on_published (GObject *object, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyPublishReport) report = NULL;

  report = tally_publisher_publish_finish (job->plugin->publisher, result, &error);
  if (report == NULL)
    g_warning ("tally plugin (%s): snapshot for request %s not published: %s", job->plugin->name,
               job->request->request_id, error->message);
  else
    g_message ("tally plugin (%s): %ssnapshot %s for request %s published in %u part(s) to %s",
               job->plugin->name, job->final ? "final " : "", report->snapshot_id,
               job->request->request_id, report->parts, job->plugin->config->output.topic);
  job_done (job);
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
publish_error (Job *job, const GError *error)
{
  job->request->error = g_error_copy (error);
  tally_publisher_publish_async (job->plugin->publisher, job->request, NULL, NULL, NULL, 0, NULL,
                                 on_published, job);
}

static void
on_counts (GObject *object, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  Plugin *plugin = job->plugin;
  g_autoptr (GError) error = NULL;
  TallyCounts *counts;
  rd_kafka_topic_partition_list_t *offsets = g_steal_pointer (&job->offsets);

  counts = tally_aggregator_handle_get_counts_finish (plugin->handle, result, &error);
  g_debug ("tally plugin (%s): cut taken in %" G_GINT64_FORMAT " us", plugin->name,
           g_get_monotonic_time () - job->cut_us);
  if (counts == NULL)
    {
      rd_kafka_topic_partition_list_destroy (offsets);
      publish_error (job, error);
      return;
    }
  tally_publisher_publish_async (
      plugin->publisher, job->request, counts, offsets, partitions_of (offsets),
      (g_get_monotonic_time () - job->cut_us) / 1000, NULL, on_published, job);
}

static gboolean try_cut (gpointer user_data);

static gboolean
retry_cut (gpointer user_data)
{
  try_cut (user_data);
  return G_SOURCE_REMOVE;
}

/* The barrier: flush, note the positions and ask the shards, all under the lock. */
static gboolean
try_cut (gpointer user_data)
{
  Job *job = user_data;
  Plugin *plugin = job->plugin;
  g_autoptr (GError) error = NULL;

  g_mutex_lock (&plugin->lock);
  if (!flush_locked (plugin, &error))
    {
      g_mutex_unlock (&plugin->lock);
      if (g_error_matches (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL))
        {
          GSource *source = g_timeout_source_new (RETRY_CUT_MS);

          g_source_set_callback (source, retry_cut, job, NULL);
          g_source_attach (source, tally_arbiter_get_context (plugin->arbiter));
          g_source_unref (source);
        }
      else
        publish_error (job, error);
      return G_SOURCE_REMOVE;
    }
  job->offsets = positions_to_list_locked (plugin);
  cover_assigned (job->offsets, job->assigned);
  job->cut_us = g_get_monotonic_time ();
  tally_aggregator_handle_get_counts_async (plugin->handle, NULL, NULL, on_counts, job);
  g_mutex_unlock (&plugin->lock);
  return G_SOURCE_REMOVE;
}

/* Starts a snapshot; arbiter thread. Takes @request. */
static void
take_snapshot (Plugin *plugin, TallySnapshotRequest *request, gboolean final)
{
  Job *job;

  if (plugin->publisher == NULL)
    {
      tally_snapshot_request_free (request);
      return;
    }
  job = g_new0 (Job, 1);
  job->plugin = plugin_ref (plugin);
  job->request = request;
  job->final = final;
  g_mutex_lock (&plugin->lock);
  plugin->in_flight++;
  g_mutex_unlock (&plugin->lock);
  if (request->error != NULL)
    {
      g_warning ("tally plugin (%s): bad snapshot request %s: %s", plugin->name,
                 request->request_id, request->error->message);
      tally_publisher_publish_async (plugin->publisher, request, NULL, NULL, NULL, 0, NULL,
                                     on_published, job);
      return;
    }
  /* The final snapshot comes after the host closed its consumer: nothing is assigned, and
   * librdkafka is shutting the client down, so it is not asked. */
  if (!final)
    job->assigned = host_assignment (plugin);
  try_cut (job);
}

static void
on_request (const TallySnapshotRequest *request, gpointer user_data)
{
  Plugin *plugin = user_data;

  if (!plugin->inputs_stopped)
    take_snapshot (plugin, tally_snapshot_request_copy (request), FALSE);
}

static gboolean
on_interval (gpointer user_data)
{
  Plugin *plugin = user_data;

  take_snapshot (plugin, tally_snapshot_request_new (NULL), FALSE);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_tick (gpointer user_data)
{
  Plugin *plugin = user_data;
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&plugin->lock);
  if (plugin->unflushed_words > 0 || plugin->blocked)
    flush_locked (plugin, NULL);
  g_mutex_unlock (&plugin->lock);
  if (now - plugin->last_drop_report_us >= DROP_REPORT_MS * G_TIME_SPAN_MILLISECOND)
    {
      plugin->last_drop_report_us = now;
      log_drops (plugin, FALSE);
    }
  return G_SOURCE_CONTINUE;
}

static GSource *
add_timer (Plugin *plugin, guint interval_ms, GSourceFunc func)
{
  GSource *source = g_timeout_source_new (interval_ms);

  g_source_set_callback (source, func, plugin, NULL);
  g_source_attach (source, tally_arbiter_get_context (plugin->arbiter));
  return source;
}

/* Runs @func on the arbiter and waits for it to return. */
typedef struct
{
  Plugin *plugin;
  void (*func) (Plugin *plugin);
  gboolean done; /* under plugin->lock */
} SyncCall;

static gboolean
sync_call_dispatch (gpointer user_data)
{
  SyncCall *call = user_data;

  call->func (call->plugin);
  g_mutex_lock (&call->plugin->lock);
  call->done = TRUE;
  g_cond_broadcast (&call->plugin->cond);
  g_mutex_unlock (&call->plugin->lock);
  return G_SOURCE_REMOVE;
}

static void
run_on_arbiter (Plugin *plugin, void (*func) (Plugin *plugin))
{
  SyncCall call = { plugin, func, FALSE };

  g_main_context_invoke (tally_arbiter_get_context (plugin->arbiter), sync_call_dispatch, &call);
  g_mutex_lock (&plugin->lock);
  while (!call.done)
    g_cond_wait (&plugin->cond, &plugin->lock);
  g_mutex_unlock (&plugin->lock);
}

/* The arbiter's part of the start: the request reader may wait for metadata. */
static gboolean
start_on_arbiter (gpointer user_data)
{
  Plugin *plugin = user_data;
  g_autoptr (GError) error = NULL;

  if (plugin->inputs_stopped)
    return G_SOURCE_REMOVE;
  plugin->tick = add_timer (plugin, TICK_MS, on_tick);
  if (plugin->config->snapshot.interval_ms > 0)
    plugin->interval = add_timer (plugin, plugin->config->snapshot.interval_ms, on_interval);
  plugin->requests = tally_request_reader_new (g_steal_pointer (&plugin->reader_conf),
                                               plugin->config->requests.topic, plugin->created_ms,
                                               tally_arbiter_get_context (plugin->arbiter),
                                               on_request, plugin, NULL, READER_TIMEOUT_MS, &error);
  if (plugin->requests == NULL)
    g_warning ("tally plugin (%s): snapshot requests on %s will not be answered: %s", plugin->name,
               plugin->config->requests.topic, error->message);
  return G_SOURCE_REMOVE;
}

static void
stop_inputs (Plugin *plugin)
{
  plugin->inputs_stopped = TRUE;
  g_clear_pointer (&plugin->requests, tally_request_reader_free);
  if (plugin->tick != NULL)
    g_source_destroy (plugin->tick);
  g_clear_pointer (&plugin->tick, g_source_unref);
  if (plugin->interval != NULL)
    g_source_destroy (plugin->interval);
  g_clear_pointer (&plugin->interval, g_source_unref);
}

static void
start_final_snapshot (Plugin *plugin)
{
  take_snapshot (plugin, tally_snapshot_request_new (NULL), TRUE);
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
  gint64 deadline;
  gint64 start_us = g_get_monotonic_time ();

  run_on_arbiter (plugin, stop_inputs);
  g_mutex_lock (&plugin->lock);
  plugin->closing = TRUE;
  g_mutex_unlock (&plugin->lock);
  g_debug ("tally plugin (%s): request reader stopped in %" G_GINT64_FORMAT " ms", plugin->name,
           (g_get_monotonic_time () - start_us) / 1000);

  /* The final snapshot: every record consumed is in it. */
  run_on_arbiter (plugin, start_final_snapshot);
  deadline = g_get_monotonic_time ()
             + (gint64)plugin->config->shutdown.timeout_ms * G_TIME_SPAN_MILLISECOND;
  g_mutex_lock (&plugin->lock);
  while (plugin->in_flight > 0)
    if (!g_cond_wait_until (&plugin->cond, &plugin->lock, deadline))
      break;
  if (plugin->in_flight > 0)
    g_warning ("tally plugin (%s): %u snapshot(s) still in flight after %u ms, abandoned",
               plugin->name, plugin->in_flight, plugin->config->shutdown.timeout_ms);
  g_mutex_unlock (&plugin->lock);
  log_drops (plugin, TRUE);

  if (plugin->publisher != NULL)
    {
      tally_address_stop (plugin->publisher);
      if (!tally_address_wait_stopped (plugin->publisher, plugin->config->shutdown.timeout_ms))
        g_warning ("tally plugin (%s): the publisher did not stop in time", plugin->name);
    }
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
  TallyActor *publisher;
  Plugin *plugin;
  char name[256];
  size_t size = sizeof name;

  config = plugin_conf_load (pc, error);
  if (config == NULL)
    return NULL;
  client_conf = make_client_conf (host_conf, config, error);
  if (client_conf == NULL)
    return NULL;
  publisher = tally_publisher_new (rd_kafka_conf_dup (client_conf), config->output.topic,
                                   config->output.max_record_bytes, error);
  if (publisher == NULL)
    {
      rd_kafka_conf_destroy (client_conf);
      return NULL;
    }
  tally_publisher_set_flush_timeout (TALLY_PUBLISHER (publisher),
                                     MIN (config->shutdown.timeout_ms, 10000));

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
  g_cond_init (&plugin->cond);
  tally_config_tokenizer_options (config, &tokenizer_options);
  plugin->tokenizer = tally_tokenizer_new (&tokenizer_options);
  plugin->batchers = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                            (GDestroyNotify)tally_word_batcher_free);
  plugin->positions = g_hash_table_new_full (position_hash, position_equal, position_free, NULL);
  plugin->handle = tally_aggregator_handle_new (config->aggregator.shards,
                                                config->aggregator.mailbox_capacity);
  plugin->arbiter = tally_arbiter_new ("tally-plugin");
  plugin->publisher = tally_actor_start (publisher, plugin->arbiter, 64);
  plugin->reader_conf = client_conf;
  plugin->config = g_steal_pointer (&config);
  plugin->last_drop_report_us = g_get_monotonic_time ();
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
      g_snprintf (errstr, errstr_size, "%s: %s", name, error->message);
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
