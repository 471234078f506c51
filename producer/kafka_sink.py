"""Sending records to Kafka with kafka-python, and knowing what was delivered where.

Throughput levers (measured in docs/producer.md): values are serialised once with orjson by
the generator; the partition is computed once per key (the same murmur2 as kafka-python's and
the Java client's default partitioner, so per-card partitioning is unchanged) and passed
explicitly; no callback per message: futures go into a deque that is drained from the left
as they complete, which also gives every labelled record its partition and offset in send
order. kafka-python 3 has no ``buffer_memory`` bound, so the deque length is the backpressure.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fraudwatch.clients import kafka_python_config
from fraudwatch.settings import KafkaSettings
from producer.errors import BrokerUnreachable, DeliveryFailed, ProducerError, TopicMissing
from producer.records import Label

_log = logging.getLogger(__name__)

LabelCallback = Callable[[Label, int | None, int | None], None]

# Producer tuning for throughput with acks=all (see docs/producer.md for the measurements).
PRODUCER_TUNING: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,  # retries cannot reorder or duplicate a card's transactions
    "compression_type": "lz4",
    "linger_ms": 10,
    "batch_size": 256 * 1024,
    "max_in_flight_requests_per_connection": 5,  # the most idempotence allows
    "delivery_timeout_ms": 30_000,
    "request_timeout_ms": 15_000,
    "max_block_ms": 10_000,
    "bootstrap_timeout_ms": 10_000,
    "allow_auto_create_topics": False,
    "client_id": "fraudwatch-producer",
}
MAX_PENDING = 200_000  # unacknowledged records before send() waits for the broker


class NullSink:
    """No Kafka (``--no-kafka``): every record counts as delivered, without partition/offset."""

    def __init__(self, on_label: LabelCallback | None = None) -> None:
        self._on_label = on_label
        self.delivered = 0
        self.failed = 0
        self.partitions = 0

    def send(self, key: bytes | None, value: bytes, label: Label | None) -> None:
        self.delivered += 1
        if label is not None and self._on_label is not None:
            self._on_label(label, None, None)

    def poll(self) -> None:
        """Nothing is ever pending."""

    @property
    def pending(self) -> int:
        return 0

    def flush(self, timeout_s: float) -> int:
        return 0

    def close(self) -> None:
        """Nothing to close."""


class KafkaSink:
    """One kafka-python producer for one topic, with delivery bookkeeping.

    Build it with :meth:`connect`. A failed delivery is fatal: the next :meth:`send` or
    :meth:`poll` raises :class:`DeliveryFailed`, because a gap in a card's stream would
    silently falsify every rule downstream.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        partitions: list[int],
        on_label: LabelCallback | None = None,
    ) -> None:
        self._producer = producer
        self._send = producer.send
        self.topic = topic
        self.partitions = len(partitions)
        self._partition_ids = sorted(partitions)
        self._partition_of: dict[bytes, int] = {}
        self._pending: deque[tuple[Any, Label | None]] = deque()
        self._on_label = on_label
        self.delivered = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    @classmethod
    def connect(
        cls,
        settings: KafkaSettings,
        topic: str,
        on_label: LabelCallback | None = None,
        **overrides: Any,
    ) -> KafkaSink:
        """Connect, check the topic exists, and return a ready sink.

        Raises:
            BrokerUnreachable: no broker answered within ``bootstrap_timeout_ms`` (10 s).
            TopicMissing: the broker does not have ``topic`` (auto-creation is off).
        """
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        servers = settings.kafka_bootstrap_servers
        config = kafka_python_config(settings, **{**PRODUCER_TUNING, **overrides})
        try:
            producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise BrokerUnreachable(
                f"Kafka is not reachable at {servers} ({exc}). Is the stack up? Run `make up`, "
                "or point KAFKA_BOOTSTRAP_SERVERS / --bootstrap-servers at your cluster."
            ) from None
        except (OSError, ValueError) as exc:  # e.g. a TLS file that is not there
            raise ProducerError(f"the Kafka settings for {servers} are not usable: {exc}") from None
        try:
            partitions = _topic_partitions(settings, topic)
        except KafkaError as exc:
            producer.close(timeout=1)
            raise ProducerError(f"could not describe topic {topic!r} on {servers}: {exc}") from None
        except Exception:
            producer.close(timeout=1)
            raise
        return cls(producer, topic, partitions, on_label)

    def partition_for(self, key: bytes) -> int:
        """The partition kafka-python's default partitioner would choose, computed once."""
        from kafka.partitioner.default import murmur2

        ids = self._partition_ids
        partition = ids[(murmur2(key) & 0x7FFFFFFF) % len(ids)]
        self._partition_of[key] = partition
        return int(partition)

    def send(self, key: bytes | None, value: bytes, label: Label | None) -> None:
        """Queue one record; raises :class:`DeliveryFailed` once any earlier one failed."""
        partition = None
        if key is not None:
            partition = self._partition_of.get(key)
            if partition is None:
                partition = self.partition_for(key)
        future = self._send(self.topic, value=value, key=key, partition=partition)
        pending = self._pending
        pending.append((future, label))
        if len(pending) >= MAX_PENDING:
            self._wait_for_oldest()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def poll(self) -> None:
        """Account for every completed send at the head of the queue (in send order)."""
        pending = self._pending
        on_label = self._on_label
        while pending and pending[0][0].is_done:
            future, label = pending.popleft()
            if future.exception is not None:
                self._fail(future.exception)
                continue
            self.delivered += 1
            if label is not None and on_label is not None:
                meta = future.value
                on_label(label, meta.partition, meta.offset)
        if self.first_error is not None:
            raise DeliveryFailed(
                f"{self.failed} record(s) could not be delivered to {self.topic}: "
                f"{self.first_error}"
            )

    def _fail(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = exc
            _log.error("delivery to %s failed: %s", self.topic, exc)

    def _wait_for_oldest(self) -> None:
        future = self._pending[0][0]
        try:
            future.get(timeout=PRODUCER_TUNING["delivery_timeout_ms"] / 1000 + 5)
        except Exception as exc:  # any failure is counted by poll()
            _log.debug("oldest pending record failed: %s", exc)
        self.poll()

    def flush(self, timeout_s: float) -> int:
        """Send everything queued and wait up to ``timeout_s``; return records still unconfirmed.

        Raises:
            DeliveryFailed: when a record could not be delivered.
        """
        from kafka.errors import KafkaTimeoutError

        deadline = time.monotonic() + timeout_s
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            _log.warning("flush did not finish within %.0f s", timeout_s)
        while self._pending and time.monotonic() < deadline:
            self.poll()
            if self._pending and not self._pending[0][0].is_done:
                time.sleep(0.01)
        self.poll()
        return len(self._pending)

    def close(self) -> None:
        self._producer.close(timeout=5)


def _topic_partitions(settings: KafkaSettings, topic: str) -> list[int]:
    """The topic's partition ids, asked of the broker directly (no waiting on auto-create)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    servers = settings.kafka_bootstrap_servers
    try:
        admin = KafkaAdminClient(
            **kafka_python_config(
                settings, client_id="fraudwatch-producer-admin", request_timeout_ms=10_000
            )
        )
    except KafkaError as exc:
        raise BrokerUnreachable(f"Kafka is not reachable at {servers} ({exc})") from None
    try:
        (description,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if description.get("error_code", 0) != 0 or not description.get("partitions"):
        raise TopicMissing(
            f"topic {topic!r} does not exist on {servers} (auto-creation is off). "
            "`make up` creates the default topics; create others with your Kafka tools, or "
            "choose one with --topic / TRANSACTIONS_TOPIC."
        )
    return sorted(p["partition_index"] for p in description["partitions"])
