"""The console's read cache: TTL, invalidation on write, single-flight, bound, off at 0.

Store-level tests run against the real local MongoDB-protocol server and count the commands
the server actually received (a pymongo ``CommandListener``), so "one query" means one query.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from pymongo import monitoring

from fraudwatch import clients
from fraudwatch.alert_store import ALERTS, ensure_indexes
from fraudwatch.vocabulary import STATUSES
from tests.webapp.conftest import Clock, build_app, login, make_user
from webapp.data.read_cache import ReadCache, reads_not_before
from webapp.data.store import AlertStore
from webapp.queries import AlertQuery

WINDOW = timedelta(hours=168)


class FakeClock:
    """Seconds for the cache's TTL, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CommandCounter(monitoring.CommandListener):
    """Counts the read commands the server received, by command name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "count"):
            with self._lock:
                self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(mongo_db: Any) -> Any:
    """``(store factory, command counter)`` on the test's database through a counting client."""
    counter = CommandCounter()
    host, port = mongo_db.client.address
    client: Any = clients.mongo_client(
        clients.mongo_at(f"mongodb://{host}:{port}"), event_listeners=[counter], tz_aware=True
    )
    ensure_indexes(mongo_db)
    cache_clock = FakeClock()

    def make(ttl_s: float = 5.0, max_entries: int = 256) -> AlertStore:
        cache = ReadCache(ttl_s, max_entries, clock=cache_clock)
        return AlertStore(client[mongo_db.name], queue_window=WINDOW, read_cache=cache)

    yield make, counter, cache_clock
    client.close()


def test_a_cached_page_is_served_until_its_ttl_then_read_again(counted, seed, clock) -> None:
    make, counter, cache_clock = counted
    store = make(ttl_s=5)
    first = seed()
    assert [a.alert_id for a in store.page(AlertQuery(), 50, clock.now).alerts] == [first["_id"]]
    second = seed(ts=clock.now - timedelta(seconds=1))  # written by someone else (the dataflow)
    cache_clock.now += 4.5
    assert [a.alert_id for a in store.page(AlertQuery(), 50, clock.now).alerts] == [first["_id"]]
    assert counter.counts["find"] == 1
    cache_clock.now += 0.5
    ids = [a.alert_id for a in store.page(AlertQuery(), 50, clock.now).alerts]
    assert ids == [second["_id"], first["_id"]]
    assert counter.counts["find"] == 2


def test_a_write_clears_the_cache_so_the_writer_sees_it_at_once(counted, seed, clock) -> None:
    make, _, _ = counted
    store = make(ttl_s=30)
    alert = seed()
    assert store.page(AlertQuery(), 50, clock.now).alerts[0].status == "open"
    assert store.status_counts(AlertQuery(), clock.now)["open"] == 1
    store.change_status(
        alert["_id"], seen="open", to="investigating", user="alice", comment="", now=clock.now
    )
    assert store.page(AlertQuery(), 50, clock.now).alerts[0].status == "investigating"
    assert store.status_counts(AlertQuery(), clock.now)["investigating"] == 1
    assert store.card_history(alert["card_token"])[0].status == "investigating"


def test_identical_concurrent_reads_share_one_query(counted, seed, clock) -> None:
    make, counter, _ = counted
    store = make(ttl_s=30)
    for _ in range(5):
        seed()
    start = threading.Barrier(8)
    pages: list[list[str]] = []

    def read() -> None:
        start.wait()
        pages.append([a.alert_id for a in store.page(AlertQuery(), 50, clock.now).alerts])

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(pages) == 8
    assert all(p == pages[0] for p in pages)
    assert len(pages[0]) == 5
    assert counter.counts["find"] == 1


def test_status_counts_are_one_count_command_per_status_and_match_count_documents(
    counted, seed, clock, mongo_db
) -> None:
    make, counter, _ = counted
    store = make(ttl_s=0)
    statuses = ["open"] * 3 + ["investigating"] * 2 + ["confirmed_fraud", "dismissed"]
    for n, status in enumerate(statuses):
        seed(status=status, severity="high" if n % 2 else "low")
    seed(status="open", ts=clock.now - timedelta(days=30))  # outside the default window
    for query in (AlertQuery(), AlertQuery(severity="high"), AlertQuery(status="open")):
        counts = store.status_counts(query, clock.now)
        base = query.mongo_filter(clock.now, WINDOW, with_status=False)
        expected = {s: mongo_db[ALERTS].count_documents({**base, "status": s}) for s in STATUSES}
        assert counts == expected
    assert counter.counts == {"count": 3 * len(STATUSES)}
    assert store.status_counts(AlertQuery(), clock.now) == {
        "open": 3,
        "investigating": 2,
        "confirmed_fraud": 1,
        "false_positive": 0,
        "dismissed": 1,
    }


def test_the_cache_holds_at_most_its_bound_least_recently_used_out(counted, seed, clock) -> None:
    make, counter, _ = counted
    store = make(ttl_s=30, max_entries=2)
    seed()
    queries = [AlertQuery(status=s) for s in ("open", "investigating", "dismissed")]
    for q in queries:
        store.page(q, 50, clock.now)
    assert len(store.read_cache) == 2
    store.page(queries[2], 50, clock.now)  # still cached
    assert counter.counts["find"] == 3
    store.page(queries[0], 50, clock.now)  # evicted first: read again
    assert counter.counts["find"] == 4


def test_a_ttl_of_zero_reads_the_database_every_time(counted, seed, clock) -> None:
    make, counter, _ = counted
    store = make(ttl_s=0)
    seed()
    for _ in range(3):
        store.page(AlertQuery(), 50, clock.now)
        store.card_history("x" * 32)
    assert counter.counts["find"] == 6
    assert len(store.read_cache) == 0


def test_lookups_by_id_are_never_cached(counted, seed) -> None:
    make, counter, _ = counted
    store = make(ttl_s=30)
    alert = seed()
    for _ in range(3):
        assert store.get(alert["_id"]) is not None
    assert counter.counts["find"] == 3


# --- the cache alone: races that a real query is too fast to show reliably -----------------


def test_a_query_in_flight_during_a_write_is_neither_stored_nor_joined() -> None:
    cache = ReadCache(30, clock=FakeClock())
    release = threading.Event()
    entered = threading.Event()
    answers: list[str] = []

    def slow() -> str:
        entered.set()
        release.wait(10)
        return "before the write"

    leader = threading.Thread(target=lambda: answers.append(cache.get_or_load(("v",), slow)))
    leader.start()
    assert entered.wait(10)
    cache.invalidate()
    # Arrives after the write: must not wait for (or get) the answer read before it.
    assert cache.get_or_load(("v",), lambda: "after the write") == "after the write"
    release.set()
    leader.join(10)
    assert answers == ["before the write"]
    assert cache.get_or_load(("v",), lambda: "third") == "after the write"


def test_a_failed_query_reaches_every_waiter_and_is_not_cached() -> None:
    joined = threading.Event()

    def observe(view: str, result: str) -> None:
        if result == "shared":
            joined.set()

    cache = ReadCache(30, clock=FakeClock(), observer=observe)
    release = threading.Event()
    entered = threading.Event()
    results: list[str] = []

    def failing() -> str:
        entered.set()
        release.wait(10)
        raise TimeoutError("database too slow")

    def call() -> None:
        try:
            cache.get_or_load(("v",), failing)
        except TimeoutError as exc:
            results.append(str(exc))

    leader = threading.Thread(target=call)
    leader.start()
    assert entered.wait(10)
    waiter = threading.Thread(target=call)
    waiter.start()
    assert joined.wait(10)
    release.set()
    leader.join(10)
    waiter.join(10)
    assert results == ["database too slow", "database too slow"]
    assert cache.get_or_load(("v",), lambda: "ok") == "ok"


def test_different_queries_take_turns_at_the_database() -> None:
    cache = ReadCache(30, clock=FakeClock(), max_loads=1)
    running = 0
    most = 0
    lock = threading.Lock()

    def load(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.02)
        with lock:
            running -= 1
        return n

    threads = [
        threading.Thread(target=cache.get_or_load, args=(("v", n), lambda n=n: load(n)))
        for n in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 1
    assert len(cache) == 6


def test_the_ttl_counts_from_when_a_slow_answer_arrived() -> None:
    clock = FakeClock()
    cache = ReadCache(5, clock=clock)

    def slow_scan() -> str:
        clock.now += 30  # slower than the TTL, as full scans on FerretDB v1 can be
        return "answer"

    assert cache.get_or_load(("v",), slow_scan) == "answer"
    clock.now += 4.5
    assert cache.get_or_load(("v",), lambda: "again") == "answer"
    clock.now += 0.5
    assert cache.get_or_load(("v",), lambda: "again") == "again"


def test_reads_pinned_after_a_write_skip_older_answers() -> None:
    clock = FakeClock()
    cache = ReadCache(30, clock=clock)
    assert cache.get_or_load(("v",), lambda: "old") == "old"
    clock.now += 1
    with reads_not_before(clock.now):
        assert cache.get_or_load(("v",), lambda: "new") == "new"
    assert cache.get_or_load(("v",), lambda: "newer") == "new"


# --- through the console ------------------------------------------------------------------


def cached_app(db_name: str, clock: Clock, cache_clock: FakeClock) -> Flask:
    app = build_app(db_name, clock, webapp_read_cache_s=5)
    app.extensions["fraudwatch"].alerts.read_cache.clock = cache_clock
    return app


def test_an_analyst_sees_their_own_change_on_another_worker_at_once(mongo_db, seed, clock) -> None:
    ensure_indexes(mongo_db)
    cache_clock = FakeClock()
    worker_a = cached_app(mongo_db.name, clock, cache_clock)
    worker_b = cached_app(mongo_db.name, clock, cache_clock)
    make_user(worker_a, "alice", "analyst")
    alert = seed()
    browser_a, browser_b = worker_a.test_client(), worker_b.test_client()
    assert login(browser_a, "alice").status_code == 302
    viewer_b = worker_b.test_client()
    make_user(worker_b, "victor", "viewer")
    assert login(viewer_b, "victor").status_code == 302
    assert "status status-open" in viewer_b.get("/").get_data(as_text=True)  # cached on B
    cache_clock.now += 0.5

    detail = browser_a.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    token = detail.split('name="csrf_token" value="')[1].split('"')[0]
    response = browser_a.post(
        f"/alerts/{alert['_id']}/disposition",
        data={"seen": "open", "to": "investigating", "csrf_token": token},
    )
    assert response.status_code == 303
    cache_clock.now += 0.5
    # The same browser's next request lands on worker B, whose cache still holds the old page.
    session_cookie = browser_a.get_cookie("fraudwatch_session")
    assert session_cookie is not None
    browser_b.set_cookie("fraudwatch_session", session_cookie.value)
    mine = browser_b.get("/").get_data(as_text=True)
    assert "status status-investigating" in mine
    assert "status status-open" not in mine
    # Someone else on worker B sees it within the TTL.
    cache_clock.now += 5
    theirs = viewer_b.get("/").get_data(as_text=True)
    assert "status status-investigating" in theirs


def test_metrics_count_cache_hits_and_misses(mongo_db, seed, clock) -> None:
    ensure_indexes(mongo_db)
    app = cached_app(mongo_db.name, clock, FakeClock())
    make_user(app, "victor", "viewer")
    seed()
    client = app.test_client()
    assert login(client, "victor").status_code == 302
    client.get("/alerts")
    client.get("/alerts")
    client.get("/")
    client.get("/")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fraudwatch_webapp_read_cache_lookups_total{result="hit",view="cases"} 1.0' in text
    assert 'fraudwatch_webapp_read_cache_lookups_total{result="miss",view="page"} 1.0' in text
    assert 'fraudwatch_webapp_read_cache_lookups_total{result="hit",view="page"} 1.0' in text
    # both lists show the counts per status: one miss, then three hits
    assert 'fraudwatch_webapp_read_cache_lookups_total{result="hit",view="counts"} 3.0' in text
