"""The handbook's split, its 15 baseline features and the random forest trained on them."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from bench.baselines.handbook_rf import (
    Transactions,
    load_transactions,
    main,
    score_test_week,
)
from bench.handbook.features import (
    FEATURE_NAMES,
    baseline_features,
    calendar_features,
    customer_features,
    terminal_features,
)
from bench.handbook.split import DAY_MS, Split, known_compromised
from bench.metrics import average_precision
from fraudwatch.vocabulary import EXCHANGE_RATES

HOUR = 3_600_000
MONDAY = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)  # 2026-11-02 is a Monday


def _ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _floats(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --------------------------------------------------------------------------- split


def test_the_split_is_five_weeks_of_history_then_train_delay_and_test_weeks() -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    assert split.dates() == {
        "history_start": "2026-09-28T00:00:00Z",
        "train_start": "2026-11-02T00:00:00Z",
        "delay_start": "2026-11-09T00:00:00Z",
        "test_start": "2026-11-16T00:00:00Z",
        "end": "2026-11-23T00:00:00Z",
    }
    assert split.days == 56
    assert split.delay_ms == 7 * DAY_MS
    assert len(split.test_days()) == 7


def test_each_phase_runs_from_its_start_to_the_next_start_exclusive() -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    assert split.phase(split.history_start_ms - 1) == "outside"
    assert split.phase(split.history_start_ms) == "history"
    assert split.phase(split.train_start_ms - 1) == "history"
    assert split.phase(split.train_start_ms) == "train"
    assert split.phase(split.delay_start_ms) == "delay"
    assert split.phase(split.test_start_ms - 1) == "delay"
    assert split.phase(split.test_start_ms) == "test"
    assert split.phase(split.end_ms - 1) == "test"
    assert split.phase(split.end_ms) == "outside"


def test_the_split_needs_a_time_zone_and_whole_phases() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Split.weeks(datetime(2026, 9, 28))
    with pytest.raises(ValueError, match="at least a day"):
        Split.weeks(datetime(2026, 9, 28, tzinfo=UTC), delay_days=0)


def test_a_card_counts_as_known_compromised_once_its_fraud_label_has_arrived() -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    fraud_times = {
        "trained": [split.train_start_ms + HOUR],  # labelled before the test week starts
        "in_delay": [split.delay_start_ms + 2 * DAY_MS + HOUR],  # known from test day 3 on
        "in_history": [split.train_start_ms - HOUR],  # before the training week: the handbook
        "in_test": [split.test_start_ms + HOUR],  # ignores it, and so do we
    }
    days = split.test_days()
    assert known_compromised(fraud_times, split, days[0]) == {"trained"}
    assert known_compromised(fraud_times, split, days[2]) == {"trained"}
    assert known_compromised(fraud_times, split, days[3]) == {"trained", "in_delay"}
    assert known_compromised(fraud_times, split, days[6]) == {"trained", "in_delay"}


# --------------------------------------------------------------------------- features


def test_weekend_is_saturday_and_sunday_and_night_is_up_to_hour_six_utc() -> None:
    ts = _ints(
        MONDAY + 6 * HOUR + 59 * 60_000,  # Monday 06:59: night
        MONDAY + 7 * HOUR,  # Monday 07:00: day
        MONDAY + 5 * DAY_MS + 12 * HOUR,  # Saturday noon
        MONDAY + 6 * DAY_MS + 23 * HOUR,  # Sunday 23:00
        MONDAY + 7 * DAY_MS,  # the next Monday, midnight
    )
    weekend, night = calendar_features(ts)
    assert weekend.tolist() == [0, 0, 1, 1, 0]
    assert night.tolist() == [1, 0, 0, 0, 1]


def test_customer_windows_end_at_the_transaction_and_include_it() -> None:
    # Card 0 at +1h (10), +2h (20), +1d+1h (30), +8d (40); card 1 in between.
    ts = _ints(MONDAY + HOUR, MONDAY + 90 * 60_000, MONDAY + 2 * HOUR,
               MONDAY + DAY_MS + HOUR, MONDAY + 8 * DAY_MS)  # fmt: skip
    card = _ints(0, 1, 0, 0, 0)
    amount = _floats(10, 1000, 20, 30, 40)
    nb1, avg1, nb7, avg7, nb30, avg30 = customer_features(card, ts, amount)
    assert nb1.tolist() == [1, 1, 2, 2, 1]  # exactly one day later is outside (t - 1d, t]
    assert avg1.tolist() == [10, 1000, 15, 25, 40]
    assert nb7.tolist() == [1, 1, 2, 3, 2]
    assert avg7.tolist() == [10, 1000, 15, 20, 35]
    assert nb30.tolist() == [1, 1, 2, 3, 4]
    assert avg30.tolist() == [10, 1000, 15, 20, 25]


def test_terminal_risk_counts_only_labels_older_than_the_delay() -> None:
    # Merchant 0: a fraud at +0 and a genuine at +1h; a week later three more, one fraudulent.
    ts = _ints(MONDAY, MONDAY + HOUR, MONDAY + 7 * DAY_MS + 30 * 60_000,
               MONDAY + 7 * DAY_MS + HOUR, MONDAY + 7 * DAY_MS + 2 * HOUR,
               MONDAY + 7 * DAY_MS + 3 * HOUR)  # fmt: skip
    merchant = _ints(0, 0, 0, 0, 0, 0)
    fraud = np.array([True, False, False, True, False, False])
    nb1, risk1, nb7, risk7, nb30, risk30 = terminal_features(merchant, ts, fraud)
    # +7d+30m sees (t-8d, t-7d] = (-23.5h, +30m]: only the fraud at +0.
    assert nb1.tolist() == [0, 0, 1, 2, 2, 2]
    assert risk1.tolist() == [0.0, 0.0, 1.0, 0.5, 0.5, 0.5]
    # The fraud at +7d+1h is inside everyone's delay: it moves no risk (the classic leak).
    assert nb7.tolist() == nb30.tolist() == nb1.tolist()
    assert risk7.tolist() == risk30.tolist() == risk1.tolist()


def test_terminal_windows_of_one_seven_and_thirty_days_differ_by_their_reach() -> None:
    # Frauds 20 and 5 days before a genuine transaction scored 7 days + 1 min after them ...
    t = MONDAY + 40 * DAY_MS
    ts = _ints(t - 27 * DAY_MS, t - 12 * DAY_MS, t - 7 * DAY_MS - HOUR, t)
    fraud = np.array([True, True, False, False])
    nb1, risk1, nb7, risk7, nb30, risk30 = terminal_features(_ints(3, 3, 3, 3), ts, fraud)
    assert (nb1[3], risk1[3]) == (1, 0.0)  # (t-8d, t-7d]: the genuine one at t-7d-1h
    assert (nb7[3], risk7[3]) == (2, 0.5)  # (t-14d, t-7d]: + the fraud at t-12d
    assert (nb30[3], risk30[3]) == (3, pytest.approx(2 / 3))  # (t-37d, t-7d]: all three


def _reference(entity, ts, values, reach_ms, shift_ms):
    """Per row: sum and count of ``values`` over the rows of its entity in time
    ``(t - reach, t - shift]`` that are not after it (ties in time: by row index); brute force."""
    sums, counts = [], []
    for i in range(len(ts)):
        rows = [
            j for j in range(len(ts))
            if entity[j] == entity[i] and (ts[j], j) <= (ts[i], i)
            and ts[i] - reach_ms < ts[j] <= ts[i] - shift_ms
        ]  # fmt: skip
        sums.append(sum(values[j] for j in rows))
        counts.append(len(rows))
    return np.array(sums, dtype=float), np.array(counts, dtype=float)


def test_features_equal_a_brute_force_reading_of_the_definitions_on_random_data() -> None:
    rng = random.Random(11)
    n = 400
    ts = _ints(*(MONDAY + rng.randrange(60 * 24) * HOUR for _ in range(n)))  # ties, day edges
    card = _ints(*(rng.randint(0, 7) for _ in range(n)))
    merchant = _ints(*(rng.randint(0, 4) for _ in range(n)))
    amount = _floats(*(round(rng.uniform(1, 500), 2) for _ in range(n)))
    fraud = np.array([rng.random() < 0.2 for _ in range(n)])
    got = baseline_features(ts, amount, card, merchant, fraud)
    assert got.shape == (n, len(FEATURE_NAMES))
    column = {name: got[:, i] for i, name in enumerate(FEATURE_NAMES)}
    for days in (1, 7, 30):
        sums, counts = _reference(card, ts, amount, days * DAY_MS, 0)
        assert np.array_equal(column[f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"], counts)
        assert np.allclose(column[f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"], sums / counts)
        bad, seen = _reference(merchant, ts, fraud.astype(float), (days + 7) * DAY_MS, 7 * DAY_MS)
        assert np.array_equal(column[f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"], seen)
        risk = np.divide(bad, seen, out=np.zeros_like(bad), where=seen > 0)
        assert np.allclose(column[f"TERMINAL_ID_RISK_{days}DAY_WINDOW"], risk)
    assert np.array_equal(column["TX_AMOUNT"], amount)


def test_baseline_features_refuse_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one value per transaction"):
        baseline_features(_ints(1, 2), _floats(1.0), _ints(0, 0), _ints(0, 0), np.zeros(2, bool))


# --------------------------------------------------------------------------- the forest


def _separable(split: Split, seed: int = 5) -> Transactions:
    """Eight weeks, 60 cards, 8 merchants; frauds are large night purchases at merchant 7."""
    rng = random.Random(seed)
    rows = []
    for i in range(int(split.days) * 150):
        ts = split.history_start_ms + rng.randrange(int(split.days) * DAY_MS)
        bad = rng.random() < 0.02
        amount = rng.uniform(2000, 4000) if bad else rng.uniform(5, 120)
        rows.append((ts, f"t{i}", amount, rng.randrange(60), 7 if bad else rng.randrange(7), bad))
    rows.sort()
    return Transactions(
        [r[1] for r in rows],
        _ints(*(r[0] for r in rows)),
        _floats(*(r[2] for r in rows)),
        _ints(*(r[3] for r in rows)),
        _ints(*(r[4] for r in rows)),
        np.array([r[5] for r in rows]),
    )


def test_the_forest_learns_the_training_week_and_ranks_the_test_weeks_frauds_first() -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    txns = _separable(split)
    scores, seconds = score_test_week(txns, split)
    test = (txns.ts_ms >= split.test_start_ms) & (txns.ts_ms < split.end_ms)
    assert list(scores) == [txns.transaction_id[i] for i in np.flatnonzero(test)]
    labels = [bool(txns.fraud[i]) for i in np.flatnonzero(test)]
    fraud_rate = sum(labels) / len(labels)
    assert 0.005 < fraud_rate < 0.05
    assert average_precision(list(scores.values()), labels) > 0.9
    assert set(seconds) == {"features", "fit and predict"}
    assert score_test_week(txns, split)[0] == scores  # seeded: the same forest every time


def test_the_forest_needs_both_classes_in_the_training_week() -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    txns = _separable(split)
    honest = Transactions(txns.transaction_id, txns.ts_ms, txns.amount_eur, txns.customer,
                          txns.terminal, np.zeros_like(txns.fraud))  # fmt: skip
    with pytest.raises(ValueError, match="both fraudulent and genuine"):
        score_test_week(honest, split)


def _write_files(folder: Path, split: Split) -> tuple[Path, Path]:
    txns = _separable(split)
    tx, truth = folder / "tx.jsonl", folder / "truth.jsonl"
    with tx.open("wb") as f, truth.open("wb") as g:
        for i, txn_id in enumerate(txns.transaction_id):
            stamp = datetime.fromtimestamp(int(txns.ts_ms[i]) / 1000, UTC).isoformat()
            f.write(orjson.dumps({
                "transaction_id": txn_id, "timestamp": stamp.replace("+00:00", "Z"),
                "account_id": f"acc-{txns.customer[i]}", "merchant_id": f"m-{txns.terminal[i]}",
                "amount": round(float(txns.amount_eur[i]) / 0.92, 2), "currency": "USD",
            }) + b"\n")  # fmt: skip
            if txns.fraud[i]:
                g.write(orjson.dumps({"transaction_id": txn_id, "scenario": "x",
                                      "story_id": "s", "account_id": "a"}) + b"\n")  # fmt: skip
        f.write(b"not json\n")
    return tx, truth


def test_load_transactions_converts_amounts_to_eur_and_skips_what_is_not_a_transaction(
    tmp_path: Path,
) -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    tx, truth = _write_files(tmp_path, split)
    txns = load_transactions(tx, truth, EXCHANGE_RATES)
    expected = _separable(split)
    assert txns.transaction_id == expected.transaction_id
    assert np.allclose(txns.amount_eur, expected.amount_eur, atol=0.01)
    assert np.array_equal(txns.fraud, expected.fraud)
    assert EXCHANGE_RATES["EUR"] == 1.0


def test_the_command_writes_a_score_line_per_test_week_transaction(tmp_path: Path) -> None:
    split = Split.weeks(datetime(2026, 9, 28, tzinfo=UTC))
    tx, truth = _write_files(tmp_path, split)
    out = tmp_path / "scores.jsonl"
    args = [str(tx), "--truth", str(truth), "--start", "2026-09-28T00:00:00Z",
            "--scores-out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    txns = _separable(split)
    in_test = sum(1 for t in txns.ts_ms if split.test_start_ms <= t < split.end_ms)
    assert len(rows) == in_test
    assert all(0.0 <= r["score"] <= 1.0 and r["alerted"] == (r["score"] >= 0.5) for r in rows)
