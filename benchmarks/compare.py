#!/usr/bin/env python3
"""Two suite runs side by side: each measurement's ratio, new over old.

    python3 benchmarks/compare.py benchmarks/results/OLD benchmarks/results/NEW
    python3 benchmarks/suite.py --compare OLD NEW      # the same

Invariants:

- Measurements are matched on (benchmark, case, tool, metric); one found in one run
  only is listed as such, never silently dropped.
- ``change`` is new/old of the value; ``gain`` turns it so that above 1 is better
  whichever way the metric goes (``better``: a time that halves is a gain of 2).
- On a shared machine both runs' absolute numbers move with the load, so each row also
  carries the ratio to the benchmark's reference tool in each run: a regression of
  enchufe shows there even when the whole machine was slower.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _results import Measurement, short

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Row:
    """One measurement in both runs (``None`` where it is missing)."""

    key: Key
    unit: str
    old: float | None
    new: float | None
    gain: float | None
    old_vs_reference: float | None
    new_vs_reference: float | None
    verdict: str


def measurements(results: dict[str, Any]) -> tuple[dict[Key, Measurement], dict[str, str | None]]:
    """A run's measurements by key, and each benchmark's reference tool."""
    found: dict[Key, Measurement] = {}
    references: dict[str, str | None] = {}
    for benchmark in results["benchmarks"]:
        for raw in benchmark.get("measurements", []):
            m = Measurement(**raw)
            found[m.key] = m
            references[m.benchmark] = benchmark.get("reference")
    return found, references


def gain(old: Measurement, new: Measurement) -> float | None:
    """new over old, turned so that above 1 is better; None when old is zero."""
    if old.value == 0 or new.value == 0:
        return None
    return new.value / old.value if new.better == "higher" else old.value / new.value


def versus_reference(found: dict[Key, Measurement], references: dict[str, str | None], key: Key) -> float | None:
    benchmark, case, tool, metric = key
    reference = references.get(benchmark)
    base = found.get((benchmark, case, reference, metric)) if reference else None
    if base is None or tool == reference or base.value == 0:
        return None
    return found[key].value / base.value


def compare(old_results: dict[str, Any], new_results: dict[str, Any], threshold: float = 0.10) -> list[Row]:
    """Every measurement of either run, with its gain and a verdict: "better" or "worse"
    beyond ``threshold`` (0.10: 10 %), "same" within it, "old only" / "new only"."""
    old, old_references = measurements(old_results)
    new, new_references = measurements(new_results)
    rows = []
    for key in [*old, *(k for k in new if k not in old)]:
        before, after = old.get(key), new.get(key)
        either = after or before
        assert either is not None  # the key came from one of them
        ratio = gain(before, after) if before and after else None
        if before is None or after is None:
            verdict = "new only" if before is None else "old only"
        elif ratio is None:
            verdict = "-"
        elif ratio > 1 + threshold:
            verdict = "better"
        elif ratio < 1 / (1 + threshold):
            verdict = "worse"
        else:
            verdict = "same"
        rows.append(
            Row(
                key,
                either.unit,
                before.value if before else None,
                after.value if after else None,
                ratio,
                versus_reference(old, old_references, key) if before else None,
                versus_reference(new, new_references, key) if after else None,
                verdict,
            )
        )
    return rows


def format_comparison(rows: list[Row]) -> str:
    """The rows as a Markdown table, the worse ones first."""

    def number(value: float | None, suffix: str = "") -> str:
        return "-" if value is None else short(value) + suffix

    order = {"worse": 0, "better": 1, "same": 2}
    lines = [
        "| benchmark | case | tool | metric | old | new | gain | vs reference old → new | verdict |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in sorted(rows, key=lambda r: order.get(r.verdict, 3)):
        benchmark, case, tool, metric = row.key
        versus = f"{number(row.old_vs_reference)} → {number(row.new_vs_reference)}"
        lines.append(
            f"| {benchmark} | {case} | {tool} | {metric} ({row.unit}) | {number(row.old)} | {number(row.new)} "
            f"| {number(row.gain, 'x')} | {versus} | {row.verdict} |"
        )
    verdicts = dict.fromkeys(r.verdict for r in sorted(rows, key=lambda r: order.get(r.verdict, 3)))
    counts = {verdict: sum(r.verdict == verdict for r in rows) for verdict in verdicts}
    lines += ["", ", ".join(f"{count} {verdict}" for verdict, count in counts.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("old", type=Path, help="the earlier results directory")
    parser.add_argument("new", type=Path, help="the later results directory")
    parser.add_argument("--threshold", type=float, default=0.10, help="a change beyond this is flagged (default 0.10)")
    args = parser.parse_args(argv)
    old, new = (json.loads((d / "results.json").read_text()) for d in (args.old, args.new))
    print(format_comparison(compare(old, new, args.threshold)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
