"""The seed's threaded server, for datagrams: a plain blocking function per UDP peer.

A datagram socket has no connections, yet a UDP service often wants one: a
conversation with each peer, handled by blocking code (``-u -l -k -e``, one program
per peer, is ncat's). :class:`DatagramServer` gives each peer address a
:class:`~enchufe.net.connection.Connection` and a thread of its own:

- **One socket per listener, demultiplexed on an event loop**
  (:class:`~enchufe.net.datagram.DatagramSessions`): the first datagram from an
  address opens its session, admission (``access``, then ``max_connections``) comes
  before any thread starts, and a session with no traffic for ``idle_timeout``
  seconds expires. The same on every platform (ncat connects a socket per peer,
  which fails on Windows, nmap/nmap#3320).
- **A real socket under the handler.** Each session is bridged to the handler's
  connection by a Unix ``SOCK_SEQPACKET`` pair, which keeps each datagram whole and
  has an end: ``conn.recv()`` returns one datagram of the peer's, ``conn.send_all()``
  sends datagrams of at most 8 KiB (ncat's size; a longer send is split), and when
  the session expires or the server closes, the handler reads end of file. So every
  blocking reader — the relay of ``-e``, a ``recv_line`` — works unchanged, with its
  own deadlines. An empty datagram is traffic (it keeps the session), not data.
- **Ending** as :class:`~enchufe.serve.engine.Server` ends: a handler returns, its
  connection is closed and so is the session; :meth:`DatagramServer.close` stops
  taking new peers, gives handlers ``grace`` seconds, then ends every session and
  joins every thread.

The bridge costs two descriptors per peer, and a datagram the handler is too slow
to take (its side of the pair full) is dropped, as the network would drop it.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Sequence

from enchufe.address import Address
from enchufe.net.connection import Connection
from enchufe.net.datagram import DatagramSession, DatagramSessions
from enchufe.net.listen import Listener, close_all
from enchufe.net.loop import EventLoop
from enchufe.net.stream import DATAGRAM_PAYLOAD_SIZE, SocketStream
from enchufe.serve.policy import (
    DEFAULT_CLOSE_TIMEOUT,
    Access,
    ErrorHook,
    HandlerThreads,
    RefusalHook,
    ServerPolicies,
    join_until,
    print_error,
    shut_down,
    warn_left_running,
)

__all__ = ["DatagramServer"]

#: The most one read of the bridge takes: a whole datagram, or a handler's send.
_BRIDGE_READ = 1 << 20


class _Peer:
    """One session: the loop's end of its bridge and the handler's connection."""

    __slots__ = ("bridge", "conn", "session")

    def __init__(self, session: DatagramSession, bridge: socket.socket, conn: Connection) -> None:
        self.session = session
        self.bridge = bridge
        self.conn = conn


class DatagramServer(ServerPolicies):
    """Serve each peer of datagram ``listeners`` with ``handler`` in a thread of its own.

    Args:
        listeners: datagram listeners (UDP or Unix datagram) from
            :func:`enchufe.net.listen.open_listeners`; the server owns and closes them.
        handler: called as ``handler(conn)`` in a new thread for each peer; the
            connection is closed, and the peer's session ended, when it returns.
        on_error: called with the connection and the exception when a handler raises
            an ``Exception``, or when no thread could be started for a peer.
        name: prefix of the loop thread's name.
        max_connections: peers served at once; a datagram from one more is dropped,
            with ``on_refused`` told ``"connection limit reached (N)"``.
        access: ``access(peer)`` False drops the peer's datagrams the same way
            (``"not allowed"``).
        on_refused: ``on_refused(peer, reason)`` for each refused datagram (the
            reason is the system's, ``"Too many open files"``, when no descriptor is
            left for a new peer).
        idle_timeout: seconds without a datagram either way after which a peer's
            session ends (its handler reads end of file); ``None``: never.
        daemon_threads: handler threads do not keep the process alive (socketserver's
            option): a handler still running when the program exits is abandoned.

    Use it as a context manager, or call :meth:`start` and later :meth:`close`.
    """

    serves_datagrams = True

    def __init__(
        self,
        listeners: Sequence[Listener],
        handler: Callable[[Connection], None],
        *,
        on_error: ErrorHook = print_error,
        name: str = "enchufe",
        max_connections: int | None = None,
        access: Access | None = None,
        on_refused: RefusalHook | None = None,
        idle_timeout: float | None = None,
        daemon_threads: bool = False,
    ) -> None:
        super().__init__(
            listeners,
            on_error=on_error,
            name=name,
            max_connections=max_connections,
            access=access,
            on_refused=on_refused,
        )
        self.handler = handler
        self.idle_timeout = idle_timeout
        self._loop = EventLoop()
        self._sessions: list[DatagramSessions] = []
        #: Every peer with a session, by session; only the loop's thread changes it.
        self._peers: dict[DatagramSession, _Peer] = {}
        self._handlers = HandlerThreads(handler, on_error, daemon=daemon_threads)
        self._taking_peers = True
        self._thread: threading.Thread | None = None
        self._closed = False

    def threads(self) -> list[threading.Thread]:
        """The handler threads running now."""
        return self._handlers.threads()

    def connections(self) -> list[Connection]:
        """The peers' connections being handled now."""
        return self._handlers.connections()

    def start(self) -> DatagramServer:
        """Receive in a background thread (the event loop's) and return at once.

        Raises:
            RuntimeError: the server already runs or was closed.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("a DatagramServer runs once")
        for listener in self.listeners:
            self._sessions.append(
                DatagramSessions(
                    self._loop,
                    listener.sock,
                    on_open=functools.partial(self._open, listener.address),
                    on_datagram=self._received,
                    on_close=self._ended,
                    admit=self._admit,
                    on_refused=self.on_refused,
                    idle_timeout=self.idle_timeout,
                )
            )
        where = ",".join(str(address) for address in self.addresses)
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{self.name}-peers-{where}")
        self._thread.start()
        return self

    def close(self, *, grace: float = 0.0, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stop taking new peers, let handlers finish for ``grace`` seconds, then end
        every session (handlers read end of file) and join every thread, waiting
        ``timeout`` more seconds at most. Idempotent; from any thread but a handler's
        own it returns once all is closed (a ``RuntimeWarning`` names a thread that
        outlives ``timeout``)."""
        grace_end = time.monotonic() + grace
        deadline = None if timeout is None else grace_end + timeout
        first = not self._closed
        self._closed = True
        loop_thread = self._thread
        if first and loop_thread is not None:
            # Wait for the loop to take no more peers before looking at the handlers: a
            # session opened after that look would start a handler nobody ends or joins.
            stopped = threading.Event()
            if self._loop.in_loop_thread():
                self._stop_taking_peers(stopped)
            else:
                self._loop.call_soon_threadsafe(self._stop_taking_peers, stopped)
                stopped.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for thread in self.threads():
            join_until(thread, grace_end)
        for conn in self.connections():
            shut_down(conn)
        threads = self._handlers.every_thread()
        for thread in threads:
            join_until(thread, deadline)
        if first:
            if loop_thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                join_until(loop_thread, deadline)
            if loop_thread is None or not loop_thread.is_alive():
                self._release()
        warn_left_running(type(self).__name__, [loop_thread, *threads], timeout)

    # -- the loop's side ---------------------------------------------------------------

    def _admit(self, peer: Address | None) -> str | None:
        if not self._taking_peers:
            return "shutting down"
        return self._refusal(peer, len(self._peers))

    def _open(self, local: Address, session: DatagramSession) -> None:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:  # out of descriptors: refused as over the limit, tried again at its next datagram
            session.close()
            if self.on_refused is not None:
                self.on_refused(session.peer, exc.strerror or str(exc))
            return
        ours.setblocking(False)
        conn = Connection(SocketStream(theirs), local=local, peer=session.peer)
        peer = _Peer(session, ours, conn)
        self._peers[session] = peer
        self._loop.add_reader(ours.fileno(), self._reply, peer)
        if not self._handlers.start(conn):
            session.close()

    def _received(self, session: DatagramSession, data: bytes) -> None:
        peer = self._peers.get(session)
        if peer is None or not data:
            return  # an empty datagram keeps the session; it carries nothing to hand on
        try:
            peer.bridge.send(data)
        except BlockingIOError:
            pass  # the handler is not reading: dropped, as the network drops datagrams
        except OSError:
            # The handler has returned, and the loop has not seen its end yet: this
            # datagram belongs to the peer's next session, with a handler of its own.
            session.close_and_pass_on(data)

    def _reply(self, peer: _Peer) -> None:
        try:
            data = peer.bridge.recv(_BRIDGE_READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            peer.session.close()  # the handler closed its connection: the session ends
            return
        for start in range(0, len(data), DATAGRAM_PAYLOAD_SIZE):
            peer.session.write(data[start : start + DATAGRAM_PAYLOAD_SIZE])  # refused: lost

    def _ended(self, session: DatagramSession, reason: str) -> None:
        peer = self._peers.pop(session, None)
        if peer is not None:
            self._loop.remove_reader(peer.bridge.fileno())
            peer.bridge.close()  # the handler reads end of file

    def _stop_taking_peers(self, stopped: threading.Event) -> None:
        self._taking_peers = False
        stopped.set()

    def _release(self) -> None:
        for sessions in self._sessions:
            sessions.close()
        for peer in list(self._peers.values()):
            peer.bridge.close()
        self._peers.clear()
        self._loop.close()
        close_all(self.listeners)
