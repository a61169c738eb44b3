"""Child processes whose standard input and output are a stream: ncat's ``-e`` and ``-c``.

:class:`ChildProcess` starts a program with two pipes, its stdin and its stdout, and
offers them as one :class:`~enchufe.net.fdstream.FdStream`, so the relay moves bytes
between a connection and a program exactly as between a connection and a terminal
(zero-copy included: both ends are descriptors). The child's stderr is the caller's.

As ncat's ``execv``, a program name without a slash is not looked up in ``PATH``:
``-e cat`` runs ``./cat``; ``-c`` runs ``/bin/sh -c``. The child gets the caller's
environment plus what ``env`` adds (the ``NCAT_*`` variables of
:func:`enchufe.execspec.exec_environment`), and none of the caller's other
descriptors: a child must not keep a listening socket, or the connection, alive.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from enchufe.net.fdstream import FdStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ChildProcess"]


class ChildProcess:
    """A running program and the stream of its stdin (to write) and stdout (to read).

    Args:
        argv: the program and its arguments.
        env: variables added to (or replacing some of) the caller's environment.

    Raises:
        OSError: the program could not be started (``strerror`` says why, in the
            words ncat's ``exec: ...`` line uses).
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        program = argv[0]
        executable = program if os.sep in program else os.path.join(os.curdir, program)
        to_child, to_child_write = os.pipe()
        from_child_read, from_child = os.pipe()
        try:
            self.popen = subprocess.Popen(
                list(argv),
                executable=executable,
                stdin=to_child,
                stdout=from_child,
                env={**os.environ, **env} if env else None,
                close_fds=True,
            )
        except BaseException:
            os.close(to_child_write)
            os.close(from_child_read)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        #: Reads the child's stdout, writes its stdin; ``send_eof`` closes its stdin.
        self.stream = FdStream(from_child_read, to_child_write, owns_fds=True)

    def close(self, *, grace: float = 1.0) -> int:
        """Close the pipes and reap the child; return its exit status.

        A child that has not ended ``grace`` seconds after its pipes closed is
        terminated (then killed), as a program cut off from its connection must not
        run on.
        """
        self.stream.close()
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            return self.end(grace=grace)

    def end(self, *, grace: float = 1.0) -> int:
        """Terminate the program now, kill it if it still runs ``grace`` seconds later,
        and return its exit status. Safe from any thread: the pipes stay open, for the
        stream's owner to close."""
        self.terminate()
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def terminate(self) -> None:
        """Ask the program to end (SIGTERM) and return at once. Safe from any thread."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.terminate()
