#!/usr/bin/env python3
"""Many open tunnels through a proxy server: its memory, threads and descriptors per
tunnel, and whether every tunnel still answers.

Run from the repository root::

    python3 benchmarks/proxy_tunnels.py                       # 1,000 tunnels, every server
    python3 benchmarks/proxy_tunnels.py -n 5000 --only enchufe-socks5

The servers (enchufe's with ``-m N+10``): ``enchufe-socks5`` (``enchufe -l 127.0.0.1 P
--proxy-type socks5``), ``enchufe-http`` (``--proxy-type http``) and ``ncat-http``
(``ncat -l 127.0.0.1 P --proxy-type http``, which forks a process per client: its
figures are summed over the parent and its children). The target is an echo server in
a thread of this process (one epoll, every connection). This process opens N tunnels one
at a time, each with its own handshake (SOCKS5: no authentication, CONNECT to an IPv4
address; HTTP: ``CONNECT 127.0.0.1:T``), one round trip of a short line, then left open.
Read before the first tunnel and after the last: the server's resident set
(``VmRSS``; and ``Pss`` from ``smaps_rollup``, which shares the pages ncat's children
have in common fairly among them), its threads and its open descriptors. Then every
tunnel makes a second round trip, and after all are closed the server's descriptors
are counted again (bounded wait): a leak would show there.

The open-file limit of this process is raised to 2N + 100 (the client and the target
end of every tunnel); the enchufe server raises its own to fit ``-m``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _results import Results, add_json_option
from proxy_throughput import ENCHUFE, children, open_tunnel, stop_proxy
from throughput import free_port, wait_listening

SERVERS = {
    "enchufe-socks5": [*ENCHUFE, "-l", "127.0.0.1", "{port}", "--proxy-type", "socks5"],
    "enchufe-http": [*ENCHUFE, "-l", "127.0.0.1", "{port}", "--proxy-type", "http"],
    "ncat-http": ["ncat", "-l", "127.0.0.1", "{port}", "--proxy-type", "http"],
}


class EchoServer:
    """Echoes what every connection sends, on one selector in a daemon thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped:
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        self.selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(4096)
                    if data:
                        sock.send(data)  # a line at a time: it fits the send buffer
                        continue
                except OSError:
                    pass
                self.selector.unregister(sock)
                sock.close()

    def close(self) -> None:
        self.stopped = True
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def open_socks5(proxy_port: int, target_port: int, timeout: float) -> tuple[socket.socket, bytes]:
    """A SOCKS5 tunnel (no authentication, CONNECT 127.0.0.1:target_port)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if recv_exactly(sock, 2) != b"\x05\x00":
            raise ConnectionError("SOCKS5: no acceptable method")
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target_port))
        reply = recv_exactly(sock, 10)  # an IPv4 bound address: this server connects over IPv4
        if reply[:2] != b"\x05\x00":
            raise ConnectionError(f"SOCKS5: refused {reply!r}")
    except BaseException:
        sock.close()
        raise
    return sock, b""


def round_trip(sock: socket.socket, line: bytes) -> bool:
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    return data == line


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):
            found += processes(child)
    return found


def footprint(pid: int) -> dict[str, int]:
    """RSS and PSS in KiB, threads, descriptors and processes, summed over ``pid``'s tree."""
    total = {"rss": 0, "pss": 0, "threads": 0, "fds": 0, "processes": 0}
    for each in processes(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{each}/status").read_text()
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
            fds = len(os.listdir(f"/proc/{each}/fd"))
            total["rss"] += int(re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
            total["threads"] += int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
            total["pss"] += int(re.search(r"^Pss:\s+(\d+)", rollup, re.MULTILINE).group(1))  # type: ignore[union-attr]
            total["fds"] += fds
            total["processes"] += 1
    return total


Opener = Callable[[int, int, float], tuple[socket.socket, bytes]]


def measure(name: str, count: int, timeout: float) -> dict[str, object]:
    argv = list(SERVERS[name])
    if argv[0] != "ncat":  # ncat's proxy server ignores -m (and says so): it takes any number
        argv[-4:-4] = ["-m", str(count + 10)]
    return hold(name, argv, open_socks5 if name.endswith("socks5") else open_tunnel, count, timeout)


def hold(name: str, template: list[str], opener: Opener, count: int, timeout: float) -> dict[str, object]:
    """``count`` tunnels through the server ``template`` starts (``{port}``: where it
    listens, ``{target}``: the echo server's port), each opened by ``opener(port,
    target, timeout)``: its footprint before, while they are held and after, and how many
    answered."""
    echo = EchoServer()  # before free_port(), which could otherwise hand it the same port
    port = free_port()
    argv = [arg.format(port=port, target=echo.port) for arg in template]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tunnels: list[socket.socket] = []
    result: dict[str, object] = {"server": name, "asked": count, "failure": "-"}
    try:
        try:
            wait_listening(port, server, 10)
        except RuntimeError as exc:
            result["failure"] = f"{exc}"
            return result
        time.sleep(0.5)  # settled into its wait
        before = footprint(server.pid)
        started = time.monotonic()
        for index in range(count):
            try:
                sock, first = opener(port, echo.port, timeout)
                tunnels.append(sock)
                if first or not round_trip(sock, b"hello %d\n" % index):
                    result["failure"] = f"tunnel {index + 1}: no echo"
                    break
            except OSError as exc:
                result["failure"] = f"tunnel {index + 1}: {exc!r} (server status {server.poll()})"
                break
        opened = time.monotonic() - started
        time.sleep(0.5)  # idle again
        after = footprint(server.pid)
        answered = 0
        with contextlib.suppress(OSError):
            for index, sock in enumerate(tunnels):
                answered += round_trip(sock, b"again %d\n" % index)
        for sock in tunnels:
            sock.close()
        deadline = time.monotonic() + 10
        while (closed := footprint(server.pid))["fds"] > before["fds"] and time.monotonic() < deadline:
            time.sleep(0.05)
        result.update(
            held=len(tunnels),
            seconds=round(opened, 2),
            before=before,
            after=after,
            closed=closed,
            answered=answered,
            alive=server.poll() is None,
        )
    finally:
        for sock in tunnels:
            sock.close()
        said = stop_proxy(server)
        echo.close()
        if said:
            result["failure"] = f"{result['failure']}; stderr: {said[-200:]}"
    return result


def raise_file_limit(count: int) -> None:
    """Room in this process (and the servers it starts) for both ends of ``count`` tunnels."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * count + 100), hard))


def print_header() -> None:
    header = "| server | held | s to open | RSS KiB before → after | KiB/tunnel (RSS) | PSS KiB before → after"
    print(f"{header} | KiB/tunnel (PSS) | processes | threads | fds before → after → closed | answered | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def print_row(name: str, row: dict[str, object], count: int) -> bool:
    """``row``, one of :func:`hold`'s, as a line of the table; whether it went wrong."""
    held = int(row.get("held", 0))  # type: ignore[call-overload]
    if "after" not in row:
        print(f"| {name} | {held} | - | - | - | - | - | - | - | - | - | {row['failure']} |", flush=True)
        return True
    before, after, closed = row["before"], row["after"], row["closed"]
    assert isinstance(before, dict) and isinstance(after, dict) and isinstance(closed, dict)
    per_rss = (after["rss"] - before["rss"]) / max(held, 1)
    per_pss = (after["pss"] - before["pss"]) / max(held, 1)
    print(
        f"| {name} | {held} | {row['seconds']} | {before['rss']:,} → {after['rss']:,} | {per_rss:.1f} | "
        f"{before['pss']:,} → {after['pss']:,} | {per_pss:.1f} | {after['processes']} | {after['threads']} | "
        f"{before['fds']} → {after['fds']} → {closed['fds']} | {row['answered']} | {row['failure']} |",
        flush=True,
    )
    return row["answered"] != count or not row["alive"] or row["failure"] != "-"


def record_row(results: Results, case: str, tool: str, row: dict[str, object]) -> None:
    """``row``'s PSS per connection and seconds to open them all, added to ``results``."""
    before, after = row.get("before"), row.get("after")
    if not (isinstance(before, dict) and isinstance(after, dict)):
        results.problem(f"{case} / {tool}: {row['failure']}")
        return
    held = max(int(row.get("held", 0)), 1)  # type: ignore[call-overload]
    results.add(
        case, tool, "memory per connection (PSS)", "KiB", [(after["pss"] - before["pss"]) / held], better="lower"
    )
    results.add(case, tool, "time to open all", "s", [float(row["seconds"])], better="lower")  # type: ignore[arg-type]
    if row["failure"] != "-":
        results.problem(f"{case} / {tool}: {row['failure']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="tunnels to open (default 1000)")
    parser.add_argument("--only", default=",".join(SERVERS), help=f"comma-separated servers ({','.join(SERVERS)})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a tunnel's handshake or echo may take")
    add_json_option(parser)
    args = parser.parse_args(argv)
    results = Results("proxy_tunnels", reference="ncat")
    raise_file_limit(args.n)
    print(f"# {args.n} open tunnels through a proxy server on 127.0.0.1, {time.strftime('%Y-%m-%d')}")
    print()
    print_header()
    bad = False
    for name in args.only.split(","):
        row = measure(name.strip(), args.n, args.timeout)
        bad = print_row(name, row, args.n) or bad
        tool, _, protocol = name.strip().partition("-")
        record_row(results, f"{args.n} tunnels, {protocol}", tool, row)
    results.write(args.json)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
