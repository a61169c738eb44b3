r"""What ncat's ``-e`` hands to the program it runs: its argument vector and environment.

Two pure functions; starting the program is the exec layer's job. They live in core
rather than proto because neither is a wire protocol: they turn a command line and two
addresses into values, which the exec layer, the command line (to check ``-e`` before
listening) and library users all need without any I/O.

:func:`split_command` is ncat's ``cmdline_split``, quirks included (checked with ncat
7.93, ``-e '/usr/bin/printf %s| ...'``):

=========================  ===========================  ==========================================
``-e`` text                arguments                    rule
=========================  ===========================  ==========================================
``ncat -l -k``             ``ncat`` ``-l`` ``-k``       split on runs of space, tab, LF, CR, VT, FF
``ncat -l\ -k``            ``ncat`` ``-l -k``           a backslash takes the next character as is
``ncat -l\\ -k``           ``ncat`` ``-l\`` ``-k``      ... a backslash too
``ncat "-l -k"``           ``ncat`` ``"-l`` ``-k"``     quotes mean nothing
``ncat a\  b``             ``ncat`` ``a b``             after an escaped character other than a
                                                        backslash, whitespace is skipped and the
                                                        argument goes on (ncat's quirk)
``ncat -l\``               ``ncat`` ``-l``              a trailing backslash is dropped
``ncat -l \``              ``ncat`` ``-l`` ``""``       ... even when it is an argument's only
                                                        character
``""``, ``"   "``          (none)                       ncat then fails: ``exec: Bad address``
=========================  ===========================  ==========================================

ncat runs the first argument with ``execv``: no shell, no ``PATH`` search.

:func:`exec_environment` gives the variables ncat adds to the program's environment
(replacing any it inherited), in ncat's order; observed with 7.93 and ``-e /usr/bin/env``::

    NCAT_REMOTE_ADDR=127.0.0.1  NCAT_REMOTE_PORT=45332
    NCAT_LOCAL_ADDR=127.0.0.1   NCAT_LOCAL_PORT=47325   NCAT_PROTO=TCP

Addresses are numeric and IPv6 ones unbracketed (``::1``); a Unix socket, stream or
datagram, gives ``localhost`` and an empty port; ``NCAT_PROTO`` is ``TCP``, ``UDP`` or
``SCTP`` (a Unix stream socket is ``TCP``, a Unix datagram socket ``UDP``).
"""

from __future__ import annotations

from enchufe.address import Address, UnixAddress

__all__ = ["exec_environment", "split_command"]

# isspace() in the C locale: ncat's separators. str.isspace() would also split on
# \x1c-\x1f and on non-ASCII spaces, which ncat keeps inside an argument.
_SPACE = frozenset(" \t\n\r\v\f")

# The transports of enchufe.net.sockets, by the names ncat gives them.
_PROTOCOL_NAMES = {"stream": "TCP", "datagram": "UDP", "sctp": "SCTP"}


def split_command(command: str) -> list[str]:
    """Split an ``-e`` command into arguments exactly as ncat does (see the module docstring).

    Never fails; text without arguments gives ``[]``.
    """
    args: list[str] = []
    i, end = 0, len(command)
    while True:
        while i < end and command[i] in _SPACE:
            i += 1
        if i == end:
            return args
        arg: list[str] = []
        while i < end and command[i] not in _SPACE:
            char = command[i]
            i += 1
            if char == "\\":
                if i == end:
                    break
                char = command[i]
                i += 1
                if char != "\\":
                    while i < end and command[i] in _SPACE:
                        i += 1
            arg.append(char)
        args.append("".join(arg))


def exec_environment(*, local: Address, remote: Address, transport: str = "stream") -> dict[str, str]:
    """The ``NCAT_*`` variables for a program run for a connection, in ncat's order.

    Args:
        local: this side's address, as the socket reports it (numeric).
        remote: the peer's address, likewise. For a Unix socket any
            :class:`~enchufe.address.UnixAddress` does: ncat reports none of the path.
        transport: ``"stream"``, ``"datagram"`` or ``"sctp"``
            (:data:`enchufe.net.sockets.Transport`).

    Raises:
        ValueError: an unknown transport.
    """
    protocol = _PROTOCOL_NAMES.get(transport)
    if protocol is None:
        raise ValueError(f"unknown transport {transport!r}")
    env: dict[str, str] = {}
    for side, address in (("REMOTE", remote), ("LOCAL", local)):
        if isinstance(address, UnixAddress):
            env[f"NCAT_{side}_ADDR"], env[f"NCAT_{side}_PORT"] = "localhost", ""
        else:
            env[f"NCAT_{side}_ADDR"], env[f"NCAT_{side}_PORT"] = address.host, str(address.port)
    env["NCAT_PROTO"] = protocol
    return env
