"""Prometheus metrics for ``/metrics``: request counts and latency, logins, dispositions and
the fraud labels they publish.

Labels are route templates and status codes only, never alert data, users or card values.
Each application gets its own registry; with ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with
several workers) the endpoint aggregates every worker's files instead.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector


class WebMetrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fraudwatch_webapp_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraudwatch_webapp_request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.logins = Counter(
            "fraudwatch_webapp_logins",
            "Login attempts by outcome (ok, failed, locked, rate_limited).",
            ["outcome"],
            registry=self.registry,
        )
        # Which worker process answered this scrape (several gunicorn workers share a port).
        self.worker = Gauge(
            "fraudwatch_webapp_worker_pid",
            "Process id of the worker that served this scrape.",
            registry=self.registry,
        )
        self.worker.set(os.getpid())
        self.read_cache = Counter(
            "fraudwatch_webapp_read_cache_lookups",
            "Read-cache lookups by view (page, counts, card_history, minute_stats, outcomes, "
            "models, model_health) "
            "and result: hit (served from memory), miss (queried the database), shared "
            "(waited for an identical query already running).",
            ["view", "result"],
            registry=self.registry,
        )
        self.dispositions = Counter(
            "fraudwatch_webapp_dispositions",
            "Alert status changes by target status and result (ok, conflict).",
            ["to", "result"],
            registry=self.registry,
        )

        self.label_deliveries = Counter(
            "fraudwatch_webapp_labels",
            "Fraud labels from dispositions by label (fraud, genuine) and delivery result: sent "
            "(acknowledged by Kafka), failed (kept in the outbox for a retry), dropped (an "
            "outbox entry whose disposition did not happen).",
            ["label", "result"],
            registry=self.registry,
        )

        # Model health (issue #12), set at each scrape from the cached model_health read; NaN
        # while unknown. "mostrecent": with several gunicorn workers the freshest value wins.
        self.model_drift = Gauge(
            "fraudwatch_model_drift",
            "1 when the newest event day with a measured average precision is marked as drift "
            "(its AP well below the model's validation AP), else 0.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.model_day_ap = Gauge(
            "fraudwatch_model_day_ap",
            "Average precision of the scoring model on the newest event day with labels.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.model_validation_ap = Gauge(
            "fraudwatch_model_validation_ap",
            "Validation average precision of the model that scored that day.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.model_day = Gauge(
            "fraudwatch_model_health_day_timestamp_seconds",
            "Start (UTC) of the newest event day with a measured average precision.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )

    def model_health(
        self,
        *,
        day_start: float | None,
        day_ap: float | None,
        validation_ap: float | None,
        drift: bool,
    ) -> None:
        """Set the model-health gauges (``None``: unknown, exported as NaN)."""
        nan = float("nan")
        self.model_drift.set(1 if drift else 0)
        self.model_day_ap.set(nan if day_ap is None else day_ap)
        self.model_validation_ap.set(nan if validation_ap is None else validation_ap)
        self.model_day.set(nan if day_start is None else day_start)

    def label_delivery(self, label: str, result: str) -> None:
        """A ``LabelPublisher`` observer: one label sent, failed or dropped."""
        self.label_deliveries.labels(label, result).inc()

    def read_cache_lookup(self, view: str, result: str) -> None:
        """A ``ReadCache`` observer: one lookup of ``view`` that was a hit, miss or shared."""
        self.read_cache.labels(view, result).inc()

    def render(self) -> bytes:
        """The exposition text: this process's registry, or all workers' in multiprocess mode."""
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
