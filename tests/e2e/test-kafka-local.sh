#!/usr/bin/env bash
# End-to-end checks of the real Apache Kafka broker that deploy/kafka-local runs, with
# clients no one here wrote: kcat and confluent-kafka-python (both on librdkafka).
#
#   test-kafka-local.sh answers    against the broker at $TALLY_TEST_KAFKA_BOOTSTRAP:
#                                  create topics with the Admin API (explicit partition
#                                  count, a compacted topic), produce keyed records with a
#                                  header and a 5 MiB record with kcat, consume them back
#                                  and compare exact values, commit a consumer group offset.
#   test-kafka-local.sh lifecycle  a second broker of its own on other ports
#                                  (TALLY_TEST_KAFKA_LIFECYCLE_PORT, default 19192, and the
#                                  next port): start twice, restart-broker keeps records,
#                                  stop leaves nothing behind and is safe twice.
#
# Both run only when a real broker is wanted, that is when TALLY_TEST_KAFKA_BOOTSTRAP is
# set (scripts/check sets it); otherwise they exit 77 (skipped), or fail when
# TALLY_TEST_REQUIRE_KAFKA=1. Exit status 0 means every check passed.
set -euo pipefail

mode=${1:-}
root=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
kafka_local="$root/deploy/kafka-local"
# Debian's python3, which has python3-confluent-kafka (another python3 may come first on PATH).
py=/usr/bin/python3

# True while process $1 exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] && [ "$(sed 's/^[0-9]* (.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# expect NAME EXPECTED ACTUAL
expect() {
  if [ "$2" != "$3" ]; then
    printf 'FAIL: %s\n--- expected\n%s\n--- actual\n%s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
  ok "$1"
}

if [ -z "${TALLY_TEST_KAFKA_BOOTSTRAP:-}" ]; then
  if [ "${TALLY_TEST_REQUIRE_KAFKA:-0}" = 1 ]; then
    fail "TALLY_TEST_REQUIRE_KAFKA=1 but TALLY_TEST_KAFKA_BOOTSTRAP is not set"
  fi
  echo "skip: no real broker (TALLY_TEST_KAFKA_BOOTSTRAP is not set; scripts/check starts one)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-e2e-kafka-local.XXXXXX")
cleanup_extra=:
trap 'eval "$cleanup_extra"; rm -rf "$work"' EXIT

test_answers() {
  local bs=$TALLY_TEST_KAFKA_BOOTSTRAP
  local topic
  topic="tally-e2e-kl-$$-$(date +%s%N)"
  local compacted="$topic-compacted"

  # Admin API: a 3-partition topic (the broker's default is 4) and a compacted topic.
  local out
  out=$("$py" - "$bs" "$topic" "$compacted" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
bs, topic, compacted = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": bs})
futures = admin.create_topics([
    NewTopic(topic, num_partitions=3, replication_factor=1),
    NewTopic(compacted, num_partitions=1, replication_factor=1,
             config={"cleanup.policy": "compact"}),
], request_timeout=30)
for f in futures.values():
    f.result(timeout=30)
res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, compacted)])
for f in res.values():
    print("cleanup.policy=" + f.result(timeout=30)["cleanup.policy"].value)
EOF
)
  expect "Admin API creates a compacted topic" "cleanup.policy=compact" "$out"

  local meta
  meta=$(kcat -L -b "$bs" -t "$topic" -m 10)
  echo "$meta" | grep -qF "topic \"$topic\" with 3 partitions:" ||
    fail "metadata of $topic does not show 3 partitions: $meta"
  ok "metadata shows $topic with 3 partitions"

  # Keyed records with a header into partition 0, read back in order with offsets.
  printf 'k1:alpha\nk2:na\xc3\xafve caf\xc3\xa9\nk1:beta\n' |
    kcat -P -b "$bs" -t "$topic" -p 0 -K: -H request-id=42
  expect "keyed records in partition 0" \
    "$(printf '0 0 k1=alpha request-id=42\n0 1 k2=na\xc3\xafve caf\xc3\xa9 request-id=42\n0 2 k1=beta request-id=42')" \
    "$(kcat -C -b "$bs" -t "$topic" -p 0 -o beginning -e -q -f '%p %o %k=%s %h\n')"

  # A 5 MiB record (larger than librdkafka's default message.max.bytes of 1000000).
  seq 1 1000000 >"$work/numbers" # 6888896 bytes
  head -c 5242880 "$work/numbers" >"$work/big"
  expect "5 MiB input size" 5242880 "$(stat -c %s "$work/big")"
  kcat -P -b "$bs" -t "$topic" -p 1 -X message.max.bytes=10485760 "$work/big"
  kcat -C -b "$bs" -t "$topic" -p 1 -o beginning -c 1 -q -f '%s' >"$work/big.out"
  cmp "$work/big" "$work/big.out" || fail "the 5 MiB record came back different"
  ok "5 MiB record round trip (cmp equal)"
  expect "5 MiB record size and offset" "1 0 5242880" \
    "$(kcat -C -b "$bs" -t "$topic" -p 1 -o beginning -c 1 -q -f '%p %o %S\n')"

  # A consumer group reads partition 0 and commits; the committed offset is 3.
  out=$("$py" - "$bs" "$topic" <<'EOF'
import sys
from confluent_kafka import Consumer, TopicPartition
bs, topic = sys.argv[1:3]
c = Consumer({"bootstrap.servers": bs, "group.id": topic + "-group",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"})
c.assign([TopicPartition(topic, 0, 0)])
values = []
while len(values) < 3:
    m = c.poll(30)
    if m is None:
        sys.exit("no record within 30 s")
    if m.error():
        sys.exit(str(m.error()))
    values.append(m.value().decode())
c.commit(asynchronous=False)
print("values=" + ",".join(values))
print("committed=%d" % c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset)
c.close()
EOF
)
  expect "consumer group reads and commits" \
    "$(printf 'values=alpha,na\xc3\xafve caf\xc3\xa9,beta\ncommitted=3')" "$out"
}

lc_env() {
  KAFKA_LOCAL_PORT=$lc_port KAFKA_LOCAL_CONTROLLER_PORT=$((lc_port + 1)) \
    TMPDIR="$work/tmp" KAFKA_LOCAL_STATE='' "$@"
}

test_lifecycle() {
  lc_port=${TALLY_TEST_KAFKA_LIFECYCLE_PORT:-19192}
  local addr="127.0.0.1:$lc_port" state="$work/tmp/tally-kafka-$lc_port"
  mkdir -p "$work/tmp"
  unset KAFKA_LOCAL_STATE
  # shellcheck disable=SC2016 # expanded when the EXIT trap runs
  cleanup_extra='lc_env "$kafka_local" stop >/dev/null 2>&1 || true'

  local rc=0
  lc_env "$kafka_local" status >/dev/null || rc=$?
  expect "status before start exits 3" 3 "$rc"

  expect "start prints the bootstrap address" "$addr" "$(lc_env "$kafka_local" start)"
  [ -f "$state/server.properties" ] || fail "no $state/server.properties"
  local pid1
  pid1=$(cat "$state/broker.pid")
  expect "second start prints the address" "$addr" "$(lc_env "$kafka_local" start)"
  expect "second start keeps the broker" "$pid1" "$(cat "$state/broker.pid")"
  expect "bootstrap" "$addr" "$(lc_env "$kafka_local" bootstrap)"
  lc_env "$kafka_local" status >/dev/null || fail "status exits $? while running"
  ok "status exits 0 while running"

  # Auto-created topic (num.partitions=4), three records, then a broker restart.
  printf 'one\ntwo\nthree\n' | kcat -P -b "$addr" -t lifecycle -p 0 -X acks=all
  kcat -L -b "$addr" -t lifecycle -m 10 | grep -qF 'topic "lifecycle" with 4 partitions:' ||
    fail "auto-created topic does not have 4 partitions"
  ok "auto-created topic has 4 partitions"

  expect "restart-broker prints the address" "$addr" "$(lc_env "$kafka_local" restart-broker)"
  local pid2
  pid2=$(cat "$state/broker.pid")
  [ "$pid2" != "$pid1" ] || fail "restart-broker left pid $pid1 running"
  alive "$pid1" && fail "old broker pid $pid1 still alive"
  ok "restart-broker replaced pid $pid1 by $pid2"
  expect "records survive restart-broker" "$(printf '0 one\n1 two\n2 three')" \
    "$(kcat -C -b "$addr" -t lifecycle -p 0 -o beginning -e -q -f '%o %s\n')"

  lc_env "$kafka_local" stop
  alive "$pid2" && fail "broker pid $pid2 alive after stop"
  [ ! -e "$state" ] || fail "$state left behind after stop"
  expect "nothing left in TMPDIR after stop" "" "$(ls -A "$work/tmp")"
  (exec 3<>"/dev/tcp/127.0.0.1/$lc_port") 2>/dev/null && fail "port $lc_port still open"
  ok "port $lc_port closed after stop"
  rc=0
  lc_env "$kafka_local" status >/dev/null || rc=$?
  expect "status after stop exits 3" 3 "$rc"
  lc_env "$kafka_local" stop || fail "second stop exits $?"
  ok "second stop exits 0"
  cleanup_extra=:
}

case "$mode" in
  answers) test_answers ;;
  lifecycle) test_lifecycle ;;
  *) fail "usage: $0 answers|lifecycle" ;;
esac
echo "PASS: $mode"
