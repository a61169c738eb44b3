"""The machine-readable side of every benchmark: a ``Results`` recorder and its file.

Each benchmark script keeps printing its Markdown and, given ``--json PATH``
(``add_json_option``), also writes what it measured as one JSON document::

    {"benchmark": "throughput", "reference": "ncat",
     "measurements": [{"benchmark": ..., "case": ..., "tool": ..., "metric": ...,
                       "unit": ..., "value": ..., "runs": [...], "better": "higher"}],
     "problems": ["..."]}

Invariants:

- ``value`` is what the script's own table shows for the row (usually the median of
  ``runs``); ``runs`` are the raw timed runs behind it, in the order they ran.
- A measurement is identified by (benchmark, case, tool, metric): ``compare`` matches
  two results on that key, the charts group by it.
- ``better`` says which way is good ("higher" for rates, "lower" for times and memory),
  so a comparison can say which ratio is a regression.
- ``reference`` names the tool that ratios are taken against (ncat, socat, iperf3...);
  it may be absent for benchmarks that compare variants of enchufe only.

Standard library only: the suite's tests import it without the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Measurement:
    """One row of a benchmark's table: a tool's figure for one case and metric."""

    benchmark: str
    case: str
    tool: str
    metric: str
    unit: str
    value: float
    runs: list[float] = field(default_factory=list)
    better: Better = "higher"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies the measurement across two results."""
        return (self.benchmark, self.case, self.tool, self.metric)


@dataclass
class Results:
    """What one benchmark run measured, as the script's ``--json`` file holds it."""

    benchmark: str
    reference: str | None = None
    measurements: list[Measurement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(
        self,
        case: str,
        tool: str,
        metric: str,
        unit: str,
        runs: list[float],
        *,
        value: float | None = None,
        better: Better = "higher",
    ) -> None:
        """Record a row: ``value`` defaults to the median of ``runs``; a row without a
        finite value (no run succeeded) is not recorded."""
        finite = [float(run) for run in runs if math.isfinite(run)]
        if value is None:
            if not finite:
                return
            value = statistics.median(finite)
        if not math.isfinite(value):
            return
        self.measurements.append(Measurement(self.benchmark, case, tool, metric, unit, float(value), finite, better))

    def problem(self, text: str) -> None:
        """Record something that went wrong (the script's "Problems" lines)."""
        self.problems.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "reference": self.reference,
            "measurements": [asdict(m) for m in self.measurements],
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        return cls(
            benchmark=data["benchmark"],
            reference=data.get("reference"),
            measurements=[Measurement(**m) for m in data.get("measurements", [])],
            problems=list(data.get("problems", [])),
        )

    def write(self, path: Path | str | None) -> None:
        """Write the JSON document to ``path``; nothing when ``path`` is None (no ``--json``)."""
        if path is None:
            return
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> Results:
        return cls.from_dict(json.loads(Path(path).read_text()))


def short(value: float) -> str:
    """A value label: three significant digits, thousands as k and millions as M (labels
    sit side by side over narrow bars)."""
    for scale, suffix in ((1e6, "M"), (1e4, "k")):
        if abs(value) >= scale:
            return short(value / (scale if suffix == "M" else 1e3)) + suffix
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json PATH`` option every benchmark honours (benchmarks/suite.py passes it)."""
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the measurements as JSON to PATH")
