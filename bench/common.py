"""What every benchmark shares: scratch topics and databases, processes, RSS, percentiles.

Every run gets its own topics, MongoDB database and recovery directories (named after the
run id), so benchmarks never touch the project's topics or each other's; ``Scratch`` deletes
them again. Processes are started in their own process group and stopped, group and all, in
a ``finally`` (``Procs``), so a failed or interrupted benchmark leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudwatch.clients import (
    consumer_config,
    delete_topics,
    ensure_topics,
    mongo_at,
    mongo_client,
    plaintext_kafka,
)
from fraudwatch.settings import KafkaSettings, MongoSettings

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
FERRETDB_DATA = REPO / ".stack" / "data" / "ferretdb"
SCRATCH_ROOT = Path(os.environ.get("FRAUD_BENCH_TMP", tempfile.gettempdir())) / "fraudwatch-bench"


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a CI timeout) unwind like Ctrl-C, so every ``finally`` that
    stops processes and deletes scratch topics runs; Python's default just exits."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- pure helpers (unit-tested) -----------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks.

    Same definition as numpy's default; ``sorted_values`` must be sorted and non-empty.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0-100")
    pos = (len(sorted_values) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


LATENCY_PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def summarize(values: Sequence[float], ps: Sequence[float] = LATENCY_PERCENTILES) -> dict[str, Any]:
    """Count, percentiles (keys ``p50``, ``p99.9``...) and max of ``values``; empty -> count 0."""
    s = sorted(values)
    out: dict[str, Any] = {"n": len(s)}
    if not s:
        return out
    for p in ps:
        out[f"p{p:g}"] = percentile(s, p)
    out["max"] = s[-1]
    return out


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ys against xs (at least two distinct xs)."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("need at least two distinct x values, one y each")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, my - slope * mx


def steady_rate(samples: Sequence[tuple[float, float]], total: int, end_s: float) -> float | None:
    """Rate after start-up: from the first sample with output to the end of the run.

    ``samples`` are ``(seconds since start, records processed so far)``; None when no sample
    shows output before ``end_s``.
    """
    for t, count in samples:
        if count > 0 and t < end_s:
            return (total - count) / (end_s - t) if end_s > t else None
    return None


# --- settings and names ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Where the local stack is (from the same settings every component reads)."""

    bootstrap: str
    mongodb_uri: str

    @classmethod
    def from_env(cls) -> Stack:
        return cls(KafkaSettings().kafka_bootstrap_servers, MongoSettings().mongodb_uri)

    @property
    def kafka(self) -> KafkaSettings:
        return plaintext_kafka(self.bootstrap)

    @property
    def mongo(self) -> MongoSettings:
        return mongo_at(self.mongodb_uri)


def new_run_id() -> str:
    return f"bench-{time.strftime('%m%d%H%M%S')}-{secrets.token_hex(2)}"


def run_logs(run_id: str) -> Path:
    """The folder for one run's process logs (created)."""
    logs = SCRATCH_ROOT / f"{run_id}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Scratch:
    """Topics, databases and directories of one benchmark run; ``cleanup`` removes them all."""

    stack: Stack
    run_id: str
    topics: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return f"{self.run_id}-{suffix}"

    def db_name(self, suffix: str) -> str:
        # FerretDB (SQLite) keeps one file per database: keep the name short and plain.
        return f"{self.run_id}_{suffix}".replace("-", "_")

    def topic(self, suffix: str, partitions: int = 3, log_append_time: bool = False) -> str:
        """Create a fresh topic; ``log_append_time``: message timestamps are the broker's."""
        name = self.name(suffix)
        config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
        ensure_topics(self.stack.kafka, {name: partitions}, configs={name: config})
        self.topics.append(name)
        return name

    def database(self, suffix: str) -> str:
        name = self.db_name(suffix)
        self.databases.append(name)
        return name

    def directory(self, suffix: str) -> Path:
        path = SCRATCH_ROOT / self.name(suffix)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        self.dirs.append(path)
        return path

    def cleanup(self) -> None:
        if self.topics:
            delete_topics(self.stack.kafka, self.topics)
            self.topics.clear()
        if self.databases:
            client = mongo_client(self.stack.mongo)
            try:
                for db in self.databases:
                    with contextlib.suppress(Exception):
                        client.drop_database(db)
            finally:
                client.close()
            self.databases.clear()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


# --- processes --------------------------------------------------------------------------------


class Proc:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.ended: float | None = None
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        rc = self.popen.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout_s: float) -> int:
        """Wait for the exit; a process still running after ``timeout_s`` is an error."""
        deadline = time.monotonic() + timeout_s
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout_s:.0f}s")
            time.sleep(0.02)
        return self.popen.returncode

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT to the whole group, then SIGKILL after ``grace_s``."""
        if self.poll() is None:
            for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
                with contextlib.suppress(TimeoutError):
                    self.wait(wait_s)
                    break
        # Children that outlived the leader (none expected) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


class Procs(contextlib.AbstractContextManager["Procs"]):
    """Starts processes and stops every one of them when the block ends, however it ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env if env is not None else dict(os.environ), self.log_dir)
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.stop()


def checked_exit(proc: Proc, timeout_s: float) -> None:
    rc = proc.wait(timeout_s)
    if rc != 0:
        raise RuntimeError(f"{proc.name} exited {rc}:\n{proc.tail()}")


# --- memory and progress sampling ---------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of ``pid`` and all its descendants, in bytes."""
    kids = _children_map()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, ()))
        total += _status_kib(p, "VmRSS") * 1024
    return total


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_counter(port: int, name: str = "fraudwatch_transactions_in_total") -> float | None:
    """One Prometheus counter from the dataflow's API, or None while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            body = r.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Monitor(threading.Thread):
    """Samples RSS of process trees and the dataflow's input counter every ``every_s``."""

    def __init__(
        self, procs: Sequence[Proc], metric_ports: Sequence[int] = (), every_s: float = 0.25
    ) -> None:
        super().__init__(daemon=True)
        self.procs = list(procs)
        self.ports = list(metric_ports)
        self.every_s = every_s
        self.t0 = min(p.started for p in self.procs)
        self.rss: list[tuple[float, int]] = []
        self.progress: list[tuple[float, float]] = []
        self.peak_hwm = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            live = [p for p in self.procs if p.poll() is None]
            if not live:
                break
            t = time.monotonic() - self.t0
            self.rss.append((t, sum(tree_rss_bytes(p.pid) for p in live)))
            self.peak_hwm = max(
                self.peak_hwm, sum(_status_kib(p.pid, "VmHWM") for p in live) * 1024
            )
            if self.ports:
                counts = [read_counter(port) for port in self.ports]
                self.progress.append((t, sum(c or 0 for c in counts)))
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    @property
    def peak_rss(self) -> int:
        return max([r for _, r in self.rss] + [self.peak_hwm], default=0)

    def last_rss(self) -> int:
        return self.rss[-1][1] if self.rss else 0


# --- Kafka and MongoDB reads ----------------------------------------------------------------------


def high_watermarks(stack: Stack, topic: str) -> dict[int, int]:
    """Partition -> high watermark (the end) of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(consumer_config(stack.kafka, "fraudwatch-bench-probe"))
    try:
        md = c.list_topics(topic, timeout=30)
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in md.topics[topic].partitions
        }
    finally:
        c.close()


def message_count(stack: Stack, topic: str) -> int:
    return sum(high_watermarks(stack, topic).values())


class FerretTable:
    """Reads one FerretDB (SQLite backend) collection straight from its file, read-only.

    FerretDB v1 keeps a database in ``<name>.sqlite`` and a collection in one table of JSON
    rows appended in insert order; FerretDB acknowledges a write once its SQLite transaction
    has committed, and a row is visible to this reader from that commit on. Tailing by
    ``rowid`` costs only the new rows, whereas any MongoDB-protocol query on FerretDB v1
    scans the whole collection (seconds at tens of thousands of alerts).
    """

    def __init__(self, database: str, collection: str, data_dir: Path = FERRETDB_DATA) -> None:
        self.path = data_dir / f"{database}.sqlite"
        self.collection = collection
        self._conn: sqlite3.Connection | None = None
        self._table: str | None = None
        self.last_rowid = 0

    @staticmethod
    def available(data_dir: Path = FERRETDB_DATA) -> bool:
        return data_dir.is_dir()

    def _table_name(self) -> str | None:
        if self._table is not None:
            return self._table
        if not self.path.exists():
            return None
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            row = self._conn.execute(
                "SELECT table_name FROM _ferretdb_collections WHERE name = ?", (self.collection,)
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        self._table = row[0] if row else None
        return self._table

    def new_rows(self) -> list[tuple[str, int]]:
        """``(_id, source_ts)`` of rows committed since the last call."""
        table = self._table_name()
        if table is None or self._conn is None:
            return []
        rows = self._conn.execute(
            f'SELECT rowid, _ferretdb_sjson FROM "{table}" WHERE rowid > ? ORDER BY rowid',  # noqa: S608
            (self.last_rowid,),
        ).fetchall()
        out = []
        for rowid, doc in rows:
            self.last_rowid = rowid
            d = json.loads(doc)
            out.append((str(d.get("_id")), int(d.get("source_ts") or 0)))
        return out

    def count(self) -> int:
        table = self._table_name()
        if table is None or self._conn is None:
            return 0
        n: int = self._conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608
        return n

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- the dataflow ---------------------------------------------------------------------------


def dataflow_env(
    stack: Stack,
    *,
    transactions: str,
    alerts: str,
    dlq: str,
    database: str,
    stop_at_end: bool,
    features: str | None = None,
    api_port: int | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        MONGODB_URI=stack.mongodb_uri,
        MONGODB_DATABASE=database,
        TRANSACTIONS_TOPIC=transactions,
        ALERTS_TOPIC=alerts,
        DLQ_TOPIC=dlq,
        FRAUD_STOP_AT_END="1" if stop_at_end else "0",
        # The shared feature log must not learn from benchmark traffic.
        FEATURES_TOPIC=features or f"{transactions}-features",
        PYTHONUNBUFFERED="1",
    )
    if api_port is not None:
        env.update(BYTEWAX_DATAFLOW_API_ENABLED="1", BYTEWAX_DATAFLOW_API_PORT=str(api_port))
    env.update(extra or {})
    return env


def dataflow_argv(
    recovery_dir: Path, snapshot_s: int = 5, bytewax_args: Sequence[str] = ()
) -> list[str]:
    """``python -m dataflows.run`` exactly as a user runs it, plus scaling flags."""
    argv = [PY, "-m", "dataflows.run", "--recovery-dir", str(recovery_dir)]
    argv += ["--snapshot-interval", str(snapshot_s)]
    if bytewax_args:
        argv += ["--", *bytewax_args]
    return argv


def shown(argv: Sequence[str], env_keys: dict[str, str] | None = None) -> str:
    """A command line for the docs: repo-relative, ``python`` for the venv interpreter."""
    parts = [f"{k}={v}" for k, v in (env_keys or {}).items()]
    for arg in argv:
        a = "python" if arg == PY else arg.replace(str(SCRATCH_ROOT), "$TMP")
        parts.append(f'"{a}"' if (" " in a or ";" in a) else a)
    return " ".join(parts)


DATAFLOW_SHOWN_ENV = (
    "TRANSACTIONS_TOPIC",
    "ALERTS_TOPIC",
    "DLQ_TOPIC",
    "MONGODB_DATABASE",
    "FRAUD_STOP_AT_END",
    "FRAUD_BATCH_SIZE",
)


def shown_dataflow(argv: Sequence[str], env: dict[str, str]) -> str:
    """The dataflow's command line with the variables that make it this run's."""
    return shown(argv, {k: env[k] for k in DATAFLOW_SHOWN_ENV if k in env})


def producer_argv(
    topic: str,
    *,
    rate: str,
    cards: int,
    seed: int,
    count: int | None = None,
    duration_s: float | None = None,
    start: str | None = None,
    clock: str | None = None,
) -> list[str]:
    argv = [PY, "-m", "producer", "generate", "--rate", rate, "--cards", str(cards)]
    argv += ["--seed", str(seed), "--topic", topic, "--log-interval", "5"]
    if count is not None:
        argv += ["--count", str(count)]
    if duration_s is not None:
        argv += ["--duration", f"{duration_s:g}s"]
    if start is not None:
        argv += ["--start", start]
    if clock is not None:
        argv += ["--clock", clock]
    return argv


@contextlib.contextmanager
def scratch_run(stack: Stack, run_id: str, keep: bool = False) -> Iterator[Scratch]:
    scratch = Scratch(stack, run_id)
    try:
        yield scratch
    finally:
        if not keep:
            scratch.cleanup()
