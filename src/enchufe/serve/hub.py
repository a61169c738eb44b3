"""The hub: many clients on one event loop, and what one says reaching the others.

``-k``, ``--broker`` and ``--chat`` are all a hub: a registry of connected clients, a
way to send to all of them (or all but one), and a callback for what each one says.
What the modes differ in is who gets what, and that is the owner's business; the hub
only guarantees the two properties that ncat lacks:

- **A slow client never delays the others.** Every client has its own output buffer
  (its transport's). A broadcast is written into each buffer at once, and a client
  that falls more than ``max_backlog`` bytes behind is disconnected (``on_drop``
  tells the owner, which says so with ``-v``). ncat sends to each client in turn,
  blocking, so one client that stops reading stops the room.
- **An idle client is closed alone** (``idle_timeout``): one with no bytes moved to
  or from it for that long is cut off (``on_idle``), the others carry on (ncat ends
  the whole server, nmap/nmap#2638). Traffic only records the time; each client has
  one timer, re-armed lazily when it fires early, so no byte costs a timer callback.
- **Memory stays bounded** whatever clients do: at most ``max_backlog`` bytes (plus
  one message) per client, and the source of broadcasts is told when to wait:
  :meth:`Hub.has_room` is False while *every* client is above the transports'
  high-water mark — nobody can take more, so reading more would only buffer it.
  One fast client is enough to keep the source going; the slow ones fall behind
  until they catch up or are dropped.

A client is a TCP or Unix stream connection (:meth:`Hub.add`, a
:class:`~enchufe.net.transport.SocketTransport`) or anything else that speaks the
same :class:`~enchufe.net.transport.ClientTransport` vocabulary (:meth:`Hub.attach`):
a UDP peer's :class:`~enchufe.net.datagram.DatagramSession`.

With a server ``tls`` context, each stream connection is a
:class:`~enchufe.net.tls_transport.TlsTransport` over its socket transport, and its
handshake runs on the loop like any other traffic: a client that stalls or sends
garbage holds up nobody, fails alone (``on_tls_failed``), and one that says
nothing is cut off after ``handshake_timeout``. A client in its handshake counts
(:func:`len`, so it holds a place under a limit) but is not *ready*: it receives no
broadcast, and ``on_ready`` tells its owner when it is.

Everything runs on the loop's thread.
"""

from __future__ import annotations

from enchufe.net.stream import DEFAULT_RECV_SIZE
from enchufe.net.transport import DEFAULT_HIGH_WATER, SocketTransport, StreamProtocol
from enchufe.serve.policy import DEFAULT_HANDSHAKE_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Iterator

    from enchufe.address import Address
    from enchufe.errors import NetworkError
    from enchufe.net.loop import EventLoop, TimerHandle
    from enchufe.net.transport import ClientTransport

__all__ = ["DEFAULT_MAX_BACKLOG", "Client", "Hub"]

#: How far behind (buffered bytes) a client may fall before it is disconnected.
DEFAULT_MAX_BACKLOG = 4 * 1024 * 1024


class Client(StreamProtocol):
    """One connected client of a :class:`Hub`.

    Attributes:
        id: a number unique within the hub, for the owner's bookkeeping.
        number: the number ncat's chat names the client by: its socket's
            descriptor (a UDP peer has no socket of its own; it gets one unused by
            any socket).
        peer: the client's address, when known.
        transport: its transport on the loop, once it is ready (``None`` during its
            TLS handshake).
        last_activity: the loop's time when a byte last moved to or from it.
    """

    def __init__(self, hub: Hub, client_id: int, peer: Address | None, number: int) -> None:
        self.hub = hub
        self.id = client_id
        self.number = number
        self.peer = peer
        self.transport: ClientTransport | None = None
        #: The transport the client came with, ready or not (its TLS during the
        #: handshake): what closing it closes.
        self._connection: ClientTransport | None = None
        self.last_activity = hub.loop.time()
        self._idle_timer: TimerHandle | None = None

    def send(self, data: bytes) -> bool:
        """Queue ``data`` for this client; False if it had to be dropped for lagging, or
        if it can take nothing more (closing, or half-closed at the end of the input)."""
        transport = self.transport
        if transport is None or not transport.can_write():
            return False
        if transport.write_buffer_size + len(data) > self.hub.max_backlog:
            self.hub.drop(self, "too far behind")
            return False
        transport.write(data)
        if self.hub.idle_timeout is not None:
            self.last_activity = self.hub.loop.time()
        return True

    # -- what the transport reports ------------------------------------------------

    def connection_made(self, transport: ClientTransport) -> None:
        self.transport = transport
        if self._connection is None:
            self._connection = transport
        self.hub._ready(self)

    def data_received(self, data: bytes) -> None:
        if self.hub.idle_timeout is not None:
            self.last_activity = self.hub.loop.time()
        self.hub.on_data(self, data)

    def eof_received(self) -> None:
        self.hub.on_eof(self)

    def pause_writing(self) -> None:
        self.hub._room_changed()

    def resume_writing(self) -> None:
        self.hub._room_changed()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.hub._forget(self, exc)

    def _handshake_failed(self, error: NetworkError) -> None:
        if self.hub.on_tls_failed is not None:
            self.hub.on_tls_failed(self, error)

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.peer}>"


class Hub:
    """A set of clients on ``loop``; see the module docstring.

    Args:
        loop: the event loop every client runs on.
        on_data: ``on_data(client, data)`` for each chunk a client sends.
        on_ready: ``on_ready(client)`` once a client can be sent to: at once for a
            plain connection (from within :meth:`add` or :meth:`attach`), after its
            handshake for a TLS one.
        on_eof: ``on_eof(client)`` when a client half-closes (default: close it once
            its output is flushed, as ncat's hub does).
        on_leave: ``on_leave(client, error)`` once a client is gone, ``error`` being
            ``None`` for an orderly close.
        on_drop: ``on_drop(client, reason)`` just before a lagging client is cut off.
        on_room: called (with no argument) when :meth:`has_room` may have changed.
        max_backlog: the most bytes a client may have waiting before it is dropped.
        high_water: each transport's high-water mark (see :mod:`enchufe.net.transport`).
        read_size: the most bytes one read from a client takes (ncat's chat framing
            depends on it: one prefix per read).
        idle_timeout: seconds with no byte moved to or from a client after which it
            is cut off; ``None``: never. For the clients of :meth:`add`; an attached
            transport keeps its own time (a UDP peer's session expires by itself).
        on_idle: ``on_idle(client)`` just before an idle client is cut off.
        tls: a server context: every client of :meth:`add` speaks TLS.
        handshake_timeout: seconds a TLS client has for its handshake; ``None``: for
            ever.
        on_tls_failed: ``on_tls_failed(client, error)`` when a TLS client's
            handshake fails, it leaves during it, or its time is up; the client then
            leaves (``on_leave`` with the same error).
    """

    def __init__(
        self,
        loop: EventLoop,
        *,
        on_data: Callable[[Client, bytes], None],
        on_ready: Callable[[Client], None] | None = None,
        on_eof: Callable[[Client], None] | None = None,
        on_leave: Callable[[Client, NetworkError | None], None] | None = None,
        on_drop: Callable[[Client, str], None] | None = None,
        on_room: Callable[[], None] | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        high_water: int = DEFAULT_HIGH_WATER,
        read_size: int = DEFAULT_RECV_SIZE,
        idle_timeout: float | None = None,
        on_idle: Callable[[Client], None] | None = None,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        on_tls_failed: Callable[[Client, NetworkError], None] | None = None,
    ) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.on_idle = on_idle
        self.read_size = read_size
        self.on_data = on_data
        self.on_ready = on_ready
        self.on_eof = on_eof or self._close_when_flushed
        self.on_leave = on_leave
        self.on_drop = on_drop
        self.on_room = on_room
        self.max_backlog = max_backlog
        self.high_water = high_water
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.on_tls_failed = on_tls_failed
        self._clients: dict[int, Client] = {}
        self._ready_clients = 0
        self._next_id = 1

    def add(self, sock: socket.socket, peer: Address | None = None) -> Client:
        """Take a connected socket into the hub (its TLS handshake starts, with
        ``tls``); return its client."""
        client = self._new_client(peer, sock.fileno())
        protocol: StreamProtocol = client
        if self.tls is not None:
            from enchufe.net.tls_transport import TlsTransport  # only TLS imports ssl

            protocol = client._connection = TlsTransport(
                self.loop,
                self.tls,
                client,
                on_handshake_failed=client._handshake_failed,
                server_side=True,
                handshake_timeout=self.handshake_timeout,
                read_size=self.read_size,
            )
        SocketTransport(self.loop, sock, protocol, high_water=self.high_water, read_size=self.read_size)
        self._arm_idle_timer(client)
        return client

    def attach(self, transport: ClientTransport, peer: Address | None, number: int) -> Client:
        """Take a client whose transport is already running; return its client.

        The caller reports that transport's traffic and its end to the client
        (``data_received``, ``connection_lost``), as a socket transport does itself.
        """
        client = self._new_client(peer, number)
        client.connection_made(transport)
        return client

    def _new_client(self, peer: Address | None, number: int) -> Client:
        client = Client(self, self._next_id, peer, number)
        self._next_id += 1
        self._clients[client.id] = client
        return client

    def __len__(self) -> int:
        """Every client, ready or still in its TLS handshake."""
        return len(self._clients)

    def ready(self) -> int:
        """How many clients are ready (see ``on_ready``)."""
        return self._ready_clients

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._clients.values()))

    def broadcast(self, data: bytes, *, exclude: Client | None = None) -> int:
        """Send ``data`` to every client but ``exclude``; return how many got it."""
        reached = 0
        for client in list(self._clients.values()):
            if client is not exclude and client.send(data):
                reached += 1
        return reached

    def has_room(self) -> bool:
        """True when some ready client can take more without going above its
        high-water mark (or when none is ready, so nothing would be buffered)."""
        # Called on every join, departure and flow-control change: it stops at the first
        # client with room (usually the first), or the join of the n-th client costs n.
        anyone_open = False
        for client in self._clients.values():
            transport = client.transport
            if transport is None or transport.is_closing():
                continue
            if transport.write_buffer_size <= self.high_water:
                return True
            anyone_open = True
        return not anyone_open

    def drop(self, client: Client, reason: str) -> None:
        """Cut ``client`` off at once (its buffer is discarded)."""
        if client.id in self._clients and client.transport is not None and not client.transport.is_closing():
            if self.on_drop is not None:
                self.on_drop(client, reason)
            client.transport.abort()

    def close(self) -> None:
        """Close every client, flushing what each has buffered."""
        for client in list(self._clients.values()):
            if client._connection is not None:
                client._connection.close()

    def abort(self) -> None:
        """Cut every client off at once."""
        for client in list(self._clients.values()):
            if client._connection is not None:
                client._connection.abort()

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _close_when_flushed(client: Client) -> None:
        if client.transport is not None:
            client.transport.close()

    def _arm_idle_timer(self, client: Client) -> None:
        if self.idle_timeout is not None:
            when = client.last_activity + self.idle_timeout
            client._idle_timer = self.loop.call_at(when, self._check_idle, client)

    def _check_idle(self, client: Client) -> None:
        assert self.idle_timeout is not None
        if client.id not in self._clients:
            return
        if self.loop.time() - client.last_activity < self.idle_timeout:
            self._arm_idle_timer(client)  # traffic since the timer was set: wait for the rest
            return
        connection = client._connection  # in its TLS handshake too: quiet all the same
        if connection is not None and not connection.is_closing():
            if self.on_idle is not None:
                self.on_idle(client)
            connection.abort()

    def _ready(self, client: Client) -> None:
        self._ready_clients += 1
        if self.on_ready is not None:
            self.on_ready(client)
        self._room_changed()

    def _forget(self, client: Client, exc: NetworkError | None) -> None:
        if self._clients.pop(client.id, None) is None:
            return
        if client._idle_timer is not None:
            client._idle_timer.cancel()
        if client.transport is not None:
            self._ready_clients -= 1
        if self.on_leave is not None:
            self.on_leave(client, exc)
        self._room_changed()

    def _room_changed(self) -> None:
        if self.on_room is not None:
            self.on_room()
