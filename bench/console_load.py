"""Load on the analyst console: simulated analysts browse and filter while alerts keep arriving.

    .venv/bin/python -m bench.console_load --alerts 50000 --users 20 --duration 120 \\
        [--json-out results.json]
    .venv/bin/python -m bench.console_load --quick        # 1,000 alerts, 5 users, 20 s

What runs, all on loopback and cleaned up at the end (process group, scratch database):

- a scratch database on the local MongoDB (``MONGODB_URI``), seeded with ``--alerts`` alerts
  over the last 7 days by ``bench.webapp_queries.seed`` (``devtools.demo_data.make_alert_doc``);
- the console under gunicorn (``--workers`` x ``--threads``, gthread) against it;
- a writer thread that keeps adding alerts (``--write-rate`` per second) through
  ``fraudwatch.alert_store.write_alerts``, the function the dataflow's MongoDB sink calls
  (the dataflow itself is not run: its output to MongoDB is exactly these inserts);
- ``--users`` threads, each signing in as its own viewer and then browsing: the queue's first
  page (cases), filters (status, severity, rule, card, merchant, time range), older pages, the live
  poll, case pages, the alert list and alert details, the dashboard and the JSON API, with a
  short think time.

Any answer other than 2xx/3xx, and any exception (timeouts included), is an error; the exit
status is 1 when there is any, or when the overall p95 is not below ``--p95-target`` (1 s,
issue #13's target). Latency is reported per endpoint and overall (p50/p95/p99),
and the console's read-cache lookups (hits, misses, shared) summed over its workers from
``/metrics`` (gunicorn runs with ``PROMETHEUS_MULTIPROC_DIR``).
Client timeouts are long (``--timeout``, 60 s) and the console's MongoDB socket timeout is
raised (``--mongo-timeout-ms``) so that a slow database shows up as latency, not as errors.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.webapp_queries import seed
from devtools.demo_data import MERCHANTS, demo_pan, make_alert_doc
from fraudwatch.alert_store import ALERTS, write_alerts
from fraudwatch.cards import CardTokenizer
from fraudwatch.clients import mongo_client
from fraudwatch.settings import MongoSettings
from fraudwatch.vocabulary import RULE_NAMES, SEVERITIES
from webapp import create_app
from webapp.settings import WebappSettings

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-" + secrets.token_hex(8)
HREF_ALERT = re.compile(r'data-alert-id="([0-9a-f]{24})"')
HREF_CASE = re.compile(r'data-case-id="([0-9a-f]{24})"')
OLDER = re.compile(r'href="([^"]+)" rel="next"')
LIVE = re.compile(r'hx-get="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CACHE_LOOKUP = re.compile(r"^fraudwatch_webapp_read_cache_lookups_total\{([^}]*)\} (\S+)$", re.M)
LABEL = re.compile(r'(\w+)="([^"]*)"')
# A smoke run (seconds, not minutes): the full size is the default.
QUICK = {"alerts": 1000, "users": 5, "duration": 20.0}


@dataclass
class Results:
    """Latencies and errors per endpoint, shared by the user threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            if error is not None:
                self.errors[endpoint].append(error)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Analyst:
    """One simulated user: a cookie jar, a sign-in, then a random walk over the console."""

    def __init__(
        self, base: str, name: str, results: Results, timeout: float, rng: random.Random
    ) -> None:
        self.base, self.name, self.results, self.timeout, self.rng = (
            base,
            name,
            results,
            timeout,
            rng,
        )
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(jar), NoRedirect()
        )
        self.ids: list[str] = []
        self.cases: list[str] = []
        self.older: str | None = None
        self.live: str | None = None
        self.requests = 0

    def get(self, endpoint: str, path: str, data: dict[str, str] | None = None) -> str:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        started = time.perf_counter()
        error: str | None = None
        text = ""
        try:
            with self.opener.open(self.base + path, data=body, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            if not 300 <= exc.code < 400:
                error = f"HTTP {exc.code}"
            exc.read()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.results.record(endpoint, time.perf_counter() - started, error)
        self.requests += 1
        return text

    def sign_in(self) -> None:
        form = self.get("login form", "/login")
        match = CSRF.search(form)
        if match is None:
            raise RuntimeError("the login page has no CSRF token: is the console up?")
        self.get(
            "login",
            "/login",
            {"username": self.name, "password": PASSWORD, "csrf_token": match.group(1)},
        )

    def remember(self, html: str) -> None:
        found = HREF_ALERT.findall(html)
        if found:
            self.ids = found
        cases = HREF_CASE.findall(html)
        if cases:
            self.cases = cases
        older = OLDER.search(html)
        self.older = older.group(1).replace("&amp;", "&") if older else None
        live = LIVE.search(html)
        self.live = live.group(1).replace("&amp;", "&") if live else self.live

    def step(self, hot_card: str) -> None:
        rng = self.rng
        now = datetime.now(UTC)
        choice = rng.choices(
            [
                "queue",
                "queue?status",
                "queue?severity",
                "queue?rule",
                "queue?card",
                "queue?merchant",
                "queue?time",
                "queue older page",
                "queue/live",
                "case detail",
                "alert list",
                "alert detail",
                "dashboard",
                "api/alerts",
                "api/cases",
                "api/stats",
            ],
            weights=[4, 2, 1, 2, 1, 1, 1, 2, 3, 3, 1, 2, 1, 1, 1, 1],
        )[0]
        if choice == "queue":
            self.remember(self.get(choice, "/"))
        elif choice == "queue?status":
            status = rng.choice(("open", "investigating", "confirmed_fraud"))
            self.remember(self.get(choice, f"/?status={status}"))
        elif choice == "queue?severity":
            self.remember(self.get(choice, f"/?severity={rng.choice(SEVERITIES)}"))
        elif choice == "queue?rule":
            self.remember(self.get(choice, f"/?rule={rng.choice(RULE_NAMES)}"))
        elif choice == "queue?card":
            self.remember(self.get(choice, f"/?card={hot_card}"))
        elif choice == "queue?merchant":
            self.remember(self.get(choice, f"/?merchant={rng.choice(MERCHANTS)[0]}"))
        elif choice == "queue?time":
            end = now - timedelta(hours=rng.uniform(0, 144))
            start = end - timedelta(hours=rng.choice((1, 6, 24)))
            span = {"from": start.strftime("%Y-%m-%dT%H:%M"), "to": end.strftime("%Y-%m-%dT%H:%M")}
            self.remember(self.get(choice, "/?" + urllib.parse.urlencode(span)))
        elif choice == "queue older page":
            self.remember(self.get(choice, self.older or "/"))
        elif choice == "queue/live":
            self.get(choice, self.live or "/cases/live")
        elif choice == "case detail" and self.cases:
            self.remember(self.get(choice, f"/cases/{rng.choice(self.cases)}"))
        elif choice == "alert list":
            self.remember(self.get(choice, "/alerts"))
        elif choice == "alert detail" and self.ids:
            self.get(choice, f"/alerts/{rng.choice(self.ids)}")
        elif choice in ("case detail", "alert detail"):
            self.remember(self.get("queue", "/"))
        elif choice == "dashboard":
            self.get(choice, "/dashboard")
        elif choice == "api/alerts":
            self.get(choice, "/api/alerts?limit=50")
        elif choice == "api/cases":
            self.get(choice, "/api/cases?limit=25")
        else:
            self.get(choice, "/api/stats")

    def run(self, deadline: float, max_requests: int, stop: threading.Event, hot: str) -> None:
        self.sign_in()
        while time.monotonic() < deadline and self.requests < max_requests and not stop.is_set():
            self.step(hot)
            stop.wait(self.rng.uniform(0.2, 1.0))  # think time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(base: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:  # noqa: S310 - our URL
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def alert_writer(
    db: Any, tokenizer: CardTokenizer, rate: float, stop: threading.Event, counter: list[int]
) -> None:
    """Alerts arriving while people browse: ``rate`` per second, in one insert a second."""
    rng = random.Random(11)
    seq = 10_000_000
    next_at = time.monotonic()
    carry = 0.0
    while not stop.is_set():
        carry += rate
        batch = []
        for _ in range(int(carry)):
            now = datetime.now(UTC)
            ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
            pan = demo_pan(rng.randrange(20_000))
            batch.append(make_alert_doc(rng, tokenizer, ts=ts, seq=seq, pan=pan))
            seq += 1
        carry -= int(carry)
        if batch:
            counter[0] += write_alerts(db[ALERTS], batch)
        next_at += 1.0
        stop.wait(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summarize(results: Results) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    everything: list[float] = []
    for endpoint in sorted(results.latencies):
        values = results.latencies[endpoint]
        everything += values
        rows[endpoint] = {
            "requests": len(values),
            "errors": len(results.errors.get(endpoint, [])),
            "p50_s": round(percentile(values, 50), 3),
            "p95_s": round(percentile(values, 95), 3),
            "p99_s": round(percentile(values, 99), 3),
            "max_s": round(max(values), 3),
        }
    rows["ALL"] = {
        "requests": len(everything),
        "errors": sum(len(e) for e in results.errors.values()),
        "p50_s": round(percentile(everything, 50), 3),
        "p95_s": round(percentile(everything, 95), 3),
        "p99_s": round(percentile(everything, 99), 3),
        "max_s": round(max(everything, default=float("nan")), 3),
    }
    return rows


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    header = f"{'endpoint':<20} {'requests':>8} {'errors':>6} {'p50 s':>8} {'p95 s':>8} "
    print(header + f"{'p99 s':>8} {'max s':>8}")
    for name, r in rows.items():
        print(
            f"{name:<20} {r['requests']:>8} {r['errors']:>6} {r['p50_s']:>8.3f} "
            f"{r['p95_s']:>8.3f} {r['p99_s']:>8.3f} {r['max_s']:>8.3f}"
        )


def read_cache_lookups(base: str) -> dict[str, dict[str, int]]:
    """{view: {hit|miss|shared: n}} from the console's /metrics (all workers)."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:  # noqa: S310 - our URL
            text = r.read().decode()
    except OSError as exc:
        print(f"  could not read /metrics: {exc}")
        return {}
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for labels, value in CACHE_LOOKUP.findall(text):
        found = dict(LABEL.findall(labels))
        view, result = found.get("view", "?"), found.get("result", "?")
        out[view][result] = out[view].get(result, 0) + int(float(value))
    return dict(out)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of browsing")
    parser.add_argument("--quick", action="store_true", help="1,000 alerts, 5 users, 20 s")
    parser.add_argument("--write-rate", type=float, default=5.0, help="new alerts per second")
    parser.add_argument("--max-requests", type=int, default=5000, help="per user")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout, seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--mongo-timeout-ms", type=int, default=120_000)
    parser.add_argument(
        "--p95-target", type=float, default=1.0, help="seconds; exit 1 when p95 is not below"
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.alerts, args.users, args.duration = QUICK["alerts"], QUICK["users"], QUICK["duration"]

    mongo = MongoSettings()
    db_name = f"console_load_{uuid.uuid4().hex[:10]}"
    client: Any = mongo_client(mongo)
    db = client[db_name]
    token_key = secrets.token_hex(24)
    tokenizer = CardTokenizer(token_key)
    stop = threading.Event()
    proc: subprocess.Popen[bytes] | None = None
    log = Path(tempfile.mkstemp(prefix="console-load-", suffix=".log")[1])
    metrics_dir = tempfile.TemporaryDirectory(prefix="console-load-metrics-")
    writer: threading.Thread | None = None
    written = [0]
    try:
        client.admin.command("ping")
        started = time.monotonic()
        hot_card = seed(db, args.alerts, tokenizer, datetime.now(UTC))
        seed_s = time.monotonic() - started
        print(f"seeded {args.alerts:,} alerts into {db_name} in {seed_s:.1f} s", flush=True)
        env = {
            **os.environ,
            "MONGODB_URI": mongo.mongodb_uri,
            "MONGODB_DATABASE": db_name,
            "MONGODB_TIMEOUT_MS": str(args.mongo_timeout_ms),
            "FRAUD_TOKEN_KEY": token_key,
            "WEBAPP_SECRET_KEY": secrets.token_hex(32),
            "WEBAPP_COOKIE_SECURE": "false",
            "WEBAPP_LOG_LEVEL": "WARNING",
            "WEBAPP_LOGIN_RATE_LIMIT": "10000",
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir.name,
        }
        settings = WebappSettings(
            mongodb_uri=mongo.mongodb_uri,
            mongodb_database=db_name,
            fraud_token_key=token_key,
            webapp_secret_key=env["WEBAPP_SECRET_KEY"],
        )
        access = create_app({"SETTINGS": settings}).extensions["fraudwatch"].access
        names = [f"load{n:02d}" for n in range(args.users)]
        for name in names:
            access.create_user(name, "viewer", PASSWORD)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--workers",
                    str(args.workers),
                    "--threads",
                    str(args.threads),
                    "--worker-class",
                    "gthread",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--timeout",
                    str(int(args.mongo_timeout_ms / 1000) + 60),
                    "webapp:create_app()",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        wait_until_up(base, proc, 60, log)
        writer = threading.Thread(
            target=alert_writer,
            args=(db, tokenizer, args.write_rate, stop, written),
            name="alert-writer",
            daemon=True,
        )
        writer.start()
        results = Results()
        deadline = time.monotonic() + args.duration
        users = [
            Analyst(base, name, results, args.timeout, random.Random(n))
            for n, name in enumerate(names)
        ]
        threads = [
            threading.Thread(
                target=u.run, args=(deadline, args.max_requests, stop, hot_card), daemon=True
            )
            for u in users
        ]
        run_started = time.monotonic()
        print(
            f"{args.users} users browsing for {args.duration:.0f} s on {base} "
            f"(gunicorn {args.workers} workers x {args.threads} threads), "
            f"{args.write_rate:g} new alerts/s",
            flush=True,
        )
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()) + args.timeout * 3 + 30)
        elapsed = time.monotonic() - run_started
        stuck = sum(t.is_alive() for t in threads)
        stop.set()
        rows = summarize(results)
        print_table(rows)
        cache = read_cache_lookups(base)
        for view, counts in sorted(cache.items()):
            print(
                f"  read cache {view:<13} hit {counts.get('hit', 0):>5}  "
                f"miss {counts.get('miss', 0):>5}  shared {counts.get('shared', 0):>5}"
            )
        total = rows["ALL"]
        print(
            f"\n{total['requests']} requests in {elapsed:.1f} s "
            f"({total['requests'] / elapsed:.1f}/s), {total['errors']} errors, "
            f"{written[0]} alerts written during the run, p95 {total['p95_s']:.3f} s "
            f"(target < {args.p95_target:g} s: "
            f"{'met' if total['p95_s'] < args.p95_target else 'NOT met'})"
        )
        for endpoint, errors in results.errors.items():
            for e in sorted(set(errors))[:5]:
                print(f"  error {endpoint}: {e} (x{errors.count(e)})")
        if stuck:
            print(f"  {stuck} user threads were still waiting on a request at the end")
        report = {
            "alerts_seeded": args.alerts,
            "seed_seconds": round(seed_s, 1),
            "users": args.users,
            "duration_s": args.duration,
            "elapsed_s": round(elapsed, 1),
            "write_rate_per_s": args.write_rate,
            "alerts_written_during_run": written[0],
            "gunicorn": {"workers": args.workers, "threads": args.threads},
            "client_timeout_s": args.timeout,
            "mongodb_uri": mongo.mongodb_uri,
            "endpoints": rows,
            "read_cache_lookups": cache,
            "errors": {k: sorted(set(v)) for k, v in results.errors.items()},
            "p95_target_s": args.p95_target,
            "p95_target_met": total["p95_s"] < args.p95_target,
        }
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        return 1 if total["errors"] or stuck or total["p95_s"] >= args.p95_target else 0
    finally:
        stop.set()
        if writer is not None:
            writer.join(timeout=30)
        if proc is not None:
            stop_server(proc)
            tail = log.read_text()[-2000:]
            if "Traceback" in tail or "[ERROR]" in tail:
                print(f"gunicorn log (tail):\n{tail}", file=sys.stderr)
        log.unlink(missing_ok=True)
        metrics_dir.cleanup()
        client.drop_database(db_name)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
