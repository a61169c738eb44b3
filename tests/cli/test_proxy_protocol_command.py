"""``enchufe -l --proxy-protocol BALANCERS``, end to end: the test plays the balancer
from 127.0.0.1 and names clients such as 127.0.0.7 in its headers; an untrusted peer
connects from 127.0.0.8."""

from __future__ import annotations

import socket

import pytest

from enchufe.serve.policy import DEFAULT_HANDSHAKE_TIMEOUT
from support.cli_e2e import (
    assert_clean_stderr,
    connect,
    recv_exactly,
    recv_until_eof,
    stop_listener,
)
from support.procs import enchufe, run_enchufe

V1 = b"PROXY TCP4 127.0.0.7 127.0.0.1 4242 443\r\n"
V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


def test_a_single_shot_listener_says_and_serves_the_client_the_header_names() -> None:
    with enchufe("-l", "-v", "--proxy-protocol", "127.0.0.1", "--deny", "127.0.0.9", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port, source="127.0.0.8") as untrusted:
            untrusted.sendall(V1)
            cmd.wait_for_line(r"^enchufe: New connection denied: not a trusted PROXY protocol sender$")
            assert closed(untrusted)
        with connect(port) as bad:
            bad.sendall(b"HELLO\r\n")
            cmd.wait_for_line(r"^enchufe: New connection denied: bad PROXY header: not a PROXY protocol header")
        with connect(port) as denied:
            denied.sendall(b"PROXY TCP4 127.0.0.9 127.0.0.1 1 443\r\n")
            cmd.wait_for_line(r"^enchufe: New connection denied: not allowed$")
        with connect(port) as balancer:
            balancer.sendall(V1 + b"hello\n")
            line = cmd.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.7:4242 \(through 127\.0\.0\.1:(\d+), by")
            assert int(line.group(1)) == balancer.getsockname()[1]
            assert cmd.read_stdout(6) == b"hello\n"
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_a_stalled_balancer_does_not_stretch_the_wait_of_w() -> None:
    """-w bounds a single-shot listener's wait for its client, the one a header names: a
    balancer that connects and says nothing ends the wait at -w (2 s), not at the 10 s
    a header may take otherwise."""
    with enchufe("-l", "-v", "-w", "2", "--proxy-protocol", "127.0.0.1", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as stalled:
            assert cmd.wait(timeout=DEFAULT_HANDSHAKE_TIMEOUT - 2) == 1  # TIMEOUT
            assert closed(stalled)
    # Accepted within -w, so its header was waited for: the 10 s would have shown.
    assert any(line.startswith("enchufe: New connection denied: no PROXY header within") for line in cmd.stderr_lines)
    assert cmd.stderr_lines[-1] == "enchufe: TIMEOUT."


def closed(sock: socket.socket) -> bool:
    """The command closed ``sock``: end of file, or a reset (it left our bytes unread)."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


ENVIRONMENT = 'echo "$NCAT_REMOTE_ADDR $NCAT_REMOTE_PORT"'


def test_exec_gets_the_clients_address_and_a_health_check_the_balancers() -> None:
    with enchufe("-l", "-v", "--proxy-protocol", "127.0.0.0/8", "-c", ENVIRONMENT, "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as balancer:
            balancer.sendall(V1)
            assert recv_until_eof(balancer) == b"127.0.0.7 4242\n"
        assert cmd.wait() == 0
    with enchufe("-l", "-k", "-v", "--proxy-protocol", "127.0.0.1", "-c", ENVIRONMENT, "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        for _ in range(2):
            with connect(port) as balancer:
                balancer.sendall(V1)
                assert recv_until_eof(balancer) == b"127.0.0.7 4242\n"
        with connect(port) as health_check:
            health_check.sendall(V2_LOCAL)
            own_port = health_check.getsockname()[1]
            assert recv_until_eof(health_check) == f"127.0.0.1 {own_port}\n".encode()
        stop_listener(cmd)


def test_keep_open_reads_each_balancers_header_on_the_loop_and_serves_the_client() -> None:
    # --allow names the client alone: the balancer is not judged by it, its client is.
    args = ["-l", "-k", "-v", "--proxy-protocol", "127.0.0.1", "--allow", "127.0.0.7", "127.0.0.1", "0"]
    with enchufe(*args) as cmd:
        port = cmd.listening_port()
        with connect(port) as slow:  # its header in two pieces: nobody waits for it meanwhile
            slow.sendall(V1[:9])
            with connect(port, source="127.0.0.8") as untrusted:
                cmd.wait_for_line(r"^enchufe: New connection denied: not a trusted PROXY protocol sender$")
                assert closed(untrusted)
            with connect(port) as denied:
                denied.sendall(b"PROXY TCP4 127.0.0.9 127.0.0.1 1 443\r\n")
                cmd.wait_for_line(r"^enchufe: New connection denied: not allowed$")
                assert closed(denied)
            with connect(port) as bad:
                bad.sendall(b"PROXY TCP4 1.2.3.4 1.2.3.4 01 1\r\n")
                cmd.wait_for_line(r"^enchufe: New connection denied: bad PROXY header: not a port")
            slow.sendall(V1[9:] + b"at last\n")
            cmd.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.7:4242 \(through 127\.0\.0\.1:\d+, by")
            assert cmd.read_stdout(8) == b"at last\n"
            cmd.write(b"to all\n")
            assert recv_exactly(slow, 7) == b"to all\n"
        stop_listener(cmd)


def read_lines(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_chat_announces_the_clients_the_headers_name() -> None:
    with enchufe("-l", "--chat", "-v", "--proxy-protocol", "127.0.0.1", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as first:
            first.sendall(V1)
            joined = read_lines(first, 2)
            assert joined.startswith(b"<announce> 127.0.0.7:4242 is connected as <user")
            with connect(port) as second:
                second.sendall(b"PROXY TCP4 127.0.0.9 127.0.0.1 999 443\r\n")
                announced = read_lines(second, 2)
                assert announced.startswith(b"<announce> 127.0.0.9:999 is connected as <user")
                assert b"already connected: 127.0.0.7:4242 as <user" in announced
        stop_listener(cmd)


@pytest.mark.parametrize(
    "args",
    [
        ["--proxy-protocol", "127.0.0.1", "127.0.0.1", "1"],
        ["-l", "-u", "--proxy-protocol", "127.0.0.1"],
        ["-l", "--proxy-type", "http", "--proxy-protocol", "127.0.0.1"],
    ],
)
def test_where_it_does_not_work_yet_it_is_refused(args: list[str]) -> None:
    result = run_enchufe(*args)
    assert result.returncode == 2
    assert (
        "--proxy-protocol works with -l, -l -k, --broker and --chat over TCP or Unix sockets." in result.stderr.decode()
    )


def test_a_bad_balancer_spec_is_refused_as_allows_are() -> None:
    result = run_enchufe("-l", "-n", "--proxy-protocol", "1.2.3.4/33", "127.0.0.1", "0")
    assert result.returncode == 2
    assert 'error in host specification "1.2.3.4/33"' in result.stderr.decode()
