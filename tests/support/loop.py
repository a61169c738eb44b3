"""An event loop running in a thread of its own, for tests that play the peers
themselves, and a protocol that records what its transport tells it."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable

from enchufe.errors import NetworkError
from enchufe.net.loop import EventLoop
from enchufe.net.transport import ClientTransport, StreamProtocol

TIMEOUT = 10.0


def tcp_pair(*, client_receive_buffer: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected pair of loopback TCP sockets: (the accepted one, the client's, with
    a timeout of :data:`TIMEOUT`). ``client_receive_buffer`` caps what the client's
    kernel takes before the client reads (loopback's autotuning allows megabytes)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        if client_receive_buffer is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, client_receive_buffer)  # before the window is agreed
        client.settimeout(TIMEOUT)
        client.connect(listener.getsockname())
        accepted, _ = listener.accept()
    return accepted, client


class LoopThread:
    """``self.loop`` runs in the thread ``loop-under-test`` until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loop-under-test")
        self.thread.start()

    def call(self, action: Callable[[], object]) -> object:
        """Run ``action`` on the loop's thread, wait for it, and return what it returned
        (or raise what it raised)."""
        outcome: list[object] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(action())
            except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
                failure.append(exc)
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(TIMEOUT), "the loop did not run the call"
        if failure:
            raise failure[0]
        return outcome[0]

    def close(self) -> None:
        self.loop.stop()
        self.thread.join(TIMEOUT)
        self.loop.close()


class Recorder(StreamProtocol):
    """Puts each event on a queue: ("data", b"..."), ("eof",), ("pause",), ...; with
    ``record_made``, ("made",) too."""

    def __init__(self, *, record_made: bool = False) -> None:
        self.events: queue.Queue[tuple[object, ...]] = queue.Queue()
        self.transport: ClientTransport | None = None
        self._record_made = record_made

    def connection_made(self, transport: ClientTransport) -> None:
        self.transport = transport
        if self._record_made:
            self.events.put(("made",))

    def data_received(self, data: bytes) -> None:
        self.events.put(("data", data))

    def eof_received(self) -> None:
        self.events.put(("eof",))

    def pause_writing(self) -> None:
        self.events.put(("pause",))

    def resume_writing(self) -> None:
        self.events.put(("resume",))

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.events.put(("lost", exc))

    def next(self) -> tuple[object, ...]:
        return self.events.get(timeout=TIMEOUT)
