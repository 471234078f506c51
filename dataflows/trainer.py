"""The trainer: ``python -m dataflows.trainer``.

Reads the feature log (``FEATURES_TOPIC``, written by the dataflow) and the labels
(``LABELS_TOPIC``) from their beginning, and makes one decision per UTC day of event time
(``dataflows.detection.training``): retrain, validate against the current model on the newest
final day, promote or keep, size the alert threshold to ``ALERT_BUDGET_CARDS_PER_DAY``. Each
decision goes to the model registry in MongoDB (``dataflows.io.model_store``), where the
dataflow picks it up between batches; model health documents are rewritten as labels arrive.

A day is decided when the first logged transaction of that day is read, after reading every
label already on the labels topic. A restarted trainer reads both topics again (their
retention bounds that) and adopts the decisions already in the registry instead of
retraining, so a restart never changes a published model. ``TRAINER_STOP_AT_END=1`` stops at
the end of the feature log (tests, backfills).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Gauge

from dataflows.detection.featurelog import FeatureLogError, decode
from dataflows.detection.policy import FORMULA, ModelError
from dataflows.detection.ruleset import RuleSet, load_ruleset
from dataflows.detection.training import Trainer, day_name, day_of
from dataflows.io.model_store import ModelStore
from dataflows.io.mongo_io import connect
from dataflows.io.prometheus import serve_metrics
from dataflows.settings import TrainerSettings
from dataflows.validation import RawRecord, RecordValidator
from fraudwatch.cards import CardTokenizer
from fraudwatch.clients import consumer_config
from fraudwatch.contract import LabelEvent

_log = logging.getLogger("dataflows.trainer")

VALIDATION_AP = Gauge("fraudwatch_model_validation_ap", "Validation AP of the scoring model")
DAY_AP = Gauge("fraudwatch_model_day_ap", "AP of the newest final day, labels known now")
DRIFT = Gauge("fraudwatch_model_drift", "1 when the newest final day's AP fell well below "
              "the model's validation AP")  # fmt: skip
DECIDED_DAY = Gauge("fraudwatch_trainer_decided_day", "Epoch day of the newest decision")
RETRAIN_SECONDS = Gauge("fraudwatch_trainer_retrain_seconds", "Seconds the last decision took")


class _TopicReader:
    """Every partition of one topic from its beginning, with an end-of-topic check."""

    def __init__(self, settings: TrainerSettings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            consumer_config(
                settings,
                f"fraudwatch-trainer-{topic}",
                {
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        meta = self.consumer.list_topics(topic, timeout=30)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise SystemExit(
                f"topic {topic} does not exist at {settings.kafka_bootstrap_servers}: is the "
                "stack up? run `make up`"
            )
        self.partitions = sorted(info.partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.at_end: set[int] = set()

    def poll(self, max_messages: int, timeout_s: float) -> Iterator[tuple[int, bytes]]:
        for msg in self.consumer.consume(max_messages, timeout_s):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.at_end.add(msg.partition() or 0)
                    continue
                if err.fatal():
                    raise KafkaException(err)
                _log.warning("kafka: %s", err)
                continue
            self.at_end.discard(msg.partition())
            value = msg.value()
            if value is not None:
                yield msg.offset() or 0, value

    @property
    def ended(self) -> bool:
        return len(self.at_end) == len(self.partitions)

    def close(self) -> None:
        self.consumer.close()


class TrainerService:
    """The trainer process's loop: read, decide when a day is due, publish."""

    def __init__(self, settings: TrainerSettings, ruleset: RuleSet, store: ModelStore) -> None:
        self.settings = settings
        self.ruleset = ruleset
        self.store = store
        self.trainer = Trainer(settings.training(ruleset))
        key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
        self.validator = RecordValidator(CardTokenizer(key), set(ruleset.currency.rates))
        self.features = _TopicReader(settings, settings.features_topic)
        self.labels = _TopicReader(settings, settings.labels_topic)
        self.published = store.decided_days()
        self.model_docs = store.model_docs()
        self.new_labels = 0
        self.bad_rows = 0
        self.health_at = 0.0
        self.stopping = False

    def run(self) -> int:
        formula = self.trainer.formula
        self.store.publish_formula(
            {
                "_id": formula.version,
                "version": formula.version,
                "kind": FORMULA,
                "status": "promoted",
                "reason": "the rule file's formula scores until a trained model is promoted",
                "metrics": {},
            }
        )
        _log.info("trainer reading %s and %s from the beginning; %d days already decided",
                  self.settings.features_topic, self.settings.labels_topic,
                  len(self.published))  # fmt: skip
        while not self.stopping:
            self.drain_labels()
            for _, raw in self.features.poll(2000, 0.5):
                try:
                    row = decode(raw)
                except FeatureLogError as exc:
                    self.bad_rows += 1
                    _log.error("feature log row refused: %s", exc)
                    continue
                due = self.trainer.due(row.ts)
                if due is not None:
                    self.drain_labels()
                    self.decide(due)
                self.trainer.add_row(row)
            if time.monotonic() >= self.health_at and self.trainer.newest_ts >= 0:
                self.write_health()
            if self.settings.trainer_stop_at_end and self.features.ended:
                self.drain_labels()
                self.write_health()
                break
        self.features.close()
        self.labels.close()
        return 0

    def drain_labels(self) -> None:
        """Read every label already on the labels topic."""
        while True:
            got = 0
            for offset, raw in self.labels.poll(5000, 0.2):
                got += 1
                item = self.validator.to_label(
                    RawRecord(self.settings.labels_topic, 0, offset, None, raw)
                )
                if isinstance(item, LabelEvent):
                    self.trainer.add_label(item)
                    self.new_labels += 1
            if got == 0 or self.labels.ended:
                return

    def decide(self, day: int) -> None:
        started = time.monotonic()
        name = day_name(day)
        doc = self.published.get(name)
        if doc is not None and self.adopt(day, doc):
            return
        decision = self.trainer.decide(day)
        self.store.publish(decision)
        if decision.model_doc is not None:
            self.model_docs[decision.model_doc["_id"]] = decision.model_doc
        RETRAIN_SECONDS.set(time.monotonic() - started)
        DECIDED_DAY.set(day)
        validation = self.trainer.validation.get(self.trainer.current.version)
        if validation is not None:
            VALIDATION_AP.set(validation)
        _log.info("decision %s", decision.log)
        self.write_health()

    def adopt(self, day: int, doc: dict[str, Any]) -> bool:
        """Take over a decision already in the registry (a restart); False if it is unusable."""
        try:
            point = self.store.point_of(doc, self.trainer.formula)
        except (ModelError, KeyError, TypeError, ValueError) as exc:
            _log.error("published decision %s is unusable (%s): deciding it again",
                       doc.get("_id"), exc)  # fmt: skip
            return False
        model_doc = self.model_docs.get(point.version, {})
        validation = (model_doc.get("metrics") or {}).get("validation_ap")
        self.trainer.adopt(day, point, validation)
        DECIDED_DAY.set(day)
        _log.info("adopted the published decision for %s: %s at threshold %.6f",
                  doc.get("_id"), point.version, point.threshold)  # fmt: skip
        return True

    def write_health(self) -> None:
        self.health_at = time.monotonic() + self.settings.trainer_health_every_s
        docs = self.trainer.health(day_of(self.trainer.newest_ts))
        self.store.write_health(docs)
        final = [d for d in docs if d["day_ap"] is not None]
        if final:
            newest = final[-1]
            DAY_AP.set(newest["day_ap"])
            DRIFT.set(1 if newest["drift"] else 0)
            if newest["drift"]:
                _log.warning("model drift: %s AP %.4f against validation AP %s of %s",
                             newest["day"], newest["day_ap"], newest["validation_ap"],
                             newest["model_version"])  # fmt: skip


def main() -> int:
    from fraudwatch.logs import configure_logging

    configure_logging("trainer")
    settings = TrainerSettings()
    ruleset = load_ruleset(settings.fraud_rules_file)
    if settings.trainer_metrics_port:
        serve_metrics(
            settings.trainer_metrics_host, settings.trainer_metrics_port, "TRAINER_METRICS_PORT"
        )
    db = connect(settings.mongodb_uri, settings.mongodb_database, settings.mongodb_timeout_ms)
    service = TrainerService(settings, ruleset, ModelStore(db))

    def stop(signum: int, _frame: object) -> None:
        _log.info("signal %d: stopping after this batch", signum)
        service.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
