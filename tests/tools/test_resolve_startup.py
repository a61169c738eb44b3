"""enchufe-resolve's start-up: --version and --help import nothing heavy (as
tests/test_startup.py pins for enchufe itself); a lookup pays for socket and threads."""

from __future__ import annotations

import subprocess
import sys

from test_startup import HEAVY, SRC


def modules_loaded_by(argv: list[str]) -> set[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from enchufe.cli.resolve import main; "
        f"status = main({argv!r}); loaded = sorted(m for m in {HEAVY!r} if m in sys.modules); "
        "print(file=sys.stderr); print(status, *loaded, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    status, *loaded = result.stderr.splitlines()[-1].split()
    assert status == "0", result
    return set(loaded)


def test_version_and_help_import_nothing_heavy() -> None:
    assert modules_loaded_by(["--version"]) == set()
    assert modules_loaded_by(["-h"]) == set()


def test_a_literal_lookup_needs_socket_and_threading_only() -> None:
    assert modules_loaded_by(["-n", "127.0.0.1"]) <= {"socket", "threading", "enum"}
