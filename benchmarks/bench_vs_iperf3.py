"""enchufe-bench against iperf3 on the same loopback: TCP throughput, one stream and four.

Each round runs both servers' -1 mode and both clients for the same -t, alternating, and
prints the receiver's Gbit/s of each. Not a test: numbers depend on the machine.

    PYTHONPATH=src python3 benchmarks/bench_vs_iperf3.py [-t SECONDS] [-r ROUNDS]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import subprocess
import sys
import time

from _results import Results, add_json_option


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run_pair(server: list[str], client: list[str]) -> bytes:
    """The client's output once it ran against the server; a server still running 10 s
    after its client is done (iperf3 -1 was seen to hang on a loaded machine) is killed."""
    process = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # neither server says when it listens on a pipe: retry the client
            result = subprocess.run(client, capture_output=True, timeout=120, check=False)
            if result.returncode == 0:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print(f"{server[0]} still running after its client: killed", file=sys.stderr)
                return result.stdout
            time.sleep(0.02)
        raise RuntimeError(f"{client[0]} never ran: {result.stderr!r}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def enchufe(seconds: float, streams: int) -> float:
    port = str(free_port())
    out = run_pair(
        [sys.executable, "-m", "enchufe.bench", "-s", "-4", "-1", "-p", port],
        [
            sys.executable,
            "-m",
            "enchufe.bench",
            "-c",
            "127.0.0.1",
            "-p",
            port,
            "-t",
            str(seconds),
            "-P",
            str(streams),
            "--json",
        ],
    )
    return float(json.loads(out.splitlines()[-1])["receiver"]["bits_per_second"]) / 1e9


def iperf3(seconds: float, streams: int) -> float:
    port = str(free_port())
    out = run_pair(
        ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", port],
        ["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(seconds), "-P", str(streams), "-J"],
    )
    report = json.loads(out)
    if "error" in report:  # e.g. the server still busy with the run before: say it, count nothing
        print(f"iperf3 -P {streams}: {report['error']}", file=sys.stderr)
        return math.nan
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-t", type=float, default=3.0)
    parser.add_argument("-r", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    results = Results("bench_vs_iperf3", reference="iperf3")
    for streams in (1, 4):
        ours, theirs = [], []
        for _ in range(args.r):
            ours.append(enchufe(args.t, streams))
            theirs.append(iperf3(args.t, streams))
        theirs = [value for value in theirs if math.isfinite(value)] or [math.nan]
        print(
            f"- -P {streams}: enchufe-bench {statistics.median(ours):.1f} Gbit/s ({min(ours):.1f} to {max(ours):.1f}),"
            f" iperf3 {statistics.median(theirs):.1f} Gbit/s ({min(theirs):.1f} to {max(theirs):.1f})"
        )
        results.add(f"-P {streams}", "enchufe-bench", "throughput", "Gbit/s", ours)
        results.add(f"-P {streams}", "iperf3", "throughput", "Gbit/s", theirs)
    results.write(args.json)


if __name__ == "__main__":
    main()
