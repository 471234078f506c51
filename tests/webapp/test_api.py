"""The JSON API with per-user bearer tokens, and the management commands."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devtools.demo_data import demo_pan
from fraudwatch.alert_store import ALERT_STATS, write_stats

from .conftest import PASSWORD, build_app, make_user

pytestmark = pytest.mark.integration


def test_api_lists_alerts_with_filters_and_a_cursor(tool, seed, clock) -> None:
    pan = demo_pan(99)
    midnight = clock.now.replace(hour=0, minute=0, second=0, microsecond=0)
    mine = [seed(pan=pan, ts=midnight, score=1 - i / 10) for i in range(1, 6)]
    seed(pan=demo_pan(98))
    first = tool.get(f"/api/alerts?card={pan[-4:]}&limit=3").get_json()
    assert [a["id"] for a in first["alerts"]] == [d["_id"] for d in mine[:3]]
    second = tool.get(f"/api/alerts?card={pan[-4:]}&limit=3&cursor={first['next_cursor']}")
    body = second.get_json()
    assert [a["id"] for a in body["alerts"]] == [d["_id"] for d in mine[3:]]
    assert body["next_cursor"] is None
    assert all("card_number" not in a and a["card_masked"].count("*") == 6 for a in body["alerts"])


def test_api_alert_detail_has_reasons_evidence_history_and_dispositions(tool, seed) -> None:
    pan = demo_pan(12)
    older = seed(pan=pan)
    alert = seed(pan=pan)
    body = tool.get(f"/api/alerts/{alert['_id']}").get_json()
    assert body["alert"]["reasons"][0]["detail"] == alert["reasons"][0]["detail"]
    assert len(body["alert"]["evidence_txns"]) == len(alert["evidence_txns"])
    assert [a["id"] for a in body["card_alerts"]] == [older["_id"]]
    assert body["dispositions"] == []
    assert tool.get("/api/alerts/" + "f" * 24).status_code == 404


def test_api_disposition_changes_status_and_reports_conflicts(tool, seed) -> None:
    alert = seed()
    url = f"/api/alerts/{alert['_id']}/disposition"
    ok = tool.post(url, json={"from": "open", "to": "investigating", "comment": "checking"})
    assert ok.status_code == 200
    assert ok.get_json()["alert"]["status"] == "investigating"
    assert ok.get_json()["disposition"]["user"] == "tool"
    stale = tool.post(url, json={"from": "open", "to": "investigating"})
    assert stale.status_code == 409
    assert stale.get_json()["current_status"] == "investigating"
    assert tool.get(f"/api/alerts/{alert['_id']}").get_json()["dispositions"][0]["comment"] == (
        "checking"
    )


def test_api_stats_sums_the_last_hour_and_judges_rule_precision(
    tool, seed, mongo_db, clock
) -> None:
    minute = clock.now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    write_stats(
        mongo_db[ALERT_STATS],
        [
            {
                "_id": minute.strftime("%Y-%m-%dT%H:%MZ"),
                "minute": minute,
                "transactions": 1200,
                "alerts": 3,
                "by_rule": {"card_testing": 3},
                "by_severity": {"high": 2, "low": 1},
                "late": 4,
            }
        ],
    )
    seed(rules=["card_testing"], status="confirmed_fraud")
    seed(rules=["card_testing"], status="confirmed_fraud")
    seed(rules=["card_testing", "high_amount"], status="false_positive")
    body = tool.get("/api/stats?minutes=30").get_json()
    assert len(body["minutes"]) == 30
    assert body["totals"] == {
        "transactions": 1200,
        "alerts": 3,
        "late": 4,
        "alerts_per_1000_transactions": 2.5,
    }
    assert body["by_severity"] == {"low": 1, "medium": 0, "high": 2, "critical": 0}
    outcomes = {o["rule"]: o for o in body["outcomes"]}
    assert outcomes["card_testing"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert outcomes["high_amount"]["precision"] == 0.0


def test_revoked_or_malformed_tokens_are_refused(app, seed) -> None:
    make_user(app, "bot", "viewer")
    token_id, token = app.extensions["fraudwatch"].access.create_token("bot")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/alerts", headers=auth).status_code == 200
    assert app.extensions["fraudwatch"].access.revoke_token(token_id)
    assert client.get("/api/alerts", headers=auth).status_code == 401
    tampered = token[:-1] + ("B" if token.endswith("A") else "A")
    for bad in ("Bearer fwt_x", "Basic dXNlcjpwdw==", f"Bearer {tampered}"):
        assert client.get("/api/alerts", headers={"Authorization": bad}).status_code == 401


def test_tokens_are_stored_only_as_hashes(app, mongo_db) -> None:
    make_user(app, "bot", "viewer")
    token_id, token = app.extensions["fraudwatch"].access.create_token("bot")
    stored = mongo_db["api_tokens"].find_one({"_id": token_id})
    secret = token.split("_", 2)[2]  # fwt_<id>_<secret>; the secret may itself hold "_"
    assert secret not in str(stored)
    assert len(stored["token_hash"]) == 64


def test_cli_creates_users_and_tokens_and_revokes_them(app, mongo_db) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["create-user", "carol", "--role", "viewer", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    stored = mongo_db["users"].find_one({"_id": "carol"})
    assert stored["role"] == "viewer"
    assert PASSWORD not in str(stored)
    again = runner.invoke(
        args=["create-user", "carol", "--role", "viewer", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    short = runner.invoke(
        args=["create-user", "dave", "--role", "analyst", "--password-stdin"], input="short\n"
    )
    assert short.exit_code != 0
    assert "at least 12" in short.output
    token_out = runner.invoke(args=["create-token", "carol"])
    token_id = token_out.output.split("token id: ")[1].split()[0]
    token = token_out.output.split("token:    ")[1].split()[0]
    client = app.test_client()
    assert (
        client.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    assert runner.invoke(args=["revoke-token", token_id]).exit_code == 0
    assert (
        client.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    assert runner.invoke(args=["revoke-token", token_id]).exit_code != 0


def test_config_users_sign_in_with_their_configured_hash(mongo_db) -> None:
    from werkzeug.security import generate_password_hash

    users = [{"name": "ops", "role": "viewer", "password_hash": generate_password_hash(PASSWORD)}]
    app = build_app(mongo_db.name, webapp_users=users)
    from .conftest import login

    client = app.test_client()
    assert login(client, "ops").status_code == 302
    assert client.get("/").status_code == 200


def test_dev_user_mode_creates_dev_with_a_fresh_password_and_prints_it(mongo_db, capsys) -> None:
    from webapp import create_app
    from webapp.settings import WebappSettings

    settings = WebappSettings(mongodb_database=mongo_db.name, webapp_create_dev_user=True)
    create_app({"SETTINGS": settings, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    first = capsys.readouterr().out
    create_app({"SETTINGS": settings, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    second = capsys.readouterr().out
    p1 = first.split("dev user: dev / ")[1].split()[0]
    p2 = second.split("dev user: dev / ")[1].split()[0]
    assert p1 != p2
    assert len(p1) >= 12
    app = create_app(
        {"SETTINGS": settings.model_copy(update={"webapp_create_dev_user": False}), "TESTING": True}
    )
    from .conftest import login

    client = app.test_client()
    assert login(client, "dev", p1).status_code == 401
    assert login(client, "dev", p2).status_code == 302
