"""Name resolution, injectable.

Everything that turns a host name into socket addresses goes through a
:class:`Resolver`, so ncat's ``-n`` is just :class:`SystemResolver` with
``numeric_only=True`` and tests can substitute a resolver that never touches DNS.
"""

from __future__ import annotations

import socket

from enchufe.errors import ResolveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # a protocol only matters to type checkers; typing is slow to import

__all__ = ["Resolved", "Resolver", "SystemResolver"]

Sockaddr = tuple[str, int] | tuple[str, int, int, int]


class Resolved(tuple[int, int, int, Sockaddr]):
    """One result of a lookup: what ``socket.socket()`` and ``connect``/``bind`` need."""

    __slots__ = ()

    def __new__(cls, family: int, type: int, proto: int, sockaddr: Sockaddr) -> Resolved:
        return tuple.__new__(cls, (family, type, proto, sockaddr))

    @property
    def family(self) -> int:
        return self[0]

    @property
    def type(self) -> int:
        return self[1]

    @property
    def proto(self) -> int:
        return self[2]

    @property
    def sockaddr(self) -> Sockaddr:
        return self[3]

    def __repr__(self) -> str:
        return f"Resolved(family={self[0]!r}, type={self[1]!r}, proto={self[2]!r}, sockaddr={self[3]!r})"


class Resolver(Protocol):
    def resolve(
        self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
    ) -> list[Resolved]:
        """Return the addresses of ``host``, in the order they should be tried.

        Raises:
            ResolveError: the host has no address (of the requested family).
        """
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``).

    Args:
        numeric_only: accept only IP literals, never query DNS (ncat's ``-n``).
    """

    def __init__(self, *, numeric_only: bool = False) -> None:
        self.numeric_only = numeric_only

    def resolve(
        self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
    ) -> list[Resolved]:
        flags = (socket.AI_NUMERICHOST if self.numeric_only else 0) | (socket.AI_PASSIVE if passive else 0)
        try:
            # An ASCII name goes as bytes: as str it would load the IDNA codec (and re),
            # the largest single cost of a short-lived command's start-up.
            name: str | bytes = host.encode() if host.isascii() else host
            infos = socket.getaddrinfo(name, port, family, type, proto, flags)
        except socket.gaierror as exc:
            raise ResolveError(f'Could not resolve hostname "{host}": {exc.strerror}', errno=exc.errno) from exc
        except UnicodeError as exc:
            raise ResolveError(f'Could not resolve hostname "{host}": {exc}') from exc
        return [Resolved(f, t, p, addr) for f, t, p, _, addr in infos if isinstance(addr[0], str)]
