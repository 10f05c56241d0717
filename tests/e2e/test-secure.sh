#!/usr/bin/env bash
# End-to-end checks on a secured Apache Kafka: SASL_SSL with SCRAM-SHA-512 and ACLs
# (deploy/kafka-local start --secure, its own broker on its own ports, so the plaintext
# broker of scripts/check is never disturbed).
#
#   count     `tally run` and `tally snapshot` as the user `tally` (exactly the ACLs of
#             `kafka-local tally-acls`), the password from [kafka] sasl.password.file:
#             exact counts; then the plugin in kcat (its key-file without [kafka]: its
#             clients inherit kcat's SASL_SSL properties) and in Python's confluent-kafka
#             count the same input exactly
#   failures  a wrong password, an unknown CA, the user `nobody`, and one user for each
#             missing ACL (input Read, changelog Write, output Write, group Read): each
#             `tally run` exits 78 within 60 s with a message naming what is wrong; then
#             `tally snapshot` with the wrong password, the unknown CA, as `nobody` and as
#             one user for each ACL it needs (input Describe, requests Write, output
#             Read, Describe on groups prefixed tally-): exit 78 and the exact message, never its --timeout;
#             the time each took is printed
#   all       both, on one broker (the suite registered in tests/meson.build)
#
# Every case ends with the secrets check: no password of any user appears in any output
# of the suite (logs, standard output, snapshots, print-config).
#
# Runs with the real-broker suites only (TALLY_TEST_KAFKA_BOOTSTRAP set, as scripts/check
# does; skipped with 77 otherwise). Ports: TALLY_TEST_SECURE_PORT and the next one for the
# KRaft controller; by default two ports that are free now, chosen at random below the
# kernel's ephemeral range, so that two runs on one machine do not meet.
set -euo pipefail

mode=${1:-all}
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
plugin=${TALLY_RDKAFKA_PLUGIN:-$root/build/libtally-rdkafka.so}
case "$mode" in
count | failures | all) ;;
*)
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
need_real_kafka
e2e_init tally-e2e-secure

# free_port_pair: prints PORT such that 127.0.0.1:PORT and PORT+1 can be bound now, picked
# at random from 20000 up to the kernel's ephemeral range (where clients' own ports come from)
free_port_pair() {
  $py - <<'EOF'
import random, socket
with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    top = min(int(f.read().split()[0]), 65535) - 2
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
for _ in range(200):
    port = random.randrange(20000, top)
    if free(port) and free(port + 1):
        print(port)
        break
else:
    raise SystemExit("no two free ports found")
EOF
}
port=${TALLY_TEST_SECURE_PORT:-$(free_port_pair)} || fail "no free ports for the secured broker"
export KAFKA_LOCAL_PORT=$port KAFKA_LOCAL_CONTROLLER_PORT=$((port + 1))
export KAFKA_LOCAL_STATE=$work/kafka KAFKA_LOCAL_SECURE=1
export KAFKA_LOCAL_USERS="tally-no-input tally-no-changelog tally-no-output tally-no-group snap-no-input snap-no-requests snap-no-output snap-no-group"
kafka_local="$root/deploy/kafka-local"
secrets=$work/secrets # password files and kcat configurations: the only files allowed to hold one
mkdir -m 700 "$secrets"

own_broker=1
"$kafka_local" start >"$work/kafka-local.out" 2>"$work/kafka-local.log" || fail "the secured broker did not start"
bootstrap=$("$kafka_local" bootstrap)
users_dir=$KAFKA_LOCAL_STATE/users
ca=$KAFKA_LOCAL_STATE/tls/ca.pem
ok "secured broker at $bootstrap (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer)"

# password_file USER [PASSWORD]: a private file with USER's password (or PASSWORD); prints its path
password_file() {
  local f=$secrets/$1.password
  (umask 077 && if [ -n "${2:-}" ]; then echo "$2" >"$f"; else cp "$users_dir/$1.password" "$f"; fi)
  echo "$f"
}

# write_conf FILE USER PASSWORD_FILE [CA] NAMES...: a tally.conf for USER on the names
# INPUT CHANGELOG OUTPUT REQUESTS GROUP, snapshots every second
write_conf() {
  local file=$1 user=$2 pwfile=$3 cafile=$4
  cat >"$file" <<EOF
[kafka]
bootstrap.servers=$bootstrap
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$user
sasl.password.file=$pwfile
ssl.ca.location=$cafile
session.timeout.ms=6000
[input]
topics=$5
group_id=$9
[checkpoint]
changelog_topic=$6
[output]
topic=$7
[requests]
topic=$8
[snapshot]
interval_ms=1000
[aggregator]
shards=2
EOF
}

# kcat as the admin user (a super user): kcat_admin KCAT_ARGS...
kcat_config() {
  local f=$secrets/$1.kcat
  if [ ! -f "$f" ]; then
    (umask 077 && { "$kafka_local" client-config "$1"; echo "sasl.password=$(cat "$users_dir/$1.password")"; } >"$f")
  fi
  echo "$f"
}
kcat_admin() { kcat -F "$(kcat_config admin)" "$@" 2>>"$work/kcat.log"; }

# The input: tests/data/tricky.txt three times and numbered lines, half to each partition.
for i in 1 2 3; do cat "$root/tests/data/tricky.txt"; done >"$work/input"
seq 1 200 | sed 's/^/line number /' >>"$work/input"
$reference "$work/input" >"$work/expected"
half=$(($(wc -l <"$work/input") / 2))
produce_input() {
  head -n "$half" "$work/input" | kcat_admin -P -t "$1" -p 0
  tail -n +"$((half + 1))" "$work/input" | kcat_admin -P -t "$1" -p 1
}

# snapshot_until_expected NAME CONF: `tally snapshot` again every second until its counts
# equal $work/expected (a snapshot reflects what was counted when it was taken), 90 s at
# most
snapshot_until_expected() {
  local name=$1 conf=$2 i
  for ((i = 0; i < 90; i++)); do
    "$tally" snapshot -c "$conf" --timeout 30000 >"$work/$name.out" 2>>"$work/$name.log" || fail "$name: tally snapshot failed"
    if cmp -s "$work/expected" "$work/$name.out"; then return 0; fi
    sleep 1
  done
}

secrets_check() {
  local u found=0 pw
  for u in admin tally nobody $KAFKA_LOCAL_USERS; do
    pw=$(cat "$users_dir/$u.password")
    if grep -rlF --exclude-dir=kafka --exclude-dir=secrets -e "$pw" "$work" >"$work/leaks.txt"; then
      echo "password of $u found in: $(tr '\n' ' ' <"$work/leaks.txt")" >&2
      found=1
    fi
  done
  if grep -rlF --exclude-dir=kafka --exclude-dir=secrets -e "$wrong_password" "$work" >"$work/leaks.txt"; then
    echo "the wrong password found in: $(tr '\n' ' ' <"$work/leaks.txt")" >&2
    found=1
  fi
  [ "$found" = 0 ] || fail "a password appears in the suite's output"
  ok "no password of any user in any of the $(find "$work" -path "$KAFKA_LOCAL_STATE" -prune -o -path "$secrets" -prune -o -type f -print | wc -l) output files"
}
wrong_password=wrong-$RANDOM-password

case_count() {
  local conf=$work/tally.conf
  echo "topic tally-input 2" | "$kafka_local" admin 2>>"$work/kafka-local.log" || fail "cannot create tally-input"
  produce_input tally-input
  write_conf "$conf" tally "$(password_file tally)" "$ca" tally-input tally-changelog tally-snapshots tally-requests tally
  "$tally" print-config -c "$conf" >"$work/print-config.out" 2>&1 || fail "print-config failed"
  grep -qx 'sasl.password=<redacted>' "$work/print-config.out" || fail "print-config does not show the password redacted"

  start_tally run "$conf"
  ok "tally run as user tally over SASL_SSL got its partitions"
  snapshot_until_expected snapshot "$conf"
  expect_file "tally snapshot over SASL_SSL equals the reference counts" "$work/expected" "$work/snapshot.out"
  stop_tally TERM
  ok "tally run stopped cleanly"

  # The plugin in kcat, as the user tally, reading both partitions from the start. Its
  # key-file has no [kafka] group: the plugin's own producer and request consumer reach the
  # cluster with kcat's connection properties (bootstrap.servers, security.protocol, sasl.*,
  # ssl.*; docs/plugin.md), so the snapshot shows they are inherited.
  sed '/^\[kafka\]/,/^\[input\]/{/^\[input\]/!d}' "$conf" >"$work/plugin.conf"
  ! grep -q -e '^\[kafka\]' -e '^sasl' -e '^ssl' -e '^security' "$work/plugin.conf" || fail "plugin.conf has a [kafka] group"
  kcat -F "$(kcat_config tally)" -C -t tally-input -o beginning -q -u \
    -X plugin.library.paths="$plugin" -X tally.config="$work/plugin.conf" \
    >"$work/kcat-consumed.out" 2>"$work/kcat-plugin.log" &
  local kcat_pid=$!
  pids+=("$kcat_pid")
  wait_for_line "$work/kcat-plugin.log" 'tally plugin .*counting words' 30 >/dev/null || fail "the plugin did not attach to kcat"
  snapshot_until_expected snapshot-kcat "$conf"
  expect_file "the plugin in kcat over SASL_SSL counts exactly" "$work/expected" "$work/snapshot-kcat.out"
  kill -TERM "$kcat_pid"
  wait_exit "$kcat_pid" 300 || fail "kcat did not exit"

  # The plugin in Python's confluent-kafka, as the user tally.
  TALLY_PW_FILE=$secrets/tally.password CA=$ca BOOTSTRAP=$bootstrap PLUGIN=$plugin CONF=$conf \
    $py - >"$work/python-plugin.out" 2>"$work/python-plugin.log" <<'EOF' &
import os, signal, sys
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
pw = open(os.environ["TALLY_PW_FILE"]).read().strip()
c = Consumer({"plugin.library.paths": os.environ["PLUGIN"], "tally.config": os.environ["CONF"],
              "bootstrap.servers": os.environ["BOOTSTRAP"], "security.protocol": "SASL_SSL",
              "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "tally", "sasl.password": pw,
              "ssl.ca.location": os.environ["CA"], "group.id": "tally",
              "enable.auto.commit": False})
c.assign([TopicPartition("tally-input", p, OFFSET_BEGINNING) for p in (0, 1)])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
n = 0
while not stop:
    m = c.poll(0.2)
    if m is not None and m.error() is None:
        n += 1
print("consumed", n, flush=True)
c.close()
EOF
  local py_pid=$!
  pids+=("$py_pid")
  wait_for_line "$work/python-plugin.log" 'tally plugin .*counting words' 30 >/dev/null || fail "the plugin did not attach to Python"
  snapshot_until_expected snapshot-python "$conf"
  expect_file "the plugin in Python over SASL_SSL counts exactly" "$work/expected" "$work/snapshot-python.out"
  kill -TERM "$py_pid"
  wait_exit "$py_pid" 300 || fail "python did not exit"
}

# expect_config_failure NAME CONF REGEX: tally run exits 78 within 60 s, stderr matching REGEX
expect_config_failure() {
  local name=$1 conf=$2 regex=$3 t0 t1 status=0
  t0=$(date +%s%N)
  timeout 60 "$tally" run -c "$conf" >"$work/fail-$name.out" 2>"$work/fail-$name.log" || status=$?
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000))
  [ "$status" = 78 ] || fail "$name: tally run exited with status $status after ${ms} ms, not 78"
  local line
  line=$(grep -E "^tally run: .*$regex" "$work/fail-$name.log" | tail -n 1) || fail "$name: no error matching /$regex/"
  ok "$name: status 78 after ${ms} ms: $line"
  echo "$name ${ms}ms $line" >>"$work/failures.txt"
}

# expect_snapshot_failure NAME CONF REGEX: tally snapshot (--timeout 30000) exits 78; the
# last line of its standard error matches REGEX whole (^tally snapshot: is prepended), and
# every line before it is one of librdkafka's log lines
expect_snapshot_failure() {
  local name=snapshot-$1 conf=$2 regex="^tally snapshot: $3\$" t0 t1 status=0
  t0=$(date +%s%N)
  timeout 60 "$tally" snapshot -c "$conf" --timeout 30000 >"$work/fail-$name.out" 2>"$work/fail-$name.log" || status=$?
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000)) line
  [ "$status" = 78 ] || fail "$name: tally snapshot exited with status $status after ${ms} ms, not 78"
  [ ! -s "$work/fail-$name.out" ] || fail "$name: tally snapshot printed counts"
  line=$(tail -n 1 "$work/fail-$name.log")
  grep -qE "$regex" <<<"$line" || fail "$name: the last line is not /$regex/: $line"
  if head -n -1 "$work/fail-$name.log" | grep -v '^tally snapshot: librdkafka: ' >"$work/fail-$name.other"; then
    fail "$name: more than librdkafka's lines before the error: $(cat "$work/fail-$name.other")"
  fi
  ok "$name: status 78 after ${ms} ms: $line"
  echo "$name ${ms}ms $line" >>"$work/failures.txt"
}

case_failures() {
  local u names admin_cmds=$work/admin-failures.txt
  : >"$admin_cmds"
  # One set of names per user, each with the ACLs of `tally-acls` but one.
  declare -A drop=(
    [tally-no-input]="Topic Literal sec-tally-no-input-input Read"
    [tally-no-changelog]="Topic Literal sec-tally-no-changelog-changelog Write"
    [tally-no-output]="Topic Literal sec-tally-no-output-snapshots Write"
    [tally-no-group]="Group Literal sec-tally-no-group Read"
    [snap-no-input]="Topic Literal sec-snap-no-input-input " # Read and Describe
    [snap-no-requests]="Topic Literal sec-snap-no-requests-requests Write"
    [snap-no-output]="Topic Literal sec-snap-no-output-snapshots Read"
    [snap-no-group]="Group Prefixed tally- Describe"
  )
  for u in $KAFKA_LOCAL_USERS nobody; do
    names="sec-$u-input sec-$u-changelog sec-$u-snapshots sec-$u-requests sec-$u"
    # shellcheck disable=SC2086 # names are words
    set -- $names
    { echo "topic $1 2"; echo "topic $2 2 cleanup.policy=compact"; echo "topic $3 1"; echo "topic $4 1"; } >>"$admin_cmds"
    if [ "$u" != nobody ]; then
      # shellcheck disable=SC2086
      "$kafka_local" tally-acls "$u" $names | grep -vF " ${drop[$u]}" >>"$admin_cmds"
    fi
    # shellcheck disable=SC2086
    write_conf "$work/$u.conf" "$u" "$(password_file "$u")" "$ca" $names
  done
  "$kafka_local" admin <"$admin_cmds" 2>>"$work/kafka-local.log" || fail "cannot set up the failure users' topics and ACLs"
  for u in tally-no-input tally-no-changelog tally-no-output tally-no-group; do produce_input "sec-$u-input"; done

  write_conf "$work/wrong-password.conf" tally "$(password_file wrong "$wrong_password")" "$ca" \
    tally-input tally-changelog tally-snapshots tally-requests tally
  expect_config_failure wrong-password "$work/wrong-password.conf" 'authentication failed'
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=unknown CA" -keyout "$secrets/other-ca.key" \
    -out "$work/other-ca.pem" 2>>"$work/openssl.log" || fail "openssl failed"
  write_conf "$work/unknown-ca.conf" tally "$(password_file tally)" "$work/other-ca.pem" \
    tally-input tally-changelog tally-snapshots tally-requests tally
  expect_config_failure unknown-ca "$work/unknown-ca.conf" 'TLS failed'
  expect_config_failure nobody "$work/nobody.conf" 'topic sec-nobody-input: not authorized'
  expect_config_failure no-input-read "$work/tally-no-input.conf" 'input consumer: sec-tally-no-input-input: not authorized for the topic'
  expect_config_failure no-changelog-write "$work/tally-no-changelog.conf" 'changelog producer: sec-tally-no-changelog-changelog: not authorized for the topic'
  expect_config_failure no-output-write "$work/tally-no-output.conf" 'snapshot publisher: sec-tally-no-output-snapshots: not authorized for the topic'
  expect_config_failure no-group-read "$work/tally-no-group.conf" 'not authorized for the consumer group'

  # tally snapshot: the same faults, and the ACLs of its own (deploy/README.md). The
  # authentication and TLS failures are reported by whichever client meets them first, the
  # TLS one in either of the two texts librdkafka 2.0.2 logs for it.
  local client='(snapshot consumer|request producer)' topic_advice
  topic_advice='not authorized for the topic: grant the principal the topic ACLs Tally needs \(deploy/README.md\)'
  expect_snapshot_failure wrong-password "$work/wrong-password.conf" \
    "$client: authentication failed: check \[kafka\] sasl.username, sasl.password \(or sasl.password.file\) and sasl.mechanisms \(_AUTHENTICATION: sasl_ssl://$bootstrap/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 \(after [0-9]+ms in state AUTH_REQ[^)]*\)\)"
  expect_snapshot_failure unknown-ca "$work/unknown-ca.conf" \
    "$client: TLS failed: check \[kafka\] ssl.ca.location \(the CA that signed the broker's certificate\) and that bootstrap.servers names a host the certificate is for \(_SSL: sasl_ssl://$bootstrap/bootstrap: (SSL handshake failed: )?error:[0-9A-F]+:SSL routines::certificate verify failed(: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed \(install ca-certificates package\))? \(after [0-9]+ms in state SSL_HANDSHAKE[^)]*\)\)"
  expect_snapshot_failure nobody "$work/nobody.conf" \
    "snapshot consumer: sec-nobody-input: $topic_advice \(TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed\)"
  expect_snapshot_failure no-input-describe "$work/snap-no-input.conf" \
    "snapshot consumer: sec-snap-no-input-input: $topic_advice \(TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed\)"
  expect_snapshot_failure no-requests-write "$work/snap-no-requests.conf" \
    "request producer: sec-snap-no-requests-requests: $topic_advice \(TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed\)"
  expect_snapshot_failure no-output-read "$work/snap-no-output.conf" \
    "snapshot consumer: sec-snap-no-output-snapshots: $topic_advice \(TOPIC_AUTHORIZATION_FAILED: Fetch from broker 1 failed: Broker: Topic authorization failed\)"
  expect_snapshot_failure no-group-describe "$work/snap-no-group.conf" \
    "snapshot consumer: tally-snapshot-[0-9a-f]{8}: not authorized for the consumer group: grant the principal Read on the group \(\[input\] group_id\) and Describe on groups prefixed tally- \(deploy/README.md\) \(GROUP_AUTHORIZATION_FAILED: FindCoordinator response error: Group authorization failed.\)"
  cat "$work/failures.txt"
}

case "$mode" in
count) case_count ;;
failures) case_failures ;;
all)
  case_count
  case_failures
  ;;
esac
secrets_check
