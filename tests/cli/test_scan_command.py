"""The enchufe-scan command: its table, JSON lines, statuses, the filtered states in a
network namespace of the test's own, and the same open ports as nc.openbsd -z."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.procs import run, run_tool

SRC = Path(__file__).parent.parent.parent / "src"
HEAVY = ["dataclasses", "inspect", "typing", "re", "enum", "socket", "threading", "selectors", "ipaddress"]


@contextlib.contextmanager
def listeners(count: int) -> Iterator[list[int]]:
    """Loopback listeners (never accepting: the kernel completes the connects); their ports."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(count)]
        yield [sock.getsockname()[1] for sock in socks]


@contextlib.contextmanager
def refused_ports(count: int) -> Iterator[list[int]]:
    """Ports bound and not listening: connects to them are refused."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in socks]


def lines(completed: subprocess.CompletedProcess[bytes]) -> list[str]:
    return completed.stdout.decode().splitlines()


def test_a_table_in_port_order_and_a_summary() -> None:
    with listeners(2) as open_ports, refused_ports(3) as closed:
        ports = sorted(open_ports + closed)
        completed = run_tool("scan", "-p", ",".join(map(str, reversed(ports))), "127.0.0.1")
    assert completed.returncode == 0, completed.stderr
    *table, summary = lines(completed)
    assert [line.split()[:3] for line in table] == [
        ["127.0.0.1", f"{port}/tcp", "open" if port in open_ports else "closed"] for port in ports
    ]
    assert re.fullmatch(r"Scanned 1 address, 5 ports in \d+\.\d\d s: 2 open, 3 closed\.", summary)
    assert completed.stderr == b""


def test_open_only_json_lines_and_a_banner() -> None:
    with socket.create_server(("127.0.0.1", 0)) as greeter, refused_ports(1) as (closed,):
        port = greeter.getsockname()[1]
        greeter.settimeout(20)
        with subprocess.Popen(
            [sys.executable, "-m", "enchufe.scan", "--json", "--open", "--banner", f"-p{port},{closed}", "localhost"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as scanner:
            conn, _ = greeter.accept()
            with conn:
                conn.sendall(b"220 enchufe ESMTP\r\n")
                out, err = scanner.communicate(timeout=20)
    assert scanner.returncode == 0, err
    (record,) = [json.loads(line) for line in out.decode().splitlines()]  # no summary, no closed port
    assert record == {
        "host": "localhost",
        "address": "127.0.0.1",
        "port": port,
        "transport": "tcp",
        "state": "open",
        "reason": "connected",
        "seconds": record["seconds"],
        "banner": "220 enchufe ESMTP\r\n",
    }
    assert isinstance(record["seconds"], float)


def test_the_table_shows_a_banners_first_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as greeter:
        port = greeter.getsockname()[1]
        greeter.settimeout(20)
        with subprocess.Popen(
            [sys.executable, "-m", "enchufe.scan", "--banner", "-p", str(port), "127.0.0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as scanner:
            conn, _ = greeter.accept()
            with conn:
                conn.sendall(b"SSH-2.0-enchufe\x07\r\n")
                out, _ = scanner.communicate(timeout=20)
    assert out.decode().splitlines()[0].split() == ["127.0.0.1", f"{port}/tcp", "open", "SSH-2.0-enchufe\\x07"]


def test_udp_and_a_cidr_block() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.2", 0))
        port = silent.getsockname()[1]
        completed = run_tool("scan", "-u", "-w", "100ms", "-p", str(port), "127.0.0.0/30")
    assert completed.returncode == 0, completed.stderr
    assert [line.split() for line in lines(completed)[:2]] == [
        ["127.0.0.1", f"{port}/udp", "closed"],
        ["127.0.0.2", f"{port}/udp", "open|filtered"],
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "localhost"], '"localhost" is a name, and -n refuses names: give an address.'),
        (["-p", "0", "127.0.0.1"], 'Invalid port list "0".'),
        (["-p", "9-1", "127.0.0.1"], 'Invalid port list "9-1".'),
        (["-c", "0", "127.0.0.1"], 'Invalid concurrency "0": a number from 1 to 65535.'),
        (["-w", "soon", "127.0.0.1"], 'Invalid time value "soon".'),
        (["-w", "0", "127.0.0.1"], 'Invalid timeout "0": it must be above zero.'),
        (["10.0.0.0/15"], "More than 65536 addresses to scan."),
        (["-4", "::1"], '"::1" is not an IPv4 address.'),
        ([], "No host to scan given."),
        (["--nope", "127.0.0.1"], "unrecognized option '--nope'. Try `enchufe-scan --help'."),
    ],
)
def test_bad_command_lines_are_one_line_and_status_2(args: list[str], message: str) -> None:
    completed = run_tool("scan", *args)
    assert completed.returncode == 2
    assert completed.stderr.decode() == f"enchufe-scan: {message} QUITTING.\n"
    assert completed.stdout == b""


def test_help_and_version() -> None:
    completed = run_tool("scan", "--help")
    assert completed.returncode == 0
    assert completed.stdout.startswith(b"Usage: enchufe-scan [options] HOST...")
    for option in (b"-p PORTS", b"-u", b"--banner", b"-c CONCURRENCY", b"-w TIMEOUT", b"--open", b"--json", b"-n"):
        assert option in completed.stdout
    version = run_tool("scan", "--version")
    assert (version.returncode, version.stdout.startswith(b"enchufe-scan 0.")) == (0, True)


def modules_loaded_by(argv: list[str]) -> set[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from enchufe.cli.scan import main; "
        f"status = main({argv!r}); print(status, *sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=False)
    status, *loaded = result.stderr.splitlines()[-1].split()
    assert status == "0", result
    return set(loaded)


def test_version_and_help_import_nothing_heavy() -> None:
    assert modules_loaded_by(["--version"]) == set()
    assert modules_loaded_by(["-h"]) == set()


# -- in a network namespace of the test's own ---------------------------------------------


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A network namespace with lo up and a veth pair on 10.77.0.0/24 (10.77.0.1 on one
    end, no address on the other: nobody answers for the rest of the subnet); removed
    after."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and ip(8)")
    name = f"enchufe-scan-{os.getpid()}"
    created = run(["ip", "netns", "add", name])
    if created.returncode != 0:
        pytest.skip(f"ip netns add failed: {created.stderr.decode().strip()}")
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", "scan-a", "type", "veth", "peer", "name", "scan-b"],
            ["addr", "add", "10.77.0.1/24", "dev", "scan-a"],
            ["link", "set", "scan-a", "up"],
            ["link", "set", "scan-b", "up"],
        ):
            done = run(["ip", "-n", name, *command])
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        run(["ip", "netns", "delete", name])


def scan_in(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run(["ip", "netns", "exec", name, sys.executable, "-m", "enchufe.scan", *args])


def test_no_answer_and_icmp_unreachable_are_filtered() -> None:
    """No host behind 10.77.0.9 (the SYN waits for an ARP answer that never comes), and
    routes that answer as ICMP would: unreachable (EHOSTUNREACH), prohibit (EACCES)."""
    with namespace() as name:
        for route in (["unreachable", "10.78.0.0/24"], ["prohibit", "10.79.0.0/24"]):
            assert run(["ip", "-n", name, "route", "add", *route]).returncode == 0
        completed = scan_in(name, "--json", "-w", "300ms", "-p", "80", "10.77.0.9", "10.78.0.1", "10.79.0.1")
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in lines(completed)]
    assert [(r["address"], r["state"], r["reason"]) for r in records] == [
        ("10.77.0.9", "filtered", "no-response"),
        ("10.78.0.1", "filtered", "host-unreach"),
        ("10.79.0.1", "filtered", "admin-prohibited"),
    ]


def test_a_host_without_a_route_is_not_scanned_and_the_status_is_1() -> None:
    with namespace() as name:
        completed = scan_in(name, "-p", "80", "10.200.0.1", "127.0.0.1")
    assert completed.returncode == 1
    assert completed.stderr.decode() == "enchufe-scan: 10.200.0.1: Network is unreachable; not scanned.\n"
    assert lines(completed)[0].split() == ["127.0.0.1", "80/tcp", "closed"]


def drop_rule(port: int) -> list[str] | None:
    """The command adding a DROP rule for TCP ``port`` in the namespace, nft's or iptables'."""
    if shutil.which("nft"):
        return [
            "nft",
            f"add table inet scan; add chain inet scan input {{ type filter hook input priority 0; }}; "
            f"add rule inet scan input tcp dport {port} drop",
        ]
    if shutil.which("iptables"):
        return ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
    return None


def test_a_firewalls_drop_is_filtered() -> None:
    rule = drop_rule(8081)
    if rule is None:
        pytest.skip("neither nft nor iptables is installed")
    with namespace() as name:
        added = run(["ip", "netns", "exec", name, *rule])
        assert added.returncode == 0, added.stderr
        completed = scan_in(name, "-w", "300ms", "-p", "8081", "127.0.0.1")
    assert lines(completed)[0].split() == ["127.0.0.1", "8081/tcp", "filtered"]


# -- next to nc.openbsd ----------------------------------------------------------------------


@pytest.mark.interop
def test_the_same_open_ports_as_nc_openbsd() -> None:
    if shutil.which("nc.openbsd") is None:
        pytest.skip("nc.openbsd is not installed")
    with listeners(3) as open_ports, refused_ports(5) as closed:
        ports = [str(port) for port in sorted(open_ports + closed)]
        nc = run(["nc.openbsd", "-zv", "-w1", "127.0.0.1", *ports])
        ours = run_tool("scan", "--open", "--json", "-p", ",".join(ports), "127.0.0.1")
    nc_open = {int(port) for port in re.findall(rb"Connection to 127\.0\.0\.1 (\d+) port .* succeeded", nc.stderr)}
    assert nc_open == set(open_ports)
    assert {json.loads(line)["port"] for line in lines(ours)} == nc_open
