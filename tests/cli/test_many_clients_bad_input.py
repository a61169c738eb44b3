"""Clients that misbehave in the many-client modes (``-l -k``, ``--broker``, ``--chat``).

Each case: the misbehaving client costs one ``-v`` line at most, the server keeps
serving everyone else, and nothing is lost for the clients that behave.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
from pathlib import Path

from support.cli_e2e import STEP_TIMEOUT, connect, recv_exactly, stop_listener
from support.procs import ENCHUFE, Process, enchufe


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a crashed peer's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_reset_mid_transfer_leaves_the_others_whole() -> None:
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as steady:
            cmd.wait_for_line("Connection from")
            crasher = connect(port)
            cmd.wait_for_line("Connection from")
            crasher.sendall(b"half a mess")
            assert cmd.read_stdout(11) == b"half a mess"
            reset(crasher)
            steady.sendall(b"still fine\n")
            assert cmd.read_stdout(11) == b"still fine\n"
            cmd.write(b"to the survivor\n")
            assert recv_exactly(steady, 16) == b"to the survivor\n"
        stop_listener(cmd)
    assert "Traceback" not in cmd.stderr


def test_a_client_process_killed_mid_stream_costs_the_others_nothing() -> None:
    """An enchufe client is SIGKILLed in the middle of an upload: what it sent is on
    stdout, and another client's upload still arrives complete."""
    first = os.urandom(1 << 20)
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with Process([*ENCHUFE, "127.0.0.1", str(port)]) as sender:
            sender.write(first)  # its stdin stays open: the upload is not over
            cmd.wait_for_line("Connection from")
            assert cmd.read_stdout(len(first)) == first
            sender.popen.kill()  # SIGKILL: no goodbye beyond what the kernel does
        second = os.urandom(1 << 20)
        with connect(port) as uploader:
            cmd.wait_for_line("Connection from")
            uploader.sendall(second)
            assert cmd.read_stdout(len(second)) == second
        stop_listener(cmd)


def test_a_flood_beyond_max_conns_is_refused_and_the_admitted_are_served() -> None:
    """48 connections at once against -m 5: five are served, the rest refused; when
    the flood is over, the server admits and serves new clients."""
    with enchufe("-l", "-k", "-m", "5", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        flooders: list[socket.socket] = []
        lock = threading.Lock()

        def flood() -> None:
            for _ in range(12):
                sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
                with lock:
                    flooders.append(sock)

        threads = [threading.Thread(target=flood, name=f"flood-{n}") for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        try:
            assert len(flooders) == 48
            for _ in flooders:  # each one admitted or refused, in the server's words
                cmd.wait_for_line(r"^enchufe: (Connection from|New connection denied)")
            cmd.write(b"!")
            # Each one either gets stdin's byte (admitted) or its end (refused).
            answers = []
            for sock in flooders:
                try:
                    answers.append(sock.recv(1))
                except ConnectionResetError:
                    answers.append(b"")
            assert answers.count(b"!") == 5
            assert answers.count(b"") == 43
        finally:
            for sock in flooders:
                sock.close()
        # The five are gone, or soon: the server may not have seen all of them leave
        # yet, and refuses a client until then (each refusal is a -v line).
        for _ in range(10):
            with connect(port) as late:
                late.sendall(b"late")
                line = cmd.wait_for_line(r"^enchufe: (Connection from|New connection denied)")
                if line.group(1) == "Connection from":
                    assert cmd.read_stdout(4) == b"late"
                    break
        else:
            raise AssertionError("no room after the flood")
        stop_listener(cmd)


def test_chat_escapes_control_bytes_and_invalid_utf8_and_goes_on() -> None:
    with enchufe("-l", "--chat", "127.0.0.1", "0", "-v") as cmd:
        port = cmd.listening_port()
        with connect(port) as a:
            cmd.wait_for_line("Connection from")
            announcement = a.recv(4096)
            user_a = announcement.split(b"<user", 1)[1].split(b">", 1)[0].decode()
            with connect(port) as b:
                cmd.wait_for_line("Connection from")
                b.recv(4096)  # b's welcome
                a.recv(4096)  # b's arrival
                a.sendall(b"\x1b[2J\xff\xfe bad \xc3\x28 bytes\n")
                expected = f"<user{user_a}> \\033[2J\\377\\376 bad \\303( bytes\n".encode()
                assert recv_exactly(b, len(expected)) == expected
                a.sendall(b"fine\n")
                assert recv_exactly(b, len(f"<user{user_a}> fine\n")) == f"<user{user_a}> fine\n".encode()
        stop_listener(cmd)


def test_a_broker_client_that_floods_a_reader_that_does_not_read(tmp_path: Path) -> None:
    """One client sends 50 MB as fast as it can; a second reads it all, a third never
    reads: the third is dropped, the second gets every byte, the server goes on."""
    payload = os.urandom(50 * 1024 * 1024)
    with enchufe("--broker", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as reader, connect(port) as stalled, connect(port) as sender:
            for _ in range(3):
                cmd.wait_for_line("Connection from")
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sending = threading.Thread(target=sender.sendall, args=(payload,), name="flood-sender")
            sending.start()
            digest = hashlib.sha256()
            received = 0
            while received < len(payload):
                chunk = reader.recv(1 << 20)
                assert chunk, f"{received} bytes, then end of stream"
                digest.update(chunk)
                received += len(chunk)
            sending.join(STEP_TIMEOUT)
            assert digest.digest() == hashlib.sha256(payload).digest()
            cmd.wait_for_line(r"^enchufe: Disconnected 127\.0\.0\.1:\d+: too far behind\.$")
            status = Path(f"/proc/{cmd.popen.pid}/status").read_text()
            rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
            assert rss_kib < 100 * 1024  # bounded: far below the 50 MB that went through
        with connect(port) as late:
            cmd.wait_for_line("Connection from")
            cmd.write(b"after\n")
            assert recv_exactly(late, 6) == b"after\n", cmd.stderr_lines
        stop_listener(cmd)
