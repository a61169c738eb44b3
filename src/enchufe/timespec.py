"""Time values as ncat writes them: ``500ms``, ``2s``, ``1.5m``, ``1h``, or plain seconds.

ncat's rules, copied: a decimal number (optionally fractional, with an exponent)
followed by an optional unit; no unit means seconds. Range checks and ncat's "did you mean
milliseconds?" warning depend on the option and live in the command line layer.
"""

from __future__ import annotations

import math

from enchufe.errors import AddressError

__all__ = ["parse_duration", "unit_of"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


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
    seconds = float(number) * _UNIT_SECONDS[unit] if _is_decimal(number) else math.nan
    if not math.isfinite(seconds):
        raise AddressError(f'Invalid time value "{text}"')
    return seconds


def _is_decimal(text: str) -> bool:
    """What C's strtod reads as a decimal number: ``[+-]digits[.digits][e[+-]digits]``.
    Python's float() also takes "1_0", "inf" and non-ASCII digits, which ncat refuses."""
    if not text.isascii():
        return False
    mantissa, e, exponent = text.lower().partition("e")
    mantissa = mantissa[1:] if mantissa[:1] in ("+", "-") else mantissa
    exponent = exponent[1:] if exponent[:1] in ("+", "-") else exponent
    whole, _, fraction = mantissa.partition(".")
    return (
        bool(whole or fraction)
        and all(part.isdigit() for part in (whole, fraction) if part)
        and (not e or exponent.isdigit())
    )
