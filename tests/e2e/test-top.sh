#!/usr/bin/env bash
# `tally snapshot --top N` / `--min-count N` over several `tally run` instances in one
# consumer group (on `tally broker`) is exact: it equals the first lines of the merged full
# snapshot (count descending, then word bytes: ties included), while the instances ship only
# what the rounds of tally-top-query.h ask for.
#
#   test-top.sh 2     two instances      test-top.sh 3     three instances
#
# Input: skewed (word wI counted about 3000/(I+1) times) plus uniform words that tie (u0 ..
# u499, 3 times each), in records of 20 words dealt to the 4 input partitions at random, so
# every word's count is split between the instances.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
n=${1:-2}
e2e_init "tally-e2e-top-$n"

start_broker
cat >"$work/tally.conf" <<EOF
[input]
topics=tally-input
group_id=tally
[checkpoint]
interval_ms=1000
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
EOF

for ((i = 0; i < n; i++)); do
  start_tally "i$i" "$work/tally.conf"
done
# Every member has its share once every log but the last says it gave partitions up.
for ((i = 0; i < n - 1; i++)); do
  wait_for_line "$work/i$i.log" 'source: revoked' 60 >/dev/null || fail "instance $i gave nothing up"
done

awk 'BEGIN {
  srand(14)
  for (i = 0; i < 300; i++) for (k = 0; k < int(3000 / (i + 1)); k++) w[n++] = "w" i
  for (i = 0; i < 500; i++) for (k = 0; k < 3; k++) w[n++] = "u" i
  for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = w[i]; w[i] = w[j]; w[j] = t }
  for (i = 0; i < n; i++) printf "%s%s", w[i], (i % 20 == 19 || i == n - 1) ? "\n" : " "
}' >"$work/input"
total=$(wc -w <"$work/input")
kcat_produce tally-input -p -1 <"$work/input"

# Caught up: the merged full snapshot holds every word produced.
for ((i = 0; i < 120; i++)); do
  "$tally" snapshot -c "$work/tally.conf" >"$work/full" 2>>"$work/client.log" || true
  [ "$(awk '{ s += $2 } END { print s + 0 }' "$work/full")" = "$total" ] && break
  sleep 0.5
done
[ "$(awk '{ s += $2 } END { print s + 0 }' "$work/full")" = "$total" ] || fail "not every word was counted"
ok "$n instances counted all $total words"

# check NAME FILTER -- SNAPSHOT_ARGS...: `tally snapshot ARGS` equals FILTER applied to the
# merged full snapshot
check() {
  local name=$1 filter=$2
  shift 3
  bash -c "$filter" <"$work/full" >"$work/expected"
  G_MESSAGES_DEBUG=all "$tally" snapshot -c "$work/tally.conf" "$@" >"$work/actual" 2>"$work/rounds.log" \
    || fail "$name: tally snapshot $* failed"
  cat "$work/rounds.log" >>"$work/client.log"
  expect_file "$name ($(grep -o '[0-9]* round(s)' "$work/rounds.log"))" "$work/expected" "$work/actual"
}
check "top 1" "head -n 1" -- --top 1
check "top 10" "head -n 10" -- --top 10
check "top 100" "head -n 100" -- --top 100
check "top 350 (the boundary falls in the ties of count 3)" "head -n 350" -- --top 350
check "min-count 40" "awk '\$2 >= 40'" -- --min-count 40
check "top 10 with min-count 200" "awk '\$2 >= 200' | head -n 10" -- --top 10 --min-count 200
check "top 5 with prefix u" "grep '^u' | head -n 5" -- --top 5 --prefix u
grep -q '3 round(s)' "$work/client.log" || fail "no query took the three rounds"
ok "a top N over $n instances takes three rounds"

# Another instance with other input topics (its own group and changelog, the same request
# and output topics) answers every request too: its replies are left out, with one
# warning per instance and command, and each configuration gets exactly its own counts.
cat >"$work/other.conf" <<EOF2
[input]
topics=tally-other
group_id=tally-other
[checkpoint]
interval_ms=1000
changelog_topic=tally-other-changelog
[kafka]
bootstrap.servers=$bootstrap
session.timeout.ms=6000
EOF2
start_tally other "$work/other.conf"
for ((i = 0; i < 500; i++)); do echo "w0 w1 zz-other"; done | kcat_produce tally-other -p -1
printf 'w0 500\nw1 500\nzz-other 500\n' >"$work/other-expected"
for ((i = 0; i < 120; i++)); do
  "$tally" snapshot -c "$work/other.conf" >"$work/other-full" 2>>"$work/client.log" || true
  cmp -s "$work/other-expected" "$work/other-full" && break
  sleep 0.5
done
expect_file "the instance counting tally-other alone" "$work/other-expected" "$work/other-full"
# The other instance's reply may come after the answer is complete (then no warning):
# ask until one run saw it; every run must print exactly the full snapshot.
warned=0
for ((i = 0; i < 20 && warned == 0; i++)); do
  "$tally" snapshot -c "$work/tally.conf" >"$work/full-again" 2>"$work/foreign.log" \
    || fail "tally snapshot with a foreign instance failed: $(cat "$work/foreign.log")"
  cat "$work/foreign.log" >>"$work/client.log"
  cmp -s "$work/full" "$work/full-again" \
    || fail "run $i: the full snapshot changed with another instance answering: $(diff "$work/full" "$work/full-again" | head -5)"
  warned=$(grep -c 'ignored the replies of instance .*: it counts topic tally-other, which \[input\] topics does not name' "$work/foreign.log" || true)
  [ "$warned" -le 1 ] || fail "more than one warning about one instance: $(cat "$work/foreign.log")"
done
[ "$warned" = 1 ] || fail "no warning about the instance counting tally-other in $i snapshots"
ok "the full snapshot, another instance answering too, in $i run(s); its replies left out with one warning"
check "top 10, another instance answering too" "head -n 10" -- --top 10
check "top 350, another instance answering too" "head -n 350" -- --top 350
