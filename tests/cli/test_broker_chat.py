"""``--broker`` and ``--chat``: what one client says reaches the others, end to end."""

from __future__ import annotations

from support.cli_e2e import connect, quiet, read_announcement, recv_exactly, stop_listener
from support.procs import Process, enchufe


def stop(cmd: Process) -> None:
    stop_listener(cmd)
    assert cmd.stdout == b""  # the host's output receives nothing in either mode


def test_broker_passes_each_clients_bytes_to_the_others_only() -> None:
    with enchufe("--broker", "-v", "127.0.0.1", "0") as cmd:
        port = cmd.listening_port()
        with connect(port) as a, connect(port) as b, connect(port) as c:
            for _ in range(3):
                cmd.wait_for_line("Connection from")
            a.sendall(b"from a\n")
            assert recv_exactly(b, 7) == recv_exactly(c, 7) == b"from a\n"
            cmd.write(b"from the host\n")
            assert recv_exactly(a, 14) == recv_exactly(b, 14) == recv_exactly(c, 14) == b"from the host\n"
            assert quiet(a)  # a never hears itself
        stop(cmd)


def test_chat_announces_and_prefixes_each_read_as_ncat_does() -> None:
    with enchufe("-l", "--chat", "127.0.0.1", "0", "-v") as cmd:
        port = cmd.listening_port()
        with connect(port) as a:
            user_a, others = read_announcement(a)
            assert others == b"nobody"
            with connect(port) as b:
                user_b, others = read_announcement(b)
                assert others == f"127.0.0.1:{a.getsockname()[1]} as <user{user_a}>".encode()
                assert read_announcement(a, newcomer=b) == (user_b, others)  # everyone hears it
                a.sendall(b"hi\x07 there\n")
                expected = f"<user{user_a}> hi\\007 there\n".encode()
                assert recv_exactly(b, len(expected)) == expected
                cmd.write(b"host says\n")
                assert recv_exactly(a, 18) == recv_exactly(b, 18) == b"<user0> host says\n"
            leave = f"<announce> <user{user_b}> is disconnected.\n".encode()
            assert recv_exactly(a, len(leave)) == leave
        stop(cmd)
