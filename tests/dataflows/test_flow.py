"""The Bytewax flow with TestingSource/TestingSink: wiring, dead letters, stats, recovery."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.backtest import run_backtest
from dataflows.detection.ruleset import load_ruleset
from dataflows.fraud import STEP_IDS, Sinks, build_flow
from dataflows.settings import DataflowSettings
from dataflows.validation import RawRecord
from tests.factories import find_pans, make_chargeback, make_txn, traffic

KEY = "test-token-key"
BAD = [
    b"{broken",
    b"\xff\xfe",
    b"null",
    b"[]",
    json.dumps(make_txn(amount=-1)).encode(),
    json.dumps(make_txn(timestamp="2026-11-25T10:00:00")).encode(),
    json.dumps(make_txn(currency="XXX")).encode(),
]


def records(values: list[bytes]) -> list[RawRecord]:
    return [RawRecord("in", 0, i, 1_000 + i, v) for i, v in enumerate(values)]


def settings(**kw) -> DataflowSettings:
    return DataflowSettings(fraud_token_key=KEY, **kw)


def run_flow(recs, labels: list[RawRecord] | None = None, **kw):
    outs: dict[str, list] = {k: [] for k in ("ak", "am", "sm", "dlq", "scores")}
    sinks = Sinks(*(TestingSink(outs[k]) for k in ("ak", "am", "sm", "dlq", "scores")))
    flow = build_flow(
        settings(),
        source=TestingSource(recs, batch_size=7),
        sinks=sinks,
        labels_source=TestingSource(labels or []),
    )
    run_main(flow, **kw)
    for k in ("am", "sm"):  # MongoDB sinks get (routing key, document)
        outs[k] = [doc for _key, doc in outs[k]]
    return outs


def oracle(values: list[bytes], labels: Sequence[bytes] = ()) -> dict[str, dict]:
    dead: Counter[str] = Counter()
    return {
        o.alert.alert_id: o.alert.to_json_dict()
        for o in run_backtest(values, load_ruleset(), KEY, dead, labels)
        if o.alert
    }


def comparable(alert: dict) -> tuple:
    return (alert["score"], alert["severity"], json.dumps(alert["reasons"]), alert["evidence"])


def test_step_ids_are_pinned_because_renaming_one_drops_its_recovery_state() -> None:
    sinks = Sinks(*(TestingSink([]) for _ in range(6)))
    flow = build_flow(settings(), source=TestingSource([]), sinks=sinks)
    assert [s.step_id for s in flow.substeps] == [
        f"fraudwatch.{step}"
        for step in (
            "transactions_in",
            "validate",
            "split_valid",
            "dead_letters",
            "dlq_out",
            "labels_in",
            "validate_labels",
            "split_labels",
            "label_dead_letters",
            "labels_dlq_out",
            "label_to_cards",
            "label_to_merchants",
            "card_input",
            "card_shards",
            "verdicts",
            "by_merchant",
            "merchant_input",
            "merchant_shards",
            "judged",
            "score",
            "alerts",
            "alert_json",
            "alerts_kafka_out",
            "alert_docs",
            "alerts_mongo_out",
            "score_json",
            "scores_out",
            "feature_rows",
            "features_out",
            "stats_by_batch",
            "minute_stats",
            "stats_mongo_out",
        )
    ]
    assert len(STEP_IDS) == len(set(STEP_IDS)) == len(flow.substeps)


def test_alerts_equal_the_backtest_oracle_and_bad_input_is_dead_lettered_once() -> None:
    values = traffic()
    mixed = values[:30] + BAD + values[30:]
    outs = run_flow(records(mixed))
    expected = oracle(mixed)
    assert expected, "the traffic must make some rules fire"
    got_kafka = {json.loads(m.value)["alert_id"]: json.loads(m.value) for m in outs["ak"]}
    got_mongo = {d["_id"]: d for d in outs["am"]}
    assert set(got_kafka) == set(expected) == set(got_mongo)
    for aid, a in expected.items():
        assert comparable(got_kafka[aid]) == comparable(a)
    dead = [json.loads(m.value) for m in outs["dlq"]]
    assert sorted(base64.b64decode(d["value_b64"]) for d in dead) == sorted(BAD)
    assert Counter(d["reason"] for d in dead) == Counter(
        {
            "invalid_json": 1,
            "invalid_encoding": 1,
            "not_an_object": 2,
            "invalid_transaction": 2,
            "unsupported_currency": 1,
        }
    )
    assert all(d["offset"] in range(30, 30 + len(BAD)) for d in dead)


def chargeback(card: int, tx: str, reported: str, verdict: str = "fraud") -> bytes:
    return json.dumps(make_chargeback(card, tx, reported, verdict)).encode()


def test_labels_make_the_stream_alert_like_the_backtest_and_bad_labels_are_dead_lettered() -> None:
    values = traffic()  # starts 2025-11-25T10:00:00Z, one transaction per card every 90 s
    labels = [
        chargeback(2, "c2-t0", "2025-11-25T10:06:00Z"),
        chargeback(2, "c2-t0", "2025-11-25T10:06:00Z"),  # re-sent: idempotent
        chargeback(5, "c5-t0", "2025-11-25T10:06:00Z"),
        chargeback(5, "c5-t0", "2025-11-25T10:09:00Z", verdict="genuine"),  # reversed
        b'{"transaction_id": "x"}',
    ]
    outs = run_flow(records(values), labels=[RawRecord("labels", 0, i, 1, v) for i, v in
                                               enumerate(labels)])  # fmt: skip
    expected = oracle(values, labels)
    got = {json.loads(m.value)["alert_id"]: json.loads(m.value) for m in outs["ak"]}
    assert set(got) == set(expected)
    for aid, a in expected.items():
        assert comparable(got[aid]) == comparable(a)
    compromised = {
        a["transaction_id"] for a in got.values() if "compromised_card" in json.dumps(a["reasons"])
    }
    assert compromised == {f"c2-t{i}" for i in range(4, 12)} | {"c5-t4", "c5-t5"}
    dead = [json.loads(m.value) for m in outs["dlq"]]
    assert [(d["topic"], d["reason"]) for d in dead] == [("labels", "invalid_label")]


def test_every_valid_transaction_gets_one_score_on_the_scores_sink() -> None:
    values = traffic()
    outs = run_flow(records([*values, values[0]]))  # a re-sent one is scored once
    scores = [json.loads(m.value) for m in outs["scores"]]
    assert sorted(s["transaction_id"] for s in scores) == sorted(
        json.loads(v)["transaction_id"] for v in values
    )
    alerted = {json.loads(m.value)["transaction_id"] for m in outs["ak"]}
    assert {s["transaction_id"] for s in scores if s["alerted"]} == alerted
    assert all(0 < s["score"] < 1 for s in scores)
    assert all(m.key.decode() == json.loads(m.value)["card_token"] for m in outs["scores"])
    assert find_pans(scores) == []


def test_no_card_number_reaches_alerts_or_stats() -> None:
    outs = run_flow(records(traffic()))
    assert outs["ak"]
    pans = {json.loads(v)["card_number"] for v in traffic()}
    for m in outs["ak"]:
        assert find_pans(json.loads(m.value)) == []
        assert not any(p in m.value.decode() for p in pans)
    for d in outs["am"] + outs["sm"]:
        assert find_pans(d) == []


def test_kafka_alert_key_is_the_card_token_and_mongo_id_the_alert_id() -> None:
    outs = run_flow(records(traffic()))
    for m in outs["ak"]:
        a = json.loads(m.value)
        assert m.key.decode() == a["card_token"]
        assert a["status"] == "open"
        assert a["card_masked"].startswith("411111")
        assert a["card_masked"].count("*") == 6


def test_minute_stats_count_every_transaction_and_alert_once() -> None:
    values = traffic()
    outs = run_flow(records(values))
    latest: dict[str, dict] = {}
    for d in outs["sm"]:
        latest[d["_id"]] = d  # later writes of a minute carry its complete counts
    assert sum(d["transactions"] for d in latest.values()) == len(values)
    assert sum(d["alerts"] for d in latest.values()) == len(outs["am"])
    per_rule = Counter(r["rule"] for a in outs["am"] for r in a["reasons"])
    summed: Counter[str] = Counter()
    for d in latest.values():
        summed.update(d["by_rule"])
    assert summed == per_rule


def test_abort_and_resume_with_recovery_gives_the_uninterrupted_alert_set(tmp_path: Path) -> None:
    values = traffic(cards=10, per_card=14)
    recs = records(values)
    expected = {d["_id"] for d in run_flow(recs)["am"]}
    init_db_dir(tmp_path, 1)
    rc = RecoveryConfig(str(tmp_path))
    cut = len(recs) // 2
    # One list for both executions: the ABORT marker fires once, the resume skips it.
    inp = [*recs[:cut], TestingSource.ABORT(), *recs[cut:]]
    first = run_flow(inp, epoch_interval=timedelta(0), recovery_config=rc)
    second = run_flow(inp, epoch_interval=timedelta(0), recovery_config=rc)
    got = {d["_id"] for d in first["am"]} | {d["_id"] for d in second["am"]}
    assert second["am"], "the resumed run must process the second half"
    assert got == expected


@pytest.mark.parametrize("bad", BAD)
def test_every_kind_of_bad_input_leaves_the_flow_running(bad: bytes) -> None:
    values = traffic(cards=3, per_card=8)
    outs = run_flow(records([bad, *values]))
    assert len(outs["dlq"]) == 1
    assert sum(d["transactions"] for d in {x["_id"]: x for x in outs["sm"]}.values()) == len(values)


def test_a_recovery_store_refuses_another_input_topic(tmp_path: Path) -> None:
    from dataflows.run import RecoveryStoreMismatch, ensure_recovery_store

    assert ensure_recovery_store(tmp_path / "r", "topic-a")
    assert not ensure_recovery_store(tmp_path / "r", "topic-a")
    with pytest.raises(RecoveryStoreMismatch, match="topic-a"):
        ensure_recovery_store(tmp_path / "r", "topic-b")


def test_a_recovery_store_refuses_another_shard_count(tmp_path: Path) -> None:
    from dataflows.run import RecoveryStoreMismatch, ensure_recovery_store

    assert ensure_recovery_store(tmp_path / "r", "t", card_shards=256)
    assert not ensure_recovery_store(tmp_path / "r", "t", card_shards=256)
    with pytest.raises(RecoveryStoreMismatch, match="FRAUD_CARD_SHARDS=256"):
        ensure_recovery_store(tmp_path / "r", "t", card_shards=64)


def test_a_recovery_store_with_per_card_state_is_refused_not_resumed_empty(
    tmp_path: Path,
) -> None:
    from dataflows.run import OWNER_FILE, RecoveryStoreMismatch, ensure_recovery_store

    store = tmp_path / "r"
    assert ensure_recovery_store(store, "t")
    (store / OWNER_FILE).write_text(json.dumps({"topic": "t", "partitions": 4}))  # as 2026.11.2
    with pytest.raises(RecoveryStoreMismatch, match="older fraudwatch"):
        ensure_recovery_store(store, "t")
