"""Scripted peers for library tests: a loopback server thread that runs one function."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

JOIN_TIMEOUT = 10.0


@contextmanager
def scripted_server(
    script: Callable[[socket.socket], None], *, host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM
) -> Iterator[tuple[str, int]]:
    """Listen on ``host`` port 0; run ``script(conn)`` on the first connection (for
    datagrams: on the bound socket itself) in a thread; yield the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, kind)
    listener.bind((host, 0))
    if kind == socket.SOCK_STREAM:
        listener.listen(8)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if kind == socket.SOCK_STREAM:
                conn, _ = listener.accept()
                with conn:
                    script(conn)
            else:
                script(listener)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="scripted-server")
    thread.start()
    try:
        yield host, listener.getsockname()[1]
    finally:
        thread.join(JOIN_TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "scripted server did not finish"
    if errors:
        raise errors[0]


def recv_all(sock: socket.socket) -> bytes:
    """Read until end of file."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
