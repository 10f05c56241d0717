#!/usr/bin/python3
"""Kafka-side helpers of the end-to-end benchmark (tests/bench/e2e.sh).

Debian's python3 with python3-confluent-kafka (librdkafka underneath), run by e2e.sh:

  e2e_client.py topics -b HOST:PORT NAME:PARTITIONS[:compact]...
      create topics (replication factor 1); an existing topic is an error (the same as
      tests/e2e/tally_client.py topics)
  e2e_client.py ends -b HOST:PORT TOPIC
      print `PARTITION END_OFFSET` per partition (the high watermarks)
  e2e_client.py caught-up -b HOST:PORT --input T --requests R --output O [--ready FILE]
                          [--log FILE] [--timeout S]
      connect and warm up first (a record produced to R before Tally starts, which Tally's
      request reader never reads, and one to O read back, so that neither the producer's
      first metadata request nor the consumer's first fetch is timed), then create the
      --ready FILE and wait until the --log FILE (Tally's standard error) says "running:";
      then send snapshot requests asking for the top word only ({"top":1}, a small reply
      with the full offsets), a new one 50 ms after the last is answered (or after 1 s
      without an answer), until the replies to one request reach the end of every
      partition of T; print `done_at EPOCH_SECONDS total_words N distinct_words N
      requests N instances N`. Several instances of one group each answer with their own
      partitions (told apart by the parts' snapshot_id); their replies are merged until
      they cover every partition: total_words is their sum, distinct_words too (an upper
      bound: a word counted by two instances is in both)
  e2e_client.py latency -b HOST:PORT --requests R --output O [-n 50] [--trace FILE]
      send N snapshot requests for every count, one at a time, and time each from just
      before the request record is produced to the arrival of the reply's last part (the
      parts are recognised by their headers tally.request.id, tally.part and tally.parts,
      so no JSON is parsed while timing); print `p50_ms X p99_ms Y max_ms Z parts N
      distinct_words N` (nearest-rank percentiles). --trace FILE writes one line per
      request, to line up with Tally's debug log ([log] level=debug): `REQUEST_ID start
      EPOCH_S acked_ms MS total_ms MS parts PART:ARRIVAL_EPOCH_S:RECORD_TIMESTAMP_MS...`
      (acked_ms: until the request record's delivery report; the record timestamp is when
      Tally produced the part)
  e2e_client.py warm-up -b HOST:PORT TOPIC
      make the broker ready for the first contender as for the later ones: join a fresh
      consumer group on TOPIC (the broker creates __consumer_offsets and loads its group
      coordinator) and run one empty transaction (it creates __transaction_state and loads
      its transaction coordinator), so that neither is timed in the first measured run
  e2e_client.py words --distinct N --words W [--per-record K]
      print W synthetic words, K per line (default 10): word i is the 7 lowercase ASCII
      letters of (i mod N) * 2654435761 mod 26^7 in base 26, so the N words are distinct
      (the multiplier is prime to 26) and each is 7 bytes long
"""
import argparse
import json
import math
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from tally_client import create_topics  # noqa: E402


def die(*args):
    print("e2e_client:", *args, file=sys.stderr)
    sys.exit(1)


def topics(args):
    create_topics(args.bootstrap, args.specs, die)
    return 0


class Io:
    """One producer for requests and one consumer assigned to the end of the output topic."""

    def __init__(self, bootstrap, output):
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(output, p, o) for p, o in self.ends(output).items()])
        self.trace = None

    def ends(self, topic):
        md = self.consumer.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            die("topic", topic + ":", md.error)
        return {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in sorted(md.partitions)}

    def request(self, topic, request_id, value):
        self.producer.produce(topic, key=request_id.encode(), value=value)
        self.producer.flush(10)

    def warm_up(self, requests, output):
        self.request(requests, "bench-warm-up-" + uuid.uuid4().hex, b"")
        request_id = "bench-warm-up-" + uuid.uuid4().hex
        self.producer.produce(output, key=b"warm-up", value=b"{}", headers={
            "tally.request.id": request_id, "tally.part": "0", "tally.parts": "1"})
        self.producer.flush(10)
        if self.reply(request_id, 30) is None:
            die("the warm-up record on", output, "was not read back within 30 s")

    def reply(self, request_ids, timeout):
        """Waits for every part of the reply to one of request_ids (one id or a set);
        returns the parts' values, or None after timeout seconds."""
        if isinstance(request_ids, str):
            request_ids = {request_ids}
        keys = {r.encode() for r in request_ids}
        parts = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.consumer.poll(0.02)
            if m is None or m.error():
                continue
            h = dict(m.headers() or [])
            key = h.get("tally.request.id")
            if key not in keys:
                continue
            got = parts.setdefault(key, {})
            got[int(h["tally.part"])] = m.value()
            if self.trace is not None:
                self.trace.append((int(h["tally.part"]), time.time(), m.timestamp()[1]))
            if len(got) == int(h["tally.parts"]):
                return [got[i] for i in sorted(got)]
        return None

    def merged_reply(self, request_ids, ends, timeout):
        """Waits for the replies to one of request_ids (a set) until, together, they cover
        every partition of @ends (the input's {partition: end offset}; at any offset), or
        for timeout seconds; each instance's reply is its own snapshot (snapshot_id).
        Returns ({partition: offset}, total_words, distinct_words, instances) of the
        replies to one request, the last that was whole, or None if none was."""
        keys = {r.encode() for r in request_ids}
        snapshots = {}  # request id -> {snapshot id: part 0}, the whole ones
        parts = {}  # (request id, snapshot id) -> parts seen
        best = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.consumer.poll(0.02)
            if m is None or m.error():
                continue
            h = dict(m.headers() or [])
            key = h.get("tally.request.id")
            if key not in keys:
                continue
            part = json.loads(m.value())
            if part.get("error"):
                die("error snapshot:", part["error"])
            sid = part["snapshot_id"]
            seen = parts.setdefault((key, sid), {})
            seen[part["part"]] = part
            if len(seen) < part["parts"]:
                continue
            whole = snapshots.setdefault(key, {})
            whole[sid] = seen[0]
            have = {}
            for first in whole.values():
                for o in first.get("offsets", []):
                    if o["topic"] == self.input_topic:
                        have[o["partition"]] = o["offset"]
            best = (have, sum(f["total_words"] for f in whole.values()),
                    sum(f["distinct_words"] for f in whole.values()), len(whole))
            if set(have) >= set(ends):
                return best
        return best


def ends(args):
    io = Io(args.bootstrap, args.topic)
    for p, o in io.ends(args.topic).items():
        print(p, o)
    return 0


def caught_up(args):
    io = Io(args.bootstrap, args.output)
    io.input_topic = args.input
    io.warm_up(args.requests, args.output)
    ends_ = io.ends(args.input)
    deadline = time.monotonic() + args.timeout
    if args.ready:
        open(args.ready, "w").close()
    while args.log:
        try:
            with open(args.log, errors="replace") as f:
                if "running:" in f.read():
                    break
        except FileNotFoundError:  # Tally is not started yet
            pass
        if time.monotonic() > deadline:
            die("Tally never said it was running")
        time.sleep(0.01)
    n = 0
    pending = set()
    while True:
        request_id = "bench-" + uuid.uuid4().hex
        io.request(args.requests, request_id, b'{"top":1}')
        pending.add(request_id)
        n += 1
        # A request is answered in order after the words consumed so far; one sent before
        # the request reader was up is never answered, so send another after 1 s.
        merged = io.merged_reply(pending, ends_, 1)
        if merged is None:
            if time.monotonic() > deadline:
                die("no reply to any snapshot request within", args.timeout, "s")
            continue
        have, total, distinct, instances = merged
        if all(have.get(p, 0) >= e for p, e in ends_.items()):
            print("done_at %.6f total_words %d distinct_words %d requests %d instances %d"
                  % (time.time(), total, distinct, n, instances))
            return 0
        if time.monotonic() > deadline:
            die("not caught up within", args.timeout, "s:", have, "of", ends_)
        time.sleep(args.interval)


def latency(args):
    io = Io(args.bootstrap, args.output)
    times = []
    parts = distinct = 0
    for i in range(args.n + 1):
        request_id = "bench-latency-%d-%s" % (i, uuid.uuid4().hex)
        io.trace = [] if args.trace else None
        start_wall = time.time()
        start = time.perf_counter()
        io.request(args.requests, request_id, b"")
        acked = time.perf_counter()
        values = io.reply(request_id, 60)
        if values is None:
            die("no complete reply to request", request_id, "within 60 s")
        elapsed = (time.perf_counter() - start) * 1000
        if args.trace:
            args.trace.write("%s start %.6f acked_ms %.2f total_ms %.2f parts %s\n" % (
                request_id, start_wall, (acked - start) * 1000, elapsed,
                " ".join("%d:%.6f:%d" % t for t in io.trace)))
        if i == 0:  # warm-up, and a check of what the replies hold
            first = json.loads(values[0])
            if first.get("error"):
                die("error snapshot:", first["error"])
            parts, distinct = len(values), first["distinct_words"]
            continue
        times.append(elapsed)
        time.sleep(0.05)
    times.sort()

    def rank(q):
        return times[max(0, math.ceil(q * len(times)) - 1)]

    print("p50_ms %.1f p99_ms %.1f max_ms %.1f parts %d distinct_words %d"
          % (rank(0.50), rank(0.99), times[-1], parts, distinct))
    return 0


def warm_up(args):
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "bench-warm-up-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + 60
    while not consumer.assignment():
        if time.monotonic() > deadline:
            die("warm-up: no partitions of", args.topic, "assigned within 60 s")
        consumer.poll(0.1)
    consumer.close()
    producer = Producer({"bootstrap.servers": args.bootstrap,
                         "transactional.id": "bench-warm-up-" + uuid.uuid4().hex})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.commit_transaction(60)
    return 0


def words(args):
    out = sys.stdout
    mod = 26 ** 7
    line = []
    for i in range(args.words):
        v = (i % args.distinct) * 2654435761 % mod
        w = []
        for _ in range(7):
            v, r = divmod(v, 26)
            w.append(chr(97 + r))
        line.append("".join(w))
        if len(line) == args.per_record:
            out.write(" ".join(line) + "\n")
            line = []
    if line:
        out.write(" ".join(line) + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("topics")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("specs", nargs="+")
    p = sub.add_parser("ends")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("topic")
    p = sub.add_parser("caught-up")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--ready")
    p.add_argument("--log")
    p.add_argument("--timeout", type=float, default=600)
    p = sub.add_parser("latency")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--trace", type=argparse.FileType("w"))
    p = sub.add_parser("warm-up")
    p.add_argument("-b", "--bootstrap", required=True)
    p.add_argument("topic")
    p = sub.add_parser("words")
    p.add_argument("--distinct", type=int, required=True)
    p.add_argument("--words", type=int, required=True)
    p.add_argument("--per-record", type=int, default=10)
    args = ap.parse_args()
    return {"topics": topics, "ends": ends, "caught-up": caught_up, "latency": latency,
            "warm-up": warm_up, "words": words}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
