"""enchufe-resolve as a command, against a private /etc/hosts: each run is in a mount
namespace where the file is bind-mounted over /etc/hosts, and a network namespace of
its own, so that a name the file lacks fails without any DNS query leaving the machine
(a new network namespace has no network). getent, in the same namespace, is the
reference for the addresses and the output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.procs import run_tool

SRC = Path(__file__).parent.parent.parent / "src"

HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost
10.1.2.3 alpha.test alpha a1.test
10.1.2.4 multi.test
10.1.2.5 multi.test
fd00::5 multi.test six.test
fd00::9 v6only.test
10.9.8.7 box.test
"""


def _hosts_come_from_files() -> bool:
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
    except OSError:
        return False
    sources = next((line.split(":", 1)[1].split() for line in lines if line.startswith("hosts:")), [])
    return sources[:1] == ["files"]


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mount and network namespaces need root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)"),
    pytest.mark.skipif(not _hosts_come_from_files(), reason="nsswitch.conf's hosts: does not start with files"),
]


def in_namespace(tmp_path: Path, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with HOSTS as /etc/hosts, no network, and ``box.test`` as the host name."""
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    script = 'mount --bind "$0" /etc/hosts && hostname box.test && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "-n", "-u", "sh", "-c", script, str(hosts), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )


def resolve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return in_namespace(tmp_path, sys.executable, "-m", "enchufe.resolve", *args)


def stripped(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_forward_lines_are_getent_ahosts_lines(tmp_path: Path) -> None:
    for name in ("alpha.test", "multi.test", "v6only.test", "10.1.2.3"):
        ours, getent = resolve(tmp_path, name), in_namespace(tmp_path, "getent", "ahosts", name)
        assert (ours.returncode, getent.returncode) == (0, 0), ours.stderr
        assert stripped(ours.stdout) == stripped(getent.stdout), name
    assert stripped(resolve(tmp_path, "alpha.test").stdout)[0] == "10.1.2.3        STREAM alpha.test"


def test_every_address_of_several_names_in_the_order_asked(tmp_path: Path) -> None:
    result = resolve(tmp_path, "--json", "-t", "stream", "multi.test", "alpha.test", "v6only.test")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["query"] for record in records] == ["multi.test", "alpha.test", "v6only.test"]
    addresses = [[entry["address"] for entry in record["addresses"]] for record in records]
    getent = [line.split()[0] for line in in_namespace(tmp_path, "getent", "ahosts", "multi.test").stdout.splitlines()]
    assert addresses[0] == list(dict.fromkeys(getent)) and set(addresses[0]) == {"fd00::5", "10.1.2.4", "10.1.2.5"}
    assert addresses[1:] == [["10.1.2.3"], ["fd00::9"]]
    assert {entry["type"] for record in records for entry in record["addresses"]} == {"stream"}
    assert records[1]["canonical"] == "alpha.test" and records[1]["status"] == "ok"
    assert list(records[0]) == ["query", "kind", "status", "canonical", "aliases", "addresses", "error", "elapsed_ms"]


def test_family_and_service(tmp_path: Path) -> None:
    result = resolve(tmp_path, "--json", "-6", "-t", "stream", "--service", "http", "multi.test")
    assert result.returncode == 0, result.stderr
    (record,) = map(json.loads, result.stdout.splitlines())
    assert record["addresses"] == [{"address": "fd00::5", "family": "inet6", "type": "stream", "port": 80}]
    result = resolve(tmp_path, "-4", "v6only.test")
    assert result.returncode == 1 and result.stdout == ""


def test_reverse_lines_are_getent_hosts_lines(tmp_path: Path) -> None:
    for address in ("10.1.2.3", "fd00::5"):
        ours, getent = resolve(tmp_path, "-r", address), in_namespace(tmp_path, "getent", "hosts", address)
        assert (ours.returncode, getent.returncode) == (0, 0), ours.stderr
        assert stripped(ours.stdout) == stripped(getent.stdout)
    assert stripped(resolve(tmp_path, "-r", "10.1.2.3").stdout) == ["10.1.2.3        alpha.test alpha a1.test"]


def test_reverse_of_a_name_asks_for_the_names_of_each_of_its_addresses(tmp_path: Path) -> None:
    result = resolve(tmp_path, "--json", "-r", "-t", "stream", "multi.test")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["kind"] for record in records] == ["forward", "reverse", "reverse", "reverse"]
    names = {record["query"]: [record["canonical"], *record["aliases"]] for record in records[1:]}
    assert names == {"fd00::5": ["multi.test", "six.test"], "10.1.2.4": ["multi.test"], "10.1.2.5": ["multi.test"]}


def test_legacy_shows_the_aliases_as_getent_hosts_does(tmp_path: Path) -> None:
    ours, getent = resolve(tmp_path, "--legacy", "alpha.test"), in_namespace(tmp_path, "getent", "hosts", "alpha.test")
    assert ours.returncode == 0, ours.stderr
    assert stripped(ours.stdout) == stripped(getent.stdout) == ["10.1.2.3        alpha.test alpha a1.test"]
    (record,) = map(json.loads, resolve(tmp_path, "--json", "--legacy", "multi.test").stdout.splitlines())
    assert [entry["address"] for entry in record["addresses"]] == ["10.1.2.4", "10.1.2.5"]


def test_hostname_and_what_it_resolves_to(tmp_path: Path) -> None:
    result = resolve(tmp_path, "--hostname")
    assert result.returncode == 0, result.stderr
    lines = ["box.test", "10.9.8.7        STREAM box.test", "10.9.8.7        DGRAM", "10.9.8.7        RAW"]
    assert stripped(result.stdout) == lines


def test_a_failed_lookup_says_the_resolvers_words_and_the_others_still_answer(tmp_path: Path) -> None:
    result = resolve(tmp_path, "-t", "stream", "nowhere.test", "alpha.test")
    assert result.returncode == 1
    assert stripped(result.stdout) == ["10.1.2.3        STREAM alpha.test"]
    getent = in_namespace(tmp_path, "getent", "ahosts", "nowhere.test")
    assert getent.returncode == 2 and getent.stdout == ""
    words = result.stderr.removeprefix("enchufe-resolve: nowhere.test: ").strip()
    assert words in {"Temporary failure in name resolution", "Name or service not known"}, result.stderr
    assert "Traceback" not in result.stderr
    (record,) = map(json.loads, resolve(tmp_path, "--json", "nowhere.test").stdout.splitlines())
    assert (record["status"], record["error"], record["addresses"]) == ("failed", words, [])
    result = resolve(tmp_path, "-r", "10.200.0.1")
    assert result.returncode == 1 and result.stderr.startswith("enchufe-resolve: 10.200.0.1: ")


def test_numeric_only_refuses_names_parses_addresses_and_still_reverses(tmp_path: Path) -> None:
    result = resolve(tmp_path, "-n", "alpha.test")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "enchufe-resolve: alpha.test: Name or service not known (-n: addresses only)\n"
    result = resolve(tmp_path, "-n", "-t", "stream", "127.1", "::1")
    assert stripped(result.stdout) == ["127.0.0.1       STREAM 127.1", "::1             STREAM ::1"]
    result = resolve(tmp_path, "-n", "-r", "10.1.2.3")
    assert stripped(result.stdout) == ["10.1.2.3        alpha.test alpha a1.test"]


def test_verbose_reports_each_answers_time(tmp_path: Path) -> None:
    result = resolve(tmp_path, "-v", "-r", "alpha.test")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.rsplit(": ", 1)[0] for line in lines] == [
        "enchufe-resolve: forward alpha.test",
        "enchufe-resolve: reverse 10.1.2.3",
    ]
    assert all(line.endswith(" ms") for line in lines)


def test_usage_errors_exit_2_and_help_0() -> None:
    for args, message in [
        ([], "Give a NAME or ADDRESS to look up, or --hostname. Try --help."),
        (["--type", "seqpacket", "x"], 'Invalid socket type "seqpacket" (stream, dgram or raw).'),
        (["--legacy", "-6", "x"], "--legacy asks gethostbyname_ex, which knows no -6, --type or --service."),
        (["-w", "0", "x"], 'Invalid -w timeout "0" (must be greater than 0 and less than 2147483s).'),
        (["--bogus"], "unrecognized option '--bogus'. Try --help."),
    ]:
        result = run_tool("resolve", *args)
        assert (result.returncode, result.stdout) == (2, b""), args
        assert result.stderr.decode() == f"enchufe-resolve: {message} QUITTING.\n"
    result = run_tool("resolve", "--help")
    assert result.returncode == 0 and b"Usage: enchufe-resolve" in result.stdout and result.stderr == b""
    result = run_tool("resolve", "--version")
    assert result.returncode == 0 and result.stdout.startswith(b"enchufe-resolve ")


@pytest.mark.skipif(shutil.which("ip") is None, reason="no ip(8) to bring the namespace's loopback up")
def test_a_lookup_past_w_is_reported_timed_out_and_does_not_hold_the_exit(tmp_path: Path) -> None:
    """slow.test goes to a DNS server on the namespace's own loopback that never
    answers (glibc would wait 30 s for it): -w 300ms reports it timed out, the lookups
    after it answer, and the command exits while the libc call is still waiting."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    silent_server_then_main = (
        "import socket, sys; server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "server.bind(('127.0.0.1', 53)); from enchufe.cli.resolve import main; sys.exit(main(sys.argv[1:]))"
    )
    result = in_namespace(
        tmp_path,
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && ip link set lo up && exec "$@"',
        str(resolv),
        sys.executable,
        "-c",
        silent_server_then_main,
        "-w",
        "300ms",
        "-t",
        "stream",
        "slow.test",
        "alpha.test",
        timeout=20,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == "enchufe-resolve: slow.test: no answer within 0.3 s\n"
    assert stripped(result.stdout) == ["10.1.2.3        STREAM alpha.test"]
