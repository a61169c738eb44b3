"""Many datagram peers on one socket: sessions by peer address, expiring when idle.

UDP has no connections, yet ``-u -l -k`` wants one "client" per peer. ncat gets them
by connecting its listening socket to the first peer and binding a fresh one on the
same address, which relies on the kernel's ``SO_REUSEADDR`` demultiplexing (it fails
on Windows, nmap/nmap#3320) and never ends a session. Here one unconnected socket
receives everything, and :class:`DatagramSessions` keeps a session per peer address:

- the first datagram from an address opens its session (``on_open``), every datagram
  goes to ``on_datagram(session, data)`` — empty datagrams too: they are traffic;
- :meth:`DatagramSession.write` answers that peer with ``sendto``; a Unix peer
  whose socket is gone ends its session;
- a session with no traffic either way for ``idle_timeout`` seconds expires
  (``on_close(session, "idle")``); one timer per session, re-armed lazily: traffic
  only records the time, and a timer that fires early re-arms itself for the rest;
- ``admit(peer)`` is asked before a new peer gets a session (a limit on sessions,
  which bounds memory, or access control): a reason to refuse drops the datagram
  (``on_refused(peer, reason)``), as a stream listener refuses a connection over ``-m``.

A session speaks the transport vocabulary of :mod:`enchufe.net.transport`
(``write``, ``close``, ``pause_reading``, ...), so that the owner of many clients,
:class:`~enchufe.serve.hub.Hub`, treats a UDP peer as it treats a TCP client:
datagrams have no end of stream (``write_eof`` does nothing) and nothing is
buffered (a datagram the kernel cannot take now is lost, as on the wire). Pausing
any session stops reading the socket: datagrams of one peer cannot be held back
without holding back all of them, and the kernel's buffer holds them meanwhile.

The same works for Unix datagram sockets, whose peers are the paths they bound.
Everything runs on the loop's thread.
"""

from __future__ import annotations

import errno
import socket

from enchufe.net.stream import address_from_sockaddr, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from enchufe.address import Address
    from enchufe.errors import NetworkError
    from enchufe.net.loop import EventLoop, TimerHandle

    #: What ``recvfrom`` returns as the sender: a tuple, or a Unix path.
    SockAddr = tuple[object, ...] | str | bytes

__all__ = ["DatagramSession", "DatagramSessions"]

#: The largest datagram read: UDP's own limit over IPv4 and IPv6.
_MAX_DATAGRAM = 65535
#: sendto() errors of a peer that will never take a datagram again: a Unix peer's
#: socket file removed, or no socket bound to it any more.
_PEER_GONE = frozenset({errno.ENOENT, errno.ECONNREFUSED})


class DatagramSession:
    """The datagrams exchanged with one peer address.

    Attributes:
        peer: the peer's address (``None`` for an unbound Unix datagram peer, which
            cannot be answered).
        sockaddr: the raw address, as ``recvfrom`` gave it.
    """

    def __init__(self, owner: DatagramSessions, sockaddr: SockAddr, peer: Address | None) -> None:
        self._owner = owner
        self.sockaddr = sockaddr
        self.peer = peer
        self.last_activity = owner.loop.time()
        self.closed = False
        self._timer: TimerHandle | None = None

    #: Datagrams are sent at once or lost: nothing ever waits in a session.
    write_buffer_size = 0

    def write(self, data: bytes) -> None:
        """Send ``data`` to the peer as one datagram (an ended session, or a peer with
        no address to answer to, sends nothing). Like a stream transport's, it never
        raises: a datagram the kernel refuses (a full buffer, too large, no route) is
        lost, as on the wire, and a peer that is gone for good (a Unix peer whose
        socket closed) ends the session (``on_close(session, "gone")``).
        """
        if self.closed or self.peer is None:
            return
        try:
            self._owner.sock.sendto(data, self.sockaddr)
        except OSError as exc:
            if exc.errno in _PEER_GONE:
                self._owner._end(self, "gone")
            return
        self.last_activity = self._owner.loop.time()

    def write_eof(self) -> None:
        """Nothing: a datagram peer has no end of stream to be told."""

    def pause_reading(self) -> None:
        """Stop reading the socket (every peer's datagrams) until resumed."""
        self._owner._pause(self)

    def resume_reading(self) -> None:
        """Read again, once no session holds reading paused."""
        self._owner._resume(self)

    def is_closing(self) -> bool:
        return self.closed

    def can_write(self) -> bool:
        return not self.closed

    def close(self) -> None:
        """End the session now (``on_close`` is told ``"closed"``)."""
        self._owner._end(self, "closed")

    def close_and_pass_on(self, data: bytes) -> None:
        """End the session, and take ``data`` (the peer's, which this session can no
        longer use) as the first datagram of the peer's next session, as if it had
        just arrived: the owner of an ended conversation loses nothing the peer sent."""
        self.close()
        self._owner._dispatch(self.sockaddr, data)

    abort = close  # nothing is buffered: closing now and closing after a flush are one

    def __repr__(self) -> str:
        return f"<DatagramSession {self.peer}{' closed' if self.closed else ''}>"


class DatagramSessions:
    """Sessions by peer on one bound datagram socket; see the module docstring.

    Args:
        loop: the event loop to run on.
        sock: a bound, unconnected datagram socket; made non-blocking, and closed by
            :meth:`close`.
        on_datagram: ``on_datagram(session, data)`` for every datagram.
        on_open: ``on_open(session)`` when a new peer's first datagram arrives, before
            ``on_datagram`` sees it.
        on_close: ``on_close(session, reason)``: ``"idle"``, ``"closed"``, ``"gone"``
            (the peer can no longer be reached) or ``"shutdown"``.
        admit: ``admit(peer)`` for a new peer: ``None`` to open its session, or the
            reason to refuse it (default: every peer is admitted).
        on_refused: ``on_refused(peer, reason)`` for a new peer ``admit`` refused; its
            datagram is dropped. Told once for a run of refused datagrams from one
            peer for one reason, so that a peer that floods costs one report.
        on_error: ``on_error(error)`` when receiving fails (an ICMP error reported
            on the socket); the socket goes on.
        idle_timeout: seconds without traffic after which a session expires; ``None``
            never.
    """

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        *,
        on_datagram: Callable[[DatagramSession, bytes], None],
        on_open: Callable[[DatagramSession], None] | None = None,
        on_close: Callable[[DatagramSession, str], None] | None = None,
        admit: Callable[[Address | None], str | None] | None = None,
        on_refused: Callable[[Address | None, str], None] | None = None,
        on_error: Callable[[NetworkError], None] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_open = on_open
        self.on_close = on_close
        self.admit = admit
        self.on_refused = on_refused
        self.on_error = on_error
        self.idle_timeout = idle_timeout
        self._sessions: dict[SockAddr | None, DatagramSession] = {}
        self._last_refusal: tuple[SockAddr | None, str] | None = None
        self._pausing: set[DatagramSession] = set()
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[DatagramSession]:
        return iter(list(self._sessions.values()))

    def broadcast(self, data: bytes) -> None:
        """Send ``data`` to every session's peer."""
        for session in list(self._sessions.values()):
            session.write(data)

    def close(self) -> None:
        """End every session (``"shutdown"``) and close the socket. Idempotent."""
        if self.sock.fileno() < 0:
            return
        for session in list(self._sessions.values()):
            self._end(session, "shutdown")
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _pause(self, session: DatagramSession) -> None:
        if not self._pausing and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self._pausing.add(session)

    def _resume(self, session: DatagramSession) -> None:
        if session not in self._pausing:
            return
        self._pausing.discard(session)
        if not self._pausing and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)

    # -- internals -------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data, sockaddr = self.sock.recvfrom(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if self.on_error is not None:
                self.on_error(translate_os_error(exc, "recv"))
            return
        self._dispatch(sockaddr, data)

    def _dispatch(self, sockaddr: SockAddr, data: bytes) -> None:
        """Hand one datagram to its peer's session, opening (and admitting) one first."""
        key = sockaddr if sockaddr else None
        session = self._sessions.get(key)
        if session is None:
            peer = address_from_sockaddr(self.sock.family, sockaddr)
            reason = None if self.admit is None else self.admit(peer)
            if reason is not None:
                if self.on_refused is not None and self._last_refusal != (key, reason):
                    self.on_refused(peer, reason)
                self._last_refusal = (key, reason)
                return
            self._last_refusal = None
            session = DatagramSession(self, sockaddr, peer)
            self._sessions[key] = session
            self._arm(session)
            if self.on_open is not None:
                self.on_open(session)
        session.last_activity = self.loop.time()
        self.on_datagram(session, data)

    def _arm(self, session: DatagramSession) -> None:
        if self.idle_timeout is not None:
            session._timer = self.loop.call_at(session.last_activity + self.idle_timeout, self._check_idle, session)

    def _check_idle(self, session: DatagramSession) -> None:
        assert self.idle_timeout is not None
        if session.closed:
            return
        if self.loop.time() - session.last_activity >= self.idle_timeout:
            self._end(session, "idle")
        else:
            self._arm(session)  # traffic since the timer was set: wait for the rest

    def _end(self, session: DatagramSession, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        if session._timer is not None:
            session._timer.cancel()
        self._sessions.pop(session.sockaddr if session.sockaddr else None, None)
        self._resume(session)  # an ended session holds nothing back
        if self.on_close is not None:
            self.on_close(session, reason)
