"""``--lua-exec FILE``: ncat's Lua scripts, one process per connection, through lupa.

ncat forks for each connection and runs its embedded Lua with the script's standard
input and output on the connection. enchufe does the same with a program: the command
runs a Python running :func:`main` (:func:`runner_argv`) exactly as it runs ``-e``'s program
(:class:`enchufe.net.process.ChildProcess`), so every exec rule applies unchanged —
the end-of-stream rules, ``-k`` with ``-m``, the ``NCAT_*`` environment, ``-C``.

In that process Lua's ``io`` library works on C's ``stdin`` and ``stdout``, descriptors
0 and 1, as in ncat's child; so does buffering: ``print`` flushes after each line (Lua's
own rule), ``io.write`` only when the buffer fills, on ``io.flush()`` or at exit, which
is what ncat 7.93 does with a script writing to its socket.

The interpreter is Lua 5.4, current ncat's (Debian's 7.93 links Lua 5.3). lupa is an
optional extra (``pip install 'enchufe[lua]'``): imported only on this path.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["main", "runner_argv", "script_problem"]

#: What --lua-exec says when lupa is missing.
NEEDS_LUPA = "--lua-exec needs the lupa package: pip install 'enchufe[lua]'"


def script_problem(path: str) -> str | None:
    """Why the script at ``path`` cannot run, in ncat's words, or None if it can.

    The command asks before it listens or connects, as ncat loads its script at start:
    a missing file or a syntax error costs no connection.
    """
    try:
        runtime = _new_runtime()
    except ImportError:
        return NEEDS_LUPA
    _, error = _load(runtime, path)
    return None if error is None else f"Error loading the Lua script: {error}"


def runner_argv(path: str) -> tuple[str, ...]:
    """The program that runs the script for one connection: this Python with the
    command's own ``sys.path``, so it imports the enchufe and the lupa the command
    imports, and nothing else decides: ``-E``, since ``PYTHONUNBUFFERED`` would unbuffer
    C's stdio, which is the script's (and glibc cannot buffer it again); ``-P``, so the
    current directory is not searched first."""
    search = [entry for entry in sys.path if entry]
    code = f"import sys; sys.path[:0] = {search!r}; from {__name__} import main; sys.exit(main(sys.argv[1:]))"
    return (sys.executable, "-E", "-P", "-c", code, path)


def _new_runtime() -> Any:  # lupa has no type hints
    from lupa.lua54 import LuaRuntime

    return LuaRuntime()


def _load(runtime: Any, path: str) -> tuple[Callable[[], object] | None, str | None]:
    """Lua's ``loadfile``: the compiled script, or Lua's message (it names the file
    and the line, as ncat's does)."""
    loaded = runtime.globals().loadfile(path)
    if isinstance(loaded, tuple):  # nil and the message
        return None, str(loaded[1])
    script: Callable[[], object] = loaded
    return script, None


def main(argv: list[str]) -> int:
    """Run the script ``argv[0]`` with standard input and output as its connection.

    Errors are ncat's lines on stderr (which is the command's), status 2: the script
    cannot be loaded any more, or it raised an error (with Lua's traceback, as ncat).
    """
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal  # signal.py would import enum: this process starts once per connection

    # Ctrl-C reaches the whole process group: end quietly, as a program run by -e does.
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    [path] = argv
    try:
        runtime = _new_runtime()
    except ImportError:
        return _fail(NEEDS_LUPA)
    script, error = _load(runtime, path)
    if script is None:
        return _fail(f"Error loading the Lua script: {error}")
    from lupa.lua54 import LuaError

    try:
        script()
    except LuaError as exc:
        return _fail(f"Error running the Lua script: {exc}")
    return 0  # C's exit() then flushes what io.write left in stdout's buffer


def _fail(message: str) -> int:
    sys.stderr.write(f"enchufe: {message}. QUITTING.\n")
    return 2
