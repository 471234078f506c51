"""MongoDB layout shared by the dataflow (writer) and the web app (reader).

Collections (database ``MONGODB_DATABASE``):

- ``alerts``: one document per alert, ``_id`` = the deterministic alert id. The dataflow only
  ever inserts (unordered ``insert_many``; a duplicate-key error means "already there" and is
  success), so a replay after a crash neither duplicates an alert nor undoes an analyst's
  disposition; ``status`` belongs to the web app after insert. Inserts rather than
  ``$setOnInsert`` upserts: same semantics on MongoDB, and FerretDB v1 (SQLite) serves
  inserts through its primary key while an upsert scans the collection (measured: 220 -> 50
  upserts/s between 500 and 2,000 alerts, versus ~4,000 inserts/s flat at 12,000 alerts).
- ``alert_stats``: one document per event-time minute, fully rewritten (``$set``) from the
  dataflow's complete counts for that minute, so replays do not inflate it.
- ``dispositions``: insert-only audit trail written by the web app.

Only features that behave the same on MongoDB 7/8 and FerretDB v1 are used here: see
``docs/architecture.md`` ("MongoDB portability").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, OperationFailure

from fraudwatch.contract import epoch_ms, queue_key

ALERTS = "alerts"
ALERT_STATS = "alert_stats"
DISPOSITIONS = "dispositions"
DUPLICATE_KEY = 11000
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
_log = logging.getLogger(__name__)

Doc = dict[str, Any]

# Each console list view is served by one of these. Lists are sorted by ``queue_key``
# descending (newest event day first, highest score first within the day: see
# ``fraudwatch.contract.queue_key``), which is also the cursor for range pagination; the
# key's day prefix bounds each scan to the view's time range. A card's own history on the
# detail page (a handful of alerts) is read through ``by_card`` and sorted by time.
ALERT_INDEXES: list[IndexModel] = [
    IndexModel([("queue_key", DESCENDING)], name="queue"),
    IndexModel([("status", ASCENDING), ("queue_key", DESCENDING)], name="by_status"),
    IndexModel(
        [("status", ASCENDING), ("severity", ASCENDING), ("queue_key", DESCENDING)],
        name="by_status_severity",
    ),
    IndexModel([("severity", ASCENDING), ("queue_key", DESCENDING)], name="by_severity"),
    IndexModel([("card_token", ASCENDING), ("queue_key", DESCENDING)], name="by_card"),
    IndexModel([("card_last4", ASCENDING), ("queue_key", DESCENDING)], name="by_last4"),
    IndexModel([("merchant_id", ASCENDING), ("queue_key", DESCENDING)], name="by_merchant"),
    IndexModel([("rules", ASCENDING), ("queue_key", DESCENDING)], name="by_rule"),
]
STATS_INDEXES: list[IndexModel] = [IndexModel([("minute", DESCENDING)], name="by_minute")]
DISPOSITION_INDEXES: list[IndexModel] = [
    IndexModel([("alert_id", ASCENDING), ("at", ASCENDING)], name="by_alert"),
]


def ensure_indexes(db: Database[Doc]) -> None:
    """Create every index the console and the sink rely on (idempotent).

    One index per command: FerretDB v1.24 drops the connection (a server-side panic) when a
    single createIndexes command repeats several indexes that already exist. An existing index
    with the same name but an older definition is replaced (dropped and rebuilt), so a new
    release's index list takes effect on start.
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


def write_alerts(coll: Collection[Doc], docs: Sequence[Doc]) -> int:
    """Insert alerts that are not there yet; existing ones are left untouched.

    Returns how many were new. Any error other than a duplicate ``_id`` is raised.
    """
    if not docs:
        return 0
    try:
        result = coll.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if others or exc.details.get("writeConcernErrors"):
            raise
        return int(exc.details.get("nInserted", 0))
    return len(result.inserted_ids)


NEW_MINUTE = "_new"  # marker on a stats document its writer has not written before


def write_stats(coll: Collection[Doc], minutes: Sequence[Doc]) -> None:
    """Rewrite whole minutes of ``alert_stats`` (idempotent).

    Minutes marked ``NEW_MINUTE`` are inserted (a duplicate ``_id`` after a replay falls back
    to the rewrite); the others are rewritten with ``$set``. FerretDB v1 (SQLite) serves
    inserts by primary key but scans the collection for every update or upsert (~10-25 ms per
    document at 2,600 minutes: draining a 100,000-transaction backlog spread over two days
    spent 99 % of its wall time in stats upserts); a backlog writes most minutes only once, so
    inserting first removes nearly all of that. On MongoDB both paths use the ``_id`` index.
    """
    fresh = [{k: v for k, v in m.items() if k != NEW_MINUTE} for m in minutes if m.get(NEW_MINUTE)]
    again = [m for m in minutes if not m.get(NEW_MINUTE)]
    if fresh:
        try:
            coll.insert_many(fresh, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            again.extend(fresh[e["index"]] for e in errors)
    for m in again:
        fields = {k: v for k, v in m.items() if k != "_id"}
        coll.update_one({"_id": m["_id"]}, {"$set": fields}, upsert=True)


def minute_id(minute: datetime) -> str:
    """The ``_id`` of an ``alert_stats`` document: the minute in RFC 3339, UTC."""
    return minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def backfill_queue_keys(coll: Collection[Doc]) -> int:
    """Give ``queue_key`` to alerts written before it existed (idempotent; returns how many).

    The console lists and pages alerts by that key, so an alert without it is not in the
    queue. One ``update_one`` by ``_id`` per alert: FerretDB v1 stalls on larger bulk writes
    of updates. A scan of the whole collection (``$exists`` is no index bound), so it is a
    migration step (``flask --app webapp backfill-queue-keys``, and ``make run`` on start),
    not something the dataflow or a request does.
    """
    missing = coll.find({"queue_key": {"$exists": False}}, {"timestamp": 1, "score": 1})
    done = 0
    for doc in missing:
        ts = doc.get("timestamp")
        if not isinstance(ts, datetime):
            continue  # not an alert the dataflow wrote; the console cannot place it either
        if ts.tzinfo is None:  # a client without tz_aware=True reads BSON dates as naive UTC
            ts = ts.replace(tzinfo=UTC)
        score = doc.get("score")
        key = queue_key(epoch_ms(ts), score if isinstance(score, int | float) else None, doc["_id"])
        coll.update_one({"_id": doc["_id"]}, {"$set": {"queue_key": key}})
        done += 1
    return done
