"""What a client needs to judge a certificate it did not verify: default_trusted_subjects(),
the names of every CA load_default_certs() trusts (the CA directory's included, read when
first looked up), and peer_chain(), the certificates the server sent after its own."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enchufe.net.tls import TlsStream, client_context, default_trusted_subjects, peer_chain, server_context
from enchufe.proto.x509 import Certificate, problems
from support.certificates import Issued, handshaken, issue, verify_by_handshake

pytestmark = pytest.mark.timeout(30)


def test_every_ca_of_the_system_file_is_there() -> None:
    context = ssl.create_default_context()
    subjects = default_trusted_subjects()
    for der in context.get_ca_certs(binary_form=True):
        assert Certificate(der).subject in subjects
    assert Certificate(issue("nobody's CA", ca=True).der).subject not in subjects


def _hashed_directory(directory: Path, *pems: bytes) -> Path:
    """An OpenSSL CA directory holding ``pems``, each under its subject's hash."""
    directory.mkdir()
    for pem in pems:
        digest = subprocess.run(
            ["openssl", "x509", "-noout", "-subject_hash"], input=pem, capture_output=True, check=True, timeout=30
        )
        (directory / f"{digest.stdout.decode().strip()}.0").write_bytes(pem)
    (directory / "README").write_text("not a certificate")
    return directory


def test_the_ca_directory_counts_though_get_ca_certs_leaves_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_file = issue("CA in the file", ca=True)
    in_directory = issue("CA in the directory", ca=True)
    (tmp_path / "cafile.pem").write_bytes(in_file.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cafile.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(_hashed_directory(tmp_path / "certs", in_directory.pem)))
    context = ssl.create_default_context()
    assert [Certificate(der).subject for der in context.get_ca_certs(binary_form=True)] == [
        Certificate(in_file.der).subject
    ]
    leaf = issue("localhost", issuer=in_directory, dns=["localhost"])
    assert verify_by_handshake(tmp_path, [leaf], [], "localhost", default_trust=True) is None  # OpenSSL trusts it
    subjects = default_trusted_subjects()
    assert Certificate(in_file.der).subject in subjects
    assert Certificate(in_directory.der).subject in subjects


def test_the_cas_are_read_at_the_first_look_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = issue("CA before", ca=True), issue("CA after", ca=True)
    (tmp_path / "before.pem").write_bytes(before.pem)
    (tmp_path / "after.pem").write_bytes(after.pem)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "before.pem"))
    subjects = default_trusted_subjects()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "after.pem"))
    assert Certificate(after.der).subject in subjects
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "before.pem"))
    assert Certificate(before.der).subject not in subjects  # read once


def _connect(tmp_path: Path, sent: list[Issued]) -> tuple[TlsStream, TlsStream]:
    """A client that verifies nothing, and a server sending ``sent``, handshaken."""
    (tmp_path / "chain.pem").write_bytes(b"".join(issued.pem for issued in sent))
    (tmp_path / "key.pem").write_bytes(sent[0].key_pem)
    server = server_context(str(tmp_path / "chain.pem"), str(tmp_path / "key.pem"))
    return handshaken(server, client_context(verify=False), "localhost")


@pytest.mark.skipif(sys.version_info < (3, 13), reason="ssl has get_unverified_chain() from Python 3.13")
def test_the_chain_a_server_sent_shows_a_missing_or_unknown_issuer(tmp_path: Path) -> None:
    root = issue("Private Root", ca=True)
    intermediate = issue("Private Intermediate", issuer=root, ca=True)
    leaf = issue("localhost", issuer=intermediate, dns=["localhost"])
    trusted = {Certificate(root.der).subject}
    for sent, expected in (
        ([leaf, intermediate], []),
        ([leaf], ["unable to get local issuer certificate"]),
    ):
        client, server = _connect(tmp_path, sent)
        try:
            chain = peer_chain(client)
            assert chain == [issued.der for issued in sent[1:]]
            certificate = Certificate(client.peer_certificate or b"")
            judged = problems(
                certificate,
                host="localhost",
                now=time.time(),
                trusted_subjects=trusted,
                chain=[Certificate(der) for der in chain],
            )
            assert judged == expected
        finally:
            client.close()
            server.close()


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="ssl has get_unverified_chain() from Python 3.13")
def test_before_python_3_13_the_chain_is_not_known(tmp_path: Path) -> None:
    leaf = issue("localhost", dns=["localhost"])
    client, server = _connect(tmp_path, [leaf])
    try:
        assert peer_chain(client) is None
    finally:
        client.close()
        server.close()
