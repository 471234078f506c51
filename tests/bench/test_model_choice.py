"""The model-choice simulation's label and sampling rules (bench/model_choice.py)."""

from __future__ import annotations

import numpy as np

from bench.evaluate import Txn
from bench.model_choice import DAY_MS, Data, labels_at, sample, train_rows


def _data(n: int = 4) -> Data:
    ts = np.arange(n, dtype=np.int64) * DAY_MS
    return Data(
        txns=[Txn(f"t{i}", "c", int(t), None, None) for i, t in enumerate(ts)],
        ids=[f"t{i}" for i in range(n)],
        ts=ts,
        X=np.zeros((n, 1), dtype=np.float32),
        formula=np.array([0.002, 0.03, 0.002, 0.01])[:n],
        keep_u=np.array([0.01, 0.9, 0.9, 0.03])[:n],
        cb={0: [(10, True), (20, False)], 1: [(30, True)], 2: [(15, False), (15, True)]},
    )


def test_newest_verdict_reported_before_the_day_wins() -> None:
    d = _data()
    rows = np.arange(4)
    assert labels_at(d, rows, 15).tolist() == [1, 0, 0, 0]  # only the fraud at 10 is known
    assert labels_at(d, rows, 21).tolist() == [0, 0, 1, 0]  # genuine at 20 reverses row 0
    assert labels_at(d, rows, 31).tolist() == [0, 1, 1, 0]  # reported at 30 < 31 counts


def test_bounded_log_keeps_the_floor_and_a_weighted_sample() -> None:
    d = _data()
    rows, w = sample(d, np.arange(4), floor=0.02, rate=0.05)
    assert rows.tolist() == [0, 1, 3]  # 1 by its score, 0 and 3 by their hash draw
    assert w is not None
    assert w.tolist() == [20.0, 1.0, 20.0]
    assert sample(d, np.arange(4), None, 1.0)[1] is None


def test_training_window_is_the_14_days_ending_7_days_back() -> None:
    d = _data(40)
    rows = train_rows(d, 30 * DAY_MS)
    assert rows.min() == 9
    assert rows.max() == 22
