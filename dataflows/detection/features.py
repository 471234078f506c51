"""Each scored transaction as a vector of named numbers: what a model can learn from.

The score itself is the fixed formula of ``scoring``; these features are the same evidence in
raw form (the card's behaviour over 1/7/30 days, the amount against its habit, time of day,
the merchant's delayed-window risk, each signal's weight), for the backtest's
``--features-out`` and for training a model on labelled history. Computed on demand, never on
the hot path.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from dataflows.detection.detector import CardVerdict
from dataflows.detection.merchant import MerchantView
from dataflows.detection.signals import Signal
from fraudwatch.contract import SIGNAL_NAMES


def features(
    v: CardVerdict, merchant: MerchantView, signals: tuple[Signal, ...]
) -> dict[str, float]:
    """The named features of one judged transaction (all finite floats)."""
    e = v.event
    h = v.habit
    when = datetime.fromtimestamp(e.ts / 1000, UTC)
    out: dict[str, float] = {
        "amount": v.amount,
        "log_amount": math.log1p(v.amount),
        "hour_utc": float(when.hour),
        "is_weekend": float(when.weekday() >= 5),
        "is_night_utc": float(when.hour < 6),
        "card_present": float(e.card_present),
        "late": float(v.late),
        "card_history_days": h.history_days,
        "card_count_1d": h.count_1d,
        "card_count_7d": h.count_7d,
        "card_count_30d": h.count_30d,
        "card_mean_amount_1d": h.amount_1d / h.count_1d if h.count_1d > 0 else 0.0,
        "card_mean_amount_7d": h.amount_7d / h.count_7d if h.count_7d > 0 else 0.0,
        "card_mean_amount_30d": h.amount_30d / h.count_30d if h.count_30d > 0 else 0.0,
        "amount_vs_card_median": v.amount / v.card_median if v.card_median > 0 else 0.0,
        "merchant_n_1d": float(merchant.n_1d),
        "merchant_n_7d": float(merchant.n_7d),
        "merchant_n_30d": float(merchant.n_30d),
        "merchant_risk_1d": merchant.risk(1),
        "merchant_risk_7d": merchant.risk(7),
        "merchant_risk_30d": merchant.risk(30),
        "merchant_recent_n": float(merchant.recent_n),
        "merchant_recent_frauds": float(merchant.recent_fraud),
        "amount_vs_merchant_ticket": (
            v.amount / merchant.typical_amount if merchant.typical_amount > 0 else 0.0
        ),
    }
    fired = {s.rule: s.weight for s in signals}
    for name in SIGNAL_NAMES:
        out[f"signal_{name}"] = fired.get(name, 0.0)
    return out


FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "log_amount",
    "hour_utc",
    "is_weekend",
    "is_night_utc",
    "card_present",
    "late",
    "card_history_days",
    "card_count_1d",
    "card_count_7d",
    "card_count_30d",
    "card_mean_amount_1d",
    "card_mean_amount_7d",
    "card_mean_amount_30d",
    "amount_vs_card_median",
    "merchant_n_1d",
    "merchant_n_7d",
    "merchant_n_30d",
    "merchant_risk_1d",
    "merchant_risk_7d",
    "merchant_risk_30d",
    "merchant_recent_n",
    "merchant_recent_frauds",
    "amount_vs_merchant_ticket",
    *(f"signal_{name}" for name in SIGNAL_NAMES),
)
