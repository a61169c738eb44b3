"""``enchufe-scan``: a TCP connect (or UDP) port scan of hosts, addresses and CIDR blocks.

The command line of :mod:`enchufe.tools.scan`: one line per port in port order
(``127.0.0.1  22/tcp  open  SSH-2.0-OpenSSH_9.2``), or a JSON object per port with
``--json``, then a summary line. Exit status 0 when the scan ran, whatever the ports'
states; 1 when a host could not be scanned at all (a name that does not resolve, no
route to its network); 2 for a bad command line.
"""

from __future__ import annotations

import sys

from enchufe.cli.tool import run_tool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.cli.tool import Report
    from enchufe.tools.scan import HostFailure, PortResult, Target

__all__ = ["main"]

PROGRAM = "enchufe-scan"
DEFAULT_PORTS = "1-1024"
DEFAULT_CONCURRENCY = 256
DEFAULT_TIMEOUT = 1.0
#: The progress line is rewritten at most this often (seconds).
PROGRESS_INTERVAL = 0.1

USAGE = f"""\
Usage: {PROGRAM} [options] HOST...

Scan the TCP (or UDP) ports of each HOST: a name, an IPv4 or IPv6 address, or a CIDR
block (10.0.0.0/30; at most 65536 addresses in all). Results come in port order.

Options:
  -p PORTS        ports: 22,80,8000-8100, 1000- (to 65535), - for all (default {DEFAULT_PORTS})
  -u              UDP: an answer is open, an ICMP port unreachable closed,
                  silence open|filtered (each silent port is asked twice)
      --banner    show the first bytes each open port sends (within 0.5 s)
  -c CONCURRENCY  probes in flight at once (default {DEFAULT_CONCURRENCY})
  -w TIMEOUT      how long a probe waits for an answer: 500ms, 2s (default 1s)
      --open      show only open (and UDP open|filtered) ports
      --json      one JSON object per port instead of the table
  -4, -6          IPv4 or IPv6 only
  -n              no name resolution: refuse names
  -v              say what is scanned
  -h, --help      this help
      --version   the version

States: open (connected), closed (refused), filtered (no answer in time, or an ICMP
unreachable). Exit status: 0 when the scan ran, 1 when a host could not be scanned
at all, 2 for a bad command line.
"""

SHORT_OPTIONS = "46c:hnp:uvw:"
LONG_OPTIONS = ["banner", "help", "json", "open", "version"]
#: The order of the states in the summary.
STATES = ("open", "open|filtered", "closed", "filtered")


def main(argv: list[str] | None = None) -> int:
    """Run ``enchufe-scan`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    args = sys.argv[1:] if argv is None else argv
    return run_tool(PROGRAM, lambda: _run(args))


class _Options:
    def __init__(self) -> None:
        self.ports = DEFAULT_PORTS
        self.udp = False
        self.banner = False
        self.concurrency = DEFAULT_CONCURRENCY
        self.timeout = DEFAULT_TIMEOUT
        self.only_open = False
        self.json = False
        self.family = 0  # AF_UNSPEC
        self.numeric = False
        self.verbosity = 0
        self.hosts: list[str] = []


def _run(args: list[str]) -> int:
    options = _parse(args)
    if options is None:
        return 0
    from enchufe.cli.tool import Report

    report = Report(PROGRAM, json=options.json, verbosity=options.verbosity)
    return _scan(options, report)


def _parse(args: list[str]) -> _Options | None:
    """The options, or None when the command's work is done (``--help``, ``--version``)."""
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.usage import UsageError

    options = _Options()
    try:
        for name, value in gnu_getopt(args, SHORT_OPTIONS, LONG_OPTIONS):
            if not name:
                options.hosts.append(value)
            elif name in ("-h", "--help"):
                sys.stdout.write(USAGE)
                return None
            elif name == "--version":
                from enchufe import __version__

                sys.stdout.write(f"{PROGRAM} {__version__}\n")
                return None
            else:
                _set(options, name, value)
    except GetoptError as exc:
        raise UsageError(f"{exc}. Try `{PROGRAM} --help'.") from None
    if not options.hosts:
        raise UsageError("No host to scan given.")
    return options


def _set(options: _Options, name: str, value: str) -> None:
    from enchufe.cli.usage import UsageError

    if name == "-p":
        options.ports = value
    elif name == "-u":
        options.udp = True
    elif name == "--banner":
        options.banner = True
    elif name == "-c":
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
            raise UsageError(f'Invalid concurrency "{value}": a number from 1 to 65535.')
        options.concurrency = int(value)
    elif name == "-w":
        from enchufe.errors import AddressError
        from enchufe.timespec import parse_duration

        try:
            options.timeout = parse_duration(value)
        except AddressError as exc:
            raise UsageError(f"{exc}.") from None
        if options.timeout <= 0:
            raise UsageError(f'Invalid timeout "{value}": it must be above zero.')
    elif name == "--open":
        options.only_open = True
    elif name == "--json":
        options.json = True
    elif name in ("-4", "-6"):
        import socket

        options.family = socket.AF_INET if name == "-4" else socket.AF_INET6
    elif name == "-n":
        options.numeric = True
    elif name == "-v":
        options.verbosity += 1


def _scan(options: _Options, report: Report) -> int:
    import time

    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError
    from enchufe.net.resolve import SystemResolver
    from enchufe.tools.scan import HostFailure, expand_targets, is_name, parse_ports, scan_targets

    if options.numeric:
        for host in options.hosts:
            if is_name(host):
                raise UsageError(f'"{host}" is a name, and -n refuses names: give an address.')
    try:
        ports = parse_ports(options.ports)
        targets = expand_targets(
            options.hosts, family=options.family, resolver=SystemResolver(numeric_only=options.numeric)
        )
    except AddressError as exc:
        raise UsageError(f"{exc}.") from None
    transport = "udp" if options.udp else "tcp"
    addresses = [target for target in targets if not isinstance(target, HostFailure)]
    total = len(addresses) * len(ports)
    for target in addresses:
        if target.host != target.address and "/" not in target.host:
            report.info(f"{target.host} is {target.address}")
    report.info(
        f"Scanning {_count(len(addresses), 'address')}, {_count(len(ports), 'port')} ({transport}) each, "
        f"{options.concurrency} at once, {options.timeout:g} s for each answer."
    )
    started = time.monotonic()
    counts = dict.fromkeys(STATES, 0)
    done = 0
    failures = 0
    next_progress = started
    for result in scan_targets(
        targets,
        ports,
        transport=transport,
        concurrency=options.concurrency,
        timeout=options.timeout,
        banner=options.banner,
    ):
        if isinstance(result, HostFailure):
            failures += 1
            report.error(_failure_text(result))
            continue
        done += 1
        counts[result.state] += 1
        if not options.only_open or result.state in ("open", "open|filtered"):
            report.result(_record(result), _line(result))
        now = time.monotonic()
        if now >= next_progress:
            report.progress(f"{done}/{total} ports")
            next_progress = now + PROGRESS_INTERVAL
    elapsed = time.monotonic() - started
    found = ", ".join(f"{count} {state}" for state, count in counts.items() if count) or "nothing"
    report.text(f"Scanned {_count(len(addresses), 'address')}, {_count(done, 'port')} in {elapsed:.2f} s: {found}.")
    return 1 if failures else 0


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{number} {noun if number == 1 else plural}"


def _failure_text(failure: HostFailure) -> str:
    if failure.address is None:  # the message names the host
        return f"{failure.message}; not scanned."
    where = failure.host if failure.address == failure.host else f"{failure.host} ({failure.address})"
    return f"{where}: {failure.message}; not scanned."


def _line(result: PortResult) -> str:
    port = f"{result.port}/{result.transport}"
    line = f"{result.target.address}  {port:<11}  {result.state:<13}"
    if result.banner:
        line += "  " + _printable(result.banner)
    return line.rstrip()


def _printable(banner: bytes) -> str:
    """A banner's first line for a terminal: control characters escaped."""
    first = banner.split(b"\n", 1)[0].rstrip(b"\r")
    text = first.decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _record(result: PortResult) -> dict[str, object]:
    target: Target = result.target
    return {
        "host": target.host,
        "address": target.address,
        "port": result.port,
        "transport": result.transport,
        "state": result.state,
        "reason": result.reason,
        "seconds": round(result.seconds, 6),
        "banner": None if result.banner is None else result.banner.decode("utf-8", "backslashreplace"),
    }
