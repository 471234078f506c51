"""A model's score in words: which evidence pushed it up, with the numbers an analyst checks.

A tree model's score splits exactly into one contribution per feature (LightGBM's
``pred_contrib``, TreeSHAP, in log-odds). Features that tell one story are summed into a
**family** named like the signal an analyst knows (the amount against the card's habit, the
merchant's learned risk, the card's recent count...), and each family is written as a sentence:
the fired signal's own sentence where that signal fired, otherwise one built from the feature
values. The formula's ``formula_logit`` column is shared among the fired signals by weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dataflows.detection.features import FEATURE_NAMES
from dataflows.detection.merchant import MerchantView
from dataflows.detection.signals import Signal, money
from fraudwatch.vocabulary import SIGNAL_NAMES

if TYPE_CHECKING:
    from dataflows.detection.detector import CardVerdict

# Each feature's family; a family's name is the reason's rule name (fraudwatch.contract).
_FAMILY_OF: dict[str, str] = {
    "amount": "amount_vs_merchant",
    "log_amount": "amount_vs_merchant",
    "amount_vs_merchant_ticket": "amount_vs_merchant",
    "hour_utc": "time_of_day",
    "is_weekend": "time_of_day",
    "is_night_utc": "time_of_day",
    "late": "time_of_day",
    "card_present": "channel",
    "card_history_days": "card_activity",
    "card_count_1d": "velocity_count",
    "card_count_7d": "velocity_count",
    "card_count_30d": "velocity_count",
    "card_mean_amount_1d": "amount_vs_habit",
    "card_mean_amount_7d": "amount_vs_habit",
    "card_mean_amount_30d": "amount_vs_habit",
    "amount_vs_card_median": "amount_vs_habit",
    **{name: "merchant_risk" for name in FEATURE_NAMES if name.startswith("merchant_")},
    **{f"signal_{name}": name for name in SIGNAL_NAMES},
}
_FORMULA = FEATURE_NAMES.index("formula_logit")
_COLUMNS = {name: i for i, name in enumerate(FEATURE_NAMES)}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(_FAMILY_OF.values()))


def family_contributions(
    contributions: Sequence[float], signals: Sequence[Signal]
) -> dict[str, float]:
    """One row's per-feature contributions (bias last) summed per family."""
    out = dict.fromkeys(FAMILIES, 0.0)
    for name, i in _COLUMNS.items():
        if i != _FORMULA:
            out[_FAMILY_OF[name]] += float(contributions[i])
    shared = float(contributions[_FORMULA])
    total = sum(s.weight for s in signals if s.weight > 0)
    if shared and total > 0:
        for s in signals:
            if s.weight > 0:
                out[s.rule] += shared * s.weight / total
    return out


def sentence(
    family: str,
    v: CardVerdict,
    merchant: MerchantView,
    row: Sequence[float],
    fired: dict[str, Signal],
    base: str,
    delay_days: int,
) -> str:
    """The family's story for this transaction, in words with numbers."""
    s = fired.get(family)
    if s is not None:
        return s.detail
    e = v.event

    def col(name: str) -> float:
        return float(row[_COLUMNS[name]])

    if family == "amount_vs_habit":
        ratio = col("amount_vs_card_median")
        if ratio > 0:
            return f"{ratio:.1f}x this card's usual amount (median {money(v.card_median)} {base})"
        return "no amount history on this card yet"
    if family == "amount_vs_merchant":
        ratio = col("amount_vs_merchant_ticket")
        text = f"{money(v.amount)} {base} at {e.merchant_name}"
        if ratio > 0:
            text += (
                f", {ratio:.1f}x the merchant's typical ticket of "
                f"{money(merchant.typical_amount)} {base}"
            )
        return text
    if family == "velocity_count":
        per_day = col("card_count_30d") / 30.0
        return (
            f"{col('card_count_1d'):.0f} transactions on this card in the last day "
            f"(about {per_day:.1f} a day over the last 30 days)"
        )
    if family == "merchant_risk":
        text = (
            f"merchant {e.merchant_id} ({e.merchant_name}): {merchant.fraud_7d} of its "
            f"{merchant.n_7d} transactions in the last known week (ending {delay_days} days "
            "ago) were fraud"
        )
        if merchant.recent_fraud:
            text += f"; {merchant.recent_fraud} frauds reported since"
        return text
    if family == "card_activity":
        days = col("card_history_days")
        if days <= 0:
            return "the first transaction seen on this card"
        return f"card first seen {days:.1f} days ago"
    if family == "time_of_day":
        hour = int(col("hour_utc"))
        text = f"at {hour:02d}:00 UTC"
        if col("is_weekend"):
            text += " on a weekend"
        if col("late"):
            text += " (arrived late)"
        return text
    if family == "channel":
        return "card present" if e.card_present else "card not present (online, mail or phone)"
    return family.replace("_", " ")


def top_families(
    contributions: Sequence[float], signals: Sequence[Signal], top: int = 5
) -> list[tuple[str, float]]:
    """The families that raised the score most (positive contributions only), strongest first,
    with every always-alert signal that fired among them."""
    by_family = family_contributions(contributions, signals)
    ordered = sorted(by_family.items(), key=lambda fc: (-fc[1], fc[0]))
    # An alert always says something: with no evidence above the bias (a low threshold), the
    # three families that weighed most in its favour.
    ranked = [(f, c) for f, c in ordered if c > 0][:top] or ordered[:3]
    named = {f for f, _ in ranked}
    for s in signals:
        if s.always_alert and s.rule not in named:
            ranked.append((s.rule, by_family.get(s.rule, 0.0)))
            named.add(s.rule)
    return ranked
