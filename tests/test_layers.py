"""The layer rules of ARCHITECTURE.md, enforced on the source's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "enchufe"

#: Each layer and the enchufe modules it may import (its own layer included).
LAYERS = {
    "core": {"core"},
    "proto": {"core", "proto"},
    "net": {"core", "proto", "net"},
    "serve": {"core", "proto", "net", "serve"},
    "tools": {"core", "proto", "net", "serve", "tools"},
    "cli": {"core", "proto", "net", "serve", "tools", "cli", "package"},
    "package": {"core", "proto", "net", "serve", "tools", "cli", "package"},
}
#: ``python -m enchufe.<tool>``: the tools' commands, launchers like ``__main__``.
TOOL_LAUNCHERS = {"ping", "scan", "resolve", "bench", "relay"}
#: What the sans-IO layer must never import: it sees bytes, not the world.
PROTO_FORBIDDEN = {"socket", "ssl", "select", "selectors", "threading", "time", "subprocess", "os", "sys"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "enchufe"
    if len(parts) == 1 or parts[1] in {"__init__", "__main__", *TOOL_LAUNCHERS}:
        return "package"
    if parts[1] in {"proto", "net", "serve", "tools", "cli"}:
        return parts[1]
    return "core"


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        found.append((name, path))
    return found


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[name for name, _ in modules()])
def test_imports_point_down_the_stack(module: str, path: Path) -> None:
    layer = layer_of(module)
    for imported in imports_of(path):
        if imported.split(".")[0] != "enchufe":
            continue
        if imported == "enchufe" and layer != "package":
            # only __version__, read lazily by the cli, may come from the package itself
            assert layer == "cli", f"{module} imports the enchufe package: import from the defining module"
            continue
        assert layer_of(imported) in LAYERS[layer], f"{module} ({layer}) must not import {imported}"


@pytest.mark.parametrize(("module", "path"), [m for m in modules() if layer_of(m[0]) == "proto"], ids=lambda v: str(v))
def test_proto_is_sans_io(module: str, path: Path) -> None:
    stdlib = {name.split(".")[0] for name in imports_of(path)}
    assert not stdlib & PROTO_FORBIDDEN, f"{module} imports {stdlib & PROTO_FORBIDDEN}"


def test_nothing_imports_the_cli_but_main() -> None:
    for module, path in modules():
        if layer_of(module) in {"cli", "package"}:
            continue
        assert not any(name.startswith("enchufe.cli") for name in imports_of(path)), module
