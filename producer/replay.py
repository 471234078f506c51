"""Replaying a file of v1 transactions (JSON lines, or CSV with a header) as Kafka records.

Records go out in file order, so a replay and a backtest over the same file see the same
sequence; ``sort`` orders them by event time first (stable: ties keep file order, and the
whole file is held in memory). JSON lines are sent byte for byte as they are in the file
(unless timestamps are shifted); CSV rows become JSON objects with the contract's fields in
the contract's order (other columns, e.g. a fraud label, are not sent).

Without ``skip_invalid`` the whole file is checked first and nothing is sent if any line is
not a valid v1 transaction; ``raw`` sends every non-blank line unchecked (for dead-letter
tests). Nothing here touches Kafka.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from fraudwatch.contract import (
    InvalidTransaction,
    Transaction,
    epoch_ms,
    format_ts,
    from_epoch_ms,
    parse_transaction,
)
from producer.records import Record

Format = Literal["auto", "jsonl", "csv"]

CONTRACT_FIELDS = tuple(Transaction.model_fields)
_NUMERIC_FIELDS = frozenset({"amount", "latitude", "longitude"})
MAX_LISTED_ERRORS = 20


class InvalidLine(NamedTuple):
    """A line that is not a valid v1 transaction, with the contract's reason code."""

    line_no: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}: {self.detail}"


class ReplayFileInvalid(ValueError):
    """The file has invalid lines and ``skip_invalid`` is off: nothing was sent."""

    def __init__(self, path: Path, errors: list[InvalidLine], total: int) -> None:
        listed = "\n".join(f"  {e}" for e in errors)
        more = f"\n  ... and {total - len(errors)} more" if total > len(errors) else ""
        super().__init__(
            f"{path}: {total} line(s) are not valid v1 transactions; nothing was sent.\n"
            f"{listed}{more}\nFix them, or pass --skip-invalid to send the valid lines only "
            "(--raw sends every line unchecked)."
        )
        self.errors = errors
        self.total = total


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to read and order a replay file."""

    path: Path
    fmt: Format = "auto"
    sort: bool = False
    shift_to_now: bool = False
    skip_invalid: bool = False
    raw: bool = False

    def __post_init__(self) -> None:
        if self.raw and (self.sort or self.shift_to_now):
            raise ValueError(
                "--raw sends lines exactly as they are: it cannot be combined with "
                "--sort or --shift-to-now"
            )


def detect_format(path: Path, fmt: Format = "auto") -> Literal["jsonl", "csv"]:
    """``csv`` for ``*.csv`` files, JSON lines otherwise (unless ``fmt`` says)."""
    if fmt != "auto":
        return fmt
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _csv_value(field: str, text: str) -> Any:
    if field in _NUMERIC_FIELDS:
        try:
            return float(text)
        except ValueError:
            return text  # left as text, so validation names the field
    return text


def read_lines(path: Path, fmt: Format = "auto") -> Iterator[tuple[int, bytes]]:
    """``(line number, message bytes)`` for every non-blank line or CSV row of the file."""
    if detect_format(path, fmt) == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            missing = [c for c in CONTRACT_FIELDS if c not in reader.fieldnames]
            if missing:
                raise ReplayFileInvalid(
                    path,
                    [InvalidLine(1, "csv_header", f"missing column(s): {', '.join(missing)}")],
                    1,
                )
            for row in reader:
                obj = {k: _csv_value(k, row[k]) for k in CONTRACT_FIELDS if row.get(k) is not None}
                yield reader.line_num, orjson.dumps(obj)
        return
    with path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            raw = line.rstrip(b"\r\n")
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.strip():
                yield line_no, raw


def check_line(line_no: int, raw: bytes) -> Transaction | InvalidLine:
    """The validated transaction, or why this line is not one."""
    try:
        return parse_transaction(raw)
    except InvalidTransaction as exc:
        return InvalidLine(line_no, exc.reason, exc.detail)


def _loose_key_and_ts(raw: bytes) -> tuple[bytes | None, int]:
    """Best-effort key and event time of an unchecked line (``-1``: no usable timestamp)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, -1
    if not isinstance(obj, dict):
        return None, -1
    account = obj.get("account_id")
    key = account.encode() if isinstance(account, str) and account else None
    ts = obj.get("timestamp")
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            return key, -1
        if parsed.tzinfo is not None:
            return key, epoch_ms(parsed)
    return key, -1


class ReplaySource:
    """The records of one file, in send order; ``invalid`` lists what ``skip_invalid`` skipped."""

    def __init__(
        self, options: ReplayOptions, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    ) -> None:
        self.options = options
        self._now_ms = now_ms
        self.invalid: list[InvalidLine] = []
        self.invalid_count = 0
        self.first_ts_ms: int | None = None

    def validate(self) -> int:
        """Check every line; return how many are valid.

        Raises:
            ReplayFileInvalid: with up to ``MAX_LISTED_ERRORS`` line-numbered errors.
        """
        errors: list[InvalidLine] = []
        total = valid = 0
        for line_no, raw in read_lines(self.options.path, self.options.fmt):
            checked = check_line(line_no, raw)
            if isinstance(checked, InvalidLine):
                total += 1
                if len(errors) < MAX_LISTED_ERRORS:
                    errors.append(checked)
            else:
                valid += 1
        if total:
            raise ReplayFileInvalid(self.options.path, errors, total)
        return valid

    def _checked(self) -> Iterator[tuple[int, Transaction, bytes]]:
        """Valid lines as (event time ms, transaction, bytes); invalid ones recorded or fatal."""
        for line_no, raw in read_lines(self.options.path, self.options.fmt):
            checked = check_line(line_no, raw)
            if isinstance(checked, InvalidLine):
                if not self.options.skip_invalid:
                    raise ReplayFileInvalid(self.options.path, [checked], 1)
                self.invalid_count += 1
                if len(self.invalid) < MAX_LISTED_ERRORS:
                    self.invalid.append(checked)
                continue
            yield epoch_ms(checked.timestamp), checked, raw

    def records(self) -> Iterator[Record]:
        """The file's records in send order (call :meth:`validate` first for all-or-nothing)."""
        opts = self.options
        if opts.raw:
            for _, raw in read_lines(opts.path, opts.fmt):
                key, ts = _loose_key_and_ts(raw)
                if self.first_ts_ms is None and ts >= 0:
                    self.first_ts_ms = ts
                yield Record(ts, key, raw, None)
            return
        checked: Iterator[tuple[int, Transaction, bytes]] = self._checked()
        if opts.sort:
            checked = iter(sorted(checked, key=lambda item: item[0]))
        shift = 0
        for original_ts, txn, raw in checked:
            if self.first_ts_ms is None:
                self.first_ts_ms = original_ts
                if opts.shift_to_now:
                    shift = self._now_ms() - original_ts
            if not opts.shift_to_now:
                yield Record(original_ts, txn.account_id.encode(), raw, None)
                continue
            ts = original_ts + shift
            obj = orjson.loads(raw)
            obj["timestamp"] = format_ts(from_epoch_ms(ts))
            yield Record(ts, txn.account_id.encode(), orjson.dumps(obj), None)
