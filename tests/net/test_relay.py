"""Relay: ncat's end-of-file rules, zero-copy paths and errors, on real pipes and sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from enchufe.errors import ConnectionLost, IdleTimeout
from enchufe.net.fdstream import FdStream
from enchufe.net.relay import Relay, RelayResult
from enchufe.net.stream import SocketStream


@dataclass
class Rig:
    """A relay's surroundings: the user's stdin/stdout as pipes, the network as a socket pair."""

    stdin_write: int
    stdout_read: int
    local: FdStream
    remote: SocketStream
    peer: socket.socket

    def run(
        self, local: FdStream | None = None, **options: object
    ) -> tuple[threading.Thread, list[RelayResult | BaseException]]:
        """Run a relay in a thread, between ``local`` (the rig's pipes by default) and the
        socket pair; :func:`finish` collects its result."""
        outcome: list[RelayResult | BaseException] = []
        relay = Relay(local or self.local, self.remote, **options)  # type: ignore[arg-type]

        def target() -> None:
            try:
                outcome.append(relay.run())
            except BaseException as exc:  # noqa: BLE001 - inspected by the test
                outcome.append(exc)

        thread = threading.Thread(target=target, name="relay-under-test")
        thread.start()
        return thread, outcome

    def read_stdout(self) -> bytes:
        chunks = []
        while chunk := os.read(self.stdout_read, 65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def peer_receives_all(self) -> bytes:
        chunks = []
        while chunk := self.peer.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def rig() -> Iterator[Rig]:
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    ours, peer = socket.socketpair()
    peer.settimeout(10)  # a relay that misbehaves fails the test instead of hanging it
    local = FdStream(stdin_read, stdout_write, owns_fds=True)
    remote = SocketStream(ours)
    yield Rig(stdin_write, stdout_read, local, remote, peer)
    local.close()
    remote.close()
    peer.close()
    for fd in (stdin_write, stdout_read):
        with contextlib.suppress(OSError):
            os.close(fd)


def finish(thread: threading.Thread, outcome: list[RelayResult | BaseException]) -> RelayResult | BaseException:
    thread.join(10)
    assert not thread.is_alive(), "relay did not end"
    return outcome[0]


def test_both_directions_and_half_close(rig: Rig) -> None:
    thread, outcome = rig.run()
    os.write(rig.stdin_write, b"to the network")
    os.close(rig.stdin_write)
    assert rig.peer_receives_all() == b"to the network"  # EOF arrived: the relay half-closed
    rig.peer.sendall(b"answer after half-close")
    rig.peer.close()
    result = finish(thread, outcome)
    assert rig.read_stdout() == b"answer after half-close"
    assert result == RelayResult(bytes_sent=14, bytes_received=23, ending="both-eof")


def test_remote_eof_ends_the_relay_even_with_stdin_open(rig: Rig) -> None:
    thread, outcome = rig.run()
    rig.peer.sendall(b"bye")
    rig.peer.shutdown(socket.SHUT_WR)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "remote-eof"
    assert rig.read_stdout() == b"bye"  # and stdout was closed: read_stdout saw EOF


def test_no_half_close_keeps_the_remote_open(rig: Rig) -> None:
    thread, outcome = rig.run(half_close=False)
    os.write(rig.stdin_write, b"data")
    os.close(rig.stdin_write)
    assert rig.peer.recv(10) == b"data"
    rig.peer.settimeout(0.2)
    with pytest.raises(TimeoutError):
        rig.peer.recv(10)  # no EOF: the relay did not shut down its side
    rig.peer.close()
    assert isinstance(finish(thread, outcome), RelayResult)


def test_quit_immediately_after_local_eof(rig: Rig) -> None:
    thread, outcome = rig.run(quit_after_local_eof=0)
    os.write(rig.stdin_write, b"last words")
    os.close(rig.stdin_write)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "local-eof"
    assert rig.peer_receives_all() == b"last words"


def test_quit_delay_after_local_eof_lets_late_replies_through(rig: Rig) -> None:
    thread, outcome = rig.run(quit_after_local_eof=0.3)
    os.close(rig.stdin_write)
    assert rig.peer.recv(10) == b""  # half-closed
    rig.peer.sendall(b"late reply")
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "local-eof"
    assert result.bytes_received == len(b"late reply")


def test_keep_open_survives_remote_eof(rig: Rig) -> None:
    thread, outcome = rig.run(keep_open=True)
    rig.peer.shutdown(socket.SHUT_WR)
    os.write(rig.stdin_write, b"still sending")
    assert rig.peer.recv(100) == b"still sending"
    os.close(rig.stdin_write)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "both-eof"


def test_recv_only_never_reads_stdin(rig: Rig) -> None:
    thread, outcome = rig.run(send=False)
    os.write(rig.stdin_write, b"must stay in the pipe")
    rig.peer.sendall(b"incoming")
    rig.peer.shutdown(socket.SHUT_WR)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.bytes_sent == 0
    assert os.read(rig.local.read_fd, 100) == b"must stay in the pipe"


def test_send_only_drops_what_arrives(rig: Rig) -> None:
    thread, outcome = rig.run(receive=False, quit_after_local_eof=0)
    rig.peer.sendall(b"ignored")
    os.write(rig.stdin_write, b"sent")
    os.close(rig.stdin_write)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult)
    assert rig.peer_receives_all() == b"sent"
    rig.local.send_eof()
    assert rig.read_stdout() == b""


def test_filters_transform_each_direction(rig: Rig) -> None:
    thread, outcome = rig.run(outbound=bytes.upper, inbound=bytes.lower)
    os.write(rig.stdin_write, b"shout")
    assert rig.peer.recv(10) == b"SHOUT"
    rig.peer.sendall(b"WHISPER")
    rig.peer.close()
    finish(thread, outcome)
    assert rig.read_stdout() == b"whisper"


def test_idle_timeout(rig: Rig) -> None:
    thread, outcome = rig.run(idle_timeout=0.2)
    result = finish(thread, outcome)
    assert isinstance(result, IdleTimeout)
    assert str(result) == "Idle timeout expired (200 ms)"


def test_traffic_resets_the_idle_timer(rig: Rig) -> None:
    """Eight exchanges, 0.1 s apart: the session lasts twice the idle window, and only
    the reset by each exchange keeps it alive."""
    thread, outcome = rig.run(idle_timeout=0.4)
    pause = threading.Event()
    for _ in range(8):
        os.write(rig.stdin_write, b"k")
        assert rig.peer.recv(1) == b"k"
        pause.wait(0.1)  # traffic at a pace, not synchronisation: nothing else to wait for
    rig.peer.close()
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "remote-eof"


def test_remote_eof_drains_what_stdin_has_ready(rig: Rig) -> None:
    """The peer half-closes while 4 MiB are still on their way from stdin: every byte
    still goes out (ncat quits there and loses the rest)."""
    payload = os.urandom(4 << 20)
    thread, outcome = rig.run()
    writer = threading.Thread(target=lambda: (os.write(rig.stdin_write, payload), os.close(rig.stdin_write)))
    writer.start()
    rig.peer.shutdown(socket.SHUT_WR)
    assert rig.peer_receives_all() == payload
    writer.join(10)
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "both-eof"


def test_draining_ends_when_stdin_has_nothing_ready(rig: Rig) -> None:
    thread, outcome = rig.run(drain_wait=0.05)
    os.write(rig.stdin_write, b"ready")
    assert rig.peer.recv(5) == b"ready"
    rig.peer.shutdown(socket.SHUT_WR)
    result = finish(thread, outcome)  # stdin stays open, and quiet
    assert isinstance(result, RelayResult) and result.ending == "remote-eof"
    assert rig.read_stdout() == b""  # stdout was closed at the remote's end of stream


def test_stop_from_another_thread(rig: Rig) -> None:
    relay = Relay(rig.local, rig.remote)
    outcome: list[RelayResult] = []
    thread = threading.Thread(target=lambda: outcome.append(relay.run()))
    thread.start()
    os.write(rig.stdin_write, b"x")
    assert rig.peer.recv(1) == b"x"  # the relay is running
    relay.stop()
    thread.join(10)
    assert outcome[0].ending == "stopped"


def test_remote_reset_is_raised_after_delivering_what_came_before() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    local = FdStream(stdin_read, stdout_write, owns_fds=True)
    remote = SocketStream(ours)
    with peer:
        relay = Relay(local, remote)
        outcome: list[BaseException] = []

        def target() -> None:
            try:
                relay.run()
            except BaseException as exc:  # noqa: BLE001 - inspected below
                outcome.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        peer.sendall(b"before reset")
        assert os.read(stdout_read, 100) == b"before reset"
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        thread.join(10)
    remote.close()
    local.close()
    os.close(stdin_write)
    os.close(stdout_read)
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost)
    assert str(outcome[0]) == "Connection reset by peer"


def test_stdout_reader_gone_ends_quietly(rig: Rig) -> None:
    thread, outcome = rig.run()
    os.close(rig.stdout_read)
    rig.peer.sendall(b"nobody reads this")
    result = finish(thread, outcome)
    assert isinstance(result, RelayResult) and result.ending == "local-closed"


def test_zero_copy_from_a_regular_file(rig: Rig, tmp_path: object) -> None:
    """A file as stdin takes the sendfile path; every byte arrives in order."""
    payload = os.urandom(3 << 20)
    path = os.path.join(str(tmp_path), "payload")
    with open(path, "wb") as file:
        file.write(payload)
    file_fd = os.open(path, os.O_RDONLY)
    local = FdStream(file_fd, rig.local.write_fd)
    thread, outcome = rig.run(local)
    received = rig.peer_receives_all()
    rig.peer.close()
    result = finish(thread, outcome)
    os.close(file_fd)
    assert received == payload
    assert isinstance(result, RelayResult) and result.bytes_sent == len(payload)


def test_zero_copy_into_a_regular_file(rig: Rig, tmp_path: object) -> None:
    """A file as stdout: socket → file goes through an intermediate pipe (splice)."""
    path = os.path.join(str(tmp_path), "received")
    out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    local = FdStream(rig.local.read_fd, out_fd)
    thread, outcome = rig.run(local)
    payload = os.urandom(3 << 20)
    rig.peer.sendall(payload)
    rig.peer.close()
    result = finish(thread, outcome)
    os.close(out_fd)
    with open(path, "rb") as file:
        assert file.read() == payload
    assert isinstance(result, RelayResult) and result.bytes_received == len(payload)


def test_pipes_both_ways_carry_large_data(rig: Rig) -> None:
    payload = os.urandom(4 << 20)
    thread, outcome = rig.run()
    writer = threading.Thread(target=lambda: (os.write(rig.stdin_write, payload), os.close(rig.stdin_write)))
    writer.start()
    echoed = []
    received = 0
    while received < len(payload):
        chunk = rig.peer.recv(1 << 20)
        assert chunk
        received += len(chunk)
        echoed.append(chunk)
    writer.join(10)
    assert b"".join(echoed) == payload
    sink: list[bytes] = []
    reader = threading.Thread(target=lambda: sink.append(rig.read_stdout()))
    reader.start()
    rig.peer.sendall(payload)
    rig.peer.close()
    result = finish(thread, outcome)
    reader.join(10)
    assert sink[0] == payload
    assert isinstance(result, RelayResult) and result.bytes_sent == result.bytes_received == len(payload)


def test_a_sink_that_refuses_splice_falls_back_to_copying(rig: Rig, tmp_path: object) -> None:
    """``>> file`` opens stdout with O_APPEND, which splice refuses: the bytes already in
    the relay's pipe are delivered, the rest is copied, and nothing is lost or doubled."""
    path = os.path.join(str(tmp_path), "appended")
    with open(path, "wb") as file:
        file.write(b"existing\n")
    out_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    local = FdStream(rig.local.read_fd, out_fd)
    thread, outcome = rig.run(local)
    payload = os.urandom(1 << 20)
    rig.peer.sendall(payload)
    rig.peer.close()
    result = finish(thread, outcome)
    os.close(out_fd)
    with open(path, "rb") as file:
        assert file.read() == b"existing\n" + payload
    assert isinstance(result, RelayResult) and result.bytes_received == len(payload)


def test_idle_timeout_breaks_a_write_to_a_peer_that_stopped_reading(rig: Rig) -> None:
    """16 MiB into a peer that reads nothing: the relay's send blocks for good, and the
    idle timer must still end the relay (ncat: "Idle timeout expired", exit 1)."""
    thread, outcome = rig.run(idle_timeout=0.3)
    writer = threading.Thread(target=_write_until_refused, args=(rig.stdin_write,))
    writer.start()
    result = finish(thread, outcome)
    rig.local.close()  # the pipe's reader goes away: the writer gets EPIPE and ends
    writer.join(10)
    assert isinstance(result, IdleTimeout)


def _write_until_refused(fd: int) -> None:
    chunk = b"x" * 65536
    with contextlib.suppress(OSError):
        for _ in range(256):
            os.write(fd, chunk)
