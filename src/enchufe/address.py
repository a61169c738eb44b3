"""Addresses: what a socket connects to or listens on, as plain immutable values.

An :data:`Address` is either an :class:`InetAddress` (a host and a port; the host is a
name, an IPv4 literal or an IPv6 literal, possibly with a ``%zone``) or a
:class:`UnixAddress` (a filesystem path, or a Linux abstract name).

Text forms, accepted by :func:`parse_address` and produced by ``str()``::

    example.org:80   127.0.0.1:80   [::1]:80   [fe80::1%eth0]:80
    ::1              (a bare IPv6 literal: the port comes from default_port)
    /run/app.sock    ./relative.sock    unix:relative.sock    @abstract-name
    [unix]:80        (a host named "unix": brackets keep it from reading as a path)

``parse_address(str(a)) == a`` holds for every valid address. Nothing here touches
the network: resolving names is the job of :mod:`enchufe.net.resolve`.
"""

from __future__ import annotations

import os

from enchufe.errors import AddressError

__all__ = [
    "Address",
    "InetAddress",
    "UnixAddress",
    "format_host_port",
    "parse_address",
    "parse_port",
]

_FORBIDDEN_HOST_CHARS = frozenset("[]/ \t\r\n")


# Values are small tuple subclasses rather than dataclasses or NamedTuples: importing
# dataclasses or typing would cost the command more start-up time than all of enchufe.


class InetAddress(tuple[str, int]):
    """An Internet address: a host (name or IP literal, brackets removed) and a port.

    It is a ``(host, port)`` tuple, so it can be handed to ``socket.connect`` as is.
    """

    __slots__ = ()

    def __new__(cls, host: str, port: int) -> InetAddress:
        if not host or _FORBIDDEN_HOST_CHARS.intersection(host) or host[0] == "@":
            raise AddressError(f"Invalid host {host!r}")
        if not 0 <= port <= 65535:
            raise AddressError(f'Invalid port number "{port}"')
        return tuple.__new__(cls, (host, port))

    def __getnewargs__(self) -> tuple[str, int]:
        return (self[0], self[1])

    @property
    def host(self) -> str:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]

    def __repr__(self) -> str:
        return f"InetAddress(host={self[0]!r}, port={self[1]!r})"

    def __str__(self) -> str:
        return format_host_port(self[0], self[1])


class UnixAddress(tuple[str]):
    """A Unix domain socket address.

    ``path`` is a filesystem path, or ``@name`` for a name in Linux's abstract
    namespace (which has no file and vanishes with the last socket).
    """

    __slots__ = ()

    def __new__(cls, path: str) -> UnixAddress:
        if not path or "\0" in path:
            raise AddressError(f"Invalid unix socket path {path!r}")
        return tuple.__new__(cls, (path,))

    def __getnewargs__(self) -> tuple[str]:
        return (self[0],)

    @property
    def path(self) -> str:
        return self[0]

    def __repr__(self) -> str:
        return f"UnixAddress(path={self[0]!r})"

    @property
    def is_abstract(self) -> bool:
        return self.path.startswith("@")

    def sockaddr(self) -> str | bytes:
        """The address in the form ``socket.bind``/``connect`` expect.

        A name from the command line may hold bytes that are not UTF-8 (Python
        decodes argv with ``surrogateescape``); ``os.fsencode`` gives them back as
        they were, as the socket module does for a filesystem path.
        """
        if self.is_abstract:
            return b"\0" + os.fsencode(self.path[1:])
        return self.path

    def __str__(self) -> str:
        if self.path.startswith(("/", "@", ".")):
            return self.path
        return "unix:" + self.path


Address = InetAddress | UnixAddress


def format_host_port(host: str, port: int) -> str:
    """Join a host and a port, bracketing IPv6 literals: ``[::1]:80``.

    A host named ``unix`` is bracketed too, so that ``[unix]:80`` cannot be read as
    the Unix socket ``unix:80``.
    """
    if ":" in host or host == "unix":
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_port(text: str) -> int:
    """Parse a decimal port number from 0 to 65535.

    Raises:
        AddressError: ``Invalid port number "<text>"`` for anything else (ranges
            such as ``1-100``, signs, spaces, service names).
    """
    if text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535:
        return int(text)
    raise AddressError(f'Invalid port number "{text}"')


def parse_address(text: str, *, default_port: int | None = None) -> Address:
    """Parse the text form of an address (see the module docstring).

    Args:
        text: the address.
        default_port: the port for a host given without one; without a default, a
            missing port is an error.

    Raises:
        AddressError: the text is not an address.
    """
    if text.startswith("unix:"):
        return UnixAddress(text[5:])
    if text.startswith(("/", "@", ".")):
        return UnixAddress(text)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (":" not in host and host != "unix"):
            raise AddressError(f"Invalid IPv6 address {text!r}")
        if rest:
            if not rest.startswith(":"):
                raise AddressError(f"Invalid address {text!r}")
            return InetAddress(host, parse_port(rest[1:]))
        return InetAddress(host, _require_port(text, default_port))
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return InetAddress(host, parse_port(port))
    return InetAddress(text, _require_port(text, default_port))


def _require_port(text: str, default_port: int | None) -> int:
    if default_port is None:
        raise AddressError(f"Missing port in address {text!r}")
    return default_port
