"""HTTP CONNECT through a proxy: the client's handshake (being written)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.net.connection import Connection
    from enchufe.proto.proxy import Credentials

__all__ = ["http_connect"]


def http_connect(
    conn: Connection,
    host: str,
    port: int,
    credentials: Credentials | None,
    *,
    deadline: float | None,
    reconnect: Callable[[], Connection],
) -> Connection:
    """Ask the HTTP proxy at the end of ``conn`` for a tunnel to ``host:port``."""
    raise NotImplementedError
