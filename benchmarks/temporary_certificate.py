#!/usr/bin/env python3
"""What a TLS listener given no certificate pays for a temporary one, made each way.

Run from the repository root (``PYTHONPATH=src`` or an installed enchufe)::

    python3 benchmarks/temporary_certificate.py -n 20

Rows, each the median (and range) of ``-n`` runs:

- ``make_temporary_certificate()``: enchufe's way, the ``openssl req`` command making an
  EC P-256 key and a self-signed certificate into a private directory, and reading its
  fingerprint back;
- ``openssl req`` with a 2048-bit RSA key: ncat's kind of key, made the same way;
- the ``cryptography`` package in a fresh interpreter: its import alone, then an EC
  P-256 (or RSA 2048) key and a certificate written as PEM;
- ``ncat -l --ssl`` from its start to ``Listening on``, making its temporary RSA key,
  and the same given a certificate: the difference is what ncat's key costs it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from _results import Results, add_json_option

from enchufe.net.selfsigned import make_temporary_certificate

_CRYPTOGRAPHY = """
import json, sys, time
began = time.perf_counter()
import datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
imported = time.perf_counter()
key = ec.generate_private_key(ec.SECP256R1()) if sys.argv[1] == "ec" else rsa.generate_private_key(65537, 2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
certificate = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(x509.random_serial_number()).not_valid_before(now)
    .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
)
with open(sys.argv[2] + "/cert.pem", "wb") as file:
    file.write(certificate.public_bytes(serialization.Encoding.PEM))
with open(sys.argv[2] + "/key.pem", "wb") as file:
    file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()))
made = time.perf_counter()
print(json.dumps({"import": imported - began, "make": made - imported}))
"""


def milliseconds(samples: list[float]) -> str:
    values = sorted(1000 * sample for sample in samples)
    return f"{statistics.median(values):.1f} ({values[0]:.1f} to {values[-1]:.1f})"


def timed(work: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return samples


def openssl_rsa(directory: str) -> None:
    outputs = ["-keyout", f"{directory}/key.pem", "-out", f"{directory}/cert.pem"]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "1",
            "-subj",
            "/CN=x",
            *outputs,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def cryptography_run(kind: str, directory: str) -> dict[str, float]:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [sys.executable, "-c", _CRYPTOGRAPHY, kind, directory],
        check=True,
        capture_output=True,
        timeout=60,
        env=environment,
    )
    timings: dict[str, float] = json.loads(result.stdout)
    return timings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ncat_until_listening(*options: str) -> float:
    """Seconds from ncat's start to its ``Listening on`` line."""
    began = time.perf_counter()
    ncat = subprocess.Popen(
        ["ncat", "-v", "-l", "--ssl", *options, "127.0.0.1", str(free_port())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ncat.stderr is not None
        for line in ncat.stderr:
            if "Listening on" in line:
                return time.perf_counter() - began
        raise RuntimeError(f"ncat ended without listening: {ncat.wait()}")
    finally:
        ncat.kill()
        ncat.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="runs of each row")
    add_json_option(parser)
    args = parser.parse_args()
    runs = args.runs
    rows: list[tuple[str, str, list[float]]] = []  # the table's label, the tool in --json, the samples
    with tempfile.TemporaryDirectory() as directory:
        made = timed(lambda: make_temporary_certificate().remove(), runs)
        rows.append(("enchufe `make_temporary_certificate()` (openssl, EC P-256)", "enchufe", made))
        rows.append(("`openssl req`, RSA 2048", "openssl req RSA", timed(lambda: openssl_rsa(directory), runs)))
        for kind in ("ec", "rsa"):
            results = [cryptography_run(kind, directory) for _ in range(runs)]
            label = "EC P-256" if kind == "ec" else "RSA 2048"
            short = "EC" if kind == "ec" else "RSA"
            if kind == "ec":
                rows.append(("`cryptography`: its import alone", "cryptography import", [r["import"] for r in results]))
            rows.append(
                (
                    f"`cryptography`: {label} key and certificate, after the import",
                    f"cryptography {short} after import",
                    [r["make"] for r in results],
                )
            )
            rows.append(
                (
                    f"`cryptography`: import + {label}",
                    f"cryptography import + {short}",
                    [r["import"] + r["make"] for r in results],
                )
            )
        certificate, key = f"{directory}/cert.pem", f"{directory}/key.pem"
        openssl_rsa(directory)
        generating = [ncat_until_listening() for _ in range(runs)]
        given = [ncat_until_listening("--ssl-cert", certificate, "--ssl-key", key) for _ in range(runs)]
        rows.append(("`ncat -l --ssl` to `Listening on` (makes its RSA 2048 key)", "ncat", generating))
        rows.append(("`ncat -l --ssl --ssl-cert --ssl-key` to `Listening on`", "ncat, certificate given", given))
    print(f"{runs} runs each; milliseconds, median (min to max)\n")
    print("| what | ms |\n| --- | ---: |")
    recorded = Results("temporary_certificate", reference="ncat")
    for label, tool, samples in rows:
        print(f"| {label} | {milliseconds(samples)} |")
        recorded.add("a listener's certificate", tool, "time", "ms", [1000 * t for t in samples], better="lower")
    recorded.write(args.json)


if __name__ == "__main__":
    main()
