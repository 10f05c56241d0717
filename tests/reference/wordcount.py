#!/usr/bin/env python3
"""Independent reference word counter for Tally's tokenizer rules (docs/tokenizer.md).

Written from the documented rules with Python's `re`, `unicodedata` and
`collections.Counter`, sharing no code with the C tokenizer, so the two can be compared.

    wordcount.py [--mode unicode|whitespace|record] [--nfkc] [--max-word-bytes N]
                 [--long-words truncate|drop] [--words] [FILE...]

Reads the FILEs (or stdin) as bytes; each FILE is one chunk, and `--chunk-lines` makes
each line (ending in \\n) its own chunk instead (the same words, since \\n separates words
in every mode). Prints `word count` lines, most frequent first, ties in byte order of the
word, as `tally count` does. `--words` prints every word on its own line, in input order,
instead of counts.

Agreement with the C tokenizer holds for characters assigned in the Unicode version of
both this Python's `unicodedata` and GLib (Python 3.11: Unicode 14.0).
"""

import argparse
import collections
import re
import signal
import sys
import unicodedata

LETTER = ("Lu", "Ll", "Lt", "Lm", "Lo")
MARK = ("Mn", "Mc", "Me")
DIGIT = ("Nd", "Nl", "No")


def ranges_class(predicate):
    """A regex character class body listing every code point for which predicate holds."""
    parts = []
    start = None
    for cp in range(0x110001):
        ok = cp <= 0x10FFFF and not (0xD800 <= cp < 0xE000) and predicate(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            end = cp - 1
            parts.append(re.escape(chr(start)) + ("-" + re.escape(chr(end)) if end > start else ""))
            start = None
    return "".join(parts)


def unicode_word_regex():
    cat = unicodedata.category
    word = ranges_class(lambda ch: cat(ch) in LETTER + MARK + DIGIT)
    letter = ranges_class(lambda ch: cat(ch) in LETTER)
    letter_or_mark = ranges_class(lambda ch: cat(ch) in LETTER + MARK)
    joiner = "'\u2019\\-\u2010"
    # A run of word characters; a joiner continues it only when the character before it
    # is a letter or mark and the one after it is a letter.
    return re.compile(
        "[%s]+(?:(?<=[%s])[%s](?=[%s])[%s]+)*" % (word, letter_or_mark, joiner, letter, word)
    )


# Separators shared by the modes: C0 controls, DEL, C1 controls, and the lone surrogates
# U+DC80..U+DCFF that the "surrogateescape" decoder produces for invalid UTF-8 bytes.
CONTROLS = "\x00-\x1f\x7f-\x9f"
INVALID = "\udc80-\udcff"
WHITESPACE_SEPARATORS = re.compile("[%s %s]+" % (CONTROLS, INVALID))
RECORD_SEPARATORS = re.compile("[%s%s]+" % (CONTROLS, INVALID))
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def limit(word_bytes, max_bytes, drop, trim_spaces):
    """Applies the long-word policy to UTF-8 bytes; returns None when the word is dropped."""
    if len(word_bytes) <= max_bytes:
        return word_bytes
    if drop:
        return None
    cut = max_bytes
    while cut > 0 and (word_bytes[cut] & 0xC0) == 0x80:
        cut -= 1
    word_bytes = word_bytes[:cut]
    if trim_spaces:
        word_bytes = word_bytes.rstrip(b" ")
    return word_bytes or None


class Tokenizer:
    def __init__(self, mode, nfkc, max_bytes, drop):
        self.mode = mode
        self.nfkc = nfkc
        self.max_bytes = max_bytes
        self.drop = drop
        self.word_re = unicode_word_regex() if mode == "unicode" else None

    def words(self, chunk):
        text = chunk.decode("utf-8", errors="surrogateescape")
        if self.nfkc:
            text = unicodedata.normalize("NFKC", text)
        if self.mode == "unicode":
            raw = (
                m.group(0).replace("\u2019", "'").replace("\u2010", "-").casefold()
                for m in self.word_re.finditer(text)
            )
            trim = False
        elif self.mode == "whitespace":
            raw = (w.translate(ASCII_LOWER) for w in WHITESPACE_SEPARATORS.split(text) if w)
            trim = False
        else:
            raw = (w.strip(" ") for w in RECORD_SEPARATORS.split(text))
            raw = (w for w in raw if w)
            trim = True
        for w in raw:
            b = limit(w.encode("utf-8"), self.max_bytes, self.drop, trim)
            if b is not None:
                yield b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("unicode", "whitespace", "record"), default="unicode")
    ap.add_argument("--nfkc", action="store_true")
    ap.add_argument("--max-word-bytes", type=int, default=256)
    ap.add_argument("--long-words", choices=("truncate", "drop"), default="truncate")
    ap.add_argument("--words", action="store_true", help="print words in order, not counts")
    ap.add_argument("--chunk-lines", action="store_true", help="one chunk per line")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args.max_word_bytes < 4:
        ap.error("--max-word-bytes must be at least 4")

    tok = Tokenizer(args.mode, args.nfkc, args.max_word_bytes, args.long_words == "drop")
    out = sys.stdout.buffer
    counts = collections.Counter()
    for name in args.files or ["-"]:
        if name == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as f:
                data = f.read()
        chunks = data.split(b"\n") if args.chunk_lines else [data]
        for chunk in chunks:
            if args.words:
                for w in tok.words(chunk):
                    out.write(w + b"\n")
            else:
                counts.update(tok.words(chunk))
    if not args.words:
        for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            out.write(b"%s %d\n" % (word, n))


if __name__ == "__main__":
    main()
