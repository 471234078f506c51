"""``AlertStore``: every MongoDB read and write the console makes on alerts, stats and the
disposition audit trail.

Each method is one query shape backed by one index from ``fraudwatch.alert_store`` (named in
its docstring; ``docs/webapp.md`` has the table). List views are bounded by event time,
sorted by ``queue_key`` descending (newest day first, best score first within the day) and
paged by range on that key, never by skip.
Only portable features are used: find with sort/limit, count, update_one,
insert_one (see ``docs/webapp.md``).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fraudwatch.alert_store import (
    AlertView,
    DispositionView,
    Doc,
    MinuteStats,
    rule_key_field,
    schema,
)
from fraudwatch.vocabulary import OUTCOMES, RULE_NAMES, STATUSES, TRANSITIONS
from webapp.data.read_cache import ReadCache
from webapp.queries import AlertQuery

MAX_COMMENT_CHARS = 2000


def _version(doc: Doc) -> int:
    value = doc.get("status_version", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class AlertNotFound(LookupError):
    """No alert has this id."""


class TransitionNotAllowed(ValueError):
    """The state machine does not allow this change (e.g. open -> confirmed_fraud)."""


class DispositionConflict(RuntimeError):
    """Someone changed the alert's status after the analyst loaded it."""

    def __init__(self, seen: str, current: str) -> None:
        super().__init__(
            f"This alert is now '{current}', not '{seen}' as when you opened it: someone else "
            "changed it meanwhile. Reload the alert to see the latest history, then decide again."
        )
        self.seen = seen
        self.current = current


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of the queue, with cursors to the neighbouring pages."""

    alerts: list[AlertView]
    older: str | None
    newer: str | None
    is_first: bool

    def signature(self) -> str:
        """Changes when the page's rows or their statuses change (drives live refresh)."""
        digest = hashlib.sha256()
        for a in self.alerts:
            digest.update(f"{a.alert_id}:{a.status};".encode())
        return digest.hexdigest()[:16]


class AlertStore:
    """The console's view of the ``alerts``, ``alert_stats`` and ``dispositions`` collections."""

    def __init__(
        self,
        db: Database[Doc],
        *,
        queue_window: timedelta,
        read_cache: ReadCache | None = None,
        time_limit_ms: int = 3000,
    ) -> None:
        self._db = db
        # maxTimeMS on every read: the server stops a slow view and pymongo raises
        # ExecutionTimeout, which the console turns into a message (webapp.views.ops).
        self.time_limit_ms = time_limit_ms
        self._alerts = db[schema.ALERTS]
        self._stats = db[schema.ALERT_STATS]
        self._dispositions = db[schema.DISPOSITIONS]
        self.queue_window = queue_window
        # Disabled unless given: exact reads by default (the CLI, benches); the console passes
        # one sized by WEBAPP_READ_CACHE_S.
        self.read_cache = read_cache if read_cache is not None else ReadCache(0)
        self._indexes_ready = False
        self._lock = threading.Lock()

    @property
    def database(self) -> Database[Doc]:
        return self._db

    def ping(self) -> None:
        """Raise ``PyMongoError`` unless the server answers."""
        self._db.client.admin.command("ping")

    def _find(self, coll: Collection[Doc], flt: Doc, fields: Doc) -> Cursor[Doc]:
        """A console read, stopped by the server after ``time_limit_ms``."""
        return coll.find(flt, fields).max_time_ms(self.time_limit_ms)

    def ensure_indexes(self) -> None:
        """Create the shared alert indexes once per process (the dataflow does the same)."""
        if self._indexes_ready:
            return
        with self._lock:
            if not self._indexes_ready:
                schema.ensure_indexes(self._db)
                self._indexes_ready = True

    # --- queue -------------------------------------------------------------------------------

    def page(self, query: AlertQuery, limit: int, now: datetime) -> AlertPage:
        """A page of alerts: newest day first, highest score first within the day.

        Index: ``queue`` (queue_key) without filters; ``by_status`` /
        ``by_status_severity`` / ``by_severity`` / ``by_rule_<rule>`` / ``by_card`` / ``by_last4`` /
        ``by_merchant`` when that filter is set. The time range bounds the index scan and the
        cursor continues it, so page 1000 costs what page 1 costs.
        """
        as_of, bucket = self.as_of(now)
        key = ("page", query, limit, bucket)
        return self.read_cache.get_or_load(key, lambda: self._load_page(query, limit, as_of))

    def _load_page(self, query: AlertQuery, limit: int, now: datetime) -> AlertPage:
        flt = query.mongo_filter(now, self.queue_window)
        if query.after is not None:
            # Newer page: walk the same index upwards from the cursor, then flip.
            cursor = self._find(self._alerts, flt, schema.QUEUE_FIELDS).sort(query.sort(up=True))
            docs = list(cursor.limit(limit + 1))
            if len(docs) <= limit:
                return self._load_page(query.first_page(), limit, now)
            rows = [AlertView.from_doc(d) for d in reversed(docs[:limit])]
            return AlertPage(rows, older=rows[-1].cursor, newer=rows[0].cursor, is_first=False)
        docs = list(
            self._find(self._alerts, flt, schema.QUEUE_FIELDS).sort(query.sort()).limit(limit + 1)
        )
        rows = [AlertView.from_doc(d) for d in docs[:limit]]
        older = rows[-1].cursor if len(docs) > limit and rows else None
        if query.before is None:
            return AlertPage(rows, older=older, newer=None, is_first=True)
        newer = rows[0].cursor if rows else query.before.encode()
        return AlertPage(rows, older=older, newer=newer, is_first=False)

    def status_counts(self, query: AlertQuery, now: datetime) -> dict[str, int]:
        """Alerts per status for the current filters (ignoring the status filter itself).

        One ``count`` per status (a small fixed set): an equality on ``status`` plus the
        filters and the time range, so ``by_status`` (or ``by_status_severity``) bounds each
        one on MongoDB, and the patched FerretDB answers it with a SQL ``COUNT`` on that index
        without reading a document (deploy/ferretdb/patches, 0004). A single ``$group`` on
        status would read every alert of the window on FerretDB (~30 s at 50,000 alerts).
        A status outside the state machine is not shown.
        """
        as_of, bucket = self.as_of(now)
        normalized = replace(query, status=None, before=None, after=None)
        key = ("counts", normalized, bucket)
        return self.read_cache.get_or_load(key, lambda: self._load_counts(normalized, as_of))

    def _load_counts(self, query: AlertQuery, now: datetime) -> dict[str, int]:
        hint = query.count_hint(now, self.queue_window)
        counts = {}
        for status in STATUSES:
            flt = replace(query, status=status).mongo_filter(now, self.queue_window)
            counts[status] = self.count(flt, hint)
        return counts

    def find(self, flt: Doc, fields: Doc, sort: list[tuple[str, int]], limit: int) -> Cursor[Doc]:
        """Alerts matching ``flt`` (validated scalars only), sorted and bounded (case reads)."""
        return self._find(self._alerts, flt, fields).sort(sort).limit(limit)

    def count(self, flt: Doc, hint: str | None = None) -> int:
        """How many alerts match ``flt`` (validated scalars only), walking the index ``hint``
        names if given (an index whose first key ``flt`` bounds)."""
        extra: Doc = {"hint": hint} if hint else {}
        reply = self._db.command(
            "count", schema.ALERTS, query=flt, maxTimeMS=self.time_limit_ms, **extra
        )
        return int(reply["n"])

    def find_one(self, flt: Doc) -> Doc | None:
        """One alert matching ``flt`` (validated scalars only), its queue fields."""
        return self._alerts.find_one(flt, schema.QUEUE_FIELDS, max_time_ms=self.time_limit_ms)

    def as_of(self, now: datetime) -> tuple[datetime, int]:
        """``now`` rounded down to the read cache's time bucket, and the bucket: a cached
        answer is then exactly the answer for its key. Unchanged when the cache is off."""
        if not self.read_cache.enabled:
            return now, 0
        bucket = self.read_cache.bucket(now.timestamp())
        start = datetime.fromtimestamp(bucket * self.read_cache.ttl_s, tz=now.tzinfo or UTC)
        return start, bucket

    # --- one alert ---------------------------------------------------------------------------

    def get(self, alert_id: str) -> AlertView | None:
        """One alert by ``_id`` (the primary key)."""
        doc = self._alerts.find_one({"_id": alert_id}, max_time_ms=self.time_limit_ms)
        return AlertView.from_doc(doc) if doc else None

    def card_history(self, card_token: str, limit: int = 50) -> list[AlertView]:
        """The card's latest alerts, newest first. Index: ``by_card`` (card_token, queue_key):
        the ``limit`` alerts of the card's latest days, then put in time order here (a
        handful of rows; sorting them on the server would not stream from the index)."""
        if not card_token:
            return []
        key = ("card_history", card_token, limit)
        return self.read_cache.get_or_load(key, lambda: self._load_card_history(card_token, limit))

    def _load_card_history(self, card_token: str, limit: int) -> list[AlertView]:
        cursor = self._find(self._alerts, {"card_token": card_token}, schema.QUEUE_FIELDS)
        rows = [AlertView.from_doc(d) for d in cursor.sort(schema.QUEUE_SORT).limit(limit)]
        return sorted(rows, key=lambda a: (a.timestamp, a.alert_id), reverse=True)

    def dispositions(self, alert_id: str) -> list[DispositionView]:
        """The alert's audit trail, oldest first. Index: ``by_alert`` (alert_id, at)."""
        cursor = self._find(self._dispositions, {"alert_id": alert_id}, {"_id": 0})
        return [DispositionView.from_doc(d) for d in cursor.sort([("at", ASCENDING)]).limit(500)]

    def change_status(
        self,
        alert_id: str,
        *,
        seen: str,
        to: str,
        user: str,
        comment: str,
        now: datetime,
        seen_version: int | None = None,
        label: str | None = None,
        label_id: str | None = None,
        case_id: str | None = None,
    ) -> DispositionView:
        """Move an alert through the state machine and record who did it.

        Compare-and-set built on the one primitive that is atomic on every server: an insert
        with a unique ``_id``. The audit entry's ``_id`` is ``<alert id>:<version>``, the
        version of the status the analyst saw, so of two analysts acting on the same view
        exactly one insert succeeds; the loser gets :class:`DispositionConflict`. The winner
        then moves the alert's ``status``/``status_version`` forward with a conditional
        ``update_one``. (A conditional update alone is atomic on MongoDB but not on FerretDB
        v1, where concurrent updates of one document can all match.) If a process dies
        between the two writes, the next attempt finds the orphaned entry and rolls the alert
        forward to it before answering with a conflict.

        Each write to an alert clears this process's read cache (``_apply``), so the next read
        sees the change.

        ``label`` and ``label_id`` (a verdict's fraud label and its outbox entry, see
        ``webapp.data.label_outbox``) are written into the same audit entry, so the label belongs to
        the disposition exactly when the compare-and-set wins. ``case_id`` (a change made on a
        whole case, ``webapp.data.cases``) is written into the audit entry and onto the alert.

        Raises:
            TransitionNotAllowed, AlertNotFound, DispositionConflict, PyMongoError
        """
        doc = self._alerts.find_one({"_id": alert_id}, {"status": 1, "status_version": 1})
        if doc is None:
            raise AlertNotFound(alert_id)
        current = str(doc.get("status", "open"))
        version = _version(doc)
        if current != seen or (seen_version is not None and seen_version != version):
            raise DispositionConflict(seen, current)
        if to not in TRANSITIONS.get(seen, ()):
            allowed = ", ".join(TRANSITIONS.get(seen, ())) or "nothing"
            raise TransitionNotAllowed(f"An alert in '{seen}' can move to {allowed}, not '{to}'.")
        entry = {
            "_id": f"{alert_id}:{version}",
            "alert_id": alert_id,
            "at": now,
            "user": user,
            "from": seen,
            "to": to,
            "comment": comment,
            "version": version + 1,
        }
        if label_id is not None:
            entry.update(label=label, label_id=label_id)
        if case_id:
            entry["case_id"] = case_id
        try:
            self._dispositions.insert_one(entry)
        except DuplicateKeyError:
            self._roll_forward(alert_id, version)
            fresh = self._alerts.find_one({"_id": alert_id}, {"status": 1}) or {}
            raise DispositionConflict(seen, str(fresh.get("status", current))) from None
        self._apply(alert_id, version, to, user, now, case_id)
        return DispositionView.from_doc(entry)

    def _apply(
        self,
        alert_id: str,
        version: int,
        to: str,
        user: str,
        at: datetime,
        case_id: str | None = None,
    ) -> None:
        at_version: Any = {"$exists": False} if version == 0 else version
        change: Doc = {
            "status": to,
            "status_version": version + 1,
            "status_changed_at": at,
            "status_changed_by": user,
        }
        if case_id:
            change["case_id"] = case_id
        try:
            self._alerts.update_one(
                {"_id": alert_id, "status_version": at_version}, {"$set": change}
            )
        finally:
            # Also when the update failed: it may have been applied before the error.
            self.read_cache.invalidate()

    def _roll_forward(self, alert_id: str, version: int) -> None:
        """Apply a winning audit entry whose status update never happened (crash recovery);
        a no-op when the winner's update already went through."""
        claim = self._dispositions.find_one({"_id": f"{alert_id}:{version}"})
        if claim is not None:
            at = claim.get("at")
            when = at if isinstance(at, datetime) else datetime.now(UTC)
            case_id = claim.get("case_id")
            self._apply(
                alert_id,
                version,
                str(claim.get("to")),
                str(claim.get("user")),
                when,
                case_id if isinstance(case_id, str) else None,
            )

    # --- dashboard ---------------------------------------------------------------------------

    def minute_stats(self, since: datetime, until: datetime) -> list[MinuteStats]:
        """Per-minute counts in [since, until), oldest first. Index: ``by_minute``."""
        key = ("minute_stats", since, until)
        return self.read_cache.get_or_load(key, lambda: self._load_minute_stats(since, until))

    def _load_minute_stats(self, since: datetime, until: datetime) -> list[MinuteStats]:
        cursor = self._find(self._stats, {"minute": {"$gte": since, "$lt": until}}, {"_id": 0})
        rows = (MinuteStats.from_doc(d) for d in cursor.sort([("minute", ASCENDING)]).limit(2000))
        return [r for r in rows if r is not None]

    def outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        """Analysts' verdicts per rule on the alerts of the days from ``since``'s on:
        {rule: {outcome status: count}}.

        One ``count`` per rule and outcome, each an equality on ``status`` plus a range on the
        rule's queue key, walking the rule's index (``by_rule_<rule>``): index-backed on
        MongoDB and on the patched FerretDB (an SQL count, no document read). An aggregation
        that unwinds ``rules`` would read every decided alert of the week (~3 s at 50,000
        alerts on FerretDB). Whole days, so that requests a moment apart share one answer.
        """
        day = since.astimezone(UTC).strftime("%Y-%m-%d")
        key = ("outcomes", day)
        return self.read_cache.get_or_load(key, lambda: self._load_outcomes(day))

    def _load_outcomes(self, day: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for rule in RULE_NAMES:
            field = rule_key_field(rule)
            for status in OUTCOMES:
                n = self.count({"status": status, field: {"$gte": day}}, schema.rule_index(rule))
                if n:
                    out.setdefault(rule, {})[status] = n
        return out
