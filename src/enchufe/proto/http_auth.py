"""HTTP proxy authentication, Basic and Digest (RFC 7617, RFC 2617/7616 with MD5), both sides.

A client (:mod:`enchufe.net.proxy_http`) reads the proxy's ``Proxy-Authenticate``
challenges with :func:`parse_challenges`, picks one with :func:`choose_challenge`
(Digest over Basic, as ncat does) and answers with :func:`basic_authorization` or a
:class:`DigestClient`. A proxy server (:mod:`enchufe.proto.http_proxy`) holds one
:class:`ProxyAuthenticator` for all its clients: it issues the challenges and checks
what comes back.

The server's Digest nonces carry the time they were made, a serial number and an HMAC
of both under a secret, so a nonce is checked without remembering it; a nonce older than
``nonce_lifetime`` is answered with ``stale=true`` (the client retries at once with a
new one, without asking its user). Against replays, each nonce's highest ``nc`` is
kept in a bounded table: a request must count higher. Secrets are compared in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict

from enchufe.errors import ProtocolError
from enchufe.proto.proxy import typed_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from enchufe.proto.proxy import Credentials

__all__ = [
    "DENIED",
    "OK",
    "STALE",
    "Challenge",
    "DigestClient",
    "ProxyAuthenticator",
    "basic_authorization",
    "choose_challenge",
    "parse_challenges",
]

#: What :meth:`ProxyAuthenticator.check` decides: let the request through,
OK = "ok"
#: ask again with a fresh nonce (``stale=true``: the password was right),
STALE = "stale"
#: or ask again (no credentials, wrong ones, a replay).
DENIED = "denied"

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN68_CHARS = frozenset("-._~+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Challenge:
    """One challenge (or the credentials of an ``Authorization``, which read the same).

    Attributes:
        scheme: lower case (``"basic"``, ``"digest"``).
        params: the ``name=value`` parameters, names in lower case, quoted strings
            unquoted.
        token68: the single token some schemes carry instead of parameters.
    """

    __slots__ = ("params", "scheme", "token68")

    def __init__(self, scheme: str, params: dict[str, str] | None = None, token68: str | None = None) -> None:
        self.scheme = scheme
        self.params = {} if params is None else params
        self.token68 = token68

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Challenge):
            return NotImplemented
        return (self.scheme, self.params, self.token68) == (other.scheme, other.params, other.token68)

    def __hash__(self) -> int:
        return hash((self.scheme, tuple(self.params.items()), self.token68))

    def __repr__(self) -> str:
        return f"Challenge({self.scheme!r}, {self.params!r}, {self.token68!r})"


class _Scanner:
    """The list syntax of RFC 9110 §11: tokens, ``=``, quoted strings, commas."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def skip_spaces(self) -> None:
        while self.position < len(self.text) and self.text[self.position] in " \t":
            self.position += 1

    def skip_separators(self) -> None:
        while self.position < len(self.text) and self.text[self.position] in " \t,":
            self.position += 1

    def peek(self) -> str:
        return self.text[self.position : self.position + 1]

    def at_end_of_item(self) -> bool:
        self.skip_spaces()
        return self.peek() in ("", ",")

    def take(self, chars: frozenset[str]) -> str:
        start = self.position
        while self.position < len(self.text) and self.text[self.position] in chars:
            self.position += 1
        return self.text[start : self.position]

    def quoted_string(self) -> str:
        self.position += 1  # the opening quote
        out: list[str] = []
        while self.position < len(self.text):
            char = self.text[self.position]
            self.position += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.position == len(self.text):
                    break
                char = self.text[self.position]
                self.position += 1
            out.append(char)
        raise ProtocolError("An unterminated quoted string in an authentication header")


def _param(scanner: _Scanner) -> tuple[str, str] | None:
    """A ``name=value`` at the scanner, consumed; ``None`` (nothing consumed) if what is
    there is not one."""
    start = scanner.position
    name = scanner.take(_TOKEN_CHARS)
    scanner.skip_spaces()
    if not name or scanner.peek() != "=":
        scanner.position = start
        return None
    scanner.position += 1
    scanner.skip_spaces()
    if scanner.peek() == '"':
        return name.lower(), scanner.quoted_string()
    value = scanner.take(_TOKEN_CHARS)
    if not value:
        scanner.position = start
        return None
    return name.lower(), value


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """The challenges of every ``Proxy-Authenticate`` value, in order (several may
    share one value, separated by commas).

    Raises:
        ProtocolError: what is there is not challenges.
    """
    challenges = []
    for value in values:
        scanner = _Scanner(value)
        scanner.skip_separators()
        while scanner.peek():
            scheme = scanner.take(_TOKEN_CHARS)
            if not scheme:
                raise ProtocolError(f"Malformed authentication challenge {value[:80]!r}")
            challenge = Challenge(scheme.lower())
            challenges.append(challenge)
            if scanner.at_end_of_item():
                scanner.skip_separators()
                continue
            if scanner.text[scanner.position - 1] not in " \t":
                raise ProtocolError(f"Malformed authentication challenge {value[:80]!r}")
            first = _param(scanner)
            if first is None:
                token = scanner.take(_TOKEN68_CHARS)
                token += scanner.take(frozenset("="))
                if not token or not scanner.at_end_of_item():
                    raise ProtocolError(f"Malformed authentication challenge {value[:80]!r}")
                challenge.token68 = token
                scanner.skip_separators()
                continue
            challenge.params[first[0]] = first[1]
            while True:
                if not scanner.at_end_of_item():
                    raise ProtocolError(f"Malformed authentication challenge {value[:80]!r}")
                scanner.skip_separators()
                param = _param(scanner)
                if param is None:
                    break  # the next challenge's scheme, or the end
                challenge.params.setdefault(*param)
    return challenges


def _usable_digest(challenge: Challenge) -> bool:
    params = challenge.params
    qops = [qop.strip() for qop in params.get("qop", "auth").split(",")]
    return "nonce" in params and params.get("algorithm", "MD5").upper() == "MD5" and "auth" in qops


def choose_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: a Digest one enchufe can answer (MD5, ``qop`` absent or
    offering ``auth``) over a Basic one, as ncat; ``None`` if neither is there."""
    challenges = list(challenges)
    for scheme in ("digest", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme and (scheme == "basic" or _usable_digest(challenge)):
                return challenge
    return None


def _header_text(text: str) -> str:
    """``text`` as a header carries it: its bytes as typed (:func:`typed_bytes`) read as
    latin-1, one character per byte. Everything hashed or compared here is such text, so
    that the bytes hashed are the bytes sent."""
    return typed_bytes(text).decode("latin-1")


def _user_pass(credentials: Credentials) -> tuple[str, str]:
    return _header_text(credentials.username), _header_text(credentials.password or "")


def basic_authorization(credentials: Credentials) -> str:
    """The ``Proxy-Authorization`` value for Basic: ``Basic base64(user:password)``."""
    username, password = _user_pass(credentials)
    return "Basic " + base64.b64encode(f"{username}:{password}".encode("latin-1")).decode("ascii")


def _md5(text: str) -> str:
    """MD5 of header text (see :func:`_user_pass`), as hex."""
    return hashlib.md5(text.encode("latin-1"), usedforsecurity=False).hexdigest()


def _digest_response(ha1: str, method: str, uri: str, nonce: str, qop: str | None, nc: str, cnonce: str) -> str:
    ha2 = _md5(f"{method}:{uri}")
    if qop is None:
        return _md5(f"{ha1}:{nonce}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DigestClient:
    """Answers a Digest challenge, request after request (``nc`` counts them).

    Args:
        credentials: the user name and password.
        challenge: the Digest challenge (see :func:`choose_challenge`).
        random_bytes: gives ``n`` random bytes (``os.urandom``), for each cnonce.
    """

    def __init__(self, credentials: Credentials, challenge: Challenge, random_bytes: Callable[[int], bytes]) -> None:
        self._username, password = _user_pass(credentials)
        self._params = challenge.params
        self._ha1 = _md5(f"{self._username}:{self._params.get('realm', '')}:{password}")
        self._random_bytes = random_bytes
        self._count = 0

    def authorization(self, method: str, uri: str) -> str:
        """The ``Proxy-Authorization`` value for one request, in ncat's order of fields."""
        params = self._params
        nonce = params["nonce"]
        fields = [
            f"username={_quote(self._username)}",
            f"realm={_quote(params.get('realm', ''))}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
        ]
        if "qop" in params:
            self._count += 1
            nc = f"{self._count:08x}"
            cnonce = self._random_bytes(8).hex()
            response = _digest_response(self._ha1, method, uri, nonce, "auth", nc, cnonce)
            fields += ["qop=auth", f"cnonce={_quote(cnonce)}", f"nc={nc}"]
        else:
            response = _digest_response(self._ha1, method, uri, nonce, None, "", "")
        fields.append(f"response={_quote(response)}")
        if "opaque" in params:
            fields.append(f"opaque={_quote(params['opaque'])}")
        return "Digest " + ", ".join(fields)


def _is_header_text(text: str) -> bool:
    """Whether ``text`` can have come from a header: one character per byte (latin-1)."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class ProxyAuthenticator:
    """The one user and password of ``--proxy-auth USER:PASS``, for every client of a
    proxy server; see the module docstring. Used from one thread.

    Args:
        credentials: who may pass.
        secret: the key of the nonces' HMAC (random, made once per server; worker
            processes that serve one port share it, each with its own ``issuer``).
        clock: the time in seconds (``time.time``).
        realm: the realm of the challenges (ncat's ``"Ncat"``).
        nonce_lifetime: seconds a nonce is good for.
        max_nonces: how many nonces' counts are remembered; the oldest are forgotten
            first (a forgotten nonce is stale).
        issuer: who makes the nonces, among authenticators that share ``secret``: a
            client whose next connection reaches another of them (another worker) is
            taken with the nonce it has, counted from then on there too (so a
            request replayed to each of them could pass once per issuer within
            ``nonce_lifetime``); one of its own nonces that it forgot stays stale.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        secret: bytes,
        clock: Callable[[], float],
        realm: str = "Ncat",
        nonce_lifetime: float = 30.0,
        max_nonces: int = 4096,
        issuer: str = "",
    ) -> None:
        username, password = _user_pass(credentials)
        self._username = username.encode("latin-1")
        self._basic = f"{username}:{password}".encode("latin-1")
        self._ha1 = _md5(f"{username}:{realm}:{password}")
        self._secret = secret
        self._clock = clock
        self._realm = realm
        self._lifetime = nonce_lifetime
        self._max_nonces = max_nonces
        self._serial = 0
        self._issuer = issuer
        self._counts: OrderedDict[str, int] = OrderedDict()  # nonce → highest nc seen, oldest first

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def _new_nonce(self) -> str:
        now = self._clock()
        while self._counts and self._is_expired(next(iter(self._counts)), now):
            self._counts.popitem(last=False)
        self._serial += 1
        stamp = f"{now:.6f}-{self._serial}"  # unique even when the clock has not moved
        if self._issuer:
            stamp += f"-{self._issuer}"
        nonce = f"{stamp}-{self._mac(stamp)}"
        self._remember(nonce)
        return nonce

    def _remember(self, nonce: str) -> None:
        self._counts[nonce] = 0
        if len(self._counts) > self._max_nonces:
            self._counts.popitem(last=False)

    def _is_expired(self, nonce: str, now: float) -> bool:
        return not 0 <= now - float(nonce.partition("-")[0]) <= self._lifetime

    def challenges(self, *, stale: bool = False) -> list[tuple[str, str]]:
        """The ``Proxy-Authenticate`` headers of a 407, ncat's: Basic, then Digest with a
        new nonce (``stale=true`` after a :data:`STALE` verdict)."""
        digest = f"Digest realm={_quote(self._realm)}, nonce={_quote(self._new_nonce())}, qop={_quote('auth')}"
        return [
            ("Proxy-Authenticate", f"Basic realm={_quote(self._realm)}"),
            ("Proxy-Authenticate", digest + (", stale=true" if stale else "")),
        ]

    def check(self, method: str, uris: Iterable[str], authorization: str | None) -> str:
        """Judge a request's ``Proxy-Authorization`` value: :data:`OK`, :data:`STALE` or
        :data:`DENIED`. ``uris`` are the spellings of the request's target a Digest
        ``uri`` may have (the target as sent, and its path)."""
        if authorization is None or not _is_header_text(authorization):
            return DENIED
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(rest.strip(), validate=True)
            except (binascii.Error, ValueError):
                return DENIED
            return OK if hmac.compare_digest(given, self._basic) else DENIED
        if scheme.lower() != "digest":
            return DENIED
        try:
            challenges = parse_challenges([authorization])
        except ProtocolError:
            return DENIED
        return self._check_digest(method, list(uris), challenges[0].params) if len(challenges) == 1 else DENIED

    def _check_digest(self, method: str, uris: list[str], params: dict[str, str]) -> str:
        nonce, uri, nc, cnonce = (params.get(name, "") for name in ("nonce", "uri", "nc", "cnonce"))
        stamp, _, mac = nonce.rpartition("-")
        if (
            not hmac.compare_digest(params.get("username", "").encode("latin-1"), self._username)
            or params.get("realm") != self._realm
            or uri not in uris
            or params.get("qop") != "auth"  # the challenge offers qop=auth: the client must use it (RFC 7616)
            or len(nc) != 8
            or not all(char in "0123456789abcdefABCDEF" for char in nc)
            or not cnonce
            or params.get("algorithm", "MD5").upper() != "MD5"
            or not hmac.compare_digest(mac.encode(), self._mac(stamp).encode())
        ):
            return DENIED
        expected = _digest_response(self._ha1, method, uri, nonce, "auth", nc, cnonce)
        if not hmac.compare_digest(params.get("response", "").lower().encode(), expected.encode()):
            return DENIED
        if self._is_expired(nonce, self._clock()):
            return STALE
        if nonce not in self._counts:
            if stamp.split("-")[2:] == ([self._issuer] if self._issuer else []):
                return STALE  # one of ours, forgotten: its count with it
            self._remember(nonce)  # another issuer's (the MAC is ours): counted here from now on
        count = int(nc, 16)
        if count <= self._counts[nonce]:
            return DENIED  # a replay
        self._counts[nonce] = count
        return OK
