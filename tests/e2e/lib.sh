# shellcheck shell=bash
# The variables below are the sourcing script's; start_broker's arguments are optional.
# shellcheck disable=SC2034,SC2120
# The harness of the end-to-end scripts (tests/e2e/test-run.sh, test-plugin-kcat.sh,
# tests/bench/e2e.sh), sourced by them, never run:
#
#   e2e_init NAME   the paths below, a work directory ${TMPDIR:-/tmp}/NAME.XXXXXX and an EXIT
#                   trap that kills every pid in $pids, stops the kafka-local of the script's
#                   own when $own_broker=1, and removes $work (kept with KEEP_WORK=1)
#   fail, ok        a failure prints the last $fail_tail_lines (30) lines of $work/*.log
#   expect_file, wait_for_line, wait_exit, nopreload
#   need_real_kafka, start_broker, spawn_tally, start_tally, stop_tally
#   kcat_produce, snapshot_caught_up, last_snapshot, at_least_reference, streams_lines,
#   streams_counts, sotu_lines
#
# Paths: $root (the source tree), $tally (TALLY_EXE), $py (Debian's python3, which has
# python3-confluent-kafka and python3-kafka), $client (tests/e2e/tally_client.py) and
# $reference (tests/reference/wordcount.py, Python re + collections.Counter).

root=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
tally=${TALLY_EXE:-$root/build/tally}
py=/usr/bin/python3
client="$py $root/tests/e2e/tally_client.py"
reference="$py $root/tests/reference/wordcount.py"
fail_tail_lines=30

# e2e_init NAME: creates $work and sets the EXIT trap
e2e_init() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  pids=()
  own_broker=0 # 1 while a kafka-local of the script's own runs (KAFKA_LOCAL_* exported)
  trap e2e_cleanup EXIT
}

e2e_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$own_broker" = 1 ]; then "$root/deploy/kafka-local" stop >>"$work/kafka-local.log" 2>&1 || true; fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}

fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "${work:-/nonexistent}"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $f (last $fail_tail_lines lines)" >&2
    tail -n "$fail_tail_lines" "$f" >&2
  done
  exit 1
}
ok() { echo "ok: $*"; }

# expect_file NAME EXPECTED_FILE ACTUAL_FILE
expect_file() {
  if ! cmp -s "$2" "$3"; then
    echo "--- diff expected actual (first 20 lines)" >&2
    diff "$2" "$3" | head -n 20 >&2 || true
    fail "$1"
  fi
  ok "$1"
}

# wait_for_line FILE REGEX SECONDS: prints the first matching line
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# wait_exit PID TENTHS: true once process PID is gone, false if it still runs after TENTHS
# tenths of a second
wait_exit() {
  local i
  for ((i = 0; i < $2; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

# nopreload COMMAND [ARGS...]: COMMAND without the LD_PRELOAD that tests/meson.build gives
# the plugin's hosts in an address-sanitizer build. A preloaded ASan runtime hangs any
# program linking libp11-kit (curl, through GnuTLS): p11-kit's constructor calls
# newlocale(), whose first malloc() initialises ASan, whose dlerror() takes and releases
# glibc's locale lock that newlocale() holds; the lock is left corrupt and the program's
# own setlocale() waits on it for ever (glibc 2.36, GCC 12's libasan).
nopreload() {
  env -u LD_PRELOAD "$@"
}

# need_real_kafka: exits 77 (skipped) unless the real-broker suites were asked for
# (TALLY_TEST_KAFKA_BOOTSTRAP set); fails when TALLY_TEST_REQUIRE_KAFKA=1 and it is not
need_real_kafka() {
  if [ -z "${TALLY_TEST_KAFKA_BOOTSTRAP:-}" ]; then
    if [ "${TALLY_TEST_REQUIRE_KAFKA:-0}" = 1 ]; then
      fail "TALLY_TEST_REQUIRE_KAFKA=1 but TALLY_TEST_KAFKA_BOOTSTRAP is not set"
    fi
    echo "skip: no real broker (TALLY_TEST_KAFKA_BOOTSTRAP is not set; scripts/check starts one)"
    exit 77
  fi
}

# start_broker [ARGS...]: a `tally broker ARGS` (librdkafka's mock cluster) that outlives the
# Tally processes; sets $bootstrap
start_broker() {
  "$tally" broker "$@" >"$work/broker.out" 2>"$work/broker.log" &
  pids+=("$!")
  local line
  line=$(wait_for_line "$work/broker.out" '^bootstrap.servers=' 30) || fail "tally broker printed no address"
  bootstrap=${line#bootstrap.servers=}
}

# spawn_tally NAME CONF [ARGS...]: starts `tally run --config CONF ARGS` in the background,
# standard output to $work/NAME.out, the log to $work/NAME.log; sets $tally_pid
spawn_tally() {
  local name=$1 conf=$2
  shift 2
  "$tally" run --config "$conf" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  tally_pid=$!
  pids+=("$tally_pid")
}

# start_tally NAME CONF: spawn_tally, then waits until it has its partitions (60 s); sets
# $bootstrap when CONF has none (the embedded broker's address)
start_tally() {
  spawn_tally "$1" "$2"
  if ! grep -q '^bootstrap.servers' "$2"; then
    local line
    line=$(wait_for_line "$work/$1.out" '^bootstrap.servers=' 30) || fail "$1: no bootstrap address printed"
    bootstrap=${line#bootstrap.servers=}
  fi
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q 'source: assigned' "$work/$1.log" && return 0
    kill -0 "$tally_pid" 2>/dev/null || fail "$1: tally exited while starting"
    sleep 0.1
  done
  fail "$1: never got its partitions"
}

# stop_tally SIGNAL: signals $tally_pid and waits; fails unless it exits 0 within 20 s
stop_tally() {
  kill "-$1" "$tally_pid"
  wait_exit "$tally_pid" 200 || fail "tally did not exit within 20 s of SIG$1"
  local status=0
  wait "$tally_pid" || status=$?
  [ "$status" = 0 ] || fail "tally exited with status $status after SIG$1"
}

# kcat_produce TOPIC [KCAT_OPTIONS...] <LINES: one record per line, to the broker at
# $bootstrap (kcat's errors to $work/kcat.log)
kcat_produce() {
  local topic=$1
  shift
  kcat -P -X sticky.partitioning.linger.ms=0 "$@" -b "$bootstrap" -t "$topic" 2>>"$work/kcat.log"
}

# snapshot_caught_up OUT [CLIENT_OPTIONS...]: a snapshot (tally_client.py) that reflects
# every record of the input topic (tally-input unless --input is given), as `word count`
# lines in OUT
snapshot_caught_up() {
  local out=$1
  shift
  $client snapshot -b "$bootstrap" --input tally-input --caught-up --timeout 120 "$@" >"$out" \
    2>>"$work/client.log" || fail "no caught-up snapshot"
}

# last_snapshot OUT TOPIC [ASSEMBLE_OPTIONS...]: the last complete snapshot on TOPIC (read
# to its end with kcat), as `word count` lines in OUT (tally_client.py assemble; its
# --not-requested and --exactly-one)
last_snapshot() {
  local out=$1 topic=$2
  shift 2
  kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -q -D '\n' >"$work/$topic.parts" 2>>"$work/kcat-read.log" \
    && $client assemble "$@" "$work/$topic.parts" >"$out" 2>>"$work/client.log"
}

# at_least_reference EXPECTED ACTUAL: succeeds when every word of EXPECTED is in ACTUAL at
# least as often and ACTUAL has no other word; prints how many words are over-counted and
# by how much in all
at_least_reference() {
  "$py" - "$1" "$2" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p, "rb"):
        w, n = line.rstrip(b"\n").rsplit(b" ", 1)
        d[w] = int(n)
    return d
exp, act = load(sys.argv[1]), load(sys.argv[2])
missing = [w for w in exp if act.get(w, 0) < exp[w]]
extra = [w for w in act if w not in exp]
over = [w for w in exp if act.get(w, 0) > exp[w]]
print("words=%d counted=%d expected=%d below=%d unknown=%d over_counted_words=%d over_by=%d"
      % (len(exp), sum(act.values()), sum(exp.values()), len(missing), len(extra), len(over),
         sum(act[w] - exp[w] for w in over)))
sys.exit(1 if missing or extra else 0)
EOF
}

# The Kafka Streams word-count example's lines (its WordCountDemo test input) and the
# counts Tally's default tokenizer gives them: kafka 3, streams 2 and 1 for each other word
streams_lines() {
  printf 'Apache   Kafka Streams   Example\nUsing  \t\t Kafka   Streams\tTest Utils\nReading and Writing Kafka Topic\n'
}
streams_counts() {
  cat <<'EOF'
kafka 3
streams 2
and 1
apache 1
example 1
reading 1
test 1
topic 1
using 1
utils 1
writing 1
EOF
}

# sotu_lines: every State of the Union address (scripts/fetch-corpus sotu), each followed
# by a line feed (the files end without one)
sotu_lines() {
  local dir f
  dir=$("$root/scripts/fetch-corpus" sotu)
  for f in "$dir"/*.txt; do
    cat "$f"
    echo
  done
}
