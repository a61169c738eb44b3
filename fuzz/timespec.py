"""Fuzz enchufe.timespec and the command line's time options (cli.config.parse_time).

Invariant: ``parse_duration`` gives a finite float or raises ``AddressError``, and a
value it gives reads back the same from its ``repr``; ``parse_time`` gives seconds in
(0, INT_MAX ms] or raises ``UsageError``, nothing else.
"""

from __future__ import annotations

import math

import fuzzing

with fuzzing.instrumented():
    from enchufe.cli.config import parse_time
    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError
    from enchufe.timespec import parse_duration, unit_of


def check(data: bytes) -> None:
    text = fuzzing.text(data)
    assert unit_of(text) in ("ms", "s", "m", "h", "")
    try:
        seconds = parse_duration(text)
    except AddressError:
        pass
    else:
        assert math.isfinite(seconds), (text, seconds)
        assert parse_duration(repr(seconds)) == seconds, (text, seconds)
    try:
        seconds = parse_time(text, "-w timeout")
    except UsageError:
        return
    assert 0 < seconds <= 2**31 / 1000, (text, seconds)


if __name__ == "__main__":
    fuzzing.main(check)
