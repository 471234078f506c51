"""The trainer's decisions, in event time: retrain, validate, promote, size the alert threshold.

Once per UTC day ``D`` of event time (when the first logged transaction of ``D`` is seen), with
only what was known before ``D`` (logged rows before ``D``, labels reported before ``D``):

1. **Train** a candidate on the latest ``window_days`` days whose labels count as final: the
   days ``D - delay - window .. D - delay - 2`` (``delay`` = ``label_delay_days``). A row is
   fraud when the newest label on its transaction reported before ``D`` says so. Rows carry
   their sampling weight. Rows are sorted by (time, id) first, so the model does not depend on
   the order in which the log was read.
2. **Validate** on the newest final day, ``D - delay - 1``: the candidate's and the current
   model's weighted average precision on it. Promote only if the candidate is not worse.
3. **Size the threshold** so that about ``budget`` cards alert per day: the chosen model
   scores the last ``budget_days`` days of logged rows; per card and day its highest score
   counts; cards that an always-alert signal flags alert anyway and use up budget first.
   The **severity bands** are cut where the rule file's shares of those days' rows at or
   above the threshold (weighted as sampled) begin: the top 10 % critical, and so on.
4. The decision is an operating point that scores from ``D + grace`` on (event time), so a
   running dataflow has that long to load it and a backtest applies it at the same instant.

``Trainer`` holds the rows and labels (bounded to the days it can still use) and makes the
decision; ``dataflows.trainer`` feeds it from Kafka and publishes its decisions, and the
backtest runs the same object in-process.
"""

from __future__ import annotations

import bisect
import platform
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from dataflows.detection.featurelog import LoggedRow
from dataflows.detection.features import FEATURE_NAMES
from dataflows.detection.policy import (
    FORMULA,
    LIGHTGBM,
    FormulaModel,
    GbmModel,
    Model,
    OperatingPoint,
    SeverityBands,
    digest,
)
from dataflows.detection.quality import average_precision, card_precision_at_k, roc_auc
from dataflows.detection.ruleset import SeverityConfig
from fraudwatch.contract import LabelEvent

DAY_MS = 86_400_000

# LightGBM settings chosen in docs/model-choice.md (bench/model_choice.py measures them).
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    # Regularisation was worth more than the choice of library (docs/model-choice.md).
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "seed": 7,
    "verbose": -1,
}
LIGHTGBM_ROUNDS = 200


def day_of(ts: int) -> int:
    return ts // DAY_MS


def day_name(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class TrainingConfig:
    """How the trainer learns; defaults are the documented ones (docs/detection.md)."""

    prior: float
    fallback_threshold: float  # the rule file's threshold (no budget, or nothing to size on)
    ruleset_version: str
    label_delay_days: int = 7
    window_days: int = 14
    min_train_days: int = 3
    min_frauds: int = 20  # labelled frauds a candidate needs to be trained at all
    budget_cards_per_day: int | None = 100
    budget_days: int = 7
    grace_ms: int = 3_600_000
    drift_ratio: float = 0.6  # a final day's AP below this share of validation AP is drift
    drift_min_frauds: int = 10  # ...on a day with at least this many labelled frauds (noise)
    health_days: int = 30
    k: int = 100  # card precision@k in the health view
    params: dict[str, Any] = field(default_factory=lambda: dict(LIGHTGBM_PARAMS))
    rounds: int = LIGHTGBM_ROUNDS
    severity: SeverityConfig = field(default_factory=SeverityConfig)  # the rule file's

    @property
    def keep_days(self) -> int:
        """Days of rows the trainer can still use (training, validation, sizing, health)."""
        return (
            max(self.label_delay_days + self.window_days + 1, self.budget_days, self.health_days)
            + 1
        )


class _Day:
    """One day's logged rows, columnar once frozen."""

    __slots__ = ("_x", "alerted", "always", "cards", "ids", "models", "rows", "scores", "ts", "w")

    def __init__(self) -> None:
        self.rows: list[LoggedRow] = []
        self._x: np.ndarray | None = None

    def add(self, row: LoggedRow) -> None:
        self.rows.append(row)
        self._x = None

    def columns(self) -> None:
        if self._x is not None:
            return
        rows = sorted(self.rows, key=lambda r: (r.ts, r.transaction_id))
        # Duplicates (a row logged twice by a replay) count once.
        unique: dict[str, LoggedRow] = {}
        for r in rows:
            unique.setdefault(r.transaction_id, r)
        self.rows = rows = list(unique.values())
        self.ids = [r.transaction_id for r in rows]
        self.ts = np.array([r.ts for r in rows], dtype=np.int64)
        self.cards = [r.card for r in rows]
        self.scores = np.array([r.score for r in rows], dtype=np.float64)
        self.models = [r.model_version for r in rows]
        self.alerted = np.array([r.alerted for r in rows], dtype=bool)
        self.always = np.array([r.always for r in rows], dtype=bool)
        self.w = np.array([r.weight for r in rows], dtype=np.float64)
        self._x = np.array([r.features for r in rows], dtype=np.float64).reshape(
            len(rows), len(FEATURE_NAMES)
        )

    @property
    def x(self) -> np.ndarray:
        self.columns()
        if self._x is None:  # pragma: no cover - columns() always sets it
            raise RuntimeError("no feature matrix")
        return self._x


@dataclass
class Decision:
    """One day's outcome: the operating point, and the registry documents that record it."""

    point: OperatingPoint
    model_doc: dict[str, Any] | None  # None: no candidate was trained this day
    model_text: str | None  # the promoted model's artifact (LightGBM text), if new
    log: str


class Trainer:
    """Rows, labels and the current model; ``decide(day)`` makes one day's decision."""

    def __init__(self, config: TrainingConfig) -> None:
        self.config = config
        self.formula = FormulaModel(f"formula-{config.ruleset_version}", config.prior)
        self.current: Model = self.formula
        self.current_validation_ap: float | None = None
        self.days: dict[int, _Day] = {}
        # transaction id -> [(reported ms, fraud)], sorted by reported time; and its day
        self.labels: dict[str, list[tuple[int, bool]]] = {}
        self.label_day: dict[str, int] = {}
        self.decided: dict[int, OperatingPoint] = {}
        self.validation: dict[str, float | None] = {}  # model version -> its validation AP
        self.newest_ts = -1

    # ---------------------------------------------------------------- input

    def add_row(self, row: LoggedRow) -> None:
        day = self.days.get(day_of(row.ts))
        if day is None:
            day = self.days[day_of(row.ts)] = _Day()
        day.add(row)
        self.newest_ts = max(self.newest_ts, row.ts)

    def add_label(self, label: LabelEvent) -> None:
        verdicts = self.labels.setdefault(label.transaction_id, [])
        self.label_day[label.transaction_id] = day_of(label.ts)
        entry = (label.reported_ts, label.fraud)
        if entry not in verdicts:
            bisect.insort(verdicts, entry)

    def fraud_known(self, transaction_id: str, before_ms: int) -> bool | None:
        """The newest verdict on a transaction reported before ``before_ms`` (None: none)."""
        verdicts = self.labels.get(transaction_id)
        if not verdicts:
            return None
        i = bisect.bisect_left(verdicts, (before_ms, False)) - 1
        return verdicts[i][1] if i >= 0 else None

    def due(self, ts: int) -> int | None:
        """The day to decide before a row at ``ts`` is added, if one is due."""
        day = day_of(ts)
        if self.newest_ts >= 0 and day > day_of(self.newest_ts) and day not in self.decided:
            return day
        return None

    def prune(self, day: int) -> None:
        """Forget rows (and labels of forgotten rows) no decision from ``day`` on can use."""
        oldest = day - self.config.keep_days
        for d in [d for d in self.days if d < oldest]:
            del self.days[d]
        for tid in [t for t, d in self.label_day.items() if d < oldest]:
            del self.labels[tid], self.label_day[tid]

    # ---------------------------------------------------------------- decide

    def _labelled(self, days: Iterable[int], before_ms: int) -> tuple[np.ndarray, ...] | None:
        parts = [self.days[d] for d in days if d in self.days and self.days[d].rows]
        if not parts:
            return None
        x = np.vstack([p.x for p in parts])
        y = np.array(
            [self.fraud_known(t, before_ms) is True for p in parts for t in p.ids], dtype=bool
        )
        w = np.concatenate([p.w for p in parts])
        return x, y, w

    def decide(self, day: int) -> Decision:
        """The decision for UTC day ``day`` (see the module docstring)."""
        c = self.config
        start_ms = day * DAY_MS
        valid_day = day - c.label_delay_days - 1
        train_days = [d for d in range(valid_day - c.window_days, valid_day) if d in self.days]
        log: list[str] = []
        model_doc: dict[str, Any] | None = None
        model_text = None
        started = time.monotonic()
        rss_before = _reset_peak_rss()
        validation = self._labelled([valid_day], start_ms)
        current_ap = None
        if validation is not None:
            current_ap = average_precision(self.current.predict(validation[0]), *validation[1:])
        train = self._labelled(train_days, start_ms)
        frauds = int(train[1].sum()) if train is not None else 0
        if train is None or len(train_days) < c.min_train_days or frauds < c.min_frauds:
            log.append(
                f"{day_name(day)}: no candidate ({len(train_days)} training days, {frauds} "
                f"labelled frauds; needs {c.min_train_days} and {c.min_frauds}); "
                f"{self.current.version} keeps scoring"
            )
        else:
            candidate, text = self._fit(train, day)
            cand_ap = cand_auc = None
            if validation is not None:
                cand_scores = candidate.predict(validation[0])
                cand_ap = average_precision(cand_scores, *validation[1:])
                cand_auc = roc_auc(cand_scores, *validation[1:])
            promoted = cand_ap is not None and (current_ap is None or cand_ap >= current_ap)
            verdict = "promoted" if promoted else "rejected"
            reason = (
                f"{verdict}: AP {_fmt(cand_ap)} on {day_name(valid_day)} "
                f"{'≥' if promoted else '<'} current {self.current.version} {_fmt(current_ap)}"
            )
            if cand_ap is None:
                reason = f"rejected: no labelled validation day {day_name(valid_day)}"
            log.append(f"{day_name(day)}: candidate {candidate.version} {reason}")
            doc: dict[str, Any] = {
                "_id": candidate.version,
                "version": candidate.version,
                "kind": LIGHTGBM,
                "status": verdict,
                "training_window": {
                    "from": day_name(train_days[0]),
                    "to": day_name(train_days[-1]),
                },
                "features": list(FEATURE_NAMES),
                "params": {**c.params, "rounds": c.rounds},
                "metrics": {
                    "train_rows": len(train[1]),
                    "train_frauds": frauds,
                    "validation_day": day_name(valid_day),
                    "validation_ap": cand_ap,
                    "validation_auc": cand_auc,
                    "current_version": self.current.version,
                    "current_ap": current_ap,
                    "train_seconds": round(time.monotonic() - started, 3),
                    **_peak_rss(rss_before),
                },
                "libraries": _libraries(),
                "reason": reason,
            }
            self.validation[candidate.version] = cand_ap
            if promoted:
                self.current = candidate
                self.current_validation_ap = cand_ap
                doc["effective_day"] = day_name(day)
                model_text = text
            model_doc = doc
        if self.current is self.formula:
            self.validation[self.formula.version] = current_ap
        threshold, bands = self._operating(day)
        point = OperatingPoint(
            day_name(day), start_ms + c.grace_ms, self.current, threshold,
            c.budget_cards_per_day, bands,
        )  # fmt: skip
        self.decided[day] = point
        if model_doc is not None:
            model_doc["threshold"] = threshold
            model_doc["budget_cards_per_day"] = c.budget_cards_per_day
        log.append(
            f"{day_name(day)}: {self.current.version} scores from "
            f"{day_name(day)} +{c.grace_ms // 60_000} min at threshold {threshold:.6f}, "
            f"severity from {bands.medium:.6f} / {bands.high:.6f} / {bands.critical:.6f} "
            f"({bands.basis})"
        )
        self.prune(day)
        return Decision(point, model_doc, model_text, "; ".join(log))

    def adopt(self, day: int, point: OperatingPoint, validation_ap: float | None) -> None:
        """Take a decision made before (a restarted trainer reading the registry)."""
        self.current = point.model
        self.validation[point.version] = validation_ap
        self.decided[day] = point
        self.prune(day)

    def _fit(self, train: tuple[np.ndarray, ...], day: int) -> tuple[GbmModel, str]:
        import lightgbm

        x, y, w = train
        data = lightgbm.Dataset(
            x, label=y.astype(np.float64), weight=w, feature_name=list(FEATURE_NAMES),
            free_raw_data=True, params={"verbose": -1},
        )  # fmt: skip
        booster = lightgbm.train(self.config.params, data, num_boost_round=self.config.rounds)
        text = str(booster.model_to_string())
        version = f"gbm-{day_name(day).replace('-', '')}-{digest(text)[:8]}"
        return GbmModel(version, booster), text

    def _operating(self, day: int) -> tuple[float, SeverityBands]:
        """The threshold at which about ``budget`` cards a day alerted over the recent days,
        and the severity bands that spread the alerts it would have raised on them."""
        c = self.config
        budget = c.budget_cards_per_day
        fallback = c.fallback_threshold if self.current.kind == FORMULA else 0.5
        days = [d for d in range(day - c.budget_days, day) if d in self.days and self.days[d].rows]
        scored = [(self.days[d], self.current.predict(self.days[d].x)) for d in days]
        threshold = _budget_threshold(scored, budget) if budget and scored else fallback
        if not scored:
            return threshold, SeverityBands.from_odds(threshold, c.severity)
        scores = np.concatenate([sc for _, sc in scored])
        weights = np.concatenate([part.w for part, _ in scored])
        raised = scores >= threshold
        return threshold, SeverityBands.from_alerts(
            scores[raised], weights[raised], threshold, c.severity
        )

    # ---------------------------------------------------------------- health

    def health(self, now_day: int) -> list[dict[str, Any]]:
        """One document per recent day with rows: volumes against the budget, and precision
        from the labels known now (``model_health`` in docs/contracts.md)."""
        c = self.config
        now_ms = (now_day + 1) * DAY_MS
        newest_final = now_day - c.label_delay_days - 1
        docs = []
        for d in sorted(self.days):
            if d < now_day - c.health_days or d > now_day:
                continue
            part = self.days[d]
            if not part.rows:
                continue
            part.columns()
            known = [self.fraud_known(t, now_ms) for t in part.ids]
            fraud = np.array([k is True for k in known], dtype=bool)
            labelled = np.array([k is not None for k in known], dtype=bool)
            point = self._point_for(d)
            alerted_cards = {
                c_ for c_, a in zip(part.cards, part.alerted.tolist(), strict=True) if a
            }
            bad_cards = {c_ for c_, f in zip(part.cards, fraud.tolist(), strict=True) if f}
            version = point.version if point else self.formula.version
            validation_ap = self.validation.get(version)
            day_ap = average_precision(part.scores, fraud, part.w) if d <= newest_final else None
            drift = (
                day_ap is not None
                and validation_ap is not None
                and int(fraud.sum()) >= c.drift_min_frauds
                and day_ap < c.drift_ratio * validation_ap
            )
            docs.append(
                {
                    "_id": day_name(d),
                    "day": day_name(d),
                    "model_version": version,
                    "threshold": point.threshold if point else None,
                    "budget_cards_per_day": c.budget_cards_per_day,
                    "alerted_cards": len(alerted_cards),
                    "alerts": int(part.alerted.sum()),
                    "labelled_alerts": int((part.alerted & labelled).sum()),
                    "alert_precision": (
                        len(alerted_cards & bad_cards) / len(alerted_cards)
                        if alerted_cards
                        else None
                    ),
                    "k": c.k,
                    "card_precision_at_k": card_precision_at_k(part.cards, part.scores, fraud, c.k),
                    "day_ap": day_ap,
                    "validation_ap": validation_ap,
                    "drift": bool(drift),
                }
            )
        return docs

    def _point_for(self, day: int) -> OperatingPoint | None:
        known = [d for d in self.decided if d <= day]
        return self.decided[max(known)] if known else None


def _budget_threshold(scored: list[tuple[_Day, np.ndarray]], budget: int) -> float:
    """The score of the ``budget`` x days-th best card-day: per card and day its highest
    score counts; cards an always-alert signal flags alert anyway and use up budget first."""
    best: list[float] = []
    always = 0
    for part, day_scores in scored:
        per_card: dict[str, float] = {}
        flagged: set[str] = set()
        for card, score, alw in zip(
            part.cards, day_scores.tolist(), part.always.tolist(), strict=True
        ):
            if alw:
                flagged.add(card)
            if score > per_card.get(card, -1.0):
                per_card[card] = score
        always += len(flagged)
        best.extend(s for card, s in per_card.items() if card not in flagged)
    k = budget * len(scored) - always
    if k <= 0 or not best:
        return 1.0
    best.sort(reverse=True)
    return float(best[min(k, len(best)) - 1])


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """This process's RSS in kB now, after resetting its peak (Linux; None elsewhere).

    ``ru_maxrss`` cannot be reset and carries a parent's peak across ``exec``; writing 5 to
    ``clear_refs`` resets ``VmHWM``, so the peak read afterwards is this retrain's.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _proc_status_kb("VmRSS")


def _peak_rss(before_kb: int | None) -> dict[str, float | None]:
    """The process's peak RSS during the retrain, and how much above its RSS before it."""
    peak = _proc_status_kb("VmHWM")
    if peak is None or before_kb is None:
        mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_rss_mb": round(mb, 1), "retrain_extra_mb": None}
    return {
        "peak_rss_mb": round(peak / 1024, 1),
        "retrain_extra_mb": round(max(0, peak - before_kb) / 1024, 1),
    }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _libraries() -> dict[str, str]:
    import lightgbm

    return {
        "lightgbm": lightgbm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
