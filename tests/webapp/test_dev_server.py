"""One log line per request under the development server (``flask run``, ``make run``).

No database: the sign-in page is served without one.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from webapp import create_app
from webapp.dev_server import DropRequestLines
from webapp.settings import WebappSettings
from webapp.views.ops import ACCESS_LOGGER


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app() -> Flask:
    settings = WebappSettings(
        _env_file=None,
        mongodb_uri="mongodb://127.0.0.1:9",  # never reached by these requests
        mongodb_timeout_ms=200,
        webapp_secret_key="s" * 40,
        webapp_publish_labels=False,
    )
    return create_app({"TESTING": True, "SETTINGS": settings})


@pytest.fixture
def logs() -> Iterator[dict[str, Records]]:
    found = {"werkzeug": Records(), "access": Records()}
    werkzeug_logger, access = logging.getLogger("werkzeug"), logging.getLogger(ACCESS_LOGGER)
    werkzeug_logger.addHandler(found["werkzeug"])
    access.addHandler(found["access"])
    yield found
    werkzeug_logger.removeHandler(found["werkzeug"])
    access.removeHandler(found["access"])


def _request_lines(records: Records, path: str) -> list[logging.LogRecord]:
    return [r for r in records.records if path in r.getMessage()]


def test_the_development_server_logs_each_request_once(
    app: Flask, logs: dict[str, Records]
) -> None:
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/login?next=/"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()
        thread.join(5)
    access = [r for r in logs["access"].records if r.fields["path"] == "/login"]
    assert len(access) == 1
    # Werkzeug's own line ("GET /login?next=/ HTTP/1.1" 200 -) is dropped.
    assert _request_lines(logs["werkzeug"], "/login") == []


def test_the_test_client_logs_one_access_line_per_request(
    app: Flask, logs: dict[str, Records]
) -> None:
    client = app.test_client()
    for _ in range(3):
        assert client.get("/login").status_code == 200
    assert len(logs["access"].records) == 3


def test_werkzeug_errors_and_its_startup_line_still_pass() -> None:
    keep = DropRequestLines()

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("werkzeug", level, __file__, 1, msg, args, None)

    request_line = '127.0.0.1 - - [05/Dec/2026 08:02:52] "%s" %s %s'
    assert not keep.filter(record(logging.INFO, request_line, "GET / HTTP/1.1", "200", "-"))
    assert keep.filter(record(logging.ERROR, "127.0.0.1 - - [x] code %d, message %s", 400, "x"))
    assert keep.filter(record(logging.INFO, " * Running on %s", "http://127.0.0.1:5000"))
