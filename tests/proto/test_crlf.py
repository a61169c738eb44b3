"""CrlfTranslator (-C): LF becomes CRLF, existing CRLF is kept, across chunk boundaries."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.crlf import CrlfTranslator


def _reference(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nb", b"a\r\nb"),
        (b"a\r\nb", b"a\r\nb"),
        (b"\n", b"\r\n"),
        (b"\n\n", b"\r\n\r\n"),
        (b"\r", b"\r"),
        (b"a\rb", b"a\rb"),
        (b"\r\r\n", b"\r\r\n"),
        (b"\n\r", b"\r\n\r"),
        (b"\r\n\n", b"\r\n\r\n"),
        (b"no newline", b"no newline"),
        (b"", b""),
    ],
)
def test_translate_one_chunk(data: bytes, expected: bytes) -> None:
    assert CrlfTranslator().translate(data) == expected


def test_crlf_split_between_chunks_is_kept() -> None:
    translator = CrlfTranslator()
    assert translator.translate(b"---\r") == b"---\r"
    assert translator.translate(b"\n") == b"\n"


def test_lone_cr_then_text_then_lf() -> None:
    translator = CrlfTranslator()
    assert translator.translate(b"a\r") + translator.translate(b"b\n") == b"a\rb\r\n"


def test_empty_chunk_keeps_the_state() -> None:
    translator = CrlfTranslator()
    out = translator.translate(b"x\r") + translator.translate(b"") + translator.translate(b"\ny\n")
    assert out == b"x\r\ny\r\n"


def test_lf_chunk_after_lf_chunk() -> None:
    translator = CrlfTranslator()
    assert [translator.translate(b"\n") for _ in range(3)] == [b"\r\n"] * 3


def test_cr_state_does_not_stick() -> None:
    translator = CrlfTranslator()
    assert translator.translate(b"\r") == b"\r"
    assert translator.translate(b"x") == b"x"
    assert translator.translate(b"\n") == b"\r\n"


_CRLF_BYTES = st.lists(st.sampled_from(b"\r\n\r\nab\x00"), max_size=40).map(bytes)


@given(st.binary(max_size=100) | _CRLF_BYTES)
def test_matches_the_reference(data: bytes) -> None:
    assert CrlfTranslator().translate(data) == _reference(data)


@given(st.binary(max_size=100) | _CRLF_BYTES, st.lists(st.integers(0, 100), max_size=8))
def test_any_chunking_equals_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    translator = CrlfTranslator()
    out = b"".join(translator.translate(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert out == CrlfTranslator().translate(data)
    assert out == _reference(data)


@given(_CRLF_BYTES)
def test_byte_by_byte_equals_the_reference(data: bytes) -> None:
    translator = CrlfTranslator()
    assert b"".join(translator.translate(data[i : i + 1]) for i in range(len(data))) == _reference(data)
