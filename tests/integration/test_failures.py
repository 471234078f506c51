"""Outages end in a bounded retry and a non-zero exit with a clear message, never a hang.

These tests break servers, so each starts a private Kafka or FerretDB instance on its own
ports and folder; the shared stack is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudwatch.devstack import LocalStack, StackConfig
from tests.factories import traffic
from tests.integration.pipeline import PipelineEnv, free_port, produce, wait_for

pytestmark = pytest.mark.slow


def _private(tmp_path: Path) -> LocalStack:
    return LocalStack(
        StackConfig(
            data_dir=tmp_path / "stack",
            kafka_port=free_port(),
            controller_port=free_port(),
            mongo_port=free_port(),
            topics={},
        )
    )


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[LocalStack]:
    stack = _private(tmp_path)
    stack.up(kafka=True, mongo=False)
    yield stack
    stack.stop()


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[LocalStack]:
    stack = _private(tmp_path)
    stack.up(kafka=False, mongo=True)
    yield stack
    stack.stop()


def test_losing_the_broker_stops_the_dataflow_with_an_error(
    private_kafka: LocalStack, mongo_settings, mongo_client, tmp_path: Path
) -> None:
    pipe = PipelineEnv(private_kafka.config.bootstrap, mongo_settings.mongodb_uri)
    pipe.create_topics()
    produce(pipe.bootstrap, pipe.tx, traffic(cards=10, per_card=8))
    log = tmp_path / "dataflow.log"
    proc = pipe.start(log, FRAUD_BROKER_TIMEOUT_S="5", FRAUD_FLUSH_TIMEOUT_S="5")
    try:
        db = mongo_client[pipe.db]
        wait_for(lambda: db.alerts.count_documents({}) > 0, 60, "alerts before the outage")
        private_kafka.kill("kafka")
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        mongo_client.drop_database(pipe.db)
    assert code != 0
    assert "no Kafka broker reachable" in log.read_text()


def test_losing_mongodb_stops_the_dataflow_after_bounded_retries(
    private_mongo: LocalStack, bootstrap: str, tmp_path: Path
) -> None:
    pipe = PipelineEnv(bootstrap, private_mongo.config.mongodb_uri)
    pipe.create_topics()
    try:
        values = traffic(cards=10, per_card=8)
        produce(bootstrap, pipe.tx, values[:40])
        log = tmp_path / "dataflow.log"
        proc = pipe.start(
            log,
            FRAUD_MONGO_ATTEMPTS="3",
            FRAUD_MONGO_RETRY_TIMEOUT_S="5",
            MONGODB_TIMEOUT_MS="1000",
        )
        import pymongo

        client: pymongo.MongoClient = pymongo.MongoClient(private_mongo.config.mongodb_uri)
        wait_for(lambda: client[pipe.db].alert_stats.count_documents({}) > 0, 60, "first writes")
        client.close()
        private_mongo.kill("ferretdb")
        produce(bootstrap, pipe.tx, values[40:])  # alerts that can no longer be written
        code = proc.wait(timeout=90)
    finally:
        pipe.delete_topics()
    assert code != 0
    assert "failed after 3 attempts" in log.read_text()
