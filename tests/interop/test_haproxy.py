"""Interoperability with a real HAProxy (Debian's 2.6), both ways of the PROXY protocol.

- HAProxy in front of enchufe: ``server ... send-proxy`` / ``send-proxy-v2`` (with
  ``proxy-v2-options crc32c,unique-id``), and enchufe's library ``Server``,
  ``enchufe -l -k -c`` or ``enchufe -l -k`` behind it sees the test's client, bound to 127.0.0.7 so that it
  differs from HAProxy's own 127.0.0.1.
- enchufe-relay ``--send-proxy v2`` in front of an HAProxy ``bind ... accept-proxy``
  frontend whose ``tcp-request session`` rule lets only 127.0.0.7 through: a client
  from there reaches the backend, one from 127.0.0.8 is refused by HAProxy, which
  proves HAProxy read the address from enchufe's header (the relay's socket is
  127.0.0.1's either way).

HAProxy runs in the foreground (``-db``) with a config written to tmp_path. Its
readiness is a separate frontend that accepts and closes at once, polled with bounded
connect attempts (connecting to the real frontend would open a backend connection).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enchufe.address import Address, InetAddress
from enchufe.net.connection import Connection
from enchufe.net.listen import open_listeners
from enchufe.proto.proxy_protocol import PP2_TYPE_CRC32C, ProxyHeader
from enchufe.serve.engine import Server
from enchufe.serve.policy import ProxyProtocol
from support.cli_e2e import TcpServer, recv_exactly, recv_until_eof, stop_listener
from support.procs import enchufe, free_port, tool

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]

TIMEOUT = 10.0
CLIENT_HOST = "127.0.0.7"


def haproxy_config(frontend: str, backend: str, ready_port: int) -> str:
    return f"""\
global
    maxconn 100

defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend ready
    bind 127.0.0.1:{ready_port}
    tcp-request connection reject

frontend relayed
{frontend}
    default_backend servers

backend servers
{backend}
"""


@contextlib.contextmanager
def haproxy(tmp_path: Path, frontend: str, backend: str) -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy with this frontend and backend, once it accepts connections."""
    ready_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(frontend, backend, ready_port))
    process = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # bounded by the deadline; each attempt waits on connect itself
            assert process.poll() is None, process.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", ready_port), timeout=TIMEOUT).close()
                break
            except ConnectionResetError:
                break  # accepted and reset at once by its reject rule: listening
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "haproxy did not start listening"
        yield process
    finally:
        process.kill()
        process.communicate(timeout=TIMEOUT)


def client_socket(port: int, source: str = CLIENT_HOST) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    sock.settimeout(TIMEOUT)
    return sock


# -- HAProxy sends, enchufe receives -------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_options", "version"),
    [
        ("send-proxy", 1),
        ("send-proxy-v2", 2),
        ("send-proxy-v2 proxy-v2-options crc32c,unique-id", 2),
    ],
)
def test_the_library_server_behind_haproxy_sees_the_client(tmp_path: Path, server_options: str, version: int) -> None:
    seen: queue.Queue[tuple[Address | None, Address | None, ProxyHeader | None]] = queue.Queue()

    def handler(conn: Connection) -> None:
        seen.put((conn.peer, conn.proxied_by, conn.proxy_header))
        conn.send_all(conn.recv_line(timeout=TIMEOUT))

    def from_loopback(peer: Address | None) -> bool:
        return isinstance(peer, InetAddress) and peer.host == "127.0.0.1"

    listeners = open_listeners(InetAddress("127.0.0.1", 0))
    with Server(listeners, handler, proxy_protocol=ProxyProtocol(from_loopback)) as server:
        server.start()
        backend_port = server.addresses[0].port  # type: ignore[union-attr]
        frontend_port = free_port()
        frontend = f"    bind 127.0.0.1:{frontend_port}\n    unique-id-format conn-%ci"
        backend = f"    server enchufe 127.0.0.1:{backend_port} {server_options}"
        with haproxy(tmp_path, frontend, backend), client_socket(frontend_port) as client:
            client.sendall(b"echo me\n")
            assert recv_exactly(client, 8) == b"echo me\n"
            peer, proxied_by, header = seen.get(timeout=TIMEOUT)
            assert peer == InetAddress(CLIENT_HOST, client.getsockname()[1])
            assert isinstance(proxied_by, InetAddress) and proxied_by.host == "127.0.0.1"
            assert header is not None and header.version == version
            assert header.destination == InetAddress("127.0.0.1", frontend_port)
            if "crc32c" in server_options:
                assert header.tlv(PP2_TYPE_CRC32C) is not None  # and verified, or there were no header
                assert header.unique_id == f"conn-{CLIENT_HOST}".encode()


def test_enchufe_exec_behind_haproxy_gets_the_clients_address(tmp_path: Path) -> None:
    args = ["-l", "-k", "-v", "--proxy-protocol", "127.0.0.1", "-c", 'echo "$NCAT_REMOTE_ADDR"', "127.0.0.1", "0"]
    with enchufe(*args) as cmd:
        backend_port = cmd.listening_port()
        frontend_port = free_port()
        frontend = f"    bind 127.0.0.1:{frontend_port}"
        backend = f"    server enchufe 127.0.0.1:{backend_port} send-proxy-v2"
        with haproxy(tmp_path, frontend, backend), client_socket(frontend_port) as client:
            assert recv_until_eof(client) == f"{CLIENT_HOST}\n".encode()
            cmd.wait_for_line(rf"Connection from {CLIENT_HOST.replace('.', '[.]')}:\d+ \(through 127\.0\.0\.1:")
        stop_listener(cmd)


def test_keep_open_behind_haproxy_says_and_serves_the_client(tmp_path: Path) -> None:
    with enchufe("-l", "-k", "-v", "--proxy-protocol", "127.0.0.1", "127.0.0.1", "0") as cmd:
        backend_port = cmd.listening_port()
        frontend_port = free_port()
        frontend = f"    bind 127.0.0.1:{frontend_port}"
        backend = f"    server enchufe 127.0.0.1:{backend_port} send-proxy"
        with haproxy(tmp_path, frontend, backend), client_socket(frontend_port) as client:
            client.sendall(b"through haproxy\n")
            port = client.getsockname()[1]
            cmd.wait_for_line(rf"Connection from {CLIENT_HOST.replace('.', '[.]')}:{port} \(through 127\.0\.0\.1:")
            assert cmd.read_stdout(16) == b"through haproxy\n"
        stop_listener(cmd)


# -- enchufe sends, HAProxy receives -------------------------------------------------------------


def test_haproxy_reads_the_address_from_enchufe_relays_header(tmp_path: Path) -> None:
    with TcpServer() as backend:
        frontend_port = free_port()
        frontend = (
            f"    bind 127.0.0.1:{frontend_port} accept-proxy\n"
            f"    tcp-request session reject unless {{ src {CLIENT_HOST} }}"
        )
        servers = f"    server test 127.0.0.1:{backend.port}"
        with (
            haproxy(tmp_path, frontend, servers),
            tool("relay", "-v", "--send-proxy", "v2", "127.0.0.1:0", f"127.0.0.1:{frontend_port}") as relay,
        ):
            relay_port = relay.listening_port()
            with client_socket(relay_port, source="127.0.0.8") as refused:
                refused.sendall(b"from elsewhere\n")
                # HAProxy closed it, the relay the client: with a reset when HAProxy's close
                # left our bytes unread (the relay passes a reset on as a reset), else an end.
                with contextlib.suppress(ConnectionResetError):
                    assert recv_until_eof(refused) == b""
            with client_socket(relay_port) as allowed, backend.accept() as far:
                allowed.sendall(b"from 127.0.0.7\n")
                assert recv_exactly(far, 15) == b"from 127.0.0.7\n"  # the first to reach the backend
                far.sendall(b"welcome\n")
                assert recv_exactly(allowed, 8) == b"welcome\n"
