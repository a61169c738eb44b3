"""--lua-exec next to ncat 7.93's own: the same scripts (tests/support/lua.py), the same
client steps, the same bytes back. The client never half-closes before it has what it
waits for: ncat 7.93 loses a script's output after the peer's half-close."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.cli_e2e import connect, recv_exactly, recv_until_eof
from support.interop import NCAT_LISTENING, free_port, start
from support.lua import write_script
from support.procs import Process, enchufe

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)
pytest.importorskip("lupa", reason="--lua-exec needs lupa: pip install -e '.[dev,lua]'")

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"


@contextlib.contextmanager
def lua_listener(tool: str, script: str, *options: str) -> Iterator[tuple[Process, int]]:
    if tool == "ncat":
        port = free_port(HOST)
        with start(["ncat", "-v", "-l", *options, HOST, str(port), "--lua-exec", script]) as proc:
            proc.wait_for_line(NCAT_LISTENING)
            yield proc, port
    else:
        with enchufe("-v", "-l", *options, HOST, "0", "--lua-exec", script) as proc:
            yield proc, proc.listening_port()


def toupper(client: socket.socket) -> bytes:
    client.sendall(b"abc\n")
    first = recv_exactly(client, 4)
    client.sendall(b"Mixed Case")
    return first + recv_exactly(client, 10)


def lines(client: socket.socket) -> bytes:
    client.sendall(b"one\ntwo\n")
    return recv_exactly(client, len(b"line: one\nline: two\n"))


def environment(client: socket.socket) -> bytes:
    own, port = client.getsockname()[1], client.getpeername()[1]
    return recv_until_eof(client).replace(str(own).encode(), b"<client>").replace(str(port).encode(), b"<server>")


def buffered(client: socket.socket) -> bytes:
    client.sendall(b"a line\n")
    return recv_until_eof(client)


CASES: dict[str, Callable[[socket.socket], bytes]] = {
    "toupper": toupper,
    "lines": lines,
    "environment": environment,
    "hello": recv_until_eof,
    "unflushed": recv_until_eof,
    "buffered": buffered,
}


@pytest.mark.parametrize("name", CASES)
def test_a_script_gives_the_client_what_ncat_gives(tmp_path: Path, name: str) -> None:
    script = write_script(tmp_path, name)
    received = {}
    for tool in ("ncat", "enchufe"):
        with lua_listener(tool, script) as (proc, port):
            with connect(port) as client:
                received[tool] = CASES[name](client)
            proc.kill()
    assert received["enchufe"] == received["ncat"]
    assert received["ncat"]  # the case exercised the script


def test_keep_open_serves_clients_at_once_as_ncat(tmp_path: Path) -> None:
    script = write_script(tmp_path, "toupper")
    received = {}
    for tool in ("ncat", "enchufe"):
        with lua_listener(tool, script, "-k") as (proc, port):
            with connect(port) as a, connect(port) as b:
                b.sendall(b"b first")
                a.sendall(b"then a")
                received[tool] = (recv_exactly(b, 7), recv_exactly(a, 6))
            proc.kill()
    assert received["enchufe"] == received["ncat"] == (b"B FIRST", b"THEN A")


def test_connect_mode_as_ncat(tmp_path: Path) -> None:
    script = write_script(tmp_path, "lines")
    received = {}
    for tool in ("ncat", "enchufe"):
        with socket.create_server((HOST, 0)) as server:
            server.settimeout(10)
            port = str(server.getsockname()[1])
            argv = [HOST, port, "--lua-exec", script]
            with start(["ncat", *argv], stdin=b"") if tool == "ncat" else enchufe(*argv, stdin=b"") as proc:
                peer, _ = server.accept()
                with peer:
                    peer.settimeout(10)
                    peer.sendall(b"x\ny\n")
                    received[tool] = recv_exactly(peer, len(b"line: x\nline: y\n"))
                proc.kill()
    assert received["enchufe"] == received["ncat"] == b"line: x\nline: y\n"
