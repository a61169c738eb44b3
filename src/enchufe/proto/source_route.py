"""IPv4 loose source routing (RFC 791 LSRR), the option behind ncat's ``-g`` and ``-G``.

:func:`loose_source_route` builds the bytes for ``setsockopt(IPPROTO_IP, IP_OPTIONS)``
exactly as ncat does: a NOP for alignment, then the LSRR option listing every hop
and, last, the destination. The kernel takes the first hop as the packet's next
destination. Routers almost everywhere drop source-routed packets (RFC 7126); the
option survives for tests and diagnostics on networks one controls.
"""

from __future__ import annotations

from ipaddress import IPv4Address

__all__ = ["MAX_HOPS", "loose_source_route"]

#: An IPv4 header has room for 40 bytes of options: 8 hops, the destination and 4 bytes.
MAX_HOPS = 8
_NOP = 0x01
_LSRR = 0x83


def loose_source_route(hops: list[str], destination: str, *, pointer: int = 4) -> bytes:
    """The IP options for a loose source route through ``hops`` to ``destination``.

    Args:
        hops: IPv4 addresses (dotted quads), in order; 1 to 8 of them.
        destination: the final IPv4 address.
        pointer: the option's pointer field: 4, 8, ... 28 (ncat's ``-G``).

    Raises:
        ValueError: no hop or too many, a pointer out of range, or an address that
            is not an IPv4 literal.
    """
    if not 1 <= len(hops) <= MAX_HOPS:
        raise ValueError(f"a source route has 1 to {MAX_HOPS} hops, not {len(hops)}")
    if pointer < 4 or pointer > 28 or pointer % 4:
        raise ValueError(f"invalid source-route hop pointer {pointer}")
    addresses = b"".join(IPv4Address(address).packed for address in [*hops, destination])
    return bytes((_NOP, _LSRR, len(addresses) + 3, pointer)) + addresses
