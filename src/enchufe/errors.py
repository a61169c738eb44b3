"""The exception tree of enchufe.

Every error enchufe raises on purpose is an :class:`EnchufeError`. Each class also
inherits the builtin exception it resembles, so code that knows nothing about
enchufe keeps working: a :class:`ConnectError` is a :class:`ConnectionError`, every
:class:`TimedOut` is a :class:`TimeoutError`, an :class:`UnexpectedEOF` is an
:class:`EOFError`, an :class:`AddressError` is a :class:`ValueError`, and so is a
:class:`ReceiveLimitExceeded` (the peer sent bad input).

::

    EnchufeError
    ├── AddressError (ValueError)          bad host:port, port, unix path or time value
    ├── MalformedCertificate (ValueError)  bytes that are not a DER X.509 certificate
    ├── ProtocolError (ValueError)         a peer's bytes break a protocol (HTTP, SOCKS)
    ├── OutputFailed (OSError)             the local side refused received data (stdout)
    ├── WorkersFailed (RuntimeError)       worker processes kept ending: their supervisor gave up
    └── NetworkError (OSError)             .errno keeps the system's error number
        ├── ResolveError                   the name does not resolve
        ├── Unsupported                    the kernel lacks the protocol (SCTP, raw sockets)
        ├── BindError                      bind or listen failed
        ├── ConnectError (ConnectionError) every address refused or was unreachable
        ├── ProxyError (ConnectionError)   a proxy refused the tunnel or broke its protocol
        ├── ConnectionLost (ConnectionError)  reset or broken pipe during a transfer
        ├── StreamClosed                   the stream was used after close()
        ├── UnexpectedEOF (EOFError)       the peer closed before a read was satisfied
        ├── ReceiveLimitExceeded (ValueError)  no delimiter within a read's size limit
        ├── TlsError                       the TLS (or DTLS) handshake or a record failed
        │   ├── CertificateError           the peer's certificate did not verify
        │   └── TlsSetupError              a certificate, key or cipher list that does not load
        └── TimedOut (TimeoutError)
            ├── ConnectTimeout             connect timeout (ncat's -w)
            ├── IdleTimeout                no traffic for the idle timeout (ncat's -i)
            └── ReceiveTimeout             a read's deadline passed

``OSError`` from the operating system is translated into this tree in exactly one
place, :func:`enchufe.net.stream.translate_os_error`.
"""

from __future__ import annotations

__all__ = [
    "AddressError",
    "BindError",
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "EnchufeError",
    "IdleTimeout",
    "MalformedCertificate",
    "NetworkError",
    "OutputFailed",
    "ProtocolError",
    "ProxyError",
    "ReceiveLimitExceeded",
    "ReceiveTimeout",
    "ResolveError",
    "StreamClosed",
    "TimedOut",
    "TlsError",
    "TlsSetupError",
    "UnexpectedEOF",
    "Unsupported",
    "WorkersFailed",
]


class EnchufeError(Exception):
    """Base class of every error enchufe raises on purpose."""


class AddressError(EnchufeError, ValueError):
    """A host, port, address or time value could not be parsed or is out of range."""


class MalformedCertificate(EnchufeError, ValueError):
    """Bytes given as a certificate are not a DER X.509 certificate, or break its rules
    (:mod:`enchufe.proto.x509`): cut short, a wrong type, an impossible date."""


class ProtocolError(EnchufeError, ValueError):
    """A peer's bytes break the rules of a protocol enchufe parses (an HTTP request or
    response, a SOCKS message): the one error every sans-IO parser in
    :mod:`enchufe.proto` raises for bad input.

    Attributes:
        status: for an HTTP request a proxy server refuses, the status code to answer
            with (400, 405, 413, ...); ``None`` otherwise.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OutputFailed(EnchufeError, OSError):
    """Writing what the remote sent to the local side failed: stdout on a full disk,
    or closed when the command started. Not the network's doing, so not a
    :class:`NetworkError` (ncat exits 2 here, not 1). A local reader that went away
    (a broken pipe) is not a failure: the relay just ends.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkersFailed(EnchufeError, RuntimeError):
    """Worker processes ended unasked more often than their supervisor allows
    (:func:`enchufe.serve.workers.run_workers`); the others were stopped. The message
    says which worker ended last, how, and the count of restarts."""


class NetworkError(EnchufeError, OSError):
    """An operation on the network failed.

    The message is meant for people; ``errno`` keeps the operating system's error
    number when there was one, and ``__cause__`` the original exception.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ResolveError(NetworkError):
    """A host name could not be resolved to an address."""


class Unsupported(NetworkError):
    """The operating system does not support the requested protocol or socket type."""


class BindError(NetworkError):
    """Binding or listening on a local address failed (in use, not permitted, ...)."""


class ConnectError(NetworkError, ConnectionError):
    """A connection could not be established to any address of the target."""


class ProxyError(NetworkError, ConnectionError):
    """A proxy did not open the tunnel: it refused (an HTTP status other than 200, a
    SOCKS reply other than success), asked for credentials it did not get or
    rejected them, or answered with bytes that are not its protocol. The message is
    ncat's, such as ``Proxy returned status code 403.``

    Attributes:
        proxy: the proxy's address, as text.
        code: the proxy's HTTP status or SOCKS reply code, when it sent one.
    """

    def __init__(self, message: str, *, proxy: str, code: int | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.code = code


class ConnectionLost(NetworkError, ConnectionError):
    """An established connection broke: reset by the peer, or a broken pipe."""


class StreamClosed(NetworkError):
    """An operation was attempted on a stream that this side already closed."""


class UnexpectedEOF(NetworkError, EOFError):
    """The peer closed its side before a read could be satisfied.

    Attributes:
        partial: the bytes received before end of file. They are also left unread in
            the connection, so a later call sees them again.
    """

    def __init__(self, message: str, *, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class ReceiveLimitExceeded(NetworkError, ValueError):
    """A delimited read found no delimiter within its size limit.

    Raised by :meth:`enchufe.net.connection.Connection.recv_until` and ``recv_line``
    when ``max_size`` bytes have arrived without the delimiter (or the first
    delimiter ends past ``max_size``), so that a peer cannot make a reader buffer
    without bound. The peer's bytes are bad input (hence ``ValueError``), not a
    broken connection: the connection is still usable.

    Attributes:
        partial: the bytes buffered when the limit was reached. Nothing is consumed:
            they stay unread in the connection, so a later call sees them again.
        limit: the ``max_size`` that was exceeded.
    """

    def __init__(self, message: str, *, partial: bytes = b"", limit: int) -> None:
        super().__init__(message)
        self.partial = partial
        self.limit = limit


class TlsError(NetworkError):
    """TLS (or DTLS) failed: the handshake (a peer that speaks no TLS, no shared
    protocol or cipher) or a record (bad MAC, a message out of place). The message is
    OpenSSL's reason, such as ``wrong version number``."""


class CertificateError(TlsError):
    """The peer's certificate did not verify: untrusted, expired, or issued for
    another name.

    Attributes:
        reason: OpenSSL's words for what failed, such as ``self-signed certificate``
            or ``Hostname mismatch, certificate is not valid for '127.0.0.1'.``
        certificate: the peer's certificate (DER), when it sent one, so that a caller
            can show what it was offered.
    """

    def __init__(self, message: str, *, reason: str, certificate: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.certificate = certificate


class TlsSetupError(TlsError):
    """A TLS context could not be made: a certificate or key file that does not load, a
    key that does not match its certificate, a cipher list OpenSSL rejects."""


class TimedOut(NetworkError, TimeoutError):
    """A deadline passed before an operation completed."""


class ConnectTimeout(TimedOut):
    """Connecting took longer than the connect timeout (ncat's ``-w``)."""


class IdleTimeout(TimedOut):
    """No data moved in either direction for the idle timeout (ncat's ``-i``)."""

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class ReceiveTimeout(TimedOut):
    """A read did not complete before its deadline.

    Attributes:
        partial: the bytes received before the deadline. They are also left unread in
            the connection, so nothing is lost: a later call sees them again.
    """

    def __init__(self, message: str, *, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial
