"""Host specifications and access lists (enchufe.acl), against what ncat 7.93 does.

Cases marked "observed" were checked on loopback against /usr/bin/ncat 7.93 (see also
tests/interop/test_acl_ncat.py, which replays some of them). TEST_ADDRSET recreates the
cases of ncat's own ncat/test/test-addrset.sh.
"""

from __future__ import annotations

import ast
import ipaddress
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import enchufe.acl
from enchufe.acl import AccessList, HostSpec
from enchufe.errors import AddressError

# --- one specification: what it matches --------------------------------------------


def matching(spec: str, addresses: Iterable[str]) -> set[str]:
    parsed = HostSpec.parse(spec)
    return {address for address in addresses if parsed.matches(address)}


def getaddrinfo_numeric(text: str) -> list[str] | None:
    """What glibc makes of ``text`` as a numeric host (no DNS: AI_NUMERICHOST)."""
    try:
        infos = socket.getaddrinfo(text, None, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return [str(info[4][0]) for info in infos]


#: (specifications, addresses they match, addresses they do not), after test-addrset.sh.
TEST_ADDRSET = [
    # plain IPv4 addresses
    (["192.168.0.0"], ["192.168.0.0"], ["0.0.0.0", "192.168.0.1", "192.168.1.0", "193.168.0.0", "::ffff:c0a8:1"]),
    (["192.168.0.0", "192.168.0.1"], ["192.168.0.0", "192.168.0.1"], ["192.168.0.2"]),
    # CIDR, including host bits left in the address
    (["192.168.0.0/0"], ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::ffff:1.2.3.4"], ["::1", "::"]),
    (["192.168.0.0/1"], ["128.0.0.0", "255.255.255.255", "192.168.0.1"], ["0.0.0.0", "127.255.255.255"]),
    (["192.168.0.0/24"], ["192.168.0.0", "192.168.0.255"], ["192.168.1.0", "192.167.255.255"]),
    (["192.168.0.5/24"], ["192.168.0.0", "192.168.0.255"], ["192.168.1.0"]),
    (["192.168.0.0/31"], ["192.168.0.0", "192.168.0.1"], ["192.168.0.2"]),
    (["192.168.0.1/31"], ["192.168.0.0", "192.168.0.1"], ["192.168.0.2"]),
    (["192.168.0.0/32"], ["192.168.0.0"], ["192.168.0.1"]),
    # octet ranges, lists and wildcards
    (["192.168.0-2.*"], ["192.168.0.0", "192.168.1.77", "192.168.2.255"], ["192.168.3.0", "192.169.0.0"]),
    (["192.168.0.1,3,5"], ["192.168.0.1", "192.168.0.3", "192.168.0.5"], ["192.168.0.2", "192.168.0.4"]),
    (["192.168.1,3.1"], ["192.168.1.1", "192.168.3.1"], ["192.168.2.1", "192.168.1.3"]),
    (["10.*.*.1"], ["10.0.0.1", "10.255.7.1"], ["10.0.0.2", "11.0.0.1"]),
    (["1-5.0.0.1"], ["1.0.0.1", "3.0.0.1", "5.0.0.1"], ["0.0.0.1", "6.0.0.1"]),
    (["192.168.0.-3"], ["192.168.0.0", "192.168.0.3"], ["192.168.0.4"]),
    (["192.168.0.250-"], ["192.168.0.250", "192.168.0.255"], ["192.168.0.249"]),
    (["-.-.-.-"], ["0.0.0.0", "255.255.255.255"], ["::"]),
    (["*.*.*.*"], ["0.0.0.0", "255.255.255.255", "::ffff:10.0.0.1"], ["::", "::1"]),
    (["192.168.0.1-2,4-5"], ["192.168.0.1", "192.168.0.2", "192.168.0.4", "192.168.0.5"], ["192.168.0.3"]),
    (["192.168.0.08"], ["192.168.0.8"], ["192.168.0.0"]),  # not octal: inet_aton refuses it, ranges read decimal
    # octet ranges with a netmask widen each octet (observed)
    (["192.168.0.*/16"], ["192.168.0.0", "192.168.255.255"], ["192.169.0.0"]),
    (["192.168.0.1-3/24"], ["192.168.0.0", "192.168.0.255"], ["192.168.1.0"]),
    (["192.168.0.3-4/31"], ["192.168.0.2", "192.168.0.5"], ["192.168.0.1", "192.168.0.6"]),
    (["*.0.0.1/8"], ["1.2.3.4", "255.0.0.0"], ["::1"]),
    (["10.0.0.1-2/32"], ["10.0.0.1", "10.0.0.2"], ["10.0.0.3"]),
    # inet_aton's other forms, as getaddrinfo(AI_NUMERICHOST) reads them (observed)
    (["127.1"], ["127.0.0.1"], ["127.1.0.0"]),
    (["127.0.1"], ["127.0.0.1"], ["127.0.1.0"]),
    (["127.0.0.010"], ["127.0.0.8"], ["127.0.0.10"]),
    (["127.0.0.0x10"], ["127.0.0.16"], ["127.0.0.0"]),
    (["0x7f.1"], ["127.0.0.1"], []),
    (["2130706433"], ["127.0.0.1"], []),
    (["0"], ["0.0.0.0"], ["::"]),
    (["127.0.0.0-010"], ["127.0.0.0", "127.0.0.10"], ["127.0.0.11"]),  # a range: decimal
    # IPv6
    (["::"], ["::"], ["::1", "0.0.0.0"]),
    (["::1"], ["::1", "0:0::1"], ["::2", "127.0.0.1"]),
    (["::/0"], ["::", "::1", "ffff::1", "127.0.0.1", "::ffff:127.0.0.1"], []),
    (["ffff::/0"], ["::1", "127.0.0.1"], []),  # ncat 7.93 treats /0 as /1 here: a bug
    (["::/1"], ["::1", "7fff::"], ["8000::"]),
    (["1:2::3:4/64"], ["1:2::", "1:2::ffff:ffff:ffff:ffff"], ["1:3::", "1:1:ffff:ffff:ffff:ffff:ffff:ffff"]),
    (["1:2::3:4/128"], ["1:2::3:4"], ["1:2::3:5"]),
    (["fe80::/10"], ["fe80::1", "febf::1", "fe80::1%eth0"], ["fec0::1"]),
    (["::2/126"], ["::", "::1", "::3"], ["::4"]),
    (["fe80::1%lo"], ["fe80::1", "fe80::1%eth0"], ["fe80::2"]),
    (["::1%1"], ["::1"], []),
    # IPv4-mapped IPv6, both ways (observed)
    (["::ffff:127.0.0.1"], ["127.0.0.1", "::ffff:127.0.0.1"], ["127.0.0.2", "::127.0.0.1"]),
    (["::ffff:127.0.0.0/104"], ["127.0.0.1", "127.255.255.255"], ["128.0.0.0"]),
    (["::ffff:0:0/96"], ["0.0.0.0", "255.255.255.255"], ["::1"]),
    (["::/80"], ["127.0.0.1", "::1"], ["1::"]),
    (["::/96"], ["::1"], ["127.0.0.1"]),
    (["127.0.0.1"], ["::ffff:127.0.0.1", "::ffff:7f00:1"], ["::1", "::127.0.0.1"]),
    (["127.0.0.0/8"], ["::ffff:127.1.2.3"], ["::ffff:128.0.0.0"]),
    (["127.0.0.*"], ["::ffff:127.0.0.9"], ["::127.0.0.9"]),
    (["0.0.0.0/0"], ["1.1.1.1"], ["::1", "::"]),
    # IPv4 and IPv6 together
    (["192.168.0.0/24", "::1"], ["192.168.0.3", "::1"], ["::2", "192.168.1.0"]),
]


@pytest.mark.parametrize(("specs", "matched", "unmatched"), TEST_ADDRSET, ids=[" ".join(c[0]) for c in TEST_ADDRSET])
def test_addrset(specs: list[str], matched: list[str], unmatched: list[str]) -> None:
    acl = AccessList()
    for spec in specs:
        acl.allow(HostSpec.parse(spec))  # one spec each, as test-addrset.sh passes them: no comma split
    for address in matched:
        assert acl.permits(address), address
    for address in unmatched:
        assert not acl.permits(address), address
    if len(specs) == 1:
        assert matching(specs[0], matched + unmatched) == set(matched)


@pytest.mark.parametrize(
    ("text", "networks"),
    [
        ("10.0.0.0/8", ["10.0.0.0/8"]),
        ("192.168.1.5/24", ["192.168.1.0/24"]),
        ("192.168.1.5", ["192.168.1.5/32"]),
        ("fe80::/10", ["fe80::/10"]),
        ("fe80::1%eth0/64", ["fe80::/64"]),
        ("::ffff:1.2.3.4", ["::ffff:102:304/128"]),
        ("1.2.3.4/00000000000000000000008", ["1.0.0.0/8"]),
        ("1.2.3.4/0", ["0.0.0.0/0"]),
    ],
)
def test_a_numeric_spec_is_the_network_that_contains_it(text: str, networks: list[str]) -> None:
    spec = HostSpec.parse(text)
    assert spec.text == text
    assert spec.networks == tuple(ipaddress.ip_network(n) for n in networks)
    assert spec.octets is None


def test_an_octet_pattern_keeps_each_octets_values() -> None:
    spec = HostSpec.parse("192.168.0-2,9.*")
    assert spec.networks == ()
    assert spec.octets == (frozenset({192}), frozenset({168}), frozenset({0, 1, 2, 9}), frozenset(range(256)))
    assert HostSpec.parse("10.0.0.1-3/30").octets == (
        frozenset({10}),
        frozenset({0}),
        frozenset({0}),
        frozenset({0, 1, 2, 3}),
    )


def test_a_spec_is_a_value() -> None:
    assert HostSpec.parse("10.0.0.0/8") == HostSpec.parse("10.0.0.0/8")
    assert HostSpec.parse("10.*.*.*") != HostSpec.parse("10.0.0.0/8")
    assert repr(HostSpec.parse("::1")) == "HostSpec(text='::1', networks=(IPv6Network('::1/128'),), octets=None)"
    import pickle

    spec = HostSpec.parse("10.*.0-3.1")
    assert pickle.loads(pickle.dumps(spec)) == spec


# --- malformed specifications: ncat's messages (observed) --------------------------

NO_NAME = "Name or service not known"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.2.3.4/33", 'Illegal netmask in "1.2.3.4/33". Must be smaller than address bit length.'),
        ("::1/129", 'Illegal netmask in "::1/129". Must be smaller than address bit length.'),
        ("::1/0129", 'Illegal netmask in "::1/0129". Must be smaller than address bit length.'),
        (
            "127.0.0.1/4294967304",
            'Illegal netmask in "127.0.0.1/4294967304". Must be smaller than address bit length.',
        ),
        ("127.0.0.*/33", 'Illegal netmask in "127.0.0.*/33". Must be between 0 and 32.'),
        ("1.2.3.4/", 'Error parsing netmask in "1.2.3.4/".'),
        ("1.2.3.4/-1", 'Error parsing netmask in "1.2.3.4/-1".'),
        ("1.2.3.4/-0", 'Error parsing netmask in "1.2.3.4/-0".'),
        ("1.2.3.4/+8", 'Error parsing netmask in "1.2.3.4/+8".'),
        ("1.2.3.4/ 8", 'Error parsing netmask in "1.2.3.4/ 8".'),
        ("1.2.3.4/8 ", 'Error parsing netmask in "1.2.3.4/8 ".'),
        ("1.2.3.4/abc", 'Error parsing netmask in "1.2.3.4/abc".'),
        ("1.2.3.4/8/8", 'Error parsing netmask in "1.2.3.4/8/8".'),
        ("1.2.3.4/99999999999999999999", 'Error parsing netmask in "1.2.3.4/99999999999999999999".'),
        ("::1/+64", 'Error parsing netmask in "::1/+64".'),
        ("1.2.3.4/\u0663", 'Error parsing netmask in "1.2.3.4/\u0663".'),
        ("300.1.1.1", f'Error resolving name "300.1.1.1": {NO_NAME}'),
        ("300.1.1.1/33", f'Error resolving name "300.1.1.1": {NO_NAME}'),  # the name first
        ("/24", f'Error resolving name "": {NO_NAME}'),
        ("", f'Error resolving name "": {NO_NAME}'),
        (" ", f'Error resolving name " ": {NO_NAME}'),
        ("a b", f'Error resolving name "a b": {NO_NAME}'),
        ("*", f'Error resolving name "*": {NO_NAME}'),
        ("[::1]", f'Error resolving name "[::1]": {NO_NAME}'),
        ("1.2.3.4.5", f'Error resolving name "1.2.3.4.5": {NO_NAME}'),
        ("4294967296", f'Error resolving name "4294967296": {NO_NAME}'),
        ("0x", f'Error resolving name "0x": {NO_NAME}'),
        ("1.2.65536", f'Error resolving name "1.2.65536": {NO_NAME}'),
    ]
    + [
        (bad, f'Error resolving name "{bad}": {NO_NAME}')
        for bad in [
            "127.0.0.256",
            "127.0.0.1-300",
            "127.0.0.256-",
            "127.0.0.-256",
            "1.2.3.5-3",
            "127.0.0.*-3",
            "127.0.0.1*",
            "127.0.0.**",
            "127.0.0.*,1",
            "127.0.0.1,*",
            "127.0.0.1,,2",
            "127.0.0.1,",
            "127.0.0.,1",
            "127.0.0.",
            "127.0..1",
            ".127.0.0.1",
            "127.0.0.1.",
            "127.0.0.1--3",
            "127.0.0.1-2-3",
            "127.0.0.+1",
            "127.0.0. 1",
            "127.0.0.1-0x3",
            "127.*.0",
            "1-2.3",
            "127.0.0.\u0661",  # ARABIC-INDIC DIGIT ONE: not an ASCII digit
            "::1-2",
            "::*",
            "::1%",
            "::1%lo",
            "::1%+1",
            "::1%4294967296",
            "ff05::1%lo",
            "fec0::1%lo",
            "fe80::1%a:b",
            "fe80::1%a b",
            "fe80::1%0123456789abcdef",  # longer than an interface name may be
            "::ffff:1.2.3.04",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
        ]
    ],
)
def test_malformed_spec_has_ncats_message(text: str, message: str) -> None:
    with pytest.raises(AddressError) as caught:
        HostSpec.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "text",
    ["::1%0", "::1%4294967295", "::1%00001", "fe80::1%lo", "ff02::1%lo", "ff12::1%lo", "febf::1%lo", "fe80::1%42"],
)
def test_zones_glibc_accepts(text: str) -> None:
    assert getaddrinfo_numeric(text) is not None
    assert HostSpec.parse(text).networks[0] == ipaddress.ip_network(text.partition("%")[0])


@pytest.mark.parametrize("text", ["fe80::1%nosuchif", "ff12::1%x", "fe80::1%0123456789abcde"])
def test_a_zone_names_interface_is_not_looked_up(text: str) -> None:
    # glibc refuses an interface that does not exist; knowing that would be I/O
    assert getaddrinfo_numeric(text) is None
    assert HostSpec.parse(text).networks[0] == ipaddress.ip_network(text.partition("%")[0])


# --- names: resolved once, when read, to every address -----------------------------


class FakeResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, NO_NAME)
        return self.table[name]


def test_a_name_stands_for_every_address_it_resolves_to() -> None:
    resolve = FakeResolver({"twin.test": ["127.0.0.2", "::1", "fe80::1%eth0"]})
    spec = HostSpec.parse("twin.test", resolve)
    assert spec.networks == tuple(ipaddress.ip_network(n) for n in ["127.0.0.2/32", "::1/128", "fe80::1/128"])
    assert spec.matches("fe80::1%eth1")


def test_a_name_is_resolved_once_when_added_never_on_a_connection() -> None:
    resolve = FakeResolver({"peer.test": ["127.0.0.2"]})
    acl = AccessList(resolve=resolve)
    acl.allow("peer.test")
    assert resolve.asked == ["peer.test"]
    assert acl.permits("127.0.0.2")
    assert not acl.permits("127.0.0.3")
    assert resolve.asked == ["peer.test"]


def test_a_names_netmask_applies_to_each_address() -> None:
    resolve = FakeResolver({"host.test": ["127.0.0.1", "fe80::1"]})
    spec = HostSpec.parse("host.test/24", resolve)
    assert spec.networks == (ipaddress.ip_network("127.0.0.0/24"), ipaddress.ip_network("fe80::/24"))
    assert resolve.asked == ["host.test"]  # the name, without its netmask


@pytest.mark.parametrize(
    ("addresses", "text", "message"),
    [
        (["127.0.0.1"], "host.test/33", 'Illegal netmask in "host.test/33". Must be between 0 and 32.'),
        (["::1"], "host.test/129", 'Illegal netmask in "host.test/129". Must be between 0 and 128.'),
        (["::1", "127.0.0.1"], "host.test/64", 'Illegal netmask in "host.test/64". Must be between 0 and 32.'),
        ([], "host.test", 'Error resolving name "host.test": No address associated with hostname'),
        (["not-an-address"], "host.test", "Error resolving name \"host.test\": not an address: 'not-an-address'"),
    ],
)
def test_name_errors(addresses: list[str], text: str, message: str) -> None:
    with pytest.raises(AddressError) as caught:
        HostSpec.parse(text, FakeResolver({"host.test": addresses}))
    assert str(caught.value) == message


def test_a_resolver_failure_says_why_in_its_words() -> None:
    with pytest.raises(AddressError) as caught:
        HostSpec.parse("nowhere.test", FakeResolver({}))
    assert str(caught.value) == f'Error resolving name "nowhere.test": {NO_NAME}'
    assert isinstance(caught.value.__cause__, socket.gaierror)

    def refuses(name: str) -> list[str]:
        raise OSError("resolver is down")

    with pytest.raises(AddressError, match=r'^Error resolving name "x": resolver is down$'):
        HostSpec.parse("x", refuses)


def test_numeric_specs_never_reach_the_resolver() -> None:
    resolve = FakeResolver({})
    for text in ["127.0.0.1", "::1", "10.0.0.0/8", "10.*.*.*", "127.1", "0x7f.1"]:
        HostSpec.parse(text, resolve)
    assert resolve.asked == []


# --- the access list: deny wins, allowing restricts, lists accumulate --------------


def test_no_lists_permit_everyone() -> None:
    acl = AccessList()
    assert not acl.restricted
    assert acl.permits("127.0.0.1")
    assert acl.permits("::1")


def test_allow_permits_only_its_hosts() -> None:  # observed: --allow 127.0.0.2
    acl = AccessList()
    acl.allow("127.0.0.2")
    assert acl.restricted
    assert [acl.permits(f"127.0.0.{n}") for n in (1, 2, 3)] == [False, True, False]


def test_deny_refuses_only_its_hosts() -> None:  # observed: --deny 127.0.0.2
    acl = AccessList()
    acl.deny("127.0.0.2")
    assert not acl.restricted
    assert [acl.permits(f"127.0.0.{n}") for n in (1, 2, 3)] == [True, False, True]


@pytest.mark.parametrize("deny_first", [False, True])
def test_a_host_both_allowed_and_denied_is_denied(deny_first: bool) -> None:  # observed, both orders
    acl = AccessList()
    if deny_first:
        acl.deny("127.0.0.0/24")
    acl.allow("127.0.0.2")
    if not deny_first:
        acl.deny("127.0.0.0/24")
    assert not acl.permits("127.0.0.2")
    assert not acl.permits("127.0.0.1")


def test_lists_accumulate() -> None:  # observed: --allow .3,.4 --deny .3 --allowfile (.1 .2)
    acl = AccessList()
    acl.allow("127.0.0.3,127.0.0.4")
    acl.deny("127.0.0.3")
    acl.allow_file(["127.0.0.1\n", "127.0.0.2\n"], "f1")
    acl.allow("127.0.0.5")
    acl.deny_file("127.0.0.5", "f2")
    acl.allow("127.0.0.6")
    acl.deny("127.0.0.7")
    assert [acl.permits(f"127.0.0.{n}") for n in range(1, 9)] == [True, True, False, True, False, True, False, False]


def test_the_same_file_allowed_and_denied_refuses_everyone() -> None:  # observed
    acl = AccessList()
    acl.allow_file("127.0.0.1\n127.0.0.2\n", "f1")
    acl.deny_file("127.0.0.1\n127.0.0.2\n", "f1")
    assert not any(acl.permits(f"127.0.0.{n}") for n in (1, 2, 3))


@pytest.mark.parametrize("how", ["argument", "file"])
def test_an_empty_allow_list_still_restricts(how: str) -> None:  # observed: --allow "" and an empty file
    acl = AccessList()
    if how == "argument":
        acl.allow("")
    else:
        acl.allow_file([], "empty")
    assert acl.restricted
    assert not acl.permits("127.0.0.1")
    assert not acl.permits("::1")


def test_an_empty_deny_list_denies_nobody() -> None:  # observed: --deny ""
    acl = AccessList()
    acl.deny("")
    acl.deny_file("", "empty")
    assert acl.permits("127.0.0.1")


def test_an_address_given_twice_is_harmless() -> None:  # ncat 7.93 spins at start-up on this
    acl = AccessList()
    acl.allow("127.0.0.2,127.0.0.2")
    acl.allow("127.0.0.2")
    acl.allow("10.*.*.*,10.*.*.*")
    assert acl.permits("127.0.0.2")
    assert acl.permits("10.1.1.1")
    assert not acl.permits("127.0.0.1")


def test_parsed_specs_can_be_added() -> None:
    acl = AccessList()
    acl.allow(HostSpec.parse("10.0.0.0/8"))
    acl.deny(HostSpec.parse("10.0.0.1"))
    assert acl.permits("10.9.9.9")
    assert not acl.permits("10.0.0.1")
    assert not acl.permits("11.0.0.0")


@pytest.mark.parametrize("address", ["", "localhost", "1.2.3", "::1::", "127.0.0.1:80", "[::1]"])
def test_permits_refuses_what_is_not_an_address(address: str) -> None:
    acl = AccessList()
    acl.deny("10.0.0.1")
    with pytest.raises(AddressError):
        acl.permits(address)


# --- the command line: comma lists (observed) --------------------------------------


@pytest.mark.parametrize(
    ("argument", "allowed"),
    [
        ("127.0.0.1,127.0.0.2", {1, 2}),
        ("127.0.0.1,,127.0.0.2", {1, 2}),
        ("127.0.0.1,", {1}),
        (",127.0.0.2", {2}),
        ("127.0.0.1,3", {1}),  # "3" is the address 0.0.0.3: octet lists do not survive the comma split
        ("127.0.0.1,3,5", {1}),
        ("127.0.0.2-3,127.0.0.5/31", {2, 3, 4, 5}),
    ],
)
def test_a_command_line_argument_is_a_comma_list(argument: str, allowed: set[int]) -> None:
    acl = AccessList()
    acl.allow(argument)
    assert {n for n in range(8) if acl.permits(f"127.0.0.{n}")} == allowed
    assert acl.permits("0.0.0.3") == ("3" in argument.split(","))


@pytest.mark.parametrize(
    ("argument", "shown", "detail"),
    [
        ("300.1.1.1", "300.1.1.1", 'Error resolving name "300.1.1.1": Name or service not known'),
        ("1.2.3.4/33", "1.2.3.4/33", 'Illegal netmask in "1.2.3.4/33". Must be smaller than address bit length.'),
        # ncat splits the argument in place with strtok: it names the text up to the first item's end
        ("127.0.0.1, 127.0.0.2", "127.0.0.1", 'Error resolving name " 127.0.0.2": Name or service not known'),
        ("10.0.0.1,10.0.0.2,x", "10.0.0.1", 'Error resolving name "x": Name or service not known'),
        (",,x,10.0.0.1", ",,x", 'Error resolving name "x": Name or service not known'),
        ("127.0.0.1 127.0.0.2", "127.0.0.1 127.0.0.2", f'Error resolving name "127.0.0.1 127.0.0.2": {NO_NAME}'),
    ],
)
def test_a_bad_argument_has_ncats_two_messages(argument: str, shown: str, detail: str) -> None:
    for add in (AccessList.allow, AccessList.deny):
        with pytest.raises(AddressError) as caught:
            add(AccessList(), argument)
        assert str(caught.value) == f'error in host specification "{shown}"'
        assert str(caught.value.__cause__) == detail


def test_a_bad_argument_adds_nothing() -> None:
    acl = AccessList()
    with pytest.raises(AddressError):
        acl.allow("127.0.0.2,nowhere")
    assert not acl.restricted
    with pytest.raises(AddressError):
        acl.deny("127.0.0.2,nowhere")
    assert acl.permits("127.0.0.2")


# --- files: whitespace-separated, no comments (observed) ---------------------------


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("127.0.0.1\n\n  127.0.0.2  \n", {1, 2}),
        ("127.0.0.1 127.0.0.2\t127.0.0.3\n", {1, 2, 3}),
        ("127.0.0.1\v127.0.0.2\f127.0.0.3", {1, 2, 3}),
        ("127.0.0.2\r\n127.0.0.3\r\n", {2, 3}),
        ("127.0.0.2", {2}),
        ("127.0.0.1,3\n", {1, 3}),  # in a file a comma is an octet list
        ("127.0.0.-1,5-\n", {0, 1, 5, 6, 7}),
        ("", set()),
    ],
)
def test_a_file_holds_whitespace_separated_specs(text: str, allowed: set[int]) -> None:
    for lines in (text, text.splitlines(keepends=True)):
        acl = AccessList()
        acl.allow_file(lines, "hosts")
        assert {n for n in range(8) if acl.permits(f"127.0.0.{n}")} == allowed


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("# comment\n127.0.0.2\n", f'Error resolving name "#": {NO_NAME}'),
        ("127.0.0.2#x\n", f'Error resolving name "127.0.0.2#x": {NO_NAME}'),
        ("127.0.0.1,127.0.0.2\n", f'Error resolving name "127.0.0.1,127.0.0.2": {NO_NAME}'),
        ("127.0.0.2\n300.0.0.1\n", f'Error resolving name "300.0.0.1": {NO_NAME}'),
        ("127.0.0.3\xa0\n", f'Error resolving name "127.0.0.3\xa0": {NO_NAME}'),  # not C whitespace
        ("a" * 1024, 'Host specification starting with "aaaaaaaaaaa" is too long.'),
        ("1" * 1024, 'Host specification starting with "11111111111" is too long.'),
        ("1" * 1023, f'Error resolving name "{"1" * 1023}": {NO_NAME}'),
    ],
)
def test_a_bad_file_has_ncats_two_messages(text: str, detail: str) -> None:
    for add in (AccessList.allow_file, AccessList.deny_file):
        acl = AccessList()
        with pytest.raises(AddressError) as caught:
            add(acl, text, "the/hosts")
        assert str(caught.value) == "error in hosts file the/hosts"
        assert str(caught.value.__cause__) == detail
        assert acl.permits("127.0.0.2")  # nothing was added


def test_a_file_can_be_read_as_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1\n10.*.*.*\n")
    acl = AccessList()
    with path.open() as lines:
        acl.deny_file(lines, str(path))
    assert not acl.permits("10.1.2.3")
    assert acl.permits("127.0.0.2")


# --- equivalence with the operating system's and ipaddress's readings --------------


@given(st.text(alphabet="0123456789abcdefxX.:", max_size=24))
@example("1.2.3")
@example("0x7f.0.0.1")
@example("017.0.0.1")
@example("0xffffffff")
@example("1.0xff.3")
@example("0xff.0xffffff")
@example("1:2:3:4:5:6:7::")
@example("::1.2.3.4")
@example("1::2:3:4:5:6:7")
@example("0x0000000000000000000001")
def test_numeric_addresses_read_as_glibcs_getaddrinfo_does(text: str) -> None:
    expected = getaddrinfo_numeric(text)
    try:
        spec = HostSpec.parse(text)
    except AddressError:
        assert expected is None
        return
    if spec.octets is not None:  # not numeric, but an octet pattern (e.g. 1.2.3.08)
        assert expected is None
    else:
        assert expected is not None
        assert [network.network_address for network in spec.networks] == [ipaddress.ip_address(e) for e in expected]


@given(st.integers(0, 32), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_ipv4_cidr_is_ipaddress_network_membership(bits: int, base: int, probe: int) -> None:
    network = ipaddress.IPv4Network((base, bits), strict=False)
    spec = HostSpec.parse(f"{ipaddress.IPv4Address(base)}/{bits}")
    for address in (ipaddress.IPv4Address(probe), network.network_address, network.broadcast_address):
        assert spec.matches(str(address)) == (address in network)


@given(st.integers(0, 128), st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_ipv6_cidr_is_ipaddress_network_membership(bits: int, base: int, probe: int) -> None:
    network = ipaddress.IPv6Network((base, bits), strict=False)
    spec = HostSpec.parse(f"{ipaddress.IPv6Address(base)}/{bits}")
    for address in (ipaddress.IPv6Address(probe), network.network_address, network.broadcast_address):
        assert spec.matches(str(address)) == (address in network)


octet_items = st.one_of(
    st.integers(0, 255).map(str),
    st.tuples(st.integers(0, 255), st.integers(0, 255)).map(lambda t: f"{min(t)}-{max(t)}"),
    st.integers(0, 255).map(lambda n: f"-{n}"),
    st.integers(0, 255).map(lambda n: f"{n}-"),
    st.just("-"),
)
octet_patterns = st.one_of(st.just("*"), st.lists(octet_items, min_size=1, max_size=3).map(",".join))


def octet_values(pattern: str) -> set[int]:
    """The naive reading of one octet pattern, to check the parser against."""
    if pattern == "*":
        return set(range(256))
    values: set[int] = set()
    for item in pattern.split(","):
        low, _, high = item.partition("-") if "-" in item else (item, "", item)
        values.update(range(int(low or 0), int(high or 255) + 1))
    return values


@given(
    st.lists(octet_patterns, min_size=4, max_size=4),
    st.none() | st.integers(0, 32),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
)
def test_octet_patterns_match_as_the_naive_reading_says(
    patterns: list[str], bits: int | None, probes: list[int]
) -> None:
    text = ".".join(patterns) + ("" if bits is None else f"/{bits}")
    spec = HostSpec.parse(text)
    allowed = [octet_values(p) for p in patterns]
    mask = 0xFFFFFFFF if bits is None else (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    for probe in probes:
        octets = probe.to_bytes(4, "big")
        # the pattern's address set widened by the netmask: some address of the pattern
        # agrees with the probe on the masked bits (per octet, since the set is a product)
        expected = all(
            any(value & m == octet & m for value in values)
            for values, octet, m in zip(allowed, octets, mask.to_bytes(4, "big"), strict=True)
        )
        assert spec.matches(str(ipaddress.IPv4Address(probe))) == expected, (text, probe)
        assert spec.matches(f"::ffff:{ipaddress.IPv4Address(probe)}") == expected


# --- fuzzing: AddressError or a value, never anything else -------------------------


def chaos_resolver(name: str) -> list[str]:
    """A resolver for arbitrary names: fails, finds nothing, or finds addresses."""
    match len(name) % 4:
        case 0:
            raise socket.gaierror(socket.EAI_NONAME, NO_NAME)
        case 1:
            return []
        case 2:
            return ["127.0.0.1", "::1"]
        case _:
            return [name]


spec_text = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.,-*/:%abcdefx \t\n#"),
    st.lists(octet_patterns, min_size=1, max_size=5).map(".".join),
)


@given(spec_text, st.sampled_from([None, chaos_resolver]))
def test_parse_returns_a_spec_or_raises_address_error(text: str, resolve: Callable[[str], list[str]] | None) -> None:
    try:
        spec = HostSpec.parse(text, resolve)
    except AddressError as exc:
        assert str(exc)
        return
    assert isinstance(spec, HostSpec)
    assert spec.text == text
    assert bool(spec.networks) != (spec.octets is not None)


@given(st.lists(spec_text, max_size=4), st.lists(st.ip_addresses().map(str), min_size=1, max_size=8))
def test_permits_never_raises_for_an_ip_address(specs: list[str], peers: list[str]) -> None:
    acl = AccessList(resolve=chaos_resolver)
    for index, text in enumerate(specs):
        try:
            (acl.allow if index % 2 else acl.deny)(text)
        except AddressError as exc:
            assert isinstance(exc.__cause__, AddressError)
        try:
            (acl.allow_file if index % 2 else acl.deny_file)(text, "f")
        except AddressError as exc:
            assert isinstance(exc.__cause__, AddressError)
    for peer in peers:
        assert acl.permits(peer) in (True, False)
        mapped = ipaddress.ip_address(peer)
        if mapped.version == 4:  # an IPv4 peer and its IPv4-mapped IPv6 form are one host
            assert acl.permits(f"::ffff:{peer}") == acl.permits(peer)


# --- purity ------------------------------------------------------------------------


def test_acl_does_no_io_and_loads_no_regular_expressions() -> None:
    tree = ast.parse(Path(enchufe.acl.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {"__future__", "ipaddress", "enchufe.errors", "collections.abc"}
