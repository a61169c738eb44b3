"""The public surface of ``import enchufe`` is pinned here."""

from __future__ import annotations

import subprocess
import sys

import enchufe


def test_every_exported_name_resolves() -> None:
    for name in enchufe.__all__:
        assert getattr(enchufe, name) is not None, name


def test_all_matches_the_lazy_export_table() -> None:
    assert set(enchufe.__all__) == {"__version__", *enchufe._EXPORTS}


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        enchufe.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_imports_no_socket_code() -> None:
    """Start-up cost: the command's --version path must not pay for the library."""
    code = "import sys, enchufe; print(sorted(m for m in sys.modules if m.startswith('enchufe') or m == 'socket'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == "['enchufe']"
