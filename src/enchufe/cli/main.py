"""The ``enchufe`` command: argv → Config → mode → exit status.

This module is the single boundary between exceptions and exit statuses (ncat's:
0 success, 1 network error, 2 anything else) and the only place that touches the
process's stdio. Imports are deferred to the mode that needs them, so that
``enchufe --version`` starts about as fast as Python itself: this module imports
nothing at the top but ``sys`` (not even ``typing``: mypy reads the
``TYPE_CHECKING = False`` idiom like ``typing.TYPE_CHECKING``).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

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
    args = sys.argv[1:] if argv is None else argv
    err = stderr if stderr is not None else _stderr()
    # ncat acts on options in order, so a first argument of --version or -h decides
    # everything: answer it without loading the parser.
    if args[:1] == ["--version"]:
        return _show_version(err)
    if args[:1] in (["-h"], ["--help"]):
        return _show_help()

    from enchufe.cli import status
    from enchufe.cli.config import parse_args
    from enchufe.cli.usage import UsageError

    try:
        config = parse_args(args)
    except UsageError as exc:
        if exc.getopt_message:
            err.write(f"enchufe: {exc}\n")
            err.write("enchufe: Try `--help' or man(1) ncat for more information, usage options and help. QUITTING.\n")
        else:
            err.write(f"enchufe: {exc} QUITTING.\n")
        return status.OTHER_ERROR
    if config.show_version:
        return _show_version(err)
    if config.show_help:
        return _show_help()
    stdin_was_closed = 0 in _reserve_standard_fds()
    return _run(config, stdin_fd, stdout_fd, err, stdin_was_closed=stdin_was_closed)


def _stderr() -> TextIO:
    """sys.stderr, or where diagnostics go when descriptor 2 was closed at start (Python
    then leaves sys.stderr None): nowhere, as the user asked."""
    if sys.stderr is not None:
        return sys.stderr
    import os

    return open(os.devnull, "w", encoding="utf-8")  # open as long as the process


def _reserve_standard_fds() -> list[int]:
    """Give each of descriptors 0, 1 and 2 that is closed ``/dev/null``, read-only, and
    return them.

    Otherwise the first socket would take the lowest closed one: with stdout closed
    (``>&-``) the peer's data went back to the peer, with stderr closed the peer got
    the diagnostics. Read-only, reading gives end of file at once (ncat reserves a
    closed stdin the same way), and writing fails with EBADF, as it would on the
    closed descriptor: data meant for a closed stdout is an error, not lost in silence.
    """
    import os

    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for _ in closed:
        try:
            os.open(os.devnull, os.O_RDONLY)  # the lowest free descriptor: the next closed one
        except OSError:
            break  # no /dev/null (a bare chroot): carry on, as ncat does
    return closed


def _version() -> str:
    from enchufe import __version__

    return f"Version {__version__} ( ncat-compatible )"


def _show_version(err: TextIO) -> int:
    err.write(f"enchufe: {_version()}\n")
    return 0


def _show_help() -> int:
    from enchufe import __version__
    from enchufe.cli.options import USAGE

    if sys.stdout is not None:  # None: descriptor 1 was closed at start
        sys.stdout.write(USAGE.format(version=__version__))
    return 0


def _run(config: Config, stdin_fd: int, stdout_fd: int, err: TextIO, *, stdin_was_closed: bool) -> int:
    from enchufe.cli import status
    from enchufe.cli.modes import Environment, run_connect, run_listen
    from enchufe.cli.output import Messages
    from enchufe.cli.signals import Signalled
    from enchufe.errors import (
        AddressError,
        BindError,
        ConnectTimeout,
        IdleTimeout,
        NetworkError,
        OutputFailed,
        ProxyError,
        ResolveError,
        TlsSetupError,
        Unsupported,
        WorkersFailed,
    )

    messages = Messages(err, config.verbosity)
    messages.info(_version())
    if stdin_was_closed and config.listen:
        messages.debug_always("stdin is closed, attempting to reserve STDIN_FILENO")  # ncat's words
    if config.nsock_engine is not None:
        messages.info("--nsock-engine has no effect: enchufe does not use nsock.")
    env = Environment(stdin_fd, stdout_fd, messages)
    # -z answers with its exit status alone: its network failures are shown with -v only.
    failure = messages.info if config.zero_io else messages.error
    try:
        return (run_listen if config.listen else run_connect)(config, env)
    except Signalled as signalled:
        if config.listen:
            return 128 + signalled.signum
        _die_by(signalled.signum)  # connect mode: ncat dies by the signal itself
        raise
    except KeyboardInterrupt:
        import signal

        _die_by(signal.SIGINT)
        raise
    except ConnectTimeout:
        failure("TIMEOUT.")
        return status.NETWORK_ERROR
    except IdleTimeout as exc:
        # ncat: an idle connect-mode session is a network error; an idle listener quits (2).
        if config.listen:
            messages.error(f"{exc}. QUITTING.")
            return status.OTHER_ERROR
        messages.error(f"{exc}.")
        return status.NETWORK_ERROR
    except OutputFailed as exc:
        messages.bare(f"write: {exc}")  # ncat's die("write"): perror's words, status 2
        return status.OTHER_ERROR
    except ProxyError as exc:
        failure(f"{str(exc).removesuffix('.')}.")  # ncat's proxy messages end with their own full stop
        return status.NETWORK_ERROR
    except (ResolveError, BindError, Unsupported, AddressError, TlsSetupError, WorkersFailed) as exc:
        messages.error(f"{exc}. QUITTING.")
        return status.OTHER_ERROR
    except NetworkError as exc:
        failure(f"{exc}.")
        return status.NETWORK_ERROR
    except OSError as exc:  # files named by -o/-x, and the like
        messages.error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}. QUITTING.")
        return status.OTHER_ERROR


def _die_by(signum: int) -> None:
    """End the process by ``signum`` itself, as ncat does, so the parent sees the signal."""
    import os
    import signal

    if sys.stdout is not None:  # None: descriptor 1 was closed at start
        sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
