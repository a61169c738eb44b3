"""A server in worker processes, for tests/serve/test_workers.py to run as a real process.

``python workers_app.py COUNT [--port P] [--max-restarts N] [--grace S] [--stop-timeout S]``

The parent reserves 127.0.0.1:P (0: any free port) and says on stderr
``reserved 127.0.0.1:PORT socket:[INODE]``; each worker says ``serving N PID`` once its
listener is open. A client that connects gets ``INDEX PID\\n`` and may then send one
command line:

- ``fds``: the targets of the worker's open descriptors, one per line, then the end;
- ``hold``: the worker says ``holding PID`` on stderr once it is told to stop, and
  answers ``done\\n`` to the next line the client sends (a request in flight);
- ``exit``: the worker process ends at once with status 3 (an unexpected end);
- ``stuck``: the worker answers ``stuck`` and from then on never ends once told to
  stop (only SIGKILL ends it).

After run_workers returns, the parent says ``stopped by signal N`` (or
``failed: MESSAGE``), whether it has children left (``children: none``), and its
descriptors (``parent fds: ...``); the exit status is 0 or 2 (failed).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from enchufe.address import InetAddress
from enchufe.errors import NetworkError, WorkersFailed
from enchufe.net.connection import Connection
from enchufe.net.listen import reserve_port
from enchufe.serve.engine import Server
from enchufe.serve.workers import Worker, run_workers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-restarts", type=int, default=10)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    args = parser.parse_args()
    fds_before = sorted(os.listdir("/proc/self/fd"))
    reservation = reserve_port(InetAddress("127.0.0.1", args.port))
    inode = os.readlink(f"/proc/self/fd/{reservation._socks[0].fileno()}")
    say(f"reserved {reservation.addresses[0]} {inode}")

    def serve(worker: Worker) -> None:
        stopping = worker.wait_for_stop
        stuck = threading.Event()

        def handle(conn: Connection) -> None:
            conn.send_all(f"{worker.index} {worker.pid}\n".encode())
            try:
                command = conn.recv_line(timeout=20)
            except NetworkError:
                return  # a client that only asked who answers, and closed
            if command == b"fds\n":
                fds = os.listdir("/proc/self/fd")
                conn.send_all(b"".join(_target(fd).encode() + b"\n" for fd in fds) + b"end\n")
            elif command == b"hold\n":
                stopping()
                say(f"holding {worker.pid}")
                conn.recv_line(timeout=20)
                conn.send_all(b"done\n")
            elif command == b"exit\n":
                os._exit(3)
            elif command == b"stuck\n":
                stuck.set()
                conn.send_all(b"stuck\n")

        with Server(reservation.open_listeners(), handle, name=f"worker{worker.index}") as server:
            server.start()
            say(f"serving {worker.index} {worker.pid}")
            worker.wait_for_stop()
            if stuck.is_set():
                threading.Event().wait()
            server.close(grace=args.grace)

    status = 0
    with reservation:
        try:
            signum = run_workers(
                args.count,
                serve,
                close_in_workers=[reservation],
                max_restarts=args.max_restarts,
                stop_timeout=args.stop_timeout,
                on_event=say,
            )
            say(f"stopped by signal {signum}")
        except WorkersFailed as exc:
            say(f"failed: {exc}")
            status = 2
    try:
        os.waitpid(-1, os.WNOHANG)
        say("children: some")
    except ChildProcessError:
        say("children: none")
    fds_after = sorted(os.listdir("/proc/self/fd"))
    say(f"parent fds: {'same' if fds_after == fds_before else fds_after}")
    return status


def say(line: str) -> None:
    """One line on stderr in one write: the parent's and the workers' lines interleave
    whole (print writes the end of line apart)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return "gone"  # the listing's own descriptor


if __name__ == "__main__":
    sys.exit(main())
