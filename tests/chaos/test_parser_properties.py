"""Parser property test (issue #7, item 6): whatever bytes arrive, the edge answers with a
valid transaction or a rejection with a reason, never another exception.

Checked at the dataflow's real entry point, ``RecordValidator.to_event`` (which calls
``fraudwatch.contract.parse_transaction``), on three kinds of input: arbitrary bytes,
arbitrary JSON values, and valid transactions mutated one way or several (fields removed,
added, retyped; extreme numbers; odd strings and unicode; deep nesting; byte-level damage).
What comes out must also go on downstream: a dead letter serialises to JSON, an accepted
event yields an alert document that serialises too.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.detection.detector import Detector
from dataflows.detection.ruleset import load_ruleset
from dataflows.detection.state import CardHistory
from dataflows.validation import RawRecord, RecordValidator
from fraudwatch.alert_store import alert_document
from fraudwatch.cards import CardTokenizer, luhn_valid
from fraudwatch.contract import (
    MAX_MESSAGE_BYTES,
    CardEvent,
    InvalidTransaction,
    Transaction,
    WireTransaction,
    decode_transaction,
    parse_transaction,
)
from tests.chaos import scale
from tests.factories import make_pan, make_txn

RULESET = load_ruleset()
VALIDATOR = RecordValidator(CardTokenizer("property-test-key"), set(RULESET.currency.rates))
DETECTOR = Detector(RULESET)
REASONS = {
    "empty",
    "oversized",
    "invalid_encoding",
    "invalid_json",
    "not_an_object",
    "invalid_transaction",
    "timestamp_out_of_range",
    "luhn",
    "unsupported_currency",
}
EXAMPLES = scale(400, 10_000)
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them as literals
    st.text(),  # lone surrogates included: json.dumps escapes them as \udXXX
    st.text(alphabet="0123456789", min_size=10, max_size=22),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"),
)
numbers = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -0.0, 5e-324, 1e-400, 1e9, 1e9 + 1, 90, -90, 180, -180.0000001]),
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate becomes CESU-8 bytes, which are not valid UTF-8.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid transaction, then zero or more mutations of its fields and of its bytes."""
    txn: dict[str, Any] = make_txn(
        transaction_id=draw(st.text(min_size=1, max_size=70)),
        card_number=make_pan(draw(st.integers(0, 10**6)), length=draw(st.integers(12, 19))),
        amount=draw(st.floats(min_value=0.01, max_value=1e9)),
        currency=draw(st.sampled_from(["EUR", "USD", "JPY", "XXX", "eur"])),
    )
    fields = sorted(txn)
    depth = 0
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(fields))
        mutation = draw(st.sampled_from(["drop", "retype", "number", "text", "time", "deep"]))
        if mutation == "drop":
            txn.pop(field, None)
        elif mutation == "retype":
            txn[field] = draw(json_values)
        elif mutation == "number":
            txn[field] = draw(numbers)
        elif mutation == "text":
            txn[field] = draw(st.text(max_size=300))
        elif mutation == "time":
            txn["timestamp"] = draw(timestamps)
        else:  # up to 80 KB of brackets: over the size limit or over jiter's recursion limit
            depth = draw(st.integers(1, 40_000))
            txn[field] = "__DEEP__"
    for _ in range(draw(st.integers(0, 3))):
        txn[draw(st.text(max_size=20))] = draw(json_values)
    raw = _encode(txn, draw(st.booleans()))
    if depth:
        raw = raw.replace(b'"__DEEP__"', b"[" * depth + b"]" * depth)
    damage = draw(st.sampled_from(["none", "none", "truncate", "insert", "flip"]))
    if damage != "none" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        if damage == "truncate":
            raw = raw[:at]
        elif damage == "insert":
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
        else:
            raw = raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1 :]
    return raw


def _parse(raw: bytes | None) -> Transaction | InvalidTransaction:
    """The parser's answer; any exception other than a rejection propagates (and fails)."""
    try:
        return parse_transaction(raw)
    except InvalidTransaction as exc:
        return exc


def check(raw: bytes | None) -> None:
    """The property: a valid transaction or a rejection with a reason, and nothing else."""
    parsed = _parse(raw)
    if isinstance(parsed, InvalidTransaction):
        assert parsed.reason in REASONS
        assert parsed.detail.strip()
        # The detail is for people and logs: it never echoes a card number from the input.
        for token in (raw or b"").replace(b'"', b" ").split():
            if token.isdigit() and 12 <= len(token) <= 19 and luhn_valid(token.decode()):
                assert token.decode() not in parsed.detail
    else:
        assert raw is not None
        assert len(raw) <= MAX_MESSAGE_BYTES
        assert math.isfinite(parsed.amount)
        assert 0 <= parsed.amount <= 1_000_000_000  # zero-amount authorizations are valid (#11)
        assert parsed.timestamp.utcoffset() is not None
        assert luhn_valid(parsed.card_number)

    assert_fast_path_agrees(raw, parsed)

    out = VALIDATOR.to_event(RawRecord("tx", 0, 0, 1, raw))
    if isinstance(out, CardEvent):
        outcome = DETECTOR.process(CardHistory(), out, 0)
        if outcome.alert is not None:
            orjson.dumps(outcome.alert.to_json_dict())
            bson.encode(alert_document(outcome.alert))
    else:
        assert out.reason in REASONS
        assert out.detail.strip()
        envelope = orjson.loads(orjson.dumps(out.to_json_dict()))
        assert envelope["value_length"] == len(raw or b"")


def assert_fast_path_agrees(raw: bytes | None, parsed: Transaction | InvalidTransaction) -> None:
    """The dataflow's msgspec fast path gives the contract's verdict, field for field."""
    try:
        fast: tuple[WireTransaction, int] | InvalidTransaction = decode_transaction(raw)
    except InvalidTransaction as exc:
        fast = exc
    if isinstance(fast, InvalidTransaction):
        assert isinstance(parsed, InvalidTransaction), f"fast path refused a valid {raw!r}"
        assert (fast.reason, fast.detail) == (parsed.reason, parsed.detail)
        return
    assert isinstance(parsed, Transaction), f"fast path accepted {raw!r}: {parsed}"
    wire, ts_ms = fast
    expected = parsed.model_dump()
    expected.pop("timestamp")
    got = {f: getattr(wire, f) for f in expected}
    assert got == expected
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert ts_ms == (parsed.timestamp - epoch) // timedelta(milliseconds=1)


@PROPERTY
@given(st.one_of(st.binary(max_size=2000), st.just(b""), st.none()))
def test_arbitrary_bytes_are_parsed_or_rejected_with_a_reason(raw: bytes | None) -> None:
    check(raw)


@PROPERTY
@given(json_values, st.booleans())
def test_arbitrary_json_values_are_parsed_or_rejected_with_a_reason(
    value: Any, ascii_only: bool
) -> None:
    check(_encode(value, ascii_only))


@PROPERTY
@given(near_valid())
def test_mutated_transactions_are_parsed_or_rejected_with_a_reason(raw: bytes) -> None:
    check(raw)


def test_the_strategies_reach_both_outcomes_and_every_rejection_path() -> None:
    """Guards against a vacuous property: the mutated transactions must often stay valid and
    must hit the rejection reasons the parser knows (not only invalid_json)."""
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(near_valid())
    def collect(raw: bytes) -> None:
        out = VALIDATOR.to_event(RawRecord("tx", 0, 0, None, raw))
        seen.add("valid" if isinstance(out, CardEvent) else out.reason)

    collect()
    expected = {"valid", "invalid_json", "invalid_transaction", "invalid_encoding"}
    assert expected <= seen, seen
