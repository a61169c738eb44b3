"""Exit statuses, as ncat's manual page defines them."""

from __future__ import annotations

SUCCESS = 0
NETWORK_ERROR = 1
OTHER_ERROR = 2
