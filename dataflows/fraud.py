"""The fraud dataflow: ``python -m bytewax.run dataflows.fraud``.

Data flow (step ids are stable: renaming one drops its recovery state)::

    transactions_in -> validate -> split_valid -+-> dead_letters -> dlq_out (Kafka)
                                                +-> by card shard ------------------+
    labels_in -> validate_labels -> split_labels -+-> label_dead_letters -> labels_dlq_out
                                                  +-> label_to_cards ----> card_input
                                                  +-> label_to_merchants -------------+
                                                                                      |
      card_input -> card_shards (a CardBook each: card state, habits, card signals)   |
         -> verdicts -> by_merchant (regroup by merchant shard) -> merchant_input <---+
         -> merchant_shards (a MerchantBook each: learned merchant risk, merchant signals,
                             feature rows) -> judged
         -> score (stateless, the whole batch at once: the operating point's model in one
                   call, alerts, explanations; looks for new operating points) -> outcomes
    outcomes -> alerts -> alert_json -> alerts_kafka_out; alert_docs -> alerts_mongo_out
    outcomes -> score_json -> scores_out (only with FRAUD_WRITE_SCORES=1)
    outcomes -> stats_by_batch -> minute_stats -> stats_mongo_out

Cards come first so that each card's transactions reach its state in their input order (a
card lives on one input partition); the merchant stage's view of a transaction does not depend
on the order in which it gets them (docs/detection.md). ``validate`` groups each input batch's
valid transactions by card shard, and ``by_merchant`` regroups the verdicts by merchant shard,
so the runtime moves one item per shard and batch rather than one per transaction.
``split_valid`` and ``split_labels`` are ``split_dead_letters`` composites
(``dataflows.steps.dead_letters``): the valid items come out on ``oks``, the dead letters on
``errs``.

The module only wires: ``build_flow(settings, ...)`` takes its sources and sinks so tests can
swap them; ``flow`` is built lazily from the environment when Bytewax asks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink
from bytewax.testing import TestingSource

from dataflows.detection.cardbook import BookSnapshot, CardItem, shard_of
from dataflows.detection.detector import CardVerdict, Detector, Judged, Outcome
from dataflows.detection.featurelog import Sampler
from dataflows.detection.featurelog import encode as encode_row
from dataflows.detection.merchant import MerchantSnapshot
from dataflows.detection.policy import PolicyBook
from dataflows.detection.ruleset import RuleSet, load_ruleset
from dataflows.io import prometheus
from dataflows.io.kafka_io import CheckedKafkaSink, OutMessage, TransactionSource
from dataflows.io.model_store import ModelStore
from dataflows.io.mongo_io import AlertStoreSink, connect
from dataflows.settings import DataflowSettings
from dataflows.steps.dead_letters import split_dead_letters
from dataflows.steps.minute_stats import MinuteStatsLogic, StatsDelta, stats_delta
from dataflows.steps.policy_refresh import PolicyRefresh
from dataflows.steps.shards import (
    CardShardLogic,
    MerchantItem,
    MerchantShardLogic,
    PartitionWatermarks,
    merchant_shard_of,
)
from dataflows.validation import RawRecord, RecordValidator
from fraudwatch.alert_store import ALERT_STATS, ALERTS, alert_document
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import Alert, CardEvent, DeadLetter, LabelEvent, format_ts

_log = logging.getLogger(__name__)

STEP_IDS = (
    "transactions_in",
    "validate",
    "split_valid",
    "dead_letters",
    "dlq_out",
    "labels_in",
    "validate_labels",
    "split_labels",
    "label_dead_letters",
    "labels_dlq_out",
    "label_to_cards",
    "label_to_merchants",
    "card_input",
    "card_shards",
    "verdicts",
    "by_merchant",
    "merchant_input",
    "merchant_shards",
    "judged",
    "score",
    "alerts",
    "alert_json",
    "alerts_kafka_out",
    "alert_docs",
    "alerts_mongo_out",
    "score_json",
    "scores_out",
    "feature_rows",
    "features_out",
    "stats_by_batch",
    "minute_stats",
    "stats_mongo_out",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Sinks:
    """Where the dataflow writes; tests pass ``TestingSink``s."""

    alerts_kafka: Sink[OutMessage]
    # (routing key, document): the MongoDB sinks are partitioned (see dataflows.io.mongo_io).
    alerts_mongo: Sink[tuple[str, dict[str, Any]]]
    stats_mongo: Sink[tuple[str, dict[str, Any]]]
    dlq: Sink[OutMessage]
    # Every valid transaction's score; None: not written (FRAUD_WRITE_SCORES unset).
    scores: Sink[OutMessage] | None = None
    # The feature log the trainer learns from; None: not written.
    features: Sink[OutMessage] | None = None


def kafka_source(settings: DataflowSettings, topic: str | None = None) -> TransactionSource:
    """The input topic (default: the transactions topic) as a loud-failing Bytewax source."""
    return TransactionSource(
        settings.kafka_bootstrap_servers,
        topic or settings.transactions_topic,
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
            on_retry=prometheus.SINK_RETRIES.labels(topic).inc,
        )

    def mongo(collection: str) -> AlertStoreSink:
        return AlertStoreSink(
            settings.mongodb_uri,
            settings.mongodb_database,
            collection,
            timeout_ms=settings.mongodb_timeout_ms,
            attempts=settings.fraud_mongo_attempts,
            retry_timeout_s=settings.fraud_mongo_retry_timeout_s,
            on_retry=prometheus.SINK_RETRIES.labels(collection).inc,
        )

    return Sinks(
        alerts_kafka=kafka(settings.alerts_topic),
        alerts_mongo=mongo(ALERTS),
        stats_mongo=mongo(ALERT_STATS),
        dlq=kafka(settings.dlq_topic),
        scores=kafka(settings.scores_topic) if settings.fraud_write_scores else None,
        features=kafka(settings.features_topic),
    )


def registry_source(settings: DataflowSettings) -> Callable[[PolicyBook], int]:
    """The model registry in MongoDB as a source of operating points."""
    db = connect(settings.mongodb_uri, settings.mongodb_database, settings.mongodb_timeout_ms)
    return ModelStore(db).refresh


def _dead_letter_message(d: DeadLetter) -> OutMessage:
    prometheus.DEAD_LETTERED.labels(d.reason).inc()
    return OutMessage(key=None, value=orjson.dumps(d.to_json_dict()))


def _alert_of(o: Outcome) -> Alert | None:
    if o.late:
        prometheus.LATE.inc()
    elif o.duplicate:
        prometheus.DUPLICATES.inc()
    if o.alert is not None:
        prometheus.ALERTS.inc()
        for r in o.alert.reasons:
            prometheus.ALERTS_BY_RULE.labels(r.rule).inc()
    return o.alert


def _alert_doc(a: Alert) -> tuple[str, dict[str, Any]]:
    return (ALERTS, alert_document(a))


def _alert_message(a: Alert) -> OutMessage:
    return OutMessage(key=a.event.card_token.encode(), value=orjson.dumps(a.to_json_dict()))


def _feature_messages(sampler: Sampler) -> Callable[[list[list[Outcome]]], list[OutMessage]]:
    def messages(outcome_lists: list[list[Outcome]]) -> list[OutMessage]:
        rows = [r for outs in outcome_lists for o in outs if (r := sampler.row(o)) is not None]
        # In event-time order within the batch (the merchant stage emits by merchant shard):
        # with input in time order, the trainer then reads a day's rows before the next day's.
        rows.sort(key=lambda r: (r.ts, r.transaction_id))
        prometheus.FEATURE_ROWS.inc(len(rows))
        return [OutMessage(key=r.card.encode(), value=encode_row(r)) for r in rows]

    return messages


def _score_message(version: str) -> Callable[[Outcome], OutMessage | None]:
    def message(o: Outcome) -> OutMessage | None:
        if o.score is None:
            return None  # a duplicate: its score was given the first time
        e = o.event
        value = {
            "transaction_id": e.transaction_id,
            "card_token": e.card_token,
            "timestamp": format_ts(datetime.fromtimestamp(e.ts / 1000, UTC)),
            "score": o.score,
            "alerted": o.alert is not None,
            "ruleset_version": version,
            "model_version": o.model_version,
        }
        return OutMessage(key=e.card_token.encode(), value=orjson.dumps(value))

    return message


def _group(items: list[tuple[str, T]]) -> list[tuple[str, list[T]]]:
    """(shard key, item) pairs as one (shard key, items) entry per shard, order kept."""
    groups: dict[str, list[T]] = {}
    for key, item in items:
        group = groups.get(key)
        if group is None:
            groups[key] = [item]
        else:
            group.append(item)
    return list(groups.items())


def build_flow(
    settings: DataflowSettings,
    ruleset: RuleSet | None = None,
    source: Source[RawRecord] | None = None,
    sinks: Sinks | None = None,
    labels_source: Source[RawRecord] | None = None,
    model_source: Callable[[PolicyBook], int] | None = None,
) -> Dataflow:
    """Wire the dataflow. Without sources/sinks, the real Kafka and MongoDB ones.

    A test that passes ``source`` but no ``labels_source`` gets an empty labels input.
    ``model_source`` adds the trainer's operating points to the detector's policy book (by
    default the MongoDB registry when the sinks are the real ones; none in tests).
    """
    ruleset = ruleset or load_ruleset(settings.fraud_rules_file)
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    validator = RecordValidator(CardTokenizer(key), set(ruleset.currency.rates))
    detector = Detector(ruleset)
    eviction_every = timedelta(seconds=settings.fraud_eviction_check_s)
    if labels_source is None:
        labels_source = (
            kafka_source(settings, settings.labels_topic) if source is None else TestingSource([])
        )
    source = source or kafka_source(settings)
    if sinks is None:
        sinks = real_sinks(settings)
        model_source = model_source or registry_source(settings)
    policies = PolicyRefresh(detector.policies, model_source, settings.fraud_model_poll_s)
    sampler = settings.sampler(ruleset.score.prior)
    watermarks = PartitionWatermarks()

    to_event = validator.to_event
    shards = settings.fraud_card_shards
    shard_keys = [f"{i:04d}" for i in range(shards)]

    def validate(batch: list[RawRecord]) -> list[DeadLetter | tuple[str, list[CardItem]]]:
        out: list[DeadLetter | tuple[str, list[CardItem]]] = []
        groups: dict[str, list[CardItem]] = {}
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
        prometheus.TRANSACTIONS_IN.inc(len(batch))
        return out

    def validate_labels(batch: list[RawRecord]) -> list[DeadLetter | LabelEvent]:
        prometheus.LABELS_IN.inc(len(batch))
        return [validator.to_label(rec) for rec in batch]

    def labels_by_merchant(labels: list[LabelEvent]) -> list[tuple[str, list[MerchantItem]]]:
        return _group(
            [(shard_keys[merchant_shard_of(lab.merchant_id, shards)], lab) for lab in labels]
        )

    def labels_by_card(labels: list[LabelEvent]) -> list[tuple[str, list[CardItem]]]:
        return _group([(shard_keys[shard_of(lab.card_token, shards)], lab) for lab in labels])

    def by_merchant(verdict_lists: list[list[CardVerdict]]) -> list[tuple[str, list[MerchantItem]]]:
        return _group(
            [
                (shard_keys[merchant_shard_of(v.event.merchant_id, shards)], v)
                for verdicts in verdict_lists
                for v in verdicts
            ]
        )

    def merchant_logic(resume: MerchantSnapshot | None) -> MerchantShardLogic:
        return MerchantShardLogic(detector, resume, eviction_every)

    def score(judged_lists: list[list[Judged]]) -> list[list[Outcome]]:
        # One model call for the whole batch (every merchant shard), between batches a look
        # for a new operating point; the lists keep their shape for the steps downstream.
        policies.maybe_refresh()
        flat = [j for judged in judged_lists for j in judged]
        outcomes = detector.score_batch(flat, time.time_ns() // 1_000_000)
        out, at = [], 0
        for judged in judged_lists:
            out.append(outcomes[at : at + len(judged)])
            at += len(judged)
        return out

    def card_logic(resume: BookSnapshot | None) -> CardShardLogic:
        return CardShardLogic(detector, resume, eviction_every, watermarks)

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
        prometheus.TRANSACTIONS_VALID.inc(sum(map(len, outcome_lists)))
        return [("stats", stats_delta(o for outs in outcome_lists for o in outs))]

    flow = Dataflow("fraudwatch")
    raw = op.input("transactions_in", flow, source)
    tx = split_dead_letters("split_valid", op.flat_map_batch("validate", raw, validate))
    op.output("dlq_out", op.map("dead_letters", tx.errs, _dead_letter_message), sinks.dlq)

    raw_labels = op.input("labels_in", flow, labels_source)
    labels = split_dead_letters(
        "split_labels", op.flat_map_batch("validate_labels", raw_labels, validate_labels)
    )
    label_dead = op.map("label_dead_letters", labels.errs, _dead_letter_message)
    op.output("labels_dlq_out", label_dead, sinks.dlq)
    labels_c = op.flat_map_batch("label_to_cards", labels.oks, labels_by_card)
    labels_m = op.flat_map_batch("label_to_merchants", labels.oks, labels_by_merchant)

    card_in = cast("KeyedStream[list[CardItem]]", op.merge("card_input", tx.oks, labels_c))
    verdicts = op.key_rm("verdicts", op.stateful_batch("card_shards", card_in, card_logic))
    merchant_in = cast(
        "KeyedStream[list[MerchantItem]]",
        op.merge(
            "merchant_input", op.flat_map_batch("by_merchant", verdicts, by_merchant), labels_m
        ),
    )
    judged = op.key_rm("judged", op.stateful_batch("merchant_shards", merchant_in, merchant_logic))
    outcomes = op.flat_map_batch("score", judged, score)
    alerts = op.flat_map("alerts", outcomes, alerts_of)
    op.output("alerts_kafka_out", op.map("alert_json", alerts, _alert_message), sinks.alerts_kafka)
    op.output("alerts_mongo_out", op.map("alert_docs", alerts, _alert_doc), sinks.alerts_mongo)
    if sinks.scores is not None:
        score_of = _score_message(ruleset.version)
        scores = op.flat_map(
            "score_json", outcomes, lambda outs: [m for o in outs if (m := score_of(o))]
        )
        op.output("scores_out", scores, sinks.scores)
    if sinks.features is not None:
        rows = op.flat_map_batch("feature_rows", outcomes, _feature_messages(sampler))
        op.output("features_out", rows, sinks.features)

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
        if settings.fraud_metrics_port:
            prometheus.serve_metrics(
                settings.fraud_metrics_host, settings.fraud_metrics_port, "FRAUD_METRICS_PORT"
            )
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
