#!/usr/bin/env python3
"""SocketTransport's buffered path alone: the CPU and memory a broadcast costs once every
client's kernel buffer is full.

Run from the repository root (``PYTHONPATH=src`` or an installed enchufe)::

    python3 benchmarks/transport_buffer.py -r 3

99 transports on socket pairs, each first given 1 MiB so that the kernel takes no more;
then 64 broadcasts of one 64 KiB ``bytes`` to all of them (all buffered), timed as the
CPU of the ``write`` calls and the growth of peak RSS; then a forked reader drains
every socket, and the loop's CPU until every buffer is empty is the flush.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import time

from _results import Results, add_json_option

from enchufe.net.loop import EventLoop
from enchufe.net.transport import SocketTransport, StreamProtocol

CLIENTS = 99
ROUNDS = 64
CHUNK = 64 * 1024
FILL = 1 << 20


def drain(socks: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    buffer = bytearray(1 << 20)
    left = len(socks)
    while left:
        for key, _ in selector.select():
            if key.fileobj.recv_into(buffer) == 0:  # type: ignore[union-attr]
                selector.unregister(key.fileobj)
                left -= 1


def run_once() -> dict[str, float]:
    """One broadcast into full buffers: bytes buffered, CPU ms to write and to flush them,
    peak RSS growth in MiB."""
    pairs = [socket.socketpair() for _ in range(CLIENTS)]
    with EventLoop() as loop:
        transports = [SocketTransport(loop, ours, StreamProtocol(), high_water=1 << 30) for ours, _ in pairs]
        for transport in transports:
            transport.write(b"\0" * FILL)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        began = time.process_time()
        for _ in range(ROUNDS):
            chunk = os.urandom(CHUNK)
            for transport in transports:
                transport.write(chunk)
        write_cpu = time.process_time() - began
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        buffered = sum(transport.write_buffer_size for transport in transports)
        pid = os.fork()
        if pid == 0:
            for ours, _ in pairs:
                ours.close()
            drain([theirs for _, theirs in pairs])
            os._exit(0)
        for _, theirs in pairs:
            theirs.close()

        def stop_when_flushed() -> None:
            if any(transport.write_buffer_size for transport in transports):
                loop.call_later(0.001, stop_when_flushed)
            else:
                loop.stop()

        began = time.process_time()
        loop.call_soon(stop_when_flushed)
        loop.run_forever()
        flush_cpu = time.process_time() - began
        for ours, _ in pairs:
            ours.close()  # the reader's end of stream
        os.waitpid(pid, 0)
    return {"buffered": buffered, "write": write_cpu * 1000, "flush": flush_cpu * 1000, "rss": rss_growth / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--repeat", type=int, default=3, help="runs (default 3)")
    add_json_option(parser)
    args = parser.parse_args()
    runs = []
    for run in range(1, args.repeat + 1):
        one = run_once()
        runs.append(one)
        print(
            f"- run {run}: buffered {one['buffered'] / 1e6:.0f} MB: write() CPU {one['write']:.0f} ms, "
            f"flush CPU {one['flush']:.0f} ms, peak RSS +{one['rss']:.0f} MiB",
            flush=True,
        )
    results = Results("transport_buffer")
    case = f"{CLIENTS} clients, {ROUNDS} x {CHUNK} B"
    results.add(case, "enchufe", "write() CPU", "ms", [one["write"] for one in runs], better="lower")
    results.add(case, "enchufe", "flush CPU", "ms", [one["flush"] for one in runs], better="lower")
    results.add(case, "enchufe", "peak RSS growth", "MiB", [one["rss"] for one in runs], better="lower")
    results.write(args.json)


if __name__ == "__main__":
    main()
