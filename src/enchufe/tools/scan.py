"""A port scanner on the event loop: TCP connect and UDP probes, many at once, results in port order.

:func:`scan` expands its targets (names resolved once, addresses, CIDR blocks) and ports
(:func:`parse_ports`: ``1-1024,8080``), then keeps up to ``concurrency`` probes in flight
on one :class:`~enchufe.net.loop.EventLoop` in the calling thread, and yields each
:class:`PortResult` in target then port order as soon as every earlier one is known,
whatever order the probes finish in.

A TCP probe is a non-blocking ``connect``: ``connect_ex``, wait until writable, then
``SO_ERROR``. Connected is **open** (with ``banner``, the first bytes the service sends
within ``banner_wait``, at most :data:`BANNER_SIZE`), refused is **closed**, no answer
within ``timeout`` or an ICMP unreachable (``EHOSTUNREACH``, ``EACCES``...) is
**filtered**.

A UDP probe is a connected UDP socket: one datagram (empty, or a DNS query for the root
to port 53), then a read. An answer is **open**, ``ECONNREFUSED`` on the read (the
kernel's report of an ICMP port unreachable) is **closed**, and silence is
**open|filtered** once ``retries`` more datagrams got none either. Linux answers at most
about one ICMP unreachable per second per peer beyond a small burst
(``net.ipv4.icmp_ratelimit``; loopback is exempt), so a closed UDP port of a distant
Linux host may look open|filtered unless retries and timeout outlast the limit.

An error the local kernel gives at once for the whole address (no route to the
network, an address family without support) makes the host unscannable: a
:class:`HostFailure` takes the place of its ports, as for a name that does not resolve.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

from enchufe.errors import AddressError, ResolveError
from enchufe.net.loop import EventLoop
from enchufe.net.resolve import SystemResolver
from enchufe.net.tunnel import RESET_ON_CLOSE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from enchufe.net.loop import TimerHandle
    from enchufe.net.resolve import Resolver

__all__ = [
    "BANNER_SIZE",
    "MAX_ADDRESSES",
    "HostFailure",
    "PortResult",
    "Target",
    "expand_targets",
    "is_name",
    "parse_ports",
    "scan",
    "scan_targets",
]

#: The most a banner keeps: enough for any greeting line, bounded whatever the service sends.
BANNER_SIZE = 256
#: The most addresses one scan expands its targets to (a /16 of IPv4).
MAX_ADDRESSES = 65536

#: A DNS query for the root's NS records (id 0x656e, recursion desired): a name server
#: answers it, where it ignores an empty datagram.
DNS_ROOT_QUERY = bytes.fromhex("656e01000001000000000000") + b"\x00" + bytes.fromhex("00020001")
_UDP_PAYLOADS = {53: DNS_ROOT_QUERY}

#: Errors a connect reports at once, before any packet, that hold for every port of the
#: address: the host cannot be scanned.
_HOST_ERRORS = {errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL}
#: Errors that say the way to the port is blocked: ICMP unreachable (host, net,
#: administratively prohibited), a local firewall's refusal, a connect that timed out.
_FILTERED_ERRORS = {
    errno.EHOSTUNREACH: "host-unreach",
    errno.ENETUNREACH: "net-unreach",
    errno.EACCES: "admin-prohibited",
    errno.EPERM: "admin-prohibited",
    errno.ETIMEDOUT: "no-response",
    errno.EHOSTDOWN: "host-unreach",
}
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE}


class Target:
    """One address to scan and the target it came from.

    Attributes:
        host: the target as given (a name, an address, a CIDR block).
        address: the address to probe, as text (``127.0.0.1``, ``::1``).
        family: ``AF_INET`` or ``AF_INET6``.
    """

    __slots__ = ("address", "family", "host")

    def __init__(self, host: str, address: str, family: int) -> None:
        self.host = host
        self.address = address
        self.family = family

    def __repr__(self) -> str:
        return f"Target({self.host!r}, {self.address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and (self.host, self.address) == (other.host, other.address)

    def __hash__(self) -> int:
        return hash((self.host, self.address))


class PortResult:
    """What one probe found.

    Attributes:
        target: the :class:`Target` probed.
        port: the port.
        transport: ``"tcp"`` or ``"udp"``.
        state: ``"open"``, ``"closed"``, ``"filtered"`` or (UDP) ``"open|filtered"``.
        reason: why: ``"connected"``, ``"refused"``, ``"no-response"``, ``"host-unreach"``,
            ``"admin-prohibited"``, ``"answer"`` (UDP), ``"port-unreach"`` (UDP)...
        banner: with ``banner``, what an open port sent first (``b""`` if nothing came
            in time); ``None`` otherwise.
        seconds: from the first probe sent to the answer (or to giving up).
    """

    __slots__ = ("banner", "port", "reason", "seconds", "state", "target", "transport")

    def __init__(
        self,
        target: Target,
        port: int,
        transport: str,
        state: str,
        reason: str,
        seconds: float,
        banner: bytes | None = None,
    ) -> None:
        self.target = target
        self.port = port
        self.transport = transport
        self.state = state
        self.reason = reason
        self.seconds = seconds
        self.banner = banner

    def __repr__(self) -> str:
        return f"PortResult({self.target.address!r}, {self.port}/{self.transport}, {self.state!r}, {self.reason!r})"


class HostFailure:
    """A target that could not be scanned at all.

    Attributes:
        host: the target as given.
        address: the address that failed, or ``None`` when the name did not resolve.
        message: why, for people (``Could not resolve hostname "x": ...``, ``Network is unreachable``).
    """

    __slots__ = ("address", "host", "message")

    def __init__(self, host: str, address: str | None, message: str) -> None:
        self.host = host
        self.address = address
        self.message = message

    def __repr__(self) -> str:
        return f"HostFailure({self.host!r}, {self.address!r}, {self.message!r})"


def parse_ports(text: str) -> list[int]:
    """Parse a port list: ports and ranges separated by commas (``22,80,8000-8100``),
    ``-`` for every port from 1 to 65535; an open range runs to the end (``1000-``) or
    from 1 (``-1024``). The ports come back sorted, each once.

    Raises:
        AddressError: ``Invalid port list "<text>"`` for anything else (port 0 included).
    """
    ports: set[int] = set()
    for item in text.split(","):
        low_text, dash, high_text = item.partition("-")
        low = _port_in_list(low_text, text) if low_text else 1
        high = (_port_in_list(high_text, text) if high_text else 65535) if dash else low
        if not item or low > high:
            raise AddressError(f'Invalid port list "{text}"')
        ports.update(range(low, high + 1))
    return sorted(ports)


def _port_in_list(text: str, whole: str) -> int:
    if text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535:
        return int(text)
    raise AddressError(f'Invalid port list "{whole}"')


def expand_targets(
    hosts: Iterable[str], *, family: int = socket.AF_UNSPEC, resolver: Resolver | None = None
) -> list[Target | HostFailure]:
    """Turn hosts (names, IPv4 and IPv6 addresses, CIDR blocks) into the addresses to scan,
    in order: a block's host addresses (``hosts()``: an IPv4 block without its network and
    broadcast addresses, which no host answers on, unless it is a /31 or /32), a name's
    first address of ``family``, resolved once however often it is given. A name that
    does not resolve becomes a :class:`HostFailure`.

    Raises:
        AddressError: a malformed block, an address of the other family than
            ``family``, or more than :data:`MAX_ADDRESSES` addresses in all.
    """
    resolver = SystemResolver() if resolver is None else resolver
    expanded: list[Target | HostFailure] = []
    resolved: dict[str, Target | HostFailure] = {}
    count = 0
    for host in hosts:
        if "/" in host:
            try:
                network = ipaddress.ip_network(host, strict=False)
            except ValueError:
                raise AddressError(f'Invalid CIDR block "{host}"') from None
            _check_family(host, network.version, family)
            count += network.num_addresses
            if count > MAX_ADDRESSES:
                raise AddressError(f"More than {MAX_ADDRESSES} addresses to scan")
            address_family = socket.AF_INET if network.version == 4 else socket.AF_INET6
            expanded.extend(Target(host, str(address), address_family) for address in network.hosts())
            continue
        literal = _literal(host)
        if literal is not None:
            _check_family(host, literal.version, family)
            target: Target | HostFailure = Target(
                host, str(literal), socket.AF_INET if literal.version == 4 else socket.AF_INET6
            )
        elif host in resolved:
            target = resolved[host]
        else:
            try:
                first = resolver.resolve(host, 0, family=family, type=socket.SOCK_STREAM, proto=0)[0]
            except ResolveError as exc:
                target = HostFailure(host, None, str(exc))
            else:
                target = Target(host, str(first.sockaddr[0]), first.family)
            resolved[host] = target
        count += 1
        if count > MAX_ADDRESSES:
            raise AddressError(f"More than {MAX_ADDRESSES} addresses to scan")
        expanded.append(target)
    return expanded


def is_name(host: str) -> bool:
    """True if ``host`` is a name to resolve, not an address or a CIDR block."""
    return "/" not in host and _literal(host) is None


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _check_family(host: str, version: int, family: int) -> None:
    wanted = 4 if family == socket.AF_INET else 6 if family == socket.AF_INET6 else version
    if version != wanted:
        raise AddressError(f'"{host}" is not an IPv{wanted} address')


def scan(
    targets: Iterable[str],
    ports: Iterable[int],
    *,
    transport: str = "tcp",
    family: int = socket.AF_UNSPEC,
    concurrency: int = 256,
    timeout: float = 1.0,
    banner: bool = False,
    banner_wait: float = 0.5,
    retries: int = 1,
    resolver: Resolver | None = None,
) -> Iterator[PortResult | HostFailure]:
    """Scan ``ports`` of every target; yield results in target then port order.

    Args:
        targets: names, addresses and CIDR blocks (see :func:`expand_targets`).
        ports: the ports, probed in the order given (:func:`parse_ports` sorts them).
        transport: ``"tcp"`` (connect) or ``"udp"``.
        family: ``AF_INET`` or ``AF_INET6`` to keep to one family, ``AF_UNSPEC`` for either.
        concurrency: the most probes in flight at once (lowered on its own when the
            process runs out of descriptors).
        timeout: seconds a probe waits for an answer (each UDP datagram, too).
        banner: read what an open port sends first (TCP; UDP keeps the answer).
        banner_wait: seconds to wait for a banner.
        retries: UDP only: how many more datagrams a silent port gets.
        resolver: turns names into addresses (default: the system's).

    Raises:
        AddressError: bad targets (see :func:`expand_targets`), at the call.
        ValueError: a transport other than tcp and udp, a concurrency below 1.

    Names are resolved at the call; the probes start at the first ``next``. Closing the
    iterator early closes every probe in flight.
    """
    return scan_targets(
        expand_targets(targets, family=family, resolver=resolver),
        ports,
        transport=transport,
        concurrency=concurrency,
        timeout=timeout,
        banner=banner,
        banner_wait=banner_wait,
        retries=retries,
    )


def scan_targets(
    targets: Iterable[Target | HostFailure],
    ports: Iterable[int],
    *,
    transport: str = "tcp",
    concurrency: int = 256,
    timeout: float = 1.0,
    banner: bool = False,
    banner_wait: float = 0.5,
    retries: int = 1,
) -> Iterator[PortResult | HostFailure]:
    """:func:`scan` of targets :func:`expand_targets` expanded already (a command that
    counts them first, or reports its own target errors); a :class:`HostFailure` among
    them is yielded in its turn.

    Raises:
        ValueError: a transport other than tcp and udp, a concurrency below 1.
    """
    if transport not in ("tcp", "udp"):
        raise ValueError(f"unknown transport {transport!r}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return _run(list(targets), list(ports), transport, concurrency, timeout, banner_wait if banner else None, retries)


def _run(
    targets: list[Target | HostFailure],
    ports: list[int],
    transport: str,
    concurrency: int,
    timeout: float,
    banner_wait: float | None,
    retries: int,
) -> Iterator[PortResult | HostFailure]:
    """The generator behind :func:`scan_targets` (which checks its arguments at the call,
    not at the first ``next``)."""
    with EventLoop() as loop:
        scanner = _Scanner(
            loop,
            targets,
            ports,
            transport=transport,
            concurrency=concurrency,
            timeout=timeout,
            banner_wait=banner_wait,
            retries=retries,
        )
        try:
            yield from scanner.results()
        finally:
            scanner.close()


#: A result slot not known yet.
_PENDING = object()
#: A result slot left out: a port of a host that turned out unscannable.
_SKIPPED = object()


class _Probe:
    """One port's probe in flight: its socket and its timer."""

    __slots__ = ("attempts", "banner", "index", "port", "sock", "started", "target", "timer")

    def __init__(self, index: int, target: Target, port: int, sock: socket.socket, started: float) -> None:
        self.index = index
        self.target = target
        self.port = port
        self.sock = sock
        self.started = started
        self.attempts = 1
        self.banner = b""
        self.timer: TimerHandle | None = None


class _Scanner:
    """The probes of one scan on one loop, and the slots their results wait in for their turn.

    Probes start in slot order, at most ``limit`` at once; each slot gets its result (or
    is skipped); :meth:`results` yields the slots in order, running the loop whenever the
    next one is not known yet. A callback that fills the next slot stops the loop.
    """

    def __init__(
        self,
        loop: EventLoop,
        targets: list[Target | HostFailure],
        ports: list[int],
        *,
        transport: str,
        concurrency: int,
        timeout: float,
        banner_wait: float | None,
        retries: int,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._limit = concurrency
        self._timeout = timeout
        self._banner_wait = banner_wait
        self._retries = retries
        self._work: list[tuple[Target | HostFailure, int]] = []
        for target in targets:
            if isinstance(target, HostFailure):
                self._work.append((target, 0))
            else:
                self._work.extend((target, port) for port in ports)
        self._slots: list[object] = [_PENDING] * len(self._work)
        self._failed: set[Target] = set()
        self._probes: dict[int, _Probe] = {}
        self._next_start = 0
        self._next_result = 0
        self._starting = False

    def results(self) -> Iterator[PortResult | HostFailure]:
        slots = self._slots
        while self._next_result < len(slots):
            self._start_probes()
            result = slots[self._next_result]
            if result is _PENDING:
                self._loop.run_forever()
                continue
            slots[self._next_result] = None  # yielded: the slot's memory goes
            self._next_result += 1
            if result is not _SKIPPED:
                assert isinstance(result, (PortResult, HostFailure))
                yield result

    def close(self) -> None:
        for probe in list(self._probes.values()):
            self._end(probe)

    # -- starting --------------------------------------------------------------------

    def _start_probes(self) -> None:
        """Start probes in slot order until ``limit`` are in flight. Not reentrant: a probe
        that ends at once (a refused connect on loopback) would otherwise start the next
        one from inside this loop, as deep as there are ports."""
        if self._starting:
            return
        self._starting = True
        try:
            self._start_more()
        finally:
            self._starting = False

    def _start_more(self) -> None:
        while len(self._probes) < self._limit and self._next_start < len(self._work):
            index = self._next_start
            target, port = self._work[index]
            if isinstance(target, HostFailure):
                self._slots[index] = target
            elif target in self._failed:
                self._slots[index] = _SKIPPED
            elif not self._start(index, target, port):
                return  # out of descriptors: wait for a probe to end
            self._next_start += 1

    def _start(self, index: int, target: Target, port: int) -> bool:
        """Start one probe; False if no descriptor is left for it."""
        kind = socket.SOCK_STREAM if self._transport == "tcp" else socket.SOCK_DGRAM
        try:
            sock = socket.socket(target.family, kind)
        except OSError as exc:
            if exc.errno in _OUT_OF_DESCRIPTORS and self._probes:
                self._limit = len(self._probes)
                return False
            self._fail_host(index, target, exc)
            return True
        sock.setblocking(False)
        if kind == socket.SOCK_STREAM:  # a reset at close: no TIME_WAIT left behind for each open port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        probe = _Probe(index, target, port, sock, self._loop.time())
        self._probes[index] = probe
        code = sock.connect_ex((target.address, port))
        if self._transport == "udp" and code == 0:
            self._send_datagram(probe)
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self._loop.add_writer(sock.fileno(), self._connected, probe)
            probe.timer = self._loop.call_later(self._timeout, self._timed_out, probe)
        elif code in _HOST_ERRORS:
            self._end(probe)
            self._fail_host(index, target, OSError(code, os.strerror(code)))
        else:
            self._tcp_outcome(probe, code)
        return True

    def _fail_host(self, index: int, target: Target, exc: OSError) -> None:
        self._failed.add(target)
        self._slots[index] = HostFailure(target.host, target.address, exc.strerror or str(exc))
        for other in [probe for probe in self._probes.values() if probe.target == target]:
            self._end(other)
            self._slots[other.index] = _SKIPPED

    # -- TCP ---------------------------------------------------------------------------

    def _connected(self, probe: _Probe) -> None:
        self._loop.remove_writer(probe.sock.fileno())
        self._tcp_outcome(probe, probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _tcp_outcome(self, probe: _Probe, code: int) -> None:
        if code == 0 and self._banner_wait is not None:
            self._cancel_timer(probe)
            self._loop.add_reader(probe.sock.fileno(), self._read_banner, probe)
            probe.timer = self._loop.call_later(self._banner_wait, self._banner_done, probe)
        elif code == 0:
            self._finish(probe, "open", "connected")
        elif code == errno.ECONNREFUSED:
            self._finish(probe, "closed", "refused")
        else:
            self._finish(probe, "filtered", _FILTERED_ERRORS.get(code, errno.errorcode.get(code, str(code)).lower()))

    def _read_banner(self, probe: _Probe) -> None:
        try:
            data = probe.sock.recv(BANNER_SIZE - len(probe.banner))
        except BlockingIOError:
            return
        except OSError:
            data = b""  # reset after connecting: still open, with what came so far
        probe.banner += data
        if not data or b"\n" in data or len(probe.banner) >= BANNER_SIZE:
            self._banner_done(probe)

    def _banner_done(self, probe: _Probe) -> None:
        self._finish(probe, "open", "connected", probe.banner)

    def _timed_out(self, probe: _Probe) -> None:
        probe.timer = None
        self._finish(probe, "filtered", "no-response")

    # -- UDP ---------------------------------------------------------------------------

    def _send_datagram(self, probe: _Probe) -> None:
        try:
            probe.sock.send(_UDP_PAYLOADS.get(probe.port, b""))
        except ConnectionRefusedError:  # an unreachable from the last datagram
            self._finish(probe, "closed", "port-unreach")
            return
        except OSError as exc:
            self._finish(probe, "filtered", _FILTERED_ERRORS.get(exc.errno or 0, "send-error"))
            return
        self._loop.add_reader(probe.sock.fileno(), self._udp_answer, probe)
        probe.timer = self._loop.call_later(self._timeout, self._udp_silence, probe)

    def _udp_answer(self, probe: _Probe) -> None:
        try:
            data = probe.sock.recv(BANNER_SIZE)
        except BlockingIOError:
            return
        except ConnectionRefusedError:
            self._finish(probe, "closed", "port-unreach")
        except OSError as exc:
            self._finish(probe, "filtered", _FILTERED_ERRORS.get(exc.errno or 0, "recv-error"))
        else:
            self._finish(probe, "open", "answer", data if self._banner_wait is not None else None)

    def _udp_silence(self, probe: _Probe) -> None:
        probe.timer = None
        if probe.attempts > self._retries:
            self._finish(probe, "open|filtered", "no-response")
            return
        probe.attempts += 1
        self._loop.remove_reader(probe.sock.fileno())
        self._send_datagram(probe)

    # -- ending ------------------------------------------------------------------------

    def _finish(self, probe: _Probe, state: str, reason: str, banner: bytes | None = None) -> None:
        """Record a probe's result, start the next probes, and hand the loop back when
        the result :meth:`results` waits for is known."""
        seconds = self._loop.time() - probe.started
        self._end(probe)
        self._slots[probe.index] = PortResult(probe.target, probe.port, self._transport, state, reason, seconds, banner)
        if self._loop.is_running:
            self._start_probes()
            if self._slots[self._next_result] is not _PENDING:
                self._loop.stop()

    def _end(self, probe: _Probe) -> None:
        self._cancel_timer(probe)
        fd = probe.sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        probe.sock.close()
        del self._probes[probe.index]

    @staticmethod
    def _cancel_timer(probe: _Probe) -> None:
        if probe.timer is not None:
            probe.timer.cancel()
            probe.timer = None
