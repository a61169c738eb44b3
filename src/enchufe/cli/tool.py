"""What the tools' commands share: results on stdout as text or JSON, a progress line, and
ncat's exit statuses.

Each tool (``enchufe-ping``, ``enchufe-scan``, ``enchufe-resolve``, ``enchufe-bench``,
``enchufe-relay``, also ``python -m enchufe.<tool>``) is a ``main(argv)`` in its own
module of :mod:`enchufe.cli` that parses its options with :mod:`enchufe.cli.gnu_getopt` and
hands its work to :func:`run_tool`:

- **Results** go to stdout through :meth:`Report.result`: the tool's text line, or with
  ``--json`` one JSON object per line (keys stable and documented on the tool's page in
  docs/tools/, no text mixed in). Every line is flushed at once, so a pipe sees results as they come.
- **Messages** go to stderr, prefixed with the program's name: :meth:`Report.info` with
  ``-v`` only, :meth:`Report.error` always.
- **Progress** (:meth:`Report.progress`) is one line on stderr rewritten in place, and
  only when stderr is a terminal: a script's stderr never gets it.
- **Exit statuses** are ncat's: 0 success, 1 a network failure (what the tool asked of the
  network did not happen: no reply, refused, unreachable), 2 anything else: a bad option
  (:class:`~enchufe.cli.config.UsageError`, with the program's name and ``QUITTING.``
  as ncat), a name that does not resolve, a permission the tool lacks. A signal ends
  the tool with 128+signal after the results so far are written.
"""

from __future__ import annotations

import sys

from enchufe.cli import status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

__all__ = ["Report", "run_tool"]


class Report:
    """Where a tool's results and messages go; see the module docstring.

    Args:
        program: the command's name, the prefix of every message (``enchufe-ping``).
        json: write results as JSON lines (``--json``).
        verbosity: how many ``-v`` were given.
        out, err: stdout and stderr (replaceable in tests).
    """

    def __init__(
        self,
        program: str,
        *,
        json: bool = False,
        verbosity: int = 0,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.program = program
        self.json = json
        self.verbosity = verbosity
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        self._progress_shown = False
        self._terminal = self.err.isatty()

    def result(self, record: dict[str, object], text: str | None) -> None:
        """One result: ``record`` as a JSON line with ``--json``, else ``text`` (nothing
        when ``None``: a result only JSON readers want)."""
        self._clear_progress()
        if self.json:
            import json

            self.out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        elif text is not None:
            self.out.write(text + "\n")
        self.out.flush()

    def text(self, line: str) -> None:
        """A line of the human report (a header, a summary) that ``--json`` leaves out."""
        if not self.json:
            self._clear_progress()
            self.out.write(line + "\n")
            self.out.flush()

    def info(self, message: str) -> None:
        """A message shown with ``-v``."""
        if self.verbosity:
            self.error(message)

    def error(self, message: str) -> None:
        """A message shown always: ``program: message``."""
        self._clear_progress()
        self.err.write(f"{self.program}: {message}\n")
        self.err.flush()

    def progress(self, text: str) -> None:
        """Show ``text`` as the progress line, if stderr is a terminal."""
        if self._terminal:
            self.err.write(f"\r{text}\x1b[K")
            self.err.flush()
            self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\x1b[K")
            self._progress_shown = False


def run_tool(program: str, work: Callable[[], int], *, err: TextIO | None = None) -> int:
    """Run a tool's ``work()`` and turn what escapes it into ncat's exit statuses and one
    line on stderr: a usage error 2 (``program: message QUITTING.``), a network error 1,
    a resolve, TLS set-up or permission error 2, an interrupt 130."""
    from enchufe.cli.usage import UsageError
    from enchufe.errors import NetworkError, ResolveError, TlsSetupError

    stream = sys.stderr if err is None else err
    try:
        return work()
    except UsageError as exc:
        stream.write(f"{program}: {exc} QUITTING.\n")
        return status.OTHER_ERROR
    except (ResolveError, TlsSetupError) as exc:
        stream.write(f"{program}: {exc}. QUITTING.\n")
        return status.OTHER_ERROR
    except NetworkError as exc:
        stream.write(f"{program}: {exc}.\n")
        return status.NETWORK_ERROR
    except PermissionError as exc:
        stream.write(f"{program}: {exc.strerror or exc}. QUITTING.\n")
        return status.OTHER_ERROR
    except KeyboardInterrupt:
        return 130
