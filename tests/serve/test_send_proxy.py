"""Sending the PROXY protocol: the relay (ProxyServer's FixedTarget) starts each upstream
connection with a header naming the client, before the client's bytes and before
upstream's TLS; ``enchufe-relay --send-proxy``. The backend is a real listener that reads
the header with :func:`read_proxy_header`."""

from __future__ import annotations

import contextlib
import socket

import pytest

from enchufe.address import InetAddress
from enchufe.net.proxy_protocol import read_proxy_header
from enchufe.net.stream import SocketStream
from enchufe.net.tls import start_tls
from enchufe.tools.relay import FixedTarget
from support.cli_e2e import TcpServer, recv_exactly
from support.procs import run_tool, tool
from support.proxy import running_proxy_server
from support.tls import TlsFiles

TIMEOUT = 10.0


@pytest.mark.parametrize("version", [1, 2])
def test_each_upstream_connection_starts_with_a_header_naming_the_client(version: int) -> None:
    with TcpServer() as backend:
        negotiator = FixedTarget(InetAddress("127.0.0.1", backend.port))
        with running_proxy_server(lambda peer: negotiator, send_proxy_header=version) as (_, _, port):
            client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=("127.0.0.7", 0))
            with client, backend.accept() as far, contextlib.closing(SocketStream(far.dup())) as stream:
                client.sendall(b"first bytes")
                header = read_proxy_header(stream, timeout=TIMEOUT)
                assert (header.version, header.command) == (version, "proxy")
                assert header.source == InetAddress(*client.getsockname())
                assert header.destination == InetAddress("127.0.0.1", port)
                assert recv_exactly(far, 11) == b"first bytes"


def test_the_header_comes_before_upstreams_tls(tls_files: TlsFiles) -> None:
    with TcpServer() as backend:
        negotiator = FixedTarget(InetAddress("127.0.0.1", backend.port))
        options = {"send_proxy_header": 2, "upstream_tls": tls_files.client_context()}
        with running_proxy_server(lambda peer: negotiator, upstream_server_hostname="localhost", **options) as (
            _,
            _,
            port,
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client, backend.accept() as far:
                stream = SocketStream(far.dup())
                header = read_proxy_header(stream, timeout=TIMEOUT)
                assert header.source == InetAddress(*client.getsockname())
                secured = start_tls(stream, tls_files.server_context(), server_side=True, timeout=TIMEOUT)
                with contextlib.closing(secured):
                    client.sendall(b"inside")
                    assert secured.recv(100, timeout=TIMEOUT) == b"inside"


def test_a_version_that_does_not_exist_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="version 3 does not exist"):
        with running_proxy_server(lambda peer: FixedTarget(InetAddress("127.0.0.1", 1)), send_proxy_header=3):
            pass


def test_enchufe_relay_send_proxy() -> None:
    with (
        TcpServer() as backend,
        tool("relay", "-v", "--send-proxy", "v1", "127.0.0.1:0", f"127.0.0.1:{backend.port}") as cmd,
    ):
        port = cmd.listening_port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client, backend.accept() as far:
            expected = f"PROXY TCP4 127.0.0.1 127.0.0.1 {client.getsockname()[1]} {port}\r\n".encode()
            client.sendall(b"data")
            assert recv_exactly(far, len(expected) + 4) == expected + b"data"
    result = run_tool("relay", "--send-proxy", "v3", ":0", "127.0.0.1:80")
    assert result.returncode == 2
    assert "Invalid PROXY protocol version: 'v3' (v1 or v2)." in result.stderr.decode()
    result = run_tool("relay", "-u", "--send-proxy", "v2", ":0", "127.0.0.1:80")
    assert result.returncode == 2
    assert "--send-proxy works over stream sockets only" in result.stderr.decode()
