"""The HTTP proxy server's protocol (``enchufe -l --proxy-type http``), one client at a time.

:class:`HttpProxyNegotiator` speaks the :class:`~enchufe.proto.proxy.ProxyNegotiator`
vocabulary, answering as ncat 7.93's proxy server does:

- ``CONNECT host:port`` → connect → ``HTTP/1.0 200 OK`` and a tunnel (bytes sent after
  the request head go upstream first);
- ``GET``, ``HEAD``, ``POST`` with an absolute ``http://`` URI → connect → the request
  forwarded in origin form without hop-by-hop headers and with ``Connection: close``,
  its body (``Content-Length`` or ``chunked``) as it comes, and the response relayed
  until upstream ends;
- another method → 405; a malformed request → 400; a head over the limits → 413, as
  soon as it is seen; without the credentials of ``--proxy-auth`` → 407 with Basic and
  Digest challenges; upstream unreachable, for whatever reason → 504 (ncat's answer for
  a refusal, a name that does not resolve and a timeout alike), forbidden → 403.

Beyond ncat 7.93: chunked request bodies (ncat answers 400), and a 407 to a request
without a body keeps the connection for the next request, which is how curl answers a
CONNECT's challenge (ncat closes, and curl's ``--proxy-digest -p`` fails against it).
"""

from __future__ import annotations

from enchufe.errors import ProtocolError
from enchufe.proto.http import BodyFramer, RequestHead, RequestReader, forwarded_request, status_response
from enchufe.proto.http_auth import OK, STALE
from enchufe.proto.proxy import Close, OpenUpstream, RelayResponse, Reply, SendUpstream, StartTunnel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enchufe.proto.http_auth import ProxyAuthenticator
    from enchufe.proto.proxy import Action

__all__ = ["MAX_AUTH_ATTEMPTS", "METHODS", "HttpProxyNegotiator"]

#: The methods served.
METHODS = ("CONNECT", "GET", "HEAD", "POST")
#: 407s answered on one connection before it is closed.
MAX_AUTH_ATTEMPTS = 3


class HttpProxyNegotiator:
    """One client of the HTTP proxy server; see the module docstring.

    Args:
        authenticator: who may use the proxy (shared by every client); ``None``:
            anyone.
    """

    def __init__(self, authenticator: ProxyAuthenticator | None = None) -> None:
        self._authenticator = authenticator
        self._reader = RequestReader()
        self._state = "request"  # then "connecting", "body" (response relayed), "tunnel", "done"
        self._head: RequestHead | None = None
        self._after_head = b""
        self._body: BodyFramer | None = None
        self._refusals = 0

    def accepted(self) -> list[Action]:
        """Nothing to do before the client's request."""
        return []

    def receive_data(self, data: bytes) -> list[Action]:
        """The client sent ``data`` (``b""``: its end of stream)."""
        if self._state == "request":
            if not data:
                return self._end([Close()])
            try:
                found = self._reader.feed(data)
                return [] if found is None else self._request(*found)
            except ProtocolError as error:
                return self._end([Reply(status_response(error.status or 400)), Close()])
        if self._state == "body" and self._body is not None and not self._body.done:
            if not data:
                return self._end([Close()])  # upstream would wait for the rest forever
            try:
                body, _ = self._body.feed(data)
            except ProtocolError:
                return self._end([Close()])  # too late for a status: the response has begun
            return [SendUpstream(body)] if body else []
        return []  # what follows a whole request body is ignored (Connection: close)

    def upstream_connected(self, bound_host: str, bound_port: int) -> list[Action]:
        """Upstream is connected: tunnel or forward the request."""
        head, after = self._head, self._after_head
        assert head is not None and self._state == "connecting"
        self._after_head = b""
        if head.method == "CONNECT":
            self._state = "tunnel"
            return [Reply(status_response(200)), *([SendUpstream(after)] if after else []), StartTunnel()]
        assert self._body is not None
        try:
            body, _ = self._body.feed(after)
        except ProtocolError:
            return self._end([Reply(status_response(400)), Close()])
        self._state = "body"
        return [SendUpstream(forwarded_request(head) + body), RelayResponse()]

    def upstream_failed(self, reason: str) -> list[Action]:
        """Upstream could not be reached: 403 if the rules forbid it, else ncat's 504."""
        return self._end([Reply(status_response(403 if reason == "denied" else 504)), Close()])

    def _end(self, actions: list[Action]) -> list[Action]:
        self._state = "done"
        return actions

    def _request(self, head: RequestHead, after: bytes) -> list[Action]:
        if head.method not in METHODS:
            return self._end([Reply(status_response(405)), Close()])
        if head.form != ("authority" if head.method == "CONNECT" else "absolute"):
            raise ProtocolError(f"{head.method} needs an {'authority' if head.method == 'CONNECT' else 'absolute'} URI")
        body = None if head.method == "CONNECT" else BodyFramer(head)
        if self._authenticator is not None:
            uris = [head.target] if head.path is None else [head.target, head.path]
            verdict = self._authenticator.check(head.method, uris, head.headers.get("Proxy-Authorization"))
            if verdict != OK:
                self._refusals += 1
                challenges = self._authenticator.challenges(stale=verdict == STALE)
                if (body is not None and not body.done) or self._refusals >= MAX_AUTH_ATTEMPTS:
                    return self._end([Reply(status_response(407, challenges)), Close()])
                # The client may ask again on this connection; the length says that the
                # answer has no body, which a client would otherwise read until the end.
                self._reader = RequestReader()
                challenge = Reply(status_response(407, [*challenges, ("Content-Length", "0")]))
                return [challenge, *(self.receive_data(after) if after else [])]
        assert head.host is not None and head.port is not None
        self._head, self._after_head, self._body = head, after, body
        self._state = "connecting"
        return [OpenUpstream(head.host, head.port)]
