"""An event loop running in a thread of its own, for tests that play the peers themselves."""

from __future__ import annotations

import threading
from collections.abc import Callable

from enchufe.net.loop import EventLoop

TIMEOUT = 10.0


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
