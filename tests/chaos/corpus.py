"""Poison input: raw Kafka records (key, value) that the dataflow must survive, each with the
outcome the contract promises for it.

Most entries are dead-lettered with a reason code (``fraudwatch.contract`` / docs/contracts.md)
and a detail naming the problem. A few are hostile but valid by the contract, and the corpus
says so instead of pretending otherwise:

- ``ACCEPTED``: a valid transaction (extra fields are ignored, the key only routes, a value of
  exactly 64 KiB is within the limit);
- ``DUPLICATE``: a re-sent ``transaction_id`` of the same card, ignored by the rules: it must
  never raise a second alert.

Valid entries use cards of their own (BIN 999900, which the producer never issues), so where
they land among the replay's partitions cannot change any other card's alerts. The producer's
own corruptions (``producer.malformed``) are included as they are, one per kind.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from fraudwatch.contract import MAX_MESSAGE_BYTES
from producer.malformed import CORRUPTIONS
from tests.factories import make_pan, make_txn

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
CORPUS_BIN = "999900"
# Event time of the corpus' transactions: inside the replays the chaos tests build.
CORPUS_TS = "2026-11-20T12:00:00.000Z"


@dataclass(frozen=True)
class BadRecord:
    """One poison record: what goes on the topic and what the dataflow must make of it.

    ``reason`` is the dead-letter reason code, or ``ACCEPTED`` / ``DUPLICATE`` for records the
    contract says are not dead letters; ``detail`` must occur in the envelope's ``detail``.
    """

    name: str
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str = ""

    @property
    def dead_lettered(self) -> bool:
        return self.reason not in (ACCEPTED, DUPLICATE)


def corpus_txn(seed: int, **overrides: Any) -> dict[str, Any]:
    """A valid transaction of corpus card ``seed`` (its own account), with overrides."""
    fields: dict[str, Any] = {
        "transaction_id": f"poison-{seed}",
        "timestamp": CORPUS_TS,
        "card_number": make_pan(seed, bin_=CORPUS_BIN),
        "account_id": f"acct-poison-{seed}",
    }
    return make_txn(**{**fields, **overrides})


def _raw(txn: dict[str, Any]) -> bytes:
    return json.dumps(txn).encode()


def _with(seed: int, field: str, literal: bytes) -> bytes:
    """A corpus transaction whose ``field`` holds ``literal`` verbatim (e.g. ``NaN``)."""
    return _raw(corpus_txn(seed, **{field: "__LITERAL__"})).replace(b'"__LITERAL__"', literal)


def _luhn_broken(pan: str) -> str:
    return pan[:-1] + str((int(pan[-1]) + 1) % 10)


def _key(seed: int) -> bytes:
    return f"acct-poison-{seed}".encode()


def _without(seed: int, *fields: str) -> bytes:
    txn = corpus_txn(seed)
    for f in fields:
        del txn[f]
    return _raw(txn)


def _padded_to(size: int, seed: int) -> bytes:
    """A valid transaction padded with JSON whitespace to exactly ``size`` bytes."""
    raw = _raw(corpus_txn(seed))
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _hand_written() -> list[BadRecord]:
    big = _raw(corpus_txn(3, merchant_name="M" * (1024 * 1024)))
    deep_in_field = _with(4, "merchant_name", b"[" * 20_000 + b"]" * 20_000)
    # The duplicates: one card, one transaction id, an amount that alerts (high_amount).
    original = _raw(corpus_txn(50, transaction_id="poison-dup", amount=9000.0))
    changed = _raw(corpus_txn(50, transaction_id="poison-dup", amount=8000.0))
    return [
        # Nothing there.
        BadRecord("empty_value", _key(1), b"", "empty", "no value"),
        BadRecord("null_value_tombstone", _key(1), None, "empty", "no value"),
        BadRecord("empty_key_empty_value", b"", b"", "empty", "no value"),
        # Not JSON, or not UTF-8.
        BadRecord("invalid_json_garbage", _key(2), b"{broken", "invalid_json", "Invalid JSON"),
        BadRecord(
            "invalid_json_truncated", _key(2), _raw(corpus_txn(2))[:60], "invalid_json", "EOF"
        ),
        BadRecord("nul_byte", _key(2), b"\x00", "invalid_json", "Invalid JSON"),
        BadRecord(
            "utf8_bom", _key(2), b"\xef\xbb\xbf" + _raw(corpus_txn(2)), "invalid_json", "JSON"
        ),
        BadRecord("non_utf8_bytes", _key(2), b"\xff\xfe\x00", "invalid_encoding", "UTF-8"),
        BadRecord(
            "utf16_json",
            _key(2),
            _raw(corpus_txn(2)).decode().encode("utf-16"),
            "invalid_encoding",
            "UTF-8",
        ),
        BadRecord(
            "lone_surrogate_escape",
            _key(2),
            _with(2, "merchant_name", b'"\\ud800"'),
            "invalid_json",
            "escape",
        ),
        # JSON, but not an object.
        BadRecord("json_null", _key(2), b"null", "not_an_object", "JSON object"),
        BadRecord("json_empty_array", _key(2), b"[]", "not_an_object", "JSON object"),
        BadRecord("json_string", _key(2), b'"4111111111111111"', "not_an_object", "object"),
        BadRecord("bare_nan", _key(2), b"NaN", "not_an_object", "JSON object"),
        BadRecord("bare_1e999", _key(2), b"1e999", "not_an_object", "JSON object"),
        # Non-finite and out-of-range numbers.
        BadRecord(
            "amount_nan", _key(2), _with(2, "amount", b"NaN"), "invalid_transaction", "amount"
        ),
        BadRecord(
            "amount_infinity",
            _key(2),
            _with(2, "amount", b"Infinity"),
            "invalid_transaction",
            "amount",
        ),
        BadRecord(
            "amount_minus_infinity",
            _key(2),
            _with(2, "amount", b"-Infinity"),
            "invalid_transaction",
            "amount",
        ),
        BadRecord(
            "amount_1e999", _key(2), _with(2, "amount", b"1e999"), "invalid_transaction", "amount"
        ),
        BadRecord(
            "amount_400_digit_integer",
            _key(2),
            _with(2, "amount", b"1" + b"0" * 400),
            "invalid_transaction",
            "amount",
        ),
        BadRecord(
            "latitude_nan", _key(2), _with(2, "latitude", b"NaN"), "invalid_transaction", "latitude"
        ),
        BadRecord(
            "amount_negative",
            _key(2),
            _raw(corpus_txn(2, amount=-12.5)),
            "invalid_transaction",
            "amount",
        ),
        BadRecord(
            "amount_huge",
            _key(2),
            _raw(corpus_txn(2, amount=1e15)),
            "invalid_transaction",
            "amount",
        ),
        # Timestamps.
        BadRecord(
            "timestamp_naive",
            _key(2),
            _raw(corpus_txn(2, timestamp="2026-11-20T12:00:00")),
            "invalid_transaction",
            "timestamp",
        ),
        BadRecord(
            "timestamp_epoch_number",
            _key(2),
            _raw(corpus_txn(2, timestamp=1_795_000_000)),
            "invalid_transaction",
            "timestamp",
        ),
        BadRecord(
            "timestamp_month_13",
            _key(2),
            _raw(corpus_txn(2, timestamp="2026-13-01T00:00:00Z")),
            "invalid_transaction",
            "timestamp",
        ),
        BadRecord(
            "timestamp_before_2000",
            _key(2),
            _raw(corpus_txn(2, timestamp="1999-12-31T23:59:59Z")),
            "timestamp_out_of_range",
            "outside 2000-2100",
        ),
        BadRecord(
            "timestamp_year_9999_west",
            _key(2),
            _raw(corpus_txn(2, timestamp="9999-12-31T23:59:59-23:59")),
            "timestamp_out_of_range",
            "outside 2000-2100",
        ),
        BadRecord(
            "timestamp_year_1_east",
            _key(2),
            _raw(corpus_txn(2, timestamp="0001-01-01T00:00:00+23:59")),
            "timestamp_out_of_range",
            "outside 2000-2100",
        ),
        # Missing, extra and wrong-typed fields.
        BadRecord("empty_object", _key(2), b"{}", "invalid_transaction", "Field required"),
        BadRecord(
            "missing_card_number",
            _key(2),
            _without(2, "card_number"),
            "invalid_transaction",
            "card_number: Field required",
        ),
        BadRecord(
            "missing_amount_and_country",
            _key(2),
            _without(2, "amount", "country"),
            "invalid_transaction",
            "country: Field required",
        ),
        BadRecord(
            "amount_as_string",
            _key(2),
            _raw(corpus_txn(2, amount="42.50")),
            "invalid_transaction",
            "amount",
        ),
        BadRecord(
            "card_number_as_integer",
            _key(2),
            _raw(corpus_txn(2, card_number=int(make_pan(2, bin_=CORPUS_BIN)))),
            "invalid_transaction",
            "card_number",
        ),
        BadRecord(
            "channel_as_boolean",
            _key(2),
            _raw(corpus_txn(2, channel=True)),
            "invalid_transaction",
            "channel",
        ),
        BadRecord(
            "nested_object_as_id",
            _key(2),
            _raw(corpus_txn(2, transaction_id={"id": "x"})),
            "invalid_transaction",
            "transaction_id",
        ),
        BadRecord(
            "transaction_id_too_long",
            _key(2),
            _raw(corpus_txn(2, transaction_id="x" * 65)),
            "invalid_transaction",
            "transaction_id",
        ),
        BadRecord(
            "card_number_fullwidth_digits",
            _key(2),
            _raw(corpus_txn(2, card_number="\uff14" + "\uff11" * 15)),
            "invalid_transaction",
            "card_number",
        ),
        BadRecord(
            "card_number_bad_luhn",
            _key(2),
            _raw(corpus_txn(2, card_number=_luhn_broken(make_pan(2, bin_=CORPUS_BIN)))),
            "luhn",
            "Luhn",
        ),
        BadRecord(
            "unsupported_currency",
            _key(2),
            _raw(corpus_txn(2, currency="XXX")),
            "unsupported_currency",
            "XXX",
        ),
        # Nesting and size.
        BadRecord(
            "nesting_100k_deep",
            _key(4),
            b"[" * 100_000 + b"]" * 100_000,
            "oversized",
            "200000 bytes",
        ),
        BadRecord(
            "nesting_30k_deep_within_limit",
            _key(4),
            b"[" * 30_000 + b"]" * 30_000,
            "invalid_json",
            "recursion limit",
        ),
        BadRecord(
            "nesting_20k_deep_in_a_field",
            _key(4),
            deep_in_field,
            "invalid_json",
            "recursion limit",
        ),
        BadRecord(
            "value_64_kib_plus_one",
            _key(4),
            _padded_to(MAX_MESSAGE_BYTES + 1, 4),
            "oversized",
            f"{MAX_MESSAGE_BYTES + 1} bytes",
        ),
        BadRecord("value_1_mib", _key(3), big, "oversized", f"{len(big)} bytes"),
        # Hostile but valid by the contract.
        BadRecord("value_exactly_64_kib", _key(5), _padded_to(MAX_MESSAGE_BYTES, 5), ACCEPTED),
        # A zero-amount authorization is an account verification (card testers use them).
        BadRecord("amount_zero", _key(8), _raw(corpus_txn(8, amount=0)), ACCEPTED),
        BadRecord("amount_underflows_to_zero", _key(9), _with(9, "amount", b"1e-400"), ACCEPTED),
        BadRecord(
            "extra_fields",
            _key(6),
            _raw(corpus_txn(6, extra={"nested": [1, 2, {"x": None}]}, note="é✓\u202e")),
            ACCEPTED,
        ),
        BadRecord(
            "empty_key_valid_value",
            b"",
            _raw(corpus_txn(7, amount=6000.0, merchant_name="<script>alert(1)</script>")),
            ACCEPTED,
        ),
        BadRecord("empty_key_invalid_value", b"", b"[]", "not_an_object", "JSON object"),
        BadRecord("duplicate_transaction_id", _key(50), original, DUPLICATE),
        BadRecord("duplicate_transaction_id_changed_amount", _key(50), changed, DUPLICATE),
    ]


# What each of the producer's corruptions is dead-lettered as.
_PRODUCER_REASONS = {
    "invalid_json": "invalid_json",
    "not_an_object": "not_an_object",
    "wrong_type": "invalid_transaction",
    "missing_field": "invalid_transaction",
    "nan_amount": "invalid_transaction",
    "negative_amount": "invalid_transaction",
    "naive_timestamp": "invalid_transaction",
    "huge_amount": "invalid_transaction",
    "oversized": "oversized",
    "bad_luhn": "luhn",
    "invalid_utf8": "invalid_encoding",
}


def _from_producer() -> list[BadRecord]:
    out = []
    for n, (kind, corrupt) in enumerate(sorted(CORRUPTIONS.items())):
        txn = corpus_txn(100 + n)
        out.append(
            BadRecord(
                f"producer_{kind}",
                _key(100 + n),
                corrupt(random.Random(n), txn),
                _PRODUCER_REASONS[kind],
            )
        )
    return out


CORPUS: tuple[BadRecord, ...] = (*_hand_written(), *_from_producer())
