"""Per event-time minute counts for the dashboard (``alert_stats``).

The counting is pure; ``MinuteStatsLogic`` is the Bytewax state that owns every minute (one
key, so one worker), merges pre-aggregated batches, and rewrites dirty minutes with their
complete counts: idempotent after a replay, cheap on the hot path (one small dict per batch
crosses workers, not one item per transaction).

When a dirty minute is written (checked every ``flush_s`` seconds of wall clock):

- live minutes (ending less than ``LIVE_WINDOW_MIN`` minutes before the wall clock) every
  time, so the dashboard follows live traffic;
- older minutes once every input partition has moved past them (the low watermark of the
  per-partition newest event times), so a backfill writes each minute once, as an insert: on
  FerretDB an update scans the whole collection, and rewriting minutes that two partitions
  fill at different speeds cost 15-25 ms each (most of a 100k-transaction backfill's time);
- a partition whose newest event time has not advanced for ``idle_partition_s`` (idle live
  traffic, a finished or empty partition) no longer holds minutes back; with no active
  partition left every dirty minute is written. Everything is written at the end of input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflows.detection.detector import Outcome
from dataflows.io import prometheus
from fraudwatch.alert_store import stats_document

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


# One batch's counts per minute, and its newest event minute per source partition.
StatsDelta = tuple[dict[int, MinuteCounts], dict[int, int]]


def stats_delta(outcomes: Iterable[Outcome]) -> StatsDelta:
    """Counts per event-time minute (epoch minutes) of one batch of outcomes, and the newest
    event minute per source partition, in one pass."""
    out: dict[int, MinuteCounts] = {}
    marks: dict[int, int] = {}
    for o in outcomes:
        minute = o.event.ts // 60_000
        p = o.event.partition
        if minute > marks.get(p, -1):
            marks[p] = minute
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
    return out, marks


def merge_into(total: MinuteCounts, delta: MinuteCounts) -> None:
    for k in ("transactions", "alerts", "late", "duplicates"):
        total[k] += delta[k]
    for k in ("by_rule", "by_severity"):
        t = total[k]
        for name, n in delta[k].items():
            t[name] = t.get(name, 0) + n


# (minute -> counts, minutes not yet written, minutes written at least once): the dirty set
# is part of the snapshot so a crash between counting and writing still ends with the minute
# rewritten after resume; the written set lets a minute's first write be a cheap insert.
StatsSnapshot = tuple[dict[int, MinuteCounts], tuple[int, ...], tuple[int, ...]]


LIVE_WINDOW_MIN = 10


class MinuteStatsLogic(StatefulBatchLogic[StatsDelta, dict[str, Any], StatsSnapshot]):
    """Owns every minute's counts; emits whole-minute documents for dirty minutes."""

    def __init__(
        self,
        resume: StatsSnapshot | None,
        flush_s: float,
        retention_minutes: int,
        idle_partition_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.minutes: dict[int, MinuteCounts] = {}
        self.dirty: set[int] = set()
        self.written: set[int] = set()
        if resume:
            self.minutes = {m: _copy(c) for m, c in resume[0].items()}
            self.dirty = set(resume[1])
            self.written = set(resume[2])
        self.flush = timedelta(seconds=flush_s)
        self.idle_after = timedelta(seconds=idle_partition_s)
        self.clock = clock
        self.retention = retention_minutes
        self.newest = max(self.minutes, default=0)
        # Minutes below this were pruned (their stored documents hold counts we no longer
        # have); only arrivals for those are dropped as too late.
        self.pruned_below = min(self.minutes, default=self.newest - self.retention)
        # Soft state, rebuilt after a resume: newest event minute per input partition, and
        # when (wall clock) it last advanced.
        self.marks: dict[int, int] = {}
        self.advanced: dict[int, datetime] = {}
        now = clock()
        self.due: datetime | None = now if self.dirty else None

    def on_batch(self, values: list[StatsDelta]) -> tuple[list[dict[str, Any]], bool]:
        now = self.clock()
        for delta, marks in values:
            for p, minute in marks.items():
                if minute > self.marks.get(p, -1):
                    self.marks[p] = minute
                    self.advanced[p] = now
            for minute, counts in delta.items():
                if minute < self.pruned_below:
                    # Its stored document may hold counts we no longer have: never rewrite it.
                    prometheus.STATS_TOO_LATE.inc(counts["transactions"])
                    continue
                total = self.minutes.get(minute)
                if total is None:
                    total = self.minutes[minute] = _empty()
                merge_into(total, counts)
                self.dirty.add(minute)
                self.newest = max(self.newest, minute)
        if self.dirty and self.due is None:
            self.due = now + self.flush
        return [], False

    def _ready(self, now: datetime) -> list[int]:
        """The dirty minutes to write now (see the module docstring)."""
        active = self._active_marks(now)
        low = min(active) if active else None
        live_from = int(now.timestamp()) // 60 - LIVE_WINDOW_MIN
        # A minute about to leave the retained range is written now, whatever holds it.
        leaving = self._floor(now) + 1
        return [m for m in self.dirty if low is None or m < low or m >= live_from or m < leaving]

    def _emit(self, minutes: Iterable[int]) -> list[dict[str, Any]]:
        docs = []
        for m in sorted(minutes):
            docs.append(stats_document(m, self.minutes[m], new=m not in self.written))
            self.written.add(m)
            self.dirty.discard(m)
        self.due = self.clock() + self.flush if self.dirty else None
        floor = self._floor(self.clock())
        for m in [m for m in self.minutes if m < floor and m not in self.dirty]:
            del self.minutes[m]
        self.written = {m for m in self.written if m >= floor}
        self.pruned_below = max(self.pruned_below, floor)
        return docs

    def _active_marks(self, now: datetime) -> list[int]:
        """Newest event minute of each input partition that advanced within ``idle_after``."""
        active_since = now - self.idle_after
        return [m for p, m in self.marks.items() if self.advanced[p] > active_since]

    def _floor(self, now: datetime) -> int:
        """Minutes below this may be pruned: ``retention`` behind the slowest active partition.

        Measured from the slowest partition, not the newest event: in a backfill one partition
        can run days of event time ahead of another, whose counts must not be dropped.
        """
        slowest = min([*self._active_marks(now), self.newest])
        return slowest - self.retention

    def on_notify(self) -> tuple[list[dict[str, Any]], bool]:
        return self._emit(self._ready(self.clock())), False

    def on_eof(self) -> tuple[list[dict[str, Any]], bool]:
        return self._emit(list(self.dirty)), False

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
