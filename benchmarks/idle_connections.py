"""Idle connections held by a keep-open listener: memory per connection, and whether it
still serves one more client. enchufe and ncat in the same run, and the library's
RequestServer (``enchufe-request``: a line-echo handler in a worker pool).

For each tool: start ``TOOL -l -k -m LIMIT 127.0.0.1 PORT``, open N connections from
this process one at a time (each waits until the server has accepted it: the command
keeps ncat's listen backlog of 10), then read the server's proportional set size (PSS,
``/proc/PID/smaps_rollup``) and thread count, and check that one more client gets
what the server's stdin says. Memory per connection is (PSS after - PSS before) / N.
``enchufe-request`` is a small program of this file (``--serve-request PORT``): each
client makes one request (a line, echoed) once connected, so it is accepted, served
once and parked, and "one more served" is one more client's echo.

    python3 benchmarks/idle_connections.py [-n 10000] [--only enchufe,ncat,enchufe-request] [--tls]

``--tls``: the same over TLS 1.3 (``--ssl`` with a temporary EC P-256 certificate made
by the ``openssl`` command; each client completes its handshake before the next one
connects), for ``enchufe`` and ``ncat`` (``RequestServer`` has no TLS). It also
measures what OpenSSL itself holds for a connection: a process of this file
(``--openssl-alone N``) keeps N server ``SSLObject``s over memory BIOs, each after a
completed handshake with an in-memory client that is then freed, and reports its PSS
before and after.

The open-file limit is raised to N + 100 (up to the hard limit) for the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import Results, add_json_option

TOOLS = {
    "enchufe": [sys.executable, "-m", "enchufe"],
    "ncat": ["ncat"],
    "enchufe-request": [sys.executable, __file__, "--serve-request"],
}


PER_CONNECTION = "memory per connection (PSS)"


def serve_request(port: int) -> None:
    """A RequestServer echoing one line per request, until terminated."""
    import signal

    import enchufe

    def echo_line(conn: enchufe.Connection) -> None:
        conn.send_all(conn.recv_line())

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    listeners = enchufe.open_listeners(enchufe.InetAddress("127.0.0.1", port), backlog=1024)
    with enchufe.RequestServer(listeners, echo_line) as server:
        print(f"Listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # SIGTERM: the with block closes everything
            server.serve_forever()


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed EC P-256 certificate for localhost and its key, as PEM files."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    ec_p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subject = ["-subj", "/CN=localhost", "-days", "1"]
    subprocess.run(
        ["openssl", "req", "-x509", *ec_p256, *subject, "-keyout", key, "-out", cert], check=True, capture_output=True
    )
    return cert, key


def trusting_nothing() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def openssl_alone(count: int, cert: str, key: str) -> None:
    """PSS before and after holding ``count`` server SSLObjects whose handshake is done
    (their in-memory clients freed): what OpenSSL and ssl's objects cost, no socket."""
    import gc

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = trusting_nothing()
    held = []

    def handshake() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
        s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        server = server_context.wrap_bio(s_in, s_out, server_side=True)
        client = client_context.wrap_bio(c_in, c_out)
        done = {"server": False, "client": False}
        while not all(done.values()):
            for name, end in (("client", client), ("server", server)):
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        s_out.read()  # the session tickets, which the client would have taken
        return server, s_in, s_out

    handshake()  # the first one loads what every later one shares
    gc.collect()
    before = pss_kib(os.getpid())
    for _ in range(count):
        held.append(handshake())
    gc.collect()
    after = pss_kib(os.getpid())
    print(f"{before} {after} {(after - before) / count:.2f}")


def wait_for_ticket(sock: ssl.SSLSocket) -> None:
    """Until the server's TLS 1.3 session ticket arrives: it sends one once it has the
    client's last handshake message, so its side of the handshake is done too."""
    deadline = time.monotonic() + 10
    readable = select.poll()  # not select(): the descriptor is above 1024 with thousands of clients
    readable.register(sock, select.POLLIN)
    sock.setblocking(False)
    try:
        while not (sock.session is not None and sock.session.has_ticket) and time.monotonic() < deadline:
            readable.poll(max(0.0, deadline - time.monotonic()) * 1000)
            with contextlib.suppress(ssl.SSLWantReadError):
                sock.recv(1)  # the ticket is read, no data comes
    finally:
        sock.settimeout(5)


def round_trip(sock: socket.socket) -> bool:
    sock.sendall(b"ping\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            return False
        data += chunk
    return data == b"ping\n"


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Lines:
    """The server's stderr, line by line, with a deadline (raw reads: select() cannot
    see what a buffered file object has already read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def next(self, deadline: float) -> bytes | None:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def wait_for_accept(self, deadline: float) -> bool:
        """Until the server reports one more accepted connection (ncat 7.93 prints two
        lines per connection; the one with the port counts)."""
        while (line := self.next(deadline)) is not None:
            if re.search(rb"Connection from .*:\d+\.$", line.strip()):
                return True
        return False


def measure(tool: str, count: int, certificate: tuple[str, str] | None) -> dict[str, object]:
    port = free_port()
    tls = [] if certificate is None else ["--ssl-cert", certificate[0], "--ssl-key", certificate[1]]
    argv = [*TOOLS[tool], "-v", "-l", "-k", "-m", str(count + 10), *tls, "127.0.0.1", str(port)]
    request_style = tool == "enchufe-request"
    if request_style:
        argv = [*TOOLS[tool], str(port)]
    context = None if certificate is None else trusting_nothing()

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        return sock if context is None else context.wrap_socket(sock)  # the handshake, done

    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[socket.socket] = []
    result: dict[str, object] = {"tool": tool, "asked": count}
    try:
        assert server.stderr is not None
        lines = Lines(server.stderr.fileno())
        while b"Listening on" not in (lines.next(time.monotonic() + 10) or b"Listening on"):
            pass
        time.sleep(0.5)  # the server settles into its wait (PSS is read while it is idle)
        before = pss_kib(server.pid)
        started = time.monotonic()
        failure = ""
        for index in range(count):
            try:
                clients.append(connect())
            except OSError as exc:
                failure = f"connection {index + 1}: {exc}"
                break
            if request_style:
                if not round_trip(clients[-1]):
                    failure = f"connection {index + 1} not served (server status {server.poll()})"
                    break
                continue
            # One at a time: both keep a listen backlog of 10, and a burst beyond it
            # costs each extra client a 1 s SYN retry.
            if not lines.wait_for_accept(time.monotonic() + 10):
                failure = f"connection {index + 1} not accepted (server status {server.poll()})"
                break
        held = len(clients)
        time.sleep(0.5)  # idle again before PSS is read
        elapsed = time.monotonic() - started
        alive = server.poll() is None
        result.update(held=held, seconds=round(elapsed - 0.5, 2), failure=failure or "-")
        if alive:
            after = pss_kib(server.pid)
            result.update(
                pss_before_kib=before,
                pss_after_kib=after,
                per_connection_kib=round((after - before) / max(held, 1), 2),
                threads=threads(server.pid),
            )
            with connect() as one_more:
                if request_style:
                    result["one_more_served"] = round_trip(one_more)
                    return result
                lines.wait_for_accept(time.monotonic() + 10)  # a client that joins later misses earlier input
                if isinstance(one_more, ssl.SSLSocket):
                    wait_for_ticket(one_more)  # and one in its handshake is no member yet
                assert server.stdin is not None
                server.stdin.write(b"still serving\n")
                server.stdin.flush()
                one_more.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data:
                        chunk = one_more.recv(100)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                result["one_more_served"] = data == b"still serving\n"
        else:
            err = lines.pending.decode(errors="replace").strip()
            result.update(exit_status=server.returncode, stderr=err[-200:])
    finally:
        for client in clients:
            client.close()
        if server.poll() is None:
            server.terminate()
        server.wait(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10000, help="idle connections to open (default 10000)")
    parser.add_argument("--only", default="enchufe,ncat,enchufe-request", help="comma-separated tools")
    parser.add_argument("--tls", action="store_true", help="over TLS (--ssl), with an EC P-256 certificate")
    parser.add_argument("--serve-request", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--openssl-alone", nargs=3, metavar=("N", "CERT", "KEY"), help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.serve_request:
        serve_request(args.serve_request)
        return
    if args.openssl_alone:
        openssl_alone(int(args.openssl_alone[0]), *args.openssl_alone[1:])
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.n + 100), hard))
    with tempfile.TemporaryDirectory() as directory:
        certificate = make_certificate(directory) if args.tls else None
        results = Results("idle_connections", reference="ncat")
        report(args.n, args.only.split(","), certificate, results)
        results.write(args.json)


def report(count: int, tools: list[str], certificate: tuple[str, str] | None, results: Results) -> None:
    """Measure each tool, print its row and record its memory per connection in ``results``."""
    kind = "TCP" if certificate is None else "TLS 1.3"
    case = f"{count} idle {kind} connections"
    print(f"# {count} idle {kind} connections to TOOL -l -k on 127.0.0.1, {time.strftime('%Y-%m-%d')}")
    header = ["tool", "held", "seconds", "PSS before KiB", "PSS after KiB", "KiB per connection", "threads"]
    print("| " + " | ".join([*header, "one more served", "note"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for tool in tools:
        if certificate is not None and tool == "enchufe-request":
            print(f"| {tool} | - | - | - | - | - | - | - | RequestServer has no TLS |", flush=True)
            continue
        row = measure(tool, count, certificate)
        note = row.get("failure", "-")
        if "exit_status" in row:
            note = f"{note}; exit {row['exit_status']}: {row.get('stderr', '')}"
        if note != "-":
            results.problem(f"{case} / {tool}: {note}")
        if isinstance(per_connection_kib := row.get("per_connection_kib"), float):
            results.add(case, tool, PER_CONNECTION, "KiB", [per_connection_kib], better="lower")
        print(
            f"| {tool} | {row.get('held')} | {row.get('seconds')} | {row.get('pss_before_kib', '-')} | "
            f"{row.get('pss_after_kib', '-')} | {row.get('per_connection_kib', '-')} | {row.get('threads', '-')} | "
            f"{row.get('one_more_served', '-')} | {note} |",
            flush=True,
        )
    if certificate is not None:
        alone = subprocess.run(
            [sys.executable, __file__, "--openssl-alone", str(count), *certificate],
            check=True,
            capture_output=True,
            text=True,
        )
        before, after, per_connection = alone.stdout.split()
        results.add(
            case, "OpenSSL alone", "memory per connection (PSS)", "KiB", [float(per_connection)], better="lower"
        )
        print(
            f"| OpenSSL alone (server SSLObject + BIOs, handshake done) | {count} | - | {before} | {after} | "
            f"{per_connection} | 1 | - | no socket, no transport |",
            flush=True,
        )


if __name__ == "__main__":
    main()
