#!/usr/bin/env bash
# Exactly once on the real Apache Kafka broker ([checkpoint] guarantee=exactly_once, the
# default): whatever happens to an instance, the counts equal the reference word for word
# (tests/reference/wordcount.py on the records the producer had acknowledged), live and
# again after every instance restarted from the changelog.
#
#   test-eos.sh paused-running N  N instances in one group (4 input partitions,
#                                 session.timeout.ms=6000, max.poll.interval.ms=10000,
#                                 checkpoints every 500 ms), a producer writing 1,000
#                                 records/s for 36 s; 8 s in, the first instance is stopped
#                                 (SIGSTOP) for 20 s (TALLY_TEST_PAUSE_S) and continued while
#                                 the stream runs
#   test-eos.sh paused-stopped N  the same with a 12 s stream: the paused instance is
#                                 continued after the stream ended
#   test-eos.sh kill-loop         one instance killed (-9) at random moments while it
#                                 counts, TALLY_TEST_KILLS times (default 30), each life
#                                 restarted, a producer running throughout (TALLY_TEST_SEED
#                                 replays the delays)
#   test-eos.sh at-least-once     [checkpoint] guarantee=at_least_once: a kill -9 and a
#                                 restart lose nothing (no word below the reference)
#   test-eos.sh grow              input partitions beyond the changelog's while running: a
#                                 ^regex topic with more partitions appears, a topic is
#                                 given more; the changelog is grown, counts exact
#
# Skipped (77) without TALLY_TEST_KAFKA_BOOTSTRAP; failed when TALLY_TEST_REQUIRE_KAFKA=1.
set -euo pipefail

mode=${1:-}
n_instances=${2:-2}
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_init tally-e2e-eos
need_real_kafka
bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
id="eos-$$-$(date +%s%N)"
input_topic=$id-input output_topic=$id-snapshots requests_topic=$id-requests
$client topics -b "$bootstrap" "$input_topic:4" "$output_topic:1" "$requests_topic:1" \
  2>>"$work/client.log" || fail "cannot create the topics"

# write_conf GUARANTEE
write_conf() {
  cat >"$work/tally.conf" <<EOF
[input]
topics=$input_topic
group_id=$id
[output]
topic=$output_topic
[requests]
topic=$requests_topic
[checkpoint]
changelog_topic=$id-changelog
interval_ms=500
guarantee=$1
[aggregator]
shards=2
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
max.poll.interval.ms=10000
EOF
}

# start_instance NAME: `tally run` in the background; its pid in $instance_pid
start_instance() {
  spawn_tally "$1" "$work/tally.conf"
  instance_pid=$tally_pid
}

# wait_assigned NAME SECONDS
wait_assigned() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -qs 'source: assigned' "$work/$1.log" && return 0
    sleep 0.1
  done
  fail "$1 never got its partitions"
}

# produce RATE SECONDS [TOPIC [PARTITIONS]]: RATE records/s of two words (w<i mod 200> and
# marker) to TOPIC (the input topic), round robin over PARTITIONS when given; the lines
# the broker acknowledged are appended to $work/produced
produce() {
  "$py" - "$bootstrap" "${3:-$input_topic}" "$1" "$2" "$work/produced" "${4:-0}" <<'EOF'
import sys, time
from confluent_kafka import Producer
bs, topic, rate, seconds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
partitions = int(sys.argv[6])
p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "enable.idempotence": True})
acked = []
def report(err, msg):
    if err is None:
        acked.append(msg.value())
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    due = int((time.monotonic() - start) * rate)
    while i < due:
        if partitions:
            p.produce(topic, value=b"w%d marker" % (i % 200), partition=i % partitions,
                      on_delivery=report)
        else:
            p.produce(topic, value=b"w%d marker" % (i % 200), on_delivery=report)
        i += 1
    p.poll(0)
    time.sleep(0.01)
if p.flush(60) != 0:
    sys.exit("records not delivered")
with open(out, "ab") as f:
    for v in acked:
        f.write(v + b"\n")
print("produced %d records" % len(acked))
EOF
}

# expect_exact NAME [INPUT_TOPIC]: a snapshot caught up with INPUT_TOPIC (the input topic)
# equals the reference word for word
expect_exact() {
  $reference --chunk-lines "$work/produced" >"$work/expected"
  snapshot_caught_up "$work/actual" --input "${2:-$input_topic}" --requests "$requests_topic" \
    --output "$output_topic"
  if ! cmp -s "$work/expected" "$work/actual"; then
    at_least_reference "$work/expected" "$work/actual" >&2 || true
    fail "$1: the counts differ from the reference"
  fi
  ok "$1: $(wc -l <"$work/produced") records, $(wc -l <"$work/expected") words, every count exact"
}

# stop_all: SIGTERM to every instance still running; each must exit 0
stop_all() {
  local p status
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    status=0
    wait "$p" 2>/dev/null || status=$?
    [ "$status" = 0 ] || [ "$status" = 127 ] || fail "an instance exited with status $status after SIGTERM"
  done
  pids=()
}

# restart_exact NAME [INPUT_TOPIC]: every instance stops, one starts again from the
# changelog alone
restart_exact() {
  stop_all
  start_instance restarted
  wait_assigned restarted 60
  expect_exact "$@"
}

test_paused() { # SECONDS_OF_STREAM
  local stream=$1 i first pause=${TALLY_TEST_PAUSE_S:-20}
  # TALLY_TEST_GUARANTEE=at_least_once shows what exactly_once prevents.
  write_conf "${TALLY_TEST_GUARANTEE:-exactly_once}"
  for ((i = 1; i <= n_instances; i++)); do
    start_instance "member$i"
    [ "$i" = 1 ] && first=$instance_pid
    wait_assigned "member$i" 60
  done
  produce 1000 "$stream" >"$work/producer.out" 2>"$work/producer.log" &
  local producer=$!
  pids+=("$producer")
  sleep 8
  kill -STOP "$first"
  echo "member1 stopped (SIGSTOP) 8 s into the stream"
  sleep "$pause"
  kill -CONT "$first"
  echo "member1 continued after $pause s"
  wait "$producer" || fail "the producer failed"
  cat "$work/producer.out"
  expect_exact "paused member ($n_instances instances, ${stream} s stream), live"
  grep -q 'dropped without a checkpoint: the assignment was lost' "$work/member1.log" \
    || fail "the paused member did not drop its lost assignment"
  echo "the paused member: $(grep -c 'fenced, checkpoint aborted' "$work/member1.log" || true) checkpoint(s) fenced and aborted, lost assignment dropped"
  restart_exact "paused member ($n_instances instances, ${stream} s stream), after a restart from the changelog"
  stop_all
}

test_kill_loop() {
  local lives=${TALLY_TEST_KILLS:-30} seed=${TALLY_TEST_SEED:-$((($(date +%s) + $$) % 32768))}
  local life delay_ms delays=() killed_counting=0
  write_conf exactly_once
  RANDOM=$seed
  echo "seed $seed (TALLY_TEST_SEED=$seed replays these kill delays)"
  produce 300 $((lives * 2 + 10)) >"$work/producer.out" 2>"$work/producer.log" &
  local producer=$!
  pids+=("$producer")
  for ((life = 1; life <= lives; life++)); do
    start_instance "life$life"
    wait_assigned "life$life" 60
    # 0.1 to 2 s after the assignment: restoring, catching up, counting or checkpointing.
    delay_ms=$((100 + RANDOM % 1901))
    delays+=("$delay_ms")
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    kill -0 "$instance_pid" 2>/dev/null || fail "life $life exited before it was killed"
    grep -q 'starts at checkpointed offset\|restored store' "$work/life$life.log" && killed_counting=$((killed_counting + 1))
    kill -KILL "$instance_pid"
    wait "$instance_pid" 2>/dev/null || true
    pids=("$producer")
  done
  echo "kills after ${delays[*]} ms"
  wait "$producer" || fail "the producer failed"
  cat "$work/producer.out"
  start_instance last
  wait_assigned last 60
  expect_exact "$lives kill -9 ($killed_counting after the state was restored), then a last life"
  restart_exact "$lives kill -9, after a clean restart from the changelog"
  stop_all
}

test_at_least_once() {
  write_conf at_least_once
  start_instance first
  wait_assigned first 60
  produce 1000 6 >"$work/producer.out" 2>"$work/producer.log" &
  local producer=$!
  pids+=("$producer")
  sleep 3
  kill -KILL "$instance_pid"
  pids=("$producer")
  start_instance second
  wait_assigned second 60
  wait "$producer" || fail "the producer failed"
  $reference --chunk-lines "$work/produced" >"$work/expected"
  snapshot_caught_up "$work/actual" --input "$input_topic" --requests "$requests_topic" \
    --output "$output_topic"
  at_least_reference "$work/expected" "$work/actual" || fail "at_least_once: a word is below the reference"
  ok "at_least_once: a kill -9 and a restart lose nothing"
  stop_all
}

# Input partitions beyond the changelog's, while Tally runs: a topic matched by the
# ^regex subscription (2 partitions, so Tally creates a changelog of 2), then a second one
# with 6 partitions appears, then the first is given 8. Tally grows the changelog each time
# (CreatePartitions) instead of failing checkpoints; counts are exact.
test_grow() {
  local rx=$id-rx
  write_conf exactly_once
  sed -i "s|^topics=.*|topics=^$rx-.*|; s|^\[kafka\]|[kafka]\ntopic.metadata.refresh.interval.ms=1000|" "$work/tally.conf"
  $client topics -b "$bootstrap" "$rx-a:2" 2>>"$work/client.log" || fail "cannot create $rx-a"
  start_instance grow
  wait_assigned grow 60
  produce 500 2 "$rx-a" 2 >>"$work/producer.out" 2>>"$work/producer.log" || fail "the producer failed"
  $client topics -b "$bootstrap" "$rx-c:6" 2>>"$work/client.log" || fail "cannot create $rx-c"
  produce 500 3 "$rx-c" 6 >>"$work/producer.out" 2>>"$work/producer.log" || fail "the producer failed"
  wait_for_line "$work/grow.log" 'grown from 2 to 6 partitions' 60 >/dev/null \
    || fail "the changelog was not grown for $rx-c"
  snapshot_caught_up "$work/rx-c" --input "$rx-c" --requests "$requests_topic" --output "$output_topic"
  "$py" - "$bootstrap" "$rx-a" <<'PYEOF' || fail "cannot add partitions to $rx-a"
import sys
from confluent_kafka.admin import AdminClient, NewPartitions
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_partitions([NewPartitions(sys.argv[2], 8)]).values():
    f.result(30)
PYEOF
  produce 500 3 "$rx-a" 8 >>"$work/producer.out" 2>>"$work/producer.log" || fail "the producer failed"
  wait_for_line "$work/grow.log" 'grown from 6 to 8 partitions' 60 >/dev/null \
    || fail "the changelog was not grown for $rx-a's new partitions"
  expect_exact "a topic with more partitions than the changelog appeared, another grew" "$rx-a"
  [ "$(grep -c 'Unknown partition\|replacing the producer\|aborted' "$work/grow.log" || true)" = 0 ] \
    || fail "checkpoints failed on the new partitions"
  restart_exact "partitions beyond the changelog, after a restart from the changelog" "$rx-a"
  stop_all
}

case "$mode" in
  paused-running) test_paused 36 ;;
  paused-stopped) test_paused 12 ;;
  kill-loop) test_kill_loop ;;
  at-least-once) test_at_least_once ;;
  grow) test_grow ;;
  *) echo "usage: $0 paused-running|paused-stopped [N] | kill-loop | at-least-once" >&2; exit 2 ;;
esac
