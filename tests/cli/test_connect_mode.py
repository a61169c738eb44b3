"""The ``enchufe`` command in connect mode, end to end.

Each test runs the real command against a peer the test drives itself (a plain
socket on loopback) and checks the exact bytes on both sides, the exact stderr
lines and the exact exit status. Semantics are ncat 7.96+ (reference §3).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest

from support.cli_e2e import (
    STEP_TIMEOUT,
    TcpServer,
    assert_clean_stderr,
    bracket,
    family_of,
    readable_within,
    recv_exactly,
    recv_until_eof,
)
from support.procs import enchufe, free_port

VERSION_LINE = re.compile(r"^enchufe: Version \d+\.\d+\.\d+\S* \( ncat-compatible \)$")
STATS_LINE = re.compile(r"^enchufe: (\d+) bytes sent, (\d+) bytes received in \d+\.\d\d seconds\.$")


def stats(line: str) -> tuple[int, int]:
    match = STATS_LINE.match(line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


# -- TCP relay and end-of-file rules ------------------------------------------------------


def test_verbose_session_relays_both_ways(loopback: str) -> None:
    with TcpServer(loopback) as server, enchufe("-v", loopback, str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"hello\n")
            assert recv_exactly(peer, 6) == b"hello\n"
            peer.sendall(b"world!\n")
            assert cmd.read_stdout(7) == b"world!\n"
        assert cmd.wait() == 0
        assert cmd.stdout == b""
    lines = cmd.stderr_lines
    assert len(lines) == 3, lines
    assert VERSION_LINE.match(lines[0]), lines
    assert lines[1] == f"enchufe: Connected to {bracket(loopback)}:{server.port}."
    assert stats(lines[2]) == (6, 7)


def test_debug_output_shows_the_relay_left_no_thread_behind() -> None:
    with TcpServer("127.0.0.1") as server, enchufe("-vv", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"bye")
            assert cmd.read_stdout(3) == b"bye"
        assert cmd.wait() == 0
    assert "ENCHUFE DEBUG: Relay ended: remote-eof." in cmd.stderr_lines
    assert "ENCHUFE DEBUG: Threads running: MainThread." in cmd.stderr_lines


def test_binary_megabytes_cross_byte_exact(loopback: str) -> None:
    upload = os.urandom(1 << 20) + bytes(range(256))
    download = os.urandom(1 << 20) + b"\0\r\n\xff"
    with TcpServer(loopback) as server, enchufe("-v", loopback, str(server.port), stdin=upload) as cmd:
        with server.accept() as peer:
            sender = threading.Thread(target=_send_then_half_close, args=(peer, download))
            sender.start()
            try:
                received = recv_until_eof(peer)  # stdin's EOF half-closes the connection
                assert cmd.wait() == 0  # reads stdout while the sender finishes
            finally:
                sender.join(STEP_TIMEOUT)
    assert received == upload
    assert cmd.stdout == download
    assert stats(cmd.stderr_lines[-1]) == (len(upload), len(download))


def _send_then_half_close(peer: socket.socket, data: bytes) -> None:
    peer.sendall(data)
    peer.shutdown(socket.SHUT_WR)


def test_stdin_eof_half_closes_and_later_data_still_arrives() -> None:
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"request")
            cmd.close_stdin()
            assert recv_until_eof(peer) == b"request"
            peer.sendall(b"answer after your EOF")
            assert cmd.read_stdout(21) == b"answer after your EOF"
            assert cmd.still_running_after()  # half-closed, not quit
        assert cmd.wait() == 0
    assert cmd.stderr == ""


def test_remote_close_ends_command_while_stdin_stays_open() -> None:
    with TcpServer() as server, enchufe("-v", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"goodbye\n")
        assert cmd.wait() == 0  # stdin is still an open pipe
        assert cmd.stdout == b"goodbye\n"
    assert stats(cmd.stderr_lines[-1]) == (0, 8)
    assert_clean_stderr(cmd.stderr)


# -- --send-only, --recv-only, --no-shutdown, -q, -k ---------------------------------------


def test_send_only_quits_at_stdin_eof_and_drops_received_data() -> None:
    with TcpServer() as server, enchufe("--send-only", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"not for stdout\n")
            cmd.write(b"abc")
            assert recv_exactly(peer, 3) == b"abc"
            cmd.close_stdin()
            assert cmd.wait() == 0  # the peer still has the connection open
            assert recv_until_eof(peer) == b""
    assert cmd.stdout == b""
    assert cmd.stderr == ""


def test_recv_only_never_reads_stdin_and_exits_when_peer_closes() -> None:
    with TcpServer() as server, enchufe("--recv-only", "127.0.0.1", str(server.port)) as cmd:
        cmd.write(b"must never be sent\n")
        cmd.close_stdin()
        with server.accept() as peer:
            peer.sendall(b"one")
            assert cmd.read_stdout(3) == b"one"
            assert not readable_within(peer)  # stdin's EOF is not a half-close either
            peer.sendall(b"two")
            peer.shutdown(socket.SHUT_WR)
            assert recv_until_eof(peer) == b""  # nothing ever came from stdin
        assert cmd.wait() == 0
    assert cmd.stdout == b"two"
    assert cmd.stderr == ""


def test_no_shutdown_keeps_the_connection_full_duplex_after_stdin_eof() -> None:
    with TcpServer() as server, enchufe("--no-shutdown", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"data")
            cmd.close_stdin()
            assert recv_exactly(peer, 4) == b"data"
            assert not readable_within(peer)  # no EOF reached the peer
            peer.sendall(b"still here")
            assert cmd.read_stdout(10) == b"still here"
        assert cmd.wait() == 0


def test_quit_delay_after_stdin_eof() -> None:
    with TcpServer() as server, enchufe("-q", "200ms", "127.0.0.1", str(server.port), stdin=b"last words") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b"last words"  # half-closed first
            assert cmd.wait() == 0  # then quits, although the peer stays connected
    assert cmd.stderr == ""


def test_zero_quit_delay_quits_as_soon_as_stdin_ends() -> None:
    # ncat refuses -q 0; netcat users type it, meaning "do not wait for the peer".
    with TcpServer() as server, enchufe("-q", "0", "127.0.0.1", str(server.port), stdin=b"last words") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b"last words"
            assert cmd.wait() == 0  # while the peer stays connected
    assert cmd.stderr == ""


def test_negative_quit_delay_over_tcp_half_closes_and_waits_for_the_peer() -> None:
    with TcpServer() as server, enchufe("-q", "-1", "127.0.0.1", str(server.port), stdin=b"x") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b"x"
            assert cmd.still_running_after()
            peer.sendall(b"y")
            assert cmd.read_stdout(1) == b"y"
        assert cmd.wait() == 0  # the peer's close ends it
    assert cmd.stderr == ""


def test_keep_open_outlives_remote_eof_until_stdin_eof() -> None:
    with TcpServer() as server, enchufe("-k", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"first")
            peer.shutdown(socket.SHUT_WR)
            assert cmd.read_stdout(5) == b"first"
            cmd.write(b"more")  # the command keeps running and sending
            assert recv_exactly(peer, 4) == b"more"
            cmd.write(b" and more")
            assert recv_exactly(peer, 9) == b" and more"
            cmd.close_stdin()
            assert recv_until_eof(peer) == b""
            assert cmd.wait() == 0
    assert cmd.stdout == b""
    assert cmd.stderr == ""


def test_keep_open_closes_stdout_at_remote_eof() -> None:
    with TcpServer() as server, enchufe("-k", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"first")
            peer.shutdown(socket.SHUT_WR)
            assert cmd.read_stdout(5) == b"first"
            assert cmd.stdout_at_eof(timeout=2.0)  # ncat: Close(STDOUT_FILENO), keep running
            assert cmd.popen.poll() is None


# -- timers ---------------------------------------------------------------------------------


def test_idle_timeout_in_connect_mode() -> None:
    with TcpServer() as server, enchufe("-i", "300ms", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"ping")
            assert recv_exactly(peer, 4) == b"ping"
            assert cmd.wait() == 1
            assert recv_until_eof(peer) == b""
    assert cmd.stderr == "enchufe: Idle timeout expired (300 ms)."


def test_delay_keeps_data_intact() -> None:
    with TcpServer() as server, enchufe("-d", "50ms", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"slowly\n")
            assert recv_exactly(peer, 7) == b"slowly\n"
            peer.sendall(b"but surely\n")
            assert cmd.read_stdout(11) == b"but surely\n"
            cmd.close_stdin()
            assert recv_until_eof(peer) == b""
        assert cmd.wait() == 0
    assert cmd.stderr == ""


# -- transformations and logs -----------------------------------------------------------------


def test_crlf_translates_stdin_only() -> None:
    with TcpServer() as server, enchufe("-C", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"a\nb\r\nc\n")
            assert recv_exactly(peer, 9) == b"a\r\nb\r\nc\r\n"
            cmd.write(b"---\r")  # a CR at the end of one read ...
            assert recv_exactly(peer, 4) == b"---\r"
            cmd.write(b"\n")  # ... and the LF in the next make one CRLF
            assert recv_exactly(peer, 1) == b"\n"
            peer.sendall(b"x\ny\n")
            assert cmd.read_stdout(4) == b"x\ny\n"  # never applied network -> stdout
        assert cmd.wait() == 0


@pytest.mark.parametrize("append", [False, True], ids=["truncate", "append"])
def test_output_file_logs_both_directions(tmp_path: os.PathLike[str], append: bool) -> None:
    log = os.path.join(tmp_path, "session.log")
    with open(log, "wb") as existing:
        existing.write(b"old session\n")
    options = ["-o", log, *(["--append-output"] if append else [])]
    with TcpServer() as server, enchufe(*options, "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"to server\n")
            assert recv_exactly(peer, 10) == b"to server\n"
            peer.sendall(b"from server\n")
            assert cmd.read_stdout(12) == b"from server\n"
            cmd.write(b"bye\n")
            assert recv_exactly(peer, 4) == b"bye\n"
        assert cmd.wait() == 0
    with open(log, "rb") as written:
        content = written.read()
    assert content == (b"old session\n" if append else b"") + b"to server\nfrom server\nbye\n"


def test_hex_dump_file_restarts_offsets_per_transmission(tmp_path: os.PathLike[str]) -> None:
    dump = os.path.join(tmp_path, "session.hex")
    with TcpServer() as server, enchufe("-x", dump, "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            cmd.write(b"GET / HTTP/1.0\r\n\r\n")  # one write: one transmission
            assert recv_exactly(peer, 18) == b"GET / HTTP/1.0\r\n\r\n"
            peer.sendall(b"OK \x00\xff")
            assert cmd.read_stdout(5) == b"OK \x00\xff"
        assert cmd.wait() == 0
    expected = [
        "0000   47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a  GET./.HTTP/1.0..",
        "0010   0d 0a                                             ..",
        "0000   4f 4b 20 00 ff                                    OK...",
    ]
    with open(dump) as written:
        assert written.read() == "".join(line.ljust(73) + "\n" for line in expected)


def test_telnet_refuses_negotiation_and_passes_raw_bytes() -> None:
    with TcpServer() as server, enchufe("-t", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"\xff\xfd\x01login: ")  # IAC DO ECHO
            assert recv_exactly(peer, 3) == b"\xff\xfc\x01"  # IAC WONT ECHO
            assert cmd.read_stdout(10) == b"\xff\xfd\x01login: "
        assert cmd.wait() == 0


# -- addressing ----------------------------------------------------------------------------------


def test_source_address_and_port(loopback: str) -> None:
    source_port = free_port(loopback)
    args = ("-s", loopback, "-p", str(source_port), loopback)
    with TcpServer(loopback) as server, enchufe(*args, str(server.port), stdin=b"") as cmd:
        with server.accept() as peer:
            assert peer.getpeername()[:2] == (loopback, source_port)
        assert cmd.wait() == 0


def test_nodns_with_a_literal_connects() -> None:
    with TcpServer() as server, enchufe("-n", "127.0.0.1", str(server.port), stdin=b"numeric") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b"numeric"
        assert cmd.wait() == 0


def _localhost_families() -> set[int]:
    return {info[0] for info in socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)}


@pytest.mark.parametrize("flag", ["-4", "-6"])
def test_family_option_chooses_localhost_address(flag: str) -> None:
    if _localhost_families() != {socket.AF_INET, socket.AF_INET6}:
        pytest.skip("localhost does not resolve to both IPv4 and IPv6 here")
    host = "127.0.0.1" if flag == "-4" else "::1"
    with TcpServer(host) as server, enchufe("-v", flag, "localhost", str(server.port), stdin=b"") as cmd:
        with server.accept() as peer:
            assert peer.getpeername()[0] == host
        assert cmd.wait() == 0


def test_family_option_with_literal_of_the_other_family() -> None:
    with TcpServer() as server, enchufe("-4", "127.0.0.1", str(server.port), stdin=b"v4") as cmd:
        with server.accept() as peer:
            assert recv_until_eof(peer) == b"v4"
        assert cmd.wait() == 0
    with enchufe("-6", "127.0.0.1", "9") as cmd:
        assert cmd.wait() == 2
    assert cmd.stderr_lines == [
        'enchufe: Could not resolve hostname "127.0.0.1": Address family for hostname not supported. QUITTING.'
    ]


# -- zero-I/O ------------------------------------------------------------------------------------


def test_zero_io_open_port_is_silent_success() -> None:
    with TcpServer() as server, enchufe("-z", "127.0.0.1", str(server.port)) as cmd:
        assert cmd.wait() == 0
        with server.accept() as peer:
            assert recv_until_eof(peer) == b""  # connected, sent nothing, closed
    assert cmd.stdout == b""
    assert cmd.stderr == ""


def test_zero_io_verbose_reports_connection_and_zero_bytes(loopback: str) -> None:
    with TcpServer(loopback) as server, enchufe("-z", "-v", loopback, str(server.port)) as cmd:
        assert cmd.wait() == 0
    lines = cmd.stderr_lines
    assert len(lines) == 3, lines
    assert VERSION_LINE.match(lines[0])
    assert lines[1] == f"enchufe: Connected to {bracket(loopback)}:{server.port}."
    assert stats(lines[2]) == (0, 0)
    assert cmd.stdout == b""


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
def test_zero_io_closed_tcp_port(verbose: list[str]) -> None:
    """-z answers with its exit status; the reason is shown with -v only (ncat §3.7)."""
    with enchufe(*verbose, "-z", "127.0.0.1", str(free_port())) as cmd:
        assert cmd.wait() == 1
    assert cmd.stderr_lines[len(verbose) :] == (["enchufe: Connection refused."] if verbose else [])
    assert cmd.stdout == b""


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
def test_zero_io_udp_port_without_listener_is_refused(verbose: list[str]) -> None:
    with enchufe(*verbose, "-z", "-u", "127.0.0.1", str(free_port(kind=socket.SOCK_DGRAM))) as cmd:
        assert cmd.wait() == 1
    assert cmd.stderr_lines[-1:] == (["enchufe: Connection refused."] if verbose else [])


@pytest.mark.slow
def test_zero_io_udp_open_port_receives_one_nul_byte() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(STEP_TIMEOUT)
        port = udp.getsockname()[1]
        with enchufe("-z", "-u", "-v", "127.0.0.1", str(port)) as cmd:
            assert udp.recv(100) == b"\0"
            assert cmd.wait() == 0
        assert not readable_within(udp, 0)  # exactly one datagram
    assert cmd.stderr_lines[1:] == [
        f"enchufe: Connected to 127.0.0.1:{port}.",
        "enchufe: UDP packet sent successfully",
    ]


# -- UDP -------------------------------------------------------------------------------------------


def test_udp_datagrams_both_ways(loopback: str) -> None:
    with socket.socket(family_of(loopback), socket.SOCK_DGRAM) as udp:
        udp.bind((loopback, 0))
        udp.settimeout(STEP_TIMEOUT)
        port = udp.getsockname()[1]
        with enchufe("-u", "-v", loopback, str(port)) as cmd:
            cmd.wait_for_line(r"Connected to ")
            assert not readable_within(udp)  # nothing is sent before stdin has data
            cmd.write(b"one\n")
            first, client = udp.recvfrom(100)
            cmd.write(b"two\n")
            second, _ = udp.recvfrom(100)
            assert (first, second) == (b"one\n", b"two\n")  # one datagram per write
            udp.sendto(b"reply\n", client)
            assert cmd.read_stdout(6) == b"reply\n"
            cmd.close_stdin()
            assert cmd.wait() == 0  # stdin's EOF ends a UDP session
    assert stats(cmd.stderr_lines[-1]) == (8, 6)


def test_udp_negative_quit_delay_keeps_running_after_stdin_eof() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(STEP_TIMEOUT)
        with enchufe("-u", "-q", "-1", "127.0.0.1", str(udp.getsockname()[1])) as cmd:
            cmd.write(b"hi")
            data, client = udp.recvfrom(100)
            assert data == b"hi"
            cmd.close_stdin()
            assert cmd.still_running_after()  # without -q -1 it would have quit
            udp.sendto(b"late", client)
            assert cmd.read_stdout(4) == b"late"


# -- Unix domain sockets ------------------------------------------------------------------------


def test_unix_stream_connect(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        server.settimeout(STEP_TIMEOUT)
        with enchufe("-v", "-U", path) as cmd:
            peer, _ = server.accept()
            with peer:
                peer.settimeout(STEP_TIMEOUT)
                cmd.write(b"over unix\n")
                cmd.close_stdin()
                assert recv_until_eof(peer) == b"over unix\n"
                peer.sendall(b"answer\n")
            assert cmd.wait() == 0
    assert cmd.stdout == b"answer\n"
    assert cmd.stderr_lines[1] == f"enchufe: Connected to {path}."
    assert stats(cmd.stderr_lines[2]) == (10, 7)


def test_unix_connect_to_an_abstract_name_that_is_not_utf8() -> None:
    name = f"enchufe-test-{os.getpid()}-"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0{name}".encode() + b"\xff")
        server.listen()
        server.settimeout(STEP_TIMEOUT)
        # argv as Python decodes the byte 0xff (surrogateescape); subprocess passes the byte on
        with enchufe("-v", "-U", f"@{name}\udcff", stdin=b"question") as cmd:
            peer, _ = server.accept()
            with peer:
                peer.settimeout(STEP_TIMEOUT)
                assert recv_until_eof(peer) == b"question"
                peer.sendall(b"answer")
            assert cmd.wait() == 0
    assert cmd.stdout == b"answer"
    assert cmd.stderr_lines[1] == f"enchufe: Connected to @{name}\\xff."
    assert_clean_stderr(cmd.stderr)


def test_unix_datagram_client_binds_a_temporary_socket_it_removes(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(STEP_TIMEOUT)
        with enchufe("-U", "-u", path) as cmd:
            cmd.write(b"question")
            data, client = server.recvfrom(100)
            assert data == b"question"
            assert client and os.path.exists(client)  # the listener has an address to answer
            server.sendto(b"answer", client)
            assert cmd.read_stdout(6) == b"answer"
            cmd.close_stdin()
            assert cmd.wait() == 0
    assert not os.path.exists(client)
    assert cmd.stderr == ""


def test_unix_datagram_client_binds_the_source_path_and_removes_it(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    source = os.path.join(sock_dir, "client.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(STEP_TIMEOUT)
        with enchufe("-U", "-u", "-s", source, path) as cmd:
            cmd.write(b"question")
            data, client = server.recvfrom(100)
            assert (data, client) == (b"question", source)  # ncat's suite checks this address
            server.sendto(b"answer", client)
            assert cmd.read_stdout(6) == b"answer"
            cmd.close_stdin()
            assert cmd.wait() == 0
    assert not os.path.exists(source)  # as ncat 7.93, which deletes it at exit
    assert cmd.stderr == ""


def test_unix_sources_are_announced_as_ncat_does(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    source = os.path.join(sock_dir, "client.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        with enchufe("-v", "-U", "-u", "-s", source, path, stdin=b"x") as cmd:
            assert cmd.wait() == 0
    lines = cmd.stderr_lines
    assert lines[1] == f"enchufe: [{source}] used as source DGRAM Unix domain socket."
    assert lines[2] == f"enchufe: Connected to {path}."
    assert lines[-1] == f"enchufe: Deleting source DGRAM Unix domain socket. [{source}]"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path + "s")
        server.listen()
        with enchufe("-v", "-U", "-s", source, path + "s", stdin=b"") as cmd:
            server.accept()[0].close()
            assert cmd.wait() == 0
    assert cmd.stderr_lines[1] == (
        "enchufe: Specifying source socket for other than DATAGRAM Unix domain sockets have no effect."
    )
    assert not os.path.exists(source)


def test_unix_datagram_source_in_use_is_refused_and_left_alone(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    taken = os.path.join(sock_dir, "taken")
    with open(taken, "w"):
        pass
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        # ncat 7.93 warns, sends from no address, then deletes the file it never made.
        with enchufe("-U", "-u", "-s", taken, path) as cmd:
            assert cmd.wait() == 2
    assert cmd.stderr == f"enchufe: bind to {taken}: Address already in use. QUITTING."
    assert os.path.exists(taken)


# -- SCTP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [["127.0.0.1", "9"], ["-l", "127.0.0.1", "0"]], ids=["connect", "listen"])
def test_sctp_is_not_supported_by_this_kernel(mode: list[str]) -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    except OSError:
        pass
    else:
        pytest.skip("this kernel has SCTP")
    with enchufe("--sctp", *mode) as cmd:
        assert cmd.wait() == 2
    assert cmd.stderr == "enchufe: SCTP is not supported by this kernel. QUITTING."


def test_connected_line_names_the_address_not_the_name() -> None:
    """ncat prints the address it reached (the name as typed only through a proxy)."""
    with TcpServer("127.0.0.1") as server, enchufe("-v", "-4", "localhost", str(server.port)) as cmd:
        with server.accept():
            cmd.wait_for_line(rf"^enchufe: Connected to 127\.0\.0\.1:{server.port}\.$")
        assert cmd.wait() == 0


def test_sigterm_removes_the_datagram_clients_socket_file_and_dies_by_the_signal(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "server.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(STEP_TIMEOUT)
        with enchufe("-U", "-u", path) as cmd:
            cmd.write(b"hello")
            data, client_path = server.recvfrom(100)
            assert data == b"hello" and os.path.exists(client_path)
            cmd.popen.send_signal(signal.SIGTERM)
            assert cmd.wait() == -signal.SIGTERM  # as ncat: the signal, not an exit status
        assert not os.path.exists(client_path)
