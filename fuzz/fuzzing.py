"""What every harness in fuzz/ shares: instrumenting enchufe, running atheris, slicing input.

A harness is one file, ``fuzz/<name>.py``, with a module docstring that states its
invariant, a ``check(data: bytes) -> None`` that raises only when the invariant is
broken, and the three lines at its bottom that hand ``check`` to :func:`main`. Run as a
script it fuzzes under atheris (coverage-guided; enchufe's modules imported inside
:func:`instrumented` are instrumented); imported (tests/test_fuzz_harnesses.py) it is a
plain function over the committed corpus, and atheris is never imported.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

_HERE = Path(__file__).resolve().parent
_SOURCES = str(_HERE.parent / "src")
if _SOURCES not in sys.path:
    sys.path.insert(0, _SOURCES)  # the tree's own enchufe, not an installed one


def _fuzzing() -> bool:
    """Whether a harness of this directory is the script being run (not imported)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is not None and Path(main_file).resolve().parent == _HERE


def instrumented() -> AbstractContextManager[object]:
    """A context to import enchufe's modules in: atheris instruments them for coverage
    when fuzzing, and nothing happens otherwise."""
    if not _fuzzing():
        return contextlib.nullcontext()
    import atheris  # type: ignore[import-untyped]

    return atheris.instrument_imports(include=["enchufe"])  # type: ignore[no-any-return]


def main(check: Callable[[bytes], None]) -> None:
    """Fuzz ``check`` with atheris, libFuzzer's options and corpus directories from argv."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def text(data: bytes) -> str:
    """The bytes as text the way Python decodes argv: UTF-8, other bytes as surrogates."""
    return data.decode("utf-8", "surrogateescape")


def pieces(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split ``data`` into its first byte's choice and the rest cut in pieces of 1 to 16
    bytes (that choice's low four bits + 1), for parsers fed as bytes arrive."""
    if not data:
        return b"", []
    size = data[0] % 16 + 1
    rest = data[1:]
    return data[:1], [rest[i : i + size] for i in range(0, len(rest), size)]


def drive_negotiator(negotiator: object, choice: bytes, pieces: list[bytes]) -> list[object]:
    """Feed a proxy server's negotiator (``enchufe.proto.proxy.ProxyNegotiator``) the
    client's pieces then its end of stream, as ``serve/proxy_server`` does, answering each
    ``OpenUpstream`` as ``choice`` says (connected, or one of the failures); return every
    action. Checks the vocabulary's rules: only its actions, one upstream at a time,
    nothing after ``Close``, nothing read after ``StartTunnel``."""
    from enchufe.proto import proxy

    kinds = (proxy.Reply, proxy.OpenUpstream, proxy.SendUpstream, proxy.StartTunnel, proxy.RelayResponse, proxy.Close)
    failures = sorted(proxy.UPSTREAM_FAILURES)
    outcome = choice[0] if choice else 0
    actions: list[object] = []

    def take(new: list[object]) -> None:
        assert all(isinstance(action, kinds) for action in new), new
        if any(isinstance(action, proxy.Close) for action in actions):
            assert not new, (actions, new)
        actions.extend(new)
        for action in new:
            if isinstance(action, proxy.OpenUpstream):
                assert isinstance(action.host, str) and 0 <= action.port <= 65535, action
                if outcome & 1:
                    take(negotiator.upstream_connected("127.0.0.1", 4242))  # type: ignore[attr-defined]
                else:
                    take(negotiator.upstream_failed(failures[outcome // 2 % len(failures)]))  # type: ignore[attr-defined]

    take(negotiator.accepted())  # type: ignore[attr-defined]
    for piece in [*pieces, b""]:
        if any(isinstance(action, proxy.StartTunnel) for action in actions):
            break  # the tunnel has the client's bytes from here on
        take(negotiator.receive_data(piece))  # type: ignore[attr-defined]
    return actions
