"""The handbook's baseline, offline: 15 features and a random forest trained on one week.

    python -m bench.baselines.handbook_rf TX.jsonl --truth TRUTH.jsonl \
        --start 2026-09-28T00:00:00Z --scores-out SCORES.jsonl

Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection*, chapter 3:
features from ``bench.handbook.features``; scikit-learn's ``RandomForestClassifier`` with the
parameters of the handbook's baseline (scikit-learn's defaults: 100 trees, no depth limit;
``random_state=0``); trained on the training week, scores the test week that follows the delay
week (``bench.handbook.split``). Writes one JSON line per test-week transaction,
``{"transaction_id", "score", "alerted"}`` (the backtest's score format; alerted: score >= 0.5,
scikit-learn's ``predict``).

Labels, as in the handbook: the *true* labels (the producer's ``--labels-out``), every fraud
known exactly one delay after its transaction, both for training and for the terminal risk
features. A bank learns of fewer frauds, later (chargebacks cover less than all of them and
arrive after days to weeks), so this reference is stronger than anything a bank can field:
a demanding yardstick, not a peer. The handbook also standardises the features before
fitting; a tree's splits do not change under a per-feature monotone rescaling, so we skip it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt
import orjson

from bench.handbook.features import FEATURE_NAMES, baseline_features
from bench.handbook.split import Split
from fraudwatch.vocabulary import EXCHANGE_RATES

ALERT_THRESHOLD = 0.5
# The handbook's baseline forest: scikit-learn's defaults with a fixed seed.
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 100, "max_depth": None, "random_state": 0}


@dataclass(frozen=True)
class Transactions:
    """The columns the features need, in file order, with the true label of each."""

    transaction_id: list[str]
    ts_ms: npt.NDArray[np.int64]
    amount_eur: npt.NDArray[np.float64]
    customer: npt.NDArray[np.int64]
    terminal: npt.NDArray[np.int64]
    fraud: npt.NDArray[np.bool_]


def _ts_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def load_transactions(tx_path: Path, truth_path: Path, rates: Mapping[str, float]) -> Transactions:
    """Read a producer ``--out`` file and its ``--labels-out`` ground truth.

    Lines that are not transactions, records the truth calls malformed and currencies without
    a rate are skipped (the detectors dead-letter them).
    """
    fraud_ids: set[str] = set()
    malformed: set[str] = set()
    for line in truth_path.read_bytes().splitlines():
        label = orjson.loads(line)
        (malformed if label["scenario"] == "malformed" else fraud_ids).add(label["transaction_id"])
    ids: list[str] = []
    ts: list[int] = []
    amounts: list[float] = []
    customers: dict[str, int] = {}
    terminals: dict[str, int] = {}
    cust: list[int] = []
    term: list[int] = []
    for line in tx_path.read_bytes().splitlines():
        try:
            r = orjson.loads(line)
            txn_id, stamp = r["transaction_id"], _ts_ms(r["timestamp"])
            amount, rate = float(r["amount"]), rates[r["currency"]]
            account, merchant = r["account_id"], r["merchant_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not a transaction, or a currency the detectors dead-letter too
        if txn_id in malformed:
            continue
        ids.append(txn_id)
        ts.append(stamp)
        amounts.append(amount * rate)
        cust.append(customers.setdefault(account, len(customers)))
        term.append(terminals.setdefault(merchant, len(terminals)))
    return Transactions(
        ids,
        np.array(ts, dtype=np.int64),
        np.array(amounts, dtype=np.float64),
        np.array(cust, dtype=np.int64),
        np.array(term, dtype=np.int64),
        np.array([i in fraud_ids for i in ids], dtype=np.bool_),
    )


def fit_predict(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.bool_],
    train: npt.NDArray[np.bool_],
    test: npt.NDArray[np.bool_],
    n_jobs: int = 1,
) -> npt.NDArray[np.float64]:
    """Fraud probability of every ``test`` row from a forest fitted on the ``train`` rows."""
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    if not labels[train].any() or labels[train].all():
        raise ValueError("the training week needs both fraudulent and genuine transactions")
    forest = RandomForestClassifier(**FOREST_PARAMS, n_jobs=n_jobs)
    forest.fit(features[train], labels[train])
    proba: npt.NDArray[np.float64] = forest.predict_proba(features[test])[:, 1]
    return proba


def score_test_week(
    txns: Transactions, split: Split, n_jobs: int = 1
) -> tuple[dict[str, float], dict[str, float]]:
    """Scores of the test week's transactions by id; and the seconds each step took."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    features = baseline_features(
        txns.ts_ms, txns.amount_eur, txns.customer, txns.terminal, txns.fraud
    )
    seconds["features"] = time.monotonic() - started
    train = (txns.ts_ms >= split.train_start_ms) & (txns.ts_ms < split.delay_start_ms)
    test = (txns.ts_ms >= split.test_start_ms) & (txns.ts_ms < split.end_ms)
    started = time.monotonic()
    proba = fit_predict(features, txns.fraud, train, test, n_jobs)
    seconds["fit and predict"] = time.monotonic() - started
    test_ids = [txns.transaction_id[i] for i in np.flatnonzero(test)]
    return dict(zip(test_ids, (float(p) for p in proba), strict=True)), seconds


def write_scores(path: Path, scores: Mapping[str, float]) -> None:
    """One ``{"transaction_id", "score", "alerted"}`` JSON line per scored transaction."""
    with path.open("wb") as out:
        for txn_id, score in scores.items():
            row = {"transaction_id": txn_id, "score": score, "alerted": score >= ALERT_THRESHOLD}
            out.write(orjson.dumps(row) + b"\n")


@click.command()
@click.argument("tx_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--truth", "truth_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The producer's --labels-out file (true labels).")  # fmt: skip
@click.option("--start", required=True, help="First day of the traffic (UTC midnight, RFC 3339).")
@click.option("--history-days", type=click.IntRange(min=0), default=35, show_default=True)
@click.option("--scores-out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
def main(
    tx_path: Path, truth_path: Path, start: str, history_days: int, scores_out: Path, jobs: int,
) -> None:  # fmt: skip
    """Train the handbook's random forest on the training week; score the test week."""
    split = Split.weeks(datetime.fromisoformat(start), history_days=history_days)
    txns = load_transactions(tx_path, truth_path, EXCHANGE_RATES)
    scores, seconds = score_test_week(txns, split, jobs)
    write_scores(scores_out, scores)
    summary = {"scored": len(scores), "features": list(FEATURE_NAMES), "seconds": seconds}
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
