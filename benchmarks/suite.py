#!/usr/bin/env python3
"""Every benchmark in one run: results.json, report.md and a chart per benchmark.

    python3 benchmarks/suite.py --quick          # about 6 minutes on 2 cores
    python3 benchmarks/suite.py                  # the full profile (about an hour; not timed yet)
    python3 benchmarks/suite.py --only throughput,echo --quick
    python3 benchmarks/suite.py --compare benchmarks/results/OLD benchmarks/results/NEW

writes ``benchmarks/results/<UTC date-time>/`` (``--out`` to choose): results.json (the
machine, then each benchmark's status, its Markdown and its measurements), report.md
and ``<benchmark>.png`` (benchmarks/charts.py, which can redraw them later).

Invariants:

- Each benchmark runs as its own process (``python3 SCRIPT ARGS --json FILE``) in a
  session of its own, under a timeout of its own: one that crashes, hangs or finds a
  problem is reported as such, and the others still run. When it ends, its process
  group is killed: no server it started outlives it.
- ``REGISTRY`` is the one list of benchmarks: adding one is one ``Benchmark(...)`` line
  there, and a script that honours ``--json PATH`` (benchmarks/_results.py).
- The benchmarks run the enchufe of this tree: ``src/`` is put first on PYTHONPATH.
- Only loopback: every benchmark keeps to 127.0.0.1 (each script's rule).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _results import Results
from compare import compare, format_comparison

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    """A script, its arguments and timeout in each profile, and the commands it needs."""

    name: str
    script: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    full_timeout: float = 1800.0
    quick_timeout: float = 300.0
    needs: tuple[str, ...] = ()
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # profile -> variables

    def argv(self, profile: str, json_path: Path) -> list[str]:
        script = str(HERE / self.script)
        launcher = ["bash", script] if self.script.endswith(".sh") else [sys.executable, script]
        return [*launcher, *(self.quick if profile == "quick" else self.full), "--json", str(json_path)]


REGISTRY = [
    Benchmark("startup", "startup.sh", needs=("hyperfine",), env={"quick": {"RUNS": "15", "WARMUP": "3", "TOP": "10"}}),
    Benchmark("throughput", "throughput.py", quick=("--size", "256M"), full_timeout=3600),
    Benchmark("idle_connections", "idle_connections.py", quick=("-n", "1000"), needs=("ncat",)),
    Benchmark(
        "idle_connections_tls", "idle_connections.py", ("--tls", "-n", "1000"), ("--tls", "-n", "300"), needs=("ncat",)
    ),
    Benchmark(
        "connection_rate",
        "connection_rate.py",
        quick=("--loop", "closed", "--backlog", "command", "-n", "5000"),
        full_timeout=3600,
        needs=("gcc",),
    ),
    Benchmark(
        "broker",
        "broker.py",
        quick=("--bulk-mb", "0.25", "--messages", "300", "--stall-mb", "10", "--stall-timeout", "10"),
        needs=("ncat",),
    ),
    Benchmark("echo", "echo.py", quick=("--seconds", "1")),
    Benchmark("transport_buffer", "transport_buffer.py"),
    Benchmark("temporary_certificate", "temporary_certificate.py", quick=("-n", "10"), needs=("openssl",)),
    Benchmark("tls_throughput", "tls_throughput.py", quick=("--size", "128M"), needs=("openssl",)),
    Benchmark("tls_handshakes", "tls_handshakes.py", quick=("-n", "300"), needs=("openssl",)),
    Benchmark("proxy_throughput", "proxy_throughput.py", quick=("--size", "256M")),
    Benchmark("proxy_tunnels", "proxy_tunnels.py", quick=("-n", "500")),
    Benchmark("relay", "relay.py", quick=("--size", "256M", "-n", "300"), needs=("socat",)),
    Benchmark("scan", "scan.py", needs=("nc.openbsd",)),
    Benchmark("bench_vs_iperf3", "bench_vs_iperf3.py", quick=("-t", "1"), quick_timeout=120, needs=("iperf3",)),
    Benchmark("workers", "workers.py", quick=("-n", "1000", "-r", "1"), needs=("gcc",)),
    Benchmark("proxy_protocol", "proxy_protocol.py"),
]


def command_output(argv: list[str]) -> str:
    """What ``argv`` prints (stdout, else stderr), stripped; "-" when it prints nothing
    or cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "-"
    return (done.stdout or done.stderr).strip() or "-"


def version(argv: list[str], pattern: str) -> str:
    found = re.search(pattern, command_output(argv))
    return found.group(1) if found else "-"


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, kernel, Python, peers' versions, commit."""
    cpu = "-"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else "-"
    commit = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]) != "-":
        commit += " (with uncommitted changes)"
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tools": {
            "ncat": version(["ncat", "--version"], r"Version (\S+)"),
            "socat": version(["socat", "-V"], r"socat version (\S+)"),
            "iperf3": version(["iperf3", "--version"], r"iperf (\S+)"),
            "openssl": version(["openssl", "version"], r"OpenSSL (\S+)"),
            "hyperfine": version(["hyperfine", "--version"], r"hyperfine (\S+)"),
        },
        "git_commit": commit,
        "loadavg_before": list(os.getloadavg()),
    }


def run(benchmark: Benchmark, profile: str, scratch: Path) -> dict[str, Any]:
    """One benchmark in its own process: its status, Markdown and measurements."""
    json_path = scratch / f"{benchmark.name}.json"
    argv = benchmark.argv(profile, json_path)
    shown = [f"benchmarks/{benchmark.script}", *argv[2:-2]]
    entry: dict[str, Any] = {"name": benchmark.name, "argv": shown, "status": "ok", "seconds": 0.0}
    missing = [command for command in benchmark.needs if shutil.which(command) is None]
    if missing:
        entry.update(status=f"skipped: {', '.join(missing)} not installed")
        return entry
    timeout = benchmark.quick_timeout if profile == "quick" else benchmark.full_timeout
    env = {**os.environ, **benchmark.env.get(profile, {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    # `python3` and the `enchufe` launcher in the scripts: this interpreter's (a venv's), not a shim's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    began = time.monotonic()
    print(f"{benchmark.name}: {' '.join(shown)} (at most {timeout:.0f} s)", file=sys.stderr, flush=True)
    # A session of its own, so that a timeout ends the servers it started too.
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    status: int | None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        status = process.returncode
    except subprocess.TimeoutExpired:
        status = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind, or all of it
    if status is None:
        stdout, stderr = process.communicate()
    entry["seconds"] = round(time.monotonic() - began, 1)
    entry["output"] = stdout
    if status is None:
        entry["status"] = f"timed out after {timeout:.0f} s"
    elif status != 0:
        entry["status"] = f"exit status {status}"
    if status != 0:
        entry["error"] = "\n".join(stderr.strip().splitlines()[-15:])
    if json_path.is_file():
        recorded = Results.load(json_path)
        entry.update(reference=recorded.reference, problems=recorded.problems)
        entry["measurements"] = [m.__dict__ for m in recorded.measurements]
    elif status == 0:
        entry["status"] = "no --json output"
    print(f"{benchmark.name}: {entry['status']} in {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
    return entry


def select(only: str | None, skip: str | None) -> list[Benchmark]:
    names = {b.name for b in REGISTRY}
    wanted = {n.strip() for n in only.split(",")} if only else names
    unwanted = {n.strip() for n in skip.split(",")} if skip else set()
    unknown = (wanted | unwanted) - names
    if unknown:
        sys.exit(f"unknown benchmarks: {', '.join(sorted(unknown))} (known: {', '.join(b.name for b in REGISTRY)})")
    return [b for b in REGISTRY if b.name in wanted - unwanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick profile: smaller sizes and counts")
    parser.add_argument("--only", metavar="A,B", help="run only these benchmarks")
    parser.add_argument("--skip", metavar="A,B", help="run all but these benchmarks")
    parser.add_argument("--out", type=Path, help="results directory (default benchmarks/results/<UTC date-time>)")
    parser.add_argument("--no-charts", action="store_true", help="write report.md without the PNG charts")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their arguments, then exit")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two results directories")
    parser.add_argument("--threshold", type=float, default=0.10, help="--compare: a change beyond this is flagged")
    args = parser.parse_args(argv)
    if args.compare:
        old, new = (json.loads((d / "results.json").read_text()) for d in args.compare)
        print(format_comparison(compare(old, new, args.threshold)))
        return 0
    profile = "quick" if args.quick else "full"
    chosen = select(args.only, args.skip)
    if args.list:
        for b in chosen:
            variables = [f"{k}={v}" for k, v in b.env.get(profile, {}).items()]
            print(f"{b.name:22}", *variables, b.script, *b.argv(profile, Path("X"))[2:-2])
        return 0
    started = datetime.datetime.now(datetime.UTC)
    out = args.out or HERE / "results" / started.strftime("%Y-%m-%dT%H-%M-%SZ")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "suite": {"profile": profile, "started": started.isoformat(timespec="seconds"), "seconds": 0.0},
        "machine": machine(),
        "benchmarks": [],
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="enchufe-suite-") as scratch:
        for benchmark in chosen:
            results["benchmarks"].append(run(benchmark, profile, Path(scratch)))
    results["suite"]["seconds"] = round(time.monotonic() - began, 1)
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    from charts import write_report  # matplotlib itself only if charts are drawn

    print(write_report(out, charts=not args.no_charts))
    return 0 if all(b["status"] == "ok" for b in results["benchmarks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
