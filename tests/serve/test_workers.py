"""Worker processes (serve/workers.py) and the port they share (net/listen.py's
reserve_port): real processes, real sockets on loopback.

The supervisor must fork from a process with no other thread, and pytest's is not
one: each test runs tests/support/workers_app.py as a child and talks to its workers.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from enchufe.address import InetAddress
from enchufe.errors import BindError
from enchufe.net.listen import reserve_port
from enchufe.serve.workers import run_workers
from support.procs import Process

APP = str(Path(__file__).parent.parent / "support" / "workers_app.py")
#: Enough connections for the kernel's hash to reach every worker: each misses one
#: worker of N with probability (1 - 1/N), so 2,000 leave nothing to chance.
MAX_CONNECTS = 2000


def start_app(*args: str) -> tuple[Process, int]:
    app = Process([sys.executable, APP, *args])
    port = int(app.wait_for_line(r"reserved 127\.0\.0\.1:(\d+)").group(1))
    return app, port


def wait_serving(app: Process, count: int) -> dict[int, int]:
    """Worker index → pid, once ``count`` workers have said they serve."""
    serving = {}
    while len(serving) < count:
        match = app.wait_for_line(r"^serving (\d+) (\d+)$")
        serving[int(match.group(1))] = int(match.group(2))
    return serving


def ask(port: int, command: bytes = b"") -> tuple[tuple[int, int], socket.socket]:
    """Connect; return the answering worker's (index, pid) and the open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    reader = sock.makefile("rb")
    index, pid = (int(word) for word in reader.readline().split())
    reader.close()
    if command:
        sock.sendall(command)
    return (index, pid), sock


def first_answer_from(port: int, wanted: set[tuple[int, int]]) -> int:
    """Connect until each of ``wanted`` has answered; return the connections made."""
    seen: set[tuple[int, int]] = set()
    for connects in range(1, MAX_CONNECTS + 1):
        who, sock = ask(port)
        sock.close()
        seen.add(who)
        if wanted <= seen:
            return connects
    raise AssertionError(f"after {MAX_CONNECTS} connections only {seen} of {wanted} answered")


def stop(app: Process, signum: int = signal.SIGTERM) -> int:
    """Signal the supervisor; its exit status once every worker ended when told to."""
    app.popen.send_signal(signum)
    status = app.wait()
    assert not [line for line in app.stderr_lines if "did not stop" in line]
    return status


def assert_gone(pids: list[int]) -> None:
    """Reaped: a zombie would still have its /proc entry."""
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not left, f"processes left: {left}"


def test_a_bound_member_that_does_not_listen_gets_no_connection() -> None:
    """What the reservation relies on: the kernel gives every connection to the group's
    listening member, none to the reserving one (it would sit in no accept queue)."""
    with reserve_port(InetAddress("127.0.0.1", 0)) as reservation:
        (listener,) = reservation.open_listeners()
        with listener:
            assert listener.address == reservation.addresses[0]
            for _ in range(200):  # the hash of 200 source ports reaches every member
                with socket.create_connection(("127.0.0.1", reservation.port), timeout=5):
                    listener.accept(timeout=5).close()


def test_a_reservation_holds_the_port_against_other_users() -> None:
    with reserve_port(InetAddress("127.0.0.1", 0)) as reservation:
        with socket.socket() as intruder:  # no SO_REUSEPORT: not a member
            with pytest.raises(OSError):
                intruder.bind(("127.0.0.1", reservation.port))


def test_a_port_where_another_group_listens_cannot_be_reserved() -> None:
    """SO_REUSEPORT lets any socket of the same user into a group: a second server's
    reservation must not join the first's and take half its clients."""
    with reserve_port(InetAddress("127.0.0.1", 0)) as first:
        (listener,) = first.open_listeners()
        with listener, pytest.raises(BindError, match="Address already in use"):
            reserve_port(InetAddress("127.0.0.1", first.port)).close()
        with reserve_port(InetAddress("127.0.0.1", first.port)) as again:  # free once nobody listens
            assert again.port == first.port


def test_every_address_gets_one_port() -> None:
    with reserve_port(None) as reservation:
        assert {address.port for address in reservation.addresses} == {reservation.port}
        assert {address.host for address in reservation.addresses} <= {"::", "0.0.0.0"}
        listeners = reservation.open_listeners()
        try:
            assert [listener.address for listener in listeners] == reservation.addresses
        finally:
            for listener in listeners:
                listener.close()


def test_every_worker_takes_connections_and_everything_ends_with_sigterm() -> None:
    app, port = start_app("3")
    with app:
        workers = wait_serving(app, 3)
        assert len(set(workers.values())) == 3
        first_answer_from(port, set(workers.items()))
        assert stop(app) == 0
    assert "stopped by signal 15" in app.stderr_lines
    assert "children: none" in app.stderr_lines
    assert "parent fds: same" in app.stderr_lines
    assert_gone(list(workers.values()))


def test_a_worker_holds_none_of_the_parents_descriptors() -> None:
    app, port = start_app("2")
    reserved = app.stderr_lines[0].split()[-1]
    with app:
        wait_serving(app, 2)
        targets_of = {}
        for _ in range(MAX_CONNECTS):  # each worker's: the later one was forked beside the first
            (index, _), sock = ask(port, b"fds\n")
            with sock, sock.makefile("rb") as reader:
                targets_of[index] = [line.decode().rstrip("\n") for line in reader]
            if len(targets_of) == 2:
                break
        for targets in targets_of.values():
            assert targets[-1] == "end"
            assert reserved.startswith("socket:[") and reserved not in targets
            assert "anon_inode:[pidfd]" not in targets
        assert stop(app) == 0


def test_a_killed_worker_is_restarted_under_its_index() -> None:
    app, port = start_app("2")
    with app:
        workers = wait_serving(app, 2)
        os.kill(workers[0], signal.SIGKILL)
        app.wait_for_line(rf"^worker 0 \(pid {workers[0]}\) ended: killed by signal 9; restarting it in 0\.1 s$")
        (new_pid,) = wait_serving(app, 1).values()
        assert new_pid not in workers.values()
        assert_gone([workers[0]])  # reaped, not a zombie
        first_answer_from(port, {(0, new_pid), (1, workers[1])})
        assert stop(app, signal.SIGINT) == 0
    assert "stopped by signal 2" in app.stderr_lines
    assert_gone([new_pid, workers[1]])


def test_a_stop_lets_requests_in_flight_finish() -> None:
    app, port = start_app("2", "--grace", "10")
    with app:
        workers = wait_serving(app, 2)
        (_, pid), sock = ask(port, b"hold\n")
        with sock:
            app.popen.send_signal(signal.SIGTERM)
            app.wait_for_line(rf"^holding {pid}$")  # told to stop, its server closing
            sock.sendall(b"last request\n")
            with sock.makefile("rb") as reader:
                assert reader.readline() == b"done\n"
        assert app.wait() == 0
    assert "children: none" in app.stderr_lines
    assert_gone(list(workers.values()))


def test_a_worker_that_does_not_stop_in_time_is_killed() -> None:
    app, port = start_app("1", "--stop-timeout", "0.2")
    with app:
        (pid,) = wait_serving(app, 1).values()
        _, sock = ask(port, b"stuck\n")  # a worker that will not end
        with sock, sock.makefile("rb") as reader:
            assert reader.readline() == b"stuck\n"
            app.popen.send_signal(signal.SIGTERM)
            app.wait_for_line(rf"^worker 0 \(pid {pid}\) did not stop: killing it$")
            assert app.wait() == 0
    assert "children: none" in app.stderr_lines
    assert_gone([pid])


def test_workers_that_keep_ending_make_the_supervisor_give_up() -> None:
    app, port = start_app("1", "--max-restarts", "2")
    with app:
        pids = []
        for _ in range(3):
            pids.extend(wait_serving(app, 1).values())
            _, sock = ask(port, b"exit\n")
            sock.close()
        assert app.wait() == 2
    assert app.stderr_lines.count(f"worker 0 (pid {pids[0]}) ended: exit status 3; restarting it in 0.1 s") == 1
    assert f"worker 0 (pid {pids[1]}) ended: exit status 3; restarting it in 0.2 s" in app.stderr_lines
    assert (
        f"failed: worker 0 (pid {pids[2]}) ended: exit status 3; 2 restarts within 60 s already: giving up"
        in app.stderr_lines
    )
    assert "children: none" in app.stderr_lines
    assert_gone(pids)


def test_run_workers_refuses_to_fork_beside_another_thread() -> None:
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="bystander")
    other.start()
    try:
        with pytest.raises(RuntimeError, match=r"no other thread \(running: .*bystander"):
            run_workers(1, print)
    finally:
        release.set()
        other.join()


def test_run_workers_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_workers(0, print)


def test_a_stop_signal_to_a_worker_alone_stops_it_gracefully_and_it_is_restarted() -> None:
    """Ctrl-C reaches the whole process group: a worker ends as it ends when told to."""
    app, _ = start_app("1")
    with app:
        (pid,) = wait_serving(app, 1).values()
        os.kill(pid, signal.SIGINT)
        app.wait_for_line(rf"^worker 0 \(pid {pid}\) ended: exit status 0; restarting it in 0\.1 s$")
        wait_serving(app, 1)
        assert stop(app) == 0


def test_workers_stop_when_their_parent_dies() -> None:
    app, _ = start_app("2")
    with app:
        workers = wait_serving(app, 2)
        pidfds = [os.pidfd_open(pid) for pid in workers.values()]
        try:
            app.popen.kill()  # no chance to stop them: its end of the stop pipe closes
            poller = select.poll()
            for pidfd in pidfds:
                poller.register(pidfd, select.POLLIN)
            ended: set[int] = set()
            while len(ended) < len(pidfds):
                events = poller.poll(20_000)
                assert events, "a worker outlived its parent"
                for pidfd, _ in events:
                    ended.add(pidfd)
                    poller.unregister(pidfd)
        finally:
            for pidfd in pidfds:
                os.close(pidfd)
