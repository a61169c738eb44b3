"""GNU ``getopt_long`` as ncat uses it, one argument at a time.

ncat handles each option the moment getopt returns it: ``-h`` prints the help even
when a bad option follows, and ``-w 0 -h`` fails on ``-w`` first. The standard
library's ``getopt.gnu_getopt`` parses the whole command line before returning, so
it cannot keep that order, and its error texts are not glibc's. This generator
keeps both.

Rules (glibc's, with ncat's default permutation):

- options and operands may be mixed; operands keep their order;
- ``--`` ends the options; a lone ``-`` is an operand;
- short options cluster (``-lvp 80``, ``-lvp80``); a value may begin with a dash;
- long options take ``--name value`` or ``--name=value`` and may be abbreviated to
  any prefix that is not ambiguous; an exact name always wins, and a prefix of
  several equivalent options (same argument, same flag and value) takes the first;
- (not glibc's) a prefix that the table without the ``extensions`` resolves means
  what it means there, whatever extension it also abbreviates;
- with ``POSIXLY_CORRECT`` set, the first operand ends the options.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping, Sequence

__all__ = ["GetoptError", "gnu_getopt"]


class GetoptError(Exception):
    """A command-line error, worded as glibc words it (without the program name)."""


def gnu_getopt(
    args: Sequence[str],
    short_options: str,
    long_options: Sequence[str],
    *,
    identity: Mapping[str, str] | None = None,
    extensions: Collection[str] = (),
    posixly_correct: bool = False,
) -> Iterator[tuple[str, str]]:
    """Yield ``(option, value)`` pairs and ``("", operand)`` pairs in command-line order.

    Args:
        args: the arguments, without the program name.
        short_options: getopt's string: letters, each followed by ``:`` if it takes a value.
        long_options: names, each followed by ``=`` if it takes a value, in the
            table's order.
        identity: for each long name, what makes two options "the same" to glibc
            (its ``flag`` and ``val``): an abbreviation that matches several options
            of the same identity and argument type takes the first, not an error.
        extensions: long names (without ``=``) added to a table that had a meaning
            for every prefix before: a prefix the others resolve keeps that meaning.
        posixly_correct: stop at the first operand, as glibc does when the
            ``POSIXLY_CORRECT`` environment variable is set.

    Options without a value yield ``""`` as their value; long options are yielded
    with their full name (``--listen`` for ``--lis``).

    Raises:
        GetoptError: when the offending argument is reached.
    """
    takes_value = {name.rstrip("="): name.endswith("=") for name in long_options}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            for operand in args[index:]:
                yield "", operand
            return
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            full = _match_long(name, arg, takes_value, identity or {}, extensions)
            if takes_value[full]:
                if not has_value:
                    if index >= len(args):
                        raise GetoptError(f"option '--{full}' requires an argument")
                    value = args[index]
                    index += 1
                yield "--" + full, value
            elif has_value:
                raise GetoptError(f"option '--{full}' doesn't allow an argument")
            else:
                yield "--" + full, ""
        elif arg.startswith("-") and arg != "-":
            position = 1
            while position < len(arg):
                letter = arg[position]
                position += 1
                spec = short_options.find(letter)
                if letter == ":" or spec < 0:
                    raise GetoptError(f"invalid option -- '{letter}'")
                if short_options[spec + 1 : spec + 2] != ":":
                    yield "-" + letter, ""
                    continue
                if position < len(arg):
                    yield "-" + letter, arg[position:]
                elif index < len(args):
                    yield "-" + letter, args[index]
                    index += 1
                else:
                    raise GetoptError(f"option requires an argument -- '{letter}'")
                break
        elif posixly_correct:
            for operand in args[index - 1 :]:
                yield "", operand
            return
        else:
            yield "", arg


def _match_long(
    name: str, arg: str, takes_value: dict[str, bool], identity: Mapping[str, str], extensions: Collection[str]
) -> str:
    if name in takes_value:
        return name
    candidates = [option for option in takes_value if option.startswith(name)]
    original = [option for option in candidates if option not in extensions]
    for choices in (original, candidates):
        if len({(takes_value[option], identity.get(option, option)) for option in choices}) == 1:
            return choices[0]
    if not candidates:
        raise GetoptError(f"unrecognized option '{arg}'")
    possibilities = " ".join(f"'--{option}'" for option in candidates)
    raise GetoptError(f"option '--{name}' is ambiguous; possibilities: {possibilities}")
