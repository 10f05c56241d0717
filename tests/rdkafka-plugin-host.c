/* rdkafka-plugin-host.c — a plain librdkafka program that loads the Tally plugin, for
 * valgrind.
 *
 *   rdkafka-plugin-host PLUGIN_PATH [CYCLES]
 *
 * Written the way any C service would be, with nothing of Tally linked in: it starts
 * librdkafka's mock cluster in-process, produces a few records, then CYCLES times (default
 * 100) creates a consumer with `plugin.library.paths` = PLUGIN_PATH, consumes the records,
 * closes and destroys it. Each cycle makes the plugin start and stop its shards, arbiter,
 * producer and request reader and publish a final snapshot. Run under
 * `valgrind --leak-check=full --error-exitcode=1` (tests/meson.build, suite 'valgrind') it
 * shows whether the plugin leaks or touches freed memory in its host.
 *
 * Exit status 0 when every cycle consumed every record, 1 otherwise.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_RECORDS 6

static const char *const topics[] = { "host-input", "tally-snapshots", "tally-requests" };

static int
set (rd_kafka_conf_t *conf, const char *name, const char *value)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    {
      fprintf (stderr, "rdkafka-plugin-host: %s=%s: %s\n", name, value, errstr);
      return 0;
    }
  return 1;
}

static int
produce_input (const char *bootstrap)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[512];
  rd_kafka_t *rk;
  int ok = 1;

  if (!set (conf, "bootstrap.servers", bootstrap))
    return 0;
  rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == NULL)
    {
      fprintf (stderr, "rdkafka-plugin-host: producer: %s\n", errstr);
      return 0;
    }
  for (int i = 0; i < N_RECORDS; i++)
    {
      char value[64];

      snprintf (value, sizeof value, "the host record number %d", i);
      if (rd_kafka_producev (rk, RD_KAFKA_V_TOPIC (topics[0]), RD_KAFKA_V_PARTITION (i % 2),
                             RD_KAFKA_V_VALUE (value, strlen (value)),
                             RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
        ok = 0;
    }
  if (rd_kafka_flush (rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    ok = 0;
  rd_kafka_destroy (rk);
  return ok;
}

/* One life of a consumer with the plugin: configure, create, assign, poll, close, destroy. */
static int
cycle (const char *bootstrap, const char *plugin)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_topic_partition_list_t *list;
  char errstr[512];
  rd_kafka_t *rk;
  int got = 0, polls = 0;

  /* plugin.library.paths first: tally.* properties exist once it is loaded. */
  if (!set (conf, "bootstrap.servers", bootstrap) || !set (conf, "group.id", "host")
      || !set (conf, "plugin.library.paths", plugin) || !set (conf, "tally.shards", "2"))
    {
      rd_kafka_conf_destroy (conf);
      return 0;
    }
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr); /* takes conf */
  if (rk == NULL)
    {
      fprintf (stderr, "rdkafka-plugin-host: consumer: %s\n", errstr);
      rd_kafka_conf_destroy (conf);
      return 0;
    }
  rd_kafka_poll_set_consumer (rk);
  list = rd_kafka_topic_partition_list_new (2);
  rd_kafka_topic_partition_list_add (list, topics[0], 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_topic_partition_list_add (list, topics[0], 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign (rk, list);
  rd_kafka_topic_partition_list_destroy (list);
  while (got < N_RECORDS && polls++ < 600)
    {
      rd_kafka_message_t *m = rd_kafka_consumer_poll (rk, 100);

      if (m == NULL)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        got++;
      rd_kafka_message_destroy (m);
    }
  rd_kafka_consumer_close (rk);
  rd_kafka_destroy (rk);
  if (got != N_RECORDS)
    fprintf (stderr, "rdkafka-plugin-host: consumed %d of %d records\n", got, N_RECORDS);
  return got == N_RECORDS;
}

int
main (int argc, char **argv)
{
  rd_kafka_conf_t *conf;
  rd_kafka_t *mock_rk;
  rd_kafka_mock_cluster_t *mcluster;
  char errstr[512];
  char *bootstrap;
  int cycles = argc > 2 ? atoi (argv[2]) : 100;
  int failed = 0;

  if (argc < 2)
    {
      fprintf (stderr, "usage: rdkafka-plugin-host PLUGIN_PATH [CYCLES]\n");
      return 2;
    }

  /* The mock cluster lives on a handle of its own. */
  conf = rd_kafka_conf_new ();
  mock_rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (mock_rk == NULL)
    {
      fprintf (stderr, "rdkafka-plugin-host: %s\n", errstr);
      return 1;
    }
  mcluster = rd_kafka_mock_cluster_new (mock_rk, 1);
  for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
    rd_kafka_mock_topic_create (mcluster, topics[i], i == 0 ? 2 : 1, 1);
  bootstrap = strdup (rd_kafka_mock_cluster_bootstraps (mcluster));

  if (!produce_input (bootstrap))
    failed = 1;
  for (int i = 0; i < cycles && !failed; i++)
    if (!cycle (bootstrap, argv[1]))
      failed = 1;

  free (bootstrap);
  rd_kafka_mock_cluster_destroy (mcluster);
  rd_kafka_destroy (mock_rk);
  if (!failed)
    printf ("rdkafka-plugin-host: %d cycles, %d records each\n", cycles, N_RECORDS);
  return failed;
}
