"""``enchufe-bench``: an iperf3-style server and client, with latency and connection rate.

``enchufe-bench -s`` serves tests (one at a time); ``enchufe-bench -c HOST`` runs one and
prints iperf3's interval lines and summary, or JSON lines with ``--json``. Only what a
mode needs is imported, and only once the options are read: ``--version`` and ``--help``
import nothing beyond this module.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from enchufe.cli.tool import Report
    from enchufe.tools.bench import BenchSpec, Interval, StreamResult, Summary

PROGRAM = "enchufe-bench"

USAGE = """\
enchufe-bench {version}: throughput, latency and connection rate (iperf3-style)
Usage: enchufe-bench -s [-p PORT] [-U PATH] [-1] [-4|-6] [--json] [-v]
       enchufe-bench -c HOST [options]     enchufe-bench -U PATH [options]

Server:
  -s, --server              Serve tests, one at a time (a second client is told busy)
  -1, --one-off             Serve one test, then exit
Client:
  -c, --client HOST         Run a test against the server on HOST
  -u, --udp                 UDP (paced by -b) instead of TCP
  -U, --unix PATH           A Unix stream socket (client and server)
  -t, --time SECONDS        How long to run (default 10)
  -n, --bytes N[KMG]        Bytes to send instead, split between the streams
  -l, --length N[KMG]       Bytes per send: TCP 128K, UDP 1460, latency/rate 64
  -P, --parallel N          Parallel streams, one thread each (default 1)
  -R, --reverse             The server sends
      --bidir               Both send at once
  -b, --bitrate N[KMG]      UDP bits per second per stream (default 1M)
  -i, --interval SECONDS    Seconds between interval reports (default 1, 0 for none)
      --latency             Round trips of -l bytes: p50/p90/p99/max and a histogram
      --rate                Connections per second (connect + close; with -l N, an N-byte echo)
  -w, --wait SECONDS        Connect timeout (default 10)
Both:
  -p, --port PORT           Port (default 5201)
  -4, -6                    IPv4 or IPv6 only
      --json                One JSON object per interval and one summary
  -v, --verbose             Say more on stderr
  -h, --help                This help
      --version             The version
"""

SHORT_OPTIONS = "sc:p:1uU:t:n:l:P:Rb:i:w:46vh"
LONG_OPTIONS = [
    "server", "client=", "port=", "one-off", "udp", "unix=", "time=", "bytes=", "length=", "parallel=",
    "reverse", "bidir", "bitrate=", "interval=", "latency", "rate", "wait=", "json", "verbose", "help", "version",
]  # fmt: skip
LONG_TO_SHORT = {
    "--server": "-s", "--client": "-c", "--port": "-p", "--one-off": "-1", "--udp": "-u", "--unix": "-U",
    "--time": "-t", "--bytes": "-n", "--length": "-l", "--parallel": "-P", "--reverse": "-R",
    "--bitrate": "-b", "--interval": "-i", "--wait": "-w", "--verbose": "-v", "--help": "-h",
}  # fmt: skip
SEPARATOR = "- - - - - - - - - - - - - - - - - - - - - - - - -"
ROW_HEADER = "[ ID] Interval           Transfer     Bitrate"


def main(argv: list[str] | None = None) -> int:
    """Run ``enchufe-bench`` with ``argv`` (default ``sys.argv[1:]``); return its exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"]:
        return _show_version()
    from enchufe.cli.tool import run_tool

    return run_tool(PROGRAM, lambda: _run(args))


def _show_version() -> int:
    from enchufe import __version__

    sys.stdout.write(f"{PROGRAM} {__version__}\n")
    return 0


def _run(args: list[str]) -> int:
    options = _parse(args)
    if "-h" in options:
        from enchufe import __version__

        sys.stdout.write(USAGE.format(version=__version__))
        return 0
    if "--version" in options:
        return _show_version()
    from enchufe.cli.tool import Report

    report = Report(PROGRAM, json="--json" in options, verbosity=int(options.get("-v", "0")))
    if "-s" in options:
        return _serve(options, report)
    return _client(options, report)


def _parse(args: list[str]) -> dict[str, str]:
    """The options by their short name (the last of each wins; -v counts)."""
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.usage import UsageError

    options: dict[str, str] = {}
    try:
        for name, value in gnu_getopt(args, SHORT_OPTIONS, LONG_OPTIONS):
            if not name:
                raise UsageError(f"Unexpected argument {value!r}; the server's host goes after -c.")
            name = LONG_TO_SHORT.get(name, name)
            if name == "-h":
                return {"-h": ""}
            options[name] = str(int(options.get("-v", "0")) + 1) if name == "-v" else value
    except GetoptError as exc:
        raise UsageError(f"{exc}. Type enchufe-bench --help for usage.") from None
    if ("-s" in options) == (
        "-c" in options or ("-U" in options and "-s" not in options)
    ) and "--version" not in options:
        raise UsageError("Give -s (server) or -c HOST / -U PATH (client).")
    return options


def _size(options: dict[str, str], name: str, *, base: int, default: float | None) -> float | None:
    """A count with an optional K, M or G (of ``base``) after it."""
    from enchufe.cli.usage import UsageError

    text = options.get(name)
    if text is None:
        return default
    scale = {"k": base, "m": base**2, "g": base**3}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"Invalid {name} value {text!r}.")
    return value * scale


def _seconds(options: dict[str, str], name: str, default: float) -> float:
    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError
    from enchufe.timespec import parse_duration

    text = options.get(name)
    if text is None:
        return default
    try:
        value = parse_duration(text)
    except AddressError:
        value = -1.0
    if value < 0:
        raise UsageError(f"Invalid {name} time {text!r}.")
    return value


def _family(options: dict[str, str]) -> int:
    import socket

    from enchufe.cli.usage import UsageError

    if "-4" in options and "-6" in options:
        raise UsageError("-4 and -6 cannot be used together.")
    return socket.AF_INET if "-4" in options else socket.AF_INET6 if "-6" in options else socket.AF_UNSPEC


def _port(options: dict[str, str]) -> int:
    from enchufe.address import parse_port
    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError
    from enchufe.tools.bench import DEFAULT_PORT

    try:
        return parse_port(options["-p"]) if "-p" in options else DEFAULT_PORT
    except AddressError as exc:
        raise UsageError(f"{exc}.") from None


# -- the server ------------------------------------------------------------------------


def _serve(options: dict[str, str], report: Report) -> int:
    from enchufe.address import UnixAddress
    from enchufe.net.listen import open_listeners
    from enchufe.tools.bench import BenchServer

    family = _family(options)
    if "-U" in options:
        listeners = open_listeners(UnixAddress(options["-U"]))
        udp_sockets = []
    else:
        listeners = open_listeners(port=_port(options), family=family)
        udp_sockets = [_udp_twin(listener.sock) for listener in listeners]

    def on_test(peer: str, spec: BenchSpec, results: list[StreamResult]) -> None:
        report.text(f"Accepted connection from {peer}: {spec.protocol} {spec.mode} {spec.direction}")
        record: dict[str, object] = {"type": "test", "peer": peer, "streams": [result.to_json() for result in results]}
        report.result(record, "\n".join([ROW_HEADER, *(_summary_row(result) for result in results)]))
        report.text("-----------------------------------------------------------")

    server = BenchServer(listeners, udp_sockets=udp_sockets, on_test=on_test, on_error=lambda peer, message: None)
    if report.verbosity:
        server.on_error = lambda peer, message: report.info(f"{peer}: {message}")
    with server:
        for address in server.addresses:
            report.info(f"Listening on {address}")
        report.text("-----------------------------------------------------------")
        report.text(f"Server listening on {options.get('-U') or server.addresses[0].port}")  # type: ignore[union-attr]
        report.text("-----------------------------------------------------------")
        while True:
            server.test_finished.wait()
            server.test_finished.clear()
            if "-1" in options and server.tests_run:
                return 0


def _udp_twin(listener: socket.socket) -> socket.socket:
    """A UDP socket bound where ``listener`` is: UDP tests use the same port number."""
    import socket

    from enchufe.errors import BindError

    sock = socket.socket(listener.family, socket.SOCK_DGRAM)
    if listener.family == socket.AF_INET6:
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    try:
        sock.bind(listener.getsockname())
    except OSError as exc:
        sock.close()
        raise BindError(f"UDP bind to port {listener.getsockname()[1]}: {exc.strerror}") from None
    return sock


# -- the client ------------------------------------------------------------------------


def _client(options: dict[str, str], report: Report) -> int:
    from enchufe.address import InetAddress, UnixAddress
    from enchufe.cli.usage import UsageError
    from enchufe.errors import ProtocolError
    from enchufe.tools.bench import BenchSpec, run_client

    modes = [mode for mode in ("--latency", "--rate") if mode in options]
    if len(modes) > 1 or ("-R" in options and "--bidir" in options):
        raise UsageError("Choose one of --latency and --rate, and one of -R and --bidir.")
    total = _size(options, "-n", base=1024, default=None)
    try:
        spec = BenchSpec(
            protocol="unix" if "-U" in options else "udp" if "-u" in options else "tcp",
            mode=modes[0][2:] if modes else "throughput",
            seconds=_seconds(options, "-t", 10.0) or 10.0,
            total_bytes=None if total is None else int(total),
            length=int(_size(options, "-l", base=1024, default=0) or 0),
            streams=int(_size(options, "-P", base=1000, default=1) or 1),
            direction="bidir" if "--bidir" in options else "reverse" if "-R" in options else "forward",
            rate=_size(options, "-b", base=1000, default=1e6) or 1e6,
        )
    except ProtocolError as exc:
        text = str(exc)
        raise UsageError(f"{text[:1].upper()}{text[1:]}.") from None
    address = UnixAddress(options["-U"]) if "-U" in options else InetAddress(options["-c"], _port(options))
    interval = _seconds(options, "-i", 1.0) or None
    where = f"socket {address}" if "-U" in options else f"host {options['-c']}, port {_port(options)}"
    report.text(f"Connecting to {where}")
    counted = [0]

    def on_connected(local: str, remote: str) -> None:
        counted[0] += 1
        report.text(f"[{counted[0]:>3}] local {local} connected to {remote}")

    def on_interval(sample: Interval) -> None:
        if not counted[1:]:
            counted.append(1)
            report.text(ROW_HEADER)
        report.result(sample.to_json(), "\n".join(_interval_rows(sample, spec)))

    summary = run_client(
        address,
        spec,
        family=_family(options),
        interval=interval,
        on_interval=on_interval,
        on_connected=on_connected,
        connect_timeout=_seconds(options, "-w", 10.0),
    )
    report.result(summary.to_json(), "\n".join(_summary_text(summary)))
    return 0


def _tag(direction: str, spec: BenchSpec, side: str) -> str:
    """iperf3's ``[TX-C]``/``[RX-C]`` in --bidir, where a stream number alone is ambiguous."""
    if spec.direction != "bidir":
        return ""
    return "[TX-C]" if (direction == "forward") == (side == "client") else "[RX-C]"


def _interval_rows(sample: Interval, spec: BenchSpec) -> list[str]:
    seconds = sample.end - sample.start
    rows = []
    for stream, direction, count in sample.streams:
        head = f"[{stream:>3}]{_tag(direction, spec, 'client')}"
        rows.append(_row(head, sample.start, sample.end, count, seconds, spec.mode))
    if len(sample.streams) > 1:
        total = sum(count for _, _, count in sample.streams)
        rows.append(_row("[SUM]", sample.start, sample.end, total, seconds, spec.mode))
    return rows


def _row(head: str, start: float, end: float, count: int, seconds: float, mode: str) -> str:
    span = f"{start:6.2f}-{end:<6.2f} sec"
    if mode == "rate":
        return f"{head} {span}  {count:>6} connections  {count / seconds if seconds > 0 else 0:8.0f} conn/sec"
    return f"{head} {span}  {_bytes(count)}  {_bits(8 * count / seconds if seconds > 0 else 0)}"


def _summary_row(result: StreamResult, spec: BenchSpec | None = None) -> str:
    head = f"[{result.stream:>3}]{_tag(result.direction, spec, 'client') if spec else ''}"
    line = _row(head, 0.0, result.seconds, result.bytes, result.seconds, "throughput")
    if result.udp is not None:
        udp = result.udp
        line += f"  {udp.jitter * 1e3:.3f} ms  {udp.lost}/{udp.lost + udp.packets} ({udp.loss_percent:.2g}%)"
        line += f"  {udp.out_of_order} out of order"
    return f"{line}  {result.role:>10}"


def _summary_text(summary: Summary) -> list[str]:
    from enchufe.tools.bench import iter_histogram

    spec = summary.spec
    lines = [SEPARATOR]
    if spec.mode == "throughput" or spec.mode == "latency":
        lines.append(ROW_HEADER)
        lines += [_summary_row(result, spec) for result in summary.streams]
    if summary.latency is not None and spec.mode == "latency":
        stats = summary.latency
        lines.append(
            f"latency: {len(stats.samples)} round trips of {spec.length} bytes:"
            f" p50 {_us(stats.percentile(0.5))}  p90 {_us(stats.percentile(0.9))}"
            f"  p99 {_us(stats.percentile(0.99))}  max {_us(max(stats.samples, default=0.0))}"
        )
        lines += list(iter_histogram(stats))
    if spec.mode == "rate":
        record = summary.to_json()["rate"]
        assert isinstance(record, dict)
        what = "connect + close" if not spec.length else f"connect + {spec.length}-byte echo + close"
        lines.append(
            f"rate: {record['connections']} connections ({what}) in {summary.seconds:.2f} sec,"
            f" {record['per_second']:.0f} conn/sec, {record['failures']} failed"
        )
        if summary.latency is not None:
            stats = summary.latency
            lines.append(
                f"each: p50 {_us(stats.percentile(0.5))}  p90 {_us(stats.percentile(0.9))}"
                f"  p99 {_us(stats.percentile(0.99))}  max {_us(max(stats.samples, default=0.0))}"
            )
    return lines


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def _scaled(value: float, base: int, units: tuple[str, ...]) -> str:
    """iperf3's adaptive units: three significant digits, the largest unit under ``value``."""
    index = 0
    while value >= base and index < len(units) - 1:
        value /= base
        index += 1
    number = f"{value:4.2f}" if value < 9.995 else f"{value:4.1f}" if value < 99.95 else f"{value:4.0f}"
    return f"{number} {units[index]}"


def _bytes(count: float) -> str:
    return _scaled(count, 1024, ("Bytes", "KBytes", "MBytes", "GBytes", "TBytes")).rjust(12)


def _bits(per_second: float) -> str:
    return _scaled(per_second, 1000, ("bits/sec", "Kbits/sec", "Mbits/sec", "Gbits/sec", "Tbits/sec")).rjust(15)
