"""``-e`` and ``-c``: a program's stdin and stdout are the connection, end to end."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import socket
import threading

import pytest

from support.cli_e2e import (
    STEP_TIMEOUT,
    TcpServer,
    assert_clean_stderr,
    connect,
    recv_until_eof,
    stop_listener,
    two_clients_and_a_third_refused,
)
from support.procs import ENCHUFE, Process, enchufe, run, run_enchufe


def test_what_the_program_writes_after_the_peer_half_closes_still_arrives() -> None:
    """The peer sends and half-closes: the program's stdin is closed, and everything it
    writes afterwards reaches the peer (ncat 7.93 loses it, nmap/nmap#2843)."""
    with enchufe("-l", "-v", "127.0.0.1", "0", "-c", "echo before; cat; echo after the end") as cmd:
        port = cmd.listening_port()
        with connect(port) as peer:
            peer.sendall(b"the data\n")
            peer.shutdown(socket.SHUT_WR)
            assert recv_until_eof(peer) == b"before\nthe data\nafter the end\n"
        assert cmd.wait() == 0
    assert cmd.stdout == b""  # the program's output goes to the peer, not to stdout
    assert_clean_stderr(cmd.stderr)


def test_the_program_sees_ncats_environment() -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0", "-c", "env") as cmd:
        port = cmd.listening_port()
        with connect(port) as peer:
            local_port, own = peer.getpeername()[1], peer.getsockname()[1]
            peer.shutdown(socket.SHUT_WR)
            lines = recv_until_eof(peer).decode().splitlines()
        assert cmd.wait() == 0
    ncat = sorted(line for line in lines if line.startswith("NCAT_"))
    assert ncat == [
        "NCAT_LOCAL_ADDR=127.0.0.1",
        f"NCAT_LOCAL_PORT={local_port}",
        "NCAT_PROTO=TCP",
        "NCAT_REMOTE_ADDR=127.0.0.1",
        f"NCAT_REMOTE_PORT={own}",
    ]


def test_connect_mode_runs_the_program_for_the_server() -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port), "-e", "/usr/bin/rev", stdin=b"") as cmd:
        with server.accept() as peer:
            peer.sendall(b"stressed\n")
            peer.shutdown(socket.SHUT_WR)
            assert recv_until_eof(peer) == b"desserts\n"
        assert cmd.wait() == 0


def test_a_name_without_a_slash_is_not_looked_up_in_path() -> None:
    """ncat's -e is execv: `-e cat` is ./cat, which does not exist; the child says so
    and the session ends with status 0, as ncat's does."""
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port), "-e", "cat") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b""
        assert cmd.wait() == 0
    assert cmd.stderr == "exec: No such file or directory"


def test_bulk_data_through_a_program_in_both_directions() -> None:
    payload = os.urandom(20 * 1024 * 1024)
    with enchufe("-l", "-v", "127.0.0.1", "0", "-c", "cat") as cmd:
        port = cmd.listening_port()
        with connect(port) as peer:

            def send_then_half_close() -> None:
                peer.sendall(payload)
                peer.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send_then_half_close, name="bulk-sender")
            sender.start()
            digest = hashlib.sha256()
            received = 0
            while chunk := peer.recv(1 << 20):
                digest.update(chunk)
                received += len(chunk)
            sender.join(STEP_TIMEOUT)
        assert cmd.wait() == 0
    assert received == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()


ONLY_ONE_OF_NCATS = "Only one of --exec, --sh-exec, and --lua-exec is allowed."
ONLY_ONE_OF_ALL = "Only one of --exec, --sh-exec, --lua-exec, and --py-exec is allowed."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "/bin/true", "-c", "true", "localhost"], ONLY_ONE_OF_NCATS),
        (["-z", "-e", "/bin/true", "localhost"], "Command execution can't be done along with option -z."),
        (["--broker", "-e", "/bin/true"], "Invalid option combination: --broker and -e."),
        (["--broker", "-c", "true"], "Invalid option combination: --broker and -e."),  # ncat's words
        # --lua-exec and --py-exec: checked before the script is read (x.lua, h.py do not exist).
        (
            ["--lua-exec", "x.lua", "-e", "/bin/true", "localhost"],
            "Only one of --exec, --sh-exec, and --lua-exec is allowed.",
        ),
        (
            ["-c", "true", "--lua-exec", "x.lua", "localhost"],
            "Only one of --exec, --sh-exec, and --lua-exec is allowed.",
        ),
        (["-z", "--lua-exec", "x.lua", "localhost"], "Command execution can't be done along with option -z."),
        (["--broker", "--lua-exec", "x.lua"], "Invalid option combination: --broker and -e."),
        # Beyond ncat: the list of its message grows only when --py-exec is among them.
        (
            ["--py-exec", "h.py", "-e", "/bin/true", "localhost"],
            "Only one of --exec, --sh-exec, --lua-exec, and --py-exec is allowed.",
        ),
        (
            ["-c", "true", "--py-exec", "h.py", "localhost"],
            "Only one of --exec, --sh-exec, --lua-exec, and --py-exec is allowed.",
        ),
        (["-z", "--py-exec", "h.py", "localhost"], "Command execution can't be done along with option -z."),
        (["--broker", "--py-exec", "h.py"], "Invalid option combination: --broker and --py-exec."),
        (["-C", "--py-exec", "h.py", "localhost"], "-C has no effect with --py-exec: the handler has the connection."),
        (["-l", "-o", "log", "--py-exec", "h.py"], "-o has no effect with --py-exec: the handler has the connection."),
    ],
)
def test_exec_option_combinations_refused(args: list[str], message: str) -> None:
    result = run_enchufe(*args)
    assert result.returncode == 2
    assert result.stderr.decode() == f"enchufe: {message} QUITTING.\n"


def test_keep_open_runs_one_program_per_connection_at_once() -> None:
    """inetd's way: each client its own program, at the same time; -m caps them."""
    with enchufe("-l", "-k", "-m", "2", "-v", "127.0.0.1", "0", "-c", 'read line; echo "$line $$"; cat') as cmd:
        with two_clients_and_a_third_refused(cmd) as (a, b):
            a.sendall(b"a\n")
            b.sendall(b"b\n")
            line_a, line_b = a.recv(100).split(), b.recv(100).split()
            assert (line_a[0], line_b[0]) == (b"a", b"b")
            assert line_a[1] != line_b[1]  # two programs, two process ids
            b.shutdown(socket.SHUT_WR)
            assert recv_until_eof(b) == b""  # b's program ended with b's input
            a.sendall(b"still mine\n")
            assert a.recv(100) == b"still mine\n"
        stop_listener(cmd)


def test_max_conns_makes_room_for_every_program_it_allows() -> None:
    """-m raises the open-file limit for what each client costs: a program's session
    holds five descriptors (its connection, two pipes, the relay's wake-up pipe), not
    one, and the clients past the first few failed with "exec: Too many open files"."""
    clients = 8
    script = 'ulimit -S -n 32; exec "$@"'  # what -m 8 would fit in, were a client one descriptor
    argv = [*ENCHUFE, "-l", "-k", "-m", str(clients), "-v", "127.0.0.1", "0", "-c", "cat"]
    with Process(["sh", "-c", script, "sh", *argv]) as cmd:
        port = cmd.listening_port()
        with contextlib.ExitStack() as stack:
            for number in range(clients):
                client = stack.enter_context(connect(port))
                client.sendall(b"client %d\n" % number)
                assert client.recv(100) == b"client %d\n" % number
        stop_listener(cmd)


@pytest.mark.parametrize("trap", ["", "trap '' TERM; "], ids=["plain", "ignoring-SIGTERM"])
def test_a_signal_ends_the_programs_of_keep_open_and_the_command_at_once(trap: str) -> None:
    """A program that never reads its input (nor ends with it) used to hold its
    session's thread, and the command, after SIGTERM for as long as it ran; each is
    now terminated (killed if it ignores that) and the command exits 143."""
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "-c", f"{trap}echo $$; exec sleep 30") as cmd:
        with connect(cmd.listening_port()) as client:
            pid = int(client.recv(100))
            try:
                cmd.popen.send_signal(signal.SIGTERM)
                assert cmd.wait(timeout=STEP_TIMEOUT) == 128 + signal.SIGTERM
                assert recv_until_eof(client) == b""
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert_clean_stderr(cmd.stderr)


# --- bad input: a program that cannot start or ends at once; no /bin/sh -----------------


def test_a_program_that_does_not_exist_costs_each_client_one_line_and_the_server_goes_on() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "-e", "/nonexistent/program") as cmd:
        port = cmd.listening_port()
        for _ in range(2):
            with connect(port) as client:
                assert recv_until_eof(client) == b""  # closed at once, nothing sent
            cmd.wait_for_line("^exec: No such file or directory$")
        stop_listener(cmd)


def test_a_program_that_exits_at_once_ends_only_its_session() -> None:
    """The first client sends nothing: its program's read fails and it exits at once;
    the next client is served by a program of its own."""
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "-c", 'read line && echo "got $line"') as cmd:
        port = cmd.listening_port()
        with connect(port) as silent:
            silent.shutdown(socket.SHUT_WR)
            assert recv_until_eof(silent) == b""
        with connect(port) as client:
            client.sendall(b"a line\n")
            assert recv_until_eof(client) == b"got a line\n"
        stop_listener(cmd)


def test_a_program_that_exits_at_once_ends_a_single_session_with_status_0() -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0", "-e", "/bin/true") as cmd:
        with connect(cmd.listening_port()) as client:
            assert recv_until_eof(client) == b""
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
@pytest.mark.parametrize("keep_open", [[], ["-k"]], ids=["single", "-k"])
def test_sh_exec_without_a_usable_bin_sh_fails_before_listening(keep_open: list[str]) -> None:
    """As ncat, in listen mode: /bin/sh is checked first. A private mount namespace
    hides it (bound over by /dev/null, which cannot be executed)."""
    command = shlex.join([*ENCHUFE, "-l", *keep_open, "-v", "127.0.0.1", "0", "-c", "true"])
    result = run(["unshare", "-m", "/bin/bash", "-c", f"mount --bind /dev/null /bin/sh && exec {command}"])
    assert result.returncode == 2
    assert result.stderr == b"enchufe: /bin/sh is not executable, so `-c' won't work. QUITTING.\n"
