"""The request server: blocking handlers in a bounded pool, idle connections parked on the loop."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from enchufe.address import Address, InetAddress
from enchufe.errors import ConnectionLost, NetworkError, TimedOut, UnexpectedEOF
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.net.stream import SocketStream
from enchufe.serve.pool import RequestHandler, RequestServer

TIMEOUT = 10.0


def echo_line(conn: Connection) -> None:
    conn.send_all(conn.recv_line())


def threads_started_since(before: set[threading.Thread]) -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread not in before]


@contextlib.contextmanager
def running(handler: RequestHandler, *, backlog: int = 10, **options: object) -> Iterator[RequestServer]:
    """A started server on 127.0.0.1; after it closes, every thread it started is gone
    already (no grace: close() promises to join them)."""
    before = set(threading.enumerate())
    listeners = open_listeners(InetAddress("127.0.0.1", 0), backlog=backlog)
    with RequestServer(listeners, handler, **options) as server:  # type: ignore[arg-type]
        server.start()
        yield server
    assert threads_started_since(before) == [], "close() returned before joining these"


def client(server: RequestServer) -> Connection:
    return open_connection(server.addresses[0], timeout=TIMEOUT)


def round_trip(conn: Connection, line: bytes = b"ping\n") -> bytes:
    conn.send_all(line)
    return conn.recv_line()


def reset(conn: Connection) -> None:
    """Close with a TCP reset instead of a FIN."""
    assert isinstance(conn.stream, SocketStream)
    conn.stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def closed_by_server(conn: Connection) -> bool:
    """The server closed ``conn``: end of file, or a reset (a close racing the handshake)."""
    try:
        return conn.recv() == b""
    except ConnectionLost:
        return True


def echo_until_bye(conn: Connection) -> None:
    line = conn.recv_line()
    if line == b"bye\n":
        conn.close()
    else:
        conn.send_all(line)


def test_requests_are_served_by_named_workers_connection_after_connection() -> None:
    names: list[str] = []

    def handler(conn: Connection) -> None:
        names.append(threading.current_thread().name)
        echo_line(conn)

    with running(handler, workers=2) as server, client(server) as one, client(server) as two:
        for number in range(5):
            assert round_trip(one, b"one %d\n" % number) == b"one %d\n" % number
            assert round_trip(two, b"two %d\n" % number) == b"two %d\n" % number
    assert set(names) <= {"worker-1", "worker-2"}
    assert len(names) == 10


def test_pipelined_requests_are_each_served() -> None:
    with running(echo_line) as server, client(server) as conn:
        conn.send_all(b"first\nsecond\nthird\n")
        assert [conn.recv_line() for _ in range(3)] == [b"first\n", b"second\n", b"third\n"]


def test_idle_connections_hold_no_thread() -> None:
    """500 idle connections and a few busy ones: the threads alive are the loop and the
    workers, whatever the number of connections."""
    before = threading.active_count()
    with running(echo_line, workers=4, backlog=512) as server:
        idle = [client(server) for _ in range(500)]
        try:
            for conn in idle:
                assert round_trip(conn) == b"ping\n"  # accepted, served once, parked
            active = idle[:3]
            for _ in range(20):
                for conn in active:
                    assert round_trip(conn) == b"ping\n"
            assert len(server.connections()) == 500
            assert threading.active_count() - before == 1 + 4
        finally:
            for conn in idle:
                conn.close()


def test_a_busy_pool_stops_reading_and_loses_nothing() -> None:
    """Two workers, both held: the next clients wait in line, their bytes left in the
    kernel (a big send cannot complete), and every one is served once a worker is free."""
    inside = threading.Semaphore(0)
    release = threading.Event()

    def slow(conn: Connection) -> None:
        line = conn.recv_line()
        inside.release()
        assert release.wait(TIMEOUT)
        conn.send_all(line)

    with running(slow, workers=2) as server:
        clients = [client(server) for _ in range(4)]
        try:
            for number, conn in enumerate(clients):
                conn.send_all(b"request %d\n" % number)
            assert inside.acquire(timeout=TIMEOUT)
            assert inside.acquire(timeout=TIMEOUT)
            assert not inside.acquire(timeout=0.2)  # a third handler would be running by now
            with client(server) as flood:
                flood.send_all(b"x\n")
                with pytest.raises(TimedOut):  # nobody reads a connection waiting in line
                    flood.send_all(b"x" * (64 << 20), timeout=1)
            release.set()
            for number, conn in enumerate(clients):
                assert conn.recv_line() == b"request %d\n" % number
        finally:
            release.set()
            for conn in clients:
                conn.close()


def test_close_ends_connections_waiting_for_a_worker_at_once() -> None:
    """Waiting in line is not being served: close() closes those connections with the
    idle ones, without waiting for the busy worker."""
    inside = threading.Event()
    release = threading.Event()

    def slow(conn: Connection) -> None:
        conn.recv_line()
        inside.set()
        assert release.wait(TIMEOUT)

    with running(slow, workers=1) as server, client(server) as busy, client(server) as waiting:
        busy.send_all(b"first\n")
        assert inside.wait(TIMEOUT)
        waiting.send_all(b"second\n")
        closing = threading.Thread(target=server.close, kwargs={"grace": TIMEOUT})
        closing.start()
        try:
            with contextlib.suppress(ConnectionLost):  # a close with its request unread is a reset
                assert waiting.recv() == b""
        finally:
            release.set()
            closing.join()
        assert busy.recv() == b""


def test_a_handler_error_is_reported_and_the_server_goes_on() -> None:
    errors: list[tuple[Connection, Exception]] = []

    def handler(conn: Connection) -> None:
        line = conn.recv_line()
        if line == b"boom\n":
            raise ValueError("boom")
        conn.send_all(line)

    with running(handler, on_error=lambda conn, exc: errors.append((conn, exc))) as server:
        with client(server) as failing, client(server) as fine:
            failing.send_all(b"boom\n")
            assert failing.recv() == b""  # closed after the error
            assert round_trip(fine) == b"ping\n"
    assert [(conn.peer, str(exc)) for conn, exc in errors] == [(failing.local, "boom")]


def test_a_client_that_resets_mid_request_is_an_error_one_that_leaves_between_requests_is_not() -> None:
    errors: list[Exception] = []
    reading = threading.Event()

    def handler(conn: Connection) -> None:
        first = conn.recv_exactly(5)
        reading.set()
        conn.send_all(first + conn.recv_line())

    # One worker takes connections in the order the loop hands them on: the reset
    # between requests is seen before the last client's request.
    with running(handler, workers=1, on_error=lambda conn, exc: errors.append(exc)) as server:
        mid_request = client(server)
        mid_request.send_all(b"half ")
        assert reading.wait(TIMEOUT)
        reset(mid_request)
        between = client(server)
        assert round_trip(between, b"whole line\n") == b"whole line\n"
        reset(between)
        with client(server) as leaving:
            assert round_trip(leaving, b"goodbye\n") == b"goodbye\n"
        with client(server) as fine:
            assert round_trip(fine, b"still here\n") == b"still here\n"
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionLost | UnexpectedEOF)


def test_the_idle_timeout_closes_a_quiet_connection_and_not_a_talking_one() -> None:
    with running(echo_line, idle_timeout=0.5) as server, client(server) as quiet, client(server) as talking:
        assert round_trip(quiet) == b"ping\n"
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # twice the idle timeout, never quiet
            assert round_trip(talking) == b"ping\n"
        assert quiet.recv() == b""
        assert round_trip(talking) == b"ping\n"


def test_admission_refuses_beyond_the_limit_and_denied_peers() -> None:
    refused: queue.SimpleQueue[str] = queue.SimpleQueue()

    def on_refused(peer: Address | None, reason: str) -> None:
        refused.put(reason)

    with running(echo_until_bye, max_connections=2, on_refused=on_refused) as server:
        with client(server) as one, client(server) as two:
            assert round_trip(one) == b"ping\n"
            assert round_trip(two) == b"ping\n"
            with client(server) as three:
                assert closed_by_server(three)
            assert refused.get(timeout=TIMEOUT) == "connection limit reached (2)"
            two.send_all(b"bye\n")
            assert two.recv() == b""  # the handler closed it ...
            # ... and its worker takes it off the books right after: no event tells when.
            deadline = time.monotonic() + TIMEOUT
            while len(server.connections()) > 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            with client(server) as four:
                assert round_trip(four) == b"ping\n"
    with running(echo_line, access=lambda peer: False, on_refused=on_refused) as server:
        with client(server) as denied:
            assert closed_by_server(denied)
        assert refused.get(timeout=TIMEOUT) == "not allowed"
    assert refused.empty()


def test_close_ends_requests_in_progress_after_the_grace() -> None:
    inside = threading.Event()
    outcomes: list[str] = []

    def waits_for_more(conn: Connection) -> None:
        conn.recv_line()
        inside.set()
        try:
            conn.recv_line(timeout=TIMEOUT)  # blocks until close() shuts the connection down
        except UnexpectedEOF:
            outcomes.append("shut down")

    with running(waits_for_more, workers=2) as server, client(server) as busy, client(server) as idle:
        busy.send_all(b"first\n")
        assert inside.wait(TIMEOUT)
        # The idle one accepted and parked, not still in the kernel's queue (closing the
        # listener would reset it there, which is not what this test is about).
        deadline = time.monotonic() + TIMEOUT
        while len(server.connections()) < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.005)
        assert len(server.connections()) == 2
        started = time.monotonic()
        server.close(grace=0.2)
        assert time.monotonic() - started < TIMEOUT / 2
        assert outcomes == ["shut down"]
        assert busy.recv() == b""
        assert idle.recv() == b""


def test_a_request_that_finishes_within_the_grace_gets_its_reply() -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow(conn: Connection) -> None:
        line = conn.recv_line()
        if line == b"in time\n":
            inside.set()
            assert release.wait(TIMEOUT)
        conn.send_all(line)

    with running(slow) as server, client(server) as conn, client(server) as idle:
        assert round_trip(idle) == b"ping\n"  # accepted and parked, not still in the kernel's queue
        conn.send_all(b"in time\n")
        assert inside.wait(TIMEOUT)
        closing = threading.Thread(target=server.close, kwargs={"grace": TIMEOUT})
        closing.start()
        assert idle.recv() == b""  # close() has closed the idle ones: the grace has begun
        release.set()
        assert conn.recv_line() == b"in time\n"
        closing.join()
        assert conn.recv() == b""


def test_close_from_a_handler() -> None:
    closed = threading.Event()

    def handler(conn: Connection) -> None:
        conn.recv_line()
        server.close()
        closed.set()

    with running(handler) as server, client(server) as conn:
        conn.send_all(b"stop\n")
        assert closed.wait(TIMEOUT)
        assert conn.recv() == b""
        with pytest.raises(NetworkError):
            client(server)


def test_a_closed_server_cannot_start_and_an_unstarted_one_closes_cleanly() -> None:
    server = RequestServer(open_listeners(InetAddress("127.0.0.1", 0)), echo_line)
    server.close()
    server.close()
    with pytest.raises(RuntimeError):
        server.start()


def test_serve_forever_runs_the_loop_in_the_calling_thread() -> None:
    listeners = open_listeners(InetAddress("127.0.0.1", 0))
    with RequestServer(listeners, echo_line) as server:
        thread = threading.Thread(target=server.serve_forever, name="caller")
        thread.start()
        with client(server) as conn:
            assert round_trip(conn) == b"ping\n"
        server.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_a_request_waiting_for_a_busy_pool_is_not_idle() -> None:
    """One worker, held: a client whose request waits in line longer than the idle
    timeout is served once the worker is free; a quiet one is closed meanwhile."""
    inside = threading.Event()
    release = threading.Event()

    def handler(conn: Connection) -> None:
        line = conn.recv_line()
        if line == b"hold\n":
            inside.set()
            assert release.wait(TIMEOUT)
        conn.send_all(line)

    with running(handler, workers=1, idle_timeout=0.3) as server, client(server) as busy:
        with client(server) as waiting, client(server) as quiet:
            busy.send_all(b"hold\n")
            assert inside.wait(TIMEOUT)
            waiting.send_all(b"in line\n")
            try:
                assert closed_by_server(quiet)  # the idle timeout has passed for both
            finally:
                release.set()
            assert busy.recv_line() == b"hold\n"
            assert waiting.recv_line() == b"in line\n"
