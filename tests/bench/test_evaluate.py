"""The evaluation's scoring of one run: cases, delays, per-rule counts, warm-up, agreement."""

from __future__ import annotations

import pytest

from bench.evaluate import Flag, Txn, compare_alerts, score_run

DAY0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z
MIN = 60_000
RULES = ("amount_spike", "velocity_count", "card_testing")


def _txns() -> list[Txn]:
    return [
        Txn("g1", "A", DAY0, None, None),
        Txn("g3", "C", DAY0 + 1 * MIN, None, None),
        Txn("g2", "B", DAY0 + 5 * MIN, None, None),
        Txn("f1", "A", DAY0 + 10 * MIN, "card_testing", "ct-1"),
        Txn("f2", "A", DAY0 + 12 * MIN, "card_testing", "ct-1"),
        Txn("f3", "A", DAY0 + 20 * MIN, "card_testing", "ct-1"),
        Txn("f4", "B", DAY0 + 30 * MIN, "amount_spike", "as-1"),
        Txn("g4", "C", DAY0 + 1440 * MIN, None, None),
    ]


FLAGS = [
    Flag("f2", 0.55, ("velocity_count",)),
    Flag("f3", 0.91, ("velocity_count", "card_testing")),
    Flag("g2", 0.5, ("amount_spike",)),
]


def test_a_case_is_caught_by_the_first_alert_on_its_card_and_timed_from_its_first_fraud() -> None:
    result = score_run(_txns(), FLAGS, RULES, k=1, min_history=1)
    testing = result["scenarios"]["card_testing"]
    assert (testing["cases"], testing["caught"], testing["cold"]) == (1, 1, 0)
    assert testing["median_delay_min"] == 2.0
    assert testing["median_frauds_before_alert"] == 1.0
    assert testing["txn_recall"] == pytest.approx(2 / 3)
    spike = result["scenarios"]["amount_spike"]
    assert (spike["cases"], spike["caught"], spike["case_recall"]) == (1, 0, 0.0)
    assert spike["median_delay_min"] is None


def test_precision_and_alert_rate_count_alerts_on_genuine_transactions_as_false() -> None:
    result = score_run(_txns(), FLAGS, RULES, k=1)
    assert (result["genuine"], result["fraud_txns"], result["alerts"]) == (4, 4, 3)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["alerts_per_1000_genuine"] == pytest.approx(750.0)
    assert result["false_alerts_per_1000_genuine"] == pytest.approx(250.0)


def test_per_rule_precision_and_what_a_rule_catches_alone() -> None:
    rules = score_run(_txns(), FLAGS, RULES, k=1)["rules"]
    assert rules["velocity_count"] == {
        "alerts": 2, "alerts_on_fraud": 2, "precision": 1.0, "fraud_txns_alone": 1,
        "cases_alone": 0,  # card_testing fired inside the same case too
    }  # fmt: skip
    assert rules["card_testing"]["fraud_txns_alone"] == 0
    assert rules["amount_spike"]["precision"] == 0.0


def test_card_precision_ranks_each_days_cards_by_their_best_score() -> None:
    result = score_run(_txns(), FLAGS, RULES, k=1)
    # Day 1: card A (0.91, compromised) ranks first; day 2: only C, genuine.
    assert result["card_precision_at_k_per_day"] == {"2026-11-23": 1.0, "2026-11-24": 0.0}
    assert result["card_precision_at_k"] == 0.5


def test_a_warm_up_is_seen_but_not_scored() -> None:
    result = score_run(_txns(), FLAGS, RULES, k=1, since_ms=DAY0 + 11 * MIN)
    assert "card_testing" not in result["scenarios"]  # the story began in the warm-up
    assert result["scenarios"]["amount_spike"]["cases"] == 1
    assert (result["transactions"], result["alerts"]) == (4, 2)  # f2, f3, f4, g4; f2, f3


def test_cold_counts_cases_on_cards_with_too_little_history() -> None:
    result = score_run(_txns(), FLAGS, RULES, k=1, min_history=2)
    assert result["scenarios"]["card_testing"]["cold"] == 1  # A had one earlier transaction
    assert result["scenarios"]["amount_spike"]["cold"] == 1


def test_an_alert_on_a_transaction_the_run_never_sent_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown transactions"):
        score_run(_txns(), [Flag("nope", 0.5, ("amount_spike",))], RULES)


def test_compare_alerts_names_missing_extra_and_different_alerts() -> None:
    live = {"a": (1,), "b": (2,), "c": (3,)}
    assert compare_alerts(live, dict(live)) == []
    problems = compare_alerts(live, {"a": (1,), "b": (9,), "d": (4,)})
    assert problems[0].startswith("1 backtest alert(s) missing live")
    assert problems[1].startswith("1 live alert(s) not in the backtest")
    assert problems[2].startswith("alert b: live (2,) != backtest (9,)")


def test_docs_producer_lists_every_range_the_shifted_profile_moves() -> None:
    from bench.evaluate import REPO_ROOT, shift_rows

    doc = (REPO_ROOT / "docs" / "producer.md").read_text()
    rows = shift_rows()
    assert len(rows) > 20
    for row in rows:
        assert "| " + " | ".join(row) + " |" in doc, row
