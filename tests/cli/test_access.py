"""``--allow``/``--deny``/``--allowfile``/``--denyfile`` in listen mode, end to end.

Clients come from different loopback addresses (all of 127.0.0.0/8 is loopback on
Linux) by binding their source before connecting. Names are never looked up: specs
are literals, and the bad-spec cases run with ``-n``.
"""

from __future__ import annotations

import os
import signal

from support.cli_e2e import assert_clean_stderr, connect, recv_exactly
from support.procs import enchufe, run_enchufe


def test_a_denied_client_does_not_use_up_a_single_shot_listener() -> None:
    with enchufe("-l", "-v", "--allow", "127.0.0.2", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port, source="127.0.0.1") as denied:
            cmd.wait_for_line(r"^enchufe: New connection denied: not allowed$")
            assert denied.recv(10) == b""  # closed: nothing got through
        with connect(port, source="127.0.0.2") as allowed:
            cmd.wait_for_line(r"^enchufe: Connection from 127\.0\.0\.2:\d+\.$")
            allowed.sendall(b"let in\n")
            assert cmd.read_stdout(7) == b"let in\n"
        assert cmd.wait() == 0
    assert_clean_stderr(cmd.stderr)


def test_deny_wins_over_allow_and_lists_accumulate_in_keep_open_mode(sock_dir: str) -> None:
    allowfile = os.path.join(sock_dir, "allowed")
    with open(allowfile, "w") as file:
        file.write("127.0.0.2\n\t127.0.0.3  127.0.0.4\n")
    args = ["-l", "-k", "-v", "--allowfile", allowfile, "--allow", "127.0.0.5", "--deny", "127.0.0.3,127.0.0.9"]
    with enchufe(*args, "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        for source, admitted in [
            ("127.0.0.2", True),
            ("127.0.0.3", False),  # allowed by the file, denied on the command line: denied
            ("127.0.0.4", True),
            ("127.0.0.5", True),
            ("127.0.0.6", False),  # in no allow list
        ]:
            with connect(port, source=source) as client:
                if admitted:
                    cmd.wait_for_line(rf"Connection from {source.replace('.', '[.]')}:")
                    cmd.write(b"!")
                    assert recv_exactly(client, 1) == b"!"
                else:
                    cmd.wait_for_line(r"New connection denied: not allowed")
                    assert client.recv(10) == b""
        cmd.popen.send_signal(signal.SIGTERM)
        assert cmd.wait() == 128 + signal.SIGTERM
    assert_clean_stderr(cmd.stderr)


def test_bad_specs_and_files_are_ncats_two_lines_and_status_2(sock_dir: str) -> None:
    result = run_enchufe("-l", "-n", "--allow", "1.2.3.4/33", "127.0.0.1", "0")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        'enchufe: Illegal netmask in "1.2.3.4/33". Must be smaller than address bit length.',
        'enchufe: error in host specification "1.2.3.4/33". QUITTING.',
    ]
    missing = os.path.join(sock_dir, "missing")
    result = run_enchufe("-l", "--denyfile", missing, "127.0.0.1", "0")
    assert result.returncode == 2
    assert result.stderr.decode() == f"enchufe: can't open {missing}: No such file or directory. QUITTING.\n"
    result = run_enchufe("--allow", "127.0.0.1", "127.0.0.1", "9")
    assert result.returncode == 2
    assert result.stderr.decode() == "enchufe: Invalid option combination: allow/deny with connect. QUITTING.\n"
