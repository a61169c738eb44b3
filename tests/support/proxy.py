"""A ProxyServer on a loop thread of its own, for tests that drive proxy clients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from enchufe.address import Address, InetAddress
from enchufe.net.listen import open_listeners
from enchufe.proto.proxy import ProxyNegotiator
from enchufe.serve.proxy_server import ProxyServer
from support.loop import LoopThread


@contextlib.contextmanager
def running_proxy_server(
    negotiator: Callable[[Address | None], ProxyNegotiator], host: str = "127.0.0.1", **options: object
) -> Iterator[tuple[ProxyServer, LoopThread, int]]:
    """A :class:`ProxyServer` listening on ``host`` (a free port), running until the block
    ends: yields the server, its loop thread (``call`` runs code on it) and the port."""
    listeners = open_listeners(InetAddress(host, 0))
    looper = LoopThread()
    try:
        server = ProxyServer(looper.loop, listeners, negotiator, **options)  # type: ignore[arg-type]
        looper.call(server.start)
        port = listeners[0].address.port  # type: ignore[union-attr]
        try:
            yield server, looper, port
        finally:
            looper.call(server.close)
    finally:
        looper.close()
        for listener in listeners:
            listener.close()
