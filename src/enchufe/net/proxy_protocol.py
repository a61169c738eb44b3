"""The PROXY protocol on a socket: read a balancer's header, write one to a backend.

:func:`read_proxy_header` takes the header off a connected socket **and not one byte
more**: it peeks (``MSG_PEEK``) at most what the header can still take
(:attr:`~enchufe.proto.proxy_protocol.ProxyHeaderDecoder.most_needed`), then consumes
only the header's part of what it saw. Whatever follows (a TLS ClientHello, a request)
stays in the kernel for the next reader, so TLS, a relay's ``splice``, a child
process or the event loop take the socket over as if the header had never been
there. What it peeked and found no end of header in is all header, so it is consumed
too, and the next wait blocks until more arrives: no spinning on bytes already seen.

:func:`send_proxy_header` writes one on a connection, before anything else.
"""

from __future__ import annotations

import select
import socket
import time

from enchufe.errors import TimedOut, UnexpectedEOF
from enchufe.net.stream import SocketStream, translate_os_error
from enchufe.proto.proxy_protocol import ProxyHeader, ProxyHeaderDecoder, encode_header

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.address import Address
    from enchufe.net.connection import Connection

__all__ = ["read_proxy_header", "send_proxy_header"]


def read_proxy_header(stream: SocketStream, *, timeout: float | None) -> ProxyHeader:
    """Read the PROXY header (v1 or v2) that starts ``stream``, leaving what follows unread.

    Args:
        stream: a stream socket just accepted, nothing read from it yet.
        timeout: seconds for the whole header; ``None`` waits for ever.

    Raises:
        ProtocolError: the bytes are not a PROXY header.
        TimedOut: the header was not complete in time.
        UnexpectedEOF: the peer closed before the header ended.
        ConnectionLost: the peer reset the connection.
    """
    sock = stream.sock
    deadline = None if timeout is None else time.monotonic() + timeout
    decoder = ProxyHeaderDecoder()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    seen = 0
    while True:
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not poller.poll(wait):
            raise TimedOut(f"no whole PROXY header within {timeout} s")
        try:
            peeked = sock.recv(decoder.most_needed, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc
        if not peeked:
            raise UnexpectedEOF(f"connection closed after {seen} bytes of a PROXY header")
        result = decoder.feed(peeked)
        taken = len(peeked) - len(decoder.leftover)
        try:
            sock.recv(taken, socket.MSG_WAITALL)  # the peeked bytes are queued: returned at once, all
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc
        seen += taken
        if isinstance(result, ProxyHeader):
            return result


def send_proxy_header(
    conn: Connection,
    source: Address | None,
    destination: Address | None,
    *,
    version: int = 2,
    tlvs: tuple[tuple[int, bytes], ...] = (),
) -> None:
    """Send a PROXY header saying that ``conn`` relays a client at ``source`` that
    connected to ``destination``; ``None`` for both (or Unix addresses in v1) sends
    the header that gives no address (v1's ``UNKNOWN``, v2's UNSPEC).

    Raises:
        ValueError: an address that is not an IP literal or a Unix path, TLVs in v1.
        TimedOut, ConnectionLost: as :meth:`Connection.send_all`.
    """
    transport = "unspec" if source is None and destination is None else "stream"
    conn.send_all(encode_header(ProxyHeader(version, "proxy", transport, source, destination, tlvs)))
