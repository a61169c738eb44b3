"""HTTP CONNECT through a proxy: the client's handshake, as ncat 7.93 sends it.

``CONNECT host:port HTTP/1.0`` and an empty line, no other header (an IPv6 literal in
brackets). Credentials are sent only when the proxy asks with a ``407``: then, on a new
connection, the request again with ``Proxy-Authorization`` for the scheme chosen
(Digest over Basic, :func:`~enchufe.proto.http_auth.choose_challenge`). Any 2xx opens
the tunnel (RFC 9110 §9.3.6; ncat 7.93 takes only 200); what the proxy sends after its
response head stays in the connection, for the caller to deliver first.
"""

from __future__ import annotations

import os

from enchufe.errors import ProtocolError, ProxyError, ReceiveLimitExceeded, UnexpectedEOF
from enchufe.net.stream import remaining_time
from enchufe.proto.http import MAX_LINE, ResponseHead, ResponseReader, connect_request, format_authority
from enchufe.proto.http_auth import DigestClient, basic_authorization, choose_challenge, parse_challenges

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.net.connection import Connection
    from enchufe.proto.proxy import Credentials

__all__ = ["http_connect"]


def http_connect(
    conn: Connection,
    host: str,
    port: int,
    credentials: Credentials | None,
    *,
    deadline: float | None,
    reconnect: Callable[[], Connection],
) -> Connection:
    """Ask the HTTP proxy at the end of ``conn`` for a tunnel to ``host:port``.

    Args:
        conn: connected to the proxy.
        host: the name or address literal to ask for.
        port: the port to ask for.
        credentials: what to answer a ``407`` with; ``None``: a 407 is a refusal.
        deadline: when the whole exchange must be over (``time.monotonic()``); ``None``:
            no limit.
        reconnect: a new connection to the proxy, for the request with credentials
            (``conn`` is closed first).

    Returns:
        The connection the tunnel is on: ``conn``, or after a 407 the new one. Bytes the
        proxy sent after its response are buffered in it.

    Raises:
        ProxyError: the proxy answered another status (ncat's ``Proxy returned status
            code N.``), or bytes that are not an HTTP response.
        ReceiveTimeout: the deadline passed first.
    """
    proxy = str(conn.peer) if conn.peer is not None else "the proxy"
    head = _exchange(conn, connect_request(host, port), deadline, proxy)
    if head.status == 407 and credentials is not None:
        try:
            challenge = choose_challenge(parse_challenges(head.headers.get_all("Proxy-Authenticate")))
        except ProtocolError as exc:
            raise ProxyError(f"Proxy sent a malformed Proxy-Authenticate header: {exc}", proxy=proxy, code=407) from exc
        if challenge is None:
            offered = ", ".join(head.headers.get_all("Proxy-Authenticate")) or "nothing"
            raise ProxyError(
                f"Proxy returned status code 407 and offers no scheme enchufe can answer (Basic or Digest): {offered}",
                proxy=proxy,
                code=407,
            )
        if challenge.scheme == "basic":
            authorization = basic_authorization(credentials)
        else:
            authorization = DigestClient(credentials, challenge, os.urandom).authorization(
                "CONNECT", format_authority(host, port)
            )
        conn.close()
        conn = reconnect()
        try:
            head = _exchange(
                conn, connect_request(host, port, [("Proxy-Authorization", authorization)]), deadline, proxy
            )
            _check_status(head, proxy, authenticated=True)
        except BaseException:
            conn.close()
            raise
        return conn
    _check_status(head, proxy, authenticated=False)
    return conn


def _check_status(head: ResponseHead, proxy: str, *, authenticated: bool) -> None:
    if 200 <= head.status < 300:
        return
    message = f"Proxy returned status code {head.status}."
    if head.status == 407:
        message += " The credentials were refused." if authenticated else " The proxy requires credentials."
    raise ProxyError(message, proxy=proxy, code=head.status)


def _exchange(conn: Connection, request: bytes, deadline: float | None, proxy: str) -> ResponseHead:
    """Send ``request``, read the response head line by line (what follows it stays in
    ``conn``)."""
    conn.send_all(request, timeout=remaining_time(deadline))
    reader = ResponseReader()
    try:
        while True:
            found = reader.feed(conn.recv_line(max_size=MAX_LINE, timeout=remaining_time(deadline)))
            if found is not None:
                return found[0]
    except UnexpectedEOF as exc:
        raise ProxyError("Proxy closed the connection before its response was complete.", proxy=proxy) from exc
    except ReceiveLimitExceeded as exc:
        raise ProxyError(f"Proxy sent a response line longer than {MAX_LINE} bytes.", proxy=proxy) from exc
    except ProtocolError as exc:
        raise ProxyError(f"Proxy sent a malformed response: {exc}", proxy=proxy) from exc
