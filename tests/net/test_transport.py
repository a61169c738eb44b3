"""Socket transports on the loop: data, half-close, backpressure and endings, on real sockets.

The loop runs in a thread of its own; the test plays the peer on the other end of a
socket pair and drives the transport with ``call_soon_threadsafe``. The protocol puts
every event it gets on a queue, which the test reads with a deadline.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from enchufe.errors import ConnectionLost, NetworkError
from enchufe.net.loop import EventLoop
from enchufe.net.transport import SocketTransport, StreamProtocol
from support.cli_e2e import recv_exactly
from support.loop import LoopThread

TIMEOUT = 10.0


class Recorder(StreamProtocol):
    """Puts each event on a queue: ("data", b"..."), ("eof",), ("pause",), ..."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[object, ...]] = queue.Queue()
        self.transport: SocketTransport | None = None

    def connection_made(self, transport: SocketTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.events.put(("data", data))

    def eof_received(self) -> None:
        self.events.put(("eof",))

    def pause_writing(self) -> None:
        self.events.put(("pause",))

    def resume_writing(self) -> None:
        self.events.put(("resume",))

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.events.put(("lost", exc))

    def next(self) -> tuple[object, ...]:
        return self.events.get(timeout=TIMEOUT)


class Rig(LoopThread):
    def __init__(self) -> None:
        super().__init__()
        ours, self.peer = socket.socketpair()
        self.peer.settimeout(TIMEOUT)
        self.protocol = Recorder()
        transport = self.call(lambda: SocketTransport(self.loop, ours, self.protocol, high_water=64 * 1024))
        assert isinstance(transport, SocketTransport)
        self.transport = transport

    def close(self) -> None:
        self.call(self.transport.abort)
        super().close()
        self.peer.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def test_data_both_ways(rig: Rig) -> None:
    rig.peer.sendall(b"hello")
    assert rig.protocol.next() == ("data", b"hello")
    rig.call(lambda: rig.transport.write(b"world"))
    assert recv_exactly(rig.peer, 5) == b"world"


def test_the_peers_half_close_is_eof_and_writing_goes_on(rig: Rig) -> None:
    rig.peer.shutdown(socket.SHUT_WR)
    assert rig.protocol.next() == ("eof",)
    rig.call(lambda: rig.transport.write(b"still here"))
    assert recv_exactly(rig.peer, 10) == b"still here"


def test_backpressure_pauses_and_resumes_the_writer_and_loses_nothing(rig: Rig) -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB: far above the kernel's buffers and high water
    rig.call(lambda: rig.transport.write(payload))
    assert rig.protocol.next() == ("pause",)
    assert rig.transport.write_buffer_size > 0
    assert recv_exactly(rig.peer, len(payload)) == payload
    assert rig.protocol.next() == ("resume",)


def test_write_eof_waits_for_the_buffer_then_half_closes(rig: Rig) -> None:
    payload = b"x" * (2 << 20)

    def write_then_eof() -> None:
        rig.transport.write(payload)
        rig.transport.write_eof()

    rig.call(write_then_eof)
    received = b""
    while chunk := rig.peer.recv(1 << 20):
        received += chunk
    assert received == payload
    rig.peer.sendall(b"answer")  # our side still reads
    events = [rig.protocol.next() for _ in range(3)]
    assert ("data", b"answer") in events


def test_close_flushes_and_reports_once(rig: Rig) -> None:
    payload = b"y" * (1 << 20)

    def write_then_close() -> None:
        rig.transport.write(payload)
        rig.transport.close()
        rig.transport.close()

    rig.call(write_then_close)
    received = b""
    while chunk := rig.peer.recv(1 << 20):
        received += chunk
    assert received == payload
    events = [rig.protocol.next() for _ in range(3)]
    assert events.count(("lost", None)) == 1
    with pytest.raises(queue.Empty):
        rig.protocol.events.get(timeout=0.1)
    with pytest.raises(RuntimeError):
        rig.transport.write(b"more")


def test_abort_drops_the_buffer(rig: Rig) -> None:
    def write_then_abort() -> None:
        rig.transport.write(b"z" * (4 << 20))
        rig.transport.abort()

    rig.call(write_then_abort)
    received = 0
    while chunk := rig.peer.recv(1 << 20):
        received += len(chunk)
    assert received < 4 << 20
    assert ("lost", None) in [rig.protocol.next() for _ in range(2)]


def test_the_descriptor_stays_taken_until_connection_lost_is_delivered() -> None:
    """Whoever keys clients by descriptor number (chat's <userN>) must never see a new
    connection with the number of one it has not been told is lost."""
    seen: list[tuple[int, int]] = []

    class Watcher(StreamProtocol):
        def connection_lost(self, exc: NetworkError | None) -> None:
            probe = socket.socket()  # takes the lowest free descriptor number
            seen.append((fd, probe.fileno()))
            probe.close()

    ours, peer = socket.socketpair()
    fd = ours.fileno()
    with EventLoop() as loop, peer:
        transport = SocketTransport(loop, ours, Watcher())
        transport.abort()
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert len(seen) == 1 and seen[0][1] != fd  # still taken when the protocol hears of it
        assert ours.fileno() == -1  # and closed right after
        assert peer.recv(1) == b""


def test_paused_reading_leaves_data_in_the_kernel(rig: Rig) -> None:
    rig.call(rig.transport.pause_reading)
    rig.peer.sendall(b"waiting")
    with pytest.raises(queue.Empty):
        rig.protocol.events.get(timeout=0.2)
    rig.call(rig.transport.resume_reading)
    assert rig.protocol.next() == ("data", b"waiting")


def test_a_reset_is_reported_as_connection_lost() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    protocol = Recorder()
    with EventLoop() as loop, accepted:
        transport = SocketTransport(loop, client, protocol)
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()
        thread = threading.Thread(target=loop.run_forever, name="loop")
        thread.start()
        event = protocol.next()
        loop.stop()
        thread.join(TIMEOUT)
    assert event[0] == "lost" and isinstance(event[1], ConnectionLost)
    assert transport.is_closing()
