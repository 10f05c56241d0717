#!/usr/bin/env bash
# actors.sh — Tally's actor runtime against CAF 0.17, the same programs in both
# (bench-actors.c, bench-caf.cpp), measured in one run, printed as one table.
#
# Usage: tests/bench/actors.sh [BUILD_DIR]     (default: build)
# Environment: MESSAGES (per tell case, default 10000000), ROUNDS (ping-pong round trips,
# default 100000), RUNS (runs per case, the median is kept; default 3).
#
# Targets (issue 2): batched tell at least 3x CAF's two-senders throughput; ping-pong
# round trip no slower than CAF's.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}
messages=${MESSAGES:-10000000}
rounds=${ROUNDS:-100000}
runs=${RUNS:-3}
tally_bin=$build/tests/bench/bench-actors
caf_bin=$build/tests/bench/bench-caf

if [ ! -x "$tally_bin" ]; then
  echo "actors.sh: $tally_bin not built; run 'meson compile -C $build'" >&2
  exit 1
fi

args=(--messages "$messages" --rounds "$rounds" --runs "$runs")
tally_out=$(mktemp)
caf_out=$(mktemp)
trap 'rm -f "$tally_out" "$caf_out"' EXIT

echo "Tally ($tally_bin)..." >&2
"$tally_bin" "${args[@]}" >"$tally_out"
if [ -x "$caf_bin" ]; then
  echo "CAF ($caf_bin)..." >&2
  "$caf_bin" "${args[@]}" >"$caf_out"
else
  echo "actors.sh: $caf_bin not built (libcaf-dev missing?); CAF column left empty" >&2
fi

echo
echo "Actor runtime: Tally vs CAF $(dpkg-query -W -f='${Version}' libcaf-dev 2>/dev/null || echo '?')," \
  "$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $messages messages, $rounds round trips," \
  "median of $runs"
awk -v tally="$tally_out" -v caf="$caf_out" '
  BEGIN {
    while ((getline line < tally) > 0) { split(line, f, " "); t[f[1]] = f[3]; unit[f[1]] = f[2] }
    while ((getline line < caf) > 0) { split(line, f, " "); c[f[1]] = f[3] }
    # row label | Tally case | CAF case
    n = split("tell, 1 sender, unbatched|tell-1-unbatched|tell-1-unbatched;" \
              "tell, 1 sender, batched (tell_many)|tell-1-batched|tell-1-unbatched;" \
              "tell, 2 senders, 1 mailbox|tell-2-senders|tell-2-senders;" \
              "batched tell vs CAF 2 senders|tell-1-batched|tell-2-senders;" \
              "ping-pong, 2 arbiters vs CAF scheduler|pingpong|pingpong;" \
              "ping-pong, 2 threads each|pingpong|pingpong-2-threads;" \
              "ping-pong, 1 arbiter vs CAF scheduler|pingpong-1-thread|pingpong", rows, ";")
    printf "%-40s %-14s %14s %14s %10s\n", "case", "unit", "Tally", "CAF", "Tally/CAF"
    for (i = 1; i <= n; i++) {
      split(rows[i], r, "|")
      tv = t[r[2]]; cv = c[r[3]]
      ratio = (tv != "" && cv != "" && cv + 0 > 0) ? sprintf("%.2f", tv / cv) : "-"
      printf "%-40s %-14s %14s %14s %10s\n", r[1], unit[r[2]], tv, (cv == "" ? "-" : cv), ratio
    }
    print ""
    if (c["tell-2-senders"] != "") {
      b = t["tell-1-batched"] / c["tell-2-senders"]
      printf "target: batched tell >= 3x CAF 2 senders:   %.2fx  %s\n", b, (b >= 3 ? "met" : "NOT met")
      p = t["pingpong"] / c["pingpong"]
      printf "target: ping-pong no slower than CAF:      %.2fx CAF time  %s\n", p, (p <= 1 ? "met" : "NOT met")
    }
  }'
