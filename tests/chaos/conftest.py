"""Fault-injection suite (issue #7): crashes, outages, poison input, card-number scan.

Every test here runs in two sizes. `make test` runs the reduced size, which still exercises
every case; `make chaos` sets ``FRAUDWATCH_CHAOS=full`` for the full sizes the guarantees in
docs/reliability.md are stated at.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("FRAUDWATCH_CHAOS", "").lower() == "full"


def scale(reduced: int, full: int) -> int:
    """``full`` under `make chaos`, ``reduced`` otherwise."""
    return full if FULL else reduced


@pytest.fixture(scope="session")
def chaos_full() -> bool:
    return FULL
