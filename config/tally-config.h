/* tally-config.h — Tally's configuration: the key-file schema, loading, validation, defaults.
 *
 * All of Tally is configured by one GKeyFile, `tally.conf`. tally_config_load() finds it
 * (see there for the lookup order), checks it strictly (unknown groups and keys, types,
 * ranges, duplicates, encoding; librdkafka itself validates the [kafka] group), applies
 * `TALLY_<GROUP>_<KEY>` environment overrides, and returns a plain #TallyConfig struct with
 * every field filled in (defaults for what the file does not set). Nothing falls back to
 * defaults silently: any problem is a #GError that names the file (or the environment
 * variable), the line, the group and the key.
 *
 * docs/configuration.md documents every key; config/tally.conf is the commented example.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <librdkafka/rdkafka.h>

#include "tally-tokenizer.h"

G_BEGIN_DECLS

/**
 * TALLY_CONFIG_EXIT_STATUS:
 *
 * The process exit status for a configuration error: 78, `EX_CONFIG` from sysexits.h.
 * (config/ does not depend on plugin/; this equals TALLY_EXIT_CONFIG there.)
 */
#define TALLY_CONFIG_EXIT_STATUS 78

/**
 * TALLY_CONFIG_ERROR:
 *
 * Error domain of configuration loading. Errors in this domain are from #TallyConfigError.
 * Every message names where the bad setting came from: `FILE:LINE: [group] key: ...` for
 * the key-file, or `TALLY_GROUP_KEY (environment, [group] key): ...` for an override.
 */
#define TALLY_CONFIG_ERROR (tally_config_error_quark ())

/**
 * TallyConfigError:
 * @TALLY_CONFIG_ERROR_NOT_FOUND: a file named explicitly (`--config PATH`, `check-config
 *   PATH`, or `$TALLY_CONFIG`) does not exist.
 * @TALLY_CONFIG_ERROR_READ: the file exists but could not be read (permissions, a
 *   directory, an I/O error).
 * @TALLY_CONFIG_ERROR_ENCODING: the file starts with a UTF-8 byte order mark, or a line is
 *   not valid UTF-8.
 * @TALLY_CONFIG_ERROR_PARSE: GKeyFile syntax error: a line that is neither a group, a
 *   `key=value` pair nor a comment; text after a group header's `]`; an empty or invalid
 *   group or key name; a key outside any group.
 * @TALLY_CONFIG_ERROR_DUPLICATE: a group or a key appears twice (GKeyFile alone would
 *   silently keep the last one).
 * @TALLY_CONFIG_ERROR_UNKNOWN_GROUP: a group that is not in the schema; the message gives
 *   the nearest known group ("did you mean").
 * @TALLY_CONFIG_ERROR_UNKNOWN_KEY: a key that is not in its group's schema (or a
 *   `TALLY_<GROUP>_<KEY>` variable for a key that does not exist); the message gives the
 *   nearest known key, or the group the key belongs to.
 * @TALLY_CONFIG_ERROR_INVALID_VALUE: a value of the wrong type or out of range: not a
 *   number, a bad boolean, a name not in the allowed set, an empty value, an empty list item
 *   (`a;;b`), a comma where lists use `;`, an illegal topic name, a bad regular expression,
 *   an invalid escape sequence, [output] max_record_bytes too close to message.max.bytes.
 * @TALLY_CONFIG_ERROR_KAFKA: librdkafka rejected a [kafka] property; the message carries
 *   librdkafka's own error text after the key.
 *
 * Errors of configuration loading. All of them mean exit status %TALLY_CONFIG_EXIT_STATUS.
 */
typedef enum
{
  TALLY_CONFIG_ERROR_NOT_FOUND,
  TALLY_CONFIG_ERROR_READ,
  TALLY_CONFIG_ERROR_ENCODING,
  TALLY_CONFIG_ERROR_PARSE,
  TALLY_CONFIG_ERROR_DUPLICATE,
  TALLY_CONFIG_ERROR_UNKNOWN_GROUP,
  TALLY_CONFIG_ERROR_UNKNOWN_KEY,
  TALLY_CONFIG_ERROR_INVALID_VALUE,
  TALLY_CONFIG_ERROR_KAFKA,
} TallyConfigError;

GQuark tally_config_error_quark (void);

/**
 * TallyConfigOffsetReset:
 * @TALLY_CONFIG_OFFSET_RESET_EARLIEST: `earliest`: start at the oldest retained offset.
 * @TALLY_CONFIG_OFFSET_RESET_LATEST: `latest`: start at the end of each partition.
 *
 * Where the input consumer group starts on a partition that has no committed offset
 * (librdkafka topic property `auto.offset.reset`).
 */
typedef enum
{
  TALLY_CONFIG_OFFSET_RESET_EARLIEST,
  TALLY_CONFIG_OFFSET_RESET_LATEST,
} TallyConfigOffsetReset;

/**
 * TallyConfigFormat:
 * @TALLY_CONFIG_FORMAT_JSON: `json`: one JSON object per snapshot part (json-glib).
 *
 * Encoding of snapshot records on the output topic.
 */
typedef enum
{
  TALLY_CONFIG_FORMAT_JSON,
} TallyConfigFormat;

/**
 * TallyConfigGuarantee:
 * @TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE: `exactly_once`: each checkpoint is one Kafka
 *   transaction holding the changelog records and the input offsets (KIP-98, KIP-447), so
 *   a member of an old group generation can never write and nothing is counted twice.
 * @TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE: `at_least_once`: changelog records, then the
 *   offsets once the broker acknowledged them; after a crash in between some records are
 *   counted again.
 *
 * The processing guarantee of checkpoints ([checkpoint] guarantee), as Kafka Streams'
 * processing.guarantee.
 */
typedef enum
{
  TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE,
  TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE,
} TallyConfigGuarantee;

/**
 * TallyConfigTokenizerMode:
 * @TALLY_CONFIG_TOKENIZER_UNICODE: `unicode`: maximal runs of letters, marks and digits,
 *   apostrophe or hyphen kept between two letters, Unicode case folding.
 * @TALLY_CONFIG_TOKENIZER_WHITESPACE: `whitespace`: split on whitespace, ASCII lowercase,
 *   punctuation kept (the "countwords" benchmark definition).
 * @TALLY_CONFIG_TOKENIZER_RECORD: `record`: each line of a record (text between control
 *   characters), trimmed of spaces, is one word.
 *
 * How record values are split into words. The rules themselves are the tokenizer's (README).
 */
typedef enum
{
  TALLY_CONFIG_TOKENIZER_UNICODE,
  TALLY_CONFIG_TOKENIZER_WHITESPACE,
  TALLY_CONFIG_TOKENIZER_RECORD,
} TallyConfigTokenizerMode;

/**
 * TallyConfigLongWords:
 * @TALLY_CONFIG_LONG_WORDS_TRUNCATE: `truncate`: keep the first max_word_bytes bytes,
 *   cut back to a whole UTF-8 character.
 * @TALLY_CONFIG_LONG_WORDS_DROP: `drop`: do not count the word at all.
 *
 * What happens to a word longer than [tokenizer] max_word_bytes.
 */
typedef enum
{
  TALLY_CONFIG_LONG_WORDS_TRUNCATE,
  TALLY_CONFIG_LONG_WORDS_DROP,
} TallyConfigLongWords;

/**
 * TallyConfigLate:
 * @TALLY_CONFIG_LATE_ALL_TIME: a record later than [windows] grace_ms counts in the
 *   all-time totals only
 * @TALLY_CONFIG_LATE_DROP: such a record is not counted at all
 *
 * What happens to a record that arrives after its window closed ([windows] late). Either
 * way it is counted in the source's late-record statistic (tally_source_get_late_records()).
 */
typedef enum
{
  TALLY_CONFIG_LATE_ALL_TIME,
  TALLY_CONFIG_LATE_DROP,
} TallyConfigLate;

/**
 * TallyConfigKafkaProperty:
 * @name: the librdkafka property name, such as `bootstrap.servers`.
 * @value: its value, as librdkafka's rd_kafka_conf_set() takes it. May be a secret: never
 *   log it; use tally_config_key_is_secret() on @name.
 * @origin: where it was set, for error messages: `FILE:LINE` or the environment variable.
 *
 * One property of the [kafka] group, in file order (environment overrides replace the
 * value in place, or are appended when the file does not set the property).
 */
typedef struct
{
  char *name;
  char *value;
  char *origin;
} TallyConfigKafkaProperty;

/**
 * TallyConfig:
 *
 * The effective configuration: every field is filled in, from the file, the environment
 * or the defaults. All strings and arrays are owned by the struct and freed by
 * tally_config_free(); a program may change fields after loading (for example to apply
 * command-line options), freeing any string it replaces with g_free().
 *
 * A loaded TallyConfig is plain data: read it from any thread once it is no longer
 * changed. See each field for its key, type, default and unit; docs/configuration.md has
 * the same in long form.
 */
typedef struct
{
  /* The file the configuration came from, or NULL when no file was found (defaults and
   * environment only), or the name given to tally_config_load_from_data(). */
  char *source_path;
  /* Names of the TALLY_<GROUP>_<KEY> environment variables that were applied, in the
   * order applied; NULL-terminated, empty when none. */
  char **env_overrides;

  struct
  {
    /* [kafka] <any librdkafka property>: array of #TallyConfigKafkaProperty, in file
     * order; each was accepted by rd_kafka_conf_set() on a scratch configuration (except
     * plugin.library.paths, which is only checked when applied). Apply them with
     * tally_config_apply_kafka(). `group.id` and `auto.offset.reset` are not allowed here:
     * they are [input] group_id and auto_offset_reset. */
    GPtrArray *properties;
    /* TRUE when bootstrap.servers (or its alias metadata.broker.list) is set and not
     * empty. When FALSE, `tally run` starts the embedded broker. */
    gboolean has_bootstrap;
  } kafka;

  struct
  {
    /* [input] topics: string list; topic names, or regular expressions starting with `^`
     * (librdkafka subscription syntax). Default: `tally-input`. Never empty. */
    char **topics;
    /* [input] group_id: string, the consumer group (librdkafka `group.id`). Default
     * `tally`. */
    char *group_id;
    /* [input] auto_offset_reset: `earliest` | `latest`. Default `earliest`. */
    TallyConfigOffsetReset auto_offset_reset;
    /* [input] max_batch_records: records, 1..1000000; the most records the source actor
     * handles per wake-up of its main loop before yielding. Default 1000. */
    guint max_batch_records;
  } input;

  struct
  {
    /* [output] topic: string, the snapshot topic. Default `tally-snapshots`. */
    char *topic;
    /* [output] max_record_bytes: bytes, 1024..999998976; the largest snapshot record
     * (value, key and headers together); bigger snapshots are split into parts. Must be
     * at least 1024 bytes below [kafka] message.max.bytes (librdkafka default 1000000),
     * which leaves room for record framing. Default 900000. */
    gsize max_record_bytes;
    /* [output] retention_ms: ms, 0..2147483647; the `retention.ms` the output topic is
     * created with (snapshots are answers read within seconds, not an archive); 0 leaves
     * the broker's default. A topic that exists keeps its configs. Default 3600000. */
    guint retention_ms;
    /* [output] format: `json`. Default `json`. */
    TallyConfigFormat format;
  } output;

  struct
  {
    /* [requests] topic: string, the snapshot request topic (read by every instance,
     * outside the input consumer group). Default `tally-requests`. */
    char *topic;
  } requests;

  struct
  {
    /* [snapshot] interval_ms: milliseconds, 0..86400000; publish a snapshot this often;
     * 0 = no timer (requests, SIGUSR1 and shutdown only). Default 0. */
    guint interval_ms;
    /* [snapshot] timeout_ms: milliseconds, 1..3600000; how long `tally snapshot` waits
     * for every part of every reply. Default 10000. */
    guint timeout_ms;
  } snapshot;

  struct
  {
    /* [checkpoint] enabled: boolean; checkpoint counts to the changelog topic and
     * restore them on start. Default true. */
    gboolean enabled;
    /* [checkpoint] changelog_topic: string; the compacted changelog topic, one partition
     * per input partition. Default `tally-changelog`. */
    char *changelog_topic;
    /* [checkpoint] interval_ms: milliseconds, 1..3600000; how often changed counts are
     * checkpointed (and offsets stored after them). Default 1000. */
    guint interval_ms;
    /* [checkpoint] guarantee: exactly_once or at_least_once (#TallyConfigGuarantee).
     * Default exactly_once. */
    TallyConfigGuarantee guarantee;
  } checkpoint;

  struct
  {
    /* [aggregator] shards: aggregator actors, each on its own thread, 1..256; the key-file
     * value 0 (the default) means one per processor (g_get_num_processors()), and this
     * field then holds that resolved number, never 0. */
    guint shards;
    /* [aggregator] mailbox_capacity: messages, 1..1048576; bound of each shard's mailbox;
     * when full the source pauses its partitions. Default 1024. */
    guint mailbox_capacity;
  } aggregator;

  struct
  {
    /* [windows] enabled: boolean; count words per time window too (by record timestamp).
     * Default false: no cost at all on the counting path. */
    gboolean enabled;
    /* [windows] size_ms: milliseconds, 1000..604800000; the tumbling window size, a
     * multiple of bucket_ms. Default 3600000 (1 h). */
    guint size_ms;
    /* [windows] bucket_ms: milliseconds, 1000..86400000; the width of the buckets counts
     * are kept in; "the last N" requests are answered in whole buckets. Default 60000. */
    guint bucket_ms;
    /* [windows] grace_ms: milliseconds, 0..86400000; how late (in record time) a record
     * may be and still count in its window. Default 0. */
    guint grace_ms;
    /* [windows] idle_ms: milliseconds, 1..86400000; wall-clock time without records after
     * which a partition no longer holds windows open. Default 60000. */
    guint idle_ms;
    /* [windows] retain: windows, 0..10000; closed windows kept queryable besides the open
     * one. Default 1. */
    guint retain;
    /* [windows] late: `all-time` | `drop` (#TallyConfigLate). Default `all-time`. */
    TallyConfigLate late;
    /* [windows] publish: boolean; publish each window's final counts to the output topic
     * when it closes. Default false. */
    gboolean publish;
  } windows;

  struct
  {
    /* [tokenizer] mode: `unicode` | `whitespace` | `record`. Default `unicode`. */
    TallyConfigTokenizerMode mode;
    /* [tokenizer] nfkc: boolean; NFKC-normalise the text before splitting, in every mode (Unicode
     * UAX #15). Default false. */
    gboolean nfkc;
    /* [tokenizer] max_word_bytes: bytes of UTF-8, 4..1048576 (the tokenizer's limits); the
     * longest word kept. Default 256. */
    guint max_word_bytes;
    /* [tokenizer] long_words: `truncate` | `drop`. Default `truncate`. */
    TallyConfigLongWords long_words;
  } tokenizer;

  struct
  {
    /* [broker] port: TCP port, 0..65535, of the first embedded broker on 127.0.0.1;
     * 0 = any free port. Used only when [kafka] has no bootstrap.servers. Default 0. */
    guint port;
    /* [broker] brokers: number of embedded brokers, 1..16. Default 1. */
    guint brokers;
    /* [broker] partitions: partitions of the input topics (names) and of the changelog
     * that the embedded broker creates, 1..1000 (request and output topics get 1; `tally
     * broker` uses it for every topic it creates). Default 4. */
    guint partitions;
  } broker;

  struct
  {
    /* [shutdown] timeout_ms: milliseconds, 1..600000; the longest a SIGINT/SIGTERM
     * shutdown may take (drain, final snapshot, checkpoint, commit, flush). Default
     * 10000. */
    guint timeout_ms;
  } shutdown;

  struct
  {
    /* [log] level: `error` | `critical` | `warning` | `message` | `info` | `debug`; the
     * least severe level printed. Default `message`. Stored as the single GLogLevelFlags
     * bit of that level: a message of level L is printed when L <= this value. */
    GLogLevelFlags level;
  } log;

  struct
  {
    /* [metrics] listen: `HOST:PORT` (IPv6 hosts in brackets) where `tally run` serves
     * /metrics (Prometheus text format), /healthz and /readyz over HTTP; a bare `PORT`
     * means 127.0.0.1:PORT; no other form binds beyond loopback. Default unset: no
     * listener. */
    char *listen;
    /* [metrics] tls_cert_file, tls_key_file: paths of a PEM certificate (chain) and its
     * PEM private key; both or neither. Set, the listener serves HTTPS only (as
     * exporter-toolkit's tls_server_config cert_file, key_file). Default unset: HTTP. */
    char *tls_cert_file;
    char *tls_key_file;
    /* [metrics] basic_auth_users: `USER:BCRYPT_HASH` items (`;`-separated in the file),
     * each hash `$2a$`, `$2b$` or `$2y$`; set, every request needs HTTP basic
     * authentication as one of them (exporter-toolkit's basic_auth_users). A secret:
     * redacted by tally_config_to_string(). Default unset (NULL): no authentication. */
    char **basic_auth_users;
  } metrics;
} TallyConfig;

/**
 * tally_config_new_default:
 *
 * Creates a configuration holding every default and no [kafka] properties; no file and no
 * environment are read. [aggregator] shards is resolved to the number of processors.
 *
 * Thread: any.
 *
 * Returns: (transfer full): a new #TallyConfig; free with tally_config_free().
 */
G_GNUC_WARN_UNUSED_RESULT
TallyConfig *tally_config_new_default (void);

/**
 * tally_config_load:
 * @explicit_path: (nullable): the path given with `--config`, or %NULL.
 * @error: return location for a #GError, or %NULL.
 *
 * Finds, reads and validates `tally.conf`, then applies `TALLY_<GROUP>_<KEY>` environment
 * overrides (validated the same way). Lookup order, first match wins:
 *
 * 1. @explicit_path, when not %NULL;
 * 2. `$TALLY_CONFIG`, when set and not empty;
 * 3. `./tally.conf` (current directory);
 * 4. `$XDG_CONFIG_HOME/tally/tally.conf` (g_get_user_config_dir(), so `~/.config` when
 *    unset);
 * 5. `/etc/tally/tally.conf` (and `SYSCONFDIR/tally/tally.conf` when Tally is installed
 *    under another prefix).
 *
 * A file named by 1 or 2 that does not exist is %TALLY_CONFIG_ERROR_NOT_FOUND; 3–5 are
 * tried only when they exist. When none exists the result holds the defaults (with
 * environment overrides) and `source_path` is %NULL.
 *
 * Reads the process environment: call it before starting threads that call setenv().
 *
 * Returns: (transfer full) (nullable): the configuration, or %NULL with @error set to any
 *   #TallyConfigError; free with tally_config_free().
 */
G_GNUC_WARN_UNUSED_RESULT
TallyConfig *tally_config_load (const char *explicit_path, GError **error);

/**
 * tally_config_load_from_data:
 * @data: key-file text (need not be NUL-terminated).
 * @len: length of @data in bytes, or -1 when @data is NUL-terminated.
 * @name_for_errors: (nullable): the name used in error messages and stored as
 *   `source_path`, such as a path; %NULL means `<data>`.
 * @error: return location for a #GError, or %NULL.
 *
 * Validates @data exactly as tally_config_load() validates a file, then applies the
 * environment overrides.
 *
 * Returns: (transfer full) (nullable): the configuration, or %NULL with @error set to a
 *   #TallyConfigError (never %TALLY_CONFIG_ERROR_NOT_FOUND or %TALLY_CONFIG_ERROR_READ).
 */
G_GNUC_WARN_UNUSED_RESULT
TallyConfig *tally_config_load_from_data (const char *data, gssize len, const char *name_for_errors,
                                          GError **error);

/**
 * TallyConfigOverride:
 * @group: the key-file group, such as `aggregator`
 * @key: the key in @group, such as `shards`
 * @value: the value as it would be written in the key-file, unescaped (UTF-8; a line
 *   break in it is kept as one)
 * @origin: where the value was set, for error messages, such as
 *   `tally.shards (plugin property)`
 *
 * One value set on top of a key-file's text, for
 * tally_config_load_from_data_with_overrides(). All members are borrowed.
 */
typedef struct
{
  const char *group;
  const char *key;
  const char *value;
  const char *origin;
} TallyConfigOverride;

/**
 * tally_config_load_from_data_with_overrides:
 * @data: key-file text (need not be NUL-terminated).
 * @len: length of @data in bytes, or -1 when @data is NUL-terminated.
 * @name_for_errors: (nullable): as for tally_config_load_from_data().
 * @overrides: (array length=n_overrides) (nullable): values set on top of @data, in order.
 * @n_overrides: the length of @overrides.
 * @error: return location for a #GError, or %NULL.
 *
 * As tally_config_load_from_data(), with @overrides set after @data is read and before the
 * environment overrides (which stay on top). An error about a key of @data names its file
 * and line; one about an override names the override's @origin instead of a line that
 * does not exist. Used by the librdkafka plugin for its `tally.*` properties.
 *
 * Returns: (transfer full) (nullable): the configuration, or %NULL with @error set as for
 *   tally_config_load_from_data().
 */
G_GNUC_WARN_UNUSED_RESULT
TallyConfig *tally_config_load_from_data_with_overrides (const char *data, gssize len,
                                                         const char *name_for_errors,
                                                         const TallyConfigOverride *overrides,
                                                         guint n_overrides, GError **error);

/**
 * tally_config_search_paths:
 * @explicit_path: (nullable): the path given with `--config`, or %NULL.
 *
 * The candidate files tally_config_load() would try, in order, given the current
 * environment and working directory (documentation and tests; see tally_config_load()).
 *
 * Returns: (transfer full) (array zero-terminated=1): the paths; free with g_strfreev().
 */
G_GNUC_WARN_UNUSED_RESULT
char **tally_config_search_paths (const char *explicit_path);

/**
 * tally_config_apply_kafka:
 * @config: a configuration.
 * @conf: a librdkafka configuration to fill (not consumed; the caller still owns it).
 * @error: return location for a #GError, or %NULL.
 *
 * Sets every [kafka] property on @conf with rd_kafka_conf_set(), in file order. Topic
 * properties (such as `compression.type` or `message.timeout.ms`) go to the default topic
 * configuration, as rd_kafka_conf_set() does. Callers set Tally's own properties
 * (`group.id`, `enable.auto.offset.store`, ...) after this call.
 *
 * Thread: any; @conf must not be in use by another thread.
 *
 * Returns: %TRUE on success; %FALSE with @error set to %TALLY_CONFIG_ERROR_KAFKA, whose
 *   message names the origin (file and line, or variable), the group and the property,
 *   followed by librdkafka's error text (secret values redacted).
 */
gboolean tally_config_apply_kafka (const TallyConfig *config, rd_kafka_conf_t *conf,
                                   GError **error);

/**
 * tally_config_set_kafka:
 * @config: a loaded configuration, changed in place.
 * @name: a librdkafka property name, such as `security.protocol`.
 * @value: its value.
 * @origin: where the setting comes from, for error messages, such as `-X` (the
 *   command-line option of `tally run` and `tally snapshot`).
 * @error: return location for a #GError, or %NULL.
 *
 * Sets one [kafka] property after loading, with the same checks a [kafka] key of the file
 * gets (a property Tally owns such as `group.id` is %TALLY_CONFIG_ERROR_UNKNOWN_KEY, an
 * empty value %TALLY_CONFIG_ERROR_INVALID_VALUE, a value rd_kafka_conf_set() refuses
 * %TALLY_CONFIG_ERROR_KAFKA, a `message.max.bytes` too small for [output]
 * max_record_bytes %TALLY_CONFIG_ERROR_INVALID_VALUE). The new setting wins over the file
 * and the environment: earlier settings of @name are removed and it is appended, so it is
 * applied last by tally_config_apply_kafka(). Setting `bootstrap.servers` (or
 * `metadata.broker.list`) sets `has_bootstrap`. Main thread, before the configuration is
 * shared.
 *
 * Returns: %TRUE when set; %FALSE with @error set and @config unchanged.
 */
gboolean tally_config_set_kafka (TallyConfig *config, const char *name, const char *value,
                                 const char *origin, GError **error);

/**
 * tally_config_check_clients:
 * @config: a configuration.
 * @error: return location for a #GError, or %NULL.
 *
 * Builds the client configurations `tally run` builds from @config: a consumer (the
 * [kafka] properties, then the group.id, auto.offset.reset and offset-commit settings of
 * the source) and an idempotent producer (the publisher's and the checkpoint's), and
 * makes a client of each with rd_kafka_new(), then destroys it. That is where librdkafka
 * checks what rd_kafka_conf_set() cannot: combinations of properties, such as a
 * `sasl.mechanisms` the build does not support once `security.protocol` is SASL_*.
 * Nothing connects: `bootstrap.servers` and `metadata.broker.list` are left out, and so
 * is `plugin.library.paths` (a plugin is loaded only by the clients that use it).
 * librdkafka logs nothing meanwhile. `tally check-config`, `tally run` and `tally
 * snapshot` call it after loading. Any thread; it starts and joins librdkafka's threads.
 *
 * Returns: %TRUE when librdkafka accepts both; otherwise %FALSE with @error set to
 *   %TALLY_CONFIG_ERROR_KAFKA, naming the origin (file and line, environment variable or
 *   option), the group and the property librdkafka blames (the one its message quotes by
 *   name or value, else the first whose addition makes it fail), then librdkafka's
 *   reason.
 */
gboolean tally_config_check_clients (const TallyConfig *config, GError **error);

/**
 * tally_config_kafka_get:
 * @config: a configuration.
 * @name: a librdkafka property name.
 *
 * Looks up a [kafka] property as set by the file or the environment (librdkafka defaults
 * are not known here).
 *
 * Returns: (transfer none) (nullable): its value, or %NULL when not set.
 */
const char *tally_config_kafka_get (const TallyConfig *config, const char *name);

/**
 * tally_config_tokenizer_options:
 * @config: a configuration, as tally_config_load() returns it.
 * @options: (out caller-allocates): the tokenizer options it means.
 *
 * The one translation of the [tokenizer] group into #TallyTokenizerOptions, used by the
 * Kafka source, the librdkafka plugin and `tally count`, so that all three split words
 * alike: `mode` unicode/whitespace/record to %TALLY_TOKENIZER_UNICODE,
 * %TALLY_TOKENIZER_WHITESPACE and %TALLY_TOKENIZER_RECORD; `nfkc` as it is;
 * `max_word_bytes` in bytes as it is; `long_words` truncate/drop to
 * %TALLY_TOKENIZER_LONG_TRUNCATE and %TALLY_TOKENIZER_LONG_DROP. Everything else keeps
 * tally_tokenizer_options_init()'s defaults.
 *
 * A loaded configuration's values are always in range (the loader checks max_word_bytes
 * against %TALLY_TOKENIZER_MIN_WORD_BYTES and %TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT). For a
 * #TallyConfig changed by hand, a max_word_bytes out of that range is clamped into it and
 * an unknown mode means unicode, so @options always pass tally_tokenizer_options_validate()
 * and can go to tally_tokenizer_new() as they are. Cannot fail; any thread.
 */
void tally_config_tokenizer_options (const TallyConfig *config, TallyTokenizerOptions *options);

/**
 * tally_config_parse_listen:
 * @listen: `HOST:PORT`, `[IPV6]:PORT` or a bare `PORT` (then 127.0.0.1); HOST is an IP
 *   address or `localhost`
 * @error: return location for %TALLY_CONFIG_ERROR_INVALID_VALUE, a one-line message
 *   that quotes @listen (without a file, group or key)
 *
 * Parses `[metrics] listen` (and the plugin's `tally.metrics.listen`) into the address
 * the metrics server binds; the loader checks the key with it, so check-config and
 * `tally run` agree. Any thread.
 *
 * Returns: (transfer full) (nullable): the socket address (a #GInetSocketAddress)
 */
GSocketAddress *tally_config_parse_listen (const char *listen, GError **error);

/**
 * tally_config_check_topic_name:
 * @topic: a candidate topic name (not a `^regex`), NUL-terminated.
 * @error: return location for a #GError, or %NULL.
 *
 * Checks @topic against Kafka's rules for topic names (kafka.common.internals.Topic): not
 * empty, not `.` or `..`, at most 249 characters of ASCII letters, digits, `.`, `_` and
 * `-`. The same check the loader applies to every topic key. Any thread.
 *
 * Returns: %TRUE for a legal name; otherwise %FALSE with @error set to
 *   %TALLY_CONFIG_ERROR_INVALID_VALUE, a one-line message that quotes @topic and says why
 *   (without a file, group or key).
 */
gboolean tally_config_check_topic_name (const char *topic, GError **error);

/**
 * tally_config_key_is_secret:
 * @key: a key or librdkafka property name.
 *
 * Whether values of @key are secrets that must never be printed or logged: any key
 * containing (ASCII case-insensitively) `password`, `secret`, `token`, `credential`,
 * `sasl.username`, `sasl.oauthbearer.config`, `sasl.jaas`, `ssl.key`, `ssl_key` or
 * `basic_auth` (the bcrypt hashes of [metrics] basic_auth_users, which exporter-toolkit
 * also treats as secrets).
 *
 * Returns: %TRUE for a secret.
 */
gboolean tally_config_key_is_secret (const char *key);

/**
 * tally_config_to_string:
 * @config: a configuration.
 * @redact_secrets: replace the value of every secret key with `<redacted>`.
 *
 * The effective configuration as a key-file, every group and key of the schema in the
 * documented order with its value (defaults included), then the [kafka] properties, with
 * a leading comment naming the source file and the environment overrides applied. Without
 * redaction, the text loads back into an equal configuration.
 *
 * Returns: (transfer full): UTF-8 key-file text; free with g_free().
 */
G_GNUC_WARN_UNUSED_RESULT
char *tally_config_to_string (const TallyConfig *config, gboolean redact_secrets);

/**
 * tally_config_free:
 * @config: (nullable) (transfer full): a configuration.
 *
 * Frees @config and everything it owns.
 */
void tally_config_free (TallyConfig *config);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyConfig, tally_config_free)

G_END_DECLS
