"""What every server in ``serve/`` applies the same way: admission, error reports, ending.

The threaded :class:`~enchufe.serve.engine.Server` and the
:class:`~enchufe.serve.pool.RequestServer` take the same policy arguments and keep the
same promises; the code for them lives here, once:

- **Admission** (:func:`refusal`): access first, then the connection limit, before any
  thread or handler sees the connection.
- **Errors** (:func:`print_error`): the default ``on_error``, a traceback on stderr.
- **A thread per connection** (:class:`HandlerThreads`, for the servers that hold
  one): named ``conn-<peer>``, counted for the limit, forgotten as they finish.
- **The PROXY protocol** (:class:`ProxyProtocol`, :func:`introduce`,
  :func:`proxy_header_first`): a trusted balancer's header, read in the connection's
  thread under the handshake timeout, before TLS (it comes first on the wire) and
  before the handler; the connection then reports the client the header names, and
  ``access`` judges that client, not the balancer.
- **TLS** (:func:`handshake_first`): the server's handshake, in the connection's
  thread, before the handler.
- **Ending** (:func:`shut_down`, :func:`join_until`, :func:`warn_left_running`): a
  connection still open after the grace period is shut down so that blocked reads
  return end of file; threads are joined until one deadline; a thread still running
  then is named in a ``RuntimeWarning``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from types import TracebackType

from enchufe.address import Address
from enchufe.net.connection import Connection
from enchufe.net.listen import Listener
from enchufe.net.stream import SocketStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Self

    from enchufe.errors import NetworkError
    from enchufe.proto.proxy_protocol import ProxyHeader

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "UNTRUSTED",
    "Access",
    "ErrorHook",
    "HandlerThreads",
    "ProxyProtocol",
    "RefusalHook",
    "ServerPolicies",
    "TlsFailureHook",
    "client_behind",
    "handshake_first",
    "header_refusal",
    "introduce",
    "join_until",
    "print_error",
    "proxy_header_first",
    "refusal",
    "shut_down",
    "warn_left_running",
]

#: Seconds ``close()`` waits for threads once their connections are shut down.
DEFAULT_CLOSE_TIMEOUT = 5.0

#: Seconds a client has for its TLS handshake: one that connects and says nothing
#: must not hold a thread and a place under the limit for ever.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

ErrorHook = Callable[[Connection, Exception], None]
TlsFailureHook = Callable[[Address | None, "NetworkError"], None]
Access = Callable[[Address | None], bool]
RefusalHook = Callable[[Address | None, str], None]


class ServerPolicies:
    """What both servers hold the same way: their stream listeners (owned, closed by
    ``close()``), the policy arguments, the addresses, and the context manager.

    Subclasses define ``close(*, grace, timeout)``; leaving the ``with`` block calls it,
    and say which listeners they serve (``serves_datagrams``).
    """

    serves_datagrams = False

    def __init__(
        self,
        listeners: Sequence[Listener],
        *,
        on_error: ErrorHook,
        name: str,
        max_connections: int | None,
        access: Access | None,
        on_refused: RefusalHook | None,
        proxy_protocol: ProxyProtocol | None = None,
    ) -> None:
        if any(listener.is_datagram != self.serves_datagrams for listener in listeners):
            kind = "datagram" if self.serves_datagrams else "stream (DatagramServer serves datagrams)"
            raise ValueError(f"{type(self).__name__} serves {kind} listeners only")
        self.listeners = list(listeners)
        self.on_error = on_error
        self.name = name
        self.max_connections = max_connections
        self.access = access
        self.on_refused = on_refused
        self.proxy_protocol = proxy_protocol

    @property
    def addresses(self) -> list[Address]:
        """Where the server listens (with the real port when it was 0)."""
        return [listener.address for listener in self.listeners]

    def close(self, *, grace: float = 0.0, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        raise NotImplementedError

    def _refusal(self, peer: Address | None, active: int) -> str | None:
        """Why a connection from ``peer`` must not be served while ``active`` are, or None.
        Behind a balancer, only trusted ones are let in, and ``access`` waits for the PROXY
        header's client (:func:`introduce`)."""
        policy = self.proxy_protocol
        if policy is None:
            return refusal(peer, active, access=self.access, max_connections=self.max_connections)
        if not policy.optional and not policy.trusted(peer):
            return UNTRUSTED
        return refusal(peer, active, access=None, max_connections=self.max_connections)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class HandlerThreads:
    """Run ``handler(conn)`` in a thread of its own per connection, and keep count.

    A thread is named ``conn-<peer>``; an ``Exception`` escaping the handler goes to
    ``on_error``; the connection is closed when the handler returns. Finished threads
    are forgotten at the next start, so nothing grows with the connections served,
    yet :meth:`every_thread` still names those past their last line and not yet gone,
    for a ``close()`` to join.
    """

    def __init__(self, handler: Callable[[Connection], None], on_error: ErrorHook, *, daemon: bool = False) -> None:
        self.handler = handler
        self.on_error = on_error
        self.daemon = daemon
        self._lock = threading.Lock()
        self._active: dict[threading.Thread, Connection] = {}
        self._finishing: set[threading.Thread] = set()

    def __len__(self) -> int:
        """Handlers running now."""
        with self._lock:
            return len(self._active)

    def threads(self) -> list[threading.Thread]:
        """The handler threads running now."""
        with self._lock:
            return list(self._active)

    def connections(self) -> list[Connection]:
        """The connections being handled now."""
        with self._lock:
            return list(self._active.values())

    def every_thread(self) -> list[threading.Thread]:
        """The running threads and the finishing ones: what a close() must join."""
        with self._lock:
            return [*self._active, *self._finishing]

    def start(self, conn: Connection) -> bool:
        """Start the handler for ``conn``; False if no thread could be started
        ("can't start new thread": a pids or memory limit), in which case ``on_error``
        is told and the connection closed unserved, at once rather than left waiting."""
        thread = threading.Thread(target=self._run, args=(conn,), name=f"conn-{conn.peer}", daemon=self.daemon)
        # Started under the lock: a close() in another thread never sees (and joins) a
        # thread not started yet; the new thread takes the lock only as it ends.
        with self._lock:
            self._finishing = {finishing for finishing in self._finishing if finishing.is_alive()}
            try:
                thread.start()
            except RuntimeError as exc:
                failure = exc
            else:
                self._active[thread] = conn
                return True
        failure.add_note(f"no thread could be started for {conn.peer}; its connection is closed unserved")
        try:
            self.on_error(conn, failure)
        finally:
            conn.close()
        return False

    def _run(self, conn: Connection) -> None:
        try:
            self.handler(conn)
        except Exception as exc:  # noqa: BLE001 - reported through the hook; the server goes on
            self.on_error(conn, exc)
        finally:
            conn.close()
            with self._lock:
                self._active.pop(threading.current_thread(), None)
                self._finishing.add(threading.current_thread())


def print_error(conn: Connection, exc: Exception) -> None:
    """The default ``on_error``: say which peer's handler failed, with the traceback."""
    import traceback

    print(f"enchufe: serving {conn.peer} failed:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


def refusal(peer: Address | None, active: int, *, access: Access | None, max_connections: int | None) -> str | None:
    """Why a connection from ``peer`` must not be served while ``active`` are, or None."""
    if access is not None and not access(peer):
        return "not allowed"
    if max_connections is not None and active >= max_connections:
        return f"connection limit reached ({max_connections})"
    return None


def shut_down(conn: Connection) -> None:
    """End ``conn`` under its handler: blocked reads return end of file, writes fail.

    The handler still owns the connection and closes it; closing it here instead could
    let the descriptor number be reused under a handler that still uses it.
    """
    with contextlib.suppress(OSError):
        conn.stream.abort()


#: Why a peer that is no trusted balancer is refused.
UNTRUSTED = "not a trusted PROXY protocol sender"


class ProxyProtocol:
    """A server's policy for the PROXY protocol: which peers are balancers whose header
    is read, and what to do with the others.

    Accepting a header from anyone would let anyone claim any address (and pass any
    ``access`` rule): only the peers ``trusted`` admits may send one.

    Args:
        trusted: ``trusted(peer)`` True for a balancer's address, e.g. an
            :class:`enchufe.acl.AccessList`'s ``permits`` on its host (``lambda peer:
            True`` trusts every peer: only behind a firewall that lets balancers alone
            reach the server).
        optional: a peer that is not trusted is served without a header, as itself,
            instead of refused (``"not a trusted PROXY protocol sender"``); its first
            bytes are its own data, never read as a header.
    """

    __slots__ = ("optional", "trusted")

    def __init__(self, trusted: Access, *, optional: bool = False) -> None:
        self.trusted = trusted
        self.optional = optional

    def __repr__(self) -> str:
        return f"ProxyProtocol(trusted={self.trusted!r}, optional={self.optional!r})"


def introduce(conn: Connection, policy: ProxyProtocol, *, timeout: float | None, access: Access | None) -> str | None:
    """Read ``conn``'s PROXY header if its peer is a trusted balancer, make ``conn``
    report the client the header names (``peer``; ``proxied_by`` the balancer), and
    judge that client with ``access``; return why ``conn`` must not be served, or None.

    A LOCAL header (a health check) or one without addresses leaves ``peer`` the
    socket's own. Nothing past the header is read (:func:`enchufe.net.proxy_protocol.read_proxy_header`).
    """
    from enchufe.errors import NetworkError, ProtocolError
    from enchufe.net.proxy_protocol import read_proxy_header

    balancer = conn.peer
    if policy.trusted(balancer):
        assert isinstance(conn.stream, SocketStream)
        try:
            header = read_proxy_header(conn.stream, timeout=timeout)
        except (ProtocolError, NetworkError) as exc:
            return header_refusal(exc)
        conn.proxy_header = header
        conn.peer, conn.proxied_by = client_behind(balancer, header)
    elif not policy.optional:
        return UNTRUSTED
    if access is not None and not access(conn.peer):
        return "not allowed"
    return None


def client_behind(balancer: Address | None, header: ProxyHeader) -> tuple[Address | None, Address | None]:
    """The peer to serve and the balancer it came through (None: it is the peer itself):
    a LOCAL header (a health check) or one without addresses leaves the balancer the peer."""
    if header.command == "proxy" and header.source is not None:
        return header.source, balancer
    return balancer, None


def header_refusal(error: Exception) -> str:
    """``on_refused``'s reason for a connection whose PROXY header did not come."""
    from enchufe.errors import ProtocolError, TimedOut

    if isinstance(error, ProtocolError):
        return f"bad PROXY header: {error}"
    if isinstance(error, TimedOut):
        return str(error)  # "no PROXY header within N s"
    return f"no PROXY header: {error}"


def proxy_header_first(
    handler: Callable[[Connection], None],
    policy: ProxyProtocol,
    *,
    timeout: float | None,
    access: Access | None,
    on_refused: RefusalHook | None,
) -> Callable[[Connection], None]:
    """``handler``, called once :func:`introduce` admits the connection; otherwise the
    connection is closed and ``on_refused(peer, reason)`` told (``peer``: the balancer
    for a bad or missing header, the client for ``"not allowed"``), in the
    connection's own thread: a balancer that stalls delays nobody."""

    def handle(conn: Connection) -> None:
        reason = introduce(conn, policy, timeout=timeout, access=access)
        if reason is None:
            handler(conn)
            return
        conn.close()
        if on_refused is not None:
            on_refused(conn.peer, reason)

    return handle


def handshake_first(
    handler: Callable[[Connection], None],
    context: ssl.SSLContext,
    *,
    timeout: float | None,
    on_failed: TlsFailureHook | None,
) -> Callable[[Connection], None]:
    """``handler``, called once the server's TLS handshake with the client is done, with
    the TLS connection; a handshake that fails or takes longer than ``timeout`` goes to
    ``on_failed(peer, error)`` instead (the handler never sees that client). The
    handshake runs in the connection's own thread: a stalled client delays nobody."""
    from enchufe.errors import TimedOut, TlsError
    from enchufe.net.tls import start_tls

    def handle(conn: Connection) -> None:
        try:
            assert isinstance(conn.stream, SocketStream)
            stream = start_tls(conn.stream, context, server_side=True, timeout=timeout)
        except (TlsError, TimedOut) as exc:
            if on_failed is not None:
                on_failed(conn.peer, exc)
            return
        with Connection(
            stream,
            local=conn.local,
            peer=conn.peer,
            timeout=conn.timeout,
            proxied_by=conn.proxied_by,
            proxy_header=conn.proxy_header,
        ) as secured:
            handler(secured)

    return handle


def join_until(thread: threading.Thread, deadline: float | None) -> None:
    """Join ``thread`` until ``deadline`` (``time.monotonic()``; ``None``: no limit).

    The calling thread itself is skipped: a ``close()`` from a handler (or from an
    ``on_error`` hook) ends as that thread returns.
    """
    if thread is threading.current_thread():
        return
    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def warn_left_running(owner: str, threads: list[threading.Thread | None], timeout: float | None) -> None:
    """Warn, naming them, if any of ``threads`` but the caller's own still runs."""
    me = threading.current_thread()
    left = [thread.name for thread in threads if thread not in (None, me) and thread.is_alive()]
    if left:
        warnings.warn(
            f"{owner}.close() left threads running after {timeout} s: {', '.join(left)}",
            RuntimeWarning,
            stacklevel=3,
        )
