"""``python -m dataflows.backtest``: one score (and feature row) per valid transaction, labels
applied at their reported time, the alerts the stream would raise."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from click.testing import CliRunner

from dataflows.backtest import main
from dataflows.detection.features import FEATURE_NAMES
from tests.factories import make_chargeback, traffic


def test_scores_features_and_alerts_cover_every_valid_transaction_once(tmp_path: Path) -> None:
    values = traffic()
    tx = tmp_path / "tx.jsonl"
    tx.write_bytes(b"\n".join([*values, values[0], b"{broken"]) + b"\n")  # a re-send, a bad one
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps(make_chargeback(2, "c2-t0", "2025-11-25T10:06:00Z")) + "\n" + '{"bad": 1}\n'
    )
    result = CliRunner().invoke(
        main,
        [str(tx), "--labels", str(labels), "--scores-out", str(tmp_path / "s.jsonl"),
         "--features-out", str(tmp_path / "f.jsonl"), "-o", str(tmp_path / "a.jsonl")],
        env={"FRAUD_TOKEN_KEY": "backtest-test-key"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = [json.loads(v)["transaction_id"] for v in values]
    scores = [orjson.loads(x) for x in (tmp_path / "s.jsonl").read_bytes().splitlines()]
    assert [s["transaction_id"] for s in scores] == ids
    assert all(0 < s["score"] < 1 for s in scores)
    rows = [orjson.loads(x) for x in (tmp_path / "f.jsonl").read_bytes().splitlines()]
    assert [r["transaction_id"] for r in rows] == ids
    assert tuple(k for k in rows[0] if k != "transaction_id") == FEATURE_NAMES
    alerts = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert {a["transaction_id"] for a in alerts} == {s["transaction_id"] for s in scores
                                                     if s["alerted"]}  # fmt: skip
    compromised = {a["transaction_id"] for a in alerts if a["reasons"][0]["rule"] ==
                   "compromised_card"}  # fmt: skip
    assert compromised == {f"c2-t{i}" for i in range(4, 12)}
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["invalid"] == {"invalid_json": 1, "label:invalid_label": 1}
