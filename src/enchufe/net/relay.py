"""The relay: move bytes both ways between a local stream and a remote one.

The local side is what the user sees (stdin/stdout, later a child process); the
remote side is the network. Two pump threads move the data, one per direction, and
the thread that called :meth:`Relay.run` waits for the end. The end-of-file rules are
ncat's (7.96+), each a constructor argument:

=====================  ==================================================================
event                  what happens
=====================  ==================================================================
local EOF              ``remote.send_eof()`` (half-close) unless ``half_close=False``;
                       then quit after ``quit_after_local_eof`` seconds (``None``: never)
remote EOF             ``local.send_eof()``; then quit, unless ``keep_open``
local side closed      (stdout's reader went away) quit quietly: nobody is listening
idle timeout           no byte moved either way for ``idle_timeout`` s: IdleTimeout
remote error           raised from :meth:`Relay.run` after both pumps have stopped
=====================  ==================================================================

Threads: the pumps are named ``relay-out`` (local → remote) and ``relay-in``
(remote → local). The waiting thread sleeps on a Condition until a pump reports or
the idle deadline comes (no polling); ``quit_after_local_eof`` is a
:class:`threading.Timer`. Pumps wait with ``poll`` on their source and on a wake-up
pipe, so :meth:`Relay.stop` interrupts a pump blocked on a quiet source, and
:meth:`Relay.run` returns only after joining every thread it started.

Zero copy: when neither direction filters the data and both ends of a direction are
file descriptors, bytes move inside the kernel: ``os.sendfile`` from a regular file,
``os.splice`` otherwise (through an intermediate pipe when neither end is a pipe).
Anything the kernel refuses falls back to a plain copy loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
import threading
import time

from enchufe.errors import ConnectionLost, IdleTimeout, NetworkError
from enchufe.net.fdstream import FdStream
from enchufe.net.stream import DEFAULT_RECV_SIZE, SocketStream, Stream, translate_os_error

__all__ = ["Relay", "RelayResult"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    Filter = Callable[[bytes], bytes]

#: Bytes moved per splice/sendfile call: large enough that system calls are rare,
#: small enough that the idle timer and byte counters stay current.
_ZERO_COPY_CHUNK = 1 << 20
_FALLBACK_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE})


class RelayResult(tuple[int, int, str]):
    """What a finished relay did.

    Attributes:
        bytes_sent: bytes moved from the local side to the remote side.
        bytes_received: bytes read from the remote side.
        ending: why it ended: ``"remote-eof"``, ``"local-eof"`` (quit after local
            end of file), ``"both-eof"``, ``"local-closed"`` or ``"stopped"``.
    """

    __slots__ = ()

    def __new__(cls, bytes_sent: int, bytes_received: int, ending: str) -> RelayResult:
        return tuple.__new__(cls, (bytes_sent, bytes_received, ending))

    @property
    def bytes_sent(self) -> int:
        return self[0]

    @property
    def bytes_received(self) -> int:
        return self[1]

    @property
    def ending(self) -> str:
        return self[2]

    def __repr__(self) -> str:
        return f"RelayResult(bytes_sent={self[0]!r}, bytes_received={self[1]!r}, ending={self[2]!r})"


class _Stop(Exception):
    """Raised inside a pump when the relay is stopping."""


class Relay:
    """A bidirectional relay; see the module docstring for the rules.

    Args:
        local: the user's side (stdin/stdout).
        remote: the network side.
        send: read the local side and send it (``False``: ncat's ``--recv-only``).
        receive: write what the remote sends to the local side (``False``: ncat's
            ``--send-only``; the data is still read, then dropped).
        half_close: on local EOF, half-close the remote (``False``: ``--no-shutdown``).
        quit_after_local_eof: seconds to keep going after local EOF; ``None`` never
            quits because of it (ncat's ``-q``; UDP and ``--send-only`` use 0).
        keep_open: keep running after the remote's EOF (ncat's ``-k`` in connect mode).
        idle_timeout: end with :class:`IdleTimeout` after this many quiet seconds.
        delay: seconds to wait before each read (ncat's ``-d``).
        outbound: transforms each chunk going local → remote (``-C``, logging).
        inbound: transforms each chunk going remote → local (``-t``, logging).
    """

    def __init__(
        self,
        local: Stream,
        remote: Stream,
        *,
        send: bool = True,
        receive: bool = True,
        half_close: bool = True,
        quit_after_local_eof: float | None = None,
        keep_open: bool = False,
        idle_timeout: float | None = None,
        delay: float | None = None,
        outbound: Filter | None = None,
        inbound: Filter | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self._send = send
        self._receive = receive
        self._half_close = half_close
        self._quit_after_local_eof = quit_after_local_eof
        self._keep_open = keep_open
        self._idle_timeout = idle_timeout
        self._delay = delay
        self._outbound = outbound
        self._inbound = inbound
        self._zero_copy = outbound is None and inbound is None
        self.bytes_sent = 0
        self.bytes_received = 0
        self._last_activity = time.monotonic()
        self._changed = threading.Condition()
        self._ending: str | None = None
        self._error: BaseException | None = None
        self._local_eof = False
        self._remote_eof = False
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._quit_timer: threading.Timer | None = None
        #: The stream each pump is writing to right now (by pump name), so that stopping
        #: knows which blocked writes it must break.
        self._writing: dict[str, Stream] = {}

    def stop(self) -> None:
        """End the relay from another thread; :meth:`run` returns ``"stopped"``."""
        self._finish("stopped")

    def run(self) -> RelayResult:
        """Relay until one of the ending rules applies; then join the pumps and return.

        Raises:
            IdleTimeout: nothing moved for ``idle_timeout`` seconds.
            NetworkError: the remote side failed (reset, broken pipe, ...).
        """
        pumps = [threading.Thread(target=self._pump_in, name="relay-in", daemon=True)]
        if self._send:
            pumps.append(threading.Thread(target=self._pump_out, name="relay-out", daemon=True))
        try:
            for pump in pumps:
                pump.start()
            self._wait_for_end()
        except BaseException:
            # A signal or KeyboardInterrupt: the process is going away. A pump stuck
            # writing to a local reader that stopped reading would never be joined.
            self._stop_pumps([pump for pump in pumps if self._writing.get(pump.name) is not self.local])
            raise
        else:
            self._stop_pumps(pumps)
        if self._error is not None:
            raise self._error
        assert self._ending is not None
        return RelayResult(self.bytes_sent, self.bytes_received, self._ending)

    def _stop_pumps(self, pumps: list[threading.Thread]) -> None:
        """Stop the pumps and join them, with the quit timer; release the wake-up pipe."""
        self._finish("stopped")
        os.write(self._wake_write, b"x")  # wakes a pump waiting for its source
        if self._writing.get("relay-out") is self.remote:
            self._abort_remote()  # a peer that stopped reading would hold the pump forever
        for pump in pumps:
            if pump.ident is not None:
                pump.join()
        if self._quit_timer is not None:
            self._quit_timer.cancel()
            self._quit_timer.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _abort_remote(self) -> None:
        if isinstance(self.remote, SocketStream):
            with contextlib.suppress(OSError):
                self.remote.sock.shutdown(socket.SHUT_RDWR)

    # -- coordination ------------------------------------------------------------------

    def _wait_for_end(self) -> None:
        with self._changed:
            while self._ending is None:
                if self._idle_timeout is None:
                    self._changed.wait()
                    continue
                quiet = time.monotonic() - self._last_activity
                if quiet >= self._idle_timeout:
                    self._error = IdleTimeout(
                        f"Idle timeout expired ({round(self._idle_timeout * 1000)} ms)", timeout=self._idle_timeout
                    )
                    self._ending = "idle"
                    self._stopping.set()
                    return
                self._changed.wait(self._idle_timeout - quiet)

    def _finish(self, ending: str, error: BaseException | None = None) -> None:
        with self._changed:
            if self._ending is None:
                self._ending = ending
                self._error = error
                self._stopping.set()
            self._changed.notify_all()

    def _on_local_eof(self) -> None:
        if self._half_close:
            try:
                self.remote.send_eof()
            except NetworkError as exc:
                self._finish("error", exc)
                return
        with self._changed:
            self._local_eof = True
            both = self._remote_eof
        if both:
            self._finish("both-eof")
        elif self._quit_after_local_eof == 0:
            self._finish("local-eof")
        elif self._quit_after_local_eof is not None:
            self._quit_timer = threading.Timer(self._quit_after_local_eof, self._finish, ("local-eof",))
            self._quit_timer.name = "relay-quit-timer"
            self._quit_timer.daemon = True
            self._quit_timer.start()

    def _on_remote_eof(self) -> None:
        self._close_local_output()
        if not self._keep_open:
            self._finish("remote-eof")
            return
        with self._changed:
            self._remote_eof = True
            both = self._local_eof or not self._send
        if both:
            self._finish("both-eof")

    def _close_local_output(self) -> None:
        # A reader that already went away has been told what EOF would tell it.
        with contextlib.suppress(NetworkError):
            self.local.send_eof()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    # -- pumps -------------------------------------------------------------------------

    def _pump_out(self) -> None:
        self._run_pump(self.local, self.remote, self._outbound, inbound=False)

    def _pump_in(self) -> None:
        self._run_pump(self.remote, self.local, self._inbound, inbound=True)

    def _run_pump(self, source: Stream, sink: Stream, transform: Filter | None, *, inbound: bool) -> None:
        try:
            fds = _zero_copy_fds(source, sink) if self._zero_copy and (self._receive or not inbound) else None
            if fds is not None:
                self._zero_copy_loop(source, *fds, inbound=inbound)
            else:
                self._copy_loop(source, sink, transform, inbound=inbound)
        except _Stop:
            return
        except _LocalClosed:
            self._finish("local-closed")
            return
        except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
            self._finish("error", exc)
            return
        if inbound:
            self._on_remote_eof()
        else:
            self._on_local_eof()

    def _wait_readable(self, source: Stream) -> None:
        if self._delay is not None and self._stopping.wait(self._delay):
            raise _Stop
        poller = select.poll()
        poller.register(source.fileno(), select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_read or self._stopping.is_set():
                    raise _Stop
                return

    def _copy_loop(self, source: Stream, sink: Stream, transform: Filter | None, *, inbound: bool) -> None:
        while True:
            self._wait_readable(source)
            data = source.recv(DEFAULT_RECV_SIZE)
            if not data and source.is_datagram:
                self._touch()  # an empty datagram: traffic, but nothing to deliver
                continue
            if not data:
                return
            self._touch()
            self._count(len(data), inbound=inbound)
            if transform is not None:
                data = transform(data)
            if data and (self._receive or not inbound):
                self._deliver(sink, data, inbound=inbound)
                self._touch()

    def _deliver(self, sink: Stream, data: bytes, *, inbound: bool) -> None:
        with self._writes_to(sink):
            try:
                sink.send_all(data)
            except ConnectionLost:
                if inbound:
                    raise _LocalClosed from None
                raise

    @contextlib.contextmanager
    def _writes_to(self, sink: Stream) -> Iterator[None]:
        """Mark this pump as writing to ``sink``.

        A write to the remote is abandoned once the relay stops: the mark is set before
        the stop check and stopping sets its flag before reading the mark, so either
        this pump sees the stop, or the stopper sees the write and breaks it. A write
        to the local side always completes: what was received is written out.
        """
        name = threading.current_thread().name
        self._writing[name] = sink
        try:
            if sink is self.remote and self._stopping.is_set():
                raise _Stop
            yield
        finally:
            del self._writing[name]

    def _count(self, size: int, *, inbound: bool) -> None:
        if inbound:
            self.bytes_received += size
        else:
            self.bytes_sent += size

    def _zero_copy_loop(self, source: Stream, source_fd: int, sink_fd: int, *, inbound: bool) -> None:
        mode = os.fstat(source_fd).st_mode
        if stat.S_ISREG(mode):
            move: Callable[[], int] = lambda: os.sendfile(sink_fd, source_fd, None, _ZERO_COPY_CHUNK)  # noqa: E731
            self._move_loop(source, move, inbound=inbound)
        elif stat.S_ISFIFO(mode) or stat.S_ISFIFO(os.fstat(sink_fd).st_mode):
            self._move_loop(source, lambda: os.splice(source_fd, sink_fd, _ZERO_COPY_CHUNK), inbound=inbound)
        else:
            self._splice_through_pipe(source, source_fd, sink_fd, inbound=inbound)

    def _move_loop(self, source: Stream, move: Callable[[], int], *, inbound: bool) -> None:
        while True:
            self._wait_readable(source)
            try:
                with self._writes_to(self.local if inbound else self.remote):
                    moved = move()
            except _SinkRefusesSplice as refused:
                self._touch()
                self._count(refused.moved, inbound=inbound)
                return self._copy_instead(source, refused.stranded, inbound=inbound)
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS:  # a failed call moved nothing: copy instead
                    return self._copy_instead(source, b"", inbound=inbound)
                raise self._zero_copy_error(exc, inbound) from exc
            if not moved:
                return
            self._touch()
            self._count(moved, inbound=inbound)

    def _splice_through_pipe(self, source: Stream, source_fd: int, sink_fd: int, *, inbound: bool) -> None:
        pipe_read, pipe_write = os.pipe()

        def move() -> int:
            moved = os.splice(source_fd, pipe_write, _ZERO_COPY_CHUNK)
            pending = moved
            while pending:
                try:
                    pending -= os.splice(pipe_read, sink_fd, pending)
                except OSError as exc:
                    if exc.errno not in _FALLBACK_ERRNOS:
                        raise
                    raise _SinkRefusesSplice(moved, os.read(pipe_read, pending)) from exc
            return moved

        try:
            self._move_loop(source, move, inbound=inbound)
        finally:
            os.close(pipe_read)
            os.close(pipe_write)

    def _copy_instead(self, source: Stream, leftover: bytes, *, inbound: bool) -> None:
        sink = self.local if inbound else self.remote
        if leftover:
            self._deliver(sink, leftover, inbound=inbound)
        self._copy_loop(source, sink, None, inbound=inbound)

    @staticmethod
    def _zero_copy_error(exc: OSError, inbound: bool) -> BaseException:
        if inbound and exc.errno == errno.EPIPE:
            return _LocalClosed()
        return translate_os_error(exc, "send")


class _SinkRefusesSplice(Exception):
    """The sink cannot be spliced into (an O_APPEND file, say); ``stranded`` holds the
    bytes already moved into the relay's pipe, which must still be delivered."""

    def __init__(self, moved: int, stranded: bytes) -> None:
        super().__init__(moved)
        self.moved = moved
        self.stranded = stranded


class _LocalClosed(Exception):
    """The local side stopped accepting data (stdout's reader went away)."""


def _zero_copy_fds(source: Stream, sink: Stream) -> tuple[int, int] | None:
    source_fd = _read_fd(source)
    sink_fd = _write_fd(sink)
    if source_fd is None or sink_fd is None:
        return None
    return source_fd, sink_fd


def _read_fd(stream: Stream) -> int | None:
    if isinstance(stream, FdStream):
        return stream.read_fd
    if isinstance(stream, SocketStream) and stream.sock.type == socket.SOCK_STREAM:
        return stream.sock.fileno()
    return None


def _write_fd(stream: Stream) -> int | None:
    if isinstance(stream, FdStream):
        return stream.write_fd
    if isinstance(stream, SocketStream) and stream.sock.type == socket.SOCK_STREAM:
        return stream.sock.fileno()
    return None
