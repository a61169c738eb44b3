"""Every fuzz harness's ``check`` over its committed corpus: the fuzzers' findings stay fixed.

No atheris here: a harness imported (rather than run as a script) is a plain function.
Each harness in fuzz/ must have a corpus, and each corpus a harness.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = sorted(path.stem for path in FUZZ.glob("*.py") if path.stem != "fuzzing")


@pytest.fixture
def fuzz_path() -> Iterator[None]:
    sys.path.insert(0, str(FUZZ))
    try:
        yield
    finally:
        sys.path.remove(str(FUZZ))


def load(name: str) -> ModuleType:
    # fuzz/<name>.py under a name of its own: fuzz/socks.py must not become "socks"
    spec = importlib.util.spec_from_file_location(f"fuzz_harness_{name}", FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_harness_has_a_corpus_and_every_corpus_a_harness() -> None:
    corpora = sorted(path.name for path in (FUZZ / "corpus").iterdir())
    assert corpora == HARNESSES
    for name in corpora:
        assert any((FUZZ / "corpus" / name).iterdir()), name


@pytest.mark.usefixtures("fuzz_path")
@pytest.mark.parametrize("name", HARNESSES)
def test_the_harness_holds_over_its_corpus(name: str) -> None:
    harness = load(name)
    assert harness.__doc__ and "Invariant" in harness.__doc__, f"fuzz/{name}.py states no invariant"
    for path in sorted((FUZZ / "corpus" / name).iterdir()):
        harness.check(path.read_bytes())
