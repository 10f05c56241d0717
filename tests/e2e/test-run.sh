#!/usr/bin/env bash
# End-to-end checks of `tally run` as a separate process, fed and read by clients no one
# here wrote: kcat, confluent-kafka-python and kafka-python. Reference counts come from
# tests/reference/wordcount.py (Python re + collections.Counter), never from Tally.
#
#   test-run.sh streams-example  the Kafka Streams word-count example lines give kafka 3,
#                                streams 2 and 1 for each other word (default tokenizer)
#   test-run.sh clients          input from kcat, confluent-kafka and kafka-python; the
#                                snapshot read back with both Python clients
#   test-run.sh sotu             every State of the Union address, line by line with kcat:
#                                the snapshot equals the reference word for word
#   test-run.sh bad-records      tombstones, empty values, NUL bytes, invalid UTF-8, a
#                                record at the raised size limit and an error event; the
#                                tokenizer's statistics and every input topic logged
#   test-run.sh signals          SIGUSR1 publishes a snapshot; a second SIGTERM during the
#                                shutdown neither hangs nor crashes; exit status 0; SIGHUP
#                                stops as SIGTERM does; requests produced right after
#                                SIGTERM are answered; 20 runs of signal bursts while
#                                records are consumed (20 SIGUSR1, then TERM,TERM,USR1,TERM)
#   test-run.sh interval         [snapshot] interval_ms publishes snapshots by itself
#   test-run.sh start            SIGINT while the start waits for a broker that does not
#                                answer exits at once (status 0); `tally snapshot` started
#                                before `tally run` asks again until it is answered
#   test-run.sh bad-config       a bad key exits with status 78 and names the key
#   test-run.sh bootstrap-server `tally run -b HOST:PORT` overrides [kafka] bootstrap.servers
#                                (a port nothing listens on): no embedded broker, and the
#                                Kafka Streams example lines are counted from `tally broker`;
#                                an empty -b exits 2, a bad configuration with -b exits 78
#   test-run.sh restart-term     SIGTERM in the middle of the input, then a restart against
#                                the same broker (`tally broker`): counts equal the reference
#   test-run.sh restart-kill     the same with kill -9: no word is missing and none is below
#                                the reference (at least once)
#   test-run.sh two-instances    two `tally run` in one consumer group on `tally broker`: a
#                                member joins mid-input and later leaves; the merged
#                                replies equal the reference (nothing counted twice)
#   test-run.sh windows-cli      `tally snapshot --window` against `tally run` with [windows]
#                                on the embedded broker, records with set timestamps:
#                                current, last, a window by its start, --json's range, and
#                                an empty answer said on stderr (no window yet, an empty
#                                window, filters that keep nothing), exit 0
#   test-run.sh real-restart     restart-kill against the real Apache Kafka broker
#                                at $TALLY_TEST_KAFKA_BOOTSTRAP (compaction on, real group
#                                coordinator); skipped (77) when it is unset, failed when
#                                TALLY_TEST_REQUIRE_KAFKA=1
#   test-run.sh real-two-instances  two-instances against that real broker (its group
#                                coordinator's rebalances, compacted changelog)
#   test-run.sh real-cooperative real-two-instances with the cooperative-sticky assignor
#   test-run.sh real-kill-loop   kill -9 at random points while the SOTU corpus (one record
#                                per sentence) is produced, 10 lives in a row, each
#                                restarted: every word exactly as the reference (exactly
#                                once; TALLY_TEST_SEED replays the delays, TALLY_TEST_KILLS
#                                sets the number of kills)
#   test-run.sh real-fresh-topics  only the input topic exists: two `tally run` started
#                                together create the request and output topics (1
#                                partition) and the compacted changelog (as many partitions
#                                as the input) once, and `tally snapshot` is exact
#   test-run.sh real-shared-changelog  a second deployment (another consumer group) given
#                                the first one's changelog topic exits 78 naming both
#                                groups; the first restores its own counts exactly
#   test-run.sh real-broker-restart  a broker of its own (deploy/kafka-local on free ports)
#                                restarted, then hung (SIGSTOP) for 60 s, then killed (-9)
#                                and away for 12 s, while Tally consumes: Tally keeps
#                                running, logs the outage, resumes;
#                                the final snapshot after SIGTERM and a restart of Tally
#                                equal the reference exactly
#
# Needs TALLY_EXE (set by meson test) or a build in ./build. Exit 0 means every check passed.
# (start_broker takes optional arguments of tally broker, none here)
# shellcheck disable=SC2119
set -euo pipefail

mode=${1:-}
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_init tally-e2e-run

embedded_conf() {
  cat >"$work/tally.conf" <<EOF
[input]
topics=tally-input
[checkpoint]
interval_ms=500
EOF
  printf '%s\n' "$@" >>"$work/tally.conf"
}

test_streams_example() {
  embedded_conf
  start_tally run "$work/tally.conf"
  streams_lines | kcat_produce tally-input
  snapshot_caught_up "$work/actual"
  streams_counts >"$work/expected"
  expect_file "Kafka Streams example: kafka 3, streams 2, 1 each other word" "$work/expected" "$work/actual"
  streams_lines | $reference --chunk-lines >"$work/reference"
  expect_file "the reference counter agrees" "$work/reference" "$work/actual"
  stop_tally TERM
  ok "clean exit after SIGTERM"
}

test_clients() {
  embedded_conf
  start_tally run "$work/tally.conf"
  printf 'the kcat line\nanother kcat line with the words\n' >"$work/in-kcat"
  printf 'the confluent line\nÉcole Ünïcode straße\n' >"$work/in-confluent"
  printf 'the kafka-python line\n' >"$work/in-kp"
  kcat_produce tally-input <"$work/in-kcat"
  $client produce -b "$bootstrap" -t tally-input --client confluent "$work/in-confluent" 2>>"$work/client.log"
  $client produce -b "$bootstrap" -t tally-input --client kafka-python "$work/in-kp" 2>>"$work/client.log"
  cat "$work/in-kcat" "$work/in-confluent" "$work/in-kp" | $reference --chunk-lines >"$work/expected"
  snapshot_caught_up "$work/actual-confluent" --client confluent
  expect_file "kcat + confluent-kafka + kafka-python input, read with confluent-kafka" "$work/expected" "$work/actual-confluent"
  snapshot_caught_up "$work/actual-kp" --client kafka-python
  expect_file "the same snapshot read with kafka-python" "$work/expected" "$work/actual-kp"
  stop_tally INT
  ok "clean exit after SIGINT"
}

test_sotu() {
  embedded_conf
  sotu_lines >"$work/sotu.txt"
  $reference --chunk-lines "$work/sotu.txt" >"$work/expected"
  start_tally run "$work/tally.conf"
  kcat_produce tally-input <"$work/sotu.txt"
  snapshot_caught_up "$work/actual"
  expect_file "State of the Union, $(wc -l <"$work/sotu.txt") records, $(awk '{s+=$2} END {print s}' "$work/expected") words: equal to the reference" \
    "$work/expected" "$work/actual"
  stop_tally TERM
  ok "clean exit after SIGTERM"
}

test_bad_records() {
  # Raise librdkafka's record size limits to 2 MB and send a record of exactly 2,000,000
  # bytes of value; enable.partition.eof makes the consumer deliver an error event (err =
  # _PARTITION_EOF) each time it reaches the end of a partition; a ^regex subscription that
  # matches nothing rides along.
  embedded_conf "[kafka]" "message.max.bytes=2100000" "fetch.message.max.bytes=2100000" \
    "receive.message.max.bytes=100000000" "enable.partition.eof=true"
  sed -i 's/^topics=tally-input$/topics=tally-input;^tally-input-none-[0-9]+$/' "$work/tally.conf"
  start_tally run "$work/tally.conf"
  "$py" - "$work/values.json" "$work/big" <<'EOF'
import json, sys
big = ("big " * 500000).encode()  # exactly 2,000,000 bytes, 500,000 words
assert len(big) == 2000000
open(sys.argv[2], "wb").write(big)
values = [None, "", "nul\u0000byte", {"hex": "ff fe 41 42 c3 28 e2 82 ff 6f 6b".replace(" ", "")},
          {"hex": "00"}, {"hex": big.hex()}, "après l'été", None]
json.dump(values, open(sys.argv[1], "w"))
EOF
  $client produce -b "$bootstrap" -t tally-input --client confluent --values "$work/values.json" 2>>"$work/client.log"
  {
    printf 'nul\0byte\n'
    printf '\xff\xfeAB\xc3(\xe2\x82\xffok\n'
    printf '\0\n'
    cat "$work/big"
    printf '\n'
    printf "après l'été\n"
  } | $reference --chunk-lines >"$work/expected"
  snapshot_caught_up "$work/actual"
  expect_file "tombstones, empty, NUL, invalid UTF-8 and a 2,000,000-byte record" "$work/expected" "$work/actual"
  kill -0 "$tally_pid" || fail "tally died"
  stop_tally TERM
  ok "clean exit after SIGTERM"
  local events
  events=$(sed -n 's/.*source: closed; .* words, \([0-9]*\) error events.*/\1/p' "$work/run.log")
  [ "${events:-0}" -gt 0 ] || fail "no error event was seen (enable.partition.eof)"
  ok "$events error events (partition EOF) logged, none counted as text"
  # The tokenizer's statistics at shutdown (issue 13 item 13): ff, fe, c3, e2 82 and ff of
  # the invalid UTF-8 record are skipped; no word is longer than max_word_bytes.
  grep -q 'source: closed; .* error events, 6 invalid UTF-8 bytes skipped, 0 words truncated and 0 dropped' "$work/run.log" \
    || fail "the tokenizer's statistics at shutdown: $(grep 'source: closed' "$work/run.log")"
  ok "6 invalid UTF-8 bytes, 0 words truncated and 0 dropped, logged at shutdown"
  # Every input topic is named, the pattern too.
  grep -qF 'running: input tally-input, ^tally-input-none-[0-9]+$; output tally-snapshots' "$work/run.log" \
    || fail "the running line does not name both input topics: $(grep 'running:' "$work/run.log")"
  grep -qF 'source: consuming tally-input, ^tally-input-none-[0-9]+$ as consumer group member' "$work/run.log" \
    || fail "the source does not name both input topics: $(grep 'source: consuming' "$work/run.log")"
  ok "both input topics named in the log"
  grep -qF "shard(s); configuration $work/tally.conf" "$work/run.log" \
    || fail "the running line does not name the key-file: $(grep 'running:' "$work/run.log")"
  ok "the key-file read is named in the log"
}

test_signals() {
  embedded_conf
  start_tally run "$work/tally.conf"
  streams_lines | kcat_produce tally-input
  snapshot_caught_up "$work/first" # everything consumed
  kill -USR1 "$tally_pid"
  wait_for_line "$work/run.log" 'published' 30 >/dev/null || fail "no snapshot published after SIGUSR1"
  # A snapshot from SIGUSR1 is on the output topic, read with kcat.
  kcat -C -b "$bootstrap" -t tally-snapshots -o beginning -e -q 2>>"$work/kcat.log" >"$work/outputs"
  grep -q '"kafka",3' "$work/outputs" || grep -q '"kafka", 3' "$work/outputs" \
    || fail "the SIGUSR1 snapshot read with kcat does not count kafka 3"
  ok "SIGUSR1 publishes a snapshot that kcat reads"
  kill -TERM "$tally_pid"
  sleep 0.05
  kill -TERM "$tally_pid" 2>/dev/null || true
  kill -INT "$tally_pid" 2>/dev/null || true
  wait_exit "$tally_pid" 200 || fail "tally hung after repeated signals"
  local status=0
  wait "$tally_pid" || status=$?
  [ "$status" = 0 ] || fail "exit status $status after repeated signals"
  grep -q 'publishing the final snapshot' "$work/run.log" || fail "no final snapshot"
  [ "$(grep -c 'publishing the final snapshot' "$work/run.log")" = 1 ] || fail "final snapshot published more than once"
  ok "a second SIGTERM and a SIGINT during shutdown: one final snapshot, exit 0"

  signals_hup
  signals_requests_at_shutdown
  signals_bursts
}

# SIGHUP is a graceful stop, as SIGTERM (issue 13 item 2: it ended tally run with status
# 129 and no final snapshot).
signals_hup() {
  embedded_conf
  start_tally hup "$work/tally.conf"
  streams_lines | kcat -P -X sticky.partitioning.linger.ms=0 -b "$bootstrap" -t tally-input 2>>"$work/kcat.log"
  snapshot_caught_up "$work/hup-first"
  stop_tally HUP
  [ "$(grep -c 'final snapshot .* published' "$work/hup.log")" = 1 ] || fail "SIGHUP: no final snapshot published"
  ok "SIGHUP: exit 0 after one final snapshot"
}

# Requests produced right after SIGTERM are answered before the final snapshot (issue 13
# item 8: the request reader was closed at once, and they were neither answered nor
# logged). A `tally broker` outlives Tally so the replies can be read afterwards; the
# request producer is connected before SIGTERM, so its records follow it within
# milliseconds.
signals_requests_at_shutdown() {
  start_broker
  local broker_pid=${pids[-1]}
  embedded_conf "[kafka]" "bootstrap.servers=$bootstrap"
  start_tally late "$work/tally.conf"
  streams_lines | kcat -P -X sticky.partitioning.linger.ms=0 -b "$bootstrap" -t tally-input 2>>"$work/kcat.log"
  snapshot_caught_up "$work/late-first"
  rm -f "$work/requests.fifo"
  mkfifo "$work/requests.fifo"
  kcat -P -b "$bootstrap" -t tally-requests -K '|' -X linger.ms=0 <"$work/requests.fifo" 2>>"$work/kcat.log" &
  local producer=$!
  pids+=("$producer")
  exec 7>"$work/requests.fifo"
  sleep 1 # kcat has its metadata
  kill -TERM "$tally_pid"
  printf 'late-1|{"top":1}\nlate-2|{"top":2}\nlate-3|{"prefix":"st"}\n' >&7
  exec 7>&-
  wait "$producer" || fail "kcat could not produce the requests"
  local i status=0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$tally_pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$tally_pid" || status=$?
  [ "$status" = 0 ] || fail "exit status $status after SIGTERM with requests at shutdown"
  kcat -C -b "$bootstrap" -t tally-snapshots -o beginning -e -q \
    -f '%s\n' 2>>"$work/kcat.log" >"$work/late-outputs"
  "$py" - "$work/late-outputs" <<'PYEOF' || fail "requests produced after SIGTERM were not answered exactly"
import json, sys
replies = {}
for line in open(sys.argv[1], encoding="utf-8"):
    part = json.loads(line)
    replies.setdefault(part["request_id"], []).extend(map(tuple, part["counts"]))
expected = {
    "late-1": [("kafka", 3)],
    "late-2": [("kafka", 3), ("streams", 2)],
    "late-3": [("streams", 2)],
}
for rid, counts in expected.items():
    assert sorted(replies.get(rid, [])) == sorted(counts), (rid, replies.get(rid))
PYEOF
  [ "$(grep -c 'while shutting down: answered before the final snapshot' "$work/late.log")" = 3 ] \
    || fail "the three late requests are not logged as answered during the shutdown"
  grep -q 'request reader closed: 3 request(s) read at shutdown answered' "$work/late.log" \
    || fail "the request reader did not report the 3 requests it read at shutdown"
  [ "$(grep -c 'final snapshot .* published' "$work/late.log")" = 1 ] || fail "no final snapshot after the late requests"
  ok "3 requests produced right after SIGTERM: each answered exactly (kafka 3, streams 2), then the final snapshot, exit 0"
  kill "$broker_pid"
  wait "$broker_pid" 2>/dev/null || true
}

# Bursts of signals while records are consumed (issue 13 item 1: a signal delivered to
# the embedded broker's thread interrupted its poll and killed it: 5 of 10 runs with
# TERM,TERM,USR1,TERM, 2 of 6 with 20 SIGUSR1). Each run: 20 SIGUSR1 back to back, a
# snapshot published for them, then TERM,TERM,USR1,TERM back to back: exit 0 and one final
# snapshot. TALLY_TEST_BURST_RUNS sets the number of runs (20 by default).
signals_bursts() {
  local runs=${TALLY_TEST_BURST_RUNS:-20} run i status
  "$py" -c '
import random, sys
random.seed(13)
words = "alpha beta gamma delta kafka streams word count tally signal".split()
out = sys.stdout
for _ in range(150000):
    out.write(" ".join(random.choice(words) for _ in range(8)) + "\n")
' >"$work/burst-input"
  embedded_conf
  for ((run = 1; run <= runs; run++)); do
    start_tally "burst$run" "$work/tally.conf"
    kcat -P -b "$bootstrap" -t tally-input <"$work/burst-input" 2>>"$work/kcat-burst.log" &
    local producer=$!
    pids+=("$producer")
    sleep 0.3
    for ((i = 0; i < 20; i++)); do kill -USR1 "$tally_pid"; done
    wait_for_line "$work/burst$run.log" 'snapshot .* for request .* published' 20 >/dev/null \
      || fail "burst run $run: no snapshot published after 20 SIGUSR1"
    kill -TERM "$tally_pid"
    kill -TERM "$tally_pid" 2>/dev/null || true
    kill -USR1 "$tally_pid" 2>/dev/null || true
    kill -TERM "$tally_pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      kill -0 "$tally_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$tally_pid" 2>/dev/null && fail "burst run $run: tally hung after TERM,TERM,USR1,TERM"
    status=0
    wait "$tally_pid" || status=$?
    kill "$producer" 2>/dev/null || true
    wait "$producer" 2>/dev/null || true
    grep -q 'Interrupted system call' "$work/burst$run.log" && fail "burst run $run: $(grep -m1 'Interrupted system call' "$work/burst$run.log")"
    [ "$status" = 0 ] || fail "burst run $run: exit status $status after TERM,TERM,USR1,TERM"
    [ "$(grep -c 'final snapshot .* published' "$work/burst$run.log")" = 1 ] \
      || fail "burst run $run: the final snapshot was not published exactly once"
    grep -q 'not published' "$work/burst$run.log" && fail "burst run $run: $(grep -m1 'not published' "$work/burst$run.log")"
    rm -f "$work/burst$run.log" "$work/burst$run.out"
  done
  ok "$runs of $runs runs: 20 SIGUSR1 while consuming published a snapshot, then TERM,TERM,USR1,TERM exited 0 after one final snapshot"
}

test_start() {
  # Nothing listens on port 1: the start waits for the broker (up to 30 s) until SIGINT.
  printf '[kafka]\nbootstrap.servers=127.0.0.1:1\n' >"$work/nobroker.conf"
  spawn_tally nobroker "$work/nobroker.conf"
  wait_for_line "$work/nobroker.log" 'Connection refused' 20 >/dev/null || fail "no connection attempt logged"
  kill -INT "$tally_pid"
  local status=0
  wait_exit "$tally_pid" 30 || fail "tally run still waits for the broker 3 s after SIGINT"
  wait "$tally_pid" || status=$?
  [ "$status" = 0 ] || fail "exit status $status after SIGINT during the start"
  grep -q 'stopped while waiting for the broker at 127.0.0.1:1' "$work/nobroker.log" \
    || fail "no message naming the broker: $(tail -n 1 "$work/nobroker.log")"
  ok "SIGINT while waiting for the broker: exit 0 within 3 s, the broker named"

  # A request sent before any instance reads requests is never answered: tally snapshot
  # must ask again. The records are there first, so every answer counts at most them.
  start_broker
  streams_lines | kcat_produce tally-input
  embedded_conf
  # Out of time before any request was sent, or while sending it: exit 1, never a crash.
  local t
  for t in 1 2 3 5 8 13; do
    status=0
    "$tally" snapshot -b "$bootstrap" --config "$work/tally.conf" --timeout "$t" \
      >/dev/null 2>>"$work/short.log" || status=$?
    [ "$status" = 1 ] || fail "tally snapshot --timeout $t exited with status $status, expected 1"
  done
  ok "tally snapshot with a timeout of 1 to 13 ms: exit 1 every time"
  "$tally" snapshot -b "$bootstrap" --config "$work/tally.conf" --timeout 60000 \
    >"$work/early.out" 2>"$work/early.log" &
  local snapshot_pid=$!
  pids+=("$snapshot_pid")
  sleep 1.5
  printf '[kafka]\nbootstrap.servers=%s\n' "$bootstrap" >>"$work/tally.conf"
  start_tally run "$work/tally.conf"
  status=0
  wait "$snapshot_pid" || status=$?
  [ "$status" = 0 ] || fail "tally snapshot started first exited with status $status"
  # Its first request predates the request reader, which never answers it: exit 0 means a
  # request sent again was answered.
  streams_lines | $reference --chunk-lines >"$work/reference"
  awk 'NR == FNR { ref[$1] = $2; next } !($1 in ref) || $2 > ref[$1] { bad = 1 } END { exit bad }' \
    "$work/reference" "$work/early.out" || fail "the early snapshot counts words the input does not have"
  ok "tally snapshot started before tally run asked again and got an answer"
  snapshot_caught_up "$work/actual"
  expect_file "then the counts equal the reference" "$work/reference" "$work/actual"
  stop_tally TERM
}

test_bootstrap_server() {
  # Usage and configuration errors come before any broker is looked for.
  local status=0
  "$tally" run --bootstrap-server '' >"$work/empty.out" 2>"$work/empty.err" || status=$?
  [ "$status" = 2 ] || fail "an empty --bootstrap-server exits $status, not 2"
  grep -qx 'tally run: --bootstrap-server must not be empty' "$work/empty.err" \
    || fail "an empty --bootstrap-server is not named"
  ok "an empty --bootstrap-server exits 2"
  printf '[input]\ntopic=tally-input\n' >"$work/bad.conf"
  status=0
  "$tally" run -b 127.0.0.1:9 --config "$work/bad.conf" >"$work/bad.out" 2>"$work/bad.err" || status=$?
  [ "$status" = 78 ] || fail "a bad configuration with -b exits $status, not 78"
  grep -q "^tally run: $work/bad.conf:2: \[input\] topic: unknown key" "$work/bad.err" \
    || fail "the bad key is not named with the tally run: prefix"
  ok "a bad configuration with -b exits 78, prefixed and naming the key"

  # The broker, and a configuration whose bootstrap.servers points nowhere.
  start_broker
  embedded_conf "[kafka]" "bootstrap.servers=127.0.0.1:9"
  spawn_tally run "$work/tally.conf" -b "$bootstrap"
  wait_for_line "$work/run.log" 'source: assigned' 60 >/dev/null \
    || fail "tally run -b never got its partitions from $bootstrap"
  ok "tally run -b $bootstrap got its partitions"
  grep -q 'embedded broker' "$work/run.log" && fail "tally run -b started an embedded broker"
  [ -s "$work/run.out" ] && fail "tally run -b printed on standard output: $(head -n1 "$work/run.out")"
  ok "no embedded broker: nothing on standard output, none in the log"

  streams_lines | kcat_produce tally-input
  streams_lines | $reference --chunk-lines >"$work/expected"
  # A snapshot may come before the records are consumed: ask until the counts are all there
  # (at most 60 tries); the assertion is on the exact counts, not on the time taken.
  local i
  for ((i = 0; i < 60; i++)); do
    "$tally" snapshot --config "$work/tally.conf" -b "$bootstrap" --timeout 10000 \
      >"$work/actual" 2>>"$work/snapshot.log" || fail "tally snapshot -b exited $?"
    cmp -s "$work/expected" "$work/actual" && break
    sleep 1
  done
  expect_file "consumed from $bootstrap: the Kafka Streams example counts" "$work/expected" "$work/actual"
  stop_tally TERM
  ok "clean exit after SIGTERM"
}

# [snapshot] interval_ms: snapshots appear on the output topic without any request.
test_interval() {
  embedded_conf "[snapshot]" "interval_ms=300"
  start_tally run "$work/tally.conf"
  streams_lines | kcat_produce tally-input
  snapshot_caught_up "$work/actual" # every record consumed
  local before after
  before=$(grep -c 'published' "$work/run.log")
  sleep 2
  after=$(grep -c 'published' "$work/run.log")
  [ $((after - before)) -ge 3 ] || fail "only $((after - before)) snapshots in 2 s with interval_ms=300"
  # The last timer snapshot, read with kcat, counts kafka 3.
  kcat -C -b "$bootstrap" -t tally-snapshots -o -1 -e -q 2>>"$work/kcat.log" >"$work/last"
  "$py" - "$work/last" <<'EOF' || fail "the last timer snapshot does not count kafka 3"
import json, sys
part = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert dict(part["counts"])["kafka"] == 3, part
EOF
  ok "$((after - before)) timer snapshots in 2 s (interval_ms=300), the last counts kafka 3"
  stop_tally TERM
}

test_bad_config() {
  printf '[input]\ntopiks=tally-input\n' >"$work/bad.conf"
  local status=0
  "$tally" run --config "$work/bad.conf" >"$work/bad.out" 2>"$work/bad.err" || status=$?
  [ "$status" = 78 ] || fail "exit status $status for a bad key, expected 78"
  grep -q 'topiks' "$work/bad.err" || fail "the message does not name the key: $(cat "$work/bad.err")"
  ok "bad config: exit 78, message names the key"
  # Each property is valid alone; librdkafka refuses the combination when the consumer is
  # created, which is still a configuration error.
  printf '[kafka]\nreceive.message.max.bytes=4200000\n' >"$work/bad2.conf"
  status=0
  "$tally" run --config "$work/bad2.conf" >"$work/bad2.out" 2>"$work/bad2.err" || status=$?
  [ "$status" = 78 ] || fail "exit status $status for properties librdkafka refuses together, expected 78"
  grep -q 'receive.message.max.bytes' "$work/bad2.err" || fail "the message does not name the property"
  ok "properties librdkafka refuses together: exit 78 with librdkafka's reason"
}

# group_conf FILE: a configuration for the topics and group in $input_topic, $group,
# $output_topic, $requests_topic, $changelog_topic on the broker at $bootstrap
group_conf() {
  cat >"$1" <<EOF
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
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
EOF
}

# restart SIGNAL: stop mid-input with SIGNAL, restart, compare with the reference
restart() {
  local sig=$1 conf=$work/tally.conf
  group_conf "$conf"
  sotu_lines >"$work/sotu.txt"
  $reference --chunk-lines "$work/sotu.txt" >"$work/expected"
  start_tally run1 "$conf"
  # Produce everything in the background, slowly enough to stop in the middle.
  (split -n l/20 "$work/sotu.txt" "$work/chunk."; for c in "$work"/chunk.*; do
    kcat_produce "$input_topic" <"$c"; sleep 0.3; done) 2>>"$work/kcat.log" &
  local producer=$!
  pids+=("$producer")
  wait_for_line "$work/run1.log" 'source: restored|source: assigned' 30 >/dev/null
  sleep 2.5
  kill "-$sig" "$tally_pid"
  local status=0
  wait "$tally_pid" || status=$?
  if [ "$sig" = TERM ]; then
    [ "$status" = 0 ] || fail "first run exited with status $status after SIGTERM"
  fi
  ok "first run stopped with SIG$sig mid-input"
  start_tally run2 "$conf"
  wait "$producer" || fail "the producer failed"
  $client snapshot -b "$bootstrap" --input "$input_topic" --requests "$requests_topic" \
    --output "$output_topic" --caught-up --timeout 180 >"$work/actual" 2>>"$work/client.log" \
    || fail "no caught-up snapshot after the restart"
  if [ "$sig" = TERM ]; then
    expect_file "after SIGTERM and restart: equal to the reference word for word" "$work/expected" "$work/actual"
  else
    at_least_reference "$work/expected" "$work/actual" || fail "after kill -9 and restart: a word is missing or below the reference"
    ok "after kill -9 and restart: every word counted at least as often as the reference"
  fi
  stop_tally TERM
  ok "clean exit of the second run"
}

# Two instances in one consumer group: the second joining (and later leaving) moves
# partitions and their counts between them; the merged replies equal the reference.
two_instances() {
  local conf=$work/tally.conf
  group_conf "$conf"
  sotu_lines | awk 'NF' >"$work/sotu.txt"
  $reference --chunk-lines "$work/sotu.txt" >"$work/expected"
  local half=$(($(wc -l <"$work/sotu.txt") / 2))
  head -n "$half" "$work/sotu.txt" >"$work/first"
  tail -n "+$((half + 1))" "$work/sotu.txt" >"$work/second"

  start_tally a "$conf"
  local a_pid=$tally_pid
  kcat_produce "$input_topic" <"$work/first"
  snapshot_caught_up "$work/after-first" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  start_tally b "$conf"
  local b_pid=$tally_pid
  wait_for_line "$work/a.log" 'source: revoked' 60 >/dev/null || fail "the first instance gave nothing up"
  kcat_produce "$input_topic" <"$work/second"
  snapshot_caught_up "$work/actual" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  expect_file "two instances, a rebalance in the middle: merged replies equal the reference" "$work/expected" "$work/actual"

  tally_pid=$b_pid
  stop_tally TERM
  ok "the second instance left cleanly"
  tally_pid=$a_pid
  snapshot_caught_up "$work/actual-after-leave" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  expect_file "after the second instance left: the first owns everything, still equal" "$work/expected" "$work/actual-after-leave"
  stop_tally TERM
  ok "clean exit of the first instance"
}

test_two_instances() {
  start_broker
  input_topic=tally-input group=tally output_topic=tally-snapshots requests_topic=tally-requests
  changelog_topic="tally-changelog"
  two_instances
}

test_restart_embedded() {
  start_broker
  input_topic=tally-input group=tally output_topic=tally-snapshots requests_topic=tally-requests
  changelog_topic="tally-changelog"
  restart "$1"
  # A separate `tally broker` is the same mock cluster: at least once, said once.
  [ "$(grep -c 'is librdkafka.s mock cluster (tally broker): checkpoints run at_least_once' "$work/run1.log")" = 1 ] \
    || fail "tally run against tally broker did not say it runs at_least_once"
  ok "against tally broker, checkpoints run at least once and say so"
}

# real_setup: fresh topic names on the real broker; creates input, output and request
# topics (the changelog is Tally's to create)
real_setup() {
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
  local id
  id="e2e-$$-$(date +%s%N)"
  input_topic=$id-input group=$id output_topic=$id-snapshots requests_topic=$id-requests
  changelog_topic=$id-changelog
  $client topics -b "$bootstrap" "$input_topic:4" "$output_topic:1" "$requests_topic:1" 2>>"$work/client.log" \
    || fail "cannot create the topics"
}

test_real_restart() {
  real_setup
  restart KILL
  "$py" - "$bootstrap" "$changelog_topic" <<'EOF' || fail "the changelog topic is not compacted"
import sys
from confluent_kafka.admin import AdminClient, ConfigResource
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, sys.argv[2])])
for f in res.values():
    assert f.result(30)["cleanup.policy"].value == "compact"
EOF
  ok "the changelog topic was created compacted"
}

test_real_two_instances() {
  real_setup
  two_instances
}

# sentence_lines: the SOTU corpus with one record per sentence. Each address is a single
# line of its file (233 records of about 46 KB), which Tally consumes within a fraction of
# a second of their production; split after . ! or ? there are about 63,500 records, so
# a producer paced over seconds keeps Tally in the middle of its input for as long as it
# runs. The reference counts the same text with the same cuts.
sentence_lines() {
  sotu_lines | sed -E 's/([.!?]) +/\1\n/g' | awk 'NF'
}

# produce_paced FIRST LAST PREFIX [kcat options...]: produces the files PREFIX.FIRST ..
# PREFIX.LAST (three digits) in turn, 0.3 s apart
produce_paced() {
  local first=$1 last=$2 prefix=$3 k
  shift 3
  for ((k = first; k <= last; k++)); do
    kcat_produce "$input_topic" "$@" <"$(printf '%s.%03d' "$prefix" "$k")" || return 1
    sleep 0.3
  done
}

# kill -9 at a random point of each of $TALLY_TEST_KILLS (10) lives, each fed its own
# share of the corpus in ten pieces paced over about 3.5 s; a last life consumes whatever
# is left.
test_real_kill_loop() {
  real_setup
  local conf=$work/tally.conf lives=${TALLY_TEST_KILLS:-10}
  group_conf "$conf"
  sentence_lines >"$work/sotu.txt"
  $reference --chunk-lines "$work/sotu.txt" >"$work/expected"
  split -n "l/$((lives * 10))" -d -a 3 "$work/sotu.txt" "$work/part."
  local seed=${TALLY_TEST_SEED:-$((($(date +%s) + $$) % 32768))}
  RANDOM=$seed
  echo "seed $seed (TALLY_TEST_SEED=$seed replays these kill delays); $(wc -l <"$work/sotu.txt") records"
  local life delay_ms produced=0 resumed producer start=$SECONDS delays=()
  for ((life = 1; life <= lives; life++)); do
    start_tally "life$life" "$conf"
    produce_paced $(((life - 1) * 10)) $((life * 10 - 1)) "$work/part" 2>>"$work/kcat.log" &
    producer=$!
    pids+=("$producer")
    # 0.2 to 3 s after the assignment: while restoring, consuming the backlog left by the
    # previous life, consuming this life's records as they come, or checkpointing.
    delay_ms=$((200 + RANDOM % 2801))
    delays+=("$delay_ms")
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    kill -0 "$tally_pid" 2>/dev/null || fail "life $life: tally exited before it was killed"
    kill -KILL "$tally_pid"
    wait "$tally_pid" 2>/dev/null || true
    resumed=$(sed -n 's/.*starts at checkpointed offset \([0-9]*\).*/\1/p' "$work/life$life.log" \
      | awk '{s += $1} END {print NR ? s : "0 (no marker read)"}')
    echo "life $life: SIGKILL ${delay_ms} ms after its assignment; it had resumed at record" \
      "$resumed of the $produced produced before it started"
    wait "$producer" || fail "the producer failed"
    produced=$(seq -f "$work/part.%03g" 0 $((life * 10 - 1)) | xargs cat | wc -l)
  done
  produced=$(wc -l <"$work/sotu.txt")
  start_tally final "$conf"
  snapshot_caught_up "$work/actual" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  local figures over
  figures=$(at_least_reference "$work/expected" "$work/actual") \
    || { echo "$figures"; fail "after $lives kills: a word is missing or below the reference"; }
  echo "$figures"
  over=${figures##* over_counted_words=}
  ok "$lives kills (delays ${delays[*]} ms, seed $seed), then a last life: no word below the reference; ${over% over_by=*} words over-counted, by ${over#* over_by=} in all"
  # Exactly once (the default guarantee on a real broker): a kill while a checkpoint is
  # being written aborts its transaction, so nothing is counted twice either.
  [ "${over% over_by=*}" = 0 ] || fail "over-counted words after $lives kills (seed $seed)"
  stop_tally TERM
  ok "clean exit of the last life; $((SECONDS - start)) s in all"
}

# Topics Tally owns, created by Tally: only the input topic exists when two instances
# start at the same moment; each of Tally's topics is created once (the other instance
# gets TOPIC_ALREADY_EXISTS), with the partitions and configs docs/running.md gives.
test_real_fresh_topics() {
  need_real_kafka
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
  local id conf=$work/tally.conf
  id="e2e-fresh-$$-$(date +%s%N)"
  input_topic=$id-input group=$id output_topic=$id-snapshots requests_topic=$id-requests
  changelog_topic=$id-changelog
  "$py" - "$bootstrap" "$input_topic" "$output_topic" "$requests_topic" "$changelog_topic" <<'EOF' || fail "cannot create the input topic"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bs, inp, *owned = sys.argv[1:]
admin = AdminClient({"bootstrap.servers": bs})
for f in admin.create_topics([NewTopic(inp, 4, 1)]).values():
    f.result(30)
existing = admin.list_topics(timeout=30).topics
assert not any(t in existing for t in owned), "a topic Tally owns exists already"
EOF
  group_conf "$conf"
  # Before any `tally run`: tally snapshot says the topic is missing and who creates it,
  # and does not create it (the count of "created" lines below would see it).
  local status=0
  "$tally" snapshot --config "$conf" --timeout 20000 >/dev/null 2>"$work/early.log" || status=$?
  [ "$status" = 1 ] || fail "tally snapshot before tally run: exit status $status, expected 1"
  grep -q "^tally snapshot: cannot read the metadata of request topic $requests_topic: Broker: Unknown topic or partition; the topic does not exist: \`tally run\` creates it when it starts" "$work/early.log" \
    || fail "tally snapshot before tally run: $(cat "$work/early.log")"
  ok "tally snapshot before any tally run: exit 1, 'the topic does not exist: tally run creates it', nothing created"
  spawn_tally b "$conf"
  local b_pid=$tally_pid
  start_tally a "$conf"
  wait_for_line "$work/b.log" 'source: (assigned|consuming)' 60 >/dev/null || fail "the second instance did not start"
  kill -0 "$b_pid" 2>/dev/null || fail "the second instance exited"
  local role n
  for role in "request topic $requests_topic" "output topic $output_topic" "changelog topic $changelog_topic"; do
    n=$(cat "$work/a.log" "$work/b.log" | grep -c "created $role:" || true)
    [ "$n" = 1 ] || fail "$role: created $n times by the two instances, expected once"
  done
  ok "two instances started together: each of Tally's topics created once, no error"
  "$py" - "$bootstrap" "$requests_topic" "$output_topic" "$changelog_topic" >"$work/topics" <<'EOF' || fail "Tally's topics are not as documented"
import sys
from confluent_kafka.admin import AdminClient, ConfigResource
bs, req, out, changelog = sys.argv[1:]
admin = AdminClient({"bootstrap.servers": bs})
md = admin.list_topics(timeout=30).topics
for name in (req, out, changelog):
    assert all(p.leader >= 0 for p in md[name].partitions.values()), name + ": a partition without a leader"
    print(name.rsplit("-", 1)[1], len(md[name].partitions), end=" ")
for f in admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, changelog)]).values():
    configs = f.result(30)
    print("cleanup.policy=" + configs["cleanup.policy"].value,
          "segment.bytes=" + configs["segment.bytes"].value)
EOF
  local want="requests 1 snapshots 1 changelog 4 cleanup.policy=compact segment.bytes=67108864"
  [ "$(cat "$work/topics")" = "$want" ] || fail "topics: $(cat "$work/topics"), expected $want"
  ok "partitions and configs: $want"
  streams_lines | kcat_produce "$input_topic"
  streams_lines | $reference --chunk-lines >"$work/expected"
  snapshot_caught_up "$work/caught-up" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  "$tally" snapshot --config "$conf" >"$work/actual" 2>>"$work/client.log" || fail "tally snapshot failed"
  expect_file "tally snapshot over the topics Tally created: equal to the reference" "$work/expected" "$work/actual"
  stop_tally TERM
  tally_pid=$b_pid
  stop_tally TERM
  ok "clean exit of both instances"

  # An input topic created after the start: waited for, said once as a message (no
  # warning), then counted exactly.
  id="e2e-late-$$-$(date +%s%N)"
  input_topic=$id-input group=$id output_topic=$id-snapshots requests_topic=$id-requests
  changelog_topic=$id-changelog
  group_conf "$conf"
  spawn_tally late "$conf"
  wait_for_line "$work/late.log" "input topic $input_topic does not exist yet" 60 >/dev/null \
    || fail "no 'does not exist yet' for the missing input topic"
  "$py" - "$bootstrap" "$input_topic" <<'EOF' || fail "cannot create the late input topic"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], 4, 1)]).values():
    f.result(30)
EOF
  streams_lines | kcat_produce "$input_topic"
  snapshot_caught_up "$work/late-caught-up" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  streams_counts >"$work/late-expected"
  expect_file "an input topic created after the start: counted exactly" "$work/late-expected" "$work/late-caught-up"
  stop_tally TERM
  if grep -n "WARNING.*$input_topic" "$work/late.log" >&2; then
    fail "warnings about the input topic that did not exist yet (above)"
  fi
  ok "no warning about the input topic while it did not exist"
}

test_windows_cli() {
  embedded_conf "[windows]" "enabled=true" "size_ms=60000" "bucket_ms=10000" "grace_ms=0" \
    "idle_ms=1000" "retain=10" "publish=false"
  start_tally run "$work/tally.conf"
  local t0 snap=("$tally" snapshot -b "$bootstrap" -c "$work/tally.conf" --timeout 30000)
  t0=$(( ($(date +%s) - 600) / 60 * 60000 )) # a whole minute, ten minutes ago
  # snap_check NAME EXPECTED_STDOUT EXPECTED_STDERR ARGS...: exit 0 and both outputs exact
  snap_check() {
    local name=$1 want_out=$2 want_err=$3 status=0
    shift 3
    "${snap[@]}" "$@" >"$work/w.out" 2>"$work/w.err" || status=$?
    [ "$status" = 0 ] && [ "$(cat "$work/w.out")" = "$want_out" ] && [ "$(cat "$work/w.err")" = "$want_err" ] \
      || fail "$name: exit $status; stdout: $(cat "$work/w.out"); stderr: $(cat "$work/w.err"); expected: $want_out / $want_err"
    ok "$name"
  }
  snap_check "--window last before any record: nothing, said on stderr" "" \
    "tally snapshot: no counts over time yet: no record has been counted in a window" --window last
  # Partition 0 only (the others go idle after idle_ms): two records in the minute at t0,
  # one in the next.
  "$py" - "$bootstrap" "$t0" <<'PYEOF' 2>>"$work/client.log" || fail "cannot produce the records"
import sys
from confluent_kafka import Producer
bs, t0 = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": bs})
for value, ts in (("kafka streams", t0 + 1000), ("kafka", t0 + 2000), ("apache", t0 + 61000)):
    p.produce("tally-input", value.encode(), partition=0, timestamp=ts)
assert p.flush(30) == 0
PYEOF
  snapshot_caught_up "$work/all-time"
  [ "$(cat "$work/all-time")" = "$(printf 'kafka 2\napache 1\nstreams 1')" ] \
    || fail "all-time counts: $(cat "$work/all-time")"
  local w0=$t0 w1=$((t0 + 60000)) w2=$((t0 + 120000)) w3=$((t0 + 180000))
  snap_check "--window current: the minute of the newest record" "apache 1" "" --window current
  snap_check "--window $w0 (a start): its two records" "$(printf 'kafka 2\nstreams 1')" "" --window "$w0"
  snap_check "--window last: the newest closed minute" "$(printf 'kafka 2\nstreams 1')" "" --window last
  "${snap[@]}" --window current --json >"$work/w.json" 2>>"$work/client.log" || fail "--window current --json failed"
  "$py" - "$work/w.json" "$w1" "$w2" <<'PYEOF' || fail "--json: window range not $w1 to $w2: $(grep window "$work/w.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert (s["window_start_ms"], s["window_end_ms"], s["counts"]) == (int(sys.argv[2]), int(sys.argv[3]), [["apache", 1]]), s
PYEOF
  ok "--window current --json: window_start_ms $w1, window_end_ms $w2, counts [[apache, 1]]"
  local from to
  from=$(date -u -d "@$((w2 / 1000))" +%Y-%m-%dT%H:%M:%SZ)
  to=$(date -u -d "@$((w3 / 1000))" +%Y-%m-%dT%H:%M:%SZ)
  snap_check "--window $w2 (no record in it): nothing, its range said on stderr" "" \
    "tally snapshot: no word counted in the window from $w2 to $w3 ms ($from to $to)" --window "$w2"
  from=$(date -u -d "@$((w1 / 1000))" +%Y-%m-%dT%H:%M:%SZ)
  to=$(date -u -d "@$((w2 / 1000))" +%Y-%m-%dT%H:%M:%SZ)
  snap_check "--window current --prefix zz: nothing kept, said so" "" \
    "tally snapshot: no word counted in the window from $w1 to $w2 ms ($from to $to) that --prefix and --min-count keep" \
    --window current --prefix zz
  snap_check "--prefix Kafka (all-time): no word, and the case-folded prefix suggested" "" \
    "tally snapshot: no word starts with 'Kafka': words are counted case-folded ([tokenizer] mode); try --prefix 'kafka'" \
    --prefix Kafka
  snap_check "--prefix kaf (all-time)" "kafka 2" "" --prefix kaf
  stop_tally TERM
}

# broker_outage restart|kill SECONDS: restarts the broker of this test (KAFKA_LOCAL_*):
# with `restart-broker` (SIGTERM, a controlled shutdown), or kill -9 then SECONDS away
# and `restart-broker`; prints how long its port refused connections (probed every 50 ms)
broker_outage() {
  (while :; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_LOCAL_PORT") 2>/dev/null; then echo "up $(date +%s%N)"; else echo "down $(date +%s%N)"; fi
    sleep 0.05
  done) >"$work/probe" &
  local probe=$! t0 t1
  pids+=("$probe")
  t0=$(date +%s%N)
  if [ "$1" = stop ]; then
    # Hung, not gone: its port still accepts connections, and nothing answers on them.
    kill -STOP "$(cat "$KAFKA_LOCAL_STATE/broker.pid")" || fail "no broker to stop"
    sleep "$2"
    kill -CONT "$(cat "$KAFKA_LOCAL_STATE/broker.pid")"
    kill "$probe"
    echo "broker stop: SIGSTOP for $2 s, then SIGCONT"
    return
  fi
  if [ "$1" = kill ]; then
    kill -9 "$(cat "$KAFKA_LOCAL_STATE/broker.pid")" || fail "no broker to kill"
    sleep "$2"
  fi
  "$root/deploy/kafka-local" restart-broker >>"$work/kafka-local.log" 2>&1 || fail "restart-broker failed"
  t1=$(date +%s%N)
  kill "$probe"
  echo "broker $1: $(((t1 - t0) / 1000000)) ms until it answered again;" \
    "its port refused connections for $(awk '$1 == "down" && !d {d = $2} $1 == "up" && d {print int(($2 - d) / 1000000); exit}' "$work/probe") ms"
}

# Two deployments (consumer groups) pointed at one changelog topic: the second is refused
# (exit 78, naming both groups) before it takes or writes anything, and the first's counts
# stay exact through its own restart.
test_real_shared_changelog() {
  real_setup
  local conf=$work/tally.conf other=$work/other.conf status=0
  group_conf "$conf"
  printf 'alpha beta\nalpha gamma\n' >"$work/a.txt"
  $reference --chunk-lines "$work/a.txt" >"$work/expected"
  start_tally a1 "$conf"
  # Records on partition 0 only: the other three changelog partitions are claimed all the
  # same (an owner record each), or another deployment could take them unseen.
  kcat_produce "$input_topic" -p 0 <"$work/a.txt"
  snapshot_caught_up "$work/actual" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  expect_file "the first deployment counted its input" "$work/expected" "$work/actual"
  stop_tally TERM
  local p
  for p in 0 1 2 3; do
    kcat -C -b "$bootstrap" -t "$changelog_topic" -p "$p" -o beginning -e -q -f '%k|%s\n' 2>>"$work/kcat-read.log" \
      | grep -a -q -x "$(printf '.\004|')$group" || fail "changelog partition $p has no owner record of $group"
  done
  ok "every changelog partition holds an owner record of $group, with records or without"
  # The other deployment: its own group, input, output and requests; the same changelog.
  $client topics -b "$bootstrap" "$input_topic-b:4" "$output_topic-b:1" "$requests_topic-b:1" \
    2>>"$work/client.log" || fail "cannot create the other topics"
  sed -e "s/^topics=.*/topics=$input_topic-b/" -e "s/^group_id=.*/group_id=$group-b/" \
    -e "s/^topic=$output_topic$/topic=$output_topic-b/" \
    -e "s/^topic=$requests_topic$/topic=$requests_topic-b/" "$conf" >"$other"
  printf 'delta\n' | kcat_produce "$input_topic-b"
  spawn_tally b "$other"
  wait_exit "$tally_pid" 600 || fail "the other deployment kept running on a shared changelog"
  wait "$tally_pid" || status=$?
  [ "$status" = 78 ] || fail "the other deployment exited with status $status, not 78: $(tail -n 3 "$work/b.log")"
  ok "the other deployment exited 78 (configuration)"
  grep -q "changelog topic $changelog_topic \[[0-3]\] holds the counts of consumer group '$group', and this instance is in group '$group-b'" "$work/b.out" "$work/b.log" \
    || fail "no message naming both groups: $(tail -n 3 "$work/b.log")"
  ok "the refusal names the changelog and both groups: $(grep -h -o "changelog topic $changelog_topic.*" "$work/b.out" "$work/b.log" | head -n 1 | cut -c1-160)"
  start_tally a2 "$conf"
  snapshot_caught_up "$work/actual2" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  expect_file "the first deployment restored its own counts only" "$work/expected" "$work/actual2"
  stop_tally TERM
}

# The broker restarted under a running Tally: a kafka-local of this test's own on free
# ports (the shared broker of the other real-broker cases is not touched).
test_real_broker_restart() {
  need_real_kafka
  local ports
  ports=$("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  export KAFKA_LOCAL_PORT=${ports% *} KAFKA_LOCAL_CONTROLLER_PORT=${ports#* }
  export KAFKA_LOCAL_STATE=$work/kafka
  own_broker=1
  "$root/deploy/kafka-local" start >>"$work/kafka-local.log" 2>&1 || fail "kafka-local start failed"
  TALLY_TEST_KAFKA_BOOTSTRAP=$("$root/deploy/kafka-local" bootstrap)
  real_setup
  local conf=$work/tally.conf
  group_conf "$conf"
  # A member that does not poll for 20 s leaves its group: checkpoints waiting on the
  # hung broker must not hold the source that long.
  echo "max.poll.interval.ms=20000" >>"$conf"
  sentence_lines >"$work/sotu.txt"
  $reference --chunk-lines "$work/sotu.txt" >"$work/expected"
  split -n l/60 -d -a 3 "$work/sotu.txt" "$work/piece."
  start_tally run "$conf"
  local run_pid=$tally_pid
  # 60 pieces 0.3 s apart (about 21 s, longer with the outages); the producer is
  # idempotent (KIP-98), so its retries across an outage write each record once, and -E
  # keeps kcat going while no broker answers.
  produce_paced 0 59 "$work/piece" -E -X enable.idempotence=true 2>>"$work/kcat.log" &
  local producer=$!
  pids+=("$producer")
  sleep 3
  # A clean restart (controlled shutdown), then a crash (kill -9) with the broker away
  # for 12 s, longer than the session timeout (6 s) and the checkpoint timeout (10 s):
  # the group drops Tally, whose checkpoint is then written while the broker is away.
  broker_outage restart 0
  kill -0 "$run_pid" 2>/dev/null || fail "tally exited during the broker restart"
  sleep 2
  # Hung for 60 s while records come: a checkpoint's transaction times out, its abort
  # too, and the replacement producer cannot initialise its transactions (30 s) before
  # the broker answers again; the checkpoints wait for it (tally run aborted on
  # "cannot create a new producer" there before).
  broker_outage stop 60
  sleep 5
  kill -0 "$run_pid" 2>/dev/null || fail "tally exited during the hung broker ($(grep -m1 -E 'ERROR|CRITICAL' "$work/run.log" | cut -c1-200))"
  if grep -q MAXPOLL "$work/run.log"; then
    fail "the source went unpolled past max.poll.interval.ms while the broker hung: $(grep -m1 MAXPOLL "$work/run.log" | cut -c1-200)"
  fi
  ok "the source kept polling within max.poll.interval.ms (20 s) through the hung broker"
  sleep 2
  broker_outage kill 12
  local t1 t2 t3
  t1=$(date +%s%N)
  kill -0 "$run_pid" 2>/dev/null || fail "tally exited during the broker crash"
  wait "$producer" || fail "the producer failed"
  t2=$(date +%s%N)
  snapshot_caught_up "$work/actual" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  t3=$(date +%s%N)
  # (the client's own start, about 3 s, is part of the first figure)
  expect_file "broker restarted and crashed mid-input: the caught-up snapshot equals the reference (the client had it $(((t3 - t2) / 1000000)) ms after the producer finished, $(((t3 - t1) / 1000000)) ms after the broker was back)" \
    "$work/expected" "$work/actual"
  kill -0 "$run_pid" 2>/dev/null || fail "tally is not the process that saw the outage"
  local outage
  outage=$(grep -c -E 'Connection refused|Disconnected|brokers are down|Broker transport failure' "$work/run.log" || true)
  [ "$outage" -gt 0 ] || fail "tally logged nothing about the outage"
  ok "tally kept running and logged the outage ($outage lines, first: $(grep -m1 -E 'Connection refused|Disconnected|brokers are down|Broker transport failure' "$work/run.log" | cut -c1-160))"
  echo "during the outages: $(grep -c -E 'checkpoint not acknowledged|checkpoint aborted|checkpoint not written' "$work/run.log" || true) checkpoints" \
    "not acknowledged, aborted or not begun, $(grep -c 'replacing the producer' "$work/run.log" || true) producers replaced," \
    "$(grep -c 'source: revoked' "$work/run.log" || true) revocations (session timeouts)"
  stop_tally TERM
  last_snapshot "$work/final" "$output_topic" || fail "cannot read the final snapshot"
  expect_file "the final snapshot after SIGTERM equals the reference" "$work/expected" "$work/final"
  start_tally run2 "$conf"
  snapshot_caught_up "$work/actual2" --input "$input_topic" --requests "$requests_topic" --output "$output_topic"
  expect_file "restarted from the changelog written across the outage: equal to the reference" \
    "$work/expected" "$work/actual2"
  stop_tally TERM
  ok "clean exit of the second run"
}

case "$mode" in
  streams-example) test_streams_example ;;
  clients) test_clients ;;
  sotu) test_sotu ;;
  bad-records) test_bad_records ;;
  signals) test_signals ;;
  bad-config) test_bad_config ;;
  interval) test_interval ;;
  start) test_start ;;
  bootstrap-server) test_bootstrap_server ;;
  restart-term) test_restart_embedded TERM ;;
  restart-kill) test_restart_embedded KILL ;;
  two-instances) test_two_instances ;;
  real-restart) test_real_restart ;;
  real-two-instances) test_real_two_instances ;;
  real-kill-loop) test_real_kill_loop ;;
  real-broker-restart) test_real_broker_restart ;;
  real-shared-changelog) test_real_shared_changelog ;;
  real-fresh-topics) test_real_fresh_topics ;;
  windows-cli) test_windows_cli ;;
  real-cooperative)
    # The same with the cooperative-sticky assignor (KIP-429): incremental rebalances.
    export TALLY_KAFKA_PARTITION_ASSIGNMENT_STRATEGY=cooperative-sticky
    test_real_two_instances
    ;;
  *) sed -n '2,67p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
