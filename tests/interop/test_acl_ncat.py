"""enchufe.acl decides as the real ncat 7.93 does, and fails with its words.

Each case starts ``ncat -n -k -l 127.0.0.1 PORT -e "/bin/echo A"`` with the same
``--allow``/``--deny`` options, and connects from loopback sources (all of 127/8 is
loopback on Linux): a permitted client reads ``A`` then end of file, a refused one end
of file (or a reset) at once, so no verdict waits on a timeout. Only loopback is used,
and ``-n`` keeps ncat from looking up any name.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import requires_ipv6
from enchufe.acl import AccessList
from enchufe.errors import AddressError
from support.interop import NCAT_LISTENING, start
from support.procs import free_port

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("ncat") is None, reason="ncat is not installed"),
]

SOURCES = [f"127.0.0.{n}" for n in range(1, 9)] + ["127.1.0.1", "127.3.0.1"]


def ncat_verdicts(options: list[str], sources: list[str], host: str = "127.0.0.1") -> dict[str, bool]:
    """Whether ncat, listening with ``options``, lets each source in."""
    port = free_port(host)
    argv = ["ncat", "-n", "-v", "-k", "-l", host, str(port), "-e", "/bin/echo A", *options]
    with start(argv) as ncat:
        ncat.wait_for_line(NCAT_LISTENING)
        return {source: _let_in(source, host, port) for source in sources}


def _let_in(source: str, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as client:
        client.settimeout(10)
        client.bind((source, 0))
        client.connect((host, port))
        received = b""
        try:
            while chunk := client.recv(64):
                received += chunk
        except ConnectionResetError:
            pass
    assert received in (b"", b"A\n")
    return received == b"A\n"


def enchufe_verdicts(options: list[str], sources: list[str], files: dict[str, str]) -> dict[str, bool]:
    acl = AccessList()
    for option, value in zip(options[::2], options[1::2], strict=True):
        if option in ("--allow", "--deny"):
            getattr(acl, option[2:])(value)
        else:
            getattr(acl, f"{option[2:-4]}_file")(files[value], value)
    return {source: acl.permits(source) for source in sources}


CASES = [
    ["--allow", "127.0.0.2"],
    ["--deny", "127.0.0.2"],
    ["--allow", "127.0.0.2", "--deny", "127.0.0.0/24"],
    ["--deny", "127.0.0.0/24", "--allow", "127.0.0.2"],
    # no address twice in the allow list: ncat 7.93 then spins at start-up, never listening
    ["--allow", "127.0.0.3,127.0.0.4", "--deny", "127.0.0.3", "--allowfile", "hosts"],
    ["--allow", "127.0.0.1,3,5"],
    ["--allow", "127.0-1.0.1"],
    ["--allow", "127.*.0.1"],
    ["--allow", "127.0.0.-3,127.0.0.7-"],
    ["--allow", "127.0.0.5/30"],
    ["--allow", "127.0.0.3-4/31"],
    ["--allow", "127.0.0.*/16"],
    ["--allow", "127.1"],
    ["--allow", "127.0.0.010"],
    ["--allow", "127.0.0.08"],
    ["--allow", "::ffff:127.0.0.0/125"],
    ["--allow", "::/80"],
    ["--allow", "::/96"],
    ["--allow", ""],
    ["--deny", ""],
    ["--allowfile", "octets"],
    ["--allowfile", "empty"],
    ["--allowfile", "hosts", "--denyfile", "hosts"],
]
FILES = {"hosts": "127.0.0.1\n\n  127.0.0.2\n", "octets": "127.0.0.1,3\t127.0.0.5\v127.3.0.1\r\n", "empty": ""}


@pytest.mark.parametrize("options", CASES, ids=[" ".join(c) for c in CASES])
def test_same_verdicts_as_ncat(options: list[str], tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    in_tmp = [str(tmp_path / value) if value in FILES else value for value in options]
    by_path = {str(tmp_path / name): text for name, text in FILES.items()}
    assert enchufe_verdicts(in_tmp, SOURCES, by_path) == ncat_verdicts(in_tmp, SOURCES)


@requires_ipv6
@pytest.mark.parametrize("spec", ["::1", "::2", "::/127", "::2/126", "0:0::1/128", "127.0.0.1", "0.0.0.0/0"])
def test_same_verdicts_as_ncat_for_ipv6(spec: str) -> None:
    acl = AccessList()
    acl.allow(spec)
    assert ncat_verdicts(["--allow", spec], ["::1"], host="::1") == {"::1": acl.permits("::1")}


ERRORS = [
    ["--allow", "300.1.1.1"],
    ["--allow", "1.2.3.4/33"],
    ["--deny", "::1/129"],
    ["--allow", "127.0.0.*/33"],
    ["--allow", "1.2.3.4/+8"],
    ["--allow", "1.2.3.4/"],
    ["--allow", "/24"],
    ["--allow", "127.0.0.1, 127.0.0.2"],
    ["--deny", "10.0.0.1,10.0.0.2,10.0.0.2-1"],
    ["--allow", "::1%lo"],
    ["--allowfile", "comment"],
    ["--denyfile", "long"],
]
ERROR_FILES = {"comment": "127.0.0.2 # trailing\n", "long": "1" * 1024}


@pytest.mark.parametrize("options", ERRORS, ids=[" ".join(c) for c in ERRORS])
def test_same_messages_as_ncat(options: list[str], tmp_path: Path) -> None:
    for name, text in ERROR_FILES.items():
        (tmp_path / name).write_text(text)
    ncat = subprocess.run(
        ["ncat", "-n", *options, "-l", "127.0.0.1", "0"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert ncat.returncode == 2
    with pytest.raises(AddressError) as caught:
        enchufe_verdicts(options, [], ERROR_FILES)
    assert ncat.stderr.splitlines() == [f"Ncat: {caught.value.__cause__}", f"Ncat: {caught.value}. QUITTING."]
