"""--ssl*: the command's TLS contexts, and what it says about certificates.

ncat's defaults: a client verifies nothing unless ``--ssl-verify`` or
``--ssl-trustfile`` is given; the cipher list is ncat's; a listener without
``--ssl-cert`` makes a temporary certificate (an EC P-256 key, milliseconds, where
ncat's 2048-bit RSA key takes up to a second). The host name is checked after the
handshake, as ncat's post-connect check does, so that a mismatch is said in ncat's
words with the names the certificate carries.

Over UDP (``--udp --ssl``) the contexts are DTLS's (:mod:`enchufe.net.dtls`, pyOpenSSL's),
from the same options.

Imported only when ``--ssl`` is given: it imports :mod:`ssl` (and, for DTLS, pyOpenSSL).
"""

from __future__ import annotations

import time

from enchufe.errors import CertificateError, MalformedCertificate, TimedOut, TlsError
from enchufe.net.connection import Connection
from enchufe.net.stream import SocketStream
from enchufe.net.tls import NCAT_CIPHERS, TlsStream, client_context, server_context, start_tls

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from typing import TypeVar

    from enchufe.address import Address
    from enchufe.cli.config import Config
    from enchufe.cli.output import Messages
    from enchufe.errors import NetworkError
    from enchufe.net.dtls import DtlsContext, DtlsStream
    from enchufe.proto.x509 import Certificate

    Context = TypeVar("Context", ssl.SSLContext, DtlsContext)

__all__ = [
    "accept_tls",
    "check_server",
    "client_dtls",
    "client_tls",
    "describe_certificate",
    "finish_dtls",
    "handshake_failure",
    "report_truncation",
    "server_dtls",
    "server_tls",
]

#: Seconds a single-shot listener's client has for its handshake (the servers' default).
_HANDSHAKE_TIMEOUT = 10.0


def client_tls(config: Config) -> ssl.SSLContext:
    """The context of a client: ncat's options, its defaults, and no name check in
    the handshake (:func:`check_server` makes it)."""
    context = _client_context(config, client_context)
    context.check_hostname = False
    return context


def client_dtls(config: Config) -> DtlsContext:
    """A DTLS client's context, from the same options as :func:`client_tls`'s; with
    ``--ssl-verify`` the name is checked in the handshake."""
    from enchufe.net.dtls import dtls_client_context

    return _client_context(config, dtls_client_context)


def _client_context(config: Config, make: Callable[..., Context]) -> Context:
    """``make`` (TLS's or DTLS's client_context) with ncat's options and defaults."""
    return make(
        verify=config.ssl_verify,
        cafile=config.ssl_trustfile,
        ciphers=config.ssl_ciphers or NCAT_CIPHERS,
        alpn=config.ssl_alpn,
        certfile=config.ssl_cert,
        keyfile=config.ssl_key,
    )


def server_tls(config: Config, messages: Messages) -> ssl.SSLContext:
    """The context of a listener: ``--ssl-cert``/``--ssl-key``, or a temporary
    certificate made now (its fingerprint said with ``-v``, as ncat does)."""
    return _listener_context(config, messages, server_context)


def server_dtls(config: Config, messages: Messages) -> DtlsContext:
    """A DTLS listener's context, from the same options as :func:`server_tls`'s."""
    from enchufe.net.dtls import dtls_server_context

    return _listener_context(config, messages, dtls_server_context)


def _listener_context(config: Config, messages: Messages, make: Callable[..., Context]) -> Context:
    """``make`` (TLS's or DTLS's server_context) with the listener's certificate: the
    one given, or a temporary one, whose files are gone once the context holds it."""
    options = {"ciphers": config.ssl_ciphers or NCAT_CIPHERS, "alpn": config.ssl_alpn}
    if config.ssl_cert is not None:
        return make(config.ssl_cert, config.ssl_key, **options)
    from enchufe.net.selfsigned import make_temporary_certificate

    messages.info("Generating a temporary EC P-256 key. Use --ssl-key and --ssl-cert to use a permanent one.")
    with make_temporary_certificate() as temporary:
        context = make(temporary.certfile, temporary.keyfile, **options)
    messages.info(f"SHA-1 fingerprint: {temporary.fingerprint}")
    return context


def check_server(conn: Connection, config: Config, messages: Messages) -> None:
    """Judge the certificate of the server a client reached, and say so as ncat does.

    With ``--ssl-verify`` OpenSSL has verified the chain; the name is checked here
    (ncat's post-connect check), and a mismatch raises :class:`CertificateError` in
    ncat's words before anything is sent. Without it, what is certainly wrong with the
    certificate (:func:`enchufe.proto.x509.problems`) is said in one line even without
    ``-v`` (ncat says it with ``-v`` only), and the connection goes on. With ``-v``:
    ncat's ``SSL connection to ADDRESS. ORGANIZATION`` and the SHA-1 fingerprint.
    """
    from enchufe.proto.x509 import Certificate, problems, sha1_fingerprint

    stream = conn.stream
    if not isinstance(stream, TlsStream):
        from enchufe.net.dtls import DtlsStream

        assert isinstance(stream, DtlsStream)
    der = stream.peer_certificate
    if der is None:  # an anonymous cipher: nothing to judge or show
        messages.info(f"SSL connection to {conn.peer}.")
        return
    host = config.ssl_servername or config.host
    try:
        certificate = Certificate(der)
    except MalformedCertificate as exc:
        messages.error(f"Certificate verification failed (the certificate cannot be read: {exc}).")
        messages.info(f"SSL connection to {conn.peer}.")
        messages.info(f"SHA-1 fingerprint: {sha1_fingerprint(der)}")
        return
    if config.ssl_verify:
        if isinstance(stream, TlsStream) and host is not None and not certificate.is_valid_for(host):
            names = ", ".join(certificate.dns_names + certificate.ip_addresses) or certificate.subject.get("CN")
            raise CertificateError(
                f'Certificate verification error: Connected to "{host}", but certificate is for "{names}"',
                reason=f"Hostname mismatch, certificate is not valid for '{host}'.",
                certificate=der,
            )
    else:
        from enchufe.net.tls import default_trusted_subjects, peer_chain

        chain = peer_chain(stream) if isinstance(stream, TlsStream) else None
        found = problems(
            certificate,
            host=host,
            now=time.time(),
            trusted_subjects=default_trusted_subjects(),
            chain=None if chain is None else [Certificate(issuer) for issuer in chain],
        )
        if found:
            describe_certificate(certificate, messages)
            messages.error(f"Certificate verification failed ({found[0]}).")
    organization = f" {certificate.organization}" if certificate.organization else ""
    messages.info(f"SSL connection to {conn.peer}.{organization}")
    messages.info(f"SHA-1 fingerprint: {certificate.sha1_fingerprint}")


def describe_certificate(certificate: Certificate | bytes | None, messages: Messages) -> None:
    """ncat's ``-v`` lines for a certificate that did not verify: its subject, its
    issuer and its SHA-1 fingerprint (nothing for one that cannot be read)."""
    from enchufe.proto.x509 import Certificate

    if isinstance(certificate, bytes):
        try:
            certificate = Certificate(certificate)
        except MalformedCertificate:
            return
    if certificate is not None:
        messages.info(f"Subject: {certificate.subject}")
        messages.info(f"Issuer: {certificate.issuer}")
        messages.info(f"SHA-1 fingerprint: {certificate.sha1_fingerprint}")


def accept_tls(conn: Connection, context: ssl.SSLContext, messages: Messages) -> Connection | None:
    """A single-shot listener's handshake with its client: the TLS connection, or None
    once the failure is said (ncat's ``Failed SSL connection from HOST: REASON``)."""
    assert isinstance(conn.stream, SocketStream)
    try:
        stream = start_tls(conn.stream, context, server_side=True, timeout=_HANDSHAKE_TIMEOUT)
    except (TlsError, TimedOut) as exc:
        messages.info(handshake_failure(conn.peer, exc))
        return None
    report_client(stream, messages)
    return Connection(stream, local=conn.local, peer=conn.peer)


def finish_dtls(conn: Connection, messages: Messages) -> Connection | None:
    """A DTLS listener's handshake with the client :func:`~enchufe.net.dtls.accept_dtls`
    found: the connection, or None once the failure is said, as :func:`accept_tls`."""
    from enchufe.net.dtls import DtlsStream

    stream = conn.stream
    assert isinstance(stream, DtlsStream)
    try:
        stream.handshake(timeout=_HANDSHAKE_TIMEOUT)
    except (TlsError, TimedOut) as exc:
        messages.info(handshake_failure(conn.peer, exc))
        return None
    report_client(stream, messages)
    return conn


def report_client(stream: TlsStream | DtlsStream, messages: Messages) -> None:
    """What a listener says of a client's handshake with ``-v``: the protocol ALPN chose."""
    if stream.alpn_protocol is not None:
        messages.info(f"ALPN protocol chosen: {stream.alpn_protocol}")


def report_truncation(conn: Connection, messages: Messages) -> None:
    """Say with ``-v`` that the peer's socket ended without TLS's ``close_notify``:
    what came is all there is, but an attacker (or a crash) could have cut it short."""
    if isinstance(conn.stream, TlsStream) and conn.stream.truncated:
        messages.info("The peer closed the connection without a TLS close_notify: the data may be truncated.")


def handshake_failure(peer: Address | None, error: NetworkError) -> str:
    """ncat's words for a client whose handshake failed (the host alone, as ncat)."""
    host = getattr(peer, "host", peer)
    return f"Failed SSL connection from {host}: {error}"
