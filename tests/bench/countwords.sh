#!/usr/bin/env bash
# The "countwords" benchmark: count the words of the KJV Bible repeated 10 times (about
# 41 MB) with the whitespace definition (split on ASCII whitespace, ASCII lowercase,
# punctuation kept), and compare `tally count` with tools any machine has, in one run:
#
#   wc -w            LC_ALL=C wc -w: tokenizes the same bytes without counting distinct
#                    words, a practical floor
#   coreutils        tr | tr -s | sort | uniq -c | sort, the same output as tally's
#   python Counter   tests/bench/countwords.py (collections.Counter), the same output
#   tally --shards 1 / --shards 2
#
# and unicode mode against whitespace mode on the State of the Union text (the 233
# addresses joined with a line feed after each, about 11 MB).
#
# Each figure: seconds as the median of RUNS runs (default 5, after one warm-up) measured
# with hyperfine, MB/s (10^6 bytes per second of input), peak RSS of the largest process
# (/usr/bin/time -f %M, one extra run), CPU seconds (user + system, mean over the runs, all
# threads and processes: on a busy machine a multi-threaded program's wall time depends on
# what else runs, its CPU time much less), and the time as a ratio of wc -w's. Targets (issue:
# "Performance"): tally --shards 1 within 1.3x wc -w's time, --shards 2 within 0.7x, and
# unicode mode at least half the MB/s of whitespace mode on the SOTU text.
#
#   tests/bench/countwords.sh [BUILD_DIR]     (default: build; or set TALLY=path/to/tally)
#
# Prints the table on stdout; exits 1 if the outputs of the counters disagree. Missing
# targets do not change the exit status: this is a measurement, not a test.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tally=${TALLY:-$root/${1:-build}/tally}
runs=${RUNS:-5}
[ -x "$tally" ] || { echo "countwords: no tally program at $tally (build first)" >&2; exit 1; }
for tool in hyperfine python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "countwords: $tool is missing (run scripts/setup)" >&2; exit 1; }
done

kjv10=$("$root/scripts/fetch-corpus" kjv10)
sotu=$("$root/scripts/fetch-corpus" sotu)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

for f in "$sotu"/*.txt; do
  cat "$f"
  echo
done >"$tmp/sotu.txt"
: >"$tmp/empty.conf"

q() { printf '%q' "$1"; }
T="$(q "$tally") count --config $(q "$tmp/empty.conf")"
K=$(q "$kjv10")
S=$(q "$tmp/sotu.txt")
pipeline="tr 'A-Z' 'a-z' <$K | tr -s '[:space:][:cntrl:]' '\\n' | sort | uniq -c | awk '\$2 != \"\" { print \$2, \$1 }' | sort -t' ' -k2,2nr -k1,1"

names=()
inputs=()
cmds=()
bench() { names+=("$1"); inputs+=("$2"); cmds+=("$3"); }
bench "wc -w" "$kjv10" "wc -w $K"
bench "coreutils tr|sort|uniq -c" "$kjv10" "$pipeline"
bench "python Counter" "$kjv10" "python3 $(q "$root/tests/bench/countwords.py") $K"
bench "tally --shards 1" "$kjv10" "$T --tokenizer whitespace --shards 1 $K"
bench "tally --shards 2" "$kjv10" "$T --tokenizer whitespace --shards 2 $K"
bench "SOTU whitespace --shards 1" "$tmp/sotu.txt" "$T --tokenizer whitespace --shards 1 $S"
bench "SOTU unicode --shards 1" "$tmp/sotu.txt" "$T --tokenizer unicode --shards 1 $S"
bench "SOTU whitespace --shards 2" "$tmp/sotu.txt" "$T --tokenizer whitespace --shards 2 $S"
bench "SOTU unicode --shards 2" "$tmp/sotu.txt" "$T --tokenizer unicode --shards 2 $S"

# The counters must agree before their times mean anything.
bash -c "$pipeline" >"$tmp/coreutils.out"
bash -c "python3 $(q "$root/tests/bench/countwords.py") $K" >"$tmp/python.out"
bash -c "$T --tokenizer whitespace --shards 2 $K" >"$tmp/tally.out"
if ! cmp -s "$tmp/coreutils.out" "$tmp/python.out" || ! cmp -s "$tmp/coreutils.out" "$tmp/tally.out"; then
  echo "countwords: the counters disagree on $kjv10" >&2
  exit 1
fi

echo "# countwords: $(nproc) processors, $(uname -m), $(wc -c <"$kjv10") bytes of KJV x10," \
  "$(wc -c <"$tmp/sotu.txt") bytes of SOTU; median of $runs runs; outputs agree" \
  "($(wc -l <"$tmp/tally.out") distinct words); load average $(cut -d' ' -f1-3 /proc/loadavg)"

results=$tmp/results.tsv
: >"$results"
for i in "${!names[@]}"; do
  cmd=${cmds[$i]}
  hyperfine --shell bash --style none --warmup 1 --runs "$runs" --export-json "$tmp/h$i.json" "$cmd" \
    >/dev/null 2>"$tmp/h$i.err" || { cat "$tmp/h$i.err" >&2; exit 1; }
  /usr/bin/time -f %M -o "$tmp/rss$i" bash -c "$cmd" >/dev/null
  times=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("%s\t%s" % (r["median"], r["user"] + r["system"]))' "$tmp/h$i.json")
  printf '%s\t%s\t%s\t%s\n' "${names[$i]}" "$(wc -c <"${inputs[$i]}")" "$times" \
    "$(tail -n 1 "$tmp/rss$i")" >>"$results"
done

python3 - "$results" <<'EOF'
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rows = [(name, int(size), float(sec), float(cpu), int(rss_kib)) for name, size, sec, cpu, rss_kib in rows]
by_name = {r[0]: r for r in rows}
floor = by_name["wc -w"][2]

print("%-28s %8s %9s %9s %7s %10s %8s" % ("command", "input MB", "median s", "MB/s", "CPU s", "peak RSS", "x wc -w"))
for name, size, sec, cpu, rss in rows:
    print("%-28s %8.1f %9.3f %9.1f %7.3f %6.1f MiB %8.2f" % (name, size / 1e6, sec, size / 1e6 / sec, cpu, rss / 1024, sec / floor))

def mbps(name):
    _, size, sec, _, _ = by_name[name]
    return size / 1e6 / sec

s1 = by_name["tally --shards 1"][2] / floor
s2 = by_name["tally --shards 2"][2] / floor
uni = mbps("SOTU unicode --shards 1") / mbps("SOTU whitespace --shards 1")
print()
print("targets:")
print("  tally --shards 1 time / wc -w  = %.2f (target <= 1.30): %s" % (s1, "met" if s1 <= 1.3 else "MISSED"))
print("  tally --shards 2 time / wc -w  = %.2f (target <= 0.70): %s" % (s2, "met" if s2 <= 0.7 else "MISSED"))
print("  SOTU unicode / whitespace MB/s = %.2f (target >= 0.50): %s" % (uni, "met" if uni >= 0.5 else "MISSED"))
EOF
