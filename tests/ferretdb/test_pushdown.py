"""The patched FerretDB answers every query the console makes exactly as FerretDB itself does,
and answers them from an index.

The console's queries are recorded (pymongo command monitoring) while ``AlertStore`` serves its
views on a seeded collection, then replayed on the patched and the upstream server, both on the
plain collection (where the pushdown applies) and on one with mixed-type traps (arrays,
missing fields, strings and numbers where dates belong, ties), where the patch must notice and
fall back. ``explain`` on the plain collection must show an index for every one of them.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring

from devtools.demo_data import MERCHANTS, demo_pan, make_alert_doc
from fraudwatch import clients
from fraudwatch.alert_store import ALERT_STATS, ALERTS, DISPOSITIONS, ensure_indexes
from fraudwatch.alert_store.documents import RULE_KEY_PREFIX
from fraudwatch.cards import CardTokenizer
from webapp.data.cases import CaseStore
from webapp.data.store import AlertStore
from webapp.queries import AlertQuery, CardFilter, Cursor

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
READ_COMMANDS = ("find", "aggregate", "count")
Doc = dict[str, Any]


class _Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[Doc] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in READ_COMMANDS:
            cmd = {k: v for k, v in event.command.items() if not k.startswith("$") and k != "lsid"}
            self.commands.append(copy.deepcopy(cmd))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _alerts(tokenizer: CardTokenizer) -> list[Doc]:
    rng = random.Random(13)
    docs = []
    for seq in range(1000):
        ts = NOW - timedelta(seconds=rng.uniform(0, 9 * 86400))
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        if seq % 50 == 0 and docs:  # ties on the sort key, broken by _id
            ts = docs[-1]["timestamp"]
        pan = demo_pan(77) if seq % 100 == 0 else demo_pan(rng.randrange(400))
        doc = make_alert_doc(rng, tokenizer, ts=ts, seq=seq, pan=pan)
        doc["status"] = rng.choice(
            ("open", "open", "investigating", "confirmed_fraud", "dismissed")
        )
        docs.append(doc)
    return docs


def _traps(clean: list[Doc], *, arrays: bool = True) -> list[Doc]:
    """Documents whose types break a naive SQL pushdown; each one matches some query.

    ``arrays=False`` leaves out the variants that put an array in a pushable field."""
    base = clean[7]
    ts = base["timestamp"]
    variants: list[Doc] = [
        {"status": ["open", "investigating"]},  # array: matches status=open
        {"status": 1},
        {"severity": ["high"]},
        {"severity": None},
        {"timestamp": ts.isoformat()},  # string where a date belongs
        {"timestamp": int(ts.timestamp() * 1000)},  # number where a date belongs
        {"timestamp": [ts, ts - timedelta(days=1)]},  # array of dates: matches the range
        {"timestamp": None},
        {"card_token": [base["card_token"]]},
        {"card_last4": int(base["card_last4"])},
        {"merchant_id": base["merchant_id"] + "!"},  # sorts before the plain id in JSON text
        {"merchant_id": base["merchant_id"] + " é"},
        {"score": "0.99"},
        {"rules": "velocity_count"},  # a string where an array is expected
        {"queue_key_velocity_count": base["queue_key"][:10]},  # the rule filter's key field
        {"queue_key_velocity_count": 20261125},
        {"queue_key_velocity_count": [base["queue_key"]]},
        {"queue_key": base["queue_key"][:10]},  # a bare day: inside every day range
        {"queue_key": 20261125},
        {"queue_key": None},
        {"queue_key": [base["queue_key"]]},
    ]
    out = []
    for i, change in enumerate(variants):
        if not arrays and any(isinstance(v, list) for v in change.values()):
            continue
        doc = copy.deepcopy(base)
        doc["_id"] = f"{i:02x}" + doc["_id"][2:]
        doc["queue_key"] = _rekey(doc)  # unique, as every real key is (it ends with the id)
        doc.update(change)
        out.append(doc)
    missing = copy.deepcopy(base)
    del missing["timestamp"]
    del missing["status"]
    del missing["queue_key"]
    missing["_id"] = "ff" + missing["_id"][2:]
    out.append(missing)
    oid = copy.deepcopy(clean[8])
    oid["_id"] = ObjectId()
    oid["queue_key"] = _rekey(oid)
    out.append(oid)
    return out


def _rekey(doc: Doc) -> str:
    """The document's queue key with its own ``_id`` at the end (its rule keys follow it)."""
    key = str(doc["queue_key"])[:-24] + str(doc["_id"])
    for field in [f for f in doc if f.startswith(RULE_KEY_PREFIX)]:
        doc[field] = key
    return key


def _seed(client: Any, name: str, alerts: list[Doc]) -> None:
    client.drop_database(name)
    db = client[name]
    ensure_indexes(db)
    db[ALERTS].insert_many(copy.deepcopy(alerts), ordered=False)
    minutes = [NOW.replace(second=0) - timedelta(minutes=m) for m in range(300)]
    db[ALERT_STATS].insert_many(
        [{"_id": m.strftime("%Y-%m-%dT%H:%MZ"), "minute": m, "alerts": 1} for m in minutes]
    )
    db[DISPOSITIONS].insert_many(
        [
            {"_id": f"{a['_id']}:{v}", "alert_id": a["_id"], "at": NOW, "version": v + 1}
            for a in alerts[:20]
            for v in range(2)
        ]
    )


@pytest.fixture(scope="module")
def seeded(patched_server: Any, upstream_server: Any) -> list[Doc]:
    tokenizer = CardTokenizer("k" * 32)
    clean = _alerts(tokenizer)
    traps = _traps(clean)
    # Without the arrays, the fields stay pushable and a count is answered in SQL with a type
    # check per row for the fields whose types are mixed: that check is what keeps it exact.
    scalar_traps = _traps(clean, arrays=False)
    for client in (patched_server, upstream_server):
        _seed(client, "clean", clean)
        _seed(client, "traps", clean + traps)
        _seed(client, "scalar_traps", clean + scalar_traps)
    return clean


@pytest.fixture(scope="module")
def console_commands(patched_server: Any, seeded: list[Doc]) -> list[Doc]:
    """Every read the console's store makes for its views, as sent to the server."""
    recorder = _Recorder()
    address = patched_server.address
    uri = f"mongodb://{address[0]}:{address[1]}"
    client: Any = clients.mongo_client(clients.mongo_at(uri), event_listeners=[recorder])
    store = AlertStore(client["clean"], queue_window=timedelta(days=7))
    token = seeded[0]["card_token"]
    last4 = seeded[3]["card_last4"]
    merchant = MERCHANTS[0][0]
    queries = [
        AlertQuery(),
        AlertQuery(status="open"),
        AlertQuery(status="open", severity="high"),
        AlertQuery(severity="critical"),
        AlertQuery(rule="velocity_count"),
        AlertQuery(card=CardFilter("card_token", token)),
        AlertQuery(card=CardFilter("card_last4", last4)),
        AlertQuery(merchant=merchant),
        AlertQuery(start=NOW - timedelta(days=2), end=NOW - timedelta(days=1)),
    ]
    for q in queries:
        first = store.page(q, 50, NOW)
        store.status_counts(q, NOW)
        if first.older:
            older = store.page(
                AlertQuery(**{**_fields(q), "before": Cursor.decode("c", first.older)}), 50, NOW
            )
            if older.newer:
                store.page(
                    AlertQuery(**{**_fields(q), "after": Cursor.decode("c", older.newer)}), 50, NOW
                )
    cases = CaseStore(store)
    for q in (AlertQuery(), AlertQuery(rule="velocity_count"), AlertQuery(merchant=merchant)):
        first_cases = cases.page(q, 10, NOW)
        if first_cases.older:
            cases.page(
                AlertQuery(**{**_fields(q), "before": Cursor.decode("c", first_cases.older)}),
                10,
                NOW,
            )
    store.card_history(token)
    store.get(seeded[5]["_id"])
    store.dispositions(seeded[0]["_id"])
    store.minute_stats(NOW - timedelta(hours=3), NOW)
    store.outcomes(NOW - timedelta(days=7))
    client.close()
    assert len(recorder.commands) > 30
    return recorder.commands


def _fields(q: AlertQuery) -> dict[str, Any]:
    return {
        f: getattr(q, f) for f in ("status", "severity", "rule", "card", "merchant", "start", "end")
    }


def _run(client: Any, db: str, cmd: Doc) -> list[Doc]:
    cmd = dict(cmd)
    if "find" in cmd:
        cmd.pop("batchSize", None)
        cmd["batchSize"] = 100_000
        reply = client[db].command(cmd)
    elif "aggregate" in cmd:
        cmd["cursor"] = {"batchSize": 100_000}
        reply = client[db].command(cmd)
    else:
        return [client[db].command(cmd)]
    assert reply["cursor"]["id"] == 0, "the whole answer fits in the first batch"
    return list(reply["cursor"]["firstBatch"])


@pytest.mark.parametrize("db", ["clean", "traps", "scalar_traps"])
def test_patched_server_answers_every_console_query_like_upstream(
    patched_server: Any, upstream_server: Any, console_commands: list[Doc], db: str
) -> None:
    nonempty = 0
    for cmd in console_commands:
        expected = _run(upstream_server, db, cmd)
        got = _run(patched_server, db, cmd)
        assert got == expected, cmd
        nonempty += bool(expected)
    assert nonempty > len(console_commands) // 2  # the queries do select something


def test_trap_documents_are_in_the_answers(patched_server: Any, seeded: list[Doc]) -> None:
    """The traps really are reached: an array status matches status=open, an array of dates
    matches the time range (so the fallback, not luck, keeps the answers equal)."""
    coll = patched_server["traps"][ALERTS]
    ts = seeded[7]["timestamp"]
    flt = {"status": "open", "timestamp": {"$gte": ts - timedelta(hours=1), "$lt": NOW}}
    ids = {d["_id"] for d in coll.find(flt, {"_id": 1}).sort([("timestamp", -1), ("_id", -1)])}
    assert "00" + seeded[7]["_id"][2:] in ids
    assert "06" + seeded[7]["_id"][2:] in ids or seeded[7]["status"] != "open"


def test_counts_are_exact_with_other_types_in_the_counted_fields(
    patched_server: Any, upstream_server: Any, seeded: list[Doc]
) -> None:
    """Counts whose filter the patch pushes down whole (strings and date ranges) over fields
    that also hold numbers, nulls, strings for dates and missing values."""
    ts = seeded[7]["timestamp"]
    filters = [
        {},
        {"status": "open"},
        {"status": "open", "timestamp": {"$gte": ts - timedelta(days=1), "$lte": ts}},
        {"timestamp": {"$gte": ts, "$lt": NOW}},
        {"card_last4": seeded[7]["card_last4"]},
        {"merchant_id": {"$gte": seeded[7]["merchant_id"]}},
        {"severity": "high", "status": {"$gte": "i", "$lt": "p"}},
        {"timestamp": {"$gte": int(ts.timestamp() * 1000)}},  # a number: not pushed whole
    ]
    for flt in filters:
        cmd = {"count": ALERTS, "query": flt}
        want = upstream_server["scalar_traps"].command(cmd)["n"]
        assert patched_server["scalar_traps"].command(cmd)["n"] == want, flt
        assert want > 0, flt


# Index names the console may hint at, and hints the patch must ignore: a name that is no
# index, and a key-pattern document (MongoDB accepts both; the patch only uses names).
HINTS: list[Any] = [
    None,
    "by_status",
    "by_merchant",
    "by_card",
    "by_severity",
    "no_such_index",
    {"merchant_id": 1, "queue_key": -1},
]


def _hinted_count_filters(seeded: list[Doc]) -> list[Doc]:
    base = seeded[7]
    day = str(base["queue_key"])[:10]
    days = {"$gte": day, "$lt": "2026-11-26"}
    return [
        {"status": "open", "merchant_id": base["merchant_id"], "queue_key": days},
        {"status": "open", "merchant_id": base["merchant_id"]},
        {"merchant_id": base["merchant_id"], "queue_key": {"$lt": day}},
        {"card_token": base["card_token"], "status": "open"},
        {"severity": "high", "status": {"$gte": "i", "$lt": "p"}, "queue_key": days},
        {"status": "open", "timestamp": {"$gte": base["timestamp"], "$lt": NOW}},
        {"merchant_id": {"$gte": base["merchant_id"]}, "severity": "critical"},
        {"status": {"$in": ["open", "investigating"]}, "merchant_id": base["merchant_id"]},
        {"$or": [{"status": "open"}, {"severity": "high"}], "merchant_id": base["merchant_id"]},
        {},
    ]


@pytest.mark.parametrize("db", ["clean", "traps", "scalar_traps"])
def test_counts_with_a_hint_answer_like_upstream(
    patched_server: Any, upstream_server: Any, seeded: list[Doc], db: str
) -> None:
    """A hint only picks the index SQLite walks: whichever index is named (one that serves
    the filter, one whose first key the filter lacks, none at all, a key pattern), and
    whether the count is answered in SQL or by decoding, the answer is upstream's."""
    nonempty = 0
    for flt in _hinted_count_filters(seeded):
        for hint in HINTS:
            cmd: Doc = {"count": ALERTS, "query": flt}
            if hint is not None:
                cmd["hint"] = hint
            want = upstream_server[db].command(cmd)["n"]
            assert patched_server[db].command(cmd)["n"] == want, cmd
            nonempty += want > 0
    assert nonempty > len(HINTS) * 5  # most filters do select something


def _count_plan(client: Any, cmd: Doc) -> tuple[str, Doc]:
    explain = client["clean"].command({"explain": cmd, "verbosity": "queryPlanner"})
    return " ".join(explain["queryPlanner"]["Plan"]), explain


def test_explain_of_a_hinted_count_shows_the_hinted_index(
    patched_server: Any, seeded: list[Doc]
) -> None:
    """The count walks the index its hint names: by_merchant for the console's filtered view,
    and by_status when that is named instead (so it is the hint, not luck, that decides)."""
    base = seeded[7]
    flt = {
        "status": "open",
        "merchant_id": base["merchant_id"],
        "queue_key": {"$gte": str(base["queue_key"])[:10], "$lt": "2026-11-26"},
    }
    for hint, other in (("by_merchant", "by_status"), ("by_status", "by_merchant")):
        plan, explain = _count_plan(patched_server, {"count": ALERTS, "query": flt, "hint": hint})
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
        assert f"_{hint} " in plan + " ", plan
        assert f"_{other} " not in plan + " ", plan
        assert explain["filterPushdown"], plan


def test_an_unusable_hint_leaves_the_count_plan_alone(
    patched_server: Any, seeded: list[Doc]
) -> None:
    """by_card's first key is not in the filter: INDEXED BY it would fail, so it is ignored."""
    flt = {"status": "open", "merchant_id": seeded[7]["merchant_id"]}
    plain, _ = _count_plan(patched_server, {"count": ALERTS, "query": flt})
    for hint in ("by_card", "no_such_index", {"card_token": 1, "queue_key": -1}):
        hinted, _ = _count_plan(patched_server, {"count": ALERTS, "query": flt, "hint": hint})
        assert hinted == plain, hint


def test_every_console_query_uses_an_index_on_the_patched_server(
    patched_server: Any, console_commands: list[Doc]
) -> None:
    counts = 0
    for cmd in console_commands:
        explain = patched_server["clean"].command({"explain": cmd, "verbosity": "queryPlanner"})
        plan = " ".join(explain["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (cmd, plan)
        assert explain["filterPushdown"], cmd
        if "count" in cmd:
            counts += 1
            # the console names the index of the view's most selective filter, and it is used
            assert isinstance(cmd.get("hint"), str), cmd
            assert f"_{cmd['hint']} " in plan + " ", (cmd, plan)
        if "find" in cmd and cmd.get("sort"):
            assert explain["sortPushdown"], (cmd, plan)
            # a partial sort of the last term (rowid, for ties) streams; a whole sort would not
            assert "TEMP B-TREE FOR ORDER BY" not in plan, (cmd, plan)
    assert counts >= 40  # the status tabs of every view and the outcomes per rule


def test_unpatched_server_scans(upstream_server: Any, console_commands: list[Doc]) -> None:
    """The explain test can fail: FerretDB's own build answers the queue with a table scan."""
    cmd = next(c for c in console_commands if "find" in c and c.get("sort"))
    explain = upstream_server["clean"].command({"explain": cmd, "verbosity": "queryPlanner"})
    assert "USING INDEX" not in " ".join(explain["queryPlanner"]["Plan"])
    assert not explain["sortPushdown"]
