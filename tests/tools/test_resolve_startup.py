"""enchufe-resolve's start-up: --version and --help import nothing heavy (as
tests/test_startup.py pins for enchufe itself); a lookup pays for socket and threads."""

from __future__ import annotations

from test_startup import modules_loaded_by

RESOLVE = "enchufe.cli.resolve"


def test_version_and_help_import_nothing_heavy() -> None:
    assert modules_loaded_by(["--version"], RESOLVE) == set()
    assert modules_loaded_by(["-h"], RESOLVE) == set()


def test_a_literal_lookup_needs_socket_and_threading_only() -> None:
    assert modules_loaded_by(["-n", "127.0.0.1"], RESOLVE) <= {"socket", "threading", "enum"}
