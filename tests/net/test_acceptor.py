"""The acceptor on the loop: bursts that are bounded, admission before anything else."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from enchufe.address import Address, InetAddress
from enchufe.net.acceptor import MAX_BURST, Acceptor
from enchufe.net.listen import Listener, open_listeners
from enchufe.net.loop import EventLoop


@pytest.fixture
def waiting_clients() -> Iterator[tuple[Listener, list[socket.socket]]]:
    """A listener with 300 connections queued in the kernel, none accepted yet."""
    (listener,) = open_listeners(InetAddress("127.0.0.1", 0), backlog=512)
    address = listener.address
    assert isinstance(address, InetAddress)
    clients = [socket.create_connection((address.host, address.port), timeout=10) for _ in range(300)]
    yield listener, clients
    for client in clients:
        client.close()
    listener.close()


def test_a_burst_stops_at_max_burst_and_the_loop_serves_the_others_in_between(
    waiting_clients: tuple[Listener, list[socket.socket]],
) -> None:
    """Each accept queues a tick for the loop's next turn; between two turns at most
    MAX_BURST connections are accepted, and all 300 are, in the end."""
    listener, clients = waiting_clients
    events: list[str] = []
    accepted: list[socket.socket] = []
    with EventLoop() as loop:

        def take(sock: socket.socket, peer: Address | None) -> None:
            accepted.append(sock)
            events.append("accept")
            loop.call_soon(events.append, "tick")
            if len(accepted) == len(clients):
                loop.call_soon(loop.stop)

        acceptor = Acceptor(loop, [listener], on_accept=take)
        acceptor.start()
        loop.call_later(10, loop.stop)  # a bound, should the test fail
        loop.run_forever()
        acceptor.stop()
    for sock in accepted:
        sock.close()
    assert len(accepted) == len(clients)
    longest = max(len(run) for run in "".join("a" if e == "accept" else "|" for e in events).split("|"))
    assert 1 < longest <= MAX_BURST


def test_a_refused_connection_is_closed_before_anyone_sees_it(
    waiting_clients: tuple[Listener, list[socket.socket]],
) -> None:
    listener, clients = waiting_clients
    refused: list[str] = []
    with EventLoop() as loop:

        def refuse(peer: Address | None, reason: str) -> None:
            refused.append(reason)
            if len(refused) == len(clients):
                loop.stop()

        def never(sock: socket.socket, peer: Address | None) -> None:
            raise AssertionError("a refused connection reached on_accept")

        acceptor = Acceptor(loop, [listener], on_accept=never, admit=lambda peer: "full", on_refused=refuse)
        acceptor.start()
        loop.call_later(10, loop.stop)
        loop.run_forever()
        acceptor.stop()
    assert refused == ["full"] * len(clients)
    assert all(client.recv(1) == b"" for client in clients)  # closed by the server


def test_a_refusal_ends_the_burst_so_places_freed_meanwhile_count(
    waiting_clients: tuple[Listener, list[socket.socket]],
) -> None:
    """A limit of one client, each of which leaves a turn of the loop after it came: with
    the burst going on past a refusal, the 299 others would all be refused at once."""
    listener, clients = waiting_clients
    taken: list[socket.socket] = []
    refused: list[str] = []
    inside = []
    with EventLoop() as loop:

        def take(sock: socket.socket, peer: Address | None) -> None:
            taken.append(sock)
            inside.append(sock)
            loop.call_soon(inside.clear)  # it leaves at the loop's next turn

        def refuse(peer: Address | None, reason: str) -> None:
            refused.append(reason)

        def check() -> None:
            if len(taken) + len(refused) == len(clients):
                loop.stop()
            else:
                loop.call_later(0.01, check)

        acceptor = Acceptor(
            loop, [listener], on_accept=take, admit=lambda peer: "full" if inside else None, on_refused=refuse
        )
        acceptor.start()
        loop.call_soon(check)
        loop.call_later(10, loop.stop)
        loop.run_forever()
        acceptor.stop()
    for sock in taken:
        sock.close()
    assert len(taken) + len(refused) == len(clients)
    assert len(taken) > len(clients) // 4  # about one in two: a refusal, then a turn, then room
