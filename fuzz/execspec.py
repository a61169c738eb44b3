"""Fuzz enchufe.execspec.split_command, ncat's ``-e`` argument splitting.

Invariant: it never raises and gives strings without ncat's separators unless escaped;
arguments escaped (a backslash before each separator and backslash) and joined with
spaces split back into themselves, for arguments that are not empty and do not end in
a separator (ncat's quirk eats the separators after an escaped character).
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.execspec import split_command

_SPACE = " \t\n\r\v\f"


def _escaped(argument: str) -> str:
    return "".join("\\" + char if char in _SPACE or char == "\\" else char for char in argument)


def check(data: bytes) -> None:
    text = fuzzing.text(data)
    arguments = split_command(text)
    assert all(isinstance(argument, str) for argument in arguments)
    wanted = [argument for argument in text.split("\0") if argument and argument[-1] not in _SPACE]
    assert split_command(" ".join(_escaped(argument) for argument in wanted)) == wanted, wanted


if __name__ == "__main__":
    fuzzing.main(check)
