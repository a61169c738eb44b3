"""LF → CRLF translation for ncat's ``-C``, stateful across chunks.

Every ``\\n`` not already preceded by ``\\r`` becomes ``\\r\\n``; existing CRLF pairs
are kept, including a pair split between two chunks (``"---\\r"`` then ``"\\n"``).
"""

from __future__ import annotations

__all__ = ["CrlfTranslator"]


class CrlfTranslator:
    """Translate line feeds to CRLF in a stream of chunks."""

    def __init__(self) -> None:
        self._last_was_cr = False

    def translate(self, data: bytes) -> bytes:
        if not data:
            return data
        out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._last_was_cr and data.startswith(b"\n"):
            out = out[1:]
        self._last_was_cr = data.endswith(b"\r")
        return out
