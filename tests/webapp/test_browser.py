"""End to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
sign in, watch a new case arrive live, open it, confirm it as fraud in one step, reload. Also
writes the README screenshots to ``docs/screenshots/``."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from werkzeug.serving import make_server

from devtools.demo_data import seed_demo
from fraudwatch.alert_store import ALERTS, queue_key, write_alerts
from fraudwatch.contract import epoch_ms

from .conftest import PASSWORD, Clock, build_app, make_user
from .model_factories import seed_registry

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The tests always take the screenshots (a blank or broken page would fail to render them);
# `make screenshots` points this at docs/screenshots to refresh the README's pictures, so a
# plain test run does not rewrite tracked files.
SCREENSHOTS = Path(
    os.environ.get("FRAUDWATCH_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / "fraudwatch-screenshots"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (make test does this)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def server(mongo_db: Any) -> Iterator[tuple[str, Any]]:
    """The console on a free local port, in a thread, on this test's database."""
    clock = Clock()
    app = build_app(mongo_db.name, clock=None, webapp_poll_seconds=1)
    svc = app.extensions["fraudwatch"]
    svc.ensure_indexes()
    seed_demo(mongo_db, svc.tokenizer, count=120, minutes=60, now=clock.now)
    make_user(app, "alice", "analyst")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", svc
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" or "Content Security Policy" in msg.text:
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    yield page
    context.close()
    assert problems == [], f"browser console errors (CSP violations?): {problems}"


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#queue-table")).to_be_visible()


def test_analyst_sees_a_new_case_live_and_confirms_it_as_fraud_in_one_step(
    page, server, mongo_db
) -> None:
    base, svc = server
    sign_in(page, base)
    rows = page.locator("#queue-rows tr.row")
    expect(rows.first).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "queue.png"))

    # The dataflow lands a card-testing burst on one new card: three alerts, one case, shown
    # without a reload at the top of the queue.
    newest = mongo_db[ALERTS].find_one(sort=[("timestamp", -1)])
    # "New" means detected after the newest detection the page has seen; seeded alerts may
    # carry detection times slightly ahead of the clock, so land these after all of them.
    last_detected = mongo_db[ALERTS].find_one(sort=[("detected_at", -1)])["detected_at"]
    detected = max(svc.now().replace(tzinfo=None), last_detected) + timedelta(seconds=1)
    burst = []
    for i, suffix in enumerate("abc"):
        alert = dict(newest)
        alert.update(
            _id="f" * 23 + suffix,
            transaction_id=f"tx-live-{i}",
            card_token="c" * 32,
            card_masked="411111******0042",
            card_last4="0042",
            merchant_name="Live Arrival Electronics",
            timestamp=svc.now().replace(microsecond=0) - timedelta(seconds=30 - i * 10),
            detected_at=detected,
            status="open",
            score=1.0 - i / 100,  # today's best: the top of the queue
        )
        alert["queue_key"] = queue_key(epoch_ms(alert["timestamp"]), alert["score"], alert["_id"])
        burst.append(alert)
    assert write_alerts(mongo_db[ALERTS], burst) == 3
    case_id = burst[0]["_id"]  # the case is named after its first alert
    new_row = page.locator(f'#queue-rows tr[data-case-id="{case_id}"]')
    expect(new_row).to_be_visible(timeout=10_000)
    expect(rows.first).to_have_attribute("data-case-id", case_id)
    expect(new_row).to_have_class(re.compile(r"\bis-new\b"))
    expect(page.locator(f'#queue-rows tr[data-case-id="{burst[1]["_id"]}"]')).to_have_count(0)

    new_row.locator("a.case-link").click()
    expect(page).to_have_url(f"{base}/cases/{case_id}")
    expect(page.locator("h1")).to_contain_text("3 alerts")
    expect(page.locator("#case-timeline tr.alerted")).to_have_count(3)
    page.screenshot(path=str(SCREENSHOTS / "case.png"), full_page=True)
    page.fill("textarea[name=comment]", "Cardholder confirmed they did not make these purchases.")
    page.click("button[value=confirmed_fraud]")  # one step from open
    expect(page.locator(".flash-success")).to_contain_text("Confirmed fraud: 3 alerts changed")

    page.reload()
    expect(page.locator("#disposition .status-confirmed_fraud").first).to_be_visible()
    expect(page.locator("#disposition-history")).to_contain_text("alice")
    expect(page.locator("#disposition-history")).to_contain_text("did not make these purchases")
    stored = list(mongo_db[ALERTS].find({"card_token": "c" * 32}))
    assert {d["status"] for d in stored} == {"confirmed_fraud"}  # the siblings closed with it
    assert {d["case_id"] for d in stored} == {case_id}


def test_detail_and_dashboard_render_and_are_captured(page, server, mongo_db) -> None:
    base, _ = server
    sign_in(page, base)
    pick = mongo_db[ALERTS].find_one(
        {"rules": "impossible_travel", "status": "open"}, sort=[("timestamp", -1)]
    ) or mongo_db[ALERTS].find_one({}, sort=[("timestamp", -1)])
    page.goto(f"{base}/alerts/{pick['_id']}")
    expect(page.locator("svg.map")).to_be_visible()
    expect(page.locator("table.reasons tbody tr")).to_have_count(len(pick["reasons"]))
    page.screenshot(path=str(SCREENSHOTS / "detail.png"), full_page=True)

    page.goto(f"{base}/dashboard")
    expect(page.locator("body[data-charts=ready]")).to_be_attached()
    expect(page.locator("#kpi-alerts")).not_to_have_text("0")
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_filters_survive_live_refresh_in_the_browser(page, server, mongo_db) -> None:
    base, svc = server
    sign_in(page, base)
    page.goto(f"{base}/alerts")
    page.select_option("select[name=severity]", "critical")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(f"{base}/alerts?severity=critical")
    before = page.locator("#queue-rows tr.row").count()
    newest = dict(mongo_db[ALERTS].find_one({"severity": "critical"}))
    low = dict(newest, _id="e" * 24, severity="low", timestamp=svc.now() - timedelta(seconds=1))
    crit = dict(newest, _id="d" * 24, timestamp=svc.now() - timedelta(seconds=2))
    write_alerts(mongo_db[ALERTS], [low, crit])
    expect(page.locator(f'tr[data-alert-id="{"d" * 24}"]')).to_be_visible(timeout=10_000)
    expect(page.locator(f'tr[data-alert-id="{"e" * 24}"]')).to_have_count(0)
    expect(page.locator("select[name=severity]")).to_have_value("critical")
    assert page.locator("#queue-rows tr.row").count() == min(before + 1, 50)


def test_model_health_charts_and_the_drift_banner_render(page, server, mongo_db) -> None:
    base, _ = server
    seed_registry(mongo_db, drift_on="2026-10-10")
    sign_in(page, base)
    banner = page.locator("#drift-banner")
    expect(banner).to_be_visible()  # on the queue
    expect(banner).to_contain_text("2026-10-10")
    page.click("nav.mainnav >> text=Model health")
    expect(page).to_have_url(f"{base}/model")
    expect(page.locator("body[data-charts=ready]")).to_be_attached()
    for chart in ("versions", "budget", "precision"):
        canvas = page.locator(f"#chart-{chart}")
        expect(canvas).to_be_visible()
        assert canvas.bounding_box()["height"] > 100, chart
    expect(page.locator("#current-model")).to_contain_text("gbm-20261012-a1b2c3")
    expect(page.locator("#model-versions tr.version-row")).to_have_count(4)
    expect(banner).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "model.png"), full_page=True)
