"""Fuzz enchufe.address: parse_address, parse_port, format_host_port.

Invariant: ``parse_address`` gives an ``InetAddress`` or ``UnixAddress``, or raises
``AddressError``, nothing else; what it gives round-trips, ``parse_address(str(a)) == a``;
``parse_port`` gives an int from 0 to 65535 or raises ``AddressError``.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.address import InetAddress, UnixAddress, format_host_port, parse_address, parse_port
    from enchufe.errors import AddressError


def check(data: bytes) -> None:
    text = fuzzing.text(data)
    for default_port in (None, 7):
        try:
            address = parse_address(text, default_port=default_port)
        except AddressError:
            continue
        assert isinstance(address, InetAddress | UnixAddress), address
        assert parse_address(str(address)) == address, (text, address)
        if isinstance(address, InetAddress):
            assert format_host_port(address.host, address.port) == str(address)
    try:
        port = parse_port(text)
    except AddressError:
        return
    assert 0 <= port <= 65535 and parse_port(str(port)) == port


if __name__ == "__main__":
    fuzzing.main(check)
