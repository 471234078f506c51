"""``python -m bench.engine FILE``: the dataflow's own CPU cost, without Kafka or MongoDB.

Runs ``dataflows.fraud.build_flow`` in this process on a producer ``--out`` file (records
spread over ``--partitions`` by account, as the producer keys them), with Bytewax recovery
on and sinks that only count. What it measures is the work that is ours plus Bytewax's own:
validation, tokenisation, per-card state and rules, snapshots, stats. The whole-pipeline
figures (``make bench``) add the Kafka consumer, the producers and MongoDB on top.

Profile it with ``py-spy record -o profile.svg -- python -m bench.engine FILE``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from dataflows.fraud import RawRecord, Sinks, build_flow
from dataflows.settings import DataflowSettings


class _Count(StatelessSinkPartition[Any]):
    def __init__(self, counts: dict[str, int], name: str) -> None:
        self._counts = counts
        self._name = name

    def write_batch(self, items: list[Any]) -> None:
        self._counts[self._name] = self._counts.get(self._name, 0) + len(items)


class CountingSink(DynamicSink[Any]):
    """Counts what would have been written."""

    def __init__(self, counts: dict[str, int], name: str) -> None:
        self._counts = counts
        self._name = name

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self._counts, self._name)


def load_records(path: Path, partitions: int, limit: int | None = None) -> list[RawRecord]:
    """The file's lines as input records, partitioned by account like the producer does."""
    out: list[RawRecord] = []
    offsets = [0] * partitions
    with path.open("rb") as f:
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            value = line.rstrip(b"\n")
            account = orjson.loads(value).get("account_id", "")
            p = zlib.crc32(str(account).encode()) % partitions
            out.append(RawRecord("bench", p, offsets[p], 0, value))
            offsets[p] += 1
    return out


def run(
    records: list[RawRecord],
    snapshot_s: float,
    batch_size: int,
    recovery: bool = True,
    model_file: Path | None = None,
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    optional: dict[str, Any] = {}
    if "features" in Sinks.__dataclass_fields__:  # the feature log (issue #12), when present
        optional["features"] = CountingSink(counts, "features")
    sinks = Sinks(
        alerts_kafka=CountingSink(counts, "alerts_kafka"),
        alerts_mongo=CountingSink(counts, "alerts_mongo"),
        stats_mongo=CountingSink(counts, "stats"),
        dlq=CountingSink(counts, "dlq"),
        **optional,
    )
    settings = DataflowSettings()
    extra: dict[str, Any] = {}
    if model_file is not None:
        from dataflows.detection.policy import GbmModel, OperatingPoint, PolicyBook

        model = GbmModel.from_text(model_file.stem, model_file.read_text())

        def one_model(book: PolicyBook) -> int:
            if len(book):
                return 0
            book.add(OperatingPoint("bench", -(2**62), model, 0.5))
            return 1

        extra["model_source"] = one_model
    source = TestingSource(records, batch_size=batch_size)
    flow = build_flow(settings, source=source, sinks=sinks, **extra)
    with tempfile.TemporaryDirectory(prefix="fraudwatch-engine-") as tmp:
        kw: dict[str, Any] = {"epoch_interval": timedelta(seconds=snapshot_s)}
        if recovery:
            init_db_dir(Path(tmp), 1)
            kw["recovery_config"] = RecoveryConfig(tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        run_main(flow, **kw)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "transactions": len(records),
        "seconds": round(elapsed, 3),
        "tx_per_s": round(len(records) / elapsed),
        # Per CPU second of this process: steadier than wall time on a shared machine.
        "tx_per_cpu_s": round(len(records) / cpu),
        "snapshot_s": snapshot_s,
        "recovery": recovery,
        "outputs": counts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="a producer --out file (JSON lines)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--snapshot-interval", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--no-recovery", action="store_true")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="score with this LightGBM model (a backtest --models-dir file), not the formula",
    )
    a = p.parse_args()
    records = load_records(a.file, a.partitions, a.limit)
    for _ in range(a.repeat):
        res = run(records, a.snapshot_interval, a.batch_size, not a.no_recovery, a.model)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
