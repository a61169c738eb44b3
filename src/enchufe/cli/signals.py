"""Termination signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT unwind the command, so
that sockets close and socket files are removed; then listen mode exits with
128+signal and connect mode dies by the signal, as ncat does.

A signal is raised as an exception only where the command waits (see
:meth:`SignalHandlers.interruptible`): raised anywhere else, it could come between
the creation of a socket and the code that owns it, and leave the socket to the
garbage collector. Elsewhere it is recorded, and raised at the next wait or when the
handlers are removed. A signal ignored when the command started stays ignored, as
for a job that a shell starts in the background with SIGINT and SIGQUIT ignored.

The signal module is imported only when handlers are installed: it costs more
start-up time than a short-lived client can spare.
"""

from __future__ import annotations

import contextlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from signal import _HANDLER
    from types import FrameType, TracebackType

__all__ = ["SignalHandlers", "Signalled"]


class Signalled(BaseException):
    """A termination signal arrived; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class SignalHandlers:
    """While active, SIGINT, SIGTERM, SIGHUP and SIGQUIT end the command with
    :class:`Signalled`, raised once: at once inside :meth:`interruptible`, otherwise
    at its next entry or at the exit of this context. The first signal is the one
    raised; later ones change nothing.

    Outside the main thread (the command run in-process by a test) it installs
    nothing: Python delivers signals to the main thread only.
    """

    def __init__(self) -> None:
        self._previous: dict[int, _HANDLER] = {}
        #: The read end of the signal wake-up pipe, for the waits to watch: a signal
        #: that comes just before a wait's system call does not interrupt it.
        self.wake_fd: int | None = None
        self._wake_write = -1
        self._previous_wakeup = -1
        self._signum: int | None = None
        self._raised = False
        self._armed = False
        #: Called (from the handler, on the main thread) when a signal arrives: an
        #: event loop's ``stop``, for a mode that waits in a loop rather than in an
        #: interruptible wait. The signal is then raised at this context's exit.
        self.on_signal: Callable[[], object] | None = None

    def __enter__(self) -> SignalHandlers:
        import os
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.wake_fd, self._wake_write = os.pipe()
            os.set_blocking(self.wake_fd, False)
            os.set_blocking(self._wake_write, False)
            self._previous_wakeup = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import os
        import signal

        for signum, disposition in self._previous.items():
            signal.signal(signum, disposition)
        self._previous.clear()
        if self.wake_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            os.close(self.wake_fd)
            os.close(self._wake_write)
            self.wake_fd = None
        self._raise_pending()

    @property
    def pending(self) -> int | None:
        """The signal that arrived and has not been raised yet, if any."""
        return None if self._raised else self._signum

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A wait that a signal may interrupt: raises :class:`Signalled` on entry if a
        signal came before, and from wherever the wait is when one comes during it.

        The code inside must release what it holds when an exception unwinds it, from
        any point: a blocking wait, such as ``poll`` or a Condition's, and no more.
        """
        self._armed = True
        try:
            self._raise_pending()  # after arming: a signal just before is not missed
            yield
        finally:
            self._armed = False

    def _raise_pending(self) -> None:
        if self._signum is not None and not self._raised:
            self._raised = True
            raise Signalled(self._signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._signum is None:
            self._signum = signum
        if self.on_signal is not None:
            self.on_signal()
        if self._armed:
            self._armed = False
            self._raise_pending()
