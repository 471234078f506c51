"""The learning core without services: models and their checks, operating points, the feature
log's sampling, the trainer's decisions and threshold, weighted quality measures, explanations."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from dataflows.detection.detector import Detector
from dataflows.detection.explain import family_contributions, top_families
from dataflows.detection.featurelog import FeatureLogError, LoggedRow, Sampler, decode, encode
from dataflows.detection.features import FEATURE_NAMES
from dataflows.detection.policy import (
    BANDS_FROM_ALERTS,
    FormulaModel,
    GbmModel,
    ModelError,
    OperatingPoint,
    PolicyBook,
    SeverityBands,
    operating_point_doc,
)
from dataflows.detection.quality import average_precision, card_precision_at_k, roc_auc
from dataflows.detection.ruleset import RuleSet, SeverityConfig, load_ruleset
from dataflows.detection.signals import Signal
from dataflows.detection.state import CardHistory
from dataflows.detection.training import DAY_MS, Trainer, TrainingConfig
from fraudwatch.contract import LabelEvent
from tests.factories import make_event

T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS  # a UTC midnight
D0 = T0 // DAY_MS  # its epoch day: decisions are made per epoch day
N = len(FEATURE_NAMES)
AMOUNT_RATIO = FEATURE_NAMES.index("amount_vs_card_median")
FORMULA = FEATURE_NAMES.index("formula_logit")


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def config(**overrides: Any) -> TrainingConfig:
    base: dict[str, Any] = {
        "prior": 0.002,
        "fallback_threshold": 0.5,
        "ruleset_version": "test",
        "label_delay_days": 1,
        "window_days": 5,
        "min_train_days": 2,
        "min_frauds": 5,
        "budget_cards_per_day": 3,
        "budget_days": 3,
        "rounds": 30,
    }
    return TrainingConfig(**(base | overrides))


def row(i: int, day: int, fraud_like: bool, card: str | None = None, **kw: Any) -> LoggedRow:
    """A logged row whose amount ratio separates the fraud-like ones."""
    rng = random.Random(i)
    f = [rng.random() for _ in range(N)]
    f[AMOUNT_RATIO] = 5.0 + rng.random() if fraud_like else rng.random()
    f[FORMULA] = 0.0
    fields = {"score": 0.01, "model_version": "formula-test", "alerted": False, "always": False,
              "weight": 1.0} | kw  # fmt: skip
    return LoggedRow(
        f"t{i}", T0 + day * DAY_MS + i % 80_000_000, card or f"c{i % 40}", features=f, **fields
    )


def label(tx: str, day: int, reported_day: float, fraud: bool = True) -> LabelEvent:
    return LabelEvent(tx, T0 + day * DAY_MS, "c", "m", 1.0, "EUR", fraud,
                      int(T0 + reported_day * DAY_MS), "chargeback")  # fmt: skip


def history(trainer: Trainer, days: int, per_day: int = 200) -> None:
    for d in range(days):
        for j in range(per_day):
            i = d * per_day + j
            fraud = j % 10 == 0
            trainer.add_row(row(i, d, fraud))
            if fraud:
                trainer.add_label(label(f"t{i}", d, d + 0.5))


# ---------------------------------------------------------------- quality


def test_weighted_average_precision_counts_a_row_of_weight_w_as_w_rows() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    labels = np.array([True, False, True, False])
    weighted = average_precision(scores, labels, np.array([1.0, 3.0, 1.0, 1.0]))
    expanded = average_precision(
        np.array([0.9, 0.8, 0.8, 0.8, 0.3, 0.1]), np.array([1, 0, 0, 0, 1, 0], dtype=bool)
    )
    assert weighted == pytest.approx(expanded)
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, np.zeros(4, dtype=bool)) is None


def test_roc_auc_counts_ties_one_half() -> None:
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.9, 0.1, 0.5]), np.array([True, False, False])) == pytest.approx(1)


def test_card_precision_at_k_ranks_cards_by_their_best_score() -> None:
    cards = ["a", "a", "b", "c"]
    scores = np.array([0.1, 0.9, 0.8, 0.2])
    fraud = np.array([True, False, False, True])
    assert card_precision_at_k(cards, scores, fraud, 2) == pytest.approx(0.5)  # a yes, b no
    assert card_precision_at_k(cards, scores, fraud, 3) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- feature log


def test_sampling_logs_high_scores_and_a_seeded_weighted_share_of_the_rest(
    ruleset: RuleSet,
) -> None:
    det = Detector(ruleset)
    sampler = Sampler(floor=0.02, rate=0.1, seed=7, prior=0.002)
    quiet = [
        det.process(CardHistory(), make_event(transaction_id=f"q{i}", card_token=f"k{i}"), None)
        for i in range(2000)
    ]
    weights = [sampler.weight(o) for o in quiet]
    assert {w for w in weights} <= {0.0, 10.0}
    assert 150 < sum(1 for w in weights if w) < 250  # about 10 % of 2,000
    again = Sampler(floor=0.02, rate=0.1, seed=7, prior=0.002)
    assert [again.weight(o) for o in quiet] == weights  # seeded: the same rows
    other = Sampler(floor=0.02, rate=0.1, seed=8, prior=0.002)
    assert [other.weight(o) for o in quiet] != weights
    high = quiet[0]._replace(score=0.5)
    assert sampler.weight(high) == 1.0


def test_feature_rows_round_trip_exactly_and_other_feature_sets_are_refused() -> None:
    r = row(1, 0, True)
    assert decode(encode(r)) == r
    with pytest.raises(FeatureLogError, match="feature log version"):
        decode(encode(r).replace(b'"set":"', b'"set":"x'))
    with pytest.raises(FeatureLogError, match="not JSON"):
        decode(b"{")


# ---------------------------------------------------------------- models and points


def test_the_book_scores_each_transaction_with_the_point_in_force_at_its_event_time() -> None:
    formula = FormulaModel("formula-t", 0.002)
    book = PolicyBook(OperatingPoint("", -(2**62), formula, 0.5))
    book.add(OperatingPoint("d2", T0 + 2 * DAY_MS, formula, 0.3))
    book.add(OperatingPoint("d1", T0 + DAY_MS, formula, 0.4))
    assert book.at(T0).threshold == 0.5
    assert book.at(T0 + DAY_MS).threshold == 0.4
    assert book.at(T0 + 5 * DAY_MS).threshold == 0.3
    book.add(OperatingPoint("d2", T0 + 2 * DAY_MS, formula, 0.2))  # a day decided again
    assert book.at(T0 + 5 * DAY_MS).threshold == 0.2
    assert len(book) == 2


def trained(days: int = 8) -> tuple[Trainer, list[Any]]:
    trainer = Trainer(config())
    history(trainer, days)
    decisions = [trainer.decide(D0 + d) for d in range(1, days + 1)]
    return trainer, decisions


def test_a_model_is_promoted_only_when_not_worse_and_scores_from_the_grace_time_on() -> None:
    trainer, decisions = trained()
    promoted = [d for d in decisions if d.model_text is not None]
    assert promoted, [d.log for d in decisions]
    first = promoted[0]
    assert first.model_doc is not None
    metrics = first.model_doc["metrics"]
    assert metrics["validation_ap"] >= (metrics["current_ap"] or 0)
    assert first.point.effective_ms % DAY_MS == config().grace_ms
    for d in decisions:
        if d.model_doc is not None and d.model_doc["status"] == "rejected":
            m = d.model_doc["metrics"]
            assert m["validation_ap"] < m["current_ap"]
            assert d.model_text is None
    # The separable history gives a model that ranks the fraud-like rows first.
    model = trainer.current
    x = np.array([row(10**6 + i, 0, i % 2 == 0).features for i in range(40)])
    scores = model.predict(x)
    assert scores[::2].min() > scores[1::2].max()


def test_decisions_do_not_depend_on_the_order_rows_were_read() -> None:
    a = Trainer(config())
    b = Trainer(config())
    rows = []
    for d in range(7):
        rows += [row(d * 200 + j, d, j % 10 == 0) for j in range(200)]
    for r in rows:
        a.add_row(r)
    for r in reversed(rows):
        b.add_row(r)
    for t in (a, b):
        for r in rows:
            if r.features[AMOUNT_RATIO] > 4:
                t.add_label(label(r.transaction_id, 0, (r.ts - T0) / DAY_MS + 0.5))
    for day in range(1, 8):
        da, db = a.decide(D0 + day), b.decide(D0 + day)
        assert (da.point.version, da.point.threshold) == (db.point.version, db.point.threshold)


def test_labels_count_only_when_reported_before_the_decision_and_the_newest_verdict_wins() -> None:
    t = Trainer(config())
    t.add_label(label("x", 0, 0.5, fraud=True))
    t.add_label(label("x", 0, 2.5, fraud=False))  # a lost dispute, reported later
    assert t.fraud_known("x", T0 + DAY_MS) is True
    assert t.fraud_known("x", T0 + 3 * DAY_MS) is False
    assert t.fraud_known("x", T0) is None


def test_the_threshold_alerts_about_the_budget_of_cards_per_day_always_alerts_first() -> None:
    t = Trainer(config(budget_cards_per_day=3, budget_days=2))
    for d in range(2):
        for c in range(10):
            f = [0.0] * N
            f[FORMULA] = float(c)  # card c's formula evidence grows with c
            t.add_row(LoggedRow(f"d{d}c{c}", T0 + d * DAY_MS + c, f"c{c}", 0.0, "f", False,
                                always=(c == 0), weight=1.0, features=f))  # fmt: skip
    point = t.decide(D0 + 2).point
    formula = FormulaModel("f", 0.002)
    # Card 0 always alerts; the budget's two other cards a day are the two best: 9 and 8.
    scores = {
        c: float(formula.predict(np.array([[0.0] * FORMULA + [float(c)]]))[0]) for c in range(10)
    }
    assert point.threshold == scores[8]
    assert sum(1 for c in range(1, 10) if scores[c] >= point.threshold) == 2


def test_no_candidate_without_enough_labelled_frauds_and_the_formula_keeps_scoring() -> None:
    t = Trainer(config(min_frauds=10_000))
    history(t, 5)
    decision = t.decide(D0 + 5)
    assert decision.model_doc is None
    assert decision.point.model.kind == "formula"
    assert "no candidate" in decision.log


def test_a_model_file_that_does_not_fit_is_refused_with_a_reason() -> None:
    _, decisions = trained()
    text = next(d.model_text for d in decisions if d.model_text is not None)
    assert text is not None
    good = GbmModel.from_text("v", text)
    assert good.predict(np.zeros((1, N))).shape == (1,)
    with pytest.raises(ModelError, match="sha256"):
        GbmModel.from_text("v", text, sha256="0" * 64)
    with pytest.raises(ModelError, match="cannot read"):
        GbmModel.from_text("v", "not a model")
    renamed = text.replace("formula_logit", "something_else")
    with pytest.raises(ModelError, match="features are not"):
        GbmModel.from_text("v", renamed)


def test_health_counts_alerted_cards_and_flags_drift_when_a_final_day_falls_short() -> None:
    t = Trainer(config(drift_ratio=0.99))
    history(t, 4)
    # Day 4: the logged scores rank the frauds last (a broken model), labels reported.
    for j in range(200):
        fraud = j % 10 == 0
        t.add_row(row(9000 + j, 4, fraud, score=0.0 if fraud else 0.9, alerted=j < 3,
                      card=f"z{j % 2}"))  # fmt: skip
        if fraud:
            t.add_label(label(f"t{9000 + j}", 4, 4.5))
    t.validation["formula-test"] = 0.9
    docs = {d["day"]: d for d in t.health(D0 + 6)}
    day4 = docs[max(docs)]
    assert day4["alerted_cards"] == 2
    assert day4["alerts"] == 3
    assert day4["day_ap"] is not None
    assert day4["day_ap"] < 0.5
    assert day4["drift"] is True


# ---------------------------------------------------------------- explanations


def test_explanations_sum_features_into_families_and_share_the_formula_by_weight() -> None:
    c = [0.0] * (N + 1)
    c[AMOUNT_RATIO] = 1.0
    c[FEATURE_NAMES.index("merchant_risk_7d")] = 0.5
    c[FORMULA] = 3.0
    signals = [Signal("card_testing", 2.0, "x"), Signal("velocity_count", 1.0, "y")]
    fam = family_contributions(c, signals)
    assert fam["amount_vs_habit"] == pytest.approx(1.0)
    assert fam["merchant_risk"] == pytest.approx(0.5)
    assert fam["card_testing"] == pytest.approx(2.0)
    assert fam["velocity_count"] == pytest.approx(1.0)
    top = top_families(c, signals, top=2)
    assert [f for f, _ in top] == ["card_testing", "amount_vs_habit"]
    always = [*signals, Signal("impossible_travel", 0.0, "z", always_alert=True)]
    assert "impossible_travel" in [f for f, _ in top_families(c, always, top=2)]


def test_model_alerts_carry_the_model_version_and_reasons_in_words(
    ruleset: RuleSet, caplog: pytest.LogCaptureFixture
) -> None:
    _, decisions = trained()
    point = next(d.point for d in decisions if d.model_text is not None)
    det = Detector(ruleset)
    det.policies.add(OperatingPoint(point.day, 0, point.model, 0.0))  # everything alerts
    caplog.set_level(logging.ERROR)
    out = det.process(CardHistory(), make_event(ts=T0 + 10 * DAY_MS, amount=900.0), None)
    assert out.alert is not None
    assert out.model_version == point.version == out.alert.model_version
    assert out.alert.reasons
    assert all(r.detail and r.rule for r in out.alert.reasons)
    assert out.alert.to_json_dict()["model_version"] == point.version


def test_severity_bands_put_the_configured_shares_of_weighted_alerts_in_each_band() -> None:
    cfg = SeverityConfig()
    scores = np.linspace(0.2, 0.99, 200)
    weights = np.ones(200)
    weights[:100] = 3.0  # the lower half stands for three times as many transactions each
    bands = SeverityBands.from_alerts(scores, weights, 0.2, cfg)
    assert bands.basis == BANDS_FROM_ALERTS
    total = weights.sum()
    for cut, share in ((bands.critical, cfg.critical_share), (bands.high, cfg.high_share),
                       (bands.medium, cfg.medium_share)):  # fmt: skip
        assert weights[scores >= cut].sum() / total == pytest.approx(share, abs=0.01)
    few = SeverityBands.from_alerts(scores[:5], weights[:5], 0.2, cfg)
    assert few == SeverityBands.from_odds(0.2, cfg)  # too few alerts to take shares of


def test_each_decision_publishes_severity_bands_that_spread_its_alerts() -> None:
    t = Trainer(config(budget_cards_per_day=30, budget_days=2))
    for d in range(2):
        for c in range(100):
            f = [0.0] * N
            f[FORMULA] = c / 10  # card c's formula evidence grows with c
            t.add_row(LoggedRow(f"d{d}c{c}", T0 + d * DAY_MS + c, f"c{c}", 0.0, "f", False,
                                always=False, weight=1.0, features=f))  # fmt: skip
    point = t.decide(D0 + 2).point
    bands = point.bands
    assert bands is not None
    assert bands.basis == BANDS_FROM_ALERTS
    assert point.threshold <= bands.medium <= bands.high <= bands.critical
    formula = FormulaModel("f", 0.002)
    alerted = [s for s in formula.predict(np.array([[0.0] * FORMULA + [c / 10]
                                                    for c in range(100)]))
               if s >= point.threshold]  # fmt: skip
    spread = Counter(bands.severity(s) for s in alerted)
    assert len(alerted) == 30
    assert [spread[x] for x in ("critical", "high", "medium", "low")] == [3, 6, 9, 12]
    doc = operating_point_doc(point)
    assert SeverityBands.from_doc(doc["severity_bands"]) == bands
