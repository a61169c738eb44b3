"""ICMP and ICMPv6 echo, sans-IO: the messages ``ping`` sends and what comes back.

- :func:`checksum` is the Internet checksum (RFC 1071).
- :func:`echo_payload` lays out a payload as iputils ``ping`` does: the send time as a
  ``struct timeval`` (16 bytes, native order) first when there is room, then the pattern
  byte ``i % 256`` at offset ``i``.
- :func:`echo_request` builds an echo request: ICMP type 8 with its checksum, or ICMPv6
  type 128 whose checksum the kernel fills in (it covers a pseudo-header of addresses
  only the kernel knows, on raw and datagram sockets alike).
- :func:`parse_icmp` reads what a socket returned: a raw IPv4 socket gives the IP header
  first (its TTL is the reply's), a raw IPv6 socket and the datagram ICMP sockets give
  the ICMP message alone. The result is an :class:`EchoReply`, an :class:`IcmpError`
  (destination unreachable, time exceeded, ...) that carries the start of the datagram
  it is about, so the echo request's identifier and sequence are read back from it, or
  an :class:`OtherIcmp` for anything else (an echo request seen on a raw socket).
- :func:`describe_error` words an error's type and code as iputils does
  (``Destination Host Unreachable``); the datagram sockets report errors through the
  socket's error queue, as type, code and info without the message, so it takes those.

Bad bytes raise :class:`~enchufe.errors.ProtocolError` only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from enchufe.errors import ProtocolError

__all__ = [
    "ECHO_REPLY",
    "ECHO_REPLY_V6",
    "ECHO_REQUEST",
    "ECHO_REQUEST_V6",
    "HEADER_SIZE",
    "IPV4_HEADER_SIZE",
    "TIMESTAMP_SIZE",
    "EchoReply",
    "IcmpError",
    "OtherIcmp",
    "checksum",
    "describe_error",
    "echo_payload",
    "echo_request",
    "parse_icmp",
    "payload_timestamp",
]

ECHO_REPLY = 0
ECHO_REQUEST = 8
ECHO_REPLY_V6 = 129
ECHO_REQUEST_V6 = 128
#: An ICMP header: type, code, checksum, then identifier and sequence for an echo.
HEADER_SIZE = 8
#: An IPv4 header without options (what ping's ``56(84) bytes`` counts).
IPV4_HEADER_SIZE = 20
IPV6_HEADER_SIZE = 40
#: iputils' timestamp: a 64-bit ``struct timeval`` (seconds, microseconds).
TIMESTAMP_SIZE = 16
_TIMEVAL = struct.Struct("=qq")
_HEADER = struct.Struct("!BBHHH")
_PROTOCOL_ICMP = 1
_NEXT_HEADER_ICMPV6 = 58

# ICMP error types (RFC 792) and ICMPv6's (RFC 4443).
_UNREACHABLE, _SOURCE_QUENCH, _REDIRECT, _TIME_EXCEEDED, _PARAMETER_PROBLEM = 3, 4, 5, 11, 12
_ERRORS_V4 = {_UNREACHABLE, _SOURCE_QUENCH, _REDIRECT, _TIME_EXCEEDED, _PARAMETER_PROBLEM}
_UNREACHABLE_V6, _TOO_BIG_V6, _TIME_EXCEEDED_V6, _PARAMETER_PROBLEM_V6 = 1, 2, 3, 4
_ERRORS_V6 = {_UNREACHABLE_V6, _TOO_BIG_V6, _TIME_EXCEEDED_V6, _PARAMETER_PROBLEM_V6}

# iputils' words (ping4_common / ping6_common's pr_icmph).
_UNREACHABLE_V4_TEXT = [
    "Destination Net Unreachable",
    "Destination Host Unreachable",
    "Destination Protocol Unreachable",
    "Destination Port Unreachable",
    "Frag needed and DF set (mtu = {info})",
    "Source Route Failed",
    "Destination Net Unknown",
    "Destination Host Unknown",
    "Source Host Isolated",
    "Destination Net Prohibited",
    "Destination Host Prohibited",
    "Destination Net Unreachable for Type of Service",
    "Destination Host Unreachable for Type of Service",
    "Packet filtered",
    "Precedence Violation",
    "Precedence Cutoff",
]
_REDIRECT_V4_TEXT = ["Redirect Network", "Redirect Host", "Redirect Type of Service and Network",
                     "Redirect Type of Service and Host"]  # fmt: skip
_UNREACHABLE_V6_TEXT = [
    "No route",
    "Administratively prohibited",
    "Beyond scope of source address",
    "Address unreachable",
    "Port unreachable",
    "Source address failed ingress/egress policy",
    "Reject route to destination",
]


@dataclass(frozen=True)
class EchoReply:
    """An echo reply.

    Attributes:
        identifier, sequence: the request's, echoed.
        payload: the data after the header, echoed.
        size: the ICMP message's length in bytes (``64 bytes from ...``).
        ttl: the IPv4 header's TTL when the socket gave the header, else ``None``.
    """

    identifier: int
    sequence: int
    payload: bytes
    size: int
    ttl: int | None = None


@dataclass(frozen=True)
class IcmpError:
    """An ICMP error about a datagram we sent.

    Attributes:
        type, code: the error's.
        info: the 32 bits after the checksum (a next-hop MTU, a redirect's gateway, a
            parameter problem's pointer in its first byte for IPv4).
        description: iputils' words for it (:func:`describe_error`).
        identifier, sequence: the echo request's, read from the quoted datagram;
            ``None`` when the quoted datagram is not an echo request (another
            program's UDP, say) or is cut short.
        size: the ICMP message's length in bytes.
    """

    type: int
    code: int
    info: int
    description: str
    identifier: int | None
    sequence: int | None
    size: int


@dataclass(frozen=True)
class OtherIcmp:
    """An ICMP message that is neither an echo reply nor an error (a raw socket sees
    the echo requests sent to the host, its own on loopback among them)."""

    type: int
    code: int
    size: int


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071): the ones' complement of the ones'
    complement sum of its 16-bit big-endian words, an odd last byte padded with zero.
    Data that carries its own correct checksum sums to 0."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_payload(size: int, *, seconds: int = 0, microseconds: int = 0) -> bytes:
    """A payload of ``size`` bytes as iputils lays it out: the send time as a ``struct
    timeval`` first if ``size`` has room for it (:data:`TIMESTAMP_SIZE`), then the
    pattern byte ``i % 256`` at each offset ``i``."""
    if size < 0:
        raise ValueError(f"a payload cannot have {size} bytes")
    pattern = bytes(index % 256 for index in range(size))
    if size < TIMESTAMP_SIZE:
        return pattern
    return _TIMEVAL.pack(seconds, microseconds) + pattern[TIMESTAMP_SIZE:]


def payload_timestamp(payload: bytes) -> tuple[int, int] | None:
    """The ``(seconds, microseconds)`` at the start of an iputils payload; ``None`` if
    it is too short to hold one."""
    if len(payload) < TIMESTAMP_SIZE:
        return None
    seconds, microseconds = _TIMEVAL.unpack_from(payload)
    return seconds, microseconds


def echo_request(identifier: int, sequence: int, payload: bytes, *, ipv6: bool = False) -> bytes:
    """An echo request: ICMP type 8 with its checksum, or ICMPv6 type 128 with a zero
    checksum for the kernel to compute. ``identifier`` and ``sequence`` are taken
    modulo 2**16 (a sequence wraps, as iputils' does)."""
    identifier &= 0xFFFF
    sequence &= 0xFFFF
    if ipv6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, identifier, sequence) + payload
    unsummed = _HEADER.pack(ECHO_REQUEST, 0, 0, identifier, sequence) + payload
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(unsummed), identifier, sequence) + payload


def parse_icmp(data: bytes, *, ipv6: bool = False, ip_header: bool = False) -> EchoReply | IcmpError | OtherIcmp:
    """Read one message as a socket returned it.

    Args:
        data: the bytes received.
        ipv6: an ICMPv6 message (its checksum was checked by the kernel).
        ip_header: ``data`` starts with the IPv4 header (a raw IPv4 socket).

    Raises:
        ProtocolError: a header cut short or inconsistent, an IPv4 header not carrying
            ICMP, a wrong IPv4 checksum.
    """
    ttl = None
    if ip_header:
        if ipv6:
            raise ProtocolError("an IPv6 raw socket gives no IP header")
        header_length, ttl = _ipv4_header(data, "packet")
        data = data[header_length:]
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"an ICMP message of {len(data)} bytes is shorter than its header")
    if not ipv6 and checksum(data):
        raise ProtocolError("bad ICMP checksum")
    type, code, _, identifier, sequence = _HEADER.unpack_from(data)
    if type == (ECHO_REPLY_V6 if ipv6 else ECHO_REPLY):
        return EchoReply(identifier, sequence, data[HEADER_SIZE:], len(data), ttl)
    if type in (_ERRORS_V6 if ipv6 else _ERRORS_V4):
        info = int.from_bytes(data[4:8], "big")
        quoted_identifier, quoted_sequence = _quoted_echo(data[HEADER_SIZE:], ipv6=ipv6)
        description = describe_error(type, code, info, ipv6=ipv6)
        return IcmpError(type, code, info, description, quoted_identifier, quoted_sequence, len(data))
    return OtherIcmp(type, code, len(data))


def describe_error(type: int, code: int, info: int = 0, *, ipv6: bool = False) -> str:
    """iputils' words for an ICMP(v6) error: ``Destination Host Unreachable``, ``Time to
    live exceeded``, ``Destination unreachable: Address unreachable``, ... ``info`` is
    the 32 bits after the checksum (an MTU, a gateway, a pointer)."""
    return _describe_v6(type, code, info) if ipv6 else _describe_v4(type, code, info)


def _describe_v4(type: int, code: int, info: int) -> str:
    if type == _UNREACHABLE:
        if code < len(_UNREACHABLE_V4_TEXT):
            return _UNREACHABLE_V4_TEXT[code].format(info=info & 0xFFFF)
        return f"Dest Unreachable, Bad Code: {code}"
    if type == _SOURCE_QUENCH:
        return "Source Quench"
    if type == _REDIRECT:
        text = _REDIRECT_V4_TEXT[code] if code < len(_REDIRECT_V4_TEXT) else f"Redirect, Bad Code: {code}"
        return f"{text}(New nexthop: {IPv4Address(info)})"
    if type == _TIME_EXCEEDED:
        return {0: "Time to live exceeded", 1: "Frag reassembly time exceeded"}.get(
            code, f"Time exceeded, Bad Code: {code}"
        )
    if type == _PARAMETER_PROBLEM:
        return f"Parameter problem: pointer = {info >> 24}"
    return f"Bad ICMP type: {type}"


def _describe_v6(type: int, code: int, info: int) -> str:
    if type == _UNREACHABLE_V6:
        reason = _UNREACHABLE_V6_TEXT[code] if code < len(_UNREACHABLE_V6_TEXT) else f"Unknown code {code}"
        return f"Destination unreachable: {reason}"
    if type == _TOO_BIG_V6:
        return f"Packet too big: mtu={info}"
    if type == _TIME_EXCEEDED_V6:
        reason = {0: "Hop limit", 1: "Defragmentation failure"}.get(code, f"code {code}")
        return f"Time exceeded: {reason}"
    if type == _PARAMETER_PROBLEM_V6:
        reason = {0: "Wrong header field ", 1: "Unknown header ", 2: "Unknown option "}.get(code, f"code {code} ")
        return f"Parameter problem: {reason}at {info}"
    return f"Unknown icmp type: {type}"


def _ipv4_header(data: bytes, what: str) -> tuple[int, int]:
    """The length and TTL of the IPv4 header ``data`` starts with, checked to carry ICMP."""
    if len(data) < IPV4_HEADER_SIZE:
        raise ProtocolError(f"an IPv4 {what} of {len(data)} bytes is shorter than its header")
    version, header_length = data[0] >> 4, (data[0] & 0x0F) * 4
    if version != 4 or header_length < IPV4_HEADER_SIZE or header_length > len(data):
        raise ProtocolError(f"a bad IPv4 header in the {what} (version {version}, length {header_length})")
    if data[9] != _PROTOCOL_ICMP:
        raise ProtocolError(f"the {what} carries IP protocol {data[9]}, not ICMP")
    return header_length, data[8]


def _quoted_echo(quoted: bytes, *, ipv6: bool) -> tuple[int | None, int | None]:
    """The identifier and sequence of the echo request an error quotes (its IP header
    and at least the first 8 bytes of its ICMP message), or ``(None, None)`` when the
    quoted datagram is something else or too short to tell."""
    if ipv6:
        if len(quoted) < IPV6_HEADER_SIZE + HEADER_SIZE or quoted[0] >> 4 != 6 or quoted[6] != _NEXT_HEADER_ICMPV6:
            return None, None
        inner = quoted[IPV6_HEADER_SIZE:]
        request = ECHO_REQUEST_V6
    else:
        try:
            header_length, _ = _ipv4_header(quoted, "quoted datagram")
        except ProtocolError:
            return None, None
        inner = quoted[header_length:]
        request = ECHO_REQUEST
    if len(inner) < HEADER_SIZE or inner[0] != request:
        return None, None
    _, _, _, identifier, sequence = _HEADER.unpack_from(inner)
    return identifier, sequence
