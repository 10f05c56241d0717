#!/usr/bin/env bash
# The documents say what the code does (issue 13, item 14):
#   - LICENSE exists (MIT, Copyright the Tally authors), as the sources' SPDX lines say;
#   - no file cites a document that is not in the repository (DESIGN.md);
#   - docs/configuration.md on [tokenizer] nfkc and record mode, checked against tally count;
#   - docs/running.md on the partitions `tally broker` gives every topic, against the broker;
#   - the README's plugin example, run as written (its port moved to a free one).
#
# Needs TALLY_EXE, TALLY_SOURCE_ROOT and TALLY_RDKAFKA_PLUGIN (set by meson test); the
# example needs kcat (exit 77 when it is missing). Exit 0 when every check passed.
set -uo pipefail

tally=${TALLY_EXE:?}
root=${TALLY_SOURCE_ROOT:?}
plugin=${TALLY_RDKAFKA_PLUGIN:?} # the README names build/libtally-rdkafka.so: the same file
[ -f "$plugin" ] || { echo "no plugin at $plugin" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C.UTF-8
unset TALLY_CONFIG
failures=0
ok() { echo "ok $1"; }
fail() {
  echo "FAIL $1" >&2
  failures=$((failures + 1))
}

# --- LICENSE ---------------------------------------------------------------------------------
if grep -qx 'MIT License' "$root/LICENSE" 2>/dev/null && grep -qx 'Copyright the Tally authors' "$root/LICENSE"; then
  ok "LICENSE: MIT, Copyright the Tally authors"
else fail "LICENSE missing or not MIT"; fi

# --- cited documents exist -----------------------------------------------------------------
if git -C "$root" ls-files >/dev/null 2>&1; then
  cited=$(git -C "$root" grep -l 'DESIGN\.md' -- '*.c' '*.h' '*.md' 2>/dev/null || true)
  if [ -n "$cited" ] && [ ! -f "$root/DESIGN.md" ] && [ ! -f "$root/docs/DESIGN.md" ]; then
    fail "DESIGN.md is cited by $(echo "$cited" | tr '\n' ' ')but is not in the repository"
  else ok "no citation of a missing DESIGN.md"; fi
fi

# --- [tokenizer] nfkc in every mode; record mode counts lines ---------------------------------
printf '[tokenizer]\nnfkc=true\n' >"$tmp/nfkc.conf"
printf '\xef\xac\x81le \xef\xbc\xab\xef\xbd\x81\xef\xbd\x86\xef\xbd\x8b\xef\xbd\x81\n' >"$tmp/nfkc.txt"
got=$("$tally" count -c "$tmp/nfkc.conf" --tokenizer whitespace "$tmp/nfkc.txt" | tr '\n' '|')
[ "$got" = "file 1|kafka 1|" ] && ok "nfkc applies in whitespace mode" || fail "nfkc in whitespace mode: $got"
got=$("$tally" count -c "$tmp/nfkc.conf" --tokenizer record "$tmp/nfkc.txt" | tr '\n' '|')
[ "$got" = "file Kafka 1|" ] && ok "nfkc applies in record mode" || fail "nfkc in record mode: $got"
grep -q '`nfkc` | boolean | `false` | | NFKC-normalise the text .* in every mode' "$root/docs/configuration.md" \
  && ok "docs/configuration.md: nfkc in every mode" || fail "docs/configuration.md: nfkc row"
got=$(printf 'new york\nlos angeles\nnew york\n' | "$tally" count -c /dev/null --tokenizer record | tr '\n' '|')
[ "$got" = "new york 2|los angeles 1|" ] && ok "record mode: one word per line" || fail "record mode: $got"
grep -q '`record`: each line of a record' "$root/docs/configuration.md" \
  && ok "docs/configuration.md: record mode counts lines" || fail "docs/configuration.md: record mode row"

# --- tally broker's partitions -------------------------------------------------------------------
# Not broker.out: the README example below waits for that file's bootstrap.servers line in
# the same directory, and a stale one let it produce before its own broker listened.
"$tally" broker -c /dev/null >"$tmp/partitions-broker.out" 2>"$tmp/broker.err" &
pids+=($!)
for _ in $(seq 100); do grep -q 'running until' "$tmp/broker.err" && break; sleep 0.1; done
cat >"$tmp/want" <<'EOF'
tally broker: topic tally-input: 4 partitions
tally broker: topic tally-snapshots: 4 partitions
tally broker: topic tally-requests: 4 partitions
tally broker: topic tally-changelog: 4 partitions
EOF
if grep 'partitions$' "$tmp/broker.err" | diff -u "$tmp/want" - && grep -q 'the request and output topics included' "$root/docs/running.md"; then
  ok "tally broker: every topic with [broker] partitions (4), as docs/running.md says"
else fail "tally broker partitions vs docs/running.md"; fi
kill "${pids[0]}"

# --- the README's plugin example, as written -----------------------------------------------------
if ! command -v kcat >/dev/null; then
  echo "kcat is not installed: the README example is not checked" >&2
  [ "$failures" -eq 0 ] && exit 77 || exit 1
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build=$(dirname "$tally")
awk '/^# A broker to try it on/,/^```$/' "$root/README.md" | grep -v '^```' |
  sed -e "s|build/|$build/|g" -e "s|9092|$port|g" >"$tmp/example.sh"
if ! grep -q 'kcat -b localhost' "$tmp/example.sh"; then
  fail "README: the plugin example was not found"
else
  # The snapshot is the last line; run it after the rest, as a reader would, a little later.
  # The reader's `sleep 8` before it is this script's wait below: without it, the pids of
  # the broker and kcat are written at once, before they are killed (a leftover `tally
  # broker` outlived the suite when they were written 8 s late).
  head -n -1 "$tmp/example.sh" | grep -v '^sleep 8' >"$tmp/setup.sh"
  tail -n 1 "$tmp/example.sh" | sed 's/#.*//' >"$tmp/ask.sh"
  (cd "$tmp" && exec bash -c 'set -m; . ./setup.sh; echo "$(jobs -p)" >pids; wait') >"$tmp/example.out" 2>"$tmp/example.err" &
  pids+=($!)
  # A snapshot reflects what kcat has consumed when the request arrives: ask once kcat says
  # it reached the end of each of the 4 partitions (as a reader would see it go by).
  for _ in $(seq 300); do
    [ "$(grep -c 'Reached end of topic articles' "$tmp/example.err")" -ge 4 ] && break
    sleep 0.1
  done
  cat >"$tmp/want" <<'EOF'
kafka 2
streams 1
tally 1
words 1
EOF
  (cd "$tmp" && timeout 60 bash ./ask.sh >"$tmp/ask.out" 2>"$tmp/ask.err"); echo "snapshot exit status $?" >>"$tmp/ask.err"
  if diff -u "$tmp/want" "$tmp/ask.out"; then
    ok "README plugin example: tally snapshot completes with the counts"
  else
    fail "README plugin example"; cat "$tmp/ask.sh" "$tmp/ask.err" >&2; sed "s/^/  /" "$tmp/example.err" | tail -20 >&2
  fi
  for _ in $(seq 100); do [ -s "$tmp/pids" ] && break; sleep 0.1; done
  for p in $(cat "$tmp/pids" 2>/dev/null); do kill "$p" 2>/dev/null; done
fi

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "all checks passed"
