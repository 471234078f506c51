"""The send loop: limits, pacing, stop requests, delivery failures and what it writes."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from itertools import count, islice

import orjson
import pytest

from producer.errors import DeliveryFailed
from producer.kafka_sink import NullSink
from producer.records import Label, Record
from producer.runner import (
    EventTimePacer,
    LabelWriter,
    Limits,
    RatePacer,
    StopRequest,
    run,
)


class RecordingSink:
    """A sink that keeps what it was given and can be told to fail."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[bytes | None, bytes, Label | None]] = []
        self.delivered = 0
        self.failed = 0
        self.flushed = False
        self.fail_after = fail_after

    def send(self, key: bytes | None, value: bytes, label: Label | None) -> None:
        self.sent.append((key, value, label))
        self.delivered += 1

    def poll(self) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            self.failed = 1
            raise DeliveryFailed("1 record(s) could not be delivered to t: broker gone")

    def flush(self, timeout_s: float) -> int:
        self.flushed = True
        return 0

    def close(self) -> None:
        """Nothing to release."""


def _stream(start_ms: int = 0, step_ms: int = 10) -> Iterator[Record]:
    for i in count():
        label = Label(f"tx-{i}", "a", f"s-{i}", "card_testing") if i % 10 == 0 else None
        yield Record(start_ms + i * step_ms, b"a", b'{"n":%d}' % i, label)


def test_count_limit_sends_exactly_that_many_and_flushes() -> None:
    sink = RecordingSink()
    stats = run(_stream(), sink, limits=Limits(count=2500))
    assert len(sink.sent) == stats.sent == 2500
    assert stats.stopped_by == "count"
    assert sink.flushed
    assert stats.by_scenario == {"card_testing": 250}
    assert stats.genuine == 2250


def test_days_limit_stops_before_the_first_record_at_the_boundary() -> None:
    sink = RecordingSink()
    stats = run(_stream(step_ms=1000), sink, limits=Limits(until_ts_ms=60_000))
    assert stats.sent == 60
    assert stats.stopped_by == "days"
    assert stats.first_ts_ms == 0
    assert stats.last_ts_ms == 59_000


def test_end_of_input_ends_the_run() -> None:
    stats = run(islice(_stream(), 7), RecordingSink(), limits=Limits())
    assert (stats.sent, stats.stopped_by) == (7, "end of input")


def test_a_stop_request_ends_the_run_promptly_and_still_flushes() -> None:
    stop = StopRequest()
    sink = RecordingSink()

    def stream() -> Iterator[Record]:
        for i, rec in enumerate(_stream()):
            if i == 10:
                stop.signal = "SIGTERM"
            yield rec

    stats = run(stream(), sink, limits=Limits(), stop=stop)
    assert stats.stopped_by == "SIGTERM"
    assert 10 < stats.sent <= 1024
    assert sink.flushed


def test_signal_handlers_turn_sigterm_into_a_stop_request() -> None:
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    try:
        stop.install()
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal == "SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def test_a_second_sigint_aborts() -> None:
    previous = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    try:
        stop.install()
        signal.raise_signal(signal.SIGINT)
        assert stop.signal == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_delivery_failure_stops_the_run_and_says_why() -> None:
    sink = RecordingSink(fail_after=1)
    stats = run(_stream(), sink, limits=Limits(count=5000))
    assert stats.stopped_by == "delivery failed"
    assert stats.error is not None
    assert "broker gone" in stats.error
    assert stats.sent == 1024  # noticed at the first housekeeping round


def test_out_gets_every_record_sent_as_one_line() -> None:
    out = io.BytesIO()
    run(_stream(), NullSink(), limits=Limits(count=50), out=out)
    assert out.getvalue().splitlines() == [b'{"n":%d}' % i for i in range(50)]


def test_labels_list_exactly_the_labelled_records_with_their_position() -> None:
    buffer = io.BytesIO()
    labels = LabelWriter(buffer)
    run(_stream(), NullSink(labels), limits=Limits(count=50))
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert labels.lines == len(lines) == 5
    assert lines[0] == {
        "transaction_id": "tx-0",
        "account_id": "a",
        "story_id": "s-0",
        "scenario": "card_testing",
        "partition": None,
        "offset": None,
    }


def test_rate_pacer_spaces_records_evenly() -> None:
    pacer = RatePacer(200.0)
    assert [pacer.due(n, 0) for n in (0, 1, 200)] == [0.0, 0.005, 1.0]


def test_event_time_pacer_follows_event_time_at_the_given_speed() -> None:
    pacer = EventTimePacer(speed=10.0)
    assert pacer.due(0, 5_000) == 0.0
    assert pacer.due(1, 15_000) == 1.0
    assert pacer.due(2, -1) == 0.0  # no timestamp: immediately
    assert pacer.due(3, 1_000) < 0  # earlier than the first: immediately


def test_a_paced_run_achieves_its_rate() -> None:
    stats = run(_stream(), NullSink(), limits=Limits(count=601), pacer=RatePacer(2000.0))
    assert stats.elapsed_s == pytest.approx(0.3, abs=0.08)


def test_duration_limit_stops_a_paced_run_on_time() -> None:
    stats = run(_stream(), NullSink(), limits=Limits(duration_s=0.3), pacer=RatePacer(1000.0))
    assert stats.stopped_by == "duration"
    assert stats.sent == pytest.approx(300, abs=40)


def _with_chargebacks(records: Iterator[Record]) -> Iterator[Record]:
    """Every third transaction is followed by a chargeback about it, a little later."""
    for i, record in enumerate(records):
        yield record
        if i % 3 == 0:
            yield Record(record.ts_ms + 1, b"a", b'{"chargeback":%d}' % i, None, chargeback=True)


def test_chargebacks_go_to_their_own_sink_and_do_not_count_as_records() -> None:
    sink, chargebacks = RecordingSink(), RecordingSink()
    out = io.BytesIO()
    stats = run(
        _with_chargebacks(_stream()),
        sink,
        limits=Limits(count=30),
        out=out,
        chargeback_sink=chargebacks,
    )
    assert stats.sent == len(sink.sent) == 30
    assert stats.chargebacks == stats.chargebacks_delivered == len(chargebacks.sent) == 10
    assert all(value.startswith(b'{"n"') for _, value, _ in sink.sent)
    assert all(value.startswith(b'{"chargeback"') for _, value, _ in chargebacks.sent)
    assert b"chargeback" not in out.getvalue()  # --out holds transactions only
    assert chargebacks.flushed


def test_a_chargeback_without_a_chargeback_sink_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no sink for chargebacks"):
        run(_with_chargebacks(_stream()), RecordingSink(), limits=Limits(count=5))


def test_a_failed_chargeback_delivery_stops_the_run() -> None:
    chargebacks = RecordingSink(fail_after=2)
    stats = run(
        _with_chargebacks(_stream()),
        RecordingSink(),
        limits=Limits(count=5000),
        chargeback_sink=chargebacks,
    )
    assert stats.stopped_by == "delivery failed"
    assert stats.chargebacks_failed == 1
    assert "broker gone" in (stats.error or "")
