"""Jinja filters for the console's templates (formatting only; escaping stays automatic)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask_wtf.csrf import generate_csrf

from fraudwatch.contract import epoch_ms, format_ts_or_none
from fraudwatch.vocabulary import RULE_LABELS, RULE_NAMES, SEVERITIES, STATUS_LABELS, STATUSES
from webapp.views.ops import mask_pans


def format_ts(ts: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return ts.astimezone(UTC).strftime(fmt) if ts else "-"


def format_age(ts: datetime | None, now: datetime | None = None) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d``: how long ago ``ts`` was."""
    if ts is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - ts).total_seconds())
    if seconds < 0:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def format_money(amount: float | None, currency: str = "") -> str:
    if amount is None:
        return "-"
    return f"{amount:,.2f} {currency}".strip()


def format_score(score: float | None) -> str:
    return "-" if score is None else f"{score:.2f}"


def format_km(km: float | None) -> str:
    if km is None:
        return "-"
    return f"{km:,.0f} km" if km >= 10 else f"{km:.1f} km"


def format_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.filters.update(
        ts=format_ts,
        age=format_age,
        money=format_money,
        score=format_score,
        km=format_km,
        pct=format_pct,
        rfc3339=format_ts_or_none,
        epoch_ms=epoch_ms,
        mask_pans=mask_pans,
    )
    # Globals (not context) so that imported macros see them too.
    app.jinja_env.globals.update(
        csrf_token=generate_csrf,
        STATUS_LABELS=STATUS_LABELS,
        RULE_LABELS=RULE_LABELS,
        STATUSES=STATUSES,
        SEVERITIES=SEVERITIES,
        RULES=RULE_NAMES,
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
