"""The per-connection options in the many-client modes (``-l -k``, ``--broker``, ``--chat``).

Each option is checked end to end, with real clients, in each mode where it applies:
``-C``, ``-o``/``-x``, ``-t``, ``-d``, ``-q``, ``--send-only``, ``--recv-only``, ``-i``
(per connection), ``-w`` (an accept timeout), and enchufe's own ``--client-labels``,
``--full-lines`` and ``--host-sees-room``.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from support.cli_e2e import (
    STEP_TIMEOUT,
    assert_clean_stderr,
    connect,
    readable_within,
    recv_exactly,
    recv_until_eof,
    stop_listener,
)
from support.procs import Process, enchufe

#: The modes, as the options that start each one.
MODES = {"keep-open": ["-l", "-k"], "broker": ["--broker"], "chat": ["-l", "--chat"]}
ANNOUNCEMENT = re.compile(rb"<announce> [^\n]*\n<announce> already connected: [^\n]*\n")
IAC, DO, WILL, WONT, DONT = 255, 253, 251, 252, 254


def join(cmd: Process, mode: str, port: int) -> socket.socket:
    """A client that has joined: its -v line is out and, in chat, its announcement read."""
    client = connect(port)
    cmd.wait_for_line("Connection from")
    if mode == "chat":
        read_announcement(client)
    return client


def read_announcement(client: socket.socket) -> bytes:
    data = b""
    while not ANNOUNCEMENT.fullmatch(data):
        chunk = client.recv(1)
        assert chunk, data
        data += chunk
    return data


def recv_through(client: socket.socket, end: bytes) -> bytes:
    """Everything the client receives up to and including ``end``."""
    data = b""
    while not data.endswith(end):
        chunk = client.recv(1)
        assert chunk, data
        data += chunk
    return data


def recv_message(client: socket.socket, mode: str, text: bytes) -> bytes:
    """Receive exactly one message of ``text`` as ``mode`` frames it (chat: ``<userN> ``
    first; the number is the server's descriptor, not known here); return the prefix."""
    if mode != "chat":
        assert recv_exactly(client, len(text)) == text
        return b""
    data = recv_through(client, b"> " + text)
    assert re.fullmatch(rb"<user\d+> ", data[: -len(text)]), data
    return data[: -len(text)]


def read_stdout_through(cmd: Process, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        data += cmd.read_stdout(1)
    return data


def reset(client: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client that is killed mid-transfer."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


# --- -C: LF to CRLF on what stdin sends ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_crlf_translates_stdin_for_every_client(mode: str) -> None:
    with enchufe(*MODES[mode], "-C", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a, join(cmd, mode, port) as b:
            if mode == "chat":
                read_announcement(a)  # b's arrival
            cmd.write(b"one\ntwo\r\n")
            for client in (a, b):
                recv_message(client, mode, b"one\r\ntwo\r\n")
        stop_listener(cmd)


def test_crlf_keeps_a_pair_split_across_two_reads_of_stdin() -> None:
    with enchufe("-l", "-k", "-C", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as a:
            cmd.write(b"---\r")
            assert recv_exactly(a, 4) == b"---\r"
            cmd.write(b"\n")
            assert recv_exactly(a, 1) == b"\n"
            cmd.write(b"\n")
            assert recv_exactly(a, 2) == b"\r\n"
        stop_listener(cmd)


# --- -o / -x: both directions, in arrival order --------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_output_logs_what_every_client_and_stdin_sent_in_order(mode: str, tmp_path: Path) -> None:
    log, hex_log = tmp_path / "session.log", tmp_path / "session.hex"
    with enchufe(*MODES[mode], "-o", str(log), "-x", str(hex_log), "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a, join(cmd, mode, port) as b:
            if mode == "chat":
                read_announcement(a)
            cmd.write(b"host to all\n")
            recv_message(a, mode, b"host to all\n")
            recv_message(b, mode, b"host to all\n")
            a.sendall(b"from a\n")
            if mode == "keep-open":
                assert cmd.read_stdout(7) == b"from a\n"
            else:
                recv_message(b, mode, b"from a\n")
            b.sendall(b"from b\n")
            if mode == "keep-open":
                assert cmd.read_stdout(7) == b"from b\n"
            else:
                recv_message(a, mode, b"from b\n")
        stop_listener(cmd)
    # What each sent, as it came: the room's framing is not logged, only what was read.
    assert log.read_bytes() == b"host to all\nfrom a\nfrom b\n"
    dump = hex_log.read_text()
    assert dump.count("0000   ") == 3  # one dump per transmission, as ncat's -x
    assert "from.a" in dump and "host.to.all" in dump


def test_a_client_reset_mid_transfer_is_logged_and_the_server_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "session.log"
    with enchufe("-l", "-k", "-o", str(log), "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as steady:
            doomed = join(cmd, "keep-open", port)
            doomed.sendall(b"half a message")
            assert cmd.read_stdout(14) == b"half a message"
            reset(doomed)
            steady.sendall(b" and the rest")
            assert cmd.read_stdout(13) == b" and the rest"
            cmd.write(b"still serving")
            assert recv_exactly(steady, 13) == b"still serving"
        stop_listener(cmd)
    assert log.read_bytes() == b"half a message and the reststill serving"


@pytest.mark.parametrize("mode", MODES)
def test_a_log_that_cannot_be_written_ends_the_server_as_it_ends_a_single_session(mode: str) -> None:
    """-o on a full disk: a single session ends with one line and status 1; -k used
    to print a traceback for every chunk a client sent, and lose the chunk."""
    with enchufe(*MODES[mode], "-o", "/dev/full", "-v", "127.0.0.1", "0") as cmd:
        with join(cmd, mode, cmd.listening_port()) as client:
            client.sendall(b"nowhere to log\n")
            assert cmd.wait() == 1
    assert cmd.stderr_lines[-1] == "enchufe: No space left on device."
    assert_clean_stderr(cmd.stderr)


# --- -t: a Telnet responder per client -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_telnet_answers_each_client_alone_with_its_own_state(mode: str) -> None:
    with enchufe(*MODES[mode], "-t", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a, join(cmd, mode, port) as b:
            if mode == "chat":
                read_announcement(a)
            # a's IAC starts a sequence; b's DO 1 after it is not the rest of a's.
            a.sendall(bytes([IAC]))
            if mode == "keep-open":
                assert cmd.read_stdout(1) == bytes([IAC])
            b.sendall(bytes([DO, 1]))
            if mode == "keep-open":
                assert cmd.read_stdout(2) == bytes([DO, 1])
            a.sendall(bytes([DO, 1, IAC, WILL, 3]))
            assert bytes([IAC, WONT, 1, IAC, DONT, 3]) in recv_through(a, bytes([IAC, DONT, 3]))
            if mode == "keep-open":
                assert cmd.read_stdout(5) == bytes([DO, 1, IAC, WILL, 3])  # the bytes themselves pass
            cmd.write(b"x\n")
            to_b = recv_through(b, b"x\n")
            assert bytes([IAC, WONT]) not in to_b and bytes([IAC, DONT]) not in to_b  # b was never answered
        stop_listener(cmd)


# --- -d: each client waits on its own, the loop never sleeps -------------------------------


@pytest.mark.parametrize("mode", ["keep-open", "broker"])
def test_delay_holds_back_only_the_client_that_just_sent(mode: str) -> None:
    """With ``-d 1``, a's second chunk waits for its delay; b's, sent after it, does
    not: it comes out first. A loop that slept would hold both."""
    extra = ["--host-sees-room"] if mode == "broker" else []
    with enchufe(*MODES[mode], *extra, "-d", "1", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a, join(cmd, mode, port) as b:
            a.sendall(b"1")
            assert cmd.read_stdout(1) == b"1"
            a.sendall(b"2")
            b.sendall(b"3")
            assert cmd.read_stdout(2) == b"32"
        stop_listener(cmd)


def test_delay_paces_stdin_and_loses_nothing() -> None:
    with enchufe("-l", "-k", "-d", "100ms", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as a:
            for line in (b"a\n", b"b\n", b"c\n"):
                cmd.write(line)
            assert recv_exactly(a, 6) == b"a\nb\nc\n"
        stop_listener(cmd)


# --- -q, --send-only, --recv-only -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_quit_after_stdin_ends_exits_zero_once_clients_have_everything(mode: str) -> None:
    with enchufe(*MODES[mode], "-q", "500ms", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a:
            cmd.write(b"last words\n")
            cmd.close_stdin()
            recv_message(a, mode, b"last words\n")
            assert recv_until_eof(a) == b""  # half-closed at the end of stdin
            if mode == "keep-open":
                a.sendall(b"a reply in time\n")
            assert cmd.wait() == 0
    if mode == "keep-open":
        assert cmd.stdout == b"a reply in time\n"  # what a client sent is written out first


def test_quit_zero_ends_at_the_end_of_stdin() -> None:
    with enchufe("-l", "-k", "-q", "0", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as a:
            cmd.write(b"bye")
            cmd.close_stdin()
            assert recv_until_eof(a) == b"bye"
            assert cmd.wait() == 0


def test_a_negative_quit_delay_keeps_serving_after_stdin_ends() -> None:
    with enchufe("-l", "-k", "-q", "-1", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as a:
            cmd.close_stdin()
            assert recv_until_eof(a) == b""
        assert cmd.still_running_after()
        with join(cmd, "keep-open", port) as late:
            late.sendall(b"late")
            assert cmd.read_stdout(4) == b"late"
        stop_listener(cmd)


@pytest.mark.parametrize("mode", MODES)
def test_send_only_discards_what_clients_send_and_quits_at_the_end_of_stdin(mode: str) -> None:
    with enchufe(*MODES[mode], "--send-only", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a, join(cmd, mode, port) as b:
            a.sendall(b"nobody hears this\n")
            a.shutdown(socket.SHUT_WR)
            assert b"nobody" not in recv_until_eof(a)  # read, to see its end: a is closed
            cmd.write(b"to all\n")
            assert b"nobody" not in recv_through(b, b"to all\n")
            cmd.close_stdin()
            assert cmd.wait() == 0
    assert cmd.stdout == b""


@pytest.mark.parametrize("mode", MODES)
def test_recv_only_never_reads_stdin(mode: str) -> None:
    extra = ["--host-sees-room"] if mode != "keep-open" else []
    with enchufe(*MODES[mode], *extra, "--recv-only", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a:
            cmd.write(b"never sent\n")
            cmd.close_stdin()  # nor is its end: the client is not half-closed
            a.sendall(b"heard\n")
            assert read_stdout_through(cmd, b"heard\n").endswith(b"> heard\n" if mode == "chat" else b"heard\n")
            assert not readable_within(a)
        stop_listener(cmd)


# --- -i: per connection ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_idle_client_is_closed_alone_and_the_server_goes_on(mode: str) -> None:
    with enchufe(*MODES[mode], "-i", "500ms", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as silent:
            name = f"127.0.0.1:{silent.getsockname()[1]}"
            line = cmd.wait_for_line(r"Disconnected 127\.0\.0\.1:\d+: Idle timeout expired \(500 ms\)\.$")
            assert line.string == f"enchufe: Disconnected {name}: Idle timeout expired (500 ms)."
            assert recv_until_eof(silent) == b""
        with join(cmd, mode, port) as talker:  # the server is still there, and so is its stdin
            cmd.write(b"hello\n")
            recv_message(talker, mode, b"hello\n")
        stop_listener(cmd)


def test_traffic_keeps_a_client_from_the_idle_timeout() -> None:
    """Each exchange is within the timeout, their sum is not: only the quiet one goes."""
    with enchufe("-l", "-k", "-i", "1", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as busy, join(cmd, "keep-open", port) as quiet:
            quiet_name = f"127.0.0.1:{quiet.getsockname()[1]}"
            for _ in range(4):
                assert not readable_within(busy, 0.3)
                busy.sendall(b".")
                assert cmd.read_stdout(1) == b"."
            line = cmd.wait_for_line("Idle timeout expired")
            assert quiet_name in line.string
            busy.sendall(b"!")
            assert cmd.read_stdout(1) == b"!"
        stop_listener(cmd)


def test_single_shot_listen_idle_timeout_ends_as_ncat_does() -> None:
    with enchufe("-l", "-i", "500ms", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port):
            assert cmd.wait() == 2
    assert cmd.stderr_lines[-1] == "enchufe: Idle timeout expired (500 ms). QUITTING."


# --- -w: an accept timeout in listen mode ----------------------------------------------------


@pytest.mark.parametrize("argv", [["-l"], ["-l", "-k"], ["--broker"], ["-l", "--chat"], ["-l", "-k", "-e", "/bin/cat"]])
def test_wait_in_listen_mode_ends_with_timeout_when_no_client_comes(argv: list[str]) -> None:
    with enchufe(*argv, "-w", "300ms", "127.0.0.1", "0") as cmd:
        assert cmd.wait() == 1
    assert cmd.stderr == "enchufe: TIMEOUT."


def test_wait_in_listen_mode_counts_only_until_the_first_client() -> None:
    with enchufe("-l", "-k", "-w", "500ms", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port):
            pass
        assert cmd.still_running_after(1.0)
        stop_listener(cmd)


def test_a_denied_client_does_not_stop_the_accept_timeout() -> None:
    with enchufe("-l", "-w", "500ms", "--deny", "127.0.0.1", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as denied:
            cmd.wait_for_line("New connection denied")
            assert denied.recv(1) == b""
        assert cmd.wait() == 1
    assert cmd.stderr_lines[-1] == "enchufe: TIMEOUT."


# --- --client-labels --------------------------------------------------------------------------


def test_client_labels_keep_each_clients_lines_whole() -> None:
    with enchufe("-l", "-k", "--client-labels", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "keep-open", port) as a, join(cmd, "keep-open", port) as b:
            label_a, label_b = (f"[127.0.0.1:{c.getsockname()[1]}] ".encode() for c in (a, b))
            a.sendall(b"hel")
            b.sendall(b"world\n")
            assert cmd.read_stdout(len(label_b) + 6) == label_b + b"world\n"
            a.sendall(b"lo\nand more\npart")
            expected = label_a + b"hello\n" + label_a + b"and more\n"
            assert cmd.read_stdout(len(expected)) == expected
            a.close()  # its unfinished line comes out at its end, ended
            assert cmd.read_stdout(len(label_a) + 5) == label_a + b"part\n"
            b.sendall(b"x" * 70000)  # over 64 KiB: a piece goes out
            assert cmd.read_stdout(len(label_b) + 65537) == label_b + b"x" * 65536 + b"\n"
        stop_listener(cmd)


def test_client_labels_name_unix_clients_by_number(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "labels.sock")
    with enchufe("-l", "-k", "--client-labels", "-v", "-U", path) as cmd:
        cmd.wait_for_line("Listening on")
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(STEP_TIMEOUT)
            client.connect(path)
            client.sendall(b"hi\n")
            assert re.fullmatch(rb"\[unix client \d+\] hi\n", cmd.read_stdout(len(b"[unix client 1] hi\n")))
        stop_listener(cmd)


# --- --full-lines (chat) and --host-sees-room (broker, chat) --------------------------------


def test_full_lines_prefix_every_line_and_escape_control_bytes() -> None:
    with enchufe("-l", "--chat", "--full-lines", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, "chat", port) as a, join(cmd, "chat", port) as b:
            read_announcement(a)
            a.sendall(b"one\ntw")
            prefix = recv_message(b, "chat", b"one\n")
            a.sendall(b"o\n\x1b[31mred\x07 \xff\\\n")
            expected = prefix + b"two\n" + prefix + b"\\033[31mred\\007 \\377\\\\\n"
            assert recv_exactly(b, len(expected)) == expected
            cmd.write(b"from the host\nand a part")
            assert recv_exactly(a, 22) == b"<user0> from the host\n"
            cmd.close_stdin()  # the host's unfinished line comes out at its end
            assert recv_exactly(b, 22 + 19) == b"<user0> from the host\n<user0> and a part\n"
        stop_listener(cmd)


@pytest.mark.parametrize("mode", ["broker", "chat"])
def test_host_sees_room_puts_what_the_room_delivers_on_stdout(mode: str) -> None:
    with enchufe(*MODES[mode], "--host-sees-room", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with join(cmd, mode, port) as a:  # alone in the room, it is still heard
            a.sendall(b"anyone?\n")
            seen = read_stdout_through(cmd, b"anyone?\n")
            if mode == "broker":
                assert seen == b"anyone?\n"
            else:
                joined = rb"<announce> 127\.0\.0\.1:\d+ is connected as <user(\d+)>\.\n"
                assert re.fullmatch(joined + rb"<announce> already connected: nobody\.\n<user\1> anyone\?\n", seen)
            cmd.write(b"the host\n")
            recv_message(a, mode, b"the host\n")  # the host's own words do not come back to it
        if mode == "chat":
            assert re.fullmatch(rb"<announce> <user\d+> is disconnected\.\n", read_stdout_through(cmd, b"ted.\n"))
        stop_listener(cmd)
    assert b"the host" not in cmd.stdout


# --- -l -k -e with the per-connection options --------------------------------------------------


def test_exec_per_connection_logs_every_session(tmp_path: Path) -> None:
    log = tmp_path / "exec.log"
    with enchufe("-l", "-k", "-e", "/bin/cat", "-C", "-o", str(log), "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        for text in (b"first\n", b"second\n"):
            with connect(port) as client:
                client.sendall(text)
                assert recv_exactly(client, len(text) + 1) == text.replace(b"\n", b"\r\n")
        stop_listener(cmd)
    assert log.read_bytes() == b"first\nfirst\r\nsecond\nsecond\r\n"


# --- ncat as the client ------------------------------------------------------------------------


@pytest.mark.interop
def test_ncat_clients_of_a_keep_open_listener_with_options(tmp_path: Path) -> None:
    log = tmp_path / "session.log"
    with enchufe("-l", "-k", "-C", "-o", str(log), "--client-labels", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        ncat = subprocess.Popen(
            ["ncat", "127.0.0.1", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            cmd.wait_for_line("Connection from")
            cmd.write(b"hello ncat\n")
            assert ncat.stdout is not None and ncat.stdin is not None
            assert ncat.stdout.read(12) == b"hello ncat\r\n"
            ncat.stdin.write(b"hello enchufe\n")
            ncat.stdin.close()
            line = cmd.read_stdout(len(b"[127.0.0.1:NNNNN] hello enchufe\n"))
            assert re.fullmatch(rb"\[127\.0\.0\.1:\d{5}\] hello enchufe\n", line)
            cmd.close_stdin()
            assert ncat.wait(STEP_TIMEOUT) == 0
        finally:
            ncat.kill()
            ncat.wait()
            for pipe in (ncat.stdin, ncat.stdout, ncat.stderr):
                if pipe is not None:
                    pipe.close()
        stop_listener(cmd)
    assert log.read_bytes() == b"hello ncat\r\nhello enchufe\n"


@pytest.mark.interop
def test_ncat_chats_through_full_lines() -> None:
    with enchufe("-l", "--chat", "--full-lines", "--host-sees-room", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        talker = subprocess.run(
            ["ncat", "127.0.0.1", str(port)], input=b"line one\nline two", capture_output=True, timeout=STEP_TIMEOUT
        )
        assert talker.returncode == 0
        seen = read_stdout_through(cmd, b"is disconnected.\n")
        assert re.search(rb"<user(\d+)> line one\n<user\1> line two\n<announce> <user\1> is disconnected\.\n$", seen)
        stop_listener(cmd)


# --- over UDP: every peer is a client ---------------------------------------------------------


def test_the_options_reach_udp_peers(tmp_path: Path) -> None:
    """-C, -o, -t, --client-labels and -q 0 over ``-u -l -k``: each works per peer."""
    log = tmp_path / "udp.log"
    argv = ["-u", "-l", "-k", "-C", "-t", "-o", str(log), "--client-labels", "-q", "0", "-v", "127.0.0.1", "0"]
    with enchufe(*argv) as cmd, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(STEP_TIMEOUT)
        peer.bind(("127.0.0.1", 0))
        server = ("127.0.0.1", cmd.listening_port())
        label = f"[127.0.0.1:{peer.getsockname()[1]}] ".encode()
        peer.sendto(b"half ", server)
        peer.sendto(bytes([IAC, DO, 1]) + b"line\n", server)
        assert peer.recv(100) == bytes([IAC, WONT, 1])  # the answer goes to that peer
        assert cmd.read_stdout(len(label) + 13) == label + b"half \xff\xfd\x01line\n"
        cmd.write(b"to peers\n")
        assert peer.recv(100) == b"to peers\r\n"
        cmd.close_stdin()
        assert cmd.wait() == 0
    assert log.read_bytes() == b"half \xff\xfd\x01line\nto peers\r\n"
