"""Addresses as values: parse_address, InetAddress, UnixAddress, parse_port, format_host_port."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.address import (
    InetAddress,
    UnixAddress,
    format_host_port,
    parse_address,
    parse_port,
)
from enchufe.errors import AddressError, EnchufeError

# --- parse_address: Internet addresses ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org:80", InetAddress("example.org", 80)),
        ("127.0.0.1:8080", InetAddress("127.0.0.1", 8080)),
        ("localhost:0", InetAddress("localhost", 0)),
        ("localhost:65535", InetAddress("localhost", 65535)),
        ("[::1]:80", InetAddress("::1", 80)),
        ("[::]:31337", InetAddress("::", 31337)),
        ("[fe80::1%eth0]:80", InetAddress("fe80::1%eth0", 80)),
        ("[::ffff:127.0.0.1]:22", InetAddress("::ffff:127.0.0.1", 22)),
    ],
)
def test_parse_inet_address(text: str, expected: InetAddress) -> None:
    address = parse_address(text)
    assert address == expected
    assert type(address) is InetAddress
    assert str(address) == text


def test_zone_is_kept_in_the_host() -> None:
    address = parse_address("[fe80::1%eth0]:80")
    assert isinstance(address, InetAddress)
    assert address.host == "fe80::1%eth0"
    assert address.port == 80


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::1", InetAddress("::1", 4000)),
        ("fe80::1%eth0", InetAddress("fe80::1%eth0", 4000)),
        ("[::1]", InetAddress("::1", 4000)),
        ("localhost", InetAddress("localhost", 4000)),
        ("127.0.0.1", InetAddress("127.0.0.1", 4000)),
    ],
)
def test_default_port_fills_a_missing_port(text: str, expected: InetAddress) -> None:
    assert parse_address(text, default_port=4000) == expected


def test_explicit_port_wins_over_default_port() -> None:
    assert parse_address("[::1]:5", default_port=4000) == InetAddress("::1", 5)
    assert parse_address("localhost:5", default_port=4000) == InetAddress("localhost", 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "Missing port in address 'localhost'"),
        ("::1", "Missing port in address '::1'"),
        ("[::1]", "Missing port in address '[::1]'"),
        ("host:", 'Invalid port number ""'),
        ("host:http", 'Invalid port number "http"'),
        ("host:70000", 'Invalid port number "70000"'),
        ("[::1]:1-100", 'Invalid port number "1-100"'),
        (":80", "Invalid host ''"),
        ("[::1", "Invalid IPv6 address '[::1'"),
        ("[1.2.3.4]:80", "Invalid IPv6 address '[1.2.3.4]:80'"),
        ("[::1]80", "Invalid address '[::1]80'"),
        ("unix:", "Invalid unix socket path ''"),
    ],
)
def test_parse_address_errors(text: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert str(info.value) == message


def test_address_error_is_a_value_error_and_an_enchufe_error() -> None:
    with pytest.raises(ValueError):
        parse_address("localhost")
    assert issubclass(AddressError, ValueError)
    assert issubclass(AddressError, EnchufeError)


# --- parse_address: Unix addresses -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "shown"),
    [
        ("unix:rel.sock", "rel.sock", "unix:rel.sock"),
        ("unix:a:b", "a:b", "unix:a:b"),
        ("unix:/abs.sock", "/abs.sock", "/abs.sock"),
        ("/run/app.sock", "/run/app.sock", "/run/app.sock"),
        ("./rel.sock", "./rel.sock", "./rel.sock"),
        ("@abstract", "@abstract", "@abstract"),
    ],
)
def test_parse_unix_address(text: str, path: str, shown: str) -> None:
    address = parse_address(text)
    assert address == UnixAddress(path)
    assert str(address) == shown


def test_filesystem_path_sockaddr_is_the_path() -> None:
    address = UnixAddress("/run/app.sock")
    assert not address.is_abstract
    assert address.sockaddr() == "/run/app.sock"


def test_abstract_name_sockaddr_starts_with_nul() -> None:
    address = parse_address("@name")
    assert isinstance(address, UnixAddress)
    assert address.is_abstract
    assert address.sockaddr() == b"\0name"


def test_abstract_name_is_encoded_as_utf8() -> None:
    assert UnixAddress("@ñ").sockaddr() == b"\0\xc3\xb1"


def test_abstract_name_keeps_bytes_that_are_not_utf8() -> None:
    # argv as Python decodes it: surrogateescape
    assert UnixAddress("@a\udcff").sockaddr() == b"\0a\xff"


@pytest.mark.parametrize("path", ["", "/a\0b", "@\0"])
def test_invalid_unix_paths(path: str) -> None:
    with pytest.raises(AddressError) as info:
        UnixAddress(path)
    assert str(info.value) == f"Invalid unix socket path {path!r}"


# --- InetAddress validation --------------------------------------------------------


@pytest.mark.parametrize("host", ["", "a b", "a/b", "[::1]", "@x", "a\tb", "a\nb"])
def test_invalid_hosts(host: str) -> None:
    with pytest.raises(AddressError) as info:
        InetAddress(host, 80)
    assert str(info.value) == f"Invalid host {host!r}"


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_inet_address_port_out_of_range(port: int) -> None:
    with pytest.raises(AddressError) as info:
        InetAddress("localhost", port)
    assert str(info.value) == f'Invalid port number "{port}"'


def test_addresses_are_immutable_and_hashable() -> None:
    address = InetAddress("localhost", 80)
    with pytest.raises(AttributeError):
        address.port = 81  # type: ignore[misc]
    assert {address, InetAddress("localhost", 80), UnixAddress("/x"), UnixAddress("/x")} == {
        address,
        UnixAddress("/x"),
    }


# --- format_host_port --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("localhost", 80, "localhost:80"),
        ("127.0.0.1", 0, "127.0.0.1:0"),
        ("::1", 31337, "[::1]:31337"),
        ("fe80::1%eth0", 80, "[fe80::1%eth0]:80"),
    ],
)
def test_format_host_port(host: str, port: int, text: str) -> None:
    assert format_host_port(host, port) == text


# --- parse_port --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "port"), [("0", 0), ("80", 80), ("65535", 65535), ("00080", 80)])
def test_parse_port(text: str, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize(
    "text", ["70000", "65536", "1-100", "-1", "+5", " 80", "80 ", "٣", "", "http", "000080", "0x50", "8_0"]
)
def test_parse_port_rejects(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_port(text)
    assert str(info.value) == f'Invalid port number "{text}"'
    assert isinstance(info.value, ValueError)


@given(st.integers(min_value=0, max_value=65535))
def test_parse_port_round_trip(port: int) -> None:
    assert parse_port(str(port)) == port


@given(st.integers().filter(lambda n: not 0 <= n <= 65535))
def test_parse_port_rejects_every_out_of_range_integer(number: int) -> None:
    with pytest.raises(AddressError):
        parse_port(str(number))


# --- round trips: parse_address(str(a)) == a ---------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
# A DNS label: letters, digits and inner hyphens.
_LABEL = st.builds(
    lambda first, middle, last: first + middle + last if middle or last else first,
    st.sampled_from(_ALNUM),
    st.text(_ALNUM + "-", max_size=20),
    st.sampled_from(_ALNUM) | st.just(""),
).filter(lambda label: not label.endswith("-"))
# "unix" alone is excluded here: its round trip is broken, see test_host_named_unix_round_trips.
_HOSTNAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join).filter(lambda name: name != "unix")
_IPV4 = st.ip_addresses(v=4).map(str)
_ZONE = st.text(_ALNUM, min_size=1, max_size=8)
_IPV6 = st.builds(
    lambda address, zone: f"{address}%{zone}" if zone else str(address),
    st.ip_addresses(v=6),
    st.none() | _ZONE,
)
_PORT = st.integers(min_value=0, max_value=65535)
_INET = st.builds(InetAddress, _HOSTNAME | _IPV4 | _IPV6, _PORT)

_PATH_TEXT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
_UNIX = st.builds(
    UnixAddress,
    st.one_of(
        _PATH_TEXT.map(lambda rest: "/" + rest),
        _PATH_TEXT.map(lambda rest: "@" + rest),
        _PATH_TEXT.filter(lambda p: p and not p.startswith(("/", "@", "."))),
    ),
)


@given(_INET)
def test_inet_address_round_trip(address: InetAddress) -> None:
    text = str(address)
    assert parse_address(text) == address
    if ":" in address.host:
        assert text.startswith("[")


@given(_UNIX)
def test_unix_address_round_trip(address: UnixAddress) -> None:
    assert parse_address(str(address)) == address


@given(st.ip_addresses(v=6))
def test_bare_ipv6_literal_with_default_port(address: ipaddress.IPv6Address) -> None:
    assert parse_address(str(address), default_port=7) == InetAddress(str(address), 7)


def test_host_named_unix_round_trips() -> None:
    address = InetAddress("unix", 80)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("path", [".hidden.sock", "../up.sock"])
def test_dot_relative_unix_path_round_trips(path: str) -> None:
    address = UnixAddress(path)
    assert parse_address(str(address)) == address
