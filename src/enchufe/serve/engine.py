"""The threaded server: accept connections and run a plain function for each in its own thread.

A handler is any ``handler(conn)`` callable that blocks as long as it likes: reading,
writing, sleeping. The engine owns everything around it:

- **Accepting.** One acceptor thread waits on every listener and on a wake-up
  socket pair at once (``selectors``), so :meth:`Server.shutdown` takes effect
  immediately, with no polling interval. Out of descriptors, memory or threads,
  it pauses briefly and goes on: a connection it cannot accept waits in the
  kernel's queue, one it cannot start a thread for is closed and reported.
- **Threads.** Each connection gets a thread named ``conn-<peer>``. Finished
  threads are forgotten at once (no bookkeeping grows with the number of
  connections served); :meth:`Server.threads` and :meth:`Server.connections`
  report the live ones.
- **Errors.** An ``Exception`` escaping a handler goes to ``on_error`` (default:
  a traceback on stderr) and the connection is closed; the server keeps serving.
  A ``BaseException`` is not swallowed.
- **Closing.** :meth:`Server.close` stops accepting, gives running handlers
  ``grace`` seconds to finish, then shuts their sockets down so that blocked
  reads return end of file, and joins every thread it started, for ``timeout``
  seconds at most: a thread still running then is named in a ``RuntimeWarning``.
  It works from any thread, a handler included.

Policies are constructor arguments and apply before a handler thread starts: a
connection limit (``max_connections``) and access control (``access``), the same as
:class:`~enchufe.serve.pool.RequestServer`'s (:mod:`enchufe.serve.policy` holds what
both do).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence

from enchufe.address import Address, parse_address
from enchufe.errors import NetworkError
from enchufe.net.acceptor import ACCEPT_BACKOFF, OUT_OF_RESOURCES
from enchufe.net.connection import Connection
from enchufe.net.listen import Listener, close_all, open_listeners
from enchufe.serve.policy import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    Access,
    ErrorHook,
    HandlerThreads,
    ProxyProtocol,
    RefusalHook,
    ServerPolicies,
    TlsFailureHook,
    handshake_first,
    join_until,
    print_error,
    proxy_header_first,
    shut_down,
    warn_left_running,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

    from enchufe.net.sockets import Transport

__all__ = ["Handler", "Server", "serve"]

Handler = Callable[[Connection], None]


class Server(ServerPolicies):
    """Serve connections arriving on ``listeners`` with ``handler``.

    Args:
        listeners: stream listeners from :func:`enchufe.net.listen.open_listeners`;
            the server owns and closes them.
        handler: called as ``handler(conn)`` in a new thread for each connection;
            the connection is closed when it returns.
        on_error: called with the connection and the exception when a handler
            raises an ``Exception`` (in the handler's thread), or with the
            ``RuntimeError`` when no thread could be started for a connection (in
            the acceptor's thread; the connection is closed unserved afterwards).
        name: prefix of the acceptor thread's name.
        max_connections: connections handled at once; one more is closed before any
            thread starts for it, with ``on_refused`` told ``"connection limit
            reached (N)"``.
        access: ``access(peer)`` False refuses the peer the same way (``"not allowed"``),
            e.g. :meth:`enchufe.acl.AccessList.permits` on its host.
        on_refused: ``on_refused(peer, reason)`` after a refused connection is closed.
        daemon_threads: handler threads do not keep the process alive (socketserver's
            option): a handler still running when the program exits is abandoned.
        tls: a server ``ssl.SSLContext``
            (:func:`enchufe.net.tls.server_context`): each connection's TLS handshake
            runs in its own thread, and the handler gets the TLS connection.
        handshake_timeout: seconds a client has for its handshake, and a balancer for
            its PROXY header (each).
        on_tls_failed: ``on_tls_failed(peer, error)`` for a handshake that failed or
            ran out of time (``TlsError``, ``TimedOut``); the handler never sees that
            client. By default nothing is said: it is the client's doing.
        proxy_protocol: behind a load balancer, a :class:`~enchufe.serve.policy.ProxyProtocol`:
            each trusted balancer's PROXY header is read in the connection's thread
            before TLS and the handler, ``conn.peer`` is the client it names
            (``conn.proxied_by`` the balancer), and ``access`` judges that client. A
            bad, late or missing header, an untrusted peer (unless ``optional``) or a
            client ``access`` refuses: the connection is closed and ``on_refused`` told
            why, in that thread.

    Use it as a context manager, or call :meth:`start` / :meth:`serve_forever` and
    later :meth:`close`. A server runs once: it cannot start again after
    :meth:`close`.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        handler: Handler,
        *,
        on_error: ErrorHook = print_error,
        name: str = "enchufe",
        max_connections: int | None = None,
        access: Access | None = None,
        on_refused: RefusalHook | None = None,
        daemon_threads: bool = False,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        on_tls_failed: TlsFailureHook | None = None,
        proxy_protocol: ProxyProtocol | None = None,
    ) -> None:
        super().__init__(
            listeners,
            on_error=on_error,
            name=name,
            max_connections=max_connections,
            access=access,
            on_refused=on_refused,
            proxy_protocol=proxy_protocol,
        )
        self.handler = handler
        self._lock = threading.Lock()
        if tls is not None:
            handler = handshake_first(handler, tls, timeout=handshake_timeout, on_failed=on_tls_failed)
        if proxy_protocol is not None:  # outermost: the header comes before the TLS handshake
            handler = proxy_header_first(
                handler, proxy_protocol, timeout=handshake_timeout, access=access, on_refused=on_refused
            )
        self._handlers = HandlerThreads(handler, on_error, daemon=daemon_threads)
        self._stopping = threading.Event()
        #: Set when the accept loop has ended, in whichever thread ran it.
        self._stopped = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        # Never block on the wake-up: a full socket pair already wakes the acceptor.
        self._wake_write.setblocking(False)
        self._started = False
        #: The thread start() created; close() joins it.
        self._acceptor: threading.Thread | None = None
        #: The thread that called serve_forever(); close() waits for its loop to end.
        self._caller: threading.Thread | None = None
        self._closed = False

    def threads(self) -> list[threading.Thread]:
        """The handler threads running now."""
        return self._handlers.threads()

    def connections(self) -> list[Connection]:
        """The connections being handled now."""
        return self._handlers.connections()

    # -- running -----------------------------------------------------------------------

    def start(self) -> Server:
        """Accept in a background thread and return at once.

        Raises:
            RuntimeError: the server already runs or was closed, or no thread can be
                started.
            OSError: no descriptor or memory for the selector the loop waits on.
        """
        selector = self._claim()
        where = ",".join(str(address) for address in self.addresses)
        thread = threading.Thread(target=self._serve, args=(selector,), name=f"{self.name}-accept-{where}")
        try:
            thread.start()
        except BaseException:
            selector.close()
            with self._lock:
                self._started = False
            raise
        self._acceptor = thread
        return self

    def serve_forever(self) -> None:
        """Accept connections in this thread until :meth:`shutdown` or :meth:`close`.

        An exception raised in this thread, such as ``KeyboardInterrupt`` on Ctrl-C,
        ends it too; leaving the server's ``with`` block then closes everything.

        Raises:
            RuntimeError: the server already runs or was closed.
            OSError: no descriptor or memory for the selector the loop waits on.
        """
        selector = self._claim()
        self._caller = threading.current_thread()
        self._serve(selector)

    def shutdown(self) -> None:
        """Stop accepting new connections; running handlers continue. Thread-safe.

        Returns once the accept loop has ended (the thread :meth:`start` made is
        gone), so a peer that connects afterwards is never accepted: it waits in the
        kernel's queue until :meth:`close` closes the listeners. Called in the accept
        loop's own thread (by ``on_error``, or a signal handler during
        :meth:`serve_forever`), it returns at once and the loop ends when the caller
        returns to it.
        """
        self._stop_accepting(None)

    def close(self, *, grace: float = 0.0, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stop accepting, let handlers finish for ``grace`` seconds, then end the rest.

        Connections still open after the grace period are shut down (their reads
        return end of file, their writes fail), and every thread the server started
        is joined, waiting ``timeout`` more seconds at most (default
        :data:`DEFAULT_CLOSE_TIMEOUT`, 5 s; ``None`` waits as long as it takes). A
        handler that ignores its connection (blocked on an ``Event``, say) can outlive
        that: then close() returns anyway and emits a ``RuntimeWarning`` naming the
        threads still running; :meth:`threads` lists those that are handlers.

        Any thread may call it, any number of times, a handler included: each call
        returns once everything is closed and every thread but the caller's own is
        joined (or the deadline passed). A handler that calls it finds its own
        connection shut down too, and its thread ends when it returns.
        """
        grace_end = time.monotonic() + grace
        deadline = None if timeout is None else grace_end + timeout
        with self._lock:
            self._closed = True
        self._stop_accepting(deadline)
        close_all(self.listeners)
        for thread in self.threads():
            join_until(thread, grace_end)
        for conn in self.connections():
            shut_down(conn)
        # Finishing threads are past the handler but still alive: join them too, or
        # close() would return while they still run.
        threads = self._handlers.every_thread()
        for thread in threads:
            join_until(thread, deadline)
        self._wake_read.close()
        self._wake_write.close()
        warn_left_running("Server", [self._acceptor, *threads], timeout)

    # -- internals ---------------------------------------------------------------------

    def _claim(self) -> selectors.BaseSelector:
        """Return the selector of the one accept loop, or raise why it cannot run.

        The selector is made here, in the caller's thread, so that running out of
        descriptors raises to the caller instead of ending the loop's thread unseen.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("server is closed: a closed server cannot start again")
            if self._started:
                raise RuntimeError("server already started")
            selector = selectors.DefaultSelector()
            try:
                selector.register(self._wake_read, selectors.EVENT_READ)
                for listener in self.listeners:
                    selector.register(listener.sock, selectors.EVENT_READ, listener)
            except BaseException:
                selector.close()
                raise
            self._started = True
        return selector

    def _serve(self, selector: selectors.BaseSelector) -> None:
        try:
            with selector:
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        if key.data is not None and not self._stopping.is_set():
                            self._accept(key.data)
        finally:
            self._stopped.set()

    def _stop_accepting(self, deadline: float | None) -> None:
        """Wake the accept loop and wait until ``deadline`` for it to end: for start()'s
        thread to be gone, or for serve_forever() to return to its caller."""
        self._stopping.set()
        with contextlib.suppress(OSError):  # already closed, or full: either way it wakes
            self._wake_write.send(b"x")
        if self._acceptor is not None:
            join_until(self._acceptor, deadline)
        elif self._caller is not None and self._caller is not threading.current_thread():
            self._stopped.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _accept(self, listener: Listener) -> None:
        try:
            conn = listener.accept()
        except NetworkError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                # The connection stays queued and the listener stays readable: without
                # a pause the loop would spin. Wait for resources (or for shutdown).
                self._stopping.wait(ACCEPT_BACKOFF)
            return  # otherwise the peer gave up between the wake-up and accept()
        reason = self._refusal(conn.peer, len(self._handlers))
        if reason is not None:
            conn.close()
            if self.on_refused is not None:
                self.on_refused(conn.peer, reason)
            return
        if not self._handlers.start(conn):
            self._stopping.wait(ACCEPT_BACKOFF)  # as for EMFILE: the next would meet the same limit


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
    try:
        server.start()
        if ready is not None:
            ready(server)
        stop.wait()
    finally:
        server.close(grace=grace)
