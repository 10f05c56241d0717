#!/usr/bin/env bash
# End-to-end check of the librdkafka plugin inside kcat, a consumer no one here wrote:
#
#   kcat -C ... -X plugin.library.paths=libtally-rdkafka.so -X tally.config=tally.conf
#
# kcat consumes a topic; a snapshot requested on the request topic (tests/e2e/tally_client.py,
# --caught-up) and the final snapshot kcat's exit publishes must both equal the reference
# counts of what was consumed (tests/reference/wordcount.py, Python re + Counter).
#
#   test-plugin-kcat.sh embedded   on `tally broker` (librdkafka's mock cluster)
#   test-plugin-kcat.sh real       on the Apache Kafka broker at $TALLY_TEST_KAFKA_BOOTSTRAP;
#                                  skipped (77) when unset, failed if TALLY_TEST_REQUIRE_KAFKA=1
#
# Needs TALLY_EXE and TALLY_RDKAFKA_PLUGIN (set by meson test). Exit 0: every check passed.
set -euo pipefail

mode=${1:-}
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
plugin=${TALLY_RDKAFKA_PLUGIN:-$root/build/libtally-rdkafka.so}
e2e_init tally-e2e-plugin

command -v kcat >/dev/null || fail "kcat is not installed (scripts/setup installs it)"
[ -f "$plugin" ] || fail "no plugin module at $plugin"

id="plugin-$$-$(date +%s%N)"
input=$id-input output=$id-snapshots requests=$id-requests

case "$mode" in
embedded)
  start_broker --partitions 2 -t "$input,$output,$requests"
  ;;
real)
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
  $client topics -b "$bootstrap" "$input:2" "$output:1" "$requests:1" 2>>"$work/client.log" \
    || fail "cannot create the topics"
  ;;
*)
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

# The input: tests/data/tricky.txt (Unicode, punctuation, tabs) three times and numbered
# lines, half to each partition so both are read.
for i in 1 2 3; do cat "$root/tests/data/tricky.txt"; done >"$work/input"
seq 1 200 | sed 's/^/line number /' >>"$work/input"
half=$(($(wc -l <"$work/input") / 2))
head -n "$half" "$work/input" | kcat -P -b "$bootstrap" -t "$input" -p 0 2>>"$work/kcat-produce.log"
tail -n +"$((half + 1))" "$work/input" | kcat -P -b "$bootstrap" -t "$input" -p 1 2>>"$work/kcat-produce.log"
$reference "$work/input" >"$work/expected"
records=$(wc -l <"$work/input")

cat >"$work/tally.conf" <<EOF
[output]
topic=$output
[requests]
topic=$requests
[aggregator]
shards=2
EOF

# kcat with the plugin: plugin.library.paths first, then the tally.* properties; the
# plugin serves its metrics for kcat on a free port (tally.metrics.listen).
metrics_port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kcat -C -b "$bootstrap" -t "$input" -o beginning -q -u \
  -X plugin.library.paths="$plugin" -X tally.config="$work/tally.conf" \
  -X tally.metrics.listen="127.0.0.1:$metrics_port" \
  >"$work/consumed" 2>"$work/kcat.log" &
kcat_pid=$!
pids+=("$kcat_pid")
wait_for_line "$work/kcat.log" 'tally plugin .*counting words' 30 >/dev/null || fail "the plugin did not attach to kcat"
ok "the plugin attached to kcat's consumer"

snapshot_caught_up "$work/actual" --input "$input" --requests "$requests" --output "$output"
expect_file "snapshot on request equals the reference counts of the $records input lines kcat consumed" \
  "$work/expected" "$work/actual"
# kcat's own output is untouched (empty values aside, which it prints as empty lines).
grep -av '^$' "$work/input" | LC_ALL=C sort >"$work/input-sorted" || true
grep -av '^$' "$work/consumed" | LC_ALL=C sort >"$work/consumed-sorted" || true
expect_file "kcat itself printed every record as without the plugin" "$work/input-sorted" "$work/consumed-sorted"

# The plugin's /metrics for its host: every record kcat consumed, the snapshot request.
nopreload curl -s -m 20 "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" || fail "no /metrics from the plugin"
got=$(awk '/^tally_records_consumed_total\{/ { s += $2 } END { print s + 0 }' "$work/metrics.txt")
# As many as kcat printed, one a line (kcat -P made no record of the input's empty lines).
produced=$(wc -l <"$work/consumed")
[ "$got" = "$produced" ] || fail "the plugin's tally_records_consumed_total is $got, not $produced"
grep -q '^tally_snapshot_requests_total [1-9]' "$work/metrics.txt" || fail "no snapshot request in the plugin's metrics"
[ "$(nopreload curl -s -m 20 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/healthz")" = 200 ] \
  || fail "the plugin's /healthz"
ok "the plugin serves /metrics ($got records, a snapshot request) and /healthz for kcat"

# SIGTERM: kcat closes and destroys its consumer, the plugin publishes its final snapshot.
kill -TERM "$kcat_pid"
status=0
wait "$kcat_pid" || status=$?
[ "$status" = 0 ] || [ "$status" = 143 ] || fail "kcat exited with status $status"
grep -q 'tally plugin .*final snapshot .* published' "$work/kcat.log" || fail "no final snapshot was published"
# The final snapshot: the parts that reply to no request of tally_client.py, one snapshot.
last_snapshot "$work/final" "$output" --not-requested --exactly-one || fail "cannot read the final snapshot"
expect_file "the final snapshot published when kcat exited equals the reference counts" \
  "$work/expected" "$work/final"
