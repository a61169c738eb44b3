"""What the command writes besides the data: diagnostics on stderr and session logs.

Diagnostics follow ncat's format with ``enchufe:`` in place of ``Ncat:``; ``-v``
shows :meth:`Messages.info`, ``-vv`` and more add :meth:`Messages.debug`.
The session logs of ``-o`` and ``-x`` record both directions in arrival order.
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["Messages", "SessionLog"]


class Messages:
    """Diagnostics on stderr."""

    def __init__(self, stderr: TextIO, verbosity: int) -> None:
        self._stderr = stderr
        self.verbosity = verbosity

    def error(self, text: str) -> None:
        """Always shown."""
        self._write(f"enchufe: {text}\n")

    def bare(self, text: str) -> None:
        """Always shown, without the prefix: ncat's ``perror`` lines (``write: ...``)."""
        self._write(f"{text}\n")

    def info(self, text: str) -> None:
        """Shown with -v."""
        if self.verbosity >= 1:
            self._write(f"enchufe: {text}\n")

    def debug(self, text: str) -> None:
        """Shown with -vv."""
        if self.verbosity >= 2:
            self._write(f"ENCHUFE DEBUG: {text}\n")

    def debug_always(self, text: str) -> None:
        """A debug line shown at every verbosity, where ncat shows one so."""
        self._write(f"ENCHUFE DEBUG: {text}\n")

    def _write(self, line: str) -> None:
        # A name from argv keeps its bytes that are not UTF-8 as lone surrogates
        # (surrogateescape): show them as \xff rather than as a codec's \udcff.
        line = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        try:
            self._stderr.write(line)
            self._stderr.flush()
        except (OSError, ValueError):
            pass  # stderr is gone: there is nobody left to tell


class SessionLog:
    """ncat's ``-o`` (raw) or ``-x`` (hex dump) file: every chunk, both directions.

    Safe to call from both relay pumps at once: each chunk is written whole.
    """

    def __init__(self, path: str, *, hex_dump: bool, append: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o666)
        self._hex = hex_dump
        self._lock = threading.Lock()

    def record(self, data: bytes) -> bytes:
        """Log one transmission; return it unchanged (so it can sit in a relay filter)."""
        entry = _hexdump(data).encode() if self._hex else data
        with self._lock:
            view = memoryview(entry)
            while view:
                view = view[os.write(self._fd, view) :]
        return data

    def close(self) -> None:
        os.close(self._fd)


def _hexdump(data: bytes) -> str:
    from enchufe.hexdump import hexdump  # only -x needs it

    return hexdump(data)
