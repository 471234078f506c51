"""Documents of the trainer's ``models`` and ``model_health`` collections, shaped exactly as
docs/contracts.md ("Model registry and model health") says the trainer writes them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from webapp.data.model_registry import MODEL_HEALTH, MODELS

Doc = dict[str, Any]


def make_model_doc(version: str = "gbm-20261012-a1b2c3", **overrides: Any) -> Doc:
    """A promoted LightGBM version; override any top-level field, or ``metrics`` keys via
    ``metrics={...}`` (merged)."""
    metrics = {
        "train_rows": 182_400,
        "train_frauds": 913,
        "validation_day": "2026-10-04",
        "validation_ap": 0.612,
        "current_version": "gbm-20261011-9f8e7d",
        "current_ap": 0.598,
        "validation_auc": 0.981,
        "train_seconds": 41.7,
        "peak_rss_mb": 612.0,
    }
    metrics.update(overrides.pop("metrics", {}))
    doc: Doc = {
        "_id": version,
        "version": version,
        "kind": "lightgbm",
        "status": "promoted",
        "trained_at": datetime(2026, 10, 12, 0, 5, tzinfo=UTC),
        "effective_day": "2026-10-12",
        "training_window": {"from": "2026-09-21", "to": "2026-10-04"},
        "features": ["amount_vs_habit", "merchant_fraud_share_7d", "velocity_1h"],
        "params": {"num_leaves": 31, "learning_rate": 0.05},
        "metrics": metrics,
        "threshold": 0.41,
        "budget_cards_per_day": 100,
        "libraries": {"lightgbm": "4.6.0", "numpy": "2.1.3", "python": "3.11.9"},
        "reason": "promoted: AP 0.612 on 2026-10-04 >= current gbm-20261011-9f8e7d 0.598",
    }
    doc.update(overrides)
    return doc


def make_formula_doc(trained_at: datetime | None = None) -> Doc:
    """The formula, recorded before the first model."""
    return make_model_doc(
        "formula-v1",
        kind="formula",
        trained_at=trained_at or datetime(2026, 9, 1, tzinfo=UTC),
        effective_day="2026-09-01",
        training_window={"from": None, "to": None},
        features=[],
        params={},
        metrics={
            "train_rows": 0,
            "train_frauds": 0,
            "validation_day": None,
            "validation_ap": None,
            "current_version": None,
            "current_ap": None,
            "validation_auc": None,
            "train_seconds": 0.0,
            "peak_rss_mb": 0.0,
        },
        threshold=None,
        budget_cards_per_day=None,
        reason="the formula scores until the first model",
    )


def make_health_doc(day: str = "2026-10-12", **overrides: Any) -> Doc:
    doc: Doc = {
        "_id": day,
        "day": day,
        "model_version": "gbm-20261012-a1b2c3",
        "threshold": 0.41,
        "budget_cards_per_day": 100,
        "alerted_cards": 104,
        "alerts": 131,
        "labelled_alerts": 90,
        "alert_precision": 0.62,
        "k": 100,
        "card_precision_at_k": 0.58,
        "day_ap": 0.597,
        "validation_ap": 0.612,
        "drift": False,
        "updated_at": datetime(2026, 10, 19, 3, 0, tzinfo=UTC),
    }
    doc.update(overrides)
    return doc


def health_days(first: str, count: int, **overrides: Any) -> list[Doc]:
    """``count`` consecutive days from ``first``."""
    start = date.fromisoformat(first)
    return [
        make_health_doc((start + timedelta(days=i)).isoformat(), **overrides) for i in range(count)
    ]


def seed_registry(mongo_db: Any, *, drift_on: str | None = None) -> None:
    """The formula, two promoted models and a rejected candidate; 10 days of health, the
    newest two without an AP yet; ``drift_on`` marks one day as drift (with a low AP)."""
    mongo_db[MODELS].insert_many(
        [
            make_formula_doc(),
            make_model_doc(
                "gbm-20261011-9f8e7d",
                effective_day="2026-10-11",
                trained_at=make_model_doc()["trained_at"] - timedelta(days=1),
                metrics={"validation_ap": 0.598, "current_version": "formula-v1"},
            ),
            make_model_doc(),  # gbm-20261012-a1b2c3, promoted, scores from 2026-10-12
            make_model_doc(
                "gbm-20261013-c0ffee",
                status="rejected",
                effective_day=None,
                trained_at=make_model_doc()["trained_at"] + timedelta(days=1),
                metrics={"validation_ap": 0.571, "current_ap": 0.612},
                reason="rejected: AP 0.571 on 2026-10-05 < current gbm-20261012-a1b2c3 0.612",
            ),
        ]
    )
    days = health_days("2026-10-03", 10)
    for doc in days[-2:]:
        doc.update(day_ap=None, alert_precision=None, labelled_alerts=0)
    for doc in days:
        if doc["day"] == drift_on:
            doc.update(drift=True, day_ap=0.214)
    mongo_db[MODEL_HEALTH].insert_many(days)
