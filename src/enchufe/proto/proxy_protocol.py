"""HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), both sides, sans-IO.

A load balancer that relays a client's connection starts it with a header telling the
backend who the client really is (haproxy's ``proxy-protocol.txt``). This module reads
and writes that header and nothing else:

- :class:`ProxyHeaderDecoder` is fed the connection's first bytes, in pieces of any
  size, and answers :data:`NEED_DATA` until the header is complete, then the
  :class:`ProxyHeader`; the bytes fed past the header are its :attr:`leftover`. The
  version is told from the first bytes (``PROXY`` or v2's 12-byte signature).
  :attr:`ProxyHeaderDecoder.most_needed` is the most bytes the header can still take,
  so that a reader that peeks that many and consumes only the header's part never
  takes a byte of what follows.
- :func:`encode_header` writes a header, either version; decoding what it writes gives
  the same header back.

Invariants:

- Every input ends in a header, :data:`NEED_DATA`, or :class:`~enchufe.errors.ProtocolError`,
  nothing else; a wrong byte is refused as soon as it is seen (the spec asks to abort
  early), not when the header would have ended.
- Bounded: a v1 line is at most :data:`V1_MAX_LENGTH` (107) bytes with its CRLF, a v2
  header at most 16 + 65535; nothing more is ever buffered.
- The spec's rules are enforced, not guessed around: v1 takes single spaces, a CRLF
  (never a lone CR or LF), canonical IPv4 (no leading zeros) and IPv6 (hex groups
  only, no zone, no embedded dotted quad), ports without leading zeros; v2 takes
  version 2 only, commands LOCAL and PROXY, the families and transports the spec lists,
  a length that covers the address block (but for LOCAL, whose family is ignored),
  whole TLVs, a UNIQUE_ID of 128 bytes at
  most, and a CRC32C (when present) that matches.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.errors import ProtocolError

__all__ = [
    "NEED_DATA",
    "PP2_TYPE_ALPN",
    "PP2_TYPE_AUTHORITY",
    "PP2_TYPE_CRC32C",
    "PP2_TYPE_NETNS",
    "PP2_TYPE_NOOP",
    "PP2_TYPE_SSL",
    "PP2_TYPE_UNIQUE_ID",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "NeedData",
    "ProxyHeader",
    "ProxyHeaderDecoder",
    "SslInfo",
    "crc32c",
    "encode_header",
]

#: The longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses).
V1_MAX_LENGTH = 107
#: The first 12 bytes of every v2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX = b"PROXY "
_V2_FIXED = struct.Struct("!12sBBH")  # signature, version and command, family and transport, length
_V2_FIXED_SIZE = _V2_FIXED.size

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30
#: The longest UNIQUE_ID value the spec allows.
UNIQUE_ID_MAX_LENGTH = 128

_COMMANDS = {0: "local", 1: "proxy"}
_TRANSPORTS = {0: "unspec", 1: "stream", 2: "datagram"}
_FAMILY_INET, _FAMILY_INET6, _FAMILY_UNIX = 1, 2, 3
#: Bytes of the address block of each family (0: AF_UNSPEC has none).
_ADDRESS_BLOCK = {0: 0, _FAMILY_INET: 12, _FAMILY_INET6: 36, _FAMILY_UNIX: 216}
_UNIX_PATH_SIZE = 108
_TLV_HEAD = struct.Struct("!BH")
_SSL_HEAD = struct.Struct("!BI")
_PORTS = struct.Struct("!HH")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class NeedData:
    """The decoder's answer while the header is not complete: feed it more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: The one :class:`NeedData`.
NEED_DATA = NeedData()


@dataclass(frozen=True)
class SslInfo:
    """A v2 ``PP2_TYPE_SSL`` TLV: how the client reached the balancer.

    Attributes:
        client: the ``PP2_CLIENT_*`` bits (1: over TLS, 2: a certificate on this
            connection, 4: one in its session).
        verify: zero if the client's certificate was presented and verified.
        tlvs: the sub-TLVs (``PP2_SUBTYPE_SSL_VERSION`` 0x21, ``_CN`` 0x22, ...).
    """

    client: int
    verify: int
    tlvs: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class ProxyHeader:
    """A decoded PROXY protocol header.

    Attributes:
        version: 1 or 2.
        command: ``"proxy"`` (the addresses are a relayed client's) or ``"local"``
            (the balancer's own connection, a health check: use the socket's peer).
        transport: ``"stream"``, ``"datagram"`` or ``"unspec"`` (v1's UNKNOWN, v2's
            UNSPEC: no addresses).
        source: the client's address, or ``None`` when the header gives none (LOCAL,
            UNKNOWN, UNSPEC, an unnamed Unix socket).
        destination: the address the client connected to, or ``None`` likewise.
        tlvs: v2's ``(type, value)`` pairs in their order on the wire, CRC32C and NOOP
            included.
    """

    version: int
    command: str
    transport: str
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or ``None``."""
        return next((value for tlv_type, value in self.tlvs if tlv_type == kind), None)

    @property
    def alpn(self) -> bytes | None:
        """``PP2_TYPE_ALPN``: the protocol the client negotiated, such as ``b"h2"``."""
        return self.tlv(PP2_TYPE_ALPN)

    @property
    def authority(self) -> str | None:
        """``PP2_TYPE_AUTHORITY``: the host name the client asked for (TLS's SNI)."""
        value = self.tlv(PP2_TYPE_AUTHORITY)
        return None if value is None else value.decode()

    @property
    def unique_id(self) -> bytes | None:
        """``PP2_TYPE_UNIQUE_ID``: the balancer's identifier of the connection."""
        return self.tlv(PP2_TYPE_UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        """``PP2_TYPE_NETNS``: the name of the network namespace the client came from."""
        value = self.tlv(PP2_TYPE_NETNS)
        return None if value is None else value.decode("ascii")

    @property
    def ssl(self) -> SslInfo | None:
        """``PP2_TYPE_SSL``: how the client reached the balancer, or ``None``."""
        value = self.tlv(PP2_TYPE_SSL)
        if value is None:
            return None
        client, verify = _SSL_HEAD.unpack_from(value)
        return SslInfo(client, verify, _parse_tlvs(value[_SSL_HEAD.size :], "an SSL sub-TLV"))


# -- CRC32C (Castagnoli, RFC 4960 appendix B), table-driven ---------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- decoding --------------------------------------------------------------------------------


class ProxyHeaderDecoder:
    """Read one PROXY header, v1 or v2, from bytes fed in pieces of any size.

    After the header, :attr:`leftover` holds the bytes fed past it (the client's first
    data, which belong to whoever reads the connection next).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None
        self.leftover = b""
        #: Bytes fed before the header was complete (the header's and what followed it).
        self.consumed = 0

    @property
    def most_needed(self) -> int:
        """The most bytes the header can still take: a reader that reads no more than
        this never reads past the header. 0 once it is decoded."""
        if self.header is not None:
            return 0
        if self._buffer[:1] == V2_SIGNATURE[:1]:
            if len(self._buffer) < _V2_FIXED_SIZE:
                return _V2_FIXED_SIZE - len(self._buffer)
            return _V2_FIXED_SIZE + _v2_length(self._buffer) - len(self._buffer)
        return V1_MAX_LENGTH - len(self._buffer)

    def feed(self, data: bytes) -> ProxyHeader | NeedData:
        """Add ``data``; the header once it is complete, :data:`NEED_DATA` before.

        Raises:
            ProtocolError: the bytes are no PROXY header, or break one of its rules.
        """
        if self.header is not None:
            self.leftover += data
            return self.header
        self.consumed += len(data)
        self._buffer += data
        buffer = self._buffer
        result = self._feed_v2(buffer) if buffer[:1] == V2_SIGNATURE[:1] else self._feed_v1(buffer)
        if isinstance(result, ProxyHeader):
            self.header = result
        return result

    def _feed_v1(self, buffer: bytearray) -> ProxyHeader | NeedData:
        start = bytes(buffer[: len(_V1_PREFIX)])
        if not _V1_PREFIX.startswith(start):
            raise ProtocolError(f"not a PROXY protocol header: {start!r}")
        end = buffer.find(b"\n", 0, V1_MAX_LENGTH)
        if end < 0:
            lone_cr = buffer.find(b"\r", 0, V1_MAX_LENGTH)
            if 0 <= lone_cr < len(buffer) - 1:
                raise ProtocolError("a PROXY v1 line has a CR without LF")
            if len(buffer) >= V1_MAX_LENGTH:
                raise ProtocolError(f"no CRLF within the {V1_MAX_LENGTH} bytes of a PROXY v1 line")
            return NEED_DATA
        if end == 0 or buffer[end - 1] != 0x0D or buffer.find(b"\r", 0, end - 1) >= 0:
            raise ProtocolError("a PROXY v1 line must end with CRLF, and only there")
        self.leftover = bytes(buffer[end + 1 :])
        return _parse_v1(bytes(buffer[: end - 1]))

    def _feed_v2(self, buffer: bytearray) -> ProxyHeader | NeedData:
        seen = bytes(buffer[: len(V2_SIGNATURE)])
        if not V2_SIGNATURE.startswith(seen):
            raise ProtocolError("not a PROXY protocol header: a bad v2 signature")
        if len(buffer) > len(V2_SIGNATURE):
            version_command = buffer[len(V2_SIGNATURE)]
            if version_command >> 4 != 2:
                raise ProtocolError(f"PROXY protocol version {version_command >> 4} is not 2")
            if version_command & 0x0F not in _COMMANDS:
                raise ProtocolError(f"unknown PROXY v2 command {version_command & 0x0F}")
        if len(buffer) > len(V2_SIGNATURE) + 1:
            family, transport = buffer[len(V2_SIGNATURE) + 1] >> 4, buffer[len(V2_SIGNATURE) + 1] & 0x0F
            if family not in _ADDRESS_BLOCK or transport not in _TRANSPORTS:
                raise ProtocolError(f"unknown PROXY v2 family and transport 0x{family:x}{transport:x}")
        if len(buffer) < _V2_FIXED_SIZE:
            return NEED_DATA
        length = _v2_length(buffer)
        # LOCAL: "discard the protocol block including the family which is ignored".
        if buffer[12] & 0x0F and length < _ADDRESS_BLOCK[buffer[13] >> 4]:
            raise ProtocolError(f"a PROXY v2 length of {length} does not cover its address block")
        total = _V2_FIXED_SIZE + length
        if len(buffer) < total:
            return NEED_DATA
        self.leftover = bytes(buffer[total:])
        return _parse_v2(bytes(buffer[:total]))


def _v2_length(buffer: bytearray) -> int:
    length: int = _V2_FIXED.unpack_from(buffer)[3]
    return length


def _parse_v1(line: bytes) -> ProxyHeader:
    """The header of a v1 line (without its CRLF)."""
    fields = line.split(b" ")
    if len(fields) < 2 or b"" in fields[:2]:
        raise ProtocolError("a PROXY v1 line takes single spaces between its fields")
    protocol = fields[1]
    if protocol == b"UNKNOWN":  # the spec: whatever follows UNKNOWN is ignored
        return ProxyHeader(1, "proxy", "unspec", None, None)
    if protocol not in (b"TCP4", b"TCP6"):
        raise ProtocolError(f"unknown PROXY v1 protocol {protocol!r}")
    if len(fields) != 6 or b"" in fields:
        raise ProtocolError("a PROXY v1 line takes single spaces between 6 fields")
    version = 4 if protocol == b"TCP4" else 6
    source = _v1_address(fields[2], fields[4], version)
    destination = _v1_address(fields[3], fields[5], version)
    return ProxyHeader(1, "proxy", "stream", source, destination)


def _v1_address(host: bytes, port: bytes, version: int) -> InetAddress:
    allowed = b"0123456789." if version == 4 else b"0123456789abcdefABCDEF:"
    if host.strip(allowed):
        raise ProtocolError(f"not a canonical IPv{version} address in a PROXY v1 line: {host!r}")
    try:
        ip = ipaddress.IPv4Address(host.decode()) if version == 4 else ipaddress.IPv6Address(host.decode())
    except ValueError:  # leading zeros in IPv4 included: Python refuses them as the spec does
        raise ProtocolError(f"not a canonical IPv{version} address in a PROXY v1 line: {host!r}") from None
    if not port.isdigit() or len(port) > 5 or (port[0] == 0x30 and len(port) > 1) or int(port) > 65535:
        raise ProtocolError(f"not a port in a PROXY v1 line: {port!r}")
    return InetAddress(_host(ip), int(port))


def _parse_v2(header: bytes) -> ProxyHeader:
    """The header of a whole v2 block (its fixed 16 bytes checked already)."""
    _, version_command, family_transport, _ = _V2_FIXED.unpack_from(header)
    command = _COMMANDS[version_command & 0x0F]
    family, transport = family_transport >> 4, _TRANSPORTS[family_transport & 0x0F]
    block_end = _V2_FIXED_SIZE + _ADDRESS_BLOCK[family]
    tlvs = _parse_tlvs(header[block_end:], "a TLV")  # none after a LOCAL block cut short
    _check_tlvs(header, block_end, tlvs)
    source = destination = None
    if command == "proxy" and transport != "unspec" and family:
        source, destination = _v2_addresses(family, header[_V2_FIXED_SIZE:block_end])
    if command == "proxy" and source is None and destination is None:
        transport = "unspec"
    return ProxyHeader(2, command, transport, source, destination, tlvs)


def _v2_addresses(family: int, block: bytes) -> tuple[Address | None, Address | None]:
    if family == _FAMILY_UNIX:
        return _unix_address(block[:_UNIX_PATH_SIZE]), _unix_address(block[_UNIX_PATH_SIZE:])
    size = 4 if family == _FAMILY_INET else 16
    ip_type = ipaddress.IPv4Address if family == _FAMILY_INET else ipaddress.IPv6Address
    source_port, destination_port = _PORTS.unpack_from(block, 2 * size)
    return (
        InetAddress(_host(ip_type(block[:size])), source_port),
        InetAddress(_host(ip_type(block[size : 2 * size])), destination_port),
    )


def _host(ip: _IP) -> str:
    """An IP's text, an IPv4-mapped IPv6 address as its IPv4 (as
    :func:`enchufe.net.stream.address_from_sockaddr` reports a dual-stack peer)."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(ip if mapped is None else mapped)


def _unix_address(raw: bytes) -> UnixAddress | None:
    """A ``sun_path``: NUL-terminated, or (a first NUL) a Linux abstract name."""
    if raw[:1] == b"\0":
        name = raw[1:].rstrip(b"\0")
        return UnixAddress("@" + name.decode("utf-8", "surrogateescape")) if name else None
    path = raw.split(b"\0", 1)[0]
    return UnixAddress(path.decode("utf-8", "surrogateescape")) if path else None


def _parse_tlvs(data: bytes, what: str) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _TLV_HEAD.size:
            raise ProtocolError(f"{what} of a PROXY v2 header is cut short")
        kind, length = _TLV_HEAD.unpack_from(data, offset)
        offset += _TLV_HEAD.size
        if offset + length > len(data):
            raise ProtocolError(f"{what} of type 0x{kind:02x} runs past its PROXY v2 header")
        tlvs.append((kind, data[offset : offset + length]))
        offset += length
    return tuple(tlvs)


def _check_tlvs(header: bytes, block_end: int, tlvs: tuple[tuple[int, bytes], ...]) -> None:
    """Enforce what the spec says of each known TLV; verify the CRC32C."""
    offset = block_end
    checksums = sum(kind == PP2_TYPE_CRC32C for kind, _ in tlvs)
    for kind, value in tlvs:
        if kind == PP2_TYPE_CRC32C:
            if len(value) != 4 or checksums > 1:
                raise ProtocolError("a PROXY v2 header takes one 4-byte CRC32C at most")
            value_at = offset + _TLV_HEAD.size
            zeroed = header[:value_at] + b"\0\0\0\0" + header[value_at + 4 :]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProtocolError("the PROXY v2 header's CRC32C does not match")
        elif kind == PP2_TYPE_UNIQUE_ID and len(value) > UNIQUE_ID_MAX_LENGTH:
            raise ProtocolError(f"a PROXY v2 UNIQUE_ID is longer than {UNIQUE_ID_MAX_LENGTH} bytes")
        elif kind == PP2_TYPE_SSL:
            if len(value) < _SSL_HEAD.size:
                raise ProtocolError("a PROXY v2 SSL TLV is cut short")
            _parse_tlvs(value[_SSL_HEAD.size :], "an SSL sub-TLV")
        elif kind in (PP2_TYPE_AUTHORITY, PP2_TYPE_NETNS):
            try:
                value.decode("utf-8" if kind == PP2_TYPE_AUTHORITY else "ascii")
            except UnicodeDecodeError:
                raise ProtocolError(f"a PROXY v2 TLV of type 0x{kind:02x} is not text") from None
        offset += _TLV_HEAD.size + len(value)


# -- encoding --------------------------------------------------------------------------------


def encode_header(header: ProxyHeader) -> bytes:
    """The bytes of ``header``, in its version; ``ProxyHeaderDecoder`` reads them back
    as ``header``.

    v1 carries TCP over IPv4 or IPv6 only: any other header (no addresses, LOCAL, Unix
    sockets) is written ``PROXY UNKNOWN``. In v2, a CRC32C TLV (any 4-byte value, say
    zeros) is given the header's checksum.

    Raises:
        ValueError: an address that is not an IP literal, TLVs in v1, a TLV value
            over 65535 bytes or a header over v2's size, a version other than 1 or 2.
    """
    if header.version == 1:
        return _encode_v1(header)
    if header.version == 2:
        return _encode_v2(header)
    raise ValueError(f"PROXY protocol version {header.version} does not exist")


def _ip_pair(source: InetAddress, destination: InetAddress) -> tuple[_IP, _IP]:
    """Both addresses as IPs of one family (IPv4 mapped into IPv6 when they differ)."""
    try:
        source_ip, destination_ip = ipaddress.ip_address(source.host), ipaddress.ip_address(destination.host)
    except ValueError:
        raise ValueError(f"a PROXY header carries IP addresses, not {source.host!r}, {destination.host!r}") from None
    if source_ip.version != destination_ip.version:
        source_ip, destination_ip = (
            ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip for ip in (source_ip, destination_ip)
        )
    return source_ip, destination_ip


def _encode_v1(header: ProxyHeader) -> bytes:
    if header.tlvs:
        raise ValueError("a PROXY v1 header carries no TLVs")
    source, destination = header.source, header.destination
    if (
        header.command != "proxy"
        or header.transport != "stream"
        or not isinstance(source, InetAddress)
        or not isinstance(destination, InetAddress)
    ):
        return b"PROXY UNKNOWN\r\n"
    source_ip, destination_ip = _ip_pair(source, destination)
    protocol = "TCP4" if source_ip.version == 4 else "TCP6"
    source_text, destination_text = _v1_text(source_ip), _v1_text(destination_ip)
    line = f"PROXY {protocol} {source_text} {destination_text} {source.port} {destination.port}\r\n"
    return line.encode("ascii")


def _v1_text(ip: _IP) -> str:
    """An address as v1 writes it: IPv6 in hex groups only. Python 3.13 writes an
    IPv4-mapped address with a dotted quad (``::ffff:127.0.0.7``), which v1 forbids;
    a link-local peer's address comes with its zone (``fe80::1%eth0``, as
    ``getpeername`` gives it), which v1 has no place for: the 128 bits alone are
    written, as v2 carries them."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        high, low = struct.unpack_from("!HH", ip.packed, 12)
        return f"::ffff:{high:x}:{low:x}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return str(ipaddress.IPv6Address(ip.packed))
    return str(ip)


def _encode_v2(header: ProxyHeader) -> bytes:
    command = 0 if header.command == "local" else 1
    transport = {name: code for code, name in _TRANSPORTS.items()}[header.transport]
    source, destination = header.source, header.destination
    family, block = 0, b""
    if command == 0 or transport == 0 or (source is None and destination is None):
        pass  # LOCAL and UNSPEC carry no addresses (the spec: "it should not present any")
    elif isinstance(source, InetAddress) and isinstance(destination, InetAddress):
        source_ip, destination_ip = _ip_pair(source, destination)
        family = _FAMILY_INET if source_ip.version == 4 else _FAMILY_INET6
        block = source_ip.packed + destination_ip.packed + _PORTS.pack(source.port, destination.port)
    elif not isinstance(source, InetAddress) and not isinstance(destination, InetAddress):
        family = _FAMILY_UNIX
        block = _unix_path(source) + _unix_path(destination)
    else:
        raise ValueError("a PROXY v2 header's addresses must be of one family")
    crc_at = None
    tlv_bytes = bytearray()
    for kind, value in header.tlvs:
        if len(value) > 0xFFFF:
            raise ValueError(f"a TLV value of {len(value)} bytes does not fit in a PROXY v2 header")
        if kind == PP2_TYPE_CRC32C:
            crc_at = len(tlv_bytes) + _TLV_HEAD.size
            value = b"\0\0\0\0"
        tlv_bytes += _TLV_HEAD.pack(kind, len(value)) + value
    length = len(block) + len(tlv_bytes)
    if length > 0xFFFF:
        raise ValueError(f"a PROXY v2 header of {length} bytes after its fixed part is too long")
    data = bytearray(_V2_FIXED.pack(V2_SIGNATURE, 0x20 | command, family << 4 | transport, length) + block)
    if crc_at is not None:
        crc_at += len(data)
    data += tlv_bytes
    if crc_at is not None:
        data[crc_at : crc_at + 4] = crc32c(bytes(data)).to_bytes(4, "big")
    return bytes(data)


def _unix_path(address: UnixAddress | None) -> bytes:
    if address is None:
        return bytes(_UNIX_PATH_SIZE)
    raw = (
        b"\0" + address.path[1:].encode("utf-8", "surrogateescape")
        if address.is_abstract
        else address.path.encode("utf-8", "surrogateescape")
    )
    if len(raw) >= _UNIX_PATH_SIZE:
        raise ValueError(f"a Unix socket path of {len(raw)} bytes does not fit in a PROXY v2 header")
    return raw.ljust(_UNIX_PATH_SIZE, b"\0")
