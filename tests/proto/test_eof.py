"""The end-of-stream rules, transition by transition (pure: no sockets, no clock)."""

from __future__ import annotations

import pytest

from enchufe.proto.eof import CLOSE_OUTPUT, DRAIN, QUIT_LATER, SEND_EOF, EndOfStream


def test_local_eof_half_closes_and_keeps_reading() -> None:
    rules = EndOfStream()
    assert rules.local_eof() == (SEND_EOF,)
    assert rules.ending is None
    assert rules.remote_eof() == (CLOSE_OUTPUT,)
    assert rules.ending == "both-eof"


def test_remote_eof_drains_instead_of_ending() -> None:
    rules = EndOfStream()
    assert rules.remote_eof() == (CLOSE_OUTPUT, DRAIN)
    assert rules.draining and rules.ending is None


def test_draining_ends_when_the_input_ends() -> None:
    rules = EndOfStream()
    rules.remote_eof()
    assert rules.local_eof() == (SEND_EOF,)
    assert rules.ending == "both-eof"


def test_draining_ends_when_the_input_has_nothing_ready() -> None:
    rules = EndOfStream()
    rules.remote_eof()
    assert rules.input_idle() == ()
    assert rules.ending == "remote-eof"


def test_an_idle_input_means_nothing_before_the_remote_ends() -> None:
    rules = EndOfStream()
    assert rules.input_idle() == ()
    assert rules.ending is None


def test_no_half_close_sends_no_eof() -> None:
    rules = EndOfStream(half_close=False)
    assert rules.local_eof() == ()
    assert rules.ending is None


@pytest.mark.parametrize(
    ("delay", "actions", "ending"), [(0, (SEND_EOF,), "local-eof"), (2.5, (SEND_EOF, QUIT_LATER), None)]
)
def test_quit_after_local_eof(delay: float, actions: tuple[str, ...], ending: str | None) -> None:
    rules = EndOfStream(quit_after_local_eof=delay)
    assert rules.local_eof() == actions
    assert rules.ending == ending


def test_the_quit_timer_ends_the_relay() -> None:
    rules = EndOfStream(quit_after_local_eof=1.0)
    rules.local_eof()
    assert rules.quit_timer() == ()
    assert rules.ending == "local-eof"


def test_keep_open_keeps_sending_after_remote_eof_without_draining() -> None:
    rules = EndOfStream(keep_open=True)
    assert rules.remote_eof() == (CLOSE_OUTPUT,)
    assert not rules.draining
    assert rules.input_idle() == ()
    assert rules.ending is None
    rules.local_eof()
    assert rules.ending == "both-eof"


def test_recv_only_ends_at_remote_eof() -> None:
    rules = EndOfStream(sending=False)
    assert rules.remote_eof() == (CLOSE_OUTPUT,)
    assert rules.ending == "remote-eof"


def test_a_refused_send_is_quiet_only_after_the_remote_ended() -> None:
    before = EndOfStream()
    assert before.send_refused() is False
    assert before.ending is None
    after = EndOfStream()
    after.remote_eof()
    assert after.send_refused() is True
    assert after.ending == "remote-eof"


def test_local_output_closed_drains_the_input_then_ends() -> None:
    """Nobody reads the output (a child closed its stdin): what the input still has
    (the child's last words) goes out before the end."""
    rules = EndOfStream()
    assert rules.local_closed() == (DRAIN,)
    assert rules.ending is None
    assert rules.local_eof() == (SEND_EOF,)
    assert rules.ending == "local-closed"
    idle = EndOfStream()
    idle.local_closed()
    idle.input_idle()
    assert idle.ending == "local-closed"


def test_local_output_closed_after_the_input_ended_ends_at_once() -> None:
    rules = EndOfStream()
    rules.local_eof()
    assert rules.local_closed() == ()
    assert rules.ending == "local-closed"
    recv_only = EndOfStream(sending=False)
    recv_only.local_closed()
    assert recv_only.ending == "local-closed"


def test_the_first_ending_wins_and_later_events_do_nothing() -> None:
    rules = EndOfStream(quit_after_local_eof=0)
    rules.local_eof()
    assert rules.ending == "local-eof"
    assert rules.remote_eof() == ()
    assert rules.local_closed() == ()
    assert rules.quit_timer() == ()
    assert rules.input_idle() == ()
    assert rules.ending == "local-eof"
