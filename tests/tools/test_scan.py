"""The scanner's library API on loopback: states, banners, order, the concurrency limit,
UDP, ports and targets."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.errors import AddressError, ResolveError
from enchufe.net.resolve import Resolved
from enchufe.tools.scan import (
    BANNER_SIZE,
    HostFailure,
    PortResult,
    Target,
    expand_targets,
    parse_ports,
    scan,
)


def port_results(results: Iterator[PortResult | HostFailure]) -> list[PortResult]:
    found = list(results)
    assert all(isinstance(result, PortResult) for result in found), found
    return [result for result in found if isinstance(result, PortResult)]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A TCP port bound but not listening: every connect to it is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@contextlib.contextmanager
def greeter(greeting: bytes) -> Iterator[int]:
    """A listener that sends ``greeting`` to the first client and closes."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(greeting)

        thread = threading.Thread(target=serve, name="greeter")
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            with contextlib.suppress(OSError), socket.create_connection(listener.getsockname(), timeout=5):
                pass  # ends an accept nobody else made
            thread.join()


@contextlib.contextmanager
def stalled_ports(count: int) -> Iterator[list[int]]:
    """Listeners whose accept queue is full (backlog 0, one connection nobody accepts):
    the kernel drops every further SYN, so a connect to them waits until it times out."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            filler = stack.enter_context(socket.create_connection(listener.getsockname(), timeout=5))
            assert filler
            ports.append(listener.getsockname()[1])
        yield ports


def test_open_closed_and_a_banner() -> None:
    with greeter(b"SSH-2.0-enchufe-test\r\nmore") as banner_port, closed_port() as refused:
        with socket.create_server(("127.0.0.1", 0)) as silent:
            silent_port = silent.getsockname()[1]
            results = port_results(scan(["127.0.0.1"], sorted([banner_port, refused, silent_port]), banner=True))
    found = {result.port: result for result in results}
    assert (found[banner_port].state, found[banner_port].reason) == ("open", "connected")
    assert found[banner_port].banner is not None
    assert found[banner_port].banner.startswith(b"SSH-2.0-enchufe-test\r\n")
    assert (found[silent_port].state, found[silent_port].banner) == ("open", b"")  # nothing within the wait
    assert (found[refused].state, found[refused].reason, found[refused].banner) == ("closed", "refused", None)


def test_a_banner_is_bounded() -> None:
    with greeter(b"x" * 10_000) as port:
        (result,) = port_results(scan(["127.0.0.1"], [port], banner=True))
    assert result.banner == b"x" * BANNER_SIZE


def test_without_banner_nothing_is_read() -> None:
    with greeter(b"hello\n") as port:
        (result,) = port_results(scan(["127.0.0.1"], [port]))
    assert (result.state, result.banner) == ("open", None)


def test_results_come_in_port_order_whatever_order_they_finish_in() -> None:
    """The lowest port stalls until its timeout; the refused ones above it finish at once
    but wait for it."""
    with stalled_ports(1) as (stalled,), contextlib.ExitStack() as stack:
        closed = [stack.enter_context(closed_port()) for _ in range(6)]
        ports = sorted([stalled, *closed])
        results = port_results(scan(["127.0.0.1"], ports, timeout=0.3))
    assert [result.port for result in results] == ports
    by_port = {result.port: result for result in results}
    assert (by_port[stalled].state, by_port[stalled].reason) == ("filtered", "no-response")
    assert all(by_port[port].state == "closed" for port in closed)
    assert all(by_port[port].seconds < by_port[stalled].seconds for port in closed)


def syn_sent_to(ports: set[int]) -> int:
    """How many of this machine's TCP sockets are connecting (SYN_SENT) to one of ``ports``."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "02" and int(fields[2].split(":")[1], 16) in ports:
                count += 1
    return count


def test_the_concurrency_limit_is_honoured() -> None:
    with stalled_ports(8) as ports:
        done = threading.Event()
        most: list[int] = []

        def watch() -> None:
            while not done.is_set():
                most.append(syn_sent_to(set(ports)))

        watcher = threading.Thread(target=watch, name="syn-watcher")
        watcher.start()
        try:
            results = port_results(scan(["127.0.0.1"], sorted(ports), concurrency=3, timeout=0.3))
        finally:
            done.set()
            watcher.join()
    assert [result.state for result in results] == ["filtered"] * 8
    # /proc/net/tcp is not one snapshot: a probe closed while its successor opens can show
    # in one read beside it. Counts seen twice in a row are the ones that held.
    held = [count for count, next_count in itertools.pairwise(most) if count == next_count]
    assert max(held) == 3


def test_closing_the_iterator_early_closes_the_probes() -> None:
    """The leak check of every test (conftest) sees any socket left open: the stalled
    probes are in flight when the refused one, probed first, comes out."""
    with stalled_ports(4) as ports, closed_port() as refused:
        results = scan(["127.0.0.1"], [refused, *ports], concurrency=5, timeout=20)
        first = next(results)
        results.close()
    assert isinstance(first, PortResult)
    assert (first.port, first.state) == (refused, "closed")


@contextlib.contextmanager
def udp_echo() -> Iterator[int]:
    """A UDP socket that answers each datagram with ``answer:`` and what came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(20)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    data, peer = server.recvfrom(2048)
                    server.sendto(b"answer:" + data, peer)

        thread = threading.Thread(target=serve, name="udp-echo")
        thread.start()
        try:
            yield server.getsockname()[1]
        finally:
            stop.set()
            server.sendto(b"", server.getsockname())
            thread.join()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_udp_open_closed_and_silent() -> None:
    with udp_echo() as answering, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5)
        silent_port = silent.getsockname()[1]
        nobody = free_udp_port()
        ports = sorted([answering, silent_port, nobody])
        results = port_results(scan(["127.0.0.1"], ports, transport="udp", timeout=0.2, banner=True))
        retried = [silent.recv(100) for _ in range(2)]  # the first datagram and its one retry
    found = {result.port: result for result in results}
    assert (found[answering].state, found[answering].reason, found[answering].banner) == ("open", "answer", b"answer:")
    assert (found[nobody].state, found[nobody].reason) == ("closed", "port-unreach")
    assert (found[silent_port].state, found[silent_port].reason) == ("open|filtered", "no-response")
    assert retried == [b"", b""]


def test_ports() -> None:
    assert parse_ports("22") == [22]
    assert parse_ports("8080,22,1-3,2") == [1, 2, 3, 22, 8080]
    assert parse_ports("-") == list(range(1, 65536))
    assert parse_ports("65530-") == list(range(65530, 65536))
    assert parse_ports("-3") == [1, 2, 3]
    for bad in ["", "0", "5-1", "a", "70000", "1,,2", "1-2-3", " 1", "٣"]:
        with pytest.raises(AddressError, match="Invalid port list"):
            parse_ports(bad)


class CountingResolver:
    """A resolver that knows one name and counts its look-ups; nothing leaves the process."""

    def __init__(self) -> None:
        self.lookups = 0

    def resolve(
        self, host: str, port: int, *, family: int, type: int, proto: int, passive: bool = False
    ) -> list[Resolved]:
        self.lookups += 1
        if host != "scan-target.test":
            raise ResolveError(f'Could not resolve hostname "{host}": Name or service not known')
        return [Resolved(socket.AF_INET, type, proto, ("127.0.0.1", port))]


def test_targets_names_resolved_once_addresses_and_blocks() -> None:
    resolver = CountingResolver()
    targets = expand_targets(
        ["scan-target.test", "::1", "[::1]", "127.0.0.0/30", "scan-target.test", "nowhere.test", "fd00::/127"],
        resolver=resolver,
    )
    assert resolver.lookups == 2
    assert targets[:6] == [
        Target("scan-target.test", "127.0.0.1", socket.AF_INET),
        Target("::1", "::1", socket.AF_INET6),
        Target("[::1]", "::1", socket.AF_INET6),
        Target("127.0.0.0/30", "127.0.0.1", socket.AF_INET),
        Target("127.0.0.0/30", "127.0.0.2", socket.AF_INET),
        Target("scan-target.test", "127.0.0.1", socket.AF_INET),
    ]
    failure = targets[6]
    assert isinstance(failure, HostFailure)
    assert (failure.host, failure.address) == ("nowhere.test", None)
    assert targets[7:] == [
        Target("fd00::/127", "fd00::", socket.AF_INET6),
        Target("fd00::/127", "fd00::1", socket.AF_INET6),
    ]


def test_targets_refused() -> None:
    with pytest.raises(AddressError, match="More than 65536 addresses"):
        expand_targets(["10.0.0.0/15"])
    with pytest.raises(AddressError, match="More than 65536 addresses"):
        expand_targets(["10.0.0.0/16", "127.0.0.1"])
    assert len(expand_targets(["10.0.0.0/16"])) == 65534
    with pytest.raises(AddressError, match='"::1" is not an IPv4 address'):
        expand_targets(["::1"], family=socket.AF_INET)
    with pytest.raises(AddressError, match=r'Invalid CIDR block "10\.0\.0\.0/33"'):
        expand_targets(["10.0.0.0/33"])


def test_a_name_that_does_not_resolve_is_a_failure_in_its_turn() -> None:
    with closed_port() as port:
        results = list(scan(["nowhere.test", "scan-target.test"], [port], resolver=CountingResolver()))
    assert isinstance(results[0], HostFailure)
    assert isinstance(results[1], PortResult)
    assert (results[1].target.host, results[1].state) == ("scan-target.test", "closed")


def test_cidr_scan_on_loopback() -> None:
    with socket.create_server(("127.0.0.2", 0)) as listener:
        port = listener.getsockname()[1]
        results = port_results(scan(["127.0.0.0/30"], [port]))
    assert [(result.target.address, result.state) for result in results] == [
        ("127.0.0.1", "closed"),
        ("127.0.0.2", "open"),
    ]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="transport"):
        scan(["127.0.0.1"], [1], transport="sctp")
    with pytest.raises(ValueError, match="concurrency"):
        scan(["127.0.0.1"], [1], concurrency=0)
