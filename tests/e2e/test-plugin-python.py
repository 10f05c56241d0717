#!/usr/bin/python3
"""End-to-end check of the librdkafka plugin inside Python's confluent-kafka.

Debian's python3-confluent-kafka uses the system librdkafka, so it can load
libtally-rdkafka.so through `plugin.library.paths` (the PyPI wheels bundle their own
librdkafka, which may differ). A Consumer configured with the plugin (first) and
`tally.config` consumes a topic; a snapshot requested on the request topic
(tests/e2e/tally_client.py --caught-up) and the final snapshot published when the consumer
is closed must equal the reference counts (tests/reference/wordcount.py) of what it
consumed.

    test-plugin-python.py embedded   on `tally broker` (librdkafka's mock cluster)
    test-plugin-python.py real       on Apache Kafka at $TALLY_TEST_KAFKA_BOOTSTRAP; skipped
                                     (77) when unset, failed if TALLY_TEST_REQUIRE_KAFKA=1

Needs TALLY_EXE and TALLY_RDKAFKA_PLUGIN (set by meson test). Exit 0: every check passed.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from tally_client import REQUEST_PREFIX, Assembler, create_topics, format_counts, merge_counts

ROOT = os.environ.get("TALLY_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TALLY = os.environ.get("TALLY_EXE", os.path.join(ROOT, "build", "tally"))
PLUGIN = os.environ.get("TALLY_RDKAFKA_PLUGIN", os.path.join(ROOT, "build", "libtally-rdkafka.so"))
PY = "/usr/bin/python3"


def fail(msg):
    print("FAIL:", msg, file=sys.stderr, flush=True)
    sys.exit(1)


def ok(msg):
    print("ok:", msg, flush=True)


def reference(path):
    return subprocess.run([PY, os.path.join(ROOT, "tests", "reference", "wordcount.py"), path],
                          check=True, capture_output=True).stdout


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("embedded", "real"):
        print(__doc__, file=sys.stderr)
        return 2
    mode = sys.argv[1]
    try:
        from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    except ImportError:
        fail("python3-confluent-kafka is not installed (scripts/setup installs it)")
    if not os.path.exists(PLUGIN):
        fail("no plugin module at " + PLUGIN)

    work = tempfile.mkdtemp(prefix="tally-e2e-plugin-py.")
    ident = "plugin-py-%d-%d" % (os.getpid(), time.time_ns())
    inp, out, req = ident + "-input", ident + "-snapshots", ident + "-requests"
    broker = None
    try:
        if mode == "embedded":
            broker = subprocess.Popen([TALLY, "broker", "--partitions", "2", "-t", ",".join([inp, out, req])],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = broker.stdout.readline().decode().strip()
            if not line.startswith("bootstrap.servers="):
                fail("tally broker printed %r" % line)
            bootstrap = line.split("=", 1)[1]
        else:
            bootstrap = os.environ.get("TALLY_TEST_KAFKA_BOOTSTRAP", "")
            if not bootstrap:
                if os.environ.get("TALLY_TEST_REQUIRE_KAFKA") == "1":
                    fail("TALLY_TEST_REQUIRE_KAFKA=1 but TALLY_TEST_KAFKA_BOOTSTRAP is not set")
                print("skip: no real broker (TALLY_TEST_KAFKA_BOOTSTRAP is not set; scripts/check starts one)")
                return 77
            create_topics(bootstrap, [inp + ":2", out + ":1", req + ":1"],
                          lambda *words: fail(" ".join(str(w) for w in words)))

        # The input: tests/data/tricky.txt twice and numbered lines, one record per line,
        # alternately to partitions 0 and 1.
        with open(os.path.join(ROOT, "tests", "data", "tricky.txt"), "rb") as f:
            tricky = f.read()
        data = tricky + tricky + b"".join(b"python line %d\n" % i for i in range(150))
        lines = data.split(b"\n")[:-1]
        input_path = os.path.join(work, "input")
        with open(input_path, "wb") as f:
            f.write(data)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i, line in enumerate(lines):
            producer.produce(inp, value=line, partition=i % 2)
        if producer.flush(30) != 0:
            fail("input not delivered")
        expected = reference(input_path)

        conf_path = os.path.join(work, "tally.conf")
        with open(conf_path, "w") as f:
            f.write("[output]\ntopic=%s\n[requests]\ntopic=%s\n[aggregator]\nshards=2\n" % (out, req))

        # plugin.library.paths first: the tally.* properties exist only once it is loaded.
        consumer = Consumer({
            "plugin.library.paths": PLUGIN,
            "tally.config": conf_path,
            "tally.full": "wait",
            "tally.full.wait.ms": "1000",
            "bootstrap.servers": bootstrap,
            "group.id": ident,
            "enable.auto.commit": False,
        })
        consumer.assign([TopicPartition(inp, p, OFFSET_BEGINNING) for p in (0, 1)])
        got = 0
        deadline = time.time() + 60
        while got < len(lines):
            if time.time() > deadline:
                fail("consumed %d of %d records" % (got, len(lines)))
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got += 1
        ok("the consumer with the plugin consumed all %d records" % got)

        # A snapshot on request while the consumer is alive.
        snap = subprocess.run([PY, os.path.join(ROOT, "tests", "e2e", "tally_client.py"), "snapshot",
                               "-b", bootstrap, "--input", inp, "--requests", req, "--output", out,
                               "--caught-up", "--timeout", "120"], capture_output=True)
        if snap.returncode != 0:
            fail("no caught-up snapshot: " + snap.stderr.decode(errors="replace"))
        if snap.stdout != expected:
            fail("snapshot on request differs from the reference")
        ok("snapshot on request equals the reference counts")

        # close() destroys the consumer: the plugin publishes its final snapshot.
        consumer.close()
        del consumer

        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": ident + "-reader",
                           "enable.auto.commit": False})
        md = reader.list_topics(out, timeout=10)
        reader.assign([TopicPartition(out, p, OFFSET_BEGINNING) for p in md.topics[out].partitions])
        assembler = Assembler()
        deadline = time.time() + 60
        final = None
        while final is None:
            if time.time() > deadline:
                fail("no final snapshot on %s" % out)
            m = reader.poll(0.5)
            if m is None or m.error():
                continue
            p = json.loads(m.value())
            if p["request_id"].startswith(REQUEST_PREFIX):
                continue
            final = assembler.add(p)
        reader.close()
        if format_counts(merge_counts(final)) != expected:
            fail("the final snapshot differs from the reference")
        ok("the final snapshot published on close() equals the reference counts")
        return 0
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
