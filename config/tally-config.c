/* tally-config.c — loading and strict validation of `tally.conf`.
 *
 * The schema is one table (`schema[]` below): each entry names a group and key, its type
 * (string, topic, topic list, unsigned number, boolean, one of a set of names), its range
 * and unit, and the offset of the TallyConfig field it fills. The [kafka] group is open:
 * any librdkafka property, checked by rd_kafka_conf_set() on a scratch configuration.
 *
 * Loading goes in four passes so that every error can name file, line, group and key:
 *
 * 1. A line scan of the raw bytes, before GKeyFile sees them: a UTF-8 byte order mark,
 *    invalid UTF-8, lines that are neither group, pair nor comment (by GKeyFile's own rules
 *    for group and key names, so GKeyFile never fails later without a line number), and
 *    duplicate groups and keys (GKeyFile silently merges the former and keeps the last of
 *    the latter). The scan records the line of every group and key ("origins"). A
 *    malformed line is quoted in the message only when it cannot hold a secret.
 * 2. GKeyFile parses the text (escapes such as `\s` and `\;`, lists separated by `;`).
 * 3. `TALLY_<GROUP>_<KEY>` environment variables are written into the GKeyFile on top,
 *    with the variable's name as their origin, so they are validated exactly like the file.
 * 4. Every group and key, in file order, is checked against the schema and converted into
 *    the TallyConfig field; unknown names get a "did you mean" from the Levenshtein
 *    distance to the known ones.
 *
 * Secrets (tally_config_key_is_secret()) never appear in an error message or in
 * tally_config_to_string() output with redaction on.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-config.h"
#include "tally-build-config.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */ G_DEFINE_QUARK (tally-config-error-quark, tally_config_error) /* clang-format on */

/* Bytes of a record that [output] max_record_bytes leaves below message.max.bytes for the
 * record framing that librdkafka counts against that limit. */
#define RECORD_FRAMING_BYTES 1024
/* librdkafka's default message.max.bytes. */
#define RDKAFKA_DEFAULT_MESSAGE_MAX_BYTES 1000000
/* Kafka's limit on topic name length (kafka.common.internals.Topic). */
#define TOPIC_NAME_MAX 249
#define MAX_SHARDS 256

/* ---------------------------------------------------------------------------------------
 * The schema
 * ------------------------------------------------------------------------------------- */

typedef enum
{
  TYPE_STRING,     /* non-empty string, no surrounding whitespace */
  TYPE_TOPIC,      /* a legal Kafka topic name */
  TYPE_TOPIC_LIST, /* `;`-separated topic names or ^regexes */
  TYPE_UINT,       /* guint in [min, max] */
  TYPE_SIZE,       /* gsize in [min, max] */
  TYPE_BOOL,       /* true | false (also 1 | 0, as GKeyFile) */
  TYPE_ENUM,       /* one of choices[].nick, stored as an int-sized enum */
  TYPE_FILE,       /* a string naming a readable regular file (relative: to the cwd) */
  TYPE_USER_LIST,  /* `;`-separated USER:BCRYPT_HASH items, users distinct */
} KeyType;

typedef struct
{
  const char *nick;
  int value;
} Choice;

typedef struct
{
  const char *group;
  const char *key;
  KeyType type;
  gsize offset;
  guint64 min;
  guint64 max;
  const char *unit;
  const Choice *choices;
  gboolean optional; /* may be left unset (NULL); only for strings */
} KeySpec;

static const Choice offset_reset_choices[] = {
  { "earliest", TALLY_CONFIG_OFFSET_RESET_EARLIEST },
  { "latest", TALLY_CONFIG_OFFSET_RESET_LATEST },
  { NULL, 0 },
};

static const Choice format_choices[] = {
  { "json", TALLY_CONFIG_FORMAT_JSON },
  { NULL, 0 },
};

static const Choice guarantee_choices[] = {
  { "exactly_once", TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE },
  { "at_least_once", TALLY_CONFIG_GUARANTEE_AT_LEAST_ONCE },
  { NULL, 0 },
};

static const Choice tokenizer_mode_choices[] = {
  { "unicode", TALLY_CONFIG_TOKENIZER_UNICODE },
  { "whitespace", TALLY_CONFIG_TOKENIZER_WHITESPACE },
  { "record", TALLY_CONFIG_TOKENIZER_RECORD },
  { NULL, 0 },
};

static const Choice long_words_choices[] = {
  { "truncate", TALLY_CONFIG_LONG_WORDS_TRUNCATE },
  { "drop", TALLY_CONFIG_LONG_WORDS_DROP },
  { NULL, 0 },
};

static const Choice late_choices[] = {
  { "all-time", TALLY_CONFIG_LATE_ALL_TIME },
  { "drop", TALLY_CONFIG_LATE_DROP },
  { NULL, 0 },
};

static const Choice log_level_choices[] = {
  { "error", G_LOG_LEVEL_ERROR },
  { "critical", G_LOG_LEVEL_CRITICAL },
  { "warning", G_LOG_LEVEL_WARNING },
  { "message", G_LOG_LEVEL_MESSAGE },
  { "info", G_LOG_LEVEL_INFO },
  { "debug", G_LOG_LEVEL_DEBUG },
  { NULL, 0 },
};

#define OFF(field) offsetof (TallyConfig, field)

/* Groups in documented order; [kafka] has no table entries (any librdkafka property). */
static const char *const known_groups[] = {
  "kafka",   "input",     "output", "requests", "snapshot", "checkpoint", "aggregator",
  "windows", "tokenizer", "broker", "shutdown", "log",      "metrics",    NULL,
};

static const KeySpec schema[] = {
  { "input", "topics", TYPE_TOPIC_LIST, OFF (input.topics) },
  { "input", "group_id", TYPE_STRING, OFF (input.group_id) },
  { "input", "auto_offset_reset", TYPE_ENUM, OFF (input.auto_offset_reset), 0, 0, NULL,
    offset_reset_choices },
  { "input", "max_batch_records", TYPE_UINT, OFF (input.max_batch_records), 1, 1000000, "records" },
  { "output", "topic", TYPE_TOPIC, OFF (output.topic) },
  { "output", "max_record_bytes", TYPE_SIZE, OFF (output.max_record_bytes), 1024,
    1000000000 - RECORD_FRAMING_BYTES, "bytes" },
  { "output", "retention_ms", TYPE_UINT, OFF (output.retention_ms), 0, G_MAXINT32, "ms" },
  { "output", "format", TYPE_ENUM, OFF (output.format), 0, 0, NULL, format_choices },
  { "requests", "topic", TYPE_TOPIC, OFF (requests.topic) },
  { "snapshot", "interval_ms", TYPE_UINT, OFF (snapshot.interval_ms), 0, 86400000, "ms" },
  { "snapshot", "timeout_ms", TYPE_UINT, OFF (snapshot.timeout_ms), 1, 3600000, "ms" },
  { "checkpoint", "enabled", TYPE_BOOL, OFF (checkpoint.enabled) },
  { "checkpoint", "changelog_topic", TYPE_TOPIC, OFF (checkpoint.changelog_topic) },
  { "checkpoint", "interval_ms", TYPE_UINT, OFF (checkpoint.interval_ms), 1, 3600000, "ms" },
  { "checkpoint", "guarantee", TYPE_ENUM, OFF (checkpoint.guarantee), 0, 0, NULL,
    guarantee_choices },
  { "aggregator", "shards", TYPE_UINT, OFF (aggregator.shards), 0, MAX_SHARDS, "shards" },
  { "aggregator", "mailbox_capacity", TYPE_UINT, OFF (aggregator.mailbox_capacity), 1, 1048576,
    "messages" },
  { "windows", "enabled", TYPE_BOOL, OFF (windows.enabled) },
  { "windows", "size_ms", TYPE_UINT, OFF (windows.size_ms), 1000, 604800000, "ms" },
  { "windows", "bucket_ms", TYPE_UINT, OFF (windows.bucket_ms), 1000, 86400000, "ms" },
  { "windows", "grace_ms", TYPE_UINT, OFF (windows.grace_ms), 0, 86400000, "ms" },
  { "windows", "idle_ms", TYPE_UINT, OFF (windows.idle_ms), 1, 86400000, "ms" },
  { "windows", "retain", TYPE_UINT, OFF (windows.retain), 0, 10000, "windows" },
  { "windows", "late", TYPE_ENUM, OFF (windows.late), 0, 0, NULL, late_choices },
  { "windows", "publish", TYPE_BOOL, OFF (windows.publish) },
  { "tokenizer", "mode", TYPE_ENUM, OFF (tokenizer.mode), 0, 0, NULL, tokenizer_mode_choices },
  { "tokenizer", "nfkc", TYPE_BOOL, OFF (tokenizer.nfkc) },
  { "tokenizer", "max_word_bytes", TYPE_UINT, OFF (tokenizer.max_word_bytes),
    TALLY_TOKENIZER_MIN_WORD_BYTES, TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT, "bytes" },
  { "tokenizer", "long_words", TYPE_ENUM, OFF (tokenizer.long_words), 0, 0, NULL,
    long_words_choices },
  { "broker", "port", TYPE_UINT, OFF (broker.port), 0, 65535, "port" },
  { "broker", "brokers", TYPE_UINT, OFF (broker.brokers), 1, 16, "brokers" },
  { "broker", "partitions", TYPE_UINT, OFF (broker.partitions), 1, 1000, "partitions" },
  { "shutdown", "timeout_ms", TYPE_UINT, OFF (shutdown.timeout_ms), 1, 600000, "ms" },
  { "log", "level", TYPE_ENUM, OFF (log.level), 0, 0, NULL, log_level_choices },
  { "metrics", "listen", TYPE_STRING, OFF (metrics.listen) },
  { "metrics", "tls_cert_file", TYPE_FILE, OFF (metrics.tls_cert_file) },
  { "metrics", "tls_key_file", TYPE_FILE, OFF (metrics.tls_key_file) },
  { "metrics", "basic_auth_users", TYPE_USER_LIST, OFF (metrics.basic_auth_users) },
};

#define FIELD(config, spec, type) ((type *)(gpointer)((char *)(config) + (spec)->offset))

/* Properties Tally sets itself from typed keys: not allowed in [kafka]. */
static const struct
{
  const char *property;
  const char *instead;
} kafka_owned[] = {
  { "group.id", "[input] group_id" },
  { "auto.offset.reset", "[input] auto_offset_reset" },
};

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------- */

static gboolean
is_known_group (const char *group)
{
  for (guint i = 0; known_groups[i] != NULL; i++)
    if (strcmp (known_groups[i], group) == 0)
      return TRUE;
  return FALSE;
}

static const KeySpec *
find_spec (const char *group, const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (schema); i++)
    if (strcmp (schema[i].group, group) == 0 && strcmp (schema[i].key, key) == 0)
      return &schema[i];
  return NULL;
}

/* Levenshtein distance over bytes, ASCII case-insensitive. */
static guint
edit_distance (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  g_autofree guint *row = g_new (guint, lb + 1);

  for (gsize j = 0; j <= lb; j++)
    row[j] = j;
  for (gsize i = 1; i <= la; i++)
    {
      guint diag = row[0];
      row[0] = i;
      for (gsize j = 1; j <= lb; j++)
        {
          guint up = row[j];
          guint cost = g_ascii_tolower (a[i - 1]) == g_ascii_tolower (b[j - 1]) ? 0 : 1;
          row[j] = MIN (MIN (row[j] + 1, row[j - 1] + 1), diag + cost);
          diag = up;
        }
    }
  return row[lb];
}

/* The candidate nearest to @word when near enough to be a likely typo, else NULL. */
static const char *
nearest (const char *word, const char *const *candidates, gsize n_candidates)
{
  const char *best = NULL;
  guint best_distance = G_MAXUINT;
  guint limit = MAX (2, (guint)strlen (word) / 3);

  for (gsize i = 0; i < n_candidates && candidates[i] != NULL; i++)
    {
      guint d = edit_distance (word, candidates[i]);
      if (d < best_distance)
        {
          best_distance = d;
          best = candidates[i];
        }
    }
  return best_distance <= limit ? best : NULL;
}

/* The candidate that has @key as one of its '_'-separated words ([checkpoint] topic:
 * changelog_topic), however far in spelling, else NULL: the hint after nearest(). */
static const char *
key_with_word (const char *key, const char *const *candidates, gsize n_candidates)
{
  gsize kl = strlen (key);

  for (gsize c = 0; c < n_candidates; c++)
    {
      gsize cl = strlen (candidates[c]);

      if (cl > kl
          && ((candidates[c][cl - kl - 1] == '_' && strcmp (candidates[c] + cl - kl, key) == 0)
              || (candidates[c][kl] == '_' && strncmp (candidates[c], key, kl) == 0)))
        return candidates[c];
    }
  return NULL;
}

static const char *
choice_nick (const Choice *choices, int value)
{
  for (const Choice *c = choices; c->nick != NULL; c++)
    if (c->value == value)
      return c->nick;
  return "?";
}

static char *
origin_key (const char *group, const char *key)
{
  return g_strconcat (group, "\x1f", key, NULL);
}

/* Sets @error to "ORIGIN: [group] key: MESSAGE" (parts left out when NULL). */
G_GNUC_PRINTF (6, 7)
static void
config_error (GError **error, TallyConfigError code, const char *origin, const char *group,
              const char *key, const char *format, ...)
{
  va_list ap;
  g_autofree char *message = NULL;
  g_autoptr (GString) s = g_string_new (origin);
  g_autoptr (GString) clean = g_string_new (NULL);

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);

  if (group != NULL)
    g_string_append_printf (s, ": [%s]", group);
  if (key != NULL)
    g_string_append_printf (s, "%s%s", group != NULL ? " " : ": ", key);
  g_string_append_printf (s, ": %s", message);
  /* Values and keys quoted in the message may hold control characters (from escapes such
   * as \n): show them escaped, so that a message is always one line. */
  for (const char *c = s->str; *c != '\0'; c++)
    {
      if (*c == '\n')
        g_string_append (clean, "\\n");
      else if (*c == '\t')
        g_string_append (clean, "\\t");
      else if (*c == '\r')
        g_string_append (clean, "\\r");
      else if (g_ascii_iscntrl (*c))
        g_string_append_printf (clean, "\\x%02x", (guint)(guchar)*c);
      else
        g_string_append_c (clean, *c);
    }
  g_set_error_literal (error, TALLY_CONFIG_ERROR, code, clean->str);
}

gboolean
tally_config_key_is_secret (const char *key)
{
  static const char *const needles[] = {
    "password",  "secret",  "token",   "credential", "sasl.username", "sasl.oauthbearer.config",
    "sasl.jaas", "ssl.key", "ssl_key", "basic_auth",
  };
  g_autofree char *lower = NULL;

  g_return_val_if_fail (key != NULL, FALSE);
  lower = g_ascii_strdown (key, -1);
  for (gsize i = 0; i < G_N_ELEMENTS (needles); i++)
    if (strstr (lower, needles[i]) != NULL)
      return TRUE;
  return FALSE;
}

static void
kafka_property_free (gpointer data)
{
  TallyConfigKafkaProperty *p = data;

  if (p == NULL)
    return;
  g_free (p->name);
  if (p->value != NULL)
    memset (p->value, 0, strlen (p->value)); /* secrets do not linger on the heap */
  g_free (p->value);
  g_free (p->origin);
  g_free (p);
}

/* ---------------------------------------------------------------------------------------
 * Defaults, freeing
 * ------------------------------------------------------------------------------------- */

static guint
processors_as_shards (void)
{
  return CLAMP (g_get_num_processors (), 1, MAX_SHARDS);
}

TallyConfig *
tally_config_new_default (void)
{
  TallyConfig *c = g_new0 (TallyConfig, 1);
  const char *default_topics[] = { "tally-input", NULL };

  c->source_path = NULL;
  c->env_overrides = g_new0 (char *, 1);

  c->kafka.properties = g_ptr_array_new_with_free_func (kafka_property_free);
  c->kafka.has_bootstrap = FALSE;

  c->input.topics = g_strdupv ((char **)default_topics);
  c->input.group_id = g_strdup ("tally");
  c->input.auto_offset_reset = TALLY_CONFIG_OFFSET_RESET_EARLIEST;
  c->input.max_batch_records = 1000;

  c->output.topic = g_strdup ("tally-snapshots");
  c->output.max_record_bytes = 900000;
  c->output.retention_ms = 3600000;
  c->output.format = TALLY_CONFIG_FORMAT_JSON;

  c->requests.topic = g_strdup ("tally-requests");

  c->snapshot.interval_ms = 0;
  c->snapshot.timeout_ms = 10000;

  c->checkpoint.enabled = TRUE;
  c->checkpoint.changelog_topic = g_strdup ("tally-changelog");
  c->checkpoint.interval_ms = 1000;
  c->checkpoint.guarantee = TALLY_CONFIG_GUARANTEE_EXACTLY_ONCE;

  c->aggregator.shards = processors_as_shards ();
  c->aggregator.mailbox_capacity = 1024;

  c->tokenizer.mode = TALLY_CONFIG_TOKENIZER_UNICODE;
  c->tokenizer.nfkc = FALSE;
  c->tokenizer.max_word_bytes = TALLY_TOKENIZER_DEFAULT_MAX_WORD_BYTES;
  c->windows.size_ms = 3600000;
  c->windows.bucket_ms = 60000;
  c->windows.idle_ms = 60000;
  c->windows.retain = 1;
  c->tokenizer.long_words = TALLY_CONFIG_LONG_WORDS_TRUNCATE;

  c->broker.port = 0;
  c->broker.brokers = 1;
  c->broker.partitions = 4;

  c->shutdown.timeout_ms = 10000;

  c->log.level = G_LOG_LEVEL_MESSAGE;
  return c;
}

void
tally_config_free (TallyConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->source_path);
  g_strfreev (config->env_overrides);
  g_clear_pointer (&config->kafka.properties, g_ptr_array_unref);
  for (gsize i = 0; i < G_N_ELEMENTS (schema); i++)
    {
      const KeySpec *spec = &schema[i];
      if (spec->type == TYPE_STRING || spec->type == TYPE_TOPIC || spec->type == TYPE_FILE)
        g_free (*FIELD (config, spec, char *));
      else if (spec->type == TYPE_TOPIC_LIST || spec->type == TYPE_USER_LIST)
        g_strfreev (*FIELD (config, spec, char **));
    }
  g_free (config);
}

/* ---------------------------------------------------------------------------------------
 * Pass 1: the line scan
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  const char *name;   /* file name for messages */
  GHashTable *origin; /* "group" or "group\x1fkey" -> "NAME:LINE" or "VAR (environment)" */
} Origins;

static const char *
origin_of (Origins *o, const char *group, const char *key)
{
  g_autofree char *k = key != NULL ? origin_key (group, key) : g_strdup (group);
  const char *v = g_hash_table_lookup (o->origin, k);

  return v != NULL ? v : o->name;
}

/* The key of a `key=value` line (without trailing whitespace), or NULL. */
static char *
line_key (const char *start, const char *end)
{
  const char *eq = memchr (start, '=', end - start);
  g_autofree char *key = NULL;

  if (eq == NULL)
    return NULL;
  key = g_strndup (start, eq - start);
  g_strchomp (key);
  return g_steal_pointer (&key);
}

/* GKeyFile's own rules (g_key_file_is_group_name() and g_key_file_is_key_name() in
 * glib/gkeyfile.c), repeated so that a violation is reported with its line. */
static gboolean
is_group_name (const char *name)
{
  const char *q = name;

  while (*q != '\0' && *q != ']' && *q != '[' && !g_ascii_iscntrl (*q))
    q++;
  return *q == '\0' && q != name;
}

static gboolean
is_key_name (const char *key)
{
  const char *q = key + strcspn (key, "=[]");

  if (q == key || key[0] == ' ' || q[-1] == ' ')
    return FALSE;
  if (*q == '[')
    {
      q++;
      while (*q != '\0'
             && (g_ascii_isalnum (*q) || (guchar)*q >= 0x80 || *q == '-' || *q == '_' || *q == '.'
                 || *q == '@'))
        q++;
      if (*q != ']')
        return FALSE;
      q++;
    }
  return *q == '\0';
}

/* A malformed line, quoted for a message: its first 40 bytes (cut at a character), or
 * just "the line" when it may hold a secret (such as `sasl.password hunter2`). */
static char *
quote_line (const char *s, const char *e)
{
  g_autofree char *line = g_strndup (s, e - s);
  const char *cut = line + MIN (e - s, 40);

  if (tally_config_key_is_secret (line))
    return g_strdup ("the line");
  if (*cut != '\0')
    cut = g_utf8_find_prev_char (line, cut + 1);
  return g_strdup_printf ("“%.*s%s”", (int)(cut - line), line, *cut != '\0' ? "…" : "");
}

static gboolean
scan_lines (const char *data, gsize len, Origins *o, GError **error)
{
  g_autofree char *group = NULL;
  g_autoptr (GHashTable) group_lines
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) key_lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *p = data, *end = data + len;
  guint lineno = 0;

  if (len >= 3 && memcmp (data, "\xEF\xBB\xBF", 3) == 0)
    {
      config_error (error, TALLY_CONFIG_ERROR_ENCODING, o->name, NULL, NULL,
                    "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 "
                    "without a BOM");
      return FALSE;
    }

  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      const char *line_end = nl != NULL ? nl : end;
      const char *s = p, *e = line_end, *bad = NULL;
      g_autofree char *where = NULL;

      lineno++;
      where = g_strdup_printf ("%s:%u", o->name, lineno);
      if (e > s && e[-1] == '\r')
        e--;

      if (!g_utf8_validate_len (s, e - s, &bad))
        {
          /* A key before the bad byte: the bad byte is in that key's value. */
          g_autofree char *key = line_key (s, bad);
          const char *what = key != NULL ? "the value" : "the line";
          if (key != NULL && !g_utf8_validate (key, -1, NULL))
            g_clear_pointer (&key, g_free);
          config_error (error, TALLY_CONFIG_ERROR_ENCODING, where, group, key,
                        "%s is not valid UTF-8 (%s at byte %u of the line); save the file as "
                        "UTF-8",
                        what, *bad == '\0' ? "a NUL byte" : "a bad byte", (guint)(bad - s) + 1);
          return FALSE;
        }

      while (s < e && g_ascii_isspace (*s))
        s++;

      if (s == e || *s == '#')
        ; /* blank or comment */
      else if (*s == '[')
        {
          const char *close = memchr (s, ']', e - s);
          const char *after = close != NULL ? close + 1 : e;
          gpointer first;
          if (close == NULL)
            {
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, NULL, NULL,
                            "a group header needs a closing ']'");
              return FALSE;
            }
          while (after < e && (*after == ' ' || *after == '\t'))
            after++;
          if (after < e)
            {
              g_autofree char *text = quote_line (s, e);
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, NULL, NULL,
                            "%s: text after the ']' of a group header; put each [group] "
                            "header and each key=value pair on a line of its own",
                            text);
              return FALSE;
            }
          g_free (group);
          group = g_strndup (s + 1, close - s - 1);
          if (!is_group_name (group))
            {
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, NULL, NULL,
                            "“[%s]” is not a valid group header: a group name is not empty and "
                            "has no '[' and no control characters",
                            group);
              return FALSE;
            }
          if (g_hash_table_lookup_extended (group_lines, group, NULL, &first))
            {
              config_error (error, TALLY_CONFIG_ERROR_DUPLICATE, where, group, NULL,
                            "the group appears twice (first at line %u); merge the two",
                            GPOINTER_TO_UINT (first));
              return FALSE;
            }
          g_hash_table_insert (group_lines, g_strdup (group), GUINT_TO_POINTER (lineno));
          g_hash_table_insert (o->origin, g_strdup (group), g_strdup (where));
        }
      else
        {
          g_autofree char *key = line_key (s, e);
          g_autofree char *okey = NULL;
          gpointer first;

          if (key == NULL)
            {
              g_autofree char *text = quote_line (s, e);
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, group, NULL,
                            "%s is not a [group] header, a key=value pair or a # comment", text);
              return FALSE;
            }
          if (key[0] == '\0')
            {
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, group, NULL,
                            "a key=value pair needs a key before the '='");
              return FALSE;
            }
          if (!is_key_name (key))
            {
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, group, NULL,
                            "“%s” is not a valid key: '[' and ']' may only enclose a locale at "
                            "its end (and Tally uses no localised keys)",
                            key);
              return FALSE;
            }
          if (group == NULL)
            {
              config_error (error, TALLY_CONFIG_ERROR_PARSE, where, NULL, key,
                            "a key=value pair before any [group] header; put it under its "
                            "group");
              return FALSE;
            }
          okey = origin_key (group, key);
          if (g_hash_table_lookup_extended (key_lines, okey, NULL, &first))
            {
              config_error (error, TALLY_CONFIG_ERROR_DUPLICATE, where, group, key,
                            "the key is set twice (first at line %u); keep only one",
                            GPOINTER_TO_UINT (first));
              return FALSE;
            }
          g_hash_table_insert (key_lines, g_strdup (okey), GUINT_TO_POINTER (lineno));
          g_hash_table_insert (o->origin, g_steal_pointer (&okey), g_strdup (where));
        }
      p = nl != NULL ? nl + 1 : end;
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * Pass 3: environment overrides
 * ------------------------------------------------------------------------------------- */

/* The env variable name of a typed key: TALLY_<GROUP>_<KEY>, uppercased. */
static char *
env_name (const char *group, const char *key)
{
  g_autofree char *raw = g_strdup_printf ("TALLY_%s_%s", group, key);
  char *up = g_ascii_strup (raw, -1);

  for (char *c = up; *c != '\0'; c++)
    if (*c == '.' || *c == '-')
      *c = '_';
  return up;
}

/* TALLY_KAFKA_<REST> -> librdkafka property: lowercase, `__` -> `_`, `_` -> `.`. */
static char *
kafka_property_from_env (const char *rest)
{
  GString *s = g_string_new (NULL);

  for (const char *c = rest; *c != '\0'; c++)
    {
      if (c[0] == '_' && c[1] == '_')
        {
          g_string_append_c (s, '_');
          c++;
        }
      else if (*c == '_')
        g_string_append_c (s, '.');
      else
        g_string_append_c (s, g_ascii_tolower (*c));
    }
  return g_string_free (s, FALSE);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

static gboolean
apply_environment (GKeyFile *kf, Origins *o, GPtrArray *applied, GError **error)
{
  g_auto (GStrv) env = g_get_environ ();
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; env[i] != NULL; i++)
    {
      const char *eq = strchr (env[i], '=');
      if (g_str_has_prefix (env[i], "TALLY_") && eq != NULL)
        g_ptr_array_add (names, g_strndup (env[i], eq - env[i]));
    }
  g_ptr_array_sort (names, compare_strings);

  for (guint i = 0; i < names->len; i++)
    {
      const char *var = g_ptr_array_index (names, i);
      const char *value = g_environ_getenv (env, var);
      g_autofree char *where = g_strdup_printf ("%s (environment)", var);
      g_autofree char *group = NULL;
      g_autofree char *key = NULL;

      for (guint g = 0; known_groups[g] != NULL && group == NULL; g++)
        {
          g_autofree char *prefix = env_name (known_groups[g], "");
          if (g_str_has_prefix (var, prefix))
            {
              group = g_strdup (known_groups[g]);
              if (strcmp (group, "kafka") == 0)
                key = kafka_property_from_env (var + strlen (prefix));
              else
                key = g_ascii_strdown (var + strlen (prefix), -1);
            }
        }
      if (group == NULL)
        continue; /* TALLY_CONFIG and other variables that are not overrides */

      if (*key == '\0' || key[0] == '.' || g_str_has_suffix (key, "."))
        {
          config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, where, group, NULL,
                        "the variable does not name a key");
          return FALSE;
        }
      if (strspn (key, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen (key))
        {
          config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, where, group, NULL,
                        "the variable does not name a key (letters, digits and '_' only)");
          return FALSE;
        }
      if (strcmp (group, "kafka") != 0 && find_spec (group, key) == NULL)
        {
          const char *candidates[G_N_ELEMENTS (schema)];
          g_autofree char *hint = NULL;
          const char *near;
          gsize n = 0;

          /* The keys compared, not the variables (their shared prefix made
           * TALLY_CHECKPOINT_TOPIC nearest to TALLY_CHECKPOINT_ENABLED). */
          for (gsize s = 0; s < G_N_ELEMENTS (schema); s++)
            if (strcmp (schema[s].group, group) == 0)
              candidates[n++] = schema[s].key;
          near = nearest (key, candidates, n);
          if (near == NULL)
            near = key_with_word (key, candidates, n);
          if (near != NULL)
            hint = env_name (group, near);
          config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, where, group, key,
                        "unknown key%s%s%s", hint ? "; did you mean " : "", hint ? hint : "",
                        hint ? "?" : "");
          return FALSE;
        }
      if (!g_utf8_validate (value, -1, NULL))
        {
          config_error (error, TALLY_CONFIG_ERROR_ENCODING, where, group, key,
                        "the value is not valid UTF-8");
          return FALSE;
        }
      if (strchr (value, '\n') != NULL)
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, group, key,
                        "the value contains a line break; write it as \\n");
          return FALSE;
        }
      g_key_file_set_value (kf, group, key, value);
      if (g_hash_table_lookup (o->origin, group) == NULL)
        g_hash_table_insert (o->origin, g_strdup (group), g_strdup (where));
      g_hash_table_insert (o->origin, origin_key (group, key), g_strdup (where));
      g_ptr_array_add (applied, g_strdup (var));
    }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------
 * Pass 4: typed values
 * ------------------------------------------------------------------------------------- */

/* The default of @spec as key-file text, for messages. */
static char *value_text (const TallyConfig *config, const KeySpec *spec, gboolean *unset);

static gboolean
check_empty (const char *value, const KeySpec *spec, const char *where, GError **error)
{
  g_autoptr (TallyConfig) defaults = NULL;
  g_autofree char *text = NULL;
  gboolean unset = FALSE;

  if (*value != '\0')
    return TRUE;
  defaults = tally_config_new_default ();
  text = value_text (defaults, spec, &unset);
  if (unset)
    config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                  "empty value; remove the line to leave it unset");
  else if (strcmp (spec->key, "shards") == 0)
    config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                  "empty value; remove the line to use the default (one per processor)");
  else
    config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                  "empty value; remove the line to use the default (%s)", text);
  return FALSE;
}

static gboolean
is_topic_char (char c)
{
  return g_ascii_isalnum (c) || c == '.' || c == '_' || c == '-';
}

/* Checks one topic name (not a regex), the value of @spec or an item of its list. */
static gboolean
check_topic (const char *topic, const KeySpec *spec, const char *where, GError **error)
{
  g_autoptr (GError) local = NULL;

  if (strchr (topic, ',') != NULL && spec->type != TYPE_TOPIC_LIST)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "“%s”: topic names cannot contain ','; this key takes a single topic", topic);
      return FALSE;
    }
  if (strchr (topic, ',') != NULL)
    {
      g_auto (GStrv) parts = g_strsplit (topic, ",", -1);
      g_autofree char *joined = g_strjoinv (";", parts);
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "“%s”: topic names cannot contain ','; items of a key-file list are "
                    "separated by ';': write %s=%s",
                    topic, spec->key, joined);
      return FALSE;
    }
  if (!tally_config_check_topic_name (topic, &local))
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key, "%s",
                    local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
tally_config_check_topic_name (const char *topic, GError **error)
{
  gsize len;

  g_return_val_if_fail (topic != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  len = strlen (topic);
  if (len == 0)
    {
      g_set_error_literal (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                           "a topic name cannot be empty");
      return FALSE;
    }
  if (g_ascii_isspace (topic[0]) || g_ascii_isspace (topic[len - 1]))
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "“%s”: a topic name cannot start or end with whitespace", topic);
      return FALSE;
    }
  if (strcmp (topic, ".") == 0 || strcmp (topic, "..") == 0)
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "“%s” is not a legal topic name", topic);
      return FALSE;
    }
  if (len > TOPIC_NAME_MAX)
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "a topic name is at most %d characters; this one has %" G_GSIZE_FORMAT,
                   TOPIC_NAME_MAX, len);
      return FALSE;
    }
  for (const char *c = topic; *c != '\0'; c++)
    if (!is_topic_char (*c))
      {
        g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                     "“%s” is not a legal topic name: Kafka topic names use only ASCII "
                     "letters, digits, '.', '_' and '-'",
                     topic);
        return FALSE;
      }
  return TRUE;
}

/* What glibc's regcomp() (ours here, and librdkafka's when it subscribes) may be given for
 * a topic pattern. Its cost grows with the compiled size, and faster still with loops that
 * can match the empty string: fuzzing found `^p+++…` taking 2.8 GB, and on this machine
 * `((a*){1,30}){1,30}` takes 3.5 GB and 3 s, `(a?){1,1000}` and eight nested `(…*)+`
 * more than 20 s. The limits below leave any pattern a topic list needs (tens of nodes)
 * far inside them and keep regcomp() under about 50 MB and 0.2 s. */
#define TOPIC_REGEX_MAX_NODES 10000
#define TOPIC_REGEX_MAX_NULLABLE_COPIES 256
#define TOPIC_REGEX_MAX_NESTING 4

/* An atom of a pattern, or a sequence or alternation of them: its compiled size in nodes
 * (a repeated atom is copied: regcomp() rewrites `x+` as `xx*` and `x{m,n}` as max(m, n)
 * + 1 copies), how many of those nodes are copies of a sub-pattern that matches the empty
 * string made by a repetition (the part that makes compiling super-linear), whether it
 * matches the empty string, and how deep repetitions nest in it. Sizes saturate. */
typedef struct
{
  guint64 size;
  guint64 nullable_copies;
  gboolean nullable;
  guint nesting;
} RegexCost;

typedef struct
{
  RegexCost branch;      /* the current alternative so far */
  RegexCost group;       /* the alternatives before it */
  RegexCost last;        /* the last atom, not yet in @branch (a repetition may follow) */
  gboolean have_last;    /* @last is set */
  gboolean last_repeats; /* @last ends with a repetition operator */
} RegexFrame;

static guint64
sat_add (guint64 a, guint64 b)
{
  return a > G_MAXUINT64 - b ? G_MAXUINT64 : a + b;
}

static guint64
sat_mul (guint64 a, guint64 b)
{
  return b != 0 && a > G_MAXUINT64 / b ? G_MAXUINT64 : a * b;
}

static void
regex_frame_init (RegexFrame *f)
{
  *f = (RegexFrame){ .branch = { .nullable = TRUE } };
}

static void
regex_cost_add (RegexCost *into, const RegexCost *atom, gboolean sequence)
{
  into->size = sat_add (into->size, atom->size);
  into->nullable_copies = sat_add (into->nullable_copies, atom->nullable_copies);
  into->nullable = sequence ? into->nullable && atom->nullable : into->nullable || atom->nullable;
  into->nesting = MAX (into->nesting, atom->nesting);
}

static void
regex_frame_flush (RegexFrame *f)
{
  if (f->have_last)
    regex_cost_add (&f->branch, &f->last, TRUE);
  f->have_last = f->last_repeats = FALSE;
}

static void
regex_frame_end_branch (RegexFrame *f)
{
  regex_frame_flush (f);
  regex_cost_add (&f->group, &f->branch, FALSE);
  f->branch = (RegexCost){ .nullable = TRUE };
}

static void
regex_frame_atom (RegexFrame *f, guint64 size, gboolean nullable)
{
  regex_frame_flush (f);
  f->last = (RegexCost){ .size = size, .nullable = nullable };
  f->have_last = TRUE;
}

/* Says why @pattern (POSIX extended) would be too costly for regcomp(), or returns %NULL.
 * An upper estimate, not regcomp()'s own accounting; a pattern it lets through may still
 * be refused by regcomp() as invalid. */
static const char *
regex_too_costly (const char *pattern)
{
  enum
  {
    MAX_DEPTH = 64
  };
  RegexFrame frames[MAX_DEPTH + 1];
  RegexCost whole;
  int depth = 0;

  regex_frame_init (&frames[0]);
  for (const char *c = pattern; *c != '\0'; c++)
    {
      RegexFrame *f = &frames[depth];
      guint64 times = 0, low = 1;

      switch (*c)
        {
        case '(':
          if (depth == MAX_DEPTH)
            return "groups nested more than 64 deep";
          regex_frame_flush (f);
          regex_frame_init (&frames[++depth]);
          continue;
        case ')':
          if (depth == 0)
            break; /* a literal ')' */
          regex_frame_end_branch (f);
          {
            RegexCost group = f->group;
            group.size = sat_add (group.size, 1);
            depth--;
            regex_frame_atom (&frames[depth], 0, FALSE);
            frames[depth].last = group;
          }
          continue;
        case '|':
          regex_frame_end_branch (f);
          continue;
        case '*':
        case '?':
          times = 1, low = 0;
          break;
        case '+':
          times = 2;
          break;
        case '{':
          {
            const char *d = c + 1;
            guint64 m = 0, n = 0;
            gboolean comma = FALSE, digits = FALSE;

            for (; g_ascii_isdigit (*d) || (*d == ',' && !comma); d++)
              if (*d == ',')
                comma = TRUE;
              else
                {
                  guint64 *bound = comma ? &n : &m;
                  *bound = MIN (sat_add (sat_mul (*bound, 10), (guint64)(*d - '0')), G_MAXUINT32);
                  digits = TRUE;
                }
            if (*d != '}' || !digits)
              break; /* not an interval: regcomp() judges it */
            c = d;
            low = m;
            times = sat_add (MAX (m, n), 1);
            break;
          }
        case '[':
          /* A bracket expression: `[]…]`, `[^]…]` and `[:class:]` inside it. */
          c++;
          if (*c == '^')
            c++;
          if (*c == ']')
            c++;
          for (; *c != '\0' && *c != ']'; c++)
            if (*c == '[' && (c[1] == ':' || c[1] == '.' || c[1] == '='))
              {
                const char close[3] = { c[1], ']', '\0' };
                const char *end = strstr (c + 2, close);
                if (end != NULL)
                  c = end + 1;
              }
          if (*c == '\0')
            c--;
          break;
        case '\\':
          if (c[1] != '\0')
            c++;
          break;
        default:
          break;
        }
      if (times == 0)
        {
          /* An atom; the anchors match the empty string. */
          regex_frame_atom (f, 1, *c == '^' || *c == '$');
          continue;
        }
      if (!f->have_last)
        {
          regex_frame_atom (f, 1, FALSE); /* a leading operator is a literal */
          continue;
        }
      if (f->last_repeats)
        return "two repetition operators in a row, such as 'a++' or 'a*?' (POSIX leaves their "
               "meaning undefined)";
      if (f->last.nullable && times > 1)
        f->last.nullable_copies = sat_mul (sat_add (f->last.size, f->last.nullable_copies), times);
      else
        f->last.nullable_copies = sat_mul (f->last.nullable_copies, times);
      f->last.size = sat_mul (f->last.size, times);
      f->last.nullable = f->last.nullable || low == 0;
      f->last.nesting++;
      f->last_repeats = TRUE;
    }
  while (depth > 0)
    {
      RegexCost group;

      regex_frame_end_branch (&frames[depth]);
      group = frames[depth].group;
      depth--;
      regex_frame_atom (&frames[depth], 0, FALSE);
      frames[depth].last = group;
    }
  regex_frame_end_branch (&frames[0]);
  whole = frames[0].group;
  if (whole.nesting > TOPIC_REGEX_MAX_NESTING)
    return "repetitions nested more than " G_STRINGIFY (TOPIC_REGEX_MAX_NESTING) " deep";
  if (whole.nullable_copies > TOPIC_REGEX_MAX_NULLABLE_COPIES)
    return "a repetition copies something that matches the empty string more than " G_STRINGIFY (
        TOPIC_REGEX_MAX_NULLABLE_COPIES) " times, such as '(a*){1,300}'";
  if (whole.size > TOPIC_REGEX_MAX_NODES)
    return "repetitions would expand it to more than " G_STRINGIFY (
        TOPIC_REGEX_MAX_NODES) " nodes, such as '(a{100}){101}'";
  return NULL;
}

/* A regex topic pattern: commas only inside {m,n}; compiles as POSIX extended (librdkafka's
 * subscription regex syntax), and not too costly to compile (regex_too_costly()). */
static gboolean
check_topic_regex (const char *pattern, const KeySpec *spec, const char *where, GError **error)
{
  regex_t re;
  const char *why_costly;
  int rc, depth = 0;

  for (const char *c = pattern; *c != '\0'; c++)
    {
      if (*c == '{')
        depth++;
      else if (*c == '}' && depth > 0)
        depth--;
      else if (*c == ',' && depth == 0)
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "“%s”: ',' outside {m,n} in a pattern; items of a key-file list are "
                        "separated by ';'",
                        pattern);
          return FALSE;
        }
    }
  why_costly = regex_too_costly (pattern);
  if (why_costly != NULL)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "“%s”: %s; simplify the pattern", pattern, why_costly);
      return FALSE;
    }
  rc = regcomp (&re, pattern, REG_EXTENDED | REG_NOSUB);
  if (rc != 0)
    {
      char why[256];
      regerror (rc, &re, why, sizeof why);
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "“%s” is not a valid regular expression: %s", pattern, why);
      return FALSE;
    }
  regfree (&re);
  return TRUE;
}

static gboolean
parse_number (const char *value, const KeySpec *spec, const char *where, guint64 *out,
              GError **error)
{
  guint64 n = 0;
  gboolean digits = TRUE;

  for (const char *c = value; *c != '\0'; c++)
    if (!g_ascii_isdigit (*c))
      digits = FALSE;
  if (!digits)
    {
      gboolean number_with_suffix = g_ascii_isdigit (value[0]);
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "“%s” is not a whole number from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                    " (%s)%s",
                    value, spec->min, spec->max, spec->unit,
                    number_with_suffix ? "; write the number alone, without a unit" : "");
      return FALSE;
    }
  if (!g_ascii_string_to_unsigned (value, 10, 0, G_MAXUINT64, &n, NULL) || n < spec->min
      || n > spec->max)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "%s is out of range: must be from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                    " (%s)",
                    value, spec->min, spec->max, spec->unit);
      return FALSE;
    }
  *out = n;
  return TRUE;
}

/* GKeyFile returns a string *and* an error for a bad escape (such as `\q`); both count as
 * errors here. The value is not quoted: it may be a secret. */
static void
value_error (GError **error, const char *where, const char *group, const char *key,
             const GError *local)
{
  if (g_error_matches (local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE))
    config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, group, key,
                  "the value has an invalid escape sequence; key-file escapes are \\s, \\n, "
                  "\\t, \\r, \\\\ (and \\; in lists)");
  else
    config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, group, key, "%s", local->message);
}

/* A bcrypt hash as crypt(3) writes it: `$2a$`, `$2b$` or `$2y$`, a cost of 04..31, `$`,
 * then 22 characters of salt and 31 of hash in bcrypt's base-64 alphabet. */
static gboolean
is_bcrypt_hash (const char *hash)
{
  static const char alphabet[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  int cost;

  if (strlen (hash) != 60 || hash[0] != '$' || hash[1] != '2' || strchr ("aby", hash[2]) == NULL
      || hash[2] == '\0' || hash[3] != '$' || !g_ascii_isdigit (hash[4])
      || !g_ascii_isdigit (hash[5]) || hash[6] != '$')
    return FALSE;
  cost = (hash[4] - '0') * 10 + (hash[5] - '0');
  return cost >= 4 && cost <= 31 && strspn (hash + 7, alphabet) == 53;
}

/* [metrics] basic_auth_users: USER:BCRYPT_HASH items, as exporter-toolkit's
 * basic_auth_users map. Hashes are never quoted in a message (they are secrets). */
static gboolean
parse_user_list (TallyConfig *config, GKeyFile *kf, const KeySpec *spec, const char *where,
                 GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GHashTable) users = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gsize n = 0;
  g_auto (GStrv) items = g_key_file_get_string_list (kf, spec->group, spec->key, &n, &local);

  if (local != NULL)
    {
      value_error (error, where, spec->group, spec->key, local);
      return FALSE;
    }
  if (n == 0)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                    "empty list; name at least one USER:BCRYPT_HASH, or remove the line for no "
                    "authentication");
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    {
      const char *colon = strchr (items[i], ':');
      g_autofree char *user = colon != NULL ? g_strndup (items[i], colon - items[i]) : NULL;

      if (colon == NULL || colon == items[i])
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "item %" G_GSIZE_FORMAT " is not USER:BCRYPT_HASH", i + 1);
          return FALSE;
        }
      if (!is_bcrypt_hash (colon + 1))
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "the hash of user “%s” is not a bcrypt hash ($2b$, 60 characters, as "
                        "`htpasswd -nbBC 10 USER PASSWORD` makes); never a plain password",
                        user);
          return FALSE;
        }
      if (!g_hash_table_add (users, g_steal_pointer (&user)))
        {
          g_autofree char *again = g_strndup (items[i], colon - items[i]);

          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "user “%s” is listed twice", again);
          return FALSE;
        }
    }
  g_strfreev (*FIELD (config, spec, char **));
  *FIELD (config, spec, char **) = g_steal_pointer (&items);
  return TRUE;
}

static gboolean
parse_typed (TallyConfig *config, GKeyFile *kf, const KeySpec *spec, const char *where,
             GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autofree char *value = NULL;

  if (spec->type == TYPE_USER_LIST)
    return parse_user_list (config, kf, spec, where, error);
  if (spec->type == TYPE_TOPIC_LIST)
    {
      gsize n = 0;
      g_auto (GStrv) items = g_key_file_get_string_list (kf, spec->group, spec->key, &n, &local);
      if (local != NULL)
        {
          value_error (error, where, spec->group, spec->key, local);
          return FALSE;
        }
      if (n == 0)
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "empty list; name at least one topic, or remove the line to use the "
                        "default (tally-input)");
          return FALSE;
        }
      for (gsize i = 0; i < n; i++)
        {
          if (items[i][0] == '\0')
            {
              config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                            "item %" G_GSIZE_FORMAT " of the list is empty (as in a;;b)", i + 1);
              return FALSE;
            }
          if (items[i][0] == '^' ? !check_topic_regex (items[i], spec, where, error)
                                 : !check_topic (items[i], spec, where, error))
            return FALSE;
        }
      g_strfreev (*FIELD (config, spec, char **));
      *FIELD (config, spec, char **) = g_steal_pointer (&items);
      return TRUE;
    }

  value = g_key_file_get_string (kf, spec->group, spec->key, &local);
  if (local != NULL)
    {
      value_error (error, where, spec->group, spec->key, local);
      return FALSE;
    }
  if (!check_empty (value, spec, where, error))
    return FALSE;

  switch (spec->type)
    {
    case TYPE_STRING:
      {
        gsize len = strlen (value);
        if (g_ascii_isspace (value[0]) || g_ascii_isspace (value[len - 1]))
          {
            config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                          "“%s” starts or ends with whitespace", value);
            return FALSE;
          }
        g_free (*FIELD (config, spec, char *));
        *FIELD (config, spec, char *) = g_steal_pointer (&value);
        return TRUE;
      }
    case TYPE_FILE:
      {
        GStatBuf st;

        if (g_stat (value, &st) != 0 || !S_ISREG (st.st_mode) || g_access (value, R_OK) != 0)
          {
            config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                          "%s: %s", value,
                          g_stat (value, &st) != 0 ? g_strerror (errno)
                          : !S_ISREG (st.st_mode)  ? "not a regular file"
                                                   : "not readable");
            return FALSE;
          }
        g_free (*FIELD (config, spec, char *));
        *FIELD (config, spec, char *) = g_steal_pointer (&value);
        return TRUE;
      }
    case TYPE_TOPIC:
      if (!check_topic (value, spec, where, error))
        return FALSE;
      g_free (*FIELD (config, spec, char *));
      *FIELD (config, spec, char *) = g_steal_pointer (&value);
      return TRUE;
    case TYPE_UINT:
    case TYPE_SIZE:
      {
        guint64 n;
        if (!parse_number (value, spec, where, &n, error))
          return FALSE;
        if (spec->type == TYPE_SIZE)
          *FIELD (config, spec, gsize) = n;
        else if (spec->offset == OFF (aggregator.shards) && n == 0)
          *FIELD (config, spec, guint) = processors_as_shards ();
        else
          *FIELD (config, spec, guint) = n;
        return TRUE;
      }
    case TYPE_BOOL:
      if (strcmp (value, "true") == 0 || strcmp (value, "1") == 0)
        *FIELD (config, spec, gboolean) = TRUE;
      else if (strcmp (value, "false") == 0 || strcmp (value, "0") == 0)
        *FIELD (config, spec, gboolean) = FALSE;
      else
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                        "“%s” is not a boolean: write true or false", value);
          return FALSE;
        }
      return TRUE;
    case TYPE_ENUM:
      {
        g_autoptr (GString) allowed = g_string_new (NULL);
        const char *nicks[16];
        const char *hint;
        gsize n = 0;
        for (const Choice *c = spec->choices; c->nick != NULL; c++)
          {
            if (strcmp (c->nick, value) == 0)
              {
                *FIELD (config, spec, int) = c->value;
                return TRUE;
              }
            g_string_append_printf (allowed, "%s%s", allowed->len ? ", " : "", c->nick);
            if (n < G_N_ELEMENTS (nicks))
              nicks[n++] = c->nick;
          }
        hint = nearest (value, nicks, n);
        config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, spec->group, spec->key,
                      "“%s” is not one of: %s%s%s%s", value, allowed->str,
                      hint ? "; did you mean " : "", hint ? hint : "", hint ? "?" : "");
        return FALSE;
      }
    case TYPE_TOPIC_LIST:
    case TYPE_USER_LIST:
    default:
      g_assert_not_reached ();
    }
}

/* ---------------------------------------------------------------------------------------
 * [kafka]: librdkafka validates
 * ------------------------------------------------------------------------------------- */

/* Every librdkafka property name (from rd_kafka_conf_properties_show()), for hints. */
static GPtrArray *
rdkafka_property_names (void)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&buf, &len);
  g_auto (GStrv) lines = NULL;

  if (f == NULL)
    return names;
  rd_kafka_conf_properties_show (f);
  fclose (f);
  lines = g_strsplit (buf, "\n", -1);
  free (buf);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *l = lines[i];
      gsize n = strspn (l, "abcdefghijklmnopqrstuvwxyz0123456789._");
      if (n > 0 && g_ascii_islower (l[0]) && (l[n] == ' ' || l[n] == '|'))
        g_ptr_array_add (names, g_strndup (l, n));
    }
  g_ptr_array_add (names, NULL);
  return names;
}

/* librdkafka's errstr without the trailing newline some messages carry, and with the
 * value of a secret property replaced. */
static char *
clean_errstr (const char *errstr, const char *name, const char *value)
{
  g_autofree char *text = g_strchomp (g_strdup (errstr));

  if (tally_config_key_is_secret (name) && value[0] != '\0' && strstr (text, value) != NULL)
    {
      g_auto (GStrv) parts = g_strsplit (text, value, -1);
      return g_strjoinv ("<redacted>", parts);
    }
  return g_steal_pointer (&text);
}

static gboolean
kafka_set (rd_kafka_conf_t *conf, const char *name, const char *value, const char *where,
           GError **error)
{
  char errstr[512] = "";
  rd_kafka_conf_res_t res = rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr);
  g_autofree char *why = NULL;
  const char *hint = NULL;
  g_autoptr (GPtrArray) names = NULL;

  if (res == RD_KAFKA_CONF_OK)
    return TRUE;
  why = clean_errstr (errstr, name, value);
  if (res == RD_KAFKA_CONF_UNKNOWN)
    {
      names = rdkafka_property_names ();
      hint = nearest (name, (const char *const *)names->pdata, names->len);
    }
  config_error (error, TALLY_CONFIG_ERROR_KAFKA, where, "kafka", name, "librdkafka: %s%s%s%s%s",
                why, hint ? "; did you mean " : "", hint ? hint : "", hint ? "?" : "",
                res == RD_KAFKA_CONF_UNKNOWN && hint == NULL
                        && g_str_has_suffix (where, " (environment)")
                    ? " (every TALLY_KAFKA_* variable is read as a librdkafka property; unset "
                      "this one)"
                    : "");
  return FALSE;
}

/* `[kafka] NAME.file = PATH`, NAME a secret property (tally_config_key_is_secret(), such
 * as sasl.password): NAME's value is read from PATH, so the secret is neither in the
 * key-file nor in the environment. PATH (relative to the working directory) must be a
 * regular file that only its owner may read or write (mode 0600 or 0400), like ssh's
 * private keys; one trailing line feed is dropped. Returns the secret, or NULL with
 * @error naming PATH and never quoting its content. */
static char *
read_secret_file (const char *name, const char *path, const char *where, GError **error)
{
  g_autofree char *data = NULL;
  g_autoptr (GError) local = NULL;
  gsize len = 0;
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "cannot read the secret file %s: %s", path, g_strerror (errno));
      return NULL;
    }
  if (!S_ISREG (st.st_mode))
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "the secret file %s is not a regular file", path);
      return NULL;
    }
  if ((st.st_mode & 077) != 0)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "the secret file %s may be read or written by others (mode %04o); make "
                    "it private: chmod 600 %s",
                    path, (guint)(st.st_mode & 07777), path);
      return NULL;
    }
  if (!g_file_get_contents (path, &data, &len, &local))
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "cannot read the secret file %s: %s", path, local->message);
      return NULL;
    }
  if (len > 0 && data[len - 1] == '\n')
    data[--len] = '\0';
  if (len > 0 && data[len - 1] == '\r')
    data[--len] = '\0';
  if (len == 0 || strlen (data) != len || strchr (data, '\n') != NULL)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "the secret file %s must hold one line (the secret), not %s", path,
                    len == 0 ? "nothing" : "several lines or NUL bytes");
      memset (data, 0, len);
      return NULL;
    }
  return g_steal_pointer (&data);
}

static gboolean
parse_kafka (TallyConfig *config, GKeyFile *kf, Origins *o, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (kf, "kafka", NULL, NULL);
  rd_kafka_conf_t *scratch = NULL;
  g_autoptr (GPtrArray) file_names = NULL; /* names of secrets read from a NAME.file */
  gboolean ok = TRUE;

  if (keys == NULL)
    return TRUE;
  scratch = rd_kafka_conf_new ();
  file_names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; ok && keys[i] != NULL; i++)
    {
      const char *name = keys[i];
      const char *where = origin_of (o, "kafka", name);
      g_autoptr (GError) local = NULL;
      g_autofree char *value = g_key_file_get_string (kf, "kafka", name, &local);
      TallyConfigKafkaProperty *p;

      for (gsize k = 0; k < G_N_ELEMENTS (kafka_owned); k++)
        if (strcmp (name, kafka_owned[k].property) == 0)
          {
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, where, "kafka", name,
                          "Tally sets this property from %s; set that instead",
                          kafka_owned[k].instead);
            ok = FALSE;
            break;
          }
      if (!ok)
        break;
      if (local != NULL)
        {
          value_error (error, where, "kafka", name, local);
          ok = FALSE;
          break;
        }
      if (value[0] == '\0')
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                        "empty value; remove the line to use librdkafka's default");
          ok = FALSE;
          break;
        }
      if (g_str_has_suffix (name, ".file"))
        {
          g_autofree char *secret_name = g_strndup (name, strlen (name) - strlen (".file"));
          char *secret;

          if (tally_config_key_is_secret (secret_name))
            {
              if (g_key_file_has_key (kf, "kafka", secret_name, NULL))
                {
                  config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                                "%s is set too; set only one of them", secret_name);
                  ok = FALSE;
                  break;
                }
              secret = read_secret_file (name, value, where, error);
              if (secret == NULL)
                {
                  ok = FALSE;
                  break;
                }
              /* From here on the property is secret_name, its value the file's content. */
              g_free (value);
              value = secret;
              name = g_steal_pointer (&secret_name);
              g_ptr_array_add (file_names, (gpointer)name);
            }
        }
      /* Setting plugin.library.paths loads the plugins at once: leave that to apply time. */
      if (strcmp (name, "plugin.library.paths") != 0
          && !kafka_set (scratch, name, value, where, error))
        {
          ok = FALSE;
          break;
        }
      if (strcmp (name, "bootstrap.servers") == 0 || strcmp (name, "metadata.broker.list") == 0)
        config->kafka.has_bootstrap = TRUE;
      p = g_new0 (TallyConfigKafkaProperty, 1);
      p->name = g_strdup (name);
      p->value = g_steal_pointer (&value);
      p->origin = g_strdup (where);
      g_ptr_array_add (config->kafka.properties, p);
    }
  rd_kafka_conf_destroy (scratch);
  return ok;
}

/* ---------------------------------------------------------------------------------------
 * Putting it together
 * ------------------------------------------------------------------------------------- */

static gboolean
check_group_names (GKeyFile *kf, Origins *o, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i] != NULL; i++)
    {
      const char *group = groups[i];
      g_auto (GStrv) keys = NULL;
      const char *hint;

      if (!is_known_group (group))
        {
          hint = nearest (group, known_groups, G_N_ELEMENTS (known_groups) - 1);
          config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_GROUP, origin_of (o, group, NULL), group,
                        NULL, "unknown group%s%s%s", hint ? "; did you mean [" : "",
                        hint ? hint : "", hint ? "]?" : "");
          return FALSE;
        }
      if (strcmp (group, "kafka") == 0)
        continue;
      keys = g_key_file_get_keys (kf, group, NULL, NULL);
      for (guint k = 0; keys != NULL && keys[k] != NULL; k++)
        {
          const char *key = keys[k];
          const char *candidates[G_N_ELEMENTS (schema)];
          const char *elsewhere = NULL, *part_of = NULL;
          gsize n = 0;

          if (find_spec (group, key) != NULL)
            continue;
          for (gsize s = 0; s < G_N_ELEMENTS (schema); s++)
            {
              if (strcmp (schema[s].group, group) == 0)
                candidates[n++] = schema[s].key;
              else if (strcmp (schema[s].key, key) == 0 && elsewhere == NULL)
                elsewhere = schema[s].group;
            }
          hint = nearest (key, candidates, n);
          if (hint == NULL)
            part_of = key_with_word (key, candidates, n);
          if (hint != NULL)
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key; did you mean %s?", hint);
          else if (part_of != NULL && elsewhere != NULL)
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key; did you mean %s? (%s is a key of [%s])", part_of, key,
                          elsewhere);
          else if (part_of != NULL)
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key; did you mean %s?", part_of);
          else if (elsewhere != NULL)
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key in this group; it belongs in [%s]", elsewhere);
          else if (strchr (key, '.') != NULL)
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key; librdkafka properties go in [kafka]");
          else
            config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, origin_of (o, group, key), group,
                          key, "unknown key");
          return FALSE;
        }
    }
  return TRUE;
}

/* Cross-key rules: [output] max_record_bytes below [kafka] message.max.bytes. */
static gboolean
check_cross (TallyConfig *config, Origins *o, GError **error)
{
  const char *mmb = tally_config_kafka_get (config, "message.max.bytes");
  guint64 limit = RDKAFKA_DEFAULT_MESSAGE_MAX_BYTES;

  if (mmb != NULL)
    limit = g_ascii_strtoull (mmb, NULL, 10); /* librdkafka accepted it: a number */
  if ((guint64)config->output.max_record_bytes + RECORD_FRAMING_BYTES > limit)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                    origin_of (o, "output", "max_record_bytes"), "output", "max_record_bytes",
                    "%" G_GSIZE_FORMAT " bytes leaves less than %d bytes of record framing below "
                    "[kafka] message.max.bytes (%" G_GUINT64_FORMAT
                    "%s); lower it to at most %" G_GUINT64_FORMAT " or raise message.max.bytes",
                    config->output.max_record_bytes, RECORD_FRAMING_BYTES, limit,
                    mmb != NULL ? "" : ", librdkafka's default",
                    limit > RECORD_FRAMING_BYTES ? limit - RECORD_FRAMING_BYTES : 0);
      return FALSE;
    }
  return TRUE;
}

/* TRUE when @group @key was set by the file or the environment, not left at its default. */
static gboolean
is_set (Origins *o, const char *group, const char *key)
{
  return origin_of (o, group, key) != o->name;
}

/* Cross-key rule: Tally never consumes a topic it writes. An input topic (a name, or a
 * `^regex` tested with GRegex against the names) that is also the output, request,
 * or changelog topic, or two of those that are one topic, would make Tally read
 * its own records back without end (a snapshot read as text to count, a snapshot read as a
 * request, ...). */
static gboolean
check_topics_distinct (TallyConfig *config, Origins *o, GError **error)
{
  const struct
  {
    const char *group, *key, *topic;
  } owned[] = {
    { "output", "topic", config->output.topic },
    { "requests", "topic", config->requests.topic },
    { "checkpoint", "changelog_topic", config->checkpoint.changelog_topic },
  };

  for (guint i = 0; config->input.topics[i] != NULL; i++)
    {
      const char *item = config->input.topics[i];

      for (gsize j = 0; j < G_N_ELEMENTS (owned); j++)
        if (owned[j].topic != NULL
            && (item[0] == '^' ? g_regex_match_simple (item, owned[j].topic, 0, 0)
                               : strcmp (item, owned[j].topic) == 0))
          {
            /* Name the key the user set ([input] topics when both are). */
            if (!is_set (o, "input", "topics") && is_set (o, owned[j].group, owned[j].key))
              config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                            origin_of (o, owned[j].group, owned[j].key), owned[j].group,
                            owned[j].key,
                            "“%s” %s the [input] topics %s “%s”: Tally would consume the "
                            "records it writes; the input topics must differ from the output, "
                            "request and changelog topics",
                            owned[j].topic, item[0] == '^' ? "matches" : "is also",
                            item[0] == '^' ? "pattern" : "item", item);
            else
              config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                            origin_of (o, "input", "topics"), "input", "topics",
                            "“%s” %s the [%s] %s “%s”: Tally would consume the records it "
                            "writes; the input topics must differ from the output, request "
                            "and changelog topics",
                            item, item[0] == '^' ? "matches" : "is also", owned[j].group,
                            owned[j].key, owned[j].topic);
            return FALSE;
          }
    }
  for (gsize j = 1; j < G_N_ELEMENTS (owned); j++)
    for (gsize i = 0; i < j; i++)
      if (owned[i].topic != NULL && owned[j].topic != NULL
          && strcmp (owned[i].topic, owned[j].topic) == 0)
        {
          /* Name the key the user set (the later one when both are). */
          gsize at = is_set (o, owned[j].group, owned[j].key) ? j : i;
          gsize other = at == j ? i : j;

          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                        origin_of (o, owned[at].group, owned[at].key), owned[at].group,
                        owned[at].key,
                        "“%s” is also the [%s] %s: Tally would consume the records it writes; "
                        "the output, request and changelog topics must be distinct",
                        owned[at].topic, owned[other].group, owned[other].key);
          return FALSE;
        }
  return TRUE;
}

/* The bytes of a snapshot part besides its one word: measured at 511 with the widest
 * numbers (19 digits), 36-byte snapshot and request ids, an 82-byte instance id and no input
 * partition, and at 928 with 4 input partitions of an 11-byte topic name (each partition an
 * instance owns adds about 105 bytes to `offsets` and `partitions`;
 * tests/test-snapshot-format.c pins the 4-partition case). An instance owning more
 * partitions needs more room than this rule checks. */
#define PART_OVERHEAD_BYTES 1024

/* Cross-key rule: the longest word fits in a snapshot part. A word's JSON string takes at
 * most twice its bytes (`"` and `\` are written as two bytes; control characters, which
 * would take six, never reach a word), so 2 * max_word_bytes + PART_OVERHEAD_BYTES must fit
 * in [output] max_record_bytes; otherwise one long word makes every snapshot fail. */
static gboolean
check_word_fits_record (TallyConfig *config, Origins *o, GError **error)
{
  guint64 word_json = 2 * (guint64)config->tokenizer.max_word_bytes;
  gboolean at_word
      = is_set (o, "tokenizer", "max_word_bytes") || !is_set (o, "output", "max_record_bytes");

  if (word_json + PART_OVERHEAD_BYTES <= config->output.max_record_bytes)
    return TRUE;
  config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                at_word ? origin_of (o, "tokenizer", "max_word_bytes")
                        : origin_of (o, "output", "max_record_bytes"),
                at_word ? "tokenizer" : "output", at_word ? "max_word_bytes" : "max_record_bytes",
                "a word of [tokenizer] max_word_bytes (%u) bytes may take %" G_GUINT64_FORMAT
                " bytes in a snapshot part (‘\"’ and ‘\\’ are escaped to two bytes), plus %d "
                "bytes of part header: more than [output] max_record_bytes (%" G_GSIZE_FORMAT
                "); lower max_word_bytes to at most %" G_GSIZE_FORMAT
                " or raise max_record_bytes to at least %" G_GUINT64_FORMAT,
                config->tokenizer.max_word_bytes, word_json, PART_OVERHEAD_BYTES,
                config->output.max_record_bytes,
                config->output.max_record_bytes > PART_OVERHEAD_BYTES
                    ? (config->output.max_record_bytes - PART_OVERHEAD_BYTES) / 2
                    : 0,
                word_json + PART_OVERHEAD_BYTES);
  return FALSE;
}

GSocketAddress *
tally_config_parse_listen (const char *listen, GError **error)
{
  g_autoptr (GSocketConnectable) connectable = NULL;
  g_autoptr (GInetAddress) inet = NULL;
  g_autoptr (GError) local_error = NULL;
  const char *host;
  guint16 port;

  if (listen == NULL || *listen == '\0')
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "empty listen address");
      return NULL;
    }
  if (strspn (listen, "0123456789") == strlen (listen))
    {
      guint64 n = g_ascii_strtoull (listen, NULL, 10);

      if (n > 65535)
        {
          g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                       "“%s”: port above 65535", listen);
          return NULL;
        }
      inet = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
      return g_inet_socket_address_new (inet, (guint16)n);
    }
  connectable = g_network_address_parse (listen, 0, &local_error);
  if (connectable == NULL || strrchr (listen, ':') == NULL
      || (strrchr (listen, ']') != NULL && strrchr (listen, ':') < strrchr (listen, ']')))
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "“%s” is not HOST:PORT%s%s", listen, local_error != NULL ? ": " : "",
                   local_error != NULL ? local_error->message : "");
      return NULL;
    }
  host = g_network_address_get_hostname (G_NETWORK_ADDRESS (connectable));
  port = g_network_address_get_port (G_NETWORK_ADDRESS (connectable));
  /* "::1:9464" parses as the host ::1:9464 on port 0 (any port): say how to write it. */
  if (strchr (host, ':') != NULL && listen[0] != '[')
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "“%s”: an IPv6 address goes in brackets, before the port: [::1]:9464", listen);
      return NULL;
    }
  if (g_ascii_strcasecmp (host, "localhost") == 0)
    inet = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  else
    inet = g_inet_address_new_from_string (host);
  if (inet == NULL)
    {
      g_set_error (error, TALLY_CONFIG_ERROR, TALLY_CONFIG_ERROR_INVALID_VALUE,
                   "“%s”: the host must be an IP address or localhost", listen);
      return NULL;
    }
  return g_inet_socket_address_new (inet, port);
}

/* [metrics] listen: what the metrics server will bind (tally_config_parse_listen()), so
 * that check-config rejects what `tally run` would. */
static gboolean
check_metrics_listen (TallyConfig *config, Origins *o, GError **error)
{
  g_autoptr (GSocketAddress) address = NULL;
  g_autoptr (GError) local = NULL;

  if (config->metrics.listen == NULL)
    return TRUE;
  address = tally_config_parse_listen (config->metrics.listen, &local);
  if (address == NULL)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, origin_of (o, "metrics", "listen"),
                    "metrics", "listen", "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

/* Cross-key rule: [metrics] tls_cert_file and tls_key_file come together (as
 * exporter-toolkit's tls_server_config), and GIO loads them as a certificate and its key
 * (g_tls_certificate_new_from_files(), the call the metrics server makes), so a bad PEM
 * file is a configuration error here rather than a failure when the server starts. */
static gboolean
check_metrics_tls (TallyConfig *config, Origins *o, GError **error)
{
  const char *cert = config->metrics.tls_cert_file, *key = config->metrics.tls_key_file;
  g_autoptr (GTlsCertificate) certificate = NULL;
  g_autoptr (GError) local = NULL;

  if (cert == NULL && key == NULL)
    return TRUE;
  if (cert == NULL || key == NULL)
    {
      const char *set = cert != NULL ? "tls_cert_file" : "tls_key_file";

      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, origin_of (o, "metrics", set),
                    "metrics", set, "set tls_cert_file and tls_key_file together, or neither");
      return FALSE;
    }
  certificate = g_tls_certificate_new_from_file (cert, &local);
  if (certificate == NULL)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                    origin_of (o, "metrics", "tls_cert_file"), "metrics", "tls_cert_file",
                    "%s: not a PEM certificate: %s", cert, local->message);
      return FALSE;
    }
  g_clear_object (&certificate);
  certificate = g_tls_certificate_new_from_files (cert, key, &local);
  if (certificate == NULL)
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                    origin_of (o, "metrics", "tls_key_file"), "metrics", "tls_key_file",
                    "%s: not a PEM private key: %s", key, local->message);
      return FALSE;
    }
  return TRUE;
}

/* Cross-key rule: a window is a whole number of buckets. */
static gboolean
check_window_buckets (TallyConfig *config, Origins *o, GError **error)
{
  gboolean at_size = is_set (o, "windows", "size_ms") || !is_set (o, "windows", "bucket_ms");

  if (config->windows.size_ms % config->windows.bucket_ms == 0)
    return TRUE;
  config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE,
                at_size ? origin_of (o, "windows", "size_ms")
                        : origin_of (o, "windows", "bucket_ms"),
                "windows", at_size ? "size_ms" : "bucket_ms",
                "[windows] size_ms (%u) must be a multiple of bucket_ms (%u)",
                config->windows.size_ms, config->windows.bucket_ms);
  return FALSE;
}

/* Sets each override in @kf and records its origin, after the text and before the
 * environment. */
static void
apply_overrides (GKeyFile *kf, Origins *o, const TallyConfigOverride *overrides, guint n_overrides)
{
  for (guint i = 0; i < n_overrides; i++)
    {
      const TallyConfigOverride *v = &overrides[i];

      g_key_file_set_string (kf, v->group, v->key, v->value);
      if (g_hash_table_lookup (o->origin, v->group) == NULL)
        g_hash_table_insert (o->origin, g_strdup (v->group), g_strdup (v->origin));
      g_hash_table_insert (o->origin, origin_key (v->group, v->key), g_strdup (v->origin));
    }
}

static TallyConfig *
load_data (const char *data, gsize len, const char *name, const TallyConfigOverride *overrides,
           guint n_overrides, GError **error)
{
  g_autoptr (TallyConfig) config = tally_config_new_default ();
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GHashTable) origin = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GPtrArray) applied = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local = NULL;
  g_auto (GStrv) groups = NULL;
  Origins o = { name, origin };

  if (!scan_lines (data, len, &o, error))
    return NULL;
  if (!g_key_file_load_from_data (kf, data, len, G_KEY_FILE_KEEP_TRANSLATIONS, &local))
    {
      config_error (error, TALLY_CONFIG_ERROR_PARSE, name, NULL, NULL, "%s", local->message);
      return NULL;
    }
  apply_overrides (kf, &o, overrides, n_overrides);
  if (!apply_environment (kf, &o, applied, error))
    return NULL;
  if (!check_group_names (kf, &o, error))
    return NULL;

  groups = g_key_file_get_groups (kf, NULL);
  for (guint g = 0; groups[g] != NULL; g++)
    {
      g_auto (GStrv) keys = NULL;
      if (strcmp (groups[g], "kafka") == 0)
        {
          if (!parse_kafka (config, kf, &o, error))
            return NULL;
          continue;
        }
      keys = g_key_file_get_keys (kf, groups[g], NULL, NULL);
      for (guint k = 0; keys[k] != NULL; k++)
        if (!parse_typed (config, kf, find_spec (groups[g], keys[k]),
                          origin_of (&o, groups[g], keys[k]), error))
          return NULL;
    }
  if (!check_cross (config, &o, error) || !check_topics_distinct (config, &o, error)
      || !check_word_fits_record (config, &o, error) || !check_metrics_listen (config, &o, error)
      || !check_metrics_tls (config, &o, error) || !check_window_buckets (config, &o, error))
    return NULL;

  g_strfreev (config->env_overrides);
  g_ptr_array_add (applied, NULL);
  config->env_overrides = (char **)g_ptr_array_steal (applied, NULL);
  return g_steal_pointer (&config);
}

TallyConfig *
tally_config_load_from_data_with_overrides (const char *data, gssize len,
                                            const char *name_for_errors,
                                            const TallyConfigOverride *overrides, guint n_overrides,
                                            GError **error)
{
  TallyConfig *config;
  const char *name = name_for_errors != NULL ? name_for_errors : "<data>";

  g_return_val_if_fail (data != NULL, NULL);
  g_return_val_if_fail (overrides != NULL || n_overrides == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  config
      = load_data (data, len < 0 ? strlen (data) : (gsize)len, name, overrides, n_overrides, error);
  if (config != NULL)
    config->source_path = g_strdup (name);
  return config;
}

TallyConfig *
tally_config_load_from_data (const char *data, gssize len, const char *name_for_errors,
                             GError **error)
{
  return tally_config_load_from_data_with_overrides (data, len, name_for_errors, NULL, 0, error);
}

char **
tally_config_search_paths (const char *explicit_path)
{
  GPtrArray *paths = g_ptr_array_new ();
  const char *env = g_getenv ("TALLY_CONFIG");
  const char *xdg = g_getenv ("XDG_CONFIG_HOME");
  g_autofree char *sysconf = g_build_filename (TALLY_SYSCONFDIR, "tally", "tally.conf", NULL);

  if (explicit_path != NULL)
    g_ptr_array_add (paths, g_strdup (explicit_path));
  else if (env != NULL && env[0] != '\0')
    g_ptr_array_add (paths, g_strdup (env));
  else
    {
      g_ptr_array_add (paths, g_strdup ("./tally.conf"));
      /* Read the variable itself: g_get_user_config_dir() caches its first answer. The XDG
       * Base Directory spec says to ignore relative paths. */
      if (xdg != NULL && g_path_is_absolute (xdg))
        g_ptr_array_add (paths, g_build_filename (xdg, "tally", "tally.conf", NULL));
      else
        g_ptr_array_add (
            paths, g_build_filename (g_get_home_dir (), ".config", "tally", "tally.conf", NULL));
      g_ptr_array_add (paths, g_strdup ("/etc/tally/tally.conf"));
      if (strcmp (sysconf, "/etc/tally/tally.conf") != 0)
        g_ptr_array_add (paths, g_steal_pointer (&sysconf));
    }
  g_ptr_array_add (paths, NULL);
  return (char **)g_ptr_array_free (paths, FALSE);
}

TallyConfig *
tally_config_load (const char *explicit_path, GError **error)
{
  g_auto (GStrv) paths = tally_config_search_paths (explicit_path);
  const char *env = g_getenv ("TALLY_CONFIG");
  gboolean named = explicit_path != NULL || (env != NULL && env[0] != '\0');

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  for (guint i = 0; paths[i] != NULL; i++)
    {
      const char *path = paths[i];
      g_autofree char *data = NULL;
      gsize len = 0;
      g_autoptr (GError) local = NULL;
      TallyConfig *config;

      if (!named && !g_file_test (path, G_FILE_TEST_EXISTS))
        continue;
      if (!g_file_get_contents (path, &data, &len, &local))
        {
          if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            config_error (error, TALLY_CONFIG_ERROR_NOT_FOUND, path, NULL, NULL,
                          "no such file (named by %s)",
                          explicit_path != NULL ? "the command line" : "$TALLY_CONFIG");
          else
            config_error (error, TALLY_CONFIG_ERROR_READ, path, NULL, NULL, "cannot read it: %s",
                          local->message);
          return NULL;
        }
      config = load_data (data, len, path, NULL, 0, error);
      if (config != NULL)
        config->source_path = g_strdup (path);
      return config;
    }

  /* No file anywhere: the defaults, still with the environment applied and checked. */
  return load_data ("", 0, "<defaults>", NULL, 0, error);
}

gboolean
tally_config_apply_kafka (const TallyConfig *config, rd_kafka_conf_t *conf, GError **error)
{
  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (conf != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < config->kafka.properties->len; i++)
    {
      const TallyConfigKafkaProperty *p = g_ptr_array_index (config->kafka.properties, i);
      if (!kafka_set (conf, p->name, p->value, p->origin, error))
        return FALSE;
    }
  return TRUE;
}

/* Checks @name=@value as the loader checks a [kafka] key: not a property Tally owns, not
 * empty, accepted by rd_kafka_conf_set() (plugin.library.paths only when applied). */
static gboolean
check_kafka_property (const char *name, const char *value, const char *where, GError **error)
{
  rd_kafka_conf_t *scratch;
  gboolean ok;

  for (gsize k = 0; k < G_N_ELEMENTS (kafka_owned); k++)
    if (strcmp (name, kafka_owned[k].property) == 0)
      {
        config_error (error, TALLY_CONFIG_ERROR_UNKNOWN_KEY, where, "kafka", name,
                      "Tally sets this property from %s; set that instead", kafka_owned[k].instead);
        return FALSE;
      }
  if (value[0] == '\0')
    {
      config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, where, "kafka", name,
                    "empty value; leave it out to use librdkafka's default");
      return FALSE;
    }
  if (strcmp (name, "plugin.library.paths") == 0)
    return TRUE;
  scratch = rd_kafka_conf_new ();
  ok = kafka_set (scratch, name, value, where, error);
  rd_kafka_conf_destroy (scratch);
  return ok;
}

gboolean
tally_config_set_kafka (TallyConfig *config, const char *name, const char *value,
                        const char *origin, GError **error)
{
  TallyConfigKafkaProperty *p;
  const char *mmb;
  guint64 limit = RDKAFKA_DEFAULT_MESSAGE_MAX_BYTES;

  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (name != NULL && value != NULL && origin != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_kafka_property (name, value, origin, error))
    return FALSE;
  if (strcmp (name, "message.max.bytes") == 0)
    {
      mmb = value;
      limit = g_ascii_strtoull (mmb, NULL, 10); /* librdkafka accepted it: a number */
      if ((guint64)config->output.max_record_bytes + RECORD_FRAMING_BYTES > limit)
        {
          config_error (error, TALLY_CONFIG_ERROR_INVALID_VALUE, origin, "kafka", name,
                        "%" G_GUINT64_FORMAT " leaves less than %d bytes of record framing above "
                        "[output] max_record_bytes (%" G_GSIZE_FORMAT ")",
                        limit, RECORD_FRAMING_BYTES, config->output.max_record_bytes);
          return FALSE;
        }
    }

  /* The last setting wins: drop earlier ones of the same name, append this one. */
  for (guint i = config->kafka.properties->len; i > 0; i--)
    {
      p = g_ptr_array_index (config->kafka.properties, i - 1);
      if (strcmp (p->name, name) == 0)
        g_ptr_array_remove_index (config->kafka.properties, i - 1);
    }
  p = g_new0 (TallyConfigKafkaProperty, 1);
  p->name = g_strdup (name);
  p->value = g_strdup (value);
  p->origin = g_strdup (origin);
  g_ptr_array_add (config->kafka.properties, p);
  if (strcmp (name, "bootstrap.servers") == 0 || strcmp (name, "metadata.broker.list") == 0)
    config->kafka.has_bootstrap = TRUE;
  return TRUE;
}

/* librdkafka logs nothing while a client is made only to be checked. */
static void
silent_log (const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

/* Whether @p is left out of the client check: it would connect (bootstrap servers) or load
 * code (plugins), and neither changes whether librdkafka accepts the configuration. */
static gboolean
skipped_in_check (const TallyConfigKafkaProperty *p)
{
  return strcmp (p->name, "bootstrap.servers") == 0 || strcmp (p->name, "metadata.broker.list") == 0
         || strcmp (p->name, "plugin.library.paths") == 0;
}

/* Makes and destroys a client of @type from the first @n [kafka] properties and @extra
 * (name, value pairs, NULL-terminated), set after them as the service sets its own. Returns
 * %TRUE when rd_kafka_new() accepts it, else %FALSE with librdkafka's reason in @errstr. */
static gboolean
try_client (const TallyConfig *config, guint n, rd_kafka_type_t type, const char *const *extra,
            char *errstr, gsize errstr_size)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_t *rk;

  rd_kafka_conf_set_log_cb (conf, silent_log);
  for (guint i = 0; i < n; i++)
    {
      const TallyConfigKafkaProperty *p = g_ptr_array_index (config->kafka.properties, i);
      if (!skipped_in_check (p))
        rd_kafka_conf_set (conf, p->name, p->value, NULL, 0); /* accepted when loaded */
    }
  for (guint i = 0; extra[i] != NULL; i += 2)
    if (rd_kafka_conf_set (conf, extra[i], extra[i + 1], errstr, errstr_size) != RD_KAFKA_CONF_OK)
      {
        rd_kafka_conf_destroy (conf);
        return FALSE;
      }
  /* rd_kafka_new() takes ownership of conf only on success. */
  rk = rd_kafka_new (type, conf, errstr, errstr_size);
  if (rk == NULL)
    {
      rd_kafka_conf_destroy (conf);
      return FALSE;
    }
  rd_kafka_destroy (rk);
  return TRUE;
}

gboolean
tally_config_check_clients (const TallyConfig *config, GError **error)
{
  const char *consumer[] = {
    "group.id",
    config->input.group_id,
    "auto.offset.reset",
    config->input.auto_offset_reset == TALLY_CONFIG_OFFSET_RESET_LATEST ? "latest" : "earliest",
    "enable.auto.offset.store",
    "false",
    "enable.auto.commit",
    "true",
    NULL,
  };
  static const char *const producer[] = { "enable.idempotence", "true", NULL };
  const struct
  {
    const char *what;
    rd_kafka_type_t type;
    const char *const *extra;
  } clients[] = {
    { "consumer", RD_KAFKA_CONSUMER, consumer },
    { "producer", RD_KAFKA_PRODUCER, producer },
  };
  GPtrArray *props;

  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  props = config->kafka.properties;
  for (gsize c = 0; c < G_N_ELEMENTS (clients); c++)
    {
      char errstr[512] = "";
      char scratch[512];
      g_autofree char *why = NULL;
      const TallyConfigKafkaProperty *blamed = NULL;

      if (try_client (config, props->len, clients[c].type, clients[c].extra, errstr, sizeof errstr))
        continue;

      /* Which property to name: one whose name librdkafka's message quotes, else one whose
       * value it quotes (not a secret), else the first whose addition makes it fail. */
      for (guint i = props->len; i > 0 && blamed == NULL; i--)
        {
          const TallyConfigKafkaProperty *p = g_ptr_array_index (props, i - 1);
          if (!skipped_in_check (p) && strstr (errstr, p->name) != NULL)
            blamed = p;
        }
      for (guint i = props->len; i > 0 && blamed == NULL; i--)
        {
          const TallyConfigKafkaProperty *p = g_ptr_array_index (props, i - 1);
          if (!skipped_in_check (p) && !tally_config_key_is_secret (p->name)
              && strlen (p->value) >= 2 && strstr (errstr, p->value) != NULL)
            blamed = p;
        }
      for (guint i = 1; i <= props->len && blamed == NULL; i++)
        if (!try_client (config, i, clients[c].type, clients[c].extra, scratch, sizeof scratch))
          blamed = g_ptr_array_index (props, i - 1);

      if (blamed != NULL)
        {
          why = clean_errstr (errstr, blamed->name, blamed->value);
          config_error (error, TALLY_CONFIG_ERROR_KAFKA, blamed->origin, "kafka", blamed->name,
                        "librdkafka refuses the %s configuration: %s", clients[c].what, why);
        }
      else
        {
          why = g_strchomp (g_strdup (errstr));
          config_error (error, TALLY_CONFIG_ERROR_KAFKA,
                        config->source_path != NULL ? config->source_path : "<defaults>", "kafka",
                        NULL, "librdkafka refuses the %s configuration: %s", clients[c].what, why);
        }
      return FALSE;
    }
  return TRUE;
}

const char *
tally_config_kafka_get (const TallyConfig *config, const char *name)
{
  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);

  for (guint i = config->kafka.properties->len; i > 0; i--)
    {
      const TallyConfigKafkaProperty *p = g_ptr_array_index (config->kafka.properties, i - 1);
      if (strcmp (p->name, name) == 0)
        return p->value;
    }
  return NULL;
}

void
tally_config_tokenizer_options (const TallyConfig *config, TallyTokenizerOptions *options)
{
  g_return_if_fail (config != NULL);
  g_return_if_fail (options != NULL);

  tally_tokenizer_options_init (options);
  switch (config->tokenizer.mode)
    {
    case TALLY_CONFIG_TOKENIZER_WHITESPACE:
      options->mode = TALLY_TOKENIZER_WHITESPACE;
      break;
    case TALLY_CONFIG_TOKENIZER_RECORD:
      options->mode = TALLY_TOKENIZER_RECORD;
      break;
    case TALLY_CONFIG_TOKENIZER_UNICODE:
    default:
      options->mode = TALLY_TOKENIZER_UNICODE;
      break;
    }
  options->nfkc = config->tokenizer.nfkc;
  options->max_word_bytes = CLAMP (config->tokenizer.max_word_bytes, TALLY_TOKENIZER_MIN_WORD_BYTES,
                                   TALLY_TOKENIZER_MAX_WORD_BYTES_LIMIT);
  options->long_words = config->tokenizer.long_words == TALLY_CONFIG_LONG_WORDS_DROP
                            ? TALLY_TOKENIZER_LONG_DROP
                            : TALLY_TOKENIZER_LONG_TRUNCATE;
}

/* ---------------------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------------------- */

/* A string as GKeyFile would write it (escapes for leading space, \n, \t, \\). */
static char *
escape_string (const char *s)
{
  g_autoptr (GKeyFile) tmp = g_key_file_new ();

  g_key_file_set_string (tmp, "g", "k", s);
  return g_key_file_get_value (tmp, "g", "k", NULL);
}

static char *
value_text (const TallyConfig *config, const KeySpec *spec, gboolean *unset)
{
  *unset = FALSE;
  switch (spec->type)
    {
    case TYPE_STRING:
    case TYPE_TOPIC:
    case TYPE_FILE:
      {
        const char *s = *FIELD (config, spec, char *);
        if (s == NULL)
          {
            *unset = TRUE;
            return g_strdup ("");
          }
        return escape_string (s);
      }
    case TYPE_TOPIC_LIST:
    case TYPE_USER_LIST:
      {
        g_autoptr (GKeyFile) tmp = g_key_file_new ();
        char **list = *FIELD (config, spec, char **);
        if (list == NULL)
          {
            *unset = TRUE;
            return g_strdup ("");
          }
        g_key_file_set_string_list (tmp, "g", "k", (const char *const *)list, g_strv_length (list));
        return g_key_file_get_value (tmp, "g", "k", NULL);
      }
    case TYPE_UINT:
      return g_strdup_printf ("%u", *FIELD (config, spec, guint));
    case TYPE_SIZE:
      return g_strdup_printf ("%" G_GSIZE_FORMAT, *FIELD (config, spec, gsize));
    case TYPE_BOOL:
      return g_strdup (*FIELD (config, spec, gboolean) ? "true" : "false");
    case TYPE_ENUM:
      return g_strdup (choice_nick (spec->choices, *FIELD (config, spec, int)));
    default:
      g_assert_not_reached ();
    }
}

char *
tally_config_to_string (const TallyConfig *config, gboolean redact_secrets)
{
  GString *s = g_string_new ("# Effective Tally configuration (every default filled in).\n");

  g_return_val_if_fail (config != NULL, NULL);

  g_string_append_printf (s, "# Source: %s\n",
                          config->source_path != NULL ? config->source_path
                                                      : "no file found; defaults");
  if (config->env_overrides != NULL && config->env_overrides[0] != NULL)
    {
      g_autofree char *vars = g_strjoinv (", ", config->env_overrides);
      g_string_append_printf (s, "# Environment overrides: %s\n", vars);
    }
  if (redact_secrets)
    g_string_append (s, "# Secret values are shown as <redacted>.\n");

  for (guint g = 0; known_groups[g] != NULL; g++)
    {
      const char *group = known_groups[g];
      g_string_append_printf (s, "\n[%s]\n", group);
      if (strcmp (group, "kafka") == 0)
        {
          if (config->kafka.properties->len == 0)
            g_string_append (s, "# (no properties: librdkafka's defaults; no bootstrap.servers, "
                                "so `tally run` starts the embedded broker)\n");
          for (guint i = 0; i < config->kafka.properties->len; i++)
            {
              const TallyConfigKafkaProperty *p = g_ptr_array_index (config->kafka.properties, i);
              g_autofree char *v = NULL;
              if (redact_secrets && tally_config_key_is_secret (p->name))
                v = g_strdup ("<redacted>");
              else
                v = escape_string (p->value);
              g_string_append_printf (s, "%s=%s\n", p->name, v);
            }
          continue;
        }
      for (gsize i = 0; i < G_N_ELEMENTS (schema); i++)
        {
          g_autofree char *v = NULL;
          gboolean unset;
          if (strcmp (schema[i].group, group) != 0)
            continue;
          v = value_text (config, &schema[i], &unset);
          if (redact_secrets && !unset && tally_config_key_is_secret (schema[i].key))
            {
              g_free (v);
              v = g_strdup ("<redacted>");
            }
          g_string_append_printf (s, "%s%s=%s\n", unset ? "#" : "", schema[i].key, v);
        }
    }
  return g_string_free (s, FALSE);
}
