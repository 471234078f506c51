"""Malformed records break the contract the way their kind says, and only that way."""

from __future__ import annotations

import random

import pytest

from fraudwatch.contract import InvalidTransaction, parse_transaction
from producer.malformed import CORRUPTIONS, MALFORMED_KINDS, corrupt
from tests.factories import make_txn

EXPECTED_REASONS = {
    "invalid_json": {"invalid_json"},
    "not_an_object": {"not_an_object"},
    "wrong_type": {"invalid_transaction"},
    "missing_field": {"invalid_transaction"},
    "nan_amount": {"invalid_transaction", "invalid_json"},
    "negative_amount": {"invalid_transaction"},
    "naive_timestamp": {"invalid_transaction"},
    "huge_amount": {"invalid_transaction"},
    "oversized": {"oversized"},
    "bad_luhn": {"luhn"},
    "invalid_utf8": {"invalid_encoding"},
}


def test_the_example_transaction_is_valid_to_start_with() -> None:
    import orjson

    parse_transaction(orjson.dumps(make_txn(timestamp="2026-11-25T10:00:00.123Z")))


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_kind_is_rejected_for_its_own_reason(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(50):
        value = CORRUPTIONS[kind](rng, make_txn(timestamp="2026-11-25T10:00:00.123Z"))
        with pytest.raises(InvalidTransaction) as err:
            parse_transaction(value)
        assert err.value.reason in EXPECTED_REASONS[kind], value[:200]
        assert b"\n" not in value


def test_every_kind_has_an_expected_reason() -> None:
    assert set(EXPECTED_REASONS) == set(MALFORMED_KINDS)


def test_corrupt_picks_every_kind_over_many_draws() -> None:
    rng = random.Random(1)
    kinds = {corrupt(rng, make_txn())[0] for _ in range(500)}
    assert kinds == set(MALFORMED_KINDS)
