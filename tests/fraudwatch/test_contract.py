import json
from datetime import UTC, datetime, timedelta

import pytest

from fraudwatch.contract import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    InvalidTransaction,
    alert_id_for,
    decode_transaction,
    parse_transaction,
)
from tests.factories import make_pan, make_txn, txn_bytes

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_a_valid_transaction_parses_with_an_aware_timestamp() -> None:
    txn = parse_transaction(txn_bytes(extra_field="ignored"))
    assert txn.amount == 42.5
    assert txn.timestamp.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"{not json", "invalid_json"),
        (b'{"transaction_id": "\xff"}', "invalid_encoding"),
        (b"null", "not_an_object"),
        (b"[1, 2]", "not_an_object"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
        (txn_bytes(amount=-1), "invalid_transaction"),
        (txn_bytes(amount=1_000_000_001), "invalid_transaction"),
        (txn_bytes(amount="12.0"), "invalid_transaction"),
        (txn_bytes(amount=True), "invalid_transaction"),
        (txn_bytes().replace(b"42.5", b"NaN"), "invalid_transaction"),
        (txn_bytes().replace(b"42.5", b"Infinity"), "invalid_transaction"),
        (txn_bytes().replace(b"42.5", b"1e999"), "invalid_transaction"),
        (txn_bytes(timestamp="2026-11-25T10:00:00"), "invalid_transaction"),
        (txn_bytes(timestamp="1764000000"), "invalid_transaction"),
        (txn_bytes(timestamp="yesterday"), "invalid_transaction"),
        (txn_bytes(timestamp="1999-12-31T23:59:59Z"), "timestamp_out_of_range"),
        (txn_bytes(timestamp="2100-01-01T00:00:00Z"), "timestamp_out_of_range"),
        (txn_bytes(card_number="4111111111111112"), "luhn"),
        (txn_bytes(card_number="41111111111"), "invalid_transaction"),
        (txn_bytes(card_number=4111111111111111), "invalid_transaction"),
        (txn_bytes(currency="eur"), "invalid_transaction"),
        (txn_bytes(merchant_category="541"), "invalid_transaction"),
        (txn_bytes(channel="atm"), "invalid_transaction"),
        (txn_bytes(latitude=91), "invalid_transaction"),
        (txn_bytes(longitude=-181), "invalid_transaction"),
        (txn_bytes(country="DEU"), "invalid_transaction"),
        (txn_bytes(transaction_id=""), "invalid_transaction"),
        (txn_bytes(transaction_id="x" * 65), "invalid_transaction"),
        (txn_bytes(merchant_name="m" * 201), "invalid_transaction"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        parse_transaction(raw)
    assert err.value.reason == reason
    assert err.value.detail


def test_missing_fields_are_all_named_in_the_detail() -> None:
    txn = make_txn()
    del txn["amount"], txn["country"]
    with pytest.raises(InvalidTransaction) as err:
        parse_transaction(json.dumps(txn).encode())
    assert "amount" in err.value.detail
    assert "country" in err.value.detail


def test_a_rejection_detail_never_echoes_the_card_number() -> None:
    pan = make_pan(5)
    with pytest.raises(InvalidTransaction) as err:
        parse_transaction(txn_bytes(card_number=pan, amount=-5))
    assert pan not in str(err.value)


def test_alert_id_is_deterministic_per_card_and_transaction() -> None:
    assert alert_id_for("tok", "tx-1") == alert_id_for("tok", "tx-1")
    assert alert_id_for("tok", "tx-1") != alert_id_for("tok", "tx-2")
    assert alert_id_for("tok", "tx-1") != alert_id_for("tok2", "tx-1")


def test_dead_letter_envelope_truncates_the_value_but_hashes_all_of_it() -> None:
    value = b"a" * (MAX_MESSAGE_BYTES + 10)
    env = DeadLetter("oversized", "too big", "t", 0, 7, 123, value).to_json_dict()
    assert env["value_length"] == MAX_MESSAGE_BYTES + 10
    assert env["value_truncated"] is True
    assert len(env["value_b64"]) == len(__import__("base64").b64encode(b"a" * MAX_MESSAGE_BYTES))
    assert set(env) >= {
        "reason",
        "detail",
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "value_b64",
        "value_length",
        "value_sha256",
    }


# --- the dataflow's fast path (decode_transaction) agrees with parse_transaction ---------

EDGE_CASES = [
    txn_bytes(),
    txn_bytes(extra_field={"nested": [1, 2]}),
    txn_bytes(amount=7),  # an integer amount is a valid float
    txn_bytes(amount=0),  # account verification: a zero-amount authorization is valid
    txn_bytes(timestamp="2026-11-25T10:00:00.123456+01:00"),
    txn_bytes(timestamp="2026-11-25T10:00:00.1234567Z"),  # beyond microseconds
    txn_bytes(timestamp="2026-11-25t10:00:00z"),
    txn_bytes(timestamp="2026-11-25 10:00:00Z"),
    txn_bytes(timestamp="2026-11-25T10:00:00-00:00"),
    txn_bytes(timestamp="2026-11-25T10:00:00+24:00"),
    txn_bytes(timestamp="2026-02-30T10:00:00Z"),
    txn_bytes(timestamp="2026-11-25T24:00:00Z"),
    txn_bytes(timestamp="2026-11-25T10:00:60Z"),
    txn_bytes(timestamp="2100-01-01T00:00:00Z"),
    txn_bytes(timestamp="1999-12-31T23:59:59.999Z"),
    txn_bytes(card_number=make_pan(1) + "\n"),
    txn_bytes(currency="EUR\n"),
    txn_bytes(country="de"),
    txn_bytes(merchant_name="x" * 200),
    txn_bytes(merchant_name="é" * 201),
    txn_bytes(transaction_id="\U0001f4b3" * 64),
    txn_bytes(transaction_id=""),
    txn_bytes(channel="CARD_PRESENT"),
    txn_bytes(latitude=90.0000001),
    txn_bytes(amount=1e-320),
    txn_bytes().replace(b'"amount": 42.5', b'"amount": 42.5, "amount": -1'),
    txn_bytes().replace(b'"amount": 42.5', b'"amount": -1, "amount": 42.5'),
    txn_bytes().replace(b'"amount": 42.5', b'"amount": 1, "amount": 2'),
    b"\xef\xbb\xbf" + txn_bytes(),  # a UTF-8 byte order mark
    b"  " + txn_bytes() + b"\n ",
    txn_bytes() + b" {}",
    txn_bytes().replace(b"Corner Shop", b"Corner \\ud800 Shop"),
    txn_bytes()[:-1] + b', "ignored": "\x80"}',  # not UTF-8, in a field nobody reads
    txn_bytes()[:-1] + b', "\\ud800\\udc00\\ud800": null}',
]


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_the_fast_path_gives_the_contracts_verdict_on_edge_cases(raw: bytes) -> None:
    try:
        expected = parse_transaction(raw)
    except InvalidTransaction as exc:
        refused = exc
    else:
        wire, ts_ms = decode_transaction(raw)
        want = expected.model_dump()
        assert ts_ms == (want.pop("timestamp") - EPOCH) // timedelta(milliseconds=1)
        assert {f: getattr(wire, f) for f in want} == want
        return
    with pytest.raises(InvalidTransaction) as got:
        decode_transaction(raw)
    assert (got.value.reason, got.value.detail) == (refused.reason, refused.detail)


def test_the_fast_path_decides_ordinary_messages_without_pydantic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fraudwatch import contract

    def refuse(raw: bytes | None) -> None:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(contract, "parse_transaction", refuse)
    wire, ts_ms = decode_transaction(txn_bytes(timestamp="2026-11-25T10:00:00.250Z"))
    assert wire.amount == 42.5
    assert ts_ms == 1_795_600_800_250  # 2026-11-25T10:00:00.250Z


def test_a_label_reported_before_its_transaction_or_years_later_is_refused() -> None:
    from fraudwatch.contract import InvalidLabel, parse_label

    base = {
        "transaction_id": "t", "card_token": "ab" * 16, "merchant_id": "m", "amount": 1.0,
        "currency": "EUR", "label": "fraud", "timestamp": "2026-11-25T10:00:00Z",
    }  # fmt: skip
    ok = parse_label(json.dumps({**base, "reported_at": "2026-12-01T00:00:00Z"}).encode())
    assert ok.label == "fraud"
    for reported in ("2026-11-24T00:00:00Z", "2028-01-01T00:00:00Z"):
        with pytest.raises(InvalidLabel) as err:
            parse_label(json.dumps({**base, "reported_at": reported}).encode())
        assert err.value.reason == "invalid_label"
