/*
 * The Kafka Streams contender of Tally's end-to-end benchmark (tests/bench/e2e.sh): the
 * standard word-count topology of the Kafka Streams documentation and its WordCountDemo.
 * Every record value is lowercased and split on non-word characters (\W+), the words are
 * re-keyed (groupBy, through a repartition topic) and counted in a state store (count,
 * named "counts"), and every changed count goes to the output topic as word -> count
 * (String, Long).
 *
 *   java -cp CLASSES:LIB/* org.tally.bench.WordCountStreams run PROFILE BOOTSTRAP INPUT \
 *        OUTPUT APP_ID STATE_DIR THREADS SENTINELS EXPECTED
 *   java -cp CLASSES:LIB/* org.tally.bench.WordCountStreams sentinels PREFIX PARTITIONS
 *
 * run: counts until SIGINT or SIGTERM. When every word of SENTINELS (comma-separated) has
 * the count EXPECTED in the store, it prints `done_at EPOCH_SECONDS` on standard output:
 * the store is asked every 50 ms by an interactive query (KafkaStreams#store), which reads
 * through the record cache, so the end is seen when the counting is done and not at the
 * next commit, whatever commit.interval.ms is (as Tally's snapshot reflects the counts
 * in memory). PROFILE is one of (each setting and its source: tests/bench/README.md):
 *
 *   defaults  what the benchmark always ran: the library's defaults except
 *             commit.interval.ms=1000 (instead of 30000) and num.stream.threads=THREADS
 *   tuned     tuned for throughput as the Kafka Streams and Kafka client documentation
 *             says: a 128 MiB record cache, commit.interval.ms=30000, THREADS threads,
 *             consumer fetch.min.bytes=100000, producer batch.size=200000, linger.ms=100,
 *             acks=1
 *   eos       tuned, with processing.guarantee=exactly_once_v2 and commit.interval.ms=1000
 *             (a transaction a second, as Tally's [checkpoint] interval_ms) and the
 *             producer's acks=all that exactly once requires
 *
 * sentinels: prints PARTITIONS words PREFIX + letters, the i-th of which goes to partition
 * i of a PARTITIONS-partition repartition topic (the producer's default partitioner:
 * murmur2 of the key's UTF-8 bytes, as Kafka Streams' DefaultStreamPartitioner). Each input
 * partition ends with a record holding all of them, so that when every one is counted
 * EXPECTED (= input partitions) times, every count task has counted the words of every
 * input record before it.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
package org.tally.bench;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

public final class WordCountStreams {
  private static void usage() {
    System.err.println(
        "usage: WordCountStreams run PROFILE BOOTSTRAP INPUT OUTPUT APP_ID STATE_DIR THREADS"
            + " SENTINELS EXPECTED\n"
            + "       WordCountStreams sentinels PREFIX PARTITIONS");
    System.exit(2);
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length == 3 && args[0].equals("sentinels")) {
      sentinels(args[1], Integer.parseInt(args[2]));
    } else if (args.length == 10 && args[0].equals("run")) {
      run(args);
    } else {
      usage();
    }
  }

  /* The partition the producer's default partitioner gives a String key. */
  private static int partitionOf(String word, int partitions) {
    return Utils.toPositive(Utils.murmur2(word.getBytes(StandardCharsets.UTF_8))) % partitions;
  }

  private static void sentinels(String prefix, int partitions) {
    String[] found = new String[partitions];
    int left = partitions;
    for (int i = 0; left > 0 && i < 26 * 26 * 26; i++) {
      String word =
          prefix + (char) ('a' + i / 676) + (char) ('a' + i / 26 % 26) + (char) ('a' + i % 26);
      int p = partitionOf(word, partitions);
      if (found[p] == null) {
        found[p] = word;
        left--;
      }
    }
    if (left > 0) {
      System.err.println("no sentinel word found for every partition");
      System.exit(1);
    }
    System.out.println(String.join(" ", found));
  }

  private static Properties profile(String name, int threads) {
    Properties props = new Properties();
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    switch (name) {
      case "defaults":
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        break;
      case "tuned":
      case "eos":
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 128L * 1024 * 1024);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MIN_BYTES_CONFIG), 100000);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 200000);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 100);
        if (name.equals("tuned")) {
          props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 30000);
          props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "1");
        } else {
          props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
          props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        }
        break;
      default:
        usage();
    }
    return props;
  }

  private static void run(String[] args) throws InterruptedException {
    String bootstrap = args[2], input = args[3], output = args[4];
    List<String> sentinels = Arrays.asList(args[8].split(","));
    long expected = Long.parseLong(args[9]);

    Properties props = profile(args[1], Integer.parseInt(args[7]));
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[5]);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
    props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> lines = builder.stream(input);
    KTable<String, Long> counts =
        lines
            .flatMapValues(value -> Arrays.asList(value.toLowerCase(Locale.ROOT).split("\\W+")))
            .groupBy((key, word) -> word)
            .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts"));
    counts.toStream().to(output, Produced.with(Serdes.String(), Serdes.Long()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close();
                  stopped.countDown();
                }));
    streams.start();

    // The end: every sentinel counted `expected` times, asked of the store every 50 ms.
    List<String> left = new ArrayList<>(sentinels);
    while (!left.isEmpty() && stopped.getCount() > 0) {
      Thread.sleep(50);
      try {
        ReadOnlyKeyValueStore<String, Long> store =
            streams.store(
                StoreQueryParameters.fromNameAndType(
                    "counts", QueryableStoreTypes.<String, Long>keyValueStore()));
        left.removeIf(
            word -> {
              Long n = store.get(word);
              return n != null && n >= expected;
            });
      } catch (InvalidStateStoreException e) {
        // not running yet, or a rebalance: ask again
      }
    }
    if (left.isEmpty()) {
      System.out.printf(Locale.ROOT, "done_at %.6f%n", System.currentTimeMillis() / 1000.0);
      System.out.flush();
    }
    stopped.await();
  }
}
