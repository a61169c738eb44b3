"""argv → Config: GNU getopt parsing, ncat's defaults, and ncat's usage messages.

Every expected message was checked against ncat (7.93 installed, the 7.96+ wording
where the reference says they differ); enchufe prints it with its own prefix and
`` QUITTING.``, which is the job of cli.main, not of parse_args.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enchufe.cli.config import DEFAULT_PORT, Config, parse_args
from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
from enchufe.cli.options import (
    ENCHUFE_NAMES,
    LONG_IDENTITY,
    LONG_OPTIONS,
    NCAT_LONG_OPTIONS,
    NOT_YET,
    SHORT_OPTIONS,
)
from enchufe.cli.usage import UsageError
from enchufe.errors import EnchufeError


def usage_error(argv: list[str]) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    return info.value


def message(argv: list[str]) -> str:
    return str(usage_error(argv))


def takes_value(option: str) -> bool:
    if option.startswith("--"):
        return option[2:] + "=" in LONG_OPTIONS
    return SHORT_OPTIONS[SHORT_OPTIONS.index(option[1]) + 1 : SHORT_OPTIONS.index(option[1]) + 2] == ":"


# --- defaults ------------------------------------------------------------------------


def test_connect_defaults() -> None:
    assert parse_args(["localhost"]) == Config(host="localhost")
    config = parse_args(["localhost"])
    assert config.port == DEFAULT_PORT == 31337
    assert config.listen is False
    assert config.transport == "stream"
    assert config.family == socket.AF_UNSPEC
    assert config.connect_timeout == 10.0
    assert config.idle_timeout is None
    assert config.delay is None
    assert config.quit_after_eof is None
    assert config.verbosity == 0
    assert config.source_port == 0


def test_usage_error_is_an_enchufe_error() -> None:
    error = usage_error([])
    assert isinstance(error, EnchufeError)
    assert error.getopt_message is False


def test_flags() -> None:
    argv = ["-C", "-t", "-n", "--send-only", "--recv-only", "--no-shutdown", "-o", "out", "-x", "hex"]
    config = parse_args([*argv, "--append-output", "--source", "127.0.0.1", "localhost", "7"])
    assert config == Config(
        host="localhost",
        port=7,
        crlf=True,
        telnet=True,
        numeric_only=True,
        send_only=True,
        recv_only=True,
        no_shutdown=True,
        output="out",
        hex_dump="hex",
        append_output=True,
        source_host="127.0.0.1",
    )


def test_help_and_version() -> None:
    assert parse_args(["-h"]) == Config(show_help=True)
    assert parse_args(["--help"]) == Config(show_help=True)
    assert parse_args(["--version"]) == Config(show_version=True)
    assert parse_args(["--vers"]) == Config(show_version=True)


# --- GNU getopt behaviours -------------------------------------------------------------


def test_options_and_operands_permute() -> None:
    config = parse_args(["localhost", "-v", "80"])
    assert (config.host, config.port, config.verbosity) == ("localhost", 80, 1)


def test_double_dash_ends_options() -> None:
    config = parse_args(["-l", "--", "8080"])
    assert (config.listen, config.host, config.port) == (True, None, 8080)
    assert parse_args(["--", "-host"]).host == "-host"


def test_operand_after_double_dash_is_a_port_even_if_it_looks_like_an_option() -> None:
    assert message(["localhost", "--", "-5"]) == 'Invalid port number "-5".'


def test_lone_dash_is_an_operand() -> None:
    assert parse_args(["-"]).host == "-"


@pytest.mark.parametrize(
    "argv", [["-lvnp8080"], ["-lvnp", "8080"], ["-l", "-v", "-n", "-p", "8080"], ["-lvn", "-p8080"]]
)
def test_clustered_short_options(argv: list[str]) -> None:
    config = parse_args(argv)
    assert (config.listen, config.verbosity, config.numeric_only, config.port) == (True, 1, True, 8080)


@pytest.mark.parametrize(("argv", "level"), [(["-v"], 1), (["-vv"], 2), (["-vvv"], 3), (["-v", "-vv", "--verbose"], 4)])
def test_verbosity_counts(argv: list[str], level: int) -> None:
    assert parse_args([*argv, "localhost"]).verbosity == level


def test_value_may_start_with_a_dash() -> None:
    assert parse_args(["-q", "-1", "localhost"]).quit_after_eof == -1.0
    assert parse_args(["-q-1", "localhost"]).quit_after_eof == -1.0
    assert parse_args(["-o", "-v", "localhost"]) == Config(host="localhost", output="-v")


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--list"], "listen", True),
        (["--liste"], "listen", True),
        (["--idle", "5", "localhost"], "idle_timeout", 5.0),
        (["--wait=5", "localhost"], "connect_timeout", 5.0),
        (["--wa", "5", "localhost"], "connect_timeout", 5.0),
        (["--hex=f", "localhost"], "hex_dump", "f"),
        (["--udp", "localhost"], "transport", "datagram"),
        (["--sctp", "localhost"], "transport", "sctp"),
        (["--nod", "localhost"], "numeric_only", True),
        (["--source-p", "5", "localhost"], "source_port", 5),
    ],
)
def test_long_options_and_abbreviations(argv: list[str], field: str, value: object) -> None:
    assert getattr(parse_args(argv), field) == value


# --- getopt's own errors, in glibc's words ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--ss"],
            "option '--ss' is ambiguous; possibilities: '--ssl' '--ssl-cert' '--ssl-key' '--ssl-verify' "
            "'--ssl-trustfile' '--ssl-ciphers' '--ssl-servername' '--ssl-alpn'",
        ),
        (
            ["--s"],
            "option '--s' is ambiguous; possibilities: '--sh-exec' '--source-port' '--source' '--send-only' "
            "'--sctp' '--ssl' '--ssl-cert' '--ssl-key' '--ssl-verify' '--ssl-trustfile' '--ssl-ciphers' "
            "'--ssl-servername' '--ssl-alpn'",
        ),
        (["--baffle"], "unrecognized option '--baffle'"),
        (["-Q"], "invalid option -- 'Q'"),
        (["-lQ"], "invalid option -- 'Q'"),
        (["-w"], "option requires an argument -- 'w'"),
        (["localhost", "-lw"], "option requires an argument -- 'w'"),
        (["--wait"], "option '--wait' requires an argument"),
        (["--wai"], "option '--wait' requires an argument"),
        (["--listen=3"], "option '--listen' doesn't allow an argument"),
        (["--list=3"], "option '--listen' doesn't allow an argument"),
    ],
)
def test_getopt_errors(argv: list[str], expected: str) -> None:
    error = usage_error(argv)
    assert str(error) == expected
    assert error.getopt_message is True


def test_unrecognized_option_with_value_is_quoted_whole() -> None:
    assert message(["--baffle=3"]) == "unrecognized option '--baffle=3'"


# --- listen operands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["-l"], None, 31337),
        (["-l", "8080"], None, 8080),
        (["-l", "0"], None, 0),
        (["-l", "00080"], None, 80),
        (["-l", "localhost"], "localhost", 31337),
        (["-l", " 80"], " 80", 31337),  # not only digits: a host, for ncat too
        (["-l", "::1"], "::1", 31337),
        (["-l", "::1", "8080"], "::1", 8080),
        (["-l", "127.0.0.1", "0"], "127.0.0.1", 0),
        (["-l", "-p", "9000"], None, 9000),
        (["-l", "localhost", "-p", "9000"], "localhost", 9000),
        (["-l", "-p", "1", "-p", "2"], None, 2),
    ],
)
def test_listen_operands(argv: list[str], host: str | None, port: int) -> None:
    config = parse_args(argv)
    assert config.listen
    assert (config.host, config.port) == (host, port)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-l", "-p", "5", "6"], "Got more than one port specification: 5 6."),
        (["-l", "1", "-p", "2"], "Got more than one port specification: 2 1."),
        (["-l", "1", "2", "3"], "Got more than one port specification: 1 2 3."),
        (["-l", "99999"], 'Invalid port number "99999".'),
        (["-l", "localhost", "1-100"], 'Invalid port number "1-100".'),
        (["-l", "-p", "70000"], "Invalid source port 70000."),  # ncat 7.93 says exactly this
        (["-l", "-p", "abc"], 'Invalid source port number "abc".'),
    ],
)
def test_listen_operand_errors(argv: list[str], expected: str) -> None:
    assert message(argv) == expected


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["-l", "000000"], None, 0),
        (["-l", "localhost", "000080"], "localhost", 80),
    ],
)
def test_port_operands_may_have_leading_zeros(argv: list[str], host: str | None, port: int) -> None:
    # ncat 7.93: `ncat -l 000000` listens on port 0, `ncat -l localhost 000080` on 80.
    assert (parse_args(argv).host, parse_args(argv).port) == (host, port)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-l", "123456"], 'Invalid port number "123456".'),
        (["-l", "100000"], 'Invalid port number "100000".'),
        (["-l", ""], 'Invalid port number "".'),
        (["-l", "80", "localhost"], "Got more than one port specification: 80 localhost."),
        (["-l", "localhost", "80", "90"], "Got more than one port specification: 80 90."),
    ],
)
def test_a_first_listen_operand_of_digits_is_a_port_whatever_its_length(argv: list[str], expected: str) -> None:
    # ncat 7.93's words for each; a number is never read as an IPv4 address to bind.
    assert message(argv) == expected


def test_listen_unix_socket_path() -> None:
    config = parse_args(["-l", "-U", "/tmp/x.sock"])
    assert (config.listen, config.unix, config.host) == (True, True, "/tmp/x.sock")


# --- connect operands --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["localhost"], "localhost", 31337),
        (["localhost", "80"], "localhost", 80),
        ([" 80"], " 80", 31337),  # not only digits: a host (that does not resolve), for ncat too
        (["::1", "0"], "::1", 0),
        (["-U", "/tmp/x.sock"], "/tmp/x.sock", 31337),
    ],
)
def test_connect_operands(argv: list[str], host: str, port: int) -> None:
    config = parse_args(argv)
    assert (config.listen, config.host, config.port) == (False, host, port)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "You must specify a host to connect to."),
        (["-v", "-n"], "You must specify a host to connect to."),
        (["localhost", "1", "2"], "Got more than one port specification: 1 2."),
        (["localhost", "1", "2", "3"], "Got more than one port specification: 1 2 3."),
        (["localhost", "70000"], 'Invalid port number "70000".'),
        (["localhost", "1-100"], 'Invalid port number "1-100".'),
        (["localhost", "http"], 'Invalid port number "http".'),
        (["-p", "70000", "localhost"], "Invalid source port 70000."),
        (["-p", "x", "localhost"], 'Invalid source port number "x".'),
    ],
)
def test_connect_operand_errors(argv: list[str], expected: str) -> None:
    assert message(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["8080"],
        ["-n", "8080"],
        ["0"],
        ["65536"],
        ["123456"],
        [""],
        ["8080", "80"],
        ["80", "localhost"],
        ["8080", "80", "90"],
        ["-u", "8080"],
        ["-z", "8080"],
        ["-p", "5000", "8080"],
    ],
)
def test_a_first_connect_operand_of_digits_leaves_no_host(argv: list[str]) -> None:
    # ncat 7.93 says this for each: a lone number is a port, never the IPv4 address
    # inet_aton would make of it (8080 is 0.0.31.144).
    assert message(argv) == "You must specify a host to connect to."


@pytest.mark.parametrize(
    ("argv", "host", "port"),
    [
        (["localhost", "000080"], "localhost", 80),
        (["-U", "8080"], "8080", 31337),  # a Unix socket path may be all digits
    ],
)
def test_connect_operands_ncat_reads_differently_from_a_lone_number(argv: list[str], host: str, port: int) -> None:
    assert (parse_args(argv).host, parse_args(argv).port) == (host, port)


def test_source_of_a_unix_client() -> None:
    # ncat binds -s for a Unix datagram client; for a Unix stream it says, with -v, that
    # it has no effect (the connect mode decides, so the option is kept).
    assert parse_args(["-U", "-u", "-s", "/tmp/c.sock", "/tmp/s.sock"]).source_host == "/tmp/c.sock"
    assert parse_args(["-U", "-s", "/tmp/c.sock", "/tmp/s.sock"]).source_host == "/tmp/c.sock"


def test_source_port() -> None:
    assert parse_args(["-p", "5000", "localhost"]).source_port == 5000


def test_unix_connect_without_path() -> None:
    assert message(["-U"]) == "You have to specify path to a socket to connect to."


def test_unix_listen_without_path() -> None:
    assert message(["-l", "-U"]) == "You have to specify path to a socket to listen on."


# --- time values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["-w", "200s"], "connect_timeout", 200.0),
        (["-w", "500ms"], "connect_timeout", 0.5),
        (["-w", "99"], "connect_timeout", 99.0),
        (["-w", "1.5m"], "connect_timeout", 90.0),
        (["-w", "1h"], "connect_timeout", 3600.0),
        (["-w", "2147483s"], "connect_timeout", 2147483.0),
        (["-i", "2"], "idle_timeout", 2.0),
        (["-i", "250ms"], "idle_timeout", 0.25),
        (["-d", "1s"], "delay", 1.0),
        (["-q", "3"], "quit_after_eof", 3.0),
        (["-q", "-1"], "quit_after_eof", -1.0),
        (["-q", "-5s"], "quit_after_eof", -1.0),
    ],
)
def test_time_options(argv: list[str], field: str, value: float) -> None:
    assert getattr(parse_args([*argv, "localhost"]), field) == value


def _range_message(what: str, text: str) -> str:
    return f'Invalid {what} "{text}" (must be greater than 0 and less than 2147483s).'


@pytest.mark.parametrize(
    ("option", "what"), [("-w", "-w timeout"), ("-i", "-i timeout"), ("-d", "-d delay"), ("-q", "-q timeout")]
)
@pytest.mark.parametrize("text", ["abc", "1x", "", "0.0004", "2147484s", "nan", "inf"])
def test_time_out_of_range(option: str, what: str, text: str) -> None:
    assert message([option, text, "localhost"]) == _range_message(what, text)


@pytest.mark.parametrize(("option", "what"), [("-w", "-w timeout"), ("-i", "-i timeout"), ("-d", "-d delay")])
@pytest.mark.parametrize("text", ["0", "0ms"])
def test_zero_time_is_refused(option: str, what: str, text: str) -> None:
    assert message([option, text, "localhost"]) == _range_message(what, text)


@pytest.mark.parametrize(("option", "what"), [("-w", "-w timeout"), ("-i", "-i timeout"), ("-d", "-d delay")])
def test_negative_time(option: str, what: str) -> None:
    assert message([option, "-5", "localhost"]) == _range_message(what, "-5")


@pytest.mark.parametrize("text", ["0", "0ms", "0.0s", "0m"])
def test_zero_quit_delay_means_at_stdin_eof(text: str) -> None:
    # ncat refuses it; netcat users mean "quit as soon as stdin ends".
    assert parse_args(["-q", text, "localhost"]).quit_after_eof == 0.0


def test_bad_negative_quit_delay() -> None:
    assert message(["-q", "-x", "localhost"]) == 'Invalid -q timeout "-x".'


@pytest.mark.parametrize(
    ("option", "what"), [("-w", "-w timeout"), ("-i", "-i timeout"), ("-d", "-d delay"), ("-q", "-q timeout")]
)
def test_unitless_time_of_100_or_more_is_refused(option: str, what: str) -> None:
    assert message([option, "200", "localhost"]) == (
        f"Since April 2010, the default unit for {what} is seconds, so your time of "
        '"200" is 3.3 minutes. Use "200ms" for 200 milliseconds.'
    )
    assert message([option, "100", "localhost"]) == (
        f"Since April 2010, the default unit for {what} is seconds, so your time of "
        '"100" is 1.7 minutes. Use "100ms" for 100 milliseconds.'
    )


@pytest.mark.parametrize("text", ["1e2", "2147483", "100.0"])
def test_unitless_message_repeats_the_text(text: str) -> None:
    assert message(["-w", text, "localhost"]).endswith(f'Use "{text}ms" for {text} milliseconds.')


@pytest.mark.parametrize(("text", "seconds"), [("2147483.5s", 2147483.5), ("2147483647ms", 2147483.647)])
def test_time_just_under_int_max_milliseconds(text: str, seconds: float) -> None:
    assert parse_args(["-w", text, "localhost"]).connect_timeout == seconds


def test_time_under_one_millisecond_is_refused() -> None:
    assert message(["-w", "0.0006", "localhost"]) == _range_message("-w timeout", "0.0006")


@pytest.mark.parametrize("text", ["1_0", "٣"])
def test_time_digits_are_ascii_only(text: str) -> None:
    assert message(["-w", text, "localhost"]) == _range_message("-w timeout", text)


def test_huge_time_is_a_usage_error() -> None:
    assert message(["-w", "1e308h", "localhost"]) == _range_message("-w timeout", "1e308h")


# --- option combinations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-l", "-z"], "Services designed for LISTENING can't be used with -z"),
        (["-z", "-t", "localhost"], "Invalid option combination: -z and -t."),
        (
            ["-l", "-s", "1.2.3.4"],
            "-l and -s are incompatible.  Specify the address and port to bind to like you would a host to connect to.",
        ),
        (["-U", "-p", "5", "/tmp/x.sock"], "Specifying source port when using Unix domain sockets doesn't make sense."),
        (["-u", "-k", "localhost"], "Invalid option combination: `--keep-open' with non-TCP protocol."),
        (["--sctp", "-k", "localhost"], "Invalid option combination: `--keep-open' with non-TCP protocol."),
        (["-m", "3", "localhost"], "Invalid option combination: `--max-conns' with connect."),
        (["--nsock-engine", "foo", "localhost"], "Unknown or non-available engine: foo."),
        (["-l", "-k", "--sctp"], "-k, --broker and --chat are not supported yet over SCTP."),
        (["-l", "--client-labels"], "--client-labels works in -l -k only (not with --broker or --chat)."),
        (["-k", "--client-labels", "localhost"], "--client-labels works in -l -k only (not with --broker or --chat)."),
        (["--broker", "-k", "--client-labels"], "--client-labels works in -l -k only (not with --broker or --chat)."),
        (["-l", "-k", "-e", "/bin/cat", "--client-labels"], "Invalid option combination: --client-labels and -e."),
        (["--broker", "--full-lines"], "--full-lines works with --chat only."),
        (["-l", "-k", "--host-sees-room"], "--host-sees-room works with --broker or --chat only."),
        (["--chat", "localhost"], "Invalid option combination: `--chat' with connect."),
        (["--chat"], "You must specify a host to connect to."),
        (["-l", "-m", "x"], "Invalid number of maximum connections: x"),
    ],
)
def test_invalid_combinations(argv: list[str], expected: str) -> None:
    assert message(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["-l", "-k", "-C", "-t", "-o", "log", "-x", "hex", "-i", "1", "-d", "1", "-q", "2", "--send-only"],
        ["--broker", "--recv-only", "-i", "1", "-q", "-1", "-w", "3"],
        ["-l", "--chat", "-C", "-t", "-o", "log", "-d", "500ms", "-q", "0"],
    ],
)
def test_every_per_connection_option_works_with_many_clients(argv: list[str]) -> None:
    assert parse_args(argv).listen is True


def test_the_options_of_our_own() -> None:
    assert parse_args(["-l", "-k", "--client-labels"]).client_labels is True
    config = parse_args(["-l", "--chat", "--full-lines", "--host-sees-room"])
    assert (config.chat_lines, config.host_sees_room) == (True, True)
    assert parse_args(["--broker", "--ho"]).host_sees_room is True  # abbreviations work
    assert parse_args(["-l", "-w", "2"]).accept_timeout == 2.0
    assert parse_args(["-w", "2", "localhost"]).accept_timeout is None  # connect mode: the connect timeout


def _resolve(argv: list[str], long_options: list[str]) -> str:
    """What getopt makes of ``argv`` with ``long_options``: the option's name or the error."""
    try:
        options = gnu_getopt(argv, SHORT_OPTIONS, long_options, identity=LONG_IDENTITY, extensions=ENCHUFE_NAMES)
        return " ".join(name for name, _ in options)
    except GetoptError as exc:
        return f"error: {exc}"


def test_every_abbreviation_of_an_ncat_option_means_what_it_meant_before_our_options() -> None:
    """Our options come after ncat's and an abbreviation ncat's table resolves does not
    reach them (``--w`` is ``--wait``, not ambiguous with ``--workers``): it resolves to
    the same option as with ncat's table alone, and one that is ambiguous there is
    ambiguous here, our names at the end of the list."""
    assert LONG_OPTIONS[: len(NCAT_LONG_OPTIONS)] == NCAT_LONG_OPTIONS
    for option in NCAT_LONG_OPTIONS:
        name = option.rstrip("=")
        for length in range(1, len(name) + 1):
            argv = [f"--{name[:length]}=x" if option.endswith("=") else f"--{name[:length]}"]
            before, after = _resolve(argv, NCAT_LONG_OPTIONS), _resolve(argv, LONG_OPTIONS)
            if before.startswith("error: ") and "ambiguous" in before:
                assert after.startswith(before), (argv, before, after)
                ours = after[len(before) :].split()
                assert all(word.strip("'").removeprefix("--") in ENCHUFE_NAMES for word in ours), after
            else:
                assert after == before, (argv, before, after)
    # and an abbreviation that means none of ncat's reaches ours
    assert _resolve(["--py=h.py"], LONG_OPTIONS) == "--py-exec"
    assert _resolve(["--proxy-p=h"], LONG_OPTIONS) == "--proxy-protocol"
    assert _resolve(["--wo=2"], LONG_OPTIONS) == "--workers"


def test_keep_open_in_tcp_connect_mode() -> None:
    assert parse_args(["-k", "localhost"]).keep_open is True


def test_max_conns_in_listen_mode() -> None:
    assert parse_args(["-l", "-m", "3"]).max_conns == 3
    assert parse_args(["-l", "--max-conns", "0"]).max_conns == 0


@pytest.mark.parametrize("engine", ["epoll", "poll", "select"])
def test_nsock_engine_is_accepted(engine: str) -> None:
    assert parse_args(["--nsock-engine", engine, "localhost"]).nsock_engine == engine


@pytest.mark.parametrize(
    ("options", "family"),
    [
        ([], socket.AF_UNSPEC),
        (["-4"], socket.AF_INET),
        (["-6"], socket.AF_INET6),
        (["-4", "-6"], socket.AF_INET6),
        (["-6", "-4"], socket.AF_INET),
        (["-46"], socket.AF_INET6),
        (["-64"], socket.AF_INET),
        pytest.param(["-4", "-6", "-4"], socket.AF_INET),
        pytest.param(["-6", "-4", "-6"], socket.AF_INET6),
    ],
)
def test_address_family_last_wins(options: list[str], family: int) -> None:
    assert parse_args([*options, "localhost"]).family == family


@pytest.mark.parametrize(
    ("options", "transport"),
    [
        ([], "stream"),
        (["-u"], "datagram"),
        (["--udp"], "datagram"),
        (["--sctp"], "sctp"),
        (["-u", "--sctp"], "sctp"),
        (["--sctp", "-u"], "datagram"),
        pytest.param(["-u", "--sctp", "-u"], "datagram"),
    ],
)
def test_transport_last_wins(options: list[str], transport: str) -> None:
    assert parse_args([*options, "localhost"]).transport == transport


# --- options not implemented ---------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(NOT_YET))
def test_not_yet_options_are_refused(option: str) -> None:
    argv = [option, "x"] if takes_value(option) else [option]
    error = usage_error([*argv, "localhost"])
    assert str(error) == f"{option} is not supported yet."
    assert error.getopt_message is False


def test_every_not_yet_option_is_in_the_table() -> None:
    for option in NOT_YET:
        if option.startswith("--"):
            assert option[2:] in LONG_OPTIONS or option[2:] + "=" in LONG_OPTIONS
        else:
            assert len(option) == 2
            assert option[1] in SHORT_OPTIONS


def test_long_aliases_of_the_exec_options() -> None:
    assert parse_args(["--exec", "/bin/echo a\\ b c", "localhost"]).exec_argv == ("/bin/echo", "a b", "c")
    assert parse_args(["--sh-exec", "echo $HOME", "localhost"]).exec_argv == ("/bin/sh", "-c", "echo $HOME")


@pytest.mark.parametrize(
    "argv", [["--lua-exec", "x", "localhost"], ["--lua", "x", "localhost"], ["--lua-exec=x", "localhost"]]
)
def test_lua_exec_loads_its_script_while_parsing(argv: list[str]) -> None:
    pytest.importorskip("lupa")
    assert message(argv) == "Error loading the Lua script: cannot open x: No such file or directory."


# --- -h and --version act when they are read, as in ncat -------------------------------------


def test_help_before_a_bad_option_shows_help() -> None:
    assert parse_args(["-h", "--baffle"]).show_help


def test_bad_time_before_help_is_an_error() -> None:
    assert message(["-w", "0", "-h"]) == _range_message("-w timeout", "0")


# --- anything in, a Config or a UsageError out ------------------------------------------------

_OPTION_NAMES = [f"-{letter}" for letter in SHORT_OPTIONS.replace(":", "")] + [
    "--" + name.rstrip("=") for name in LONG_OPTIONS
]
_VALUES = st.sampled_from(
    ["0", "1", "-1", "80", "70000", "200", "5s", "500ms", "1.5m", "1h", "localhost", "::1", "/tmp/x"]
)
_ARGUMENT = st.one_of(st.sampled_from(_OPTION_NAMES), _VALUES, st.text(max_size=8))


@given(st.lists(_ARGUMENT, max_size=8))
def test_parse_args_returns_a_config_or_raises_usage_error(argv: list[str]) -> None:
    try:
        config = parse_args(argv)
    except UsageError as error:
        assert str(error)
        return
    assert isinstance(config, Config)
    if not (config.show_help or config.show_version):
        assert config.listen or config.host is not None
        assert 0 <= config.port <= 65535


# --- loose source routing (-g, -G) -----------------------------------------------------------


def test_source_route_hops_accumulate_over_several_g() -> None:
    config = parse_args(["-4", "-g", "10.0.0.1,10.0.0.2", "-g", "10.0.0.3", "-G", "8", "localhost"])
    assert config.source_route == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert config.source_route_pointer == 8


def test_source_route_defaults() -> None:
    config = parse_args(["localhost"])
    assert config.source_route == ()
    assert config.source_route_pointer == 4


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-g", "10.0.0.1", "localhost"], "Sorry, -g can only currently be used with IPv4."),
        (["-6", "-g", "10.0.0.1", "localhost"], "Sorry, -g can only currently be used with IPv4."),
        (["-4", "-g", ",".join(["10.0.0.1"] * 9), "localhost"], "Sorry, you gave too many source route hops."),
        (
            ["-4", "-g", "10.0.0.1,10.0.0.2", "-g", ",".join(["10.0.0.3"] * 7), "x"],
            "Sorry, you gave too many source route hops.",
        ),
        (["-G", "5", "localhost"], "Invalid source-route hop pointer 5."),
        (["-G", "32", "localhost"], "Invalid source-route hop pointer 32."),
        (["-G", "x", "localhost"], "Invalid source-route hop pointer 0."),
    ],
)
def test_source_route_errors(argv: list[str], expected: str) -> None:
    assert message(argv) == expected


def test_source_route_is_ignored_in_listen_mode() -> None:
    assert parse_args(["-l", "-g", "10.0.0.1"]).source_route == ()


# --- glibc's rules for abbreviations of equivalent options, and POSIXLY_CORRECT -------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # Options that share getopt's value 0 are "the same" to glibc: it takes the first.
        (["--pro", "x", "-l"], "Invalid option combination: --proxy and -l."),
        (["--ssl-c", "x", "localhost"], "The --ssl-key and --ssl-cert options must be used together."),
        # Different letters or argument types stay ambiguous (checked against ncat 7.93).
        (["--te"], "option '--te' is ambiguous; possibilities: '--telnet' '--test'"),
        (["--ver"], "option '--ver' is ambiguous; possibilities: '--version' '--verbose'"),
    ],
)
def test_abbreviations_follow_glibc(argv: list[str], expected: str) -> None:
    assert message(argv) == expected


def test_an_abbreviation_of_equivalent_options_is_the_first() -> None:
    # --den could be --deny or --denyfile; glibc takes the first in ncat's table.
    assert parse_args(["--den=1.2.3.4", "-l"]).access == (("deny", "1.2.3.4"),)


def test_access_lists_keep_their_order_and_are_listen_only() -> None:
    config = parse_args(["-l", "--allow", "10.0.0.0/8", "--denyfile", "f", "--deny", "10.1.1.1"])
    assert config.access == (("allow", "10.0.0.0/8"), ("denyfile", "f"), ("deny", "10.1.1.1"))
    assert message(["--allow", "127.0.0.1", "localhost"]) == "Invalid option combination: allow/deny with connect."
    assert message(["-l", "--sctp", "--deny", "127.0.0.1"]) == "--allow and --deny are not supported yet over SCTP."
    assert parse_args(["-l", "-u", "--deny", "127.0.0.1"]).access == (("deny", "127.0.0.1"),)


def test_long_spellings_of_short_only_options() -> None:
    config = parse_args(["--4", "--g", "10.0.0.1", "--G", "4", "localhost"])
    assert (config.family, config.source_route) == (socket.AF_INET, ("10.0.0.1",))


def test_posixly_correct_stops_at_the_first_operand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    assert message(["127.0.0.1", "40999", "-v"]) == "Got more than one port specification: 40999 -v."
    assert parse_args(["-v", "127.0.0.1", "40999"]).verbosity == 1


# --- --ssl* ----------------------------------------------------------------------------------


def test_every_ssl_option_implies_ssl_and_a_trustfile_implies_verify() -> None:
    assert not parse_args(["localhost"]).ssl
    for option in (
        ["--ssl"],
        ["--ssl-verify"],
        ["--ssl-ciphers", "HIGH"],
        ["--ssl-servername", "a"],
        ["--ssl-alpn", "h2"],
    ):
        assert parse_args([*option, "localhost"]).ssl, option
    config = parse_args(["--ssl-trustfile", "ca.pem", "localhost"])
    assert config.ssl and config.ssl_verify and config.ssl_trustfile == "ca.pem"
    assert not parse_args(["--ssl", "localhost"]).ssl_verify


def test_ssl_values_are_kept() -> None:
    config = parse_args(
        ["-l", "--ssl-cert", "c.pem", "--ssl-key", "k.pem", "--ssl-ciphers", "HIGH", "--ssl-alpn", "h2,,http/1.1", "0"]
    )
    assert (config.ssl_cert, config.ssl_key, config.ssl_ciphers) == ("c.pem", "k.pem", "HIGH")
    assert config.ssl_alpn == ("h2", "http/1.1")
