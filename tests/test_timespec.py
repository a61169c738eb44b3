"""Time values as ncat writes them: parse_duration and unit_of."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.errors import AddressError
from enchufe.timespec import parse_duration, unit_of

_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5m", 90.0),
        ("1h", 3600.0),
        ("3", 3.0),
        ("0", 0.0),
        ("0.25", 0.25),
        (".5s", 0.5),
        ("1e3ms", 1.0),
        ("2147483", 2147483.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    value = parse_duration(text)
    assert value == seconds
    assert type(value) is float


def test_negative_values_are_parsed() -> None:
    # Range checks belong to the command line layer (-q -1 means "never").
    assert parse_duration("-1") == -1.0
    assert parse_duration("-2s") == -2.0


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "1x",
        "",
        "nan",
        "inf",
        "-inf",
        "infs",
        "nanms",
        " 5",
        "5 ",
        "5\n",
        "ms",
        "s",
        "1 s",
        "1ss",
        "1sm",
        "1e400",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_duration(text)
    assert str(info.value) == f'Invalid time value "{text}"'


@pytest.mark.parametrize("text", ["1_0", "٣", "1_000ms"])
def test_parse_duration_rejects_what_strtod_rejects(text: str) -> None:
    with pytest.raises(AddressError):
        parse_duration(text)


def test_parse_duration_never_returns_infinity() -> None:
    try:
        value = parse_duration("1e308h")
    except AddressError:
        return
    assert math.isfinite(value)


@pytest.mark.parametrize(
    ("text", "unit"),
    [("500ms", "ms"), ("2s", "s"), ("1.5m", "m"), ("1h", "h"), ("3", ""), ("", ""), ("ms", "ms"), ("5x", "")],
)
def test_unit_of(text: str, unit: str) -> None:
    assert unit_of(text) == unit


_VALUES = st.floats(min_value=0.0, max_value=1e290, allow_nan=False, allow_infinity=False)


@given(_VALUES, st.sampled_from(sorted(_FACTOR)))
def test_formatted_value_parses_to_value_times_unit(value: float, unit: str) -> None:
    text = f"{value!r}{unit}"
    assert unit_of(text) == unit
    assert parse_duration(text) == value * _FACTOR[unit]


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(_FACTOR)))
def test_integer_value_with_unit(value: int, unit: str) -> None:
    assert parse_duration(f"{value}{unit}") == value * _FACTOR[unit]


@given(st.text(max_size=12))
def test_parse_duration_returns_a_float_or_raises_address_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except AddressError:
        return
    assert isinstance(value, float)
    assert not math.isnan(value)
