"""``devtools.stack``: a real Kafka broker and a real MongoDB-protocol server (FerretDB),
started, checked and stopped the way `make up` / `make test` do."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from devtools.stack import TOPICS, LocalStack, StackConfig, StackError, _pid_alive
from fraudwatch import clients
from tests.integration.pipeline import free_port

pytestmark = pytest.mark.integration


def test_kafka_round_trip_keeps_order_and_keys(bootstrap: str, make_topic) -> None:
    from confluent_kafka import Consumer
    from kafka import KafkaProducer

    topic = make_topic("t-roundtrip-" + str(time.time_ns()), partitions=3)
    kafka = clients.plaintext_kafka(bootstrap)
    producer = KafkaProducer(
        **clients.kafka_python_config(kafka, acks="all", compression_type="lz4")
    )
    sent = [(f"acct-{i % 5}", {"n": i}) for i in range(300)]
    for key, value in sent:
        producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = Consumer(
        clients.consumer_config(
            kafka, topic, {"auto.offset.reset": "earliest", "enable.partition.eof": False}
        )
    )
    consumer.subscribe([topic])
    got: list[tuple[str, dict, int]] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        got.append((msg.key().decode(), json.loads(msg.value()), msg.partition()))
    consumer.close()

    assert len(got) == len(sent)
    # One key always lands on one partition, in the order it was sent.
    partitions_by_key: dict[str, set[int]] = {}
    for key, _, part in got:
        partitions_by_key.setdefault(key, set()).add(part)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    for key in partitions_by_key:
        ns = [v["n"] for k, v, _ in got if k == key]
        assert ns == sorted(ns)


def test_project_topics_exist_with_their_partition_counts(bootstrap: str) -> None:

    kafka = clients.plaintext_kafka(bootstrap)
    topics = clients.admin_client(kafka).list_topics(timeout=10).topics
    for name, partitions in TOPICS.items():
        assert name in topics, f"{name} missing: `make up` creates it"
        assert len(topics[name].partitions) == partitions


def test_auto_create_of_topics_is_off(bootstrap: str) -> None:
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        clients.kafka_config(clients.plaintext_kafka(bootstrap), {"message.timeout.ms": 3000})
    )
    errors: list[str] = []
    try:
        producer.produce(
            f"never-created-{time.time_ns()}", b"x", on_delivery=lambda e, m: errors.append(str(e))
        )
    except KafkaException as exc:
        errors.append(str(exc))
    producer.flush(10)
    assert errors
    assert errors[0] != "None"


def test_mongodb_insert_find_and_index_creation(mongo_db) -> None:
    coll = mongo_db["alerts"]
    coll.insert_many([{"_id": f"a{i}", "severity": "high", "score": i / 10} for i in range(10)])
    name = coll.create_index([("severity", 1), ("score", -1)])
    assert name in coll.index_information()
    top = list(coll.find({"severity": "high"}).sort([("score", -1)]).limit(3))
    assert [d["_id"] for d in top] == ["a9", "a8", "a7"]
    # Idempotent upsert: setOnInsert fields are not overwritten by a second write.
    coll.update_one({"_id": "a1"}, {"$setOnInsert": {"status": "x"}}, upsert=True)
    assert coll.find_one({"_id": "a1"})["score"] == 0.1


@pytest.mark.slow
def test_private_stack_starts_is_idempotent_and_stops_without_leftovers(tmp_path: Path) -> None:
    """What `make up && make up && make down` does, on private ports and a private folder."""
    kafka_port = free_port()
    config = StackConfig(
        data_dir=tmp_path / "stack",
        kafka_port=kafka_port,
        controller_port=free_port(),
        mongo_port=free_port(),
        topics={"p-tx": 3},
    )
    stack = LocalStack(config)
    try:
        assert sorted(stack.up()) == ["ferretdb", "kafka"]
        pids = stack.status()
        t0 = time.monotonic()
        assert stack.up() == []  # second `up` is a no-op
        assert time.monotonic() - t0 < 20
        assert stack.status() == pids
    finally:
        stack.stop()
    assert stack.status() == {"kafka": None, "ferretdb": None}
    for name, pid in pids.items():
        marker = stack.kafka.marker if name == "kafka" else stack.mongo.marker
        assert pid is not None
        assert not _pid_alive(pid, marker)


def test_a_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        stack = LocalStack(StackConfig(data_dir=tmp_path, mongo_port=port))
        with pytest.raises(StackError, match=f"port {port} .* is taken"):
            stack.start_mongo()
