"""Proxy servers on one event loop: HTTP (ncat's ``-l --proxy-type http``), SOCKS4 and SOCKS5.

A :class:`ProxyServer` carries out what each client's *negotiator* decides (the sans-IO
protocols: :mod:`enchufe.proto.http_proxy`, :mod:`enchufe.proto.socks`; the vocabulary is
:mod:`enchufe.proto.proxy`) and moves the bytes. Everything runs on the caller's
:class:`~enchufe.net.loop.EventLoop`, so:

- **No client holds a thread.** One that drips its request a byte a second (slowloris)
  costs a socket and a few objects, and everyone else is served meanwhile; thousands of
  tunnels live on the one thread.
- **Admission first** (``access``, then ``max_connections``, counting every client from
  accept to close), by the loop's :class:`~enchufe.net.acceptor.Acceptor`.
- **Timeouts per client.** ``request_timeout`` bounds the time from accept until the
  client has asked for somewhere to go (a client that never finishes its request is
  closed); ``idle_timeout`` (ncat's ``-i``, which ncat ignores in this mode,
  nmap/nmap#824) closes a client, in its request or in its tunnel, after that long
  without a byte either way; ``connect_timeout`` bounds each upstream attempt.
- **Upstream connects never block the loop:** a name is resolved by a small pool of
  resolver threads (a literal address at once), each address is tried in turn with a
  non-blocking ``connect``.
- **The tunnel is zero-copy** (:class:`~enchufe.net.tunnel.Tunnel`: ``splice``), with
  half-close both ways and backpressure; a reset on one side is a reset on the other.
- **TLS to the clients** (``tls=``, ncat's ``-l --proxy-type http --ssl``): each client's
  TLS runs in a :class:`~enchufe.net.tls_transport.TlsTransport` (its handshake as bytes
  arrive, bounded by ``handshake_timeout``), joined by a
  :class:`~enchufe.net.bridge.Bridge` to one end of a socket pair whose other end the
  client's session reads as if it were the client: the negotiation and the tunnel are
  the same, and only the TLS side copies.
- **Every client's end is told** (``on_close``, a :class:`ClientEnd`): the bytes each
  way, how long, and why it ended.
- **A PROXY protocol header to upstream** (``send_proxy_header=1`` or ``2``): each
  upstream connection starts with one naming the client and the address it reached,
  written on the socket as soon as it connects, before upstream's TLS and before any
  byte of the client's, so that a backend behind the relay knows who it serves.

A negotiator that raises is a defect: the error goes to the loop's ``on_error`` and that
client alone is closed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import queue
import socket
import struct
import termios
import threading

from enchufe.errors import NetworkError
from enchufe.net.acceptor import Acceptor
from enchufe.net.bridge import Bridge
from enchufe.net.connect import DEFAULT_CONNECT_TIMEOUT
from enchufe.net.proxy import is_address
from enchufe.net.resolve import SystemResolver
from enchufe.net.stream import address_from_sockaddr
from enchufe.net.tunnel import RESET_ON_CLOSE, Pump, Tunnel
from enchufe.proto.proxy import Close, OpenUnixUpstream, OpenUpstream, RelayResponse, Reply, SendUpstream, StartTunnel
from enchufe.serve.policy import DEFAULT_HANDSHAKE_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Sequence

    from enchufe.address import Address, UnixAddress
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop, TimerHandle
    from enchufe.net.resolve import Resolved, Resolver, Sockaddr
    from enchufe.proto.proxy import Action, ProxyNegotiator

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "ClientEnd", "ProxyServer"]

#: Seconds a client has, from accept, to say where it wants to go.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Client bytes read past what upstream has taken, above which the client is not read.
_UPSTREAM_BACKLOG = 256 * 1024
_READ_SIZE = 64 * 1024
#: Seconds between connects to a Unix listener whose backlog is full.
_UNIX_RETRY = 0.01
#: Seconds a client whose relayed answer is complete is read (and ignored) before its
#: socket is closed.
_LINGER = 2.0
#: Seconds a clean end's TLS side has to flush and send its close_notify.
_BRIDGE_LINGER = 5.0
#: Threads resolving upstream names at once.
_RESOLVER_THREADS = 4

_FAILURES = {
    errno.ECONNREFUSED: "refused",
    errno.ENETUNREACH: "network-unreachable",
    errno.EHOSTUNREACH: "host-unreachable",
    errno.ETIMEDOUT: "timeout",
}


class ClientEnd:
    """How one client's connection ended (``ProxyServer``'s ``on_close``).

    Attributes:
        peer: the client's address.
        sent: bytes from the client delivered upstream through the tunnel.
        received: bytes from upstream delivered to the client through the tunnel or
            the relayed response.
        duration: seconds from accept to close.
        reason: ``"done"`` (both directions ended), ``"error"`` (a reset, a broken pipe:
            ``error`` says which), ``"idle"`` (``idle_timeout``), ``"request-timeout"``,
            one of :data:`~enchufe.proto.proxy.UPSTREAM_FAILURES` (upstream could not be
            reached), ``"closed"`` (the negotiator closed it, or the client left during
            its request) or ``"shutdown"`` (the server closed).
        error: the failure's message when ``reason`` is ``"error"``.
    """

    __slots__ = ("duration", "error", "peer", "reason", "received", "sent")

    def __init__(
        self, peer: Address | None, sent: int, received: int, duration: float, reason: str, error: str | None
    ) -> None:
        self.peer = peer
        self.sent = sent
        self.received = received
        self.duration = duration
        self.reason = reason
        self.error = error

    def __repr__(self) -> str:
        return (
            f"ClientEnd(peer={self.peer!r}, sent={self.sent}, received={self.received}, "
            f"duration={self.duration:.3f}, reason={self.reason!r}, error={self.error!r})"
        )


class ProxyServer:
    """Serve proxy clients from ``listeners`` on ``loop``; see the module docstring.

    Args:
        loop: the event loop, run by the caller; every method is called in its thread.
        listeners: stream listeners (the server closes them in :meth:`close`).
        negotiator: ``negotiator(peer)`` makes each client's negotiator.
        max_connections: clients at once; one more is closed at accept.
        access: ``access(peer)`` False refuses the peer at accept.
        request_timeout: seconds from accept to the client's :class:`OpenUpstream`;
            ``None``: no limit.
        idle_timeout: seconds without a byte either way after which a client is closed.
        connect_timeout: seconds each upstream address has to accept.
        resolver: resolves upstream names (the system's by default), in worker threads.
        family: the address family of upstream connections (``AF_UNSPEC``: any).
        on_accept: ``on_accept(peer)`` for each admitted client.
        on_refused: ``on_refused(peer, reason)`` for each refused one.
        on_idle: ``on_idle(peer)`` when a client is closed by ``idle_timeout`` or
            ``request_timeout``.
        tls: a server context: clients speak TLS (see the module docstring).
        upstream_tls: a client context: the server speaks TLS to every upstream (the
            relay's ``--target-ssl``), in the same way.
        upstream_server_hostname: the name upstream's certificate is checked against,
            and sent by SNI; by default the host each :class:`OpenUpstream` named.
        handshake_timeout: seconds a TLS client has for its handshake.
        on_tls_failed: ``on_tls_failed(peer, error)`` when a TLS handshake fails, the
            client's or its upstream's.
        on_close: ``on_close(end)`` when an admitted client is closed, whatever the
            reason (a :class:`ClientEnd`).
        send_proxy_header: 1 or 2: each upstream connection starts with a PROXY protocol
            header of that version (:mod:`enchufe.proto.proxy_protocol`) naming the
            client and the local address it connected to.
    """

    def __init__(
        self,
        loop: EventLoop,
        listeners: Sequence[Listener],
        negotiator: Callable[[Address | None], ProxyNegotiator],
        *,
        max_connections: int | None = None,
        access: Callable[[Address | None], bool] | None = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        idle_timeout: float | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        resolver: Resolver | None = None,
        family: int = socket.AF_UNSPEC,
        on_accept: Callable[[Address | None], None] | None = None,
        on_refused: Callable[[Address | None, str], None] | None = None,
        on_idle: Callable[[Address | None], None] | None = None,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        on_tls_failed: Callable[[Address | None, NetworkError], None] | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        upstream_server_hostname: str | None = None,
        on_close: Callable[[ClientEnd], None] | None = None,
        send_proxy_header: int | None = None,
    ) -> None:
        if send_proxy_header not in (None, 1, 2):
            raise ValueError(f"PROXY protocol version {send_proxy_header} does not exist (1 or 2)")
        self.loop = loop
        self.listeners = list(listeners)
        self.negotiator = negotiator
        self.max_connections = max_connections
        self.access = access
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.resolver = resolver or SystemResolver()
        self.family = family
        self.on_accept = on_accept
        self.on_idle = on_idle
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.on_tls_failed = on_tls_failed
        self.upstream_tls = upstream_tls
        self.upstream_server_hostname = upstream_server_hostname
        self.on_close = on_close
        self.send_proxy_header = send_proxy_header
        self._sessions: set[_Session] = set()
        #: Each TLS client's bridge, and the two sockets under its transports.
        self._bridges: dict[Bridge, tuple[socket.socket, socket.socket]] = {}
        self._resolvers: _Resolvers | None = None
        self._acceptor = Acceptor(
            loop, self.listeners, on_accept=self._accepted, admit=self._admit, on_refused=on_refused
        )
        self._closed = False

    def __len__(self) -> int:
        """Clients connected now, in their request or in their tunnel."""
        return len(self._sessions)

    @property
    def addresses(self) -> list[Address]:
        return [listener.address for listener in self.listeners]

    def start(self) -> None:
        """Start accepting."""
        self._acceptor.start()

    def close(self) -> None:
        """Stop accepting, close the listeners and every client now."""
        if self._closed:
            return
        self._closed = True
        self._acceptor.stop()
        for listener in self.listeners:
            listener.close()
        for session in list(self._sessions):
            session.close("shutdown")
        for bridge in list(self._bridges):
            self._force_close(bridge)
        if self._resolvers is not None:
            self._resolvers.close()

    # -- the acceptor's hooks --------------------------------------------------------------

    def _admit(self, peer: Address | None) -> str | None:
        if self.access is not None and not self.access(peer):
            return "not allowed"
        if self.max_connections is not None and len(self._sessions) >= self.max_connections:
            return f"connection limit reached ({self.max_connections})"
        return None

    def _accepted(self, sock: socket.socket, peer: Address | None) -> None:
        # The address the client reached, for a PROXY header (the only one to need it).
        local = None if self.send_proxy_header is None else address_from_sockaddr(sock.family, sock.getsockname())
        if self.tls is None:
            session = _Session(self, sock, peer, local)
            self._sessions.add(session)
            if self.on_accept is not None:
                self.on_accept(peer)
            session.start()
            return
        # A TLS client's session starts once its handshake is done: a client that fails
        # it (a scanner, plaintext) costs no upstream connection.
        made: list[_Session] = []
        try:
            inner, bridge = self._secure(
                sock,
                self.tls,
                server_side=True,
                on_ready=lambda: made[0].start(),
                on_failed=lambda error: made[0].tls_failed(error),
            )
        except OSError:  # no descriptor for the socket pair: the client is closed unserved
            sock.close()
            return
        session = _Session(self, inner, peer, local)
        made.append(session)
        session.secured(bridge)
        self._sessions.add(session)
        if self.on_accept is not None:
            self.on_accept(peer)

    def _secure(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        on_ready: Callable[[], None] | None = None,
        on_failed: Callable[[NetworkError], None],
    ) -> tuple[socket.socket, Bridge]:
        """Run TLS over ``sock`` (a client's, or upstream's); return the socket of
        plaintext its session uses instead, and the bridge between the two.

        Raises:
            OSError: no descriptors for the socket pair (``sock`` is left to the caller).
        """
        from enchufe.net.tls_transport import TlsTransport  # only a TLS server pays for ssl
        from enchufe.net.transport import SocketTransport

        inner, outer = socket.socketpair()

        def closed(error: NetworkError | None) -> None:
            self._bridges.pop(bridge, None)

        bridge = Bridge(on_ready=on_ready, on_closed=closed)
        tls_side = TlsTransport(
            self.loop,
            context,
            bridge.a,
            on_handshake_failed=on_failed,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=self.handshake_timeout,
        )
        self._bridges[bridge] = (sock, outer)
        SocketTransport(self.loop, sock, tls_side)
        SocketTransport(self.loop, outer, bridge.b)
        return inner, bridge

    def _end_bridge(self, bridge: Bridge, *, clean: bool) -> None:
        """End a session's bridge with the session: flushed and closed after a clean end
        (forced after :data:`_BRIDGE_LINGER` seconds, for a peer that never reads), cut
        off at once with a reset otherwise, so that the TLS peer never takes a broken
        stream for a whole one (a ``close_notify`` would say it is whole)."""
        sockets = self._bridges.get(bridge)
        if sockets is None:
            return  # closed already
        if clean:
            bridge.finish()  # what the session wrote last still passes, then close_notify
            self.loop.call_later(_BRIDGE_LINGER, self._force_close, bridge)
            return
        with contextlib.suppress(OSError):
            sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        self._force_close(bridge)

    def _force_close(self, bridge: Bridge) -> None:
        sockets = self._bridges.pop(bridge, None)
        if sockets is not None:
            bridge.abort()
            for sock in sockets:  # now: the transports would close them on a later turn
                sock.close()

    # -- upstream --------------------------------------------------------------------------

    def _resolve(self, session: _Session, host: str, port: int) -> None:
        """Resolve ``host`` for ``session``: a literal here, a name in a resolver thread."""
        if is_address(host):
            try:
                candidates = self.resolver.resolve(host, port, family=self.family, type=socket.SOCK_STREAM, proto=0)
            except NetworkError:
                session.upstream_failed("unresolved")
                return
            session.resolved(candidates)
            return
        if self._resolvers is None:
            self._resolvers = _Resolvers(self.loop, self.resolver, self.family)
        self._resolvers.submit(session, host, port)

    def _forget(self, session: _Session, end: ClientEnd) -> None:
        self._sessions.discard(session)
        if self.on_close is not None:
            self.on_close(end)


def _connected(sock: socket.socket) -> bool:
    """Whether a non-blocking connect that became writable succeeded. Asked of the peer's
    address, not of SO_ERROR: reading SO_ERROR clears it, and a target that accepted,
    sent and reset at once would then read as a clean end instead of a reset."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


class _Resolvers:
    """Up to :data:`_RESOLVER_THREADS` daemon threads resolving upstream names from a
    queue; each answer goes back to its session on the loop. Daemon threads, because a
    ``getaddrinfo`` cannot be cancelled: one waiting on a dead DNS server must not hold
    the process after the server closed."""

    def __init__(self, loop: EventLoop, resolver: Resolver, family: int) -> None:
        self.loop = loop
        self.resolver = resolver
        self.family = family
        self._jobs: queue.SimpleQueue[tuple[_Session, str, int] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, session: _Session, host: str, port: int) -> None:
        self._jobs.put((session, host, port))
        if len(self._threads) < _RESOLVER_THREADS:
            thread = threading.Thread(target=self._work, name=f"proxy-resolver-{len(self._threads) + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            session, host, port = job
            try:
                outcome: list[Resolved] | Exception = self.resolver.resolve(
                    host, port, family=self.family, type=socket.SOCK_STREAM, proto=0
                )
            except Exception as exc:  # noqa: BLE001 - handed to the session, on the loop
                outcome = exc
            self.loop.call_soon_threadsafe(session.resolution_done, outcome)


class _Session:
    """One client: its negotiation, its upstream connection, then its tunnel."""

    def __init__(self, server: ProxyServer, sock: socket.socket, peer: Address | None, local: Address | None) -> None:
        self.server = server
        self.loop = server.loop
        self.client = sock
        self.peer = peer
        self.local = local
        self.negotiator = server.negotiator(peer)
        self.upstream: socket.socket | None = None
        self._client_fd = sock.fileno()
        self._to_client = bytearray()  # replies not yet sent
        self._to_upstream = bytearray()  # bytes for upstream not yet sent
        self._reading = False
        self._writing_client = False
        self._writing_upstream = False
        self._asked = False  # an OpenUpstream came: the request timeout is over
        self._asked_host: str | None = None  # the host it named
        self._closing = False  # Close: no more reading, close once the replies are out
        self._client_ended = False
        self._tunnel: Tunnel | None = None
        self._response: Pump | None = None
        self._candidates: list[Resolved] = []
        self._attempt: socket.socket | None = None
        self._attempt_timer: TimerHandle | None = None
        self._unix_retry: TimerHandle | None = None
        self._unix_deadline = 0.0
        self._last_failure = "failed"
        self._reason = "closed"  # why a Close from the negotiator ends the client
        self._accepted_at = self._last_moved = self.loop.time()
        self._timer: TimerHandle | None = None
        self._unsent = 0  # bytes the kernel still held for the peers at the last idle check
        self._lingering = False  # the answer is out: reading only until the client's end
        self._linger_timer: TimerHandle | None = None
        self._bridges: list[Bridge] = []  # this client's TLS, its own or upstream's
        self._closed = False
        sock.setblocking(False)

    def secured(self, bridge: Bridge) -> None:
        """``bridge`` carries this client's TLS (its own, or upstream's): it ends with it."""
        self._bridges.append(bridge)

    def tls_failed(self, error: NetworkError) -> None:
        if self.server.on_tls_failed is not None:
            self.server.on_tls_failed(self.peer, error)
        self.close("tls", str(error))

    def start(self) -> None:
        self._arm_timer()
        self._carry_out(self.negotiator.accepted)

    # -- the client's bytes ------------------------------------------------------------------

    def _on_readable(self) -> None:
        if not self._reading:
            return
        try:
            data = self.client.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close("closed")  # a client that resets in its request has nothing to be answered
            return
        self._moved()
        if self._lingering:
            if not data:
                self.close("done")
            return  # what a client sends after its answer is over goes nowhere
        if not data:
            self._client_ended = True
            self._want_read(False)
        self._carry_out(self.negotiator.receive_data, data)

    def _carry_out(self, step: Callable[..., list[Action]], *args: object) -> None:
        """Ask the negotiator (``step(*args)``) and do what it says."""
        try:
            actions = step(*args)
        except Exception as exc:  # noqa: BLE001 - a negotiator's defect costs its client only
            self.close("error", str(exc))
            self.loop.on_error(exc)
            return
        for action in actions:
            if self._closed:
                return
            if isinstance(action, Reply):
                if self._response is None:  # once upstream's response flows, it alone writes to the client
                    self._to_client += action.data
                    self._flush_client()
            elif isinstance(action, SendUpstream):
                self._to_upstream += action.data
                if self.upstream is not None:
                    self._flush_upstream()
            elif isinstance(action, OpenUpstream):
                self._open_upstream(action.host, action.port)
            elif isinstance(action, OpenUnixUpstream):
                self._open_unix_upstream(action.address)
            elif isinstance(action, StartTunnel):
                self._start_tunnel()
            elif isinstance(action, RelayResponse):
                self._relay_response()
            elif isinstance(action, Close):
                self._closing = True
                self._want_read(False)
                if not self._to_client:
                    self.close(self._reason)
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the client only while its bytes have somewhere to go."""
        if self._lingering:
            return
        self._want_read(
            not self._closing
            and not self._client_ended
            and self._tunnel is None
            and not self._to_client
            and (self._asked is False or self._response is not None)
            and len(self._to_upstream) < _UPSTREAM_BACKLOG
        )

    def _flush_client(self) -> None:
        try:
            while self._to_client:
                del self._to_client[: self.client.send(self._to_client)]
        except (BlockingIOError, InterruptedError):
            self._want_write_client(True)
            return
        except OSError as exc:
            self.close("error", exc.strerror)
            return
        self._want_write_client(False)
        if self._closing:
            self.close(self._reason)
        elif not self._closed:
            self._update_reading()

    def _flush_upstream(self) -> None:
        assert self.upstream is not None
        try:
            while self._to_upstream:
                del self._to_upstream[: self.upstream.send(self._to_upstream)]
        except (BlockingIOError, InterruptedError):
            self._want_write_upstream(True)
            return
        except OSError as exc:
            self.close("error", exc.strerror)
            return
        self._want_write_upstream(False)
        if not self._closed:
            self._update_reading()

    # -- upstream ----------------------------------------------------------------------------

    def _open_upstream(self, host: str, port: int) -> None:
        self._asked = True
        self._asked_host = host
        self._want_read(False)
        self.server._resolve(self, host, port)

    def _open_unix_upstream(self, address: UnixAddress) -> None:
        self._asked = True
        self._asked_host = None
        self._want_read(False)
        self._unix_deadline = self.loop.time() + (self.server.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
        self._connect_unix(address)

    def _connect_unix(self, address: UnixAddress) -> None:
        self._unix_retry = None
        if self._closed:
            return
        if not self._attempt_connect(socket.AF_UNIX, address.sockaddr()):
            if self._last_failure == "busy" and self.loop.time() < self._unix_deadline:
                # A Unix listener whose backlog is full refuses a non-blocking connect
                # with EAGAIN instead of letting it wait, as TCP's would: try again soon.
                self._unix_retry = self.loop.call_later(_UNIX_RETRY, self._connect_unix, address)
                return
            self.upstream_failed("timeout" if self._last_failure == "busy" else self._last_failure)

    def resolution_done(self, outcome: list[Resolved] | Exception) -> None:
        if self._closed:
            return
        if isinstance(outcome, NetworkError):
            self.upstream_failed("unresolved")
        elif isinstance(outcome, Exception):  # a resolver's defect: this client is told, the loop reports it
            self.loop.on_error(outcome)
            self.upstream_failed("failed")
        else:
            self.resolved(outcome)

    def resolved(self, candidates: list[Resolved]) -> None:
        self._candidates = list(candidates)
        self._try_next()

    def _try_next(self) -> None:
        while self._candidates:
            candidate = self._candidates.pop(0)
            if self._attempt_connect(candidate.family, candidate.sockaddr):
                return
        self.upstream_failed(self._last_failure)

    def _attempt_connect(self, family: int, sockaddr: Sockaddr | str | bytes) -> bool:
        """Start a non-blocking connect; False (and ``_last_failure`` set) if it failed at once."""
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # out of descriptors
            self._last_failure = "failed"
            return False
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code in (0, errno.EINPROGRESS):
            self._attempt = sock
            self.loop.add_writer(sock.fileno(), self._attempt_done)
            if self.server.connect_timeout is not None:
                self._attempt_timer = self.loop.call_later(self.server.connect_timeout, self._attempt_timed_out)
            return True
        sock.close()
        self._last_failure = (
            "busy" if family == socket.AF_UNIX and code == errno.EAGAIN else _FAILURES.get(code, "failed")
        )
        return False

    def _attempt_done(self) -> None:
        sock = self._end_attempt()
        if not _connected(sock):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            sock.close()
            self._last_failure = _FAILURES.get(code, "failed")
            self._try_next()
            return
        try:
            host, port = ("", 0) if sock.family == socket.AF_UNIX else sock.getsockname()[:2]
        except OSError:
            host, port = "", 0
        if self.server.send_proxy_header is not None and not self._send_proxy_header(sock):
            sock.close()
            self.upstream_failed("failed")
            return
        if self.server.upstream_tls is not None:
            name = self.server.upstream_server_hostname or self._asked_host
            try:
                sock, bridge = self.server._secure(
                    sock, self.server.upstream_tls, server_side=False, server_hostname=name, on_failed=self.tls_failed
                )
            except OSError:  # no descriptors for the socket pair
                sock.close()
                self.upstream_failed("failed")
                return
            self.secured(bridge)
        self.upstream = sock
        self._moved()
        self._carry_out(self.negotiator.upstream_connected, host, port)
        if self.upstream is not None and self._tunnel is None and not self._closed:
            self._flush_upstream()

    def _attempt_timed_out(self) -> None:
        self._attempt_timer = None
        self._end_attempt().close()
        self._last_failure = "timeout"
        self._try_next()

    def _end_attempt(self) -> socket.socket:
        sock = self._attempt
        assert sock is not None
        self._attempt = None
        self.loop.remove_writer(sock.fileno())
        if self._attempt_timer is not None:
            self._attempt_timer.cancel()
            self._attempt_timer = None
        return sock

    def upstream_failed(self, reason: str) -> None:
        if not self._closed:
            self._reason = reason
            self._carry_out(self.negotiator.upstream_failed, reason)

    # -- after the negotiation ---------------------------------------------------------------

    def _send_proxy_header(self, sock: socket.socket) -> bool:
        """Write the PROXY header on upstream's new socket; False if it did not all go.
        A fresh connection's send buffer takes it whole (at most a few hundred bytes)."""
        from enchufe.proto.proxy_protocol import ProxyHeader, encode_header

        version = self.server.send_proxy_header
        assert version is not None
        try:
            header = encode_header(ProxyHeader(version, "proxy", "stream", self.peer, self.local))
        except ValueError:  # a Unix path too long for v2's 108 bytes: the header that names nobody
            header = encode_header(ProxyHeader(version, "proxy", "unspec", None, None))
        try:
            return sock.send(header) == len(header)
        except OSError:
            return False

    def _start_tunnel(self) -> None:
        assert self.upstream is not None
        self._want_read(False)
        self._want_write_client(False)
        self._want_write_upstream(False)
        self._tunnel = Tunnel(
            self.loop,
            self.client,
            self.upstream,
            a_to_b=bytes(self._to_upstream),
            b_to_a=bytes(self._to_client),
            on_closed=self._tunnel_closed,
            on_moved=self._moved,
        )
        self._to_client.clear()
        self._to_upstream.clear()
        self._tunnel.start()

    def _tunnel_closed(self, error: NetworkError | None) -> None:
        self._ended_by(error)

    def _relay_response(self) -> None:
        assert self.upstream is not None
        self._want_write_client(False)
        self._response = Pump(
            self.loop,
            self.upstream,
            self.client,
            first=bytes(self._to_client),
            half_close=False,
            on_end=self._response_ended,
            on_moved=self._moved,
        )
        self._to_client.clear()
        self._response.start()

    def _response_ended(self, error: NetworkError | None) -> None:
        if error is not None or self._client_ended:
            self._ended_by(error)
            return
        # The client may still be sending (a body upstream never read, a request after
        # this one): a socket closed with bytes unread sends a reset, which can destroy
        # the end of the answer still in flight. Half-close, discard what comes for a
        # moment, then close (a lingering close, as HTTP servers do).
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self.close("done")
            return
        self._lingering = True
        self._want_read(True)
        self._linger_timer = self.loop.call_later(_LINGER, self.close, "done")

    def _ended_by(self, error: NetworkError | None) -> None:
        if error is None:
            self.close("done")
        else:
            self.close("error", str(error))

    # -- time ---------------------------------------------------------------------------------

    def _moved(self) -> None:
        self._last_moved = self.loop.time()

    def _kernel_unsent(self) -> int:
        """Bytes written to the sockets that their peers have not taken yet."""
        unsent = 0
        for sock in (self.client, self.upstream):
            if sock is not None and sock.fileno() >= 0:
                with contextlib.suppress(OSError):
                    unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return unsent

    def _arm_timer(self) -> None:
        deadlines = []
        if self.server.idle_timeout is not None:
            deadlines.append(self._last_moved + self.server.idle_timeout)
        if self.server.request_timeout is not None and not self._asked:
            deadlines.append(self._accepted_at + self.server.request_timeout)
        if deadlines:
            self._timer = self.loop.call_at(min(deadlines), self._check_time)

    def _check_time(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self.loop.time()
        idle = self.server.idle_timeout is not None and now - self._last_moved >= self.server.idle_timeout
        if idle and (unsent := self._kernel_unsent()) != self._unsent:
            # The kernel is still sending what the tunnel handed it (a slow reader behind
            # megabytes of socket buffer): bytes move, the client is not idle.
            self._unsent = unsent
            self._moved()
            idle = False
        slow = self.server.request_timeout is not None and not self._asked
        slow = slow and now - self._accepted_at >= (self.server.request_timeout or 0.0)
        if idle or slow:
            self.close("idle" if idle else "request-timeout")
            if self.server.on_idle is not None:
                self.server.on_idle(self.peer)
            return
        self._arm_timer()

    # -- registrations ----------------------------------------------------------------------

    def _want_read(self, wanted: bool) -> None:
        if wanted and not self._reading and not self._closed:
            self._reading = True
            self.loop.add_reader(self._client_fd, self._on_readable)
        elif not wanted and self._reading:
            self._reading = False
            self.loop.remove_reader(self._client_fd)

    def _want_write_client(self, wanted: bool) -> None:
        if wanted and not self._writing_client and not self._closed:
            self._writing_client = True
            self.loop.add_writer(self._client_fd, self._flush_client)
        elif not wanted and self._writing_client:
            self._writing_client = False
            self.loop.remove_writer(self._client_fd)

    def _want_write_upstream(self, wanted: bool) -> None:
        assert self.upstream is not None
        if wanted and not self._writing_upstream and not self._closed:
            self._writing_upstream = True
            self.loop.add_writer(self.upstream.fileno(), self._flush_upstream)
        elif not wanted and self._writing_upstream:
            self._writing_upstream = False
            self.loop.remove_writer(self.upstream.fileno())

    def close(self, reason: str = "closed", error: str | None = None) -> None:
        """Close both sides now; ``on_close`` is told ``reason`` (see :class:`ClientEnd`)."""
        if self._closed:
            return
        sent, received = self._delivered()
        self._want_read(False)
        self._want_write_client(False)
        if self.upstream is not None:
            self._want_write_upstream(False)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        if self._unix_retry is not None:
            self._unix_retry.cancel()
        if self._attempt is not None:
            self._end_attempt().close()
        if self._tunnel is not None:
            self._tunnel.close()  # closes both sockets
        else:
            if self._response is not None:
                self._response.close()
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()
        for bridge in self._bridges:
            # A failure is passed on as one; any other end flushes the replies first.
            self.server._end_bridge(bridge, clean=reason not in ("error", "tls"))
        end = ClientEnd(self.peer, sent, received, self.loop.time() - self._accepted_at, reason, error)
        self.server._forget(self, end)

    def _delivered(self) -> tuple[int, int]:
        """Bytes delivered so far: the client's upstream, and upstream's to the client."""
        if self._tunnel is not None:
            return self._tunnel.delivered
        return 0, (0 if self._response is None else self._response.delivered)
