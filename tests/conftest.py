"""Shared fixtures: every test is checked for leaked threads and file descriptors."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Property tests are bounded by pytest-timeout like every test; hypothesis's own
# per-example deadline would only make them flaky on a loaded machine.
settings.register_profile("enchufe", deadline=None)
settings.load_profile("enchufe")

#: Fixtures shared by the interop test modules (a conftest.py in tests/interop would
#: shadow this one's module name).
pytest_plugins = ["support.interop", "support.tls"]

#: How long a thread started by a test may take to finish after the test returns.
#: Threads end on events (a socket closing); this only bounds a wait that normally
#: takes microseconds. It would hide a ``close()`` that returns before joining its
#: threads, so the tests of code that promises to join (``Server.close``) check right
#: after it returns, with no grace (``joined`` in tests/serve/test_engine.py).
THREAD_EXIT_GRACE = 5.0


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running or file descriptors open."""
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before]
    for thread in leaked_threads:
        thread.join(THREAD_EXIT_GRACE)
    still_alive = [t.name for t in leaked_threads if t.is_alive()]
    assert not still_alive, f"test leaked threads: {still_alive}"
    leaked_fds = _open_fds() - fds_before
    described = {fd: _describe_fd(fd) for fd in leaked_fds}
    described = {fd: what for fd, what in described.items() if what is not None}
    assert not described, f"test leaked file descriptors: {described}"


def _describe_fd(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return None  # the directory listing's own descriptor, closed since


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()
requires_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback on this machine")


@pytest.fixture(params=["127.0.0.1", pytest.param("::1", marks=requires_ipv6)])
def loopback(request: pytest.FixtureRequest) -> str:
    """Each loopback host in turn: IPv4, then IPv6."""
    host: str = request.param
    return host


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short directory for Unix socket files (their paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="enchufe-test-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
