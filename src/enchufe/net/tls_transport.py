"""TLS on the event loop: a transport of plaintext over a socket transport.

A :class:`TlsTransport` sits between a :class:`~enchufe.net.transport.SocketTransport`
(it is that transport's protocol, and gets the socket's bytes) and the protocol above
(to which it is a transport of plaintext in the same vocabulary,
:class:`~enchufe.net.transport.ClientTransport`). The TLS itself is a
:class:`~enchufe.net.tls.TlsState`, as for the blocking :class:`~enchufe.net.tls.TlsStream`:

- **The handshake runs as bytes arrive**, one step per read, and never waits for
  anything: a client that sends nothing, half a hello or garbage costs its own
  connection only. The protocol's ``connection_made`` is called once the handshake is
  done. A handshake that does not complete — it failed, the peer left, or
  ``handshake_timeout`` passed — is reported once, ``on_handshake_failed(error)``,
  and the connection is cut off (after the alert that tells the peer why).
- **``connection_lost`` comes exactly once, whatever happened**, also for a connection
  whose handshake never completed (the protocol saw no ``connection_made`` then): its
  owner learns of every end, with the :class:`~enchufe.errors.TlsError` (or
  :class:`~enchufe.errors.TimedOut`) as the reason when the handshake failed.
- **End of stream is TLS's own.** :meth:`~TlsTransport.write_eof` sends
  ``close_notify`` and then half-closes the socket; reading goes on. The peer's
  ``close_notify`` is ``eof_received``; a socket that ends without one is
  ``eof_received`` too, with :attr:`~TlsTransport.truncated` set.
- **Everything received is delivered.** One read from the socket may hold several
  records: they are decrypted and delivered (up to ``read_size`` bytes per
  ``data_received``) until TLS needs more bytes, or the protocol pauses reading.
- **Backpressure is the socket's.** Plaintext is encrypted as it is written, so what
  waits is ciphertext in the socket transport's buffer: its ``pause_writing`` and
  ``resume_writing`` reach the protocol, :attr:`~TlsTransport.write_buffer_size` is
  its size. :meth:`~TlsTransport.pause_reading` stops decrypting and reading the
  socket; records already received wait inside TLS until reading resumes.

Everything runs on the loop's thread. Importing this module imports :mod:`ssl`.
"""

from __future__ import annotations

import contextlib

from enchufe.errors import NetworkError, TimedOut, TlsError
from enchufe.net.stream import DEFAULT_RECV_SIZE
from enchufe.net.tls import CLOSED_IN_HANDSHAKE, Negotiated, TlsState
from enchufe.net.transport import StreamProtocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from enchufe.net.loop import EventLoop, Handle, TimerHandle
    from enchufe.net.transport import ClientTransport

__all__ = ["TlsTransport"]
#: The most plaintext encrypted at once (TLS cuts it into 16 KiB records anyway): a
#: large write is never held twice, as plaintext and as ciphertext, in full.
_WRITE_PIECE = 64 * 1024


class TlsTransport(Negotiated, StreamProtocol):
    """TLS over one socket transport on ``loop``; see the module docstring.

    Made first, then given as the protocol of the socket transport, which starts the
    handshake (``SocketTransport(loop, sock, TlsTransport(loop, context, protocol,
    ...))``).

    Args:
        loop: the event loop the socket transport runs on.
        context: a server or client context (:func:`~enchufe.net.tls.server_context`).
        protocol: told about plaintext, end of stream, flow control and the end, once
            the handshake is done (``connection_lost`` in any case).
        on_handshake_failed: ``on_handshake_failed(error)`` when the handshake fails,
            the peer leaves before its end, or ``handshake_timeout`` passes; not when
            the owner closes the transport itself.
        server_side: whether this end is the server.
        server_hostname: a client's target name (SNI, and the certificate's check).
        handshake_timeout: seconds from the connection to the end of the handshake
            (``None``: no limit).
        read_size: the most plaintext one ``data_received`` carries.

    Attributes:
        protocol: the protocol above.
        raw: the socket transport underneath, once it has called ``connection_made``.
    """

    def __init__(
        self,
        loop: EventLoop,
        context: ssl.SSLContext,
        protocol: StreamProtocol,
        *,
        on_handshake_failed: Callable[[NetworkError], None],
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
        read_size: int = DEFAULT_RECV_SIZE,
    ) -> None:
        self.loop = loop
        self.protocol = protocol
        self.raw: ClientTransport | None = None
        self.on_handshake_failed = on_handshake_failed
        self._state = TlsState(context, server_side=server_side, server_hostname=server_hostname)
        self._handshake_timeout = handshake_timeout
        self._read_size = read_size
        self._timer: TimerHandle | None = None
        self._made = False
        #: Why the connection ended, when it was this transport's doing (a handshake or
        #: a record that failed): what the protocol's connection_lost is told.
        self._failure: NetworkError | None = None
        #: A record that failed after plaintext was decrypted in the same go: raised
        #: once that plaintext is delivered.
        self._read_failure: TlsError | None = None
        self._read_paused = False
        self._peer_ended = False
        self._eof_wanted = False
        self._closing = False
        self._delivery: Handle | None = None

    # -- what the socket transport reports -----------------------------------------------

    def connection_made(self, transport: ClientTransport) -> None:
        self.raw = transport
        if self._handshake_timeout is not None:
            self._timer = self.loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        self._advance_handshake()  # a client's hello; a server waits for it

    def data_received(self, data: bytes) -> None:
        self._state.receive(data)
        if self._made:
            self._deliver()
        elif self._failure is None:
            self._advance_handshake()

    def eof_received(self) -> None:
        self._state.receive(b"")
        if self._made:
            self._deliver()
        elif self._failure is None:
            self._handshake_failed(TlsError(CLOSED_IN_HANDSHAKE))

    def pause_writing(self) -> None:
        if self._made:
            self.protocol.pause_writing()

    def resume_writing(self) -> None:
        if self._made:
            self.protocol.resume_writing()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self._cancel_timer()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None
        if not self._made and self._failure is None and exc is not None:
            self._handshake_failed(TlsError(CLOSED_IN_HANDSHAKE, errno=exc.errno))  # a reset
        self.protocol.connection_lost(self._failure if self._failure is not None else exc)

    # -- the handshake -------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        try:
            done = self._state.handshake()
        except TlsError as exc:
            self._send_what_tls_made()  # the alert, so that the peer knows why
            self._handshake_failed(exc)
            return
        self._send_what_tls_made()
        if done:
            self._made = True
            self._cancel_timer()
            self.protocol.connection_made(self)
            self._deliver()  # what the peer sent right after its last handshake message

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if not self._made and not self._closing:
            self._handshake_failed(TimedOut(f"handshake not done within {self._handshake_timeout:g} s"))

    def _handshake_failed(self, error: NetworkError) -> None:
        self._fail(error)
        self.on_handshake_failed(error)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- reading -------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop decrypting and reading the socket until :meth:`resume_reading`."""
        self._read_paused = True
        if self.raw is not None:
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        """Read again; what TLS already holds is delivered on the next turn of the loop
        (not from within this call, which may come from the protocol's own callbacks)."""
        self._read_paused = False
        if self.raw is None or self.is_closing():
            return
        self.raw.resume_reading()
        if self._made and not self._peer_ended and self._delivery is None:
            self._delivery = self.loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        """Hand the protocol every plaintext byte TLS can make of what it received, and
        the end of stream, until it needs more bytes or the protocol pauses."""
        self._delivery = None
        while not (self._read_paused or self._peer_ended or self.is_closing()):
            try:
                data = self._decrypt()
            except TlsError as exc:
                self._send_what_tls_made()
                self._fail(exc)
                return
            self._send_what_tls_made()  # reading may answer the peer (a key update)
            if data is None:
                return
            if data:
                self.protocol.data_received(data)
                continue
            self._peer_ended = True
            self.protocol.eof_received()

    def _decrypt(self) -> bytes | None:
        """Up to ``read_size`` bytes of plaintext (from as many records as it takes),
        ``b""`` at the end of the stream, ``None`` when TLS needs more bytes."""
        if self._read_failure is not None:
            raise self._read_failure
        pieces: list[bytes] = []
        room = self._read_size
        while room:
            try:
                piece = self._state.read(room)
            except TlsError as exc:
                if not pieces:
                    raise
                self._read_failure = exc  # raised after the plaintext that came before it
                break
            if not piece:
                if not pieces:
                    return piece
                break
            pieces.append(piece)
            room -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it; what the kernel does not take waits in the
        socket transport's buffer."""
        if not self.can_write():
            raise RuntimeError("write after write_eof() or close()")
        view = memoryview(data).cast("B")
        try:
            while view:
                self._state.write(view[:_WRITE_PIECE])
                self._send_what_tls_made()
                view = view[_WRITE_PIECE:]
        except TlsError as exc:
            self._fail(exc)

    def write_eof(self) -> None:
        """Send ``close_notify``, then half-close the socket once the buffer is sent;
        reading goes on."""
        if self._eof_wanted or not self._made:
            return
        self._eof_wanted = True
        try:
            self._state.shutdown()
        except TlsError as exc:
            self._fail(exc)
            return
        self._send_what_tls_made()
        assert self.raw is not None
        self.raw.write_eof()

    @property
    def write_buffer_size(self) -> int:
        """Ciphertext written but not yet taken by the kernel."""
        return 0 if self.raw is None else self.raw.write_buffer_size

    def can_write(self) -> bool:
        """False before the handshake is done and once :meth:`write_eof` or
        :meth:`close` was called (or the connection failed)."""
        return self._made and not (self._eof_wanted or self._closing) and self.raw is not None and self.raw.can_write()

    def _send_what_tls_made(self) -> None:
        data = self._state.outgoing()
        if data and self.raw is not None and self.raw.can_write():
            self.raw.write(data)

    # -- ending --------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or (self.raw is not None and self.raw.is_closing())

    def close(self) -> None:
        """Stop reading, send ``close_notify`` (once the handshake is done) and what is
        buffered, then close. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if self._made and not self._state.eof_sent:
            with contextlib.suppress(TlsError):  # a second SSL_shutdown that fails: close_notify is made
                self._state.shutdown()
            self._send_what_tls_made()
        if self.raw is not None:
            self.raw.close()

    def abort(self) -> None:
        """Close at once; buffered output is dropped. Idempotent."""
        self._closing = True
        self._cancel_timer()
        if self.raw is not None:
            self.raw.abort()

    def _fail(self, error: NetworkError) -> None:
        if self._failure is None:
            self._failure = error
        self.abort()

    def __repr__(self) -> str:
        state = "closing" if self.is_closing() else "open" if self._made else "handshaking"
        return f"<TlsTransport {state} {self.version} over {self.raw!r}>"
