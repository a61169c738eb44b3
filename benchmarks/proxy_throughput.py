#!/usr/bin/env python3
"""Bulk throughput through an HTTP CONNECT proxy server: enchufe's against ncat's.

Run from the repository root::

    python3 benchmarks/proxy_throughput.py                  # 1 GiB, 3 timed runs per case
    python3 benchmarks/proxy_throughput.py --size 64M -r 1  # a quick smoke run
    python3 benchmarks/proxy_throughput.py --only enchufe,ncat --direction upload

The proxy servers, started once each and kept for the whole run:

``enchufe``             ``enchufe -l 127.0.0.1 P --proxy-type http``
``ncat``                ``ncat -l 127.0.0.1 P --proxy-type http`` (a process per client)
``library``             this file's ``--serve P``: a ProxyServer with HttpProxyNegotiator
                        on an EventLoop, what the command runs
``library 64 KiB pipe`` the same with ``enchufe.net.tunnel.LARGE_PIPE`` set to 65536, so
                        a tunnel's pipes never grow past the default 64 KiB

One client and one target for all, both in this process (a thread each): the client
connects to the proxy, sends ``CONNECT 127.0.0.1:T HTTP/1.1`` itself, reads the
response head and then moves bytes in 1 MiB ``send``/``recv_into`` calls; the target
accepts one connection and is the sink (``upload``: client to target, the client
half-closes at the end) or the source (``download``: target to client, the target
closes at the end). The time is from the client's connect to the end of both
ends (every byte counted at the sink, the end of stream seen by the client). The proxy
server's CPU time is read from ``/proc/PID/stat`` before and after each transfer
(utime + stime + cutime + cstime: ncat's child is reaped first, so its CPU is counted).

Every case and direction runs ``--repeat`` times round-robin and the median is
reported, after one check run each in which the sink hashes what it gets (SHA-256,
compared with what was sent; a mismatch, a short count, a refused CONNECT or a stall
longer than ``--timeout`` is listed as a problem and makes the script exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _results import Results, add_json_option
from throughput import GIB, MB, free_port, parse_size, wait_listening

BLOCK = 1 << 20
DIRECTIONS = ("upload", "download")
SMALL_PIPE = 64 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENCHUFE = [sys.executable, "-m", "enchufe"]
PROXIES: dict[str, list[str] | None] = {
    "direct": None,  # no proxy: the client and the target alone, the ceiling
    "enchufe": [*ENCHUFE, "-l", "127.0.0.1", "{port}", "--proxy-type", "http"],
    "ncat": ["ncat", "-l", "127.0.0.1", "{port}", "--proxy-type", "http"],
    "library": [sys.executable, __file__, "--serve", "{port}"],
    "library 64 KiB pipe": [sys.executable, __file__, "--serve", "{port}", "--pipe", str(SMALL_PIPE)],
}


def serve(port: int, pipe: int | None, protocol: str = "http", max_connections: int = 100) -> None:
    """A ProxyServer on 127.0.0.1:``port`` until SIGTERM, its pipes grown to ``pipe``."""
    from enchufe.net import tunnel

    if pipe is not None:
        tunnel.LARGE_PIPE = pipe  # read by each pump when its pipe fills
    from enchufe import InetAddress, open_listeners
    from enchufe.net.loop import EventLoop
    from enchufe.serve.proxy_server import ProxyServer

    if protocol == "http":
        from enchufe.proto.http_proxy import HttpProxyNegotiator

        negotiator = HttpProxyNegotiator
    else:
        from enchufe.proto.socks import Socks5Negotiator  # type: ignore[import-not-found]

        negotiator = Socks5Negotiator
    listeners = open_listeners(InetAddress("127.0.0.1", port))
    with EventLoop() as loop:
        server = ProxyServer(loop, listeners, lambda peer: negotiator(), max_connections=max_connections)
        signal.signal(signal.SIGTERM, lambda number, frame: loop.stop())
        server.start()
        try:
            loop.run_forever()
        finally:
            server.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """``pid``'s child processes (``/proc/PID/task/*/children``)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # it ended meanwhile (ncat's per-client processes do)
        return found
    for task in tasks:
        with contextlib.suppress(FileNotFoundError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def wait_childless(pid: int, timeout: float = 10.0) -> bool:
    """Bounded wait until ``pid`` has reaped every child (ncat forks one per client)."""
    deadline = time.monotonic() + timeout
    while children(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def machine_busy() -> tuple[int, int]:
    """Jiffies of every CPU (busy, all) from ``/proc/stat``: idle and iowait are not busy."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def connect_request(host: str, port: int) -> bytes:
    return f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def read_head(sock: socket.socket, limit: int = 65536) -> tuple[bytes, bytes]:
    """The response head up to its blank line, and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > limit:
            raise ConnectionError(f"proxy closed or overlong head after {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def open_tunnel(proxy_port: int, target_port: int, timeout: float) -> tuple[socket.socket, bytes]:
    """A connection through the HTTP proxy to the target, and the tunnel's first bytes."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    sock.sendall(connect_request("127.0.0.1", target_port))
    head, rest = read_head(sock)
    if not re.match(rb"HTTP/1\.[01] 200", head):
        sock.close()
        raise ConnectionError(f"CONNECT refused: {head.splitlines()[0]!r}")
    return sock, rest


class Sink:
    """Counts (and with ``check``, hashes) what a socket receives until its end."""

    def __init__(self, check: bool) -> None:
        self.count = 0
        self.digest = hashlib.sha256() if check else None
        self.buffer = memoryview(bytearray(BLOCK))

    def take(self, data: bytes | memoryview) -> None:
        self.count += len(data)
        if self.digest is not None:
            self.digest.update(data)

    def drain(self, sock: socket.socket, limit: int | None = None) -> None:
        """Take what ``sock`` receives until its end of stream, or until ``limit`` bytes in all."""
        while (limit is None or self.count < limit) and (received := sock.recv_into(self.buffer)):
            self.take(self.buffer[:received])


def end_stream(sock: socket.socket, sink: Sink) -> None:
    """The client's end: a half-close (over TLS, ``close_notify``), then ``sink`` takes what
    comes until the end of stream (a TLS server's ``close_notify``) comes back."""
    if isinstance(sock, ssl.SSLSocket):
        sock.unwrap()
    else:
        sock.shutdown(socket.SHUT_WR)
    sink.drain(sock)


def send_all(sock: socket.socket, block: bytes, size: int) -> None:
    for _ in range(size // BLOCK):
        sock.sendall(block)


def transfer(
    proxy: subprocess.Popen[bytes] | None,
    port: int,
    direction: str,
    size: int,
    block: bytes,
    *,
    check: bool,
    timeout: float,
) -> dict[str, object]:
    """One transfer of ``size`` bytes through the proxy on ``port`` (``None``: straight to
    the target, a listener of its own): seconds, CPU times, problems."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        target_port = listener.getsockname()[1]

        def connect() -> tuple[socket.socket, bytes]:
            if proxy is None:
                return socket.create_connection(("127.0.0.1", target_port), timeout=timeout), b""
            return open_tunnel(port, target_port, timeout)

        return move(proxy, listener, connect, direction, size, block, check=check, timeout=timeout)


def move(
    server: subprocess.Popen[bytes] | None,
    listener: socket.socket,
    connect: Callable[[], tuple[socket.socket, bytes]],
    direction: str,
    size: int,
    block: bytes,
    *,
    check: bool,
    timeout: float,
) -> dict[str, object]:
    """``size`` bytes between the client (``connect``: its socket, plain or TLS, and the
    first bytes already read) and the target (one connection accepted on ``listener``,
    which is closed if the client fails), through ``server``: seconds, CPU times, problems.

    The client ends with :func:`end_stream` once it has sent (uploading) or received
    (downloading) every byte, and the time runs until the end of stream comes back.
    """
    listener.settimeout(timeout)
    sink = Sink(check)
    failures: list[str] = []

    def target() -> None:
        try:
            with listener.accept()[0] as conn:
                conn.settimeout(timeout)
                if direction == "upload":
                    sink.drain(conn)
                else:
                    send_all(conn, block, size)
        except OSError as exc:
            failures.append(f"target: {exc!r}")

    cpu_before = cpu_seconds(server.pid) if server is not None else 0.0
    busy_before = machine_busy()
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    thread = threading.Thread(target=target)
    thread.start()
    try:
        sock, first = connect()
        with sock:
            if direction == "upload":
                send_all(sock, block, size)
                end_stream(sock, Sink(False))  # the target's close comes back through the server
            else:
                sink.take(first)
                sink.drain(sock, size)
                end_stream(sock, sink)  # ncat -c passes the target's end on only after the client's
    except OSError as exc:
        failures.append(f"client: {exc!r}")
        listener.close()
    thread.join(timeout)
    seconds = time.monotonic() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    busy = [after - before for after, before in zip(machine_busy(), busy_before, strict=True)]
    if server is not None and not wait_childless(server.pid):
        failures.append("the server's child did not end")
    if sink.count != size:
        failures.append(f"{sink.count} bytes of {size} arrived")
    return {
        "seconds": seconds,
        "cpu": cpu_seconds(server.pid) - cpu_before if server is not None else 0.0,
        "busy": busy[0] / max(busy[1], 1),
        "own_cpu": own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime,
        "digest": sink.digest.hexdigest() if sink.digest is not None else None,
        "failures": failures,
    }


def expected_digest(block: bytes, size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // BLOCK):
        digest.update(block)
    return digest.hexdigest()


def start_proxy(name: str, timeout: float = 10.0) -> tuple[subprocess.Popen[bytes] | None, int]:
    template = PROXIES[name]
    if template is None:
        return None, 0
    port = free_port()
    argv = [arg.format(port=port) for arg in template]
    proxy = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(port, proxy, timeout)
    return proxy, port


def stop_proxy(proxy: subprocess.Popen[bytes]) -> str:
    """Stop ``proxy``; what it wrote on stderr."""
    proxy.terminate()
    try:
        _, err = proxy.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proxy.kill()
        _, err = proxy.communicate()
    return err.decode(errors="replace").strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=GIB, help="bytes per transfer, whole MiB (default 1G)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--only", help=f"comma-separated proxies ({','.join(PROXIES)})")
    parser.add_argument("--direction", choices=DIRECTIONS, action="append", help="limit to these directions")
    parser.add_argument("--no-check", action="store_true", help="skip the hashed check runs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a socket may stall (default 120)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pipe", type=int, help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if args.size % BLOCK or not args.size:
        parser.error("--size must be a whole number of MiB")
    return args


def rounds(
    one: Callable[[str, str, bool], dict[str, object]],
    names: list[str],
    directions: list[str],
    args: argparse.Namespace,
    wanted: str,
    runs: dict[tuple[str, str], list[dict[str, object]]],
    problems: dict[tuple[str, str], list[str]],
) -> None:
    """A check run of each case (``one(name, direction, check)``; unless ``--no-check``), its
    digest compared with ``wanted``, then ``--repeat`` timed runs round-robin into ``runs``."""
    if not args.no_check:
        for name in names:
            for direction in directions:
                outcome = one(name, direction, True)
                found = list(outcome["failures"])  # type: ignore[call-overload]
                if outcome["digest"] != wanted:
                    found.append("check run: SHA-256 differs")
                problems.setdefault((name, direction), []).extend(found)
    for _ in range(args.repeat):
        for name in names:
            for direction in directions:
                outcome = one(name, direction, False)
                runs.setdefault((name, direction), []).append(outcome)
                problems.setdefault((name, direction), []).extend(outcome["failures"])  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.pipe)
        return 0
    names = [name.strip() for name in args.only.split(",")] if args.only else list(PROXIES)
    directions = args.direction or list(DIRECTIONS)
    block = os.urandom(BLOCK)
    proxies = {name: start_proxy(name) for name in names}
    problems: dict[tuple[str, str], list[str]] = {}
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}

    def one(name: str, direction: str, check: bool) -> dict[str, object]:
        return transfer(*proxies[name], direction, args.size, block, check=check, timeout=args.timeout)

    try:
        rounds(one, names, directions, args, expected_digest(block, args.size), runs, problems)
    finally:
        said = {name: stop_proxy(proxy) for name, (proxy, _) in proxies.items() if proxy is not None}
    report(names, directions, runs, problems, said, args.size)
    results = Results("proxy_throughput", reference="ncat")
    record(results, names, directions, runs, problems, args.size)
    results.write(args.json)
    return 1 if any(problems.values()) else 0


def record(
    results: Results,
    names: list[str],
    directions: list[str],
    runs: dict[tuple[str, str], list[dict[str, object]]],
    problems: dict[tuple[str, str], list[str]],
    size: int,
    case_prefix: str = "",
) -> None:
    """Add each server's MB/s and CPU seconds per direction to ``results`` (``direct`` has
    no server, so no CPU row)."""
    for direction in directions:
        for name in names:
            case = f"{case_prefix}{direction}"
            done = runs.get((name, direction), [])
            results.add(case, name, "throughput", "MB/s", [size / float(run["seconds"]) / MB for run in done])  # type: ignore[arg-type]
            if name != "direct":
                results.add(case, name, "server CPU", "s", [float(run["cpu"]) for run in done], better="lower")  # type: ignore[arg-type]
            for text in problems.get((name, direction), []):
                results.problem(f"{case_prefix}{name} {direction}: {text[-300:]}")


def report(
    names: list[str],
    directions: list[str],
    runs: dict[tuple[str, str], list[dict[str, object]]],
    problems: dict[tuple[str, str], list[str]],
    said: dict[str, str],
    size: int,
    *,
    title: str = "an HTTP CONNECT proxy",
    baseline: str = "ncat",
) -> None:
    """The table of medians: each server's rate and CPU, and their ratios to ``baseline``'s."""
    load = os.getloadavg()
    print(f"# {size / GIB:g} GiB through {title} on 127.0.0.1, {time.strftime('%Y-%m-%d')}")
    print(f"(load average at the end {load[0]:.2f} {load[1]:.2f}; medians of {len(next(iter(runs.values())))})")
    print()
    x = f"x {baseline}"
    print(f"| direction | server | MB/s | {x} | server CPU s | {x} | client+target CPU s | CPUs busy | runs MB/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")

    def median(name: str, direction: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[name, direction])  # type: ignore[arg-type]

    for direction in directions:
        for name in names:
            seconds = median(name, direction, "seconds")
            cpu = median(name, direction, "cpu")
            rate = size / seconds / MB
            ratio = cpu_ratio = "-"
            if baseline in names and name not in (baseline, "direct"):
                ratio = f"{rate / (size / median(baseline, direction, 'seconds') / MB):.2f}"
                cpu_ratio = f"{cpu / median(baseline, direction, 'cpu'):.2f}"
            each = ", ".join(f"{size / float(run['seconds']) / MB:.0f}" for run in runs[name, direction])  # type: ignore[arg-type]
            own, busy = median(name, direction, "own_cpu"), median(name, direction, "busy")
            shown = f"{cpu:.2f}" if name != "direct" else "-"
            cells = [direction, name, f"{rate:.0f}", ratio, shown, cpu_ratio, f"{own:.2f}", f"{busy:.0%}", each]
            print("| " + " | ".join(cells) + " |")
    found = [(key, text) for key, texts in problems.items() for text in texts]
    found += [((name, "stderr"), text) for name, text in said.items() if text]
    if found:
        print()
        print("Problems:")
        for (name, direction), text in found:
            print(f"- {name} {direction}: {text[-300:]}")


if __name__ == "__main__":
    sys.exit(main())
