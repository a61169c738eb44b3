"""Worker processes: one server per core, each with listening sockets of its own.

Python threads share one interpreter lock; to use every core a server runs several
processes. :func:`run_workers` forks ``count`` of them and supervises them; each calls
``serve(worker)``, which opens its own listeners in the port's ``SO_REUSEPORT`` group
(:meth:`enchufe.net.listen.PortReservation.open_listeners`) and serves until
:meth:`Worker.wait_for_stop` returns (or :meth:`Worker.call_on_stop` calls back).

Rules:

- **Fork from a single thread.** ``fork`` copies the calling thread only: a lock
  another thread held stays locked in the child forever (Python 3.12 warns about it;
  the tests turn warnings into errors). :func:`run_workers` refuses to start in a
  process with any other thread, and a worker starts its own threads after the fork.
  Fork, not ``multiprocessing``'s spawn or forkserver: a worker needs the parent's
  state as it is (a loaded ``--py-exec`` handler, a TLS context, a parsed
  configuration) without pickling any of it, and a restart costs a fork (about a
  millisecond), not a new interpreter's start-up (tens).
- **Told to stop, a worker ends gracefully.** The parent holds the write end of one
  pipe whose read end every worker watches: the parent closes it to stop them all,
  and its end, however it comes (``SIGKILL``), stops them too. A stop signal
  (SIGINT, SIGTERM, SIGHUP, SIGQUIT) sent to a worker itself (Ctrl-C reaches the
  whole process group) stops it the same way; the parent then restarts it unless it
  is stopping too. A stop signal ignored when :func:`run_workers` starts (``nohup``'s
  SIGHUP, a background job's SIGINT) stays ignored, in the parent and in every worker,
  as it does in the command without workers (:mod:`enchufe.cli.signals`).
- **The parent supervises.** SIGINT, SIGTERM, SIGHUP and SIGQUIT stop every worker;
  the parent waits ``stop_timeout`` seconds for them, kills those left with
  ``SIGKILL`` (a second signal does so at once), reaps every one and returns the
  signal's number. A worker that ends while it was not told to is restarted under
  the same index, after a delay that doubles with each restart of that index within
  ``restart_window`` (from ``first_restart_delay``, up to :data:`MAX_RESTART_DELAY`);
  the ``max_restarts + 1``-th restart within the window stops the others and raises
  :class:`~enchufe.errors.WorkersFailed`.
- **Nothing waits by polling.** The parent sleeps in ``poll`` on a pidfd per worker
  (readable when it exits) and on the signal wake-up pipe, with the next restart's
  time as the timeout; a worker's stop thread sleeps in ``poll`` on the stop pipe,
  its own signal wake-up pipe and its end-of-serve pipe.
- **No descriptor crosses over by accident.** A worker closes, first thing, what the
  parent holds for supervising (the other workers' pidfds, the pipes' parent ends)
  and whatever the caller lists in ``close_in_workers`` (the port reservation); the
  parent closes everything it opened before it returns.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections import deque

from enchufe.errors import WorkersFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType

    from enchufe.net.listen import PortReservation

__all__ = ["DEFAULT_STOP_TIMEOUT", "MAX_RESTART_DELAY", "STOP_SIGNALS", "Worker", "run_workers"]

#: The signals that stop the supervisor and its workers.
STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: Seconds workers get to end once told to stop, before ``SIGKILL``.
DEFAULT_STOP_TIMEOUT = 10.0
#: The longest delay before a worker is restarted.
MAX_RESTART_DELAY = 5.0
#: A worker's exit status when ``serve`` raised.
_FAILED = 1


class Worker:
    """A worker process's view of itself, handed to ``serve``.

    Attributes:
        index: which worker this is, from 0 to ``count - 1``; a restarted worker
            keeps the index of the one it replaces.
        count: how many workers the supervisor runs.
    """

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.count = count
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []

    @property
    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until the worker is told to stop; False if ``timeout`` passed first."""
        return self._stopping.wait(timeout)

    def call_on_stop(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the worker is told to stop, from its stop
        thread (:meth:`enchufe.net.loop.EventLoop.stop`, thread-safe; a server's
        ``shutdown``); at once, in this thread, if it was told already."""
        with self._lock:
            if not self._stopping.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def _stop(self) -> None:
        with self._lock:
            self._stopping.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def __repr__(self) -> str:
        return f"<Worker {self.index} of {self.count}, pid {os.getpid()}>"


def run_workers(
    count: int,
    serve: Callable[[Worker], object],
    *,
    close_in_workers: Iterable[PortReservation] = (),
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    max_restarts: int = 10,
    restart_window: float = 60.0,
    first_restart_delay: float = 0.1,
    on_event: Callable[[str], None] | None = None,
) -> int:
    """Run ``serve(worker)`` in ``count`` worker processes until a stop signal.

    Call it from the main thread of a process with no other thread. A worker's exit
    status is 0 when ``serve`` returns, ``SystemExit``'s code when it exits so, and 1
    (its traceback on stderr) when it raises.

    Args:
        count: how many workers; at least 1.
        serve: what each worker runs; it returns once told to stop (see
            :class:`Worker`).
        close_in_workers: what the parent holds that a worker must not (a
            :class:`~enchufe.net.listen.PortReservation`): each worker closes its copy
            before ``serve``.
        stop_timeout: seconds workers get to end after a stop signal, before
            ``SIGKILL``.
        max_restarts: restarts allowed within ``restart_window`` seconds, all
            workers together; one more and the supervisor gives up.
        restart_window: the window, in seconds.
        first_restart_delay: seconds before a worker's first restart in the window;
            each further one waits twice as long, up to :data:`MAX_RESTART_DELAY`.
        on_event: told, in words, of each worker's start, unexpected end, restart and
            stop (``"worker 1 (pid 4242) ended: killed by signal 9"``).

    Returns:
        The number of the signal that stopped the workers.

    Raises:
        WorkersFailed: workers kept ending; the others were stopped.
        RuntimeError: another thread runs in this process, or this is not the main
            thread (signals reach the main thread only).
        ValueError: ``count`` below 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if threading.current_thread() is not threading.main_thread() or threading.active_count() != 1:
        running = ", ".join(thread.name for thread in threading.enumerate())
        raise RuntimeError(
            "run_workers forks, so it must run in the main thread of a process with no other thread"
            f" (running: {running})"
        )
    supervisor = _Supervisor(
        count,
        serve,
        close_in_workers=list(close_in_workers),
        stop_timeout=stop_timeout,
        max_restarts=max_restarts,
        restart_window=restart_window,
        first_restart_delay=first_restart_delay,
        on_event=on_event or _say_nothing,
    )
    return supervisor.run()


def _say_nothing(event: str) -> None:
    pass


class _Child:
    """A running worker, as the parent sees it."""

    __slots__ = ("index", "pid", "pidfd")

    def __init__(self, index: int, pid: int, pidfd: int) -> None:
        self.index = index
        self.pid = pid
        self.pidfd = pidfd


class _Supervisor:
    def __init__(
        self,
        count: int,
        serve: Callable[[Worker], object],
        *,
        close_in_workers: list[PortReservation],
        stop_timeout: float,
        max_restarts: int,
        restart_window: float,
        first_restart_delay: float,
        on_event: Callable[[str], None],
    ) -> None:
        self._count = count
        self._serve = serve
        self._close_in_workers = close_in_workers
        self._stop_timeout = stop_timeout
        self._max_restarts = max_restarts
        self._restart_window = restart_window
        self._first_restart_delay = first_restart_delay
        self._say = on_event
        self._children: dict[int, _Child] = {}  # by pidfd
        #: Worker indexes waiting for their restart, and when it is due.
        self._restart_due: dict[int, float] = {}
        #: When each restart within the window happened, by worker index and in all.
        self._restarts: deque[tuple[float, int]] = deque()
        self._signals: list[int] = []
        self._wake_read = self._wake_write = self._stop_read = self._stop_write = -1

    def run(self) -> int:
        previous_handlers: dict[int, signal._HANDLER] = {}
        previous_wakeup: int | None = None
        self._wake_read, self._wake_write = os.pipe()
        try:
            os.set_blocking(self._wake_read, False)
            os.set_blocking(self._wake_write, False)
            self._stop_read, self._stop_write = os.pipe()
            previous_wakeup = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
            for signum in _heeded_stop_signals():
                previous_handlers[signum] = signal.signal(signum, self._on_signal)
            try:
                for index in range(self._count):
                    self._start(index)
                failure = self._supervise()
            finally:
                self._stop_all()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if previous_wakeup is not None:
                signal.set_wakeup_fd(previous_wakeup)
            for fd in (self._wake_read, self._wake_write, self._stop_read, self._stop_write):
                if fd >= 0:
                    os.close(fd)
        if failure is not None:
            raise failure
        return self._signals[0]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # acted on when poll() returns: the wake-up pipe woke it

    # -- supervising -------------------------------------------------------------------

    def _supervise(self) -> WorkersFailed | None:
        """Wait for a signal, restarting workers that end meanwhile; the failure that
        ends it instead, if workers keep ending."""
        while not self._signals:
            timeout = None
            if self._restart_due:
                timeout = max(0.0, min(self._restart_due.values()) - time.monotonic()) * 1000
            ready = [fd for fd, _ in self._poller().poll(timeout)]
            if self._wake_read in ready:
                self._drain_wake_pipe()
            if self._signals:
                return None  # a worker that ended with it (Ctrl-C reaches the group) is reaped, not restarted
            for fd in ready:
                if fd != self._wake_read:
                    failure = self._ended(self._children.pop(fd))
                    if failure is not None:
                        return failure
            now = time.monotonic()
            for index, due in list(self._restart_due.items()):
                if due <= now and not self._signals:
                    del self._restart_due[index]
                    self._start(index)
        return None

    def _poller(self) -> select.poll:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        for pidfd in self._children:
            poller.register(pidfd, select.POLLIN)
        return poller

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_read, 512)

    def _ended(self, child: _Child) -> WorkersFailed | None:
        """A worker ended unasked: schedule its restart, or give up."""
        how = _describe_status(self._reap(child))
        now = time.monotonic()
        while self._restarts and self._restarts[0][0] <= now - self._restart_window:
            self._restarts.popleft()
        if len(self._restarts) >= self._max_restarts:
            message = (
                f"worker {child.index} (pid {child.pid}) ended: {how}; {len(self._restarts)} restarts "
                f"within {self._restart_window:g} s already: giving up"
            )
            self._say(message)
            return WorkersFailed(message)
        earlier = sum(1 for _, index in self._restarts if index == child.index)
        delay = min(self._first_restart_delay * 2**earlier, MAX_RESTART_DELAY)
        self._restarts.append((now, child.index))
        self._restart_due[child.index] = now + delay
        self._say(f"worker {child.index} (pid {child.pid}) ended: {how}; restarting it in {delay:g} s")
        return None

    def _reap(self, child: _Child) -> int:
        _, wait_status = os.waitpid(child.pid, 0)
        os.close(child.pidfd)
        return wait_status

    # -- stopping ----------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Tell every worker to stop, wait ``stop_timeout`` for them, kill the rest;
        every one is reaped."""
        self._restart_due.clear()
        if self._stop_write >= 0:
            os.close(self._stop_write)  # every worker's stop pipe reads end of file
            self._stop_write = -1
        if not self._children:
            return
        count = len(self._children)
        self._say(f"stopping {count} worker{'s' if count > 1 else ''}")
        signals_seen = len(self._signals)
        deadline = time.monotonic() + self._stop_timeout
        while self._children:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(self._signals) > signals_seen:
                break  # out of time, or a second signal: kill them now
            for fd, _ in self._poller().poll(remaining * 1000):
                if fd == self._wake_read:
                    self._drain_wake_pipe()
                else:
                    self._reap(self._children.pop(fd))
        for child in self._children.values():
            self._say(f"worker {child.index} (pid {child.pid}) did not stop: killing it")
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
            self._reap(child)
        self._children.clear()

    # -- starting ----------------------------------------------------------------------

    def _start(self, index: int) -> None:
        """Fork worker ``index``. Stop signals are blocked across the fork: one that
        came before the child installed its own handlers would run the parent's."""
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()  # or the child would write the parent's buffered text again
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _worker_main(self, Worker(index, self._count), blocked)  # never returns
            pidfd = os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._children[pidfd] = _Child(index, pid, pidfd)
        self._say(f"worker {index} started (pid {pid})")

    def _parent_descriptors(self) -> list[int]:
        return [self._wake_read, self._wake_write, self._stop_write, *self._children]


def _worker_main(supervisor: _Supervisor, worker: Worker, parent_mask: set[int | signal.Signals]) -> None:
    """The child's life after fork: its own signal handling, then ``serve``, then
    ``os._exit`` (the parent's exit handlers and buffers are not the child's)."""
    status = _FAILED
    try:
        for fd in supervisor._parent_descriptors():
            os.close(fd)
        for held in supervisor._close_in_workers:
            held.close()
        status = _serve_until_stopped(worker, supervisor._serve, supervisor._stop_read, parent_mask)
    except BaseException:  # noqa: BLE001 - the child must reach os._exit whatever happens
        _print_failure(worker)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        os._exit(status)


def _serve_until_stopped(
    worker: Worker, serve: Callable[[Worker], object], stop_read: int, parent_mask: set[int | signal.Signals]
) -> int:
    """Run ``serve`` with a stop thread watching the stop pipe, this process's stop
    signals and the end of ``serve``; return the worker's exit status."""
    wake_read, wake_write = os.pipe()
    done_read, done_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    for signum in _heeded_stop_signals():  # the parent's ignored ones, inherited, stay so
        signal.signal(signum, _note_only)  # the wake-up pipe carries it to the stop thread
    signal.pthread_sigmask(signal.SIG_SETMASK, parent_mask)
    watcher = threading.Thread(
        target=_watch_for_stop, args=(worker, [stop_read, wake_read, done_read]), name=f"worker-{worker.index}-stop"
    )
    watcher.start()
    try:
        serve(worker)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else _FAILED)
    except BaseException:  # noqa: BLE001 - reported, and the parent restarts the worker
        _print_failure(worker)
        status = _FAILED
    finally:
        os.close(done_write)  # the stop thread's last wake-up
        watcher.join()
        for fd in (wake_read, done_read):
            os.close(fd)
    return status


def _heeded_stop_signals() -> list[int]:
    """The stop signals this process does not ignore: one ignored when the command
    started (``nohup``'s SIGHUP) must not stop it."""
    return [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]


def _note_only(signum: int, frame: FrameType | None) -> None:
    pass


def _watch_for_stop(worker: Worker, fds: list[int]) -> None:
    stop_read, wake_read, done_read = fds
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if done_read in ready:
            return
        if stop_read in ready or wake_read in ready:
            poller.unregister(stop_read)  # at end of file it stays readable
            poller.unregister(wake_read)
            worker._stop()


def _print_failure(worker: Worker) -> None:
    import traceback

    with contextlib.suppress(Exception):
        sys.stderr.write(f"worker {worker.index} (pid {os.getpid()}) failed:\n{traceback.format_exc()}")


def _describe_status(wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"
