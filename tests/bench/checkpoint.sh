#!/usr/bin/env bash
# Checkpoint cost, exactly once against at least once, on a real Apache Kafka broker.
#
#   tests/bench/checkpoint.sh [--records N] [--interval MS]...
#
# For each [checkpoint] interval_ms given (default 200, 500, 1000) and each guarantee:
#   backlog   N records (default 1,000,000 lines of the State of the Union, 4 partitions)
#             are in the input topic before `tally run` starts; the time from its start to
#             a snapshot whose offsets reach the end of every partition (caught up) gives
#             records/s; exactly once / at least once is the ratio of those
#   latency   the duration of every checkpoint while it read that backlog (the source's
#             debug line "checkpoint of N store(s) ... in X ms": transaction begin to
#             commit for exactly once, first record to last acknowledgement for at least
#             once): p50, p99 and how many
# Needs a broker at $TALLY_TEST_KAFKA_BOOTSTRAP (deploy/kafka-local start; bootstrap).
# Prints a table; prints the load average before each run.
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
records=1000000
intervals=()
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift ;;
    --interval) intervals+=("$2"); shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "checkpoint.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#intervals[@]} -gt 0 ] || intervals=(200 500 1000)
e2e_init tally-bench-checkpoint
[ -n "${TALLY_TEST_KAFKA_BOOTSTRAP:-}" ] || fail "set TALLY_TEST_KAFKA_BOOTSTRAP (deploy/kafka-local start)"
bootstrap=$TALLY_TEST_KAFKA_BOOTSTRAP
id="bench-ckpt-$$-$(date +%s)"

# The input: SOTU folded into lines of at most 72 columns (as tests/bench/e2e.sh), repeated
# up to $records lines, produced once.
sotu_lines | fold -s -w 72 | grep -v '^ *$' >"$work/sotu"
awk -v want="$records" '{ line[NR] = $0 } END { for (i = 0; i < want; i++) print line[i % NR + 1] }' \
  "$work/sotu" >"$work/lines"
$client topics -b "$bootstrap" "$id-input:4" 2>>"$work/client.log" || fail "cannot create the input topic"
kcat_produce "$id-input" <"$work/lines"
echo "input: $records records, $(wc -c <"$work/lines") bytes, topic $id-input"

printf "| interval ms | guarantee     | seconds | records/s | checkpoints | p50 ms | p99 ms | load |\n"
printf "|------------:|---------------|--------:|----------:|------------:|-------:|-------:|-----:|\n"
declare -A secs
for interval in "${intervals[@]}"; do
  for guarantee in at_least_once exactly_once; do
    name=$guarantee-$interval
    cat >"$work/$name.conf" <<EOF
[kafka]
bootstrap.servers=$bootstrap
[input]
topics=$id-input
group_id=$id-$name
[output]
topic=$id-$name-snapshots
[requests]
topic=$id-$name-requests
[checkpoint]
changelog_topic=$id-$name-changelog
interval_ms=$interval
guarantee=$guarantee
[log]
level=debug
EOF
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    spawn_tally "$name" "$work/$name.conf"
    $client snapshot -b "$bootstrap" --input "$id-input" --requests "$id-$name-requests" \
      --output "$id-$name-snapshots" --caught-up --timeout 600 --top 1 >/dev/null 2>>"$work/client.log" \
      || fail "$name: no caught-up snapshot"
    end=$(date +%s.%N)
    stop_tally TERM
    s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    secs[$name]=$s
    sed -n 's/.*source: checkpoint of .* in \([0-9.]*\) ms$/\1/p' "$work/$name.log" | sort -n >"$work/$name.ms"
    n=$(wc -l <"$work/$name.ms")
    p50=$(awk -v n="$n" 'NR == int((n + 1) / 2) { print; exit }' "$work/$name.ms")
    p99=$(awk -v n="$n" 'NR == (int(n * 0.99) > 0 ? int(n * 0.99) : 1) { print; exit }' "$work/$name.ms")
    printf "| %11s | %-13s | %7s | %9.0f | %11s | %6s | %6s | %4s |\n" "$interval" "$guarantee" "$s" \
      "$(awk -v r="$records" -v s="$s" 'BEGIN { print r / s }')" "$n" "${p50:--}" "${p99:--}" "$load"
  done
done
echo
for interval in "${intervals[@]}"; do
  awk -v i="$interval" -v a="${secs[at_least_once-$interval]}" -v e="${secs[exactly_once-$interval]}" \
    'BEGIN { printf "interval %s ms: exactly once / at least once, records/s: %.2f\n", i, a / e }'
done
