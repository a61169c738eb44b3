"""``enchufe.cli.main.main`` called in-process, with pipes for stdin and stdout.

The same command as the end-to-end tests, without a child process: this is what a
program embedding the command sees. The autouse fixture checks that a run leaves
no thread and no file descriptor behind; every pipe end is closed here.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.cli.main import main
from support.cli_e2e import STEP_TIMEOUT, TcpServer, recv_exactly, recv_until_eof
from support.procs import free_port


class Pipes:
    """stdin and stdout pipes for one run of ``main``."""

    def __init__(self) -> None:
        self.stdin_read, self.stdin_write = os.pipe()
        self.stdout_read, self.stdout_write = os.pipe()

    def feed(self, data: bytes) -> None:
        """Write all of stdin (small: it fits in the pipe) and close it."""
        os.write(self.stdin_write, data)
        os.close(self.stdin_write)
        self.stdin_write = -1

    def read_stdout(self) -> bytes:
        """Everything written to stdout; ``main`` has released it by now."""
        os.close(self.stdout_write)  # main turned it into /dev/null, or still holds it
        self.stdout_write = -1
        chunks = []
        while chunk := os.read(self.stdout_read, 65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in (self.stdin_read, self.stdin_write, self.stdout_read, self.stdout_write):
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    made = Pipes()
    yield made
    made.close()


class LineSignal(io.StringIO):
    """A stderr that lets another thread wait for a line matching a pattern."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._pattern = re.compile(pattern)
        self.seen = threading.Event()
        self.match: re.Match[str] | None = None

    def write(self, text: str) -> int:
        written = super().write(text)
        if not self.seen.is_set() and (match := self._pattern.search(self.getvalue())):
            self.match = match
            self.seen.set()
        return written


def run_in_thread(argv: list[str], pipes: Pipes, stderr: io.StringIO) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []

    def target() -> None:
        status.append(
            main(argv, stdin_fd=pipes.stdin_read, stdout_fd=pipes.stdout_write, stderr=stderr),
        )

    thread = threading.Thread(target=target, name="enchufe-main")
    thread.start()
    return thread, status


def test_connect_mode(pipes: Pipes) -> None:
    stderr = io.StringIO()
    with TcpServer() as server:
        thread, status = run_in_thread(["-v", "127.0.0.1", str(server.port)], pipes, stderr)
        try:
            pipes.feed(b"in-process request\n")
            with server.accept() as peer:
                assert recv_until_eof(peer) == b"in-process request\n"
                peer.sendall(b"in-process answer\n")
        finally:
            thread.join(STEP_TIMEOUT)
    assert status == [0]
    assert pipes.read_stdout() == b"in-process answer\n"
    lines = stderr.getvalue().splitlines()
    assert lines[1:2] == [f"enchufe: Connected to 127.0.0.1:{server.port}."]
    assert re.fullmatch(r"enchufe: 19 bytes sent, 18 bytes received in \d+\.\d\d seconds\.", lines[2])


def test_connect_mode_in_the_calling_thread(pipes: Pipes) -> None:
    stderr = io.StringIO()
    received: list[bytes] = []
    with TcpServer() as server:

        def serve() -> None:
            with server.accept() as peer:
                received.append(recv_until_eof(peer))
                peer.sendall(b"done")

        server_thread = threading.Thread(target=serve, name="test-server")
        server_thread.start()
        try:
            pipes.feed(b"")
            status = main(
                ["127.0.0.1", str(server.port)], stdin_fd=pipes.stdin_read, stdout_fd=pipes.stdout_write, stderr=stderr
            )
        finally:
            server_thread.join(STEP_TIMEOUT)
    assert received == [b""]  # stdin's immediate EOF half-closed the connection
    assert status == 0
    assert pipes.read_stdout() == b"done"
    assert stderr.getvalue() == ""


def test_listen_mode(pipes: Pipes) -> None:
    stderr = LineSignal(r"Listening on 127\.0\.0\.1:(\d+)\n")
    thread, status = run_in_thread(["-l", "-v", "127.0.0.1", "0"], pipes, stderr)
    try:
        assert stderr.seen.wait(STEP_TIMEOUT), stderr.getvalue()
        assert stderr.match is not None
        port = int(stderr.match.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as client:
            client.sendall(b"to the listener")
            os.write(pipes.stdin_write, b"to the client")
            assert recv_exactly(client, 13) == b"to the client"
    finally:
        thread.join(STEP_TIMEOUT)
    assert not thread.is_alive()
    assert status == [0]
    assert pipes.read_stdout() == b"to the listener"
    assert f"enchufe: Listening on 127.0.0.1:{port}\n" in stderr.getvalue()


def test_listen_mode_on_a_chosen_port(pipes: Pipes) -> None:
    port = free_port()
    stderr = LineSignal(r"Listening on ")
    thread, status = run_in_thread(["-l", "-v", "127.0.0.1", str(port)], pipes, stderr)
    try:
        assert stderr.seen.wait(STEP_TIMEOUT), stderr.getvalue()
        pipes.feed(b"hello and goodbye")
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as client:
            client.settimeout(STEP_TIMEOUT)
            assert recv_until_eof(client) == b"hello and goodbye"  # stdin's EOF half-closed
            client.sendall(b"bye")
    finally:
        thread.join(STEP_TIMEOUT)
    assert status == [0]
    assert pipes.read_stdout() == b"bye"


def test_network_error_status(pipes: Pipes) -> None:
    stderr = io.StringIO()
    port = free_port()
    status = main(["127.0.0.1", str(port)], stdin_fd=pipes.stdin_read, stdout_fd=pipes.stdout_write, stderr=stderr)
    assert status == 1
    assert stderr.getvalue() == "enchufe: Connection refused.\n"


def test_usage_error_status(pipes: Pipes) -> None:
    stderr = io.StringIO()
    status = main(["--baffle"], stdin_fd=pipes.stdin_read, stdout_fd=pipes.stdout_write, stderr=stderr)
    assert status == 2
    assert stderr.getvalue() == (
        "enchufe: unrecognized option '--baffle'\n"
        "enchufe: Try `--help' or man(1) ncat for more information, usage options and help. QUITTING.\n"
    )


def test_idle_timeout_status(pipes: Pipes) -> None:
    stderr = io.StringIO()
    with TcpServer() as server:
        thread, status = run_in_thread(["-i", "100ms", "127.0.0.1", str(server.port)], pipes, stderr)
        try:
            with server.accept() as peer:
                thread.join(STEP_TIMEOUT)
                assert recv_until_eof(peer) == b""
        finally:
            thread.join(STEP_TIMEOUT)
    assert status == [1]
    assert stderr.getvalue() == "enchufe: Idle timeout expired (100 ms).\n"
