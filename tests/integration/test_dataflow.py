"""The dataflow process against the real Kafka broker and MongoDB-protocol server."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.factories import find_pans, make_chargeback, make_txn, traffic
from tests.integration.pipeline import (
    PipelineEnv,
    consume_all,
    essentials,
    free_port,
    oracle,
    produce,
    recovery_args,
    wait_for,
)

BAD = [
    b"{broken",
    b"\xff\xfe\x00",
    b"null",
    b"[1,2]",
    b'{"amount": NaN}',
    json.dumps(make_txn(transaction_id="neg", amount=-5)).encode(),
    json.dumps(make_txn(transaction_id="naive", timestamp="2026-01-01T10:00:00")).encode(),
    json.dumps(make_txn(transaction_id="huge", amount=1e12)).encode(),
    b"x" * (70 * 1024),
]


def test_pipeline_alerts_equal_the_backtest_and_bad_input_is_dead_lettered_once(
    pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    values = traffic(cards=30, per_card=12)
    mixed = values[:100] + BAD + values[100:]
    produce(pipe.bootstrap, pipe.tx, mixed)
    log = tmp_path / "dataflow.log"

    assert pipe.run_to_end(log) == 0, log.read_text()[-3000:]

    expected = oracle(mixed)
    assert len(expected) > 20
    kafka_alerts = {}
    for key, value in consume_all(pipe.bootstrap, pipe.alerts):
        a = json.loads(value)
        assert key.decode() == a["card_token"]
        kafka_alerts[a["alert_id"]] = a
    db = mongo_client[pipe.db]
    mongo_alerts = {d["_id"]: d for d in db.alerts.find()}
    assert set(mongo_alerts) == set(expected), "MongoDB's alerts differ from the backtest's"
    assert set(kafka_alerts) == set(expected), "fraud-alerts differs from the backtest's alerts"
    for aid, a in expected.items():
        assert essentials(kafka_alerts[aid]) == essentials(a)
        assert essentials({**mongo_alerts[aid], "evidence": mongo_alerts[aid]["evidence"]}) == (
            essentials(a)
        )

    dead = [json.loads(v) for _, v in consume_all(pipe.bootstrap, pipe.dlq)]
    assert len(dead) == len(BAD)
    assert sorted(base64.b64decode(d["value_b64"]) for d in dead) == sorted(
        b[: 64 * 1024] for b in BAD
    )
    oversized = next(d for d in dead if d["reason"] == "oversized")
    assert oversized["value_length"] == 70 * 1024
    assert oversized["value_truncated"] is True

    stats = list(db.alert_stats.find())
    assert sum(d["transactions"] for d in stats) == len(values)
    assert sum(d["alerts"] for d in stats) == len(expected)

    # No card number anywhere downstream of the first step.
    pans = {json.loads(v)["card_number"] for v in values}
    assert find_pans(list(mongo_alerts.values())) == []
    assert find_pans(stats) == []
    assert find_pans(list(kafka_alerts.values())) == []
    logs = log.read_text()
    assert not any(p in logs for p in pans)
    assert find_pans([json.loads(line) for line in logs.splitlines() if line.startswith("{")]) == []


@pytest.mark.parametrize("layout", ["two_workers", "two_processes"])
def test_workers_and_processes_give_the_same_alerts_as_one_worker(
    layout: str, pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    values = traffic(cards=60, per_card=12)
    produce(pipe.bootstrap, pipe.tx, values)
    expected = oracle(values)
    log = tmp_path / "dataflow.log"
    if layout == "two_workers":
        assert pipe.run_to_end(log, "-w", "2") == 0, log.read_text()[-3000:]
    else:
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        procs = [
            pipe.start(log, "-i", str(i), "-a", addresses, FRAUD_STOP_AT_END="1") for i in (0, 1)
        ]
        for p in procs:
            assert p.wait(timeout=180) == 0, log.read_text()[-3000:]
    db = mongo_client[pipe.db]
    got = {d["_id"]: d for d in db.alerts.find()}
    assert set(got) == set(expected)
    for aid, a in expected.items():
        assert essentials(got[aid]) == essentials(a)
    assert sum(d["transactions"] for d in db.alert_stats.find()) == len(values)


def test_stop_at_end_finishes_when_some_input_partitions_are_empty(
    pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    values = traffic(cards=1, per_card=6)  # one card: one key, so one of three partitions
    produce(pipe.bootstrap, pipe.tx, values)
    log = tmp_path / "dataflow.log"
    assert pipe.run_to_end(log, timeout=60) == 0, log.read_text()[-3000:]
    stats = mongo_client[pipe.db].alert_stats.find()
    assert sum(d["transactions"] for d in stats) == len(values)


def test_stop_at_end_resumed_from_recovery_finishes_on_partitions_never_read(
    pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    # The labels topic stays empty: its partitions snapshot "from the beginning", and a
    # resumed stop-at-end run must still see that they hold nothing (it used to wait forever).
    values = traffic(cards=1, per_card=6)
    produce(pipe.bootstrap, pipe.tx, values)
    args = recovery_args(tmp_path / "recovery")
    log = tmp_path / "dataflow.log"
    assert pipe.run_to_end(log, *args, timeout=60) == 0, log.read_text()[-3000:]
    assert pipe.run_to_end(log, *args, timeout=60) == 0, log.read_text()[-3000:]
    stats = mongo_client[pipe.db].alert_stats.find()
    assert sum(d["transactions"] for d in stats) == len(values)


def test_labels_on_the_topic_make_the_pipeline_score_like_the_backtest(
    pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    """Labels replayed before the transactions they affect: stream == backtest, alert for alert."""
    values = traffic()
    labels = [
        chargeback(2, "c2-t0", "2025-11-25T10:06:00Z"),
        chargeback(7, "c7-t1", "2025-11-25T10:03:00Z"),
        chargeback(7, "c7-t1", "2025-11-25T10:10:00Z", verdict="genuine"),
        b'{"not": "a label"}',
    ]
    produce(pipe.bootstrap, pipe.labels, labels)
    log = tmp_path / "dataflow.log"
    args = recovery_args(tmp_path / "recovery")
    # The labels first (a stop-at-end run over the labels alone keeps them in its recovered
    # state), then the transactions: labels consumed before the transactions they affect, as
    # a time-ordered replay has them.
    assert pipe.run_to_end(log, *args, timeout=60) == 0, log.read_text()[-3000:]
    produce(pipe.bootstrap, pipe.tx, values)
    assert pipe.run_to_end(log, *args, timeout=120) == 0, log.read_text()[-3000:]
    expected = oracle(values, labels)
    got = {d["_id"]: d for d in mongo_client[pipe.db].alerts.find()}
    assert set(got) == set(expected)
    for aid, a in expected.items():
        assert essentials(got[aid]) == essentials(a)
    compromised = {a["transaction_id"] for a in got.values() if "compromised_card" in a["rules"]}
    assert compromised == {f"c2-t{i}" for i in range(4, 12)} | {f"c7-t{i}" for i in range(2, 7)}
    dead = [json.loads(v) for _, v in consume_all(pipe.bootstrap, pipe.dlq)]
    assert [(d["topic"], d["reason"]) for d in dead] == [(pipe.labels, "invalid_label")]
    assert find_pans(list(got.values())) == []


def chargeback(card: int, tx: str, reported: str, verdict: str = "fraud") -> bytes:
    return json.dumps(make_chargeback(card, tx, reported, verdict)).encode()


def test_stop_at_end_confirms_the_end_and_drains_what_arrived_after_start(
    pipe: PipelineEnv,
) -> None:
    from dataflows.io.kafka_io import TransactionSource

    first, later = traffic(cards=1, per_card=4), traffic(cards=1, per_card=3, start=1_800_000_000)
    produce(pipe.bootstrap, pipe.tx, first)
    source = TransactionSource(pipe.bootstrap, pipe.tx, batch_size=1, stop_at_end=True)
    part = next(  # the one partition that holds the card's messages
        p for p in (source.build_part("in", f"{i}-{pipe.tx}", None) for i in range(3)) if not p._eof
    )
    try:
        produce(pipe.bootstrap, pipe.tx, later)  # after the end was taken
        got: list = []
        deadline = time.monotonic() + 30
        while True:
            try:
                got += part.next_batch()
            except StopIteration:
                break
            assert time.monotonic() < deadline, f"not at the end after 30 s: {len(got)} read"
        assert [r.value for r in got] == first + later
    finally:
        part.close()


def test_missing_input_topic_fails_fast_with_a_clear_message(
    pipe: PipelineEnv, tmp_path: Path
) -> None:
    log = tmp_path / "dataflow.log"
    code = pipe.run_to_end(log, TRANSACTIONS_TOPIC=f"missing-{pipe.tag}", timeout=60)
    assert code != 0
    assert "is not available" in log.read_text()


def test_unreachable_mongodb_fails_fast_with_a_clear_message(
    pipe: PipelineEnv, tmp_path: Path
) -> None:
    log = tmp_path / "dataflow.log"
    produce(pipe.bootstrap, pipe.tx, traffic(cards=2, per_card=2))
    code = pipe.run_to_end(
        log,
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}",
        MONGODB_TIMEOUT_MS="1000",
        timeout=60,
    )
    assert code != 0
    assert "MongoDB is not reachable" in log.read_text()


def test_metrics_count_inputs_dead_letters_and_alerts(pipe: PipelineEnv, tmp_path: Path) -> None:
    import urllib.request

    values = traffic(cards=6, per_card=8)
    produce(pipe.bootstrap, pipe.tx, [*values, *BAD[:3]])
    port = free_port()
    log = tmp_path / "dataflow.log"
    proc = pipe.start(log, BYTEWAX_DATAFLOW_API_ENABLED="1", BYTEWAX_DATAFLOW_API_PORT=str(port))
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                return None
            expected = (
                f"fraudwatch_transactions_in_total {float(len(values) + 3)}",
                f"fraudwatch_transactions_valid_total {float(len(values))}",
                'fraudwatch_dead_lettered_total{reason="invalid_json"} 1.0',
            )
            return text if all(e in text for e in expected) else None

        text = wait_for(scrape, 60, "the metrics endpoint to count every input")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    assert "fraudwatch_alerts_total" in text
    pans = {json.loads(v)["card_number"] for v in values}
    assert not any(p in text for p in pans)
