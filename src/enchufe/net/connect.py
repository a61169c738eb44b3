"""Opening client connections of every kind.

Internet addresses are resolved with the injected :class:`~enchufe.net.resolve.Resolver`
and every result is tried in the order the resolver gives (IPv6 then IPv4 on a
usual system), each attempt with the full connect timeout, as ncat does since 7.50.
A datagram "connection" is a connected UDP socket: nothing is sent until the caller
sends, which is what ncat's ``-u`` does.

A Unix datagram client binds a socket file first, so that the server has an address
to answer to: the one given as ``source_host`` (ncat's ``-s``), or a temporary one.
The file is removed when the connection closes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from enchufe.address import Address, InetAddress, UnixAddress, parse_address
from enchufe.errors import AddressError, BindError, ConnectError, NetworkError, ProxyError, Unsupported
from enchufe.net.connection import Connection
from enchufe.net.resolve import Resolved, Resolver, SystemResolver
from enchufe.net.sockets import new_socket, socket_kind
from enchufe.net.stream import SocketStream, Stream, address_from_sockaddr, translate_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator, Sequence

    from enchufe.net.dtls import DtlsContext
    from enchufe.net.proxy import Proxy
    from enchufe.net.sockets import Transport

    AttemptFailed = Callable[[Address, NetworkError], None]

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "open_connection"]

#: ncat's default ``-w``.
DEFAULT_CONNECT_TIMEOUT = 10.0


def open_connection(
    address: Address | str,
    *,
    transport: Transport = "stream",
    family: int = socket.AF_UNSPEC,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    source_host: str | None = None,
    source_port: int = 0,
    resolver: Resolver | None = None,
    on_attempt_failed: AttemptFailed | None = None,
    source_route: Sequence[str] = (),
    source_route_pointer: int = 4,
    proxy: Proxy | Sequence[Proxy] | str | None = None,
    proxy_dns: str = "remote",
    on_proxy_progress: Callable[[str], None] | None = None,
    tls: ssl.SSLContext | DtlsContext | bool = False,
    server_hostname: str | None = None,
) -> Connection:
    """Connect to ``address`` and return the connection.

    Args:
        address: where to connect: an :data:`~enchufe.address.Address` or its text
            form (``"example.org:80"``, ``"[::1]:80"``, ``"/run/app.sock"``).
        transport: ``"stream"`` (TCP), ``"datagram"`` (UDP) or ``"sctp"``; for a
            Unix address, stream or datagram.
        family: ``socket.AF_INET`` or ``AF_INET6`` to use only that family.
        timeout: seconds allowed for each address tried (not for DNS); ``None``
            waits as long as the kernel does. Ignored for datagrams, which do not
            wait for anything.
        source_host: local address to bind before connecting (ncat's ``-s``). For a
            Unix address, the client's socket path or ``@name``: the file is created
            here and removed on close, and one that exists already is a
            :class:`BindError`. A Unix datagram client without one binds a
            temporary file.
        source_port: local port to bind before connecting (ncat's ``-p``).
        resolver: resolves host names; the system's by default.
        on_attempt_failed: called with the address and the error each time an
            address fails and another one remains, so a caller can report it.
        source_route: IPv4 hops for a loose source route (ncat's ``-g``); needs
            ``family=socket.AF_INET``.
        source_route_pointer: the route's hop pointer (ncat's ``-G``); Linux accepts
            only 4.
        proxy: connect through this proxy, or this chain of proxies, first hop first
            (:class:`~enchufe.net.proxy.Proxy` values, or their text form for
            :func:`~enchufe.net.proxy.parse_proxies`, such as
            ``"socks5://127.0.0.1:1080,http://10.0.0.1:3128"``); see
            :mod:`enchufe.net.proxy`. Then ``timeout`` bounds the whole of it, first
            connect to last proxy's answer; the source options apply to the connection
            to the first proxy. Stream transport to an Internet address only.
        proxy_dns: where the target's name is resolved when a proxy is used:
            ``"remote"`` (by the proxy), ``"local"``, ``"both"`` (here, else by the
            proxy) or ``"none"`` (the target must be an address).
        on_proxy_progress: called with each line ncat's ``-v`` prints during the proxy
            handshakes (``Connected to proxy 127.0.0.1:1080``, ...).
        tls: ``True`` runs a TLS handshake once connected, verifying the server's
            certificate and name against the system's CAs
            (:func:`enchufe.net.tls.client_context`); an ``ssl.SSLContext`` is used as
            it is (``client_context(verify=False)`` verifies nothing). The handshake
            has the same ``timeout`` as the connect. Over UDP it is DTLS
            (:func:`enchufe.net.dtls.dtls_client_context`, pyOpenSSL's).
        server_hostname: the name sent by SNI and checked against the certificate;
            by default the target's host (an IP address is checked, not sent).

    Raises:
        AddressError: a source route without ``family=socket.AF_INET``.
        ResolveError: the host does not resolve.
        BindError: the source could not be bound.
        ConnectError: the last address refused or was unreachable.
        ConnectTimeout: the last address did not answer in time.
        Unsupported: the kernel lacks the transport (SCTP here), or refuses the
            source route; or DTLS was asked for without pyOpenSSL, or over a Unix socket.
        ProxyError: a proxy refused the tunnel or broke its protocol.
        CertificateError: the server's certificate did not verify.
        TlsError: the TLS handshake failed.
    """
    target = parse_address(address) if isinstance(address, str) else address
    if proxy is not None and isinstance(target, UnixAddress):
        raise Unsupported("a proxy connects to Internet addresses only, not to a Unix socket")
    if isinstance(target, UnixAddress) and tls is not False and transport == "datagram":
        raise Unsupported("DTLS over a Unix datagram socket is not supported")
    if isinstance(target, UnixAddress):
        conn = _connect_unix(target, transport, None if source_host is None else UnixAddress(source_host))
        return conn if tls is False else _secure(conn, tls, server_hostname, timeout)
    resolver = resolver or SystemResolver()
    if proxy is not None:
        return _connect_through(
            target, proxy, proxy_dns, transport, family, timeout, source_host, source_port, resolver, on_attempt_failed,
            on_proxy_progress, tls, server_hostname,
        )  # fmt: skip
    type_, proto = socket_kind(transport)
    if source_route and family != socket.AF_INET:
        raise AddressError("a loose source route works over IPv4 only (family=socket.AF_INET)")
    hops = [resolver.resolve(hop, 0, family=family, type=type_, proto=proto)[0].sockaddr[0] for hop in source_route]
    if hops:
        from enchufe.proto.source_route import loose_source_route  # rare: keep ipaddress off the start-up path
    candidates = resolver.resolve(target.host, target.port, family=family, type=type_, proto=proto)
    last_error: NetworkError = ConnectError(f"{target}: no address to connect to")
    for index, candidate in enumerate(candidates):
        ip_options = loose_source_route(hops, candidate.sockaddr[0], pointer=source_route_pointer) if hops else b""
        try:
            sock = _connect_one(candidate, transport, timeout, source_host, source_port, resolver, ip_options)
        except NetworkError as exc:
            last_error = exc
            if on_attempt_failed is not None and index + 1 < len(candidates):
                on_attempt_failed(InetAddress(candidate.sockaddr[0], candidate.sockaddr[1]), exc)
            continue
        stream = SocketStream(sock)
        conn = Connection(stream, local=stream.local_address, peer=stream.peer_address)
        return conn if tls is False else _secure(conn, tls, server_hostname or target.host, timeout)
    raise last_error


def _connect_through(
    target: InetAddress,
    proxy: Proxy | Sequence[Proxy] | str,
    proxy_dns: str,
    transport: Transport,
    family: int,
    timeout: float | None,
    source_host: str | None,
    source_port: int,
    resolver: Resolver,
    on_attempt_failed: AttemptFailed | None,
    on_progress: Callable[[str], None] | None,
    tls: ssl.SSLContext | DtlsContext | bool,
    server_hostname: str | None,
) -> Connection:
    from enchufe.net.proxy import Proxy, connect_through, leftover_first, parse_proxies

    if transport != "stream":
        raise Unsupported(f"a proxy carries only TCP streams, not {transport}")
    chain = parse_proxies(proxy) if isinstance(proxy, str) else (proxy,) if isinstance(proxy, Proxy) else tuple(proxy)

    def connect_first(address: InetAddress, seconds: float | None) -> Connection:
        return open_connection(
            address,
            family=family,
            timeout=seconds,
            source_host=source_host,
            source_port=source_port,
            resolver=resolver,
            on_attempt_failed=on_attempt_failed,
        )

    conn = connect_through(
        chain,
        target,
        connect=connect_first,
        timeout=timeout,
        proxy_dns=proxy_dns,
        resolver=resolver,
        family=family,
        on_progress=on_progress,
    )
    if tls is False:
        return Connection(leftover_first(conn), local=conn.local, peer=target)
    if conn.buffered:
        conn.close()
        raise ProxyError(f"{chain[-1].address} sent data before the TLS handshake", proxy=str(chain[-1].address))
    return _secure(Connection(conn.stream, local=conn.local, peer=target), tls, server_hostname or target.host, timeout)


def _secure(
    conn: Connection, tls: ssl.SSLContext | DtlsContext | bool, server_hostname: str | None, timeout: float | None
) -> Connection:
    """Run the client's TLS handshake (over UDP, DTLS's) over ``conn``; the secure
    connection replaces it. A context of the other kind is a ``TypeError``."""
    assert isinstance(conn.stream, SocketStream)
    stream: Stream
    if conn.stream.is_datagram:
        from enchufe.net.dtls import DtlsContext, dtls_client_context, start_dtls

        with _closed_on_failure(conn):
            dtls = dtls_client_context() if tls is True else tls
            if not isinstance(dtls, DtlsContext):
                raise TypeError("DTLS takes a DtlsContext (enchufe.net.dtls.dtls_client_context)")
        stream = start_dtls(conn.stream, dtls, server_hostname=server_hostname, timeout=timeout)
    else:
        import ssl

        from enchufe.net.tls import client_context, start_tls

        with _closed_on_failure(conn):
            context = client_context() if tls is True else tls
            if not isinstance(context, ssl.SSLContext):
                raise TypeError("TLS takes an ssl.SSLContext (enchufe.net.tls.client_context)")
        stream = start_tls(conn.stream, context, server_hostname=server_hostname, timeout=timeout)
    return Connection(stream, local=conn.local, peer=conn.peer)


@contextlib.contextmanager
def _closed_on_failure(conn: Connection) -> Iterator[None]:
    try:
        yield
    except BaseException:
        conn.close()
        raise


def _connect_one(
    candidate: Resolved,
    transport: Transport,
    timeout: float | None,
    source_host: str | None,
    source_port: int,
    resolver: Resolver,
    ip_options: bytes,
) -> socket.socket:
    source = None
    if source_host is not None or source_port:
        host = "::" if candidate.family == socket.AF_INET6 else "0.0.0.0"
        if source_host is not None:
            host = resolver.resolve(
                source_host, 0, family=candidate.family, type=candidate.type, proto=candidate.proto
            )[0].sockaddr[0]
        source = (host, source_port)
    sock = new_socket(candidate.family, transport)
    try:
        if ip_options:
            _set_ip_options(sock, ip_options)
        if source is not None:
            sock.bind(source)
        if transport != "datagram":
            sock.settimeout(timeout)
        sock.connect(candidate.sockaddr)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        raise translate_os_error(exc, "connect") from exc
    return sock


def _set_ip_options(sock: socket.socket, ip_options: bytes) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, ip_options)
    except OSError as exc:
        # ncat only warns and connects without the route; a route silently dropped is
        # worse than a clear refusal.
        raise Unsupported(
            f"the kernel refused the source route ({exc.strerror}); Linux accepts only hop pointer 4",
            errno=exc.errno,
        ) from exc


def _connect_unix(target: UnixAddress, transport: Transport, source: UnixAddress | None) -> Connection:
    sock = new_socket(socket.AF_UNIX, transport)
    bound_path = None
    try:
        if source is not None:
            bound_path = _bind_source(sock, source)
        elif transport == "datagram":
            bound_path = _bind_temporary(sock)
        sock.connect(target.sockaddr())
    except OSError as exc:
        sock.close()
        if bound_path is not None:
            os.unlink(bound_path)
        if isinstance(exc, BindError):
            raise
        raise translate_os_error(exc, "connect", context=str(target)) from exc
    stream = SocketStream(sock, unlink_on_close=bound_path)
    local = address_from_sockaddr(socket.AF_UNIX, sock.getsockname())
    return Connection(stream, local=local, peer=target)


def _bind_source(sock: socket.socket, source: UnixAddress) -> str | None:
    """Bind the name asked for; return the file to remove on close (None: abstract)."""
    try:
        sock.bind(source.sockaddr())
    except OSError as exc:
        # A name in use is an error here. ncat 7.93 warns, goes on unbound, and at exit
        # deletes the file that was there although it never created it.
        raise translate_os_error(exc, "bind", context=f"bind to {source}") from exc
    return None if source.is_abstract else source.path


def _bind_temporary(sock: socket.socket) -> str:
    directory = os.environ.get("TMPDIR", "/tmp")
    while True:
        path = os.path.join(directory, f"enchufe.{os.getpid()}.{os.urandom(6).hex()}.sock")
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:  # a name collision: try another
                continue
            raise
        return path
