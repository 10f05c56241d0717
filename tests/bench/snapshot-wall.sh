#!/usr/bin/env bash
# The wall time a user sees for `tally snapshot`: the whole command, process start to exit,
# as a person or a script runs it, against a warm `tally run` (issue 14). A measurement,
# not a test.
#
#   tests/bench/snapshot-wall.sh [--words N] [--runs R] [--bootstrap HOST:PORT]
#                                [--instances K] [--hot H] [--touch] [-- ARGS...]
#
# One `tally run` (the embedded broker unless --bootstrap names a cluster) counts N
# distinct synthetic words (default 100,000: w0000000, w0000001, ..., 10 per record, with
# kcat onto a fresh input topic); once a full `tally snapshot` shows all N, the command
# `tally snapshot ARGS` (default `--top 10`) runs R times (default 30), one after the other,
# each timed from fork to exit (date +%s%N around it). Prints min, p50, p90 and max in ms
# and the load average before and after (2 shared cores: read the figures with it), then
# memory: the client's peak RSS (/usr/bin/time's maximum resident set size) against the
# bytes it printed, and the peak RSS of `tally run` while it served the runs (its VmHWM,
# reset through /proc/PID/clear_refs before them) against its RSS before. With --instances K
# (a real broker only), K `tally run` in one consumer group share the input partitions, so
# every answer is merged from K replies (the memory figures are the first instance's).
# With --hot H, H more words (h0000000 ...) come on top, the i-th counted 100000 / (i + 1)
# times (a Zipf law: skewed text, where a top N stands far above most words' counts),
# so that a top N across instances can be measured on input other than counts of 1.
# With --touch, one more record of the words h0000000 to h0000009 goes to each of the 4
# partitions 1 s before each run (outside the time): every store has changed since the
# last answer, so no shard can reuse the figures of its last full pass (the first
# answer after new records); without it, the runs ask a service whose counts stand still.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../e2e/lib.sh"

words=100000 runs=30 given_bootstrap= instances=1 hot=0 touch=0
while [ $# -gt 0 ]; do
  case $1 in
    --words) words=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --bootstrap) given_bootstrap=$2; shift 2 ;;
    --instances) instances=$2; shift 2 ;;
    --hot) hot=$2; shift 2 ;;
    --touch) touch=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--words N] [--runs R] [--bootstrap HOST:PORT] [--instances K] [--hot H] [--touch] [-- ARGS...]" >&2; exit 2 ;;
  esac
done
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--top 10)
if [ "$instances" -gt 1 ] && [ -z "$given_bootstrap" ]; then
  echo "$0: --instances needs --bootstrap (each embedded broker is its own cluster)" >&2
  exit 2
fi

e2e_init tally-bench-snapshot-wall
topic=bench-wall-$$-$RANDOM
{
  echo "[input]"
  echo "topics=$topic"
  echo "group_id=$topic"
  echo "[output]"
  echo "topic=$topic-snapshots"
  echo "[requests]"
  echo "topic=$topic-requests"
  echo "[checkpoint]"
  echo "changelog_topic=$topic-changelog"
  echo "[log]"
  echo "level=debug" # the publisher's lines say where a snapshot's time went
  if [ -n "$given_bootstrap" ]; then
    echo "[kafka]"
    echo "bootstrap.servers=$given_bootstrap"
  fi
} >"$work/tally.conf"
if [ -n "$given_bootstrap" ]; then
  bootstrap=$given_bootstrap
  # Tally never creates input topics: 4 partitions, as the embedded broker makes them.
  $client topics -b "$bootstrap" "$topic:4" 2>>"$work/client.log" || fail "cannot create $topic"
fi
start_tally tally "$work/tally.conf"
first_pid=$tally_pid
for ((k = 2; k <= instances; k++)); do
  start_tally "tally$k" "$work/tally.conf"
done
tally_pid=$first_pid

{
  awk -v n="$words" 'BEGIN { for (i = 0; i < n; i += 10) { line = ""; for (j = i; j < i + 10 && j < n; j++) line = line sprintf("w%07d ", j); print line } }'
  awk -v h="$hot" 'BEGIN { k = 0; line = ""; for (i = 0; i < h; i++) for (c = int(100000 / (i + 1)); c > 0; c--) { line = line sprintf("h%07d ", i); if (++k % 10 == 0) { print line; line = "" } } if (line != "") print line }'
} | kcat_produce "$topic"
words=$((words + hot))
for ((i = 0; i < 120; i++)); do
  # A snapshot still being counted may time out: ask again.
  got=$({ "$tally" snapshot -c "$work/tally.conf" -b "$bootstrap" --timeout 120000 2>>"$work/client.log" || true; } | wc -l)
  [ "$got" = "$words" ] && break
  sleep 0.5
done
[ "$got" = "$words" ] || fail "only $got of $words words counted"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/ms"
: >"$work/client-kb"
service_before=$(awk '/VmRSS/ { print $2 }' "/proc/$tally_pid/status")
echo 5 >"/proc/$tally_pid/clear_refs" 2>/dev/null || true # resets VmHWM (Linux 4.0)
for ((i = 0; i < runs; i++)); do
  if [ "$touch" = 1 ]; then
    for p in 0 1 2 3; do
      echo "h0000000 h0000001 h0000002 h0000003 h0000004 h0000005 h0000006 h0000007 h0000008 h0000009" \
        | kcat_produce "$topic" -p "$p"
    done
    sleep 1
  fi
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$work/time.out" \
    "$tally" snapshot -c "$work/tally.conf" -b "$bootstrap" "${args[@]}" >"$work/last.out" 2>>"$work/client.log" \
    || fail "tally snapshot ${args[*]} failed"
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) >>"$work/ms"
  tail -n 1 "$work/time.out" >>"$work/client-kb"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "${args[0]}" = --top ] && [ ${#args[@]} = 2 ]; then
  # The answer timed is exact: the first N lines of a full snapshot, taken after the runs.
  "$tally" snapshot -c "$work/tally.conf" -b "$bootstrap" --timeout 120000 2>>"$work/client.log" \
    | head -n "${args[1]}" >"$work/full-head.out" || true
  cmp -s "$work/last.out" "$work/full-head.out" || fail "--top ${args[1]} differs from the full snapshot's first ${args[1]} lines"
  echo "checked: the last --top ${args[1]} answer equals the full snapshot's first ${args[1]} lines"
fi
service_peak=$(awk '/VmHWM/ { print $2 }' "/proc/$tally_pid/status")
printed=$(wc -c <"$work/last.out")
client_peak=$(sort -n "$work/client-kb" | tail -n 1)
if [ "$printed" -ge 1048576 ]; then
  ratio=$(printf '%.2fx' "$(echo "$client_peak * 1024 / $printed" | bc -l)")
else
  ratio="no ratio: under 1 MB printed" # the process's own size would be the whole figure
fi
printf 'memory: tally snapshot peak RSS %d MB for %d MB printed (%s); tally run RSS %d MB before, peak %d MB while serving\n' \
  $((client_peak / 1024)) $((printed / 1048576)) "$ratio" \
  $((service_before / 1024)) $((service_peak / 1024))
sort -n "$work/ms" | awk -v runs="$runs" -v words="$words" -v args="${args[*]}" \
  -v instances="$instances" -v touch="$touch" -v broker="${given_bootstrap:-embedded}" -v lb="$load_before" -v la="$load_after" '
  { v[NR] = $1 / 1000 }
  END {
    printf "tally snapshot %s, %d distinct words, %d instance(s), broker %s, %d runs%s: min %.0f ms, p50 %.0f ms, p90 %.0f ms, max %.0f ms (load average %s before, %s after)\n",
      args, words, instances, broker, runs, touch ? " (input touched before each)" : "", v[1], v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR], lb, la
  }'
