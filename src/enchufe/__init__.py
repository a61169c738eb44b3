"""enchufe: threaded network servers and clients, and an ncat-compatible command.

The public API is re-exported here lazily, so that ``import enchufe`` (and the
``enchufe`` command's start-up) costs almost nothing until a name is used.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing would slow the command's start-up

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from enchufe.address import Address, InetAddress, UnixAddress, parse_address
    from enchufe.errors import (
        AddressError,
        BindError,
        CertificateError,
        ConnectError,
        ConnectionLost,
        ConnectTimeout,
        EnchufeError,
        IdleTimeout,
        NetworkError,
        OutputFailed,
        ProtocolError,
        ProxyError,
        ReceiveLimitExceeded,
        ReceiveTimeout,
        ResolveError,
        StreamClosed,
        TimedOut,
        TlsError,
        TlsSetupError,
        UnexpectedEOF,
        Unsupported,
    )
    from enchufe.net.connect import open_connection
    from enchufe.net.connection import Connection
    from enchufe.net.dtls import (
        DtlsContext,
        DtlsStream,
        accept_dtls,
        dtls_client_context,
        dtls_server_context,
        start_dtls,
    )
    from enchufe.net.fdstream import FdStream
    from enchufe.net.listen import Listener, accept_first, open_listeners
    from enchufe.net.proxy import Proxy, parse_proxies
    from enchufe.net.relay import Relay, RelayResult
    from enchufe.net.resolve import Resolver, SystemResolver
    from enchufe.net.stream import SocketStream, Stream
    from enchufe.net.tls import TlsStream, client_context, server_context, start_tls
    from enchufe.serve.datagram_server import DatagramServer
    from enchufe.serve.engine import Server, serve
    from enchufe.serve.pool import RequestServer
    from enchufe.serve.proxy_server import ProxyServer

_EXPORTS = {
    "Address": "enchufe.address",
    "InetAddress": "enchufe.address",
    "UnixAddress": "enchufe.address",
    "parse_address": "enchufe.address",
    "AddressError": "enchufe.errors",
    "BindError": "enchufe.errors",
    "CertificateError": "enchufe.errors",
    "ConnectError": "enchufe.errors",
    "ConnectionLost": "enchufe.errors",
    "ConnectTimeout": "enchufe.errors",
    "EnchufeError": "enchufe.errors",
    "IdleTimeout": "enchufe.errors",
    "NetworkError": "enchufe.errors",
    "OutputFailed": "enchufe.errors",
    "ProtocolError": "enchufe.errors",
    "ProxyError": "enchufe.errors",
    "ReceiveLimitExceeded": "enchufe.errors",
    "ReceiveTimeout": "enchufe.errors",
    "ResolveError": "enchufe.errors",
    "StreamClosed": "enchufe.errors",
    "TimedOut": "enchufe.errors",
    "TlsError": "enchufe.errors",
    "TlsSetupError": "enchufe.errors",
    "UnexpectedEOF": "enchufe.errors",
    "Unsupported": "enchufe.errors",
    "open_connection": "enchufe.net.connect",
    "Connection": "enchufe.net.connection",
    "FdStream": "enchufe.net.fdstream",
    "Listener": "enchufe.net.listen",
    "open_listeners": "enchufe.net.listen",
    "accept_first": "enchufe.net.listen",
    "Proxy": "enchufe.net.proxy",
    "parse_proxies": "enchufe.net.proxy",
    "Relay": "enchufe.net.relay",
    "RelayResult": "enchufe.net.relay",
    "Resolver": "enchufe.net.resolve",
    "SystemResolver": "enchufe.net.resolve",
    "SocketStream": "enchufe.net.stream",
    "Stream": "enchufe.net.stream",
    "TlsStream": "enchufe.net.tls",
    "DtlsContext": "enchufe.net.dtls",
    "DtlsStream": "enchufe.net.dtls",
    "accept_dtls": "enchufe.net.dtls",
    "dtls_client_context": "enchufe.net.dtls",
    "dtls_server_context": "enchufe.net.dtls",
    "start_dtls": "enchufe.net.dtls",
    "client_context": "enchufe.net.tls",
    "server_context": "enchufe.net.tls",
    "start_tls": "enchufe.net.tls",
    "Server": "enchufe.serve.engine",
    "DatagramServer": "enchufe.serve.datagram_server",
    "RequestServer": "enchufe.serve.pool",
    "ProxyServer": "enchufe.serve.proxy_server",
    "serve": "enchufe.serve.engine",
}

__all__ = [
    "Address",
    "AddressError",
    "BindError",
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "ConnectionLost",
    "DatagramServer",
    "DtlsContext",
    "DtlsStream",
    "EnchufeError",
    "FdStream",
    "IdleTimeout",
    "InetAddress",
    "Listener",
    "NetworkError",
    "OutputFailed",
    "ProtocolError",
    "Proxy",
    "ProxyError",
    "ProxyServer",
    "ReceiveLimitExceeded",
    "ReceiveTimeout",
    "Relay",
    "RelayResult",
    "RequestServer",
    "ResolveError",
    "Resolver",
    "Server",
    "SocketStream",
    "Stream",
    "StreamClosed",
    "SystemResolver",
    "TimedOut",
    "TlsError",
    "TlsSetupError",
    "TlsStream",
    "UnexpectedEOF",
    "UnixAddress",
    "Unsupported",
    "__version__",
    "accept_dtls",
    "accept_first",
    "client_context",
    "dtls_client_context",
    "dtls_server_context",
    "open_connection",
    "open_listeners",
    "parse_address",
    "parse_proxies",
    "serve",
    "server_context",
    "start_dtls",
    "start_tls",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'enchufe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
