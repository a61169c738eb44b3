"""The ICMP codec: the checksum, echo requests as iputils lays them out, what raw and
datagram sockets return (replies, errors quoting our request, others), and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from enchufe.errors import ProtocolError
from enchufe.proto.icmp import (
    ECHO_REPLY,
    ECHO_REQUEST,
    HEADER_SIZE,
    TIMESTAMP_SIZE,
    EchoReply,
    IcmpError,
    OtherIcmp,
    checksum,
    describe_error,
    echo_payload,
    echo_request,
    parse_icmp,
    payload_timestamp,
)

#: What iputils' ``ping -c1 -s 40 127.0.0.1`` sent, read from a raw socket (IP header cut).
IPUTILS_REQUEST = bytes.fromhex(
    "08000c11193f00014a870f6b00000000326b010000000000101112131415161718191a1b1c1d1e1f2021222324252627"
)


def ipv4_header(payload_size: int, *, ttl: int = 64, protocol: int = 1, options: bytes = b"") -> bytes:
    length = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | length // 4, 0, length + payload_size, 0, 0, ttl, protocol, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    return header + options


def ipv6_header(payload_size: int, *, next_header: int = 58) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, payload_size, next_header, 64, b"\xfd" + bytes(15), b"\xfd" + bytes(15))


def reply_to(request: bytes) -> bytes:
    """What a host answers to an IPv4 echo request: type 0, the rest echoed, summed again."""
    unsummed = bytes([ECHO_REPLY, 0, 0, 0]) + request[4:]
    return unsummed[:2] + checksum(unsummed).to_bytes(2, "big") + unsummed[4:]


def icmp_error(type: int, code: int, info: int, quoted: bytes) -> bytes:
    unsummed = struct.pack("!BBHI", type, code, 0, info) + quoted
    return unsummed[:2] + checksum(unsummed).to_bytes(2, "big") + unsummed[4:]


# -- the checksum ---------------------------------------------------------------------------


def test_the_checksum_is_rfc_1071s() -> None:
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D  # RFC 1071's worked example, complemented
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\xff\xff") == 0
    assert checksum(b"\x01") == checksum(b"\x01\x00")  # an odd byte is padded with zero
    assert checksum(IPUTILS_REQUEST) == 0  # a message carrying its own checksum sums to zero


@given(st.binary(max_size=2000))
def test_a_message_with_its_checksum_inserted_sums_to_zero(data: bytes) -> None:
    data = data + b"\0" * (len(data) % 2)
    with_sum = data + checksum(data).to_bytes(2, "big")
    assert checksum(with_sum) == 0


# -- requests -------------------------------------------------------------------------------


def test_the_request_is_byte_for_byte_the_one_iputils_sends() -> None:
    identifier, sequence = struct.unpack_from("!HH", IPUTILS_REQUEST, 4)
    seconds, microseconds = struct.unpack_from("=qq", IPUTILS_REQUEST, HEADER_SIZE)
    payload = echo_payload(40, seconds=seconds, microseconds=microseconds)
    assert echo_request(identifier, sequence, payload) == IPUTILS_REQUEST
    assert payload_timestamp(payload) == (seconds, microseconds)


def test_the_payload_has_the_timestamp_only_when_it_fits() -> None:
    assert echo_payload(0) == b""
    assert echo_payload(15) == bytes(range(15))
    assert payload_timestamp(echo_payload(15)) is None
    assert len(echo_payload(56)) == 56
    assert echo_payload(300, seconds=1, microseconds=2)[TIMESTAMP_SIZE:] == bytes(i % 256 for i in range(16, 300))
    with pytest.raises(ValueError):
        echo_payload(-1)


def test_an_icmpv6_request_leaves_the_checksum_to_the_kernel() -> None:
    assert echo_request(0x1234, 0x10001, b"ab", ipv6=True) == bytes.fromhex("8000000012340001") + b"ab"


# -- what comes back --------------------------------------------------------------------------


def test_a_reply_as_a_datagram_socket_gives_it() -> None:
    reply = parse_icmp(reply_to(IPUTILS_REQUEST))
    assert reply == EchoReply(0x193F, 1, IPUTILS_REQUEST[8:], len(IPUTILS_REQUEST), None)


def test_a_reply_from_a_raw_ipv4_socket_gets_the_headers_ttl() -> None:
    message = reply_to(IPUTILS_REQUEST)
    reply = parse_icmp(ipv4_header(len(message), ttl=57) + message, ip_header=True)
    assert isinstance(reply, EchoReply)
    assert (reply.ttl, reply.size, reply.sequence) == (57, 48, 1)
    # IP options are skipped by the header's length
    reply = parse_icmp(ipv4_header(len(message), options=b"\x01\x01\x01\x00") + message, ip_header=True)
    assert isinstance(reply, EchoReply) and reply.payload == IPUTILS_REQUEST[8:]


def test_an_icmpv6_reply() -> None:
    reply = parse_icmp(bytes.fromhex("8100000012340007") + b"xyz", ipv6=True)
    assert reply == EchoReply(0x1234, 7, b"xyz", 11, None)


def test_our_own_request_on_a_raw_socket_is_another_message() -> None:
    assert parse_icmp(IPUTILS_REQUEST) == OtherIcmp(ECHO_REQUEST, 0, len(IPUTILS_REQUEST))
    assert parse_icmp(bytes.fromhex("8000000012340007"), ipv6=True) == OtherIcmp(128, 0, 8)
    assert parse_icmp(bytes.fromhex("8700000000000000"), ipv6=True) == OtherIcmp(135, 0, 8)  # neighbour solicitation


def test_an_unreachable_error_quotes_our_request() -> None:
    quoted = ipv4_header(len(IPUTILS_REQUEST)) + IPUTILS_REQUEST[:8]  # routers quote at least 8 bytes
    error = parse_icmp(icmp_error(3, 1, 0, quoted))
    assert error == IcmpError(3, 1, 0, "Destination Host Unreachable", 0x193F, 1, 8 + len(quoted))
    raw = icmp_error(11, 0, 0, quoted)
    error = parse_icmp(ipv4_header(len(raw)) + raw, ip_header=True)
    assert isinstance(error, IcmpError)
    assert (error.description, error.identifier, error.sequence) == ("Time to live exceeded", 0x193F, 1)


def test_an_error_about_something_else_has_no_identifier() -> None:
    udp = ipv4_header(8, protocol=17) + bytes(8)
    assert parse_icmp(icmp_error(3, 3, 0, udp)) == IcmpError(3, 3, 0, "Destination Port Unreachable", None, None, 36)
    short = ipv4_header(8)[:12]
    assert parse_icmp(icmp_error(3, 3, 0, short)).identifier is None  # type: ignore[union-attr]
    reply_quoted = ipv4_header(8) + reply_to(IPUTILS_REQUEST)[:8]  # not an echo request
    assert parse_icmp(icmp_error(3, 1, 0, reply_quoted)).identifier is None  # type: ignore[union-attr]


def test_an_icmpv6_error_quotes_our_request() -> None:
    request = echo_request(0xBEEF, 3, b"p", ipv6=True)
    quoted = ipv6_header(len(request)) + request
    message = struct.pack("!BBHI", 1, 3, 0, 0) + quoted
    error = parse_icmp(message, ipv6=True)
    assert error == IcmpError(1, 3, 0, "Destination unreachable: Address unreachable", 0xBEEF, 3, len(message))
    behind_an_extension = struct.pack("!BBHI", 3, 0, 0, 0) + ipv6_header(len(request), next_header=0) + request
    assert parse_icmp(behind_an_extension, ipv6=True).identifier is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("type", "code", "info", "ipv6", "words"),
    [
        (3, 0, 0, False, "Destination Net Unreachable"),
        (3, 4, 1400, False, "Frag needed and DF set (mtu = 1400)"),
        (3, 13, 0, False, "Packet filtered"),
        (3, 15, 0, False, "Precedence Cutoff"),
        (3, 16, 0, False, "Dest Unreachable, Bad Code: 16"),
        (4, 0, 0, False, "Source Quench"),
        (5, 1, 0x0A4D0001, False, "Redirect Host(New nexthop: 10.77.0.1)"),
        (5, 9, 0x0A4D0001, False, "Redirect, Bad Code: 9(New nexthop: 10.77.0.1)"),
        (11, 1, 0, False, "Frag reassembly time exceeded"),
        (11, 2, 0, False, "Time exceeded, Bad Code: 2"),
        (12, 0, 0x14000000, False, "Parameter problem: pointer = 20"),
        (99, 0, 0, False, "Bad ICMP type: 99"),
        (1, 0, 0, True, "Destination unreachable: No route"),
        (1, 1, 0, True, "Destination unreachable: Administratively prohibited"),
        (1, 4, 0, True, "Destination unreachable: Port unreachable"),
        (1, 6, 0, True, "Destination unreachable: Reject route to destination"),
        (1, 9, 0, True, "Destination unreachable: Unknown code 9"),
        (2, 0, 1280, True, "Packet too big: mtu=1280"),
        (3, 0, 0, True, "Time exceeded: Hop limit"),
        (3, 1, 0, True, "Time exceeded: Defragmentation failure"),
        (3, 5, 0, True, "Time exceeded: code 5"),
        (4, 1, 40, True, "Parameter problem: Unknown header at 40"),
        (4, 7, 6, True, "Parameter problem: code 7 at 6"),
        (200, 0, 0, True, "Unknown icmp type: 200"),
    ],
)
def test_errors_are_worded_as_iputils_words_them(type: int, code: int, info: int, ipv6: bool, words: str) -> None:
    assert describe_error(type, code, info, ipv6=ipv6) == words


# -- bad bytes ------------------------------------------------------------------------------


def test_bad_bytes_raise_protocol_error() -> None:
    message = reply_to(IPUTILS_REQUEST)
    corrupted = message[:-1] + bytes([message[-1] ^ 1])
    cases = [
        (b"", {}),
        (b"\0" * 7, {}),
        (corrupted, {}),
        (ipv4_header(len(message))[:19], {"ip_header": True}),
        (ipv4_header(len(message), protocol=6) + message, {"ip_header": True}),
        (b"\x60" + ipv4_header(len(message))[1:] + message, {"ip_header": True}),  # version 6
        (b"\x4f" + ipv4_header(len(message))[1:], {"ip_header": True}),  # a 60-byte header in 20 bytes
        (ipv4_header(0), {"ip_header": True}),  # no ICMP after the header
        (message, {"ipv6": True, "ip_header": True}),
    ]  # fmt: skip
    for data, flags in cases:
        with pytest.raises(ProtocolError):
            parse_icmp(data, **flags)


@given(st.binary(max_size=200), st.booleans(), st.booleans())
@example(ipv4_header(8) + reply_to(IPUTILS_REQUEST)[:8], False, True)
def test_any_bytes_parse_or_raise_protocol_error_only(data: bytes, ipv6: bool, ip_header: bool) -> None:
    try:
        message = parse_icmp(data, ipv6=ipv6, ip_header=ip_header)
    except ProtocolError:
        return
    assert message.size <= len(data)


@given(st.binary(min_size=8, max_size=120), st.booleans())
def test_any_error_with_a_valid_sum_parses(quoted: bytes, ipv6: bool) -> None:
    """A well-formed error carrying any quoted bytes never fails: it only loses the
    identifier when the quote is not our request."""
    type = 1 if ipv6 else 3
    message = struct.pack("!BBHI", type, 1, 0, 0) + quoted
    if not ipv6:
        message = icmp_error(type, 1, 0, quoted)
    error = parse_icmp(message, ipv6=ipv6)
    assert isinstance(error, IcmpError)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_a_request_answered_round_trips(identifier: int, sequence: int, payload: bytes) -> None:
    request = echo_request(identifier, sequence, payload)
    assert parse_icmp(request) == OtherIcmp(ECHO_REQUEST, 0, len(request))
    assert parse_icmp(reply_to(request)) == EchoReply(identifier, sequence, payload, len(request))
