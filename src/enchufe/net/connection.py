"""Connection: a stream plus the reads people actually want (the pwntools "tube" idea).

Timeout model, the same for every read:

- ``timeout`` bounds the **whole call**, not each system call inside it. A
  ``recv_line(timeout=2)`` that receives a byte every second still ends after 2 s.
- The argument defaults to the connection's :attr:`Connection.timeout`; ``None``
  waits forever.
- When time runs out, :class:`~enchufe.errors.ReceiveTimeout` is raised with
  ``partial`` holding what has arrived so far. Nothing is consumed: the bytes stay
  buffered and the next read sees them again.
- When the peer closes first, :class:`~enchufe.errors.UnexpectedEOF` is raised, with
  ``partial`` and the same no-loss rule. Plain :meth:`Connection.recv` returns ``b""``
  at end of file instead, like a socket.

Memory model: what a read buffers is bounded by what the caller asked for, never by
what the peer sends.

- :meth:`Connection.recv_until` and :meth:`Connection.recv_line` return at most
  ``max_size`` bytes, delimiter included (default: the connection's
  :attr:`Connection.max_size`, :data:`DEFAULT_MAX_SIZE` unless set; ``None`` means no
  limit). When that many bytes arrive without the delimiter,
  :class:`~enchufe.errors.ReceiveLimitExceeded` is raised, with ``partial`` and the
  same no-loss rule; the buffer then holds less than ``max_size`` plus one chunk.
- Every read asks the stream for one chunk at most, so ``recv_exactly(2**40)``
  buffers what arrives as it arrives instead of allocating a terabyte up front.
"""

from __future__ import annotations

import time
from types import EllipsisType, TracebackType

from enchufe.address import Address
from enchufe.errors import ReceiveLimitExceeded, ReceiveTimeout, TimedOut, UnexpectedEOF
from enchufe.net.stream import DEFAULT_RECV_SIZE, SocketStream, Stream, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from enchufe.proto.proxy_protocol import ProxyHeader

__all__ = ["DEFAULT_MAX_SIZE", "Connection"]

#: The most bytes ``recv_until`` and ``recv_line`` return unless told otherwise: far
#: more than any line a protocol sends, far less than what hurts a server.
DEFAULT_MAX_SIZE = 65536

Timeout = float | None | EllipsisType
MaxSize = int | None | EllipsisType


class Connection:
    """A connected stream with buffered, deadline-bounded reads.

    Args:
        stream: the underlying stream; the connection owns it and closes it.
        local: the local address, when known.
        peer: the peer's address, when known.
        timeout: the default deadline in seconds of each read and send; ``None``
            (the default) blocks.
        max_size: the default limit of ``recv_until`` and ``recv_line``, in bytes;
            ``None`` means no limit.
        proxied_by: the balancer that relayed the connection with a PROXY protocol
            header (the socket's own peer), when ``peer`` is the client the header named.
        proxy_header: that header, as read (LOCAL and UNKNOWN ones too, which leave
            ``peer`` the socket's).
    """

    def __init__(
        self,
        stream: Stream,
        *,
        local: Address | None = None,
        peer: Address | None = None,
        timeout: float | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        proxied_by: Address | None = None,
        proxy_header: ProxyHeader | None = None,
    ) -> None:
        self.stream = stream
        self.local = local
        self.peer = peer
        self.proxied_by = proxied_by
        self.proxy_header = proxy_header
        self.timeout = timeout
        self.max_size = max_size
        self._buffer = bytearray()
        #: A byte stream over a socket, whose blocking calls recv and send_all make
        #: directly (see recv); None for any other stream (a subclass may change them).
        self._socket_stream = stream if type(stream) is SocketStream and not stream.is_datagram else None
        self._eof = False
        self._closed = False

    # -- reads -------------------------------------------------------------------------

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: Timeout = ...) -> bytes:
        """Return between 1 and ``max_bytes`` bytes, or ``b""`` at end of file."""
        if self._buffer or max_bytes < 1:
            return self._take(max_bytes)
        # Nothing buffered: the chunk the stream returns is the answer as it is, without a
        # copy into the buffer and out again. A blocking read is a request-reply server's
        # every read, and each step here holds the GIL that the other connections' threads
        # wait for (one step more per read halved the threaded echo server's rate).
        seconds = self.timeout if timeout is ... else timeout
        if seconds is None and self._socket_stream is not None:
            if self._eof:
                return b""
            try:
                chunk = self._socket_stream.sock.recv(min(max_bytes, DEFAULT_RECV_SIZE))
            except OSError as exc:
                raise translate_os_error(exc, "recv") from exc
            if not chunk:
                self._eof = True
            return chunk
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._eof:
            if chunk := self._receive(deadline, max_bytes, "data"):
                return chunk
        return b""

    def recv_exactly(self, count: int, *, timeout: Timeout = ...) -> bytes:
        """Return exactly ``count`` bytes.

        Raises:
            ReceiveTimeout: the deadline passed first.
            UnexpectedEOF: the peer closed first.
        """
        deadline = self._deadline(timeout)
        while len(self._buffer) < count:
            self._fill(deadline, count - len(self._buffer), need=f"{count} bytes")
        return self._take(count)

    def recv_until(
        self, delimiter: bytes, *, keepends: bool = True, max_size: MaxSize = ..., timeout: Timeout = ...
    ) -> bytes:
        """Return the bytes up to and including ``delimiter`` (without it if not ``keepends``).

        Args:
            delimiter: the bytes that end what is returned; not empty.
            keepends: whether the returned bytes end with ``delimiter``.
            max_size: the most bytes to return, delimiter included; defaults to
                :attr:`max_size`; ``None`` means no limit.
            timeout: seconds for the whole call; defaults to :attr:`timeout`.

        Raises:
            ReceiveLimitExceeded: ``max_size`` bytes arrived without the delimiter.
            ReceiveTimeout: the deadline passed first.
            UnexpectedEOF: the peer closed first.
            ValueError: ``delimiter`` is empty or longer than ``max_size``.
        """
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        limit = self.max_size if max_size is ... else max_size
        if limit is not None and limit < len(delimiter):
            raise ValueError(f"max_size {limit} is shorter than the delimiter {delimiter!r}")
        deadline = self._deadline(timeout)
        searched = 0
        # Searching only the first `limit` bytes finds a delimiter that ends within them;
        # once that many bytes are here without one, no later chunk can supply it.
        while (found := self._buffer.find(delimiter, searched, limit)) < 0:
            if limit is not None and len(self._buffer) >= limit:
                raise ReceiveLimitExceeded(
                    f"no {delimiter!r} within {limit} bytes", partial=bytes(self._buffer), limit=limit
                )
            searched = max(0, len(self._buffer) - len(delimiter) + 1)
            self._fill(deadline, DEFAULT_RECV_SIZE, need=f"{delimiter!r}")
        line = self._take(found + len(delimiter))
        return line if keepends else line[: -len(delimiter)]

    def recv_line(self, *, keepends: bool = True, max_size: MaxSize = ..., timeout: Timeout = ...) -> bytes:
        """Return one line, ending at ``\\n``: :meth:`recv_until` with ``b"\\n"``."""
        return self.recv_until(b"\n", keepends=keepends, max_size=max_size, timeout=timeout)

    def can_recv(self, *, timeout: Timeout = ...) -> bool:
        """Whether a read would return at once: bytes are buffered, or the peer has
        closed (then :attr:`buffered` is 0). Waits up to ``timeout`` for one of them;
        ``timeout=0`` only looks. What arrives stays buffered for the next read.

        Raises:
            ConnectionLost: the peer reset the connection.
        """
        if not self._buffer and not self._eof:
            try:
                self._fill(self._deadline(timeout), DEFAULT_RECV_SIZE)
            except ReceiveTimeout:
                return False
        return bool(self._buffer) or self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet: the next read returns them first."""
        return len(self._buffer)

    def __iter__(self) -> Iterator[bytes]:
        """Yield chunks as they arrive until end of file."""
        while chunk := self.recv():
            yield chunk

    # -- writes ------------------------------------------------------------------------

    def send_all(self, data: bytes, *, timeout: Timeout = ...) -> None:
        """Send every byte of ``data``; a peer that stops reading raises ``TimedOut``
        once the deadline passes instead of blocking forever."""
        seconds = self.timeout if timeout is ... else timeout
        if seconds is None and (stream := self._socket_stream) is not None:  # as few steps as recv's
            try:
                with stream.send_lock:
                    stream.sock.sendall(data)
            except OSError as exc:
                raise translate_os_error(exc, "send") from exc
            return
        self.stream.send_all(data, timeout=seconds)

    def send_line(self, line: bytes | str, *, newline: bytes = b"\n", timeout: Timeout = ...) -> None:
        """Send ``line`` followed by ``newline``; text is encoded as UTF-8."""
        data = line.encode() if isinstance(line, str) else line
        self.send_all(data + newline, timeout=timeout)

    def send_eof(self) -> None:
        """Half-close: tell the peer nothing more will be sent; reads still work."""
        self.stream.send_eof()

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._closed = True
        self.stream.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        via = "" if self.proxied_by is None else f" proxied_by={self.proxied_by}"
        return f"<Connection local={self.local} peer={self.peer}{via}>"

    # -- internals ---------------------------------------------------------------------

    def _deadline(self, timeout: Timeout) -> float | None:
        seconds = self.timeout if timeout is ... else timeout
        return None if seconds is None else time.monotonic() + seconds

    def _fill(self, deadline: float | None, max_bytes: int, *, need: str = "data") -> None:
        """Receive one chunk into the buffer, or raise at the deadline or end of file."""
        if self._eof:
            raise UnexpectedEOF(f"connection closed while waiting for {need}", partial=bytes(self._buffer))
        self._buffer += self._receive(deadline, max_bytes, need)
        if self._eof and need != "data":
            raise UnexpectedEOF(f"connection closed while waiting for {need}", partial=bytes(self._buffer))

    def _receive(self, deadline: float | None, max_bytes: int, need: str) -> bytes:
        """Return one chunk from the stream (``b""`` with :attr:`_eof` set at end of file, or
        for an empty datagram), or raise ``ReceiveTimeout`` at the deadline."""
        # Past the deadline the stream still takes what has already arrived, without
        # waiting: so timeout=0 reads what is there.
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        # A stream's recv() allocates all it is asked for before anything arrives, so a
        # large count (recv_exactly(2**40)) would be a MemoryError: ask for one chunk at
        # most. A datagram is asked for whole, since recv() discards what does not fit.
        size = max_bytes if self.stream.is_datagram else min(max_bytes, DEFAULT_RECV_SIZE)
        try:
            chunk = self.stream.recv(max(size, 1), timeout=remaining)
        except TimedOut:
            raise ReceiveTimeout(f"timed out waiting for {need}", partial=bytes(self._buffer)) from None
        if not chunk and not self.stream.is_datagram:  # an empty datagram is no end of file
            self._eof = True
        return chunk

    def _take(self, count: int) -> bytes:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data
