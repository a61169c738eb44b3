"""A connection handler named on a command line: a Python file or ``module:function``.

:func:`load_handler` is what ``enchufe --py-exec`` runs at start, before it listens
or connects: it loads the code once and returns the ``handler(conn)`` that
:class:`~enchufe.serve.engine.Server` then calls in a thread per connection.

- ``PATH`` (any text that is not ``module:function``): the file is run once as a
  module of its own (named ``enchufe_py_exec``, so that nothing it defines takes
  the name of another module) and its ``handle`` is the handler.
- ``module:function``: the module is imported as Python imports it, with the
  current directory first on ``sys.path`` as uvicorn and gunicorn do for their
  ``module:app``, and its attribute ``function`` is the handler.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.serve.engine import Handler

__all__ = ["describe_failure", "load_handler"]

#: The name under which a handler file runs (and stays in ``sys.modules``).
FILE_MODULE = "enchufe_py_exec"


def load_handler(spec: str) -> Handler:
    """Load the handler ``spec`` names: ``PATH`` (its ``handle``) or ``module:function``.

    Raises:
        ImportError: the file cannot be read or compiled, the module is not found,
            its code raised an exception, or the handler is missing or not callable.
            The message is one line that says which, with the file and line of a
            syntax error or of the line that raised.
    """
    module_name, _, function = spec.rpartition(":")
    if module_name and not os.path.exists(spec):
        if not all(part.isidentifier() for part in (*module_name.split("."), function)):
            raise ImportError(f"{spec} is neither a file nor module:function")
        sys.path.insert(0, os.getcwd())
        module = _run(lambda: importlib.import_module(module_name))
        where = f"module {module_name}"
    else:
        function, where = "handle", spec
        module = _run(lambda: _import_file(spec))
    handler = getattr(module, function, None)
    if handler is None:
        raise ImportError(f"{where} has no {function}(conn)")
    if not callable(handler):
        raise ImportError(f"{where}: {function} is not a function")
    result: Handler = handler
    return result


def _import_file(path: str) -> object:
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as exc:
        raise ImportError(f"can't open {path}: {exc.strerror}") from None
    loader_spec = importlib.util.spec_from_loader(FILE_MODULE, loader=None, origin=path)
    assert loader_spec is not None
    module = importlib.util.module_from_spec(loader_spec)
    module.__file__ = path
    code = compile(source, path, "exec")  # SyntaxError names the file and the line
    sys.modules[FILE_MODULE] = module  # before it runs: its classes can then be pickled, dataclasses work
    exec(code, module.__dict__)
    return module


def _run(load: Callable[[], object]) -> object:
    """Call ``load``, turning whatever it raises into one line of ImportError."""
    try:
        return load()
    except ImportError:
        raise  # ours, or "No module named ...": one line already
    except SyntaxError as exc:
        raise ImportError(f"{exc.filename}:{exc.lineno}: {exc.msg}") from exc
    except Exception as exc:  # the handler file's own code: any error it raises is reported
        raise ImportError(describe_failure(exc)) from exc


def describe_failure(exc: BaseException) -> str:
    """One line on an exception: ``file:line: Type: message``, the line being the
    innermost one that raised it."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return f"{where}{type(exc).__name__}: {exc}"
