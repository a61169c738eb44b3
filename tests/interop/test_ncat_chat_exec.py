"""proto.chat and execspec against the real ncat: the bytes a chat room sends, the
arguments and the environment -e gives a program (loopback only)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import pytest

from enchufe.address import InetAddress
from enchufe.execspec import exec_environment, split_command
from enchufe.proto.chat import Room
from support.interop import NCAT_LISTENING, free_port, start
from support.procs import DEFAULT_TIMEOUT

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"


def _ncat_version() -> tuple[int, ...]:
    out = subprocess.run(["ncat", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"Version (\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(part) for part in found.groups()) if found else (0, 0)


#: 7.96+ names a peer with its port (ncat-reference §3.1).
PEER_HAS_PORT = _ncat_version() >= (7, 96)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while len(data) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(DEFAULT_TIMEOUT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def join(room: Room, sock: socket.socket, members: list[tuple[int, socket.socket]]) -> int:
    """Connect ``sock`` to ncat; check what everyone receives; return its number."""
    peer = str(InetAddress(*sock.getsockname())) if PEER_HAS_PORT else HOST
    head = f"<announce> {peer} is connected as <user".encode()
    first = recv_exactly(sock, len(head) + 1)
    assert first.startswith(head), first
    rest = first[len(head) :]
    while not rest.endswith(b">"):
        rest += recv_exactly(sock, 1)
    user = int(rest[:-1])
    expected = dict(room.join(user, peer))
    got = first[: len(head)] + rest
    got += recv_exactly(sock, len(expected[user]) - len(got))
    assert got == expected[user]
    for other, other_sock in members:
        assert recv_exactly(other_sock, len(expected[other])) == expected[other]
    return user


def test_chat_room_sends_what_ncat_sends() -> None:
    port = free_port(HOST)
    with start(["ncat", "-v", "-l", "--chat", HOST, str(port)]) as ncat:
        ncat.wait_for_line(NCAT_LISTENING)
        room = Room()
        with socket.create_connection((HOST, port)) as a, socket.create_connection((HOST, port)) as b:
            user_a = join(room, a, [])
            user_b = join(room, b, [(user_a, a)])

            chunk = bytes(range(256)) + b"line1\nline2\npartial"
            a.sendall(chunk)
            [(recipient, data)] = room.message(user_a, chunk)
            assert recipient == user_b
            assert recv_exactly(b, len(data)) == data

            ncat.write(b"from host\n")
            for user, sock in ((user_a, a), (user_b, b)):
                expected = dict(room.message(0, b"from host\n"))[user]
                assert recv_exactly(sock, len(expected)) == expected

            b.close()
            [(recipient, data)] = room.leave(user_b)
            assert recipient == user_a
            assert recv_exactly(a, len(data)) == data


#: -e texts whose arguments /usr/bin/printf shows (after a first argument, "ncat").
SPLIT_CASES = [r"ncat -l\ -k", r"ncat -l\\ -k", r"ncat a\  b", 'ncat "-l -k"', "ncat -l \\", "ncat\ta\nb"]


@pytest.mark.skipif(not shutil.which("/usr/bin/printf"), reason="needs /usr/bin/printf")
@pytest.mark.parametrize("command", SPLIT_CASES)
def test_split_command_gives_the_arguments_ncat_gives(command: str) -> None:
    port = free_port(HOST)
    # printf's format, escaped for the splitter: each argument followed by a NUL
    with start(["ncat", "-v", "-l", HOST, str(port), "-e", r"/usr/bin/printf %s\\000 " + command]) as ncat:
        ncat.wait_for_line(NCAT_LISTENING)
        with socket.create_connection((HOST, port)) as sock:
            out = recv_to_eof(sock)
    assert out.split(b"\0")[:-1] == [arg.encode() for arg in split_command(command)]


def test_exec_environment_is_what_ncat_sets() -> None:
    port = free_port(HOST)
    with start(["ncat", "-v", "-l", HOST, str(port), "-e", "/usr/bin/env"]) as ncat:
        ncat.wait_for_line(NCAT_LISTENING)
        with socket.create_connection((HOST, port)) as sock:
            client = InetAddress(*sock.getsockname())
            out = recv_to_eof(sock).decode()
    ncat_lines = [line for line in out.splitlines() if line.startswith("NCAT_")]
    expected = exec_environment(local=InetAddress(HOST, port), remote=client)
    assert ncat_lines == [f"{name}={value}" for name, value in expected.items()]
