"""Delivery bookkeeping of the Kafka sink, against a stand-in for kafka-python's producer."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.partitioner.default import DefaultPartitioner
from kafka.producer.future import RecordMetadata

from producer import kafka_sink
from producer.errors import DeliveryFailed
from producer.kafka_sink import KafkaSink
from producer.records import Label


class FakeFuture(Future):  # type: ignore[misc]
    def get(self, timeout: float | None = None) -> Any:
        if not self.is_done:
            raise KafkaTimeoutError("not acknowledged")
        return self.value


class FakeProducer:
    """Records what was sent; the test acknowledges or fails each send by hand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []
        self.futures: list[FakeFuture] = []
        self.offsets: dict[int, int] = {}

    def send(self, topic: str, value: bytes, key: bytes | None, partition: int | None) -> Future:
        self.sent.append((topic, value, key, partition))
        future = FakeFuture()
        self.futures.append(future)
        return future

    def ack(self, index: int) -> None:
        topic, _, _, partition = self.sent[index]
        assert partition is not None
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        meta = RecordMetadata(topic, partition, None, offset, 0, None, 0, 0, -1)
        self.futures[index].success(meta)

    def flush(self, timeout: float | None = None) -> None:
        for i, future in enumerate(self.futures):
            if not future.is_done:
                self.ack(i)

    def close(self, timeout: float | None = None) -> None:
        pass


def _sink() -> tuple[KafkaSink, FakeProducer, list[tuple[Label, int | None, int | None]]]:
    producer = FakeProducer()
    labels: list[tuple[Label, int | None, int | None]] = []
    sink = KafkaSink(producer, "txns", [0, 1, 2], lambda *args: labels.append(args))
    return sink, producer, labels


def _label(n: int) -> Label:
    return Label(f"tx-{n}", "acct", f"story-{n}", "card_testing")


def test_partition_is_the_default_partitioners_choice_for_the_key() -> None:
    sink, producer, _ = _sink()
    cluster = type(
        "Cluster",
        (),
        {
            "topics": lambda self: {"txns"},
            "partitions_for_topic": lambda self, t: {0, 1, 2},
            "available_partitions_for_topic": lambda self, t: {0, 1, 2},
        },
    )()
    keys = [f"acc-{i:012x}".encode() for i in range(200)]
    for key in keys:
        sink.send(key, b"{}", None)
    expected = [DefaultPartitioner().partition("txns", None, k, None, None, cluster) for k in keys]
    assert [p for *_, p in producer.sent] == expected
    assert len(set(expected)) == 3


def test_labels_get_partition_and_offset_in_send_order_once_acknowledged() -> None:
    sink, producer, labels = _sink()
    sink.send(b"a", b"1", _label(1))
    sink.send(b"a", b"2", None)
    sink.send(b"a", b"3", _label(3))
    producer.ack(1)
    sink.poll()
    assert labels == []  # the head of the queue is not acknowledged yet: nothing reported
    producer.ack(0)
    producer.ack(2)
    sink.poll()
    partition = producer.sent[0][3]
    assert labels == [(_label(1), partition, 1), (_label(3), partition, 2)]
    assert sink.delivered == 3
    assert sink.pending == 0


def test_a_failed_delivery_is_counted_and_fatal() -> None:
    sink, producer, _ = _sink()
    sink.send(b"a", b"1", None)
    sink.send(b"b", b"2", None)
    producer.futures[0].failure(KafkaTimeoutError("expired after 30000 ms"))
    producer.ack(1)
    with pytest.raises(DeliveryFailed, match="1 record\\(s\\) could not be delivered to txns"):
        sink.poll()
    assert (sink.delivered, sink.failed) == (1, 1)


def test_send_waits_for_the_broker_when_too_much_is_unacknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_sink, "MAX_PENDING", 3)
    sink, producer, _ = _sink()
    for i in range(2):
        sink.send(b"a", b"%d" % i, None)
    waited: list[float | None] = []

    def broker_acks_while_we_wait(self: FakeFuture, timeout: float | None = None) -> Any:
        waited.append(timeout)
        producer.ack(producer.futures.index(self))
        return self.value

    monkeypatch.setattr(FakeFuture, "get", broker_acks_while_we_wait)
    sink.send(b"a", b"2", None)  # the third: waits until the oldest is acknowledged
    assert len(waited) == 1
    assert waited[0] is not None  # bounded: never waits forever
    assert sink.delivered == 1
    assert sink.pending == 2


def test_flush_acknowledges_everything_and_reports_nothing_left() -> None:
    sink, _, labels = _sink()
    for i in range(5):
        sink.send(b"k", b"%d" % i, _label(i))
    assert sink.flush(timeout_s=1) == 0
    assert [label.transaction_id for label, _, _ in labels] == [f"tx-{i}" for i in range(5)]


def test_a_record_without_key_lets_kafka_choose_the_partition() -> None:
    sink, producer, _ = _sink()
    sink.send(None, b"x", None)
    assert producer.sent[0][3] is None
