"""What a proxy server's protocol decides, as values: the vocabulary of the negotiators.

A proxy server (``enchufe -l --proxy-type http|socks4|socks5``) talks its protocol with
each client, then opens a connection upstream and moves bytes. The protocol part is
sans-IO: a *negotiator* per client (:class:`ProxyNegotiator`; the HTTP one is in
:mod:`enchufe.proto.http_proxy`, the SOCKS ones in :mod:`enchufe.proto.socks`) is fed
what happens and answers with a list of actions, which the server
(:mod:`enchufe.serve.proxy_server`) carries out in order:

:class:`Reply`
    send these bytes to the client.
:class:`OpenUpstream`
    connect to ``host:port`` (a name is resolved by the server); the outcome comes back
    as :meth:`ProxyNegotiator.upstream_connected` or
    :meth:`ProxyNegotiator.upstream_failed`. The server asks for nothing else while it
    connects: client bytes that arrive meanwhile wait in the kernel.
:class:`OpenUnixUpstream`
    the same, to a Unix stream socket (a relay's fixed target).
:class:`SendUpstream`
    send these bytes to the upstream connection (a rewritten request head, a request
    body).
:class:`StartTunnel`
    from now on bytes flow both ways unexamined, zero-copy where the kernel can, with
    half-close both ways; the negotiator hears nothing more. Client bytes it was given
    beyond the request come before it, as a :class:`SendUpstream`.
:class:`RelayResponse`
    upstream's bytes flow to the client unexamined until upstream's end of stream,
    then the client is closed; the client's bytes still go to
    :meth:`ProxyNegotiator.receive_data` (a request body), whose answers are carried
    out as before.
:class:`Close`
    close the client once the replies before it are sent.

The negotiator is first asked :meth:`ProxyNegotiator.accepted`, before the client has
said anything (a relay answers with its fixed target; a proxy protocol waits for the
request). It sees the client's end of stream as ``receive_data(b"")``. It raises
nothing: a malformed request is answered (an HTTP status, a SOCKS refusal) and closed
through these actions. It is driven from one thread; anything it shares between clients
(such as :class:`~enchufe.proto.http_auth` nonces) is touched from that thread only.
"""

from __future__ import annotations

__all__ = [
    "UPSTREAM_FAILURES",
    "Close",
    "Credentials",
    "OpenUnixUpstream",
    "OpenUpstream",
    "ProxyNegotiator",
    "RelayResponse",
    "Reply",
    "SendUpstream",
    "StartTunnel",
    "typed_bytes",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol, TypeAlias

    from enchufe.address import UnixAddress
else:
    Protocol = object  # a protocol only matters to type checkers; typing is slow to import

#: Why connecting upstream failed, as :meth:`ProxyNegotiator.upstream_failed` is told:
#: ``"unresolved"`` (the name has no address), ``"refused"``, ``"network-unreachable"``,
#: ``"host-unreachable"``, ``"timeout"``, ``"denied"`` (the server's rules forbid the
#: target), ``"failed"`` (anything else).
UPSTREAM_FAILURES = frozenset(
    {"unresolved", "refused", "network-unreachable", "host-unreachable", "timeout", "denied", "failed"}
)


def typed_bytes(text: str) -> bytes:
    """The bytes of a user name, password or user id as the user typed them: UTF-8, and
    argv's bytes that are not UTF-8 as they were (Python decodes argv with
    ``surrogateescape``, and a plain ``str.encode()`` raises on those surrogates)."""
    return text.encode("utf-8", "surrogateescape")


class Credentials:
    """A user name and password for a proxy (``--proxy-auth USER[:PASS]``).

    ``password`` is ``None`` when none was given; HTTP and SOCKS5 then use an empty
    password. SOCKS4 has no password: its user id is the whole text (:meth:`as_text`),
    as ncat sends it.
    """

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str | None = None) -> None:
        self.username = username
        self.password = password

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """``USER[:PASS]``: everything after the first colon is the password."""
        username, colon, password = text.partition(":")
        return cls(username, password if colon else None)

    def as_text(self) -> str:
        """The ``USER[:PASS]`` text these credentials were parsed from."""
        return self.username if self.password is None else f"{self.username}:{self.password}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.username, self.password) == (other.username, other.password)

    def __hash__(self) -> int:
        return hash((self.username, self.password))

    def __repr__(self) -> str:
        # Never the password: reprs end up in logs.
        return f"Credentials(username={self.username!r}, password={'***' if self.password else self.password!r})"


class _Action:
    __slots__ = ()

    def _fields(self) -> tuple[object, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Action) or type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({fields})"


class Reply(_Action):
    """Send ``data`` to the client."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class OpenUpstream(_Action):
    """Connect to ``host`` (a name or an address literal) and ``port``."""

    __slots__ = ("host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port


class OpenUnixUpstream(_Action):
    """Connect to the Unix stream socket at ``address``; the outcome comes back as
    ``upstream_connected("", 0)`` (a Unix connection has no host or port of its own) or
    ``upstream_failed``."""

    __slots__ = ("address",)

    def __init__(self, address: UnixAddress) -> None:
        self.address = address


class SendUpstream(_Action):
    """Send ``data`` to the upstream connection."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class StartTunnel(_Action):
    """Move bytes both ways, unexamined, until both directions have ended."""

    __slots__ = ()


class RelayResponse(_Action):
    """Move upstream's bytes to the client until upstream ends, then close the client."""

    __slots__ = ()


class Close(_Action):
    """Close the client after the replies already asked for are sent."""

    __slots__ = ()


if TYPE_CHECKING:
    Action: TypeAlias = Reply | OpenUpstream | OpenUnixUpstream | SendUpstream | StartTunnel | RelayResponse | Close


class ProxyNegotiator(Protocol):
    """One client's proxy protocol; see the module docstring."""

    def accepted(self) -> list[Action]:
        """The client is connected and has sent nothing yet."""
        ...

    def receive_data(self, data: bytes) -> list[Action]:
        """The client sent ``data`` (``b""``: its end of stream)."""
        ...

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        """The :class:`OpenUpstream` asked for is connected, from this local address."""
        ...

    def upstream_failed(self, reason: str) -> list[Action]:
        """The :class:`OpenUpstream` asked for failed; ``reason`` is one of
        :data:`UPSTREAM_FAILURES`."""
        ...
