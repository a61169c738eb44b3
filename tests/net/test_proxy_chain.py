"""A chain of proxies: a refusal names the hop that refused, not the first proxy."""

from __future__ import annotations

import pytest

from enchufe.address import InetAddress
from enchufe.errors import ProxyError
from enchufe.net.connect import open_connection
from enchufe.net.proxy import Proxy
from enchufe.proto.http_proxy import HttpProxyNegotiator
from enchufe.proto.socks import Socks5Negotiator
from support.cli_e2e import TcpServer
from support.proxy import running_proxy_server


def test_a_refusal_by_the_second_hop_names_the_second_hop() -> None:
    with TcpServer() as closed:
        target = InetAddress("127.0.0.1", closed.port)
    with (
        running_proxy_server(lambda peer: Socks5Negotiator()) as (_, _, first),
        running_proxy_server(lambda peer: HttpProxyNegotiator()) as (_, _, second),
    ):
        chain = [Proxy("socks5", InetAddress("127.0.0.1", first)), Proxy("http", InetAddress("127.0.0.1", second))]
        with pytest.raises(ProxyError) as refused:
            open_connection(target, proxy=chain, timeout=5)
    assert refused.value.code == 504
    assert refused.value.proxy == f"127.0.0.1:{second}"
