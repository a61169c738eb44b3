"""Fuzz enchufe.proto.crlf.CrlfTranslator, fed whole and in pieces.

Invariant: the output does not depend on how the input is cut; every LF in it follows
a CR; and it is the input with CRs added before bare LFs only.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.crlf import CrlfTranslator


def check(data: bytes) -> None:
    _, pieces = fuzzing.pieces(data)
    whole_input = b"".join(pieces)
    whole = CrlfTranslator().translate(whole_input)
    translator = CrlfTranslator()
    assert b"".join(translator.translate(piece) for piece in pieces) == whole
    assert whole.count(b"\n") == whole.count(b"\r\n")
    assert whole.replace(b"\r\n", b"\n") == whole_input.replace(b"\r\n", b"\n")


if __name__ == "__main__":
    fuzzing.main(check)
