"""Model health in the console (issue #12, item 6): the ``/model`` page, the drift banner
every page shows, the JSON the API serves and the Prometheus gauges.

Everything reads through :class:`webapp.data.model_registry.ModelRegistry`, whose cache keeps the
answers for ``WEBAPP_MODEL_CACHE_S``: the banner on every page and each ``/metrics`` scrape
cost a dictionary lookup, and at most one small query per process per TTL.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from typing import Any

from flask import Blueprint, Flask, render_template, request
from pymongo.errors import PyMongoError

from webapp.data.model_registry import (
    DEFAULT_DAYS,
    DEFAULT_VERSIONS,
    MAX_DAYS,
    MAX_VERSIONS,
    DriftAlarm,
    current_model,
    drift_alarm,
    first_model_message,
    model_health_payload,
    newest_measured_day,
)
from webapp.queries import parse_limit, single_values
from webapp.services import Services, services

bp = Blueprint("model", __name__)

LOGGER = logging.getLogger("fraudwatch.webapp")


def page_payload(svc: Services) -> dict[str, Any]:
    """What ``/model`` shows and its charts draw."""
    return model_health_payload(
        svc.models.versions(DEFAULT_VERSIONS),
        svc.models.health_days(DEFAULT_DAYS),
        span=DEFAULT_DAYS,
        first_model_after_days=svc.settings.webapp_model_first_after_days,
    )


@bp.get("/model")
def model_page() -> str:
    svc = services()
    single_values(request.args.to_dict(flat=False), ())
    return render_template("model.html", model=page_payload(svc))


# --- JSON API (routes in webapp.views.api, which owns authentication) -----------------------------


def models_answer(svc: Services) -> dict[str, Any]:
    """``GET /api/v1/models?limit=N``: the newest N versions, newest first, and the current one."""
    values = single_values(request.args.to_dict(flat=False), ("limit",))
    limit = parse_limit(values.get("limit"), default=DEFAULT_VERSIONS, maximum=MAX_VERSIONS)
    versions = svc.models.versions(limit)
    current = current_model(versions)
    return {
        "current": current.to_api() if current else None,
        "scoring_with": "model" if current is not None and current.learned else "formula",
        "first_model_message": None
        if current is not None and current.learned
        else first_model_message(svc.settings.webapp_model_first_after_days),
        "models": [m.to_api() for m in versions],
        "count": len(versions),
    }


def model_health_answer(svc: Services) -> dict[str, Any]:
    """``GET /api/v1/model-health?days=D``: the newest D days, newest first, and the alarm."""
    values = single_values(request.args.to_dict(flat=False), ("days",))
    days = parse_limit(values.get("days"), default=DEFAULT_DAYS, maximum=MAX_DAYS, name="days")
    found = svc.models.health_days(days)
    alarm = drift_alarm(found)
    return {
        "drift": alarm.to_api() if alarm else None,
        "days": [d.to_api() for d in found],
        "count": len(found),
    }


# --- banner and gauges --------------------------------------------------------------------------


def drift_banner() -> DriftAlarm | None:
    """The drift alarm for ``base.html`` (a Jinja global, so only full pages ask for it).

    Never fails a page: if MongoDB does not answer, the page shows without the banner (the
    page's own reads report the outage).
    """
    try:
        return services().models.drift()
    except PyMongoError as exc:
        LOGGER.warning("model health unreadable for the drift banner: %s", exc)
        return None


def update_model_gauges(svc: Services) -> None:
    """Set the model-health gauges before a ``/metrics`` scrape; on a database error the last
    values stay (``/healthz`` reports the database)."""
    try:
        days = svc.models.health_days(DEFAULT_DAYS)
    except PyMongoError as exc:
        LOGGER.warning("model health unreadable for /metrics: %s", exc)
        return
    newest = newest_measured_day(days)
    alarm = drift_alarm(days)
    day_start = None
    if newest is not None:
        midnight = datetime.combine(date.fromisoformat(newest.day), time(), tzinfo=UTC)
        day_start = midnight.timestamp()
    svc.metrics.model_health(
        day_start=day_start,
        day_ap=newest.day_ap if newest else None,
        validation_ap=newest.validation_ap if newest else None,
        drift=alarm is not None,
    )


@bp.record_once
def _register_template_global(state: Any) -> None:
    app: Flask = state.app
    app.jinja_env.globals["drift_banner"] = drift_banner
