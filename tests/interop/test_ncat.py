"""Interoperability with the real ncat: Debian's 7.93 at /usr/bin/ncat.

enchufe follows ncat 7.96+ semantics; the installed peer is 7.93, which differs in
ways these tests rely on (ncat-reference §3.1). Each reliance is commented where it
happens. Both directions for every transport (TCP and UDP over IPv4 and IPv6, Unix
stream and datagram): enchufe client ↔ ncat listener and ncat client ↔ enchufe
listener, byte-exact; 100 MiB each way over TCP; and the end-of-file rules (§3.6).

Readiness is always an event: ncat's ``Listening on`` line (on a port picked free
beforehand, since 7.93 does not report the real port for port 0), enchufe's
``Listening on HOST:PORT``, data arriving, a stream reaching end of file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import requires_ipv6
from support.interop import (
    BULK_TIMEOUT,
    STREAM_TRANSPORTS,
    TRANSPORTS,
    RandomFile,
    Transport,
    enchufe_listener,
    ncat_listener,
    sha256_file,
    start,
    tcp,
    transport_params,
)
from support.procs import enchufe

if shutil.which("ncat") is None:
    pytest.skip("ncat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop


def _ncat_version() -> tuple[int, ...]:
    out = subprocess.run(["ncat", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"Version (\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(part) for part in found.groups()) if found else (0, 0)


NCAT_VERSION = _ncat_version()
#: The tests that rely on a 7.93 behaviour (ncat-reference §3.1) skip on 7.96+.
requires_old_ncat = pytest.mark.skipif(
    NCAT_VERSION >= (7, 96), reason=f"relies on ncat < 7.96 behaviour; this is {NCAT_VERSION}"
)

FROM_ENCHUFE = b"hello from enchufe\n"
FROM_NCAT = b"hello from ncat\x00\xff\r\n"
MORE_FROM_NCAT = b"more from ncat, after the half-close\n"

ALL = transport_params(TRANSPORTS, requires_ipv6)
STREAMS = transport_params(STREAM_TRANSPORTS, requires_ipv6)


def summary(sent: int, received: int) -> str:
    """The pattern of enchufe's -v closing line in connect mode."""
    return rf"(?m)^enchufe: {sent} bytes sent, {received} bytes received in \d+\.\d\d seconds\.$"


# -- a short exchange, both ways, every transport ------------------------------------------


@pytest.mark.parametrize("transport", ALL)
def test_enchufe_client_talks_to_ncat_listener(transport: Transport, sock_dir: str) -> None:
    with (
        ncat_listener(transport, sock_dir) as (ncat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        # The client speaks first: a UDP listener only learns its peer from the first
        # datagram, and a UDP client sends nothing before it has data (§3.10).
        client.write(FROM_ENCHUFE)
        assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        ncat.write(FROM_NCAT)
        assert client.read_stdout(len(FROM_NCAT)) == FROM_NCAT

        client.close_stdin()
        if transport.datagram:
            # A datagram client quits on stdin EOF (§3.10); no EOF travels over UDP, and
            # ncat 7.93's datagram listener keeps running, even after its own stdin EOF
            # (observed here, although §3.1 says 7.93 quits): killed on exit.
            assert client.wait() == 0
            if transport.is_unix:
                # ncat answered to the client's temporary socket, removed on exit.
                source = ncat.wait_for_line(r"^Ncat: Connection from (/\S+)\.$").group(1)
                assert not os.path.exists(source)
        else:
            # Half-close: ncat's listener sees EOF, closes its stdout and exits 0; then
            # enchufe sees ncat's socket close and exits 0 too.
            assert ncat.wait() == 0
            assert ncat.stdout == b""
            assert client.wait() == 0
        assert client.stdout == b""
        assert re.search(summary(len(FROM_ENCHUFE), len(FROM_NCAT)), client.stderr), client.stderr


@pytest.mark.parametrize("transport", ALL)
def test_ncat_client_talks_to_enchufe_listener(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir) as (server, where),
        start(["ncat", *transport.ncat_connect(where)]) as ncat,
    ):
        ncat.write(FROM_NCAT)
        assert server.read_stdout(len(FROM_NCAT)) == FROM_NCAT
        server.wait_for_line(r"^enchufe: Connection from ")
        server.write(FROM_ENCHUFE)
        assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE

        ncat.close_stdin()
        if transport.datagram:
            # ncat's datagram client quits on stdin EOF; enchufe's datagram listener
            # does not (7.95+, §3.1), and no EOF comes over UDP: killed on exit.
            assert ncat.wait() == 0
        else:
            # ncat half-closes: enchufe's listener closes its stdout and exits 0, then
            # ncat (its stdin already at EOF) exits once the socket closes.
            assert server.wait() == 0
            assert server.stdout == b""
            assert ncat.wait() == 0
        assert ncat.stdout == b""


# -- 100 MiB each way over TCP -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("enchufe_role", ["client", "listener"])
def test_bulk_enchufe_to_ncat(enchufe_role: str, random_100mib: RandomFile, sock_dir: str, received: Path) -> None:
    transport = tcp("127.0.0.1")
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        if enchufe_role == "client":
            # The listener's stdin stays open (an idle pipe); a listener whose stdin
            # ends at once is test_end_of_stream.py's case.
            with (
                ncat_listener(transport, sock_dir, stdout=sink) as (ncat, where),
                enchufe(*transport.ncat_connect(where), stdin=source) as client,
            ):
                assert ncat.wait(BULK_TIMEOUT) == 0
                assert client.wait(BULK_TIMEOUT) == 0
                assert client.stdout == b""
        else:
            # --recv-only: ncat never reads its stdin (so never half-closes) and quits
            # on the socket's EOF, which enchufe sends after the last byte (§3.6).
            with (
                enchufe_listener(transport, sock_dir, stdin=source) as (server, port),
                start(["ncat", "--recv-only", *transport.ncat_connect(port)], stdout=sink) as ncat,
            ):
                assert ncat.wait(BULK_TIMEOUT) == 0
                assert server.wait(BULK_TIMEOUT) == 0
                assert server.stdout == b""
    assert received.stat().st_size == random_100mib.size
    assert sha256_file(received) == random_100mib.sha256


@pytest.mark.slow
@pytest.mark.parametrize("enchufe_role", ["listener", "client"])
def test_bulk_ncat_to_enchufe(enchufe_role: str, random_100mib: RandomFile, sock_dir: str, received: Path) -> None:
    transport = tcp("127.0.0.1")
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        if enchufe_role == "listener":
            # ncat half-closes after the file; enchufe's listener then closes its
            # stdout and exits, and ncat exits once the socket closes.
            with (
                enchufe_listener(transport, sock_dir, stdout=sink) as (server, port),
                start(["ncat", *transport.ncat_connect(port)], stdin=source) as ncat,
            ):
                assert server.wait(BULK_TIMEOUT) == 0
                assert ncat.wait(BULK_TIMEOUT) == 0
                assert ncat.stdout == b""
        else:
            # ncat's listener reads its stdin once a client is connected; after the
            # file it half-closes, and enchufe's client exits on that EOF (7.96 rule)
            # once its own stdin (an idle pipe) has nothing ready.
            with (
                ncat_listener(transport, sock_dir, stdin=source) as (ncat, where),
                enchufe(*transport.ncat_connect(where), stdout=sink) as client,
            ):
                assert client.wait(BULK_TIMEOUT) == 0
                assert ncat.wait(BULK_TIMEOUT) == 0
                assert ncat.stdout == b""
    assert received.stat().st_size == random_100mib.size
    assert sha256_file(received) == random_100mib.sha256


# -- end of file (§3.6) ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", STREAMS)
def test_enchufe_client_stdin_eof_reaches_ncat_listener(transport: Transport, sock_dir: str) -> None:
    with (
        ncat_listener(transport, sock_dir) as (ncat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        client.write(FROM_ENCHUFE)
        client.close_stdin()
        # enchufe half-closes: ncat's listener gets every byte, then EOF, so it closes
        # its output and ends (listen mode without -k quits on the socket's EOF).
        assert ncat.read_to_eof() == FROM_ENCHUFE
        assert ncat.wait() == 0
        # enchufe, still reading after its half-close, sees ncat go and exits 0.
        assert client.wait() == 0
        assert client.stdout == b""


def test_ncat_listener_closing_ends_enchufe_client(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        ncat_listener(transport, sock_dir) as (ncat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        client.write(FROM_ENCHUFE)
        assert ncat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        ncat.write(FROM_NCAT)
        ncat.close_stdin()
        # ncat's listener half-closes on stdin EOF and keeps running; enchufe's client
        # takes the socket's EOF as the end (7.96 rule, §3.6) although its stdin is
        # still open: it writes what came, closes stdout and exits 0.
        assert client.read_to_eof() == FROM_NCAT
        assert client.wait() == 0
        # ncat then sees enchufe's socket close and ends as well.
        assert ncat.wait() == 0
        assert ncat.stdout == b""


def test_ncat_client_stdin_eof_ends_enchufe_listener(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        enchufe_listener(transport, sock_dir) as (server, port),
        start(["ncat", *transport.ncat_connect(port)]) as ncat,
    ):
        ncat.write(FROM_NCAT)
        ncat.close_stdin()
        # ncat half-closes: enchufe's listener writes every byte, closes its stdout and
        # exits 0 (listen mode without -k ends on the socket's EOF).
        assert server.read_to_eof() == FROM_NCAT
        assert server.wait() == 0
        # ncat keeps reading after its half-close until the socket closes; enchufe's
        # exit closed it and ncat's stdin is already at EOF, so ncat exits 0 (7.93
        # would otherwise outlive the socket's EOF until its stdin ends, §3.1).
        assert ncat.wait() == 0
        assert ncat.stdout == b""


@requires_old_ncat
def test_enchufe_listener_half_close_lets_ncat_keep_sending(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        enchufe_listener(transport, sock_dir) as (server, port),
        start(["ncat", *transport.ncat_connect(port)]) as ncat,
    ):
        ncat.write(FROM_NCAT)
        assert server.read_stdout(len(FROM_NCAT)) == FROM_NCAT
        server.write(FROM_ENCHUFE)
        server.close_stdin()
        # enchufe's listener half-closes on stdin EOF. ncat 7.93 closes its stdout on
        # the socket's EOF but keeps running and sending its stdin (ncat-reference
        # §3.1; 7.96 would quit here).
        assert ncat.read_to_eof() == FROM_ENCHUFE
        assert ncat.popen.poll() is None
        # enchufe's listener still reads after its own half-close (§3.6).
        ncat.write(MORE_FROM_NCAT)
        assert server.read_stdout(len(MORE_FROM_NCAT)) == MORE_FROM_NCAT
        ncat.close_stdin()
        assert server.read_to_eof() == b""
        assert server.wait() == 0
        assert ncat.wait() == 0
