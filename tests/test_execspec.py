"""split_command (ncat's -e splitting) and exec_environment (the NCAT_* variables)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from enchufe.address import InetAddress, UnixAddress
from enchufe.execspec import exec_environment, split_command

#: -e text -> the arguments ncat 7.93 passed to the program, observed with
#: ``ncat -l 127.0.0.1 PORT -e '/usr/bin/printf %s\\000 TEXT'`` and one client. The first
#: group follows ncat's own test-cmdline-split.c (its inputs as remembered, not copied);
#: the rest probe the edges. Every expected value is what 7.93 did.
OBSERVED = [
    ("ncat", ["ncat"]),
    ("ncat a", ["ncat", "a"]),
    (r"ncat \ a", ["ncat", " a"]),
    (r"ncat\ a", ["ncat a"]),
    (r"ncat\\ a", ["ncat\\", "a"]),
    (r"ncat\ \\ a", ["ncat \\", "a"]),
    ("ncat -l", ["ncat", "-l"]),
    ("ncat -l -k", ["ncat", "-l", "-k"]),
    (r"ncat -l\ -k", ["ncat", "-l -k"]),
    (r"ncat -l\\ -k", ["ncat", "-l\\", "-k"]),
    (r"ncat -l\ \\ -k", ["ncat", "-l \\", "-k"]),
    (r"ncat -l\ \\\ -k", ["ncat", r"-l \ -k"]),
    (r"ncat -l\  \\\ -k", ["ncat", r"-l \ -k"]),
    (r"ncat -l\ \\ \\\ -k", ["ncat", "-l \\", r"\ -k"]),
    ('ncat "-l" -k', ["ncat", '"-l"', "-k"]),
    ('ncat "-l -k"', ["ncat", '"-l', '-k"']),
    ("ncat '-l -k'", ["ncat", "'-l", "-k'"]),
    (r"ncat \"-l\ -k\"", ["ncat", '"-l -k"']),
    ("ncat -l\\", ["ncat", "-l"]),
    ("ncat -l \\", ["ncat", "-l", ""]),
    ("ncat -l \\\\", ["ncat", "-l", "\\"]),
    ("ncat \\", ["ncat", ""]),
    (r"ncat a\x b", ["ncat", "axb"]),
    (r"ncat a\xb", ["ncat", "axb"]),
    ("ncat a\\\tb c", ["ncat", "a\tb", "c"]),
    ("ncat a\\\t\tb c", ["ncat", "a\tb", "c"]),
    ("ncat a\\ \n b", ["ncat", "a b"]),
    ("ncat \\\\\\\\", ["ncat", "\\\\"]),
    (r"ncat \ \ ", ["ncat", "  "]),
    (r"ncat a\  ", ["ncat", "a "]),
    ("  ncat   a  ", ["ncat", "a"]),
    ("ncat\ta\nb\rc\x0bd\x0ce", ["ncat", "a", "b", "c", "d", "e"]),
    ("ncat a\x1cb \xa0c", ["ncat", "a\x1cb", "\xa0c"]),
    (r"ncat \n\t", ["ncat", "nt"]),
    (r"ncat é\ ü ñ", ["ncat", "é ü", "ñ"]),
]


@pytest.mark.parametrize(("command", "expected"), OBSERVED)
def test_splits_as_ncat_7_93(command: str, expected: list[str]) -> None:
    assert split_command(command) == expected


@pytest.mark.parametrize("command", ["", " ", "   ", "\t\n\r\v\f "])
def test_no_arguments(command: str) -> None:
    # ncat then calls execv(NULL, ...): "exec: Bad address"
    assert split_command(command) == []


def test_a_lone_backslash_is_one_empty_argument() -> None:
    # ncat then calls execv("", ...): "exec: No such file or directory"
    assert split_command("\\") == [""]


def test_only_c_locale_whitespace_separates() -> None:
    assert split_command("a\x1cb\x85c\u2003d") == ["a\x1cb\x85c\u2003d"]


def quote(arg: str) -> str:
    """Escape what split_command would otherwise take as separators or escapes."""
    return "".join("\\" + char if char in " \t\n\r\v\f\\" else char for char in arg)


_ARG = st.text(st.characters(codec="utf-8") | st.sampled_from(" \t\\"), min_size=1, max_size=12)


@given(st.lists(_ARG, max_size=6))
def test_quoted_arguments_come_back(args: list[str]) -> None:
    # An escaped separator swallows the separators after it (ncat's quirk), so an argument
    # ending in whitespace cannot be followed by another: leave those out.
    assume(not any(arg[-1] in " \t\n\r\v\f" for arg in args[:-1]))
    assert split_command(" ".join(quote(arg) for arg in args)) == args


@given(st.text(max_size=60) | st.text(st.sampled_from(" \t\n\\ab"), max_size=30))
def test_any_text_splits(command: str) -> None:
    args = split_command(command)
    assert all(args[:-1]), "only a trailing backslash makes an empty argument"
    if "\\" not in command:
        assert args == [arg for arg in re.split(r"[ \t\n\r\v\f]+", command) if arg]


# --- the NCAT_* environment, as ncat 7.93 sets it (observed with -e /usr/bin/env) ----------


def test_tcp_listener_environment_in_ncat_order() -> None:
    env = exec_environment(local=InetAddress("127.0.0.1", 40040), remote=InetAddress("127.0.0.1", 43752))
    assert list(env.items()) == [
        ("NCAT_REMOTE_ADDR", "127.0.0.1"),
        ("NCAT_REMOTE_PORT", "43752"),
        ("NCAT_LOCAL_ADDR", "127.0.0.1"),
        ("NCAT_LOCAL_PORT", "40040"),
        ("NCAT_PROTO", "TCP"),
    ]


def test_ipv6_addresses_are_not_bracketed() -> None:
    env = exec_environment(local=InetAddress("::1", 47401), remote=InetAddress("fe80::1%lo", 56302))
    assert env["NCAT_LOCAL_ADDR"] == "::1"
    assert env["NCAT_REMOTE_ADDR"] == "fe80::1%lo"
    assert env["NCAT_REMOTE_PORT"] == "56302"


@pytest.mark.parametrize(("transport", "name"), [("stream", "TCP"), ("datagram", "UDP"), ("sctp", "SCTP")])
def test_protocol_names(transport: str, name: str) -> None:
    env = exec_environment(local=InetAddress("127.0.0.1", 1), remote=InetAddress("127.0.0.1", 2), transport=transport)
    assert env["NCAT_PROTO"] == name


@pytest.mark.parametrize(("transport", "name"), [("stream", "TCP"), ("datagram", "UDP")])
def test_unix_sockets_are_localhost_without_a_port(transport: str, name: str) -> None:
    env = exec_environment(local=UnixAddress("/tmp/u.sock"), remote=UnixAddress("@peer"), transport=transport)
    assert env == {
        "NCAT_REMOTE_ADDR": "localhost",
        "NCAT_REMOTE_PORT": "",
        "NCAT_LOCAL_ADDR": "localhost",
        "NCAT_LOCAL_PORT": "",
        "NCAT_PROTO": name,
    }


def test_local_and_remote_are_not_swapped() -> None:
    # connect mode: the remote is the server ncat connected to
    env = exec_environment(local=InetAddress("127.0.0.1", 51632), remote=InetAddress("127.0.0.1", 47403))
    assert (env["NCAT_LOCAL_PORT"], env["NCAT_REMOTE_PORT"]) == ("51632", "47403")


def test_unknown_transport() -> None:
    with pytest.raises(ValueError, match="transport"):
        exec_environment(local=InetAddress("::1", 1), remote=InetAddress("::1", 2), transport="tcp")
