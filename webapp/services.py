"""The per-application objects the views use: built once by :func:`init_app`, found by
:func:`services`.

Nothing here runs at import time. :func:`init_app` builds every client and store of the
console from the settings: one lazily connecting ``MongoClient`` and one Kafka label producer
whose librdkafka client is created on first use in each process (safe with
``gunicorn --preload``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from pymongo import MongoClient

from dataflows.detection.ruleset import RuleSet, load_ruleset
from fraudwatch.cards import CardTokenizer
from fraudwatch.clients import mongo_client
from webapp.data.cases import CaseStore
from webapp.data.label_outbox import LabelOutbox, LabelPublisher
from webapp.data.label_producer import LabelProducer
from webapp.data.model_registry import ModelRegistry
from webapp.data.read_cache import ReadCache
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
    # The detector's rule set (FRAUD_RULES_FILE): pages compare what they show with its limits.
    ruleset: RuleSet
    clock: Callable[[], datetime] = utc_now
    # Publishes analysts' verdicts as fraud labels; None when WEBAPP_PUBLISH_LABELS is off.
    labels: LabelPublisher | None = None

    def now(self) -> datetime:
        return self.clock()

    @property
    def cases(self) -> CaseStore:
        """Cases, read from the alerts (``webapp.data.cases``)."""
        return CaseStore(self.alerts)

    def ensure_indexes(self) -> None:
        self.alerts.ensure_indexes()
        self.access.ensure_indexes()
        if self.labels is not None:
            self.labels.outbox.ensure_indexes()


def init_app(
    app: Flask,
    settings: WebappSettings,
    *,
    clock: Callable[[], datetime] = utc_now,
    cache_clock: Callable[[], float] = time.time,
) -> Services:
    """Build the console's clients and stores and register them on ``app``.

    Args:
        app: the application; its ``PASSWORD_HASH_METHOD`` config hashes new passwords.
        settings: the console's settings.
        clock: the time the views and stores see (tests set it).
        cache_clock: seconds for the read caches' TTL (tests set it).

    Raises:
        dataflows.detection.ruleset.RuleFileError: ``FRAUD_RULES_FILE`` is missing or invalid.
    """
    client = mongo_client(
        settings,
        connect=False,  # no I/O until the first request (safe with gunicorn --preload)
        tz_aware=True,
        appname="fraudwatch-webapp",
    )
    db = client[settings.mongodb_database]
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    metrics = WebMetrics(settings.prometheus_multiproc_dir)
    read_cache = ReadCache(
        settings.webapp_read_cache_s,
        settings.webapp_read_cache_entries,
        max_loads=settings.webapp_read_concurrency,
        clock=cache_clock,
        observer=metrics.read_cache_lookup,
    )
    labels = None
    if settings.webapp_publish_labels:
        labels = LabelPublisher(
            LabelOutbox(db),
            LabelProducer(settings, settings.labels_topic, settings.webapp_label_timeout_s),
            observer=metrics.label_delivery,
        )
    found = Services(
        settings=settings,
        client=client,
        alerts=AlertStore(
            db,
            queue_window=timedelta(hours=settings.webapp_queue_window_hours),
            read_cache=read_cache,
            time_limit_ms=settings.webapp_query_time_limit_ms,
        ),
        access=AccessStore(
            db,
            config_users=settings.webapp_users,
            lockout_threshold=settings.webapp_lockout_threshold,
            lockout=timedelta(minutes=settings.webapp_lockout_minutes),
            rate_limit=settings.webapp_login_rate_limit,
            rate_window=timedelta(seconds=settings.webapp_login_rate_window_seconds),
            hash_method=str(app.config["PASSWORD_HASH_METHOD"]),
        ),
        tokenizer=CardTokenizer(key),
        metrics=metrics,
        # A cache of its own: these reads must not queue behind the alert scans' bulkhead.
        models=ModelRegistry(
            db,
            read_cache=ReadCache(
                settings.webapp_model_cache_s,
                16,
                clock=cache_clock,
                observer=metrics.read_cache_lookup,
            ),
        ),
        ruleset=load_ruleset(settings.fraud_rules_file),
        clock=clock,
        labels=labels,
    )
    app.extensions[EXTENSION_KEY] = found
    return found


def services(app: Flask | None = None) -> Services:
    """The :class:`Services` of ``app``, by default of the current application."""
    found: Services = (app or current_app).extensions[EXTENSION_KEY]
    return found
