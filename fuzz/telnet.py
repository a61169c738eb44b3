"""Fuzz enchufe.proto.telnet.TelnetResponder, fed whole and in pieces.

Invariant: the answers do not depend on how the bytes are cut; they are whole refusals
(``IAC WONT x`` or ``IAC DONT x``), one for each ``DO``/``WILL`` request.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.telnet import TelnetCommand, TelnetResponder

_REFUSALS = {TelnetCommand.WONT, TelnetCommand.DONT}


def check(data: bytes) -> None:
    _, pieces = fuzzing.pieces(data)
    whole = TelnetResponder().receive_data(b"".join(pieces))
    responder = TelnetResponder()
    assert b"".join(responder.receive_data(piece) for piece in pieces) == whole
    assert len(whole) % 3 == 0
    for start in range(0, len(whole), 3):
        assert whole[start] == TelnetCommand.IAC and whole[start + 1] in _REFUSALS, whole


if __name__ == "__main__":
    fuzzing.main(check)
