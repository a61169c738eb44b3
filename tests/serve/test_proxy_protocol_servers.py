"""The PROXY protocol on real loopback sockets: the header read and nothing past it, and
the servers behind a balancer (the test plays the balancer from 127.0.0.1 and names
clients such as 127.0.0.7): the client's address as the peer, TLS after the header,
ACLs on the client, untrusted, bad, silent and LOCAL senders."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.address import Address, InetAddress
from enchufe.errors import ConnectionLost, ProtocolError, TimedOut, UnexpectedEOF
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.net.proxy_protocol import ProxyHeaderReader, read_proxy_header, send_proxy_header
from enchufe.net.stream import SocketStream
from enchufe.net.tls import start_tls
from enchufe.proto.proxy_protocol import V2_SIGNATURE, ProxyHeader, encode_header
from enchufe.serve.engine import Server
from enchufe.serve.policy import ProxyProtocol
from enchufe.serve.pool import RequestServer
from support.loop import LoopThread
from support.tls import TlsFiles

TIMEOUT = 10.0
CLIENT = InetAddress("127.0.0.7", 4242)
FRONTEND = InetAddress("127.0.0.1", 443)
V1 = b"PROXY TCP4 127.0.0.7 127.0.0.1 4242 443\r\n"
V2 = encode_header(ProxyHeader(2, "proxy", "stream", CLIENT, FRONTEND, ((0xE0, b"x" * 200),)))


def from_loopback(peer: Address | None) -> bool:
    return isinstance(peer, InetAddress) and peer.host == "127.0.0.1"


TRUST_LOOPBACK = ProxyProtocol(from_loopback)


# -- reading the header off a socket ------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, SocketStream]]:
    ours, theirs = socket.socketpair()
    stream = SocketStream(theirs)
    with ours, contextlib.closing(stream):
        yield ours, stream


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2-longer-than-a-first-peek"])
def test_the_header_is_read_and_not_one_byte_more(pair: tuple[socket.socket, SocketStream], header: bytes) -> None:
    ours, stream = pair
    ours.sendall(header + b"the client's first bytes")
    assert read_proxy_header(stream, timeout=TIMEOUT).source == CLIENT
    assert stream.sock.recv(100, socket.MSG_DONTWAIT) == b"the client's first bytes"


def test_a_header_in_two_pieces_is_waited_for(pair: tuple[socket.socket, SocketStream]) -> None:
    ours, stream = pair
    ours.sendall(V1[:10])
    results: queue.Queue[ProxyHeader] = queue.Queue()
    reader = threading.Thread(target=lambda: results.put(read_proxy_header(stream, timeout=TIMEOUT)))
    reader.start()
    ours.sendall(V1[10:] + b"data")
    reader.join(TIMEOUT)
    assert results.get(timeout=TIMEOUT).source == CLIENT
    assert stream.sock.recv(100) == b"data"


def test_bad_cut_short_and_missing_headers(pair: tuple[socket.socket, SocketStream]) -> None:
    ours, stream = pair
    with pytest.raises(TimedOut, match=r"no PROXY header within 0\.05 s"):
        read_proxy_header(stream, timeout=0.05)
    ours.sendall(b"GET / HTTP/1.0\r\n")
    with pytest.raises(ProtocolError, match="not a PROXY protocol header"):
        read_proxy_header(stream, timeout=TIMEOUT)
    other, theirs = socket.socketpair()
    with other, contextlib.closing(SocketStream(theirs)) as cut:
        other.sendall(V1[:20])
        other.shutdown(socket.SHUT_WR)
        with pytest.raises(UnexpectedEOF, match="after 20 bytes"):
            read_proxy_header(cut, timeout=TIMEOUT)


def test_send_proxy_header_writes_what_read_proxy_header_reads(pair: tuple[socket.socket, SocketStream]) -> None:
    ours, stream = pair
    with Connection(SocketStream(ours.dup())) as sender:
        send_proxy_header(sender, CLIENT, FRONTEND, version=1)
        send_proxy_header(sender, None, None)
    assert read_proxy_header(stream, timeout=TIMEOUT) == ProxyHeader(1, "proxy", "stream", CLIENT, FRONTEND)
    assert stream.recv(100, timeout=TIMEOUT) == V2_SIGNATURE + b"\x21\x00\x00\x00"  # PROXY, AF_UNSPEC, UNSPEC


@contextlib.contextmanager
def loop_reader(timeout: float | None) -> Iterator[tuple[socket.socket, socket.socket, queue.Queue[object]]]:
    """A ProxyHeaderReader started on a loop thread over a socket pair: yields our end,
    its end, and what it reported (a header or an error)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    results: queue.Queue[object] = queue.Queue()
    looper = LoopThread()
    reader = ProxyHeaderReader(looper.loop, theirs, timeout=timeout, on_header=results.put, on_failed=results.put)
    try:
        looper.call(reader.start)
        yield ours, theirs, results
    finally:
        looper.call(reader.cancel)
        looper.close()
        ours.close()
        theirs.close()


def test_on_the_loop_a_header_in_pieces_is_read_and_not_one_byte_more() -> None:
    with loop_reader(TIMEOUT) as (ours, theirs, results):
        ours.sendall(V2[:20])
        ours.sendall(V2[20:] + b"data")
        header = results.get(timeout=TIMEOUT)
        assert isinstance(header, ProxyHeader) and header.source == CLIENT
        assert theirs.recv(100) == b"data"


def test_on_the_loop_a_bad_a_cut_short_and_a_late_header_fail() -> None:
    with loop_reader(TIMEOUT) as (ours, _, results):
        ours.sendall(b"PROXY TCP9\r\n")
        assert isinstance(results.get(timeout=TIMEOUT), ProtocolError)
    with loop_reader(TIMEOUT) as (ours, _, results):
        ours.sendall(V1[:12])
        ours.shutdown(socket.SHUT_WR)
        error = results.get(timeout=TIMEOUT)
        assert isinstance(error, UnexpectedEOF) and "after 12 bytes" in str(error)
    with loop_reader(0.05) as (_, _, results):
        error = results.get(timeout=TIMEOUT)
        assert isinstance(error, TimedOut) and str(error) == "no PROXY header within 0.05 s"


# -- the threaded Server behind a balancer ------------------------------------------------------


class Seen:
    """What the handler saw and what the server refused, in order."""

    def __init__(self) -> None:
        self.peers: queue.Queue[tuple[Address | None, Address | None, bytes]] = queue.Queue()
        self.refused: queue.Queue[tuple[Address | None, str]] = queue.Queue()
        self.refused_in: list[str] = []  # the threads on_refused was called in

    def handler(self, conn: Connection) -> None:
        self.peers.put((conn.peer, conn.proxied_by, conn.recv_line(timeout=TIMEOUT)))
        conn.send_all(b"bye\n")

    def on_refused(self, peer: Address | None, reason: str) -> None:
        self.refused.put((peer, reason))
        self.refused_in.append(threading.current_thread().name)


@contextlib.contextmanager
def server(seen: Seen, **options: object) -> Iterator[InetAddress]:
    listeners = open_listeners(InetAddress("127.0.0.1", 0))
    with Server(listeners, seen.handler, on_refused=seen.on_refused, **options) as running:  # type: ignore[arg-type]
        running.start()
        address = running.addresses[0]
        assert isinstance(address, InetAddress)
        yield address


def closed_by_server(conn: Connection) -> bool:
    """The server closed ``conn``: end of file, or a reset (bytes it never read were left)."""
    try:
        return conn.recv(timeout=TIMEOUT) == b""
    except ConnectionLost:
        return True


def balancer(address: Address, header: bytes, source_host: str = "127.0.0.1") -> Connection:
    conn = open_connection(address, timeout=TIMEOUT, source_host=source_host)
    conn.send_all(header)
    return conn


def test_the_handler_sees_the_client_the_header_names_and_the_balancer_behind_it() -> None:
    seen = Seen()
    with server(seen, proxy_protocol=TRUST_LOOPBACK) as address:
        for header in (V1, V2):
            with balancer(address, header + b"hello\n") as conn:
                assert conn.recv_line() == b"bye\n"
                peer, proxied_by, line = seen.peers.get(timeout=TIMEOUT)
                assert (peer, line) == (CLIENT, b"hello\n")
                assert proxied_by == conn.local


def test_tls_starts_after_the_header(tls_files: TlsFiles) -> None:
    seen = Seen()
    with server(seen, proxy_protocol=TRUST_LOOPBACK, tls=tls_files.server_context()) as address:
        conn = balancer(address, V2)
        assert isinstance(conn.stream, SocketStream)
        secured = start_tls(conn.stream, tls_files.client_context(), server_hostname="127.0.0.1", timeout=TIMEOUT)
        with Connection(secured, timeout=TIMEOUT) as tls:
            tls.send_all(b"over tls\n")
            assert tls.recv_line() == b"bye\n"
        assert seen.peers.get(timeout=TIMEOUT) == (CLIENT, conn.local, b"over tls\n")


def test_a_local_header_keeps_the_sockets_peer() -> None:
    seen = Seen()
    with server(seen, proxy_protocol=TRUST_LOOPBACK) as address:
        health_check = encode_header(ProxyHeader(2, "local", "unspec", None, None))
        with balancer(address, health_check + b"ok?\n") as conn:
            assert conn.recv_line() == b"bye\n"
            assert seen.peers.get(timeout=TIMEOUT) == (conn.local, None, b"ok?\n")


def test_access_judges_the_client_not_the_balancer() -> None:
    seen = Seen()

    def not_127_0_0_9(peer: Address | None) -> bool:
        return isinstance(peer, InetAddress) and peer.host != "127.0.0.9"

    def not_the_balancer(peer: Address | None) -> bool:
        return not from_loopback(peer)

    with server(seen, proxy_protocol=TRUST_LOOPBACK, access=not_127_0_0_9) as address:
        denied = b"PROXY TCP4 127.0.0.9 127.0.0.1 1 443\r\n"
        with balancer(address, denied + b"let me in\n") as conn:
            assert closed_by_server(conn)
        assert seen.refused.get(timeout=TIMEOUT) == (InetAddress("127.0.0.9", 1), "not allowed")
    with server(seen, proxy_protocol=TRUST_LOOPBACK, access=not_the_balancer) as address:
        with balancer(address, V1 + b"hello\n") as conn:
            assert conn.recv_line() == b"bye\n"
        assert seen.peers.get(timeout=TIMEOUT)[0] == CLIENT


def test_an_untrusted_peer_is_refused_or_in_optional_mode_served_as_itself() -> None:
    seen = Seen()
    with server(seen, proxy_protocol=TRUST_LOOPBACK) as address:
        with balancer(address, V1, source_host="127.0.0.8") as conn:
            assert closed_by_server(conn)
            assert seen.refused.get(timeout=TIMEOUT) == (conn.local, "not a trusted PROXY protocol sender")
            assert seen.refused_in[0].startswith("enchufe-accept-")  # at accept: no thread started for it
    with server(seen, proxy_protocol=ProxyProtocol(from_loopback, optional=True)) as address:
        with balancer(address, V1, source_host="127.0.0.8") as conn:
            assert conn.recv_line() == b"bye\n"
            assert seen.peers.get(timeout=TIMEOUT) == (conn.local, None, V1)  # its bytes are its own data


def test_bad_and_silent_balancers_are_refused_and_the_server_goes_on() -> None:
    seen = Seen()
    with server(seen, proxy_protocol=TRUST_LOOPBACK, handshake_timeout=0.2) as address:
        with balancer(address, b"PROXY TCP4 01.2.3.4 1.2.3.4 1 1\r\nhello\n") as bad:
            assert closed_by_server(bad)
            peer, reason = seen.refused.get(timeout=TIMEOUT)
            assert (peer, reason[:32]) == (bad.local, "bad PROXY header: not a canonica")
        with balancer(address, b"") as silent:
            assert closed_by_server(silent)
            assert seen.refused.get(timeout=TIMEOUT) == (silent.local, "no PROXY header within 0.2 s")
        with balancer(address, V1 + b"still here\n") as good:
            assert good.recv_line() == b"bye\n"
            assert seen.peers.get(timeout=TIMEOUT)[::2] == (CLIENT, b"still here\n")


# -- the RequestServer behind a balancer --------------------------------------------------------


@contextlib.contextmanager
def request_server(seen: Seen, **options: object) -> Iterator[InetAddress]:
    def answer(conn: Connection) -> None:
        line = conn.recv_line()
        seen.peers.put((conn.peer, conn.proxied_by, line))
        conn.send_all(f"{conn.peer}\n".encode())

    listeners = open_listeners(InetAddress("127.0.0.1", 0))
    with RequestServer(listeners, answer, on_refused=seen.on_refused, **options) as running:  # type: ignore[arg-type]
        running.start()
        address = running.addresses[0]
        assert isinstance(address, InetAddress)
        yield address


def test_the_request_server_reads_the_header_once_and_every_request_sees_the_client() -> None:
    seen = Seen()
    with request_server(seen, proxy_protocol=TRUST_LOOPBACK) as address:
        with balancer(address, V2 + b"one\n") as conn:
            assert conn.recv_line() == b"127.0.0.7:4242\n"
            conn.send_all(b"two\n")
            assert conn.recv_line() == b"127.0.0.7:4242\n"
        assert [seen.peers.get(timeout=TIMEOUT)[2] for _ in range(2)] == [b"one\n", b"two\n"]


def test_the_request_server_refuses_bad_untrusted_and_denied_senders() -> None:
    seen = Seen()

    def not_127_0_0_9(peer: Address | None) -> bool:
        return isinstance(peer, InetAddress) and peer.host != "127.0.0.9"

    with request_server(seen, proxy_protocol=TRUST_LOOPBACK, access=not_127_0_0_9) as address:
        with balancer(address, b"PROXY TCP5\r\n") as bad:
            assert closed_by_server(bad)
            assert seen.refused.get(timeout=TIMEOUT)[1] == "bad PROXY header: unknown PROXY v1 protocol b'TCP5'"
        with balancer(address, V1, source_host="127.0.0.8") as untrusted:
            assert closed_by_server(untrusted)
            assert seen.refused.get(timeout=TIMEOUT)[1] == "not a trusted PROXY protocol sender"
        with balancer(address, b"PROXY TCP4 127.0.0.9 127.0.0.1 1 443\r\nhi\n") as denied:
            assert closed_by_server(denied)
            assert seen.refused.get(timeout=TIMEOUT) == (InetAddress("127.0.0.9", 1), "not allowed")
        with balancer(address, V1 + b"fine\n") as good:
            assert good.recv_line() == b"127.0.0.7:4242\n"
