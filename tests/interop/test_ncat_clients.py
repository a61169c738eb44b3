"""The real ncat (7.93) as the client of each enchufe listen mode: bytes both ways and
every exit status, over TCP and Unix stream sockets (and UDP where the mode has it).

Modes: ``-l -k``, ``--broker``, ``--chat``, and a program per connection with ``-l -c``
and ``-l -k -c`` (``-e``'s path, the program being ``/bin/sh``). Single-shot
``-l`` (every transport, ``-u`` and ``-U`` included) is in test_ncat.py
(``test_ncat_client_talks_to_enchufe_listener``). Readiness is an event: enchufe's
``Listening on`` and ``Connection from`` lines, data arriving, a stream ending.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator

import pytest

from conftest import requires_ipv6
from support.cli_e2e import stop_listener
from support.interop import TRANSPORTS, Process, Transport, enchufe_listener, start, transport_params

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

STREAMS = transport_params([t for t in TRANSPORTS if t.name in ("tcp4", "tcp6", "unix")], requires_ipv6)
KEEP_OPEN = transport_params(
    [t for t in TRANSPORTS if t.name in ("tcp4", "tcp6", "unix", "udp4", "unixgram")], requires_ipv6
)


@contextlib.contextmanager
def ncat_clients(transport: Transport, where: str | int, count: int) -> Iterator[list[Process]]:
    """``count`` ncat clients of ``where``, their stdin an open pipe; killed on exit."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(start(["ncat", *transport.ncat_connect(where)])) for _ in range(count)]


def end(clients: list[Process]) -> None:
    """Close each client's stdin: ncat half-closes (a datagram client just quits), the
    server closes that client, and ncat exits 0 with nothing more on its stdout."""
    for client in clients:
        client.close_stdin()
        assert client.wait() == 0, client.stderr
        assert client.stdout == b""


@pytest.mark.parametrize("transport", KEEP_OPEN)
def test_keep_open(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir, "-k") as (server, where),
        ncat_clients(transport, where, 2) as clients,
    ):
        for number, client in enumerate(clients):
            # A client speaks first: a datagram listener learns its peers from their first datagram.
            client.write(f"ncat {number}\n".encode())
            server.wait_for_line("Connection from")
            assert server.read_stdout(7) == f"ncat {number}\n".encode()
        server.write(b"to both\n")
        for client in clients:
            assert client.read_stdout(8) == b"to both\n"
        end(clients)
        stop_listener(server)


@pytest.mark.parametrize("transport", STREAMS)
def test_broker(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir, "--broker") as (server, where),
        ncat_clients(transport, where, 3) as (talker, *listeners),
    ):
        for _ in range(3):
            server.wait_for_line("Connection from")
        talker.write(b"from the talker\x00\xff\n")
        for listener in listeners:
            assert listener.read_stdout(18) == b"from the talker\x00\xff\n"
        listeners[0].write(b"answer\n")
        assert talker.read_stdout(7) == listeners[1].read_stdout(7) == b"answer\n"
        end([talker, *listeners])
        stop_listener(server)
        assert server.stdout == b""  # the host's output hears nothing of a broker


@pytest.mark.parametrize("transport", STREAMS)
def test_chat(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir, "--chat") as (server, where),
        ncat_clients(transport, where, 2) as clients,
    ):
        for _ in range(2):
            server.wait_for_line("Connection from")
        # Each is told who was there before it: nobody, for whichever ncat came first.
        greetings = [client.read_until(rb"already connected: [^\n]*\n") for client in clients]
        first, second = clients if b"nobody" in greetings[0] else clients[::-1]
        assert re.search(rb"already connected: .*<user\d+>\.\n", greetings[clients.index(second)])
        first.write(b"hello\x01\n")
        assert re.search(rb"^<user\d+> hello\\001\n", second.read_until(rb"hello"), re.MULTILINE)
        first.close_stdin()
        assert first.wait() == 0
        assert b"hello" not in first.stdout  # a member does not hear itself
        assert re.search(rb"<announce> <user\d+> is disconnected\.\n", second.read_until(rb"disconnected\.\n"))
        end([second])
        stop_listener(server)
        assert server.stdout == b""


@pytest.mark.parametrize("transport", STREAMS)
def test_exec(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir, "-c", "cat; echo after the end of its input") as (server, where),
        ncat_clients(transport, where, 1) as [client],
    ):
        client.write(b"echoed\n")
        assert client.read_stdout(7) == b"echoed\n"
        client.close_stdin()
        # The program's input ends with ncat's half-close; what it writes then still
        # reaches ncat, its exit ends the session, and both exit 0.
        assert client.wait() == 0
        assert client.stdout == b"after the end of its input\n"
        assert server.wait() == 0


@pytest.mark.parametrize("transport", STREAMS)
def test_keep_open_exec(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir, "-k", "-c", 'echo "pid $$"; exec cat') as (server, where),
        ncat_clients(transport, where, 2) as clients,
    ):
        pids = set()
        for number, client in enumerate(clients):
            server.wait_for_line("Connection from")
            pids.add(client.read_until(rb"pid \d+\n"))
            client.write(f"to program {number}\n".encode())
            assert client.read_stdout(13) == f"to program {number}\n".encode()
        assert len(pids) == 2  # one program per client, at the same time
        end(clients)
        stop_listener(server)
