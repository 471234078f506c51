"""The dataflow's MongoDB writes on two servers, alternating in one session: alert inserts
(``write_alerts``) and statistics rewrites (``write_stats``), so that a patched FerretDB can be
compared with another build (or MongoDB) without the noise of separate sessions.

    .venv/bin/python -m bench.mongo_writes --a mongodb://127.0.0.1:27131 \\
        --b mongodb://127.0.0.1:27132 [--alerts 10000] [--rounds 3]

Each round, on each server in turn (A then B, B then A in the next round), a scratch database
gets the shared indexes, ``--alerts`` alerts in batches of 500 through ``write_alerts`` (the
last 2,000 timed), then 500 minutes of ``alert_stats`` inserted once and rewritten twice
(``$set`` upserts, the path a replay or a late minute takes). Prints each timing per server
and the ratio B/A of the medians (> 1: B is slower).

``--drain N`` then also runs the dataflow (stop at end, recovery on) over one preloaded topic
of N transactions on the local stack's Kafka, writing its alerts to A and to B in turn: what
the write costs mean for the pipeline, where the sink writes on its own thread.

``--b-without PREFIX`` (repeatable) drops B's alert indexes whose names start with PREFIX
before writing, to time what indexes cost the inserts: ``--b-without by_rule_ --b-without
by_time`` is the index set from before the rule queue keys and the in-day time index (#13).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bench import throughput
from bench.common import Procs, Stack, new_run_id, run_logs, scratch_run
from devtools.demo_data import demo_pan, make_alert_doc
from fraudwatch.alert_store import (
    ALERT_STATS,
    ALERTS,
    NEW_MINUTE,
    ensure_indexes,
    minute_id,
    write_alerts,
    write_stats,
)
from fraudwatch.cards import CardTokenizer
from fraudwatch.clients import mongo_at, mongo_client

Doc = dict[str, Any]
T = TypeVar("T")
BATCH = 500
TIMED_ALERTS = 2000
MINUTES = 500


def one_round(uri: str, alerts: int, seed: int, without: tuple[str, ...] = ()) -> dict[str, float]:
    """Seconds per write kind on a fresh database of the server at ``uri``, without the alert
    indexes whose names start with one of ``without``."""
    client = mongo_client(mongo_at(uri))
    db = client[f"bench_writes_{uuid.uuid4().hex[:8]}"]
    try:
        ensure_indexes(db)
        for name in db[ALERTS].index_information():
            if without and name.startswith(without):
                db[ALERTS].drop_index(name)
        rng = random.Random(seed)
        tokenizer = CardTokenizer("w" * 32)
        now = datetime.now(UTC)
        docs = [
            make_alert_doc(
                rng,
                tokenizer,
                ts=now - timedelta(seconds=rng.uniform(0, 7 * 86400)),
                seq=seq,
                pan=demo_pan(rng.randrange(20_000)),
            )
            for seq in range(alerts)
        ]
        out: dict[str, float] = {}
        untimed, timed = docs[:-TIMED_ALERTS], docs[-TIMED_ALERTS:]
        for i in range(0, len(untimed), BATCH):
            write_alerts(db[ALERTS], untimed[i : i + BATCH])
        t0 = time.perf_counter()
        for i in range(0, len(timed), BATCH):
            write_alerts(db[ALERTS], timed[i : i + BATCH])
        out[f"alert inserts ({TIMED_ALERTS:,})"] = time.perf_counter() - t0
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES)
        minutes = [start + timedelta(minutes=m) for m in range(MINUTES)]

        def stats(new: bool, n: int) -> list[Doc]:
            rows: list[Doc] = []
            for m in minutes:
                row: Doc = {"_id": minute_id(m), "minute": m, "alerts": n, "transactions": 9 * n}
                if new:
                    row[NEW_MINUTE] = True
                rows.append(row)
            return rows

        t0 = time.perf_counter()
        for i in range(0, MINUTES, 100):
            write_stats(db[ALERT_STATS], stats(True, 1)[i : i + 100])
        out[f"stats inserts ({MINUTES})"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for n in (2, 3):
            for i in range(0, MINUTES, 100):
                write_stats(db[ALERT_STATS], stats(False, n)[i : i + 100])
        out[f"stats rewrites ({2 * MINUTES})"] = time.perf_counter() - t0
        return out
    finally:
        client.drop_database(db.name)
        client.close()


def in_turn(round_no: int, first: T, second: T) -> tuple[T, T]:
    """A then B in even rounds, B then A in odd ones: drift in the machine hits both alike."""
    return (first, second) if round_no % 2 == 0 else (second, first)


def drain_rounds(a: str, b: str, count: int, rounds: int) -> dict[str, list[float]]:
    """Seconds for the dataflow to drain one preloaded topic of ``count`` transactions with its
    alerts written to server A and to server B, alternating; checks each wrote every alert."""
    run_id = new_run_id()
    out: dict[str, list[float]] = {"A": [], "B": []}
    with scratch_run(Stack.from_env(), run_id) as scratch, Procs(run_logs(run_id)) as procs:
        pre = throughput.preload(scratch, procs, "tx", throughput.ThroughputConfig(count=count))
        for r in range(rounds):
            for name, uri in in_turn(r, ("A", a), ("B", b)):
                label = f"{name.lower()}{r}"
                run = throughput.run_dataflow(
                    scratch, procs, label, pre["topic"], count, extra_env={"MONGODB_URI": uri}
                )
                client = mongo_client(mongo_at(uri))
                try:
                    stored = client[scratch.db_name(label)][ALERTS].estimated_document_count()
                    client.drop_database(scratch.db_name(label))
                finally:
                    client.close()
                if stored != run["alerts_kafka"]:
                    raise RuntimeError(
                        f"{label}: {stored:,} alerts in MongoDB, {run['alerts_kafka']:,} on Kafka"
                    )
                out[name].append(run["seconds"])
                print(
                    f"round {r + 1} {name} drain {count:,} tx: {run['seconds']:.2f} s, "
                    f"{stored:,} alerts",
                    flush=True,
                )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="MongoDB URI of server A (e.g. patched)")
    parser.add_argument("--b", required=True, help="MongoDB URI of server B (e.g. upstream)")
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--b-without",
        action="append",
        default=[],
        metavar="PREFIX",
        help="drop B's alert indexes whose names start with PREFIX (repeatable)",
    )
    parser.add_argument(
        "--drain",
        type=int,
        metavar="N",
        help="also time the dataflow draining N transactions into A and into B",
    )
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    for r in range(args.rounds):
        first: tuple[str, str, tuple[str, ...]] = ("A", args.a, ())
        second = ("B", args.b, tuple(args.b_without))
        for name, uri, without in in_turn(r, first, second):
            for kind, secs in one_round(uri, args.alerts, r, without).items():
                results[name].setdefault(kind, []).append(secs)
                print(f"round {r + 1} {name} {kind}: {secs:.2f} s", flush=True)
    if args.drain:
        drains = drain_rounds(args.a, args.b, args.drain, args.rounds)
        for name, runs in drains.items():
            results[name][f"dataflow drain ({args.drain:,} tx)"] = runs
    print(f"\n{'write':<30} {'A median':>9} {'B median':>9} {'B/A':>6}")
    for kind, a_runs in results["A"].items():
        a, b = statistics.median(a_runs), statistics.median(results["B"][kind])
        print(f"{kind:<30} {a:>8.2f}s {b:>8.2f}s {b / a:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
