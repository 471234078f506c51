"""Latency at a fixed offered rate: producer send time to the alert on Kafka and in MongoDB.

For each (rate, snapshot interval): fresh topics, database and recovery directory; the
dataflow runs live (not stop-at-end) with recovery on; once it is up, the producer sends
``--rate R --duration D --clock simulated`` (realistic traffic, 1 % fraud, event times from
now on). For every alert (first copy of each ``alert_id``):

- ``send_to_kafka``: the alert's broker append time on the alerts topic (created with
  ``message.timestamp.type=LogAppendTime``) minus its ``source_ts`` (the input record's
  CreateTime, which kafka-python sets in ``send()``);
- ``send_to_consumer``: when this harness's consumer received it, minus ``source_ts``;
- ``send_to_detect``: ``detected_at`` (when the dataflow raised it) minus ``source_ts``;
- ``send_to_mongo``: when the alert's row first became visible in FerretDB's SQLite file
  (polled every ``POLL_S``; see ``FerretTable``), minus ``source_ts``.

All clocks are this machine's wall clock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bench.common import (
    FerretTable,
    Procs,
    Scratch,
    Stack,
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
    summarize,
)
from fraudwatch.clients import consumer_config

POLL_S = 0.02


@dataclass(frozen=True)
class LatencyConfig:
    rates: tuple[int, ...] = (1_000, 5_000, 20_000)
    snapshot_intervals: tuple[int, ...] = (1, 10)
    duration_s: float = 60.0
    cards: int = 100_000
    seed: int = 11
    # Only these (rate, snapshot interval) pairs; None: every rate at every interval.
    only: tuple[tuple[int, int], ...] | None = None

    def plan(self) -> list[tuple[int, int]]:
        grid = [(r, s) for s in self.snapshot_intervals for r in self.rates]
        return grid if self.only is None else [p for p in grid if p in self.only]


def _epoch_ms(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


class AlertCollector:
    """Consumes the alerts topic and tails the alerts collection in two threads."""

    def __init__(self, stack: Stack, topic: str, database: str) -> None:
        self.stack = stack
        self.topic = topic
        self.table = FerretTable(database, "alerts")
        # alert_id -> (source_ts, broker_ts, received_ms, detected_ms)
        self.kafka: dict[str, tuple[int, int, float, float]] = {}
        self.mongo: dict[str, tuple[int, float]] = {}  # alert_id -> (source_ts, seen_ms)
        self.last_arrival = time.monotonic()
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._consume, daemon=True),
            threading.Thread(target=self._tail, daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _consume(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer(
            consumer_config(
                self.stack.kafka,
                f"{self.topic}-latency",
                {"enable.auto.commit": False, "fetch.wait.max.ms": 5},
            )
        )
        parts = c.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        try:
            while not self._halt.is_set():
                # poll(): returns as soon as one alert is there (consume(n, t) would wait for
                # n messages or t seconds, adding up to t to every receive time).
                m = c.poll(0.05)
                now = time.time() * 1000
                msgs = [] if m is None else [m]
                for m in msgs:
                    if m.error() is not None:
                        continue
                    a = orjson.loads(m.value())
                    if a["alert_id"] in self.kafka:
                        continue
                    _, broker_ts = m.timestamp()
                    detected = _epoch_ms(a["detected_at"])
                    self.kafka[a["alert_id"]] = (a["source_ts"], broker_ts, now, detected)
                if msgs:
                    self.last_arrival = time.monotonic()
        finally:
            c.close()

    def _tail(self) -> None:
        while not self._halt.is_set():
            rows = self.table.new_rows()
            now = time.time() * 1000
            for alert_id, source_ts in rows:
                self.mongo.setdefault(alert_id, (source_ts, now))
            if rows:
                self.last_arrival = time.monotonic()
            self._halt.wait(POLL_S)
        self.table.close()

    def wait_quiet(self, quiet_s: float, limit_s: float) -> None:
        """Until no alert has arrived for ``quiet_s`` (at most ``limit_s``)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and time.monotonic() - self.last_arrival < quiet_s:
            time.sleep(0.2)

    def stop(self) -> None:
        self._halt.set()
        for t in self._threads:
            t.join(timeout=10)

    def results(self) -> dict[str, Any]:
        k = self.kafka.values()
        return {
            "alerts_kafka": len(self.kafka),
            "alerts_mongo": len(self.mongo),
            "send_to_kafka_ms": summarize([b - s for s, b, _, _ in k]),
            "send_to_consumer_ms": summarize([r - s for s, _, r, _ in k]),
            "send_to_detect_ms": summarize([d - s for s, _, _, d in k]),
            "send_to_mongo_ms": summarize([seen - s for s, seen in self.mongo.values()]),
        }


def run_one(
    scratch: Scratch, procs: Procs, rate: int, snapshot_s: int, cfg: LatencyConfig
) -> dict[str, Any]:
    from dataflows.run import ensure_recovery_store

    stack = scratch.stack
    label = f"lat-{rate}-s{snapshot_s}"
    tx = scratch.topic(f"{label}-tx", 3)
    alerts = scratch.topic(f"{label}-al", 3, log_append_time=True)
    dlq = scratch.topic(f"{label}-dl", 3)
    features = scratch.topic(f"{label}-ft", 1)  # the feature log, kept out of fraud-features
    database = scratch.database(label.replace("-", "_"))
    recovery = scratch.directory(f"{label}-rec")
    ensure_recovery_store(recovery, tx)
    port = free_port()
    env = dataflow_env(
        stack,
        transactions=tx,
        alerts=alerts,
        dlq=dlq,
        features=features,
        database=database,
        stop_at_end=False,
        api_port=port,
    )
    df_argv = dataflow_argv(recovery, snapshot_s)
    dataflow = procs.start(label, df_argv, env)
    deadline = time.monotonic() + 90
    while read_counter(port) is None:
        if dataflow.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{label}: the dataflow did not come up:\n{dataflow.tail()}")
        time.sleep(0.2)
    time.sleep(2.0)  # its sources have been built; let them settle on the empty topic
    collector = AlertCollector(stack, alerts, database)
    collector.start()
    p_argv = producer_argv(
        tx,
        rate=str(rate),
        cards=cfg.cards,
        seed=cfg.seed,
        duration_s=cfg.duration_s,
        clock="simulated",
    )
    log(f"{label}: producing {rate:,} tx/s for {cfg.duration_s:g}s")
    producer = procs.start(f"{label}-producer", p_argv)
    try:
        checked_exit(producer, cfg.duration_s + 180)
        sent = message_count(stack, tx)
        behind = sent - (read_counter(port) or 0)
        collector.wait_quiet(quiet_s=5.0, limit_s=120.0)
        processed = read_counter(port) or 0
    finally:
        collector.stop()
        dataflow.stop()
    # The producer's own pacing: its population is built before the first send.
    send_s = _producer_send_seconds(producer.output()) or cfg.duration_s
    out = {
        "rate": rate,
        "snapshot_s": snapshot_s,
        "duration_s": cfg.duration_s,
        "sent": sent,
        "achieved_rate": sent / send_s,
        "behind_at_producer_end": int(behind),
        "processed": int(processed),
        **collector.results(),
        "command": shown_dataflow(df_argv, env) + " ; " + shown(p_argv),
    }
    k = out["send_to_kafka_ms"]
    log(
        f"{label}: {sent:,} sent, {out['alerts_kafka']:,} alerts, send->kafka p50 "
        f"{k.get('p50', float('nan')):.0f} p99 {k.get('p99', float('nan')):.0f} ms"
    )
    return out


def _producer_send_seconds(output: str) -> float | None:
    """The producer's achieved sending time, from its summary line ``... in 60.0 s``."""
    import re

    found = re.findall(r"sent [\d,]+ records to \S+ in ([\d.]+) s", output)
    return float(found[-1]) if found else None


def run(scratch: Scratch, procs: Procs, cfg: LatencyConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    runs = [run_one(scratch, procs, rate, snap, cfg) for rate, snap in cfg.plan()]
    return {
        "runs": runs,
        "poll_ms": POLL_S * 1000,
        "cards": cfg.cards,
        "seconds": round(time.monotonic() - t0, 1),
    }
