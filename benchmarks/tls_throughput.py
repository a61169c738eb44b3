#!/usr/bin/env python3
"""Bulk TLS throughput over loopback: enchufe against ncat --ssl and socat OPENSSL.

Run from the repository root::

    python3 benchmarks/tls_throughput.py                  # 1 GiB, 3 timed runs per case
    python3 benchmarks/tls_throughput.py --size 64M -r 1  # a quick smoke run
    python3 benchmarks/tls_throughput.py --suite TLS_CHACHA20_POLY1305_SHA256

The cases are throughput.py's ``send`` (the client sends its stdin, a file; the
listener writes to /dev/null) and ``receive`` (the other way round), measured the same
way (its ``transfer``: wall time from the client's start to the end of both processes,
a check run per case that counts and hashes what arrived, the median of ``--repeat``
runs round-robin), with TLS on both ends of every case: the listener presents an EC
P-256 certificate made here with ``openssl req``, the client verifies nothing.

One cipher for all: none of the three tools can choose a TLS 1.3 suite on its command
line (``--ssl-ciphers`` and socat's ``cipher=`` are TLS 1.2 lists; Python's ``ssl`` has
no call for it either), so every process runs under an ``OPENSSL_CONF`` file whose
system defaults allow TLS 1.3 with the one suite ``--suite`` names. What each tool
really negotiates is checked, not assumed: each tool's listener is probed with
``openssl s_client`` and each client with ``openssl s_server``, both under the
machine's own configuration (all suites offered), and the report shows what came out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from throughput import (
    Case,
    ensure_data_file,
    free_port,
    measure,
    parse_args,
    record,
    report,
    select_cases,
    wait_listening,
)

SUITE = "TLS_AES_128_GCM_SHA256"
TOOLS = "enchufe,ncat,socat,socat -u"


def make_certificate(directory: Path) -> tuple[str, str, str]:
    """An EC P-256 key and a self-signed certificate for 127.0.0.1: (cert, key, both)."""
    cert, key, both = (str(directory / name) for name in ("cert.pem", "key.pem", "both.pem"))
    ec_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key)
    names = ("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    argv = ["openssl", "req", "-x509", *ec_key, "-out", cert, "-days", "2", *names]
    subprocess.run(argv, check=True, capture_output=True)
    Path(both).write_text(Path(key).read_text() + Path(cert).read_text())
    return cert, key, both


def write_openssl_conf(path: Path, suite: str) -> None:
    """An OpenSSL configuration whose system defaults allow TLS 1.3 and ``suite`` alone."""
    path.write_text(
        "openssl_conf = benchmark_init\n"
        "[benchmark_init]\nssl_conf = benchmark_ssl\n"
        "[benchmark_ssl]\nsystem_default = benchmark_defaults\n"
        f"[benchmark_defaults]\nMinProtocol = TLSv1.3\nCiphersuites = {suite}\n"
    )


def build_cases(enchufe: str, cert: str, key: str, both: str) -> list[Case]:
    tls_listen = ("--ssl-cert", cert, "--ssl-key", key)
    # enchufe's client says what is wrong with a certificate it does not verify, even
    # without -v (ncat only with -v): verified against the benchmark's own, it says nothing.
    enchufe_client = (enchufe, "--ssl", "--ssl-verify", "--ssl-trustfile", cert)
    socat_listen = f"OPENSSL-LISTEN:{{port}},reuseaddr,bind=127.0.0.1,cert={both},verify=0"
    socat_connect = "OPENSSL:127.0.0.1:{port},verify=0"
    unidirectional = "unidirectional: no 0.5 s close timeout"
    cases = [
        Case(
            "send",
            "enchufe",
            (enchufe, "-l", *tls_listen, "127.0.0.1", "{port}"),
            (*enchufe_client, "127.0.0.1", "{port}"),
        ),
        Case(
            "send", "ncat", ("ncat", "-l", *tls_listen, "127.0.0.1", "{port}"), ("ncat", "--ssl", "127.0.0.1", "{port}")
        ),
        Case("send", "socat", ("socat", socat_listen, "-"), ("socat", "-", socat_connect)),
        Case(
            "send", "socat -u", ("socat", "-u", socat_listen, "-"), ("socat", "-u", "-", socat_connect), unidirectional
        ),
    ]
    recv_only = "client --recv-only"
    cases += [
        Case(
            "receive",
            "enchufe",
            (enchufe, "-l", *tls_listen, "127.0.0.1", "{port}"),
            (*enchufe_client, "--recv-only", "127.0.0.1", "{port}"),
            recv_only,
        ),
        Case(
            "receive",
            "ncat",
            ("ncat", "-l", *tls_listen, "127.0.0.1", "{port}"),
            ("ncat", "--ssl", "--recv-only", "127.0.0.1", "{port}"),
            recv_only,
        ),
        Case("receive", "socat", ("socat", socat_listen, "-"), ("socat", "-", socat_connect)),
        Case(
            "receive",
            "socat -u",
            ("socat", "-u", "-", socat_listen),
            ("socat", "-u", socat_connect, "-"),
            unidirectional,
        ),
    ]
    return cases


def machine_defaults() -> dict[str, str]:
    """The environment without ``OPENSSL_CONF``: a probe that offers every suite."""
    return {name: value for name, value in os.environ.items() if name != "OPENSSL_CONF"}


def negotiated(brief: str) -> str:
    """``VERSION SUITE`` from what ``s_client -brief`` or ``s_server -brief`` said."""
    version = re.search(r"Protocol version: (\S+)", brief)
    suite = re.search(r"Ciphersuite: (\S+)", brief)
    return f"{version.group(1)} {suite.group(1)}" if version and suite else f"? ({brief.strip()[-100:]!r})"


def probe_listener(case: Case, timeout: float = 10.0) -> str:
    """What ``case``'s listener negotiates with ``openssl s_client``."""
    port = free_port()
    argv = [arg.format(port=port) for arg in case.listener]
    with open(os.devnull, "rb") as nothing:
        listener = subprocess.Popen(argv, stdin=nothing, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, listener, timeout)
            probe = subprocess.run(
                ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}"],
                stdin=nothing,
                capture_output=True,
                timeout=timeout,
                env=machine_defaults(),
                check=False,
            )
        finally:
            listener.kill()
            listener.wait()
    return negotiated(probe.stderr.decode(errors="replace"))


def probe_client(case: Case, both: str, timeout: float = 10.0) -> str:
    """What ``case``'s client negotiates with ``openssl s_server``."""
    port = free_port()
    argv = [arg.format(port=port) for arg in case.client]
    hold_read, hold_write = os.pipe()  # s_server ends the session at its stdin's end
    server = subprocess.Popen(
        ["openssl", "s_server", "-brief", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", both],
        stdin=hold_read,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=machine_defaults(),
    )
    os.close(hold_read)
    give_up = threading.Timer(timeout, server.kill)  # bounds the reads below
    give_up.start()
    said = ""
    try:
        wait_listening(port, server, timeout)
        with open(os.devnull, "rb") as nothing:
            client = subprocess.Popen(argv, stdin=nothing, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert server.stderr is not None
        while "Ciphersuite:" not in said and (line := server.stderr.readline()):
            said += line.decode(errors="replace")
        client.kill()
        client.wait()
    finally:
        give_up.cancel()
        os.close(hold_write)
        server.kill()
        server.wait()
        if server.stderr is not None:
            server.stderr.close()
    return negotiated(said)


def main(argv: list[str] | None = None) -> int:
    def add_suite(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--suite", default=SUITE, help=f"the TLS 1.3 suite forced on every tool (default {SUITE})")

    args = parse_args(argv, __doc__, TOOLS, add_suite)
    suite = args.suite
    enchufe = os.path.join(os.path.dirname(sys.executable), "enchufe")
    with tempfile.TemporaryDirectory(prefix="enchufe-tls-bench-") as tmp:
        cert, key, both = make_certificate(Path(tmp))
        conf = Path(tmp) / "openssl.cnf"
        write_openssl_conf(conf, suite)
        os.environ["OPENSSL_CONF"] = str(conf)  # every process started from here on
        cases = select_cases(build_cases(enchufe, cert, key, both), args)
        negotiated = {}
        for case in cases:
            with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
                negotiated[case] = (probe_listener(case), probe_client(case, both))
        data = args.data or Path(tempfile.gettempdir()) / f"enchufe-bench-{args.size}.bin"
        ensure_data_file(data, args.size)
        times, problems, checked = measure(cases, data, args.size, args)
    report(cases, times, problems, checked, args.size, args.repeat, title=f"Loopback TLS throughput ({suite} forced)")
    print()
    print("What each side negotiated with an openssl peer offering every suite:")
    print()
    print("| scenario | tool | listener | client |")
    print("| --- | --- | --- | --- |")
    for case in cases:
        listener, client = negotiated.get(case, ("?", "?"))
        print(f"| {case.scenario} | {case.tool} | {listener} | {client} |")
    record("tls_throughput", cases, times, problems, args.size).write(args.json)
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
