"""The threaded server: handlers in named threads, errors reported, clean shutdown."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr

import pytest

from enchufe.address import InetAddress, UnixAddress
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.serve.engine import Handler, Server, serve


def echo(conn: Connection) -> None:
    for chunk in conn:
        conn.send_all(chunk)


@contextmanager
def running(handler: Handler, **options: object) -> Iterator[Server]:
    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), handler, **options)  # type: ignore[arg-type]
    with server:
        server.start()
        yield server


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


def test_close_ends_blocked_handlers_and_joins_them() -> None:
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


def test_shutdown_stops_accepting_at_once() -> None:
    server = Server(open_listeners(InetAddress("127.0.0.1", 0)), echo).start()
    address = server.addresses[0]
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address.host, address.port), timeout=5)  # type: ignore[union-attr]


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
