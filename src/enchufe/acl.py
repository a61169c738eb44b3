"""Access control: ncat's ``--allow``/``--deny`` host specifications, and the list they build.

Rules, as ncat 7.93 applies them (its ``addrset.c``, checked against the real command):

1. **Deny wins.** A peer that matches the deny list is refused, even if the allow list
   names it too (ncat's manual says the opposite; its code and its behaviour do not).
2. **Allowing restricts.** Without any allow specification every peer not denied is
   permitted. Once there is one (an ``--allow`` or ``--allowfile``, even an empty one),
   only the peers it matches are.
3. **Lists accumulate**: every ``allow``/``deny`` call adds to what is there.
4. **One address space.** IPv4 addresses are matched as IPv4-mapped IPv6 addresses
   (``::ffff:a.b.c.d``), so an IPv4 spec matches an IPv4-mapped IPv6 peer, and an IPv6
   network that covers ``::ffff:0:0/96`` (``::/0``, ``::ffff:0:0/96``) matches IPv4
   peers. Octet patterns match IPv4 peers and IPv4-mapped IPv6 ones.
5. **Names are resolved once**, when the specification is read, to every address the
   injected resolver returns; nothing is looked up when a peer connects.

One specification, ``HOST`` or ``HOST/BITS``, is read in ncat's order::

    BITS      one or more ASCII digits; above 32 (IPv4) or 128 (IPv6) is an error
    HOST      1. a numeric address as getaddrinfo(AI_NUMERICHOST) reads it:
                 IPv4 in inet_aton's forms (127.0.0.1, 127.1, 0x7f.1, 017.0.0.1,
                 2130706433), IPv6 with an optional %zone (::1, fe80::1%eth0,
                 ::ffff:127.0.0.1); with /BITS, the network that contains it
                 (192.168.1.5/24 is 192.168.1.0/24)
              2. four octet patterns separated by dots, each ``*`` or a comma list
                 of decimal N, N-M, -M (0-M), N- (N-255) or - (0-255):
                 192.168.0-10.*, 10.*.*.1, 1-5.0.0.1, 192.168.1,3.1;
                 /BITS widens every octet to the network of each of its values
              3. a host name, handed to the resolver; /BITS applies to each address

On ncat's command line an argument is a comma-separated list of specifications, empty
items skipped (so ``192.168.1,3.1`` there means ``192.168.1`` and ``3.1``: octet lists
work in files only). A file holds specifications separated by whitespace (spaces,
tabs, line breaks, ``\\v``, ``\\f``), each at most 1023 characters (ncat counts bytes);
it has no comments (``#`` is read as a name).

Errors are :class:`~enchufe.errors.AddressError` with ncat's words.
:meth:`HostSpec.parse` raises the detail (``Illegal netmask in "1.2.3.4/33". Must be
smaller than address bit length.``); :class:`AccessList` raises ncat's closing line
(``error in host specification "300.1.1.1"``, ``error in hosts file FILE``), chained
``from`` the detail, so that a command prints ``str(exc.__cause__)``, then
``f"{exc}. QUITTING."``, as ncat does.

Deliberate differences, from ncat 7.93's bugs and from purity: an IPv6 ``/0`` is
everything here, where ncat treats it as ``/1`` (its ``ffff::/0`` does not match ``::1``);
an address given twice in the allow list is harmless, where ncat spins at start-up; a
zone name on a link-local address is accepted without asking the system whether the
interface exists (that would be I/O).

This module does no I/O: it imports neither ``socket`` nor ``re``.
"""

from __future__ import annotations

import ipaddress

from enchufe.errors import AddressError

TYPE_CHECKING = False  # not typing's: importing typing would slow the command's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    #: Returns the addresses (IP literals, a ``%zone`` allowed) of a name, or raises
    #: ``OSError`` (``socket.gaierror`` is one) whose ``strerror`` says why.
    Resolve = Callable[[str], Iterable[str]]
    Octets = tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int]]
    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
    IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["AccessList", "HostSpec"]

# glibc's texts for getaddrinfo's EAI_NONAME and EAI_NODATA: what ncat prints for a name
# it may not resolve (-n) and for one without addresses.
_NO_NAME = "Name or service not known"
_NO_ADDRESS = "No address associated with hostname"

_MAX_TOKEN = 1023  # ncat reads a file's specifications into a 1024-byte buffer
_C_SPACE = str.maketrans("\t\n\v\f\r", "     ")  # C's isspace(); Python's split() knows more
_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_ANY_OCTET = frozenset(range(256))
_LONG_MAX = 2**63 - 1  # ncat reads BITS with strtol: a longer number does not parse
_UINT32_MAX = 2**32 - 1
_IFNAMSIZ = 16  # Linux's interface names are shorter, and have no colon or whitespace
_NOT_IN_INTERFACE_NAMES = frozenset(": \t\n\v\f\r")
_V4_MAPPED = 0xFFFF << 32
#: _MASKS[n]: the 128-bit netmask of prefix length n.
_MASKS = [((1 << n) - 1) << (128 - n) for n in range(129)]


class HostSpec(tuple[str, "tuple[IPNetwork, ...]", "Octets | None"]):
    """One parsed host specification: the networks it stands for, or an octet pattern.

    Attributes:
        text: the specification as written.
        networks: the networks it covers (a single address is a /32 or /128 network);
            a name gives one per address. Empty for an octet pattern.
        octets: for an octet pattern, the values each of the four octets may take;
            otherwise None.
    """

    __slots__ = ()

    def __new__(cls, text: str, networks: tuple[IPNetwork, ...], octets: Octets | None) -> HostSpec:
        return tuple.__new__(cls, (text, networks, octets))

    def __getnewargs__(self) -> tuple[str, tuple[IPNetwork, ...], Octets | None]:
        return (self[0], self[1], self[2])

    @property
    def text(self) -> str:
        return self[0]

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return self[1]

    @property
    def octets(self) -> Octets | None:
        return self[2]

    def __repr__(self) -> str:
        return f"HostSpec(text={self[0]!r}, networks={self[1]!r}, octets={self[2]!r})"

    @classmethod
    def parse(cls, text: str, resolve: Resolve | None = None) -> HostSpec:
        """Read one specification (no commas between specifications: see :class:`AccessList`).

        Args:
            text: ``HOST`` or ``HOST/BITS``, in the syntax of the module docstring.
            resolve: turns a host name into its addresses. Without it a name is an
                error, as with ncat's ``-n``.

        Raises:
            AddressError: with ncat's message, e.g. ``Error parsing netmask in
                "10.0.0.0/x".`` or ``Error resolving name "x": Name or service not known``.
        """
        host, slash, bits_text = text.partition("/")
        bits = _parse_bits(bits_text) if slash else None
        if bits == -1:
            raise AddressError(f'Error parsing netmask in "{text}".')
        address = _parse_numeric(host)
        if address is not None:
            if bits is not None and bits > address.max_prefixlen:
                raise AddressError(f'Illegal netmask in "{text}". Must be smaller than address bit length.')
            return cls(text, (_network(address, bits),), None)
        octets = _parse_octets(host)
        if octets is not None:
            if bits is None:
                return cls(text, (), octets)
            if bits > 32:
                raise AddressError(f'Illegal netmask in "{text}". Must be between 0 and 32.')
            return cls(text, (), _widen(octets, bits))
        networks = []
        for address in _resolve(host, resolve):
            if bits is not None and bits > address.max_prefixlen:
                raise AddressError(f'Illegal netmask in "{text}". Must be between 0 and {address.max_prefixlen}.')
            networks.append(_network(address, bits))
        return cls(text, tuple(networks), None)

    def matches(self, address: str) -> bool:
        """Whether the peer ``address`` (an IPv4 or IPv6 literal) is one this spec covers.

        Raises:
            AddressError: ``address`` is not an IP address.
        """
        matcher = _Matcher()
        matcher.add(self)
        return matcher.matches(*_peer(address))


class AccessList:
    """ncat's allow and deny lists, and the check made on every accepted peer.

    ``permits`` costs a dictionary look-up per distinct prefix length in a list, plus one
    test per octet pattern.

    Args:
        resolve: turns host names into addresses, once, when they are added (see
            :meth:`HostSpec.parse`). Without it names are errors (ncat's ``-n``).
    """

    def __init__(self, *, resolve: Resolve | None = None) -> None:
        self._resolve = resolve
        self._allowed = _Matcher()
        self._denied = _Matcher()
        self._restricted = False  # an allow list was given: only its hosts may connect

    @property
    def restricted(self) -> bool:
        """Whether an allow list was given, so that peers it does not match are refused."""
        return self._restricted

    def allow(self, specs: str | HostSpec) -> None:
        """Add to the allow list, as ``--allow`` does: only the hosts allowed may connect.

        Args:
            specs: a comma-separated list of specifications, or a parsed one. An empty
                list still restricts: no host is allowed then.

        Raises:
            AddressError: ``error in host specification "..."`` naming what ncat names,
                the argument up to the end of its first item; ``__cause__`` is the detail.
        """
        self._allowed.extend(self._parse_argument(specs))
        self._restricted = True

    def deny(self, specs: str | HostSpec) -> None:
        """Add to the deny list, as ``--deny`` does. See :meth:`allow`."""
        self._denied.extend(self._parse_argument(specs))

    def allow_file(self, lines: Iterable[str] | str, name: str) -> None:
        """Add the specifications of a file to the allow list, as ``--allowfile`` does.

        Args:
            lines: the file's text, whole or as lines (an open text file will do).
            name: the file's name as the user gave it, for the message.

        Raises:
            AddressError: ``error in hosts file NAME``; ``__cause__`` is the detail.
        """
        self._allowed.extend(self._parse_file(lines, name))
        self._restricted = True

    def deny_file(self, lines: Iterable[str] | str, name: str) -> None:
        """Add the specifications of a file to the deny list, as ``--denyfile`` does.

        See :meth:`allow_file`.
        """
        self._denied.extend(self._parse_file(lines, name))

    def permits(self, address: str) -> bool:
        """Whether the peer ``address`` may connect: not denied, and allowed if there is
        an allow list.

        Args:
            address: an IPv4 or IPv6 literal, as the peer's socket address gives it.

        Raises:
            AddressError: ``address`` is not an IP address.
        """
        if not self._restricted and not self._denied:
            return True
        key, ipv4 = _peer(address)
        if self._denied.matches(key, ipv4):
            return False
        return not self._restricted or self._allowed.matches(key, ipv4)

    def _parse_argument(self, specs: str | HostSpec) -> list[HostSpec]:
        if isinstance(specs, HostSpec):
            return [specs]
        try:
            # Parse them all before adding any, so a failure leaves the list as it was.
            return [HostSpec.parse(item, self._resolve) for item in specs.split(",") if item]
        except AddressError as exc:
            raise AddressError(f'error in host specification "{_as_ncat_names(specs)}"') from exc

    def _parse_file(self, lines: Iterable[str] | str, name: str) -> list[HostSpec]:
        if isinstance(lines, str):
            lines = (lines,)
        parsed = []
        try:
            for line in lines:
                for token in line.translate(_C_SPACE).split(" "):
                    if len(token) > _MAX_TOKEN:
                        raise AddressError(f'Host specification starting with "{token[:11]}" is too long.')
                    if token:
                        parsed.append(HostSpec.parse(token, self._resolve))
        except AddressError as exc:
            raise AddressError(f"error in hosts file {name}") from exc
        return parsed


class _Matcher:
    """Specifications precomputed for matching: networks by prefix length, then octet patterns."""

    __slots__ = ("_by_prefix", "_patterns")

    def __init__(self) -> None:
        #: prefix length (in the 128-bit space) → the networks' masked values
        self._by_prefix: dict[int, set[int]] = {}
        self._patterns: list[Octets] = []

    def __bool__(self) -> bool:
        return bool(self._by_prefix or self._patterns)

    def add(self, spec: HostSpec) -> None:
        for network in spec.networks:
            value = int(network.network_address)
            prefix = network.prefixlen
            if network.version == 4:
                value |= _V4_MAPPED
                prefix += 96
            self._by_prefix.setdefault(prefix, set()).add(value)
        if spec.octets is not None and spec.octets not in self._patterns:
            self._patterns.append(spec.octets)

    def extend(self, specs: list[HostSpec]) -> None:
        for spec in specs:
            self.add(spec)

    def matches(self, key: int, ipv4: int | None) -> bool:
        for prefix, values in self._by_prefix.items():
            if key & _MASKS[prefix] in values:
                return True
        if ipv4 is not None:
            first, second, third, fourth = ipv4 >> 24, ipv4 >> 16 & 255, ipv4 >> 8 & 255, ipv4 & 255
            for a, b, c, d in self._patterns:
                if first in a and second in b and third in c and fourth in d:
                    return True
        return False


def _peer(address: str) -> tuple[int, int | None]:
    """A peer's address as its 128-bit key (IPv4 mapped) and, if it is IPv4, its 32 bits."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AddressError(f"Not an IP address: {address!r}") from None
    if ip.version == 4:
        return _V4_MAPPED | int(ip), int(ip)
    mapped = ip.ipv4_mapped
    return int(ip), None if mapped is None else int(mapped)


def _as_ncat_names(argument: str) -> str:
    """The part of a comma list that ncat's message shows: it splits the argument in
    place with ``strtok``, so only the text up to the end of the first item is left."""
    start = len(argument) - len(argument.lstrip(","))
    end = argument.find(",", start)
    return argument if end < 0 else argument[:end]


def _parse_bits(text: str) -> int:
    """A netmask's bit count, or -1 where ncat's ``parse_long`` fails (no leading digit,
    trailing text, overflow)."""
    if not text or not _DIGITS.issuperset(text):
        return -1
    bits = int(text)
    return bits if bits <= _LONG_MAX else -1


def _parse_numeric(host: str) -> IPAddress | None:
    """``host`` as getaddrinfo with AI_NUMERICHOST reads it in glibc, or None."""
    ipv4 = _inet_aton(host)
    if ipv4 is not None:
        return ipaddress.IPv4Address(ipv4)
    if ":" not in host:
        return None
    literal, percent, zone = host.partition("%")
    try:
        ipv6 = ipaddress.IPv6Address(literal)
    except ValueError:
        return None
    if percent and not _valid_zone(ipv6, zone):
        return None
    return ipv6


def _inet_aton(text: str) -> int | None:
    """glibc's ``inet_aton`` with nothing after the address (its ``__inet_aton_exact``):
    one to four parts, each a C integer (decimal, 0 octal, 0x hex), the last one filling
    the remaining bytes."""
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values = []
    for part in parts:
        value = _c_integer(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(value > 255 for value in leading) or last >> (8 * (4 - len(leading))):
        return None
    result = 0
    for value in leading:
        result = result << 8 | value
    return result << (8 * (4 - len(leading))) | last


def _c_integer(text: str) -> int | None:
    if text[:2] in ("0x", "0X"):
        digits = text[2:]
        return int(digits, 16) if digits and _HEX.issuperset(digits) else None
    if text[:1] == "0":
        return int(text, 8) if _OCTAL.issuperset(text) else None
    return int(text) if text and _DIGITS.issuperset(text) else None


def _valid_zone(address: ipaddress.IPv6Address, zone: str) -> bool:
    """glibc's rule for a ``%zone``: an interface name on a link-local unicast or a
    node- or link-local multicast address, otherwise a 32-bit number.

    glibc also asks the kernel whether the interface exists; here any name Linux could
    give an interface (1 to 15 characters, no colon or whitespace) will do.
    """
    scoped = address.is_link_local or (address.is_multicast and address.packed[1] & 0x0F in (1, 2))
    if scoped and 0 < len(zone) < _IFNAMSIZ and not _NOT_IN_INTERFACE_NAMES.intersection(zone):
        return True
    return bool(zone) and _DIGITS.issuperset(zone) and int(zone) <= _UINT32_MAX


def _parse_octets(host: str) -> Octets | None:
    """Nmap's octet-range syntax (``192.168.0-10.*``), or None if ``host`` is not in it."""
    parts = host.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if part == "*":
            octets.append(_ANY_OCTET)
            continue
        values: set[int] = set()
        for item in part.split(","):
            low_text, dash, high_text = item.partition("-")
            if dash:
                low = _octet(low_text) if low_text else 0
                high = _octet(high_text) if high_text else 255
            else:
                low = high = _octet(item)
            if low is None or high is None or low > high:
                return None
            values.update(range(low, high + 1))
        octets.append(frozenset(values))
    return (octets[0], octets[1], octets[2], octets[3])


def _octet(text: str) -> int | None:
    if not text or not _DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if value <= 255 else None


def _widen(octets: Octets, bits: int) -> Octets:
    """Apply a netmask to an octet pattern: each octet takes every value that shares the
    masked bits of one of its values (``10.0.0.1-3/24`` is ``10.0.0.*``)."""
    widened = []
    for index, values in enumerate(octets):
        kept = min(max(bits - 8 * index, 0), 8)
        mask = 0xFF << (8 - kept) & 0xFF
        heads = {value & mask for value in values}
        widened.append(frozenset(value for value in range(256) if value & mask in heads))
    return (widened[0], widened[1], widened[2], widened[3])


def _resolve(name: str, resolve: Resolve | None) -> list[IPAddress]:
    if resolve is None:
        raise AddressError(f'Error resolving name "{name}": {_NO_NAME}')
    try:
        found = list(resolve(name))
    except OSError as exc:
        raise AddressError(f'Error resolving name "{name}": {exc.strerror or exc}') from exc
    if not found:
        raise AddressError(f'Error resolving name "{name}": {_NO_ADDRESS}')
    addresses = []
    for text in found:
        try:
            addresses.append(ipaddress.ip_address(text.partition("%")[0]))
        except ValueError:
            raise AddressError(f'Error resolving name "{name}": not an address: {text!r}') from None
    return addresses


def _network(address: IPAddress, bits: int | None) -> IPNetwork:
    """The network of ``bits`` (all of them if None) that contains ``address``."""
    prefix = address.max_prefixlen if bits is None else bits
    if address.version == 4:
        return ipaddress.IPv4Network((int(address), prefix), strict=False)
    return ipaddress.IPv6Network((int(address), prefix), strict=False)
