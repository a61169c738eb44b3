"""The ``enchufe`` command as a Unix process: closed standard descriptors, signals
ignored by the parent, and signals that arrive while it starts.

The start-up tests send their signal at many moments (busy work of different lengths,
never a sleep), each in a bounded loop; whatever the moment, the command ends by the
signal or with 128+signal, and never shows a traceback or a warning.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli_e2e import STEP_TIMEOUT, TcpServer, assert_clean_stderr, recv_until_eof
from support.procs import DEFAULT_TIMEOUT, ENCHUFE, Process, enchufe

LAUNCHER = Path(__file__).parent.parent.parent / "bin" / "enchufe"
SRC = Path(__file__).parent.parent.parent / "src"
MAX_CONNS_WARNING = (
    "enchufe: Warning: Maximum connections ignored, since it does not take effect without -k or --broker."
)


def in_shell(script: str, *args: str) -> Process:
    """``sh -c SCRIPT sh ARGS``: SCRIPT sets the process up as a user's shell would,
    then runs ``exec "$@"``."""
    return Process(["sh", "-c", script, "sh", *args])


def busy(rounds: int) -> None:
    """Spend a little time without sleeping (each round is some microseconds)."""
    total = 0
    for i in range(rounds * 100):
        total += i


# -- closed standard descriptors ---------------------------------------------------------------


def test_closed_stdout_sends_nothing_back_to_the_peer() -> None:
    # The socket used to become descriptor 1: the peer's data went back to the peer.
    with TcpServer() as server:
        with in_shell('exec "$@" >&-', *ENCHUFE, "127.0.0.1", str(server.port)) as cmd:
            with server.accept() as peer:
                peer.sendall(b"not for you\n")
                assert recv_until_eof(peer) == b""
            assert cmd.wait() == 2  # data meant for a closed stdout is an error, as in ncat
    assert cmd.stderr == "write: Bad file descriptor"


@pytest.mark.parametrize("mode", ["connect", "listen", "keep-open"])
def test_an_output_that_refuses_data_is_ncats_write_error(mode: str) -> None:
    """stdout on a full disk: ncat's die("write") line and status 2, in every mode (-k
    used to drop every client's data in silence and serve on)."""
    with open("/dev/full", "wb") as full:
        if mode == "connect":
            with TcpServer() as server, enchufe("127.0.0.1", str(server.port), stdout=full) as cmd:
                with server.accept() as peer:
                    peer.sendall(b"nowhere to go\n")
                    assert cmd.wait() == 2
        else:
            keep_open = ["-k"] if mode == "keep-open" else []
            with enchufe("-l", *keep_open, "-v", "127.0.0.1", "0", stdout=full) as cmd:
                port = cmd.listening_port()
                with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as client:
                    client.sendall(b"nowhere to go\n")
                    assert cmd.wait() == 2
    assert cmd.stderr_lines[-1] == "write: No space left on device"


def test_closed_stdin_in_listen_mode_is_an_empty_stdin() -> None:
    # The relay's wake-up pipe used to become descriptor 0: the session waited for
    # the peer instead of half-closing at once. ncat says so, at any verbosity.
    with in_shell('exec "$@" <&-', *ENCHUFE, "-l", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as client:
            assert recv_until_eof(client) == b""
            client.sendall(b"still heard\n")
        assert cmd.wait() == 0
    assert cmd.stdout == b"still heard\n"
    assert cmd.stderr_lines[1] == "ENCHUFE DEBUG: stdin is closed, attempting to reserve STDIN_FILENO"


def test_closed_stdin_message_is_shown_without_verbose_in_listen_mode_only() -> None:
    with in_shell('exec "$@" <&-', *ENCHUFE, "-l", "-m", "1", "127.0.0.1", "0") as cmd:
        cmd.wait_for_line("Warning")
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert cmd.stderr_lines == ["ENCHUFE DEBUG: stdin is closed, attempting to reserve STDIN_FILENO", MAX_CONNS_WARNING]
    with TcpServer() as server:
        with in_shell('exec "$@" <&-', *ENCHUFE, "127.0.0.1", str(server.port)) as cmd:
            with server.accept() as peer:
                assert recv_until_eof(peer) == b""
            assert cmd.wait() == 0
    assert cmd.stderr == ""


def test_closed_stderr_sends_no_diagnostics_to_the_peer() -> None:
    # Python leaves sys.stderr None then, and -v used to end in an AttributeError.
    with TcpServer() as server:
        with in_shell('exec "$@" 2>&-', *ENCHUFE, "-v", "127.0.0.1", str(server.port)) as cmd:
            with server.accept() as peer:
                peer.sendall(b"hello\n")
                cmd.close_stdin()
                assert recv_until_eof(peer) == b""
            assert cmd.wait() == 0
    assert cmd.stdout == b"hello\n"


# -- signals ---------------------------------------------------------------------------------------


def test_signals_ignored_at_start_stay_ignored() -> None:
    # A shell starts a background job with SIGINT and SIGQUIT ignored.
    with in_shell("trap '' INT QUIT; exec \"$@\"", *ENCHUFE, "-l", "-v", "127.0.0.1", "0") as cmd:
        cmd.listening_port()
        cmd.popen.send_signal(signal.SIGINT)
        cmd.popen.send_signal(signal.SIGQUIT)
        assert cmd.still_running_after()
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)


def enchufe_frames(stderr: str) -> list[str]:
    """The traceback frames in enchufe's code (the launcher's line 0 is Python's own:
    the signal was raised before the launcher's first instruction)."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    return [
        f"{path}:{line}"
        for path, line in frames
        if path.startswith(str(SRC)) or (path == str(LAUNCHER) and line != "0")
    ]


def test_sigint_during_start_up_never_shows_a_traceback() -> None:
    # The installed launcher, with -S and without PYTHONWARNINGS: until its first
    # instruction, Python's own start-up (site, warnings, the loader of __main__) may
    # turn a SIGINT into a traceback or swallow it, and nothing of enchufe's can run
    # before. Such an attempt shows no frame of enchufe's and is not counted. -z ends
    # the command at once, so a swallowed SIGINT cannot leave it running.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(SRC)
    counted = 0
    with TcpServer(backlog=64) as server:
        for attempt in range(40):
            child = subprocess.Popen(
                [sys.executable, "-S", str(LAUNCHER), "-z", "127.0.0.1", str(server.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            busy(attempt * 250)
            child.send_signal(signal.SIGINT)
            try:
                _, raw = child.communicate(timeout=DEFAULT_TIMEOUT)
            finally:
                child.kill()
                child.communicate()
            stderr = raw.decode()
            assert not enchufe_frames(stderr), (attempt, stderr)
            if stderr:
                continue  # Python's start-up, before the launcher ("KeyboardInterrupt", a traceback)
            counted += 1
            assert child.returncode in (-signal.SIGINT, 0), attempt  # 0: done before the signal
    assert counted


def test_sigterm_while_opening_the_listener_leaves_nothing_to_the_garbage_collector() -> None:
    # A signal used to be raised wherever it came, here between socket() and the code
    # that owns the socket: "ResourceWarning: unclosed <socket ...>". The warning line
    # is written just before the listening sockets are opened.
    for attempt in range(40):
        with Process([*ENCHUFE, "-l", "-m", "1", "127.0.0.1", "0"]) as cmd:
            cmd.wait_for_line("Warning")
            busy(attempt)
            cmd.popen.send_signal(signal.SIGTERM)
            assert cmd.wait() == 128 + signal.SIGTERM
        assert cmd.stderr_lines == [MAX_CONNS_WARNING], attempt
