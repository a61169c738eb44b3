"""Fuzz enchufe.proto.http_proxy.HttpProxyNegotiator, with and without ``--proxy-auth``.

Invariant: the negotiator never raises, whatever the client sends and however it is
cut, and whatever upstream's outcome; it speaks only proto/proxy's actions, nothing
after ``Close``; every reply it sends the client is a whole HTTP response.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.http import ResponseReader
    from enchufe.proto.http_auth import ProxyAuthenticator
    from enchufe.proto.http_proxy import HttpProxyNegotiator
    from enchufe.proto.proxy import Credentials, Reply


def check(data: bytes) -> None:
    choice, pieces = fuzzing.pieces(data)
    authenticator = ProxyAuthenticator(Credentials("user", "pass"), secret=b"fuzz", clock=lambda: 1000.0)
    for negotiator in (HttpProxyNegotiator(), HttpProxyNegotiator(authenticator)):
        for action in fuzzing.drive_negotiator(negotiator, choice, pieces):
            if isinstance(action, Reply):
                found = ResponseReader().feed(action.data)
                assert found is not None and found[1] == b"", action


if __name__ == "__main__":
    fuzzing.main(check)
