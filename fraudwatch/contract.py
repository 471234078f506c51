"""The event contract: transaction schema v1, the alert document and the dead-letter envelope.

One module shared by the dataflow, the producer and the web app; documented in
``docs/contracts.md``. Validation happens once, at the edge (``parse_transaction``);
inside the pipeline everything is a typed, frozen object. The words these documents carry
(statuses, severities, rule names, label values and sources, currencies) are
``fraudwatch.vocabulary``'s.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from fraudwatch.cards import luhn_valid
from fraudwatch.vocabulary import BASE_CURRENCY, LabelSource, LabelValue

SCHEMA_VERSION = 1
ALERT_SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

Channel = Literal["card_present", "card_not_present"]


def _rfc3339(value: Any) -> Any:
    # pydantic also accepts unix seconds and other ISO 8601 shapes; the contract says RFC 3339.
    # The field is lax (a before-validator hands pydantic a Python str, which strict mode
    # would refuse), so every non-RFC-3339 input must be refused here.
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 timestamp with a UTC offset, e.g. 2026-01-31T12:00:00Z"
        )
    return value


Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Timestamp = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339)]


class Transaction(BaseModel):
    """A card authorization as it arrives on ``payment-transactions`` (schema v1)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    transaction_id: Id64
    timestamp: Timestamp
    card_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{12,19}$")]
    account_id: Id64
    amount: Annotated[float, Field(ge=0, le=1_000_000_000, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    merchant_id: Id64
    merchant_name: Annotated[str, StringConstraints(max_length=200)]
    merchant_category: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
    channel: Channel
    latitude: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    longitude: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form (what the producer sends)."""
        d = self.model_dump()
        d["timestamp"] = format_ts(self.timestamp)
        return d


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_ts_or_none(ts: datetime | None) -> str | None:
    """``format_ts``, or ``None`` for a time that is not known."""
    return None if ts is None else format_ts(ts)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(ts: datetime) -> int:
    """Exact milliseconds since the epoch of an aware datetime (BSON date precision), in
    integer arithmetic: a float round trip could move a time by one millisecond."""
    return (ts - _EPOCH) // _MS


def from_epoch_ms(millis: int) -> datetime:
    """The aware UTC datetime of ``epoch_ms``'s result."""
    return _EPOCH + millis * _MS


class InvalidTransaction(ValueError):
    """A message that is not a valid v1 transaction; ``reason`` is a stable code for the DLQ."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _describe(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        msg = first["msg"]
        if "unicode" in msg or "utf-8" in msg.lower():
            return "invalid_encoding", msg
        return "invalid_json", msg
    if first["type"] == "model_type" and not first["loc"]:
        return "not_an_object", "the message must be a JSON object"
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(message)"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid_transaction", "; ".join(parts) + more


def parse_transaction(raw: bytes | None) -> Transaction:
    """Validate one Kafka message value as a v1 transaction.

    Raises:
        InvalidTransaction: with a reason code (``oversized``, ``empty``, ``invalid_encoding``,
            ``invalid_json``, ``not_an_object``, ``invalid_transaction``, ``luhn``,
            ``timestamp_out_of_range``) and a human-readable detail.
    """
    if raw is None or len(raw) == 0:
        raise InvalidTransaction("empty", "the message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidTransaction(
            "oversized", f"{len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        txn = Transaction.model_validate_json(raw)
    except ValidationError as exc:
        reason, detail = _describe(exc)
        if reason == "invalid_json":
            # Only on this (rare) path: was the JSON broken, or not UTF-8 at all?
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as enc:
                reason, detail = "invalid_encoding", f"not UTF-8: {enc.reason} at byte {enc.start}"
        raise InvalidTransaction(reason, detail) from None
    if not (_MIN_TS <= txn.timestamp < _MAX_TS):
        raise InvalidTransaction(
            "timestamp_out_of_range", f"timestamp {txn.timestamp} is outside 2000-2100"
        )
    if not luhn_valid(txn.card_number):
        raise InvalidTransaction("luhn", "card_number fails the Luhn check")
    return txn


# --- the dataflow's fast path ------------------------------------------------------------

# Deliberately narrower than the contract's RFC 3339: upper-case T, at most microseconds.
# Every other accepted shape takes the pydantic path, which decides.
_FAST_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})\Z"
_Id64Fast = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class WireTransaction(msgspec.Struct, frozen=True, gc=False):
    """A v1 transaction as the dataflow reads it: ``Transaction``'s fields and limits, with
    the timestamp kept as text (``decode_transaction`` returns its epoch ms alongside)."""

    transaction_id: _Id64Fast
    timestamp: Annotated[str, msgspec.Meta(pattern=_FAST_TS)]
    card_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}\Z")]
    account_id: _Id64Fast
    amount: Annotated[float, msgspec.Meta(ge=0, le=1_000_000_000)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
    merchant_id: _Id64Fast
    merchant_name: Annotated[str, msgspec.Meta(max_length=200)]
    merchant_category: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}\Z")]
    channel: Channel
    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z")]


_WIRE = msgspec.json.Decoder(WireTransaction)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_transaction(raw: bytes | None) -> tuple[WireTransaction, int]:
    """``parse_transaction``'s verdict, about 2x faster: the transaction and its epoch ms.

    msgspec decodes the messages it can prove valid; anything it refuses, or any timestamp
    shape outside its narrow pattern, goes through ``parse_transaction``, which decides (and
    gives a rejection its reason and detail). So the fast path can only ever be stricter
    than the contract, never laxer; tests compare both on every generated input.

    Raises:
        InvalidTransaction: exactly when ``parse_transaction`` does, with its reason.
    """
    # msgspec does not check the UTF-8 of values it skips (unknown fields): the contract does.
    if raw and len(raw) <= MAX_MESSAGE_BYTES and (raw.isascii() or _is_utf8(raw)):
        try:
            w = _WIRE.decode(raw)
            ts = datetime.fromisoformat(w.timestamp)
        except (msgspec.DecodeError, ValueError):  # msgspec.ValidationError is a DecodeError
            pass
        else:
            if _MIN_TS <= ts < _MAX_TS and math.isfinite(w.amount) and luhn_valid(w.card_number):
                return w, epoch_ms(ts)
    txn = parse_transaction(raw)
    fields = txn.model_dump()
    fields["timestamp"] = format_ts(txn.timestamp)
    return WireTransaction(**fields), epoch_ms(txn.timestamp)


class CardEvent(NamedTuple):
    """A validated transaction inside the pipeline: the PAN replaced by token + masked form.

    ``ts`` is the event time in epoch milliseconds (cheap to compare and store).
    ``source_ts`` is the input record's Kafka timestamp (ms), ``partition``/``offset`` its origin.
    A NamedTuple rather than a frozen dataclass: immutable too, and several times cheaper to
    build on the hot path (one per transaction).
    """

    transaction_id: str
    ts: int
    card_token: str
    card_masked: str
    account_id: str
    amount: float
    currency: str
    merchant_id: str
    merchant_name: str
    merchant_category: str
    channel: str
    latitude: float
    longitude: float
    country: str
    source_ts: int = 0
    partition: int = -1
    offset: int = -1

    @property
    def card_present(self) -> bool:
        return self.channel == "card_present"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why one rule fired, in a sentence with the numbers."""

    rule: str
    score: float
    detail: str


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert per flagged transaction, merging every rule that fired."""

    alert_id: str
    event: CardEvent
    score: float
    severity: str
    reasons: tuple[Reason, ...]
    evidence: tuple[str, ...]
    evidence_txns: tuple[dict[str, Any], ...]
    ruleset_version: str
    detected_at: int  # epoch ms, wall clock when the dataflow raised it
    base_currency: str = BASE_CURRENCY
    late: bool = False
    model_version: str = ""  # the model that scored it ("formula-<ruleset>" or a trained one)

    def to_json_dict(self) -> dict[str, Any]:
        """The value written to ``fraud-alerts`` (and, with ``_id``, to MongoDB)."""
        e = self.event
        return {
            "alert_id": self.alert_id,
            "schema_version": ALERT_SCHEMA_VERSION,
            "transaction_id": e.transaction_id,
            "card_token": e.card_token,
            "card_masked": e.card_masked,
            "account_id": e.account_id,
            "timestamp": format_ts(datetime.fromtimestamp(e.ts / 1000, UTC)),
            "detected_at": format_ts(datetime.fromtimestamp(self.detected_at / 1000, UTC)),
            "amount": e.amount,
            "currency": e.currency,
            "merchant_id": e.merchant_id,
            "merchant_name": e.merchant_name,
            "merchant_category": e.merchant_category,
            "channel": e.channel,
            "country": e.country,
            "latitude": e.latitude,
            "longitude": e.longitude,
            "score": self.score,
            "severity": self.severity,
            "reasons": [
                {"rule": r.rule, "score": r.score, "detail": r.detail} for r in self.reasons
            ],
            "evidence": list(self.evidence),
            "evidence_txns": list(self.evidence_txns),
            "base_currency": self.base_currency,
            "late": self.late,
            "ruleset_version": self.ruleset_version,
            "model_version": self.model_version,
            "source_ts": e.source_ts,
            "status": "open",
        }


def alert_id_for(card_token: str, transaction_id: str) -> str:
    """Deterministic alert id: the same card and transaction always give the same id."""
    digest = hashlib.sha256(f"{card_token}\x1f{transaction_id}".encode()).hexdigest()
    return digest[:24]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The envelope written to the dead-letter topic for a message that is not a transaction."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    kafka_timestamp: int | None
    value: bytes | None

    def to_json_dict(self) -> dict[str, Any]:
        value = self.value or b""
        kept = value[:MAX_MESSAGE_BYTES]
        return {
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "kafka_timestamp": self.kafka_timestamp,
            "value_b64": base64.b64encode(kept).decode(),
            "value_length": len(value),
            "value_truncated": len(value) > len(kept),
            "value_sha256": hashlib.sha256(value).hexdigest(),
        }


# --- fraud labels, contract v1 (``fraud-labels``) -----------------------------------------

# Chargeback windows are 120 days; analysts' verdicts come sooner. A label years after its
# transaction is a data error, and would keep state alive long after it could matter.
MAX_LABEL_DELAY = timedelta(days=400)


class FraudLabel(BaseModel):
    """The truth about one earlier transaction, as it arrives on ``fraud-labels`` (v1).

    Exactly one of ``card_number`` (a PAN, as in a chargeback record) or ``card_token`` (the
    console's dispositions) names the card. ``timestamp`` is the original transaction's event
    time; ``reported_at`` is when the truth became known, and is when the detector may use it.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    transaction_id: Id64
    card_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{12,19}$")] | None = None
    card_token: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")] | None = None
    merchant_id: Id64
    timestamp: Timestamp
    amount: Annotated[float, Field(ge=0, le=1_000_000_000, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    label: LabelValue
    reported_at: Timestamp
    source: LabelSource | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form, without the unset card field."""
        d = self.model_dump(exclude_none=True)
        d["timestamp"] = format_ts(self.timestamp)
        d["reported_at"] = format_ts(self.reported_at)
        return d


class InvalidLabel(ValueError):
    """A message that is not a valid v1 label; ``reason`` is a stable code for the DLQ."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_label(raw: bytes | None) -> FraudLabel:
    """Validate one ``fraud-labels`` message value.

    Raises:
        InvalidLabel: reason ``empty``, ``oversized``, ``invalid_encoding``, ``invalid_json``,
            ``not_an_object``, ``invalid_label`` (schema, or not exactly one card field),
            ``luhn`` or ``timestamp_out_of_range``, with a human-readable detail.
    """
    if raw is None or len(raw) == 0:
        raise InvalidLabel("empty", "the message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidLabel("oversized", f"{len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES} bytes")
    try:
        label = FraudLabel.model_validate_json(raw)
    except ValidationError as exc:
        reason, detail = _describe(exc)
        if reason == "invalid_transaction":
            reason = "invalid_label"
        elif reason == "invalid_json":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as enc:
                reason, detail = "invalid_encoding", f"not UTF-8: {enc.reason} at byte {enc.start}"
        raise InvalidLabel(reason, detail) from None
    if (label.card_number is None) == (label.card_token is None):
        raise InvalidLabel(
            "invalid_label", "exactly one of card_number or card_token must be given"
        )
    for name, ts in (("timestamp", label.timestamp), ("reported_at", label.reported_at)):
        if not (_MIN_TS <= ts < _MAX_TS):
            raise InvalidLabel("timestamp_out_of_range", f"{name} {ts} is outside 2000-2100")
    if label.reported_at < label.timestamp:
        raise InvalidLabel("invalid_label", "reported_at is before the transaction's timestamp")
    if label.reported_at - label.timestamp > MAX_LABEL_DELAY:
        raise InvalidLabel(
            "invalid_label",
            f"reported_at is more than {MAX_LABEL_DELAY.days} days after the transaction",
        )
    if label.card_number is not None and not luhn_valid(label.card_number):
        raise InvalidLabel("luhn", "card_number fails the Luhn check")
    return label


class LabelEvent(NamedTuple):
    """A validated label inside the pipeline: PAN-free, times in epoch ms."""

    transaction_id: str
    ts: int  # the labelled transaction's event time
    card_token: str
    merchant_id: str
    amount: float
    currency: str
    fraud: bool
    reported_ts: int  # when the label may first be used (event time)
    source: str
    partition: int = -1
    offset: int = -1
