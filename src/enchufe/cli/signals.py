"""Termination signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT unwind the command, so
that sockets close and socket files are removed; then listen mode exits with
128+signal and connect mode dies by the signal, as ncat does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["Signalled", "exit_on_signals"]


class Signalled(BaseException):
    """A termination signal arrived; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM, SIGHUP and SIGQUIT into :class:`Signalled` while active."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only: nothing to install
        return

    def handler(signum: int, frame: object) -> None:
        raise Signalled(signum)

    signums = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, disposition in previous.items():
            signal.signal(signum, disposition)
