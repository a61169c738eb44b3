"""Fuzz enchufe.proto.http_auth: challenges, credentials, and the server's authenticator.

Invariant: ``parse_challenges`` gives challenges or raises ``ProtocolError``, nothing
else; a Digest challenge chosen from them is answered without raising; the
authenticator judges any ``Proxy-Authorization`` value as ``OK``, ``STALE`` or
``DENIED`` without raising; and the round trip holds for any user name and password
(any text, as argv gives it) and any method and target a request line carries: the
authenticator's own challenges, answered by ``DigestClient`` or ``basic_authorization``
with the right credentials and sent in a request head (latin-1 on the wire), are
``OK``, and the same Digest answer again is a replay, ``DENIED``.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import ProtocolError
    from enchufe.proto.http import RequestReader, connect_request
    from enchufe.proto.http_auth import (
        DENIED,
        OK,
        STALE,
        DigestClient,
        ProxyAuthenticator,
        basic_authorization,
        choose_challenge,
        parse_challenges,
    )
    from enchufe.proto.proxy import Credentials


def _zeros(count: int) -> bytes:
    return bytes(count)


def _in_a_request_line(method: str, target: str) -> bool:
    """Whether a request line can carry them (RequestReader's rules): printable ASCII."""
    return all(text and text.isascii() and text.isprintable() and " " not in text for text in (method, target))


def _over_the_wire(authorization: str) -> str | None:
    """The value as a proxy server reads it from a client's CONNECT request."""
    found = RequestReader().feed(connect_request("a", 1, [("Proxy-Authorization", authorization)]))
    assert found is not None
    return found[0].headers.get("Proxy-Authorization")


def check(data: bytes) -> None:
    # Credentials come from argv; challenges and authorizations from a head, which
    # gives header text (latin-1: one character per byte).
    credentials = Credentials.parse(fuzzing.text(data.partition(b"\n")[0]))
    values = data.decode("latin-1").split("\n")
    method, target = [*values[1:3], "CONNECT", "a:1"][:2]
    if not _in_a_request_line(method, target):
        method, target = "CONNECT", "a:1"
    try:
        challenges = parse_challenges(values)
    except ProtocolError:
        challenges = []
    chosen = choose_challenge(challenges)
    if chosen is not None and chosen.scheme == "digest":
        response = DigestClient(credentials, chosen, _zeros).authorization(method, target)
        assert len(parse_challenges([response])) == 1, response
    authenticator = ProxyAuthenticator(credentials, secret=b"fuzz", clock=lambda: 1000.0)
    for value in values:
        assert authenticator.check(method, [target], value) in (OK, STALE, DENIED)
    offered = parse_challenges([value for _, value in authenticator.challenges()])
    digest = choose_challenge(offered)
    assert digest is not None and digest.scheme == "digest", offered
    if not any(byte < 0x20 or byte == 0x7F for byte in data.partition(b"\n")[0]):
        # A quoted string cannot carry control characters (RFC 9110 §5.6.4): such a user
        # name or password can only go by Basic.
        answer = _over_the_wire(DigestClient(credentials, digest, _zeros).authorization(method, target))
        assert authenticator.check(method, [target], answer) == OK, (credentials, method, target, answer)
        assert authenticator.check(method, [target], answer) == DENIED
    basic = _over_the_wire(basic_authorization(credentials))
    assert authenticator.check(method, [target], basic) == OK


if __name__ == "__main__":
    fuzzing.main(check)
