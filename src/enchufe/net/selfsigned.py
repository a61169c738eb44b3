"""A temporary key and self-signed certificate, for a TLS listener given none.

ncat makes a 2048-bit RSA key when ``-l --ssl`` has no ``--ssl-cert``: slow, and broken
on OpenSSL 3.5 (nmap/nmap#3264). :func:`make_temporary_certificate` asks the
``openssl`` command for an EC P-256 key and a certificate signed with SHA-256, which
takes 8 to 12 ms; the ``cryptography`` package would take 54 ms just to import
(benchmarks/temporary_certificate.py). The standard library cannot make a certificate.

The certificate is issued to ``localhost``, ``127.0.0.1`` and ``::1``, valid for a day
from now. It is not backdated for clients with a slow clock: ``openssl req`` has no
option for it before OpenSSL 3.4, and only a client that does not verify accepts a
certificate it has never seen, without looking at its dates.

The files live in a directory only this user can enter; load them into a context,
then remove them (the context keeps what it loaded)::

    with make_temporary_certificate() as certificate:
        context = server_context(certificate.certfile, certificate.keyfile)
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess

from enchufe.errors import TlsSetupError
from enchufe.proto.x509 import sha1_fingerprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["TemporaryCertificate", "make_temporary_certificate"]

_NAMES = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
_NO_OPENSSL = (
    "cannot make a temporary certificate without the openssl command: "
    "give a certificate and its key (--ssl-cert and --ssl-key), or install openssl"
)


class TemporaryCertificate:
    """A certificate and its key in files of a private temporary directory, until
    :meth:`remove` (or the end of a ``with`` block).

    Attributes:
        directory: the directory (mode 0700) holding both files.
        certfile: the certificate (PEM), mode 0600.
        keyfile: its private key (PEM, unencrypted), mode 0600.
        fingerprint: the certificate's SHA-1 fingerprint as ncat prints it.
    """

    def __init__(self, directory: str, certfile: str, keyfile: str, fingerprint: str) -> None:
        self.directory = directory
        self.certfile = certfile
        self.keyfile = keyfile
        self.fingerprint = fingerprint

    def remove(self) -> None:
        """Remove the files and their directory. Idempotent."""
        _remove(self.directory, self.certfile, self.keyfile)

    def __enter__(self) -> TemporaryCertificate:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<TemporaryCertificate {self.certfile} {self.fingerprint}>"


def make_temporary_certificate(*, timeout: float = 30.0) -> TemporaryCertificate:
    """Make an EC P-256 key and a self-signed certificate for ``localhost``, valid for
    a day, with the ``openssl`` command.

    Raises:
        TlsSetupError: there is no ``openssl`` command (the message says what to do
            instead), or it failed, or it took more than ``timeout`` seconds.
    """
    directory = _private_directory()
    certfile = os.path.join(directory, "certificate.pem")
    keyfile = os.path.join(directory, "key.pem")
    try:
        _run_openssl(certfile, keyfile, timeout)
        with open(certfile, encoding="ascii") as file:
            fingerprint = sha1_fingerprint(ssl.PEM_cert_to_DER_cert(file.read()))
    except BaseException:
        _remove(directory, certfile, keyfile)
        raise
    return TemporaryCertificate(directory, certfile, keyfile, fingerprint)


def _run_openssl(certfile: str, keyfile: str, timeout: float) -> None:
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-sha256", "-days", "1", "-subj", "/CN=localhost", "-addext", _NAMES, "-keyout", keyfile, "-out", certfile,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, umask=0o077, check=False
        )
    except FileNotFoundError:
        raise TlsSetupError(_NO_OPENSSL) from None
    except subprocess.TimeoutExpired:
        raise TlsSetupError(f"openssl took more than {timeout:g} seconds to make a temporary certificate") from None
    except OSError as exc:  # found, but cannot be run
        raise TlsSetupError(
            f"cannot run openssl to make a temporary certificate: {exc.strerror}", errno=exc.errno
        ) from exc
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise TlsSetupError(f"openssl could not make a temporary certificate: {reason}")


def _remove(directory: str, *files: str) -> None:
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def _private_directory() -> str:
    """A new directory only this user can enter, in ``$TMPDIR`` or ``/tmp``: what
    ``tempfile.mkdtemp`` does, without the 4 ms its import costs a listener's start."""
    parent = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(parent, f"enchufe-tls-{os.urandom(8).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise TlsSetupError(
                f"cannot make a temporary certificate in {parent}: {exc.strerror}", errno=exc.errno
            ) from exc
        return path
