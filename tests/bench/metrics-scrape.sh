#!/usr/bin/env bash
# The cost of one /metrics scrape with many distinct words counted: time and bytes per
# scrape (curl's time_total and size_download), 20 scrapes after the input is consumed
# and 20 while it is being consumed. Real broker at $TALLY_TEST_KAFKA_BOOTSTRAP; no
# checkpoints (the changelog write of millions of words is not what is measured).
#
#   tests/bench/metrics-scrape.sh [DISTINCT_WORDS]   (default 1000000; 100 words a record)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
e2e_init tally-metrics-scrape
need_real_kafka
bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
n=${1:-1000000}
id="scrape-$$-$(date +%s)"
$client topics -b "$bootstrap" "$id-input:4" "$id-snapshots:1" "$id-requests:1" 2>>"$work/client.log"
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/tally.conf" <<CONF
[input]
topics=$id-input
group_id=$id
[output]
topic=$id-snapshots
[requests]
topic=$id-requests
[checkpoint]
enabled=false
[metrics]
listen=127.0.0.1:$port
[kafka]
bootstrap.servers=$bootstrap
CONF
# 100 distinct words a record: "x<k>" for k = 1..n
"$py" -c "
import sys
n = $n
w = sys.stdout.write
for start in range(1, n + 1, 100):
    w(' '.join('x%d' % k for k in range(start, min(start + 100, n + 1))) + '\n')
" >"$work/input.txt"
records=$(wc -l <"$work/input.txt")
start_tally tally "$work/tally.conf"

scrape() { # LABEL: 20 scrapes, prints mean and max time (ms) and the bytes
  local label=$1 i
  for ((i = 0; i < 20; i++)); do
    curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port/metrics"
  done | awk -v l="$label" '{ t = $1 * 1000; s += t; if (t > m) m = t; b = $2 } END {
    printf "%s: 20 scrapes, mean %.2f ms, max %.2f ms, %d bytes each\n", l, s / NR, m, b }'
}

kcat_produce "$id-input" <"$work/input.txt" &
producer=$!
sleep 1
scrape "while consuming"
wait "$producer"
for ((i = 0; i < 600; i++)); do
  got=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tally_records_consumed_total\{/ { s += $2 } END { print s + 0 }')
  [ "$got" = "$records" ] && break
  sleep 0.5
done
[ "$got" = "$records" ] || fail "consumed $got of $records records"
words=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^tally_store_distinct_words\{/ { s += $2 } END { print s + 0 }')
echo "distinct words counted: $words (records $records)"
scrape "idle, $words distinct words"
echo "RSS of tally: $(awk '/VmRSS/ { print $2, $3 }' "/proc/$tally_pid/status")"
stop_tally TERM
