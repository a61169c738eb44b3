"""The request server: blocking handlers for one request at a time, and no thread per idle connection.

A :class:`RequestServer` splits the work between one loop thread and a pool of workers
that wait for requests themselves (the leader/follower shape, on one ``epoll``):

- **The loop** (one thread, ``<name>-loop-<addresses>``): an
  :class:`~enchufe.net.loop.EventLoop` accepts through an
  :class:`~enchufe.net.acceptor.Acceptor`, admits, and runs the idle timers. It hands
  every new connection to the workers' poller and never touches it again but to close
  it for idleness or at the end.
- **The workers** (``workers`` threads, ``worker-1`` ... ``worker-N``) wait together on
  one ``epoll`` where every connection between requests is *parked*, registered
  one-shot (``EPOLLONESHOT``): nothing else of it is alive but a few small objects, and
  no thread waits for an idle client. When a parked connection becomes readable, one
  free worker (one only: the registration is one-shot) calls ``handler(conn)``. The
  handler is ordinary blocking code: it reads one request from ``conn`` (its first
  bytes have arrived), writes the reply, and returns. The worker re-arms the
  registration and waits for the next ready connection, any connection's.

  A request costs its handler's calls plus one ``epoll_wait`` and one ``epoll_ctl``,
  with no hand-off between threads: no queue, no wake-up of the loop, no removing and
  re-adding the socket.

What a handler does with ``conn``:

- **returns**: the connection is parked until the client sends again (or, if the
  client already sent more than the handler read, a pipelined request, the same worker
  serves that at once: bytes already read cannot wake the poller);
- **calls** ``conn.close()``: the connection ends;
- **raises** an ``Exception``: ``on_error(conn, exc)`` is told (default: a traceback on
  stderr), the connection is closed, and the server goes on. A client that resets in
  the middle of a request is such an error (``ConnectionLost``); one that closes or
  resets *between* requests is not: its connection is closed without a word.

Policies, the same arguments as :class:`~enchufe.serve.engine.Server`'s (and the same
code, :mod:`enchufe.serve.policy`):

- **Busy pool: backpressure, never an unbounded queue.** At most ``workers``
  connections are served at once. A connection that becomes readable while every
  worker is busy waits in the poller's ready list, in arrival order, and is not read:
  its bytes stay in the kernel, whose buffers fill and make the client wait (TCP flow
  control). The line holds connections, never data, at most one entry per
  connection, so it is bounded by ``max_connections``.
- **Admission** before anything else: ``access`` and ``max_connections`` (parked,
  waiting and in-flight connections all count), with ``on_refused`` told why.
- **Behind a balancer** (``proxy_protocol``): an untrusted peer is refused at once;
  a trusted one is parked like any other, and the worker its first bytes wake reads
  its PROXY header (``handshake_timeout`` for the rest of it) before the first
  request, then ``access`` judges the client it names. A client that sends nothing
  holds no thread: the idle timeout closes it.
- **Idle timeout**: a connection parked for ``idle_timeout`` seconds with nothing sent
  is closed by the loop (a worker only notes when each request ends; the loop's timer
  looks again when the connection could be idle that long). One waiting in line for
  a busy pool is not idle. The same number is each connection's
  default deadline (:attr:`Connection.timeout`), so a handler's read also gives up on
  a client that stalls mid-request.
- **Closing**: :meth:`RequestServer.close` stops accepting and closes every idle
  connection at once, gives requests in progress ``grace`` seconds, then shuts their
  connections down (blocked reads return end of file), and joins every thread for
  ``timeout`` more seconds at most, naming the threads still running in a
  ``RuntimeWarning``. Every descriptor it opened is closed when it returns (the
  poller, once the last worker has left it: a handler still running past the
  deadline keeps it until it returns).

``RequestServer`` needs ``select.epoll`` (Linux).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Sequence

from enchufe.address import Address
from enchufe.errors import NetworkError
from enchufe.net.acceptor import Acceptor
from enchufe.net.connection import Connection
from enchufe.net.listen import Listener, close_all
from enchufe.net.loop import EventLoop
from enchufe.net.stream import SocketStream, address_from_sockaddr
from enchufe.serve.policy import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    Access,
    ErrorHook,
    ProxyProtocol,
    RefusalHook,
    ServerPolicies,
    introduce,
    join_until,
    print_error,
    shut_down,
    warn_left_running,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


__all__ = ["DEFAULT_WORKERS", "RequestHandler", "RequestServer"]

#: Worker threads unless told otherwise: requests in progress at once.
DEFAULT_WORKERS = 8

RequestHandler = Callable[[Connection], None]

#: A connection waiting for its next request: one readiness, one worker.
_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class RequestServer(ServerPolicies):
    """Serve each request of each connection on ``listeners`` with ``handler`` in a
    bounded pool of worker threads; see the module docstring.

    Args:
        listeners: stream listeners from :func:`enchufe.net.listen.open_listeners`; the
            server owns and closes them.
        handler: called as ``handler(conn)`` in a worker thread each time ``conn`` has
            data; serves one request and returns (or closes ``conn`` to end it).
        workers: worker threads, so the most requests handled at once.
        idle_timeout: seconds a connection may wait between requests before it is
            closed, and its reads' default deadline; ``None``: no limit.
        on_error: called as ``on_error(conn, exc)`` in the worker's thread when the
            handler raises an ``Exception``; the connection is closed afterwards.
        name: prefix of the loop thread's name.
        max_connections: connections open at once, idle ones included; one more is
            closed at once with ``on_refused`` told ``"connection limit reached (N)"``.
        access: ``access(peer)`` False refuses the peer the same way (``"not allowed"``).
        on_refused: ``on_refused(peer, reason)`` after a refused connection is closed,
            in the loop's thread (in a worker's, for a refusal that needed the PROXY
            header).
        proxy_protocol: behind a load balancer, a
            :class:`~enchufe.serve.policy.ProxyProtocol`, as
            :class:`~enchufe.serve.engine.Server` takes it: ``conn.peer`` is the client
            the header names, ``conn.proxied_by`` the balancer.
        handshake_timeout: seconds a balancer has to finish its PROXY header once its
            first bytes have arrived.

    Use it as a context manager, or call :meth:`start` / :meth:`serve_forever` and
    later :meth:`close`. It runs once.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        handler: RequestHandler,
        *,
        workers: int = DEFAULT_WORKERS,
        idle_timeout: float | None = None,
        on_error: ErrorHook = print_error,
        name: str = "enchufe",
        max_connections: int | None = None,
        access: Access | None = None,
        on_refused: RefusalHook | None = None,
        proxy_protocol: ProxyProtocol | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
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
        self.workers = workers
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self._loop = EventLoop()
        self._acceptor = Acceptor(
            self._loop, self.listeners, on_accept=self._accepted, admit=self._admit, on_refused=on_refused
        )
        # The workers' own wait: every connection between requests is registered here
        # one-shot (EPOLLONESHOT), so each readiness goes to one worker and the
        # connection is off the poller until that worker re-arms it.
        self._poller = select.epoll()
        # Readable (for every worker at once: it is not one-shot) once the workers must end.
        self._stop_read, self._stop_write = os.pipe()
        self._poller.register(self._stop_read, select.EPOLLIN)
        # -- shared, under the condition's lock
        self._condition = threading.Condition()
        #: Every open connection (parked, ready or in flight) and its descriptor, both ways:
        #: a handler may close its connection, and the poller knows descriptors only.
        self._connections: dict[Connection, int] = {}
        self._by_fd: dict[int, Connection] = {}
        self._in_flight: dict[Connection, threading.Thread] = {}
        #: When each connection's last request ended (only with an idle timeout).
        self._idle_since: dict[Connection, float] = {}
        #: Connections whose PROXY header (or its absence) is still to be seen.
        self._unintroduced: set[Connection] = set()
        self._workers_left = 0
        self._started = False
        self._closing = False
        #: Set once the first close() has released everything.
        self._closed = threading.Event()
        self._loop_running = False
        self._loop_thread: threading.Thread | None = None
        self._worker_threads: list[threading.Thread] = []

    def connections(self) -> list[Connection]:
        """Every open connection: idle, waiting for a worker, or being served."""
        with self._condition:
            return list(self._connections)

    # -- running -----------------------------------------------------------------------

    def start(self) -> RequestServer:
        """Run the loop in a background thread and return at once.

        Raises:
            RuntimeError: the server already runs or was closed, or a thread cannot start.
        """
        where = ",".join(str(address) for address in self.addresses)
        thread = threading.Thread(target=self._run_loop, name=f"{self.name}-loop-{where}")
        self._claim()
        try:
            thread.start()
        except BaseException:
            with self._condition:
                self._loop_running = False
            raise
        self._loop_thread = thread
        return self

    def serve_forever(self) -> None:
        """Run the loop in this thread until :meth:`close` (or an exception such as
        ``KeyboardInterrupt``; leaving the ``with`` block then closes everything).

        Raises:
            RuntimeError: the server already runs or was closed, or a thread cannot start.
        """
        self._claim()
        self._run_loop()

    def shutdown(self) -> None:
        """Stop accepting; connections already open go on being served. Thread-safe.

        The listeners stay open until :meth:`close`: new peers wait in the kernel's queue.
        """
        with self._condition:
            if self._closing:
                return
        self._on_loop(self._acceptor.stop, None)

    def close(self, *, grace: float = 0.0, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stop accepting, close idle connections, let requests in progress finish for
        ``grace`` seconds, shut down the rest, and join every thread.

        Threads are joined for ``timeout`` more seconds at most (``None``: as long as it
        takes); a handler that ignores its shut-down connection can outlive that, and is
        then named in a ``RuntimeWarning``. Any thread may call it, any number of times,
        a handler included (its own connection is shut down too, and its worker ends
        when it returns); not a callback running on the loop, such as ``on_refused``.

        Raises:
            RuntimeError: called from the loop's own thread.
        """
        if self._loop.in_loop_thread():
            raise RuntimeError("RequestServer.close() from the loop's own thread (a callback such as on_refused)")
        grace_end = time.monotonic() + grace
        deadline = None if timeout is None else grace_end + timeout
        me = threading.current_thread()
        with self._condition:
            first, self._closing = not self._closing, True
            self._started = True  # a closed server never starts
            handler_calling = me in self._in_flight.values()
            if not first and not handler_calling:  # a handler would wait for itself
                self._wait_for(self._closed.is_set, deadline)
        if not first:
            # The first close() may have come from a handler, whose worker it could not
            # join: join it here.
            for thread in (self._loop_thread, *self._worker_threads):
                if thread is not None and not handler_calling:
                    join_until(thread, deadline)
            return
        self._on_loop(self._stop_serving, deadline)
        with self._condition:
            self._wait_for(lambda: all(thread is me for thread in self._in_flight.values()), grace_end)
            for conn in self._in_flight:
                shut_down(conn)
            self._wait_for(lambda: all(thread is me for thread in self._in_flight.values()), deadline)
        self._loop.stop()
        with self._condition:
            self._wait_for(lambda: not self._loop_running, deadline)
            loop_ended = not self._loop_running
        os.write(self._stop_write, b"x")
        for thread in (self._loop_thread, *self._worker_threads):
            if thread is not None:
                join_until(thread, deadline)
        with self._condition:
            # A handler that called close() is still using its connection: its worker
            # closes it when the handler returns.
            leftover = [conn for conn in self._connections if self._in_flight.get(conn) is not me]
            for conn in leftover:
                self._forget(conn)
        for conn in leftover:
            conn.close()
        if loop_ended:
            self._loop.close()
        self._release_poller()  # if no worker ever ran: otherwise the last one out does
        with self._condition:
            self._closed.set()
            self._condition.notify_all()
        warn_left_running("RequestServer", [self._loop_thread, *self._worker_threads], timeout)

    # -- starting and stopping (any thread) ----------------------------------------------

    def _claim(self) -> None:
        """Start the workers and the acceptor, or raise why the server cannot run."""
        with self._condition:
            if self._closing:
                raise RuntimeError("server is closed: a closed server cannot start again")
            if self._started:
                raise RuntimeError("server already started")
            self._started = True
            self._loop_running = True
            self._workers_left = self.workers
        try:
            for number in range(1, self.workers + 1):
                worker = threading.Thread(target=self._work, name=f"worker-{number}")
                worker.start()
                self._worker_threads.append(worker)
        except BaseException:
            with self._condition:
                self._loop_running = False
                self._workers_left = len(self._worker_threads)
            raise
        self._acceptor.start()  # the loop is not running yet: its state is still ours

    def _run_loop(self) -> None:
        try:
            self._loop.run_forever()
        finally:
            with self._condition:
                self._loop_running = False
                self._condition.notify_all()

    def _on_loop(self, callback: Callable[[], None], deadline: float | None) -> None:
        """Run ``callback`` in the loop's thread and wait for it (until ``deadline``);
        here and now when the loop is not running, so that nothing else touches its state."""
        done = False

        def run() -> None:
            nonlocal done
            try:
                callback()
            finally:
                with self._condition:
                    done = True
                    self._condition.notify_all()

        with self._condition:
            running = self._loop_running
        if running:
            handle = self._loop.call_soon_threadsafe(run)
            with self._condition:
                self._wait_for(lambda: done or not self._loop_running, deadline)
                if done or self._loop_running:
                    return  # done, or the loop is stuck past the deadline: close() warns
            handle.cancel()  # the loop ended before running it: it never will
        callback()

    def _wait_for(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait on the condition (held by the caller) for ``predicate`` until ``deadline``."""
        return self._condition.wait_for(predicate, None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- the loop's thread ---------------------------------------------------------------

    def _admit(self, peer: Address | None) -> str | None:
        with self._condition:
            active = len(self._connections)
        return self._refusal(peer, active)

    def _accepted(self, sock: socket.socket, peer: Address | None) -> None:
        local = address_from_sockaddr(sock.family, sock.getsockname())
        conn = Connection(SocketStream(sock), local=local, peer=peer, timeout=self.idle_timeout)
        fd = conn.stream.fileno()
        with self._condition:
            self._connections[conn] = fd
            self._by_fd[fd] = conn
            if self.idle_timeout is not None:
                self._idle_since[conn] = self._loop.time()
            if self.proxy_protocol is not None:
                self._unintroduced.add(conn)
            try:
                self._poller.register(fd, _ARMED)
            except BaseException:
                self._forget(conn)
                raise  # the acceptor closes the socket
        if self.idle_timeout is not None:
            self._loop.call_later(self.idle_timeout, self._check_idle, conn)

    def _check_idle(self, conn: Connection) -> None:
        """Close ``conn`` if it has been idle for ``idle_timeout``; otherwise look again
        when it could be. (Workers only note the time a request ends: the timers stay the
        loop's own.)"""
        assert self.idle_timeout is not None
        now = self._loop.time()
        with self._condition:
            if conn not in self._connections:
                return  # gone already
            waiting = conn in self._in_flight or _readable(conn)  # served, or in line for a worker
            since = now if waiting else self._idle_since[conn]
            expired = now - since >= self.idle_timeout
            if expired:
                self._forget(conn)
        if expired:
            conn.close()
        else:
            self._loop.call_at(since + self.idle_timeout, self._check_idle, conn)

    def _stop_serving(self) -> None:
        self._acceptor.stop()
        close_all(self.listeners)
        with self._condition:
            # Idle connections, and those ready but waiting for a worker: none is served.
            idle = [conn for conn in self._connections if conn not in self._in_flight]
            for conn in idle:
                self._forget(conn)
        for conn in idle:
            conn.close()

    def _forget(self, conn: Connection) -> None:
        """Take ``conn`` off the books and off the poller (the condition's lock held); the
        caller closes it."""
        fd = self._connections.pop(conn, None)
        if fd is None:
            return  # forgotten already: close() forgets the connections of stuck handlers
        if self._by_fd.get(fd) is conn:  # else closed by its handler and the number reused
            del self._by_fd[fd]
        self._idle_since.pop(conn, None)
        self._unintroduced.discard(conn)
        if not conn.closed:  # closing a socket takes it off the poller
            with contextlib.suppress(OSError):  # never registered (a failed register)
                self._poller.unregister(fd)

    # -- the workers' threads ------------------------------------------------------------

    def _work(self) -> None:
        try:
            while self._serve_next():
                pass
        finally:
            with self._condition:
                self._workers_left -= 1
            self._release_poller()

    def _release_poller(self) -> None:
        """Close the poller and the stop pipe once closing and no worker waits on them."""
        with self._condition:
            if not self._closing or self._workers_left or self._poller.closed:
                return
            self._poller.close()
            os.close(self._stop_read)
            os.close(self._stop_write)

    def _serve_next(self) -> bool:
        """Wait for a ready connection and serve it; False once the workers must end."""
        me = threading.current_thread()
        for fd, _ in self._poller.poll(-1, 1):
            if fd == self._stop_read:
                return False
            with self._condition:
                conn = self._by_fd.get(fd)
                # Not ours: a connection closed since (its descriptor maybe reused: then
                # the check for data below finds none, and re-arms it), or being served.
                if conn is None or conn in self._in_flight or self._closing:
                    continue
                self._in_flight[conn] = me
            keep = False
            try:
                # A request already read (pipelined behind the one served) cannot wake
                # the poller: it is served here at once.
                while True:
                    keep = False
                    keep = self._serve(conn)
                    if not (keep and conn.buffered and not self._closing):
                        break
            finally:  # a BaseException ends this worker, never the connection's bookkeeping
                with self._condition:
                    del self._in_flight[conn]
                    keep = keep and not self._closing
                    if keep:
                        if self.idle_timeout is not None:
                            self._idle_since[conn] = time.monotonic()
                        self._poller.modify(fd, _ARMED)  # under the lock: close() forgets it at once
                    else:
                        self._forget(conn)
                    self._condition.notify_all()
                if not keep:
                    conn.close()
        return True

    def _serve(self, conn: Connection) -> bool:
        """Serve one request of ``conn``; return whether to keep the connection."""
        if self.proxy_protocol is not None:
            try:
                if not self._introduced(conn, self.proxy_protocol):
                    return False
            except Exception as exc:  # noqa: BLE001 - on_refused's own failure: reported, the server goes on
                self.on_error(conn, exc)
                return False
        try:
            # The poller saw the socket readable: data, the client's close, or a reset.
            if not conn.can_recv(timeout=0):
                return True  # nothing after all (a spurious wake-up): back to the poller
        except NetworkError:
            return False  # reset between requests: the client left
        if not conn.buffered:
            return False  # closed between requests: the client left
        try:
            self.handler(conn)
        except Exception as exc:  # noqa: BLE001 - reported through the hook; the server goes on
            self.on_error(conn, exc)
            return False
        return not conn.closed

    def _introduced(self, conn: Connection, policy: ProxyProtocol) -> bool:
        """Whether ``conn`` may be served: its PROXY header read (the first time) and its
        client admitted; if not, it is closed and ``on_refused`` told why."""
        with self._condition:
            if conn not in self._unintroduced:
                return True
            self._unintroduced.discard(conn)
        reason = introduce(conn, policy, timeout=self.handshake_timeout, access=self.access)
        if reason is None:
            return True
        conn.close()
        if self.on_refused is not None:
            self.on_refused(conn.peer, reason)
        return False


def _readable(conn: Connection) -> bool:
    """Whether ``conn`` has something to read (a request, or the client's end) right now."""
    poller = select.poll()
    poller.register(conn.stream.fileno(), select.POLLIN)
    return bool(poller.poll(0))
