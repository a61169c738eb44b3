"""Listening sockets, with ncat's choices.

- No address means every address: two sockets, ``[::]`` with ``IPV6_V6ONLY`` and
  ``0.0.0.0``, so IPv4 peers show up as ``127.0.0.1`` and not ``::ffff:127.0.0.1``.
  A machine without IPv6 gets the IPv4 socket alone. Port 0 gives both sockets the
  same ephemeral port.
- An explicit address gives one socket per resolved address family.
- An IPv6 socket is always ``IPV6_V6ONLY``, as in ncat: ``[::]`` with ``family=AF_INET6``
  or given explicitly hears no IPv4 peer, whatever the system's default
  (``net.ipv6.bindv6only``).
- Internet listeners set ``SO_REUSEADDR``, so a restarted server can bind at once;
  ``configure`` sets any other option before the bind.
- ``reuse_port=True`` sets ``SO_REUSEPORT``: every socket of the same user bound so
  to one address joins its group, and the kernel spreads new connections over the
  group's *listening* members by a hash of the peer's address and port. A member
  that is bound but not listening (a :class:`PortReservation`) is in no listening
  table and gets none: it only keeps the port, so that worker processes can listen
  on a port the kernel picked for the parent (``tests/serve/test_workers.py``
  proves it on the kernel the tests run on).
- The backlog is the kernel's ceiling, ``SOMAXCONN``; the command asks for ncat's 10.
- A Unix socket file is created by ``bind`` and removed by :meth:`Listener.close`.
- A datagram listener has no ``accept`` in the kernel; :meth:`Listener.accept` waits
  for the first datagram and connects the socket to its sender, as ncat's
  ``-u -l`` does: from then on only that peer is heard.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from types import TracebackType

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.errors import BindError, NetworkError, TimedOut
from enchufe.net.connection import Connection
from enchufe.net.resolve import Resolver, SystemResolver
from enchufe.net.sockets import new_socket, socket_kind
from enchufe.net.stream import SocketStream, address_from_sockaddr, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.net.sockets import Transport

__all__ = [
    "NCAT_BACKLOG",
    "Listener",
    "PortReservation",
    "accept_first",
    "close_all",
    "open_listeners",
    "reserve_port",
    "wait_for_peer",
]

#: ncat's listen backlog, which the command keeps. The library's default is the
#: kernel's ceiling: with 10, a burst of clients meets SYN retries of a second.
NCAT_BACKLOG = 10
_EPHEMERAL_RETRIES = 16


class Listener:
    """A bound socket that peers connect (or send datagrams) to.

    Args:
        sock: the bound (and, for streams, listening) socket; the listener owns it.
        unlink_on_close: the Unix socket file to remove on close.
    """

    def __init__(self, sock: socket.socket, *, unlink_on_close: str | None = None) -> None:
        self.sock = sock
        address = address_from_sockaddr(sock.family, sock.getsockname())
        assert address is not None, "a listener is bound"
        self.address: Address = address
        self.is_datagram = sock.type == socket.SOCK_DGRAM
        self._unlink_on_close = unlink_on_close

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, *, timeout: float | None = None) -> Connection:
        """Wait for the next peer and return a connection to it.

        For a datagram listener this consumes the listener: the socket itself,
        connected to the first sender, becomes the connection (its first datagram is
        still unread), and the listener must not be used again except to close it.

        Raises:
            TimedOut: no peer within ``timeout`` seconds.
        """
        if timeout is not None and not _wait_readable([self], timeout):
            raise TimedOut(f"no connection to {self.address} within {timeout} s")
        if self.is_datagram:
            return self._accept_datagram()
        try:
            sock, sockaddr = self.sock.accept()
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc
        # The peer is the address accept() gave: a peer that reset in the meantime makes
        # getpeername() fail, and the socket would be left to the garbage collector.
        try:
            local = address_from_sockaddr(sock.family, sock.getsockname())
        except OSError as exc:
            sock.close()
            raise translate_os_error(exc, "recv") from exc
        return Connection(SocketStream(sock), local=local, peer=address_from_sockaddr(sock.family, sockaddr))

    def next_sender(self) -> Address | None:
        """The sender of the next datagram waiting on a datagram listener, which stays
        unread (``None``: an unbound Unix datagram peer). Blocks until one arrives."""
        try:
            _, sender = self.sock.recvfrom(1, socket.MSG_PEEK)
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc
        return address_from_sockaddr(self.sock.family, sender)

    def drop_next(self) -> None:
        """Discard the next datagram waiting on a datagram listener (one refused)."""
        try:
            self.sock.recv(1)
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc

    def _accept_datagram(self) -> Connection:
        try:
            _, sender = self.sock.recvfrom(1, socket.MSG_PEEK)
            peer = address_from_sockaddr(self.sock.family, sender)
            if peer is not None:  # an unbound Unix datagram client has no address to answer to
                self.sock.connect(sender)
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc
        owned_path, self._unlink_on_close = self._unlink_on_close, None
        sock = self.sock.dup()
        self.sock.close()
        return Connection(SocketStream(sock, unlink_on_close=owned_path), local=self.address, peer=peer)

    def close(self) -> None:
        """Close the socket and remove its Unix socket file. Idempotent."""
        self.sock.close()
        if self._unlink_on_close is not None:
            path, self._unlink_on_close = self._unlink_on_close, None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "datagram" if self.is_datagram else "stream"
        return f"<Listener {kind} {self.address}>"


def open_listeners(
    address: Address | None = None,
    *,
    port: int = 0,
    transport: Transport = "stream",
    family: int = socket.AF_UNSPEC,
    backlog: int = socket.SOMAXCONN,
    resolver: Resolver | None = None,
    configure: Callable[[socket.socket], None] | None = None,
    reuse_port: bool = False,
) -> list[Listener]:
    """Bind and listen; return one listener per socket.

    Args:
        address: where to listen. ``None`` means every local address on ``port``.
        port: the port when ``address`` is ``None``; 0 picks a free one.
        transport: ``"stream"``, ``"datagram"`` or ``"sctp"``.
        family: ``socket.AF_INET`` or ``AF_INET6`` to listen on that family only.
        backlog: the kernel's queue of connections not yet accepted (default
            ``SOMAXCONN``; ncat's is :data:`NCAT_BACKLOG`).
        resolver: resolves a host name given in ``address``.
        configure: ``configure(sock)`` on each socket before it binds: socket options
            (``SO_REUSEPORT`` for several processes on one port; options such as
            ``TCP_NODELAY`` or ``SO_KEEPALIVE`` set here are inherited by every
            connection the listener accepts, on Linux). An exception it raises
            closes the socket and propagates.
        reuse_port: set ``SO_REUSEPORT`` (Internet sockets only): several processes
            listen on the same address, and the kernel shares the connections out.

    Raises:
        BindError: ``bind to 0.0.0.0:80: Address already in use`` and the like.
        ResolveError, Unsupported: as their names say.
        ValueError: ``reuse_port`` with a Unix address, which has no such group.
    """
    setup = _Setup(transport, backlog, configure, reuse_port=reuse_port, listen=True)
    return _open(address, port, family, resolver, setup)


class PortReservation:
    """Internet sockets bound with ``SO_REUSEPORT`` and never listening: they hold an
    address and port (one the kernel picked, for port 0) for listeners that other
    processes open later with :meth:`open_listeners`, and get no connection
    themselves. Made by :func:`reserve_port`; closing it frees the port once no
    listener is left in the group.
    """

    def __init__(self, socks: list[socket.socket]) -> None:
        self._socks = socks
        addresses = [address_from_sockaddr(sock.family, sock.getsockname()) for sock in socks]
        self.addresses: list[InetAddress] = [address for address in addresses if isinstance(address, InetAddress)]
        self.port = self.addresses[0].port

    def open_listeners(
        self, *, backlog: int = socket.SOMAXCONN, configure: Callable[[socket.socket], None] | None = None
    ) -> list[Listener]:
        """Listen on each reserved address, in its ``SO_REUSEPORT`` group: a worker's
        own listeners. The addresses are literal: nothing is resolved again.

        Raises:
            BindError: as :func:`open_listeners` (another user's group on the port).
        """
        setup = _Setup("stream", backlog, configure, reuse_port=True, listen=True)
        listeners: list[Listener] = []
        try:
            for address in self.addresses:
                family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
                listeners.append(_listen_inet(family, (address.host, address.port), setup))
        except BaseException:
            close_all(listeners)
            raise
        return listeners

    def close(self) -> None:
        """Close the reserving sockets. Idempotent."""
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PortReservation {', '.join(str(address) for address in self.addresses)}>"


def reserve_port(
    address: InetAddress | None = None,
    *,
    port: int = 0,
    family: int = socket.AF_UNSPEC,
    resolver: Resolver | None = None,
) -> PortReservation:
    """Bind (without listening) the TCP sockets :func:`open_listeners` would listen
    on, with ``SO_REUSEPORT``: the addresses are resolved and the port fixed once,
    here, and a port already in use is a :class:`BindError` here, before any worker
    starts, a port where another ``SO_REUSEPORT`` group listens included. (TCP only:
    a bound UDP socket is a member of its group that receives.)

    Args:
        address, port, family, resolver: as for :func:`open_listeners`.

    Raises:
        BindError, ResolveError, Unsupported: as :func:`open_listeners`.
    """
    # SO_REUSEPORT lets any socket of the same user into the port's group: bound so at
    # once, a reservation would join another server's group (a second --workers server
    # on its port) and share its clients out. A socket without it cannot bind where a
    # group listens, so probes bound first make that port in use an error, as it is
    # for a server without workers; the reservation then binds what they got.
    probes = _open(
        address, port, family, resolver, _Setup("stream", socket.SOMAXCONN, None, reuse_port=False, listen=False)
    )
    names = [(probe.sock.family, probe.sock.getsockname()) for probe in probes]
    close_all(probes)
    setup = _Setup("stream", socket.SOMAXCONN, None, reuse_port=True, listen=False)
    socks: list[socket.socket] = []
    try:
        for probed_family, sockaddr in names:
            socks.append(_listen_inet(probed_family, sockaddr, setup).sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return PortReservation(socks)


def _open(address: Address | None, port: int, family: int, resolver: Resolver | None, setup: _Setup) -> list[Listener]:
    if isinstance(address, UnixAddress):
        if setup.reuse_port:
            raise ValueError("SO_REUSEPORT is for Internet sockets: a Unix socket file has one listener")
        return [_listen_unix(address, setup)]
    if address is None:
        return _listen_any(port, family, setup)
    resolver = resolver or SystemResolver()
    type_, proto = socket_kind(setup.transport)
    found = resolver.resolve(address.host, address.port, family=family, type=type_, proto=proto, passive=True)
    listeners: list[Listener] = []
    seen_families: set[int] = set()
    try:
        for candidate in found:
            if candidate.family in seen_families:
                continue
            seen_families.add(candidate.family)
            listeners.append(_listen_inet(candidate.family, candidate.sockaddr, setup))
    except NetworkError:
        close_all(listeners)
        raise
    return listeners


def close_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.close()


def accept_first(listeners: list[Listener], *, timeout: float | None = None) -> Connection:
    """Wait on several listeners and accept from whichever a peer reaches first."""
    return wait_for_peer(listeners, timeout=timeout).accept()


def wait_for_peer(listeners: list[Listener], *, timeout: float | None = None, wake_fd: int | None = None) -> Listener:
    """Wait until a peer reaches one of the listeners and return that listener, whose
    :meth:`~Listener.accept` then returns at once. Only the wait blocks, so an
    exception raised while waiting (a signal's) leaves no accepted socket unowned.

    Args:
        wake_fd: the non-blocking read end of a signal wake-up pipe
            (:func:`signal.set_wakeup_fd`). A signal that comes just before ``poll``
            starts does not interrupt it; the byte in the pipe does, and the signal's
            handler then runs. Its bytes are read and the wait goes on.

    Raises:
        TimedOut: no peer within ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    by_fd = {listener.fileno(): listener for listener in listeners}
    for fd in [*by_fd, wake_fd] if wake_fd is not None else by_fd:
        poller.register(fd, select.POLLIN)
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        ready = [fd for fd, _ in poller.poll(remaining)]
        if not ready:
            raise TimedOut(f"no connection within {timeout} s")
        for fd in ready:
            if fd in by_fd:
                return by_fd[fd]
        assert wake_fd is not None, "the only other descriptor"
        with contextlib.suppress(BlockingIOError):
            os.read(wake_fd, 512)


def _wait_readable(listeners: list[Listener], timeout: float | None) -> list[Listener]:
    """The listeners with a peer waiting (``poll``: unlike select, any fd number works)."""
    poller = select.poll()
    by_fd = {listener.fileno(): listener for listener in listeners}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    events = poller.poll(None if timeout is None else timeout * 1000)
    return [by_fd[fd] for fd, _ in events]


class _Setup:
    """How every socket of one :func:`open_listeners` call is made."""

    __slots__ = ("backlog", "configure", "listen", "reuse_port", "transport")

    def __init__(
        self,
        transport: Transport,
        backlog: int,
        configure: Callable[[socket.socket], None] | None,
        *,
        reuse_port: bool,
        listen: bool,
    ) -> None:
        self.transport = transport
        self.backlog = backlog
        self.configure = configure
        self.reuse_port = reuse_port
        self.listen = listen

    def bind(self, sock: socket.socket, sockaddr: tuple[object, ...] | str | bytes, where: Address) -> None:
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if self.configure is not None:
            self.configure(sock)
        try:
            sock.bind(sockaddr)
            if self.listen and self.transport != "datagram":
                sock.listen(self.backlog)
        except OSError as exc:
            raise translate_os_error(exc, "bind", context=f"bind to {where}") from exc


def _listen_any(port: int, family: int, setup: _Setup) -> list[Listener]:
    families = [socket.AF_INET6, socket.AF_INET] if family == socket.AF_UNSPEC else [family]
    for _ in range(_EPHEMERAL_RETRIES):
        listeners: list[Listener] = []
        shared_port = port
        try:
            for fam in families:
                wildcard = "::" if fam == socket.AF_INET6 else "0.0.0.0"
                try:
                    listener = _listen_inet(fam, (wildcard, shared_port), setup)
                except NetworkError as exc:
                    if exc.errno == errno.EAFNOSUPPORT and family == socket.AF_UNSPEC and fam == socket.AF_INET6:
                        continue  # no IPv6 on this machine: listen on IPv4 alone, as ncat does
                    raise
                listeners.append(listener)
                assert isinstance(listener.address, InetAddress)
                shared_port = listener.address.port
            return listeners
        except BaseException as exc:
            close_all(listeners)
            # Port 0: the port the first socket got may be taken for the other family.
            if not (port == 0 and listeners and isinstance(exc, BindError) and exc.errno == errno.EADDRINUSE):
                raise
    raise BindError("could not find a port free on both IPv4 and IPv6", errno=errno.EADDRINUSE)


def _listen_inet(family: int, sockaddr: tuple[str, int] | tuple[str, int, int, int], setup: _Setup) -> Listener:
    sock = new_socket(family, setup.transport)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        setup.bind(sock, sockaddr, InetAddress(sockaddr[0], sockaddr[1]))
        return Listener(sock)
    except BaseException:
        sock.close()
        raise


def _listen_unix(address: UnixAddress, setup: _Setup) -> Listener:
    sock = new_socket(socket.AF_UNIX, setup.transport)
    try:
        setup.bind(sock, address.sockaddr(), address)
        return Listener(sock, unlink_on_close=None if address.is_abstract else address.path)
    except BaseException:
        sock.close()
        raise
