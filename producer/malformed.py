"""Malformed input for the dead-letter path: each kind is a mistake real upstream systems make.

Every corruption starts from a valid transaction so the record looks like traffic (same key,
realistic fields) and breaks exactly one thing. None of them contains a newline, so a record
is still one line of an ``--out`` file.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from fraudwatch.contract import Transaction

# The contract's required fields, in its order (a seeded run picks the same field each time).
_REQUIRED = tuple(name for name, f in Transaction.model_fields.items() if f.is_required())


def _invalid_json(rng: random.Random, txn: dict[str, Any]) -> bytes:
    valid = orjson.dumps(txn)
    variant = rng.randrange(3)
    if variant == 0:  # a truncated write
        return valid[: rng.randrange(len(valid) // 4, len(valid) - 1)]
    if variant == 1:  # a Python repr instead of JSON
        return repr(txn).encode()
    return valid[:-1] + b",}"  # a trailing comma


def _not_an_object(rng: random.Random, txn: dict[str, Any]) -> bytes:
    return orjson.dumps(list(txn.values()))


def _wrong_type(rng: random.Random, txn: dict[str, Any]) -> bytes:
    bad = dict(txn)
    field = rng.choice(("amount", "latitude", "card_number", "timestamp", "channel"))
    if field == "amount":
        bad["amount"] = f"{txn['amount']:.2f}"  # a string where a number belongs
    elif field == "latitude":
        bad["latitude"] = str(txn["latitude"])
    elif field == "card_number":
        bad["card_number"] = int(txn["card_number"])
    elif field == "timestamp":
        bad["timestamp"] = 1_795_000_000  # epoch seconds, not RFC 3339
    else:
        bad["channel"] = True
    return orjson.dumps(bad)


def _missing_field(rng: random.Random, txn: dict[str, Any]) -> bytes:
    bad = dict(txn)
    del bad[rng.choice(_REQUIRED)]
    return orjson.dumps(bad)


def _nan_amount(rng: random.Random, txn: dict[str, Any]) -> bytes:
    literal = rng.choice((b"NaN", b"Infinity", b"-Infinity"))
    return orjson.dumps({**txn, "amount": "__X__"}).replace(b'"__X__"', literal)


def _negative_amount(rng: random.Random, txn: dict[str, Any]) -> bytes:
    # Zero is a valid amount (an account verification), so the edge case is one cent below it.
    amount = -0.01 if rng.random() < 0.2 else -float(txn["amount"])
    return orjson.dumps({**txn, "amount": amount})


def _naive_timestamp(rng: random.Random, txn: dict[str, Any]) -> bytes:
    return orjson.dumps({**txn, "timestamp": str(txn["timestamp"]).rstrip("Z")})


def _huge_amount(rng: random.Random, txn: dict[str, Any]) -> bytes:
    return orjson.dumps({**txn, "amount": round(10 ** rng.uniform(9.5, 15.0), 2)})


def _oversized(rng: random.Random, txn: dict[str, Any]) -> bytes:
    return orjson.dumps({**txn, "merchant_name": "X" * rng.randint(66_000, 90_000)})


def _bad_luhn(rng: random.Random, txn: dict[str, Any]) -> bytes:
    pan = str(txn["card_number"])
    wrong = str((int(pan[-1]) + rng.randint(1, 9)) % 10)
    return orjson.dumps({**txn, "card_number": pan[:-1] + wrong})


def _invalid_utf8(rng: random.Random, txn: dict[str, Any]) -> bytes:
    # A Latin-1 encoded name: "Café" as bytes 43 61 66 E9.
    return orjson.dumps({**txn, "merchant_name": "__X__"}).replace(b"__X__", b"Caf\xe9 Central")


CORRUPTIONS: dict[str, Callable[[random.Random, dict[str, Any]], bytes]] = {
    "invalid_json": _invalid_json,
    "not_an_object": _not_an_object,
    "wrong_type": _wrong_type,
    "missing_field": _missing_field,
    "nan_amount": _nan_amount,
    "negative_amount": _negative_amount,
    "naive_timestamp": _naive_timestamp,
    "huge_amount": _huge_amount,
    "oversized": _oversized,
    "bad_luhn": _bad_luhn,
    "invalid_utf8": _invalid_utf8,
}
MALFORMED_KINDS = tuple(CORRUPTIONS)


def corrupt(rng: random.Random, txn: dict[str, Any]) -> tuple[str, bytes]:
    """Break a valid transaction in one randomly chosen way: ``(kind, message bytes)``."""
    kind = MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]
    return kind, CORRUPTIONS[kind](rng, txn)
