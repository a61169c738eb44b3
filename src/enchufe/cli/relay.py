"""``enchufe-relay LISTEN TARGET``: relay every client of LISTEN to TARGET, until a signal.

The engine is :mod:`enchufe.tools.relay`; this module reads the options, says what
happens (``-v`` on stderr, ``--json`` on stdout) and turns the end into an exit status:
a signal ends the relay with 128+signal, a failure to listen or to resolve the target
with ncat's statuses (:func:`enchufe.cli.tool.run_tool`).
"""

from __future__ import annotations

from enchufe.cli import status
from enchufe.cli.tool import Report, run_tool

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from enchufe.address import Address
    from enchufe.cli.signals import SignalHandlers
    from enchufe.errors import NetworkError
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop
    from enchufe.net.resolve import SystemResolver
    from enchufe.serve.proxy_server import ClientEnd, ProxyServer
    from enchufe.serve.workers import Worker
    from enchufe.tools.relay import DatagramRelay, Endpoint

__all__ = ["USAGE", "main"]

PROGRAM = "enchufe-relay"

USAGE = """\
Usage: enchufe-relay [options] LISTEN TARGET

Relays every client of LISTEN to its own connection to TARGET, many clients at once on
one thread, bytes moved by splice, half-close both ways, until a signal.

Addresses:
  8080, :8080            TCP on every local address, port 8080 (LISTEN only)
  127.0.0.1:80, [::1]:22 TCP to or on that address
  unix:/run/app.sock     a Unix stream socket (also /path, ./path, @abstract)
  udp:127.0.0.1:53       UDP (both sides must be UDP)

Options:
  -4                     Use IPv4 only
  -6                     Use IPv6 only
  -u, --udp              Both sides are UDP (as the udp: prefix)
  -n, --nodns            Do not resolve hostnames via DNS
  -m, --max-conns <n>    Maximum <n> clients at once (default: 1000; per worker)
  -i, --idle-timeout <t> Close a connection (or UDP session) idle for <t> (default for UDP: 60s)
  -w, --wait <t>         Connect timeout to TARGET (default: 10s)
      --allow            Allow only given hosts to connect
      --deny             Deny given hosts from connecting
      --send-proxy <v>   Start each connection to TARGET with a PROXY protocol header
                         (v1 or v2, as HAProxy's send-proxy) naming the client
  -v, --verbose          A line per client on stderr: its start, its end with bytes each way
      --json             A JSON line per finished connection on stdout
      --workers <n>      Relay in <n> processes sharing the TCP port (SO_REUSEPORT)
  -h, --help             Display this help screen
      --version          Display the version and exit

TLS (TCP and Unix stream sides):
      --ssl              Clients speak TLS to LISTEN (a temporary certificate unless
                         --ssl-cert and --ssl-key are given)
      --ssl-cert <file>  The listening side's certificate (PEM); implies --ssl
      --ssl-key <file>   Its private key (PEM); implies --ssl
      --target-ssl       Speak TLS to TARGET, verifying its certificate and name
                         against the system's CAs
      --target-ssl-trustfile <file>  Trust these CAs (PEM) for TARGET instead
      --target-ssl-servername <name> The name TARGET's certificate must have (and SNI)
      --target-ssl-noverify          Do not verify TARGET's certificate

Times are in seconds, or with a unit: 500ms, 2s, 1m, 1h.
"""

_SHORT_OPTIONS = "46unm:i:w:vh"
_LONG_OPTIONS = [
    "udp",
    "nodns",
    "max-conns=",
    "idle-timeout=",
    "wait=",
    "allow=",
    "deny=",
    "send-proxy=",
    "verbose",
    "json",
    "help",
    "version",
    "ssl",
    "ssl-cert=",
    "ssl-key=",
    "target-ssl",
    "target-ssl-trustfile=",
    "target-ssl-servername=",
    "target-ssl-noverify",
    "workers=",
]
_LONG_TO_SHORT = {
    "--udp": "-u",
    "--nodns": "-n",
    "--max-conns": "-m",
    "--idle-timeout": "-i",
    "--wait": "-w",
    "--verbose": "-v",
    "--help": "-h",
}
#: Clients at once by default: each costs six descriptors (two sockets, two pipes).
DEFAULT_MAX_CLIENTS = 1000
#: A UDP session's idle expiry by default: datagrams have no end to wait for.
DEFAULT_UDP_IDLE = 60.0
_DESCRIPTORS_PER_CLIENT = 6
_MAX_WORKERS = 1024


class _Options:
    def __init__(self) -> None:
        self.listen: Endpoint | None = None
        self.target: Endpoint | None = None
        self.family = 0
        self.numeric_only = False
        self.max_clients = DEFAULT_MAX_CLIENTS
        self.idle_timeout: float | None = None
        self.connect_timeout = 10.0
        self.access: list[tuple[str, str]] = []
        self.verbosity = 0
        self.json = False
        self.ssl = False
        self.ssl_cert: str | None = None
        self.ssl_key: str | None = None
        self.target_ssl = False
        self.target_trustfile: str | None = None
        self.target_servername: str | None = None
        self.target_verify = True
        self.send_proxy: int | None = None
        self.workers: int | None = None


def main(argv: list[str] | None = None) -> int:
    """Run ``enchufe-relay`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if args[:1] == ["--version"]:
        from enchufe import __version__

        sys.stdout.write(f"{PROGRAM} {__version__}\n")
        return 0
    return run_tool(PROGRAM, lambda: _run(args))


def _run(args: list[str]) -> int:
    options = _parse(args)
    if options is None:
        import sys

        sys.stdout.write(USAGE)
        return 0
    from enchufe.cli.signals import SignalHandlers, Signalled

    report = Report(PROGRAM, json=options.json, verbosity=options.verbosity)
    if options.workers is not None:
        return _relay_in_workers(options, report, options.workers)
    try:
        with SignalHandlers() as signals:
            _relay(options, report, signals)
    except Signalled as signalled:
        return 128 + signalled.signum
    return 0


def _parse(args: list[str]) -> _Options | None:
    """The options, or ``None`` for ``-h`` or ``--version`` given later (usage shown)."""
    import socket

    from enchufe.address import InetAddress
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError
    from enchufe.timespec import parse_duration
    from enchufe.tools.relay import parse_endpoint

    options = _Options()
    operands: list[str] = []
    udp = False
    try:
        for name, value in gnu_getopt(args, _SHORT_OPTIONS, _LONG_OPTIONS):
            name = _LONG_TO_SHORT.get(name, name)
            if not name:
                operands.append(value)
            elif name in ("-h", "--version"):
                return None
            elif name == "-4":
                options.family = socket.AF_INET
            elif name == "-6":
                options.family = socket.AF_INET6
            elif name == "-u":
                udp = True
            elif name == "-n":
                options.numeric_only = True
            elif name == "-m":
                if not (value.isascii() and value.isdigit()) or int(value) < 1:
                    raise UsageError(f"Invalid maximum connections: {value!r}.")
                options.max_clients = int(value)
            elif name in ("-i", "-w"):
                seconds = parse_duration(value)
                if seconds <= 0:
                    raise UsageError(f"Invalid {'idle' if name == '-i' else 'connect'} timeout: {value!r}.")
                if name == "-i":
                    options.idle_timeout = seconds
                else:
                    options.connect_timeout = seconds
            elif name in ("--allow", "--deny"):
                options.access.append((name[2:], value))
            elif name == "--send-proxy":
                if value not in ("v1", "v2"):
                    raise UsageError(f"Invalid PROXY protocol version: {value!r} (v1 or v2).")
                options.send_proxy = int(value[1])
            elif name == "-v":
                options.verbosity += 1
            elif name == "--json":
                options.json = True
            elif name == "--workers":
                if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= _MAX_WORKERS:
                    raise UsageError(f"Invalid number of workers: {value!r} (from 1 to {_MAX_WORKERS}).")
                options.workers = int(value)
            elif name in ("--ssl", "--ssl-cert", "--ssl-key"):
                options.ssl = True
                if name == "--ssl-cert":
                    options.ssl_cert = value
                elif name == "--ssl-key":
                    options.ssl_key = value
            elif name.startswith("--target-ssl"):
                options.target_ssl = True
                if name == "--target-ssl-trustfile":
                    options.target_trustfile = value
                elif name == "--target-ssl-servername":
                    options.target_servername = value
                elif name == "--target-ssl-noverify":
                    options.target_verify = False
        if len(operands) != 2:
            raise UsageError("Expected two addresses, LISTEN and TARGET; see --help.")
        options.listen = parse_endpoint(operands[0], udp=udp)
        options.target = parse_endpoint(operands[1], udp=udp)
    except GetoptError as exc:
        raise UsageError(f"{exc}.") from None
    except AddressError as exc:
        raise UsageError(f"{exc}.") from None
    if options.listen.udp != options.target.udp:
        raise UsageError("Both sides must be UDP, or neither.")
    if options.target.address is None:
        raise UsageError("TARGET needs a host: 127.0.0.1:PORT, [::1]:PORT or a Unix socket.")
    if (options.ssl or options.target_ssl) and options.listen.udp:
        raise UsageError("TLS works over stream sockets only, not UDP.")
    if (options.ssl_cert is None) != (options.ssl_key is None):
        raise UsageError("The --ssl-key and --ssl-cert options must be used together.")
    if options.send_proxy is not None and options.listen.udp:
        raise UsageError("--send-proxy works over stream sockets only, not UDP.")
    tcp_listen = not options.listen.udp and isinstance(options.listen.address, InetAddress | None)
    if options.workers is not None and not tcp_listen:
        # A bound UDP socket receives as a member of its group; a socket file has one listener.
        raise UsageError("--workers needs a TCP LISTEN address: workers share a TCP port, not UDP or a socket file.")
    return options


def _relay(options: _Options, report: Report, signals: SignalHandlers) -> None:
    """Listen, relay until a signal, close everything."""
    from enchufe.cli.serving import make_room_for, wake_on_signals
    from enchufe.net.listen import open_listeners
    from enchufe.net.loop import EventLoop
    from enchufe.net.resolve import SystemResolver

    assert options.listen is not None and options.target is not None
    listen = options.listen
    resolver = SystemResolver(numeric_only=options.numeric_only)
    access = _access(options)
    # Each TLS side adds the socket pair between its TLS and the tunnel.
    make_room_for(options.max_clients, _DESCRIPTORS_PER_CLIENT + 2 * options.ssl + 2 * options.target_ssl)
    listeners = open_listeners(
        listen.address,
        port=listen.port,
        transport="datagram" if listen.udp else "stream",
        family=options.family,
        resolver=resolver,
    )
    for listener in listeners:
        report.info(f"Listening on {listener.address}")
    contexts = _contexts(options, report)
    with EventLoop() as loop:
        relay = _make_relay(loop, listeners, options, report, resolver, access, contexts)
        signals.on_signal = loop.stop
        wake_on_signals(loop, signals)
        relay.start()
        try:
            if signals.pending is None:  # after on_signal is set: no signal is missed
                loop.run_forever()
        finally:
            signals.on_signal = None
            relay.close()


def _relay_in_workers(options: _Options, report: Report, count: int) -> int:
    """--workers: the parent reserves the TCP port and makes the TLS contexts once; each
    of ``count`` worker processes (:mod:`enchufe.serve.workers`) relays its own clients
    on its own loop, -m its own limit, until told to stop. The parent says each worker's
    start, end and restart with -v, and exits 128+signal, or 2 if workers keep ending."""
    from enchufe.address import InetAddress
    from enchufe.cli.serving import make_room_for, serve_in_worker
    from enchufe.errors import WorkersFailed
    from enchufe.net.listen import reserve_port
    from enchufe.net.loop import EventLoop
    from enchufe.net.resolve import SystemResolver
    from enchufe.serve.workers import run_workers

    assert options.listen is not None
    listen = options.listen
    assert listen.address is None or isinstance(listen.address, InetAddress), "_parse: TCP only"
    resolver = SystemResolver(numeric_only=options.numeric_only)
    access = _access(options)
    make_room_for(options.max_clients, _DESCRIPTORS_PER_CLIENT + 2 * options.ssl + 2 * options.target_ssl)
    with reserve_port(listen.address, port=listen.port, family=options.family, resolver=resolver) as reservation:
        for address in reservation.addresses:
            report.info(f"Listening on {address}")
        contexts = _contexts(options, report)

        def serve(worker: Worker) -> None:
            # A worker that cannot start (out of descriptors, say) says why in one line,
            # as the command's do, and ends to be restarted; the loop comes first, so
            # that no listener is left open when it cannot be made.
            try:
                with EventLoop() as loop:
                    listeners = reservation.open_listeners()
                    report.info(f"Worker {worker.index} (pid {worker.pid}) listening.")
                    relay = _make_relay(loop, listeners, options, report, resolver, access, contexts)
                    serve_in_worker(loop, relay, worker)
            except OSError as exc:  # NetworkError included
                report.error(f"worker {worker.index}: {exc}.")
                raise SystemExit(status.NETWORK_ERROR) from None

        def say(event: str) -> None:
            report.info(f"{event[:1].upper()}{event[1:]}.")

        try:
            signum = run_workers(count, serve, close_in_workers=[reservation], on_event=say)
        except WorkersFailed as exc:
            report.error(f"{exc}. QUITTING.")
            return status.OTHER_ERROR
    return 128 + signum


def _make_relay(
    loop: EventLoop,
    listeners: list[Listener],
    options: _Options,
    report: Report,
    resolver: SystemResolver,
    access: Callable[[Address | None], bool] | None,
    contexts: tuple[ssl.SSLContext | None, ssl.SSLContext | None],
) -> DatagramRelay | ProxyServer:
    """The stream or datagram relay, telling each client's start (-v) and end (-v, --json)."""
    import socket

    from enchufe.address import InetAddress
    from enchufe.cli.serving import describe_peer
    from enchufe.tools.relay import DatagramRelay, stream_relay

    assert options.target is not None
    target = options.target
    target_text = str(target)

    def joined(peer: Address | None) -> None:
        report.info(f"Connection from {describe_peer(peer)} to {target_text}.")

    def ended(end: ClientEnd) -> None:
        how = end.reason if end.error is None else f"{end.reason}: {end.error}"
        report.info(
            f"Connection from {describe_peer(end.peer)} closed ({how}): "
            f"{end.sent} bytes to {target_text}, {end.received} bytes back, {end.duration:.3f} s."
        )
        record = {
            "peer": describe_peer(end.peer),
            "target": target_text,
            "sent": end.sent,
            "received": end.received,
            "seconds": round(end.duration, 6),
            "end": end.reason,
            "error": end.error,
        }
        report.result(record, None)

    def refused(peer: Address | None, reason: str) -> None:
        report.info(f"New connection from {describe_peer(peer)} denied: {reason}")

    if target.udp:
        assert isinstance(target.address, InetAddress)
        host, port = target.address.host, target.address.port
        found = resolver.resolve(host, port, family=options.family, type=socket.SOCK_DGRAM, proto=0)
        return DatagramRelay(
            loop,
            listeners,
            found[0],
            max_clients=options.max_clients,
            access=access,
            idle_timeout=options.idle_timeout or DEFAULT_UDP_IDLE,
            on_open=joined,
            on_close=ended,
            on_refused=refused,
        )
    assert target.address is not None
    tls, upstream_tls = contexts

    def tls_failed(peer: Address | None, error: NetworkError) -> None:
        report.info(f"TLS failed for the connection from {describe_peer(peer)}: {error}")  # either side's

    return stream_relay(
        loop,
        listeners,
        target.address,
        max_connections=options.max_clients,
        access=access,
        idle_timeout=options.idle_timeout,
        connect_timeout=options.connect_timeout,
        resolver=resolver,
        family=options.family,
        on_accept=joined,
        on_refused=refused,
        on_close=ended,
        tls=tls,
        upstream_tls=upstream_tls,
        upstream_server_hostname=options.target_servername,
        on_tls_failed=tls_failed,
        send_proxy_header=options.send_proxy,
    )


def _contexts(options: _Options, report: Report) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The listening side's server context and the target side's client context, as asked."""
    tls = upstream_tls = None
    if options.ssl:
        from enchufe.net.tls import server_context

        if options.ssl_cert is not None:
            tls = server_context(options.ssl_cert, options.ssl_key)
        else:
            from enchufe.net.selfsigned import make_temporary_certificate

            with make_temporary_certificate() as temporary:
                tls = server_context(temporary.certfile, temporary.keyfile)
            report.info(f"Temporary certificate, SHA-1 fingerprint: {temporary.fingerprint}")
    if options.target_ssl:
        from enchufe.net.tls import client_context

        upstream_tls = client_context(verify=options.target_verify, cafile=options.target_trustfile)
    return tls, upstream_tls


def _access(options: _Options) -> Callable[[Address | None], bool] | None:
    """--allow/--deny as a predicate on peers (ncat's syntax); a Unix peer is let in."""
    from enchufe.cli.serving import access_predicate
    from enchufe.cli.usage import UsageError
    from enchufe.errors import AddressError

    try:
        return access_predicate(options.access, numeric_only=options.numeric_only)
    except AddressError as exc:
        raise UsageError(f"{exc}.") from None
