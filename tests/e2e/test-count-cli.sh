#!/usr/bin/env bash
# `tally count` as a user sees it: exact output of small inputs in each format and each
# tokenizer mode, order of ties, stdin ("-" or no FILE), several files, over-long words and
# lines longer than the reading blocks, a file truncated while open, and the exit status
# of every kind of failure (1 unreadable input, the rest still counted; 2 bad option,
# 78 bad configuration).
#
# Needs TALLY_EXE (set by meson test). Exit 0 when every check passed, 1 otherwise.
# The sh -c scripts below take their arguments as $0, $1, $2 on purpose.
# shellcheck disable=SC2016
set -uo pipefail

tally=${TALLY_EXE:?TALLY_EXE must name the tally program}
ref=${TALLY_SOURCE_ROOT:?}/tests/reference/wordcount.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

# Every run reads this empty configuration, whatever tally.conf the machine has.
: >"$tmp/empty.conf"
count() { "$tally" count --config "$tmp/empty.conf" "$@"; }

failures=0
checks=0

# expect NAME EXPECTED_STATUS EXPECTED_STDOUT_FILE -- COMMAND...
expect() {
  local name=$1 status=$2 want=$3
  shift 4
  checks=$((checks + 1))
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$status" ]; then
    echo "FAIL $name: exit status $got, expected $status; stderr:" >&2
    sed 's/^/  /' "$tmp/err" >&2
    failures=$((failures + 1))
    return
  fi
  if ! diff -u "$want" "$tmp/out" >"$tmp/diff"; then
    echo "FAIL $name: output differs (- expected, + got):" >&2
    sed 's/^/  /' "$tmp/diff" | head -40 >&2
    failures=$((failures + 1))
    return
  fi
  echo "ok $name"
}

# expect_error NAME STATUS STDERR_SUBSTRING -- COMMAND...: fails with STATUS, prints
# nothing on stdout and names the problem on stderr.
expect_error() {
  local name=$1 status=$2 needle=$3
  shift 4
  : >"$tmp/nothing"
  expect "$name" "$status" "$tmp/nothing" -- "$@"
  if ! grep -qF -- "$needle" "$tmp/err"; then
    echo "FAIL $name: stderr does not mention '$needle':" >&2
    sed 's/^/  /' "$tmp/err" >&2
    failures=$((failures + 1))
  fi
}

printf 'The cat, the hat; the END.\nthe-end say "hi"\n' >"$tmp/small.txt"

# --- text output in each mode ---------------------------------------------------------
cat >"$tmp/want" <<'EOF'
the 3
"hi" 1
cat, 1
end. 1
hat; 1
say 1
the-end 1
EOF
expect "whitespace text" 0 "$tmp/want" -- count --tokenizer whitespace "$tmp/small.txt"

cat >"$tmp/want" <<'EOF'
the 3
cat 1
end 1
hat 1
hi 1
say 1
the-end 1
EOF
expect "unicode text (the default mode)" 0 "$tmp/want" -- count "$tmp/small.txt"
expect "unicode text (--tokenizer unicode)" 0 "$tmp/want" -- count --tokenizer unicode "$tmp/small.txt"

printf 'New York\nnew york\n  New York  \nBoston\n' >"$tmp/records.txt"
cat >"$tmp/want" <<'EOF'
New York 2
Boston 1
new york 1
EOF
expect "record text" 0 "$tmp/want" -- count --tokenizer record "$tmp/records.txt"

# --- ties: byte order of the word, a prefix before the longer word ---------------------
printf 'b ab a\nB\xc3\xa9 \xc3\xa9 z\n' >"$tmp/ties.txt"
printf 'a 1\nab 1\nb 1\nb\xc3\xa9 1\nz 1\n\xc3\xa9 1\n' >"$tmp/want"
expect "ties in byte order" 0 "$tmp/want" -- count --tokenizer whitespace "$tmp/ties.txt"

# --- --top ------------------------------------------------------------------------------
printf 'the 3\n"hi" 1\n' >"$tmp/want"
expect "--top 2" 0 "$tmp/want" -- count --tokenizer whitespace --top 2 "$tmp/small.txt"
printf 'the 3\n' >"$tmp/want"
expect "-n 1" 0 "$tmp/want" -- count --tokenizer whitespace -n 1 "$tmp/small.txt"
count --tokenizer whitespace "$tmp/small.txt" >"$tmp/want"
expect "--top 0 is everything" 0 "$tmp/want" -- count --tokenizer whitespace --top 0 "$tmp/small.txt"
expect "--top larger than the words" 0 "$tmp/want" -- count --tokenizer whitespace --top 100 "$tmp/small.txt"
checks=$((checks + 1))
if "$tally" count --help | grep -qF -- '0 (the default) prints all words'; then
  echo "ok --help says --top 0 prints all words"
else
  echo "FAIL --help does not say what --top 0 means" >&2
  failures=$((failures + 1))
fi

# --- csv: RFC 4180 quoting ----------------------------------------------------------------
cat >"$tmp/want" <<'EOF'
word,count
the,3
"""hi""",1
"cat,",1
end.,1
hat;,1
say,1
the-end,1
EOF
expect "csv with quoting" 0 "$tmp/want" -- count --tokenizer whitespace --format csv "$tmp/small.txt"
printf 'word,count\n"a, b ""c""",2\n' >"$tmp/want"
printf 'a, b "c"\na, b "c"\n' >"$tmp/quoted.txt"
expect "csv of a record with comma and quotes" 0 "$tmp/want" -- \
  count --tokenizer record -f csv "$tmp/quoted.txt"

# --- json ---------------------------------------------------------------------------------
printf '%s\n' '{"total":9,"distinct":7,"words":[{"word":"the","count":3},{"word":"\"hi\"","count":1}]}' \
  >"$tmp/want"
expect "json --top 2" 0 "$tmp/want" -- count --tokenizer whitespace --format json --top 2 "$tmp/small.txt"
printf '%s\n' '{"total":0,"distinct":0,"words":[]}' >"$tmp/want"
: >"$tmp/empty.txt"
expect "json of an empty file" 0 "$tmp/want" -- count --format json "$tmp/empty.txt"
if command -v python3 >/dev/null; then
  checks=$((checks + 1))
  if count -f json "$tmp/ties.txt" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [(w["word"], w["count"]) for w in d["words"]] == [("a", 1), ("ab", 1), ("b", 1), ("bé", 1), ("z", 1), ("é", 1)], d
assert d["total"] == 6 and d["distinct"] == 6, d
'; then echo "ok json parses with non-ASCII words"; else
    echo "FAIL json parses with non-ASCII words" >&2
    failures=$((failures + 1))
  fi
fi

# --- inputs: stdin, several files, empty ----------------------------------------------------
count --tokenizer whitespace "$tmp/small.txt" >"$tmp/want"
expect "stdin as -" 0 "$tmp/want" -- sh -c '"$0" count --config "$1" --tokenizer whitespace - <"$2"' \
  "$tally" "$tmp/empty.conf" "$tmp/small.txt"
expect "stdin with no FILE" 0 "$tmp/want" -- sh -c '"$0" count --config "$1" --tokenizer whitespace <"$2"' \
  "$tally" "$tmp/empty.conf" "$tmp/small.txt"
expect "stdin from a pipe" 0 "$tmp/want" -- sh -c 'cat "$2" | "$0" count --config "$1" --tokenizer whitespace' \
  "$tally" "$tmp/empty.conf" "$tmp/small.txt"
# Standard input is read from where it stands, as cat reads it: a file the shell has
# already read a line of, and the same file named twice as "-" (the second reads nothing).
printf 'first line\nsecond\n' >"$tmp/two.txt"
printf 'second 1\n' >"$tmp/want"
expect "stdin file read from its current offset" 0 "$tmp/want" -- \
  sh -c '{ read -r line; "$0" count --config "$1"; } <"$2"' "$tally" "$tmp/empty.conf" "$tmp/two.txt"
count --tokenizer whitespace "$tmp/small.txt" >"$tmp/want"
expect "stdin file named twice as - is counted once" 0 "$tmp/want" -- \
  sh -c '"$0" count --config "$1" --tokenizer whitespace - - <"$2"' "$tally" "$tmp/empty.conf" "$tmp/small.txt"

printf 'foo' >"$tmp/f1.txt"
printf 'bar foo' >"$tmp/f2.txt"
printf 'foo 2\nbar 1\n' >"$tmp/want"
expect "a file's end ends its last word" 0 "$tmp/want" -- count "$tmp/f1.txt" "$tmp/f2.txt"
: >"$tmp/want"
expect "empty input" 0 "$tmp/want" -- count "$tmp/empty.txt"
printf 'word,count\n' >"$tmp/want"
expect "empty input, csv" 0 "$tmp/want" -- count -f csv "$tmp/empty.txt"

# --- a file that shrinks while tally count has it open --------------------------------------
# Counted up to where it ends when it is read (a mapped file died with SIGBUS, exit 135).
# Deterministic: the FIFO is read first, and is only written (and closed) after tally has
# opened the file (its descriptor shows in /proc/PID/fd) and started its threads (it
# opens the next input before reading the current one) and the file has been truncated.
if [ -d /proc/self/fd ] && command -v python3 >/dev/null; then
  python3 -c '
import sys
sys.stdout.write("alpha beta\n" * 800000)' >"$tmp/shrinks.txt" # 8.8 MB
  mkfifo "$tmp/fifo"
  checks=$((checks + 1))
  "$tally" count --config "$tmp/empty.conf" "$tmp/fifo" "$tmp/shrinks.txt" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  exec 3>"$tmp/fifo" # returns once tally has opened the FIFO for reading
  opened=no
  for _ in $(seq 1 600); do
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF "$tmp/shrinks.txt" \
      && [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -gt 1 ]; then
      opened=yes
      break
    fi
    sleep 0.05
  done
  truncate -s 1100 "$tmp/shrinks.txt" # 100 lines left
  echo gamma >&3
  exec 3>&-
  wait "$pid"
  got=$?
  printf 'alpha 100\nbeta 100\ngamma 1\n' >"$tmp/want"
  if [ "$opened" = yes ] && [ "$got" -eq 0 ] && diff -u "$tmp/want" "$tmp/out" >"$tmp/diff"; then
    echo "ok file truncated while open is counted up to its new end"
  else
    echo "FAIL file truncated while open (opened: $opened, exit status $got, expected 0):" >&2
    sed 's/^/  /' "$tmp/err" "$tmp/diff" 2>/dev/null | head -20 >&2
    failures=$((failures + 1))
  fi
  rm -f "$tmp/fifo" "$tmp/shrinks.txt"
fi

# --- lines longer than the reading blocks (1 MiB slices, 2 MiB stream buffers) -------------
# One 3 MiB word, then more words: the long word is truncated to 256 bytes (the default
# max_word_bytes) and nothing after it is lost, from a regular file and from a pipe alike.
python3 -c '
import sys
sys.stdout.write("x" * (3 << 20) + " tail end\nnext line\n")' >"$tmp/long-word.txt"
{
  printf 'end 1\nline 1\nnext 1\ntail 1\n'
  printf '%0256d 1\n' 0 | tr 0 x
} >"$tmp/want.sorted"
expect "over-long word, regular file, whitespace" 0 "$tmp/want.sorted" -- \
  count --tokenizer whitespace "$tmp/long-word.txt"
expect "over-long word, pipe, whitespace" 0 "$tmp/want.sorted" -- \
  sh -c 'cat "$2" | "$0" count --config "$1" --tokenizer whitespace' "$tally" "$tmp/empty.conf" "$tmp/long-word.txt"
expect "over-long word, regular file, unicode" 0 "$tmp/want.sorted" -- \
  count "$tmp/long-word.txt"

# A 3 MiB line of short words with no space or line end: every word is counted.
python3 -c '
import sys
sys.stdout.write("ab,cd;" * ((3 << 20) // 6) + "ef")' >"$tmp/long-line.txt"
n=$(((3 << 20) / 6))
printf 'ab %d\ncd %d\nef 1\n' "$n" "$n" >"$tmp/want"
expect "3 MiB line without spaces, regular file, unicode" 0 "$tmp/want" -- count "$tmp/long-line.txt"
expect "3 MiB line without spaces, pipe, unicode" 0 "$tmp/want" -- \
  sh -c 'cat "$2" | "$0" count --config "$1"' "$tally" "$tmp/empty.conf" "$tmp/long-line.txt"
if [ -f "$ref" ]; then
  python3 "$ref" --mode whitespace "$tmp/long-line.txt" >"$tmp/want"
  expect "3 MiB line without spaces, whitespace, = reference" 0 "$tmp/want" -- \
    count --tokenizer whitespace "$tmp/long-line.txt"
fi

# --- invalid UTF-8 and long words: counted by the rules, and noted on stderr -----------------
printf 'ab\377cd xxxxxxxxxx\n' >"$tmp/invalid.txt"
printf '[tokenizer]\nmax_word_bytes = 5\n' >"$tmp/short.conf"
printf 'ab 1\ncd 1\nxxxxx 1\n' >"$tmp/want"
expect "invalid UTF-8 separates, long word truncated" 0 "$tmp/want" -- \
  "$tally" count --config "$tmp/short.conf" "$tmp/invalid.txt"
checks=$((checks + 1))
if grep -qx 'tally count: note: invalid UTF-8 bytes skipped (as word separators): 1' "$tmp/err" \
  && grep -qx 'tally count: note: words longer than 5 bytes truncated: 1' "$tmp/err"; then
  echo "ok notes on stderr"
else
  echo "FAIL notes on stderr:" >&2
  sed 's/^/  /' "$tmp/err" >&2
  failures=$((failures + 1))
fi

# --- shards and jobs do not change the result -------------------------------------------------
count --tokenizer whitespace "$tmp/long-line.txt" "$tmp/small.txt" >"$tmp/want"
for s in 1 2 3 8; do
  expect "--shards $s" 0 "$tmp/want" -- count --tokenizer whitespace --shards "$s" "$tmp/long-line.txt" "$tmp/small.txt"
done
expect "--jobs 3 --shards 2" 0 "$tmp/want" -- \
  count --tokenizer whitespace --jobs 3 --shards 2 "$tmp/long-line.txt" "$tmp/small.txt"

# --- many distinct words: each worker's combining table is flushed to the shards part way ---
# (at 8 MiB, about 210,000 distinct words), and a word's count then reaches its shard in
# several parts. The expected counts come from coreutils.
awk 'BEGIN { for (r = 0; r < 3; r++) for (i = 0; i < 300000; i++) printf "w%d%s", (i * 7919) % 300000, (i % 10 == 9) ? "\n" : " " }' >"$tmp/distinct.txt"
printf 'The the THE\n' >>"$tmp/distinct.txt"
tr -s ' \n' '\n\n' <"$tmp/distinct.txt" | tr 'A-Z' 'a-z' | sort | uniq -c |
  awk '$2 != "" { print $2, $1 }' | sort -t' ' -k2,2nr -k1,1 >"$tmp/want-distinct"
for s in 1 2; do
  expect "many distinct words, --shards $s" 0 "$tmp/want-distinct" -- \
    count --tokenizer whitespace --shards "$s" "$tmp/distinct.txt"
done
expect "many distinct words, --jobs 3 --shards 2" 0 "$tmp/want-distinct" -- \
  count --tokenizer whitespace --jobs 3 --shards 2 "$tmp/distinct.txt"

# --- failures ---------------------------------------------------------------------------------
# An input that cannot be read is named on stderr and skipped; the rest is counted and
# printed, and the exit status is 1 (as wc does).
expect_error "missing file" 1 "$tmp/no-such-file" -- count "$tmp/no-such-file"
expect_error "directory" 1 "$tmp" -- count "$tmp"
count --tokenizer whitespace "$tmp/small.txt" "$tmp/f2.txt" >"$tmp/want"
expect "missing file among others: the rest is counted" 1 "$tmp/want" -- \
  count --tokenizer whitespace "$tmp/small.txt" "$tmp/no-such-file" "$tmp/f2.txt" "$tmp"
checks=$((checks + 1))
if grep -qF "$tmp/no-such-file: No such file or directory" "$tmp/err" \
  && grep -qF "$tmp: Is a directory" "$tmp/err"; then
  echo "ok each unreadable input named on stderr"
else
  echo "FAIL each unreadable input named on stderr:" >&2
  sed 's/^/  /' "$tmp/err" >&2
  failures=$((failures + 1))
fi
printf '%s\n' '{"total":2,"distinct":2,"words":[{"word":"bar","count":1},{"word":"foo","count":1}]}' \
  >"$tmp/want"
expect "missing file first, json of the rest" 1 "$tmp/want" -- \
  count -f json "$tmp/no-such-file" "$tmp/f2.txt"
if [ "$(id -u)" -ne 0 ]; then
  printf 'x\n' >"$tmp/unreadable"
  chmod 000 "$tmp/unreadable"
  expect_error "unreadable file" 1 "$tmp/unreadable" -- count "$tmp/unreadable"
fi
expect_error "unknown option" 2 "--bogus" -- count --bogus "$tmp/small.txt"
expect_error "bad --format" 2 "xml" -- count --format xml "$tmp/small.txt"
expect_error "bad --tokenizer" 2 "nope" -- count --tokenizer nope "$tmp/small.txt"
expect_error "negative --top" 2 "--top" -- count --top -1 "$tmp/small.txt"
expect_error "--top not a number" 2 "--top" -- count --top ten "$tmp/small.txt"
expect_error "bad --shards" 2 "--shards" -- count --shards 257 "$tmp/small.txt"
expect_error "bad --jobs" 2 "--jobs" -- count --jobs 0 "$tmp/small.txt"
printf '[tokenizr]\nmode=whitespace\n' >"$tmp/bad.conf"
expect_error "bad configuration" 78 "tokenizr" -- "$tally" count --config "$tmp/bad.conf" "$tmp/small.txt"
expect_error "missing configuration" 78 "$tmp/no-such.conf" -- \
  "$tally" count --config "$tmp/no-such.conf" "$tmp/small.txt"
printf '[tokenizer]\nmode=whitespace\n' >"$tmp/ws.conf"
count --tokenizer whitespace "$tmp/small.txt" >"$tmp/want"
expect "[tokenizer] mode from the configuration" 0 "$tmp/want" -- \
  "$tally" count --config "$tmp/ws.conf" "$tmp/small.txt"
count "$tmp/small.txt" >"$tmp/want"
expect "--tokenizer overrides the configuration" 0 "$tmp/want" -- \
  "$tally" count --config "$tmp/ws.conf" --tokenizer unicode "$tmp/small.txt"

# Issue 13 item 5: more inputs than the open-file limit. 200 files under `ulimit -n 64`
# (each input is opened when its turn comes and closed once read), one of them missing: the
# counts of the rest, exact, and status 1. It used to open every input first and abort
# (GLib-ERROR creating a GWakeup, SIGTRAP, status 133, nothing printed) from 58 files on.
mkdir -p "$tmp/many"
for i in $(seq 1 200); do printf 'common w%d\n' "$((i % 7))" >"$tmp/many/f$i.txt"; done
{
  echo "common 200"
  for r in 0 1 2 3 4 5 6; do
    n=$(( 200 / 7 + (r >= 1 && r <= 200 % 7 ? 1 : 0) ))
    echo "w$r $n"
  done | sort -k2,2nr -k1,1
} >"$tmp/want"
files=()
for i in $(seq 1 200); do files+=("$tmp/many/f$i.txt"); done
expect "200 files under ulimit -n 64" 0 "$tmp/want" -- \
  bash -c 'ulimit -n 64 && exec "$0" count --config "$1" --shards 2 --jobs 2 "${@:2}"' \
  "$tally" "$tmp/empty.conf" "${files[@]}"
expect "200 files under ulimit -n 64 with --shards 4" 0 "$tmp/want" -- \
  bash -c 'ulimit -n 64 && exec "$0" count --config "$1" --shards 4 "${@:2}"' \
  "$tally" "$tmp/empty.conf" "${files[@]}"
{
  echo "common 199"
  for r in 0 1 2 3 4 5 6; do
    n=$(( 200 / 7 + (r >= 1 && r <= 200 % 7 ? 1 : 0) - (r == 100 % 7 ? 1 : 0) ))
    echo "w$r $n"
  done | sort -k2,2nr -k1,1
} >"$tmp/want"
rm "$tmp/many/f100.txt"
expect "200 files under ulimit -n 64, one missing" 1 "$tmp/want" -- \
  bash -c 'ulimit -n 64 && exec "$0" count --config "$1" "${@:2}"' \
  "$tally" "$tmp/empty.conf" "${files[@]}"
if ! grep -qF "f100.txt" "$tmp/err"; then
  echo "FAIL 200 files, one missing: stderr does not name it" >&2
  failures=$((failures + 1))
fi

echo "$((checks - failures)) of $checks checks passed"
[ "$failures" -eq 0 ]
