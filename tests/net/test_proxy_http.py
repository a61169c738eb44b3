"""HTTP CONNECT, the client: http_connect and open_connection(proxy=...) against scripted
proxies on loopback (refusals, garbage, truncation, silence, authentication) and against
ncat 7.93's own proxy server."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from enchufe.address import InetAddress
from enchufe.errors import ConnectTimeout, ProxyError
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.proxy import Proxy
from enchufe.proto.http import RequestHead, RequestReader
from enchufe.proto.http_auth import OK, ProxyAuthenticator, parse_challenges
from enchufe.proto.proxy import Credentials
from support.interop import start
from support.procs import free_port

pytestmark = pytest.mark.timeout(30)

ALICE = Credentials("alice", "secret")
TARGET = InetAddress("127.0.0.1", 9)

#: What a scripted proxy does with one accepted connection.
Script = Callable[[socket.socket, "ScriptedProxy"], None]


def read_head(sock: socket.socket) -> RequestHead | None:
    reader = RequestReader()
    while (data := sock.recv(1)) != b"":  # byte by byte: nothing after the head is taken
        found = reader.feed(data)
        if found is not None:
            return found[0]
    return None


class ScriptedProxy:
    """A listener on loopback that runs one script per accepted connection, in order,
    and records each request head it read."""

    def __init__(self, scripts: list[Script]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = InetAddress("127.0.0.1", self.listener.getsockname()[1])
        self.heads: list[RequestHead] = []
        self.stop = threading.Event()
        self._scripts = scripts
        self._thread = threading.Thread(target=self._serve, name="scripted-proxy")
        self._thread.start()

    def request(self, sock: socket.socket) -> RequestHead:
        head = read_head(sock)
        assert head is not None
        self.heads.append(head)
        return head

    def _serve(self) -> None:
        for script in self._scripts:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock, contextlib.suppress(ConnectionError):  # a client that gave up
                script(sock, self)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self._thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedProxy]]:
    proxies: list[ScriptedProxy] = []

    def make(*scripts: Script) -> ScriptedProxy:
        proxies.append(ScriptedProxy(list(scripts)))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def answer(reply: bytes, *, then: bytes = b"", echo: bool = True) -> Script:
    """Read a request, send ``reply``; for a 2xx, then echo one chunk prefixed by ``then``."""

    def script(sock: socket.socket, proxy: ScriptedProxy) -> None:
        proxy.request(sock)
        sock.sendall(reply)
        if echo and reply[8:11] == b" 20":
            sock.sendall(then)
            sock.sendall(sock.recv(100))

    return script


def connect(proxy: ScriptedProxy, credentials: Credentials | None = None, target: InetAddress = TARGET) -> Connection:
    return open_connection(target, proxy=Proxy("http", proxy.address, credentials), timeout=5)


def test_connect_as_ncat_sends_it_and_data_after_the_answer_comes_first(scripted: Callable[..., ScriptedProxy]) -> None:
    proxy = scripted(answer(b"HTTP/1.0 200 Connection established\r\nX: y\r\n\r\nearly", then=b"-"))
    with connect(proxy) as conn:
        conn.send_all(b"ping")
        assert conn.recv_exactly(len(b"early-ping"), timeout=5) == b"early-ping"
    assert proxy.heads[0].target == "127.0.0.1:9"
    assert (proxy.heads[0].method, proxy.heads[0].version, list(proxy.heads[0].headers)) == (
        "CONNECT",
        "HTTP/1.0",
        [],
    )


def test_ipv6_target_in_brackets_and_a_name_sent_for_the_proxy_to_resolve(
    scripted: Callable[..., ScriptedProxy],
) -> None:
    proxy = scripted(answer(b"HTTP/1.1 200 OK\r\n\r\n"), answer(b"HTTP/1.0 200 OK\r\n\r\n"))
    with connect(proxy, target=InetAddress("::1", 80)) as conn:
        conn.send_all(b"x")
        assert conn.recv_exactly(1, timeout=5) == b"x"
    with connect(proxy, target=InetAddress("target.invalid", 80)) as conn:
        conn.send_all(b"x")
        assert conn.recv_exactly(1, timeout=5) == b"x"
    assert [head.target for head in proxy.heads] == ["[::1]:80", "target.invalid:80"]


def test_any_2xx_opens_the_tunnel(scripted: Callable[..., ScriptedProxy]) -> None:
    proxy = scripted(answer(b"HTTP/1.1 201 Created\r\n\r\n"))
    with connect(proxy) as conn:
        conn.send_all(b"x")
        assert conn.recv_exactly(1, timeout=5) == b"x"


def test_a_reply_byte_by_byte(scripted: Callable[..., ScriptedProxy]) -> None:
    def script(sock: socket.socket, proxy: ScriptedProxy) -> None:
        proxy.request(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nafter":
            sock.sendall(bytes([byte]))
        sock.recv(1)

    proxy = scripted(script)
    with connect(proxy) as conn:
        assert conn.recv_exactly(5, timeout=5) == b"after"
        conn.send_all(b".")


@pytest.mark.parametrize(
    ("reply", "message", "code"),
    [
        (b"HTTP/1.0 403 Forbidden\r\n\r\n", r"^Proxy returned status code 403\.$", 403),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", r"^Proxy returned status code 502\.$", 502),
        (b"garbage\r\n\r\n", "^Proxy sent a malformed response: Malformed status line 'garbage'", None),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "^Proxy closed the connection before its response was complete", None),
        (b"HTTP/1.0 200 OK\r\nX: y", "^Proxy closed the connection before its response was complete", None),
        (b"", "^Proxy closed the connection before its response was complete", None),
        (b"HTTP/1.0 200 OK\r\nX: " + b"a" * 9000, "^Proxy sent a response line longer than 8192 bytes", None),
        (
            b'HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="Ncat"\r\n\r\n',
            r"^Proxy returned status code 407\. The proxy requires credentials\.$",
            407,
        ),
    ],
)
def test_refusals_and_broken_replies(
    scripted: Callable[..., ScriptedProxy], reply: bytes, message: str, code: int | None
) -> None:
    proxy = scripted(answer(reply, echo=False))
    with pytest.raises(ProxyError, match=message) as caught:
        connect(proxy)
    assert caught.value.code == code
    assert caught.value.proxy == str(proxy.address)


def test_silence_is_a_timeout_within_the_deadline(scripted: Callable[..., ScriptedProxy]) -> None:
    def silent(sock: socket.socket, proxy: ScriptedProxy) -> None:
        proxy.request(sock)
        proxy.stop.wait(20)

    proxy = scripted(silent)
    with pytest.raises(ConnectTimeout, match="no answer from the proxy in time"):
        open_connection(TARGET, proxy=Proxy("http", proxy.address), timeout=1)


def challenge_then(challenge: bytes, check: Callable[[RequestHead], bool]) -> list[Script]:
    """A 407 with ``challenge``'s headers on the first connection, then on the second
    200 if ``check`` approves the request, else 407 again."""

    def first(sock: socket.socket, proxy: ScriptedProxy) -> None:
        proxy.request(sock)
        sock.sendall(b"HTTP/1.0 407 Proxy Authentication Required\r\n" + challenge + b"\r\n")
        assert sock.recv(1) == b""  # the client closes this one

    def second(sock: socket.socket, proxy: ScriptedProxy) -> None:
        head = proxy.request(sock)
        if check(head):
            sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
            sock.sendall(sock.recv(100))
        else:
            sock.sendall(b"HTTP/1.0 407 Proxy Authentication Required\r\n" + challenge + b"\r\n")

    return [first, second]


def authorization(head: RequestHead) -> str:
    value = head.headers.get("Proxy-Authorization")
    assert value is not None
    return value


def round_trip(conn_factory: Callable[[], Connection]) -> None:
    with conn_factory() as conn:
        conn.send_all(b"z")
        assert conn.recv_exactly(1, timeout=5) == b"z"


def test_407_then_200_with_basic(scripted: Callable[..., ScriptedProxy]) -> None:
    proxy = scripted(
        *challenge_then(
            b'Proxy-Authenticate: Basic realm="Ncat"\r\n',
            lambda head: authorization(head) == "Basic YWxpY2U6c2VjcmV0",
        )
    )
    round_trip(lambda: connect(proxy, ALICE))
    assert proxy.heads[0].headers.get("Proxy-Authorization") is None  # as ncat: only when asked


def test_407_then_200_with_digest_qop_auth_checked_by_a_real_authenticator(
    scripted: Callable[..., ScriptedProxy],
) -> None:
    server = ProxyAuthenticator(ALICE, secret=b"s" * 16, clock=lambda: 1000.0)
    challenge = b"".join(f"{name}: {value}\r\n".encode() for name, value in server.challenges())
    proxy = scripted(
        *challenge_then(challenge, lambda head: server.check(head.method, [head.target], authorization(head)) == OK)
    )
    round_trip(lambda: connect(proxy, ALICE))
    assert authorization(proxy.heads[1]).startswith('Digest username="alice", realm="Ncat", nonce="1000.000000-')


def test_digest_without_qop(scripted: Callable[..., ScriptedProxy]) -> None:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    expected = md5(f"{md5('alice:r:secret')}:n0nce:{md5('CONNECT:[::1]:80')}")

    def check(head: RequestHead) -> bool:
        [params] = parse_challenges([authorization(head)])
        return params.params == {
            "username": "alice",
            "realm": "r",
            "nonce": "n0nce",
            "uri": "[::1]:80",
            "response": expected,
        }

    proxy = scripted(*challenge_then(b'Proxy-Authenticate: Digest realm="r", nonce="n0nce"\r\n', check))
    round_trip(lambda: connect(proxy, ALICE, target=InetAddress("::1", 80)))


def test_digest_is_chosen_when_both_are_offered(scripted: Callable[..., ScriptedProxy]) -> None:
    challenge = (
        b'Proxy-Authenticate: Basic realm="r"\r\nProxy-Authenticate: Digest realm="r", nonce="n", qop="auth"\r\n'
    )
    proxy = scripted(*challenge_then(challenge, lambda head: authorization(head).startswith("Digest ")))
    round_trip(lambda: connect(proxy, ALICE))


def test_wrong_credentials(scripted: Callable[..., ScriptedProxy]) -> None:
    proxy = scripted(*challenge_then(b'Proxy-Authenticate: Basic realm="r"\r\n', lambda head: False))
    with pytest.raises(ProxyError, match=r"^Proxy returned status code 407\. The credentials were refused\.$"):
        connect(proxy, ALICE)


def test_a_challenge_enchufe_cannot_answer(scripted: Callable[..., ScriptedProxy]) -> None:
    proxy = scripted(answer(b"HTTP/1.0 407 Auth\r\nProxy-Authenticate: Negotiate\r\n\r\n"))
    with pytest.raises(ProxyError, match=r"offers no scheme enchufe can answer.*: Negotiate$"):
        connect(proxy, ALICE)


# --- ncat 7.93's proxy server --------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[InetAddress]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                while data := sock.recv(65536):
                    sock.sendall(data)

    thread = threading.Thread(target=serve, name="echo")
    thread.start()
    yield InetAddress("127.0.0.1", listener.getsockname()[1])
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(10)


@pytest.mark.interop
@pytest.mark.parametrize("auth", [None, "alice:secret"])
def test_through_ncats_proxy_server(echo_server: InetAddress, auth: str | None) -> None:
    port = free_port()
    argv = ["ncat", "-v", "-l", "127.0.0.1", str(port), "--proxy-type", "http"]
    with start(argv + (["--proxy-auth", auth] if auth else [])) as ncat:
        # ncat 7.93's proxy server binds every address whatever the host, IPv6 first:
        # the IPv4 socket this test connects to is the second line.
        ncat.wait_for_line(r"^Ncat: Listening on 0\.0\.0\.0:")
        proxy = Proxy("http", InetAddress("127.0.0.1", port), None if auth is None else Credentials.parse(auth))
        with open_connection(echo_server, proxy=proxy, timeout=5) as conn:
            conn.send_all(b"through ncat")
            assert conn.recv_exactly(12, timeout=5) == b"through ncat"
        if auth:
            with pytest.raises(ProxyError, match=r"^Proxy returned status code 407\. The credentials were refused"):
                open_connection(echo_server, proxy=Proxy("http", proxy.address, Credentials("alice", "x")), timeout=5)
