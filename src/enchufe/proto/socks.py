"""SOCKS4, SOCKS4a and SOCKS5 (RFC 1928, with RFC 1929's user name and password), sans-IO.

Both sides of the protocol, as pure functions of bytes:

- **The client's** messages are built by :func:`socks4_request`, :func:`socks5_greeting`,
  :func:`socks5_auth_request` and :func:`socks5_request`; the proxy's replies are read by
  :func:`parse_socks4_reply`, :func:`parse_socks5_method`, :func:`parse_socks5_auth_reply`
  and :func:`parse_socks5_reply`. Each parser is given the bytes received so far and
  returns either :class:`NeedMore` (how many more bytes it needs at least: a caller that
  reads exactly that many never reads past the reply) or the reply and the number of
  bytes it took (whatever follows is the caller's: the target's first bytes).
- **The server's** side is a negotiator per client, :class:`Socks5Negotiator` and
  :class:`Socks4Negotiator`, speaking :mod:`enchufe.proto.proxy`'s actions to
  :mod:`enchufe.serve.proxy_server`: CONNECT only, to an IPv4 or IPv6 address or a name.

Bad bytes raise :class:`~enchufe.errors.ProtocolError` in the parsers and builders; a
negotiator never raises: it answers with the protocol's refusal, where it has one, and
closes. Nothing is buffered beyond one message's largest size (SOCKS4's user id and
SOCKS4a's name are capped at :data:`SOCKS4_MAX_FIELD` bytes).
"""

from __future__ import annotations

import hmac
import ipaddress
import struct

from enchufe.errors import ProtocolError
from enchufe.proto.proxy import Close, Credentials, OpenUpstream, Reply, SendUpstream, StartTunnel, typed_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.proto.proxy import Action

__all__ = [
    "SOCKS4_MAX_FIELD",
    "SOCKS4_REPLY_MESSAGES",
    "SOCKS5_REPLY_MESSAGES",
    "NeedMore",
    "Socks4Negotiator",
    "Socks4Reply",
    "Socks5Negotiator",
    "Socks5Reply",
    "parse_socks4_reply",
    "parse_socks5_auth_reply",
    "parse_socks5_method",
    "parse_socks5_reply",
    "socks4_request",
    "socks5_auth_request",
    "socks5_greeting",
    "socks5_request",
]

SOCKS4_VERSION = 4
SOCKS5_VERSION = 5
#: RFC 1929's version of the user name and password exchange.
AUTH_VERSION = 1

COMMAND_CONNECT = 1
COMMAND_BIND = 2
COMMAND_UDP_ASSOCIATE = 3

ATYP_IPV4 = 1
ATYP_DOMAIN = 3
ATYP_IPV6 = 4

METHOD_NO_AUTH = 0
METHOD_GSSAPI = 1
METHOD_USERNAME_PASSWORD = 2
METHOD_NO_ACCEPTABLE = 0xFF

AUTH_SUCCESS = 0
AUTH_FAILURE = 1

#: SOCKS5 reply codes (RFC 1928 section 6).
SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2
NETWORK_UNREACHABLE = 3
HOST_UNREACHABLE = 4
CONNECTION_REFUSED = 5
TTL_EXPIRED = 6
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8

#: What ncat 7.93 says of each SOCKS5 reply code (after its ``Error: ``).
SOCKS5_REPLY_MESSAGES = {
    GENERAL_FAILURE: "general SOCKS server failure.",
    NOT_ALLOWED: "connection not allowed by ruleset.",
    NETWORK_UNREACHABLE: "Network unreachable.",
    HOST_UNREACHABLE: "Host unreachable.",
    CONNECTION_REFUSED: "Connection refused.",
    TTL_EXPIRED: "TTL expired.",
    COMMAND_NOT_SUPPORTED: "Command not supported.",
    ADDRESS_TYPE_NOT_SUPPORTED: "Address type not supported.",
}
#: ncat's words for any other code.
SOCKS5_UNASSIGNED_MESSAGE = "unassigned value in the reply."

#: SOCKS4 reply codes.
SOCKS4_GRANTED = 90
SOCKS4_REJECTED = 91
SOCKS4_NO_IDENTD = 92
SOCKS4_IDENTD_MISMATCH = 93

#: What each SOCKS4 refusal means (ncat says only ``Proxy connection failed.``).
SOCKS4_REPLY_MESSAGES = {
    SOCKS4_REJECTED: "request rejected or failed",
    SOCKS4_NO_IDENTD: "request rejected: the proxy cannot reach the client's identd",
    SOCKS4_IDENTD_MISMATCH: "request rejected: the user id does not match identd's",
}

#: The longest SOCKS4 user id, or SOCKS4a name, a negotiator takes (without its NUL):
#: the protocol sets none, and a server must not buffer a client's bytes without end.
SOCKS4_MAX_FIELD = 255

#: How upstream failures (:data:`enchufe.proto.proxy.UPSTREAM_FAILURES`) are told to a
#: SOCKS5 client. A timeout is "host unreachable": a host that does not answer in time
#: is unreachable as far as anyone can tell, whereas "TTL expired" (code 6, which some
#: servers send) speaks of IP hops and misleads the person reading the client's message.
FAILURE_CODES = {
    "refused": CONNECTION_REFUSED,
    "network-unreachable": NETWORK_UNREACHABLE,
    "host-unreachable": HOST_UNREACHABLE,
    "timeout": HOST_UNREACHABLE,
    "unresolved": HOST_UNREACHABLE,
    "denied": NOT_ALLOWED,
    "failed": GENERAL_FAILURE,
}

_PORT = struct.Struct("!H")
_SOCKS4_HEAD = struct.Struct("!BBH4s")  # version or reply version, command or code, port, address


class NeedMore:
    """A parser's answer when the message is not complete: at least ``count`` more bytes."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeedMore) and other.count == self.count

    def __hash__(self) -> int:
        return hash(("NeedMore", self.count))

    def __repr__(self) -> str:
        return f"NeedMore({self.count})"


class _Reply:
    """A proxy's answer: its ``code`` and the address it gives."""

    __slots__ = ("code", "host", "port")

    def __init__(self, code: int, host: str, port: int) -> None:
        self.code = code
        self.host = host
        self.port = port

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Reply)
        return (self.code, self.host, self.port) == (other.code, other.host, other.port)

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.host, self.port))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, host={self.host!r}, port={self.port})"


class Socks4Reply(_Reply):
    """A SOCKS4 proxy's answer: ``code`` (90 granted, 91-93 refused), and the address it
    gives (often zeros)."""

    __slots__ = ()

    @property
    def granted(self) -> bool:
        return self.code == SOCKS4_GRANTED


class Socks5Reply(_Reply):
    """A SOCKS5 proxy's answer to a request: ``code`` (0 succeeded; see
    :data:`SOCKS5_REPLY_MESSAGES`) and the bound address (a name only if the proxy sent
    one)."""

    __slots__ = ()

    @property
    def succeeded(self) -> bool:
        return self.code == SUCCEEDED


# -- addresses -------------------------------------------------------------------------------


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address, or ``None`` for a name (a zone index is dropped: the proxy
    cannot use ours)."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


def _name_bytes(host: str) -> bytes:
    """A host name as sent on the wire: ASCII (IDNA for an international name), 1 to 255
    bytes, without NUL."""
    try:
        name = host.encode("ascii")
    except UnicodeEncodeError:
        try:
            name = host.encode("idna")
        except UnicodeError as exc:
            raise ProtocolError(f"{host!r} cannot be sent as a host name: {exc}") from None
    if not 1 <= len(name) <= 255:
        raise ProtocolError(f"a host name must be 1 to 255 bytes, not {len(name)}")
    if b"\0" in name:
        raise ProtocolError("a host name cannot contain a NUL byte")
    return name


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ProtocolError(f"port {port} is not between 0 and 65535")


# -- the client's messages --------------------------------------------------------------------


def socks4_request(host: str, port: int, user_id: str = "") -> bytes:
    """A SOCKS4 CONNECT request: for an IPv4 address, SOCKS4; for a name, SOCKS4a (the
    address 0.0.0.1 and the name after the user id).

    Raises:
        ProtocolError: an IPv6 address (SOCKS4 has no room for one), a name or user id
            that cannot be sent (NUL, longer than 255 bytes), a bad port.
    """
    _check_port(port)
    uid = typed_bytes(user_id)
    if b"\0" in uid or len(uid) > SOCKS4_MAX_FIELD:
        raise ProtocolError(f"a SOCKS4 user id must be at most {SOCKS4_MAX_FIELD} bytes without NUL")
    address = _ip_address(host)
    if isinstance(address, ipaddress.IPv6Address):
        raise ProtocolError("IPv6 addresses are not supported with SOCKS4.")
    if address is not None:
        return _SOCKS4_HEAD.pack(SOCKS4_VERSION, COMMAND_CONNECT, port, address.packed) + uid + b"\0"
    name = _name_bytes(host)
    return _SOCKS4_HEAD.pack(SOCKS4_VERSION, COMMAND_CONNECT, port, b"\0\0\0\1") + uid + b"\0" + name + b"\0"


def socks5_greeting(methods: list[int]) -> bytes:
    """The SOCKS5 greeting offering ``methods`` (e.g. ``[METHOD_NO_AUTH]``).

    Raises:
        ProtocolError: no method, more than 255, or one that is not a byte.
    """
    if not 1 <= len(methods) <= 255 or not all(0 <= method <= 255 for method in methods):
        raise ProtocolError("a SOCKS5 greeting offers 1 to 255 methods, each a byte")
    return bytes([SOCKS5_VERSION, len(methods), *methods])


def socks5_auth_request(username: str, password: str) -> bytes:
    """RFC 1929's user name and password request.

    Raises:
        ProtocolError: a user name or password not of 1 to 255 bytes in UTF-8.
    """
    user, secret = typed_bytes(username), typed_bytes(password)
    if not (1 <= len(user) <= 255 and 1 <= len(secret) <= 255):
        raise ProtocolError("a SOCKS5 user name and password must each be 1 to 255 bytes")
    return bytes([AUTH_VERSION, len(user)]) + user + bytes([len(secret)]) + secret


def socks5_request(host: str, port: int) -> bytes:
    """A SOCKS5 CONNECT request for an IPv4 or IPv6 address or a name.

    Raises:
        ProtocolError: a name that cannot be sent (not 1 to 255 bytes, NUL), a bad port.
    """
    _check_port(port)
    return bytes([SOCKS5_VERSION, COMMAND_CONNECT, 0]) + _socks5_address(host) + _PORT.pack(port)


def _socks5_address(host: str) -> bytes:
    address = _ip_address(host)
    if isinstance(address, ipaddress.IPv4Address):
        return bytes([ATYP_IPV4]) + address.packed
    if isinstance(address, ipaddress.IPv6Address):
        return bytes([ATYP_IPV6]) + address.packed
    name = _name_bytes(host)
    return bytes([ATYP_DOMAIN, len(name)]) + name


# -- the proxy's replies, read by a client -----------------------------------------------------


def parse_socks4_reply(data: bytes) -> NeedMore | tuple[Socks4Reply, int]:
    """A SOCKS4 reply: 8 bytes, its first 0 (or 4, which some servers send and ncat
    takes too).

    Raises:
        ProtocolError: another first byte.
    """
    if len(data) < _SOCKS4_HEAD.size:
        return NeedMore(_SOCKS4_HEAD.size - len(data))
    version, code, port, packed = _SOCKS4_HEAD.unpack_from(data)
    if version not in (0, SOCKS4_VERSION):
        raise ProtocolError(f"wrong SOCKS4 reply version {version}")
    return Socks4Reply(code, str(ipaddress.IPv4Address(packed)), port), _SOCKS4_HEAD.size


def parse_socks5_method(data: bytes) -> NeedMore | tuple[int, int]:
    """The SOCKS5 proxy's choice of method (:data:`METHOD_NO_ACCEPTABLE`: none).

    Raises:
        ProtocolError: not version 5 (ncat's words).
    """
    if len(data) < 2:
        return NeedMore(2 - len(data))
    if data[0] != SOCKS5_VERSION:
        raise ProtocolError("wrong SOCKS version in connect response.")
    return data[1], 2


def parse_socks5_auth_reply(data: bytes) -> NeedMore | tuple[bool, int]:
    """RFC 1929's answer: whether the user name and password were accepted.

    Raises:
        ProtocolError: not version 1.
    """
    if len(data) < 2:
        return NeedMore(2 - len(data))
    if data[0] != AUTH_VERSION:
        raise ProtocolError(f"wrong version {data[0]} in the proxy's authentication reply")
    return data[1] == AUTH_SUCCESS, 2


def parse_socks5_reply(data: bytes) -> NeedMore | tuple[Socks5Reply, int]:
    """The SOCKS5 proxy's reply to a request, with its bound address.

    Raises:
        ProtocolError: not version 5, or an address type other than IPv4, IPv6 or a name.
    """
    if len(data) < 5:
        return NeedMore(5 - len(data))
    if data[0] != SOCKS5_VERSION:
        raise ProtocolError("wrong SOCKS version in request response.")
    parsed = _parse_socks5_address(data, 3)
    if isinstance(parsed, NeedMore):
        return parsed
    host, port, size = parsed
    return Socks5Reply(data[1], host, port), size


def _parse_socks5_address(data: bytes, start: int) -> NeedMore | tuple[str, int, int]:
    """ATYP, the address and the port at ``data[start:]`` (``data[start + 1]`` is there):
    the host, the port and where they end in ``data``."""
    kind = data[start]
    if kind == ATYP_IPV4:
        end = start + 1 + 4
    elif kind == ATYP_IPV6:
        end = start + 1 + 16
    elif kind == ATYP_DOMAIN:
        end = start + 2 + data[start + 1]
    else:
        raise ProtocolError("invalid proxy bind address type.")
    if len(data) < end + 2:
        return NeedMore(end + 2 - len(data))
    raw = data[start + 1 : end]
    if kind == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(raw))
    elif kind == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(raw))
    else:
        host = raw[1:].decode("ascii", "replace")
    return host, _PORT.unpack_from(data, end)[0], end + 2


# -- the server's side ------------------------------------------------------------------------


def _socks5_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """The server's reply to a request; an unusable bound address is sent as 0.0.0.0:0."""
    address = _ip_address(host)
    if address is None or not 0 <= port <= 65535:
        address, port = ipaddress.IPv4Address(0), 0
    kind = ATYP_IPV4 if isinstance(address, ipaddress.IPv4Address) else ATYP_IPV6
    return bytes([SOCKS5_VERSION, code, 0, kind]) + address.packed + _PORT.pack(port)


def _socks4_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """The server's reply; a bound address SOCKS4 cannot carry (IPv6) is sent as zeros."""
    address = _ip_address(host)
    if not isinstance(address, ipaddress.IPv4Address) or not 0 <= port <= 65535:
        address, port = ipaddress.IPv4Address(0), 0
    return _SOCKS4_HEAD.pack(0, code, port, address.packed)


def _valid_name(raw: bytes) -> str | None:
    """A name a client asked for, if it is one: printable ASCII without spaces (what a
    resolver can be given; a client sends an international name in IDNA already)."""
    if raw and all(0x21 <= byte <= 0x7E for byte in raw):
        return raw.decode("ascii")
    return None


class _Negotiation:
    """What both negotiators share: the buffer, the state, the wait for upstream and the
    start of the tunnel."""

    def __init__(self) -> None:
        self._buffer = b""
        self._state: Callable[[], list[Action] | None] = self._closed
        self._early = b""  # client bytes after the request: upstream's first

    def accepted(self) -> list[Action]:
        return []  # the client speaks first

    def receive_data(self, data: bytes) -> list[Action]:
        if self._state == self._closed:
            return []
        if self._state == self._connecting:
            # The engine stops reading while it connects; bytes given anyway are kept, up
            # to one message's worth, like any other.
            if not data or len(self._early) + len(data) > self._limit():
                return self._close([])
            self._early += data
            return []
        if not data:
            return self._close([])  # the client ended before its request
        self._buffer += data
        actions: list[Action] = []
        while self._state not in (self._closed, self._connecting):
            step = self._state()
            if step is None:  # need more
                break
            actions += step
        return actions

    def _limit(self) -> int:
        raise NotImplementedError

    def _connecting(self) -> list[Action] | None:
        return None

    def _closed(self) -> list[Action] | None:
        return None

    def _close(self, actions: list[Action]) -> list[Action]:
        self._state = self._closed
        self._buffer = self._early = b""
        return [*actions, Close()]

    def _open(self, host: str, port: int, size: int) -> list[Action]:
        """The request of ``size`` bytes asked for ``host:port``: connect there."""
        self._early, self._buffer = self._buffer[size:], b""
        self._state = self._connecting
        return [OpenUpstream(host, port)]

    def _tunnel(self, reply: bytes) -> list[Action]:
        early, self._early = self._early, b""
        self._state = self._closed
        return [Reply(reply), *([SendUpstream(early)] if early else []), StartTunnel()]

    def _upstream_answer(self) -> bool:
        """Whether an upstream outcome is expected now; one at another time is ignored."""
        return self._state == self._connecting


class Socks5Negotiator(_Negotiation):
    """One SOCKS5 client, server side (:class:`enchufe.proto.proxy.ProxyNegotiator`).

    Args:
        credentials: the user name and password a client must give (RFC 1929); ``None``:
            no authentication.

    A client that offers no method the server takes gets ``0xFF`` and is closed; a wrong
    user name or password, RFC 1929's failure and closed; a command other than CONNECT,
    reply 7; an unknown address type, reply 8; another malformed request, reply 1. A
    client not speaking version 5 is closed without a word: there is none in its version.
    """

    #: The largest message: RFC 1929's request (3 + 255 + 255).
    MAX_MESSAGE = 513

    def __init__(self, credentials: Credentials | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self._state = self._greeting

    def _limit(self) -> int:
        return self.MAX_MESSAGE

    def _greeting(self) -> list[Action] | None:
        data = self._buffer
        if len(data) < 2:
            return None
        if data[0] != SOCKS5_VERSION:
            return self._close([])
        end = 2 + data[1]
        if len(data) < end:
            return None
        methods, self._buffer = data[2:end], data[end:]
        wanted = METHOD_NO_AUTH if self.credentials is None else METHOD_USERNAME_PASSWORD
        if wanted not in methods:
            return self._close([Reply(bytes([SOCKS5_VERSION, METHOD_NO_ACCEPTABLE]))])
        self._state = self._request if self.credentials is None else self._authentication
        return [Reply(bytes([SOCKS5_VERSION, wanted]))]

    def _authentication(self) -> list[Action] | None:
        data = self._buffer
        if len(data) < 2:
            return None
        refusal = Reply(bytes([AUTH_VERSION, AUTH_FAILURE]))
        if data[0] != AUTH_VERSION:
            return self._close([refusal])
        user_end = 2 + data[1]
        if len(data) < user_end + 1:
            return None
        end = user_end + 1 + data[user_end]
        if len(data) < end:
            return None
        username, password = data[2:user_end], data[user_end + 1 : end]
        self._buffer = data[end:]
        assert self.credentials is not None
        expected = self.credentials
        # Both compared in full and in constant time: the answer says nothing of which was wrong.
        right_user = hmac.compare_digest(username, typed_bytes(expected.username))
        right_password = hmac.compare_digest(password, typed_bytes(expected.password or ""))
        if not (right_user and right_password):
            return self._close([refusal])
        self._state = self._request
        return [Reply(bytes([AUTH_VERSION, AUTH_SUCCESS]))]

    def _request(self) -> list[Action] | None:
        data = self._buffer
        if len(data) < 5:
            return None
        if data[0] != SOCKS5_VERSION:
            return self._close([Reply(_socks5_reply(GENERAL_FAILURE))])
        if data[3] not in (ATYP_IPV4, ATYP_IPV6, ATYP_DOMAIN):
            return self._close([Reply(_socks5_reply(ADDRESS_TYPE_NOT_SUPPORTED))])
        parsed = _parse_socks5_address(data, 3)
        if isinstance(parsed, NeedMore):
            return None
        if data[1] != COMMAND_CONNECT:
            return self._close([Reply(_socks5_reply(COMMAND_NOT_SUPPORTED))])
        host, port, size = parsed
        if data[3] == ATYP_DOMAIN:
            name = _valid_name(data[5 : 5 + data[4]])
            if name is None:
                return self._close([Reply(_socks5_reply(GENERAL_FAILURE))])
            host = name
        return self._open(host, port, size)

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        if not self._upstream_answer():
            return []
        return self._tunnel(_socks5_reply(SUCCEEDED, bound_host, bound_port))

    def upstream_failed(self, reason: str) -> list[Action]:
        if not self._upstream_answer():
            return []
        return self._close([Reply(_socks5_reply(FAILURE_CODES.get(reason, GENERAL_FAILURE)))])


class Socks4Negotiator(_Negotiation):
    """One SOCKS4 or SOCKS4a client, server side (:class:`enchufe.proto.proxy.ProxyNegotiator`).

    Args:
        user_id: the user id a client must send; ``None``: any.

    Every refusal is reply 91 and a close, except a user id other than ``user_id``:
    reply 93, the protocol's "the user ids differ". A user id or name longer than
    :data:`SOCKS4_MAX_FIELD` bytes is refused when that many bytes have come without
    their NUL. A client not speaking version 4 is closed without a word.
    """

    #: The largest message: the head, a user id and a name, each with its NUL.
    MAX_MESSAGE = _SOCKS4_HEAD.size + 2 * (SOCKS4_MAX_FIELD + 1)

    def __init__(self, user_id: str | None = None) -> None:
        super().__init__()
        self.user_id = user_id
        self._state = self._request

    def _limit(self) -> int:
        return self.MAX_MESSAGE

    def _request(self) -> list[Action] | None:
        data = self._buffer
        if not data:
            return None
        if data[0] != SOCKS4_VERSION:
            return self._close([])
        head = _SOCKS4_HEAD.size
        refusal = Reply(_socks4_reply(SOCKS4_REJECTED))
        uid_end = data.find(b"\0", head, head + SOCKS4_MAX_FIELD + 1)
        if uid_end < 0:
            return self._close([refusal]) if len(data) > head + SOCKS4_MAX_FIELD else None
        _, command, port, packed = _SOCKS4_HEAD.unpack_from(data)
        if command != COMMAND_CONNECT:
            return self._close([refusal])
        user_id = data[head:uid_end]
        end = uid_end + 1
        if packed[:3] == b"\0\0\0" and packed[3]:  # SOCKS4a: the name follows
            name_end = data.find(b"\0", end, end + SOCKS4_MAX_FIELD + 1)
            if name_end < 0:
                return self._close([refusal]) if len(data) > end + SOCKS4_MAX_FIELD else None
            host = _valid_name(data[end:name_end])
            if host is None:
                return self._close([refusal])
            end = name_end + 1
        else:
            host = str(ipaddress.IPv4Address(packed))
        if self.user_id is not None and not hmac.compare_digest(user_id, typed_bytes(self.user_id)):
            return self._close([Reply(_socks4_reply(SOCKS4_IDENTD_MISMATCH))])
        return self._open(host, port, end)

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        if not self._upstream_answer():
            return []
        return self._tunnel(_socks4_reply(SOCKS4_GRANTED, bound_host, bound_port))

    def upstream_failed(self, reason: str) -> list[Action]:
        if not self._upstream_answer():
            return []
        return self._close([Reply(_socks4_reply(SOCKS4_REJECTED))])
