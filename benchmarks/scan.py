#!/usr/bin/env python3
"""Port scan of 1,000 loopback ports: enchufe-scan against nc.openbsd -z (and nmap -sT if installed).

Run from the repository root::

    python3 benchmarks/scan.py              # ports 1-1000, 5 runs each
    python3 benchmarks/scan.py -p 1-65535 -r 1

A few listeners of this script's own on 127.0.0.1 make some ports open; the rest are
whatever the machine has (mostly closed). Each scanner runs as a command, start-up
included, and must find this script's open ports:

- ``enchufe-scan -p PORTS --open 127.0.0.1`` (this tree's ``src``; 256 probes at once),
- ``nc.openbsd -z -w1 127.0.0.1 PORTS``: one connect after the other,
- ``nmap -sT -n -Pn -p PORTS 127.0.0.1``, if installed.

Prints the median and range of the wall-clock time of each, in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import Results, add_json_option

SRC = Path(__file__).resolve().parent.parent / "src"


def timed(argv: list[str]) -> tuple[float, bytes, bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, timeout=600, check=False)
    return time.perf_counter() - started, done.stdout, done.stderr


def open_ports(name: str, out: bytes, err: bytes) -> set[int]:
    if name == "enchufe-scan":
        return {int(port) for port in re.findall(rb"^127\.0\.0\.1\s+(\d+)/tcp\s+open", out, re.M)}
    if name == "nc.openbsd -z":
        return {int(port) for port in re.findall(rb"Connection to 127\.0\.0\.1 (\d+) port .*succeeded", err)}
    return {int(port) for port in re.findall(rb"^(\d+)/tcp\s+open", out, re.M)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--ports", default="1-1000", help="a range LOW-HIGH (default 1-1000)")
    parser.add_argument("-r", "--runs", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()
    results = Results("scan", reference="nc.openbsd -z")
    low, high = (int(part) for part in args.ports.split("-"))
    with contextlib.ExitStack() as stack:
        listeners = []
        for port in range(low + 7, high + 1, max((high - low) // 5, 1)):
            with contextlib.suppress(OSError):
                listeners.append(stack.enter_context(socket.create_server(("127.0.0.1", port))))
        print(f"{high - low + 1} ports on 127.0.0.1, {len(listeners)} listeners of this script's own", file=sys.stderr)
        commands = {
            "enchufe-scan": [sys.executable, "-m", "enchufe.scan", "-p", args.ports, "--open", "127.0.0.1"],
            "nc.openbsd -z": ["nc.openbsd", "-zv", "-w1", "127.0.0.1", args.ports],
        }
        if shutil.which("nmap"):
            commands["nmap -sT"] = ["nmap", "-sT", "-n", "-Pn", "-p", args.ports, "127.0.0.1"]
        found: dict[str, set[int]] = {}
        print("| scanner | median s | range s |\n| --- | ---: | ---: |")
        for name, argv in commands.items():
            if shutil.which(argv[0]) is None:
                continue
            times = []
            for _ in range(args.runs):
                seconds, out, err = timed(argv)
                times.append(seconds)
                found[name] = open_ports(name, out, err)
            print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} to {max(times):.3f} |")
            results.add(f"ports {args.ports}", name, "scan time", "s", times, better="lower")
        results.write(args.json)
        mine = {listener.getsockname()[1] for listener in listeners}
        for name, ports in found.items():
            assert mine <= ports, (name, sorted(mine - ports))
        # Beyond these, the sets may differ by other programs' listeners that come and go between runs.


if __name__ == "__main__":
    main()
