"""Connection: buffered reads with one deadline model, over real socket pairs."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from enchufe.errors import ConnectionLost, ReceiveLimitExceeded, ReceiveTimeout, TimedOut, UnexpectedEOF
from enchufe.net.connection import DEFAULT_MAX_SIZE, Connection
from enchufe.net.stream import SocketStream


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A Connection and the raw socket at the other end."""
    ours, theirs = socket.socketpair()
    conn = Connection(SocketStream(ours))
    with conn, theirs:
        yield conn, theirs


def test_recv_returns_what_arrived(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"hello")
    assert conn.recv() == b"hello"


def test_recv_returns_empty_at_eof(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.shutdown(socket.SHUT_WR)
    assert conn.recv() == b""
    assert conn.recv() == b""


def test_recv_respects_max_bytes_and_keeps_the_rest(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"abcdef")
    assert conn.recv_exactly(1) == b"a"
    assert conn.recv(2) == b"bc"
    assert conn.recv() == b"def"


def test_recv_exactly_joins_chunks(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair

    def dribble() -> None:
        for byte in b"12345":
            peer.sendall(bytes([byte]))

    writer = threading.Thread(target=dribble)
    writer.start()
    assert conn.recv_exactly(5, timeout=5) == b"12345"
    writer.join()


def test_recv_until_includes_or_drops_the_delimiter(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"key: value\r\nnext: 2\r\n")
    assert conn.recv_until(b"\r\n") == b"key: value\r\n"
    assert conn.recv_until(b"\r\n", keepends=False) == b"next: 2"


def test_recv_until_finds_a_delimiter_split_across_chunks(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"abc\r")
    assert conn.recv(1) == b"a"  # forces the first part into the buffer
    peer.sendall(b"\nrest")
    assert conn.recv_until(b"\r\n", timeout=5) == b"bc\r\n"
    assert conn.recv() == b"rest"


def test_recv_line_and_send_line(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.send_line("héllo")
    assert peer.recv(100) == "héllo\n".encode()
    conn.send_line(b"crlf", newline=b"\r\n")
    assert peer.recv(100) == b"crlf\r\n"
    peer.sendall(b"one\ntwo\n")
    assert conn.recv_line() == b"one\n"
    assert conn.recv_line(keepends=False) == b"two"


def test_timeout_keeps_partial_data_for_the_next_read(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"partial")
    with pytest.raises(ReceiveTimeout) as caught:
        conn.recv_line(timeout=0.05)
    assert caught.value.partial == b"partial"
    assert isinstance(caught.value, TimeoutError)
    peer.sendall(b" line\n")
    assert conn.recv_line(timeout=5) == b"partial line\n"


def test_timeout_bounds_the_whole_call_not_each_read(pair: tuple[Connection, socket.socket]) -> None:
    """A peer that keeps dribbling bytes must not extend the deadline (pwntools#251)."""
    conn, peer = pair
    stop = threading.Event()

    def dribble() -> None:
        while not stop.wait(0.02):
            peer.sendall(b"x")

    writer = threading.Thread(target=dribble)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(ReceiveTimeout):
            conn.recv_until(b"\n", timeout=0.3)
    finally:
        stop.set()
        writer.join()
    assert time.monotonic() - started < 3.0


def test_default_timeout_comes_from_the_connection() -> None:
    ours, theirs = socket.socketpair()
    with Connection(SocketStream(ours), timeout=0.05) as conn, theirs:
        with pytest.raises(ReceiveTimeout):
            conn.recv()
        theirs.sendall(b"late")
        assert conn.recv(timeout=None) == b"late"


def test_eof_before_a_full_read_raises_with_partial(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"abc")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(UnexpectedEOF) as caught:
        conn.recv_exactly(10)
    assert caught.value.partial == b"abc"
    assert isinstance(caught.value, EOFError)
    assert conn.recv_exactly(3) == b"abc"
    with pytest.raises(UnexpectedEOF):
        conn.recv_line()


def test_iteration_yields_chunks_until_eof(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"one")
    peer.shutdown(socket.SHUT_WR)
    assert b"".join(conn) == b"one"


def test_send_eof_half_closes(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.send_all(b"request")
    conn.send_eof()
    received = b""
    while chunk := peer.recv(100):
        received += chunk
    assert received == b"request"
    peer.sendall(b"reply")
    assert conn.recv() == b"reply"


def test_send_to_a_peer_that_does_not_read_times_out(pair: tuple[Connection, socket.socket]) -> None:
    conn, _ = pair
    with pytest.raises(TimedOut):
        conn.send_all(b"x" * (64 << 20), timeout=0.2)


def test_a_zero_timeout_takes_what_has_already_arrived(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    with pytest.raises(ReceiveTimeout):
        conn.recv(timeout=0)
    peer.sendall(b"ready")  # a socket pair delivers before sendall returns
    assert conn.recv(timeout=0) == b"ready"


def test_can_recv_looks_without_consuming(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    assert not conn.can_recv(timeout=0)
    peer.sendall(b"request")
    assert conn.can_recv(timeout=5)
    assert conn.buffered == len(b"request")
    peer.shutdown(socket.SHUT_WR)
    assert conn.recv() == b"request"
    assert conn.can_recv(timeout=0)  # the end of file: a read returns at once
    assert conn.buffered == 0
    assert not conn.closed
    conn.close()
    assert conn.closed


def test_deadlines_are_arguments_not_socket_state(pair: tuple[Connection, socket.socket]) -> None:
    """A call's deadline never becomes the socket's timeout: no settimeout (an
    ioctl(FIONBIO) each) per call, and nothing that another thread's call could see."""
    conn, peer = pair
    assert isinstance(conn.stream, SocketStream)
    peer.sendall(b"abc")
    assert conn.recv(timeout=5) == b"abc"
    conn.send_all(b"x", timeout=5)
    with pytest.raises(ReceiveTimeout):
        conn.recv_line(timeout=0.01)
    assert conn.stream.sock.gettimeout() is None


def test_a_reader_and_a_writer_keep_their_own_deadlines(pair: tuple[Connection, socket.socket]) -> None:
    """One thread sends without a deadline while another reads with a 1 ms one: each
    read ends on its own deadline, however the sends go."""
    conn, peer = pair
    stop = threading.Event()
    endings: list[str] = []
    waits: list[float] = []

    def drain() -> None:
        while peer.recv(1 << 16):
            pass

    def send() -> None:
        while not stop.is_set():
            conn.send_all(b"x" * 4096)
        conn.send_eof()

    def read() -> None:
        for _ in range(200):
            started = time.monotonic()
            try:
                endings.append("data" if conn.recv(timeout=0.001) else "end of file")
            except ReceiveTimeout:
                endings.append("timeout")
            waits.append(time.monotonic() - started)
            if endings[-1] != "timeout":
                return

    helpers = [threading.Thread(target=drain), threading.Thread(target=send)]
    for thread in helpers:
        thread.start()
    reader = threading.Thread(target=read)
    reader.start()
    reader.join(10)
    stop.set()
    peer.shutdown(socket.SHUT_WR)  # a read that lost its deadline would wait for this
    reader.join()
    for thread in helpers:
        thread.join()
    assert endings == ["timeout"] * 200
    assert max(waits) < 1.0  # a correctness bound (1000 times the deadline), not a benchmark


def test_empty_delimiter_is_rejected(pair: tuple[Connection, socket.socket]) -> None:
    conn, _ = pair
    with pytest.raises(ValueError):
        conn.recv_until(b"")


def test_an_empty_datagram_is_not_an_end_of_file() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with Connection(SocketStream(ours)) as conn, theirs:
        theirs.send(b"")
        theirs.send(b"after")
        assert conn.recv(timeout=5) == b"after"


def test_send_to_a_pipe_nobody_reads_times_out() -> None:
    """The deadline bounds a send over file descriptors too (a full pipe)."""
    from enchufe.net.fdstream import FdStream

    read_fd, write_fd = os.pipe()
    with Connection(FdStream(read_fd, write_fd, owns_fds=True)) as conn:
        with pytest.raises(TimedOut):
            conn.send_all(b"x" * (1 << 20), timeout=0.2)


# -- memory: bounded by the caller, not by the peer -----------------------------------


def test_a_line_that_never_ends_stops_at_the_limit_and_loses_nothing(pair: tuple[Connection, socket.socket]) -> None:
    """A peer sending megabytes without a newline cannot make recv_line buffer them all."""
    conn, peer = pair
    flood = b"x" * (4 << 20)
    writer = threading.Thread(target=peer.sendall, args=(flood,))  # blocks until we read it all
    writer.start()
    try:
        with pytest.raises(ReceiveLimitExceeded) as caught:
            conn.recv_line(timeout=10)
        assert DEFAULT_MAX_SIZE <= len(caught.value.partial) < 2 * DEFAULT_MAX_SIZE
        assert caught.value.limit == DEFAULT_MAX_SIZE
        assert isinstance(caught.value, ValueError)
    finally:
        assert conn.recv_exactly(len(flood), timeout=10) == flood  # the partial bytes were kept
        writer.join()


def test_the_limit_is_set_per_call_and_per_connection(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(b"123456789\n" + b"abcdefghijk\n")
    conn.max_size = 10
    assert conn.recv_line(timeout=5) == b"123456789\n"  # exactly the limit, newline included
    with pytest.raises(ReceiveLimitExceeded) as caught:
        conn.recv_line(timeout=5)  # the newline is already buffered, but past the limit
    assert caught.value.partial == b"abcdefghijk\n"
    assert conn.recv_line(max_size=12, timeout=5) == b"abcdefghijk\n"
    peer.sendall(b"key: value\r\n")
    with pytest.raises(ReceiveLimitExceeded):
        conn.recv_until(b"\r\n", max_size=11, timeout=5)
    assert conn.recv_until(b"\r\n", max_size=None, timeout=5) == b"key: value\r\n"


def test_a_limit_shorter_than_the_delimiter_is_rejected(pair: tuple[Connection, socket.socket]) -> None:
    conn, _ = pair
    with pytest.raises(ValueError, match="max_size 1"):
        conn.recv_until(b"\r\n", max_size=1)


def test_huge_counts_are_read_in_chunks_not_allocated(pair: tuple[Connection, socket.socket]) -> None:
    """recv_exactly(2**40) used to ask recv() for 2**40 bytes at once: MemoryError."""
    conn, peer = pair
    peer.sendall(b"abc")
    assert conn.recv(1 << 40, timeout=5) == b"abc"
    peer.sendall(b"defg")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(UnexpectedEOF) as caught:
        conn.recv_exactly(1 << 40, timeout=5)
    assert caught.value.partial == b"defg"


def tcp_pair() -> tuple[Connection, socket.socket]:
    """A Connection and the raw socket at the other end of a TCP connection on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    return Connection(SocketStream(ours)), theirs


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST) instead of an orderly end of file."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.close()


def test_blocking_reads_and_sends_turn_a_reset_into_connection_lost() -> None:
    conn, peer = tcp_pair()
    with conn:
        peer.sendall(b"ping")
        assert conn.recv() == b"ping"
        reset(peer)
        with pytest.raises(ConnectionLost):
            conn.recv()
        with pytest.raises(ConnectionLost):
            for _ in range(100):  # the first sends may still be accepted by the kernel
                conn.send_all(b"x" * 65536)


def test_blocking_sends_from_two_threads_never_interleave(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    size = 4 << 20  # far beyond the socket buffers: each send_all blocks many times
    senders = [threading.Thread(target=conn.send_all, args=(byte * size,)) for byte in (b"a", b"b")]
    for sender in senders:
        sender.start()
    received = bytearray()
    peer.settimeout(10)
    while len(received) < 2 * size:
        received += peer.recv(1 << 20)
    for sender in senders:
        sender.join(10)
    first, second = received[:size], received[size:]
    assert {bytes(first), bytes(second)} == {b"a" * size, b"b" * size}
