#!/usr/bin/env bash
# End-to-end benchmark: Tally against the raw librdkafka consumer and Kafka Streams, on the
# same real Apache Kafka broker and the same input, in one run; prints a table and draws a
# PNG chart. A measurement, not a test (except --smoke, which is one).
#
#   tests/bench/e2e.sh [--out DIR] [--bootstrap HOST:PORT]
#   tests/bench/e2e.sh --smoke        tiny input; checks that every contender produced a
#                                     number (suite 'bench-smoke'; needs a real broker at
#                                     $TALLY_TEST_KAFKA_BOOTSTRAP, exit 77 without one
#                                     unless TALLY_TEST_REQUIRE_KAFKA=1)
#
# Without --bootstrap (and not --smoke) it starts its own broker with deploy/kafka-local
# on KAFKA_LOCAL_PORT/KAFKA_LOCAL_CONTROLLER_PORT (default 19292/19293, so it does not
# disturb tests on the default 19092) and stops it at the end.
#
# Input: the State of the Union addresses (scripts/fetch-corpus sotu) folded into lines of
# at most 72 columns (`fold -s -w 72`, blank lines dropped), repeated until there are at
# least 1,000,000 lines, one record per line, dealt round-robin to the 4 partitions of a
# fresh input topic with kcat; then one sentinel record per partition. Produced once; each
# contender then reads it from the beginning with a fresh consumer group, in turn:
#
#   raw consumer   tests/bench/raw-consumer.c (bench-raw-consumer): reads every record and
#                  does nothing; done when it reaches the end of every partition
#   tally run      default tokenizer and shards, checkpoints on, exactly once (the
#                  defaults), and again with [checkpoint] guarantee=at_least_once; done when a
#                  snapshot's offsets reach the end of every partition (tests/bench/
#                  e2e_client.py caught-up sends {"top":1} requests every 50 ms)
#   Kafka Streams  tests/bench/streams: the standard word-count topology, Kafka Streams
#                  3.9.2 from Maven Central (built with mvn into
#                  ${XDG_CACHE_HOME:-~/.cache}/tally/bench-streams-3.9.2); done when the
#                  output topic shows the sentinel word with its final count, 4
#
# Each is timed from its process start. CPU seconds (user + system) and peak RSS (VmHWM)
# are the contender's own process (the broker is not included), read from /proc at the
# moment it is done, or from /usr/bin/time for the raw consumer, which exits by itself.
# "broker CPU s" is what the broker used meanwhile (only with the broker this script
# starts): Kafka Streams also writes and reads a repartition topic and a changelog. The
# load average at the start is printed: other work on the machine slows every column.
# Words are the input's words as Tally's default tokenizer counts them (`tally count`), the
# same figure for every contender; MB are 10^6 bytes of record values.
#
# Then, each on a fresh topic and a fresh `tally run`:
#   snapshot latency  100,000 distinct synthetic words counted; 50 requests for every count,
#                     one at a time, each timed from just before the request record is
#                     produced to the arrival of the reply's last part: p50 and p99
#   memory            RSS 3 s after 1,000,000 distinct synthetic 7-byte words are counted
#                     (checkpoints settled), against a control run with the same number of
#                     words and records but 1,000 distinct words; bytes per distinct word =
#                     the RSS difference divided by the difference in distinct words
#
# Output: the table on stdout; DIR (default ${TMPDIR:-/tmp}/tally-bench-e2e) receives
# results.txt (the table), e2e.dat and e2e.png (tests/bench/plot.gnuplot). Needs a build
# (TALLY_EXE, or ./build/tally with build/tests/bench/bench-raw-consumer), kcat, a JDK 17,
# mvn, gnuplot and Debian's python3-confluent-kafka (scripts/setup installs them).
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
fail_tail_lines=20
raw_consumer=$(dirname "$tally")/tests/bench/bench-raw-consumer
bench_client="$py $root/tests/bench/e2e_client.py"
kafka_version=3.9.2
sentinel=zzbenchsentinelzz

smoke=0
out=${TMPDIR:-/tmp}/tally-bench-e2e
bootstrap=
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out=$2; shift ;;
    --bootstrap) bootstrap=$2; shift ;;
    -h|--help) sed -n '2,52p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$smoke" = 1 ] && [ -z "$bootstrap" ]; then
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
fi

e2e_init tally-bench-e2e
say() { echo "e2e: $*" >&2; }

for tool in kcat java mvn gnuplot /usr/bin/time; do
  command -v "$tool" >/dev/null || fail "$tool is missing (run scripts/setup)"
done
"$py" -c 'import confluent_kafka' 2>/dev/null || fail "python3-confluent-kafka is missing (run scripts/setup)"
[ -x "$tally" ] || fail "no tally program at $tally (build first, or set TALLY_EXE)"
[ -x "$raw_consumer" ] || fail "no $raw_consumer (build first)"

if [ -z "$bootstrap" ]; then
  export KAFKA_LOCAL_PORT=${KAFKA_LOCAL_PORT:-19292}
  export KAFKA_LOCAL_CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-19293}
  export KAFKA_LOCAL_STATE=$work/kafka
  say "starting Apache Kafka $kafka_version on 127.0.0.1:$KAFKA_LOCAL_PORT"
  own_broker=1
  "$root/deploy/kafka-local" start >"$work/kafka-local.log" 2>&1 || fail "deploy/kafka-local start failed"
  bootstrap=$("$root/deploy/kafka-local" bootstrap)
  broker_pid=$(cat "$KAFKA_LOCAL_STATE/broker.pid")
fi

# ---------------------------------------------------------------------------------------
# The Kafka Streams contender, built once into a cache (again when its sources change).
streams_src=$root/tests/bench/streams
streams_cache=${XDG_CACHE_HOME:-$HOME/.cache}/tally/bench-streams-$kafka_version
if [ ! -f "$streams_cache/.built" ] \
  || [ -n "$(find "$streams_src" -newer "$streams_cache/.built" -type f -print -quit)" ]; then
  say "building the Kafka Streams word count with mvn into $streams_cache"
  rm -rf "$streams_cache"
  mkdir -p "$streams_cache"
  mvn -q -B -f "$streams_src/pom.xml" -Dbench.out="$streams_cache" package \
    dependency:copy-dependencies >"$work/mvn.log" 2>&1 || fail "mvn could not build tests/bench/streams"
  touch "$streams_cache/.built"
fi

# ---------------------------------------------------------------------------------------
# Input
if [ "$smoke" = 1 ]; then
  min_records=2000 latency_words=1000 latency_requests=5 memory_words=10000 control_words=100
else
  min_records=1000000 latency_words=100000 latency_requests=50 memory_words=1000000 control_words=1000
fi

sotu_lines | fold -s -w 72 | sed 's/ *$//' | grep -v '^$' >"$work/sotu.txt"
if [ "$smoke" = 1 ]; then
  head -n "$min_records" "$work/sotu.txt" >"$work/input.txt"
else
  lines=$(wc -l <"$work/sotu.txt")
  copies=$(((min_records + lines - 1) / lines))
  for ((i = 0; i < copies; i++)); do cat "$work/sotu.txt"; done >"$work/input.txt"
fi
rm -f "$work/sotu.txt"
for p in 0 1 2 3; do echo "$sentinel"; done >>"$work/input.txt"
records=$(wc -l <"$work/input.txt")
bytes=$(($(wc -c <"$work/input.txt") - records))
words=$("$tally" count -f csv "$work/input.txt" | awk -F, 'NR > 1 { s += $NF } END { print s + 0 }')
[ "$words" -gt 0 ] || fail "tally count found no words in the input"

run_id="bench-e2e-$$-$(date +%s)"
input_topic=$run_id-input
$bench_client topics -b "$bootstrap" "$input_topic:4" 2>>"$work/client.log" || fail "cannot create $input_topic"
say "producing $records records ($bytes bytes, $words words) to $input_topic"
head -n -4 "$work/input.txt" | split -n r/4 - "$work/part."
p=0
for f in "$work"/part.*; do
  echo "$sentinel" >>"$f"
  kcat -P -b "$bootstrap" -t "$input_topic" -p "$p" -X linger.ms=50 -X batch.num.messages=10000 \
    -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576 <"$f" \
    2>>"$work/kcat.log" || fail "kcat could not produce to partition $p"
  p=$((p + 1))
done
rm -f "$work"/part.*
produced=$($bench_client ends -b "$bootstrap" "$input_topic" | awk '{ s += $2 } END { print s }')
[ "$produced" = "$records" ] || fail "the input topic holds $produced records, expected $records"

clk_tck=$(getconf CLK_TCK)
# proc_figures PID: prints "CPU_SECONDS PEAK_RSS_KB" of a running process
proc_figures() {
  local stat hwm
  stat=$(cut -d' ' -f14,15 "/proc/$1/stat")
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status")
  echo "$stat" | awk -v t="$clk_tck" -v h="$hwm" '{ printf "%.2f %d\n", ($1 + $2) / t, h }'
}
# broker_cpu: CPU seconds the broker has used so far, when it is ours ("-" otherwise)
broker_cpu() {
  if [ -n "${broker_pid:-}" ]; then
    cut -d' ' -f14,15 "/proc/$broker_pid/stat" | awk -v t="$clk_tck" '{ printf "%.2f\n", ($1 + $2) / t }'
  else
    echo -
  fi
}
# broker_used BEFORE: broker CPU seconds since BEFORE
broker_used() {
  local after
  after=$(broker_cpu)
  if [ "$after" = - ]; then echo -; else awk -v a="$1" -v b="$after" 'BEGIN { printf "%.2f", b - a }'; fi
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }

# stop PID: SIGTERM, then SIGKILL after 20 s
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  wait_exit "$1" 200 || true
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Results: one line per contender, "NAME SECONDS CPU_SECONDS PEAK_RSS_KB BROKER_CPU_SECONDS"
# or "NAME -".
: >"$work/results"
measured=0

# ---------------------------------------------------------------------------------------
# 1. The raw consumer
say "raw consumer"
load=$(cut -d' ' -f1 /proc/loadavg)
before=$(broker_cpu)
if /usr/bin/time -f '%e %U %S %M' -o "$work/raw.time" "$raw_consumer" -b "$bootstrap" \
  -t "$input_topic" >"$work/raw.out" 2>"$work/raw.log"; then
  read -r _ got _ _ _ _ <"$work/raw.out"
  [ "$got" = "$records" ] || fail "the raw consumer read $got records, expected $records"
  awk -v b="$(broker_used "$before")" '{ printf "raw %s %.2f %d %s\n", $1, $2 + $3, $4, b }' \
    "$work/raw.time" >>"$work/results"
  measured=$((measured + 1))
else
  echo "raw -" >>"$work/results"
  say "the raw consumer failed: $(tail -n 1 "$work/raw.log")"
fi
# The same floor with the queue setting Tally gives its own consumer (plugin/kafka/tally-source.c:
# queued.min.messages=1000000), so that the ratio does not come from that setting alone
if "$raw_consumer" -b "$bootstrap" -t "$input_topic" -X queued.min.messages=1000000 \
  >"$work/raw-tuned.out" 2>>"$work/raw.log"; then
  read -r _ got _ _ _ raw_tuned <"$work/raw-tuned.out"
  [ "$got" = "$records" ] || fail "the raw consumer read $got records, expected $records"
else
  raw_tuned=-
fi

# ---------------------------------------------------------------------------------------
# tally_conf NAME INPUT_TOPIC [GUARANTEE]: writes $work/NAME.conf for a fresh group and
# fresh topics ([checkpoint] guarantee GUARANTEE, the default exactly_once when not given)
tally_conf() {
  local id=$run_id-$1
  $bench_client topics -b "$bootstrap" "$id-snapshots:1" "$id-requests:1" "$id-changelog:4:compact" \
    2>>"$work/client.log" || fail "cannot create the topics of $1"
  cat >"$work/$1.conf" <<EOF
[kafka]
bootstrap.servers=$bootstrap
[input]
topics=$2
group_id=$id
[output]
topic=$id-snapshots
[requests]
topic=$id-requests
[checkpoint]
changelog_topic=$id-changelog
guarantee=${3:-exactly_once}
EOF
}

# start_measured NAME INPUT_TOPIC: starts the caught-up helper, waits until it is
# connected, then starts `tally run` ($tally_pid, started at $start); the helper's pid is
# $helper_pid and it writes its line to $work/NAME.caught
start_measured() {
  local i
  $bench_client caught-up -b "$bootstrap" --input "$2" --requests "$run_id-$1-requests" \
    --output "$run_id-$1-snapshots" --ready "$work/$1.ready" --log "$work/$1.log" --timeout 900 \
    >"$work/$1.caught" 2>>"$work/client.log" &
  helper_pid=$!
  pids+=("$helper_pid")
  for ((i = 0; i < 600; i++)); do
    [ -f "$work/$1.ready" ] && break
    kill -0 "$helper_pid" 2>/dev/null || fail "$1: the caught-up helper exited"
    sleep 0.05
  done
  [ -f "$work/$1.ready" ] || fail "$1: the caught-up helper never got ready"
  start=$(now)
  spawn_tally "$1" "$work/$1.conf"
}

# 2. tally run, exactly once (the default) and at least once
# measure_tally NAME GUARANTEE
measure_tally() {
  say "tally run ($2)"
  tally_conf "$1" "$input_topic" "$2"
  before=$(broker_cpu)
  start_measured "$1" "$input_topic"
  if wait "$helper_pid"; then
    figures="$(proc_figures "$tally_pid") $(broker_used "$before")"
    read -r _ done_at _ total_words _ <"$work/$1.caught"
    [ "$total_words" = "$words" ] || fail "tally run ($2) counted $total_words words, tally count $words"
    echo "$1 $(awk -v a="$start" -v b="$done_at" 'BEGIN { printf "%.3f", b - a }') $figures" >>"$work/results"
    measured=$((measured + 1))
  else
    echo "$1 -" >>"$work/results"
    say "tally run ($2) did not catch up: $(tail -n 1 "$work/$1.log")"
  fi
  stop "$tally_pid"
}
measure_tally tally exactly_once
measure_tally tallyalo at_least_once

# ---------------------------------------------------------------------------------------
# 3. Kafka Streams
say "Kafka Streams"
streams_out=$run_id-streams-output
$bench_client topics -b "$bootstrap" "$streams_out:4" 2>>"$work/client.log" || fail "cannot create $streams_out"
kcat -C -u -b "$bootstrap" -t "$streams_out" -o beginning -s value=q -f '%k %s\n' \
  >"$work/streams.counts" 2>>"$work/kcat.log" &
pids+=("$!")
kcat_pid=$!
before=$(broker_cpu)
start=$(now)
java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$streams_cache/classes:$streams_cache/lib/*" \
  org.tally.bench.WordCountStreams "$bootstrap" "$input_topic" "$streams_out" "$run_id-streams" \
  "$work/streams-state" >"$work/streams.out" 2>"$work/streams.log" &
java_pid=$!
pids+=("$java_pid")
deadline=$(($(date +%s) + 900))
streams_done=0
while kill -0 "$java_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
  if grep -qx "$sentinel 4" "$work/streams.counts"; then
    done_at=$(now)
    figures="$(proc_figures "$java_pid") $(broker_used "$before")"
    streams_done=1
    break
  fi
  sleep 0.05
done
if [ "$streams_done" = 1 ]; then
  echo "streams $(awk -v a="$start" -v b="$done_at" 'BEGIN { printf "%.3f", b - a }') $figures" >>"$work/results"
  measured=$((measured + 1))
else
  echo "streams -" >>"$work/results"
  say "Kafka Streams never showed '$sentinel 4': $(tail -n 1 "$work/streams.log")"
fi
stop "$java_pid"
kill "$kcat_pid" 2>/dev/null || true

# ---------------------------------------------------------------------------------------
# Snapshot latency and memory, each on its own topic and `tally run`.
# synthetic_run NAME DISTINCT WORDS: counts WORDS synthetic words (DISTINCT of them
# distinct, 10 per record); leaves tally running as $tally_pid; checks that the
# caught-up snapshot holds DISTINCT distinct words
synthetic_run() {
  local topic=$run_id-$1-input distinct
  $bench_client topics -b "$bootstrap" "$topic:4" 2>>"$work/client.log" || fail "cannot create $topic"
  $bench_client words --distinct "$2" --words "$3" \
    | kcat -P -b "$bootstrap" -t "$topic" -X linger.ms=50 -X batch.num.messages=10000 \
      -X queue.buffering.max.messages=1000000 2>>"$work/kcat.log" || fail "cannot produce to $topic"
  tally_conf "$1" "$topic"
  start_measured "$1" "$topic"
  wait "$helper_pid" || fail "$1: tally run did not catch up"
  read -r _ _ _ _ _ distinct _ <"$work/$1.caught"
  [ "$distinct" = "$2" ] || fail "$1: $distinct distinct words counted, expected $2"
}

say "snapshot latency ($latency_words distinct words, $latency_requests requests)"
synthetic_run latency "$latency_words" "$latency_words"
latency=$($bench_client latency -b "$bootstrap" --requests "$run_id-latency-requests" \
  --output "$run_id-latency-snapshots" -n "$latency_requests" 2>>"$work/client.log") \
  || fail "latency: no complete reply"
stop "$tally_pid"

say "memory ($memory_words distinct words against $control_words)"
# RSS 3 s after catching up (three checkpoint intervals: the changelog records of the
# last counts are produced and acknowledged by then), and the peak
synthetic_run memory "$memory_words" "$memory_words"
sleep 3
rss_words=$(rss_kb "$tally_pid")
hwm_words=$(proc_figures "$tally_pid" | cut -d' ' -f2)
stop "$tally_pid"
synthetic_run control "$control_words" "$memory_words"
sleep 3
rss_control=$(rss_kb "$tally_pid")
stop "$tally_pid"
memory="$rss_words $rss_control $hwm_words"

# ---------------------------------------------------------------------------------------
# The table
mkdir -p "$out"
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
awk -v records="$records" -v bytes="$bytes" -v words="$words" -v latency="$latency" \
  -v memory="$memory" -v mw="$memory_words" -v cw="$control_words" -v machine="$machine" \
  -v kafka="$kafka_version" -v load="$load" -v raw_tuned="$raw_tuned" -v dat="$out/e2e.dat" -v latdat="$out/e2e-latency.dat" '
  function name(c) { return c == "raw" ? "raw consumer" : c == "tally" ? "tally run" : c == "tallyalo" ? "tally, ALO" : "Kafka Streams" }
  { c = $1; order[NR] = c; if ($2 != "-") { secs[c] = $2; cpu[c] = $3; rss[c] = $4; bcpu[c] = $5 } }
  END {
    printf "Machine: %s; Apache Kafka %s broker on the same machine; load average %s at the start.\n", machine, kafka, load
    printf "Input: %d records, %d words, %.1f MB of values, 4 partitions.\n\n", records, words, bytes / 1e6
    printf "| contender     | seconds | records/s | words/s   | MB/s  | peak RSS MB | CPU s | broker CPU s |\n"
    printf "|---------------|--------:|----------:|----------:|------:|------------:|------:|-------------:|\n"
    printf "" >dat
    for (i = 1; i <= NR; i++) {
      c = order[i]
      if (c in secs) {
        printf "| %-13s | %7.2f | %9.0f | %9.0f | %5.1f | %11.1f | %5.2f | %12s |\n", name(c), secs[c], \
          records / secs[c], words / secs[c], bytes / 1e6 / secs[c], rss[c] / 1024, cpu[c], bcpu[c]
        printf "\"%s\" %.0f\n", name(c), records / secs[c] >>dat
      } else {
        printf "| %-13s | not measured (it failed; see above)                                            |\n", name(c)
        printf "\"%s\" 0\n", name(c) >>dat
      }
    }
    printf "\n"
    printf "(tally run: [checkpoint] guarantee=exactly_once, the default; tally, ALO: at_least_once)\n"
    if ("tally" in secs && "tallyalo" in secs)
      printf "Tally exactly once / at least once, records/s: %.2f (target >= 0.9)\n", secs["tallyalo"] / secs["tally"]
    if ("tally" in secs && "raw" in secs)
      printf "Tally / raw consumer, records/s:  %.2f (target >= 0.8)\n", secs["raw"] / secs["tally"]
    else
      printf "Tally / raw consumer, records/s:  not measured\n"
    if ("tally" in secs && raw_tuned != "-")
      printf "Raw consumer with queued.min.messages=1000000 (as Tally sets it): %.2f s from its creation; Tally / it: %.2f\n", raw_tuned, raw_tuned / secs["tally"]
    if ("tally" in secs && "streams" in secs)
      printf "Tally / Kafka Streams, records/s: %.1f (target >= 10)\n", secs["streams"] / secs["tally"]
    else
      printf "Tally / Kafka Streams, records/s: not measured\n"
    # CPU time depends much less than wall time on what else runs on the machine.
    if ("tally" in secs && "raw" in secs && "streams" in secs && cpu["tally"] > 0)
    {
      printf "CPU seconds for the same input: raw consumer %.2f, tally run %.2f, Kafka Streams %.2f; Streams / Tally: %.1f", \
        cpu["raw"], cpu["tally"], cpu["streams"], cpu["streams"] / cpu["tally"]
      if (bcpu["tally"] != "-")
        printf " (%.1f counting the broker'"'"'s CPU too)", (cpu["streams"] + bcpu["streams"]) / (cpu["tally"] + bcpu["tally"])
      printf "\n"
    }
    if (latency != "-") {
      split(latency, l, " ")
      printf "Snapshot latency, %d distinct words (%d part(s)), request produced to last part received: p50 %.1f ms, p99 %.1f ms (target p99 < 50 ms)\n", l[10], l[8], l[2], l[4]
      printf "\"p50\" %s\n\"p99\" %s\n", l[2], l[4] >latdat
    } else
      printf "Snapshot latency: not measured\n"
    if (memory != "-") {
      split(memory, m, " ")
      printf "Memory: RSS %.1f MB (peak %.1f MB) with %d distinct words (%d bytes of words), %.1f MB with %d: %.0f bytes per distinct word\n", m[1] / 1024, m[3] / 1024, mw, mw * 7, m[2] / 1024, cw, (m[1] - m[2]) * 1024 / (mw - cw)
    } else
      printf "Memory: not measured\n"
  }' "$work/results" | tee "$out/results.txt"

gnuplot -e "datafile='$out/e2e.dat'; latfile='$out/e2e-latency.dat'; latwords=$latency_words; outfile='$out/e2e.png'" "$root/tests/bench/plot.gnuplot" \
  2>"$work/gnuplot.log" || fail "gnuplot could not draw the chart"
[ -s "$out/e2e.png" ] || fail "no chart was drawn"
echo
echo "chart: $out/e2e.png"

if [ "$smoke" = 1 ]; then
  [ "$measured" = 4 ] || fail "smoke: only $measured of 4 contenders produced a number"
  echo "ok: every contender produced a number"
fi
[ "$measured" = 4 ]
