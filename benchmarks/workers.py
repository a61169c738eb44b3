#!/usr/bin/env python3
"""Worker processes: enchufe -l -k with and without --workers N, against ncat -l -k -e.

Run from the repository root::

    python3 benchmarks/workers.py                    # 3,000 connections, 8 at once, 3 runs
    python3 benchmarks/workers.py -n 1000 -r 1       # a quick run
    python3 benchmarks/workers.py --json rows.json   # and the measurements as JSON

Each connection is one request: the client (``benchmarks/connect_load.c``, C threads,
compiled here with gcc) connects to 127.0.0.1, sends 100 bytes, half-closes, reads the
answer to the end and closes; 8 of them at once, a closed loop. The servers:

- ``py-exec echo``: ``enchufe -l -k --py-exec`` a handler that reads the request and
  sends it back; the cost is enchufe's own (accepting, a thread per connection).
- ``py-exec cpu``: the same handler, which first hashes the request 2,000 times (about
  a millisecond of CPU): work that holds the interpreter lock, what workers are for.
- ``exec cat``: ``-e /bin/cat``, a program per connection, as ncat runs it too.

each with no ``--workers``, ``--workers 1`` and ``--workers 2``, and ``ncat -l -k -e
/bin/cat`` (ncat has no workers). The machine's cores are shared with the load
generator, which needs CPU too: its CPU time is reported, and with 2 cores two workers
cannot double anything. Reported: connections (requests) per second, the median of
``-r`` runs and their range, and each case's ratio to its own row without --workers
(for ncat: to ``exec cat`` without --workers). Each run starts a new server and warms
it up with 200 connections, not timed. Connections that fail (a reset when the
listen queue of 10, ncat's, overflows) are said on stderr and left out of the rate.

``--json PATH`` writes the measurements in the suite's form (benchmarks/_results.py);
the reference is enchufe without --workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _results import Results, add_json_option

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WARM_UP = 200
PAYLOAD = 100

HANDLER = """\
import hashlib

def handle(conn):
    request = b""
    while chunk := conn.recv(65536):  # to the client's half-close
        request += chunk
    digest = request
    for _ in range({rounds}):
        digest = hashlib.sha256(digest).digest()
    conn.send_all(request)
"""

#: case → (rounds of hashing, or None for -e /bin/cat)
CASES = {"py-exec echo": 0, "py-exec cpu": 2000, "exec cat": None}
WORKER_COUNTS = [None, 1, 2]


def compile_load(directory: Path) -> Path:
    out = directory / "connect_load"
    subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(out), str(HERE / "connect_load.c")], check=True)
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def server_argv(case: str, workers: int | None, tool: str, handlers: dict[str, Path], port: int) -> list[str]:
    if tool == "ncat":
        return ["ncat", "-l", "-k", "-e", "/bin/cat", "127.0.0.1", str(port)]
    argv = [sys.executable, "-m", "enchufe", "-l", "-k", "-v"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    argv += ["-e", "/bin/cat"] if CASES[case] is None else ["--py-exec", str(handlers[case])]
    return [*argv, "127.0.0.1", str(port)]


def wait_ready(proc: subprocess.Popen[bytes], workers: int | None, deadline: float) -> None:
    """Until the listener (or every worker) says it listens, from its -v lines."""
    assert proc.stderr is not None
    wanted = 1 if workers is None else workers
    pattern = "Listening on" if workers is None else "listening."
    seen = 0
    while seen < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            raise RuntimeError(f"server exited: {proc.wait()}")
        seen += pattern in line


def wait_connectable(port: int, deadline: float) -> None:
    """ncat says nothing without -v: try until it accepts."""
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("ncat did not start")


def load(generator: Path, port: int, connections: int, concurrency: int) -> dict[str, str]:
    argv = [str(generator), "127.0.0.1", str(port), str(connections), str(concurrency), str(PAYLOAD), "wait"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def run_once(
    argv: list[str], workers: int | None, port: int, generator: Path, connections: int, concurrency: int
) -> tuple[float, float]:
    """Connections per second and the load generator's CPU seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    stderr = subprocess.DEVNULL if argv[0] == "ncat" else subprocess.PIPE
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        deadline = time.monotonic() + 20
        if argv[0] == "ncat":
            wait_connectable(port, deadline)
        else:
            wait_ready(proc, workers, deadline)
            assert proc.stderr is not None
            # The -v line of every connection, read and dropped: a closed pipe would
            # make every write fail, a full one block the server.
            threading.Thread(target=proc.stderr.read, name="stderr-drain", daemon=True).start()
        load(generator, port, WARM_UP, 1)
        started = time.monotonic()
        client = load(generator, port, connections, concurrency)
        elapsed = time.monotonic() - started
        if client["failed"] != "0":  # counted out of the rate, and said
            print(f"  {' '.join(argv[-4:])}: {client['failed']} failed: {client['first_error']}", file=sys.stderr)
        return int(client["made"]) / elapsed, float(client["cpu_seconds"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-r", "--runs", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if shutil.which("gcc") is None:
        print("gcc is needed for benchmarks/connect_load.c", file=sys.stderr)
        return 2
    results = Results("workers", reference="enchufe")
    with tempfile.TemporaryDirectory(prefix="enchufe-workers-bench-") as build:
        directory = Path(build)
        generator = compile_load(directory)
        handlers = {}
        for case, rounds in CASES.items():
            if rounds is not None:
                handlers[case] = directory / f"{case.replace(' ', '_')}.py"
                handlers[case].write_text(HANDLER.format(rounds=rounds))
        plan = [(case, workers, "enchufe") for case in CASES for workers in WORKER_COUNTS]
        if shutil.which("ncat"):
            plan.append(("exec cat", None, "ncat"))
        baseline: dict[str, float] = {}
        print(f"{args.connections} connections, {args.concurrency} at once, {PAYLOAD} bytes each way; "
              f"median of {args.runs} runs (range); {os.cpu_count()} cores")  # fmt: skip
        print(f"{'case':<14} {'server':<22} {'conn/s':>22} {'ratio':>6} {'client CPU s':>12}")
        for case, workers, tool in plan:
            rates, client_cpu = [], []
            for _ in range(args.runs):
                port = free_port()
                rate, cpu = run_once(
                    server_argv(case, workers, tool, handlers, port),
                    workers,
                    port,
                    generator,
                    args.connections,
                    args.concurrency,
                )
                rates.append(rate)
                client_cpu.append(cpu)
            median = statistics.median(rates)
            name = "ncat" if tool == "ncat" else ("enchufe" if workers is None else f"enchufe --workers {workers}")
            if tool == "enchufe" and workers is None:
                baseline[case] = median
            ratio = median / baseline[case]
            spread = f"{median:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
            print(f"{case:<14} {name:<22} {spread:>22} {ratio:>6.2f} {statistics.median(client_cpu):>12.2f}")
            results.add(case, name, "connections per second", "1/s", rates)
    results.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
