"""Datagram sessions: one socket, a session per peer, idle expiry and limits, on real sockets."""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.address import InetAddress, UnixAddress
from enchufe.net.datagram import DatagramSession, DatagramSessions
from support.loop import LoopThread

TIMEOUT = 10.0


class Rig(LoopThread):
    def __init__(self, sock: socket.socket, **options: object) -> None:
        super().__init__()
        self.events: queue.Queue[tuple[object, ...]] = queue.Queue()

        def on_datagram(session: DatagramSession, data: bytes) -> None:
            self.events.put(("datagram", session.peer, data))
            if data.startswith(b"echo "):
                session.write(data[5:])

        sessions = self.call(  # on the loop's thread: it registers the socket
            lambda: DatagramSessions(
                self.loop,
                sock,
                on_datagram=on_datagram,
                on_open=lambda session: self.events.put(("open", session.peer)),
                on_close=lambda session, reason: self.events.put(("close", session.peer, reason)),
                on_refused=lambda peer, reason: self.events.put(("refused", peer, reason)),
                **options,  # type: ignore[arg-type]
            )
        )
        assert isinstance(sessions, DatagramSessions)
        self.sessions = sessions
        self.address = sock.getsockname()

    def next(self) -> tuple[object, ...]:
        return self.events.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.call(self.sessions.close)
        super().close()


def udp_server(**options: object) -> Rig:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return Rig(sock, **options)


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for peer in made:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(TIMEOUT)
    yield made
    for peer in made:
        peer.close()


def address_of(sock: socket.socket) -> InetAddress:
    host, port = sock.getsockname()
    return InetAddress(host, port)


def test_each_peer_gets_its_own_session_and_its_own_answers(peers: list[socket.socket]) -> None:
    rig = udp_server()
    try:
        a, b, _ = peers
        a.sendto(b"echo to a", rig.address)
        assert rig.next() == ("open", address_of(a))
        assert rig.next() == ("datagram", address_of(a), b"echo to a")
        b.sendto(b"echo to b", rig.address)
        assert rig.next() == ("open", address_of(b))
        assert rig.next() == ("datagram", address_of(b), b"echo to b")
        a.sendto(b"again", rig.address)  # a known peer: no new session
        assert rig.next() == ("datagram", address_of(a), b"again")
        assert a.recv(100) == b"to a"
        assert b.recv(100) == b"to b"
    finally:
        rig.close()


def test_an_empty_datagram_is_traffic(peers: list[socket.socket]) -> None:
    rig = udp_server()
    try:
        peers[0].sendto(b"", rig.address)
        assert rig.next() == ("open", address_of(peers[0]))
        assert rig.next() == ("datagram", address_of(peers[0]), b"")
    finally:
        rig.close()


def test_an_idle_session_expires_and_the_peer_can_come_back(peers: list[socket.socket]) -> None:
    rig = udp_server(idle_timeout=0.1)
    try:
        a = peers[0]
        a.sendto(b"hello", rig.address)
        assert rig.next()[0] == "open"
        assert rig.next()[0] == "datagram"
        assert rig.next() == ("close", address_of(a), "idle")
        a.sendto(b"back", rig.address)
        assert rig.next() == ("open", address_of(a))
    finally:
        rig.close()


def test_traffic_keeps_a_session_alive(peers: list[socket.socket]) -> None:
    """Ten datagrams 0.05 s apart against a 0.2 s idle timeout: one session all along."""
    rig = udp_server(idle_timeout=0.2)
    try:
        a = peers[0]
        pace = threading.Event()
        for _ in range(10):
            a.sendto(b"k", rig.address)
            pace.wait(0.05)  # traffic at a pace, not synchronisation
        events = [rig.next() for _ in range(11)]
        assert [event[0] for event in events] == ["open"] + ["datagram"] * 10
        assert rig.next() == ("close", address_of(a), "idle")
    finally:
        rig.close()


def test_peers_beyond_the_limit_are_refused_and_the_others_served(peers: list[socket.socket]) -> None:
    rig = udp_server(admit=lambda peer: "full" if len(rig.sessions) else None)
    try:
        a, b, _ = peers
        a.sendto(b"first", rig.address)
        assert rig.next()[0] == "open"
        assert rig.next()[0] == "datagram"
        b.sendto(b"second", rig.address)
        assert rig.next() == ("refused", address_of(b), "full")
        a.sendto(b"echo still here", rig.address)
        assert rig.next() == ("datagram", address_of(a), b"echo still here")
        assert a.recv(100) == b"still here"
    finally:
        rig.close()


def test_closing_ends_every_session(peers: list[socket.socket]) -> None:
    rig = udp_server()
    a, b, _ = peers
    a.sendto(b"x", rig.address)
    b.sendto(b"y", rig.address)
    seen = [rig.next() for _ in range(4)]
    assert {event[0] for event in seen} == {"open", "datagram"}
    rig.close()
    closes = {rig.next() for _ in range(2)}
    assert closes == {("close", address_of(a), "shutdown"), ("close", address_of(b), "shutdown")}


def test_unix_datagram_peers_are_told_apart_by_their_paths(sock_dir: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server_path = os.path.join(sock_dir, "server")
    server.bind(server_path)
    rig = Rig(server)
    clients = []
    try:
        for name in ("one", "two"):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            client.bind(os.path.join(sock_dir, name))
            client.settimeout(TIMEOUT)
            clients.append(client)
            client.sendto(f"echo {name}".encode(), server_path)
            assert rig.next() == ("open", UnixAddress(os.path.join(sock_dir, name)))
            rig.next()
        assert [client.recv(10) for client in clients] == [b"one", b"two"]
    finally:
        rig.close()
        for client in clients:
            client.close()
