"""Fixtures for the web app: an app per test on its own database, users, seeded alerts.

Alerts are built with the shared contract and written with ``fraudwatch.alert_store``'s
``write_alerts``: the same code path the dataflow's MongoDB sink uses.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devtools.demo_data import MERCHANTS, demo_pan, make_alert_doc
from fraudwatch.alert_store import ALERTS, ensure_indexes, queue_key, write_alerts
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import epoch_ms
from webapp import create_app
from webapp.settings import WebappSettings

PASSWORD = "correct horse battery staple"
FAST_HASH = "pbkdf2:sha256:1000"  # tests only: scrypt would cost ~0.1 s per login
TOKEN_KEY = "test-token-key-for-the-webapp-suite-0123456789"


class Clock:
    """A settable clock for lockout and time-window tests."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(db_name: str, **overrides: Any) -> WebappSettings:
    values: dict[str, Any] = {
        "mongodb_database": db_name,
        "fraud_token_key": TOKEN_KEY,
        "webapp_secret_key": "x" * 40,
        "webapp_poll_seconds": 1,
        # Exact reads: these tests seed alerts behind the app's back and expect to see them on
        # the next request. The read cache has its own tests (test_read_cache.py).
        "webapp_read_cache_s": 0,
        "webapp_model_cache_s": 0,
        # No labels to the shared LABELS_TOPIC from tests about other things: the label tests
        # (test_labels.py) turn publishing on with a topic of their own.
        "webapp_publish_labels": False,
    }
    values.update(overrides)
    return WebappSettings(**values)


def build_app(db_name: str, clock: Clock | None = None, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "TESTING": True,
        "SETTINGS": make_settings(db_name, **overrides),
        "PASSWORD_HASH_METHOD": FAST_HASH,
    }
    if clock is not None:
        config["CLOCK"] = clock
    return create_app(config)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(mongo_db: Any, clock: Clock) -> Flask:
    ensure_indexes(mongo_db)
    return build_app(mongo_db.name, clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def tokenizer() -> CardTokenizer:
    return CardTokenizer(TOKEN_KEY)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def make_user(app: Flask, name: str = "alice", role: str = "analyst") -> str:
    app.extensions["fraudwatch"].access.create_user(name, role, PASSWORD)
    return name


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token})


@pytest.fixture
def analyst(app: Flask, client: FlaskClient) -> FlaskClient:
    """The test client, signed in as an analyst."""
    make_user(app, "alice", "analyst")
    assert login(client, "alice").status_code == 302
    return client


@pytest.fixture
def tool(app: Flask) -> FlaskClient:
    """A client calling the API with an analyst's bearer token (user ``tool``)."""
    make_user(app, "tool", "analyst")
    _, token = app.extensions["fraudwatch"].access.create_token("tool", "tests")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def disposition(client: FlaskClient, alert_id: str, seen: str, to: str, comment: str = "") -> Any:
    """Submit the detail page's disposition form, as the browser does (with its CSRF token)."""
    token = csrf_from(client.get(f"/alerts/{alert_id}").get_data(as_text=True))
    return client.post(
        f"/alerts/{alert_id}/disposition",
        data={"seen": seen, "to": to, "comment": comment, "csrf_token": token},
    )


@pytest.fixture
def viewer(app: Flask, client: FlaskClient) -> FlaskClient:
    make_user(app, "victor", "viewer")
    assert login(client, "victor").status_code == 302
    return client


AlertFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def seed(mongo_db: Any, tokenizer: CardTokenizer, clock: Clock) -> AlertFactory:
    """``seed(**fields)`` writes one alert through ``write_alerts`` and returns its document.

    Keyword overrides: ``ts`` (datetime), ``pan``, ``rules``, ``merchant`` (id, name, mcc),
    ``amount``, ``severity``, ``status``, ``score`` (the queue key follows it), ``drop``
    (fields to remove, e.g. evidence_txns).
    """
    rng = random.Random(42)
    counter = iter(range(1_000_000))

    def seed_one(**fields: Any) -> dict[str, Any]:
        seq = next(counter)
        ts = fields.pop("ts", None) or clock.now - timedelta(minutes=seq + 1)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        doc = make_alert_doc(
            rng,
            tokenizer,
            ts=ts,
            seq=seq,
            pan=fields.pop("pan", None) or demo_pan(seq % 97),
            rules=fields.pop("rules", None),
            merchant=fields.pop("merchant", None) or MERCHANTS[seq % len(MERCHANTS)],
            amount=fields.pop("amount", None),
        )
        dropped = fields.pop("drop", ())
        doc.update(fields)
        if "score" in fields and "queue_key" not in fields:  # the key follows the score
            doc["queue_key"] = queue_key(epoch_ms(doc["timestamp"]), doc["score"], doc["_id"])
        for name in dropped:
            doc.pop(name, None)
        assert write_alerts(mongo_db[ALERTS], [doc]) == 1
        return doc

    return seed_one
