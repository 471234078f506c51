"""When minute stats are written: live minutes every flush, backfilled minutes once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dataflows.steps.minute_stats import MinuteStatsLogic, StatsDelta, _empty
from fraudwatch.alert_store import NEW_MINUTE


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW_MIN = int(NOW.timestamp()) // 60
PAST = NOW_MIN - 3 * 24 * 60  # a backfill three days back


def delta(marks: dict[int, int], *minutes: int) -> StatsDelta:
    counts = {}
    for m in minutes:
        c = _empty()
        c["transactions"] = 1
        counts[m] = c
    return counts, marks


def written(logic: MinuteStatsLogic, clock: Clock, seconds: float = 3) -> list[dict]:
    clock.now += timedelta(seconds=seconds)
    assert logic.notify_at() is not None
    docs, _ = logic.on_notify()
    return docs


def test_a_backfilled_minute_waits_for_every_partition_then_is_written_once_as_an_insert() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(None, flush_s=2, retention_minutes=10_000, clock=clock)
    logic.on_batch([delta({0: PAST + 5}, PAST, PAST + 5)])
    logic.on_batch([delta({1: PAST}, PAST)])
    # Partition 1 has not passed minute PAST yet: nothing is final.
    assert written(logic, clock) == []
    logic.on_batch([delta({1: PAST + 2}, PAST + 1, PAST + 2)])
    docs = written(logic, clock)
    assert [d["_id"] for d in docs] == [d["_id"] for d in docs if d.get(NEW_MINUTE)]
    assert [d["transactions"] for d in docs] == [2, 1]  # PAST (both partitions), PAST + 1
    assert written(logic, clock) == []  # nothing is rewritten
    eof, _ = logic.on_eof()
    assert len(eof) == 2  # PAST + 2 and PAST + 5, at the end of the input


def test_live_minutes_are_written_every_flush() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(None, flush_s=2, retention_minutes=10_000, clock=clock)
    logic.on_batch([delta({0: NOW_MIN, 1: NOW_MIN - 40}, NOW_MIN)])
    first = written(logic, clock)
    assert [d["transactions"] for d in first] == [1]
    assert first[0][NEW_MINUTE] is True
    logic.on_batch([delta({0: NOW_MIN}, NOW_MIN)])
    again = written(logic, clock)
    assert [d["transactions"] for d in again] == [2]
    assert NEW_MINUTE not in again[0]  # a rewrite of the whole minute


def test_a_slow_partition_holds_minutes_back_for_as_long_as_it_advances() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(
        None, flush_s=2, retention_minutes=10_000, idle_partition_s=30, clock=clock
    )
    logic.on_batch([delta({0: PAST + 100, 1: PAST}, PAST + 50)])
    for step in range(1, 7):  # a minute of wall clock: partition 1 creeps forward
        assert written(logic, clock, 10) == []
        logic.on_batch([delta({1: PAST + step})])
    logic.on_batch([delta({1: PAST + 60})])
    assert [d["transactions"] for d in written(logic, clock)] == [1]


def test_a_partition_that_stopped_advancing_no_longer_holds_minutes_back() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(
        None, flush_s=2, retention_minutes=10_000, idle_partition_s=30, clock=clock
    )
    logic.on_batch([delta({0: PAST + 100, 1: PAST}, PAST + 50)])
    assert written(logic, clock, 10) == []
    logic.on_batch([delta({0: PAST + 120})])  # partition 0 goes on; partition 1 is idle
    assert written(logic, clock, 10) == []
    assert [d["transactions"] for d in written(logic, clock, 11)] == [1]
    assert logic.notify_at() is None


def test_dirty_minutes_in_a_snapshot_are_written_after_a_resume() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(None, flush_s=2, retention_minutes=10_000, clock=clock)
    logic.on_batch([delta({0: PAST + 1, 1: PAST}, PAST)])
    resumed = MinuteStatsLogic(logic.snapshot(), flush_s=2, retention_minutes=10_000, clock=clock)
    # No partition has reported since the resume, so none holds the minute back.
    assert written(resumed, clock)[0]["transactions"] == 1


def test_a_partition_days_behind_the_others_keeps_its_counts() -> None:
    clock = Clock(NOW)
    logic = MinuteStatsLogic(None, flush_s=2, retention_minutes=60, clock=clock)
    # Partition 0 runs five hours of event time ahead (retention: one hour) before partition
    # 1's first batch arrives: a backfill whose partitions are read at different speeds.
    logic.on_batch([delta({0: PAST + 300}, PAST + 300)])
    logic.on_batch([delta({1: PAST}, PAST)])
    assert [d["transactions"] for d in written(logic, clock)] == []  # both held by partition 1
    logic.on_batch([delta({1: PAST + 1}, PAST, PAST + 1)])
    logic.on_batch([delta({1: PAST + 400}, PAST + 400)])
    docs = written(logic, clock)
    assert [(d["_id"], d["transactions"]) for d in docs][:2] == [
        (docs[0]["_id"], 2),  # PAST: both of partition 1's transactions, nothing dropped
        (docs[1]["_id"], 1),
    ]
    assert docs[0]["minute"] == datetime.fromtimestamp(PAST * 60, UTC)
    assert (
        sum(d["transactions"] for d in docs) + sum(d["transactions"] for d in logic.on_eof()[0])
        == 5
    )
