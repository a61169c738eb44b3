"""LineBuffer: whole lines per sender, bounded, for chat's line mode and client labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.lines import LineBuffer


def test_complete_lines_come_out_and_the_rest_waits_per_sender() -> None:
    buffer = LineBuffer(64)
    assert buffer.lines("a", b"one\ntw") == [b"one\n"]
    assert buffer.lines("b", b"other\n") == [b"other\n"]  # b's line is not held behind a's
    assert buffer.lines("a", b"o\nthree\n") == [b"two\n", b"three\n"]
    assert buffer.flush("a") == b""


def test_flush_ends_the_unfinished_line_with_a_line_feed() -> None:
    buffer = LineBuffer(64)
    assert buffer.lines("a", b"no newline") == []
    assert buffer.flush("a") == b"no newline\n"
    assert buffer.flush("a") == b""


def test_a_line_longer_than_the_bound_goes_out_in_pieces_cut_between_characters() -> None:
    buffer = LineBuffer(4)
    assert buffer.lines("a", b"abcdefghij") == [b"abcd\n", b"efgh\n"]
    assert buffer.flush("a") == b"ij\n"
    assert buffer.lines("a", "aaé€x".encode()) == [b"aa\xc3\xa9\n"]  # é is not cut in two
    assert buffer.flush("a") == "€x\n".encode()


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=1, max_value=16))
def test_nothing_is_lost_and_nothing_held_is_over_the_bound(chunks: list[bytes], limit: int) -> None:
    buffer = LineBuffer(limit)
    out = b""
    for chunk in chunks:
        for line in buffer.lines("a", chunk):
            assert line.endswith(b"\n") and len(line) <= limit + 1
            out += line
        assert len(buffer._partial.get("a", b"")) <= limit
    out += buffer.flush("a")
    joined = b"".join(chunks)
    # Only line feeds are added (at cuts and at the end); every byte sent is there, in order.
    assert out.replace(b"\n", b"") == joined.replace(b"\n", b"")


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LineBuffer(0)
