"""The per-application objects the views use, built once in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from pymongo import MongoClient

from fraudwatch.cards import CardTokenizer
from webapp.data.label_outbox import LabelPublisher
from webapp.data.model_registry import ModelRegistry
from webapp.data.store import AlertStore
from webapp.data.users import AccessStore
from webapp.settings import WebappSettings
from webapp.web_metrics import WebMetrics

EXTENSION_KEY = "fraudwatch"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Services:
    settings: WebappSettings
    client: MongoClient[dict[str, object]]
    alerts: AlertStore
    access: AccessStore
    tokenizer: CardTokenizer
    metrics: WebMetrics
    # The trainer's models and daily model health (read-only; issue #12).
    models: ModelRegistry
    clock: Callable[[], datetime] = utc_now
    # Publishes analysts' verdicts as fraud labels; None when WEBAPP_PUBLISH_LABELS is off.
    labels: LabelPublisher | None = None

    def now(self) -> datetime:
        return self.clock()

    def ensure_indexes(self) -> None:
        self.alerts.ensure_indexes()
        self.access.ensure_indexes()
        if self.labels is not None:
            self.labels.outbox.ensure_indexes()


def services() -> Services:
    """The current application's :class:`Services`."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found
