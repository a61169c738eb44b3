"""What a PROXY protocol header costs a connection: headers decoded per second (v1, v2,
v2 with a CRC32C and a UNIQUE_ID), and a header read off a socket pair by
read_proxy_header (peek, then consume) against a bare recv of the same bytes, the
floor any reader pays. Seconds; no network but a socket pair.

    PYTHONPATH=src python3 benchmarks/proxy_protocol.py [--json PATH]
"""

from __future__ import annotations

import argparse
import socket
import timeit

from _results import Results, add_json_option

from enchufe.address import InetAddress
from enchufe.net.proxy_protocol import read_proxy_header
from enchufe.net.stream import SocketStream
from enchufe.proto.proxy_protocol import (
    PP2_TYPE_CRC32C,
    PP2_TYPE_UNIQUE_ID,
    ProxyHeader,
    ProxyHeaderDecoder,
    encode_header,
)

CLIENT = InetAddress("192.168.0.1", 56324)
SERVER = InetAddress("192.168.0.11", 443)
HEADERS = {
    "v1 TCP4": encode_header(ProxyHeader(1, "proxy", "stream", CLIENT, SERVER)),
    "v1 TCP6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    "v2 IPv4": encode_header(ProxyHeader(2, "proxy", "stream", CLIENT, SERVER)),
    "v2 IPv4 + CRC32C + UNIQUE_ID": encode_header(
        ProxyHeader(
            2, "proxy", "stream", CLIENT, SERVER, ((PP2_TYPE_CRC32C, bytes(4)), (PP2_TYPE_UNIQUE_ID, b"x" * 32))
        )
    ),
}


def rate(statement: object, number: int = 20000) -> float:
    """Calls per second, the best of 5 runs."""
    best = min(timeit.repeat(statement, number=number, repeat=5))  # type: ignore[arg-type]
    return number / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_json_option(parser)
    args = parser.parse_args()
    results = Results("proxy_protocol", reference="bare recv")
    for name, data in HEADERS.items():
        decoded = rate(lambda data=data: ProxyHeaderDecoder().feed(data))
        print(f"decode {name:32} {decoded:>9,.0f} headers/s")
        results.add("decode", name, "headers per second", "1/s", [decoded])
    ours, theirs = socket.socketpair()
    stream = SocketStream(theirs)
    data = HEADERS["v1 TCP4"]

    def with_header() -> None:
        ours.send(data)
        read_proxy_header(stream, timeout=1)

    def bare() -> None:
        ours.send(data)
        theirs.recv(200)

    read, floor = rate(with_header), rate(bare)
    print(f"{'read_proxy_header on a socket pair':39} {read:>9,.0f} /s")
    print(f"{'send + recv of the same bytes':39} {floor:>9,.0f} /s   ratio {floor / read:.1f}x")
    results.add("socket pair", "read_proxy_header", "headers per second", "1/s", [read])
    results.add("socket pair", "bare recv", "headers per second", "1/s", [floor])
    results.write(args.json)
    ours.close()
    stream.close()


if __name__ == "__main__":
    main()
