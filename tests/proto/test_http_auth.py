"""Proxy authentication: challenges read, Basic and Digest built (RFC 2617's vector, ncat
7.93's bytes) and checked (nonce expiry, replays), and what curl sends accepted."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.errors import ProtocolError
from enchufe.proto.http import RequestReader, connect_request, status_response
from enchufe.proto.http_auth import (
    DENIED,
    OK,
    STALE,
    Challenge,
    DigestClient,
    ProxyAuthenticator,
    basic_authorization,
    choose_challenge,
    parse_challenges,
)
from enchufe.proto.proxy import Credentials

pytestmark = pytest.mark.timeout(30)

ALICE = Credentials("alice", "secret")


def fixed_bytes(value: bytes) -> Callable[[int], bytes]:
    """A "random" source that always gives ``value`` (whatever the count asked)."""

    def random_bytes(count: int) -> bytes:
        return value

    return random_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- reading challenges --------------------------------------------------------------


def test_several_challenges_in_one_header_and_in_several() -> None:
    assert parse_challenges(
        ['Basic realm="Ncat", Digest realm="Ncat", nonce="n1", qop="auth,auth-int"', "Negotiate", "NTLM abc+/=="]
    ) == [
        Challenge("basic", {"realm": "Ncat"}),
        Challenge("digest", {"realm": "Ncat", "nonce": "n1", "qop": "auth,auth-int"}),
        Challenge("negotiate"),
        Challenge("ntlm", token68="abc+/=="),
    ]


def test_quoted_strings_unescape_and_tokens_stand_unquoted() -> None:
    [challenge] = parse_challenges(['DIGEST Realm = "a \\"b\\" \\\\c" , nonce=tok, algorithm=md5, , '])
    assert challenge == Challenge("digest", {"realm": 'a "b" \\c', "nonce": "tok", "algorithm": "md5"})


def test_schemes_without_parameters_between_others() -> None:
    assert parse_challenges(["Foo, Basic realm=x, Bar"]) == [
        Challenge("foo"),
        Challenge("basic", {"realm": "x"}),
        Challenge("bar"),
    ]


@pytest.mark.parametrize("value", ['Basic realm="open', "=x", 'Basic realm="a" junk', "Basic a b", 'Basic"x"'])
def test_malformed_challenges(value: str) -> None:
    with pytest.raises(ProtocolError):
        parse_challenges([value])


def test_digest_is_chosen_over_basic_when_it_can_be_answered() -> None:
    basic = Challenge("basic", {"realm": "r"})
    digest = Challenge("digest", {"realm": "r", "nonce": "n", "qop": "auth-int, auth"})
    assert choose_challenge([basic, digest]) is digest
    assert choose_challenge([digest, basic]) is digest
    unanswerable = [
        Challenge("digest", {"realm": "r"}),  # no nonce
        Challenge("digest", {"realm": "r", "nonce": "n", "algorithm": "SHA-256"}),
        Challenge("digest", {"realm": "r", "nonce": "n", "qop": "auth-int"}),
    ]
    assert choose_challenge([*unanswerable, basic]) is basic
    assert choose_challenge([*unanswerable, Challenge("negotiate")]) is None
    assert choose_challenge([Challenge("digest", {"realm": "r", "nonce": "n"})]) is not None


# --- answering -----------------------------------------------------------------------


def test_basic_as_ncat_sends_it() -> None:
    assert basic_authorization(ALICE) == "Basic YWxpY2U6c2VjcmV0"  # ncat 7.93's for alice:secret
    assert basic_authorization(Credentials("alice")) == "Basic YWxpY2U6"


def test_digest_matches_the_rfc_2617_example() -> None:
    challenge = Challenge(
        "digest",
        {
            "realm": "testrealm@host.com",
            "qop": "auth,auth-int",
            "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
        },
    )
    client = DigestClient(Credentials("Mufasa", "Circle Of Life"), challenge, fixed_bytes(bytes.fromhex("0a4f113b")))
    assert client.authorization("GET", "/dir/index.html") == (
        'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="/dir/index.html", qop=auth, cnonce="0a4f113b", nc=00000001, '
        'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


def test_digest_with_qop_is_ncats_byte_for_byte_and_counts_requests() -> None:
    challenge = Challenge("digest", {"realm": "Ncat", "nonce": "abc123", "qop": "auth", "opaque": "op1"})
    client = DigestClient(ALICE, challenge, fixed_bytes(bytes.fromhex("40a8e85034ab4086")))
    # What ncat 7.93 sent for CONNECT 127.0.0.1:80 with its cnonce 40a8e85034ab4086.
    assert client.authorization("CONNECT", "127.0.0.1:80") == (
        'Digest username="alice", realm="Ncat", nonce="abc123", uri="127.0.0.1:80", qop=auth, '
        'cnonce="40a8e85034ab4086", nc=00000001, response="6997e070bc6d169db912610e540e0227", opaque="op1"'
    )
    assert "nc=00000002" in client.authorization("CONNECT", "127.0.0.1:80")


def test_digest_without_qop_is_ncats_byte_for_byte() -> None:
    client = DigestClient(ALICE, Challenge("digest", {"realm": "Ncat", "nonce": "abc123"}), fixed_bytes(b""))
    assert client.authorization("CONNECT", "127.0.0.1:80") == (
        'Digest username="alice", realm="Ncat", nonce="abc123", uri="127.0.0.1:80", '
        'response="88c8e9aa1afc06dd9b899812cfa8c5ed"'
    )


# --- checking ------------------------------------------------------------------------


def authenticator(clock: Clock | None = None, **kwargs: float) -> ProxyAuthenticator:
    return ProxyAuthenticator(ALICE, secret=b"k" * 16, clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


def answer(server: ProxyAuthenticator, credentials: Credentials = ALICE, **kwargs: bool) -> DigestClient:
    """A client answering the Digest challenge ``server`` issues now."""
    challenges = parse_challenges(value for _, value in server.challenges(**kwargs))
    digest = choose_challenge(challenges)
    assert digest is not None and digest.scheme == "digest"
    return DigestClient(credentials, digest, fixed_bytes(b"\x01" * 8))


def test_challenges_are_ncats_basic_then_digest() -> None:
    headers = authenticator().challenges()
    assert headers[0] == ("Proxy-Authenticate", 'Basic realm="Ncat"')
    name, digest = headers[1]
    assert name == "Proxy-Authenticate"
    assert digest.startswith('Digest realm="Ncat", nonce="1000000.000000-') and digest.endswith('", qop="auth"')
    assert authenticator().challenges(stale=True)[1][1].endswith(", stale=true")


def test_basic_is_checked() -> None:
    server = authenticator()
    assert server.check("CONNECT", ["h:1"], basic_authorization(ALICE)) == OK
    assert server.check("CONNECT", ["h:1"], "basic  YWxpY2U6c2VjcmV0 ") == OK
    assert server.check("CONNECT", ["h:1"], basic_authorization(Credentials("alice", "wrong"))) == DENIED
    assert server.check("CONNECT", ["h:1"], "Basic !!!") == DENIED
    assert server.check("CONNECT", ["h:1"], None) == DENIED
    assert server.check("CONNECT", ["h:1"], "Bearer abc") == DENIED


def test_digest_is_checked_and_a_replay_refused() -> None:
    server = authenticator()
    client = answer(server)
    first = client.authorization("CONNECT", "h:1")
    assert server.check("CONNECT", ["h:1"], first) == OK
    assert server.check("CONNECT", ["h:1"], first) == DENIED  # the same nc again
    assert server.check("CONNECT", ["h:1"], client.authorization("CONNECT", "h:1")) == OK  # nc=2


@pytest.mark.parametrize(
    ("change", "method", "uri"),
    [
        (lambda text: text.replace('response="', 'response="0'), "CONNECT", "h:1"),
        (lambda text: text.replace('username="alice"', 'username="bob"'), "CONNECT", "h:1"),
        (lambda text: text.replace('realm="Ncat"', 'realm="Other"'), "CONNECT", "h:1"),
        (lambda text: text.replace('nonce="1000000.000000-', 'nonce="1000000.000001-'), "CONNECT", "h:1"),
        (lambda text: text.replace(", qop=auth", ""), "CONNECT", "h:1"),
        (lambda text: text, "GET", "h:1"),  # signed for another method
        (lambda text: text, "CONNECT", "other:1"),  # for another target
        (lambda text: text + ', algorithm="SHA-256"', "CONNECT", "h:1"),
        (lambda text: text.replace('username="alice", ', 'username="alice" '), "CONNECT", "h:1"),
    ],
)
def test_digest_that_does_not_add_up_is_denied(change: Callable[[str], str], method: str, uri: str) -> None:
    server = authenticator()
    authorization = change(answer(server).authorization("CONNECT", "h:1"))
    assert server.check(method, [uri], authorization) == DENIED


def test_digest_with_the_wrong_password_is_denied() -> None:
    server = authenticator()
    assert server.check(
        "CONNECT", ["h:1"], answer(server, Credentials("alice", "x")).authorization("CONNECT", "h:1")
    ) == (DENIED)


def test_an_old_nonce_is_stale_and_a_new_one_works() -> None:
    clock = Clock()
    server = authenticator(clock, nonce_lifetime=10.0)
    client = answer(server)
    clock.now += 10.5
    assert server.check("CONNECT", ["h:1"], client.authorization("CONNECT", "h:1")) == STALE
    assert server.check("CONNECT", ["h:1"], answer(server, stale=True).authorization("CONNECT", "h:1")) == OK
    clock.now -= 100  # a clock stepped back makes every nonce from the future stale too
    assert server.check("CONNECT", ["h:1"], answer(server).authorization("CONNECT", "h:1")) == OK
    clock.now += 100
    assert server.check("CONNECT", ["h:1"], answer(server).authorization("CONNECT", "h:1")) == OK


def test_the_nonce_table_is_bounded_and_a_forgotten_nonce_is_stale() -> None:
    server = authenticator(max_nonces=3)
    client = answer(server)
    for _ in range(3):
        server.challenges()
    assert len(server._counts) == 3
    assert server.check("CONNECT", ["h:1"], client.authorization("CONNECT", "h:1")) == STALE


def test_a_nonce_from_another_secret_is_denied() -> None:
    other = ProxyAuthenticator(ALICE, secret=b"x" * 16, clock=Clock())
    assert authenticator().check("CONNECT", ["h:1"], answer(other).authorization("CONNECT", "h:1")) == DENIED


def test_workers_sharing_the_secret_take_each_others_nonces_once() -> None:
    """--workers: the kernel sends a client's next connection to any worker, with the
    nonce another gave it; each takes it, and refuses a replay of what it has seen."""
    clock = Clock()
    zero, one = (
        ProxyAuthenticator(ALICE, secret=b"k" * 16, clock=clock, issuer=issuer, max_nonces=1) for issuer in "01"
    )
    client = answer(zero)
    first = client.authorization("CONNECT", "h:1")
    assert one.check("CONNECT", ["h:1"], first) == OK
    assert one.check("CONNECT", ["h:1"], first) == DENIED  # a replay, to the same worker
    assert zero.check("CONNECT", ["h:1"], client.authorization("CONNECT", "h:1")) == OK  # nc=2, back home
    mine = answer(one)
    one.challenges()  # its own, forgotten: stale, as without workers
    assert one.check("CONNECT", ["h:1"], mine.authorization("CONNECT", "h:1")) == STALE


def header_as_received(authorization: str) -> str | None:
    """The ``Proxy-Authorization`` value as a proxy server reads it off the wire."""
    found = RequestReader().feed(connect_request("h", 1, [("Proxy-Authorization", authorization)]))
    assert found is not None
    return found[0].headers.get("Proxy-Authorization")


@pytest.mark.parametrize(
    ("credentials", "sent"),
    [
        # Found by fuzz/http_auth.py: argv's bytes that are not UTF-8 reach Python as
        # surrogates, and str.encode() raised UnicodeEncodeError on them.
        (Credentials("\udcff", "x"), b"\xff:x"),
        # A user name outside latin-1: the header's latin-1 encoding raised on it.
        (Credentials("\u20ac", "\u00e9"), "\u20ac:\u00e9".encode()),
    ],
)
def test_credentials_of_any_text_go_as_their_bytes_and_pass(credentials: Credentials, sent: bytes) -> None:
    server = ProxyAuthenticator(credentials, secret=b"k" * 16, clock=Clock())
    basic = basic_authorization(credentials)
    assert base64.b64decode(basic.removeprefix("Basic ")) == sent
    assert server.check("CONNECT", ["h:1"], header_as_received(basic)) == OK
    digest = answer(server, credentials).authorization("CONNECT", "h:1")
    assert server.check("CONNECT", ["h:1"], header_as_received(digest)) == OK


def test_an_authorization_no_header_can_carry_is_denied() -> None:
    assert authenticator().check("CONNECT", ["h:1"], 'Digest username="\u20ac"') == DENIED


@given(st.text(max_size=80))
def test_any_challenge_text_parses_or_is_a_protocol_error(text: str) -> None:
    try:
        challenges = parse_challenges([text])
    except ProtocolError:
        return
    choose_challenge(challenges)


@given(st.text(max_size=120))
def test_any_authorization_is_judged_without_an_exception(text: str) -> None:
    server = authenticator()
    assert server.check("CONNECT", ["h:1"], text) in (OK, STALE, DENIED)
    assert server.check("CONNECT", ["h:1"], "Digest " + text) == DENIED


# --- what curl sends -----------------------------------------------------------------


@pytest.fixture
def challenging_proxy() -> Iterator[tuple[int, list[str], ProxyAuthenticator]]:
    """A proxy that answers each CONNECT with ProxyAuthenticator's 407 or, once the
    credentials pass, 200 and an end; the verdicts are recorded. curl asks again on the
    same connection, ncat on a new one."""
    server = ProxyAuthenticator(ALICE, secret=b"s" * 16, clock=Clock())
    verdicts: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                for _ in range(2):
                    reader, found = RequestReader(), None
                    while found is None:
                        data = conn.recv(4096)
                        if not data:
                            break
                        found = reader.feed(data)
                    if found is None:
                        break
                    head = found[0]
                    verdict = server.check(head.method, [head.target], head.headers.get("Proxy-Authorization"))
                    verdicts.append(verdict)
                    if verdict == OK:
                        conn.sendall(status_response(200))
                        return
                    conn.sendall(status_response(407, server.challenges()))

    thread = threading.Thread(target=serve, name="challenging-proxy")
    thread.start()
    try:
        yield listener.getsockname()[1], verdicts, server
    finally:
        listener.close()
        thread.join(10)


CURL_END = ["--max-time", "5", "http://127.0.0.1:9/"]


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("scheme", ["--proxy-digest", "--proxy-basic", "--proxy-anyauth"])
def test_curl_passes_the_check(
    challenging_proxy: tuple[int, list[str], ProxyAuthenticator],
    scheme: str,
) -> None:
    port, verdicts, _ = challenging_proxy
    subprocess.run(
        ["curl", "-s", "-p", "-x", f"http://127.0.0.1:{port}", scheme, "--proxy-user", "alice:secret", *CURL_END],
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert verdicts[-1] == OK
