"""SOCKS4, SOCKS4a and SOCKS5, both sides, sans-IO: the bytes ncat 7.93 sends and takes,
every reply and refusal, and fuzzing (random bytes, every split, oversized input)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from enchufe.errors import ProtocolError
from enchufe.proto.proxy import UPSTREAM_FAILURES, Close, Credentials, OpenUpstream, Reply, SendUpstream, StartTunnel
from enchufe.proto.socks import (
    SOCKS4_MAX_FIELD,
    NeedMore,
    Socks4Negotiator,
    Socks4Reply,
    Socks5Negotiator,
    Socks5Reply,
    parse_socks4_reply,
    parse_socks5_auth_reply,
    parse_socks5_method,
    parse_socks5_reply,
    socks4_request,
    socks5_auth_request,
    socks5_greeting,
    socks5_request,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.proto.proxy import Action

Negotiator = Socks4Negotiator | Socks5Negotiator

# -- the client's messages: ncat 7.93's bytes, as recorded by a listener ----------------------


def test_the_socks4_request_for_an_address_is_ncats() -> None:
    assert socks4_request("127.0.0.1", 9999) == b"\x04\x01'\x0f\x7f\x00\x00\x01\x00"
    assert socks4_request("127.0.0.1", 9999, "bob:pw") == b"\x04\x01'\x0f\x7f\x00\x00\x01bob:pw\x00"


def test_a_name_is_socks4a_as_ncat_sends_it() -> None:
    assert socks4_request("target.invalid", 9999) == b"\x04\x01'\x0f\x00\x00\x00\x01\x00target.invalid\x00"


def test_socks4_cannot_carry_ipv6_nor_a_nul_nor_an_overlong_field() -> None:
    with pytest.raises(ProtocolError, match="IPv6 addresses are not supported with SOCKS4"):
        socks4_request("::1", 80)
    with pytest.raises(ProtocolError, match="user id"):
        socks4_request("127.0.0.1", 80, "a\0b")
    with pytest.raises(ProtocolError, match="user id"):
        socks4_request("127.0.0.1", 80, "u" * 256)
    socks4_request("127.0.0.1", 80, "u" * 255)
    with pytest.raises(ProtocolError, match="1 to 255 bytes"):
        socks4_request("a" * 256, 80)
    with pytest.raises(ProtocolError, match="between 0 and 65535"):
        socks4_request("127.0.0.1", 65536)


def test_the_socks5_greeting_offers_what_it_is_given() -> None:
    assert socks5_greeting([0]) == b"\x05\x01\x00"  # ncat without --proxy-auth
    assert socks5_greeting([0, 2]) == b"\x05\x02\x00\x02"  # ncat with it
    for bad in ([], [256], list(range(256))):
        with pytest.raises(ProtocolError):
            socks5_greeting(bad)


def test_the_socks5_requests_are_ncats_for_each_address_type() -> None:
    assert socks5_request("127.0.0.1", 9999) == b"\x05\x01\x00\x01\x7f\x00\x00\x01'\x0f"
    assert socks5_request("::1", 9999) == b"\x05\x01\x00\x04" + bytes(15) + b"\x01'\x0f"
    assert socks5_request("target.invalid", 9999) == b"\x05\x01\x00\x03\x0etarget.invalid'\x0f"
    assert socks5_request("fe80::1%eth0", 1) == b"\x05\x01\x00\x04\xfe\x80" + bytes(13) + b"\x01\x00\x01"
    assert socks5_request("bücher.example", 1) == b"\x05\x01\x00\x03\x15xn--bcher-kva.example\x00\x01"
    for bad in ("", "a" * 256, "a\0b"):
        with pytest.raises(ProtocolError):
            socks5_request(bad, 80)
    with pytest.raises(ProtocolError):
        socks5_request("127.0.0.1", -1)


def test_the_rfc1929_request_checks_both_lengths() -> None:
    assert socks5_auth_request("alice", "secret") == b"\x01\x05alice\x06secret"  # ncat's bytes
    assert socks5_auth_request("ü", "p") == b"\x01\x02\xc3\xbc\x01p"
    for user, password in (("", "p"), ("u", ""), ("u" * 256, "p"), ("u", "p" * 256)):
        with pytest.raises(ProtocolError, match="1 to 255 bytes"):
            socks5_auth_request(user, password)
    socks5_auth_request("u" * 255, "p" * 255)


def test_credentials_not_in_utf8_go_as_the_bytes_typed() -> None:
    # Found by fuzz/socks.py: argv's bytes that are not UTF-8 reach Python as surrogates
    # ("\udcff" for b"\xff"), and str.encode() raised UnicodeEncodeError on them.
    assert socks5_auth_request("\udcff", "p\udcfe") == b"\x01\x01\xff\x02p\xfe"
    assert socks4_request("127.0.0.1", 80, "\udcff") == b"\x04\x01\x00\x50\x7f\x00\x00\x01\xff\x00"


# -- the proxy's replies, read by the client -------------------------------------------------


def test_socks4_replies_of_every_code_and_both_versions_ncat_takes() -> None:
    for code in (90, 91, 92, 93, 0, 255):
        assert parse_socks4_reply(bytes([0, code, 0, 80, 10, 0, 0, 1])) == (Socks4Reply(code, "10.0.0.1", 80), 8)
    assert parse_socks4_reply(b"\x04\x5a" + bytes(6))[0] == Socks4Reply(90, "0.0.0.0", 0)
    assert parse_socks4_reply(b"\x00\x5a\x00") == NeedMore(5)
    with pytest.raises(ProtocolError, match="wrong SOCKS4 reply version 5"):
        parse_socks4_reply(b"\x05\x00" + bytes(6))


def test_socks5_method_and_auth_replies() -> None:
    assert parse_socks5_method(b"") == NeedMore(2)
    assert parse_socks5_method(b"\x05") == NeedMore(1)
    assert parse_socks5_method(b"\x05\xffrest") == (0xFF, 2)
    with pytest.raises(ProtocolError, match="wrong SOCKS version in connect response"):  # ncat's words
        parse_socks5_method(b"\x04\x00")
    assert parse_socks5_auth_reply(b"\x01\x00") == (True, 2)
    assert parse_socks5_auth_reply(b"\x01\x01") == (False, 2)
    assert parse_socks5_auth_reply(b"\x01\x07") == (False, 2)
    with pytest.raises(ProtocolError, match="authentication reply"):
        parse_socks5_auth_reply(b"\x05\x00")


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50", Socks5Reply(0, "127.0.0.1", 80)),
        (b"\x05\x05\x00\x04" + bytes(15) + b"\x01\x01\xbb", Socks5Reply(5, "::1", 443)),
        (b"\x05\x00\x00\x03\x04host\x00\x01", Socks5Reply(0, "host", 1)),
        (b"\x05\x00\x00\x03\x00\x00\x01", Socks5Reply(0, "", 1)),
    ],
)
def test_socks5_replies_with_each_bound_address_type(wire: bytes, reply: Socks5Reply) -> None:
    assert parse_socks5_reply(wire) == (reply, len(wire))
    assert parse_socks5_reply(wire + b"target's bytes") == (reply, len(wire))
    for cut in range(len(wire)):
        needed = parse_socks5_reply(wire[:cut])
        assert isinstance(needed, NeedMore) and 1 <= needed.count <= len(wire) - cut


def test_socks5_reply_errors_are_ncats_words() -> None:
    with pytest.raises(ProtocolError, match="wrong SOCKS version in request response"):
        parse_socks5_reply(b"\x04\x00\x00\x01\x00")
    with pytest.raises(ProtocolError, match="invalid proxy bind address type"):
        parse_socks5_reply(b"\x05\x00\x00\x00\x01")


# -- fuzzing the client's parsers ------------------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    parse_socks4_reply,
    parse_socks5_method,
    parse_socks5_auth_reply,
    parse_socks5_reply,
]


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(max_size=300))
def test_random_bytes_are_a_reply_need_more_or_a_protocol_error(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        result = parse(data)
    except ProtocolError:
        return
    if isinstance(result, NeedMore):
        assert result.count >= 1
    else:
        assert isinstance(result, tuple)
        assert 1 <= result[1] <= len(data)


def _read_as_a_client_does(parse: Callable[[bytes], object], stream: bytes) -> tuple[object, int]:
    """Read ``stream`` the way net/proxy_socks does: exactly what the parser says it
    needs, never more; the parsed value and how many bytes were read."""
    received = b""
    while True:
        result = parse(received)
        if not isinstance(result, NeedMore):
            assert isinstance(result, tuple)
            assert result[1] == len(received)  # nothing read past the reply
            return result[0], len(received)
        assert len(received) + result.count <= len(stream), "asked for more than the reply"
        received = stream[: len(received) + result.count]


socks5_replies = st.builds(
    lambda code, kind, raw, port: (
        bytes([5, code, 0, kind])
        + (raw[:4] if kind == 1 else raw[:16] if kind == 4 else bytes([len(raw)]) + raw)
        + port.to_bytes(2, "big")
    ),
    st.integers(0, 255),
    st.sampled_from([1, 3, 4]),
    st.binary(min_size=16, max_size=255),
    st.integers(0, 65535),
)


@given(reply=socks5_replies, after=st.binary(max_size=20))
def test_a_socks5_reply_read_in_the_pieces_asked_for_is_the_whole_reply(reply: bytes, after: bytes) -> None:
    value, size = _read_as_a_client_does(parse_socks5_reply, reply + after)
    assert size == len(reply)
    assert parse_socks5_reply(reply) == (value, size)


# -- the server side: SOCKS5 -----------------------------------------------------------------


def feed(negotiator: Negotiator, *chunks: bytes) -> list[Action]:
    actions: list[Action] = []
    for chunk in chunks:
        actions += negotiator.receive_data(chunk)
    return actions


GREETING = b"\x05\x01\x00"
REQUEST_V4 = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"


def test_socks5_no_auth_to_an_ipv4_address() -> None:
    negotiator = Socks5Negotiator()
    assert feed(negotiator, GREETING) == [Reply(b"\x05\x00")]
    assert feed(negotiator, REQUEST_V4) == [OpenUpstream("127.0.0.1", 80)]
    assert negotiator.upstream_connected("127.0.0.1", 40000) == [
        Reply(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40"),
        StartTunnel(),
    ]
    assert feed(negotiator, b"late") == []  # the tunnel has it; the negotiator hears nothing more


def test_socks5_ipv6_and_name_targets_and_an_ipv6_bound_address() -> None:
    negotiator = Socks5Negotiator()
    actions = feed(negotiator, GREETING + b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x01\xbb")
    assert actions == [Reply(b"\x05\x00"), OpenUpstream("::1", 443)]
    assert negotiator.upstream_connected("::1", 1) == [
        Reply(b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x01"),
        StartTunnel(),
    ]
    negotiator = Socks5Negotiator()
    actions = feed(negotiator, GREETING, b"\x05\x01\x00\x03\x0etarget.invalid\x00\x50")
    assert actions == [Reply(b"\x05\x00"), OpenUpstream("target.invalid", 80)]


def test_socks5_pipelined_greeting_request_and_data_in_one_piece() -> None:
    negotiator = Socks5Negotiator()
    actions = feed(negotiator, GREETING + REQUEST_V4 + b"GET / HTTP/1.0\r\n\r\n")
    assert actions == [Reply(b"\x05\x00"), OpenUpstream("127.0.0.1", 80)]
    assert negotiator.upstream_connected("127.0.0.1", 5) == [
        Reply(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x05"),
        SendUpstream(b"GET / HTTP/1.0\r\n\r\n"),  # before the tunnel: it comes first
        StartTunnel(),
    ]


def test_socks5_username_and_password_accepted_and_refused() -> None:
    good = Credentials("alice", "secret")
    negotiator = Socks5Negotiator(good)
    assert feed(negotiator, b"\x05\x02\x00\x02") == [Reply(b"\x05\x02")]
    assert feed(negotiator, b"\x01\x05alice\x06secret") == [Reply(b"\x01\x00")]
    assert feed(negotiator, REQUEST_V4) == [OpenUpstream("127.0.0.1", 80)]
    for wrong in (
        b"\x01\x05alice\x05secre",
        b"\x01\x03bob\x06secret",
        b"\x01\x05alice\x00",
        b"\x02\x05alice\x06secret",
    ):
        negotiator = Socks5Negotiator(good)
        assert feed(negotiator, b"\x05\x01\x02", wrong) == [Reply(b"\x05\x02"), Reply(b"\x01\x01"), Close()]
    no_password = Socks5Negotiator(Credentials("alice"))
    assert feed(no_password, b"\x05\x01\x02\x01\x05alice\x00") == [Reply(b"\x05\x02"), Reply(b"\x01\x00")]


def test_socks5_no_acceptable_method() -> None:
    assert feed(Socks5Negotiator(), b"\x05\x01\x02") == [Reply(b"\x05\xff"), Close()]
    assert feed(Socks5Negotiator(), b"\x05\x00") == [Reply(b"\x05\xff"), Close()]
    # With credentials required, a client offering only no-auth (curl without --proxy-user).
    assert feed(Socks5Negotiator(Credentials("u", "p")), GREETING) == [Reply(b"\x05\xff"), Close()]


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", 7),  # BIND
        (b"\x05\x03\x00\x01\x7f\x00\x00\x01\x00\x50", 7),  # UDP ASSOCIATE
        (b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50", 7),
        (b"\x05\x01\x00\x02\x7f", 8),  # no such address type: refused as soon as it is seen
        (b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 1),  # the request's version is wrong
        (b"\x05\x01\x00\x03\x00\x00\x50", 1),  # an empty name
        (b"\x05\x01\x00\x03\x03a b\x00\x50", 1),  # not a name
        (b"\x05\x01\x00\x03\x03a\x00b\x00\x50", 1),
    ],
)
def test_socks5_bad_requests_get_their_reply_code_then_close(request_bytes: bytes, code: int) -> None:
    actions = feed(Socks5Negotiator(), GREETING, request_bytes)
    assert actions == [Reply(b"\x05\x00"), Reply(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])), Close()]


def test_socks5_a_wrong_greeting_version_is_closed_without_a_word() -> None:
    assert feed(Socks5Negotiator(), b"\x04\x01\x00\x50") == [Close()]
    assert feed(Socks5Negotiator(), b"GET / HTTP/1.1\r\n") == [Close()]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("refused", 5),
        ("network-unreachable", 3),
        ("host-unreachable", 4),
        ("timeout", 4),
        ("unresolved", 4),
        ("denied", 2),
        ("failed", 1),
    ],
)
def test_socks5_upstream_failures_and_their_codes(reason: str, code: int) -> None:
    negotiator = Socks5Negotiator()
    feed(negotiator, GREETING + REQUEST_V4)
    assert negotiator.upstream_failed(reason) == [Reply(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])), Close()]
    assert feed(negotiator, b"more") == []


def test_every_upstream_failure_has_a_code() -> None:
    from enchufe.proto.socks import FAILURE_CODES

    assert set(FAILURE_CODES) == UPSTREAM_FAILURES


def test_an_end_of_stream_before_the_request_closes() -> None:
    assert feed(Socks5Negotiator(), b"\x05", b"") == [Close()]
    assert feed(Socks4Negotiator(), b"\x04\x01", b"") == [Close()]


def test_an_upstream_outcome_out_of_turn_is_ignored() -> None:
    negotiator = Socks5Negotiator()
    assert negotiator.upstream_connected("127.0.0.1", 1) == []
    assert negotiator.upstream_failed("refused") == []
    assert feed(negotiator, GREETING) == [Reply(b"\x05\x00")]


# -- the server side: SOCKS4 and SOCKS4a -----------------------------------------------------


def test_socks4_to_an_address_and_socks4a_to_a_name() -> None:
    negotiator = Socks4Negotiator()
    assert feed(negotiator, socks4_request("127.0.0.1", 80, "bob")) == [OpenUpstream("127.0.0.1", 80)]
    assert negotiator.upstream_connected("127.0.0.1", 40000) == [
        Reply(b"\x00\x5a\x9c\x40\x7f\x00\x00\x01"),
        StartTunnel(),
    ]
    negotiator = Socks4Negotiator()
    assert feed(negotiator, socks4_request("target.invalid", 8080) + b"early") == [OpenUpstream("target.invalid", 8080)]
    assert negotiator.upstream_connected("::1", 1) == [
        Reply(b"\x00\x5a" + bytes(6)),
        SendUpstream(b"early"),
        StartTunnel(),
    ]


def test_server_credentials_not_in_utf8_are_the_bytes_typed() -> None:
    # Found by fuzz/socks.py: a server given such credentials raised on every client.
    socks5 = Socks5Negotiator(Credentials("\udcff", "\udcfe"))
    assert feed(socks5, b"\x05\x01\x02\x01\x01\xff\x01\xfe") == [Reply(b"\x05\x02"), Reply(b"\x01\x00")]
    socks4 = Socks4Negotiator("\udcff")
    assert feed(socks4, b"\x04\x01\x00\x50\x7f\x00\x00\x01\xff\x00") == [OpenUpstream("127.0.0.1", 80)]


def test_socks4_user_id_required() -> None:
    assert feed(Socks4Negotiator("bob"), socks4_request("127.0.0.1", 80, "bob")) == [OpenUpstream("127.0.0.1", 80)]
    assert feed(Socks4Negotiator("bob"), socks4_request("127.0.0.1", 80, "eve")) == [
        Reply(b"\x00\x5d" + bytes(6)),
        Close(),
    ]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x04\x02\x00\x50\x7f\x00\x00\x01\x00",  # BIND
        b"\x04\x01\x00\x50\x7f\x00\x00\x01" + b"u" * (SOCKS4_MAX_FIELD + 1),  # a user id without end
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"n" * (SOCKS4_MAX_FIELD + 1),  # a name without end
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00",  # an empty name
        b"\x04\x01\x00\x50\x00\x00\x00\x01\x00a b\x00",
    ],
)
def test_socks4_refusals_are_91_then_close(request_bytes: bytes) -> None:
    assert feed(Socks4Negotiator(), request_bytes) == [Reply(b"\x00\x5b" + bytes(6)), Close()]


def test_socks4_fields_up_to_the_cap_are_taken() -> None:
    uid, name = "u" * SOCKS4_MAX_FIELD, "n" * SOCKS4_MAX_FIELD
    wire = b"\x04\x01\x00\x50\x00\x00\x00\x01" + uid.encode() + b"\0" + name.encode() + b"\0"
    assert feed(Socks4Negotiator(), wire) == [OpenUpstream(name, 80)]


def test_socks4_wrong_version_and_failures() -> None:
    assert feed(Socks4Negotiator(), GREETING) == [Close()]
    for reason in sorted(UPSTREAM_FAILURES):
        negotiator = Socks4Negotiator()
        feed(negotiator, socks4_request("127.0.0.1", 80))
        assert negotiator.upstream_failed(reason) == [Reply(b"\x00\x5b" + bytes(6)), Close()]


# -- fuzzing the negotiators -----------------------------------------------------------------

NEGOTIATORS: list[Callable[[], Negotiator]] = [
    Socks5Negotiator,
    lambda: Socks5Negotiator(Credentials("alice", "secret")),
    Socks4Negotiator,
    lambda: Socks4Negotiator("bob"),
]
REFUSALS = (Reply, Close)


def _buffered(negotiator: Negotiator) -> int:
    return len(negotiator._buffer) + len(negotiator._early)


@pytest.mark.parametrize("make", NEGOTIATORS)
@given(chunks=st.lists(st.binary(max_size=600), max_size=8))
@example(chunks=[b"\x05\x01\x00\x05\x01\x00\x03"])
@example(chunks=[b"\x04\x01\x00\x50\x00\x00\x00\x01" + b"x" * 2000])
def test_random_bytes_get_only_protocol_actions_and_stay_bounded(
    make: Callable[[], Negotiator], chunks: list[bytes]
) -> None:
    negotiator = make()
    limit = negotiator.MAX_MESSAGE
    opened = False
    for chunk in chunks:
        for action in negotiator.receive_data(chunk):
            assert isinstance(action, (*REFUSALS, OpenUpstream))
            opened = opened or isinstance(action, OpenUpstream)
        # What is held is at most one message, plus the chunk that came with it.
        assert _buffered(negotiator) <= limit + len(chunk)
    if opened:
        for action in negotiator.upstream_connected("127.0.0.1", 1):
            assert isinstance(action, (Reply, SendUpstream, StartTunnel))


def _valid_conversations() -> list[tuple[Callable[[], Negotiator], bytes]]:
    auth = b"\x05\x02\x00\x02\x01\x05alice\x06secret"
    return [
        (Socks5Negotiator, GREETING + REQUEST_V4 + b"data"),
        (Socks5Negotiator, GREETING + b"\x05\x01\x00\x03\x0etarget.invalid\x00\x50"),
        (lambda: Socks5Negotiator(Credentials("alice", "secret")), auth + REQUEST_V4 + b"xy"),
        (lambda: Socks5Negotiator(Credentials("alice", "secret")), b"\x05\x01\x02\x01\x05alice\x06wrong!" + b"junk"),
        (Socks5Negotiator, GREETING + b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"),
        (Socks4Negotiator, socks4_request("target.invalid", 80, "bob") + b"data"),
        (lambda: Socks4Negotiator("bob"), socks4_request("127.0.0.1", 80, "eve")),
    ]


CONVERSATIONS = _valid_conversations()


@pytest.mark.parametrize(("make", "wire"), CONVERSATIONS)
def test_any_split_gives_the_same_actions(make: Callable[[], Negotiator], wire: bytes) -> None:
    whole = make()
    expected = feed(whole, wire)
    expected_after = (
        whole.upstream_connected("127.0.0.1", 1) if any(isinstance(a, OpenUpstream) for a in expected) else []
    )
    byte_by_byte = make()
    actions = feed(byte_by_byte, *(wire[i : i + 1] for i in range(len(wire))))
    # Early data comes in several pieces then, but the same bytes in the same order.
    assert _merged(actions) == _merged(expected)
    if expected_after:
        assert _merged(byte_by_byte.upstream_connected("127.0.0.1", 1)) == _merged(expected_after)
    for cut in range(len(wire) + 1):
        split = make()
        actions = feed(split, *(piece for piece in (wire[:cut], wire[cut:]) if piece))  # b"" would be an end
        assert _merged(actions) == _merged(expected)


def _merged(actions: list[Action]) -> list[Action]:
    """Consecutive Replies and SendUpstreams joined (a split may deliver them in pieces)."""
    merged: list[Action] = []
    for action in actions:
        if merged and isinstance(action, (Reply, SendUpstream)) and type(merged[-1]) is type(action):
            last = merged.pop()
            assert isinstance(last, (Reply, SendUpstream))
            merged.append(type(action)(last.data + action.data))
        else:
            merged.append(action)
    return merged


def test_bytes_given_while_connecting_are_kept_up_to_one_message_then_closed() -> None:
    negotiator = Socks5Negotiator()
    feed(negotiator, GREETING + REQUEST_V4)
    assert feed(negotiator, b"x" * Socks5Negotiator.MAX_MESSAGE) == []
    assert feed(negotiator, b"y") == [Close()]
    assert _buffered(negotiator) == 0
