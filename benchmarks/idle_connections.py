"""Idle connections held by a keep-open listener: memory per connection, and whether it
still serves one more client. enchufe and ncat in the same run, and the library's
RequestServer (``enchufe-request``: a line-echo handler in a worker pool).

For each tool: start ``TOOL -l -k -m LIMIT 127.0.0.1 PORT``, open N connections from
this process one at a time (each waits until the server has accepted it: the command
keeps ncat's listen backlog of 10), then read the server's proportional set size (PSS,
``/proc/PID/smaps_rollup``) and thread count, and check that one more client gets
what the server's stdin says. Memory per connection is (PSS after - PSS before) / N.
``enchufe-request`` is a small program of this file (``--serve-request PORT``): each
client makes one request (a line, echoed) once connected, so it is accepted, served
once and parked, and "one more served" is one more client's echo.

    python3 benchmarks/idle_connections.py [-n 10000] [--only enchufe,ncat,enchufe-request]

Needs an open-file limit above N in this shell (``ulimit -n``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

TOOLS = {
    "enchufe": [sys.executable, "-m", "enchufe"],
    "ncat": ["ncat"],
    "enchufe-request": [sys.executable, __file__, "--serve-request"],
}


def serve_request(port: int) -> None:
    """A RequestServer echoing one line per request, until terminated."""
    import signal

    import enchufe

    def echo_line(conn: enchufe.Connection) -> None:
        conn.send_all(conn.recv_line())

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    listeners = enchufe.open_listeners(enchufe.InetAddress("127.0.0.1", port), backlog=1024)
    with enchufe.RequestServer(listeners, echo_line) as server:
        print(f"Listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # SIGTERM: the with block closes everything
            server.serve_forever()


def round_trip(sock: socket.socket) -> bool:
    sock.sendall(b"ping\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            return False
        data += chunk
    return data == b"ping\n"


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Lines:
    """The server's stderr, line by line, with a deadline (raw reads: select() cannot
    see what a buffered file object has already read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def next(self, deadline: float) -> bytes | None:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def wait_for_accept(self, deadline: float) -> bool:
        """Until the server reports one more accepted connection (ncat 7.93 prints two
        lines per connection; the one with the port counts)."""
        while (line := self.next(deadline)) is not None:
            if re.search(rb"Connection from .*:\d+\.$", line.strip()):
                return True
        return False


def measure(tool: str, count: int) -> dict[str, object]:
    port = free_port()
    argv = [*TOOLS[tool], "-v", "-l", "-k", "-m", str(count + 10), "127.0.0.1", str(port)]
    request_style = tool == "enchufe-request"
    if request_style:
        argv = [*TOOLS[tool], str(port)]
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[socket.socket] = []
    result: dict[str, object] = {"tool": tool, "asked": count}
    try:
        assert server.stderr is not None
        lines = Lines(server.stderr.fileno())
        while b"Listening on" not in (lines.next(time.monotonic() + 10) or b"Listening on"):
            pass
        time.sleep(0.5)  # the server settles into its wait (PSS is read while it is idle)
        before = pss_kib(server.pid)
        started = time.monotonic()
        failure = ""
        for index in range(count):
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError as exc:
                failure = f"connection {index + 1}: {exc}"
                break
            if request_style:
                if not round_trip(clients[-1]):
                    failure = f"connection {index + 1} not served (server status {server.poll()})"
                    break
                continue
            # One at a time: both keep a listen backlog of 10, and a burst beyond it
            # costs each extra client a 1 s SYN retry.
            if not lines.wait_for_accept(time.monotonic() + 10):
                failure = f"connection {index + 1} not accepted (server status {server.poll()})"
                break
        held = len(clients)
        time.sleep(0.5)  # idle again before PSS is read
        elapsed = time.monotonic() - started
        alive = server.poll() is None
        result.update(held=held, seconds=round(elapsed - 0.5, 2), failure=failure or "-")
        if alive:
            after = pss_kib(server.pid)
            result.update(
                pss_before_kib=before,
                pss_after_kib=after,
                per_connection_kib=round((after - before) / max(held, 1), 2),
                threads=threads(server.pid),
            )
            with socket.create_connection(("127.0.0.1", port), timeout=5) as one_more:
                if request_style:
                    result["one_more_served"] = round_trip(one_more)
                    return result
                lines.wait_for_accept(time.monotonic() + 10)  # a client that joins later misses earlier input
                assert server.stdin is not None
                server.stdin.write(b"still serving\n")
                server.stdin.flush()
                one_more.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data:
                        chunk = one_more.recv(100)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                result["one_more_served"] = data == b"still serving\n"
        else:
            err = lines.pending.decode(errors="replace").strip()
            result.update(exit_status=server.returncode, stderr=err[-200:])
    finally:
        for client in clients:
            client.close()
        if server.poll() is None:
            server.terminate()
        server.wait(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10000, help="idle connections to open (default 10000)")
    parser.add_argument("--only", default="enchufe,ncat,enchufe-request", help="comma-separated tools")
    parser.add_argument("--serve-request", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_request:
        serve_request(args.serve_request)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.n + 100), hard))
    print(f"# {args.n} idle TCP connections to TOOL -l -k on 127.0.0.1, {time.strftime('%Y-%m-%d')}")
    header = ["tool", "held", "seconds", "PSS before KiB", "PSS after KiB", "KiB per connection", "threads"]
    print("| " + " | ".join([*header, "one more served", "note"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for tool in args.only.split(","):
        row = measure(tool, args.n)
        note = row.get("failure", "-")
        if "exit_status" in row:
            note = f"{note}; exit {row['exit_status']}: {row.get('stderr', '')}"
        print(
            f"| {tool} | {row.get('held')} | {row.get('seconds')} | {row.get('pss_before_kib', '-')} | "
            f"{row.get('pss_after_kib', '-')} | {row.get('per_connection_kib', '-')} | {row.get('threads', '-')} | "
            f"{row.get('one_more_served', '-')} | {note} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
