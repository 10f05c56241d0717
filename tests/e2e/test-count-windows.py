#!/usr/bin/env python3
"""`tally count` gives the words of the tokenizer fed each input whole, wherever its read
windows fall (issue 13 item 4).

It reads files in windows (2 MiB) and may cut them only where the tokenizer is known to
end a word. The inputs below are runs with no ASCII separator, where it used to split or
lose words: text with Unicode spaces only, C1 controls, invalid UTF-8, combining marks,
hyphens and apostrophes between letters, over-long words before a non-ASCII separator,
NFKC compositions (`=` + U+0338), record lines led by spaces, and random mixes of these.

1. Each small input, in every mode, with and without NFKC, max_word_bytes 4: counted with
   windows of every size from 16 to 56 bytes (TALLY_COUNT_WINDOW_BYTES, a setting for
   tests), so window edges fall on every byte; stdout and stderr (the notes on invalid
   bytes and truncated words) must equal those of one window holding the whole input,
   which is the tokenizer fed whole.
2. The inputs of the issue at full size (2.4 MB and more) with the default windows, against
   the whole input in one window and against tests/reference/wordcount.py.

Needs TALLY_EXE and TALLY_SOURCE_ROOT (set by meson test). Exit 0 when every check passed.
"""
import concurrent.futures
import os
import random
import subprocess
import sys
import tempfile

TALLY = os.environ["TALLY_EXE"]
REF = os.path.join(os.environ["TALLY_SOURCE_ROOT"], "tests", "reference", "wordcount.py")
MODES = ("unicode", "whitespace", "record")

U = lambda s: s.encode("utf-8")  # noqa: E731

SMALL = {
    "cjk and U+3000": U("日本語\u3000") * 8,
    "ab U+0085": (U("ab\u0085")) * 16,
    "ab 0xE9": b"ab\xe9" * 16,
    "a U+0301": U("a" + "\u0301" * 40 + "\u3000x"),
    "ab-": b"ab-" * 24,
    "ab- then a separator": b"ab-" * 12 + b".cd" + b"ab-" * 4 + U("\u3000e"),
    "ab-- and a''b": b"ab--cd''" * 8 + b"x-'y" * 4,
    "a then U+3000": b"a" * 60 + U("\u3000word\u3000") + b"b" * 30 + U("\u00a0word"),
    "x'y U+2019 U+2010": U("x\u2019y\u2010z-") * 8 + U("\u2019") * 3,
    "= U+0338 and e U+0301": U("=\u0338a=\u0338e\u0301\u0316") * 6,
    "fullwidth and ligatures": U("ＡＢＣ\uff0dｄ\ufb01n\u00bd\u2474") * 4,
    "invalid sequences": b"ab\xe2\x82cd\xf0\x9f\x98ef\xc0\x80gh\xed\xa0\x80ij\xf4\x90\x80\x80" * 3,
    "record: spaces before a line": b" " * 70 + b"abc def" + b" " * 20 + U("\u0085") + b"  x",
    "record: long line": b"line of words " * 8 + b"\x00" + b"z" * 50,
    "marks after spaces": U("\u3000\u0301\u0301a\u00a0\u0308b") * 5,
    "kelvin signs": U("\u212a") * 30 + U("\u3000k"),
    "no text": b"",
}


def random_inputs(n, seed):
    rng = random.Random(seed)
    pieces = [U(x) for x in ("a", "b", "Z", "1", "-", "'", "\u2019", "\u2010", "é", "e\u0301",
                              "\u0301", "\u3000", "\u00a0", "\u0085", "日", "\u212a", "=",
                              "\u0338", "ß", "\ufb01", "\u00bd", " ", ".", "\n")]
    pieces += [b"\xe9", b"\xff", b"\xe2\x82", b"\xf0\x9f\x98\x80"]
    weights = [8, 6, 3, 2, 4, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    out = {}
    for i in range(n):
        out["random %d" % i] = b"".join(rng.choices(pieces, weights, k=rng.randint(20, 60)))
    return out


def run(path, conf, window):
    env = dict(os.environ, TALLY_COUNT_WINDOW_BYTES=str(window))
    p = subprocess.run([TALLY, "count", "--config", conf, "--shards", "1", "--jobs", "1", path],
                       env=env, capture_output=True)
    return p.returncode, p.stdout, p.stderr


def main():
    failures = 0
    checks = 0
    tmp = tempfile.mkdtemp()
    jobs = []
    inputs = dict(SMALL)
    inputs.update(random_inputs(6, 13))
    for i, (name, data) in enumerate(sorted(inputs.items())):
        path = os.path.join(tmp, "in%d" % i)
        with open(path, "wb") as f:
            f.write(data)
        for mode in MODES:
            for nfkc in ("false", "true"):
                conf = os.path.join(tmp, "%s-%s.conf" % (mode, nfkc))
                with open(conf, "w") as f:
                    f.write("[tokenizer]\nmode=%s\nnfkc=%s\nmax_word_bytes=4\n" % (mode, nfkc))
                jobs.append((name, path, conf, mode, nfkc, len(data)))

    def check(job):
        name, path, conf, mode, nfkc, size = job
        want = run(path, conf, size + 4096)
        bad = []
        for window in range(16, 57):
            got = run(path, conf, window)
            if got != want:
                bad.append((window, got))
        return job, want, bad

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for job, want, bad in pool.map(check, jobs):
            name, path, conf, mode, nfkc, size = job
            checks += 1
            label = "%s, %s mode, nfkc=%s, windows 16..56" % (name, mode, nfkc)
            if bad:
                failures += 1
                window, got = bad[0]
                print("FAIL %s: %d windows differ from the whole input; first, %d bytes:"
                      % (label, len(bad), window), file=sys.stderr)
                print("  whole:  %r %r" % (want[1][:300], want[2][:200]), file=sys.stderr)
                print("  window: %r %r" % (got[1][:300], got[2][:200]), file=sys.stderr)
            else:
                print("ok " + label)

    # The inputs at full size, default windows.
    big = {
        "2.4 MB line of 日本語 + U+3000": (U("日本語\u3000") * 200000, ("unicode",)),
        "ab + U+0085 x 700,000": (U("ab\u0085") * 700000, ("whitespace", "unicode")),
        "ab + 0xE9, 3 MB": (b"ab\xe9" * 1000000, ("unicode", "whitespace")),
        "a + U+0301, 3 MB": (U("a" + "\u0301" * 1500000 + "\u3000b"), ("unicode",)),
        "ab-, 3 MB": (b"ab-" * 1000000 + b" end", ("unicode",)),
        "2 MiB of a, U+3000, a word": (b"a" * (2 << 20) + U("\u3000word"), ("unicode",)),
    }
    for name, (data, modes) in big.items():
        path = os.path.join(tmp, "big")
        with open(path, "wb") as f:
            f.write(data)
        for mode in modes:
            conf = os.path.join(tmp, "%s-false.conf" % mode)
            with open(conf, "w") as f:
                f.write("[tokenizer]\nmode=%s\n" % mode)
            checks += 1
            env = dict(os.environ)
            env.pop("TALLY_COUNT_WINDOW_BYTES", None)
            got = subprocess.run([TALLY, "count", "--config", conf, path], env=env,
                                 capture_output=True).stdout
            whole = run(path, conf, len(data) + 4096)[1]
            ref = subprocess.run([sys.executable, REF, "--mode", mode, path],
                                 capture_output=True).stdout
            label = "%s, %s mode, default windows" % (name, mode)
            if got == whole == ref:
                print("ok " + label)
            else:
                failures += 1
                print("FAIL %s: got %r; whole input %r; reference %r"
                      % (label, got[:200], whole[:200], ref[:200]), file=sys.stderr)

    print("%d of %d checks passed" % (checks - failures, checks))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
