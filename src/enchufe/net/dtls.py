"""DTLS over UDP, for threads: :class:`DtlsStream`, the contexts, and a listener's accept.

The standard library has no DTLS; this module drives pyOpenSSL's ``SSL.Connection``
(the optional extra ``enchufe[dtls]``) over two memory BIOs, and decides itself when
the socket is read and written, as :mod:`enchufe.net.tls` does with ``ssl``. What
datagrams change:

- **Records travel in whole datagrams.** A memory BIO keeps no datagram boundaries:
  what OpenSSL wrote for a flight is cut back into its records and packed into
  datagrams no larger than the path's MTU (the connected socket's ``IP_MTU``: 65,507
  bytes of payload on loopback, 1,472 on an Ethernet path). Each datagram received is
  decrypted on its own, so a bad one costs nothing but itself.
- **Each ``send_all`` is one datagram, each ``recv`` returns one.** A record carries
  at most 16 KiB of plaintext: a larger ``send_all`` goes out as several datagrams. A
  record larger than the path's MTU is left to IP fragmentation, as ncat does.
- **The handshake retransmits.** A flight that gets no answer is sent again when
  OpenSSL's timer says (``DTLSv1_get_timeout``: 1 s, then doubling), until the
  handshake's own ``timeout``.
- **A listener answers the first ClientHello with a cookie** (:func:`accept_dtls`, as
  ``DTLSv1_listen`` does in ncat 7.94+): the address a datagram claims to come from
  must echo an HMAC of itself before the listener keeps any state for it or connects
  its socket to it, so a spoofed source costs one small answer and nothing more.
- **End of stream is ``close_notify``.** :meth:`DtlsStream.send_eof` sends it and
  reading goes on; the peer's is :attr:`DtlsStream.ended`, and ``recv`` returns
  ``b""`` from then on (a DTLS record never carries an empty datagram).

Every pyOpenSSL failure becomes :class:`~enchufe.errors.TlsError` with OpenSSL's
reason (a certificate that does not verify: :class:`~enchufe.errors.CertificateError`).
Without pyOpenSSL, making a context raises :class:`~enchufe.errors.Unsupported` with
:data:`NEEDS_PYOPENSSL`. Importing this module imports pyOpenSSL and cryptography
(about 0.1 s): only DTLS paths import it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import ipaddress
import os
import socket
import threading
import time

from enchufe.errors import CertificateError, NetworkError, StreamClosed, TimedOut, TlsError, TlsSetupError, Unsupported
from enchufe.net.stream import SocketStream, address_from_sockaddr, remaining_time, translate_os_error

try:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from OpenSSL import SSL, crypto

    HAVE_PYOPENSSL = True
except ImportError:  # the optional extra is not installed: contexts say so
    HAVE_PYOPENSSL = False

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from enchufe.address import Address
    from enchufe.net.listen import Listener

__all__ = [
    "NEEDS_PYOPENSSL",
    "DtlsContext",
    "DtlsStream",
    "accept_dtls",
    "dtls_client_context",
    "dtls_server_context",
    "start_dtls",
]

#: The message of the :class:`~enchufe.errors.Unsupported` raised without pyOpenSSL.
NEEDS_PYOPENSSL = "DTLS needs pyOpenSSL: pip install 'enchufe[dtls]'"

#: The most plaintext one DTLS record carries (OpenSSL refuses more: "dtls message too big").
RECORD_PLAINTEXT = 16384
#: Room for any datagram a peer sends.
_DATAGRAM_ROOM = 65535
#: UDP's largest payload over IPv4.
_LARGEST_PAYLOAD = 65507
#: A DTLS record header: type, version, epoch, sequence number, then the length.
_RECORD_HEADER = 13
#: IP and UDP headers, taken from the path's MTU to get a datagram's payload.
_HEADERS = {socket.AF_INET: 20 + 8, socket.AF_INET6: 40 + 8}
#: Linux's socket options for the path MTU of a connected socket.
_IP_MTU = 14
_IPV6_MTU = 24
#: The payload of one datagram on a path whose MTU cannot be asked (Ethernet's 1500).
_FALLBACK_MTU = 1500
_CLOSED_IN_HANDSHAKE = "the peer ended the DTLS session during the handshake"


def _require_pyopenssl() -> None:
    if not HAVE_PYOPENSSL:
        raise Unsupported(NEEDS_PYOPENSSL)


class DtlsContext:
    """The settings shared by DTLS sessions: a pyOpenSSL ``SSL.Context`` and what
    enchufe checks beyond it. Made by :func:`dtls_client_context` or
    :func:`dtls_server_context`.

    Attributes:
        context: the pyOpenSSL context (complete: pyOpenSSL refuses changes once a
            session uses it).
        server_side: made for a server.
        verify: a client checks the server's certificate and its name.
    """

    def __init__(self, context: SSL.Context, *, server_side: bool, verify: bool) -> None:
        self.context = context
        self.server_side = server_side
        self.verify = verify
        #: The key of the listener's cookies: an HMAC of the peer's address.
        self.cookie_secret = os.urandom(32)


def dtls_client_context(
    *,
    verify: bool = True,
    cafile: str | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    certfile: str | None = None,
    keyfile: str | None = None,
) -> DtlsContext:
    """A client context: the system's trusted CAs and host name checks, unless told not to.

    The arguments are :func:`enchufe.net.tls.client_context`'s.

    Raises:
        Unsupported: pyOpenSSL is not installed (:data:`NEEDS_PYOPENSSL`).
        TlsError: a bad cipher list, or a certificate or CA file that cannot be used.
    """
    _require_pyopenssl()
    context = _new_context(ciphers, certfile, keyfile)
    if verify:
        with _translated(cafile or certfile):
            if cafile is not None:
                context.load_verify_locations(cafile)
            else:
                context.set_default_verify_paths()
    if alpn:
        with _translated(None):
            context.set_alpn_protos([protocol.encode() for protocol in alpn])
    return DtlsContext(context, server_side=False, verify=verify)


def dtls_server_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    cafile: str | None = None,
) -> DtlsContext:
    """A server context presenting ``certfile``; the arguments are
    :func:`enchufe.net.tls.server_context`'s.

    Raises:
        Unsupported: pyOpenSSL is not installed (:data:`NEEDS_PYOPENSSL`).
        TlsError: a bad cipher list, or a certificate, key or CA file that cannot be used.
    """
    _require_pyopenssl()
    context = _new_context(ciphers, certfile, keyfile)
    if cafile is not None:
        with _translated(cafile):
            context.load_verify_locations(cafile)
    if alpn:
        accepted = [protocol.encode() for protocol in alpn]

        def choose(_connection: SSL.Connection, offered: list[bytes]) -> Any:  # bytes, or pyOpenSSL's "none of them"
            return next((protocol for protocol in accepted if protocol in offered), SSL.NO_OVERLAPPING_PROTOCOLS)

        context.set_alpn_select_callback(choose)
    dtls = DtlsContext(context, server_side=True, verify=cafile is not None)
    context.set_cookie_generate_callback(lambda connection: _cookie(dtls, connection))
    context.set_cookie_verify_callback(
        lambda connection, cookie: hmac.compare_digest(cookie, _cookie(dtls, connection))
    )
    return dtls


def _new_context(ciphers: str | None, certfile: str | None, keyfile: str | None) -> SSL.Context:
    context = SSL.Context(SSL.DTLS_METHOD)
    # A memory BIO has no MTU to ask: each session is told its path's (_path_mtu).
    context.set_options(SSL.OP_NO_QUERY_MTU)
    if ciphers is not None:
        with _translated(None, "Unable to set OpenSSL cipher list"):
            context.set_cipher_list(ciphers.encode())
    if certfile is not None:
        with _translated(certfile):
            context.use_certificate_chain_file(certfile)
        with _translated(keyfile or certfile):
            context.use_privatekey_file(keyfile or certfile)
    return context


@contextlib.contextmanager
def _translated(path: str | None, what: str | None = None) -> Iterator[None]:
    """pyOpenSSL's failures while a context is made, as :class:`TlsSetupError` (in
    :mod:`enchufe.net.tls`'s words): ``what`` failed, or ``path`` did; a ``path`` that
    cannot be read says so by name (OpenSSL would only say ``system lib``)."""
    try:
        if path is not None:
            with open(path, "rb"):
                pass
        yield
    except SSL.Error as exc:
        prefix = what or path
        reason = str(translate_dtls_error(exc))
        raise TlsSetupError(f"{prefix}: {reason}" if prefix else reason) from exc
    except OSError as exc:  # a file that cannot be read
        raise TlsSetupError(f"{exc.filename or path}: {exc.strerror}", errno=exc.errno) from exc


def _cookie(dtls: DtlsContext, connection: SSL.Connection) -> bytes:
    """The cookie of the address a ClientHello came from (:func:`accept_dtls` sets it
    as the connection's app data before each datagram)."""
    sender: bytes = connection.get_app_data()
    return hmac.new(dtls.cookie_secret, sender, hashlib.sha256).digest()[:16]


def translate_dtls_error(exc: SSL.Error) -> TlsError:
    """Turn a pyOpenSSL error into a :class:`TlsError` with OpenSSL's reason."""
    reasons = (
        [entry[2] for entry in exc.args[0] if len(entry) == 3] if exc.args and isinstance(exc.args[0], list) else []
    )
    return TlsError(reasons[-1] if reasons else str(exc) or type(exc).__name__)


def start_dtls(
    raw: SocketStream,
    context: DtlsContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> DtlsStream:
    """Run the DTLS handshake over ``raw`` and return the DTLS stream.

    Args:
        raw: a connected UDP socket; the DTLS stream owns it from here on, and closes
            it if the handshake fails.
        context: :func:`dtls_client_context` or :func:`dtls_server_context`.
        server_side: whether this end is the server (with no cookie exchange: a
            listener's peer comes from :func:`accept_dtls`).
        server_hostname: the name sent by SNI and checked against the certificate
            (an IP address is checked but, as the RFC says, not sent).
        timeout: seconds for the whole handshake; without one, OpenSSL gives up after
            its twelfth retransmission.

    Raises:
        CertificateError: the peer's certificate did not verify.
        TlsError: the handshake failed (the peer spoke something else, or ended it).
        TimedOut: the handshake took longer than ``timeout``.
        NetworkError: the socket failed (``Connection refused``: nothing listens there).
    """
    _require_pyopenssl()
    stream = DtlsStream(raw, context, server_side=server_side, server_hostname=server_hostname)
    stream.handshake(timeout=timeout)
    return stream


class DtlsStream:
    """A :class:`~enchufe.net.stream.Stream` of plaintext datagrams over DTLS.

    Made by :func:`start_dtls` or :func:`accept_dtls`; see the module docstring for
    datagrams, retransmission and end of stream. One thread may ``recv`` while others
    ``send_all``.

    Attributes:
        raw: the connected UDP socket underneath.
        ended: True once the peer's ``close_notify`` arrived.
        is_datagram: True, until ``close_notify`` arrives: from then on ``recv``'s
            ``b""`` is end of stream (DTLS carries no empty datagram), and a relay or
            a :class:`~enchufe.net.connection.Connection` reading it sees one.
    """

    def __init__(
        self,
        raw: SocketStream,
        context: DtlsContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: SSL.Connection | None = None,
        received: Sequence[bytes] = (),
    ) -> None:
        self.raw = raw
        self._server_hostname = server_hostname
        if session is None:
            session = SSL.Connection(context.context)
            if server_side:
                session.set_accept_state()
            else:
                session.set_connect_state()
        self._dtls = session
        self._mtu = _path_mtu(raw.sock)
        self._dtls.set_ciphertext_mtu(self._mtu)
        if server_hostname is not None and not server_side and not _is_ip_address(server_hostname):
            self._dtls.set_tlsext_host_name(server_hostname.encode("idna"))
        if context.verify:
            mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server_side else 0)
            self._dtls.set_verify(mode, self._check_certificate)
        #: Datagrams received and not yet given to DTLS: an accepted client's, queued
        #: before its socket was connected (the rest of a ClientHello in fragments).
        self._received = collections.deque(received)
        #: Plaintext datagrams decrypted and not yet returned by recv().
        self._plaintext: collections.deque[bytes] = collections.deque()
        #: Why verification failed, as the verify callback saw it, and the leaf offered.
        self._verify_failure: str | None = None
        self._offered: bytes | None = None
        #: Guards the DTLS state; never held while waiting on the socket.
        self._lock = threading.Lock()
        #: Held while datagrams taken out of the DTLS state are sent: records in order.
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._eof_sent = False
        self.ended = False
        self.is_datagram = True

    def _check_certificate(
        self, _connection: SSL.Connection, cert: crypto.X509, error: int, depth: int, ok: int
    ) -> bool:
        """OpenSSL's verdict on each certificate of the chain, and the name at its end."""
        if depth == 0:
            self._offered = cert.to_cryptography().public_bytes(Encoding.DER)
        if not ok:
            if self._verify_failure is None:
                self._verify_failure = _verify_error_text(error)
            return False
        if depth == 0 and self._server_hostname is not None:
            mismatch = _name_mismatch(cert.to_cryptography(), self._server_hostname)
            if mismatch is not None:
                self._verify_failure = mismatch
                return False
        return True

    # -- what the handshake settled ------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The protocol version, ``"DTLSv1.2"`` say."""
        return self._dtls.get_protocol_version_name()

    @property
    def cipher(self) -> str | None:
        """The cipher suite's name."""
        return self._dtls.get_cipher_name()

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose, if any."""
        chosen = self._dtls.get_alpn_proto_negotiated()
        return chosen.decode() if chosen else None

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER), verified or not; ``None`` if it sent none."""
        cert = self._dtls.get_peer_certificate(as_cryptography=True)
        return None if cert is None else cert.public_bytes(Encoding.DER)

    @property
    def server_hostname(self) -> str | None:
        """The name a client asked for (sent by SNI unless it is an address)."""
        return self._server_hostname

    @property
    def mtu(self) -> int:
        """The largest datagram a handshake flight is cut into."""
        return self._mtu

    @property
    def local_address(self) -> Address | None:
        return self.raw.local_address

    @property
    def peer_address(self) -> Address | None:
        return self.raw.peer_address

    # -- the handshake -------------------------------------------------------------------

    def handshake(self, *, timeout: float | None = None) -> None:
        """Run the handshake to its end (:func:`start_dtls` calls it; a stream from
        :func:`accept_dtls` needs it); a failure closes the socket."""
        try:
            self._handshake(None if timeout is None else time.monotonic() + timeout)
        except BaseException:
            self.raw.close()
            raise

    def _handshake(self, deadline: float | None) -> None:
        while True:
            with self._lock:
                try:
                    self._dtls.do_handshake()
                    done = True
                except SSL.WantReadError:
                    done = False
                except SSL.Error as exc:
                    self._send_what_dtls_made(deadline)  # the alert, so that the peer knows why
                    raise self._handshake_error(exc) from exc
                self._send_what_dtls_made(deadline)
            if done:
                return
            retransmit = self._dtls.DTLSv1_get_timeout()
            wait = remaining_time(deadline)
            if retransmit is not None:
                wait = retransmit if wait is None else min(wait, retransmit)
            datagram = self._next_datagram(wait)
            if datagram is not None:
                with self._lock:
                    self._dtls.bio_write(datagram)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise TimedOut("DTLS handshake timed out")
            # The timer expired: do_handshake sends the last flight again (OpenSSL's
            # DTLS read handles the timeout itself), or fails after the twelfth time.

    def _handshake_error(self, exc: SSL.Error) -> TlsError:
        if isinstance(exc, SSL.ZeroReturnError):
            return TlsError(_CLOSED_IN_HANDSHAKE)
        if self._verify_failure is not None:
            reason = self._verify_failure
            return CertificateError(
                f"Certificate verification failed ({reason.rstrip('.')})", reason=reason, certificate=self._offered
            )
        return translate_dtls_error(exc)

    def _next_datagram(self, timeout: float | None) -> bytes | None:
        """The next datagram received, or None after ``timeout`` without one."""
        if self._received:
            return self._received.popleft()
        try:
            return self.raw.recv(_DATAGRAM_ROOM, timeout=timeout)
        except TimedOut:
            return None

    # -- the Stream interface ------------------------------------------------------------

    def recv(self, max_bytes: int = _DATAGRAM_ROOM, *, timeout: float | None = None) -> bytes:
        """The plaintext of the next datagram (its first ``max_bytes``, the rest
        discarded as UDP does); ``b""`` once the peer sent ``close_notify``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._recv_lock:
            while True:
                with self._lock:
                    if self._plaintext:
                        return self._plaintext.popleft()[:max_bytes]
                    if self.ended:
                        return b""
                datagram = self._next_datagram(remaining_time(deadline))
                if datagram is None:
                    raise TimedOut("Timed out")
                with self._lock:
                    self._decrypt(datagram, deadline)

    def _decrypt(self, datagram: bytes, deadline: float | None) -> None:
        """With ``_lock`` held: every record of ``datagram`` into ``_plaintext``."""
        self._dtls.bio_write(datagram)
        try:
            while True:
                self._plaintext.append(self._dtls.read(RECORD_PLAINTEXT))
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            self.ended = True
            self.is_datagram = False
        except SSL.Error as exc:
            raise translate_dtls_error(exc) from exc
        finally:
            self._send_what_dtls_made(deadline)  # a peer that lost our last flight asks again

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send ``data`` as one datagram (as several when it is more than
        :data:`RECORD_PLAINTEXT`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            with self._lock:
                if self._eof_sent:
                    raise StreamClosed("send after send_eof()")
                try:
                    self._dtls.write(view[:RECORD_PLAINTEXT].tobytes())
                except SSL.Error as exc:
                    raise translate_dtls_error(exc) from exc
                self._send_what_dtls_made(deadline)
            view = view[RECORD_PLAINTEXT:]

    def send_eof(self) -> None:
        """Send ``close_notify``; reading goes on."""
        with self._lock:
            if self._eof_sent:
                return
            self._eof_sent = True
            with contextlib.suppress(SSL.Error):
                self._dtls.shutdown()
            self._send_what_dtls_made(None)

    def pending(self) -> int:
        """Bytes received and not yet returned: plaintext decrypted (the records after
        the first of a datagram that carried several), or an accepted client's
        datagrams not yet decrypted."""
        with self._lock:
            return sum(map(len, self._plaintext)) + sum(map(len, self._received))

    def abort(self) -> None:
        """Break off every blocked call: shut the socket down both ways."""
        self.raw.abort()

    def close(self) -> None:
        """Send ``close_notify`` if it was not sent (without waiting), then close the
        socket. Idempotent."""
        if not self._eof_sent and self._lock.acquire(blocking=False):
            try:
                self._eof_sent = True
                with contextlib.suppress(SSL.Error, NetworkError):
                    self._dtls.shutdown()
                    self._send_what_dtls_made(time.monotonic())
            finally:
                self._lock.release()
        self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()

    def __repr__(self) -> str:
        return f"<DtlsStream fd={self.raw.sock.fileno()} {self.version}>"

    # -- between the DTLS state and the socket -------------------------------------------

    def _send_what_dtls_made(self, deadline: float | None) -> None:
        """Send what the DTLS state has made, in datagrams of whole records; called with
        ``_lock`` held, which is let go while they are sent and taken back."""
        try:
            made = self._dtls.bio_read(_DATAGRAM_ROOM * 4)
        except SSL.WantReadError:
            return
        self._send_lock.acquire()
        self._lock.release()
        try:
            for datagram in pack_records(made, self._mtu):
                self.raw.send_all(datagram, timeout=remaining_time(deadline))
        finally:
            self._send_lock.release()
            self._lock.acquire()


def pack_records(records: bytes, mtu: int) -> Iterator[bytes]:
    """Cut what a DTLS state wrote into its records and pack them, in order, into
    datagrams of at most ``mtu`` bytes (a record larger than that goes alone)."""
    start = end = 0
    while end < len(records):
        length = int.from_bytes(records[end + _RECORD_HEADER - 2 : end + _RECORD_HEADER], "big")
        record_end = end + _RECORD_HEADER + length
        if record_end - start > mtu and end > start:
            yield records[start:end]
            start = end
        end = record_end
    if end > start:
        yield records[start:end]


def accept_dtls(
    listeners: Sequence[Listener],
    context: DtlsContext,
    *,
    timeout: float | None = None,
    wake_fd: int | None = None,
    admit: Callable[[Address | None], bool] | None = None,
) -> DtlsStream:
    """Wait for a DTLS client on UDP listeners; return the session of the first whose
    ClientHello came back with its cookie, before the rest of its handshake: run it
    with :meth:`DtlsStream.handshake` (the caller knows the peer if it fails).

    A datagram that is no ClientHello is dropped; a ClientHello without the right
    cookie gets a HelloVerifyRequest and nothing is kept. The listener whose peer
    passed is consumed: its socket, connected to that peer, is the stream's (the
    others stay the caller's to close), as :meth:`~enchufe.net.listen.Listener.accept`
    does for plain UDP.

    Args:
        listeners: bound UDP listeners (:func:`~enchufe.net.listen.open_listeners`).
        context: a :func:`dtls_server_context`.
        timeout: seconds to wait for a client that passes the cookie exchange.
        wake_fd: a signal wake-up pipe, as :func:`~enchufe.net.listen.wait_for_peer`'s.
        admit: ``admit(sender)`` for each datagram's sender; one it refuses is
            dropped unanswered (``--allow``/``--deny``).

    Raises:
        TimedOut: no client within ``timeout``.
    """
    _require_pyopenssl()
    from enchufe.net.listen import wait_for_peer

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        listener = wait_for_peer(list(listeners), timeout=remaining_time(deadline), wake_fd=wake_fd)
        found = _listen_once(listener, context, admit)
        if found is not None:
            break
    session, sender = found
    sock = listener.sock
    try:
        sock.connect(sender)
        received = list(_queued_from(sock, sender))
    except OSError as exc:
        raise translate_os_error(exc, "recv") from exc
    stream = DtlsStream(SocketStream(sock.dup()), context, server_side=True, session=session, received=received)
    listener.close()
    return stream


def _listen_once(
    listener: Listener, context: DtlsContext, admit: Callable[[Address | None], bool] | None
) -> tuple[SSL.Connection, tuple[object, ...]] | None:
    """Read one datagram from ``listener``: a ClientHello with its cookie gives the
    session and its sender; anything else gets its answer (or none)."""
    try:
        datagram, sender = listener.sock.recvfrom(_DATAGRAM_ROOM, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        raise translate_os_error(exc, "recv") from exc
    if admit is not None and not admit(address_from_sockaddr(listener.sock.family, sender)):
        return None
    session = SSL.Connection(context.context)
    session.set_accept_state()
    session.set_ciphertext_mtu(_FALLBACK_MTU - _HEADERS[listener.sock.family])
    session.set_app_data(repr(sender).encode())
    session.bio_write(datagram)
    try:
        session.DTLSv1_listen()
        passed = True
    except SSL.WantReadError:  # no ClientHello with our cookie
        passed = False
    except SSL.Error:  # not DTLS at all
        return None
    with contextlib.suppress(SSL.WantReadError, OSError):  # a HelloVerifyRequest, if the datagram was a ClientHello
        listener.sock.sendto(session.bio_read(_DATAGRAM_ROOM), sender)
    return (session, sender) if passed else None


def _queued_from(sock: socket.socket, peer: tuple[object, ...]) -> Iterator[bytes]:
    """The datagrams queued on a socket just connected to ``peer`` (connect() filters
    only what comes after): the peer's own, such as the rest of a ClientHello sent in
    fragments (ncat 7.93 sends 256-byte ones, and never again); the others dropped."""
    peer_address = address_from_sockaddr(sock.family, peer)
    while True:
        try:
            datagram, sender = sock.recvfrom(_DATAGRAM_ROOM, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if address_from_sockaddr(sock.family, sender) == peer_address:
            yield datagram


def _path_mtu(sock: socket.socket) -> int:
    """The largest datagram payload on a connected socket's path, as OpenSSL's own
    datagram BIO asks it (``IP_MTU``, Linux), less the IP and UDP headers."""
    level, option = (socket.IPPROTO_IPV6, _IPV6_MTU) if sock.family == socket.AF_INET6 else (socket.IPPROTO_IP, _IP_MTU)
    try:
        mtu = sock.getsockopt(level, option)
    except OSError:
        mtu = _FALLBACK_MTU
    return min(mtu - _HEADERS[sock.family], _LARGEST_PAYLOAD)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _name_mismatch(cert: x509.Certificate, hostname: str) -> str | None:
    """Why ``cert`` is not for ``hostname`` (its subjectAltName, as RFC 6125 says: a
    wildcard only as the whole leftmost label), in ``ssl``'s words; None if it is."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = x509.SubjectAlternativeName([])
    if _is_ip_address(hostname):
        if ipaddress.ip_address(hostname) in names.get_values_for_type(x509.IPAddress):
            return None
        return f"IP address mismatch, certificate is not valid for '{hostname}'."
    wanted = hostname.encode("idna").decode("ascii").lower().rstrip(".")
    for name in names.get_values_for_type(x509.DNSName):
        pattern = name.lower().rstrip(".")
        if pattern == wanted:
            return None
        first, _, rest = wanted.partition(".")
        if pattern.startswith("*.") and first and rest and pattern[2:] == rest:
            return None
    return f"Hostname mismatch, certificate is not valid for '{hostname}'."


def _verify_error_text(error: int) -> str:
    """OpenSSL's words for a verification error (``X509_verify_cert_error_string``,
    which pyOpenSSL uses but does not export)."""
    try:
        from OpenSSL._util import ffi, lib
    except ImportError:
        return f"certificate verification error {error}"
    text: bytes = ffi.string(lib.X509_verify_cert_error_string(error))
    return text.decode("utf-8", "replace")
