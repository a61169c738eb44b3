"""``--ssl`` with ``-l -k``, ``--broker`` and ``--chat``: every client over TLS on the
event loop, end to end.

The clients are Python's ``ssl`` sockets (and plain sockets for those that fail or
stall); ncat and openssl as clients are in tests/interop/test_tls_keep_open_interop.py.
"""

from __future__ import annotations

import re

import pytest

from support.cli_e2e import connect, quiet, read_announcement, recv_exactly, recv_until_eof, stop_listener
from support.procs import Process, enchufe
from support.tls import TlsFiles, half_a_hello, tls_client

pytestmark = pytest.mark.timeout(60)

FAILED = r"^enchufe: Failed SSL connection from 127\.0\.0\.1: "


def listener(tls_files: TlsFiles, *args: str) -> Process:
    certificate = ("--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key)
    return enchufe("-v", *certificate, *args, "127.0.0.1", "0")


def test_keep_open_serves_tls_clients_both_ways_and_ends_them_with_close_notify(tls_files: TlsFiles) -> None:
    with listener(tls_files, "-l", "-k") as cmd:
        port = cmd.listening_port()
        a, b = tls_client(port, suppress_ragged_eofs=False), tls_client(port, suppress_ragged_eofs=False)
        with a, b:
            a.sendall(b"from a\n")  # heard: a is a member now
            assert cmd.read_stdout(7) == b"from a\n"
            b.sendall(b"from b\n")
            assert cmd.read_stdout(7) == b"from b\n"
            cmd.write(b"from the host\n")
            assert recv_exactly(a, 14) == recv_exactly(b, 14) == b"from the host\n"
            cmd.close_stdin()  # the end of the input: close_notify to each, and reading goes on
            assert a.recv(100) == b.recv(100) == b""  # close_notify, not a bare TCP end (SSLEOFError)
            a.sendall(b"after the end\n")
            assert cmd.read_stdout(14) == b"after the end\n"
        stop_listener(cmd)
    assert len(re.findall(r"Connection from 127\.0\.0\.1:\d+\.", cmd.stderr)) == 2


def test_a_plaintext_client_fails_its_handshake_alone_with_ncats_line(tls_files: TlsFiles) -> None:
    with listener(tls_files, "-l", "-k") as cmd:
        port = cmd.listening_port()
        with tls_client(port) as good:
            with connect(port) as plain:
                plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
                cmd.wait_for_line(FAILED + r"(http request|wrong version number)$")
                assert len(recv_until_eof(plain)) <= 7  # an alert at most, then the end
            good.sendall(b"still served\n")
            assert cmd.read_stdout(13) == b"still served\n"
        stop_listener(cmd)


def test_stalled_handshakes_never_delay_another_clients_handshake(tls_files: TlsFiles) -> None:
    """Clients that connect and say nothing, send half a hello, or start a record that
    never ends: a good client that comes after them all completes its handshake and is
    served while every one of them is still connected."""
    with listener(tls_files, "-l", "-k") as cmd:
        port = cmd.listening_port()
        stalled = [connect(port) for _ in range(12)]
        for index, sock in enumerate(stalled):
            if index % 3 == 1:
                sock.sendall(half_a_hello())
            elif index % 3 == 2:
                sock.sendall(b"\x16\x03\x01\x40\x00" + b"\x01" * 100)
        for _ in stalled:
            cmd.wait_for_line(r"Connection from")
        with tls_client(port) as good:
            good.sendall(b"served\n")
            assert cmd.read_stdout(7) == b"served\n"
            assert all(quiet(sock) for sock in stalled)
        for sock in stalled:
            sock.close()
        stop_listener(cmd)


def test_a_client_in_its_handshake_holds_a_place_under_the_limit(tls_files: TlsFiles) -> None:
    with listener(tls_files, "-l", "-k", "-m", "1") as cmd:
        port = cmd.listening_port()
        with connect(port):  # and nothing said
            cmd.wait_for_line(r"Connection from")
            with connect(port) as refused:
                cmd.wait_for_line(r"New connection denied: connection limit reached \(1\)")
                assert refused.recv(10) == b""
        cmd.wait_for_line(FAILED + r"the peer closed the connection during the TLS handshake$")
        with tls_client(port) as good:  # the place is free again
            good.sendall(b"in\n")
            assert cmd.read_stdout(3) == b"in\n"
        stop_listener(cmd)


def test_broker_over_tls_passes_each_clients_bytes_to_the_others(tls_files: TlsFiles) -> None:
    with listener(tls_files, "--broker", "--host-sees-room") as cmd:
        port = cmd.listening_port()
        with tls_client(port) as a, tls_client(port) as b:
            a.sendall(b"a is here\n")  # on the host's output once a is a member
            assert cmd.read_stdout(10) == b"a is here\n"
            b.sendall(b"b is here\n")
            assert cmd.read_stdout(10) == b"b is here\n"
            assert recv_exactly(a, 10) == b"b is here\n"
            a.sendall(b"from a\n")
            assert recv_exactly(b, 17) == b"a is here\nfrom a\n"
        stop_listener(cmd)


def test_chat_over_tls_announces_a_member_once_its_handshake_is_done(tls_files: TlsFiles) -> None:
    with listener(tls_files, "-l", "--chat") as cmd:
        port = cmd.listening_port()
        with tls_client(port) as a:
            user_a, _ = read_announcement(a)
            with connect(port) as silent:  # accepted, in its handshake: no member yet
                cmd.wait_for_line(r"Connection from")
                with tls_client(port) as b:
                    user_b, _ = read_announcement(b)
                    assert read_announcement(a, newcomer=b)[0] == user_b  # not the silent one's
                    b.sendall(b"hi\n")
                    expected = f"<user{user_b}> hi\n".encode()
                    assert recv_exactly(a, len(expected)) == expected
                assert quiet(silent)
        stop_listener(cmd)
    assert user_a != user_b
