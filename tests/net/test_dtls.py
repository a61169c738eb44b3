"""DtlsStream: handshakes with real peers (openssl s_server/s_client -dtls and
enchufe itself), datagrams both ways, certificates, retransmission and timeouts, and a
listener's cookie exchange."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from enchufe.address import InetAddress
from enchufe.errors import CertificateError, NetworkError, TimedOut, TlsError, TlsSetupError, Unsupported
from enchufe.net.dtls import (
    NEEDS_PYOPENSSL,
    RECORD_PLAINTEXT,
    DtlsContext,
    DtlsStream,
    accept_dtls,
    dtls_client_context,
    dtls_server_context,
    pack_records,
    start_dtls,
)
from enchufe.net.listen import Listener, close_all, open_listeners
from enchufe.net.stream import SocketStream
from support.procs import Process, free_port
from support.tls import TlsFiles, in_thread

pytestmark = pytest.mark.timeout(30)
SRC = Path(__file__).parents[2] / "src"


def _needs_pyopenssl() -> None:
    pytest.importorskip("OpenSSL")


def _udp_to(host: str, port: int) -> SocketStream:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    return SocketStream(sock)


@pytest.fixture
def listeners(loopback: str) -> Iterator[list[Listener]]:
    """UDP listeners on the loopback address, closed after the test (those that
    accept_dtls did not consume)."""
    made = open_listeners(port=0, transport="datagram", family=socket.AF_INET6 if ":" in loopback else socket.AF_INET)
    yield made
    close_all(made)


def _acceptin_thread(
    listeners: list[Listener], tls_files: TlsFiles, **kwargs: object
) -> tuple[threading.Thread, dict[str, object]]:
    context = dtls_server_context(tls_files.server, **kwargs)  # type: ignore[arg-type]
    return in_thread(lambda: _accept_and_handshake(listeners, context))


def _accept_and_handshake(listeners: list[Listener], context: DtlsContext) -> DtlsStream:
    stream = accept_dtls(listeners, context, timeout=10)
    stream.handshake(timeout=10)
    return stream


def _accepted(thread: threading.Thread, outcome: dict[str, object]) -> DtlsStream:
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    server = outcome["value"]
    assert isinstance(server, DtlsStream)
    return server


@pytest.fixture
def pair(listeners: list[Listener], tls_files: TlsFiles, loopback: str) -> Iterator[tuple[DtlsStream, DtlsStream]]:
    """A client and a server DtlsStream, handshaken over loopback UDP."""
    _needs_pyopenssl()
    thread, outcome = _acceptin_thread(listeners, tls_files)
    raw = _udp_to(loopback, listeners[0].address.port)  # type: ignore[union-attr]
    client = start_dtls(raw, dtls_client_context(cafile=tls_files.ca), server_hostname=loopback, timeout=10)
    server = _accepted(thread, outcome)
    yield client, server
    client.close()
    server.close()


# -- the records a memory BIO mixes, back into datagrams ---------------------------------


def _record(length: int, fill: bytes = b"r") -> bytes:
    return bytes([23, 0xFE, 0xFD]) + bytes(8) + length.to_bytes(2, "big") + fill * length


def test_records_are_packed_whole_into_datagrams_up_to_the_mtu() -> None:
    records = [_record(100, b"a"), _record(100, b"b"), _record(100, b"c"), _record(500, b"d")]
    packed = list(pack_records(b"".join(records), mtu=250))
    assert packed == [records[0] + records[1], records[2], records[3]]  # the last, alone, above the MTU
    assert list(pack_records(b"".join(records), mtu=65507)) == [b"".join(records)]


# -- enchufe with enchufe ----------------------------------------------------------------


def test_datagrams_cross_both_ways_whole_and_in_order(pair: tuple[DtlsStream, DtlsStream], loopback: str) -> None:
    client, server = pair
    assert client.version == server.version == "DTLSv1.2"
    assert client.cipher == server.cipher
    assert server.peer_address == client.local_address
    assert client.mtu == 65507 if loopback == "127.0.0.1" else 65488  # loopback's MTU, less IP and UDP
    messages = [b"one", b"two" * 1000, os.urandom(8192)]
    for message in messages:
        client.send_all(message)
    assert [server.recv(timeout=5) for _ in messages] == messages
    server.send_all(b"and back")
    assert client.recv(timeout=5) == b"and back"


def test_a_datagram_of_several_records_is_several_datagrams_of_plaintext(pair: tuple[DtlsStream, DtlsStream]) -> None:
    client, server = pair
    for message in (b"first", b"second", b"third"):
        client._dtls.write(message)  # three records, which other stacks may send in one datagram
    client.raw.send_all(client._dtls.bio_read(65535))
    assert server.recv(timeout=5) == b"first"
    assert server.pending() == len(b"second") + len(b"third")  # decrypted already: no socket to wait on
    assert server.recv(timeout=0) == b"second"
    assert server.recv(timeout=0) == b"third"


def test_more_than_a_record_goes_as_several_datagrams(pair: tuple[DtlsStream, DtlsStream]) -> None:
    client, server = pair
    big = os.urandom(RECORD_PLAINTEXT * 2 + 10)
    client.send_all(big)
    pieces = [server.recv(timeout=5) for _ in range(3)]
    assert [len(piece) for piece in pieces] == [RECORD_PLAINTEXT, RECORD_PLAINTEXT, 10]
    assert b"".join(pieces) == big


def test_close_notify_is_the_end_of_the_stream(pair: tuple[DtlsStream, DtlsStream]) -> None:
    client, server = pair
    client.send_all(b"last words")
    client.send_eof()
    assert server.recv(timeout=5) == b"last words"
    assert server.is_datagram
    assert server.recv(timeout=5) == b""
    assert server.ended and not server.is_datagram  # so a relay or a Connection sees the end
    server.send_all(b"heard after your close_notify")  # reading went on at the other end
    assert client.recv(timeout=5) == b"heard after your close_notify"


def test_alpn_picks_the_servers_first_choice_among_the_clients(
    listeners: list[Listener], tls_files: TlsFiles, loopback: str
) -> None:
    _needs_pyopenssl()
    thread, outcome = _acceptin_thread(listeners, tls_files, alpn=["h2", "coap"])
    raw = _udp_to(loopback, listeners[0].address.port)  # type: ignore[union-attr]
    client = start_dtls(raw, dtls_client_context(verify=False, alpn=["coap", "h2"]), timeout=10)
    server = _accepted(thread, outcome)
    assert client.alpn_protocol == server.alpn_protocol == "h2"
    client.close()
    server.close()


# -- certificates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cafile", "certfile", "name", "reason"),
    [
        ("other_ca", "server", "localhost", "unable to get local issuer certificate"),
        ("ca", "expired", "localhost", "certificate has expired"),
        ("ca", "server", "example.test", "Hostname mismatch, certificate is not valid for 'example.test'."),
        ("ca", "server", "10.0.0.1", "IP address mismatch, certificate is not valid for '10.0.0.1'."),
    ],
)
def test_a_certificate_that_does_not_verify_fails_with_the_reason_and_the_certificate(
    listeners: list[Listener], tls_files: TlsFiles, loopback: str, cafile: str, certfile: str, name: str, reason: str
) -> None:
    _needs_pyopenssl()
    context = dtls_server_context(getattr(tls_files, certfile))
    thread, outcome = in_thread(lambda: _accept_and_handshake(listeners, context))
    raw = _udp_to(loopback, listeners[0].address.port)  # type: ignore[union-attr]
    with pytest.raises(CertificateError) as caught:
        start_dtls(raw, dtls_client_context(cafile=getattr(tls_files, cafile)), server_hostname=name, timeout=10)
    thread.join()
    assert isinstance(outcome["error"], TlsError)  # the server heard the client's alert
    assert caught.value.reason == reason
    assert str(caught.value) == f"Certificate verification failed ({reason.rstrip('.')})"
    assert caught.value.certificate is not None and caught.value.certificate[:1] == b"\x30"  # DER


@pytest.mark.parametrize("client_certificate", [False, True])
def test_a_server_with_a_ca_requires_a_client_certificate_it_issued(
    listeners: list[Listener], tls_files: TlsFiles, loopback: str, client_certificate: bool
) -> None:
    _needs_pyopenssl()
    thread, outcome = _acceptin_thread(listeners, tls_files, cafile=tls_files.ca)
    raw = _udp_to(loopback, listeners[0].address.port)  # type: ignore[union-attr]
    context = dtls_client_context(verify=False, certfile=tls_files.client if client_certificate else None)
    if client_certificate:
        client = start_dtls(raw, context, timeout=10)
        server = _accepted(thread, outcome)
        assert server.peer_certificate is not None
        client.close()
        server.close()
    else:
        with pytest.raises(TlsError):
            start_dtls(raw, context, timeout=10)
        thread.join()
        assert isinstance(outcome["error"], TlsError)


def test_files_and_ciphers_that_do_not_load_are_setup_errors_naming_them(tls_files: TlsFiles) -> None:
    _needs_pyopenssl()
    with pytest.raises(TlsSetupError, match=r"^/nowhere\.pem: No such file or directory$"):
        dtls_server_context("/nowhere.pem")
    with pytest.raises(TlsSetupError, match=r"^.*ca\.pem: .+"):  # a certificate without its key
        dtls_server_context(tls_files.ca)
    with pytest.raises(TlsSetupError, match=r"^Unable to set OpenSSL cipher list: no cipher match$"):
        dtls_client_context(ciphers="NOTHING-SUCH")


# -- timeouts and odd peers --------------------------------------------------------------


def test_a_silent_peer_gets_the_hello_again_then_the_handshake_times_out(loopback: str) -> None:
    _needs_pyopenssl()
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as silent:
        silent.bind((loopback, 0))
        raw = _udp_to(loopback, silent.getsockname()[1])
        with pytest.raises(TimedOut, match="DTLS handshake timed out"):
            start_dtls(raw, dtls_client_context(verify=False), timeout=1.5)  # OpenSSL's first retransmission: 1 s
        hellos = []
        while select.select([silent], [], [], 0)[0]:
            hellos.append(silent.recv(65535))
    assert len(hellos) == 2
    assert hellos[0][13:] == hellos[1][13:]  # the same ClientHello again, in a record of its own number
    assert raw.sock.fileno() == -1  # the failed handshake closed the socket


def test_nothing_listening_is_connection_refused(loopback: str) -> None:
    _needs_pyopenssl()
    raw = _udp_to(loopback, free_port(loopback, socket.SOCK_DGRAM))
    with pytest.raises(NetworkError, match="Connection refused"):
        start_dtls(raw, dtls_client_context(verify=False), timeout=5)


def _hellos_of_a_client(peer: socket.socket) -> tuple[bytes, bytes]:
    """A client's first ClientHello, and the second one it makes from the listener's
    HelloVerifyRequest (with the cookie for ``peer``'s address), without sending it."""
    from OpenSSL import SSL

    session = SSL.Connection(dtls_client_context(verify=False).context)
    session.set_connect_state()
    session.set_ciphertext_mtu(1400)

    def next_flight() -> bytes:
        with pytest.raises(SSL.WantReadError):
            session.do_handshake()
        return session.bio_read(65535)

    first = next_flight()
    peer.send(first)
    assert select.select([peer], [], [], 10)[0], "no HelloVerifyRequest"
    session.bio_write(peer.recv(65535))
    return first, next_flight()


def test_the_listener_keeps_nothing_for_a_spoofed_or_odd_datagram(
    listeners: list[Listener], tls_files: TlsFiles, loopback: str
) -> None:
    _needs_pyopenssl()
    thread, outcome = _acceptin_thread(listeners, tls_files)
    port = listeners[0].address.port  # type: ignore[union-attr]
    garbage, seen, spoofer = (_udp_to(loopback, port) for _ in range(3))
    garbage.send_all(b"GET / HTTP/1.0\r\n\r\n")
    first, second = _hellos_of_a_client(seen.sock)  # the listener answered the first, and kept nothing
    spoofer.send_all(second)  # a cookie made for another address: only a HelloVerifyRequest again
    assert spoofer.recv(timeout=10)[13] == 3  # the handshake message type: hello_verify_request
    client = start_dtls(_udp_to(loopback, port), dtls_client_context(verify=False), timeout=10)
    server = _accepted(thread, outcome)
    assert server.peer_address == client.local_address
    server.send_all(b"only for the real client")
    assert client.recv(timeout=5) == b"only for the real client"
    with pytest.raises(TimedOut):
        garbage.recv(timeout=0)  # the datagram that was no DTLS got no answer
    assert first[13] == 1  # a client_hello, which the listener answered statelessly
    for stream in (garbage, seen, spoofer, client, server):
        stream.close()


def test_without_pyopenssl_a_context_says_how_to_get_it() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); sys.modules['OpenSSL'] = None\n"
        "from enchufe.net.dtls import dtls_client_context\n"
        "try:\n    dtls_client_context()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout == f"Unsupported {NEEDS_PYOPENSSL}\n"
    assert issubclass(Unsupported, OSError)


# -- openssl's own DTLS peers ------------------------------------------------------------


@pytest.mark.interop
def test_enchufe_client_with_openssl_s_server(tls_files: TlsFiles, loopback: str) -> None:
    _needs_pyopenssl()
    port = free_port(loopback, socket.SOCK_DGRAM)
    where = f"[{loopback}]:{port}" if ":" in loopback else f"{loopback}:{port}"
    argv = ["openssl", "s_server", "-dtls", "-accept", where, "-cert", tls_files.server, "-naccept", "1"]
    with Process(argv) as server:
        server.read_until(b"ACCEPT\n")
        raw = _udp_to(loopback, port)
        client = start_dtls(raw, dtls_client_context(cafile=tls_files.ca), server_hostname="localhost", timeout=10)
        client.send_all(b"hello s_server\n")
        server.read_until(b"hello s_server\n")
        server.write(b"hello enchufe\n")
        assert client.recv(timeout=10) == b"hello enchufe\n"
        client.send_eof()  # close_notify: s_server ends the session, and with -naccept 1, itself
        assert server.wait() == 0
        client.close()


@pytest.mark.interop
def test_openssl_s_client_with_enchufe_listener(listeners: list[Listener], tls_files: TlsFiles, loopback: str) -> None:
    _needs_pyopenssl()
    thread, outcome = _acceptin_thread(listeners, tls_files)
    port = listeners[0].address.port  # type: ignore[union-attr]
    where = f"[{loopback}]:{port}" if ":" in loopback else f"{loopback}:{port}"
    argv = ["openssl", "s_client", "-dtls", "-connect", where, "-CAfile", tls_files.ca, "-verify_return_error"]
    with Process([*argv, "-quiet", "-no_ign_eof"]) as client:
        server = _accepted(thread, outcome)
        server.send_all(b"hello s_client\n")
        client.read_until(b"hello s_client\n")
        client.write(b"hello enchufe\n")
        assert server.recv(timeout=10) == b"hello enchufe\n"
        client.close_stdin()  # s_client sends close_notify at the end of its input
        assert server.recv(timeout=10) == b""
        assert server.ended
        assert client.wait() == 0
        server.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_open_connection_over_udp_with_tls_is_dtls(
    listeners: list[Listener], tls_files: TlsFiles, loopback: str, trusted: bool
) -> None:
    _needs_pyopenssl()
    from enchufe.net.connect import open_connection

    thread, outcome = _acceptin_thread(listeners, tls_files)
    target = InetAddress(loopback, listeners[0].address.port)  # type: ignore[union-attr]
    if not trusted:
        with pytest.raises(CertificateError):  # tls=True trusts the system's CAs, which never issued the test's
            open_connection(target, transport="datagram", tls=True, timeout=10)
        thread.join()
        return
    context = dtls_client_context(cafile=tls_files.ca)
    with open_connection(target, transport="datagram", tls=context, timeout=10) as conn:
        server = _accepted(thread, outcome)
        assert isinstance(conn.stream, DtlsStream)
        conn.send_all(b"over DTLS")
        assert server.recv(timeout=5) == b"over DTLS"
        server.close()


def test_a_context_of_the_other_kind_is_a_type_error(tls_files: TlsFiles) -> None:
    _needs_pyopenssl()
    from enchufe.net.connect import open_connection
    from enchufe.net.tls import client_context

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        with pytest.raises(TypeError, match="DtlsContext"):
            open_connection(InetAddress("127.0.0.1", peer.getsockname()[1]), transport="datagram", tls=client_context())
