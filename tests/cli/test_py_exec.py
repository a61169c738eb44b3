"""``--py-exec``: a Python ``handle(conn)`` per connection, in the command's process,
one thread per connection with -k; its failures, and what it changes in the option
table (nothing ncat's)."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from support.cli_e2e import (
    TcpServer,
    assert_clean_stderr,
    connect,
    recv_until_eof,
    stop_listener,
    two_clients_and_a_third_refused,
)
from support.procs import Process, enchufe, run_enchufe

#: Upper-cases each line until the end of stream; "fail" raises (at line 10); each
#: answer names the thread serving it.
HANDLER = """
import threading

from enchufe import UnexpectedEOF

def handle(conn):
    try:
        while line := conn.recv_line(timeout=10):
            if line == b"fail\\n":
                raise ValueError("asked to fail")
            conn.send_all(line.upper().rstrip(b"\\n") + b" " + threading.current_thread().name.encode() + b"\\n")
    except UnexpectedEOF:
        pass  # the client is done
"""


@pytest.fixture
def handler_file(tmp_path: Path) -> str:
    path = tmp_path / "handler.py"
    path.write_text(HANDLER)
    return str(path)


def ask(client: socket.socket, line: bytes) -> list[bytes]:
    client.sendall(line)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = client.recv(100)
        assert chunk, answer
        answer += chunk
    return answer.split()


def test_listen_mode_one_connection_then_exit(handler_file: str) -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0", "--py-exec", handler_file) as cmd:
        with connect(cmd.listening_port()) as client:
            assert ask(client, b"hello\n")[0] == b"HELLO"
            client.shutdown(socket.SHUT_WR)
            assert recv_until_eof(client) == b""
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_keep_open_one_thread_per_connection_capped_by_max_conns(handler_file: str) -> None:
    with enchufe("-l", "-k", "-m", "2", "-v", "127.0.0.1", "0", "--py-exec", handler_file) as cmd:
        with two_clients_and_a_third_refused(cmd) as (a, b):
            word_a, thread_a = ask(a, b"a\n")
            word_b, thread_b = ask(b, b"b\n")
            assert (word_a, word_b) == (b"A", b"B")
            assert thread_a.startswith(b"conn-127.0.0.1:") and thread_a != thread_b
            b.close()
            assert ask(a, b"still\n")[0] == b"STILL"
        stop_listener(cmd)


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_a_handler_that_raises_is_one_line_and_the_server_goes_on(handler_file: str, verbosity: str) -> None:
    with enchufe("-l", "-k", verbosity, "127.0.0.1", "0", "--py-exec", handler_file) as cmd:
        port = cmd.listening_port()
        with connect(port) as failing:
            failing.sendall(b"fail\n")
            assert recv_until_eof(failing) == b""  # closed by the server
        line = cmd.wait_for_line(r"^enchufe: --py-exec handler failed for 127\.0\.0\.1:\d+: ")
        assert line.string.endswith("handler.py:10: ValueError: asked to fail")
        with connect(port) as next_client:
            assert ask(next_client, b"next\n")[0] == b"NEXT"
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert ("Traceback (most recent call last)" in cmd.stderr) == (verbosity == "-vv")


def test_a_handler_failure_is_shown_without_v(handler_file: str) -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port), "--py-exec", handler_file, stdin=b"") as cmd:
        with server.accept() as peer:
            peer.sendall(b"fail\n")
            assert recv_until_eof(peer) == b""
        assert cmd.wait() == 0  # as for -e, the session's end; the failure is said on stderr
    [line] = cmd.stderr.splitlines()
    assert line.startswith("enchufe: --py-exec handler failed for 127.0.0.1:")
    assert line.endswith("handler.py:10: ValueError: asked to fail")


def test_a_signal_interrupts_a_handler_in_the_main_thread(tmp_path: Path) -> None:
    """Without -k the handler runs in the main thread; SIGTERM ends it there, as
    Ctrl-C ends any Python program, and the listener exits 128+15."""
    blocked = tmp_path / "blocked.py"
    blocked.write_text("def handle(conn):\n    conn.recv(10, timeout=None)\n")
    with enchufe("-l", "-v", "127.0.0.1", "0", "--py-exec", str(blocked)) as cmd:
        with connect(cmd.listening_port()):
            cmd.wait_for_line("Connection from")
            stop_listener(cmd)


def test_a_handler_that_ignores_its_connection_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """With -k, a signal closes every connection; a handler that pays no attention (it
    sleeps) cannot be stopped from outside: the command leaves it behind after a second,
    says so with -v, and exits 128+15 — no Python warning, no wait for the sleep."""
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\n\ndef handle(conn):\n    time.sleep(60)\n")
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "--py-exec", str(sleeper)) as cmd:
        with connect(cmd.listening_port()):
            cmd.wait_for_line("Connection from")
            cmd.popen.send_signal(signal.SIGTERM)
            assert cmd.wait(timeout=10) == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)
    assert "RuntimeWarning" not in cmd.stderr
    assert cmd.stderr_lines[-1].startswith("enchufe: Server.close() left threads running after 1.0 s: conn-127.0.0.1:")


def test_connect_mode_the_handler_talks_to_the_server(handler_file: str) -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port), "--py-exec", handler_file, stdin=b"") as cmd:
        with server.accept() as peer:
            assert ask(peer, b"over there\n")[:2] == [b"OVER", b"THERE"]
            peer.shutdown(socket.SHUT_WR)
            assert recv_until_eof(peer) == b""
        assert cmd.wait() == 0
    assert cmd.stdout == b""
    assert_clean_stderr(cmd.stderr)


def test_module_function_is_imported_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "greeter.py").write_text("def greet(conn):\n    conn.send_all(b'hello from a module\\n')\n")
    monkeypatch.chdir(tmp_path)
    # -P: the current directory is not on sys.path, as for the installed command
    with Process(
        [sys.executable, "-P", "-m", "enchufe", "-l", "-v", "127.0.0.1", "0", "--py-exec", "greeter:greet"]
    ) as cmd:
        with connect(cmd.listening_port()) as client:
            assert recv_until_eof(client) == b"hello from a module\n"
        assert cmd.wait() == 0


@pytest.mark.parametrize(
    ("source", "spec", "error"),
    [
        (None, "missing.py", "can't open missing.py: No such file or directory"),
        ("def handle(conn)\n", "handler.py", "handler.py:1: expected ':'"),
        ("def serve(conn):\n    pass\n", "handler.py", "handler.py has no handle(conn)"),
        ("handle = 42\n", "handler.py", "handler.py: handle is not a function"),
        ("import no_such_module_here\n", "handler.py", "No module named 'no_such_module_here'"),
        ("x = 1\nraise RuntimeError('not today')\n", "handler.py", "handler.py:2: RuntimeError: not today"),
        (None, "no_such_module_here:handle", "No module named 'no_such_module_here'"),
        (None, "os:sep", "module os: sep is not a function"),
        (None, "os:no_such_function", "module os has no no_such_function(conn)"),
        (None, "a-b:c", "a-b:c is neither a file nor module:function"),
    ],
)
def test_a_handler_that_cannot_load_fails_before_listening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None, spec: str, error: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if source is not None:
        (tmp_path / spec).write_text(source)
    result = run_enchufe("-l", "-v", "127.0.0.1", "0", "--py-exec", spec)
    assert result.returncode == 2
    assert result.stderr.decode() == f"enchufe: Error loading the Python handler: {error}. QUITTING.\n"
