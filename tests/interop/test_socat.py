"""Interoperability with the real socat (/usr/bin/socat, 1.7.4).

Both directions for every transport (TCP and UDP over IPv4 and IPv6, Unix stream and
datagram): enchufe client ↔ socat listener and socat client ↔ enchufe listener,
byte-exact; 100 MiB each way over TCP; and enchufe's end-of-file rules (ncat-reference
§3.6) as socat sees them.

socat's own rules, which these tests lean on: after end of file on one side it shuts
down writing on the other and keeps relaying the other direction for ``-t`` seconds
(0.5 by default), then exits 0. Its ``-d -d`` notices mark the events waited for:
``listening on``/``receiving on`` (ready) and ``socket N (fd F) is at EOF``, where
socket 1 is its first address (the network, for a listener ``socat LISTEN -``) and
socket 2 its second (the network, for a client ``socat - CONNECT``). A long ``-t``
makes socat wait for the test, never the other way round. socat never closes its
stdout before it exits, so socat's EOF notice is what shows an EOF arrived.
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
    SOCAT_CLIENT_EOF,
    SOCAT_LINGER,
    SOCAT_LISTENER_EOF,
    STREAM_TRANSPORTS,
    TRANSPORTS,
    Process,
    RandomFile,
    Transport,
    enchufe_listener,
    sha256_file,
    socat_listener,
    start,
    tcp,
    transport_params,
)
from support.procs import enchufe

if shutil.which("socat") is None:
    pytest.skip("socat is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

FROM_ENCHUFE = b"hello from enchufe\n"
FROM_SOCAT = b"hello from socat\x00\xff\r\n"
AFTER_EOF = b"sent after the peer's half-close\n"

ALL = transport_params(TRANSPORTS, requires_ipv6)
STREAMS = transport_params(STREAM_TRANSPORTS, requires_ipv6)


def socat_client(
    transport: Transport,
    where: str | int,
    sock_dir: str,
    *options: str,
    stdin: object = None,
    stdout: object = subprocess.PIPE,
) -> Process:
    """``socat -d -d OPTIONS - CONNECT-ADDRESS``; a Unix datagram client binds a
    socket in ``sock_dir`` so that enchufe's listener can answer it."""
    address = transport.socat_connect(where, bind_path=os.path.join(sock_dir, "socat-client.sock"))
    argv = ["socat", "-d", "-d", *options, "-", address]
    return start(argv, stdin=stdin, stdout=stdout)


def summary(sent: int, received: int) -> str:
    """The pattern of enchufe's -v closing line in connect mode."""
    return rf"(?m)^enchufe: {sent} bytes sent, {received} bytes received in \d+\.\d\d seconds\.$"


# -- a short exchange, both ways, every transport ------------------------------------------


@pytest.mark.parametrize("transport", ALL)
def test_enchufe_client_talks_to_socat_listener(transport: Transport, sock_dir: str) -> None:
    with (
        socat_listener(transport, sock_dir, *SOCAT_LINGER) as (socat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        # The client speaks first: socat's UDP-LISTEN and UNIX-RECVFROM learn their
        # peer from the first datagram.
        client.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.write(FROM_SOCAT)
        assert client.read_stdout(len(FROM_SOCAT)) == FROM_SOCAT

        client.close_stdin()
        if transport.datagram:
            # A datagram client quits on stdin EOF (§3.10); socat is killed on exit.
            assert client.wait() == 0
        else:
            # enchufe half-closes: socat reports the EOF and keeps relaying its stdin;
            # when that ends too, socat exits and enchufe sees the socket close.
            socat.wait_for_line(SOCAT_LISTENER_EOF)
            socat.close_stdin()
            assert socat.wait() == 0
            assert socat.stdout == b""
            assert client.wait() == 0
        assert client.stdout == b""
        assert re.search(summary(len(FROM_ENCHUFE), len(FROM_SOCAT)), client.stderr), client.stderr


@pytest.mark.parametrize("transport", ALL)
def test_socat_client_talks_to_enchufe_listener(transport: Transport, sock_dir: str) -> None:
    with (
        enchufe_listener(transport, sock_dir) as (server, where),
        socat_client(transport, where, sock_dir) as socat,
    ):
        socat.write(FROM_SOCAT)
        assert server.read_stdout(len(FROM_SOCAT)) == FROM_SOCAT
        server.wait_for_line(r"^enchufe: Connection from ")
        server.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE

        socat.close_stdin()
        if not transport.datagram:
            # socat half-closes: enchufe's listener closes its stdout and exits 0, and
            # socat, seeing the socket close, exits 0.
            assert server.wait() == 0
            assert server.stdout == b""
            assert socat.wait() == 0
            assert socat.stdout == b""
        # Datagrams: no EOF travels; enchufe's datagram listener keeps running after
        # its stdin EOF (7.95+, ncat-reference §3.1), so both are killed on exit.


# -- 100 MiB each way over TCP -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("enchufe_role", ["client", "listener"])
def test_bulk_enchufe_to_socat(enchufe_role: str, random_100mib: RandomFile, sock_dir: str, received: Path) -> None:
    transport = tcp("127.0.0.1")
    # socat's stdin stays open (an idle pipe) until enchufe's EOF has reached it; a
    # peer whose stdin ends at once is test_end_of_stream.py's case.
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        if enchufe_role == "client":
            with (
                socat_listener(transport, sock_dir, *SOCAT_LINGER, stdout=sink) as (socat, where),
                enchufe(*transport.ncat_connect(where), stdin=source) as client,
            ):
                socat.wait_for_line(SOCAT_LISTENER_EOF, BULK_TIMEOUT)
                socat.close_stdin()
                assert socat.wait(BULK_TIMEOUT) == 0
                assert client.wait(BULK_TIMEOUT) == 0
                assert client.stdout == b""
        else:
            with (
                enchufe_listener(transport, sock_dir, stdin=source) as (server, port),
                socat_client(transport, port, sock_dir, *SOCAT_LINGER, stdout=sink) as socat,
            ):
                socat.wait_for_line(SOCAT_CLIENT_EOF, BULK_TIMEOUT)
                socat.close_stdin()
                assert socat.wait(BULK_TIMEOUT) == 0
                assert server.wait(BULK_TIMEOUT) == 0
                assert server.stdout == b""
    assert received.stat().st_size == random_100mib.size
    assert sha256_file(received) == random_100mib.sha256


@pytest.mark.slow
@pytest.mark.parametrize("enchufe_role", ["listener", "client"])
def test_bulk_socat_to_enchufe(enchufe_role: str, random_100mib: RandomFile, sock_dir: str, received: Path) -> None:
    transport = tcp("127.0.0.1")
    with open(random_100mib.path, "rb") as source, open(received, "wb") as sink:
        if enchufe_role == "listener":
            # socat half-closes after the file; enchufe's listener closes its stdout
            # and exits, and socat exits once the socket closes.
            with (
                enchufe_listener(transport, sock_dir, stdout=sink) as (server, port),
                socat_client(transport, port, sock_dir, *SOCAT_LINGER, stdin=source) as socat,
            ):
                assert server.wait(BULK_TIMEOUT) == 0
                assert socat.wait(BULK_TIMEOUT) == 0
                assert socat.stdout == b""
        else:
            # socat's listener opens its stdin only after accepting; after the file it
            # half-closes, and enchufe's client exits on that EOF (7.96 rule) although
            # its own stdin (an idle pipe) stays open.
            with (
                socat_listener(transport, sock_dir, *SOCAT_LINGER, stdin=source) as (socat, where),
                enchufe(*transport.ncat_connect(where), stdout=sink) as client,
            ):
                assert client.wait(BULK_TIMEOUT) == 0
                assert socat.wait(BULK_TIMEOUT) == 0
                assert socat.stdout == b""
    assert received.stat().st_size == random_100mib.size
    assert sha256_file(received) == random_100mib.sha256


# -- end of file (§3.6) ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", STREAMS)
def test_enchufe_client_stdin_eof_half_closes_to_socat_listener(transport: Transport, sock_dir: str) -> None:
    with (
        socat_listener(transport, sock_dir, *SOCAT_LINGER) as (socat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        client.write(FROM_ENCHUFE)
        client.close_stdin()
        # enchufe half-closes: socat gets every byte, then EOF.
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.wait_for_line(SOCAT_LISTENER_EOF)
        # enchufe keeps reading after its half-close: what socat sends afterwards arrives.
        socat.write(AFTER_EOF)
        assert client.read_stdout(len(AFTER_EOF)) == AFTER_EOF
        assert client.popen.poll() is None
        socat.close_stdin()
        # socat shuts its side: enchufe closes its stdout and exits 0.
        assert client.read_to_eof() == b""
        assert client.wait() == 0
        assert socat.wait() == 0
        assert socat.stdout == b""
        assert re.search(summary(len(FROM_ENCHUFE), len(AFTER_EOF)), client.stderr), client.stderr


def test_socat_listener_closing_ends_enchufe_client(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        socat_listener(transport, sock_dir, *SOCAT_LINGER) as (socat, where),
        enchufe(*transport.ncat_connect(where)) as client,
    ):
        client.write(FROM_ENCHUFE)
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.write(FROM_SOCAT)
        socat.close_stdin()
        # socat half-closes and would wait a minute for the other direction; enchufe's
        # client takes the socket's EOF as the end (7.96 rule, §3.6) although its own
        # stdin is still open: it writes what came, closes stdout and exits 0 ...
        assert client.read_to_eof() == FROM_SOCAT
        assert client.wait() == 0
        # ... which closes the socket, so socat ends long before its -t.
        socat.wait_for_line(SOCAT_LISTENER_EOF)
        assert socat.wait() == 0
        assert socat.stdout == b""


def test_socat_client_stdin_eof_ends_enchufe_listener(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        enchufe_listener(transport, sock_dir) as (server, port),
        socat_client(transport, port, sock_dir, *SOCAT_LINGER) as socat,
    ):
        socat.write(FROM_SOCAT)
        socat.close_stdin()
        # socat half-closes: enchufe's listener writes every byte, closes its stdout
        # and exits 0 (listen mode without -k ends on the socket's EOF) ...
        assert server.read_to_eof() == FROM_SOCAT
        assert server.wait() == 0
        # ... closing the socket, so socat ends long before its -t.
        socat.wait_for_line(SOCAT_CLIENT_EOF)
        assert socat.wait() == 0
        assert socat.stdout == b""


def test_enchufe_listener_half_close_lets_socat_keep_sending(loopback: str, sock_dir: str) -> None:
    transport = tcp(loopback)
    with (
        enchufe_listener(transport, sock_dir) as (server, port),
        socat_client(transport, port, sock_dir, *SOCAT_LINGER) as socat,
    ):
        socat.write(FROM_SOCAT)
        assert server.read_stdout(len(FROM_SOCAT)) == FROM_SOCAT
        server.write(FROM_ENCHUFE)
        server.close_stdin()
        # enchufe's listener half-closes on stdin EOF; socat reports it and goes on
        # relaying its stdin.
        assert socat.read_stdout(len(FROM_ENCHUFE)) == FROM_ENCHUFE
        socat.wait_for_line(SOCAT_CLIENT_EOF)
        # enchufe's listener still reads after its own half-close (§3.6).
        socat.write(AFTER_EOF)
        assert server.read_stdout(len(AFTER_EOF)) == AFTER_EOF
        assert server.popen.poll() is None
        socat.close_stdin()
        assert server.read_to_eof() == b""
        assert server.wait() == 0
        assert socat.wait() == 0
        assert socat.stdout == b""
