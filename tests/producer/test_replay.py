"""Replaying files: order, formats, line-numbered errors, raw mode and time shifting."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from fraudwatch.contract import epoch_ms, parse_label, parse_transaction
from producer.replay import (
    CONTRACT_FIELDS,
    LABEL_FIELDS,
    LABELS,
    InvalidLine,
    ReplayFileInvalid,
    ReplayOptions,
    ReplaySource,
    detect_format,
)
from tests.factories import make_pan, make_txn

T0 = 1_795_000_000_000


def _line(i: int, ts: str, **overrides: object) -> bytes:
    return orjson.dumps(
        make_txn(transaction_id=f"tx-{i}", timestamp=ts, account_id=f"acct-{i % 3}", **overrides)
    )


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _ids(source: ReplaySource) -> list[str]:
    return [orjson.loads(r.value)["transaction_id"] for r in source.records()]


@pytest.fixture
def unordered(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "unordered.jsonl",
        [
            _line(1, "2026-11-25T10:00:05Z"),
            _line(2, "2026-11-25T10:00:01Z"),
            _line(3, "2026-11-25T10:00:05Z"),
            _line(4, "2026-11-25T09:59:59+00:00"),
        ],
    )


def test_records_go_out_in_file_order_byte_for_byte(unordered: Path) -> None:
    source = ReplaySource(ReplayOptions(unordered))
    records = list(source.records())
    assert [r.value for r in records] == unordered.read_bytes().splitlines()
    assert [r.key for r in records] == [b"acct-1", b"acct-2", b"acct-0", b"acct-1"]


def test_sort_orders_by_event_time_and_keeps_file_order_for_ties(unordered: Path) -> None:
    assert _ids(ReplaySource(ReplayOptions(unordered, sort=True))) == [
        "tx-4",
        "tx-2",
        "tx-1",
        "tx-3",
    ]


def test_record_times_are_the_events_epoch_milliseconds(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", [_line(1, "2026-11-18T11:06:40.123Z")])
    (record,) = ReplaySource(ReplayOptions(path)).records()
    assert record.ts_ms == T0 + 123


def test_an_invalid_file_is_refused_with_line_numbered_errors(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        [
            _line(1, "2026-11-25T10:00:00Z"),
            b"",  # blank lines are not records
            b'{"transaction_id": ',
            _line(4, "2026-11-25T10:00:00Z", amount=-5),
            _line(5, "2026-11-25T10:00:00"),
        ],
    )
    with pytest.raises(ReplayFileInvalid) as err:
        ReplaySource(ReplayOptions(path)).validate()
    assert [e.line_no for e in err.value.errors] == [3, 4, 5]
    assert [e.reason for e in err.value.errors] == ["invalid_json", *["invalid_transaction"] * 2]
    message = str(err.value)
    assert "line 4: invalid_transaction: amount" in message
    assert "nothing was sent" in message
    assert "--skip-invalid" in message


def test_skip_invalid_sends_the_valid_lines_and_lists_the_others(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        [_line(1, "2026-11-25T10:00:00Z"), b"not json", _line(3, "2026-11-25T10:00:01Z")],
    )
    source = ReplaySource(ReplayOptions(path, skip_invalid=True))
    assert _ids(source) == ["tx-1", "tx-3"]
    assert source.invalid_count == 1
    assert source.invalid == [InvalidLine(2, "invalid_json", source.invalid[0].detail)]


def test_without_skip_invalid_streaming_stops_at_the_first_invalid_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", [_line(1, "2026-11-25T10:00:00Z"), b"[]"])
    records = ReplaySource(ReplayOptions(path)).records()
    next(records)
    with pytest.raises(ReplayFileInvalid, match="line 2: not_an_object"):
        next(records)


def test_raw_sends_every_line_unchecked_with_a_best_effort_key(tmp_path: Path) -> None:
    lines = [b"not json", _line(2, "2026-11-25T10:00:00Z", amount="NaN"), b'{"account_id": 5}']
    path = _write(tmp_path / "raw.jsonl", lines)
    records = list(ReplaySource(ReplayOptions(path, raw=True)).records())
    assert [r.value for r in records] == lines
    assert [r.key for r in records] == [None, b"acct-2", None]
    assert [r.ts_ms >= 0 for r in records] == [False, True, False]


def test_raw_cannot_be_sorted_or_shifted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--raw"):
        ReplayOptions(tmp_path / "x.jsonl", raw=True, sort=True)
    with pytest.raises(ValueError, match="--raw"):
        ReplayOptions(tmp_path / "x.jsonl", raw=True, shift_to_now=True)


def test_shift_to_now_moves_the_first_event_to_now_and_keeps_the_gaps(unordered: Path) -> None:
    now = T0 + 7 * 86_400_000
    source = ReplaySource(ReplayOptions(unordered, shift_to_now=True), now_ms=lambda: now)
    records = list(source.records())
    original = [r.ts_ms for r in ReplaySource(ReplayOptions(unordered)).records()]
    assert records[0].ts_ms == now
    assert [r.ts_ms - now for r in records] == [t - original[0] for t in original]
    for rec in records:
        txn = parse_transaction(rec.value)
        assert int(txn.timestamp.timestamp() * 1000) == rec.ts_ms
        assert list(orjson.loads(rec.value)) == list(CONTRACT_FIELDS)  # field order kept


def test_csv_rows_become_contract_json_in_the_contracts_field_order(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = [make_txn(transaction_id=f"tx-{i}", is_fraud="0") for i in range(3)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["is_fraud", *reversed(CONTRACT_FIELDS)])
        writer.writeheader()
        writer.writerows(rows)
    records = list(ReplaySource(ReplayOptions(path)).records())
    assert len(records) == 3
    for rec, row in zip(records, rows, strict=True):
        obj = orjson.loads(rec.value)
        assert list(obj) == list(CONTRACT_FIELDS)  # the label column is not sent
        assert obj["amount"] == row["amount"]
        assert isinstance(obj["latitude"], float)
        parse_transaction(rec.value)


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CONTRACT_FIELDS))
        writer.writeheader()
        writer.writerow(make_txn())
        writer.writerow(make_txn(amount="forty"))
    with pytest.raises(ReplayFileInvalid, match=r"line 3: invalid_transaction: amount"):
        ReplaySource(ReplayOptions(path)).validate()


def test_csv_without_the_contract_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("id,value\n1,2\n")
    with pytest.raises(ReplayFileInvalid, match="missing column"):
        list(ReplaySource(ReplayOptions(path)).records())


def test_format_follows_the_extension_unless_given(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "a.CSV") == "csv"
    assert detect_format(tmp_path / "a.jsonl") == "jsonl"
    assert detect_format(tmp_path / "a.txt", "csv") == "csv"


def test_a_byte_order_mark_on_the_first_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _line(1, "2026-11-25T10:00:00Z") + b"\r\n")
    assert ReplaySource(ReplayOptions(path)).validate() == 1


def _label(i: int, reported_at: str, **overrides: object) -> dict[str, object]:
    label: dict[str, object] = {
        "transaction_id": f"tx-{i}", "card_number": make_pan(i), "merchant_id": "m-1",
        "timestamp": "2026-11-25T10:00:00.000Z", "amount": 12.5, "currency": "EUR",
        "label": "fraud", "reported_at": reported_at, "source": "chargeback",
    }  # fmt: skip
    label.update(overrides)
    return label


def test_labels_are_keyed_by_transaction_and_timed_by_when_they_were_reported(
    tmp_path: Path,
) -> None:
    lines = [
        orjson.dumps(_label(1, "2026-11-30T10:00:05.000Z")),
        orjson.dumps(_label(2, "2026-11-30T10:00:01.000Z", label="genuine")),
    ]
    path = _write(tmp_path / "labels.jsonl", lines)
    options = ReplayOptions(path, sort=True, kind=LABELS)
    assert ReplaySource(options).validate() == 2
    records = list(ReplaySource(options).records())
    assert [r.value for r in records] == lines[::-1]  # sorted by reported_at, bytes kept
    assert [r.key for r in records] == [b"tx-2", b"tx-1"]
    assert records[0].ts_ms == epoch_ms(parse_label(lines[1]).reported_at)


def test_label_csv_rows_leave_out_empty_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    rows = [
        _label(1, "2026-11-30T10:00:00Z", card_number="", card_token="ab" * 16, source=""),
        _label(2, "2026-11-30T10:00:01Z", card_token=""),
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["account_id", *LABEL_FIELDS])
        writer.writeheader()
        writer.writerows([{**row, "account_id": "acct-9"} for row in rows])
    first, second = (
        orjson.loads(r.value) for r in ReplaySource(ReplayOptions(path, kind=LABELS)).records()
    )
    assert list(first) == [f for f in LABEL_FIELDS if f not in ("card_number", "source")]
    assert "card_token" not in second
    assert first["amount"] == 12.5
    parse_label(orjson.dumps(first))


def test_label_csv_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("transaction_id,card_number,label\ntx-1,4111111111111111,fraud\n")
    with pytest.raises(ReplayFileInvalid, match=r"missing column.*merchant_id") as err:
        list(ReplaySource(ReplayOptions(path, kind=LABELS)).records())
    assert "not valid v1 fraud labels" in str(err.value)


def test_shifting_labels_moves_both_times_and_keeps_the_delay(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels.jsonl", [orjson.dumps(_label(1, "2026-11-30T10:00:00Z"))])
    now = T0 + 30 * 86_400_000
    options = ReplayOptions(path, shift_to_now=True, kind=LABELS)
    (record,) = ReplaySource(options, now_ms=lambda: now).records()
    label = parse_label(record.value)
    assert record.ts_ms == epoch_ms(label.reported_at) == now
    assert label.reported_at - label.timestamp == timedelta(days=5)


def test_raw_labels_are_keyed_by_transaction_id_when_readable(tmp_path: Path) -> None:
    valid = _label(1, "2026-11-30T10:00:00Z")
    lines = [b"nope", orjson.dumps({**valid, "amount": "x"})]
    options = ReplayOptions(_write(tmp_path / "l.jsonl", lines), raw=True, kind=LABELS)
    records = list(ReplaySource(options).records())
    assert [r.value for r in records] == lines
    assert [r.key for r in records] == [None, b"tx-1"]
    assert records[1].ts_ms == epoch_ms(parse_label(orjson.dumps(valid)).reported_at)
