#!/usr/bin/env bash
# Restore after kill -9 with many distinct words, on a real Kafka broker (issue 14). A
# measurement, not a test.
#
#   tests/bench/restore.sh --bootstrap HOST:PORT [--words N]
#
# One `tally run` (exactly once, the defaults; session.timeout.ms=6000 so the group gives the
# killed member's partitions back soon) counts N distinct synthetic words (default
# 1,000,000: w0000000 ..., 10 per record, on a fresh 4-partition topic). Once `tally
# snapshot --top 1 --json` reports N distinct words and the checkpoints ([log] level=debug)
# have committed N changed words, it is killed with SIGKILL and started again. Printed, from
# the restart: when the partitions were assigned, how long the restore of the stores took
# (the source's log line), and when a snapshot first covered every partition with all N
# words (polled every 200 ms) — the time a user waits. Also RSS after the restore, the
# load average (2 shared cores), and the peer: bench-raw-consumer (librdkafka's consumer
# loop, nothing done per record) reading the same changelog with read_committed, right
# after (its time includes joining a consumer group).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../e2e/lib.sh"

words=1000000 bootstrap=
while [ $# -gt 0 ]; do
  case $1 in
    --words) words=$2; shift 2 ;;
    --bootstrap) bootstrap=$2; shift 2 ;;
    *) echo "usage: $0 --bootstrap HOST:PORT [--words N]" >&2; exit 2 ;;
  esac
done
[ -n "$bootstrap" ] || { echo "$0: --bootstrap HOST:PORT is required (a real broker)" >&2; exit 2; }

e2e_init tally-bench-restore
topic=bench-restore-$$-$RANDOM
cat >"$work/tally.conf" <<CONF
[input]
topics=$topic
group_id=$topic
[output]
topic=$topic-snapshots
[requests]
topic=$topic-requests
[checkpoint]
changelog_topic=$topic-changelog
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
[log]
level=debug
CONF
$client topics -b "$bootstrap" "$topic:4" 2>>"$work/client.log" || fail "cannot create $topic"

distinct() {
  "$tally" snapshot -c "$work/tally.conf" --top 1 --json --timeout 30000 2>>"$work/client.log" \
    | sed -n 's/.*"distinct_words" *: *\([0-9]*\).*/\1/p' | head -n 1
}

start_tally first "$work/tally.conf"
t0=$(date +%s%N)
awk -v n="$words" 'BEGIN { for (i = 0; i < n; i += 10) { line = ""; for (j = i; j < i + 10 && j < n; j++) line = line sprintf("w%07d ", j); print line } }' \
  | kcat_produce "$topic"
for ((i = 0; i < 600; i++)); do
  [ "$(distinct)" = "$words" ] && break
  sleep 1
done
[ "$(distinct)" = "$words" ] || fail "only $(distinct) of $words words counted"
t1=$(date +%s%N)
checkpointed() { sed -n 's/.*checkpoint of .* store(s), \([0-9]*\) changed word(s) committed.*/\1/p' "$work/first.out" "$work/first.log" | awk '{ s += $1 } END { print s + 0 }'; }
for ((i = 0; i < 600; i++)); do
  [ "$(checkpointed)" -ge "$words" ] && break
  sleep 0.5
done
[ "$(checkpointed)" -ge "$words" ] || fail "only $(checkpointed) changed words checkpointed"
rss_before=$(awk '/VmRSS/ { print $2 }' "/proc/$tally_pid/status")
printf 'counted %d distinct words in %.1f s (produce to snapshot); RSS %d MB\n' "$words" \
  "$(echo "($t1 - $t0) / 1000000000" | bc -l)" $((rss_before / 1024))

kill -9 "$tally_pid"
load=$(cut -d' ' -f1-3 /proc/loadavg)
t2=$(date +%s%N)
spawn_tally second "$work/tally.conf"
for ((i = 0; i < 1200; i++)); do
  [ "$(distinct)" = "$words" ] && break
  sleep 0.2
done
t3=$(date +%s%N)
[ "$(distinct)" = "$words" ] || fail "after the restart, no snapshot with $words words"
assigned=$(grep -m1 'source: assigned' "$work/second.log" | sed -n 's/.*: \([0-9:.]*\): source.*/\1/p')
restore_line=$(grep -h 'store(s) restored in' "$work/second.log" "$work/second.out" | tail -n 1)
rss_after=$(awk '/VmRSS/ { print $2 }' "/proc/$tally_pid/status")
echo "restart at $(date -d "@$((t2 / 1000000000))" +%T); partitions assigned at $assigned; ${restore_line#*source: }"
printf 'restore after kill -9, %d distinct words: %.2f s from the restart to a snapshot covering every partition with all of them; RSS %d MB (load average %s at the kill)\n' \
  "$words" "$(echo "($t3 - $t2) / 1000000000" | bc -l)" $((rss_after / 1024)) "$load"
raw=${TALLY_BENCH_RAW_CONSUMER:-$(dirname "$tally")/tests/bench/bench-raw-consumer}
if [ -x "$raw" ]; then
  read -r _ records _ _ _ seconds < <("$raw" --bootstrap-server "$bootstrap" --topic "$topic-changelog" -X isolation.level=read_committed 2>>"$work/client.log")
  echo "peer: bench-raw-consumer read the changelog's $records records in $seconds s with read_committed (load average $(cut -d' ' -f1-3 /proc/loadavg))"
fi
