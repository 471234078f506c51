"""Throughput and scale-out: every system drains the same preloaded topic.

One producer run preloads N transactions (3 partitions, a realistic card population); then,
each with its own consumer group, recovery directory, alerts topic and database, these read
the whole topic and stop at its end: the ceiling (``bench.baselines.ceiling``), the dataflow
with recovery on (``python -m dataflows.run`` with ``FRAUD_STOP_AT_END=1``), the naive design
(``bench.baselines.naive``), and for scale-out the dataflow as 2 processes and with ``-w 2``.
Timing starts when the process is spawned (start-up included) and ends at its exit; the
steady rate leaves start-up out (from the first output to the exit).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    PY,
    FerretTable,
    Monitor,
    Procs,
    Scratch,
    checked_exit,
    dataflow_argv,
    dataflow_env,
    free_port,
    log,
    message_count,
    producer_argv,
    read_counter,
    shown,
    shown_dataflow,
    steady_rate,
    tree_rss_bytes,
)

PRELOAD_START = "2026-11-01T00:00:00Z"  # fixed: the same seed gives the same topic


@dataclass(frozen=True)
class ThroughputConfig:
    count: int
    cards: int = 100_000
    seed: int = 6
    partitions: int = 3
    scaleout: bool = True
    naive_max_s: float | None = None
    timeout_s: float = 1800.0


def preload(scratch: Scratch, procs: Procs, suffix: str, cfg: ThroughputConfig) -> dict[str, Any]:
    """Fill a fresh topic with the producer at full speed; returns what was sent."""
    topic = scratch.topic(suffix, cfg.partitions)
    argv = producer_argv(
        topic, rate="max", cards=cfg.cards, seed=cfg.seed, count=cfg.count, start=PRELOAD_START
    )
    log(f"preloading {cfg.count:,} transactions ({cfg.cards:,} cards) into {topic}")
    proc = procs.start(f"preload-{suffix}", argv)
    checked_exit(proc, cfg.timeout_s)
    sent = message_count(scratch.stack, topic)
    if sent != cfg.count:
        raise RuntimeError(f"preload wrote {sent:,} messages, expected {cfg.count:,}")
    return {
        "topic": topic,
        "count": sent,
        "cards": cfg.cards,
        "partitions": cfg.partitions,
        "seconds": round(proc.elapsed, 2),
        "command": shown(argv),
    }


def run_baseline(
    scratch: Scratch,
    procs: Procs,
    name: str,
    argv: list[str],
    count: int,
    timeout_s: float,
    partial: bool = False,
) -> dict[str, Any]:
    """Time a baseline; ``partial``: it may stop early (its summary says how much it read)."""
    log(f"{name}: draining {count:,} transactions")
    proc = procs.start(name, argv)
    mon = Monitor([proc])
    mon.start()
    checked_exit(proc, timeout_s)
    mon.stop()
    summary = json.loads(proc.output().strip().splitlines()[-1])
    read = summary["count"]
    if read != count and not (partial and 0 < read < count):
        raise RuntimeError(f"{name} read {read:,} messages, expected {count:,}")
    wall = proc.elapsed
    first = summary["first_at"] - summary["started_at"]
    in_process = summary["ended_at"] - summary["started_at"]
    # The summary's times are taken inside the process; add its interpreter start-up.
    first_s = first + (wall - in_process)
    out = {
        "system": name,
        "seconds": round(wall, 2),
        "read": read,
        "tx_per_s": read / wall,
        "first_output_s": round(first_s, 2),
        "steady_tx_per_s": read / (summary["ended_at"] - summary["first_at"]),
        "peak_rss_bytes": mon.peak_rss,
        "command": shown(argv),
    }
    if "alerts" in summary:
        out["alerts"] = summary["alerts"]
    log(f"{name}: {read:,} in {wall:.1f}s, {read / wall:,.0f} tx/s")
    return out


def run_dataflow(
    scratch: Scratch,
    procs: Procs,
    label: str,
    topic: str,
    count: int,
    *,
    processes: int = 1,
    workers: int = 1,
    snapshot_s: int = 5,
    timeout_s: float = 1800.0,
    extra_env: dict[str, str] | None = None,
    idle_rss: bool = False,
    feed_argv: list[str] | None = None,
) -> dict[str, Any]:
    """Drain ``topic`` with the dataflow (recovery on, stop at end); returns its timings.

    ``idle_rss``: run live instead, and once the whole topic has been read and the flow has
    been idle for ``IDLE_SETTLE_S``, sample its RSS (``idle_rss_bytes``), then stop it: the
    memory held with all that state and empty input buffers. ``feed_argv``: a process that
    writes the input, started once the dataflow is up (timing then starts there).
    """
    from dataflows.run import ensure_recovery_store

    stack = scratch.stack
    alerts = scratch.topic(f"{label}-al", 3)
    dlq = scratch.topic(f"{label}-dl", 3)
    features = scratch.topic(f"{label}-ft", 1)  # the feature log, kept out of fraud-features
    database = scratch.database(label)
    recovery = scratch.directory(f"{label}-rec")
    # Created here, before the processes start, so that two of them do not race to create it.
    ensure_recovery_store(recovery, topic)
    ports = [free_port() for _ in range(processes)]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    started: list[Any] = []
    commands = []
    for i in range(processes):
        if processes > 1:
            args = ["-i", str(i), "-a", addresses]
        elif workers > 1:
            args = ["-w", str(workers)]
        else:
            args = []
        argv = dataflow_argv(recovery, snapshot_s, args)
        env = dataflow_env(
            stack,
            transactions=topic,
            alerts=alerts,
            dlq=dlq,
            features=features,
            database=database,
            stop_at_end=not idle_rss,
            api_port=ports[i],
            extra=extra_env,
        )
        commands.append(shown_dataflow(argv, env))
        started.append(procs.start(f"{label}-p{i}", argv, env))
    log(f"{label}: draining {count:,} transactions ({processes} process(es), {workers} worker(s))")
    if feed_argv is not None:
        _wait_api(started, ports)
        feeder = procs.start(f"{label}-feed", feed_argv)
        for proc in started:
            proc.started = feeder.started
    mon = Monitor(started, ports)
    mon.start()
    idle = None
    if idle_rss:
        wall = _wait_read(mon, started, count, timeout_s)
        time.sleep(IDLE_SETTLE_S)
        idle = int(statistics.median(_rss_samples(started)))
        for proc in started:
            proc.stop()
    else:
        for proc in started:
            checked_exit(proc, timeout_s)
        wall = max(p.elapsed for p in started)
    mon.stop()
    table = FerretTable(database, "alerts")
    alerts_mongo = table.count()
    table.close()
    first = next((t for t, c in mon.progress if c > 0), None)
    out = {
        "system": label,
        "processes": processes,
        "workers": workers,
        "snapshot_s": snapshot_s,
        "seconds": round(wall, 2),
        "tx_per_s": count / wall,
        "first_output_s": None if first is None else round(first, 2),
        "steady_tx_per_s": steady_rate(mon.progress, count, wall),
        "peak_rss_bytes": mon.peak_rss,
        "alerts_kafka": message_count(stack, alerts),
        "alerts_mongo": alerts_mongo,
        "rss_by_progress": rss_by_progress(mon, count),
        "idle_rss_bytes": idle,
        "command": " & ".join(commands),
    }
    log(f"{label}: {wall:.1f}s, {count / wall:,.0f} tx/s, {out['alerts_kafka']:,} alerts")
    return out


IDLE_SETTLE_S = 4.0


def _wait_read(mon: Monitor, procs: list[Any], count: int, timeout_s: float) -> float:
    """Seconds from the first start until the dataflow's input counter reached ``count``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if mon.progress and mon.progress[-1][1] >= count:
            return mon.progress[-1][0]
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.poll()}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"dataflow did not read {count:,} messages in {timeout_s:.0f}s")
        time.sleep(0.1)


def _wait_api(procs: list[Any], ports: list[int], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(read_counter(port) is None for port in ports):
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.poll()}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError("the dataflow's API did not come up")
        time.sleep(0.2)


def _rss_samples(procs: list[Any], n: int = 5) -> list[int]:
    samples = []
    for _ in range(n):
        samples.append(sum(tree_rss_bytes(p.pid) for p in procs))
        time.sleep(0.2)
    return samples


def rss_by_progress(mon: Monitor, count: int) -> dict[str, int]:
    """Highest RSS sampled while each quarter of the input was being processed."""
    out: dict[str, int] = {}
    pairs = list(zip(mon.progress, mon.rss, strict=False))
    for quarter in (25, 50, 75, 100):
        lo, hi = count * (quarter - 25) / 100, count * quarter / 100
        seen = [rss for (_, done), (_, rss) in pairs if lo <= done < hi or done >= hi == count]
        if seen:
            out[str(quarter)] = max(seen)
    return out


def run(scratch: Scratch, procs: Procs, cfg: ThroughputConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    pre = preload(scratch, procs, "tp-tx", cfg)
    topic, n = pre["topic"], pre["count"]
    systems = []
    ceiling = [PY, "-m", "bench.baselines.ceiling", "--topic", topic]
    systems.append(
        run_baseline(
            scratch,
            procs,
            "ceiling",
            [*ceiling, "--group", scratch.name("ceiling")],
            n,
            cfg.timeout_s,
        )
    )
    systems.append(run_dataflow(scratch, procs, "dataflow", topic, n, timeout_s=cfg.timeout_s))
    naive_alerts = scratch.topic("naive-al", 3)
    naive_db = scratch.database("naive")
    naive = [PY, "-m", "bench.baselines.naive", "--topic", topic]
    naive += ["--alerts-topic", naive_alerts, "--database", naive_db]
    if cfg.naive_max_s is not None:
        naive += ["--max-seconds", f"{cfg.naive_max_s:g}"]
    naive += ["--group", scratch.name("naive")]
    systems.append(run_baseline(scratch, procs, "naive", naive, n, cfg.timeout_s, partial=True))
    scaleout = []
    if cfg.scaleout:
        scaleout.append(systems[1])
        scaleout.append(
            run_dataflow(
                scratch, procs, "dataflow-2p", topic, n, processes=2, timeout_s=cfg.timeout_s
            )
        )
        scaleout.append(
            run_dataflow(
                scratch, procs, "dataflow-w2", topic, n, workers=2, timeout_s=cfg.timeout_s
            )
        )
        # The same 1-process run again: the machine is shared, this shows how much it drifts.
        scaleout.append(
            run_dataflow(scratch, procs, "dataflow-again", topic, n, timeout_s=cfg.timeout_s)
        )
    return {
        "preload": pre,
        "systems": systems,
        "scaleout": scaleout,
        "seconds": round(time.monotonic() - t0, 1),
    }
