"""Fuzz enchufe.hexdump, ncat's ``-x`` lines.

Invariant: one line per 16 bytes, each its offset in (at least) four hex digits, the
hex columns and the text column, padded to 73 characters and ended with a newline;
the hex columns read back give the bytes dumped.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.hexdump import hexdump


def check(data: bytes) -> None:
    lines = hexdump(data).splitlines(keepends=True)
    assert len(lines) == (len(data) + 15) // 16
    read_back = bytearray()
    for number, line in enumerate(lines):
        offset = f"{number * 16:04x}   "
        assert line.startswith(offset) and line.endswith("\n") and len(line) >= 74, line
        read_back += bytes.fromhex(line[len(offset) : len(offset) + 49])
    assert read_back == data


if __name__ == "__main__":
    fuzzing.main(check)
