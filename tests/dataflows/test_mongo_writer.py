"""The background MongoDB writer: in order, a barrier that waits, failures that surface."""

from __future__ import annotations

import threading
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from dataflows.io.mongo_io import BackgroundWriter, MongoUnavailable

TIMEOUT_S = 10.0


def test_batches_are_written_in_order_and_drain_waits_for_all_of_them() -> None:
    written: list[int] = []
    release = threading.Event()

    def slow_write(batch: list) -> None:
        assert release.wait(TIMEOUT_S)
        written.extend(d["n"] for d in batch)

    w = BackgroundWriter(slow_write, "t", max_pending=100)
    for i in range(0, 50, 5):
        w.submit([{"n": n} for n in range(i, i + 5)])
    assert written == []  # nothing can be written before release
    threading.Timer(0.2, release.set).start()
    w.drain()
    assert written == list(range(50))
    w.close()


def test_a_failed_write_is_raised_by_drain_and_later_batches_are_not_written() -> None:
    written: list[int] = []

    def write(batch: list) -> None:
        if batch[0]["n"] == 1:
            raise MongoUnavailable("gone")
        written.append(batch[0]["n"])

    w = BackgroundWriter(write, "t", max_pending=10)
    for n in range(4):
        w.submit([{"n": n}])
    with pytest.raises(MongoUnavailable, match="gone"):
        w.drain()
    assert written == [0]
    with pytest.raises(MongoUnavailable):
        w.submit([{"n": 9}])  # the dataflow must stop, not queue more


def test_submit_blocks_when_max_pending_batches_wait() -> None:
    release = threading.Event()
    w = BackgroundWriter(lambda batch: release.wait(TIMEOUT_S), "t", max_pending=2)
    w.submit([{}])  # taken by the thread, blocked in write
    w.submit([{}])
    w.submit([{}])  # the queue now holds max_pending batches
    blocked = threading.Event()
    done = threading.Event()

    def one_more() -> None:
        blocked.set()
        w.submit([{}])
        done.set()

    threading.Thread(target=one_more, daemon=True).start()
    assert blocked.wait(TIMEOUT_S)
    assert not done.wait(0.3)  # backpressure: waits for room
    release.set()
    assert done.wait(TIMEOUT_S)
    w.close()


def test_close_writes_what_is_queued_then_stops_the_thread() -> None:
    written: list[int] = []
    w = BackgroundWriter(lambda batch: written.append(len(batch)), "t", max_pending=4)
    w.submit([{}, {}])
    w.close()
    assert written == [2]
    assert not w._thread.is_alive()


class _Recorder(StatefulSinkPartition[int, None]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write_batch(self, values: list[int]) -> None:
        self.log.append("write")

    def snapshot(self) -> None:
        self.log.append("snapshot")


class _RecordingSink(FixedPartitionedSink[int, None]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Recorder:
        return _Recorder(self.log)


def test_bytewax_snapshots_a_partitioned_sink_at_each_epoch_close_it_wrote_in(tmp_path) -> None:
    """The barrier the MongoDB sinks rely on: no epoch closes with its writes unconfirmed."""
    log: list[str] = []
    flow = Dataflow("barrier")
    nums = op.input("in", flow, TestingSource(list(range(6)), batch_size=2))
    op.output("out", op.key_on("key", nums, lambda _: "k"), _RecordingSink(log))
    init_db_dir(tmp_path, 1)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    assert log.count("write") == 3
    # Every write is followed by a snapshot before the next write (one epoch per batch).
    assert log[-1] == "snapshot"
    assert "write,write" not in ",".join(log)
