#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] — builds the libFuzzer targets with clang (address and
# undefined sanitizers) in build-fuzz/ and runs each for SECONDS (default 20), one after
# the other, starting from the seed corpus in tests/fuzz/corpus/<target>/.
#
# New inputs go to build-fuzz/fuzz-corpus/<target>/ (the seeds stay as committed); a crash
# leaves build-fuzz/fuzz-artifacts/<target>/crash-* and the script exits 1.
# Environment: BUILD_DIR (default build-fuzz), FUZZ_TARGETS (default: all four),
# FUZZ_JOBS (parallel jobs per target, default 1), FUZZ_ARGS (more libFuzzer flags).
# For hours: tests/fuzz/run.sh 14400   (4 hours per target), see tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-20}
build=${BUILD_DIR:-build-fuzz}
targets=${FUZZ_TARGETS:-tokenizer config request snapshot-part}
jobs=${FUZZ_JOBS:-1}

command -v clang >/dev/null || { echo "fuzz: clang is not installed (scripts/setup)" >&2; exit 77; }
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
fi
meson compile -C "$build" $(for t in $targets; do printf 'tests/fuzz/fuzz-%s ' "$t"; done)

# Leaks are reported by LeakSanitizer at the end of each input; GLib keeps a few
# process-wide caches (type system, quarks) that are not leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export G_SLICE=always-malloc G_DEBUG=gc-friendly

status=0
for t in $targets; do
  corpus="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  echo "== fuzz-$t for ${seconds}s"
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  set +e
  "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${parallel[@]}" ${FUZZ_ARGS:-} "$corpus" "tests/fuzz/corpus/$t" \
    >"$build/fuzz-$t.log" 2>&1
  rc=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)|^SUMMARY|property broken|Test unit written' \
    "$build/fuzz-$t.log" || true
  if [ "$rc" -ne 0 ] || ls "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* >/dev/null 2>&1; then
    echo "fuzz-$t: FAILED, see $build/fuzz-$t.log and $artifacts/" >&2
    status=1
  fi
done
exit $status
