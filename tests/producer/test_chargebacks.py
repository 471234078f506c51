"""Chargebacks: late, incomplete, sometimes wrong; valid v1 labels in event-time order."""

from __future__ import annotations

import io
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from itertools import islice
from typing import Any

import orjson
import pytest

from fraudwatch.contract import FraudLabel, epoch_ms, parse_label
from producer.chargebacks import (
    DAY_MS,
    MAX_DELAY_DAYS,
    REVERSAL_DAYS,
    ChargebackConfig,
    ChargebackStream,
    LogNormalDelay,
)
from producer.records import MALFORMED, Record

Make = Callable[..., list[Record]]


class Run:
    """One stream over some records, everything it yielded and wrote, and what they mean."""

    def __init__(self, records: list[Record], **config: Any) -> None:
        # Reissued card numbers are the CLI's test; here the stream must pass records through.
        settings: dict[str, Any] = {"seed": 3, "reissue": False, **config}
        self.file = io.BytesIO()
        self.stream = ChargebackStream(ChargebackConfig(**settings), out=self.file)
        self.out = list(self.stream.interleave(iter(records)))
        self.counts = self.stream.finish(sent=len(records))
        self.lines = self.file.getvalue().splitlines()
        self.labels = [parse_label(line) for line in self.lines]
        self.txns = {
            orjson.loads(r.value)["transaction_id"]: r
            for r in records
            if r.label is None or r.label.scenario != MALFORMED
        }


@pytest.fixture(scope="module")
def fraud_records(population: Any) -> list[Record]:
    from producer.traffic import TrafficConfig, TrafficSimulator
    from tests.producer.conftest import START_MS

    simulator = TrafficSimulator(
        population, TrafficConfig(seed=8, start_ms=START_MS, fraud_ratio=0.05, bad_ratio=0.005)
    )
    return list(islice(simulator.records(), 80_000))


@pytest.fixture(scope="module")
def default_run(fraud_records: list[Record]) -> Run:
    return Run(fraud_records, false_dispute_rate=0.01)


def _delay_days(label: FraudLabel) -> float:
    return (epoch_ms(label.reported_at) - epoch_ms(label.timestamp)) / DAY_MS


def test_delays_have_the_configured_median_and_95th_percentile() -> None:
    delay = LogNormalDelay(5.0, 30.0)
    rng = random.Random(1)
    days = sorted(delay.draw_ms(rng) / DAY_MS for _ in range(40_000))
    assert statistics.median(days) == pytest.approx(5.0, rel=0.05)
    assert days[int(0.95 * len(days))] == pytest.approx(30.0, rel=0.08)
    assert days[0] > 0
    assert days[-1] <= MAX_DELAY_DAYS
    assert days[int(0.99 * len(days))] > 45  # the long tail
    assert delay.quantile_days(0.5) == pytest.approx(5.0)
    assert delay.quantile_days(0.95) == pytest.approx(30.0)


@pytest.mark.parametrize(("median", "p95"), [(0, 5), (5, 5), (10, 5), (30, 121)])
def test_impossible_delay_settings_are_refused(median: float, p95: float) -> None:
    with pytest.raises(ValueError, match="median"):
        ChargebackConfig(seed=1, delay_median_days=median, delay_p95_days=p95)


def test_every_chargeback_is_a_valid_v1_label_about_a_sent_transaction(default_run: Run) -> None:
    assert len(default_run.labels) > 1000
    for line, label in zip(default_run.lines, default_run.labels, strict=True):
        assert orjson.loads(line) == label.to_json_dict()  # the contract's wire form exactly
        txn = orjson.loads(default_run.txns[label.transaction_id].value)
        assert label.source == "chargeback"
        assert label.card_number == txn["card_number"]
        assert label.card_token is None
        assert (label.merchant_id, label.amount, label.currency) == (
            txn["merchant_id"], txn["amount"], txn["currency"],
        )  # fmt: skip
        assert label.to_json_dict()["timestamp"] == txn["timestamp"]
        assert label.reported_at > label.timestamp


def test_fraud_is_reported_late_with_the_configured_delays(default_run: Run) -> None:
    by_victim: dict[tuple[str, str], set[float]] = defaultdict(set)
    for label in default_run.labels:
        record = default_run.txns[label.transaction_id]
        if label.label == "fraud" and record.label is not None:
            gap_ms = epoch_ms(label.reported_at) - record.ts_ms
            by_victim[(record.label.story_id, record.label.account_id)].add(gap_ms)
    assert all(len(gaps) == 1 for gaps in by_victim.values())  # one dispute per victim
    days = sorted(gap / DAY_MS for (gap,) in by_victim.values())
    assert len(days) > 300
    assert 3.5 < statistics.median(days) < 7.0
    assert 15 < days[int(0.95 * len(days))] < 60
    assert days[-1] <= MAX_DELAY_DAYS


def test_about_coverage_of_the_fraud_is_ever_reported_victim_by_victim(
    fraud_records: list[Record],
) -> None:
    run = Run(fraud_records, coverage=0.7)
    reported = {x.transaction_id for x in run.labels if x.label == "fraud"}
    victims: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for record in fraud_records:
        label = record.label
        if label is None or label.scenario == MALFORMED:
            continue
        txn = orjson.loads(record.value)
        if txn["amount"] == 0:
            assert txn["transaction_id"] not in reported  # a verification moved no money
            continue
        victims[(label.story_id, label.account_id)].append(txn["transaction_id"] in reported)
    assert all(len(set(flags)) == 1 for flags in victims.values())  # all or nothing
    covered = [flags[0] for flags in victims.values()]
    assert len(covered) > 300
    assert sum(covered) / len(covered) == pytest.approx(0.7, abs=0.06)


def test_some_genuine_transactions_are_disputed_and_some_disputes_reversed(
    default_run: Run,
) -> None:
    genuine = [r for r in default_run.txns.values() if r.label is None]
    disputed = {
        x.transaction_id: x
        for x in default_run.labels
        if x.label == "fraud" and default_run.txns[x.transaction_id].label is None
    }
    reversals = [x for x in default_run.labels if x.label == "genuine"]
    assert len(disputed) / len(genuine) == pytest.approx(0.01, rel=0.15)
    assert len(reversals) / len(disputed) == pytest.approx(0.5, abs=0.1)
    assert default_run.counts.false_disputes == len(disputed)
    for reversal in reversals:
        dispute = disputed[reversal.transaction_id]
        waited = (epoch_ms(reversal.reported_at) - epoch_ms(dispute.reported_at)) / DAY_MS
        assert REVERSAL_DAYS[0] <= waited <= REVERSAL_DAYS[1]


def test_chargebacks_come_in_event_time_order_between_the_transactions(
    fraud_records: list[Record], default_run: Run
) -> None:
    out = default_run.out
    assert [r for r in out if not r.chargeback] == fraud_records  # untouched, same order
    times = [r.ts_ms for r in out]
    assert times == sorted(times)
    sent = [r for r in out if r.chargeback]
    assert len(sent) == default_run.counts.emitted > 100
    position = {
        orjson.loads(r.value)["transaction_id"]: i
        for i, r in enumerate(out)
        if not r.chargeback and (r.label is None or r.label.scenario != MALFORMED)
    }
    for i, record in enumerate(out):
        if record.chargeback:
            label = parse_label(record.value)
            assert epoch_ms(label.reported_at) == record.ts_ms
            assert position[label.transaction_id] < i
            assert record.key == default_run.txns[label.transaction_id].key  # the account


def test_the_file_has_every_chargeback_by_reported_at_even_those_after_the_end(
    default_run: Run,
) -> None:
    counts = default_run.counts
    reported = [x.reported_at for x in default_run.labels]
    assert reported == sorted(reported)
    assert counts.written == len(default_run.lines) == counts.emitted + counts.after_end
    assert counts.after_end > 0
    emitted = [r.value for r in default_run.out if r.chargeback]
    assert default_run.lines[: len(emitted)] == emitted


def test_a_transaction_the_sender_did_not_send_gets_no_chargeback(make_records: Make) -> None:
    records = make_records(50)
    for sent, expected in ((10, 10), (9, 9)):
        stream = ChargebackStream(ChargebackConfig(seed=1, false_dispute_rate=1.0), emit=False)
        taken = list(islice(stream.interleave(iter(records)), 10))
        assert len(taken) == 10
        assert stream.finish(sent=sent).false_disputes == expected


def test_a_sender_stopping_at_a_chargeback_leaves_one_per_transaction_sent(
    make_records: Make,
) -> None:
    every_one_disputed_within_minutes = ChargebackConfig(
        seed=1,
        false_dispute_rate=1.0,
        reversal_share=0.0,
        delay_median_days=0.001,
        delay_p95_days=0.002,
    )
    stream = ChargebackStream(every_one_disputed_within_minutes)
    sent = 0
    for record in stream.interleave(iter(make_records(500))):
        if record.chargeback:
            break
        sent += 1
    assert 0 < sent < 500
    assert stream.finish(sent=sent).false_disputes == sent


def test_the_same_seed_gives_the_same_chargebacks(fraud_records: list[Record]) -> None:
    assert Run(fraud_records).lines == Run(fraud_records).lines
    assert Run(fraud_records).lines != Run(fraud_records, seed=4).lines


def test_more_coverage_reports_the_same_victims_and_more(fraud_records: list[Record]) -> None:
    def fraud_ids(coverage: float) -> set[str]:
        run = Run(fraud_records, coverage=coverage, false_dispute_rate=0.0)
        return {x.transaction_id for x in run.labels}

    assert fraud_ids(0.5) < fraud_ids(0.8) < fraud_ids(1.0)


def test_without_emit_nothing_is_handed_to_the_sender(fraud_records: list[Record]) -> None:
    stream = ChargebackStream(ChargebackConfig(seed=3, reissue=False), emit=False, out=io.BytesIO())
    assert list(stream.interleave(iter(fraud_records))) == fraud_records
    counts = stream.finish(sent=len(fraud_records))
    assert counts.emitted == 0
    assert counts.written == counts.fraud_reported + counts.false_disputes + counts.reversals
    assert 0 < counts.after_end < counts.written
