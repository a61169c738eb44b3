"""The ``enchufe`` command in listen mode (``-l``), end to end.

The clients are plain sockets driven by the test; the listener's port comes from
its ``Listening on HOST:PORT`` line (``-v``). Semantics are ncat 7.96+.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat

import pytest

from conftest import requires_ipv6
from support.cli_e2e import (
    STEP_TIMEOUT,
    assert_clean_stderr,
    bracket,
    family_of,
    readable_within,
    recv_exactly,
    recv_until_eof,
)
from support.procs import enchufe

VERSION_LINE = re.compile(r"^enchufe: Version \d+\.\d+\.\d+\S* \( ncat-compatible \)$")


def connect(host: str, port: int) -> socket.socket:
    client = socket.create_connection((host, port), timeout=STEP_TIMEOUT)
    client.settimeout(STEP_TIMEOUT)
    return client


def test_one_client_both_ways_then_exit(loopback: str) -> None:
    with enchufe("-l", "-v", loopback, "0") as cmd:
        port = cmd.listening_port()
        with connect(loopback, port) as client:
            client_port = client.getsockname()[1]
            cmd.wait_for_line(r"Connection from ")
            client.sendall(b"from client\n")
            assert cmd.read_stdout(12) == b"from client\n"
            cmd.write(b"from listener\n")
            assert recv_exactly(client, 14) == b"from listener\n"
        assert cmd.wait() == 0  # the client closed
    assert cmd.stdout == b""
    lines = cmd.stderr_lines
    assert len(lines) == 3, lines
    assert VERSION_LINE.match(lines[0])
    assert lines[1] == f"enchufe: Listening on {bracket(loopback)}:{port}"
    assert lines[2] == f"enchufe: Connection from {bracket(loopback)}:{client_port}."


def test_second_client_is_refused_once_the_first_is_accepted() -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect("127.0.0.1", port) as first:
            cmd.wait_for_line(r"Connection from ")
            with pytest.raises(ConnectionRefusedError):
                connect("127.0.0.1", port).close()
            first.sendall(b"still served")
            assert cmd.read_stdout(12) == b"still served"
        assert cmd.wait() == 0


@pytest.mark.parametrize("client_host", ["127.0.0.1", pytest.param("::1", marks=requires_ipv6)])
def test_no_address_listens_on_both_families_with_one_port(client_host: str) -> None:
    with enchufe("-l", "-v", "-p", "0") as cmd:
        first = cmd.wait_for_line(r"Listening on (.*)$").group(1)
        second = cmd.wait_for_line(r"Listening on (.*)$").group(1)
        port = int(first.rsplit(":", 1)[1])
        assert port != 0
        assert (first, second) == (f"[::]:{port}", f"0.0.0.0:{port}")
        with connect(client_host, port) as client:
            client_port = client.getsockname()[1]
            # IPv6-only [::]: an IPv4 client shows as 127.0.0.1, never ::ffff:127.0.0.1
            cmd.wait_for_line(rf"^enchufe: Connection from {re.escape(bracket(client_host))}:{client_port}\.$")
            client.sendall(b"hi")
            assert cmd.read_stdout(2) == b"hi"
        assert cmd.wait() == 0


@requires_ipv6
@pytest.mark.parametrize("where", [["-6", "-p", "0"], ["::", "0"]], ids=["-6", "::"])
def test_ipv6_only_refuses_ipv4_clients(where: list[str]) -> None:
    # ncat 7.93: `ncat -l -6 P` and `ncat -l :: P` refuse a connection to 127.0.0.1:P.
    with enchufe("-l", "-v", *where) as cmd:
        port = int(cmd.wait_for_line(r"^enchufe: Listening on \[::\]:(\d+)$").group(1))
        with pytest.raises(ConnectionRefusedError):
            connect("127.0.0.1", port).close()
        with connect("::1", port) as client:
            client.sendall(b"six")
            assert cmd.read_stdout(3) == b"six"
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


@requires_ipv6
@pytest.mark.parametrize("where", [["-6", "-p", "0"], ["::", "0"]], ids=["-6", "::"])
def test_ipv6_only_udp_does_not_hear_ipv4_peers(where: list[str]) -> None:
    # ncat 7.93: `ncat -6 -u -l P` ignores a datagram to 127.0.0.1:P.
    with enchufe("-u", "-l", "-v", *where) as cmd:
        port = int(cmd.wait_for_line(r"^enchufe: Listening on \[::\]:(\d+)$").group(1))
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as four,
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as six,
        ):
            four.sendto(b"four", ("127.0.0.1", port))  # first: a dual-stack socket would take this peer
            six.sendto(b"six", ("::1", port))
            assert cmd.read_stdout(3) == b"six"
            cmd.wait_for_line(rf"^enchufe: Connection from \[::1\]:{six.getsockname()[1]}\.$")
        cmd.popen.send_signal(signal.SIGINT)  # a datagram listener never sees an EOF
        assert cmd.wait() == 128 + signal.SIGINT
    assert_clean_stderr(cmd.stderr)


def test_stdin_eof_half_closes_the_client_and_keeps_running() -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0") as cmd:
        with connect("127.0.0.1", cmd.listening_port()) as client:
            cmd.write(b"last thing I say")
            cmd.close_stdin()
            assert recv_until_eof(client) == b"last thing I say"
            client.sendall(b"but you can still talk")
            assert cmd.read_stdout(22) == b"but you can still talk"
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_idle_timeout_counts_only_once_a_client_is_connected() -> None:
    with enchufe("-l", "-v", "-i", "200ms", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        assert cmd.still_running_after(0.4)  # waiting for the first client is not idleness
        with connect("127.0.0.1", port) as client:
            client.sendall(b"x")
            assert cmd.read_stdout(1) == b"x"
            assert cmd.wait() == 2
            assert recv_until_eof(client) == b""
    assert cmd.stderr_lines[-1] == "enchufe: Idle timeout expired (200 ms). QUITTING."


def test_udp_listener_locks_onto_the_first_peer(loopback: str) -> None:
    family = family_of(loopback)
    with (
        enchufe("-u", "-l", "-v", loopback, "0") as cmd,
        socket.socket(family, socket.SOCK_DGRAM) as first,
        socket.socket(family, socket.SOCK_DGRAM) as second,
    ):
        port = cmd.listening_port()
        first.settimeout(STEP_TIMEOUT)
        first.connect((loopback, port))
        first.sendall(b"A1")
        assert cmd.read_stdout(2) == b"A1"
        cmd.wait_for_line(rf"^enchufe: Connection from {re.escape(bracket(loopback))}:{first.getsockname()[1]}\.$")
        # Unconnected, so the kernel's port-unreachable for B1 does not make it readable.
        second.sendto(b"B1", (loopback, port))  # ignored: the listener only hears the first peer
        first.sendall(b"A2")
        assert cmd.read_stdout(2) == b"A2"  # B1, sent before, never reached stdout
        cmd.write(b"reply")
        assert first.recv(100) == b"reply"
        assert not readable_within(second)  # the reply went to the first peer only
        cmd.close_stdin()
        assert cmd.still_running_after()  # UDP listen outlives stdin's EOF (7.95+)
        first.sendall(b"A3")
        assert cmd.read_stdout(2) == b"A3"
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)


def test_max_conns_without_keep_open_warns() -> None:
    with enchufe("-l", "-m", "3", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect("127.0.0.1", port) as client:
            client.sendall(b"ok")
            assert cmd.read_stdout(2) == b"ok"
        assert cmd.wait() == 0
    assert cmd.stderr_lines[1] == (
        "enchufe: Warning: Maximum connections ignored, since it does not take effect without -k or --broker."
    )


def test_max_conns_warning_is_shown_without_verbose() -> None:
    with enchufe("-l", "-m", "3", "127.0.0.1", "0") as cmd:
        cmd.wait_for_line("Warning")
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    # The signal comes while the listener opens its sockets: it waits for the wait, so
    # nothing is left to the garbage collector (tests/cli/test_process.py tries it often).
    assert cmd.stderr_lines == [
        "enchufe: Warning: Maximum connections ignored, since it does not take effect without -k or --broker."
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("with_client", [False, True], ids=["waiting", "relaying"])
def test_signal_ends_the_listener_with_128_plus_the_signal(signum: signal.Signals, with_client: bool) -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        client = connect("127.0.0.1", port) if with_client else None
        try:
            if client is not None:
                cmd.wait_for_line("Connection from")
            cmd.popen.send_signal(signum)
            assert cmd.wait() == 128 + signum, cmd.stderr_lines
        finally:
            if client is not None:
                client.close()
    assert_clean_stderr(cmd.stderr)
    assert all(line.startswith("enchufe: ") for line in cmd.stderr_lines), cmd.stderr_lines


# -- -m 0 ---------------------------------------------------------------------------------------

MAX_CONNS_IGNORED = (
    "enchufe: Warning: Maximum connections ignored, since it does not take effect without -k or --broker."
)
DENIED = "enchufe: New connection denied: connection limit reached (0)"


def test_max_conns_0_refuses_the_client_and_every_later_one() -> None:
    # ncat 7.93 without -k: the warning, the client announced, denied and closed, the
    # listening socket closed (later clients refused), and no exit until a signal.
    with enchufe("-l", "-v", "-m", "0", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect("127.0.0.1", port) as client:
            client_port = client.getsockname()[1]
            cmd.wait_for_line(f"^{re.escape(DENIED)}$")
            assert client.recv(1) == b""  # closed
        with pytest.raises(ConnectionRefusedError):
            connect("127.0.0.1", port).close()
        assert cmd.still_running_after()
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert cmd.stdout == b""
    assert cmd.stderr_lines[1:] == [
        MAX_CONNS_IGNORED,
        f"enchufe: Listening on 127.0.0.1:{port}",
        f"enchufe: Connection from 127.0.0.1:{client_port}.",
        DENIED,
    ]


def test_max_conns_0_refuses_a_udp_peer_without_announcing_it() -> None:
    with enchufe("-l", "-u", "-v", "-m", "0", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"not relayed", ("127.0.0.1", port))
            cmd.wait_for_line(f"^{re.escape(DENIED)}$")
        cmd.popen.send_signal(signal.SIGINT)
        assert cmd.wait() == 128 + signal.SIGINT
    assert cmd.stdout == b""
    assert cmd.stderr_lines[1:] == [MAX_CONNS_IGNORED, f"enchufe: Listening on 127.0.0.1:{port}", DENIED]


# -- Unix domain sockets --------------------------------------------------------------------------


def test_unix_stream_listener_creates_and_removes_its_socket_file(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "listen.sock")
    with enchufe("-l", "-v", "-U", path) as cmd:
        cmd.wait_for_line(rf"^enchufe: Listening on {re.escape(path)}$")
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(STEP_TIMEOUT)
            client.connect(path)
            client.sendall(b"unix in")
            assert cmd.read_stdout(7) == b"unix in"
            # ncat's words for a client socket that has no name
            cmd.wait_for_line(r"^enchufe: Connection from a client on Unix domain socket\.$")
            cmd.write(b"unix out")
            assert recv_exactly(client, 8) == b"unix out"
        assert cmd.wait() == 0
    assert not os.path.exists(path)
    assert_clean_stderr(cmd.stderr)


def test_abstract_name_that_is_not_utf8() -> None:
    name = f"enchufe-test-{os.getpid()}-"
    # The shell hands over the byte 0xff, which is not UTF-8; Python's argv keeps it as
    # U+DCFF, and subprocess passes the very byte on.
    with enchufe("-l", "-v", "-U", f"@{name}\udcff") as cmd:
        cmd.wait_for_line(rf"^enchufe: Listening on @{name}\\xff$")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(STEP_TIMEOUT)
            client.connect(f"\0{name}".encode() + b"\xff")  # bound to the bytes given
            client.sendall(b"in")
            assert cmd.read_stdout(2) == b"in"
            cmd.write(b"out")
            assert recv_exactly(client, 3) == b"out"
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_unix_datagram_listener_answers_its_peer(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "listen.sock")
    client_path = os.path.join(sock_dir, "client.sock")
    with (
        enchufe("-l", "-v", "-u", "-U", path) as cmd,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client,
    ):
        cmd.wait_for_line(r"Listening on ")
        client.bind(client_path)
        client.settimeout(STEP_TIMEOUT)
        client.sendto(b"hello", path)
        assert cmd.read_stdout(5) == b"hello"
        cmd.write(b"back at you")
        assert client.recv(100) == b"back at you"
        cmd.wait_for_line(rf"^enchufe: Connection from {re.escape(client_path)}\.$")
        cmd.popen.send_signal(signal.SIGINT)  # a datagram listener never sees an EOF
        assert cmd.wait() == 128 + signal.SIGINT
    assert not os.path.exists(path)
    assert_clean_stderr(cmd.stderr)


def test_an_empty_udp_datagram_is_not_an_end_of_file() -> None:
    with enchufe("-l", "-u", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.connect(("127.0.0.1", port))
            peer.send(b"one\n")
            assert cmd.read_stdout(4) == b"one\n"
            peer.send(b"")
            peer.send(b"two\n")
            assert cmd.read_stdout(4) == b"two\n"
            assert cmd.popen.poll() is None


def test_the_command_listens_with_ncats_backlog_of_10() -> None:
    import subprocess

    with enchufe("-l", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        shown = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
        assert shown.stdout.split()[2] == "10"
        cmd.kill()
