#!/usr/bin/env bash
# End-to-end benchmark: Tally against the raw librdkafka consumer and Kafka Streams, on the
# same real Apache Kafka broker and the same input, in one run; prints a table and draws a
# PNG chart. A measurement, not a test (except --smoke, which is one).
#
#   tests/bench/e2e.sh [--quick] [--runs N] [--only LIST] [--out DIR] [--bootstrap HOST:PORT]
#                      the headline input (742 MB), or with --quick the small one (74 MB);
#                      every contender N times (default 2), in N rounds; --only: the
#                      contenders of LIST (comma-separated: raw,rawq,tally,tallyalo,tally2,
#                      streamstuned,streamseos,streams; default all of them)
#   tests/bench/e2e.sh --smoke        tiny input, every contender once; checks that every
#                                     contender produced a number (suite 'bench-smoke';
#                                     needs a real broker at $TALLY_TEST_KAFKA_BOOTSTRAP,
#                                     exit 77 without one unless TALLY_TEST_REQUIRE_KAFKA=1)
#
# Without --bootstrap (and not --smoke) it starts its own broker with deploy/kafka-local
# on KAFKA_LOCAL_PORT/KAFKA_LOCAL_CONTROLLER_PORT (default 19292/19293, so it does not
# disturb tests on the default 19092) and stops it at the end.
#
# Input: the State of the Union addresses (scripts/fetch-corpus sotu) folded into lines of
# at most 72 columns (`fold -s -w 72`, blank lines dropped), repeated 70 times (742 MB;
# --quick: 7 times, 74 MB), one record per line, dealt round-robin to the 4 partitions of
# a fresh input topic with kcat; then one sentinel record per partition: 4 words chosen so
# that Kafka Streams' repartition sends one to each of its 4 partitions (WordCountStreams
# sentinels). Produced once; each contender then reads it from the beginning with a fresh
# consumer group, one after the other, in rounds (each contender once per round), timed
# from its process start:
#
#   raw            tests/bench/raw-consumer.c (bench-raw-consumer): reads every record and
#                  does nothing; done when it reaches the end of every partition
#   raw q=1M       the same with queued.min.messages=1000000, as Tally's consumer has it
#   tally EOS      `tally run` with the default tokenizer and shards, checkpoints on,
#                  exactly once (the defaults); done when a snapshot's offsets reach the end
#                  of every partition (tests/bench/e2e_client.py caught-up sends {"top":1}
#                  requests every 50 ms)
#   tally ALO      the same with [checkpoint] guarantee=at_least_once
#   tally x2 EOS   two `tally run` (the defaults) in one consumer group, started together;
#                  done when their replies to one request cover every partition at its end
#   KS defaults    tests/bench/streams: the standard word-count topology, Kafka Streams
#                  3.9.2 from Maven Central (built with mvn into ${XDG_CACHE_HOME:-~/.cache}/
#                  tally/bench-streams-3.9.2-HASH), as it always ran here: the library's
#                  defaults but commit.interval.ms=1000 and one stream thread per processor
#   KS tuned       tuned for throughput as its documentation says (the settings and their
#                  sources: WordCountStreams.java and tests/bench/README.md)
#   KS EOS         tuned, with processing.guarantee=exactly_once_v2, a commit a second
#
# Kafka Streams is done when its count store (asked every 50 ms by an interactive query,
# which reads through the record cache) holds every sentinel word 4 times.
#
# Each is timed from its process start. CPU seconds (user + system) and peak RSS (VmHWM)
# are the contender's own process (both processes, summed, for tally x2; the broker is not
# included), read from /proc at the moment it is done, or from /usr/bin/time for the raw
# consumer, which exits by itself. "broker CPU s" is what the broker used meanwhile (only
# with the broker this script starts): Kafka Streams also writes and reads a repartition
# topic and a changelog. The 1-minute load average is printed for the moment before every
# run: other work on the machine slows every column. Words are the input's words as Tally's
# default tokenizer counts them (`tally count`), the same figure for every contender; MB
# are 10^6 bytes of record values.
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
# results.txt (the table), runs.txt (one line per run), e2e.dat and e2e.png
# (tests/bench/plot.gnuplot). Needs a build (TALLY_EXE, or ./build/tally with
# build/tests/bench/bench-raw-consumer), kcat, a JDK 17, mvn, gnuplot and Debian's
# python3-confluent-kafka (scripts/setup installs them).
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
fail_tail_lines=20
raw_consumer=$(dirname "$tally")/tests/bench/bench-raw-consumer
bench_client="$py $root/tests/bench/e2e_client.py"
kafka_version=3.9.2
partitions=4

smoke=0
quick=0
runs=
only=,raw,rawq,tally,tallyalo,tally2,streamstuned,streamseos,streams,
out=${TMPDIR:-/tmp}/tally-bench-e2e
bootstrap=
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --only) only=,$2,; shift ;;
    --out) out=$2; shift ;;
    --bootstrap) bootstrap=$2; shift ;;
    -h|--help) sed -n '2,73p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$runs" ]; then
  if [ "$smoke" = 1 ]; then runs=1; else runs=2; fi
fi
case "$runs" in '' | *[!0-9]* | 0) echo "e2e.sh: --runs wants a positive number" >&2; exit 2 ;; esac

if [ "$smoke" = 1 ] && [ -z "$bootstrap" ]; then
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
fi

e2e_init tally-bench-e2e
say() { echo "e2e: $(date +%H:%M:%S) $*" >&2; }

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
# The Kafka Streams contender, built once into a cache named after its sources' hash (the
# script of another tree, with other sources, uses another directory).
streams_src=$root/tests/bench/streams
streams_hash=$(cd "$streams_src" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
streams_cache=${XDG_CACHE_HOME:-$HOME/.cache}/tally/bench-streams-$kafka_version-$streams_hash
if [ ! -f "$streams_cache/.built" ]; then
  say "building the Kafka Streams word count with mvn into $streams_cache"
  rm -rf "$streams_cache"
  mkdir -p "$streams_cache"
  mvn -q -B -f "$streams_src/pom.xml" -Dbench.out="$streams_cache" package \
    dependency:copy-dependencies >"$work/mvn.log" 2>&1 || fail "mvn could not build tests/bench/streams"
  touch "$streams_cache/.built"
fi
# streams_java ARGS...: WordCountStreams ARGS (exec: when run in the background, $! is the JVM)
streams_java() {
  exec java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$streams_cache/classes:$streams_cache/lib/*" \
    org.tally.bench.WordCountStreams "$@"
}

# ---------------------------------------------------------------------------------------
# Input
if [ "$smoke" = 1 ]; then
  copies=0 smoke_records=2000 latency_words=1000 latency_requests=5 memory_words=10000 control_words=100
elif [ "$quick" = 1 ]; then
  copies=7 latency_words=100000 latency_requests=50 memory_words=1000000 control_words=1000
else
  copies=70 latency_words=100000 latency_requests=50 memory_words=1000000 control_words=1000
fi
sentinel_line=$(streams_java sentinels zzbenchsentinel "$partitions") \
  || fail "WordCountStreams could not choose the sentinel words"
read -r -a sentinels <<<"$sentinel_line"
[ "${#sentinels[@]}" = "$partitions" ] || fail "expected $partitions sentinel words, got '$sentinel_line'"

sotu_lines | fold -s -w 72 | sed 's/ *$//' | grep -v '^$' >"$work/sotu.txt"
if [ "$smoke" = 1 ]; then
  head -n "$smoke_records" "$work/sotu.txt" >"$work/input.txt"
else
  for ((i = 0; i < copies; i++)); do cat "$work/sotu.txt"; done >"$work/input.txt"
fi
rm -f "$work/sotu.txt"
for ((p = 0; p < partitions; p++)); do echo "$sentinel_line"; done >>"$work/input.txt"
records=$(wc -l <"$work/input.txt")
bytes=$(($(wc -c <"$work/input.txt") - records))
words=$("$tally" count -f csv "$work/input.txt" | awk -F, 'NR > 1 { s += $NF } END { print s + 0 }')
[ "$words" -gt 0 ] || fail "tally count found no words in the input"

run_id="bench-e2e-$$-$(date +%s)"
input_topic=$run_id-input
$bench_client topics -b "$bootstrap" "$input_topic:$partitions" 2>>"$work/client.log" || fail "cannot create $input_topic"
say "producing $records records ($bytes bytes, $words words) to $input_topic"
head -n "-$partitions" "$work/input.txt" | split -n "r/$partitions" - "$work/part."
rm -f "$work/input.txt"
p=0
for f in "$work"/part.*; do
  echo "$sentinel_line" >>"$f"
  kcat -P -b "$bootstrap" -t "$input_topic" -p "$p" -X linger.ms=50 -X batch.num.messages=10000 \
    -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576 <"$f" \
    2>>"$work/kcat.log" || fail "kcat could not produce to partition $p"
  rm -f "$f"
  p=$((p + 1))
done
produced=$($bench_client ends -b "$bootstrap" "$input_topic" | awk '{ s += $2 } END { print s }')
[ "$produced" = "$records" ] || fail "the input topic holds $produced records, expected $records"
# The broker creates __consumer_offsets at the first group join and __transaction_state at
# the first transaction, and loads their coordinators: not in the first measured run.
$bench_client warm-up -b "$bootstrap" "$input_topic" 2>>"$work/client.log" || fail "cannot warm the broker up"

clk_tck=$(getconf CLK_TCK)
# proc_figures PID...: prints "CPU_SECONDS PEAK_RSS_KB" of running processes, summed
proc_figures() {
  local pid stat cpu=0 hwm=0
  for pid in "$@"; do
    stat=$(cut -d' ' -f14,15 "/proc/$pid/stat")
    cpu=$(echo "$stat" | awk -v t="$clk_tck" -v c="$cpu" '{ printf "%.2f", c + ($1 + $2) / t }')
    hwm=$((hwm + $(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")))
  done
  echo "$cpu $hwm"
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
load1() { cut -d' ' -f1 /proc/loadavg; }

# stop PID: SIGTERM, then SIGKILL after 20 s
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  wait_exit "$1" 200 || true
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Results: one line per run, "NAME ROUND SECONDS CPU_SECONDS PEAK_RSS_KB BROKER_CPU_SECONDS
# LOAD" ("NAME ROUND - - - - LOAD" when it failed; LOAD: the 1-minute load average before)
: >"$work/results"
failed=0
# record NAME ROUND LOAD SECONDS "CPU_SECONDS PEAK_RSS_KB BROKER_CPU_SECONDS"
record() {
  echo "$1 $2 $4 $5 $3" >>"$work/results"
  say "  $1 round $2: $4 s (CPU s, peak RSS KB, broker CPU s: $5; load before: $3)"
}
record_failure() {
  echo "$1 $2 - - - - $3" >>"$work/results"
  say "  $1 round $2: failed (load before: $3)"
  failed=$((failed + 1))
}
# seconds_since START END: END - START with 3 decimals
seconds_since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
timeout_s=$((copies > 7 ? 3600 : 900))

# ---------------------------------------------------------------------------------------
# 1. The raw consumer. measure_raw NAME ROUND [-X PROPERTY=VALUE...]
measure_raw() {
  local name=$1 round=$2 load before got
  shift 2
  say "round $round: raw consumer $*"
  load=$(load1)
  before=$(broker_cpu)
  if /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$raw_consumer" -b "$bootstrap" \
    -t "$input_topic" "$@" >"$work/$name.out" 2>>"$work/raw.log"; then
    read -r _ got _ _ _ _ <"$work/$name.out"
    [ "$got" = "$records" ] || fail "the raw consumer read $got records, expected $records"
    record "$name" "$round" "$load" "$(awk '{ print $1 }' "$work/$name.time")" \
      "$(awk '{ printf "%.2f %d", $2 + $3, $4 }' "$work/$name.time") $(broker_used "$before")"
  else
    record_failure "$name" "$round" "$load"
    say "the raw consumer failed: $(tail -n 1 "$work/raw.log")"
  fi
}

# ---------------------------------------------------------------------------------------
# tally_conf NAME INPUT_TOPIC [GUARANTEE]: writes $work/NAME.conf for a fresh group and
# fresh topics ([checkpoint] guarantee GUARANTEE, the default exactly_once when not given)
tally_conf() {
  local id=$run_id-$1
  $bench_client topics -b "$bootstrap" "$id-snapshots:1" "$id-requests:1" "$id-changelog:$partitions:compact" \
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

# start_measured NAME INPUT_TOPIC [INSTANCES]: starts the caught-up helper, waits until it
# is connected, then starts INSTANCES (default 1) `tally run` with NAME.conf, all at once
# ($tally_pids, started at $start; logs NAME.log, NAME-2.log, ...); the helper's pid is
# $helper_pid and it writes its line to $work/NAME.caught
start_measured() {
  local i
  $bench_client caught-up -b "$bootstrap" --input "$2" --requests "$run_id-$1-requests" \
    --output "$run_id-$1-snapshots" --ready "$work/$1.ready" --log "$work/$1.log" --timeout "$timeout_s" \
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
  tally_pids=()
  spawn_tally "$1" "$work/$1.conf"
  tally_pids+=("$tally_pid")
  for ((i = 2; i <= ${3:-1}; i++)); do
    spawn_tally "$1-$i" "$work/$1.conf"
    tally_pids+=("$tally_pid")
  done
}

# 2. tally run. measure_tally NAME ROUND GUARANTEE [INSTANCES]
measure_tally() {
  local name=$1-$2 load before figures done_at total_words pid
  say "round $2: tally run ($3, ${4:-1} instance(s))"
  tally_conf "$name" "$input_topic" "$3"
  load=$(load1)
  before=$(broker_cpu)
  start_measured "$name" "$input_topic" "${4:-1}"
  if wait "$helper_pid"; then
    figures="$(proc_figures "${tally_pids[@]}") $(broker_used "$before")"
    read -r _ done_at _ total_words _ <"$work/$name.caught"
    [ "$total_words" = "$words" ] || fail "tally run ($name) counted $total_words words, tally count $words"
    record "$1" "$2" "$load" "$(seconds_since "$start" "$done_at")" "$figures"
  else
    record_failure "$1" "$2" "$load"
    say "tally run ($name) did not catch up: $(tail -n 1 "$work/$name.log")"
  fi
  for pid in "${tally_pids[@]}"; do stop "$pid"; done
}

# ---------------------------------------------------------------------------------------
# 3. Kafka Streams. measure_streams NAME ROUND PROFILE
measure_streams() {
  local name=$1-$2 load before java_pid deadline done_at='' figures=''
  say "round $2: Kafka Streams ($3)"
  $bench_client topics -b "$bootstrap" "$run_id-$name-output:$partitions" 2>>"$work/client.log" \
    || fail "cannot create $run_id-$name-output"
  load=$(load1)
  before=$(broker_cpu)
  start=$(now)
  streams_java run "$3" "$bootstrap" "$input_topic" "$run_id-$name-output" "$run_id-$name" \
    "$work/streams-state-$name" "$(nproc)" "$(echo "$sentinel_line" | tr ' ' ,)" "$partitions" \
    >"$work/$name.out" 2>"$work/$name.log" &
  java_pid=$!
  pids+=("$java_pid")
  deadline=$(($(date +%s) + timeout_s))
  while kill -0 "$java_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
    if grep -qs '^done_at ' "$work/$name.out"; then
      figures="$(proc_figures "$java_pid") $(broker_used "$before")"
      done_at=$(awk '/^done_at / { print $2 }' "$work/$name.out")
      break
    fi
    sleep 0.05
  done
  if [ -n "$done_at" ]; then
    record "$1" "$2" "$load" "$(seconds_since "$start" "$done_at")" "$figures"
  else
    record_failure "$1" "$2" "$load"
    say "Kafka Streams ($3) never counted every sentinel: $(tail -n 1 "$work/$name.log")"
  fi
  stop "$java_pid"
  rm -rf "$work/streams-state-$name"
}

# wanted NAME: true when contender NAME is to be measured (--only)
wanted() { [ "${only#*,"$1",}" != "$only" ]; }
for ((round = 1; round <= runs; round++)); do
  if wanted raw; then measure_raw raw "$round"; fi
  if wanted rawq; then measure_raw rawq "$round" -X queued.min.messages=1000000; fi
  if wanted tally; then measure_tally tally "$round" exactly_once; fi
  if wanted tallyalo; then measure_tally tallyalo "$round" at_least_once; fi
  if wanted tally2; then measure_tally tally2 "$round" exactly_once 2; fi
  if wanted streamstuned; then measure_streams streamstuned "$round" tuned; fi
  if wanted streamseos; then measure_streams streamseos "$round" eos; fi
  if wanted streams; then measure_streams streams "$round" defaults; fi
done

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
# The table: per contender, every run's seconds (with the load average before it), the
# records/s, words/s and MB/s of its faster run, its CPU seconds (min-max), peak RSS (the
# larger) and the broker's CPU seconds in its faster run; then the ratios the issue's
# goals ask for, from the faster run of each side and (in brackets) the range over every
# pairing of their runs.
mkdir -p "$out"
cp "$work/results" "$out/runs.txt"
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
awk -v records="$records" -v bytes="$bytes" -v words="$words" -v latency="$latency" \
  -v memory="$memory" -v mw="$memory_words" -v cw="$control_words" -v machine="$machine" \
  -v kafka="$kafka_version" -v parts="$partitions" -v dat="$out/e2e.dat" -v latdat="$out/e2e-latency.dat" '
  function name(c) {
    return c == "raw" ? "raw consumer" : c == "rawq" ? "raw, q=1M" : c == "tally" ? "tally EOS" \
      : c == "tallyalo" ? "tally ALO" : c == "tally2" ? "tally x2 EOS" : c == "streams" ? "KS defaults" \
      : c == "streamstuned" ? "KS tuned" : c == "streamseos" ? "KS EOS v2" : c
  }
  {
    c = $1
    if (!(c in n)) { order[++nc] = c; n[c] = 0 }
    n[c]++
    loads[c] = loads[c] (loads[c] == "" ? "" : ", ") $7
    if ($3 == "-") { runs[c] = runs[c] (runs[c] == "" ? "" : " / ") "failed"; next }
    runs[c] = runs[c] (runs[c] == "" ? "" : " / ") sprintf("%.2f", $3)
    ok[c]++
    if (!(c in lo) || $3 < lo[c]) { lo[c] = $3; bcpu[c] = $6 }
    if (!(c in hi) || $3 > hi[c]) hi[c] = $3
    if (!(c in cmin) || $4 < cmin[c]) cmin[c] = $4
    if (!(c in cmax) || $4 > cmax[c]) cmax[c] = $4
    if ($5 > rss[c]) rss[c] = $5
  }
  # ratio LINE A B GOAL: records/s of A over those of B (B seconds over A seconds)
  function ratio(label, a, b, goal) {
    if (!(a in lo) || !(b in lo)) { printf "%s: not measured\n", label; return }
    printf "%s: %.2f [%.2f-%.2f] (goal %s)\n", label, lo[b] / lo[a], lo[b] / hi[a], hi[b] / lo[a], goal
  }
  END {
    printf "Machine: %s; Apache Kafka %s broker on the same machine.\n", machine, kafka
    printf "Input: %d records, %d words, %.1f MB of values, %d partitions.\n\n", records, words, bytes / 1e6, parts
    printf "| contender    | seconds, each run   | load before each | records/s | words/s    | MB/s  | peak RSS MB | CPU s         | broker CPU s |\n"
    printf "|--------------|---------------------|------------------|----------:|-----------:|------:|------------:|--------------:|-------------:|\n"
    printf "" >dat
    for (i = 1; i <= nc; i++) {
      c = order[i]
      if (c in lo) {
        cpu = cmin[c] == cmax[c] ? sprintf("%.2f", cmin[c]) : sprintf("%.2f-%.2f", cmin[c], cmax[c])
        printf "| %-12s | %-19s | %-16s | %9.0f | %10.0f | %5.1f | %11.1f | %13s | %12s |\n", name(c), runs[c], loads[c], \
          records / lo[c], words / lo[c], bytes / 1e6 / lo[c], rss[c] / 1024, cpu, bcpu[c]
        printf "\"%s\" %.0f %.0f\n", name(c), records / lo[c], records / hi[c] >>dat
      } else {
        printf "| %-12s | %-19s | %-16s | not measured (it failed; see above) |\n", name(c), runs[c], loads[c]
        printf "\"%s\" 0 0\n", name(c) >>dat
      }
    }
    printf "\n"
    printf "records/s, words/s, MB/s: of the faster run; ratios: of the faster runs [the range over every pairing of runs]\n"
    ratio("Tally EOS / raw consumer, records/s", "tally", "raw", ">= 0.95")
    ratio("Tally ALO / raw consumer, records/s", "tallyalo", "raw", ">= 0.95")
    ratio("Tally EOS / raw consumer with queued.min.messages=1000000", "tally", "rawq", "-")
    ratio("Tally ALO / Kafka Streams tuned, records/s", "tallyalo", "streamstuned", ">= 20")
    ratio("Tally EOS / Kafka Streams tuned, records/s", "tally", "streamstuned", "-")
    ratio("Tally EOS / Kafka Streams exactly_once_v2, records/s", "tally", "streamseos", ">= 20")
    ratio("Tally EOS / Kafka Streams defaults, records/s", "tally", "streams", ">= 10")
    ratio("Kafka Streams tuned / defaults, records/s", "streamstuned", "streams", "-")
    ratio("Two tally instances / one (EOS), records/s", "tally2", "tally", ">= 1.0")
    ratio("Tally exactly once / at least once, records/s", "tally", "tallyalo", ">= 0.9")
    # CPU time depends much less than wall time on what else runs on the machine.
    if ("tally" in lo && "streamstuned" in lo && "streamseos" in lo && "raw" in lo)
      printf "CPU seconds (least of the runs): raw consumer %.2f, tally EOS %.2f, tally ALO %.2f, KS defaults %.2f, KS tuned %.2f, KS EOS v2 %.2f\n", \
        cmin["raw"], cmin["tally"], cmin["tallyalo"], cmin["streams"], cmin["streamstuned"], cmin["streamseos"]
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

loads=$(awk '$7 != "-" { if (lo == "" || $7 < lo) lo = $7; if ($7 > hi) hi = $7 } END { print lo "-" hi }' "$work/results")
subtitle=$(printf '%d records, %s MB, %d partitions; records/s of the faster of %d runs (bar) and of the slower (tick); load average %s on %d CPUs' \
  "$records" "$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1e6 }')" "$partitions" "$runs" "$loads" "$(nproc)")
gnuplot -e "datafile='$out/e2e.dat'; latfile='$out/e2e-latency.dat'; latwords=$latency_words; outfile='$out/e2e.png'; subtitle='$subtitle'" "$root/tests/bench/plot.gnuplot" \
  2>"$work/gnuplot.log" || fail "gnuplot could not draw the chart"
[ -s "$out/e2e.png" ] || fail "no chart was drawn"
echo
echo "chart: $out/e2e.png"

if [ "$smoke" = 1 ]; then
  [ "$failed" = 0 ] || fail "smoke: $failed run(s) produced no number"
  echo "ok: every contender produced a number"
fi
[ "$failed" = 0 ]
