"""Helpers for the end-to-end tests of the ``enchufe`` command (tests/cli/).

The peers are plain sockets driven by the test thread itself: a test accepts,
sends and receives step by step, each step bounded by :data:`STEP_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import re
import select
import signal
import socket
from collections.abc import Iterator
from types import TracebackType

from support.procs import QUIET_PERIOD, Process

#: Bound on one network step of a test (accept, receive): generous, never reached.
STEP_TIMEOUT = 10.0


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bracket(host: str) -> str:
    """``host:port`` as enchufe prints it: ``127.0.0.1`` or ``[::1]``."""
    return f"[{host}]" if ":" in host else host


class TcpServer:
    """A listening TCP socket on loopback; the test accepts and talks itself."""

    def __init__(self, host: str = "127.0.0.1", *, backlog: int = 5) -> None:
        self.host = host
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port: int = self.sock.getsockname()[1]

    def accept(self, timeout: float = STEP_TIMEOUT) -> socket.socket:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        conn.settimeout(timeout)
        return conn

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Receive exactly ``size`` bytes (fewer only if the peer closes)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_until_eof(sock: socket.socket) -> bytes:
    """Receive until the peer half-closes (within the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def readable_within(sock: socket.socket, seconds: float = QUIET_PERIOD) -> bool:
    """True if ``sock`` has data or end of file within ``seconds``."""
    return bool(select.select([sock], [], [], seconds)[0])


def assert_clean_stderr(stderr: str) -> None:
    """No Python traceback or warning ever reaches the user."""
    for marker in ("Traceback", "Exception ignored", "ResourceWarning"):
        assert marker not in stderr, stderr


def connect(port: int, host: str = "127.0.0.1", *, source: str | None = None) -> socket.socket:
    """A client of the command under test, each step bounded by :data:`STEP_TIMEOUT`;
    ``source`` binds the client's own address first (another 127.0.0.0/8 address)."""
    client = socket.create_connection(
        (host, port), timeout=STEP_TIMEOUT, source_address=None if source is None else (source, 0)
    )
    client.settimeout(STEP_TIMEOUT)
    return client


def stop_listener(cmd: Process) -> None:
    """End a listener that runs until a signal: SIGTERM, status 128+15, clean stderr."""
    cmd.popen.send_signal(signal.SIGTERM)
    assert cmd.wait() == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)


@contextlib.contextmanager
def two_clients_and_a_third_refused(cmd: Process) -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two clients of ``-l -k -m 2 -v``, both announced, once a third has been refused
    by the limit (and closed at once)."""
    port = cmd.listening_port()
    with connect(port) as a, connect(port) as b:
        cmd.wait_for_line("Connection from")
        cmd.wait_for_line("Connection from")
        with connect(port) as third:
            cmd.wait_for_line(r"New connection denied: connection limit reached \(2\)")
            assert third.recv(10) == b""
        yield a, b


def quiet(sock: socket.socket) -> bool:
    """True while nothing came from ``sock``'s peer, not even its end (a look, no wait)."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(STEP_TIMEOUT)
    return False


#: A chat's join announcement, as the newcomer and everyone else hear it.
ANNOUNCE = re.compile(
    rb"<announce> 127\.0\.0\.1:(\d+) is connected as <user(\d+)>\.\n<announce> already connected: (.*)\.\n"
)


def read_announcement(sock: socket.socket, newcomer: socket.socket | None = None) -> tuple[int, bytes]:
    """Read one join announcement (of ``newcomer``, ``sock`` itself by default): the
    user number and the "already connected" list."""
    data = b""
    while not ANNOUNCE.fullmatch(data):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    match = ANNOUNCE.fullmatch(data)
    assert match is not None
    assert int(match.group(1)) == (newcomer or sock).getsockname()[1]
    return int(match.group(2)), match.group(3)
