#!/usr/bin/env python3
"""Connection rate of a keep-open listener: enchufe -l -k against ncat -l -k (and socat's fork).

Run from the repository root::

    python3 benchmarks/connection_rate.py                  # 20,000 connections, 1 and 8 at once, 3 runs
    python3 benchmarks/connection_rate.py -n 5000 -r 1 --loop closed   # a quick run
    python3 benchmarks/connection_rate.py --only enchufe,ncat --backlog command

Each connection is a client that connects to 127.0.0.1, sends 100 bytes and closes. The
clients are ``benchmarks/connect_load.c``, compiled here (gcc) into a temporary
directory: C threads, 1 or 8 at once, so that the client side does not limit the rate
(its CPU time is reported). Two ways to go on to the next connection:

- ``closed`` loop: the client half-closes after its 100 bytes and waits until the
  server closes, so at most 1 or 8 connections are in flight: the rate the server
  sustains.
- ``open`` loop: the client closes at once and connects again, without waiting for the
  server. A client in C outruns any of these servers, so their listen queue fills up
  and the kernel drops SYNs, each retried after 1 s: the number to read is how many
  connect() calls took more than 0.9 s (fewer connections per run: each stall is 1 s).

The servers, each with a stdin that never ends (a pipe kept open, like an idle
terminal) and their stdout read by this script:

- ``enchufe -l -k 127.0.0.1 PORT`` (this tree's ``src``),
- ``ncat -l -k 127.0.0.1 PORT``,
- ``socat -u TCP-LISTEN:PORT,fork,reuseaddr,bind=127.0.0.1 STDOUT``: a process per
  connection, a reference for the cost of forking.

A run counts as done when the server's stdout has given every byte the clients sent
(``N * 100``): the rate is ``N / seconds`` from the start of the clients to that last
byte, so a server that accepts quickly but lags behind in reading is not flattered.
Fewer bytes within the timeout are listed as a problem. Each run starts with a warm-up
of 200 connections (not timed: enchufe imports a mode's modules on first use).

Both enchufe and ncat ask for a listen backlog of 10 (enchufe keeps ncat's, as a
drop-in; socat's default is 5). ``--backlog somaxconn`` runs each server again with
``benchmarks/listen_backlog.c`` preloaded (LD_PRELOAD), which makes every listen() ask
for the most the kernel allows (``net.core.somaxconn``), without changing either
program. Also reported: the server's CPU time per connection (user + system, from
/proc/PID/stat, its reaped children included: socat's), steadier than wall time on a
shared machine, and the load generator's own CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from _results import Results, add_json_option
from throughput import free_port, tool_version, wait_listening

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WARM_UP = 200
TOOLS = {
    "enchufe": (sys.executable, "-m", "enchufe", "-l", "-k", "127.0.0.1", "{port}"),
    "ncat": ("ncat", "-l", "-k", "127.0.0.1", "{port}"),
    "socat": ("socat", "-u", "TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1", "STDOUT"),
}
BACKLOGS = ("command", "somaxconn")
#: closed: each client waits for the server to close before its next connection;
#: open: it closes and goes on at once (connect_load's "wait" and "close").
LOOPS = {"closed": "wait", "open": "close"}


class Case(NamedTuple):
    loop: str
    backlog: str
    concurrency: int
    tool: str


@dataclass
class Result:
    """One timed run."""

    rate: float = 0.0
    client: dict[str, str] = field(default_factory=dict)
    server_cpu_us: float = 0.0
    problems: list[str] = field(default_factory=list)


def compile_c(source: Path, out: Path, *flags: str) -> None:
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(source), *flags], check=True)


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and of the children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class OutputCounter:
    """Reads a server's stdout in a thread and notes when ``goal`` bytes have come."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.count = 0
        self.goal = 0
        self.reached = threading.Event()
        self.thread = threading.Thread(target=self._read, name="stdout-counter", daemon=True)
        self.thread.start()

    def expect(self, total: int) -> None:
        self.reached.clear()
        self.goal = total
        if self.count >= total:
            self.reached.set()

    def _read(self) -> None:
        while chunk := os.read(self.fd, 1 << 16):
            self.count += len(chunk)
            if self.count >= self.goal:
                self.reached.set()


@contextlib.contextmanager
def server(tool: str, preload: Path | None) -> Iterator[tuple[subprocess.Popen[bytes], int, OutputCounter]]:
    port = free_port()
    argv = [part.format(port=port) for part in TOOLS[tool]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
        assert proc.stdout is not None
        try:
            wait_listening(port, proc, 10)
            yield proc, port, OutputCounter(proc.stdout.fileno())
        finally:
            proc.terminate()  # every server here ends on SIGTERM
            proc.wait(10)
            assert proc.stdin is not None
            proc.stdin.close()
            proc.stdout.close()
            stderr.seek(0)
            if text := stderr.read().decode(errors="replace").strip():
                print(f"{tool} stderr: {text[-300:]}", file=sys.stderr)


def load(generator: Path, port: int, connections: int, concurrency: int, payload: int, mode: str) -> dict[str, str]:
    argv = [str(generator), "127.0.0.1", str(port), str(connections), str(concurrency), str(payload), mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def run_once(
    tool: str,
    generator: Path,
    preload: Path | None,
    mode: str,
    connections: int,
    concurrency: int,
    payload: int,
    timeout: float,
) -> Result:
    result = Result()
    with server(tool, preload) as (proc, port, output):
        output.expect(WARM_UP * payload)
        load(generator, port, WARM_UP, 1, payload, "wait")
        if not output.reached.wait(timeout):
            result.problems.append(f"warm-up: {output.count} of {WARM_UP * payload} bytes")
            return result
        output.expect((WARM_UP + connections) * payload)
        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        result.client = load(generator, port, connections, concurrency, payload, mode)
        arrived = output.reached.wait(timeout)
        elapsed = time.monotonic() - started
        result.server_cpu_us = 1e6 * (cpu_seconds(proc.pid) - cpu_before) / connections
        if not arrived:
            got = output.count - WARM_UP * payload
            result.problems.append(f"{got} of {connections * payload} bytes reached stdout in {timeout} s")
        if result.client.get("failed", "0") != "0":
            result.problems.append(f"{result.client['failed']} connections failed: {result.client['first_error']}")
        if proc.poll() is not None:
            result.problems.append(f"server exited with status {proc.returncode}")
        result.rate = connections / elapsed
    return result


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:,.0f} ({min(values):,.0f} to {max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=20000, help="connections per closed-loop run")
    parser.add_argument("--open-n", type=int, default=500, help="connections per open-loop run (default 500)")
    parser.add_argument("-c", "--concurrency", default="1,8", help="clients at once, comma-separated (default 1,8)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--only", default=",".join(TOOLS), help="comma-separated tools (enchufe,ncat,socat)")
    parser.add_argument("--loop", default=",".join(LOOPS), help="closed (wait for the server's close), open, or both")
    parser.add_argument("--backlog", default=",".join(BACKLOGS), help="command (10), somaxconn, or both")
    parser.add_argument("--payload", type=int, default=100, help="bytes each client sends (default 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the bytes of one run to arrive")
    add_json_option(parser)
    args = parser.parse_args(argv)
    tools = [tool for tool in args.only.split(",") if shutil.which(TOOLS[tool][0])]
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    cases = [
        Case(loop, backlog, conc, tool)
        for loop in args.loop.split(",")
        for backlog in args.backlog.split(",")
        for conc in concurrencies
        for tool in tools
    ]
    results: dict[Case, list[Result]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="enchufe-connrate-") as build:
        generator = Path(build) / "connect_load"
        compile_c(HERE / "connect_load.c", generator, "-pthread")
        shim = Path(build) / "listen_backlog.so"
        compile_c(HERE / "listen_backlog.c", shim, "-shared", "-fPIC", "-ldl")
        for rep in range(args.repeat):
            for case in cases:
                result = run_once(
                    case.tool,
                    generator,
                    shim if case.backlog == "somaxconn" else None,
                    LOOPS[case.loop],
                    args.connections if case.loop == "closed" else args.open_n,
                    case.concurrency,
                    args.payload,
                    args.timeout,
                )
                results[case].append(result)
                print(
                    f"run {rep + 1}/{args.repeat}: {case.loop:6} backlog={case.backlog:9} c={case.concurrency} "
                    f"{case.tool:8} {result.rate:9,.0f}/s  connects>0.9s={result.client.get('connect_over_900ms')}"
                    f"  {'; '.join(result.problems)}",
                    file=sys.stderr,
                    flush=True,
                )
    report(args, cases, results)
    record(cases, results).write(args.json)
    return 1 if any(r.problems for rs in results.values() for r in rs) else 0


def record(cases: list[Case], results: dict[Case, list[Result]]) -> Results:
    """Connections per second and server CPU per connection of each case, for ``--json``."""
    recorded = Results("connection_rate", reference="ncat")
    for case in cases:
        name = f"{case.loop} loop, backlog {'10' if case.backlog == 'command' else 'somaxconn'}, c={case.concurrency}"
        good = [r for r in results[case] if not r.problems]
        recorded.add(name, case.tool, "connection rate", "connections/s", [r.rate for r in good])
        recorded.add(name, case.tool, "server CPU", "µs/connection", [r.server_cpu_us for r in good], better="lower")
        for r in results[case]:
            for problem in r.problems:
                recorded.problem(f"{name} / {case.tool}: {problem}")
    return recorded


def median_text(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):,.{digits}f}" if values else "-"


def report(args: argparse.Namespace, cases: list[Case], results: dict[Case, list[Result]]) -> None:
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    ncat = tool_version(["ncat", "--version"], r"Version (\S+)")
    print(
        f"# connect, send {args.payload} bytes, close: {args.connections:,} connections per closed-loop run, "
        f"{args.open_n:,} per open-loop run; median of {args.repeat} runs (min to max); {time.strftime('%Y-%m-%d')}, "
        f"ncat {ncat}, somaxconn {somaxconn}, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| loop | backlog | clients | tool | connections/s | x ncat | connects > 0.9 s per run "
        "| connection p99 ms | server CPU µs/conn | client CPU s | problems |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for case in cases:
        runs = results[case]
        good = [r for r in runs if not r.problems]
        rates = [r.rate for r in good]
        reference = [r.rate for r in results.get(case._replace(tool="ncat"), []) if not r.problems]
        ratio = f"{statistics.median(rates) / statistics.median(reference):.2f}" if rates and reference else "-"
        slow = [float(r.client["connect_over_900ms"]) for r in runs if r.client]
        slow_text = f"{statistics.median(slow):.0f} (max {max(slow):.0f})" if slow else "-"
        print(
            f"| {case.loop} | {'10' if case.backlog == 'command' else 'somaxconn'} | {case.concurrency} | {case.tool} "
            f"| {spread(rates)} | {ratio} | {slow_text} "
            f"| {median_text([float(r.client['connection_p99_ms']) for r in good])} "
            f"| {median_text([r.server_cpu_us for r in good], 1)} "
            f"| {median_text([float(r.client['cpu_seconds']) for r in good])} "
            f"| {'; '.join(p for r in runs for p in r.problems) or '-'} |"
        )


if __name__ == "__main__":
    sys.exit(main())
