"""An iperf3-style throughput tester, plus request/response latency and connection rate.

One port carries everything: each connection to the server begins with one JSON line.

- The **control** connection says what to run: ``{"test": {...}}`` (a :class:`BenchSpec`).
  The server answers ``{"ok": true, "cookie": "..."}``, or ``{"error": "busy"}`` when a test
  is already running (one test at a time, as iperf3: numbers from two tests sharing the
  CPUs would mean nothing), or ``{"error": "..."}`` for a request it cannot run.
- Each **data** connection (TCP, Unix stream) then joins with ``{"join": COOKIE, "stream":
  N, "direction": "forward"|"reverse"|"echo"}`` and waits for ``{"ok": true}``; UDP streams
  say hello in datagrams (resent until answered) on the same port number.
- The client sends ``{"start": true}``; both sides run their streams, one thread each,
  released together by a barrier. A sender stops after the duration or its share of the
  bytes and ends its stream (TCP: a half-close; UDP: end datagrams carrying the count
  sent); the receiver counts until then.
- The client sends ``{"done": true}``; the server answers ``{"results": [...]}``, its side
  of every stream, and is free for the next test.

A UDP datagram begins with :data:`UDP_HEADER`: kind, test id, stream, sequence number and
the send time in nanoseconds; the receiver counts loss, out-of-order datagrams and the
jitter of RFC 3550 (section 6.4.1, A.8) from them.

``--latency`` runs round trips of ``length`` bytes on each stream (the server echoes
them); ``--rate`` opens and closes connections as fast as it can (with ``length`` > 0,
each echoes that many bytes first): connections that arrive without a JSON line are a
rate test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.errors import ConnectError, ConnectionLost, NetworkError, ProtocolError
from enchufe.net.connect import open_connection
from enchufe.net.connection import Connection
from enchufe.net.listen import Listener
from enchufe.net.stream import SocketStream
from enchufe.serve.engine import Server

__all__ = [
    "DEFAULT_PORT",
    "BenchServer",
    "BenchSpec",
    "Interval",
    "LatencyStats",
    "StreamResult",
    "Summary",
    "UdpStats",
    "run_client",
]

DEFAULT_PORT = 5201
DEFAULT_SECONDS = 10.0
DEFAULT_TCP_LENGTH = 128 * 1024
DEFAULT_UDP_LENGTH = 1460
DEFAULT_ECHO_LENGTH = 64
DEFAULT_UDP_RATE = 1_000_000.0
#: kind, test id, stream, sequence number, send time (ns since the epoch).
UDP_HEADER = struct.Struct("!B3xIIQQ")
UDP_DATA, UDP_HELLO, UDP_HELLO_ACK, UDP_END = 0, 1, 2, 3
#: How many end datagrams a UDP sender sends (a lossy path may drop some).
UDP_END_COPIES = 5
#: A UDP receiver gives up on a stream silent this long (all its end datagrams lost).
UDP_IDLE_LIMIT = 2.0
#: Seconds a peer has for each step of the handshake.
HANDSHAKE_TIMEOUT = 10.0
MAX_LINE = 4096
MAX_STREAMS = 128
PROTOCOLS = ("tcp", "udp", "unix")
MODES = ("throughput", "latency", "rate")
DIRECTIONS = ("forward", "reverse", "bidir")


@dataclass(frozen=True)
class BenchSpec:
    """What one test runs; the client sends it to the server as JSON.

    Args:
        protocol: ``"tcp"``, ``"udp"`` or ``"unix"`` (a Unix stream socket).
        mode: ``"throughput"``, ``"latency"`` (round trips) or ``"rate"`` (connections).
        seconds: how long to run (when ``total_bytes`` is ``None``).
        total_bytes: bytes to send, split between the streams (requests, for latency).
        length: bytes per send (a datagram's size for UDP; a request's for latency and
            rate); 0 picks the protocol's default.
        streams: parallel streams (connections, or UDP sockets), one thread each.
        direction: ``"forward"`` (client sends), ``"reverse"`` or ``"bidir"``.
        rate: UDP bits per second per stream, paced.
    """

    protocol: str = "tcp"
    mode: str = "throughput"
    seconds: float = DEFAULT_SECONDS
    total_bytes: int | None = None
    length: int = 0
    streams: int = 1
    direction: str = "forward"
    rate: float = DEFAULT_UDP_RATE

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ProtocolError(problem)
        if not self.length:
            default = DEFAULT_UDP_LENGTH if self.protocol == "udp" else DEFAULT_TCP_LENGTH
            object.__setattr__(self, "length", default if self.mode == "throughput" else DEFAULT_ECHO_LENGTH)

    def problem(self) -> str | None:
        """What is wrong with this spec, or ``None``."""
        if self.protocol not in PROTOCOLS or self.mode not in MODES or self.direction not in DIRECTIONS:
            return "unknown protocol, mode or direction"
        if not 1 <= self.streams <= MAX_STREAMS:
            return f"streams must be 1 to {MAX_STREAMS}"
        if not self.seconds > 0 or (self.total_bytes is not None and self.total_bytes < 1):
            return "the duration and byte count must be positive"
        if self.length < 0 or self.length > 1 << 30 or (self.mode == "rate" and self.length > 1 << 20):
            return "bad length"
        if self.protocol == "udp":
            if self.mode != "throughput":
                return "latency and rate tests run over TCP or Unix sockets"
            if self.length and not UDP_HEADER.size <= self.length <= 65507:
                return f"UDP length must be {UDP_HEADER.size} to 65507"
            if not self.rate > 0:
                return "the UDP rate must be positive"
        if self.mode != "throughput" and self.direction != "forward":
            return "latency and rate tests have no direction"
        return None

    @property
    def directions(self) -> tuple[str, ...]:
        if self.mode == "rate":
            return ()
        if self.mode == "latency":
            return ("echo",)
        return ("forward", "reverse") if self.direction == "bidir" else (self.direction,)

    def share(self, stream: int) -> int | None:
        """The bytes stream ``stream`` (from 1) sends, with ``total_bytes``."""
        if self.total_bytes is None:
            return None
        base, extra = divmod(self.total_bytes, self.streams)
        return base + (1 if stream <= extra else 0)

    @classmethod
    def from_json(cls, record: object) -> BenchSpec:
        """The spec a peer sent. Raises :class:`ProtocolError` for anything else."""
        if not isinstance(record, dict):
            raise ProtocolError("the test is not an object")
        names: dict[str, type | tuple[type, ...]] = {
            "protocol": str,
            "mode": str,
            "seconds": (int, float),
            "total_bytes": (int, type(None)),
        }
        names |= {"length": int, "streams": int, "direction": str, "rate": (int, float)}
        for key, value in record.items():
            if key not in names or not isinstance(value, names[key]) or isinstance(value, bool):
                raise ProtocolError(f"bad test field {key!r}")
        return cls(**record)


@dataclass
class UdpStats:
    """A UDP receiver's view of one stream: datagrams, loss, order, jitter (seconds)."""

    packets: int = 0
    lost: int = 0
    out_of_order: int = 0
    jitter: float = 0.0
    sent: int | None = None
    _next: int = field(default=0, repr=False)
    _transit: float | None = field(default=None, repr=False)

    def receive(self, sequence: int, sent_ns: int, arrived_ns: int) -> None:
        """Count one datagram: in order, after a gap, or late (iperf3's accounting)."""
        self.packets += 1
        if sequence >= self._next:
            self._next = sequence + 1
        else:
            self.out_of_order += 1
        transit = (arrived_ns - sent_ns) / 1e9
        if self._transit is not None:  # RFC 3550: J += (|D| - J) / 16
            self.jitter += (abs(transit - self._transit) - self.jitter) / 16
        self._transit = transit

    def finish(self) -> None:
        """Count the loss, from the sender's count when its end datagram came."""
        total = self._next if self.sent is None else self.sent
        self.lost = max(0, total - self.packets)

    @property
    def loss_percent(self) -> float:
        total = self.lost + self.packets
        return 100.0 * self.lost / total if total else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "lost": self.lost,
            "out_of_order": self.out_of_order,
            "loss_percent": self.loss_percent,
            "jitter_ms": self.jitter * 1e3,
        }


@dataclass
class StreamResult:
    """One side of one stream: what it sent or received, and for how long."""

    stream: int
    direction: str
    role: str  # "sender" or "receiver"
    bytes: int = 0
    seconds: float = 0.0
    udp: UdpStats | None = None

    @property
    def bits_per_second(self) -> float:
        return 8 * self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "stream": self.stream,
            "direction": self.direction,
            "role": self.role,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "bits_per_second": self.bits_per_second,
        }
        if self.udp is not None:
            record["udp"] = self.udp.to_json()
        return record

    @classmethod
    def from_json(cls, record: object) -> StreamResult:
        try:
            assert isinstance(record, dict)
            result = cls(int(record["stream"]), str(record["direction"]), str(record["role"]))
            result.bytes, result.seconds = int(record["bytes"]), float(record["seconds"])
            if "udp" in record:
                udp = record["udp"]
                result.udp = UdpStats(int(udp["packets"]), int(udp["lost"]), int(udp["out_of_order"]))
                result.udp.jitter = float(udp["jitter_ms"]) / 1e3
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise ConnectionLost(f"bad results from the server ({exc!r})") from None
        return result


@dataclass
class LatencyStats:
    """Round-trip times (seconds) of a latency test, or connection times of a rate test."""

    samples: list[float] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        """The nearest-rank percentile (0 when there are no samples)."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
        return ordered[min(rank, len(ordered)) - 1]

    def histogram(self) -> list[tuple[float, int]]:
        """Counts per power-of-two bucket of microseconds: ``(upper bound in seconds, count)``."""
        counts: dict[int, int] = {}
        for sample in self.samples:
            bucket = max(0, int(sample * 1e6)).bit_length()
            counts[bucket] = counts.get(bucket, 0) + 1
        if not counts:
            return []
        return [((1 << bucket) / 1e6, counts.get(bucket, 0)) for bucket in range(min(counts), max(counts) + 1)]

    def to_json(self) -> dict[str, object]:
        return {
            "count": len(self.samples),
            "min": min(self.samples, default=0.0),
            "mean": sum(self.samples) / len(self.samples) if self.samples else 0.0,
            "p50": self.percentile(0.5),
            "p90": self.percentile(0.9),
            "p99": self.percentile(0.99),
            "max": max(self.samples, default=0.0),
            "histogram": [{"le": bound, "count": count} for bound, count in self.histogram()],
        }


@dataclass
class Interval:
    """Bytes (or round trips, connections) each stream moved from ``start`` to ``end``."""

    start: float
    end: float
    streams: list[tuple[int, str, int]]  # (stream, direction, bytes or count)

    def to_json(self) -> dict[str, object]:
        seconds = self.end - self.start
        per_stream = [
            {"stream": s, "direction": d, "bytes": n, "bits_per_second": 8 * n / seconds if seconds > 0 else 0.0}
            for s, d, n in self.streams
        ]
        total = sum(n for _, _, n in self.streams)
        return {
            "type": "interval",
            "start": self.start,
            "end": self.end,
            "streams": per_stream,
            "bytes": total,
            "bits_per_second": 8 * total / seconds if seconds > 0 else 0.0,
        }


@dataclass
class Summary:
    """A whole test: both sides of every stream, and the latency or rate figures."""

    spec: BenchSpec
    local: str
    remote: str
    connections: int
    streams: list[StreamResult]
    seconds: float
    latency: LatencyStats | None = None
    rate_connections: int = 0
    rate_failures: int = 0

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "type": "summary",
            "test": asdict(self.spec),
            "local": self.local,
            "remote": self.remote,
            "connections": self.connections,
            "seconds": self.seconds,
            "streams": [result.to_json() for result in self.streams],
        }
        for role in ("sender", "receiver"):
            total = sum(result.bytes for result in self.streams if result.role == role)
            seconds = max((result.seconds for result in self.streams if result.role == role), default=0.0)
            record[role] = {"bytes": total, "bits_per_second": 8 * total / seconds if seconds > 0 else 0.0}
        if self.latency is not None:
            record["latency"] = self.latency.to_json()
        if self.spec.mode == "rate":
            record["rate"] = {
                "connections": self.rate_connections,
                "failures": self.rate_failures,
                "per_second": self.rate_connections / self.seconds if self.seconds > 0 else 0.0,
            }
        return record


# -- moving bytes ----------------------------------------------------------------------


class _Counter:
    """What one stream's thread has moved so far; the interval reporter reads it."""

    def __init__(self, stream: int, direction: str) -> None:
        self.stream = stream
        self.direction = direction
        self.count = 0


class _ZeroSource:
    """Bytes to send: ``length`` zeros in a memory file for ``os.sendfile`` (the kernel
    copies its pages straight into the socket), and the same zeros as a buffer."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.buffer = memoryview(bytes(length))
        self.fd = os.memfd_create("enchufe-bench", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, length)

    def close(self) -> None:
        os.close(self.fd)


def _send_stream(
    sock: socket.socket, source: _ZeroSource, counter: _Counter, deadline: float, limit: int | None
) -> None:
    """Send zeros until ``deadline`` or ``limit`` bytes, then half-close."""
    use_sendfile = True
    fd = sock.fileno()
    while time.monotonic() < deadline if limit is None else counter.count < limit:
        size = source.length if limit is None else min(source.length, limit - counter.count)
        if use_sendfile:
            try:
                sent = os.sendfile(fd, source.fd, 0, size)
            except OSError as exc:
                if exc.errno not in {22, 38, 95}:  # EINVAL, ENOSYS, EOPNOTSUPP: not for this socket
                    raise
                use_sendfile = False
                continue
        else:
            sent = sock.send(source.buffer[:size])
        counter.count += sent
    sock.shutdown(socket.SHUT_WR)


def _receive_stream(sock: socket.socket, length: int, counter: _Counter) -> None:
    """Count bytes until end of stream, read into one buffer made once."""
    buffer = memoryview(bytearray(max(length, 65536)))
    while received := sock.recv_into(buffer):
        counter.count += received


def _echo_requests(sock: socket.socket, length: int, counter: _Counter) -> None:
    """The server's side of a latency stream: send back every byte until end of stream."""
    buffer = memoryview(bytearray(max(length, 65536)))
    while received := sock.recv_into(buffer):
        sock.sendall(buffer[:received])
        counter.count += received


def _round_trips(
    sock: socket.socket, length: int, counter: _Counter, deadline: float, limit: int | None, samples: list[float]
) -> None:
    """The client's side of a latency stream: ``length`` bytes out, the same back, timed."""
    request = bytes(length)
    buffer = memoryview(bytearray(length))
    while time.monotonic() < deadline if limit is None else counter.count < limit:
        began = time.perf_counter()
        sock.sendall(request)
        got = 0
        while got < length:
            received = sock.recv_into(buffer[got:])
            if not received:
                raise ConnectionLost("the server closed a latency stream")
            got += received
        samples.append(time.perf_counter() - began)
        counter.count += length
    sock.shutdown(socket.SHUT_WR)


def _udp_send(
    send: Callable[[bytes | bytearray | memoryview], object],
    test_id: int,
    stream: int,
    length: int,
    rate: float,
    counter: _Counter,
    deadline: float,
    limit: int | None,
) -> int:
    """Send paced datagrams, then the end datagrams; return how many data datagrams went."""
    datagram = bytearray(length)
    sequence = 0
    began = time.monotonic()
    while (now := time.monotonic()) < deadline if limit is None else counter.count < limit:
        due = began + counter.count * 8 / rate
        if due > now:
            time.sleep(due - now)
        UDP_HEADER.pack_into(datagram, 0, UDP_DATA, test_id, stream, sequence, time.time_ns())
        with contextlib.suppress(ConnectionRefusedError, BlockingIOError):  # lost, as on a real path
            send(datagram)
        sequence += 1
        counter.count += length
    end = UDP_HEADER.pack(UDP_END, test_id, stream, sequence, 0)
    for _ in range(UDP_END_COPIES):
        with contextlib.suppress(ConnectionRefusedError):
            send(end)
        time.sleep(0.002)
    return sequence


class _UdpReceiver:
    """Datagrams of one test's streams, sorted by stream; done when every stream ended."""

    def __init__(self, test_id: int, streams: int, length: int) -> None:
        self.test_id = test_id
        self.counters = {n: _Counter(n, "") for n in range(1, streams + 1)}
        self.stats = {n: UdpStats() for n in self.counters}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.ended: set[int] = set()
        self.length = length

    def take(self, datagram: bytes | memoryview, size: int) -> tuple[int, int] | None:
        """Count a data or end datagram; return a hello's ``(kind, stream)`` for the caller."""
        if size < UDP_HEADER.size:
            return None
        kind, test_id, stream, sequence, sent_ns = UDP_HEADER.unpack_from(datagram)
        if test_id != self.test_id or stream not in self.counters:
            return None
        if kind == UDP_DATA:
            now = time.monotonic()
            self.first.setdefault(stream, now)
            self.last[stream] = now
            self.stats[stream].receive(sequence, sent_ns, time.time_ns())
            self.counters[stream].count += size
        elif kind == UDP_END:
            self.stats[stream].sent = sequence
            self.ended.add(stream)
        else:
            return kind, stream
        return None

    @property
    def done(self) -> bool:
        return len(self.ended) == len(self.counters)

    def results(self, direction: str) -> list[StreamResult]:
        results = []
        for n, stats in self.stats.items():
            stats.finish()
            seconds = self.last.get(n, 0.0) - self.first.get(n, 0.0)
            results.append(StreamResult(n, direction, "receiver", self.counters[n].count, seconds, stats))
        return results


def _read_json_line(conn: Connection, what: str) -> dict[str, object]:
    """One JSON object on a line; a peer that sends anything else has lost the protocol."""
    line = conn.recv_line(max_size=MAX_LINE, timeout=None if what == "done" else HANDSHAKE_TIMEOUT)
    if not line:
        raise ConnectionLost(f"the peer closed the connection before its {what}")
    try:
        record = json.loads(line)
    except ValueError:
        raise ConnectionLost(f"the peer's {what} is not JSON") from None
    if not isinstance(record, dict):
        raise ConnectionLost(f"the peer's {what} is not a JSON object")
    return record


def _send_json_line(conn: Connection, record: dict[str, object]) -> None:
    conn.send_all(json.dumps(record, separators=(",", ":")).encode() + b"\n", timeout=HANDSHAKE_TIMEOUT)


# -- the server ------------------------------------------------------------------------


class _Test:
    """The test a server runs now: its streams' sockets as they join, and their results."""

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec
        self.cookie = secrets.token_hex(8)
        self.test_id = int(self.cookie[:8], 16)
        self.started = threading.Event()
        self.aborted = threading.Event()
        self.lock = threading.Lock()
        self.joined: dict[tuple[int, str], socket.socket] = {}
        self.results: list[StreamResult] = []
        self.finished = threading.Semaphore(0)
        self.rate_connections = 0

    def abort(self) -> None:
        """End every stream at once (the client went away)."""
        self.aborted.set()
        self.started.set()
        with self.lock:
            for sock in self.joined.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class BenchServer:
    """Serve bench tests on ``listeners``, one at a time; a client that comes while a test
    runs is told ``busy``.

    Args:
        listeners: stream listeners (TCP or Unix) from
            :func:`enchufe.net.listen.open_listeners`; the server owns them.
        udp_sockets: bound UDP sockets on the same port, one per family, for UDP tests.
        on_test: ``on_test(peer, spec, results)`` after each test the server ran.
        on_error: ``on_error(peer, message)`` for a client that broke the protocol.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        *,
        udp_sockets: Sequence[socket.socket] = (),
        on_test: Callable[[str, BenchSpec, list[StreamResult]], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.udp_sockets = {sock.family: sock for sock in udp_sockets}
        self.on_test = on_test
        self.on_error = on_error
        self._test: _Test | None = None
        self._busy = threading.Lock()
        self.tests_run = 0
        #: Set when a test's streams start, and when a test ends (the command's -1 waits on it).
        self.test_started = threading.Event()
        self.test_finished = threading.Event()
        self._server = Server(listeners, self._handle, name="bench", on_error=self._report_error)

    @property
    def addresses(self) -> list[Address]:
        return self._server.addresses

    def start(self) -> BenchServer:
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving: end the running test, join every thread, close the sockets."""
        if self._test is not None:
            self._test.abort()
        self._server.close(grace=0.0)
        for sock in self.udp_sockets.values():
            sock.close()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _report_error(self, conn: Connection | None, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(str(conn.peer if conn is not None else "?"), str(exc))

    def _handle(self, conn: Connection) -> None:
        first = conn.recv(1, timeout=HANDSHAKE_TIMEOUT)
        if first != b"{":
            test = self._test
            if test is not None and test.spec.mode == "rate" and test.started.is_set():
                self._rate_connection(conn, first, test)
            return
        try:
            request = json.loads(b"{" + conn.recv_line(max_size=MAX_LINE, timeout=HANDSHAKE_TIMEOUT))
        except ValueError:
            request = None
        if not isinstance(request, dict):
            _send_json_line(conn, {"error": "expected a JSON object"})
        elif "join" in request:
            self._join(conn, request)
        elif "test" in request:
            self._control(conn, request["test"])
        else:
            _send_json_line(conn, {"error": "expected a test or a join"})

    def _rate_connection(self, conn: Connection, first: bytes, test: _Test) -> None:
        with test.lock:
            test.rate_connections += 1
        if first:  # the echo variant: send back every byte until the client's end
            conn.send_all(first)
            while data := conn.recv():
                conn.send_all(data)

    def _control(self, conn: Connection, record: object) -> None:
        try:
            spec = BenchSpec.from_json(record)
        except (ProtocolError, TypeError) as exc:
            _send_json_line(conn, {"error": f"bad test: {exc}"})
            return
        if spec.protocol == "udp" and conn.stream.sock.family not in self.udp_sockets:  # type: ignore[attr-defined]
            _send_json_line(conn, {"error": "this server does not listen on UDP"})
            return
        if not self._busy.acquire(blocking=False):
            _send_json_line(conn, {"error": "busy"})
            return
        test = _Test(spec)
        udp_thread: threading.Thread | None = None
        try:
            self._test = test
            if spec.protocol == "udp":
                udp_sock = self.udp_sockets[conn.stream.sock.family]  # type: ignore[attr-defined]
                udp_thread = threading.Thread(target=self._serve_udp, args=(udp_sock, test), name="bench-udp")
                udp_thread.start()
            _send_json_line(conn, {"ok": True, "cookie": test.cookie})
            if "start" not in _read_json_line(conn, "start"):
                raise ConnectionLost("expected the start")
            test.started.set()
            self.test_started.set()
            if "done" not in _read_json_line(conn, "done"):
                raise ConnectionLost("expected the end of the test")
            expected = len(spec.directions) * spec.streams if spec.protocol != "udp" else 0
            for _ in range(expected):
                test.finished.acquire(timeout=HANDSHAKE_TIMEOUT)
            if udp_thread is not None:
                udp_thread.join()
            results = sorted(test.results, key=lambda r: (r.direction, r.stream))
            self.tests_run += 1
            if self.on_test is not None:
                self.on_test(str(conn.peer), spec, results)
        finally:
            test.abort()
            if udp_thread is not None:
                udp_thread.join()
            self._test = None
            self._busy.release()
            self.test_finished.set()
        # Only now: a client that has its results may start its next test at once.
        _send_json_line(conn, {"results": [r.to_json() for r in results], "connections": test.rate_connections})

    def _join(self, conn: Connection, request: dict[str, object]) -> None:
        test = self._test
        stream, direction = request.get("stream"), request.get("direction")
        if (
            test is None
            or request["join"] != test.cookie
            or not isinstance(stream, int)
            or not 1 <= stream <= test.spec.streams
            or direction not in test.spec.directions
        ):
            _send_json_line(conn, {"error": "no such test or stream"})
            return
        assert isinstance(direction, str)
        sock: socket.socket = conn.stream.sock  # type: ignore[attr-defined]
        with test.lock:
            if (stream, direction) in test.joined:
                _send_json_line(conn, {"error": "stream joined twice"})
                return
            test.joined[stream, direction] = sock
        if direction == "echo" and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send_json_line(conn, {"ok": True})
        test.started.wait()
        counter = _Counter(stream, direction)
        role = "sender" if direction == "reverse" else "receiver"
        began = time.monotonic()
        try:
            if test.aborted.is_set():
                return
            if direction == "reverse":
                source = _ZeroSource(test.spec.length)
                try:
                    _send_stream(sock, source, counter, began + test.spec.seconds, test.spec.share(stream))
                finally:
                    source.close()
            elif direction == "echo":
                _echo_requests(sock, test.spec.length, counter)
            else:
                _receive_stream(sock, test.spec.length, counter)
        except OSError:
            if not test.aborted.is_set():
                raise
        finally:
            with test.lock:
                test.results.append(StreamResult(stream, direction, role, counter.count, time.monotonic() - began))
            test.finished.release()

    def _serve_udp(self, sock: socket.socket, test: _Test) -> None:
        """Answer hellos, count forward datagrams, and send reverse ones, for one test."""
        spec = test.spec
        receiver = _UdpReceiver(test.test_id, spec.streams, spec.length)
        peers: dict[int, tuple[object, ...]] = {}
        senders: list[threading.Thread] = []
        buffer = memoryview(bytearray(65536))
        forward, reverse = "forward" in spec.directions, "reverse" in spec.directions
        last_heard = time.monotonic()
        while not test.aborted.is_set():
            if test.started.is_set() and not senders and reverse:
                senders = [
                    threading.Thread(target=self._udp_reverse, args=(sock, test, n, peers[n]), name=f"bench-send-{n}")
                    for n in peers
                ]
                for thread in senders:
                    thread.start()
            if test.started.is_set() and (not forward or receiver.done):
                break
            if test.started.is_set() and time.monotonic() - last_heard > UDP_IDLE_LIMIT:
                break
            if not _readable(sock, 0.05):
                continue
            size, peer = sock.recvfrom_into(buffer)
            last_heard = time.monotonic()
            hello = receiver.take(buffer, size)
            if hello is not None and hello[0] == UDP_HELLO:
                peers[hello[1]] = peer
                sock.sendto(UDP_HEADER.pack(UDP_HELLO_ACK, test.test_id, hello[1], 0, 0), peer)
        for thread in senders:
            thread.join()
        if forward:
            with test.lock:
                test.results.extend(receiver.results("forward"))

    def _udp_reverse(self, sock: socket.socket, test: _Test, stream: int, peer: tuple[object, ...]) -> None:
        spec = test.spec
        counter = _Counter(stream, "reverse")
        began = time.monotonic()

        def send(datagram: bytes | bytearray | memoryview) -> object:
            return sock.sendto(datagram, peer)

        _udp_send(send, test.test_id, stream, spec.length, spec.rate, counter, began + spec.seconds, spec.share(stream))
        with test.lock:
            test.results.append(StreamResult(stream, "reverse", "sender", counter.count, time.monotonic() - began))


def _readable(sock: socket.socket, timeout: float) -> bool:
    import select

    return bool(select.select([sock], [], [], timeout)[0])


# -- the client ------------------------------------------------------------------------


def run_client(
    address: Address,
    spec: BenchSpec,
    *,
    family: int = socket.AF_UNSPEC,
    interval: float | None = None,
    on_interval: Callable[[Interval], None] | None = None,
    on_connected: Callable[[str, str], None] | None = None,
    connect_timeout: float | None = HANDSHAKE_TIMEOUT,
) -> Summary:
    """Run one test against the bench server at ``address`` and return its summary.

    Args:
        address: the server's :class:`~enchufe.address.InetAddress` or ``UnixAddress``.
        spec: the test.
        family: ``socket.AF_INET`` or ``AF_INET6`` to use only that family.
        interval: seconds between ``on_interval`` calls (``None``: none).
        on_connected: ``on_connected(local, remote)`` once per data connection.

    Raises:
        ConnectError: the server is busy or refused the test.
        NetworkError: the connection failed or the server broke the protocol.
    """
    if (spec.protocol == "unix") != isinstance(address, UnixAddress):
        raise ProtocolError("a Unix test needs a Unix address, and only it")
    with open_connection(address, family=family, timeout=connect_timeout) as control:
        control_sock: socket.socket = control.stream.sock  # type: ignore[attr-defined]
        _send_json_line(control, {"test": asdict(spec)})
        reply = _read_json_line(control, "answer")
        if "error" in reply:
            if reply["error"] == "busy":
                raise ConnectError("the server is busy running a test")
            raise ConnectError(f"the server refused the test: {reply['error']}")
        cookie = str(reply.get("cookie"))
        return _Client(control, control_sock.getpeername(), control_sock.family, cookie, spec).run(
            interval, on_interval, on_connected
        )


class _Client:
    def __init__(self, control: Connection, peer: object, family: int, cookie: str, spec: BenchSpec) -> None:
        self.control = control
        self.peer = peer
        self.family = family
        self.cookie = cookie
        self.test_id = int(cookie[:8], 16)
        self.spec = spec
        self.sockets: list[socket.socket] = []
        self.results: list[StreamResult] = []
        self.samples: list[float] = []
        self.failures = 0
        self.errors: list[BaseException] = []

    def _connect_stream(self, stream: int, direction: str) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        self.sockets.append(sock)
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            sock.connect(self.peer)  # type: ignore[arg-type]
        except OSError as exc:
            raise ConnectError(f"data connection: {exc.strerror or exc}") from None
        sock.settimeout(None)
        if direction == "echo" and self.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(SocketStream(sock))
        _send_json_line(conn, {"join": self.cookie, "stream": stream, "direction": direction})
        answer = _read_json_line(conn, "answer")
        if "error" in answer:
            raise ConnectError(f"the server refused stream {stream}: {answer['error']}")
        return sock

    def _udp_stream(self, stream: int) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sockets.append(sock)
        sock.connect(self.peer)  # type: ignore[arg-type]
        hello = UDP_HEADER.pack(UDP_HELLO, self.test_id, stream, 0, 0)
        for _ in range(50):
            with contextlib.suppress(ConnectionRefusedError):
                sock.send(hello)
            if _readable(sock, 0.1):
                with contextlib.suppress(ConnectionRefusedError):
                    answer = sock.recv(UDP_HEADER.size)
                    if len(answer) == UDP_HEADER.size and UDP_HEADER.unpack(answer)[0] == UDP_HELLO_ACK:
                        return sock
        raise ConnectError("no answer from the server on UDP")

    def run(
        self,
        interval: float | None,
        on_interval: Callable[[Interval], None] | None,
        on_connected: Callable[[str, str], None] | None,
    ) -> Summary:
        spec = self.spec
        work: list[tuple[str, Callable[[], None], _Counter]] = []
        udp_sockets: dict[int, socket.socket] = {}  # in --bidir, stream N's two directions share one
        try:
            for direction in spec.directions:
                for n in range(1, spec.streams + 1):
                    if spec.protocol != "udp":
                        sock = self._connect_stream(n, direction)
                    elif n in udp_sockets:
                        sock = udp_sockets[n]
                    else:
                        sock = udp_sockets[n] = self._udp_stream(n)
                    if on_connected is not None:
                        on_connected(_name(sock.getsockname()), _name(sock.getpeername()))
                    counter = _Counter(n, direction)
                    work.append((f"bench-{direction}-{n}", self._stream_work(sock, n, direction, counter), counter))
            if spec.mode == "rate":
                for n in range(1, spec.streams + 1):
                    counter = _Counter(n, "rate")
                    work.append((f"bench-rate-{n}", self._rate_work(counter), counter))
            return self._run_threads(work, interval, on_interval)
        finally:
            for sock in self.sockets:
                sock.close()

    def _stream_work(self, sock: socket.socket, stream: int, direction: str, counter: _Counter) -> Callable[[], None]:
        spec = self.spec
        limit = spec.share(stream)

        def run() -> None:
            began = time.monotonic()
            deadline = began + spec.seconds
            role = "sender" if direction in {"forward", "echo"} else "receiver"
            udp: UdpStats | None = None
            if spec.protocol == "udp" and direction == "forward":
                _udp_send(sock.send, self.test_id, stream, spec.length, spec.rate, counter, deadline, limit)
            elif spec.protocol == "udp":
                receiver = _UdpReceiver(self.test_id, spec.streams, spec.length)
                self._udp_receive(sock, receiver, stream, counter)
                (result,) = [r for r in receiver.results("reverse") if r.stream == stream]
                self.results.append(result)
                return
            elif direction == "forward":
                source = _ZeroSource(spec.length)
                try:
                    _send_stream(sock, source, counter, deadline, limit)
                finally:
                    source.close()
            elif direction == "echo":
                _round_trips(sock, spec.length, counter, deadline, limit, self.samples)
            else:
                _receive_stream(sock, spec.length, counter)
            self.results.append(StreamResult(stream, direction, role, counter.count, time.monotonic() - began, udp))

        return run

    def _udp_receive(self, sock: socket.socket, receiver: _UdpReceiver, stream: int, counter: _Counter) -> None:
        buffer = memoryview(bytearray(65536))
        receiver.counters[stream] = counter
        while stream not in receiver.ended:
            if not _readable(sock, UDP_IDLE_LIMIT):
                break
            try:
                size = sock.recv_into(buffer)
            except ConnectionRefusedError:
                continue
            receiver.take(buffer, size)

    def _rate_work(self, counter: _Counter) -> Callable[[], None]:
        spec = self.spec
        request = b"\0" * spec.length
        buffer = bytearray(spec.length)

        def run() -> None:
            deadline = time.monotonic() + spec.seconds
            while time.monotonic() < deadline if spec.total_bytes is None else counter.count < spec.total_bytes:
                began = time.perf_counter()
                try:
                    with socket.socket(self.family, socket.SOCK_STREAM) as sock:
                        sock.settimeout(HANDSHAKE_TIMEOUT)
                        sock.connect(self.peer)  # type: ignore[arg-type]
                        if request:
                            sock.sendall(request)
                            view, got = memoryview(buffer), 0
                            while got < len(request) and (received := sock.recv_into(view[got:])):
                                got += received
                except OSError:
                    self.failures += 1
                    continue
                self.samples.append(time.perf_counter() - began)
                counter.count += 1

        return run

    def _run_threads(
        self,
        work: list[tuple[str, Callable[[], None], _Counter]],
        interval: float | None,
        on_interval: Callable[[Interval], None] | None,
    ) -> Summary:
        spec = self.spec
        barrier = threading.Barrier(len(work) + 1)
        finished = threading.Event()
        remaining = [len(work)]
        remaining_lock = threading.Lock()

        def body(target: Callable[[], None]) -> None:
            try:
                barrier.wait()
                target()
            except Exception as exc:  # noqa: BLE001 - re-raised by the caller after the join
                self.errors.append(exc)
            finally:
                with remaining_lock:
                    remaining[0] -= 1
                    if not remaining[0]:
                        finished.set()

        threads = [threading.Thread(target=body, args=(target,), name=name) for name, target, _ in work]
        for thread in threads:
            thread.start()
        try:
            _send_json_line(self.control, {"start": True})
            barrier.wait()
            began = time.monotonic()
            last, seen = 0.0, [0] * len(work)
            while not finished.wait(None if interval is None else max(0.0, began + last + interval - time.monotonic())):
                now = time.monotonic() - began
                counts = [counter.count for _, _, counter in work]
                streams = [(c.stream, c.direction, n - s) for (_, _, c), n, s in zip(work, counts, seen, strict=True)]
                if on_interval is not None:
                    on_interval(Interval(last, now, streams))
                last, seen = now, counts
            elapsed = time.monotonic() - began
            if interval is not None and on_interval is not None and elapsed > last:  # the rest, however short
                counts = [counter.count for _, _, counter in work]
                streams = [(c.stream, c.direction, n - s) for (_, _, c), n, s in zip(work, counts, seen, strict=True)]
                on_interval(Interval(last, elapsed, streams))
        finally:
            barrier.abort()
            for thread in threads:
                thread.join()
        if self.errors:
            error = self.errors[0]
            if isinstance(error, NetworkError):
                raise error
            if isinstance(error, OSError):
                raise ConnectionLost(f"a stream failed: {error.strerror or error}") from None
            raise error
        _send_json_line(self.control, {"done": True})
        answer = _read_json_line(self.control, "results")
        remote = answer.get("results")
        if not isinstance(remote, list):
            raise ConnectionLost("the server sent no results")
        results = self.results + [StreamResult.from_json(record) for record in remote]
        results.sort(key=lambda r: (r.direction, r.stream, r.role != "sender"))
        summary = Summary(
            spec,
            _name(self.control.stream.sock.getsockname()),  # type: ignore[attr-defined]
            _name(self.peer),
            sum(1 for sock in self.sockets if sock.type == socket.SOCK_STREAM) + 1,
            results,
            elapsed,
        )
        if spec.mode != "throughput":
            summary.latency = LatencyStats(self.samples)
        if spec.mode == "rate":
            summary.rate_connections = sum(counter.count for _, _, counter in work)
            summary.rate_failures = self.failures
        return summary


def _name(sockaddr: object) -> str:
    """A socket address as text: ``127.0.0.1:5201``, ``[::1]:5201``, or a Unix path."""
    if isinstance(sockaddr, tuple):
        return str(InetAddress(str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr) if sockaddr else "(unnamed)"


def iter_histogram(stats: LatencyStats, width: int = 40) -> Iterator[str]:
    """The text histogram of a latency test, a bar per bucket."""
    buckets = stats.histogram()
    most = max((count for _, count in buckets), default=0)
    for bound, count in buckets:
        bar = "#" * (round(width * count / most) if most else 0)
        yield f"  <= {_duration(bound):>9}  {count:>8}  {bar}"


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
