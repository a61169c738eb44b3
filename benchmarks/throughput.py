#!/usr/bin/env python3
"""Bulk TCP throughput over loopback: enchufe against ncat, socat, nc.openbsd and iperf3.

Run from the repository root::

    python3 benchmarks/throughput.py                 # 1 GiB, 3 timed runs per case
    python3 benchmarks/throughput.py --size 64M -r 1 # a quick smoke run
    python3 benchmarks/throughput.py --only enchufe,ncat --scenario send

Every case moves the same file (random bytes, created once under /tmp) over one TCP
connection on 127.0.0.1, from a sender to a receiver that writes to /dev/null:

``send``        the client reads the file as stdin and sends; the listener receives.
``receive``     the listener reads the file as stdin and sends; the client receives.
``send-pipe``   as ``send``, but through pipes, as in scripts: ``cat FILE | client``
                and ``listener | cat > /dev/null``.

The side that does not send has a stdin that never reaches end of file (a pipe kept
open, like an idle terminal): with ``/dev/null`` a bidirectional socat would close the
connection 0.5 s after its stdin's EOF, mid-transfer. Ncat 7.93 in connect mode keeps
running after the remote closes until its stdin ends, so the receiving client of the
``receive`` case runs with ``--recv-only`` (enchufe gets the same option).

The time measured is wall time from the start of the client to the end of every
process of the case (the listener, the client, the ``cat`` helpers). The listener is
started first and is ready when its port is in the LISTEN state (read from
/proc/net/tcp, in a bounded loop); nothing connects to probe it, since a probe would use
up a single-shot listener. Each case runs ``--repeat`` times (default 3), round-robin
across cases, and the median is reported. Before the timed runs, one check run per case
sends the receiver's output to a pipe read by a counter (byte count and SHA-256, compared
with the file's). iperf3 is checked on its sender's byte count.

iperf3 (``-s -1`` / ``-c -n SIZE``) is the reference ceiling: memory to socket to memory,
no file and no stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _results import Results, add_json_option

GIB = 1 << 30
MB = 1_000_000
TCP_LISTEN = "0A"
SCENARIOS = ("send", "receive", "send-pipe")
#: The check runs' sink: counts and hashes its stdin, prints "COUNT SHA256".
COUNT_AND_HASH = """
import hashlib, sys
digest, count = hashlib.sha256(), 0
while chunk := sys.stdin.buffer.read1(1 << 20):
    digest.update(chunk)
    count += len(chunk)
print(count, digest.hexdigest())
"""


@dataclass(frozen=True)
class Case:
    """One tool in one scenario: argv templates with ``{port}`` and ``{size}``."""

    scenario: str
    tool: str
    listener: tuple[str, ...]
    client: tuple[str, ...]
    note: str = ""

    @property
    def sender_is_client(self) -> bool:
        return self.scenario in ("send", "send-pipe")

    @property
    def pipes(self) -> bool:
        return self.scenario == "send-pipe"

    @property
    def is_iperf(self) -> bool:
        return self.tool == "iperf3"


@dataclass
class Outcome:
    seconds: float
    received: int | None = None
    problems: list[str] = field(default_factory=list)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)(i?B?)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size: {text!r} (e.g. 1G, 256M, 1048576)")
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(match.group(1)) * factor


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines, None)
            for line in lines:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == TCP_LISTEN:
                    return True
    return False


def wait_listening(port: int, listener: subprocess.Popen[bytes], timeout: float) -> None:
    """Bounded wait for ``port`` to be in LISTEN state (at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.002) + 1):
        if is_listening(port):
            return
        if listener.poll() is not None:
            raise RuntimeError(f"listener exited with status {listener.returncode} before listening")
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    raise RuntimeError(f"port {port} not listening after {timeout} s")


def ensure_data_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    print(f"creating {path} ({size} random bytes)...", file=sys.stderr, flush=True)
    tmp = path.with_suffix(".part")
    chunk = 16 << 20
    with open(tmp, "wb") as out:
        for offset in range(0, size, chunk):
            out.write(os.urandom(min(chunk, size - offset)))
    tmp.replace(path)


def tool_version(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, (done.stdout + done.stderr).decode(errors="replace"))
    return match.group(1) if match else "?"


def build_cases(enchufe: str) -> list[Case]:
    socat_listen = "TCP-LISTEN:{port},reuseaddr,bind=127.0.0.1"
    socat_connect = "TCP:127.0.0.1:{port}"
    cases: list[Case] = []
    for scenario in ("send", "send-pipe"):
        cases += [
            Case(scenario, "enchufe", (enchufe, "-l", "127.0.0.1", "{port}"), (enchufe, "127.0.0.1", "{port}")),
            Case(scenario, "ncat", ("ncat", "-l", "127.0.0.1", "{port}"), ("ncat", "127.0.0.1", "{port}")),
            Case(scenario, "socat", ("socat", socat_listen, "-"), ("socat", "-", socat_connect)),
            Case(
                scenario,
                "socat -u",
                ("socat", "-u", socat_listen, "-"),
                ("socat", "-u", "-", socat_connect),
                "unidirectional: no 0.5 s close timeout",
            ),
            Case(
                scenario,
                "nc.openbsd",
                ("nc.openbsd", "-l", "127.0.0.1", "{port}"),
                ("nc.openbsd", "-N", "127.0.0.1", "{port}"),
            ),
        ]
    cases.append(
        Case(
            "send",
            "iperf3",
            ("iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", "{port}"),
            ("iperf3", "-c", "127.0.0.1", "-p", "{port}", "-n", "{size}", "-J"),
            "memory to memory, reference ceiling",
        )
    )
    cases += [
        Case(
            "receive",
            "enchufe",
            (enchufe, "-l", "127.0.0.1", "{port}"),
            (enchufe, "--recv-only", "127.0.0.1", "{port}"),
            "client --recv-only",
        ),
        Case(
            "receive",
            "ncat",
            ("ncat", "-l", "127.0.0.1", "{port}"),
            ("ncat", "--recv-only", "127.0.0.1", "{port}"),
            "client --recv-only",
        ),
        Case("receive", "socat", ("socat", socat_listen, "-"), ("socat", "-", socat_connect)),
        Case(
            "receive",
            "socat -u",
            ("socat", "-u", "-", socat_listen),
            ("socat", "-u", socat_connect, "-"),
            "unidirectional: no 0.5 s close timeout",
        ),
    ]
    return cases


class Run:
    """The processes and descriptors of one transfer, all killed, reaped or closed on exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.keep: list[int] = []
        self.files: list[IO[bytes]] = []

    def start(self, role: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
        self.procs.append((role, proc))
        return proc

    def endless_stdin(self) -> int:
        """The read end of a pipe whose write end stays open until the run ends."""
        read_end, write_end = os.pipe()
        self.keep.append(write_end)
        return read_end

    def open(self, path: Path) -> IO[bytes]:
        """``path`` opened for reading, closed when the run ends."""
        file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.files.append(file)
        return file

    def track(self, path: Path) -> IO[bytes]:
        """``path`` created for reading and writing (a stderr log), closed when the run ends."""
        file = open(path, "w+b")  # noqa: SIM115 - closed by close()
        self.files.append(file)
        return file

    def wait_all(self, deadline: float) -> bool:
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def close(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for fd in self.keep:
            os.close(fd)
        for file in self.files:
            file.close()
        self.keep.clear()
        self.files.clear()


@contextlib.contextmanager
def running() -> Iterator[Run]:
    run = Run()
    try:
        yield run
    finally:
        run.close()


def transfer(case: Case, data: Path, size: int, *, check: bool, timeout: float) -> Outcome:
    """Run ``case`` once; with ``check`` the receiver's output is counted and hashed."""
    port = free_port()
    subst = {"port": str(port), "size": str(size)}
    listener_argv = [arg.format(**subst) for arg in case.listener]
    client_argv = [arg.format(**subst) for arg in case.client]
    problems: list[str] = []
    with running() as run, tempfile.TemporaryDirectory(prefix="enchufe-bench-") as tmp:
        errs = {role: run.track(Path(tmp) / f"{role}.err") for role in ("listener", "client")}
        sink: subprocess.Popen[bytes] | None = None

        def start_tool(role: str, argv: list[str], sends: bool) -> subprocess.Popen[bytes]:
            nonlocal sink
            if case.is_iperf:
                stdout = subprocess.PIPE if role == "client" else subprocess.DEVNULL
                return run.start(role, argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=errs[role])
            if sends:
                if case.pipes:
                    feeder = run.start("cat <file", ["cat", str(data)], stdout=subprocess.PIPE)
                    proc = run.start(role, argv, stdin=feeder.stdout, stdout=subprocess.DEVNULL, stderr=errs[role])
                    assert feeder.stdout is not None
                    feeder.stdout.close()
                    return proc
                return run.start(role, argv, stdin=run.open(data), stdout=subprocess.DEVNULL, stderr=errs[role])
            stdin = run.endless_stdin()
            piped = case.pipes or check
            stdout = subprocess.PIPE if piped else subprocess.DEVNULL
            proc = run.start(role, argv, stdin=stdin, stdout=stdout, stderr=errs[role])
            os.close(stdin)
            if piped:
                assert proc.stdout is not None
                sink_argv = [sys.executable, "-c", COUNT_AND_HASH] if check else ["cat"]
                sink_out = subprocess.PIPE if check else subprocess.DEVNULL
                sink = run.start("sink", sink_argv, stdin=proc.stdout, stdout=sink_out)
                proc.stdout.close()
            return proc

        listener = start_tool("listener", listener_argv, sends=not case.sender_is_client)
        wait_listening(port, listener, timeout=10)
        started = time.monotonic()
        client = start_tool("client", client_argv, sends=case.sender_is_client)
        deadline = started + timeout
        iperf_json = read_all(client, deadline) if case.is_iperf else b""
        counted = read_all(sink, deadline) if sink is not None and check else b""
        finished = run.wait_all(deadline)
        seconds = time.monotonic() - started

        if not finished:
            problems.append(f"timed out after {timeout:.0f} s")
        for role, proc in run.procs:
            if proc.returncode not in (0, None):
                problems.append(f"{role} exited with status {proc.returncode}")
        for role, err in errs.items():
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            if text and not case.is_iperf:
                problems.append(f"{role} stderr: {text[:300]!r}")
        received: int | None = None
        if case.is_iperf and iperf_json:
            # The server's own count stops at its last report interval; the sender's is exact.
            received = int(json.loads(iperf_json)["end"]["sum_sent"]["bytes"])
        elif check:
            count, _, digest = counted.decode().partition(" ")
            received = int(count or 0)
            if received == size and digest.strip() != file_digest(data):
                problems.append("received the right number of bytes but not the file's content")
        if received is not None and received != size:
            problems.append(f"received {received} bytes, expected {size}")
        return Outcome(seconds, received, problems)


def read_all(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    """The whole (short) stdout of ``proc``, waiting at most until ``deadline``."""
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return b""
    return out or b""


@functools.cache
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_case(case: Case, data: Path, size: int, *, check: bool, timeout: float) -> Outcome:
    try:
        return transfer(case, data, size, check=check, timeout=timeout)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        return Outcome(float("nan"), None, [f"could not run: {exc}"])


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, "enchufe,ncat,socat,socat -u,nc.openbsd,iperf3")
    enchufe = os.path.join(os.path.dirname(sys.executable), "enchufe")
    cases = select_cases(build_cases(enchufe), args)
    data = args.data or Path(tempfile.gettempdir()) / f"enchufe-bench-{args.size}.bin"
    ensure_data_file(data, args.size)
    times, problems, checked = measure(cases, data, args.size, args)
    report(cases, times, problems, checked, args.size, args.repeat)
    record("throughput", cases, times, problems, args.size).write(args.json)
    return 1 if any(problems.values()) else 0


def parse_args(
    argv: list[str] | None,
    doc: str | None,
    tools: str,
    add_options: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """The options of a bulk-transfer benchmark (this one's, tls_throughput.py's), and
    those ``add_options`` adds."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    if add_options is not None:
        add_options(parser)
    parser.add_argument("--size", type=parse_size, default=GIB, help="bytes per transfer (default 1G)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--only", help=f"comma-separated tools ({tools})")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="limit to these scenarios")
    parser.add_argument("--data", type=Path, help="data file (default /tmp/enchufe-bench-SIZE.bin)")
    parser.add_argument("--no-check", action="store_true", help="skip the byte-count check runs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per transfer")
    parser.add_argument("--budget", type=float, default=1800.0, help="stop starting runs after this many seconds")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    return args


def select_cases(cases: list[Case], args: argparse.Namespace) -> list[Case]:
    """The cases ``--only`` and ``--scenario`` ask for, whose tools are installed."""
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        cases = [case for case in cases if case.tool in wanted]
    if args.scenario:
        cases = [case for case in cases if case.scenario in args.scenario]
    missing = sorted({case.listener[0] for case in cases if not shutil.which(case.listener[0])})
    if missing:
        print(f"skipping, not installed: {', '.join(missing)}", file=sys.stderr)
        cases = [case for case in cases if case.listener[0] not in missing]
    if not cases:
        sys.exit("no case to run")
    return cases


def measure(
    cases: list[Case], data: Path, size: int, args: argparse.Namespace
) -> tuple[dict[Case, list[float]], dict[Case, list[str]], dict[Case, int | None]]:
    """One check run per case (unless ``args.no_check``), then ``args.repeat`` timed
    runs round-robin across cases within ``args.budget`` seconds: the times of the runs
    that had no problem, the problems, and the byte counts the check runs verified."""
    budget_end = time.monotonic() + args.budget
    problems: dict[Case, list[str]] = {case: [] for case in cases}
    checked: dict[Case, int | None] = {}
    if not args.no_check:
        for case in cases:
            print(f"check run: {case.scenario:9} {case.tool}", file=sys.stderr, flush=True)
            outcome = run_case(case, data, size, check=True, timeout=args.timeout)
            checked[case] = outcome.received
            problems[case] += [f"check run: {p}" for p in outcome.problems]

    times: dict[Case, list[float]] = {case: [] for case in cases}
    for rep in range(args.repeat):
        for case in cases:
            if time.monotonic() > budget_end:
                problems[case].append("time budget exhausted")
                continue
            outcome = run_case(case, data, size, check=False, timeout=args.timeout)
            print(
                f"run {rep + 1}/{args.repeat}: {case.scenario:9} {case.tool:10} {outcome.seconds:7.3f} s",
                file=sys.stderr,
                flush=True,
            )
            if outcome.problems:
                problems[case] += [f"run {rep + 1}: {p}" for p in outcome.problems]
            else:
                times[case].append(outcome.seconds)
    return times, problems, checked


def record(
    benchmark: str, cases: list[Case], times: dict[Case, list[float]], problems: dict[Case, list[str]], size: int
) -> Results:
    """The runs as ``--json`` writes them: MB/s per scenario and tool, ratios against ncat."""
    results = Results(benchmark, reference="ncat")
    for case in cases:
        results.add(case.scenario, case.tool, "throughput", "MB/s", [size / MB / t for t in times[case]])
        for item in problems[case]:
            results.problem(f"{case.scenario} / {case.tool}: {item}")
    return results


def report(
    cases: list[Case],
    times: dict[Case, list[float]],
    problems: dict[Case, list[str]],
    checked: dict[Case, int | None],
    size: int,
    repeat: int,
    title: str = "Loopback TCP throughput",
) -> None:
    medians = {case: statistics.median(t) for case, t in times.items() if t}
    rates = {case: size / seconds for case, seconds in medians.items()}

    def reference(case: Case, tool: str) -> float | None:
        for other in cases:
            if other.scenario == case.scenario and other.tool == tool and other in rates:
                return rates[other]
        return None

    versions = {
        "ncat": tool_version(["ncat", "--version"], r"Version (\S+)"),
        "socat": tool_version(["socat", "-V"], r"socat version (\S+)"),
        "iperf3": tool_version(["iperf3", "--version"], r"iperf (\S+)"),
        "enchufe": tool_version([sys.executable, "-m", "enchufe", "--version"], r"Version (\S+)"),
    }
    print(f"# {title}, {size} bytes ({size / GIB:g} GiB) per transfer")
    print()
    print(
        f"{datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        + ", ".join(f"{tool} {version}" for tool, version in versions.items())
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"Median of {repeat} runs; wall time from client start to the end of every process. Load average: {load}.")
    print()
    print("| scenario | tool | median s | MB/s | GiB/s | x ncat | x socat | runs (s) | bytes verified | note |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for case in cases:
        runs = ", ".join(f"{t:.2f}" for t in times[case]) or "-"
        check = "-" if checked.get(case) is None else str(checked[case])
        if case not in rates:
            print(f"| {case.scenario} | {case.tool} | - | - | - | - | - | {runs} | {check} | {case.note} |")
            continue
        rate = rates[case]
        ncat, socat = reference(case, "ncat"), reference(case, "socat")
        print(
            f"| {case.scenario} | {case.tool} | {medians[case]:.3f} | {rate / MB:,.0f} | {rate / GIB:.2f} | "
            f"{fmt_ratio(rate / ncat if ncat else None)} | {fmt_ratio(rate / socat if socat else None)} | "
            f"{runs} | {check} | {case.note} |"
        )
    trouble = {case: p for case, p in problems.items() if p}
    if trouble:
        print()
        print("## Problems")
        print()
        for case, items in trouble.items():
            for item in items:
                print(f"- {case.scenario} / {case.tool}: {item}")


if __name__ == "__main__":
    sys.exit(main())
