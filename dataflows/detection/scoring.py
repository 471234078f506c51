"""How signals become a score, a decision and an explanation.

score = sigmoid(logit(prior) + sum of the fired signals' weights): a probability-like number
in [0, 1] that only grows with more or stronger evidence (so ranking metrics mean something),
and that reads as "the odds of fraud, starting from the base rate, multiplied by each piece of
evidence's likelihood ratio" (weights are natural-log likelihood ratios: 2.3 = 10x the odds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dataflows.detection.ruleset import RuleSet
from dataflows.detection.signals import Signal


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class Scorer:
    """The scoring half of a rule set: prior, alert threshold, explanation order.

    Severity is the operating point's (``policy.SeverityBands``): it grades an alert among
    the recent ones, which a fixed band of the score cannot do once the threshold moves.
    """

    __slots__ = ("prior_logit", "ruleset", "threshold")

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.prior_logit = logit(ruleset.score.prior)
        self.threshold = ruleset.score.alert_threshold

    def score(self, signals: Sequence[Signal]) -> float:
        """The combined score of ``signals`` (the prior when there are none)."""
        return round(sigmoid(self.prior_logit + sum(s.weight for s in signals)), 6)

    def alone(self, signal: Signal) -> float:
        """What the score would be with this signal alone (shown beside each reason)."""
        return round(sigmoid(self.prior_logit + signal.weight), 4)

    def alerts(self, score: float, signals: Sequence[Signal]) -> bool:
        return score >= self.threshold or any(s.always_alert for s in signals)


def explain(signals: Sequence[Signal], top: int = 5) -> list[Signal]:
    """The strongest contributions first (ties keep the signals' own order)."""
    return sorted(signals, key=lambda s: -s.weight)[:top]
