"""Fuzz enchufe.proto.chat: the broker and chat rooms, and their escaping.

Invariant: a room never raises on members joining, sending and leaving; every delivery
goes to a member or the observer, never to its sender (a member joining is
announced to itself too), by increasing number; chat
output is valid UTF-8 in the line mode and printable ASCII (tab, LF, CR aside) in ncat's
mode; ``escape_text`` reads back (``\\\\`` and ``\\ooo``) to exactly the bytes escaped.
"""

from __future__ import annotations

import fuzzing

with fuzzing.instrumented():
    from enchufe.proto.chat import BROKER, CHAT, CHAT_LINES, Room, escape_bytes, escape_text

_OBSERVER = 99


def _unescape(text: bytes) -> bytes:
    out = bytearray()
    index = 0
    while index < len(text):
        if text[index : index + 2] == b"\\\\":
            out += b"\\"
            index += 2
        elif text[index : index + 1] == b"\\":
            out.append(int(text[index + 1 : index + 4], 8))
            index += 4
        else:
            out.append(text[index])
            index += 1
    return bytes(out)


def check(data: bytes) -> None:
    assert _unescape(escape_text(data)) == data
    escape_text(data).decode("utf-8")
    assert all(0x20 <= byte < 0x7F or byte in b"\t\n\r" for byte in escape_bytes(data))
    choice, pieces = fuzzing.pieces(data)
    mode = (BROKER, CHAT, CHAT_LINES)[choice[0] % 3 if choice else 0]
    room = Room(mode, max_line=8, observer=_OBSERVER)
    for piece in pieces:
        user = piece[0] % 4
        joining = piece[0] & 0x30 == 0x30 and user not in room.members
        if joining:
            deliveries = room.join(user, f"peer{user}")
        elif piece[0] & 0x30 == 0x30:
            deliveries = room.leave(user)  # its last line, then the announcement: two runs
        elif piece[0] & 0x30 == 0x20:
            deliveries = room.flush(user)
        else:
            deliveries = room.message(user, piece[1:])
        recipients = [recipient for recipient, _ in deliveries]
        assert joining or user not in recipients, (user, recipients)
        assert set(recipients) <= {*room.members, _OBSERVER}, (recipients, room.members)
        if piece[0] & 0x30 != 0x30:
            assert recipients == sorted(recipients), recipients
        if mode == CHAT_LINES:
            for _, delivered in deliveries:
                delivered.decode("utf-8")


if __name__ == "__main__":
    fuzzing.main(check)
