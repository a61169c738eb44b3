"""SOCKS4, SOCKS4a and SOCKS5 through a proxy: the client's handshakes.

Each function speaks :mod:`enchufe.proto.socks`'s messages over a connection to the
proxy. Replies are read exactly as long as they are (the parser says how many bytes it
still needs), so what the proxy sends after its reply, the target's first bytes, stays in
the connection's buffer for whoever reads next.

Refusals and broken replies are :class:`~enchufe.errors.ProxyError`, in ncat 7.93's words
where it has some (``Error: Connection refused.`` for SOCKS5's reply 5; every SOCKS
error of ncat's starts with ``Error:``, but for SOCKS4's refusal, ``Proxy connection
failed``, to which enchufe adds the reply's meaning), with ``.code`` the reply code; a
proxy silent past ``deadline`` is :class:`~enchufe.errors.ReceiveTimeout`, which
:func:`enchufe.net.proxy.connect_through` makes a ``ConnectTimeout``.

``on_progress``, when given, is called with each line ncat's ``-v`` prints during a
SOCKS5 handshake: the method (``No authentication needed.``, ``Doing username and
password authentication.``), then ``connection succeeded.``.
"""

from __future__ import annotations

from enchufe.errors import ProtocolError, ProxyError, UnexpectedEOF
from enchufe.net.stream import remaining_time
from enchufe.proto.socks import (
    METHOD_NO_ACCEPTABLE,
    METHOD_NO_AUTH,
    METHOD_USERNAME_PASSWORD,
    SOCKS4_REPLY_MESSAGES,
    SOCKS5_REPLY_MESSAGES,
    SOCKS5_UNASSIGNED_MESSAGE,
    NeedMore,
    parse_socks4_reply,
    parse_socks5_auth_reply,
    parse_socks5_method,
    parse_socks5_reply,
    socks4_request,
    socks5_auth_request,
    socks5_greeting,
    socks5_request,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from enchufe.net.connection import Connection
    from enchufe.proto.proxy import Credentials

    T = TypeVar("T")

    Progress = Callable[[str], None]

__all__ = ["socks4_connect", "socks5_connect"]


def socks4_connect(conn: Connection, host: str, port: int, user_id: str, *, deadline: float | None) -> None:
    """Ask the SOCKS4 proxy at the end of ``conn`` for a tunnel to ``host:port``.

    An IPv4 address is asked for in SOCKS4, a name in SOCKS4a (the proxy resolves it).

    Raises:
        ProxyError: an IPv6 address (SOCKS4 cannot carry one), the proxy's refusal (91 to
            93, in ``.code``), or a reply that is not SOCKS4's.
        ReceiveTimeout: no whole reply by ``deadline``.
    """
    proxy = _name(conn)
    try:
        request = socks4_request(host, port, user_id)
    except ProtocolError as exc:
        raise _error(str(exc), proxy) from None
    conn.send_all(request, timeout=remaining_time(deadline))
    reply = _receive(conn, parse_socks4_reply, deadline, proxy, truncated="short response from proxy.")
    if not reply.granted:
        meaning = SOCKS4_REPLY_MESSAGES.get(reply.code, "an unknown reply code")
        raise ProxyError(
            f"Proxy connection failed: {meaning} (SOCKS4 reply {reply.code}).", proxy=proxy, code=reply.code
        )


def socks5_connect(
    conn: Connection,
    host: str,
    port: int,
    credentials: Credentials | None,
    *,
    deadline: float | None,
    on_progress: Progress | None = None,
) -> None:
    """Ask the SOCKS5 proxy at the end of ``conn`` for a tunnel to ``host:port`` (an
    address, or a name the proxy resolves).

    Offers no authentication, and with ``credentials`` also a user name and password
    (RFC 1929), as ncat does.

    Raises:
        ProxyError: no acceptable method, credentials refused or unusable, the proxy's
            refusal (its reply code in ``.code``), or replies that are not SOCKS5's.
        ReceiveTimeout: no whole reply by ``deadline``.
    """
    proxy = _name(conn)
    try:
        request = socks5_request(host, port)
    except ProtocolError as exc:
        raise _error(str(exc), proxy) from None
    say = on_progress or _silent
    methods = [METHOD_NO_AUTH] if credentials is None else [METHOD_NO_AUTH, METHOD_USERNAME_PASSWORD]
    conn.send_all(socks5_greeting(methods), timeout=remaining_time(deadline))
    method = _receive(conn, parse_socks5_method, deadline, proxy, truncated="malformed connect response from proxy.")
    if method == METHOD_NO_ACCEPTABLE:
        raise _error("no acceptable authentication method proposed.", proxy)
    if method not in methods:
        raise _error("proxy selected invalid authentication method.", proxy)
    if method == METHOD_USERNAME_PASSWORD:
        assert credentials is not None
        say("Doing username and password authentication.")
        _authenticate(conn, credentials, deadline, proxy)
    else:
        say("No authentication needed.")
    conn.send_all(request, timeout=remaining_time(deadline))
    reply = _receive(conn, parse_socks5_reply, deadline, proxy, truncated="malformed request response from proxy.")
    if not reply.succeeded:
        message = SOCKS5_REPLY_MESSAGES.get(reply.code, SOCKS5_UNASSIGNED_MESSAGE)
        raise _error(message, proxy, code=reply.code)
    say("connection succeeded.")


def _authenticate(conn: Connection, credentials: Credentials, deadline: float | None, proxy: str) -> None:
    """RFC 1929: the user name and password, and the proxy's verdict."""
    try:
        request = socks5_auth_request(credentials.username, credentials.password or "")
    except ProtocolError:
        # RFC 1929 needs both, of 1 to 255 bytes each; ncat's words for a missing password.
        raise _error("invalid username:password combo.", proxy) from None
    conn.send_all(request, timeout=remaining_time(deadline))
    truncated = "malformed proxy authentication response."
    accepted = _receive(conn, parse_socks5_auth_reply, deadline, proxy, truncated=truncated)
    if not accepted:
        raise _error("authentication failed.", proxy)


def _receive(
    conn: Connection,
    parse: Callable[[bytes], NeedMore | tuple[T, int]],
    deadline: float | None,
    proxy: str,
    *,
    truncated: str,
) -> T:
    """One reply, read in the pieces ``parse`` asks for and never a byte past it."""
    received = b""
    while True:
        try:
            result = parse(received)
        except ProtocolError as exc:
            raise _error(str(exc), proxy) from None
        if not isinstance(result, NeedMore):
            return result[0]
        try:
            received += conn.recv_exactly(result.count, timeout=remaining_time(deadline))
        except UnexpectedEOF:
            raise _error(truncated, proxy) from None


def _error(message: str, proxy: str, *, code: int | None = None) -> ProxyError:
    """A SOCKS failure, in ncat's form: ``Error: `` and the words."""
    return ProxyError(f"Error: {message}", proxy=proxy, code=code)


def _silent(message: str) -> None:
    pass


def _name(conn: Connection) -> str:
    return "the proxy" if conn.peer is None else str(conn.peer)
