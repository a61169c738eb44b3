"""HTTP/1.x message heads, bounded, for HTTP proxies: parsing, body framing, building.

What an HTTP proxy reads and writes of HTTP (RFC 9110, RFC 9112), and nothing more:

- :class:`RequestReader` and :class:`ResponseReader` take bytes as they come and give,
  once a whole head has arrived, a :class:`RequestHead` or :class:`ResponseHead` and
  the bytes after it. A head split anywhere (byte by byte) parses the same. A line
  longer than ``max_line`` or a head longer than ``max_head`` is refused as soon as it
  is seen (status 413), never buffered without limit; anything malformed is refused
  with status 400. Lines may end with CRLF or a bare LF (RFC 9112 §2.2); folded header
  lines (obs-fold) are refused.
- :class:`BodyFramer` tells where a request body ends (``Content-Length`` or
  ``chunked``, trailers included) while its bytes pass through unchanged.
- :func:`connect_request`, :func:`forwarded_request` and :func:`status_response`
  build what a client and a proxy server send; the statuses are byte for byte ncat
  7.93's.

Every bad input raises :class:`~enchufe.errors.ProtocolError`, whose ``status`` is the
answer a proxy server gives (400, 413, ...), and nothing else.
"""

from __future__ import annotations

import ipaddress

from enchufe.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "HOP_BY_HOP",
    "MAX_HEAD",
    "MAX_LINE",
    "REASONS",
    "BodyFramer",
    "Headers",
    "RequestHead",
    "RequestReader",
    "ResponseHead",
    "ResponseReader",
    "connect_request",
    "format_authority",
    "forwarded_request",
    "status_response",
]

#: The longest line of a head, its line end included.
MAX_LINE = 8192
#: The longest head, request or status line to the empty line.
MAX_HEAD = 65536
#: The longest chunk-size line (size and extensions) of a chunked body.
MAX_CHUNK_LINE = 1024

#: The headers that concern one connection only, which a proxy does not forward
#: (RFC 9110 §7.6.1), besides those the ``Connection`` header names.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: ncat's reason phrase of each status it answers with.
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    413: "Request Entity Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}

_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_REG_NAME_CHARS = frozenset(b"-._~!$&'()*+,;=%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, status=400)


def _shown(data: bytes) -> str:
    """The start of a bad line, quoted, for a message."""
    return repr(data[:80].decode("latin-1"))


def _is_token(data: bytes) -> bool:
    return bool(data) and all(byte in _TOKEN_CHARS for byte in data)


class Headers:
    """A head's header fields, in the order received, names as sent; looking a name up
    ignores its case."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields = list(fields)

    def get(self, name: str) -> str | None:
        """The first value of field ``name``, or ``None``."""
        name = name.lower()
        return next((value for key, value in self._fields if key.lower() == name), None)

    def get_all(self, name: str) -> list[str]:
        """Every value of field ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._fields if key.lower() == name]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._fields == other._fields

    def __hash__(self) -> int:
        return hash(tuple(self._fields))

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class RequestHead:
    """A request's head.

    Attributes:
        method: as sent (methods are case-sensitive).
        target: the request target as sent.
        version: ``"HTTP/1.0"`` or ``"HTTP/1.1"`` (any ``HTTP/1.x``).
        headers: the header fields.
        form: ``"authority"`` (``host:port``, CONNECT's), ``"absolute"``
            (``http://host[:port]/path``), ``"origin"`` (``/path``) or ``"asterisk"``.
        host: for the authority and absolute forms, the host to connect to (an IPv6
            literal without its brackets); ``None`` otherwise.
        port: the port to connect to (80 when an absolute URI has none); ``None``
            without a host.
        authority: the ``host[:port]`` as the target wrote it (brackets kept), for a
            ``Host`` header; ``None`` without a host.
        path: for the absolute and origin forms, the origin-form target (path and
            query, ``/`` when the URI has no path); ``None`` otherwise.
    """

    __slots__ = ("authority", "form", "headers", "host", "method", "path", "port", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: Headers) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host: str | None = None
        self.port: int | None = None
        self.authority: str | None = None
        self.path: str | None = None
        if method == "CONNECT":
            self.form = "authority"
            self.authority = target
            self.host, self.port = _parse_authority(target, default_port=None)
        elif target == "*":
            self.form = "asterisk"
        elif target.startswith("/"):
            self.form = "origin"
            self.path = target
        else:
            self.form = "absolute"
            self.authority, self.path = _split_absolute(target)
            self.host, self.port = _parse_authority(self.authority, default_port=80)

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.version!r}, {self.headers!r})"


class ResponseHead:
    """A response's head: ``version`` (``HTTP/1.x``), ``status`` (100 to 999), ``reason``
    (possibly empty) and ``headers``."""

    __slots__ = ("headers", "reason", "status", "version")

    def __init__(self, version: str, status: int, reason: str, headers: Headers) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers

    def __repr__(self) -> str:
        return f"ResponseHead({self.version!r}, {self.status!r}, {self.reason!r}, {self.headers!r})"


def _split_absolute(target: str) -> tuple[str, str]:
    """``http://authority/path`` → ``(authority, "/path")``."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise _bad(f"Unsupported request target {target[:80]!r}: an http:// URI is needed")
    cut = min((index for index in (rest.find("/"), rest.find("?")) if index >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise _bad("A request target with user information is refused")
    if "#" in path:
        raise _bad("A request target with a fragment is refused")
    return authority, path if path.startswith("/") else "/" + path


def _parse_authority(authority: str, *, default_port: int | None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (the port optional when ``default_port`` is
    given) → ``(host, port)``, the IPv6 literal without brackets."""
    if authority.startswith("["):
        literal, bracket, rest = authority[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _bad(f"Bad IPv6 address in {authority[:80]!r}") from None
        host = literal
        if rest and not rest.startswith(":"):
            raise _bad(f"Bad authority {authority[:80]!r}")
        port_text: str | None = rest[1:] if rest else None
        if not bracket:
            raise _bad(f"Bad authority {authority[:80]!r}")
    else:
        host, colon, after = authority.rpartition(":")
        if not colon:
            host, port_text = authority, None
        else:
            port_text = after
        if not host or not all(ord(char) in _REG_NAME_CHARS for char in host):
            raise _bad(f"Bad host in {authority[:80]!r}")
    if port_text is None or (port_text == "" and default_port is not None):
        if default_port is None:
            raise _bad(f"A port is needed in {authority[:80]!r}")
        return host, default_port
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise _bad(f"Bad port in {authority[:80]!r}")
    return host, int(port_text)


class _HeadReader:
    """Splits a head off the stream: lines bounded, the head bounded."""

    def __init__(self, max_line: int, max_head: int) -> None:
        self._max_line = max_line
        self._max_head = max_head
        self._buffer = bytearray()
        self._line_start = 0  # where the line being looked at starts in the buffer
        self._lines: list[bytes] = []

    def _feed_lines(self, data: bytes) -> tuple[list[bytes], bytes] | None:
        """The head's lines, line ends removed, and the bytes after the empty line;
        ``None`` while the head is incomplete."""
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\n", self._line_start)
            if end < 0:
                if len(buffer) - self._line_start > self._max_line:
                    raise ProtocolError("A header line is too long", status=413)
                if len(buffer) > self._max_head:
                    raise ProtocolError("The head is too large", status=413)
                return None
            if end + 1 - self._line_start > self._max_line:
                raise ProtocolError("A header line is too long", status=413)
            if end + 1 > self._max_head:
                raise ProtocolError("The head is too large", status=413)
            line = bytes(buffer[self._line_start : end])
            self._line_start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                self._lines.append(line)
            elif self._lines:  # the empty line that ends the head
                rest = bytes(buffer[self._line_start :])
                lines, self._lines = self._lines, []
                buffer.clear()
                self._line_start = 0
                return lines, rest
            # An empty line before the start line is ignored (RFC 9112 §2.2).


def _parse_headers(lines: list[bytes]) -> Headers:
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise _bad("A folded header line is refused")
        name, colon, value = line.partition(b":")
        if not colon or not _is_token(name):
            raise _bad(f"Malformed header line {_shown(line)}")
        value = value.strip(b" \t")
        if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
            raise _bad(f"A control character in header {name.decode('ascii')!r}")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return Headers(fields)


def _parse_version(text: bytes) -> str:
    if len(text) != 8 or not text.startswith(b"HTTP/1.") or not text[7:].isdigit():
        raise _bad(f"Unsupported HTTP version {_shown(text)}")
    return text.decode("ascii")


class RequestReader:
    """Reads one request head from the bytes a client sends.

    Args:
        max_line: the longest line accepted, its line end included.
        max_head: the longest head accepted.
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_head: int = MAX_HEAD) -> None:
        self._reader = _HeadReader(max_line, max_head)

    def feed(self, data: bytes) -> tuple[RequestHead, bytes] | None:
        """Take ``data``: the head and the bytes after it once it is whole, else ``None``.

        Raises:
            ProtocolError: the head is malformed (status 400) or too large (413).
        """
        found = self._reader._feed_lines(data)
        if found is None:
            return None
        lines, rest = found
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not _is_token(parts[0]) or not parts[1]:
            raise _bad(f"Malformed request line {_shown(lines[0])}")
        method, target, version = parts
        if any(byte <= 0x20 or byte >= 0x7F for byte in target):
            raise _bad("A request target with a control or non-ASCII character")
        headers = _parse_headers(lines[1:])
        return RequestHead(method.decode("ascii"), target.decode("ascii"), _parse_version(version), headers), rest


class ResponseReader:
    """Reads one response head from the bytes a server (or proxy) sends.

    Args:
        max_line: the longest line accepted, its line end included.
        max_head: the longest head accepted.
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_head: int = MAX_HEAD) -> None:
        self._reader = _HeadReader(max_line, max_head)

    def feed(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        """Take ``data``: the head and the bytes after it once it is whole, else ``None``.

        Raises:
            ProtocolError: the head is malformed or too large.
        """
        found = self._reader._feed_lines(data)
        if found is None:
            return None
        lines, rest = found
        version, _, after = lines[0].partition(b" ")
        status, _, reason = after.partition(b" ")
        if len(status) != 3 or not status.isdigit() or status.startswith(b"0"):
            raise _bad(f"Malformed status line {_shown(lines[0])}")
        head = ResponseHead(_parse_version(version), int(status), reason.decode("latin-1"), _parse_headers(lines[1:]))
        return head, rest


class BodyFramer:
    """Where a request's body ends, its bytes passed through unchanged.

    Args:
        head: the request whose body follows.

    Raises:
        ProtocolError: (status 400) conflicting or bad ``Content-Length``, or a
            ``Transfer-Encoding`` other than ``chunked``.
    """

    def __init__(self, head: RequestHead) -> None:
        encodings = head.headers.get_all("Transfer-Encoding")
        lengths = head.headers.get_all("Content-Length")
        self._chunked = bool(encodings)
        self._remaining = 0  # body bytes (or bytes of the current chunk) still to come
        self._state = "data"  # chunked: "size", "data", "data-end", "trailer", "done"
        self._line = bytearray()
        if encodings:
            if lengths:
                raise _bad("Both Transfer-Encoding and Content-Length")
            if [coding.strip().lower() for coding in ",".join(encodings).split(",")] != ["chunked"]:
                raise _bad(f"Unsupported Transfer-Encoding {','.join(encodings)[:80]!r}")
            self._state = "size"
        elif lengths:
            values = {value.strip() for text in lengths for value in text.split(",")}
            if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii() or len(value) > 18:
                raise _bad("A bad Content-Length")
            self._remaining = int(value)
        self.done = not self._chunked and self._remaining == 0
        """Whether the whole body has passed."""

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Take ``data``: ``(body, after)``, the bytes of the body among them (unchanged)
        and those after its end.

        Raises:
            ProtocolError: (status 400) a malformed chunked body.
        """
        if self.done:
            return b"", data
        if not self._chunked:
            cut = min(self._remaining, len(data))
            self._remaining -= cut
            self.done = self._remaining == 0
            return data[:cut], data[cut:]
        position = 0
        while position < len(data) and not self.done:
            if self._state == "data":
                step = min(self._remaining, len(data) - position)
                position += step
                self._remaining -= step
                if self._remaining == 0:
                    self._state = "data-end"
                continue
            end = data.find(b"\n", position)
            piece = data[position : len(data) if end < 0 else end + 1]
            position += len(piece)
            if len(self._line) + len(piece) > MAX_CHUNK_LINE:
                raise _bad("A chunk-size or trailer line is too long")
            self._line += piece
            if end >= 0:
                line = bytes(self._line).removesuffix(b"\n").removesuffix(b"\r")
                self._line.clear()
                self._end_of_line(line)
        return data[:position], data[position:]

    def _end_of_line(self, line: bytes) -> None:
        if self._state == "data-end":
            if line:
                raise _bad("Chunk data longer than its size")
            self._state = "size"
        elif self._state == "size":
            size = line.partition(b";")[0].strip(b" \t")
            if not size or len(size) > 15 or not all(byte in _HEX_DIGITS for byte in size):
                raise _bad(f"Malformed chunk size {_shown(line)}")
            self._remaining = int(size, 16)
            self._state = "data" if self._remaining else "trailer"
        elif line:  # a trailer field
            _parse_headers([line])
        else:
            self.done = True


def format_authority(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _format_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields)


def connect_request(host: str, port: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """``CONNECT host:port HTTP/1.0`` with ``headers``, as ncat sends it."""
    return f"CONNECT {format_authority(host, port)} HTTP/1.0\r\n".encode("ascii") + _format_fields(headers) + b"\r\n"


def forwarded_request(head: RequestHead) -> bytes:
    """The head to send upstream for an absolute-form ``head``: the origin form of its
    target, its version, its headers but the hop-by-hop ones (``Transfer-Encoding``
    kept when it frames the body) and ``Host``, then ``Host`` from the target and
    ``Connection: close`` (ncat's order)."""
    named = {token.strip().lower() for value in head.headers.get_all("Connection") for token in value.split(",")}
    dropped = (HOP_BY_HOP | named | {"host"}) - {"transfer-encoding"}
    kept = [(name, value) for name, value in head.headers if name.lower() not in dropped]
    line = f"{head.method} {head.path} {head.version}\r\n".encode("ascii")
    return line + _format_fields([*kept, ("Host", head.authority or ""), ("Connection", "close")]) + b"\r\n"


def status_response(status: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """``HTTP/1.0 <status> <reason>`` with ``headers``, as ncat's proxy server answers
    (a 405 says ``Allow: CONNECT, GET, HEAD, POST`` as ncat's does)."""
    if status == 405:
        headers = [("Allow", "CONNECT, GET, HEAD, POST"), *headers]
    return f"HTTP/1.0 {status} {REASONS[status]}\r\n".encode("ascii") + _format_fields(headers) + b"\r\n"
