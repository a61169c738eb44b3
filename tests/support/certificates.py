"""Certificates made to order, and a real TLS handshake in memory to judge them by.

- :func:`issue`: a certificate (cryptography's builder) with any subject, issuer,
  names, dates and string types, signed by a given issuer or by itself.
- :func:`openssl_req`: a self-signed certificate made by the ``openssl req`` command.
- :func:`openssl_fields`: what ``openssl x509`` prints of a certificate.
- :func:`verify_by_handshake`: the outcome of a verifying TLS handshake (Python's
  ``ssl``, OpenSSL underneath) between a server presenting a chain and a client
  trusting some CAs, run over memory BIOs: no socket, no thread.
- :func:`handshaken`: enchufe's client and server ``TlsStream`` over a socket pair.
- :data:`AWKWARD_NAME`: a name with every shape ncat's one-line text has.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from enchufe.net.stream import SocketStream
from enchufe.net.tls import TlsStream, start_tls
from support.tls import in_thread

__all__ = [
    "AWKWARD_NAME",
    "Issued",
    "attribute",
    "common_name",
    "handshaken",
    "issue",
    "openssl_fields",
    "openssl_req",
    "verify_by_handshake",
]

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate (DER) and its private key."""

    der: bytes
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return ssl.DER_cert_to_PEM_cert(self.der).encode()

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def attribute(oid: x509.ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute:
    return x509.NameAttribute(oid, value, kind) if kind is not None else x509.NameAttribute(oid, value)


#: A name of every shape ncat's text has: several attributes in a part, attributes
#: without a short name or with three capitals, BMP and Universal strings, a "/" and a
#: control character in values.
AWKWARD_NAME = x509.Name(
    [
        x509.RelativeDistinguishedName(
            [attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit"), attribute(NameOID.USER_ID, "xyz")]
        ),
        x509.RelativeDistinguishedName([attribute(x509.ObjectIdentifier("1.2.3.4"), "foo")]),
        x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATION_NAME, "BMP Org", _ASN1Type.BMPString)]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "x/Y=z")]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "x/YZ=z")]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "x, O=w")]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "tab\there")]),
        x509.RelativeDistinguishedName([attribute(NameOID.LOCALITY_NAME, "univ", _ASN1Type.UniversalString)]),
        x509.RelativeDistinguishedName([attribute(NameOID.GIVEN_NAME, "gn")]),
        x509.RelativeDistinguishedName(
            [attribute(NameOID.SURNAME, "sn"), attribute(NameOID.TITLE, "t"), attribute(NameOID.PSEUDONYM, "p")]
        ),
        x509.RelativeDistinguishedName([attribute(NameOID.INN, "123")]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "x/ABC=z")]),
        x509.RelativeDistinguishedName([attribute(NameOID.DOMAIN_COMPONENT, "dc")]),
        x509.RelativeDistinguishedName([attribute(x509.ObjectIdentifier("2.999.3"), "big arc")]),
    ]
)


def common_name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def issue(
    subject: x509.Name | str,
    *,
    issuer: Issued | None = None,
    issuer_name: x509.Name | None = None,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + DAY,
    ca: bool = False,
    key_identifiers: bool = True,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """A certificate for ``subject`` signed by ``issuer`` (by itself when ``None``).

    ``issuer_name`` writes another encoding of the issuer's name into the certificate;
    ``key_identifiers`` adds the subject and authority key identifiers; ``key`` is the
    subject's key (a new one when ``None``).
    """
    name = common_name(subject) if isinstance(subject, str) else subject
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer is not None else key
    if issuer_name is None:
        issuer_name = x509.load_der_x509_certificate(issuer.der).subject if issuer is not None else name
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns or ips:
        alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if key_identifiers:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return Issued(builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER), key)


def openssl_req(directory: Path, name: str, *args: str, key: str = "ec") -> Path:
    """A self-signed certificate made by ``openssl req -x509`` with ``args`` (``-subj``,
    ``-addext``, ...): ``key`` is ``ec`` (P-256) or ``rsa`` (2048 bits)."""
    certificate = directory / f"{name}.pem"
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["-newkey", "rsa:2048"]
    outputs = ["-keyout", str(directory / f"{name}-key.pem"), "-out", str(certificate)]
    subprocess.run(
        ["openssl", "req", "-x509", *key_options, "-nodes", "-days", "30", "-utf8", *args, *outputs],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return certificate


@dataclass(frozen=True)
class OpensslFields:
    subject: str
    issuer: str
    not_before: int
    not_after: int
    fingerprint: str
    alt_names: str


def openssl_fields(certificate: bytes) -> OpensslFields:
    """What ``openssl x509`` prints of a certificate (PEM or DER): the names in the
    ``compat`` form (``/O=Acme Org/CN=localhost``), the dates in POSIX seconds, the
    SHA-1 fingerprint and the subjectAltName line."""
    form = "PEM" if certificate.startswith(b"-----") else "DER"
    command = ["openssl", "x509", "-inform", form, "-noout", "-nameopt", "compat"]
    command += ["-subject", "-issuer", "-startdate", "-enddate", "-fingerprint", "-sha1", "-ext", "subjectAltName"]
    result = subprocess.run(command, input=certificate, capture_output=True, check=True, timeout=30)
    lines = result.stdout.decode("latin-1").splitlines()
    fields = dict(line.split("=", 1) for line in lines[:5])
    alt_names = lines[6].strip() if len(lines) > 6 else ""
    return OpensslFields(
        subject=fields["subject"],
        issuer=fields["issuer"],
        not_before=_openssl_time(fields["notBefore"]),
        not_after=_openssl_time(fields["notAfter"]),
        fingerprint=fields["sha1 Fingerprint"],
        alt_names=alt_names,
    )


def _openssl_time(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%b %d %H:%M:%S %Y GMT"))


def verify_by_handshake(
    directory: Path, chain: Sequence[Issued], trusted: Sequence[Issued], host: str, *, default_trust: bool = False
) -> str | None:
    """Run a TLS handshake in which the server presents ``chain`` (its certificate
    first) and the client verifies it against ``trusted`` (and the system's CAs with
    ``default_trust``) for ``host``. ``None`` when it verifies; else OpenSSL's reason
    (``self-signed certificate``), or Python's for a host name mismatch."""
    chain_file = directory / "chain.pem"
    key_file = directory / "key.pem"
    chain_file.write_bytes(b"".join(issued.pem for issued in chain))
    key_file.write_bytes(chain[0].key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trusted:
        client_context.load_verify_locations(cadata=b"".join(issued.pem for issued in trusted).decode())
    if default_trust:
        client_context.load_default_certs()
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=host)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        try:
            client.do_handshake()
            return None
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message
        server_in.write(client_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        client_in.write(server_out.read())
    raise AssertionError("the handshake did not end")


def handshaken(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> tuple[TlsStream, TlsStream]:
    """A client and a server :class:`TlsStream` over a socket pair, their handshake
    done (the client asking for ``host``); the caller closes both."""
    ours, theirs = socket.socketpair()
    thread, outcome = in_thread(lambda: start_tls(SocketStream(theirs), server, server_side=True, timeout=10))
    try:
        client_stream = start_tls(SocketStream(ours), client, server_hostname=host, timeout=10)
    finally:
        thread.join()
    server_stream = outcome.get("value")
    assert isinstance(server_stream, TlsStream), outcome
    return client_stream, server_stream
