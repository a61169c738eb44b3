"""open_connection and open_listeners on real loopback sockets, every socket kind."""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

import pytest

from conftest import HAS_IPV6, requires_ipv6
from enchufe.address import InetAddress, UnixAddress
from enchufe.errors import (
    AddressError,
    BindError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    ResolveError,
    TimedOut,
    Unsupported,
)
from enchufe.net.connect import open_connection
from enchufe.net.listen import Listener, accept_first, close_all, open_listeners
from enchufe.net.resolve import Resolved, SystemResolver

if TYPE_CHECKING:
    from enchufe.net.sockets import Transport


def test_tcp_round_trip(loopback: str) -> None:
    (listener,) = open_listeners(InetAddress(loopback, 0))
    with listener:
        assert isinstance(listener.address, InetAddress)
        assert listener.address.port != 0
        with open_connection(listener.address) as client, listener.accept(timeout=5) as server:
            assert client.peer == listener.address
            assert server.peer == client.local
            client.send_all(b"ping")
            assert server.recv_exactly(4, timeout=5) == b"ping"
            server.send_all(b"pong")
            assert client.recv_exactly(4, timeout=5) == b"pong"


def test_text_address_is_accepted(loopback: str) -> None:
    (listener,) = open_listeners(InetAddress(loopback, 0))
    with listener, open_connection(str(listener.address)) as client, listener.accept(timeout=5):
        assert client.peer == listener.address


def test_udp_listener_locks_onto_the_first_peer(loopback: str) -> None:
    (listener,) = open_listeners(InetAddress(loopback, 0), transport="datagram")
    with (
        listener,
        open_connection(listener.address, transport="datagram") as first,
        open_connection(listener.address, transport="datagram") as second,
    ):
        first.send_all(b"one")
        with listener.accept(timeout=5) as server:
            assert server.peer == first.local
            assert server.recv(timeout=5) == b"one"
            second.send_all(b"ignored")
            first.send_all(b"two")
            assert server.recv(timeout=5) == b"two"  # the second peer is filtered by the kernel
            server.send_all(b"reply")
            assert first.recv(timeout=5) == b"reply"


def test_udp_client_sends_nothing_until_asked(loopback: str) -> None:
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as server:
        server.bind((loopback, 0))
        server.settimeout(0.2)
        with open_connection(InetAddress(loopback, server.getsockname()[1]), transport="datagram") as client:
            with pytest.raises(TimeoutError):
                server.recvfrom(10)
            client.send_all(b"now")
            server.settimeout(5)
            assert server.recvfrom(10)[0] == b"now"


def test_dual_stack_listen_gives_two_sockets_on_one_port() -> None:
    listeners = open_listeners(port=0)
    try:
        addresses = [listener.address for listener in listeners]
        if not HAS_IPV6:
            assert [str(a).split(":")[0] for a in addresses] == ["0.0.0.0"]
            return
        assert [a.host for a in addresses if isinstance(a, InetAddress)] == ["::", "0.0.0.0"]
        ports = {a.port for a in addresses if isinstance(a, InetAddress)}
        assert len(ports) == 1 and ports != {0}
        v6 = listeners[0].sock
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert all(listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) for listener in listeners)
        (port,) = ports
        with open_connection(InetAddress("127.0.0.1", port)) as client, accept_first(listeners, timeout=5) as server:
            assert server.peer == client.local
            assert isinstance(server.peer, InetAddress) and server.peer.host == "127.0.0.1"  # not ::ffff:127.0.0.1
        with open_connection(InetAddress("::1", port)) as client, accept_first(listeners, timeout=5) as server:
            assert server.peer == client.local
    finally:
        close_all(listeners)


def test_family_restricts_the_wildcard_listener() -> None:
    listeners = open_listeners(port=0, family=socket.AF_INET)
    try:
        assert [listener.sock.family for listener in listeners] == [socket.AF_INET]
    finally:
        close_all(listeners)


@requires_ipv6
@pytest.mark.parametrize("transport", ["stream", "datagram"])
@pytest.mark.parametrize("where", ["family", "address"])
def test_an_ipv6_listener_hears_no_ipv4_peer(transport: Transport, where: str) -> None:
    """IPv6 only, as ncat: with family=AF_INET6, and for an explicit ``::`` too."""
    if where == "family":
        (listener,) = open_listeners(port=0, family=socket.AF_INET6, transport=transport)
    else:
        (listener,) = open_listeners(InetAddress("::", 0), transport=transport)
    with listener:
        assert isinstance(listener.address, InetAddress)
        port = listener.address.port
        if transport == "stream":
            with pytest.raises(ConnectError):
                open_connection(InetAddress("127.0.0.1", port))
            with open_connection(InetAddress("::1", port)) as client, listener.accept(timeout=5) as server:
                assert server.peer == client.local
            return
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as four,
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as six,
        ):
            four.sendto(b"four", ("127.0.0.1", port))  # first, so a dual-stack socket would lock onto it
            six.sendto(b"six", ("::1", port))
            with listener.accept(timeout=5) as server:
                assert server.peer == InetAddress("::1", six.getsockname()[1])
                assert server.recv(timeout=5) == b"six"


def test_bind_to_a_port_in_use_is_a_bind_error(loopback: str) -> None:
    (first,) = open_listeners(InetAddress(loopback, 0))
    with first:
        with pytest.raises(BindError) as caught:
            open_listeners(first.address)
        assert caught.value.errno == errno.EADDRINUSE
        assert str(caught.value) == f"bind to {first.address}: Address already in use"


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(ConnectError) as caught:
        open_connection(InetAddress("127.0.0.1", port))
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.errno == errno.ECONNREFUSED
    assert str(caught.value) == "Connection refused"


def test_every_resolved_address_is_tried_in_order() -> None:
    """The first address refuses; the second one answers; the failure is reported."""
    (listener,) = open_listeners(InetAddress("127.0.0.1", 0))
    with listener, socket.socket() as placeholder:
        placeholder.bind(("127.0.0.2", 0))
        dead_port = placeholder.getsockname()[1]
        assert isinstance(listener.address, InetAddress)
        live_port = listener.address.port

        class TwoAddresses:
            def resolve(self, host: str, port: int, **_: object) -> list[Resolved]:
                tcp = (socket.AF_INET, socket.SOCK_STREAM, 0)
                return [Resolved(*tcp, ("127.0.0.2", dead_port)), Resolved(*tcp, ("127.0.0.1", live_port))]

        failures: list[tuple[object, Exception]] = []
        conn = open_connection(
            InetAddress("service.test", 1),
            resolver=TwoAddresses(),
            on_attempt_failed=lambda address, error: failures.append((address, error)),
        )
        with conn, listener.accept(timeout=5):
            assert conn.peer == listener.address
        assert [(str(a), str(e)) for a, e in failures] == [(f"127.0.0.2:{dead_port}", "Connection refused")]


def test_connect_timeout() -> None:
    """A listener whose accept queue is full drops further SYNs: the connect must time out."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.3)
                try:
                    filler.connect(full.getsockname())
                except TimeoutError:
                    break
            else:
                pytest.skip("the kernel kept accepting: cannot make a connect hang on loopback")
            with pytest.raises(ConnectTimeout) as caught:
                open_connection(InetAddress(*full.getsockname()), timeout=0.2)
            assert isinstance(caught.value, TimeoutError)
        finally:
            for filler in fillers:
                filler.close()


def test_numeric_only_resolver_refuses_names() -> None:
    with pytest.raises(ResolveError) as caught:
        open_connection(InetAddress("localhost", 1), resolver=SystemResolver(numeric_only=True))
    assert str(caught.value).startswith('Could not resolve hostname "localhost": ')


def test_source_address_and_port_are_bound(loopback: str) -> None:
    (listener,) = open_listeners(InetAddress(loopback, 0))
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((loopback, 0))
        source_port = probe.getsockname()[1]
    with listener, open_connection(listener.address, source_host=loopback, source_port=source_port) as client:
        with listener.accept(timeout=5) as server:
            assert server.peer == InetAddress(loopback, source_port) == client.local


@requires_ipv6
def test_ipv6_literal_with_family_mismatch_does_not_resolve() -> None:
    with pytest.raises(ResolveError):
        open_connection(InetAddress("::1", 1), family=socket.AF_INET)


def test_sctp_is_reported_as_unsupported_by_this_kernel() -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    except OSError:
        pass
    else:
        pytest.skip("this kernel has SCTP")
    with pytest.raises(Unsupported, match=r"^SCTP is not supported by this kernel$"):
        open_listeners(InetAddress("127.0.0.1", 0), transport="sctp")
    with pytest.raises(Unsupported, match=r"^SCTP is not supported by this kernel$"):
        open_connection(InetAddress("127.0.0.1", 1), transport="sctp")


def test_unix_stream_listener_creates_and_removes_its_file(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    (listener,) = open_listeners(UnixAddress(path))
    assert os.path.exists(path)
    with listener, open_connection(path) as client, listener.accept(timeout=5) as server:
        client.send_all(b"over unix")
        client.send_eof()
        assert b"".join(server) == b"over unix"
    assert not os.path.exists(path)


def test_unix_datagram_client_binds_a_temporary_socket_for_replies(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "d.sock")
    (listener,) = open_listeners(UnixAddress(path), transport="datagram")
    with listener:
        client = open_connection(path, transport="datagram")
        assert isinstance(client.local, UnixAddress)
        temporary = client.local.path
        assert os.path.exists(temporary)
        with client:
            client.send_all(b"hello")
            with listener.accept(timeout=5) as server:
                assert server.peer == client.local
                assert server.recv(timeout=5) == b"hello"
                server.send_all(b"answer")
                assert client.recv(timeout=5) == b"answer"
        assert not os.path.exists(temporary)
    assert not os.path.exists(path)


@pytest.mark.parametrize("abstract", [False, True], ids=["file", "abstract"])
def test_unix_datagram_client_binds_the_source_it_is_given(sock_dir: str, abstract: bool) -> None:
    path = os.path.join(sock_dir, "d.sock")
    source = f"@enchufe-test-{os.getpid()}-source" if abstract else os.path.join(sock_dir, "source.sock")
    (listener,) = open_listeners(UnixAddress(path), transport="datagram")
    with listener:
        with open_connection(path, transport="datagram", source_host=source) as client:
            assert client.local == UnixAddress(source)
            assert abstract or os.path.exists(source)
            client.send_all(b"from a named socket")
            with listener.accept(timeout=5) as server:
                assert server.peer == UnixAddress(source)
                assert server.recv(timeout=5) == b"from a named socket"
        assert not os.path.exists(source)  # created here, so removed here


def test_unix_source_in_use_is_a_bind_error_and_is_left_alone(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "d.sock")
    taken = os.path.join(sock_dir, "taken")
    with open(taken, "w"):
        pass
    (listener,) = open_listeners(UnixAddress(path), transport="datagram")
    with listener, pytest.raises(BindError) as caught:
        open_connection(path, transport="datagram", source_host=taken)
    assert caught.value.errno == errno.EADDRINUSE
    assert str(caught.value) == f"bind to {taken}: Address already in use"
    assert os.path.exists(taken)  # not ours to remove


def test_abstract_unix_socket() -> None:
    name = f"@enchufe-test-{os.getpid()}"
    (listener,) = open_listeners(UnixAddress(name))
    with listener, open_connection(name) as client, listener.accept(timeout=5) as server:
        assert listener.address == UnixAddress(name)
        client.send_all(b"x")
        assert server.recv(timeout=5) == b"x"


def test_abstract_name_that_is_not_utf8_round_trips() -> None:
    # As Python hands over argv: the byte 0xff, not UTF-8, as the surrogate U+DCFF.
    name = f"@enchufe-test-{os.getpid()}-\udcff"
    (listener,) = open_listeners(UnixAddress(name))
    with listener, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        assert listener.address == UnixAddress(name)  # what getsockname returns decodes back
        raw.settimeout(5)
        raw.connect(f"\0enchufe-test-{os.getpid()}-".encode() + b"\xff")  # the very bytes given
        with listener.accept(timeout=5) as server:
            server.send_all(b"x")
            assert raw.recv(1) == b"x"
        with open_connection(listener.address) as client, listener.accept(timeout=5):
            assert client.peer == UnixAddress(name)


def test_accept_timeout() -> None:
    (listener,) = open_listeners(InetAddress("127.0.0.1", 0))
    with listener, pytest.raises(TimedOut):
        listener.accept(timeout=0.05)


def test_listener_close_is_idempotent(sock_dir: str) -> None:
    listener: Listener = open_listeners(UnixAddress(os.path.join(sock_dir, "x.sock")))[0]
    listener.close()
    listener.close()


def test_loose_source_route_goes_out_on_the_first_packet() -> None:
    """-g: the SYN is addressed to the first hop and carries the LSRR option."""
    if os.geteuid() != 0:
        pytest.skip("capturing packets on lo needs root")
    port = 0
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as capture:
        capture.bind(("lo", 0))
        # Room for whatever else crosses lo meanwhile (root may exceed rmem_max): a full
        # buffer would drop the one frame the test looks for.
        so_rcvbufforce = 33  # Linux's; the socket module does not name it
        capture.setsockopt(socket.SOL_SOCKET, so_rcvbufforce, 32 << 20)
        capture.settimeout(5)
        # Nobody routes source-routed packets here (accept_source_route is off), so the
        # connect can only time out: what matters is what went out.
        with pytest.raises((ConnectTimeout, ConnectError)):
            open_connection(
                InetAddress("127.0.0.1", port), family=socket.AF_INET, source_route=["127.0.0.2"], timeout=0.3
            )
        while True:
            frame = capture.recv(4096)
            ip = frame[14:]
            header_length = (ip[0] & 0x0F) * 4
            if ip[9] != socket.IPPROTO_TCP or ip[16:20] != socket.inet_aton("127.0.0.2"):
                continue
            if int.from_bytes(ip[header_length + 2 : header_length + 4], "big") != port:
                continue
            break
    # The kernel moved the first hop into the destination field, listed what is left
    # of the route, and wrote the final destination in the last slot.
    assert ip[20:header_length] == bytes.fromhex("01830b047f0000017f000001")


def test_source_route_needs_ipv4() -> None:
    with pytest.raises(AddressError):
        open_connection(InetAddress("127.0.0.1", 1), source_route=["127.0.0.2"])


def test_accepting_works_with_descriptor_numbers_over_1024() -> None:
    """select() cannot watch descriptors numbered 1024 and up; enchufe must not use it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        listeners = open_listeners(InetAddress("127.0.0.1", 0))
        try:
            assert listeners[0].fileno() >= 1024
            with open_connection(listeners[0].address) as client:
                with accept_first(listeners, timeout=5) as server:
                    assert server.peer == client.local
            with open_connection(listeners[0].address), listeners[0].accept(timeout=5):
                pass
        finally:
            close_all(listeners)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_peer_that_resets_before_accept_costs_nothing() -> None:
    """The client is gone (RST) before accept(): the listener still hands back a
    connection, named by the address accept() gave, instead of failing in
    getpeername() and leaving the socket to the garbage collector."""
    import struct

    (listener,) = open_listeners(InetAddress("127.0.0.1", 0))
    with listener:
        client = socket.create_connection(("127.0.0.1", listener.address.port))  # type: ignore[union-attr]
        client_address = client.getsockname()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        with listener.accept(timeout=5) as conn:
            assert conn.peer == InetAddress(*client_address)
            with pytest.raises(ConnectionLost):
                conn.recv(10)  # the reset is reported where it belongs: on the first read


def listen_queue_of(port: int) -> int:
    """The backlog the kernel gave a TCP listener on ``port`` (``ss``'s Send-Q column)."""
    import subprocess

    shown = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10)
    return int(shown.stdout.split()[2])


def test_the_library_listens_with_the_kernels_largest_backlog_and_the_command_with_ncats() -> None:
    from enchufe.net.listen import NCAT_BACKLOG

    (library,) = open_listeners(InetAddress("127.0.0.1", 0))
    (command_like,) = open_listeners(InetAddress("127.0.0.1", 0), backlog=NCAT_BACKLOG)
    with library, command_like:
        assert listen_queue_of(library.address.port) == socket.SOMAXCONN  # type: ignore[union-attr]
        assert listen_queue_of(command_like.address.port) == 10  # type: ignore[union-attr]


def test_configure_sets_options_before_the_bind() -> None:
    """SO_REUSEPORT lets two listeners share a port (workers in several processes)."""

    def reuse_port(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

    (first,) = open_listeners(InetAddress("127.0.0.1", 0), configure=reuse_port)
    with first:
        port = first.address.port  # type: ignore[union-attr]
        (second,) = open_listeners(InetAddress("127.0.0.1", port), configure=reuse_port)
        second.close()
        with pytest.raises(BindError):
            open_listeners(InetAddress("127.0.0.1", port))


def test_options_configured_on_a_listener_reach_the_connections_it_accepts() -> None:
    def no_delay(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    (listener,) = open_listeners(InetAddress("127.0.0.1", 0), configure=no_delay)
    with listener, socket.create_connection(("127.0.0.1", listener.address.port), timeout=5):  # type: ignore[union-attr]
        with listener.accept(timeout=5) as conn:
            assert conn.stream.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # type: ignore[attr-defined]


def test_a_configure_hook_that_fails_closes_the_socket(sock_dir: str) -> None:
    def refuse(sock: socket.socket) -> None:
        raise PermissionError("no such option here")

    with pytest.raises(PermissionError):
        open_listeners(InetAddress("127.0.0.1", 0), configure=refuse)
    path = os.path.join(sock_dir, "s")
    with pytest.raises(PermissionError):
        open_listeners(UnixAddress(path), configure=refuse)
    assert not os.path.exists(path)  # refused before the bind: no socket file
