"""Fuzz the command line: cli.gnu_getopt and cli.config.parse_args (NUL-separated arguments).

Invariant: ``parse_args`` gives a ``Config`` or raises ``UsageError``, nothing else (ncat's
message, then exit status 2); ``gnu_getopt`` over ncat's option table yields
``(option, value)`` string pairs or raises ``GetoptError``; it never reads a file and
never touches the network.
"""

from __future__ import annotations

import os

import fuzzing

with fuzzing.instrumented():
    from enchufe.cli.config import Config, parse_args
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.options import LONG_IDENTITY, LONG_OPTIONS, SHORT_OPTIONS
    from enchufe.cli.usage import UsageError

os.environ.pop("POSIXLY_CORRECT", None)


def check(data: bytes) -> None:
    argv = fuzzing.text(data).split("\0") if data else []
    try:
        config = parse_args(argv)
    except UsageError as error:
        assert str(error), argv
    else:
        assert isinstance(config, Config)
    for posixly_correct in (False, True):
        try:
            for option, value in gnu_getopt(
                argv, SHORT_OPTIONS, LONG_OPTIONS, identity=LONG_IDENTITY, posixly_correct=posixly_correct
            ):
                assert isinstance(option, str) and isinstance(value, str)
        except GetoptError as error:
            assert str(error)


if __name__ == "__main__":
    fuzzing.main(check)
