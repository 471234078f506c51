"""What the producer tells its user while it runs and when it stops.

On a terminal: a rich progress line with the achieved rate. Otherwise (``make run`` pipes the
output, CI logs): one plain line every few seconds. Card numbers are never printed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from producer.records import MALFORMED
from producer.traffic import TimestampFormatter

_log = logging.getLogger("producer")
_format_ts = TimestampFormatter()


@dataclass
class RunStats:
    """Counters of one run; the sink's delivery counters are copied in as they change."""

    sent: int = 0
    by_scenario: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    failed: int = 0
    unconfirmed: int = 0  # records and chargebacks the broker did not confirm in time
    chargebacks: int = 0  # chargebacks sent (not counted in ``sent``)
    chargebacks_delivered: int = 0
    chargebacks_failed: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    elapsed_s: float = 0.0
    stopped_by: str = ""
    error: str | None = None

    @property
    def fraud(self) -> int:
        return sum(n for s, n in self.by_scenario.items() if s != MALFORMED)

    @property
    def malformed(self) -> int:
        return self.by_scenario.get(MALFORMED, 0)

    @property
    def genuine(self) -> int:
        return self.sent - sum(self.by_scenario.values())

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def event_time(ts_ms: int | None) -> str:
    if ts_ms is None or ts_ms < 0:
        return "-"
    return _format_ts(ts_ms)


class Reporter(Protocol):
    def start(self, total: int | None) -> None: ...
    def update(self, stats: RunStats) -> None: ...
    def stop(self, stats: RunStats) -> None: ...


class LogReporter:
    """One line every ``interval_s`` seconds: for pipes, ``make run`` and CI."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self._last_sent = 0
        self._last_t = 0.0

    def start(self, total: int | None) -> None:
        now = time.monotonic()
        self._next = now + self.interval_s
        self._last_t = now

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        window = now - self._last_t
        recent = (stats.sent - self._last_sent) / window if window > 0 else 0.0
        self._last_sent, self._last_t, self._next = stats.sent, now, now + self.interval_s
        _log.info(
            "sent %s (%.1f/s now, %.1f/s average) delivered %s failed %s fraud %s "
            "malformed %s event time %s",
            f"{stats.sent:,}",
            recent,
            stats.rate,
            f"{stats.delivered:,}",
            stats.failed,
            f"{stats.fraud:,}",
            f"{stats.malformed:,}",
            event_time(stats.last_ts_ms),
        )

    def stop(self, stats: RunStats) -> None:
        """The summary is logged by the caller."""


class RichReporter:
    """A live progress line on the terminal (count/total when the run has a known length)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=Console(stderr=True),
            refresh_per_second=4,
        )
        self._task: Any = None
        self._next = 0.0

    def start(self, total: int | None) -> None:
        self._progress.start()
        self._task = self._progress.add_task("send", total=total, rate="", detail="")

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.25
        self._progress.update(
            self._task,
            completed=stats.sent,
            rate=f"{stats.rate:,.0f} tx/s",
            detail=(
                f"fraud {stats.fraud:,} bad {stats.malformed:,} failed {stats.failed} "
                f"[dim]{event_time(stats.last_ts_ms)[:19]}"
            ),
        )

    def stop(self, stats: RunStats) -> None:
        self._next = 0.0
        self.update(stats)
        self._progress.stop()


def summary_lines(stats: RunStats, destination: str, *, scenarios: bool = True) -> list[str]:
    """The final report: what was sent where, delivered, failed, and by scenario.

    ``scenarios`` False leaves out the scenario counts (a replayed file has no ground truth).
    """
    lines = [
        f"stopped ({stats.stopped_by}): sent {stats.sent:,} records to {destination} in "
        f"{stats.elapsed_s:.1f} s ({stats.rate:,.1f}/s)",
        f"delivered {stats.delivered:,}, failed {stats.failed:,}, "
        f"unconfirmed {stats.unconfirmed:,}",
    ]
    if scenarios:
        parts = [f"genuine {stats.genuine:,}"] + [
            f"{name} {n:,}" for name, n in sorted(stats.by_scenario.items())
        ]
        lines.append("by scenario: " + ", ".join(parts))
    if stats.first_ts_ms is not None:
        lines.append(
            f"event time {event_time(stats.first_ts_ms)} .. {event_time(stats.last_ts_ms)}"
        )
    return lines
