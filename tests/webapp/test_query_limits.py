"""Console reads carry a server-side time limit (maxTimeMS): a read that would run longer is
stopped by the database, and the analyst gets a clear message instead of a hang. Against the
real local server: a 1 ms limit on a view that scans a few thousand alerts must trip it."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from pymongo.errors import ExecutionTimeout

from devtools.demo_data import make_alert_doc
from fraudwatch.alert_store import ALERTS, ensure_indexes
from fraudwatch.cards import CardTokenizer
from tests.webapp.conftest import TOKEN_KEY, Clock, build_app
from webapp.data.store import AlertStore
from webapp.queries import AlertQuery

pytestmark = pytest.mark.integration


def _fill(db: Any, clock: Clock, count: int = 3000) -> None:
    rng = random.Random(3)
    tokenizer = CardTokenizer(TOKEN_KEY)
    ensure_indexes(db)
    docs = []
    for seq in range(count):
        ts = clock() - timedelta(seconds=rng.uniform(0, 6 * 86400))
        doc = make_alert_doc(
            rng, tokenizer, ts=ts.replace(microsecond=0), seq=seq, rules=["velocity_count"]
        )
        docs.append(doc)
    # One document written by something else, with an array where the queue key belongs: the
    # patched FerretDB then cannot use the key's index for any view (an array matches a range
    # on any element) and reads the whole window, as a server without the patch always does.
    docs[-1]["queue_key"] = [docs[-1]["queue_key"]]
    db[ALERTS].insert_many(docs, ordered=False)


def test_store_reads_stop_at_the_time_limit(mongo_db: Any) -> None:
    clock = Clock()
    _fill(mongo_db, clock)
    query = AlertQuery()
    generous = AlertStore(mongo_db, queue_window=timedelta(days=7), time_limit_ms=60_000)
    assert len(generous.page(query, 50, clock()).alerts) == 50
    hurried = AlertStore(mongo_db, queue_window=timedelta(days=7), time_limit_ms=1)
    with pytest.raises(ExecutionTimeout):
        hurried.page(query, 50, clock())
    with pytest.raises(ExecutionTimeout):
        hurried.status_counts(query, clock())


def test_console_answers_a_timed_out_view_with_a_message(mongo_db: Any) -> None:
    clock = Clock()
    _fill(mongo_db, clock)
    app = build_app(mongo_db.name, clock, webapp_query_time_limit_ms=1)
    svc = app.extensions["fraudwatch"]
    svc.access.create_user("tim", "viewer", "a-long-password-123")
    _, secret = svc.access.create_token("tim", "tests")
    http: FlaskClient = app.test_client()
    response = http.get("/api/alerts", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "query_timeout"
    assert "took too long" in body["message"]
