"""Connecting through proxies: HTTP CONNECT, SOCKS4 (and 4a), SOCKS5, one or a chain.

Connecting through a chain is a series of stages on one connection, as urllib3 does it
(connect, then tunnel, then TLS): :func:`connect_through` connects to the first proxy,
asks it for a tunnel to the second, through that for one to the third, and so on, and
last for one to the target. TLS, when asked for, starts after that, end to end with the
target (ncat drops ``--ssl`` through a proxy; nmap/nmap#2066).

Each hop's handshake is its protocol's function, given the connection so far and the
host and port to ask for:

- :func:`enchufe.net.proxy_http.http_connect`: ``CONNECT host:port``; on ``407`` with
  credentials, a new connection (``reconnect``) and the request again with Basic or
  Digest, Digest preferred (ncat's way).
- :func:`enchufe.net.proxy_socks.socks4_connect`: SOCKS4, or SOCKS4a for a name.
- :func:`enchufe.net.proxy_socks.socks5_connect`: SOCKS5, with no authentication or a
  user name and password.

What the proxy sends after its answer is the target's: it stays in the connection and
comes first to whoever reads it (ncat writes it to standard output).

Where the target's name is resolved (``proxy_dns``, ncat's ``--proxy-dns``):
``"remote"`` (the default) sends the name for the proxy to resolve (SOCKS4a for
SOCKS4); ``"local"`` resolves it here and sends the address; ``"both"`` resolves it
here and sends the name when that fails; ``"none"`` resolves nothing: the target must be
an address. The same rule applies to each next proxy of a chain. A proxy's own address
is always resolved here.

``on_progress``, when given, hears what ncat's ``-v`` says on the way: ``Connected to
proxy HOST:PORT`` before each SOCKS handshake, and a SOCKS5 proxy's method and
``connection succeeded.``.

The whole handshake, from the first connect to the last hop's answer, has one deadline
(``timeout``, ncat's ``-w``): a proxy that accepts and then stays silent is a
:class:`~enchufe.errors.ConnectTimeout`, not a hang.
"""

from __future__ import annotations

import functools
import time

from enchufe.address import InetAddress
from enchufe.errors import AddressError, ConnectError, ConnectTimeout, ProxyError, ReceiveTimeout, ResolveError
from enchufe.net.connection import Connection
from enchufe.net.stream import DEFAULT_RECV_SIZE, remaining_time
from enchufe.proto.proxy import Credentials

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from enchufe.net.resolve import Resolver
    from enchufe.net.stream import Stream

    #: Connects to a proxy's address within the given seconds (``None``: no limit).
    Connector = Callable[[InetAddress, float | None], Connection]
    #: Hears each of ncat's ``-v`` lines for a proxy handshake.
    Progress = Callable[[str], None]

__all__ = [
    "DEFAULT_PROXY_PORTS",
    "PROXY_DNS",
    "PROXY_KINDS",
    "Credentials",
    "Proxy",
    "connect_through",
    "is_address",
    "leftover_first",
    "parse_proxies",
]

#: The protocols a proxy may speak.
PROXY_KINDS = ("http", "socks4", "socks5")
#: ncat's default port for each kind.
DEFAULT_PROXY_PORTS = {"http": 3128, "socks4": 1080, "socks5": 1080}
#: The values of ``proxy_dns`` (ncat's ``--proxy-dns``).
PROXY_DNS = ("local", "remote", "both", "none")


class Proxy:
    """One proxy: its protocol (one of :data:`PROXY_KINDS`), address, and credentials.

    ``str()`` is its URL, password hidden: ``socks5://alice@127.0.0.1:1080``.
    """

    __slots__ = ("address", "credentials", "kind")

    def __init__(self, kind: str, address: InetAddress, credentials: Credentials | None = None) -> None:
        if kind not in PROXY_KINDS:
            raise AddressError(f'Invalid proxy type "{kind}".')
        self.kind = kind
        self.address = address
        self.credentials = credentials

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return (self.kind, self.address, self.credentials) == (other.kind, other.address, other.credentials)

    def __hash__(self) -> int:
        return hash((self.kind, self.address, self.credentials))

    def __repr__(self) -> str:
        return f"Proxy({self.kind!r}, {self.address!r}, {self.credentials!r})"

    def __str__(self) -> str:
        user = "" if self.credentials is None else f"{self.credentials.username}@"
        return f"{self.kind}://{user}{self.address}"


def parse_proxies(text: str, *, kind: str = "http", credentials: Credentials | None = None) -> tuple[Proxy, ...]:
    """Read ncat's ``--proxy`` value, extended to a chain.

    ``text`` is one proxy or several separated by commas, first hop first. Each is
    ``HOST[:PORT]`` (``[V6]:PORT`` for an IPv6 literal with a port), of protocol
    ``kind`` with ``credentials``, or a URL, ``KIND://[USER[:PASS]@]HOST[:PORT]``, which
    says its own protocol and credentials (percent-escapes allowed in them). A missing
    port is the kind's default (:data:`DEFAULT_PROXY_PORTS`).

    Raises:
        AddressError: a kind that is not one of :data:`PROXY_KINDS`, or a bad address.
    """
    if kind not in PROXY_KINDS:
        raise AddressError(f'Invalid proxy type "{kind}".')
    items = text.split(",")
    if any(not item for item in items):
        raise AddressError(f"Invalid proxy {text!r}: an empty hop")
    return tuple(_parse_one(item, kind, credentials) for item in items)


def _parse_one(item: str, kind: str, credentials: Credentials | None) -> Proxy:
    scheme, sep, rest = item.partition("://")
    if sep:
        if scheme.lower() not in PROXY_KINDS:
            raise AddressError(f'Invalid proxy type "{scheme}".')
        kind = scheme.lower()
        userinfo, at, hostport = rest.rpartition("@")
        if at:
            from urllib.parse import unquote  # only for a URL with credentials

            credentials = Credentials.parse(userinfo)
            credentials = Credentials(
                unquote(credentials.username), None if credentials.password is None else unquote(credentials.password)
            )
        item = hostport
    return Proxy(kind, _parse_host_port(item, DEFAULT_PROXY_PORTS[kind]), credentials)


def _parse_host_port(text: str, default_port: int) -> InetAddress:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise AddressError(f"Invalid proxy address {text!r}")
        return InetAddress(host, _parse_port(rest[1:]) if rest else default_port)
    if text.count(":") > 1:
        return InetAddress(text, default_port)  # a bare IPv6 literal, as ncat takes it
    host, colon, port_text = text.partition(":")
    return InetAddress(host, _parse_port(port_text) if colon else default_port)


def _parse_port(text: str) -> int:
    from enchufe.address import parse_port

    try:
        return parse_port(text)
    except AddressError:
        raise AddressError(f'Invalid proxy port number "{text}".') from None


def connect_through(
    chain: Sequence[Proxy],
    target: InetAddress,
    *,
    connect: Connector,
    timeout: float | None,
    proxy_dns: str = "remote",
    resolver: Resolver,
    family: int,
    on_progress: Progress | None = None,
) -> Connection:
    """Open a connection to ``target`` through ``chain``; see the module docstring.

    Args:
        chain: the proxies, first hop first; at least one.
        target: where the last proxy connects.
        connect: opens the TCP connection to the first proxy, given its address and the
            seconds left.
        timeout: seconds for everything, first connect to last answer; ``None``: no limit.
        proxy_dns: where names of the target and of later hops are resolved.
        resolver: resolves what is resolved here.
        family: the address family of what is resolved here (``AF_UNSPEC``: any).
        on_progress: called with each of ncat's ``-v`` lines for the handshakes.

    Returns:
        The connection, ready for the target's bytes (and TLS). Bytes the last proxy
        sent after its answer are its first bytes.

    Raises:
        ProxyError: a proxy refused or broke its protocol.
        ConnectTimeout: the deadline passed.
        ResolveError: a name to be resolved here does not resolve.
        ConnectError, ConnectionLost: the first proxy, or a later one, could not be reached.
    """
    if not chain:
        raise ValueError("connect_through needs at least one proxy")
    if proxy_dns not in PROXY_DNS:
        raise ValueError(f"proxy_dns must be one of {PROXY_DNS}, not {proxy_dns!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    destinations = [hop.address for hop in chain[1:]] + [target]

    def establish(hops: int) -> Connection:
        """A connection to ``chain[hops]``'s proxy (``hops == len(chain)``: to the
        target), through the ``hops`` proxies before it."""
        try:
            conn = connect(chain[0].address, remaining_time(deadline))
        except ConnectError as exc:  # ncat's words: the proxy, not the target, is unreachable
            raise ProxyError(f"Proxy connection failed: {exc}", proxy=str(chain[0].address)) from exc
        try:
            for index in range(hops):
                destination = destinations[index]
                host = _host_to_send(destination.host, proxy_dns, resolver, family)
                again = functools.partial(establish, index)  # a connection to this hop's proxy anew
                hop = chain[index]
                if on_progress is not None and hop.kind != "http":  # ncat says it for SOCKS only
                    on_progress(f"Connected to proxy {conn.peer if index == 0 else hop.address}")
                conn = _tunnel(conn, hop, host, destination.port, deadline, again, on_progress)
        except BaseException:
            conn.close()
            raise
        return conn

    return establish(len(chain))


def _host_to_send(host: str, proxy_dns: str, resolver: Resolver, family: int) -> str:
    """The name or address a proxy is asked to connect to."""
    if is_address(host) or proxy_dns == "remote":
        return host
    if proxy_dns == "none":
        raise ResolveError(f"Error: Failed to resolve host {host} locally")  # ncat's words
    import socket

    try:
        return resolver.resolve(host, 0, family=family, type=socket.SOCK_STREAM, proto=0)[0].sockaddr[0]
    except ResolveError:
        if proxy_dns == "both":
            return host
        raise


def is_address(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (with or without a ``%zone``), False for a name."""
    import socket

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.partition("%")[0])
        except OSError:
            continue
        return True
    return False


def _tunnel(
    conn: Connection,
    proxy: Proxy,
    host: str,
    port: int,
    deadline: float | None,
    reconnect: Callable[[], Connection],
    on_progress: Progress | None,
) -> Connection:
    """Ask ``proxy``, at the end of ``conn``, for a tunnel to ``host:port``."""
    try:
        if proxy.kind == "http":
            from enchufe.net.proxy_http import http_connect

            return http_connect(conn, host, port, proxy.credentials, deadline=deadline, reconnect=reconnect)
        from enchufe.net.proxy_socks import socks4_connect, socks5_connect

        if proxy.kind == "socks4":
            user_id = "" if proxy.credentials is None else proxy.credentials.as_text()  # ncat's: USER:PASS whole
            socks4_connect(conn, host, port, user_id, deadline=deadline)
        else:
            socks5_connect(conn, host, port, proxy.credentials, deadline=deadline, on_progress=on_progress)
        return conn
    except ReceiveTimeout as exc:
        raise ConnectTimeout(f"{proxy.address}: no answer from the proxy in time") from exc
    except ProxyError as exc:
        exc.proxy = str(proxy.address)  # the hop's own: its connection's peer is the first proxy
        raise


def leftover_first(conn: Connection) -> Stream:
    """``conn``'s stream, with the bytes ``conn`` buffered (what a proxy sent after its
    answer) delivered before anything else: a relay reads the stream, not the
    connection."""
    if not conn.buffered:
        return conn.stream
    return _PrefixedStream(conn.stream, conn.recv(conn.buffered))


class _PrefixedStream:
    """A stream whose first bytes are ``prefix``."""

    def __init__(self, stream: Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.is_datagram = False

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: float | None = None) -> bytes:
        if self._prefix:
            chunk, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return chunk
        return self._stream.recv(max_bytes, timeout=timeout)

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        self._stream.send_all(data, timeout=timeout)

    def send_eof(self) -> None:
        self._stream.send_eof()

    def close(self) -> None:
        self._stream.close()

    def pending(self) -> int:
        return len(self._prefix) + self._stream.pending()

    def abort(self) -> None:
        self._stream.abort()

    def fileno(self) -> int:
        return self._stream.fileno()
