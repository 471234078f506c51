"""The learning loop on the real stack: dataflow -> feature log -> trainer -> registry -> dataflow.

A small labelled history is fed in time order, day by day: each day's decision is made by the
trainer process from the feature log the dataflow wrote, published to MongoDB, and loaded by
the dataflow before the transactions it applies to. The live system must then give exactly
the backtest's decisions and scores (the backtest is the oracle), with at least one model
promoted and swapped in while running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflows.backtest import Learning, run_backtest
from dataflows.detection.policy import operating_point_doc
from dataflows.detection.ruleset import DEFAULT_RULES_FILE, load_ruleset
from dataflows.detection.training import DAY_MS, Decision, Trainer
from dataflows.settings import LearningSettings
from devtools.stack import REPO_ROOT
from fraudwatch.contract import epoch_ms, format_ts
from tests.integration.pipeline import (
    TOKEN_KEY,
    PipelineEnv,
    consume_all,
    produce,
    recovery_args,
)

pytestmark = pytest.mark.integration

START = "2026-10-01T00:00:00Z"
DAYS = 8
GRACE_H = 6  # a day's decision scores from 06:00; the feed stops there to let it load
LEARNING_ENV = {
    "ALERT_BUDGET_CARDS_PER_DAY": "10",
    "TRAINER_GRACE_MINUTES": str(GRACE_H * 60),
    "TRAINER_MIN_FRAUDS": "10",
    "FEATURE_LOG_SEED": "11",
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Eight days of labelled traffic; each chargeback reported at the next 06:00 boundary,
    so that every label falls between two feeds (see the module docstring)."""
    folder = tmp_path_factory.mktemp("learning")
    rules = folder / "rules.toml"
    text = DEFAULT_RULES_FILE.read_text()
    assert "label_delay_days = 7" in text
    rules.write_text(text.replace("label_delay_days = 7", "label_delay_days = 1"))
    subprocess.run(
        [sys.executable, "-m", "producer", "generate", "--cards", "800", "--days", str(DAYS),
         "--seed", "5", "--fraud-ratio", "0.04", "--bad-ratio", "0", "--start", START,
         "--rate", "max", "--out", str(folder / "tx.jsonl"), "--labels-out",
         str(folder / "truth.jsonl"), "--chargebacks-out", str(folder / "cb.jsonl"),
         "--chargeback-delay-days", "0.3,1.5", "--no-kafka"],
        check=True, cwd=REPO_ROOT, capture_output=True,
    )  # fmt: skip
    start = epoch_ms(datetime.fromisoformat(START))
    bounds = [start + d * DAY_MS + GRACE_H * 3_600_000 for d in range(DAYS + 1)]
    labels: dict[int, list[bytes]] = {}
    for line in (folder / "cb.jsonl").read_bytes().splitlines():
        cb = orjson.loads(line)
        reported = epoch_ms(datetime.fromisoformat(cb["reported_at"].replace("Z", "+00:00")))
        k = next((i for i, b in enumerate(bounds) if b >= reported), None)
        if k is None:
            continue  # reported after the history ends
        cb["reported_at"] = format_ts(datetime.fromtimestamp(bounds[k] / 1000, UTC))
        labels.setdefault(k, []).append(orjson.dumps(cb))
    chunks: list[list[bytes]] = [[] for _ in bounds]
    for line in (folder / "tx.jsonl").read_bytes().splitlines():
        ts = epoch_ms(
            datetime.fromisoformat(orjson.loads(line)["timestamp"].replace("Z", "+00:00"))
        )
        chunks[next(i for i, b in enumerate(bounds) if ts < b)].append(line)
    return {"rules": rules, "labels": labels, "chunks": chunks}


def oracle(history: dict[str, Any]) -> tuple[dict[str, tuple[float, str]], list[Decision]]:
    ruleset = load_ruleset(history["rules"])
    settings = LearningSettings(**{k.lower(): v for k, v in LEARNING_ENV.items()})
    decisions: list[Decision] = []
    learning = Learning(
        Trainer(settings.training(ruleset)),
        settings.sampler(ruleset.score.prior),
        decisions.append,
    )
    values = [line for chunk in history["chunks"] for line in chunk]
    labels = [line for k in sorted(history["labels"]) for line in history["labels"][k]]
    dead: Counter[str] = Counter()
    scores = {
        o.event.transaction_id: (o.score, o.model_version)
        for o in run_backtest(values, ruleset, TOKEN_KEY, dead, labels, learning=learning)
        if o.score is not None
    }
    assert not dead
    return scores, decisions


def run_trainer(pipe: PipelineEnv, log: Path, env: dict[str, str]) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "dataflows.trainer"],
            env=pipe.env(**env, TRAINER_STOP_AT_END="1", TRAINER_METRICS_PORT="0"),
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=180, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.fixture
def pipe1(bootstrap: str, mongo_settings: Any, mongo_client: Any) -> Iterator[PipelineEnv]:
    """Like ``pipe``, with one input partition: the feature log then keeps the input order."""
    env = PipelineEnv(bootstrap, mongo_settings.mongodb_uri)
    env.create_topics(partitions=1)
    yield env
    env.delete_topics()
    mongo_client.drop_database(env.db)


def test_the_trainer_retrains_and_the_dataflow_swaps_models_like_the_backtest(
    pipe1: PipelineEnv, mongo_client: Any, tmp_path: Path, history: dict[str, Any]
) -> None:
    pipe = pipe1
    env = {**LEARNING_ENV, "FRAUD_RULES_FILE": str(history["rules"]), "FRAUD_WRITE_SCORES": "1",
           "FRAUD_MODEL_POLL_S": "0.2"}  # fmt: skip
    flow_log, trainer_log = tmp_path / "dataflow.log", tmp_path / "trainer.log"
    args = recovery_args(tmp_path / "recovery")
    for k, chunk in enumerate(history["chunks"]):
        # Labels reported at this feed's start, consumed before its transactions.
        if k > 0 and history["labels"].get(k - 1):
            produce(pipe.bootstrap, pipe.labels, history["labels"][k - 1])
            assert pipe.run_to_end(flow_log, *args, timeout=120, **env) == 0, flow_log.read_text()[
                -3000:
            ]
        produce(pipe.bootstrap, pipe.tx, chunk)
        assert pipe.run_to_end(flow_log, *args, timeout=120, **env) == 0, flow_log.read_text()[
            -3000:
        ]
        # The trainer decides the day this feed reached; the next run loads it at its start.
        run_trainer(pipe, trainer_log, env)

    expected_scores, decisions = oracle(history)
    db = mongo_client[pipe.db]
    got = {}
    alerted_cards: dict[str, set[str]] = {}
    for _key, value in consume_all(pipe.bootstrap, pipe.scores):
        doc = json.loads(value)
        got[doc["transaction_id"]] = (doc["score"], doc["model_version"])
        if doc["alerted"]:
            alerted_cards.setdefault(doc["timestamp"][:10], set()).add(doc["card_token"])
    wrong = {t: (got.get(t), want) for t, want in expected_scores.items() if got.get(t) != want}
    assert not wrong, f"{len(wrong)} scores differ, e.g. {sorted(wrong.items())[:5]}"
    assert set(got) == set(expected_scores)
    points = {d["_id"]: d for d in db.operating_points.find()}
    # Severity bands travel with the point, so the live run grades alerts as the backtest does.
    assert {
        p: (d["model_version"], d["threshold"], d["effective_ms"], d.get("severity_bands"))
        for p, d in points.items()
    } == {
        d.point.day: (
            d.point.version,
            d.point.threshold,
            d.point.effective_ms,
            operating_point_doc(d.point).get("severity_bands"),
        )
        for d in decisions
    }
    promoted = [d for d in decisions if d.model_text is not None]
    assert promoted, "the history is meant to promote at least one trained model"
    assert {m["_id"] for m in db.model_files.find()} == {d.point.version for d in promoted}
    # A trained model scored transactions in the live run: the hot swap happened.
    used = Counter(version for _, version in got.values())
    assert any(v.startswith("gbm-") for v in used), used
    # Model health counts every alerted card of each day (alerted rows are always logged).
    health = {h["_id"]: h["alerted_cards"] for h in db.model_health.find()}
    assert health == {day: len(cards) for day, cards in alerted_cards.items()} | {
        day: 0 for day in health if day not in alerted_cards
    }
    assert operating_point_doc(decisions[-1].point)["_id"] in points
