"""Validation of raw input: a raw transaction or label becomes a PAN-free event or a dead letter.

``RecordValidator`` is the flow's first step after the input (``validate``,
``validate_labels``), and the backtest and the trainer run it on their files and topics too.
Everything downstream of ``RecordValidator.to_event`` is PAN-free: the returned ``CardEvent``
has no card number, and a ``DeadLetter`` only goes to the dead-letter topic (which may hold the
original bytes, like the input topic). Pure Python: no Bytewax, Kafka or MongoDB.
"""

from __future__ import annotations

from typing import NamedTuple

from fraudwatch.cards import CardTokenizer, mask_pan
from fraudwatch.contract import (
    CardEvent,
    DeadLetter,
    InvalidLabel,
    InvalidTransaction,
    LabelEvent,
    decode_transaction,
    epoch_ms,
    parse_label,
)


class RawRecord(NamedTuple):
    """One input message as it came off the topic (the value may hold a PAN)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # Kafka timestamp, epoch ms
    value: bytes | None


class RecordValidator:
    """Validates raw records and replaces the PAN by a token; configured once per process."""

    def __init__(self, tokenizer: CardTokenizer, currencies: set[str]) -> None:
        self._tokenizer = tokenizer
        self._currencies = frozenset(currencies)

    def to_event(self, rec: RawRecord) -> CardEvent | DeadLetter:
        """A valid transaction as a ``CardEvent``, anything else as a ``DeadLetter``."""
        try:
            txn, ts = decode_transaction(rec.value)
        except InvalidTransaction as exc:
            return self._dead(rec, exc.reason, exc.detail)
        if txn.currency not in self._currencies:
            return self._dead(
                rec,
                "unsupported_currency",
                f"currency {txn.currency} has no rate in fraudwatch/vocabulary.py's EXCHANGE_RATES",
            )
        pan = txn.card_number
        return CardEvent(
            transaction_id=txn.transaction_id,
            ts=ts,
            card_token=self._tokenizer.token(pan),
            card_masked=mask_pan(pan),
            account_id=txn.account_id,
            amount=txn.amount,
            currency=txn.currency,
            merchant_id=txn.merchant_id,
            merchant_name=txn.merchant_name,
            merchant_category=txn.merchant_category,
            channel=txn.channel,
            latitude=txn.latitude,
            longitude=txn.longitude,
            country=txn.country,
            source_ts=rec.timestamp or 0,
            partition=rec.partition,
            offset=rec.offset,
        )

    def to_label(self, rec: RawRecord) -> LabelEvent | DeadLetter:
        """A valid fraud label as a PAN-free ``LabelEvent``, anything else as a ``DeadLetter``."""
        try:
            label = parse_label(rec.value)
        except InvalidLabel as exc:
            return self._dead(rec, exc.reason, exc.detail)
        token = label.card_token
        if label.card_number is not None:
            token = self._tokenizer.token(label.card_number)
        return LabelEvent(
            transaction_id=label.transaction_id,
            ts=epoch_ms(label.timestamp),
            card_token=token or "",
            merchant_id=label.merchant_id,
            amount=label.amount,
            currency=label.currency,
            fraud=label.label == "fraud",
            reported_ts=epoch_ms(label.reported_at),
            source=label.source or "unknown",
            partition=rec.partition,
            offset=rec.offset,
        )

    @staticmethod
    def _dead(rec: RawRecord, reason: str, detail: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            detail=detail,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            kafka_timestamp=rec.timestamp,
            value=rec.value,
        )
