"""Socket transports on the loop: data, half-close, backpressure and endings, on real sockets.

The loop runs in a thread of its own; the test plays the peer on the other end of a
socket pair and drives the transport with ``call_soon_threadsafe``. The protocol (a
``Recorder``) puts every event it gets on a queue, which the test reads with a deadline.
"""

from __future__ import annotations

import array
import queue
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from enchufe.errors import ConnectionLost, NetworkError
from enchufe.net.loop import EventLoop
from enchufe.net.transport import SocketTransport, StreamProtocol
from support.cli_e2e import recv_exactly
from support.loop import LoopThread, Recorder

TIMEOUT = 10.0


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


FILLER = b"\0" * (4 << 20)  # more than the kernel takes: what is written after it is buffered


def buffered_by(rig: Rig, write: Callable[[], None]) -> int:
    """Write :data:`FILLER`, then run ``write`` (on the loop's thread, so nothing is sent
    in between); return how many bytes ``write`` added to the transport's buffer."""

    def fill_then_write() -> int:
        rig.transport.write(FILLER)
        before = rig.transport.write_buffer_size
        assert before > 0
        write()
        return rig.transport.write_buffer_size - before

    grown = rig.call(fill_then_write)
    assert isinstance(grown, int)
    return grown


def receive_in_small_reads(sock: socket.socket, size: int) -> bytes:
    """Receive ``size`` bytes a few KiB at a time, so the transport sends in many pieces."""
    received = bytearray()
    while len(received) < size and (chunk := sock.recv(min(7001, size - len(received)))):
        received += chunk
    return bytes(received)


@pytest.mark.parametrize(
    "chunks",
    [
        [bytes([n]) * 100_003 for n in range(1, 40)],  # odd sizes: sends end inside chunks
        [b"%d\n" % n for n in range(50_000)],  # many small writes
    ],
    ids=["large", "small"],
)
def test_buffered_writes_go_out_whole_and_in_order_when_sent_in_pieces(rig: Rig, chunks: list[bytes]) -> None:
    def write() -> None:
        for chunk in chunks:
            rig.transport.write(chunk)

    assert buffered_by(rig, write) == sum(map(len, chunks))
    expected = FILLER + b"".join(chunks)
    assert receive_in_small_reads(rig.peer, len(expected)) == expected
    assert rig.call(lambda: rig.transport.write_buffer_size) == 0


def test_write_eof_after_many_buffered_chunks_comes_after_the_last(rig: Rig) -> None:
    chunks = [bytes([n]) * (5000 + 3001 * n) for n in range(1, 30)] + [b"tail"]

    def write_then_eof() -> None:
        for chunk in chunks:
            rig.transport.write(chunk)
        rig.transport.write_eof()

    buffered_by(rig, write_then_eof)
    expected = FILLER + b"".join(chunks)
    assert receive_in_small_reads(rig.peer, len(expected) + 1) == expected  # then the end


def test_what_the_caller_changes_after_write_is_not_what_is_sent(rig: Rig) -> None:
    """A bytearray or memoryview is the caller's to reuse once write returns."""
    small, large = bytearray(b"s" * 100), bytearray(b"L" * 300_000)
    numbers = array.array("I", range(50_000))  # a memoryview of 4-byte items
    sent = [bytes(small), bytes(large), numbers.tobytes(), b"v" * 200_000]

    def write_then_change() -> None:
        rig.transport.write(small)
        rig.transport.write(large)
        rig.transport.write(memoryview(numbers))
        viewed = bytearray(sent[3])
        with memoryview(viewed) as view:
            rig.transport.write(view)
        small[:] = b"?" * 100
        large[:] = b"?" * 300_000
        numbers[:] = array.array("I", [0] * 50_000)
        viewed[:] = b"?" * 200_000

    assert buffered_by(rig, write_then_change) == sum(map(len, sent))  # bytes, not a memoryview's items
    expected = FILLER + b"".join(sent)
    assert receive_in_small_reads(rig.peer, len(expected)) == expected


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
