#!/usr/bin/env python3
"""Compares two SAS XPORT files byte for byte, except the created and modified stamps of their headers.

An XPT file states when it was written (the library header and every member header, `ddMMMyy:hh:mm:ss`); two
exports of the same data made a second apart differ there and nowhere else. Each stamp must still be a well-formed
datetime in both files. Usage: xpt-cmp.py A.xpt B.xpt (exit 0 when equal, 1 with the first difference otherwise).
"""
import re
import sys

RECORD = 80
STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
# A header record followed by a record ending with `created` and one starting with `modified` (formats.md, XPT).
DATED = (b"LIBRARY HEADER RECORD", b"LIBV8   HEADER RECORD", b"DSCRPTR HEADER RECORD", b"DSCPTV8 HEADER RECORD")


def stamps(data: bytes) -> list[tuple[int, int]]:
    """The byte ranges of the created and modified stamps of every library and member header."""
    spans = []
    for start in range(0, len(data) - 3 * RECORD + 1, RECORD):
        head = data[start : start + RECORD]
        if head.startswith(b"HEADER RECORD*******") and any(name in head for name in DATED):
            spans.append((start + 2 * RECORD - 16, start + 2 * RECORD))
            spans.append((start + 2 * RECORD, start + 2 * RECORD + 16))
    return spans


def masked(path: str) -> bytes:
    data = bytearray(open(path, "rb").read())
    spans = stamps(bytes(data))
    if not spans:
        sys.exit(f"{path}: no XPT library header found")
    for lo, hi in spans:
        if not STAMP.fullmatch(bytes(data[lo:hi])):
            sys.exit(f"{path}: the header stamp at byte {lo} is not ddMMMyy:hh:mm:ss: {bytes(data[lo:hi])!r}")
        data[lo:hi] = b"#" * (hi - lo)
    return bytes(data)


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit("usage: xpt-cmp.py A.xpt B.xpt")
    a, b = (masked(p) for p in sys.argv[1:])
    if a == b:
        return 0
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    print(f"{sys.argv[1]} {sys.argv[2]} differ at byte {first + 1} (sizes {len(a)} and {len(b)})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
