"""Brute-force state lives in MongoDB: a lockout holds across gunicorn worker processes."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import PASSWORD, TOKEN_KEY, build_app, make_user

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attempt_login(base: str, user: str, password: str) -> tuple[int, str]:
    """One sign-in from a fresh browser session: GET the form, POST it."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    html = opener.open(f"{base}/login", timeout=20).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    data = urllib.parse.urlencode({"username": user, "password": password, "csrf_token": token})
    try:
        response = opener.open(f"{base}/login", data=data.encode(), timeout=20)
        return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def gunicorn(mongo_db):
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_DATABASE": mongo_db.name,
        "WEBAPP_SECRET_KEY": "s" * 48,
        "FRAUD_TOKEN_KEY": TOKEN_KEY,
        "WEBAPP_COOKIE_SECURE": "false",
        "WEBAPP_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
            "webapp:create_app()",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).read()  # noqa: S310 - our own http URL
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield base, proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def fail_logins(base: str, count: int) -> None:
    # Pairs of concurrent attempts, so both sync workers take some of them.
    with ThreadPoolExecutor(2) as pool:
        for _ in range(count // 2):
            codes = list(pool.map(lambda _: attempt_login(base, "alice", "wrong")[0], range(2)))
            assert codes == [401, 401]


def test_account_lockout_holds_across_gunicorn_workers_and_their_restart(
    mongo_db, gunicorn
) -> None:
    base, proc = gunicorn
    make_user(build_app(mongo_db.name), "alice", "analyst")
    wait_for(lambda: len(workers(proc.pid)) == 2, 30, "two workers")
    fail_logins(base, 6)
    # Replace every worker process: whatever they kept in memory is gone now.
    before = workers(proc.pid)
    proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: len(workers(proc.pid) - before) == 2 and not workers(proc.pid) & before,
        60,
        "gunicorn to replace both workers",
    )
    fail_logins(base, 2)
    assert attempt_login(base, "alice", "wrong")[0] == 401
    status, html = attempt_login(base, "alice", "wrong")
    assert status == 401
    assert "locked" in html
    status, html = attempt_login(base, "alice", PASSWORD)
    assert status == 401
    assert "locked" in html
