"""SOCKS4, SOCKS4a and SOCKS5 through a proxy: the client's handshakes (being written)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.net.connection import Connection
    from enchufe.proto.proxy import Credentials

__all__ = ["socks4_connect", "socks5_connect"]


def socks4_connect(conn: Connection, host: str, port: int, user_id: str, *, deadline: float | None) -> None:
    """Ask the SOCKS4 proxy at the end of ``conn`` for a tunnel to ``host:port``."""
    raise NotImplementedError


def socks5_connect(
    conn: Connection, host: str, port: int, credentials: Credentials | None, *, deadline: float | None
) -> None:
    """Ask the SOCKS5 proxy at the end of ``conn`` for a tunnel to ``host:port``."""
    raise NotImplementedError
