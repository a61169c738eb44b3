"""TelnetResponder: refuse every option request, answer nothing else, across any split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.telnet import TelnetCommand, TelnetResponder

IAC, WILL, WONT, DO, DONT = 255, 251, 252, 253, 254
NOP, SB, SE = 241, 250, 240


def test_command_values_are_rfc854() -> None:
    assert (TelnetCommand.IAC, TelnetCommand.WILL, TelnetCommand.WONT, TelnetCommand.DO, TelnetCommand.DONT) == (
        IAC,
        WILL,
        WONT,
        DO,
        DONT,
    )


@pytest.mark.parametrize("option", [0, 1, 3, 24, 31, 250, 255])
def test_do_is_answered_wont(option: int) -> None:
    assert TelnetResponder().receive_data(bytes([IAC, DO, option])) == bytes([IAC, WONT, option])


@pytest.mark.parametrize("option", [0, 1, 3, 24, 31, 250, 255])
def test_will_is_answered_dont(option: int) -> None:
    assert TelnetResponder().receive_data(bytes([IAC, WILL, option])) == bytes([IAC, DONT, option])


@pytest.mark.parametrize("verb", [DONT, WONT])
def test_refusals_are_not_answered(verb: int) -> None:
    responder = TelnetResponder()
    assert responder.receive_data(bytes([IAC, verb, 1])) == b""
    # and the state is clean afterwards
    assert responder.receive_data(bytes([IAC, DO, 1])) == bytes([IAC, WONT, 1])


def test_plain_data_gets_no_reply() -> None:
    assert TelnetResponder().receive_data(b"hello world\r\n" + bytes([DO, WILL, 1])) == b""


def test_escaped_iac_is_data() -> None:
    responder = TelnetResponder()
    # IAC IAC is a data byte 255; the DO after it is data too, not a command.
    assert responder.receive_data(bytes([IAC, IAC, DO, 1])) == b""
    assert responder.receive_data(bytes([IAC, DO, 1])) == bytes([IAC, WONT, 1])


def test_escaped_iac_split_between_chunks() -> None:
    responder = TelnetResponder()
    assert responder.receive_data(bytes([IAC])) == b""
    assert responder.receive_data(bytes([IAC])) == b""
    assert responder.receive_data(bytes([DO, 1])) == b""


def test_several_requests_in_one_chunk() -> None:
    data = (
        bytes([IAC, DO, 1, IAC, WILL, 3, IAC, DONT, 5]) + b"login: " + bytes([IAC, DO, 24, IAC, WONT, 7, IAC, WILL, 31])
    )
    assert TelnetResponder().receive_data(data) == bytes([IAC, WONT, 1, IAC, DONT, 3, IAC, WONT, 24, IAC, DONT, 31])


@pytest.mark.parametrize("command", [NOP, SE, 242, 243, 244, 245, 246, 247, 248, 249])
def test_other_commands_are_ignored(command: int) -> None:
    responder = TelnetResponder()
    # the byte after the command is plain data, even if it looks like a verb
    assert responder.receive_data(bytes([IAC, command, DO, 1])) == b""
    assert responder.receive_data(bytes([IAC, command, IAC, DO, 1])) == bytes([IAC, WONT, 1])


def test_subnegotiation_is_ignored() -> None:
    # IAC SB TERMINAL-TYPE SEND IAC SE
    assert TelnetResponder().receive_data(bytes([IAC, SB, 24, 1, IAC, SE])) == b""


_STREAM = (
    b"Welcome"
    + bytes([IAC, DO, 1, IAC, IAC, DO, 2, IAC, WILL, 3, IAC, NOP, DO, 4, IAC, WONT, 5])
    + b"\r\n"
    + bytes([IAC, SB, 24, 1, IAC, SE, IAC, DO, IAC, IAC, DONT, 6, IAC, WILL, 255])
)
_STREAM_REPLIES = bytes([IAC, WONT, 1, IAC, DONT, 3, IAC, WONT, IAC, IAC, DONT, 255])


def test_reference_stream_replies() -> None:
    assert TelnetResponder().receive_data(_STREAM) == _STREAM_REPLIES


@pytest.mark.parametrize("split", range(len(_STREAM) + 1))
def test_every_two_way_split_gives_the_same_replies(split: int) -> None:
    responder = TelnetResponder()
    replies = responder.receive_data(_STREAM[:split]) + responder.receive_data(_STREAM[split:])
    assert replies == _STREAM_REPLIES


@pytest.mark.parametrize("request_", [bytes([IAC, DO, 1]), bytes([IAC, WILL, 3])])
def test_every_three_way_split_of_one_request(request_: bytes) -> None:
    expected = TelnetResponder().receive_data(request_)
    assert len(expected) == 3
    for first in range(4):
        for second in range(first, 4):
            responder = TelnetResponder()
            replies = b"".join(
                responder.receive_data(part) for part in (request_[:first], request_[first:second], request_[second:])
            )
            assert replies == expected, (first, second)


def _reference(data: bytes) -> bytes:
    """An independent model: scan commands by index."""
    replies = bytearray()
    i = 0
    while i < len(data):
        if data[i] != IAC:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        verb = data[i + 1]
        if verb in (WILL, WONT, DO, DONT):
            if i + 2 >= len(data):
                break
            if verb == DO:
                replies += bytes([IAC, WONT, data[i + 2]])
            elif verb == WILL:
                replies += bytes([IAC, DONT, data[i + 2]])
            i += 3
        else:
            i += 2
    return bytes(replies)


# Byte streams rich in telnet commands, so that sequences actually occur.
_TELNET_BYTES = st.lists(
    st.sampled_from([IAC, IAC, IAC, IAC, WILL, WONT, DO, DONT, NOP, SB, SE, 0, 1, 24, ord("a"), 200]),
    max_size=60,
).map(bytes)


@given(st.binary(max_size=200) | _TELNET_BYTES)
def test_replies_are_refusals_matching_the_reference(data: bytes) -> None:
    replies = TelnetResponder().receive_data(data)
    assert len(replies) % 3 == 0
    for start in range(0, len(replies), 3):
        assert replies[start] == IAC
        assert replies[start + 1] in (WONT, DONT)
    assert replies == _reference(data)


@given(_TELNET_BYTES)
def test_byte_by_byte_equals_whole(data: bytes) -> None:
    whole = TelnetResponder().receive_data(data)
    responder = TelnetResponder()
    assert b"".join(responder.receive_data(data[i : i + 1]) for i in range(len(data))) == whole


@given(_TELNET_BYTES, st.lists(st.integers(0, 60), max_size=6))
def test_any_chunking_equals_whole(data: bytes, cuts: list[int]) -> None:
    whole = TelnetResponder().receive_data(data)
    bounds = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    responder = TelnetResponder()
    assert b"".join(responder.receive_data(data[a:b]) for a, b in itertools.pairwise(bounds)) == whole
