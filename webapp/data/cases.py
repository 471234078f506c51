"""Cases: the alerts of one card worked as one incident (docs/webapp.md, "Cases").

A case is not a document of its own; it is read from the alerts, so the dataflow's insert-only,
idempotent alert writes are all it takes to keep it whole: a replay or a recovery cannot split
or duplicate a case.

- **Open case**: every alert of a card that is not decided yet (status ``open`` or
  ``investigating``). A new alert on the card joins it by being undecided.
- **Decided case**: the alerts one decision covered. The decision writes the case's id onto
  each of them (``case_id``, with the status, in the same compare-and-set as before), so they
  stay together whatever comes later; a new alert on the card starts a new open case.
- **Case id**: the ``case_id`` its alerts carry (a decided case, or one re-opened for
  investigation), else the id of its first alert by event time.

The queue lists cases in the alerts' own order (newest day first, best score first within the
day): a case stands where its best alert of the newest day stands. A page reads the alert index
from the cursor down and groups the rows by case, then reads each case's alerts (one indexed
read per case, a few in parallel); a case met on a later page that has a higher matching alert
(it was listed on an earlier page) is skipped, which its alerts, already read, tell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from fraudwatch.alert_store import AlertView, DispositionView, Doc, schema
from fraudwatch.vocabulary import BASE_CURRENCY, EXCHANGE_RATES, SEVERITIES, STATUSES, UNDECIDED
from webapp.data.store import AlertStore
from webapp.queries import AlertQuery

# A case lists at most this many alerts (a card-testing burst of hundreds is still one case;
# its page shows the newest ones and says how many there are).
MAX_CASE_ALERTS = 500
# A queue page reads at most this many alert rows per case row it shows.
SCAN_PER_ROW = 40
# ... fetched this many at a time (the server decodes a whole batch before answering).
SCAN_BATCH = 100
# How many cases of a page are read at once (each is one indexed read).
CASE_READ_THREADS = 4
# The undecided statuses as one string range (an open case is one read, not one per status).
_UNDECIDED_RANGE = {"$gte": min(UNDECIDED), "$lte": max(UNDECIDED)}
if any(
    _UNDECIDED_RANGE["$gte"] <= s <= _UNDECIDED_RANGE["$lte"]
    for s in set(STATUSES) - set(UNDECIDED)
):
    raise AssertionError("a decided status sorts between the undecided ones")


def case_key(a: AlertView) -> str:
    """Which case the alert is in, for grouping: its card's open case while undecided (also
    when a decided case was re-opened), else the case it was decided in."""
    if a.status in UNDECIDED:
        return "card:" + a.card_token
    if a.case_id:
        return "case:" + a.case_id
    return "alert:" + a.alert_id  # decided on its own, before cases existed


@dataclass(frozen=True, slots=True)
class Case:
    """One case: its alerts (oldest first) and what the queue and the case page show."""

    case_id: str
    alerts: tuple[AlertView, ...]
    total_alerts: int  # may exceed len(alerts): a case lists at most MAX_CASE_ALERTS

    @property
    def head(self) -> AlertView:
        """The alert that places the case in the queue: the best of its newest day."""
        return max(self.alerts, key=lambda a: a.cursor)

    @property
    def best(self) -> AlertView:
        return max(self.alerts, key=lambda a: (a.score or 0.0, a.timestamp))

    @property
    def card_token(self) -> str:
        return self.alerts[0].card_token

    @property
    def card_masked(self) -> str:
        return self.alerts[0].card_masked

    @property
    def status(self) -> str:
        """``open`` while any alert is open; else ``investigating`` while any is; else the
        verdict (the newest alert's, if they ever differ)."""
        statuses = {a.status for a in self.alerts}
        for s in UNDECIDED:
            if s in statuses:
                return s
        return self.alerts[-1].status

    @property
    def is_open(self) -> bool:
        return self.status in UNDECIDED

    @property
    def undecided(self) -> tuple[AlertView, ...]:
        return tuple(a for a in self.alerts if a.status in UNDECIDED)

    @property
    def severity(self) -> str:
        return max((a.severity for a in self.alerts), key=_severity_rank)

    @property
    def score(self) -> float | None:
        return self.best.score

    @property
    def first_at(self) -> datetime:
        return self.alerts[0].timestamp

    @property
    def last_at(self) -> datetime:
        return self.alerts[-1].timestamp

    @property
    def total_amount(self) -> float:
        """The alerted amounts in the base currency (unknown currencies count as 0)."""
        return round(
            sum((a.amount or 0.0) * EXCHANGE_RATES.get(a.currency, 0.0) for a in self.alerts), 2
        )

    @property
    def base_currency(self) -> str:
        return BASE_CURRENCY

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule seen in the case, in the order they first fired."""
        seen: dict[str, None] = {}
        for a in self.alerts:
            for r in a.rules:
                seen.setdefault(r, None)
        return tuple(seen)

    @property
    def merchants(self) -> tuple[tuple[str, str], ...]:
        """(merchant id, name) of every merchant in the case, first seen first."""
        seen: dict[str, str] = {}
        for a in self.alerts:
            seen.setdefault(a.merchant_id, a.merchant_name)
        return tuple(seen.items())

    @property
    def signature(self) -> str:
        """Changes when an alert joins or changes status: the decision form carries it, so a
        decision is refused if the case changed after the analyst loaded it."""
        return case_signature((a.alert_id, a.status, a.status_version) for a in self.alerts)


def case_signature(alerts: Iterable[tuple[str, str, int]]) -> str:
    """The signature of a case with these (alert id, status, status version), oldest first."""
    digest = hashlib.sha256()
    for alert_id, status, version in alerts:
        digest.update(f"{alert_id}:{status}:{version};".encode())
    return digest.hexdigest()[:16]


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def make_case(alerts: Iterable[AlertView], total: int | None = None) -> Case:
    members = tuple(sorted(alerts, key=lambda a: (a.timestamp, a.alert_id)))
    if not members:
        raise ValueError("a case has at least one alert")
    decided_ids = sorted({a.case_id for a in members if a.case_id})
    case_id = decided_ids[0] if decided_ids else members[0].alert_id
    return Case(case_id, members, total if total is not None else len(members))


@dataclass(frozen=True, slots=True)
class CasePage:
    """One page of the case queue, with the cursor to the next (older) page."""

    cases: list[Case]
    older: str | None
    is_first: bool

    def signature(self) -> str:
        digest = hashlib.sha256()
        for c in self.cases:
            digest.update(f"{c.case_id}:{c.signature};".encode())
        return digest.hexdigest()[:16]


class _CaseScan:
    """Queue rows in order, grouped by case: iterating yields each case's first row as
    (case key, row, cursor of the row before it), and counts and remembers what was read."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self._docs = docs
        self.read = 0
        self.last: str | None = None  # the cursor of the last row read

    def __iter__(self) -> Iterator[tuple[str, AlertView, str | None]]:
        seen: set[str] = set()
        for doc in self._docs:
            self.read += 1
            a = AlertView.from_doc(doc)
            key = case_key(a)
            if key not in seen:
                seen.add(key)
                yield key, a, self.last
            self.last = a.cursor


class CaseStore:
    """The case queue and one case, read from the ``alerts`` collection through its indexes
    (``by_card`` for a card's open case, ``by_case`` for a decided one)."""

    def __init__(self, alerts: AlertStore) -> None:
        self._store = alerts

    def page(self, query: AlertQuery, limit: int, now: datetime) -> CasePage:
        """Up to ``limit`` cases in queue order, from ``query.before`` (a case queue cursor)
        down; the filters select alerts, and a case is listed when any of its alerts match.
        Cached like the alert list (``AlertStore.page``)."""
        store = self._store
        as_of, bucket = store.as_of(now)
        key = ("cases", query, limit, bucket)
        return store.read_cache.get_or_load(key, lambda: self._load_page(query, limit, as_of))

    def _load_page(self, query: AlertQuery, limit: int, now: datetime) -> CasePage:
        store = self._store
        budget = limit * SCAN_PER_ROW
        # Read in small batches: a page usually needs a few rows per case, and the server
        # decodes a whole batch before answering.
        docs = store.find(
            query.mongo_filter(now, store.queue_window), schema.QUEUE_FIELDS, query.sort(), budget
        ).batch_size(SCAN_BATCH)
        scan = _CaseScan(docs)
        heads = iter(scan)
        earlier = query.first_page()
        cases: list[Case] = []
        # Usually one round; another only when cases were skipped as listed earlier.
        while len(cases) < limit and (batch := list(islice(heads, limit - len(cases)))):
            for (_, head, _), case in zip(batch, self._load_many(batch), strict=True):
                # A case with a matching alert above this one was listed on an earlier page.
                if query.before is None or not any(
                    b.cursor > head.cursor and earlier.matches(b, now, store.queue_window)
                    for b in case.alerts
                ):
                    cases.append(case)
        following = next(heads, None) if len(cases) == limit else None
        if following is not None:
            older = following[2]  # the next page starts with the first case not placed
        elif scan.read == budget:
            older = scan.last  # the read budget ended the page; the next one goes on from here
        else:
            older = None
        return CasePage(cases, older=older, is_first=query.before is None)

    def _load_many(self, heads: list[tuple[str, AlertView, str | None]]) -> list[Case]:
        """Each head's case, read in parallel (one indexed read per case)."""
        if len(heads) <= 1:
            return [self._load(key, head) for key, head, _ in heads]
        with ThreadPoolExecutor(CASE_READ_THREADS, thread_name_prefix="case-read") as pool:
            return list(pool.map(lambda h: self._load(h[0], h[1]), heads))

    def _load(self, key: str, seen: AlertView) -> Case:
        """Every alert of the case ``seen`` is in (bounded by MAX_CASE_ALERTS), newest first
        from the server: one read on ``by_card`` (an open case) or ``by_case``."""
        rows: dict[str, AlertView] = {}
        total = 0
        condition, hint = _membership(key, seen)
        docs = list(
            self._store.find(condition, schema.QUEUE_FIELDS, schema.QUEUE_SORT, MAX_CASE_ALERTS + 1)
        )
        if len(docs) > MAX_CASE_ALERTS:  # a burst of hundreds: count what is not listed
            total += self._store.count(condition, hint) - MAX_CASE_ALERTS
        for doc in docs[:MAX_CASE_ALERTS]:
            a = AlertView.from_doc(doc)
            if case_key(a) == key and a.alert_id not in rows:
                rows[a.alert_id] = a
                total += 1
        if seen.alert_id not in rows:
            rows[seen.alert_id] = seen
            total += 1
        return make_case(rows.values(), total)

    def get(self, case_id: str) -> Case | None:
        """The case with this id: a decided (or re-opened) case's id, or the id of any alert,
        which opens the case that alert is in."""
        decided = self._store.find_one({"case_id": case_id})
        if decided is not None:
            a = AlertView.from_doc(decided)
            return self._load(case_key(a), a)  # re-opened: its card's open case
        alert = self._store.get(case_id)
        if alert is None:
            return None
        return self._load(case_key(alert), alert)

    def dispositions(self, case: Case) -> list[DispositionView]:
        """The case's audit trail, oldest first: one line per decision (a decision on a case
        writes one entry per alert; they are shown once, with how many alerts it covered)."""
        merged: dict[tuple[Any, ...], DispositionView] = {}
        for a in case.alerts[-50:]:
            for d in self._store.dispositions(a.alert_id):
                key = (d.at, d.user, d.from_status, d.to_status, d.comment, d.case_id)
                merged.setdefault(key, d)
        return sorted(merged.values(), key=lambda d: (d.at is None, d.at))


def _membership(key: str, a: AlertView) -> tuple[Doc, str | None]:
    """The filter that finds the alerts of the case named by ``key``, and its index."""
    kind, _, value = key.partition(":")
    if kind == "case":
        return {"case_id": value}, "by_case"
    if kind == "card":
        # One range on status instead of one read per undecided status: no other status sorts
        # between them (checked at import).
        return {"card_token": a.card_token, "status": _UNDECIDED_RANGE}, "by_card"
    return {"_id": a.alert_id}, None
