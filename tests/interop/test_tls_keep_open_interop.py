"""Real TLS clients of enchufe's many-client modes over ``--ssl``: ``ncat --ssl`` (7.93)
of ``-l -k`` and ``--chat``, and ``openssl s_client`` of ``-l -k``, which shows the
close_notify records on the wire (``-msg``). Readiness is an event: enchufe's lines,
data arriving, a client ending.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator

import pytest

from support.cli_e2e import stop_listener
from support.interop import Process, start
from support.procs import enchufe
from support.tls import TlsFiles

if shutil.which("ncat") is None or shutil.which("openssl") is None:
    pytest.skip("ncat or openssl is not installed", allow_module_level=True)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@contextlib.contextmanager
def tls_listener(tls_files: TlsFiles, *mode: str) -> Iterator[tuple[Process, int]]:
    certificate = ("--ssl-cert", tls_files.server_cert, "--ssl-key", tls_files.server_key)
    with enchufe("-v", *mode, *certificate, "127.0.0.1", "0") as server:
        yield server, server.listening_port()


@contextlib.contextmanager
def ncat_ssl_clients(port: int, count: int) -> Iterator[list[Process]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(start(["ncat", "--ssl", "127.0.0.1", str(port)])) for _ in range(count)]


def test_ncat_ssl_clients_of_keep_open(tls_files: TlsFiles) -> None:
    with tls_listener(tls_files, "-l", "-k") as (server, port), ncat_ssl_clients(port, 2) as clients:
        for number, client in enumerate(clients):
            client.write(f"ncat {number}\n".encode())  # once on stdout, that client is a member
            assert server.read_stdout(7) == f"ncat {number}\n".encode()
        server.write(b"to both\n")
        for client in clients:
            assert client.read_stdout(8) == b"to both\n"
        for client in clients:
            client.close_stdin()  # ncat's close_notify: enchufe closes that client, ncat exits
            assert client.wait() == 0, client.stderr
        stop_listener(server)
    assert "Failed SSL connection" not in server.stderr


def test_ncat_ssl_clients_of_chat(tls_files: TlsFiles) -> None:
    with tls_listener(tls_files, "-l", "--chat") as (server, port), ncat_ssl_clients(port, 2) as clients:
        greetings = [client.read_until(rb"already connected: [^\n]*\n") for client in clients]
        first, second = clients if b"nobody" in greetings[0] else clients[::-1]
        first.write(b"hello\x01\n")
        assert re.search(rb"^<user\d+> hello\\001\n", second.read_until(rb"hello"), re.MULTILINE)
        first.close_stdin()
        assert first.wait() == 0, first.stderr
        assert re.search(rb"<announce> <user\d+> is disconnected\.\n", second.read_until(rb"disconnected\.\n"))
        second.close_stdin()
        assert second.wait() == 0, second.stderr
        stop_listener(server)
        assert server.stdout == b""


def test_openssl_s_client_of_keep_open_ends_with_close_notify_both_ways(tls_files: TlsFiles) -> None:
    with tls_listener(tls_files, "-l", "-k") as (server, port):
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet", "-msg"]
        with start(argv) as client:
            client.write(b"from s_client\n")
            assert server.read_stdout(14) == b"from s_client\n"
            server.write(b"from the host\n")
            client.read_until(rb"from the host\n")
            server.close_stdin()  # the end of the host's input: close_notify to every client
            rest = client.read_until(rb">>> [^\n]*Alert[^\n]*close_notify")  # s_client answers with its own
            assert re.search(rb"<<< [^\n]*Alert[^\n]*close_notify", rest)
            assert client.wait() == 0
        assert server.still_running_after()
        stop_listener(server)
    assert "Failed SSL connection" not in server.stderr
