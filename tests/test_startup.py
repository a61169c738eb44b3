"""Start-up cost: what the command imports is pinned, so a slow import cannot creep in.

The interpreter runs without site (``-S``), so that nothing a .pth file imports hides
what enchufe itself pulls in. Timings live in benchmarks/, not here.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"
HEAVY = ["dataclasses", "inspect", "typing", "re", "enum", "socket", "threading", "encodings.idna"]
#: Only --ssl pays for TLS (ssl alone costs about 10 ms).
TLS = ["ssl", "enchufe.net.tls"]


def modules_loaded_by(argv: list[str], command: str = "enchufe.cli.main") -> set[str]:
    """The modules of HEAVY and TLS that ``command``'s ``main(argv)`` loads (a tool's
    command is another module of enchufe.cli)."""
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from {command} import main; "
        f"status = main({argv!r}); loaded = sorted(m for m in {HEAVY + TLS!r} if m in sys.modules); "
        "print(file=sys.stderr); print(status, *loaded, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    status, *loaded = result.stderr.splitlines()[-1].split()  # stdout: closed by a relay
    assert status in {"0", "1"}, result
    return set(loaded)


def test_version_imports_nothing_heavy() -> None:
    assert modules_loaded_by(["--version"]) == set()


def test_help_imports_nothing_heavy() -> None:
    assert modules_loaded_by(["-h"]) == set()


def test_a_refused_connect_imports_only_what_a_socket_needs() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    assert modules_loaded_by(["127.0.0.1", str(port)]) == {"enum", "socket", "threading"}


@contextmanager
def closing_listener() -> Iterator[int]:
    """A local listener that accepts one connection and closes it at once; its port."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)

        def accept_and_close() -> None:
            conn, _ = listener.accept()
            conn.close()

        thread = threading.Thread(target=accept_and_close, name="closing-listener")
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            thread.join()


def test_a_plain_connect_does_not_import_tls() -> None:
    with closing_listener() as port:
        assert modules_loaded_by(["127.0.0.1", str(port)]) == {"enum", "socket", "threading"}


def test_ssl_imports_tls() -> None:
    with closing_listener() as port:  # the handshake fails: what it imported is the point
        assert set(TLS) <= modules_loaded_by(["--ssl", "127.0.0.1", str(port)])


def test_many_clients_without_tls_import_no_ssl() -> None:
    """-l -k, --broker and --chat reach the event loop, the hub and their transports
    (and end at once here: no client within -w); TLS's modules wait for --ssl."""
    for mode in (["-l", "-k"], ["--broker"], ["-l", "--chat"]):
        assert "ssl" not in modules_loaded_by([*mode, "-w", "1ms", "127.0.0.1", "0"]), mode


def modules_loaded_by_tool(tool: str, argv: list[str]) -> set[str]:
    """What ``enchufe-TOOL ARGV`` imports of the heavy modules (see :func:`modules_loaded_by`)."""
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from enchufe.cli.{tool} import main; "
        f"status = main({argv!r}); loaded = sorted(m for m in {HEAVY + TLS!r} if m in sys.modules); "
        "print(file=sys.stderr); print(status, *loaded, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=False)
    status, *loaded = result.stderr.splitlines()[-1].split()
    assert status == "0", result
    return set(loaded)


def test_ping_help_and_version_import_nothing_heavy() -> None:
    assert modules_loaded_by_tool("ping", ["--version"]) == set()
    assert modules_loaded_by_tool("ping", ["-h"]) == set()
