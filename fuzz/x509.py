"""Fuzz enchufe.proto.x509: DER certificates, and judging them.

Invariant: ``Certificate(der)`` reads or raises ``MalformedCertificate``, nothing else;
a certificate read answers every question (names and their texts, validity, alt names,
fingerprint, host checks, ``problems``) without raising; its names equal themselves and
the fingerprint is SHA-1's 20 bytes as 40 hex digits in groups of four.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import MalformedCertificate
    from enchufe.proto.x509 import Certificate, problems

_HOSTS = ("localhost", "127.0.0.1", "::1", "a.example.org", "xn--nxasmq6b.example", "")


def check(data: bytes) -> None:
    try:
        certificate = Certificate(data)
    except MalformedCertificate:
        return
    for name in (certificate.subject, certificate.issuer):
        assert name == name and isinstance(str(name), str) and isinstance(name.oneline, str)
        name.get("CN")
    assert isinstance(certificate.not_before, int | float) and isinstance(certificate.not_after, int | float)
    assert all(isinstance(name, str) for name in certificate.dns_names)
    assert all(isinstance(address, str) for address in certificate.ip_addresses)
    certificate.organization  # noqa: B018 - a property that reads the subject
    assert isinstance(certificate.self_issued, bool)
    assert len(certificate.sha1_fingerprint.replace(" ", "")) == 40
    for host in _HOSTS:
        assert isinstance(certificate.is_valid_for(host), bool)
        found = problems(
            certificate,
            host=host,
            now=certificate.not_before,
            trusted_subjects={certificate.issuer},
            chain=[certificate],
        )
        assert all(isinstance(problem, str) for problem in found)
    repr(certificate)


if __name__ == "__main__":
    fuzzing.main(check)
