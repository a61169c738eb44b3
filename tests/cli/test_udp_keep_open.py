"""``enchufe -u -l -k``: many UDP (and Unix datagram) peers on one socket, end to end.

Each peer address is a client: its datagrams go to stdout, stdin goes to every peer;
``-m`` and ``--allow``/``--deny`` admit peers as they admit TCP clients, and ``-i``
forgets a silent peer (ncat never does). ``--broker`` and ``--chat`` work over UDP too.
A denied peer does not use up a single-shot UDP listener either.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_e2e import STEP_TIMEOUT, stop_listener
from support.procs import Process, enchufe


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    """Three UDP peers on loopback, the third from 127.0.0.2."""
    made = []
    for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind((host, 0))
        peer.settimeout(STEP_TIMEOUT)
        made.append(peer)
    yield made
    for peer in made:
        peer.close()


def name(peer: socket.socket) -> str:
    host, port = peer.getsockname()
    return f"{host}:{port}"


def test_every_peer_is_a_client(peers: list[socket.socket]) -> None:
    a, b, _ = peers
    with enchufe("-u", "-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"from a\n", server)
        cmd.wait_for_line(f"Connection from {name(a)}.")
        assert cmd.read_stdout(7) == b"from a\n"
        b.sendto(b"from b\n", server)
        cmd.wait_for_line(f"Connection from {name(b)}.")
        assert cmd.read_stdout(7) == b"from b\n"
        cmd.write(b"to every peer\n")
        assert a.recv(100) == b.recv(100) == b"to every peer\n"
        a.sendto(b"a again\n", server)  # a known peer: no new connection
        assert cmd.read_stdout(8) == b"a again\n"
        stop_listener(cmd)
    assert cmd.stderr.count("Connection from") == 2


def test_each_read_of_stdin_is_one_datagram_of_at_most_8_kib(peers: list[socket.socket], tmp_path: Path) -> None:
    data = os.urandom(40_000)
    source = tmp_path / "data"
    source.write_bytes(data)
    a = peers[0]
    with source.open("rb") as stdin, enchufe("-u", "-l", "-k", "-v", "127.0.0.1", "0", stdin=stdin) as cmd:
        a.sendto(b"here\n", ("127.0.0.1", cmd.listening_port()))  # stdin is read once a peer is there
        received = []
        while sum(map(len, received)) < len(data):
            received.append(a.recv(65536))
        stop_listener(cmd)
    assert max(map(len, received)) <= 8192
    assert b"".join(received) == data


def test_a_silent_peer_is_forgotten_after_the_idle_timeout_and_frees_its_place(peers: list[socket.socket]) -> None:
    a, b, _ = peers
    with enchufe("-u", "-l", "-k", "-m", "1", "-i", "500ms", "-v", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"a\n", server)
        cmd.wait_for_line(f"Connection from {name(a)}.")
        b.sendto(b"refused\n", server)
        cmd.wait_for_line(r"^enchufe: New connection denied: connection limit reached \(1\)$")
        cmd.wait_for_line(rf"^enchufe: Disconnected {name(a)}: Idle timeout expired \(500 ms\)\.$")
        b.sendto(b"b\n", server)
        cmd.wait_for_line(f"Connection from {name(b)}.")
        assert cmd.read_stdout(4) == b"a\nb\n"  # the refused datagram never reached stdout
        cmd.write(b"only b\n")
        assert b.recv(100) == b"only b\n"
        stop_listener(cmd)


def test_without_an_idle_timeout_a_peer_stays(peers: list[socket.socket]) -> None:
    a, b, _ = peers
    with enchufe("-u", "-l", "-k", "-m", "1", "-v", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"a\n", server)
        cmd.wait_for_line(f"Connection from {name(a)}.")
        for _ in range(3):
            b.sendto(b"b\n", server)
        cmd.wait_for_line(r"New connection denied: connection limit reached \(1\)")
        a.sendto(b"a again\n", server)  # after b's three: a is still the one client
        assert cmd.read_stdout(10) == b"a\na again\n"
        stop_listener(cmd)
    assert "Disconnected" not in cmd.stderr
    assert cmd.stderr.count("New connection denied") == 1  # one line for b's run of datagrams


def test_access_control_over_udp_keep_open(peers: list[socket.socket]) -> None:
    a, _, other_host = peers
    with enchufe("-u", "-l", "-k", "-v", "--deny", "127.0.0.2", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        other_host.sendto(b"denied\n", server)
        cmd.wait_for_line(r"^enchufe: New connection denied: not allowed$")
        a.sendto(b"allowed\n", server)
        cmd.wait_for_line(f"Connection from {name(a)}.")
        assert cmd.read_stdout(8) == b"allowed\n"
        cmd.write(b"to the allowed\n")
        assert a.recv(100) == b"to the allowed\n"
        stop_listener(cmd)


def test_a_denied_peer_does_not_use_up_a_single_shot_udp_listener(peers: list[socket.socket]) -> None:
    a, _, other_host = peers
    with enchufe("-u", "-l", "-v", "--allow", "127.0.0.1", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        other_host.sendto(b"denied\n", server)
        cmd.wait_for_line(r"^enchufe: New connection denied: not allowed$")
        a.sendto(b"allowed\n", server)
        cmd.wait_for_line("Connection from")
        assert cmd.read_stdout(8) == b"allowed\n"
        cmd.write(b"answer\n")
        assert a.recv(100) == b"answer\n"
        stop_listener(cmd)


def test_broker_over_udp_relays_each_peer_to_the_others(peers: list[socket.socket]) -> None:
    a, b, c = peers
    with enchufe("-u", "--broker", "-v", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        for peer in (a, b, c):
            peer.sendto(b"", server)  # an empty datagram: joins, says nothing
            cmd.wait_for_line(f"Connection from {name(peer)}.")
        a.sendto(b"from a\n", server)
        assert b.recv(100) == c.recv(100) == b"from a\n"
        cmd.write(b"from the host\n")
        assert [peer.recv(100) for peer in (a, b, c)] == [b"from the host\n"] * 3
        a.sendto(b"last\n", server)
        assert b.recv(100) == b"last\n"
        stop_listener(cmd)
        assert cmd.read_to_eof() == b""  # a broker's stdout hears nothing


def test_chat_over_udp_names_every_peer(peers: list[socket.socket]) -> None:
    a, b, _ = peers
    with enchufe("-u", "-l", "--chat", "-v", "127.0.0.1", "0") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"", server)
        cmd.wait_for_line(f"Connection from {name(a)}.")
        joined = a.recv(1000)
        assert joined.startswith(f"<announce> {name(a)} is connected as <user".encode())
        b.sendto(b"", server)
        cmd.wait_for_line(f"Connection from {name(b)}.")
        a.recv(1000)  # b's arrival, announced to a
        b.recv(1000)  # b's own welcome
        b.sendto(b"hello\n", server)
        message = a.recv(1000)
        assert message.startswith(b"<user") and message.endswith(b"> hello\n")
        stop_listener(cmd)


def test_unix_datagram_peers_are_clients_too(tmp_path: Path) -> None:
    path = str(tmp_path / "server")
    clients = []
    with enchufe("-U", "-u", "-l", "-k", "-v", path) as cmd:
        cmd.wait_for_line("Listening on")
        try:
            for who in ("one", "two"):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                client.bind(str(tmp_path / who))
                client.settimeout(STEP_TIMEOUT)
                clients.append(client)
                client.sendto(who.encode() + b"\n", path)
                cmd.wait_for_line(f"Connection from {tmp_path / who}.")
                assert cmd.read_stdout(len(who) + 1) == who.encode() + b"\n"
            cmd.write(b"both\n")
            assert [client.recv(100) for client in clients] == [b"both\n", b"both\n"]
        finally:
            for client in clients:
                client.close()
        stop_listener(cmd)
    assert not os.path.exists(path)


def test_a_unix_datagram_peer_that_is_gone_ends_its_session_alone(tmp_path: Path) -> None:
    """Sending to a Unix peer whose socket file is gone fails (ENOENT): that used to
    raise out of the broadcast, a traceback on stderr, and the peers after it got
    nothing. Now the session ends, and its place under -m is free for another."""
    path = str(tmp_path / "server")
    clients = {}
    with enchufe("-U", "-u", "-l", "-k", "-m", "2", "-v", path) as cmd:
        cmd.wait_for_line("Listening on")
        try:
            for who in ("gone", "stays", "comes"):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                client.bind(str(tmp_path / who))
                client.settimeout(STEP_TIMEOUT)
                clients[who] = client
            for who in ("gone", "stays"):
                clients[who].sendto(who.encode() + b"\n", path)
                cmd.wait_for_line(f"Connection from {tmp_path / who}.")
            clients.pop("gone").close()
            os.unlink(tmp_path / "gone")
            cmd.write(b"to the others\n")
            assert clients["stays"].recv(100) == b"to the others\n"
            clients["comes"].sendto(b"comes\n", path)
            cmd.wait_for_line(f"Connection from {tmp_path / 'comes'}.")
            assert cmd.read_stdout(17) == b"gone\nstays\ncomes\n"
        finally:
            for client in clients.values():
                client.close()
        stop_listener(cmd)


def recv_lines(peer: socket.socket, count: int) -> bytes:
    """``count`` lines from a program, in as many datagrams as its relay read them in
    (two writes of the program's may come as one datagram, or as two)."""
    data = b""
    while data.count(b"\n") < count:
        data += peer.recv(1000)
    return data


def test_one_program_per_peer_as_inetd_does_for_udp(peers: list[socket.socket]) -> None:
    """``-u -l -k -e``: each peer gets a program of its own, with its own NCAT_* view."""
    script = 'echo "$NCAT_PROTO $NCAT_REMOTE_ADDR:$NCAT_REMOTE_PORT"; while read -r l; do echo "$l" | tr a-z A-Z; done'
    a, b, _ = peers
    with enchufe("-u", "-l", "-k", "-v", "127.0.0.1", "0", "-c", script) as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"hello from a\n", server)
        assert recv_lines(a, 2) == f"UDP {name(a)}\nHELLO FROM A\n".encode()
        b.sendto(b"and b\n", server)
        assert recv_lines(b, 2) == f"UDP {name(b)}\nAND B\n".encode()
        a.sendto(b"a again\n", server)  # the same program as before
        assert a.recv(100) == b"A AGAIN\n"
        stop_listener(cmd)
    assert cmd.stderr.count("Connection from") == 2


def test_udp_programs_are_capped_by_max_conns_and_end_when_idle(peers: list[socket.socket]) -> None:
    a, b, _ = peers
    with enchufe("-u", "-l", "-k", "-m", "1", "-i", "300ms", "-v", "127.0.0.1", "0", "-e", "/bin/cat") as cmd:
        server = ("127.0.0.1", cmd.listening_port())
        a.sendto(b"first\n", server)
        assert a.recv(100) == b"first\n"
        b.sendto(b"refused\n", server)
        cmd.wait_for_line(r"^enchufe: New connection denied: connection limit reached \(1\)$")
        cmd.wait_for_line(rf"^enchufe: {name(a)}: Idle timeout expired \(300 ms\)\.$")  # a's program is gone
        for _ in range(10):  # a's session may still be closing: try until b is admitted
            b.sendto(b"b now\n", server)
            if cmd.wait_for_line(r"^enchufe: (Connection from|New connection denied)").group(1) == "Connection from":
                break
        assert b.recv(100) == b"b now\n"
        stop_listener(cmd)


@pytest.mark.interop
def test_ncat_as_the_client_of_a_udp_exec_server() -> None:
    """ncat's own suite: "--keep-open --exec (udp)"."""
    with enchufe("-u", "-l", "-k", "-v", "127.0.0.1", "0", "-e", "/bin/cat") as cmd:
        port = str(cmd.listening_port())
        with Process(["ncat", "-u", "127.0.0.1", port]) as first, Process(["ncat", "-u", "127.0.0.1", port]) as second:
            first.write(b"one\n")
            second.write(b"two\n")
            assert first.read_stdout(4) == b"one\n"
            assert second.read_stdout(4) == b"two\n"
        stop_listener(cmd)
