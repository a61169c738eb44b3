"""Listen mode's handling of termination signals."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["Signalled", "exit_on_signals"]


class Signalled(BaseException):
    """A termination signal arrived in listen mode; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """ncat's listen mode: SIGINT, SIGTERM, SIGHUP and SIGQUIT end it with status
    128+signal. Unwinding (rather than dying on the spot) closes the sockets and
    removes a Unix socket file on the way out."""
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
