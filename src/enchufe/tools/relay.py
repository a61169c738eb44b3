"""A socat-style relay between two addresses: every client of ``listen`` gets its own
connection to ``target``, and bytes flow both ways until both ends are done.

The stream relay (TCP or Unix, either side) is a :class:`~enchufe.serve.proxy_server.ProxyServer`
whose negotiator (:class:`FixedTarget`) opens the target at accept and starts the tunnel
once it answers: so every client is served on the one event loop (no thread, no process
per client), bytes move by ``splice`` (they never enter Python), half-close goes through
both ways, and admission (``max_clients``, ``access``), ``idle_timeout`` and
``connect_timeout`` are the proxy server's.

The datagram relay (UDP to UDP, :class:`DatagramRelay`) keeps a session per client address
on the listening socket (:class:`~enchufe.net.datagram.DatagramSessions`): each session has
a socket of its own connected to the target, so the target's answers go back to the client
that asked; a session with no datagram either way for ``idle_timeout`` seconds ends.

Both tell each client's end as a :class:`~enchufe.serve.proxy_server.ClientEnd` (bytes
each way, duration, why). Everything runs on the caller's loop thread.
"""

from __future__ import annotations

import socket

from enchufe.address import UnixAddress, parse_address, parse_port
from enchufe.errors import AddressError
from enchufe.net.datagram import DatagramSessions
from enchufe.net.stream import translate_os_error
from enchufe.proto.proxy import Close, OpenUnixUpstream, OpenUpstream, StartTunnel
from enchufe.serve.proxy_server import ClientEnd, ProxyServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from enchufe.address import Address
    from enchufe.net.datagram import DatagramSession
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop
    from enchufe.net.resolve import Resolved
    from enchufe.proto.proxy import Action

__all__ = ["DatagramRelay", "Endpoint", "FixedTarget", "parse_endpoint", "stream_relay"]

#: The largest datagram relayed: UDP's own limit.
_MAX_DATAGRAM = 65535


class Endpoint:
    """One side of a relay: an address (or every local address on a port), TCP or UDP.

    Attributes:
        address: an :class:`~enchufe.address.InetAddress` or a
            :class:`~enchufe.address.UnixAddress`; ``None``: every local address on ``port``.
        port: the port when ``address`` is ``None``.
        udp: datagrams, not a stream.
    """

    __slots__ = ("address", "port", "udp")

    def __init__(self, address: Address | None, *, port: int = 0, udp: bool = False) -> None:
        self.address = address
        self.port = port
        self.udp = udp

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return (self.address, self.port, self.udp) == (other.address, other.port, other.udp)

    def __hash__(self) -> int:
        return hash((self.address, self.port, self.udp))

    def __str__(self) -> str:
        return ("udp:" if self.udp else "") + (f":{self.port}" if self.address is None else str(self.address))

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, port={self.port!r}, udp={self.udp!r})"


def parse_endpoint(text: str, *, udp: bool = False) -> Endpoint:
    """Parse one side in enchufe's syntax: ``8080`` or ``:8080`` (every local address),
    ``127.0.0.1:80``, ``[::1]:22``, ``unix:/run/app.sock``, ``/path.sock``; a ``udp:``
    prefix (or ``udp``) makes it UDP.

    Raises:
        AddressError: not an address, or a Unix socket asked to be UDP.
    """
    if text.startswith("udp:"):
        text, udp = text[4:], True
    if text.startswith(":") and text.count(":") == 1:
        return Endpoint(None, port=parse_port(text[1:]), udp=udp)
    if text.isascii() and text.isdigit():
        return Endpoint(None, port=parse_port(text), udp=udp)
    address = parse_address(text)
    if udp and isinstance(address, UnixAddress):
        raise AddressError(f"UDP needs a host and port, not the Unix socket {text!r}")
    return Endpoint(address, udp=udp)


class FixedTarget:
    """The relay's negotiator (:class:`~enchufe.proto.proxy.ProxyNegotiator`): open
    ``target`` as soon as the client is accepted, then tunnel; close the client if the
    target cannot be reached."""

    def __init__(self, target: Address) -> None:
        self.target = target

    def accepted(self) -> list[Action]:
        if isinstance(self.target, UnixAddress):
            return [OpenUnixUpstream(self.target)]
        return [OpenUpstream(self.target.host, self.target.port)]

    def receive_data(self, data: bytes) -> list[Action]:
        return []  # never asked: the server reads the client only in its tunnel

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        return [StartTunnel()]

    def upstream_failed(self, reason: str) -> list[Action]:
        return [Close()]


def stream_relay(loop: EventLoop, listeners: Sequence[Listener], target: Address, **options: object) -> ProxyServer:
    """A :class:`~enchufe.serve.proxy_server.ProxyServer` relaying every client of
    ``listeners`` to ``target`` (TCP or Unix); ``options`` are the server's (``on_close``,
    ``max_connections``, ``access``, ``idle_timeout``, ``connect_timeout``, ...).
    ``request_timeout`` is off: a relay's client has nothing to ask."""
    negotiator = FixedTarget(target)  # it keeps no state: one serves every client
    return ProxyServer(loop, listeners, lambda peer: negotiator, request_timeout=None, **options)  # type: ignore[arg-type]


class DatagramRelay:
    """Relay UDP datagrams from the clients of ``listeners`` to ``target``, and the
    target's answers back to each; see the module docstring.

    Args:
        loop: the event loop, run by the caller.
        listeners: bound datagram listeners (closed by :meth:`close`).
        target: where to send, resolved.
        max_clients: sessions at once; a new client's datagrams over it are dropped.
        access: ``access(peer)`` False drops that client's datagrams.
        idle_timeout: seconds without a datagram either way that end a session.
        on_open: ``on_open(peer)`` for each client's first datagram.
        on_close: ``on_close(end)`` when a session ends (``"idle"``, ``"refused"``: the
            target's port is closed, ``"shutdown"``).
        on_refused: ``on_refused(peer, reason)`` for a client refused at its first datagram.
    """

    def __init__(
        self,
        loop: EventLoop,
        listeners: Sequence[Listener],
        target: Resolved,
        *,
        max_clients: int | None = None,
        access: Callable[[Address | None], bool] | None = None,
        idle_timeout: float | None = None,
        on_open: Callable[[Address | None], None] | None = None,
        on_close: Callable[[ClientEnd], None] | None = None,
        on_refused: Callable[[Address | None, str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.listeners = list(listeners)
        self.target = target
        self.max_clients = max_clients
        self.access = access
        self.idle_timeout = idle_timeout
        self.on_open = on_open
        self.on_close = on_close
        self.on_refused = on_refused
        self._peers: dict[DatagramSession, _Peer] = {}
        self._groups: list[DatagramSessions] = []

    def __len__(self) -> int:
        """Sessions open now."""
        return len(self._peers)

    @property
    def addresses(self) -> list[Address]:
        return [listener.address for listener in self.listeners]

    def start(self) -> None:
        for listener in self.listeners:
            self._groups.append(
                DatagramSessions(
                    self.loop,
                    listener.sock,
                    on_datagram=self._from_client,
                    on_open=self._opened,
                    on_close=self._closed,
                    admit=self._admit,
                    on_refused=self.on_refused,
                    idle_timeout=self.idle_timeout,
                )
            )

    def close(self) -> None:
        """End every session (``"shutdown"``) and close the listeners."""
        for group in self._groups:
            group.close()
        self._groups.clear()
        for listener in self.listeners:
            listener.close()

    def _admit(self, peer: Address | None) -> str | None:
        if self.access is not None and not self.access(peer):
            return "not allowed"
        if self.max_clients is not None and len(self._peers) >= self.max_clients:
            return f"connection limit reached ({self.max_clients})"
        return None

    def _opened(self, session: DatagramSession) -> None:
        try:
            upstream = socket.socket(self.target.family, socket.SOCK_DGRAM)
        except OSError as exc:  # out of descriptors: this client is not served
            self._refuse(session, exc)
            return
        try:
            upstream.setblocking(False)
            upstream.connect(self.target.sockaddr)  # a datagram connect only records the address
        except OSError as exc:  # a broadcast target without SO_BROADCAST, no route
            upstream.close()
            self._refuse(session, exc)
            return
        self._peers[session] = _Peer(self, session, upstream)
        if self.on_open is not None:
            self.on_open(session.peer)

    def _refuse(self, session: DatagramSession, exc: OSError) -> None:
        if self.on_refused is not None:
            self.on_refused(session.peer, str(translate_os_error(exc, "connect")))
        self.loop.call_soon(session.close)  # not from inside the sessions' own callback

    def _from_client(self, session: DatagramSession, data: bytes) -> None:
        peer = self._peers.get(session)
        if peer is not None:  # None: a session refused at its start, ending
            peer.send(data)

    def _closed(self, session: DatagramSession, reason: str) -> None:
        peer = self._peers.pop(session, None)
        if peer is None:
            return  # refused at its start: it was never a client
        peer.close()
        if self.on_close is not None:
            ended = peer.ended or ("done" if reason == "closed" else reason)
            duration = self.loop.time() - peer.opened_at
            self.on_close(ClientEnd(session.peer, peer.sent, peer.received, duration, ended, peer.error))


class _Peer:
    """One client's session and its own socket to the target."""

    def __init__(self, relay: DatagramRelay, session: DatagramSession, upstream: socket.socket) -> None:
        self.relay = relay
        self.session = session
        self.upstream = upstream
        self.sent = 0
        self.received = 0
        self.opened_at = relay.loop.time()
        self.ended: str | None = None  # why it ended, if not the session's own reason
        self.error: str | None = None
        relay.loop.add_reader(upstream.fileno(), self._from_target)

    def send(self, data: bytes) -> None:
        try:
            self.upstream.send(data)
        except (BlockingIOError, InterruptedError):
            return  # a full buffer loses the datagram, as the wire would
        except OSError as exc:
            self._failed(exc)
            return
        self.sent += len(data)

    def _from_target(self) -> None:
        try:
            data = self.upstream.recv(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._failed(exc)
            return
        self.received += len(data)
        self.session.write(data)

    def _failed(self, exc: OSError) -> None:
        """The target's port is closed (an ICMP error came back): end the session."""
        error = translate_os_error(exc, "send")
        self.ended = "refused" if isinstance(exc, ConnectionRefusedError) else "error"
        self.error = None if self.ended == "refused" else str(error)
        self.relay.loop.call_soon(self.session.close)  # not from inside the session's own callbacks

    def close(self) -> None:
        if self.upstream.fileno() >= 0:
            self.relay.loop.remove_reader(self.upstream.fileno())
            self.upstream.close()
