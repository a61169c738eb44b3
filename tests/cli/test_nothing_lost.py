"""Nothing received is lost, and the command always ends: hostile surroundings, end to end.

Descriptor limits, a machine without ``/dev/null``, a file too large for one datagram,
Telnet replies that can no longer be sent, a terminal on stdin.
"""

from __future__ import annotations

import os
import pty
import resource
import shutil
import socket
import subprocess
import threading

import pytest

from support.cli_e2e import STEP_TIMEOUT, TcpServer, assert_clean_stderr, recv_exactly
from support.procs import ENCHUFE, Process, enchufe


def run_against_a_closing_server(argv_prefix: list[str], *, preexec: object = None) -> tuple[int, bytes, str]:
    """A server that says hello and closes; the command connects with an open stdin pipe."""
    with TcpServer() as server:
        proc = subprocess.Popen(
            [*argv_prefix, *ENCHUFE, "127.0.0.1", str(server.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,  # type: ignore[arg-type]
        )
        try:
            with server.accept() as peer:
                peer.sendall(b"hello before closing\n")
            out, err = proc.communicate(timeout=STEP_TIMEOUT)
        finally:
            proc.kill()
            proc.wait(STEP_TIMEOUT)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    return proc.returncode, out, err.decode()


def test_a_tight_descriptor_limit_still_delivers_and_ends() -> None:
    """``ulimit -n 6``: no descriptor is left for /dev/null when stdout must be closed;
    the command used to hang for ever at 0 % CPU."""

    def six_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (6, 6))

    status, out, err = run_against_a_closing_server([], preexec=six_descriptors)
    assert (status, out) == (0, b"hello before closing\n"), err
    assert_clean_stderr(err)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_no_dev_null_still_delivers_and_ends() -> None:
    """A private mount namespace where /dev is an empty tmpfs: no /dev/null at all."""
    status, out, err = run_against_a_closing_server(
        ["unshare", "--mount", "--", "sh", "-c", 'mount -t tmpfs none /dev && exec "$@"', "sh"]
    )
    assert (status, out) == (0, b"hello before closing\n"), err
    assert_clean_stderr(err)


def test_udp_from_a_file_sends_datagrams_no_larger_than_8_kib(tmp_path: os.PathLike[str]) -> None:
    """ncat sends each stdin read of at most 8 KiB as one datagram; one datagram of the
    whole file failed with ``Message too long.`` and sent nothing."""
    payload = os.urandom(1 << 20)
    path = os.path.join(tmp_path, "payload")
    with open(path, "wb") as file:
        file.write(payload)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        # Room for the whole file, so that no datagram is dropped (SO_RCVBUFFORCE, 33 on
        # Linux, lets root go past net.core.rmem_max).
        server.setsockopt(socket.SOL_SOCKET, 33 if os.geteuid() == 0 else socket.SO_RCVBUF, 8 << 20)
        server.bind(("127.0.0.1", 0))
        server.settimeout(STEP_TIMEOUT)
        datagrams: list[bytes] = []
        with open(path, "rb") as stdin, enchufe("-u", "127.0.0.1", str(server.getsockname()[1]), stdin=stdin) as cmd:
            while sum(map(len, datagrams)) < len(payload):
                datagrams.append(server.recv(1 << 16))
            assert cmd.wait() == 0
    assert max(map(len, datagrams)) <= 8192
    assert b"".join(datagrams) == payload
    assert_clean_stderr(cmd.stderr)


def test_telnet_reply_that_cannot_be_sent_costs_nothing() -> None:
    """``-t < /dev/null``: the command has half-closed before the server's ``DO``
    arrives. ncat prints what came and exits 0; the refusal used to fail with
    ``Broken pipe.`` and lose the data."""
    with (
        TcpServer() as server,
        open(os.devnull, "rb") as nothing,
        enchufe("-t", "127.0.0.1", str(server.port), stdin=nothing) as cmd,
    ):
        with server.accept() as peer:
            assert peer.recv(10) == b""  # the command's stdin ended: it half-closed
            peer.sendall(b"banner\r\n\xff\xfd\x18")  # IAC DO TERMINAL-TYPE
            peer.shutdown(socket.SHUT_WR)
            assert peer.recv(10) == b""  # no reply could be sent, and none was tried
        assert cmd.wait() == 0
        assert cmd.stdout == b"banner\r\n\xff\xfd\x18"
    assert cmd.stderr == ""


def test_telnet_replies_still_go_out_while_stdin_is_open() -> None:
    with TcpServer() as server, enchufe("-t", "127.0.0.1", str(server.port)) as cmd:
        with server.accept() as peer:
            peer.sendall(b"\xff\xfb\x01")  # IAC WILL ECHO
            assert recv_exactly(peer, 3) == b"\xff\xfe\x01"  # IAC DONT ECHO
        assert cmd.wait() == 0


def test_a_terminal_user_sees_the_client_end_when_the_server_closes() -> None:
    """A terminal with nothing typed has nothing ready to send: the server's close ends
    the session, the terminal staying open."""
    controller, terminal = pty.openpty()
    try:
        with TcpServer() as server:
            with Process([*ENCHUFE, "127.0.0.1", str(server.port)], stdin=terminal) as cmd:
                with server.accept() as peer:
                    peer.sendall(b"bye\n")
                assert cmd.wait() == 0
                assert cmd.stdout == b"bye\n"
    finally:
        os.close(controller)
        os.close(terminal)


def test_what_a_terminal_user_typed_before_the_close_still_goes_out() -> None:
    controller, terminal = pty.openpty()
    try:
        with TcpServer() as server:
            with Process([*ENCHUFE, "127.0.0.1", str(server.port)], stdin=terminal) as cmd:
                with server.accept() as peer:
                    os.write(controller, b"typed ahead\n")
                    assert recv_exactly(peer, 12) == b"typed ahead\n"
                    peer.shutdown(socket.SHUT_WR)
                    assert peer.recv(10) == b""  # the session ended: the client closed
                assert cmd.wait() == 0
    finally:
        os.close(controller)
        os.close(terminal)


def test_a_peer_that_closes_without_reading_ends_a_draining_client_quietly() -> None:
    """After the server's end of stream the client keeps sending what stdin has; a server
    that then closes without reading refuses it (reset): the session has ended, it has
    not failed."""
    with TcpServer() as server:
        with enchufe("127.0.0.1", str(server.port)) as cmd:
            stop = threading.Event()

            def keep_writing() -> None:
                chunk = b"x" * 65536
                while not stop.is_set():
                    try:
                        cmd.write(chunk)
                    except (BrokenPipeError, ValueError):
                        return

            writer = threading.Thread(target=keep_writing, name="stdin-writer")
            writer.start()
            try:
                with server.accept() as peer:
                    peer.recv(65536)  # the client is sending
                    peer.shutdown(socket.SHUT_WR)
                    assert cmd.read_to_eof() == b""  # the client closed its stdout: it drains
                assert cmd.wait() == 0
            finally:
                stop.set()
                cmd.kill()
                writer.join(STEP_TIMEOUT)
    assert_clean_stderr(cmd.stderr)
    assert "reset" not in cmd.stderr.lower()
