"""What the real ncat (7.93) prints of a server's certificate, next to what
:mod:`enchufe.proto.x509` reads of it: the subject and issuer lines, the organization
after ``SSL connection to``, the SHA-1 fingerprint, and the verification failure ncat
meets (it checks against the system's CAs without stopping) as the first problem
:func:`~enchufe.proto.x509.problems` finds."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from enchufe.net.tls import default_trusted_subjects
from enchufe.proto.x509 import Certificate, problems
from support.certificates import AWKWARD_NAME, Issued, common_name, issue, openssl_req

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


def ncat_lines_for(certificate_file: Path, key_file: Path) -> list[str]:
    """``ncat -v --ssl`` to a server presenting the certificate: its ``Ncat:`` lines."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate_file, key_file)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with connection, context.wrap_socket(connection, server_side=True) as tls:
                while tls.recv(1024):
                    pass

        server = threading.Thread(target=serve, name="tls-server")
        server.start()
        try:
            result = subprocess.run(
                ["ncat", "-v", "--ssl", "127.0.0.1", str(port)], input=b"", capture_output=True, timeout=30
            )
        finally:
            server.join(30)
    return [line.removeprefix("Ncat: ") for line in result.stderr.decode("utf-8").splitlines()]


def _files(directory: Path, issued: Issued) -> tuple[Path, Path]:
    certificate_file, key_file = directory / "certificate.pem", directory / "key.pem"
    certificate_file.write_bytes(issued.pem)
    key_file.write_bytes(issued.key_pem)
    return certificate_file, key_file


def _openssl_made(directory: Path, subject: str) -> tuple[Path, Path]:
    return openssl_req(directory, "made", "-subj", subject), directory / "made-key.pem"


CASES = {
    "acme": lambda directory: _openssl_made(directory, "/O=Acme Org/CN=localhost"),
    "utf8": lambda directory: _openssl_made(directory, "/C=ES/O=Caf\u00e9 \u2603/OU=a\\/b+UID=x/CN=localhost"),
    "awkward": lambda directory: _files(directory, issue(AWKWARD_NAME)),
    "no-organization": lambda directory: _files(directory, issue(common_name("localhost"))),
}


@pytest.mark.parametrize("case", CASES)
def test_ncat_prints_what_x509_reads(tmp_path: Path, case: str) -> None:
    certificate_file, key_file = CASES[case](tmp_path)
    certificate = Certificate(ssl.PEM_cert_to_DER_cert(certificate_file.read_text()))
    lines = ncat_lines_for(certificate_file, key_file)
    assert f"Subject: {certificate.subject}" in lines
    assert f"Issuer: {certificate.issuer}" in lines
    assert f"SHA-1 fingerprint: {certificate.sha1_fingerprint}" in lines
    [connected] = [line for line in lines if line.startswith("SSL connection to ")]
    organization = re.sub(r"^SSL connection to [0-9.]+:[0-9]+\.", "", connected)
    if certificate.organization is None:
        assert organization == ""
    elif case != "awkward":  # a BMPString organization: ncat prints its bytes up to the first NUL
        assert organization == f" {certificate.organization}"
    judged = problems(certificate, host="127.0.0.1", now=time.time(), trusted_subjects=default_trusted_subjects())
    assert f"Certificate verification failed ({judged[0]})." in lines
