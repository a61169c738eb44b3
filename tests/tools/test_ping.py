"""The ping library on loopback: raw ICMP to 127.0.0.1 and ::1, TCP to an open and a
closed port, and iputils' statistics arithmetic. Across namespaces: tests/cli/test_ping_command.py."""

from __future__ import annotations

import os
import socket

import pytest

from enchufe.errors import ResolveError
from enchufe.net.resolve import SystemResolver
from enchufe.tools.ping import Pinger, Reply, Statistics

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP sockets need root")


@root_only
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_raw_icmp_to_loopback_counts_each_reply(host: str) -> None:
    with Pinger(host, kind="raw", count=3, interval=0.01, timeout=5) as pinger:
        events = list(pinger)
    assert pinger.kind == "raw"
    assert [(type(e), e.sequence, e.source, e.size, e.ttl) for e in events] == [  # type: ignore[union-attr]
        (Reply, sequence, host, 64, 64) for sequence in (1, 2, 3)
    ]
    stats = pinger.statistics
    assert (stats.transmitted, stats.received, stats.duplicates, stats.errors, stats.loss_percent) == (3, 3, 0, 0, 0.0)
    assert len(stats.round_trips_us) == 3


@root_only
def test_a_payload_too_small_for_a_timestamp_is_not_timed() -> None:
    with Pinger("127.0.0.1", kind="raw", count=1, size=15, timeout=5) as pinger:
        (reply,) = list(pinger)
    assert isinstance(reply, Reply) and (reply.size, reply.rtt) == (23, None)
    assert pinger.statistics.rtt_us() is None


def test_tcp_ping_tells_an_open_port_from_a_closed_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with Pinger("127.0.0.1", kind="tcp", port=port, count=2, interval=0.01) as pinger:
            assert [(e.sequence, e.state) for e in pinger] == [(1, "open"), (2, "open")]  # type: ignore[union-attr]
    with Pinger("::1", kind="tcp", port=port, count=1) as pinger:
        (closed,) = list(pinger)
    assert isinstance(closed, Reply) and closed.state == "closed" and closed.source == "::1"
    assert pinger.statistics.received == 1


def test_names_are_refused_when_numeric_only() -> None:
    with pytest.raises(ResolveError):
        Pinger("localhost", kind="tcp", port=1, resolver=SystemResolver(numeric_only=True))


def test_statistics_are_iputils_integer_arithmetic() -> None:
    stats = Statistics(transmitted=4, received=3, round_trips_us=[40, 98, 51])
    # iputils: tsum/n = 63, tsum2/n = 4621, mdev = isqrt(4621 - 3969) = 25
    assert stats.rtt_us() == (40, 63, 98, 25)
    assert stats.loss_percent == 25.0
    assert Statistics().loss_percent == 0.0
    assert Statistics(transmitted=3, received=1).loss_percent == pytest.approx(66.6666667)
