"""The proxy server's engine: negotiators' actions carried out on the loop, upstream
connects, zero-copy tunnels, timeouts and admission — driven by a tiny line protocol."""

from __future__ import annotations

import hashlib
import os
import pathlib
import queue
import socket
import ssl
import struct
import threading

import pytest

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.errors import ResolveError
from enchufe.net.resolve import Resolved, SystemResolver
from enchufe.proto.proxy import Close, OpenUnixUpstream, OpenUpstream, RelayResponse, Reply, SendUpstream, StartTunnel
from enchufe.serve.proxy_server import ClientEnd
from enchufe.tools.relay import FixedTarget
from support.cli_e2e import QUIET_PERIOD, TcpServer, recv_exactly, recv_until_eof
from support.proxy import running_proxy_server
from support.tls import TlsFiles

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.proto.proxy import Action

TIMEOUT = 10.0


class LineProtocol:
    """``HOST PORT\\n`` then a tunnel (``OK\\n``), or, with ``RELAY HOST PORT\\n``, a
    ``HEAD\\n`` sent upstream and upstream's answer relayed; failures as ``NO reason\\n``."""

    def __init__(self) -> None:
        self.buffer = b""
        self.relay = False

    def accepted(self) -> list[Action]:
        return []

    def receive_data(self, data: bytes) -> list[Action]:
        if not data:
            return [Close()]
        if self.relay:
            return [SendUpstream(data)]  # the request's body
        self.buffer += data
        line, newline, rest = self.buffer.partition(b"\n")
        if not newline:
            return []
        words = line.decode().split()
        if words[0] == "RAISE":
            raise RuntimeError("a negotiator's defect")
        self.relay = words[0] == "RELAY"
        host, port = words[-2], int(words[-1])
        self.buffer = rest
        return [OpenUpstream(host, port)]

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        if self.relay:
            return [SendUpstream(b"HEAD\n" + self.buffer), RelayResponse()]
        return [Reply(b"OK\n"), SendUpstream(self.buffer), StartTunnel()]

    def upstream_failed(self, reason: str) -> list[Action]:
        return [Reply(f"NO {reason}\n".encode()), Close()]


def line_protocol(peer: Address | None) -> LineProtocol:
    return LineProtocol()


def client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def test_a_tunnel_carries_megabytes_both_ways_at_once_and_half_closes_each_way() -> None:
    payload_up, payload_down = os.urandom(4 << 20), os.urandom(3 << 20)
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, _, port):
        sock = client(port)
        sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
        far = upstream.accept()
        assert read_line(sock) == b"OK\n"
        received: dict[str, bytes] = {}

        def far_side() -> None:
            far.sendall(payload_down)
            received["up"] = recv_until_eof(far)  # the client's half-close arrives as an end

        thread = threading.Thread(target=far_side)
        thread.start()
        sock.sendall(payload_up)
        sock.shutdown(socket.SHUT_WR)
        assert hashlib.sha256(recv_exactly(sock, len(payload_down))).digest() == hashlib.sha256(payload_down).digest()
        thread.join(TIMEOUT)
        assert received["up"] == payload_up
        far.sendall(b"after the client's end")  # the other direction goes on
        assert recv_exactly(sock, 22) == b"after the client's end"
        far.close()
        assert sock.recv(1) == b""
        sock.close()


def test_bytes_sent_with_the_request_reach_upstream_first() -> None:
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, _, port):
        with client(port) as sock:
            sock.sendall(f"127.0.0.1 {upstream.port}\nearly bytes".encode())
            with upstream.accept() as far:
                assert recv_exactly(far, 11) == b"early bytes"


def test_a_refused_upstream_is_told_to_the_negotiator() -> None:
    with TcpServer() as closed:
        port_closed = closed.port
    with running_proxy_server(line_protocol) as (_, _, port), client(port) as sock:
        sock.sendall(f"127.0.0.1 {port_closed}\n".encode())
        assert recv_until_eof(sock) == b"NO refused\n"


class MapResolver:
    """Resolves ``target.test`` to 127.0.0.1 (in a resolver thread), nothing else."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def resolve(
        self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
    ) -> list[Resolved]:
        self.threads.append(threading.current_thread().name)
        if host == "target.test":
            return SystemResolver().resolve("127.0.0.1", port, family=family, type=type, proto=proto)
        raise ResolveError(f"{host}: no such name")


def test_names_are_resolved_off_the_loop_and_an_unknown_one_is_unresolved() -> None:
    resolver = MapResolver()
    with TcpServer() as upstream, running_proxy_server(line_protocol, resolver=resolver) as (_, _, port):
        with client(port) as sock:
            sock.sendall(f"target.test {upstream.port}\n".encode())
            assert read_line(sock) == b"OK\n"
            upstream.accept().close()
        with client(port) as sock:
            sock.sendall(b"nowhere.test 80\n")
            assert recv_until_eof(sock) == b"NO unresolved\n"
    assert resolver.threads and all(name.startswith("proxy-resolver") for name in resolver.threads)


def test_an_upstream_that_never_accepts_times_out() -> None:
    # A listener whose one-place backlog is taken drops the next SYN: connect hangs.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        try:
            with running_proxy_server(line_protocol, connect_timeout=0.3) as (_, _, port), client(port) as sock:
                sock.sendall(f"127.0.0.1 {full.getsockname()[1]}\n".encode())
                assert recv_until_eof(sock) == b"NO timeout\n"
        finally:
            for filler in fillers:
                filler.close()


def test_a_client_dripping_its_request_holds_nobody_up_and_is_closed_at_the_request_timeout() -> None:
    idle: list[Address | None] = []
    with TcpServer() as upstream:
        with running_proxy_server(line_protocol, request_timeout=1.0, on_idle=idle.append) as (_, _, port):
            dripper = client(port)
            dripper.sendall(b"127.0")  # and nothing more
            with client(port) as sock:  # served meanwhile
                sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
                assert read_line(sock) == b"OK\n"
                upstream.accept().close()
            assert dripper.recv(1) == b""  # closed by the request timeout
            dripper.close()
    assert len(idle) == 1


def test_an_idle_tunnel_is_closed_alone() -> None:
    idle: list[Address | None] = []
    with TcpServer() as upstream:
        with running_proxy_server(line_protocol, idle_timeout=0.5, on_idle=idle.append) as (server, looper, port):
            sock = client(port)
            sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
            assert read_line(sock) == b"OK\n"
            far = upstream.accept()
            assert sock.recv(1) == b""
            assert far.recv(1) == b""
            assert looper.call(lambda: len(server)) == 0
            sock.close()
            far.close()
    assert len(idle) == 1


def test_the_connection_limit_and_access_refuse_at_accept() -> None:
    refused: queue.Queue[str] = queue.Queue()

    def on_refused(peer: Address | None, reason: str) -> None:
        refused.put(reason)

    with running_proxy_server(line_protocol, max_connections=2, on_refused=on_refused) as (_, _, port):
        first, second = client(port), client(port)
        third = client(port)
        assert third.recv(1) == b""
        assert refused.get(timeout=TIMEOUT) == "connection limit reached (2)"
        with TcpServer() as closed:
            port_closed = closed.port
        first.sendall(f"127.0.0.1 {port_closed}\n".encode())
        assert recv_until_eof(first) == b"NO refused\n"  # its end: the server had closed it, its place is free
        fourth = client(port)
        fourth.sendall(f"127.0.0.1 {port_closed}\n".encode())
        assert read_line(fourth) == b"NO refused\n"
        for sock in (first, second, third, fourth):
            sock.close()
    with running_proxy_server(line_protocol, access=lambda peer: False, on_refused=on_refused) as (_, _, port):
        with client(port) as sock:
            assert sock.recv(1) == b""
    assert refused.get(timeout=TIMEOUT) == "not allowed"


def test_a_client_that_stops_reading_stops_upstream_reads() -> None:
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, _, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
        assert read_line(sock) == b"OK\n"
        far = upstream.accept()
        far.setblocking(False)
        chunk, sent = b"x" * 65536, 0
        quiet_rounds = 0
        while quiet_rounds < 20 and sent < 256 << 20:
            try:
                sent += far.send(chunk)
                quiet_rounds = 0
            except BlockingIOError:
                quiet_rounds += 1
                threading.Event().wait(0.01)  # let the proxy move what it can before asking again
        assert sent < 64 << 20  # kernel buffers and one pipe, not the whole stream
        far.close()
        sock.close()


def test_a_reset_on_one_side_is_a_reset_on_the_other() -> None:
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, _, port), client(port) as sock:
        sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
        assert read_line(sock) == b"OK\n"
        far = upstream.accept()
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


def test_a_relayed_response_flows_until_upstream_ends_while_the_body_goes_up() -> None:
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, _, port), client(port) as sock:
        sock.sendall(f"RELAY 127.0.0.1 {upstream.port}\nbody-1".encode())
        with upstream.accept() as far:
            assert recv_exactly(far, 11) == b"HEAD\nbody-1"
            sock.sendall(b"body-2")
            assert recv_exactly(far, 6) == b"body-2"
            far.sendall(b"the response")
        assert recv_until_eof(sock) == b"the response"


def test_a_negotiator_that_raises_closes_its_client_only() -> None:
    errors: list[BaseException] = []
    with TcpServer() as upstream, running_proxy_server(line_protocol) as (_, looper, port):
        looper.loop.on_error = errors.append
        with client(port) as bad:
            bad.sendall(b"RAISE 0\n")
            assert bad.recv(1) == b""
        with client(port) as sock:
            sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
            assert read_line(sock) == b"OK\n"
            upstream.accept().close()
    assert [str(exc) for exc in errors] == ["a negotiator's defect"]


def test_close_ends_every_client_and_leaves_nothing_open() -> None:
    accepted: queue.Queue[Address | None] = queue.Queue()
    with TcpServer() as upstream:
        with running_proxy_server(line_protocol, on_accept=accepted.put) as (_, _, port):
            tunnelled = client(port)
            tunnelled.sendall(f"127.0.0.1 {upstream.port}\n".encode())
            assert read_line(tunnelled) == b"OK\n"
            far = upstream.accept()
            waiting = client(port)
            accepted.get(timeout=TIMEOUT)
            accepted.get(timeout=TIMEOUT)  # both in: a connection still in the kernel's queue would be reset
        assert tunnelled.recv(1) == b""
        assert waiting.recv(1) == b""
        assert far.recv(1) == b""
        for sock in (tunnelled, waiting, far):
            sock.close()


# -- TLS to the clients ---------------------------------------------------------------------


def tls_client_of(port: int, tls_files: TlsFiles) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return tls_files.client_context().wrap_socket(raw, server_hostname="localhost")


def test_a_tls_client_tunnels_both_ways_with_close_notify_as_half_close(tls_files: TlsFiles) -> None:
    payload_up, payload_down = os.urandom(1 << 20), os.urandom(1 << 20)
    with (
        TcpServer() as upstream,
        running_proxy_server(line_protocol, tls=tls_files.server_context()) as (_, _, port),
    ):
        sock = tls_client_of(port, tls_files)
        sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
        far = upstream.accept()
        assert read_line(sock) == b"OK\n"
        sock.sendall(payload_up)
        assert recv_exactly(far, len(payload_up)) == payload_up
        far.sendall(payload_down)
        far.shutdown(socket.SHUT_WR)  # upstream's end: close_notify to the client
        assert hashlib.sha256(recv_until_eof(sock)).digest() == hashlib.sha256(payload_down).digest()
        sock.sendall(b"still heard")  # the other direction goes on
        assert recv_exactly(far, 11) == b"still heard"
        plain = sock.unwrap()  # the client's close_notify: upstream's end of stream
        assert far.recv(1) == b""
        far.close()
        plain.close()


def test_a_plaintext_client_of_a_tls_server_fails_alone(tls_files: TlsFiles) -> None:
    failures: queue.Queue[Address | None] = queue.Queue()
    with (
        TcpServer() as upstream,
        running_proxy_server(
            line_protocol, tls=tls_files.server_context(), on_tls_failed=lambda peer, error: failures.put(peer)
        ) as (_, _, port),
    ):
        with client(port) as plain:
            plain.sendall(f"127.0.0.1 {upstream.port}\n".encode())
            assert failures.get(timeout=TIMEOUT) is not None
            with tls_client_of(port, tls_files) as sock:
                sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
                assert read_line(sock) == b"OK\n"
                upstream.accept().close()


class FixedUnixTarget:
    """Opens one Unix socket as soon as the client is accepted, then tunnels (a relay)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def accepted(self) -> list[Action]:
        return [OpenUnixUpstream(UnixAddress(self.path))]

    def receive_data(self, data: bytes) -> list[Action]:
        return []

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        assert (bound_host, bound_port) == ("", 0)
        return [StartTunnel()]

    def upstream_failed(self, reason: str) -> list[Action]:
        return [Close()]


def test_upstream_may_be_opened_at_accept_to_a_unix_socket_and_every_end_is_told(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "target.sock")
    ends: queue.Queue[ClientEnd] = queue.Queue()
    with socket.socket(socket.AF_UNIX) as target:
        target.bind(path)
        target.listen()
        target.settimeout(TIMEOUT)
        with running_proxy_server(lambda peer: FixedUnixTarget(path), on_close=ends.put) as (_, _, port):
            sock = client(port)
            far, _ = target.accept()  # before the client has sent a byte
            far.settimeout(TIMEOUT)
            far.sendall(b"banner\n")
            assert read_line(sock) == b"banner\n"
            sock.sendall(b"12345")
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(far) == b"12345"
            far.close()
            assert sock.recv(1) == b""
            sock.close()
            end = ends.get(timeout=TIMEOUT)
            assert (end.sent, end.received, end.reason, end.error) == (5, 7, "done", None)
            assert isinstance(end.peer, InetAddress) and end.peer.host == "127.0.0.1"
            os.unlink(path)  # nobody there now: the next client is closed
            with client(port) as sock:
                assert sock.recv(1) == b""
            end = ends.get(timeout=TIMEOUT)
            assert (end.sent, end.received, end.reason) == (0, 0, "failed")


def test_the_end_of_an_idle_client_and_of_a_refused_upstream_say_why() -> None:
    ends: queue.Queue[ClientEnd] = queue.Queue()
    with TcpServer() as closed:
        port_closed = closed.port
    with TcpServer() as upstream:
        with running_proxy_server(line_protocol, idle_timeout=0.3, on_close=ends.put) as (_, _, port):
            with client(port) as sock:
                sock.sendall(f"127.0.0.1 {port_closed}\n".encode())
                assert recv_until_eof(sock) == b"NO refused\n"
                assert ends.get(timeout=TIMEOUT).reason == "refused"
            with client(port) as sock:
                sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
                assert read_line(sock) == b"OK\n"
                with upstream.accept() as far:
                    far.sendall(b"xy")
                    assert recv_exactly(sock, 2) == b"xy"
                    assert sock.recv(1) == b""
                    end = ends.get(timeout=TIMEOUT)
                    assert (end.reason, end.received, end.sent) == ("idle", 2, 0)
                    assert end.duration >= 0.3


def test_a_tls_client_that_fails_its_handshake_costs_no_upstream_connection(tls_files: TlsFiles) -> None:
    """The session starts once the handshake is done: a scanner's plaintext probe never
    makes the relay open its target."""
    ends: queue.Queue[ClientEnd] = queue.Queue()
    with TcpServer() as upstream:
        target = FixedTarget(InetAddress("127.0.0.1", upstream.port))
        with running_proxy_server(lambda peer: target, tls=tls_files.server_context(), on_close=ends.put) as (
            _,
            _,
            port,
        ):
            with client(port) as plain:
                plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert ends.get(timeout=TIMEOUT).reason == "tls"
            upstream.sock.settimeout(QUIET_PERIOD)
            with pytest.raises(TimeoutError):
                upstream.sock.accept()


def test_the_tls_side_ends_with_its_session(tls_files: TlsFiles) -> None:
    """A session the negotiator closes takes its TLS client with it, close_notify
    included: the client never holds the server's descriptors after its session."""
    with TcpServer() as closed:
        port_closed = closed.port
    with running_proxy_server(line_protocol, tls=tls_files.server_context()) as (server, looper, port):
        with tls_client_of(port, tls_files) as sock:
            sock.sendall(f"127.0.0.1 {port_closed}\n".encode())
            assert recv_until_eof(sock) == b"NO refused\n"  # and its end, without the client's own
            # The server lets go of the TLS side at once (its last close is a turn later).
            for _ in range(int(TIMEOUT / 0.01)):
                if not looper.call(lambda: len(server._bridges)):
                    break
                threading.Event().wait(0.01)
            assert looper.call(lambda: len(server._bridges)) == 0


def test_a_reset_upstream_is_no_clean_end_for_a_tls_client(tls_files: TlsFiles) -> None:
    """close_notify would tell the client its stream is whole: a reset upstream ends the
    TLS side without one."""
    with TcpServer() as upstream, running_proxy_server(line_protocol, tls=tls_files.server_context()) as (_, _, port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        context = tls_files.client_context()
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
            sock.sendall(f"127.0.0.1 {upstream.port}\n".encode())
            assert read_line(sock) == b"OK\n"
            far = upstream.accept()
            far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            far.close()
            with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
                while sock.recv(65536):
                    pass


def test_resolver_threads_never_hold_the_process() -> None:
    """getaddrinfo cannot be cancelled: a lookup in flight when the server closes is left
    to a daemon thread."""
    release = threading.Event()

    class Stuck:
        def resolve(
            self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
        ) -> list[Resolved]:
            release.wait(TIMEOUT)
            raise ResolveError(f"{host}: no such name")

    try:
        with running_proxy_server(line_protocol, resolver=Stuck()) as (_, _, port), client(port) as sock:
            sock.sendall(b"dead.test 80\n")
            deadline = threading.Event()
            while not any(t.name.startswith("proxy-resolver") for t in threading.enumerate()):
                assert not deadline.wait(0.01)
        resolvers = [t for t in threading.enumerate() if t.name.startswith("proxy-resolver")]
        assert resolvers and all(t.daemon for t in resolvers)
    finally:
        release.set()


def test_a_unix_target_whose_backlog_is_full_is_tried_again_until_it_accepts(tmp_path: pathlib.Path) -> None:
    """A Unix listener refuses a non-blocking connect beyond its backlog (EAGAIN), where
    TCP's would wait: the relay tries again until the listener has room."""
    path = str(tmp_path / "busy.sock")
    with socket.socket(socket.AF_UNIX) as target:
        target.bind(path)
        target.listen(0)
        target.settimeout(TIMEOUT)
        waiting = []
        for _ in range(8):  # fill the backlog: connects that nobody accepts yet
            filler = socket.socket(socket.AF_UNIX)
            filler.setblocking(False)
            if filler.connect_ex(path) != 0:
                filler.close()
                break
            waiting.append(filler)
        try:
            with running_proxy_server(lambda peer: FixedUnixTarget(path)) as (_, _, port), client(port) as sock:
                sock.sendall(b"through at last")
                for _ in waiting:  # room, one by one: the relay's retry gets in after these
                    target.accept()[0].close()
                far, _ = target.accept()
                with far:
                    far.settimeout(TIMEOUT)
                    assert recv_exactly(far, 15) == b"through at last"
        finally:
            for filler in waiting:
                filler.close()
