"""Kafka edges of the dataflow: a partitioned source and a sink that fail loudly.

Bytewax's own ``KafkaSource``/``KafkaSink`` are close to what we need, but: the sink ignores
delivery reports and flushes without a timeout (a dead broker hangs it or loses alerts), the
source lists partitions without a timeout, busy-polls and silently resets to the beginning
when its offset was deleted by retention. These adapters fix exactly that and nothing else:

- every broker call at start-up and every flush has a timeout;
- a delivery failure stops the dataflow with a clear message (at-least-once: the epoch is
  not committed, so a restart re-sends it);
- an input partition that has not been able to reach any broker for ``broker_timeout_s``
  stops the dataflow;
- an input offset that no longer exists is an error (``auto.offset.reset=error``), never a
  silent skip;
- offsets the consumer passes over without returning their records (a gap in the offsets
  returned, or a position beyond the last record returned) are an error naming the partition
  and the offsets, unless the source is told the topic is compacted or transactional
  (``allow_offset_gaps``), where such gaps are expected;
- a record delivered again below the next expected offset (it was returned already in this
  execution) is dropped, so it is judged once;
- ``stop_at_end`` ends each partition at its high watermark as of start-up (backtests,
  benchmarks), re-confirmed with the broker, and only when every offset up to it was returned;
- a sink that closes with messages unconfirmed says so (non-zero exit), instead of dropping
  them at shutdown.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from dataflows.validation import RawRecord

_log = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or refused a write; the dataflow must stop (non-zero)."""


class InputSkipped(KafkaUnavailable):
    """The consumer moved past input records it never returned; they would go unjudged."""


def list_partitions(
    bootstrap: str, topic: str, extra: dict[str, Any], timeout_s: float
) -> list[int]:
    """Partition ids of ``topic``; a clear error when the broker or the topic is missing."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **extra})
    try:
        md = admin.list_topics(topic, timeout=timeout_s)
    except Exception as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f}s ({exc}); is the stack "
            "up? run `make up`, or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None:
        why = tmd.error.str() if tmd is not None and tmd.error is not None else "unknown topic"
        raise KafkaUnavailable(
            f"topic {topic!r} is not available on {bootstrap} ({why}); `make up` creates the "
            "project's topics (auto-create is off on purpose)"
        )
    return sorted(tmd.partitions)


class _SourcePartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        partition: int,
        resume_offset: int | None,
        batch_size: int,
        broker_timeout_s: float,
        stop_at_end: bool = False,
        allow_offset_gaps: bool = False,
    ) -> None:
        self._topic = topic
        self._allow_offset_gaps = allow_offset_gaps
        self._partition = partition
        self._batch_size = batch_size
        self._broker_timeout_s = broker_timeout_s
        self._last_broker_up = time.monotonic()
        self._next_awake: datetime | None = None
        self._eof = False
        self._read = 0  # records returned by this partition in this execution
        config = {**config, "stats_cb": self._on_stats, "error_cb": self._on_error}
        self._consumer = Consumer(config)
        start = OFFSET_BEGINNING if resume_offset is None else resume_offset
        self._offset = start  # the next offset to return (negative: not known yet)
        # Stop-at-end drains what the partition held when we started: its high watermark
        # now, an explicit target instead of librdkafka's partition-EOF event (suspected of
        # ending one partition early in a two-process run: 98 alerts missing, exit 0).
        self._end: int | None = None
        self._low_at_start: int | None = None
        if stop_at_end:
            low, self._end = self._watermarks(topic, partition)
            self._low_at_start = low
            # An empty partition (or one already read to its end) has nothing to drain; no
            # fetch would ever move the position to tell us so.
            # A resumed partition that had read nothing yet snapshots OFFSET_BEGINNING (< 0).
            first = low if resume_offset is None or resume_offset < 0 else resume_offset
            self._eof = first >= self._end
        self._consumer.assign([TopicPartition(topic, partition, start)])

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) of the partition, as the broker knows them now.

        Asked within the broker timeout, like every other broker call of a running source: a
        broker that is restarting refuses the request (unknown partition, transport errors)
        or, just started, answers with unknown offsets (negative). Taking an unknown offset
        as the end would end the partition at once and exit 0 with its alerts missing;
        failing on a refusal would turn a short outage into a non-zero exit.
        """
        timeout_s = self._broker_timeout_s
        deadline = time.monotonic() + timeout_s
        tp = TopicPartition(topic, partition)
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    tp, timeout=max(0.1, min(5.0, deadline - time.monotonic()))
                )
                why = f"got {low}, {high}"
                if low >= 0 and high >= 0:
                    return int(low), int(high)
            except KafkaException as exc:
                why = str(exc)
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"the end offset of {topic}[{partition}] is unknown after {timeout_s:g}s "
                    f"({why}); cannot tell where the input ends"
                )
            time.sleep(0.2)

    def _on_stats(self, stats_json: str) -> None:
        brokers = json.loads(stats_json).get("brokers", {})
        if any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers.values()):
            self._last_broker_up = time.monotonic()

    def _on_error(self, err: KafkaError) -> None:
        _log.warning(
            "kafka consumer error", extra={"partition": self._partition, "error": str(err)}
        )

    def next_batch(self) -> list[RawRecord]:
        if self._eof:
            raise StopIteration
        msgs = self._consumer.consume(self._batch_size, 0)
        batch: list[RawRecord] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    raise KafkaUnavailable(
                        f"offset {self._offset} of {self._topic}[{self._partition}] no longer "
                        "exists (deleted by retention?); refusing to skip data silently. "
                        "Resume from a known offset or clear the recovery store deliberately."
                    )
                if err.fatal() or not err.retriable():
                    raise KafkaUnavailable(
                        f"consuming {self._topic}[{self._partition}] failed: {err}"
                    )
                continue
            ts_type, ts = msg.timestamp()
            batch.append(
                RawRecord(
                    self._topic,
                    self._partition,
                    int(msg.offset() or 0),
                    ts if ts_type != 0 else None,
                    msg.value(),
                )
            )
        if batch:
            batch = self._contiguous(batch)
        if batch:
            self._read += len(batch)
            self._offset = batch[-1].offset + 1
            self._next_awake = None
            self._last_broker_up = time.monotonic()
            if self._end is not None and self._offset >= self._end:
                self._eof = self._end_confirmed(self._end)
        elif self._end is not None and self._drained():
            self._eof = self._end_confirmed(self._end)
        else:
            # Nothing new: do not spin; poll this partition again shortly.
            self._next_awake = datetime.now(UTC) + timedelta(milliseconds=20)
            down_for = time.monotonic() - self._last_broker_up
            if down_for > self._broker_timeout_s:
                raise KafkaUnavailable(
                    f"no Kafka broker reachable for {down_for:.0f}s while reading "
                    f"{self._topic}[{self._partition}] (limit FRAUD_BROKER_TIMEOUT_S="
                    f"{self._broker_timeout_s:g}); stopping so that a supervisor restarts us"
                )
        return batch

    def _contiguous(self, batch: list[RawRecord]) -> list[RawRecord]:
        """The batch without records returned already; an error on a gap before or inside it.

        Offsets of one partition only grow, so a record below ``self._offset`` was returned in
        this execution already (a re-delivery, e.g. after librdkafka re-validated its position
        on a broker's return): judging it twice would count it twice. A record above it means
        the consumer passed over records it never returned: those would go unjudged.
        """
        if self._offset >= 0 and batch[0].offset < self._offset:
            fresh = [r for r in batch if r.offset >= self._offset]
            _log.warning(
                "input records delivered again, dropped",
                extra={
                    "partition": self._partition,
                    "expected": self._offset,
                    "got": batch[0].offset,
                    "dropped": len(batch) - len(fresh),
                },
            )
            batch = fresh
        expected = self._offset
        for rec in batch:
            if 0 <= expected < rec.offset:
                self._gap(expected, rec.offset)
            expected = rec.offset + 1
        return batch

    def _gap(self, first_missing: int, next_returned: int) -> None:
        """Offsets ``first_missing`` up to ``next_returned`` were passed over, never returned."""
        where = {
            "partition": self._partition,
            "expected": first_missing,
            "got": next_returned,
        }
        if self._allow_offset_gaps:
            # Compaction or transaction markers explain gaps on such topics.
            _log.warning("input offsets skipped", extra=where)
            return
        raise InputSkipped(
            f"{self._topic}[{self._partition}]: offsets {first_missing}..{next_returned - 1} "
            f"were passed over without being returned (next record at {next_returned}); "
            "refusing to leave input unjudged. If the topic is compacted or written by a "
            "transactional producer, gaps are expected: allow them (allow_offset_gaps)."
        )

    def _end_confirmed(self, end: int) -> bool:
        """Reached the end taken at start: stop only if the broker still reports it.

        A broker restarted after a crash can report a high watermark from a checkpoint that
        lags its log for a moment; a stop-at-end run that trusted it exited 0 with alerts
        missing. Asking again when the end is reached also drains what arrived meanwhile.
        """
        _, high = self._watermarks(self._topic, self._partition)
        if high > end:
            self._end = high
            return False
        _log.info(
            "input partition read to its end",
            extra={
                "partition": self._partition,
                "end": end,
                "offset": self._offset,
                "read": self._read,
            },
        )
        return True

    def _drained(self) -> bool:
        """At or past the end captured at start.

        The consumer's position can be past the last record returned only when it passed
        over records: transaction markers or compacted records on such topics, otherwise
        input that would end the partition unjudged (an error naming the offsets).
        """
        if self._end is None:
            return False
        if self._offset >= 0 and self._offset >= self._end:
            return True
        pos = self._consumer.position([TopicPartition(self._topic, self._partition)])[0].offset
        if pos is None or pos < 0 or pos < self._end:
            return False
        first = self._offset if self._offset >= 0 else self._low_at_start
        if first is not None and first < pos:
            self._gap(first, pos)
        self._offset = pos
        return True

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class TransactionSource(FixedPartitionedSource[RawRecord, int]):
    """All partitions of one topic; the offset of each is Bytewax-recovery state.

    ``allow_offset_gaps``: the topic is compacted or written by transactional producers, so
    offsets without a record are expected; otherwise a gap stops the dataflow (``InputSkipped``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        extra_config: dict[str, Any] | None = None,
        batch_size: int = 2000,
        stop_at_end: bool = False,
        broker_timeout_s: float = 60.0,
        allow_offset_gaps: bool = False,
    ) -> None:
        self._bootstrap = bootstrap
        self._allow_offset_gaps = allow_offset_gaps
        self._topic = topic
        self._extra = dict(extra_config or {})
        self._batch_size = batch_size
        self._stop_at_end = stop_at_end
        self._broker_timeout_s = broker_timeout_s

    def list_parts(self) -> list[str]:
        parts = list_partitions(self._bootstrap, self._topic, self._extra, timeout_s=30)
        return [f"{p}-{self._topic}" for p in parts]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _SourcePartition:
        idx, _, topic = for_part.partition("-")
        config = {
            "bootstrap.servers": self._bootstrap,
            "group.id": "fraudwatch-bytewax",  # offsets live in Bytewax recovery, not here
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "statistics.interval.ms": 1000,
            "fetch.wait.max.ms": 50,
            # Reconnect within a second of a broker coming back (librdkafka's default backoff
            # grows to 10 s, which a short outage then spends idle).
            "reconnect.backoff.max.ms": 1000,
            "queued.max.messages.kbytes": 65536,
            **self._extra,
        }
        return _SourcePartition(
            config,
            topic,
            int(idx),
            resume_state,
            self._batch_size,
            self._broker_timeout_s,
            stop_at_end=self._stop_at_end,
            allow_offset_gaps=self._allow_offset_gaps,
        )


class OutMessage(NamedTuple):
    """One message for a Kafka sink."""

    key: bytes | None
    value: bytes


class _SinkPartition(StatelessSinkPartition[OutMessage]):
    def __init__(
        self, producer: Producer, topic: str, flush_timeout_s: float, on_retry: Callable[[], None]
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._errors: list[str] = []
        self._on_retry = on_retry

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def write_batch(self, items: list[OutMessage]) -> None:
        produce = self._producer.produce
        for m in items:
            while True:
                try:
                    produce(self._topic, m.value, m.key, on_delivery=self._delivered)
                    break
                except BufferError:
                    # Local queue full: let librdkafka drain, then retry this message.
                    self._on_retry()
                    self._producer.poll(0.05)
        # The batch must be durable before Bytewax may close the epoch (at-least-once).
        self._confirm()

    def _confirm(self) -> None:
        """Every message produced so far is delivered, or a loud failure."""
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            raise KafkaUnavailable(
                f"{remaining} message(s) to {self._topic!r} were not delivered within "
                f"{self._flush_timeout_s:g}s (FRAUD_FLUSH_TIMEOUT_S); is Kafka up?"
            )
        if self._errors:
            first, count = self._errors[0], len(self._errors)
            self._errors.clear()
            raise KafkaUnavailable(f"{count} message(s) to {self._topic!r} failed: {first}")

    def close(self) -> None:
        # Nothing should be pending here (every batch was confirmed), but a shutdown must
        # never drop an unconfirmed message quietly.
        self._confirm()


class CheckedKafkaSink(DynamicSink[OutMessage]):
    """A Kafka sink that checks every delivery report and bounds every flush."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        extra_config: dict[str, Any] | None = None,
        flush_timeout_s: float = 30.0,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._extra = dict(extra_config or {})
        self._flush_timeout_s = flush_timeout_s
        self._on_retry = on_retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        list_partitions(self._bootstrap, self._topic, self._extra, timeout_s=30)
        producer = Producer(
            {
                "bootstrap.servers": self._bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 2,
                "reconnect.backoff.max.ms": 1000,
                # librdkafka retries internally within this bound, then reports failure.
                "message.timeout.ms": int(self._flush_timeout_s * 1000),
                **self._extra,
            }
        )
        return _SinkPartition(producer, self._topic, self._flush_timeout_s, self._on_retry)
