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

from enchufe.errors import TimedOut, TlsError, TlsSetupError
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

    Context = TypeVar("Context", ssl.SSLContext, DtlsContext)

__all__ = [
    "accept_tls",
    "check_server",
    "client_dtls",
    "client_tls",
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
    certfile, keyfile = _certificate_files(config, messages)
    return server_context(certfile, keyfile, ciphers=config.ssl_ciphers or NCAT_CIPHERS, alpn=config.ssl_alpn)


def server_dtls(config: Config, messages: Messages) -> DtlsContext:
    """A DTLS listener's context, from the same options as :func:`server_tls`'s."""
    from enchufe.net.dtls import dtls_server_context

    certfile, keyfile = _certificate_files(config, messages)
    return dtls_server_context(certfile, keyfile, ciphers=config.ssl_ciphers or NCAT_CIPHERS, alpn=config.ssl_alpn)


def _certificate_files(config: Config, messages: Messages) -> tuple[str, str | None]:
    """The listener's certificate and key files."""
    if config.ssl_cert is None:
        raise TlsSetupError("a listener without --ssl-cert and --ssl-key is not supported yet")
    return config.ssl_cert, config.ssl_key


def check_server(conn: Connection, config: Config, messages: Messages) -> None:
    """What a client says of the server it reached over TLS, with ``-v``: ncat's
    ``SSL connection to ADDRESS. ORGANIZATION`` and the certificate's SHA-1
    fingerprint."""
    stream = conn.stream
    if not isinstance(stream, TlsStream):
        from enchufe.net.dtls import DtlsStream

        assert isinstance(stream, DtlsStream)
    certificate = stream.peer_certificate
    messages.info(f"SSL connection to {conn.peer}.")
    if certificate is not None:
        messages.info(f"SHA-1 fingerprint: {_fingerprint(certificate)}")


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


def _fingerprint(certificate: bytes) -> str:
    import hashlib

    digest = hashlib.sha1(certificate).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))
