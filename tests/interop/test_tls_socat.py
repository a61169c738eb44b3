"""TLS against the real socat (1.7.4): ``OPENSSL:`` and ``OPENSSL-LISTEN:`` ↔ enchufe.

socat is the peer that half-closes TLS cleanly, so the half-close tests are here: at
the end of its stdin socat sends ``close_notify`` (``socket N (fd F) is at EOF`` is its
notice of the other side's) and keeps relaying the other way for ``-t`` seconds, 60
here so that socat never ends a test by itself. ``openssl s_server``/``s_client`` cannot
(the first ends the connection with its stdin, the second ignores its stdin's end), nor
can ncat 7.93 (test_tls_ncat.py).

socat verifies a server by default: its client trusts the test CA (``cafile=``) and
checks the name it connects to (``127.0.0.1``, which the certificate carries); its
listener asks for no client certificate (``verify=0``).

Also here: 100 MiB through TLS each way, checked by sha256.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.interop import (
    BULK_TIMEOUT,
    SOCAT_CLIENT_EOF,
    SOCAT_LINGER,
    SOCAT_LISTENER_EOF,
    Process,
    RandomFile,
    enchufe_listener,
    free_port,
    sha256_file,
    start,
    tcp,
)
from support.procs import enchufe
from support.tls import TlsFiles

if shutil.which("socat") is None:
    pytest.skip("socat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

FROM_ENCHUFE = b"hello from enchufe\n"
FROM_SOCAT = b"hello from socat\x00\xff\r\n"
AFTER_EOF = b"sent after the other side's close_notify\n"
TRUNCATED = "without a TLS close_notify"


@contextlib.contextmanager
def socat_tls_listener(
    tls_files: TlsFiles, *, stdin: object = None, stdout: object = subprocess.PIPE
) -> Iterator[tuple[Process, int]]:
    """``socat -d -d -t 60 OPENSSL-LISTEN:PORT,… -`` on a free port, once it listens."""
    port = free_port()
    address = f"OPENSSL-LISTEN:{port},bind=127.0.0.1,cert={tls_files.server},verify=0"
    with start(["socat", "-d", "-d", *SOCAT_LINGER, address, "-"], stdin=stdin, stdout=stdout) as socat:
        socat.wait_for_line(r" N listening on ")
        yield socat, port


def socat_tls_client(
    tls_files: TlsFiles, port: int, *, stdin: object = None, stdout: object = subprocess.PIPE
) -> Process:
    """``socat -d -d -t 60 - OPENSSL:127.0.0.1:PORT,cafile=CA``: it verifies enchufe."""
    address = f"OPENSSL:127.0.0.1:{port},cafile={tls_files.ca}"
    return start(["socat", "-d", "-d", *SOCAT_LINGER, "-", address], stdin=stdin, stdout=stdout)


def tls_listener(
    tls_files: TlsFiles, sock_dir: str, *options: str, stdin: object = None, stdout: object = subprocess.PIPE
) -> contextlib.AbstractContextManager[tuple[Process, str | int]]:
    """``enchufe -v -l --ssl-cert --ssl-key OPTIONS 127.0.0.1 0``."""
    return enchufe_listener(
        tcp("127.0.0.1"), sock_dir, *tls_files.listener_options, *options, stdin=stdin, stdout=stdout
    )


def tls_client(tls_files: TlsFiles, port: int, *options: str, stdin: object = None, stdout: object = None) -> Process:
    """``enchufe -v --ssl-trustfile CA OPTIONS localhost PORT``: it verifies socat."""
    args = ("-v", "--ssl-trustfile", tls_files.ca, *options, "localhost", str(port))
    return enchufe(*args, stdin=stdin, stdout=subprocess.PIPE if stdout is None else stdout)


# -- a short exchange, each way round ---------------------------------------------------


def test_enchufe_client_talks_to_socat_listener(tls_files: TlsFiles) -> None:
    with socat_tls_listener(tls_files) as (socat, port), tls_client(tls_files, port) as client:
        client.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.write(FROM_SOCAT)
        assert client.read_stdout(len(FROM_SOCAT)) == FROM_SOCAT
        socat.wait_for_line(r" N SSL proto version used: TLSv1\.3$")
        client.close_stdin()
        socat.wait_for_line(SOCAT_LISTENER_EOF)
        socat.close_stdin()
        assert socat.wait() == 0
        assert client.wait() == 0
    assert TRUNCATED not in client.stderr


def test_socat_client_verifies_and_talks_to_enchufe_listener(tls_files: TlsFiles, sock_dir: str) -> None:
    with tls_listener(tls_files, sock_dir) as (listener, port), socat_tls_client(tls_files, int(port)) as socat:
        socat.write(FROM_SOCAT)
        assert listener.read_stdout(len(FROM_SOCAT)) == FROM_SOCAT
        listener.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.wait_for_line(r" N trusting certificate, commonName matches$")
        socat.close_stdin()
        assert listener.wait() == 0
        assert socat.wait() == 0
    assert TRUNCATED not in listener.stderr


# -- half-close, both ways ------------------------------------------------------------------


@pytest.mark.parametrize("enchufe_role", ["client", "listener"])
def test_enchufe_end_of_input_is_close_notify_and_the_peer_still_answers(
    tls_files: TlsFiles, sock_dir: str, enchufe_role: str
) -> None:
    with contextlib.ExitStack() as stack:
        if enchufe_role == "client":
            socat, port = stack.enter_context(socat_tls_listener(tls_files))
            ours = stack.enter_context(tls_client(tls_files, port))
            eof_notice = SOCAT_LISTENER_EOF
        else:
            ours, where = stack.enter_context(tls_listener(tls_files, sock_dir))
            socat = stack.enter_context(socat_tls_client(tls_files, int(where)))
            eof_notice = SOCAT_CLIENT_EOF
        ours.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        ours.close_stdin()
        socat.wait_for_line(eof_notice)  # close_notify reached socat ...
        socat.write(AFTER_EOF)  # ... which still sends, and enchufe still writes it out
        assert ours.read_stdout(len(AFTER_EOF)) == AFTER_EOF
        socat.close_stdin()
        assert ours.wait() == 0
        assert socat.wait() == 0
    assert TRUNCATED not in ours.stderr
    assert ours.stdout == b""


def test_enchufe_client_keeps_sending_after_the_peers_close_notify(tls_files: TlsFiles) -> None:
    """``-k`` in connect mode: the peer's end of stream ends only what it closes."""
    with socat_tls_listener(tls_files) as (socat, port), tls_client(tls_files, port, "-k") as client:
        client.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.close_stdin()  # close_notify: enchufe's stdout ends ...
        assert client.stdout_at_eof()
        client.write(AFTER_EOF)  # ... and what it sends still arrives
        assert socat.read_stdout(len(AFTER_EOF)) == AFTER_EOF
        client.close_stdin()
        socat.wait_for_line(SOCAT_LISTENER_EOF)
        assert socat.wait() == 0
        assert client.wait() == 0
    assert TRUNCATED not in client.stderr


@pytest.mark.parametrize("enchufe_role", ["client", "listener"])
def test_enchufe_sends_its_whole_input_after_the_peers_close_notify(
    tls_files: TlsFiles, sock_dir: str, enchufe_role: str, tmp_path: Path
) -> None:
    """socat's stdin is empty: its close_notify comes at once, and enchufe still sends
    the whole of its file (the remote's end of stream starts the drain)."""
    message = b"".join(b"line %06d of what enchufe sends\n" % n for n in range(30000))
    source = tmp_path / "message"
    source.write_bytes(message)
    with open(source, "rb") as stdin, open("/dev/null", "rb") as nothing, contextlib.ExitStack() as stack:
        if enchufe_role == "client":
            socat, port = stack.enter_context(socat_tls_listener(tls_files, stdin=nothing))
            ours = stack.enter_context(tls_client(tls_files, port, stdin=stdin))
        else:
            ours, where = stack.enter_context(tls_listener(tls_files, sock_dir, stdin=stdin))
            socat = stack.enter_context(socat_tls_client(tls_files, int(where), stdin=nothing))
        assert socat.wait() == 0
        assert ours.wait() == 0
    assert socat.stdout == message
    assert TRUNCATED not in ours.stderr


# -- 100 MiB each way -------------------------------------------------------------------


def test_bulk_enchufe_client_to_socat(tls_files: TlsFiles, random_100mib: RandomFile, received: Path) -> None:
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        with (
            socat_tls_listener(tls_files, stdout=sink) as (socat, port),
            tls_client(tls_files, port, stdin=source) as client,
        ):
            socat.wait_for_line(SOCAT_LISTENER_EOF, BULK_TIMEOUT)
            socat.close_stdin()
            assert socat.wait(BULK_TIMEOUT) == 0
            assert client.wait(BULK_TIMEOUT) == 0
    assert re.search(rf"(?m)^enchufe: {random_100mib.size} bytes sent, 0 bytes received", client.stderr)
    assert sha256_file(received) == random_100mib.sha256


def test_bulk_socat_to_enchufe_listener(
    tls_files: TlsFiles, random_100mib: RandomFile, sock_dir: str, received: Path
) -> None:
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        with (
            tls_listener(tls_files, sock_dir, stdout=sink) as (listener, port),
            socat_tls_client(tls_files, int(port), stdin=source) as socat,
        ):
            assert listener.wait(BULK_TIMEOUT) == 0
            assert socat.wait(BULK_TIMEOUT) == 0
    assert TRUNCATED not in listener.stderr
    assert sha256_file(received) == random_100mib.sha256


def test_enchufe_recv_only_client_ends_on_the_close_notify_of_a_peer_that_waits_for_its_own(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """``socat -u`` sends its file and close_notify, then waits for enchufe's before it
    closes: enchufe must see the end that came with the last records, not wait for the
    socket to end."""
    message = tmp_path / "message"
    message.write_bytes(b"".join(b"record %07d\n" % n for n in range(100000)))
    port = free_port()
    address = f"OPENSSL-LISTEN:{port},bind=127.0.0.1,cert={tls_files.server},verify=0"
    with (
        open(message, "rb") as stdin,
        start(["socat", "-d", "-d", "-u", "-", address], stdin=stdin) as socat,
    ):
        socat.wait_for_line(r" N listening on ")
        with enchufe("--ssl", "--recv-only", "127.0.0.1", str(port), stdin=b"") as client:
            assert client.wait() == 0
            assert client.stdout == message.read_bytes()
        assert socat.wait() == 0
