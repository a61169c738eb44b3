"""The LSRR option bytes behind -g/-G, exactly as ncat builds them."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.source_route import MAX_HOPS, loose_source_route


def test_one_hop() -> None:
    # NOP, LSRR, length 11, pointer 4, hop, destination: ncat's buildsrcrte layout.
    assert loose_source_route(["127.0.0.2"], "127.0.0.1") == bytes.fromhex("01830b047f0000027f000001")


def test_pointer_is_written_as_given() -> None:
    assert loose_source_route(["10.0.0.1", "10.0.0.2"], "10.0.0.3", pointer=8)[3] == 8


@pytest.mark.parametrize("pointer", [0, 3, 5, 32, -4])
def test_bad_pointer(pointer: int) -> None:
    with pytest.raises(ValueError, match="pointer"):
        loose_source_route(["10.0.0.1"], "10.0.0.2", pointer=pointer)


@pytest.mark.parametrize("count", [0, MAX_HOPS + 1])
def test_hop_count_limits(count: int) -> None:
    with pytest.raises(ValueError, match="hops"):
        loose_source_route(["10.0.0.1"] * count, "10.0.0.2")


def test_only_ipv4_literals() -> None:
    with pytest.raises(ValueError):
        loose_source_route(["::1"], "127.0.0.1")


@given(
    hops=st.lists(st.ip_addresses(v=4), min_size=1, max_size=MAX_HOPS),
    destination=st.ip_addresses(v=4),
    pointer=st.sampled_from(range(4, 29, 4)),
)
def test_fits_an_ipv4_header_and_lists_every_address(
    hops: list[ipaddress.IPv4Address], destination: ipaddress.IPv4Address, pointer: int
) -> None:
    options = loose_source_route([str(hop) for hop in hops], str(destination), pointer=pointer)
    assert len(options) == 4 + 4 * (len(hops) + 1) <= 40
    assert options[:4] == bytes((0x01, 0x83, len(options) - 1, pointer))
    listed = [ipaddress.IPv4Address(options[i : i + 4]) for i in range(4, len(options), 4)]
    assert listed == [*hops, destination]
