"""argv → :class:`Config`: ncat's parsing, defaults and cross-option rules.

Parsing is GNU getopt (:mod:`enchufe.cli.gnu_getopt`), and each option is
handled when it is read, as ncat does: a bad value is reported before a later
``-h``, and the last of two conflicting options wins. The rules between options are
checked once everything is read. Each rule reproduces an ncat message; every
violation raises :class:`UsageError`, which the command prints and turns into exit
status 2.
"""

from __future__ import annotations

import os

from enchufe.address import parse_port
from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
from enchufe.cli.options import ENCHUFE_NAMES, LONG_IDENTITY, LONG_OPTIONS, LONG_TO_SHORT, NOT_YET, SHORT_OPTIONS
from enchufe.cli.usage import UsageError
from enchufe.errors import AddressError
from enchufe.timespec import parse_duration, unit_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.net.proxy import Proxy
    from enchufe.net.sockets import Transport
    from enchufe.proto.proxy import Credentials
    from enchufe.serve.engine import Handler

__all__ = ["DEFAULT_PORT", "Config", "parse_args", "parse_time"]

DEFAULT_PORT = 31337
_INT_MAX = 2147483647  # ncat keeps times as an int of milliseconds
_NSOCK_ENGINES = frozenset({"epoll", "poll", "select"})
_MAX_HOPS = 8  # room in an IPv4 header's options
_MAX_WORKERS = 1024  # processes, not threads: more is a typing error, not a machine
_ACCESS_OPTIONS = frozenset({"--allow", "--deny", "--allowfile", "--denyfile"})
#: Each runs something for the connection; at most one may be given.
_EXEC_OPTIONS = ("-e", "-c", "--lua-exec", "--py-exec")
#: What the relay does, which a --py-exec handler does itself.
_RELAY_OPTIONS = ("-C", "-t", "-o", "-x", "-i", "-d", "-q", "--send-only", "--recv-only", "--no-shutdown")


class Config:
    """Everything one run of the command needs to know, validated; immutable.

    ``Config(listen=True, port=80)``: every field not given keeps the default below.
    ``family`` is 0 (``AF_UNSPEC``), ``AF_INET`` or ``AF_INET6``. (A plain class, not a
    dataclass or NamedTuple: importing those would cost the command's start-up more
    than parsing does.)
    """

    listen: bool = False
    host: str | None = None
    port: int = DEFAULT_PORT
    transport: Transport = "stream"
    unix: bool = False
    family: int = 0
    numeric_only: bool = False
    source_host: str | None = None
    source_port: int = 0
    connect_timeout: float = 10.0
    #: -w in listen mode: the first client must come within it (ncat ignores -w there).
    accept_timeout: float | None = None
    idle_timeout: float | None = None
    delay: float | None = None
    quit_after_eof: float | None = None
    keep_open: bool = False
    #: -e/-c/--lua-exec: the program run for the connection, stdin and stdout its data.
    exec_argv: tuple[str, ...] | None = None
    #: --py-exec: the handler called with the connection, loaded at start.
    py_handler: Handler | None = None
    #: ncat's --broker (every client's data to the others) and --chat (the same,
    #: framed with <userN> prefixes and announcements); both imply many clients.
    broker: bool = False
    chat: bool = False
    #: enchufe's own: --client-labels (-l -k: "[peer] " before each client line on
    #: stdout), --full-lines (chat: a prefix per line), --host-sees-room (broker, chat:
    #: stdout receives what the room delivers).
    client_labels: bool = False
    chat_lines: bool = False
    host_sees_room: bool = False
    verbosity: int = 0
    crlf: bool = False
    telnet: bool = False
    send_only: bool = False
    recv_only: bool = False
    no_shutdown: bool = False
    zero_io: bool = False
    output: str | None = None
    hex_dump: str | None = None
    append_output: bool = False
    max_conns: int | None = None
    show_help: bool = False
    show_version: bool = False
    nsock_engine: str | None = None
    source_route: tuple[str, ...] = ()
    source_route_pointer: int = 4
    #: ``--allow``/``--deny``/``--allowfile``/``--denyfile`` in command-line order, as
    #: ``("allow", "10.0.0.0/8")``, ``("denyfile", PATH)``.
    access: tuple[tuple[str, str], ...] = ()
    #: --ssl, or any --ssl-* option (each implies it).
    ssl: bool = False
    #: --ssl-cert and --ssl-key: the server's certificate (listen mode) or the client's.
    ssl_cert: str | None = None
    ssl_key: str | None = None
    #: --ssl-verify, or --ssl-trustfile (which implies it): refuse a server whose
    #: certificate does not verify; no effect in listen mode, as in ncat.
    ssl_verify: bool = False
    ssl_trustfile: str | None = None
    ssl_ciphers: str | None = None
    ssl_servername: str | None = None
    #: --ssl-alpn's comma-separated list: offered by a client, chosen from by a listener.
    ssl_alpn: tuple[str, ...] = ()
    #: --proxy (with --proxy-type and --proxy-auth, or NCAT_PROXY_AUTH, for the hops
    #: that do not say their own): the chain to connect through, first hop first.
    proxy: tuple[Proxy, ...] = ()
    proxy_dns: str = "remote"
    #: -l --proxy-type: the proxy server to run ("http", "socks4", "socks5"), and the
    #: credentials its clients must give (--proxy-auth).
    proxy_server: str | None = None
    proxy_server_auth: Credentials | None = None
    #: -l --proxy-protocol: the trusted balancers (``--allow``'s syntax), whose
    #: connections start with a PROXY header naming the client.
    proxy_protocol: str | None = None
    #: --workers: serve in that many processes, each listening in the port's
    #: SO_REUSEPORT group (serve/workers.py); -m is each worker's own limit.
    workers: int | None = None

    def __init__(self, **fields: object) -> None:
        unknown = fields.keys() - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown Config fields: {', '.join(sorted(unknown))}")
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        changed = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"Config({changed})"


_FIELDS = tuple(Config.__annotations__)


def parse_args(argv: list[str]) -> Config:
    """Parse ncat's command line (without the program name)."""
    values: dict[str, object] = {}
    operands: list[str] = []
    access: list[tuple[str, str]] = []
    verbosity = 0
    try:
        posixly_correct = "POSIXLY_CORRECT" in os.environ
        for name, value in gnu_getopt(
            argv,
            SHORT_OPTIONS,
            LONG_OPTIONS,
            identity=LONG_IDENTITY,
            extensions=ENCHUFE_NAMES,
            posixly_correct=posixly_correct,
        ):
            if not name:
                operands.append(value)
                continue
            name = LONG_TO_SHORT.get(name, name)
            if name == "-h":
                return Config(show_help=True)
            if name == "--version":
                return Config(show_version=True)
            if name == "-v":
                verbosity += 1
                continue
            if name in _ACCESS_OPTIONS:  # allow/deny lists accumulate, in order
                access.append((name[2:], value))
                continue
            parsed = _parse_value(name, value)
            if name == "-g":  # hops accumulate over several -g
                previous = values.get(name, ())
                assert isinstance(previous, tuple) and isinstance(parsed, tuple)
                parsed = previous + parsed
                if len(parsed) > _MAX_HOPS:
                    raise UsageError("Sorry, you gave too many source route hops.")
            values.pop(name, None)  # the dict's order is the order of last appearance
            values[name] = parsed
    except GetoptError as exc:
        raise UsageError(str(exc), getopt_message=True) from None
    return _build(values, operands, verbosity, tuple(access))


def _parse_value(name: str, value: str) -> object:
    """Check one option's value as ncat does when it reads it."""
    if name in NOT_YET:
        raise UsageError(f"{name} is not supported yet.")
    if name in {"-w", "-i"}:
        return parse_time(value, f"{name} timeout")
    if name == "--workers":
        return _parse_workers(value)
    if name == "-d":
        return parse_time(value, "-d delay")
    if name == "-q":
        return _parse_quit_delay(value)
    if name == "-p":
        return _parse_source_port(value)
    if name == "-m":
        return _parse_count(value)
    if name == "-g":
        return tuple(hop for hop in value.split(",") if hop)
    if name == "-G":
        pointer = _leading_int(value)
        if pointer < 4 or pointer > 28 or pointer % 4:
            raise UsageError(f"Invalid source-route hop pointer {pointer}.")
        return pointer
    if name == "--test":
        raise UsageError("--test is ncat's own test switch; enchufe has no use for it.")
    if name == "--nsock-engine" and value not in _NSOCK_ENGINES:
        raise UsageError(f"Unknown or non-available engine: {value}.")
    return value


def _build(
    values: dict[str, object], operands: list[str], verbosity: int, access: tuple[tuple[str, str], ...]
) -> Config:
    def given(name: str) -> bool:
        return name in values

    def text(name: str) -> str:
        value = values[name]
        assert isinstance(value, str)
        return value

    def hops(name: str) -> tuple[str, ...]:
        value = values[name]
        assert isinstance(value, tuple)
        return value

    def number(name: str) -> float:
        value = values[name]
        assert isinstance(value, (int, float))
        return value

    chat = given("--chat") or given("--talk")
    broker = chat or given("--broker")
    # --broker implies -l; --chat implies --broker but not -l (ncat's rule).
    listen = given("-l") or given("--broker")
    unix = given("-U")
    transport: Transport = "stream"
    if given("--sctp") or given("-u"):
        transport = "sctp" if _last(values, "--sctp", "-u") == "--sctp" else "datagram"
    ip_version = (6 if _last(values, "-4", "-6") == "-6" else 4) if given("-4") or given("-6") else None
    family = 0
    if ip_version is not None:
        import socket  # only now: --version and -h must not pay for it

        family = socket.AF_INET6 if ip_version == 6 else socket.AF_INET

    if given("-z") and listen:
        raise UsageError("Services designed for LISTENING can't be used with -z")
    if given("-z") and given("-t"):
        raise UsageError("Invalid option combination: -z and -t.")
    if listen and given("-s"):
        raise UsageError(
            "-l and -s are incompatible.  Specify the address and port to bind to like you would a host to connect to."
        )
    if unix and given("-p"):
        raise UsageError("Specifying source port when using Unix domain sockets doesn't make sense.")
    if given("-k") and not listen and transport != "stream":
        raise UsageError("Invalid option combination: `--keep-open' with non-TCP protocol.")
    exec_options = [name for name in _EXEC_OPTIONS if given(name)]
    if len(exec_options) > 1:
        # ncat's words for its own three; the list grows only when --py-exec is among them.
        listed = "--exec, --sh-exec, --lua-exec, and --py-exec" if given("--py-exec") else None
        raise UsageError(f"Only one of {listed or '--exec, --sh-exec, and --lua-exec'} is allowed.")
    exec_option = exec_options[0] if exec_options else None
    if exec_option is not None and given("-z"):
        raise UsageError("Command execution can't be done along with option -z.")
    if exec_option is not None and broker:
        # ncat names -e whichever of its exec options was given.
        raise UsageError(f"Invalid option combination: --broker and {'--py-exec' if given('--py-exec') else '-e'}.")
    if exec_option == "-c" and listen and not os.access("/bin/sh", os.X_OK):
        raise UsageError("/bin/sh is not executable, so `-c' won't work.")  # ncat checks in listen mode only
    if given("--py-exec"):
        for option in _RELAY_OPTIONS:
            if given(option):
                raise UsageError(f"{option} has no effect with --py-exec: the handler has the connection.")
    if chat and not listen and operands:
        raise UsageError("Invalid option combination: `--chat' with connect.")
    if (given("-k") or broker) and listen and transport == "sctp":
        raise UsageError("-k, --broker and --chat are not supported yet over SCTP.")
    if given("--client-labels") and (broker or not (listen and given("-k"))):
        raise UsageError("--client-labels works in -l -k only (not with --broker or --chat).")
    if given("--client-labels") and exec_option is not None:
        raise UsageError(f"Invalid option combination: --client-labels and {exec_option}.")
    if given("--full-lines") and not (chat and listen):
        raise UsageError("--full-lines works with --chat only.")
    if given("--host-sees-room") and not (broker and listen):
        raise UsageError("--host-sees-room works with --broker or --chat only.")
    if access and not listen:
        raise UsageError("Invalid option combination: allow/deny with connect.")
    if access and transport == "sctp":
        raise UsageError("--allow and --deny are not supported yet over SCTP.")
    if given("-m") and not listen:
        raise UsageError("Invalid option combination: `--max-conns' with connect.")
    if given("-g") and not listen and ip_version != 4:
        raise UsageError("Sorry, -g can only currently be used with IPv4.")
    ssl = any(name == "--ssl" or name.startswith("--ssl-") for name in values)
    if ssl and unix:
        raise UsageError("SSL option not supported when using Unix domain sockets.")
    if given("--ssl-cert") != given("--ssl-key"):
        raise UsageError("The --ssl-key and --ssl-cert options must be used together.")
    if ssl and transport == "datagram" and listen and (given("-k") or broker):
        raise UsageError("--udp --ssl (DTLS) with -k, --broker or --chat is not supported yet.")
    proxy, proxy_server, proxy_server_auth = _proxy_options(values, listen, unix, transport, exec_option, broker)
    if given("--proxy-protocol") and (not listen or transport != "stream" or given("--proxy-type")):
        raise UsageError("--proxy-protocol works with -l, -l -k, --broker and --chat over TCP or Unix sockets.")
    if given("--workers"):
        _check_workers(values, listen=listen, exec_option=exec_option, proxy_server=proxy_server)

    source_port = 0
    host: str | None = None
    port = DEFAULT_PORT
    if listen:
        port_option = int(number("-p")) if given("-p") else None
        # A proxy server listens on its protocol's port by default (3128 for HTTP, as ncat).
        default_port = {"http": 3128, "socks4": 1080, "socks5": 1080}.get(str(values.get("--proxy-type")), DEFAULT_PORT)
        host, port = _listen_operands(operands, port_option, unix, default_port)
    else:
        if given("-p"):
            source_port = int(number("-p"))
        if unix and not operands:
            raise UsageError("You have to specify path to a socket to connect to.")
        if not operands or (not unix and _is_port_spec(operands[0])):
            raise UsageError("You must specify a host to connect to.")
        if len(operands) > 2:
            raise UsageError(f"Got more than one port specification: {' '.join(operands[1:])}.")
        host = operands[0]
        if len(operands) == 2 and not unix:
            port = _parse_port(operands[1])

    return Config(
        listen=listen,
        host=host,
        port=port,
        transport=transport,
        unix=unix,
        family=family,
        numeric_only=given("-n"),
        # ncat binds -s for a Unix datagram client only (the server's address to
        # answer to); for a Unix stream it has no effect.
        source_host=text("-s") if given("-s") else None,
        source_port=source_port,
        connect_timeout=number("-w") if given("-w") else 10.0,
        accept_timeout=number("-w") if given("-w") and listen else None,
        idle_timeout=number("-i") if given("-i") else None,
        delay=number("-d") if given("-d") else None,
        quit_after_eof=number("-q") if given("-q") else None,
        keep_open=given("-k"),
        exec_argv=_exec_argv(exec_option, text(exec_option)) if exec_option not in (None, "--py-exec") else None,
        py_handler=_py_handler(text("--py-exec"), workers=given("--workers")) if given("--py-exec") else None,
        broker=broker and listen,
        chat=chat and listen,
        client_labels=given("--client-labels"),
        chat_lines=given("--full-lines"),
        host_sees_room=given("--host-sees-room"),
        verbosity=verbosity,
        crlf=given("-C"),
        telnet=given("-t"),
        send_only=given("--send-only"),
        recv_only=given("--recv-only"),
        no_shutdown=given("--no-shutdown"),
        zero_io=given("-z"),
        output=text("-o") if given("-o") else None,
        hex_dump=text("-x") if given("-x") else None,
        append_output=given("--append-output"),
        max_conns=int(number("-m")) if given("-m") else None,
        nsock_engine=text("--nsock-engine") if given("--nsock-engine") else None,
        source_route=hops("-g") if given("-g") and not listen else (),
        access=access,
        source_route_pointer=int(number("-G")) if given("-G") else 4,
        ssl=ssl,
        ssl_cert=text("--ssl-cert") if given("--ssl-cert") else None,
        ssl_key=text("--ssl-key") if given("--ssl-key") else None,
        ssl_verify=given("--ssl-verify") or given("--ssl-trustfile"),
        ssl_trustfile=text("--ssl-trustfile") if given("--ssl-trustfile") else None,
        ssl_ciphers=text("--ssl-ciphers") if given("--ssl-ciphers") else None,
        ssl_servername=text("--ssl-servername") if given("--ssl-servername") else None,
        ssl_alpn=tuple(name for name in text("--ssl-alpn").split(",") if name) if given("--ssl-alpn") else (),
        proxy=proxy,
        proxy_dns=text("--proxy-dns") if given("--proxy-dns") else "remote",
        proxy_server=proxy_server,
        proxy_protocol=text("--proxy-protocol") if given("--proxy-protocol") else None,
        proxy_server_auth=proxy_server_auth,
        workers=int(number("--workers")) if given("--workers") else None,
    )


def _check_workers(
    values: dict[str, object], *, listen: bool, exec_option: str | None, proxy_server: str | None
) -> None:
    """--workers runs servers whose clients are independent of each other in several
    processes: -l -k with a program or handler per connection, or a proxy server.
    Whatever shares one stdio, one room, one client or one socket file cannot."""
    if not listen:
        raise UsageError("--workers works in listen mode only.")
    for option in ("--broker", "--chat", "--talk", "-u", "--sctp", "-U", "-o", "-x", "-w"):
        if option in values:
            # -u: a bound UDP socket is a member that receives; -U: a socket file has
            # one listener; -o/-x: one log, many writers; -w: the first client is one
            # worker's.
            raise UsageError(f"Invalid option combination: --workers and {option}.")
    if proxy_server is not None:
        return
    if "-k" not in values:
        raise UsageError("--workers needs -k (or --proxy-type): a listener without it serves one client.")
    if exec_option is None:
        raise UsageError(
            "--workers needs -e, -c, --lua-exec or --py-exec with -k:"
            " the clients of -k alone share one stdin and stdout."
        )


def _proxy_options(
    values: dict[str, object],
    listen: bool,
    unix: bool,
    transport: Transport,
    exec_option: str | None,
    broker: bool,
) -> tuple[tuple[Proxy, ...], str | None, Credentials | None]:
    """Check the --proxy* options as ncat does; return the chain to connect through, or
    the proxy server to run and its credentials."""
    proxy_type = values.get("--proxy-type")
    auth = values.get("--proxy-auth")
    assert proxy_type is None or isinstance(proxy_type, str)
    assert auth is None or isinstance(auth, str)
    if "--proxy-dns" in values and values["--proxy-dns"] not in ("local", "remote", "both", "none"):
        raise UsageError("Invalid proxy DNS type.")
    if "--proxy" in values and listen:
        raise UsageError("Invalid option combination: --proxy and -l.")
    if ("--proxy" in values or (listen and proxy_type is not None)) and unix:
        raise UsageError("Proxy option not supported when using Unix domain sockets.")
    if listen:
        if proxy_type is None:
            return (), None, None
        if proxy_type not in ("http", "socks4", "socks5"):
            raise UsageError(
                f'Invalid proxy type "{proxy_type}"; the proxy server supports "http", "socks4", "socks5".'
            )
        if "-t" in values:
            raise UsageError("Invalid option combination: --telnet has no effect with --proxy-type.")
        clash = exec_option or ("--broker" if broker else None) or ("--udp" if transport != "stream" else None)
        if clash is not None:
            raise UsageError(f"Invalid option combination: --proxy-type and {clash}.")
        from enchufe.proto.proxy import Credentials

        return (), proxy_type, None if auth is None else Credentials.parse(auth)
    if "--proxy" not in values:
        if proxy_type is not None:
            raise UsageError("Proxy type (--proxy-type) specified without proxy address (--proxy).")
        return (), None, None
    if transport != "stream":
        raise UsageError(f"Invalid option combination: --proxy and {'--udp' if transport == 'datagram' else '--sctp'}.")
    from enchufe.errors import AddressError
    from enchufe.net.proxy import parse_proxies
    from enchufe.proto.proxy import Credentials

    if auth is None:
        auth = os.environ.get("NCAT_PROXY_AUTH")
    text = values["--proxy"]
    assert isinstance(text, str)
    try:
        chain = parse_proxies(
            text, kind=proxy_type or "http", credentials=None if auth is None else Credentials.parse(auth)
        )
    except AddressError as exc:
        raise UsageError(str(exc)) from None
    return chain, None, None


def _exec_argv(option: str, command: str) -> tuple[str, ...]:
    """-e splits as ncat's cmdline_split does (no shell); -c hands the text to /bin/sh;
    --lua-exec runs enchufe's Lua runner, once the script is known to load."""
    if option == "-c":
        return ("/bin/sh", "-c", command)
    if option == "--lua-exec":
        from enchufe.cli import lua_exec

        problem = lua_exec.script_problem(command)
        if problem is not None:
            raise UsageError(f"{problem}.")
        return lua_exec.runner_argv(command)
    from enchufe.execspec import split_command

    argv = tuple(split_command(command))
    if not argv:
        raise UsageError("Nothing to execute: the -e command is empty.")  # ncat fails later: exec: Bad address
    return argv


def _py_handler(spec: str, *, workers: bool) -> Handler:
    """Load --py-exec's handler now: a bad one costs no connection. With --workers, a
    module that started a thread as it loaded is refused here: the workers are forked,
    and a fork beside a running thread can leave its locks held for ever in the child
    (:func:`enchufe.serve.workers.run_workers` refuses it)."""
    from enchufe.serve.pyexec import load_handler

    try:
        handler = load_handler(spec)
    except ImportError as exc:
        raise UsageError(f"Error loading the Python handler: {exc}.") from None
    if workers:
        import threading

        if threading.active_count() > 1:
            others = [thread for thread in threading.enumerate() if thread is not threading.main_thread()]
            started = ", ".join(thread.name for thread in others)
            raise UsageError(
                f"--workers forks its workers, and the Python handler started a thread as it loaded ({started}):"
                " start it in the handler's first call instead."
            )
    return handler


def _last(values: dict[str, object], *names: str) -> str:
    """Of the given options, the one that came last on the command line."""
    order = list(values)
    return max((name for name in names if name in values), key=order.index)


def _is_port_spec(operand: str) -> bool:
    """ncat's test for a first operand that is a port, not a host: nothing but decimal
    digits, whatever their number (C's ``strspn``, so the empty string too). A long
    number is a bad port, never the IPv4 address ``inet_aton`` would make of it
    (``123456`` is 0.1.226.64); in connect mode it leaves no host at all."""
    return all(char in "0123456789" for char in operand)


def _listen_operands(
    operands: list[str], port_option: int | None, unix: bool, default_port: int
) -> tuple[str | None, int]:
    """ncat's listen operands: none, ``PORT``, ``HOST`` or ``HOST PORT``; ``-p PORT``
    counts as a port specification too, and every operand after the host is one."""
    if unix:
        if not operands:
            raise UsageError("You have to specify path to a socket to listen on.")
        if len(operands) > 1:
            raise UsageError(f'Invalid port number "{operands[1]}".')
        return operands[0], DEFAULT_PORT
    host = None
    specs = [str(port_option)] if port_option is not None else []
    if operands and not _is_port_spec(operands[0]):
        host, operands = operands[0], operands[1:]
    specs += operands
    if len(specs) > 1:
        raise UsageError(f"Got more than one port specification: {' '.join(specs)}.")
    return host, _parse_port(specs[0]) if specs else default_port


def _parse_port(text: str) -> int:
    """A port operand. ncat reads it with ``strtol``, so leading zeros are allowed
    (``000080`` is 80)."""
    try:
        return parse_port(text.lstrip("0") or text[-1:])
    except AddressError:
        raise UsageError(f'Invalid port number "{text}".') from None


def _parse_source_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f'Invalid source port number "{text}".')
    try:
        return parse_port(text)
    except AddressError:
        raise UsageError(f"Invalid source port {text}.") from None


def _leading_int(text: str) -> int:
    """C's atoi: the leading decimal digits (after an optional sign), 0 if none."""
    body = text.lstrip()
    sign = -1 if body[:1] == "-" else 1
    body = body[1:] if body[:1] in ("+", "-") else body
    digits = ""
    for char in body:
        if not (char.isascii() and char.isdigit()):
            break
        digits += char
    return sign * int(digits) if digits else 0


def _parse_workers(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAX_WORKERS:
        raise UsageError(f"Invalid number of workers: {text} (from 1 to {_MAX_WORKERS}).")
    return int(text)


def _parse_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"Invalid number of maximum connections: {text}")
    return int(text)


def parse_time(text: str, what: str) -> float:
    """ncat's parse_timespec: whole milliseconds, more than 0 and at most INT_MAX; and a
    unit-less value of 100 s or more is taken for a forgotten "ms"."""
    try:
        milliseconds = int(parse_duration(text) * 1000)
    except (AddressError, OverflowError):
        milliseconds = -1
    if not 0 < milliseconds <= _INT_MAX:
        raise UsageError(f'Invalid {what} "{text}" (must be greater than 0 and less than {_INT_MAX // 1000}s).')
    if milliseconds >= 100_000 and not unit_of(text):
        raise UsageError(
            f"Since April 2010, the default unit for {what} is seconds, so your time of "
            f'"{text}" is {milliseconds / 60000:.1f} minutes. Use "{text}ms" for {text} milliseconds.'
        )
    return milliseconds / 1000


def _parse_quit_delay(text: str) -> float:
    if text.startswith("-"):
        try:
            parse_duration(text[1:])
        except AddressError:
            raise UsageError(f'Invalid -q timeout "{text}".') from None
        return -1.0
    # ncat refuses a zero -q, but netcat users type "-q 0" out of habit, meaning "quit
    # as soon as stdin ends": accept it in any unit.
    try:
        at_once = parse_duration(text) == 0
    except AddressError:
        at_once = False  # not a time at all: parse_time says so in ncat's words
    if at_once:
        return 0.0
    return parse_time(text, "-q timeout")
