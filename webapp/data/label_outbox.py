"""Analysts' verdicts as fraud labels (contract v1) on ``LABELS_TOPIC``, through an outbox.

``confirmed_fraud`` becomes a ``fraud`` label, ``false_positive`` a ``genuine`` one (source
``analyst``, the card named by its token: the console never has the PAN). A later verdict on
the same alert publishes a later label with a later ``reported_at``, which overrides.

No label may be lost, and none may be sent for a disposition that did not happen. So each
label is first written to ``label_outbox`` as an *intent* with a unique id; the disposition's
audit entry (the compare-and-set, ``webapp.data.store``) carries that id; then the outbox is
delivered. An outbox entry is sent only when the audit entry ``<alert id>:<version>`` names
it, and dropped when that entry names another label or, after :data:`INTENT_GRACE`, does
not exist (the request died before its compare-and-set). Delivered entries are deleted.
Whatever fails on the way (Kafka, or MongoDB after the disposition) leaves the entry in the
outbox for the next disposition or ``flask --app webapp publish-labels``. Sending one twice
is harmless: the detector dedupes labels by (transaction id, label, reported_at), and the
outbox keeps the exact bytes, so a retry is identical to the first attempt.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from fraudwatch.alert_store import DISPOSITIONS, AlertView, as_utc
from fraudwatch.contract import FraudLabel, format_ts
from fraudwatch.vocabulary import LabelSource, LabelValue
from webapp.data.label_producer import LabelProducer

Doc = dict[str, Any]

LABEL_OUTBOX = "label_outbox"
# The statuses that are a verdict on the transaction, and the label each one publishes.
LABEL_FOR_STATUS: dict[str, LabelValue] = {"confirmed_fraud": "fraud", "false_positive": "genuine"}
LABEL_SOURCE: LabelSource = "analyst"
# An intent whose audit entry does not exist after this long belongs to a request that died
# before its compare-and-set (each MongoDB call of a request gives up within ~30 s).
INTENT_GRACE = timedelta(minutes=10)
# Most outbox entries one disposition sends along with its own (oldest first).
REQUEST_BATCH = 200
_EPOCH = datetime.fromtimestamp(0, UTC)
# The outbox's delivery order: verdicts in the order they were given.
AGE_ORDER = [("reported_at", ASCENDING), ("created_at", ASCENDING)]

_log = logging.getLogger("fraudwatch.webapp.labels")


class LabelUnavailable(ValueError):
    """The alert lacks what a v1 label needs (e.g. a document from before the contract)."""


def label_for(alert: AlertView, to: str, reported_at: datetime) -> FraudLabel | None:
    """The label that moving ``alert`` to status ``to`` publishes, or ``None`` for statuses
    that are no verdict (``investigating``, ``dismissed``).

    Raises:
        LabelUnavailable: the alert's transaction fields do not make a valid v1 label.
    """
    value = LABEL_FOR_STATUS.get(to)
    if value is None:
        return None
    try:
        return FraudLabel.model_validate(
            {
                "transaction_id": alert.transaction_id,
                "card_token": alert.card_token,
                "merchant_id": alert.merchant_id,
                "timestamp": format_ts(alert.timestamp),
                "amount": alert.amount,
                "currency": alert.currency,
                "label": value,
                "reported_at": format_ts(reported_at),
                "source": LABEL_SOURCE,
            }
        )
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        raise LabelUnavailable(
            f"the alert has no valid {', '.join(fields) or 'transaction data'} for a label"
        ) from None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One label waiting to be sent: the exact message, and the disposition it belongs to."""

    label_id: str
    audit_id: str  # the disposition's audit ``_id``: ``<alert id>:<version seen>``
    label: str
    key: str  # the card token (the topic's key, as for alerts)
    value: str  # the label's JSON, sent byte for byte on every attempt
    reported_at: datetime
    created_at: datetime
    confirmed: bool = False  # the audit entry was seen to name this label

    @classmethod
    def for_label(
        cls, label: FraudLabel, *, alert_id: str, version: int, now: datetime
    ) -> OutboxEntry:
        return cls(
            label_id=uuid.uuid4().hex,
            audit_id=f"{alert_id}:{version}",
            label=label.label,
            key=label.card_token or "",
            value=json.dumps(label.to_json_dict(), separators=(",", ":")),
            reported_at=label.reported_at,
            created_at=now,
        )

    @classmethod
    def from_doc(cls, doc: Doc) -> OutboxEntry:
        # Entries are written only by ``to_doc``; the fallback only keeps a hand-edited one
        # from breaking delivery (it then counts as old).
        created = as_utc(doc.get("created_at")) or _EPOCH
        return cls(
            label_id=str(doc["_id"]),
            audit_id=str(doc.get("audit_id", "")),
            label=str(doc.get("label", "")),
            key=str(doc.get("key", "")),
            value=str(doc.get("value", "")),
            reported_at=as_utc(doc.get("reported_at")) or created,
            created_at=created,
            confirmed=doc.get("confirmed") is True,
        )

    def to_doc(self) -> Doc:
        return {
            "_id": self.label_id,
            "audit_id": self.audit_id,
            "label": self.label,
            "key": self.key,
            "value": self.value,
            "reported_at": self.reported_at,
            "created_at": self.created_at,
            "attempts": 0,
        }


class LabelOutbox:
    """The ``label_outbox`` collection: labels not (yet) acknowledged by Kafka.

    Small by design (entries are deleted once sent), so listing it in order is cheap even on
    FerretDB v1, which scans. Every other access is by ``_id``.
    """

    def __init__(self, db: Database[Doc]) -> None:
        self._entries = db[LABEL_OUTBOX]
        self._dispositions = db[DISPOSITIONS]
        self._indexes_ready = False

    def ensure_indexes(self) -> None:
        """Create the ``by_age`` index once per process (idempotent on the server, so two
        threads racing here only repeat a no-op)."""
        if not self._indexes_ready:
            self._entries.create_indexes([IndexModel(AGE_ORDER, name="by_age")])
            self._indexes_ready = True

    def add(self, entry: OutboxEntry) -> None:
        self._entries.insert_one(entry.to_doc())

    def discard(self, label_ids: list[str]) -> None:
        if label_ids:
            self._entries.delete_many({"_id": {"$in": label_ids}})

    def oldest(self, limit: int) -> list[OutboxEntry]:
        """Entries in the order their verdicts were given (so a later verdict is sent later)."""
        cursor = self._entries.find({}).sort(AGE_ORDER).limit(limit)
        return [OutboxEntry.from_doc(d) for d in cursor]

    def count(self) -> int:
        return self._entries.count_documents({})

    def record_failure(self, label_ids: list[str], error: str, now: datetime) -> None:
        """Keep the entries for a retry; they are known to belong to real dispositions."""
        if label_ids:
            self._entries.update_many(
                {"_id": {"$in": label_ids}},
                {
                    "$set": {"confirmed": True, "last_error": error, "last_attempt_at": now},
                    "$inc": {"attempts": 1},
                },
            )

    def audit_label_id(self, entry: OutboxEntry) -> str | None:
        """The label id the entry's disposition names; ``""`` for a disposition without one,
        ``None`` when there is no such disposition (yet). A lookup by ``_id``."""
        audit = self._dispositions.find_one({"_id": entry.audit_id}, {"label_id": 1})
        if audit is None:
            return None
        return str(audit.get("label_id") or "")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one pass over the outbox did (label ids)."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # intents whose disposition is in flight
    error: str = ""  # the first failure, for messages and logs


# (label, result) -> None, with result "sent", "failed" or "dropped" (metrics).
DeliveryObserver = Callable[[str, str], None]


class LabelPublisher:
    """Delivers the outbox to Kafka; the console's only path from a verdict to the topic."""

    def __init__(
        self,
        outbox: LabelOutbox,
        producer: LabelProducer,
        *,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.outbox = outbox
        self.producer = producer
        self._observer = observer

    @property
    def topic(self) -> str:
        return self.producer.topic

    def deliver(
        self, now: datetime, *, limit: int = REQUEST_BATCH, confirmed: str | None = None
    ) -> Delivery:
        """Send up to ``limit`` outbox entries, oldest first, in one batch.

        Args:
            now: the time, for the intent grace period and the failure record.
            limit: how many entries to look at.
            confirmed: the label id whose disposition the caller has just recorded (no need
                to look its audit entry up).

        Raises:
            PyMongoError: the outbox could not be read or updated (entries stay as they were,
                or are sent again later: harmless).
        """
        ready: list[OutboxEntry] = []
        dropped: list[OutboxEntry] = []
        waiting: list[str] = []
        for entry in self.outbox.oldest(limit):
            if entry.confirmed or entry.label_id == confirmed:
                ready.append(entry)
                continue
            named = self.outbox.audit_label_id(entry)
            if named == entry.label_id:
                ready.append(entry)
            elif named is not None or now - entry.created_at > INTENT_GRACE:
                dropped.append(entry)  # that disposition lost its compare-and-set, or never ran
            else:
                waiting.append(entry.label_id)
        self.outbox.discard([e.label_id for e in dropped])
        self._observe(dropped, "dropped")
        errors = self.producer.send([(e.key.encode(), e.value.encode()) for e in ready])
        sent = [e for e, err in zip(ready, errors, strict=True) if err is None]
        failed = [e for e, err in zip(ready, errors, strict=True) if err is not None]
        first_error = next((err for err in errors if err is not None), "")
        self._observe(sent, "sent")
        self._observe(failed, "failed")
        if failed:
            _log.warning(
                "fraud labels not acknowledged by Kafka; kept in the outbox",
                extra={
                    "fields": {
                        "labels": len(failed),
                        "topic": self.topic,
                        "bootstrap": self.producer.bootstrap,
                        "error": first_error,
                    }
                },
            )
            self.outbox.record_failure([e.label_id for e in failed], first_error, now)
        self.outbox.discard([e.label_id for e in sent])
        return Delivery(
            sent=[e.label_id for e in sent],
            failed=[e.label_id for e in failed],
            dropped=[e.label_id for e in dropped],
            waiting=waiting,
            error=first_error,
        )

    def _observe(self, entries: list[OutboxEntry], result: str) -> None:
        if self._observer is not None:
            for entry in entries:
                self._observer(entry.label, result)
