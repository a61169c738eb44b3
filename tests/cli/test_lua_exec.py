"""``--lua-exec``: a Lua script per connection, its standard input and output the
connection, as ncat's. The cases of ncat's own suite (listen and connect mode, -k,
a script that echoes, one that reads lines, one reading NCAT_* with os.getenv, one
that ends at once), and how it fails."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from support.cli_e2e import (
    TcpServer,
    assert_clean_stderr,
    connect,
    readable_within,
    recv_exactly,
    recv_until_eof,
    stop_listener,
    two_clients_and_a_third_refused,
)
from support.lua import write_script
from support.procs import enchufe, run, run_enchufe

pytest.importorskip("lupa", reason="--lua-exec needs lupa: pip install -e '.[dev,lua]'")


def test_listen_mode_the_script_talks_to_the_client(tmp_path: Path) -> None:
    """ncat's "--lua-exec server": what the client sends comes back in upper case, byte
    by byte, while the connection stays open."""
    with enchufe("-l", "-v", "127.0.0.1", "0", "--lua-exec", write_script(tmp_path, "toupper")) as cmd:
        with connect(cmd.listening_port()) as client:
            client.sendall(b"abc\n")
            assert recv_exactly(client, 4) == b"ABC\n"
            client.sendall(b"def\n")
            assert recv_exactly(client, 4) == b"DEF\n"
            client.shutdown(socket.SHUT_WR)
            assert recv_until_eof(client) == b""
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_connect_mode_the_script_talks_to_the_server(tmp_path: Path) -> None:
    script = write_script(tmp_path, "lines")
    with TcpServer() as server, enchufe("127.0.0.1", str(server.port), "--lua-exec", script, stdin=b"") as cmd:
        with server.accept() as peer:
            peer.sendall(b"one\n")
            assert recv_exactly(peer, 10) == b"line: one\n"  # print flushes each line
            peer.sendall(b"two\n")
            peer.shutdown(socket.SHUT_WR)
            assert recv_until_eof(peer) == b"line: two\ndone\n"
        assert cmd.wait() == 0
    assert cmd.stdout == b""  # the script's output goes to the peer
    assert_clean_stderr(cmd.stderr)


def test_keep_open_runs_one_script_per_connection_capped_by_max_conns(tmp_path: Path) -> None:
    script = write_script(tmp_path, "toupper")
    with enchufe("-l", "-k", "-m", "2", "-v", "127.0.0.1", "0", "--lua-exec", script) as cmd:
        with two_clients_and_a_third_refused(cmd) as (a, b):
            a.sendall(b"from a")
            b.sendall(b"from b")
            assert (recv_exactly(a, 6), recv_exactly(b, 6)) == (b"FROM A", b"FROM B")
            b.close()
            a.sendall(b"!")
            assert recv_exactly(a, 1) == b"!"
        stop_listener(cmd)


def test_the_script_reads_ncats_environment_with_os_getenv(tmp_path: Path) -> None:
    with enchufe("-l", "-v", "127.0.0.1", "0", "--lua-exec", write_script(tmp_path, "environment")) as cmd:
        port = cmd.listening_port()
        with connect(port) as client:
            expected = (
                f"NCAT_REMOTE_ADDR=127.0.0.1\nNCAT_REMOTE_PORT={client.getsockname()[1]}\n"
                f"NCAT_LOCAL_ADDR=127.0.0.1\nNCAT_LOCAL_PORT={port}\nNCAT_PROTO=TCP\n"
            )
            assert recv_until_eof(client).decode() == expected
        assert cmd.wait() == 0


@pytest.mark.parametrize(
    ("name", "output"), [("hello", b"hello\n"), ("unflushed", b"no newline, no flush")], ids=["print", "io.write"]
)
def test_a_script_that_ends_at_once_delivers_its_output_and_ends_the_session(
    tmp_path: Path, name: str, output: bytes
) -> None:
    """What it wrote reaches the client even unflushed (the buffer is written at exit,
    as in ncat), although the client never sends or half-closes."""
    with enchufe("-l", "-v", "127.0.0.1", "0", "--lua-exec", write_script(tmp_path, name)) as cmd:
        with connect(cmd.listening_port()) as client:
            assert recv_until_eof(client) == output
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_io_write_is_buffered_until_the_script_ends_even_with_pythonunbuffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in ncat's child: C's full buffering on a pipe. PYTHONUNBUFFERED, which would
    unbuffer the runner's C stdio, changes nothing."""
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    with enchufe("-l", "-v", "127.0.0.1", "0", "--lua-exec", write_script(tmp_path, "buffered")) as cmd:
        with connect(cmd.listening_port()) as client:
            cmd.wait_for_line("Connection from")
            assert not readable_within(client)
            client.sendall(b"the line\n")
            assert recv_until_eof(client) == b"written first, sent at exit: the line\n"
        assert cmd.wait() == 0


def test_a_script_error_is_ncats_line_and_the_server_goes_on(tmp_path: Path) -> None:
    script = write_script(tmp_path, "error")
    with enchufe("-l", "-k", "-v", "127.0.0.1", "0", "--lua-exec", script) as cmd:
        port = cmd.listening_port()
        for _ in range(2):
            with connect(port) as client:
                assert recv_until_eof(client) == b"before\n"
            cmd.wait_for_line(r"^enchufe: Error running the Lua script: .*error.lua:4: the script gave up$")
            cmd.wait_for_line(r"in main chunk\. QUITTING\.$")  # after Lua's traceback, as ncat
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)


def test_a_script_that_cannot_load_fails_before_listening(tmp_path: Path) -> None:
    broken = tmp_path / "broken.lua"
    broken.write_text("this is not lua(\n")
    missing = tmp_path / "missing.lua"
    # Lua shortens a long file name from the left ("...name.lua:1:"), as in ncat.
    for path, error in ((broken, "broken.lua:1: syntax error near 'is'"), (missing, "missing.lua: No such file")):
        result = run_enchufe("-l", "-v", "127.0.0.1", "0", "--lua-exec", str(path))
        assert result.returncode == 2
        [line] = result.stderr.decode().splitlines()  # no Listening line before it
        assert line.startswith("enchufe: Error loading the Lua script: ")
        assert line.endswith(f"{error} or directory. QUITTING." if path is missing else f"{error}. QUITTING.")


def test_without_lupa_the_option_says_how_to_get_it(tmp_path: Path) -> None:
    """Checked before listening; the command runs with lupa made unimportable."""
    without_lupa = "import sys; sys.modules['lupa'] = None; from enchufe.cli.main import main; sys.exit(main())"
    script = write_script(tmp_path, "hello")
    result = run([sys.executable, "-c", without_lupa, "-l", "-v", "127.0.0.1", "0", "--lua-exec", script])
    assert result.returncode == 2
    assert result.stderr == b"enchufe: --lua-exec needs the lupa package: pip install 'enchufe[lua]'. QUITTING.\n"
