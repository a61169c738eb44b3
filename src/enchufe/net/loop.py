"""The event loop: one thread waits on every descriptor, timer and wake-up at once.

A loop is a selector, a timer heap and a queue of ready callbacks; everything else is
a callback (the shape of CPython's ``asyncio.base_events._run_once``):

1. wait in ``select`` until a descriptor is ready, the earliest timer is due, or
   another thread calls :meth:`EventLoop.call_soon_threadsafe` (which writes one byte
   to the loop's wake-up pipe);
2. queue the callbacks of the ready descriptors and of the due timers;
3. run the callbacks queued so far — not those they queue themselves, which wait for
   the next turn, so a callback that keeps re-queueing itself cannot starve the rest.

Rules:

- Only the loop's thread touches its state; other threads use
  :meth:`~EventLoop.call_soon_threadsafe` (a worker thread handing back a result, a
  signal handler asking to stop). :meth:`~EventLoop.stop` is safe from anywhere.
  Both are safe after :meth:`~EventLoop.close` too: the callback never runs, and no
  wake-up is written to a descriptor the loop no longer owns.
- One reader and one writer callback per descriptor; replacing or removing one
  cancels it, also when its readiness is already queued for the current turn.
- An ``Exception`` escaping a callback goes to ``on_error`` and the loop goes on; a
  ``BaseException`` (``KeyboardInterrupt``, a signal's exception) leaves
  :meth:`~EventLoop.run_forever`, and the loop can be run again.
- Cancelled timers stay in the heap until they come due or until they are more than
  half of it, when the heap is rebuilt: cancelling is O(1) and memory stays bounded.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import os
import selectors
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    ErrorHook = Callable[[BaseException], None]

__all__ = ["EventLoop", "Handle", "TimerHandle"]

#: Below this many cancelled timers the heap is never rebuilt: rebuilding costs more.
_MIN_CANCELLED_TO_COMPACT = 64


class Handle:
    """A queued callback; :meth:`cancel` keeps it from running."""

    __slots__ = ("_args", "_callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (if it has not run yet). Idempotent."""
        self.cancelled = True
        self._callback = None
        self._args = ()

    def _run(self) -> None:
        callback = self._callback
        if callback is not None:
            callback(*self._args)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else getattr(self._callback, "__qualname__", repr(self._callback))
        return f"<{type(self).__name__} {state}>"


class TimerHandle(Handle):
    """A callback due at :attr:`when` (the loop's clock, :func:`time.monotonic`)."""

    __slots__ = ("_loop", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...], loop: EventLoop) -> None:
        super().__init__(callback, args)
        self.when = when
        #: The loop whose heap holds this timer; None once it has left the heap.
        self._loop: EventLoop | None = loop

    def cancel(self) -> None:
        if not self.cancelled and self._loop is not None:
            self._loop._timer_cancelled()
        super().cancel()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


def _print_error(exc: BaseException) -> None:
    import traceback

    print("enchufe: an event loop callback raised:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


class EventLoop:
    """Run callbacks when descriptors are ready and when timers are due.

    Args:
        on_error: called with each ``Exception`` a callback raises (default: a
            traceback on stderr); the loop goes on.

    Use it as a context manager, or call :meth:`close` when done.
    """

    def __init__(self, *, on_error: ErrorHook = _print_error) -> None:
        self.on_error = on_error
        self._selector = selectors.DefaultSelector()
        self._ready: collections.deque[Handle] = collections.deque()
        self._timers: list[TimerHandle] = []
        self._cancelled_timers = 0
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Held while writing a wake-up and while closing: a thread that outlives the
        #: loop must not write to the pipe's number once it belongs to another file.
        #: Reentrant: a signal handler that stops the loop may run while its own thread
        #: holds it.
        self._wake_lock = threading.RLock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)

    # -- time ------------------------------------------------------------------------

    @staticmethod
    def time() -> float:
        """The loop's clock: :func:`time.monotonic`."""
        return time.monotonic()

    # -- callbacks -------------------------------------------------------------------

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next turn of the loop. Loop thread only."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        """:meth:`call_soon` from any thread; wakes the loop if it is waiting."""
        handle = Handle(callback, args)
        self._ready.append(handle)  # deque.append is atomic
        self._wake()
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` in ``delay`` seconds. Loop thread only."""
        return self.call_at(self.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at ``when`` on the loop's clock. Loop thread only."""
        timer = TimerHandle(when, callback, args, self)
        heapq.heappush(self._timers, timer)
        return timer

    # -- descriptors -----------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` each time ``fd`` is readable (replacing any reader)."""
        self._update(fd, selectors.EVENT_READ, Handle(callback, args))

    def remove_reader(self, fd: int) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        return self._update(fd, selectors.EVENT_READ, None)

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` each time ``fd`` is writable (replacing any writer)."""
        self._update(fd, selectors.EVENT_WRITE, Handle(callback, args))

    def remove_writer(self, fd: int) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        return self._update(fd, selectors.EVENT_WRITE, None)

    def _update(self, fd: int, event: int, handle: Handle | None) -> bool:
        """Set (or clear, with None) the reader or writer of ``fd``."""
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if handle is None:
                return False
            pair = (handle, None) if event == selectors.EVENT_READ else (None, handle)
            self._selector.register(fd, event, pair)
            return True
        reader, writer = key.data
        old = reader if event == selectors.EVENT_READ else writer
        if old is not None:
            # Readiness already queued for this turn must not call a callback that was
            # replaced or removed (asyncio does the same): its owner may have closed
            # what it works on, earlier in this very turn.
            old.cancel()
        if event == selectors.EVENT_READ:
            reader = handle
        else:
            writer = handle
        mask = 0 if reader is None else selectors.EVENT_READ
        if writer is not None:
            mask |= selectors.EVENT_WRITE
        if mask:
            self._selector.modify(fd, mask, (reader, writer))
        else:
            self._selector.unregister(fd)
        return old is not None

    # -- running ---------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called."""
        if self._closed:
            raise RuntimeError("the event loop is closed")
        if self._thread is not None:
            raise RuntimeError("the event loop is already running")
        self._thread = threading.current_thread()
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._stopping = False
            self._thread = None

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current turn. Thread-safe."""
        self._stopping = True
        self._wake()

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    def in_loop_thread(self) -> bool:
        """True when called from the thread running the loop."""
        return self._thread is threading.current_thread()

    def close(self) -> None:
        """Release the selector and the wake-up pipe. Idempotent; not while running."""
        if self._thread is not None:
            raise RuntimeError("cannot close a running event loop")
        with self._wake_lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_write)
        self._ready.clear()
        self._timers.clear()
        self._selector.close()
        os.close(self._wake_read)

    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    def _wake(self) -> None:
        with self._wake_lock:
            if self._closed:
                return  # nobody is left to wake
            with contextlib.suppress(BlockingIOError):  # a pipe full of wake-ups: the loop will wake
                os.write(self._wake_write, b"\0")

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1

    def _run_once(self) -> None:
        timers = self._timers
        if self._cancelled_timers > _MIN_CANCELLED_TO_COMPACT and self._cancelled_timers * 2 > len(timers):
            for timer in timers:
                if timer.cancelled:
                    timer._loop = None
            self._timers = timers = [timer for timer in timers if not timer.cancelled]
            heapq.heapify(timers)
            self._cancelled_timers = 0
        while timers and timers[0].cancelled:
            heapq.heappop(timers)._loop = None
            self._cancelled_timers -= 1

        timeout: float | None = None
        if self._ready or self._stopping:
            timeout = 0
        elif timers:
            timeout = max(0.0, timers[0].when - self.time())
        for key, mask in self._selector.select(timeout):
            if key.data is None:
                self._drain_wake_pipe()
                continue
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader is not None:
                self._ready.append(reader)
            if mask & selectors.EVENT_WRITE and writer is not None:
                self._ready.append(writer)

        now = self.time()
        while timers and timers[0].when <= now:
            timer = heapq.heappop(timers)
            timer._loop = None
            if timer.cancelled:
                self._cancelled_timers -= 1
            else:
                self._ready.append(timer)

        for _ in range(len(self._ready)):
            handle = self._ready.popleft()
            if handle.cancelled:
                continue
            try:
                handle._run()
            except Exception as exc:  # noqa: BLE001 - reported through the hook; the loop goes on
                self.on_error(exc)

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
