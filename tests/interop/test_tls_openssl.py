"""TLS against OpenSSL's own tools: ``openssl s_server`` and ``openssl s_client`` (3.0).

Both directions: enchufe's ``--ssl`` client of ``s_server`` and ``s_client`` of enchufe's
``-l --ssl-cert --ssl-key`` listener, bytes each way; what the client sent in its hello
(SNI, ALPN) as ``s_server`` prints it; the listener's certificate as ``s_client``
verifies it and the ALPN protocol it picks; and ``--ssl-verify``'s failures against a
real server, each next to ncat 7.93's for the same case.

``s_server`` says everything on its stdout (readiness ``ACCEPT``, the client's
``Hostname in TLS extension: "NAME"`` and ``ALPN protocols advertised by the client:``,
what it received, ``DONE`` on ``close_notify`` and ``ERROR`` on a socket that ended
without it): here that goes to its stderr, so that :meth:`Process.wait_for_line` sees
it line by line. Its ``-servername`` callback, which prints the name, runs only with a
second certificate (``-cert2``), the same one here. ``s_server`` ends the connection
as soon as its stdin ends, so its stdin stays an open pipe until the test is done.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator

import pytest

from support.interop import Process, enchufe_listener, free_port, start, tcp
from support.procs import ENCHUFE, enchufe
from support.tls import TlsFiles

if shutil.which("openssl") is None:
    pytest.skip("openssl is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

FROM_ENCHUFE = b"hello from enchufe\n"
FROM_OPENSSL = b"hello from openssl\n"
#: ``s_server``'s last line about the handshake, printed once it is done.
HANDSHAKE_DONE = r"^CIPHER is "
#: ``s_server`` read the client's close_notify.
CLOSE_NOTIFY_SEEN = r"^DONE$"


@contextlib.contextmanager
def openssl_server(certfile: str, *options: str) -> Iterator[tuple[Process, int]]:
    """``openssl s_server`` for one client on a free port, presenting ``certfile`` (key
    and certificate in one PEM file); yields it once it says ``ACCEPT``, with the port."""
    port = free_port()
    argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", certfile]
    argv += ["-servername", "localhost", "-cert2", certfile, *options]
    with start(["sh", "-c", 'exec "$@" >&2', "sh", *argv]) as server:
        server.wait_for_line(r"^ACCEPT$")
        yield server, port


def s_client(port: int, *options: str) -> Process:
    """``openssl s_client`` of ``127.0.0.1:port``, its stdin an open pipe."""
    return start(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options])


def strict_s_client(port: int, tls_files: TlsFiles, *options: str) -> Process:
    """An ``s_client`` that trusts the test CA alone, wants the certificate to name
    ``localhost`` and gives up otherwise; ``-quiet``: its stdout is the data alone."""
    verify = ["-CAfile", tls_files.ca, "-verify_return_error", "-verify_hostname", "localhost"]
    return s_client(port, "-quiet", "-servername", "localhost", *verify, *options)


# -- enchufe's client, openssl's server ----------------------------------------------------


def test_enchufe_client_talks_to_s_server(tls_files: TlsFiles) -> None:
    with (
        openssl_server(tls_files.server) as (server, port),
        enchufe("-v", "--ssl-trustfile", tls_files.ca, "localhost", str(port)) as client,
    ):
        server.wait_for_line(HANDSHAKE_DONE)
        client.write(FROM_ENCHUFE)
        server.wait_for_line("^" + re.escape(FROM_ENCHUFE.decode().strip()) + "$")
        server.write(FROM_OPENSSL)
        assert client.read_stdout(len(FROM_OPENSSL)) == FROM_OPENSSL
        client.close_stdin()  # close_notify: s_server says DONE, answers with its own, ends
        server.wait_for_line(CLOSE_NOTIFY_SEEN)
        assert client.wait() == 0
        assert server.wait() == 0
    assert "truncated" not in client.stderr  # s_server's close_notify came too
    assert f"SSL connection to 127.0.0.1:{port}." in client.stderr


@pytest.mark.parametrize(
    ("target", "options", "sent_name"),
    [
        pytest.param("localhost", [], "localhost", id="the-target"),
        pytest.param("127.0.0.1", ["--ssl-servername", "example.test"], "example.test", id="ssl-servername"),
        pytest.param("127.0.0.1", [], None, id="none-for-an-address"),
    ],
)
def test_enchufe_client_sends_sni(tls_files: TlsFiles, target: str, options: list[str], sent_name: str | None) -> None:
    with (
        openssl_server(tls_files.server) as (server, port),
        enchufe("--ssl", *options, target, str(port), stdin=b"") as client,
    ):
        server.wait_for_line(HANDSHAKE_DONE)  # the name, if any, is said before
        said = (re.match(r'Hostname in TLS extension: "(.*)"$', line) for line in server.stderr_lines)
        names = [match.group(1) for match in said if match]
        assert names == ([] if sent_name is None else [sent_name])
        assert client.wait() == 0


def test_enchufe_client_offers_alpn_in_its_order(tls_files: TlsFiles) -> None:
    with (
        openssl_server(tls_files.server, "-alpn", "h2,http/1.1") as (server, port),
        enchufe("--ssl-alpn", "http/1.1,h2", "127.0.0.1", str(port), stdin=b"") as client,
    ):
        server.wait_for_line(r"^ALPN protocols advertised by the client: http/1\.1, h2$")
        server.wait_for_line(r"^ALPN protocols selected: h2$")  # the server's preference wins
        assert client.wait() == 0


# -- openssl's client, enchufe's listener ------------------------------------------------


def test_s_client_verifies_and_talks_to_enchufe_listener(tls_files: TlsFiles, sock_dir: str) -> None:
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options) as (listener, port),
        strict_s_client(port, tls_files) as client,
    ):
        client.write(FROM_OPENSSL)
        assert listener.read_stdout(len(FROM_OPENSSL)) == FROM_OPENSSL
        listener.write(FROM_ENCHUFE)
        assert client.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        # The listener's end of input is close_notify: s_client ends on it, with its
        # own close_notify, and the listener ends on that.
        listener.close_stdin()
        assert client.wait() == 0
        assert client.stdout == b""
        assert listener.wait() == 0
    assert "truncated" not in listener.stderr


def test_enchufe_listener_picks_alpn_for_s_client(tls_files: TlsFiles, sock_dir: str) -> None:
    alpn = ("--ssl-alpn", "h2,http/1.1")
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options, *alpn) as (listener, port),
        s_client(port, "-CAfile", tls_files.ca, "-verify_return_error", "-alpn", "http/1.1,h2") as client,
    ):
        listener.wait_for_line(r"^enchufe: ALPN protocol chosen: h2$")
        listener.close_stdin()  # close_notify, after which s_client prints what it saw and ends
        assert client.wait() == 0
        assert listener.wait() == 0
    assert re.search(rb"(?m)^ALPN protocol: h2$", client.stdout), client.stdout
    assert re.search(rb"(?m)^Verify return code: 0 \(ok\)$", client.stdout), client.stdout


# -- --ssl-verify against a real server, next to ncat ---------------------------------------

SECRET = b"the client's secret\n"


def run_client(argv: list[str], certfile: str, target: str = "localhost") -> tuple[int, list[str], bool]:
    """Run ``argv TARGET PORT`` against an ``s_server`` presenting ``certfile``, with
    :data:`SECRET` on stdin: the client's status, its stderr lines, and whether the
    secret reached the server."""
    with openssl_server(certfile) as (server, port), start([*argv, target, str(port)], stdin=SECRET) as client:
        status = client.wait()
        server.close_stdin()  # ends a session that went through; a failed one ended already
        server.wait()
    return status, client.stderr_lines, SECRET.decode().strip() in server.stderr_lines


@pytest.mark.parametrize(
    ("certificate", "trust", "ncat_status", "ncat_line", "enchufe_line"),
    [
        pytest.param(
            "server",
            "other_ca",
            1,
            "Ncat: Input/output error.",
            "enchufe: Certificate verification failed (unable to get local issuer certificate).",
            id="untrusted",
        ),
        pytest.param(
            "expired",
            "ca",
            1,
            "Ncat: Input/output error.",
            "enchufe: Certificate verification failed (certificate has expired).",
            id="expired",
        ),
        pytest.param(
            "wrong_name",
            "ca",
            2,
            "Ncat: Certificate verification error. QUITTING.",
            'enchufe: Certificate verification error: Connected to "localhost", but certificate is for '
            '"other.example".',
            id="wrong-name",
        ),
    ],
)
def test_a_certificate_that_does_not_verify_ends_the_client_and_sends_nothing(
    tls_files: TlsFiles, certificate: str, trust: str, ncat_status: int, ncat_line: str, enchufe_line: str
) -> None:
    """Without ``-v`` ncat 7.93 says only ``Input/output error`` when the chain does not
    verify (the reason comes with ``-v``), and nothing but ``Certificate verification
    error. QUITTING.`` for a name the certificate does not carry, with status 2; enchufe
    says the reason at once, and every verification failure is status 1 (docs/tls.md).
    Neither sends a byte of its input."""
    certfile, trustfile = getattr(tls_files, certificate), getattr(tls_files, trust)
    ncat = run_client(["ncat", "--ssl-trustfile", trustfile], certfile)
    assert ncat == (ncat_status, [ncat_line], False)
    assert run_client([*ENCHUFE, "--ssl-trustfile", trustfile], certfile) == (1, [enchufe_line], False)


def test_a_trusted_certificate_for_the_name_passes(tls_files: TlsFiles) -> None:
    assert run_client([*ENCHUFE, "--ssl-trustfile", tls_files.ca], tls_files.server) == (0, [], True)
