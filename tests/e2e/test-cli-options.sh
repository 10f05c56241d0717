#!/usr/bin/env bash
# The command line as Kafka users know it (issue 13, items 11 and 12), with no broker:
#   - `-X NAME=VALUE` on run and snapshot: checked like a [kafka] key, a secret warned about,
#     precedence file < TALLY_KAFKA_* < -X;
#   - check-config, run and snapshot refuse what librdkafka refuses only when it makes a
#     client (sasl.mechanisms=NOPE under SASL_PLAINTEXT), exit 78 naming file, group, key;
#   - one meaning per short option across every command; `tally help COMMAND`.
#
# Needs TALLY_EXE (set by meson test). Exit 0 when every check passed, 1 otherwise.
set -uo pipefail

tally=${TALLY_EXE:?TALLY_EXE must name the tally program}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
export LC_ALL=C.UTF-8
unset TALLY_CONFIG
for v in $(env | sed -n 's/^\(TALLY_[A-Z_]*\)=.*/\1/p'); do
  case $v in TALLY_EXE | TALLY_SOURCE_ROOT | TALLY_RDKAFKA_PLUGIN) ;; *) unset "$v" ;; esac
done
export XDG_CONFIG_HOME=$tmp

failures=0

# check NAME STATUS EXPECTED_STDERR -- COMMAND...: exact exit status and standard error.
# Runs against 127.0.0.1:1 (nothing listens) end with exit 1 and librdkafka's connection
# errors; those lines (matching $unreachable) are left out of the comparison.
unreachable='^tally snapshot: (librdkafka: |cannot read cluster metadata|no complete answer)'
check() {
  local name=$1 status=$2 want=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err.all"
  local got=$?
  grep -vE "$unreachable" "$tmp/err.all" >"$tmp/err"
  if [ "$got" -ne "$status" ] || [ "$(cat "$tmp/err")" != "$want" ]; then
    echo "FAIL $name: exit $got (expected $status); stderr:" >&2
    sed 's/^/  got:  /' "$tmp/err" >&2
    printf '%s\n' "$want" | sed 's/^/  want: /' >&2
    failures=$((failures + 1))
    return
  fi
  echo "ok $name"
}

printf '[kafka]\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanisms=NOPE\n' >nope.conf
printf '[kafka]\nsecurity.protocol=SASL_PLAINTEXT\n' >sasl.conf
: >empty.conf

# --- item 11: check-config builds the clients run builds ---------------------------------
nope='nope.conf:3: [kafka] sasl.mechanisms: librdkafka refuses the consumer configuration: Unsupported SASL mechanism: NOPE'
check "check-config sasl.mechanisms=NOPE" 78 "tally check-config: $nope" -- "$tally" check-config nope.conf
check "run sasl.mechanisms=NOPE (same message, before starting)" 78 "tally run: $nope" -- \
  timeout 20 "$tally" run -c nope.conf
check "snapshot sasl.mechanisms=NOPE" 78 "tally snapshot: $nope" -- \
  "$tally" snapshot -c nope.conf -b 127.0.0.1:1 --timeout 200
printf '[kafka]\nacks=1\n' >acks.conf
check "check-config acks=1 (the producers are idempotent)" 78 \
  'tally check-config: acks.conf:2: [kafka] acks: librdkafka refuses the producer configuration: `acks` must be set to `all` when `enable.idempotence` is true' -- \
  "$tally" check-config acks.conf
check "check-config sasl.mechanisms=NOPE without SASL is ok, as run" 0 "" -- \
  "$tally" check-config --config <(printf '[kafka]\nsasl.mechanisms=NOPE\n')

# --- item 12: -X ----------------------------------------------------------------------------
from_x='tally snapshot: -X sasl.mechanisms: [kafka] sasl.mechanisms: librdkafka refuses the consumer configuration: Unsupported SASL mechanism: NOPE'
check "-X is checked like [kafka]" 78 "$from_x" -- \
  "$tally" snapshot -c sasl.conf -X sasl.mechanisms=NOPE -b 127.0.0.1:1 --timeout 200
check "-X on run too" 78 "${from_x/tally snapshot/tally run}" -- \
  timeout 20 "$tally" run -c sasl.conf -X sasl.mechanisms=NOPE
# Precedence: file < environment < -X, the last -X of a name winning.
check "environment over the file" 1 "" -- env TALLY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT \
  "$tally" snapshot -c nope.conf -b 127.0.0.1:1 --timeout 200
check "-X over the environment" 78 "tally snapshot: $nope" -- \
  env TALLY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT \
  "$tally" snapshot -c nope.conf -X security.protocol=SASL_PLAINTEXT -b 127.0.0.1:1 --timeout 200
check "-X over the file" 1 "" -- \
  "$tally" snapshot -c nope.conf -X security.protocol=PLAINTEXT -b 127.0.0.1:1 --timeout 200
check "the last -X wins" 1 "" -- "$tally" snapshot -c nope.conf -X security.protocol=SASL_SSL \
  -X security.protocol=PLAINTEXT -b 127.0.0.1:1 --timeout 200
check "-X bad value" 2 \
  'tally run: -X security.protocol: [kafka] security.protocol: librdkafka: Invalid value "tls" for configuration property "security.protocol"' -- \
  "$tally" run -c empty.conf -X security.protocol=tls
check "-X unknown property" 2 \
  'tally snapshot: -X bootstrap.server: [kafka] bootstrap.server: librdkafka: No such configuration property: "bootstrap.server"; did you mean bootstrap.servers?' -- \
  "$tally" snapshot -c empty.conf -X bootstrap.server=x
check "-X a property Tally owns" 2 \
  'tally run: -X group.id: [kafka] group.id: Tally sets this property from [input] group_id; set that instead' -- \
  "$tally" run -c empty.conf -X group.id=g
check "-X without =" 2 "tally run: -X wants a librdkafka property as name=value, not 'debug'" -- \
  "$tally" run -c empty.conf -X debug
check "-X empty value" 2 \
  "tally run: -X linger.ms: [kafka] linger.ms: empty value; leave it out to use librdkafka's default" -- \
  "$tally" run -c empty.conf -X linger.ms=
secret_warning='tally snapshot: warning: -X sasl.password puts a secret on the command line, where other users can read it (ps, /proc/PID/cmdline); set it in the configuration file or in the environment (TALLY_KAFKA_*) instead'
check "-X secret: warned, and the value never printed" 1 "$secret_warning" -- \
  "$tally" snapshot -c empty.conf -X sasl.password=hunter2 -b 127.0.0.1:1 --timeout 200
check "-X ssl.key.password warned" 2 \
  "${secret_warning//sasl.password/ssl.key.password}
tally snapshot: -X group.id: [kafka] group.id: Tally sets this property from [input] group_id; set that instead" -- \
  "$tally" snapshot -c empty.conf -X ssl.key.password=x -X group.id=g
check "-X not a secret: no warning" 1 "" -- \
  "$tally" snapshot -c empty.conf -X client.id=me -b 127.0.0.1:1 --timeout 200

# --- item 12: one meaning per short option ---------------------------------------------------
# Every "-x, --long" pair of every command's --help: a letter names one long option.
: >"$tmp/pairs"
for c in words count check-config print-config broker snapshot run; do
  "$tally" "$c" --help | sed -n 's/^  \(-[A-Za-z]\), \(--[a-z-]*\).*/\1 \2/p' >>"$tmp/pairs"
done
sort -u "$tmp/pairs" >"$tmp/unique"
cat >"$tmp/want" <<'EOF'
-J --json
-X --property
-b --bootstrap-server
-c --config
-f --format
-h --help
-j --jobs
-m --min-count
-n --top
-p --prefix
-q --quiet
-s --shards
-t --topics
-w --window
EOF
if diff -u "$tmp/want" "$tmp/unique"; then echo "ok short options"; else
  echo "FAIL short options: a letter with two meanings, or the table changed" >&2
  failures=$((failures + 1))
fi
check "snapshot -t is not --timeout any more" 2 "tally snapshot: Unknown option -t
Run 'tally snapshot --help' for the options." -- \
  "$tally" snapshot -t 5
check "snapshot --top abc" 2 "tally snapshot: Cannot parse integer value “abc” for --top
Run 'tally snapshot --help' for the options." -- \
  "$tally" snapshot --top abc
check "count -t is not --tokenizer any more" 2 "tally count: Unknown option -t
Run 'tally count --help' for the options." -- \
  "$tally" count -c empty.conf -t whitespace /dev/null

# --- item 12: tally help COMMAND --------------------------------------------------------------
for c in words count check-config print-config broker snapshot run; do
  "$tally" "$c" --help >"$tmp/want" 2>&1
  if "$tally" help "$c" >"$tmp/got" 2>&1 && cmp -s "$tmp/want" "$tmp/got" \
    && head -2 "$tmp/got" | grep -q "tally $c"; then
    echo "ok help $c"
  else
    echo "FAIL help $c: differs from 'tally $c --help'" >&2
    diff -u "$tmp/want" "$tmp/got" | head -10 >&2
    failures=$((failures + 1))
  fi
done
check "help of an unknown command" 2 "tally: unknown command 'nope'
Run 'tally --help' for the list of commands." -- "$tally" help nope
"$tally" --help >"$tmp/want"
if "$tally" help >"$tmp/got" && cmp -s "$tmp/want" "$tmp/got"; then echo "ok help"; else
  echo "FAIL help: differs from --help" >&2
  failures=$((failures + 1))
fi

# --- no broker: each librdkafka error printed once, not once per client and retry -------------
"$tally" snapshot -c empty.conf -b 127.0.0.1:1 --timeout 2500 >/dev/null 2>"$tmp/nobroker"
status=$?
n=$(grep -c '^tally snapshot: librdkafka: FAIL: .*Connection refused' "$tmp/nobroker")
last=$(tail -n 1 "$tmp/nobroker")
if [ "$status" = 1 ] && [ "$n" = 1 ] && [ "$(wc -l <"$tmp/nobroker")" = 2 ] \
  && [ "$last" = "tally snapshot: cannot read cluster metadata from 127.0.0.1:1: Local: Broker transport failure: check that a broker listens there (--bootstrap-server or [kafka] bootstrap.servers)" ]; then
  echo "ok snapshot without a broker: one connection error, then what to check, exit 1"
else
  echo "FAIL snapshot without a broker: exit $status, $n connection error line(s):" >&2
  sed 's/^/  /' "$tmp/nobroker" >&2
  failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all checks passed"
