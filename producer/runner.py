"""The send loop shared by ``generate``, ``replay`` and ``labels``: pacing, limits, stopping.

Pacing uses an absolute schedule (record ``n`` is due at ``start + due(n)``), so sleeping
late never accumulates into drift: at a fixed rate the achieved rate converges on the target.
Chargebacks interleaved with generated transactions (``Record.chargeback``) go to a sink of
their own; they are paced with the transaction that follows them and are not counted as
records, so ``--count``, ``--rate`` and the progress figures mean transactions.
"""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Protocol

import orjson

from producer.errors import DeliveryFailed
from producer.progress import Reporter, RunStats
from producer.records import Label, Record

_CHECK_MASK = 1023  # housekeeping every 1024 records when sending flat out
_MAX_SLEEP_S = 0.2  # stay responsive to signals and progress while waiting


class Sink(Protocol):
    delivered: int
    failed: int

    def send(self, key: bytes | None, value: bytes, label: Label | None) -> None: ...
    def poll(self) -> None: ...
    def flush(self, timeout_s: float) -> int: ...
    def close(self) -> None: ...


class Pacer(Protocol):
    def due(self, n: int, ts_ms: int) -> float:
        """Seconds after the start at which record ``n`` (event time ``ts_ms``) may go."""
        ...


@dataclass(slots=True)
class RatePacer:
    """A fixed number of records per second, whatever their event times."""

    rate: float

    def due(self, n: int, ts_ms: int) -> float:
        return n / self.rate


@dataclass(slots=True)
class EventTimePacer:
    """Event time drives the schedule: ``speed`` 1 is real time, 10 is ten times faster.

    ``origin_ms`` is the event time that maps to the start (the first record's when None).
    Records without a usable timestamp (``ts_ms < 0``) or earlier than one already sent go
    immediately.
    """

    speed: float = 1.0
    origin_ms: int | None = None

    def due(self, n: int, ts_ms: int) -> float:
        if ts_ms < 0:
            return 0.0
        if self.origin_ms is None:
            self.origin_ms = ts_ms
        return (ts_ms - self.origin_ms) / 1000.0 / self.speed


@dataclass(frozen=True, slots=True)
class Limits:
    """When to stop: after ``count`` records, ``duration_s`` seconds or at event time ``until``."""

    count: int | None = None
    duration_s: float | None = None
    until_ts_ms: int | None = None


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop finishes the record in hand, flushes and reports."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM until :meth:`restore`; a second SIGINT aborts the flush."""

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal = signal.Signals(signum).name

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, handler)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


class LabelWriter:
    """Writes ground truth as JSON lines: one per fraudulent or malformed record sent."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._write = stream.write
        self.lines = 0

    def __call__(self, label: Label, partition: int | None, offset: int | None) -> None:
        self._write(
            orjson.dumps(
                {
                    "transaction_id": label.transaction_id,
                    "account_id": label.account_id,
                    "story_id": label.story_id,
                    "scenario": label.scenario,
                    "partition": partition,
                    "offset": offset,
                }
            )
        )
        self._write(b"\n")
        self.lines += 1


def _copy_delivery(stats: RunStats, sink: Sink, chargeback_sink: Sink | None) -> None:
    stats.delivered, stats.failed = sink.delivered, sink.failed
    if chargeback_sink is not None:
        stats.chargebacks_delivered = chargeback_sink.delivered
        stats.chargebacks_failed = chargeback_sink.failed


def run(
    records: Iterator[Record],
    sink: Sink,
    *,
    limits: Limits,
    pacer: Pacer | None = None,
    reporter: Reporter | None = None,
    out: IO[bytes] | None = None,
    stop: StopRequest | None = None,
    flush_timeout_s: float = 15.0,
    end_of_input: str = "end of input",
    chargeback_sink: Sink | None = None,
) -> RunStats:
    """Send records until a limit, the end of the input or a stop request; flush; count.

    A delivery failure stops the run too: ``stats.error`` then says what failed.

    Raises:
        ValueError: a chargeback record arrives and there is no ``chargeback_sink``.
    """
    stats = RunStats()
    sinks = [sink] if chargeback_sink is None else [sink, chargeback_sink]
    stop = stop if stop is not None else StopRequest()
    count = limits.count
    until = limits.until_ts_ms
    deadline = None if limits.duration_s is None else time.monotonic() + limits.duration_s
    by_scenario = stats.by_scenario
    send = sink.send
    write = out.write if out is not None else None
    monotonic = time.monotonic
    if reporter is not None:
        reporter.start(count)
    # The population and the simulator are long-lived: keep the collector off them, and let
    # the young generation grow, since every send leaves a future behind until it is acked.
    gc.freeze()
    old_threshold = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    t0 = monotonic()
    n = 0
    stopped_by = end_of_input
    last_ts: int | None = None
    first_ts: int | None = None

    def housekeeping() -> str | None:
        stats.sent = n
        stats.last_ts_ms = last_ts
        stats.elapsed_s = monotonic() - t0
        for each in sinks:
            each.poll()
        _copy_delivery(stats, sink, chargeback_sink)
        if reporter is not None:
            reporter.update(stats)
        if stop:
            return stop.signal
        if deadline is not None and monotonic() >= deadline:
            return "duration"
        return None

    try:
        if count is not None and count <= 0:
            stopped_by = "count"
            records = iter(())
        for ts, key, value, label, chargeback in records:
            if until is not None and ts >= until:
                stopped_by = "days"
                break
            if pacer is not None:
                if n == 0:  # the schedule starts with the first record, not with set-up
                    t0 = monotonic()
                due = t0 + pacer.due(n, ts)
                reason = None
                while (wait := due - monotonic()) > 0:
                    time.sleep(min(wait, _MAX_SLEEP_S))
                    reason = housekeeping()
                    if reason:
                        break
                if reason:
                    stopped_by = reason
                    break
            if chargeback:
                if chargeback_sink is None:
                    raise ValueError("a chargeback record, but no sink for chargebacks")
                chargeback_sink.send(key, value, None)
                stats.chargebacks += 1
                continue
            send(key, value, label)
            if write is not None:
                write(value)
                write(b"\n")
            n += 1
            if ts >= 0:
                last_ts = ts
                if first_ts is None:
                    first_ts = stats.first_ts_ms = ts
            if label is not None:
                by_scenario[label.scenario] += 1
            if n == count:
                stopped_by = "count"
                break
            if pacer is not None or not n & _CHECK_MASK:
                reason = housekeeping()
                if reason:
                    stopped_by = reason
                    break
        stats.sent = n
        stats.last_ts_ms = last_ts
        stats.stopped_by = stopped_by
        stats.unconfirmed = sum(each.flush(flush_timeout_s) for each in sinks)
    except DeliveryFailed as exc:
        stats.sent = n
        stats.last_ts_ms = last_ts
        stats.stopped_by = "delivery failed"
        stats.error = str(exc)
        attempted = stats.sent + stats.chargebacks
        stats.unconfirmed = attempted - sum(each.delivered + each.failed for each in sinks)
    finally:
        stats.elapsed_s = monotonic() - t0
        _copy_delivery(stats, sink, chargeback_sink)
        gc.set_threshold(*old_threshold)
        gc.unfreeze()
        if reporter is not None:
            reporter.stop(stats)
    return stats
