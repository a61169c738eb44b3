"""Sans-IO protocol code: bytes in, decisions and bytes out; no sockets, threads or clocks.

Invariant: nothing in this package imports socket, ssl, select, selectors,
threading, time, subprocess, os or sys (tests/test_layers.py checks it).
"""
