"""Fuzz enchufe.proto.lines.LineBuffer: two senders' chunks, interleaved.

Invariant: each sender's lines do not depend on how its bytes are cut; every line ends
with a LF and holds at most ``max_line`` bytes before it; the lines, LFs aside, are the
sender's bytes in order.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.lines import LineBuffer


def _lines_of(buffer: LineBuffer, sender: object, chunks: list[bytes]) -> list[bytes]:
    lines = [line for chunk in chunks for line in buffer.lines(sender, chunk)]
    rest = buffer.flush(sender)
    return [*lines, rest] if rest else lines


def check(data: bytes) -> None:
    choice, pieces = fuzzing.pieces(data)
    max_line = choice[0] % 20 + 1 if choice else 1
    mine, others = pieces[::2], pieces[1::2]
    alone = _lines_of(LineBuffer(max_line), "a", [b"".join(mine)])
    shared = LineBuffer(max_line)
    interleaved: dict[str, list[bytes]] = {"a": [], "b": []}
    for index, piece in enumerate(pieces):
        sender = "ab"[index % 2]
        interleaved[sender] += shared.lines(sender, piece)
    for sender in "ab":
        rest = shared.flush(sender)
        interleaved[sender] += [rest] if rest else []
    assert interleaved["a"] == alone, (alone, interleaved["a"])
    for sender, chunks in (("a", mine), ("b", others)):
        lines = interleaved[sender]
        assert all(line.endswith(b"\n") and len(line) <= max_line + 1 for line in lines), lines
        assert b"".join(lines).replace(b"\n", b"") == b"".join(chunks).replace(b"\n", b"")


if __name__ == "__main__":
    fuzzing.main(check)
