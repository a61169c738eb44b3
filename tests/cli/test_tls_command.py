"""``--ssl*`` in connect mode, single-shot listen, ``-k -e`` and ``-z``, end to end.

The peers are Python's own ``ssl`` sockets driven by the test (the real ncat, openssl,
socat and curl are in tests/interop); certificates come from the ``tls_files`` fixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from support.cli_e2e import STEP_TIMEOUT, recv_exactly, recv_until_eof
from support.procs import enchufe, run_enchufe
from support.tls import TlsFiles, tls_client

pytestmark = pytest.mark.timeout(60)


class TlsServer:
    """A one-connection TLS server in a thread: what it received, the SNI name and
    the ALPN protocol its client asked for; it answers with ``reply`` then closes."""

    def __init__(self, context: ssl.SSLContext, reply: bytes = b"") -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.received = b""
        self.server_name: str | None = None
        self.alpn: str | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def remember_name(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            self.server_name = name

        context.sni_callback = remember_name  # type: ignore[assignment]
        self.context = context
        self.thread = threading.Thread(target=self._serve, name="tls-server")
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.listener.settimeout(STEP_TIMEOUT)
            raw, _ = self.listener.accept()
            raw.settimeout(STEP_TIMEOUT)
            # A client that ends without close_notify is an error here (SSLEOFError).
            with self.context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as conn:
                self.alpn = conn.selected_alpn_protocol()
                conn.sendall(self.reply)
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                self.received = b"".join(chunks)
                with contextlib.suppress(OSError):  # the client may be gone once it said its close_notify
                    conn.unwrap()
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join()


@pytest.fixture
def tls_server(tls_files: TlsFiles) -> Iterator[Callable[..., TlsServer]]:
    servers: list[TlsServer] = []

    def start(reply: bytes = b"", *, certfile: str | None = None, alpn: list[str] | None = None) -> TlsServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile or tls_files.server)
        if alpn:
            context.set_alpn_protocols(alpn)
        servers.append(TlsServer(context, reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fingerprint(pem_file: str) -> str:
    with open(pem_file) as file:
        pem = file.read()
    start = pem.index("-----BEGIN CERTIFICATE-----")
    digest = hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem[start:])).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, 40, 4))


# -- connect mode ------------------------------------------------------------------------


def test_connect_moves_bytes_both_ways_and_reports_the_server(
    tls_server: Callable[..., TlsServer], tls_files: TlsFiles
) -> None:
    server = tls_server(b"hello over tls\n")
    result = run_enchufe("-v", "--ssl", "127.0.0.1", str(server.port), input=b"from the client\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello over tls\n"
    assert server.done.wait(STEP_TIMEOUT)
    assert server.received == b"from the client\n"
    assert server.error is None  # the client ended with close_notify, not a bare close
    stderr = result.stderr.decode()
    assert f"enchufe: SSL connection to 127.0.0.1:{server.port}. enchufe test server\n" in stderr
    assert f"enchufe: SHA-1 fingerprint: {fingerprint(tls_files.server_cert)}" in stderr
    assert "Connected to" not in stderr


def test_connect_sends_the_target_name_by_sni_unless_told_another(tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server()
    assert run_enchufe("--ssl", "localhost", str(server.port)).returncode == 0
    assert server.server_name == "localhost"
    other = tls_server()
    assert run_enchufe("--ssl-servername", "example.test", "127.0.0.1", str(other.port)).returncode == 0
    assert other.server_name == "example.test"


def test_connect_offers_alpn(tls_server: Callable[..., TlsServer]) -> None:
    server = tls_server(alpn=["h2", "http/1.1"])
    assert run_enchufe("--ssl-alpn", "http/1.1,h2", "127.0.0.1", str(server.port)).returncode == 0
    assert server.alpn == "h2"


def test_verify_with_a_trusted_ca_passes(tls_server: Callable[..., TlsServer], tls_files: TlsFiles) -> None:
    server = tls_server(b"trusted\n")
    result = run_enchufe("--ssl-trustfile", tls_files.ca, "localhost", str(server.port))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"trusted\n"


@pytest.mark.parametrize("trust", ["other_ca", "none"])
def test_verify_refuses_an_untrusted_certificate_and_sends_nothing(
    tls_server: Callable[..., TlsServer], tls_files: TlsFiles, trust: str
) -> None:
    server = tls_server()
    args = ["--ssl-trustfile", tls_files.other_ca] if trust == "other_ca" else ["--ssl-verify"]
    result = run_enchufe(*args, "localhost", str(server.port), input=b"secret\n")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == (
        "enchufe: Certificate verification failed (unable to get local issuer certificate)."
    )
    assert b"Traceback" not in result.stderr
    assert server.done.wait(STEP_TIMEOUT)
    assert server.received == b""


def test_a_tls_client_of_a_plaintext_server_fails_with_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_in_plaintext() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 10)

        thread = threading.Thread(target=answer_in_plaintext)
        thread.start()
        result = run_enchufe("--ssl", "127.0.0.1", str(port))
        thread.join()
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enchufe: "), lines
    assert "version" in lines[0] or "record" in lines[0]


def test_zero_io_makes_the_handshake(tls_server: Callable[..., TlsServer], tls_files: TlsFiles) -> None:
    server = tls_server()
    result = run_enchufe("-z", "--ssl", "127.0.0.1", str(server.port))
    assert result.returncode == 0, result.stderr
    assert server.done.wait(STEP_TIMEOUT)
    assert server.error is None  # a whole handshake, then close_notify
    refused = tls_server()
    result = run_enchufe("-z", "--ssl-trustfile", tls_files.other_ca, "localhost", str(refused.port))
    assert result.returncode == 1  # once, at once (ncat looped: nmap/nmap#1704)


# -- listen mode -------------------------------------------------------------------------


def test_listen_with_a_certificate_serves_one_tls_client(tls_files: TlsFiles) -> None:
    with enchufe(
        "-l", "-v", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key, "127.0.0.1", "0"
    ) as cmd:
        port = cmd.listening_port()
        with tls_client(port) as client:
            client.sendall(b"up\n")
            assert cmd.read_stdout(3) == b"up\n"
            cmd.write(b"down\n")
            assert recv_exactly(client, 5) == b"down\n"
            cmd.close_stdin()  # the listener's end of stream: close_notify, and it still reads
            assert recv_until_eof(client) == b""
            client.sendall(b"after\n")
            assert cmd.read_stdout(6) == b"after\n"
            client.unwrap()
        assert cmd.wait() == 0


def test_listen_with_a_plaintext_client_fails_it_with_ncats_line(tls_files: TlsFiles) -> None:
    with enchufe(
        "-l", "-v", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key, "127.0.0.1", "0"
    ) as cmd:
        port = cmd.listening_port()
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            cmd.wait_for_line(r"Failed SSL connection from 127\.0\.0\.1: ")
        assert cmd.wait() == 1
    assert "Traceback" not in cmd.stderr


def test_listen_chooses_from_the_clients_alpn_list(tls_files: TlsFiles) -> None:
    args = ("-l", "-v", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key)
    with enchufe(*args, "--ssl-alpn", "h2,http/1.1", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with tls_client(port, alpn=["http/1.1", "h2"]) as client:
            assert client.selected_alpn_protocol() == "h2"
            cmd.wait_for_line(r"ALPN protocol chosen: h2$")
            client.unwrap()
        assert cmd.wait() == 0


def test_keep_open_exec_serves_each_tls_client_and_survives_a_plaintext_one(tls_files: TlsFiles) -> None:
    args = ("-l", "-k", "-v", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key)
    with enchufe(*args, "-e", "/bin/cat", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as plain:
            plain.sendall(b"\x00" * 100)
            cmd.wait_for_line(r"Failed SSL connection from 127\.0\.0\.1: ")
        for n in range(2):
            with tls_client(port) as client:
                client.sendall(b"echo %d\n" % n)
                assert recv_exactly(client, 7) == b"echo %d\n" % n
        assert cmd.still_running_after()
        cmd.kill()


# -- bad options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-l", "--ssl-cert", "x.pem", "0"], "The --ssl-key and --ssl-cert options must be used together."),
        (["--ssl-key", "x.pem", "localhost"], "The --ssl-key and --ssl-cert options must be used together."),
        (["-U", "--ssl", "/tmp/enchufe-none.sock"], "SSL option not supported when using Unix domain sockets."),
        (["--ssl-ciphers", "BOGUS", "127.0.0.1", "9"], "Unable to set OpenSSL cipher list: No cipher can be selected."),
        (
            ["-l", "--ssl-cert", "/nonexistent.pem", "--ssl-key", "/nonexistent.pem", "0"],
            "/nonexistent.pem: No such file or directory.",
        ),
        (["--ssl-trustfile", "/nonexistent.pem", "127.0.0.1", "9"], "/nonexistent.pem: No such file or directory."),
    ],
)
def test_bad_tls_options_are_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_enchufe(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode() == f"enchufe: {message} QUITTING.\n"


def test_a_server_that_ends_without_close_notify_is_said_to_truncate(tls_files: TlsFiles) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.server)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_then_cut() -> None:
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as conn:
                conn.sendall(b"cut short\n")
                raw_again = socket.socket(fileno=conn.detach())  # TCP's end without TLS's
                raw_again.shutdown(socket.SHUT_RDWR)
                raw_again.close()

        thread = threading.Thread(target=answer_then_cut)
        thread.start()
        proc = enchufe("-v", "--ssl", "127.0.0.1", str(port))
        with proc:
            assert proc.read_to_eof() == b"cut short\n"
            proc.close_stdin()
            assert proc.wait() == 0, proc.stderr
        thread.join()
    assert "without a TLS close_notify: the data may be truncated." in proc.stderr


# -- certificates judged without --ssl-verify, names checked with it, made on the spot ----


@pytest.mark.parametrize(
    ("certificate", "host", "problem"),
    [
        ("expired", "localhost", "certificate has expired"),
        ("server", "example.test", "Hostname mismatch, certificate is not valid for 'example.test'."),
    ],
)
def test_without_verify_a_bad_certificate_costs_one_line_and_the_connection_goes_on(
    tls_server: Callable[..., TlsServer], tls_files: TlsFiles, certificate: str, host: str, problem: str
) -> None:
    server = tls_server(b"still served\n", certfile=getattr(tls_files, certificate))
    result = run_enchufe("--ssl", "--ssl-servername", host, "127.0.0.1", str(server.port), input=b"hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"still served\n"
    if sys.version_info >= (3, 13):  # ssl shows the chain: the test CA, unknown here, is the first problem
        problem = "unable to get local issuer certificate"
    assert result.stderr.decode() == f"enchufe: Certificate verification failed ({problem}).\n"  # even without -v


def test_without_verify_a_self_signed_certificate_is_said_with_ncats_details(tls_files: TlsFiles) -> None:
    with enchufe("-l", "-v", "--ssl", "127.0.0.1", "0") as listener:  # a temporary, self-signed certificate
        made = listener.wait_for_line(r"SHA-1 fingerprint: (.*)$").group(1)
        port = listener.listening_port()
        result = run_enchufe("-v", "--ssl", "127.0.0.1", str(port))
        listener.kill()
    lines = result.stderr.decode().splitlines()
    assert lines[1:6] == [
        "enchufe: Subject: CN=localhost",
        "enchufe: Issuer: CN=localhost",
        f"enchufe: SHA-1 fingerprint: {made}",
        "enchufe: Certificate verification failed (self-signed certificate).",
        f"enchufe: SSL connection to 127.0.0.1:{port}.",
    ], lines


def test_verify_refuses_a_certificate_for_another_name_in_ncats_words(
    tls_server: Callable[..., TlsServer], tls_files: TlsFiles
) -> None:
    server = tls_server()
    result = run_enchufe("--ssl-trustfile", tls_files.ca, "--ssl-servername", "example.test", "127.0.0.1",
                         str(server.port), input=b"secret\n")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.decode() == (
        'enchufe: Certificate verification error: Connected to "example.test", '
        'but certificate is for "localhost, 127.0.0.1, ::1".\n'
    )
    assert server.done.wait(STEP_TIMEOUT)
    assert server.received == b""


def test_a_listener_without_a_certificate_makes_one_and_serves_with_it() -> None:
    with enchufe("-l", "-v", "--ssl", "127.0.0.1", "0") as cmd:
        fingerprint_line = cmd.wait_for_line(r"SHA-1 fingerprint: (.*)$")
        port = cmd.listening_port()
        with tls_client(port) as client:
            der = client.getpeercert(binary_form=True)
            assert der is not None
            digest = hashlib.sha1(der).hexdigest().upper()
            assert fingerprint_line.group(1) == " ".join(digest[i : i + 4] for i in range(0, 40, 4))
            client.sendall(b"over a made-up certificate\n")
            assert cmd.read_stdout(27) == b"over a made-up certificate\n"
            client.unwrap()
        assert cmd.wait() == 0
    assert "Generating a temporary EC P-256 key." in cmd.stderr
