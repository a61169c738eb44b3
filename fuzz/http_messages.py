"""Fuzz enchufe.proto.http: request and response heads, request bodies (chunked too).

Named ``http_messages`` so that fuzz/ on ``sys.path`` does not hide the standard
library's ``http`` package.

Invariant: the readers give a head and the bytes after it, ``None`` (need more), or raise
``ProtocolError`` with a status of 400 or 413, nothing else, and the same however the
bytes are cut; a body framer passes the bytes unchanged (body + after == what it was
fed) or raises ``ProtocolError``; what the proxy builds from a head parses back:
``forwarded_request(head)`` is a request for the same method and path, ``connect_request``
for the same host and port, ``status_response`` (for the statuses a proxy answers with) a response of that status.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.errors import ProtocolError
    from enchufe.proto.http import (
        REASONS,
        BodyFramer,
        RequestReader,
        ResponseReader,
        connect_request,
        forwarded_request,
        status_response,
    )

Reader = RequestReader | ResponseReader


def _read(reader: Reader, pieces: list[bytes]) -> object:
    """What ``reader`` makes of the pieces: ``(head, after)``, ``None`` or the error's status."""
    try:
        for index, piece in enumerate(pieces):
            found = reader.feed(piece)
            if found is not None:
                head, after = found
                return head, after + b"".join(pieces[index + 1 :])
    except ProtocolError as error:
        assert error.status in (400, 413), error.status
        return error.status
    return None


def _same(one: object, other: object) -> bool:
    if isinstance(one, tuple) and isinstance(other, tuple):
        return repr(one[0]) == repr(other[0]) and one[1] == other[1]
    return one == other


def check(data: bytes) -> None:
    _, pieces = fuzzing.pieces(data)
    whole = b"".join(pieces)
    for reader_class in (RequestReader, ResponseReader):
        at_once = _read(reader_class(), [whole])
        assert _same(_read(reader_class(), pieces), at_once), (at_once, pieces)
        if reader_class is ResponseReader and isinstance(at_once, tuple) and at_once[0].status in REASONS:
            head = at_once[0]
            again = ResponseReader().feed(status_response(head.status))
            assert again is not None and again[0].status == head.status
    found = _read(RequestReader(), [whole])
    if not isinstance(found, tuple):
        return
    request, after = found
    try:
        framer = BodyFramer(request)
    except ProtocolError:
        return
    passed = bytearray()
    try:
        for start in range(0, len(after), 7):
            body, rest = framer.feed(after[start : start + 7])
            passed += body + rest
    except ProtocolError:
        return
    assert passed == after
    if request.form == "absolute":
        forwarded = RequestReader().feed(forwarded_request(request))
        assert forwarded is not None, request
        assert (forwarded[0].method, forwarded[0].target) == (request.method, request.path)
    elif request.form == "authority":
        assert request.host is not None and request.port is not None
        connect = RequestReader().feed(connect_request(request.host, request.port))
        assert connect is not None and (connect[0].host, connect[0].port) == (request.host, request.port)


if __name__ == "__main__":
    fuzzing.main(check)
