"""``fraudwatch.alert_store``: document shapes both ways (no services), and the writes and
indexes on the real MongoDB-protocol server."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from devtools.demo_data import make_alert_doc
from fraudwatch.alert_store import (
    NEW_MINUTE,
    AlertView,
    backfill_queue_keys,
    ensure_indexes,
    queue_key,
    rule_keys,
    stats_document,
    write_stats,
)
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import epoch_ms

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_queue_key_orders_by_day_then_score_then_id() -> None:
    day1 = epoch_ms(datetime(2026, 11, 24, 23, 59, tzinfo=UTC))
    day2 = epoch_ms(datetime(2026, 11, 25, 0, 1, tzinfo=UTC))
    keys = [
        queue_key(day2, 0.91, "a" * 24),
        queue_key(day2, 0.91, "b" * 24),
        queue_key(day2, 0.2, "f" * 24),
        queue_key(day1, 0.99, "c" * 24),
        queue_key(day1, None, "d" * 24),
    ]
    # newest day first, best score first within the day, then the id (descending)
    assert sorted(keys, reverse=True) == [keys[1], keys[0], keys[2], keys[3], keys[4]]
    assert keys[0] == "2026-11-25_0910000_" + "a" * 24
    assert queue_key(day1, 1.7, "e" * 24) == "2026-11-24_1000000_" + "e" * 24
    assert queue_key(day1, float("nan"), "e" * 24) == queue_key(day1, -1.0, "e" * 24)


def test_alert_without_evidence_txns_or_optional_fields_still_reads() -> None:
    alert = AlertView.from_doc(
        {"_id": "c" * 24, "timestamp": NOW, "card_masked": "411111******1111"}
    )
    assert alert.evidence_txns == ()
    assert alert.card_last4 == "1111"
    assert alert.status == "open"


def test_a_stats_document_is_the_minute_with_its_complete_counts() -> None:
    counts = {
        "transactions": 5,
        "alerts": 1,
        "late": 0,
        "duplicates": 0,
        "by_rule": {"velocity_count": 1},
        "by_severity": {"high": 1},
    }
    minute = epoch_ms(datetime(2026, 11, 25, 8, 41, tzinfo=UTC)) // 60_000
    doc = stats_document(minute, counts)
    assert doc["_id"] == "2026-11-25T08:41Z"
    assert doc["minute"] == datetime(2026, 11, 25, 8, 41, tzinfo=UTC)
    assert doc["by_rule"] == {"velocity_count": 1}
    assert doc["by_rule"] is not counts["by_rule"]
    assert NEW_MINUTE not in doc
    assert stats_document(minute, counts, new=True)[NEW_MINUTE] is True


@pytest.mark.integration
def test_ensure_indexes_replaces_an_index_whose_definition_changed(mongo_db) -> None:
    mongo_db["alerts"].create_index([("severity", 1)], name="by_severity")  # an old release's
    ensure_indexes(mongo_db)
    ensure_indexes(mongo_db)  # idempotent afterwards
    info = mongo_db["alerts"].index_information()
    assert info["by_severity"]["key"] == [("severity", 1), ("queue_key", -1)]


@pytest.mark.integration
def test_stats_first_writes_insert_and_a_replayed_first_write_still_rewrites(mongo_db) -> None:
    coll = mongo_db["alert_stats"]
    write_stats(coll, [{"_id": "m1", "transactions": 5, NEW_MINUTE: True}])
    write_stats(coll, [{"_id": "m1", "transactions": 7}])
    # After a crash the writer may not know it wrote m1 already: the insert collides and the
    # complete counts still win.
    write_stats(
        coll,
        [
            {"_id": "m1", "transactions": 9, NEW_MINUTE: True},
            {"_id": "m2", "transactions": 1, NEW_MINUTE: True},
        ],
    )
    assert {d["_id"]: d["transactions"] for d in coll.find()} == {"m1": 9, "m2": 1}
    assert NEW_MINUTE not in coll.find_one({"_id": "m2"})


def test_an_alert_carries_its_queue_key_once_per_filterable_rule() -> None:
    rng = random.Random(1)
    doc = make_alert_doc(
        rng, CardTokenizer("k" * 32), ts=NOW, seq=1, rules=["card_testing", "velocity_count"]
    )
    assert doc["queue_key_card_testing"] == doc["queue_key"]
    assert doc["queue_key_velocity_count"] == doc["queue_key"]
    assert not any(k.startswith("queue_key_") and k[10:] not in doc["rules"] for k in doc)
    # a rule the console cannot filter on gets no field (nor an index)
    assert rule_keys(["card_testing", "not_a_rule"], "k") == {"queue_key_card_testing": "k"}


def test_backfill_adds_the_rule_keys_an_older_alert_lacks_and_only_once(mongo_db) -> None:
    rng = random.Random(2)
    tokenizer = CardTokenizer("k" * 32)
    old = make_alert_doc(rng, tokenizer, ts=NOW, seq=1, rules=["impossible_travel"])
    del old["queue_key_impossible_travel"]
    current = make_alert_doc(rng, tokenizer, ts=NOW, seq=2, rules=["card_testing"])
    mongo_db["alerts"].insert_many([old, current])
    assert backfill_queue_keys(mongo_db["alerts"]) == 1
    stored = mongo_db["alerts"].find_one({"_id": old["_id"]})
    assert stored["queue_key_impossible_travel"] == old["queue_key"]
    assert backfill_queue_keys(mongo_db["alerts"]) == 0


def test_ensure_indexes_drops_the_obsolete_rule_array_index(mongo_db) -> None:
    mongo_db["alerts"].create_index([("rules", 1), ("queue_key", -1)], name="by_rule")
    ensure_indexes(mongo_db)
    names = set(mongo_db["alerts"].index_information())
    assert "by_rule" not in names
    assert {"by_rule_card_testing", "by_time", "by_merchant"} <= names
