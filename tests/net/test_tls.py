"""TlsStream: the handshake, end of stream as TLS's own, errors, and the relay."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import sys
from collections.abc import Iterator

import pytest

from enchufe.errors import CertificateError, ConnectionLost, TimedOut, TlsError, TlsSetupError
from enchufe.net.fdstream import FdStream
from enchufe.net.relay import Relay
from enchufe.net.stream import SocketStream
from enchufe.net.tls import TlsStream, client_context, server_context, start_tls, translate_tls_error
from support.tls import TlsFiles, in_thread

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair(tls_files: TlsFiles) -> Iterator[tuple[TlsStream, TlsStream]]:
    """A client and a server TlsStream, handshaken, over a socket pair."""
    a, b = socket.socketpair()
    thread, outcome = in_thread(
        lambda: start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=10)
    )
    client = start_tls(SocketStream(a), client_context(cafile=tls_files.ca), server_hostname="localhost", timeout=10)
    thread.join()
    server = outcome["value"]
    assert isinstance(server, TlsStream)
    yield client, server
    client.close()
    server.close()


def _read_all(stream: TlsStream) -> bytes:
    chunks = []
    while chunk := stream.recv():
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_handshake_settles_version_cipher_and_certificate(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    assert client.version == server.version == "TLSv1.3"
    assert client.cipher == server.cipher
    assert client.peer_certificate is not None
    assert server.peer_certificate is None  # no client certificate asked for


def test_bytes_cross_both_ways_and_each_end_of_stream_is_a_half_close(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    upload = os.urandom(3 * 1024 * 1024)
    thread, outcome = in_thread(lambda: _read_all(server))
    client.send_all(upload)
    client.send_eof()  # close_notify: the server reads to its end ...
    thread.join()
    assert hashlib.sha256(outcome["value"]).digest() == hashlib.sha256(upload).digest()  # type: ignore[arg-type]
    server.send_all(b"still heard after your end of stream")  # ... and may still answer
    server.send_eof()
    assert _read_all(client) == b"still heard after your end of stream"
    assert not client.truncated and not server.truncated


def test_records_that_arrived_before_this_ends_send_eof_are_still_read(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    message = os.urandom(50000)
    server.send_all(message)
    first = client.recv(1, timeout=5)  # the rest of the records now wait inside TLS
    client.send_eof()  # OpenSSL's shutdown reads, and must not take them
    server.send_all(b"and more after it")
    server.send_eof()
    assert first + _read_all(client) == message + b"and more after it"


def test_a_socket_that_ends_without_close_notify_is_truncation(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    server.send_all(b"partial")
    server.raw.send_eof()  # TCP's end, without TLS's
    assert _read_all(client) == b"partial"
    assert client.truncated
    client.send_eof()  # nobody left to say close_notify to: the socket's end alone, no error


def test_with_a_context_that_fails_on_a_bare_end_sending_after_it_is_a_lost_connection(tls_files: TlsFiles) -> None:
    """A context made elsewhere, without OP_IGNORE_UNEXPECTED_EOF: OpenSSL refuses to
    write once the socket ended without close_notify; the peer is gone, as for a TCP
    send to a closed peer, which a relay takes quietly."""
    a, b = socket.socketpair()
    thread, outcome = in_thread(
        lambda: start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=10)
    )
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    strict.check_hostname, strict.verify_mode = False, ssl.CERT_NONE
    client = start_tls(SocketStream(a), strict, timeout=10)
    thread.join()
    server = outcome["value"]
    assert isinstance(server, TlsStream)
    server.raw.send_eof()
    assert _read_all(client) == b""
    assert client.truncated
    with pytest.raises(ConnectionLost) as refused:
        client.send_all(b"too late")
    assert str(refused.value) == "Broken pipe"
    client.close()
    server.close()


def test_the_location_in_the_ssl_module_is_not_part_of_the_reason() -> None:
    error = translate_tls_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"))
    assert str(error) == "EOF occurred in violation of protocol"


def test_decrypted_data_is_pending_before_the_socket_is_readable(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    server.send_all(b"x" * 40000)  # several records in one go
    assert client.recv(10, timeout=5) == b"x" * 10
    assert client.pending() > 0
    assert client.recv(40000, timeout=0)  # without waiting for the socket


def test_several_records_come_in_one_recv_and_an_end_behind_them_stays_pending(
    pair: tuple[TlsStream, TlsStream],
) -> None:
    client, server = pair
    server.send_all(b"x" * 40000)  # three records, in the socket's buffer once this returns
    server.send_eof()  # close_notify, and the socket stays open: the peer waits for ours
    assert client.recv(65536, timeout=5) == b"x" * 40000
    assert client.pending()  # the end is known: a relay must not wait for the socket
    assert client.recv(timeout=0) == b""


def test_a_relay_delivers_what_tls_has_already_decrypted(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    message = b"".join(b"line %d\n" % n for n in range(5000))
    server.send_all(message)  # and nothing more for now: the socket goes quiet
    assert client.recv(1, timeout=5) == message[:1]  # the rest sits inside TLS, decrypted or not
    out_read, out_write = os.pipe()
    in_read, in_write = os.pipe()  # a local input with nothing to say
    local = FdStream(in_read, out_write, owns_fds=True)
    relay = Relay(local, client)
    running, outcome = in_thread(relay.run)
    output = b""
    poller = select.poll()
    poller.register(out_read, select.POLLIN)
    while len(output) < len(message) - 1 and poller.poll(5000):
        output += os.read(out_read, 65536)
    server.send_eof()
    running.join()
    local.close()
    os.close(in_write)
    os.close(out_read)
    assert output == message[1:]
    assert outcome["value"].ending == "remote-eof"  # type: ignore[attr-defined]


def test_an_untrusted_certificate_fails_with_the_reason_and_the_certificate(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    thread, outcome = in_thread(
        lambda: start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=10)
    )
    with pytest.raises(CertificateError) as caught:
        start_tls(SocketStream(a), client_context(cafile=tls_files.other_ca), server_hostname="localhost", timeout=10)
    thread.join()
    assert isinstance(outcome["error"], TlsError)  # the server heard the client's alert
    assert caught.value.reason == "unable to get local issuer certificate"
    assert str(caught.value) == "Certificate verification failed (unable to get local issuer certificate)"
    if sys.version_info >= (3, 13):  # before it, ssl keeps no certificate it could not verify
        assert caught.value.certificate is not None
        ssl.DER_cert_to_PEM_cert(caught.value.certificate)  # a whole certificate


def test_a_name_the_certificate_does_not_carry_fails(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    thread, _ = in_thread(
        lambda: start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=10)
    )
    with pytest.raises(CertificateError) as refused:
        start_tls(SocketStream(a), client_context(cafile=tls_files.ca), server_hostname="example.test", timeout=10)
    thread.join()
    # OpenSSL's sentence, without its full stop: the caller ends the sentence.
    assert str(refused.value) == (
        "Certificate verification failed (Hostname mismatch, certificate is not valid for 'example.test')"
    )


def test_plaintext_to_a_tls_server_fails_its_handshake(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    a.sendall(b"GET / HTTP/1.0\r\n\r\n")
    with pytest.raises(TlsError) as caught:
        start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=10)
    assert not isinstance(caught.value, CertificateError)
    assert "wrong version number" in str(caught.value) or "http request" in str(caught.value)
    a.close()


def test_a_silent_peer_times_the_handshake_out(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    with pytest.raises(TimedOut):
        start_tls(SocketStream(b), server_context(tls_files.server), server_side=True, timeout=0.2)
    a.close()


def test_a_peer_that_closes_during_the_handshake_is_a_tls_error(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    a.close()
    with pytest.raises(TlsError, match="closed the connection during the TLS handshake"):
        start_tls(SocketStream(b), client_context(verify=False), timeout=10)


def test_alpn_picks_the_servers_first_choice_among_the_clients(tls_files: TlsFiles) -> None:
    a, b = socket.socketpair()
    thread, outcome = in_thread(
        lambda: start_tls(
            SocketStream(b), server_context(tls_files.server, alpn=["h2", "http/1.1"]), server_side=True, timeout=10
        )
    )
    client = start_tls(SocketStream(a), client_context(verify=False, alpn=["http/1.1", "h2"]), timeout=10)
    thread.join()
    server = outcome["value"]
    assert isinstance(server, TlsStream)
    assert client.alpn_protocol == server.alpn_protocol == "h2"
    client.close()
    server.close()


def test_a_missing_certificate_file_is_a_setup_error_naming_it() -> None:
    with pytest.raises(TlsSetupError, match=r"nowhere\.pem: No such file or directory"):
        server_context("/nowhere.pem")


def test_a_cipher_list_openssl_rejects_is_a_setup_error() -> None:
    with pytest.raises(TlsSetupError, match="Unable to set OpenSSL cipher list: No cipher can be selected"):
        client_context(ciphers="BOGUS")


def test_a_peer_that_half_closes_without_close_notify_still_gets_the_answer(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair  # the server plays ncat 7.93's client: its stdin's end is TCP's alone
    server.send_all(b"question\n")
    server.raw.send_eof()
    assert _read_all(client) == b"question\n"
    assert client.truncated
    client.send_all(b"answer\n")  # TLS still works this way round
    client.send_eof()
    assert _read_all(server) == b"answer\n"
    assert not server.truncated


def test_close_notify_and_the_socket_end_in_one_read_is_no_truncation(pair: tuple[TlsStream, TlsStream]) -> None:
    client, server = pair
    server.send_all(b"all of it")
    server.send_eof()  # close_notify, then TCP's end
    assert client.recv(9, timeout=5) == b"all of it"
    assert _read_all(client) == b""
    assert not client.truncated
