"""Tunnels on the event loop: bytes between two sockets, zero-copy, half-close both ways.

A proxy server, once it has a client and the connection it asked for, only moves bytes.
A :class:`Pump` moves them one way, from a source socket to a sink socket, on an
:class:`~enchufe.net.loop.EventLoop`; a :class:`Tunnel` is two pumps, one each way.
Neither holds a thread, so a server holds thousands of tunnels on one.

How a pump moves bytes:

- **Zero-copy.** On Linux the bytes go ``splice(source → pipe)`` then ``splice(pipe →
  sink)``: they never enter Python. The pipe is made at the first byte, so an idle
  pump costs no descriptors; a pump that fills its pipe in one call (bulk data)
  enlarges it once, up to :data:`LARGE_PIPE` (fewer turns of the loop per byte). Where
  ``os.splice`` does not exist, ``recv_into`` and ``send`` move them through one buffer.
- **Backpressure.** A pump reads only when everything it read before is delivered: a
  sink that does not read stops the source's reads, and the kernel's windows push back
  to the sender. Nothing buffers more than one pipe (or buffer) per direction.
- **Fairness.** One read per readiness: a busy tunnel takes its turn with everyone else.
- **End of stream.** The source's end of stream, once everything before it is
  delivered, becomes ``shutdown(SHUT_WR)`` on the sink (TCP's half-close) and the pump
  ends with ``on_end(None)``; the other direction goes on. A reset or a broken pipe ends
  it with ``on_end(error)``.

``first`` bytes, given when a pump is made, go to the sink before anything read: what a
proxy already read from its client past the request, or a reply not yet sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct

from enchufe.net.stream import translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.errors import NetworkError
    from enchufe.net.loop import EventLoop

__all__ = ["LARGE_PIPE", "RESET_ON_CLOSE", "Pump", "Tunnel"]

#: The size a pump's pipe grows to when a single splice fills it (Linux's default
#: ``pipe-max-size``); the default pipe holds 64 KiB.
LARGE_PIPE = 1 << 20
#: Bytes one copy moves where there is no splice.
_COPY_SIZE = 256 * 1024
#: SO_LINGER on, for 0 seconds: close() sends a reset.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)
_ZERO_COPY = hasattr(os, "splice")
if _ZERO_COPY:
    _SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class Pump:
    """Move bytes from ``source`` to ``sink`` on ``loop``; see the module docstring.

    Args:
        loop: the event loop; every method runs in its thread.
        source: a connected, non-blocking stream socket to read.
        sink: a connected, non-blocking stream socket to write.
        first: bytes to deliver before anything read.
        half_close: at the source's end, shut the sink down for writing (``False``:
            leave it open, for a caller that closes it).
        on_end: ``on_end(None)`` once the source's end of stream is delivered;
            ``on_end(error)`` when reading or writing failed. Called once.
        on_moved: called after each read and each write that moved bytes, for an idle
            timer.

    The pump owns neither socket; it owns its pipe, closed by :meth:`close` (and when it
    ends).

    Attributes:
        delivered: bytes written to the sink so far, ``first`` included.
    """

    def __init__(
        self,
        loop: EventLoop,
        source: socket.socket,
        sink: socket.socket,
        *,
        first: bytes = b"",
        half_close: bool = True,
        on_end: Callable[[NetworkError | None], None],
        on_moved: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.source = source
        self.sink = sink
        self.half_close = half_close
        self.on_end = on_end
        self.on_moved = on_moved
        self._source_fd = source.fileno()
        self._sink_fd = sink.fileno()
        self._first = first
        self.delivered = 0
        self._pipe: tuple[int, int] | None = None
        self._pipe_size = 0
        self._pipe_grown = False
        self._buffer: memoryview | None = None
        self._held = 0  # bytes read and not yet delivered (in the pipe or the buffer)
        self._sent = 0  # of a copy buffer's held bytes, those delivered already
        self._reading = False
        self._writing = False
        self._source_ended = False
        self._ended = False

    def start(self) -> None:
        """Start moving (``first`` first)."""
        if self._first:
            self._deliver()
        else:
            self._want_read(True)

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        """Stop at once: unregister from the loop and close the pipe (not the sockets)."""
        if not self._ended:
            self._ended = True
            self._stop()

    # -- the loop's callbacks ------------------------------------------------------------

    def _on_readable(self) -> None:
        if not self._reading:
            return  # stopped earlier in this turn of the loop
        try:
            moved = self._read()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(translate_os_error(exc, "recv"))
            return
        if self.on_moved is not None:
            self.on_moved()
        if moved == 0:
            self._source_ended = True
            self._want_read(False)
        self._held = moved
        self._deliver()

    def _deliver(self) -> None:
        """Write what is held; wait for the sink when it is full, read again when empty."""
        if self._ended:
            return  # closed earlier in this turn of the loop
        before = self.delivered
        try:
            while self._first:
                sent = self.sink.send(self._first)
                self._first = self._first[sent:]
                self.delivered += sent
            while self._held:
                sent = self._write()
                self._held -= sent
                self.delivered += sent
        except (BlockingIOError, InterruptedError):
            self._written(before)
            self._want_read(False)
            self._want_write(True)
            return
        except OSError as exc:
            self._fail(translate_os_error(exc, "send"))
            return
        self._written(before)
        self._want_write(False)
        if self._source_ended:
            self._finish()
        else:
            self._want_read(True)

    def _written(self, before: int) -> None:
        """Tell the idle timer of bytes written: a slow reader draining a full pipe gets
        no read from this pump for a long time, and is not idle."""
        if self.delivered > before and self.on_moved is not None:
            self.on_moved()

    # -- moving --------------------------------------------------------------------------

    def _read(self) -> int:
        if not _ZERO_COPY:
            if self._buffer is None:
                self._buffer = memoryview(bytearray(_COPY_SIZE))
            self._sent = 0
            return self.source.recv_into(self._buffer)
        if self._pipe is None:
            self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._pipe_size = fcntl.fcntl(self._pipe[1], fcntl.F_GETPIPE_SZ)
        moved = os.splice(self._source_fd, self._pipe[1], self._pipe_size, flags=_SPLICE_FLAGS)
        if moved == self._pipe_size and not self._pipe_grown:
            self._grow_pipe()
        return moved

    def _write(self) -> int:
        if self._pipe is None:
            assert self._buffer is not None
            sent = self.sink.send(self._buffer[self._sent : self._sent + self._held])
            self._sent += sent
            return sent
        return os.splice(self._pipe[0], self._sink_fd, self._held, flags=_SPLICE_FLAGS)

    def _grow_pipe(self) -> None:
        assert self._pipe is not None
        self._pipe_grown = True  # asked once, granted or not
        # Refused over the user's pipe allowance (pipe-user-pages-soft): the small one works.
        with contextlib.suppress(OSError):
            self._pipe_size = fcntl.fcntl(self._pipe[1], fcntl.F_SETPIPE_SZ, LARGE_PIPE)

    # -- state ---------------------------------------------------------------------------

    def _want_read(self, wanted: bool) -> None:
        if wanted and not self._reading and not self._ended:
            self._reading = True
            self.loop.add_reader(self._source_fd, self._on_readable)
        elif not wanted and self._reading:
            self._reading = False
            self.loop.remove_reader(self._source_fd)

    def _want_write(self, wanted: bool) -> None:
        if wanted and not self._writing and not self._ended:
            self._writing = True
            self.loop.add_writer(self._sink_fd, self._deliver)
        elif not wanted and self._writing:
            self._writing = False
            self.loop.remove_writer(self._sink_fd)

    def _stop(self) -> None:
        self._want_read(False)
        self._want_write(False)
        if self._pipe is not None:
            os.close(self._pipe[0])
            os.close(self._pipe[1])
            self._pipe = None
        self._buffer = None

    def _finish(self) -> None:
        self._ended = True
        self._stop()
        error = None
        if self.half_close:
            try:
                self.sink.shutdown(socket.SHUT_WR)
            except OSError as exc:
                error = translate_os_error(exc, "send")
        self.on_end(error)

    def _fail(self, error: NetworkError) -> None:
        self._ended = True
        self._stop()
        self.on_end(error)


class Tunnel:
    """Two :class:`Pump` s, ``a`` to ``b`` and ``b`` to ``a``; the tunnel owns both sockets.

    ``on_closed(None)`` once both directions have ended cleanly, ``on_closed(error)`` at
    the first failure; either way both sockets are closed first, after a failure with a
    reset (``SO_LINGER`` 0), so that a reset on one side is a reset on the other. :meth:`close` ends it
    at once (``on_closed`` is not called).

    Args:
        loop: the event loop.
        a, b: connected stream sockets, made non-blocking here.
        a_to_b, b_to_a: bytes to deliver before anything read, each way.
        on_closed: told how the tunnel ended.
        on_moved: called whenever bytes move either way, for an idle timer.
    """

    def __init__(
        self,
        loop: EventLoop,
        a: socket.socket,
        b: socket.socket,
        *,
        a_to_b: bytes = b"",
        b_to_a: bytes = b"",
        on_closed: Callable[[NetworkError | None], None],
        on_moved: Callable[[], None] | None = None,
    ) -> None:
        self.a = a
        self.b = b
        self.on_closed = on_closed
        self._closed = False
        a.setblocking(False)
        b.setblocking(False)
        self._pumps = (
            Pump(loop, a, b, first=a_to_b, on_end=self._pump_ended, on_moved=on_moved),
            Pump(loop, b, a, first=b_to_a, on_end=self._pump_ended, on_moved=on_moved),
        )

    def start(self) -> None:
        for pump in self._pumps:
            pump.start()

    @property
    def delivered(self) -> tuple[int, int]:
        """Bytes delivered so far: ``a`` to ``b``, and ``b`` to ``a``."""
        return self._pumps[0].delivered, self._pumps[1].delivered

    def close(self) -> None:
        """Close both sockets now, whatever is in flight."""
        if not self._closed:
            self._closed = True
            for pump in self._pumps:
                pump.close()
            self.a.close()
            self.b.close()

    def _pump_ended(self, error: NetworkError | None) -> None:
        if self._closed:
            return
        if error is None and not all(pump.ended for pump in self._pumps):
            return  # one direction is over; the other goes on
        if error is not None:
            for sock in (self.a, self.b):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        self.close()
        self.on_closed(error)
