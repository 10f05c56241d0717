#!/usr/bin/env bash
# Counts over time on the real Apache Kafka broker, exactly once ([checkpoint]
# guarantee=exactly_once, [windows] publish=true): a producer writes records with explicit
# timestamps (CreateTime) to 2 partitions, event time running 10 s of windows per second of
# wall time, a few records late; one instance is killed (-9) at random moments
# (TALLY_TEST_KILLS, default 4; TALLY_TEST_SEED replays the delays) and restarted each
# time; at the end a record far ahead closes every window. `test-windows.sh two` runs a
# second instance in the same group throughout, so each kill and restart also moves
# partitions between the two (eager rebalances). Then, reading the output topic
# read_committed:
#   - every window with records has its final counts published, and no input partition is
#     in two published snapshots of one window (once per window and instance, across
#     kill -9: the snapshots are written in the checkpoint transaction);
#   - the counts of each window equal a reference computed here from the produced records
#     with the same lateness rule (per partition: late when window end + grace <= the
#     largest timestamp before it);
#   - the broker deleted none of the input: the records' timestamps are from 2023, so the
#     input topic has retention.ms=-1 (with the default 7 days the broker's retention check
#     deleted partitions while they were being read: "offset reset ... Offset out of
#     range", counts below the reference).
#
# Skipped (77) without TALLY_TEST_KAFKA_BOOTSTRAP; failed when TALLY_TEST_REQUIRE_KAFKA=1.
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
mode=${1:-kill}
e2e_init tally-e2e-windows
need_real_kafka
bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
kills=${TALLY_TEST_KILLS:-4}
seed=${TALLY_TEST_SEED:-$RANDOM}
RANDOM=$seed
id="win-$$-$(date +%s%N)"
input_topic=$id-input output_topic=$id-snapshots requests_topic=$id-requests
# The records' timestamps are from 2023: with the broker's default retention (7 days) its
# retention check (every 5 minutes) deletes them, also before they are read, so the input
# topic keeps records of any age (retention.ms=-1); see the input check at the end.
$client topics -b "$bootstrap" "$input_topic:2:keep" "$output_topic:1" "$requests_topic:1" \
  2>>"$work/client.log" || fail "cannot create the topics"

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
interval_ms=300
guarantee=exactly_once
[windows]
enabled=true
size_ms=10000
bucket_ms=2000
grace_ms=2000
idle_ms=600000
retain=1000
publish=true
[aggregator]
shards=2
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
max.poll.interval.ms=10000
EOF

# The records: 2 partitions, 40 windows of 10 s event time, 25 records per window per
# partition, one record in 12 late (up to 20 s back); the last record of each partition far
# ahead closes every window. One JSON line per record: partition, timestamp, value.
$py - "$seed" >"$work/records.jsonl" <<'PY'
import json, random, sys
rnd = random.Random(int(sys.argv[1]))
base = 1700000000000
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
for w in range(40):
    for i in range(25):
        for p in (0, 1):
            ts = base + w * 10000 + i * 400 + p * 7
            if rnd.random() < 1 / 12:
                ts -= rnd.randint(0, 20000)
            value = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 4)))
            print(json.dumps([p, ts, value]))
for p in (0, 1):
    print(json.dumps([p, base + 10**7, "end"]))
PY

# The producer: 500 records/s, so event time runs ahead about 10 windows a second... of
# 10 s each: 40 windows in about 4 s of records, then the closing records.
cat >"$work/produce.py" <<'PY'
import json, sys, time
from confluent_kafka import Producer
bootstrap, topic, path = sys.argv[1:4]
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
failed = []
def report(err, msg):
    if err is not None:
        failed.append(err)
lines = open(path).read().splitlines()
for n, line in enumerate(lines):
    part, ts, value = json.loads(line)
    p.produce(topic, value=value.encode(), partition=part, timestamp=ts, on_delivery=report)
    p.poll(0)
    if n % 20 == 19:
        time.sleep(0.1)
if p.flush(60) or failed:
    sys.exit("produce failed: %r" % failed[:3])
print("produced", len(lines), file=sys.stderr)
PY

if [ "$mode" = two ]; then
  kills=${TALLY_TEST_KILLS:-3}
  spawn_tally other "$work/tally.conf"
  other_pid=$tally_pid
  wait_for_line "$work/other.log" 'source: assigned' 60 >/dev/null || fail "other: no partitions"
fi
lives=0
spawn_tally life$lives "$work/tally.conf"
wait_for_line "$work/life$lives.log" 'source: assigned' 60 >/dev/null || fail "no partitions"
$py "$work/produce.py" "$bootstrap" "$input_topic" "$work/records.jsonl" 2>>"$work/produce.log" &
producer=$!
pids+=("$producer")
for ((k = 0; k < kills; k++)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", 1 + (r % 30) / 10 }')"
  kill -9 "$tally_pid" 2>/dev/null || true
  wait "$tally_pid" 2>/dev/null || true
  lives=$((lives + 1))
  spawn_tally life$lives "$work/tally.conf"
  wait_for_line "$work/life$lives.log" 'source: assigned' 60 >/dev/null || fail "life $lives: no partitions"
done
wait "$producer" || fail "the producer failed"

# Every window closed and published: wait until 40 windows' snapshots (with both
# partitions) are committed, at most 60 s.
read_finals() {
  $py - "$bootstrap" "$output_topic" >"$work/finals.json" 2>>"$work/client.log" <<'PY'
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic = sys.argv[1:3]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-%d" % time.time_ns(),
              "isolation.level": "read_committed", "enable.auto.commit": False,
              "enable.partition.eof": True})
c.assign([TopicPartition(topic, 0, 0)])
parts = {}
while True:
    m = c.poll(5)
    if m is None:
        break
    if m.error():
        if m.error().code() == -191:  # partition EOF
            break
        continue
    part = json.loads(m.value())
    if not part["request_id"].startswith("window-"):
        continue
    parts.setdefault(part["snapshot_id"], []).append(part)
c.close()
out = []
for sid, ps in parts.items():
    if len(ps) != ps[0]["parts"]:
        continue
    counts = {}
    for p in ps:
        for w, n in p["counts"]:
            counts[w] = counts.get(w, 0) + n
    out.append({"window": ps[0]["window_start_ms"], "instance": ps[0]["instance_id"],
                "partitions": sorted(q["partition"] for q in ps[0]["partitions"]),
                "counts": counts})
json.dump(out, sys.stdout)
PY
}
# Wait (at most 90 s) until every (window, partition) with on-time records is covered.
cat >"$work/covered.py" <<'PY'
import json, sys
size, grace = 10000, 2000
stream, want = {0: None, 1: None}, set()
for line in open(sys.argv[1]):
    p, ts, value = json.loads(line)
    w = ts - ts % size
    if stream[p] is not None and w + size + grace <= stream[p]:
        continue
    stream[p] = ts if stream[p] is None else max(stream[p], ts)
    if value != "end":
        want.add((w, p))
have = {(s["window"], p) for s in json.load(open(sys.argv[2])) for p in s["partitions"]}
sys.exit(0 if want <= have else 1)
PY
for ((i = 0; i < 90; i++)); do
  read_finals
  $py "$work/covered.py" "$work/records.jsonl" "$work/finals.json" && break
  sleep 1
done

# Every record the reference counts stayed on the broker: an input partition whose log
# start moved (time retention, "offset reset ... Offset out of range" in the logs) loses
# records no consumer can count.
$py - "$bootstrap" "$input_topic" 2>>"$work/client.log" <<'PY' || fail "the broker deleted input records: the reference cannot be met"
import sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic = sys.argv[1:3]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
lows = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in (0, 1)]
c.close()
print("input log start offsets:", lows, file=sys.stderr)
sys.exit(0 if lows == [0, 0] else 1)
PY
$py - "$work/records.jsonl" "$work/finals.json" <<'PY' || fail "published final counts differ from the reference (seed $seed)"
import json, sys
size, grace = 10000, 2000
records = [json.loads(l) for l in open(sys.argv[1])]
finals = json.load(open(sys.argv[2]))
stream = {0: None, 1: None}
ref = {}
for p, ts, value in records:
    w = ts - ts % size
    if stream[p] is not None and w + size + grace <= stream[p]:
        continue  # late
    stream[p] = ts if stream[p] is None else max(stream[p], ts)
    if value == "end":
        continue
    ref.setdefault(w, {})
    for word in value.split():
        ref[w][word] = ref[w].get(word, 0) + 1
got, covered, bad = {}, {}, 0
for s in finals:
    for part in s["partitions"]:
        key = (s["window"], part)
        if key in covered:
            print("window %d partition %d published twice" % key, file=sys.stderr)
            bad += 1
        covered[key] = True
    g = got.setdefault(s["window"], {})
    for word, n in s["counts"].items():
        g[word] = g.get(word, 0) + n
for w in sorted(ref):
    if got.get(w) != ref[w]:
        print("window %d: got %r, want %r" % (w, got.get(w), ref[w]), file=sys.stderr)
        bad += 1
extra = set(got) - set(ref)
if extra:
    print("windows published without records: %r" % sorted(extra), file=sys.stderr)
    bad += 1
print("%d windows, %d snapshots, %d mismatches" % (len(ref), len(finals), bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
ok "windows ($mode): $lives kill -9, every window's final counts published once and equal to the reference (seed $seed)"
stop_tally TERM
if [ "$mode" = two ]; then
  tally_pid=$other_pid
  stop_tally TERM
fi
