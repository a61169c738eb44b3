"""A :class:`~enchufe.net.stream.Stream` over a pair of file descriptors, such as stdin/stdout.

The descriptors stay in blocking mode: they are often shared with other processes
(a shell's pipe, a terminal), and switching them to non-blocking would change what
those processes see. Timeouts are implemented by waiting with ``poll`` first.

``send_eof`` replaces the write descriptor with ``/dev/null`` rather than closing it:
the reader downstream sees end of file, and the descriptor number stays valid, so a
later ``open()`` can never take it over and receive output meant for the terminal.
Without ``/dev/null`` (or without a free descriptor) it closes the descriptor instead.
"""

from __future__ import annotations

import os
import select
import time

from enchufe.errors import TimedOut
from enchufe.net.stream import DEFAULT_RECV_SIZE, translate_os_error

__all__ = ["FdStream"]


class FdStream:
    """Read from one file descriptor and write to another (they may be the same).

    Args:
        read_fd: the descriptor ``recv`` reads (stdin: 0).
        write_fd: the descriptor ``send_all`` writes (stdout: 1).
        owns_fds: close both descriptors on :meth:`close`. The process's own stdio is
            not owned.
    """

    def __init__(self, read_fd: int, write_fd: int, *, owns_fds: bool = False) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.is_datagram = False
        self._owns_fds = owns_fds
        self._closed = False

    def recv(self, max_bytes: int = DEFAULT_RECV_SIZE, *, timeout: float | None = None) -> bytes:
        if timeout is not None:
            self._wait(self.read_fd, select.POLLIN, time.monotonic() + timeout)
        try:
            return os.read(self.read_fd, max_bytes)
        except OSError as exc:
            raise translate_os_error(exc, "recv") from exc

    def send_all(self, data: bytes, *, timeout: float | None = None) -> None:
        view = memoryview(data)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while view:
                if deadline is None:
                    view = view[os.write(self.write_fd, view) :]
                    continue
                # With a deadline, write no more than a pipe is sure to take once poll
                # says it is writable: a larger write could block past the deadline.
                self._wait(self.write_fd, select.POLLOUT, deadline)
                view = view[os.write(self.write_fd, view[: select.PIPE_BUF]) :]
        except OSError as exc:
            raise translate_os_error(exc, "send") from exc

    def send_eof(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            # No /dev/null (a bare container, a chroot) or no descriptor left: closing
            # is the only way left to signal end of file. The number may be reused by a
            # later open(); nothing in enchufe writes to it after its end of file.
            fd, self.write_fd = self.write_fd, -1
            if fd != self.read_fd:
                os.close(fd)
            return
        try:
            os.dup2(devnull, self.write_fd)
        finally:
            os.close(devnull)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_fds:
            os.close(self.read_fd)
            if self.write_fd not in (self.read_fd, -1):
                os.close(self.write_fd)

    def fileno(self) -> int:
        return self.read_fd

    def pending(self) -> int:
        return 0

    def abort(self) -> None:
        """Nothing to break off: a local writer that stops reading is waited for."""

    @staticmethod
    def _wait(fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise TimedOut("Timed out")

    def __repr__(self) -> str:
        return f"<FdStream read_fd={self.read_fd} write_fd={self.write_fd}>"
