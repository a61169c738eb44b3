"""End-of-stream rules for a relay: what each end of stream means, and when the relay is done.

A relay joins a **local** side (stdin/stdout, later a child process) and a **remote**
side (the network). Bytes go two ways: *outbound* (local input → remote) and
*inbound* (remote → local output). The rules are ncat's (7.96+) with one change that
keeps data from being lost:

    **An end of stream ends only the direction it closes.**

ncat quits as soon as the remote's end of stream arrives. When the remote is a receiver
whose own input is empty (a listener started with ``</dev/null``, a peer that sent its
request and half-closed), that quits in the middle of sending a file, and the bytes
still in the local input never leave. Here the remote's end of stream closes the local
output and starts **draining**: the relay keeps sending what the local input already
has ready, and finishes when the input ends or has nothing ready (how long "ready" may
take is the relay's choice: none for a terminal, a fraction of a second for a pipe). A
user at a terminal still sees the client end at once when the server closes.

The table (``ending`` is what :attr:`EndOfStream.ending` becomes):

=====================  ===============================  ======================================
event                  actions                          then
=====================  ===============================  ======================================
local EOF              SEND_EOF (unless ``half_close``  remote already ended: ``both-eof``;
                       is off)                          ``quit_after_local_eof`` 0: ``local-eof``;
                                                        > 0: QUIT_LATER; ``None``: keep reading
remote EOF             CLOSE_OUTPUT                     local input ended or never read:
                                                        ``both-eof`` / ``remote-eof``;
                                                        ``keep_open``: keep sending;
                                                        otherwise DRAIN
input idle (draining)  (none)                           ``remote-eof``
send refused after     (none)                           ``remote-eof`` (the peer closed
remote EOF                                              without reading: not an error)
local output closed    DRAIN (nothing more is read      local input ended or never read:
                       from the remote)                 ``local-closed``; else as after
                                                        remote EOF, ending ``local-closed``
quit timer             (none)                           ``local-eof``
=====================  ===============================  ======================================

The first ending wins; events after it return no actions. Pure code: the threaded relay
of connect and listen mode drives it today, and the loop relay, exec, TLS and the proxy
server drive the same table.
"""

from __future__ import annotations

__all__ = ["CLOSE_OUTPUT", "DRAIN", "QUIT_LATER", "SEND_EOF", "EndOfStream"]

#: Half-close the remote side: nothing more will be sent to it.
SEND_EOF = "send-eof"
#: End the local output (stdout's reader sees end of file).
CLOSE_OUTPUT = "close-output"
#: From now on send only what the local input has ready; report "input idle" otherwise.
DRAIN = "drain"
#: Start the quit timer (``quit_after_local_eof`` seconds); report "quit timer" when it fires.
QUIT_LATER = "quit-later"

_NOTHING: tuple[str, ...] = ()


class EndOfStream:
    """The end-of-stream state of one relay.

    Args:
        sending: the local input is read and sent (``False``: ncat's ``--recv-only``,
            whose input never ends because it is never read).
        half_close: on local end of stream, half-close the remote (``False``:
            ``--no-shutdown``).
        quit_after_local_eof: seconds to go on after the local end of stream;
            ``None`` never ends because of it (ncat's ``-q``).
        keep_open: the remote's end of stream does not end outbound traffic at all
            (ncat's ``-k`` in connect mode): the relay runs until the local input ends.

    Each event method returns the actions the relay must take, in order, and may set
    :attr:`ending`.
    """

    def __init__(
        self,
        *,
        sending: bool = True,
        half_close: bool = True,
        quit_after_local_eof: float | None = None,
        keep_open: bool = False,
    ) -> None:
        self.sending = sending
        self.half_close = half_close
        self.quit_after_local_eof = quit_after_local_eof
        self.keep_open = keep_open
        #: Why the relay is done (``"remote-eof"``, ``"local-eof"``, ``"both-eof"``,
        #: ``"local-closed"``), or ``None`` while it runs.
        self.ending: str | None = None
        self.local_ended = False
        self.remote_ended = False
        self.local_output_closed = False
        #: True once only what the local input has ready is still to be sent.
        self.draining = False

    def local_eof(self) -> tuple[str, ...]:
        """The local input ended."""
        if self.ending is not None:
            return _NOTHING
        self.local_ended = True
        actions = (SEND_EOF,) if self.half_close else _NOTHING
        if self.local_output_closed:
            self.ending = "local-closed"
        elif self.remote_ended:
            self.ending = "both-eof"
        elif self.quit_after_local_eof == 0:
            self.ending = "local-eof"
        elif self.quit_after_local_eof is not None:
            actions += (QUIT_LATER,)
        return actions

    def remote_eof(self) -> tuple[str, ...]:
        """The remote sent its end of stream (or, for datagrams, never will)."""
        if self.ending is not None:
            return _NOTHING
        self.remote_ended = True
        if self.local_ended:
            self.ending = "both-eof"
        elif not self.sending:
            self.ending = "remote-eof"
        elif not self.keep_open:
            self.draining = True
            return (CLOSE_OUTPUT, DRAIN)
        return (CLOSE_OUTPUT,)

    def input_idle(self) -> tuple[str, ...]:
        """While draining, the local input had nothing ready."""
        if self.ending is None and self.draining:
            self.ending = "local-closed" if self.local_output_closed else "remote-eof"
        return _NOTHING

    def send_refused(self) -> bool:
        """The remote refused more data (reset, broken pipe). True if that ends the
        relay quietly: the remote had already ended its side, so it closed without
        reading, which is its choice and not a failure of this relay. False if the
        caller must report the failure."""
        if self.ending is None and self.remote_ended:
            self.ending = "remote-eof"
        return self.remote_ended

    def local_closed(self) -> tuple[str, ...]:
        """The local output's reader went away (stdout's pipe has no reader, a child
        process closed its stdin). Nothing more is read from the remote; what the local
        input has ready still goes out (a child's last output), as after the remote's
        end of stream."""
        if self.ending is not None:
            return _NOTHING
        self.local_output_closed = True
        if self.local_ended or not self.sending:
            self.ending = "local-closed"
            return _NOTHING
        self.draining = True
        return (DRAIN,)

    def quit_timer(self) -> tuple[str, ...]:
        """The quit timer started by QUIT_LATER fired."""
        if self.ending is None:
            self.ending = "local-eof"
        return _NOTHING

    def __repr__(self) -> str:
        return (
            f"<EndOfStream ending={self.ending!r} local_ended={self.local_ended} "
            f"remote_ended={self.remote_ended} draining={self.draining}>"
        )
