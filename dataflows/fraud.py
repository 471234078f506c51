"""The fraud dataflow: ``python -m bytewax.run dataflows.fraud``.

Data flow (step ids are stable: renaming one drops its recovery state)::

    transactions_in -> validate -> split_valid -+-> dead_letters -> dlq_out (Kafka)
                                                |
                                                +-> key_by_card -> card_rules (per-card state)
                                                        |
              alerts_kafka_out (Kafka) <- alert_json <-+-> alerts -> alert_docs -> alerts_mongo_out
                                                        |
                             stats_mongo_out <- minute_stats <- stats_by_batch

The module only wires: ``build_flow(settings, ...)`` takes its source and sinks so tests can
swap them; ``flow`` is built lazily from the environment when Bytewax asks for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from dataflows import metrics
from dataflows.detector import CardSnapshotData, CardState, Detector, Outcome
from dataflows.edge import Edge, RawRecord
from dataflows.kafka_io import CheckedKafkaSink, OutMessage, TransactionSource
from dataflows.mongo_io import MongoUpsertSink
from dataflows.ruleset import RuleSet, load_ruleset
from dataflows.settings import DataflowSettings
from dataflows.stats import MinuteStatsLogic, StatsDelta, count_outcomes, partition_marks
from fraudwatch.alert_store import ALERT_STATS, ALERTS
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import Alert, CardEvent, DeadLetter

_log = logging.getLogger(__name__)

STEP_IDS = (
    "transactions_in",
    "validate",
    "split_valid",
    "dead_letters",
    "dlq_out",
    "key_by_card",
    "card_rules",
    "outcomes",
    "alerts",
    "alert_json",
    "alerts_kafka_out",
    "alert_docs",
    "alerts_mongo_out",
    "stats_by_batch",
    "minute_stats",
    "stats_docs",
    "stats_mongo_out",
)

# Newest event time seen per input partition, per process. A card lives on one partition
# (messages are keyed by account), so its next event cannot be older than this minus the
# allowed lateness; that is what makes eviction safe (see CardLogic.on_notify).
_PARTITION_WATERMARKS: dict[int, int] = {}

CardSnapshot = tuple[CardSnapshotData, int]


class CardLogic(StatefulBatchLogic[CardEvent, Outcome, CardSnapshot]):
    """One card's state inside Bytewax: judge each transaction, evict the card when idle."""

    __slots__ = ("check_at", "detector", "eviction_every", "partition", "state")

    def __init__(
        self, detector: Detector, resume: CardSnapshot | None, eviction_every: timedelta
    ) -> None:
        self.detector = detector
        self.eviction_every = eviction_every
        if resume is None:
            self.state = CardState()
            self.partition = -1
        else:
            self.state = CardState.from_snapshot(resume[0])
            self.partition = resume[1]
        self.check_at = datetime.now(UTC) + eviction_every

    def on_batch(self, values: list[CardEvent]) -> tuple[list[Outcome], bool]:
        now_ms = time.time_ns() // 1_000_000
        process = self.detector.process
        state = self.state
        out = []
        for e in values:
            out.append(process(state, e, now_ms))
            wm = _PARTITION_WATERMARKS.get(e.partition)
            if wm is None or e.ts > wm:
                _PARTITION_WATERMARKS[e.partition] = e.ts
            self.partition = e.partition
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Outcome], bool]:
        watermark = _PARTITION_WATERMARKS.get(self.partition)
        horizon = self.detector.ruleset.eviction_horizon_ms
        if watermark is not None and watermark - self.state.max_ts > horizon:
            metrics.CARDS_EVICTED.inc()
            return [], StatefulBatchLogic.DISCARD
        self.check_at = datetime.now(UTC) + self.eviction_every
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.check_at

    def snapshot(self) -> CardSnapshot:
        return (self.state.to_snapshot(), self.partition)


@dataclass(frozen=True)
class Sinks:
    """Where the dataflow writes; tests pass ``TestingSink``s."""

    alerts_kafka: Sink[OutMessage]
    alerts_mongo: Sink[dict[str, Any]]
    stats_mongo: Sink[dict[str, Any]]
    dlq: Sink[OutMessage]


def kafka_source(settings: DataflowSettings) -> TransactionSource:
    return TransactionSource(
        settings.kafka_bootstrap_servers,
        settings.transactions_topic,
        extra_config=settings.librdkafka_config(),
        batch_size=settings.fraud_batch_size,
        stop_at_end=settings.fraud_stop_at_end,
        broker_timeout_s=settings.fraud_broker_timeout_s,
    )


def real_sinks(settings: DataflowSettings) -> Sinks:
    def kafka(topic: str) -> CheckedKafkaSink:
        return CheckedKafkaSink(
            settings.kafka_bootstrap_servers,
            topic,
            extra_config=settings.librdkafka_config(),
            flush_timeout_s=settings.fraud_flush_timeout_s,
            on_retry=metrics.SINK_RETRIES.labels(topic).inc,
        )

    def mongo(collection: str) -> MongoUpsertSink:
        return MongoUpsertSink(
            settings.mongodb_uri,
            settings.mongodb_database,
            collection,
            timeout_ms=settings.mongodb_timeout_ms,
            attempts=settings.fraud_mongo_attempts,
            retry_timeout_s=settings.fraud_mongo_retry_timeout_s,
            on_retry=metrics.SINK_RETRIES.labels(collection).inc,
        )

    return Sinks(
        alerts_kafka=kafka(settings.alerts_topic),
        alerts_mongo=mongo(ALERTS),
        stats_mongo=mongo(ALERT_STATS),
        dlq=kafka(settings.dlq_topic),
    )


def _dead_letter_message(d: DeadLetter) -> OutMessage:
    metrics.DEAD_LETTERED.labels(d.reason).inc()
    return OutMessage(key=None, value=orjson.dumps(d.to_json_dict()))


def _alert_of(o: Outcome) -> Alert | None:
    if o.late:
        metrics.LATE.inc()
    elif o.duplicate:
        metrics.DUPLICATES.inc()
    if o.alert is not None:
        metrics.ALERTS.inc()
        for r in o.alert.reasons:
            metrics.ALERTS_BY_RULE.labels(r.rule).inc()
    return o.alert


def _alert_message(a: Alert) -> OutMessage:
    return OutMessage(key=a.event.card_token.encode(), value=orjson.dumps(a.to_json_dict()))


def build_flow(
    settings: DataflowSettings,
    ruleset: RuleSet | None = None,
    source: Source[RawRecord] | None = None,
    sinks: Sinks | None = None,
) -> Dataflow:
    """Wire the dataflow. Without ``source``/``sinks``, the real Kafka and MongoDB ones."""
    ruleset = ruleset or load_ruleset(settings.fraud_rules_file)
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    edge = Edge(CardTokenizer(key), set(ruleset.currency.rates))
    detector = Detector(ruleset)
    eviction_every = timedelta(seconds=settings.fraud_eviction_check_s)
    source = source or kafka_source(settings)
    sinks = sinks or real_sinks(settings)

    to_event = edge.to_event

    def validate(batch: list[RawRecord]) -> list[CardEvent | DeadLetter]:
        out = [to_event(rec) for rec in batch]
        metrics.TRANSACTIONS_IN.inc(len(batch))
        return out

    def is_valid(x: CardEvent | DeadLetter) -> bool:
        return type(x) is CardEvent

    def card_logic(resume: CardSnapshot | None) -> CardLogic:
        return CardLogic(detector, resume, eviction_every)

    def stats_logic(resume: Any) -> MinuteStatsLogic:
        return MinuteStatsLogic(
            resume,
            settings.fraud_stats_flush_s,
            settings.fraud_stats_retention_minutes,
            settings.fraud_stats_idle_partition_s,
        )

    def stats_of_batch(outcomes: list[Outcome]) -> list[tuple[str, StatsDelta]]:
        metrics.TRANSACTIONS_VALID.inc(len(outcomes))
        return [("stats", (count_outcomes(outcomes), partition_marks(outcomes)))]

    flow = Dataflow("fraudwatch")
    raw = op.input("transactions_in", flow, source)
    checked = op.flat_map_batch("validate", raw, validate)
    split = op.branch("split_valid", checked, is_valid)
    invalid = cast("Stream[DeadLetter]", split.falses)
    valid = cast("Stream[CardEvent]", split.trues)
    dead = op.map("dead_letters", invalid, _dead_letter_message)
    op.output("dlq_out", dead, sinks.dlq)

    keyed = op.key_on("key_by_card", valid, lambda e: e.card_token)
    judged = op.stateful_batch("card_rules", keyed, card_logic)
    outcomes = op.key_rm("outcomes", judged)
    alerts = op.filter_map("alerts", outcomes, _alert_of)
    op.output("alerts_kafka_out", op.map("alert_json", alerts, _alert_message), sinks.alerts_kafka)
    op.output(
        "alerts_mongo_out", op.map("alert_docs", alerts, Alert.to_mongo_doc), sinks.alerts_mongo
    )

    per_batch = op.flat_map_batch("stats_by_batch", outcomes, stats_of_batch)
    minute_docs = op.stateful_batch("minute_stats", per_batch, stats_logic)
    op.output("stats_mongo_out", op.key_rm("stats_docs", minute_docs), sinks.stats_mongo)
    return flow


def __getattr__(name: str) -> Any:
    # `python -m bytewax.run dataflows.fraud` looks up `flow`; building it lazily keeps
    # importing this module free of I/O and of environment reads.
    if name == "flow":
        from fraudwatch.logs import configure_logging

        configure_logging("dataflow")
        settings = DataflowSettings()
        _log.info(
            "starting dataflow",
            extra={
                "topic": settings.transactions_topic,
                "stop_at_end": settings.fraud_stop_at_end,
                "rules_file": str(settings.fraud_rules_file),
            },
        )
        return build_flow(settings)
    raise AttributeError(name)
