"""Non-blocking sockets on the event loop: a transport per connection, with backpressure.

A :class:`SocketTransport` owns one connected, non-blocking socket registered with an
:class:`~enchufe.net.loop.EventLoop`, and tells a :class:`StreamProtocol` what happens
(the division of labour of asyncio's transports and protocols, without coroutines):

- **Reading.** Each readable event is one ``recv``; the bytes go to
  ``data_received``. The peer's half-close is ``eof_received``; reading stops there.
  :meth:`~SocketTransport.pause_reading` takes the socket off the selector, so a
  source whose destination is full is simply not read (that is backpressure: the
  kernel's buffers fill and TCP slows the sender down).
- **Writing.** :meth:`~SocketTransport.write` sends at once what the kernel takes and
  keeps the rest in a buffer, watched for writability only while it is non-empty.
  The buffer is a queue of chunks flushed with one ``sendmsg`` each time the socket
  is writable: a ``bytes`` chunk is kept as it is, not copied, so a broadcast to many
  transports shares one object; small writes are gathered into one chunk, and
  anything mutable (``bytearray``, ``memoryview``) is copied, so the caller may reuse
  it at once.
  Above ``high_water`` buffered bytes the protocol's ``pause_writing`` is called; once
  the buffer drains to ``low_water``, ``resume_writing``. Nothing here limits the
  buffer: a protocol that keeps writing after ``pause_writing`` is the one to stop.
- **Ending.** :meth:`~SocketTransport.write_eof` half-closes once the buffer is
  flushed; :meth:`~SocketTransport.close` stops reading, flushes, then closes;
  :meth:`~SocketTransport.abort` closes at once and drops the buffer. Exactly one
  ``connection_lost`` follows, on a later turn of the loop, with ``None`` or the
  :class:`~enchufe.errors.NetworkError` that ended the connection; the socket itself
  is closed right after it (as asyncio does), so its descriptor number is not
  reused while the protocol still counts the connection as alive.

Every method runs on the loop's thread; other threads go through
``loop.call_soon_threadsafe``. ``OSError`` becomes an enchufe error through
:func:`enchufe.net.stream.translate_os_error`, as everywhere.
"""

from __future__ import annotations

import socket
from collections import deque
from itertools import islice

from enchufe.errors import NetworkError
from enchufe.net.stream import DEFAULT_RECV_SIZE, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from enchufe.net.loop import EventLoop
else:
    Protocol = object  # a protocol only matters to type checkers; typing is slow to import

__all__ = ["DEFAULT_HIGH_WATER", "ClientTransport", "SocketTransport", "StreamProtocol"]

#: Buffered output above which the protocol is asked to pause (asyncio uses 64 KiB;
#: more keeps a bulk relay from stopping and starting on every burst).
DEFAULT_HIGH_WATER = 256 * 1024

#: Writes shorter than this are copied onto the buffer's last chunk rather than queued
#: as chunks of their own: a byte-at-a-time writer costs one system call per flush of
#: up to ``_GATHER_LIMIT`` bytes, not one per byte.
_GATHER_BELOW = 4096
#: The most bytes gathered into one chunk.
_GATHER_LIMIT = 64 * 1024
#: The most chunks one ``sendmsg`` takes (Linux's IOV_MAX is 1024; 64 chunks of the
#: usual size are already more than a socket's kernel buffer takes at once).
_CHUNKS_PER_SEND = 64


class ClientTransport(Protocol):
    """The vocabulary every transport on the loop speaks to its protocol and owner:
    :class:`SocketTransport`, :class:`~enchufe.net.tls_transport.TlsTransport`, a UDP
    peer's :class:`~enchufe.net.datagram.DatagramSession` (see
    :class:`SocketTransport` for what each method means)."""

    @property
    def write_buffer_size(self) -> int: ...
    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: ...
    def can_write(self) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class StreamProtocol:
    """What a transport reports to its owner. Every method does nothing by default."""

    def connection_made(self, transport: ClientTransport) -> None:
        """The transport is ready; it starts reading after this returns."""

    def data_received(self, data: bytes) -> None:
        """The peer sent ``data`` (never empty)."""

    def eof_received(self) -> None:
        """The peer will send nothing more (it half-closed); writing may go on."""

    def pause_writing(self) -> None:
        """The transport's output buffer went above its high-water mark."""

    def resume_writing(self) -> None:
        """The output buffer drained to its low-water mark."""

    def connection_lost(self, exc: NetworkError | None) -> None:
        """The transport is closed: ``None`` when closed on purpose, else the failure."""


class SocketTransport:
    """One connected socket on the loop; see the module docstring.

    Args:
        loop: the event loop that drives it.
        sock: a connected stream socket; the transport owns it and makes it
            non-blocking.
        protocol: told about data, end of stream, flow control and the end.
        high_water: buffered output bytes above which ``pause_writing`` is called.
        low_water: buffered output bytes at or below which ``resume_writing`` is
            called (default: a quarter of ``high_water``).
        read_size: the most bytes one ``recv`` asks for.
    """

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        protocol: StreamProtocol,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int | None = None,
        read_size: int = DEFAULT_RECV_SIZE,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.high_water = high_water
        self.low_water = high_water // 4 if low_water is None else low_water
        self._read_size = read_size
        self._fd = sock.fileno()
        # Chunks not yet sent, oldest first: ``bytes`` (shared with the caller),
        # ``bytearray`` this transport gathers small writes into (only the last one
        # still grows), or a memoryview of either once the kernel took part of it.
        self._buffer: deque[bytes | bytearray | memoryview] = deque()
        self._buffered = 0
        self._reading = False
        self._read_paused = False
        self._peer_ended = False
        self._eof_wanted = False
        self._eof_sent = False
        self._closing = False
        self._closed = False
        self._write_paused = False
        sock.setblocking(False)
        protocol.connection_made(self)
        if not self._closing:
            self._start_reading()

    # -- reading ---------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading` (data stays in the kernel)."""
        self._read_paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        self._read_paused = False
        if not self._closing:
            self._start_reading()

    def _start_reading(self) -> None:
        if not self._reading and not self._read_paused and not self._peer_ended:
            self._reading = True
            self.loop.add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        if not self._reading:
            return  # paused by a callback that ran earlier in the same turn of the loop
        try:
            data = self.sock.recv(self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(translate_os_error(exc, "recv"))
            return
        if data:
            self.protocol.data_received(data)
            return
        self._peer_ended = True
        self._stop_reading()
        self.protocol.eof_received()

    # -- writing ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: what the kernel takes now, the rest from the buffer later."""
        if self._eof_wanted or self._closing:
            raise RuntimeError("write after write_eof() or close()")
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if not size:
            return
        sent = 0
        if not self._buffer:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._fail(translate_os_error(exc, "send"))
                return
            if sent == size:
                return
            self.loop.add_writer(self._fd, self._on_writable)
        self._enqueue(data, sent, size - sent)
        if not self._write_paused and self._buffered > self.high_water:
            self._write_paused = True
            self.protocol.pause_writing()

    def _enqueue(self, data: bytes | bytearray | memoryview, start: int, size: int) -> None:
        """Buffer ``data`` from byte ``start`` on (``size`` bytes): shared if it is a
        large ``bytes``, else copied (the caller may change a mutable buffer)."""
        self._buffered += size
        if size >= _GATHER_BELOW and type(data) is bytes:
            self._buffer.append(memoryview(data)[start:] if start else data)
            return
        rest = memoryview(data).cast("B")[start:]
        last = self._buffer[-1] if self._buffer else None
        if size >= _GATHER_BELOW:
            self._buffer.append(bytes(rest))
        elif type(last) is bytearray and len(last) + size <= _GATHER_LIMIT:
            last += rest
        else:
            self._buffer.append(bytearray(rest))

    def write_eof(self) -> None:
        """Half-close once every buffered byte is sent; reading goes on."""
        if self._eof_wanted:
            return
        self._eof_wanted = True
        if not self._buffer:
            self._send_eof()

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._buffered

    def _on_writable(self) -> None:
        buffer = self._buffer
        try:
            sent = self.sock.sendmsg(islice(buffer, _CHUNKS_PER_SEND))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(translate_os_error(exc, "send"))
            return
        self._buffered -= sent
        while sent:
            head = buffer[0]
            size = len(head)  # every chunk is of bytes, so its length is its size
            if sent < size:
                buffer[0] = memoryview(head)[sent:]
                break
            buffer.popleft()
            sent -= size
        if self._write_paused and self._buffered <= self.low_water:
            self._write_paused = False
            self.protocol.resume_writing()
        if self._buffer:
            return
        self.loop.remove_writer(self._fd)
        if self._closing:
            self._finish(None)
        elif self._eof_wanted:
            self._send_eof()

    def _send_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fail(translate_os_error(exc, "send"))

    # -- ending ----------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def can_write(self) -> bool:
        """False once :meth:`write_eof` or :meth:`close` was called: a write would fail."""
        return not (self._eof_wanted or self._closing)

    def close(self) -> None:
        """Stop reading, send what is buffered, then close. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._finish(None)

    def abort(self) -> None:
        """Close at once; buffered output is dropped. Idempotent."""
        self._closing = True
        self._finish(None)

    def _fail(self, exc: NetworkError) -> None:
        self._closing = True
        self._finish(exc)

    def _finish(self, exc: NetworkError | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._buffer:
            self._buffer.clear()
            self._buffered = 0
            self.loop.remove_writer(self._fd)
        self.loop.call_soon(self._lost, exc)

    def _lost(self, exc: NetworkError | None) -> None:
        # The socket is closed only once the protocol knows: until then its descriptor
        # number cannot go to a new connection, and whatever the owner keys by that
        # number (ncat's chat names clients by it) never sees two clients at once.
        try:
            self.protocol.connection_lost(exc)
        finally:
            self.sock.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<SocketTransport fd={self._fd} {state} buffered={self._buffered}>"
