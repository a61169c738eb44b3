"""X.509 certificates read from DER, and judged without checking a signature.

:class:`Certificate` reads what a netcat shows of the certificate a TLS peer sent:
the subject and issuer :class:`Name` (with ncat's one-line text, ``O=Acme Org,
CN=localhost``), the validity period, the subjectAltName DNS names and IP addresses,
and the SHA-1 fingerprint as ncat prints it. Bytes that are not a certificate raise
:class:`~enchufe.errors.MalformedCertificate` and nothing else.

:func:`problems` judges a certificate that a handshake did not verify (``ncat``
without ``--ssl-verify``: Python cannot verify a chain after a handshake made with
``CERT_NONE``). It finds what can be known for certain from the certificates
themselves and the names of the trusted CAs, in OpenSSL's words and in the order
OpenSSL would meet them, so that its first problem is the one a verifying handshake
would have failed with:

- ``self-signed certificate``: issued by itself (the same name as OpenSSL compares
  names, and no authority key identifier naming another key) and no trusted CA has
  its name;
- ``self-signed certificate in certificate chain``, ``unable to get local issuer
  certificate``: only when the caller passes the chain the peer sent (Python 3.13's
  ``get_unverified_chain()``), walked from issuer to issuer until a trusted CA's name;
- ``Hostname mismatch, certificate is not valid for 'NAME'.`` (``IP address
  mismatch`` for an address), Python's words: OpenSSL's matching with Python's
  settings (DNS names by RFC 6125, a wildcard only as a whole first label and never
  for the last two; IP addresses for an address; the subject's CN only when there is
  no DNS name);
- ``certificate is not yet valid`` and ``certificate has expired``.

What it cannot tell, and so never says: what takes a signature, or more than the
CAs' names. No signature is checked and a trusted CA is known by its name only, so a
forged certificate in a trusted CA's name looks fine; so do a revoked one, one whose
CA has expired, and one whose key usage, extended key usage, basic constraints or
name constraints forbid the use. Without the chain (before Python 3.13) a certificate
issued by a CA nobody trusts, a private CA say, looks fine unless it is self-signed.
"No problem" is not "verified": only ``--ssl-verify`` verifies. A problem found is
real, though: a verifying handshake would fail on it (the tests hold :func:`problems`
to real handshakes).

Times are POSIX seconds (``time.time()``; ``datetime.datetime.fromtimestamp(t,
datetime.UTC)`` for a datetime), so reading a certificate needs no clock and no
:mod:`datetime`.
"""

from __future__ import annotations

from enchufe.errors import MalformedCertificate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container, Sequence

__all__ = ["SHORT_NAMES", "Certificate", "Name", "problems", "sha1_fingerprint"]

# DER tags.
_BOOLEAN = 0x01
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_SEQUENCE = 0x30
_SET = 0x31
_VERSION = 0xA0  # [0] EXPLICIT, in TBSCertificate
_ISSUER_UNIQUE_ID = 0x81
_SUBJECT_UNIQUE_ID = 0x82
_EXTENSIONS = 0xA3
_DNS_NAME = 0x82  # GeneralName [2], an IA5String
_IP_ADDRESS = 0x87  # GeneralName [7], 4 or 16 bytes
_KEY_IDENTIFIER = 0x80  # AuthorityKeyIdentifier [0]

_SUBJECT_ALT_NAME = "2.5.29.17"
_SUBJECT_KEY_IDENTIFIER = "2.5.29.14"
_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35"

# The string types OpenSSL reads in a name (UTF8, Numeric, Printable, T61, IA5,
# Universal, BMP), and how each is decoded: the others are one byte per character.
_UTF8_STRING = 12
_NUMERIC_STRING = 18
_UNIVERSAL_STRING = 28
_BMP_STRING = 30
_STRING_TYPES = {_UTF8_STRING, _NUMERIC_STRING, 19, 20, 22, _UNIVERSAL_STRING, _BMP_STRING}
_CODECS = {_UTF8_STRING: "utf-8", _UNIVERSAL_STRING: "utf-32-be", _BMP_STRING: "utf-16-be"}
#: The types OpenSSL compares as text (case and spaces folded): all but NumericString,
#: which it compares byte for byte.
_TEXT_TYPES = _STRING_TYPES - {_NUMERIC_STRING}

#: OpenSSL's short names of the attributes found in certificates' names; any other
#: attribute is shown by its dotted OID.
SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress",
    "2.5.4.17": "postalCode",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.19": "physicalDeliveryOfficeName",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.51": "houseIdentifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.3": "mail",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.2.643.3.131.1.1": "INN",
    "1.2.643.100.1": "OGRN",
    "1.2.643.100.3": "SNILS",
    "1.2.643.100.5": "OGRNIP",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

#: OpenSSL's spaces (``ossl_isspace``), which name comparison folds.
_SPACES = " \t\n\v\f\r"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
#: What a label may hold: letters, digits, hyphens.
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
#: The longest arc of an OID read (in bytes of its encoding): real ones take a few.
_MAX_ARC = 64


def sha1_fingerprint(der: bytes) -> str:
    """The SHA-1 fingerprint of a certificate (DER) as ncat prints it:
    ``88FB E7E2 6975 D88F 2A9D 275B 0758 3EA9 FA73 760E``.

    It hashes the bytes only, so it works on a certificate :class:`Certificate` cannot
    read too.
    """
    import hashlib  # about 1 ms: only a fingerprint needs it

    digest = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


class Name:
    """An X.509 distinguished name (a certificate's subject or issuer).

    ``str(name)`` is ncat's text (OpenSSL's ``X509_NAME_print``): ``O=Acme Org,
    CN=localhost``, the attributes in the certificate's order, a value's bytes outside
    printable ASCII as ``\\xC3\\xA9``. Two names are equal when OpenSSL takes them for
    the same name: each value's case (ASCII) and runs of spaces folded, whatever string
    type encodes it, the attributes of a multi-valued part in any order.

    Attributes:
        attributes: ``(attribute, value)`` pairs in the certificate's order, the
            attribute by its short name (``CN``, ``O``, ``OU``, ``C``, ``ST``, ``L``,
            ``emailAddress``, ... :data:`SHORT_NAMES`) or else its dotted OID, the
            value as text.
    """

    __slots__ = ("_entries", "_key", "attributes")

    def __init__(self, entries: Sequence[tuple[int, str, int, bytes, str]]) -> None:
        """Made by :class:`Certificate`: ``entries`` are ``(part, oid, string type, raw
        bytes, text)``, ``part`` numbering the name's parts (several attributes may share
        one)."""
        self._entries = tuple(entries)
        self.attributes = tuple((SHORT_NAMES.get(oid, oid), text) for _, oid, _, _, text in self._entries)
        self._key: tuple[tuple[tuple[str, int, str | bytes], ...], ...] | None = None

    def _comparison_key(self) -> tuple[tuple[tuple[str, int, str | bytes], ...], ...]:
        """The name as OpenSSL compares it (its canonical encoding), made when first needed."""
        if self._key is None:
            parts: dict[int, list[tuple[str, int, str | bytes]]] = {}
            for part, oid, string_type, raw, text in self._entries:
                value = (oid, 0, _folded(text)) if string_type in _TEXT_TYPES else (oid, string_type, raw)
                parts.setdefault(part, []).append(value)
            self._key = tuple(tuple(sorted(part)) for part in parts.values())
        return self._key

    def get(self, attribute: str) -> str | None:
        """The first value of ``attribute`` (a short name or a dotted OID), if any."""
        for name, value in self.attributes:
            if name == attribute:
                return value
        return None

    @property
    def oneline(self) -> str:
        """OpenSSL's older one-line form (``X509_NAME_oneline``, ``openssl x509 -nameopt
        compat``): ``/O=Acme Org/CN=localhost``; ``+`` joins the attributes of one
        part, and ``/`` or ``+`` in a value is escaped with a backslash."""
        pieces = []
        previous_part = None
        for part, oid, _, raw, _ in self._entries:
            pieces.append("+" if part == previous_part else "/")
            previous_part = part
            pieces.append(SHORT_NAMES.get(oid, oid) + "=")
            for byte in raw:
                if byte < 0x20 or byte > 0x7E:
                    pieces.append(f"\\x{byte:02X}")
                elif byte in b"/+":
                    pieces.append("\\" + chr(byte))
                else:
                    pieces.append(chr(byte))
        return "".join(pieces)

    def __str__(self) -> str:
        # X509_NAME_print: the one-line form without its first "/", and each "/" before
        # an attribute of one or two capitals ("/CN=", "/O=") turned into ", ".
        line = self.oneline[1:]
        pieces = []
        start = 0
        for index, character in enumerate(line):
            if character == "/" and _capitals_then_equals(line, index + 1):
                pieces.append(line[start:index])
                start = index + 1
        pieces.append(line[start:])
        return ", ".join(pieces)

    def __repr__(self) -> str:
        return f"<Name {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Name):
            return NotImplemented
        return self._comparison_key() == other._comparison_key()

    def __hash__(self) -> int:
        return hash(self._comparison_key())


def _capitals_then_equals(line: str, start: int) -> bool:
    """Whether ``line`` has one or two ASCII capitals then ``=`` at ``start``."""
    return any(
        line[start + capitals : start + capitals + 1] == "="
        and all("A" <= character <= "Z" for character in line[start : start + capitals])
        for capitals in (1, 2)
    )


def _folded(text: str) -> str:
    """A value as OpenSSL compares it: spaces at the ends dropped, runs of spaces made
    one, ASCII letters in lower case."""
    pieces = []
    in_spaces = False
    for character in text.strip(_SPACES):
        if character in _SPACES:
            in_spaces = True
            continue
        if in_spaces:
            pieces.append(" ")
            in_spaces = False
        pieces.append(character)
    return "".join(pieces).translate(_ASCII_LOWER)


class Certificate:
    """An X.509 certificate read from its DER bytes.

    Raises:
        MalformedCertificate: the bytes are not a DER certificate.

    Attributes:
        der: the certificate's bytes.
        subject: whom it was issued to.
        issuer: who issued it.
        not_before: the start of its validity, in POSIX seconds.
        not_after: the end of its validity, in POSIX seconds (valid up to, not at, it).
        dns_names: the subjectAltName DNS names, in order (wildcards as written).
    """

    __slots__ = (
        "_authority_key_id",
        "_ip_addresses",
        "_subject_key_id",
        "der",
        "dns_names",
        "issuer",
        "not_after",
        "not_before",
        "subject",
    )

    def __init__(self, der: bytes) -> None:
        self.der = bytes(der)
        outer = _Der(self.der)
        certificate = _Der(outer.next(_SEQUENCE, "certificate"))
        outer.finish("certificate")
        tbs = _Der(certificate.next(_SEQUENCE, "certificate contents"))
        certificate.next(_SEQUENCE, "signature algorithm")
        certificate.next(_BIT_STRING, "signature")
        certificate.finish("certificate")

        tbs.optional(_VERSION)  # which fields may follow: each is known by its tag anyway
        tbs.next(_INTEGER, "serial number")
        tbs.next(_SEQUENCE, "signature algorithm")
        self.issuer = _name(tbs.next(_SEQUENCE, "issuer"))
        validity = _Der(tbs.next(_SEQUENCE, "validity"))
        self.not_before = _time(*validity.next_any("notBefore"))
        self.not_after = _time(*validity.next_any("notAfter"))
        validity.finish("validity")
        self.subject = _name(tbs.next(_SEQUENCE, "subject"))
        tbs.next(_SEQUENCE, "public key")
        tbs.optional(_ISSUER_UNIQUE_ID)
        tbs.optional(_SUBJECT_UNIQUE_ID)
        extensions = tbs.optional(_EXTENSIONS)
        tbs.finish("certificate contents")

        self.dns_names: tuple[str, ...] = ()
        self._ip_addresses: tuple[bytes, ...] = ()
        self._subject_key_id: bytes | None = None
        self._authority_key_id: bytes | None = None
        if extensions is not None:
            self._read_extensions(extensions)

    def _read_extensions(self, content: bytes) -> None:
        wrapper = _Der(content)
        extensions = _Der(wrapper.next(_SEQUENCE, "extensions"))
        wrapper.finish("extensions")
        seen = set()
        while not extensions.at_end():
            extension = _Der(extensions.next(_SEQUENCE, "extension"))
            oid = _oid(extension.next(_OID, "extension"))
            extension.optional(_BOOLEAN)  # critical: whether a reader must understand it
            value = extension.next(_OCTET_STRING, "extension value")
            extension.finish("extension")
            if oid in seen:
                raise MalformedCertificate(f"malformed certificate: extension {oid} appears twice")
            seen.add(oid)
            if oid == _SUBJECT_ALT_NAME:
                self._read_alt_names(value)
            elif oid == _SUBJECT_KEY_IDENTIFIER:
                self._subject_key_id = _single(value, _OCTET_STRING, "subject key identifier")
            elif oid == _AUTHORITY_KEY_IDENTIFIER:
                identifier = _Der(_single(value, _SEQUENCE, "authority key identifier"))
                self._authority_key_id = identifier.optional(_KEY_IDENTIFIER)

    def _read_alt_names(self, value: bytes) -> None:
        names = _Der(_single(value, _SEQUENCE, "subjectAltName"))
        dns_names = []
        ip_addresses = []
        while not names.at_end():
            tag, content = names.next_any("subjectAltName")
            if tag == _DNS_NAME:
                dns_names.append(content.decode("latin-1"))  # IA5: OpenSSL compares its bytes
            elif tag == _IP_ADDRESS and len(content) in (4, 16):
                ip_addresses.append(content)
        self.dns_names = tuple(dns_names)
        self._ip_addresses = tuple(ip_addresses)

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        """The subjectAltName IP addresses, in order (``127.0.0.1``, ``::1``)."""
        import ipaddress  # about 1 ms: only addresses need it

        return tuple(str(ipaddress.ip_address(packed)) for packed in self._ip_addresses)

    @property
    def organization(self) -> str | None:
        """The subject's organization (its first ``O``), which ncat prints after ``SSL
        connection to ADDRESS.``"""
        return self.subject.get("O")

    @property
    def self_issued(self) -> bool:
        """Whether the issuer is the subject."""
        return self.issuer == self.subject

    @property
    def sha1_fingerprint(self) -> str:
        """The SHA-1 fingerprint as ncat prints it (:func:`sha1_fingerprint`)."""
        return sha1_fingerprint(self.der)

    def is_valid_for(self, host: str) -> bool:
        """Whether the certificate names ``host``, as a client checks it (OpenSSL's rules
        with Python's settings).

        An IP address must be one of the subjectAltName IP addresses. A name must match
        a subjectAltName DNS name, or, when there is none, the subject's CN: letters in
        any case, and ``*.example.com`` matching one whole first label (never
        ``example.com`` nor ``a.b.example.com``; never a pattern for the last two
        labels, such as ``*.com``).
        """
        address = _address_bytes(host)
        if address is not None:
            return address in self._ip_addresses
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")  # as ssl sends and checks it
            except UnicodeError:
                return False
        patterns = self.dns_names or tuple(value for name, value in self.subject.attributes if name == "CN")
        return any(_host_matches(pattern, host) for pattern in patterns)

    def _looks_self_signed(self) -> bool:
        """Self-issued, and its authority key identifier (if any) is its own key's:
        what OpenSSL calls self-signed without checking the signature."""
        if not self.self_issued:
            return False
        return self._authority_key_id is None or self._subject_key_id in (None, self._authority_key_id)

    def __repr__(self) -> str:
        return f"<Certificate {self.subject} issued by {self.issuer}>"


def problems(
    certificate: Certificate,
    *,
    host: str | None,
    now: float,
    trusted_subjects: Container[Name],
    chain: Sequence[Certificate] | None = None,
) -> list[str]:
    """What is certainly wrong with a peer's certificate, in OpenSSL's (and Python's)
    words; an empty list when nothing is. See the module docstring for what it can tell.

    Args:
        certificate: the peer's certificate.
        host: the name or address the client asked for; ``None`` not to check it.
        now: the time to judge the validity by, in POSIX seconds (``time.time()``).
        trusted_subjects: the names of the trusted CAs
            (:func:`enchufe.net.tls.trusted_subjects`).
        chain: the certificates the peer sent after its own, in its order; ``None``
            when that is not known (before Python 3.13), which leaves out the
            problems only a chain shows.

    The first problem is the one a verifying handshake would have failed with.
    """
    found = []
    trust = _trust_problem(certificate, trusted_subjects, chain)
    if trust is not None:
        found.append(trust)
    if host is not None and not certificate.is_valid_for(host):
        kind = "Hostname" if _address_bytes(host) is None else "IP address"
        found.append(f"{kind} mismatch, certificate is not valid for '{host}'.")
    now_seconds = int(now // 1)  # OpenSSL compares whole seconds
    if certificate.not_before > now_seconds:
        found.append("certificate is not yet valid")
    if certificate.not_after <= now_seconds:
        found.append("certificate has expired")
    return found


def _trust_problem(
    certificate: Certificate, trusted_subjects: Container[Name], chain: Sequence[Certificate] | None
) -> str | None:
    """Walk from ``certificate`` to a trusted CA's name, the way OpenSSL builds a chain
    (a trusted issuer first), as far as the certificates at hand allow."""
    unused = list(chain or ())
    current = certificate
    while True:
        if current._looks_self_signed():
            if current.subject in trusted_subjects:
                return None
            return "self-signed certificate" + ("" if current is certificate else " in certificate chain")
        if current.issuer in trusted_subjects:
            return None
        issuer = next((candidate for candidate in unused if candidate.subject == current.issuer), None)
        if issuer is None:
            return None if chain is None else "unable to get local issuer certificate"
        unused.remove(issuer)
        current = issuer


def _host_matches(pattern: str, host: str) -> bool:
    """OpenSSL's ``equal_wildcard`` with ``X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS``."""
    suffix = _wildcard_suffix(pattern)
    if suffix is None:
        return pattern.translate(_ASCII_LOWER) == host.translate(_ASCII_LOWER)
    if len(host) <= len(suffix):  # the wildcard matches one character at least
        return False
    label = host[: len(host) - len(suffix)]
    if host[len(label) :].translate(_ASCII_LOWER) != suffix.translate(_ASCII_LOWER):
        return False
    return label == "*" or all(character in _LDH for character in label)


def _wildcard_suffix(pattern: str) -> str | None:
    """``.example.com`` for a wildcard pattern OpenSSL accepts (``*.example.com``: the
    whole first label, at least two labels after it, each of letters, digits and inner
    hyphens); ``None`` for a pattern to compare as it is."""
    if not pattern.startswith("*."):
        return None
    labels = pattern[2:].split(".")
    if len(labels) < 2:
        return None
    for label in labels:
        if not label or label[0] == "-" or label[-1] == "-" or not _LDH.issuperset(label):
            return None
    return pattern[1:]


def _address_bytes(host: str) -> bytes | None:
    """The packed address if ``host`` is an IPv4 or IPv6 literal (checked as one)."""
    if "%" in host:  # a scoped address is no literal to OpenSSL
        return None
    import ipaddress  # about 1 ms: only a host check needs it

    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        return None


# -- DER ---------------------------------------------------------------------------------


class _Der:
    """A cursor over the DER elements in ``data``, read one after the other."""

    __slots__ = ("_data", "_position")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def at_end(self) -> bool:
        return self._position >= len(self._data)

    def next_any(self, what: str) -> tuple[int, bytes]:
        """The next element's tag and contents."""
        data = self._data
        position = self._position
        if position + 2 > len(data):
            raise MalformedCertificate(f"malformed certificate: {what} cut short")
        tag = data[position]
        if tag & 0x1F == 0x1F:
            raise MalformedCertificate(f"malformed certificate: {what} has a tag number over 30")
        length = data[position + 1]
        start = position + 2
        if length == 0x80:
            raise MalformedCertificate(f"malformed certificate: {what} has no length (BER, not DER)")
        if length > 0x80:
            size = length & 0x7F
            if size > 4:
                raise MalformedCertificate(f"malformed certificate: {what} has a bad length")
            length = int.from_bytes(data[start : start + size], "big")
            start += size
        end = start + length
        if end > len(data):
            raise MalformedCertificate(f"malformed certificate: {what} cut short")
        self._position = end
        return tag, data[start:end]

    def next(self, tag: int, what: str) -> bytes:
        """The next element's contents; it must have ``tag``."""
        if self.peek() != tag:
            raise MalformedCertificate(f"malformed certificate: {what} missing")
        return self.next_any(what)[1]

    def optional(self, tag: int) -> bytes | None:
        """The next element's contents if it has ``tag``; else nothing is read."""
        return self.next(tag, f"element {tag:#x}") if self.peek() == tag else None

    def peek(self) -> int | None:
        return self._data[self._position] if self._position < len(self._data) else None

    def finish(self, what: str) -> None:
        if not self.at_end():
            raise MalformedCertificate(f"malformed certificate: unexpected bytes after the {what}")


def _single(content: bytes, tag: int, what: str) -> bytes:
    """The contents of the one element, of ``tag``, that ``content`` is."""
    reader = _Der(content)
    inner = reader.next(tag, what)
    reader.finish(what)
    return inner


def _oid(content: bytes) -> str:
    """An object identifier's dotted text."""
    known = _KNOWN_OIDS.get(content)
    if known is not None:
        return known
    if not content or content[-1] & 0x80:
        raise MalformedCertificate("malformed certificate: a bad object identifier")
    arcs = []
    value = 0
    arc_start = 0
    for index, byte in enumerate(content):
        if (index == arc_start and byte == 0x80) or index - arc_start >= _MAX_ARC:  # 0x80: not minimal
            raise MalformedCertificate("malformed certificate: a bad object identifier")
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            arc_start = index + 1
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, (first, arcs[0] - 40 * first, *arcs[1:])))


def _oid_bytes(dotted: str) -> bytes:
    """The encoding of an object identifier (the inverse of :func:`_oid`)."""
    first, second, *rest = map(int, dotted.split("."))
    encoded = bytearray()
    for arc in (40 * first + second, *rest):
        piece = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            piece.append(arc & 0x7F | 0x80)
        encoded += bytes(reversed(piece))
    return bytes(encoded)


#: The object identifiers met in every certificate, by their encoding: reading a CA
#: store's names decodes none.
_KNOWN_OIDS = {
    _oid_bytes(dotted): dotted
    for dotted in (*SHORT_NAMES, _SUBJECT_ALT_NAME, _SUBJECT_KEY_IDENTIFIER, _AUTHORITY_KEY_IDENTIFIER)
}


def _name(content: bytes) -> Name:
    entries = []
    parts = _Der(content)
    part = 0
    while not parts.at_end():
        attributes = _Der(parts.next(_SET, "name"))
        while not attributes.at_end():
            attribute = _Der(attributes.next(_SEQUENCE, "name attribute"))
            oid = _oid(attribute.next(_OID, "name attribute"))
            string_type, raw = attribute.next_any("name attribute")
            attribute.finish("name attribute")
            if string_type not in _STRING_TYPES:
                raise MalformedCertificate(f"malformed certificate: {oid} in a name is not a string")
            try:
                text = raw.decode(_CODECS.get(string_type, "latin-1"))
            except UnicodeDecodeError as exc:
                raise MalformedCertificate(f"malformed certificate: {oid} in a name: {exc.reason}") from None
            if string_type == _BMP_STRING and not all(character <= "\uffff" for character in text):
                raise MalformedCertificate(f"malformed certificate: {oid} in a name: a surrogate in a BMPString")
            entries.append((part, oid, string_type, raw, text))
        part += 1
    return Name(entries)


def _time(tag: int, content: bytes) -> int:
    """A UTCTime or GeneralizedTime in POSIX seconds: the forms RFC 5280 allows
    (``YYMMDDHHMMSSZ``, ``YYYYMMDDHHMMSSZ``), as OpenSSL checks them."""
    digits = 12 if tag == _UTC_TIME else 14 if tag == _GENERALIZED_TIME else 0
    if not digits or len(content) != digits + 1 or content[-1:] != b"Z" or not content[:-1].isdigit():
        raise MalformedCertificate("malformed certificate: a validity time that is not UTC in RFC 5280's form")
    year = int(content[: digits - 10])
    if tag == _UTC_TIME:
        year += 1900 if year >= 50 else 2000
    month, day, hour, minute, second = (int(content[i : i + 2]) for i in range(digits - 10, digits, 2))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not 1 <= month <= 12 or not 1 <= day <= month_days[month - 1] or hour > 23 or minute > 59 or second > 59:
        raise MalformedCertificate("malformed certificate: a validity time that is no date")
    return _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard
    Hinnant's ``days_from_civil``)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468
