"""TLS against the real ncat (7.93): enchufe's ``--ssl`` client of ``ncat -l --ssl-cert``,
and ``ncat --ssl`` as the client of enchufe's ``-l --ssl-cert --ssl-key``.

ncat 7.93 ends TLS in its own way (ncat-reference §3.1, and what these tests show):

- its client, at the end of its stdin, shuts the socket down without ``close_notify``
  (its TCP ``shutdown``), so its peer sees a truncated stream;
- its listener ends the connection, and exits, on its client's ``close_notify``;
- its client keeps running after the server's ``close_notify`` until its own stdin
  ends (7.93's connect mode).

So half-close over TLS is tested against socat (test_tls_socat.py). Also here: ncat as the
client of a listener with a temporary certificate, whose fingerprint both say.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator

import pytest

from support.interop import NCAT_LISTENING, Process, enchufe_listener, free_port, start, tcp
from support.procs import enchufe
from support.tls import TlsFiles

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

FROM_ENCHUFE = b"hello from enchufe\n"
FROM_NCAT = b"hello from ncat\x00\xff\r\n"
TRUNCATED = r"^enchufe: The peer closed the connection without a TLS close_notify: the data may be truncated\.$"


@contextlib.contextmanager
def ncat_tls_listener(tls_files: TlsFiles) -> Iterator[tuple[Process, int]]:
    """``ncat -v -l --ssl-cert --ssl-key`` on a free port, once it listens."""
    port = free_port()
    with start(["ncat", "-v", "-l", *tls_files.listener_options, "127.0.0.1", str(port)]) as ncat:
        ncat.wait_for_line(NCAT_LISTENING)
        yield ncat, port


def test_enchufe_client_verifies_and_talks_to_ncat_listener(tls_files: TlsFiles) -> None:
    with (
        ncat_tls_listener(tls_files) as (ncat, port),
        enchufe("-v", "--ssl-trustfile", tls_files.ca, "localhost", str(port)) as client,
    ):
        client.write(FROM_ENCHUFE)
        assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        ncat.write(FROM_NCAT)
        assert client.read_stdout(len(FROM_NCAT)) == FROM_NCAT
        # enchufe's close_notify ends ncat's listener (it answers with its own).
        client.close_stdin()
        assert ncat.wait() == 0
        assert client.wait() == 0
    assert ncat.stdout == b""
    assert not re.search(TRUNCATED, client.stderr, re.MULTILINE), client.stderr
    assert re.search(r"(?m)^enchufe: 19 bytes sent, 19 bytes received in ", client.stderr), client.stderr


def test_ncat_client_verifies_and_talks_to_enchufe_listener(tls_files: TlsFiles, sock_dir: str) -> None:
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options) as (listener, port),
        start(["ncat", "-v", "--ssl-trustfile", tls_files.ca, "localhost", str(port)]) as ncat,
    ):
        ncat.write(FROM_NCAT)
        assert listener.read_stdout(len(FROM_NCAT)) == FROM_NCAT
        listener.write(FROM_ENCHUFE)
        assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        # The listener's close_notify: ncat 7.93 reads it as the end and runs on ...
        listener.close_stdin()
        assert ncat.stdout_at_eof()
        # ... until its stdin ends, when it shuts the socket down without close_notify.
        ncat.close_stdin()
        assert ncat.wait() == 0
        assert listener.wait() == 0
    assert re.search(r"(?m)^Ncat: SSL connection to 127\.0\.0\.1:\d+\. enchufe test server$", ncat.stderr)
    assert re.search(TRUNCATED, listener.stderr, re.MULTILINE), listener.stderr


def test_ncat_clients_end_of_input_is_a_truncation_for_enchufe(tls_files: TlsFiles, sock_dir: str) -> None:
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options) as (listener, port),
        start(["ncat", "--ssl", "127.0.0.1", str(port)], stdin=FROM_NCAT) as ncat,
    ):
        assert listener.read_stdout(len(FROM_NCAT)) == FROM_NCAT
        listener.wait_for_line(TRUNCATED)  # what came is all there is, and enchufe says so
        assert listener.wait() == 0
        assert listener.stdout == b""
        assert ncat.wait() == 0


def test_ncat_client_offers_alpn_that_enchufe_listener_picks(tls_files: TlsFiles, sock_dir: str) -> None:
    """ncat's listener refuses ``--ssl-alpn``; enchufe's picks the first of its own."""
    options = (*tls_files.listener_options, "--ssl-alpn", "h2,http/1.1")
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *options) as (listener, port),
        start(["ncat", "--ssl-alpn", "http/1.1,h2", "127.0.0.1", str(port)]) as ncat,
    ):
        listener.wait_for_line(r"^enchufe: ALPN protocol chosen: h2$")
        listener.close_stdin()
        assert ncat.stdout_at_eof()
        ncat.close_stdin()
        assert ncat.wait() == 0
        assert listener.wait() == 0


def test_ncat_client_that_refuses_the_certificate_fails_enchufe_listener(tls_files: TlsFiles, sock_dir: str) -> None:
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options) as (listener, port),
        start(["ncat", "--ssl-trustfile", tls_files.other_ca, "localhost", str(port)], stdin=FROM_NCAT) as ncat,
    ):
        assert ncat.wait() == 1
        # ncat's alert, in OpenSSL's words, then the single-shot listener's end.
        listener.wait_for_line(r"^enchufe: Failed SSL connection from 127\.0\.0\.1: tlsv1 alert unknown ca$")
        assert listener.wait() == 1
        assert listener.stdout == b""
    assert ncat.stderr_lines == ["Ncat: Input/output error."]


def test_ncat_client_sees_the_temporary_certificate_enchufe_listener_said(sock_dir: str) -> None:
    """``-l --ssl`` without a certificate makes one, and says its fingerprint, as ncat."""
    fingerprint = r"SHA-1 fingerprint: ((?:[0-9A-F]{4} ){9}[0-9A-F]{4})$"
    with enchufe_listener(tcp("127.0.0.1"), sock_dir, "--ssl") as (listener, port):
        # Said before "Listening on", which enchufe_listener has waited for.
        said = next(m.group(1) for line in listener.stderr_lines if (m := re.match("^enchufe: " + fingerprint, line)))
        with start(["ncat", "-v", "--ssl", "127.0.0.1", str(port)]) as ncat:
            ncat.write(FROM_NCAT)
            assert listener.read_stdout(len(FROM_NCAT)) == FROM_NCAT
            listener.write(FROM_ENCHUFE)
            assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
            assert ncat.wait_for_line("^Ncat: " + fingerprint).group(1) == said
            listener.close_stdin()
            assert ncat.stdout_at_eof()
            ncat.close_stdin()
            assert ncat.wait() == 0
            assert listener.wait() == 0


def test_ncat_client_that_ends_its_input_without_close_notify_still_gets_the_answer(
    tls_files: TlsFiles, sock_dir: str
) -> None:
    """ncat 7.93 ends its stdin with TCP's end alone and reads on: the program behind
    the listener answers after that end, and the answer must reach ncat (OpenSSL 3,
    by default, would refuse to write any more)."""
    program = ("-c", "cat; echo answered after your end")
    with (
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *tls_files.listener_options, *program) as (listener, port),
        start(["ncat", "--ssl", "127.0.0.1", str(port)], stdin=FROM_NCAT) as ncat,
    ):
        assert ncat.wait() == 0
        assert listener.wait() == 0
    assert ncat.stdout == FROM_NCAT + b"answered after your end\n"
