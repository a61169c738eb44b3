"""The temporary certificate of a TLS listener given none: made by the openssl command,
good for a real handshake, private while it exists, gone after."""

from __future__ import annotations

import datetime
import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from enchufe.errors import TlsSetupError
from enchufe.net.selfsigned import make_temporary_certificate
from enchufe.net.tls import client_context, server_context
from enchufe.proto.x509 import Certificate
from support.certificates import handshaken

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary certificates go to a directory of the test's own, to see what is left."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_a_client_that_trusts_the_certificate_verifies_it_for_each_loopback_name(host: str) -> None:
    with make_temporary_certificate() as certificate:
        server = server_context(certificate.certfile, certificate.keyfile)
        client = client_context(cafile=certificate.certfile)
    client_stream, server_stream = handshaken(server, client, host)
    try:
        client_stream.send_all(b"over TLS")
        assert server_stream.recv() == b"over TLS"
        peer = client_stream.peer_certificate
        assert peer is not None
        assert Certificate(peer).sha1_fingerprint == certificate.fingerprint
    finally:
        client_stream.close()
        server_stream.close()


def test_the_certificate_is_ec_p256_signed_with_sha256_for_a_day() -> None:
    with make_temporary_certificate() as certificate:
        pem = Path(certificate.certfile).read_bytes()
        printed = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha1"], input=pem, capture_output=True, check=True
        ).stdout.decode()
    made = x509.load_pem_x509_certificate(pem)
    public_key = made.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert isinstance(made.signature_hash_algorithm, hashes.SHA256)
    assert made.not_valid_after_utc - made.not_valid_before_utc == datetime.timedelta(days=1)
    assert made.subject.rfc4514_string() == "CN=localhost"
    assert printed.strip().removeprefix("sha1 Fingerprint=").replace(":", "") == certificate.fingerprint.replace(
        " ", ""
    )
    read = Certificate(ssl.PEM_cert_to_DER_cert(pem.decode()))
    assert read.dns_names == ("localhost",)
    assert read.ip_addresses == ("127.0.0.1", "::1")


def test_the_files_are_private_and_gone_after_remove(private_tmpdir: Path) -> None:
    certificate = make_temporary_certificate()
    assert Path(certificate.directory).parent == private_tmpdir
    assert stat.S_IMODE(os.stat(certificate.directory).st_mode) == 0o700
    for path in (certificate.certfile, certificate.keyfile):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(certificate.directory)) == sorted(
        os.path.basename(path) for path in (certificate.certfile, certificate.keyfile)
    )
    certificate.remove()
    assert list(private_tmpdir.iterdir()) == []
    certificate.remove()  # again: nothing to do, no error


def test_a_with_block_removes_the_files(private_tmpdir: Path) -> None:
    with make_temporary_certificate() as certificate:
        assert os.path.exists(certificate.keyfile)
    assert list(private_tmpdir.iterdir()) == []


def test_each_certificate_is_new() -> None:
    with make_temporary_certificate() as first, make_temporary_certificate() as second:
        assert first.directory != second.directory
        assert first.fingerprint != second.fingerprint
        assert Path(first.keyfile).read_bytes() != Path(second.keyfile).read_bytes()


def test_without_the_openssl_command_the_error_says_what_to_do(
    private_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = private_tmpdir / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(
        TlsSetupError, match=r"give a certificate and its key \(--ssl-cert and --ssl-key\), or install openssl"
    ):
        make_temporary_certificate()
    assert list(private_tmpdir.iterdir()) == [empty]


def test_a_failing_openssl_command_is_reported_with_its_last_line(
    private_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_directory = private_tmpdir / "bin"
    bin_directory.mkdir()
    broken = bin_directory / "openssl"
    broken.write_text("#!/bin/sh\necho 'req: first line' >&2\necho 'req: invalid digest' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_directory))
    with pytest.raises(TlsSetupError, match=r"^openssl could not make a temporary certificate: req: invalid digest$"):
        make_temporary_certificate()
    assert list(private_tmpdir.iterdir()) == [bin_directory]
