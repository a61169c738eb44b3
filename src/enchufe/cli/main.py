"""The ``enchufe`` command: argv → Config → mode → exit status.

This module is the single boundary between exceptions and exit statuses (ncat's:
0 success, 1 network error, 2 anything else) and the only place that touches the
process's stdio. Imports are deferred to the mode that needs them, so that
``enchufe --version`` starts about as fast as Python itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from enchufe.cli.config import Config

__all__ = ["main"]


def main(argv: list[str] | None = None, *, stdin_fd: int = 0, stdout_fd: int = 1, stderr: TextIO | None = None) -> int:
    """Run the command and return its exit status.

    Args:
        argv: the arguments without the program name; ``sys.argv[1:]`` by default.
        stdin_fd: where data to send comes from.
        stdout_fd: where received data goes.
        stderr: where diagnostics go.
    """
    from enchufe.cli import status
    from enchufe.cli.config import UsageError, parse_args

    err = stderr if stderr is not None else sys.stderr
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if exc.getopt_message:
            err.write(f"enchufe: {exc}\n")
            err.write("enchufe: Try `--help' or man(1) ncat for more information, usage options and help. QUITTING.\n")
        else:
            err.write(f"enchufe: {exc} QUITTING.\n")
        return status.OTHER_ERROR
    if config.show_version or config.show_help:
        from enchufe import __version__

        if config.show_help:
            from enchufe.cli.options import USAGE

            sys.stdout.write(USAGE.format(version=__version__))
        else:
            err.write(f"enchufe: Version {__version__} ( ncat-compatible )\n")
        return status.SUCCESS
    return _run(config, stdin_fd, stdout_fd, err)


def _run(config: Config, stdin_fd: int, stdout_fd: int, err: TextIO) -> int:
    from enchufe import __version__
    from enchufe.cli import status
    from enchufe.cli.modes import Environment, run_connect, run_listen
    from enchufe.cli.output import Messages
    from enchufe.errors import (
        AddressError,
        BindError,
        ConnectTimeout,
        IdleTimeout,
        NetworkError,
        ResolveError,
        Unsupported,
    )

    messages = Messages(err, config.verbosity)
    messages.info(f"Version {__version__} ( ncat-compatible )")
    if config.nsock_engine is not None:
        messages.info("--nsock-engine has no effect: enchufe does not use nsock.")
    env = Environment(stdin_fd, stdout_fd, messages)
    try:
        if config.listen:
            with _exit_on_signals():
                return run_listen(config, env)
        return run_connect(config, env)
    except _Signalled as signalled:
        return 128 + signalled.signum
    except KeyboardInterrupt:
        import signal

        _die_by(signal.SIGINT)
        raise
    except ConnectTimeout:
        messages.error("TIMEOUT.")
        return status.NETWORK_ERROR
    except IdleTimeout as exc:
        # ncat: an idle connect-mode session is a network error; an idle listener quits (2).
        if config.listen:
            messages.error(f"{exc}. QUITTING.")
            return status.OTHER_ERROR
        messages.error(f"{exc}.")
        return status.NETWORK_ERROR
    except (ResolveError, BindError, Unsupported, AddressError) as exc:
        messages.error(f"{exc}. QUITTING.")
        return status.OTHER_ERROR
    except NetworkError as exc:
        messages.error(f"{exc}.")
        return status.NETWORK_ERROR
    except OSError as exc:  # files named by -o/-x, and the like
        messages.error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}. QUITTING.")
        return status.OTHER_ERROR


class _Signalled(BaseException):
    """A termination signal arrived in listen mode; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _exit_on_signals() -> Iterator[None]:
    """ncat's listen mode: SIGINT, SIGTERM, SIGHUP and SIGQUIT end it with status
    128+signal. Unwinding (rather than dying on the spot) closes the sockets and
    removes a Unix socket file on the way out."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only: nothing to install
        return

    def handler(signum: int, frame: object) -> None:
        raise _Signalled(signum)

    signums = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, disposition in previous.items():
            signal.signal(signum, disposition)


def _die_by(signum: int) -> None:
    """End the process by ``signum`` itself, as ncat does, so the parent sees the signal."""
    import signal

    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
