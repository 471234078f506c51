"""``make run``: the local stack plus the whole pipeline, in one terminal; Ctrl-C stops it all.

Starts the stack (unless KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI point elsewhere). On the first
run (nothing under ``.stack/run`` yet) it seeds a labelled history: ``FRAUDWATCH_SEED_DAYS``
(24) simulated days of traffic with their chargebacks, ending now, sent at full speed, so the
trainer has labelled days to learn from and the console shows a queue, a trained model and its
health within minutes. Then every component that exists in this checkout: the dataflow with
recovery on, the trainer, the producer at a moderate rate and the web app. Their output is
prefixed and interleaved on this terminal. Whatever this process started, it stops on Ctrl-C /
SIGTERM, the stack included.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from devtools.stack import REPO_ROOT, LocalStack, StackError, _external
from fraudwatch.settings import KafkaSettings, MongoSettings

RUN_DIR = REPO_ROOT / ".stack" / "run"


# Chargebacks within minutes (not days) for the demo: the dataflow learns while you watch.
DEMO_LABELS = ("--send-chargebacks", "--chargeback-delay-days", "0.002,0.02")
SEEDED = RUN_DIR / "seeded"


def backfill_queue_keys() -> int:
    """Alerts from before the queue key (an older checkout's stack) join the queue."""
    import pymongo

    from fraudwatch import alert_store

    mongo = MongoSettings()
    timeout = mongo.mongodb_timeout_ms
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(mongo.mongodb_uri, serverSelectionTimeoutMS=timeout) as client:
        return alert_store.backfill_queue_keys(client[mongo.mongodb_database][alert_store.ALERTS])


def seed_history(days: float) -> int:
    """Send ``days`` of labelled history ending now (at full speed); 0 when done or skipped."""
    if days <= 0 or SEEDED.exists():
        return 0
    start = time.time() - days * 86_400
    start_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    print(f"[run] seeding {days:g} days of labelled history ending now (first run only) ...")
    proc = subprocess.run(
        [sys.executable, "-m", "producer", "generate", "--rate", "max", "--cards", "4000",
         "--seed", "2026", "--start", start_text, "--days", f"{days:g}", "--bad-ratio", "0",
         "--fraud-ratio", "0.01",
         "--send-chargebacks", "--log-interval", "30"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
    )  # fmt: skip
    if proc.returncode == 0:
        SEEDED.write_text(start_text + "\n")
    return proc.returncode


@dataclass(frozen=True)
class Component:
    name: str
    module: str  # must be importable for the component to start
    argv: list[str]
    env: dict[str, str]


def _components() -> list[Component]:
    py = sys.executable
    recovery = RUN_DIR / "recovery"
    return [
        Component(
            "dataflow",
            "dataflows.fraud",
            [py, "-m", "dataflows.run", "--recovery-dir", str(recovery)],
            {
                "BYTEWAX_DATAFLOW_API_ENABLED": "1",
                "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(RUN_DIR),  # a directory
            },
        ),
        Component(
            "trainer",
            "dataflows.trainer",
            [py, "-m", "dataflows.trainer"],
            {},
        ),
        Component(
            "producer",
            "producer.cli",
            # 10 tx/s over 20,000 cards keeps each card's pace plausible on the wall clock (at
            # 200 tx/s over 5,000 cards, 96% of genuine traffic looked like a velocity burst).
            [py, "-m", "producer", "generate", "--rate", "10", "--cards", "20000", *DEMO_LABELS],
            {},
        ),
        Component(
            "webapp",
            "webapp:create_app",
            [py, "-m", "flask", "--app", "webapp", "run", "--port", "5000"],
            {"WEBAPP_CREATE_DEV_USER": "1"},
        ),
    ]


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


def main() -> int:
    """Run the pipeline until Ctrl-C."""
    ext_kafka, ext_mongo = _external(KafkaSettings(), MongoSettings())
    stack = LocalStack()
    try:
        started = stack.up(kafka=not ext_kafka, mongo=not ext_mongo)
    except StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr)
        return 1
    print(f"[run] stack ready (started: {', '.join(started) or 'nothing, already up'})")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if done := backfill_queue_keys():
        print(f"[run] {done} alerts from an older release given their queue key")
    if seed_history(float(os.environ.get("FRAUDWATCH_SEED_DAYS", "24"))) != 0:
        print("[run] seeding the history failed; stopping", file=sys.stderr)
        stack.stop(started)
        return 1
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    try:
        for comp in _components():
            if not _available(comp.module):
                print(f"[run] {comp.name}: not in this checkout yet, skipped")
                continue
            proc = subprocess.Popen(
                comp.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, **comp.env, "PYTHONUNBUFFERED": "1"},
                cwd=REPO_ROOT,
                start_new_session=True,
            )
            procs.append((comp.name, proc))
            threading.Thread(target=_pump, args=(comp.name, proc), daemon=True).start()
        if any(name == "webapp" for name, _ in procs):
            print(
                "[run] analyst console: http://127.0.0.1:5000 "
                "(log in with the [webapp] line 'dev user: dev / ...')"
            )
        print("[run] running; Ctrl-C stops everything this command started")
        while not stopping.is_set():
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"[run] {name} exited with {proc.returncode}; stopping the rest")
                    stopping.set()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"[run] {name} did not stop in 20s; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
        stack.stop(started)
        print("[run] stopped")
    failed = [n for n, p in procs if p.returncode not in (0, -signal.SIGTERM, 130)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
