"""The shapes of the alert store's documents, both ways.

Written by the dataflow: ``alert_document`` (an ``Alert`` as an ``alerts`` document, with the
console's ``queue_key``) and ``stats_document`` (one event-time minute of ``alert_stats``).
Read by the console: ``AlertView``, ``DispositionView`` and ``MinuteStats``. Older documents
may lack newer fields (``evidence_txns``, ``queue_key``), so every field is read defensively
here, once, and templates and the API work with these objects. Untrusted text (merchant names,
comments, reason details) stays text: templates escape it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudwatch.contract import Alert, epoch_ms
from fraudwatch.vocabulary import RULE_NAMES, TRANSITIONS

Doc = dict[str, Any]

# --- written by the dataflow ---------------------------------------------------------------


def alert_document(alert: Alert) -> Doc:
    """The ``alerts`` document: the ``fraud-alerts`` value with ``_id`` = alert id, times as
    BSON dates, the rule names as an array, the card's last four digits, the queue key and
    one rule queue key per rule that fired (``rule_keys``)."""
    doc = alert.to_json_dict()
    doc["_id"] = doc.pop("alert_id")
    doc["timestamp"] = datetime.fromtimestamp(alert.event.ts / 1000, UTC)
    doc["detected_at"] = datetime.fromtimestamp(alert.detected_at / 1000, UTC)
    doc["rules"] = [r.rule for r in alert.reasons]
    doc["card_last4"] = alert.event.card_masked[-4:]
    doc["queue_key"] = queue_key(alert.event.ts, alert.score, alert.alert_id)
    doc.update(rule_keys(doc["rules"], doc["queue_key"]))
    return doc


RULE_KEY_PREFIX = "queue_key_"


def rule_key_field(rule: str) -> str:
    """The field that holds an alert's queue key when ``rule`` fired on it, absent otherwise.

    The rule filter's index: ``rules`` is an array, and an array is not an index bound on the
    patched FerretDB (its SQL indexes hold one value per document), so each filterable rule
    gets a scalar field of its own. Listing alerts of one rule is then a range on this field,
    sorted by it, exactly like the queue on ``queue_key``, and counting them is index-only.
    """
    return RULE_KEY_PREFIX + rule


def rule_keys(rules: list[str], key: str) -> Doc:
    """The rule queue key fields of an alert with these rules and this queue key (only the
    rules the console can filter on: ``vocabulary.RULE_NAMES``)."""
    return {rule_key_field(r): key for r in rules if r in RULE_NAMES}


QUEUE_KEY_SCORE_DIGITS = 7  # the score in millionths, 0000000..1000000


def queue_key(ts_ms: int, score: float | None, alert_id: str) -> str:
    """The console's queue order as one string: ``<UTC day>_<score in millionths>_<alert id>``.

    Sorting it descending lists the newest event day first and, within a day, the highest
    score first (ties by id), which is the order the analysts work in (issue #12: the alert
    budget picks the day's best cards). One string field makes it one index key and one
    range condition for cursor pagination on MongoDB and on the patched FerretDB (which
    pushes string ranges down, not ``$or`` nor doubles). A missing or non-finite score sorts
    as 0.
    """
    day = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")
    s = score if score is not None and math.isfinite(score) else 0.0
    millionths = round(min(max(s, 0.0), 1.0) * 1_000_000)
    return f"{day}_{millionths:0{QUEUE_KEY_SCORE_DIGITS}d}_{alert_id}"


NEW_MINUTE = "_new"  # marker on a stats document its writer has not written before


def minute_id(minute: datetime) -> str:
    """The ``_id`` of an ``alert_stats`` document: the minute in RFC 3339, UTC."""
    return minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def stats_document(minute: int, counts: dict[str, Any], *, new: bool = False) -> Doc:
    """The ``alert_stats`` document of one minute (epoch minutes) from its complete counts
    (``transactions``, ``alerts``, ``late``, ``duplicates``, ``by_rule``, ``by_severity``).

    ``new`` marks a minute its writer has not written before, so ``write_stats`` inserts it
    instead of rewriting it.
    """
    when = datetime.fromtimestamp(minute * 60, UTC)
    doc: Doc = {
        "_id": minute_id(when),
        "minute": when,
        "transactions": counts["transactions"],
        "alerts": counts["alerts"],
        "late": counts["late"],
        "duplicates": counts["duplicates"],
        "by_rule": dict(counts["by_rule"]),
        "by_severity": dict(counts["by_severity"]),
    }
    if new:
        doc[NEW_MINUTE] = True
    return doc


# --- read by the console -------------------------------------------------------------------


def as_utc(value: Any) -> datetime | None:
    """A BSON date (naive UTC from pymongo) or an RFC 3339 string as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _str(doc: Doc, key: str, default: str = "") -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else default


def _float(doc: Doc, key: str) -> float | None:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class ReasonView:
    rule: str
    score: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class EvidenceTxn:
    transaction_id: str
    timestamp: datetime | None
    amount_base: float | None  # in the alert's base_currency
    latitude: float | None
    longitude: float | None
    country: str
    channel: str

    @property
    def has_location(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as the console shows it (queue row, detail page and API)."""

    alert_id: str
    timestamp: datetime
    detected_at: datetime | None
    status: str
    severity: str
    score: float | None
    card_token: str
    card_masked: str
    card_last4: str
    account_id: str
    amount: float | None
    currency: str
    merchant_id: str
    merchant_name: str
    merchant_category: str
    channel: str
    country: str
    latitude: float | None
    longitude: float | None
    rules: tuple[str, ...]
    reasons: tuple[ReasonView, ...] = ()
    evidence: tuple[str, ...] = ()
    evidence_txns: tuple[EvidenceTxn, ...] = ()
    ruleset_version: str = ""
    model_version: str = ""  # the model that scored it (issue #12); "" on older alerts
    transaction_id: str = ""
    base_currency: str = "EUR"
    late: bool = False
    status_changed_at: datetime | None = None
    status_changed_by: str = ""
    status_version: int = 0
    queue_key: str = ""
    # The case an analyst decided this alert in (set with its verdict); "" while undecided:
    # then it belongs to its card's open case (docs/webapp.md, "Cases").
    case_id: str = ""

    @property
    def cursor(self) -> str:
        """The pagination cursor that points just past this alert: its queue key."""
        return self.queue_key or queue_key(epoch_ms(self.timestamp), self.score, self.alert_id)

    @property
    def has_location(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    @property
    def next_statuses(self) -> tuple[str, ...]:
        return TRANSITIONS.get(self.status, ())

    @classmethod
    def from_doc(cls, doc: Doc) -> AlertView:
        """Read an ``alerts`` document; missing optional fields get empty values."""
        timestamp = as_utc(doc.get("timestamp")) or datetime.fromtimestamp(0, UTC)
        raw_reasons = doc.get("reasons")
        reasons = tuple(
            ReasonView(rule=_str(r, "rule"), score=_float(r, "score"), detail=_str(r, "detail"))
            for r in (raw_reasons if isinstance(raw_reasons, list) else [])
            if isinstance(r, dict)
        )
        raw_rules = doc.get("rules")
        rules = (
            tuple(r for r in raw_rules if isinstance(r, str)) if isinstance(raw_rules, list) else ()
        )
        if not rules:
            rules = tuple(r.rule for r in reasons if r.rule)
        raw_evidence = doc.get("evidence")
        evidence = (
            tuple(e for e in raw_evidence if isinstance(e, str))
            if isinstance(raw_evidence, list)
            else ()
        )
        raw_txns = doc.get("evidence_txns")
        txns = tuple(
            EvidenceTxn(
                transaction_id=_str(t, "transaction_id"),
                timestamp=as_utc(t.get("timestamp")),
                # ``amount_base`` in the alert's base currency; early drafts said amount_eur.
                amount_base=_float(t, "amount_base")
                if "amount_base" in t
                else _float(t, "amount_eur"),
                latitude=_float(t, "latitude"),
                longitude=_float(t, "longitude"),
                country=_str(t, "country"),
                channel=_str(t, "channel"),
            )
            for t in (raw_txns if isinstance(raw_txns, list) else [])
            if isinstance(t, dict)
        )
        masked = _str(doc, "card_masked")
        return cls(
            alert_id=str(doc.get("_id", "")),
            timestamp=timestamp,
            detected_at=as_utc(doc.get("detected_at")),
            status=_str(doc, "status", "open"),
            queue_key=_str(doc, "queue_key"),
            severity=_str(doc, "severity", "low"),
            score=_float(doc, "score"),
            card_token=_str(doc, "card_token"),
            card_masked=masked,
            card_last4=_str(doc, "card_last4", masked[-4:]),
            account_id=_str(doc, "account_id"),
            amount=_float(doc, "amount"),
            currency=_str(doc, "currency"),
            merchant_id=_str(doc, "merchant_id"),
            merchant_name=_str(doc, "merchant_name"),
            merchant_category=_str(doc, "merchant_category"),
            channel=_str(doc, "channel"),
            country=_str(doc, "country"),
            latitude=_float(doc, "latitude"),
            longitude=_float(doc, "longitude"),
            rules=rules,
            reasons=reasons,
            evidence=evidence,
            evidence_txns=txns,
            ruleset_version=_str(doc, "ruleset_version"),
            model_version=_str(doc, "model_version"),
            transaction_id=_str(doc, "transaction_id"),
            base_currency=_str(doc, "base_currency", "EUR"),
            late=doc.get("late") is True,
            status_changed_at=as_utc(doc.get("status_changed_at")),
            status_changed_by=_str(doc, "status_changed_by"),
            status_version=int(_float(doc, "status_version") or 0),
            case_id=_str(doc, "case_id"),
        )


@dataclass(frozen=True, slots=True)
class DispositionView:
    """One audit entry: who moved the alert from which status to which, and why."""

    at: datetime | None
    user: str
    from_status: str
    to_status: str
    comment: str
    label: str | None = None  # the fraud label this verdict published ("fraud", "genuine")
    alert_id: str = ""
    case_id: str = ""  # set when the change was made on a whole case

    @classmethod
    def from_doc(cls, doc: Doc) -> DispositionView:
        return cls(
            at=as_utc(doc.get("at")),
            user=_str(doc, "user"),
            from_status=_str(doc, "from"),
            to_status=_str(doc, "to"),
            comment=_str(doc, "comment"),
            label=_str(doc, "label") or None,
            alert_id=_str(doc, "alert_id"),
            case_id=_str(doc, "case_id"),
        )


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One ``alert_stats`` document (one event-time minute)."""

    minute: datetime
    transactions: int
    alerts: int
    late: int
    by_rule: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Doc) -> MinuteStats | None:
        minute = as_utc(doc.get("minute"))
        if minute is None:
            return None

        def counts(key: str) -> dict[str, int]:
            raw = doc.get(key)
            if not isinstance(raw, dict):
                return {}
            return {
                str(k): int(v)
                for k, v in raw.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }

        def number(key: str) -> int:
            value = doc.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return 0
            return int(value)

        return cls(
            minute=minute,
            transactions=number("transactions"),
            alerts=number("alerts"),
            late=number("late"),
            by_rule=counts("by_rule"),
            by_severity=counts("by_severity"),
        )
