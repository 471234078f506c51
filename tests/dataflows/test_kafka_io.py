"""The Kafka source and sink refuse to end with input unjudged or output unconfirmed.

librdkafka is replaced by scripted fakes, so each fault lands at the exact point it matters:
the consumer passing over offsets it never returned (between batches, inside a batch, or
only visible in its position at the end of a stop-at-end run), a record delivered twice, and
a sink closing with messages still unconfirmed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from dataflows.io import kafka_io
from dataflows.io.kafka_io import (
    InputSkipped,
    KafkaUnavailable,
    OutMessage,
    TransactionSource,
    _SinkPartition,
)

TOPIC = "tx"


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_764_064_800_000 + self._offset)

    def value(self) -> bytes:
        return b'{"offset": %d}' % self._offset


class FakeConsumer:
    """Returns the scripted batches of offsets, then nothing; reports ``position``/``high``."""

    script: ClassVar[list[list[int]]] = []
    high = 0
    reported_position: int | None = None  # None: one past the last offset returned
    watermark_refusals = 0  # get_watermark_offsets raises this many times first

    def __init__(self, config: dict[str, Any]) -> None:
        self._batches = [list(b) for b in FakeConsumer.script]
        self._last = -1001

    def assign(self, parts: list[Any]) -> None:
        pass

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        if FakeConsumer.watermark_refusals > 0:
            FakeConsumer.watermark_refusals -= 1
            raise kafka_io.KafkaException(
                kafka_io.KafkaError(kafka_io.KafkaError._UNKNOWN_PARTITION)
            )
        return 0, FakeConsumer.high

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        if not self._batches:
            return []
        batch = self._batches.pop(0)
        if batch:
            self._last = batch[-1] + 1
        return [FakeMessage(o) for o in batch]

    def position(self, parts: list[Any]) -> list[Any]:
        pos = FakeConsumer.reported_position
        if pos is None:
            pos = self._last

        class TP:
            offset = pos

        return [TP()]

    def close(self) -> None:
        pass


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    monkeypatch.setattr(kafka_io, "Consumer", FakeConsumer)
    FakeConsumer.script, FakeConsumer.high, FakeConsumer.reported_position = [], 0, None
    FakeConsumer.watermark_refusals = 0
    return FakeConsumer


def _part(
    stop_at_end: bool = False, allow_offset_gaps: bool = False, resume: int | None = None
) -> Any:
    source = TransactionSource(
        "unused:9092", TOPIC, stop_at_end=stop_at_end, allow_offset_gaps=allow_offset_gaps
    )
    return source.build_part("in", f"0-{TOPIC}", resume)


def _drain(part: Any, polls: int = 20) -> list[int]:
    got: list[int] = []
    for _ in range(polls):
        try:
            got += [r.offset for r in part.next_batch()]
        except StopIteration:
            return got
    raise AssertionError(f"no end after {polls} polls: {got}")


def test_contiguous_input_is_returned_and_ends_at_the_confirmed_end(
    consumer: type[FakeConsumer],
) -> None:
    consumer.script, consumer.high = [[0, 1, 2], [3, 4]], 5
    part = _part(stop_at_end=True)
    assert _drain(part) == [0, 1, 2, 3, 4]
    assert part.snapshot() == 5


def test_a_broker_refusing_the_end_offset_while_restarting_is_asked_again(
    consumer: type[FakeConsumer],
) -> None:
    # Seen in the soak: right after a broker restart, the end-of-partition check got
    # "Unknown partition" and the run exited 1 instead of riding the short outage out.
    consumer.script, consumer.high = [[0, 1, 2]], 3
    part = _part(stop_at_end=True)
    consumer.watermark_refusals = 3
    assert _drain(part) == [0, 1, 2]


def test_an_end_offset_refused_beyond_the_broker_timeout_is_a_clear_error(
    consumer: type[FakeConsumer],
) -> None:
    consumer.watermark_refusals = 10**6
    source = TransactionSource("unused:9092", TOPIC, stop_at_end=True, broker_timeout_s=0.5)
    with pytest.raises(KafkaUnavailable, match=r"end offset of tx\[0\] is unknown after 0.5s"):
        source.build_part("in", f"0-{TOPIC}", None)


def test_a_gap_between_batches_stops_the_source_naming_partition_and_offsets(
    consumer: type[FakeConsumer],
) -> None:
    consumer.script = [[0, 1], [5, 6]]
    part = _part()
    assert [r.offset for r in part.next_batch()] == [0, 1]
    with pytest.raises(InputSkipped, match=r"tx\[0\]: offsets 2\.\.4 .*next record at 5"):
        part.next_batch()
    assert part.snapshot() == 2  # recovery resumes at the first offset never returned


def test_a_gap_inside_a_batch_stops_the_source(consumer: type[FakeConsumer]) -> None:
    consumer.script = [[0, 1, 3]]
    with pytest.raises(InputSkipped, match=r"tx\[0\]: offsets 2\.\.2 "):
        _part().next_batch()


def test_a_gap_after_resuming_from_recovery_is_an_error(consumer: type[FakeConsumer]) -> None:
    consumer.script = [[12, 13]]
    with pytest.raises(InputSkipped, match=r"offsets 10\.\.11 "):
        _part(resume=10).next_batch()


def test_gaps_are_allowed_on_compacted_or_transactional_topics(
    consumer: type[FakeConsumer],
) -> None:
    consumer.script, consumer.high = [[0, 1], [5, 6]], 7
    assert _drain(_part(stop_at_end=True, allow_offset_gaps=True)) == [0, 1, 5, 6]


def test_records_delivered_again_are_dropped_so_each_is_judged_once(
    consumer: type[FakeConsumer],
) -> None:
    consumer.script, consumer.high = [[0, 1, 2], [1, 2, 3], [4]], 5
    assert _drain(_part(stop_at_end=True)) == [0, 1, 2, 3, 4]


def test_stop_at_end_with_the_position_past_the_records_returned_is_an_error(
    consumer: type[FakeConsumer],
) -> None:
    # The consumer's position says the partition is read to its end (5), but only offsets
    # 0 and 1 were ever returned: ending here would exit 0 with offsets 2..4 unjudged.
    consumer.script, consumer.high, consumer.reported_position = [[0, 1]], 5, 5
    part = _part(stop_at_end=True)
    with pytest.raises(InputSkipped, match=r"tx\[0\]: offsets 2\.\.4 "):
        _drain(part)


def test_stop_at_end_with_nothing_returned_and_the_position_at_the_end_is_an_error(
    consumer: type[FakeConsumer],
) -> None:
    consumer.script, consumer.high, consumer.reported_position = [], 3, 3
    with pytest.raises(InputSkipped, match=r"tx\[0\]: offsets 0\.\.2 "):
        _drain(_part(stop_at_end=True))


class FakeProducer:
    def __init__(self, undelivered: int) -> None:
        self.undelivered = undelivered

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return self.undelivered


def test_a_sink_closing_with_messages_unconfirmed_fails_loudly() -> None:
    sink = _SinkPartition(FakeProducer(0), "alerts", 1.0, lambda: None)
    sink.write_batch([OutMessage(b"k", b"v")])
    sink._producer = FakeProducer(3)  # type: ignore[assignment]
    with pytest.raises(KafkaUnavailable, match=r"3 message\(s\) to 'alerts' were not delivered"):
        sink.close()


def test_a_delivery_failure_reported_at_close_fails_loudly() -> None:
    sink = _SinkPartition(FakeProducer(0), "alerts", 1.0, lambda: None)
    sink._delivered(kafka_io.KafkaError(kafka_io.KafkaError._MSG_TIMED_OUT), None)
    with pytest.raises(KafkaUnavailable, match=r"1 message\(s\) to 'alerts' failed"):
        sink.close()
