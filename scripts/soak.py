"""Leak soak: every kind of server enchufe has, churned by clients for minutes, watched from /proc.

Run by hand (never in CI; tests/test_soak.py is its few-seconds version)::

    nice -n 19 python scripts/soak.py --minutes 10

Each server runs in a process of its own, started here: the library's ``Server``,
``RequestServer`` and ``DatagramServer`` (``soak.py --serve KIND``), and the command's
``-l -k`` hub, ``-l -k --ssl``, ``-l -k -e /bin/cat``, ``-l --proxy-type http`` and
``enchufe-relay``. Round after round, each gets a bounded churn of clients on loopback,
one after another and a few at once: whole exchanges with a half-close, resets
(``SO_LINGER`` 0) mid-way, connections held idle through the round, garbage (random
bytes; for TLS, garbage instead of a handshake and handshakes cut short), UDP peers.

After a warm-up round, each server's descriptors (``/proc/PID/fd``) and threads
(``/proc/PID/status``), its children's included, settle to a baseline. After every
later round they must settle back to it, or to less: more is a leak. The resident set
(``VmRSS``) is sampled at each round's end; its least-squares slope over the second half
of the run (the first fills caches and the allocator's arenas: the TLS listener's RSS
climbs by about 12 MiB over its first 6 minutes, then holds still) must stay under
:data:`RSS_SLOPE_LIMIT`: a leak of even 100 bytes per
connection, at the hundreds of connections per minute each server gets, exceeds it,
while the allocator's own settling stays far below. Every few seconds a sample of every
server is printed, and at the end a table of the rounds; the exit status is 1 if any
check failed.

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "src"
LOOPBACK = "127.0.0.1"

#: KiB per minute a server's resident set may grow, fitted over the second half of the
#: run (see the module docstring).
RSS_SLOPE_LIMIT = 256.0
#: Seconds a server has to settle back to its baseline after a round: handler threads
#: and programs are reaped after the client saw its end, and UDP sessions end by their
#: idle timeout (:data:`DATAGRAM_IDLE`).
SETTLE_TIMEOUT = 15.0
DATAGRAM_IDLE = 0.5
#: Seconds a baseline's counts must hold still: longer than a UDP session's idle timeout.
STABLE_FOR = 1.0
#: Seconds each client's socket operation may take (a server that stops answering is a
#: failure, not a hang).
STEP_TIMEOUT = 10.0
#: Clients at once within a round (the rest of the machine is shared).
CONCURRENCY = 6


# -- the library's servers, each run as ``soak.py --serve KIND`` ----------------------------


def serve(kind: str) -> None:
    """Serve ``kind`` on loopback until standard input ends; print its port on stderr."""
    sys.path.insert(0, str(SOURCES))
    import enchufe
    from enchufe.errors import NetworkError

    def quiet(conn: object, exc: Exception) -> None:
        """Resets and garbage are the churn's point: nothing to report."""
        if not isinstance(exc, NetworkError):
            print(f"soak: handler error: {exc!r}", file=sys.stderr, flush=True)

    def echo(conn: enchufe.Connection) -> None:
        while data := conn.recv():
            conn.send_all(data)
        conn.send_eof()

    def one_request(conn: enchufe.Connection) -> None:
        line = conn.recv_line(max_size=4096)
        if not line.endswith(b"\n"):
            conn.close()  # the client ended mid-line, or sent garbage
            return
        conn.send_all(line.upper())

    address = enchufe.InetAddress(LOOPBACK, 0)
    listeners = enchufe.open_listeners(address, transport="datagram" if kind == "datagram" else "stream")
    server: enchufe.Server | enchufe.RequestServer | enchufe.DatagramServer
    if kind == "server":
        server = enchufe.Server(listeners, echo, on_error=quiet)
    elif kind == "request":
        server = enchufe.RequestServer(listeners, one_request, workers=4, idle_timeout=5.0, on_error=quiet)
    else:
        server = enchufe.DatagramServer(listeners, echo, on_error=quiet, idle_timeout=DATAGRAM_IDLE)
    with server:
        server.start()
        print(f"soak: Listening on {server.addresses[0]}", file=sys.stderr, flush=True)
        sys.stdin.buffer.read()  # until the soak closes the pipe


# -- the servers, as processes ----------------------------------------------------------------


class ServerProcess:
    """A server process: its port, read from its stderr, and its counts, from /proc."""

    def __init__(self, kind: str, argv: list[str]) -> None:
        self.kind = kind
        env = {**os.environ, "PYTHONPATH": str(SOURCES)}
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        self.port_known = threading.Event()
        self.port = 0
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, name=f"stderr-{kind}", daemon=True)
        self._reader.start()
        if not self.port_known.wait(STEP_TIMEOUT):
            self.stop()
            raise RuntimeError(f"{kind}: no listening port in {self.stderr_lines}")

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_lines.append(line)
            found = re.search(r"Listening on \S+:(\d+)$", line)
            if found and not self.port_known.is_set():
                self.port = int(found.group(1))
                self.port_known.set()

    def counts(self) -> tuple[int, int, int]:
        """Descriptors and threads, the process's and its children's, and its RSS in KiB."""
        descriptors = threads = 0
        for pid in [self.popen.pid, *_children(self.popen.pid)]:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                descriptors += len(os.listdir(f"/proc/{pid}/fd"))
                threads += _status(pid, "Threads")
        return descriptors, threads, _status(self.popen.pid, "VmRSS")

    def settled(self, baseline: tuple[int, int] | None) -> tuple[int, int, int]:
        """The counts once descriptors and threads are at most ``baseline`` (``None``: once
        they have not changed for :data:`STABLE_FOR` seconds), or at the deadline."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        readings = [self.counts()]
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            fds, threads, _ = readings[-1]
            if baseline is not None and fds <= baseline[0] and threads <= baseline[1]:
                break
            if baseline is None and readings[-1][:2] != readings[0][:2]:
                readings, stable_since = readings[-1:], time.monotonic()
            if baseline is None and time.monotonic() - stable_since >= STABLE_FOR:
                break
            time.sleep(0.02)  # the counts have no event to wait on: read them again
            readings.append(self.counts())
        return readings[-1]

    def stop(self) -> None:
        assert self.popen.stdin is not None
        with contextlib.suppress(OSError):
            self.popen.stdin.close()
        self.popen.terminate()
        try:
            self.popen.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(STEP_TIMEOUT)
        assert self.popen.stderr is not None
        self.popen.stderr.close()


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ProcessLookupError(pid)


# -- the clients ------------------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=STEP_TIMEOUT)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST), not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.close()


def _until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _payload(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, 3000)).replace(b"\n", b"")


def echo_client(port: int, rng: random.Random, how: str) -> None:
    """One client of an echo server (stream): ``how`` it behaves."""
    sock = _connect(port)
    try:
        payload = _payload(rng)
        if how == "whole":
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            echoed = _until_eof(sock)
            assert echoed == payload, (len(echoed), len(payload))
        elif how == "reset":
            sock.sendall(payload)
            _reset(sock)
        elif how == "garbage":
            sock.sendall(rng.randbytes(rng.randrange(1, 500)))
    finally:
        sock.close()


def request_client(port: int, rng: random.Random, how: str) -> None:
    """One client of the request server: requests on one connection, then an ending."""
    sock = _connect(port)
    try:
        for _ in range(rng.randrange(1, 4)):
            line = rng.randbytes(20).hex().encode() + b"\n"
            sock.sendall(line)
            answer = b""
            while not answer.endswith(b"\n"):
                answer += sock.recv(4096) or b"\n!"
            assert answer == line.upper(), answer
        if how == "reset":
            _reset(sock)
        elif how == "garbage":
            sock.sendall(rng.randbytes(100).replace(b"\n", b""))
        elif how == "whole":
            sock.shutdown(socket.SHUT_WR)
            assert _until_eof(sock) == b""
    finally:
        sock.close()


def datagram_client(port: int, rng: random.Random, how: str) -> None:
    """A UDP peer: a datagram echoed back, or garbage and gone.

    A peer that left without reading may have been given the port this one has: UDP has
    no connection to tell them apart, and its echo, arriving late, is this peer's to
    read. Such a datagram is skipped; the peer's own must come.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(STEP_TIMEOUT)
        sock.connect((LOOPBACK, port))
        payload = _payload(rng)[:1400]
        sock.send(payload)
        if how == "whole":
            while (echoed := sock.recv(65536)) != payload:
                print(f"soak: a datagram of {len(echoed)} bytes for this port's earlier peer", file=sys.stderr)


def sink_client(port: int, rng: random.Random, how: str) -> None:
    """A client of the ``-l -k`` hub (which writes what it gets to its stdout)."""
    sock = _connect(port)
    try:
        sock.sendall(_payload(rng))
        if how == "reset":
            _reset(sock)
        elif how == "whole":
            sock.shutdown(socket.SHUT_WR)
    finally:
        sock.close()


_TLS_CLIENT = ssl.create_default_context()
_TLS_CLIENT.check_hostname = False
_TLS_CLIENT.verify_mode = ssl.CERT_NONE


def tls_client(port: int, rng: random.Random, how: str) -> None:
    """A client of ``-l -k --ssl``: a handshake and data, garbage instead of a
    handshake, or a handshake cut short by a reset."""
    sock = _connect(port)
    try:
        if how == "garbage":
            sock.sendall(rng.randbytes(rng.randrange(1, 500)))
            return
        if how == "reset":
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(40))  # a cut ClientHello
            _reset(sock)
            return
        with _TLS_CLIENT.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(_payload(rng))
    finally:
        sock.close()


def proxy_client(port: int, rng: random.Random, how: str, target: int) -> None:
    """A client of the HTTP proxy server: a CONNECT tunnel to the echo target."""
    sock = _connect(port)
    try:
        if how == "garbage":
            sock.sendall(rng.randbytes(rng.randrange(1, 500)) + b"\r\n\r\n")
            _until_eof(sock)
            return
        sock.sendall(f"CONNECT {LOOPBACK}:{target} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096) or b"\r\n\r\n"
        assert head.startswith(b"HTTP/1.0 200 "), head
        payload = _payload(rng)
        sock.sendall(payload)
        if how == "reset":
            _reset(sock)
            return
        sock.shutdown(socket.SHUT_WR)
        echoed = head.partition(b"\r\n\r\n")[2] + _until_eof(sock)
        assert echoed == payload, (len(echoed), len(payload))
    finally:
        sock.close()


# -- the kinds --------------------------------------------------------------------------------

Client = Callable[[int, random.Random, str], None]


def kinds(target: int) -> dict[str, tuple[list[str], Client]]:
    """Each server kind: its command line and its client. ``target`` is the echo server
    the proxy and the relay lead to."""
    python = [sys.executable]
    enchufe = [*python, "-m", "enchufe"]

    def through_proxy(port: int, rng: random.Random, how: str) -> None:
        proxy_client(port, rng, how, target)

    return {
        "server": ([*python, __file__, "--serve", "server"], echo_client),
        "request": ([*python, __file__, "--serve", "request"], request_client),
        "datagram": ([*python, __file__, "--serve", "datagram"], datagram_client),
        "hub": ([*enchufe, "-l", "-k", "-v", LOOPBACK, "0"], sink_client),
        "tls": ([*enchufe, "-l", "-k", "-v", "--ssl", LOOPBACK, "0"], tls_client),
        "exec": ([*enchufe, "-l", "-k", "-v", LOOPBACK, "0", "-e", "/bin/cat"], echo_client),
        "proxy": ([*enchufe, "-l", "-v", "--proxy-type", "http", LOOPBACK, "0"], through_proxy),
        "relay": ([*python, "-m", "enchufe.relay", "-v", f"{LOOPBACK}:0", f"{LOOPBACK}:{target}"], echo_client),
    }


def churn(port: int, client: Client, connections: int, seed: int) -> list[str]:
    """``connections`` clients, :data:`CONCURRENCY` at once, a few held idle through the
    round; the errors the clients met (there should be none)."""
    rng = random.Random(seed)
    hows = [rng.choice(("whole", "whole", "reset", "garbage")) for _ in range(connections)]
    seeds = [rng.randrange(1 << 32) for _ in range(connections)]
    errors: list[str] = []
    lock = threading.Lock()
    work = iter(range(connections))

    def run() -> None:
        for index in work:  # iterators are consumed under the GIL: each index once
            try:
                client(port, random.Random(seeds[index]), hows[index])
            except (OSError, AssertionError) as exc:
                with lock:
                    errors.append(f"{hows[index]}: {exc!r}")

    idle = []
    if client is not datagram_client:
        idle = [_connect(port) for _ in range(3)]  # held, silent, through the round
    threads = [threading.Thread(target=run, name=f"client-{n}") for n in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in idle:
        sock.close()
    return errors


# -- the run ------------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` points; 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


@contextlib.contextmanager
def echo_target() -> Iterator[int]:
    """An echo server in this process, for the proxy and the relay to lead to."""
    sys.path.insert(0, str(SOURCES))
    import enchufe

    def echo(conn: enchufe.Connection) -> None:
        while data := conn.recv():
            conn.send_all(data)
        conn.send_eof()

    listeners = enchufe.open_listeners(enchufe.InetAddress(LOOPBACK, 0))
    with enchufe.Server(listeners, echo, on_error=lambda conn, exc: None) as server:
        server.start()
        address = server.addresses[0]
        assert isinstance(address, enchufe.InetAddress)
        yield address.port


def soak(
    *,
    minutes: float,
    connections: int,
    only: list[str] | None = None,
    rounds: int | None = None,
    sample_every: float = 5.0,
    report: Callable[[str], None] = print,
) -> list[str]:
    """Run the soak; return the failures (empty: no leak). ``rounds`` (after the warm-up)
    bounds it besides ``minutes``."""
    failures: list[str] = []
    with echo_target() as target:
        chosen = {name: kind for name, kind in kinds(target).items() if only is None or name in only}
        servers: dict[str, ServerProcess] = {}
        try:
            for name, (argv, _) in chosen.items():
                servers[name] = ServerProcess(name, argv)
            baselines: dict[str, tuple[int, int]] = {}
            rss: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
            rows: list[str] = []
            start = time.monotonic()
            next_sample = start
            round_number = 0
            report(f"{'min':>6} {'round':>5} {'server':<9} {'fds':>5} {'threads':>7} {'rss KiB':>8}  note")
            while True:
                for name, server in servers.items():
                    client = chosen[name][1]
                    errors = churn(server.port, client, connections, seed=round_number * 1000 + len(name))
                    fds, threads, resident = server.settled(baselines.get(name))
                    minute = (time.monotonic() - start) / 60
                    note = ""
                    if round_number == 0:
                        baselines[name] = (fds, threads)
                        note = "baseline"
                    else:
                        rss[name].append((minute, resident))
                        base_fds, base_threads = baselines[name]
                        if fds > base_fds or threads > base_threads:
                            note = f"LEAK: baseline {base_fds} fds, {base_threads} threads"
                            failures.append(f"{name} round {round_number}: {fds} fds, {threads} threads; {note}")
                    if errors:
                        note += f" {len(errors)} client errors, first: {errors[0]}"
                        failures.append(f"{name} round {round_number}: {len(errors)} client errors: {errors[:3]}")
                    if server.popen.poll() is not None:
                        failures.append(f"{name} exited with {server.popen.returncode}: {server.stderr_lines[-5:]}")
                        note += " EXITED"
                    row = f"{minute:6.2f} {round_number:5d} {name:<9} {fds:5d} {threads:7d} {resident:8d}  {note}"
                    rows.append(row)
                    if time.monotonic() >= next_sample or note:
                        report(row)
                        next_sample = time.monotonic() + sample_every
                round_number += 1
                over = time.monotonic() - start >= minutes * 60
                if (
                    over
                    or (rounds is not None and round_number > rounds)
                    or any(s.popen.poll() is not None for s in servers.values())
                ):
                    break
            report(f"{round_number - 1} rounds of {connections} connections per server in {minutes:g} min at most")
            for name, points in rss.items():
                # The second half only: caches and the allocator's arenas fill up first
                # (the TLS listener's RSS climbs for minutes, then holds still).
                growth = slope([(minute, kib) for minute, kib in points if minute >= points[-1][0] / 2])
                verdict = "ok" if growth <= RSS_SLOPE_LIMIT else "GROWS"
                report(f"{name:<9} RSS slope {growth:8.1f} KiB/min (limit {RSS_SLOPE_LIMIT:g}) {verdict}")
                if verdict != "ok" and rounds is None:
                    failures.append(f"{name}: RSS grows {growth:.1f} KiB/min")
        finally:
            for server in servers.values():
                server.stop()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to churn (default 10)")
    parser.add_argument("--connections", type=int, default=200, help="clients per server per round (default 200)")
    parser.add_argument("--only", action="append", help="soak only this server kind (repeatable)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    failures = soak(minutes=args.minutes, connections=args.connections, only=args.only)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
