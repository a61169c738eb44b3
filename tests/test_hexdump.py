"""ncat's -x hex dump format, byte for byte.

Every expected string here was captured from a real ncat 7.93 listener run with
``-x FILE --recv-only`` that received the input in one transmission.
"""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from enchufe.hexdump import hexdump

_LINE = 73  # characters before the newline


def test_ncat_example() -> None:
    data = b"SSH-2.0-OpenSSH_4.3\nHELO example x\x01\xff"
    assert hexdump(data) == (
        "0000   53 53 48 2d 32 2e 30 2d  4f 70 65 6e 53 53 48 5f  SSH-2.0-OpenSSH_\n"
        "0010   34 2e 33 0a 48 45 4c 4f  20 65 78 61 6d 70 6c 65  4.3.HELO.example\n"
        "0020   20 78 01 ff                                       .x..            \n"
    )


def test_empty_input_gives_no_lines() -> None:
    assert hexdump(b"") == ""


def test_exactly_sixteen_bytes_is_one_full_line() -> None:
    assert hexdump(bytes(range(16))) == ("0000   00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................\n")


def test_eight_bytes_pad_the_right_half() -> None:
    assert hexdump(bytes(range(8))) == ("0000   00 01 02 03 04 05 06 07                           ........        \n")


def test_seventeen_bytes_start_a_second_line() -> None:
    assert hexdump(bytes(range(17))) == (
        "0000   00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................\n"
        "0010   10                                                .               \n"
    )


def test_one_byte() -> None:
    assert hexdump(b"A") == "0000   41                                                A               \n"


def test_space_tab_tilde_del_and_high_bytes_are_dots() -> None:
    assert hexdump(b" \t~\x7f\x80") == ("0000   20 09 7e 7f 80                                    ..~..           \n")


def test_hex_is_lowercase() -> None:
    assert hexdump(b"\xab\xcd\xef") == ("0000   ab cd ef                                          ...             \n")


def test_text_column_of_every_byte_value() -> None:
    lines = hexdump(bytes(range(256))).splitlines()
    assert [line[57:] for line in lines] == [
        "................",
        "................",
        ".!\"#$%&'()*+,-./",
        "0123456789:;<=>?",
        "@ABCDEFGHIJKLMNO",
        "PQRSTUVWXYZ[\\]^_",
        "`abcdefghijklmno",
        "pqrstuvwxyz{|}~.",
    ] + ["................"] * 8
    assert lines[15] == "00f0   f0 f1 f2 f3 f4 f5 f6 f7  f8 f9 fa fb fc fd fe ff  ................"


def test_offsets_count_in_sixteens() -> None:
    lines = hexdump(bytes(16 * 300 + 5)).splitlines()
    assert len(lines) == 301
    assert [line[:7] for line in lines[:3]] == ["0000   ", "0010   ", "0020   "]
    assert lines[255][:7] == "0ff0   "
    assert lines[256][:7] == "1000   "
    assert lines[300] == "12c0   00 00 00 00 00                                    .....           "


def test_offsets_past_ffff() -> None:
    # ncat never dumps more than one read buffer at a time, so it never gets here;
    # enchufe keeps counting and the offset grows a fifth digit.
    data = bytes(range(256)) * 257  # 65792 bytes: 4112 full lines
    out = hexdump(data)
    lines = out.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == 4112
    assert lines[4095].startswith("fff0   f0 f1 f2 f3 ")
    assert len(lines[4095]) == _LINE
    assert lines[4096] == "10000   00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................"
    assert lines[4111].startswith("100f0   f0 f1 ")


def _decode(dump: str) -> bytes:
    """The bytes the hex columns of a dump stand for."""
    data = bytearray()
    for line in dump.splitlines():
        data += bytes.fromhex(line[7:56])
    return bytes(data)


def _printable(byte: int) -> str:
    char = chr(byte)
    return char if char in string.ascii_letters + string.digits + string.punctuation else "."


@given(st.binary(max_size=200))
def test_every_line_is_73_chars_and_decodes_back(data: bytes) -> None:
    out = hexdump(data)
    assert out.endswith("\n") or data == b""
    lines = out.split("\n")[:-1] if out else []
    assert len(lines) == (len(data) + 15) // 16
    for number, line in enumerate(lines):
        assert len(line) == _LINE
        assert line[:7] == f"{16 * number:04x}   "
        chunk = data[16 * number : 16 * number + 16]
        assert line[57:].rstrip(" ") == "".join(_printable(b) for b in chunk)
    assert _decode(out) == data
