"""Helpers for driving the real dataflow process against the real stack in tests."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from dataflows.backtest import run_backtest
from dataflows.detection.ruleset import DEFAULT_RULES_FILE, load_ruleset
from devtools.stack import REPO_ROOT
from fraudwatch import clients
from fraudwatch.settings import KafkaSettings
from tests.chaos.input import ordered_producer

TOKEN_KEY = "integration-test-token-key"


def _alert_heavy_rules() -> Path:
    """The shipped rule file with a low alert threshold, for the reliability tests.

    They check that no alert is lost or duplicated under faults, which wants many alerts
    (a few percent of the traffic, as before the scores had an analyst-sized threshold);
    which transactions are fraud does not matter to them.
    """
    text = DEFAULT_RULES_FILE.read_text()
    marker = "alert_threshold = 0.5"
    assert marker in text, f"{DEFAULT_RULES_FILE} no longer has {marker!r}"
    heavy = text.replace(marker, "alert_threshold = 0.02")
    digest = hashlib.sha256(heavy.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"fraudwatch-test-rules-{digest}.toml"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(heavy)
        tmp.replace(path)
    return path


TEST_RULES_FILE = _alert_heavy_rules()
TEST_RULESET = load_ruleset(TEST_RULES_FILE)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class PipelineEnv:
    """Unique topics and database for one test, plus how to run the dataflow on them."""

    bootstrap: str
    mongo_uri: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def tx(self) -> str:
        return f"tx-{self.tag}"

    @property
    def alerts(self) -> str:
        return f"alerts-{self.tag}"

    @property
    def dlq(self) -> str:
        return f"dlq-{self.tag}"

    @property
    def labels(self) -> str:
        return f"labels-{self.tag}"

    @property
    def scores(self) -> str:
        return f"scores-{self.tag}"

    @property
    def features(self) -> str:
        return f"features-{self.tag}"

    @property
    def db(self) -> str:
        return f"it{self.tag}"

    @property
    def kafka(self) -> KafkaSettings:
        return clients.plaintext_kafka(self.bootstrap)

    def create_topics(self, partitions: int = 3) -> None:
        clients.ensure_topics(
            self.kafka,
            {
                self.tx: partitions,
                self.alerts: 3,
                self.dlq: 1,
                self.labels: 3,
                self.scores: 3,
                self.features: 1,
            },
        )

    def delete_topics(self) -> None:
        topics = [self.tx, self.alerts, self.dlq, self.labels, self.scores, self.features]
        clients.delete_topics(self.kafka, topics, timeout_s=15)  # best effort: scratch topics

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MONGODB_URI": self.mongo_uri,
            "MONGODB_DATABASE": self.db,
            "TRANSACTIONS_TOPIC": self.tx,
            "ALERTS_TOPIC": self.alerts,
            "DLQ_TOPIC": self.dlq,
            "LABELS_TOPIC": self.labels,
            "SCORES_TOPIC": self.scores,
            "FEATURES_TOPIC": self.features,
            "FRAUD_TOKEN_KEY": TOKEN_KEY,
            "FRAUD_RULES_FILE": str(TEST_RULES_FILE),
            "FRAUD_STATS_FLUSH_S": "0.2",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def start(self, log: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start ``python -m bytewax.run dataflows.fraud ARGS`` with stderr+stdout to ``log``."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "dataflows.fraud", *args],
                env=self.env(**extra),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run_to_end(self, log: Path, *args: str, timeout: float = 180, **extra: str) -> int:
        proc = self.start(log, *args, FRAUD_STOP_AT_END="1", **extra)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"dataflow did not finish in {timeout}s:\n{log.read_text()[-3000:]}"
            ) from exc


def _collect_errors(errors: list[str]) -> Callable[[Any, Any], None]:
    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    return on_delivery


def produce(bootstrap: str, topic: str, values: Iterable[bytes]) -> int:
    """Send values keyed by their ``account_id`` (or no key when not a JSON object), each
    key's records in the order given.

    The oracle judges ``values`` in this order, so the topic must hold them so: a plain
    producer (not idempotent, many requests in flight) can retry a first batch that a
    just-started broker refused behind later batches (issue #15: the "lost alerts" after an
    exit 0): ``ordered_producer`` keeps it.
    """
    producer = ordered_producer(bootstrap, topic)
    errors: list[str] = []
    n = 0
    for v in values:
        try:
            key = json.loads(v)["account_id"].encode()
        except Exception:
            key = None
        producer.produce(topic, v, key, on_delivery=_collect_errors(errors))
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0
    assert not errors, errors
    return n


def consume_all(
    bootstrap: str, topic: str, timeout: float = 20
) -> list[tuple[bytes | None, bytes]]:
    """Every message currently in ``topic`` (all partitions), read to the end."""
    kafka = clients.plaintext_kafka(bootstrap)
    md = clients.admin_client(kafka).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    consumer = Consumer(
        clients.consumer_config(
            kafka,
            f"read-{uuid.uuid4().hex}",
            {"enable.partition.eof": True, "enable.auto.commit": False},
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[tuple[bytes | None, bytes]] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(parts) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # _PARTITION_EOF
                done.add(msg.partition())
            continue
        out.append((msg.key(), msg.value()))
    consumer.close()
    assert len(done) == len(parts), f"could not read {topic} to its end"
    return out


def oracle(values: list[bytes], labels: Iterable[bytes] = ()) -> dict[str, dict[str, Any]]:
    """What the backtest says the pipeline must alert on, by alert id."""
    dead: Counter[str] = Counter()
    return {
        o.alert.alert_id: o.alert.to_json_dict()
        for o in run_backtest(values, TEST_RULESET, TOKEN_KEY, dead, labels)
        if o.alert
    }


def essentials(alert: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of an alert that must be identical between the stream and the backtest."""
    return (
        alert["score"],
        alert["severity"],
        json.dumps(alert["reasons"], sort_keys=True),
        tuple(alert["evidence"]),
        alert["ruleset_version"],
    )


def recovery_args(directory: Path) -> tuple[str, ...]:
    """Create a recovery store in ``directory``; the bytewax.run flags that use it (1 s epochs)."""
    from dataflows.run import ensure_recovery_store

    ensure_recovery_store(directory)
    return ("-r", str(directory), "-s", "1", "-b", "0")


def assert_equals_oracle(
    db: Any, expected: dict[str, dict[str, Any]], judged: int
) -> dict[str, Any]:
    """MongoDB holds exactly ``expected`` (once each, same essentials) and stats count
    ``judged`` transactions. Returns the alert documents by id."""
    got = list(db.alerts.find())
    ids = Counter(d["_id"] for d in got)
    assert not got or ids.most_common(1)[0][1] == 1, "an alert document is duplicated"
    if set(ids) != set(expected):
        # Whether the input was judged in full tells a source problem from a sink problem.
        counted = sum(d["transactions"] for d in db.alert_stats.find())
        raise AssertionError(
            f"lost {len(set(expected) - set(ids))}, spurious {len(set(ids) - set(expected))}; "
            f"stats count {counted} of {judged} transactions judged"
        )
    by_id = {d["_id"]: d for d in got}
    for aid, a in expected.items():
        assert essentials(by_id[aid]) == essentials(a)
    assert sum(d["transactions"] for d in db.alert_stats.find()) == judged
    return by_id
