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
from fraudwatch.vocabulary import SIGNAL_NAMES

if TYPE_CHECKING:
    from dataflows.detection.detector import CardVerdict


def feature_row(v: CardVerdict, merchant: MerchantView, signals: Sequence[Signal]) -> list[float]:
    """The features of one judged transaction, in ``FEATURE_NAMES`` order (finite floats).

    On the hot path (every transaction): plain arithmetic, no per-call dicts.
    """
    e = v.event
    h = v.habit
    amount = v.amount
    ts = e.ts
    hour = (ts // 3_600_000) % 24
    weekday = (ts // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    m = merchant
    c1, c7, c30 = h.count_1d, h.count_7d, h.count_30d
    row = [
        amount,
        math.log1p(amount),
        float(hour),
        1.0 if weekday >= 5 else 0.0,
        1.0 if hour < 6 else 0.0,
        1.0 if e.card_present else 0.0,
        1.0 if v.late else 0.0,
        h.history_days,
        c1,
        c7,
        c30,
        h.amount_1d / c1 if c1 > 0 else 0.0,
        h.amount_7d / c7 if c7 > 0 else 0.0,
        h.amount_30d / c30 if c30 > 0 else 0.0,
        amount / v.card_median if v.card_median > 0 else 0.0,
        float(m.n_1d),
        float(m.n_7d),
        float(m.n_30d),
        m.fraud_1d / m.n_1d if m.n_1d else 0.0,
        m.fraud_7d / m.n_7d if m.n_7d else 0.0,
        m.fraud_30d / m.n_30d if m.n_30d else 0.0,
        float(m.recent_n),
        float(m.recent_fraud),
        amount / m.typical_amount if m.typical_amount > 0 else 0.0,
    ]
    fired = [0.0] * _N_SIGNALS
    total = 0.0
    for s in signals:
        fired[_SIGNAL_AT[s.rule]] = s.weight
        total += s.weight
    row += fired
    row.append(total)
    return row


_SIGNAL_AT = {name: i for i, name in enumerate(SIGNAL_NAMES)}
_N_SIGNALS = len(SIGNAL_NAMES)


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
