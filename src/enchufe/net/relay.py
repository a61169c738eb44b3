"""The relay: move bytes both ways between a local stream and a remote one.

The local side is what the user sees (stdin/stdout, later a child process); the
remote side is the network. Two pump threads move the data, one per direction, and
the thread that called :meth:`Relay.run` waits for the end.

**When it ends** is decided by :class:`enchufe.proto.eof.EndOfStream`: ncat's (7.96+)
rules with one change that keeps data from being lost — an end of stream ends only the
direction it closes (the table is in that module). This module carries out what the
rules say: half-close the remote, close the local output, drain (after the remote's end
of stream, send only what the local input has ready within ``drain_wait`` seconds), and
the quit timer of ``-q``. Besides those:

- **idle timeout**: no byte moved either way for ``idle_timeout`` s: :class:`IdleTimeout`;
- **errors**: a remote failure is raised from :meth:`Relay.run` after both pumps have
  stopped; a remote that refuses data after its own end of stream ends the relay
  quietly (it closed without reading); a reply that cannot be sent (``answer``) is
  dropped, and never costs what was received;
- :meth:`Relay.stop` from another thread.

Threads: the pumps are named ``relay-out`` (local → remote) and ``relay-in``
(remote → local). The waiting thread sleeps on a Condition until a pump reports or
the idle deadline comes (no polling); the quit timer is a :class:`threading.Timer`.
Pumps wait with ``poll`` on their source and on a wake-up pipe, so :meth:`Relay.stop`
interrupts a pump blocked on a quiet source, and :meth:`Relay.run` returns only after
joining every thread it started.

Zero copy: when neither direction filters the data and both ends of a direction are
file descriptors, bytes move inside the kernel: ``os.sendfile`` from a regular file,
``os.splice`` otherwise (through an intermediate pipe when neither end is a pipe).
Anything the kernel refuses falls back to a plain copy loop.

Datagrams: a datagram remote gets each local read of at most 8 KiB as one datagram
(ncat's read size), so a file or a pipe on stdin never makes a datagram larger than
the transport carries.
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

from enchufe.errors import ConnectionLost, EnchufeError, IdleTimeout, NetworkError, OutputFailed, TimedOut
from enchufe.net.fdstream import FdStream
from enchufe.net.stream import DATAGRAM_PAYLOAD_SIZE, DEFAULT_RECV_SIZE, SocketStream, Stream, translate_os_error
from enchufe.proto.eof import CLOSE_OUTPUT, DRAIN, QUIT_LATER, SEND_EOF, EndOfStream

__all__ = ["DEFAULT_DRAIN_WAIT", "Relay", "RelayResult"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    Filter = Callable[[bytes], bytes]

#: Bytes moved per splice/sendfile call: large enough that system calls are rare,
#: small enough that the idle timer and byte counters stay current.
_ZERO_COPY_CHUNK = 1 << 20
#: Bytes read from the local side per pass when they are copied to a byte stream: a
#: TLS remote encrypts each read in one piece and sends it in one call, so a pass
#: (poll, read, the TLS stream's locks, send) is paid four times less than at 64 KiB.
_COPY_SEND_SIZE = 256 * 1024
_FALLBACK_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE})
#: What a splice into the local output fails with when the output is at fault, not
#: the socket: a closed descriptor (reserved read-only), a full or failing disk.
_OUTPUT_ERRNOS = frozenset({errno.EBADF, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})
#: How long a refused send waits for the inbound pump to read what came before it.
_SETTLE_AFTER_REFUSAL = 1.0
#: After the remote's end of stream, how long the local input may stay silent before
#: the relay ends: enough for a pipe's writer to refill it, short enough that a client
#: whose stdin is an idle pipe ends at once as far as a person can tell.
DEFAULT_DRAIN_WAIT = 0.2


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


class _SendRefused(Exception):
    """The remote refused outbound data (reset, broken pipe); ``error`` says how."""

    def __init__(self, error: NetworkError) -> None:
        super().__init__(error)
        self.error = error


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
        keep_open: keep sending after the remote's EOF until the local input ends
            (ncat's ``-k`` in connect mode).
        idle_timeout: end with :class:`IdleTimeout` after this many quiet seconds.
        delay: seconds to wait before each read (ncat's ``-d``).
        drain_wait: after the remote's EOF, how long the local input may have given
            nothing (counting from its last data, even before that EOF) before the
            relay ends (0 for a terminal: a person typing is not
            "ready data"; ``None`` for a child process: all of its output, to its end).
        outbound: transforms each chunk going local → remote (``-C``, logging).
        inbound: transforms each chunk going remote → local (logging).
        answer: called with each chunk the remote sends, after it has been delivered;
            what it returns is sent back to the remote (``-t``'s Telnet refusals).
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
        drain_wait: float | None = DEFAULT_DRAIN_WAIT,
        outbound: Filter | None = None,
        inbound: Filter | None = None,
        answer: Filter | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self._send = send
        self._receive = receive
        self._rules = EndOfStream(
            sending=send, half_close=half_close, quit_after_local_eof=quit_after_local_eof, keep_open=keep_open
        )
        self._idle_timeout = idle_timeout
        self._delay = delay
        self._drain_wait = drain_wait
        self._outbound = outbound
        self._inbound = inbound
        self._answer = answer
        self._zero_copy = outbound is None and inbound is None and answer is None
        self._send_size = DATAGRAM_PAYLOAD_SIZE if remote.is_datagram else _COPY_SEND_SIZE
        self.bytes_sent = 0
        self.bytes_received = 0
        self._last_activity = time.monotonic()
        #: When the local input last gave data: draining counts its silence from there.
        self._last_input = self._last_activity
        self._changed = threading.Condition()
        self._ending: str | None = None
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._inbound_done = threading.Event()
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
            OutputFailed: the local side refused what the remote sent (a full disk).
            NetworkError: the remote side failed (reset, broken pipe, ...), or the
                local input failed in a way the system reports as an error.
        """
        pumps = [threading.Thread(target=self._run_pump, args=(True,), name="relay-in", daemon=True)]
        if self._send:
            pumps.append(threading.Thread(target=self._run_pump, args=(False,), name="relay-out", daemon=True))
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
        if self.remote in self._writing.values():
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
        with contextlib.suppress(OSError):
            self.remote.abort()

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

    def _apply(self, event: Callable[[], tuple[str, ...]]) -> None:
        """Feed one end-of-stream event to the rules and carry out what they say."""
        with self._changed:
            actions = event()
            ending = self._rules.ending
        for action in actions:
            if action == SEND_EOF:
                self.remote.send_eof()
            elif action == CLOSE_OUTPUT:
                # A reader that already went away has been told what EOF would tell it.
                with contextlib.suppress(NetworkError):
                    self.local.send_eof()
            elif action == DRAIN:
                os.write(self._wake_write, b"d")  # the outbound pump waits again, now bounded
            elif action == QUIT_LATER:
                assert self._rules.quit_after_local_eof is not None
                self._quit_timer = threading.Timer(
                    self._rules.quit_after_local_eof, self._apply, (self._rules.quit_timer,)
                )
                self._quit_timer.name = "relay-quit-timer"
                self._quit_timer.daemon = True
                self._quit_timer.start()
        if ending is not None:
            self._finish(ending)

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    # -- pumps -------------------------------------------------------------------------

    def _run_pump(self, inbound: bool) -> None:
        """One direction, start to end; whatever ends it is reported to :meth:`run`."""
        try:
            self._run_direction(inbound)
        finally:
            if inbound:
                self._inbound_done.set()

    def _run_direction(self, inbound: bool) -> None:
        try:
            self._pump(inbound)
            self._apply(self._rules.remote_eof if inbound else self._rules.local_eof)
        except _Stop:
            pass
        except _LocalClosed:
            self._apply(self._rules.local_closed)
        except _SendRefused as refused:
            # A peer that closed sends its end of stream before it refuses data, but the
            # inbound pump may not have read it yet: let it, and the rules tell which
            # came first. (A reset socket still reports the end of stream it had.)
            self._inbound_done.wait(_SETTLE_AFTER_REFUSAL)
            with self._changed:
                quietly = self._rules.send_refused()
            if quietly:
                assert self._rules.ending is not None
                self._finish(self._rules.ending)
            else:
                self._finish("error", refused.error)
        except EnchufeError as exc:
            self._finish("error", exc)
        except OSError as exc:  # a local descriptor failing in a way no stream translated
            self._finish("error", translate_os_error(exc, "recv" if inbound else "send"))
        except BaseException as exc:  # noqa: BLE001 - handed to run(), which re-raises it
            self._finish("error", exc)

    def _pump(self, inbound: bool) -> None:
        source, sink = (self.remote, self.local) if inbound else (self.local, self.remote)
        if self._zero_copy and (self._receive or not inbound):
            fds = _zero_copy_fds(source, sink)
            if fds is not None:
                return self._zero_copy_loop(source, *fds, inbound=inbound)
        return self._copy_loop(source, sink, self._inbound if inbound else self._outbound, inbound=inbound)

    def _wait_readable(self, source: Stream, *, inbound: bool) -> None:
        """Return once ``source`` has data or its end of stream.

        Raises _Stop when the relay stops, and, on the outbound side while draining,
        when the input has nothing ready within ``drain_wait`` (that ends the relay).
        """
        if self._delay is not None and self._stopping.wait(self._delay):
            raise _Stop
        if source.pending():
            return  # TLS has records of it already: the descriptor may never show them
        source_fd = source.fileno()
        poller = select.poll()
        poller.register(source_fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            timeout = None
            if not inbound and self._rules.draining and self._drain_wait is not None:
                # Silence before the remote's end of stream counts too: an input quiet
                # for drain_wait already (an idle pipe) has nothing ready, and the relay
                # ends at once.
                timeout = max(0.0, self._last_input + self._drain_wait - time.monotonic()) * 1000
            events = poller.poll(timeout)
            if self._stopping.is_set():
                raise _Stop
            if not events:
                self._apply(self._rules.input_idle)
                raise _Stop
            if any(fd == source_fd for fd, _ in events):
                return
            # Only the DRAIN notice reaches here (a stop was seen above): consume it.
            os.read(self._wake_read, 64)

    def _copy_loop(self, source: Stream, sink: Stream, transform: Filter | None, *, inbound: bool) -> None:
        size = DEFAULT_RECV_SIZE if inbound else self._send_size
        while True:
            self._wait_readable(source, inbound=inbound)
            try:
                # Without waiting: a readable descriptor may hold only part of a TLS
                # record, and a pump must never block where stop() cannot reach it.
                data = source.recv(size, timeout=0)
            except TimedOut:
                continue
            if not data and source.is_datagram:
                self._touch()  # an empty datagram: traffic, but nothing to deliver
                continue
            if not data:
                return
            self._touch()
            self._count(len(data), inbound=inbound)
            received = data
            if transform is not None:
                data = transform(data)
            if data and (self._receive or not inbound):
                self._deliver(sink, data, inbound=inbound)
                self._touch()
            if inbound and self._answer is not None:
                self._send_answer(self._answer(received))

    def _send_answer(self, reply: bytes) -> None:
        """Send a reply to what the remote said, after what it said was delivered.

        Once the outbound direction is closed there is nobody to answer, and a reply
        that cannot be sent is dropped: it must never cost the session.
        """
        if not reply or (self._rules.local_ended and self._rules.half_close):
            return
        with contextlib.suppress(NetworkError), self._writes_to(self.remote):
            self.remote.send_all(reply)

    def _deliver(self, sink: Stream, data: bytes, *, inbound: bool) -> None:
        with self._writes_to(sink):
            try:
                sink.send_all(data)
            except ConnectionLost as exc:
                if inbound:
                    raise _LocalClosed from None
                raise _SendRefused(exc) from None
            except NetworkError as exc:
                if inbound:
                    raise OutputFailed(str(exc), errno=exc.errno) from exc
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
            self._last_input = time.monotonic()

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
            self._wait_readable(source, inbound=inbound)
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
        try:
            pipe_read, pipe_write = os.pipe()
        except OSError:  # out of descriptors: copying needs none
            return self._copy_instead(source, b"", inbound=inbound)

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
        if inbound and exc.errno in _OUTPUT_ERRNOS:
            return OutputFailed(exc.strerror or str(exc), errno=exc.errno)
        error = translate_os_error(exc, "send")
        if not inbound and isinstance(error, ConnectionLost):
            return _SendRefused(error)
        return error


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
