#!/usr/bin/env bash
# actors.sh — Tally's actor runtime against CAF 0.17 and actix 0.13 (Rust), the same programs
# in all three (bench-actors.c, bench-caf.cpp, actix/src/main.rs), measured in one run,
# printed as one table.
#
# Usage: tests/bench/actors.sh [BUILD_DIR]     (default: build)
# Environment: MESSAGES (per tell case, default 10000000), ROUNDS (ping-pong round trips,
# default 100000), RUNS (runs per case, the median is kept; default 3).
#
# actix is built here with cargo from tests/bench/actix (Cargo.lock pins every crate) into
# BUILD_DIR/actix: offline when the crates are already in cargo's cache, else fetched from
# crates.io. Without cargo, or when the build fails, the actix column is left empty with a
# message. actix has no batched tell (no call enqueues several messages at once).
#
# Targets (issue 2): batched tell at least 3x CAF's two-senders throughput; ping-pong
# round trip no slower than CAF's. Issue 17: Tally's batched tell from 2 senders at least
# 3x actix's best tell from 2 senders into 1 mailbox; an ask round trip across threads no
# slower than actix's.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}
messages=${MESSAGES:-10000000}
rounds=${ROUNDS:-100000}
runs=${RUNS:-3}
tally_bin=$build/tests/bench/bench-actors
caf_bin=$build/tests/bench/bench-caf
actix_dir=tests/bench/actix
actix_bin=$build/actix/release/bench-actix

if [ ! -x "$tally_bin" ]; then
  echo "actors.sh: $tally_bin not built; run 'meson compile -C $build'" >&2
  exit 1
fi

args=(--messages "$messages" --rounds "$rounds" --runs "$runs")
tally_out=$(mktemp)
caf_out=$(mktemp)
actix_out=$(mktemp)
trap 'rm -f "$tally_out" "$caf_out" "$actix_out"' EXIT

# actix: cargo build (a no-op when up to date).
actix_version=
rust_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p' || true)
if ! command -v cargo >/dev/null; then
  echo "actors.sh: cargo not found (Rust >= 1.85 from rustup; see scripts/setup);" \
    "actix column left empty" >&2
  actix_bin=
elif [ "${rust_minor:-0}" -lt 85 ]; then
  echo "actors.sh: $(rustc --version 2>/dev/null || echo 'no rustc') is older than the 1.85" \
    "that $actix_dir/Cargo.lock needs (Debian bookworm's is 1.63); actix column left empty" >&2
  actix_bin=
else
  cargo_args=(build --release --locked --quiet --manifest-path "$actix_dir/Cargo.toml"
    --target-dir "$build/actix")
  echo "actix: cargo ${cargo_args[*]}" >&2
  if ! cargo "${cargo_args[@]}" --offline 2>/dev/null && ! cargo "${cargo_args[@]}"; then
    echo "actors.sh: building $actix_dir failed (see above); actix column left empty" >&2
    actix_bin=
  else
    actix_version=$(awk '/^name = "actix"$/ { getline; gsub(/[^0-9.]/, ""); print }' \
      "$actix_dir/Cargo.lock")
  fi
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "Tally ($tally_bin)..." >&2
"$tally_bin" "${args[@]}" >"$tally_out"
if [ -x "$caf_bin" ]; then
  echo "CAF ($caf_bin)..." >&2
  "$caf_bin" "${args[@]}" >"$caf_out"
else
  echo "actors.sh: $caf_bin not built (libcaf-dev missing?); CAF column left empty" >&2
fi
if [ -n "$actix_bin" ]; then
  echo "actix ($actix_bin)..." >&2
  # One process per case: a case that fails (bench-actix gives up on a run after 120 s)
  # leaves only its own column empty.
  for case in tell-1-unbatched tell-1-batched tell-2-senders tell-2-vec pingpong ask; do
    if ! "$actix_bin" "${args[@]}" --case "$case" >>"$actix_out"; then
      echo "actors.sh: bench-actix --case $case failed (see above); left empty" >&2
    fi
  done
fi

echo
echo "Actor runtime: Tally vs CAF $(dpkg-query -W -f='${Version}' libcaf-dev 2>/dev/null || echo '?')" \
  "and actix ${actix_version:-(not built)} ($(rustc --version 2>/dev/null | cut -d' ' -f1-2 || echo 'no rustc'))," \
  "$(nproc) CPUs, load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end," \
  "$messages messages, $rounds round trips," \
  "median of $runs"
awk -v tally="$tally_out" -v caf="$caf_out" -v actix="$actix_out" '
  function ratio(a, b) { return (a != "" && b != "" && b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
  function show(v) { return v == "" ? "-" : v }
  BEGIN {
    while ((getline line < tally) > 0) { split(line, f, " "); t[f[1]] = f[3]; unit[f[1]] = f[2] }
    while ((getline line < caf) > 0) { split(line, f, " "); c[f[1]] = f[3] }
    while ((getline line < actix) > 0) { split(line, f, " "); x[f[1]] = f[3] }
    # actix best tell from 2 senders: its only per-message tell path (do_send) from 2 threads.
    x["best-tell-2"] = x["tell-2-senders"]
    # row label | Tally case | CAF case | actix case
    n = split("tell, 1 sender, unbatched|tell-1-unbatched|tell-1-unbatched|tell-1-unbatched;" \
              "tell, 1 sender, batched (tell_many)|tell-1-batched|tell-1-unbatched|tell-1-unbatched;" \
              "tell, 2 senders, 1 mailbox|tell-2-senders|tell-2-senders|tell-2-senders;" \
              "tell, 2 senders, batched (tell_many)|tell-2-batched|tell-2-senders|best-tell-2;" \
              "batched tell vs 2 senders|tell-1-batched|tell-2-senders|best-tell-2;" \
              "ping-pong, 2 arbiters (tells)|pingpong|pingpong|pingpong;" \
              "ping-pong, 2 threads each|pingpong|pingpong-2-threads|pingpong;" \
              "ping-pong, 1 arbiter vs CAF scheduler|pingpong-1-thread|pingpong|-;" \
              "ask round trip, 2 threads|ask|-|ask", rows, ";")
    printf "%-40s %-14s %12s %12s %12s %9s %9s\n", "case", "unit", "Tally", "CAF", "actix", "Tally/CAF", "Tally/actix"
    for (i = 1; i <= n; i++) {
      split(rows[i], r, "|")
      tv = t[r[2]]; cv = (r[3] == "-") ? "" : c[r[3]]; xv = (r[4] == "-") ? "" : x[r[4]]
      printf "%-40s %-14s %12s %12s %12s %9s %9s\n", r[1], unit[r[2]], show(tv), show(cv), show(xv), ratio(tv, cv), ratio(tv, xv)
    }
    if (x["tell-2-vec"] != "")
      printf "(actix, 2 senders, each message a Vec of 1024 numbers handled in one call: %s numbers/s; batching by the application, not the mailbox)\n", x["tell-2-vec"]
    print ""
    if (c["tell-2-senders"] != "") {
      b = t["tell-1-batched"] / c["tell-2-senders"]
      printf "target: batched tell >= 3x CAF 2 senders:          %.2fx  %s\n", b, (b >= 3 ? "met" : "NOT met")
      p = t["pingpong"] / c["pingpong"]
      printf "target: ping-pong no slower than CAF:             %.2fx CAF time  %s\n", p, (p <= 1 ? "met" : "NOT met")
    }
    if (x["tell-2-senders"] != "") {
      b = t["tell-2-batched"] / x["best-tell-2"]
      printf "goal: batched tell, 2 senders -> 1 mailbox, / actix best tell, 2 senders:  %.2fx  %s (>= 3x)\n", b, (b >= 3 ? "met" : "NOT met")
    }
    if (x["ask"] != "") {
      p = t["ask"] / x["ask"]
      printf "goal: ask round trip across threads / actix:                              %.2fx  %s (<= 1.0x)\n", p, (p <= 1 ? "met" : "NOT met")
    }
  }'
