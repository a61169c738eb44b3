"""Fuzz enchufe.proto.eof.EndOfStream with any sequence of events, under any settings.

Invariant: no event raises; actions are the module's four; the first ending wins and is
one of the four endings; after it every event returns no action; an ending comes only
after an end of stream or a closed output (nothing else can end a relay). The quit
timer fires only once QUIT_LATER started it.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.eof import CLOSE_OUTPUT, DRAIN, QUIT_LATER, SEND_EOF, EndOfStream

_ACTIONS = {CLOSE_OUTPUT, DRAIN, QUIT_LATER, SEND_EOF}
_ENDINGS = {"remote-eof", "local-eof", "both-eof", "local-closed"}


def check(data: bytes) -> None:
    settings, events = (data[0], data[1:]) if data else (0, b"")
    state = EndOfStream(
        sending=bool(settings & 1),
        half_close=bool(settings & 2),
        quit_after_local_eof=(None, 0.0, 1.0)[(settings >> 2) % 3],
        keep_open=bool(settings & 16),
    )
    happen = (state.local_eof, state.remote_eof, state.input_idle, state.local_closed, state.quit_timer)
    ending = None
    timer_started = False  # the relay starts the quit timer only when told to
    for event in events:
        if event % 6 == 4 and not timer_started:
            continue
        if event % 6 == 5:
            assert isinstance(state.send_refused(), bool)
            actions: tuple[str, ...] = ()
        else:
            actions = happen[event % 6]()
        assert set(actions) <= _ACTIONS, actions
        timer_started = timer_started or QUIT_LATER in actions
        if ending is not None:
            assert state.ending == ending and not actions, (ending, state, actions)
        elif state.ending is not None:
            assert state.ending in _ENDINGS, state
            assert state.local_ended or state.remote_ended or state.local_output_closed, state
            ending = state.ending


if __name__ == "__main__":
    fuzzing.main(check)
