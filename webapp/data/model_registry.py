"""The model registry and model health, as the console reads them (issue #12, item 6).

The trainer writes two collections (``docs/contracts.md``, "Model registry and model health"):
``models``, one document per daily decision (a promoted or a rejected candidate; the formula
as kind ``formula`` before the first model), and ``model_health``, one document per event day,
upserted as labels arrive. The console only reads them.

Pure part: :class:`ModelVersion` and :class:`HealthDay` read documents defensively (a field of
the wrong type reads as missing, never as an error: the writer is another process and may be
older or newer than this one), :func:`current_model`, :func:`drift_alarm`,
:func:`health_window` and :func:`model_health_payload` shape what the page, the API and the
metrics show. I/O part: :class:`ModelRegistry` reads bounded windows (the newest N versions,
the last D event days) through a read cache of its own, so that the drift banner on every page
costs a dictionary lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database

from fraudwatch.alert_store import as_utc
from fraudwatch.contract import format_ts_or_none
from webapp.data.read_cache import ReadCache

Doc = dict[str, Any]

MODELS = "models"
MODEL_HEALTH = "model_health"
FORMULA = "formula"

# Bounds of every read: a version a day and a day a day, so a year of history is one page.
DEFAULT_VERSIONS = 60
MAX_VERSIONS = 366
DEFAULT_DAYS = 30
MAX_DAYS = 366


# --- reading fields defensively -----------------------------------------------------------------


def _text(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    """A finite number, else ``None`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else None


def _day(value: Any) -> str | None:
    """An event day ``YYYY-MM-DD``, else ``None``."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


# --- documents ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One ``models`` document: a trainer's decision about one candidate (or the formula)."""

    version: str
    kind: str
    status: str
    trained_at: datetime | None
    effective_day: str | None
    window_from: str | None
    window_to: str | None
    features: tuple[str, ...]
    params: Mapping[str, Any]
    train_rows: int | None
    train_frauds: int | None
    validation_day: str | None
    validation_ap: float | None
    validation_auc: float | None
    current_version: str | None
    current_ap: float | None
    train_seconds: float | None
    peak_rss_mb: float | None
    threshold: float | None
    budget_cards_per_day: int | None
    libraries: Mapping[str, str]
    reason: str

    @classmethod
    def from_doc(cls, doc: Doc) -> ModelVersion | None:
        version = _text(doc.get("version"), 200) or _text(doc.get("_id"), 200)
        if version is None:
            return None
        metrics = _mapping(doc.get("metrics"))
        window = _mapping(doc.get("training_window"))
        features = doc.get("features")
        libraries = _mapping(doc.get("libraries"))
        return cls(
            version=version,
            kind=_text(doc.get("kind"), 50) or "unknown",
            status=_text(doc.get("status"), 50) or "unknown",
            trained_at=as_utc(doc.get("trained_at")),
            effective_day=_day(doc.get("effective_day")),
            window_from=_day(window.get("from")),
            window_to=_day(window.get("to")),
            features=tuple(f[:200] for f in features if isinstance(f, str))
            if isinstance(features, list)
            else (),
            params=dict(_mapping(doc.get("params"))),
            train_rows=_count(metrics.get("train_rows")),
            train_frauds=_count(metrics.get("train_frauds")),
            validation_day=_day(metrics.get("validation_day")),
            validation_ap=_number(metrics.get("validation_ap")),
            validation_auc=_number(metrics.get("validation_auc")),
            current_version=_text(metrics.get("current_version"), 200),
            current_ap=_number(metrics.get("current_ap")),
            train_seconds=_number(metrics.get("train_seconds")),
            peak_rss_mb=_number(metrics.get("peak_rss_mb")),
            threshold=_number(doc.get("threshold")),
            budget_cards_per_day=_count(doc.get("budget_cards_per_day")),
            libraries={
                str(k)[:50]: v[:50] for k, v in sorted(libraries.items()) if isinstance(v, str)
            },
            reason=_text(doc.get("reason"), 1000) or "",
        )

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    @property
    def learned(self) -> bool:
        """A trained model, not the formula."""
        return self.kind != FORMULA

    def to_api(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "status": self.status,
            "trained_at": format_ts_or_none(self.trained_at),
            "effective_day": self.effective_day,
            "training_window": {"from": self.window_from, "to": self.window_to},
            "features": list(self.features),
            "params": dict(self.params),
            "metrics": {
                "train_rows": self.train_rows,
                "train_frauds": self.train_frauds,
                "validation_day": self.validation_day,
                "validation_ap": self.validation_ap,
                "current_version": self.current_version,
                "current_ap": self.current_ap,
                "validation_auc": self.validation_auc,
                "train_seconds": self.train_seconds,
                "peak_rss_mb": self.peak_rss_mb,
            },
            "threshold": self.threshold,
            "budget_cards_per_day": self.budget_cards_per_day,
            "libraries": dict(self.libraries),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class HealthDay:
    """One ``model_health`` document: how the scoring model did on one event day (UTC)."""

    day: str
    model_version: str | None
    threshold: float | None
    budget_cards_per_day: int | None
    alerted_cards: int | None
    alerts: int | None
    labelled_alerts: int | None
    alert_precision: float | None
    k: int | None
    card_precision_at_k: float | None
    day_ap: float | None
    validation_ap: float | None
    drift: bool
    updated_at: datetime | None

    @classmethod
    def from_doc(cls, doc: Doc) -> HealthDay | None:
        day = _day(doc.get("day")) or _day(doc.get("_id"))
        if day is None:
            return None
        return cls(
            day=day,
            model_version=_text(doc.get("model_version"), 200),
            threshold=_number(doc.get("threshold")),
            budget_cards_per_day=_count(doc.get("budget_cards_per_day")),
            alerted_cards=_count(doc.get("alerted_cards")),
            alerts=_count(doc.get("alerts")),
            labelled_alerts=_count(doc.get("labelled_alerts")),
            alert_precision=_number(doc.get("alert_precision")),
            k=_count(doc.get("k")),
            card_precision_at_k=_number(doc.get("card_precision_at_k")),
            day_ap=_number(doc.get("day_ap")),
            validation_ap=_number(doc.get("validation_ap")),
            drift=doc.get("drift") is True,
            updated_at=as_utc(doc.get("updated_at")),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "model_version": self.model_version,
            "threshold": self.threshold,
            "budget_cards_per_day": self.budget_cards_per_day,
            "alerted_cards": self.alerted_cards,
            "alerts": self.alerts,
            "labelled_alerts": self.labelled_alerts,
            "alert_precision": self.alert_precision,
            "k": self.k,
            "card_precision_at_k": self.card_precision_at_k,
            "day_ap": self.day_ap,
            "validation_ap": self.validation_ap,
            "drift": self.drift,
            "updated_at": format_ts_or_none(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class DriftAlarm:
    """The newest day with a measured AP says the model drifted."""

    day: str
    day_ap: float
    validation_ap: float | None
    model_version: str | None

    def message(self) -> str:
        validation = "-" if self.validation_ap is None else f"{self.validation_ap:.3f}"
        model = f"model {self.model_version}" if self.model_version else "the model"
        return (
            f"Model drift: on {self.day} the average precision of {model} was "
            f"{self.day_ap:.3f}, well below its validation AP {validation}."
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "day_ap": self.day_ap,
            "validation_ap": self.validation_ap,
            "model_version": self.model_version,
            "message": self.message(),
        }


# --- shaping (pure) -----------------------------------------------------------------------------


def newest_first_versions(versions: Iterable[ModelVersion]) -> list[ModelVersion]:
    """Versions by training time, newest first (undated ones last, by version)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(versions, key=lambda m: (m.trained_at or epoch, m.version), reverse=True)


def current_model(versions: Iterable[ModelVersion]) -> ModelVersion | None:
    """The promoted version that scores now: the one with the latest ``effective_day``
    (ties: the latest trained), the formula included. ``None`` when nothing was promoted."""
    epoch = datetime.min.replace(tzinfo=UTC)
    promoted = [m for m in versions if m.promoted]
    if not promoted:
        return None
    return max(promoted, key=lambda m: (m.effective_day or "", m.trained_at or epoch, m.version))


def newest_measured_day(days: Iterable[HealthDay]) -> HealthDay | None:
    """The newest day whose average precision is known (labels arrive days later)."""
    measured = [d for d in days if d.day_ap is not None]
    return max(measured, key=lambda d: d.day) if measured else None


def drift_alarm(days: Iterable[HealthDay]) -> DriftAlarm | None:
    """An alarm when the newest day with a measured AP is marked ``drift`` by the trainer."""
    newest = newest_measured_day(days)
    if newest is None or not newest.drift or newest.day_ap is None:
        return None
    return DriftAlarm(newest.day, newest.day_ap, newest.validation_ap, newest.model_version)


def health_window(days: Iterable[HealthDay], span: int) -> list[tuple[str, HealthDay | None]]:
    """The ``span`` event days ending at the newest day found, oldest first, one entry per
    calendar day (``None`` where the trainer wrote nothing): charts keep their time axis."""
    by_day = {d.day: d for d in days}
    if not by_day or span < 1:
        return []
    newest = date.fromisoformat(max(by_day))
    current = max(newest - timedelta(days=span - 1), date.fromisoformat(min(by_day)))
    out: list[tuple[str, HealthDay | None]] = []
    while current <= newest:
        out.append((current.isoformat(), by_day.get(current.isoformat())))
        current += timedelta(days=1)
    return out


def first_model_message(first_model_after_days: int) -> str:
    return (
        "Scoring with the formula; the first model is trained after "
        f"{first_model_after_days} days of labelled history."
    )


def model_health_payload(
    versions: Sequence[ModelVersion],
    days: Sequence[HealthDay],
    *,
    span: int,
    first_model_after_days: int,
) -> dict[str, Any]:
    """Everything the model page shows (and its charts draw), as JSON-ready data.

    ``versions`` are oldest first in the payload (the charts' time axis), ``days`` are the
    last ``span`` calendar days up to the newest one found, with ``null`` for days without a
    document.
    """
    current = current_model(versions)
    alarm = drift_alarm(days)
    measured = newest_measured_day(days)
    learned = current is not None and current.learned
    window = health_window(days, span)
    return {
        "current": current.to_api() if current else None,
        "scoring_with": "model" if learned else FORMULA,
        "first_model_message": None if learned else first_model_message(first_model_after_days),
        "drift": alarm.to_api() if alarm else None,
        "newest_measured_day": measured.to_api() if measured else None,
        "versions": [m.to_api() for m in reversed(newest_first_versions(versions))],
        "days": [
            d.to_api() if d is not None else {"day": day, "missing": True} for day, d in window
        ],
    }


# --- reading (I/O) ------------------------------------------------------------------------------


class ModelRegistry:
    """Bounded, cached reads of ``models`` and ``model_health``.

    Both collections grow by about one document a day, so reads are small: the newest
    ``limit`` versions by ``trained_at`` (a scan of a few hundred documents at most) and the
    newest ``days`` health documents by ``_id`` (the day; the primary key). Answers are kept
    for the cache's TTL (``WEBAPP_MODEL_CACHE_S``): the trainer writes at most a few times an
    hour, while the drift banner is on every page.
    """

    def __init__(self, db: Database[Doc], *, read_cache: ReadCache | None = None) -> None:
        self._models = db[MODELS]
        self._health = db[MODEL_HEALTH]
        self.read_cache = read_cache if read_cache is not None else ReadCache(0)

    def versions(self, limit: int = DEFAULT_VERSIONS) -> list[ModelVersion]:
        """The newest ``limit`` model versions, newest first."""
        limit = max(1, min(limit, MAX_VERSIONS))
        return self.read_cache.get_or_load(("models", limit), lambda: self._load_versions(limit))

    def _load_versions(self, limit: int) -> list[ModelVersion]:
        cursor = self._models.find({}).sort([("trained_at", DESCENDING), ("_id", DESCENDING)])
        found = (ModelVersion.from_doc(d) for d in cursor.limit(limit))
        return newest_first_versions(m for m in found if m is not None)

    def health_days(self, days: int = DEFAULT_DAYS) -> list[HealthDay]:
        """The newest ``days`` health documents (one per event day), newest first."""
        days = max(1, min(days, MAX_DAYS))
        return self.read_cache.get_or_load(("model_health", days), lambda: self._load_days(days))

    def _load_days(self, days: int) -> list[HealthDay]:
        cursor = self._health.find({}).sort([("_id", DESCENDING)]).limit(days)
        found = (HealthDay.from_doc(d) for d in cursor)
        return sorted((d for d in found if d is not None), key=lambda d: d.day, reverse=True)

    def drift(self) -> DriftAlarm | None:
        """The drift alarm, from the same cached read the model page uses."""
        return drift_alarm(self.health_days(DEFAULT_DAYS))
