"""Room (--broker, --chat): the bytes each member receives, checked against ncat 7.93's."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.proto.chat import BROKER, CHAT, CHAT_LINES, NCAT_READ_SIZE, Room, escape_bytes, escape_text

PEER = "127.0.0.1"

#: What ncat 7.93's <user5> received when <user4> sent bytes(range(256)) in one chunk.
NCAT_ALL_BYTES = (
    b"<user4> \\000\\001\\002\\003\\004\\005\\006\\007\\010\t\n\\013\\014\r\\016\\017\\020\\021\\022\\023\\024"
    b"\\025\\026\\027\\030\\031\\032\\033\\034\\035\\036\\037 !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFG"
    b"HIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\\177\\200\\201\\202\\203\\204\\205"
    b"\\206\\207\\210\\211\\212\\213\\214\\215\\216\\217\\220\\221\\222\\223\\224\\225\\226\\227\\230\\231\\232"
    b"\\233\\234\\235\\236\\237\\240\\241\\242\\243\\244\\245\\246\\247\\250\\251\\252\\253\\254\\255\\256\\257"
    b"\\260\\261\\262\\263\\264\\265\\266\\267\\270\\271\\272\\273\\274\\275\\276\\277\\300\\301\\302\\303\\304"
    b"\\305\\306\\307\\310\\311\\312\\313\\314\\315\\316\\317\\320\\321\\322\\323\\324\\325\\326\\327\\330\\331"
    b"\\332\\333\\334\\335\\336\\337\\340\\341\\342\\343\\344\\345\\346\\347\\350\\351\\352\\353\\354\\355\\356"
    b"\\357\\360\\361\\362\\363\\364\\365\\366\\367\\370\\371\\372\\373\\374\\375\\376\\377"
)


def room_of(*users: int, mode: str = CHAT, max_line: int = NCAT_READ_SIZE) -> Room:
    room = Room(mode, max_line=max_line)
    for user in users:
        room.join(user, PEER)
    return room


def announce_join(user: int, others: str) -> bytes:
    return f"<announce> {PEER} is connected as <user{user}>.\n<announce> already connected: {others}.\n".encode()


# --- CHAT: ncat 7.93's bytes, observed on loopback ---------------------------------------


def test_first_member_hears_that_nobody_is_there() -> None:
    room = Room()
    assert room.join(4, PEER) == [
        (4, b"<announce> 127.0.0.1 is connected as <user4>.\n<announce> already connected: nobody.\n")
    ]


def test_join_is_announced_to_everyone_including_the_newcomer() -> None:
    room = room_of(4, 5)
    text = (
        b"<announce> 127.0.0.1 is connected as <user6>.\n"
        b"<announce> already connected: 127.0.0.1 as <user4>, 127.0.0.1 as <user5>.\n"
    )
    assert room.join(6, PEER) == [(4, text), (5, text), (6, text)]


def test_already_connected_lists_the_others_by_number() -> None:
    # ncat reuses a closed connection's descriptor: <user5> leaves and the next comer is <user5> again
    room = room_of(4, 5, 6)
    room.leave(5)
    expected = announce_join(5, "127.0.0.1 as <user4>, 127.0.0.1 as <user6>")
    assert room.join(5, PEER) == [(4, expected), (5, expected), (6, expected)]


def test_each_member_is_listed_with_the_peer_text_it_joined_with() -> None:
    # 7.96+ writes socktop(): host and port, IPv6 in brackets
    room = Room()
    room.join(5, "127.0.0.1:56196")
    (_, text), _ = room.join(6, "[::1]:40000")
    assert text == b"".join(
        [
            b"<announce> [::1]:40000 is connected as <user6>.\n",
            b"<announce> already connected: 127.0.0.1:56196 as <user5>.\n",
        ]
    )


def test_leave_is_announced_to_the_others() -> None:
    room = room_of(4, 5, 6)
    assert room.leave(5) == [
        (4, b"<announce> <user5> is disconnected.\n"),
        (6, b"<announce> <user5> is disconnected.\n"),
    ]
    assert room.members == (4, 6)


def test_last_member_leaving_tells_nobody() -> None:
    room = room_of(4)
    assert room.leave(4) == []
    assert room.members == ()


def test_one_prefix_per_chunk_not_per_line() -> None:
    room = room_of(4, 5)
    assert room.message(4, b"line1\nline2\npartial") == [(5, b"<user4> line1\nline2\npartial")]
    assert room.message(4, b" rest\n") == [(5, b"<user4>  rest\n")]


def test_a_message_goes_to_every_member_but_its_sender() -> None:
    room = room_of(4, 5, 6)
    assert room.message(5, b"hi\n") == [(4, b"<user5> hi\n"), (6, b"<user5> hi\n")]


def test_the_host_sends_as_user0_without_being_a_member() -> None:
    room = room_of(4, 5)
    assert room.message(0, b"from host\n") == [(4, b"<user0> from host\n"), (5, b"<user0> from host\n")]
    assert 0 not in room.members


def test_a_member_alone_sends_to_nobody() -> None:
    assert room_of(4).message(4, b"anyone?\n") == []


def test_every_byte_is_escaped_as_ncat_does() -> None:
    assert room_of(4, 5).message(4, bytes(range(256))) == [(5, NCAT_ALL_BYTES)]


@pytest.mark.parametrize(
    ("byte", "expected"),
    [
        (0x00, rb"\000"),
        (0x07, rb"\007"),
        (0x08, rb"\010"),
        (0x09, b"\t"),
        (0x0A, b"\n"),
        (0x0B, rb"\013"),
        (0x0C, rb"\014"),
        (0x0D, b"\r"),
        (0x1B, rb"\033"),
        (0x1F, rb"\037"),
        (0x20, b" "),
        (0x5C, b"\\"),
        (0x7E, b"~"),
        (0x7F, rb"\177"),
        (0x80, rb"\200"),
        (0xC3, rb"\303"),
        (0xFF, rb"\377"),
    ],
)
def test_escape_bytes_at_the_edges(byte: int, expected: bytes) -> None:
    assert escape_bytes(bytes((byte,))) == expected


def test_utf8_is_escaped_byte_by_byte_as_ncat_does() -> None:
    assert escape_bytes("é".encode()) == rb"\303\251"


def test_ncat_reads_8192_bytes_at_a_time() -> None:
    # 20000 bytes sent at once reached the others as chunks of 8192, 8192 and 3616
    assert NCAT_READ_SIZE == 8192


def test_an_empty_chunk_sends_nothing() -> None:
    for mode in (BROKER, CHAT, CHAT_LINES):
        assert room_of(4, 5, mode=mode).message(4, b"") == []


# --- BROKER ------------------------------------------------------------------------------


def test_broker_passes_bytes_unchanged_to_the_others() -> None:
    room = Room(BROKER)
    assert room.join(4, PEER) == []
    assert room.join(5, PEER) == []
    assert room.join(6, PEER) == []
    data = bytes(range(256))
    assert room.message(4, data) == [(5, data), (6, data)]
    assert room.message(0, b"host\n") == [(4, b"host\n"), (5, b"host\n"), (6, b"host\n")]


def test_broker_leave_says_nothing() -> None:
    room = room_of(4, 5, mode=BROKER)
    assert room.leave(4) == []
    assert room.members == (5,)


# --- CHAT_LINES: beyond ncat -------------------------------------------------------------


def test_lines_one_prefix_per_line() -> None:
    room = room_of(4, 5, mode=CHAT_LINES)
    assert room.message(4, b"line1\nline2\n") == [(5, b"<user4> line1\n<user4> line2\n")]


def test_lines_a_partial_line_waits_for_the_rest() -> None:
    room = room_of(4, 5, 6, mode=CHAT_LINES)
    assert room.message(4, b"line1\npart") == [(5, b"<user4> line1\n"), (6, b"<user4> line1\n")]
    assert room.message(6, b"meanwhile\n") == [(4, b"<user6> meanwhile\n"), (5, b"<user6> meanwhile\n")]
    assert room.message(4, b"ial") == []
    assert room.message(4, b" rest\n") == [(5, b"<user4> partial rest\n"), (6, b"<user4> partial rest\n")]


def test_lines_carriage_returns_stay_in_the_line() -> None:
    room = room_of(4, 5, mode=CHAT_LINES)
    assert room.message(4, b"dos\r\nline\r\n") == [(5, b"<user4> dos\r\n<user4> line\r\n")]


def test_lines_leave_flushes_the_partial_line_before_the_announcement() -> None:
    room = room_of(4, 5, mode=CHAT_LINES)
    room.message(4, b"no newline")
    assert room.leave(4) == [(5, b"<user4> no newline\n"), (5, b"<announce> <user4> is disconnected.\n")]


def test_lines_flush_of_the_host() -> None:
    room = room_of(4, mode=CHAT_LINES)
    assert room.message(0, b"bye") == []
    assert room.flush(0) == [(4, b"<user0> bye\n")]
    assert room.flush(0) == []


def test_lines_partial_lines_of_different_senders_are_kept_apart() -> None:
    room = room_of(4, 5, 6, mode=CHAT_LINES)
    room.message(4, b"four ")
    room.message(5, b"five ")
    assert room.message(4, b"4\n") == [(5, b"<user4> four 4\n"), (6, b"<user4> four 4\n")]
    assert room.message(5, b"5\n") == [(4, b"<user5> five 5\n"), (6, b"<user5> five 5\n")]


def test_lines_a_line_of_max_line_bytes_goes_out_whole() -> None:
    room = room_of(4, 5, mode=CHAT_LINES, max_line=4)
    assert room.message(4, b"abcd") == []
    assert room.message(4, b"\n") == [(5, b"<user4> abcd\n")]


def test_lines_a_longer_line_goes_out_in_pieces() -> None:
    room = room_of(4, 5, mode=CHAT_LINES, max_line=4)
    assert room.message(4, b"abcdefghij") == [(5, b"<user4> abcd\n<user4> efgh\n")]
    assert room.message(4, b"\n") == [(5, b"<user4> ij\n")]


def test_lines_a_long_line_across_chunks_never_holds_more_than_max_line() -> None:
    room = room_of(4, 5, mode=CHAT_LINES, max_line=4)
    assert room.message(4, b"abc") == []
    assert room.message(4, b"de") == [(5, b"<user4> abcd\n")]
    assert room.flush(4) == [(5, b"<user4> e\n")]


def test_lines_pieces_are_cut_between_utf8_characters() -> None:
    room = room_of(4, 5, mode=CHAT_LINES, max_line=4)
    # "aé€" is 1 + 2 + 3 bytes: a cut after 4 bytes would split the euro sign
    assert room.message(4, "aé€\n".encode()) == [(5, "<user4> aé\n<user4> €\n".encode())]


def test_lines_invalid_utf8_cannot_move_the_cut_before_the_start() -> None:
    room = room_of(4, 5, mode=CHAT_LINES, max_line=2)
    assert room.message(4, b"\x80\x80\x80\x80\n") == [(5, b"<user4> \\200\\200\n<user4> \\200\\200\n")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ASCII", b"plain ASCII"),
        ("tab\tcr\r", b"tab\tcr\r"),
        ("ñandú €", "ñandú €".encode()),
        ("no\u00a0break, ideographic\u3000space", "no\u00a0break, ideographic\u3000space".encode()),
        ("family \U0001f468\u200d\U0001f469", "family \U0001f468\u200d\U0001f469".encode()),
        ("bell\a", rb"bell\007"),
        ("esc\x1b[2J", rb"esc\033[2J"),
        ("del\x7f", rb"del\177"),
        ("C1 \x9b", rb"C1 \302\233"),
        ("bidi \u202e", rb"bidi \342\200\256"),
        ("back\\slash", rb"back\\slash"),
        ("looks escaped \\033", rb"looks escaped \\033"),
    ],
)
def test_escape_text(text: str, expected: bytes) -> None:
    assert escape_text(text.encode()) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff", rb"\377"),
        (b"caf\xe9", rb"caf\351"),
        (b"\xe2\x82", rb"\342\202"),
        (b"\xed\xa0\x80", rb"\355\240\200"),
        (b"ok \xc3\xa9 \xc3", "ok é ".encode() + rb"\303"),
    ],
)
def test_escape_text_of_invalid_utf8(data: bytes, expected: bytes) -> None:
    assert escape_text(data) == expected


# --- errors ------------------------------------------------------------------------------


def test_joining_twice_is_refused() -> None:
    room = room_of(4)
    with pytest.raises(ValueError, match="taken"):
        room.join(4, PEER)


def test_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Room().join(-1, PEER)


def test_leaving_without_joining_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the room"):
        room_of(4).leave(5)


def test_unknown_mode_and_bad_max_line() -> None:
    with pytest.raises(ValueError, match="mode"):
        Room("irc")
    with pytest.raises(ValueError, match="max_line"):
        Room(CHAT_LINES, max_line=0)


# --- properties --------------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\\\|\\[0-3][0-7][0-7]")


def unescape(data: bytes, *, doubled_backslash: bool) -> bytes:
    """Read the escapes back; ncat's mode leaves a backslash alone, the line mode doubles it."""

    def replace(match: re.Match[bytes]) -> bytes:
        token = match.group()
        if token == b"\\\\":
            return b"\\" if doubled_backslash else token
        return bytes((int(token[1:], 8),))

    return _ESCAPE.sub(replace, data)


def _ncat_reference(byte: int) -> bytes:
    return bytes((byte,)) if 0x20 <= byte <= 0x7E or byte in (9, 10, 13) else f"\\{byte:03o}".encode()


_CHUNKS = st.lists(st.binary(max_size=40) | st.text(max_size=20).map(str.encode), max_size=8)
_USERS = st.integers(1, 20)


@given(st.binary(max_size=200))
def test_escape_bytes_matches_the_byte_by_byte_rule(data: bytes) -> None:
    assert escape_bytes(data) == b"".join(_ncat_reference(byte) for byte in data)


@given(_USERS, _CHUNKS)
def test_chat_framing_gives_back_the_chunks(sender: int, chunks: list[bytes]) -> None:
    # ncat does not escape a backslash, so "\\033" typed and ESC look alike: leave backslashes out
    chunks = [chunk.replace(b"\\", b"") for chunk in chunks]
    room = room_of(21, mode=CHAT)
    prefix = b"<user%d> " % sender
    for chunk in chunks:
        deliveries = room.message(sender, chunk)
        if not chunk:
            assert deliveries == []
            continue
        [(recipient, data)] = deliveries
        assert recipient == 21
        assert data.startswith(prefix)
        body = data[len(prefix) :]
        assert not body.translate(None, bytes(range(0x20, 0x7F)) + b"\t\n\r"), "only printable ASCII goes out"
        assert unescape(body, doubled_backslash=False) == chunk


def split_lines(out: bytes, prefix: bytes) -> list[bytes]:
    """The line mode's output, line by line, prefixes checked and removed, escapes read back."""
    lines = re.split(rb"(?<=\n)", out)
    assert lines.pop() == b"", "every line is ended"
    assert all(line.startswith(prefix) for line in lines)
    return [unescape(line[len(prefix) :], doubled_backslash=True) for line in lines]


@given(_USERS, _CHUNKS)
def test_lines_framing_gives_back_the_stream(sender: int, chunks: list[bytes]) -> None:
    room = room_of(21, mode=CHAT_LINES)
    prefix = b"<user%d> " % sender
    out = b"".join(data for chunk in chunks for _, data in room.message(sender, chunk))
    out += b"".join(data for _, data in room.flush(sender))
    out.decode()  # always valid UTF-8
    stream = b"".join(chunks)
    assert b"".join(split_lines(out, prefix)) == (stream if stream.endswith(b"\n") or not stream else stream + b"\n")


@given(_USERS, _CHUNKS, st.integers(1, 12))
def test_lines_never_hold_or_send_more_than_max_line(sender: int, chunks: list[bytes], max_line: int) -> None:
    room = room_of(21, mode=CHAT_LINES, max_line=max_line)
    prefix = b"<user%d> " % sender
    out = b""
    for chunk in chunks:
        out += b"".join(data for _, data in room.message(sender, chunk))
        held = b"".join(data for _, data in copy.deepcopy(room).flush(sender))
        assert all(len(line) <= max_line + 1 for line in split_lines(held, prefix))
    out += b"".join(data for _, data in room.flush(sender))
    lines = split_lines(out, prefix)
    assert all(len(line) <= max_line + 1 for line in lines)
    assert b"".join(lines).replace(b"\n", b"") == b"".join(chunks).replace(b"\n", b"")


@given(st.lists(st.tuples(st.sampled_from(["join", "leave", "message", "flush"]), _USERS, st.binary(max_size=30))))
def test_any_sequence_of_calls_never_raises_unexpectedly(calls: list[tuple[str, int, bytes]]) -> None:
    for mode in (BROKER, CHAT, CHAT_LINES):
        room = Room(mode, max_line=8)
        for action, user, data in calls:
            member = user in room.members
            if action == "join" and not member:
                deliveries = room.join(user, PEER)
            elif action == "leave" and member:
                deliveries = room.leave(user)
            elif action == "message":
                deliveries = room.message(user, data)
            elif action == "flush":
                deliveries = room.flush(user)
            else:
                continue
            assert all(recipient in room.members for recipient, _ in deliveries)
            assert action == "join" or all(recipient != user for recipient, _ in deliveries)


# --- the observer: the host's output watching the room (--host-sees-room) ----------------


def test_the_observer_hears_every_announcement_and_message_and_is_never_named() -> None:
    room = Room(CHAT, observer=0)
    first = announce_join(4, "nobody")
    assert room.join(4, PEER) == [(0, first), (4, first)]
    assert room.message(4, b"hi\n") == [(0, b"<user4> hi\n")]  # alone in the room, still heard
    assert room.message(0, b"from the host\n") == [(4, b"<user0> from the host\n")]  # not its own
    assert room.leave(4) == [(0, b"<announce> <user4> is disconnected.\n")]


def test_the_observer_sees_broker_bytes_unchanged_and_whole_lines_in_line_mode() -> None:
    broker = Room(BROKER, observer=0)
    broker.join(4, PEER)
    assert broker.message(4, b"raw\x07") == [(0, b"raw\x07")]
    lines = Room(CHAT_LINES, observer=0)
    lines.join(4, PEER)
    assert lines.message(4, b"one\ntw") == [(0, b"<user4> one\n")]
    assert lines.leave(4) == [(0, b"<user4> tw\n"), (0, b"<announce> <user4> is disconnected.\n")]


def test_the_observer_number_cannot_join() -> None:
    with pytest.raises(ValueError, match="cannot join"):
        Room(observer=0).join(0, PEER)
