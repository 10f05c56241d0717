/* raw-consumer.c — the floor of tests/bench/e2e.sh: a plain librdkafka consumer that reads
 * every record of a topic and does nothing with it.
 *
 *   bench-raw-consumer --bootstrap-server HOST:PORT --topic TOPIC [--group GROUP]
 *                      [-X NAME=VALUE]...   (librdkafka properties, applied last)
 *
 * The life cycle is that of librdkafka's examples/consumer.c: configure, create, subscribe
 * (consumer group GROUP, default a fresh random one, so reading starts at the beginning
 * with auto.offset.reset=earliest), poll with rd_kafka_consumer_poll(), close, destroy.
 * enable.partition.eof=true makes librdkafka report RD_KAFKA_RESP_ERR__PARTITION_EOF once
 * a partition's end is reached; the consumer stops when every partition of TOPIC (counted
 * from the topic's metadata) has reported it. Offsets are not committed
 * (enable.auto.commit=false): the record is read, nothing else.
 *
 * Prints one line on stdout: `records N bytes B seconds S`, where B is the sum of the
 * record values' lengths and S the wall-clock time from creating the consumer to the last
 * end of partition. Exits 0, or 1 on a Kafka error.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include <glib.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

static gboolean
set (rd_kafka_conf_t *conf, const char *name, const char *value)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    {
      g_printerr ("bench-raw-consumer: %s: %s\n", name, errstr);
      return FALSE;
    }
  return TRUE;
}

/* The number of partitions of @topic, or -1 with a message on failure. */
static int
partition_count (rd_kafka_t *rk, const char *topic)
{
  rd_kafka_topic_t *rkt = rd_kafka_topic_new (rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err;
  int n = -1;

  err = rd_kafka_metadata (rk, 0, rkt, &md, 10000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_printerr ("bench-raw-consumer: metadata of %s: %s\n", topic, rd_kafka_err2str (err));
  else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_printerr ("bench-raw-consumer: topic %s: %s\n", topic,
                md->topic_cnt == 1 ? rd_kafka_err2str (md->topics[0].err) : "not found");
  else
    n = md->topics[0].partition_cnt;
  if (md != NULL)
    rd_kafka_metadata_destroy (md);
  rd_kafka_topic_destroy (rkt);
  return n;
}

int
main (int argc, char **argv)
{
  g_autofree char *bootstrap = NULL;
  g_autofree char *topic = NULL;
  g_autofree char *group = NULL;
  g_auto (GStrv) properties = NULL;
  GOptionEntry entries[] = {
    { "bootstrap-server", 'b', 0, G_OPTION_ARG_STRING, &bootstrap, "Kafka bootstrap servers",
      "HOST:PORT" },
    { "topic", 't', 0, G_OPTION_ARG_STRING, &topic, "Topic to read", "TOPIC" },
    { "group", 'g', 0, G_OPTION_ARG_STRING, &group, "Consumer group (default: a fresh one)",
      "GROUP" },
    { "property", 'X', 0, G_OPTION_ARG_STRING_ARRAY, &properties,
      "A librdkafka property for the consumer (repeatable)", "NAME=VALUE" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- read a topic, do nothing");
  g_autoptr (GError) error = NULL;
  rd_kafka_conf_t *conf;
  rd_kafka_t *rk;
  rd_kafka_topic_partition_list_t *subscription;
  rd_kafka_resp_err_t err;
  char errstr[512];
  g_autoptr (GHashTable) ended = g_hash_table_new (g_direct_hash, g_direct_equal);
  guint64 records = 0, bytes = 0;
  gint64 start;
  int partitions, status = 0;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-raw-consumer: %s\n", error->message);
      return 2;
    }
  if (bootstrap == NULL || topic == NULL)
    {
      g_printerr ("bench-raw-consumer: --bootstrap-server and --topic are required\n");
      return 2;
    }
  if (group == NULL)
    {
      g_autofree char *uuid = g_uuid_string_random ();
      group = g_strdup_printf ("bench-raw-%s", uuid);
    }

  conf = rd_kafka_conf_new ();
  if (!set (conf, "bootstrap.servers", bootstrap) || !set (conf, "group.id", group)
      || !set (conf, "auto.offset.reset", "earliest") || !set (conf, "enable.auto.commit", "false")
      || !set (conf, "enable.partition.eof", "true"))
    {
      rd_kafka_conf_destroy (conf);
      return 1;
    }
  for (char **p = properties; p != NULL && *p != NULL; p++)
    {
      g_auto (GStrv) nv = g_strsplit (*p, "=", 2);

      if (nv[0] == NULL || nv[1] == NULL)
        {
          g_printerr ("bench-raw-consumer: -X %s: expected NAME=VALUE\n", *p);
          rd_kafka_conf_destroy (conf);
          return 2;
        }
      if (!set (conf, nv[0], nv[1]))
        {
          rd_kafka_conf_destroy (conf);
          return 2;
        }
    }

  start = g_get_monotonic_time ();
  /* rd_kafka_new() takes ownership of conf on success only. */
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (rk == NULL)
    {
      g_printerr ("bench-raw-consumer: %s\n", errstr);
      rd_kafka_conf_destroy (conf);
      return 1;
    }
  rd_kafka_poll_set_consumer (rk);

  partitions = partition_count (rk, topic);
  if (partitions < 1)
    {
      rd_kafka_destroy (rk);
      return 1;
    }

  subscription = rd_kafka_topic_partition_list_new (1);
  rd_kafka_topic_partition_list_add (subscription, topic, RD_KAFKA_PARTITION_UA);
  err = rd_kafka_subscribe (rk, subscription);
  rd_kafka_topic_partition_list_destroy (subscription);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
      g_printerr ("bench-raw-consumer: subscribe to %s: %s\n", topic, rd_kafka_err2str (err));
      rd_kafka_destroy (rk);
      return 1;
    }

  while (g_hash_table_size (ended) < (guint)partitions)
    {
      rd_kafka_message_t *m = rd_kafka_consumer_poll (rk, 1000);

      if (m == NULL)
        continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        g_hash_table_add (ended, GINT_TO_POINTER (m->partition));
      else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
          g_printerr ("bench-raw-consumer: %s\n", rd_kafka_message_errstr (m));
          rd_kafka_message_destroy (m);
          status = 1;
          break;
        }
      else
        {
          records++;
          bytes += m->len;
        }
      rd_kafka_message_destroy (m);
    }

  if (status == 0)
    printf ("records %" G_GUINT64_FORMAT " bytes %" G_GUINT64_FORMAT " seconds %.3f\n", records,
            bytes, (double)(g_get_monotonic_time () - start) / G_USEC_PER_SEC);
  rd_kafka_consumer_close (rk);
  rd_kafka_destroy (rk);
  return status;
}
