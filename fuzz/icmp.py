"""Fuzz enchufe.proto.icmp: what a raw or datagram ICMP socket returns, and the checksum.

Invariant: ``parse_icmp`` gives an ``EchoReply``, ``IcmpError`` or ``OtherIcmp``, or
raises ``ProtocolError``, nothing else, in each of its three socket kinds; a message
with its checksum in place sums to 0; an echo request built from the fuzzed fields
parses back as itself (type 8).
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import ProtocolError
    from enchufe.proto.icmp import EchoReply, IcmpError, OtherIcmp, checksum, echo_request, parse_icmp


def check(data: bytes) -> None:
    for ipv6, ip_header in ((False, False), (False, True), (True, False)):
        try:
            message = parse_icmp(data, ipv6=ipv6, ip_header=ip_header)
        except ProtocolError:
            continue
        assert isinstance(message, EchoReply | IcmpError | OtherIcmp), message
        if isinstance(message, IcmpError):
            assert isinstance(message.description, str) and message.description
    identifier = int.from_bytes(data[:2], "big")
    sequence = int.from_bytes(data[2:4], "big")
    request = echo_request(identifier, sequence, data[4:])
    assert checksum(request) == 0
    assert parse_icmp(request) == OtherIcmp(8, 0, len(request))


if __name__ == "__main__":
    fuzzing.main(check)
