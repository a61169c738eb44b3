"""The tools: ping, scan, resolve, bench and relay, each a library API here and a
command of its own (``enchufe-ping``, ... in :mod:`enchufe.cli`)."""
