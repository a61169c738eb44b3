"""ncat's ``-x`` hex dump format, as a pure function.

Each transmission is dumped on its own, starting at offset 0. A line holds 16 bytes::

    0000   53 53 48 2d 32 2e 30 2d  4f 70 65 6e 53 53 48 5f  SSH-2.0-OpenSSH_

four hex digits of offset, three spaces, the bytes in lowercase hex with one extra
space after the eighth, two spaces, then the bytes as text where only letters,
digits and punctuation are shown and everything else (space included) is ``.``.
Every line is padded to 73 characters, as ncat does.
"""

from __future__ import annotations

import string

__all__ = ["hexdump"]

_LINE_WIDTH = 73
_SHOWN = frozenset((string.ascii_letters + string.digits + string.punctuation).encode())
_TEXT = bytes(b if b in _SHOWN else ord(".") for b in range(256))


def hexdump(data: bytes) -> str:
    """Format one transmission as ncat's hex dump lines, each ending in a newline."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        text = chunk.translate(_TEXT).decode("ascii")
        line = f"{offset:04x}   {left:<23}  {right:<23}  {text}"
        lines.append(line.ljust(_LINE_WIDTH) + "\n")
    return "".join(lines)
