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
