"""The enchufe-bench command: a real server and client process, text and JSON, statuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from support.procs import run_tool, tool
from test_startup import HEAVY, SRC


def test_json_lines_an_object_per_interval_and_a_summary() -> None:
    with tool("bench", "-s", "-p", "0", "-4", "-1", "-v") as server:
        port = server.listening_port()
        result = run_tool("bench", "-c", "127.0.0.1", "-p", str(port), "-t", "0.3", "-i", "0.1", "-P", "2", "--json")
        assert result.returncode == 0, result.stderr
        assert server.wait() == 0  # -1: one test, then exit
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    *intervals, summary = records
    assert intervals and all(record["type"] == "interval" for record in intervals)
    assert all(len(record["streams"]) == 2 for record in intervals)
    assert summary["type"] == "summary" and summary["connections"] == 3
    assert {(s["stream"], s["role"]) for s in summary["streams"]} == {
        (n, r) for n in (1, 2) for r in ("sender", "receiver")
    }
    assert summary["receiver"]["bytes"] == summary["sender"]["bytes"] > 0
    assert set(summary) >= {"test", "local", "remote", "seconds", "streams", "sender", "receiver"}


def test_text_lines_as_iperf3_prints_them_and_reverse() -> None:
    with tool("bench", "-s", "-p", "0", "-4", "-1", "-v") as server:
        port = server.listening_port()
        result = run_tool("bench", "-c", "127.0.0.1", "-p", str(port), "-n", "4M", "-R")
        assert result.returncode == 0, result.stderr
        server.wait()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"Connecting to host 127.0.0.1, port {port}"
    assert any(line.startswith("[  1] local 127.0.0.1:") for line in lines)
    rows = [line for line in lines if line.endswith(("sender", "receiver"))]
    assert len(rows) == 2 and all(" 4.00 MBytes " in row for row in rows), rows


def test_udp_latency_and_rate_summaries() -> None:
    with tool("bench", "-s", "-p", "0", "-4", "-v") as server:
        port = str(server.listening_port())
        udp = run_tool("bench", "-c", "127.0.0.1", "-p", port, "-u", "-b", "2M", "-t", "0.3", "--json")
        latency = run_tool("bench", "-c", "127.0.0.1", "-p", port, "--latency", "-n", "6400")
        rate = run_tool("bench", "-c", "127.0.0.1", "-p", port, "--rate", "-n", "20", "--json")
        server.kill()
    receiver = next(s for s in json.loads(udp.stdout.splitlines()[-1])["streams"] if s["role"] == "receiver")
    assert receiver["udp"]["lost"] == 0 and receiver["udp"]["packets"] > 0
    assert "latency: 100 round trips of 64 bytes: p50 " in latency.stdout.decode()
    assert json.loads(rate.stdout.splitlines()[-1])["rate"]["connections"] == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "0.1"], "Give -s (server) or -c HOST"),
        (["-c", "127.0.0.1", "-P", "200"], "Streams must be 1 to 128."),
        (["-c", "127.0.0.1", "-u", "--latency"], "Latency and rate tests run over TCP or Unix sockets."),
        (["-c", "127.0.0.1", "-n", "lots"], "Invalid -n value 'lots'."),
        (["-c", "127.0.0.1", "--frobnicate"], "unrecognized option"),
    ],
)
def test_bad_options_are_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_tool("bench", *args)
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("enchufe-bench: ") and message in line and line.endswith("QUITTING.")


def test_no_server_is_status_1() -> None:
    with tool("bench", "-s", "-p", "0", "-4", "-1", "-v") as server:
        port = server.listening_port()
        server.kill()
    result = run_tool("bench", "-c", "127.0.0.1", "-p", str(port), "-t", "0.1")
    assert result.returncode == 1 and b"Traceback" not in result.stderr


def test_help_and_version() -> None:
    help_result = run_tool("bench", "--help")
    assert help_result.returncode == 0 and b"--latency" in help_result.stdout and b"--bidir" in help_result.stdout
    version = run_tool("bench", "--version")
    assert version.returncode == 0 and version.stdout.startswith(b"enchufe-bench ")


@pytest.mark.parametrize("argv", [["--version"], ["-h"]])
def test_version_and_help_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from enchufe.cli.bench import main; status = main({argv!r});"
        f" print(status, *sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert result.stderr.split() == ["0"], result.stderr


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")
def test_iperf3_and_enchufe_bench_both_measure_loopback_throughput() -> None:
    from support.procs import Process, free_port

    port = free_port()
    with Process(["iperf3", "-s", "-1", "-p", str(port), "-B", "127.0.0.1"]) as server:
        for _ in range(100):  # iperf3 says nothing on stderr when it listens: retry the connect
            theirs = subprocess.run(
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n", "4M", "-J"],
                capture_output=True,
                timeout=20,
                check=False,
            )
            if theirs.returncode == 0:
                break
        server.wait()
    with tool("bench", "-s", "-p", "0", "-4", "-1", "-v") as ours_server:
        ours = run_tool("bench", "-c", "127.0.0.1", "-p", str(ours_server.listening_port()), "-n", "4M", "--json")
        ours_server.wait()
    assert json.loads(theirs.stdout)["end"]["sum_received"]["bits_per_second"] > 0
    assert json.loads(ours.stdout.splitlines()[-1])["receiver"]["bits_per_second"] > 0
