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
root=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tally=${TALLY_EXE:-$root/build/tally}
plugin=${TALLY_RDKAFKA_PLUGIN:-$root/build/libtally-rdkafka.so}
py=/usr/bin/python3 # Debian's, with python3-confluent-kafka
client="$py $root/tests/e2e/tally_client.py"
reference="$py $root/tests/reference/wordcount.py"

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-e2e-plugin.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}
ok() { echo "ok: $*"; }

expect_file() { # NAME EXPECTED ACTUAL
  if ! cmp -s "$2" "$3"; then
    echo "--- diff expected actual (first 20 lines)" >&2
    diff "$2" "$3" | head -n 20 >&2 || true
    fail "$1"
  fi
  ok "$1"
}

wait_for_line() { # FILE REGEX SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

command -v kcat >/dev/null || fail "kcat is not installed (scripts/setup installs it)"
[ -f "$plugin" ] || fail "no plugin module at $plugin"

id="plugin-$$-$(date +%s%N)"
input=$id-input output=$id-snapshots requests=$id-requests

case "$mode" in
embedded)
  "$tally" broker --partitions 2 -t "$input,$output,$requests" >"$work/broker.out" 2>"$work/broker.log" &
  pids+=("$!")
  line=$(wait_for_line "$work/broker.out" '^bootstrap.servers=' 30) || fail "tally broker printed no address"
  bootstrap=${line#bootstrap.servers=}
  ;;
real)
  if [ -z "${TALLY_TEST_KAFKA_BOOTSTRAP:-}" ]; then
    [ "${TALLY_TEST_REQUIRE_KAFKA:-0}" = 1 ] && fail "TALLY_TEST_REQUIRE_KAFKA=1 but TALLY_TEST_KAFKA_BOOTSTRAP is not set"
    echo "skip: no real broker (TALLY_TEST_KAFKA_BOOTSTRAP is not set; scripts/check starts one)"
    exit 77
  fi
  bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
  "$py" - "$bootstrap" "$input" "$output" "$requests" <<'EOF' || fail "cannot create the topics"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bs, inp, out, req = sys.argv[1:5]
admin = AdminClient({"bootstrap.servers": bs})
for f in admin.create_topics([NewTopic(inp, 2, 1), NewTopic(out, 1, 1), NewTopic(req, 1, 1)]).values():
    f.result(30)
EOF
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

# kcat with the plugin: plugin.library.paths first, then the tally.* properties.
kcat -C -b "$bootstrap" -t "$input" -o beginning -q -u \
  -X plugin.library.paths="$plugin" -X tally.config="$work/tally.conf" \
  >"$work/consumed" 2>"$work/kcat.log" &
kcat_pid=$!
pids+=("$kcat_pid")
wait_for_line "$work/kcat.log" 'tally plugin .*counting words' 30 >/dev/null || fail "the plugin did not attach to kcat"
ok "the plugin attached to kcat's consumer"

$client snapshot -b "$bootstrap" --input "$input" --requests "$requests" --output "$output" \
  --caught-up --timeout 120 >"$work/actual" 2>>"$work/client.log" || fail "no caught-up snapshot"
expect_file "snapshot on request equals the reference counts of the $records input lines kcat consumed" \
  "$work/expected" "$work/actual"
# kcat's own output is untouched (empty values aside, which it prints as empty lines).
grep -av '^$' "$work/input" | LC_ALL=C sort >"$work/input-sorted" || true
grep -av '^$' "$work/consumed" | LC_ALL=C sort >"$work/consumed-sorted" || true
expect_file "kcat itself printed every record as without the plugin" "$work/input-sorted" "$work/consumed-sorted"

# SIGTERM: kcat closes and destroys its consumer, the plugin publishes its final snapshot.
kill -TERM "$kcat_pid"
status=0
wait "$kcat_pid" || status=$?
[ "$status" = 0 ] || [ "$status" = 143 ] || fail "kcat exited with status $status"
grep -q 'tally plugin .*final snapshot .* published' "$work/kcat.log" || fail "no final snapshot was published"
kcat -C -b "$bootstrap" -t "$output" -o beginning -e -q -D '\n' >"$work/snapshots" 2>>"$work/kcat-read.log"
"$py" - "$work/snapshots" >"$work/final" <<'EOF' || fail "cannot read the final snapshot"
import collections, json, sys
parts = collections.defaultdict(dict)
for line in open(sys.argv[1], encoding="utf-8"):
    if not line.strip():
        continue
    p = json.loads(line)
    # Requests from tally_client.py have ids "e2e-..."; the final snapshot's is generated.
    if not p["request_id"].startswith("e2e-"):
        parts[p["snapshot_id"]][p["part"]] = p
assert len(parts) == 1, "%d final snapshots" % len(parts)
last = next(iter(parts.values()))
assert len(last) == next(iter(last.values()))["parts"], "final snapshot incomplete"
counts = collections.Counter()
for p in last.values():
    for w, n in p["counts"]:
        counts[w] += n
for w, n in sorted(((w.encode(), n) for w, n in counts.items()), key=lambda kv: (-kv[1], kv[0])):
    sys.stdout.buffer.write(b"%s %d\n" % (w, n))
EOF
expect_file "the final snapshot published when kcat exited equals the reference counts" \
  "$work/expected" "$work/final"
