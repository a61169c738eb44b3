#!/usr/bin/env python3
"""A TCP relay's throughput, CPU and idle connections: enchufe-relay against socat and
``ncat -l -k -c 'ncat HOST PORT'``.

Run from the repository root (enchufe installed, or ``PYTHONPATH=src``)::

    PYTHONPATH=src python3 benchmarks/relay.py                          # everything, ~5 min
    PYTHONPATH=src python3 benchmarks/relay.py --size 64M -r 1 -n 100   # a quick smoke run
    PYTHONPATH=src python3 benchmarks/relay.py --part tls --only enchufe,socat

The relays, each from 127.0.0.1:P to a target of this script's on 127.0.0.1:T:

``enchufe``  ``python -m enchufe.relay -m N+10 127.0.0.1:P 127.0.0.1:T``
``socat``    ``socat TCP-LISTEN:P,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:T`` (a process per client)
``ncat``     ``ncat -l 127.0.0.1 P -k -m N+10 -c 'ncat 127.0.0.1 T'`` (``-m``: ncat's default
             is 100 clients; a child per client, relaying to ``sh -c``, which runs the second ncat)
``direct``   no relay: the client and the target alone, the ceiling (throughput only)

Three parts (``--part``):

``throughput``  ``--size`` bytes (1 GiB) each way through each relay, started once and kept,
                with proxy_throughput.py's client and target (threads of this script moving
                1 MiB ``sendall``/``recv_into`` calls; the same :func:`proxy_throughput.move`):
                MB/s and the relay's CPU (its ``/proc/PID/stat`` utime+stime+cutime+cstime
                around each transfer, once every child is reaped: socat's forks and ncat's
                children and their children are counted), medians of ``--repeat`` runs
                round-robin after a hashed check run each.
``idle``        ``-n`` connections (1,000) through each relay to proxy_tunnels.py's echo server,
                one round trip each, then held: RSS, PSS, processes, threads and descriptors
                summed over the relay's process tree (the same :func:`proxy_tunnels.hold`).
``tls``         ``throughput`` again with TLS between the client and the relay (the client
                verifies nothing), plain TCP to the target: ``enchufe-relay --ssl --ssl-cert
                --ssl-key``, ``socat OPENSSL-LISTEN:P,...,cert=,key=,verify=0,fork`` and ``ncat
                --ssl --ssl-cert --ssl-key -c``, with an EC P-256 certificate made by ``openssl
                req`` in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import Results, add_json_option
from proxy_throughput import BLOCK, DIRECTIONS, expected_digest, move, record, report, rounds, stop_proxy
from proxy_tunnels import hold, print_header, print_row, raise_file_limit, record_row
from throughput import GIB, free_port, parse_size, wait_listening
from tls_throughput import make_certificate

RELAY = [sys.executable, "-m", "enchufe.relay"]
PLAIN: dict[str, list[str] | None] = {
    "direct": None,
    "enchufe": [*RELAY, "-m", "{clients}", "127.0.0.1:{port}", "127.0.0.1:{target}"],
    "socat": ["socat", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "TCP:127.0.0.1:{target}"],
    "ncat": ["ncat", "-l", "127.0.0.1", "{port}", "-k", "-m", "{clients}", "-c", "ncat 127.0.0.1 {target}"],
}
TLS: dict[str, list[str] | None] = {
    "enchufe": [*RELAY, "--ssl", "--ssl-cert", "{cert}", "--ssl-key", "{key}", *PLAIN["enchufe"][-2:]],  # type: ignore[index]
    "socat": [
        "socat",
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},verify=0",
        "TCP:127.0.0.1:{target}",
    ],
    "ncat": [
        *("ncat", "-l", "127.0.0.1", "{port}", "-k", "--ssl", "--ssl-cert", "{cert}", "--ssl-key", "{key}"),
        *PLAIN["ncat"][-4:],  # type: ignore[index]
    ],
}
PARTS = ("throughput", "idle", "tls")


class Relay:
    """A relay started from ``template`` to a target listener of its own, until :meth:`stop`."""

    def __init__(self, template: list[str] | None, fill: dict[str, str], timeout: float = 10.0) -> None:
        self.target = socket.create_server(("127.0.0.1", 0))
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int = self.target.getsockname()[1]
        if template is None:
            return
        self.port = free_port()
        argv = [arg.format(port=self.port, target=self.target.getsockname()[1], **fill) for arg in template]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_listening(self.port, self.process, timeout)

    def stop(self) -> str:
        """Stop the relay and close the target; what the relay wrote on stderr."""
        self.target.close()
        return stop_proxy(self.process) if self.process is not None else ""


def client_context() -> ssl.SSLContext:
    """A TLS client that verifies nothing: the relay's certificate is this run's own."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def throughput(
    templates: dict[str, list[str] | None],
    names: list[str],
    args: argparse.Namespace,
    fill: dict[str, str],
    tls: ssl.SSLContext | None,
    results: Results,
) -> bool:
    """The throughput part (over TLS with ``tls``), recorded in ``results``; whether
    anything went wrong."""
    names = [name for name in names if name in templates]
    directions = args.direction or list(DIRECTIONS)
    block = os.urandom(BLOCK)
    problems: dict[tuple[str, str], list[str]] = {}
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    negotiated: set[str] = set()
    relays: dict[str, Relay] = {}

    def connect(port: int) -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=args.timeout)
        if tls is None:
            return sock, b""
        wrapped = tls.wrap_socket(sock)
        negotiated.add(f"{wrapped.version()} {wrapped.cipher()[0]}")  # type: ignore[index]
        return wrapped, b""

    def one(name: str, direction: str, check: bool) -> dict[str, object]:
        relay = relays[name]
        return move(
            relay.process,
            relay.target,
            lambda: connect(relay.port),
            direction,
            args.size,
            block,
            check=check,
            timeout=args.timeout,
        )

    try:
        for name in names:
            relays[name] = Relay(templates[name], fill)
        rounds(one, names, directions, args, expected_digest(block, args.size), runs, problems)
    finally:
        said = {name: relay.stop() for name, relay in relays.items()}
    over = f"TLS from the client ({', '.join(sorted(negotiated))})" if tls is not None else "TCP"
    report(names, directions, runs, problems, said, args.size, title=f"a relay, {over}", baseline="socat")
    record(results, names, directions, runs, problems, args.size, case_prefix="TLS " if tls is not None else "")
    print()
    return any(problems.values())


def idle(names: list[str], args: argparse.Namespace, results: Results) -> bool:
    """The idle part, recorded in ``results``; whether anything went wrong."""

    def plain(port: int, target: int, timeout: float) -> tuple[socket.socket, bytes]:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout), b""

    raise_file_limit(args.n)
    print(f"# {args.n} idle connections through a relay on 127.0.0.1, {time.strftime('%Y-%m-%d')}")
    print()
    print_header()
    bad = False
    for name in names:
        template = PLAIN[name]
        if template is not None:
            filled = [arg.replace("{clients}", str(args.n + 10)) for arg in template]
            row = hold(name, filled, plain, args.n, args.timeout)
            bad = print_row(name, row, args.n) or bad
            record_row(results, f"{args.n} idle connections", name, row)
    print()
    return bad


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", action="append", choices=PARTS, help="only these parts (default all)")
    parser.add_argument("--only", help=f"comma-separated relays ({','.join(PLAIN)})")
    parser.add_argument("--size", type=parse_size, default=GIB, help="bytes per transfer, whole MiB (default 1G)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--direction", choices=DIRECTIONS, action="append", help="limit to these directions")
    parser.add_argument("--no-check", action="store_true", help="skip the hashed check runs")
    parser.add_argument("-n", type=int, default=1000, help="idle connections (default 1000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a socket may stall (default 60)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if args.size % BLOCK or not args.size:
        parser.error("--size must be a whole number of MiB")
    if not 1 <= args.n <= 10000:
        parser.error("-n must be between 1 and 10000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name.strip() for name in args.only.split(",")] if args.only else list(PLAIN)
    unknown = set(names) - set(PLAIN)
    if unknown:
        print(f"unknown relays: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    parts = args.part or list(PARTS)
    fill = {"clients": str(args.n + 10)}
    bad = False
    results = Results("relay", reference="socat")
    if "throughput" in parts:
        bad = throughput(PLAIN, names, args, fill, None, results) or bad
    if "idle" in parts:
        bad = idle(names, args, results) or bad
    if "tls" in parts:
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as directory:
            cert, key, _ = make_certificate(Path(directory))
            bad = throughput(TLS, names, args, {**fill, "cert": cert, "key": key}, client_context(), results) or bad
    results.write(args.json)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
