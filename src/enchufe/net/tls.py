"""TLS over a connected socket, for threads: :class:`TlsStream` and the contexts.

The TLS state is an :class:`ssl.SSLObject` over two memory BIOs, never an
``SSLSocket``: the object only turns bytes into bytes, and this module decides when the
socket is read and written. That is what lets

- **end of stream be TLS's own.** :meth:`TlsStream.send_eof` sends ``close_notify``
  and half-closes the socket, and reading goes on (ncat's ``SSL_shutdown``). The
  peer's ``close_notify`` is end of stream; a socket that ends without one is end of
  stream too, with :attr:`TlsStream.truncated` set, so a caller can say so.
- **a reader and a writer share one connection.** One thread may ``recv`` while
  others ``send_all`` (the relay's two pumps): a lock guards the TLS state, never a
  wait on the socket, so a reader waiting for the peer does not stop a writer.
  Records leave in the order TLS made them: whoever takes bytes out of the TLS
  state takes the send lock before it lets the state go.
- **plaintext already decrypted be seen.** :meth:`TlsStream.pending` counts what a
  ``recv`` returns without the socket becoming readable, which a relay waiting on
  :meth:`~TlsStream.fileno` would otherwise never read.

The rules both owners of a connection's TLS need (the blocking :class:`TlsStream`
here, the event loop's :class:`~enchufe.net.tls_transport.TlsTransport`) live in
:class:`TlsState`, which touches no socket: bytes in, bytes out, end of stream and the
traps of Python's ``ssl`` on the way. ``ssl.SSLError`` becomes
:class:`~enchufe.errors.TlsError` (a certificate that does not verify:
:class:`~enchufe.errors.CertificateError`) in :func:`translate_tls_error`.

Importing this module imports :mod:`ssl` (about 10 ms): only TLS paths import it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
import threading
import time

from enchufe.errors import (
    CertificateError,
    ConnectionLost,
    MalformedCertificate,
    NetworkError,
    StreamClosed,
    TlsError,
    TlsSetupError,
)
from enchufe.net.stream import DEFAULT_RECV_SIZE, SocketStream, remaining_time
from enchufe.proto.x509 import Certificate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from enchufe.address import Address
    from enchufe.proto.x509 import Name

__all__ = [
    "CLOSED_IN_HANDSHAKE",
    "NCAT_CIPHERS",
    "TlsState",
    "TlsStream",
    "client_context",
    "default_trusted_subjects",
    "peer_chain",
    "server_context",
    "start_tls",
    "translate_tls_error",
]

#: ncat's default ``--ssl-ciphers`` list (TLS 1.2 and older; TLS 1.3 suites are
#: OpenSSL's own defaults, as in ncat).
NCAT_CIPHERS = "ALL:!aNULL:!eNULL:!LOW:!EXP:!RC4:!MD5:@STRENGTH"

#: The most plaintext encrypted at once: TLS cuts it into 16 KiB records anyway, and a
#: bounded piece keeps what waits in the outgoing buffer bounded too. As large as the
#: relay's reads (256 KiB), so that each is one ``send``: the peer then finds more in
#: each of its reads too (benchmarks/README.md, "TLS throughput").
_WRITE_PIECE = 256 * 1024
#: Why a handshake failed when the peer's socket ended (or was reset) in the middle.
CLOSED_IN_HANDSHAKE = "the peer closed the connection during the TLS handshake"


#: A socket that ends without close_notify (ncat 7.93's client at the end of its
#: stdin, many HTTP servers) is an end of stream that leaves TLS usable, so that an
#: answer can still be sent to a peer that half-closed so; OpenSSL 3 would fail the
#: connection instead. :attr:`TlsState.truncated` still tells it from close_notify.
_OPTIONS = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def client_context(
    *,
    verify: bool = True,
    cafile: str | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    certfile: str | None = None,
    keyfile: str | None = None,
) -> ssl.SSLContext:
    """A client context: the system's trusted CAs and host name checks, unless told not to.

    Args:
        verify: check the server's certificate and its name (the default: a library
            is not a debugging tool). ``False`` is ncat's default.
        cafile: trust the CAs in this PEM file instead of the system's (ncat's
            ``--ssl-trustfile``).
        ciphers: an OpenSSL cipher list for TLS 1.2 and older.
        alpn: protocols offered by ALPN, most preferred first.
        certfile: a client certificate (PEM) to present, with its key in it or in
            ``keyfile``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.options |= _OPTIONS
    if verify:
        if cafile is not None:
            _load_trust(context, cafile)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _configure(context, ciphers, alpn, certfile, keyfile)
    return context


def server_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    cafile: str | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``certfile`` (PEM; its key in it or in ``keyfile``).

    Args:
        ciphers: an OpenSSL cipher list for TLS 1.2 and older.
        alpn: protocols the server accepts, most preferred first: it picks the first
            of them the client offers.
        cafile: require every client to present a certificate issued by a CA in this
            PEM file.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= _OPTIONS
    if cafile is not None:
        _load_trust(context, cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    _configure(context, ciphers, alpn, certfile, keyfile)
    return context


def _load_trust(context: ssl.SSLContext, cafile: str) -> None:
    try:
        context.load_verify_locations(cafile)
    except ssl.SSLError as exc:
        raise TlsSetupError(f"{cafile}: {_reason(exc)}") from exc
    except OSError as exc:
        raise TlsSetupError(f"{cafile}: {exc.strerror}", errno=exc.errno) from exc


def _configure(
    context: ssl.SSLContext, ciphers: str | None, alpn: Sequence[str], certfile: str | None, keyfile: str | None
) -> None:
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"Unable to set OpenSSL cipher list: {_reason(exc)}") from exc
    try:
        if alpn:
            context.set_alpn_protocols(list(alpn))
        if certfile is not None:
            context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise TlsSetupError(_reason(exc)) from exc
    except OSError as exc:  # a certificate or key file that cannot be read
        raise TlsSetupError(f"{exc.filename or certfile}: {exc.strerror}", errno=exc.errno) from exc


def translate_tls_error(exc: ssl.SSLError) -> TlsError:
    """Turn an :class:`ssl.SSLError` into a :class:`TlsError` with OpenSSL's reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or _reason(exc)).rstrip(".")  # the caller ends the sentence
        return CertificateError(f"Certificate verification failed ({reason})", reason=reason)
    return TlsError(_reason(exc))


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words: ``WRONG_VERSION_NUMBER`` reads ``wrong version number``."""
    reason = getattr(exc, "reason", None) or exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    reason = reason.partition(" (_ssl.c:")[0]  # where in the ssl module it was raised is nobody's business
    reason = reason.rstrip(".")  # the caller ends the sentence
    return reason.replace("_", " ").lower() if reason.isupper() else reason


def peer_chain(stream: Negotiated) -> list[bytes] | None:
    """The certificates (DER) the peer of a :class:`TlsStream` (or a
    :class:`~enchufe.net.tls_transport.TlsTransport`) sent after its own, verified or
    not, in its order, for :func:`enchufe.proto.x509.problems`; ``None`` where
    :mod:`ssl` cannot tell (``get_unverified_chain()`` is Python 3.13's)."""
    chain = _unverified_chain(stream._state.tls)
    return None if chain is None else chain[1:]


def default_trusted_subjects() -> DefaultTrustedSubjects:
    """The names of the CAs a client trusts by default (``load_default_certs()``), to
    judge a certificate that was not verified (:func:`enchufe.proto.x509.problems`).

    They are read the first time a name is looked up (some 40 ms for the 144 CAs of a
    Debian system), which :func:`~enchufe.proto.x509.problems` does only when it needs
    to: not for a certificate issued by a CA when the chain is not known.
    """
    return DefaultTrustedSubjects()


class DefaultTrustedSubjects:
    """A container of the names of the CAs ``load_default_certs()`` trusts: the system's
    CA file's, and the certificates of its CA directory (OpenSSL's hashed directory,
    ``/etc/ssl/certs``), which ``get_ca_certs()`` leaves out until a handshake has used
    them. A certificate that cannot be read is left out.
    """

    def __init__(self) -> None:
        self._names: frozenset[Name] | None = None

    def __contains__(self, name: object) -> bool:
        if self._names is None:
            self._names = self._read()
        return name in self._names

    @staticmethod
    def _read() -> frozenset[Name]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_default_certs()
        certificates = set(context.get_ca_certs(binary_form=True))
        directory = ssl.get_default_verify_paths().capath
        if directory is not None:
            certificates.update(_hashed_directory_certificates(directory))
        names = set()
        for der in certificates:
            with contextlib.suppress(MalformedCertificate):
                names.add(Certificate(der).subject)
        return frozenset(names)


def _hashed_directory_certificates(directory: str) -> list[bytes]:
    """The certificates (DER) in the files of an OpenSSL CA directory, named by the
    hash of their subject: ``2e5ac55d.0``."""
    try:
        file_names = os.listdir(directory)
    except OSError:
        return []
    footer = "-----END CERTIFICATE-----"
    certificates = []
    for file_name in file_names:
        stem, _, number = file_name.partition(".")
        if len(stem) != 8 or not number.isdigit() or not set(stem) <= set("0123456789abcdef"):
            continue  # not a certificate's name (".r0" is a CRL's)
        try:
            with open(os.path.join(directory, file_name), encoding="ascii", errors="replace") as file:
                text = file.read()
        except OSError:
            continue
        for block in text.split(footer)[:-1]:
            start = block.find("-----BEGIN CERTIFICATE-----")
            if start != -1:
                with contextlib.suppress(ValueError):  # bad base64
                    certificates.append(ssl.PEM_cert_to_DER_cert(block[start:] + footer))
    return certificates


def start_tls(
    raw: SocketStream,
    context: ssl.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> TlsStream:
    """Run the TLS handshake over ``raw`` and return the TLS stream.

    Args:
        raw: a connected stream socket; the TLS stream owns it from here on, and
            closes it if the handshake fails.
        context: a client or server context (:func:`client_context`,
            :func:`server_context`).
        server_side: whether this end is the server.
        server_hostname: the name sent by SNI and checked against the certificate (a
            client's target); an IP address is checked but, as the RFC says, not sent.
        timeout: seconds for the whole handshake.

    Raises:
        CertificateError: the peer's certificate did not verify.
        TlsError: the handshake failed (the peer spoke something else, or ended).
        TimedOut: the handshake took longer than ``timeout``.
    """
    stream = TlsStream(raw, context, server_side=server_side, server_hostname=server_hostname)
    try:
        stream.handshake(timeout=timeout)
    except BaseException:
        stream.abort()
        stream.close()
        raise
    return stream


class TlsState:
    """One connection's TLS, bytes in and bytes out: an :class:`ssl.SSLObject` over two
    memory BIOs, and the rules of end of stream.

    It touches no socket: its owner hands it what the socket received
    (:meth:`receive`), sends what it made (:meth:`outgoing`) whenever it was asked
    for anything, and decides when to do each. What it keeps for both owners:

    - **end of stream.** :meth:`read` returns ``b""`` once for the peer's
      ``close_notify`` (which Python reports either as ``b""`` or as
      ``SSLZeroReturnError``) and for a socket that ended without one, which sets
      :attr:`truncated`.
    - **records already received are not lost to a shutdown.** ``unwrap()`` calls
      ``SSL_shutdown`` twice, and the second call reads: records waiting in the
      incoming buffer would be taken from the reader (OpenSSL 3 fails them as data
      after close_notify). :meth:`shutdown` decrypts them first and :meth:`read`
      returns them before anything else, so that reading goes on after it.

    Not thread-safe: :class:`TlsStream` holds its lock around every call, and
    :class:`~enchufe.net.tls_transport.TlsTransport` runs on one loop's thread.

    Attributes:
        tls: the ``SSLObject``.
        truncated: True once the peer's socket ended without ``close_notify``.
        eof_sent: True once :meth:`shutdown` was called (``close_notify`` is made).
    """

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.truncated = False
        self.eof_sent = False
        self._ended = False
        #: The socket has ended: an end of stream TLS reports from here on is its.
        self._socket_ended = False
        #: Plaintext decrypted by shutdown(), not yet returned by read().
        self._read_ahead = bytearray()
        #: A TLS failure met while reading ahead, raised once the reader gets there.
        self._failure: TlsError | None = None

    def receive(self, data: bytes) -> None:
        """Hand over what the socket received; ``b""`` is the socket's end, handed over
        only once :meth:`read` has taken every whole record before it (both owners
        decrypt all they hold before they read the socket again): an end of stream met
        after it is the socket's alone, truncation, and a close_notify before it was
        already met."""
        if data:
            self._incoming.write(data)
            return
        self._socket_ended = True
        self._incoming.write_eof()

    def outgoing(self) -> bytes:
        """Take what TLS made for the socket (``b""``: nothing)."""
        return self._outgoing.read() if self._outgoing.pending else b""

    def handshake(self) -> bool:
        """Go on with the handshake: True once it is done, False while it waits for
        the peer. What it made (an alert, when it fails) is in :meth:`outgoing`.

        Raises:
            CertificateError: the peer's certificate did not verify.
            TlsError: the handshake failed.
        """
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            error = translate_tls_error(exc)
            if isinstance(error, CertificateError):
                error.certificate = _offered_certificate(self.tls)
            raise error from exc
        return True

    def read(self, max_bytes: int) -> bytes | None:
        """Plaintext (at most ``max_bytes``, from one record), ``b""`` at the end of
        the stream, ``None`` when TLS needs more of the socket's bytes. Reading may
        make bytes to send (an answer to a key update).

        Raises:
            TlsError: a record failed (it is raised after what came before it).
        """
        if self._read_ahead:
            data = bytes(self._read_ahead[:max_bytes])
            del self._read_ahead[:max_bytes]
            return data
        if self._failure is not None:
            raise self._failure
        if self._ended:
            return b""
        return self._decrypt(max_bytes)

    def _decrypt(self, max_bytes: int) -> bytes | None:
        """:meth:`read` without what was read ahead: every whole record received, up to
        ``max_bytes``. (``SSL_read`` gives one record, 16 KiB at most, at a time: joining
        them costs less than a relay's pass for each.) An end or a failure after some
        data is met by the next call."""
        first = self._decrypt_record(max_bytes)
        if not first:
            return first
        pieces = [first]
        size = len(first)
        while size < max_bytes:
            try:
                piece = self._decrypt_record(max_bytes - size)
            except TlsError as exc:
                self._failure = exc  # for the reader, after what came before it
                break
            if not piece:  # no whole record left (None), or the end (b"", with _ended set)
                break
            pieces.append(piece)
            size += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _decrypt_record(self, max_bytes: int) -> bytes | None:
        """One ``SSL_read``: plaintext, ``b""`` at the end, ``None`` for want of bytes."""
        try:
            data = self.tls.read(max_bytes)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:  # close_notify, once this end has sent its own
            data = b""
        except ssl.SSLEOFError:  # the socket's end, with a context that fails on it
            self.truncated = True
            data = b""
        except ssl.SSLError as exc:
            raise translate_tls_error(exc) from exc
        if not data:
            self._ended = True  # b"" is also how ssl reports close_notify
            self.truncated = self.truncated or self._socket_ended
        return data

    def write(self, data: bytes | memoryview) -> None:
        """Encrypt ``data`` into :meth:`outgoing`.

        Raises:
            StreamClosed: after :meth:`shutdown`.
            TlsError: TLS failed earlier and cannot write.
        """
        if self.eof_sent:
            raise StreamClosed("send after send_eof()")
        try:
            self.tls.write(data)
        except ssl.SSLEOFError as exc:
            # OpenSSL writes nothing once the socket ended without close_notify: the
            # peer is gone, as a TCP send to a closed peer's socket says.
            raise ConnectionLost(os.strerror(errno.EPIPE), errno=errno.EPIPE) from exc
        except ssl.SSLError as exc:
            raise translate_tls_error(exc) from exc

    def shutdown(self) -> None:
        """Make ``close_notify`` (into :meth:`outgoing`); reading goes on. Idempotent.

        Raises:
            TlsError: TLS failed earlier and cannot end cleanly (``close_notify`` may
                still be in :meth:`outgoing`).
        """
        if self.eof_sent:
            return
        self.eof_sent = True
        self._read_everything_here()
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify is not awaited
        except ssl.SSLError as exc:
            # A peer whose socket ended without close_notify left TLS failed: there is
            # nobody to say close_notify to, and its socket still gets the end.
            if not self.truncated:
                raise translate_tls_error(exc) from exc

    def _read_everything_here(self) -> None:
        """Decrypt every whole record received, into ``_read_ahead``: with none left in
        the incoming buffer, ``unwrap()``'s read finds nothing (see the class
        docstring)."""
        while not self._ended and self._failure is None:
            try:
                data = self._decrypt(DEFAULT_RECV_SIZE)
            except TlsError as exc:
                self._failure = exc  # for the reader, after what came before it
                return
            if data is None:
                return
            self._read_ahead += data

    def pending(self) -> int:
        """Bytes received and not yet returned by :meth:`read`: decrypted plaintext,
        or records (whole or not) not yet decrypted; 1 once the end of stream or a
        failure is known, which :meth:`read` returns at once too (a peer that waits for
        this end's ``close_notify`` leaves the socket silent)."""
        received = len(self._read_ahead) + self.tls.pending() + self._incoming.pending
        return received or int(self._ended or self._failure is not None)


class Negotiated:
    """What the handshake settled, and how the stream ended: the properties of both
    owners of a :class:`TlsState` (a mixin; ``_state`` is the owner's)."""

    _state: TlsState

    @property
    def version(self) -> str | None:
        """The protocol version, ``"TLSv1.3"`` say."""
        return self._state.tls.version()

    @property
    def cipher(self) -> str | None:
        """The cipher suite's name."""
        cipher = self._state.tls.cipher()
        return None if cipher is None else cipher[0]

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose, if any."""
        return self._state.tls.selected_alpn_protocol()

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER), verified or not; ``None`` if it sent none."""
        return self._state.tls.getpeercert(binary_form=True)

    @property
    def server_hostname(self) -> str | None:
        """The name a client asked for (sent by SNI unless it is an address)."""
        return self._state.tls.server_hostname

    @property
    def truncated(self) -> bool:
        """True once the peer's socket ended without ``close_notify``."""
        return self._state.truncated


class TlsStream(Negotiated):
    """A :class:`~enchufe.net.stream.Stream` of plaintext over TLS on a socket.

    Made by :func:`start_tls`; see the module docstring for end of stream, threads and
    :meth:`pending`.

    Attributes:
        raw: the socket stream underneath.
    """

    is_datagram = False

    def __init__(
        self,
        raw: SocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self.raw = raw
        self._state = TlsState(context, server_side=server_side, server_hostname=server_hostname)
        #: Guards the TLS state; never held while waiting on the socket.
        self._lock = threading.Lock()
        #: Held while bytes taken out of the TLS state are sent: taken before the state
        #: is let go, so records reach the socket in the order they were made.
        self._send_lock = threading.Lock()
        #: Held by the one thread reading the socket.
        self._recv_lock = threading.Lock()

    @property
    def local_address(self) -> Address | None:
        return self.raw.local_address

    @property
    def peer_address(self) -> Address | None:
        return self.raw.peer_address

    # -- the handshake -------------------------------------------------------------------

    def handshake(self, *, timeout: float | None = None) -> None:
        """Run the handshake to its end (:func:`start_tls` calls it)."""
        try:
            self._handshake(None if timeout is None else time.monotonic() + timeout)
        except ConnectionLost as exc:  # a peer that reset, or closed before reading the hello
            raise TlsError(CLOSED_IN_HANDSHAKE, errno=exc.errno) from exc

    def _handshake(self, deadline: float | None) -> None:
        while True:
            with self._lock:
                try:
                    done = self._state.handshake()
                finally:
                    self._send_what_tls_made(deadline)  # an alert too, so that the peer knows why
            if done:
                return
            if not self._receive_raw(deadline):
                raise TlsError(CLOSED_IN_HANDSHAKE)

    # -- the Stream interface ------------------------------------------------------------

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: float | None = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._recv_lock:
            while True:
                with self._lock:
                    try:
                        data = self._state.read(max_bytes)
                    finally:
                        self._send_what_tls_made(deadline)  # reading may answer the peer (a key update)
                if data is not None:
                    return data
                self._receive_raw(deadline)

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            with self._lock:
                self._state.write(view[:_WRITE_PIECE])
                self._send_what_tls_made(deadline)
            view = view[_WRITE_PIECE:]

    def send_eof(self) -> None:
        """Send ``close_notify`` and half-close the socket; reading goes on."""
        with self._lock:
            if self._state.eof_sent:
                return
            self._state.shutdown()
            self._send_what_tls_made(None)
        self.raw.send_eof()

    def pending(self) -> int:
        """Bytes received and not yet returned: decrypted plaintext, or records not yet
        decrypted. A ``recv(timeout=0)`` may return them without the socket becoming
        readable (it raises ``TimedOut`` when they are only part of a record). 1 once
        the end of stream or a failure is known, which ``recv`` returns at once too: a
        peer that waits for this end's ``close_notify`` leaves the socket silent."""
        with self._lock:
            return self._state.pending()

    def abort(self) -> None:
        """Break off every blocked call: shut the socket down both ways."""
        self.raw.abort()

    def close(self) -> None:
        """Send ``close_notify`` if it was not sent (without waiting for a slow peer),
        then close the socket. Idempotent."""
        if not self._state.eof_sent and self._lock.acquire(blocking=False):
            try:
                # The first SSL_shutdown makes close_notify; the second one unwrap()
                # makes may fail on what the peer sent since (a session ticket): that
                # is nobody's business any more, but close_notify must still go.
                with contextlib.suppress(TlsError):
                    self._state.shutdown()
                with contextlib.suppress(NetworkError):
                    self._send_what_tls_made(time.monotonic())
            finally:
                self._lock.release()
        self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()

    def __repr__(self) -> str:
        return f"<TlsStream fd={self.raw.sock.fileno()} {self.version}>"

    # -- between the TLS state and the socket -------------------------------------------

    def _send_what_tls_made(self, deadline: float | None) -> None:
        """Send what the TLS state has made; called with ``_lock`` held, which is let
        go while the bytes are sent (so that a reader can go on) and taken back."""
        data = self._state.outgoing()
        if not data:
            return
        self._send_lock.acquire()
        self._lock.release()
        try:
            self.raw.send_all(data, timeout=remaining_time(deadline))
        finally:
            self._send_lock.release()
            self._lock.acquire()

    def _receive_raw(self, deadline: float | None) -> bool:
        """Read what the socket has into the TLS state; False at the socket's end."""
        data = self.raw.recv(DEFAULT_RECV_SIZE, timeout=remaining_time(deadline))
        with self._lock:
            self._state.receive(data)
        return bool(data)


def _offered_certificate(tls: ssl.SSLObject) -> bytes | None:
    """The certificate a peer offered in a handshake that failed to verify it, where
    ssl can tell (Python 3.13 and later)."""
    try:
        chain = _unverified_chain(tls)
    except (ssl.SSLError, ValueError):
        return None
    return chain[0] if chain else None


def _unverified_chain(tls: ssl.SSLObject) -> list[bytes] | None:
    """The certificates (DER) the peer sent, verified or not, its own first; ``None``
    where :mod:`ssl` cannot tell (``get_unverified_chain()`` is Python 3.13's)."""
    unverified_chain = getattr(tls, "get_unverified_chain", None)
    if unverified_chain is None:
        return None
    certificates: list[bytes] | None = unverified_chain()
    return list(certificates) if certificates else []
    with contextlib.suppress(ssl.SSLError, ValueError):
        chain: list[bytes] | None = unverified_chain()
        if chain:
            return chain[0]
    return None
