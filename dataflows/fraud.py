"""The fraud dataflow: ``python -m bytewax.run dataflows.fraud``.

Data flow (step ids are stable: renaming one drops its recovery state)::

    transactions_in -> validate -> split_valid -+-> dead_letters -> dlq_out (Kafka)
                                                |
                                                +-> shard items -> card_shards (a CardBook each)
                                                        |
              alerts_kafka_out (Kafka) <- alert_json <-+-> alerts -> alert_docs -> alerts_mongo_out
                                                        |
                             stats_mongo_out <- minute_stats <- stats_by_batch

``validate`` groups each input batch's valid transactions by card shard, so the runtime moves
one item per shard and batch rather than one per transaction (see ``dataflows.cardbook``).

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
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import Sink

from dataflows import metrics
from dataflows.cardbook import BookSnapshot, CardBook, shard_of
from dataflows.detector import Detector, Outcome
from dataflows.edge import Edge, RawRecord
from dataflows.kafka_io import CheckedKafkaSink, OutMessage, TransactionSource
from dataflows.mongo_io import MongoUpsertSink
from dataflows.ruleset import RuleSet, load_ruleset
from dataflows.settings import DataflowSettings
from dataflows.stats import MinuteStatsLogic, StatsDelta, stats_delta
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
    "card_shards",
    "outcomes",
    "alerts",
    "alert_json",
    "alerts_kafka_out",
    "alert_docs",
    "alerts_mongo_out",
    "stats_by_batch",
    "minute_stats",
    "stats_mongo_out",
)

# Newest event time seen per input partition, per process. A card lives on one partition
# (messages are keyed by account), so its next event cannot be older than this minus the
# allowed lateness; that is what makes eviction safe (see CardBook.evict).
_PARTITION_WATERMARKS: dict[int, int] = {}

ShardItem = tuple[str, list[CardEvent]]  # (shard key, that shard's events of one batch)


class CardShardLogic(StatefulBatchLogic[list[CardEvent], list[Outcome], BookSnapshot]):
    """One shard's cards inside Bytewax: judge each transaction, evict idle cards."""

    __slots__ = ("book", "check_at", "eviction_every", "horizon_ms")

    def __init__(
        self, detector: Detector, resume: BookSnapshot | None, eviction_every: timedelta
    ) -> None:
        self.book = CardBook(detector, resume)
        self.eviction_every = eviction_every
        self.horizon_ms = detector.ruleset.eviction_horizon_ms
        self.check_at = datetime.now(UTC) + eviction_every

    def on_batch(self, values: list[list[CardEvent]]) -> tuple[list[list[Outcome]], bool]:
        now_ms = time.time_ns() // 1_000_000
        judge = self.book.judge
        marks = _PARTITION_WATERMARKS
        out = []
        for events in values:
            out.append(judge(events, now_ms))
            for e in events:
                wm = marks.get(e.partition)
                if wm is None or e.ts > wm:
                    marks[e.partition] = e.ts
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Outcome]], bool]:
        evicted = self.book.evict(_PARTITION_WATERMARKS, self.horizon_ms)
        if evicted:
            metrics.CARDS_EVICTED.inc(evicted)
        if not self.book:
            return [], StatefulBatchLogic.DISCARD
        self.check_at = datetime.now(UTC) + self.eviction_every
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.check_at

    def snapshot(self) -> BookSnapshot:
        return self.book.snapshot()


@dataclass(frozen=True)
class Sinks:
    """Where the dataflow writes; tests pass ``TestingSink``s."""

    alerts_kafka: Sink[OutMessage]
    # (routing key, document): the MongoDB sinks are partitioned (see dataflows.mongo_io).
    alerts_mongo: Sink[tuple[str, dict[str, Any]]]
    stats_mongo: Sink[tuple[str, dict[str, Any]]]
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


def _alert_doc(a: Alert) -> tuple[str, dict[str, Any]]:
    return (ALERTS, a.to_mongo_doc())


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

    shards = settings.fraud_card_shards
    shard_keys = [f"{i:04d}" for i in range(shards)]

    def validate(batch: list[RawRecord]) -> list[DeadLetter | ShardItem]:
        out: list[DeadLetter | ShardItem] = []
        groups: dict[str, list[CardEvent]] = {}
        for rec in batch:
            x = to_event(rec)
            if type(x) is CardEvent:
                key = shard_keys[shard_of(x.card_token, shards)]
                group = groups.get(key)
                if group is None:
                    groups[key] = [x]
                else:
                    group.append(x)
            else:
                out.append(cast("DeadLetter", x))
        out.extend(groups.items())
        metrics.TRANSACTIONS_IN.inc(len(batch))
        return out

    def is_valid(x: DeadLetter | ShardItem) -> bool:
        return type(x) is tuple

    def card_logic(resume: BookSnapshot | None) -> CardShardLogic:
        return CardShardLogic(detector, resume, eviction_every)

    def alerts_of(outcomes: list[Outcome]) -> list[Alert]:
        return [a for o in outcomes if (a := _alert_of(o)) is not None]

    def stats_logic(resume: Any) -> MinuteStatsLogic:
        return MinuteStatsLogic(
            resume,
            settings.fraud_stats_flush_s,
            settings.fraud_stats_retention_minutes,
            settings.fraud_stats_idle_partition_s,
        )

    def stats_of_batch(outcome_lists: list[list[Outcome]]) -> list[tuple[str, StatsDelta]]:
        metrics.TRANSACTIONS_VALID.inc(sum(map(len, outcome_lists)))
        return [("stats", stats_delta(o for outs in outcome_lists for o in outs))]

    flow = Dataflow("fraudwatch")
    raw = op.input("transactions_in", flow, source)
    checked = op.flat_map_batch("validate", raw, validate)
    split = op.branch("split_valid", checked, is_valid)
    invalid = cast("Stream[DeadLetter]", split.falses)
    dead = op.map("dead_letters", invalid, _dead_letter_message)
    op.output("dlq_out", dead, sinks.dlq)

    keyed = cast("KeyedStream[list[CardEvent]]", split.trues)
    judged = op.stateful_batch("card_shards", keyed, card_logic)
    outcomes = op.key_rm("outcomes", judged)
    alerts = op.flat_map("alerts", outcomes, alerts_of)
    op.output("alerts_kafka_out", op.map("alert_json", alerts, _alert_message), sinks.alerts_kafka)
    op.output("alerts_mongo_out", op.map("alert_docs", alerts, _alert_doc), sinks.alerts_mongo)

    per_batch = op.flat_map_batch("stats_by_batch", outcomes, stats_of_batch)
    minute_docs = op.stateful_batch("minute_stats", per_batch, stats_logic)
    op.output("stats_mongo_out", minute_docs, sinks.stats_mongo)
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
