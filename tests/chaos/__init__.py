"""Fault-injection suite (issue #7). Sizes: reduced in `make test`, full in `make chaos`."""

from __future__ import annotations

import os

FULL = os.environ.get("FRAUDWATCH_CHAOS", "").lower() == "full"


def scale(reduced: int, full: int) -> int:
    """``full`` under `make chaos` (FRAUDWATCH_CHAOS=full), ``reduced`` otherwise."""
    return full if FULL else reduced
