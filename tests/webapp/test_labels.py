"""Analysts' verdicts become fraud labels on LABELS_TOPIC (contract v1), through the outbox.

Real Kafka and FerretDB from the local stack: every test has its own topic and database.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from devtools.demo_data import demo_pan
from fraudwatch.alert_store import ALERTS, DISPOSITIONS, AlertView, ensure_indexes
from fraudwatch.contract import FraudLabel, format_ts, parse_label
from tests.integration.pipeline import consume_all, free_port
from webapp.data.label_outbox import LABEL_OUTBOX, OutboxEntry, label_for
from webapp.data.store import DispositionConflict
from webapp.dispositions import record_disposition
from webapp.settings import WebappSettings

from .conftest import Clock, build_app, disposition, login, make_user

pytestmark = pytest.mark.integration


def label_app(db_name: str, clock: Clock, bootstrap: str, topic: str, **overrides: Any) -> Any:
    """The console with label publishing on, to ``topic`` at ``bootstrap``."""
    values: dict[str, Any] = {
        "webapp_publish_labels": True,
        "kafka_bootstrap_servers": bootstrap,
        "labels_topic": topic,
        "webapp_label_timeout_s": 10,
    }
    values.update(overrides)
    return build_app(db_name, clock, **values)


def down_app(db_name: str, clock: Clock, topic: str) -> Any:
    """The console pointed at a port nobody listens on: Kafka is down."""
    closed = f"127.0.0.1:{free_port()}"
    return label_app(db_name, clock, closed, topic, webapp_label_timeout_s=1)


def labels_on(bootstrap: str, topic: str) -> list[tuple[bytes | None, FraudLabel]]:
    """Every message on the topic as (key, parsed label); fails on one that does not parse."""
    return [(key, parse_label(value)) for key, value in consume_all(bootstrap, topic)]


@pytest.fixture
def topic(make_topic, unique_name):
    return make_topic(unique_name, partitions=3)


@pytest.fixture
def app(mongo_db, clock, bootstrap, topic):
    ensure_indexes(mongo_db)
    return label_app(mongo_db.name, clock, bootstrap, topic)


def to_verdict(client, alert_id: str, verdict: str):
    """open -> investigating -> ``verdict`` through the HTML form; the last response."""
    assert disposition(client, alert_id, "open", "investigating").status_code == 303
    return disposition(client, alert_id, "investigating", verdict)


def test_confirming_fraud_publishes_a_fraud_label_with_the_card_token_and_no_pan(
    analyst, seed, mongo_db, bootstrap, topic, clock
) -> None:
    pan = demo_pan(7)
    alert = seed(pan=pan, amount=249.99)
    response = to_verdict(analyst, alert["_id"], "confirmed_fraud")
    assert response.status_code == 303
    page = analyst.get(response.headers["Location"]).get_data(as_text=True)
    assert "The fraud label was sent to the detector." in page

    raw = consume_all(bootstrap, topic)
    assert len(raw) == 1
    key, value = raw[0]
    assert pan.encode() not in value
    assert key == alert["card_token"].encode()
    label = parse_label(value)
    assert label.card_number is None
    assert label.card_token == alert["card_token"]
    assert (label.label, label.source) == ("fraud", "analyst")
    assert label.transaction_id == alert["transaction_id"]
    assert label.merchant_id == alert["merchant_id"]
    assert (label.amount, label.currency) == (249.99, "EUR")
    assert format_ts(label.timestamp) == format_ts(alert["timestamp"])
    assert format_ts(label.reported_at) == format_ts(clock.now)
    assert mongo_db[LABEL_OUTBOX].count_documents({}) == 0
    audit = mongo_db[DISPOSITIONS].find_one({"alert_id": alert["_id"], "to": "confirmed_fraud"})
    assert audit["label"] == "fraud"
    assert "fraud label" in page  # the history names the label


def test_false_positive_publishes_genuine_and_dismiss_or_investigating_publish_nothing(
    analyst, seed, bootstrap, topic
) -> None:
    genuine, dismissed = seed(), seed()
    assert to_verdict(analyst, genuine["_id"], "false_positive").status_code == 303
    assert to_verdict(analyst, dismissed["_id"], "dismissed").status_code == 303
    labels = labels_on(bootstrap, topic)
    assert [(lab.transaction_id, lab.label) for _, lab in labels] == [
        (genuine["transaction_id"], "genuine")
    ]


def test_a_later_false_positive_overrides_with_a_later_genuine_label(
    analyst, seed, bootstrap, topic, clock
) -> None:
    alert = seed()
    to_verdict(analyst, alert["_id"], "confirmed_fraud")
    clock.advance(minutes=5)
    assert disposition(analyst, alert["_id"], "confirmed_fraud", "investigating").status_code == 303
    clock.advance(minutes=1)
    assert disposition(analyst, alert["_id"], "investigating", "false_positive").status_code == 303
    labels = [lab for _, lab in labels_on(bootstrap, topic)]
    assert [lab.label for lab in labels] == ["fraud", "genuine"]
    assert labels[0].reported_at < labels[1].reported_at
    assert {lab.transaction_id for lab in labels} == {alert["transaction_id"]}


def test_api_verdict_publishes_the_label_and_reports_its_delivery(
    tool, seed, bootstrap, topic
) -> None:
    alert = seed(status="investigating")
    url = f"/api/alerts/{alert['_id']}/disposition"
    response = tool.post(url, json={"from": "investigating", "to": "confirmed_fraud"})
    body = response.get_json()
    assert response.status_code == 200
    assert body["label"] == {
        "label": "fraud",
        "delivery": "sent",
        "message": "The fraud label was sent to the detector.",
    }
    assert body["disposition"]["label"] == "fraud"
    assert body["message"].startswith("Status changed to Confirmed fraud.")
    [(key, label)] = labels_on(bootstrap, topic)
    assert (key, label.label) == (alert["card_token"].encode(), "fraud")
    dismissed = tool.post(
        url.replace(alert["_id"], seed(status="investigating")["_id"]),
        json={"from": "investigating", "to": "dismissed"},
    )
    assert dismissed.get_json()["label"] is None


def test_broker_unreachable_keeps_the_disposition_and_publish_labels_sends_it_later(
    mongo_db, clock, seed, bootstrap, topic
) -> None:
    down = down_app(mongo_db.name, clock, topic)
    make_user(down, "alice")
    console = down.test_client()
    login(console, "alice")
    fraud = seed()
    response = to_verdict(console, fraud["_id"], "confirmed_fraud")
    assert response.status_code == 303
    page = console.get(response.headers["Location"]).get_data(as_text=True)
    assert "Disposition saved; the fraud label will be sent when Kafka is back" in page
    assert "flash-warning" in page
    assert mongo_db[ALERTS].find_one({"_id": fraud["_id"]})["status"] == "confirmed_fraud"

    # The API path while Kafka is down: saved, and it says the label waits.
    _, token = down.extensions["fraudwatch"].access.create_token("alice", "tests")
    genuine = seed(status="investigating")
    clock.advance(seconds=1)
    answer = down.test_client().post(
        f"/api/alerts/{genuine['_id']}/disposition",
        json={"from": "investigating", "to": "false_positive"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    assert answer.get_json()["label"]["delivery"] == "pending"
    assert "will be sent when Kafka is back" in answer.get_json()["message"]
    pending = list(mongo_db[LABEL_OUTBOX].find())
    assert len(pending) == 2
    assert all(p["attempts"] >= 1 and p["last_error"] for p in pending)

    still_down = down.test_cli_runner().invoke(args=["publish-labels"])
    assert still_down.exit_code == 1
    assert "not acknowledged by Kafka" in still_down.output
    assert mongo_db[LABEL_OUTBOX].count_documents({}) == 2
    assert consume_all(bootstrap, topic) == []

    back = label_app(mongo_db.name, clock, bootstrap, topic)
    flushed = back.test_cli_runner().invoke(args=["publish-labels"])
    assert flushed.exit_code == 0, flushed.output
    assert "2 labels sent" in flushed.output
    assert mongo_db[LABEL_OUTBOX].count_documents({}) == 0
    labels = [lab for _, lab in labels_on(bootstrap, topic)]
    assert sorted((lab.transaction_id, lab.label) for lab in labels) == sorted(
        [(fraud["transaction_id"], "fraud"), (genuine["transaction_id"], "genuine")]
    )
    again = back.test_cli_runner().invoke(args=["publish-labels"])
    assert "0 labels sent" in again.output
    assert len(consume_all(bootstrap, topic)) == 2


def test_the_next_disposition_sends_labels_left_over_from_an_outage_first(
    mongo_db, clock, seed, bootstrap, topic, analyst
) -> None:
    down = down_app(mongo_db.name, clock, topic)
    console = down.test_client()
    login(console, "alice")  # made by the `analyst` fixture on the live app's database
    first = seed()
    to_verdict(console, first["_id"], "confirmed_fraud")
    assert mongo_db[LABEL_OUTBOX].count_documents({}) == 1

    clock.advance(minutes=1)
    second = seed()
    assert to_verdict(analyst, second["_id"], "false_positive").status_code == 303
    assert mongo_db[LABEL_OUTBOX].count_documents({}) == 0
    labels = [lab for _, lab in labels_on(bootstrap, topic)]
    assert sorted((lab.transaction_id, lab.label) for lab in labels) == sorted(
        [(first["transaction_id"], "fraud"), (second["transaction_id"], "genuine")]
    )


def test_concurrent_verdicts_publish_exactly_the_winners_label(app, seed, bootstrap, topic) -> None:
    alert = seed(status="investigating")
    svc = app.extensions["fraudwatch"]
    won: list[str] = []
    lost: list[Exception] = []
    barrier = threading.Barrier(2)

    def act(user: str, verdict: str) -> None:
        barrier.wait()
        try:
            record_disposition(
                svc, alert["_id"], seen="investigating", to=verdict, user=user, comment=""
            )
            won.append(verdict)
        except Exception as exc:
            lost.append(exc)

    threads = [
        threading.Thread(target=act, args=("alice", "confirmed_fraud")),
        threading.Thread(target=act, args=("bob", "false_positive")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert [type(exc) for exc in lost] == [DispositionConflict]
    expected = {"confirmed_fraud": "fraud", "false_positive": "genuine"}[won[0]]
    assert [lab.label for _, lab in labels_on(bootstrap, topic)] == [expected]
    assert svc.labels.outbox.count() == 0


def test_a_verdict_on_a_stale_view_loses_and_publishes_nothing(app, seed, bootstrap, topic) -> None:
    alert = seed(status="investigating")
    svc = app.extensions["fraudwatch"]
    stale = svc.alerts.get(alert["_id"])
    record_disposition(
        svc, alert["_id"], seen="investigating", to="confirmed_fraud", user="alice", comment=""
    )
    with pytest.raises(DispositionConflict):
        # Bob's page still shows "investigating": his intent is written, then his
        # compare-and-set loses and the intent is removed again.
        record_disposition(
            svc,
            alert["_id"],
            seen="investigating",
            to="false_positive",
            user="bob",
            comment="",
            alert=stale,
        )
    assert [lab.label for _, lab in labels_on(bootstrap, topic)] == ["fraud"]
    assert svc.labels.outbox.count() == 0


def test_an_intent_without_its_disposition_waits_then_is_dropped_never_sent(
    app, seed, bootstrap, topic, clock, analyst
) -> None:
    svc = app.extensions["fraudwatch"]
    orphan_alert = seed(status="investigating")
    # A request that died after writing its intent, before its compare-and-set.
    label = label_for(AlertView.from_doc(orphan_alert), "confirmed_fraud", clock.now)
    orphan = OutboxEntry.for_label(label, alert_id=orphan_alert["_id"], version=0, now=clock.now)
    svc.labels.outbox.add(orphan)
    # An intent whose version was taken by another disposition (open -> investigating).
    other = seed()
    assert disposition(analyst, other["_id"], "open", "investigating").status_code == 303
    label = label_for(AlertView.from_doc(other), "confirmed_fraud", clock.now)
    beaten = OutboxEntry.for_label(label, alert_id=other["_id"], version=0, now=clock.now)
    svc.labels.outbox.add(beaten)

    first = svc.labels.deliver(clock.now)
    assert (first.waiting, first.dropped, first.sent) == ([orphan.label_id], [beaten.label_id], [])
    later = svc.labels.deliver(clock.now + timedelta(minutes=11))
    assert (later.dropped, later.sent) == ([orphan.label_id], [])
    assert svc.labels.outbox.count() == 0
    assert consume_all(bootstrap, topic) == []


def test_an_alert_without_transaction_data_is_disposed_with_a_warning_and_no_label(
    analyst, seed, bootstrap, topic, mongo_db
) -> None:
    alert = seed(drop=["transaction_id"])
    response = to_verdict(analyst, alert["_id"], "confirmed_fraud")
    assert response.status_code == 303
    page = analyst.get(response.headers["Location"]).get_data(as_text=True)
    assert "no fraud label was sent: the alert has no valid transaction_id" in page
    assert mongo_db[ALERTS].find_one({"_id": alert["_id"]})["status"] == "confirmed_fraud"
    assert consume_all(bootstrap, topic) == []


def test_publishing_can_be_turned_off(mongo_db, clock, seed, bootstrap, topic, monkeypatch) -> None:
    monkeypatch.setenv("WEBAPP_PUBLISH_LABELS", "0")
    assert WebappSettings().webapp_publish_labels is False
    app = label_app(mongo_db.name, clock, bootstrap, topic, webapp_publish_labels=False)
    make_user(app, "alice")
    client = app.test_client()
    login(client, "alice")
    alert = seed()
    response = to_verdict(client, alert["_id"], "confirmed_fraud")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Status changed to Confirmed fraud." in page
    assert "label" not in page.split("Status changed to Confirmed fraud.")[1].split("<")[0]
    assert consume_all(bootstrap, topic) == []
    assert LABEL_OUTBOX not in mongo_db.list_collection_names()
