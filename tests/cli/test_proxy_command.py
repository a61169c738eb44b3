"""``--proxy*`` end to end: the command through its own proxy servers and scripted ones,
chains, TLS through a proxy, ``-w`` over the whole handshake, and ncat's refusals."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from support.cli_e2e import STEP_TIMEOUT, TcpServer, recv_exactly
from support.procs import Process, enchufe, run, run_enchufe
from support.tls import TlsFiles

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def proxy_server(kind: str, *options: str) -> Iterator[tuple[Process, int]]:
    """``enchufe -l --proxy-type KIND`` on a free loopback port."""
    with enchufe("-v", "-l", "127.0.0.1", "0", "--proxy-type", kind, *options) as server:
        yield server, server.listening_port()
        server.kill()


def echo_once(upstream: TcpServer, result: dict[str, bytes]) -> threading.Thread:
    """Accept one connection on ``upstream``; answer ``got: <what came>`` after the end."""

    def serve() -> None:
        with upstream.accept() as far:
            received = b""
            while chunk := far.recv(65536):
                received += chunk
            result["received"] = received
            far.sendall(b"got: " + received)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("kind", "auth"),
    [("http", None), ("http", "alice:s3cret"), ("socks5", None), ("socks5", "alice:s3cret"), ("socks4", None)],
)
def test_through_each_proxy_server_of_its_own(kind: str, auth: str | None) -> None:
    server_auth = ("--proxy-auth", auth) if auth else ()
    with TcpServer() as upstream, proxy_server(kind, *server_auth) as (_, proxy_port):
        result: dict[str, bytes] = {}
        thread = echo_once(upstream, result)
        done = run_enchufe(
            "--proxy", f"127.0.0.1:{proxy_port}", "--proxy-type", kind, *server_auth, "127.0.0.1", str(upstream.port),
            input=b"hello through a proxy\n",
        )  # fmt: skip
        thread.join(STEP_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert result["received"] == b"hello through a proxy\n"
    assert done.stdout == b"got: hello through a proxy\n"


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with TcpServer() as upstream, proxy_server("http", "--proxy-auth", "alice:s3cret") as (_, proxy_port):
        result: dict[str, bytes] = {}
        thread = echo_once(upstream, result)
        refused = run_enchufe("--proxy", f"127.0.0.1:{proxy_port}", "127.0.0.1", str(upstream.port), input=b"x")
        monkeypatch.setenv("NCAT_PROXY_AUTH", "alice:s3cret")
        done = run_enchufe("--proxy", f"127.0.0.1:{proxy_port}", "127.0.0.1", str(upstream.port), input=b"env")
        thread.join(STEP_TIMEOUT)
    assert refused.returncode == 1
    assert refused.stderr.startswith(b"enchufe: Proxy returned status code 407.")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"got: env"


def test_a_chain_of_a_socks5_and_an_http_proxy_written_as_urls() -> None:
    with (
        TcpServer() as upstream,
        proxy_server("socks5", "--proxy-auth", "bob:pw") as (_, first),
        proxy_server("http") as (_, second),
    ):
        result: dict[str, bytes] = {}
        thread = echo_once(upstream, result)
        chain = f"socks5://bob:pw@127.0.0.1:{first},http://127.0.0.1:{second}"
        done = run_enchufe("--proxy", chain, "127.0.0.1", str(upstream.port), input=b"two hops")
        thread.join(STEP_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"got: two hops"


class ScriptedProxy:
    """Accepts one client, reads its request head, answers ``reply`` and keeps the
    connection (or answers nothing)."""

    def __init__(self, reply: bytes | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.received = b""
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(STEP_TIMEOUT)
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(STEP_TIMEOUT)
            while b"\r\n\r\n" not in self.received:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            if self.reply is None:
                with contextlib.suppress(OSError):
                    conn.recv(1)  # silent until the client gives up
                return
            conn.sendall(self.reply)
            with contextlib.suppress(OSError):
                while conn.recv(65536):
                    pass

    def close(self) -> None:
        self.thread.join(STEP_TIMEOUT)
        self.listener.close()


def test_what_the_proxy_sends_after_its_answer_is_the_targets_first_bytes() -> None:
    proxy = ScriptedProxy(b"HTTP/1.0 200 Connection established\r\nX-Proxy: scripted\r\n\r\nbanner from the target\n")
    try:
        done = run_enchufe("--proxy", f"127.0.0.1:{proxy.port}", "target.invalid", "22", input=b"")
    finally:
        proxy.close()
    assert proxy.received == b"CONNECT target.invalid:22 HTTP/1.0\r\n\r\n"
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"banner from the target\n"


def test_a_silent_proxy_is_a_timeout_within_w() -> None:
    proxy = ScriptedProxy(None)
    try:
        started = time.monotonic()
        done = run_enchufe("-w", "1", "--proxy", f"127.0.0.1:{proxy.port}", "127.0.0.1", "9", timeout=STEP_TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == "enchufe: TIMEOUT."
    assert elapsed < STEP_TIMEOUT


def test_a_refusing_proxy_and_an_unreachable_one_in_ncats_words() -> None:
    refusing = ScriptedProxy(b"HTTP/1.0 403 Forbidden\r\n\r\n")
    try:
        done = run_enchufe("--proxy", f"127.0.0.1:{refusing.port}", "127.0.0.1", "9")
    finally:
        refusing.close()
    assert (done.returncode, done.stderr) == (1, b"enchufe: Proxy returned status code 403.\n")
    with TcpServer() as closed:
        port = closed.port
    done = run_enchufe("--proxy", f"127.0.0.1:{port}", "127.0.0.1", "9")
    assert (done.returncode, done.stderr) == (1, b"enchufe: Proxy connection failed: Connection refused.\n")


def test_tls_runs_end_to_end_through_the_proxy(tls_files: TlsFiles) -> None:
    with (
        enchufe("-v", "-l", "127.0.0.1", "0", *tls_files.listener_options, stdin=b"from the tls server") as target,
        proxy_server("http") as (_, proxy_port),
    ):
        port = target.listening_port()
        done = run_enchufe(
            "--proxy", f"127.0.0.1:{proxy_port}", "--ssl", "--ssl-verify", "--ssl-trustfile", tls_files.ca,
            "--ssl-servername", "localhost", "127.0.0.1", str(port), input=b"",
        )  # fmt: skip
        target.kill()
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"from the tls server"


def test_idle_clients_of_the_proxy_server_are_closed_alone() -> None:
    with proxy_server("socks5", "-i", "1") as (server, port):
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as idle:
            with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as busy:
                busy.sendall(b"\x05\x01\x00")
                assert recv_exactly(busy, 2) == b"\x05\x00"
            assert idle.recv(1) == b""  # -i ended it; the server still runs
        assert server.popen.poll() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--proxy-type", "socks5", "127.0.0.1", "80"),
            "Proxy type (--proxy-type) specified without proxy address (--proxy).",
        ),
        (("--proxy", "127.0.0.1", "--proxy-type", "foo", "127.0.0.1", "80"), 'Invalid proxy type "foo".'),
        (("--proxy", "127.0.0.1", "-l", "80"), "Invalid option combination: --proxy and -l."),
        (("--proxy", "127.0.0.1", "--proxy-dns", "foo", "127.0.0.1", "80"), "Invalid proxy DNS type."),
        (("--proxy", "127.0.0.1", "-U", "/tmp/x"), "Proxy option not supported when using Unix domain sockets."),
        (
            ("-l", "--proxy-type", "http", "--telnet", "0"),
            "Invalid option combination: --telnet has no effect with --proxy-type.",
        ),
        (("--proxy", "127.0.0.1:abc", "127.0.0.1", "80"), 'Invalid proxy port number "abc".'),
        (("--proxy", "127.0.0.1", "-u", "127.0.0.1", "80"), "Invalid option combination: --proxy and --udp."),
        (("-l", "--proxy-type", "http", "-e", "/bin/cat", "0"), "Invalid option combination: --proxy-type and -e."),
        (
            ("-l", "--proxy-type", "gopher", "0"),
            'Invalid proxy type "gopher"; the proxy server supports "http", "socks4", "socks5".',
        ),
    ],
)
def test_bad_proxy_options_are_refused_as_ncat_does(args: tuple[str, ...], message: str) -> None:
    done = run_enchufe(*args)
    assert (done.returncode, done.stderr.decode()) == (2, f"enchufe: {message} QUITTING.\n")


def test_max_conns_limits_the_proxy_server_and_it_says_so() -> None:
    with proxy_server("socks5", "-m", "1") as (server, port):
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as first:
            first.sendall(b"\x05\x01\x00")
            assert recv_exactly(first, 2) == b"\x05\x00"  # accepted: the one client -m allows
            with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as second:
                assert second.recv(1) == b""  # refused at accept
            server.wait_for_line(r"New connection denied: connection limit reached \(1\)")
    assert "Maximum connections ignored" not in server.stderr


def test_the_proxy_server_makes_room_for_m_tunnels_that_moved_bytes_both_ways() -> None:
    clients = 40  # at 4 descriptors a client the limit below is not raised; a tunnel holds 6
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with TcpServer(backlog=clients) as upstream, contextlib.ExitStack() as held:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))  # inherited by the server
        try:
            _, port = held.enter_context(proxy_server("socks5", "-m", str(clients)))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for number in range(clients):
            tunnel = held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT))
            tunnel.sendall(b"\x05\x01\x00\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + upstream.port.to_bytes(2))
            far = held.enter_context(upstream.accept())
            assert recv_exactly(tunnel, 12)[:4] == b"\x05\x00\x05\x00", f"tunnel {number + 1}"
            tunnel.sendall(b"up")
            assert recv_exactly(far, 2) == b"up"
            far.sendall(b"down")
            assert recv_exactly(tunnel, 4) == b"down", f"tunnel {number + 1}"


def test_an_https_proxy_server_for_curl(tls_files: TlsFiles) -> None:
    """ncat's ``-l --proxy-type http --ssl``: curl speaks TLS to the proxy, then CONNECT."""
    with TcpServer() as upstream, proxy_server("http", *tls_files.listener_options) as (_, proxy_port):

        def answer() -> None:
            with upstream.accept() as far:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += far.recv(4096)
                far.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")

        thread = threading.Thread(target=answer)
        thread.start()
        done = run(
            [
                "curl", "-sS", "--max-time", "10", "-p", "--proxy", f"https://localhost:{proxy_port}",
                "--proxy-cacert", tls_files.ca, f"http://127.0.0.1:{upstream.port}/",
            ]
        )  # fmt: skip
        thread.join(STEP_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello"


@pytest.mark.interop
@pytest.mark.parametrize(
    ("kind", "server_auth", "client_auth"),
    [
        ("socks5", None, None),
        ("socks5", "alice:s3cret", "alice:s3cret"),
        ("socks4", "bob:pw", "bob:pw"),
        ("socks5", "alice:s3cret", "alice:wrong"),
        ("socks5", "alice:s3cret", None),
        ("socks4", "bob:pw", "bob"),
    ],
)
def test_what_v_says_of_a_socks_handshake_and_its_failure_is_ncats(
    kind: str, server_auth: str | None, client_auth: str | None
) -> None:
    """The proxy's lines of ``-v``, a refusal's line, and the status, as ncat 7.93's; the
    SOCKS4 user id is ``--proxy-auth``'s whole text, which ncat sends."""
    succeeds = client_auth == server_auth
    said: dict[str, tuple[int, list[str]]] = {}
    with TcpServer() as upstream:
        with proxy_server(kind, *(("--proxy-auth", server_auth) if server_auth else ())) as (_, proxy_port):
            for tool in ("ncat", "enchufe"):
                result: dict[str, bytes] = {}
                thread = echo_once(upstream, result) if succeeds else None
                argv = ["-v", "--proxy", f"127.0.0.1:{proxy_port}", "--proxy-type", kind]
                argv += [*(("--proxy-auth", client_auth) if client_auth else ()), "127.0.0.1", str(upstream.port)]
                done = run(["ncat", *argv], input=b"hi") if tool == "ncat" else run_enchufe(*argv, input=b"hi")
                if thread is not None:
                    thread.join(STEP_TIMEOUT)
                    assert done.stdout == b"got: hi"
                lines = done.stderr.decode().splitlines()[1:]  # after the version line
                words = [line.split(": ", 1)[1] for line in lines if " bytes sent, " not in line]
                said[tool] = (done.returncode, words)
    (status, ours), (ncat_status, ncats) = said["enchufe"], said["ncat"]
    assert status == ncat_status == (0 if succeeds else 1)
    if succeeds:
        assert ours.pop() == f"Connected to 127.0.0.1:{upstream.port}."  # upstream ncat's line; 7.93 has none
    elif kind == "socks4":  # ncat says only "Proxy connection failed."; enchufe adds the reply's meaning
        assert ours.pop().startswith("Proxy connection failed: request rejected")
        assert ncats.pop() == "Proxy connection failed."
    assert ours == ncats


def test_a_client_whose_upstream_finds_no_descriptor_is_refused_and_frees_its_place() -> None:
    """With every descriptor taken, opening the upstream socket fails (EMFILE): that
    client hears a failure, and its place under ``-m 1`` is free for the next one."""
    with TcpServer() as upstream, proxy_server("socks5", "-m", "1") as (server, port):
        pid = server.popen.pid
        warm_up = run_enchufe("--proxy", f"127.0.0.1:{port}", "--proxy-type", "socks5", "127.0.0.1", "9")
        assert warm_up.returncode == 1  # the loop runs, with all it opens; nothing listens on 9
        taken = wait_for_sockets(pid, 1)  # the listener alone: the warm-up client is gone
        free = [fd for fd in range(len(taken) + 2) if fd not in taken]  # a new descriptor takes the lowest
        # Room for one more descriptor (the client's), none for its upstream socket.
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={free[1]}:"], check=True, timeout=STEP_TIMEOUT)
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as starved:
            starved.sendall(b"\x05\x01\x00")
            assert recv_exactly(starved, 2) == b"\x05\x00"
            starved.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + upstream.port.to_bytes(2, "big"))
            assert recv_exactly(starved, 2)[1] != 0  # a SOCKS5 failure, not success
        subprocess.run(["prlimit", f"--pid={pid}", "--nofile=1024:"], check=True, timeout=STEP_TIMEOUT)
        result: dict[str, bytes] = {}
        thread = echo_once(upstream, result)
        done = run_enchufe(
            "--proxy", f"127.0.0.1:{port}", "--proxy-type", "socks5", "127.0.0.1", str(upstream.port), input=b"room"
        )
        thread.join(STEP_TIMEOUT)
    assert (done.returncode, done.stdout) == (0, b"got: room"), done.stderr


def wait_for_sockets(pid: int, count: int) -> set[int]:
    """The descriptors of process ``pid`` once exactly ``count`` of them are sockets."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        sockets = 0
        for fd in fds:
            with contextlib.suppress(FileNotFoundError):
                sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        if sockets == count:
            return fds
    raise AssertionError(f"process {pid} kept {sockets} sockets, not {count}")
