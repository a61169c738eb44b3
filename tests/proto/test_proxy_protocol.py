"""The PROXY protocol, v1 and v2, sans-IO: the spec's examples whole, byte by byte and
with the client's data behind them, every refusal, fuzzing, and encode→decode."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.address import InetAddress, UnixAddress
from enchufe.errors import ProtocolError
from enchufe.proto.proxy_protocol import (
    NEED_DATA,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NETNS,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderDecoder,
    SslInfo,
    crc32c,
    encode_header,
)

SPEC_V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
SPEC_V1_HEADER = ProxyHeader(1, "proxy", "stream", InetAddress("192.168.0.1", 56324), InetAddress("192.168.0.11", 443))
LONGEST_V1 = (
    b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)


def v2(version_command: int, family_transport: int, body: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", version_command, family_transport, len(body)) + body


#: TCP over IPv4, 127.0.0.7:4000 → 127.0.0.1:80, then a UNIQUE_ID TLV.
V2_TCP4 = v2(0x21, 0x11, bytes([127, 0, 0, 7, 127, 0, 0, 1]) + struct.pack("!HH", 4000, 80) + b"\x05\x00\x02id")
V2_TCP4_HEADER = ProxyHeader(
    2, "proxy", "stream", InetAddress("127.0.0.7", 4000), InetAddress("127.0.0.1", 80), ((PP2_TYPE_UNIQUE_ID, b"id"),)
)


def decode(data: bytes) -> tuple[ProxyHeader, bytes]:
    decoder = ProxyHeaderDecoder()
    header = decoder.feed(data)
    assert isinstance(header, ProxyHeader), header
    return header, decoder.leftover


def decode_bytewise(data: bytes) -> tuple[ProxyHeader, bytes]:
    decoder = ProxyHeaderDecoder()
    for index in range(len(data)):
        assert decoder.most_needed > 0
        result = decoder.feed(data[index : index + 1])
        if isinstance(result, ProxyHeader):
            return result, decoder.leftover + data[index + 1 :]
        assert result is NEED_DATA
    raise AssertionError("the header never completed")


# -- the spec's examples --------------------------------------------------------------------------


@pytest.mark.parametrize("read", [decode, decode_bytewise])
def test_the_specs_v1_example_whole_and_byte_by_byte_with_the_data_behind_it(read) -> None:  # type: ignore[no-untyped-def]
    request = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    assert read(SPEC_V1 + request) == (SPEC_V1_HEADER, request)
    assert read(SPEC_V1) == (SPEC_V1_HEADER, b"")


@pytest.mark.parametrize("read", [decode, decode_bytewise])
def test_a_v2_header_whole_and_byte_by_byte_with_the_data_behind_it(read) -> None:  # type: ignore[no-untyped-def]
    assert read(V2_TCP4 + b"\x16\x03\x01") == (V2_TCP4_HEADER, b"\x16\x03\x01")
    assert read(V2_TCP4)[0].unique_id == b"id"


def test_the_longest_v1_lines_the_spec_names() -> None:
    assert len(LONGEST_V1) == V1_MAX_LENGTH
    assert decode(LONGEST_V1) == (ProxyHeader(1, "proxy", "unspec", None, None), b"")
    assert decode(b"PROXY UNKNOWN\r\n")[0].transport == "unspec"
    ipv6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 65535 0\r\n"
    header, _ = decode(ipv6)
    assert header.source == InetAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
    assert header.destination == InetAddress("::1", 0)


def test_v2_ipv6_and_unix_addresses() -> None:
    block = ipaddress.IPv6Address("2001:db8::7").packed + ipaddress.IPv6Address("::1").packed + struct.pack("!HH", 1, 2)
    header, _ = decode(v2(0x21, 0x21, block))
    assert (header.source, header.destination) == (InetAddress("2001:db8::7", 1), InetAddress("::1", 2))
    unix = b"/run/client.sock".ljust(108, b"\0") + b"\0abstract".ljust(108, b"\0")
    header, _ = decode(v2(0x21, 0x31, unix))
    assert (header.source, header.destination) == (UnixAddress("/run/client.sock"), UnixAddress("@abstract"))
    header, _ = decode(v2(0x21, 0x32, unix))
    assert header.transport == "datagram"


def test_an_ipv4_mapped_address_is_the_ipv4_one_as_a_dual_stack_socket_reports_it() -> None:
    block = ipaddress.IPv6Address("::ffff:127.0.0.7").packed + ipaddress.IPv6Address("::1").packed + bytes(4)
    assert decode(v2(0x21, 0x21, block))[0].source == InetAddress("127.0.0.7", 0)


def test_local_keeps_no_address_and_its_length_is_skipped_whatever_it_says() -> None:
    local = v2(0x20, 0x11, bytes(12) + b"\x04\x00\x00")  # a health check with an address and a NOOP
    header, leftover = decode(local + b"ping")
    assert (header.command, header.source, header.destination, leftover) == ("local", None, None, b"ping")
    assert decode(v2(0x20, 0x00, b""))[0] == ProxyHeader(2, "local", "unspec", None, None)
    # The spec: LOCAL's family "is ignored", and zero must not be assumed for its length
    # either way: an IPv4 or IPv6 family with no room for its addresses is still LOCAL.
    for family in (0x11, 0x21):
        header, leftover = decode(v2(0x20, family, b"") + b"ping")
        assert (header.command, header.source, header.tlvs, leftover) == ("local", None, (), b"ping")


def test_unspec_keeps_no_address() -> None:
    assert decode(v2(0x21, 0x00, b""))[0] == ProxyHeader(2, "proxy", "unspec", None, None)
    assert decode(v2(0x21, 0x10, bytes(12)))[0].source is None


def test_every_registered_tlv_reads_back() -> None:
    ssl = struct.pack("!BI", 0x07, 0) + b"\x21\x00\x07TLSv1.3" + b"\x22\x00\x0bexample.org"
    tlvs = (
        (PP2_TYPE_ALPN, b"h2"),
        (PP2_TYPE_AUTHORITY, "sañ.example".encode()),
        (PP2_TYPE_UNIQUE_ID, bytes(128)),
        (PP2_TYPE_SSL, ssl),
        (PP2_TYPE_NETNS, b"blue"),
        (PP2_TYPE_NOOP, b""),
        (0xE0, b"custom"),
        (PP2_TYPE_CRC32C, b"\0\0\0\0"),
    )
    header, _ = decode(encode_header(ProxyHeader(2, "proxy", "stream", None, None, tlvs)))
    assert header.alpn == b"h2"
    assert header.authority == "sañ.example"
    assert header.unique_id == bytes(128)
    assert header.netns == "blue"
    assert header.ssl == SslInfo(7, 0, ((0x21, b"TLSv1.3"), (0x22, b"example.org")))
    assert header.tlv(0xE0) == b"custom"
    assert header.tlv(0xE1) is None
    assert [kind for kind, _ in header.tlvs] == [kind for kind, _ in tlvs]
    bare, _ = decode(V2_TCP4)
    assert (bare.alpn, bare.authority, bare.ssl, bare.netns) == (None, None, None, None)


def test_crc32c_is_castagnolis() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720's check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


def test_a_checksummed_header_is_verified() -> None:
    data = bytearray(encode_header(ProxyHeader(2, "proxy", "stream", None, None, ((PP2_TYPE_CRC32C, bytes(4)),))))
    checked, _ = decode(bytes(data))
    assert checked.tlv(PP2_TYPE_CRC32C) == crc32c(bytes(data[:-4]) + bytes(4)).to_bytes(4, "big")
    data[-1] ^= 1
    with pytest.raises(ProtocolError, match="CRC32C does not match"):
        decode(bytes(data))


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
        (b"PROXYTCP4", "not a PROXY protocol header"),
        (b"proxy TCP4", "not a PROXY protocol header"),
        (b"PROXY  TCP4 1.1.1.1 1.1.1.1 1 1\r\n", "single spaces"),
        (b"PROXY TCP4 1.1.1.1  1.1.1.1 1 1\r\n", "single spaces"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1 \r\n", "single spaces"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1\r\n", "6 fields"),
        (b"PROXY UDP4 1.1.1.1 1.1.1.1 1 1\r\n", "unknown PROXY v1 protocol"),
        (b"PROXY \r\n", "single spaces"),
        (b"PROXY TCP4 01.1.1.1 1.1.1.1 1 1\r\n", "canonical IPv4"),
        (b"PROXY TCP4 1.1.1.256 1.1.1.1 1 1\r\n", "canonical IPv4"),
        (b"PROXY TCP4 1.1.1 1.1.1.1 1 1\r\n", "canonical IPv4"),
        (b"PROXY TCP4 ::1 1.1.1.1 1 1\r\n", "canonical IPv4"),
        (b"PROXY TCP6 1.1.1.1 ::1 1 1\r\n", "canonical IPv6"),
        (b"PROXY TCP6 ::ffff:1.1.1.1 ::1 1 1\r\n", "canonical IPv6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 1\r\n", "canonical IPv6"),
        (b"PROXY TCP6 1::2::3 ::1 1 1\r\n", "canonical IPv6"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 01 1\r\n", "not a port"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 65536\r\n", "not a port"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 +1\r\n", "not a port"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\n", "CRLF"),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\rX", "CR without LF"),
        (b"PROXY TCP4 1.1.\r1.1 1.1.1.1 1 1\r\n", "only there"),
        (b"PROXY UNKNOWN" + b"x" * 94, f"no CRLF within the {V1_MAX_LENGTH} bytes"),
        (V2_SIGNATURE[:5] + b"X", "bad v2 signature"),
        (V2_SIGNATURE + b"\x11", "version 1 is not 2"),
        (V2_SIGNATURE + b"\x22", "unknown PROXY v2 command 2"),
        (V2_SIGNATURE + b"\x21\x41", "family and transport 0x41"),
        (V2_SIGNATURE + b"\x21\x13", "family and transport 0x13"),
        (v2(0x21, 0x11, bytes(11)), "does not cover its address block"),
        (v2(0x21, 0x21, bytes(35)), "does not cover its address block"),
        (v2(0x21, 0x31, bytes(215)), "does not cover its address block"),
        (v2(0x21, 0x11, bytes(12) + b"\x05\x00"), "cut short"),
        (v2(0x21, 0x11, bytes(12) + b"\x05\x00\x03ab"), "runs past"),
        (v2(0x21, 0x11, bytes(12) + b"\x05\x00\x81" + bytes(129)), "longer than 128"),
        (v2(0x21, 0x11, bytes(12) + b"\x20\x00\x04" + bytes(4)), "SSL TLV is cut short"),
        (v2(0x21, 0x11, bytes(12) + b"\x20\x00\x07" + bytes(5) + b"\x21\x00"), "SSL sub-TLV"),
        (v2(0x21, 0x11, bytes(12) + b"\x02\x00\x01\xff"), "not text"),
        (v2(0x21, 0x11, bytes(12) + b"\x30\x00\x01\xe9"), "not text"),
        (v2(0x21, 0x11, bytes(12) + b"\x03\x00\x02ab"), "one 4-byte CRC32C"),
        (v2(0x21, 0x11, bytes(12) + b"\x03\x00\x04" + bytes(4)), "CRC32C does not match"),
    ],
)
def test_every_broken_rule_is_a_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ProxyHeaderDecoder().feed(data)


def test_two_checksums_are_refused() -> None:
    tlvs = ((PP2_TYPE_CRC32C, bytes(4)), (PP2_TYPE_CRC32C, bytes(4)))
    with pytest.raises(ProtocolError, match="one 4-byte CRC32C at most"):
        ProxyHeaderDecoder().feed(encode_header(ProxyHeader(2, "proxy", "stream", None, None, tlvs)))


def test_bad_bytes_are_refused_as_soon_as_they_are_seen() -> None:
    decoder = ProxyHeaderDecoder()
    assert decoder.feed(b"PRO") is NEED_DATA
    with pytest.raises(ProtocolError):
        decoder.feed(b"Z")
    decoder = ProxyHeaderDecoder()
    assert decoder.feed(V2_SIGNATURE) is NEED_DATA
    with pytest.raises(ProtocolError, match="version"):
        decoder.feed(b"\x31")


def test_most_needed_never_reaches_past_the_header() -> None:
    decoder = ProxyHeaderDecoder()
    assert decoder.most_needed == V1_MAX_LENGTH
    decoder.feed(V2_TCP4[:10])
    assert decoder.most_needed == 6
    decoder.feed(V2_TCP4[10:20])
    assert decoder.most_needed == len(V2_TCP4) - 20
    decoder.feed(V2_TCP4[20:])
    assert decoder.most_needed == 0
    assert decoder.feed(b"more") == V2_TCP4_HEADER
    assert decoder.leftover == b"more"
    decoder = ProxyHeaderDecoder()
    decoder.feed(SPEC_V1[:20])
    assert decoder.most_needed == V1_MAX_LENGTH - 20


def test_the_longest_v2_header_is_taken() -> None:
    data = v2(0x21, 0x11, bytes(12) + b"\xe0\xff\xf0" + bytes(0xFFF0))
    assert len(data) == 16 + 65535
    assert decode(data + b"x")[1] == b"x"


# -- encoding -------------------------------------------------------------------------------------


def test_encoding_writes_the_specs_bytes() -> None:
    assert encode_header(SPEC_V1_HEADER) == SPEC_V1
    assert encode_header(V2_TCP4_HEADER) == V2_TCP4
    assert encode_header(ProxyHeader(1, "local", "stream", None, None)) == b"PROXY UNKNOWN\r\n"
    assert (
        encode_header(ProxyHeader(1, "proxy", "stream", UnixAddress("/a"), UnixAddress("/b"))) == b"PROXY UNKNOWN\r\n"
    )
    assert encode_header(ProxyHeader(2, "local", "stream", None, None)) == v2(0x20, 0x01, b"")
    mixed = ProxyHeader(1, "proxy", "stream", InetAddress("127.0.0.7", 1), InetAddress("::1", 2))
    assert encode_header(mixed) == b"PROXY TCP6 ::ffff:7f00:7 ::1 1 2\r\n"


def test_a_link_local_peers_zone_is_not_written() -> None:
    """``getpeername`` gives a link-local peer with its zone (``fe80::1%eth0``), and a
    relay names its client so; v1's TCP6 takes hex groups only (HAProxy's inet_pton,
    and our own decoder, refuse the ``%``), and v2 carries the 128 bits alone."""
    scoped = ProxyHeader(1, "proxy", "stream", InetAddress("fe80::1%lo", 1), InetAddress("fe80::2%lo", 2))
    assert encode_header(scoped) == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"
    for version in (1, 2):
        decoded = ProxyHeaderDecoder().feed(encode_header(dataclasses.replace(scoped, version=version)))
        assert isinstance(decoded, ProxyHeader)
        assert (decoded.source, decoded.destination) == (InetAddress("fe80::1", 1), InetAddress("fe80::2", 2))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (ProxyHeader(3, "proxy", "stream", None, None), "version 3"),
        (ProxyHeader(1, "proxy", "stream", InetAddress("localhost", 1), InetAddress("::1", 1)), "IP addresses"),
        (ProxyHeader(1, "proxy", "unspec", None, None, ((1, b""),)), "no TLVs"),
        (ProxyHeader(2, "proxy", "stream", InetAddress("::1", 1), UnixAddress("/a")), "one family"),
        (ProxyHeader(2, "proxy", "stream", UnixAddress("/" + "a" * 107), None), "does not fit"),
        (ProxyHeader(2, "proxy", "stream", None, None, ((0xE0, bytes(65536)),)), "does not fit"),
        (ProxyHeader(2, "proxy", "stream", None, None, ((0xE0, bytes(65533)),)), "too long"),
    ],
)
def test_what_cannot_be_encoded_is_a_value_error(header: ProxyHeader, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_header(header)


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)
tlv = st.tuples(
    st.sampled_from([PP2_TYPE_ALPN, PP2_TYPE_NOOP, PP2_TYPE_UNIQUE_ID, 0xE0, 0xF1]), st.binary(max_size=64)
) | st.tuples(st.just(PP2_TYPE_AUTHORITY), st.text(max_size=20).map(str.encode))
unix = st.builds(
    UnixAddress, st.text(st.characters(exclude_characters="\0"), min_size=1, max_size=30).map(lambda p: "/" + p)
)


@st.composite
def headers(draw: st.DrawFn) -> ProxyHeader:
    version = draw(st.sampled_from([1, 2]))
    # Each address of either family: mixed ones travel as IPv6 (IPv4-mapped) and come back as they were.
    source, destination = (InetAddress(draw(draw(st.sampled_from([ipv4, ipv6]))), draw(ports)) for _ in range(2))
    if version == 1:
        return ProxyHeader(1, "proxy", "stream", source, destination)
    kind = draw(st.sampled_from(["inet", "unix", "local", "unspec"]))
    tlvs = tuple(draw(st.lists(tlv, max_size=4)))
    if draw(st.booleans()):
        tlvs += ((PP2_TYPE_CRC32C, bytes(4)),)
    if kind == "local":
        return ProxyHeader(2, "local", draw(st.sampled_from(["stream", "datagram", "unspec"])), None, None, tlvs)
    if kind == "unspec":
        return ProxyHeader(2, "proxy", "unspec", None, None, tlvs)
    transport = draw(st.sampled_from(["stream", "datagram"]))
    if kind == "unix":
        source, destination = draw(unix), draw(unix)
    return ProxyHeader(2, "proxy", transport, source, destination, tlvs)


@given(headers(), st.binary(max_size=20), st.data())
def test_encode_then_decode_in_any_pieces_gives_the_header_back(
    header: ProxyHeader, after: bytes, data: st.DataObject
) -> None:
    wire = encode_header(header) + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    decoder = ProxyHeaderDecoder()
    results = [decoder.feed(wire[start:end]) for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    decoded = results[-1]
    assert isinstance(decoded, ProxyHeader)
    # The CRC32C's value on the wire is the checksum the encoder computed, not the placeholder.
    checksum = decoded.tlv(PP2_TYPE_CRC32C)
    tlvs = tuple((kind, checksum if kind == PP2_TYPE_CRC32C else value) for kind, value in header.tlvs)
    header = dataclasses.replace(header, tlvs=tlvs)
    assert decoded == header
    assert decoder.leftover == after


def fed_in_pieces(data: bytes, cuts: list[int]) -> None:
    """Feed ``data`` cut at ``cuts``: every answer must be a header or NEED_DATA, or the
    feed raises ProtocolError."""
    decoder = ProxyHeaderDecoder()
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        try:
            result = decoder.feed(data[start:end])
        except ProtocolError:
            return
        assert result is NEED_DATA or isinstance(result, ProxyHeader)
        assert decoder.most_needed >= 0


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_random_bytes_give_a_header_need_data_or_a_protocol_error(data: bytes, cuts: list[int]) -> None:
    fed_in_pieces(data, sorted(min(cut, len(data)) for cut in cuts))


prefixes = st.sampled_from(
    [b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", V2_SIGNATURE + b"\x21", V2_SIGNATURE]
)


@given(prefixes, st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=5))
def test_bytes_after_a_valid_start_give_nothing_else_either(prefix: bytes, rest: bytes, cuts: list[int]) -> None:
    data = prefix + rest
    fed_in_pieces(data, sorted(min(cut, len(data)) for cut in cuts))


@given(headers(), st.integers(0, 300), st.integers(0, 255))
def test_a_flipped_byte_gives_nothing_else(header: ProxyHeader, where: int, value: int) -> None:
    wire = bytearray(encode_header(header))
    wire[where % len(wire)] = value
    fed_in_pieces(bytes(wire), [])
