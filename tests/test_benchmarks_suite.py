"""The benchmark suite's pure parts: the results recorder, the comparison's maths, the
suite's handling of a benchmark that fails, hangs or measures, and the charts (only
with matplotlib, the ``bench`` extra, which CI does not install). No benchmark runs."""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compare  # noqa: E402
import suite  # noqa: E402
from _results import Measurement, Results, short  # noqa: E402


def test_results_round_trip_through_the_json_file(tmp_path: Path) -> None:
    results = Results("throughput", reference="ncat")
    results.add("send", "enchufe", "throughput", "MB/s", [10.0, 1.0, 2.0])
    results.add("send", "ncat", "throughput", "MB/s", [1.0], value=1.5)
    results.add("send", "socat", "CPU", "s", [float("nan"), 4.0], better="lower")
    results.add("send", "nc.openbsd", "throughput", "MB/s", [float("nan")])  # no run succeeded: no row
    results.add("send", "iperf3", "throughput", "MB/s", [1.0], value=float("inf"))  # nor a row without a figure
    results.problem("send / nc.openbsd: exit 1")
    path = tmp_path / "throughput.json"
    results.write(path)
    loaded = Results.load(path)
    assert loaded == results
    assert [(m.tool, m.value, m.runs) for m in loaded.measurements] == [
        ("enchufe", 2.0, [10.0, 1.0, 2.0]),
        ("ncat", 1.5, [1.0]),
        ("socat", 4.0, [4.0]),
    ]
    assert loaded.measurements[2].better == "lower"
    assert loaded.problems == ["send / nc.openbsd: exit 1"]


def test_results_write_nothing_without_a_path(tmp_path: Path) -> None:
    Results("x").write(None)
    assert list(tmp_path.iterdir()) == []


def suite_results(*benchmarks: tuple[str, str | None, list[Measurement]]) -> dict[str, Any]:
    return {
        "benchmarks": [
            {"name": name, "reference": reference, "measurements": [m.__dict__ for m in found]}
            for name, reference, found in benchmarks
        ]
    }


def rate(tool: str, value: float, case: str = "send") -> Measurement:
    return Measurement("throughput", case, tool, "throughput", "MB/s", value, [value], "higher")


def seconds(tool: str, value: float) -> Measurement:
    return Measurement("scan", "1-1000", tool, "scan time", "s", value, [value], "lower")


def test_compare_turns_each_change_into_a_gain_and_a_verdict() -> None:
    old = suite_results(
        ("throughput", "ncat", [rate("enchufe", 1000), rate("ncat", 500), rate("socat", 100, "gone")]),
        ("scan", None, [seconds("enchufe-scan", 0.2)]),
    )
    new = suite_results(
        ("throughput", "ncat", [rate("enchufe", 800), rate("ncat", 400), rate("socat", 100, "added")]),
        ("scan", None, [seconds("enchufe-scan", 0.1)]),
    )
    rows = {(row.key[2], row.key[1]): row for row in compare.compare(old, new, threshold=0.10)}
    enchufe = rows["enchufe", "send"]
    assert math.isclose(enchufe.gain or 0, 0.8) and enchufe.verdict == "worse"
    # The whole machine was slower: the ratio to ncat held.
    assert enchufe.old_vs_reference == 2.0 and enchufe.new_vs_reference == 2.0
    assert rows["ncat", "send"].old_vs_reference is None
    scan = rows["enchufe-scan", "1-1000"]
    assert scan.gain == 2.0 and scan.verdict == "better"  # a time that halves
    assert rows["socat", "gone"].verdict == "old only" and rows["socat", "gone"].new is None
    assert rows["socat", "added"].verdict == "new only" and rows["socat", "added"].gain is None
    same = compare.compare(old, suite_results(("throughput", "ncat", [rate("enchufe", 1050)])), threshold=0.10)
    assert same[0].verdict == "same"


def test_compare_table_lists_the_worse_first() -> None:
    old = suite_results(("throughput", "ncat", [rate("enchufe", 1000), rate("ncat", 500)]))
    new = suite_results(("throughput", "ncat", [rate("enchufe", 1000), rate("ncat", 250)]))
    table = compare.format_comparison(compare.compare(old, new)).splitlines()
    assert "| ncat |" in table[2] and table[2].endswith("| worse |")
    assert table[-1] == "1 worse, 1 same"


def fake_benchmark(tmp_path: Path, body: str, timeout: float = 30.0) -> suite.Benchmark:
    script = tmp_path / "fake.py"
    script.write_text(textwrap.dedent(body))
    return suite.Benchmark("fake", str(script), quick_timeout=timeout)


def test_suite_records_what_a_benchmark_measured(tmp_path: Path) -> None:
    benchmark = fake_benchmark(
        tmp_path,
        """
        import sys
        sys.path.insert(0, BENCHMARKS)
        from _results import Results
        print("| tool | MB/s |")
        results = Results("fake", reference="ncat")
        results.add("send", "enchufe", "throughput", "MB/s", [5.0])
        results.write(sys.argv[sys.argv.index("--json") + 1])
        """.replace("BENCHMARKS", repr(str(BENCHMARKS))),
    )
    entry = suite.run(benchmark, "quick", tmp_path)
    assert entry["status"] == "ok"
    assert entry["output"] == "| tool | MB/s |\n"
    assert entry["reference"] == "ncat"
    assert [(m["tool"], m["value"]) for m in entry["measurements"]] == [("enchufe", 5.0)]


def test_suite_reports_a_crash_and_a_missing_json(tmp_path: Path) -> None:
    crashed = suite.run(fake_benchmark(tmp_path, "import sys; sys.exit('it broke')"), "quick", tmp_path)
    assert crashed["status"] == "exit status 1" and crashed["error"] == "it broke"
    silent = suite.run(fake_benchmark(tmp_path, "print('no json')"), "quick", tmp_path)
    assert silent["status"] == "no --json output"


def test_suite_stops_a_benchmark_at_its_timeout(tmp_path: Path) -> None:
    hung = suite.run(fake_benchmark(tmp_path, "import time; time.sleep(60)", timeout=0.5), "quick", tmp_path)
    assert hung["status"].startswith("timed out after")
    assert "measurements" not in hung


def test_suite_ends_what_a_benchmark_left_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    benchmark = fake_benchmark(
        tmp_path,
        f"""
        import subprocess, sys
        server = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        open({str(pid_file)!r}, "w").write(str(server.pid))
        """,
    )
    assert suite.run(benchmark, "quick", tmp_path)["status"] == "no --json output"
    try:
        ended = os.pidfd_open(int(pid_file.read_text()))
    except ProcessLookupError:
        return  # already reaped
    try:
        assert select.select([ended], [], [], 10)[0] == [ended], "the benchmark's server outlived it"
    finally:
        os.close(ended)


def test_suite_skips_a_benchmark_whose_tool_is_missing(tmp_path: Path) -> None:
    benchmark = suite.Benchmark("fake", "fake.py", needs=("no-such-command-enchufe",))
    assert suite.run(benchmark, "quick", tmp_path)["status"] == "skipped: no-such-command-enchufe not installed"


def test_every_registered_script_exists_and_honours_json() -> None:
    for benchmark in suite.REGISTRY:
        source = (BENCHMARKS / benchmark.script).read_text()
        assert "args.json" in source or "--json" in source, benchmark.script
    names = [benchmark.name for benchmark in suite.REGISTRY]
    assert len(names) == len(set(names))


def test_charts_and_report_from_results_json_alone(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    measured = [
        rate("enchufe", 1600),
        rate("ncat", 700),
        rate("socat", 1100),
        rate("enchufe", 16, "receive"),  # a spread that needs the log scale
        rate("ncat", 7000, "receive"),
    ]
    results = {
        "suite": {"profile": "quick", "started": "2026-12-02T06:00:00+00:00", "seconds": 12.0},
        "machine": {
            "cpu_model": "AMD EPYC",
            "cores": 2,
            "kernel": "6.1",
            "python": "3.11.7",
            "tools": {"ncat": "7.93"},
            "git_commit": "abc1234",
            "loadavg_before": [1.0, 1.0, 1.0],
            "loadavg_after": [2.0, 1.5, 1.0],
        },
        "benchmarks": [
            {
                "name": "throughput",
                "argv": ["benchmarks/throughput.py"],
                "status": "ok",
                "seconds": 10.0,
                "output": "# Loopback TCP throughput\n| scenario | tool |\n",
                "reference": "ncat",
                "measurements": [m.__dict__ for m in measured],
                "problems": [],
            },
            {"name": "scan", "argv": ["benchmarks/scan.py"], "status": "exit status 1", "seconds": 1.0},
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    # The command, in a process of its own: matplotlib keeps its fonts open once loaded.
    drawn = subprocess.run(
        [sys.executable, str(BENCHMARKS / "charts.py"), str(tmp_path)], capture_output=True, text=True, timeout=50
    )
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "scan.png").exists()  # it measured nothing
    report = (tmp_path / "report.md").read_text()
    assert "![throughput](throughput.png)" in report
    assert "### Loopback TCP throughput" in report  # the script's Markdown, one level down
    assert "load average" in report.lower() and "shared" in report
    assert "| [scan](#scan) | exit status 1 | 1 |" in report


def test_ratio_labels_are_taken_against_the_reference_in_the_same_case() -> None:
    import charts

    ratios = charts.ratio_to_reference([rate("enchufe", 1600), rate("ncat", 800), rate("socat", 100, "other")], "ncat")
    assert ratios == {("send", "enchufe", "throughput"): 2.0}
    assert [short(v) for v in (0.01, 2.345, 702.4, 1577.0, 75164.0, 2.5e6)] == [
        "0.0100",
        "2.35",
        "702",
        "1,577",
        "75.2k",
        "2.50M",
    ]
    assert charts.style_of("enchufe", ["enchufe", "ncat"]) == (charts.ENCHUFE_COLOUR, None)
    assert charts.style_of("ncat, certificate given", ["ncat", "ncat, certificate given"]) == (
        charts.COLOURS["ncat"],
        "//",
    )
    assert charts.ordered_tools([rate("ncat", 1), rate("enchufe-loop", 1), rate("enchufe", 1)]) == [
        "enchufe",
        "enchufe-loop",
        "ncat",
    ]
