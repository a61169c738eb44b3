"""The event loop: callbacks, timers, descriptors, wake-ups and errors, on real sockets."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from enchufe.net.loop import EventLoop

TIMEOUT = 10.0


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    with EventLoop() as made:
        yield made


def run_in_thread(loop: EventLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run_forever, name="loop-under-test")
    thread.start()
    return thread


def test_callbacks_run_in_order_and_stop_ends_the_run(loop: EventLoop) -> None:
    seen: list[int] = []
    loop.call_soon(seen.append, 1)
    loop.call_soon(seen.append, 2)
    loop.call_soon(loop.stop)
    loop.call_soon(seen.append, 3)  # same turn as stop: still runs
    loop.run_forever()
    assert seen == [1, 2, 3]


def test_a_callback_that_requeues_itself_does_not_starve_the_others(loop: EventLoop) -> None:
    turns: list[str] = []

    def greedy() -> None:
        turns.append("greedy")
        if turns.count("greedy") < 3:
            loop.call_soon(greedy)
        else:
            loop.stop()

    loop.call_soon(greedy)
    loop.call_soon(turns.append, "other")
    loop.run_forever()
    assert turns[:3] == ["greedy", "other", "greedy"]


def test_timers_fire_in_time_order_and_cancelled_ones_never(loop: EventLoop) -> None:
    fired: list[str] = []
    loop.call_later(0.05, fired.append, "late")
    loop.call_later(0.01, fired.append, "early")
    loop.call_later(0.02, fired.append, "cancelled").cancel()
    loop.call_later(0.06, loop.stop)
    loop.run_forever()
    assert fired == ["early", "late"]


def test_cancelled_timers_do_not_pile_up(loop: EventLoop) -> None:
    for _ in range(1000):
        loop.call_later(3600, lambda: None).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(loop._timers) < 100


def test_a_timer_cancelled_after_it_ran_changes_nothing(loop: EventLoop) -> None:
    timer = loop.call_later(0, lambda: None)
    loop.call_later(0, loop.stop)
    loop.run_forever()
    timer.cancel()
    assert loop._cancelled_timers == 0


def test_reader_and_writer_on_one_descriptor() -> None:
    ours, theirs = socket.socketpair()
    with EventLoop() as loop, ours, theirs:
        ours.setblocking(False)
        events: list[str] = []

        def writable() -> None:
            events.append("writable")
            loop.remove_writer(ours.fileno())
            theirs.sendall(b"ping")

        def readable() -> None:
            events.append(f"read {ours.recv(10)!r}")
            assert loop.remove_reader(ours.fileno())
            assert not loop.remove_reader(ours.fileno())
            loop.stop()

        loop.add_reader(ours.fileno(), readable)
        loop.add_writer(ours.fileno(), writable)
        loop.run_forever()
        assert events == ["writable", "read b'ping'"]


def test_call_soon_threadsafe_wakes_a_loop_with_nothing_to_do(loop: EventLoop) -> None:
    done = threading.Event()
    thread = run_in_thread(loop)
    loop.call_soon_threadsafe(done.set)
    assert done.wait(TIMEOUT)
    loop.stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_an_exception_in_a_callback_is_reported_and_the_loop_goes_on() -> None:
    errors: list[BaseException] = []
    seen: list[str] = []
    with EventLoop(on_error=errors.append) as loop:
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(seen.append, "after")
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert [type(error) for error in errors] == [ZeroDivisionError]
    assert seen == ["after"]


def test_a_base_exception_leaves_the_loop_which_can_run_again(loop: EventLoop) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running
    seen: list[str] = []
    loop.call_soon(seen.append, "again")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["again"]


def test_running_twice_or_closing_while_running_is_refused(loop: EventLoop) -> None:
    refusals: list[str] = []

    def inside() -> None:
        for attempt in (loop.run_forever, loop.close):
            try:
                attempt()
            except RuntimeError as exc:
                refusals.append(str(exc))
        assert loop.in_loop_thread()
        loop.stop()

    loop.call_soon(inside)
    loop.run_forever()
    assert refusals == ["the event loop is already running", "cannot close a running event loop"]
    assert not loop.in_loop_thread()


def test_a_closed_loop_does_not_run() -> None:
    loop = EventLoop()
    loop.close()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()


def test_a_wake_up_after_close_writes_to_no_descriptor() -> None:
    """A thread that outlives the loop (keep-open's output thread, writing to a stdout
    that blocked past close) calls call_soon_threadsafe or stop: the wake-up used to be
    written to the closed pipe's number, by then another file's."""
    loop = EventLoop()
    wake_number = loop._wake_write
    loop.close()
    read_end, write_end = os.pipe()
    os.dup2(write_end, wake_number)  # the number goes to a new file, as the next open() would give it
    try:
        loop.call_soon_threadsafe(print, "never")
        loop.stop()
        os.set_blocking(read_end, False)
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)
    finally:
        for fd in {read_end, write_end, wake_number}:
            os.close(fd)


def test_a_callback_removed_in_the_turn_its_readiness_came_does_not_run() -> None:
    """Two descriptors ready in one turn, each callback removing the other's: only the
    first runs (the second's owner may have closed what it works on)."""
    ran: list[str] = []
    with EventLoop() as loop:
        a, b = socket.socketpair()
        with a, b:
            a.send(b"x")  # b is readable, a writable: both ready in the first turn

            def on_read() -> None:
                ran.append("read")
                loop.remove_writer(a.fileno())
                loop.stop()

            def on_write() -> None:
                ran.append("write")
                loop.remove_reader(b.fileno())
                loop.stop()

            loop.add_reader(b.fileno(), on_read)
            loop.add_writer(a.fileno(), on_write)
            loop.run_forever()
            loop.remove_reader(b.fileno())
            loop.remove_writer(a.fileno())
    assert len(ran) == 1
