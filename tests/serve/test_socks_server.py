"""The SOCKS4/5 server (proto/socks's negotiators on the ProxyServer engine) end to end:
curl and ncat 7.93 through it to a loopback HTTP server, our own client through it,
authentication, refusals, half-close both ways and many clients at once."""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from enchufe.address import Address
from enchufe.errors import ProxyError, ResolveError
from enchufe.net.connect import open_connection
from enchufe.net.resolve import Resolved, SystemResolver
from enchufe.proto.proxy import Credentials, ProxyNegotiator
from enchufe.proto.socks import Socks4Negotiator, Socks5Negotiator
from support.cli_e2e import TcpServer, recv_exactly, recv_until_eof
from support.procs import Process, free_port
from support.proxy import running_proxy_server

pytestmark = pytest.mark.timeout(60)

STEP = 10.0
#: A made-up name the server's own resolver maps to 127.0.0.1 (the system never sees it).
TARGET_NAME = "target.invalid"
BODY = b"hello through SOCKS\n"

Factory = Callable[[Address | None], ProxyNegotiator]


class TargetResolver:
    """Resolves :data:`TARGET_NAME` to 127.0.0.1 and address literals; no other name."""

    def resolve(
        self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
    ) -> list[Resolved]:
        literal = "127.0.0.1" if host == TARGET_NAME else host
        if literal != host or ":" in host or host.replace(".", "").isdigit():
            return SystemResolver(numeric_only=True).resolve(literal, port, family=family, type=type, proto=proto)
        raise ResolveError(f"{host}: no such name here")


def socks5(credentials: Credentials | None = None) -> Factory:
    return lambda peer: Socks5Negotiator(credentials)


def socks4(user_id: str | None = None) -> Factory:
    return lambda peer: Socks4Negotiator(user_id)


@contextlib.contextmanager
def socks_server(factory: Factory) -> Iterator[int]:
    with running_proxy_server(factory, resolver=TargetResolver()) as (_, _, port):
        yield port


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A tiny HTTP server on 127.0.0.1 answering every GET with :data:`BODY`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(STEP)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "", *args], capture_output=True, timeout=STEP + 5
    )


# -- curl ------------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize(
    ("option", "host", "factory"),
    [
        ("--socks5", "127.0.0.1", socks5()),
        ("--socks5-hostname", TARGET_NAME, socks5()),
        ("--socks4", "127.0.0.1", socks4()),
        ("--socks4a", TARGET_NAME, socks4()),
    ],
)
def test_curl_through_the_server(option: str, host: str, factory: Factory, http_port: int) -> None:
    with socks_server(factory) as port:
        done = curl(option, f"127.0.0.1:{port}", f"http://{host}:{http_port}/")
    assert (done.returncode, done.stdout) == (0, BODY), done.stderr


@pytest.mark.interop
def test_curl_with_a_user_name_and_password(http_port: int) -> None:
    with socks_server(socks5(Credentials("alice", "secret"))) as port:
        right = curl("--socks5", f"127.0.0.1:{port}", "--proxy-user", "alice:secret", f"http://127.0.0.1:{http_port}/")
        wrong = curl("--socks5", f"127.0.0.1:{port}", "--proxy-user", "alice:nope", f"http://127.0.0.1:{http_port}/")
        none = curl("--socks5", f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}/")
    assert (right.returncode, right.stdout) == (0, BODY), right.stderr
    assert wrong.returncode == 97 and b"rejected by the SOCKS5 server (1 1)" in wrong.stderr, wrong.stderr
    assert none.returncode == 97 and b"no authentication method was acceptable" in none.stderr.lower(), none.stderr


@pytest.mark.interop
def test_curl_is_told_a_closed_port_is_refused() -> None:
    closed = free_port()
    with socks_server(socks5()) as port:
        done = curl("--socks5", f"127.0.0.1:{port}", f"http://127.0.0.1:{closed}/")
    assert done.returncode == 97 and b"SOCKS5 connection to 127.0.0.1. (5)" in done.stderr, done.stderr  # reply 5


# -- ncat 7.93 as a client -------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize(
    ("kind", "factory", "extra"),
    [
        ("socks5", socks5(), []),
        ("socks5", socks5(Credentials("alice", "secret")), ["--proxy-auth", "alice:secret"]),
        ("socks4", socks4(), []),
        ("socks4", socks4("bob"), ["--proxy-auth", "bob"]),
    ],
)
def test_ncat_through_the_server(kind: str, factory: Factory, extra: list[str], http_port: int) -> None:
    with socks_server(factory) as port:
        argv = ["ncat", "--proxy", f"127.0.0.1:{port}", "--proxy-type", kind, *extra, "127.0.0.1", str(http_port)]
        with Process(argv, stdin=b"GET / HTTP/1.0\r\n\r\n") as ncat:
            assert ncat.wait(STEP) == 0, ncat.stderr
    assert ncat.stdout.startswith(b"HTTP/1.0 200") and ncat.stdout.endswith(BODY)


@pytest.mark.interop
def test_ncat_is_refused_a_wrong_password() -> None:
    with socks_server(socks5(Credentials("alice", "secret"))) as port:
        argv = ["ncat", "-v", "--proxy", f"127.0.0.1:{port}", "--proxy-type", "socks5", "--proxy-auth", "alice:x"]
        with Process([*argv, "127.0.0.1", "9"], stdin=b"") as ncat:
            assert ncat.wait(STEP) == 1
    assert "Ncat: Error: authentication failed." in ncat.stderr_lines


# -- our own client through our own server ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "factory", "host"),
    [
        ("socks5://alice:secret@{}", socks5(Credentials("alice", "secret")), TARGET_NAME),
        ("socks5://{}", socks5(), "127.0.0.1"),
        ("socks4://bob@{}", socks4("bob"), TARGET_NAME),
        ("socks4://bob:pw@{}", socks4("bob:pw"), TARGET_NAME),  # ncat's user id: USER:PASS whole
    ],
)
def test_open_connection_through_the_server(url: str, factory: Factory, host: str, http_port: int) -> None:
    with socks_server(factory) as port:
        conn = open_connection(f"{host}:{http_port}", proxy=url.format(f"127.0.0.1:{port}"), timeout=STEP)
        with conn:
            conn.send_all(b"GET / HTTP/1.0\r\n\r\n")
            assert recv_all(conn).endswith(BODY)


def recv_all(conn: object) -> bytes:
    from enchufe.net.connection import Connection

    assert isinstance(conn, Connection)
    return b"".join(iter(lambda: conn.recv(65536, timeout=STEP), b""))


def test_a_closed_port_is_reply_5_and_a_refused_password_our_clients_error() -> None:
    closed = free_port()
    with socks_server(socks5()) as port:
        with pytest.raises(ProxyError) as caught:
            open_connection(f"127.0.0.1:{closed}", proxy=f"socks5://127.0.0.1:{port}", timeout=STEP)
    assert (str(caught.value), caught.value.code) == ("Error: Connection refused.", 5)
    with socks_server(socks5(Credentials("alice", "secret"))) as port:
        with pytest.raises(ProxyError, match=r"^Error: authentication failed\.$"):
            open_connection("127.0.0.1:9", proxy=f"socks5://alice:x@127.0.0.1:{port}", timeout=STEP)
    with socks_server(socks4()) as port:
        with pytest.raises(ProxyError) as caught:
            open_connection(f"127.0.0.1:{closed}", proxy=f"socks4://127.0.0.1:{port}", timeout=STEP)
    assert caught.value.code == 91
    with socks_server(socks5()) as port:
        with pytest.raises(ProxyError) as caught:
            open_connection("nowhere.invalid:80", proxy=f"socks5://127.0.0.1:{port}", timeout=STEP)
    assert (str(caught.value), caught.value.code) == ("Error: Host unreachable.", 4)


# -- raw clients: half-close, the bound address, many at once --------------------------------


def socks5_connect_raw(port: int, target_port: int) -> socket.socket:
    """A raw SOCKS5 client's tunnel to 127.0.0.1:target_port, the reply checked."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
    sock.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01" + target_port.to_bytes(2, "big"))
    assert recv_exactly(sock, 2) == b"\x05\x00"
    reply = recv_exactly(sock, 10)
    assert reply[:4] == b"\x05\x00\x00\x01"
    return sock


def test_the_success_reply_carries_the_upstream_connections_local_address() -> None:
    with TcpServer() as target, socks_server(socks5()) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
        sock.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + target.port.to_bytes(2, "big"))
        far = target.accept()
        reply = recv_exactly(sock, 12)[2:]
        assert (socket.inet_ntoa(reply[4:8]), int.from_bytes(reply[8:10], "big")) == far.getpeername()
        far.close()
        sock.close()


def test_half_close_both_ways_and_early_data_first() -> None:
    with TcpServer() as target, socks_server(socks4()) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
        sock.sendall(b"\x04\x01" + target.port.to_bytes(2, "big") + b"\x7f\x00\x00\x01\x00" + b"early ")
        far = target.accept()
        assert recv_exactly(sock, 8)[:2] == b"\x00\x5a"
        sock.sendall(b"and late")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(far) == b"early and late"  # the client's end reached upstream as an end
        far.sendall(b"answer after the client's end")
        far.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b"answer after the client's end"
        far.close()
        sock.close()


def echo(target: TcpServer, count: int) -> None:
    def serve(conn: socket.socket) -> None:
        with conn:
            data = recv_until_eof(conn)
            conn.sendall(data[::-1])

    threads = []
    for _ in range(count):
        thread = threading.Thread(target=serve, args=(target.accept(),), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(STEP)


def test_many_clients_at_once() -> None:
    count = 60
    with TcpServer(backlog=count) as target, socks_server(socks5()) as port:
        server = threading.Thread(target=echo, args=(target, count), daemon=True)
        server.start()
        clients = [socks5_connect_raw(port, target.port) for _ in range(count)]  # all open together
        for index, sock in enumerate(clients):
            sock.sendall(f"client {index} ".encode() * 100)
            sock.shutdown(socket.SHUT_WR)
        for index, sock in enumerate(clients):
            assert recv_until_eof(sock) == (f"client {index} ".encode() * 100)[::-1]
            sock.close()
        server.join(STEP)
