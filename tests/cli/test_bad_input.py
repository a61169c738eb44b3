"""What the ``enchufe`` command says when things go wrong, end to end.

Each case: exactly the line(s) ncat prints (``enchufe:`` instead of ``Ncat:``), the
exit status ncat uses (1 network error, 2 anything else), and never a traceback.
Also ``--version``, ``-h`` and the two ways of starting the command.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import sys

import pytest

from enchufe import __version__
from support.cli_e2e import (
    STEP_TIMEOUT,
    TcpServer,
    assert_clean_stderr,
    recv_exactly,
    recv_until_eof,
)
from support.procs import Process, enchufe, free_port, run, run_enchufe

TRY_HELP = "enchufe: Try `--help' or man(1) ncat for more information, usage options and help. QUITTING."


def enchufe_fails(*args: str, argv0: list[str] | None = None) -> tuple[int, list[str]]:
    """Run the command with an empty stdin; return its status and stderr lines."""
    result = run([*(argv0 or [sys.executable, "-m", "enchufe"]), *args])
    stderr = result.stderr.decode()
    assert_clean_stderr(stderr)
    assert result.stdout == b""
    return result.returncode, stderr.splitlines()


# -- command line ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["--baffle", "127.0.0.1", "9"], ["enchufe: unrecognized option '--baffle'", TRY_HELP]),
        (["-Y", "127.0.0.1", "9"], ["enchufe: invalid option -- 'Y'", TRY_HELP]),
        ([], ["enchufe: You must specify a host to connect to. QUITTING."]),
        (["-v", "-u"], ["enchufe: You must specify a host to connect to. QUITTING."]),
        (["127.0.0.1", "70000"], ['enchufe: Invalid port number "70000". QUITTING.']),
        (["-z", "127.0.0.1", "1-100"], ['enchufe: Invalid port number "1-100". QUITTING.']),
        (
            ["-w", "0", "127.0.0.1", "9"],
            ['enchufe: Invalid -w timeout "0" (must be greater than 0 and less than 2147483s). QUITTING.'],
        ),
        (
            ["-w", "200", "127.0.0.1", "9"],
            [
                'enchufe: Since April 2010, the default unit for -w timeout is seconds, so your time of "200" '
                'is 3.3 minutes. Use "200ms" for 200 milliseconds. QUITTING.'
            ],
        ),
    ],
    ids=["unknown-long", "unknown-short", "no-host", "no-host-verbose", "port-70000", "port-range", "w-0", "w-200"],
)
def test_usage_errors(args: list[str], lines: list[str]) -> None:
    assert enchufe_fails(*args) == (2, lines)


# -- name resolution -----------------------------------------------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return run(["unshare", "-n", "true"], timeout=STEP_TIMEOUT).returncode == 0
    except OSError:
        return False


@pytest.mark.parametrize("nodns", [False, True], ids=["dns", "nodns"])
def test_unresolvable_host(nodns: bool) -> None:
    if not _unshare_works():
        pytest.skip("unshare -n is not permitted here")
    # A network namespace with only a loopback: no DNS query can leave the machine.
    argv0 = ["unshare", "-n", sys.executable, "-m", "enchufe"]
    status, lines = enchufe_fails(*(["-n"] if nodns else []), "nonexistent.invalid", "80", argv0=argv0)
    assert status == 2
    assert len(lines) == 1, lines
    assert re.fullmatch(r'enchufe: Could not resolve hostname "nonexistent\.invalid": [^.]+\. QUITTING\.', lines[0])


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["8080"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["-n", "8080"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["0"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["123456"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["8080", "80"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["-u", "8080"], "enchufe: You must specify a host to connect to. QUITTING."),
        (["-l", "123456"], 'enchufe: Invalid port number "123456". QUITTING.'),
        (["-l", "-u", "100000"], 'enchufe: Invalid port number "100000". QUITTING.'),
    ],
    ids=["port", "nodns-port", "zero", "long", "two-numbers", "udp", "listen-long", "listen-udp-long"],
)
def test_a_lone_number_is_never_taken_for_a_host(args: list[str], line: str) -> None:
    """ncat 7.93's words and status for each. A command that took the number for an
    IPv4 address (8080 is 0.0.31.144) would send packets there: run it in a network
    namespace of its own, whose only interface is a loopback that is down."""
    if not _unshare_works():
        pytest.skip("unshare -n is not permitted here")
    argv0 = ["unshare", "-n", sys.executable, "-m", "enchufe"]
    assert enchufe_fails(*args, argv0=argv0) == (2, [line])


def test_nodns_refuses_to_resolve_localhost() -> None:
    assert enchufe_fails("-n", "localhost", "80") == (
        2,
        ['enchufe: Could not resolve hostname "localhost": Name or service not known. QUITTING.'],
    )


# -- binding and connecting ------------------------------------------------------------------------


def test_bind_to_a_port_in_use() -> None:
    with TcpServer() as busy:
        assert enchufe_fails("-l", "127.0.0.1", str(busy.port)) == (
            2,
            [f"enchufe: bind to 127.0.0.1:{busy.port}: Address already in use. QUITTING."],
        )


def test_bind_failure_on_either_wildcard_socket_is_fatal() -> None:
    with TcpServer() as busy:  # 127.0.0.1:P: [::]:P binds (IPv6 only), 0.0.0.0:P cannot
        assert enchufe_fails("-l", "-p", str(busy.port)) == (
            2,
            [f"enchufe: bind to 0.0.0.0:{busy.port}: Address already in use. QUITTING."],
        )


def test_connection_refused(loopback: str) -> None:
    assert enchufe_fails(loopback, str(free_port(loopback))) == (1, ["enchufe: Connection refused."])


def test_connect_timeout() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # Linux queues backlog + 1 = one connection, then drops SYNs
        port = server.getsockname()[1]
        with contextlib.ExitStack() as fillers:
            first = fillers.enter_context(socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT))
            assert first.getpeername()[1] == port
            for _ in range(2):  # SYNs that stay unanswered
                pending = fillers.enter_context(socket.socket())
                pending.setblocking(False)
                pending.connect_ex(("127.0.0.1", port))
            status, lines = enchufe_fails("-w", "300ms", "127.0.0.1", str(port))
    if status == 0:
        pytest.skip("this loopback completed a connection past a full accept queue")
    assert (status, lines) == (1, ["enchufe: TIMEOUT."])


def test_reset_by_peer_mid_transfer() -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"request")  # the session is established and relaying
            assert recv_exactly(peer, 7) == b"request"
            peer.sendall(b"partial answer")
            assert cmd.read_stdout(14) == b"partial answer"
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert cmd.wait() == 1  # stdin is still open
    assert cmd.stdout == b""
    assert cmd.stderr_lines == ["enchufe: Connection reset by peer."]


def test_reset_right_after_data_keeps_the_data() -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"request")
            assert recv_exactly(peer, 7) == b"request"
            peer.sendall(b"bytes before the reset")
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert cmd.wait() == 1
    assert cmd.stdout == b"bytes before the reset"
    assert cmd.stderr_lines == ["enchufe: Connection reset by peer."]


def test_stdout_closed_early_exits_quietly() -> None:
    read_end, write_end = os.pipe()
    try:
        with TcpServer() as server, enchufe("127.0.0.1", str(server.port), stdout=write_end) as cmd:
            os.close(write_end)
            write_end = -1
            with server.accept() as peer:
                peer.sendall(b"x" * 65536)
                head = b""
                while len(head) < 10:  # like `enchufe ... | head -c 10`
                    head += os.read(read_end, 10 - len(head))
                os.close(read_end)
                read_end = -1
                sent = 65536 + _send_until_gone(peer, 64 << 20)
            assert cmd.wait() == 0
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    assert head == b"x" * 10
    assert sent < 64 << 20  # the command quit instead of reading everything
    assert cmd.stderr == ""


def _send_until_gone(peer: socket.socket, total: int) -> int:
    """Send up to ``total`` bytes; stop when the peer resets the connection."""
    sent = 0
    chunk = b"x" * 65536
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < total:
            sent += peer.send(chunk)
    return sent


# -- information ---------------------------------------------------------------------------------------


def test_version() -> None:
    result = run([sys.executable, "-m", "enchufe", "--version"])
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr.decode() == f"enchufe: Version {__version__} ( ncat-compatible )\n"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str) -> None:
    result = run([sys.executable, "-m", "enchufe", flag, "127.0.0.1"])
    assert result.returncode == 0
    assert result.stderr == b""
    usage = result.stdout.decode()
    assert usage.startswith(f"enchufe {__version__}, an ncat-compatible netcat\nUsage: enchufe [options]")
    assert "  -l, --listen " in usage
    assert usage.endswith("\n")


def test_console_script_matches_python_m() -> None:
    script = shutil.which("enchufe")
    if script is None:
        pytest.skip("the enchufe console script is not installed")
    port = str(free_port())
    for args in (["127.0.0.1", port], ["--baffle"], ["--version"]):
        by_module = run([sys.executable, "-m", "enchufe", *args])
        by_script = run([script, *args])
        assert (by_script.returncode, by_script.stdout, by_script.stderr) == (
            by_module.returncode,
            by_module.stdout,
            by_module.stderr,
        )
    assert by_script.returncode == 0


def test_console_script_relays() -> None:
    script = shutil.which("enchufe")
    if script is None:
        pytest.skip("the enchufe console script is not installed")
    with TcpServer() as server, Process([script, "127.0.0.1", str(server.port)]) as cmd:
        with server.accept() as peer:
            cmd.write(b"via script")
            cmd.close_stdin()
            assert recv_until_eof(peer) == b"via script"
            peer.sendall(b"ok")
        assert cmd.wait() == 0
    assert cmd.stdout == b"ok"
    assert cmd.stderr == ""


def test_source_route_pointer_the_kernel_refuses() -> None:
    """ncat warns and connects without the route; enchufe refuses clearly instead."""
    result = run_enchufe("-4", "-G", "8", "-g", "127.0.0.2", "127.0.0.1", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "enchufe: the kernel refused the source route (Invalid argument); Linux accepts only hop pointer 4. QUITTING.\n"
    )


def test_unwritable_output_file_fails_before_connecting(tmp_path: os.PathLike[str]) -> None:
    """As ncat: the -o/-x files are opened first, so the port (closed here) is never tried."""
    missing = os.path.join(str(tmp_path), "no-such-dir", "log")
    result = run_enchufe("-o", missing, "127.0.0.1", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.decode() == f"enchufe: {missing}: No such file or directory. QUITTING.\n"
