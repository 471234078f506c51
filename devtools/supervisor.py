"""``make run``: the local stack plus the whole pipeline, in one terminal; Ctrl-C stops it all.

Starts the stack (unless KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI point elsewhere), then every
component that exists in this checkout: the web app, the dataflow with recovery on and the
trainer. On the first run (no ``.stack/run/seeded`` yet) it replays a labelled history while
they start: ``FRAUDWATCH_SEED_DAYS`` (24) simulated days of traffic with their chargebacks,
ending now, sent at full speed, so the trainer has labelled days to learn from and the queue
fills while you watch; the live producer starts once the history is sent. When the console
answers, one block says where it is, how to log in and what to try first; a line follows when
the queue shows its first cases. Component output is prefixed and interleaved on this
terminal. Whatever this process started, it stops on Ctrl-C / SIGTERM, the stack included.

Every listener binds 127.0.0.1 unless configured otherwise (``WEBAPP_HOST``/``WEBAPP_PORT``,
``FRAUD_METRICS_HOST``/``FRAUD_METRICS_PORT``, ``TRAINER_METRICS_HOST``/``TRAINER_METRICS_PORT``).
While it runs, ``.stack/run/webapp.env`` holds the console's settings of this run, so the
console's CLI (``.venv/bin/flask --app webapp ...``) works next to it as the README writes it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from devtools.stack import REPO_ROOT, LocalStack, StackError, _external
from fraudwatch.settings import KafkaSettings, MongoSettings, TokenSettings

RUN_DIR = REPO_ROOT / ".stack" / "run"
SEEDED = RUN_DIR / "seeded"
# The console's settings of the running `make run`, read by `flask --app webapp ...`
# (webapp.settings.DEV_ENV_FILE); removed when the run stops.
WEBAPP_ENV = RUN_DIR / "webapp.env"

# Chargebacks within minutes (not days) for the demo: the dataflow learns while you watch.
DEMO_LABELS = ("--send-chargebacks", "--chargeback-delay-days", "0.002,0.02")
DEV_USER = "dev"
# Cards in the replayed history: 2,000 make about 5,300 transactions a simulated day, so 24
# days are sent and scored in well under a minute and the queue shows alerts within one
# (4,000 took 65 s on a loaded machine); still about 50 labelled frauds a day to train on.
SEED_CARDS = 2000


class RunSettings(KafkaSettings, MongoSettings, TokenSettings):
    """What ``make run`` needs beyond the shared settings: ports, and how much history."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Simulated days of labelled history replayed on the first run (0 = none). The trainer's
    # first model needs 21 (14 days whose labels are final + the 7-day label delay).
    fraudwatch_seed_days: float = Field(default=24, ge=0, le=120)
    webapp_host: str = "127.0.0.1"
    webapp_port: int = Field(default=5000, gt=0, le=65_535)
    # The dataflow's and the trainer's Prometheus endpoints (0 = off).
    fraud_metrics_host: str = "127.0.0.1"
    fraud_metrics_port: int = Field(default=3030, ge=0, le=65_535)
    trainer_metrics_host: str = "127.0.0.1"
    trainer_metrics_port: int = Field(default=3031, ge=0, le=65_535)

    @property
    def console_url(self) -> str:
        return f"http://{self.webapp_host}:{self.webapp_port}"


def backfill_queue_keys(mongo: MongoSettings) -> int:
    """Alerts from before the queue key (an older checkout's stack) join the queue."""
    from fraudwatch import alert_store
    from fraudwatch.clients import mongo_client

    with mongo_client(mongo) as client:
        return alert_store.backfill_queue_keys(client[mongo.mongodb_database][alert_store.ALERTS])


def seed_argv(days: float, now: float) -> list[str]:
    """The producer command that sends ``days`` of labelled history ending at ``now``."""
    start_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - days * 86_400))
    return [
        sys.executable, "-m", "producer", "generate", "--rate", "max", "--cards", str(SEED_CARDS),
        "--seed", "2026", "--start", start_text, "--days", f"{days:g}", "--bad-ratio", "0",
        "--fraud-ratio", "0.01", "--send-chargebacks", "--log-interval", "10",
    ]  # fmt: skip


@dataclass(frozen=True)
class Component:
    name: str
    module: str  # must be importable for the component to start
    argv: list[str]
    env: dict[str, str]


def webapp_env(settings: RunSettings, secret_key: str) -> dict[str, str]:
    """The console's settings of this run: what the running app and its CLI share."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LABELS_TOPIC": settings.labels_topic,
        "MONGODB_URI": settings.mongodb_uri,
        "MONGODB_DATABASE": settings.mongodb_database,
        "WEBAPP_SECRET_KEY": secret_key,
    }
    if settings.fraud_token_key is not None:
        env["FRAUD_TOKEN_KEY"] = settings.fraud_token_key.get_secret_value()
    return env


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """``KEY=value`` lines, readable by the owner only (the file holds a session key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# written by `make run` for `flask --app webapp ...`; removed when it stops\n")
        out.writelines(f"{key}={value}\n" for key, value in values.items())


def components(settings: RunSettings, dev_password: str) -> list[Component]:
    """The long-running components in start order (the console first: it is quickest)."""
    py = sys.executable
    recovery = RUN_DIR / "recovery"
    return [
        Component(
            "webapp",
            "webapp:create_app",
            [
                py,
                "-m",
                "flask",
                "--app",
                "webapp",
                "run",
                "--host",
                settings.webapp_host,
                "--port",
                str(settings.webapp_port),
            ],
            {"WEBAPP_CREATE_DEV_USER": "1", "WEBAPP_DEV_PASSWORD": dev_password},
        ),
        Component(
            "dataflow",
            "dataflows.fraud",
            [py, "-m", "dataflows.run", "--recovery-dir", str(recovery)],
            {
                "FRAUD_METRICS_HOST": settings.fraud_metrics_host,
                "FRAUD_METRICS_PORT": str(settings.fraud_metrics_port),
            },
        ),
        Component(
            "trainer",
            "dataflows.trainer",
            [py, "-m", "dataflows.trainer"],
            {
                "TRAINER_METRICS_HOST": settings.trainer_metrics_host,
                "TRAINER_METRICS_PORT": str(settings.trainer_metrics_port),
            },
        ),
    ]


def live_producer() -> Component:
    # 10 tx/s over 20,000 cards keeps each card's pace plausible on the wall clock (at 200
    # tx/s over 5,000 cards, 96% of genuine traffic looked like a velocity burst).
    return Component(
        "producer",
        "producer.cli",
        [sys.executable, "-m", "producer", "generate", "--rate", "10", "--cards", "20000",
         *DEMO_LABELS],
        {},
    )  # fmt: skip


def ready_block(settings: RunSettings, password: str, *, seeding: bool) -> str:
    """What a new user needs once the console answers: where, who, what to try first."""
    url = settings.console_url
    metrics = []
    if settings.fraud_metrics_port:
        host, port = settings.fraud_metrics_host, settings.fraud_metrics_port
        metrics.append(f"http://{host}:{port}/metrics (dataflow)")
    if settings.trainer_metrics_port:
        host, port = settings.trainer_metrics_host, settings.trainer_metrics_port
        metrics.append(f"http://{host}:{port}/metrics (trainer)")
    history = (
        ["the labelled history is being replayed: the queue fills within a",
         "               minute (a line below says when), then live traffic (10 tx/s) follows"]
        if seeding
        else ["live traffic (10 tx/s) adds alerts within seconds"]
    )  # fmt: skip
    rule = "=" * 78
    lines = [
        rule,
        "fraudwatch is running",
        f"  console      {url}",
        f"  log in as    {DEV_USER} / {password}   (analyst; a new password every run)",
        "  try first    the case queue: open the top case (a card's alerts together), read",
        "               its timeline and why each alert fired, then confirm fraud or mark a",
        "               false positive in one step (every alert in the case gets the verdict,",
        "               and the labels go back to the model); then Dashboard and Model health",
        f"  meanwhile    {history[0]}",
        *history[1:],
        "  API token    .venv/bin/flask --app webapp create-token dev",
        *(["  metrics      " + ", ".join(metrics)] if metrics else []),
        "  stop         Ctrl-C (stops everything this command started)",
        rule,
    ]
    return "\n".join(lines) + "\n"


def console_answers(url: str) -> bool:
    """True when the console's ``/healthz`` says it and MongoDB are up."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


def announce_when_ready(
    is_ready: Callable[[], bool],
    block: Callable[[], str],
    out: TextIO,
    *,
    stopping: threading.Event,
    timeout_s: float = 120.0,
    poll_s: float = 0.5,
) -> bool:
    """Print ``block()`` once ``is_ready()`` holds; never before. False when it never did
    (stopped, or ``timeout_s`` passed: then a line says what to look at)."""
    deadline = time.monotonic() + timeout_s
    while not stopping.is_set():
        if is_ready():
            out.write(block())
            out.flush()
            return True
        if time.monotonic() > deadline:
            out.write(f"[run] the console did not answer within {timeout_s:.0f}s: see the "
                      "[webapp] lines above\n")  # fmt: skip
            out.flush()
            return False
        stopping.wait(poll_s)
    return False


def queue_has_alerts(mongo: MongoSettings) -> bool:
    """True once the console's queue (its default view: the days of the queue window) shows
    an alert; older history is in the store but not in the queue."""
    from datetime import UTC, datetime, timedelta

    from fraudwatch import alert_store
    from fraudwatch.clients import mongo_client
    from webapp.queries import AlertQuery
    from webapp.settings import WebappSettings

    window = timedelta(hours=WebappSettings().webapp_queue_window_hours)
    queue = AlertQuery().mongo_filter(datetime.now(UTC), window)
    try:
        with mongo_client(mongo, serverSelectionTimeoutMS=2000) as client:
            found = client[mongo.mongodb_database][alert_store.ALERTS].find_one(queue, {"_id": 1})
    except Exception:  # a probe: the next one asks again
        return False
    return found is not None


def _available(target: str) -> bool:
    """True when ``pkg.module`` exists, or ``pkg:attr`` exists and has that attribute."""
    module, _, attr = target.partition(":")
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return not attr or hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def _pump(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.stdout is None:
        return
    for line in iter(proc.stdout.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _start(comp: Component) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        comp.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **comp.env, "PYTHONUNBUFFERED": "1"},
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    threading.Thread(target=_pump, args=(comp.name, proc), daemon=True).start()
    return proc


def main() -> int:
    """Run the pipeline until Ctrl-C."""
    t0 = time.monotonic()
    settings = RunSettings()
    ext_kafka, ext_mongo = _external(settings, settings)
    stack = LocalStack()
    try:
        started = stack.up(kafka=not ext_kafka, mongo=not ext_mongo)
    except StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr)
        return 1
    print(f"[run] stack ready (started: {', '.join(started) or 'nothing, already up'})")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if done := backfill_queue_keys(settings):
        print(f"[run] {done} alerts from an older release given their queue key")
    shared = webapp_env(settings, secrets.token_hex(32))
    write_env_file(WEBAPP_ENV, shared)
    dev_password = secrets.token_urlsafe(12)
    seed_days = 0.0 if SEEDED.exists() else settings.fraudwatch_seed_days
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    seed: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    try:
        for comp in components(settings, dev_password):
            if not _available(comp.module):
                print(f"[run] {comp.name}: not in this checkout yet, skipped")
                continue
            comp_env = {**comp.env, **shared} if comp.name == "webapp" else comp.env
            procs.append(
                (comp.name, _start(Component(comp.name, comp.module, comp.argv, comp_env)))
            )
        if seed_days > 0:
            print(f"[run] replaying {seed_days:g} days of labelled history at full speed "
                  "(first run only; `make clean-stack` starts over)")  # fmt: skip
            seed_comp = Component("seed", "producer.cli", seed_argv(seed_days, time.time()), {})
            seed = _start(seed_comp)
        watcher = threading.Thread(
            target=_watch_readiness,
            args=(settings, dev_password, seed is not None, stopping, t0),
            daemon=True,
        )
        if any(name == "webapp" for name, _ in procs):
            watcher.start()
        producer = live_producer()
        while not stopping.is_set():
            if seed is not None and seed.poll() is not None:
                if seed.returncode != 0:
                    print(f"[run] replaying the history failed ({seed.returncode}); stopping")
                    stopping.set()
                    break
                SEEDED.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
                print(f"[run] history sent in {time.monotonic() - t0:.0f}s; live traffic starts")
                seed = None
            if seed is None and _available(producer.module) and producer.name not in dict(procs):
                procs.append((producer.name, _start(producer)))
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"[run] {name} exited with {proc.returncode}; stopping the rest")
                    stopping.set()
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        everything = procs + ([("seed", seed)] if seed is not None else [])
        for _, proc in everything:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in everything:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"[run] {name} did not stop in 20s; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
        WEBAPP_ENV.unlink(missing_ok=True)
        stack.stop(started)
        print("[run] stopped")
    failed = [n for n, p in procs if p.returncode not in (0, -signal.SIGTERM, 130)]
    return 1 if failed else 0


def _watch_readiness(
    settings: RunSettings, password: str, seeding: bool, stopping: threading.Event, t0: float
) -> None:
    """The ready block once the console answers, then one line when the queue has alerts."""
    url = settings.console_url
    ready = announce_when_ready(
        lambda: console_answers(url),
        lambda: ready_block(settings, password, seeding=seeding),
        sys.stdout,
        stopping=stopping,
    )
    while ready and not stopping.is_set():
        if queue_has_alerts(settings):
            print(f"[run] the queue has cases ({time.monotonic() - t0:.0f}s after start): "
                  f"{url}  (log in as {DEV_USER} / {password})", flush=True)  # fmt: skip
            return
        stopping.wait(2)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
