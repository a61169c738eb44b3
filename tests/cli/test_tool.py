"""What the tools' commands share: result lines, JSON, progress only on a terminal, statuses."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import time

from enchufe.cli.tool import Report, run_tool
from enchufe.cli.usage import UsageError
from enchufe.errors import ConnectError, ResolveError


def test_results_are_text_lines_or_json_lines_never_both() -> None:
    out, err = io.StringIO(), io.StringIO()
    report = Report("enchufe-x", out=out, err=err)
    report.text("HEADER")
    report.result({"port": 22, "state": "open"}, "22 open")
    report.result({"hidden": True}, None)
    assert out.getvalue() == "HEADER\n22 open\n"
    out = io.StringIO()
    report = Report("enchufe-x", json=True, out=out, err=err)
    report.text("HEADER")
    report.result({"port": 22, "state": "open", "name": "ñ"}, "22 open")
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"port": 22, "state": "open", "name": "ñ"}]


def test_messages_carry_the_program_name_and_info_waits_for_v() -> None:
    err = io.StringIO()
    Report("enchufe-x", err=err).info("hidden")
    Report("enchufe-x", err=err, verbosity=1).info("shown")
    Report("enchufe-x", err=err).error("always")
    assert err.getvalue() == "enchufe-x: shown\nenchufe-x: always\n"


def read_exactly(fd: int, size: int, timeout: float = 5.0) -> bytes:
    """Read `size` bytes from a pty: the kernel hands written bytes to the reader in pieces, not at once."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        data += os.read(fd, size - len(data))
    return data


def test_progress_goes_to_a_terminal_only() -> None:
    err = io.StringIO()
    report = Report("enchufe-x", out=io.StringIO(), err=err)
    report.progress("3/10")
    assert err.getvalue() == ""
    leader, follower = pty.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            report = Report("enchufe-x", out=io.StringIO(), err=terminal)
            report.progress("3/10")
            report.result({}, "a result")  # clears the progress line first
        assert read_exactly(leader, len(b"\r3/10\x1b[K\r\x1b[K")) == b"\r3/10\x1b[K\r\x1b[K"
    finally:
        os.close(leader)
        os.close(follower)


def test_failures_become_ncats_statuses_with_one_line() -> None:
    def failing(exc: BaseException) -> int:
        raise exc

    cases = [
        (UsageError("Invalid count."), 2, "enchufe-x: Invalid count. QUITTING.\n"),
        (ResolveError("nowhere.invalid: no address"), 2, "enchufe-x: nowhere.invalid: no address. QUITTING.\n"),
        (ConnectError("Connection refused"), 1, "enchufe-x: Connection refused.\n"),
        (PermissionError(1, "Operation not permitted"), 2, "enchufe-x: Operation not permitted. QUITTING.\n"),
        (KeyboardInterrupt(), 130, ""),
    ]  # fmt: skip
    for exc, expected_status, expected_line in cases:
        err = io.StringIO()
        assert run_tool("enchufe-x", lambda exc=exc: failing(exc), err=err) == expected_status
        assert err.getvalue() == expected_line
    assert run_tool("enchufe-x", lambda: 0) == 0
