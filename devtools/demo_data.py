"""Synthetic alerts built with the shared contract and stored as the dataflow stores them
(``alert_store.alert_document``), for the console's ``seed-demo`` command, the web and
browser tests and the query benchmarks.

They are written with the dataflow's own store code (``write_alerts``, ``write_stats``),
so the documents have exactly the shape the dataflow produces, plus ``evidence_txns``.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from fraudwatch.alert_store import (
    ALERT_STATS,
    ALERTS,
    alert_document,
    minute_id,
    write_alerts,
    write_stats,
)
from fraudwatch.cards import CardTokenizer, luhn_check_digit, mask_pan
from fraudwatch.contract import Alert, CardEvent, Reason, alert_id_for, format_ts

Doc = dict[str, Any]

CITIES = [
    ("Berlin", "DE", 52.52, 13.405),
    ("Paris", "FR", 48.857, 2.352),
    ("Madrid", "ES", 40.417, -3.704),
    ("Amsterdam", "NL", 52.37, 4.895),
    ("Warsaw", "PL", 52.23, 21.012),
    ("Lisbon", "PT", 38.722, -9.139),
    ("New York", "US", 40.713, -74.006),
    ("Singapore", "SG", 1.352, 103.82),
]
MERCHANTS = [
    ("m-1001", "Corner Grocery", "5411"),
    ("m-1002", "Bistro Lumière", "5812"),
    ("m-1003", "ElectroMax Online", "5732"),
    ("m-1004", "GiftCard Hub", "5999"),
    ("m-1005", "Lucky Spins Casino", "7995"),
    ("m-1006", "QuickCash ATM", "6011"),
    ("m-1007", "FastWire Transfers", "4829"),
]
REASON_TEXT = {
    "high_amount": "Amount {amount:.2f} EUR is above the 2,000.00 EUR review limit.",
    "amount_spike": "Amount {amount:.2f} EUR is 11.4x this card's median of 37.20 EUR "
    "over 41 transactions.",
    "velocity_count": "7 transactions in 4 min; this card's usual is 2 a day.",
    "velocity_amount": "1,930.00 EUR spent in 10 min, above the 1,500.00 EUR limit.",
    "card_testing": "5 authorizations under 2.00 EUR in 6 min at 3 merchants, card not present.",
    "impossible_travel": "1,054 km from the previous card-present use 38 min earlier "
    "(1,664 km/h; the limit is 900 km/h).",
    "location_anomaly": "First use in {country}; 1,870 km from this card's usual area.",
    "compromised_card": "A fraud on this card was reported 2026-11-20 09:12 UTC (1.3 days ago) "
    "and not cleared since: the card is known to be compromised.",
    "merchant_risk": "Merchant m-1004 (GiftCard Hub): 4 of its 37 transactions in the last "
    "known week (ending 7 days ago) were fraud.",
    "amount_vs_habit": "{amount:.2f} EUR is 8.3x this card's median of 49.50 EUR over its "
    "last 12 transactions (robust z 5.1).",
    "amount_vs_merchant": "9.2x this merchant's typical ticket of 21.40 EUR.",
    "card_activity": "9 transactions in 24 h; this card's usual is 1.4 a day.",
}
SEVERITY_BY_SCORE = ((0.9, "critical"), (0.75, "high"), (0.5, "medium"), (0.0, "low"))


def demo_pan(seed: int) -> str:
    body = f"411111{seed:09d}"
    return body + luhn_check_digit(body)


def _channel(rng: random.Random, card_present: bool) -> str:
    drawn = rng.choice(("card_present", "card_not_present"))
    return "card_present" if card_present else drawn


def make_alert_doc(
    rng: random.Random,
    tokenizer: CardTokenizer,
    *,
    ts: datetime,
    seq: int,
    pan: str | None = None,
    rules: list[str] | None = None,
    merchant: tuple[str, str, str] | None = None,
    amount: float | None = None,
    detected_at: datetime | None = None,
) -> Doc:
    """One alert document as the dataflow writes it (with evidence transactions)."""
    pan = pan or demo_pan(rng.randrange(300))
    home = rng.choice(CITIES)
    _city, country, lat, lon = home
    merchant_id, merchant_name, mcc = merchant or rng.choice(MERCHANTS)
    rules = rules or rng.sample(list(REASON_TEXT), rng.choice((1, 1, 1, 2, 2, 3)))
    amount = amount if amount is not None else round(rng.lognormvariate(5, 1.2), 2)
    token = tokenizer.token(pan)
    # The detector judges impossible travel between card-present uses only: so do its demos
    # (the random draw is still made, so the rest of a seeded demo stays the same).
    present = "impossible_travel" in rules
    channel = rng.choice(("card_present", "card_not_present"))
    event = CardEvent(
        transaction_id=f"tx-{seq:08d}",
        ts=int(ts.timestamp() * 1000),
        card_token=token,
        card_masked=mask_pan(pan),
        account_id=f"acct-{int(pan[-6:]) % 5000:05d}",
        amount=amount,
        currency="EUR",
        merchant_id=merchant_id,
        merchant_name=merchant_name,
        merchant_category=mcc,
        channel="card_present" if present else channel,
        latitude=lat + rng.uniform(-0.05, 0.05),
        longitude=lon + rng.uniform(-0.05, 0.05),
        country=country,
    )
    scores = [round(rng.uniform(0.35, 0.98), 2) for _ in rules]
    score = round(1 - _prod(1 - s for s in scores), 3)
    severity = next(name for floor, name in SEVERITY_BY_SCORE if score >= floor)
    reasons = tuple(
        Reason(r, s, REASON_TEXT[r].format(amount=amount, country=country))
        for r, s in zip(rules, scores, strict=True)
    )
    evidence_txns: list[dict[str, Any]] = []
    travels = "impossible_travel" in rules or "location_anomaly" in rules
    for back in range(rng.randint(1, 4), 0, -1):
        # Evidence happens near the alert, except the far-away use that travel rules flag.
        ev_city = rng.choice(CITIES) if travels and back == 1 else home
        evidence_txns.append(
            {
                "transaction_id": f"tx-{seq:08d}-e{back}",
                "timestamp": format_ts(ts - timedelta(minutes=back * rng.randint(3, 25))),
                "amount_base": round(rng.lognormvariate(3, 1), 2),
                "latitude": ev_city[2] + rng.uniform(-0.08, 0.08),
                "longitude": ev_city[3] + rng.uniform(-0.08, 0.08),
                "country": ev_city[1],
                "channel": _channel(rng, present and back == 1),
            }
        )
    # Like the dataflow, the alerted transaction itself closes the evidence list.
    evidence_txns.append(
        {
            "transaction_id": event.transaction_id,
            "timestamp": format_ts(ts),
            "amount_base": amount,
            "latitude": event.latitude,
            "longitude": event.longitude,
            "country": event.country,
            "channel": event.channel,
        }
    )
    alert = Alert(
        alert_id=alert_id_for(token, event.transaction_id),
        event=event,
        score=score,
        severity=severity,
        reasons=reasons,
        evidence=tuple(str(t["transaction_id"]) for t in evidence_txns),
        evidence_txns=tuple(evidence_txns),
        ruleset_version="demo-1",
        detected_at=int((detected_at or ts + timedelta(seconds=2)).timestamp() * 1000),
    )
    doc = alert_document(alert)
    return doc


def _prod(values: Any) -> float:
    out = 1.0
    for v in values:
        out *= v
    return out


def stats_for(docs: list[Doc], rng: random.Random) -> list[Doc]:
    """``alert_stats`` minute documents that agree with ``docs`` (plus plausible traffic),
    one for every minute from the first alert to the last."""
    minutes: dict[datetime, list[Doc]] = {}
    for d in docs:
        minute = d["timestamp"].replace(second=0, microsecond=0)
        minutes.setdefault(minute, []).append(d)
    if minutes:
        t, last = min(minutes), max(minutes)
        while t < last:
            minutes.setdefault(t, [])
            t += timedelta(minutes=1)
    out = []
    for minute, group in sorted(minutes.items()):
        by_rule = Counter(r for d in group for r in d["rules"])
        by_severity = Counter(d["severity"] for d in group)
        out.append(
            {
                "_id": minute_id(minute),
                "minute": minute,
                "transactions": 9000 + rng.randint(0, 3000),
                "alerts": len(group),
                "by_rule": dict(by_rule),
                "by_severity": dict(by_severity),
                "late": rng.randint(0, 5),
            }
        )
    return out


def seed_demo(
    db: Database[Doc],
    tokenizer: CardTokenizer,
    *,
    count: int = 300,
    minutes: int = 90,
    now: datetime | None = None,
    seed: int = 7,
) -> int:
    """Write ``count`` alerts spread over the last ``minutes`` plus their minute stats;
    a quarter already carry an analyst's verdict. Returns how many alerts were new."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    now = now or datetime.now(UTC)
    docs = []
    for seq in range(count):
        ts = now - timedelta(seconds=rng.uniform(0, minutes * 60))
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        docs.append(make_alert_doc(rng, tokenizer, ts=ts, seq=seq))
    for d in docs:
        roll = rng.random()
        if roll < 0.12:
            d["status"] = "confirmed_fraud" if "card_testing" in d["rules"] else "false_positive"
        elif roll < 0.2:
            d["status"] = rng.choice(("confirmed_fraud", "dismissed", "investigating"))
    written = write_alerts(db[ALERTS], docs)
    write_stats(db[ALERT_STATS], stats_for(docs, rng))
    return written
