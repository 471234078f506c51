"""The numbers behind ``/dashboard`` and ``GET /api/stats`` (pure: no Flask, no MongoDB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from fraudwatch.alert_store import MinuteStats
from fraudwatch.contract import format_ts_or_none
from fraudwatch.vocabulary import OUTCOMES, RULE_NAMES, SEVERITIES


def minute_floor(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def build_stats(
    minutes: Sequence[MinuteStats],
    outcomes: Mapping[str, Mapping[str, int]],
    *,
    since: datetime,
    until: datetime,
    outcome_since: datetime,
) -> dict[str, Any]:
    """Per-minute series (every minute present, zero-filled), totals, severity shares and
    each rule's precision as judged by analysts: confirmed / (confirmed + false positives)."""
    by_minute = {m.minute: m for m in minutes}
    series: list[dict[str, Any]] = []
    t = minute_floor(since)
    while t < until:
        m = by_minute.get(t)
        series.append(
            {
                "minute": format_ts_or_none(t),
                "transactions": m.transactions if m else 0,
                "alerts": m.alerts if m else 0,
                "late": m.late if m else 0,
                "by_rule": {r: (m.by_rule.get(r, 0) if m else 0) for r in RULE_NAMES},
                "by_severity": {s: (m.by_severity.get(s, 0) if m else 0) for s in SEVERITIES},
            }
        )
        t += timedelta(minutes=1)
    transactions = sum(p["transactions"] for p in series)
    alerts = sum(p["alerts"] for p in series)
    severity = {s: sum(p["by_severity"][s] for p in series) for s in SEVERITIES}
    rules_total = {r: sum(p["by_rule"][r] for p in series) for r in RULE_NAMES}
    precision = []
    for rule in RULE_NAMES:
        counts = {o: int(outcomes.get(rule, {}).get(o, 0)) for o in OUTCOMES}
        judged = counts["confirmed_fraud"] + counts["false_positive"]
        precision.append(
            {
                "rule": rule,
                **counts,
                "precision": round(counts["confirmed_fraud"] / judged, 4) if judged else None,
            }
        )
    return {
        "since": format_ts_or_none(since),
        "until": format_ts_or_none(until),
        "minutes": series,
        "totals": {
            "transactions": transactions,
            "alerts": alerts,
            "late": sum(p["late"] for p in series),
            "alerts_per_1000_transactions": (
                round(alerts * 1000 / transactions, 2) if transactions else None
            ),
        },
        "by_severity": severity,
        "by_rule": rules_total,
        "outcomes_since": format_ts_or_none(outcome_since),
        "outcomes": precision,
    }
