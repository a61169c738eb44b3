"""``enchufe -l -k``: many clients at once on one event loop, end to end.

stdin goes to every client, every client's data to stdout; clients come and go; ``-m``
refuses the one too many; the end of stdin half-closes everyone and the server goes
on; a client that stops reading is dropped instead of stopping the room; and no client
costs a thread.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from support.cli_e2e import STEP_TIMEOUT, assert_clean_stderr, connect, recv_exactly, recv_until_eof, stop_listener
from support.procs import ENCHUFE, Process, enchufe


def test_stdin_reaches_every_client_and_every_client_reaches_stdout() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as a, connect(port) as b:
            cmd.wait_for_line("Connection from")
            cmd.wait_for_line("Connection from")
            cmd.write(b"to everyone\n")
            assert recv_exactly(a, 12) == recv_exactly(b, 12) == b"to everyone\n"
            a.sendall(b"from a\n")
            assert cmd.read_stdout(7) == b"from a\n"
            b.sendall(b"from b\n")
            assert cmd.read_stdout(7) == b"from b\n"
        with connect(port) as c:  # the first two are gone; the server is not
            cmd.wait_for_line("Connection from")
            cmd.write(b"still here\n")
            assert recv_exactly(c, 11) == b"still here\n"
        stop_listener(cmd)


def test_max_conns_refuses_the_one_too_many_and_admits_again_when_one_leaves() -> None:
    with enchufe("-l", "-k", "-m", "2", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        a, b = connect(port), connect(port)
        with a, b:
            cmd.wait_for_line("Connection from")
            cmd.wait_for_line("Connection from")
            with connect(port) as third:
                cmd.wait_for_line(r"^enchufe: New connection denied: connection limit reached \(2\)$")
                assert third.recv(10) == b""  # closed without a byte
            a.close()
            b.sendall(b"keep")
            assert cmd.read_stdout(4) == b"keep"
            cmd.write(b"x")  # a's departure is noticed by now or at this write
            assert recv_exactly(b, 1) == b"x"
        with connect(port) as fourth:
            cmd.wait_for_line("Connection from")
            fourth.sendall(b"admitted")
            assert cmd.read_stdout(8) == b"admitted"
        stop_listener(cmd)


def test_max_conns_zero_refuses_every_client() -> None:
    with enchufe("-l", "-k", "-m", "0", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        for _ in range(3):
            with connect(port) as client:
                cmd.wait_for_line(r"New connection denied: connection limit reached \(0\)")
                assert client.recv(10) == b""
        stop_listener(cmd)


def test_the_end_of_stdin_half_closes_every_client_and_the_server_goes_on() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as a:
            cmd.wait_for_line("Connection from")
            cmd.write(b"last words")
            cmd.close_stdin()
            assert recv_until_eof(a) == b"last words"
            a.sendall(b"the client may still talk")
            assert cmd.read_stdout(25) == b"the client may still talk"
        with connect(port) as late:
            assert late.recv(10) == b""  # half-closed at once: the input has ended
            late.sendall(b"late")
            assert cmd.read_stdout(4) == b"late"
        stop_listener(cmd)


def test_a_stdout_whose_reader_went_away_ends_the_server_as_it_ends_a_single_session() -> None:
    """``enchufe -l -k P | head -n 5``: once head has gone, the clients' data has
    nowhere to go. The output thread used to drop it in silence and the server ran on,
    so the pipeline never ended; ncat -k ends there too."""
    read_end, write_end = os.pipe()
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", stdout=write_end) as cmd:
        os.close(write_end)
        os.close(read_end)
        with connect(cmd.listening_port()) as client:
            client.sendall(b"for nobody\n")
            assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_a_client_that_stops_reading_is_dropped_and_delays_nobody(tmp_path: Path) -> None:
    """50 MB from a file on stdin to two clients, one of which never reads: the other
    gets every byte, the stalled one is cut off with a -v line."""
    payload = os.urandom(50 * 1024 * 1024)
    source = tmp_path / "payload"
    source.write_bytes(payload)
    with open(source, "rb") as stdin, enchufe("-l", "-k", "-v", "127.0.0.1", "0", stdin=stdin) as cmd:
        port = cmd.listening_port()
        # The reader first: stdin is read once a client is there, and a client that
        # joins later does not get what was sent before it came (ncat's rule too).
        with connect(port) as reader:
            cmd.wait_for_line("Connection from")
            with connect(port) as stalled:
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                digest = hashlib.sha256()
                received = 0
                while received < len(payload):
                    chunk = reader.recv(1 << 20)
                    assert chunk, f"{received} bytes, then end of stream"
                    digest.update(chunk)
                    received += len(chunk)
                assert digest.digest() == hashlib.sha256(payload).digest()
                cmd.wait_for_line(r"^enchufe: Disconnected 127\.0\.0\.1:\d+: too far behind\.$")
        stop_listener(cmd)


def test_hundreds_of_clients_cost_no_thread_each() -> None:
    with enchufe("-l", "-k", "-m", "1000", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        clients = []
        try:
            for _ in range(300):
                # One at a time: the command keeps ncat's listen backlog of 10, and a
                # burst beyond it costs each extra client a 1 s SYN retry.
                clients.append(connect(port))
                cmd.wait_for_line("Connection from")
            cmd.write(b"!")
            assert all(recv_exactly(client, 1) == b"!" for client in clients)
            status = Path(f"/proc/{cmd.popen.pid}/status").read_text()
            threads = int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])
            assert threads <= 4  # the loop, the stdin reader, the stdout writer
        finally:
            for client in clients:
                client.close()
        stop_listener(cmd)


def test_unix_stream_keep_open(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "hub.sock")
    with enchufe("-l", "-k", "-v", "-U", path) as cmd:
        cmd.wait_for_line("Listening on")
        with socket.socket(socket.AF_UNIX) as a, socket.socket(socket.AF_UNIX) as b:
            a.settimeout(STEP_TIMEOUT)
            b.settimeout(STEP_TIMEOUT)
            a.connect(path)
            b.connect(path)
            cmd.wait_for_line("Connection from")
            cmd.wait_for_line("Connection from")
            cmd.write(b"both")
            assert recv_exactly(a, 4) == recv_exactly(b, 4) == b"both"
        stop_listener(cmd)
    assert not os.path.exists(path)


def test_max_conns_above_the_descriptor_limit_raises_the_limit() -> None:
    """Started with a soft limit of 256 descriptors (hard 4096), ``-m 600`` still
    serves 400 clients: the command raises its soft limit as far as -m needs."""
    argv = ["prlimit", "--nofile=256:4096", *ENCHUFE, "-l", "-k", "-m", "600", "-v", "127.0.0.1", "0"]
    with Process(argv) as cmd:
        port = cmd.listening_port()
        clients = []
        try:
            for _ in range(400):
                clients.append(connect(port))
                cmd.wait_for_line("Connection from")
            cmd.write(b"!")
            assert all(recv_exactly(client, 1) == b"!" for client in clients)
        finally:
            for client in clients:
                client.close()
        stop_listener(cmd)


def tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of another process (Linux's tgkill(2))."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, pid, tid, signum) != 0:  # 234: SYS_tgkill on x86_64
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the tgkill system call number is x86_64's")
@pytest.mark.parametrize("transport", [[], ["-u"]], ids=["tcp", "udp"])
def test_a_signal_delivered_to_any_thread_stops_the_server(transport: list[str]) -> None:
    """The kernel hands a process's signal to any of its threads; the main thread, asleep
    in the event loop, must still wake up and end the command."""
    with enchufe(*transport, "-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        kind = socket.SOCK_DGRAM if transport else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as client:
            client.connect(("127.0.0.1", port))
            client.send(b"x")
            assert cmd.read_stdout(1) == b"x"  # the server runs, its threads too
        pid = cmd.popen.pid
        others = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
        assert others  # the input and output threads
        tgkill(pid, others[0], signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM


@pytest.mark.parametrize("output", ["pipe", "file"])
def test_what_a_client_sends_reaches_stdout_whole_and_in_order(output: str, tmp_path: Path) -> None:
    """16 MiB from one client, written by the loop while stdout has room and by the
    output thread while it has not (a pipe its reader empties slowly): byte for byte."""
    payload = os.urandom(16 * 1024 * 1024)
    target = tmp_path / "out"

    def send_all_then_end(client: socket.socket) -> None:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        assert recv_until_eof(client) == b""  # the server has read it all, and closes

    with target.open("wb") as file:
        stdout = file if output == "file" else subprocess.PIPE
        with enchufe("-l", "-k", "-v", "127.0.0.1", "0", stdout=stdout) as cmd:
            with connect(cmd.listening_port()) as client:
                sender = threading.Thread(target=send_all_then_end, args=(client,), name="sender")
                sender.start()
                received = bytearray()
                while output == "pipe" and len(received) < len(payload):
                    received += cmd.read_stdout(min(4096, len(payload) - len(received)))  # a slow reader
                sender.join(STEP_TIMEOUT)
            stop_listener(cmd)
    if output == "file":
        received = bytearray(target.read_bytes())
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
