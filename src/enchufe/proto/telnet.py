"""The telnet negotiation responder behind ncat's ``-t`` (RFC 854, RFC 1143).

A peer that speaks telnet asks to enable options with ``IAC DO x`` or ``IAC WILL x``
and waits for an answer. :class:`TelnetResponder` refuses every such request
(``DO`` is answered ``WONT``, ``WILL`` is answered ``DONT``), which is what a dumb
terminal must do. Refusals (``DONT``/``WONT``) are not answered: they confirm a
state we are already in, and answering them is how negotiation loops start
(RFC 1143). As in ncat, the bytes themselves still reach the output unchanged;
the responder only decides what to send back.

Sequences split across reads are handled: the state carries over between calls.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["TelnetCommand", "TelnetResponder"]


class TelnetCommand(IntEnum):
    """Telnet command bytes (RFC 854)."""

    WILL = 251
    WONT = 252
    DO = 253
    DONT = 254
    IAC = 255


_REFUSAL = {TelnetCommand.DO: TelnetCommand.WONT, TelnetCommand.WILL: TelnetCommand.DONT}
_NEGOTIATION = frozenset({TelnetCommand.WILL, TelnetCommand.WONT, TelnetCommand.DO, TelnetCommand.DONT})


class TelnetResponder:
    """Finds option requests in a byte stream and builds the refusals to send back."""

    def __init__(self) -> None:
        self._after_iac = False
        self._verb: int | None = None

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes received from the peer; return the bytes to send to the peer."""
        replies = bytearray()
        for byte in data:
            if self._verb is not None:
                refusal = _REFUSAL.get(TelnetCommand(self._verb))
                if refusal is not None:
                    replies += bytes((TelnetCommand.IAC, refusal, byte))
                self._verb = None
            elif self._after_iac:
                self._after_iac = False
                if byte in _NEGOTIATION:
                    self._verb = byte
            elif byte == TelnetCommand.IAC:
                self._after_iac = True
        return bytes(replies)
