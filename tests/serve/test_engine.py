"""The threaded server: handlers in named threads, errors reported, clean shutdown."""

from __future__ import annotations

import io
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import pytest

import enchufe
from enchufe.address import InetAddress, UnixAddress
from enchufe.errors import ConnectError
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.serve.engine import Handler, Server, serve


def echo(conn: Connection) -> None:
    for chunk in conn:
        conn.send_all(chunk)


def threads_started_since(before: set[threading.Thread]) -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread not in before]


@pytest.fixture
def joined() -> Callable[[], None]:
    """Call it right after ``close()`` returns: every thread started since the test
    began must be gone already, with none of the leak fixture's grace."""
    before = set(threading.enumerate())

    def check() -> None:
        assert threads_started_since(before) == [], "close() returned before joining these"

    return check


@contextmanager
def running(handler: Handler, **options: object) -> Iterator[Server]:
    before = set(threading.enumerate())
    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler, **options)  # type: ignore[arg-type]
    with server:
        server.start()
        yield server
    assert threads_started_since(before) == [], "close() returned before joining these"


def test_each_connection_is_served_in_a_named_thread() -> None:
    seen: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def handler(conn: Connection) -> None:
        seen.append(threading.current_thread().name)
        inside.set()
        release.wait(10)

    with running(handler) as server, open_connection(server.addresses[0]) as client:
        assert inside.wait(10)
        assert seen == [f"conn-{client.local}"]
        assert [thread.name for thread in server.threads()] == seen
        assert [conn.peer for conn in server.connections()] == [client.local]
        assert any(thread.name == seen[0] for thread in threading.enumerate())
        release.set()


def test_many_concurrent_clients() -> None:
    with running(echo) as server:
        clients = [open_connection(server.addresses[0]) for _ in range(20)]
        try:
            for index, client in enumerate(clients):
                client.send_line(f"client {index}")
            for index, client in enumerate(clients):
                assert client.recv_line(timeout=5) == f"client {index}\n".encode()
        finally:
            for client in clients:
                client.close()


def test_finished_threads_are_forgotten() -> None:
    done = threading.Semaphore(0)

    def handler(conn: Connection) -> None:
        conn.send_all(b"hi")
        done.release()

    with running(handler) as server:
        for _ in range(10):
            with open_connection(server.addresses[0]) as client:
                assert client.recv_exactly(2, timeout=5) == b"hi"
                assert client.recv(timeout=5) == b""  # the server closed after the handler returned
        for _ in range(10):
            assert done.acquire(timeout=5)
        for thread in server.threads():
            thread.join(5)
        assert server.threads() == []


def test_handler_exception_is_reported_and_the_server_goes_on() -> None:
    failures: list[tuple[object, Exception]] = []

    def handler(conn: Connection) -> None:
        if conn.recv_line(timeout=5) == b"boom\n":
            raise RuntimeError("handler failed")
        conn.send_all(b"fine")

    with running(handler, on_error=lambda conn, exc: failures.append((conn.peer, exc))) as server:
        with open_connection(server.addresses[0]) as bad:
            bad.send_line("boom")
            assert bad.recv(timeout=5) == b""  # closed after the error
        with open_connection(server.addresses[0]) as good:
            good.send_line("hello")
            assert good.recv_exactly(4, timeout=5) == b"fine"
    assert [(str(peer), str(exc)) for peer, exc in failures] == [(str(bad.local), "handler failed")]


def test_default_error_hook_prints_a_traceback_to_stderr() -> None:
    def handler(conn: Connection) -> None:
        raise ValueError("visible")

    captured = io.StringIO()
    with redirect_stderr(captured), running(handler) as server:
        with open_connection(server.addresses[0]) as client:
            assert client.recv(timeout=5) == b""
        for thread in server.threads():
            thread.join(5)
    assert "ValueError: visible" in captured.getvalue()


def test_close_ends_blocked_handlers_and_joins_them(joined: Callable[[], None]) -> None:
    started = threading.Event()
    ended = threading.Event()

    def handler(conn: Connection) -> None:
        started.set()
        assert conn.recv() == b""  # unblocked by the server's shutdown of the socket
        ended.set()

    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler).start()
    client = open_connection(server.addresses[0])
    assert started.wait(10)
    server.close()
    joined()
    assert ended.is_set()
    assert server.threads() == []
    client.close()


def test_close_gives_handlers_a_grace_period() -> None:
    finishing = threading.Event()
    finished = threading.Event()

    def handler(conn: Connection) -> None:
        finishing.set()
        conn.send_all(conn.recv_line(timeout=10))
        finished.set()

    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler).start()
    with open_connection(server.addresses[0]) as client:
        assert finishing.wait(10)
        closer = threading.Thread(target=server.close, kwargs={"grace": 10.0})
        closer.start()
        client.send_line("last request")
        assert client.recv_line(timeout=10) == b"last request\n"
        closer.join(10)
    assert finished.is_set()


def test_shutdown_stops_accepting_at_once(joined: Callable[[], None]) -> None:
    served = threading.Event()

    def handler(conn: Connection) -> None:
        served.set()

    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler).start()
    address = server.addresses[0]
    assert isinstance(address, InetAddress)
    acceptors_after: list[list[str]] = []

    def stop() -> None:
        server.shutdown()
        acceptors_after.append([thread.name for thread in threading.enumerate() if "-accept-" in thread.name])

    # A daemon, so that a shutdown() that never returns fails this test, not the run's exit.
    stopper = threading.Thread(target=stop, name="shutdown-under-test", daemon=True)
    stopper.start()
    stopper.join(10)
    assert acceptors_after == [[]]  # shutdown() returned, with no connection to wake the acceptor, once it was gone
    with socket.create_connection((address.host, address.port), timeout=5) as late:
        # The kernel queues the connection; nobody accepts it. Closing the listener resets it.
        server.close()
        with pytest.raises(ConnectionResetError):
            late.recv(1)
    joined()
    assert not served.is_set()


def test_serves_several_listeners_at_once(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "srv.sock")
    listeners = open_listeners(InetAddress("127.0.0.1", 0)) + open_listeners(UnixAddress(path))
    with Server(listeners, echo) as server:
        server.start()
        for address in server.addresses:
            with open_connection(address) as client:
                client.send_line("x")
                assert client.recv_line(timeout=5) == b"x\n"
    assert not os.path.exists(path)


def test_datagram_listeners_are_rejected() -> None:
    listeners = open_listeners(InetAddress("127.0.0.1", 0), transport="datagram")
    try:
        with pytest.raises(ValueError):
            Server(listeners, echo)
    finally:
        listeners[0].close()


def test_serve_runs_until_the_stop_event() -> None:
    stop = threading.Event()
    ready: list[Server] = []
    got_ready = threading.Event()

    def on_ready(server: Server) -> None:
        ready.append(server)
        got_ready.set()

    runner = threading.Thread(
        target=serve, args=("127.0.0.1:0", echo), kwargs={"stop": stop, "ready": on_ready}, name="serve-under-test"
    )
    runner.start()
    assert got_ready.wait(10)
    with open_connection(ready[0].addresses[0]) as client:
        client.send_line("through serve()")
        assert client.recv_line(timeout=5) == b"through serve()\n"
        stop.set()
        runner.join(10)
        assert not runner.is_alive()
        assert client.recv(timeout=5) == b""


def test_base_exceptions_are_not_swallowed() -> None:
    """A BaseException leaves the handler thread; it is not turned into an error report."""
    reported: list[Exception] = []
    escaped: list[BaseException] = []
    previous_hook = threading.excepthook
    got_it = threading.Event()

    def hook(args: threading.ExceptHookArgs) -> None:
        escaped.append(args.exc_value)  # type: ignore[arg-type]
        got_it.set()

    def handler(conn: Connection) -> None:
        raise SystemExit(3)

    threading.excepthook = hook
    try:
        with running(handler, on_error=lambda conn, exc: reported.append(exc)) as server:
            with open_connection(server.addresses[0]) as client:
                assert client.recv(timeout=5) == b""
            assert got_it.wait(10)
    finally:
        threading.excepthook = previous_hook
    assert reported == []
    assert [type(exc) for exc in escaped] == [SystemExit]  # propagated out of the handler thread, not reported


# -- under failure ---------------------------------------------------------------------

#: Run as root in a child: it becomes a user with no other process and limits that
#: user to two threads (RLIMIT_NPROC; root itself is exempt from the limit), so the
#: server's acceptor starts but no handler thread can. A cgroup's pids.max would do the
#: same where /sys/fs/cgroup is writable, which a container seldom allows.
THREAD_LIMIT_CHILD = """
import os, resource, socket, sys, threading
import encodings.idna  # nothing may be imported once this process is not root

from enchufe.address import InetAddress
from enchufe.net.listen import open_listeners
from enchufe.serve.engine import Server

reported = []

def handler(conn):
    conn.send_all(b"served")

server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler,
                on_error=lambda conn, exc: reported.append(exc))
host, port = server.addresses[0]
uid = 100000 + os.getpid()
os.setgid(uid)
os.setuid(uid)
resource.setrlimit(resource.RLIMIT_NPROC, (2, 64))  # this thread and the acceptor
server.start()
with socket.create_connection((host, port), timeout=10) as first:
    assert first.recv(10) == b"", "the connection without a thread is closed at once"
print("reported:", repr(reported[0]), reported[0].__notes__)
resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
with socket.create_connection((host, port), timeout=10) as second:
    assert second.recv(10) == b"served", "the acceptor went on"
server.close()
print("closed:", threading.enumerate() == [threading.main_thread()])
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="limiting threads for real needs root (setuid)")
def test_a_connection_that_gets_no_thread_is_closed_and_reported() -> None:
    src = str(Path(enchufe.__file__).parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", THREAD_LIMIT_CHILD],
        env={**os.environ, "PYTHONPATH": src},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'reported: RuntimeError("can\'t start new thread")' in result.stdout
    assert "its connection is closed unserved" in result.stdout
    assert "closed: True" in result.stdout
    assert result.stderr == ""


def test_out_of_descriptors_the_acceptor_pauses_then_serves(joined: Callable[[], None]) -> None:
    """EMFILE leaves the connection queued and the listener readable: an acceptor that
    tried again at once would spin. It must wait (on its shutdown event, so that close()
    still ends the wait at once), then accept when descriptors are back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    paused = threading.Event()

    class WatchedStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            if not paused.is_set():  # the acceptor's pause after EMFILE: end the shortage
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                paused.set()
            return super().wait(timeout)

    def handler(conn: Connection) -> None:
        conn.send_all(b"served")

    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler)
    server._stopping = WatchedStop()
    server.start()
    host, port = server.addresses[0]  # type: ignore[misc]
    with socket.create_connection((host, port), timeout=10) as warm_up:
        assert warm_up.recv(6) == b"served"  # the accept loop runs: its selector exists
        assert warm_up.recv(1) == b""  # and the server closed its side: no descriptor frees later
    client = socket.socket()  # made before the shortage: connecting needs no new descriptor
    try:
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left
        client.settimeout(10)
        client.connect((host, port))
        assert paused.wait(10), "the acceptor did not pause after EMFILE"
        assert client.recv(6) == b"served"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        client.close()
        server.close()
    joined()


def test_start_out_of_descriptors_raises_to_the_caller(joined: Callable[[], None]) -> None:
    """The selector is made before the thread: EMFILE is the caller's error, not a
    thread that dies unseen and a server that never accepts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with Server(open_listeners(InetAddress("127.0.0.1", 0)), echo) as server:
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            with pytest.raises(OSError, match="Too many open files"):
                server.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        server.start()  # descriptors are back: it can start now
        with open_connection(server.addresses[0]) as client:
            client.send_line("x")
            assert client.recv_line(timeout=5) == b"x\n"
    joined()


def test_a_handler_can_close_the_server() -> None:
    errors: list[Exception] = []
    servers: list[Server] = []
    after_close: list[bytes] = []
    closed = threading.Event()

    def handler(conn: Connection) -> None:
        servers[0].close()
        closed.set()
        after_close.append(conn.recv(timeout=5))  # its own connection was shut down too

    with running(handler, on_error=lambda conn, exc: errors.append(exc)) as server:
        servers.append(server)
        with open_connection(server.addresses[0]) as client:
            assert closed.wait(10)
            with pytest.raises(ConnectError):
                open_connection(server.addresses[0])  # the listener is closed
            assert client.recv(timeout=5) == b""
    assert errors == []
    assert after_close == [b""]


def test_a_closed_server_cannot_start_again() -> None:
    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), echo)
    server.close()
    with pytest.raises(RuntimeError, match="closed"):
        server.start()
    with pytest.raises(RuntimeError, match="closed"):
        server.serve_forever()


def test_a_running_server_cannot_serve_twice() -> None:
    with running(echo) as server:
        with pytest.raises(RuntimeError, match="already started"):
            server.serve_forever()
        with pytest.raises(RuntimeError, match="already started"):
            server.start()


def test_close_gives_up_on_a_handler_that_ignores_its_connection(joined: Callable[[], None]) -> None:
    inside = threading.Event()
    release = threading.Event()

    def handler(conn: Connection) -> None:
        inside.set()
        release.wait(10)  # deaf to the shutdown of its socket

    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler).start()
    try:
        with open_connection(server.addresses[0]) as client:
            assert inside.wait(10)
            server.shutdown()  # the acceptor is gone: what close() cannot join is the handler
            with pytest.warns(RuntimeWarning, match=f"left threads running after 0.0 s: conn-{client.local}$"):
                server.close(timeout=0.0)
            assert client.recv(timeout=5) == b""  # its connection was shut down all the same
            assert [thread.name for thread in server.threads()] == [f"conn-{client.local}"]
    finally:
        release.set()
    server.close()  # the handler ends now, and this call joins it
    joined()


def test_close_joins_threads_that_are_past_their_handler(joined: Callable[[], None]) -> None:
    """A thread whose handler returned is no handler any more but still runs: close()
    must wait for it too. threading.excepthook runs in the thread after the handler,
    so a hook that blocks holds the thread in exactly that state."""
    in_hook = threading.Event()
    release = threading.Event()
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        in_hook.set()
        release.wait(10)

    def handler(conn: Connection) -> None:
        raise SystemExit  # a BaseException: it leaves the thread through threading.excepthook

    threading.excepthook = hook
    try:
        server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler).start()
        with open_connection(server.addresses[0]) as client:
            assert client.recv(timeout=5) == b""
            assert in_hook.wait(10)
            assert server.threads() == []
            server.shutdown()  # the acceptor is gone: what close() cannot join is that thread
            with pytest.warns(RuntimeWarning, match=f"after 0.0 s: conn-{client.local}$"):
                server.close(timeout=0.0)
        release.set()
        server.close()
        joined()
    finally:
        release.set()
        threading.excepthook = previous_hook


def test_max_connections_refuses_the_one_too_many_before_any_thread() -> None:
    release = threading.Event()
    refused: list[tuple[object, str]] = []
    reported = threading.Event()
    served = threading.Semaphore(0)

    def handler(conn: Connection) -> None:
        served.release()
        release.wait(10)

    def on_refused(peer: object, why: str) -> None:
        refused.append((peer, why))
        reported.set()

    with running(handler, max_connections=2, on_refused=on_refused) as server:
        first = open_connection(server.addresses[0], timeout=5)
        second = open_connection(server.addresses[0], timeout=5)
        with first, second:
            assert served.acquire(timeout=10) and served.acquire(timeout=10)
            with open_connection(server.addresses[0], timeout=5) as third:
                assert third.recv(10, timeout=10) == b""  # closed unserved
                assert reported.wait(10)
                assert refused == [(third.local, "connection limit reached (2)")]
            assert len(server.threads()) == 2
            release.set()


def test_access_refuses_a_peer_before_any_thread() -> None:
    refused: list[str] = []
    reported = threading.Event()

    def on_refused(peer: object, why: str) -> None:
        refused.append(why)
        reported.set()

    with running(lambda conn: conn.send_all(b"served"), access=lambda peer: False, on_refused=on_refused) as server:
        with open_connection(server.addresses[0], timeout=5) as client:
            assert client.recv(10, timeout=10) == b""
        assert reported.wait(10)
        assert refused == ["not allowed"]
