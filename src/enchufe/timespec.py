"""Time values as ncat writes them: ``500ms``, ``2s``, ``1.5m``, ``1h``, or plain seconds.

ncat's rules, copied: a decimal number (optionally fractional, with an exponent)
followed by an optional unit; no unit means seconds. Range checks and ncat's "did you mean
milliseconds?" warning depend on the option and live in the command line layer.
"""

from __future__ import annotations

import math
import re

from enchufe.errors import AddressError

__all__ = ["parse_duration", "unit_of"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
#: What C's strtod reads as a decimal number; Python's float() also takes "1_0" and
#: non-ASCII digits, which ncat refuses.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def unit_of(text: str) -> str:
    """The unit suffix of a time value (``"ms"``, ``"s"``, ``"m"``, ``"h"``) or ``""``."""
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return unit
    return ""


def parse_duration(text: str) -> float:
    """Parse a time value into seconds.

    Raises:
        AddressError: the text is not a number with an optional unit.
    """
    unit = unit_of(text)
    number = text[: len(text) - len(unit)]
    seconds = float(number) * _UNIT_SECONDS[unit] if _DECIMAL.fullmatch(number) else math.nan
    if not math.isfinite(seconds):
        raise AddressError(f'Invalid time value "{text}"')
    return seconds
