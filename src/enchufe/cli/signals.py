"""Termination signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT unwind the command, so
that sockets close and socket files are removed; then listen mode exits with
128+signal and connect mode dies by the signal, as ncat does.

The signal module is imported only when handlers are installed: it costs more
start-up time than a short-lived client can spare.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, TracebackType

__all__ = ["SignalHandlers", "Signalled"]


class Signalled(BaseException):
    """A termination signal arrived; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class SignalHandlers:
    """While active, SIGINT, SIGTERM, SIGHUP and SIGQUIT raise :class:`Signalled`.

    Outside the main thread (the command run in-process by a test) it does nothing:
    Python delivers signals to the main thread only.
    """

    def __enter__(self) -> SignalHandlers:
        import signal
        import threading

        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                self._previous[signum] = signal.signal(signum, self._raise)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import signal

        for signum, disposition in self._previous.items():
            signal.signal(signum, disposition)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Signalled(signum)
