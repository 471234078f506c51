"""Cases: a card's undecided alerts worked as one, on the real MongoDB-protocol server."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from devtools.demo_data import demo_pan
from tests.webapp.conftest import csrf_from
from webapp.data import cases

pytestmark = pytest.mark.integration

CASE_ROW = re.compile(r'data-case-id="([0-9a-f]{24})"')


def case_rows(html: str) -> list[str]:
    return CASE_ROW.findall(html)


def decide(client: Any, case_id: str, to: str, comment: str = "") -> Any:
    """Submit the case page's decision form as the browser does."""
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    seen = re.search(r'name="seen" value="(\w+)"', html)
    sig = re.search(r'name="sig" value="([0-9a-f]{16})"', html)
    assert seen
    assert sig
    return client.post(
        f"/cases/{case_id}/disposition",
        data={
            "seen": seen.group(1),
            "sig": sig.group(1),
            "to": to,
            "comment": comment,
            "csrf_token": csrf_from(html),
        },
    )


def test_a_cards_alerts_form_one_case_in_the_queue(analyst, seed, clock) -> None:
    burst = [
        seed(pan=demo_pan(7), ts=clock.now - timedelta(minutes=10 - i), score=0.5 + i / 100)
        for i in range(8)
    ]
    other = seed(pan=demo_pan(8), ts=clock.now - timedelta(minutes=3), score=0.95)
    html = analyst.get("/").get_data(as_text=True)
    first = min(burst, key=lambda d: (d["timestamp"], d["_id"]))
    # The best-scored case first; the burst is one row whose id is its first alert's.
    assert case_rows(html) == [other["_id"], first["_id"]]
    assert "8</td>" in html  # the burst's alert count


def test_the_case_page_tells_the_story_as_one_timeline(analyst, seed, clock) -> None:
    alerts = [
        seed(pan=demo_pan(5), ts=clock.now - timedelta(minutes=5 - i), score=0.6) for i in range(3)
    ]
    first = min(alerts, key=lambda d: (d["timestamp"], d["_id"]))
    html = analyst.get(f"/cases/{first['_id']}").get_data(as_text=True)
    assert 'id="case-timeline"' in html
    for a in alerts:
        assert f"/alerts/{a['_id']}" in html
    # Any alert's id finds its case (redirected to the case's own id).
    other = analyst.get(f"/cases/{alerts[-1]['_id']}")
    assert other.status_code == 303
    assert other.headers["Location"].endswith(f"/cases/{first['_id']}")


def test_confirming_an_open_case_closes_every_alert_in_it_in_one_step(
    app, analyst, seed, clock, mongo_db
) -> None:
    alerts = [
        seed(pan=demo_pan(9), ts=clock.now - timedelta(minutes=8 - i), score=0.7) for i in range(4)
    ]
    case_id = min(alerts, key=lambda d: (d["timestamp"], d["_id"]))["_id"]
    reply = decide(analyst, case_id, "confirmed_fraud", "cardholder confirmed")
    assert reply.status_code == 303
    stored = {d["_id"]: d for d in mongo_db["alerts"].find({"card_token": alerts[0]["card_token"]})}
    assert {d["status"] for d in stored.values()} == {"confirmed_fraud"}
    assert {d["case_id"] for d in stored.values()} == {case_id}
    # One audit entry per alert, shown once on the case page.
    assert mongo_db["dispositions"].count_documents({"case_id": case_id}) == 4
    page = analyst.get(f"/cases/{case_id}").get_data(as_text=True)
    assert page.count("cardholder confirmed") == 1
    # A later alert on the card starts a new case; the decided one stays whole.
    later = seed(pan=demo_pan(9), ts=clock.now, score=0.8)
    html = analyst.get("/").get_data(as_text=True)
    assert case_rows(html)[:2] == [later["_id"], case_id]


def test_a_decided_case_reopens_whole_and_is_decided_again_under_its_id(
    analyst, seed, clock, mongo_db
) -> None:
    alerts = [
        seed(pan=demo_pan(13), ts=clock.now - timedelta(minutes=6 - i), score=0.6) for i in range(3)
    ]
    case_id = min(alerts, key=lambda d: (d["timestamp"], d["_id"]))["_id"]
    assert decide(analyst, case_id, "false_positive").status_code == 303
    assert decide(analyst, case_id, "investigating").status_code == 303
    page = analyst.get(f"/cases/{case_id}").get_data(as_text=True)
    assert page.count('class="alerted') == 3
    assert "Investigating" in page
    assert decide(analyst, case_id, "confirmed_fraud").status_code == 303
    stored = list(mongo_db["alerts"].find({"card_token": alerts[0]["card_token"]}))
    assert {(d["status"], d["case_id"]) for d in stored} == {("confirmed_fraud", case_id)}


def test_a_decision_on_a_case_that_changed_meanwhile_is_refused(analyst, seed, clock) -> None:
    a = seed(pan=demo_pan(11), ts=clock.now - timedelta(minutes=3))
    html = analyst.get(f"/cases/{a['_id']}").get_data(as_text=True)
    sig = re.search(r'name="sig" value="([0-9a-f]{16})"', html)
    assert sig
    seed(pan=demo_pan(11), ts=clock.now - timedelta(minutes=1))  # a new alert joins
    reply = analyst.post(
        f"/cases/{a['_id']}/disposition",
        data={
            "seen": "open",
            "sig": sig.group(1),
            "to": "dismissed",
            "csrf_token": csrf_from(html),
        },
    )
    assert reply.status_code == 409
    assert "changed after you opened it" in reply.get_data(as_text=True)


def test_an_alert_moves_to_a_verdict_in_one_step(analyst, seed) -> None:
    a = seed()
    html = analyst.get(f"/cases/{a['_id']}").get_data(as_text=True)
    for label in ("Confirm fraud", "Mark false positive", "Mark dismissed", "Start investigating"):
        assert label in html


def test_the_case_queue_pages_without_repeating_a_case(tool, seed, clock) -> None:
    # 30 cards with three alerts each, interleaved in the queue order; 7 cases a page.
    for card in range(30):
        for i in range(3):
            ts = clock.now - timedelta(minutes=card + 30 * i)
            seed(pan=demo_pan(card), ts=ts, score=0.3 + (card % 7) / 100 + i / 10)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        url = "/api/cases?limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = tool.get(url).get_json()
        assert all(c["alert_count"] == 3 for c in page["cases"])
        seen += [c["id"] for c in page["cases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 30
    assert len(set(seen)) == 30


def test_the_api_lists_a_case_and_decides_it(tool, seed, clock, mongo_db) -> None:
    alerts = [seed(pan=demo_pan(21), ts=clock.now - timedelta(minutes=4 - i)) for i in range(2)]
    listed = tool.get("/api/cases").get_json()
    case = listed["cases"][0]
    assert case["alert_count"] == 2
    assert sorted(case["alert_ids"]) == sorted(a["_id"] for a in alerts)
    detail = tool.get(f"/api/cases/{case['id']}").get_json()
    assert [a["id"] for a in detail["alerts"]] == case["alert_ids"]
    body = {"from": "open", "signature": case["signature"], "to": "false_positive"}
    reply = tool.post(f"/api/cases/{case['id']}/disposition", json=body)
    assert reply.status_code == 200
    assert reply.get_json()["case"]["status"] == "false_positive"
    assert sorted(reply.get_json()["changed"]) == sorted(case["alert_ids"])
    again = tool.post(f"/api/cases/{case['id']}/disposition", json=body)
    assert again.status_code == 409
    assert tool.post("/api/cases/nothex/disposition", json=body).status_code == 404
    bad = tool.post(f"/api/cases/{case['id']}/disposition", json={**body, "signature": "x"})
    assert bad.status_code == 400


def test_a_case_larger_than_a_page_lists_its_newest_alerts_and_counts_all(
    analyst, seed, clock, monkeypatch
) -> None:
    monkeypatch.setattr(cases, "MAX_CASE_ALERTS", 3)
    burst = [seed(pan=demo_pan(31), ts=clock.now - timedelta(minutes=9 - i)) for i in range(5)]
    case = analyst.get("/api/cases?card=" + burst[0]["card_token"]).get_json()["cases"][0]
    assert case["alert_count"] == 5
    assert len(case["alert_ids"]) == 3
    page = analyst.get(f"/cases/{case['id']}", follow_redirects=True).get_data(as_text=True)
    assert "3 from its newest days shown" in page
