"""Two transports on the loop joined end to end: what one receives, the other sends.

A :class:`Bridge` is the copying counterpart of :class:`~enchufe.net.tunnel.Tunnel`, for
when one side cannot be spliced because its bytes are not the socket's: a
:class:`~enchufe.net.tls_transport.TlsTransport` decrypting a TLS client. It gives two
protocols, :attr:`Bridge.a` and :attr:`Bridge.b`, each made the protocol of one
transport; then:

- data received on one side is written to the other; a side made first (a socket,
  while the TLS side is still in its handshake) is not read until the other is made;
- **backpressure:** when one side's output buffer passes its high-water mark
  (``pause_writing``), the other side stops reading until it drains
  (``resume_writing``);
- **end of stream** on one side is ``write_eof`` on the other (TLS's ``close_notify``
  for a TLS side), and the other direction goes on;
- when both directions have ended (or, after :meth:`Bridge.finish`, side ``b``'s), or
  either side is lost, both are closed (a side lost
  with an error is aborted on the other side too: nothing is flushed to a peer whose
  counterpart broke).

``on_closed(error)`` is told once, after both sides are closed.
"""

from __future__ import annotations

from enchufe.net.transport import StreamProtocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.errors import NetworkError
    from enchufe.net.transport import ClientTransport

__all__ = ["Bridge"]


class _Side(StreamProtocol):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.transport: ClientTransport | None = None
        self.other: _Side | None = None
        self.ended = False  # this side's peer ended its stream
        self.lost = False

    def connection_made(self, transport: ClientTransport) -> None:
        self.transport = transport
        assert self.other is not None
        if self.other.transport is None:
            transport.pause_reading()  # nowhere to write yet: a TLS side still in its handshake
        else:
            self.other.transport.resume_reading()
            self.bridge._ready()

    def data_received(self, data: bytes) -> None:
        assert self.other is not None
        if self.other.transport is not None and self.other.transport.can_write():
            self.other.transport.write(data)

    def eof_received(self) -> None:
        assert self.other is not None
        self.ended = True
        if self.other.transport is not None and self.other.transport.can_write():
            self.other.transport.write_eof()
        if self.other.ended or (self is self.bridge.b and self.bridge._finishing):
            self.bridge.close()

    def pause_writing(self) -> None:
        assert self.other is not None
        if self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.other is not None
        if self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.lost = True
        self.bridge._side_lost(exc)


class Bridge:
    """Join two transports; see the module docstring.

    Args:
        on_ready: called once both sides are made (a TLS side: its handshake done).
        on_closed: told once, after both sides are closed: ``None``, or the first error.
    """

    def __init__(
        self,
        *,
        on_ready: Callable[[], None] | None = None,
        on_closed: Callable[[NetworkError | None], None] | None = None,
    ) -> None:
        self.on_ready = on_ready
        self.on_closed = on_closed
        self.a = _Side(self)
        self.b = _Side(self)
        self.a.other, self.b.other = self.b, self.a
        self._error: NetworkError | None = None
        self._finishing = False
        self._closing = False
        self._told = False

    def finish(self) -> None:
        """Side ``b``'s peer is ending: once everything it sent has passed and its end
        has arrived, close both sides (``a`` flushed, ``close_notify`` for TLS) without
        waiting for ``a``'s peer to end too."""
        self._finishing = True
        if self.b.ended:
            self.close()

    def close(self) -> None:
        """Close both sides, flushing what each has buffered."""
        self._closing = True
        for side in (self.a, self.b):
            if side.transport is not None and not side.lost:
                side.transport.close()

    def abort(self) -> None:
        """Close both sides at once."""
        self._closing = True
        for side in (self.a, self.b):
            if side.transport is not None and not side.lost:
                side.transport.abort()

    def _ready(self) -> None:
        if self.on_ready is not None and not self._closing:
            self.on_ready()

    def _side_lost(self, exc: NetworkError | None) -> None:
        if exc is not None and self._error is None:
            self._error = exc
        if self._closing:
            pass
        elif exc is not None:
            self.abort()
        else:
            self.close()
        if self.a.lost and self.b.lost and not self._told:
            self._told = True
            if self.on_closed is not None:
                self.on_closed(self._error)
