"""The words every component shares, defined once: alert statuses, severities, rule names,
label values and sources, and the exchange-rate table.

The producer, the dataflow and the console import them from here (``fraudwatch.contract``'s
schemas too). Kafka messages and MongoDB documents carry these exact strings, so renaming one
is a contract change (docs/contracts.md). Plain Python with no dependencies.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- alert statuses --------------------------------------------------------------------------

# The dataflow inserts every alert ``open``; from then on the console owns the status.
AlertStatus = Literal["open", "investigating", "confirmed_fraud", "false_positive", "dismissed"]
STATUSES: tuple[str, ...] = get_args(AlertStatus)
# The verdicts that close an investigation.
OUTCOMES: tuple[str, ...] = ("confirmed_fraud", "false_positive", "dismissed")
# Not decided yet: a card's alerts in these statuses form its open case (docs/webapp.md, "Cases").
UNDECIDED: tuple[str, ...] = ("open", "investigating")
# The disposition state machine: which statuses an analyst may move an alert (or a case) to
# from each one. A verdict is one step from ``open``; "investigating" stays available.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("investigating", *OUTCOMES),
    "investigating": OUTCOMES,
    "confirmed_fraud": ("investigating",),
    "false_positive": ("investigating",),
    "dismissed": ("investigating",),
}
STATUS_LABELS: dict[str, str] = {
    "open": "Open",
    "investigating": "Investigating",
    "confirmed_fraud": "Confirmed fraud",
    "false_positive": "False positive",
    "dismissed": "Dismissed",
}

# --- severities ------------------------------------------------------------------------------

# An alert's band among the recent alerts: its operating point's cut-offs of the score
# (docs/detection.md, *Severity*; [severity] in config/rules.toml).
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

# --- rule names ------------------------------------------------------------------------------

# The signals an alert's reasons name (docs/detection.md), strongest-evidence kinds first, and
# how the console shows them. Rule sets before 2026.12 also used the two legacy names, which
# old alerts in MongoDB still carry. The rule file configures each signal under its name
# (``dataflows.detection.ruleset.Rules``; a test keeps the two in step).
SIGNAL_NAMES: tuple[str, ...] = (
    "compromised_card",
    "impossible_travel",
    "card_testing",
    "merchant_risk",
    "amount_vs_habit",
    "amount_vs_merchant",
    "velocity_count",
    "velocity_amount",
    "card_activity",
    "location_anomaly",
)
# Evidence a model's explanation can name that no signal stands for (dataflows.detection.explain).
MODEL_REASON_NAMES: tuple[str, ...] = ("time_of_day", "channel")
LEGACY_RULE_NAMES: tuple[str, ...] = ("high_amount", "amount_spike")
RULE_NAMES: tuple[str, ...] = SIGNAL_NAMES + MODEL_REASON_NAMES + LEGACY_RULE_NAMES
RULE_LABELS: dict[str, str] = {
    "compromised_card": "Known compromised card",
    "impossible_travel": "Impossible travel",
    "card_testing": "Card testing",
    "merchant_risk": "Risky merchant (learned)",
    "amount_vs_habit": "Amount vs card's habit",
    "amount_vs_merchant": "Amount vs merchant's ticket",
    "velocity_count": "Velocity (count)",
    "velocity_amount": "Velocity (amount)",
    "card_activity": "Unusual activity",
    "location_anomaly": "Location anomaly",
    "time_of_day": "Time of day (model)",
    "channel": "Channel (model)",
    "high_amount": "High amount (legacy)",
    "amount_spike": "Amount spike (legacy)",
}

# --- fraud labels ----------------------------------------------------------------------------

LabelValue = Literal["fraud", "genuine"]
# Who reported the truth: the issuer's chargeback feed (the producer simulates it), an
# analyst's verdict in the console, or the cardholder.
LabelSource = Literal["chargeback", "analyst", "customer"]

# --- currencies ------------------------------------------------------------------------------

# Every amount in an alert's reasons and evidence is in this currency.
BASE_CURRENCY = "EUR"
# Static reference rates, late-2025 levels, reviewed quarterly: base-currency units per one
# unit of the currency. The one table: the detector converts amounts into the base currency
# with it (a transaction in a currency without a rate is dead-lettered as
# ``unsupported_currency``) and the producer prices its simulated traffic with its inverse.
# A card's habits are kept in the base currency, so a changed rate can change scores: change
# it together with the rule set's ``version`` in config/rules.toml.
EXCHANGE_RATES: dict[str, float] = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CHF": 1.05,
    "SEK": 0.087,
    "NOK": 0.086,
    "DKK": 0.134,
    "PLN": 0.23,
    "CZK": 0.040,
    "HUF": 0.0025,
    "JPY": 0.0061,
    "CNY": 0.127,
    "INR": 0.011,
    "BRL": 0.17,
    "MXN": 0.050,
    "CAD": 0.67,
    "AUD": 0.60,
    "NZD": 0.55,
    "SGD": 0.69,
    "HKD": 0.118,
    "ZAR": 0.050,
    "TRY": 0.027,
    "AED": 0.25,
    "KRW": 0.00066,
    "RUB": 0.0095,
    "NGN": 0.00058,
}
