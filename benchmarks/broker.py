#!/usr/bin/env python3
"""--broker with 100 clients: bulk, one-to-all latency, and a client that never reads.
enchufe against ncat in the same run.

Run from the repository root::

    python3 benchmarks/broker.py                      # every scenario, 3 runs each
    python3 benchmarks/broker.py --scenario latency -r 1

The server is ``TOOL -l --broker -m 200 127.0.0.1 PORT`` (this tree's ``src`` for
enchufe), its stdin a pipe written by this script. The 100 clients are connected by
this script one at a time (each waits for the server's ``-v`` line ``Connection
from``: both keep ncat's listen backlog of 10), then handed to 4 load processes
(forked, 25 clients each, non-blocking sockets on a selector); the clock is
CLOCK_MONOTONIC, shared by every process.

``bulk``     every client sends ``--bulk-mb`` MB and reads what the 99 others send;
             the figure is bytes delivered (100 * 99 * size) per second, from the
             start to the last byte. A client cut off by the server is listed.
``latency``  one client sends a 64-byte message every 2 ms (``--messages``); the 99
             others read. A message's latency is the time until the *last* of the 99
             has all of it: p50, p99 and max.
``stalled``  the server's stdin sends ``--stall-mb`` MB (the host is a member of the
             broker: its input goes to every client); one client never reads, the 99
             others read. Reported: whether they got every byte within
             ``--stall-timeout`` s (ncat writes to its clients in turn, so the one that
             does not read stops everyone: the wait is bounded), what happened to the
             stalled client, and the server's peak RSS (VmHWM) and PSS (the
             largest of samples every 50 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import Better, Results, add_json_option
from idle_connections import Lines, pss_kib
from throughput import free_port, tool_version

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CLIENTS = 100
WORKERS = 4
MESSAGE = 64
MB = 1_000_000
TOOLS = {
    "enchufe": [sys.executable, "-m", "enchufe"],
    "ncat": ["ncat"],
}
SCENARIOS = ("bulk", "latency", "stalled")


def vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


class Broker:
    """The server under test with its clients connected."""

    def __init__(self, tool: str) -> None:
        self.port = free_port()
        argv = [*TOOLS[tool], "-v", "-l", "--broker", "-m", "200", "127.0.0.1", str(self.port)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, bufsize=0
        )
        assert self.proc.stderr is not None
        self.lines = Lines(self.proc.stderr.fileno())
        self.stderr: list[bytes] = []
        while (line := self.lines.next(time.monotonic() + 10)) is not None:
            self.stderr.append(line)
            if b"Listening on" in line:
                break
        self.clients: list[socket.socket] = []
        for _ in range(CLIENTS):
            self.clients.append(socket.create_connection(("127.0.0.1", self.port), timeout=10))
            if not self.lines.wait_for_accept(time.monotonic() + 10):
                raise RuntimeError(f"{tool}: client {len(self.clients)} not accepted")
        for client in self.clients:
            client.setblocking(False)

    def later_stderr(self) -> list[str]:
        """The server's stderr lines since the clients connected (within 0.5 s)."""
        out = []
        while (line := self.lines.next(time.monotonic() + 0.5)) is not None:
            out.append(line.decode(errors="replace"))
        return out

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        self.proc.stderr.close()


def in_workers(socks: list[socket.socket], work: Callable[..., Any], *args: Any) -> list[Any]:
    """Run ``work(conn, slice_of_socks, *args)`` in WORKERS forked processes; their results."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(WORKERS)
    pipes, procs = [], []
    for index in range(WORKERS):
        parent, child = context.Pipe()
        share = socks[index::WORKERS]
        proc = context.Process(target=work, args=(child, start, share, *args))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [pipe.recv() if pipe.poll(300) else {"error": "no result in 300 s"} for pipe in pipes]
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return results


# -- bulk ------------------------------------------------------------------------------------


def bulk_worker(conn: Any, start: Any, socks: list[socket.socket], size: int) -> None:
    expected = (CLIENTS - 1) * size
    payload = memoryview(os.urandom(256 * 1024))
    selector = selectors.DefaultSelector()
    to_send = {sock.fileno(): size for sock in socks}
    received = {sock.fileno(): 0 for sock in socks}
    ended: dict[int, str] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    buffer = bytearray(1 << 20)
    start.wait()
    began = time.monotonic()
    last = began
    pending = len(socks)
    while pending:
        events = selector.select(timeout=30)
        if not events:
            break
        for key, mask in events:
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            fd = key.fd
            if mask & selectors.EVENT_WRITE and to_send[fd]:
                try:
                    to_send[fd] -= sock.send(payload[: min(len(payload), to_send[fd])])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    to_send[fd] = 0
                    ended[fd] = f"send: {exc}"
                if not to_send[fd]:
                    selector.modify(sock, selectors.EVENT_READ)
            if mask & selectors.EVENT_READ:
                try:
                    got = sock.recv_into(buffer)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    got, ended[fd] = 0, f"recv: {exc}"
                if got == 0:
                    ended.setdefault(fd, "closed by the server")
                    selector.unregister(sock)
                    pending -= 1
                    continue
                received[fd] += got
                if received[fd] >= expected:
                    last = time.monotonic()
                    selector.unregister(sock)
                    pending -= 1
    conn.send({"began": began, "last": last, "received": sum(received.values()), "ended": len(ended)})


def bulk(tool: str, args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.bulk_mb * MB)
    broker = Broker(tool)
    try:
        results = in_workers(broker.clients, bulk_worker, size)
        began = min(r["began"] for r in results)
        last = max(r["last"] for r in results)
        received = sum(r["received"] for r in results)
        expected = CLIENTS * (CLIENTS - 1) * size
        notes = broker.later_stderr()
        return {
            "rate_gbs": received / (last - began) / 1e9,
            "complete": received == expected,
            "received": received,
            "expected": expected,
            "cut_off": sum(r["ended"] for r in results),
            "note": next((n for n in notes if "Disconnected" in n), "-"),
        }
    finally:
        broker.close()


# -- latency ---------------------------------------------------------------------------------


def latency_worker(conn: Any, start: Any, socks: list[socket.socket], messages: int) -> None:
    selector = selectors.DefaultSelector()
    received = {sock.fileno(): 0 for sock in socks}
    arrivals = {sock.fileno(): [0.0] * messages for sock in socks}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    start.wait()
    pending = len(socks)
    while pending:
        events = selector.select(timeout=30)
        if not events:
            break
        now = time.monotonic()
        for key, _ in events:
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            data = sock.recv(1 << 16)
            before = received[key.fd] // MESSAGE
            received[key.fd] += len(data)
            after = min(received[key.fd] // MESSAGE, messages)
            for index in range(before, after):
                arrivals[key.fd][index] = now
            if not data or after == messages:
                selector.unregister(sock)
                pending -= 1
    last = [max(times[i] for times in arrivals.values()) for i in range(messages)]
    conn.send({"last": last, "complete": all(count == messages * MESSAGE for count in received.values())})


def latency(tool: str, args: argparse.Namespace) -> dict[str, Any]:
    broker = Broker(tool)
    try:
        sender, receivers = broker.clients[0], broker.clients[1:]
        sent = [0.0] * args.messages
        started = threading.Event()

        def send() -> None:
            started.wait()
            time.sleep(0.2)  # the workers are in select()
            sender.setblocking(True)
            for index in range(args.messages):
                sent[index] = time.monotonic()
                sender.sendall(index.to_bytes(8, "big") * (MESSAGE // 8))
                time.sleep(0.002)

        thread = threading.Thread(target=send)
        thread.start()
        started.set()
        results = in_workers(receivers, latency_worker, args.messages)
        thread.join()
        lasts = [max(r["last"][i] for r in results) for i in range(args.messages)]
        delays = sorted(1e3 * (last - sent[i]) for i, last in enumerate(lasts))
        return {
            "p50_ms": delays[len(delays) // 2],
            "p99_ms": delays[len(delays) * 99 // 100],
            "max_ms": delays[-1],
            "complete": all(r["complete"] for r in results),
        }
    finally:
        broker.close()


# -- stalled ---------------------------------------------------------------------------------


def stalled_worker(conn: Any, start: Any, socks: list[socket.socket], expected: int, timeout: float) -> None:
    selector = selectors.DefaultSelector()
    received = {sock.fileno(): 0 for sock in socks}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    buffer = bytearray(1 << 20)
    start.wait()
    deadline = time.monotonic() + timeout
    pending = len(socks)
    while pending and (remaining := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(timeout=remaining):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            got = sock.recv_into(buffer)
            received[key.fd] += got
            if not got or received[key.fd] >= expected:
                selector.unregister(sock)
                pending -= 1
    conn.send({"received": list(received.values()), "last": time.monotonic()})


def stalled(tool: str, args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.stall_mb * MB)
    broker = Broker(tool)
    pid = broker.proc.pid
    try:
        stuck, readers = broker.clients[0], broker.clients[1:]
        peak_pss = [pss_kib(pid)]
        pss_before = peak_pss[0]
        done = threading.Event()

        def feed() -> None:
            assert broker.proc.stdin is not None
            stdin = broker.proc.stdin.fileno()
            chunk = os.urandom(1 << 16)
            with_timeout = time.monotonic() + args.stall_timeout
            for _ in range(size // len(chunk)):
                if time.monotonic() > with_timeout:
                    break
                try:
                    os.write(stdin, chunk)  # a blocking pipe: all of it, or an error
                except OSError:
                    break

        def sample() -> None:
            while not done.wait(0.05):
                peak_pss.append(pss_kib(pid))

        feeder = threading.Thread(target=feed, daemon=True)  # a blocked write to ncat stays blocked
        sampler = threading.Thread(target=sample)
        began = time.monotonic()
        feeder.start()
        sampler.start()
        results = in_workers(readers, stalled_worker, size // (1 << 16) * (1 << 16), args.stall_timeout)
        done.set()
        sampler.join()
        counts = [count for r in results for count in r["received"]]
        expected = size // (1 << 16) * (1 << 16)
        stuck_state = what_became_of(stuck)
        notes = broker.later_stderr()
        return {
            "complete": sum(count == expected for count in counts),
            "median_mb": statistics.median(counts) / MB,
            "min_mb": min(counts) / MB,
            "seconds": max(r["last"] for r in results) - began,
            "stalled": stuck_state,
            "note": next((n for n in notes if "Disconnected" in n), "-"),
            "hwm_mib": vm_hwm_kib(pid) / 1024,
            "pss_mib": max(peak_pss) / 1024,
            "pss_before_mib": pss_before / 1024,
        }
    finally:
        broker.close()


def what_became_of(sock: socket.socket) -> str:
    """Read what a client that never read has waiting, until the end of its stream or 2 s
    of silence: was it cut off, and after how much?"""
    sock.settimeout(2)
    got = 0
    try:
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    except TimeoutError:
        return f"still connected ({got / MB:.1f} MB waiting)"
    except OSError as exc:
        return f"reset by the server after {got / MB:.1f} MB ({exc.strerror})"
    return f"closed by the server after {got / MB:.1f} MB"


RUNNERS = {"bulk": bulk, "latency": latency, "stalled": stalled}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="limit to these scenarios")
    parser.add_argument("--only", default="enchufe,ncat", help="comma-separated tools")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--bulk-mb", type=float, default=1.0, help="MB each client sends in bulk (default 1)")
    parser.add_argument("--messages", type=int, default=1000, help="messages in latency (default 1000)")
    parser.add_argument("--stall-mb", type=float, default=50.0, help="MB the host sends in stalled (default 50)")
    parser.add_argument("--stall-timeout", type=float, default=30.0, help="bound on the stalled wait (s)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    results = Results("broker", reference="ncat")
    tools = args.only.split(",")
    scenarios = args.scenario or list(SCENARIOS)
    ncat = tool_version(["ncat", "--version"], r"Version (\S+)")
    print(
        f"# --broker, {CLIENTS} clients, {time.strftime('%Y-%m-%d')}, ncat {ncat}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for scenario in scenarios:
        rows: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        for rep in range(args.repeat):
            for tool in tools:
                row = RUNNERS[scenario](tool, args)
                rows[tool].append(row)
                print(f"{scenario} run {rep + 1}: {tool}: {row}", file=sys.stderr, flush=True)
        report(scenario, rows, args)
        record(results, scenario, rows)
    results.write(args.json)
    return 0


def record(results: Results, scenario: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    """A scenario's headline figures for ``--json``: bulk's delivered rate, latency's
    p50 and p99, stalled's peak memory."""
    figures: dict[str, list[tuple[str, str, str, str, Better]]] = {
        "bulk": [("bulk", "delivered", "GB/s", "rate_gbs", "higher")],
        "latency": [
            ("latency p50", "latency", "ms", "p50_ms", "lower"),
            ("latency p99", "latency", "ms", "p99_ms", "lower"),
        ],
        "stalled": [("stalled", "peak PSS", "MiB", "pss_mib", "lower")],
    }[scenario]
    for tool, runs in rows.items():
        for case, metric, unit, key, better in figures:
            results.add(case, tool, metric, unit, [float(r[key]) for r in runs], better=better)


def median(rows: list[dict[str, Any]], key: str) -> str:
    values = [row[key] for row in rows]
    return f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"


def report(scenario: str, rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print()
    if scenario == "bulk":
        print(f"## bulk: every client sends {args.bulk_mb} MB, median of {args.repeat} (min to max)")
        print("| tool | GB/s delivered | x ncat | complete runs | clients cut off | server said |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        reference = statistics.median(r["rate_gbs"] for r in rows.get("ncat", [{"rate_gbs": 0}]))
        for tool, runs in rows.items():
            rate = statistics.median(r["rate_gbs"] for r in runs)
            ratio = f"{rate / reference:.2f}" if reference else "-"
            print(
                f"| {tool} | {median(runs, 'rate_gbs')} | {ratio} | {sum(r['complete'] for r in runs)}/{len(runs)} "
                f"| {max(r['cut_off'] for r in runs)} | {runs[-1]['note']} |"
            )
    elif scenario == "latency":
        print(f"## latency: one message of {MESSAGE} bytes to 99 clients, {args.messages} messages, 2 ms apart")
        print("| tool | p50 ms | p99 ms | max ms | complete runs |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for tool, runs in rows.items():
            print(
                f"| {tool} | {median(runs, 'p50_ms')} | {median(runs, 'p99_ms')} | {median(runs, 'max_ms')} "
                f"| {sum(r['complete'] for r in runs)}/{len(runs)} |"
            )
    else:
        print(
            f"## stalled: the host sends {args.stall_mb} MB, one client never reads, 99 read "
            f"(bounded at {args.stall_timeout} s)"
        )
        print(
            "| tool | readers complete | median MB read | seconds | stalled client | server said "
            "| PSS before MiB | peak PSS MiB | peak RSS MiB |"
        )
        print("| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
        for tool, runs in rows.items():
            print(
                f"| {tool} | {statistics.median(r['complete'] for r in runs):.0f}/99 | {median(runs, 'median_mb')} "
                f"| {median(runs, 'seconds')} | {runs[-1]['stalled']} | {runs[-1]['note']} "
                f"| {median(runs, 'pss_before_mib')} | {median(runs, 'pss_mib')} | {median(runs, 'hwm_mib')} |"
            )


if __name__ == "__main__":
    sys.exit(main())
