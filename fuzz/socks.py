"""Fuzz enchufe.proto.socks: both server negotiators, the client's reply readers, the builders.

Invariant: the negotiators never raise and speak only proto/proxy's actions (see
``fuzzing.drive_negotiator``); each reply reader gives ``NeedMore(n)`` with n > 0, or the
reply and how many bytes it took (no more than it was given, and exactly that many
bytes give the same reply while one fewer needs more), or raises ``ProtocolError``,
nothing else; the builders give bytes or raise ``ProtocolError``, and a SOCKS5 request
built for a host and port makes the server negotiator open that port (for a
name the server takes: printable ASCII).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import ProtocolError
    from enchufe.proto.proxy import Credentials, OpenUpstream
    from enchufe.proto.socks import (
        NeedMore,
        Socks4Negotiator,
        Socks5Negotiator,
        parse_socks4_reply,
        parse_socks5_auth_reply,
        parse_socks5_method,
        parse_socks5_reply,
        socks4_request,
        socks5_auth_request,
        socks5_greeting,
        socks5_request,
    )

_READERS = (parse_socks4_reply, parse_socks5_method, parse_socks5_auth_reply, parse_socks5_reply)


def check(data: bytes) -> None:
    choice, pieces = fuzzing.pieces(data)
    for negotiator in (
        Socks4Negotiator(),
        Socks4Negotiator("user"),
        Socks5Negotiator(),
        Socks5Negotiator(Credentials("user", "pass")),
    ):
        fuzzing.drive_negotiator(negotiator, choice, pieces)
    for read in _READERS:
        try:
            found = read(data)
        except ProtocolError:
            continue
        if isinstance(found, NeedMore):
            assert found.count > 0, (read, found)
            continue
        _, used = found
        assert 0 < used <= len(data), (read, used)
        assert read(data[:used]) == found, (read, data[:used])
        assert isinstance(read(data[: used - 1]), NeedMore), (read, data[: used - 1])
    host, _, rest = fuzzing.text(data).partition("\n")
    port = int.from_bytes(data[:2], "big")
    builds: tuple[Callable[[], bytes], ...] = (
        lambda: socks4_request(host, port, rest),
        lambda: socks5_auth_request(host, rest),
        lambda: socks5_greeting(list(data[:3])),
    )
    for build in builds:
        with contextlib.suppress(ProtocolError):
            assert isinstance(build(), bytes)
    try:
        request = socks5_greeting([0]) + socks5_request(host, port)
    except ProtocolError:
        return
    if not (host.isascii() and host.isprintable() and " " not in host):
        return  # the server takes only printable ASCII names (any client may send others)
    last = Socks5Negotiator().receive_data(request)[-1]
    assert isinstance(last, OpenUpstream) and last.port == port, last


if __name__ == "__main__":
    fuzzing.main(check)
