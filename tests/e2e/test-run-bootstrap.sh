#!/usr/bin/env bash
# `tally run --bootstrap-server HOST:PORT` against a `tally broker` of its own: the option
# overrides [kafka] bootstrap.servers of the file (here a port nothing listens on), so Tally
# starts no embedded broker (no `bootstrap.servers=` line on standard output, no "embedded
# broker" in its log) and consumes from the given broker: the Kafka Streams example lines
# produced with kcat are read back with `tally snapshot -b` as kafka 3, streams 2 and 1 for
# each other word. Also: an empty --bootstrap-server is a usage error (exit 2) and a bad
# configuration still exits 78.
#
# Needs TALLY_EXE (set by meson test) or a build in ./build. Exit 0 means every check passed.
set -euo pipefail

root=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tally=${TALLY_EXE:-$root/build/tally}

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-e2e-bootstrap.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log "$work"/*.out; do
    [ -f "$f" ] || continue
    echo "--- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}
ok() { echo "ok: $*"; }

# wait_for_line FILE REGEX SECONDS: prints the first matching line
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Usage and configuration errors come before any broker is looked for.
status=0
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
"$tally" broker >"$work/broker.out" 2>"$work/broker.log" &
pids+=("$!")
line=$(wait_for_line "$work/broker.out" '^bootstrap.servers=' 30) || fail "tally broker printed no address"
bootstrap=${line#bootstrap.servers=}
cat >"$work/tally.conf" <<'CONF'
[kafka]
bootstrap.servers=127.0.0.1:9
[input]
topics=tally-input
[checkpoint]
interval_ms=500
CONF

"$tally" run --config "$work/tally.conf" -b "$bootstrap" >"$work/run.out" 2>"$work/run.log" &
tally_pid=$!
pids+=("$tally_pid")
for ((i = 0; i < 600; i++)); do
  grep -q 'source: assigned' "$work/run.log" && break
  kill -0 "$tally_pid" 2>/dev/null || fail "tally run -b exited while starting"
  sleep 0.1
done
grep -q 'source: assigned' "$work/run.log" || fail "tally run -b never got its partitions from $bootstrap"
ok "tally run -b $bootstrap got its partitions"
grep -q 'embedded broker' "$work/run.log" && fail "tally run -b started an embedded broker"
[ -s "$work/run.out" ] && fail "tally run -b printed on standard output: $(head -n1 "$work/run.out")"
ok "no embedded broker: nothing on standard output, none in the log"

printf 'Apache   Kafka Streams   Example\nUsing  \t\t Kafka   Streams\tTest Utils\nReading and Writing Kafka Topic\n' \
  | kcat -P -X sticky.partitioning.linger.ms=0 -b "$bootstrap" -t tally-input 2>>"$work/kcat.log"
cat >"$work/expected" <<'EOF2'
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
EOF2
# A snapshot may come before the records are consumed: ask until the counts are all there
# (at most 60 tries); the assertion is on the exact counts, not on the time taken.
for ((i = 0; i < 60; i++)); do
  "$tally" snapshot --config "$work/tally.conf" -b "$bootstrap" --timeout 10000 \
    >"$work/actual" 2>>"$work/snapshot.log" || fail "tally snapshot -b exited $?"
  cmp -s "$work/expected" "$work/actual" && break
  sleep 1
done
if ! cmp -s "$work/expected" "$work/actual"; then
  diff "$work/expected" "$work/actual" | head -n 20 >&2 || true
  fail "tally snapshot -b: not the Kafka Streams example counts"
fi
ok "consumed from $bootstrap: kafka 3, streams 2, 1 each other word"

kill -TERM "$tally_pid"
status=0
wait "$tally_pid" || status=$?
[ "$status" = 0 ] || fail "tally run -b exited with status $status after SIGTERM"
ok "clean exit after SIGTERM"
