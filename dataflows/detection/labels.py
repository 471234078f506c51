"""What the labels on a card or merchant said at a given event time.

A label is used from its ``reported_at`` on, never before (a score must not depend on a truth
nobody knew yet). For one transaction the newest label reported at or before the time wins, so
a later ``genuine`` label reverses a ``fraud`` one (a dispute lost) and the reverse; re-sent
labels are idempotent because the same (transaction, reported time, verdict) is kept once.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TypeVar

# One label in state: (reported time ms, 1 = fraud / 0 = genuine, transaction id hash).
LabelRow = tuple[int, int, int]
# Cards keep LabelRows; merchants add the transaction's day. Both sort by reported time first.
Row = TypeVar("Row", bound=tuple[int, ...])


def id_hash(transaction_id: str) -> int:
    """A stable 64-bit hash of a transaction id (the same in every process and run)."""
    return int.from_bytes(
        blake2b(transaction_id.encode(), digest_size=8).digest(), "big", signed=True
    )


def add_label(rows: list[Row], row: Row) -> bool:
    """Add ``row`` unless it is already there; keeps ``rows`` sorted. True if added."""
    if row in rows:
        return False
    rows.append(row)
    rows.sort()
    return True


def fraud_known_at(rows: list[LabelRow], t: int) -> dict[int, int]:
    """Per labelled transaction (id hash), its verdict as known at event time ``t``.

    ``rows`` are sorted by reported time, so the last one at or before ``t`` wins; on equal
    times a genuine verdict (0) sorts first and the fraud one wins, which errs on the side
    of looking at the transaction.
    """
    verdict: dict[int, int] = {}
    for reported, fraud, h in rows:
        if reported > t:
            break
        verdict[h] = fraud
    return verdict
