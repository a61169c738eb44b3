#!/usr/bin/env python3
"""The charts and report.md of a suite run, made from its results.json alone.

    python3 benchmarks/charts.py benchmarks/results/2026-12-02T06-00-00Z

remakes ``<benchmark>.png`` (one per benchmark that measured something) and
``report.md`` in that directory, so a committed result can be re-drawn.

Invariants:

- Only results.json is read: whatever the suite measured is in it (the scripts'
  Markdown included), so nothing here re-runs a benchmark.
- A known tool (``COLOURS``) has one colour in every chart; ``enchufe`` is always
  ``ENCHUFE_COLOUR`` and its variants (``enchufe-*``) shades of it, so it is found at a
  glance.
- One chart per benchmark, one panel per metric: grouped bars, a group per case, a
  bar per tool, each labelled with its value and its ratio to the benchmark's reference
  tool in the same case; a log scale when the values span more than ``LOG_SPREAD``.
- matplotlib (the ``bench`` extra, Agg backend: no display) is imported only to draw;
  report.md is written without charts when it is missing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from _results import Measurement, short

ENCHUFE_COLOUR = "#d1495b"
ENCHUFE_SHADES = ["#d1495b", "#f08a8a", "#8c1c2b", "#f4b6b6", "#b5364a"]
COLOURS = {
    "ncat": "#30638e",
    "socat": "#00798c",
    "socat -u": "#6cc3c9",
    "iperf3": "#6a4c93",
    "nc.openbsd": "#8d6a3f",
    "nc.openbsd -z": "#8d6a3f",
    "direct": "#9a9a9a",
    "python3 -c pass": "#b8b8b8",
    "OpenSSL alone": "#edae49",
    "asyncio-streams": "#30638e",
}
OTHERS = ["#66a182", "#a05195", "#c2a83e", "#2e4057", "#f6a65a", "#3b8ea5", "#8c8c8c", "#5d576b", "#4f772d"]
LOG_SPREAD = 30.0


def style_of(tool: str, tools: list[str]) -> tuple[str, str | None]:
    """The tool's colour and hatch: fixed for known tools; enchufe's shades for its
    variants (``enchufe-loop``); a known tool's colour, hatched, for its variants
    (``ncat, certificate given``); for the rest, the next free colour in ``tools``' order."""
    if tool == "enchufe":
        return ENCHUFE_COLOUR, None
    if tool.startswith("enchufe"):
        variants = [t for t in tools if t.startswith("enchufe") and t != "enchufe"]
        return ENCHUFE_SHADES[1 + variants.index(tool) % (len(ENCHUFE_SHADES) - 1)], None
    if tool in COLOURS:
        return COLOURS[tool], None
    family = re.split(r"[ ,-]", tool, maxsplit=1)[0]
    if family in COLOURS:
        return COLOURS[family], "//"
    unknown = [t for t in tools if not t.startswith("enchufe") and t not in COLOURS]
    return OTHERS[unknown.index(tool) % len(OTHERS)], None


def ordered_tools(measurements: list[Measurement]) -> list[str]:
    """enchufe first, then its variants, then the others in the order they were measured."""
    seen = list(dict.fromkeys(m.tool for m in measurements))
    return sorted(seen, key=lambda tool: (tool != "enchufe", not tool.startswith("enchufe"), seen.index(tool)))


def ratio_to_reference(measurements: list[Measurement], reference: str | None) -> dict[tuple[str, str, str], float]:
    """Each (case, tool, metric)'s value over the reference tool's in the same case and
    metric; the reference itself and cases without it are left out."""
    if reference is None:
        return {}
    base = {(m.case, m.metric): m.value for m in measurements if m.tool == reference}
    return {
        (m.case, m.tool, m.metric): m.value / base[m.case, m.metric]
        for m in measurements
        if m.tool != reference and base.get((m.case, m.metric))
    }


def draw(benchmark: dict[str, Any], path: Path) -> bool:
    """One benchmark's chart into ``path``; False when it measured nothing."""
    measurements = [Measurement(**m) for m in benchmark.get("measurements", [])]
    if not measurements:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = benchmark.get("reference")
    ratios = ratio_to_reference(measurements, reference)
    tools = ordered_tools(measurements)
    metrics = list(dict.fromkeys((m.metric, m.unit, m.better) for m in measurements))
    cases = list(dict.fromkeys(m.case for m in measurements))
    bars_per_panel = [sum(m.metric == metric for m in measurements) for metric, *_ in metrics]
    # Small panels two by two; a panel with many bars gets the whole width.
    columns = 2 if len(metrics) > 1 and max(bars_per_panel) <= 10 else 1
    panel_rows = math.ceil(len(metrics) / columns)
    width = max(7.0, min(20.0, 2.5 + 0.5 * max(bars_per_panel) * columns))
    figure, axes = plt.subplots(panel_rows, columns, figsize=(width, 3.4 * panel_rows), squeeze=False)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    for axis, (metric, unit, better) in zip(axes.flat, metrics, strict=False):
        rows = [m for m in measurements if m.metric == metric]
        here = [case for case in cases if any(m.case == case for m in rows)]
        present = [tool for tool in tools if any(m.tool == tool for m in rows)]
        slot = min(0.3, 0.8 / max(sum(m.case == case for m in rows) for case in here))
        values = [m.value for m in rows if m.value > 0]
        log = bool(values) and max(values) / min(values) > LOG_SPREAD
        labelled: set[str] = set()
        for position, case in enumerate(here):
            # The case's bars side by side around its tick, in the tools' fixed order.
            bars = sorted((m for m in rows if m.case == case), key=lambda m: tools.index(m.tool))
            for index, m in enumerate(bars):
                x = position + slot * (index - (len(bars) - 1) / 2)
                colour, hatch = style_of(m.tool, tools)
                axis.bar(
                    x,
                    m.value,
                    slot * 0.92,
                    color=colour,
                    hatch=hatch,
                    edgecolor="white" if hatch else None,
                    label=None if m.tool in labelled else m.tool,
                )
                labelled.add(m.tool)
                label = short(m.value)
                ratio = ratios.get((case, m.tool, metric))
                if ratio is not None:
                    label += f"\nx{ratio:.2f}"
                axis.annotate(
                    label,
                    (x, m.value),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    fontweight="bold" if m.tool == "enchufe" else "normal",
                )
        handles, names = axis.get_legend_handles_labels()
        legend = sorted(zip(names, handles, strict=True), key=lambda pair: present.index(pair[0]))
        if log:
            axis.set_yscale("log")
        axis.margins(y=0.25)
        if log:
            low, high = axis.get_ylim()
            axis.set_ylim(low, high * 4)
        pad = max(0.0, (1.6 - len(here)) / 2)  # one case: not one bar as wide as the chart
        axis.set_xlim(-0.5 - pad, len(here) - 0.5 + pad)
        axis.set_xticks(range(len(here)))
        axis.set_xticklabels([textwrap.fill(case, 18) for case in here], fontsize=8)
        direction = "higher is better" if better == "higher" else "lower is better"
        axis.set_title(f"{metric} ({unit}), {direction}", fontsize=9)
        axis.set_ylabel(unit + (" (log)" if log else ""))
        axis.legend(
            [h for _, h in legend],
            [n for n, _ in legend],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
        )
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    versus = f"; x: ratio to {reference} in the same case" if ratios else ""
    figure.suptitle(f"{benchmark['name']}{versus}", fontsize=11)
    figure.tight_layout()
    drawn = io.BytesIO()
    figure.savefig(drawn, dpi=100)
    plt.close(figure)
    # 128 colours without dithering: the same chart in a quarter of the bytes (results are committed).
    from PIL import Image  # matplotlib's own dependency

    with Image.open(drawn) as image:
        small = image.convert("RGB").quantize(128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        small.save(path, "PNG", optimize=True)
    return True


def machine_lines(results: dict[str, Any]) -> list[str]:
    machine, suite = results["machine"], results["suite"]
    tools = ", ".join(f"{name} {version}" for name, version in machine["tools"].items())
    before, after = machine["loadavg_before"], machine["loadavg_after"]
    return [
        f"Profile **{suite['profile']}**, started {suite['started']}, {suite['seconds']:.0f} s in all; "
        f"git {machine['git_commit']}.",
        "",
        f"{machine['cpu_model']}, {machine['cores']} cores, Linux {machine['kernel']}, Python {machine['python']}; "
        f"{tools}.",
        "",
        f"Load average before {' '.join(f'{v:.2f}' for v in before)}, after {' '.join(f'{v:.2f}' for v in after)}. "
        "The machine was shared (its 2 cores also ran other sessions' work), so the ratios "
        "within one run are what to read; the absolute numbers move from run to run.",
    ]


def write_report(directory: Path, charts: bool = True) -> Path:
    """report.md (and, with ``charts`` and matplotlib importable, the PNGs) from
    ``directory``/results.json."""
    results = json.loads((directory / "results.json").read_text())
    if charts:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is missing (pip install '.[bench]'): report.md without charts", file=sys.stderr)
            charts = False
    lines = ["# enchufe benchmark suite", "", *machine_lines(results), "", "| benchmark | status | seconds |"]
    lines.append("| --- | --- | ---: |")
    for benchmark in results["benchmarks"]:
        lines.append(
            f"| [{benchmark['name']}](#{benchmark['name']}) | {benchmark['status']} | {benchmark['seconds']:.0f} |"
        )
    for benchmark in results["benchmarks"]:
        name = benchmark["name"]
        lines += ["", f'<a id="{name}"></a>', "", f"## {name}", ""]
        lines.append(f"`{' '.join(benchmark['argv'])}`: {benchmark['status']}, {benchmark['seconds']:.0f} s.")
        if charts and draw(benchmark, directory / f"{name}.png"):
            lines += ["", f"![{name}]({name}.png)"]
        if benchmark.get("output"):
            # The script's own Markdown, its headings pushed below this section's.
            output = [("##" + line if line.startswith("#") else line) for line in benchmark["output"].splitlines()]
            lines += ["", *output]
        if benchmark.get("problems"):
            lines += ["", "Problems:", "", *(f"- {text}" for text in benchmark["problems"])]
        if benchmark.get("error"):
            lines += ["", "```", benchmark["error"], "```"]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("directory", type=Path, help="a results directory (with results.json)")
    args = parser.parse_args(argv)
    if not (args.directory / "results.json").is_file():
        print(f"no results.json in {args.directory}", file=sys.stderr)
        return 2
    print(write_report(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
