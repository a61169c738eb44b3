r"""The rooms behind ncat's ``--broker`` and ``--chat``: which member receives which bytes.

In both modes ncat's listener keeps every client and passes what one sends to all the
others; the host's standard input takes part as a sender (``<user0>``), its standard
output receives nothing. A :class:`Room` only decides the bytes: the caller reads, calls
:meth:`Room.join`, :meth:`Room.message`, :meth:`Room.leave`, and sends each returned
``(recipient, data)`` pair, in order. A member is a number: ncat uses the connection's
file descriptor, so the first client of a single listening socket is ``<user4>``, of the
default two-socket (IPv4 and IPv6) listener ``<user5>``, and numbers come back when
connections close.

Modes:

:data:`BROKER` (``--broker``)
    A chunk goes unchanged to every member but its sender; joining and leaving send
    nothing.
:data:`CHAT` (``--chat``), ncat byte for byte
    Announcements on join (to everyone, the newcomer included) and on leave (to the
    others); each chunk read is prefixed **once** with ``<userN>`` and a space, however
    many lines it holds, and its non-printable bytes are escaped.
:data:`CHAT_LINES` (beyond ncat)
    The same announcements; a prefix at the start of every line: a sender's unfinished
    line waits for the rest, so other members' lines never land inside it (see
    :meth:`Room.message`).

The bytes of :data:`CHAT`, as ncat 7.93 sends them on loopback (the peer text is a
parameter: 7.93 writes the host, ``127.0.0.1``; 7.96+ writes host and port,
``127.0.0.1:56196`` or ``[::1]:56196``, and that is what enchufe passes)::

    <user6> joins while <user4> and <user5> are there; to 4, 5 and 6, as one chunk:
        <announce> 127.0.0.1 is connected as <user6>.\n
        <announce> already connected: 127.0.0.1 as <user4>, 127.0.0.1 as <user5>.\n
    the first member joins:
        <announce> 127.0.0.1 is connected as <user4>.\n<announce> already connected: nobody.\n
    <user5> leaves; to the others:
        <announce> <user5> is disconnected.\n
    <user4> sends b"line1\nline2\npartial", then b" rest\n"; to the others, two chunks:
        <user4> line1\nline2\npartial
        <user4>  rest\n
    the host types "from host\n":
        <user0> from host\n

"Already connected" lists the other members by increasing number, with the peer text
each joined with. Escapes: the bytes 0x00-0x08, 0x0b, 0x0c, 0x0e-0x1f and 0x7f-0xff
become a backslash and three octal digits (``\000``, ``\033``, ``\177``, ``\377``); tab,
line feed, carriage return and 0x20-0x7e pass unchanged, space and backslash included
(so ``\033`` in the output may also be four bytes someone typed). ncat reads at most
:data:`NCAT_READ_SIZE` bytes at a time: 20000 bytes sent at once arrive as three
prefixed chunks of 8192, 8192 and 3616 bytes.
"""

from __future__ import annotations

import unicodedata

from enchufe.proto.lines import LineBuffer

__all__ = ["BROKER", "CHAT", "CHAT_LINES", "NCAT_READ_SIZE", "Room", "escape_bytes", "escape_text"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    #: A recipient's number and the bytes to send it.
    Delivery: TypeAlias = tuple[int, bytes]

#: ncat's ``--broker``: bytes pass unchanged, nothing is announced.
BROKER = "broker"
#: ncat's ``--chat``: one prefix per chunk read, byte for byte as ncat.
CHAT = "chat"
#: Chat with one prefix per line (not in ncat).
CHAT_LINES = "chat-lines"
_MODES = (BROKER, CHAT, CHAT_LINES)

#: The most ncat reads from a client or its standard input at once; in :data:`CHAT`
#: mode every read gets a prefix, so a relay that reproduces ncat's bytes reads this much.
NCAT_READ_SIZE = 8192

# What ncat's isprint() (the C locale) passes, and the tab, line feed and carriage return
# it lets through on purpose.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_ESCAPED = [bytes((byte,)) if byte in _PLAIN else b"\\%03o" % byte for byte in range(256)]
# In the line mode a backslash is doubled, so that the escapes can be read back.
_PLAIN_TEXT = _PLAIN.replace(b"\\", b"")
# Of the characters str.isprintable() rejects, spaces (no-break space, ideographic space)
# are harmless on a terminal, and the zero-width non-joiner and joiner are parts of emoji
# and of Indic scripts. Every other control and format character (bidirectional
# overrides among them) is escaped.
_KEPT = "\t\n\r\u200c\u200d"


def escape_bytes(data: bytes) -> bytes:
    """ncat's escaping: every byte outside 0x20-0x7e, tab, LF and CR becomes ``\\ooo``."""
    if not data.translate(None, _PLAIN):
        return data
    return b"".join([_ESCAPED[byte] for byte in data])


def escape_text(data: bytes) -> bytes:
    """The line mode's escaping: UTF-8 text passes, everything else becomes ``\\ooo``.

    Printable characters (letters, marks, digits, punctuation, symbols, spaces) pass as
    their UTF-8 bytes, and tab, LF and CR as themselves. Control and format characters,
    and bytes that are not valid UTF-8, become one ``\\ooo`` per byte; a backslash
    becomes ``\\\\``. The output is therefore always valid UTF-8, and reading ``\\\\``
    and ``\\ooo`` back gives exactly ``data``.
    """
    if not data.translate(None, _PLAIN_TEXT):
        return data
    out: list[bytes] = []
    for char in data.decode("utf-8", "surrogateescape"):
        if char == "\\":
            out.append(b"\\\\")
        elif char.isprintable() or char in _KEPT or unicodedata.category(char) == "Zs":
            out.append(char.encode())
        else:
            # surrogateescape gives the undecodable bytes back as they came
            out.extend(b"\\%03o" % byte for byte in char.encode("utf-8", "surrogateescape"))
    return b"".join(out)


def _prefix(user: int) -> bytes:
    return b"<user%d> " % user


class Room:
    """The members of a broker or chat session and the bytes each one receives.

    Args:
        mode: :data:`BROKER`, :data:`CHAT` or :data:`CHAT_LINES`.
        max_line: in :data:`CHAT_LINES`, the most bytes of one line held back; a longer
            line goes out in pieces of at most this many bytes, each ended with a line
            feed.
        observer: a number that receives what a member would, every announcement and
            every message but its own, without being a member: no announcement names
            it (the host's output watching the room, which ncat's does not).

    Raises:
        ValueError: an unknown mode, or ``max_line`` below 1.

    Every method returns the ``(recipient, data)`` pairs to send, recipients by
    increasing number; the caller sends them in the order given.
    """

    def __init__(self, mode: str = CHAT, *, max_line: int = NCAT_READ_SIZE, observer: int | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"unknown room mode {mode!r}")
        self.mode = mode
        self.observer = observer
        self._peers: dict[int, str] = {}
        # CHAT_LINES: each sender's unfinished line (at most max_line bytes)
        self._lines = LineBuffer(max_line)

    @property
    def max_line(self) -> int:
        return self._lines.max_line

    @property
    def members(self) -> tuple[int, ...]:
        """The members' numbers, increasing."""
        return tuple(sorted(self._peers))

    def join(self, user: int, peer: str) -> list[Delivery]:
        """A connection joins as ``<user{user}>``.

        Args:
            user: its number, 0 or more (ncat: its file descriptor).
            peer: how the announcements name it (``127.0.0.1:56196``).

        Raises:
            ValueError: the number is negative, already a member's, or the observer's.
        """
        if user < 0 or user in self._peers or user == self.observer:
            raise ValueError(f"<user{user}> cannot join: the number is negative or taken")
        others = ", ".join(f"{self._peers[other]} as <user{other}>" for other in self.members) or "nobody"
        self._peers[user] = peer
        if self.mode == BROKER:
            return []
        text = f"<announce> {peer} is connected as <user{user}>.\n<announce> already connected: {others}.\n"
        return self._to_all_but(None, text.encode("utf-8", "surrogateescape"))

    def leave(self, user: int) -> list[Delivery]:
        """A member leaves: its unfinished line (:data:`CHAT_LINES`), then the announcement.

        Raises:
            ValueError: it is not a member.
        """
        if user not in self._peers:
            raise ValueError(f"<user{user}> is not in the room")
        deliveries = self.flush(user)
        del self._peers[user]
        if self.mode != BROKER:
            deliveries += self._to_all_but(None, b"<announce> <user%d> is disconnected.\n" % user)
        return deliveries

    def message(self, sender: int, chunk: bytes) -> list[Delivery]:
        """What the others receive when ``sender`` sends ``chunk``.

        The sender need not be a member: ncat's host sends as ``<user0>`` and receives
        nothing. An empty chunk sends nothing (a read of zero bytes is an end of stream,
        which :meth:`leave` or :meth:`flush` handle).

        In :data:`CHAT_LINES` mode every complete line goes out with its prefix, and the
        rest of the chunk waits for the sender's next chunk; a line of more than
        ``max_line`` bytes (line feed not counted) goes out in pieces of at most that
        many, each ended with a line feed, cut between UTF-8 characters when the text is
        valid UTF-8.
        """
        if not chunk:
            return []
        if self.mode == BROKER:
            data = chunk
        elif self.mode == CHAT:
            data = _prefix(sender) + escape_bytes(chunk)
        else:
            prefix = _prefix(sender)
            data = b"".join([prefix + escape_text(line) for line in self._lines.lines(sender, chunk)])
            if not data:
                return []
        return self._to_all_but(sender, data)

    def flush(self, sender: int) -> list[Delivery]:
        """The sender's input ended: send its unfinished line, ended with a line feed.

        Only :data:`CHAT_LINES` holds lines back; :meth:`leave` flushes a member, and the
        caller flushes the host's ``<user0>`` when its standard input ends.
        """
        rest = self._lines.flush(sender)
        if not rest:
            return []
        return self._to_all_but(sender, _prefix(sender) + escape_text(rest))

    def _to_all_but(self, sender: int | None, data: bytes) -> list[Delivery]:
        recipients = [member for member in self.members if member != sender]
        if self.observer is not None and self.observer != sender:
            recipients = sorted([self.observer, *recipients])
        return [(recipient, data) for recipient in recipients]
