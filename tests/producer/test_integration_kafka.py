"""The producer against the real local Kafka: what is sent arrives, once, where it should."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from kafka.partitioner.default import murmur2

from fraudwatch import clients
from fraudwatch.contract import InvalidTransaction, parse_label, parse_transaction
from fraudwatch.settings import KafkaSettings
from producer.cli import main
from producer.kafka_sink import KafkaSink
from producer.population import build_population
from producer.runner import EventTimePacer, Limits, run
from producer.traffic import TrafficConfig, TrafficSimulator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Message = tuple[int, int, bytes | None, bytes]  # partition, offset, key, value


def consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
    """Every message of ``topic`` (waits until ``expected`` arrived or the timeout)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        clients.consumer_config(
            clients.plaintext_kafka(bootstrap),
            f"test-{uuid.uuid4().hex}",
            {"auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is None:
                    messages.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m[0], m[1]))


def _event_time(value: bytes) -> datetime | None:
    try:
        return parse_transaction(value).timestamp
    except ValueError:
        return None


def _generate(tmp_path: Path, bootstrap: str, topic: str, *args: str) -> Any:
    return CliRunner().invoke(
        main,
        [
            "generate", "--rate", "max", "--cards", "300", "--merchants", "120", "--seed", "7",
            "--start", "2026-11-25T00:00:00Z", "--bootstrap-servers", bootstrap,
            "--topic", topic, "--out", str(tmp_path / "sent.jsonl"),
            "--labels-out", str(tmp_path / "labels.jsonl"), *args,
        ],
    )  # fmt: skip


def test_every_record_produced_is_consumed_once_on_its_cards_partition(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    topic = make_topic(unique_name, partitions=3)
    result = _generate(tmp_path, bootstrap, topic, "--count", "6000", "--fraud-ratio", "0.05",
                       "--bad-ratio", "0.01")  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = (tmp_path / "sent.jsonl").read_bytes().splitlines()
    messages = consume(bootstrap, topic, expected=len(sent))

    assert len(messages) == len(sent) == 6000
    assert sorted(m[3] for m in messages) == sorted(sent)
    partitions_of: dict[bytes | None, set[int]] = defaultdict(set)
    per_card: dict[bytes | None, list[bytes]] = defaultdict(list)
    for partition, _, key, value in messages:
        partitions_of[key].add(partition)
        per_card[key].append(value)
    assert all(len(p) == 1 for p in partitions_of.values())
    for key, (partition,) in partitions_of.items():  # the Java client's default partitioner
        assert key is not None
        assert partition == (murmur2(key) & 0x7FFFFFFF) % 3
    assert len({p for ps in partitions_of.values() for p in ps}) == 3
    position = {value: i for i, value in enumerate(sent)}
    for values in per_card.values():
        order = [position[v] for v in values]
        assert order == sorted(order)  # per-card order holds
        times = [t for t in map(_event_time, values) if t is not None]
        assert times == sorted(times)


def test_labels_file_points_at_exactly_the_fraudulent_and_malformed_messages(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    topic = make_topic(unique_name, partitions=3)
    result = _generate(tmp_path, bootstrap, topic, "--count", "6000", "--fraud-ratio", "0.05",
                       "--bad-ratio", "0.01")  # fmt: skip
    assert result.exit_code == 0, result.output
    messages = {(m[0], m[1]): m for m in consume(bootstrap, topic, expected=6000)}
    labels = [orjson.loads(x) for x in (tmp_path / "labels.jsonl").read_bytes().splitlines()]
    assert len({(x["partition"], x["offset"]) for x in labels}) == len(labels) > 100
    for label in labels:
        _, _, key, value = messages[(label["partition"], label["offset"])]
        assert key == label["account_id"].encode()
        if label["scenario"] == "malformed":
            with pytest.raises(InvalidTransaction):
                parse_transaction(value)
        else:
            assert parse_transaction(value).transaction_id == label["transaction_id"]
    labelled = {(x["partition"], x["offset"]) for x in labels}
    genuine = [m for pos, m in messages.items() if pos not in labelled]
    assert all(parse_transaction(m[3]) for m in genuine)  # everything else is valid
    assert len(genuine) + len(labels) == 6000


def test_replay_at_max_speed_round_trips_a_file_exactly(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    file = tmp_path / "history.jsonl"
    made = _generate(tmp_path, bootstrap, "unused", "--no-kafka", "--count", "3000",
                     "--fraud-ratio", "0.05", "--out", str(file))  # fmt: skip
    assert made.exit_code == 0, made.output
    topic = make_topic(unique_name, partitions=1)
    result = CliRunner().invoke(
        main, ["replay", str(file), "--speed", "max", "--bootstrap-servers", bootstrap,
               "--topic", topic],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = file.read_bytes().splitlines()
    messages = consume(bootstrap, topic, expected=len(lines))
    assert [m[3] for m in messages] == lines
    assert [m[2] for m in messages] == [orjson.loads(x)["account_id"].encode() for x in lines]


def test_labels_replay_sends_a_chargebacks_file_to_the_labels_topic_exactly(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    file = tmp_path / "chargebacks.jsonl"
    made = _generate(tmp_path, bootstrap, "unused", "--no-kafka", "--count", "20000",
                     "--fraud-ratio", "0.03", "--chargebacks-out", str(file))  # fmt: skip
    assert made.exit_code == 0, made.output
    topic = make_topic(unique_name, partitions=3)
    result = CliRunner().invoke(
        main, ["labels", str(file), "--bootstrap-servers", bootstrap, "--topic", topic]
    )
    assert result.exit_code == 0, result.output
    lines = file.read_bytes().splitlines()
    assert len(lines) > 200
    messages = consume(bootstrap, topic, expected=len(lines))
    assert sorted(m[3] for m in messages) == sorted(lines)
    for partition, _, key, value in messages:
        label = parse_label(value)
        assert key == label.transaction_id.encode()
        assert partition == (murmur2(key) & 0x7FFFFFFF) % 3
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for partition, _, _, value in messages:
        by_partition[partition].append(value)
    position = {line: i for i, line in enumerate(lines)}
    for values in by_partition.values():  # file order (reported_at) within each partition
        assert [position[v] for v in values] == sorted(position[v] for v in values)


def test_generate_sends_each_chargeback_when_event_time_reaches_it(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    topic = make_topic(unique_name, partitions=3)
    labels_topic = make_topic(unique_name + "-labels", partitions=3)
    result = _generate(tmp_path, bootstrap, topic, "--days", "10", "--fraud-ratio", "0.03",
                       "--chargebacks-out", str(tmp_path / "chargebacks.jsonl"),
                       "--labels-topic", labels_topic)  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = (tmp_path / "sent.jsonl").read_bytes().splitlines()
    end = max(parse_transaction(x).timestamp for x in sent if _event_time(x) is not None)
    written = [parse_label(x) for x in (tmp_path / "chargebacks.jsonl").read_bytes().splitlines()]
    due = [x for x in written if x.reported_at <= end]
    assert 50 < len(due) < len(written)  # the rest is reported after the end: file only
    messages = consume(bootstrap, labels_topic, expected=len(due))
    assert sorted(m[3] for m in messages) == sorted(orjson.dumps(x.to_json_dict()) for x in due)
    account_of = {}
    for line in sent:
        with contextlib.suppress(InvalidTransaction):
            txn = parse_transaction(line)
            account_of[txn.transaction_id] = txn.account_id.encode()
    assert all(
        key == account_of[parse_label(value).transaction_id] for _, _, key, value in messages
    )
    assert f"sent {len(due):,} to {labels_topic}" in result.output
    transactions = consume(bootstrap, topic, expected=len(sent))
    assert sorted(m[3] for m in transactions) == sorted(sent)  # no label among them


def test_raw_replay_sends_malformed_lines_untouched(
    tmp_path: Path, bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    file = tmp_path / "bad.jsonl"
    made = _generate(tmp_path, bootstrap, "unused", "--no-kafka", "--count", "2000",
                     "--bad-ratio", "0.2", "--out", str(file))  # fmt: skip
    assert made.exit_code == 0, made.output
    topic = make_topic(unique_name, partitions=1)
    result = CliRunner().invoke(
        main, ["replay", str(file), "--raw", "--bootstrap-servers", bootstrap, "--topic", topic]
    )
    assert result.exit_code == 0, result.output
    lines = [x for x in file.read_bytes().splitlines() if x.strip()]
    assert [m[3] for m in consume(bootstrap, topic, expected=len(lines))] == lines


def test_a_missing_topic_is_a_clear_error_with_exit_code_2(
    bootstrap: str, unique_name: str
) -> None:
    result = CliRunner().invoke(
        main,
        ["generate", "--bootstrap-servers", bootstrap, "--topic", unique_name, "--cards", "50",
         "--merchants", "50", "--count", "5"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"topic '{unique_name}' does not exist" in result.output


def test_fixed_rate_is_achieved_within_five_percent(
    bootstrap: str, make_topic: Any, unique_name: str
) -> None:
    topic = make_topic(unique_name, partitions=3)
    population = build_population(1, 2000, 300)
    start = int(time.time() * 1000)
    config = TrafficConfig(seed=1, start_ms=start, clock="wall", rate=1000.0, bad_ratio=0.001)
    sink = KafkaSink.connect(KafkaSettings(kafka_bootstrap_servers=bootstrap), topic)
    try:
        stats = run(
            TrafficSimulator(population, config).records(),
            sink,
            limits=Limits(duration_s=4.0),
            pacer=EventTimePacer(speed=1.0, origin_ms=start),
        )
    finally:
        sink.close()
    assert stats.stopped_by == "duration"
    assert stats.sent / 4.0 == pytest.approx(1000, rel=0.05)
    assert stats.delivered == stats.sent


def _run_until_progress(
    bootstrap: str, topic: str
) -> tuple[subprocess.Popen[str], threading.Thread, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer", "generate", "--rate", "300", "--cards", "200",
         "--merchants", "60", "--bootstrap-servers", bootstrap, "--topic", topic,
         "--log-interval", "0.3"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    progress = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if " sent " in line and "/s now" in line:
                progress.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not progress.wait(timeout=30):
        proc.kill()
        pytest.fail("no progress line within 30 s:\n" + "".join(lines))
    return proc, reader, lines


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_stops_the_producer_which_flushes_and_reports_what_it_sent(
    bootstrap: str, make_topic: Any, unique_name: str, signum: int, exit_code: int
) -> None:
    topic = make_topic(unique_name, partitions=3)
    proc, reader, lines = _run_until_progress(bootstrap, topic)
    proc.send_signal(signum)
    assert proc.wait(timeout=20) == exit_code
    reader.join(timeout=5)
    output = "".join(lines)
    name = signal.Signals(signum).name
    summary = next(line for line in lines if f"stopped ({name})" in line)
    sent = int(summary.split(" sent ")[1].split(" records")[0].replace(",", ""))
    assert sent > 0
    assert "unconfirmed 0" in output
    assert len(consume(bootstrap, topic, expected=sent, timeout_s=15)) == sent
