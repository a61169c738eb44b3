"""Fuzz enchufe.proto.proxy_protocol: a PROXY protocol header (v1 or v2) as it arrives.

Invariant: ``ProxyHeaderDecoder.feed`` gives ``NEED_DATA`` or a ``ProxyHeader``, or
raises ``ProtocolError``, nothing else; fed whole or in pieces it comes to the same
header and the same leftover (or refuses both ways); a decoded header encodes to bytes
that decode to it again.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import ProtocolError
    from enchufe.proto.proxy_protocol import NEED_DATA, ProxyHeader, ProxyHeaderDecoder, encode_header


def decode(chunks: list[bytes]) -> tuple[ProxyHeader, bytes] | str:
    """The header and leftover, ``"need"`` when the bytes end first, ``"refused"``."""
    decoder = ProxyHeaderDecoder()
    result: object = NEED_DATA
    try:
        for chunk in chunks:
            result = decoder.feed(chunk)
    except ProtocolError:
        return "refused"
    if result is NEED_DATA:
        return "need"
    assert isinstance(result, ProxyHeader), result
    return result, decoder.leftover


def check(data: bytes) -> None:
    _, pieces = fuzzing.pieces(data)
    whole = decode([data[1:]])
    assert decode(pieces) == whole, (pieces, whole)
    if isinstance(whole, tuple):
        header, _ = whole
        again = decode([encode_header(header)])
        assert isinstance(again, tuple) and again[0] == header, (header, again)


if __name__ == "__main__":
    fuzzing.main(check)
