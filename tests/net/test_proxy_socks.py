"""The SOCKS4/4a/5 clients against scripted SOCKS servers on loopback: every reply code,
authentication, garbage, truncation, silence, replies in pieces, data after the reply,
names resolved by the test's own proxy, IPv6, chains; and ncat 7.93 offering what we offer."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from enchufe.errors import ConnectTimeout, ProxyError, ReceiveTimeout
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.proxy_socks import socks4_connect, socks5_connect
from enchufe.net.stream import SocketStream
from enchufe.proto.proxy import Credentials
from enchufe.proto.socks import socks5_greeting
from support.cli_e2e import family_of, recv_until_eof
from support.procs import Process

pytestmark = pytest.mark.timeout(30)

STEP = 10.0
#: The made-up name the test's proxies resolve themselves (never the system).
TARGET_NAME = "target.invalid"

Script = Callable[[socket.socket], None]


class ScriptedProxy:
    """A listener on loopback whose every connection is served by ``script(sock)`` in a
    thread of its own; what each connection sent is in :attr:`received` (in order), and
    an assertion that fails in a script fails the test when the block ends."""

    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        self.script = script
        self.host = host
        self.listener = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.port: int = self.listener.getsockname()[1]
        self.url = f"{'[' + host + ']' if ':' in host else host}:{self.port}"
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        # Polled, so that close() still serves a connection the kernel accepted before it.
        self.listener.settimeout(0.01)
        while True:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                if self._stopping.is_set():
                    return
                continue
            sock.settimeout(STEP)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                self.script(sock)
            except (OSError, EOFError):
                pass  # the client went away: what it saw is the test's business
            except BaseException as exc:  # noqa: BLE001 - reported in close()
                self.errors.append(exc)

    def close(self) -> None:
        self._stopping.set()
        self._accepter.join(STEP)
        self.listener.close()
        for thread in self._threads:
            thread.join(STEP)
        if self.errors:
            raise self.errors[0]


@contextlib.contextmanager
def scripted(script: Script, host: str = "127.0.0.1") -> Iterator[ScriptedProxy]:
    proxy = ScriptedProxy(script, host)
    try:
        yield proxy
    finally:
        proxy.close()


def connect_to(proxy: ScriptedProxy) -> Connection:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=STEP)
    sock.settimeout(None)
    stream = SocketStream(sock)
    return Connection(stream, local=stream.local_address, peer=stream.peer_address)


def deadline(seconds: float = STEP) -> float:
    return time.monotonic() + seconds


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or ``EOFError`` when the client ends first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"the client ended after {data!r}")
        data += chunk
    return data


def read_socks5_request(sock: socket.socket) -> tuple[bytes, str, int]:
    """The request's bytes, the host (a name or address) and port it asks for."""
    head = recv_exactly(sock, 4)
    if head[3] == 1:
        raw = recv_exactly(sock, 4)
        host = socket.inet_ntop(socket.AF_INET, raw)
    elif head[3] == 4:
        raw = recv_exactly(sock, 16)
        host = socket.inet_ntop(socket.AF_INET6, raw)
    else:
        raw = recv_exactly(sock, 1)
        raw += recv_exactly(sock, raw[0])
        host = raw[1:].decode()
    port_bytes = recv_exactly(sock, 2)
    return head + raw + port_bytes, host, int.from_bytes(port_bytes, "big")


def read_socks4_request(sock: socket.socket) -> tuple[bytes, str, int, bytes]:
    """The request's bytes, host, port and user id."""
    head = recv_exactly(sock, 8)
    wire = head
    user_id = b""
    while (byte := recv_exactly(sock, 1)) != b"\0":
        user_id += byte
    wire += user_id + b"\0"
    host = socket.inet_ntop(socket.AF_INET, head[4:8])
    if head[4:7] == b"\0\0\0":
        name = b""
        while (byte := recv_exactly(sock, 1)) != b"\0":
            name += byte
        wire += name + b"\0"
        host = name.decode()
    return wire, host, int.from_bytes(head[2:4], "big"), user_id


def socks5_replying(*replies: bytes, then: bytes = b"") -> Script:
    """A SOCKS5 proxy that reads the greeting (and the auth request when it selects
    method 2), answers each step with the next of ``replies`` and sends ``then``."""

    def script(sock: socket.socket) -> None:
        greeting = recv_exactly(sock, 2)
        recv_exactly(sock, greeting[1])
        sock.sendall(replies[0])
        rest = replies[1:]
        if replies[0] == b"\x05\x02" and rest:
            user = recv_exactly(sock, 2)
            recv_exactly(sock, user[1])
            recv_exactly(sock, recv_exactly(sock, 1)[0])
            sock.sendall(rest[0])
            rest = rest[1:]
        if rest:
            read_socks5_request(sock)
            sock.sendall(rest[0] + then)
        recv_until_eof(sock)

    return script


def recording(received: list[bytes], replies: list[bytes], *, then: bytes = b"") -> Script:
    """A proxy that records each read and answers with the next reply: for the exact bytes
    a client sends (the greeting, the auth request, the request)."""

    def script(sock: socket.socket) -> None:
        greeting = recv_exactly(sock, 2)
        received.append(greeting + recv_exactly(sock, greeting[1]))
        sock.sendall(replies[0])
        if replies[0] == b"\x05\x02":
            user = recv_exactly(sock, 2)
            user += recv_exactly(sock, user[1])
            length = recv_exactly(sock, 1)
            received.append(user + length + recv_exactly(sock, length[0]))
            sock.sendall(replies[1])
        received.append(read_socks5_request(sock)[0])
        sock.sendall(replies[-1] + then)
        received.append(recv_until_eof(sock))

    return script


SUCCESS = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\xd2"

# -- SOCKS5 ----------------------------------------------------------------------------------


def test_socks5_no_auth_sends_ncats_bytes_and_leaves_data_after_the_reply() -> None:
    received: list[bytes] = []
    with scripted(recording(received, [b"\x05\x00", SUCCESS], then=b"hello from the target")) as proxy:
        conn = connect_to(proxy)
        socks5_connect(conn, "127.0.0.1", 9999, None, deadline=deadline())
        assert conn.buffered == 0 or conn.recv_exactly(5, timeout=STEP) == b"hello"  # never part of the reply
        assert conn.recv_until(b"target", timeout=STEP).endswith(b"target")
        conn.send_all(b"hi\n")
        conn.close()
    assert received == [b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x00\x01'\x0f", b"hi\n"]


def test_data_after_the_reply_in_the_same_segment_stays_in_the_connection() -> None:
    with scripted(socks5_replying(b"\x05\x00", SUCCESS, then=b"first")) as proxy:
        conn = connect_to(proxy)
        socks5_connect(conn, "127.0.0.1", 1, None, deadline=deadline())
        assert conn.recv_exactly(5, timeout=STEP) == b"first"
        conn.close()


def test_socks5_username_and_password_accepted() -> None:
    received: list[bytes] = []
    with scripted(recording(received, [b"\x05\x02", b"\x01\x00", SUCCESS])) as proxy:
        conn = connect_to(proxy)
        socks5_connect(conn, TARGET_NAME, 80, Credentials("alice", "secret"), deadline=deadline())
        conn.close()
    assert received[:3] == [b"\x05\x02\x00\x02", b"\x01\x05alice\x06secret", b"\x05\x01\x00\x03\x0etarget.invalid\x00P"]


def test_credentials_are_offered_but_not_needed_when_the_proxy_takes_no_auth() -> None:
    received: list[bytes] = []
    with scripted(recording(received, [b"\x05\x00", SUCCESS])) as proxy:
        conn = connect_to(proxy)
        socks5_connect(conn, "::1", 80, Credentials("alice", "secret"), deadline=deadline())
        conn.close()
    assert received[:2] == [b"\x05\x02\x00\x02", b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x00P"]


@pytest.mark.parametrize(
    ("replies", "credentials", "message"),
    [
        ((b"\x05\x02", b"\x01\x01"), Credentials("alice", "wrong"), "Error: authentication failed."),
        ((b"\x05\x02", b"\x01\x01"), Credentials("alice"), "Error: invalid username:password combo."),
        ((b"\x05\xff",), None, "Error: no acceptable authentication method proposed."),
        ((b"\x05\xff",), Credentials("alice", "secret"), "Error: no acceptable authentication method proposed."),
        ((b"\x05\x02",), None, "Error: proxy selected invalid authentication method."),
        ((b"\x05\x01",), Credentials("alice", "secret"), "Error: proxy selected invalid authentication method."),
        ((b"HTTP/1.0 400 Bad Request\r\n\r\n",), None, "Error: wrong SOCKS version in connect response."),
        ((b"\x05\x00", b"\x04\x00\x00\x01" + bytes(6)), None, "Error: wrong SOCKS version in request response."),
        ((b"\x05\x00", b"\x05\x00\x00\x07" + bytes(6)), None, "Error: invalid proxy bind address type."),
    ],
)
def test_socks5_refusals_and_garbage_are_ncats_messages(
    replies: tuple[bytes, ...], credentials: Credentials | None, message: str
) -> None:
    with scripted(socks5_replying(*replies)) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError) as caught:
            socks5_connect(conn, "127.0.0.1", 80, credentials, deadline=deadline())
        conn.close()
    assert str(caught.value) == message
    assert caught.value.proxy == f"127.0.0.1:{proxy.port}"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (1, "Error: general SOCKS server failure."),
        (2, "Error: connection not allowed by ruleset."),
        (3, "Error: Network unreachable."),
        (4, "Error: Host unreachable."),
        (5, "Error: Connection refused."),
        (6, "Error: TTL expired."),
        (7, "Error: Command not supported."),
        (8, "Error: Address type not supported."),
        (9, "Error: unassigned value in the reply."),
        (255, "Error: unassigned value in the reply."),
    ],
)
def test_every_socks5_reply_code_is_ncats_message_with_its_code(code: int, message: str) -> None:
    with scripted(socks5_replying(b"\x05\x00", bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError) as caught:
            socks5_connect(conn, "127.0.0.1", 80, None, deadline=deadline())
        conn.close()
    assert (str(caught.value), caught.value.code) == (message, code)


def truncated(*sent: bytes) -> Script:
    """Reads what a client sends first, answers ``sent`` (one per read) and closes."""

    def script(sock: socket.socket) -> None:
        for answer in sent:
            sock.recv(1024)
            sock.sendall(answer)

    return script


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ((b"",), "Error: malformed connect response from proxy."),
        ((b"\x05",), "Error: malformed connect response from proxy."),
        ((b"\x05\x00", b"\x05\x00\x00\x01\x7f"), "Error: malformed request response from proxy."),
        ((b"\x05\x00", b"\x05\x00\x00\x03\x09short"), "Error: malformed request response from proxy."),
        ((b"\x05\x02", b"\x01"), "Error: malformed proxy authentication response."),
    ],
)
def test_a_truncated_socks5_reply_is_a_proxy_error(sent: tuple[bytes, ...], message: str) -> None:
    with scripted(truncated(*sent)) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError) as caught:
            socks5_connect(conn, "127.0.0.1", 80, Credentials("u", "p"), deadline=deadline())
        conn.close()
    assert str(caught.value) == message


def test_a_reply_byte_by_byte_is_read_whole_and_nothing_past_it() -> None:
    reply = b"\x05\x00\x00\x03\x0bexample.org\x01\xbb"

    def script(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv_exactly(sock, 3)
        for byte in b"\x05\x00":
            sock.send(bytes([byte]))
        read_socks5_request(sock)
        for byte in reply + b"after":
            sock.send(bytes([byte]))
            time.sleep(0.002)  # pacing, so that the bytes arrive apart
        recv_until_eof(sock)

    with scripted(script) as proxy:
        conn = connect_to(proxy)
        socks5_connect(conn, "127.0.0.1", 80, None, deadline=deadline())
        assert conn.recv_exactly(5, timeout=STEP) == b"after"
        conn.close()


def silent(sock: socket.socket) -> None:
    recv_until_eof(sock)


def test_a_silent_proxy_times_out_at_the_deadline() -> None:
    with scripted(silent) as proxy:
        for handshake in (
            lambda conn: socks5_connect(conn, "127.0.0.1", 80, None, deadline=deadline(0.3)),
            lambda conn: socks4_connect(conn, "127.0.0.1", 80, "", deadline=deadline(0.3)),
        ):
            conn = connect_to(proxy)
            with pytest.raises(ReceiveTimeout):
                handshake(conn)
            conn.close()


@pytest.mark.parametrize("kind", ["socks4", "socks5"])
def test_a_silent_proxy_through_open_connection_is_a_connect_timeout_within_the_deadline(kind: str) -> None:
    with scripted(silent) as proxy:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            open_connection("127.0.0.1:80", proxy=f"{kind}://{proxy.url}", timeout=1.0)
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < STEP  # bounded by the deadline, not a hang (ncat hangs here)


# -- SOCKS4 and SOCKS4a ----------------------------------------------------------------------


def socks4_replying(code: int, then: bytes = b"", received: list[bytes] | None = None) -> Script:
    def script(sock: socket.socket) -> None:
        wire, _, _, _ = read_socks4_request(sock)
        if received is not None:
            received.append(wire)
        sock.sendall(bytes([0, code, 0, 0, 0, 0, 0, 0]) + then)
        recv_until_eof(sock)

    return script


def test_socks4_to_an_address_with_a_user_id_then_data_after_the_reply() -> None:
    received: list[bytes] = []
    with scripted(socks4_replying(90, b"data", received)) as proxy:
        conn = connect_to(proxy)
        socks4_connect(conn, "127.0.0.1", 9999, "bob", deadline=deadline())
        assert conn.recv_exactly(4, timeout=STEP) == b"data"
        conn.close()
    assert received == [b"\x04\x01'\x0f\x7f\x00\x00\x01bob\x00"]


def test_socks4a_for_a_name() -> None:
    received: list[bytes] = []
    with scripted(socks4_replying(90, received=received)) as proxy:
        conn = connect_to(proxy)
        socks4_connect(conn, TARGET_NAME, 9999, "", deadline=deadline())
        conn.close()
    assert received == [b"\x04\x01'\x0f\x00\x00\x00\x01\x00target.invalid\x00"]


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (91, "request rejected or failed"),
        (92, "cannot reach the client's identd"),
        (93, "does not match identd's"),
        (0, "an unknown reply code"),
    ],
)
def test_socks4_refusals(code: int, meaning: str) -> None:
    with scripted(socks4_replying(code)) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError) as caught:
            socks4_connect(conn, "127.0.0.1", 80, "", deadline=deadline())
        conn.close()
    assert str(caught.value).startswith("Proxy connection failed: ")  # ncat's words, then what it means
    assert meaning in str(caught.value) and caught.value.code == code


def test_socks4_garbage_truncation_and_ipv6() -> None:
    with scripted(truncated(b"HTTP/1.0 400 Bad\r\n\r\n")) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError, match="wrong SOCKS4 reply version 72"):
            socks4_connect(conn, "127.0.0.1", 80, "", deadline=deadline())
        conn.close()
    with scripted(truncated(b"\x00\x5a\x00")) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError, match=r"^Error: short response from proxy\.$"):  # ncat's words
            socks4_connect(conn, "127.0.0.1", 80, "", deadline=deadline())
        conn.close()
    received: list[bytes] = []
    with scripted(lambda sock: received.append(recv_until_eof(sock))) as proxy:
        conn = connect_to(proxy)
        with pytest.raises(ProxyError, match="IPv6 addresses are not supported with SOCKS4"):
            socks4_connect(conn, "::1", 80, "", deadline=deadline())
        conn.close()
    assert received == [b""]  # refused before a byte was sent


# -- real tunnels: proxies that connect, names they resolve, IPv6, chains ---------------------


def relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways with half-close until both directions end."""

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    other.start()
    pump(client, upstream)
    other.join(STEP)


def resolve_here(host: str) -> str:
    """The test proxies' own resolver: the made-up name is this machine."""
    return "127.0.0.1" if host == TARGET_NAME else host


def socks5_relay(sock: socket.socket) -> None:
    """A working SOCKS5 proxy (no auth) that resolves :data:`TARGET_NAME` itself."""
    greeting = recv_exactly(sock, 2)
    assert 0 in recv_exactly(sock, greeting[1])
    sock.sendall(b"\x05\x00")
    _, host, port = read_socks5_request(sock)
    with socket.create_connection((resolve_here(host), port), timeout=STEP) as upstream:
        sock.sendall(SUCCESS)
        relay(sock, upstream)


def socks4_relay(sock: socket.socket) -> None:
    _, host, port, _ = read_socks4_request(sock)
    with socket.create_connection((resolve_here(host), port), timeout=STEP) as upstream:
        sock.sendall(b"\x00\x5a" + bytes(6))
        relay(sock, upstream)


def echo_upper(sock: socket.socket) -> None:
    """The target: answers each byte upper-cased, then half-closes after the client."""
    data = recv_until_eof(sock)
    sock.sendall(data.upper())


@pytest.mark.parametrize(
    ("kind", "target_host", "target_address"),
    [
        ("socks5", TARGET_NAME, "127.0.0.1"),
        ("socks5", "127.0.0.1", "127.0.0.1"),
        ("socks5", "::1", "::1"),
        ("socks4", TARGET_NAME, "127.0.0.1"),  # SOCKS4a
        ("socks4", "127.0.0.1", "127.0.0.1"),
    ],
)
def test_open_connection_through_a_proxy(kind: str, target_host: str, target_address: str) -> None:
    with (
        scripted(echo_upper, target_address) as target,
        scripted(socks5_relay if kind == "socks5" else socks4_relay) as proxy,
    ):
        host = f"[{target_host}]" if ":" in target_host else target_host
        conn = open_connection(f"{host}:{target.port}", proxy=f"{kind}://{proxy.url}", timeout=STEP)
        conn.send_all(b"through the proxy")
        conn.send_eof()
        assert conn.recv_until(b"PROXY", timeout=STEP) == b"THROUGH THE PROXY"
        conn.close()


def test_a_proxy_on_ipv6() -> None:
    with scripted(echo_upper) as target, scripted(socks5_relay, "::1") as proxy:
        conn = open_connection(f"127.0.0.1:{target.port}", proxy=f"socks5://{proxy.url}", timeout=STEP)
        conn.send_all(b"v6")
        conn.send_eof()
        assert conn.recv_exactly(2, timeout=STEP) == b"V6"
        conn.close()


def test_a_chain_of_two_scripted_proxies() -> None:
    with (
        scripted(echo_upper) as target,
        scripted(socks4_relay) as second,
        scripted(socks5_relay) as first,
    ):
        chain = f"socks5://{first.url},socks4://{second.url}"
        conn = open_connection(f"{TARGET_NAME}:{target.port}", proxy=chain, timeout=STEP)
        conn.send_all(b"two hops")
        conn.send_eof()
        assert conn.recv_exactly(8, timeout=STEP) == b"TWO HOPS"
        conn.close()


# -- ncat 7.93 as a client through a scripted server: it offers what we offer ----------------


@pytest.mark.interop
@pytest.mark.parametrize("credentials", [None, Credentials("alice", "secret"), Credentials("alice")])
def test_ncat_offers_the_methods_we_offer(credentials: Credentials | None) -> None:
    received: list[bytes] = []
    with scripted(recording(received, [b"\x05\x00", SUCCESS])) as proxy:
        auth = [] if credentials is None else ["--proxy-auth", credentials.username]
        if credentials is not None and credentials.password is not None:
            auth[-1] += f":{credentials.password}"
        argv = ["ncat", "--proxy", proxy.url, "--proxy-type", "socks5", *auth, "127.0.0.1", "9999"]
        with Process(argv, stdin=b"", stdout=subprocess.DEVNULL) as ncat:
            assert ncat.wait(STEP) == 0, ncat.stderr
    ours = socks5_greeting([0] if credentials is None else [0, 2])
    assert received[0] == ours
