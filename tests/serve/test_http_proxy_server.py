"""The HTTP proxy server end to end: HttpProxyNegotiator on ProxyServer, driven by curl
and ncat 7.93's --proxy client to a loopback HTTP server and echo server, by raw bad
requests, and by a slowloris client while another is served."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from enchufe.address import Address
from enchufe.proto.http_auth import ProxyAuthenticator
from enchufe.proto.http_proxy import HttpProxyNegotiator
from enchufe.proto.proxy import Credentials
from enchufe.serve.proxy_server import ProxyServer
from support.cli_e2e import recv_exactly, recv_until_eof
from support.interop import start
from support.loop import LoopThread
from support.proxy import running_proxy_server

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

TIMEOUT = 10.0
ALICE = "alice:secret"


class EchoRequest(http.server.BaseHTTPRequestHandler):
    """Answers each request with JSON of what it received: method, path, headers, body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(b"")

    def do_HEAD(self) -> None:
        self._answer(b"", head_only=True)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(body)

    def _answer(self, body: bytes, *, head_only: bool = False) -> None:
        seen = {"method": self.command, "path": self.path, "headers": list(self.headers.items()), "body": body.decode()}
        data = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), EchoRequest)
    thread = threading.Thread(target=server.serve_forever, name="web")
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def echo() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                while data := sock.recv(65536):
                    sock.sendall(data)

    thread = threading.Thread(target=serve, name="echo")
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(10)


def http_proxy(auth: str | None = None) -> contextlib.AbstractContextManager[tuple[ProxyServer, LoopThread, int]]:
    """An HTTP proxy server (``--proxy-auth auth`` if given) on a loop thread."""
    authenticator = None
    if auth is not None:
        authenticator = ProxyAuthenticator(Credentials.parse(auth), secret=os.urandom(16), clock=time.time)

    def negotiator(peer: Address | None) -> HttpProxyNegotiator:
        return HttpProxyNegotiator(authenticator)

    return running_proxy_server(negotiator)


def curl(port: int, url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-s", "-S", "--max-time", "10", "-x", f"http://127.0.0.1:{port}", *options, url],
        capture_output=True,
        timeout=20,
        check=False,
    )


def seen(result: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.interop
@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "connect"])
def test_curl_get_and_posts_through_it(web: int, tunnel: bool) -> None:
    url = f"http://127.0.0.1:{web}/a/b?c=d"
    extra = ["-p"] if tunnel else []
    with http_proxy() as (_, _, port):
        got = seen(curl(port, url, *extra, "-H", "X-Test: 1"))
        assert (got["method"], got["path"]) == ("GET", "/a/b?c=d")
        headers = {name.lower(): value for name, value in got["headers"]}  # type: ignore[attr-defined]
        assert headers["x-test"] == "1" and headers["host"] == f"127.0.0.1:{web}"
        if not tunnel:
            assert headers["connection"] == "close" and "proxy-connection" not in headers
        got = seen(curl(port, url, *extra, "--data-binary", "hello=world"))
        assert (got["method"], got["body"]) == ("POST", "hello=world")
        chunked = curl(port, url, *extra, "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 100_000)
        got = seen(chunked)
        assert (got["method"], got["body"]) == ("POST", "x" * 100_000)
        head = curl(port, url, *extra, "-I")
        assert head.returncode == 0 and head.stdout.startswith(b"HTTP/1.")


@pytest.mark.interop
@pytest.mark.parametrize("scheme", ["--proxy-basic", "--proxy-digest"])
@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "connect"])
def test_curl_with_credentials(web: int, scheme: str, tunnel: bool) -> None:
    url = f"http://127.0.0.1:{web}/x"
    extra = ["-p"] if tunnel else []
    with http_proxy(ALICE) as (_, _, port):
        assert seen(curl(port, url, *extra, scheme, "--proxy-user", ALICE))["path"] == "/x"
        status = "%{http_connect}" if tunnel else "%{http_code}"  # a CONNECT's own status, or the request's
        refused = curl(port, url, *extra, scheme, "--proxy-user", "alice:wrong", "-o", "/dev/null", "-w", status)
        assert refused.stdout == b"407"


@pytest.mark.interop
@pytest.mark.parametrize("auth", [None, ALICE])
def test_ncats_proxy_client_through_it(echo: int, auth: str | None) -> None:
    with http_proxy(auth) as (_, _, port):
        argv = ["ncat", "--proxy", f"127.0.0.1:{port}", "--proxy-type", "http", "127.0.0.1", str(echo)]
        with start(argv + (["--proxy-auth", auth] if auth else [])) as ncat:
            ncat.write(b"through enchufe\n")
            assert ncat.read_until(b"\n") == b"through enchufe\n"


def ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_until_eof(sock)


def test_bad_requests_get_ncats_statuses(echo: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        refused_port = closed.getsockname()[1]
    with http_proxy() as (_, _, port):
        assert ask(port, b"PUT http://127.0.0.1/ HTTP/1.0\r\n\r\n") == (
            b"HTTP/1.0 405 Method Not Allowed\r\nAllow: CONNECT, GET, HEAD, POST\r\n\r\n"
        )
        assert ask(port, b"garbage\r\n\r\n") == b"HTTP/1.0 400 Bad Request\r\n\r\n"
        assert ask(port, b"GET / HTTP/1.0\r\n\r\n") == b"HTTP/1.0 400 Bad Request\r\n\r\n"
        assert ask(port, f"CONNECT 127.0.0.1:{refused_port} HTTP/1.0\r\n\r\n".encode()) == (
            b"HTTP/1.0 504 Gateway Timeout\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET http://127.0.0.1/ HTTP/1.0\r\nX: " + b"a" * 100_000)
            assert recv_exactly(sock, 41) == b"HTTP/1.0 413 Request Entity Too Large\r\n\r\n"
        assert ask(port, f"CONNECT 127.0.0.1:{echo} HTTP/1.0\r\n\r\nearly".encode()) == (
            b"HTTP/1.0 200 OK\r\n\r\nearly"
        )
    with http_proxy(ALICE) as (_, _, port):
        assert ask(port, f"CONNECT 127.0.0.1:{echo} HTTP/1.0\r\n\r\n".encode()).startswith(
            b'HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="Ncat"\r\n'
        )


def test_a_slowloris_client_does_not_hold_up_another(echo: int) -> None:
    request = f"CONNECT 127.0.0.1:{echo} HTTP/1.0\r\n\r\n".encode()
    with (
        http_proxy() as (_, _, port),
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as slow,
    ):
        for byte in request[:-1]:  # the slow client's request, a byte at a time, not yet whole
            slow.sendall(bytes([byte]))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as fast:
            fast.sendall(request + b"ping")
            assert recv_exactly(fast, 23) == b"HTTP/1.0 200 OK\r\n\r\nping"
        slow.sendall(request[-1:] + b"pong")
        assert recv_exactly(slow, 23) == b"HTTP/1.0 200 OK\r\n\r\npong"
