"""Security: cookies, brute force, logs, outages. The systematic suite (route x role matrix,
NoSQL operators in every parameter, XSS corpus, CSRF on every write, headers on every
answer) is ``test_security_suite.py``."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta

import pytest

from devtools.demo_data import demo_pan
from webapp.views.ops import ACCESS_LOGGER, JsonFormatter

from .conftest import build_app, csrf_from, login, make_user

pytestmark = pytest.mark.integration


def test_browser_api_calls_need_the_csrf_header_but_bearer_tokens_do_not(
    app, analyst, seed
) -> None:
    alert = seed()
    url = f"/api/alerts/{alert['_id']}/disposition"
    body = {"from": "open", "to": "investigating"}
    assert analyst.post(url, json=body).status_code == 400
    token = csrf_from(analyst.get("/").get_data(as_text=True))
    assert analyst.post(url, json=body, headers={"X-CSRFToken": token}).status_code == 200
    _, api_token = app.extensions["fraudwatch"].access.create_token("alice")
    tool = app.test_client()
    back = {"from": "investigating", "to": "dismissed"}
    auth = {"Authorization": f"Bearer {api_token}"}
    assert tool.post(url, json=back, headers=auth).status_code == 200


def test_responses_carry_a_strict_csp_and_security_headers(analyst) -> None:
    response = analyst.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html)
    assert " style=" not in html
    assert "<style" not in html


def test_session_cookie_is_httponly_samesite_and_secure_in_production(mongo_db) -> None:
    app = build_app(mongo_db.name)
    app.config["TESTING"] = False
    make_user(app)
    client = app.test_client()
    response = login(client, "alice")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "fraudwatch_session" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    production = build_app(mongo_db.name, webapp_cookie_secure=None)
    assert production.config["SESSION_COOKIE_SECURE"] is False  # TESTING counts as development
    assert build_app(mongo_db.name, webapp_cookie_secure=True).config["SESSION_COOKIE_SECURE"]


def test_account_locks_after_ten_failures_even_for_the_right_password(app, client, clock) -> None:
    make_user(app)
    for _ in range(9):
        assert login(client, "alice", "wrong password!").status_code == 401
    tenth = login(client, "alice", "wrong password!")
    assert "locked" in tenth.get_data(as_text=True)
    locked = login(client, "alice")
    assert locked.status_code == 401
    assert "locked for 30 more minutes" in locked.get_data(as_text=True)
    clock.advance(minutes=31)
    assert login(client, "alice").status_code == 302


def test_unknown_user_names_lock_the_same_way(app, client) -> None:
    for _ in range(10):
        login(client, "nobody", "guess")
    assert "locked" in login(client, "nobody", "guess").get_data(as_text=True)


def test_a_successful_login_resets_the_failure_count(app, client) -> None:
    make_user(app)
    for _ in range(9):
        login(client, "alice", "wrong password!")
    assert login(client, "alice").status_code == 302
    other = app.test_client()
    for _ in range(9):
        assert "locked" not in login(other, "alice", "wrong").get_data(as_text=True)


def test_login_attempts_are_rate_limited_per_address(mongo_db, clock) -> None:
    app = build_app(mongo_db.name, clock, webapp_login_rate_limit=3)
    make_user(app)
    client = app.test_client()
    for name in ("a1", "a2", "a3"):
        assert login(client, name, "x").status_code == 401
    limited = login(client, "alice")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    clock.advance(minutes=11)
    assert login(client, "alice").status_code == 302


def test_comments_are_escaped_in_the_history(analyst, seed) -> None:
    alert = seed()
    token = csrf_from(analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True))
    analyst.post(
        f"/alerts/{alert['_id']}/disposition",
        data={
            "seen": "open",
            "to": "investigating",
            "comment": '<img src=x onerror="x()">',
            "csrf_token": token,
        },
    )
    html = analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&#34;x()&#34;&gt;" in html


def test_metrics_hold_no_alert_data(analyst, seed) -> None:
    alert = seed(merchant=("m-secret", "Secret Merchant", "5411"))
    analyst.get(f"/alerts/{alert['_id']}")
    analyst.get(f"/?card={alert['card_last4']}")
    text = analyst.get("/metrics").get_data(as_text=True)
    assert "fraudwatch_webapp_requests_total" in text
    assert 'route="/alerts/<alert_id>"' in text
    for secret in (alert["_id"], "Secret Merchant", alert["card_token"], alert["card_masked"]):
        assert secret not in text


def test_access_log_is_json_and_never_holds_card_numbers(analyst) -> None:
    pan = demo_pan(31337)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        analyst.get(f"/?card={pan}")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    entry = lines[0]
    assert (entry["path"], entry["query_keys"], entry["status"]) == ("/", ["card"], 303)
    assert entry["user"] == "alice"
    assert entry["duration_ms"] >= 0
    assert entry["request_id"]
    assert pan not in stream.getvalue()


def test_healthz_reports_an_unreachable_database_as_503() -> None:
    app = build_app(
        "unreachable",
        mongodb_uri="mongodb://127.0.0.1:1/?connectTimeoutMS=200",
        mongodb_timeout_ms=300,
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_database_outage_shows_a_clear_error_page(mongo_db) -> None:
    app = build_app(
        mongo_db.name,
        mongodb_uri="mongodb://127.0.0.1:1/?connectTimeoutMS=200",
        mongodb_timeout_ms=300,
    )
    response = app.test_client().get("/login")
    assert response.status_code == 200  # the login page itself needs no database
    token = csrf_from(response.get_data(as_text=True))
    failed = app.test_client().post(
        "/login", data={"username": "a", "password": "b", "csrf_token": token}
    )
    assert failed.status_code in (400, 503)


def test_lockout_window_is_thirty_minutes_by_default(app) -> None:
    assert app.extensions["fraudwatch"].access.lockout == timedelta(minutes=30)
    assert app.extensions["fraudwatch"].access.lockout_threshold == 10
