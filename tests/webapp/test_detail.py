"""Alert detail and dispositions: explanations, evidence, history, the state machine,
conflicts between analysts and the insert-only audit trail."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest

from devtools.demo_data import demo_pan
from fraudwatch.alert_store import ALERTS, DISPOSITIONS, write_alerts

from .conftest import csrf_from, disposition

pytestmark = pytest.mark.integration


def test_detail_explains_every_reason_with_its_sentence_and_numbers(analyst, seed) -> None:
    alert = seed(rules=["velocity_count", "impossible_travel"])
    html = analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    for reason in alert["reasons"]:
        assert reason["detail"].replace("'", "&#39;") in html
        assert f"{reason['score']:.2f}" in html
    assert "Velocity (count)" in html
    assert "Impossible travel" in html


def test_detail_names_the_model_that_scored_the_alert_and_links_its_health(analyst, seed) -> None:
    alert = seed(rules=["merchant_risk"], model_version="gbm-20261012-a1b2c3d4")
    html = analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    assert '<a href="/model">gbm-20261012-a1b2c3d4</a>' in html
    older = seed(rules=["merchant_risk"], drop=["model_version"])
    html = analyst.get(f"/alerts/{older['_id']}").get_data(as_text=True)
    assert '<dt>Model</dt><dd class="mono">-</dd>' in html


def test_detail_lists_evidence_with_distances_and_draws_the_locations(analyst, seed) -> None:
    alert = seed(rules=["impossible_travel"])
    html = analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    for txn in alert["evidence_txns"]:
        assert txn["transaction_id"] in html
    assert "<svg" in html
    assert 'class="map-point current"' in html
    assert re.search(r"\d[\d,.]* km", html)


def test_detail_of_an_old_alert_without_evidence_txns_lists_the_evidence_ids(analyst, seed) -> None:
    alert = seed(drop=["evidence_txns"])
    response = analyst.get(f"/alerts/{alert['_id']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "by id only" in html
    assert alert["evidence"][0] in html


def test_detail_shows_the_cards_other_alerts_over_time(analyst, seed, clock) -> None:
    pan = demo_pan(555)
    earlier = seed(pan=pan, ts=clock.now - timedelta(days=2))
    current = seed(pan=pan)
    other_card = seed(pan=demo_pan(556))
    html = analyst.get(f"/alerts/{current['_id']}").get_data(as_text=True)
    assert f"/alerts/{earlier['_id']}" in html
    assert "(this alert)" in html
    assert other_card["_id"] not in html


def test_unknown_or_malformed_alert_ids_are_404(analyst) -> None:
    assert analyst.get("/alerts/" + "0" * 24).status_code == 404
    assert analyst.get("/alerts/not-an-id").status_code == 404


def test_analyst_walks_the_state_machine_and_each_step_is_audited(analyst, seed, mongo_db) -> None:
    alert = seed()
    first = disposition(analyst, alert["_id"], "open", "investigating", "calling the cardholder")
    assert first.status_code == 303
    assert disposition(analyst, alert["_id"], "investigating", "confirmed_fraud").status_code == 303
    assert disposition(analyst, alert["_id"], "confirmed_fraud", "investigating").status_code == 303
    assert mongo_db[ALERTS].find_one({"_id": alert["_id"]})["status"] == "investigating"
    trail = list(mongo_db[DISPOSITIONS].find({"alert_id": alert["_id"]}).sort("at", 1))
    assert [(d["from"], d["to"], d["user"]) for d in trail] == [
        ("open", "investigating", "alice"),
        ("investigating", "confirmed_fraud", "alice"),
        ("confirmed_fraud", "investigating", "alice"),
    ]
    assert trail[0]["comment"] == "calling the cardholder"
    html = analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    assert "calling the cardholder" in html
    assert html.count("<li>") >= 3


@pytest.mark.parametrize(
    ("seen", "to"), [("confirmed_fraud", "dismissed"), ("dismissed", "false_positive")]
)
def test_transitions_outside_the_state_machine_are_refused(analyst, seed, seen, to) -> None:
    alert = seed(status=seen)
    response = disposition(analyst, alert["_id"], seen, to)
    assert response.status_code == 400
    assert "can move to investigating" in response.get_data(as_text=True)


def test_a_stale_change_gets_a_conflict_and_leaves_the_winner_alone(
    app, analyst, seed, mongo_db
) -> None:
    alert = seed()
    bob = app.test_client()
    app.extensions["fraudwatch"].access.create_user(
        "bob", "analyst", "correct horse battery staple"
    )
    from .conftest import login

    login(bob, "bob")
    # Both analysts load the alert while it is open...
    token_alice = csrf_from(analyst.get(f"/alerts/{alert['_id']}").get_data(as_text=True))
    token_bob = csrf_from(bob.get(f"/alerts/{alert['_id']}").get_data(as_text=True))
    url = f"/alerts/{alert['_id']}/disposition"
    won = analyst.post(url, data={"seen": "open", "to": "investigating", "csrf_token": token_alice})
    lost = bob.post(url, data={"seen": "open", "to": "investigating", "csrf_token": token_bob})
    assert won.status_code == 303
    assert lost.status_code == 409
    assert "someone else" in lost.get_data(as_text=True)
    trail = list(mongo_db[DISPOSITIONS].find({"alert_id": alert["_id"]}))
    assert [d["user"] for d in trail] == ["alice"]


def test_concurrent_analysts_never_both_win(app, seed, mongo_db) -> None:
    alert = seed(status="investigating")
    store = app.extensions["fraudwatch"].alerts
    results: list[str] = []

    def act(user: str, to: str) -> None:
        try:
            store.change_status(
                alert["_id"],
                seen="investigating",
                to=to,
                user=user,
                comment="",
                now=app.extensions["fraudwatch"].now(),
            )
            results.append("won")
        except Exception as exc:
            results.append(type(exc).__name__)

    threads = [
        threading.Thread(target=act, args=(f"analyst{i}", to))
        for i, to in enumerate(
            ["confirmed_fraud", "false_positive", "dismissed", "confirmed_fraud"]
        )
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["DispositionConflict"] * 3 + ["won"]
    assert mongo_db[DISPOSITIONS].count_documents({"alert_id": alert["_id"]}) == 1


def test_dataflow_replay_of_the_same_alert_does_not_undo_a_disposition(
    analyst, seed, mongo_db
) -> None:
    alert = seed()
    disposition(analyst, alert["_id"], "open", "investigating")
    replayed = dict(alert, status="open", severity="low")
    assert write_alerts(mongo_db[ALERTS], [replayed]) == 0
    stored = mongo_db[ALERTS].find_one({"_id": alert["_id"]})
    assert stored["status"] == "investigating"
    assert stored["severity"] == alert["severity"]
    assert mongo_db[DISPOSITIONS].count_documents({"alert_id": alert["_id"]}) == 1


def test_viewers_see_no_disposition_form_and_cannot_post_one(viewer, seed, mongo_db) -> None:
    alert = seed()
    html = viewer.get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    assert 'id="disposition-form"' not in html
    assert "read-only" in html
    response = viewer.post(
        f"/alerts/{alert['_id']}/disposition",
        data={"seen": "open", "to": "investigating", "csrf_token": csrf_from(html)},
    )
    assert response.status_code == 403
    assert mongo_db[ALERTS].find_one({"_id": alert["_id"]})["status"] == "open"


def test_comments_with_a_card_number_are_refused(analyst, seed, mongo_db) -> None:
    alert = seed()
    response = disposition(analyst, alert["_id"], "open", "investigating", f"card {demo_pan(9)}")
    assert response.status_code == 400
    assert mongo_db[ALERTS].find_one({"_id": alert["_id"]})["status"] == "open"
