"""DatagramServer: a blocking handler per UDP (or Unix datagram) peer, on real sockets."""

from __future__ import annotations

import os
import queue
import resource
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from enchufe.address import InetAddress, UnixAddress
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.serve.datagram_server import DatagramServer
from enchufe.serve.engine import Server

TIMEOUT = 10.0


def upper(conn: Connection) -> None:
    """Answer each datagram in capitals until the session ends."""
    while data := conn.recv():
        conn.send_all(data.upper())


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    made = []
    for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind((host, 0))
        peer.settimeout(TIMEOUT)
        made.append(peer)
    yield made
    for peer in made:
        peer.close()


def udp_server(handler: Callable[[Connection], None], **options: object) -> tuple[DatagramServer, tuple[str, int]]:
    listeners = open_listeners(InetAddress("127.0.0.1", 0), transport="datagram")
    server = DatagramServer(listeners, handler, **options)  # type: ignore[arg-type]
    address = server.addresses[0]
    assert isinstance(address, InetAddress)
    return server.start(), (address.host, address.port)


def test_each_peer_has_its_own_connection_and_thread(peers: list[socket.socket]) -> None:
    names: queue.Queue[tuple[str, object]] = queue.Queue()

    def handler(conn: Connection) -> None:
        names.put((threading.current_thread().name, conn.peer))
        upper(conn)

    server, address = udp_server(handler)
    with server:
        a, b, _ = peers
        a.sendto(b"from a", address)
        b.sendto(b"from b", address)
        assert a.recv(100) == b"FROM A"
        assert b.recv(100) == b"FROM B"
        a.sendto(b"again", address)
        assert a.recv(100) == b"AGAIN"
        seen = {names.get(timeout=TIMEOUT) for _ in range(2)}
        expected = {InetAddress(*peer.getsockname()) for peer in (a, b)}
        assert {peer for _, peer in seen} == expected
        assert {name for name, _ in seen} == {f"conn-{peer}" for peer in expected}
        assert len(server.threads()) == 2


def test_a_handler_that_returns_ends_the_session_and_the_peer_may_come_back(peers: list[socket.socket]) -> None:
    calls: queue.Queue[bytes] = queue.Queue()
    handlers: queue.Queue[threading.Thread] = queue.Queue()

    def once(conn: Connection) -> None:
        handlers.put(threading.current_thread())
        data = conn.recv()
        calls.put(data)
        conn.send_all(b"bye " + data)

    server, address = udp_server(once)
    with server:
        a = peers[0]
        a.sendto(b"one", address)
        assert a.recv(100) == b"bye one"
        # Once the handler has returned (and its connection is closed), whether or not
        # the loop has noticed yet, the next datagram opens a new session.
        handlers.get(timeout=TIMEOUT).join(TIMEOUT)
        a.sendto(b"two", address)  # a new session, a new handler
        assert a.recv(100) == b"bye two"
        assert [calls.get(timeout=TIMEOUT) for _ in range(2)] == [b"one", b"two"]


def test_an_idle_session_ends_and_its_handler_reads_end_of_file(peers: list[socket.socket]) -> None:
    ended = threading.Event()

    def handler(conn: Connection) -> None:
        upper(conn)
        ended.set()

    server, address = udp_server(handler, idle_timeout=0.2)
    with server:
        peers[0].sendto(b"hi", address)
        assert peers[0].recv(100) == b"HI"
        assert ended.wait(TIMEOUT)


def test_an_empty_datagram_keeps_the_session_and_reaches_no_handler(peers: list[socket.socket]) -> None:
    received: queue.Queue[bytes] = queue.Queue()

    def handler(conn: Connection) -> None:
        while data := conn.recv():
            received.put(data)

    server, address = udp_server(handler)
    with server:
        peers[0].sendto(b"", address)
        peers[0].sendto(b"x", address)
        assert received.get(timeout=TIMEOUT) == b"x"  # the empty one was not handed on


def test_a_long_send_goes_out_as_datagrams_of_at_most_8_kib(peers: list[socket.socket]) -> None:
    payload = os.urandom(20_000)

    def handler(conn: Connection) -> None:
        conn.recv()
        conn.send_all(payload)

    server, address = udp_server(handler)
    with server:
        peers[0].sendto(b"go", address)
        sizes = []
        received = b""
        while len(received) < len(payload):
            datagram = peers[0].recv(65536)
            sizes.append(len(datagram))
            received += datagram
        assert received == payload
        assert sizes == [8192, 8192, 20_000 - 16384]


def test_admission_refuses_beyond_the_limit_and_denied_peers(peers: list[socket.socket]) -> None:
    refused: queue.Queue[tuple[object, str]] = queue.Queue()
    server, address = udp_server(
        upper,
        max_connections=1,
        access=lambda peer: not (isinstance(peer, InetAddress) and peer.host == "127.0.0.2"),
        on_refused=lambda peer, reason: refused.put((peer, reason)),
    )
    with server:
        a, b, elsewhere = peers
        elsewhere.sendto(b"denied", address)
        assert refused.get(timeout=TIMEOUT) == (InetAddress(*elsewhere.getsockname()), "not allowed")
        a.sendto(b"first", address)
        assert a.recv(100) == b"FIRST"
        b.sendto(b"second", address)
        assert refused.get(timeout=TIMEOUT) == (InetAddress(*b.getsockname()), "connection limit reached (1)")
        a.sendto(b"still", address)
        assert a.recv(100) == b"STILL"


def test_out_of_descriptors_a_new_peer_is_refused_and_served_once_they_are_back(
    peers: list[socket.socket], capfd: pytest.CaptureFixture[str]
) -> None:
    """EMFILE for a new peer's bridge used to raise on the loop (a traceback on
    stderr) and leave a session that no handler served, its peer unheard for good."""
    refused: queue.Queue[tuple[object, str]] = queue.Queue()
    server, address = udp_server(upper, on_refused=lambda peer, reason: refused.put((peer, reason)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with server:
        a = peers[0]
        try:
            lowest_free = os.open(os.devnull, os.O_RDONLY)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left
            a.sendto(b"first", address)
            assert refused.get(timeout=TIMEOUT) == (InetAddress(*a.getsockname()), "Too many open files")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        a.sendto(b"again", address)
        assert a.recv(100) == b"AGAIN"
    assert "Traceback" not in capfd.readouterr().err


def test_a_handler_that_raises_is_reported_and_the_server_goes_on(peers: list[socket.socket]) -> None:
    errors: queue.Queue[Exception] = queue.Queue()

    def fussy(conn: Connection) -> None:
        data = conn.recv()
        if data == b"boom":
            raise ValueError("boom")
        conn.send_all(data)

    server, address = udp_server(fussy, on_error=lambda conn, exc: errors.put(exc))
    with server:
        a, b, _ = peers
        a.sendto(b"boom", address)
        assert str(errors.get(timeout=TIMEOUT)) == "boom"
        b.sendto(b"fine", address)
        assert b.recv(100) == b"fine"


def test_close_ends_every_session_and_joins_every_thread(peers: list[socket.socket]) -> None:
    started = threading.Barrier(3, timeout=TIMEOUT)

    def waiting(conn: Connection) -> None:
        started.wait()
        upper(conn)  # until close() ends the session

    server, address = udp_server(waiting)
    with server:
        peers[0].sendto(b"a", address)
        peers[1].sendto(b"b", address)
        started.wait()
    assert server.threads() == []
    assert not any(thread.name.startswith("conn-") for thread in threading.enumerate())


def test_unix_datagram_peers_are_told_apart_by_their_paths(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server")
    listeners = open_listeners(UnixAddress(path), transport="datagram")
    clients = []
    with DatagramServer(listeners, upper) as server:
        server.start()
        try:
            for name in ("one", "two"):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                client.bind(os.path.join(sock_dir, name))
                client.settimeout(TIMEOUT)
                clients.append(client)
                client.sendto(name.encode(), path)
            assert [client.recv(10) for client in clients] == [b"ONE", b"TWO"]
        finally:
            for client in clients:
                client.close()
    assert not os.path.exists(path)


def test_each_server_takes_only_its_kind_of_listener() -> None:
    streams = open_listeners(InetAddress("127.0.0.1", 0))
    datagrams = open_listeners(InetAddress("127.0.0.1", 0), transport="datagram")
    try:
        with pytest.raises(ValueError, match="serves datagram listeners only"):
            DatagramServer(streams, upper)
        with pytest.raises(ValueError, match="serves stream"):
            Server(datagrams, upper)
    finally:
        for listener in streams + datagrams:
            listener.close()
