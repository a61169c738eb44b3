"""``enchufe -l -k --workers N`` and ``enchufe-relay --workers N``: worker processes
sharing the port, as real processes on loopback."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sys
from pathlib import Path

import pytest

from enchufe.proto.http import connect_request
from enchufe.proto.http_auth import DigestClient, choose_challenge, parse_challenges
from enchufe.proto.proxy import Credentials
from support.procs import Process, enchufe, run_enchufe, run_tool, tool

#: Connections tried until every worker has answered (see tests/serve/test_workers.py).
MAX_CONNECTS = 2000


def started_workers(command: Process, count: int) -> dict[int, int]:
    """Worker index → pid, from the -v lines each worker says once it listens."""
    workers = {}
    while len(workers) < count:
        match = command.wait_for_line(r"Worker (\d+) \(pid (\d+)\) listening\.$")
        workers[int(match.group(1))] = int(match.group(2))
    return workers


def answer(port: int) -> bytes:
    """Connect and read to end of file: what the worker's program wrote."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def until_each_answered(port: int, pids: set[int]) -> None:
    """Connect until a program of each worker (its parent: $PPID) has answered."""
    seen: set[int] = set()
    for _ in range(MAX_CONNECTS):
        seen.add(int(answer(port)))
        if pids <= seen:
            return
    raise AssertionError(f"only {seen} of {pids} answered")


def assert_gone(pids: list[int]) -> None:
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not left, f"processes left: {left}"


def assert_stopped_when_told(command: Process) -> None:
    """Every worker ended when told to, none killed at the stop timeout."""
    assert not [line for line in command.stderr_lines if "did not stop" in line]


def test_every_worker_runs_programs_and_a_signal_ends_them_all() -> None:
    with enchufe("-l", "-k", "-v", "--workers", "2", "-c", "echo $PPID", "127.0.0.1", "0") as command:
        port = command.listening_port()
        workers = started_workers(command, 2)
        until_each_answered(port, set(workers.values()))
        command.popen.send_signal(signal.SIGTERM)
        assert command.wait() == 128 + signal.SIGTERM
    assert command.stderr_lines.count(f"enchufe: Listening on 127.0.0.1:{port}") == 1  # the parent's, once
    assert "enchufe: Stopping 2 workers." in command.stderr_lines
    assert_stopped_when_told(command)
    assert_gone(list(workers.values()))


def test_a_killed_worker_is_restarted() -> None:
    with enchufe("-l", "-k", "-v", "--workers", "2", "-c", "echo $PPID", "127.0.0.1", "0") as command:
        port = command.listening_port()
        workers = started_workers(command, 2)
        os.kill(workers[1], signal.SIGKILL)
        command.wait_for_line(rf"Worker 1 \(pid {workers[1]}\) ended: killed by signal 9; restarting it in 0\.1 s\.$")
        restarted = started_workers(command, 1)
        assert list(restarted) == [1]
        until_each_answered(port, {workers[0], restarted[1]})
        command.popen.send_signal(signal.SIGINT)
        assert command.wait() == 128 + signal.SIGINT
    assert_stopped_when_told(command)
    assert_gone([*workers.values(), *restarted.values()])


def test_py_exec_handlers_run_in_every_worker(tmp_path: Path) -> None:
    handler = tmp_path / "pid.py"
    handler.write_text("import os\n\ndef handle(conn):\n    conn.send_all(str(os.getpid()).encode())\n")
    with enchufe("-l", "-k", "-v", "--workers", "3", "--py-exec", str(handler), "127.0.0.1", "0") as command:
        port = command.listening_port()
        workers = started_workers(command, 3)
        seen: set[int] = set()
        for _ in range(MAX_CONNECTS):
            seen.add(int(answer(port)))
            if seen == set(workers.values()):
                break
        assert seen == set(workers.values())
        command.popen.send_signal(signal.SIGTERM)
        assert command.wait() == 128 + signal.SIGTERM
    assert_stopped_when_told(command)
    assert_gone(list(workers.values()))


def test_a_handler_that_starts_a_thread_as_it_loads_is_a_usage_error(tmp_path: Path) -> None:
    """The workers are forked: a thread the module started would be the parent's alone,
    and the locks it held stay held in every worker. One line, status 2, no traceback."""
    handler = tmp_path / "threaded.py"
    handler.write_text(
        "import threading\n\n"
        "threading.Thread(target=threading.Event().wait, name='refresher', daemon=True).start()\n\n"
        "def handle(conn):\n    pass\n"
    )
    result = run_enchufe("-l", "-k", "--workers", "2", "--py-exec", str(handler), "127.0.0.1", "0")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "enchufe: --workers forks its workers, and the Python handler started a thread as it loaded"
        " (refresher): start it in the handler's first call instead. QUITTING."
    ]


def test_a_proxy_server_in_workers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as target:
        target_port = target.getsockname()[1]
        with enchufe("-l", "--proxy-type", "http", "-v", "--workers", "2", "127.0.0.1", "0") as command:
            port = command.listening_port()
            workers = started_workers(command, 2)
            for _ in range(4):
                with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
                    client.sendall(f"CONNECT 127.0.0.1:{target_port} HTTP/1.1\r\n\r\n".encode())
                    assert client.recv(12) == b"HTTP/1.0 200"
                    target.settimeout(20)
                    upstream, _ = target.accept()
                    with upstream, client.makefile("rb") as reader:
                        upstream.sendall(b"through\n")
                        lines = iter(reader.readline, b"")
                        assert b"through\n" in lines  # after the rest of the proxy's answer
            command.popen.send_signal(signal.SIGTERM)
            assert command.wait() == 128 + signal.SIGTERM
    assert_stopped_when_told(command)
    assert_gone(list(workers.values()))


def test_a_port_in_use_fails_once_before_any_worker_starts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_enchufe("-l", "-k", "-v", "--workers", "2", "-c", "cat", "127.0.0.1", str(port))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[1:] == [
        f"enchufe: bind to 127.0.0.1:{port}: Address already in use. QUITTING."
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-l", "-k", "127.0.0.1"], "--workers needs -e, -c, --lua-exec or --py-exec with -k: the clients of -k"),
        (["-l", "-e", "cat"], "--workers needs -k (or --proxy-type): a listener without it serves one client."),
        (["-e", "cat", "127.0.0.1", "9"], "--workers works in listen mode only."),
        (["--broker"], "Invalid option combination: --workers and --broker."),
        (["-l", "--chat"], "Invalid option combination: --workers and --chat."),
        (["-l", "-k", "-u", "-e", "cat"], "Invalid option combination: --workers and -u."),
        (["-l", "-k", "-U", "-e", "cat", "/tmp/enchufe-workers.sock"], "Invalid option combination: --workers and -U."),
        (["-l", "-k", "-e", "cat", "-o", "/dev/null"], "Invalid option combination: --workers and -o."),
        (["-l", "-k", "-e", "cat", "-w", "1"], "Invalid option combination: --workers and -w."),
    ],
)
def test_modes_that_share_state_or_stdio_are_usage_errors(argv: list[str], message: str) -> None:
    result = run_enchufe("--workers", "2", *argv)
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"enchufe: {message}") and line.endswith("QUITTING."), line


def test_a_port_another_workers_server_listens_on_is_in_use() -> None:
    """Without the check, the second server's workers joined the first's SO_REUSEPORT
    group and took about half of its clients, silently."""
    with enchufe("-l", "-k", "-v", "--workers", "1", "-c", "echo first", "127.0.0.1", "0") as first:
        port = first.listening_port()
        started_workers(first, 1)
        second = run_enchufe("-l", "-k", "--workers", "1", "-c", "echo second", "127.0.0.1", str(port), timeout=10)
        assert second.returncode == 2
        assert second.stderr.decode().splitlines() == [
            f"enchufe: bind to 127.0.0.1:{port}: Address already in use. QUITTING."
        ]
        first.popen.send_signal(signal.SIGTERM)
        assert first.wait() == 128 + signal.SIGTERM


@pytest.mark.parametrize("count", ["0", "x", "1025", "-1"])
def test_a_bad_number_of_workers(count: str) -> None:
    result = run_enchufe("-l", "-k", "-e", "cat", f"--workers={count}")
    assert result.returncode == 2
    assert result.stderr.decode() == f"enchufe: Invalid number of workers: {count} (from 1 to 1024). QUITTING.\n"


def test_wait_is_still_w_and_wo_is_workers() -> None:
    """``--w`` abbreviates --wait for ncat; our option does not make it ambiguous."""
    result = run_enchufe("-l", "--w", "0")
    assert result.stderr.decode().startswith('enchufe: Invalid -w timeout "0"')
    result = run_enchufe("-l", "-k", "-e", "cat", "--wo", "0")
    assert "Invalid number of workers: 0" in result.stderr.decode()


def test_the_relay_in_workers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as target:
        target.settimeout(20)
        target_port = target.getsockname()[1]
        with tool("relay", "-v", "--workers", "2", "127.0.0.1:0", f"127.0.0.1:{target_port}") as relay:
            port = int(relay.wait_for_line(r"Listening on 127\.0\.0\.1:(\d+)$").group(1))
            pids = list(started_workers(relay, 2).values())
            for _ in range(4):
                with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
                    upstream, _ = target.accept()
                    with upstream:
                        client.sendall(b"ping\n")
                        assert upstream.recv(5) == b"ping\n"
            relay.popen.send_signal(signal.SIGTERM)
            assert relay.wait() == 128 + signal.SIGTERM
    assert re.search(r"Stopping 2 workers\.", relay.stderr)
    assert_stopped_when_told(relay)
    assert_gone(pids)


def read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"the proxy closed after {head!r}"
        head += chunk
    return head


def test_digest_proxy_auth_works_whichever_worker_each_connection_reaches() -> None:
    """Each worker made its own nonce key: a client whose next connection reached
    another worker than the one that challenged it was refused (curl --proxy-digest:
    12 of 20 requests refused with 4 workers)."""
    alice = Credentials("alice", "s3cret")
    with socket.create_server(("127.0.0.1", 0)) as target:
        target.settimeout(20)
        target_port = target.getsockname()[1]
        uri = f"127.0.0.1:{target_port}"
        argv = ["-l", "--proxy-type", "http", "--proxy-auth", "alice:s3cret", "-v", "--workers", "2"]
        with enchufe(*argv, "127.0.0.1", "0") as command:
            port = command.listening_port()
            started_workers(command, 2)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as asking:
                asking.sendall(connect_request("127.0.0.1", target_port))
                head = read_head(asking).decode("latin-1")
            values = [line.split(":", 1)[1] for line in head.split("\r\n") if line.startswith("Proxy-Authenticate:")]
            challenge = choose_challenge(parse_challenges(values))
            assert challenge is not None and challenge.scheme == "digest"
            client = DigestClient(alice, challenge, os.urandom)
            for _ in range(20):  # the kernel's hash of 20 source ports reaches both workers
                with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                    authorization = client.authorization("CONNECT", uri)
                    conn.sendall(connect_request("127.0.0.1", target_port, [("Proxy-Authorization", authorization)]))
                    assert read_head(conn).startswith(b"HTTP/1.0 200 ")
                    target.accept()[0].close()
            command.popen.send_signal(signal.SIGTERM)
            assert command.wait() == 128 + signal.SIGTERM


def test_a_relay_worker_that_cannot_start_says_why_in_one_line() -> None:
    """Out of descriptors (the parent's limit lowered to what it holds, which a worker
    forked next inherits), a relay worker says so in one line, as the command's workers
    do, and is restarted: no traceback, no listener left to the garbage collector."""
    with tool("relay", "-v", "--workers", "2", "127.0.0.1:0", "127.0.0.1:9") as relay:
        workers = started_workers(relay, 2)
        parent = relay.popen.pid
        held = max(int(fd) for fd in os.listdir(f"/proc/{parent}/fd")) + 1
        resource.prlimit(parent, resource.RLIMIT_NOFILE, (held, held))
        os.kill(workers[1], signal.SIGKILL)
        relay.wait_for_line(r"Worker 1 \(pid \d+\) ended: exit status 1; restarting it in 0\.2 s\.$")
        relay.popen.send_signal(signal.SIGTERM)
        assert relay.wait() == 128 + signal.SIGTERM
    assert "enchufe-relay: worker 1: [Errno 24] Too many open files." in relay.stderr_lines
    assert not [line for line in relay.stderr_lines if "Traceback" in line or "Exception ignored" in line]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-u", "127.0.0.1:0", "127.0.0.1:9"], "--workers needs a TCP LISTEN address"),
        (["unix:/tmp/enchufe-relay-workers.sock", "127.0.0.1:9"], "--workers needs a TCP LISTEN address"),
        (["--workers", "0", "127.0.0.1:0", "127.0.0.1:9"], "Invalid number of workers: '0'"),
    ],
)
def test_relay_workers_usage_errors(argv: list[str], message: str) -> None:
    result = run_tool("relay", "--workers", "2", *argv)
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"enchufe-relay: {message}") and line.endswith("QUITTING."), line


#: ``nohup`` in Python: start the command with SIGHUP ignored (exec keeps it ignored).
NOHUP = "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(sys.executable, sys.argv[1:])"


def ignored_signals(pid: int) -> set[int]:
    """The signals process ``pid`` ignores, as the kernel sees it (``SigIgn`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {signum for signum in range(1, 65) if mask >> (signum - 1) & 1}
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def test_a_stop_signal_ignored_at_start_stays_ignored_in_the_parent_and_every_worker() -> None:
    """``nohup enchufe -l -k --workers 2 ... &``: the terminal's hangup must not stop the
    server, as it does not stop the command without --workers."""
    argv = [sys.executable, "-c", NOHUP, sys.executable, "-m", "enchufe"]
    with Process([*argv, "-l", "-k", "-v", "--workers", "2", "-c", "echo $PPID", "127.0.0.1", "0"]) as command:
        port = command.listening_port()
        workers = started_workers(command, 2)
        for pid in [command.popen.pid, *workers.values()]:
            assert signal.SIGHUP in ignored_signals(pid)
        for pid in [command.popen.pid, *workers.values()]:
            os.kill(pid, signal.SIGHUP)  # the hangup reaches the whole process group
        until_each_answered(port, set(workers.values()))  # the same workers serve on
        command.popen.send_signal(signal.SIGTERM)
        assert command.wait() == 128 + signal.SIGTERM
    assert not [line for line in command.stderr_lines if "ended" in line]
    assert_stopped_when_told(command)
