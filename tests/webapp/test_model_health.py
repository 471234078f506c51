"""The model-health page, the drift banner, the model API and gauges, through the Flask test
client against the real MongoDB-protocol server (documents seeded as the trainer writes them)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from webapp import create_app
from webapp.data.model_registry import MODEL_HEALTH
from webapp.views.model_health import drift_banner

from .conftest import FAST_HASH, Clock, build_app, login, make_settings, make_user
from .model_factories import make_health_doc, seed_registry

pytestmark = pytest.mark.integration

FORMULA_MESSAGE = (
    "Scoring with the formula; the first model is trained after 21 days of labelled history."
)


def model_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="model-data">(.*?)</script>', html, re.S)
    assert match, "the page has no model data block"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_without_models_the_page_says_the_formula_scores_for_every_role(app, client, role) -> None:
    make_user(app, "u1", role)
    assert login(client, "u1").status_code == 302
    response = client.get("/model")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert FORMULA_MESSAGE in html
    assert 'id="drift-banner"' not in html
    assert "No versions yet." in html
    data = model_data(html)
    assert (data["current"], data["versions"], data["days"]) == (None, [], [])
    assert 'href="/model"' in client.get("/").get_data(as_text=True)  # linked from the nav


def test_the_page_shows_the_current_model_its_versions_and_days(analyst, mongo_db) -> None:
    seed_registry(mongo_db)
    html = analyst.get("/model").get_data(as_text=True)
    assert FORMULA_MESSAGE not in html
    current = html[html.index('id="current-model"') : html.index("chart-versions")]
    for shown in (
        "gbm-20261012-a1b2c3",
        "lightgbm",
        "2026-10-12",  # scores from
        "0.612",  # validation AP
        "2026-09-21 \u2013 2026-10-04",  # training window
        "lightgbm 4.6.0",
        "python 3.11.9",
    ):
        assert shown in current, shown
    assert "rejected: AP 0.571" in html
    assert "model-status-rejected" in html
    data = model_data(html)
    assert data["current"]["version"] == "gbm-20261012-a1b2c3"
    assert [v["status"] for v in data["versions"]] == [
        "promoted",
        "promoted",
        "promoted",
        "rejected",
    ]
    assert [d["day"] for d in data["days"]][-1] == "2026-10-12"
    assert len(data["days"]) == 10
    assert data["newest_measured_day"]["day"] == "2026-10-10"
    assert data["drift"] is None
    assert 'id="drift-banner"' not in html
    assert analyst.get("/model?days=3").status_code == 400  # the page takes no parameters


def test_drift_on_the_newest_measured_day_shows_a_banner_on_every_page(
    app, analyst, mongo_db
) -> None:
    seed_registry(mongo_db, drift_on="2026-10-10")
    for path in ("/", "/dashboard", "/model"):
        html = analyst.get(path).get_data(as_text=True)
        assert 'id="drift-banner"' in html, path
        banner = html[html.index('id="drift-banner"') :]
        banner = banner[: banner.index("</div>")]
        assert "2026-10-10" in banner
        assert "0.214" in banner
        assert "0.612" in banner
        assert "gbm-20261012-a1b2c3" in banner
    # The htmx poll's partial carries no banner (it is not a page).
    assert 'id="drift-banner"' not in analyst.get("/queue/live?seen=0").get_data(as_text=True)
    # Signed out, the sign-in page shows nothing about the model.
    assert 'id="drift-banner"' not in app.test_client().get("/login").get_data(as_text=True)


def test_an_older_drifted_day_raises_no_banner_once_a_newer_day_is_measured(
    analyst, mongo_db
) -> None:
    seed_registry(mongo_db, drift_on="2026-10-08")
    assert 'id="drift-banner"' not in analyst.get("/").get_data(as_text=True)
    # The newest measured day drifts: then the banner appears.
    mongo_db[MODEL_HEALTH].update_one(
        {"_id": "2026-10-10"}, {"$set": {"drift": True, "day_ap": 0.2}}
    )
    assert 'id="drift-banner"' in analyst.get("/").get_data(as_text=True)


def test_api_lists_models_and_health_newest_first_with_bounds(tool, mongo_db) -> None:
    seed_registry(mongo_db, drift_on="2026-10-10")
    models = tool.get("/api/v1/models").get_json()
    assert models["count"] == 4
    assert models["models"][0]["version"] == "gbm-20261013-c0ffee"
    assert models["current"]["version"] == "gbm-20261012-a1b2c3"
    assert models["scoring_with"] == "model"
    assert models["models"][0]["metrics"]["current_ap"] == 0.612
    assert tool.get("/api/v1/models?limit=2").get_json()["count"] == 2
    health = tool.get("/api/v1/model-health?days=5").get_json()
    assert [d["day"] for d in health["days"]] == [
        "2026-10-12",
        "2026-10-11",
        "2026-10-10",
        "2026-10-09",
        "2026-10-08",
    ]
    assert health["drift"]["day"] == "2026-10-10"
    assert health["days"][0]["day_ap"] is None
    for bad in ("/api/v1/models?limit=0", "/api/v1/models?limit=367", "/api/v1/models?x=1",
                "/api/v1/model-health?days=abc", "/api/v1/model-health?days=1&days=2"):  # fmt: skip
        response = tool.get(bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "invalid_parameter"


def test_api_without_models_says_the_formula_scores(tool, app) -> None:
    models = tool.get("/api/v1/models").get_json()
    assert models == {
        "current": None,
        "scoring_with": "formula",
        "first_model_message": FORMULA_MESSAGE,
        "models": [],
        "count": 0,
    }
    assert tool.get("/api/v1/model-health").get_json() == {"drift": None, "days": [], "count": 0}
    anonymous = app.test_client()
    assert anonymous.get("/api/v1/models").status_code == 401
    assert anonymous.get("/api/v1/model-health").status_code == 401


def gauge(text: str, name: str) -> str:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, name
    return match.group(1)


def test_metrics_expose_drift_and_the_aps_of_the_newest_measured_day(app, mongo_db) -> None:
    client = app.test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert gauge(text, "fraudwatch_model_drift") == "0.0"
    assert gauge(text, "fraudwatch_model_day_ap") == "NaN"
    seed_registry(mongo_db, drift_on="2026-10-10")
    text = client.get("/metrics").get_data(as_text=True)
    assert gauge(text, "fraudwatch_model_drift") == "1.0"
    assert gauge(text, "fraudwatch_model_day_ap") == "0.214"
    assert gauge(text, "fraudwatch_model_validation_ap") == "0.612"
    day_start = datetime(2026, 10, 10, tzinfo=UTC).timestamp()
    assert float(gauge(text, "fraudwatch_model_health_day_timestamp_seconds")) == day_start


def test_banner_reads_are_cached_for_the_model_cache_ttl(mongo_db) -> None:
    """Pages within the TTL cost no query; a drift written meanwhile shows after it."""
    cache_now = [1_000.0]
    app: Flask = create_app(
        {
            "TESTING": True,
            "SETTINGS": make_settings(mongo_db.name, webapp_model_cache_s=60),
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "CLOCK": Clock(),
            "READ_CACHE_CLOCK": lambda: cache_now[0],
        }
    )
    make_user(app, "alice", "analyst")
    client = app.test_client()
    assert login(client, "alice").status_code == 302
    metrics = app.extensions["fraudwatch"].metrics
    assert 'id="drift-banner"' not in client.get("/").get_data(as_text=True)
    mongo_db[MODEL_HEALTH].insert_one(make_health_doc(drift=True, day_ap=0.2))
    for _ in range(5):
        assert 'id="drift-banner"' not in client.get("/").get_data(as_text=True)
    lookups = metrics.read_cache.labels("model_health", "miss")._value.get()
    assert lookups == 1
    cache_now[0] += 61
    assert 'id="drift-banner"' in client.get("/").get_data(as_text=True)


def test_an_unreachable_database_drops_the_banner_instead_of_failing_the_page(mongo_db) -> None:
    app = build_app(
        mongo_db.name,
        mongodb_uri="mongodb://127.0.0.1:1/?connectTimeoutMS=200",
        mongodb_timeout_ms=300,
    )
    with app.test_request_context("/"):
        assert drift_banner() is None
