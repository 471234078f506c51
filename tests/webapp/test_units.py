"""Pure tests: parameter validation, cursors, geometry, stats and document parsing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudwatch.alert_store import MinuteStats, queue_key
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import epoch_ms
from fraudwatch.geo import haversine_km
from webapp.dashboard_stats import build_stats
from webapp.queries import (
    LIST_PARAMS,
    AlertQuery,
    Cursor,
    InvalidParameter,
    parse_alert_query,
    parse_card,
    single_values,
)
from webapp.settings import SettingsError, WebappSettings
from webapp.views.ops import RedactCardNumbers, mask_pans

TOKENIZER = CardTokenizer("unit-test-key")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
VISA = "4111111111111111"


def parse(**values: str) -> AlertQuery:
    return parse_alert_query(values, TOKENIZER)


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ("1111", "card_last4", "1111"),
        ("ABCDEF0123456789abcdef0123456789", "card_token", "abcdef0123456789abcdef0123456789"),
        (VISA, "card_token", TOKENIZER.token(VISA)),
        ("4111 1111 1111 1111", "card_token", TOKENIZER.token(VISA)),
    ],
)
def test_card_filter_accepts_last4_token_or_a_full_number_turned_into_its_token(
    raw: str, field: str, value: str
) -> None:
    card = parse_card(raw, TOKENIZER)
    assert (card.field, card.value) == (field, value)


def test_card_filter_refuses_a_number_that_fails_the_luhn_check() -> None:
    with pytest.raises(InvalidParameter, match="Luhn"):
        parse_card("4111111111111112", TOKENIZER)


@pytest.mark.parametrize(
    "args",
    [
        {"card[$ne]": ["x"]},
        {"status[$regex]": [".*"]},
        {"$where": ["1"]},
        {"status": ["open", "dismissed"]},
        {"status": ['{"$ne": null}']},
        {"severity": ["high' || '1'=='1"]},
        {"merchant": ["(a+)+$"]},
        {"merchant": ["m-1" * 40]},
        {"from": ["yesterday"]},
        {"before": ["123_zz"]},
        {"rule": ["velocity_count|card_testing"]},
    ],
)
def test_query_parameters_of_any_other_shape_are_refused(args: dict[str, list[str]]) -> None:
    def parse_args() -> AlertQuery:
        return parse_alert_query(single_values(args, LIST_PARAMS), TOKENIZER)

    with pytest.raises(InvalidParameter):
        parse_args()


@given(st.dictionaries(st.text(max_size=12), st.lists(st.text(max_size=80), max_size=3)))
def test_no_operator_from_a_request_reaches_a_mongo_filter(args: dict[str, list[str]]) -> None:
    try:
        query = parse_alert_query(single_values(args, LIST_PARAMS), TOKENIZER)
    except InvalidParameter:
        return
    flt = query.mongo_filter(NOW, timedelta(hours=1))
    allowed_ops = {"$gte", "$lt", "$gt", "$or"}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert not key.startswith("$") or key in allowed_ops
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        else:
            assert isinstance(node, str | datetime)

    walk(flt)


def test_filter_is_always_bounded_by_time_and_combines_the_filters() -> None:
    query = parse(status="open", severity="high", rule="card_testing", card="1111")
    flt = query.mongo_filter(NOW, timedelta(hours=24))
    assert flt["status"] == "open"
    assert flt["severity"] == "high"
    assert flt["card_last4"] == "1111"
    # whole UTC days: the day 24 hours ago through today, no timestamp condition needed; a
    # rule filter ranges over the rule's own queue key instead of the `rules` array
    assert flt["queue_key_card_testing"] == {"$gte": "2026-11-24", "$lt": "2026-11-26"}
    assert "queue_key" not in flt
    assert "rules" not in flt
    assert "timestamp" not in flt
    assert query.sort() == [("queue_key_card_testing", -1)]
    assert query.count_hint(NOW, timedelta(hours=24)) == "by_last4"


def test_a_time_range_inside_days_adds_exact_timestamp_bounds() -> None:
    flt = parse(**{"from": "2026-11-20T08:30", "to": "2026-11-22"}).mongo_filter(
        NOW, timedelta(hours=24)
    )
    assert flt["queue_key"] == {"$gte": "2026-11-20", "$lt": "2026-11-22"}
    assert flt["timestamp"] == {"$gte": datetime(2026, 11, 20, 8, 30, tzinfo=UTC)}
    flt = parse(**{"to": "2026-11-22T06:00"}).mongo_filter(NOW, timedelta(hours=24))
    assert flt["queue_key"] == {"$gte": "2026-11-21", "$lt": "2026-11-23"}
    assert flt["timestamp"] == {"$lt": datetime(2026, 11, 22, 6, 0, tzinfo=UTC)}


def test_cursor_round_trips_and_old_timestamp_cursors_are_refused() -> None:
    key = queue_key(epoch_ms(datetime(2026, 11, 25, 8, 40, tzinfo=UTC)), 0.5, "a" * 24)
    assert Cursor.decode("before", Cursor(key).encode()) == Cursor(key)
    for stale in ("1764060012123_" + "a" * 24, key + "0", key.replace("_", "|"), ""):
        with pytest.raises(InvalidParameter, match="cursor from a previous page"):
            Cursor.decode("before", stale)


def test_before_cursor_continues_below_the_last_rows_key_within_the_range() -> None:
    key = queue_key(epoch_ms(datetime(2026, 11, 24, 8, 40, tzinfo=UTC)), 0.5, "b" * 24)
    flt = parse(before=key).mongo_filter(NOW, timedelta(days=7))
    assert flt["queue_key"] == {"$gte": "2026-11-18", "$lt": key}
    assert "timestamp" not in flt
    assert "$or" not in flt


def test_after_cursor_continues_above_the_key_and_the_range_bounds_both_ends() -> None:
    key = queue_key(epoch_ms(datetime(2026, 11, 24, 8, 40, tzinfo=UTC)), 0.5, "b" * 24)
    newer = parse(after=key).mongo_filter(NOW, timedelta(days=7))
    assert newer["queue_key"] == {"$gt": key, "$lt": "2026-11-26"}
    # a cursor from before the range starts the range at its first day
    far = parse(after=key).mongo_filter(NOW, timedelta(minutes=10))
    assert far["queue_key"] == {"$gt": "2026-11-25", "$lt": "2026-11-26"}


def test_empty_form_fields_count_as_absent() -> None:
    assert single_values({"status": [""], "card": ["  "]}, LIST_PARAMS) == {}


def test_haversine_berlin_paris_is_about_878_km() -> None:
    assert haversine_km(52.52, 13.405, 48.857, 2.352) == pytest.approx(878, abs=3)


def test_stats_fill_missing_minutes_and_compute_precision_per_rule() -> None:
    since = NOW - timedelta(minutes=3)
    minutes = [
        MinuteStats(since, 1000, 3, 1, {"card_testing": 2, "high_amount": 1}, {"high": 3}),
        MinuteStats(since + timedelta(minutes=2), 500, 1, 0, {"card_testing": 1}, {"low": 1}),
    ]
    outcomes = {"card_testing": {"confirmed_fraud": 3, "false_positive": 1, "dismissed": 5}}
    stats = build_stats(minutes, outcomes, since=since, until=NOW, outcome_since=since)
    assert [m["alerts"] for m in stats["minutes"]] == [3, 0, 1]
    assert stats["totals"]["transactions"] == 1500
    assert stats["by_severity"]["high"] == 3
    card_testing = next(o for o in stats["outcomes"] if o["rule"] == "card_testing")
    assert card_testing["precision"] == 0.75
    assert next(o for o in stats["outcomes"] if o["rule"] == "high_amount")["precision"] is None


def test_card_numbers_in_free_text_are_masked_but_other_numbers_kept() -> None:
    assert mask_pans(f"paid with {VISA} order 123456789012") == (
        "paid with ############1111 order 123456789012"
    )


def test_request_log_lines_never_carry_a_card_number() -> None:
    record = logging.LogRecord(
        "werkzeug", logging.INFO, "", 0, '"GET /?card=%s HTTP/1.1"', (VISA,), None
    )
    RedactCardNumbers().filter(record)
    assert VISA not in record.getMessage()


def test_production_without_a_secret_key_fails_with_the_variable_to_set() -> None:
    settings = WebappSettings(webapp_secret_key=None)
    with pytest.raises(SettingsError, match="WEBAPP_SECRET_KEY"):
        settings.secret_key(development=False)
    assert settings.secret_key(development=True) is None


def test_a_short_secret_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="too short"):
        WebappSettings(webapp_secret_key="short").secret_key(development=False)
