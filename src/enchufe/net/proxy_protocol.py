"""The PROXY protocol on a socket: read a balancer's header, write one to a backend.

:func:`read_proxy_header` takes the header off a connected socket **and not one byte
more**: it peeks (``MSG_PEEK``) at most what the header can still take
(:attr:`~enchufe.proto.proxy_protocol.ProxyHeaderDecoder.most_needed`), then consumes
only the header's part of what it saw. Whatever follows (a TLS ClientHello, a request)
stays in the kernel for the next reader, so TLS, a relay's ``splice``, a child
process or the event loop take the socket over as if the header had never been
there. What it peeked and found no end of header in is all header, so it is consumed
too, and the next wait blocks until more arrives: no spinning on bytes already seen.

:class:`ProxyHeaderReader` does the same on an event loop (``-l -k``'s clients), and
:func:`send_proxy_header` writes one on a connection, before anything else.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

from enchufe.errors import NetworkError, ProtocolError, TimedOut, UnexpectedEOF
from enchufe.net.stream import SocketStream, translate_os_error
from enchufe.proto.proxy_protocol import NeedData, ProxyHeader, ProxyHeaderDecoder, encode_header

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.address import Address
    from enchufe.net.connection import Connection
    from enchufe.net.loop import EventLoop, TimerHandle

__all__ = ["ProxyHeaderReader", "read_proxy_header", "send_proxy_header", "take_header_bytes"]


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
    while True:
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not poller.poll(wait):
            raise TimedOut(f"no PROXY header within {timeout} s")
        with contextlib.suppress(BlockingIOError, InterruptedError):
            if isinstance(result := take_header_bytes(sock, decoder), ProxyHeader):
                return result


def take_header_bytes(sock: socket.socket, decoder: ProxyHeaderDecoder) -> ProxyHeader | NeedData:
    """Peek at what ``sock`` holds (without waiting), feed the header's part of it to
    ``decoder`` and consume that part only: the one step of every header reader.

    Raises:
        BlockingIOError: nothing to read yet.
        ProtocolError, UnexpectedEOF, ConnectionLost: as :func:`read_proxy_header`.
    """
    try:
        peeked = sock.recv(decoder.most_needed, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        raise
    except OSError as exc:
        raise translate_os_error(exc, "recv") from exc
    if not peeked:
        raise UnexpectedEOF(f"connection closed after {decoder.consumed} bytes of a PROXY header")
    result = decoder.feed(peeked)
    taken = len(peeked) - len(decoder.leftover)
    try:
        sock.recv(taken, socket.MSG_WAITALL)  # the peeked bytes are queued: returned at once, all
    except OSError as exc:
        raise translate_os_error(exc, "recv") from exc
    decoder.leftover = b""  # still in the socket, for whoever reads it next
    return result


class ProxyHeaderReader:
    """:func:`read_proxy_header` on an event loop: the header read as it arrives, the
    socket watched only until then, and nothing past the header taken.

    Args:
        loop: the loop (every call from its thread).
        sock: a stream socket just accepted.
        timeout: seconds for the whole header (``None``: for ever).
        on_header: ``on_header(header)`` once it is read.
        on_failed: ``on_failed(error)`` for a bad header, an end or reset before it
            ended (``ProtocolError``, ``NetworkError``), or ``TimedOut``.
    """

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        *,
        timeout: float | None,
        on_header: Callable[[ProxyHeader], None],
        on_failed: Callable[[Exception], None],
    ) -> None:
        self.sock = sock
        self._loop = loop
        self._timeout = timeout
        self._on_header = on_header
        self._on_failed = on_failed
        self._decoder = ProxyHeaderDecoder()
        self._timer: TimerHandle | None = None

    def start(self) -> None:
        self._loop.add_reader(self.sock.fileno(), self._readable)
        if self._timeout is not None:
            self._timer = self._loop.call_later(self._timeout, self._timed_out)

    def cancel(self) -> None:
        """Stop reading (the socket stays the caller's). Idempotent."""
        self._loop.remove_reader(self.sock.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _readable(self) -> None:
        try:
            result = take_header_bytes(self.sock, self._decoder)
        except (BlockingIOError, InterruptedError):
            return
        except (ProtocolError, NetworkError) as exc:
            self.cancel()
            self._on_failed(exc)
            return
        if isinstance(result, ProxyHeader):
            self.cancel()
            self._on_header(result)

    def _timed_out(self) -> None:
        self._timer = None
        self.cancel()
        self._on_failed(TimedOut(f"no PROXY header within {self._timeout} s"))


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
