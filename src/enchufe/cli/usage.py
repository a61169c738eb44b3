"""The error every command raises for a wrong command line (status 2).

Its own module, so that a tool's ``--version`` or ``--help`` path, or its error path,
never loads ncat's option tables (:mod:`enchufe.cli.config`) to name it.
"""

from __future__ import annotations

from enchufe.errors import EnchufeError

__all__ = ["UsageError"]


class UsageError(EnchufeError):
    """The command line is wrong. ``getopt_message`` is set for getopt's own errors,
    which ncat prints in glibc's words followed by a hint to read --help."""

    def __init__(self, message: str, *, getopt_message: bool = False) -> None:
        super().__init__(message)
        self.getopt_message = getopt_message
