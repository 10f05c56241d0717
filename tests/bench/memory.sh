#!/usr/bin/env bash
# Memory per distinct word of `tally run` on a real broker (issue 14). A measurement, not a
# test.
#
#   tests/bench/memory.sh --bootstrap HOST:PORT [--words N]
#
# The memory figure of tests/bench/e2e.sh without the rest of it, for any N: one `tally
# run` (the defaults: exactly once, checkpoints) counts N distinct synthetic 8-byte words
# (w0000000 ..., 10 per record, on a fresh 4-partition topic); a second, on another fresh
# topic, counts as many words and records with only 1,000 distinct (the control: the same
# input bytes, buffers and offsets). Each is read 3 s after its snapshot shows all N words
# counted (three checkpoint intervals: the changelog writes have settled). Printed: RSS
# and peak RSS (VmHWM) of both, and bytes per distinct word = the RSS difference divided
# by the difference in distinct words; the load average (2 shared cores).
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

e2e_init tally-bench-memory
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# run NAME DISTINCT: counts $words words of DISTINCT distinct ones; writes "RSS_KB HWM_KB"
# to $work/NAME.mem
run() {
  local name=$1 distinct=$2 topic=bench-memory-$$-$RANDOM-$1 total i
  cat >"$work/$name.conf" <<CONF
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
CONF
  $client topics -b "$bootstrap" "$topic:4" 2>>"$work/client.log" || fail "cannot create $topic"
  start_tally "$name" "$work/$name.conf"
  awk -v n="$words" -v d="$distinct" 'BEGIN { for (i = 0; i < n; i += 10) { line = ""; for (j = i; j < i + 10 && j < n; j++) line = line sprintf("w%07d ", j % d); print line } }' \
    | kcat_produce "$topic"
  for ((i = 0; i < 1200; i++)); do
    total=$({ "$tally" snapshot -c "$work/$name.conf" --top 1 --json --timeout 120000 2>>"$work/client.log" || true; } \
      | sed -n 's/.*"total_words" *: *\([0-9]*\).*/\1/p' | head -n 1)
    [ "${total:-0}" = "$words" ] && break
    sleep 1
  done
  [ "${total:-0}" = "$words" ] || fail "$name: only ${total:-0} of $words words counted"
  sleep 3
  awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$tally_pid/status" >"$work/$name.mem"
  kill -TERM "$tally_pid"
  wait "$tally_pid" 2>/dev/null || true
}

run words "$words"
run control 1000
read -r rss hwm <"$work/words.mem"
read -r rss_control hwm_control <"$work/control.mem"
printf 'memory, %d words: RSS %d MB (peak %d MB) with %d distinct, %d MB (peak %d MB) with 1000: %.1f bytes per distinct word (load average %s at the start, %s at the end)\n' \
  "$words" $((rss / 1024)) $((hwm / 1024)) "$words" $((rss_control / 1024)) $((hwm_control / 1024)) \
  "$(echo "($rss - $rss_control) * 1024 / ($words - 1000)" | bc -l)" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
