"""scripts/soak.py in small: a few hundred churned clients per server kind leave each
server's descriptors and threads (its children's too) where they were after the first
round. The run by hand (``--minutes 10``) adds time and the RSS slope."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


soak = load_soak()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", list(soak.kinds(0)))
def test_churned_clients_leave_nothing_behind(kind: str) -> None:
    lines: list[str] = []
    failures = soak.soak(minutes=1.0, connections=100, only=[kind], rounds=2, report=lines.append)
    assert failures == [], "\n".join(lines)
    assert "2 rounds of 100 connections" in lines[-2], lines
