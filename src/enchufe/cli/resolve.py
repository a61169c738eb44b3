"""``enchufe-resolve``: look names up as the system resolver answers them, each answer timed.

Output is ``getent``'s: ``getent ahosts``'s lines for a forward lookup, ``getent
hosts``'s for ``--legacy`` and ``-r``; with ``--json`` one object per answer
(docs/tools/resolve.md). The work is :mod:`enchufe.tools.resolve`'s.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from enchufe.cli.tool import Report
    from enchufe.tools.resolve import Answer

PROGRAM = "enchufe-resolve"

USAGE = """\
enchufe-resolve {version}: look names up as the system resolver answers them
Usage: enchufe-resolve [options] NAME|ADDRESS...

A NAME (or an ADDRESS: it parses to itself, as with getent ahosts) is looked up with
getaddrinfo: every address in the resolver's order, the canonical name on the first line.
Operands are looked up at once on a few threads; answers come in the order asked.

Options:
  -4                     IPv4 addresses only
  -6                     IPv6 addresses only
  -r, --reverse          The names of each address (gethostbyaddr): of an ADDRESS, or of
                         every address a NAME resolves to, after its forward answer
      --hostname         This machine's name (gethostname), and what it resolves to
  -t, --type TYPE        Only socket type TYPE: stream, dgram or raw (default: all three)
  -s, --service SERVICE  Resolve SERVICE too (a port number or an /etc/services name)
      --legacy           IPv4 through gethostbyname_ex, which shows /etc/hosts aliases
  -n, --nodns            Addresses only: a NAME is refused, an ADDRESS is only parsed
                         (-r still asks for its names)
  -w, --wait TIME        Give each lookup up after TIME (30s, 500ms); it is reported as
                         timed out
      --json             One JSON object per answer on stdout
  -v, --verbose          Each answer's time on stderr
  -h, --help             This help
      --version          The version

Exit status: 0 when every lookup answered, 1 when any did not, 2 for a usage error.
"""

SHORT_OPTIONS = "46rt:s:nw:vh"
LONG_OPTIONS = [
    "reverse", "hostname", "type=", "service=", "legacy", "nodns", "wait=", "json", "verbose", "help", "version",
]  # fmt: skip
LONG_TO_SHORT = {
    "--reverse": "-r", "--type": "-t", "--service": "-s", "--nodns": "-n", "--wait": "-w", "--verbose": "-v",
    "--help": "-h",
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run ``enchufe-resolve`` with ``argv`` (``sys.argv[1:]`` by default); the exit status."""
    from enchufe.cli.tool import run_tool

    args = sys.argv[1:] if argv is None else argv
    return run_tool(PROGRAM, lambda: _run(args))


def _run(argv: list[str]) -> int:
    from enchufe.cli.gnu_getopt import GetoptError, gnu_getopt
    from enchufe.cli.usage import UsageError

    options: dict[str, str] = {}
    operands: list[str] = []
    verbosity = 0
    try:
        for name, value in gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS):
            name = LONG_TO_SHORT.get(name, name)
            if not name:
                operands.append(value)
            elif name == "-h":
                from enchufe import __version__

                sys.stdout.write(USAGE.format(version=__version__))
                return 0
            elif name == "--version":
                from enchufe import __version__

                sys.stdout.write(f"{PROGRAM} {__version__}\n")
                return 0
            elif name == "-v":
                verbosity += 1
            elif name in {"-4", "-6"}:  # the last one given counts
                options.pop("-4", None)
                options.pop("-6", None)
                options[name] = value
            else:
                options[name] = value
    except GetoptError as exc:
        raise UsageError(f"{exc}. Try --help.") from None
    return _resolve(options, operands, verbosity)


def _resolve(options: dict[str, str], operands: list[str], verbosity: int) -> int:
    import functools
    import socket

    from enchufe.cli.tool import Report
    from enchufe.cli.usage import UsageError
    from enchufe.tools import resolve

    if not operands and "--hostname" not in options:
        raise UsageError("Give a NAME or ADDRESS to look up, or --hostname. Try --help.")
    family = socket.AF_INET if "-4" in options else socket.AF_INET6 if "-6" in options else 0
    socket_type = 0
    if "-t" in options:
        socket_type = resolve.SOCKET_TYPES.get(options["-t"].lower(), -1)
        if socket_type < 0:
            raise UsageError(f'Invalid socket type "{options["-t"]}" (stream, dgram or raw).')
    legacy = "--legacy" in options
    if legacy and ("-6" in options or "-t" in options or "-s" in options):
        raise UsageError("--legacy asks gethostbyname_ex, which knows no -6, --type or --service.")
    timeout = None
    if "-w" in options:
        from enchufe.cli.config import parse_time

        timeout = parse_time(options["-w"], "-w timeout")
    numeric_only = "-n" in options

    def lookup(query: str) -> list[resolve.Answer]:
        return resolve.lookup(
            query,
            names_too="-r" in options,
            legacy_call=legacy,
            family=family,
            type=socket_type,
            service=options.get("-s"),
            numeric_only=numeric_only,
        )

    def own_name() -> list[resolve.Answer]:
        answer = resolve.hostname()
        if not answer.ok or numeric_only or answer.canonical is None:
            return [answer]
        return [answer, *lookup(answer.canonical)]

    def kind_of(query: str) -> str:
        return "reverse" if "-r" in options and resolve.is_address(query) else "legacy" if legacy else "forward"

    jobs: list[tuple[str, str, Callable[[], list[resolve.Answer]]]]
    jobs = [("", "hostname", own_name)] if "--hostname" in options else []
    jobs.extend((query, kind_of(query), functools.partial(lookup, query)) for query in operands)
    report = Report(PROGRAM, json="--json" in options, verbosity=verbosity)
    answered = True
    for answers in resolve.lookup_all(jobs, timeout=timeout):
        for answer in answers:
            if numeric_only and not answer.ok and answer.kind != "reverse":
                answer.error = f"{answer.error} (-n: addresses only)"
            _show(report, answer, with_port="-s" in options)
            answered = answered and answer.ok
    return 0 if answered else 1


def _show(report: Report, answer: Answer, *, with_port: bool) -> None:
    """One answer: getent's lines (or its JSON object), its time with -v, a failure's
    words on stderr."""
    lines: list[str] = []
    if answer.kind == "forward":
        for index, entry in enumerate(answer.entries):  # getent ahosts: the name on the first line only
            name = (answer.canonical or "") if index == 0 else ""
            port = f"{entry.port} " if with_port else ""
            lines.append(f"{entry.address:<15} {(entry.type or '').upper():<6} {port}{name}")
    elif answer.kind == "hostname":
        lines.extend([answer.canonical] if answer.canonical else [])
    else:  # getent hosts: each address, its official name and aliases
        names = " ".join([answer.canonical or "", *answer.aliases])
        lines.extend(f"{entry.address:<15} {names}" for entry in answer.entries)
    report.result(answer.record(), "\n".join(lines) if lines else None)
    what = f"{answer.kind} {answer.query}" if answer.query else answer.kind
    if answer.ok:
        report.info(f"{what}: {answer.elapsed_ns / 1e6:.3f} ms")
    else:
        report.error(f"{answer.query or answer.kind}: {answer.error}")
