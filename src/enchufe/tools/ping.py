"""Ping: ICMP echo over raw or datagram sockets, or a TCP connect "ping".

:class:`Pinger` sends one probe per interval and yields what happens as it happens: a
:class:`Reply`, an :class:`Error` (an ICMP error about one of our requests, or the
kernel refusing to send one), a :class:`Timeout` (no answer within the wait, or none
by the end of the run; a late answer still counts, as in iputils) and a :class:`Stray` (a reply to another pinger, a
corrupted packet: reported, never counted). Its :class:`Statistics` keep iputils'
counts and arithmetic. One thread, ``poll`` with deadlines.

Sockets, in the order ``kind="auto"`` tries them:

- ``SOCK_RAW`` needs root (``CAP_NET_RAW``). An IPv4 raw socket sees every ICMP message
  the host receives, with the IP header; the kernel's ICMP filter keeps only replies
  and errors, and the identifier picks ours out.
- ``SOCK_DGRAM`` with ``IPPROTO_ICMP``/``IPPROTO_ICMPV6``: the kernel's "ping socket",
  for the groups in ``net.ipv4.ping_group_range``; the kernel chooses the identifier
  (the socket's port) and delivers only our replies, errors through the error queue.
- ``kind="tcp"``: a non-blocking ``connect`` to a port, timed to the SYN-ACK (the port
  is open) or the RST (closed): both prove the host is up. No privilege at all.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from enchufe.errors import ProtocolError, ResolveError
from enchufe.net.resolve import SystemResolver
from enchufe.proto import icmp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Literal, Self

    from enchufe.net.resolve import Resolver

    Kind = Literal["auto", "raw", "datagram", "tcp"]

__all__ = ["Error", "Event", "Pinger", "Reply", "Statistics", "Stray", "Timeout"]

#: Linux's socket options the socket module does not name on every Python.
_IP_RECVTTL, _IP_TTL_MESSAGE = 12, 2
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SOL_RAW, _ICMP_FILTER, _ICMP6_FILTER = 255, 1, 1
_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6 = 2, 3
#: struct sock_extended_err: errno, origin, type, code, pad, info, data; the offender follows.
_EXTENDED_ERROR = struct.Struct("=IBBBBII")
_RECEIVE_SIZE = 65536 + 60
#: The ICMP types a raw socket lets through: replies and errors about what we sent.
_WANTED_V4 = (icmp.ECHO_REPLY, 3, 4, 5, 11, 12)
_WANTED_V6 = (icmp.ECHO_REPLY_V6, 1, 2, 3, 4)


@dataclass(frozen=True)
class Reply:
    """An answer to probe ``sequence``.

    Attributes:
        source: the address it came from.
        size: the ICMP message's bytes (``None`` for TCP).
        ttl: the reply's TTL or hop limit, when the kernel says (``None`` for TCP).
        rtt: seconds from sending to the answer; ``None`` when the payload is too small
            for a timestamp, as iputils does not time those.
        duplicate: a second answer to the same probe (not counted as received).
        state: for TCP, ``"open"`` (SYN-ACK) or ``"closed"`` (RST); ``None`` for ICMP.
    """

    sequence: int
    source: str
    size: int | None
    ttl: int | None
    rtt: float | None
    duplicate: bool = False
    state: str | None = None


@dataclass(frozen=True)
class Error:
    """Probe ``sequence`` drew an error: ICMP's (``type``, ``code``, from ``source``), or
    the local kernel's (``source``, ``type`` and ``code`` are ``None``; ``errno`` set)."""

    sequence: int
    source: str | None
    description: str
    type: int | None = None
    code: int | None = None
    errno: int | None = None


@dataclass(frozen=True)
class Timeout:
    """No answer to probe ``sequence`` within the wait (``timeout``)."""

    sequence: int


@dataclass(frozen=True)
class Stray:
    """A packet not about our probes: a reply to another identifier, an error quoting
    another program's datagram, bytes that are not ICMP. Reported, never counted."""

    source: str
    description: str


Event = Reply | Error | Timeout | Stray


@dataclass
class Statistics:
    """What iputils' summary says, kept in integer microseconds as iputils keeps them
    (so ``mdev`` is iputils' own rounding)."""

    transmitted: int = 0
    received: int = 0
    duplicates: int = 0
    errors: int = 0
    #: The widest gap between the probes sent and the one answered (iputils' "pipe").
    pipe: int = 0
    round_trips_us: list[int] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def loss_percent(self) -> float:
        """The share of probes without an answer, in percent (0 when none was sent)."""
        if not self.transmitted:
            return 0.0
        return (self.transmitted - self.received) * 100.0 / self.transmitted

    @property
    def elapsed(self) -> float:
        """Seconds from the first probe to the end."""
        return self.ended - self.started

    def rtt_us(self) -> tuple[int, int, int, int] | None:
        """``(min, avg, max, mdev)`` in microseconds, duplicates included (as iputils);
        ``None`` when nothing was timed."""
        if not self.round_trips_us:
            return None
        count = len(self.round_trips_us)
        average = sum(self.round_trips_us) // count
        mean_square = sum(t * t for t in self.round_trips_us) // count
        mdev = math.isqrt(max(mean_square - average * average, 0))
        return min(self.round_trips_us), average, max(self.round_trips_us), mdev


class Pinger:
    """Ping ``host``: iterate over the pinger for its events, then read :attr:`statistics`.

    Args:
        host: an address, or a name (resolved by ``resolver``; the first address wins).
        kind: ``"auto"`` (raw, else datagram ICMP), ``"raw"``, ``"datagram"`` or ``"tcp"``.
        port: the port of ``kind="tcp"``.
        family: ``socket.AF_INET``/``AF_INET6`` to use only that family.
        count: stop after this many probes (``-c``); ``None``: until ``deadline``, or forever.
        interval: seconds between probes (``-i``).
        timeout: seconds to wait for each answer (``-W``): after it a :class:`Timeout`,
            and after the last probe, how long to wait when nothing answered yet.
        deadline: seconds after which the run ends, whatever is outstanding (``-w``).
            With a deadline, ``count`` is how many answers end the run early, and the
            first error ends it.
        size: payload bytes (``-s``); 16 or more carry the timestamp that times replies.
        ttl: the TTL or hop limit of what is sent (``-t``).
        resolver: a :class:`~enchufe.net.resolve.Resolver`; the system's by default.

    Raises:
        ResolveError: the host has no address (of that family).
        PermissionError: neither socket kind is allowed (``kind="auto"``), or the one asked for.
        NetworkError: another failure to open the socket.
    """

    def __init__(
        self,
        host: str,
        *,
        kind: Kind = "auto",
        port: int | None = None,
        family: int = socket.AF_UNSPEC,
        count: int | None = None,
        interval: float = 1.0,
        timeout: float = 10.0,
        deadline: float | None = None,
        size: int = 56,
        ttl: int | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        if kind == "tcp" and port is None:
            raise ValueError("a TCP ping needs a port")
        self.host = host
        self.count = count
        self.interval = interval
        self.timeout = timeout
        self.deadline = deadline
        self.size = size
        self.ttl = ttl
        self.port = port
        self.statistics = Statistics()
        resolved = (resolver or SystemResolver()).resolve(
            host,
            port if kind == "tcp" and port is not None else 0,
            family=family,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
        )
        if not resolved:
            raise ResolveError(f'Could not resolve hostname "{host}": no address')
        self.family = resolved[0].family
        self.sockaddr = resolved[0].sockaddr
        #: The target's address as text.
        self.address: str = resolved[0].sockaddr[0]
        self.ipv6 = self.family == socket.AF_INET6
        self.identifier = int.from_bytes(os.urandom(2), "big")
        self._sock: socket.socket | None = None
        self.kind: Kind = "tcp" if kind == "tcp" else self._open_icmp(kind)
        self._sent_ns: dict[int, int] = {}
        self._answered: set[int] = set()
        self._waiting: dict[int, float] = {}  # sequence → when it times out
        self._connecting: dict[int, tuple[int, socket.socket]] = {}  # fd → (sequence, socket), TCP
        self._poll = select.poll()
        if self._sock is not None:
            self._poll.register(self._sock.fileno(), select.POLLIN | select.POLLERR)

    def _open_icmp(self, kind: Kind) -> Kind:
        protocol = socket.IPPROTO_ICMPV6 if self.ipv6 else socket.IPPROTO_ICMP
        kinds: list[Kind] = ["raw", "datagram"] if kind == "auto" else [kind]
        for candidate in kinds:
            socket_type = socket.SOCK_RAW if candidate == "raw" else socket.SOCK_DGRAM
            try:
                sock = socket.socket(self.family, socket_type, protocol)
            except PermissionError:
                continue
            try:
                self._configure(sock, candidate)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            return candidate
        group = os.getgid()
        raise PermissionError(
            errno.EPERM,
            f"Operation not permitted: raw ICMP needs root (CAP_NET_RAW), and group {group} is outside "
            "net.ipv4.ping_group_range; --tcp PORT needs neither",
        )

    def _configure(self, sock: socket.socket, kind: Kind) -> None:
        if self.ipv6:
            level = socket.IPPROTO_IPV6
            sock.setsockopt(level, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(level, _IPV6_RECVERR, 1)
            if self.ttl is not None:
                sock.setsockopt(level, socket.IPV6_UNICAST_HOPS, self.ttl)
            if kind == "raw":  # bit set: blocked
                words = [0xFFFFFFFF] * 8
                for wanted in _WANTED_V6:
                    words[wanted >> 5] &= ~(1 << (wanted & 31))
                sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            if self.ttl is not None:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.ttl)
            if kind == "raw":
                blocked = 0xFFFFFFFF
                for wanted in _WANTED_V4:
                    blocked &= ~(1 << wanted)
                sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", blocked))
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        if kind == "datagram":  # the kernel's identifier is the port it binds
            sock.bind(("::" if self.ipv6 else "0.0.0.0", 0))
            self.identifier = sock.getsockname()[1]

    # -- the run ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        stats = self.statistics
        stats.started = start = time.monotonic()
        end = None if self.deadline is None else start + self.deadline
        next_send = start
        last_send = start
        try:
            while True:
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if self.count is not None and stats.received + stats.errors >= self.count:
                    break
                if end is not None and stats.errors:
                    break
                sending = self.count is None or end is not None or stats.transmitted < self.count
                if sending and now >= next_send:
                    last_send = now
                    next_send = max(next_send + self.interval, now) if self.interval else now
                    yield from self._send()
                    continue
                wake = [*self._waiting.values()]
                if sending:
                    wake.append(next_send)
                else:
                    tmax = max(stats.round_trips_us, default=0) / 1e6
                    linger = max(2 * tmax, self.interval) if stats.received else self.timeout
                    if now >= last_send + linger:
                        break
                    wake.append(last_send + linger)
                if end is not None:
                    wake.append(end)
                yield from self._receive(max(min(wake) - now, 0.0))
                yield from self._expire(time.monotonic())
            # The run is over: what is still unanswered will not count.
            yield from self._expire(math.inf)
        finally:
            stats.ended = time.monotonic()

    def _send(self) -> Iterator[Event]:
        stats = self.statistics
        stats.transmitted += 1
        sequence = stats.transmitted & 0xFFFF
        self._sent_ns[sequence] = time.monotonic_ns()
        self._answered.discard(sequence)
        if self.kind == "tcp":
            yield from self._connect(sequence)
            return
        assert self._sock is not None
        wall = time.time_ns() // 1000
        payload = icmp.echo_payload(self.size, seconds=wall // 1_000_000, microseconds=wall % 1_000_000)
        request = icmp.echo_request(self.identifier, sequence, payload, ipv6=self.ipv6)
        try:
            self._sock.sendto(request, self.sockaddr)
        except OSError as exc:
            stats.errors += 1
            yield Error(sequence, None, exc.strerror or str(exc), errno=exc.errno)
            return
        self._waiting[sequence] = time.monotonic() + self.timeout

    def _connect(self, sequence: int) -> Iterator[Event]:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if self.ttl is not None:
            if self.ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, self.ttl)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.ttl)
        result = sock.connect_ex(self.sockaddr)
        if result == errno.EINPROGRESS:
            self._connecting[sock.fileno()] = (sequence, sock)
            self._poll.register(sock.fileno(), select.POLLOUT)
            self._waiting[sequence] = time.monotonic() + self.timeout
            return
        sock.close()
        yield from self._connected(sequence, result)

    def _connected(self, sequence: int, result: int) -> Iterator[Event]:
        if result in (0, errno.ECONNREFUSED):
            state = "open" if result == 0 else "closed"
            yield self._answer(sequence, self.address, None, None, state=state)
        else:
            self.statistics.errors += 1
            yield Error(sequence, None, os.strerror(result), errno=result)

    def _receive(self, wait: float) -> Iterator[Event]:
        for fd, events in self._poll.poll(math.ceil(wait * 1000)):
            if fd in self._connecting:
                sequence, sock = self._connecting.pop(fd)
                self._poll.unregister(fd)
                result = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.close()
                self._waiting.pop(sequence, None)
                yield from self._connected(sequence, result)
            else:
                if events & select.POLLERR:
                    yield from self._read_errors()
                if events & select.POLLIN:
                    yield from self._read_messages()

    def _read_messages(self) -> Iterator[Event]:
        assert self._sock is not None
        while True:
            try:
                data, ancillary, _, sender = self._sock.recvmsg(_RECEIVE_SIZE, 64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an error queued meanwhile: POLLERR's turn
                return
            source = sender[0]
            try:
                message = icmp.parse_icmp(data, ipv6=self.ipv6, ip_header=self.kind == "raw" and not self.ipv6)
            except ProtocolError as exc:
                yield Stray(source, str(exc))
                continue
            if isinstance(message, icmp.EchoReply):
                if message.identifier != self.identifier or message.sequence not in self._sent_ns:
                    yield Stray(source, f"a reply for id={message.identifier} icmp_seq={message.sequence}")
                    continue
                ttl = message.ttl if message.ttl is not None else _ancillary_ttl(ancillary)
                yield self._answer(message.sequence, source, message.size, ttl, timed=self.size >= icmp.TIMESTAMP_SIZE)
            elif isinstance(message, icmp.IcmpError):
                if message.identifier != self.identifier or message.sequence not in self._sent_ns:
                    yield Stray(source, f"{message.description} about another datagram")
                    continue
                yield self._error(message.sequence, source, message.description, message.type, message.code)

    def _read_errors(self) -> Iterator[Event]:
        """The error queue (``IP_RECVERR``): ICMP errors for a datagram socket, and what
        the kernel itself refuses (a route saying unreachable) for either kind."""
        assert self._sock is not None
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(
                    _RECEIVE_SIZE, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
                )
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < icmp.HEADER_SIZE:
                continue
            _, _, _, identifier, sequence = struct.unpack_from("!BBHHH", data)
            for _, kind, payload in ancillary:
                if kind not in (_IP_RECVERR, _IPV6_RECVERR) or len(payload) < _EXTENDED_ERROR.size:
                    continue
                number, origin, type, code, _, info, _ = _EXTENDED_ERROR.unpack_from(payload)
                if identifier != self.identifier or sequence not in self._sent_ns:
                    continue
                if origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
                    if self.kind == "raw":
                        continue  # a raw socket reads the ICMP error itself too
                    source = _offender(payload[_EXTENDED_ERROR.size :], self.ipv6)
                    yield self._error(
                        sequence, source, icmp.describe_error(type, code, info, ipv6=self.ipv6), type, code
                    )
                else:
                    yield self._error(sequence, None, os.strerror(number), None, None, number)

    def _answer(
        self,
        sequence: int,
        source: str,
        size: int | None,
        ttl: int | None,
        *,
        state: str | None = None,
        timed: bool = True,
    ) -> Reply:
        stats = self.statistics
        elapsed_us = (time.monotonic_ns() - self._sent_ns[sequence]) // 1000
        duplicate = sequence in self._answered
        self._answered.add(sequence)
        self._waiting.pop(sequence, None)
        if duplicate:
            stats.duplicates += 1
        else:
            stats.received += 1
            stats.pipe = max(stats.pipe, ((stats.transmitted - sequence) & 0xFFFF) + 1)
        if timed:
            stats.round_trips_us.append(elapsed_us)
        return Reply(sequence, source, size, ttl, elapsed_us / 1e6 if timed else None, duplicate, state)

    def _error(
        self,
        sequence: int,
        source: str | None,
        description: str,
        type: int | None,
        code: int | None,
        number: int | None = None,
    ) -> Error:
        self.statistics.errors += 1
        self._waiting.pop(sequence, None)
        return Error(sequence, source, description, type, code, number)

    def _expire(self, now: float) -> Iterator[Event]:
        for sequence, when in sorted(self._waiting.items(), key=lambda item: item[1]):
            if when > now:
                break
            del self._waiting[sequence]
            for fd, (connecting, sock) in list(self._connecting.items()):
                if connecting == sequence:
                    del self._connecting[fd]
                    self._poll.unregister(fd)
                    sock.close()
            yield Timeout(sequence)

    # -- resources -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket(s)."""
        if self._sock is not None:
            self._sock.close()
        for _, sock in self._connecting.values():
            sock.close()
        self._connecting.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ancillary_ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The TTL (``IP_RECVTTL``) or hop limit (``IPV6_RECVHOPLIMIT``) among the ancillary data."""
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, _IP_TTL_MESSAGE), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            ttl: int = struct.unpack("=i", data[:4])[0]
            return ttl
    return None


def _offender(sockaddr: bytes, ipv6: bool) -> str | None:
    """The address in the ``struct sockaddr_in(6)`` after a ``sock_extended_err``."""
    if ipv6 and len(sockaddr) >= 24:
        return socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])
    if not ipv6 and len(sockaddr) >= 8:
        return socket.inet_ntop(socket.AF_INET, sockaddr[4:8])
    return None
