"""HTTP/1.x heads for proxies: parsing (bounded, incremental), body framing, and the
bytes built, held to what ncat 7.93 sends and answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.errors import ProtocolError
from enchufe.proto.http import (
    MAX_HEAD,
    MAX_LINE,
    BodyFramer,
    Headers,
    RequestHead,
    RequestReader,
    ResponseReader,
    connect_request,
    forwarded_request,
    status_response,
)


def request(data: bytes) -> tuple[RequestHead, bytes]:
    found = RequestReader().feed(data)
    assert found is not None
    return found


def refusal(data: bytes) -> int | None:
    with pytest.raises(ProtocolError) as caught:
        RequestReader().feed(data)
    return caught.value.status


# --- request heads -------------------------------------------------------------------


def test_connect_in_authority_form() -> None:
    head, rest = request(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\nhello")
    assert (head.method, head.form, head.host, head.port, head.version) == (
        "CONNECT",
        "authority",
        "example.test",
        443,
        "HTTP/1.1",
    )
    assert head.headers.get("host") == "example.test:443"
    assert rest == b"hello"


def test_connect_to_an_ipv6_literal_in_brackets() -> None:
    head, _ = request(b"CONNECT [::1]:8080 HTTP/1.0\r\n\r\n")
    assert (head.host, head.port, head.authority) == ("::1", 8080, "[::1]:8080")


@pytest.mark.parametrize(
    "target",
    [
        b"example.test",
        b"example.test:",
        b":80",
        b"[::1]",
        b"[::1]80",
        b"[nope]:80",
        b"a:b:80",
        b"h:0",
        b"h:65536",
        b"h:x",
    ],
)
def test_connect_needs_a_host_and_a_port(target: bytes) -> None:
    assert refusal(b"CONNECT " + target + b" HTTP/1.0\r\n\r\n") == 400


def test_absolute_form() -> None:
    head, _ = request(b"GET http://example.test:8080/a/b?c=d HTTP/1.1\r\n\r\n")
    assert (head.form, head.host, head.port, head.authority, head.path) == (
        "absolute",
        "example.test",
        8080,
        "example.test:8080",
        "/a/b?c=d",
    )
    head, _ = request(b"GET HTTP://example.test HTTP/1.0\r\n\r\n")
    assert (head.host, head.port, head.path) == ("example.test", 80, "/")
    head, _ = request(b"GET http://[::1]?q HTTP/1.0\r\n\r\n")
    assert (head.host, head.port, head.authority, head.path) == ("::1", 80, "[::1]", "/?q")


@pytest.mark.parametrize("target", [b"ftp://h/", b"http://u:p@h/", b"http:///", b"http://h/#f", b"h/x"])
def test_absolute_form_other_than_plain_http_is_refused(target: bytes) -> None:
    assert refusal(b"GET " + target + b" HTTP/1.0\r\n\r\n") == 400


def test_origin_and_asterisk_forms() -> None:
    assert request(b"GET /x HTTP/1.0\r\n\r\n")[0].form == "origin"
    assert request(b"OPTIONS * HTTP/1.1\r\n\r\n")[0].form == "asterisk"


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\r\n\r\n",
        b"GET http://h/ HTTP/2.0\r\n\r\n",
        b"GET  http://h/ HTTP/1.0\r\n\r\n",
        b"GET http://h/ HTTP/1.0 x\r\n\r\n",
        b"G(T http://h/ HTTP/1.0\r\n\r\n",
        b"GET http://h/\x7f HTTP/1.0\r\n\r\n",
        b"GET http://h/ HTTP/1.0\r\nNo colon\r\n\r\n",
        b"GET http://h/ HTTP/1.0\r\nSpace : before\r\n\r\n",
        b"GET http://h/ HTTP/1.0\r\nX: a\x00b\r\n\r\n",
        b"GET http://h/ HTTP/1.0\r\nX: a\rb\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(data: bytes) -> None:
    assert refusal(data) == 400


def test_folded_header_lines_are_refused_as_such() -> None:
    with pytest.raises(ProtocolError, match="A folded header line") as caught:
        RequestReader().feed(b"GET http://h/ HTTP/1.0\r\nX: a\r\n\tfolded\r\n\r\n")
    assert caught.value.status == 400


def test_headers_keep_their_order_and_names_and_look_up_without_case() -> None:
    head, _ = request(b"GET http://h/ HTTP/1.0\r\nX-A: 1\r\nx-b:2  \r\nX-a:\t3\r\nEmpty:\r\n\r\n")
    assert list(head.headers) == [("X-A", "1"), ("x-b", "2"), ("X-a", "3"), ("Empty", "")]
    assert head.headers.get("x-a") == "1"
    assert head.headers.get_all("X-A") == ["1", "3"]
    assert head.headers.get("missing") is None
    assert len(head.headers) == 4


def test_bare_line_feeds_and_leading_empty_lines_are_accepted() -> None:
    head, rest = request(b"\r\n\nGET http://h/ HTTP/1.0\nX: 1\n\nbody")
    assert (head.method, head.headers.get("X"), rest) == ("GET", "1", b"body")


def test_a_head_split_byte_by_byte_parses_the_same() -> None:
    data = b"CONNECT [::1]:80 HTTP/1.1\r\nA: b\r\n\r\nafter"
    reader = RequestReader()
    for index in range(len(data) - len(b"after") - 1):
        assert reader.feed(data[index : index + 1]) is None
    found = reader.feed(data[len(data) - len(b"after") - 1 :])
    assert found is not None
    assert (found[0].authority, list(found[0].headers), found[1]) == ("[::1]:80", [("A", "b")], b"after")


def test_an_overlong_line_is_413_as_soon_as_it_is_seen() -> None:
    reader = RequestReader()
    assert reader.feed(b"GET http://h/ HTTP/1.0\r\nX: ") is None
    with pytest.raises(ProtocolError) as caught:
        reader.feed(b"a" * MAX_LINE)  # no line end yet: refused without waiting for one
    assert caught.value.status == 413
    assert refusal(b"GET http://h/ HTTP/1.0\r\nX: " + b"a" * 1_000_000 + b"\r\n\r\n") == 413


def test_a_line_at_the_limit_is_accepted_and_one_over_is_not() -> None:
    start = b"GET http://h/ HTTP/1.0\r\n"
    value = b"a" * (MAX_LINE - len(b"X: \r\n"))
    assert request(start + b"X: " + value + b"\r\n\r\n")[0].headers.get("X") == value.decode()
    assert refusal(start + b"X: " + value + b"a\r\n\r\n") == 413


def test_an_overlong_head_is_413() -> None:
    line = b"X: " + b"a" * 1000 + b"\r\n"
    assert refusal(b"GET http://h/ HTTP/1.0\r\n" + line * (MAX_HEAD // len(line) + 1) + b"\r\n") == 413
    reader = RequestReader(max_head=100)
    assert reader.feed(b"GET http://h/ HTTP/1.0\r\n" + b"X: 1\r\n" * 12) is None
    with pytest.raises(ProtocolError):
        reader.feed(b"X: 1\r\n" * 2)


# --- response heads ------------------------------------------------------------------


def test_response_heads() -> None:
    found = ResponseReader().feed(b"HTTP/1.1 407 Proxy Authentication Required\r\nA: 1\r\n\r\ndata")
    assert found is not None
    head, rest = found
    assert (head.version, head.status, head.reason, head.headers, rest) == (
        "HTTP/1.1",
        407,
        "Proxy Authentication Required",
        Headers([("A", "1")]),
        b"data",
    )
    found = ResponseReader().feed(b"HTTP/1.0 200\r\n\r\n")
    assert found is not None and (found[0].status, found[0].reason) == (200, "")


@pytest.mark.parametrize(
    "data", [b"garbage\r\n\r\n", b"HTTP/1.0 20 OK\r\n\r\n", b"HTTP/1.0 2000 OK\r\n\r\n", b"HTTP/1.0 abc\r\n\r\n"]
)
def test_malformed_responses(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseReader().feed(data)


# --- bodies --------------------------------------------------------------------------


def framer(headers: bytes) -> BodyFramer:
    return BodyFramer(request(b"POST http://h/ HTTP/1.1\r\n" + headers + b"\r\n")[0])


def test_content_length_body_ends_where_it_says() -> None:
    body = framer(b"Content-Length: 5\r\n")
    assert not body.done
    assert body.feed(b"hel") == (b"hel", b"")
    assert body.feed(b"loNEXT") == (b"lo", b"NEXT")
    assert body.done
    assert body.feed(b"more") == (b"", b"more")


def test_no_body_without_framing_headers() -> None:
    assert framer(b"").done
    assert framer(b"Content-Length: 0\r\n").done


def test_chunked_body_with_extensions_and_trailers_passes_unchanged() -> None:
    data = b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nTrailer-A: x\r\n\r\n"
    body = framer(b"Transfer-Encoding: chunked\r\n")
    assert body.feed(data + b"NEXT") == (data, b"NEXT")
    assert body.done
    body = framer(b"Transfer-Encoding: Chunked\r\n")
    passed = b"".join(body.feed(data[index : index + 1])[0] for index in range(len(data)))
    assert passed == data and body.done


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: 1e3\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ],
)
def test_bad_framing_is_400(headers: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        framer(headers)
    assert caught.value.status == 400


def test_repeated_equal_content_lengths_are_one() -> None:
    body = framer(b"Content-Length: 2, 2\r\nContent-Length: 2\r\n")
    assert body.feed(b"abc") == (b"ab", b"c")


@pytest.mark.parametrize("data", [b"x\r\n", b"5\r\nhelloX\r\n", b"5" * 2000, b"0\r\nbad trailer\r\n"])
def test_malformed_chunked_bodies_are_400(data: bytes) -> None:
    body = framer(b"Transfer-Encoding: chunked\r\n")
    with pytest.raises(ProtocolError) as caught:
        body.feed(data)
    assert caught.value.status == 400


# --- building ------------------------------------------------------------------------


def test_connect_request_is_ncats() -> None:
    # ncat 7.93 --proxy 127.0.0.1:P 127.0.0.1 80 (and ::1 80) sent exactly these.
    assert connect_request("127.0.0.1", 80) == b"CONNECT 127.0.0.1:80 HTTP/1.0\r\n\r\n"
    assert connect_request("::1", 80) == b"CONNECT [::1]:80 HTTP/1.0\r\n\r\n"
    assert connect_request("h", 1, [("Proxy-Authorization", "Basic YQ==")]) == (
        b"CONNECT h:1 HTTP/1.0\r\nProxy-Authorization: Basic YQ==\r\n\r\n"
    )


def test_forwarded_request_drops_hop_by_hop_headers() -> None:
    head, _ = request(
        b"GET http://127.0.0.1:8080/a/b?c=d HTTP/1.1\r\nHost: elsewhere\r\nConnection: keep-alive, X-Foo\r\n"
        b"X-Foo: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n"
        b"Proxy-Authenticate: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"
    )
    assert forwarded_request(head) == (
        b"GET /a/b?c=d HTTP/1.1\r\nUser-Agent: t\r\nAccept: */*\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
    )


def test_forwarded_request_keeps_the_body_framing() -> None:
    head, _ = request(b"POST http://h HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: a/b\r\n\r\n")
    assert forwarded_request(head) == (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: a/b\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    head, _ = request(b"POST http://h/ HTTP/1.0\r\nContent-Length: 5\r\n\r\n")
    assert forwarded_request(head) == b"POST / HTTP/1.0\r\nContent-Length: 5\r\nHost: h\r\nConnection: close\r\n\r\n"


def test_status_responses_are_ncats_byte_for_byte() -> None:
    # As ncat 7.93 -l --proxy-type http answered raw requests.
    assert status_response(200) == b"HTTP/1.0 200 OK\r\n\r\n"
    assert status_response(400) == b"HTTP/1.0 400 Bad Request\r\n\r\n"
    assert status_response(405) == b"HTTP/1.0 405 Method Not Allowed\r\nAllow: CONNECT, GET, HEAD, POST\r\n\r\n"
    assert status_response(413) == b"HTTP/1.0 413 Request Entity Too Large\r\n\r\n"
    assert status_response(504) == b"HTTP/1.0 504 Gateway Timeout\r\n\r\n"
    assert status_response(407, [("Proxy-Authenticate", 'Basic realm="Ncat"')]) == (
        b'HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="Ncat"\r\n\r\n'
    )


# --- fuzz ----------------------------------------------------------------------------

HEADISH = st.lists(
    st.sampled_from([b"GET ", b"CONNECT ", b"POST ", b"http://", b"[::1]", b":80", b"/", b" HTTP/1.1", b"\r\n", b"\n"])
    | st.sampled_from([b"X: y", b" ", b":", b"\t", b"Host: h", b"Content-Length: 3", b"Transfer-Encoding: chunked"])
    | st.binary(max_size=8),
    max_size=30,
).map(b"".join)


def split_feed(reader: RequestReader | ResponseReader, data: bytes, size: int) -> object:
    """Feed ``data`` in pieces of ``size``: the first head found, ``None``, or the error's status."""
    try:
        for index in range(0, len(data), size):
            found = reader.feed(data[index : index + size])
            if found is not None:
                head, rest = found
                return repr(head), rest + data[index + size :]
    except ProtocolError as error:
        return error.status
    return None


@given(HEADISH, st.integers(min_value=1, max_value=8))
def test_any_bytes_give_a_head_need_more_or_protocol_error_the_same_however_split(data: bytes, size: int) -> None:
    whole = split_feed(RequestReader(), data, max(len(data), 1))
    assert split_feed(RequestReader(), data, size) == whole
    assert split_feed(RequestReader(), data, 1) == whole
    whole_response = split_feed(ResponseReader(), data, max(len(data), 1))
    assert split_feed(ResponseReader(), data, size) == whole_response


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_the_reader_holds_no_more_than_its_bounds(data: bytes, size: int) -> None:
    reader = RequestReader(max_line=32, max_head=64)
    try:
        for index in range(0, len(data) * 4, size):
            reader.feed((data * 4)[index : index + size])
            assert len(reader._reader._buffer) <= 64 + size
    except ProtocolError as error:
        assert error.status in (400, 413)


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=10))
def test_chunked_framing_of_any_bytes_is_the_same_however_split(data: bytes, size: int) -> None:
    def run(piece: int) -> object:
        body = framer(b"Transfer-Encoding: chunked\r\n")
        passed = b""
        try:
            for index in range(0, len(data), piece):
                part, after = body.feed(data[index : index + piece])
                passed += part
                if body.done:
                    return passed, after + data[index + piece :]
        except ProtocolError as error:
            return error.status
        assert passed == data  # nothing is held back: every byte of an unfinished body passed
        return passed

    assert run(size) == run(max(len(data), 1))


@given(
    st.from_regex(r"[A-Za-z0-9.-]{1,20}", fullmatch=True),
    st.integers(min_value=1, max_value=65535),
    st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True), st.text("abc ;=", max_size=10))),
)
def test_a_built_connect_request_reads_back(host: str, port: int, fields: list[tuple[str, str]]) -> None:
    fields = [(name, value.strip()) for name, value in fields]
    head, rest = request(connect_request(host, port, fields))
    assert (head.method, head.host, head.port, list(head.headers), rest) == ("CONNECT", host, port, fields, b"")
