"""``--udp --ssl`` (DTLS) against real peers: openssl s_server/s_client -dtls, and
Debian's ncat 7.93, whose DTLS client is there (7.60+) but not its listener (7.94+:
``Ncat: DTLS is not supported in listen mode``)."""

from __future__ import annotations

import socket

import pytest

from support.interop import free_port, start
from support.procs import enchufe
from support.tls import TlsFiles

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _needs_pyopenssl() -> None:
    pytest.importorskip("OpenSSL")


def _listener_args(tls_files: TlsFiles) -> list[str]:
    return ["-v", "-u", "-l", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key, "127.0.0.1", "0"]


def test_enchufe_client_with_openssl_s_server(tls_files: TlsFiles) -> None:
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    s_server = ["openssl", "s_server", "-dtls", "-accept", f"127.0.0.1:{port}", "-cert", tls_files.server]
    with start([*s_server, "-naccept", "1"]) as server:
        server.read_until(b"ACCEPT\n")
        client_args = ["-v", "-u", "--ssl-verify", "--ssl-trustfile", tls_files.ca, "--ssl-servername", "localhost"]
        with enchufe(*client_args, "127.0.0.1", str(port)) as client:
            client.write(b"hello s_server\n")
            server.read_until(b"hello s_server\n")
            server.write(b"hello enchufe\n")
            assert client.read_stdout(len(b"hello enchufe\n")) == b"hello enchufe\n"
            client.close_stdin()  # close_notify: s_server ends its session, and with -naccept 1 itself
            assert server.wait() == 0
            client.kill()  # enchufe -u, as ncat -u, waits for more datagrams after its stdin ends


def test_openssl_s_client_with_enchufe_listener(tls_files: TlsFiles) -> None:
    with enchufe(*_listener_args(tls_files)) as listener:
        port = listener.listening_port()
        s_client = ["openssl", "s_client", "-dtls", "-connect", f"127.0.0.1:{port}", "-CAfile", tls_files.ca]
        with start([*s_client, "-verify_return_error", "-quiet", "-no_ign_eof"]) as client:
            listener.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.1:\d+\.$")
            listener.write(b"hello s_client\n")
            client.read_until(b"hello s_client\n")
            client.write(b"hello enchufe\n")
            assert listener.read_stdout(len(b"hello enchufe\n")) == b"hello enchufe\n"
            client.close_stdin()  # s_client's close_notify ends the listener's session
            assert listener.wait() == 0
            assert client.wait() == 0


def test_ncat_client_with_enchufe_listener(tls_files: TlsFiles) -> None:
    # ncat 7.93 sends its ClientHello in 256-byte fragments and never retransmits: the
    # fragments that reach the listener before it connects to ncat must not be lost.
    with enchufe(*_listener_args(tls_files)) as listener:
        port = listener.listening_port()
        with start(["ncat", "-v", "-u", "--ssl", "127.0.0.1", str(port)]) as client:
            client.wait_for_line(rf"^Ncat: SSL connection to 127\.0\.0\.1:{port}\.")
            listener.write(b"hello ncat\n")
            assert client.read_stdout(len(b"hello ncat\n")) == b"hello ncat\n"
            client.write(b"hello enchufe\n")
            assert listener.read_stdout(len(b"hello enchufe\n")) == b"hello enchufe\n"


@pytest.mark.parametrize(
    ("client", "line"),
    [
        ("enchufe", "enchufe: Certificate verification failed (unable to get local issuer certificate)."),
        ("ncat", "Ncat: Input/output error."),  # 7.93 over DTLS does not say why
    ],
)
def test_an_untrusted_s_server_fails_the_client(tls_files: TlsFiles, client: str, line: str) -> None:
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    s_server = ["openssl", "s_server", "-dtls", "-accept", f"127.0.0.1:{port}", "-cert", tls_files.server]
    with start([*s_server, "-naccept", "1"]) as server:
        server.read_until(b"ACCEPT\n")
        args = ["-u", "--ssl-trustfile", tls_files.other_ca, "127.0.0.1", str(port)]
        with enchufe(*args) if client == "enchufe" else start(["ncat", *args]) as proc:
            assert proc.wait() == 1
    assert proc.stderr_lines == [line]
