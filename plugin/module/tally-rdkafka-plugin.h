/* tally-rdkafka-plugin.h — Tally as a librdkafka plugin: word counts inside any consumer.
 *
 * The loadable module `libtally-rdkafka.so` (built from tally-rdkafka-plugin.c, linked to
 * libtally) exports one symbol, conf_init(), the entry point of librdkafka's plugin ABI.
 * Any librdkafka-based client loads it with the configuration property
 * `plugin.library.paths` (kcat `-X plugin.library.paths=libtally-rdkafka`, Python
 * confluent-kafka `{'plugin.library.paths': ...}`): librdkafka dlopen()s the path as
 * given, then with ".so" appended, and calls conf_init() on the configuration object.
 *
 * What it then does (docs/plugin.md has the user's view):
 *
 * - configuration: it handles the properties below (`tally.*`) through an on_conf_set
 *   interceptor. They must be set after `plugin.library.paths` (before it, librdkafka does
 *   not know them yet). A bad value, an unknown `tally.*` name, a key-file that cannot be
 *   read or fails validation, or loading the plugin twice into one configuration makes
 *   rd_kafka_conf_set() fail with RD_KAFKA_CONF_INVALID and an error text that starts with
 *   the property name. Copies of the configuration (rd_kafka_conf_dup()) keep the plugin
 *   and its settings (on_conf_dup); each copy is freed on its own (on_conf_destroy).
 * - consumers: when a consumer is created (on_new) it starts its own aggregator shards,
 *   an arbiter thread ("tally-plugin") for a snapshot publisher (its own producer, created
 *   without plugins so it cannot recurse) and a request reader, and installs on_consume:
 *   each record value consumed without error is tokenized on the host's thread and its
 *   words are batched per partition (the aggregators' store), never blocking that thread
 *   for longer than `tally.full.wait.ms`. Snapshots are published for each record on the
 *   request topic, every [snapshot] interval_ms, and once more, final, when the client is
 *   destroyed (on_destroy). SIGUSR1 and the host's main loop are never touched.
 * - producers (and admin clients): the plugin logs that it has nothing to count and
 *   stays inactive. That is documented behaviour, not an error: a configuration shared
 *   by a host's consumer and producer can carry the plugin.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>
#include <gmodule.h>
#include <librdkafka/rdkafka.h>

G_BEGIN_DECLS

/**
 * TALLY_RDKAFKA_PLUGIN_ERROR:
 *
 * Error domain of the librdkafka plugin. Errors in this domain are from
 * #TallyRdkafkaPluginError; their messages become librdkafka error strings.
 */
#define TALLY_RDKAFKA_PLUGIN_ERROR (tally_rdkafka_plugin_error_quark ())

/**
 * TallyRdkafkaPluginError:
 * @TALLY_RDKAFKA_PLUGIN_ERROR_UNKNOWN_PROPERTY: a `tally.*` property the plugin does not
 *   know; the message lists the known ones.
 * @TALLY_RDKAFKA_PLUGIN_ERROR_INVALID_VALUE: a `tally.*` property has a value out of its
 *   range or of the wrong form.
 * @TALLY_RDKAFKA_PLUGIN_ERROR_KEY_FILE: the key-file named by `tally.config` cannot be
 *   read or fails Tally's validation (the message carries the validation error: file,
 *   line, group and key), or its [kafka] group sets `plugin.library.paths`.
 * @TALLY_RDKAFKA_PLUGIN_ERROR_ALREADY_LOADED: conf_init() was called a second time on a
 *   configuration that already has the plugin (two spellings of its path in
 *   `plugin.library.paths`, or the property set twice).
 * @TALLY_RDKAFKA_PLUGIN_ERROR_CLIENT: the plugin's own clients (snapshot producer,
 *   request reader) could not be created; the plugin stays inactive for that consumer.
 *
 * Errors of the librdkafka plugin.
 */
typedef enum
{
  TALLY_RDKAFKA_PLUGIN_ERROR_UNKNOWN_PROPERTY,
  TALLY_RDKAFKA_PLUGIN_ERROR_INVALID_VALUE,
  TALLY_RDKAFKA_PLUGIN_ERROR_KEY_FILE,
  TALLY_RDKAFKA_PLUGIN_ERROR_ALREADY_LOADED,
  TALLY_RDKAFKA_PLUGIN_ERROR_CLIENT,
} TallyRdkafkaPluginError;

GQuark tally_rdkafka_plugin_error_quark (void);

/* The properties, as set with rd_kafka_conf_set() after plugin.library.paths. */

/** TALLY_RDKAFKA_PLUGIN_PROP_CONFIG: `tally.config`, the path of a tally.conf key-file,
 * read and validated when the property is set. Without it the defaults apply; no
 * default path is searched inside a host process. [input] and [checkpoint] are not used
 * (the host decides what it consumes; counts live as long as the client). */
#define TALLY_RDKAFKA_PLUGIN_PROP_CONFIG "tally.config"
/** TALLY_RDKAFKA_PLUGIN_PROP_OUTPUT_TOPIC: `tally.output.topic`, overrides [output] topic. */
#define TALLY_RDKAFKA_PLUGIN_PROP_OUTPUT_TOPIC "tally.output.topic"
/** TALLY_RDKAFKA_PLUGIN_PROP_REQUESTS_TOPIC: `tally.requests.topic`, overrides [requests]
 * topic. */
#define TALLY_RDKAFKA_PLUGIN_PROP_REQUESTS_TOPIC "tally.requests.topic"
/** TALLY_RDKAFKA_PLUGIN_PROP_TOKENIZER: `tally.tokenizer`, overrides [tokenizer] mode
 * (`unicode`, `whitespace` or `record`). */
#define TALLY_RDKAFKA_PLUGIN_PROP_TOKENIZER "tally.tokenizer"
/** TALLY_RDKAFKA_PLUGIN_PROP_SHARDS: `tally.shards`, overrides [aggregator] shards
 * (1..256; 0 = one per processor). */
#define TALLY_RDKAFKA_PLUGIN_PROP_SHARDS "tally.shards"
/** TALLY_RDKAFKA_PLUGIN_PROP_METRICS_LISTEN: `tally.metrics.listen`, overrides [metrics]
 * listen: `HOST:PORT` (or `PORT` on 127.0.0.1) where the plugin serves /metrics, /healthz
 * and /readyz for its host (docs/operations.md); unset (the default): nothing is served. */
#define TALLY_RDKAFKA_PLUGIN_PROP_METRICS_LISTEN "tally.metrics.listen"
/** TALLY_RDKAFKA_PLUGIN_PROP_FULL: `tally.full`, `drop` (default) or `wait`: what the host's
 * thread does with a record when the aggregators' mailboxes are full. `drop` counts none of
 * the record's words and adds one to a counter that is logged (a warning every 10 s while
 * it grows, and with the final snapshot); `wait` retries for up to `tally.full.wait.ms`
 * and then drops. A record is never counted in part. */
#define TALLY_RDKAFKA_PLUGIN_PROP_FULL "tally.full"
/** TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS: `tally.full.wait.ms`, milliseconds, 0..60000,
 * default 100: the longest `tally.full=wait` holds the host's thread per record. */
#define TALLY_RDKAFKA_PLUGIN_PROP_FULL_WAIT_MS "tally.full.wait.ms"

/**
 * conf_init:
 * @conf: the configuration object whose `plugin.library.paths` names this module
 * @plug_opaquep: (out): the plugin's opaque; set to %NULL (the state is per configuration)
 * @errstr: where an error text goes
 * @errstr_size: its size in bytes
 *
 * The entry point librdkafka's plugin loader calls (rd_kafka_plugin_f_conf_init_t in
 * rdkafka.h) right after dlopen(). Registers the on_conf_set, on_conf_dup,
 * on_conf_destroy and on_new interceptors on @conf, named "tally". Called on the thread
 * that sets `plugin.library.paths`, or that duplicates a configuration carrying it.
 *
 * Returns: %RD_KAFKA_RESP_ERR_NO_ERROR, or %RD_KAFKA_RESP_ERR__CONFLICT with @errstr set
 *   when the plugin is already loaded into @conf (then `plugin.library.paths` fails with
 *   RD_KAFKA_CONF_INVALID; the first load stays in effect)
 */
G_MODULE_EXPORT
rd_kafka_resp_err_t conf_init (rd_kafka_conf_t *conf, void **plug_opaquep, char *errstr,
                               size_t errstr_size);

G_END_DECLS
