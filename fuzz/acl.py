"""Fuzz enchufe.acl: host specifications, the lists they build, and matching peers.

Invariant: ``HostSpec.parse``, ``AccessList.allow``/``deny``/``allow_file`` and
``permits`` give a value or raise ``AddressError``, nothing else; a numeric
specification (not a name) matches its own network's first address; a list that
allows a spec and denies it too permits nobody it names (deny wins).
"""

from __future__ import annotations

import contextlib

import fuzzing

with fuzzing.instrumented():
    from enchufe.acl import AccessList, HostSpec
    from enchufe.errors import AddressError


def _resolve(name: str) -> list[str]:
    """A resolver without I/O: every name is these two addresses."""
    return ["192.0.2.1", "2001:db8::1"]


def check(data: bytes) -> None:
    spec_text, _, peer = fuzzing.text(data).partition("\n")
    for resolve in (None, _resolve):
        try:
            spec = HostSpec.parse(spec_text, resolve)
        except AddressError:
            continue
        if spec.octets is None and resolve is None:
            for network in spec.networks:
                assert spec.matches(str(network.network_address)), (spec_text, network)
    access = AccessList(resolve=_resolve)
    for add in (access.allow, access.deny, lambda text: access.allow_file(text, "fuzzed")):
        with contextlib.suppress(AddressError):
            add(spec_text)
    try:
        permitted = access.permits(peer)
    except AddressError:
        return
    assert isinstance(permitted, bool)


if __name__ == "__main__":
    fuzzing.main(check)
