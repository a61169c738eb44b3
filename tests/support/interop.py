"""Helpers for the interoperability tests against the real ncat (7.93) and socat.

- :class:`Transport`: one kind of socket (TCP or UDP over IPv4/IPv6, Unix stream or
  datagram) and how enchufe/ncat and socat spell an endpoint of it.
- :func:`free_port`: a port that was free a moment ago for the right family and
  socket type. ncat 7.93 prints ``Listening on 0.0.0.0:0`` for port 0
  (ncat-reference §3.1), so a peer listener gets a port picked here instead.
- :class:`Process`: a :class:`~support.procs.Process` whose :meth:`Process.wait` leaves
  stdin alone (``Process.wait`` calls ``communicate()``, which fails once the test
  closed stdin and competes with the stderr reader thread).
- :func:`ncat_listener`, :func:`socat_listener`, :func:`enchufe_listener`: start a
  listener, wait for its readiness line (never a sleep), yield it with its endpoint.
- :func:`shared_random_file`: the 100 MiB of random bytes for the bulk transfers,
  written once per test session however many modules use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.procs import Process, enchufe, free_port

__all__ = [
    "NCAT_LISTENING",
    "SOCAT_LISTENING",
    "STREAM_TRANSPORTS",
    "TRANSPORTS",
    "Process",
    "RandomFile",
    "Transport",
    "enchufe_listener",
    "free_port",
    "ncat_listener",
    "sha256_file",
    "shared_random_file",
    "socat_listener",
    "start",
    "transport_params",
]

#: ncat -v prints this once its socket is bound (and listening, for streams).
NCAT_LISTENING = r"^Ncat: Listening on "
#: socat -d -d prints this once its socket is bound: ``listening on`` for
#: TCP/UDP/UNIX-LISTEN, ``receiving on`` for UNIX-RECVFROM.
SOCAT_LISTENING = r" N (listening|receiving) on "
#: enchufe -v prints this once its socket is bound.
ENCHUFE_LISTENING = r"^enchufe: Listening on "


@dataclass(frozen=True, slots=True)
class Transport:
    """A socket kind, and how enchufe/ncat and socat name an endpoint of it.

    Attributes:
        name: test id (``tcp4``, ``udp6``, ``unix``, ``unixgram``).
        family: ``AF_INET``, ``AF_INET6`` or ``AF_UNIX``.
        datagram: UDP or Unix datagram rather than a stream.
    """

    name: str
    family: int
    datagram: bool

    @property
    def is_unix(self) -> bool:
        return self.family == socket.AF_UNIX

    @property
    def host(self) -> str:
        assert not self.is_unix
        return "::1" if self.family == socket.AF_INET6 else "127.0.0.1"

    def ncat_flags(self) -> list[str]:
        """The transport flags, the same for enchufe and ncat."""
        flags = ["-U"] if self.is_unix else []
        if self.datagram:
            flags.append("-u")
        return flags

    def ncat_listen(self, where: str | int) -> list[str]:
        """enchufe/ncat arguments for a verbose listener on ``where`` (a port, or a
        socket path for Unix)."""
        target = [str(where)] if self.is_unix else [self.host, str(where)]
        return ["-v", "-l", *self.ncat_flags(), *target]

    def ncat_connect(self, where: str | int) -> list[str]:
        """enchufe/ncat arguments for a verbose client of ``where``."""
        target = [str(where)] if self.is_unix else [self.host, str(where)]
        return ["-v", *self.ncat_flags(), *target]

    def socat_listen(self, where: str | int) -> str:
        """A socat address that waits for one peer and answers it.

        ``UNIX-RECVFROM`` takes the first datagram and answers its sender (which must
        have bound an address), like ``ncat -l -U -u``.
        """
        if self.is_unix:
            return f"UNIX-RECVFROM:{where}" if self.datagram else f"UNIX-LISTEN:{where}"
        return f"{self._socat_kind()}-LISTEN:{where},bind={self._socat_host()}"

    def socat_connect(self, where: str | int, *, bind_path: str | None = None) -> str:
        """A socat address that connects to ``where``.

        A Unix datagram client must bind ``bind_path`` (``UNIX-SENDTO:…,bind=…``)
        so that the listener has an address to answer to.
        """
        if self.is_unix:
            if self.datagram:
                assert bind_path is not None, "a socat Unix datagram client needs bind_path"
                return f"UNIX-SENDTO:{where},bind={bind_path}"
            return f"UNIX-CONNECT:{where}"
        return f"{self._socat_kind()}:{self._socat_host()}:{where}"

    def _socat_kind(self) -> str:
        version = 6 if self.family == socket.AF_INET6 else 4
        return f"{'UDP' if self.datagram else 'TCP'}{version}"

    def _socat_host(self) -> str:
        return "[::1]" if self.family == socket.AF_INET6 else "127.0.0.1"

    def free_endpoint(self, sock_dir: str, name: str = "peer.sock") -> str | int:
        """Where a peer can listen: a free port, or a path in ``sock_dir``."""
        if self.is_unix:
            return os.path.join(sock_dir, name)
        return free_port(self.host, socket.SOCK_DGRAM if self.datagram else socket.SOCK_STREAM)


TRANSPORTS = [
    Transport("tcp4", socket.AF_INET, datagram=False),
    Transport("tcp6", socket.AF_INET6, datagram=False),
    Transport("udp4", socket.AF_INET, datagram=True),
    Transport("udp6", socket.AF_INET6, datagram=True),
    Transport("unix", socket.AF_UNIX, datagram=False),
    Transport("unixgram", socket.AF_UNIX, datagram=True),
]
STREAM_TRANSPORTS = [t for t in TRANSPORTS if not t.datagram]


def transport_params(transports: Sequence[Transport], requires_ipv6: pytest.MarkDecorator) -> list[object]:
    """``pytest.param``s for ``transports``, the IPv6 ones marked ``requires_ipv6``."""
    return [
        pytest.param(t, id=t.name, marks=[requires_ipv6] if t.family == socket.AF_INET6 else []) for t in transports
    ]


def start(argv: Sequence[str], *, stdin: object = None, stdout: object = subprocess.PIPE) -> Process:
    """Start ``argv``; stdin is an open pipe by default (:meth:`Process.write`,
    :meth:`Process.close_stdin`), or a file."""
    return Process(argv, stdin=stdin, stdout=stdout)


@contextlib.contextmanager
def ncat_listener(
    transport: Transport, sock_dir: str, *, stdin: object = None, stdout: object = subprocess.PIPE
) -> Iterator[tuple[Process, str | int]]:
    """``ncat -v -l`` on a free endpoint; yields the process and the endpoint (port
    or socket path) once ncat says ``Listening on``. Killed and joined on exit."""
    where = transport.free_endpoint(sock_dir)
    with start(["ncat", *transport.ncat_listen(where)], stdin=stdin, stdout=stdout) as proc:
        proc.wait_for_line(NCAT_LISTENING)
        yield proc, where


@contextlib.contextmanager
def socat_listener(
    transport: Transport,
    sock_dir: str,
    *options: str,
    stdin: object = None,
    stdout: object = subprocess.PIPE,
) -> Iterator[tuple[Process, str | int]]:
    """``socat -d -d OPTIONS LISTEN-ADDRESS -`` on a free endpoint; yields the process
    and the endpoint once socat says ``listening on``/``receiving on``.

    The network address is socat's first address, so its end of file is reported as
    ``socket 1 (fd N) is at EOF``.
    """
    where = transport.free_endpoint(sock_dir)
    argv = ["socat", "-d", "-d", *options, transport.socat_listen(where), "-"]
    with start(argv, stdin=stdin, stdout=stdout) as proc:
        proc.wait_for_line(SOCAT_LISTENING)
        yield proc, where


@contextlib.contextmanager
def enchufe_listener(
    transport: Transport, sock_dir: str, *options: str, stdin: object = None, stdout: object = subprocess.PIPE
) -> Iterator[tuple[Process, str | int]]:
    """``enchufe -v -l OPTIONS HOST 0`` (or ``-U PATH``); yields the process and the real
    endpoint, read from its ``Listening on`` line."""
    if transport.is_unix:
        path = os.path.join(sock_dir, "enchufe.sock")
        with enchufe(*transport.ncat_listen(path), *options, stdin=stdin, stdout=stdout) as proc:
            proc.wait_for_line(ENCHUFE_LISTENING + re.escape(path) + "$")
            yield proc, path
    else:
        with enchufe(*transport.ncat_listen(0), *options, stdin=stdin, stdout=stdout) as proc:
            yield proc, proc.listening_port()


@dataclass(frozen=True, slots=True)
class RandomFile:
    """A file of random bytes and their sha256."""

    path: str
    size: int
    sha256: str


_random_files: dict[str, tuple[RandomFile, int]] = {}


@contextlib.contextmanager
def shared_random_file(directory: Path, size: int) -> Iterator[RandomFile]:
    """``size`` random bytes in ``directory``, written once however many session
    fixtures (one per test module) ask for them, removed when the last one ends."""
    path = str(directory / f"random-{size}.bin")
    if path in _random_files:
        made, users = _random_files[path]
        _random_files[path] = (made, users + 1)
    else:
        made = RandomFile(path, size, _write_random_file(path, size))
        _random_files[path] = (made, 1)
    try:
        yield made
    finally:
        made, users = _random_files.pop(path)
        if users > 1:
            _random_files[path] = (made, users - 1)
        else:
            os.unlink(path)


def _write_random_file(path: str, size: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            block = os.urandom(min(chunk, remaining))
            digest.update(block)
            out.write(block)
            remaining -= len(block)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- shared by test_ncat and test_socat (registered through pytest_plugins in conftest) --

BULK_SIZE = 100 * 1024 * 1024
#: Generous bound for one 100 MiB transfer (it takes well under a second here).
BULK_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def random_100mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RandomFile]:
    """100 MiB of random bytes, written once per session."""
    with shared_random_file(tmp_path_factory.getbasetemp(), BULK_SIZE) as made:
        yield made


@pytest.fixture(scope="session")
def random_256mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RandomFile]:
    """256 MiB of random bytes, written once per session (the end-of-stream tests)."""
    with shared_random_file(tmp_path_factory.getbasetemp(), 256 * 1024 * 1024) as made:
        yield made


@pytest.fixture
def received(tmp_path: Path) -> Iterator[Path]:
    """Where a bulk transfer lands; removed after the test."""
    path = tmp_path / "received.bin"
    yield path
    path.unlink(missing_ok=True)


def tcp(host: str) -> Transport:
    """The TCP transport on ``host`` (from the ``loopback`` fixture)."""
    return next(t for t in STREAM_TRANSPORTS if not t.is_unix and t.host == host)
