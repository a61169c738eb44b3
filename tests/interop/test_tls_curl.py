"""curl (7.88, OpenSSL 3) as the HTTPS client of enchufe's ``-l --ssl-cert --ssl-key``,
whose stdin is the HTTP reply: curl verifies the certificate against the test CA and
the name ``localhost``, and gets the body."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support.interop import enchufe_listener, start, tcp
from support.tls import TlsFiles

if shutil.which("curl") is None:
    pytest.skip("curl is not installed", allow_module_level=True)

pytestmark = pytest.mark.interop

BODY = b"<h1>served over TLS by enchufe</h1>\n" * 100


@pytest.mark.parametrize("alpn", [pytest.param([], id="no-alpn"), pytest.param(["--ssl-alpn", "http/1.1"], id="alpn")])
def test_curl_gets_the_body_from_enchufe_listener(
    tls_files: TlsFiles, sock_dir: str, tmp_path: Path, alpn: list[str]
) -> None:
    reply = tmp_path / "reply.http"
    reply.write_bytes(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (len(BODY), BODY)
    )
    certificate = (*tls_files.listener_options, *alpn)
    with (
        open(reply, "rb") as stdin,
        enchufe_listener(tcp("127.0.0.1"), sock_dir, *certificate, stdin=stdin) as (listener, port),
        start(
            ["curl", "--silent", "--show-error", "--verbose", "--cacert", tls_files.ca, f"https://localhost:{port}/"]
        ) as curl,
    ):
        assert curl.wait() == 0, curl.stderr
        assert curl.stdout == BODY
        assert listener.wait() == 0
    assert re.match(rb"GET / HTTP/1\.1\r\nHost: localhost:\d+\r\n", listener.stdout), listener.stdout
    assert "SSL certificate verify ok." in curl.stderr
    accepted = "ALPN: server accepted http/1.1" if alpn else "ALPN: server did not agree on a protocol"
    assert accepted in curl.stderr, curl.stderr
