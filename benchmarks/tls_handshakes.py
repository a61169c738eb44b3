#!/usr/bin/env python3
"""TLS handshakes per second against a keep-open listener: enchufe against ncat.

Run from the repository root::

    python3 benchmarks/tls_handshakes.py                   # 2,000 handshakes, 1 and 8 at once, 3 runs
    python3 benchmarks/tls_handshakes.py -n 500 -r 1 -c 8  # a quick run

Every server presents the same EC P-256 certificate (made here with ``openssl req``)
over TLS 1.3, with the machine's default suites (TLS_AES_256_GCM_SHA384 and X25519
here):

- ``enchufe -l -k --ssl-cert C --ssl-key K -e /bin/true``, and its twin
  ``ncat -l -k --ssl-cert C --ssl-key K -e /bin/true``: a handshake, then a program per
  connection, which ends at once;
- ``enchufe -l -k --ssl-cert C --ssl-key K`` (the handshakes on the event loop) and
  ``ncat -l -k --ssl-cert C --ssl-key K``: the handshake alone, the client joining the
  listener's clients;
- ``socat OPENSSL-LISTEN:PORT,fork`` (``SYSTEM:true``): a process per connection, a
  reference for the cost of forking.

The client is this script: ``-c`` threads (1 and 8 by default), each connecting to
127.0.0.1 and running a TLS 1.3 handshake (Python's ``ssl``, no verification), then
closing the socket, until ``-n`` handshakes are done. OpenSSL runs the handshake
with the GIL released, so the threads do overlap. The rate is handshakes completed per
second of wall time, from the first connect to the last handshake; each run starts with
100 untimed handshakes (enchufe imports a mode's modules on first use). Also reported:
the server's CPU time per handshake (user + system from /proc/PID/stat, the reaped
programs included), steadier than wall time on a shared machine, and the client's own
CPU time per handshake, which shows when the client is what limits the rate (the
machine has 2 CPUs for both).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _results import Results, add_json_option
from connection_rate import cpu_seconds
from throughput import free_port, tool_version, wait_listening
from tls_throughput import make_certificate

WARM_UP = 100


@dataclass(frozen=True)
class Server:
    name: str
    argv: tuple[str, ...]


@dataclass
class Result:
    rate: float = 0.0
    server_cpu_us: float = 0.0
    client_cpu_us: float = 0.0
    problems: list[str] = field(default_factory=list)


def servers(enchufe: str, cert: str, key: str, both: str) -> list[Server]:
    tls = ("--ssl-cert", cert, "--ssl-key", key)
    return [
        Server("enchufe -k -e /bin/true", (enchufe, "-l", "-k", *tls, "-e", "/bin/true", "127.0.0.1", "{port}")),
        Server("ncat -k -e /bin/true", ("ncat", "-l", "-k", *tls, "-e", "/bin/true", "127.0.0.1", "{port}")),
        Server("enchufe -k", (enchufe, "-l", "-k", *tls, "127.0.0.1", "{port}")),
        Server("ncat -k", ("ncat", "-l", "-k", *tls, "127.0.0.1", "{port}")),
        Server(
            "socat fork",
            ("socat", f"OPENSSL-LISTEN:{{port}},fork,reuseaddr,bind=127.0.0.1,cert={both},verify=0", "SYSTEM:true"),
        ),
    ]


@contextlib.contextmanager
def started(server: Server) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``server`` on a free port, its stdin a pipe that stays open, until it listens."""
    port = free_port()
    argv = [part.format(port=port) for part in server.argv]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_listening(port, proc, 10)
            yield proc, port
        finally:
            proc.terminate()  # every server here ends on SIGTERM
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdin is not None
            proc.stdin.close()
            stderr.seek(0)
            if text := stderr.read().decode(errors="replace").strip():
                print(f"{server.name} stderr: {text[-300:]}", file=sys.stderr)


def handshakes(port: int, count: int, concurrency: int, timeout: float) -> tuple[float, list[str]]:
    """``count`` handshakes with ``concurrency`` threads: the seconds they took, and the
    first few failures."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    remaining = [count]
    lock = threading.Lock()
    failures: list[str] = []
    deadline = time.monotonic() + timeout

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            try:
                # The handshake, then the socket closed (without close_notify, which no
                # server here waits for).
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw):
                    pass
            except (OSError, ssl.SSLError) as exc:
                with lock:
                    if len(failures) < 5:
                        failures.append(repr(exc))
                    remaining[0] += 1  # a failed handshake does not count
                    if len(failures) >= 5:
                        remaining[0] = 0

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(concurrency)]
    begun = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if remaining[0]:
        failures.append(f"{remaining[0]} handshakes not done within {timeout} s")
    return time.monotonic() - begun, failures


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(server: Server, count: int, concurrency: int, timeout: float) -> Result:
    result = Result()
    with started(server) as (proc, port):
        _, failures = handshakes(port, WARM_UP, 1, timeout)
        if failures:
            result.problems += [f"warm-up: {failure}" for failure in failures]
            return result
        server_before, client_before = cpu_seconds(proc.pid), client_cpu()
        seconds, failures = handshakes(port, count, concurrency, timeout)
        result.server_cpu_us = 1e6 * (cpu_seconds(proc.pid) - server_before) / count
        result.client_cpu_us = 1e6 * (client_cpu() - client_before) / count
        result.rate = count / seconds
        result.problems += failures
        if proc.poll() is not None:
            result.problems.append(f"server exited with status {proc.returncode}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", "--handshakes", type=int, default=2000, help="handshakes per run (default 2000)")
    parser.add_argument("-c", "--concurrency", default="1,8", help="client threads, comma-separated (default 1,8)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--only", help="comma-separated server names (as in the report)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    add_json_option(parser)
    args = parser.parse_args(argv)
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    if not (1 <= args.repeat <= 20 and 1 <= args.handshakes <= 100_000 and all(1 <= c <= 64 for c in concurrencies)):
        parser.error("-r 1..20, -n 1..100000, -c 1..64")

    enchufe = os.path.join(os.path.dirname(sys.executable), "enchufe")
    results: dict[tuple[str, int], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="enchufe-handshakes-") as tmp:
        cases = servers(enchufe, *make_certificate(Path(tmp)))
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            cases = [case for case in cases if case.name in wanted]
        for rep in range(args.repeat):
            for concurrency in concurrencies:
                for case in cases:
                    result = run_once(case, args.handshakes, concurrency, args.timeout)
                    results.setdefault((case.name, concurrency), []).append(result)
                    print(
                        f"run {rep + 1}/{args.repeat}: {case.name:24} -c {concurrency}: {result.rate:8.0f}/s "
                        f"server {result.server_cpu_us:6.0f} us client {result.client_cpu_us:6.0f} us"
                        + (f" PROBLEMS {result.problems}" if result.problems else ""),
                        file=sys.stderr,
                        flush=True,
                    )
    report(args, concurrencies, results)
    record(results).write(args.json)
    return 1 if any(r.problems for runs in results.values() for r in runs) else 0


def record(results: dict[tuple[str, int], list[Result]]) -> Results:
    """Handshakes per second and server CPU per handshake for ``--json``: the tool is the
    server name's first word, the case its mode and the client threads."""
    recorded = Results("tls_handshakes", reference="ncat")
    for (name, concurrency), runs in results.items():
        tool, _, mode = name.partition(" ")
        case = f"{mode}, c={concurrency}"
        good = [r for r in runs if not r.problems]
        recorded.add(case, tool, "handshake rate", "handshakes/s", [r.rate for r in good])
        recorded.add(case, tool, "server CPU", "µs/handshake", [r.server_cpu_us for r in good], better="lower")
        for r in runs:
            for problem in r.problems:
                recorded.problem(f"{name} -c {concurrency}: {problem}")
    return recorded


def report(
    args: argparse.Namespace,
    concurrencies: list[int],
    results: dict[tuple[str, int], list[Result]],
) -> None:
    versions = {
        "ncat": tool_version(["ncat", "--version"], r"Version (\S+)"),
        "socat": tool_version(["socat", "-V"], r"socat version (\S+)"),
        "openssl": ssl.OPENSSL_VERSION,
    }
    print(f"# TLS 1.3 handshakes per second, {args.handshakes} per run, median of {args.repeat}")
    print()
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        + ", ".join(f"{tool} {version}" for tool, version in versions.items())
        + f". Load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}."
    )
    print()
    print("| server | -c | handshakes/s | x ncat twin | server CPU us/handshake | client CPU us/handshake | runs/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    twins = {"enchufe -k -e /bin/true": "ncat -k -e /bin/true", "enchufe -k": "ncat -k"}
    for (name, concurrency), runs in results.items():
        good = [r for r in runs if not r.problems]
        if not good:
            print(f"| {name} | {concurrency} | - | - | - | - | (problems) |")
            continue
        rate = statistics.median(r.rate for r in good)
        twin = [r.rate for r in results.get((twins.get(name, ""), concurrency), []) if not r.problems]
        ratio = f"{rate / statistics.median(twin):.2f}x" if twin else "-"
        print(
            f"| {name} | {concurrency} | {rate:,.0f} | {ratio} | "
            f"{statistics.median(r.server_cpu_us for r in good):,.0f} | "
            f"{statistics.median(r.client_cpu_us for r in good):,.0f} | "
            + ", ".join(f"{r.rate:,.0f}" for r in runs)
            + " |"
        )
    trouble = [(key, r.problems) for key, runs in results.items() for r in runs if r.problems]
    if trouble:
        print("\n## Problems\n")
        for (name, concurrency), problems in trouble:
            print(f"- {name} -c {concurrency}: {'; '.join(problems)}")


if __name__ == "__main__":
    sys.exit(main())
