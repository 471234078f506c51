"""Replaying a file of v1 transactions or v1 fraud labels (JSON lines, or CSV with a header).

What a file holds is a :class:`MessageKind`: ``TRANSACTIONS`` (``producer replay``: key
``account_id``, event time ``timestamp``) or ``LABELS`` (``producer labels``: key
``transaction_id``, event time ``reported_at``); everything else is shared.

Records go out in file order, so a replay and a backtest over the same file see the same
sequence; ``sort`` orders them by event time first (stable: ties keep file order, and the
whole file is held in memory). JSON lines are sent byte for byte as they are in the file
(unless timestamps are shifted); CSV rows become JSON objects with the contract's fields in
the contract's order (other columns, e.g. a fraud label, are not sent).

Without ``skip_invalid`` the whole file is checked first and nothing is sent if any line is
not valid; ``raw`` sends every non-blank line unchecked (for dead-letter tests). Nothing here
touches Kafka.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import orjson

from fraudwatch.contract import (
    FraudLabel,
    InvalidLabel,
    InvalidTransaction,
    Transaction,
    epoch_ms,
    format_ts,
    from_epoch_ms,
    parse_label,
    parse_transaction,
)
from producer.records import Record

Format = Literal["auto", "jsonl", "csv"]

CONTRACT_FIELDS = tuple(Transaction.model_fields)
LABEL_FIELDS = tuple(FraudLabel.model_fields)
MAX_LISTED_ERRORS = 20

M = TypeVar("M", Transaction, FraudLabel)


class InvalidLine(NamedTuple):
    """A line that is not a valid v1 transaction, with the contract's reason code."""

    line_no: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}: {self.detail}"


def check_line(line_no: int, raw: bytes) -> Transaction | InvalidLine:
    """The validated transaction, or why this line is not one."""
    try:
        return parse_transaction(raw)
    except InvalidTransaction as exc:
        return InvalidLine(line_no, exc.reason, exc.detail)


def check_label_line(line_no: int, raw: bytes) -> FraudLabel | InvalidLine:
    """The validated fraud label, or why this line is not one."""
    try:
        return parse_label(raw)
    except InvalidLabel as exc:
        return InvalidLine(line_no, exc.reason, exc.detail)


@dataclass(frozen=True, slots=True)
class MessageKind(Generic[M]):
    """What a replay file holds: how its lines are checked, keyed, timed and read from CSV."""

    name: str  # in messages: "v1 transactions"
    fields: tuple[str, ...]  # the contract's fields: the CSV columns sent, in this order
    optional: frozenset[str]  # columns a CSV may lack or leave empty (then not sent)
    numeric: frozenset[str]  # CSV text converted to a JSON number
    check: Callable[[int, bytes], M | InvalidLine]
    key: Callable[[M], bytes]
    key_field: str  # the key of an unchecked (--raw) line, when it has this field
    event_ms: Callable[[M], int]  # what --sort orders by and --speed paces by
    event_field: str  # the same, in an unchecked line
    shifted: tuple[str, ...]  # the times --shift-to-now moves (all by the same amount)


TRANSACTIONS: MessageKind[Transaction] = MessageKind(
    name="v1 transactions",
    fields=CONTRACT_FIELDS,
    optional=frozenset(),
    numeric=frozenset({"amount", "latitude", "longitude"}),
    check=check_line,
    key=lambda txn: txn.account_id.encode(),
    key_field="account_id",
    event_ms=lambda txn: epoch_ms(txn.timestamp),
    event_field="timestamp",
    shifted=("timestamp",),
)
# A labels file rarely knows the account; the transaction id keeps a dispute and its
# reversal in order on one partition. Labels are paced by when they became known, and a
# shift moves the labelled transaction's time with it (the delay stays what it was).
LABELS: MessageKind[FraudLabel] = MessageKind(
    name="v1 fraud labels",
    fields=LABEL_FIELDS,
    optional=frozenset({"card_number", "card_token", "source"}),
    numeric=frozenset({"amount"}),
    check=check_label_line,
    key=lambda label: label.transaction_id.encode(),
    key_field="transaction_id",
    event_ms=lambda label: epoch_ms(label.reported_at),
    event_field="reported_at",
    shifted=("timestamp", "reported_at"),
)


class ReplayFileInvalid(ValueError):
    """The file has invalid lines and ``skip_invalid`` is off: nothing was sent."""

    def __init__(
        self, path: Path, errors: list[InvalidLine], total: int, what: str = TRANSACTIONS.name
    ) -> None:
        listed = "\n".join(f"  {e}" for e in errors)
        more = f"\n  ... and {total - len(errors)} more" if total > len(errors) else ""
        super().__init__(
            f"{path}: {total} line(s) are not valid {what}; nothing was sent.\n"
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
    kind: MessageKind[Any] = TRANSACTIONS

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


def _csv_value(kind: MessageKind[Any], field: str, text: str) -> Any:
    if field in kind.numeric:
        try:
            return float(text)
        except ValueError:
            return text  # left as text, so validation names the field
    return text


def read_lines(
    path: Path, fmt: Format = "auto", kind: MessageKind[Any] = TRANSACTIONS
) -> Iterator[tuple[int, bytes]]:
    """``(line number, message bytes)`` for every non-blank line or CSV row of the file."""
    if detect_format(path, fmt) == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            missing = [
                c for c in kind.fields if c not in reader.fieldnames and c not in kind.optional
            ]
            if missing:
                raise ReplayFileInvalid(
                    path,
                    [InvalidLine(1, "csv_header", f"missing column(s): {', '.join(missing)}")],
                    1,
                    kind.name,
                )
            optional = kind.optional
            for row in reader:
                obj = {
                    k: _csv_value(kind, k, row[k])
                    for k in kind.fields
                    if row.get(k) is not None and not (k in optional and row[k] == "")
                }
                yield reader.line_num, orjson.dumps(obj)
        return
    with path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            raw = line.rstrip(b"\r\n")
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.strip():
                yield line_no, raw


def _loose_key_and_ts(kind: MessageKind[Any], raw: bytes) -> tuple[bytes | None, int]:
    """Best-effort key and event time of an unchecked line (``-1``: no usable timestamp)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, -1
    if not isinstance(obj, dict):
        return None, -1
    key_value = obj.get(kind.key_field)
    key = key_value.encode() if isinstance(key_value, str) and key_value else None
    ts = obj.get(kind.event_field)
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
        opts = self.options
        errors: list[InvalidLine] = []
        total = valid = 0
        for line_no, raw in read_lines(opts.path, opts.fmt, opts.kind):
            checked = opts.kind.check(line_no, raw)
            if isinstance(checked, InvalidLine):
                total += 1
                if len(errors) < MAX_LISTED_ERRORS:
                    errors.append(checked)
            else:
                valid += 1
        if total:
            raise ReplayFileInvalid(opts.path, errors, total, opts.kind.name)
        return valid

    def _checked(self) -> Iterator[tuple[int, Any, bytes]]:
        """Valid lines as (event time ms, message, bytes); invalid ones recorded or fatal."""
        opts = self.options
        kind = opts.kind
        for line_no, raw in read_lines(opts.path, opts.fmt, kind):
            checked = kind.check(line_no, raw)
            if isinstance(checked, InvalidLine):
                if not opts.skip_invalid:
                    raise ReplayFileInvalid(opts.path, [checked], 1, kind.name)
                self.invalid_count += 1
                if len(self.invalid) < MAX_LISTED_ERRORS:
                    self.invalid.append(checked)
                continue
            yield kind.event_ms(checked), checked, raw

    def records(self) -> Iterator[Record]:
        """The file's records in send order (call :meth:`validate` first for all-or-nothing)."""
        opts = self.options
        kind = opts.kind
        if opts.raw:
            for _, raw in read_lines(opts.path, opts.fmt, kind):
                key, ts = _loose_key_and_ts(kind, raw)
                if self.first_ts_ms is None and ts >= 0:
                    self.first_ts_ms = ts
                yield Record(ts, key, raw, None)
            return
        checked: Iterator[tuple[int, Any, bytes]] = self._checked()
        if opts.sort:
            checked = iter(sorted(checked, key=lambda item: item[0]))
        shift = 0
        for original_ts, message, raw in checked:
            if self.first_ts_ms is None:
                self.first_ts_ms = original_ts
                if opts.shift_to_now:
                    shift = self._now_ms() - original_ts
            if not opts.shift_to_now:
                yield Record(original_ts, kind.key(message), raw, None)
                continue
            obj = orjson.loads(raw)
            for field in kind.shifted:
                obj[field] = format_ts(from_epoch_ms(epoch_ms(getattr(message, field)) + shift))
            yield Record(original_ts + shift, kind.key(message), orjson.dumps(obj), None)
