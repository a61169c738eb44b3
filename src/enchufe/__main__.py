"""``python -m enchufe``."""

import sys

from enchufe.cli.main import main

sys.exit(main())
