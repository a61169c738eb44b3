"""The HTTP proxy server's negotiator: the actions for every kind of request, as ncat
7.93's proxy server answers, and any bytes fuzzed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.http import status_response
from enchufe.proto.http_auth import DigestClient, ProxyAuthenticator, basic_authorization, parse_challenges
from enchufe.proto.http_proxy import MAX_AUTH_ATTEMPTS, HttpProxyNegotiator
from enchufe.proto.proxy import (
    UPSTREAM_FAILURES,
    Close,
    Credentials,
    OpenUpstream,
    RelayResponse,
    Reply,
    SendUpstream,
    StartTunnel,
)

if TYPE_CHECKING:
    from enchufe.proto.proxy import Action

ALICE = Credentials("alice", "secret")
OK_200 = Reply(b"HTTP/1.0 200 OK\r\n\r\n")


def refused(status: int) -> list[Action]:
    return [Reply(status_response(status)), Close()]


def authenticator() -> ProxyAuthenticator:
    return ProxyAuthenticator(ALICE, secret=b"k" * 16, clock=lambda: 5000.0)


def test_connect_opens_a_tunnel_and_early_bytes_go_first() -> None:
    negotiator = HttpProxyNegotiator()
    assert negotiator.receive_data(b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: x\r\n\r\nearly") == [
        OpenUpstream("::1", 8080)
    ]
    assert negotiator.upstream_connected("::1", 5555) == [OK_200, SendUpstream(b"early"), StartTunnel()]
    assert negotiator.receive_data(b"more") == []


def test_connect_split_byte_by_byte() -> None:
    negotiator = HttpProxyNegotiator()
    data = b"CONNECT target.invalid:443 HTTP/1.0\r\n\r\n"
    actions = [action for byte in data for action in negotiator.receive_data(bytes([byte]))]
    assert actions == [OpenUpstream("target.invalid", 443)]
    assert negotiator.upstream_connected("127.0.0.1", 1) == [OK_200, StartTunnel()]


def test_get_is_forwarded_and_the_response_relayed() -> None:
    negotiator = HttpProxyNegotiator()
    head = b"GET http://127.0.0.1:8080/a?b HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n"
    assert negotiator.receive_data(head) == [OpenUpstream("127.0.0.1", 8080)]
    assert negotiator.upstream_connected("127.0.0.1", 1) == [
        SendUpstream(b"GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"),
        RelayResponse(),
    ]
    assert negotiator.receive_data(b"pipelined next request") == []
    assert negotiator.receive_data(b"") == []


def test_post_with_content_length_sends_the_body_as_it_comes() -> None:
    negotiator = HttpProxyNegotiator()
    assert negotiator.receive_data(b"POST http://h/p HTTP/1.0\r\nContent-Length: 11\r\n\r\nhel") == [
        OpenUpstream("h", 80)
    ]
    assert negotiator.upstream_connected("127.0.0.1", 1) == [
        SendUpstream(b"POST /p HTTP/1.0\r\nContent-Length: 11\r\nHost: h\r\nConnection: close\r\n\r\nhel"),
        RelayResponse(),
    ]
    assert negotiator.receive_data(b"lo") == [SendUpstream(b"lo")]
    assert negotiator.receive_data(b" worldEXTRA") == [SendUpstream(b" world")]
    assert negotiator.receive_data(b"after") == []


def test_chunked_post_passes_unchanged() -> None:
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert negotiator.upstream_connected("127.0.0.1", 1)[0] == SendUpstream(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert negotiator.receive_data(b"3\r\nabc\r\n") == [SendUpstream(b"3\r\nabc\r\n")]
    assert negotiator.receive_data(b"0\r\n\r\n") == [SendUpstream(b"0\r\n\r\n")]


def test_a_body_cut_short_or_broken_closes_the_client() -> None:
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
    negotiator.upstream_connected("127.0.0.1", 1)
    assert negotiator.receive_data(b"") == [Close()]
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    negotiator.upstream_connected("127.0.0.1", 1)
    assert negotiator.receive_data(b"zz\r\n") == [Close()]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"PUT http://h/ HTTP/1.0\r\n\r\n", 405),
        (b"get http://h/ HTTP/1.0\r\n\r\n", 405),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 405),
        (b"garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\n\r\n", 400),
        (b"GET ftp://h/ HTTP/1.0\r\n\r\n", 400),
        (b"CONNECT h HTTP/1.0\r\n\r\n", 400),
        (b"POST http://h/ HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET http://h/ HTTP/1.0\r\nX: " + b"a" * 1_000_000, 413),
    ],
)
def test_bad_requests_get_ncats_status_and_an_end(data: bytes, status: int) -> None:
    negotiator = HttpProxyNegotiator()
    assert negotiator.receive_data(data) == refused(status)
    assert negotiator.receive_data(b"more") == []


def test_a_413_comes_at_once_not_after_the_whole_line() -> None:
    negotiator = HttpProxyNegotiator()
    assert negotiator.receive_data(b"GET http://h/ HTTP/1.0\r\nX: ") == []
    assert negotiator.receive_data(b"a" * 65536) == refused(413)


def test_malformed_body_framing_after_the_connect_is_400() -> None:
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nnot hex\r\n")
    assert negotiator.upstream_connected("127.0.0.1", 1) == refused(400)


@pytest.mark.parametrize("reason", sorted(UPSTREAM_FAILURES - {"denied"}))
def test_upstream_failures_are_ncats_504(reason: str) -> None:
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"CONNECT 127.0.0.1:1 HTTP/1.0\r\n\r\n")
    assert negotiator.upstream_failed(reason) == refused(504)


def test_a_forbidden_target_is_403() -> None:
    negotiator = HttpProxyNegotiator()
    negotiator.receive_data(b"GET http://h/ HTTP/1.0\r\n\r\n")
    assert negotiator.upstream_failed("denied") == refused(403)


def test_the_clients_end_before_a_whole_head_closes() -> None:
    negotiator = HttpProxyNegotiator()
    assert negotiator.receive_data(b"CONNECT h:1 HTTP/1.0\r\n") == []
    assert negotiator.receive_data(b"") == [Close()]


def challenge_of(actions: list[Action]) -> bytes:
    assert isinstance(actions[0], Reply)
    assert actions[0].data.startswith(b"HTTP/1.0 407 Proxy Authentication Required\r\n")
    return actions[0].data


def test_without_credentials_407_with_both_challenges_and_the_connection_stays() -> None:
    negotiator = HttpProxyNegotiator(authenticator())
    actions = negotiator.receive_data(b"CONNECT h:1 HTTP/1.0\r\n\r\n")
    assert len(actions) == 1
    text = challenge_of(actions).decode()
    assert 'Proxy-Authenticate: Basic realm="Ncat"\r\nProxy-Authenticate: Digest realm="Ncat", nonce="' in text
    # The next request on the same connection, with Basic, gets through.
    again = f"CONNECT h:1 HTTP/1.0\r\nProxy-Authorization: {basic_authorization(ALICE)}\r\n\r\n".encode()
    assert negotiator.receive_data(again) == [OpenUpstream("h", 1)]


def test_digest_for_a_get_with_the_uri_as_curl_sends_it() -> None:
    server = authenticator()
    negotiator = HttpProxyNegotiator(server)
    text = challenge_of(negotiator.receive_data(b"GET http://h/x HTTP/1.1\r\n\r\n")).decode()
    values = [line.partition(": ")[2] for line in text.split("\r\n") if line.startswith("Proxy-Authenticate")]
    digest = parse_challenges(values)[1]
    answer = DigestClient(ALICE, digest, lambda count: b"\x07" * count).authorization("GET", "/x")
    request = f"GET http://h/x HTTP/1.1\r\nProxy-Authorization: {answer}\r\n\r\n".encode()
    assert negotiator.receive_data(request) == [OpenUpstream("h", 80)]
    forwarded = negotiator.upstream_connected("127.0.0.1", 1)[0]
    assert isinstance(forwarded, SendUpstream) and b"Proxy-Authorization" not in forwarded.data


def test_a_request_with_a_body_or_too_many_tries_is_closed_after_its_407() -> None:
    negotiator = HttpProxyNegotiator(authenticator())
    actions = negotiator.receive_data(b"POST http://h/ HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    challenge_of(actions)
    assert actions[1:] == [Close()]
    negotiator = HttpProxyNegotiator(authenticator())
    for _ in range(MAX_AUTH_ATTEMPTS - 1):
        assert len(negotiator.receive_data(b"CONNECT h:1 HTTP/1.0\r\n\r\n")) == 1
    assert negotiator.receive_data(b"CONNECT h:1 HTTP/1.0\r\n\r\n")[1:] == [Close()]


def test_wrong_credentials_are_407() -> None:
    negotiator = HttpProxyNegotiator(authenticator())
    wrong = basic_authorization(Credentials("alice", "nope"))
    challenge_of(negotiator.receive_data(f"CONNECT h:1 HTTP/1.0\r\nProxy-Authorization: {wrong}\r\n\r\n".encode()))


def test_the_method_is_judged_before_the_credentials_as_ncat() -> None:
    assert HttpProxyNegotiator(authenticator()).receive_data(b"PUT http://h/ HTTP/1.0\r\n\r\n") == refused(405)


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=20), st.booleans())
def test_any_bytes_give_actions_and_never_an_exception(data: bytes, size: int, with_auth: bool) -> None:
    negotiator = HttpProxyNegotiator(authenticator() if with_auth else None)
    data = (b"CONNECT h:1 HTTP/1.0\r\n" if size % 3 == 0 else b"POST http://h/ HTTP/1.1\r\n") + data
    actions: list[Action] = []
    for index in range(0, len(data), size):
        actions += negotiator.receive_data(data[index : index + size])
        if any(isinstance(action, OpenUpstream) for action in actions):
            actions += negotiator.upstream_connected("127.0.0.1", 1)
            break
    actions += negotiator.receive_data(b"tail") + negotiator.receive_data(b"")
    kinds = (Reply, OpenUpstream, SendUpstream, StartTunnel, RelayResponse, Close)
    assert all(isinstance(action, kinds) for action in actions)
