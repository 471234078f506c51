"""Which model scores a transaction, and from which alert threshold it alerts.

The trainer (``dataflows.training``) decides once per day of event time: it keeps the current
model or promotes a new one, and re-derives the alert threshold from the recent score
distribution so that about ``ALERT_BUDGET_CARDS_PER_DAY`` cards alert per day. Each decision
is an **operating point**: a model version and a threshold that score every transaction from
``effective_ms`` (event time) on. A transaction is scored by the newest operating point whose
``effective_ms`` is at or before its own event time, so replays and recovery choose the same
one whatever the wall clock did; until the first operating point exists the formula of
``scoring`` scores with the rule file's threshold.

A model is a function of the feature matrix (``features.FEATURE_NAMES`` columns) called once
per batch. Two kinds exist: ``formula`` (the part-1 score, read back from the
``formula_logit`` column) and ``lightgbm`` (a gradient-boosted tree model, LightGBM's text
format). A LightGBM model is checked before use (its feature names, a finite probe
prediction, the artifact's digest); one that fails is refused with ``ModelError`` and the
previous operating points keep scoring.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from dataflows.detection.features import FEATURE_NAMES
from dataflows.detection.ruleset import SeverityConfig
from fraudwatch.vocabulary import Severity

if TYPE_CHECKING:
    import lightgbm

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[np.float64]

FORMULA = "formula"
LIGHTGBM = "lightgbm"
_FORMULA_COLUMN = FEATURE_NAMES.index("formula_logit")


class ModelError(ValueError):
    """A model artifact that cannot score: the message says what is wrong with it."""


class Model(Protocol):
    """Scores a batch of feature rows in one call."""

    @property
    def version(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def predict(self, x: Matrix) -> Vector:
        """One score in [0, 1] per row of ``x``."""
        ...

    def contributions(self, x: Matrix) -> Matrix:
        """Per row, each feature's contribution in log-odds, then the bias (last column)."""
        ...


def sigmoid(x: Vector) -> Vector:
    out: Vector = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float64)  # overflow-free
    return out


class FormulaModel:
    """The part-1 score as a model: ``sigmoid(logit(prior) + formula_logit)``."""

    kind = FORMULA

    def __init__(self, version: str, prior: float) -> None:
        self.version = version
        self.prior_logit = math.log(prior / (1.0 - prior))

    def predict(self, x: Matrix) -> Vector:
        return np.round(sigmoid(self.prior_logit + x[:, _FORMULA_COLUMN]), 6)

    def contributions(self, x: Matrix) -> Matrix:
        out = np.zeros((x.shape[0], x.shape[1] + 1))
        out[:, _FORMULA_COLUMN] = x[:, _FORMULA_COLUMN]
        out[:, -1] = self.prior_logit
        return out


class GbmModel:
    """A LightGBM booster over ``FEATURE_NAMES``, loaded from its text format."""

    kind = LIGHTGBM

    def __init__(self, version: str, booster: lightgbm.Booster) -> None:
        self.version = version
        self.booster = booster

    @classmethod
    def from_text(cls, version: str, text: str, sha256: str | None = None) -> GbmModel:
        """Load and check a model; raises ``ModelError`` saying why it cannot score."""
        import lightgbm

        if sha256 is not None and digest(text) != sha256:
            raise ModelError(f"model {version}: its text does not match its sha256 {sha256}")
        try:
            booster = lightgbm.Booster(model_str=text)
        except Exception as exc:  # LightGBM raises its own error types for bad text
            raise ModelError(f"model {version}: LightGBM cannot read it: {exc}") from exc
        names = tuple(booster.feature_name())
        if names != FEATURE_NAMES:
            missing = sorted(set(FEATURE_NAMES) - set(names))
            extra = sorted(set(names) - set(FEATURE_NAMES))
            raise ModelError(
                f"model {version}: its features are not this dataflow's "
                f"(missing {missing[:5]}, unknown {extra[:5]}, or another order)"
            )
        model = cls(version, booster)
        probe = model.predict(np.zeros((2, len(FEATURE_NAMES))))
        if not np.all(np.isfinite(probe)) or np.any((probe < 0) | (probe > 1)):
            raise ModelError(f"model {version}: a probe prediction is not a probability")
        return model

    def predict(self, x: Matrix) -> Vector:
        raw = np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)
        return cast("Vector", np.round(raw, 6))

    def contributions(self, x: Matrix) -> Matrix:
        out = self.booster.predict(x, pred_contrib=True, num_threads=1)
        return np.asarray(out, dtype=np.float64)

    def to_text(self) -> str:
        return str(self.booster.model_to_string())


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Where an operating point's severity cut-offs come from.
BANDS_FROM_ALERTS = "recent_alerts"  # shares of the recent alerts the score raised
BANDS_FROM_ODDS = "threshold_odds"  # multiples of the alert threshold's odds


@dataclass(frozen=True)
class SeverityBands:
    """Score cut-offs of the severity bands: a score at or above ``critical`` is critical, at
    or above ``high`` high, at or above ``medium`` medium, anything lower low. An alert raised
    by an always-alert signal is at least high, whatever its score."""

    medium: float
    high: float
    critical: float
    basis: str = BANDS_FROM_ODDS

    def severity(self, score: float, always_alert: bool = False) -> Severity:
        if score >= self.critical:
            return "critical"
        if score >= self.high or always_alert:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"

    @classmethod
    def from_odds(cls, threshold: float, config: SeverityConfig) -> SeverityBands:
        """Cut-offs at multiples of the threshold's odds (the evidence a likelihood ratio of
        that many times stronger than what it takes to alert)."""
        t = min(max(threshold, 1e-9), 1.0 - 1e-9)
        base = math.log(t / (1.0 - t))

        def cut(multiple: float) -> float:
            if threshold >= 1.0:
                return 1.0
            return round(1.0 / (1.0 + math.exp(-(base + math.log(multiple)))), 6)

        return cls(cut(config.medium_odds), cut(config.high_odds), cut(config.critical_odds))

    @classmethod
    def from_alerts(
        cls, scores: Vector, weights: Vector, threshold: float, config: SeverityConfig
    ) -> SeverityBands:
        """Cut-offs that put ``config``'s shares of these alerts' (sampling) weight at or above
        each band; the odds cut-offs when there are too few alerts to take shares of."""
        order = np.argsort(-scores, kind="stable")
        s, w = scores[order], weights[order]
        if len(s) < math.ceil(1.0 / config.critical_share):
            return cls.from_odds(threshold, config)
        reached = np.cumsum(w) / w.sum()

        def cut(share: float) -> float:
            i = min(int(np.searchsorted(reached, share - 1e-12)), len(s) - 1)
            return float(s[i])

        return cls(
            cut(config.medium_share), cut(config.high_share), cut(config.critical_share),
            BANDS_FROM_ALERTS,
        )  # fmt: skip

    def doc(self) -> dict[str, Any]:
        return {
            "medium": self.medium,
            "high": self.high,
            "critical": self.critical,
            "basis": self.basis,
        }

    @classmethod
    def from_doc(cls, doc: Any) -> SeverityBands:
        """Read back what ``doc`` wrote; ``ValueError`` for anything else."""
        if not isinstance(doc, dict):
            raise ValueError(f"severity bands {doc!r}")
        cuts = [doc.get(k) for k in ("medium", "high", "critical")]
        if not all(isinstance(c, int | float) and 0 <= c <= 1 for c in cuts):
            raise ValueError(f"severity bands {doc!r}: cut-offs must be scores in [0, 1]")
        lo, mid, hi = (float(c) for c in cuts)  # type: ignore[arg-type]
        if not lo <= mid <= hi:
            raise ValueError(f"severity bands {doc!r}: cut-offs must grow toward critical")
        return cls(lo, mid, hi, str(doc.get("basis", BANDS_FROM_ODDS)))


@dataclass(frozen=True)
class OperatingPoint:
    """One day's decision: this model and threshold score from ``effective_ms`` on, and these
    severity bands grade its alerts (None: the rule file's odds multiples of the threshold)."""

    day: str  # the UTC event day the trainer decided for, "2026-10-12"
    effective_ms: int
    model: Model
    threshold: float
    budget: int | None = None  # the cards-per-day budget the threshold was sized to
    bands: SeverityBands | None = None

    @property
    def version(self) -> str:
        return self.model.version

    def severity_bands(self, config: SeverityConfig) -> SeverityBands:
        return (
            self.bands
            if self.bands is not None
            else SeverityBands.from_odds(self.threshold, config)
        )


class PolicyBook:
    """The operating points known to this process, by event time.

    ``refresh`` (set by the wiring) adds new points from wherever the trainer publishes them;
    it is called between batches and must not raise for a bad artifact (it logs and skips).
    """

    def __init__(self, fallback: OperatingPoint) -> None:
        self.fallback = fallback
        self._starts: list[int] = []
        self._points: list[OperatingPoint] = []

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> Sequence[OperatingPoint]:
        return tuple(self._points)

    @property
    def newest(self) -> OperatingPoint:
        return self._points[-1] if self._points else self.fallback

    def has(self, day: str) -> bool:
        return any(p.day == day for p in self._points)

    def add(self, point: OperatingPoint) -> None:
        """Add (or replace, by day) an operating point."""
        self._points = [p for p in self._points if p.day != point.day]
        self._points.append(point)
        self._points.sort(key=lambda p: (p.effective_ms, p.day))
        self._starts = [p.effective_ms for p in self._points]

    def keep_newest(self, n: int) -> None:
        """Forget all but the newest ``n`` points (older event times fall back to the oldest
        kept one, which only matters for transactions older than the lateness)."""
        if len(self._points) > n:
            self._points = self._points[-n:]
            self._starts = self._starts[-n:]

    def at(self, ts: int) -> OperatingPoint:
        """The point that scores a transaction at event time ``ts``."""
        i = bisect.bisect_right(self._starts, ts) - 1
        return self._points[i] if i >= 0 else self.fallback


def operating_point_doc(point: OperatingPoint) -> dict[str, Any]:
    """What the trainer publishes for the dataflow (``dataflows.io.model_store``)."""
    return {
        "_id": point.day,
        "day": point.day,
        "effective_ms": point.effective_ms,
        "model_version": point.version,
        "kind": point.model.kind,
        "threshold": point.threshold,
        "budget_cards_per_day": point.budget,
        **({"severity_bands": point.bands.doc()} if point.bands is not None else {}),
    }
