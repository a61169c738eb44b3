"""Creating sockets of every kind enchufe speaks, with one vocabulary.

A :data:`Transport` names the service, independent of the address family:

==============  ====================================  ==========================
transport       Internet address (AF_INET/AF_INET6)   Unix address (AF_UNIX)
==============  ====================================  ==========================
``"stream"``    TCP (SOCK_STREAM)                     SOCK_STREAM
``"datagram"``  UDP (SOCK_DGRAM)                      SOCK_DGRAM
``"sctp"``      SCTP (SOCK_STREAM, IPPROTO_SCTP)      (not possible)
==============  ====================================  ==========================
"""

from __future__ import annotations

import socket

from enchufe.errors import AddressError, Unsupported
from enchufe.net.stream import translate_os_error

__all__ = ["Transport", "new_socket", "socket_kind"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    Transport: TypeAlias = Literal["stream", "datagram", "sctp"]

#: IPPROTO_SCTP is 132 on every platform; older Pythons do not always export it.
IPPROTO_SCTP: int = getattr(socket, "IPPROTO_SCTP", 132)


def socket_kind(transport: Transport) -> tuple[int, int]:
    """The ``(type, proto)`` pair for ``socket.socket()``."""
    if transport == "stream":
        return socket.SOCK_STREAM, 0
    if transport == "datagram":
        return socket.SOCK_DGRAM, 0
    return socket.SOCK_STREAM, IPPROTO_SCTP


def new_socket(family: int, transport: Transport) -> socket.socket:
    """Create a socket, translating a kernel without the protocol into a clear error.

    Raises:
        Unsupported: ``SCTP is not supported by this kernel`` and the like.
        AddressError: SCTP over a Unix socket.
    """
    if family == socket.AF_UNIX and transport == "sctp":
        raise AddressError("SCTP cannot be used with Unix domain sockets")
    type_, proto = socket_kind(transport)
    try:
        return socket.socket(family, type_, proto)
    except OSError as exc:
        error = translate_os_error(exc, "socket")
        if isinstance(error, Unsupported):
            what = "SCTP" if transport == "sctp" else _family_name(family)
            raise Unsupported(f"{what} is not supported by this kernel", errno=exc.errno) from exc
        raise error from exc


def _family_name(family: int) -> str:
    names = {int(socket.AF_INET): "IPv4", int(socket.AF_INET6): "IPv6", int(socket.AF_UNIX): "Unix domain socket"}
    return names.get(family, str(family))
