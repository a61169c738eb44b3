"""Whole lines out of chunks from many senders, so that their lines never interleave.

Chat's per-line mode and the per-client labels of ``-l -k --client-labels`` both show
what several senders write, one line at a time, with something in front of each line.
A chunk read from a sender rarely ends at a line's end: :class:`LineBuffer` holds each
sender's unfinished line until the rest comes, so that another sender's line is never
put in the middle of it.

Memory stays bounded: a line longer than ``max_line`` bytes goes out in pieces of at
most that many bytes, each ended with a line feed, cut between UTF-8 characters when
the text is UTF-8. When a sender ends, :meth:`LineBuffer.flush` gives its unfinished
line, ended with a line feed too.
"""

from __future__ import annotations

__all__ = ["LineBuffer"]


def _piece_end(buffer: bytes, start: int, limit: int) -> int:
    """Where to cut an overlong line: at ``start + limit``, moved back to the start of a
    UTF-8 character (at most 3 bytes) so that the cut does not split one."""
    cut = start + limit
    for candidate in range(cut, max(start, cut - 4), -1):
        if buffer[candidate] & 0xC0 != 0x80:
            return candidate
    return cut


class LineBuffer:
    """Each sender's unfinished line; see the module docstring.

    Args:
        max_line: the most bytes of one line held back (its line feed not counted).

    Raises:
        ValueError: ``max_line`` is below 1.

    A sender is any hashable key (a member's number, a client).
    """

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, not {max_line}")
        self.max_line = max_line
        self._partial: dict[object, bytes] = {}

    def lines(self, sender: object, chunk: bytes) -> list[bytes]:
        """The lines that ``chunk`` completes for ``sender``, each ending with a line feed.

        What is left after the last line feed waits for the sender's next chunk (or
        :meth:`flush`); a line of more than ``max_line`` bytes comes out in pieces.
        """
        buffer = self._partial.pop(sender, b"") + chunk
        limit = self.max_line
        lines: list[bytes] = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start, start + limit + 1)
            if newline != -1:
                end = newline + 1
                lines.append(buffer[start:end])
            elif len(buffer) - start > limit:
                end = _piece_end(buffer, start, limit)
                lines.append(buffer[start:end] + b"\n")
            else:
                break
            start = end
        if start < len(buffer):
            self._partial[sender] = buffer[start:]
        return lines

    def flush(self, sender: object) -> bytes:
        """The sender has ended: its unfinished line with a line feed, or ``b""``."""
        partial = self._partial.pop(sender, b"")
        return partial + b"\n" if partial else b""
