"""``--udp --ssl`` (DTLS) in connect mode and single-shot listen, end to end.

The peers are enchufe's own DTLS streams (:mod:`enchufe.net.dtls`) driven by the test;
openssl's and ncat's are in tests/interop/test_dtls_interop.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from enchufe.net.dtls import NEEDS_PYOPENSSL, accept_dtls, dtls_client_context, dtls_server_context, start_dtls
from enchufe.net.listen import Listener, close_all, open_listeners
from enchufe.net.stream import SocketStream
from support.cli_e2e import STEP_TIMEOUT
from support.procs import ENCHUFE, enchufe, free_port
from support.tls import TlsFiles

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _needs_pyopenssl() -> None:
    pytest.importorskip("OpenSSL")


class DtlsServer:
    """A one-client DTLS server in a thread (enchufe's accept_dtls): it sends
    ``reply``, then reads one datagram and ends with close_notify."""

    def __init__(self, certfile: str, reply: bytes) -> None:
        self.listeners: list[Listener] = open_listeners(port=0, transport="datagram", family=socket.AF_INET)
        self.port: int = self.listeners[0].address.port  # type: ignore[union-attr]
        self.context = dtls_server_context(certfile)
        self.reply = reply
        self.received: bytes | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="dtls-server")
        self.thread.start()

    def _serve(self) -> None:
        try:
            stream = accept_dtls(self.listeners, self.context, timeout=STEP_TIMEOUT)
            try:
                stream.handshake(timeout=STEP_TIMEOUT)
                stream.send_all(self.reply)
                self.received = stream.recv(timeout=STEP_TIMEOUT)
            finally:
                stream.close()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def close(self) -> None:
        self.thread.join(STEP_TIMEOUT)
        close_all(self.listeners)


@pytest.fixture
def dtls_server(tls_files: TlsFiles) -> Iterator[DtlsServer]:
    server = DtlsServer(tls_files.server, b"hello from the server\n")
    yield server
    server.close()


def test_connect_mode_is_a_dtls_client_both_ways(dtls_server: DtlsServer, tls_files: TlsFiles) -> None:
    args = ["-v", "-u", "--ssl", "--ssl-trustfile", tls_files.ca, "--ssl-servername", "localhost"]
    with enchufe(*args, "127.0.0.1", str(dtls_server.port)) as proc:
        assert proc.read_stdout(len(b"hello from the server\n")) == b"hello from the server\n"
        proc.write(b"hello from enchufe\n")
        assert proc.wait() == 0  # the server's close_notify ends the session, as ncat's does
    dtls_server.close()
    assert dtls_server.error is None
    assert dtls_server.received == b"hello from enchufe\n"
    assert f"enchufe: SSL connection to 127.0.0.1:{dtls_server.port}. enchufe test server" in proc.stderr_lines
    assert any(line.startswith("enchufe: SHA-1 fingerprint: ") for line in proc.stderr_lines)


def test_an_untrusted_server_fails_with_one_line(dtls_server: DtlsServer, tls_files: TlsFiles) -> None:
    with enchufe("-u", "--ssl-trustfile", tls_files.other_ca, "127.0.0.1", str(dtls_server.port)) as proc:
        assert proc.wait() == 1
    assert proc.stderr_lines == ["enchufe: Certificate verification failed (unable to get local issuer certificate)."]
    dtls_server.close()
    assert dtls_server.received is None


def test_a_single_shot_listener_serves_the_first_client_that_passes_the_cookie_exchange(tls_files: TlsFiles) -> None:
    args = ["-v", "-u", "-l", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key, "127.0.0.1", "0"]
    with enchufe(*args) as proc:
        port = proc.listening_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as odd:
            odd.sendto(b"\x16\xfe\xfd not really a ClientHello", ("127.0.0.1", port))  # dropped, unanswered
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw.connect(("127.0.0.1", port))
            client = start_dtls(SocketStream(raw), dtls_client_context(cafile=tls_files.ca), timeout=STEP_TIMEOUT)
            proc.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.1:\d+\.$")
            proc.write(b"hello client\n")
            assert client.recv(timeout=STEP_TIMEOUT) == b"hello client\n"
            client.send_all(b"hello listener\n")
            assert proc.read_stdout(len(b"hello listener\n")) == b"hello listener\n"
            client.send_eof()  # close_notify: the listener's session ends
            assert proc.wait() == 0
            client.close()
            odd.setblocking(False)
            with pytest.raises(BlockingIOError):
                odd.recv(100)


def test_a_client_whose_handshake_fails_ends_the_listener_with_one_line(tls_files: TlsFiles) -> None:
    args = ["-v", "-u", "-l", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key, "127.0.0.1", "0"]
    with enchufe(*args) as proc:
        port = proc.listening_port()
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.connect(("127.0.0.1", port))
        with pytest.raises(Exception, match="Certificate verification failed"):
            start_dtls(SocketStream(raw), dtls_client_context(cafile=tls_files.other_ca), timeout=STEP_TIMEOUT)
        assert proc.wait() == 1
    assert proc.stderr_lines[-1] == "enchufe: Failed SSL connection from 127.0.0.1: tlsv1 alert unknown ca"


def test_dtls_with_keep_open_is_refused_with_one_line(tls_files: TlsFiles) -> None:
    args = ["-u", "-l", "-k", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key]
    result = subprocess.run([*ENCHUFE, *args, "0"], capture_output=True, timeout=STEP_TIMEOUT, check=False)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "enchufe: --udp --ssl (DTLS) with -k, --broker or --chat is not supported yet. QUITTING."
    ]


@pytest.mark.parametrize("listen", [False, True])
def test_without_pyopenssl_the_command_says_how_to_get_it(tls_files: TlsFiles, listen: bool) -> None:
    # The same command, with pyOpenSSL made unimportable.
    code = "import sys; sys.modules['OpenSSL'] = None; from enchufe.cli.main import main; sys.exit(main())"
    port = str(free_port("127.0.0.1", socket.SOCK_DGRAM))
    args = (
        ["-l", "--ssl-cert", tls_files.server, "--ssl-key", tls_files.server, port] if listen else ["127.0.0.1", port]
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "-u", "--ssl", *args], capture_output=True, timeout=STEP_TIMEOUT, check=False
    )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [f"enchufe: {NEEDS_PYOPENSSL}. QUITTING."]


def test_a_denied_sender_is_not_answered_and_does_not_use_up_the_listener(tls_files: TlsFiles) -> None:
    args = ["-v", "-u", "-l", "--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key]
    with enchufe(*args, "--allow", "127.0.0.2", "127.0.0.1", "0") as proc:
        port = proc.listening_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as denied:
            denied.sendto(b"anything at all", ("127.0.0.1", port))
            proc.wait_for_line(r"^enchufe: New connection denied: not allowed$")
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw.bind(("127.0.0.2", 0))
            raw.connect(("127.0.0.1", port))
            client = start_dtls(SocketStream(raw), dtls_client_context(verify=False), timeout=STEP_TIMEOUT)
            proc.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.2:\d+\.$")
            client.send_eof()
            assert proc.wait() == 0
            client.close()
