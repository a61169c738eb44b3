"""enchufe-ping as a command, side by side with iputils ping: the output format, -c -q -s
-t -O --json, exit statuses; across two namespaces joined by a veth pair (replies, ICMP
unreachable and time exceeded from a router, loss and duplicates made with nftables); the
unprivileged paths (the kernel's ping sockets, --tcp, and the refusal)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import enchufe
from support.procs import run, run_tool, tool

ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not ROOT, reason="raw ICMP and namespaces need root")
_SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PING = [sys.executable, "-m", "enchufe.ping"]
IPUTILS = shutil.which("ping")
REPLY = re.compile(r"^64 bytes from (\S+): icmp_seq=(\d+) ttl=(\d+) time=\d+\.\d{3} ms$")
SUMMARY = re.compile(
    r"^(\d+) packets transmitted, (\d+) received(, \+\d+ duplicates)?(, \+\d+ errors)?, ([\d.]+)% packet loss"
)


@functools.cache
def _readable_copy() -> str:
    """A copy of the enchufe package that nobody can read, removed at exit: the checkout
    may sit in a directory only root can enter (a fresh clone in ``mktemp -d``), and
    then nobody's Python finds no enchufe."""
    directory = tempfile.mkdtemp(prefix="enchufe-for-nobody-")
    atexit.register(shutil.rmtree, directory, True)
    os.chmod(directory, 0o755)
    package = os.path.dirname(enchufe.__file__)
    shutil.copytree(package, os.path.join(directory, "enchufe"), ignore=shutil.ignore_patterns("__pycache__"))
    return directory


@functools.cache
def _nobodys_python() -> str | None:
    """An interpreter (3.11+) nobody may run: this one, or the system's when this one
    lives where nobody cannot enter (pyenv under /root)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        # Through env, as the tests run it: setpriv itself, refused a path, tries PATH.
        check = [*_SETPRIV, "env", candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]
        if os.access(candidate, os.X_OK) and subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def as_nobody(argv: list[str]) -> list[str]:
    """``argv`` (a Python command line) run as the user nobody, with enchufe where nobody
    can import it."""
    python = _nobodys_python()
    if python is None:
        pytest.skip("no Python 3.11+ that the user nobody may run")
    assert argv[0] == sys.executable
    return [*_SETPRIV, "env", f"PYTHONPATH={_readable_copy()}", python, *argv[1:]]


def lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stdout.decode().splitlines()


def summary(output: list[str]) -> tuple[int, int, str]:
    match = next(m for line in output if (m := SUMMARY.match(line)))
    return int(match.group(1)), int(match.group(2)), match.group(5)


def timeless(line: str) -> str:
    """A line with its times (``time=0.045 ms``, ``time 2ms``, the rtt figures) blanked."""
    return re.sub(r"time[= ]\S+|\d+\.\d{3}", "T", line)


def records(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(result)]


# -- loopback -------------------------------------------------------------------------------


@root_only
def test_the_output_is_iputils_line_for_line() -> None:
    result = run_tool("ping", "-c", "3", "-i", "0.01", "127.0.0.1")
    assert result.returncode == 0, result
    output = lines(result)
    assert output[0] == "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data."
    assert [REPLY.match(line).groups() for line in output[1:4]] == [  # type: ignore[union-attr]
        ("127.0.0.1", str(n), "64") for n in (1, 2, 3)
    ]
    assert output[4:6] == ["", "--- 127.0.0.1 ping statistics ---"]
    assert re.fullmatch(r"3 packets transmitted, 3 received, 0% packet loss, time \d+ms", output[6])
    assert re.fullmatch(r"rtt min/avg/max/mdev = (\d+\.\d{3}/){3}\d+\.\d{3} ms", output[7])
    assert len(output) == 8


@root_only
@pytest.mark.skipif(IPUTILS is None, reason="iputils ping is not installed (apt-get install iputils-ping)")
@pytest.mark.parametrize(
    "args", [["-c", "2", "127.0.0.1"], ["-c", "2", "-s", "100", "::1"], ["-c", "1", "-q", "-s", "8", "127.0.0.1"]]
)
def test_side_by_side_with_iputils(args: list[str]) -> None:
    ours = run_tool("ping", "-i", "0.01", *args)
    theirs = run(["ping", "-i", "0.01", *args])
    assert ours.returncode == theirs.returncode == 0
    assert [timeless(line) for line in lines(ours)] == [timeless(line) for line in lines(theirs)]
    assert summary(lines(ours)) == summary(lines(theirs))


@root_only
def test_a_small_payload_is_not_timed_and_ttl_is_set() -> None:
    result = run_tool("ping", "-c", "1", "-s", "8", "-t", "3", "127.0.0.1")
    assert lines(result)[1] == "16 bytes from 127.0.0.1: icmp_seq=1 ttl=64"
    assert lines(result)[-1] == ""  # no rtt line, as iputils


@root_only
def test_json_lines_have_stable_keys() -> None:
    result = run_tool("ping", "--json", "-c", "2", "-i", "0.01", "::1")
    replies, (end,) = records(result)[:2], records(result)[2:]
    assert [set(r) for r in replies] == [{"type", "seq", "source", "bytes", "ttl", "time_ms", "duplicate", "state"}] * 2
    assert [(r["type"], r["seq"], r["source"], r["bytes"]) for r in replies] == [
        ("reply", 1, "::1", 64),
        ("reply", 2, "::1", 64),
    ]
    assert end["type"] == "summary" and (end["transmitted"], end["received"], end["loss_percent"]) == (2, 2, 0.0)
    assert isinstance(end["rtt_avg_ms"], float)


def test_usage_errors_exit_2_with_one_line() -> None:
    for args, message in [
        (["-c", "0", "127.0.0.1"], "enchufe-ping: Invalid count '0': 1 or more. QUITTING."),
        (["-s", "65508", "127.0.0.1"], "enchufe-ping: Packet size 65508 is too large. Maximum is 65507. QUITTING."),
        (["-t", "256", "127.0.0.1"], "enchufe-ping: Invalid ttl '256': from 1 to 255. QUITTING."),
        (["--tcp", "x", "127.0.0.1"], 'enchufe-ping: Invalid port number "x". QUITTING.'),
        ([], "enchufe-ping: Give one destination. QUITTING."),
        (["-n", "localhost"], None),
    ]:
        result = run_tool("ping", *args)
        assert result.returncode == 2, (args, result)
        assert result.stdout == b""
        assert len(result.stderr.splitlines()) == 1 and b"Traceback" not in result.stderr
        if message is not None:
            assert result.stderr.decode().strip() == message
    help_text = run_tool("ping", "--help")
    assert help_text.returncode == 0 and b"--tcp <port>" in help_text.stdout


def test_tcp_ping_needs_no_privilege() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = str(listener.getsockname()[1])
        argv = [*PING, "--tcp", port, "-c", "2", "-i", "0.01", "127.0.0.1"]
        result = run(as_nobody(argv) if ROOT else argv)
    assert result.returncode == 0, result
    output = lines(result)
    assert output[0] == f"PING 127.0.0.1 (127.0.0.1) TCP port {port}."
    assert re.fullmatch(rf"from 127\.0\.0\.1 port {port}: tcp_seq=1 open time=\d+\.\d+ ms", output[1])
    assert summary(output) == (2, 2, "0")


@root_only
def test_without_privilege_nor_ping_group_the_refusal_is_one_line() -> None:
    with open("/proc/sys/net/ipv4/ping_group_range") as ranges:
        low, high = map(int, ranges.read().split())
    if low <= 65534 <= high:
        pytest.skip("ping_group_range lets nobody use ping sockets here")
    result = run(as_nobody([*PING, "-c", "1", "127.0.0.1"]))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("enchufe-ping: Operation not permitted: raw ICMP needs root")
    assert result.stderr.decode().endswith("--tcp PORT needs neither. QUITTING.\n")


@root_only
def test_sigint_ends_with_the_summary() -> None:
    with tool("ping", "-i", "0.01", "127.0.0.1") as process:
        assert process.read_until(rb"icmp_seq=3 ")
        process.popen.send_signal(signal.SIGINT)
        assert process.wait() == 0
        assert re.search(rb"--- 127.0.0.1 ping statistics ---\n\d+ packets transmitted", process.stdout)


# -- two namespaces: a client and a router ----------------------------------------------------


@dataclass
class Lab:
    client: str
    router: str

    def ping(self, *args: str, nobody: bool = False) -> subprocess.CompletedProcess[bytes]:
        argv = [*PING, *args]
        return run(["ip", "netns", "exec", self.client, *(as_nobody(argv) if nobody else argv)])

    def iputils(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return run(["ip", "netns", "exec", self.client, "ping", *args])

    def nft(self, namespace: str, *rules: str) -> None:
        for rule in rules:
            subprocess.run(["ip", "netns", "exec", namespace, "nft", *rule.split()], check=True, timeout=10)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, timeout=10, capture_output=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """client (10.77.0.1) ─veth─ router (10.77.0.2): the router says host unreachable for
    10.9.9.0/24 and sends 10.6.6.0/24 back to the client (a TTL of 1 expires there)."""
    if not ROOT or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"{os.getpid()}"
    names = Lab(f"pingc{tag}", f"pingr{tag}")
    try:
        sh("ip", "netns", "add", names.client)
        sh("ip", "netns", "add", names.router)
        sh(
            "ip",
            "link",
            "add",
            f"pc{tag}",
            "netns",
            names.client,
            "type",
            "veth",
            "peer",
            "name",
            f"pr{tag}",
            "netns",
            names.router,
        )
        for namespace, device, address in [
            (names.client, f"pc{tag}", "10.77.0.1/24"),
            (names.router, f"pr{tag}", "10.77.0.2/24"),
        ]:
            sh("ip", "-n", namespace, "addr", "add", address, "dev", device)
            sh("ip", "-n", namespace, "link", "set", device, "up")
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        sh("ip", "-n", names.client, "route", "add", "10.9.9.0/24", "via", "10.77.0.2")
        sh("ip", "-n", names.client, "route", "add", "10.6.6.0/24", "via", "10.77.0.2")
        sh("ip", "-n", names.router, "route", "add", "unreachable", "10.9.9.0/24")
        sh("ip", "-n", names.router, "route", "add", "10.6.6.0/24", "via", "10.77.0.1")
        sh("ip", "netns", "exec", names.router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0")
        yield names
    finally:
        for namespace in (names.client, names.router):
            subprocess.run(["ip", "netns", "del", namespace], timeout=10, capture_output=True, check=False)


needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (loss and duplicates)")


def test_across_a_veth_pair_side_by_side_with_iputils(lab: Lab) -> None:
    ours, theirs = lab.ping("-c", "3", "-i", "0.01", "10.77.0.2"), lab.iputils("-c", "3", "-i", "0.01", "10.77.0.2")
    assert ours.returncode == theirs.returncode == 0
    assert summary(lines(ours)) == summary(lines(theirs)) == (3, 3, "0")


def test_a_router_saying_unreachable_is_an_error_never_a_reply(lab: Lab) -> None:
    result = lab.ping("-c", "2", "-i", "0.01", "-W", "2", "10.9.9.1")
    theirs = lab.iputils("-c", "2", "-i", "0.01", "-W", "2", "10.9.9.1")
    assert result.returncode == theirs.returncode == 1
    assert (
        lines(result)[1:3]
        == lines(theirs)[1:3]
        == [
            "From 10.77.0.2 icmp_seq=1 Destination Host Unreachable",
            "From 10.77.0.2 icmp_seq=2 Destination Host Unreachable",
        ]
    )
    assert lines(result)[-2].startswith("2 packets transmitted, 0 received, +2 errors, 100% packet loss")


def test_a_ttl_too_small_expires_at_the_router(lab: Lab) -> None:
    result = lab.ping("--json", "-c", "1", "-t", "1", "-W", "2", "10.6.6.1")
    error, end = records(result)
    assert result.returncode == 1
    assert (error["type"], error["source"], error["message"], error["icmp_type"]) == (
        "error",
        "10.77.0.2",
        "Time to live exceeded",
        11,
    )
    assert (end["received"], end["errors"]) == (0, 1)


def test_kernel_ping_sockets_without_privilege(lab: Lab) -> None:
    """As nobody, raw ICMP is refused; with the group in ping_group_range the kernel's
    ICMP datagram sockets serve instead: replies with their TTL, errors from the error queue."""
    sh("ip", "netns", "exec", lab.client, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    result = lab.ping("-v", "-c", "2", "-i", "0.01", "10.77.0.2", nobody=True)
    assert result.returncode == 0, result
    assert "over a datagram socket" in result.stderr.decode()
    assert [REPLY.match(line).groups()[1:] for line in lines(result)[1:3]] == [("1", "64"), ("2", "64")]  # type: ignore[union-attr]
    unreachable = lab.ping("-c", "1", "-W", "2", "10.9.9.1", nobody=True)
    assert lines(unreachable)[1] == "From 10.77.0.2 icmp_seq=1 Destination Host Unreachable", unreachable


@needs_nft
def test_loss_is_counted_as_iputils_counts_it(lab: Lab) -> None:
    """The router drops every other echo request (nftables' numgen): half are lost, a
    timeout each in JSON, and iputils counts the same."""
    lab.nft(lab.router, "add table ip lossy", "add chain ip lossy in { type filter hook input priority 0 ; }",
            "add rule ip lossy in icmp type echo-request numgen inc mod 2 == 1 drop")  # fmt: skip
    args = ("-c", "4", "-i", "0.05", "-W", "0.3", "10.77.0.2")
    ours, theirs = lab.ping(*args), lab.iputils(*args)
    assert summary(lines(ours)) == summary(lines(theirs)) == (4, 2, "50")
    assert ours.returncode == theirs.returncode == 0
    events = records(lab.ping("--json", *args))
    assert [(e["type"], e["seq"]) for e in events[:-1] if e["type"] != "reply"] == [("timeout", 2), ("timeout", 4)]


@needs_nft
def test_duplicates_are_reported_never_counted(lab: Lab) -> None:
    lab.nft(lab.client, "add table ip twice", "add chain ip twice out { type filter hook output priority 0 ; }",
            "add rule ip twice out icmp type echo-request dup to 10.77.0.2")  # fmt: skip
    result = lab.ping("-c", "2", "-i", "0.1", "10.77.0.2")
    output = lines(result)
    assert sum(line.endswith(" (DUP!)") for line in output) == 2, output
    assert output[-2].startswith("2 packets transmitted, 2 received, +2 duplicates, 0% packet loss")
