"""The evaluation: the handbook's test set, one detector's scoring, commands, the report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bench.evaluate import (
    DETECTORS,
    PROFILES,
    REPO_ROOT,
    Backtest,
    Producer,
    RunFiles,
    RunInfo,
    RunPlan,
    Scored,
    Txn,
    ap_ratio,
    chargeback_summary,
    compare_alerts,
    handbook_test_set,
    read_alerts,
    read_scores,
    render_report,
    score_run,
    shift_rows,
    traffic_summary,
)
from bench.handbook.split import DAY_MS, Split

SPLIT = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
TEST0 = SPLIT.test_start_ms  # 2026-11-16T00:00:00Z
MIN = 60_000


def _txns() -> list[Txn]:
    return [
        Txn("h1", "A", SPLIT.train_start_ms - DAY_MS, None, None),  # history
        Txn("g1", "A", TEST0, None, None),
        Txn("g3", "C", TEST0 + 1 * MIN, None, None),
        Txn("g2", "B", TEST0 + 5 * MIN, None, None),
        Txn("f1", "A", TEST0 + 10 * MIN, "card_testing", "ct-1"),
        Txn("f2", "A", TEST0 + 12 * MIN, "card_testing", "ct-1"),
        Txn("f3", "A", TEST0 + 20 * MIN, "card_testing", "ct-1"),
        Txn("f4", "B", TEST0 + 30 * MIN, "amount_spike", "as-1"),
        Txn("g4", "C", TEST0 + DAY_MS, None, None),
    ]


SCORED = {
    "f2": Scored(0.55, True, ("velocity_count",)),
    "f3": Scored(0.91, True, ("velocity_count", "card_testing")),
    "g2": Scored(0.5, True, ("amount_spike",)),
    "g1": Scored(0.2, False),
}


def _score(scored=SCORED, k: int = 1, min_history: int = 1, txns=None):
    txns = txns or _txns()
    test, _ = handbook_test_set(txns, SPLIT)
    return score_run(txns, test, scored, k=k, min_history=min_history)


def test_a_case_is_caught_by_the_first_alert_on_its_card_and_timed_from_its_first_fraud() -> None:
    result = _score()
    testing = result["scenarios"]["card_testing"]
    assert (testing["cases"], testing["caught"], testing["cold"]) == (1, 1, 0)
    assert testing["median_delay_min"] == 2.0
    assert testing["median_frauds_before_alert"] == 1.0
    assert testing["txn_recall"] == pytest.approx(2 / 3)
    spike = result["scenarios"]["amount_spike"]
    assert (spike["cases"], spike["caught"], spike["case_recall"]) == (1, 0, 0.0)
    assert spike["median_delay_min"] is None


def test_an_unalerted_score_ranks_but_raises_no_alert() -> None:
    result = _score()
    assert (result["transactions"], result["genuine"], result["fraud_txns"]) == (8, 4, 4)
    assert result["alerts"] == 3  # g1 has a score but no alert
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["alerts_per_1000_genuine"] == pytest.approx(750.0)
    assert result["false_alerts_per_1000_genuine"] == pytest.approx(250.0)
    assert result["unscored"] == 4  # f1, f4, g3, g4


def test_alerted_cards_are_counted_per_test_day() -> None:
    # Day 1: cards A and B alerted; day 2: none (only C transacted).
    assert _score()["alerted_cards_per_day"] == pytest.approx(1.0)
    # 3 alerts, on 2 cards of one day: 2 cases for analysts who work each day's queue
    assert _score()["cases_worked_daily"] == 2


def test_card_precision_ranks_each_days_cards_by_their_best_score() -> None:
    result = _score()
    # Day 1: card A (0.91, compromised) ranks first; day 2: only C, genuine.
    assert result["card_precision_at_k_per_day"] == {"2026-11-16": 1.0, "2026-11-17": 0.0}
    assert result["card_precision_at_k"] == 0.5


def test_ranking_metrics_score_unscored_transactions_as_zero() -> None:
    result = _score()
    # Frauds 0.91, 0.55, 0, 0; genuine 0.5, 0.2, 0, 0: 2 + 2 + 0.5*2 + 0.5*2 pairs of 16.
    assert result["roc_auc"] == pytest.approx((4 + 4 + 1 + 1) / 16)


def test_per_rule_counts_alerts_and_their_precision() -> None:
    rules = _score()["rules"]
    assert rules["velocity_count"] == {"alerts": 2, "alerts_on_fraud": 2, "precision": 1.0}
    assert rules["amount_spike"]["precision"] == 0.0
    assert list(rules) == ["velocity_count", "amount_spike", "card_testing"]  # busiest first


def test_a_story_that_began_before_the_test_week_is_no_case() -> None:
    txns = [*_txns(), Txn("f0", "A", TEST0 - MIN, "card_testing", "ct-1")]
    result = _score(txns=txns)
    assert "card_testing" not in result["scenarios"]
    assert result["scenarios"]["amount_spike"]["cases"] == 1


def test_cold_counts_cases_on_cards_with_too_little_history() -> None:
    result = _score(min_history=3)
    assert result["scenarios"]["card_testing"]["cold"] == 1  # A had two earlier transactions
    assert result["scenarios"]["amount_spike"]["cold"] == 1


def test_a_score_for_a_transaction_the_run_never_sent_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown transactions"):
        _score({"nope": Scored(0.5, True)})


def test_the_test_set_drops_cards_whose_fraud_label_arrived_before_that_day() -> None:
    txns = [
        *_txns(),
        Txn("old", "B", SPLIT.train_start_ms + MIN, "cnp_foreign", "cnp-1"),  # B is known
        Txn("late", "C", SPLIT.delay_start_ms + DAY_MS // 2, "cnp_foreign", "cnp-2"),
    ]
    test, removed = handbook_test_set(txns, SPLIT)
    ids = [t.transaction_id for t in test]
    assert "g2" not in ids
    assert "f4" not in ids
    assert "g3" in ids  # C's fraud is 6.5 days before test day 1: not known yet ...
    assert "g4" not in ids  # ... and known on test day 2
    assert removed == {"transactions": 3, "frauds": 1}
    assert all(SPLIT.phase(t.ts_ms) == "test" for t in test)


def test_traffic_summary_counts_each_phase_and_the_fraud_rate() -> None:
    summary = traffic_summary(_txns(), SPLIT)
    assert summary["phases"]["history"] == {"transactions": 1, "frauds": 0}
    assert summary["phases"]["test"] == {"transactions": 8, "frauds": 4}
    assert summary["fraud_rate"] == pytest.approx(4 / 9)
    assert summary["per_day"] == pytest.approx(9 / 56)


def test_chargeback_summary_measures_coverage_false_disputes_and_delay() -> None:
    def cb(txn: str, label: str, days: float) -> dict[str, str]:
        ts = datetime(2026, 11, 16, tzinfo=UTC)
        reported = datetime.fromtimestamp(ts.timestamp() + days * 86_400, UTC)
        return {"transaction_id": txn, "label": label, "timestamp": ts.isoformat(),
                "reported_at": reported.isoformat()}  # fmt: skip

    summary = chargeback_summary(
        [cb("f1", "fraud", 3), cb("f2", "fraud", 9), cb("g1", "fraud", 20), cb("zz", "fraud", 1)],
        _txns(),
    )
    assert summary["coverage"] == pytest.approx(2 / 4)
    assert summary["false_disputes"] == 1
    assert summary["unknown_transactions"] == 1
    assert summary["median_delay_days"] == pytest.approx(6.0)
    assert summary["by_label"] == {"fraud": 4}


def _lines(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_alerts_and_scores_files_become_what_each_detector_said(tmp_path: Path) -> None:
    alerts = read_alerts(_lines(tmp_path / "a.jsonl", [
        {"transaction_id": "f3", "score": 0.91, "reasons": [{"rule": "velocity_count"}]},
    ]))  # fmt: skip
    assert alerts == {"f3": Scored(0.91, True, ("velocity_count",))}
    scores = read_scores(_lines(tmp_path / "s.jsonl", [
        {"transaction_id": "f3", "score": 0.91, "alerted": True},
        {"transaction_id": "g1", "score": 0.2, "alerted": False},
    ]), alerts)  # fmt: skip
    assert scores == {"f3": Scored(0.91, True, ("velocity_count",)), "g1": Scored(0.2, False)}
    graded = read_alerts(_lines(tmp_path / "b.jsonl", [
        {"transaction_id": "f3", "score": 0.91, "severity": "high", "reasons": []},
    ]))  # fmt: skip
    assert read_scores(tmp_path / "s.jsonl", graded)["f3"].severity == "high"
    with pytest.raises(ValueError, match="not in"):
        read_scores(_lines(tmp_path / "bad.jsonl", [
            {"transaction_id": "g1", "score": 1.5, "alerted": False}]))  # fmt: skip


def test_the_producer_command_adds_chargebacks_and_amount_scale_when_it_has_them() -> None:
    plan = RunPlan(cards=4000, seed=7, fraud_ratio=0.01, split=SPLIT)
    files = RunFiles(Path("/x"))
    old = Producer(frozenset({"--rate", "--out"}))
    argv = old.command(plan, PROFILES["default"], files)
    assert argv[-1] == "--no-kafka"
    assert "--chargebacks-out" not in argv
    assert argv[argv.index("--days") + 1] == "56"
    assert argv[argv.index("--start") + 1] == "2026-09-28T00:00:00Z"
    assert old.missing(PROFILES["small"]) is not None
    new = Producer(frozenset({"--chargebacks-out", "--amount-scale"}))
    argv = new.command(plan, PROFILES["large"], files, ["--topic", "t"])
    assert argv[argv.index("--chargebacks-out") + 1] == "/x/chargebacks.jsonl"
    assert argv[argv.index("--amount-scale") + 1] == "6"
    assert argv[-2:] == ["--topic", "t"]
    assert "--no-kafka" not in argv
    assert new.missing(PROFILES["small"]) is None


def test_the_backtest_command_asks_for_scores_and_labels_only_when_it_has_them() -> None:
    files = RunFiles(Path("/x"))
    legacy = Backtest(REPO_ROOT, Path("/r.toml"), frozenset({"--rules", "--output"}))
    argv = legacy.command(files, "today", chargebacks=True)
    assert argv[3:] == ["/x/transactions.jsonl", "--rules", "/r.toml", "-o",
                        "/x/today-alerts.jsonl"]  # fmt: skip
    new = Backtest(REPO_ROOT, Path("/r.toml"), frozenset({"--scores-out", "--labels"}))
    argv = new.command(files, "fraudwatch", chargebacks=True)
    assert argv[argv.index("--scores-out") + 1] == "/x/fraudwatch-scores.jsonl"
    assert argv[argv.index("--labels") + 1] == "/x/chargebacks.jsonl"
    assert "--labels" not in new.command(files, "fraudwatch", chargebacks=False)


def test_compare_alerts_names_missing_extra_and_different_alerts() -> None:
    live = {"a": (1,), "b": (2,), "c": (3,)}
    assert compare_alerts(live, dict(live)) == []
    problems = compare_alerts(live, {"a": (1,), "b": (9,), "d": (4,)})
    assert problems[0].startswith("1 backtest alert(s) missing live")
    assert problems[1].startswith("1 live alert(s) not in the backtest")
    assert problems[2].startswith("alert b: live (2,) != backtest (9,)")


def _run_result(forest_ap_scale: float) -> dict:
    txns = _txns()
    test, removed = handbook_test_set(txns, SPLIT)
    forest = {t.transaction_id: Scored(forest_ap_scale if t.scenario else 0.1, False)
              for t in test}  # fmt: skip
    results = {
        "fraudwatch": score_run(txns, test, SCORED, k=1),
        "today": score_run(txns, test, {}, k=1),
        "forest": score_run(txns, test, forest, k=1),
    }
    return {
        "profile": {}, "commands": {"producer": "python -m producer generate ..."},
        "traffic": traffic_summary(txns, SPLIT), "skipped_records": 0, "chargebacks": None,
        "test_set": {"transactions": len(test), "removed": removed}, "results": results,
        "ap_ratio": ap_ratio(results), "notes": ["no chargebacks"], "agreement": None,
        "seconds": {"generate": 1.0, "fraudwatch": 2.0},
    }  # fmt: skip


def test_the_report_shows_each_detector_and_whether_fraudwatch_reaches_the_target() -> None:
    runs = {"default": _run_result(0.9), "small": {"skipped": "no --amount-scale"}}
    info = RunInfo("python -m bench.evaluate", datetime(2026, 12, 1, tzinfo=UTC), 61.0, "abc",
                   "2026.11.2", ["a machine"], SPLIT, 4000, live=False)  # fmt: skip
    page = render_report(runs, info)
    # fraudwatch's AP is 0.75, the forest ranks every fraud first: below the target (1.0).
    assert runs["default"]["ap_ratio"] == pytest.approx(0.75)
    assert "| default | 0.7500 | 0.5000 | 1.0000 | 0.75 | no |" in page
    assert "| metric | " + " | ".join(d.title for d in DETECTORS) + " |" in page
    assert "- profile `small` not run: no --amount-scale" in page
    assert "- note: no chargebacks" in page
    assert "test week 2026-11-16 to 2026-11-23" in page
    assert "| card precision@1, 2026-11-16 | 1.000 |" in page
    assert "| card_testing | 1 | 1 | 100.0% / 0.0% / 0.0% |" in page  # cold: A had 2 before
    assert "## Live pipeline" not in page
    assert "61 s (1.0 min)" in page


def test_docs_evaluation_is_the_rendered_report() -> None:
    doc = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    assert doc.startswith("# Detection evaluation\n\nWritten by `make evaluate`")
    assert "## Against the random forest" in doc


def test_docs_producer_lists_every_range_the_shifted_profile_moves() -> None:
    doc = (REPO_ROOT / "docs" / "producer.md").read_text()
    rows = shift_rows()
    assert len(rows) > 20
    for row in rows:
        assert "| " + " | ".join(row) + " |" in doc, row
