"""Name resolution, injectable.

Everything that turns a host name into socket addresses goes through a
:class:`Resolver`, so ncat's ``-n`` is just :class:`SystemResolver` with
``numeric_only=True`` and tests can substitute a resolver that never touches DNS.
"""

from __future__ import annotations

import socket
from typing import NamedTuple, Protocol

from enchufe.errors import ResolveError

__all__ = ["Resolved", "Resolver", "SystemResolver"]


class Resolved(NamedTuple):
    """One result of a lookup: what ``socket.socket()`` and ``connect``/``bind`` need."""

    family: int
    type: int
    proto: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int]


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
            infos = socket.getaddrinfo(host, port, family, type, proto, flags)
        except socket.gaierror as exc:
            raise ResolveError(f'Could not resolve hostname "{host}": {exc.strerror}', errno=exc.errno) from exc
        except UnicodeError as exc:
            raise ResolveError(f'Could not resolve hostname "{host}": {exc}') from exc
        return [Resolved(f, t, p, addr) for f, t, p, _, addr in infos if isinstance(addr[0], str)]
