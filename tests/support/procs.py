"""Running the enchufe command (and its peers) as real processes.

:class:`Process` reads the child's stderr in a thread, so a test can wait for a line
(``Listening on 127.0.0.1:40123``) instead of sleeping. Everything it starts is
killed and joined on exit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

ENCHUFE = [sys.executable, "-m", "enchufe"]
DEFAULT_TIMEOUT = 20.0

#: How long "nothing happens" is watched for (the peer gets no EOF, the command does
#: not exit). Only negative checks wait this long; no event can signal them.
QUIET_PERIOD = 0.3


class Process:
    """A child process whose stderr lines can be awaited.

    Args:
        argv: the command line.
        stdin: bytes to feed then close, ``None`` for an open pipe (use
            :meth:`write`/:meth:`close_stdin`), or a file object/descriptor.
        stdout: ``subprocess.PIPE`` (default) or a file object/descriptor.
    """

    def __init__(self, argv: Sequence[str], *, stdin: object = None, stdout: object = subprocess.PIPE) -> None:
        self.argv = list(argv)
        feed = stdin if isinstance(stdin, bytes) else None
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin is None or feed is not None else stdin,  # type: ignore[arg-type]
            stdout=stdout,  # type: ignore[arg-type]
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, name=f"stderr-{argv[0]}")
        self._reader.start()
        self._feeder: threading.Thread | None = None
        if feed is not None:
            self._feeder = threading.Thread(target=self._feed, args=(feed,), name="stdin-feeder")
            self._feeder.start()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _feed(self, data: bytes) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(data)
            self.popen.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def wait_for_line(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Wait until a stderr line matches ``pattern`` (a regex, searched)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no stderr line matching {pattern!r}; got {self.stderr_lines}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended without a line matching {pattern!r}; got {self.stderr_lines}")
            if match := regex.search(line):
                return match

    def listening_port(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The port from the first ``Listening on HOST:PORT`` line (needs ``-v``)."""
        return int(self.wait_for_line(r"Listening on .*:(\d+)$", timeout).group(1))

    def write(self, data: bytes) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def read_stdout(self, size: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read exactly ``size`` bytes of stdout (fewer only at end of file)."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise AssertionError(f"timed out reading stdout; got {data!r}")
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def read_until(self, pattern: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read stdout until ``pattern`` (a regex, searched) has appeared (openssl's
        ``ACCEPT``, a line a peer relayed); return all that was read, which may go past
        the match."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, data):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise AssertionError(f"no {pattern!r} on stdout; got {data[-300:]!r}, stderr {self.stderr_lines}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"stdout ended before {pattern!r}; got {data[-300:]!r}")
            data += chunk
        return data

    def read_to_eof(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read stdout until end of file (the process closed it, or exited)."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise AssertionError(f"{self.argv[0]}: stdout did not end within {timeout} s; got {out[-200:]!r}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return out
            out += chunk

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Read the rest of stdout (into :attr:`stdout`) if it is a pipe, then return
        the exit status. Stdin is left alone (a test may keep it open), and stderr
        stays with the line-reader thread."""
        deadline = time.monotonic() + timeout
        stdout = self.popen.stdout
        self.stdout = self.read_to_eof(timeout) if stdout is not None and not stdout.closed else b""
        try:
            returncode = self.popen.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv[0]} did not exit within {timeout} s; stderr: {self.stderr_lines}"
            ) from None
        self._join()
        return returncode

    def still_running_after(self, seconds: float = QUIET_PERIOD) -> bool:
        """True if the process has not exited ``seconds`` from now (for checks that
        something does *not* happen, which no event can signal)."""
        try:
            self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            return True
        return False

    def stdout_at_eof(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait for stdout to be readable; True if it is at end of file."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            raise AssertionError("stdout stayed silent")
        return os.read(fd, 1 << 16) == b""

    @property
    def stderr(self) -> str:
        self._join()
        return "\n".join(self.stderr_lines)

    def _join(self) -> None:
        if self._feeder is not None:
            self._feeder.join(DEFAULT_TIMEOUT)
        if self.popen.poll() is not None:
            self._reader.join(DEFAULT_TIMEOUT)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(DEFAULT_TIMEOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        self._reader.join(DEFAULT_TIMEOUT)
        if self._feeder is not None:
            self._feeder.join(DEFAULT_TIMEOUT)
        if self.popen.stderr is not None:
            self.popen.stderr.close()


def enchufe(*args: str, stdin: object = None, stdout: object = subprocess.PIPE) -> Process:
    """Start ``python -m enchufe ARGS``; stdin is an open pipe by default."""
    return Process([*ENCHUFE, *args], stdin=stdin, stdout=stdout)


def tool(name: str, *args: str, stdin: object = None, stdout: object = subprocess.PIPE) -> Process:
    """Start ``python -m enchufe.NAME ARGS`` (the ``enchufe-NAME`` command)."""
    return Process([sys.executable, "-m", f"enchufe.{name}", *args], stdin=stdin, stdout=stdout)


def run_tool(
    name: str, *args: str, input: bytes = b"", timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m enchufe.NAME ARGS`` (the ``enchufe-NAME`` command) to completion."""
    return run([sys.executable, "-m", f"enchufe.{name}", *args], input=input, timeout=timeout)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on ``host`` a moment ago (bind to 0, read it, close).

    Another process could take it in between; the kernel hands out ephemeral ports in
    a scattered order, so that is rare, and it shows up as a bind error, not as a
    wrong result. Only for peers that cannot report the port they got (ncat 7.93).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def run(
    argv: Sequence[str], *, input: bytes = b"", timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion with ``input`` on stdin."""
    return subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=False)


def run_enchufe(*args: str, input: bytes = b"", timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m enchufe ARGS`` to completion."""
    return run([*ENCHUFE, *args], input=input, timeout=timeout)
