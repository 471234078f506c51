"""Per event-time minute counts for the dashboard (``alert_stats``).

The counting is pure; ``MinuteStatsLogic`` is the Bytewax state that owns every minute (one
key, so one worker), merges pre-aggregated batches, and rewrites dirty minutes at most every
``flush_s`` seconds of wall clock with their complete counts: idempotent after a replay,
cheap on the hot path (one small dict per batch crosses workers, not one item per
transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflows import metrics
from dataflows.detector import Outcome
from fraudwatch.alert_store import NEW_MINUTE, minute_id

MinuteCounts = dict[str, Any]  # {"transactions", "alerts", "late", "duplicates", "by_rule", ...}


def _empty() -> MinuteCounts:
    return {
        "transactions": 0,
        "alerts": 0,
        "late": 0,
        "duplicates": 0,
        "by_rule": {},
        "by_severity": {},
    }


def count_outcomes(outcomes: Iterable[Outcome]) -> dict[int, MinuteCounts]:
    """Counts per event-time minute (epoch minutes) of one batch of outcomes."""
    out: dict[int, MinuteCounts] = {}
    for o in outcomes:
        minute = o.event.ts // 60_000
        c = out.get(minute)
        if c is None:
            c = out[minute] = _empty()
        c["transactions"] += 1
        if o.late:
            c["late"] += 1
        if o.duplicate:
            c["duplicates"] += 1
        if o.alert is not None:
            c["alerts"] += 1
            sev = c["by_severity"]
            sev[o.alert.severity] = sev.get(o.alert.severity, 0) + 1
            by_rule = c["by_rule"]
            for r in o.alert.reasons:
                by_rule[r.rule] = by_rule.get(r.rule, 0) + 1
    return out


def merge_into(total: MinuteCounts, delta: MinuteCounts) -> None:
    for k in ("transactions", "alerts", "late", "duplicates"):
        total[k] += delta[k]
    for k in ("by_rule", "by_severity"):
        t = total[k]
        for name, n in delta[k].items():
            t[name] = t.get(name, 0) + n


def to_doc(minute: int, counts: MinuteCounts) -> dict[str, Any]:
    """The ``alert_stats`` document of one minute (complete counts, for ``$set``)."""
    when = datetime.fromtimestamp(minute * 60, UTC)
    return {
        "_id": minute_id(when),
        "minute": when,
        "transactions": counts["transactions"],
        "alerts": counts["alerts"],
        "late": counts["late"],
        "duplicates": counts["duplicates"],
        "by_rule": dict(counts["by_rule"]),
        "by_severity": dict(counts["by_severity"]),
    }


# (minute -> counts, minutes not yet written, minutes written at least once): the dirty set
# is part of the snapshot so a crash between counting and writing still ends with the minute
# rewritten after resume; the written set lets a minute's first write be a cheap insert.
StatsSnapshot = tuple[dict[int, MinuteCounts], tuple[int, ...], tuple[int, ...]]


class MinuteStatsLogic(StatefulBatchLogic[dict[int, MinuteCounts], dict[str, Any], StatsSnapshot]):
    """Owns every minute's counts; emits whole-minute documents for dirty minutes."""

    def __init__(
        self, resume: StatsSnapshot | None, flush_s: float, retention_minutes: int
    ) -> None:
        self.minutes: dict[int, MinuteCounts] = {}
        self.dirty: set[int] = set()
        self.written: set[int] = set()
        if resume:
            self.minutes = {m: _copy(c) for m, c in resume[0].items()}
            self.dirty = set(resume[1])
            self.written = set(resume[2])
        self.flush = timedelta(seconds=flush_s)
        self.retention = retention_minutes
        self.newest = max(self.minutes, default=0)
        self.due: datetime | None = datetime.now(UTC) if self.dirty else None

    def on_batch(self, values: list[dict[int, MinuteCounts]]) -> tuple[list[dict[str, Any]], bool]:
        for delta in values:
            for minute, counts in delta.items():
                if minute < self.newest - self.retention:
                    # Its stored document may hold counts we no longer have: never rewrite it.
                    metrics.STATS_TOO_LATE.inc(counts["transactions"])
                    continue
                total = self.minutes.get(minute)
                if total is None:
                    total = self.minutes[minute] = _empty()
                merge_into(total, counts)
                self.dirty.add(minute)
                self.newest = max(self.newest, minute)
        if self.dirty and self.due is None:
            self.due = datetime.now(UTC) + self.flush
        return [], False

    def _emit(self) -> list[dict[str, Any]]:
        docs = []
        for m in sorted(self.dirty):
            doc = to_doc(m, self.minutes[m])
            if m not in self.written:
                doc[NEW_MINUTE] = True
                self.written.add(m)
            docs.append(doc)
        self.dirty.clear()
        self.due = None
        floor = self.newest - self.retention
        for m in [m for m in self.minutes if m < floor]:
            del self.minutes[m]
        self.written = {m for m in self.written if m >= floor}
        return docs

    def on_notify(self) -> tuple[list[dict[str, Any]], bool]:
        return self._emit(), False

    def on_eof(self) -> tuple[list[dict[str, Any]], bool]:
        return self._emit(), False

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> StatsSnapshot:
        return (
            {m: _copy(c) for m, c in self.minutes.items()},
            tuple(sorted(self.dirty)),
            tuple(sorted(self.written)),
        )


def _copy(c: MinuteCounts) -> MinuteCounts:
    d = dict(c)
    d["by_rule"] = dict(c["by_rule"])
    d["by_severity"] = dict(c["by_severity"])
    return d
