"""``enchufe-ping``: iputils ``ping``'s options and output over :mod:`enchufe.tools.ping`.

The lines are iputils' byte for byte: the ``PING`` header, one line per reply or error
as it comes, and the summary after ``-c`` probes, at ``-w``'s deadline or at SIGINT.
Exit status 0 when a reply came (with ``-w`` and ``-c``: all ``-c`` of them), 1 when
none did, 2 for a usage error. Only ``--help`` and ``--version`` stay cheap to start:
the socket modules are imported once there is something to ping.
"""

from __future__ import annotations

import sys

from enchufe.cli import status
from enchufe.cli.tool import Report, run_tool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from enchufe.tools.ping import Event, Pinger, Statistics

__all__ = ["main"]

PROGRAM = "enchufe-ping"
SHORT_OPTIONS = "46c:hi:nOqs:t:vVW:w:"
LONG_OPTIONS = ["help", "version", "json", "tcp="]
#: iputils' limits: the largest IPv4 payload, the fastest interval for a user.
MAX_SIZE = 65507
MIN_USER_INTERVAL = 0.002

USAGE = """\
Usage: enchufe-ping [options] <destination>

Options:
  <destination>      an address, or a name (not with -n)
  -c <count>         stop after <count> probes (with -w: after <count> replies)
  -i <interval>      seconds between probes (default 1)
  -W <timeout>       seconds to wait for each reply (default 10)
  -w <deadline>      stop after <deadline> seconds, whatever is outstanding
  -s <size>          payload bytes (default 56; 16 or more are timed)
  -t <ttl>           the TTL (IPv6: hop limit) of what is sent
  -q                 quiet: only the header and the summary
  -O                 report probes that got no reply within -W
  -4, -6             IPv4 or IPv6 only
  -n                 numeric only: refuse names, never resolve
  -v                 verbose: also report packets that are not ours
      --tcp <port>   ping by TCP connect to <port>: no privilege needed
      --json         one JSON object per reply, error, timeout and the summary
  -h, --help         show this help and exit
  -V, --version      show the version and exit

Without root, ICMP goes through the kernel's ping sockets if net.ipv4.ping_group_range
allows the user's group; --tcp needs no privilege at all.
"""


class Options:
    """The command line, parsed."""

    def __init__(self) -> None:
        self.host = ""
        self.count: int | None = None
        self.interval = 1.0
        self.timeout = 10.0
        self.deadline: float | None = None
        self.size = 56
        self.ttl: int | None = None
        self.quiet = False
        self.outstanding = False
        self.family = "any"
        self.numeric = False
        self.verbosity = 0
        self.json = False
        self.tcp_port: int | None = None
        self.show_help = False
        self.show_version = False


def parse_options(argv: list[str]) -> Options:
    """Parse the command line.

    Raises:
        UsageError: an unknown option, a bad value, no destination or several.
    """
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.usage import UsageError

    options = Options()
    operands = []
    try:
        for name, value in gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS):
            if not name:
                operands.append(value)
            elif name in ("-h", "--help"):
                options.show_help = True
                return options
            elif name in ("-V", "--version"):
                options.show_version = True
                return options
            elif name == "-c":
                options.count = _number(value, int, "count", minimum=1)
            elif name == "-i":
                options.interval = _number(value, float, "interval", minimum=0)
            elif name == "-W":
                options.timeout = _number(value, float, "timeout", minimum=0)
            elif name == "-w":
                options.deadline = _number(value, float, "deadline", minimum=0)
            elif name == "-s":
                options.size = _number(value, int, "packet size", minimum=0)
                if options.size > MAX_SIZE:
                    raise UsageError(f"Packet size {options.size} is too large. Maximum is {MAX_SIZE}.")
            elif name == "-t":
                options.ttl = _number(value, int, "ttl", minimum=1, maximum=255)
            elif name == "-q":
                options.quiet = True
            elif name == "-O":
                options.outstanding = True
            elif name in ("-4", "-6"):
                if options.family not in ("any", name[1]):
                    raise UsageError("Only one -4 or -6 option may be given.")
                options.family = name[1]
            elif name == "-n":
                options.numeric = True
            elif name == "-v":
                options.verbosity += 1
            elif name == "--json":
                options.json = True
            elif name == "--tcp":
                from enchufe.address import parse_port
                from enchufe.errors import AddressError

                try:
                    options.tcp_port = parse_port(value)
                except AddressError as exc:
                    raise UsageError(f"{exc}.") from None
    except GetoptError as exc:
        raise UsageError(f"{exc}. Try --help.", getopt_message=True) from None
    if len(operands) != 1:
        raise UsageError("Give one destination." if not operands else f"Give one destination, not {len(operands)}.")
    options.host = operands[0]
    return options


def _number(
    text: str, kind: type[int] | type[float], what: str, *, minimum: float, maximum: float | None = None
) -> int:
    from enchufe.cli.usage import UsageError

    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"Invalid {what} '{text}'.") from None
    if value < minimum or (maximum is not None and value > maximum) or value != value:
        bound = f"from {minimum:g} to {maximum:g}" if maximum is not None else f"{minimum:g} or more"
        raise UsageError(f"Invalid {what} '{text}': {bound}.")
    return value  # type: ignore[return-value]


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``enchufe-ping`` with ``argv`` (``sys.argv[1:]`` by default); return its status."""
    args = sys.argv[1:] if argv is None else argv
    stdout = sys.stdout if out is None else out
    options_box: list[Options] = []

    def work() -> int:
        options = parse_options(args)
        options_box.append(options)
        if options.show_help:
            stdout.write(USAGE)
            return status.SUCCESS
        if options.show_version:
            from enchufe import __version__

            stdout.write(f"{PROGRAM} {__version__} (iputils ping-compatible)\n")
            return status.SUCCESS
        return ping(options, Report(PROGRAM, json=options.json, verbosity=options.verbosity, out=stdout, err=err))

    return run_tool(PROGRAM, work, err=err)


def ping(options: Options, report: Report) -> int:
    """Ping as ``options`` say, reporting to ``report``; the exit status."""
    import os
    import socket

    from enchufe.cli.usage import UsageError
    from enchufe.net.resolve import SystemResolver
    from enchufe.tools.ping import Pinger

    if options.interval < MIN_USER_INTERVAL and os.geteuid() != 0:
        raise UsageError(
            f"Cannot flood: the minimal interval for a user is {MIN_USER_INTERVAL * 1000:g} ms; use -i 0.002 or more."
        )
    family = {"any": socket.AF_UNSPEC, "4": socket.AF_INET, "6": socket.AF_INET6}[options.family]
    pinger = Pinger(
        options.host,
        kind="auto" if options.tcp_port is None else "tcp",
        port=options.tcp_port,
        family=family,
        count=options.count,
        interval=options.interval,
        timeout=options.timeout,
        deadline=options.deadline,
        size=options.size,
        ttl=options.ttl,
        resolver=SystemResolver(numeric_only=options.numeric),
    )
    with pinger:
        report.info(f"pinging {pinger.address} over a {pinger.kind} socket, identifier {pinger.identifier}")
        report.text(_header(options, pinger))
        interrupted = _catching_sigint()
        try:
            for event in pinger:
                _report_event(event, options, pinger, report)
        except KeyboardInterrupt:
            pass
        finally:
            interrupted()
        _report_summary(options, pinger, report)
    stats = pinger.statistics
    if not stats.received:
        return status.NETWORK_ERROR
    if options.deadline is not None and options.count is not None and stats.received < options.count:
        return status.NETWORK_ERROR
    return status.SUCCESS


def _catching_sigint() -> Callable[[], object]:
    """Make SIGINT raise KeyboardInterrupt (the launcher left it killing the process) so
    that the summary is written; return the function that puts the old handler back."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:
        return lambda: None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def _header(options: Options, pinger: Pinger) -> str:
    if pinger.kind == "tcp":
        return f"PING {options.host} ({pinger.address}) TCP port {pinger.port}."
    if pinger.ipv6:
        return f"PING {options.host}({pinger.address}) {options.size} data bytes"
    return f"PING {options.host} ({pinger.address}) {options.size}({options.size + 28}) bytes of data."


def _source(source: str, options: Options, pinger: Pinger) -> str:
    """``localhost (127.0.0.1)`` for the target given by name, as iputils (which asks DNS
    for every other address: enchufe never does)."""
    if source == pinger.address and options.host != pinger.address and not options.numeric:
        return f"{options.host} ({source})"
    return source


def _milliseconds(microseconds: int) -> str:
    """iputils' precision for a round trip: three digits, fewer as it grows."""
    if microseconds >= 100000 - 50:
        return f"{(microseconds + 500) // 1000}"
    if microseconds >= 10000 - 5:
        return f"{(microseconds + 50) // 1000}.{((microseconds + 50) % 1000) // 100}"
    if microseconds >= 1000:
        return f"{(microseconds + 5) // 1000}.{((microseconds + 5) % 1000) // 10:02}"
    return f"{microseconds // 1000}.{microseconds % 1000:03}"


def _report_event(event: Event, options: Options, pinger: Pinger, report: Report) -> None:
    from enchufe.tools.ping import Error, Reply, Stray, Timeout

    label = "tcp_seq" if pinger.kind == "tcp" else "icmp_seq"
    if isinstance(event, Reply):
        microseconds = None if event.rtt is None else round(event.rtt * 1e6)
        record: dict[str, object] = {
            "type": "reply", "seq": event.sequence, "source": event.source, "bytes": event.size, "ttl": event.ttl,
            "time_ms": None if microseconds is None else microseconds / 1000, "duplicate": event.duplicate,
            "state": event.state,
        }  # fmt: skip
        if pinger.kind == "tcp":
            line = f"from {_source(event.source, options, pinger)} port {pinger.port}: {label}={event.sequence}"
            line += f" {event.state}"
        else:
            line = f"{event.size} bytes from {_source(event.source, options, pinger)}: {label}={event.sequence}"
            line += f" ttl={event.ttl}" if event.ttl is not None else ""
        line += f" time={_milliseconds(microseconds)} ms" if microseconds is not None else ""
        line += " (DUP!)" if event.duplicate else ""
        report.result(record, None if options.quiet else line)
    elif isinstance(event, Error):
        record = {
            "type": "error", "seq": event.sequence, "source": event.source, "message": event.description,
            "icmp_type": event.type, "icmp_code": event.code,
        }  # fmt: skip
        if event.source is None:
            if not options.json:
                report.error(f"{label}={event.sequence}: {event.description}")
            report.result(record, None)
        else:
            report.result(
                record, None if options.quiet else f"From {event.source} {label}={event.sequence} {event.description}"
            )
    elif isinstance(event, Timeout):
        text = f"no answer yet for {label}={event.sequence}" if options.outstanding and not options.quiet else None
        report.result({"type": "timeout", "seq": event.sequence}, text)
    elif isinstance(event, Stray) and options.verbosity:
        report.result({"type": "stray", "source": event.source, "message": event.description},
                      f"From {event.source}: {event.description}")  # fmt: skip


def _report_summary(options: Options, pinger: Pinger, report: Report) -> None:
    stats: Statistics = pinger.statistics
    elapsed_ms = round(stats.elapsed * 1000)
    rtt = stats.rtt_us()
    record: dict[str, object] = {
        "type": "summary", "host": options.host, "address": pinger.address, "transmitted": stats.transmitted,
        "received": stats.received, "duplicates": stats.duplicates, "errors": stats.errors,
        "loss_percent": stats.loss_percent, "time_ms": elapsed_ms,
        "rtt_min_ms": None, "rtt_avg_ms": None, "rtt_max_ms": None, "rtt_mdev_ms": None,
    }  # fmt: skip
    if rtt is not None:
        for key, value in zip(("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms"), rtt, strict=True):
            record[key] = value / 1000
    counts = f"{stats.transmitted} packets transmitted, {stats.received} received"
    counts += f", +{stats.duplicates} duplicates" if stats.duplicates else ""
    counts += f", +{stats.errors} errors" if stats.errors else ""
    if stats.transmitted:
        counts += f", {_percent(stats.loss_percent)}% packet loss, time {elapsed_ms}ms"
    last = []
    if rtt is not None and stats.received:
        last.append("rtt min/avg/max/mdev = " + "/".join(f"{t // 1000}.{t % 1000:03}" for t in rtt) + " ms")
    if stats.pipe > 1:
        last.append(f"pipe {stats.pipe}")
    report.text(f"\n--- {options.host} ping statistics ---\n{counts}\n{', '.join(last)}")
    report.result(record, None)


def _percent(value: float) -> str:
    """C's ``%g``: six significant digits, no trailing zeros."""
    return f"{value:g}"
