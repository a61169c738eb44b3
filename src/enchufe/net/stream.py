"""Streams: the small interface every byte pipe in enchufe implements.

A :class:`Stream` is anything with ``recv`` (``b""`` means end of file), ``send_all``,
``send_eof`` (half-close: "I will send no more, but keep reading"), ``close`` and
``fileno``. ``recv`` and ``send_all`` take their own ``timeout``: a deadline is an
argument of each call, never state of the stream, so one thread reading and another
sending never change each other's waits. Sockets
(:class:`SocketStream`) and file descriptors such as stdin/stdout
(:class:`enchufe.net.fdstream.FdStream`) implement it, so one relay, one set of
helpers and one test double serve every mode.

This module is also the one place where ``OSError`` becomes an
:mod:`enchufe.errors` exception: :func:`translate_os_error`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.errors import (
    BindError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    NetworkError,
    ResolveError,
    StreamClosed,
    TimedOut,
    Unsupported,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # a protocol only matters to type checkers; typing is slow to import

__all__ = [
    "DATAGRAM_PAYLOAD_SIZE",
    "DEFAULT_RECV_SIZE",
    "SocketStream",
    "Stream",
    "address_from_sockaddr",
    "remaining_time",
    "translate_os_error",
]

#: Bytes asked for by one ``recv`` when the caller does not say: ncat reads 8 KiB at a
#: time; a larger read costs nothing when less is available and halves the number of
#: system calls on bulk transfers.
DEFAULT_RECV_SIZE = 65536
#: What one datagram carries of a local input (a file, a pipe) read for a datagram
#: peer: nsock's read size, far below UDP's 65,507.
DATAGRAM_PAYLOAD_SIZE = 8192

_LOST = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN})
_UNSUPPORTED = frozenset({errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EOPNOTSUPP})


class Stream(Protocol):
    """A bidirectional byte stream with half-close.

    The ``timeout`` of ``recv`` and ``send_all`` is in seconds and bounds that call
    alone; ``None`` blocks without limit, ``0`` takes only what is possible at once. A
    call that runs out of time raises :class:`enchufe.errors.TimedOut`.
    """

    #: True when each ``recv`` returns one datagram; then ``b""`` is an empty datagram,
    #: not end of file (datagrams have no end of file).
    is_datagram: bool

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: float | None = None) -> bytes:
        """Return at most ``max_bytes``: at least one byte, or ``b""`` at end of file
        (or, from a datagram stream, for an empty datagram)."""
        ...

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send every byte of ``data`` (a datagram stream sends it as one datagram)."""
        ...

    def send_eof(self) -> None:
        """Signal end of file to the peer while still allowing ``recv``."""
        ...

    def close(self) -> None:
        """Release the stream. Idempotent."""
        ...

    def pending(self) -> int:
        """Bytes already inside the stream that ``recv(timeout=0)`` may return before
        :meth:`fileno` becomes readable (TLS's decrypted records); 0 for a stream that
        keeps nothing of its own."""
        ...

    def abort(self) -> None:
        """Break off, from another thread, a ``send_all`` blocked on a peer that stopped
        reading (a socket shuts down both ways); the stream must still be closed."""
        ...

    def fileno(self) -> int:
        """The file descriptor to wait on before ``recv`` would return data."""
        ...


def translate_os_error(exc: OSError, action: str, *, context: str = "") -> NetworkError:
    """Turn an ``OSError`` from the operating system into an enchufe error.

    Args:
        exc: the original error; the caller raises the result ``from exc``.
        action: what was being done: ``"connect"``, ``"bind"``, ``"resolve"``,
            ``"socket"`` (creating one), ``"recv"`` or ``"send"``.
        context: an optional prefix for the message, e.g. ``"bind to 0.0.0.0:80"``.

    The message is the system's own text (``Connection refused``), prefixed with
    ``context: `` when one is given; ``errno`` is kept.
    """
    if isinstance(exc, NetworkError):
        return exc
    number = exc.errno
    text = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and number is None:
        text = "Connection timed out" if action == "connect" else "Timed out"
    message = f"{context}: {text}" if context else text
    if isinstance(exc, socket.gaierror) or action == "resolve":
        return ResolveError(message, errno=number)
    if isinstance(exc, TimeoutError):
        return (ConnectTimeout if action == "connect" else TimedOut)(message, errno=number)
    if number in _UNSUPPORTED and action == "socket":
        return Unsupported(message, errno=number)
    if number == errno.EBADF:
        return StreamClosed(message, errno=number)
    if action == "connect":
        return ConnectError(message, errno=number)
    if action == "bind":
        return BindError(message, errno=number)
    if number in _LOST:
        return ConnectionLost(message, errno=number)
    return NetworkError(message, errno=number)


def address_from_sockaddr(family: int, sockaddr: object) -> Address | None:
    """Make an :data:`Address` from what ``getsockname``/``getpeername``/``recvfrom``
    return; ``None`` for an unnamed (unbound) Unix socket, which has no address."""
    if family == socket.AF_UNIX:
        if isinstance(sockaddr, bytes):  # decoded as UnixAddress.sockaddr encodes: the same bytes come back
            if sockaddr[:1] == b"\0":
                return UnixAddress("@" + os.fsdecode(sockaddr[1:]))
            sockaddr = os.fsdecode(sockaddr)
        return UnixAddress(str(sockaddr)) if sockaddr else None
    assert isinstance(sockaddr, tuple)
    host: str = sockaddr[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return InetAddress(host, sockaddr[1])


class SocketStream:
    """A :class:`Stream` over a connected socket: TCP, SCTP, Unix stream, or a
    connected datagram socket (UDP, Unix datagram), where each ``recv`` returns one
    datagram and ``send_eof`` has nothing to send.

    ``send_all`` may be called from several threads: each call's bytes go out
    together, never interleaved with another call's; one thread may ``recv`` while
    others send.

    The socket stays in blocking mode with no socket timeout, set once here. A call
    with a ``timeout`` never changes that (no ``settimeout``, no ``ioctl(FIONBIO)``
    per call, and nothing another thread's wait depends on): it tries the system call
    with ``MSG_DONTWAIT`` and, when the kernel has nothing to give or take yet, waits
    with ``poll`` for what is left of its own deadline.

    Args:
        sock: a connected socket; the stream owns it.
        unlink_on_close: a Unix socket file this stream bound and must remove.
    """

    def __init__(self, sock: socket.socket, *, unlink_on_close: str | None = None) -> None:
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # once: every deadline from here on is a call's own
        self.sock = sock
        self.is_datagram = sock.type == socket.SOCK_DGRAM
        #: Held by each send_all, so that one call's bytes never interleave with another's.
        self.send_lock = threading.Lock()
        self._unlink_on_close = unlink_on_close

    @property
    def local_address(self) -> Address | None:
        return address_from_sockaddr(self.sock.family, self.sock.getsockname())

    @property
    def peer_address(self) -> Address | None:
        try:
            return address_from_sockaddr(self.sock.family, self.sock.getpeername())
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return self.sock.recv(max_bytes)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    return self.sock.recv(max_bytes, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    _wait(self.sock, select.POLLIN, deadline)
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        try:
            with self.send_lock:
                if timeout is None:
                    self.sock.sendall(data)
                    return
                deadline = time.monotonic() + timeout
                view = memoryview(data)
                while True:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        view = view[self.sock.send(view, socket.MSG_DONTWAIT) :]
                    if not view:
                        return
                    _wait(self.sock, select.POLLOUT, deadline)
        except OSError as exc:
            raise translate_os_error(exc, "send") from exc

    def send_eof(self) -> None:
        if self.is_datagram:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise translate_os_error(exc, "send") from exc

    def pending(self) -> int:
        return 0

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()
        if self._unlink_on_close is not None:
            path, self._unlink_on_close = self._unlink_on_close, None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def fileno(self) -> int:
        return self.sock.fileno()

    def __repr__(self) -> str:
        return f"<SocketStream fd={self.sock.fileno()}>"


def remaining_time(deadline: float | None) -> float | None:
    """The ``timeout`` left until a ``time.monotonic()`` deadline (``None``: none), for
    a stream whose one call makes several timed calls underneath."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _wait(sock: socket.socket, event: int, deadline: float) -> None:
    """Wait until ``sock`` is ready for ``event`` or raise ``TimedOut`` at ``deadline``."""
    poller = select.poll()
    poller.register(sock, event)
    if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
        raise TimedOut("Timed out")
