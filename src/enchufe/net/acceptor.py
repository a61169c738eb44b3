"""Accepting on the event loop: in bursts, with admission first and nothing left unowned.

An :class:`Acceptor` watches stream listeners on an :class:`~enchufe.net.loop.EventLoop`.
Each time one is readable it accepts until the kernel's queue is empty or
:data:`MAX_BURST` clients are in (one wake-up, many clients: the burst of asyncio's
``_accept_connection``, which stops at its backlog too — a flood of connections, say
one refused by a limit, must not hold the loop from everyone else), and hands every
new socket to ``admit`` and then ``on_accept``:

- ``admit(peer)`` runs before anything else happens to the connection (limits,
  ``--allow``/``--deny``): a refused socket is closed at once, with ``on_refused``
  told why; the listener keeps listening. A refusal ends the burst, so that clients
  gone meanwhile free their places before the next one is judged.
- ``on_accept(sock, peer)`` owns the socket from then on. If it raises, the socket is
  closed and the error goes to the loop's ``on_error``.
- The peer address is the one ``accept`` returns: no ``getpeername`` per connection,
  and a peer that reset before being accepted costs nothing.
- Out of descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``), the
  listener is taken off the loop for ``backoff`` seconds (the connection waits in
  the kernel's queue), instead of spinning on a readable listener that cannot be
  accepted. A connection aborted before ``accept`` is skipped. Any other error is
  the loop's ``on_error``.
"""

from __future__ import annotations

import errno

from enchufe.net.stream import address_from_sockaddr, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence

    from enchufe.address import Address
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop

__all__ = ["ACCEPT_BACKOFF", "MAX_BURST", "OUT_OF_RESOURCES", "Acceptor"]

#: accept() errors that mean "no descriptors or memory now" (the threaded Server's too).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors of a connection that went away before it was accepted.
_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
#: The most connections one wake-up accepts before the loop serves the others; the rest
#: wait in the kernel's queue, and the listener, still readable, is served next turn.
MAX_BURST = 128
#: Seconds a listener rests after running out of descriptors.
ACCEPT_BACKOFF = 0.1


class Acceptor:
    """Accept on ``listeners`` from ``loop``; see the module docstring.

    Args:
        loop: the event loop.
        listeners: stream listeners; made non-blocking. The acceptor does not own them.
        on_accept: ``on_accept(sock, peer)`` takes each admitted connection.
        admit: ``admit(peer)`` returns ``None`` to admit, or the reason to refuse.
        on_refused: ``on_refused(peer, reason)`` after a refused socket is closed.
        backoff: seconds a listener rests after running out of descriptors.
    """

    def __init__(
        self,
        loop: EventLoop,
        listeners: Sequence[Listener],
        *,
        on_accept: Callable[[socket.socket, Address | None], None],
        admit: Callable[[Address | None], str | None] | None = None,
        on_refused: Callable[[Address | None, str], None] | None = None,
        backoff: float = ACCEPT_BACKOFF,
    ) -> None:
        self.loop = loop
        self.listeners = list(listeners)
        self.on_accept = on_accept
        self.admit = admit
        self.on_refused = on_refused
        self.backoff = backoff
        self._running = False

    def start(self) -> None:
        """Start accepting."""
        self._running = True
        for listener in self.listeners:
            listener.sock.setblocking(False)
            self.loop.add_reader(listener.fileno(), self._accept_burst, listener)

    def stop(self) -> None:
        """Stop accepting (the listeners stay open: their owner closes them)."""
        self._running = False
        for listener in self.listeners:
            self.loop.remove_reader(listener.fileno())

    def _accept_burst(self, listener: Listener) -> None:
        if not self._running:
            return  # stopped earlier in this turn of the loop: its owner may have closed it
        for _ in range(MAX_BURST):
            try:
                sock, sockaddr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _GONE:
                    continue
                if exc.errno in OUT_OF_RESOURCES:
                    self._rest(listener)
                    return
                self.loop.on_error(translate_os_error(exc, "recv"))
                return
            if not self._take(sock, address_from_sockaddr(sock.family, sockaddr)):
                # A refusal ends the burst: the clients that left meanwhile (a limit
                # counts them until the loop reads their end) are seen to first.
                return

    def _take(self, sock: socket.socket, peer: Address | None) -> bool:
        """Admit and hand over one connection; False if it was refused."""
        try:
            reason = None if self.admit is None else self.admit(peer)
            if reason is not None:
                sock.close()
                if self.on_refused is not None:
                    self.on_refused(peer, reason)
                return False
            self.on_accept(sock, peer)
        except Exception as exc:  # noqa: BLE001 - the socket is closed, the error reported, accepting goes on
            sock.close()
            self.loop.on_error(exc)
        return True

    def _rest(self, listener: Listener) -> None:
        self.loop.remove_reader(listener.fileno())
        self.loop.call_later(self.backoff, self._wake, listener)

    def _wake(self, listener: Listener) -> None:
        if self._running:
            self.loop.add_reader(listener.fileno(), self._accept_burst, listener)
