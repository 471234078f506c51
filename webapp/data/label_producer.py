"""The console's one Kafka client: a producer that sends fraud labels and waits for the
broker's acknowledgement.

Built once per application in ``create_app`` from the shared :class:`KafkaSettings` (TLS and
SASL included, via ``librdkafka_config``). The librdkafka client itself is created on first
use in each process: its background threads do not survive ``fork``, so a client made in a
``gunicorn --preload`` master would never deliver anything from the workers (the same reason
the ``MongoClient`` is built with ``connect=False``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from fraudwatch.clients import producer_config
from fraudwatch.settings import KafkaSettings

KAFKA_LOGGER = "fraudwatch.webapp.kafka"
# Extra wait after librdkafka's own message timeout, so that its delivery report (which says
# why the message failed) normally arrives before we give up on it ourselves.
REPORT_GRACE_S = 1.0


class LabelProducer:
    """Sends keyed messages to one topic with ``acks=all`` and reports each one's fate."""

    def __init__(self, settings: KafkaSettings, topic: str, timeout_s: float) -> None:
        self.topic = topic
        self.bootstrap = settings.kafka_bootstrap_servers
        self.timeout_s = timeout_s
        # producer_config: acks=all and idempotence, so librdkafka's own retries within the
        # timeout neither duplicate nor reorder.
        self._config: dict[str, Any] = producer_config(
            settings,
            {
                "client.id": "fraudwatch-webapp",
                # A message not acknowledged within this fails with a delivery report; the
                # label then stays in the outbox instead of lingering in this process's memory.
                "message.timeout.ms": max(1, round(timeout_s * 1000)),
                "linger.ms": 5,
                # librdkafka's connection errors go to our JSON log, not raw to stderr.
                "logger": logging.getLogger(KAFKA_LOGGER),
                "error_cb": self._on_error,
            },
        )
        self._client: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def _producer(self) -> Any:
        """This process's client, created on first use (and again after a fork)."""
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    from confluent_kafka import Producer

                    self._client = Producer(self._config)
                    self._pid = pid
        return self._client

    def _on_error(self, err: Any) -> None:
        """A fatal error (e.g. the idempotent producer's state is lost) leaves the client
        unable to send anything again: drop it, and the next send builds a fresh one."""
        if err.fatal():
            logging.getLogger(KAFKA_LOGGER).error("fatal Kafka producer error: %s", err)
            self._client = None

    def send(self, messages: Sequence[tuple[bytes, bytes]]) -> list[str | None]:
        """Send ``(key, value)`` pairs in order and wait for their acknowledgements.

        Returns one entry per message: ``None`` when the broker acknowledged it (all in-sync
        replicas have it), else why it was not, for the log. Never raises for a Kafka
        problem: an unreachable broker, a missing topic or unusable TLS settings all come
        back as errors within about ``timeout_s``.
        """
        if not messages:
            return []
        from confluent_kafka import KafkaException

        errors: list[str | None] = [None] * len(messages)
        reported = [False] * len(messages)

        def reporter(index: int) -> Any:
            # Delivery reports run in whichever thread polls the shared client next, so each
            # message writes only its own slots.
            def on_delivery(err: Any, _msg: Any) -> None:
                errors[index] = None if err is None else str(err)
                reported[index] = True
                if err is not None:
                    self._on_error(err)

            return on_delivery

        try:
            producer = self._producer()
        except KafkaException as exc:
            return [f"the Kafka settings are not usable: {exc}"] * len(messages)
        for index, (key, value) in enumerate(messages):
            try:
                producer.produce(self.topic, value, key, on_delivery=reporter(index))
            except (BufferError, KafkaException) as exc:
                errors[index], reported[index] = f"not queued: {exc}", True
        deadline = time.monotonic() + self.timeout_s + REPORT_GRACE_S
        while not all(reported):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            producer.poll(min(left, 0.1))
        return [
            error if done else f"no acknowledgement within {self.timeout_s:g}s"
            for error, done in zip(errors, reported, strict=True)
        ]
