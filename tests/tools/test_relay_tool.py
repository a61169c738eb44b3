"""The relay's engine: every client to its own connection to a fixed target, TCP and Unix
either side, UDP to UDP with a session per client, on one loop thread."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.address import InetAddress, UnixAddress
from enchufe.errors import AddressError
from enchufe.net.listen import open_listeners
from enchufe.net.resolve import SystemResolver
from enchufe.serve.proxy_server import ClientEnd
from enchufe.tools.relay import DatagramRelay, Endpoint, parse_endpoint, stream_relay
from support.cli_e2e import TcpServer, recv_exactly, recv_until_eof
from support.loop import LoopThread

TIMEOUT = 10.0


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("8080", Endpoint(None, port=8080)),
        (":8080", Endpoint(None, port=8080)),
        ("127.0.0.1:80", Endpoint(InetAddress("127.0.0.1", 80))),
        ("[::1]:22", Endpoint(InetAddress("::1", 22))),
        ("unix:/run/app.sock", Endpoint(UnixAddress("/run/app.sock"))),
        ("/path.sock", Endpoint(UnixAddress("/path.sock"))),
        ("udp:127.0.0.1:53", Endpoint(InetAddress("127.0.0.1", 53), udp=True)),
        ("udp::53", Endpoint(None, port=53, udp=True)),
    ],
)
def test_endpoints_are_written_in_enchufes_syntax(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize("text", ["nohost", "127.0.0.1:70000", ":x", "udp:/a.sock", "[::1"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        parse_endpoint(text)


@contextlib.contextmanager
def relaying(
    listen: InetAddress | UnixAddress, target: InetAddress | UnixAddress, **options: object
) -> Iterator[tuple[queue.Queue[ClientEnd], InetAddress | UnixAddress]]:
    """A stream relay on a loop thread; yields the queue of ends and where it listens."""
    ends: queue.Queue[ClientEnd] = queue.Queue()
    listeners = open_listeners(listen)
    looper = LoopThread()
    try:
        relay = stream_relay(looper.loop, listeners, target, on_close=ends.put, **options)
        looper.call(relay.start)
        try:
            yield ends, listeners[0].address
        finally:
            looper.call(relay.close)
    finally:
        looper.close()


def connect_to(address: InetAddress | UnixAddress) -> socket.socket:
    if isinstance(address, UnixAddress):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(TIMEOUT)
        sock.connect(address.sockaddr())
        return sock
    return socket.create_connection((address.host, address.port), timeout=TIMEOUT)


def unix_server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    server.settimeout(TIMEOUT)
    return server


def accept(server: socket.socket) -> socket.socket:
    conn, _ = server.accept()
    conn.settimeout(TIMEOUT)
    return conn


def exchange_and_half_close_both_ways(sock: socket.socket, far: socket.socket) -> None:
    """Megabytes each way at once, sha256-checked; the client's end first, then the target's."""
    up, down = os.urandom(3 << 20), os.urandom(2 << 20)
    received: dict[str, bytes] = {}

    def far_side() -> None:
        far.sendall(down)
        received["up"] = recv_until_eof(far)

    thread = threading.Thread(target=far_side)
    thread.start()
    sock.sendall(up)
    sock.shutdown(socket.SHUT_WR)
    assert hashlib.sha256(recv_exactly(sock, len(down))).digest() == hashlib.sha256(down).digest()
    thread.join(TIMEOUT)
    assert hashlib.sha256(received["up"]).digest() == hashlib.sha256(up).digest()
    far.sendall(b"after the client's end")  # the other way goes on after a half-close
    assert recv_exactly(sock, 22) == b"after the client's end"
    far.close()
    assert sock.recv(1) == b""
    sock.close()


def test_tcp_to_tcp_carries_megabytes_and_half_closes_both_ways() -> None:
    with (
        TcpServer() as target,
        relaying(InetAddress("127.0.0.1", 0), InetAddress("127.0.0.1", target.port)) as (
            ends,
            address,
        ),
    ):
        sock = connect_to(address)
        exchange_and_half_close_both_ways(sock, target.accept())
        end = ends.get(timeout=TIMEOUT)
        assert (end.sent, end.received, end.reason) == (3 << 20, (2 << 20) + 22, "done")


def test_tcp_to_unix(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "target.sock")
    with unix_server(path) as target, relaying(InetAddress("127.0.0.1", 0), UnixAddress(path)) as (_, address):
        sock = connect_to(address)
        exchange_and_half_close_both_ways(sock, accept(target))


def test_unix_to_tcp(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "relay.sock")
    with TcpServer() as target, relaying(UnixAddress(path), InetAddress("127.0.0.1", target.port)) as (ends, address):
        sock = connect_to(address)
        exchange_and_half_close_both_ways(sock, target.accept())
        assert ends.get(timeout=TIMEOUT).reason == "done"


def test_ipv6_both_sides() -> None:
    with TcpServer("::1") as target, relaying(InetAddress("::1", 0), InetAddress("::1", target.port)) as (_, address):
        with connect_to(address) as sock, target.accept() as far:
            sock.sendall(b"over six")
            assert recv_exactly(far, 8) == b"over six"


def test_a_closed_target_closes_the_client_and_says_refused() -> None:
    with TcpServer() as closed:
        port = closed.port
    with relaying(InetAddress("127.0.0.1", 0), InetAddress("127.0.0.1", port)) as (ends, address):
        with connect_to(address) as sock:
            assert sock.recv(1) == b""
        assert ends.get(timeout=TIMEOUT).reason == "refused"


def test_many_clients_at_once_hold_no_thread_each() -> None:
    clients = 200
    with TcpServer(backlog=clients) as target:
        with relaying(InetAddress("127.0.0.1", 0), InetAddress("127.0.0.1", target.port)) as (ends, address):
            threads_before = threading.active_count()
            socks: list[socket.socket] = []
            fars: list[socket.socket] = []
            try:
                for _ in range(clients):
                    socks.append(connect_to(address))
                for _ in range(clients):
                    fars.append(target.accept())
                assert threading.active_count() == threads_before
                for index, sock in enumerate(socks):
                    sock.sendall(b"%d" % index)
                    sock.shutdown(socket.SHUT_WR)
                assert sorted(int(recv_until_eof(far)) for far in fars) == list(range(clients))
            finally:
                for sock in socks + fars:
                    sock.close()
            assert {ends.get(timeout=TIMEOUT).reason for _ in range(clients)} == {"done"}


def test_an_idle_connection_is_closed_at_the_idle_timeout() -> None:
    with TcpServer() as target:
        with relaying(InetAddress("127.0.0.1", 0), InetAddress("127.0.0.1", target.port), idle_timeout=0.3) as (
            ends,
            address,
        ):
            with connect_to(address) as sock, target.accept() as far:
                assert sock.recv(1) == b""
                assert far.recv(1) == b""
            assert ends.get(timeout=TIMEOUT).reason == "idle"


class UdpEcho:
    """A UDP target answering each datagram with ``echo:`` and the datagram."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(TIMEOUT)
        self.port: int = self.sock.getsockname()[1]
        self.senders: set[object] = set()
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, sender = self.sock.recvfrom(65535)
            except OSError:
                return
            if data == b"stop":
                return
            self.senders.add(sender)
            self.sock.sendto(b"echo:" + data, sender)

    def close(self) -> None:
        self.sock.sendto(b"stop", self.sock.getsockname())
        self.thread.join(TIMEOUT)
        self.sock.close()


@contextlib.contextmanager
def udp_relaying(target_port: int, **options: object) -> Iterator[tuple[queue.Queue[ClientEnd], int]]:
    ends: queue.Queue[ClientEnd] = queue.Queue()
    listeners = open_listeners(InetAddress("127.0.0.1", 0), transport="datagram")
    (found,) = SystemResolver().resolve(
        "127.0.0.1", target_port, family=socket.AF_INET, type=socket.SOCK_DGRAM, proto=0
    )
    looper = LoopThread()
    try:
        relay = DatagramRelay(looper.loop, listeners, found, on_close=ends.put, **options)  # type: ignore[arg-type]
        looper.call(relay.start)
        try:
            port = listeners[0].address.port  # type: ignore[union-attr]
            yield ends, port
        finally:
            looper.call(relay.close)
    finally:
        looper.close()


def udp_client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def test_udp_peers_each_get_their_own_session_and_their_own_answers() -> None:
    echo = UdpEcho()
    try:
        with udp_relaying(echo.port) as (ends, port):
            peers = [udp_client() for _ in range(3)]
            for round_ in range(2):
                for index, peer in enumerate(peers):
                    peer.sendto(b"%d.%d" % (index, round_), ("127.0.0.1", port))
                for index, peer in enumerate(peers):
                    assert peer.recv(100) == b"echo:%d.%d" % (index, round_)
            assert len(echo.senders) == 3  # a socket of its own per peer
            for peer in peers:
                peer.close()
        seen = [ends.get(timeout=TIMEOUT) for _ in peers]
        assert {(end.reason, end.sent, end.received) for end in seen} == {("shutdown", 6, 16)}
    finally:
        echo.close()


def test_an_idle_udp_session_expires_and_the_next_datagram_opens_another() -> None:
    echo = UdpEcho()
    try:
        with udp_relaying(echo.port, idle_timeout=0.3) as (ends, port), udp_client() as peer:
            peer.sendto(b"one", ("127.0.0.1", port))
            assert peer.recv(100) == b"echo:one"
            end = ends.get(timeout=TIMEOUT)
            assert (end.reason, end.sent, end.received) == ("idle", 3, 8)
            peer.sendto(b"two", ("127.0.0.1", port))
            assert peer.recv(100) == b"echo:two"
        assert len(echo.senders) == 2
    finally:
        echo.close()


def test_udp_sessions_over_the_limit_are_dropped() -> None:
    echo = UdpEcho()
    try:
        with udp_relaying(echo.port, max_clients=1) as (_, port), udp_client() as first, udp_client() as second:
            first.sendto(b"a", ("127.0.0.1", port))
            assert first.recv(100) == b"echo:a"
            second.sendto(b"b", ("127.0.0.1", port))
            first.sendto(b"c", ("127.0.0.1", port))
            assert first.recv(100) == b"echo:c"  # after b: b was dropped, not queued
            second.settimeout(0.3)
            with pytest.raises(TimeoutError):
                second.recv(100)
    finally:
        echo.close()
