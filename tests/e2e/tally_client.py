#!/usr/bin/python3
"""A Kafka client for Tally's end-to-end tests, written on Python's Kafka clients.

It shares no code with Tally: it produces input records and reads snapshots back the way
any user's program would, with confluent-kafka (librdkafka) or kafka-python (a pure Python
implementation of the protocol).

    tally_client.py produce -b BOOTSTRAP -t TOPIC [--client confluent|kafka-python]
                            [--values FILE] [FILE...]
        Produces every line of the FILEs (without its line end) as one record value; an
        empty line is an empty value. With --values, FILE is a JSON list of values instead:
        a string (UTF-8), {"hex": "..."} (raw bytes) or null (a tombstone).

    tally_client.py snapshot -b BOOTSTRAP --input TOPIC [--requests TOPIC] [--output TOPIC]
                             [--client confluent|kafka-python] [--caught-up] [--timeout S]
                             [--top N] [--json]
        Sends a snapshot request (key = a fresh request id) to the request topic, reads the
        output topic until every part of the reply came, and prints `word count` lines, most
        frequent first, ties in byte order of the word (as tests/reference/wordcount.py).
        Replies of several instances (one consumer group) are merged until together they
        cover every partition of the input topic. With --caught-up it asks again until the
        offsets reach the high watermark of every input partition, so every produced record
        is reflected.
        --json prints the reassembled snapshot's metadata and counts as JSON instead.

    tally_client.py topics -b BOOTSTRAP NAME:PARTITIONS[:compact|:keep]...
        Creates the topics (replication factor 1; an existing topic is an error) and waits
        until every partition has a leader. `compact`: cleanup.policy=compact; `keep`:
        retention.ms=-1, for records with timestamps older than the broker's retention (the
        broker's retention check deletes those within minutes, log.retention.check.interval.ms).

    tally_client.py assemble [--not-requested] [--exactly-one] [FILE]
        Reads snapshot parts, one JSON record value a line (an output topic read with
        `kcat -C -e -D '\\n'`), and prints the last complete snapshot as `word count` lines.
        --not-requested skips the replies to this client's requests (request ids "e2e-...");
        --exactly-one fails unless the parts left belong to one snapshot.

The functions format_counts(), Assembler and create_topics() are also imported by
tests/e2e/test-plugin-python.py and tests/bench/e2e_client.py.

Exit status: 0 on success, 1 on a timeout or a bad snapshot.
"""

import argparse
import collections
import json
import sys
import time
import uuid


# Request ids of this client's snapshot requests start with this.
REQUEST_PREFIX = "e2e-"


def log(*args):
    print("tally_client:", *args, file=sys.stderr, flush=True)


def format_counts(counts):
    """`word count` lines (bytes) of @counts (a mapping or (word, count) pairs), most
    frequent first, ties in byte order of the word, as tests/reference/wordcount.py."""
    items = counts.items() if hasattr(counts, "items") else counts
    ordered = sorted(((w.encode("utf-8"), n) for w, n in items), key=lambda kv: (-kv[1], kv[0]))
    return b"".join(b"%s %d\n" % (w, n) for w, n in ordered)


def merge_counts(snapshot):
    """The counts of a list of parts (or of several snapshots' parts), summed per word."""
    counts = collections.Counter()
    for p in snapshot:
        for w, n in p["counts"]:
            counts[w] += n
    return counts


class Assembler:
    """Collects the parts of snapshots (decoded JSON) by snapshot id."""

    def __init__(self):
        self.pending = {}

    def add(self, part):
        """Returns the snapshot's parts in order once @part completes it, else None."""
        parts = self.pending.setdefault(part["snapshot_id"], {})
        parts[part["part"]] = part
        if len(parts) < part["parts"]:
            return None
        del self.pending[part["snapshot_id"]]
        return [parts[i] for i in range(part["parts"])]


def create_topics(bootstrap, specs, die):
    """Creates topics from NAME:PARTITIONS[:compact|:keep] @specs (replication factor 1) and waits
    until every partition has a leader, so that no client sees "not leader"; calls @die
    with a message on failure."""
    from confluent_kafka import Consumer, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = []
    for spec in specs:
        parts = spec.split(":")
        config = {"compact": {"cleanup.policy": "compact"},
                  "keep": {"retention.ms": "-1"}}.get(":".join(parts[2:]), {})
        new.append(NewTopic(parts[0], int(parts[1]), 1, config=config))
    for name, future in admin.create_topics(new).items():
        try:
            future.result(30)
        except KafkaException as e:
            die("cannot create topic", name + ":", e)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    deadline = time.time() + 30
    for topic in new:
        while True:
            md = consumer.list_topics(topic.topic, timeout=10).topics[topic.topic]
            if md.error is None and len(md.partitions) == topic.num_partitions and all(
                    p.leader >= 0 for p in md.partitions.values()):
                break
            if time.time() > deadline:
                die("topic", topic.topic, "has no leader for every partition")
            time.sleep(0.1)
    consumer.close()


def read_values(args):
    if args.values:
        with open(args.files[0], "rb") as f:
            items = json.load(f)
        out = []
        for item in items:
            if item is None:
                out.append(None)
            elif isinstance(item, dict):
                out.append(bytes.fromhex(item["hex"]))
            else:
                out.append(item.encode("utf-8"))
        return out
    out = []
    for name in args.files or ["-"]:
        data = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out.extend(lines)
    return out


def produce(args):
    values = read_values(args)
    if args.client == "confluent":
        from confluent_kafka import Producer

        failures = []

        def report(err, msg):
            if err is not None:
                failures.append(err)

        p = Producer({"bootstrap.servers": args.bootstrap, "message.max.bytes": 100000000,
                      "linger.ms": 5})
        for v in values:
            while True:
                try:
                    p.produce(args.topic, value=v, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        left = p.flush(60)
        if left or failures:
            log("produce failed:", left, "undelivered,", failures[:3])
            return 1
    else:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=args.bootstrap, max_request_size=100000000,
                          api_version=(2, 0, 0))
        futures = [p.send(args.topic, value=v) for v in values]
        p.flush(60)
        for f in futures:
            f.get(timeout=60)
        p.close()
    log("produced", len(values), "records to", args.topic, "with", args.client)
    return 0


class ConfluentIO:
    def __init__(self, bootstrap):
        from confluent_kafka import Consumer, Producer, TopicPartition

        self.TopicPartition = TopicPartition
        self.producer = Producer({"bootstrap.servers": bootstrap})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tally-client-" + uuid.uuid4().hex,
                                  "enable.auto.commit": False, "auto.offset.reset": "latest"})

    def partitions(self, topic):
        md = self.consumer.list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)

    def high_watermarks(self, topic):
        return {p: self.consumer.get_watermark_offsets(self.TopicPartition(topic, p), timeout=10)[1]
                for p in self.partitions(topic)}

    def listen(self, topic):
        ends = self.high_watermarks(topic)
        self.consumer.assign([self.TopicPartition(topic, p, o) for p, o in ends.items()])

    def request(self, topic, request_id, value):
        self.producer.produce(topic, key=request_id.encode(), value=value)
        self.producer.flush(10)

    def close(self):
        self.consumer.close()
        self.producer.flush(10)

    def poll(self, timeout):
        m = self.consumer.poll(timeout)
        if m is None or m.error():
            return None
        return m.value()


class KafkaPythonIO:
    def __init__(self, bootstrap):
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        self.TopicPartition = TopicPartition
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=(2, 0, 0))
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      api_version=(2, 0, 0))
        self.pending = []

    def partitions(self, topic):
        for _ in range(50):
            parts = self.consumer.partitions_for_topic(topic)
            if parts:
                return sorted(parts)
            time.sleep(0.2)
        raise RuntimeError("no metadata for " + topic)

    def high_watermarks(self, topic):
        tps = [self.TopicPartition(topic, p) for p in self.partitions(topic)]
        return {tp.partition: o for tp, o in self.consumer.end_offsets(tps).items()}

    def listen(self, topic):
        ends = self.high_watermarks(topic)
        tps = [self.TopicPartition(topic, p) for p in ends]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, ends[tp.partition])

    def request(self, topic, request_id, value):
        self.producer.send(topic, key=request_id.encode(), value=value).get(timeout=10)

    def close(self):
        self.consumer.close(autocommit=False)
        self.producer.close(10)

    def poll(self, timeout):
        if not self.pending:
            batches = self.consumer.poll(timeout_ms=int(timeout * 1000))
            for records in batches.values():
                self.pending.extend(r.value for r in records)
        return self.pending.pop(0) if self.pending else None


class Overlap(Exception):
    pass


def ask(io, args, request_id, wanted, timeout):
    """Sends one request and returns the merged reply of every instance: the reassembled
    snapshots whose partitions together cover @wanted (a set of (topic, partition))."""
    value = json.dumps({"top": args.top}).encode() if args.top else b""
    io.request(args.requests, request_id, value)
    assembler = Assembler()
    complete = []
    covered = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = io.poll(0.5)
        if v is None:
            continue
        part = json.loads(v)
        if part.get("request_id") != request_id:
            continue
        if "error" in part and part["error"]:
            raise RuntimeError("error snapshot: " + str(part["error"]))
        snap = assembler.add(part)
        if snap is None:
            continue
        mine = {(p["topic"], p["partition"]) for p in part["partitions"]}
        if mine & covered:
            raise Overlap("two instances claim %s" % sorted(mine & covered))
        covered |= mine
        complete.append(snap)
        if wanted <= covered:
            counts = merge_counts(p for snap in complete for p in snap)
            offsets = [o for snap in complete for o in snap[0]["offsets"]]
            return {"request_id": request_id, "instances": len(complete), "offsets": offsets,
                    "counts": sorted(counts.items())}
    raise TimeoutError("no complete reply to request %s (covered %d of %d partitions)"
                       % (request_id, len(covered), len(wanted)))


def snapshot(args):
    io = ConfluentIO(args.bootstrap) if args.client == "confluent" else KafkaPythonIO(args.bootstrap)
    io.listen(args.output)
    deadline = time.time() + args.timeout
    while True:
        ends = io.high_watermarks(args.input)
        try:
            snap = ask(io, args, REQUEST_PREFIX + uuid.uuid4().hex, {(args.input, p) for p in ends},
                       min(15.0, max(deadline - time.time(), 1.0)))
        except (Overlap, TimeoutError) as e:
            if time.time() > deadline:
                raise
            log(e, "(a rebalance in progress?); asking again")
            time.sleep(0.5)
            continue
        if not args.caught_up:
            break
        ends = io.high_watermarks(args.input)
        have = {o["partition"]: o["offset"] for o in snap.get("offsets", []) if o["topic"] == args.input}
        behind = {p: (max(have.get(p, 0), 0), e) for p, e in ends.items() if max(have.get(p, 0), 0) < e}
        if not behind:
            break
        if time.time() > deadline:
            log("not caught up:", behind)
            return 1
        time.sleep(0.5)
    io.close()
    if args.json:
        json.dump(snap, sys.stdout)
        sys.stdout.write("\n")
        return 0
    sys.stdout.buffer.write(format_counts(snap["counts"]))
    return 0


def topics(args):
    def die(*words):
        raise RuntimeError(" ".join(str(w) for w in words))

    create_topics(args.bootstrap, args.specs, die)
    return 0


def assemble(args):
    f = open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin
    assembler = Assembler()
    ids = set()
    last = None
    for line in f:
        if not line.strip():
            continue
        part = json.loads(line)
        if args.not_requested and part["request_id"].startswith(REQUEST_PREFIX):
            continue
        ids.add(part["snapshot_id"])
        last = assembler.add(part) or last
    if args.exactly_one and len(ids) != 1:
        raise RuntimeError("%d snapshots, expected exactly one" % len(ids))
    if last is None:
        raise RuntimeError("no complete snapshot")
    log("last snapshot:", last[0]["snapshot_id"], "request", last[0].get("request_id"))
    sys.stdout.buffer.write(format_counts(merge_counts(last)))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("--client", choices=("confluent", "kafka-python"), default="confluent")
    p.add_argument("--values", action="store_true")
    p.add_argument("files", nargs="*")
    s = sub.add_parser("snapshot")
    s.add_argument("-b", "--bootstrap", required=True)
    s.add_argument("--input", default="tally-input")
    s.add_argument("--requests", default="tally-requests")
    s.add_argument("--output", default="tally-snapshots")
    s.add_argument("--client", choices=("confluent", "kafka-python"), default="confluent")
    s.add_argument("--caught-up", action="store_true")
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--top", type=int, default=0)
    s.add_argument("--json", action="store_true")
    t = sub.add_parser("topics")
    t.add_argument("-b", "--bootstrap", required=True)
    t.add_argument("specs", nargs="+")
    a = sub.add_parser("assemble")
    a.add_argument("--not-requested", action="store_true")
    a.add_argument("--exactly-one", action="store_true")
    a.add_argument("file", nargs="?", default="-")
    args = ap.parse_args()
    try:
        return {"produce": produce, "snapshot": snapshot, "topics": topics,
                "assemble": assemble}[args.command](args)
    except (TimeoutError, RuntimeError) as e:
        log(e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
