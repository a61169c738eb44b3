"""The ``enchufe-relay`` command: its options, its lines, its statuses, and socat on
either side of it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from support.cli_e2e import TcpServer, recv_exactly, recv_until_eof
from support.procs import Process, free_port, run, run_tool, tool
from support.tls import TlsFiles
from test_startup import HEAVY, SRC

TIMEOUT = 10.0


def relay(*args: str) -> Process:
    return tool("relay", "-v", *args)


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((host, port), timeout=TIMEOUT)


def test_a_client_is_relayed_and_its_end_is_a_json_line_and_a_verbose_one() -> None:
    with TcpServer() as target, relay("--json", "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        port = cmd.listening_port()
        with connect(port) as sock, target.accept() as far:
            sock.sendall(b"ping")
            assert recv_exactly(far, 4) == b"ping"
            far.sendall(b"pong!")
            assert recv_exactly(sock, 5) == b"pong!"
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(far) == b""
        cmd.wait_for_line(r"Connection from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+\.$")
        cmd.wait_for_line(r"closed \(done\): 4 bytes to 127\.0\.0\.1:\d+, 5 bytes back")
        record = json.loads(cmd.popen.stdout.readline())  # type: ignore[union-attr]
        assert record.keys() == {"peer", "target", "sent", "received", "seconds", "end", "error"}
        assert (record["target"], record["sent"], record["received"], record["end"]) == (
            f"127.0.0.1:{target.port}",
            4,
            5,
            "done",
        )
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM


def test_max_clients_closes_the_one_too_many() -> None:
    with TcpServer() as target, relay("-m", "1", "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        port = cmd.listening_port()
        with connect(port) as first, target.accept() as far:
            with connect(port) as second:
                assert second.recv(1) == b""
            cmd.wait_for_line(r"denied: connection limit reached \(1\)")
            first.sendall(b"still here")
            assert recv_exactly(far, 10) == b"still here"


@pytest.mark.parametrize("access", [["--deny", "127.0.0.1"], ["--allow", "127.0.0.2"]])
def test_allow_and_deny_refuse_a_client(access: list[str]) -> None:
    with TcpServer() as target, relay(*access, "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        with connect(cmd.listening_port()) as sock:
            assert sock.recv(1) == b""
        cmd.wait_for_line("denied: not allowed")


def test_allow_lets_its_hosts_in() -> None:
    with TcpServer() as target, relay("--allow", "127.0.0.0/8", "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        with connect(cmd.listening_port()) as sock, target.accept() as far:
            sock.sendall(b"in")
            assert recv_exactly(far, 2) == b"in"


def test_idle_timeout_closes_a_quiet_connection() -> None:
    with TcpServer() as target, relay("--json", "-i", "300ms", "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        with connect(cmd.listening_port()) as sock, target.accept() as far:
            assert sock.recv(1) == b""
            assert far.recv(1) == b""
        assert json.loads(cmd.popen.stdout.readline())["end"] == "idle"  # type: ignore[union-attr]


def test_udp_to_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target:
        target.bind(("127.0.0.1", 0))
        target.settimeout(TIMEOUT)
        with relay("-u", "127.0.0.1:0", f"127.0.0.1:{target.getsockname()[1]}") as cmd:
            port = cmd.listening_port()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.settimeout(TIMEOUT)
                peer.sendto(b"question", ("127.0.0.1", port))
                data, sender = target.recvfrom(100)
                assert data == b"question"
                target.sendto(b"answer", sender)
                assert peer.recv(100) == b"answer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Expected two addresses"),
        (["127.0.0.1:0"], "Expected two addresses"),
        ([":0", ":80"], "TARGET needs a host"),
        (["udp::0", "127.0.0.1:80"], "Both sides must be UDP"),
        (["-m", "x", ":0", "127.0.0.1:80"], "Invalid maximum connections"),
        (["-i", "soon", ":0", "127.0.0.1:80"], "Invalid time value"),
        (["--deny", "300.1.1.1/99", ":0", "127.0.0.1:80"], ""),
        (["--bogus", ":0", "127.0.0.1:80"], "unrecognized option"),
        (["nohost", "127.0.0.1:80"], "Missing port"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_tool("relay", *args)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enchufe-relay: ") and lines[0].endswith("QUITTING.")
    assert message in lines[0]


def test_a_port_in_use_is_a_network_failure() -> None:
    with TcpServer() as taken:
        result = run_tool("relay", f"127.0.0.1:{taken.port}", "127.0.0.1:80")
    assert result.returncode == 1
    assert "Address already in use" in result.stderr.decode()


def test_help_and_version() -> None:
    result = run_tool("relay", "--help")
    assert result.returncode == 0 and b"Usage: enchufe-relay" in result.stdout
    result = run_tool("relay", "--version")
    assert result.returncode == 0 and result.stdout.startswith(b"enchufe-relay ")


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from enchufe.cli.relay import main; "
        f"status = main({argv!r}); print(status, *sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert result.stderr.split() == ["0"]


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_socat_as_a_client_through_the_relay_and_as_its_target() -> None:
    """socat's client sends 2 MiB and half-closes; socat's target hashes what it got
    until that end and answers the hash: both directions and both half-closes cross."""
    payload = os.urandom(2 << 20)
    target_port = free_port()
    argv = ["socat", "-d", "-d", f"TCP-LISTEN:{target_port},bind=127.0.0.1,reuseaddr,fork", "EXEC:sha256sum"]
    with Process(argv) as target:
        target.wait_for_line("listening on")
        with relay("127.0.0.1:0", f"127.0.0.1:{target_port}") as cmd:
            port = cmd.listening_port()
            for _ in range(2):  # two clients, one after the other
                result = run(["socat", "-t", "5", "-", f"TCP:127.0.0.1:{port}"], input=payload)
                assert result.returncode == 0, result.stderr
                assert result.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


# -- TLS on either side ---------------------------------------------------------------------


class TlsTarget:
    """A one-connection TLS server in a thread: answers ``pong:`` and what it read."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(context,))
        self.thread.start()

    def _serve(self, context: ssl.SSLContext) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            raw, _ = self.listener.accept()
            with context.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(TIMEOUT)
                conn.sendall(b"pong:" + conn.recv(100))
        except (OSError, ssl.SSLError) as exc:
            self.error = exc

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()


def test_tls_clients_on_the_listening_side(tls_files: TlsFiles) -> None:
    with TcpServer() as target, relay(*tls_files.listener_options, "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
        raw = connect(cmd.listening_port())
        with tls_files.client_context().wrap_socket(raw, server_hostname="localhost") as sock, target.accept() as far:
            sock.sendall(b"over tls")
            assert recv_exactly(far, 8) == b"over tls"  # plaintext on the target's side
            far.sendall(b"back")
            assert recv_exactly(sock, 4) == b"back"


def test_tls_to_the_target_verified_with_a_trust_file(tls_files: TlsFiles) -> None:
    target = TlsTarget(tls_files.server_context())
    try:
        options = ("--target-ssl-trustfile", tls_files.ca, "--target-ssl-servername", "localhost")
        with relay(*options, "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd, connect(cmd.listening_port()) as sock:
            sock.sendall(b"ping")
            assert recv_until_eof(sock) == b"pong:ping"
    finally:
        target.close()
    assert target.error is None


def test_a_target_whose_certificate_does_not_verify_costs_its_client_only(tls_files: TlsFiles) -> None:
    target = TlsTarget(tls_files.server_context())
    try:
        with relay("--target-ssl", "127.0.0.1:0", f"127.0.0.1:{target.port}") as cmd:
            with connect(cmd.listening_port()) as sock:
                sock.sendall(b"ping")
                try:
                    received = recv_until_eof(sock)
                except ConnectionResetError:  # the failed side's reset, passed on
                    received = b""
                assert received == b""  # nothing of the target reaches the client
            cmd.wait_for_line(r"TLS failed for the connection from 127\.0\.0\.1:\d+: Certificate verification failed")
            assert cmd.popen.poll() is None
    finally:
        target.close()
