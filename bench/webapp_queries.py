"""Time the console's views on 50,000 (or 500,000) alerts: p50/p95 over 30 runs each.

    .venv/bin/python bench/webapp_queries.py [--alerts 50000] [--runs 30] [--keep]
        [--database NAME]   # time a database kept by an earlier run, without seeding

Alerts are built with the shared contract and ``alert_store.alert_document`` (via
``devtools.demo_data``) into a scratch database. The bulk of them is loaded with
``insert_many`` and the last 100 with ``write_alerts`` (the dataflow's upsert path): on
FerretDB v1 every *new* upsert scans the collection (~0.2 s at 10k documents), so 50,000
upserts would take hours; the documents are identical either way. Views are timed through
the Flask test client (the whole request: parsing, queries, template) and the store alone.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from pymongo.database import Database

from devtools.demo_data import MERCHANTS, demo_pan, make_alert_doc
from fraudwatch.alert_store import ALERTS, ensure_indexes, write_alerts
from fraudwatch.cards import CardTokenizer
from fraudwatch.clients import mongo_client
from webapp import create_app
from webapp.queries import AlertQuery, Cursor
from webapp.settings import WebappSettings

Doc = dict[str, Any]
HOT_PAN = demo_pan(77)  # one card with many alerts (every 1,000th)


def seed(db: Database[Doc], count: int, tokenizer: CardTokenizer, now: datetime) -> str:
    rng = random.Random(5)
    ensure_indexes(db)
    batch: list[Doc] = []
    upserted: list[Doc] = []
    hot_pan = HOT_PAN
    for seq in range(count):
        ts = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        pan = hot_pan if seq % 1000 == 0 else demo_pan(rng.randrange(20_000))
        doc = make_alert_doc(rng, tokenizer, ts=ts, seq=seq, pan=pan)
        if rng.random() < 0.3:
            doc["status"] = rng.choice(("investigating", "confirmed_fraud", "false_positive"))
        (upserted if seq >= count - 100 else batch).append(doc)
        if len(batch) == 1000:
            db[ALERTS].insert_many(batch, ordered=False)
            batch = []
    if batch:
        db[ALERTS].insert_many(batch, ordered=False)
    write_alerts(db[ALERTS], upserted)
    return tokenizer.token(hot_pan)


def fetch(http: FlaskClient, url: str) -> None:
    response = http.get(url)
    assert response.status_code == 200, (url, response.status_code)


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--no-http", action="store_true", help="time the store only")
    parser.add_argument(
        "--database", help="time an existing database (seeded by an earlier --keep) as it is"
    )
    args = parser.parse_args()

    # The read cache off (every sample reads the database) and a generous time limit, so that
    # a slow server shows up as latency rather than as a cache hit or a timeout.
    settings = WebappSettings(
        mongodb_database=args.database or f"bench_webapp_{uuid.uuid4().hex[:8]}",
        webapp_secret_key="b" * 40,
        webapp_read_cache_s=0,
        webapp_query_time_limit_ms=60_000,
        # One JSON access-log line per timed request would bury the table.
        webapp_log_level="WARNING",
    )
    # No socket timeout: a slow query must show as latency, not as an error (see above).
    client = mongo_client(settings, socketTimeoutMS=None)
    db = client[settings.mongodb_database]
    tokenizer = CardTokenizer(
        settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    )
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    if args.database:
        token = tokenizer.token(HOT_PAN)
        print(f"timing {db[ALERTS].estimated_document_count():,} alerts in {db.name}")
    else:
        token = seed(db, args.alerts, tokenizer, now)
        print(f"seeded {args.alerts:,} alerts in {time.perf_counter() - t0:.0f} s into {db.name}")
    try:
        app = create_app({"TESTING": True, "SETTINGS": settings})
        svc = app.extensions["fraudwatch"]
        svc.access.create_user("bench", "viewer", "bench-password-123", replace=True)
        http = app.test_client()
        login = http.get("/login").get_data(as_text=True)
        csrf = login.split('name="csrf_token" value="')[1].split('"')[0]
        http.post(
            "/login",
            data={"username": "bench", "password": "bench-password-123", "csrf_token": csrf},
        )
        store = svc.alerts
        size = svc.settings.webapp_page_size
        deep = AlertQuery()
        for _ in range(20):  # the 21st page, reached by cursor as an analyst would
            older = store.page(deep, size, datetime.now(UTC)).older
            assert older is not None
            deep = AlertQuery(before=Cursor.decode("before", older))
        cases = svc.cases
        case_size = svc.settings.webapp_case_page_size
        older_cases = cases.page(AlertQuery(), case_size, datetime.now(UTC)).older
        assert older_cases is not None
        second_cases = AlertQuery(before=Cursor.decode("before", older_cases))
        day_before = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
        six_hours = (day_before - timedelta(days=1), day_before - timedelta(hours=18))
        views = {
            "queue, 21st page": (
                lambda: store.page(deep, size, datetime.now(UTC)),
                f"/api/alerts?limit=50&cursor={deep.before.encode() if deep.before else ''}",
            ),
            "queue, first page": (
                lambda: store.page(AlertQuery(), size, datetime.now(UTC)),
                "/api/alerts?limit=50",
            ),
            "a card's alerts": (
                lambda: store.card_history(token, limit=50),
                f"/api/alerts?card={token}&limit=50",
            ),
            "status + severity": (
                lambda: store.page(
                    AlertQuery(status="open", severity="high"), size, datetime.now(UTC)
                ),
                "/api/alerts?status=open&severity=high&limit=50",
            ),
            "status counts (5 counts)": (
                lambda: store.status_counts(AlertQuery(), datetime.now(UTC)),
                None,
            ),
            "rule filter, first page": (
                lambda: store.page(AlertQuery(rule="card_testing"), size, datetime.now(UTC)),
                "/api/alerts?rule=card_testing&limit=50",
            ),
            "counts, merchant filter": (
                lambda: store.status_counts(
                    AlertQuery(merchant=MERCHANTS[0][0]), datetime.now(UTC)
                ),
                None,
            ),
            "counts, rule filter": (
                lambda: store.status_counts(AlertQuery(rule="card_testing"), datetime.now(UTC)),
                None,
            ),
            "counts, 6 h inside a day": (
                lambda: store.status_counts(
                    AlertQuery(start=six_hours[0], end=six_hours[1]), datetime.now(UTC)
                ),
                None,
            ),
            "outcomes per rule (42 counts)": (
                lambda: store.outcomes(datetime.now(UTC) - timedelta(days=30)),
                "/api/stats",
            ),
            "case queue, first page": (
                lambda: cases.page(AlertQuery(), case_size, datetime.now(UTC)),
                f"/api/cases?limit={case_size}",
            ),
            "case queue, 2nd page": (
                lambda: cases.page(second_cases, case_size, datetime.now(UTC)),
                None,
            ),
            "case queue, rule filter": (
                lambda: cases.page(AlertQuery(rule="card_testing"), case_size, datetime.now(UTC)),
                f"/api/cases?rule=card_testing&limit={case_size}",
            ),
        }
        print(
            f"\n{'view':<30} {'store p50':>10} {'store p95':>10} {'HTTP p50':>10} {'HTTP p95':>10}"
        )
        for name, (query, url) in views.items():
            s50, s95 = timed(query, args.runs)
            if url and not args.no_http:
                h50, h95 = timed(functools.partial(fetch, http, url), args.runs)
                print(f"{name:<30} {s50:>8.0f}ms {s95:>8.0f}ms {h50:>8.0f}ms {h95:>8.0f}ms")
            else:
                print(f"{name:<30} {s50:>8.0f}ms {s95:>8.0f}ms {'-':>10} {'-':>10}")
        info = db[ALERTS].index_information()
        print("\nindexes on alerts:", ", ".join(sorted(info)))
        server = client.admin.command("buildInfo")
        print("server:", server.get("version"), server.get("ferretdbVersion", "(MongoDB)"))
    finally:
        if not (args.keep or args.database):
            client.drop_database(db.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
