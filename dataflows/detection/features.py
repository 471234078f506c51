"""Each scored transaction as a vector of named numbers: what a model can learn from.

The score itself is the fixed formula of ``scoring``; these features are the same evidence in
raw form (the card's behaviour over 1/7/30 days, the amount against its habit, time of day,
the merchant's delayed-window risk, each signal's weight), for the backtest's
``--features-out`` and for training a model on labelled history. Computed on demand, never on
the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dataflows.detection.merchant import MerchantView
from dataflows.detection.signals import Signal
from fraudwatch.contract import SIGNAL_NAMES

if TYPE_CHECKING:
    from dataflows.detection.detector import CardVerdict


def feature_row(v: CardVerdict, merchant: MerchantView, signals: Sequence[Signal]) -> list[float]:
    """The features of one judged transaction, in ``FEATURE_NAMES`` order (finite floats)."""
    e = v.event
    h = v.habit
    amount = v.amount
    hour = (e.ts // 3_600_000) % 24
    weekday = (e.ts // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    fired = dict.fromkeys(SIGNAL_NAMES, 0.0)
    total = 0.0
    for s in signals:
        fired[s.rule] = s.weight
        total += s.weight
    return [
        amount,
        math.log1p(amount),
        float(hour),
        float(weekday >= 5),
        float(hour < 6),
        float(e.card_present),
        float(v.late),
        h.history_days,
        h.count_1d,
        h.count_7d,
        h.count_30d,
        h.amount_1d / h.count_1d if h.count_1d > 0 else 0.0,
        h.amount_7d / h.count_7d if h.count_7d > 0 else 0.0,
        h.amount_30d / h.count_30d if h.count_30d > 0 else 0.0,
        amount / v.card_median if v.card_median > 0 else 0.0,
        float(merchant.n_1d),
        float(merchant.n_7d),
        float(merchant.n_30d),
        merchant.risk(1),
        merchant.risk(7),
        merchant.risk(30),
        float(merchant.recent_n),
        float(merchant.recent_fraud),
        amount / merchant.typical_amount if merchant.typical_amount > 0 else 0.0,
        *fired.values(),
        total,
    ]


def features(
    v: CardVerdict, merchant: MerchantView, signals: tuple[Signal, ...]
) -> dict[str, float]:
    """The named features of one judged transaction (all finite floats)."""
    return dict(zip(FEATURE_NAMES, feature_row(v, merchant, signals), strict=True))


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
    # The formula's own evidence (the sum of the fired signals' weights, in log-odds).
    "formula_logit",
)
