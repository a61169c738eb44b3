"""X.509 reading and judging, held to OpenSSL: what ``openssl x509`` prints of the same
certificates, what ncat 7.93 printed of a name, and what real verifying handshakes say."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509 as crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from enchufe.errors import MalformedCertificate
from enchufe.proto.x509 import SHORT_NAMES, Certificate, Name, problems, sha1_fingerprint
from support.certificates import (
    AWKWARD_NAME,
    DAY,
    NOW,
    Issued,
    attribute,
    issue,
    openssl_fields,
    openssl_req,
    verify_by_handshake,
)
from support.tls import TlsFiles

pytestmark = pytest.mark.timeout(60)


def der_of(pem_file: str | Path) -> bytes:
    """The first certificate of a PEM file."""
    text = Path(pem_file).read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[start:end])


def assert_reads_as_openssl_does(der: bytes) -> Certificate:
    certificate = Certificate(der)
    printed = openssl_fields(der)
    assert certificate.subject.oneline == printed.subject
    assert certificate.issuer.oneline == printed.issuer
    assert (certificate.not_before, certificate.not_after) == (printed.not_before, printed.not_after)
    assert certificate.sha1_fingerprint.replace(" ", "") == printed.fingerprint.replace(":", "")
    expected_names = [name for name in printed.alt_names.split(", ") if name]
    assert [f"DNS:{name}" for name in certificate.dns_names] == [n for n in expected_names if n.startswith("DNS:")]
    printed_addresses = [ipaddress.ip_address(n.removeprefix("IP Address:")) for n in expected_names if "IP" in n]
    assert [ipaddress.ip_address(a) for a in certificate.ip_addresses] == printed_addresses
    return certificate


# -- certificates made by openssl req and by trustme ----------------------------------------


@pytest.fixture(scope="module")
def openssl_certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("openssl")
    made = {
        "ec-acme": openssl_req(directory, "ec-acme", "-subj", "/O=Acme Org/CN=localhost"),
        "rsa-many": openssl_req(
            directory,
            "rsa-many",
            "-subj",
            "/C=ES/ST=Madrid/L=Madrid/O=Acme Org/OU=Unit+UID=xyz/CN=localhost/emailAddress=root@example.test",
            "-addext",
            "subjectAltName=DNS:localhost,DNS:*.example.test,IP:127.0.0.1,IP:::1,IP:fe80::1:2",
            key="rsa",
        ),
        "utf8": openssl_req(directory, "utf8", "-subj", "/O=Caf\u00e9 \u2603/CN=a\\/b\\+c/DC=example/serialNumber=12"),
        "ip-only": openssl_req(directory, "ip-only", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:10.1.2.3"),
    }
    return {name: der_of(path) for name, path in made.items()}


@pytest.mark.parametrize("name", ["ec-acme", "rsa-many", "utf8", "ip-only"])
def test_certificates_from_openssl_req_read_as_openssl_prints_them(
    openssl_certificates: dict[str, bytes], name: str
) -> None:
    certificate = assert_reads_as_openssl_does(openssl_certificates[name])
    assert certificate.self_issued


def test_what_a_netcat_shows_of_an_openssl_certificate(openssl_certificates: dict[str, bytes]) -> None:
    acme = Certificate(openssl_certificates["ec-acme"])
    assert str(acme.subject) == "O=Acme Org, CN=localhost"
    assert acme.subject.attributes == (("O", "Acme Org"), ("CN", "localhost"))
    assert acme.organization == "Acme Org"
    many = Certificate(openssl_certificates["rsa-many"])
    assert str(many.subject) == (
        "C=ES, ST=Madrid, L=Madrid, O=Acme Org, OU=Unit+UID=xyz, CN=localhost/emailAddress=root@example.test"
    )
    assert many.dns_names == ("localhost", "*.example.test")
    assert many.ip_addresses == ("127.0.0.1", "::1", "fe80::1:2")
    utf8 = Certificate(openssl_certificates["utf8"])
    assert utf8.organization == "Caf\u00e9 \u2603"  # ncat prints the organization's bytes as they are ...
    assert (
        str(utf8.subject) == "O=Caf\\xC3\\xA9 \\xE2\\x98\\x83, CN=a\\/b\\+c, DC=example/serialNumber=12"
    )  # ... not the name's


@pytest.mark.parametrize("which", ["ca", "server", "client", "expired", "other_ca"])
def test_certificates_from_trustme_read_as_openssl_prints_them(tls_files: TlsFiles, which: str) -> None:
    certificate = assert_reads_as_openssl_does(der_of(getattr(tls_files, which)))
    assert certificate.self_issued == (which in {"ca", "other_ca"})


def test_a_trustme_server_certificate(tls_files: TlsFiles) -> None:
    server = Certificate(der_of(tls_files.server))
    assert server.dns_names == ("localhost",)
    assert server.ip_addresses == ("127.0.0.1", "::1")
    assert server.organization == "enchufe test server"
    assert server.issuer == Certificate(der_of(tls_files.ca)).subject
    assert server.sha1_fingerprint == sha1_fingerprint(server.der)


def test_the_fingerprint_is_ncats_groups_of_four_uppercase_hex_digits() -> None:
    assert sha1_fingerprint(b"") == "DA39 A3EE 5E6B 4B0D 3255 BFEF 9560 1890 AFD8 0709"


# -- names of every shape, against openssl and ncat ---------------------------------------

#: What ncat 7.93 printed (``Ncat: Subject: ...``) of AWKWARD_NAME (tests/interop/test_x509_ncat.py
#: holds it to ncat itself).
GOLDEN_NCAT_TEXT = (
    "OU=Unit+UID=xyz/1.2.3.4=foo, O=\\x00B\\x00M\\x00P\\x00 \\x00O\\x00r\\x00g, CN=x\\, Y=z, CN=x\\, YZ=z,"
    " CN=x, O=w, CN=tab\\x09here, L=\\x00\\x00\\x00u\\x00\\x00\\x00n\\x00\\x00\\x00i\\x00\\x00\\x00v,"
    " GN=gn/title=t+pseudonym=p+SN=sn/INN=123, CN=x\\/ABC=z, DC=dc/2.999.3=big arc"
)


def test_a_name_reads_as_ncat_printed_it() -> None:
    certificate = assert_reads_as_openssl_does(issue(AWKWARD_NAME).der)
    assert str(certificate.subject) == GOLDEN_NCAT_TEXT
    assert certificate.organization == "BMP Org"  # decoded: ncat printed nothing of it
    assert certificate.subject.get("1.2.3.4") == "foo"
    assert certificate.subject.get("emailAddress") is None


def test_a_name_of_a_string_type_openssl_does_not_read_is_malformed() -> None:
    name = crypto.Name([crypto.NameAttribute(NameOID.COMMON_NAME, "x", _ASN1Type.VisibleString)])
    with pytest.raises(MalformedCertificate, match="not a string"):
        Certificate(issue(name).der)


def test_a_bmp_string_beyond_the_basic_plane_is_malformed_as_openssl_has_it() -> None:
    name = crypto.Name([crypto.NameAttribute(NameOID.COMMON_NAME, "\U00010000", _ASN1Type.BMPString)])
    der = issue(name).der
    with pytest.raises(subprocess.CalledProcessError):
        openssl_fields(der)
    with pytest.raises(MalformedCertificate, match="surrogate"):
        Certificate(der)


def test_every_short_name_is_openssls() -> None:
    for dotted, short in SHORT_NAMES.items():
        assert ssl._ssl.txt2obj(dotted, False)[1] == short  # type: ignore[attr-defined]


_UNICODE = st.characters(codec="utf-8")
_PRINTABLE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
#: Each string type and the characters cryptography writes in it.
_STRING_KINDS = {
    _ASN1Type.UTF8String: _UNICODE,
    _ASN1Type.UniversalString: _UNICODE,
    _ASN1Type.BMPString: st.characters(codec="utf-8", max_codepoint=0xFFFF),
    _ASN1Type.PrintableString: st.sampled_from(_PRINTABLE),
    _ASN1Type.IA5String: st.characters(max_codepoint=0x7F),
    _ASN1Type.T61String: st.characters(max_codepoint=0x7F),
    _ASN1Type.NumericString: st.characters(max_codepoint=0x7F),
}
#: Every attribute with a short name but the two-letter country codes, and some without.
_OIDS = [oid for oid, short in SHORT_NAMES.items() if short not in {"C", "jurisdictionC"}]
_OIDS += ["1.2.3.4", "1.3.6.1.4.1.99999.12345678901"]


@st.composite
def attributes(draw: st.DrawFn) -> crypto.NameAttribute:
    kind = draw(st.sampled_from(list(_STRING_KINDS)))
    value = draw(st.text(_STRING_KINDS[kind], min_size=1, max_size=12))
    return crypto.NameAttribute(crypto.ObjectIdentifier(draw(st.sampled_from(_OIDS))), value, kind)


names = st.lists(
    st.lists(attributes(), min_size=1, max_size=3, unique_by=lambda attribute: attribute.oid).map(
        crypto.RelativeDistinguishedName
    ),
    min_size=1,
    max_size=5,
).map(crypto.Name)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(names)
@example(AWKWARD_NAME)
def test_any_name_reads_as_openssl_prints_it(name: crypto.Name) -> None:
    assert_reads_as_openssl_does(issue(name).der)


times = st.datetimes(
    min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(9999, 12, 31), timezones=st.just(datetime.UTC)
).map(lambda moment: moment.replace(microsecond=0))


@settings(max_examples=20)
@given(times, times)
@example(
    datetime.datetime(1950, 1, 1, tzinfo=datetime.UTC), datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
)
@example(
    datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC), datetime.datetime(2050, 1, 1, tzinfo=datetime.UTC)
)
@example(datetime.datetime(2000, 2, 29, tzinfo=datetime.UTC), datetime.datetime(2100, 3, 1, tzinfo=datetime.UTC))
def test_validity_times_in_utc_and_generalized_time_read_as_openssl_prints_them(
    start: datetime.datetime, end: datetime.datetime
) -> None:
    start, end = sorted((start, end))
    assume(start < end)
    certificate = assert_reads_as_openssl_does(issue("times", not_before=start, not_after=end).der)
    assert (certificate.not_before, certificate.not_after) == (int(start.timestamp()), int(end.timestamp()))


# -- names compared as OpenSSL compares them ------------------------------------------------


def _name_of(*attributes: crypto.NameAttribute) -> Name:
    return Certificate(issue(crypto.Name(attributes)).der).subject


def test_names_compare_without_case_spaces_or_string_type() -> None:
    printable = _name_of(attribute(NameOID.COMMON_NAME, "  Enchufe   Test CA ", _ASN1Type.PrintableString))
    ia5 = _name_of(attribute(NameOID.COMMON_NAME, "Enchufe\t\r\nTest\vCA\f", _ASN1Type.IA5String))
    utf8 = _name_of(attribute(NameOID.COMMON_NAME, "enchufe test ca"))
    bmp = _name_of(attribute(NameOID.COMMON_NAME, "ENCHUFE TEST CA", _ASN1Type.BMPString))
    assert printable == ia5 == utf8 == bmp
    assert len({printable, ia5, utf8, bmp}) == 1
    assert utf8 != _name_of(attribute(NameOID.ORGANIZATION_NAME, "enchufe test ca"))  # another attribute
    assert utf8 != _name_of(attribute(NameOID.COMMON_NAME, "enchufe testca"))
    assert _name_of(attribute(NameOID.COMMON_NAME, "\u00c9")) != _name_of(attribute(NameOID.COMMON_NAME, "\u00e9"))


def test_an_issuer_written_in_another_form_still_finds_its_ca(tmp_path: Path) -> None:
    """The same comparison as OpenSSL's: a real handshake builds the chain with it."""
    ca = issue(crypto.Name([attribute(NameOID.COMMON_NAME, "Enchufe  Test CA", _ASN1Type.PrintableString)]), ca=True)
    other_form = crypto.Name([attribute(NameOID.COMMON_NAME, " enchufe test ca")])
    leaf = issue("localhost", issuer=ca, issuer_name=other_form, dns=["localhost"])
    assert verify_by_handshake(tmp_path, [leaf], [ca], "localhost") is None
    certificate = Certificate(leaf.der)
    assert certificate.issuer == Certificate(ca.der).subject
    assert (
        problems(certificate, host="localhost", now=NOW.timestamp(), trusted_subjects={certificate.issuer}, chain=[])
        == []
    )


# -- judging, held to real verifying handshakes ------------------------------------------


@pytest.fixture(scope="module")
def authorities() -> dict[str, Issued]:
    root = issue("Enchufe Root", ca=True)
    intermediate = issue("Enchufe Intermediate", issuer=root, ca=True)
    first_a = issue("Loop A", ca=True)
    loop_b = issue("Loop B", issuer=first_a, ca=True)
    loop_a = issue("Loop A", issuer=loop_b, ca=True, key=first_a.key)  # A by B, B by A
    return {
        "loop A": loop_a,
        "loop B": loop_b,
        "root": root,
        "intermediate": intermediate,
        "stranger": issue("Nobody Trusts This", ca=True),
        "alone": issue("localhost", dns=["localhost"]),
        "old alone": issue("localhost", dns=["localhost"], **_EXPIRED),
    }


def mismatch(host: str) -> str:
    return f"Hostname mismatch, certificate is not valid for '{host}'."


def _leaf(authorities: dict[str, Issued], issuer: str, **dates: datetime.datetime) -> Issued:
    return issue(
        "server", issuer=authorities[issuer], dns=["localhost", "*.example.test"], ips=["127.0.0.1", "::1"], **dates
    )  # type: ignore[arg-type]


_EXPIRED = {"not_before": NOW - 30 * DAY, "not_after": NOW - DAY}
_FUTURE = {"not_before": NOW + DAY, "not_after": NOW + 30 * DAY}
#: Each scenario: what the server sends (its certificate first), what the client
#: trusts, the host it asks for, and the problems expected, from the authorities.
Scenario = tuple[list[Issued], list[str], str, list[str]]
SCENARIOS: dict[str, Callable[[dict[str, Issued]], Scenario]] = {
    "trusted": lambda a: ([_leaf(a, "root")], ["root"], "localhost", []),
    "trusted-ipv4": lambda a: ([_leaf(a, "root")], ["root"], "127.0.0.1", []),
    "trusted-ipv6": lambda a: ([_leaf(a, "root")], ["root"], "::1", []),
    "wildcard": lambda a: ([_leaf(a, "root")], ["root"], "www.EXAMPLE.test", []),
    "wildcard-not-the-parent": lambda a: ([_leaf(a, "root")], ["root"], "example.test", [mismatch("example.test")]),
    "wildcard-one-label": lambda a: ([_leaf(a, "root")], ["root"], "a.b.example.test", [mismatch("a.b.example.test")]),
    "other-address": lambda a: (
        [_leaf(a, "root")],
        ["root"],
        "127.0.0.2",
        ["IP address mismatch, certificate is not valid for '127.0.0.2'."],
    ),
    "untrusted-ca": lambda a: (
        [_leaf(a, "root")],
        ["stranger"],
        "localhost",
        ["unable to get local issuer certificate"],
    ),
    "via-intermediate": lambda a: ([_leaf(a, "intermediate"), a["intermediate"]], ["root"], "localhost", []),
    "intermediate-missing": lambda a: (
        [_leaf(a, "intermediate")],
        ["root"],
        "localhost",
        ["unable to get local issuer certificate"],
    ),
    "untrusted-root-sent": lambda a: (
        [_leaf(a, "intermediate"), a["intermediate"], a["root"]],
        ["stranger"],
        "localhost",
        ["self-signed certificate in certificate chain"],
    ),
    "expired": lambda a: ([_leaf(a, "root", **_EXPIRED)], ["root"], "localhost", ["certificate has expired"]),
    "expired-and-mismatched": lambda a: (
        [_leaf(a, "root", **_EXPIRED)],
        ["root"],
        "example.test",
        [mismatch("example.test"), "certificate has expired"],
    ),
    "not-yet-valid": lambda a: ([_leaf(a, "root", **_FUTURE)], ["root"], "localhost", ["certificate is not yet valid"]),
    "self-signed": lambda a: ([a["alone"]], ["stranger"], "localhost", ["self-signed certificate"]),
    "named-as-its-issuer": lambda a: (  # issuer == subject, but its key identifier says another key signed it
        [issue("Enchufe Root", issuer=a["root"], dns=["localhost"])],
        ["stranger"],
        "localhost",
        ["unable to get local issuer certificate"],
    ),
    "a-loop-of-cas": lambda a: (
        [_leaf(a, "loop A"), a["loop A"], a["loop B"]],
        ["stranger"],
        "localhost",
        ["unable to get local issuer certificate"],
    ),
    "named-as-its-trusted-issuer": lambda a: (
        [issue("Enchufe Root", issuer=a["root"], dns=["localhost"])],
        ["root"],
        "localhost",
        [],
    ),
    "self-signed-trusted": lambda a: ([a["alone"]], ["alone"], "localhost", []),
    "self-signed-trusted-mismatched": lambda a: ([a["alone"]], ["alone"], "example.test", [mismatch("example.test")]),
    "self-signed-expired-mismatched": lambda a: (
        [a["old alone"]],
        ["stranger"],
        "example.test",
        ["self-signed certificate", mismatch("example.test"), "certificate has expired"],
    ),
}


def _judge(authorities: dict[str, Issued], scenario: str, *, chain_known: bool) -> tuple[list[str], Scenario]:
    sent, trusted, host, expected = SCENARIOS[scenario](authorities)
    leaf, *chain = (Certificate(issued.der) for issued in sent)
    trusted_subjects = {Certificate(authorities[name].der).subject for name in trusted}
    judged = problems(
        leaf, host=host, now=NOW.timestamp(), trusted_subjects=trusted_subjects, chain=chain if chain_known else None
    )
    return judged, (sent, trusted, host, expected)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_problems_are_what_a_verifying_handshake_fails_with(
    authorities: dict[str, Issued], scenario: str, tmp_path: Path
) -> None:
    judged, (sent, trusted, host, expected) = _judge(authorities, scenario, chain_known=True)
    assert judged == expected
    verified = verify_by_handshake(tmp_path, sent, [authorities[name] for name in trusted], host)
    assert verified == (judged[0] if judged else None)


@pytest.mark.parametrize(
    "scenario", ["untrusted-ca", "intermediate-missing", "via-intermediate", "untrusted-root-sent", "self-signed"]
)
def test_without_the_chain_only_a_self_signed_certificate_is_judged_untrusted(
    authorities: dict[str, Issued], scenario: str
) -> None:
    judged, (_, _, _, expected) = _judge(authorities, scenario, chain_known=False)
    assert judged == (expected if scenario == "self-signed" else [])


def test_validity_is_judged_to_the_second() -> None:
    certificate = Certificate(issue("x", not_before=NOW - DAY, not_after=NOW + DAY).der)
    start, end = certificate.not_before, certificate.not_after

    def judged(now: float) -> list[str]:
        return problems(certificate, host=None, now=now, trusted_subjects={certificate.subject})

    assert judged(start - 0.5) == ["certificate is not yet valid"]
    assert judged(start) == judged(end - 0.5) == []
    assert judged(end) == ["certificate has expired"]


#: (subjectAltName DNS names, subject CN, host, whether it matches)
HOST_CASES = [
    (["*.example.test"], "x", "a.example.test", True),
    (["*.example.test"], "x", "A.Example.TEST", True),
    (["*.example.test"], "x", "example.test", False),
    (["*.example.test"], "x", "a.b.example.test", False),
    (["*.test"], "x", "a.test", False),  # never for the last two labels
    (["f*.example.test"], "x", "foo.example.test", False),  # no partial wildcards
    (["*oo.example.test"], "x", "foo.example.test", False),
    (["a.*.example.test"], "x", "a.b.example.test", False),
    (["*.-example.test"], "x", "a.-example.test", False),  # a label may not start with a hyphen ...
    (["*.example-.test"], "x", "a.example-.test", False),  # ... nor end with one
    (["*.ex-ample.test"], "x", "a.ex-ample.test", True),
    (["*.example.test"], "x", "*.example.test", True),  # the wildcard matches a literal "*"
    (["*.example.test"], "x", "a_b.example.test", False),
    (["*.example.test"], "x", "xn--bcher-kva.example.test", True),
    (["xn--bcher-kva.example"], "x", "b\u00fccher.example", True),  # sent and checked as its A-label
    (["localhost"], "x", "localhost.", False),
    (["LOCALHOST"], "x", "localhost", True),
    (["other.test"], "localhost", "localhost", False),  # the CN only counts without DNS names
    ([], "localhost", "localhost", True),
    ([], "*.example.test", "a.example.test", True),
    ([], "127.0.0.1", "127.0.0.1", False),  # an address is never checked against the CN
]


@pytest.mark.parametrize(("dns", "cn", "host", "matches"), HOST_CASES)
def test_host_names_match_as_pythons_ssl_checks_them(
    authorities: dict[str, Issued], tmp_path: Path, dns: list[str], cn: str, host: str, matches: bool
) -> None:
    root = authorities["root"]
    leaf = issue(cn, issuer=root, dns=dns)
    verified = verify_by_handshake(tmp_path, [leaf], [root], host)
    assert (verified is None) == matches, verified
    assert Certificate(leaf.der).is_valid_for(host) == matches


@pytest.mark.parametrize(
    ("host", "matches"),
    [("localhost", True), ("127.0.0.1", True), ("::1", False), ("fe80::1", True), ("fe80::1%lo", False)],
)
def test_an_ip_only_certificate_falls_back_to_the_cn_for_names(
    authorities: dict[str, Issued], tmp_path: Path, host: str, matches: bool
) -> None:
    """The CN is checked when there is no DNS name; a scoped address is a name to ssl."""
    root = authorities["root"]
    leaf = issue("localhost", issuer=root, ips=["127.0.0.1", "fe80::1"])
    verified = verify_by_handshake(tmp_path, [leaf], [root], host)
    assert (verified is None) == matches, verified
    assert Certificate(leaf.der).is_valid_for(host) == matches


def test_a_wildcard_matches_one_character_at_least() -> None:
    certificate = Certificate(issue("x", dns=["*.example.test"]).der)
    assert not certificate.is_valid_for(".example.test")  # no client sends it: ssl refuses such a name
    assert certificate.is_valid_for("a.example.test")


# -- malformed input: one error, never another ------------------------------------------------


def _real_ders() -> list[bytes]:
    return [issue(AWKWARD_NAME, dns=["localhost", "*.a.test"], ips=["127.0.0.1", "::1"]).der, issue("plain").der]


REAL = _real_ders()


def _judge_everything(der: bytes) -> None:
    """Read ``der``; if it reads, everything the module offers works on it."""
    try:
        certificate = Certificate(der)
    except MalformedCertificate:
        return
    shown = (str(certificate.subject), certificate.subject.oneline, str(certificate.issuer), repr(certificate))
    assert all(isinstance(text, str) for text in shown)
    assert all(isinstance(address, str) for address in certificate.ip_addresses)
    assert certificate.organization is None or isinstance(certificate.organization, str)
    for host in ("localhost", "127.0.0.1", "a.a.test", "\u00e9.test"):
        problems(certificate, host=host, now=0.0, trusted_subjects={certificate.issuer}, chain=[certificate])


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_are_malformed_or_read(data: bytes) -> None:
    _judge_everything(data)


@settings(max_examples=500)
@given(st.sampled_from(REAL), st.data())
def test_damaged_certificates_are_malformed_or_read(der: bytes, data: st.DataObject) -> None:
    damaged = bytearray(der)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(damaged) - 1))
        how = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if how == "flip":
            damaged[where] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "set":
            damaged[where] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF, 0x1F]))
        elif how == "insert":
            damaged[where:where] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(damaged) > 1:
            del damaged[where]
    _judge_everything(bytes(damaged))


@settings(max_examples=200)
@given(st.sampled_from(REAL), st.data())
def test_truncated_certificates_are_malformed(der: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(der) - 1))
    with pytest.raises(MalformedCertificate):
        Certificate(der[:cut])


def _replace(der: bytes, old: bytes, new: bytes) -> bytes:
    assert old in der
    return der.replace(old, new)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda der: der + b"\0", "unexpected bytes after the certificate"),
        (lambda der: b"\x30\x80" + der[4:], "no length"),
        (lambda der: _replace(der, b"\x0c\x05plain", b"\x1f\x05plain"), "tag number"),
        (lambda der: der[:1] + b"\x85" + der[1:], "bad length"),
        (lambda der: _replace(der, b"\x0c\x05plain", b"\x0c\x05pl\xffin"), "invalid start byte"),
        (lambda der: _replace(der, b"\x0c\x05plain", b"\x1e\x05plain"), "truncated data"),  # odd-length BMPString
        (lambda der: _replace(der, b"\x0c\x05plain", b"\x04\x05plain"), "not a string"),
        (lambda der: _replace(der, b"\x06\x03\x55\x04\x03", b"\x06\x03\x55\x04\x83"), "object identifier"),
        (lambda der: _replace(der, b"\x06\x03\x55\x04\x03", b"\x06\x03\x55\x80\x03"), "object identifier"),
    ],
)
def test_each_kind_of_damage_is_named(damage: object, reason: str) -> None:
    with pytest.raises(MalformedCertificate, match=reason):
        Certificate(damage(REAL[1]))  # type: ignore[operator]


def _elements(data: bytes) -> list[tuple[int, bytes]]:
    """The DER elements of ``data``: (tag, contents)."""
    found = []
    while data:
        tag, length, start = data[0], data[1], 2
        if length & 0x80:
            start += length & 0x7F
            length = int.from_bytes(data[2:start], "big")
        found.append((tag, data[start : start + length]))
        data = data[start + length :]
    return found


def _encode(tag: int, contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        return bytes([tag, length]) + contents
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + contents


def _rebuilt(
    der: bytes, change: Callable[[list[tuple[int, bytes]]], None], signer: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    """``der`` with its TBSCertificate's fields changed by ``change`` (in place), every
    length made right again, and signed again by ``signer`` (else the signature no
    longer matches, which no reader checks)."""
    [(_, certificate)] = _elements(der)
    (_, tbs), algorithm, signature = _elements(certificate)
    fields = _elements(tbs)
    change(fields)
    tbs = _encode(0x30, b"".join(_encode(*field) for field in fields))
    if signer is not None:
        signature = (0x03, b"\0" + signer.sign(tbs, ec.ECDSA(hashes.SHA256())))
    return _encode(0x30, tbs + _encode(*algorithm) + _encode(*signature))


def _with_validity(der: bytes, not_before: tuple[int, bytes]) -> bytes:
    def change(fields: list[tuple[int, bytes]]) -> None:
        _, not_after = _elements(fields[4][1])
        fields[4] = (0x30, _encode(*not_before) + _encode(*not_after))

    return _rebuilt(der, change)


def test_the_der_helpers_rebuild_a_certificate_as_it_was() -> None:
    assert _rebuilt(REAL[0], lambda fields: None) == REAL[0]


def test_generalized_time_before_1950_reads_as_openssl_prints_it() -> None:
    der = _with_validity(REAL[1], (0x18, b"19491231235959Z"))
    assert assert_reads_as_openssl_does(der).not_before == -631152001


@pytest.mark.parametrize(
    "not_before",
    [
        (0x17, b"200102030405+0100"),
        (0x17, b"2001020304Z"),
        (0x18, b"20200102030405.5Z"),
        (0x17, b"201302030405Z"),
        (0x17, b"200230030405Z"),
        (0x18, b"21000229030405Z"),  # 2100 is no leap year
        (0x17, b"210229030405Z"),
        (0x17, b"200102240405Z"),
        (0x17, b"20010203046aZ"),
        (0x17, b"\xff00102030405"),
        (0x04, b"200102030405Z"),
    ],
)
def test_a_validity_time_must_be_in_rfc_5280s_form(not_before: tuple[int, bytes]) -> None:
    with pytest.raises(MalformedCertificate, match="validity time"):
        Certificate(_with_validity(REAL[1], not_before))


def test_the_attributes_of_a_part_compare_in_any_order(tmp_path: Path) -> None:
    """OpenSSL compares a multi-valued part as a set: a certificate whose issuer lists
    the CA's two attributes the other way round still finds its CA."""
    part = crypto.RelativeDistinguishedName(
        [attribute(NameOID.COMMON_NAME, "Two"), attribute(NameOID.ORGANIZATION_NAME, "Part CA")]
    )
    ca = issue(crypto.Name([part]), ca=True)
    leaf = issue("localhost", issuer=ca, dns=["localhost"])

    def swap_the_issuers_attributes(fields: list[tuple[int, bytes]]) -> None:
        [(_, attributes)] = _elements(fields[3][1])
        fields[3] = (0x30, _encode(0x31, b"".join(_encode(*item) for item in reversed(_elements(attributes)))))

    swapped = _rebuilt(leaf.der, swap_the_issuers_attributes, signer=ca.key)
    issuer, subject = Certificate(swapped).issuer, Certificate(ca.der).subject
    assert issuer.attributes == tuple(reversed(subject.attributes))
    assert issuer == subject
    assert hash(issuer) == hash(subject)
    resigned = Issued(swapped, leaf.key)
    assert verify_by_handshake(tmp_path, [resigned], [ca], "localhost") is None


def test_an_empty_part_of_a_name_reads_as_openssl_reads_it() -> None:
    def add_an_empty_part(fields: list[tuple[int, bytes]]) -> None:
        fields[5] = (0x30, _encode(0x31, b"") + fields[5][1])

    certificate = assert_reads_as_openssl_does(_rebuilt(REAL[1], add_an_empty_part))
    assert certificate.subject == certificate.issuer


def test_an_alt_name_address_of_another_length_is_left_out() -> None:
    """An 8-byte iPAddress (a name constraint's form) names no address: OpenSSL prints
    it as ``<invalid length=8>`` and never matches it."""

    def lengthen_the_address(fields: list[tuple[int, bytes]]) -> None:
        [(_, extensions)] = _elements(fields[-1][1])
        rebuilt = []
        for _, extension in _elements(extensions):
            parts = _elements(extension)
            if parts[0] == (0x06, b"\x55\x1d\x11"):  # subjectAltName
                [(_, names)] = _elements(parts[-1][1])
                longer = [(tag, value + b"\xff\0\0\0" if tag == 0x87 else value) for tag, value in _elements(names)]
                parts[-1] = (0x04, _encode(0x30, b"".join(_encode(*name) for name in longer)))
            rebuilt.append(_encode(0x30, b"".join(_encode(*part) for part in parts)))
        fields[-1] = (0xA3, _encode(0x30, b"".join(rebuilt)))

    damaged = _rebuilt(issue("x", ips=["127.0.0.1"]).der, lengthen_the_address)
    assert openssl_fields(damaged).alt_names == "IP Address:<invalid length=8>"
    assert Certificate(damaged).ip_addresses == ()
    assert not Certificate(damaged).is_valid_for("127.0.0.1")


def test_a_repeated_extension_is_malformed() -> None:
    def repeat_extensions(fields: list[tuple[int, bytes]]) -> None:
        [(_, extensions)] = _elements(fields[-1][1])
        repeated = b"".join(_encode(*extension) * 2 for extension in _elements(extensions))
        fields[-1] = (0xA3, _encode(0x30, repeated))

    with pytest.raises(MalformedCertificate, match="appears twice"):
        Certificate(_rebuilt(REAL[1], repeat_extensions))
