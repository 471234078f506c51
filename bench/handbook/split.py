"""The handbook's time split: history, a training week, the label delay, a test week.

The handbook trains on one week, leaves one week out (the *delay period*: labels of the last
days before a prediction are not known yet) and tests on the week after. We put history
before the training week so that every stateful detector (and the rolling 30-day features)
starts warm, as a running system would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Split:
    """Phase boundaries in epoch milliseconds (each phase is ``[start, next start)``)."""

    history_start_ms: int
    train_start_ms: int
    delay_start_ms: int
    test_start_ms: int
    end_ms: int

    @classmethod
    def weeks(
        cls,
        start: datetime,
        history_days: int = 35,
        train_days: int = 7,
        delay_days: int = 7,
        test_days: int = 7,
    ) -> Split:
        """The split of traffic that begins at ``start`` (UTC midnight: days are UTC days)."""
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        if min(train_days, delay_days, test_days) < 1 or history_days < 0:
            raise ValueError("training, delay and test take at least a day each")
        first = int(start.timestamp() * 1000)
        train = first + history_days * DAY_MS
        delay = train + train_days * DAY_MS
        test = delay + delay_days * DAY_MS
        return cls(first, train, delay, test, test + test_days * DAY_MS)

    @property
    def days(self) -> float:
        """Length of the whole run in days (what the producer generates)."""
        return (self.end_ms - self.history_start_ms) / DAY_MS

    @property
    def delay_ms(self) -> int:
        """The label delay: a label is known this long after its transaction."""
        return self.test_start_ms - self.delay_start_ms

    def phase(self, ts_ms: int) -> str:
        """``history``, ``train``, ``delay``, ``test`` or ``outside``."""
        if ts_ms < self.history_start_ms or ts_ms >= self.end_ms:
            return "outside"
        if ts_ms < self.train_start_ms:
            return "history"
        if ts_ms < self.delay_start_ms:
            return "train"
        return "delay" if ts_ms < self.test_start_ms else "test"

    def test_days(self) -> list[int]:
        """Start (epoch ms) of every test day."""
        return list(range(self.test_start_ms, self.end_ms, DAY_MS))

    def dates(self) -> dict[str, str]:
        """Every boundary as an RFC 3339 UTC date-time, for the report."""
        names = ("history_start", "train_start", "delay_start", "test_start", "end")
        values = (self.history_start_ms, self.train_start_ms, self.delay_start_ms,
                  self.test_start_ms, self.end_ms)  # fmt: skip
        return {n: format_ms(v) for n, v in zip(names, values, strict=True)}


def format_ms(ts_ms: int) -> str:
    """``2026-11-23T00:00:00Z`` for an epoch-millisecond time."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def known_compromised(
    fraud_times: dict[str, list[int]], split: Split, day_start_ms: int
) -> set[str]:
    """Cards the bank knows were compromised at the start of test day ``day_start_ms``.

    The handbook removes them from that day's test set (the bank has blocked them): cards with
    a fraudulent transaction from the start of the training week up to the test day minus the
    delay, i.e. whose label has arrived.
    """
    known_until = day_start_ms - split.delay_ms
    return {
        card
        for card, times in fraud_times.items()
        if any(split.train_start_ms <= t < known_until for t in times)
    }
