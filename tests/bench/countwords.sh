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
# Then unicode mode (the default tokenizer) on high-cardinality input, against
# LC_ALL=C.UTF-8 wc -w (which decodes UTF-8 but counts no distinct words), each output
# first checked equal to tests/reference/wordcount.py's (Python's re, unicodedata and
# collections.Counter; run once per corpus, its time printed as a peer's):
#
#   multilingual     scripts/fetch-corpus multilingual: 63 MB of translated manual pages,
#                    Cyrillic, CJK, Greek, Latin with diacritics, 477 k distinct words
#   synthetic        scripts/fetch-corpus synthetic: 49 MB, 4 M words, 3.5 M distinct
#
# (coreutils has no tool that splits on Unicode letters, so it has no row there.)
# MULTILINGUAL=0 leaves these rows out.
#
# Each figure: wall seconds as the median (and the minimum) of RUNS runs (default 5, after
# one warm-up round; the runs of all commands are interleaved, round after round, so that
# a change of load on a shared machine hits them alike), MB/s (10^6 bytes of input per
# second of the median), CPU seconds (user + system of every thread and process, median:
# on a busy machine a multi-threaded program's wall time depends on what else runs, its
# CPU time much less), peak RSS of the largest process (/usr/bin/time -f %M, one more
# run), and the median time as a ratio of wc -w's.
# Targets (issue: "Performance"): tally --shards 1 within 1.3x wc -w's time, --shards 2
# within 0.7x, and unicode mode at least half the MB/s of whitespace mode on the SOTU text.
# Issue 17: on the multilingual corpus, unicode --shards 2 within 0.8x the time of
# LC_ALL=C.UTF-8 wc -w, and --shards 2 / --shards 1 at most 0.6.
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
for tool in python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "countwords: $tool is missing (run scripts/setup)" >&2; exit 1; }
done

kjv10=$("$root/scripts/fetch-corpus" kjv10)
sotu=$("$root/scripts/fetch-corpus" sotu)
multilingual=${MULTILINGUAL:-1}
if [ "$multilingual" != 0 ]; then
  ml=$("$root/scripts/fetch-corpus" multilingual)
  syn=$("$root/scripts/fetch-corpus" synthetic)
fi
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
floors=()
# bench NAME INPUT COMMAND [FLOOR]: FLOOR names the row whose median the ratio column
# divides by (default: wc -w on the KJV x10).
bench() { names+=("$1"); inputs+=("$2"); cmds+=("$3"); floors+=("${4:-wc -w}"); }
bench "wc -w" "$kjv10" "wc -w $K"
bench "coreutils tr|sort|uniq -c" "$kjv10" "$pipeline"
bench "python Counter" "$kjv10" "python3 $(q "$root/tests/bench/countwords.py") $K"
bench "tally --shards 1" "$kjv10" "$T --tokenizer whitespace --shards 1 $K"
bench "tally --shards 2" "$kjv10" "$T --tokenizer whitespace --shards 2 $K"
bench "SOTU whitespace --shards 1" "$tmp/sotu.txt" "$T --tokenizer whitespace --shards 1 $S"
bench "SOTU unicode --shards 1" "$tmp/sotu.txt" "$T --tokenizer unicode --shards 1 $S"
bench "SOTU whitespace --shards 2" "$tmp/sotu.txt" "$T --tokenizer whitespace --shards 2 $S"
bench "SOTU unicode --shards 2" "$tmp/sotu.txt" "$T --tokenizer unicode --shards 2 $S"
if [ "$multilingual" != 0 ]; then
  M=$(q "$ml")
  Y=$(q "$syn")
  bench "ML wc -w (C.UTF-8)" "$ml" "LC_ALL=C.UTF-8 wc -w $M" "ML wc -w (C.UTF-8)"
  bench "ML unicode --shards 1" "$ml" "$T --tokenizer unicode --shards 1 $M 2>/dev/null" "ML wc -w (C.UTF-8)"
  bench "ML unicode --shards 2" "$ml" "$T --tokenizer unicode --shards 2 $M 2>/dev/null" "ML wc -w (C.UTF-8)"
  bench "SYN wc -w (C.UTF-8)" "$syn" "LC_ALL=C.UTF-8 wc -w $Y" "SYN wc -w (C.UTF-8)"
  bench "SYN unicode --shards 1" "$syn" "$T --tokenizer unicode --shards 1 $Y 2>/dev/null" "SYN wc -w (C.UTF-8)"
  bench "SYN unicode --shards 2" "$syn" "$T --tokenizer unicode --shards 2 $Y 2>/dev/null" "SYN wc -w (C.UTF-8)"
fi

# The counters must agree before their times mean anything.
bash -c "$pipeline" >"$tmp/coreutils.out"
bash -c "python3 $(q "$root/tests/bench/countwords.py") $K" >"$tmp/python.out"
bash -c "$T --tokenizer whitespace --shards 2 $K" >"$tmp/tally.out"
if ! cmp -s "$tmp/coreutils.out" "$tmp/python.out" || ! cmp -s "$tmp/coreutils.out" "$tmp/tally.out"; then
  echo "countwords: the counters disagree on $kjv10" >&2
  exit 1
fi
reference_times=()
if [ "$multilingual" != 0 ]; then
  for pair in "multilingual:$ml" "synthetic:$syn"; do
    label=${pair%%:*}
    file=${pair#*:}
    start=$(date +%s.%N)
    python3 "$root/tests/reference/wordcount.py" "$file" >"$tmp/$label.ref"
    end=$(date +%s.%N)
    reference_times+=("$label $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s, $(wc -l <"$tmp/$label.ref") distinct words")
    for shards in 1 2; do
      bash -c "$T --tokenizer unicode --shards $shards $(q "$file")" 2>/dev/null >"$tmp/$label.tally"
      if ! cmp -s "$tmp/$label.ref" "$tmp/$label.tally"; then
        echo "countwords: tally count --shards $shards disagrees with tests/reference/wordcount.py on $file" >&2
        exit 1
      fi
    done
  done
fi

echo "# countwords: $(nproc) processors, $(uname -m), $(wc -c <"$kjv10") bytes of KJV x10," \
  "$(wc -c <"$tmp/sotu.txt") bytes of SOTU; median of $runs runs; outputs agree" \
  "($(wc -l <"$tmp/tally.out") distinct words); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in "${reference_times[@]}"; do
  echo "# python reference (tests/reference/wordcount.py, one run) on $r; tally count --shards 1 and 2 agree with it"
done

commands=$tmp/commands.tsv
: >"$commands"
for i in "${!names[@]}"; do
  printf '%s\t%s\t%s\t%s\n' "${names[$i]}" "$(wc -c <"${inputs[$i]}")" "${cmds[$i]}" "${floors[$i]}" >>"$commands"
done

python3 - "$commands" "$runs" <<'EOF'
import os, statistics, subprocess, sys, time

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
floor_of = {name: floor for name, _, _, floor in rows}
benches = [(name, size, cmd) for name, size, cmd, _ in rows]
runs = int(sys.argv[2])
times = {name: [] for name, _, _ in benches}
cpus = {name: [] for name, _, _ in benches}
rss = {name: 0 for name, _, _ in benches}

def run(cmd):
    """Wall seconds and CPU seconds of one run of `bash -c cmd`; the rusage that wait4
    returns covers the shell and every process it waited for."""
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.Popen(["bash", "-c", cmd], stdout=null)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("countwords: failed: %s" % cmd)
    return wall, usage.ru_utime + usage.ru_stime

def peak_rss(cmd):
    """Peak RSS in KiB of the largest process of one more run, from /usr/bin/time (a
    small forking parent: a child forked from this Python would start with its RSS)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M", "bash", "-c", cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return int(out.stderr.split()[-1])

# One warm-up round (page cache, lazy binding), then rounds that run every command once,
# in turn: a change of load on a shared machine then hits every command alike.
for name, _, cmd in benches:
    run(cmd)
for _ in range(runs):
    for name, _, cmd in benches:
        wall, cpu = run(cmd)
        times[name].append(wall)
        cpus[name].append(cpu)
for name, _, cmd in benches:
    rss[name] = peak_rss(cmd)

sizes = {name: int(size) for name, size, _ in benches}
median = {name: statistics.median(times[name]) for name in times}
floor = median["wc -w"]

print("%-28s %8s %9s %6s %9s %7s %10s %8s" % (
    "command", "input MB", "median s", "min s", "MB/s", "CPU s", "peak RSS", "x wc -w"))
for name, _, _ in benches:
    sec = median[name]
    print("%-28s %8.1f %9.3f %6.3f %9.1f %7.3f %6.1f MiB %8.2f" % (
        name, sizes[name] / 1e6, sec, min(times[name]), sizes[name] / 1e6 / sec,
        statistics.median(cpus[name]), rss[name] / 1024, sec / median[floor_of[name]]))

def mbps(name):
    return sizes[name] / 1e6 / median[name]

s1 = median["tally --shards 1"] / floor
s2 = median["tally --shards 2"] / floor
uni = mbps("SOTU unicode --shards 1") / mbps("SOTU whitespace --shards 1")
print()
print("targets:")
print("  tally --shards 1 time / wc -w  = %.2f (target <= 1.30): %s" % (s1, "met" if s1 <= 1.3 else "MISSED"))
print("  tally --shards 2 time / wc -w  = %.2f (target <= 0.70): %s" % (s2, "met" if s2 <= 0.7 else "MISSED"))
print("  SOTU unicode / whitespace MB/s = %.2f (target >= 0.50): %s" % (uni, "met" if uni >= 0.5 else "MISSED"))
if "ML unicode --shards 2" in median:
    m2 = median["ML unicode --shards 2"] / median["ML wc -w (C.UTF-8)"]
    m21 = median["ML unicode --shards 2"] / median["ML unicode --shards 1"]
    y2 = median["SYN unicode --shards 2"] / median["SYN wc -w (C.UTF-8)"]
    y21 = median["SYN unicode --shards 2"] / median["SYN unicode --shards 1"]
    print("  multilingual unicode --shards 2 time / C.UTF-8 wc -w = %.2f (goal <= 0.80): %s" % (m2, "met" if m2 <= 0.8 else "MISSED"))
    print("  multilingual --shards 2 / --shards 1 time          = %.2f (goal <= 0.60): %s" % (m21, "met" if m21 <= 0.6 else "MISSED"))
    print("  synthetic unicode --shards 2 time / C.UTF-8 wc -w    = %.2f (reported)" % y2)
    print("  synthetic --shards 2 / --shards 1 time             = %.2f (reported)" % y21)
EOF
