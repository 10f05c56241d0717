#!/usr/bin/env python3
"""The "countwords" task with Python's collections.Counter: a peer for tally count.

Reads the files named on the command line (or stdin), splits the bytes on ASCII
whitespace, lowercases ASCII letters and prints `word count` lines, most frequent first,
ties in byte order of the word: the same definition and output as
`tally count --tokenizer whitespace` on text without control characters other than
whitespace (such as the KJV text the benchmark uses).
"""

import collections
import sys

BLOCK = 1 << 20


def count_stream(stream, counts):
    remainder = b""
    while True:
        block = stream.read(BLOCK)
        if not block:
            break
        block = remainder + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            remainder = block
            continue
        remainder = block[cut:]
        counts.update(block[:cut].lower().split())
    counts.update(remainder.lower().split())


def main():
    counts = collections.Counter()
    paths = sys.argv[1:] or ["-"]
    for path in paths:
        if path == "-":
            count_stream(sys.stdin.buffer, counts)
        else:
            with open(path, "rb") as f:
                count_stream(f, counts)
    out = sys.stdout.buffer
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(b"%s %d\n" % (word, n))


if __name__ == "__main__":
    main()
