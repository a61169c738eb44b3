"""The threaded server: accept connections and run a plain function for each in its own thread.

A handler is any ``handler(conn)`` callable that blocks as long as it likes: reading,
writing, sleeping. The engine owns everything around it:

- **Accepting.** One acceptor thread waits on every listener and on a wake-up
  socket pair at once (``selectors``), so :meth:`Server.shutdown` takes effect
  immediately, with no polling interval.
- **Threads.** Each connection gets a thread named ``conn-<peer>``. Finished
  threads are forgotten at once (no bookkeeping grows with the number of
  connections served); :meth:`Server.threads` and :meth:`Server.connections`
  report the live ones.
- **Errors.** An ``Exception`` escaping a handler goes to ``on_error`` (default:
  a traceback on stderr) and the connection is closed; the server keeps serving.
  A ``BaseException`` is not swallowed.
- **Closing.** :meth:`Server.close` stops accepting, gives running handlers
  ``grace`` seconds to finish, then shuts their sockets down so that blocked
  reads return end of file, and joins every thread it started.

Policies for many clients (connection limits, access control, idle timeouts) are
constructor arguments, so they apply before a handler thread is started.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from enchufe.address import Address, parse_address
from enchufe.errors import NetworkError
from enchufe.net.connection import Connection
from enchufe.net.listen import Listener, close_all, open_listeners
from enchufe.net.stream import SocketStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.net.sockets import Transport

__all__ = ["Handler", "Server", "serve"]

Handler = Callable[[Connection], None]

#: accept() errors that mean "no descriptors or memory now", and the pause after one.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF = 0.1
ErrorHook = Callable[[Connection, Exception], None]


def _print_error(conn: Connection, exc: Exception) -> None:
    import traceback

    print(f"enchufe: handler for {conn.peer} raised:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


class Server:
    """Serve connections arriving on ``listeners`` with ``handler``.

    Args:
        listeners: stream listeners from :func:`enchufe.net.listen.open_listeners`;
            the server owns and closes them.
        handler: called as ``handler(conn)`` in a new thread for each connection;
            the connection is closed when it returns.
        on_error: called with the connection and the exception when a handler
            raises an ``Exception``.
        name: prefix of the acceptor thread's name.

    Use it as a context manager, or call :meth:`start` / :meth:`serve_forever` and
    later :meth:`close`.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        handler: Handler,
        *,
        on_error: ErrorHook = _print_error,
        name: str = "enchufe",
    ) -> None:
        if any(listener.is_datagram for listener in listeners):
            raise ValueError("Server serves stream listeners; datagram peers need a datagram server")
        self.listeners = list(listeners)
        self.handler = handler
        self.on_error = on_error
        self.name = name
        self._lock = threading.Lock()
        self._active: dict[threading.Thread, Connection] = {}
        #: Handler threads past their last line, not yet gone: close() joins them too.
        #: Pruned at each accept, so it never holds more than the threads of a moment.
        self._finishing: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self._closed = False

    @property
    def addresses(self) -> list[Address]:
        """Where the server listens (with the real port when it was 0)."""
        return [listener.address for listener in self.listeners]

    def threads(self) -> list[threading.Thread]:
        """The handler threads running now."""
        with self._lock:
            return list(self._active)

    def connections(self) -> list[Connection]:
        """The connections being handled now."""
        with self._lock:
            return list(self._active.values())

    # -- running -----------------------------------------------------------------------

    def start(self) -> Server:
        """Accept in a background thread and return at once."""
        if self._acceptor is not None:
            raise RuntimeError("server already started")
        where = ",".join(str(address) for address in self.addresses)
        self._acceptor = threading.Thread(target=self.serve_forever, name=f"{self.name}-accept-{where}")
        self._acceptor.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections in this thread until :meth:`shutdown` is called."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._wake_read, selectors.EVENT_READ)
                for listener in self.listeners:
                    selector.register(listener.sock, selectors.EVENT_READ, listener)
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        if key.data is not None and not self._stopping.is_set():
                            self._accept(key.data)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop accepting new connections; running handlers continue. Thread-safe."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def close(self, *, grace: float = 0.0) -> None:
        """Stop accepting, let handlers finish for ``grace`` seconds, then end the rest.

        Connections still open after the grace period are shut down (their reads
        return end of file, their writes fail), and every handler thread is joined.
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        if self._acceptor is not None:
            self._acceptor.join()
        close_all(self.listeners)
        deadline = time.monotonic() + grace
        for thread in self.threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn in self.connections():
            if isinstance(conn.stream, SocketStream):
                with contextlib.suppress(OSError):
                    conn.stream.sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads():
            thread.join()
        with self._lock:
            finishing = list(self._finishing)
        for thread in finishing:
            thread.join()
        self._wake_read.close()
        self._wake_write.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _accept(self, listener: Listener) -> None:
        try:
            conn = listener.accept()
        except NetworkError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                # The connection stays queued and the listener stays readable: without
                # a pause the loop would spin. Wait for resources (or for shutdown).
                self._stopping.wait(_ACCEPT_BACKOFF)
            return  # otherwise the peer gave up between the wake-up and accept()
        thread = threading.Thread(target=self._handle, args=(conn,), name=f"conn-{conn.peer}")
        with self._lock:
            self._active[thread] = conn
            self._finishing = {finishing for finishing in self._finishing if finishing.is_alive()}
        thread.start()

    def _handle(self, conn: Connection) -> None:
        try:
            self.handler(conn)
        except Exception as exc:  # noqa: BLE001 - reported through the hook; the server goes on
            self.on_error(conn, exc)
        finally:
            conn.close()
            with self._lock:
                self._active.pop(threading.current_thread(), None)
                self._finishing.add(threading.current_thread())


def serve(
    address: Address | str | None,
    handler: Handler,
    *,
    port: int = 0,
    transport: Transport = "stream",
    stop: threading.Event,
    ready: Callable[[Server], None] | None = None,
    grace: float = 0.0,
) -> None:
    """Serve ``handler`` on ``address`` until ``stop`` is set, then close cleanly.

    Args:
        address: where to listen (an address, its text form, or ``None`` for every
            local address on ``port``).
        handler: run as ``handler(conn)`` in a thread per connection.
        port: the port when ``address`` is ``None``.
        transport: ``"stream"`` or ``"sctp"``.
        stop: set it (from any thread, or a signal handler) to stop the server.
        ready: called with the running server once it accepts connections, e.g. to
            learn the port it got.
        grace: seconds handlers get to finish after ``stop`` before their
            connections are shut down.
    """
    target = parse_address(address) if isinstance(address, str) else address
    listeners = open_listeners(target, port=port, transport=transport)
    try:
        server = Server(listeners, handler)
    except BaseException:
        close_all(listeners)
        raise
    with server:
        server.start()
        if ready is not None:
            ready(server)
        stop.wait()
        server.close(grace=grace)
