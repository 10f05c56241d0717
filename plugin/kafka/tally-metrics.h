/* tally-metrics.h — the metrics registry and its Prometheus text exposition.
 *
 * What it is for: an operator's view of a running Tally (docs/operations.md lists every
 * metric with its type and unit). The actors write figures here as they work; the metrics
 * server (tally-metrics-server.h) reads them on its own thread and renders them in the
 * Prometheus text exposition format 0.0.4.
 *
 * How it stays cheap: every figure is a 64-bit integer updated with a relaxed atomic
 * add or store by one writer thread (the source's, for the per-partition counters) and
 * read with an atomic load by the server; nothing on the hot path takes a lock. The lock
 * of the registry guards only its lists (a partition entry is created once, at
 * assignment) and the broker figures that librdkafka's statistics replace every
 * statistics.interval.ms. Entries are never freed before the registry, so a pointer to a
 * #TallyMetricsPartition stays valid for the registry's life.
 *
 * Durations are kept in microseconds and exposed in seconds; histograms have fixed
 * buckets (TALLY_METRICS_BUCKETS_SECONDS).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TallyMetrics TallyMetrics;
typedef struct _TallyMetricsPartition TallyMetricsPartition;

/**
 * TallyMetricsCounter:
 * @TALLY_METRICS_INVALID_BYTES: bytes of input that were not UTF-8 (skipped)
 * @TALLY_METRICS_TRUNCATED_WORDS: words longer than max_word_bytes, counted truncated
 * @TALLY_METRICS_DROPPED_WORDS: words longer than max_word_bytes, not counted
 * @TALLY_METRICS_KAFKA_ERRORS: error events librdkafka reported to the consumer
 * @TALLY_METRICS_MAILBOX_FULL: times a shard mailbox was full and the source stopped polling
 * @TALLY_METRICS_PAUSES: times the partitions were paused because the shards fell behind
 * @TALLY_METRICS_BACKPRESSURE_US: microseconds the source spent stopped by full mailboxes
 * @TALLY_METRICS_CHECKPOINT_FAILURES: checkpoints that did not complete
 * @TALLY_METRICS_TRANSACTIONS_COMMITTED: exactly-once checkpoint transactions committed
 * @TALLY_METRICS_TRANSACTIONS_ABORTED: exactly-once checkpoint transactions aborted
 * @TALLY_METRICS_SNAPSHOT_REQUESTS: snapshots asked for (request records, signals, timer)
 * @TALLY_METRICS_SNAPSHOT_FAILURES: snapshots not published
 * @TALLY_METRICS_SNAPSHOT_BYTES: bytes of snapshot record values published
 * @TALLY_METRICS_SNAPSHOT_PARTS: snapshot records (parts) published
 * @TALLY_METRICS_REBALANCE_ASSIGNS: partition assignments received
 * @TALLY_METRICS_REBALANCE_REVOKES: partition revocations received
 * @TALLY_METRICS_REBALANCE_ERRORS: failed rebalances (assignment lost or errored)
 * @TALLY_METRICS_STATISTICS: librdkafka statistics documents parsed
 * @TALLY_METRICS_N_COUNTERS: the number of counters
 *
 * Process-wide counters. Each only grows.
 */
typedef enum
{
  TALLY_METRICS_INVALID_BYTES,
  TALLY_METRICS_TRUNCATED_WORDS,
  TALLY_METRICS_DROPPED_WORDS,
  TALLY_METRICS_KAFKA_ERRORS,
  TALLY_METRICS_MAILBOX_FULL,
  TALLY_METRICS_PAUSES,
  TALLY_METRICS_BACKPRESSURE_US,
  TALLY_METRICS_CHECKPOINT_FAILURES,
  TALLY_METRICS_TRANSACTIONS_COMMITTED,
  TALLY_METRICS_TRANSACTIONS_ABORTED,
  TALLY_METRICS_SNAPSHOT_REQUESTS,
  TALLY_METRICS_SNAPSHOT_FAILURES,
  TALLY_METRICS_SNAPSHOT_BYTES,
  TALLY_METRICS_SNAPSHOT_PARTS,
  TALLY_METRICS_REBALANCE_ASSIGNS,
  TALLY_METRICS_REBALANCE_REVOKES,
  TALLY_METRICS_REBALANCE_ERRORS,
  TALLY_METRICS_STATISTICS,
  TALLY_METRICS_N_COUNTERS,
} TallyMetricsCounter;

/**
 * TallyMetricsHistogram:
 * @TALLY_METRICS_CHECKPOINT_SECONDS: duration of a checkpoint (flush, changelog write,
 *   acknowledgement or transaction commit)
 * @TALLY_METRICS_SNAPSHOT_SECONDS: duration of a snapshot from trigger to last delivery
 * @TALLY_METRICS_RESTORE_SECONDS: duration of restoring the stores of one assignment
 * @TALLY_METRICS_N_HISTOGRAMS: the number of histograms
 */
typedef enum
{
  TALLY_METRICS_CHECKPOINT_SECONDS,
  TALLY_METRICS_SNAPSHOT_SECONDS,
  TALLY_METRICS_RESTORE_SECONDS,
  TALLY_METRICS_N_HISTOGRAMS,
} TallyMetricsHistogram;

/** TALLY_METRICS_N_BUCKETS: finite buckets of every histogram. */
#define TALLY_METRICS_N_BUCKETS 12

/**
 * TallyMetricsShard:
 * @depth: messages in the shard's mailbox
 * @capacity: the mailbox's capacity, in messages
 * @answered: whether the shard answered the scrape's GetStats ask in time
 *
 * What the server samples of one aggregator shard at scrape time.
 */
typedef struct
{
  guint depth;
  guint capacity;
  gboolean answered;
} TallyMetricsShard;

/**
 * TallyMetricsStore:
 * @store: the store (input partition number)
 * @words: distinct words in the store, over all shards
 *
 * What the server samples of one store at scrape time.
 */
typedef struct
{
  guint32 store;
  guint64 words;
} TallyMetricsStore;

/**
 * TallyMetricsReadyFunc:
 * @user_data: the data given to tally_metrics_set_ready_func()
 *
 * Called once, on the thread that reported it, when Tally is first ready (for systemd's
 * READY=1).
 */
typedef void (*TallyMetricsReadyFunc) (gpointer user_data);

/**
 * tally_metrics_new:
 *
 * Creates an empty registry. Thread: any.
 *
 * Returns: (transfer full): the registry; free with tally_metrics_unref()
 */
G_GNUC_WARN_UNUSED_RESULT
TallyMetrics *tally_metrics_new (void);

/**
 * tally_metrics_ref:
 * @metrics: a registry
 *
 * Returns: (transfer full): @metrics. Thread: any.
 */
TallyMetrics *tally_metrics_ref (TallyMetrics *metrics);

/**
 * tally_metrics_unref:
 * @metrics: (transfer full): a registry
 *
 * Drops a reference; the last one frees the registry and its partition entries. Any thread.
 */
void tally_metrics_unref (TallyMetrics *metrics);

/**
 * tally_metrics_add:
 * @metrics: a registry
 * @counter: which counter
 * @delta: the amount, in the counter's unit
 *
 * Adds to a counter with a relaxed atomic add. Any thread; lock-free.
 */
void tally_metrics_add (TallyMetrics *metrics, TallyMetricsCounter counter, guint64 delta);

/**
 * tally_metrics_set_total:
 * @metrics: a registry
 * @counter: which counter
 * @total: the counter's new value, never below the old one
 *
 * Sets a counter kept as a running total elsewhere (the tokenizer's statistics). Any
 * thread; lock-free.
 */
void tally_metrics_set_total (TallyMetrics *metrics, TallyMetricsCounter counter, guint64 total);

/**
 * tally_metrics_get:
 * @metrics: a registry
 * @counter: which counter
 *
 * Returns: the counter's value. Any thread.
 */
guint64 tally_metrics_get (TallyMetrics *metrics, TallyMetricsCounter counter);

/**
 * tally_metrics_observe:
 * @metrics: a registry
 * @histogram: which histogram
 * @duration_us: the observed duration, in microseconds
 *
 * Counts one observation. Any thread; lock-free.
 */
void tally_metrics_observe (TallyMetrics *metrics, TallyMetricsHistogram histogram,
                            gint64 duration_us);

/**
 * tally_metrics_partition:
 * @metrics: a registry
 * @topic: the input topic
 * @partition: the partition
 *
 * Finds or creates the entry of an input topic-partition (takes the registry's lock: call
 * it at assignment, not per record).
 *
 * Returns: (transfer none): the entry, valid as long as @metrics
 */
TallyMetricsPartition *tally_metrics_partition (TallyMetrics *metrics, const char *topic,
                                                gint32 partition);

/**
 * tally_metrics_partition_add_record:
 * @partition: an entry from tally_metrics_partition()
 * @bytes: the record value's size in bytes
 * @words: the words the tokenizer found in it
 *
 * Counts one consumed record: three relaxed atomic adds, no lock. Any thread, but the
 * source's is the only writer.
 */
void tally_metrics_partition_add_record (TallyMetricsPartition *partition, gsize bytes,
                                         gsize words);

/**
 * tally_metrics_partition_set_position:
 * @partition: an entry from tally_metrics_partition()
 * @assigned: whether this member owns the partition now
 * @position: the offset of the next record to count, or -1 when unknown
 * @committed: the offset committed with the last checkpoint (what the group resumes
 *   from), or -1 when unknown
 *
 * Records the partition's state; the lag is the log end offset of the statistics minus
 * @committed. Any thread; lock-free.
 */
void tally_metrics_partition_set_position (TallyMetricsPartition *partition, gboolean assigned,
                                           gint64 position, gint64 committed);

/**
 * tally_metrics_update_statistics:
 * @metrics: a registry
 * @json: the statistics document of librdkafka's stats_cb (statistics.interval.ms),
 *   not necessarily NUL-terminated
 * @len: its length in bytes
 * @error: return location for a json-glib parse error
 *
 * Takes the log end offsets (`hi_offset`, and `ls_offset`, the last stable offset that
 * read_committed consumers stop at, of each `topics.*.partitions.*`) and the broker figures
 * (`brokers.*`: `state`, `rtt.avg` in microseconds, `txerrs`, `rxerrs`, `req_timeouts`) of one
 * statistics document (librdkafka's STATISTICS.md). Any thread; takes the lock for the brokers
 * only.
 *
 * Returns: %TRUE if the document parsed
 */
gboolean tally_metrics_update_statistics (TallyMetrics *metrics, const char *json, gsize len,
                                          GError **error);

/**
 * tally_metrics_set_state:
 * @metrics: a registry
 * @assigned: input partitions owned
 * @restoring: whether stores are being restored now
 * @broken: stores that could not be restored (their partitions stay paused)
 * @consuming: whether the source is polling (not stopped)
 *
 * The source's readiness figures. The first call that makes the registry ready calls the
 * ready function. Any thread.
 */
void tally_metrics_set_state (TallyMetrics *metrics, guint assigned, gboolean restoring,
                              guint broken, gboolean consuming);

/**
 * tally_metrics_is_ready:
 * @metrics: a registry
 * @reason: (out) (optional) (transfer full): why not, or what is ready, for /readyz
 *
 * Ready means: partitions assigned, every store restored, and the source consuming.
 *
 * Returns: whether Tally is ready. Any thread.
 */
gboolean tally_metrics_is_ready (TallyMetrics *metrics, char **reason);

/**
 * tally_metrics_set_ready_func:
 * @metrics: a registry
 * @func: (nullable): called once when first ready
 * @user_data: data for @func
 *
 * Set before the source starts. Any thread.
 */
void tally_metrics_set_ready_func (TallyMetrics *metrics, TallyMetricsReadyFunc func,
                                   gpointer user_data);

/**
 * tally_metrics_write:
 * @metrics: a registry
 * @shards: (array length=n_shards) (nullable): a sample of each shard
 * @n_shards: entries of @shards
 * @stores: (array length=n_stores) (nullable): distinct words of each store
 * @n_stores: entries of @stores
 * @out: where the exposition is appended
 *
 * Renders every metric in the Prometheus text exposition format 0.0.4: families in a
 * fixed order, each with `# HELP` and `# TYPE`; series sorted by their labels; counters
 * end in `_total`, durations are in seconds with microsecond precision. Any thread.
 */
void tally_metrics_write (TallyMetrics *metrics, const TallyMetricsShard *shards, guint n_shards,
                          const TallyMetricsStore *stores, guint n_stores, GString *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyMetrics, tally_metrics_unref)

G_END_DECLS
