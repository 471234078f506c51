"""The alert list (``/alerts``; the case queue groups it: test_cases.py), seeded through
``write_alerts`` on the real MongoDB-protocol server."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from devtools.demo_data import demo_pan
from fraudwatch.alert_store import queue_key
from fraudwatch.contract import epoch_ms

pytestmark = pytest.mark.integration

ROW_ID = re.compile(r'data-alert-id="([0-9a-f]{24})"')


def row_ids(html: str) -> list[str]:
    return ROW_ID.findall(html)


def test_queue_lists_the_newest_day_first_and_the_best_score_first_within_it(
    analyst, seed, clock
) -> None:
    midnight = clock.now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = seed(ts=midnight - timedelta(hours=1), score=0.99)
    low = seed(ts=midnight + timedelta(seconds=2), score=0.41)
    best = seed(ts=midnight + timedelta(seconds=1), score=0.87)
    html = analyst.get("/alerts").get_data(as_text=True)
    assert row_ids(html) == [best["_id"], low["_id"], yesterday["_id"]]


def test_queue_rows_show_their_columns(analyst, seed, clock) -> None:
    new = seed(ts=clock.now - timedelta(minutes=1), merchant=("m-8", "New Shop", "5411"))
    html = analyst.get("/alerts").get_data(as_text=True)
    for text in (new["card_masked"], "New Shop", new["severity"], "Open", "min ago"):
        assert text in html
    assert f"{new['amount']:,.2f} EUR" in html


def test_queue_shows_only_the_masked_card_never_the_number(analyst, seed) -> None:
    pan = demo_pan(1234)
    seed(pan=pan)
    html = analyst.get("/alerts").get_data(as_text=True)
    assert pan[:6] + "******" + pan[-4:] in html
    assert pan not in html


def test_status_counts_cover_every_status(analyst, seed) -> None:
    seed(status="open")
    seed(status="open")
    seed(status="dismissed")
    html = analyst.get("/alerts").get_data(as_text=True)
    counts = dict(re.findall(r'data-status="(\w+)">[^<]*<span class="count">(\d+)', html))
    assert counts == {
        "open": "2",
        "investigating": "0",
        "confirmed_fraud": "0",
        "false_positive": "0",
        "dismissed": "1",
    }


@pytest.mark.parametrize(
    ("param", "matching", "other"),
    [
        ("status", {"status": "investigating"}, {"status": "open"}),
        ("severity", {"severity": "critical"}, {"severity": "low"}),
        ("rule", {"rules": ["card_testing"]}, {"rules": ["high_amount"]}),
        ("merchant", {"merchant": ("m-77", "Seventy", "5411")}, {}),
    ],
)
def test_each_filter_keeps_only_matching_alerts(analyst, seed, param, matching, other) -> None:
    fields: dict[str, Any] = dict(matching)
    if "rules" in fields:
        fields["rules"] = list(fields["rules"])
    hit = seed(**fields)
    miss = seed(**other)
    value = {
        "status": "investigating",
        "severity": "critical",
        "rule": "card_testing",
        "merchant": "m-77",
    }[param]
    if param == "severity":
        # severity is derived from the score by the factory: force it on both documents
        analyst.application.extensions["fraudwatch"].alerts.database["alerts"].update_one(
            {"_id": miss["_id"]}, {"$set": {"severity": "low"}}
        )
    ids = row_ids(analyst.get(f"/alerts?{param}={value}").get_data(as_text=True))
    assert hit["_id"] in ids
    assert miss["_id"] not in ids


def test_card_filter_by_last4_token_and_typed_card_number(analyst, seed, tokenizer) -> None:
    pan = demo_pan(4242)
    mine = seed(pan=pan)
    other = seed(pan=demo_pan(7))
    by_last4 = row_ids(analyst.get(f"/alerts?card={pan[-4:]}").get_data(as_text=True))
    by_token = row_ids(analyst.get(f"/alerts?card={tokenizer.token(pan)}").get_data(as_text=True))
    assert mine["_id"] in by_last4
    assert other["_id"] not in by_last4
    assert by_token == [mine["_id"]]


def test_typed_card_number_is_replaced_by_its_token_before_it_reaches_a_url(
    analyst, tokenizer
) -> None:
    pan = demo_pan(4242)
    html = analyst.get("/alerts").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = analyst.post("/filter", data={"card": pan, "csrf_token": token, "severity": ""})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/?card={tokenizer.token(pan)}"
    listed = analyst.post(
        "/filter", data={"card": pan, "csrf_token": token, "severity": "", "view": "alerts"}
    )
    assert listed.headers["Location"] == f"/alerts?card={tokenizer.token(pan)}"
    for direct in (analyst.get(f"/?card={pan}"), analyst.get(f"/alerts?card={pan}")):
        assert direct.status_code == 303
        assert pan not in direct.headers["Location"]


def test_time_range_filter_bounds_the_queue(analyst, seed, clock) -> None:
    inside = seed(ts=clock.now - timedelta(hours=5))
    seed(ts=clock.now - timedelta(hours=1))
    seed(ts=clock.now - timedelta(hours=9))
    start = (clock.now - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M")
    end = (clock.now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")
    ids = row_ids(analyst.get(f"/alerts?from={start}&to={end}").get_data(as_text=True))
    assert ids == [inside["_id"]]


def test_queue_hides_alerts_older_than_the_default_window(analyst, seed, clock) -> None:
    recent = seed(ts=clock.now - timedelta(days=1))
    ancient = seed(ts=clock.now - timedelta(days=30))
    ids = row_ids(analyst.get("/alerts").get_data(as_text=True))
    assert recent["_id"] in ids
    assert ancient["_id"] not in ids


def test_cursor_pages_walk_the_whole_queue_without_gaps_or_repeats(
    app, analyst, seed, clock
) -> None:
    app.extensions["fraudwatch"].settings.__dict__["webapp_page_size"] = 4
    midnight = clock.now.replace(hour=0, minute=0, second=0, microsecond=0)
    same_score = [seed(ts=midnight + timedelta(seconds=1), score=0.5) for _ in range(3)]
    yesterday = [seed(ts=midnight - timedelta(minutes=1 + i), score=0.9) for i in range(3)]
    seeded = same_score + yesterday + [seed(ts=midnight, score=i / 10) for i in range(5)]
    expected = [d["_id"] for d in sorted(seeded, key=lambda d: d["queue_key"], reverse=True)]
    assert expected[-3:] == sorted((d["_id"] for d in yesterday), reverse=True)
    seen: list[str] = []
    url = "/alerts"
    while url:
        html = analyst.get(url).get_data(as_text=True)
        seen += row_ids(html)
        older = re.search(r'href="(/alerts\?before=[^"]+)" rel="next"', html)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == expected
    # and back up again with the "newer" link of the last page
    newer = re.search(r'href="(/alerts\?after=[^"]+)" rel="prev"', html)
    assert newer is not None
    back = row_ids(analyst.get(newer.group(1).replace("&amp;", "&")).get_data(as_text=True))
    assert back == expected[4:8]


def test_live_endpoint_answers_204_until_a_new_alert_lands_then_sends_it(
    analyst, seed, clock
) -> None:
    seed(ts=clock.now - timedelta(minutes=10))
    html = analyst.get("/alerts?severity=").get_data(as_text=True)
    poll = re.search(r'hx-get="(/queue/live[^"]+)"', html).group(1).replace("&amp;", "&")
    assert analyst.get(poll, headers={"HX-Request": "true"}).status_code == 204
    fresh = seed(ts=clock.now - timedelta(seconds=5), merchant=("m-5", "Fresh Shop", "5411"))
    response = analyst.get(poll, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert fresh["_id"] in body
    assert 'hx-swap-oob="true"' in body
    assert re.search(rf'class="row[^"]*is-new[^"]*"[^>]*data-alert-id="{fresh["_id"]}"', body)


def test_live_endpoint_keeps_the_analysts_filters(analyst, seed, clock) -> None:
    html = analyst.get("/alerts?status=investigating").get_data(as_text=True)
    poll = re.search(r'hx-get="(/queue/live[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "status=investigating" in poll
    seed(status="open")
    assert analyst.get(poll).status_code == 204
    wanted = seed(status="investigating")
    assert wanted["_id"] in analyst.get(poll).get_data(as_text=True)


def test_backfill_gives_alerts_from_an_older_release_their_queue_key(
    app, analyst, seed, mongo_db, clock
) -> None:
    older = [seed(ts=clock.now - timedelta(minutes=m), drop=("queue_key",)) for m in (1, 2, 3)]
    current = seed(ts=clock.now - timedelta(minutes=4))
    assert current["_id"] in row_ids(analyst.get("/alerts").get_data(as_text=True))
    assert not {d["_id"] for d in older} & set(
        row_ids(analyst.get("/alerts").get_data(as_text=True))
    )
    runner = app.test_cli_runner()
    done = runner.invoke(args=["backfill-queue-keys"])
    assert done.exit_code == 0, done.output
    assert "3 alerts given a queue key" in done.output
    for doc in older:
        stored = mongo_db["alerts"].find_one({"_id": doc["_id"]})
        assert stored["queue_key"] == queue_key(
            epoch_ms(doc["timestamp"]), doc["score"], doc["_id"]
        )
    assert "0 alerts given a queue key" in runner.invoke(args=["backfill-queue-keys"]).output
    shown = row_ids(analyst.get("/alerts").get_data(as_text=True))
    assert {d["_id"] for d in older} <= set(shown)
