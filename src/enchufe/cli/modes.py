"""The command's modes: connect, listen and zero-I/O, each a function of a Config.

Each mode opens its socket with :mod:`enchufe.net` and then hands stdin/stdout and
the connection to one :class:`~enchufe.net.relay.Relay`, configured from the
options. Errors are not caught here: :mod:`enchufe.cli.main` turns them into
messages and exit statuses in one place.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from enchufe.address import Address, InetAddress, UnixAddress
from enchufe.cli import status
from enchufe.cli.config import Config
from enchufe.cli.output import Messages, SessionLog
from enchufe.cli.serving import access_predicate, describe_peer, make_room_for, serve_in_worker, wake_on_signals
from enchufe.cli.signals import SignalHandlers
from enchufe.errors import CertificateError, ConnectTimeout, NetworkError, TimedOut
from enchufe.net.connection import Connection
from enchufe.net.resolve import SystemResolver

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from typing import NoReturn

    from enchufe.net.dtls import DtlsContext
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop
    from enchufe.net.process import ChildProcess
    from enchufe.net.relay import RelayResult
    from enchufe.proto.proxy import ProxyNegotiator
    from enchufe.serve.datagram_server import DatagramServer
    from enchufe.serve.engine import Handler, Server
    from enchufe.serve.keep_open import KeepOpen
    from enchufe.serve.policy import ProxyProtocol
    from enchufe.serve.proxy_server import ProxyServer
    from enchufe.serve.workers import Worker

__all__ = ["Environment", "run_connect", "run_listen"]

#: Seconds a handler that ignores its closed connection gets before the command exits.
_ABANDON_AFTER = 1.0
#: The key of --proxy-type http --proxy-auth's Digest nonces: made once per command,
#: before any --workers fork, so that every worker takes the nonces of the others.
_NONCE_SECRET = os.urandom(32)
#: ncat's -z over UDP: how long silence must last to call the port open.
_UDP_PROBE_WAIT = 2.0


class Environment:
    """The command's view of the process: its stdio, replaceable in tests, and its
    signal handlers, which a mode installs and its waits let interrupt them."""

    __slots__ = ("messages", "signals", "stdin_fd", "stdout_fd")

    def __init__(self, stdin_fd: int, stdout_fd: int, messages: Messages) -> None:
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.messages = messages
        self.signals = SignalHandlers()


def run_connect(config: Config, env: Environment) -> int:
    """Connect mode. A Unix datagram client has a temporary socket file to remove, so
    a termination signal unwinds it first; the command then dies by the signal, as
    any other client does at once (the signal module costs start-up time)."""
    logs = _open_logs(config)
    try:
        if config.unix and config.transport == "datagram":
            with env.signals:
                return _connect(config, env, logs)
        return _connect(config, env, logs)
    finally:
        _close_logs(logs)


def run_listen(config: Config, env: Environment) -> int:
    """Listen mode. SIGINT, SIGTERM, SIGHUP and SIGQUIT end it with 128+signal (see
    :mod:`enchufe.cli.signals`)."""
    _import_what_the_relay_needs(config)
    if config.workers is not None:
        return _listen_in_workers(config, env, config.workers)
    logs = _open_logs(config)
    try:
        with env.signals:
            return _listen(config, env, logs)
    finally:
        _close_logs(logs)


def _import_what_the_relay_needs(config: Config) -> None:
    """Import now what the relay would import later: a signal raised in the middle of an
    import leaves the import's open files to the garbage collector."""
    import enchufe.net.fdstream
    import enchufe.net.listen
    import enchufe.net.relay

    if config.crlf:
        import enchufe.proto.crlf
    if config.telnet:
        import enchufe.proto.telnet
    if config.hex_dump is not None:
        import enchufe.hexdump
    if config.exec_argv is not None:
        import enchufe.execspec
        import enchufe.net.process  # noqa: F401


def _open_logs(config: Config) -> list[SessionLog]:
    """The -o and -x files, opened before any connection, as ncat does: a path that
    cannot be written costs no connection."""
    logs: list[SessionLog] = []
    try:
        for path, hex_dump in ((config.output, False), (config.hex_dump, True)):
            if path is not None:
                logs.append(SessionLog(path, hex_dump=hex_dump, append=config.append_output))
    except OSError:
        _close_logs(logs)
        raise
    return logs


def _close_logs(logs: list[SessionLog]) -> None:
    for log in logs:
        log.close()


def _connect(config: Config, env: Environment, logs: list[SessionLog]) -> int:
    messages = env.messages
    assert config.host is not None
    target: Address = UnixAddress(config.host) if config.unix else InetAddress(config.host, config.port)

    def attempt_failed(address: Address, error: NetworkError) -> None:
        messages.info(f"Connection to {_host_of(address)} failed: {error}.")
        messages.info("Trying next address...")

    source = config.source_host
    unix_source = config.unix and source is not None
    if unix_source and config.transport != "datagram":
        messages.info("Specifying source socket for other than DATAGRAM Unix domain sockets have no effect.")
        source = None
    elif unix_source:
        messages.info(f"[{source}] used as source DGRAM Unix domain socket.")
    tls: ssl.SSLContext | DtlsContext | bool = False
    if config.ssl:
        from enchufe.cli.tls_setup import check_server, client_dtls, client_tls

        tls = client_dtls(config) if config.transport == "datagram" else client_tls(config)
    if config.proxy and config.proxy_dns == "remote":
        from enchufe.net.proxy import is_address

        if not is_address(config.host):
            messages.info(f"Host {config.host} will be resolved by the proxy.")
    started = time.monotonic()
    try:
        conn = _open_connection(config, target, source, attempt_failed, tls, messages)
    except CertificateError as exc:
        from enchufe.cli.tls_setup import describe_certificate

        describe_certificate(exc.certificate, messages)  # ncat's -v details, where ssl keeps the certificate
        raise
    with conn:
        if tls:
            check_server(conn, config, messages)
        else:
            messages.info(f"Connected to {conn.peer or target}.")
        if config.zero_io:
            return _zero_io(config, conn, messages, started)
        result = _relay(config, conn, env, logs, listening=False)
        if tls:
            from enchufe.cli.tls_setup import report_truncation

            report_truncation(conn, messages)
    if config.py_handler is not None:
        return status.SUCCESS  # the handler moved the data: there is no relay's count to tell
    messages.info(
        f"{result.bytes_sent} bytes sent, {result.bytes_received} bytes received "
        f"in {time.monotonic() - started:.2f} seconds."
    )
    if config.unix and source is not None:
        messages.info(f"Deleting source DGRAM Unix domain socket. [{source}]")
    return status.SUCCESS


def _open_connection(
    config: Config,
    target: Address,
    source: str | None,
    attempt_failed: Callable[[Address, NetworkError], None],
    tls: ssl.SSLContext | DtlsContext | bool,
    messages: Messages,
) -> Connection:
    from enchufe.net.connect import open_connection

    return open_connection(
        target,
        transport=config.transport,
        family=config.family,
        timeout=config.connect_timeout,
        source_host=source,
        source_port=config.source_port,
        resolver=SystemResolver(numeric_only=config.numeric_only),
        on_attempt_failed=attempt_failed,
        source_route=config.source_route,
        source_route_pointer=config.source_route_pointer,
        proxy=config.proxy or None,
        proxy_dns=config.proxy_dns,
        on_proxy_progress=messages.info,
        tls=tls,
        server_hostname=config.ssl_servername or config.host,
    )


def _listen(config: Config, env: Environment, logs: list[SessionLog]) -> int:
    from enchufe.net.listen import NCAT_BACKLOG, close_all, open_listeners

    messages = env.messages
    address: Address | None = None
    if config.unix:
        assert config.host is not None
        address = UnixAddress(config.host)
    elif config.host is not None:
        address = InetAddress(config.host, config.port)
    if config.max_conns is not None and not (config.keep_open or config.broker or config.proxy_server):
        # The proxy server counts its clients under -m; ncat's ignores -m there and says so.
        messages.error("Warning: Maximum connections ignored, since it does not take effect without -k or --broker.")
    access = _access_list(config, messages)
    balancers = _proxy_protocol(config, messages)
    tls = None
    dtls = None
    if config.ssl and config.transport == "datagram":
        from enchufe.cli.tls_setup import server_dtls

        dtls = server_dtls(config, messages)
    elif config.ssl:
        from enchufe.cli.tls_setup import server_tls

        tls = server_tls(config, messages)
    listeners = open_listeners(
        address,
        port=config.port,
        transport=config.transport,
        family=config.family,
        backlog=NCAT_BACKLOG,
        resolver=SystemResolver(numeric_only=config.numeric_only),
    )
    try:
        for listener in listeners:
            messages.info(f"Listening on {listener.address}")
        if config.proxy_server is not None:
            return _proxy_server(config, env, listeners, access, tls)
        if config.keep_open or config.broker:
            return _keep_open(config, env, listeners, access, logs, tls, balancers)
        deadline = None if config.accept_timeout is None else time.monotonic() + config.accept_timeout
        if dtls is not None:
            conn = _accept_dtls(config, env, listeners, access, dtls, deadline)
        else:
            conn = _accept_one(config, env, listeners, access, deadline, balancers)
    finally:
        close_all(listeners)
    with conn:
        if config.max_conns == 0:
            _refuse_every_connection(conn, env)
        messages.info(f"Connection from {describe_peer(conn.peer, proxied_by=conn.proxied_by)}.")
        if tls is not None:
            from enchufe.cli.tls_setup import accept_tls

            secured = accept_tls(conn, tls, messages)
            if secured is None:
                return status.NETWORK_ERROR  # ncat's single-shot listener ends with its client
            conn = secured
        elif dtls is not None:
            from enchufe.cli.tls_setup import finish_dtls

            if finish_dtls(conn, messages) is None:
                return status.NETWORK_ERROR
        with conn:
            _relay(config, conn, env, logs, listening=True)
            if tls is not None:
                from enchufe.cli.tls_setup import report_truncation

                report_truncation(conn, messages)
    return status.SUCCESS


def _listen_in_workers(config: Config, env: Environment, count: int) -> int:
    """--workers: the parent reserves the port (a port in use fails here, once) and
    supervises ``count`` worker processes (:mod:`enchufe.serve.workers`), each with its
    own listeners in the port's ``SO_REUSEPORT`` group serving as the command does
    without --workers: -m is each worker's limit, the -v lines of its clients are
    ncat's; with -v the parent says each worker's start, end and restart, and each
    worker once that it listens (until one does, the port refuses clients). A stop
    signal to the parent stops every worker as it would stop the single process, and
    the parent exits 128+signal after reaping them; workers that keep ending make it
    give up with status 2 (:class:`~enchufe.errors.WorkersFailed`)."""
    from enchufe.net.listen import NCAT_BACKLOG, reserve_port
    from enchufe.serve.workers import run_workers

    messages = env.messages
    access = _access_list(config, messages)
    balancers = _proxy_protocol(config, messages)
    tls = None
    if config.ssl:
        from enchufe.cli.tls_setup import server_tls

        tls = server_tls(config, messages)
    address = None if config.host is None else InetAddress(config.host, config.port)
    resolver = SystemResolver(numeric_only=config.numeric_only)
    with reserve_port(address, port=config.port, family=config.family, resolver=resolver) as reservation:
        for reserved in reservation.addresses:
            messages.info(f"Listening on {reserved}")

        def serve(worker: Worker) -> None:
            try:
                listeners = reservation.open_listeners(backlog=NCAT_BACKLOG)
                messages.info(f"Worker {worker.index} (pid {worker.pid}) listening.")
                if config.proxy_server is not None:
                    _proxy_server(config, env, listeners, access, tls, worker=worker)
                else:
                    _keep_open(config, env, listeners, access, [], tls, balancers, worker=worker)
            except (NetworkError, OSError) as exc:
                messages.error(f"worker {worker.index}: {exc}.")
                raise SystemExit(status.NETWORK_ERROR) from None

        def say(event: str) -> None:
            messages.info(f"{event[:1].upper()}{event[1:]}.")

        signum = run_workers(count, serve, close_in_workers=[reservation], on_event=say)
    return 128 + signum


def _accept_one(
    config: Config,
    env: Environment,
    listeners: list[Listener],
    access: Callable[[Address | None], bool] | None,
    deadline: float | None,
    balancers: ProxyProtocol | None,
) -> Connection:
    """A single-shot listener's client: the first one admitted. Behind a balancer
    (--proxy-protocol), the client its PROXY header names, judged by --allow/--deny: the
    header is read here, before anything else of the connection."""
    from enchufe.net.listen import wait_for_peer

    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            with env.signals.interruptible():
                listener = wait_for_peer(listeners, timeout=remaining, wake_fd=env.signals.wake_fd)
        except TimedOut:
            raise ConnectTimeout(f"no client within {config.accept_timeout} s") from None
        # A denied client does not use up a single-shot listener (ncat's does, and
        # then runs on with nothing listening). A UDP peer is judged by its first
        # datagram, which is dropped if it is denied.
        if listener.is_datagram and access is not None and not access(listener.next_sender()):
            listener.drop_next()
        else:
            conn = listener.accept()
            if balancers is None:
                reason = None if access is None or access(conn.peer) else "not allowed"
            else:
                from enchufe.serve.policy import DEFAULT_HANDSHAKE_TIMEOUT, introduce

                # -w bounds the wait for a client, and a client is the one its header
                # names: a balancer that connects and stalls does not stretch it.
                timeout = DEFAULT_HANDSHAKE_TIMEOUT
                if deadline is not None:
                    timeout = min(timeout, max(0.0, round(deadline - time.monotonic(), 3)))  # ms: said in -v
                try:
                    with env.signals.interruptible():
                        reason = introduce(conn, balancers, timeout=timeout, access=access)
                except BaseException:  # a signal while the header comes: the socket is ours to close
                    conn.close()
                    raise
            if reason is None:
                return conn
            conn.close()
            env.messages.info(f"New connection denied: {reason}")
            continue
        env.messages.info("New connection denied: not allowed")


def _accept_dtls(
    config: Config,
    env: Environment,
    listeners: list[Listener],
    access: Callable[[Address | None], bool] | None,
    context: DtlsContext,
    deadline: float | None,
) -> Connection:
    """A single-shot DTLS listener's client: the first whose address passed the cookie
    exchange (``accept_dtls``), before the rest of its handshake."""
    from enchufe.net.dtls import accept_dtls

    def admit(sender: Address | None) -> bool:
        if access is None or access(sender):
            return True
        env.messages.info("New connection denied: not allowed")
        return False

    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        with env.signals.interruptible():
            stream = accept_dtls(listeners, context, timeout=remaining, wake_fd=env.signals.wake_fd, admit=admit)
    except TimedOut:
        raise ConnectTimeout(f"no client within {config.accept_timeout} s") from None
    return Connection(stream, local=stream.local_address, peer=stream.peer_address)


def _proxy_protocol(config: Config, messages: Messages) -> ProxyProtocol | None:
    """--proxy-protocol's balancers, read as --allow's hosts are (names resolved now, once)."""
    if config.proxy_protocol is None:
        return None
    from enchufe.serve.policy import ProxyProtocol

    trusted = access_predicate(
        [("allow", config.proxy_protocol)], numeric_only=config.numeric_only, on_detail=messages.error
    )
    assert trusted is not None
    return ProxyProtocol(trusted)


def _access_list(config: Config, messages: Messages) -> Callable[[Address | None], bool] | None:
    """--allow/--deny/--allowfile/--denyfile as a predicate on peers, read before
    listening as ncat does; names are resolved now, once (not with -n)."""
    return access_predicate(config.access, numeric_only=config.numeric_only, on_detail=messages.error)


def _keep_open(
    config: Config,
    env: Environment,
    listeners: list[Listener],
    access: Callable[[Address | None], bool] | None,
    logs: list[SessionLog],
    tls: ssl.SSLContext | None,
    balancers: ProxyProtocol | None,
    *,
    worker: Worker | None = None,
) -> int:
    """-l -k, --broker, --chat: every client at once on one event loop
    (:mod:`enchufe.serve.keep_open`; the broker and chat bytes are :mod:`enchufe.proto.chat`'s),
    each client over TLS with --ssl, its handshake on the loop: "Connection from" is
    said when it is accepted, as ncat says it, and a failed handshake with ncat's line.
    A signal stops the loop; the clients are cut off, and the signal then ends the
    command (128+signal) as it leaves its handlers. -q ends it with status 0, -w
    (no client in time) with TIMEOUT, a failure of the host's own (a stdout or a -o
    log that cannot be written) with the single session's message and status."""
    max_clients = 100 if config.max_conns is None else config.max_conns
    make_room_for(max_clients, _descriptors_per_client(config))
    if config.exec_argv is not None or config.py_handler is not None:
        return _exec_each(config, env, listeners, access, max_clients, logs, tls, balancers, worker=worker)
    assert worker is None, "config.py lets workers serve programs and handlers only"
    from enchufe.net.loop import EventLoop
    from enchufe.net.stream import translate_os_error
    from enchufe.serve.keep_open import KeepOpen

    messages = env.messages

    room = None
    if config.broker:
        from enchufe.proto.chat import BROKER, CHAT, CHAT_LINES, Room

        mode = (CHAT_LINES if config.chat_lines else CHAT) if config.chat else BROKER
        room = Room(mode, observer=0 if config.host_sees_room else None)  # the host is ncat's <user0>

    def joined(peer: Address | None, proxied_by: Address | None) -> None:
        messages.info(f"Connection from {describe_peer(peer, proxied_by=proxied_by)}.")

    def refused(peer: Address | None, reason: str) -> None:
        messages.info(f"New connection denied: {reason}")

    def dropped(peer: Address | None, reason: str) -> None:
        messages.info(f"Disconnected {describe_peer(peer)}: {reason}.")

    def idle(peer: Address | None) -> None:
        assert config.idle_timeout is not None
        dropped(peer, f"Idle timeout expired ({round(config.idle_timeout * 1000)} ms)")

    outbound, inbound = _filters(config, logs)
    new_responder = None
    if config.telnet:
        from enchufe.proto.telnet import TelnetResponder

        def new_responder() -> Callable[[bytes], bytes]:
            return TelnetResponder().receive_data

    failures: list[Exception] = []

    def failed(exc: BaseException) -> None:
        # What escapes a callback here is the host's own failure (its -o/-x log on a
        # full disk), not a client's: the server ends, as a single session does.
        if not failures and isinstance(exc, Exception):
            failures.append(exc)
        loop.stop()

    with EventLoop(on_error=failed) as loop:
        server = KeepOpen(
            loop,
            listeners,
            input_fd=env.stdin_fd,
            output_fd=env.stdout_fd,
            max_clients=max_clients,
            access=access,
            room=room,
            half_close=not config.no_shutdown,
            on_join=joined,
            on_refused=refused,
            on_drop=dropped,
            send=not config.recv_only,
            receive=not config.send_only,
            outbound=outbound,
            inbound=inbound,
            new_responder=new_responder,
            delay=config.delay,
            idle_timeout=config.idle_timeout,
            on_idle=idle,
            quit_after_input=_quit_after_input(config, listening=True, to_a_program=False),
            accept_timeout=config.accept_timeout,
            label=_client_label if config.client_labels else None,
            tls=tls,
            on_tls_failed=_say_tls_failed(messages),
            proxy_protocol=balancers,
        )
        _serve_until_signal(loop, env, server)
    if server.output_error is not None:
        raise server.output_error
    if failures:
        error = failures[0]
        if isinstance(error, OSError):
            raise translate_os_error(error, "send") from error
        raise error
    if server.ended == "accept timeout":
        raise ConnectTimeout(f"no client within {config.accept_timeout} s")
    return status.SUCCESS  # -q, stdout's reader gone (as in a single session), or a signal (raised on leaving)


def _proxy_server(
    config: Config,
    env: Environment,
    listeners: list[Listener],
    access: Callable[[Address | None], bool] | None,
    tls: ssl.SSLContext | None,
    *,
    worker: Worker | None = None,
) -> int:
    """-l --proxy-type: every client on one event loop (:mod:`enchufe.serve.proxy_server`),
    each speaking the protocol :mod:`enchufe.proto.http_proxy` or :mod:`enchufe.proto.socks`
    answers, -i per client, until a signal (or, in a worker, until it is told to stop)."""
    from enchufe.net.loop import EventLoop
    from enchufe.serve.proxy_server import ProxyServer

    messages = env.messages
    max_clients = 100 if config.max_conns is None else config.max_conns
    # A client, its upstream and the two pumps' pipes (two descriptors each); over TLS, the
    # socket pair between the client's TLS and its session too.
    make_room_for(max_clients, 6 + (2 if tls is not None else 0))
    negotiator = _negotiators(config, worker)

    def joined(peer: Address | None) -> None:
        messages.info(f"Connection from {describe_peer(peer)}.")

    def refused(peer: Address | None, reason: str) -> None:
        messages.info(f"New connection denied: {reason}")

    def idle(peer: Address | None) -> None:
        messages.info(f"Disconnected {describe_peer(peer)}: timed out.")

    with EventLoop() as loop:
        server = ProxyServer(
            loop,
            listeners,
            negotiator,
            max_connections=max_clients,
            access=access,
            idle_timeout=config.idle_timeout,
            connect_timeout=config.connect_timeout,
            resolver=SystemResolver(numeric_only=config.numeric_only),
            family=config.family,
            on_accept=joined,
            on_refused=refused,
            on_idle=idle,
            tls=tls,
            on_tls_failed=_say_tls_failed(messages),
        )
        if worker is None:
            _serve_until_signal(loop, env, server)
        else:
            serve_in_worker(loop, server, worker)
    return status.SUCCESS  # a signal, raised on leaving its handler


def _serve_until_signal(loop: EventLoop, env: Environment, server: KeepOpen | ProxyServer) -> None:
    """Run ``server`` on ``loop`` until the loop stops: a signal, or the server's own end."""
    env.signals.on_signal = loop.stop
    wake_on_signals(loop, env.signals)
    server.start()
    try:
        if env.signals.pending is None:  # after on_signal is set: no signal is missed
            loop.run_forever()
    finally:
        env.signals.on_signal = None
        server.close()


def _negotiators(config: Config, worker: Worker | None) -> Callable[[Address | None], ProxyNegotiator]:
    """What makes each proxy client's negotiator, by --proxy-type (and --proxy-auth).
    Workers share the Digest nonces' key (made before the fork): a client's next
    connection reaches any of them, with the nonce another gave it."""
    credentials = config.proxy_server_auth
    if config.proxy_server == "http":
        from enchufe.proto.http_auth import ProxyAuthenticator
        from enchufe.proto.http_proxy import HttpProxyNegotiator

        authenticator = None
        if credentials is not None:
            issuer = "" if worker is None else str(worker.index)
            authenticator = ProxyAuthenticator(credentials, secret=_NONCE_SECRET, clock=time.monotonic, issuer=issuer)
        return lambda peer: HttpProxyNegotiator(authenticator)
    from enchufe.proto.socks import Socks4Negotiator, Socks5Negotiator

    if config.proxy_server == "socks4":
        user_id = None if credentials is None else credentials.as_text()  # what ncat's clients send
        return lambda peer: Socks4Negotiator(user_id)
    return lambda peer: Socks5Negotiator(credentials)


def _say_tls_failed(messages: Messages) -> Callable[[Address | None, NetworkError], None]:
    """ncat's ``-v`` line for each client whose TLS handshake failed or ran out of time;
    the server goes on."""

    def say(peer: Address | None, error: NetworkError) -> None:
        from enchufe.cli.tls_setup import handshake_failure

        messages.info(handshake_failure(peer, error))

    return say


def _client_label(peer: Address | None, number: int) -> bytes:
    """--client-labels: the peer's address; a Unix client that bound no name, by number."""
    text = f"[{peer}] " if peer is not None else f"[unix client {number}] "
    return text.encode("utf-8", "surrogateescape")


def _exec_each(
    config: Config,
    env: Environment,
    listeners: list[Listener],
    access: Callable[[Address | None], bool] | None,
    max_clients: int,
    logs: list[SessionLog],
    tls: ssl.SSLContext | None,
    balancers: ProxyProtocol | None,
    *,
    worker: Worker | None = None,
) -> int:
    """-l -k -e/-c/--lua-exec: one program per connection, as inetd does, each relayed
    in its own thread (a blocking relay between two descriptors is what a thread is
    for); --py-exec: its handler in that thread. --proxy-protocol: each balancer's
    header is read in that thread first, and the program's NCAT_REMOTE_* are the
    client's. Over UDP a connection is a peer's session, which -i ends after that
    long without a datagram. -m caps the sessions running at once; every session
    writes to the same -o/-x logs. A signal closes every connection and ends every
    program (SIGTERM, then SIGKILL a second later)."""
    messages = env.messages
    someone_came = threading.Event()
    programs = _Programs()

    def handle(conn: Connection) -> None:
        someone_came.set()
        messages.info(f"Connection from {describe_peer(conn.peer, proxied_by=conn.proxied_by)}.")
        _relay(config, conn, env, logs, listening=True, interruptible=False, programs=programs)

    def failed(conn: Connection, exc: Exception) -> None:
        messages.info(f"{describe_peer(conn.peer)}: {exc}.")  # one session failed; the server goes on

    def refused(peer: Address | None, reason: str) -> None:
        messages.info(f"New connection denied: {reason}")

    server: Server | DatagramServer
    if config.transport == "datagram":
        from enchufe.serve.datagram_server import DatagramServer

        server = DatagramServer(
            listeners,
            handle,
            on_error=failed,
            name="exec",
            max_connections=max_clients,
            access=access,
            on_refused=refused,
            idle_timeout=config.idle_timeout,
            daemon_threads=True,
        )
    else:
        from enchufe.serve.engine import Server

        server = Server(
            listeners,
            handle,
            on_error=failed,
            name="exec",
            max_connections=max_clients,
            access=access,
            on_refused=refused,
            daemon_threads=True,
            tls=tls,
            on_tls_failed=_say_tls_failed(messages),
            proxy_protocol=balancers,
        )
    try:
        server.start()
        if worker is not None:
            worker.wait_for_stop()  # config.py: no -w with workers
            return status.SUCCESS
        if config.accept_timeout is not None:
            with env.signals.interruptible():  # a signal interrupts the wait of a lock
                came = someone_came.wait(config.accept_timeout)
            if not came:
                raise ConnectTimeout(f"no client within {config.accept_timeout} s")
        _wait_for_a_signal(env)
    finally:
        programs.end_all()
        _close_abandoning(server, messages)


def _close_abandoning(server: Server | DatagramServer, messages: Messages) -> None:
    """Close the sessions' server; a --py-exec handler that ignores its closed
    connection (a sleep, a loop) cannot be stopped from outside: after a second it is
    left behind (its thread is a daemon, which does not hold the exit up), said with -v."""
    import warnings

    with warnings.catch_warnings(record=True) as left:
        warnings.simplefilter("always", RuntimeWarning)
        server.close(timeout=_ABANDON_AFTER)
    for warning in left:
        messages.info(f"{warning.message}.")


class _Programs:
    """The programs that the sessions of ``-k -e/-c/--lua-exec`` run, for the end of
    the command to end them: a program that never reads its input (``sleep``, a
    daemon) does not end when its connection does, and would hold its session's
    thread, and the command, for as long as it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[ChildProcess] = set()
        self._ending = False

    def started(self, child: ChildProcess) -> None:
        """A session started ``child``; one started once the end has come is ended too."""
        with self._lock:
            self._running.add(child)
            ending = self._ending
        if ending:
            child.terminate()

    def finished(self, child: ChildProcess) -> None:
        with self._lock:
            self._running.discard(child)

    def end_all(self, grace: float = 1.0) -> None:
        """Terminate every program, and kill those still running ``grace`` seconds later."""
        with self._lock:
            self._ending = True
            children = list(self._running)
        for child in children:
            child.terminate()
        deadline = time.monotonic() + grace
        for child in children:
            child.end(grace=max(0.0, deadline - time.monotonic()))


def _descriptors_per_client(config: Config) -> int:
    """What one client of -k holds open: a hub's client, its socket (a UDP peer shares
    the listener's); a handler's, its socket or a UDP peer's bridge (a pair); a
    program's, that too, the program's two pipes and its relay's wake-up pipe."""
    if config.exec_argv is not None:
        return 6
    if config.py_handler is not None:
        return 2
    return 1


def _refuse_every_connection(conn: Connection, env: Environment) -> NoReturn:
    """-m 0 without -k, as ncat does it: the one connection a listener takes is
    announced (a UDP peer is not), denied and closed; the listening sockets are
    closed already, so the kernel refuses every later client; and the command stays
    until a signal ends it."""
    if not conn.stream.is_datagram:
        env.messages.info(f"Connection from {describe_peer(conn.peer)}.")
    env.messages.info("New connection denied: connection limit reached (0)")
    conn.close()
    _wait_for_a_signal(env)


def _wait_for_a_signal(env: Environment) -> NoReturn:
    """Block until a termination signal, which unwinds the command as Signalled."""
    import select

    poller = select.poll()
    if env.signals.wake_fd is not None:
        poller.register(env.signals.wake_fd, select.POLLIN)  # a signal just before poll() wakes it
    with env.signals.interruptible():
        while True:
            poller.poll()  # returns for a signal only, whose handler then raises Signalled


def _relay(
    config: Config,
    conn: Connection,
    env: Environment,
    logs: list[SessionLog],
    *,
    listening: bool,
    interruptible: bool = True,
    programs: _Programs | None = None,
) -> RelayResult:
    # Imported here, not at the top: a command that fails to connect never needs them.
    from enchufe.net.fdstream import FdStream
    from enchufe.net.relay import Relay, RelayResult

    if config.py_handler is not None:
        _run_handler(config.py_handler, conn, env, interruptible=interruptible)
        return RelayResult(0, 0, "handler-returned")
    child = None
    if config.exec_argv is not None:
        from enchufe.net.process import ChildProcess

        try:
            child = ChildProcess(config.exec_argv, env=_exec_environment(config, conn))
        except OSError as exc:
            env.messages.bare(f"exec: {exc.strerror or exc}")  # ncat's child says it so
            return RelayResult(0, 0, "exec-failed")
        local = child.stream
    else:
        local = FdStream(env.stdin_fd, env.stdout_fd)
    try:
        if child is not None and programs is not None:
            programs.started(child)
        outbound, inbound = _filters(config, logs)
        answer = None
        if config.telnet:
            from enchufe.proto.telnet import TelnetResponder

            answer = TelnetResponder().receive_data
        relay = Relay(
            local,
            conn.stream,
            send=not config.recv_only,
            receive=not config.send_only,
            half_close=not config.no_shutdown,
            quit_after_local_eof=_quit_after_input(config, listening=listening, to_a_program=child is not None),
            keep_open=config.keep_open and not listening,  # -k: connect mode's keep-open only
            idle_timeout=config.idle_timeout,
            delay=config.delay,
            drain_wait=_drain_wait(env, child is not None),
            outbound=outbound,
            inbound=inbound,
            answer=answer,
        )
        # Only the main thread waits for signals; a session in a thread of its own is
        # ended by closing its connection (and its program by _Programs.end_all).
        with env.signals.interruptible() if interruptible else contextlib.nullcontext():
            result = relay.run()
    finally:
        if child is not None:
            if programs is not None:
                programs.finished(child)
            child.close()
    # -vv: show that the relay ended for a reason and left no thread behind.
    env.messages.debug(f"Relay ended: {result.ending}.")
    env.messages.debug(f"Threads running: {', '.join(t.name for t in threading.enumerate())}.")
    return result


def _filters(
    config: Config, logs: list[SessionLog]
) -> tuple[Callable[[bytes], bytes] | None, Callable[[bytes], bytes] | None]:
    """What the local input goes through on its way out (-C, then the -o/-x logs) and
    what the peers' data goes through as it arrives (the logs)."""
    outbound: list[Callable[[bytes], bytes]] = []
    inbound: list[Callable[[bytes], bytes]] = []
    if config.crlf:
        from enchufe.proto.crlf import CrlfTranslator

        outbound.append(CrlfTranslator().translate)
    for log in logs:
        outbound.append(log.record)
        inbound.append(log.record)
    return _chain(outbound), _chain(inbound)


def _quit_after_input(config: Config, *, listening: bool, to_a_program: bool) -> float | None:
    """Seconds from the end of the local input to the end of the session (-q), or None."""
    quit_after = config.quit_after_eof
    if quit_after is not None:
        return None if quit_after < 0 else quit_after
    if config.send_only or (config.transport != "stream" and not listening):
        return 0.0  # ncat: --send-only quits at stdin EOF; so do UDP and SCTP clients (no half-close)
    if to_a_program:
        return 0.0  # the program's end of output ends the session, as in ncat
    return None


def _run_handler(handler: Handler, conn: Connection, env: Environment, *, interruptible: bool) -> None:
    """--py-exec: the handler has the connection until it returns. An exception it
    raises ends its session only: one line on stderr (with -vv, the traceback), and a
    network error, the peer's doing, one -v line. In the main thread (without -k) a
    network error is the command's, with ncat's message and status, and a signal
    interrupts the handler as Ctrl-C interrupts any Python program."""
    from enchufe.serve.pyexec import describe_failure

    try:
        with env.signals.interruptible() if interruptible else contextlib.nullcontext():
            handler(conn)
    except NetworkError as exc:
        if interruptible:
            raise
        env.messages.info(f"{describe_peer(conn.peer)}: {exc}.")
    except Exception as exc:  # noqa: BLE001 - the handler's own code: reported, and the server goes on
        env.messages.error(f"--py-exec handler failed for {describe_peer(conn.peer)}: {describe_failure(exc)}")
        if env.messages.verbosity >= 2:
            import traceback

            env.messages.debug("".join(traceback.format_exception(exc)).rstrip("\n"))


def _drain_wait(env: Environment, to_a_program: bool) -> float | None:
    """After the remote's end of stream: a program's output is relayed to its end (its
    stdin is closed, it finishes its work); a person at a terminal has nothing "ready",
    so the session ends at once; a pipe or a file drains what it has."""
    from enchufe.net.relay import DEFAULT_DRAIN_WAIT

    if to_a_program:
        return None
    return 0.0 if os.isatty(env.stdin_fd) else DEFAULT_DRAIN_WAIT


def _exec_environment(config: Config, conn: Connection) -> dict[str, str]:
    from enchufe.execspec import exec_environment

    nameless = UnixAddress("/")  # ncat names no Unix path: any Unix address does
    local = conn.local or nameless
    remote = conn.peer or (nameless if isinstance(local, UnixAddress) else local)
    return exec_environment(local=local, remote=remote, transport=config.transport)


def _chain(steps: list[Callable[[bytes], bytes]]) -> Callable[[bytes], bytes] | None:
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def chained(data: bytes) -> bytes:
        for step in steps:
            data = step(data)
        return data

    return chained


def _zero_io(config: Config, conn: Connection, messages: Messages, started: float) -> int:
    """ncat's -z: TCP (or DTLS) has already connected; UDP sends one NUL byte and calls
    the port open unless an ICMP port-unreachable comes back within 2 seconds."""
    if config.transport == "datagram" and not config.ssl:  # a DTLS handshake has said it already
        conn.send_all(b"\0")
        try:
            conn.recv(1, timeout=_UDP_PROBE_WAIT)
        except TimedOut:
            messages.info("UDP packet sent successfully")
            return status.SUCCESS
    messages.info(f"0 bytes sent, 0 bytes received in {time.monotonic() - started:.2f} seconds.")
    return status.SUCCESS


def _host_of(address: Address) -> str:
    return address.host if isinstance(address, InetAddress) else address.path
