"""Test-data factories: valid v1 transactions with overrides."""

from __future__ import annotations

import json
from typing import Any

from fraudwatch.cards import luhn_check_digit

VISA_TEST_BIN = "411111"


def make_pan(seed: int, length: int = 16, bin_: str = VISA_TEST_BIN) -> str:
    """A Luhn-valid card number of ``length`` digits, distinct for each ``seed``."""
    body = f"{bin_}{seed:0{length - len(bin_) - 1}d}"[: length - 1]
    return body + luhn_check_digit(body)


def make_txn(**overrides: Any) -> dict[str, Any]:
    """A valid schema-v1 transaction as a dict; any field can be overridden."""
    txn: dict[str, Any] = {
        "transaction_id": "tx-1",
        "timestamp": "2026-11-25T10:00:00Z",
        "card_number": make_pan(1),
        "account_id": "acct-1",
        "amount": 42.5,
        "currency": "EUR",
        "merchant_id": "m-1",
        "merchant_name": "Corner Shop",
        "merchant_category": "5411",
        "channel": "card_present",
        "latitude": 52.52,
        "longitude": 13.405,
        "country": "DE",
    }
    txn.update(overrides)
    return txn


def make_chargeback(card: int, tx: str, reported: str, verdict: str = "fraud") -> dict[str, Any]:
    """A v1 fraud label as a chargeback on ``make_pan(card)``'s transaction ``tx``."""
    return {
        "transaction_id": tx,
        "card_number": make_pan(card),
        "merchant_id": "m-1",
        "timestamp": "2025-11-25T10:00:00Z",
        "amount": 25.0,
        "currency": "EUR",
        "label": verdict,
        "reported_at": reported,
        "source": "chargeback",
    }


def txn_bytes(**overrides: Any) -> bytes:
    return json.dumps(make_txn(**overrides)).encode()


def make_event(**overrides: Any) -> Any:
    """A ``CardEvent`` (already tokenised) for rule tests; ``ts`` in epoch ms."""
    from fraudwatch.contract import CardEvent

    fields: dict[str, Any] = {
        "transaction_id": "tx-1",
        "ts": 1_764_064_800_000,  # 2025-11-25T10:00:00Z
        "card_token": "tok-1",
        "card_masked": "411111******1111",
        "account_id": "acct-1",
        "amount": 40.0,
        "currency": "EUR",
        "merchant_id": "m-1",
        "merchant_name": "Corner Shop",
        "merchant_category": "5411",
        "channel": "card_present",
        "latitude": 52.52,
        "longitude": 13.405,
        "country": "DE",
    }
    fields.update(overrides)
    return CardEvent(**fields)


def traffic(cards: int = 12, per_card: int = 12, start: int = 1_764_064_800) -> list[bytes]:
    """Valid transactions that make rules fire (card testing, spikes, bursts), cards interleaved.

    Every third card starts with tiny charges, every fourth ends with a large one; each card
    transacts every 90 s, so velocity rules fire too. ``start`` is the first event time (epoch s).
    """
    from datetime import UTC, datetime

    from fraudwatch.contract import format_ts

    out = []
    for i in range(per_card):
        for c in range(cards):
            amount = 1.0 if (c % 3 == 0 and i < 4) else 25.0 + c
            if c % 4 == 1 and i == per_card - 1:
                amount = 9000.0
            when = datetime.fromtimestamp(start + i * 90 + c, UTC)
            txn = make_txn(
                transaction_id=f"c{c}-t{i}",
                timestamp=format_ts(when),
                card_number=make_pan(c),
                account_id=f"acct-{c}",
                amount=amount,
            )
            out.append(json.dumps(txn).encode())
    return out


TIMESTAMP_FIELDS = frozenset({"source_ts", "kafka_timestamp", "detected_at", "ts"})
# Hex digests (alert ids, card tokens): their digits form Luhn-valid 12-19 digit runs by chance
# (one alert id in a few hundred), which are not card numbers.
DIGEST_FIELDS = frozenset({"_id", "alert_id", "card_token", "value_sha256"})


def find_pans(obj: Any, key: str = "") -> list[str]:
    """Every 12-19 digit Luhn-valid number inside ``obj`` (decoded JSON / a Mongo document).

    Strings are scanned for digit runs; integers count too, except epoch-millisecond
    timestamps (``source_ts``...), which are 13-digit numbers and Luhn-valid one time in ten.
    """
    from fraudwatch.cards import PAN_PATTERN, luhn_valid

    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in find_pans(v, str(k))]
    if isinstance(obj, list | tuple):
        return [p for v in obj for p in find_pans(v, key)]
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int):
        s = str(obj)
        return [s] if key not in TIMESTAMP_FIELDS and 12 <= len(s) <= 19 and luhn_valid(s) else []
    if isinstance(obj, str):
        if key in DIGEST_FIELDS and all(c in "0123456789abcdef" for c in obj):
            return []
        if key.startswith("queue_key"):  # <day>_<score>_<alert id> (also a rule's copy):
            obj = obj[:-24]  # the id is a digest like ``_id``
        return [m.group() for m in PAN_PATTERN.finditer(obj) if luhn_valid(m.group())]
    return []
