"""The hub: broadcast, per-client data, departures, and a stalled client that delays nobody."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.errors import NetworkError
from support.cli_e2e import recv_exactly
from support.hub import TIMEOUT, HubRig


@pytest.fixture
def rig() -> Iterator[HubRig]:
    made = HubRig()
    yield made
    made.close()


def test_broadcast_reaches_everyone_but_the_excluded(rig: HubRig) -> None:
    (a, client_a), (b, _), (c, _) = rig.connect(), rig.connect(), rig.connect()
    assert rig.call(lambda: rig.hub.broadcast(b"to all but a", exclude=client_a)) == 2
    assert recv_exactly(b, 12) == recv_exactly(c, 12) == b"to all but a"
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv(1)


def test_what_each_client_says_is_reported_with_who_said_it(rig: HubRig) -> None:
    (a, client_a), (b, client_b) = rig.connect(), rig.connect()
    a.sendall(b"from a")
    assert rig.next() == ("data", client_a.id, b"from a")
    b.sendall(b"from b")
    assert rig.next() == ("data", client_b.id, b"from b")


def test_a_client_that_half_closes_leaves_after_its_output_is_flushed(rig: HubRig) -> None:
    (a, client_a), (b, _) = rig.connect(), rig.connect()
    a.shutdown(socket.SHUT_WR)
    assert rig.next() == ("leave", client_a.id, None)
    assert a.recv(10) == b""
    assert rig.call(lambda: len(rig.hub)) == 1
    assert rig.call(lambda: rig.hub.broadcast(b"still on")) == 1
    assert recv_exactly(b, 8) == b"still on"


def test_a_broadcast_skips_a_client_whose_output_is_half_closed(rig: HubRig) -> None:
    """After the end of the host's input every client is half-closed; a later message
    (a chat departure) reaches nobody and breaks nothing."""
    (a, client_a), (b, _) = rig.connect(), rig.connect()
    rig.call(lambda: client_a.transport.write_eof())  # type: ignore[union-attr]
    assert a.recv(10) == b""
    assert rig.call(lambda: rig.hub.broadcast(b"to whoever can hear")) == 1
    assert recv_exactly(b, 19) == b"to whoever can hear"


def test_a_stalled_client_delays_nobody_and_memory_stays_bounded() -> None:
    """50 MB to two clients, one of which never reads: the reader gets all of it, in
    order, and the stalled one is dropped once it is max_backlog behind."""
    rig = HubRig(max_backlog=1 << 20, high_water=64 * 1024)
    try:
        (fast, _), (_stalled, stalled_client) = rig.connect(), rig.connect()
        chunk = bytes(range(256)) * 256  # 64 KiB
        total = 50_000_000 // len(chunk) * len(chunk)
        state = {"sent": 0, "most_buffered": 0}
        finished = threading.Event()

        def produce() -> None:
            while state["sent"] < total and rig.hub.has_room():
                rig.hub.broadcast(chunk)
                state["sent"] += len(chunk)
                for client in rig.hub:
                    assert client.transport is not None
                    state["most_buffered"] = max(state["most_buffered"], client.transport.write_buffer_size)
            if state["sent"] >= total:
                finished.set()

        rig.hub.on_room = lambda: rig.loop.call_soon(produce)
        rig.call(produce)
        digest = hashlib.sha256()
        received = 0
        while received < total:
            data = fast.recv(1 << 20)
            assert data, list(rig.events.queue)  # a drop of the fast client shows here
            digest.update(data)
            received += len(data)
        assert finished.wait(TIMEOUT)
        expected = hashlib.sha256(chunk * (total // len(chunk))).hexdigest()
        assert digest.hexdigest() == expected
        assert rig.next() == ("drop", stalled_client.id, "too far behind")
        assert state["most_buffered"] <= (1 << 20)
    finally:
        rig.close()


def test_no_room_only_when_every_client_is_full() -> None:
    rig = HubRig(high_water=1024)
    try:
        (a, _), (_b, _) = rig.connect(), rig.connect()
        assert rig.call(rig.hub.has_room) is True
        # Fill both far past what the kernel buffers hold for a socket pair.
        rig.call(lambda: [rig.hub.broadcast(b"x" * 65536) for _ in range(16)])
        assert rig.call(rig.hub.has_room) is False
        drained = 0
        a.settimeout(TIMEOUT)
        while drained < 16 * 65536:
            drained += len(a.recv(1 << 20))
        rig.call(lambda: None)  # let the loop see the buffer drain
        assert rig.call(rig.hub.has_room) is True
    finally:
        rig.close()


def test_a_client_that_vanishes_leaves_the_hub(rig: HubRig) -> None:
    a, client_a = rig.connect()
    a.close()
    rig.call(lambda: rig.hub.broadcast(b"x" * 65536))
    event = rig.next()
    assert event[:2] == ("leave", client_a.id)
    assert event[2] is None or isinstance(event[2], NetworkError)


def test_an_idle_client_is_cut_off_alone() -> None:
    made = HubRig(idle_timeout=0.2, on_idle=lambda client: made.events.put(("idle", client.id)))
    try:
        a, client_a = made.connect()
        assert made.next() == ("idle", client_a.id)
        assert made.next() == ("leave", client_a.id, None)
        assert a.recv(1) == b""
        b, client_b = made.connect()  # the hub goes on; b's own timer starts now
        b.sendall(b"here")
        assert made.next() == ("data", client_b.id, b"here")
        assert made.call(lambda: len(made.hub)) == 1
    finally:
        made.close()
