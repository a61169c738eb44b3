"""Library echo servers under the same closed-loop load: requests per second.

Each server runs in its own process (``echo.py --serve KIND --port P``); one client
process holds C connections on 127.0.0.1 and, on each, sends a 100-byte request and
waits for its 100-byte echo before sending the next (a closed loop, one request in
flight per connection), for ``--seconds`` after a warm-up. Every server is measured at
every concurrency, round-robin, ``-r`` times; the table shows the median requests/s,
the spread (min-max) and the ratio to asyncio streams.

    python3 benchmarks/echo.py [-r 3] [-c 10,100] [--seconds 3] [--only KIND,...]

Kinds: enchufe-threaded (Server), enchufe-request (RequestServer), enchufe-loop
(EventLoop + Acceptor + SocketTransport callbacks), asyncio-streams, asyncio-protocol,
socketserver (ThreadingTCPServer), uvloop-streams and uvloop-protocol (when uvloop is
installed: ``pip install uvloop``, a benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import Results, add_json_option

MESSAGE = b"x" * 100
KINDS = [
    "enchufe-threaded",
    "enchufe-request",
    "enchufe-loop",
    "asyncio-streams",
    "asyncio-protocol",
    "socketserver",
    "uvloop-streams",
    "uvloop-protocol",
]


# -- servers (each runs in its own process) ---------------------------------------------


def serve(kind: str, port: int) -> None:
    address = ("127.0.0.1", port)
    if kind.startswith("enchufe"):
        serve_enchufe(kind, port)
    elif kind == "socketserver":
        import socketserver

        class Echo(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(65536):
                    self.request.sendall(data)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.request_queue_size = 1024
        socketserver.ThreadingTCPServer.daemon_threads = True
        with socketserver.ThreadingTCPServer(address, Echo) as server:
            ready()
            server.serve_forever()
    else:
        serve_asyncio(kind, address)


def ready() -> None:
    print("ready", flush=True)


def serve_enchufe(kind: str, port: int) -> None:
    import enchufe

    listeners = enchufe.open_listeners(enchufe.InetAddress("127.0.0.1", port), backlog=1024)
    if kind == "enchufe-threaded":

        def echo_connection(conn: enchufe.Connection) -> None:
            for chunk in conn:
                conn.send_all(chunk)

        with enchufe.Server(listeners, echo_connection) as server:
            ready()
            server.serve_forever()
    elif kind == "enchufe-request":

        def echo_request(conn: enchufe.Connection) -> None:
            conn.send_all(conn.recv())

        with enchufe.RequestServer(listeners, echo_request) as request_server:
            ready()
            request_server.serve_forever()
    else:
        from enchufe.net.acceptor import Acceptor
        from enchufe.net.loop import EventLoop
        from enchufe.net.transport import SocketTransport, StreamProtocol

        class Echo(StreamProtocol):
            def connection_made(self, transport: SocketTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)

            def eof_received(self) -> None:
                self.transport.close()

        with EventLoop() as loop:

            def accepted(sock: socket.socket, peer: object) -> None:
                SocketTransport(loop, sock, Echo())

            Acceptor(loop, listeners, on_accept=accepted).start()
            ready()
            loop.run_forever()


def serve_asyncio(kind: str, address: tuple[str, int]) -> None:
    import asyncio

    async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]  # uvloop's is no subclass

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def main() -> None:
        if kind.endswith("streams"):
            server = await asyncio.start_server(echo_stream, *address, backlog=1024)
        else:
            server = await asyncio.get_running_loop().create_server(Echo, *address, backlog=1024)
        ready()
        async with server:
            await server.serve_forever()

    if kind.startswith("uvloop"):
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# -- the load generator (this process) ----------------------------------------------------


def load(port: int, connections: int, seconds: float, warmup: float) -> float:
    """Requests per second over ``seconds``, after ``warmup``, on ``connections``."""
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
        selector.register(sock, selectors.EVENT_READ, [0])
    for sock in socks:
        sock.send(MESSAGE)
    size = len(MESSAGE)
    done = 0
    start = time.monotonic() + warmup
    end = start + seconds
    counted_from = None
    while True:
        now = time.monotonic()
        if counted_from is None and now >= start:
            counted_from, done = now, 0
        if now >= end:
            break
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            got = len(sock.recv(65536))
            if not got:
                raise RuntimeError("the server closed a connection")
            key.data[0] += got
            while key.data[0] >= size:
                key.data[0] -= size
                done += 1
                sock.send(MESSAGE)
    elapsed = time.monotonic() - (counted_from or start)
    for sock in socks:
        selector.unregister(sock)
        sock.close()
    selector.close()
    return done / elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def measure(kind: str, connections: int, seconds: float, warmup: float) -> float:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{kind} did not start")
        return load(port, connections, seconds, warmup)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def available(kind: str) -> bool:
    if not kind.startswith("uvloop"):
        return True
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("-r", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("-c", default="10,100", help="concurrent connections, comma-separated (default 10,100)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring (default 0.5)")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated kinds")
    add_json_option(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    kinds = [kind for kind in args.only.split(",") if available(kind)]
    counts = [int(c) for c in args.c.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.r):
        for count in counts:
            for kind in kinds:
                results.setdefault((kind, count), []).append(measure(kind, count, args.seconds, args.warmup))
    print(f"# echo, 100-byte requests, closed loop, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    print(f"# {args.r} runs of {args.seconds} s each; median requests/s (min-max); ratio to asyncio-streams")
    for count in counts:
        print(f"\n| {count} connections | requests/s | spread | vs asyncio streams |")
        print("| --- | ---: | ---: | ---: |")
        base = statistics.median(results.get(("asyncio-streams", count), [float("nan")]))
        for kind in kinds:
            runs = results[(kind, count)]
            median = statistics.median(runs)
            print(f"| {kind} | {median:,.0f} | {min(runs):,.0f}-{max(runs):,.0f} | {median / base:.2f} |")
    recorded = Results("echo", reference="asyncio-streams")
    for (kind, count), runs in results.items():
        recorded.add(f"{count} connections", kind, "request rate", "requests/s", runs)
    recorded.write(args.json)


if __name__ == "__main__":
    main()
