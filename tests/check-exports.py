#!/usr/bin/python3
"""libtally exports its public API and nothing else (libtally.map).

    check-exports.py LIBTALLY_SO HEADER...

Every dynamic symbol libtally defines must be a function (or an extern variable) declared in one of its installed
HEADERs (the `tally_headers` of meson.build), and every function those headers declare,
but for their `static inline` ones, must be exported. tally_counts_merge_disjoint(),
tally_counts_sum_tables(), tally_counts_new_from_tables() and tally_counts_figures_set() /
_clear() are the exceptions libtally.map documents (tests/test-counts.c calls them). Exit 1
with the
symbols that differ.
"""
import re
import subprocess
import sys

ALSO_EXPORTED = {
    "tally_counts_merge_disjoint",
    "tally_counts_sum_tables",
    "tally_counts_new_from_tables",
    "tally_counts_figures_set",
    "tally_counts_figures_clear",
}


def declared(headers):
    names, inline = set(), set()
    for path in headers:
        with open(path) as f:
            src = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        names.update(re.findall(r"\b(tally_[a-z0-9_]+)\s*\(", src))
        names.update(re.findall(r"^extern\s[^;(]*?\b(tally_[a-z0-9_]+)\s*;", src, flags=re.M))
        inline.update(re.findall(r"static\s+inline\b[^;{]*?\b(tally_[a-z0-9_]+)\s*\(", src, flags=re.S))
    return names - inline


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines()
            if line.split() and not line.split()[-1].startswith("_")}


def main():
    library, headers = sys.argv[1], sys.argv[2:]
    public, symbols = declared(headers), exported(library)
    extra = sorted(symbols - public - ALSO_EXPORTED)
    missing = sorted(n for n in public - symbols if not n.endswith("_get_type") or n in symbols)
    # G_DECLARE_*_TYPE's getters are declared by a macro, not as tally_x_get_type (...).
    missing = [n for n in missing if n in public]
    for n in extra:
        print("exported but in no installed header (add it to libtally.map's local: list):", n)
    for n in missing:
        print("declared in an installed header but not exported:", n)
    print("%d symbols exported, %d functions declared" % (len(symbols), len(public)))
    return 1 if extra or missing else 0


if __name__ == "__main__":
    sys.exit(main())
