"""The MongoDB layout of the alert store: collection names, indexes, the queue's sort and the
fields a queue row reads.

Collections (database ``MONGODB_DATABASE``):

- ``alerts``: one document per alert (``documents.alert_document``), ``_id`` = the
  deterministic alert id. The dataflow only inserts; ``status`` and its audit fields belong to
  the console after insert.
- ``alert_stats``: one document per event-time minute (``documents.stats_document``), fully
  rewritten from the dataflow's complete counts for that minute, so replays do not inflate it.
- ``dispositions``: the console's insert-only audit trail (``documents.DispositionView``).

Only features that behave the same on MongoDB 7/8 and FerretDB v1 are used here: see
``docs/architecture.md`` ("MongoDB portability").
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import OperationFailure

from fraudwatch.alert_store.documents import rule_key_field
from fraudwatch.vocabulary import RULE_NAMES

ALERTS = "alerts"
ALERT_STATS = "alert_stats"
DISPOSITIONS = "dispositions"
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
_log = logging.getLogger(__name__)

Doc = dict[str, Any]

# Each console list view is served by one of these. Lists are sorted by ``queue_key``
# descending (newest event day first, highest score first within the day: see
# ``documents.queue_key``), which is also the cursor for range pagination; the
# key's day prefix bounds each scan to the view's time range. A card's own history on the
# detail page (a handful of alerts) is read through ``by_card`` and sorted by time.


def rule_index(rule: str) -> str:
    """The name of the index on ``rule``'s queue key field."""
    return f"by_rule_{rule}"


ALERT_INDEXES: list[IndexModel] = [
    IndexModel([("queue_key", DESCENDING)], name="queue"),
    IndexModel([("status", ASCENDING), ("queue_key", DESCENDING)], name="by_status"),
    IndexModel(
        [("status", ASCENDING), ("severity", ASCENDING), ("queue_key", DESCENDING)],
        name="by_status_severity",
    ),
    IndexModel([("severity", ASCENDING), ("queue_key", DESCENDING)], name="by_severity"),
    # ``status`` last: a view's counts per status are then answered from the index alone
    # (covered), without reading an alert (on FerretDB ~25 us an alert read, 2 ms for the
    # index: measured on one merchant's 5,000 alerts).
    IndexModel(
        [("card_token", ASCENDING), ("queue_key", DESCENDING), ("status", ASCENDING)],
        name="by_card",
    ),
    IndexModel(
        [("card_last4", ASCENDING), ("queue_key", DESCENDING), ("status", ASCENDING)],
        name="by_last4",
    ),
    IndexModel(
        [("merchant_id", ASCENDING), ("queue_key", DESCENDING), ("status", ASCENDING)],
        name="by_merchant",
    ),
    IndexModel([("case_id", ASCENDING), ("queue_key", DESCENDING)], name="by_case"),
    # An analyst's from/to inside a day: the counts of that view walk the time range.
    IndexModel(
        [("timestamp", DESCENDING), ("status", ASCENDING), ("queue_key", DESCENDING)],
        name="by_time",
    ),
    # The rule filter: one scalar key per rule (``documents.rule_key_field``), not the
    # ``rules`` array, which the patched FerretDB cannot use as an index bound.
    *(
        IndexModel(
            [(rule_key_field(rule), DESCENDING), ("status", ASCENDING)], name=rule_index(rule)
        )
        for rule in RULE_NAMES
    ),
]
# Indexes of earlier releases that no view uses any more: dropped by ``ensure_indexes`` (each
# index costs every alert insert a write).
OBSOLETE_INDEXES: dict[str, tuple[str, ...]] = {ALERTS: ("by_rule",)}
STATS_INDEXES: list[IndexModel] = [IndexModel([("minute", DESCENDING)], name="by_minute")]
DISPOSITION_INDEXES: list[IndexModel] = [
    IndexModel([("alert_id", ASCENDING), ("at", ASCENDING)], name="by_alert"),
]


def ensure_indexes(db: Database[Doc]) -> None:
    """Create every index the console and the sink rely on (idempotent).

    One index per command: FerretDB v1.24 drops the connection (a server-side panic) when a
    single createIndexes command repeats several indexes that already exist. An existing index
    with the same name but an older definition is replaced (dropped and rebuilt), and the
    indexes in ``OBSOLETE_INDEXES`` are dropped, so a new release's index list takes effect on
    start.
    """
    for coll, models in (
        (ALERTS, ALERT_INDEXES),
        (ALERT_STATS, STATS_INDEXES),
        (DISPOSITIONS, DISPOSITION_INDEXES),
    ):
        for model in models:
            try:
                db[coll].create_indexes([model])
            except OperationFailure as exc:
                if exc.code not in (INDEX_OPTIONS_CONFLICT, INDEX_KEY_SPECS_CONFLICT):
                    raise
                name = model.document["name"]
                _log.warning(
                    "replacing index with an outdated definition",
                    extra={"collection": coll, "index": name},
                )
                db[coll].drop_index(name)
                db[coll].create_indexes([model])
    for coll, names in OBSOLETE_INDEXES.items():
        existing = db[coll].index_information()
        for name in names:
            if name in existing:
                _log.info(
                    "dropping an index no view uses", extra={"collection": coll, "index": name}
                )
                db[coll].drop_index(name)


QUEUE_SORT = [("queue_key", DESCENDING)]
# What a queue row needs; reasons and evidence stay on the server until the detail page.
QUEUE_FIELDS = {
    name: 1
    for name in (
        "timestamp",
        "queue_key",
        "detected_at",
        "status",
        "severity",
        "score",
        "card_token",
        "card_masked",
        "card_last4",
        "account_id",
        "amount",
        "currency",
        "merchant_id",
        "merchant_name",
        "merchant_category",
        "channel",
        "country",
        "rules",
        "transaction_id",
        "status_changed_at",
        "status_changed_by",
        "status_version",
        "case_id",
    )
}
