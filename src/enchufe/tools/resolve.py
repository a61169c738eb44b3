"""Name lookups as the system resolver answers them, each timed: the library half of
``enchufe-resolve``.

Four questions, each one libc call, each an :class:`Answer`:

- :func:`forward`: ``getaddrinfo`` with a family, a socket type and ``AI_CANONNAME``:
  every address in the resolver's order, and the canonical name;
- :func:`legacy`: ``gethostbyname_ex``, IPv4 only: the official name, its aliases and
  addresses (``/etc/hosts`` aliases show here, not in ``getaddrinfo``);
- :func:`reverse`: ``gethostbyaddr``: the names of an address (a PTR record, or the
  ``/etc/hosts`` line);
- :func:`hostname`: ``gethostname``, the machine's own name.

:func:`lookup_all` runs many on a few threads, with a deadline each, and yields the
answers in the order asked. A libc lookup cannot be cancelled: one past its deadline
is answered as timed out and its thread, a daemon, is left to finish on its own.

Every function takes ``lookups``, the object whose methods make the calls
(:class:`SystemLookups` by default), so that tests can answer without a resolver.
"""

from __future__ import annotations

import socket
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Protocol
else:
    Protocol = object  # a protocol only matters to type checkers; typing is slow to import

__all__ = [
    "Answer",
    "Entry",
    "Lookups",
    "SystemLookups",
    "forward",
    "hostname",
    "is_address",
    "legacy",
    "lookup",
    "lookup_all",
    "reverse",
    "timed_out",
]

#: The socket types ``--type`` names, and what getent calls them.
SOCKET_TYPES: dict[str, int] = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}
_TYPE_NAMES: dict[int, str] = {number: name for name, number in SOCKET_TYPES.items()}
_FAMILY_NAMES: dict[int, str] = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


class Lookups(Protocol):
    """The resolver's four calls, with the signatures of :mod:`socket`'s."""

    def getaddrinfo(
        self, host: str, port: str | None, family: int, type: int, proto: int, flags: int
    ) -> list[tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]]: ...

    def gethostbyname_ex(self, name: str) -> tuple[str, list[str], list[str]]: ...

    def gethostbyaddr(self, address: str) -> tuple[str, list[str], list[str]]: ...

    def gethostname(self) -> str: ...


def _ascii_as_bytes(name: str) -> str | bytes:
    """An ASCII name as bytes: as str the socket module would load the IDNA codec (and
    re), the largest single cost of a short-lived command's start-up."""
    return name.encode() if name.isascii() else name


class SystemLookups:
    """The operating system's resolver: :mod:`socket`'s functions, as they are."""

    def getaddrinfo(
        self, host: str, port: str | None, family: int, type: int, proto: int, flags: int
    ) -> list[tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]]:
        infos = socket.getaddrinfo(_ascii_as_bytes(host), port, family, type, proto, flags)
        return [(f, t, p, canonical, addr) for f, t, p, canonical, addr in infos if isinstance(addr[0], str)]

    def gethostbyname_ex(self, name: str) -> tuple[str, list[str], list[str]]:
        return socket.gethostbyname_ex(_ascii_as_bytes(name))  # type: ignore[arg-type]

    def gethostbyaddr(self, address: str) -> tuple[str, list[str], list[str]]:
        return socket.gethostbyaddr(_ascii_as_bytes(address))  # type: ignore[arg-type]

    def gethostname(self) -> str:
        return socket.gethostname()


SYSTEM = SystemLookups()


class Entry:
    """One address of an answer.

    Attributes:
        address: the address as text (an IPv6 one with its ``%scope`` if it has one).
        family: ``"inet"`` or ``"inet6"``.
        type: ``"stream"``, ``"dgram"`` or ``"raw"`` for a ``getaddrinfo`` answer;
            ``None`` where the call has no socket type (``gethostbyname_ex``, ``gethostbyaddr``).
        port: the service's port (``--service``), else ``None``.
    """

    __slots__ = ("address", "family", "port", "type")

    def __init__(self, address: str, family: str, type: str | None = None, port: int | None = None) -> None:
        self.address = address
        self.family = family
        self.type = type
        self.port = port

    def record(self) -> dict[str, object]:
        return {"address": self.address, "family": self.family, "type": self.type, "port": self.port}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self.record() == other.record()

    def __repr__(self) -> str:
        return f"Entry({self.address!r}, {self.family!r}, type={self.type!r}, port={self.port!r})"


class Answer:
    """What one lookup answered.

    Attributes:
        query: what was asked (a name, an address; the host name for :func:`hostname`).
        kind: ``"forward"``, ``"legacy"``, ``"reverse"`` or ``"hostname"``.
        status: ``"ok"``, ``"failed"`` (the resolver said no: ``error`` has its words)
            or ``"timeout"`` (no answer within the deadline).
        entries: the addresses (:class:`Entry`), in the resolver's order.
        canonical: the canonical name (forward), the official name (legacy,
            reverse), the machine's name (hostname); ``None`` when there is none.
        aliases: the other names (legacy, reverse).
        error: the resolver's words for a failure, ``None`` when it answered.
        elapsed_ns: the time the call took (monotonic), or the deadline that passed.
    """

    __slots__ = ("aliases", "canonical", "elapsed_ns", "entries", "error", "kind", "query", "status")

    def __init__(
        self,
        query: str,
        kind: str,
        *,
        status: str = "ok",
        entries: Sequence[Entry] = (),
        canonical: str | None = None,
        aliases: Sequence[str] = (),
        error: str | None = None,
        elapsed_ns: int = 0,
    ) -> None:
        self.query = query
        self.kind = kind
        self.status = status
        self.entries = list(entries)
        self.canonical = canonical
        self.aliases = list(aliases)
        self.error = error
        self.elapsed_ns = elapsed_ns

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record(self) -> dict[str, object]:
        """The answer as a JSON object; its keys are always all there (docs/tools/resolve.md)."""
        return {
            "query": self.query,
            "kind": self.kind,
            "status": self.status,
            "canonical": self.canonical,
            "aliases": self.aliases,
            "addresses": [entry.record() for entry in self.entries],
            "error": self.error,
            "elapsed_ms": round(self.elapsed_ns / 1e6, 3),
        }

    def __repr__(self) -> str:
        return f"Answer({self.query!r}, {self.kind!r}, status={self.status!r}, entries={self.entries!r})"


def is_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address literal (``fe80::1%lo`` included), as
    ``inet_pton`` reads them: strict, so ``127.1`` is not one (``getaddrinfo`` would
    still read it)."""
    for family, literal in ((socket.AF_INET, text), (socket.AF_INET6, text.partition("%")[0])):
        try:
            socket.inet_pton(family, literal)
        except (OSError, ValueError):
            continue
        return True
    return False


def _timed(query: str, kind: str, call: Callable[[], Answer]) -> Answer:
    """Run one libc call (inside ``call``) and time it; the resolver's refusal becomes a
    failed answer in its own words."""
    start = time.monotonic_ns()
    try:
        answer = call()
    except (OSError, ValueError) as exc:  # gaierror, herror; a name IDNA cannot encode, a NUL in it
        words = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        answer = Answer(query, kind, status="failed", error=words)
    answer.elapsed_ns = time.monotonic_ns() - start
    return answer


def forward(
    name: str,
    *,
    family: int = 0,
    type: int = 0,
    service: str | None = None,
    numeric_only: bool = False,
    lookups: Lookups = SYSTEM,
) -> Answer:
    """``getaddrinfo(name, service, family, type)`` with ``AI_CANONNAME``: every
    address in the resolver's order (one per socket type when ``type`` is 0, as
    ``getent ahosts`` shows them) and the canonical name.

    Args:
        numeric_only: ``AI_NUMERICHOST``: only an address literal parses, no lookup
            is made (``-n``).
    """
    flags = socket.AI_CANONNAME | (socket.AI_NUMERICHOST if numeric_only else 0)

    def call() -> Answer:
        infos = lookups.getaddrinfo(name, service, family, type, 0, flags)
        entries = [
            Entry(addr[0], _FAMILY_NAMES.get(f, str(f)), _TYPE_NAMES.get(t, str(t)), addr[1] if service else None)
            for f, t, _, _, addr in infos
        ]
        canonical = next((canonical for *_, canonical, _ in infos if canonical), None)
        return Answer(name, "forward", entries=entries, canonical=canonical)

    return _timed(name, "forward", call)


def legacy(name: str, *, numeric_only: bool = False, lookups: Lookups = SYSTEM) -> Answer:
    """``gethostbyname_ex(name)``: IPv4 only, the official name, the aliases and the
    addresses. With ``numeric_only`` a name is refused as :func:`forward` refuses it."""
    if numeric_only and not is_address(name):
        return forward(name, family=socket.AF_INET, numeric_only=True, lookups=lookups)

    def call() -> Answer:
        official, aliases, addresses = lookups.gethostbyname_ex(name)
        entries = [Entry(address, "inet") for address in addresses]
        return Answer(name, "legacy", entries=entries, canonical=official, aliases=aliases)

    return _timed(name, "legacy", call)


def reverse(address: str, *, lookups: Lookups = SYSTEM) -> Answer:
    """``gethostbyaddr(address)``: the names of an address, the official one first.

    ``address`` must be an address literal (:func:`is_address`): ``gethostbyaddr``
    itself would resolve a name first, a lookup of its own that this answer would hide.
    """
    if not is_address(address):
        raise ValueError(f"not an address: {address!r}")

    def call() -> Answer:
        official, aliases, _ = lookups.gethostbyaddr(address)
        family = "inet6" if ":" in address else "inet"
        return Answer(address, "reverse", entries=[Entry(address, family)], canonical=official, aliases=aliases)

    return _timed(address, "reverse", call)


def hostname(*, lookups: Lookups = SYSTEM) -> Answer:
    """``gethostname()``: the machine's name, as ``canonical``."""

    def call() -> Answer:
        name = lookups.gethostname()
        return Answer(name, "hostname", canonical=name)

    return _timed("", "hostname", call)


def lookup(
    query: str,
    *,
    names_too: bool = False,
    legacy_call: bool = False,
    family: int = 0,
    type: int = 0,
    service: str | None = None,
    numeric_only: bool = False,
    lookups: Lookups = SYSTEM,
) -> list[Answer]:
    """What ``enchufe-resolve`` asks about one operand: its forward answer
    (:func:`legacy`'s with ``legacy_call``), and with ``names_too`` the names of each
    address instead (:func:`reverse`): of ``query`` itself if it is an address, else of
    every distinct address its forward answer has, after that answer."""
    if names_too and is_address(query):
        return [reverse(query, lookups=lookups)]
    if legacy_call:
        answer = legacy(query, numeric_only=numeric_only, lookups=lookups)
    else:
        answer = forward(query, family=family, type=type, service=service, numeric_only=numeric_only, lookups=lookups)
    if not names_too:
        return [answer]
    addresses = dict.fromkeys(entry.address for entry in answer.entries)
    return [answer, *(reverse(address, lookups=lookups) for address in addresses)]


def timed_out(query: str, kind: str, timeout: float) -> Answer:
    """The answer of a lookup still running at its deadline."""
    return Answer(query, kind, status="timeout", error=f"no answer within {timeout:g} s", elapsed_ns=int(timeout * 1e9))


class _Job:
    """One lookup handed to the pool, and what became of it."""

    __slots__ = ("abandoned", "answers", "done", "kind", "lock", "query", "run", "started", "started_ns")

    def __init__(self, query: str, kind: str, run: Callable[[], list[Answer]]) -> None:
        self.query = query
        self.kind = kind
        self.run = run
        self.started = threading.Event()
        self.started_ns = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[Answer] = []
        self.abandoned = False

    def abandon(self) -> bool:
        """Give the lookup up unless it is done; whether it was given up."""
        with self.lock:
            self.abandoned = not self.done.is_set()
            return self.abandoned


def lookup_all(
    lookups: Sequence[tuple[str, str, Callable[[], list[Answer]]]],
    *,
    workers: int = 8,
    timeout: float | None = None,
) -> Iterator[list[Answer]]:
    """Run each lookup on a pool of ``workers`` threads and yield its answers in the
    order given, each as soon as it and those before it are done.

    Args:
        lookups: ``(query, kind, run)``: ``run()`` makes the calls (one or more, such
            as a forward lookup and the reverse of each address) and returns their
            answers; ``query`` and ``kind`` name it in a timed-out answer.
        timeout: each lookup's deadline in seconds, from when a thread starts it; a
            lookup past it yields ``[timed_out(...)]`` instead, and its thread is left
            to finish the libc call (a daemon: it does not hold up the interpreter's
            exit) while a new thread takes its place in the pool.
    """
    import queue

    pending: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
    threads = 0

    def work() -> None:
        while (job := pending.get()) is not None:
            job.started_ns = time.monotonic_ns()
            job.started.set()
            answers = job.run()
            with job.lock:
                job.answers = answers
                job.done.set()
                if job.abandoned:  # a new thread has taken this one's place
                    return

    def start_thread() -> None:
        nonlocal threads
        threads += 1
        threading.Thread(target=work, name="enchufe-resolve", daemon=True).start()

    jobs = [_Job(query, kind, run) for query, kind, run in lookups]
    for job in jobs:
        pending.put(job)
    for _ in range(min(workers, len(jobs))):
        start_thread()
    try:
        for job in jobs:
            # Threads take lookups in order, and one past its deadline has been
            # replaced: this one starts as soon as those before it are seen to.
            job.started.wait()
            if timeout is not None:
                job.done.wait(max(timeout - (time.monotonic_ns() - job.started_ns) / 1e9, 0.0))
                if job.abandon():
                    start_thread()
            else:
                job.done.wait()
            if job.abandoned:
                assert timeout is not None
                yield [timed_out(job.query, job.kind, timeout)]
            else:
                yield job.answers
    finally:
        for _ in range(threads):  # every thread still waiting for a lookup ends
            pending.put(None)
