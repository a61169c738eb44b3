"""The hub with TLS: handshakes on the loop, stalled or failing clients that hold up
nobody, a place held during the handshake, and TLS's own end for every client.

Clients are socket pairs; the good ones speak the library's blocking
TlsStream from the test's thread while the hub's loop runs in its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from enchufe.errors import NetworkError, TimedOut, TlsError
from enchufe.net.stream import SocketStream
from enchufe.net.tls import TlsStream, client_context, server_context, start_tls
from enchufe.serve.hub import Client
from support.cli_e2e import quiet
from support.hub import TIMEOUT, HubRig
from support.tls import TlsFiles, half_a_hello

pytestmark = pytest.mark.timeout(30)


class Rig(HubRig):
    """A TLS hub; ``connect()`` is a client that has said nothing yet."""

    def __init__(self, tls_files: TlsFiles, **options: object) -> None:
        super().__init__(record_ready=True, tls=server_context(tls_files.server), **options)
        self.tls_files = tls_files
        self.streams: list[TlsStream] = []

    def connect_tls(self) -> tuple[TlsStream, Client]:
        """A client whose handshake is done, and the hub has said it is ready."""
        theirs, client = self.connect()
        context = client_context(cafile=self.tls_files.ca)
        stream = start_tls(SocketStream(theirs), context, server_hostname="localhost", timeout=TIMEOUT)
        self.streams.append(stream)
        assert self.next() == ("ready", client.id)
        return stream, client

    def close(self) -> None:
        super().close()
        for stream in self.streams:
            stream.close()


@pytest.fixture
def rig(tls_files: TlsFiles) -> Iterator[Rig]:
    made = Rig(tls_files)
    yield made
    made.close()


def test_tls_clients_hear_broadcasts_and_are_heard(rig: Rig) -> None:
    (a, client_a), (b, client_b) = rig.connect_tls(), rig.connect_tls()
    assert rig.call(lambda: rig.hub.broadcast(b"to everyone")) == 2
    assert a.recv(100, timeout=TIMEOUT) == b.recv(100, timeout=TIMEOUT) == b"to everyone"
    a.send_all(b"from a")
    assert rig.next() == ("data", client_a.id, b"from a")
    b.send_all(b"from b")
    assert rig.next() == ("data", client_b.id, b"from b")


def test_stalled_handshakes_never_delay_another_clients_handshake(tls_files: TlsFiles) -> None:
    """Silent clients, half hellos and records that never end, all accepted before a
    good client, with no handshake timeout at all: the good client's handshake
    completes while every stalled one is still connected; garbage fails alone."""
    rig = Rig(tls_files, handshake_timeout=None)
    try:
        stalled = []
        for _ in range(4):
            silent, _ = rig.connect()
            halfway, _ = rig.connect()
            halfway.sendall(half_a_hello())
            endless, _ = rig.connect()
            endless.sendall(b"\x16\x03\x01\x40\x00" + b"\x01" * 100)  # a 16 KiB record, 100 bytes of it
            stalled += [silent, halfway, endless]
        garbage, garbage_client = rig.connect()
        garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
        failure = rig.next()
        assert failure[:2] == ("tls failed", garbage_client.id) and isinstance(failure[2], TlsError)
        assert rig.next() == ("leave", garbage_client.id, failure[2])
        good, good_client = rig.connect_tls()
        assert all(quiet(sock) for sock in stalled)
        good.send_all(b"served")
        assert rig.next() == ("data", good_client.id, b"served")
        assert rig.call(lambda: (len(rig.hub), rig.hub.ready())) == (len(stalled) + 1, 1)
    finally:
        rig.close()


def test_a_client_in_its_handshake_holds_a_place_and_gets_no_broadcast(rig: Rig) -> None:
    silent, _ = rig.connect()
    assert rig.call(lambda: (len(rig.hub), rig.hub.ready())) == (1, 0)
    assert rig.call(lambda: rig.hub.broadcast(b"nobody is ready")) == 0
    assert rig.call(rig.hub.has_room) is True  # nobody to fill
    good, _ = rig.connect_tls()
    assert rig.call(lambda: (len(rig.hub), rig.hub.ready())) == (2, 1)
    assert rig.call(lambda: rig.hub.broadcast(b"one is")) == 1
    assert good.recv(100, timeout=TIMEOUT) == b"one is"
    assert quiet(silent)


def test_a_silent_client_is_cut_off_when_its_handshake_time_is_up(tls_files: TlsFiles) -> None:
    rig = Rig(tls_files, handshake_timeout=0.2)
    try:
        silent, client = rig.connect()
        failure = rig.next()
        assert failure[:2] == ("tls failed", client.id) and isinstance(failure[2], TimedOut)
        assert rig.next() == ("leave", client.id, failure[2])
        assert silent.recv(1) == b""
        assert rig.call(lambda: len(rig.hub)) == 0
    finally:
        rig.close()


def test_an_idle_timeout_cuts_off_a_client_quiet_in_its_handshake(tls_files: TlsFiles) -> None:
    rig = Rig(tls_files, handshake_timeout=None, idle_timeout=0.2)
    rig.hub.on_idle = lambda client: rig.events.put(("idle", client.id))
    try:
        silent, client = rig.connect()
        assert rig.next() == ("idle", client.id)
        assert rig.next() == ("leave", client.id, None)  # cut off by the hub: no TLS failure
        assert silent.recv(1) == b""
    finally:
        rig.close()


def test_closing_the_hub_ends_every_client_with_close_notify_and_the_handshaking_too(rig: Rig) -> None:
    silent, silent_client = rig.connect()
    good, good_client = rig.connect_tls()
    rig.call(rig.hub.close)
    assert good.recv(100, timeout=TIMEOUT) == b""
    assert not good.truncated
    assert silent.recv(1) == b""
    left: dict[object, NetworkError | None] = {}
    for _ in range(2):
        event = rig.next()
        assert event[0] == "leave" and isinstance(event[2], NetworkError | None)
        left[event[1]] = event[2]
    assert left == {silent_client.id: None, good_client.id: None}
    assert rig.call(lambda: (len(rig.hub), rig.hub.ready())) == (0, 0)
