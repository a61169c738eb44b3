"""TlsTransport: the handshake on the loop, data and half-close both ways, truncation,
backpressure, and clients whose handshake fails, each on real loopback TCP sockets.

The loop runs in a thread of its own with the server's TlsTransport over a
SocketTransport; the test plays the client with the library's blocking TlsStream (or
with plain bytes, for the clients that fail), and reads the protocol's events (a
``Recorder``) with a deadline.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import ssl
import struct
from collections.abc import Iterator

import pytest

from enchufe.errors import CertificateError, NetworkError, TimedOut, TlsError
from enchufe.net.stream import SocketStream
from enchufe.net.tls import CLOSED_IN_HANDSHAKE, TlsStream, client_context, server_context, start_tls
from enchufe.net.tls_transport import TlsTransport
from enchufe.net.transport import SocketTransport
from support.loop import TIMEOUT, LoopThread, Recorder, tcp_pair
from support.tls import TlsFiles

pytestmark = pytest.mark.timeout(30)

HIGH_WATER = 64 * 1024


class PausingRecorder(Recorder):
    """Pauses reading once, as soon as the first data arrives."""

    paused = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()


class Rig(LoopThread):
    """A server TlsTransport on the loop; ``peer`` is the client's raw socket."""

    def __init__(
        self,
        tls_files: TlsFiles,
        protocol: Recorder | None = None,
        *,
        client_receive_buffer: int | None = None,
        **options: object,
    ) -> None:
        super().__init__()
        self.tls_files = tls_files
        self.protocol = protocol or Recorder(record_made=True)
        self.failures: queue.Queue[NetworkError] = queue.Queue()
        ours, self.peer = tcp_pair(client_receive_buffer=client_receive_buffer)
        context = server_context(tls_files.server)

        def start() -> TlsTransport:
            tls = TlsTransport(
                self.loop,
                context,
                self.protocol,
                on_handshake_failed=self.failures.put,
                server_side=True,
                **options,  # type: ignore[arg-type]
            )
            SocketTransport(self.loop, ours, tls, high_water=HIGH_WATER)
            return tls

        transport = self.call(start)
        assert isinstance(transport, TlsTransport)
        self.transport = transport
        self.client: TlsStream | None = None

    def handshake(self) -> TlsStream:
        context = client_context(cafile=self.tls_files.ca)
        self.client = start_tls(SocketStream(self.peer), context, server_hostname="localhost", timeout=TIMEOUT)
        assert self.protocol.next() == ("made",)
        return self.client

    def received(self, size: int) -> bytes:
        """The plaintext of data events until ``size`` bytes have come."""
        chunks = []
        while size > 0:
            event = self.protocol.next()
            assert event[0] == "data", event
            assert isinstance(event[1], bytes)
            chunks.append(event[1])
            size -= len(event[1])
        return b"".join(chunks)

    def close(self) -> None:
        self.call(self.transport.abort)
        self.call(lambda: None)  # one more turn: connection_lost runs, the socket closes
        super().close()
        if self.client is not None:
            self.client.close()
        else:
            self.peer.close()


@pytest.fixture
def rig(tls_files: TlsFiles) -> Iterator[Rig]:
    made = Rig(tls_files)
    yield made
    made.close()


def read_all(stream: TlsStream) -> bytes:
    chunks = []
    while chunk := stream.recv(1 << 20, timeout=TIMEOUT):
        chunks.append(chunk)
    return b"".join(chunks)


def sha256_of_next(stream: TlsStream, size: int) -> bytes:
    """The sha256 of the next ``size`` bytes ``stream`` receives."""
    digest = hashlib.sha256()
    while size > 0:
        chunk = stream.recv(1 << 20, timeout=TIMEOUT)
        assert chunk, f"the stream ended {size} bytes short"
        digest.update(chunk)
        size -= len(chunk)
    return digest.digest()


def test_the_protocol_hears_of_the_connection_once_the_handshake_is_done(rig: Rig) -> None:
    assert rig.call(lambda: rig.protocol.transport) is None  # connected, no hello yet
    client = rig.handshake()
    assert rig.protocol.transport is rig.transport
    assert rig.call(lambda: rig.transport.version) == client.version == "TLSv1.3"
    assert rig.call(lambda: rig.transport.cipher) == client.cipher
    assert rig.failures.empty()


def test_large_data_crosses_both_ways_whole(rig: Rig) -> None:
    client = rig.handshake()
    upload, download = os.urandom(8 << 20), os.urandom(8 << 20)
    client.send_all(upload)  # the loop reads as it comes: nothing waits for the test
    assert hashlib.sha256(rig.received(len(upload))).digest() == hashlib.sha256(upload).digest()
    rig.call(lambda: rig.transport.write(download))
    assert sha256_of_next(client, len(download)) == hashlib.sha256(download).digest()


def test_the_peers_close_notify_is_end_of_stream_and_writing_goes_on(rig: Rig) -> None:
    client = rig.handshake()
    client.send_all(b"question")
    client.send_eof()  # close_notify, then TCP's half-close
    assert rig.received(8) == b"question"
    assert rig.protocol.next() == ("eof",)
    assert rig.call(lambda: rig.transport.truncated) is False

    def answer() -> None:
        rig.transport.write(b"answer after your end")
        rig.transport.write_eof()

    rig.call(answer)
    assert read_all(client) == b"answer after your end"
    assert not client.truncated  # our close_notify came before TCP's end


def test_write_eof_sends_close_notify_and_reading_goes_on(rig: Rig) -> None:
    client = rig.handshake()

    def say_and_end() -> None:
        rig.transport.write(b"all I have to say")
        rig.transport.write_eof()

    rig.call(say_and_end)
    assert read_all(client) == b"all I have to say"
    assert not client.truncated
    assert rig.call(rig.transport.can_write) is False
    client.send_all(b"still heard")
    assert rig.received(11) == b"still heard"
    client.send_eof()
    assert rig.protocol.next() == ("eof",)


def test_a_socket_that_ends_without_close_notify_is_end_of_stream_flagged_truncated(rig: Rig) -> None:
    client = rig.handshake()
    client.send_all(b"partial")
    client.raw.send_eof()  # TCP's end, without TLS's
    assert rig.received(7) == b"partial"
    assert rig.protocol.next() == ("eof",)
    assert rig.call(lambda: rig.transport.truncated) is True


def test_every_record_of_one_read_is_delivered_without_more_from_the_socket(tls_files: TlsFiles) -> None:
    made = Rig(tls_files, read_size=1000)  # many deliveries for each read of the socket
    try:
        client = made.handshake()
        message = os.urandom(60000)  # four records, sent in one go, and then silence
        client.send_all(message)
        assert made.received(len(message)) == message
    finally:
        made.close()


def test_what_tls_holds_when_paused_is_delivered_once_reading_resumes(tls_files: TlsFiles) -> None:
    made = Rig(tls_files, PausingRecorder(record_made=True), read_size=1000)
    try:
        client = made.handshake()
        message = os.urandom(50000)
        client.send_all(message)  # and then silence: the socket has nothing more to say
        first = made.received(1)
        made.call(made.transport.resume_reading)
        assert first + made.received(len(message) - len(first)) == message
    finally:
        made.close()


def test_data_that_comes_with_the_clients_last_handshake_message_is_delivered(rig: Rig) -> None:
    """A client may send its first bytes in the same write as its Finished: they are in
    the read that completes the handshake, and nothing else comes to wake the reader."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(cafile=rig.tls_files.ca).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    rig.peer.sendall(outgoing.read())  # the hello
    while True:
        incoming.write(rig.peer.recv(65536))
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            continue
    client.write(b"early words")
    rig.peer.sendall(outgoing.read())  # Finished and the data, in one segment
    assert rig.protocol.next() == ("made",)
    assert rig.received(11) == b"early words"


def test_records_waiting_inside_tls_survive_write_eof_and_arrive_in_order(tls_files: TlsFiles) -> None:
    """OpenSSL's shutdown reads what waits in the incoming buffer: the transport must
    decrypt it first, and deliver it once reading resumes."""
    made = Rig(tls_files, PausingRecorder(record_made=True), read_size=1000)
    try:
        client = made.handshake()
        message = os.urandom(50000)
        client.send_all(message)
        first = made.received(1)  # then paused: the rest of that read's records wait in TLS
        assert len(first) == 1000
        made.call(made.transport.write_eof)
        assert read_all(client) == b""  # our close_notify
        client.send_all(b"and more after it")
        client.send_eof()
        made.call(made.transport.resume_reading)
        rest = message[1000:] + b"and more after it"
        assert first + made.received(len(rest)) == message + b"and more after it"
        assert made.protocol.next() == ("eof",)
    finally:
        made.close()


def test_a_client_that_stops_reading_pauses_the_writer_and_loses_nothing(tls_files: TlsFiles) -> None:
    made = Rig(tls_files, client_receive_buffer=64 * 1024)
    try:
        client = made.handshake()
        payload = os.urandom(8 << 20)  # far above the kernel's buffers and the high-water mark
        made.call(lambda: made.transport.write(payload))
        assert made.protocol.next() == ("pause",)
        assert made.call(lambda: made.transport.write_buffer_size) > HIGH_WATER
        assert sha256_of_next(client, len(payload)) == hashlib.sha256(payload).digest()
        assert made.protocol.next() == ("resume",)
    finally:
        made.close()


def test_paused_reading_leaves_records_unread_until_resumed(rig: Rig) -> None:
    client = rig.handshake()
    rig.call(rig.transport.pause_reading)
    client.send_all(b"waiting")
    with pytest.raises(queue.Empty):
        rig.protocol.events.get(timeout=0.2)
    rig.call(rig.transport.resume_reading)
    assert rig.received(7) == b"waiting"


@pytest.mark.parametrize(
    "first_bytes",
    [
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="plaintext"),
        pytest.param(b"\x16\x03\x01\x00\x05hello", id="garbage-handshake-record"),
        pytest.param(b"\x00" * 64, id="zeros"),
    ],
)
def test_a_client_that_speaks_no_tls_fails_its_handshake_and_is_cut_off(rig: Rig, first_bytes: bytes) -> None:
    rig.peer.sendall(first_bytes)
    error = rig.failures.get(timeout=TIMEOUT)
    assert isinstance(error, TlsError) and not isinstance(error, CertificateError)
    assert rig.protocol.next() == ("lost", error)  # never "made"
    alert_or_nothing = rig.peer.recv(100)
    assert len(alert_or_nothing) < 100 and rig.peer.recv(100) == b""  # then the socket's end
    assert rig.failures.empty()


def test_a_client_that_leaves_during_the_handshake_is_a_failure(rig: Rig) -> None:
    rig.peer.sendall(b"\x16\x03\x01\x02\x00")  # a record header, and nothing of the record
    rig.peer.shutdown(socket.SHUT_WR)
    error = rig.failures.get(timeout=TIMEOUT)
    assert isinstance(error, TlsError) and str(error) == CLOSED_IN_HANDSHAKE
    assert rig.protocol.next() == ("lost", error)


def test_a_reset_during_the_handshake_is_a_failure(rig: Rig) -> None:
    rig.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rig.peer.close()
    error = rig.failures.get(timeout=TIMEOUT)
    assert isinstance(error, TlsError) and str(error) == CLOSED_IN_HANDSHAKE
    assert rig.protocol.next() == ("lost", error)


def test_a_silent_client_runs_out_of_handshake_time(tls_files: TlsFiles) -> None:
    made = Rig(tls_files, handshake_timeout=0.2)
    try:
        error = made.failures.get(timeout=TIMEOUT)
        assert isinstance(error, TimedOut) and "0.2 s" in str(error)
        assert made.protocol.next() == ("lost", error)
        assert made.peer.recv(1) == b""
    finally:
        made.close()


def test_closing_during_the_handshake_is_no_failure(rig: Rig) -> None:
    rig.call(rig.transport.close)
    assert rig.protocol.next() == ("lost", None)
    assert rig.peer.recv(1) == b""
    assert rig.failures.empty()


class ClientRig(LoopThread):
    """A client TlsTransport on the loop, asking for ``name``; ``server`` is the far
    end's raw socket."""

    def __init__(self, tls_files: TlsFiles, name: str) -> None:
        super().__init__()
        self.protocol = Recorder(record_made=True)
        self.failures: queue.Queue[NetworkError] = queue.Queue()
        ours, self.server = tcp_pair()
        context = client_context(cafile=tls_files.ca)

        def start() -> None:
            tls = TlsTransport(
                self.loop, context, self.protocol, on_handshake_failed=self.failures.put, server_hostname=name
            )
            SocketTransport(self.loop, ours, tls)

        self.call(start)

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.call(self.protocol.transport.abort)
        self.call(lambda: None)
        super().close()
        self.server.close()


def test_a_client_side_transport_sends_its_hello_first_and_talks(tls_files: TlsFiles) -> None:
    rig = ClientRig(tls_files, "localhost")
    try:
        server = start_tls(
            SocketStream(rig.server), server_context(tls_files.server), server_side=True, timeout=TIMEOUT
        )
        assert rig.protocol.next() == ("made",)
        server.send_all(b"hello, client")
        assert rig.protocol.next() == ("data", b"hello, client")
        assert isinstance(rig.protocol.transport, TlsTransport)
        rig.call(rig.protocol.transport.close)
        assert read_all(server) == b""
        assert rig.protocol.next() == ("lost", None)
    finally:
        rig.close()


def test_a_client_side_transport_refuses_a_certificate_for_another_name(tls_files: TlsFiles) -> None:
    rig = ClientRig(tls_files, "example.test")
    try:
        with pytest.raises(TlsError):  # the server hears the client's alert
            start_tls(SocketStream(rig.server), server_context(tls_files.server), server_side=True, timeout=TIMEOUT)
        error = rig.failures.get(timeout=TIMEOUT)
        assert isinstance(error, CertificateError) and "example.test" in str(error)
        assert rig.protocol.next() == ("lost", error)
    finally:
        rig.close()
