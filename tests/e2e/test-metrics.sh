#!/usr/bin/env bash
# Operations end to end on the real broker: Debian's Prometheus scraping `tally run`,
# /healthz, /readyz and sd_notify (docs/operations.md).
#
#   test-metrics.sh prometheus   a real Prometheus server (/usr/bin/prometheus, its config
#                                generated here, storage in the work directory, a free
#                                127.0.0.1 port) scrapes `tally run` every second; through
#                                its HTTP query API: records consumed == records produced,
#                                distinct words == words produced, consumer lag falls to 0,
#                                a `tally snapshot` request shows in the snapshot counters;
#                                `promtool check metrics` passes on the exposition
#   test-metrics.sh health       /readyz fails before the assignment is restored and passes
#                                after it (a second life restores from the changelog);
#                                /healthz passes, fails naming the shard while a test hook
#                                (TALLY_TEST_HOOKS=1, /debug/stall) blocks it, passes again;
#                                READY=1 comes on $NOTIFY_SOCKET only after the restore and
#                                STOPPING=1 at SIGTERM
#
# Needs TALLY_TEST_KAFKA_BOOTSTRAP (scripts/check starts deploy/kafka-local); skipped
# (77) without it. Exit 0 pass, 1 fail.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_init tally-metrics

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http PATH OUT: the HTTP status of GET PATH on Tally's listener, the body in OUT
http() {
  curl -s -m 20 -o "$2" -w '%{http_code}' "http://127.0.0.1:$metrics_port$1" || echo 000
}

setup() {
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
  local id
  id="metrics-$$-$(date +%s%N)"
  input_topic=$id-input group=$id output_topic=$id-snapshots requests_topic=$id-requests
  changelog_topic=$id-changelog
  $client topics -b "$bootstrap" "$input_topic:4" "$output_topic:1" "$requests_topic:1" 2>>"$work/client.log" \
    || fail "cannot create the topics"
  metrics_port=$(free_port)
  conf=$work/tally.conf
  cat >"$conf" <<EOF
[input]
topics=$input_topic
group_id=$group
[output]
topic=$output_topic
[requests]
topic=$requests_topic
[checkpoint]
changelog_topic=$changelog_topic
interval_ms=1000
[aggregator]
shards=2
[metrics]
listen=127.0.0.1:$metrics_port
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
EOF
}

# produce N: N records "wK common" (K = 1..N): N + 1 distinct words
produce() {
  seq 1 "$1" | sed 's/^/w/; s/$/ common/' | kcat_produce "$input_topic" || fail "kcat could not produce"
}

# wait_status PATH CODE SECONDS
wait_status() {
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    [ "$(http "$1" "$work/body")" = "$2" ] && return 0
    sleep 0.2
  done
  return 1
}

# promql EXPR: the value of an instant query's first sample, or "none"
promql() {
  { curl -s -m 10 -G "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" || true; } \
    | "$py" -c 'import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    d = {}
r = d["data"]["result"] if d.get("status") == "success" else []
print(r[0]["value"][1] if r else "none")'
}

# wait_promql EXPR VALUE SECONDS: until Prometheus answers EXPR with VALUE
wait_promql() {
  local i v=none
  for ((i = 0; i < $3; i++)); do
    v=$(promql "$1")
    [ "$v" = "$2" ] && { ok "prometheus: $1 = $2"; return 0; }
    sleep 1
  done
  fail "prometheus: $1 = $v, expected $2 within $3 s"
}

test_prometheus() {
  setup
  local n=20000
  produce "$n"
  spawn_tally tally "$conf"
  wait_status /readyz 200 90 || fail "/readyz never passed: $(cat "$work/body")"

  prom_port=$(free_port)
  cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tally
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
EOF
  promtool check config "$work/prometheus.yml" >>"$work/promtool.log" 2>&1 || fail "promtool check config"
  /usr/bin/prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
  pids+=("$!")

  wait_promql 'up{job="tally"}' 1 60
  wait_promql 'sum(tally_records_consumed_total{job="tally"})' "$n" 90
  wait_promql 'sum(tally_words_consumed_total{job="tally"})' "$((2 * n))" 30
  # Each store (input partition) holds its own "common": n + 4 over the 4 stores.
  wait_promql 'sum(tally_store_distinct_words{job="tally"})' "$((n + 4))" 30
  wait_promql 'count(tally_partition_assigned{job="tally"} == 1)' 4 30
  # Lag comes from librdkafka's statistics, which Tally asked for every 5 s itself.
  wait_promql 'sum(tally_kafka_statistics_total{job="tally"}) > bool 0' 1 30
  wait_promql 'count(tally_consumer_lag_records{job="tally"})' 4 30
  wait_promql 'max(tally_consumer_lag_records{job="tally"})' 0 60
  wait_promql 'sum(tally_transactions_committed_total{job="tally"}) > bool 0' 1 30
  wait_promql 'sum(tally_broker_up{job="tally"})' 1 30

  # A snapshot request (a record on the request topic, from `tally snapshot`).
  "$tally" snapshot --config "$conf" --top 3 >"$work/snapshot.out" 2>"$work/snapshot.log" \
    || fail "tally snapshot failed"
  grep -q "^common $n\$" "$work/snapshot.out" || fail "the snapshot does not say common $n"
  wait_promql 'sum(tally_snapshot_requests_total{job="tally"})' 1 30
  wait_promql 'sum(tally_snapshot_parts_total{job="tally"}) > bool 0' 1 30
  wait_promql 'sum(tally_snapshot_bytes_total{job="tally"}) > bool 0' 1 30
  wait_promql 'sum(tally_snapshot_duration_seconds_count{job="tally"})' 1 30
  wait_promql 'sum(tally_snapshot_failures_total{job="tally"})' 0 5

  [ "$(http /metrics "$work/metrics.txt")" = 200 ] || fail "/metrics"
  promtool check metrics <"$work/metrics.txt" >"$work/promtool.log" 2>&1 \
    || fail "promtool check metrics: $(cat "$work/promtool.log")"
  ok "promtool check metrics passes on the exposition ($(wc -c <"$work/metrics.txt") bytes)"
  stop_tally TERM
}

# A datagram socket standing in for systemd's $NOTIFY_SOCKET: every message, one per line
# with its time, to $work/notify.txt
start_notify_listener() {
  export NOTIFY_SOCKET=$work/notify.sock
  "$py" - "$NOTIFY_SOCKET" "$work/notify.txt" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        data = s.recv(4096).decode()
        out.write("%.3f %s\n" % (time.time(), data.replace("\n", " ")))
EOF
  pids+=("$!")
  local i
  for ((i = 0; i < 50; i++)); do [ -S "$NOTIFY_SOCKET" ] && return 0; sleep 0.1; done
  fail "no notify socket"
}

test_health() {
  setup
  start_notify_listener
  produce 5000
  # First life: counts and checkpoints, so that the second one has stores to restore.
  spawn_tally first "$conf"
  wait_status /readyz 200 90 || fail "first life: /readyz never passed"
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(http /metrics "$work/m1.txt")" = 200 ] \
      && grep -q '^tally_transactions_committed_total [1-9]' "$work/m1.txt" \
      && [ "$(awk '/^tally_records_consumed_total\{/ { s += $2 } END { print s + 0 }' "$work/m1.txt")" = 5000 ] \
      && break
    sleep 0.2
  done
  stop_tally TERM
  grep -q 'READY=1' "$work/notify.txt" || fail "first life: no READY=1"
  grep -q 'STOPPING=1' "$work/notify.txt" || fail "first life: no STOPPING=1 at SIGTERM"
  ok "sd_notify: READY=1, then STOPPING=1 at SIGTERM"
  : >"$work/notify.txt"

  # Second life: /readyz fails until the stores are restored, then passes.
  TALLY_TEST_HOOKS=1 spawn_tally second "$conf"
  local first_503=0 code
  for ((i = 0; i < 900; i++)); do
    code=$(http /readyz "$work/readyz.txt")
    if [ "$code" = 503 ]; then first_503=1; fi
    if [ "$code" = 200 ]; then break; fi
    kill -0 "$tally_pid" 2>/dev/null || fail "tally exited"
    sleep 0.1
  done
  [ "$code" = 200 ] || fail "second life: /readyz never passed"
  [ "$first_503" = 1 ] || fail "/readyz never failed before the assignment was restored"
  grep -q 'source: restored store' "$work/second.log" || fail "/readyz passed before any store was restored"
  grep -q '^ready: 4 partition(s) assigned, restored and consumed$' "$work/readyz.txt" \
    || fail "/readyz said: $(cat "$work/readyz.txt")"
  ok "/readyz: 503 before the restore, 200 after it ($(cat "$work/readyz.txt"))"
  for ((i = 0; i < 50; i++)); do grep -q 'READY=1' "$work/notify.txt" && break; sleep 0.1; done
  grep -q 'READY=1' "$work/notify.txt" || fail "second life: no READY=1"
  ok "sd_notify: READY=1 after the restore"

  [ "$(http /healthz "$work/healthz.txt")" = 200 ] || fail "/healthz: $(cat "$work/healthz.txt")"
  ok "/healthz: $(cat "$work/healthz.txt")"
  [ "$(http '/debug/stall?shard=1&ms=9000' "$work/stall.txt")" = 200 ] || fail "stall hook: $(cat "$work/stall.txt")"
  [ "$(http /healthz "$work/healthz.txt")" = 503 ] || fail "/healthz passed with a stuck shard"
  grep -q '^shard 1 did not answer within 5000 ms$' "$work/healthz.txt" || fail "/healthz said: $(cat "$work/healthz.txt")"
  ok "/healthz fails while shard 1 is stuck: $(cat "$work/healthz.txt")"
  wait_status /healthz 200 20 || fail "/healthz did not pass again after the stall"
  ok "/healthz passes again once the shard answers"
  stop_tally TERM
}

case "${1:-}" in
  prometheus) test_prometheus ;;
  health) test_health ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
