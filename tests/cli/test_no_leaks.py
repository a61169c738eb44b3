"""Thousands of short connections to a keep-open listener leave no thread and no
descriptor behind in the server (read from /proc/PID/status and /proc/PID/fd)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from support.cli_e2e import STEP_TIMEOUT, recv_until_eof, stop_listener
from support.procs import Process, enchufe


def threads_and_descriptors(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^Threads:\s+(\d+)$", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)), len(os.listdir(f"/proc/{pid}/fd"))


def settled(pid: int, expected: tuple[int, int] | None = None, timeout: float = STEP_TIMEOUT) -> tuple[int, int]:
    """The server's counts once they equal ``expected`` (``None``: once five readings
    10 ms apart agree), or what they are at the deadline.

    The client sees a connection end before the server has reaped what served it (a
    handler thread, a program, a transport's last callback): there is no event to wait
    for but the count itself, read again until it settles.
    """
    deadline = time.monotonic() + timeout
    readings = [threads_and_descriptors(pid)]
    while time.monotonic() < deadline:
        if readings[-1] == expected or (expected is None and len(readings) >= 5 and len(set(readings[-5:])) == 1):
            break
        time.sleep(0.01)
        readings.append(threads_and_descriptors(pid))
    return readings[-1]


def one_connection(port: int, payload: bytes) -> bytes:
    """Connect, send ``payload``, half-close, read until the server closes; what it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return recv_until_eof(client)


def many_connections(cmd: Process, count: int, *, echoed: bool) -> None:
    """``count`` connections one after another; once the last is over, the server has
    the threads and descriptors it had once the first was over."""
    port = cmd.listening_port()
    pid = cmd.popen.pid
    assert one_connection(port, b"0") == (b"0" if echoed else b"")
    after_first = settled(pid)
    for index in range(1, count):
        payload = str(index % 10).encode()
        assert one_connection(port, payload) == (payload if echoed else b"")
    if not echoed:  # every byte reached stdout, in order
        assert cmd.read_stdout(count) == b"".join(str(i % 10).encode() for i in range(count))
    assert settled(pid, after_first) == after_first
    stop_listener(cmd)


@pytest.mark.slow
def test_ten_thousand_connections_to_keep_open_leave_nothing_behind() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        many_connections(cmd, 10_000, echoed=False)


@pytest.mark.slow
def test_hundreds_of_programs_for_keep_open_exec_leave_nothing_behind() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "-e", "/bin/cat") as cmd:
        many_connections(cmd, 2_000, echoed=True)
