"""Typed, read-only views of the MongoDB documents the console shows.

The dataflow writes alerts; older documents may lack newer fields (``evidence_txns``), so every
field is read defensively here, once, and templates and the API work with these objects.
Untrusted text (merchant names, comments, reason details) stays text: templates escape it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudwatch.contract import epoch_ms
from fraudwatch.contract import queue_key as make_queue_key
from fraudwatch.geo import haversine_km
from fraudwatch.vocabulary import TRANSITIONS

Doc = dict[str, Any]


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

    @property
    def cursor(self) -> str:
        """The pagination cursor that points just past this alert: its queue key."""
        return self.queue_key or make_queue_key(epoch_ms(self.timestamp), self.score, self.alert_id)

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
        )

    def to_api(self, *, detail: bool = False) -> dict[str, Any]:
        """The JSON form for ``/api/alerts`` (times in RFC 3339 UTC)."""
        out: dict[str, Any] = {
            "id": self.alert_id,
            "transaction_id": self.transaction_id,
            "timestamp": rfc3339(self.timestamp),
            "detected_at": rfc3339(self.detected_at),
            "status": self.status,
            "severity": self.severity,
            "score": self.score,
            "card_masked": self.card_masked,
            "card_token": self.card_token,
            "card_last4": self.card_last4,
            "account_id": self.account_id,
            "amount": self.amount,
            "currency": self.currency,
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name,
            "merchant_category": self.merchant_category,
            "channel": self.channel,
            "country": self.country,
            "rules": list(self.rules),
        }
        if detail:
            out.update(
                latitude=self.latitude,
                longitude=self.longitude,
                reasons=[
                    {"rule": r.rule, "score": r.score, "detail": r.detail} for r in self.reasons
                ],
                evidence=list(self.evidence),
                evidence_txns=[
                    {
                        "transaction_id": t.transaction_id,
                        "timestamp": rfc3339(t.timestamp),
                        "amount_base": t.amount_base,
                        "latitude": t.latitude,
                        "longitude": t.longitude,
                        "country": t.country,
                        "channel": t.channel,
                    }
                    for t in self.evidence_txns
                ],
                ruleset_version=self.ruleset_version,
                model_version=self.model_version or None,
                base_currency=self.base_currency,
                late=self.late,
                status_changed_at=rfc3339(self.status_changed_at),
                status_changed_by=self.status_changed_by or None,
                status_version=self.status_version,
            )
        return out


@dataclass(frozen=True, slots=True)
class DispositionView:
    """One audit entry: who moved the alert from which status to which, and why."""

    at: datetime | None
    user: str
    from_status: str
    to_status: str
    comment: str
    label: str | None = None  # the fraud label this verdict published ("fraud", "genuine")

    @classmethod
    def from_doc(cls, doc: Doc) -> DispositionView:
        return cls(
            at=as_utc(doc.get("at")),
            user=_str(doc, "user"),
            from_status=_str(doc, "from"),
            to_status=_str(doc, "to"),
            comment=_str(doc, "comment"),
            label=_str(doc, "label") or None,
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "at": rfc3339(self.at),
            "user": self.user,
            "from": self.from_status,
            "to": self.to_status,
            "comment": self.comment,
            "label": self.label,
        }


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


def rfc3339(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, or ``None``."""
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Hop:
    """The move between two consecutive card locations: distance and implied speed."""

    from_label: str
    to_label: str
    km: float
    hours: float | None

    @property
    def kmh(self) -> float | None:
        if self.hours is None or self.hours <= 0:
            return None
        return self.km / self.hours


def travel_hops(alert: AlertView) -> list[Hop]:
    """Distances between the evidence transactions and the alerted one, in time order."""
    points: list[tuple[datetime | None, str, float, float]] = []
    for t in alert.evidence_txns:
        if t.latitude is not None and t.longitude is not None:
            when = t.timestamp.strftime("%H:%M") if t.timestamp else "?"
            label = f"{when} {t.country}" + (
                " (this)" if t.transaction_id == alert.transaction_id else ""
            )
            points.append((t.timestamp, label, t.latitude, t.longitude))
    known = any(t.transaction_id == alert.transaction_id for t in alert.evidence_txns)
    if alert.latitude is not None and alert.longitude is not None and not known:
        label = f"{alert.timestamp.strftime('%H:%M')} {alert.country} (this)"
        points.append((alert.timestamp, label, alert.latitude, alert.longitude))
    points.sort(key=lambda p: p[0] or datetime.fromtimestamp(0, UTC))
    hops = []
    for a, b in itertools.pairwise(points):
        hours = (b[0] - a[0]).total_seconds() / 3600 if a[0] and b[0] else None
        hops.append(Hop(a[1], b[1], haversine_km(a[2], a[3], b[2], b[3]), hours))
    return hops
