"""Soak: repeat the broker faults that once lost alerts, many times, and check every record.

``python -m tests.chaos.soak`` (or ``make soak``; not part of ``make test``) starts one private
Kafka + FerretDB on free ports (the shared stack is never touched), then, per run, on fresh
topics and a fresh database: realistic producer traffic (its own seed), the dataflow with
recovery and ``FRAUD_STOP_AT_END=1``, and one fault at a random moment of the input:

- ``outage``: the broker is stopped cleanly (SIGTERM) and started again a few seconds later;
- ``kill9``: the broker is killed with SIGKILL and restarted at once;
- ``clean``: no fault (the plain oracle run).

A non-zero exit is restarted with recovery, as a supervisor would, until it exits 0 (or gives
up). Then MongoDB and the alerts topic are compared with the backtest oracle, the statistics'
transaction count with the number of judged records, and each input partition's end offset
with the offset the dataflow says it read to. Every run is recorded (seed, timings, exit codes,
offsets, the dataflow's offset log lines, the verdict) as JSON, with the dataflow log, under
the results folder; a tally (runs, losses, duplicates, exits by code) is printed at the end
and written to ``tally.json``.

A **loss** is a run whose last execution exited 0 while an expected alert is missing from
MongoDB or ``fraud-alerts``, the statistics counted fewer transactions than were judged, or
the dead-letter topic holds fewer records than were rejected: the one outcome fraudwatch
promises never to produce. The exit status is 0 only when every run is ``ok``.

Input is sent with ``produce_in_order`` (``--producer ordered``, the default) and read back;
``--producer suite`` sends it the way the suites did before issue #15 (a plain producer, which
can append a key's first records after later ones right after a broker start): every run
records how many keys the topic holds out of the sent order (``input_keys_reordered``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.stack import REPO_ROOT, LocalStack, StackConfig
from fraudwatch import clients
from tests.chaos.input import keys_out_of_order, produce_in_order, read_partitions
from tests.integration.pipeline import (
    PipelineEnv,
    consume_all,
    oracle,
    produce,
    recovery_args,
)

FAULTS = ("outage", "kill9", "clean")
# Log lines that say what the source did with its offsets (kept in every run record).
SOURCE_LINES = (
    "read to its end",
    "offsets skipped",
    "starting dataflow",
    "kafka consumer error",
    "input unjudged",
    "Traceback",
    "Error",
)


@dataclass
class RunRecord:
    """Everything one run did and found; written as JSON next to its dataflow log."""

    run: int
    fault: str
    seed: int
    commit: str
    producer: str = ""
    tag: str = ""
    transactions: int = 0
    judged: int = 0
    input_keys_reordered: int = 0
    # Only when the topic holds keys out of the sent order: the comparison with an oracle of
    # the topic's own order (what the dataflow was given), MongoDB's lost/spurious.
    topic_order_lost: int | None = None
    topic_order_spurious: int | None = None
    expected_alerts: int = 0
    batch_size: int = 0
    fault_at_fraction: float = 0.0
    fault_at_s: float | None = None
    outage_s: float | None = None
    broker_back_s: float | None = None
    exits: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    mongo_lost: int = 0
    mongo_spurious: int = 0
    mongo_duplicate_docs: int = 0
    kafka_lost: int = 0
    kafka_spurious: int = 0
    kafka_duplicates: int = 0
    dead_lettered: int = 0
    stats_transactions: int = 0
    input_ends: dict[str, int] = field(default_factory=dict)
    read_to: dict[str, int] = field(default_factory=dict)
    source_lines: list[str] = field(default_factory=list)
    verdict: str = ""
    error: str | None = None


def _listener_port() -> int:
    """A free port below the kernel's ephemeral range (32768+).

    The broker is down for seconds in every fault run; a port from the ephemeral range (what
    ``free_port`` hands out) can meanwhile become the local end of some other process's
    outgoing connection, and the broker then cannot come back (seen once in 90 runs).
    """
    import socket

    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _git_commit() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def _generated(path: Path, count: int, cards: int, seed: int) -> list[bytes]:
    """Realistic producer traffic (fraud stories, 0.5 % malformed records), as sent."""
    subprocess.run(
        [sys.executable, "-m", "producer", "generate", "--no-kafka", "--rate", "max",
         "--count", str(count), "--cards", str(cards), "--seed", str(seed),
         "--start", "2026-11-20T00:00:00Z", "--bad-ratio", "0.005", "--fraud-ratio", "0.05",
         "--out", str(path)],
        check=True, cwd=REPO_ROOT, capture_output=True, timeout=600,
    )  # fmt: skip
    values = [line for line in path.read_bytes().split(b"\n") if line]
    path.unlink()
    return values


def _judged(values: list[bytes]) -> int:
    from dataflows.backtest import run_backtest
    from dataflows.detection.ruleset import load_ruleset
    from tests.integration.pipeline import TOKEN_KEY

    return sum(1 for _ in run_backtest(values, load_ruleset(), TOKEN_KEY, Counter()))


def _end_offsets(bootstrap: str, topic: str, partitions: int = 3) -> dict[str, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        clients.consumer_config(clients.plaintext_kafka(bootstrap), "soak-watermarks")
    )
    try:
        return {
            str(p): int(consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1])
            for p in range(partitions)
        }
    finally:
        consumer.close()


def _stats_count(db: Any) -> int:
    return int(sum(d["transactions"] for d in db.alert_stats.find({}, {"transactions": 1})))


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return int(proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return -9


class Soak:
    """One private stack and the runs on it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.commit = _git_commit()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out: Path = args.results / f"{stamp}-{self.commit}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.stack = LocalStack(
            StackConfig(
                data_dir=self.out / "stack",
                build_dir=args.build_dir,
                kafka_port=_listener_port(),
                controller_port=_listener_port(),
                mongo_port=_listener_port(),
                topics={},
            )
        )
        self.records: list[RunRecord] = []

    # ------------------------------------------------------------------ one run

    def run_one(self, n: int, fault: str) -> RunRecord:

        args = self.args
        seed = args.seed + n
        rng = random.Random(seed)
        rec = RunRecord(run=n, fault=fault, seed=seed, commit=self.commit)
        work = self.out / f"run-{n:04d}-{fault}"
        work.mkdir()
        log = work / "dataflow.log"
        t0 = time.monotonic()
        pipe = PipelineEnv(self.stack.config.bootstrap, self.stack.config.mongodb_uri)
        rec.tag = pipe.tag
        client: Any = clients.mongo_client(
            clients.mongo_at(pipe.mongo_uri), serverSelectionTimeoutMS=10_000
        )
        db = client[pipe.db]
        try:
            values = _generated(work / "tx.jsonl", args.count, args.cards, seed)
            rec.transactions = len(values)
            rec.judged = _judged(values)
            expected = oracle(values)
            rec.expected_alerts = len(expected)
            pipe.create_topics()
            rec.producer = args.producer
            if args.producer == "suite":
                produce(pipe.bootstrap, pipe.tx, values)  # what the suites used to send with
            else:
                produce_in_order(pipe.bootstrap, pipe.tx, values, verify=False)
            held = read_partitions(pipe.bootstrap, pipe.tx)
            rec.input_keys_reordered = keys_out_of_order(values, held)
            as_held = [v for p in sorted(held) for _, v in held[p]]
            rec.input_ends = _end_offsets(pipe.bootstrap, pipe.tx)

            rec.batch_size = rng.choice(args.batch_sizes)
            flags = recovery_args(work / "recovery")
            env = {
                "FRAUD_STOP_AT_END": "1",
                "FRAUD_BATCH_SIZE": str(rec.batch_size),
                "FRAUD_FLUSH_TIMEOUT_S": "60",
                "FRAUD_BROKER_TIMEOUT_S": "60",
            }
            proc = pipe.start(log, *flags, **env)
            started = time.monotonic()
            if fault != "clean":
                self._inject(fault, rng, rec, db, proc, started)
            code = _wait_exit(proc, args.run_timeout)
            rec.exits.append(code)
            # A supervisor's restart with recovery, until the dataflow finishes (exit 0).
            while code != 0 and len(rec.exits) <= args.restarts:
                self.stack.up(kafka=True, mongo=False)
                code = _wait_exit(pipe.start(log, *flags, **env), args.run_timeout)
                rec.exits.append(code)
            self._check(rec, pipe, db, expected, log)
            if rec.input_keys_reordered:
                docs = {d["_id"] for d in db.alerts.find({}, {"_id": 1})}
                of_topic = oracle(as_held)
                rec.topic_order_lost = len(set(of_topic) - docs)
                rec.topic_order_spurious = len(docs - set(of_topic))
        except Exception as exc:  # recorded, the soak goes on
            rec.error = f"{type(exc).__name__}: {exc}"
            rec.verdict = "harness-error"
        finally:
            rec.duration_s = round(time.monotonic() - t0, 1)
            with contextlib.suppress(Exception):
                self.stack.up(kafka=True, mongo=False)  # a broken run must not break the next
                if not args.keep:
                    pipe.delete_topics()
            with contextlib.suppress(Exception):
                if not args.keep:
                    client.drop_database(pipe.db)
            client.close()
            (work / "run.json").write_text(json.dumps(asdict(rec), indent=1))
        return rec

    def _inject(
        self,
        fault: str,
        rng: random.Random,
        rec: RunRecord,
        db: Any,
        proc: subprocess.Popen[bytes],
        started: float,
    ) -> None:
        """Wait until a random share of the input is judged, then break the broker."""
        rec.fault_at_fraction = round(rng.uniform(0.02, 0.8), 3)
        target = rec.fault_at_fraction * rec.judged
        deadline = time.monotonic() + self.args.run_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _stats_count(db) >= target:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            return  # finished before the fault: recorded as fault_at_s None
        rec.fault_at_s = round(time.monotonic() - started, 2)
        if fault == "outage":
            self.stack.stop(["kafka"])
            rec.outage_s = round(rng.uniform(*self.args.outage_s), 1)
            time.sleep(rec.outage_s)
        else:
            self.stack.kill("kafka")
            time.sleep(rng.uniform(0.0, 1.0))
        down = time.monotonic()
        self.stack.up(kafka=True, mongo=False)
        rec.broker_back_s = round(time.monotonic() - down, 1)

    def _check(
        self,
        rec: RunRecord,
        pipe: PipelineEnv,
        db: Any,
        expected: dict[str, dict[str, Any]],
        log: Path,
    ) -> None:
        docs = Counter(d["_id"] for d in db.alerts.find({}, {"_id": 1}))
        rec.mongo_lost = len(set(expected) - set(docs))
        rec.mongo_spurious = len(set(docs) - set(expected))
        rec.mongo_duplicate_docs = sum(docs.values()) - len(docs)
        sent = Counter(
            json.loads(v)["alert_id"] for _, v in consume_all(pipe.bootstrap, pipe.alerts)
        )
        rec.kafka_lost = len(set(expected) - set(sent))
        rec.kafka_spurious = len(set(sent) - set(expected))
        rec.kafka_duplicates = sum(sent.values()) - len(sent)
        rec.stats_transactions = _stats_count(db)
        rec.dead_lettered = len(consume_all(pipe.bootstrap, pipe.dlq))
        lines = log.read_text(errors="replace").splitlines()
        rec.source_lines = [ln[:600] for ln in lines if any(k in ln for k in SOURCE_LINES)][-60:]
        for ln in lines:
            if "read to its end" in ln and ln.startswith("{"):
                with contextlib.suppress(ValueError, KeyError):
                    d = json.loads(ln)
                    rec.read_to[str(d["partition"])] = int(d["offset"])
        missing = (
            rec.mongo_lost
            or rec.kafka_lost
            or rec.stats_transactions < rec.judged
            or rec.dead_lettered < rec.transactions - rec.judged
        )
        if rec.exits[-1] != 0:
            rec.verdict = "failed-exit"
        elif missing:
            rec.verdict = "loss"
        elif rec.mongo_spurious or rec.kafka_spurious or rec.mongo_duplicate_docs:
            rec.verdict = "wrong"
        else:
            rec.verdict = "ok"

    # ------------------------------------------------------------------ the session

    def tally(self) -> dict[str, Any]:
        recs = self.records
        by_fault: dict[str, dict[str, Any]] = {}
        for f in sorted({r.fault for r in recs}):
            rs = [r for r in recs if r.fault == f]
            by_fault[f] = {
                "runs": len(rs),
                "losses": sum(r.verdict == "loss" for r in rs),
                "losses_with_input_in_order": sum(
                    r.verdict == "loss" and not r.input_keys_reordered for r in rs
                ),
                "input_reordered_runs": sum(r.input_keys_reordered > 0 for r in rs),
                "losses_gone_against_topic_order": sum(
                    r.verdict == "loss" and r.topic_order_lost == 0 == r.topic_order_spurious
                    for r in rs
                ),
                "lost_alerts": sum(max(r.mongo_lost, r.kafka_lost) for r in rs),
                "verdicts": dict(Counter(r.verdict for r in rs)),
                "kafka_duplicate_deliveries": sum(r.kafka_duplicates for r in rs),
                "mongo_duplicate_docs": sum(r.mongo_duplicate_docs for r in rs),
                "exits": dict(Counter(str(c) for r in rs for c in r.exits)),
                "restarted_runs": sum(len(r.exits) > 1 for r in rs),
                "fault_missed": sum(r.fault != "clean" and r.fault_at_s is None for r in rs),
                "mean_duration_s": round(sum(r.duration_s for r in rs) / len(rs), 1),
            }
        return {
            "commit": self.commit,
            "results": str(self.out),
            "runs": len(recs),
            "producer": self.args.producer,
            "losses": sum(r.verdict == "loss" for r in recs),
            "losses_with_input_in_order": sum(
                r.verdict == "loss" and not r.input_keys_reordered for r in recs
            ),
            "by_fault": by_fault,
            "loss_runs": [f"run-{r.run:04d}-{r.fault}" for r in recs if r.verdict == "loss"],
        }

    def main(self) -> int:
        args = self.args
        print(f"[soak] results in {self.out}", flush=True)
        self.stack.up(kafka=True, mongo=True)
        plan = [f for _ in range(args.runs) for f in args.faults]  # faults interleaved
        try:
            for n, fault in enumerate(plan, start=1):
                rec = self.run_one(n, fault)
                self.records.append(rec)
                print(
                    f"[soak] {n}/{len(plan)} {fault:6} seed={rec.seed} {rec.verdict:13} "
                    f"exits={rec.exits} lost mongo/kafka={rec.mongo_lost}/{rec.kafka_lost} "
                    f"stats={rec.stats_transactions}/{rec.judged} "
                    f"dup={rec.kafka_duplicates} reordered_keys={rec.input_keys_reordered} "
                    f"{rec.duration_s}s" + (f" {rec.error}" if rec.error else ""),
                    flush=True,
                )
                (self.out / "tally.json").write_text(json.dumps(self.tally(), indent=1))
        finally:
            self.stack.stop()
        tally = self.tally()
        print(json.dumps(tally, indent=1))
        return 0 if all(r.verdict == "ok" for r in self.records) else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__)
    p.add_argument("--runs", type=int, default=30, help="runs per fault (default 30)")
    p.add_argument(
        "--faults",
        type=lambda s: [f for f in s.split(",") if f],
        default=list(FAULTS),
        help=f"comma-separated, of {','.join(FAULTS)} (default all)",
    )
    p.add_argument(
        "--producer",
        choices=("ordered", "suite"),
        default="ordered",
        help="ordered: idempotent, leaders known first (tests/chaos/input.py); suite: the "
        "plain producer the suites used before (can reorder a key's records)",
    )
    p.add_argument("--count", type=int, default=6000, help="transactions per run")
    p.add_argument("--cards", type=int, default=600)
    p.add_argument("--seed", type=int, default=15_000, help="run n uses seed SEED + n")
    p.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[5, 20, 200],
        help="FRAUD_BATCH_SIZE, drawn per run",
    )
    p.add_argument(
        "--outage-s",
        type=lambda s: tuple(float(x) for x in s.split(",")),
        default=(2.0, 8.0),
        help="min,max seconds of a clean broker outage",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep each run's topics and database (debugging)"
    )
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--restarts", type=int, default=3, help="restarts after a non-zero exit")
    p.add_argument("--results", type=Path, default=REPO_ROOT / ".stack" / "soak")
    p.add_argument(
        "--build-dir",
        type=Path,
        default=REPO_ROOT / ".stack" / "build",
        help="where the Kafka jars and FerretDB are (built there if missing)",
    )
    args = p.parse_args(argv)
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        p.error(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
    return args


def main(argv: list[str] | None = None) -> int:
    return Soak(_parse(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
