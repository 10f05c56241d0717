/*
 * The Kafka Streams contender of Tally's end-to-end benchmark (tests/bench/e2e.sh): the
 * standard word-count topology of the Kafka Streams documentation and its WordCountDemo.
 * Every record value is lowercased and split on non-word characters (\W+), the words are
 * re-keyed (groupBy, through a repartition topic) and counted in a state store (count),
 * and every changed count goes to the output topic as word -> count (String, Long).
 *
 *   java -cp CLASSES:LIB/* org.tally.bench.WordCountStreams BOOTSTRAP INPUT OUTPUT APP_ID STATE_DIR [THREADS]
 *
 * Settings other than the defaults: commit.interval.ms=1000 (the default 30 s would delay
 * the counts reaching the output topic, which is how the benchmark sees the end) and
 * num.stream.threads = THREADS (default: one per processor, as Tally's aggregator shards).
 * Runs until SIGINT or SIGTERM.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
package org.tally.bench;

import java.util.Arrays;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;

public final class WordCountStreams {
  public static void main(String[] args) throws InterruptedException {
    if (args.length < 5) {
      System.err.println(
          "usage: WordCountStreams BOOTSTRAP INPUT OUTPUT APP_ID STATE_DIR [THREADS]");
      System.exit(2);
    }
    int threads =
        args.length > 5 ? Integer.parseInt(args[5]) : Runtime.getRuntime().availableProcessors();

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
    props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> lines = builder.stream(args[1]);
    KTable<String, Long> counts =
        lines
            .flatMapValues(value -> Arrays.asList(value.toLowerCase(Locale.ROOT).split("\\W+")))
            .groupBy((key, word) -> word)
            .count();
    counts.toStream().to(args[2], Produced.with(Serdes.String(), Serdes.Long()));

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
    stopped.await();
  }
}
