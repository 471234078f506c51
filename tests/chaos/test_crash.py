"""Crash equivalence, determinism and the retention gap, against the real stack.

The backtest over the same input is the oracle: whatever happens to the process, MongoDB ends
up holding exactly the alerts the backtest computes, once each.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataflows.backtest import run_backtest
from dataflows.detection.ruleset import load_ruleset
from devtools.stack import REPO_ROOT
from fraudwatch import clients
from tests.chaos import scale
from tests.chaos.input import (
    keys_out_of_order,
    ordered_producer,
    produce_in_order,
    read_partitions,
    send_in_order,
)
from tests.factories import traffic
from tests.integration.pipeline import (
    TOKEN_KEY,
    PipelineEnv,
    assert_equals_oracle,
    consume_all,
    oracle,
    produce,
    recovery_args,
    wait_for,
)

pytestmark = pytest.mark.slow

KILLS = scale(5, 8)
LIVE_RECORDS = scale(20_000, 200_000)


def judged(values: list[bytes]) -> int:
    """How many records the backtest judges (all but the dead-lettered ones)."""
    return sum(1 for _ in run_backtest(values, load_ruleset(), TOKEN_KEY, Counter()))


def generated(tmp_path: Path, count: int, cards: int, seed: int) -> list[bytes]:
    """Realistic producer traffic (fraud stories, 0.5 % malformed records), as sent."""
    out = tmp_path / f"generated-{seed}.jsonl"
    subprocess.run(
        [sys.executable, "-m", "producer", "generate", "--no-kafka", "--rate", "max",
         "--count", str(count), "--cards", str(cards), "--seed", str(seed),
         "--start", "2026-11-20T00:00:00Z", "--bad-ratio", "0.005", "--fraud-ratio", "0.02",
         "--out", str(out)],
        check=True, cwd=REPO_ROOT, capture_output=True, timeout=600,
    )  # fmt: skip
    return [line for line in out.read_bytes().split(b"\n") if line]


def _disposition(db: Any, alert_id: str) -> None:
    """Move an alert to investigating through the console's own compare-and-set path."""
    from webapp.data.store import AlertStore

    store = AlertStore(db, queue_window=timedelta(days=1))
    store.change_status(
        alert_id,
        seen="open",
        to="investigating",
        user="chaos",
        comment="taken before the crash",
        now=datetime.now(UTC),
    )


def _confirm_a_case(db: Any, exclude: str) -> tuple[str, set[str]]:
    """Confirm the open case of a card other than ``exclude``'s as the console does: every
    undecided alert of the card, each by compare-and-set, with the case's id on it. Returns
    ("", set()) while no such card has alerts yet."""
    from webapp.data.cases import CaseStore
    from webapp.data.store import AlertStore

    store = AlertStore(db, queue_window=timedelta(days=1))
    taken = db.alerts.find_one({"_id": exclude}, {"card_token": 1}) or {}
    pick = db.alerts.find_one({"card_token": {"$ne": taken.get("card_token")}, "status": "open"})
    if pick is None:
        return "", set()
    case = CaseStore(store).get(pick["_id"])
    assert case is not None
    for a in case.undecided:
        store.change_status(
            a.alert_id,
            seen=a.status,
            to="confirmed_fraud",
            user="chaos",
            comment="confirmed during the crashes",
            now=datetime.now(UTC),
            seen_version=a.status_version,
            case_id=case.case_id,
        )
    return case.case_id, {a.alert_id for a in case.undecided}


def _assert_cases_partition_the_alerts(db: Any, decided: str, members: set[str]) -> int:
    """Every alert is in exactly one case of the case queue, a card has at most one open case,
    and the case decided before the crashes kept exactly its alerts. Returns the case count."""
    from webapp.data.cases import CaseStore
    from webapp.data.store import AlertStore
    from webapp.queries import AlertQuery, Cursor

    store = AlertStore(db, queue_window=timedelta(days=1))
    times = [d["timestamp"] for d in db.alerts.find({}, {"timestamp": 1})]
    start = min(times).replace(tzinfo=UTC) - timedelta(days=1)
    end = max(times).replace(tzinfo=UTC) + timedelta(days=1)
    query = AlertQuery(start=start, end=end)
    listed: list[str] = []
    in_cases: Counter[str] = Counter()
    open_cards: Counter[str] = Counter()
    while True:
        page = CaseStore(store).page(query, 50, datetime.now(UTC))
        for case in page.cases:
            listed.append(case.case_id)
            in_cases.update(a.alert_id for a in case.alerts)
            if case.is_open:
                open_cards[case.card_token] += 1
            if case.case_id == decided:
                assert {a.alert_id for a in case.alerts} == members
                assert case.status == "confirmed_fraud"
        if page.older is None:
            break
        query = AlertQuery(start=start, end=end, before=Cursor(page.older))
    assert len(listed) == len(set(listed)), "a case was listed twice"
    assert decided in listed
    assert set(in_cases) == {d["_id"] for d in db.alerts.find({}, {"_id": 1})}
    assert max(in_cases.values()) == 1, "an alert is in two cases"
    assert max(open_cards.values(), default=1) == 1, "a card has two open cases"
    return len(listed)


class LiveFeed(threading.Thread):
    """Sends ``values`` at ``rate`` per second until told to stop (after at least ``minimum``)."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes], rate: float, minimum: int):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.values = bootstrap, topic, values
        self.rate, self.minimum = rate, minimum
        self.sent = 0
        self.enough = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = ordered_producer(self.bootstrap, self.topic)
            t0 = time.monotonic()
            step = 50
            for i in range(0, len(self.values), step):
                if self.enough.is_set() and i >= self.minimum:
                    break
                chunk = self.values[i : i + step]
                send_in_order(producer, self.topic, chunk)
                self.sent = i + len(self.values[i : i + step])
                ahead = t0 + self.sent / self.rate - time.monotonic()
                if ahead > 0:
                    self.enough.wait(ahead)  # pacing, cut short once the kills are done
        except BaseException as exc:  # reported by the test thread
            self.error = exc


@pytest.mark.timeout(scale(300, 900))  # full size: 600,000 records generated, 8 restarts
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    pipe: PipelineEnv, mongo_client: Any, tmp_path: Path, record_property: Any
) -> None:
    # A live stream that outlasts the kills: each kill lands while input is still arriving.
    minimum = LIVE_RECORDS
    pool = generated(tmp_path, 3 * minimum, cards=minimum // 5, seed=5)
    feed = LiveFeed(pipe.bootstrap, pipe.tx, pool, rate=minimum / (KILLS * 6), minimum=minimum)
    args = recovery_args(tmp_path / "recovery")
    log = tmp_path / "dataflow.log"
    db = mongo_client[pipe.db]
    rng = random.Random(20261125)
    feed.start()

    kills = 0
    disposed: str | None = None
    decided, members = "", set()
    seen = 0
    try:
        while kills < KILLS:
            proc = pipe.start(log, *args)
            try:
                # Progress since the last kill: the restart resumed and writes alerts again.
                floor = seen
                wait_for(
                    lambda f=floor: db.alerts.count_documents({}) > f,  # type: ignore[misc]
                    120,
                    f"progress after restart {kills}",
                )
                # The injected fault: a random moment while the stream is flowing.
                time.sleep(rng.uniform(0.1, 1.5))
                assert proc.poll() is None, f"the dataflow exited before kill {kills + 1}"
                assert feed.is_alive(), f"the input ran out before kill {kills + 1}"
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            kills += 1
            seen = db.alerts.count_documents({})
            if disposed is None:
                disposed = next(iter(db.alerts.find({}, {"_id": 1}).limit(1)))["_id"]
                _disposition(db, disposed)
            if not decided:
                decided, members = _confirm_a_case(db, disposed)
    finally:
        feed.enough.set()
        # The feed sends at least `minimum` records; when the kills were quick, the rest goes
        # out unpaced. Reading the topic before it ends would compare it with a list one chunk
        # short (a chunk of 50 is ~40 keys).
        feed.join(timeout=600)
    assert not feed.is_alive(), "the live feed did not finish sending"
    assert feed.error is None, feed.error
    values = pool[: feed.sent]
    # The oracle judges the list as sent: the topic must hold it in that order, per key.
    assert keys_out_of_order(values, read_partitions(pipe.bootstrap, pipe.tx)) == 0
    expected = oracle(values)
    assert len(expected) > 100

    assert pipe.run_to_end(log, *args, timeout=600) == 0, log.read_text()[-3000:]

    by_id = assert_equals_oracle(db, expected, judged(values))
    assert disposed is not None
    assert by_id[disposed]["status"] == "investigating"
    # Cases are read from the alerts: the replays after each kill neither split nor
    # duplicated one, and the case confirmed between two kills kept exactly its alerts.
    assert decided, "no case was decided between the kills"
    cases = _assert_cases_partition_the_alerts(db, decided, members)

    # At-least-once on Kafka: replays after a kill may re-send alerts; consumers dedupe on the
    # message key + alert_id. Every expected alert is there at least once, nothing else is.
    delivered = Counter(
        json.loads(v)["alert_id"] for _, v in consume_all(pipe.bootstrap, pipe.alerts)
    )
    assert set(delivered) == set(expected)
    duplicates = sum(delivered.values()) - len(delivered)
    record_property("kills", kills)
    record_property("transactions", len(values))
    record_property("alerts", len(expected))
    record_property("kafka_duplicate_deliveries", duplicates)
    record_property("cases", cases)
    print(
        f"\n[chaos] kills={kills} transactions={len(values)} alerts={len(expected)} "
        f"lost=0 spurious=0 kafka_duplicate_deliveries={duplicates} cases={cases}"
    )


def test_two_clean_runs_over_the_same_input_write_identical_alerts(
    pipe: PipelineEnv, mongo_client: Any, tmp_path: Path
) -> None:
    """Realistic traffic (fraud stories and malformed records) through two clean runs."""
    sent = generated(tmp_path, scale(5_000, 50_000), cards=scale(2_000, 20_000), seed=11)
    produce_in_order(pipe.bootstrap, pipe.tx, sent)
    runs = []
    for n in (1, 2):
        db = f"{pipe.db}r{n}"
        log = tmp_path / f"run{n}.log"
        code = pipe.run_to_end(log, MONGODB_DATABASE=db, timeout=600)
        assert code == 0, log.read_text()[-3000:]
        docs = {d.pop("_id"): d for d in mongo_client[db].alerts.find({}, {"detected_at": 0})}
        runs.append(docs)
        mongo_client.drop_database(db)
    first, second = runs
    assert len(first) > 20
    assert first == second
    assert set(first) == set(oracle(sent))


def test_resuming_from_an_offset_retention_deleted_stops_with_a_clear_error(
    pipe: PipelineEnv, tmp_path: Path
) -> None:
    from confluent_kafka import TopicPartition

    args = recovery_args(tmp_path / "recovery")
    log = tmp_path / "dataflow.log"
    produce(pipe.bootstrap, pipe.tx, traffic(cards=30, per_card=10))
    assert pipe.run_to_end(log, *args) == 0, log.read_text()[-3000:]

    # More input arrives while the dataflow is down, and retention deletes all of it before
    # the restart: the recovery offsets now point below each partition's log start.
    produce(pipe.bootstrap, pipe.tx, traffic(cards=30, per_card=10, start=1_764_100_000))
    admin = clients.admin_client(pipe.kafka)
    ends = [TopicPartition(pipe.tx, p, -1) for p in range(3)]  # -1: up to the high watermark
    for fut in admin.delete_records(ends).values():
        fut.result(timeout=30)

    proc = pipe.start(log, *args, FRAUD_STOP_AT_END="1")
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert "no longer exists" in text, text[-3000:]


def test_a_replay_does_not_duplicate_alerts_or_undo_a_disposition(
    pipe: PipelineEnv, mongo_client, tmp_path: Path
) -> None:
    values = traffic(cards=12, per_card=10)
    produce_in_order(pipe.bootstrap, pipe.tx, values)
    log = tmp_path / "dataflow.log"
    assert pipe.run_to_end(log) == 0, log.read_text()[-3000:]
    db = mongo_client[pipe.db]
    first = {d["_id"]: d for d in db.alerts.find()}
    stats_before = {d["_id"]: d["transactions"] for d in db.alert_stats.find()}
    some_id = next(iter(first))
    db.alerts.update_one({"_id": some_id}, {"$set": {"status": "confirmed_fraud"}})

    # The same input again, from scratch (no recovery): a full replay.
    assert pipe.run_to_end(log) == 0, log.read_text()[-3000:]

    again = {d["_id"]: d for d in db.alerts.find()}
    assert set(again) == set(first)
    assert again[some_id]["status"] == "confirmed_fraud"
    assert again[some_id]["detected_at"] == first[some_id]["detected_at"]
    assert {d["_id"]: d["transactions"] for d in db.alert_stats.find()} == stats_before


def test_a_resume_offset_that_no_longer_exists_is_an_error_not_a_silent_skip(
    pipe: PipelineEnv,
) -> None:
    from dataflows.io.kafka_io import KafkaUnavailable, TransactionSource

    produce(pipe.bootstrap, pipe.tx, traffic(cards=1, per_card=3))
    source = TransactionSource(pipe.bootstrap, pipe.tx)
    # As if recovery said "resume at offset 1,000" but retention deleted everything up to it
    # (here: it never existed) — the consumer must not jump silently to the start or the end.
    part = source.build_part("in", f"0-{pipe.tx}", 1_000)
    try:
        with pytest.raises(KafkaUnavailable, match="no longer exists"):
            wait_for(lambda: part.next_batch() and False, 20, "the offset error")
    finally:
        part.close()
