"""Card-number scan (issue #7, item 9): after a full run, no card number the run used is
anywhere but the input and dead-letter topics.

The run: the producer sends realistic traffic with fraud and 1% malformed records to Kafka,
the dataflow processes it with recovery on (``python -m dataflows.run``), the console serves
every view of the run's alerts. Then every card number of the replay file is searched for, as
its exact digits and also inside longer strings and digit runs, in:

- every document of every collection of the run's MongoDB database (as extended JSON);
- every message (key and value) on the alerts topic;
- the stdout/stderr of the producer and of the dataflow, and every log line of the console;
- every HTML page (queue pages, alert details, dashboard) and API response (list pages,
  details, stats) of the console;
- every file of the recovery directory (raw bytes, also UTF-16).

The scanner is shown to find a planted card number in each kind of place, so a clean result
means something.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bson import json_util
from confluent_kafka import Producer
from flask.testing import FlaskClient

from devtools.stack import REPO_ROOT
from fraudwatch import clients
from tests.chaos import scale
from tests.integration.pipeline import PipelineEnv, consume_all
from tests.webapp.conftest import Clock, build_app, login, make_user
from webapp.views.ops import ACCESS_LOGGER, APP_LOGGER, JsonFormatter

RECORDS = scale(5_000, 15_000)  # full: ~360 alerts, every one opened (~1 s a page on FerretDB)
DETAIL_SAMPLE = scale(200, 1_000_000)  # reduced: up to 200 alerts (~120: all); full: all
START = "2026-11-20T00:00:00Z"

_ASCII_DIGITS = re.compile(rb"[0-9]{12,}")
_UTF16LE_DIGITS = re.compile(rb"(?:[0-9]\x00){12,}")
_UTF16BE_DIGITS = re.compile(rb"(?:\x00[0-9]){12,}")
_CARD_FIELD = re.compile(rb"""['"]card_number['"]\s*:\s*['"]?([0-9]{12,19})""")


class PanScanner:
    """Finds any of a set of card numbers in text or bytes: exact digits, also as part of a
    longer digit run or string (``x4111...``, ``04111...9``), and in UTF-16 either way."""

    def __init__(self, pans: Iterable[str]) -> None:
        self.pans = frozenset(pans)
        self.lengths = sorted({len(p) for p in self.pans})
        self.hits: list[tuple[str, str]] = []
        self.scanned: Counter[str] = Counter()

    def find(self, data: bytes | str) -> set[str]:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        runs = [m.group() for m in _ASCII_DIGITS.finditer(raw)]
        runs += [m.group()[::2] for m in _UTF16LE_DIGITS.finditer(raw)]
        runs += [m.group()[1::2] for m in _UTF16BE_DIGITS.finditer(raw)]
        found = set()
        for run in runs:
            digits = run.decode()
            for n in self.lengths:
                for i in range(len(digits) - n + 1):
                    if digits[i : i + n] in self.pans:
                        found.add(digits[i : i + n])
        return found

    def scan(self, place: str, where: str, data: bytes | str) -> None:
        """Record every card number in ``data``; ``place`` is the kind, ``where`` the item."""
        self.scanned[place] += 1
        self.hits += [(f"{place}: {where}", pan) for pan in sorted(self.find(data))]


def card_numbers(replay: Path) -> set[str]:
    """Every card number in the replay file: the ``card_number`` of each record, including
    those of malformed records (a Python repr, broken JSON, a list of the values)."""
    pans: set[str] = set()
    for line in replay.read_bytes().splitlines():
        pans.update(m.group(1).decode() for m in _CARD_FIELD.finditer(line))
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, list):  # not_an_object: the values without their names
            pans.update(v for v in value if isinstance(v, str) and v.isdigit() and len(v) >= 12)
    return pans


def mongo_documents(db: Any) -> Iterator[tuple[str, str]]:
    for name in db.list_collection_names():
        for doc in db[name].find():
            yield f"{name}/{doc.get('_id')}", json_util.dumps(doc)


def files_under(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield str(path.relative_to(root)), path.read_bytes()


class LogCapture(logging.Handler):
    """Every console log line, formatted as the console's own handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def console_responses(client: FlaskClient, sample: int) -> Iterator[tuple[str, bytes]]:
    """Every queue page, the dashboard, the detail page and API detail of up to ``sample``
    alerts, every API list page and the stats: (url, body), each checked for status 200."""

    def get(url: str) -> bytes:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return bytes(response.data)

    url: str | None = "/"
    while url is not None:
        body = get(url)
        yield url, body
        older = re.search(rb'href="([^"]+)" rel="next"', body)
        url = html.unescape(older.group(1).decode()) if older else None
    yield "/dashboard", get("/dashboard")
    yield "/api/stats", get("/api/stats?minutes=1440")
    ids: list[str] = []
    cursor = ""
    while True:
        url = f"/api/alerts?limit=200{cursor}"
        body = get(url)
        yield url, body
        page = orjson.loads(body)
        ids += [a["id"] for a in page["alerts"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert ids, "the console lists the run's alerts"
    step = max(1, len(ids) // sample)
    for alert_id in ids[::step][:sample]:
        yield f"/alerts/{alert_id}", get(f"/alerts/{alert_id}")
        yield f"/api/alerts/{alert_id}", get(f"/api/alerts/{alert_id}")


def run_logged(cmd: list[str], log: Path, env: dict[str, str], timeout: float) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]


@pytest.mark.timeout(scale(300, 1800))
def test_no_card_number_leaves_the_input_and_dead_letter_topics(
    pipe: PipelineEnv,
    mongo_client: Any,
    tmp_path: Path,
) -> None:
    replay, recovery = tmp_path / "replay.jsonl", tmp_path / "recovery"
    producer_log, dataflow_log = tmp_path / "producer.log", tmp_path / "dataflow.log"
    env = pipe.env(FRAUD_STOP_AT_END="1", FRAUD_STATS_FLUSH_S="600")
    generate = [
        *(sys.executable, "-m", "producer", "generate", "--rate=max", f"--count={RECORDS}"),
        *(f"--cards={RECORDS // 10}", "--seed=11", f"--start={START}", "--bad-ratio=0.01"),
        *(f"--out={replay}", f"--topic={pipe.tx}", f"--bootstrap-servers={pipe.bootstrap}"),
    ]
    run_logged(generate, producer_log, env, timeout=300)
    dataflow = [sys.executable, "-m", "dataflows.run", f"--recovery-dir={recovery}"]
    run_logged([*dataflow, "--snapshot-interval=1"], dataflow_log, env, timeout=scale(240, 900))

    db = mongo_client[pipe.db]
    newest = db.alerts.find_one(sort=[("timestamp", -1)])
    assert newest is not None, "the run raised alerts"
    clock = Clock()
    clock.now = newest["timestamp"].replace(tzinfo=UTC) + timedelta(minutes=1)
    app = build_app(pipe.db, clock)
    client = app.test_client()
    make_user(app, "alice", "analyst")
    assert login(client, "alice").status_code == 302
    capture = LogCapture()
    loggers = [logging.getLogger(n) for n in (APP_LOGGER, ACCESS_LOGGER, "werkzeug")]
    for logger in loggers:
        logger.addHandler(capture)
    try:
        responses = list(console_responses(client, DETAIL_SAMPLE))
    finally:
        for logger in loggers:
            logger.removeHandler(capture)

    pans = card_numbers(replay)
    assert len(pans) > RECORDS // 20
    scanner = PanScanner(pans)
    for where, text in mongo_documents(db):
        scanner.scan("mongodb", where, text)
    for i, (key, value) in enumerate(consume_all(pipe.bootstrap, pipe.alerts, timeout=60)):
        scanner.scan("fraud-alerts", f"message {i}", (key or b"") + b"\n" + value)
    for log in (producer_log, dataflow_log):
        scanner.scan("logs", log.name, log.read_bytes())
    scanner.scan("logs", "console", "\n".join(capture.lines))
    for url, body in responses:
        scanner.scan("console", url, body)
    for name, data in files_under(recovery):
        scanner.scan("recovery", name, data)

    alerts = db.alerts.count_documents({})
    assert scanner.scanned["mongodb"] > alerts
    assert scanner.scanned["fraud-alerts"] == alerts
    assert scanner.scanned["console"] >= 2 * min(alerts, DETAIL_SAMPLE)
    assert scanner.scanned["recovery"] >= 4
    assert capture.lines, "the console logged its requests"
    assert scanner.hits == [], scanner.hits[:10]

    # The scanner is honest: a card number planted in each kind of place is found.
    pan = sorted(pans)[len(pans) // 2]
    planted = PanScanner(pans)
    db["planted"].insert_one({"note": f"ref:{pan}x", "nested": [{"n": f"00{pan}99"}]})
    for where, text in mongo_documents(db):
        planted.scan("mongodb", where, text)
    producer = Producer(clients.kafka_config(pipe.kafka))
    producer.produce(pipe.alerts, b"{}", pan.encode())
    assert producer.flush(30) == 0
    for i, (key, value) in enumerate(consume_all(pipe.bootstrap, pipe.alerts, timeout=60)):
        planted.scan("fraud-alerts", f"message {i}", (key or b"") + b"\n" + value)
    copy = tmp_path / "recovery-copy"
    shutil.copytree(recovery, copy)
    part = next(copy.glob("part-*.sqlite3"))
    with sqlite3.connect(part) as conn:
        conn.execute("CREATE TABLE planted (v BLOB)")
        conn.execute("INSERT INTO planted VALUES (?)", (pan.encode("utf-16-le"),))
    for name, data in files_under(copy):
        planted.scan("recovery", name, data)
    planted.scan("logs", "console", capture.lines[0] + f' "card": "{pan}"')
    planted.scan("console", "page", f"<td>{pan[:6]}&nbsp;{pan}</td>")
    assert {place.split(":")[0] for place, p in planted.hits if p == pan} == {
        "mongodb",
        "fraud-alerts",
        "recovery",
        "logs",
        "console",
    }
