"""``python -m bench.model_choice``: which model library (and settings) the daily retrainer uses.

An offline, seeded experiment over the evaluation's files (``.stack/evaluate/PROFILE/``) and
the backtest's per-transaction features (``python -m bench.model_choice features`` =
``dataflows.backtest --features-out`` with a bench-side fix, see ``features``). It simulates,
in event time, the trainer the running system will have:

* at the start of each UTC day D of the delay and test weeks, train on the transactions with
  event time in ``[D - 7 d - 14 d, D - 7 d)`` (the latest 14 days whose labels are final, label
  delay 7 days), labelled fraud iff the newest chargeback for the transaction reported before
  D says fraud (no true labels); score day D with that model;
* the test week's scores are measured with ``bench.evaluate``'s own functions
  (``load_truth``, ``handbook_test_set``, ``score_run``), as ``make evaluate`` does; the delay
  week the same way with the split shifted back one week (a second week of evidence);
* a bounded feature log: keep every row whose formula score is >= a floor plus a seeded
  (hash of the transaction id) share of the rest, weighted 1/rate;
* an alert budget of B cards a day, the threshold set from the previous 7 days' card-day
  maxima.

Steps (2 cores: two at a time)::

    python -m bench.model_choice features .stack/evaluate/P/transactions.jsonl \\
        --rules .stack/evaluate/rules.toml --labels .stack/evaluate/P/chargebacks.jsonl \\
        --features-out /tmp/mc/P/features.jsonl --scores-out /tmp/mc/P/scores.jsonl -o /dev/null
    python -m bench.model_choice run P --out /tmp/mc/P/results.json [--sampling]
    python -m bench.model_choice cost --out /tmp/mc/cost.json
    python -m bench.model_choice report --intro INTRO.md

Subcommands: ``features``, ``run`` (one profile, JSON out), ``cost`` (predict/train time, peak
RSS, SHAP), ``report`` (docs/model-choice.md from the JSON files).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt
import orjson

from bench.evaluate import (
    Scored,
    Txn,
    _json_lines,
    handbook_test_set,
    load_truth,
    read_scores,
    score_run,
)
from bench.handbook.split import DAY_MS, Split
from dataflows.detection.features import FEATURE_NAMES

EVAL_DIR = Path("/work/main/.stack/evaluate")
WORK = Path("/tmp/mc")  # noqa: S108 - scratch files of an offline experiment
START = datetime(2026, 9, 28, tzinfo=UTC)
SPLIT = Split.weeks(START)  # the evaluation's: test week 2026-11-16 .. 11-23
DELAY_SPLIT = Split.weeks(START, history_days=28)  # the delay week as a test week
LABEL_DELAY_DAYS = 7
TRAIN_DAYS = 14
SEED = 0
BUDGET = 100
K = 100
MIN_HISTORY = 5  # as the evaluation's (the rule file's amount/location min history)
PRIOR = 0.002

Matrix = npt.NDArray[np.float32]


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """One profile: transactions (file order), features, formula scores, chargebacks."""

    txns: list[Txn]
    ids: list[str]
    ts: npt.NDArray[np.int64]
    X: Matrix  # rows aligned with txns
    formula: npt.NDArray[np.float64]
    keep_u: npt.NDArray[np.float64]  # a uniform [0, 1) per row from its id (sampling)
    cb: dict[int, list[tuple[int, bool]]]  # row -> [(reported_ms, fraud)] in file order


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def load(profile: str) -> Data:
    folder = EVAL_DIR / profile
    txns, _ = load_truth(folder / "transactions.jsonl", folder / "truth.jsonl")
    ids = [t.transaction_id for t in txns]
    index = {t: i for i, t in enumerate(ids)}
    cache = WORK / profile / "features.npy"
    if cache.exists():
        X = np.load(cache)
    else:
        X = np.zeros((len(txns), len(FEATURE_NAMES)), dtype=np.float32)
        seen = np.zeros(len(txns), dtype=bool)
        with (WORK / profile / "features.jsonl").open("rb") as f:
            for line in f:
                row = orjson.loads(line)
                i = index[row["transaction_id"]]
                X[i] = [row[n] for n in FEATURE_NAMES]
                seen[i] = True
        if not seen.all():
            raise SystemExit(f"{profile}: {int((~seen).sum())} transactions without features")
        np.save(cache, X)
    formula = np.zeros(len(txns))
    for row in _json_lines(WORK / profile / "scores.jsonl"):
        formula[index[row["transaction_id"]]] = row["score"]
    cb: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for row in _json_lines(folder / "chargebacks.jsonl"):
        row_i = index.get(row["transaction_id"])
        if row_i is not None:
            cb[row_i].append((_ms(row["reported_at"]), row["label"] == "fraud"))
    keep_u = np.array([zlib.crc32(t.encode()) / 2**32 for t in ids])
    ts = np.array([t.ts_ms for t in txns], dtype=np.int64)
    return Data(txns, ids, ts, X, formula, keep_u, dict(cb))


def labels_at(data: Data, rows: npt.NDArray[np.int64], day_ms: int) -> npt.NDArray[np.int8]:
    """Fraud (1) iff the newest chargeback of the row reported before ``day_ms`` says fraud."""
    y = np.zeros(len(rows), dtype=np.int8)
    for j, i in enumerate(rows):
        best: tuple[int, bool] | None = None
        for rep, fraud in data.cb.get(int(i), ()):
            if rep < day_ms and (best is None or rep >= best[0]):
                best = (rep, fraud)
        y[j] = 1 if best is not None and best[1] else 0
    return y


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Candidate:
    key: str
    library: str
    params: dict[str, Any]
    rounds: int = 0


def lgb_params(**kw: Any) -> dict[str, Any]:
    base = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 50,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "bagging_freq": 0,
        "lambda_l2": 0.0,
        "deterministic": True,
        "force_row_wise": True,
        "seed": SEED,
        "num_threads": 1,
        "verbosity": -1,
    }
    base.update(kw)
    return base


CANDIDATES = {
    c.key: c
    for c in (
        Candidate("lgb_31_005_300", "lightgbm", lgb_params(), 300),
        Candidate(
            "lgb_15_01_100",
            "lightgbm",
            lgb_params(num_leaves=15, learning_rate=0.1, min_data_in_leaf=100),
            100,
        ),
        Candidate(
            "lgb_63_005_400", "lightgbm", lgb_params(num_leaves=63, min_data_in_leaf=20), 400
        ),
        Candidate("lgb_31_005_300_spw10", "lightgbm", lgb_params(scale_pos_weight=10.0), 300),
        Candidate(
            "lgb_15_01_100_spw10",
            "lightgbm",
            lgb_params(
                num_leaves=15, learning_rate=0.1, min_data_in_leaf=100, scale_pos_weight=10.0
            ),
            100,
        ),
        Candidate(
            "lgb_31_005_300_bag",
            "lightgbm",
            lgb_params(feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1, lambda_l2=1.0),
            300,
        ),
        # XGBoost's regularisation in LightGBM terms: lambda 1 and a hessian floor per leaf (a
        # leaf of mostly genuine rows has a tiny hessian when frauds are 1 %).
        Candidate(
            "lgb_15_01_100_reg",
            "lightgbm",
            lgb_params(
                num_leaves=15,
                learning_rate=0.1,
                min_data_in_leaf=100,
                lambda_l2=1.0,
                min_sum_hessian_in_leaf=5.0,
            ),
            100,
        ),
        Candidate(
            "lgb_d6_005_300_reg",
            "lightgbm",
            lgb_params(
                num_leaves=63,
                max_depth=6,
                min_data_in_leaf=20,
                lambda_l2=1.0,
                min_sum_hessian_in_leaf=5.0,
            ),
            300,
        ),
        Candidate(
            "xgb_d6_005_300",
            "xgboost",
            {
                "objective": "binary:logistic",
                "tree_method": "hist",
                "max_depth": 6,
                "eta": 0.05,
                "min_child_weight": 5,
                "max_bin": 256,
                "seed": SEED,
                "nthread": 1,
                "verbosity": 0,
            },
            300,
        ),
        Candidate(
            "hgb_31_005_300",
            "sklearn",
            {
                "max_iter": 300,
                "learning_rate": 0.05,
                "max_leaf_nodes": 31,
                "min_samples_leaf": 50,
                "early_stopping": False,
                "random_state": SEED,
            },
        ),
        Candidate("river_logreg", "river", {"lr": 0.01}),
    )
}
DEFAULT_KEYS = [k for k in CANDIDATES if k != "river_logreg"]


def fit(
    c: Candidate, X: Matrix, y: npt.NDArray[np.int8], w: npt.NDArray[np.float64] | None
) -> tuple[Any, Callable[[Matrix], Any]]:
    """A fitted model of candidate ``c``, and a predict function over a matrix."""
    if c.library == "lightgbm":
        import lightgbm as lgb

        ds = lgb.Dataset(
            X, label=y, weight=w, feature_name=list(FEATURE_NAMES), params={"verbosity": -1}
        )
        booster = lgb.train(c.params, ds, num_boost_round=c.rounds)
        return booster, lambda Z: booster.predict(Z, num_threads=1)
    if c.library == "xgboost":
        import xgboost as xgb

        dm = xgb.DMatrix(X, label=y, weight=w, feature_names=list(FEATURE_NAMES))
        xbooster = xgb.train(c.params, dm, num_boost_round=c.rounds)
        return xbooster, xbooster.inplace_predict
    if c.library == "sklearn":
        from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

        model = HistGradientBoostingClassifier(**c.params)
        model.fit(X, y, sample_weight=w)
        return model, lambda Z: model.predict_proba(Z)[:, 1]
    raise ValueError(c.library)


# --------------------------------------------------------------------------- simulation


def day_starts() -> list[int]:
    return list(range(SPLIT.delay_start_ms, SPLIT.end_ms, DAY_MS))


def train_rows(data: Data, day: int) -> npt.NDArray[np.int64]:
    hi = day - LABEL_DELAY_DAYS * DAY_MS
    lo = hi - TRAIN_DAYS * DAY_MS
    return np.flatnonzero((data.ts >= lo) & (data.ts < hi))


def sample(
    data: Data, rows: npt.NDArray[np.int64], floor: float | None, rate: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64] | None]:
    """The bounded log: rows with formula score >= floor, plus a ``rate`` share of the rest
    (by the hash of the id, so the same row is kept whatever day trains on it), weight 1/rate."""
    if floor is None:
        return rows, None
    high = data.formula[rows] >= floor
    kept = high | (data.keep_u[rows] < rate)
    w = np.where(high[kept], 1.0, 1.0 / rate)
    return rows[kept], w


def simulate(
    data: Data, c: Candidate, floor: float | None = None, rate: float = 1.0, test_only: bool = False
) -> dict[str, Any]:
    """Daily retrain over the delay and test weeks (``test_only``: the test week only);
    scores of those days by row (NaN elsewhere)."""
    scores = np.full(len(data.txns), np.nan)
    fit_s: list[float] = []
    n_train: list[int] = []
    n_full: list[int] = []
    pos: list[int] = []
    gains = np.zeros(len(FEATURE_NAMES))
    rescored_alerted: list[int] = []
    last_model = None
    for day in day_starts():
        if test_only and day < SPLIT.test_start_ms:
            continue
        full = train_rows(data, day)
        rows, w = sample(data, full, floor, rate)
        y = labels_at(data, rows, day)
        t0 = time.perf_counter()
        model, predict = fit(c, data.X[rows], y, w)
        fit_s.append(time.perf_counter() - t0)
        n_train.append(len(rows))
        n_full.append(len(full))
        pos.append(int(y.sum()))
        target = np.flatnonzero((data.ts >= day) & (data.ts < day + DAY_MS))
        scores[target] = predict(data.X[target])
        if day >= SPLIT.test_start_ms:
            # The other way to set the budget threshold: today's model re-scores the last 7
            # days, and the threshold is the (B x 7)-th highest card-day of those scores.
            prev = np.flatnonzero((data.ts >= day - 7 * DAY_MS) & (data.ts < day))
            thr = budget_threshold(data, prev, predict(data.X[prev]))
            rescored_alerted.append(_cards_at_or_above(data, target, scores[target], thr))
        say(
            f"  {c.key} day {(day - SPLIT.delay_start_ms) // DAY_MS + 1}/14: "
            f"{len(rows)} rows, fit {fit_s[-1]:.1f} s"
        )
        if c.library == "lightgbm" and day >= SPLIT.test_start_ms:
            g = model.feature_importance(importance_type="gain")
            gains += g / g.sum()
        last_model = model
    out: dict[str, Any] = {
        "fit_s_median": statistics.median(fit_s),
        "train_rows_mean": float(np.mean(n_train)),
        "full_rows_mean": float(np.mean(n_full)),
        "kept_fraction": float(np.sum(n_train) / np.sum(n_full)),
        "train_frauds_mean": float(np.mean(pos)),
        "scores": scores,
        "budget_rescored": {
            "mean": statistics.mean(rescored_alerted),
            "min": min(rescored_alerted),
            "max": max(rescored_alerted),
            "per_day": rescored_alerted,
        },
    }
    if c.library == "lightgbm":
        out["gain"] = dict(zip(FEATURE_NAMES, (gains / 7).tolist(), strict=True))
        out["model"] = last_model
    return out


def simulate_river(data: Data, c: Candidate) -> dict[str, Any]:
    """An online logistic regression: each row is learnt when its label is final (7 days
    after it, labelled by the chargebacks reported by then), and once more as fraud when a
    fraud chargeback arrives later than that; rows of the delay/test weeks are scored as
    they come (predict before anything later is learnt)."""
    from river import compose, linear_model, optim, preprocessing

    model = compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(c.params["lr"])),
    )
    names = list(FEATURE_NAMES)
    events: list[tuple[int, int, int, int]] = []  # (time, kind, row, label): kind 0 learn, 1 score
    final = LABEL_DELAY_DAYS * DAY_MS
    for i, t in enumerate(data.ts.tolist()):
        if t + final < SPLIT.end_ms:
            lab = labels_at(data, np.array([i]), t + final)[0]
            events.append((t + final, 0, i, int(lab)))
        if t >= SPLIT.delay_start_ms:
            events.append((t, 1, i, 0))
    for i, cbs in data.cb.items():
        t = int(data.ts[i])
        for rep, fraud in cbs:
            if fraud and rep >= t + final and rep < SPLIT.end_ms:
                events.append((rep, 0, i, 1))
    events.sort()
    scores = np.full(len(data.txns), np.nan)
    t0 = time.perf_counter()
    learnt = 0
    for _, kind, i, lab in events:
        x = dict(zip(names, np.log1p(np.maximum(data.X[i], 0.0)).tolist(), strict=True))
        if kind == 0:
            model.learn_one(x, bool(lab))
            learnt += 1
        else:
            scores[i] = model.predict_proba_one(x).get(True, 0.0)
    return {
        "fit_s_median": None,
        "online_s_total": time.perf_counter() - t0,
        "learnt": learnt,
        "scores": scores,
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Bench:
    """The evaluation's view of one profile: truth, test sets of both weeks."""

    txns: list[Txn]
    tests: dict[str, list[Txn]]

    @classmethod
    def of(cls, data: Data) -> Bench:
        tests = {
            "test": handbook_test_set(data.txns, SPLIT)[0],
            "delay": handbook_test_set(data.txns, DELAY_SPLIT)[0],
        }
        return cls(data.txns, tests)

    def measure(self, scored: dict[str, Scored], week: str) -> dict[str, float]:
        r = score_run(self.txns, self.tests[week], scored, K, MIN_HISTORY)
        return {
            "ap": r["average_precision"],
            "auc": r["roc_auc"],
            "cp100": r["card_precision_at_k"],
        }


def as_scored(data: Data, scores: npt.NDArray[np.float64], week_split: Split) -> dict[str, Scored]:
    rows = np.flatnonzero((data.ts >= week_split.test_start_ms) & (data.ts < week_split.end_ms))
    return {data.ids[i]: Scored(float(scores[i]), False) for i in rows}


def budget_check(
    data: Data, scores: npt.NDArray[np.float64], budget: int = BUDGET
) -> dict[str, Any]:
    """Per test day: threshold = the (budget x 7)-th highest card-day max score of the 7 days
    before; alerted cards = cards whose max score that day reaches it (all transactions, as
    the live system sees them: no truth-based blocking)."""
    card_day: dict[int, dict[str, float]] = defaultdict(dict)
    for i in np.flatnonzero(~np.isnan(scores)):
        t = int(data.ts[i])
        d = t - t % DAY_MS
        cards = card_day[d]
        acc = data.txns[i].account_id
        s = float(scores[i])
        if s > cards.get(acc, -1.0):
            cards[acc] = s
    alerted = []
    for day in SPLIT.test_days():
        prev = [s for d in range(day - 7 * DAY_MS, day, DAY_MS) for s in card_day[d].values()]
        prev.sort(reverse=True)
        thr = prev[min(budget * 7, len(prev)) - 1]
        alerted.append(sum(1 for s in card_day[day].values() if s >= thr))
    return {
        "mean": statistics.mean(alerted),
        "min": min(alerted),
        "max": max(alerted),
        "per_day": alerted,
    }


def budget_threshold(
    data: Data,
    rows: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64],
    budget: int = BUDGET,
    days: int = 7,
) -> float:
    """The (budget x days)-th highest card-day maximum among ``rows`` scored ``scores``."""
    best: dict[tuple[str, int], float] = {}
    for i, s in zip(rows.tolist(), scores.tolist(), strict=True):
        t = int(data.ts[i])
        key = (data.txns[i].account_id, t - t % DAY_MS)
        if s > best.get(key, -1.0):
            best[key] = s
    ranked = sorted(best.values(), reverse=True)
    return ranked[min(budget * days, len(ranked)) - 1]


def _cards_at_or_above(
    data: Data, rows: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], thr: float
) -> int:
    return len(
        {
            data.txns[i].account_id
            for i, s in zip(rows.tolist(), scores.tolist(), strict=True)
            if s >= thr
        }
    )


def evaluate_scores(data: Data, bench: Bench, scores: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Test-week metrics; delay-week metrics and the budget check when the delay week was
    scored too."""
    delay = (data.ts >= DELAY_SPLIT.test_start_ms) & (data.ts < DELAY_SPLIT.end_ms)
    full = not np.isnan(scores[delay]).any()
    return {
        "test": bench.measure(as_scored(data, scores, SPLIT), "test"),
        "delay": bench.measure(as_scored(data, scores, DELAY_SPLIT), "delay") if full else None,
        "budget": budget_check(data, scores) if full else None,
    }


# --------------------------------------------------------------------------- commands


@click.group()
def cli() -> None:
    """Model choice for the daily retrainer."""


@cli.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.pass_context
def features(ctx: click.Context) -> None:
    """``dataflows.backtest`` (same arguments) with a working ``--features-out``.

    At this commit ``--features-out`` crashes (IndexError in ``CardState.habit_at``): with
    ``keep_habits`` the detector reads ``Window.habit`` / ``Window.card_median()`` after it has
    inserted the transaction and pruned the card's windows, so ``Window.pos`` is stale. Here the
    window computes both on creation, on the state the signals saw (what they cache anyway).
    The scores stay byte-identical to the evaluation's ``fraudwatch-scores.jsonl`` (checked on
    all four profiles). Bench only: the product code is not edited.
    """
    from dataflows import backtest
    from dataflows.detection import signals

    init = signals.Window.__init__

    def eager_init(self: signals.Window, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _ = self.habit
        self.card_median()

    signals.Window.__init__ = eager_init  # type: ignore[method-assign]
    backtest.main(args=ctx.args, standalone_mode=True)


@cli.command()
@click.argument("profile")
@click.option("--candidates", default=",".join(DEFAULT_KEYS), show_default=True)
@click.option(
    "--sampling/--no-sampling",
    default=False,
    help="Also the bounded-log variants for the first candidate.",
)
@click.option(
    "--sampling-grid",
    default="0.005/0.05,0.005/0.02,0.02/0.05,0.02/0.02",
    show_default=True,
    help="floor/rate pairs for --sampling.",
)
@click.option(
    "--test-only",
    "test_only",
    default="",
    help="Comma-separated candidates simulated on the test week only (faster).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def run(
    profile: str, candidates: str, sampling: bool, sampling_grid: str, test_only: str, out: Path
) -> None:
    """Simulate every candidate on one profile; JSON results to ``--out``."""
    t0 = time.perf_counter()
    data = load(profile)
    bench = Bench.of(data)
    say(f"[{profile}] loaded {len(data.txns)} rows in {time.perf_counter() - t0:.0f} s")
    res: dict[str, Any] = {"profile": profile, "candidates": {}, "sampling": {}}
    # The references: the formula (our backtest, checked against the evaluation's file) and
    # the forest (its file).
    ev_formula = read_scores(EVAL_DIR / profile / "fraudwatch-scores.jsonl")
    same = all(
        abs(ev_formula[i].score - data.formula[j]) < 1e-12
        for j, i in enumerate(data.ids)
        if i in ev_formula
    )
    res["formula_matches_evaluation"] = same
    res["formula"] = evaluate_scores(data, bench, data.formula)
    forest = read_scores(EVAL_DIR / profile / "forest-scores.jsonl")
    res["forest"] = {"test": bench.measure(forest, "test")}
    say(
        f"[{profile}] formula {res['formula']['test']} forest {res['forest']['test']} "
        f"(formula file identical: {same})"
    )
    keys = [k for k in candidates.split(",") if k]
    for key in keys:
        c = CANDIDATES[key]
        t1 = time.perf_counter()
        short = key in test_only.split(",")
        sim = (
            simulate_river(data, c) if c.library == "river" else simulate(data, c, test_only=short)
        )
        r = evaluate_scores(data, bench, sim.pop("scores"))
        model = sim.pop("model", None)
        r.update(sim)
        r["wall_s"] = time.perf_counter() - t1
        res["candidates"][key] = r
        say(
            f"[{profile}] {key}: test {r['test']} delay {r['delay']} budget "
            f"{_budget(r['budget'])} re-scored {_budget(r.get('budget_rescored'))} "
            f"in {r['wall_s']:.0f} s"
        )
        out.write_text(json.dumps(res, indent=1))  # after each candidate: nothing is lost
        if key == keys[0] and model is not None:
            model.save_model(str(WORK / profile / f"{key}.txt"))
    if sampling:
        c = CANDIDATES[keys[0]]
        for combo in sampling_grid.split(","):
            floor, rate = (float(x) for x in combo.split("/"))
            sim = simulate(data, c, floor, rate)
            r = evaluate_scores(data, bench, sim.pop("scores"))
            sim.pop("model", None)
            sim.pop("gain", None)
            r.update(sim)
            res["sampling"][f"{c.key} {floor}/{rate}"] = r
            say(
                f"[{profile}] {c.key} floor {floor} rate {rate}: kept "
                f"{r['kept_fraction']:.3f} test {r['test']} delay {r['delay']}"
            )
            out.write_text(json.dumps(res, indent=1))
    out.write_text(json.dumps(res, indent=1))
    say(f"[{profile}] done in {time.perf_counter() - t0:.0f} s")


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _time_per_row(
    predict: Callable[[Matrix], Any], Z: Matrix, batch: int, repeats: int = 9
) -> float:
    """Median over ``repeats`` of the time to predict one ``batch``, per row, in µs."""
    xs = Z[:batch]
    predict(xs)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(xs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch * 1e6


@cli.command("cost-one")
@click.argument("key")
@click.option("--matrix", type=click.Path(path_type=Path), default=WORK / "cost.npz")
def cost_one(key: str, matrix: Path) -> None:
    """One retrain and the predict cost of candidate KEY (its own process: clean peak RSS)."""
    m = np.load(matrix)
    X, y, Z = m["X"], m["y"], m["Z"]
    gc.collect()
    c = CANDIDATES[key]
    out: dict[str, Any] = {"key": key, "train_rows": len(X)}
    if c.library == "river":
        from river import compose, linear_model, optim, preprocessing

        model = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(0.01)),
        )
        names = list(FEATURE_NAMES)
        rows = [
            dict(zip(names, np.log1p(np.maximum(r, 0.0)).tolist(), strict=True)) for r in X[:20000]
        ]
        t0 = time.perf_counter()
        for r, lab in zip(rows, y[:20000].tolist(), strict=True):
            model.learn_one(r, bool(lab))
        out["learn_us_per_row"] = (time.perf_counter() - t0) / len(rows) * 1e6
        zs = [
            dict(zip(names, np.log1p(np.maximum(r, 0.0)).tolist(), strict=True)) for r in Z[:2000]
        ]
        t0 = time.perf_counter()
        for r in zs:
            model.predict_proba_one(r)
        out["predict_us_per_row_one_by_one"] = (time.perf_counter() - t0) / len(zs) * 1e6
        print(json.dumps(out))
        return
    rss0 = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    model, predict = fit(c, X, y, None)
    out["fit_s"] = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    out["fit_cpu_s"] = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    out["rss_before_fit_mb"] = rss0 / 1024
    out["peak_rss_fit_mb"] = _status("VmHWM") / 1024
    out["fit_extra_peak_mb"] = (_status("VmHWM") - rss0) / 1024
    out["maxrss_process_mb"] = ru1.ru_maxrss / 1024
    for batch in (1, 256, 2000):
        out[f"predict_us_per_row_b{batch}"] = _time_per_row(predict, Z, batch)
    if c.library == "lightgbm":
        contrib = lambda Q: model.predict(Q, num_threads=1, pred_contrib=True)  # noqa: E731
        for batch in (1, 100):
            out[f"shap_us_per_row_b{batch}"] = _time_per_row(contrib, Z, batch)
        path = WORK / "cost-model.txt"
        model.save_model(str(path))
        out["model_file_kb"] = path.stat().st_size / 1024
    print(json.dumps(out))


@cli.command()
@click.option("--profile", default="default", show_default=True)
@click.option("--candidates", default=",".join(CANDIDATES), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def cost(profile: str, candidates: str, out: Path) -> None:
    """Training (first test day's retrain) and scoring cost per candidate, one process each."""
    import subprocess

    data = load(profile)
    day = SPLIT.test_start_ms
    rows = train_rows(data, day)
    y = labels_at(data, rows, day)
    target = np.flatnonzero((data.ts >= day) & (data.ts < day + DAY_MS))
    # Alerted-looking rows first is irrelevant to tree cost; keep the day's order.
    np.savez(WORK / "cost.npz", X=data.X[rows], y=y, Z=data.X[target])
    del data
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    res = []
    for key in candidates.split(","):
        p = subprocess.run(
            [sys.executable, "-m", "bench.model_choice", "cost-one", key],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        res.append(json.loads(p.stdout.strip().splitlines()[-1]))
        say(f"cost {res[-1]}")
    out.write_text(json.dumps(res, indent=1))


def _f(x: float | None, nd: int = 3) -> str:
    return "\u2013" if x is None else f"{x:.{nd}f}"


def _budget(b: dict[str, Any] | None) -> str:
    return "\u2013" if not b else f"{b['mean']:.0f} ({b['min']}\u2013{b['max']})"


def _sampling_table(
    w: list[str], p: str, first: str, base: dict[str, Any], variants: list[tuple[str, Any]]
) -> None:
    rows = [
        [
            "all rows",
            "100%",
            _f(base["test"]["ap"]),
            "",
            _f(base["delay"]["ap"]),
            "",
            _f(base["test"]["cp100"]),
            _budget(base.get("budget_rescored")),
        ]
    ]
    for key, x in variants:
        floor, rate = key.split("/")
        rows.append(
            [
                f"floor {floor} + {float(rate):.0%}",
                f"{x['kept_fraction']:.1%}",
                _f(x["test"]["ap"]),
                f"{x['test']['ap'] - base['test']['ap']:+.3f}",
                _f(x["delay"]["ap"]),
                f"{x['delay']['ap'] - base['delay']['ap']:+.3f}",
                _f(x["test"]["cp100"]),
                _budget(x.get("budget_rescored")),
            ]
        )
    w.append(f"### {p} ({first})\n")
    w += _table(
        [
            "log",
            "kept",
            "AP test",
            "\u0394AP test",
            "AP delay wk",
            "\u0394AP delay wk",
            "CP@100 test",
            "budget cards/day (re-scored)",
        ],
        rows,
    )
    w.append("")


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


@cli.command()
@click.option("--profiles", default="default,shifted,small,large", show_default=True)
@click.option("--cost-file", type=click.Path(path_type=Path), default=WORK / "cost.json")
@click.option(
    "--intro",
    type=click.Path(path_type=Path),
    required=True,
    help="Markdown written before the tables (recommendation, method).",
)
@click.option("--outro", type=click.Path(path_type=Path), default=None)
@click.option("--gain-model", default="lgb_15_01_100_reg", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/model-choice.md"))
def report(
    profiles: str, cost_file: Path, intro: Path, outro: Path | None, gain_model: str, out: Path
) -> None:
    """docs/model-choice.md from the ``run`` and ``cost`` JSON files."""
    w: list[str] = [intro.read_text().rstrip(), ""]
    results = {}
    for p in profiles.split(","):
        paths = sorted(
            (WORK / p).glob("results*.json"), key=lambda q: (q.name != "results.json", q.name)
        )
        for path in paths:  # results.json first: its first candidate is the sampling base
            part = json.loads(path.read_text())
            if p not in results:
                results[p] = part
            else:
                results[p]["candidates"].update(part["candidates"])
                results[p]["sampling"].update(part.get("sampling", {}))
    w.append("## Quality per profile\n")
    w.append(
        "Test week = the evaluation's (2026-11-16..22, handbook test set, metrics of "
        "`bench.evaluate.score_run`); delay week = 2026-11-09..15 measured the same way "
        "(split shifted back a week; the forest has no scores there). Budget: alerted "
        f"cards per test day at B = {BUDGET} (threshold from the previous 7 days). "
        "Fit: median seconds per daily retrain (1 thread; two profiles ran side by side "
        "on the 2-core machine).\n"
    )
    for p, r in results.items():
        w.append(f"### {p}\n")
        rows = []
        fo = r["forest"]["test"]
        rows.append(
            [
                "random forest (handbook, true labels)",
                _f(fo["ap"]),
                _f(fo["auc"]),
                _f(fo["cp100"]),
                *["\u2013"] * 6,
            ]
        )
        for name, x in [("formula (today's fraudwatch)", r["formula"]), *r["candidates"].items()]:
            t, d = x["test"], x["delay"] or {"ap": None, "auc": None, "cp100": None}
            rows.append(
                [
                    name,
                    _f(t["ap"]),
                    _f(t["auc"]),
                    _f(t["cp100"]),
                    _f(d["ap"]),
                    _f(d["auc"]),
                    _f(d["cp100"]),
                    _budget(x.get("budget")),
                    _budget(x.get("budget_rescored")),
                    _f(x.get("fit_s_median"), 1),
                ]
            )
        w += _table(
            [
                "detector",
                "AP",
                "AUC",
                "CP@100",
                "AP (delay wk)",
                "AUC (delay wk)",
                "CP@100 (delay wk)",
                "budget cards/day (past scores)",
                "budget cards/day (re-scored)",
                "fit s",
            ],
            rows,
        )
        w.append("")
    w.append("## Bounded feature log\n")
    w.append(
        "Keep every row whose formula score is >= floor, plus the rows whose "
        "`crc32(transaction_id) / 2^32 < rate`, weighted 1/rate. Kept: share of the "
        "14-day training rows kept (mean over the 14 retrains). ΔAP: against the "
        "same model trained on every row.\n"
    )
    for p, r in results.items():
        if not r.get("sampling"):
            continue
        groups: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for key, x in r["sampling"].items():
            name, _, variant = key.rpartition(" ")
            groups[name or next(iter(r["candidates"]))].append((variant, x))
        for first, variants in groups.items():
            _sampling_table(w, p, first, r["candidates"][first], variants)
    w.append("## Alert budget per test day\n")

    rows = []
    for p, r in results.items():
        for name, x in [("formula", r["formula"]), *r["candidates"].items()]:
            for how in ("budget", "budget_rescored"):
                if x.get(how):
                    rows.append(
                        [
                            p,
                            name,
                            "re-scored" if how == "budget_rescored" else "past",
                            *x[how]["per_day"],
                        ]
                    )
    w += _table(
        ["profile", "detector", "threshold from", *(f"day {i + 1}" for i in range(7))], rows
    )
    w.append("")
    if cost_file.exists():
        cost_rows = json.loads(cost_file.read_text())
        w.append("## Cost (default profile, the retrain of the first test day)\n")
        rows = []
        for c in cost_rows:
            if "fit_s" in c:
                rows.append(
                    [
                        c["key"],
                        f"{c['train_rows']:,}",
                        _f(c["fit_s"], 2),
                        f"{c['fit_extra_peak_mb']:.0f}",
                        f"{c['peak_rss_fit_mb']:.0f}",
                        _f(c["predict_us_per_row_b1"], 1),
                        _f(c["predict_us_per_row_b256"], 2),
                        _f(c["predict_us_per_row_b2000"], 2),
                        _f(c.get("shap_us_per_row_b100"), 1),
                    ]
                )
            else:
                rows.append(
                    [
                        c["key"],
                        "online",
                        f"{c['learn_us_per_row']:.0f} µs/row learn",
                        "\u2013",
                        "\u2013",
                        _f(c["predict_us_per_row_one_by_one"], 1),
                        "\u2013",
                        "\u2013",
                        "\u2013",
                    ]
                )
        w += _table(
            [
                "candidate",
                "train rows",
                "fit s (1 thread)",
                "fit peak RSS over start (MB)",
                "process peak RSS (MB)",
                "predict µs/row, 1 row",
                "predict µs/row, batch 256",
                "predict µs/row, batch 2000",
                "pred_contrib µs/row (batch 100)",
            ],
            rows,
        )
        w.append("")
    key = gain_model
    gains = {
        p: r["candidates"][key]["gain"]
        for p, r in results.items()
        if "gain" in r["candidates"].get(key, {})
    }
    if gains:
        w.append(f"## LightGBM importance (gain share, {key}, mean of the 7 test-day models)\n")
        ref = gains.get("default") or next(iter(gains.values()))
        top = sorted(ref, key=lambda n: -ref[n])[:15]
        w += _table(
            ["feature", *gains], [[n, *(f"{g[n]:.1%}" for g in gains.values())] for n in top]
        )
        w.append("")
    if outro is not None:
        w.append(outro.read_text().rstrip())
    out.write_text("\n".join(w) + "\n")
    say(f"wrote {out}")


def say(text: str) -> None:
    print(f"[model_choice {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    cli()
