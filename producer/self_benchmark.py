"""``python -m producer bench``: the numbers quoted in docs/producer.md, reproducibly.

1. generation alone (no Kafka): how fast the simulator makes records;
2. generation + kafka-python flat out (``--rate max``) into a temporary 3-partition topic;
3. rate accuracy: the wall clock at a fixed rate for a fixed time;
4. sending alone: the same records prebuilt, through the same sink and settings (the
   ceiling any kafka-python producer has on this machine).

Rates are reported per wall-clock second and per CPU second of this process (all threads,
so kafka-python's sender thread is included): on a shared machine the second is the fair
"one core" figure.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from fraudwatch.clients import TopicSetupError, delete_topics, ensure_topics
from fraudwatch.settings import KafkaSettings
from producer.errors import BrokerUnreachable, ProducerError
from producer.kafka_sink import KafkaSink, NullSink
from producer.population import build_population
from producer.runner import EventTimePacer, Limits, run
from producer.traffic import TrafficConfig, TrafficSimulator

_log = logging.getLogger("producer")
_START_MS = 1_795_000_000_000  # fixed, so every run measures the same traffic


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    records: int
    wall_s: float
    cpu_s: float

    @property
    def wall_rate(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.records / self.cpu_s

    def line(self) -> str:
        return (
            f"{self.name}: {self.records:,} records in {self.wall_s:.2f} s wall / "
            f"{self.cpu_s:.2f} s CPU = {self.wall_rate:,.0f}/s wall, {self.cpu_rate:,.0f}/s "
            "per CPU second"
        )


def _measure(name: str, fn: Callable[[], int]) -> Measurement:
    wall, cpu = time.perf_counter(), time.process_time()
    records = fn()
    return Measurement(name, records, time.perf_counter() - wall, time.process_time() - cpu)


def run_benchmarks(
    settings: KafkaSettings, *, count: int, cards: int, target: float, seconds: float
) -> list[Measurement]:
    """Run the three measurements, log them and return them."""
    population = build_population(1, cards, 2000)

    def simulator(clock: str = "simulated", rate: float | None = None) -> TrafficSimulator:
        config = TrafficConfig(
            seed=1,
            start_ms=_START_MS,
            clock="wall" if clock == "wall" else "simulated",
            rate=rate,
            fraud_ratio=0.01,
            bad_ratio=0.001,
        )
        return TrafficSimulator(population, config)

    results: list[Measurement] = []

    def generate_only() -> int:
        return run(simulator().records(), NullSink(), limits=Limits(count=count)).sent

    results.append(_measure("generation only", generate_only))
    _log.info("%s", results[-1].line())

    topic = f"fraudwatch-bench-{uuid.uuid4().hex[:8]}"
    _create_topic(settings, topic, 3)
    try:
        sink = KafkaSink.connect(settings, topic)

        def flat_out() -> int:
            stats = run(simulator().records(), sink, limits=Limits(count=count))
            if stats.error or stats.unconfirmed:
                raise BrokerUnreachable(stats.error or f"{stats.unconfirmed} unconfirmed")
            return stats.delivered

        results.append(_measure("generate --rate max into Kafka", flat_out))
        _log.info("%s", results[-1].line())

        def paced() -> int:
            stats = run(
                simulator("wall", target).records(),
                sink,
                limits=Limits(duration_s=seconds),
                pacer=EventTimePacer(speed=1.0, origin_ms=_START_MS),
            )
            return stats.sent

        m = _measure(f"generate --rate {target:g} for {seconds:g} s", paced)
        results.append(m)
        achieved = m.records / seconds
        _log.info(
            "%s: achieved %.1f/s, %+.2f%% of the target", m.name, achieved,
            (achieved / target - 1) * 100,
        )  # fmt: skip
        sink.close()

        prebuilt = [(r.key, r.value) for r in islice(simulator().records(), count)]
        raw = KafkaSink.connect(settings, topic)

        def kafka_python_alone() -> int:
            send = raw.send
            for key, value in prebuilt:
                send(key, value, None)
            raw.flush(60)
            return raw.delivered

        gc.collect()
        gc.freeze()  # the prebuilt records are not garbage: keep the collector off them
        try:
            m = _measure("sending alone: prebuilt records, same sink", kafka_python_alone)
        finally:
            gc.unfreeze()
        results.append(m)
        _log.info("%s", m.line())
        raw.close()
    finally:
        delete_topics(settings, [topic], best_effort=False)
    return results


def _create_topic(settings: KafkaSettings, topic: str, partitions: int) -> None:
    from confluent_kafka import KafkaException

    try:
        ensure_topics(settings, {topic: partitions})
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"Kafka is not reachable at {settings.kafka_bootstrap_servers} ({exc})"
        ) from None
    except TopicSetupError as exc:
        raise ProducerError(str(exc)) from None
