"""``python -m enchufe``."""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    # The C half of the signal module, loaded by Python at start-up: signal.py would
    # import enum, which costs more than enchufe's own start-up.
    import _signal

# SIGINT ends the command by the signal itself until the command installs handlers
# of its own: Python's KeyboardInterrupt, raised before main() can catch it, would
# end it with a traceback. A SIGINT ignored at start stays ignored.
if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

from enchufe.cli.main import main  # noqa: E402 - after the signal disposition

sys.exit(main())
