"""Certificates for TLS tests, made by trustme: a CA and what it issued.

``tls_files`` (session-wide) holds PEM files on disk, as the command and the real
peers (openssl, ncat, socat, curl) want them:

- ``ca``: the CA's certificate, to trust;
- ``server``: a certificate for ``localhost``, ``127.0.0.1`` and ``::1`` with its key;
- ``server_cert`` and ``server_key``: the same, as two files;
- ``client``: a client certificate with its key;
- ``expired``: a certificate for the same names that expired a year ago;
- ``wrong_name``: a certificate the CA issued for ``other.example`` alone, with its key;
- ``other_ca``: a second CA's certificate, which issued none of the above.

``tls_client(port)`` is a client of the command under test that checks nothing;
``half_a_hello()`` the first half of a ClientHello, for a client that stalls.
:func:`in_thread` runs one end of a handshake while the test drives the other.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from support.cli_e2e import STEP_TIMEOUT

__all__ = ["TlsFiles", "half_a_hello", "in_thread", "tls_client", "tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    server: str
    server_cert: str
    server_key: str
    client: str
    expired: str
    wrong_name: str
    other_ca: str

    @property
    def listener_options(self) -> tuple[str, ...]:
        """The command's options for a listener presenting ``server``."""
        return ("--ssl-cert", self.server_cert, "--ssl-key", self.server_key)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA(organization_name="enchufe tests")
    names = ("localhost", "127.0.0.1", "::1")
    server = ca.issue_cert(*names, organization_name="enchufe test server")
    client = ca.issue_cert("client@example.test", organization_name="enchufe test client")
    expired = ca.issue_cert(*names, not_after=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=365))
    wrong_name = ca.issue_cert("other.example", organization_name="enchufe test server")
    other_ca = trustme.CA(organization_name="nobody trusts this")

    def write(name: str, blob: trustme.Blob | bytes) -> str:
        path = Path(directory, name)
        path.write_bytes(blob if isinstance(blob, bytes) else blob.bytes())
        return str(path)

    yield TlsFiles(
        ca=write("ca.pem", ca.cert_pem),
        server=write("server.pem", server.private_key_and_cert_chain_pem),
        server_cert=write("server-cert.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems)),
        server_key=write("server-key.pem", server.private_key_pem),
        client=write("client.pem", client.private_key_and_cert_chain_pem),
        expired=write("expired.pem", expired.private_key_and_cert_chain_pem),
        wrong_name=write("wrong-name.pem", wrong_name.private_key_and_cert_chain_pem),
        other_ca=write("other-ca.pem", other_ca.cert_pem),
    )


def tls_client(port: int, *, alpn: list[str] | None = None, suppress_ragged_eofs: bool = True) -> ssl.SSLSocket:
    """A TLS client of 127.0.0.1:``port`` that verifies nothing, handshake done.
    ``suppress_ragged_eofs=False``: a server that ends without close_notify makes
    ``recv`` raise ``SSLEOFError`` rather than return ``b""``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
    return context.wrap_socket(raw, suppress_ragged_eofs=suppress_ragged_eofs)


def half_a_hello() -> bytes:
    """The first half of a real TLS ClientHello: a client that stalls in the middle."""
    outgoing = ssl.MemoryBIO()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # the hello is out, the answer awaited
        tls.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def in_thread(work: Callable[[], object], name: str = "tls-peer") -> tuple[threading.Thread, dict[str, object]]:
    """Start ``work`` in a thread; once joined, the dict holds its ``"value"`` or its
    ``"error"``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, outcome
