"""Writes to the alert store: the dataflow's idempotent inserts of alerts and rewrites of
minute statistics, and the queue key migration.

The dataflow only ever inserts alerts (unordered ``insert_many``; a duplicate-key error means
"already there" and is success), so a replay after a crash neither duplicates an alert nor
undoes an analyst's disposition. Inserts rather than ``$setOnInsert`` upserts: same semantics
on MongoDB, and FerretDB v1 (SQLite) serves inserts through its primary key while an upsert
scans the collection (measured: 220 -> 50 upserts/s between 500 and 2,000 alerts, versus
~4,000 inserts/s flat at 12,000 alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from fraudwatch.alert_store.documents import NEW_MINUTE, Doc, queue_key, rule_key_field, rule_keys
from fraudwatch.contract import epoch_ms
from fraudwatch.vocabulary import RULE_NAMES

DUPLICATE_KEY = 11000


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


def backfill_queue_keys(coll: Collection[Doc]) -> int:
    """Give ``queue_key`` and the rule queue keys (``documents.rule_keys``) to alerts written
    before they existed (idempotent; returns how many alerts changed).

    The console lists and pages alerts by these keys, so an alert without them is not in the
    queue (or not in its rules' filtered views). One ``update_one`` by ``_id`` per alert:
    FerretDB v1 stalls on larger bulk writes of updates. A scan of the whole collection (no
    index can say which alerts lack a field), so it is a migration step
    (``flask --app webapp backfill-queue-keys``, and ``make run`` on start), not something the
    dataflow or a request does.
    """
    fields = {"timestamp": 1, "score": 1, "rules": 1, "queue_key": 1}
    fields.update({rule_key_field(r): 1 for r in RULE_NAMES})
    done = 0
    for doc in coll.find({}, fields):
        key = doc.get("queue_key")
        if not isinstance(key, str):
            ts = doc.get("timestamp")
            if not isinstance(ts, datetime):
                continue  # not an alert the dataflow wrote; the console cannot place it either
            if ts.tzinfo is None:  # a client without tz_aware=True reads BSON dates as naive UTC
                ts = ts.replace(tzinfo=UTC)
            score = doc.get("score")
            number = score if isinstance(score, int | float) else None
            key = queue_key(epoch_ms(ts), number, doc["_id"])
        rules = doc.get("rules")
        wanted = {"queue_key": key, **rule_keys(rules if isinstance(rules, list) else [], key)}
        change = {k: v for k, v in wanted.items() if doc.get(k) != v}
        if change:
            coll.update_one({"_id": doc["_id"]}, {"$set": change})
            done += 1
    return done
