"""Fuzz enchufe.proto.source_route.loose_source_route (``-g``/``-G``).

Invariant: it gives the option or raises ``ValueError`` (its documented error), nothing
else; the option reads back: NOP, LSRR, its length, the pointer, then every hop and
the destination.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.source_route import loose_source_route


def check(data: bytes) -> None:
    pointer = data[0] if data else 4
    *hops, destination = fuzzing.text(data[1:]).split(",")
    try:
        option = loose_source_route(hops, destination, pointer=pointer)
    except ValueError:
        return
    assert option[:4] == bytes((1, 0x83, len(option) - 1, pointer)), option
    addresses = [str(IPv4Address(option[i : i + 4])) for i in range(4, len(option), 4)]
    assert addresses == [str(IPv4Address(address)) for address in [*hops, destination]]


if __name__ == "__main__":
    fuzzing.main(check)
