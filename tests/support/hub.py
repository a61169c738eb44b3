"""A hub on a loop in its own thread, for tests that play its clients' far ends."""

from __future__ import annotations

import queue
import socket

from enchufe.serve.hub import Client, Hub
from support.loop import LoopThread

#: Bound on one step of a hub test (an event, a read).
TIMEOUT = 20.0


class HubRig(LoopThread):
    """``self.hub`` runs on ``self.loop``; what it reports goes on ``events`` as
    ("data", id, bytes), ("leave", id, error), ("drop", id, reason), ("tls failed",
    id, error) and, with ``record_ready``, ("ready", id)."""

    def __init__(self, *, record_ready: bool = False, **options: object) -> None:
        super().__init__()
        self.events: queue.Queue[tuple[object, ...]] = queue.Queue()
        self.hub = Hub(
            self.loop,
            on_data=lambda client, data: self.events.put(("data", client.id, data)),
            on_ready=(lambda client: self.events.put(("ready", client.id))) if record_ready else None,
            on_leave=lambda client, exc: self.events.put(("leave", client.id, exc)),
            on_drop=lambda client, reason: self.events.put(("drop", client.id, reason)),
            on_tls_failed=lambda client, error: self.events.put(("tls failed", client.id, error)),
            **options,  # type: ignore[arg-type]
        )
        self.peers: list[socket.socket] = []

    def connect(self) -> tuple[socket.socket, Client]:
        """A client the hub has taken in, and the test's end of it."""
        ours, theirs = socket.socketpair()
        theirs.settimeout(TIMEOUT)
        self.peers.append(theirs)
        client = self.call(lambda: self.hub.add(ours))
        assert isinstance(client, Client)
        return theirs, client

    def next(self) -> tuple[object, ...]:
        return self.events.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.call(self.hub.abort)
        self.call(lambda: None)  # one more turn: the connection_lost callbacks run
        super().close()
        for peer in self.peers:
            peer.close()
